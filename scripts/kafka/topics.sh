#!/usr/bin/env bash
# Apache Kafka's kafka-topics.sh, from the jars scripts/install-deps.sh fetched: list, create, describe
# or alter topics of a running broker, e.g.
#   scripts/kafka/topics.sh --bootstrap-server 127.0.0.1:9092 --describe --topic live-topic
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
cache="${LIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/live-video}"
libs="${KAFKA_LIBS:-$cache/kafka-$version/libs}"
exec java -Xmx256m -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.properties" \
  org.apache.kafka.tools.TopicCommand "$@"
