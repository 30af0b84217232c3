//! MPEG-2 transport stream writer (ISO/IEC 13818-1): PAT/PMT sections (2.4.4), PES packets (2.4.3.6)
//! split into 188-byte TS packets (2.4.3.2) with PCR and stuffing in the adaptation field (2.4.3.4).
//!
//! Continuity counters live in the muxer and continue across segments: segments of one stream are
//! played back to back, and a reader of the concatenation (or a player that does not reset between
//! segments) sees no false discontinuity. That is also what nginx-rtmp does.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of one transport packet.
pub const TS_PACKET_LEN: usize = 188;
/// Payload room of a packet without adaptation field.
const TS_PAYLOAD_LEN: usize = 184;
/// TS packets per block of a [`PacketBlocks`] (about 64 KiB).
const BLOCK_PACKETS: usize = 348;

/// Where the muxer writes: one 188-byte packet at a time, each appended to the buffer `packet` returns.
pub trait PacketSink {
    /// A buffer with room for at least one more whole packet.
    fn packet(&mut self) -> &mut BytesMut;
}

impl PacketSink for BytesMut {
    fn packet(&mut self) -> &mut BytesMut {
        self.reserve(TS_PACKET_LEN);
        self
    }
}

/// Packets in fixed blocks of about 64 KiB, joined once by [`PacketBlocks::freeze`].
///
/// Why: a segment's size is only known when it closes. One growing buffer either reallocates (copying
/// everything written so far, and doubling its capacity) or is reserved for the largest segment
/// expected; with a buffer open per stream, that slack was a third of media's memory per publisher.
/// Blocks never move, and the open segment holds at most one partly filled block beyond its size.
#[derive(Debug, Default)]
pub struct PacketBlocks {
    full: Vec<BytesMut>,
    full_len: usize,
    current: BytesMut,
}

impl PacketBlocks {
    pub fn len(&self) -> usize {
        self.full_len + self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packets as one contiguous buffer (copied once, unless they fit one block).
    pub fn freeze(self) -> Bytes {
        if self.full.is_empty() {
            return self.current.freeze();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for block in self.full.iter().chain([&self.current]) {
            out.extend_from_slice(block);
        }
        out.freeze()
    }
}

impl PacketSink for PacketBlocks {
    fn packet(&mut self) -> &mut BytesMut {
        if self.current.capacity() - self.current.len() < TS_PACKET_LEN {
            let next = BytesMut::with_capacity(BLOCK_PACKETS * TS_PACKET_LEN);
            let full = std::mem::replace(&mut self.current, next);
            if !full.is_empty() {
                self.full_len += full.len();
                self.full.push(full);
            }
        }
        &mut self.current
    }
}

/// Program association table PID (13818-1 Table 2-3).
pub const PAT_PID: u16 = 0x0000;
/// PMT PID of our single program (the value nginx-rtmp and ffmpeg use).
pub const PMT_PID: u16 = 0x1000;
/// program_number of the single program.
pub const PROGRAM_NUMBER: u16 = 1;

/// PTS/DTS/PCR base are 33-bit counters that wrap (13818-1 2.4.3.7).
const MASK_33: u64 = (1 << 33) - 1;

/// One elementary stream the PMT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementaryStream {
    /// Its PID.
    pub pid: u16,
    /// PMT stream_type (13818-1 Table 2-34).
    pub stream_type: u8,
}

/// The streams of the single program, in PMT order, and which of them carries the PCR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// The elementary streams.
    pub streams: Vec<ElementaryStream>,
    /// PCR_PID.
    pub pcr_pid: u16,
}

/// One piece of a PES payload, so a codec can hand over its conversion of a sample (start codes,
/// parameter sets, NAL units; an ADTS header and the frame) without copying it into one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PesChunk {
    /// Bytes every sample of a codec shares (a start code, an access unit delimiter).
    Static(&'static [u8]),
    /// A few bytes written for this sample (an ADTS header), at most [`PesChunk::INLINE`].
    Inline {
        /// The bytes, `len` of them used.
        bytes: [u8; PesChunk::INLINE],
        /// How many of `bytes` are used.
        len: u8,
    },
    /// A slice of the sample (or of its configuration record).
    Shared(Bytes),
}

impl PesChunk {
    /// Room of an inline chunk.
    pub const INLINE: usize = 15;

