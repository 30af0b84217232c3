#!/usr/bin/env python3
"""Ingest benchmark, this project only: N ffmpeg publishers (-re -stream_loop -1 -c copy of a 1280x720
30 fps, 2.5 Mbps H.264 + 128 kbps AAC clip with a 2 s GOP) into a release build of media, through a
single-node Apache Kafka (scripts/kafka/node.sh, live-topic as scripts/kafka/live-topic.properties says), to
one edge, every process with its defaults. Reports media CPU seconds per stream-minute (and media+broker+edge), peak RSS,
segments closed / listed at the edge vs expected, and segment availability latency (closed at media ->
listed in the edge playlist) and LL-HLS part availability, read from the edge's per-segment and per-part
log lines. The broker's (the JVM's) CPU and RSS are counted with ours.

    python3 bench/ingest.py --publishers 20 --seconds 60

bench/compare.py runs the same measurement side by side with nginx-rtmp. Needs: scripts/install-deps.sh
done, `cargo build --release --bins` (or BENCH_BIN_DIR=DIR with media and cdn-edge in it). Loopback only.
"""
import argparse, json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, clip, measure_ingest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10, help="seconds after every stream is live [10]")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    ap.add_argument("--edge-kafka-option", action="append", default=None,
                    help="KEY=VALUE passed to the edge as --kafka-option (repeatable) "
                         "[none: the edge's defaults]")
    ap.add_argument("--cold-start", action="store_true",
                    help="also time a second edge from process start to every stream's full window")
    ap.add_argument("--our-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of media and the edge (repeatable), e.g. TOKIO_WORKER_THREADS=1")
    a = ap.parse_args()
    out = Path(a.out)
    result = measure_ingest("ours", a.publishers, a.seconds, a.warmup, out / "ingest", clip(),
                            cold_start=a.cold_start, edge_options=a.edge_kafka_option,
                            our_env=dict(kv.split("=", 1) for kv in a.our_env))
    print(json.dumps(result, indent=2))
    (out / "ingest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
