//! Harness for the end-to-end tests: starts Apache Kafka ([`kafka`]), `media` and `cdn-edge` processes on
//! free loopback ports, publishes with a real ffmpeg, and reads what viewers would read.
//!
//! Binaries are taken from `E2E_BIN_DIR` (default: the workspace's `target/debug`), Kafka's jars from
//! where `scripts/install-deps.sh` puts them (`KAFKA_LIBS` overrides). Every child is killed on drop, and
//! its output goes to a log file under the test's temp directory so a failure can be read afterwards.

pub mod browser;
pub mod faults;
pub mod kafka;
pub mod ll_playlist;
pub mod manager;
pub mod playlist;
pub mod probe;
pub mod rtmp_client;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use kafka::Broker;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests that start at once).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports. Calling [`free_port`] twice can return the same port twice: the
/// first is released before the second is asked for.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    })
}

/// Starts a process on ports from [`free_port`] (`start` picks them and returns the address to wait
/// for), retrying with fresh ports when it exits because one was taken: a port is only known free when
/// `free_port` releases it, and another socket of the machine (an outgoing connection gets an ephemeral
/// port from the same range) can take it before the process binds it.
fn start_on_free_ports<T>(
    mut start: impl FnMut() -> Result<(Proc, SocketAddr, T)>,
) -> Result<(Proc, T)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut proc, addr, extra) = start()?;
        match proc.listening(addr, Duration::from_secs(20)) {
            Ok(()) => return Ok((proc, extra)),
            Err(e) if attempt < 3 && proc.lost_its_port() => {
                eprintln!("{e}; retrying on other ports");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Directory for this test's logs and files; kept after the run for inspection.
pub fn work_dir(test: &str) -> PathBuf {
    let root = std::env::var_os("E2E_WORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("e2e"));
    let dir = root.join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create e2e work dir");
    dir
}

/// The workspace directory (parent of the `e2e` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the workspace")
        .to_path_buf()
}

/// Path of one of this workspace's binaries (`media`, `cdn-edge`).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("E2E_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("debug"));
    dir.join(name)
}

/// A child process killed (SIGKILL) when dropped unless stopped first.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub started: Instant,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr into `<dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.into(),
            child,
            log,
            started,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        Ok(self.terminate_status(timeout)?.success())
    }

    /// Sends SIGTERM and waits up to `timeout` for exit; returns how it exited.
    pub fn terminate_status(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        poll_result(timeout, Duration::from_millis(50), || {
            Ok(self.child.try_wait()?)
        })?
        .with_context(|| format!("{} did not exit within {timeout:?} of SIGTERM", self.name))
    }

    /// Waits for a natural exit (bounded).
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        poll_result(timeout, Duration::from_millis(50), || {
            Ok(self.child.try_wait()?)
        })?
        .with_context(|| format!("{} still running after {timeout:?}", self.name))
    }

    /// Waits until the process accepts connections on `addr`; fails early if it exits first.
    pub fn listening(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        poll_result(timeout, Duration::from_millis(50), || {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Some(()));
            }
            if let Some(status) = self.child.try_wait()? {
                let log = self.log_text();
                let last = log.lines().last().unwrap_or_default();
                bail!(
                    "{} exited ({status}) before listening on {addr}: {last}",
                    self.name
                );
            }
            Ok(None)
        })?
        .with_context(|| format!("nothing listening on {addr} after {timeout:?}"))
    }

    /// Whether the process could not bind a port because something else had taken it.
    fn lost_its_port(&self) -> bool {
        let log = self.log_text().to_lowercase();
        log.contains("address already in use") || log.contains("addrinuse")
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    poll(timeout, Duration::from_millis(50), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    })
    .map(drop)
    .with_context(|| format!("nothing listening on {addr} after {timeout:?}"))
}

/// A running `media`.
pub struct Media {
    pub proc: Proc,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
}

impl Media {
    /// Starts `media` against `broker` with extra flags.
    pub fn start(dir: &Path, name: &str, broker: &Broker, extra: &[&str]) -> Result<Self> {
        let (proc, (rtmp, http)) = start_on_free_ports(|| {
            let [rtmp_port, http_port] = free_ports();
            let rtmp: SocketAddr = ([127, 0, 0, 1], rtmp_port).into();
            let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
            let mut cmd = Command::new(bin("media"));
            cmd.args(["--rtmp-listen", &rtmp.to_string()])
                .args(["--http-listen", &http.to_string()])
                .args(["--kafka-brokers", &broker.bootstrap()])
                .args(["--topic", &broker.topic])
                .args(extra)
                .env("RUST_LOG", "info,media=debug");
            // media binds RTMP, then HTTP: HTTP listening means both are bound.
            Ok((Proc::spawn(name, cmd, dir)?, http, (rtmp, http)))
        })?;
        Ok(Self { proc, rtmp, http })
    }

