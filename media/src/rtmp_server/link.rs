//! A connection's socket, on the runtime's reactor or off it.
//!
//! Pacing (`pacing.rs`) reads a publisher only on the shared clock, but a socket registered with the
//! reactor still wakes a runtime thread from `epoll_wait` every time its publisher's bytes arrive
//! (edge-triggered readiness fires per arrival, whoever is waiting), only to find nothing to run: a 2.5
//! Mbit/s encoder sends a few dozen times a second, and at 20 publishers those wake-ups were about a
//! dozen per tick (253 `epoll_wait` returns a second against 20 ticks; 55 with this). The saving
//! shrinks with load (busy threads park less, so fewer arrivals find one to wake): 7-14% of media's CPU
//! at 20 publishers, about 3% at 50. So a publishing connection takes its TCP socket off the reactor:
//! the kernel queues the bytes without waking anyone, and the connection reads them with plain
//! non-blocking reads at each tick (SRS's merged read does the same with its own scheduler: a
//! coroutine's socket is polled only while it waits). Writes to a publisher are a few small control
//! messages; one that cannot be written at once puts the socket back on the reactor for the rest of
//! that write. Anything but a publisher (players, a connection before `publish`) stays on the reactor,
//! and so does a socket that is not TCP (the in-memory pipes of tests).

use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Room of the first read off the reactor. The room is zeroed before each read (no `unsafe` to read
/// into uninitialised memory), so it follows what the last tick brought (a quarter more, whole pages,
/// within `ROOM_MIN..=ROOM_MAX`) rather than staying at the most a tick could bring: zeroing 32 KiB
/// per read was 3.6% of media's CPU at 20 publishers of 2.5 Mbit/s (16 KB a tick). A tick that
/// brings more than the room reads on, room after room.
const ROOM_START: usize = 16 * 1024;
const ROOM_MIN: usize = 4 * 1024;
const ROOM_MAX: usize = 256 * 1024;
/// The most one read off the reactor takes before the caller parses it (a publisher that got ahead,
/// e.g. while a hook answered slowly, is caught up in several reads in a row, not one unbounded one). A
/// read that brings this much or more is not a drained socket: read again at once.
pub const TICK_MAX: usize = ROOM_MAX;

/// A connection's byte stream: a TCP socket, or an in-memory pipe in tests.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// The socket off the reactor (non-blocking), or itself back if it cannot leave it.
    fn off_reactor(self) -> Result<io::Result<std::net::TcpStream>, Self> {
        Err(self)
    }

    /// A socket [`Socket::off_reactor`] gave, registered again.
    fn on_reactor(tcp: std::net::TcpStream) -> io::Result<Self> {
        drop(tcp);
        Err(io::Error::other("only a TCP socket leaves the reactor"))
    }
}

impl Socket for tokio::net::TcpStream {
    fn off_reactor(self) -> Result<io::Result<std::net::TcpStream>, Self> {
        Ok(self.into_std())
    }

    fn on_reactor(tcp: std::net::TcpStream) -> io::Result<Self> {
        tokio::net::TcpStream::from_std(tcp)
    }
}

impl Socket for tokio::io::DuplexStream {}

/// What a read gave.
#[derive(Debug)]
pub enum Received {
    /// This many bytes were appended to the buffer (0: the peer closed the connection).
    Bytes(usize),
    /// Off the reactor, nothing had arrived by the tick.
    Nothing,
}

/// Why a read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Io(#[from] io::Error),
}

enum State<S> {
    OnReactor(S),
    OffReactor {
        tcp: std::net::TcpStream,
        /// Room of the next read.
        room: usize,
        /// When bytes last came (or the socket left the reactor): the read timeout counts from then.
        last_bytes: Instant,
    },
    /// Only while moving between the two, or after a move failed (every use then fails).
    Moving,
}

/// A connection's socket, and where it is.
pub struct Link<S> {
    state: State<S>,
    /// An error a read off the reactor met after it had read bytes: the bytes go to the caller first,
    /// the error with the next read (a reset publisher's last bytes are not lost).
    failed: Option<io::Error>,
}

impl<S: Socket> Link<S> {
    pub fn new(socket: S) -> Self {
        Self {
            state: State::OnReactor(socket),
            failed: None,
        }
    }

    /// Whether the socket is off the reactor.
    pub fn is_off_reactor(&self) -> bool {
        matches!(self.state, State::OffReactor { .. })
    }

    /// Moves the socket off the reactor (`true`) or back on it (`false`), if it can go; a socket that
    /// cannot leave stays where it is.
    pub fn set_off_reactor(&mut self, off: bool) -> io::Result<()> {
        self.state = match (std::mem::replace(&mut self.state, State::Moving), off) {
            (State::OnReactor(s), true) => match s.off_reactor() {
                Ok(tcp) => State::OffReactor {
                    tcp: tcp?,
                    room: ROOM_START,
                    last_bytes: Instant::now(),
                },
                Err(s) => State::OnReactor(s),
            },
            (State::OffReactor { tcp, .. }, false) => State::OnReactor(S::on_reactor(tcp)?),
            (State::Moving, _) => return Err(moved()),
            (state, _) => state,
        };
        Ok(())
    }