    /// An inline chunk of `data`, cut to [`PesChunk::INLINE`] bytes.
    pub fn inline(data: &[u8]) -> Self {
        let mut bytes = [0; Self::INLINE];
        let len = data.len().min(Self::INLINE);
        bytes[..len].copy_from_slice(&data[..len]);
        Self::Inline {
            bytes,
            len: len as u8,
        }
    }

    /// The chunk's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Static(s) => s,
            Self::Inline { bytes, len } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Shared(b) => b,
        }
    }
}

/// Header fields of one PES packet to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    /// TS PID to write on.
    pub pid: u16,
    /// PES stream_id.
    pub stream_id: u8,
    /// 90 kHz presentation time, unmasked.
    pub pts: u64,
    /// 90 kHz decoding time, unmasked; DTS is only written when it differs from PTS.
    pub dts: u64,
    /// 90 kHz PCR for the adaptation field of the first packet.
    pub pcr: Option<u64>,
    /// random_access_indicator: this PES starts a decodable point (IDR, or audio-only segment start).
    pub random_access: bool,
}

/// Packetizer state: continuity counters and PMT version.
#[derive(Debug, Default, Clone)]
pub struct TsMuxer {
    /// Continuity counter of every PID written so far (a handful: PAT, PMT, one per track).
    cc: Vec<(u16, u8)>,
    pmt_version: u8,
    last_program: Option<Program>,
}

impl TsMuxer {
    /// A muxer whose counters all start at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one PAT and one PMT packet. Every segment starts with them so it is decodable alone.
    /// A change of the program bumps the PMT version_number so demuxers re-read it.
    pub fn write_psi(&mut self, out: &mut impl PacketSink, program: &Program) {
        match &self.last_program {
            Some(last) if last == program => {}
            last => {
                if last.is_some() {
                    self.pmt_version = (self.pmt_version + 1) & 0x1f;
                }
                self.last_program = Some(program.clone());
            }
        }

        // PAT, 13818-1 2.4.4.3: one program, transport_stream_id 1.
        let mut pat = [0u8; 16];
        let pmt_pid = PMT_PID.to_be_bytes();
        let pat_body = [
            0x00, // table_id
            0xb0, // section_syntax_indicator, '0', reserved, section_length high bits
            13,   // section_length: 5 header + 4 program + 4 CRC
            0x00,
            0x01, // transport_stream_id
            0xc1, // reserved, version 0, current_next_indicator
            0x00,
            0x00, // section_number, last_section_number
            (PROGRAM_NUMBER >> 8) as u8,
            PROGRAM_NUMBER as u8,
            0xe0 | pmt_pid[0],
            pmt_pid[1],
        ];
        pat[..12].copy_from_slice(&pat_body);
        let crc = crc32_mpeg2(&pat[..12]).to_be_bytes();
        pat[12..].copy_from_slice(&crc);
        self.write_section(out, PAT_PID, &pat);

        // PMT, 13818-1 2.4.4.8. Built once per segment, so a small Vec is fine here. One packet holds
        // it: up to 33 streams, far more than a publisher sends.
        let streams = program.streams.len().min(33);
        let section_length = (9 + 5 * streams + 4) as u8;
        let pcr_pid = program.pcr_pid.to_be_bytes();
        let number = PROGRAM_NUMBER.to_be_bytes();
        let mut pmt = Vec::with_capacity(12 + 5 * streams + 4);
        pmt.extend_from_slice(&[0x02, 0xb0, section_length, number[0], number[1]]);
        // reserved, version_number, current_next_indicator; section_number; last_section_number
        pmt.extend_from_slice(&[0xc1 | (self.pmt_version << 1), 0x00, 0x00]);
        // reserved + PCR_PID; reserved + program_info_length = 0
        pmt.extend_from_slice(&[0xe0 | pcr_pid[0], pcr_pid[1], 0xf0, 0x00]);
        for es in program.streams.iter().take(streams) {
            let pid = es.pid.to_be_bytes();
            pmt.extend_from_slice(&[es.stream_type, 0xe0 | pid[0], pid[1], 0xf0, 0x00]);
        }
        let crc = crc32_mpeg2(&pmt).to_be_bytes();
        pmt.extend_from_slice(&crc);
        self.write_section(out, PMT_PID, &pmt);
    }

    /// Writes one PES packet whose payload is the concatenation of `payload`'s chunks (so callers can
    /// pass start codes, NAL units and ADTS headers without first copying them into one buffer).
    pub fn write_pes<'a, I>(&mut self, sink: &mut impl PacketSink, header: &PesHeader, payload: I)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let payload_len: usize = payload.clone().map(<[u8]>::len).sum();

