#!/usr/bin/env bash
# Starts the whole video path on this machine with defaults: a single-node Apache Kafka on 127.0.0.1:9092
# (its log under .tmp/local/kafka) with live-topic created as scripts/kafka/live-topic.properties says,
# `media` (RTMP on :1935) and one `cdn-edge` (HTTP on :8080). Ctrl-C stops everything; the topic and its
# records survive to the next run. Installs what it needs first. Ports can be changed with BROKER_PORT,
# CONTROLLER_PORT, RTMP_PORT, EDGE_PORT.
#
# The broker's disk stays bounded: retention.ms (1 hour) drops records older than that, one 10-minute log
# segment at a time (segment.ms), checked every 5 minutes, so at most about 1 h 15 min of every stream's
# bytes stays on disk (~2.5 GB an hour for one 2.5 Mbps stream with LL-HLS parts, which double it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
BROKER_PORT="${BROKER_PORT:-9092}"
CONTROLLER_PORT="${CONTROLLER_PORT:-9093}"
RTMP_PORT="${RTMP_PORT:-1935}"
EDGE_PORT="${EDGE_PORT:-8080}"
TOPIC="${TOPIC:-live-topic}"
LOG_DIR="${LOG_DIR:-.tmp/local}"
mkdir -p "$LOG_DIR"

echo "==> building media and cdn-edge (release)"
cargo build --release --bins

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$BROKER_PORT" "$CONTROLLER_PORT" "$RTMP_PORT" "$EDGE_PORT"; do
  if port_busy "$p"; then
    echo "error: port $p is already in use; stop what uses it or set BROKER_PORT/CONTROLLER_PORT/RTMP_PORT/EDGE_PORT" >&2
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

BROKER="127.0.0.1:$BROKER_PORT"
echo "==> starting Apache Kafka on $BROKER (log in $LOG_DIR/broker.log, data in $LOG_DIR/kafka)"
bash scripts/kafka/node.sh "$LOG_DIR/kafka/node-1" 1 "$BROKER" "127.0.0.1:$CONTROLLER_PORT" \
  "1@127.0.0.1:$CONTROLLER_PORT" >"$LOG_DIR/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do port_busy "$BROKER_PORT" && break; sleep 0.1; done
port_busy "$BROKER_PORT" || { echo "error: the broker did not start; see $LOG_DIR/broker.log" >&2; exit 1; }

partitions="$(sed -n 's/^partitions=//p' scripts/kafka/live-topic.properties)"
configs=()
while IFS= read -r kv; do configs+=(--config "$kv"); done \
  < <(grep -Ev '^(#|$|partitions=)' scripts/kafka/live-topic.properties)
bash scripts/kafka/topics.sh --bootstrap-server "$BROKER" --create --if-not-exists --topic "$TOPIC" \
  --partitions "$partitions" --replication-factor 1 "${configs[@]}" >/dev/null

./target/release/media --rtmp-listen "0.0.0.0:$RTMP_PORT" --kafka-brokers "$BROKER" \
  --topic "$TOPIC" >"$LOG_DIR/media.log" 2>&1 &
pids+=($!)
./target/release/cdn-edge --http-listen "0.0.0.0:$EDGE_PORT" --kafka-brokers "$BROKER" \
  --topic "$TOPIC" >"$LOG_DIR/edge.log" 2>&1 &
pids+=($!)
sleep 1

cat <<MSG

  Publish:  ffmpeg -re -i INPUT -c:v libx264 -c:a aac -f flv rtmp://127.0.0.1:$RTMP_PORT/live/mystream
            (OBS: server rtmp://127.0.0.1:$RTMP_PORT/live, stream key mystream)
  Watch:    http://127.0.0.1:$EDGE_PORT/watch/mystream         (the watch page, in a browser)
            http://127.0.0.1:$EDGE_PORT/live/mystream/index.m3u8   (ffplay, VLC, Safari, hls.js)
  LL-HLS:   http://127.0.0.1:$EDGE_PORT/live/mystream/ll.m3u8      (Safari, hls.js lowLatencyMode)
  Logs:     $LOG_DIR/{broker,media,edge}.log

  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $LOG_DIR for its log" >&2
