#!/usr/bin/env python3
"""Side-by-side benchmark: this project (Apache Kafka + media + one edge) against nginx-rtmp and any other
running server given with --peer (e.g. MediaMTX), on this machine, one after the other (never together).

    python3 bench/compare.py                      # everything, about 23 minutes on 2 cores
    python3 bench/compare.py --no-capacity        # without the capacity search (about 8 minutes)
    python3 bench/compare.py --publishers 20 --seconds 40 --no-capacity \
        --peer mediamtx=rtmp://127.0.0.1:1935/live,http://127.0.0.1:8888/live --peer-pid mediamtx=PID

1. Ingest: the same N ffmpeg publishers (`-re -stream_loop -1 -c copy` of a 1280x720 30 fps 2.5 Mbps H.264
   + 128 kbps AAC clip, 2 s GOP, generated once into ~/.cache/live-video) for the same time into
   (a) nginx with Debian's nginx-rtmp: master + 1 worker, `live on; hls on; hls_fragment 2s`, HLS on tmpfs;
   (b) media with 2 s segments -> a single-node Apache Kafka 4.1 (scripts/kafka/node.sh, 1 GB heap, log dir
       on disk under /tmp, live-topic as scripts/kafka/live-topic.properties says: 12 partitions) -> one
       edge, every one with its defaults; the broker's (JVM's) CPU and RSS are ours;
   (c) every --peer: a server already running (started by hand), publishers to RTMP_BASE/<stream>, its
       playlists read at HLS_BASE/<stream>/index.m3u8 (or a template with {stream}); CPU and RSS from /proc
       of --peer-pid (and its children) if given.
   Server CPU per stream-minute, peak RSS, segments produced vs expected, segment and LL-HLS part
   availability latency (ours) with its two legs (media queued -> broker acknowledged, acknowledged ->
   listed at the edge), the edge's cold start (ours).
   Paired (--paired, 20 by default): ours and nginx-rtmp at once, N publishers each, their CPU read over
   the same windows (--paired-rounds x --paired-seconds), so drift between runs does not enter the ratio.
2. Serving: wrk against a hot ~700 KB segment and a playlist on the edge, then on nginx's http {} server
   (sendfile on, worker_processes auto) serving the same bytes copied to tmpfs.
3. Capacity: more publishers until segments go missing, each side alone, bounded in time.
4. Latency in hls.js: one publisher of the same clip into each side in turn (fresh start; a peer as it
   runs), then e2e/browser/ll.mjs (headless Chromium, playwright-core; `npm ci` in e2e/browser) plays for
   --latency-seconds, side by side: ours ll.m3u8 in lowLatencyMode and index.m3u8 plain; nginx-rtmp's
   plain HLS only (it has no LL-HLS), served by the same nginx over http; a peer's LL template (or its HLS
   one) in lowLatencyMode and its HLS one plain. The same hls.js for all: the copy our edge serves.
   hls.latency is the distance from the playlist's live edge (what hls.js steers by); where the playlist
   has EXT-X-PROGRAM-DATE-TIME the wall clock minus hls.playingDate is shown too.

Writes target/bench/compare.md (the table) and compare.json (every figure); logs under
target/bench/compare/. Needs scripts/install-deps.sh and `cargo build --release --bins` (or --bin-dir /
BENCH_BIN_DIR: where media and cdn-edge are). Loopback only.
Not part of the test suite. Do not run anything else on the machine meanwhile.
"""
import argparse, json, os, re, resource, shutil, subprocess, sys, tempfile, time, urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, SEGMENT_SECONDS, Nginx, Ours, Peer, Procs, bin_dir_default, clip, cpu_seconds, http_get,
                    busy_fraction, log, machine_jiffies, measure_ingest, pct, rss_mb, start_publishers, wrk)


