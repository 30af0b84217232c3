//! `cdn-edge`: consumes the LiveDTO topic into memory and serves HLS to viewers.
//!
//! The library holds every piece so tests can drive them without a broker or a socket:
//! [`playlist`] (pure RFC 8216 rendering), [`ll`] (the low-latency playlist, RFC 8216bis), [`store`] (segment cache and per-stream state), [`kafka`]
//! (Kafka records -> reassembled segments -> store, in layers: poll loop, pure ingest step, the shell
//! applying it, assignment, start offsets, silence verdict), [`http`] (the viewer-facing router), [`watch`] (the
//! browser pages and player assets), [`metrics`] (Prometheus exposition), [`viewers`] (bounded concurrent
//! viewer counting) and [`config`].
//! The binary (`main.rs`) only wires them together.

#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod kafka;
pub mod ll;
pub mod metrics;
pub mod playlist;
pub mod renumber;
pub mod stats;
pub mod store;
pub mod viewers;
pub mod watch;