        // PES header, 13818-1 2.4.3.7.
        let has_dts = header.dts != header.pts;
        let header_data_len: usize = if has_dts { 10 } else { 5 };
        let mut pes = [0u8; 19];
        let pes_len = 9 + header_data_len;
        let packet_length = 3 + header_data_len + payload_len;
        // Video may use 0 ("unbounded", 2.4.3.7) when the AU is larger than the 16-bit field; audio
        // PES are kept small by the caller, so for them this never triggers.
        let packet_length = u16::try_from(packet_length).unwrap_or(0).to_be_bytes();
        pes[..9].copy_from_slice(&[
            0x00,
            0x00,
            0x01,
            header.stream_id,
            packet_length[0],
            packet_length[1],
            0x84, // '10', data_alignment_indicator: every PES starts an access unit
            if has_dts { 0xc0 } else { 0x80 },
            header_data_len as u8,
        ]);
        if has_dts {
            pes[9..14].copy_from_slice(&timestamp_bytes(0b0011, header.pts));
            pes[14..19].copy_from_slice(&timestamp_bytes(0b0001, header.dts));
        } else {
            pes[9..14].copy_from_slice(&timestamp_bytes(0b0010, header.pts));
        }
        let pes = pes.get(..pes_len).unwrap_or_default();

        let mut remaining = pes.len() + payload_len;
        let mut chunks = ChunkCursor {
            iter: payload,
            current: &[],
        };
        let mut first = true;
        while remaining > 0 {
            // Adaptation field content (flags + PCR) wanted on the first packet.
            let mut flags = 0u8;
            let mut pcr = None;
            if first {
                if header.random_access {
                    flags |= 0x40;
                }
                if let Some(value) = header.pcr {
                    flags |= 0x10;
                    pcr = Some(value);
                }
            }
            let af_content = if flags != 0 {
                1 + if pcr.is_some() { 6 } else { 0 }
            } else {
                0
            };
            let af_total = if af_content > 0 { 1 + af_content } else { 0 };
            let capacity = TS_PAYLOAD_LEN - af_total;
            let take = remaining.min(capacity);
            // The last packet of a PES is filled with adaptation-field stuffing (2.4.3.5), not a padding
            // PES, so every packet stays 188 bytes and the PES ends exactly with the packet.
            let stuffing = capacity - take;

            let cc = self.next_cc(header.pid);
            let has_af = af_total > 0 || stuffing > 0;
            let out = sink.packet();
            out.put_slice(&[
                0x47,
                (if first { 0x40 } else { 0 }) | ((header.pid >> 8) as u8 & 0x1f),
                header.pid as u8,
                (if has_af { 0x30 } else { 0x10 }) | cc,
            ]);
            if af_total > 0 {
                out.put_u8((af_content + stuffing) as u8);
                out.put_u8(flags);
                if let Some(value) = pcr {
                    out.put_slice(&pcr_bytes(value));
                }
                out.put_bytes(0xff, stuffing);
            } else if stuffing > 0 {
                // adaptation_field_length counts the bytes after itself; a 1-byte field is just the
                // length (0), longer ones need the flags byte before the 0xFF stuffing.
                out.put_u8((stuffing - 1) as u8);
                if stuffing >= 2 {
                    out.put_u8(0);
                    out.put_bytes(0xff, stuffing - 2);
                }
            }
            let mut body = take;
            if first {
                // The PES header (<= 19 bytes) always fits: a first packet has >= 176 bytes of room.
                out.put_slice(pes);
                body -= pes.len();
            }
            chunks.copy_to(out, body);
            remaining -= take;
            first = false;
        }
    }

    fn write_section(&mut self, sink: &mut impl PacketSink, pid: u16, section: &[u8]) {
        let cc = self.next_cc(pid);
        let out = sink.packet();
        out.put_slice(&[0x47, 0x40 | ((pid >> 8) as u8 & 0x1f), pid as u8, 0x10 | cc]);
        out.put_u8(0); // pointer_field
        let section = section.get(..TS_PAYLOAD_LEN - 1).unwrap_or(section);
        out.put_slice(section);
        out.put_bytes(0xff, TS_PAYLOAD_LEN - 1 - section.len());
    }

    /// The PID's next continuity counter (a linear search: a stream has a handful of PIDs).
    fn next_cc(&mut self, pid: u16) -> u8 {
        let slot = match self.cc.iter().position(|(p, _)| *p == pid) {
            Some(i) => i,
            None => {
                self.cc.push((pid, 0));
                self.cc.len() - 1
            }
        };
        match self.cc.get_mut(slot) {
            Some((_, cc)) => {
                let value = *cc;
                *cc = (value + 1) & 0x0f;
                value
            }
            None => 0,
        }
    }
}