    /// The URL to publish `stream` to.
    pub fn publish_url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.rtmp)
    }
}

/// A running `cdn-edge`.
pub struct Edge {
    pub proc: Proc,
    pub http: SocketAddr,
}

impl Edge {
    /// Starts an edge against `broker` with extra flags.
    pub fn start(dir: &Path, name: &str, broker: &Broker, extra: &[&str]) -> Result<Self> {
        let (proc, http) = start_on_free_ports(|| {
            let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            Ok((Self::spawn(dir, name, broker, http, extra)?, http, http))
        })?;
        Ok(Self { proc, http })
    }

    /// Starts an edge on a given HTTP address (e.g. the one a killed edge had).
    pub fn start_on(
        dir: &Path,
        name: &str,
        broker: &Broker,
        http: SocketAddr,
        extra: &[&str],
    ) -> Result<Self> {
        let mut proc = Self::spawn(dir, name, broker, http, extra)?;
        proc.listening(http, Duration::from_secs(20))?;
        Ok(Self { proc, http })
    }

    fn spawn(
        dir: &Path,
        name: &str,
        broker: &Broker,
        http: SocketAddr,
        extra: &[&str],
    ) -> Result<Proc> {
        let mut cmd = Command::new(bin("cdn-edge"));
        cmd.args(["--http-listen", &http.to_string()])
            .args(["--kafka-brokers", &broker.bootstrap()])
            .args(["--topic", &broker.topic])
            .args(extra)
            .env("RUST_LOG", "info,cdn_edge=debug");
        Proc::spawn(name, cmd, dir)
    }

    /// `http://addr/live/<stream>/<file>`.
    pub fn url(&self, stream: &str, file: &str) -> String {
        format!("http://{}/live/{stream}/{file}", self.http)
    }

    /// The stream's `index.m3u8` as served and as parsed by the independent reader, if the edge has it
    /// (200). Panics on a playlist that breaks RFC 8216 or comes with the wrong content type.
    pub fn playlist(&self, stream: &str) -> Option<(Vec<u8>, playlist::MediaPlaylist)> {
        let r = get(&self.url(stream, "index.m3u8")).ok()?;
        if r.status != 200 {
            return None;
        }
        let text = String::from_utf8(r.body.clone()).ok()?;
        let parsed = playlist::parse(&text).expect("every playlist served follows RFC 8216");
        assert_eq!(r.content_type, "application/vnd.apple.mpegurl");
        Some((r.body, parsed))
    }
}

/// An HTTP response as a test sees it.
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// GET `url` (loopback only), with a short timeout; non-2xx statuses are returned, not errors.
pub fn get(url: &str) -> Result<Response> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e).with_context(|| format!("GET {url}")),
    };
    let status = resp.status();
    let content_type = resp.header("content-type").unwrap_or_default().to_owned();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)?;
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// What ffmpeg publishes.
pub struct Publish {
    pub seconds: u32,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
    pub gop_frames: u32,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            seconds: 12,
            width: 640,
            height: 360,
            video_kbps: 1000,
            gop_frames: 60,
        }
    }
}

impl Publish {
    /// A light publish (320x240 at 300 kbps, 1 s GOP) of `seconds`, so several processes fit on a small
    /// CI machine.
    pub fn small(seconds: u32) -> Self {
        Self {
            seconds,
            width: 320,
            height: 240,
            video_kbps: 300,
            gop_frames: 30,
        }
    }
}

/// Starts ffmpeg publishing a generated test source in real time (`-re`), H.264 with B-frames and AAC,
/// as OBS would send.
pub fn publish(dir: &Path, name: &str, url: &str, p: &Publish) -> Result<Proc> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={}x{}:rate=30:duration={}",
            p.width, p.height, p.seconds
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            p.seconds
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args(["-bf", "2", "-g", &p.gop_frames.to_string(), "-keyint_min"])
        .arg(p.gop_frames.to_string())
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        .args(["-b:v", &format!("{}k", p.video_kbps)])
        .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000"])
        .args(["-f", "flv", url]);
    Proc::spawn(name, cmd, dir)
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes (then one last try). Every
/// wait of the suite goes through this or [`poll_result`]; [`hold`] watches a condition for a while.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_result(timeout, every, || Ok(f())).unwrap_or(None)
}

/// [`poll`] for a check that can fail: an error ends the wait at once and is returned.
pub fn poll_result<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(every);
    }
}

/// Checks `f` every `every` for `duration`: the first error fails it (a condition that must hold for a
/// while, e.g. a playlist that stays live through an outage).
pub fn hold(duration: Duration, every: Duration, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < duration {
        f()?;
        std::thread::sleep(every);
    }
    Ok(())
}
