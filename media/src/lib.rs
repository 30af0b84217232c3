//! `media`: the RTMP ingest origin.
//!
//! The library half is the pure remux code (FLV tags -> H.264 Annex-B / AAC ADTS -> MPEG-TS segments)
//! and the RTMP chunk reassembler, with no I/O so it is tested with bytes alone. The binary (`main.rs`) holds the thin shells around it:
//! the RTMP server, the Kafka producer and the HTTP endpoint.

pub mod flv;
pub mod keyframes;
pub mod remux;
pub mod rtmp_chunks;
