#!/usr/bin/env python3
"""Soak test (issue 5, "Load"): N ffmpeg publishers and M HLS viewers spread over two edges for D minutes,
through a release build of media, a single-node Apache Kafka and two edges. Not run by CI; a documented
command.

    cargo build --release --bins
    python3 bench/soak.py                                   # 50 publishers, 500 viewers, 10 minutes
    python3 bench/soak.py --publishers 4 --viewers 40 --minutes 2   # a quick check of the script itself

Publishers: `ffmpeg -re -stream_loop -1 -c copy` of a generated clip, as bench/ingest.py does. The default
clip is lighter than the benchmark's 720p one (640x360 30 fps, 600 kbps H.264 with a 2 s GOP + 64 kbps AAC),
as in every soak before, so runs compare; `--clip 720p` uses the benchmark's clip.

Broker: Apache Kafka by scripts/kafka/node.sh (1 GB heap), live-topic as live-topic.properties says except
a short retention so that the soak sees it work: `--retention-ms` (120 s) and `--segment-ms` (30 s) on the
topic, `log.retention.check.interval.ms` (`--retention-check-ms`, 10 s) and `log.segment.delete.delay.ms=1000`
on the node. The broker then holds at most retention + segment + check interval of records (~160 s).

Viewers: asyncio, one keep-alive HTTP/1.1 connection each; viewer i watches stream (i // edges) % N on
edge i % edges, so every stream is watched on every edge. Each reloads the playlist every target duration
and fetches every segment that is new to it, checking status 200, Content-Length, and that the body is
whole MPEG-TS (a multiple of 188 bytes starting with the 0x47 sync byte).

Judged:
  * errors: any non-200 answer, short body, bad TS, or connection error of a viewer (after every stream is
    live at every edge);
  * missing segments: a watcher per (edge, stream) reloads the playlist every second; after the publishers
    stop and every playlist has ended, every sequence number media closed (its `segment closed` debug lines)
    must have been listed by every edge;
  * memory: RSS of media and of each edge at minute 2 and at the end must agree within 10%;
  * the broker is bounded by retention: from retention + segment + check interval + 30 s (`bound_s`) to the
    end of viewing, the peaks of its RSS and of its log directory's disk usage (sampled every 10 s with the
    others) in the second half grow by at most 10% (RSS) and 15% (disk) over the first half's (disk moves
    by a segment.ms of records as segments roll and expire), and the disk never exceeds the bytes that
    reached it in bound_s seconds at the rate of the first 100 s (before anything could expire). Needs a
    run of at least twice bound_s.

Writes target/bench/soak.json (every figure, the RSS timeline) and target/bench/soak.md (the verdict), logs
under target/bench/soak/. Loopback only; stops every process it started, by pid.
"""
import argparse, asyncio, json, os, re, subprocess, sys, threading, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CACHE, ROOT, Ours, Procs, bin_dir_default, clip, free_port, http_get, log, rss_mb,
                    start_publishers, wait_port)

# The edges run with the default --segment-ttl-seconds.
EDGE_SEGMENT_TTL = 120
CLOSED = re.compile(r'stream="?([^"}\s]+)"?\}.*segment closed seq=(\d+)')


def light_clip():
    """30 s of 640x360 30 fps H.264 at 600 kbps (2 s GOP) + 64 kbps AAC, generated once."""
    out = CACHE / "soak-360p-600k.flv"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"generating {out} once")
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "30",
                        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "600k", "-maxrate", "600k",
                        "-bufsize", "1200k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(out)], check=True)
    return out


def parse_playlist(text):
    """(target duration, [seq], ended) of a media playlist served by our edge (`<seq>.ts` URIs)."""
    target, seqs = 2, []
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line and not line.startswith("#"):
            seqs.append(int(line.rsplit("/", 1)[-1].split(".")[0]))
    return target, seqs, "#EXT-X-ENDLIST" in text


class Http:
    """A minimal keep-alive HTTP/1.1 GET client on one connection (the edge always sends Content-Length)."""

    def __init__(self, port):
        self.port, self.reader, self.writer = port, None, None

    async def get(self, path, timeout=10):
        return await asyncio.wait_for(self._get(path), timeout)

    async def _get(self, path):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        length = int(headers.get("content-length", "-1"))
        if length < 0:
            raise RuntimeError(f"{path}: no Content-Length")
        body = await self.reader.readexactly(length)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    def __init__(self):
        self.requests = self.segments = self.bytes = 0
        self.errors = []  # (time, edge, what), the first few kept
        self.error_count = 0

    def error(self, edge, what):
        self.error_count += 1
        if len(self.errors) < 50:
            self.errors.append((round(time.time(), 3), edge, what))