def serving(out, src, a):
    """wrk against the edge, then against nginx serving the same bytes from tmpfs."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    www = Path(tempfile.mkdtemp(prefix="bench-www-", dir="/dev/shm"))
    res = {"wrk": f"wrk -t{a.wrk_threads} -c{a.wrk_connections} -d{a.wrk_seconds}s --latency"}
    try:
        procs = Procs(out / "ours")
        try:
            o = Ours(procs, env=a.our_env)
            pub = start_publishers(procs, 1, o.rtmp_base, src, name="hot")
            stream = "hot0"
            deadline = time.time() + 30
            segs = []
            while time.time() < deadline and len(segs) < 4:
                time.sleep(0.5)
                try:
                    segs = re.findall(r"^(\d+)\.ts$", o.playlist(stream).decode(), re.M)
                except OSError:
                    pass
            if len(segs) < 4:
                raise RuntimeError("the edge never listed 4 segments of the hot stream")
            # The publisher stops so both servers serve at rest; the ended stream stays servable for
            # --segment-ttl-seconds (120 s), longer than the runs below.
            procs.stop(pub)
            deadline = time.time() + 10
            while time.time() < deadline and b"#EXT-X-ENDLIST" not in o.playlist(stream):
                time.sleep(0.2)
            sizes = {s: len(http_get(f"http://127.0.0.1:{o.eport}/live/{stream}/{s}.ts")) for s in segs[1:-1]}
            seq = min(sizes, key=lambda s: abs(sizes[s] - 700_000))
            seg_path, pl_path = f"/live/{stream}/{seq}.ts", f"/live/{stream}/index.m3u8"
            seg_bytes = http_get(f"http://127.0.0.1:{o.eport}{seg_path}")
            pl_bytes = http_get(f"http://127.0.0.1:{o.eport}{pl_path}")
            for path, body in ((seg_path, seg_bytes), (pl_path, pl_bytes)):
                (www / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                (www / path.lstrip("/")).write_bytes(body)
            res["segment_bytes"], res["playlist_bytes"] = len(seg_bytes), len(pl_bytes)
            res["edge"] = run_wrk_pair(f"http://127.0.0.1:{o.eport}", seg_path, pl_path, {"edge": o.edge.pid}, a)
            res["edge_idle_cpu_note"] = "broker and media stay up (idle) during the edge's runs"
        finally:
            procs.stop_all()
        procs = Procs(out / "nginx")
        ng = None
        try:
            ng = Nginx(procs, rtmp=False, http_root=www, workers="auto")
            base = f"http://127.0.0.1:{ng.hport}"
            if http_get(base + seg_path) != seg_bytes or http_get(base + pl_path) != pl_bytes:
                raise RuntimeError("nginx does not serve the same bytes as the edge")
            res["nginx"] = run_wrk_pair(base, seg_path, pl_path, ng.pids(), a)
            res["nginx_workers"] = len([k for k in ng.pids() if k.startswith("worker")])
        finally:
            procs.stop_all()
            if ng:
                ng.cleanup()
    finally:
        shutil.rmtree(www, ignore_errors=True)
    return res


def run_wrk_pair(base, seg_path, pl_path, pids, a):
    res = {}
    for what, path in (("segment", seg_path), ("playlist", pl_path)):
        wrk(base + path, a.wrk_threads, a.wrk_connections, 2)  # warm-up
        c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = wrk(base + path, a.wrk_threads, a.wrk_connections, a.wrk_seconds)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r["server_cpu_s"] = round(sum(cpu_seconds(p) - c0[k] for k, p in pids.items()), 2)
        r["wrk_cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2)
        r["server_rss_mb"] = round(sum(rss_mb(p) for p in pids.values()), 1)
        log(f"  {base}{path}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
        res[what] = r
    return res


def capacity(side, src, a, out, known_ok):
    """Largest publisher count carried with no missing segment: coarse steps up from `start` while runs
    pass, then halve the step between the last pass and the first failure down to `fine`; stops when
    the time budget is spent. Each trial is a fresh start of the side."""
    trials = []
    t_start = time.time()
    ok_n, fail_n = known_ok, None
    n = max(a.capacity_start, known_ok + a.capacity_fine)
    while n and time.time() - t_start < a.capacity_budget and n <= a.capacity_max:
        log(f"capacity {side}: {n} publishers")
        try:
            r = measure_ingest(side, n, a.capacity_seconds, a.warmup, Path(out) / f"{side}-{n}", src,
                               our_env=a.our_env)
        except Exception as e:  # a trial that breaks down (memory, a server dying) counts as not carried
            log(f"capacity {side}: {n} publishers failed: {e}")
            r = {"publishers": n, "no_segment_missing": False, "error": str(e), "machine_cpu_busy_pct": None,
                 "min_mem_available_mb": 0}
        keep = {k: r.get(k) for k in ("publishers", "no_segment_missing", "machine_cpu_busy_pct",
                                      "server_cpu_s_per_stream_min", "media_cpu_s_per_stream_min",
                                      "publishers_cpu_s_per_stream_min", "publishers_died",
                                      "segments_written", "segments_closed_at_media", "segments_listed_at_edge",
                                      "segments_dropped", "edge_sequence_gaps", "availability_latency_ms",
                                      "min_mem_available_mb", "other_cpu_pct", "error")}
        keep["publishers_died"] = len(keep["publishers_died"] or [])
        trials.append({k: v for k, v in keep.items() if v is not None})
        log(f"capacity {side}: {n} -> {'carried' if r['no_segment_missing'] else 'segments missing'}, "
            f"machine CPU {r['machine_cpu_busy_pct']}%")
        if r["no_segment_missing"]:
            ok_n = n
        else:
            fail_n = n
        if fail_n is None:
            n = n + a.capacity_step
            if r["min_mem_available_mb"] < 3000:
                break  # the next step would run out of memory (publishers, the broker's page cache)
        else:
            step = (fail_n - ok_n) // 2
            step -= step % a.capacity_fine
            if fail_n - ok_n <= a.capacity_fine:
                break
            n = ok_n + max(a.capacity_fine, step)
    return {"carried": ok_n, "first_failure": fail_n, "trials": trials,
            "search_seconds": round(time.time() - t_start)}


LL_MJS = ROOT / "e2e" / "browser" / "ll.mjs"


def paired(n, src, a, out):
    """Both servers at once: ours (broker + media + edge) and nginx-rtmp, n publishers each, CPU read over
    the same windows (--paired-rounds of --paired-seconds).

    Why, beside the one-side-at-a-time ingest runs: on this VM a process's CPU for the same work drifts
    between runs minutes apart (nginx-rtmp alone at 20 publishers measured 0.142 and 0.254 CPU-s per
    stream-minute in two quiet runs), so a ratio of two such runs carries the drift of both. Side by
    side, both servers see the same machine at the same moment. Only for a load that leaves the cores
    room: 2n publishers run at once."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    procs = Procs(out)
    res = {"publishers_each": n, "seconds": a.paired_seconds, "rounds": []}
    try:
        o = Ours(procs, env=a.our_env)
        ng = Nginx(procs, rtmp=True, workers=1)
        procs.cleanups.append(ng.cleanup)
        ours_pubs = start_publishers(procs, n, o.rtmp_base, src, name="ours")
        ng_pubs = start_publishers(procs, n, ng.rtmp_base, src, name="ngx")
        wait = 30 + n * 0.3
        deadline = time.time() + wait
        while time.time() < deadline:
            if o.all_live(n) and ng.all_live([f"ngx{i}" for i in range(n)]):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"not every stream went live within {wait:.0f} s")
        time.sleep(a.warmup)
        pids = {**o.pids(), **{f"nginx-{k}": p for k, p in ng.pids().items()}}

        def snap():
            return ({k: cpu_seconds(p) for k, p in pids.items()}, sum(cpu_seconds(p.pid) for p in ours_pubs),
                    sum(cpu_seconds(p.pid) for p in ng_pubs), machine_jiffies(), time.time())
        for _ in range(a.paired_rounds):
            c0, po0, pn0, j0, t0 = snap()
            time.sleep(a.paired_seconds)
            c1, po1, pn1, j1, t1 = snap()
            per = 60 / (t1 - t0) / n
            d = {k: (c1[k] - c0[k]) * per for k in pids}
            nginx = sum(v for k, v in d.items() if k.startswith("nginx-"))
            res["rounds"].append({
                "media": round(d["media"], 4), "broker": round(d["broker"], 4), "edge": round(d["edge"], 4),
                "nginx": round(nginx, 4), "ratio": round(d["media"] / nginx, 3) if nginx else None,
                "publishers_ours": round((po1 - po0) * per, 4), "publishers_nginx": round((pn1 - pn0) * per, 4),
                "machine_cpu_busy_pct": round(100 * busy_fraction(j0, j1), 1)})
            log(f"  paired round: {json.dumps(res['rounds'][-1])}")
        died = [p.bench_name for p in ours_pubs + ng_pubs if p.poll() is not None]
        res["publishers_died"] = died
    finally:
        procs.stop_all()
    return res


