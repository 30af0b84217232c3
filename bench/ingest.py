#!/usr/bin/env python3
"""Ingest benchmark: N ffmpeg publishers (-re -stream_loop -1 -c copy of a 1280x720 30 fps, 2.5 Mbps
H.264 + 128 kbps AAC clip with a 2 s GOP) into a release build of media, through the Tansu broker, to one
edge. Reports media CPU seconds per stream-minute (and media+broker+edge), peak RSS, segments delivered vs
expected, and segment availability latency (closed at media -> listed in the edge playlist), read from the
edge's per-segment log lines.

    python3 bench/ingest.py --publishers 20 --seconds 60

Needs: scripts/install-deps.sh done, `cargo build --release --bins`. Loopback only.
"""
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LIVE_CACHE_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "live-video"))
TANSU = Path(os.environ.get("TANSU_BIN", CACHE / "tansu-0.6.0/bin/tansu"))
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def cpu_seconds(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK  # utime, stime


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def clip():
    out = CACHE / "bench-720p-2500k.flv"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating {out} once", flush=True)
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "30",
                        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-maxrate", "2500k",
                        "-bufsize", "5000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(out)], check=True)
    return out


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    # Tansu does not wake a waiting fetch when records arrive, so the edge's long-poll wait becomes
    # latency; Apache Kafka does, and keeps the edge's default of 100 ms.
    ap.add_argument("--edge-kafka-option", action="append", default=None,
                    help="KEY=VALUE passed to the edge as --kafka-option (repeatable) "
                         "[default: fetch.wait.max.ms=10, for Tansu]")
    a = ap.parse_args()
    if a.edge_kafka_option is None:
        a.edge_kafka_option = ["fetch.wait.max.ms=10"]
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    src = clip()
    procs = []

    def spawn(name, cmd, env=None):
        log = open(out / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
        procs.append(p)
        return p

    try:
        bport, rport, hport, eport = free_port(), free_port(), free_port(), free_port()
        url = f"tcp://127.0.0.1:{bport}"
        broker = spawn("broker", [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                  "--storage-engine", "memory://tansu/"], {"RUST_LOG": "warn"})
        wait_port(bport)
        for _ in range(50):
            if subprocess.run([str(TANSU), "topic", "create", "live-topic", "--broker", url, "--partitions", "8"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        media = spawn("media", [str(ROOT / "target/release/media"), "--rtmp-listen", f"127.0.0.1:{rport}",
                                "--http-listen", f"127.0.0.1:{hport}", "--kafka-brokers", f"127.0.0.1:{bport}",
                                "--segment-seconds", "2"], {"RUST_LOG": "info"})
        edge = spawn("edge", [str(ROOT / "target/release/cdn-edge"), "--http-listen", f"127.0.0.1:{eport}",
                              "--kafka-brokers", f"127.0.0.1:{bport}"]
                     + [x for o in a.edge_kafka_option for x in ("--kafka-option", o)],
                     {"RUST_LOG": "info,cdn_edge=debug"})
        wait_port(rport); wait_port(eport)
        for i in range(a.publishers):
            spawn(f"ffmpeg-{i}", ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(src), "-c", "copy",
                                  "-f", "flv", f"rtmp://127.0.0.1:{rport}/live/bench{i}"])
        time.sleep(a.warmup)
        pids = {"media": media.pid, "broker": broker.pid, "edge": edge.pid}
        c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        t0 = time.time()
        peak = {k: 0.0 for k in pids}
        while time.time() - t0 < a.seconds:
            time.sleep(1)
            for k, p in pids.items():
                peak[k] = max(peak[k], rss_mb(p))
        elapsed = time.time() - t0
        c1 = {k: cpu_seconds(p) for k, p in pids.items()}
        stream_minutes = a.publishers * elapsed / 60
        cpu = {k: (c1[k] - c0[k]) for k in pids}
        dead = [p.args[-1] for p in procs[3:] if p.poll() is not None]
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

    edge_log = (out / "edge.log").read_text()
    lat = [int(m) for m in re.findall(r"latency_ms=(\d+)", edge_log)]
    media_log = (out / "media.log").read_text()
    result = {
        "publishers": a.publishers, "seconds": round(elapsed, 1), "cores": os.cpu_count(),
        "media_cpu_s_per_stream_min": round(cpu["media"] / stream_minutes, 4),
        "all_cpu_s_per_stream_min": round(sum(cpu.values()) / stream_minutes, 4),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "peak_rss_mb": {k: round(v, 1) for k, v in peak.items()},
        "media_rss_mb_per_publisher": round(peak["media"] / a.publishers, 2),
        "segments_listed_at_edge": len(lat),
        "availability_latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else None},
        "publishers_died": dead,
        "media_warnings": len(re.findall(r" WARN ", media_log)),
    }
    print(json.dumps(result, indent=2))
    (out / "ingest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
