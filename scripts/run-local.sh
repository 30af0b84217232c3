#!/usr/bin/env bash
# Starts the whole video path on this machine with defaults: the broker (Tansu) on 127.0.0.1:9092 with the
# topic created, `media` (RTMP on :1935) and one `cdn-edge` (HTTP on :8080). Ctrl-C stops everything.
# Installs what it needs first. Ports can be changed with BROKER_PORT, RTMP_PORT, EDGE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
CACHE_DIR="${LIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/live-video}"
TANSU="${TANSU_BIN:-$CACHE_DIR/tansu-0.6.0/bin/tansu}"
BROKER_PORT="${BROKER_PORT:-9092}"
RTMP_PORT="${RTMP_PORT:-1935}"
EDGE_PORT="${EDGE_PORT:-8080}"
TOPIC="${TOPIC:-live-topic}"
LOG_DIR="${LOG_DIR:-.tmp/local}"
mkdir -p "$LOG_DIR"

echo "==> building media and cdn-edge (release)"
cargo build --release --bins

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$BROKER_PORT" "$RTMP_PORT" "$EDGE_PORT"; do
  if port_busy "$p"; then
    echo "error: port $p is already in use; stop what uses it or set BROKER_PORT/RTMP_PORT/EDGE_PORT" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  echo; echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> starting the broker on 127.0.0.1:$BROKER_PORT (in memory; Tansu does not enforce retention.ms)"
RUST_LOG=warn "$TANSU" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine memory://tansu/ \
  >"$LOG_DIR/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do port_busy "$BROKER_PORT" && break; sleep 0.1; done
for _ in $(seq 50); do
  if "$TANSU" topic create "$TOPIC" --broker "tcp://127.0.0.1:$BROKER_PORT" --partitions 3 >/dev/null 2>&1; then break; fi
  sleep 0.2
done

./target/release/media --rtmp-listen "0.0.0.0:$RTMP_PORT" --kafka-brokers "127.0.0.1:$BROKER_PORT" \
  --topic "$TOPIC" >"$LOG_DIR/media.log" 2>&1 &
pids+=($!)
# Tansu does not wake a waiting fetch when records arrive, so a short fetch wait keeps segments reaching
# the edge within ~10 ms; against Apache Kafka the edge's default (100 ms) is right.
./target/release/cdn-edge --http-listen "0.0.0.0:$EDGE_PORT" --kafka-brokers "127.0.0.1:$BROKER_PORT" \
  --topic "$TOPIC" --kafka-option fetch.wait.max.ms=10 >"$LOG_DIR/edge.log" 2>&1 &
pids+=($!)
sleep 1

cat <<MSG

  Publish:  ffmpeg -re -i INPUT -c:v libx264 -c:a aac -f flv rtmp://127.0.0.1:$RTMP_PORT/live/mystream
            (OBS: server rtmp://127.0.0.1:$RTMP_PORT/live, stream key mystream)
  Watch:    http://127.0.0.1:$EDGE_PORT/live/mystream/index.m3u8   (ffplay, VLC, Safari, hls.js)
  LL-HLS:   http://127.0.0.1:$EDGE_PORT/live/mystream/ll.m3u8      (Safari, hls.js lowLatencyMode)
  Logs:     $LOG_DIR/{broker,media,edge}.log

  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $LOG_DIR for its log" >&2
