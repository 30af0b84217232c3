#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, unit and property tests, then the end-to-end tests
# (Apache Kafka, media, two edges, ffmpeg publishing, ffprobe judging). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# Tests that need ffmpeg fail instead of skipping when it is missing.
export REQUIRE_FFMPEG=1
# Likewise the watch-page test when Chromium, node or playwright-core is missing.
export REQUIRE_BROWSER=1
# And the GStreamer test when gst-launch-1.0 or its HLS demuxer is missing.
export REQUIRE_GSTREAMER=1

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> building binaries for the end-to-end tests"
cargo build --workspace --bins
echo "==> unit and property tests, and the fuzz targets (8 s each; FUZZ_SECONDS changes it)"
cargo test --workspace --exclude e2e
echo "==> end-to-end tests"
# One at a time: each starts media, edges and an x264 encoder (and some a Kafka cluster of their own)
# on a 2-core machine; the tests of one test binary share one Kafka broker, a topic each.
cargo test -p e2e -- --test-threads=1 --nocapture