async def viewer(port, edge, stream, until, tally, start_delay):
    await asyncio.sleep(start_delay)
    http, seen = Http(port), -1
    while time.time() < until:
        t0 = time.time()
        target = 2
        try:
            status, body = await http.get(f"/live/{stream}/index.m3u8")
            tally.requests += 1
            if status != 200:
                tally.error(edge, f"playlist {stream}: {status}")
            else:
                target, seqs, _ = parse_playlist(body.decode())
                # A new viewer starts at the live edge, as players do (three segments back).
                new = [s for s in seqs if s > seen] if seen >= 0 else seqs[-3:]
                for seq in new:
                    status, seg = await http.get(f"/live/{stream}/{seq}.ts")
                    tally.requests += 1
                    if status != 200:
                        tally.error(edge, f"{stream}/{seq}.ts: {status}")
                    elif not seg or len(seg) % 188 or seg[0] != 0x47:
                        tally.error(edge, f"{stream}/{seq}.ts: {len(seg)} bytes, not whole MPEG-TS")
                    else:
                        tally.segments += 1
                        tally.bytes += len(seg)
                    seen = max(seen, seq)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, RuntimeError, ValueError) as e:
            tally.error(edge, f"{stream}: {type(e).__name__} {e}")
            http.close()
        await asyncio.sleep(max(0.05, target - (time.time() - t0)))
    http.close()


async def watcher(port, stream, until, seen, first, stop):
    """Reloads a playlist every second until the stream has ended after `until`; records every seq, and in
    `first` the oldest seq of the first playlist it got."""
    http = Http(port)
    while not stop.is_set():
        try:
            status, body = await http.get(f"/live/{stream}/index.m3u8")
            if status == 200:
                _, seqs, ended = parse_playlist(body.decode())
                if seqs and not seen:
                    first.append(seqs[0])
                seen.update(seqs)
                if ended and time.time() > until:
                    break
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, RuntimeError, ValueError):
            http.close()
        await asyncio.sleep(1)
    http.close()


def sample(pids, kafka):
    return {**{k: round(rss_mb(p), 1) for k, p in pids.items()}, "broker_disk": round(kafka.disk_bytes() / 2**20, 1)}


def sample_rss(pids, kafka, every, samples, stop, t0):
    while not stop.wait(every):
        samples.append({"t": round(time.time() - t0, 1), **sample(pids, kafka)})


def at(samples, t):
    """The sample nearest to t seconds."""
    return min(samples, key=lambda s: abs(s["t"] - t)) if samples else {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=50)
    ap.add_argument("--viewers", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--clip", choices=["light", "720p"], default="light",
                    help="light: 640x360 600 kbps (default); 720p: the benchmark's 2.5 Mbps clip")
    ap.add_argument("--baseline-minute", type=float, default=2,
                    help="RSS at this minute is compared with RSS at the end [2; half the run if shorter]")
    ap.add_argument("--profile", choices=["release", "debug"], default="release",
                    help="which build of media and cdn-edge to run [release]; BENCH_BIN_DIR overrides")
    ap.add_argument("--retention-ms", type=int, default=120000, help="live-topic's retention.ms [120000]")
    ap.add_argument("--segment-ms", type=int, default=30000, help="live-topic's segment.ms [30000]")
    ap.add_argument("--retention-check-ms", type=int, default=10000,
                    help="the broker's log.retention.check.interval.ms [10000]")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    a = ap.parse_args()
    out = Path(a.out)
    src = light_clip() if a.clip == "light" else clip()
    procs = Procs(out / "soak")
    result = {"publishers": a.publishers, "viewers": a.viewers, "minutes": a.minutes, "edges": a.edges,
              "clip": str(src), "profile": a.profile}
    try:
        run(a, procs, src, result)
    finally:
        procs.stop_all()
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    (out / "soak.md").write_text(report(result))
    print(report(result))
    return 0 if result.get("pass") else 1


