//! The binary as an operator meets it: help, version, clear one-line startup errors, serving while the
//! broker is unreachable, and a clean exit on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cdn-edge");

fn edge() -> Command {
    let mut cmd = Command::new(BIN);
    // Keep the tests independent of the environment they run in.
    for (k, _) in std::env::vars() {
        if k.starts_with("EDGE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cdn-edge");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cdn-edge did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn help_explains_every_flag_and_version_works() {
    let out = run(edge().arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--http-listen",
        "--kafka-brokers",
        "--topic",
        "--window-segments",
        "--cache-bytes",
        "--lookback-seconds",
        "--segment-ttl-seconds",
        "--config",
        "--log-format",
        "--kafka-option",
        "EDGE_HTTP_LISTEN",
        "EDGE_KAFKA_OPTIONS",
        "0.0.0.0:8080",
        "536870912",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let out = run(edge().arg("--version"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cdn-edge "));
}

#[test]
fn bad_settings_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, "topic = \"t\"\ncache_byte = 5\n").expect("write");
    let out = run(edge().arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache_byte"), "{err}");
    assert!(err.starts_with("cdn-edge: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Malformed TOML and a value of the wrong type: one line each, with where and what.
    for (text, needle) in [
        ("topic = \n", "line 1, column 9"),
        ("window_segments = \"six\"\n", "expected usize"),
    ] {
        std::fs::write(&file, text).expect("write");
        let out = run(edge().arg("--config").arg(&file));
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }

    let out = run(edge().env("EDGE_WINDOW_SEGMENTS", "0"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--window-segments"), "{err}");
}

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(edge().args(["--http-listen", &addr, "--kafka-brokers", "127.0.0.1:1"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot listen for HTTP on"), "{err}");
}

/// Runs the edge until its output contains `needle` (or 20 s pass); returns the output so far.
fn output_until(cmd: &mut Command, needle: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("edge.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let _child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_missing_topic_is_one_clear_line_and_retried() {
    // librdkafka's mock cluster listens on a real loopback port, so the binary can use it.
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let out = output_until(
        edge()
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--kafka-brokers", &cluster.bootstrap_servers()])
            .args(["--topic", "absent-topic"]),
        "does not exist",
    );
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("absent-topic` does not exist"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("create it"), "{out}");
    assert!(lines[0].contains("retrying every"), "{out}");
}

#[test]
fn an_unreachable_broker_says_what_to_check() {
    let out = output_until(
        edge()
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--kafka-brokers", &format!("127.0.0.1:{}", free_port())]),
        "cannot reach the Kafka broker",
    );
    let line = out
        .lines()
        .find(|l| l.contains("cannot reach the Kafka broker"))
        .unwrap_or_else(|| panic!("no advice logged:\n{out}"));
    assert!(line.contains("--kafka-brokers"), "{line}");
    // librdkafka's own connection failures stay out of the way at the default level.
    assert!(!out.contains("ERROR librdkafka"), "{out}");
}

#[test]
fn serves_without_a_broker_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("edge.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = free_port();
    let child = edge()
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        // Nothing listens there: the consumer must keep retrying, visibly.
        .args(["--kafka-brokers", &format!("127.0.0.1:{}", free_port())])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut child = Killed(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some(r) = http_get(port, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "no HTTP on {port}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let missing = http_get(port, "/live/cam/index.m3u8").expect("answer");
    assert!(missing.contains(" 404 "), "{missing}");

    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("waiting for the broker and topic")
    {
        assert!(Instant::now() < deadline, "no retry line logged");
        std::thread::sleep(Duration::from_millis(100));
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        exit.success(),
        "{exit:?}\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
}
