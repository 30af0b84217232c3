#!/usr/bin/env bash
# Installs what running and testing the project needs on a fresh Debian machine that has only the Rust
# toolchain: ffmpeg/ffprobe (publisher and checker in the e2e suite), the C toolchain pieces rdkafka's
# bundled librdkafka build uses, and the Kafka-compatible broker Tansu, built once into a cache directory
# outside the repository. Idempotent: every step is skipped when its result is already there.
set -euo pipefail

CACHE_DIR="${LIVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/live-video}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE_DIR/tansu-$TANSU_VERSION"

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# librdkafka is built with TLS (and so SASL PLAIN/SCRAM) for production clusters.
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
  echo "==> building the broker Tansu $TANSU_VERSION into $TANSU_ROOT (once; about 8 minutes on 2 cores)"
  mkdir -p "$CACHE_DIR"
  # Without dynostore,libsql Tansu 0.6.0 discards every message; --locked keeps its tested dependency set.
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
    --root "$TANSU_ROOT" 2>&1 | sed -u 's/^/    [tansu build] /'
fi
echo "==> broker: $TANSU_ROOT/bin/tansu"