    /// Reads into `buf` (reserving room as needed). On the reactor: waits until `not_before` if set,
    /// then until bytes arrive, at most `timeout`. Off it: waits until `not_before` (the next tick),
    /// then reads whatever the kernel holds without waiting, up to [`TICK_MAX`]; nothing for `timeout`
    /// since the last bytes times out there too.
    pub async fn read(
        &mut self,
        buf: &mut BytesMut,
        not_before: Option<Instant>,
        timeout: Duration,
    ) -> Result<Received, LinkError> {
        if let Some(at) = not_before {
            tokio::time::sleep_until(at).await;
        }
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        match &mut self.state {
            State::OnReactor(s) => match tokio::time::timeout(timeout, s.read_buf(buf)).await {
                Ok(n) => Ok(Received::Bytes(n?)),
                Err(_) => Err(LinkError::TimedOut),
            },
            State::OffReactor {
                tcp,
                room,
                last_bytes,
            } => match read_available(tcp, buf, *room, &mut self.failed)? {
                Received::Nothing if last_bytes.elapsed() >= timeout => Err(LinkError::TimedOut),
                Received::Nothing => Ok(Received::Nothing),
                Received::Bytes(n) => {
                    *room = next_room(n);
                    *last_bytes = Instant::now();
                    Ok(Received::Bytes(n))
                }
            },
            State::Moving => Err(moved().into()),
        }
    }

    /// Writes all of `data`, in at most `timeout`.
    pub async fn write_all(&mut self, data: &[u8], timeout: Duration) -> Result<(), LinkError> {
        let mut written = 0;
        if let State::OffReactor { tcp, .. } = &mut self.state {
            written = write_available(tcp, data)?;
            if written == data.len() {
                return Ok(());
            }
            // The send buffer is full (a publisher that stopped reading): wait for room on the
            // reactor; the next read takes the socket off it again.
            self.set_off_reactor(false)?;
        }
        match &mut self.state {
            State::OnReactor(s) => tokio::time::timeout(timeout, s.write_all(&data[written..]))
                .await
                .map_err(|_| LinkError::TimedOut)?
                .map_err(LinkError::Io),
            _ => Err(moved().into()),
        }
    }

    /// Closes the sending side (best effort: the connection is ending).
    pub async fn shutdown(&mut self) {
        match &mut self.state {
            State::OnReactor(s) => {
                let _ = s.shutdown().await;
            }
            State::OffReactor { tcp, .. } => {
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            }
            State::Moving => {}
        }
    }
}

fn moved() -> io::Error {
    io::Error::other("socket lost while moving to or from the reactor")
}

/// The room of the read after a tick that brought `n` bytes.
fn next_room(n: usize) -> usize {
    (n + n / 4)
        .next_multiple_of(ROOM_MIN)
        .clamp(ROOM_MIN, ROOM_MAX)
}