def run(a, procs, src, result):
    srv = Ours(procs, edge_log="info", env={"RUST_LOG": "info,media::broadcast=debug"},
               bin_dir=os.environ.get("BENCH_BIN_DIR") or ROOT / "target" / a.profile,
               kafka_options=[f"log.retention.check.interval.ms={a.retention_check_ms}",
                              "log.segment.delete.delay.ms=1000"],
               topic_configs={"retention.ms": str(a.retention_ms), "segment.ms": str(a.segment_ms)})
    result["broker"] = {"partitions": srv.kafka.partitions, "topic_configs": srv.kafka.topic_configs,
                        "retention_check_ms": a.retention_check_ms, "heap": os.environ.get("BENCH_KAFKA_HEAP", "1g"),
                        "bin_dir": str(srv.bin_dir)}
    ports = [srv.eport]
    for i in range(1, a.edges):
        port = free_port()
        srv.start_edge(f"edge-{i + 1}", port, "info")
        wait_port(port)
        ports.append(port)
    pids = {"media": srv.media.pid, "broker": srv.broker.pid}
    pids.update({f"edge{i + 1}": p.pid for i, p in enumerate(e for e in procs.list if e.bench_name.startswith("edge"))})
    log(f"{a.publishers} publishers of {src.name}")
    pubs = start_publishers(procs, a.publishers, srv.rtmp_base, src, name="soak")
    streams = [f"soak{i}" for i in range(a.publishers)]
    deadline = time.time() + 60
    while True:
        live = sum(1 for s in streams for p in ports if playlist_ok(p, s))
        if live == len(streams) * len(ports):
            break
        if time.time() > deadline:
            raise RuntimeError(f"only {live} of {len(streams) * len(ports)} playlists live after 60 s")
        time.sleep(0.5)
    dead = [p.bench_name for p in pubs if p.poll() is not None]
    if dead:
        raise RuntimeError(f"publishers exited: {dead}")
    log(f"every stream live on {len(ports)} edges; {a.viewers} viewers for {a.minutes} min")

    t0 = time.time()
    duration = a.minutes * 60
    until = t0 + duration
    samples, stop_sampling = [], threading.Event()
    samples.append({"t": 0.0, **sample(pids, srv.kafka)})
    sampler = threading.Thread(target=sample_rss, args=(pids, srv.kafka, 10, samples, stop_sampling, t0), daemon=True)
    sampler.start()
    tally = Tally()
    seen = {(e, s): set() for e in range(len(ports)) for s in streams}
    first = {(e, s): [] for e in range(len(ports)) for s in streams}

    async def load():
        stop = asyncio.Event()
        watchers = [asyncio.create_task(watcher(ports[e], s, until, seen[(e, s)], first[(e, s)], stop)) for e, s in seen]
        spread = min(10.0, duration / 10)
        viewers = [asyncio.create_task(viewer(ports[i % len(ports)], i % len(ports),
                                              streams[(i // len(ports)) % len(streams)], until, tally,
                                              spread * i / max(1, a.viewers)))
                   for i in range(a.viewers)]
        await asyncio.gather(*viewers)
        log("viewing done; stopping the publishers")
        lost = [p.bench_name for p in pubs if p.poll() is not None]
        result["publishers_exited_early"] = lost
        procs.stop(pubs)
        try:
            await asyncio.wait_for(asyncio.gather(*watchers), 60)
        except asyncio.TimeoutError:
            stop.set()
            result["playlists_not_ended"] = True

    asyncio.run(load())
    stop_sampling.set()
    samples.append({"t": round(time.time() - t0, 1), **sample(pids, srv.kafka)})
    viewing_s = duration

    closed = {}
    for line in (procs.out / "media.log").read_text(errors="replace").splitlines():
        m = CLOSED.search(line)
        if m:
            closed.setdefault(m.group(1), set()).add(int(m.group(2)))
    # Segments closed before the watchers' first look (publishers ramping up) may have left every window
    # already: count from the newest of the edges' first-listed segments.
    since = {s: max((first[(e, s)][0] for e in range(len(ports)) if first[(e, s)]), default=0) for s in streams}
    missing = {}
    for e in range(len(ports)):
        gone = {s: sorted(x for x in closed.get(s, set()) - seen[(e, s)] if x >= since[s]) for s in streams}
        missing[f"edge{e + 1}"] = {s: v for s, v in gone.items() if v}
    missing_count = {k: sum(len(v) for v in m.values()) for k, m in missing.items()}

    base_t = a.baseline_minute * 60 if duration >= 2 * a.baseline_minute * 60 else duration / 2
    base, end = at(samples, base_t), samples[-1]
    growth = {k: round((end[k] - base[k]) / base[k] * 100, 1) for k in pids if base.get(k)}
    flat = {k: abs(growth.get(k, 0)) <= 10 for k in pids if k != "broker"}

    # The broker: bounded by retention once retention + segment roll + check interval have passed.
    bound_s = (a.retention_ms + a.segment_ms + a.retention_check_ms) / 1000 + 30
    # The publishers stop at the end of viewing; the last samples (while the watchers wait for the playlists
    # to end) are not under load, so the broker's end is the last sample of the viewing time.
    loaded = [x for x in samples if x["t"] <= viewing_s + 5]
    after = [x for x in loaded if x["t"] >= bound_s]
    broker = {"bound_s": bound_s, "judged": len(after) >= 2 and loaded[-1]["t"] >= 2 * bound_s}
    if after:
        b0, b1 = after[0], loaded[-1]
        # The rate records reach the broker's disk, from its growth before any segment can have expired:
        # records started before t0, so the first deletion can come at retention.ms after t0 at the earliest.
        early = [x for x in samples if x["t"] <= min(100.0, a.retention_ms / 1000 - 10)]
        rate = ((early[-1]["broker_disk"] - early[0]["broker_disk"]) * 2**20 / max(1.0, early[-1]["t"] - early[0]["t"])
                if len(early) >= 2 else 0.0)
        # Disk moves by up to (segment + check interval) / retention as segments roll and expire, so two
        # single samples say little: the peaks of the first and the second half of the bounded time must agree.
        half = len(after) // 2 or 1
        h0, h1 = after[:half], after[half:] or after[-1:]
        peak = lambda xs, k: max(x[k] for x in xs)
        pc = lambda x0, x1: round((x1 - x0) / x0 * 100, 1) if x0 else None
        broker.update({
            "at_s": b0["t"], "end_s": b1["t"], "rss_mb": [b0["broker"], b1["broker"]],
            "disk_mb": [b0["broker_disk"], b1["broker_disk"]],
            "halves_s": [[h0[0]["t"], h0[-1]["t"]], [h1[0]["t"], h1[-1]["t"]]],
            "rss_peak_halves_mb": [peak(h0, "broker"), peak(h1, "broker")],
            "disk_peak_halves_mb": [peak(h0, "broker_disk"), peak(h1, "broker_disk")],
            "rss_change_pct": pc(peak(h0, "broker"), peak(h1, "broker")),
            "disk_change_pct": pc(peak(h0, "broker_disk"), peak(h1, "broker_disk")),
            "disk_max_after_mb": max(x["broker_disk"] for x in after),
            "disk_max_mb": max(x["broker_disk"] for x in samples),
            "rss_max_after_mb": max(x["broker"] for x in after),
            "produce_rate_mb_s": round(rate / 2**20, 3),
            "disk_bound_mb": round(rate * bound_s / 2**20, 1),
        })
        broker["flat"] = (broker["rss_change_pct"] is not None and broker["rss_change_pct"] <= 10
                          and broker["disk_change_pct"] is not None and broker["disk_change_pct"] <= 15
                          and broker["disk_max_after_mb"] <= broker["disk_bound_mb"])
    else:
        broker["flat"] = False
    result["broker_bounded"] = broker
    # An edge's cache only stops growing once segments start expiring (--segment-ttl-seconds, 120 s by
    # default): a baseline before that compares filling with full, which says nothing about leaks.
    judged = base_t >= EDGE_SEGMENT_TTL
    result.update({
        "viewer_requests": tally.requests, "viewer_segments": tally.segments,
        "viewer_mb": round(tally.bytes / 1e6, 1), "errors": tally.error_count, "first_errors": tally.errors,
        "segments_closed": sum(len(v) for v in closed.values()),
        "segments_judged": sum(1 for s in streams for x in closed.get(s, ()) if x >= since[s]),
        "missing_per_edge": missing_count, "missing": {k: {s: v[:20] for s, v in m.items()} for k, m in missing.items()},
        "memory_judged": judged, "rss_flat": flat,
        "rss_baseline_s": base.get("t"), "rss_baseline_mb": base, "rss_end_mb": end, "rss_growth_pct": growth,
        "rss_timeline": samples,
    })
    result["pass"] = (tally.error_count == 0 and all(v == 0 for v in missing_count.values())
                      and (all(flat.values()) or not judged) and result["segments_closed"] > 0
                      and (broker["flat"] or not broker["judged"])
                      and not result["publishers_exited_early"] and not result.get("playlists_not_ended"))


def playlist_ok(port, stream):
    try:
        return b"#EXTINF" in http_get(f"http://127.0.0.1:{port}/live/{stream}/index.m3u8")
    except OSError:
        return False


def report(r):
    lines = [f"# Soak: {r['publishers']} publishers, {r['viewers']} viewers over {r['edges']} edges, "
             f"{r['minutes']} min ({r['profile']} build)", ""]
    if "errors" not in r:
        return "\n".join(lines + ["Did not complete; see target/bench/soak/*.log", ""])
    lines += [
        f"- verdict: **{'PASS' if r['pass'] else 'FAIL'}**"
        + ("" if r["memory_judged"] else f" (memory not judged: the baseline at {r['rss_baseline_s']} s comes before "
           f"the edges' caches are full at the {EDGE_SEGMENT_TTL} s segment TTL; run at least "
           f"{2 * EDGE_SEGMENT_TTL // 60} minutes)"),
        f"- viewer requests {r['viewer_requests']}, segments fetched {r['viewer_segments']} "
        f"({r['viewer_mb']} MB), errors {r['errors']}",
        f"- segments closed at media {r['segments_closed']} ({r['segments_judged']} after the watchers' first "
        f"look); missing per edge {r['missing_per_edge']}",
        f"- publishers that exited early: {r['publishers_exited_early'] or 'none'}",
        "",
        f"| process | RSS at {r['rss_baseline_s']} s (MB) | RSS at end (MB) | change |",
        "|---|---|---|---|",
    ]
    for k, g in r["rss_growth_pct"].items():
        lines.append(f"| {k} | {r['rss_baseline_mb'][k]} | {r['rss_end_mb'][k]} | {g:+}% |")
    b = r.get("broker_bounded") or {}
    if b.get("at_s") is not None:
        lines += ["", f"Broker bounded by retention (retention.ms {r['broker']['topic_configs'].get('retention.ms')}, "
                  f"segment.ms {r['broker']['topic_configs'].get('segment.ms')}, check every "
                  f"{r['broker']['retention_check_ms']} ms; judged from {b['bound_s']:.0f} s): "
                  f"**{'flat' if b['flat'] else 'NOT flat'}**" + ("" if b["judged"] else " (run too short to judge)"),
                  "", "| broker | at %s s | at end of viewing (%s s) | peak %s-%s s | peak %s-%s s | change of the peaks | max after %s s |"
                  % (b["at_s"], b["end_s"], *b["halves_s"][0], *b["halves_s"][1], b["bound_s"]),
                  "|---|---|---|---|---|---|---|",
                  f"| RSS (MB) | {b['rss_mb'][0]} | {b['rss_mb'][1]} | {b['rss_peak_halves_mb'][0]} | "
                  f"{b['rss_peak_halves_mb'][1]} | {b['rss_change_pct']:+}% | {b['rss_max_after_mb']} |",
                  f"| log dir on disk (MB) | {b['disk_mb'][0]} | {b['disk_mb'][1]} | {b['disk_peak_halves_mb'][0]} | "
                  f"{b['disk_peak_halves_mb'][1]} | {b['disk_change_pct']:+}% | "
                  f"{b['disk_max_after_mb']} (bound {b['disk_bound_mb']} = {b['produce_rate_mb_s']} MB/s x {b['bound_s']:.0f} s) |",
                  "", "Broker timeline (s: RSS MB / disk MB): " + ", ".join(
                      f"{x['t']:.0f}: {x['broker']:.0f}/{x['broker_disk']:.0f}" for x in r["rss_timeline"][::3])]
    if r["first_errors"]:
        lines += ["", "First errors:", *[f"- {e}" for e in r["first_errors"][:10]]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
