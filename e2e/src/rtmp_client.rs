//! A small hand-rolled RTMP publisher for tests, independent of the server's code, with explicit control
//! of what goes on the wire: chunk header formats, chunk stream ids (including the 2- and 3-byte forms),
//! chunk size, interleaving of chunks of different messages, timestamps, and raw bytes. It speaks just
//! enough of the protocol (Adobe RTMP specification 1.0; AMF0) to connect, create a stream and publish.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// Message type ids (RTMP specification section 5.4 and 7.1).
pub const SET_CHUNK_SIZE: u8 = 1;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF0: u8 = 18;
pub const COMMAND_AMF0: u8 = 20;

/// One RTMP message.
#[derive(Debug, Clone)]
pub struct Message {
    pub type_id: u8,
    pub timestamp: u32,
    pub stream_id: u32,
    pub data: Vec<u8>,
}

/// A connected (handshaken) RTMP client.
pub struct Client {
    pub socket: TcpStream,
    /// Chunk size this client writes with.
    pub chunk_size: usize,
    reader: Reader,
    /// Message stream id from `createStream`.
    pub stream_id: u32,
    /// Bytes written since the handshake (what the server's acknowledgements count).
    pub sent: u64,
}

impl Client {
    /// Connects and runs the plain handshake (C0/C1/C2, section 5.2).
    pub fn handshake(addr: SocketAddr) -> Result<Self> {
        let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        socket.set_nodelay(true)?;
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 8]);
        c0c1.extend((0..1528u32).map(|i| (i * 7 + 3) as u8));
        socket.write_all(&c0c1)?;
        let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
        socket.read_exact(&mut s0s1s2).context("reading S0/S1/S2")?;
        ensure!(s0s1s2[0] == 3, "server answered version {}", s0s1s2[0]);
        // C2 echoes S1.
        socket.write_all(&s0s1s2[1..1537])?;
        Ok(Self {
            socket,
            chunk_size: 128,
            reader: Reader::default(),
            stream_id: 0,
            sent: 0,
        })
    }

    /// `connect`, `createStream` and `publish`; returns the status code of the publish answer
    /// (`NetStream.Publish.Start` when accepted).
    pub fn publish(addr: SocketAddr, app: &str, name: &str) -> Result<(Self, String)> {
        let mut c = Self::handshake(addr)?;
        c.set_chunk_size(4096)?;
        c.connect(app)?;
        let code = c.start_publish(name)?;
        Ok((c, code))
    }

    /// Sends `connect` and waits for its `_result`.
    pub fn connect(&mut self, app: &str) -> Result<()> {
        let mut body = amf_string("connect");
        body.extend(amf_number(1.0));
        body.extend(amf_object(&[
            ("app", amf_string(app)),
            ("type", amf_string("nonprivate")),
            ("flashVer", amf_string("FMLE/3.0 (compatible; e2e)")),
            (
                "tcUrl",
                amf_string(&format!("rtmp://{}/{app}", self.socket.peer_addr()?)),
            ),
        ]));
        self.send(3, &command(0, body))?;
        self.wait_for(|m| m.type_id == COMMAND_AMF0 && starts_with_string(&m.data, "_result"))?;
        Ok(())
    }

    /// `createStream` then `publish name live`; returns the status code of the answer.
    pub fn start_publish(&mut self, name: &str) -> Result<String> {
        self.start_publish_raw(&amf_string(name))
    }

    /// `createStream` then `publish` with an already AMF0-encoded name (to send names that are not
    /// valid UTF-8); returns the onStatus code.
    pub fn start_publish_raw(&mut self, encoded_name: &[u8]) -> Result<String> {
        let mut body = amf_string("createStream");
        body.extend(amf_number(2.0));
        body.push(5);
        self.send(3, &command(0, body))?;
        let result =
            self.wait_for(|m| m.type_id == COMMAND_AMF0 && starts_with_string(&m.data, "_result"))?;
        // `_result`, 2.0, null, <stream id>: the last value, a number (marker 0 and 8 bytes).
        let d = &result.data;
        ensure!(
            d.len() >= 9 && d[d.len() - 9] == 0,
            "createStream result without a stream id"
        );
        let bytes: [u8; 8] = d[d.len() - 8..].try_into()?;
        self.stream_id = f64::from_be_bytes(bytes) as u32;
        let mut body = amf_string("publish");
        body.extend(amf_number(3.0));
        body.push(5);
        body.extend_from_slice(encoded_name);
        body.extend(amf_string("live"));
        let stream_id = self.stream_id;
        self.send(8, &command(stream_id, body))?;
        // Accepted: onStatus NetStream.Publish.Start; refused: `_error` with a status object.
        let status = self.wait_for(|m| {
            m.type_id == COMMAND_AMF0
                && (starts_with_string(&m.data, "onStatus")
                    || starts_with_string(&m.data, "_error"))
        })?;
        status_code(&status.data).context("onStatus without a code")
    }

    /// Sends Set Chunk Size and writes with that size from then on.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        self.send(
            2,
            &Message {
                type_id: SET_CHUNK_SIZE,
                timestamp: 0,
                stream_id: 0,
                data: size.to_be_bytes().to_vec(),
            },
        )?;
        self.chunk_size = size.clamp(1, 1 << 20) as usize;
        Ok(())
    }

    /// Writes `m` on chunk stream `csid`: a type 0 chunk, then type 3 chunks.
    pub fn send(&mut self, csid: u32, m: &Message) -> Result<()> {
        let bytes = chunks(csid, 0, m, self.chunk_size).concat();
        self.write_counted(&bytes)?;
        Ok(())
    }

    /// Writes the chunks of several messages alternately, one chunk of each in turn (legal: each chunk
    /// stream is reassembled on its own), each message on its own chunk stream.
    pub fn send_interleaved(&mut self, messages: &[(u32, &Message)]) -> Result<()> {
        let mut lists: Vec<std::vec::IntoIter<Vec<u8>>> = messages
            .iter()
            .map(|(csid, m)| chunks(*csid, 0, m, self.chunk_size).into_iter())
            .collect();
        let mut out = Vec::new();
        loop {
            let mut any = false;
            for l in &mut lists {
                if let Some(c) = l.next() {
                    out.extend(c);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        self.write_counted(&out)?;
        Ok(())
    }

    /// Writes `m` with a type 1 header (timestamp delta = the message's timestamp) on `csid`, which may
    /// be a chunk stream never used before.
    pub fn send_type1(&mut self, csid: u32, m: &Message) -> Result<()> {
        let bytes = chunks(csid, 1, m, self.chunk_size).concat();
        self.write_counted(&bytes)?;
        Ok(())
    }

    fn write_counted(&mut self, bytes: &[u8]) -> Result<()> {
        self.socket.write_all(bytes)?;
        self.sent += bytes.len() as u64;
        Ok(())
    }

    /// Writes raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_counted(bytes)?;
        Ok(())
    }

    /// Reads messages until one matches; errors if the server closes first or after 10 s.
    pub fn wait_for(&mut self, mut f: impl FnMut(&Message) -> bool) -> Result<Message> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(m) = self.reader.next()? {
                if f(&m) {
                    return Ok(m);
                }
            }
            ensure!(Instant::now() < deadline, "no matching message within 10 s");
            let mut buf = [0u8; 16 * 1024];
            let n = self
                .socket
                .read(&mut buf)
                .context("reading from the server")?;
            if n == 0 {
                bail!("server closed the connection");
            }
            self.reader.buf.extend_from_slice(&buf[..n]);
        }
    }

    /// Whether the server closes the connection within `timeout` (reading and discarding until then).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        closed_within(&mut self.socket, timeout)
    }
}