/// Reads what the kernel holds for a non-blocking socket, `room` bytes at a time, up to [`TICK_MAX`].
/// An error after some bytes is left in `failed` for the next read.
fn read_available(
    mut tcp: &std::net::TcpStream,
    buf: &mut BytesMut,
    room: usize,
    failed: &mut Option<io::Error>,
) -> io::Result<Received> {
    let mut total = 0;
    while total < TICK_MAX {
        let start = buf.len();
        buf.resize(start + room, 0);
        let read = tcp.read(&mut buf[start..]);
        let n = *read.as_ref().unwrap_or(&0);
        buf.truncate(start + n);
        match read {
            // The peer closed: report what came before the close first, the close on the next read.
            Ok(0) => return Ok(Received::Bytes(total)),
            Ok(n) if n < room => return Ok(Received::Bytes(total + n)),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && total == 0 => {
                return Ok(Received::Nothing)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Bytes(total)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if total == 0 => return Err(e),
            Err(e) => {
                *failed = Some(e);
                return Ok(Received::Bytes(total));
            }
        }
    }
    Ok(Received::Bytes(total))
}

/// Writes what a non-blocking socket takes now; how much that was.
fn write_available(mut tcp: &std::net::TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match tcp.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A connected pair of loopback TCP sockets: the client's end, the server's, and the client's address.
    pub(in crate::rtmp_server) async fn tcp_pair() -> (
        tokio::net::TcpStream,
        tokio::net::TcpStream,
        std::net::SocketAddr,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        (client, server, peer)
    }

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let (client, server, _) = tcp_pair().await;
        (client, server)
    }

    /// Waits until the kernel holds at least `n` bytes for `tcp` (loopback delivery is quick, not instant).
    async fn queued(tcp: &tokio::net::TcpStream, n: usize) {
        let mut peek = vec![0; n];
        for _ in 0..500 {
            if tcp.peek(&mut peek).await.unwrap_or(0) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("{n} bytes never arrived");
    }

    #[tokio::test]
    async fn off_the_reactor_a_tick_reads_everything_queued_and_nothing_is_not_a_close() {
        let (mut client, server) = pair().await;
        let data: Vec<u8> = (0..3 * ROOM_START + 123).map(|i| i as u8).collect();
        client.write_all(&data).await.expect("write");
        queued(&server, data.len()).await;
        let mut link = Link::new(server);
        link.set_off_reactor(true).expect("off");
        assert!(link.is_off_reactor());
        let mut buf = BytesMut::new();
        let second = Duration::from_secs(1);
        // More than one room's worth, in one read.
        match link.read(&mut buf, None, second).await.expect("read") {
            Received::Bytes(n) => assert_eq!(n, data.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(&buf[..], &data[..]);
        // Drained, connection open: nothing this tick (not the end of the stream).
        assert!(matches!(
            link.read(&mut buf, None, second).await.expect("read"),
            Received::Nothing
        ));
        drop(client);
    }

    #[tokio::test]
    async fn bytes_before_a_close_come_first_then_the_close() {
        let (mut client, server) = pair().await;
        let mut link = Link::new(server);
        link.set_off_reactor(true).expect("off");
        // Exactly one room: the read fills it, reads on, and meets the close behind the bytes.
        let data = vec![7u8; ROOM_START];
        client.write_all(&data).await.expect("write");
        client.shutdown().await.expect("shutdown");
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = BytesMut::new();
        let second = Duration::from_secs(1);
        assert!(matches!(
            link.read(&mut buf, None, second).await.expect("read"),
            Received::Bytes(ROOM_START)
        ));
        assert!(matches!(
            link.read(&mut buf, None, second).await.expect("read"),
            Received::Bytes(0)
        ));
        assert_eq!(buf.len(), ROOM_START);
    }

    #[tokio::test]
    async fn a_reset_publishers_last_bytes_are_delivered_before_the_error() {
        let (mut client, server) = pair().await;
        let data: Vec<u8> = (0..3 * ROOM_START).map(|i| (i % 253) as u8).collect();
        client.write_all(&data).await.expect("write");
        queued(&server, data.len()).await;
        let mut link = Link::new(server);
        link.set_off_reactor(true).expect("off");
        // Linger 0: the close sends a reset behind the bytes already delivered.
        #[allow(deprecated)] // set_linger: exactly what this test wants
        client.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = BytesMut::new();
        let second = Duration::from_secs(1);
        let mut got = 0;
        loop {
            match link.read(&mut buf, None, second).await {
                Ok(Received::Bytes(0)) => panic!("a reset is not a clean close"),
                Ok(Received::Bytes(n)) => got += n,
                Ok(Received::Nothing) => panic!("the reset was not seen"),
                Err(LinkError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, data.len(), "every byte before the reset");
        assert_eq!(&buf[..], &data[..]);
    }

    #[test]
    fn the_room_follows_the_last_tick_within_bounds() {
        assert_eq!(next_room(0), ROOM_MIN);
        assert_eq!(next_room(16_000), 20 * 1024);
        assert_eq!(next_room(ROOM_MAX), ROOM_MAX);
    }

    #[tokio::test]
    async fn a_write_that_does_not_fit_waits_on_the_reactor_and_the_socket_can_leave_again() {
        let (mut client, server) = pair().await;
        let mut link = Link::new(server);
        link.set_off_reactor(true).expect("off");
        // Far more than loopback's socket buffers hold while the client reads nothing yet.
        let data: Vec<u8> = (0..32 << 20).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = vec![0; 32 << 20];
            client.read_exact(&mut got).await.expect("read");
            (client, got)
        });
        link.write_all(&data, Duration::from_secs(20))
            .await
            .expect("written");
        assert!(
            !link.is_off_reactor(),
            "back on the reactor to wait for room"
        );
        let (mut client, got) = reader.await.expect("reader");
        assert!(got == data, "every byte, in order");
        link.set_off_reactor(true).expect("off again");
        client.write_all(b"ping").await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = BytesMut::new();
        assert!(matches!(
            link.read(&mut buf, None, Duration::from_secs(1))
                .await
                .expect("read"),
            Received::Bytes(4)
        ));
    }

    #[tokio::test]
    async fn an_in_memory_pipe_stays_on_the_reactor() {
        let (_client, server) = tokio::io::duplex(64);
        let mut link = Link::new(server);
        link.set_off_reactor(true).expect("stays");
        assert!(!link.is_off_reactor());
        let mut buf = BytesMut::new();
        assert!(matches!(
            link.read(&mut buf, None, Duration::from_millis(20)).await,
            Err(LinkError::TimedOut)
        ));
    }
}
