//! Hostile HTTP at the real edge binary: path traversal in every spelling and oversized requests get a
//! 4xx or a closed connection, never a file or a crash, and the edge keeps answering.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Sends `request` as is; returns the status line's code, or None when the edge just closes.
fn raw(port: u16, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // The edge may answer and close before a huge request is fully written.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn get(port: u16, path: &str) -> Option<u16> {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn traversal_and_oversized_requests_get_4xx_and_the_edge_keeps_serving() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_cdn-edge"))
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--kafka-brokers", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no HTTP on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port, "/healthz"), Some(200));

    for path in [
        "/live/../../etc/passwd",
        "/live/cam/../../../etc/passwd",
        "/live/%2e%2e/%2e%2e/etc/passwd",
        "/live/..%2f..%2fetc%2fpasswd/index.m3u8",
        "/live/cam%2F..%2F..%2Fetc/index.m3u8",
        "/live/cam/..%2f..%2fetc%2fpasswd",
        "/live/.hidden/index.m3u8",
        "/live/cam%00/index.m3u8",
        "/live/cam/%2e%2e%5c%2e%2e%5cwin.ini",
        "/assets/../../Cargo.toml",
        "//etc/passwd",
    ] {
        let code = get(port, path).unwrap_or(0);
        assert!((400..500).contains(&code), "{path}: {code}");
    }
    let long_path = format!("/live/{}/index.m3u8", "a".repeat(100_000));
    let code = get(port, &long_path);
    assert!(code.is_none_or(|c| (400..500).contains(&c)), "{code:?}");

    // A 1 MB header: refused (431) or the connection closed, nothing buffered without bound.
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend_from_slice(b"\r\n\r\n");
    let code = raw(port, &big);
    assert!(code.is_none_or(|c| (400..500).contains(&c)), "{code:?}");
    // 10,000 small headers.
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..10_000 {
        many.extend(format!("X-H{i}: v\r\n").into_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let code = raw(port, &many);
    assert!(code.is_none_or(|c| (400..500).contains(&c)), "{code:?}");

    // Still serving, still running.
    assert_eq!(get(port, "/healthz"), Some(200));
    assert!(child.0.try_wait().expect("wait").is_none(), "edge exited");
}