def latency(sides, src, a, out):
    """hls.js latency in headless Chromium, one side at a time (see 4. above). Returns {side: result}."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if not (LL_MJS.parent / "node_modules" / "playwright-core").exists():
        return {"error": "e2e/browser/node_modules missing: run `npm ci` in e2e/browser"}
    hlsjs = out / "hls.min.js"
    res = {}
    for side in sides:
        name = side.name if isinstance(side, Peer) else side
        log(f"latency: {name}, 1 publisher, {a.latency_seconds} s in hls.js")
        procs = Procs(out / name)
        ng = None
        prefix = f"lat{int(time.time()) % 100000}x"
        stream = prefix + "0"  # what start_publishers names the first publisher's stream
        try:
            if side == "ours":
                srv = Ours(procs, env=a.our_env, bin_dir=a.bin_dir)
                base = f"http://127.0.0.1:{srv.eport}"
                if not hlsjs.exists():
                    hlsjs.write_bytes(http_get(base + "/assets/hls.min.js"))
                players = {"ll": f"{base}/live/{stream}/ll.m3u8,ll", "plain": f"{base}/live/{stream}/index.m3u8"}
                ready = lambda: len(re.findall(rb"#EXTINF", http_get(f"{base}/live/{stream}/index.m3u8"))) >= 3
            elif side == "nginx":
                srv = ng = Nginx(procs, rtmp=True, workers=1, hls_http=True)
                url = f"http://127.0.0.1:{ng.hport}/hls/{stream}.m3u8"
                players = {"plain": url}
                ready = lambda: len(re.findall(rb"#EXTINF", http_get(url))) >= 3
            else:
                srv = side
                players = {"ll": side.url(stream, ll=True) + ",ll", "plain": side.url(stream)}
                # MediaMTX lists placeholder EXT-X-GAP segments in a new stream's window; a player that starts
                # on them (plain HLS starts 3 segments back) stalls, so wait until they have left the window.
                ready = lambda: len(re.findall(r"^#EXTINF", (side.media_playlist(stream) or ("", ""))[1], re.M)) >= 3 \
                    and "#EXT-X-GAP" not in side.media_playlist(stream)[1]
            if not hlsjs.exists():
                fallback = ROOT / "web/node_modules/hls.js/dist/hls.min.js"
                shutil.copy(fallback, hlsjs)
            start_publishers(procs, 1, srv.rtmp_base, src, name=prefix)
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if ready():
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{name}: no playlist with 3 segments after 60 s")
            bout = out / name / "browser"
            bout.mkdir(parents=True, exist_ok=True)
            cmd = ["node", str(LL_MJS), "--hlsjs-file", str(hlsjs), "--out", str(bout), "--seconds",
                   str(a.latency_seconds)]
            for k, v in players.items():
                cmd += ["--player", f"{k}={v}"]
            if isinstance(side, Peer):
                # The page is opened at the peer's origin first: its requests are then same-origin (MediaMTX
                # sends no CORS header for about:blank's Origin: null).
                u = urllib.parse.urlsplit(side.url(stream))
                cmd += ["--origin", f"{u.scheme}://{u.netloc}/"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.latency_seconds + 120)
            (out / name / "browser.log").write_text(r.stdout + r.stderr)
            result = json.loads((bout / "result.json").read_text())
            keep = {"ok": result.get("ok"), "error": result.get("error"), "hls.js": result.get("hlsVersion"),
                    "chromium": result.get("browserVersion")}
            for k in players:
                pr = result.get(k) or {}
                keep[k] = {x: pr.get(x) for x in ("url", "samples", "medianLatency", "p90Latency", "maxLatency",
                                                   "medianWallLatency", "p90WallLatency", "targetLatency",
                                                   "played", "stalls", "errors")}
                if keep[k]["errors"]:
                    keep[k]["errors"] = keep[k]["errors"][:5]
            res[name] = keep
            log(f"  {name}: " + ", ".join(f"{k} median {keep[k]['medianLatency']} s (wall {keep[k]['medianWallLatency']})"
                                         for k in players))
        except Exception as e:
            log(f"latency {name} failed: {e}")
            res[name] = {"ok": False, "error": str(e)}
        finally:
            procs.stop_all()
            if ng:
                ng.cleanup()
    return res


def ratio(ours, theirs):
    if ours is None or theirs in (None, 0):
        return None
    return round(ours / theirs, 2)


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.1f}".rstrip("0").rstrip(".")
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def side_by_side(R, a):
    """Ours, nginx-rtmp and every peer in one table: CPU per stream-minute, RSS, segments, hls.js latency."""
    peers = [p.name for p in a.peers]
    if not peers and not R.get("latency"):
        return ""
    sides = ["ours", "nginx", *peers]
    rows = []
    for n in a.publishers:
        I = {s: R["ingest"].get(f"{s}-{n}", {}) for s in sides}

        def cell(s, f):
            try:
                return f(I[s])
            except (KeyError, TypeError):
                return "n/a"
        rows.append((f"{n} publishers: server CPU-s per stream-minute", *[
            cell(s, lambda r: f"{fmt(r['media_cpu_s_per_stream_min'])} media alone, {fmt(r['server_cpu_s_per_stream_min'])} "
                 f"with broker + edge" if s == "ours" else fmt(r["server_cpu_s_per_stream_min"])) for s in sides]))
        rows.append((f"{n} publishers: ratio to nginx-rtmp (ours: media alone)", *[
            cell(s, lambda r: fmt(ratio(r["media_cpu_s_per_stream_min"] if s == "ours" else r["server_cpu_s_per_stream_min"],
                                        I["nginx"]["server_cpu_s_per_stream_min"]), "x")) for s in sides]))
        rows.append((f"{n} publishers: peak RSS", *[
            cell(s, lambda r: f"{fmt(r['peak_rss_mb']['media'])} MB media, {fmt(r['peak_rss_mb_total'])} MB with broker + edge"
                 if s == "ours" else (fmt(r["peak_rss_mb_total"], " MB") if r.get("peak_rss_mb") else "n/a (no pid)"))
            for s in sides]))
        rows.append((f"{n} publishers: segments per stream in the window, min-max (expected)", *[
            cell(s, lambda r: (lambda w: f"{w['per_stream_min']}-{w['per_stream_max']} ({w['expected_per_stream']})")(
                r.get("segments_listed_at_edge") or r["segments_written"])) for s in sides]))
        rows.append((f"{n} publishers: machine busy / other CPU", *[
            cell(s, lambda r: f"{r['machine_cpu_busy_pct']}% / {r['other_cpu_pct']}%") for s in sides]))
    L = R.get("latency") or {}

    def lat(s, k):
        r = L.get(s)
        if not r:
            return "not run"
        if not r.get("ok"):
            return f"failed: {str(r.get('error'))[:80]}"
        x = r.get(k)
        if not x:
            return "n/a (no LL-HLS)" if k == "ll" else "n/a"
        txt = f"{fmt(x['medianLatency'])} s (p90 {fmt(x['p90Latency'])})"
        if x.get("medianWallLatency") is not None:
            txt += f"; wall clock {fmt(x['medianWallLatency'])} s"
        return txt + f", {x['stalls']} stalls, played {fmt(x['played'])} s"
    if L:
        rows.append(("hls.js latency, LL-HLS (lowLatencyMode), median", *[lat(s, "ll") for s in sides]))
        rows.append(("hls.js latency, plain HLS, median", *[lat(s, "plain") for s in sides]))
    head = "| figure | " + " | ".join(sides) + " |\n|---|" + "---|" * len(sides) + "\n"
    return ("\nSide by side, the same clip, one side at a time (hls.js "
            f"{next((v.get('hls.js') for v in L.values() if isinstance(v, dict) and v.get('hls.js')), '?')}, "
            f"{a.latency_seconds} s of playback per side):\n\n" + head
            + "\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in rows) + "\n")


def table(R, a):
    rows = []

    def row(figure, ours, theirs, target=None, met=None, r=None, unit=""):
        if r is None and isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
            r = ratio(ours, theirs)
        rows.append((figure, fmt(ours, unit), fmt(theirs, unit), "" if r is None else f"{r:.2f}x",
                     target or "", "" if met is None else ("met" if met else "**missed**")))

    for n in a.publishers:
        o, g = R["ingest"][f"ours-{n}"], R["ingest"][f"nginx-{n}"]
        mr = ratio(o["media_cpu_s_per_stream_min"], g["server_cpu_s_per_stream_min"])
        row(f"{n} publishers: server CPU-s per stream-minute, media alone vs nginx", o["media_cpu_s_per_stream_min"],
            g["server_cpu_s_per_stream_min"], "<= 0.6x", mr is not None and mr <= 0.6)
        row(f"{n} publishers: server CPU-s per stream-minute, media+broker+edge vs nginx",
            o["server_cpu_s_per_stream_min"], g["server_cpu_s_per_stream_min"])
        per = o.get("cpu_s_per_stream_min", {})
        row(f"{n} publishers: CPU-s per stream-minute of the broker (Apache Kafka's JVM) / of the edge",
            f"{per.get('broker')} / {per.get('edge')}", None)
        row(f"{n} publishers: CPU-s per stream-minute of the ffmpeg publishers (load generator)",
            o["publishers_cpu_s_per_stream_min"], g["publishers_cpu_s_per_stream_min"])
        row(f"{n} publishers: whole machine busy / of which not the servers or publishers (should be ~0)",
            f"{o['machine_cpu_busy_pct']}% / {o['other_cpu_pct']}%", f"{g['machine_cpu_busy_pct']}% / {g['other_cpu_pct']}%")
        row(f"{n} publishers: peak RSS, media vs nginx (master+worker+cache manager)", o["peak_rss_mb"]["media"],
            g["peak_rss_mb_total"], unit=" MB")
        row(f"{n} publishers: peak RSS, media+broker+edge vs nginx", o["peak_rss_mb_total"], g["peak_rss_mb_total"],
            unit=" MB")
        row(f"{n} publishers: RSS per publisher (peak / N)", o["media_rss_mb_per_publisher"],
            g["nginx_rss_mb_per_publisher"], "<= 2 MB", o["media_rss_mb_per_publisher"] <= 2, unit=" MB")
        row(f"{n} publishers: RSS per publisher ((peak - idle) / N)", o["media_rss_mb_per_publisher_marginal"],
            g["nginx_rss_mb_per_publisher_marginal"], unit=" MB")
        e = o["segments_listed_at_edge"]
        w = g["segments_written"]
        row(f"{n} publishers: segments in {o['seconds']:.0f} s (listed at the edge / written by nginx), "
            f"expected {e['expected']:.0f}", e["total"], w["total"], "none missing",
            o["no_segment_missing"] and g["no_segment_missing"], r=ratio(e["total"], w["total"]))
        row(f"{n} publishers: per-stream segments min-max (expected {e['expected_per_stream']:.1f} +-1)",
            f"{e['per_stream_min']}-{e['per_stream_max']}", f"{w['per_stream_min']}-{w['per_stream_max']}")
        lat = o["availability_latency_ms"]
        row(f"{n} publishers: availability latency p50 / p99 / max (closed at media -> listed at edge)",
            f"{lat['p50']} / {lat['p99']} / {lat['max']} ms", "n/a (no edge)", "p50 <= 20, p99 <= 100 ms",
            lat["p50"] is not None and lat["p50"] <= 20 and lat["p99"] <= 100)
        pr, ae = o.get("produce_latency_ms") or {}, o.get("acked_to_edge_ms") or {}
        row(f"{n} publishers: of which media queued -> broker acknowledged / acknowledged -> listed at edge, p50 / p99",
            f"{pr.get('p50')} / {pr.get('p99')} ms; {ae.get('p50')} / {ae.get('p99')} ms", "n/a")
        pl = o.get("part_availability_latency_ms") or {}
        row(f"{n} publishers: LL-HLS part availability p50 / p99 / max (part closed at media -> listed at edge)",
            f"{pl.get('p50')} / {pl.get('p99')} / {pl.get('max')} ms ({pl.get('parts')} parts)", "n/a (no LL-HLS)")
        cs = o.get("edge_cold_start")
        if cs:
            row(f"{n} publishers: edge cold start: process start -> full window of all {cs['streams']} streams served",
                cs["all_streams_s"], None, "<= 1 s", cs["all_streams_s"] is not None and cs["all_streams_s"] <= 1,
                unit=" s")
        bound = o["edge_cache_bytes"] * 1.2 / 2**20 + 50
        row(f"{n} publishers: edge peak RSS (cache {o['edge_cache_bytes'] / 2**20:.0f} MiB, "
            f"{o['edge_cache_bytes_used'] / 2**20:.0f} MiB used)", o["peak_rss_mb"]["edge"], None,
            f"<= {bound:.0f} MB", o["peak_rss_mb"]["edge"] <= bound, unit=" MB")
    P = R.get("paired") or {}
    for n, p in P.items():
        rs = [x["ratio"] for x in p["rounds"] if x["ratio"] is not None]
        med = pct(rs, 50)
        row(f"{n} publishers each, paired (both servers at once, the same {p['seconds']} s windows): CPU-s per "
            f"stream-minute, media alone vs nginx, median of {len(rs)} rounds (rounds: "
            + ", ".join(f"{x['ratio']}x" for x in p["rounds"]) + ")",
            pct([x["media"] for x in p["rounds"]], 50), pct([x["nginx"] for x in p["rounds"]], 50), "<= 0.6x",
            med is not None and med <= 0.6 and not p["publishers_died"], r=med)
    S = R.get("serving")
    if S:
        for what in ("segment", "playlist"):
            e, g = S["edge"][what], S["nginx"][what]
            size = S["segment_bytes"] if what == "segment" else S["playlist_bytes"]
            row(f"serving a hot {what} ({size:,} bytes): requests/s", e["rps"], g["rps"], ">= 1.0x",
                e["rps"] >= g["rps"])
            row(f"serving a hot {what}: latency p50", e["p50_ms"], g["p50_ms"], unit=" ms")
            row(f"serving a hot {what}: latency p99", e["p99_ms"], g["p99_ms"], "no worse", e["p99_ms"] <= g["p99_ms"],
                unit=" ms")
            row(f"serving a hot {what}: server CPU-s during the run / wrk's own CPU-s",
                f"{e['server_cpu_s']} / {e['wrk_cpu_s']}", f"{g['server_cpu_s']} / {g['wrk_cpu_s']}")
        row("edge peak RSS while serving", S["edge"]["segment"]["server_rss_mb"], S["nginx"]["segment"]["server_rss_mb"],
            unit=" MB")
    C = R.get("capacity")
    if C:
        o, g = C["ours"], C["nginx"]

        def carried(c):
            return f"{c['carried']}" + ("" if c["first_failure"] else " (no failure found: search bound)")
        row(f"capacity: publishers carried with no missing segment (everything on the {R['cores']} cores: "
            "publishers, and for this project broker and edge too)",
            carried(o), carried(g), ">= 1.25x", (o["carried"] or 0) >= 1.25 * (g["carried"] or 1),
            r=ratio(o["carried"], g["carried"]))
    big = max(a.publishers)
    if f"ours-{big}" in R["ingest"]:
        o, g = R["ingest"][f"ours-{big}"], R["ingest"][f"nginx-{big}"]
        budget = 60 * R["cores"]
        po = int(budget / o["media_cpu_s_per_stream_min"]) if o["media_cpu_s_per_stream_min"] else None
        pg = int(budget / g["server_cpu_s_per_stream_min"]) if g["server_cpu_s_per_stream_min"] else None
        row(f"projection, not measured: publishers the {R['cores']} cores would carry with nothing else on them, "
            f"media vs nginx ({budget} CPU-s per minute / CPU-s per stream-minute at {big})", po, pg)
        # What the capacity trial can show at best here: the broker, the edge and the publishers share the
        # cores with media, so even a media that cost nothing leaves their CPU per stream.
        rest = o["server_cpu_s_per_stream_min"] - o["media_cpu_s_per_stream_min"] + o["publishers_cpu_s_per_stream_min"]
        whole = g["server_cpu_s_per_stream_min"] + g["publishers_cpu_s_per_stream_min"]
        row(f"ceiling, not measured: publishers the {R['cores']} cores could carry if media cost nothing "
            f"({budget} CPU-s per minute / (broker + edge + publishers) vs (nginx + publishers), per stream-minute "
            f"at {big})", int(budget / rest) if rest else None, int(budget / whole) if whole else None)
    head = "| figure | this project | nginx | ratio | target | |\n|---|---|---|---|---|---|\n"
    md = head + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"
    md += side_by_side(R, a)
    if C:
        md += ("\nCapacity trials (each a fresh start of one side; 'machine' is all CPUs busy, publishers "
               "included; 'other' is CPU nobody here accounts for):\n\n| side | publishers | carried | machine CPU (other) | server CPU-s/stream-min | "
               "publishers' CPU-s/stream-min | segments per stream (min-max, expected) |\n"
               "|---|---|---|---|---|---|---|\n")
        for side in ("nginx", "ours"):
            for t in C[side]["trials"]:
                seg = t.get("segments_listed_at_edge") or t.get("segments_written") or {}
                md += (f"| {side} | {t['publishers']} | {'yes' if t['no_segment_missing'] else 'no'} | "
                       f"{t.get('machine_cpu_busy_pct')}% ({t.get('other_cpu_pct')}%) | "
                       f"{t.get('server_cpu_s_per_stream_min')} | "
                       f"{t.get('publishers_cpu_s_per_stream_min')} | {seg.get('per_stream_min')}-"
                       f"{seg.get('per_stream_max')} ({seg.get('expected_per_stream')})"
                       + (f" {t['error']}" if t.get("error") else "") + " |\n")
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", default="20,100", help="publisher counts of the main runs [20,100]")
    ap.add_argument("--seconds", type=int, default=60, help="measured seconds per main run [60]")
    ap.add_argument("--warmup", type=int, default=10, help="seconds after every stream is live [10]")
    ap.add_argument("--paired", default="20",
                    help="publisher counts (each side) of the paired CPU runs, both servers at once; '' skips [20]")
    ap.add_argument("--paired-seconds", type=int, default=40, help="seconds per paired round [40]")
    ap.add_argument("--paired-rounds", type=int, default=3, help="rounds per paired run [3]")
    ap.add_argument("--no-serving", dest="serving", action="store_false", help="skip the wrk runs")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=50)
    ap.add_argument("--wrk-seconds", type=int, default=20)
    ap.add_argument("--no-capacity", dest="capacity", action="store_false", help="skip the capacity search")
    ap.add_argument("--capacity-start", type=int, default=200)
    ap.add_argument("--capacity-step", type=int, default=80, help="coarse step while runs pass [80]")
    ap.add_argument("--capacity-fine", type=int, default=20, help="resolution of the search [20]")
    ap.add_argument("--capacity-max", type=int, default=480)
    ap.add_argument("--capacity-seconds", type=int, default=30, help="measured seconds per trial [30]")
    ap.add_argument("--capacity-budget", type=int, default=270,
                    help="no new trial after this many seconds, per side [300]")
    ap.add_argument("--our-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of media and the edge (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=131072")
    ap.add_argument("--peer", action="append", default=[], metavar="NAME=RTMP_BASE,HLS[,LL]",
                    help="a running server to compare (repeatable): publishers go to RTMP_BASE/<stream>; HLS is a "
                         "base (HLS/<stream>/index.m3u8) or a template with {stream}; LL, optional, the LL-HLS "
                         "playlist template for the latency run")
    ap.add_argument("--peer-pid", action="append", default=[], metavar="NAME=PID",
                    help="the peer's process, read in /proc for CPU and RSS (its children too)")
    ap.add_argument("--no-latency", dest="latency", action="store_false", help="skip the hls.js latency runs")
    ap.add_argument("--latency-seconds", type=int, default=40, help="seconds of playback per side [40]")
    ap.add_argument("--bin-dir", default=None, help="where media and cdn-edge are [BENCH_BIN_DIR or target/release]")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    a = ap.parse_args()
    a.bin_dir = bin_dir_default(a.bin_dir)
    os.environ["BENCH_BIN_DIR"] = str(a.bin_dir)  # for every Ours below
    pids = {k: int(v) for k, v in (x.split("=", 1) for x in a.peer_pid)}
    a.peers = [Peer.parse(x, pids) for x in a.peer]
    a.publishers = [int(x) for x in a.publishers.split(",")]
    a.our_env = dict(kv.split("=", 1) for kv in a.our_env)
    out = Path(a.out)
    logs = out / "compare"
    out.mkdir(parents=True, exist_ok=True)
    for b in ("media", "cdn-edge"):
        if not (a.bin_dir / b).exists():
            sys.exit(f"{a.bin_dir / b} missing: run `cargo build --release --bins` first (or give --bin-dir)")
    if not shutil.which("wrk") and a.serving:
        sys.exit("wrk missing: run scripts/install-deps.sh")
    src = clip()
    j0 = machine_jiffies()
    time.sleep(2)
    j1 = machine_jiffies()
    busy_before = round(100 * busy_fraction(j0, j1), 1)
    if busy_before > 5:
        log(f"WARNING: the machine is already {busy_before}% busy; the figures will not be clean")
    t0 = time.time()
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    R = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "cpu": cpu.group(1) if cpu else "?", "command": " ".join(["python3", "bench/compare.py"] + sys.argv[1:]),
         "bin_dir": str(a.bin_dir), "busy_before_pct": busy_before, "ingest": {},
         "peers": {p.name: {"rtmp": p.rtmp_base, "hls": p.hls, "ll": p.ll, "pid": p.pid} for p in a.peers}}
    for n in a.publishers:
        for side in ("nginx", "ours", *a.peers):
            name = side.name if isinstance(side, Peer) else side
            log(f"ingest: {name}, {n} publishers, {a.seconds} s")
            r = measure_ingest(side, n, a.seconds, a.warmup, logs / f"{name}-{n}", src,
                               cold_start=(side == "ours"), our_env=a.our_env)
            R["ingest"][f"{name}-{n}"] = r
            log(f"  {json.dumps({k: r.get(k) for k in ('server_cpu_s_per_stream_min', 'media_cpu_s_per_stream_min', 'publishers_cpu_s_per_stream_min', 'machine_cpu_busy_pct', 'no_segment_missing', 'availability_latency_ms')})}")
    R["paired"] = {}
    for n in [int(x) for x in a.paired.split(",") if x.strip()]:
        log(f"paired: ours and nginx at once, {n} publishers each, {a.paired_rounds} x {a.paired_seconds} s")
        R["paired"][n] = paired(n, src, a, logs / f"paired-{n}")
    if a.latency:
        R["latency"] = latency(["ours", "nginx", *a.peers], src, a, logs / "latency")
    if a.serving:
        log("serving: wrk against the edge, then nginx")
        R["serving"] = serving(logs / "serving", src, a)
    if a.capacity:
        known = {s: max([n for n in a.publishers if R["ingest"][f"{s}-{n}"]["no_segment_missing"]], default=0)
                 for s in ("nginx", "ours")}
        R["capacity"] = {s: capacity(s, src, a, logs / "capacity", known[s]) for s in ("nginx", "ours")}
    R["runtime_s"] = round(time.time() - t0)
    md = (f"`{R['command']}` on {R['date']}, {R['cores']} cores ({R['cpu']}, "
          f"{R['runtime_s']} s in all). Ratios are this project / nginx. nginx-rtmp: master + 1 worker "
          f"(`live on; hls on; hls_fragment 2s`, HLS on tmpfs); static nginx: `worker_processes auto` "
          f"({R.get('serving', {}).get('nginx_workers', '?')} workers), `sendfile on`, files on tmpfs. "
          f"Ours: Apache Kafka 4.1.1 single node (1 GB heap) + media + edge, defaults, binaries from "
          f"{a.bin_dir}. wrk runs on the same cores as the server under test, for both sides alike; the "
          f"ffmpeg publishers likewise (their CPU is shown).\n\n" + table(R, a))
    (out / "compare.md").write_text(md)
    (out / "compare.json").write_text(json.dumps(R, indent=2))
    print(md)
    print(f"written: {out / 'compare.md'}, {out / 'compare.json'}")


if __name__ == "__main__":
    main()
