# syntax=docker/dockerfile:1
# One image with both binaries (`media`, `cdn-edge`); docker-compose.yml picks one per service with
# `command`. Three stages: hls.js from the npm lockfile, the Rust build, a slim runtime.

# hls.js, pinned in web/package-lock.json, for cdn-edge's build script to embed.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

# bookworm, like the runtime below, so the binaries find the same glibc and OpenSSL 3.
FROM rust:1.95-bookworm AS build
# rdkafka builds its bundled librdkafka with TLS (libssl-dev) and zlib; cmake and pkg-config are what its
# build scripts look for.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=web /src/web/node_modules web/node_modules
RUN cargo build --release --locked --bin media --bin cdn-edge \
 && install -m 0755 target/release/media target/release/cdn-edge /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home live
COPY --from=build /usr/local/bin/media /usr/local/bin/cdn-edge /usr/local/bin/
# Example configs, for `--config /etc/live-video/cdn-edge.toml` (settings usually come from MEDIA_*/EDGE_*).
COPY config/ /etc/live-video/
USER live
# RTMP (media), HTTP (cdn-edge; media's HTTP is 8081 in docker-compose.yml).
EXPOSE 1935 8080 8081
CMD ["cdn-edge"]
