//! `cdn-edge`: consumes the LiveDTO topic into memory and serves HLS to viewers.
//!
//! The library holds every piece so tests can drive them without a broker or a socket:
//! [`playlist`] (pure RFC 8216 rendering), [`store`] (segment cache and per-stream state), [`consumer`]
//! (Kafka records -> reassembled segments -> store), [`http`] (the viewer-facing router) and [`config`].
//! The binary (`main.rs`) only wires them together.

#![warn(missing_docs)]

pub mod config;
pub mod consumer;
pub mod http;
pub mod playlist;
pub mod stats;
pub mod store;
