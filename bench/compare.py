#!/usr/bin/env python3
"""Side-by-side benchmark: this project (Tansu broker + media + one edge) against nginx-rtmp, on this
machine, one after the other (never together).

    python3 bench/compare.py                      # everything, about 20 minutes on 2 cores
    python3 bench/compare.py --no-capacity        # without the capacity search (about 8 minutes)

1. Ingest: the same N ffmpeg publishers (`-re -stream_loop -1 -c copy` of a 1280x720 30 fps 2.5 Mbps H.264
   + 128 kbps AAC clip, 2 s GOP, generated once into ~/.cache/live-video) for the same time into
   (a) nginx with Debian's nginx-rtmp: master + 1 worker, `live on; hls on; hls_fragment 2s`, HLS on tmpfs;
   (b) media with 2 s segments -> Tansu (in memory, 8 partitions) -> one edge.
   Server CPU per stream-minute, peak RSS, segments produced vs expected, availability latency (ours).
2. Serving: wrk against a hot ~700 KB segment and a playlist on the edge, then on nginx's http {} server
   (sendfile on, worker_processes auto) serving the same bytes copied to tmpfs.
3. Capacity: more publishers until segments go missing, each side alone, bounded in time.

Writes target/bench/compare.md (the table) and compare.json (every figure); logs under
target/bench/compare/. Needs scripts/install-deps.sh and `cargo build --release --bins`. Loopback only.
Not part of the test suite. Do not run anything else on the machine meanwhile.
"""
import argparse, json, os, re, resource, shutil, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (FETCH_WAIT_NOTE, ROOT, SEGMENT_SECONDS, Nginx, Ours, Procs, clip, cpu_seconds, http_get, log,
                    machine_jiffies, measure_ingest, rss_mb, start_publishers, wrk)


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
                break  # the next step would run out of memory (publishers + Tansu's in-memory log)
        else:
            step = (fail_n - ok_n) // 2
            step -= step % a.capacity_fine
            if fail_n - ok_n <= a.capacity_fine:
                break
            n = ok_n + max(a.capacity_fine, step)
    return {"carried": ok_n, "first_failure": fail_n, "trials": trials,
            "search_seconds": round(time.time() - t_start)}


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
            g["server_cpu_s_per_stream_min"], "<= 0.8x", mr is not None and mr <= 0.8)
        row(f"{n} publishers: server CPU-s per stream-minute, media+broker+edge vs nginx",
            o["server_cpu_s_per_stream_min"], g["server_cpu_s_per_stream_min"])
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
        bound = o["edge_cache_bytes"] * 1.2 / 2**20 + 50
        row(f"{n} publishers: edge peak RSS (cache {o['edge_cache_bytes'] / 2**20:.0f} MiB, "
            f"{o['edge_cache_bytes_used'] / 2**20:.0f} MiB used)", o["peak_rss_mb"]["edge"], None,
            f"<= {bound:.0f} MB", o["peak_rss_mb"]["edge"] <= bound, unit=" MB")
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
    cs = R["ingest"].get(f"ours-{a.publishers[0]}", {}).get("edge_cold_start")
    if cs:
        row(f"edge cold start: process start -> full window of all {cs['streams']} streams served",
            cs["all_streams_s"], None, "<= 1 s", cs["all_streams_s"] is not None and cs["all_streams_s"] <= 1,
            unit=" s")
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
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=FETCH_WAIT_NOTE)
    ap.add_argument("--publishers", default="20,100", help="publisher counts of the main runs [20,100]")
    ap.add_argument("--seconds", type=int, default=60, help="measured seconds per main run [60]")
    ap.add_argument("--warmup", type=int, default=10, help="seconds after every stream is live [10]")
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
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    a = ap.parse_args()
    a.publishers = [int(x) for x in a.publishers.split(",")]
    a.our_env = dict(kv.split("=", 1) for kv in a.our_env)
    out = Path(a.out)
    logs = out / "compare"
    out.mkdir(parents=True, exist_ok=True)
    for b in ("media", "cdn-edge"):
        if not (ROOT / "target/release" / b).exists():
            sys.exit(f"target/release/{b} missing: run `cargo build --release --bins` first")
    if not shutil.which("wrk") and a.serving:
        sys.exit("wrk missing: run scripts/install-deps.sh")
    log(FETCH_WAIT_NOTE)
    src = clip()
    j0 = machine_jiffies()
    time.sleep(2)
    j1 = machine_jiffies()
    busy_before = round(100 * (j1[0] - j0[0]) / max(1, j1[1] - j0[1]), 1)
    if busy_before > 5:
        log(f"WARNING: the machine is already {busy_before}% busy; the figures will not be clean")
    t0 = time.time()
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    R = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "cpu": cpu.group(1) if cpu else "?", "command": " ".join(["python3", "bench/compare.py"] + sys.argv[1:]),
         "fetch_wait_note": FETCH_WAIT_NOTE, "busy_before_pct": busy_before, "ingest": {}}
    for n in a.publishers:
        for side in ("nginx", "ours"):
            log(f"ingest: {side}, {n} publishers, {a.seconds} s")
            r = measure_ingest(side, n, a.seconds, a.warmup, logs / f"{side}-{n}", src,
                               cold_start=(side == "ours" and n == a.publishers[0]), our_env=a.our_env)
            R["ingest"][f"{side}-{n}"] = r
            log(f"  {json.dumps({k: r.get(k) for k in ('server_cpu_s_per_stream_min', 'media_cpu_s_per_stream_min', 'publishers_cpu_s_per_stream_min', 'machine_cpu_busy_pct', 'no_segment_missing', 'availability_latency_ms')})}")
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
          f"{FETCH_WAIT_NOTE}. wrk runs on the same cores as the server under test, for both sides alike; the "
          f"ffmpeg publishers likewise (their CPU is shown).\n\n" + table(R, a))
    (out / "compare.md").write_text(md)
    (out / "compare.json").write_text(json.dumps(R, indent=2))
    print(md)
    print(f"written: {out / 'compare.md'}, {out / 'compare.json'}")


if __name__ == "__main__":
    main()
