#!/usr/bin/env bash
# Runs one Apache Kafka node (broker and KRaft controller in one JVM) in the foreground: formats its log
# directory on first start, then execs the JVM, so the caller's pid is the broker's (kill -9 kills it).
#
#   scripts/kafka/node.sh DIR NODE_ID BROKER_ADDR CONTROLLER_ADDR VOTERS [KEY=VALUE ...]
#
# DIR        the node's directory: server.properties is written there, the log under DIR/data
# VOTERS     controller.quorum.voters, e.g. 1@127.0.0.1:9093 (one node) or 1@...,2@...,3@... (a cluster)
# KEY=VALUE  broker settings added to or overriding the defaults below
#
# The jars come from scripts/install-deps.sh (KAFKA_LIBS overrides where); KAFKA_HEAP sets -Xmx
# (default 512m). A cluster's nodes share one cluster id: the first node to format writes it to
# DIR/../cluster.id and the others read it there, so give them directories side by side.
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
dir="$1" id="$2" broker="$3" controller="$4" voters="$5"
shift 5

here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
cache="${LIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/live-video}"
libs="${KAFKA_LIBS:-$cache/kafka-$version/libs}"
[ -f "$libs/kafka_2.13-$version.jar" ] || {
  echo "Apache Kafka $version not found in $libs: run scripts/install-deps.sh" >&2
  exit 1
}
nodes=$(tr ',' '\n' <<<"$voters" | wc -l)
# Internal topics can be no more replicated than there are nodes.
rf=$((nodes < 3 ? nodes : 3))
isr=$((rf < 2 ? rf : 2))

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
{
  cat <<PROPS
process.roles=broker,controller
node.id=$id
listeners=PLAINTEXT://$broker,CONTROLLER://$controller
advertised.listeners=PLAINTEXT://$broker
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=$voters
log.dirs=$dir/data
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Topics are created on purpose, with their limits (scripts/kafka/live-topic.properties).
auto.create.topics.enable=false
# Consumers here are single members: no reason to wait for others to join a group.
group.initial.rebalance.delay.ms=0
PROPS
  for kv in "$@"; do printf '%s\n' "$kv"; done
} >"$dir/server.properties"

cp="$libs/*"
java_opts=(-Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/log4j2.properties")

if [ ! -f "$dir/data/meta.properties" ]; then
  id_file="$dir/../cluster.id"
  # Nodes of a cluster started at once must agree: the first to take the lock writes the id.
  (
    flock 9
    [ -s "$id_file" ] || java -cp "$cp" "${java_opts[@]}" kafka.tools.StorageTool random-uuid >"$id_file"
  ) 9>"$id_file.lock"
  java -cp "$cp" "${java_opts[@]}" kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$id_file")" -c "$dir/server.properties" >/dev/null
fi
exec java -cp "$cp" "${java_opts[@]}" kafka.Kafka "$dir/server.properties"
