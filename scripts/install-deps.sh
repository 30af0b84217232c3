#!/usr/bin/env bash
# Installs what running and testing the project needs on a fresh Debian machine that has only the Rust
# toolchain: ffmpeg/ffprobe (publisher and checker in the e2e suite), the C toolchain pieces rdkafka's
# bundled librdkafka build uses, Java and Maven, and Apache Kafka's jars from Maven Central
# (scripts/kafka/pom.xml) in a cache directory outside the repository. Idempotent: every step is skipped
# when its result is already there.
set -euo pipefail

CACHE_DIR="${LIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/live-video}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO_ROOT/scripts/kafka/pom.xml")"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# librdkafka is built with TLS (and so SASL PLAIN/SCRAM) for production clusters.
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
# nginx with nginx-rtmp: the system this project replaces, run side by side in the compatibility test and
# the benchmark (never as a system service).
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need_apt+=(libnginx-mod-rtmp)
# wrk: the HTTP load generator of the side-by-side benchmark (bench/compare.py).
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# The watch page's browser test: Debian's Chromium, and Node.js/npm for hls.js and playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Apache Kafka runs on the JVM (17, Debian 12's default); Maven fetches its jars.
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# GStreamer 1.22 (Debian 12): hlsdemux2 under uridecodebin3 plays the edge's playlists in the e2e suite
# (e2e/tests/gstreamer.rs), the 32-bit reader of sequence numbers many set-top boxes are built on.
command -v gst-launch-1.0 >/dev/null 2>&1 || need_apt+=(gstreamer1.0-tools)
for pkg in gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# setpriv (util-linux): the e2e suite's brokers die with the test process that started them.
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  # Keep package scripts from starting services (nginx would take port 80); tests start what they need.
  no_start=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    no_start=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  [ -n "$no_start" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  echo "==> fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $KAFKA_LIBS (once; ~45 MB)"
  rm -rf "$KAFKA_LIBS.partial"
  mvn -B -q -Dstyle.color=never -f "$REPO_ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_LIBS.partial"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
fi
echo "==> broker: Apache Kafka $KAFKA_VERSION ($KAFKA_LIBS)"

# npm packages pinned by their lockfiles: hls.js (web/, embedded into cdn-edge at build time, so this runs
# before any cargo build) and, in e2e/browser/, playwright-core (drives Chromium), shaka-player (the
# second browser player) and the independent playlist validators hls-parser and m3u8-parser.
# Reinstalled only when the lockfile is newer than what npm last installed.
for dir in web e2e/browser; do
  installed="$REPO_ROOT/$dir/node_modules/.package-lock.json"
  if [ ! -f "$installed" ] || [ "$REPO_ROOT/$dir/package-lock.json" -nt "$installed" ]; then
    echo "==> npm ci in $dir"
    (cd "$REPO_ROOT/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