/// Whether the peer closes `socket` within `timeout`.
pub fn closed_within(socket: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The chunks of `m` on `csid`: the first with header format `fmt` (0 or 1), the rest type 3.
pub fn chunks(csid: u32, fmt: u8, m: &Message, chunk_size: usize) -> Vec<Vec<u8>> {
    let extended = m.timestamp >= 0xFF_FFFF;
    let mut out = Vec::new();
    let mut first = basic_header(fmt, csid);
    first.extend_from_slice(&m.timestamp.min(0xFF_FFFF).to_be_bytes()[1..]);
    first.extend_from_slice(&(m.data.len() as u32).to_be_bytes()[1..]);
    first.push(m.type_id);
    if fmt == 0 {
        first.extend_from_slice(&m.stream_id.to_le_bytes());
    }
    if extended {
        first.extend_from_slice(&m.timestamp.to_be_bytes());
    }
    let mut pieces = m.data.chunks(chunk_size.max(1));
    first.extend_from_slice(pieces.next().unwrap_or_default());
    out.push(first);
    for p in pieces {
        let mut c = basic_header(3, csid);
        if extended {
            c.extend_from_slice(&m.timestamp.to_be_bytes());
        }
        c.extend_from_slice(p);
        out.push(c);
    }
    out
}

/// Basic header (section 5.3.1.1): 1, 2 or 3 bytes depending on the chunk stream id.
pub fn basic_header(fmt: u8, csid: u32) -> Vec<u8> {
    match csid {
        2..=63 => vec![fmt << 6 | csid as u8],
        64..=319 => vec![fmt << 6, (csid - 64) as u8],
        _ => vec![
            fmt << 6 | 1,
            ((csid - 64) & 0xff) as u8,
            ((csid - 64) >> 8) as u8,
        ],
    }
}

/// A command message on `stream_id`.
pub fn command(stream_id: u32, body: Vec<u8>) -> Message {
    Message {
        type_id: COMMAND_AMF0,
        timestamp: 0,
        stream_id,
        data: body,
    }
}

/// AMF0 string (marker 2).
pub fn amf_string(s: &str) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// AMF0 number (marker 0).
pub fn amf_number(n: f64) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// AMF0 object (marker 3) of already-encoded values.
pub fn amf_object(props: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![3];
    for (k, val) in props {
        v.extend_from_slice(&(k.len() as u16).to_be_bytes());
        v.extend_from_slice(k.as_bytes());
        v.extend_from_slice(val);
    }
    v.extend_from_slice(&[0, 0, 9]);
    v
}

fn starts_with_string(data: &[u8], s: &str) -> bool {
    data.starts_with(&amf_string(s))
}

/// The `code` property of an onStatus info object.
fn status_code(data: &[u8]) -> Option<String> {
    let key = b"\x00\x04code\x02";
    let at = data.windows(key.len()).position(|w| w == key)? + key.len();
    let len = u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]) as usize;
    let s = data.get(at + 2..at + 2 + len)?;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// Reassembles the server's chunk stream (enough for its answers: all header formats, chunk size).