/// Walks the payload chunks, copying exactly the requested number of bytes per TS packet.
struct ChunkCursor<'a, I> {
    iter: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> ChunkCursor<'a, I> {
    fn copy_to(&mut self, out: &mut BytesMut, mut n: usize) {
        while n > 0 {
            if self.current.is_empty() {
                match self.iter.next() {
                    Some(chunk) => self.current = chunk,
                    None => break,
                }
                continue;
            }
            let k = n.min(self.current.len());
            if let Some((head, tail)) = self.current.split_at_checked(k) {
                out.put_slice(head);
                self.current = tail;
            }
            n -= k;
        }
        // Only reachable if the iterator yields fewer bytes on the second pass than on the first;
        // keep the packet 188 bytes long anyway.
        out.put_bytes(0xff, n);
    }
}

/// PTS/DTS field, 13818-1 2.4.3.7: 4-bit prefix, 33 bits split 3/15/15 with marker bits.
fn timestamp_bytes(prefix: u8, ts: u64) -> [u8; 5] {
    let ts = ts & MASK_33;
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8 & 0x7f) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8 & 0x7f) << 1) | 1,
    ]
}

/// program_clock_reference, 13818-1 2.4.3.5: 33-bit base, 6 reserved bits, 9-bit extension (0: our
/// clock has 90 kHz resolution only).
fn pcr_bytes(pcr: u64) -> [u8; 6] {
    let base = pcr & MASK_33;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base as u8 & 1) << 7) | 0x7e,
        0x00,
    ]
}

