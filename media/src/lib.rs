//! `media`: the RTMP ingest origin.
//!
//! The library half is pure, with no I/O, so it is tested with bytes alone: [`rtmp`] (the RTMP
//! protocol, server side: handshake, chunk reader and writer, control messages, AMF0, typed commands,
//! and the session state machine that turns a client's bytes into events and answers), [`flv`] (typed
//! FLV tags, legacy and Enhanced RTMP), [`remux`] (typed tags -> codec-neutral samples -> one cutter ->
//! MPEG-TS and fMP4 muxers, with one module per codec under [`remux::codec`]) and [`keyframes`]. The
//! binary (`main.rs`) holds the thin shells around it: the RTMP server (sockets, timeouts, admission),
//! the Kafka producer and the HTTP endpoint.

pub mod flv;
pub mod keyframes;
pub mod remux;
pub mod rtmp;