#[derive(Default)]
struct Reader {
    buf: Vec<u8>,
    chunk_size: Option<usize>,
    /// Per chunk stream: (timestamp, length, type id, stream id, partial payload).
    streams: HashMap<u32, (u32, usize, u8, u32, Vec<u8>)>,
}

impl Reader {
    fn next(&mut self) -> Result<Option<Message>> {
        loop {
            let b = &self.buf;
            let Some(&first) = b.first() else {
                return Ok(None);
            };
            let fmt = first >> 6;
            let (csid, mut pos) = match first & 0x3f {
                0 if b.len() >= 2 => (64 + u32::from(b[1]), 2),
                1 if b.len() >= 3 => (64 + u32::from(b[1]) + 256 * u32::from(b[2]), 3),
                0 | 1 => return Ok(None),
                n => (u32::from(n), 1),
            };
            let hlen = [11, 7, 3, 0][usize::from(fmt)];
            if b.len() < pos + hlen {
                return Ok(None);
            }
            let h = &b[pos..pos + hlen];
            pos += hlen;
            let u24 = |s: &[u8]| u32::from_be_bytes([0, s[0], s[1], s[2]]);
            let mut st = self.streams.get(&csid).cloned().unwrap_or_default();
            if fmt <= 2 && u24(&h[0..3]) == 0xFF_FFFF {
                pos += 4; // extended timestamps are not needed by these tests
            }
            if fmt == 0 {
                st.0 = u24(&h[0..3]);
            }
            if fmt <= 1 {
                st.1 = u24(&h[3..6]) as usize;
                st.2 = h[6];
            }
            if fmt == 0 {
                st.3 = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            let piece = (st.1 - st.4.len()).min(self.chunk_size.unwrap_or(128));
            if b.len() < pos + piece {
                return Ok(None);
            }
            st.4.extend_from_slice(&b[pos..pos + piece]);
            self.buf.drain(..pos + piece);
            if st.4.len() == st.1 {
                let data = std::mem::take(&mut st.4);
                self.streams.insert(csid, st.clone());
                if st.2 == SET_CHUNK_SIZE && data.len() >= 4 {
                    self.chunk_size =
                        Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize);
                }
                return Ok(Some(Message {
                    type_id: st.2,
                    timestamp: st.0,
                    stream_id: st.3,
                    data,
                }));
            }
            self.streams.insert(csid, st);
        }
    }
}

/// One FLV tag (Adobe FLV specification v10.1, E.4.1).
#[derive(Debug, Clone)]
pub struct FlvTag {
    pub type_id: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

/// Reads the tags of an FLV file.
pub fn read_flv(path: &Path) -> Result<Vec<FlvTag>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.starts_with(b"FLV"), "{} is not FLV", path.display());
    let mut pos = u32::from_be_bytes(bytes[5..9].try_into()?) as usize + 4;
    let mut tags = Vec::new();
    while pos + 11 <= bytes.len() {
        let h = &bytes[pos..pos + 11];
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let end = pos + 11 + len;
        ensure!(end <= bytes.len(), "truncated FLV tag");
        if matches!(h[0], 8 | 9 | 18) {
            tags.push(FlvTag {
                type_id: h[0],
                timestamp: ts,
                data: bytes[pos + 11..end].to_vec(),
            });
        }
        pos = end + 4;
    }
    Ok(tags)
}

/// The test fixture `media/tests/fixtures/clip.flv` (6 s, 320x240 H.264 + AAC).
pub fn fixture() -> Result<Vec<FlvTag>> {
    read_flv(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures/clip.flv"))
}