/// CRC-32/MPEG-2 (13818-1 Annex A): polynomial 0x04C11DB7, init all ones, no reflection, no final XOR.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff_u32, |crc, &b| {
        let index = ((crc >> 24) as u8 ^ b) as usize;
        (crc << 8) ^ CRC_TABLE.get(index).copied().unwrap_or(0)
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VIDEO_PID: u16 = 0x100;
    const STREAM_ID_VIDEO: u8 = 0xe0;

    fn av() -> Program {
        Program {
            streams: vec![
                ElementaryStream {
                    pid: 0x100,
                    stream_type: 0x1b,
                },
                ElementaryStream {
                    pid: 0x101,
                    stream_type: 0x0f,
                },
            ],
            pcr_pid: 0x100,
        }
    }

    #[test]
    fn packet_blocks_hold_the_same_bytes_as_one_buffer() {
        // The same PES sequence through two muxers: one contiguous buffer, one set of blocks.
        let payload: Vec<u8> = (0..250_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (mut a, mut b) = (TsMuxer::new(), TsMuxer::new());
        let (mut flat, mut blocks) = (BytesMut::new(), PacketBlocks::default());
        a.write_psi(&mut flat, &av());
        b.write_psi(&mut blocks, &av());
        for (n, size) in [1usize, 183, 184, 185, 65_424, 100_000, 7]
            .into_iter()
            .enumerate()
        {
            let header = PesHeader {
                pid: VIDEO_PID,
                stream_id: STREAM_ID_VIDEO,
                pts: 9_000 * n as u64 + 3_000,
                dts: 9_000 * n as u64,
                pcr: Some(9_000 * n as u64),
                random_access: n == 0,
            };
            let chunks = [&payload[..size / 2], &payload[size / 2..size]];
            a.write_pes(&mut flat, &header, chunks.iter().copied());
            b.write_pes(&mut blocks, &header, chunks.iter().copied());
        }
        assert!(blocks.full.len() >= 2, "several blocks used");
        assert_eq!(blocks.len(), flat.len());
        assert_eq!(blocks.freeze(), flat.freeze());
    }

    fn packets(buf: &[u8]) -> Vec<&[u8]> {
        assert_eq!(buf.len() % TS_PACKET_LEN, 0);
        buf.chunks(TS_PACKET_LEN).collect()
    }

    #[test]
    fn crc_matches_reference() {
        // CRC-32/MPEG-2 check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn psi_sections_have_valid_crc_and_streams() {
        let mut m = TsMuxer::new();
        let mut out = BytesMut::new();
        m.write_psi(&mut out, &av());
        let p = packets(&out);
        assert_eq!(p.len(), 2);
        // PAT
        assert_eq!(&p[0][..5], &[0x47, 0x40, 0x00, 0x10, 0x00]);
        let pat = &p[0][5..5 + 3 + 13];
        assert_eq!(crc32_mpeg2(pat), 0, "CRC over section incl. CRC is 0");
        // PMT: pcr pid = video, two streams
        assert_eq!(&p[1][..5], &[0x47, 0x50, 0x00, 0x10, 0x00]);
        let len = usize::from(p[1][6] & 0x0f) << 8 | usize::from(p[1][7]);
        let pmt = &p[1][5..5 + 3 + len];
        assert_eq!(crc32_mpeg2(pmt), 0);
        assert_eq!(&pmt[8..10], &[0xe1, 0x00]);
        assert_eq!(&pmt[12..17], &[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
        assert_eq!(&pmt[17..22], &[0x0f, 0xe1, 0x01, 0xf0, 0x00]);

        // audio-only: PCR on audio, version bumped, CC continues
        out.clear();
        let mut audio_only = av();
        audio_only.streams.remove(0);
        audio_only.pcr_pid = 0x101;
        m.write_psi(&mut out, &audio_only);
        let p = packets(&out);
        assert_eq!(p[0][3], 0x11);
        let pmt = &p[1][5..5 + 3 + 9 + 5 + 4];
        assert_eq!(crc32_mpeg2(pmt), 0);
        assert_eq!(pmt[5], 0xc1 | (1 << 1));
        assert_eq!(&pmt[8..10], &[0xe1, 0x01]);
    }

    #[test]
    fn timestamps_are_33_bit() {
        let ts = (1u64 << 33) + 0x1_2345_6789;
        let b = timestamp_bytes(0b0010, ts);
        let back = (u64::from(b[0] >> 1) & 7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1);
        assert_eq!(back, ts & MASK_33);
        assert_eq!(b[0] >> 4, 0b0010);
        let p = pcr_bytes(ts);
        let base = u64::from(p[0]) << 25
            | u64::from(p[1]) << 17
            | u64::from(p[2]) << 9
            | u64::from(p[3]) << 1
            | u64::from(p[4] >> 7);
        assert_eq!(base, ts & MASK_33);
    }

    /// Reassembles the PES bytes of one PID from our own packets.
    fn pes_bytes(buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets(buf) {
            let afc = (p[3] >> 4) & 3;
            let start = if afc & 2 != 0 {
                5 + usize::from(p[4])
            } else {
                4
            };
            assert!(start <= TS_PACKET_LEN);
            out.extend_from_slice(&p[start..]);
        }
        out
    }

    #[test]
    fn pes_sizes_around_packet_boundaries() {
        for len in [
            0usize, 1, 2, 150, 164, 165, 166, 167, 168, 169, 170, 183, 184, 500, 70_000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for pcr in [None, Some(1_000)] {
                for random_access in [false, true] {
                    let mut m = TsMuxer::new();
                    let mut out = BytesMut::new();
                    let h = PesHeader {
                        pid: VIDEO_PID,
                        stream_id: STREAM_ID_VIDEO,
                        pts: 3_000,
                        dts: 0,
                        pcr,
                        random_access,
                    };
                    // Split the payload in uneven chunks to exercise the cursor.
                    let (a, b) = data.split_at(len / 3);
                    m.write_pes(&mut out, &h, [a, &[][..], b].into_iter());
                    let p = packets(&out);
                    for (i, pk) in p.iter().enumerate() {
                        assert_eq!(pk[0], 0x47);
                        assert_eq!(pk[3] & 0x0f, (i % 16) as u8, "cc");
                        assert_eq!(pk[1] & 0x40 != 0, i == 0, "pusi");
                    }
                    let first = p[0];
                    if pcr.is_some() || random_access {
                        assert_eq!(first[5] & 0x40 != 0, random_access);
                        assert_eq!(first[5] & 0x10 != 0, pcr.is_some());
                    }
                    let pes = pes_bytes(&out);
                    assert_eq!(&pes[..4], &[0, 0, 1, 0xe0]);
                    assert_eq!(pes[8], 10);
                    assert_eq!(&pes[19..], &data[..], "len {len}");
                    let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
                    if len + 13 <= 0xffff {
                        assert_eq!(declared, len + 13);
                    } else {
                        assert_eq!(declared, 0);
                    }
                }
            }
        }
    }
}
