//! A stand-in for the manager service behind nginx-rtmp-style hooks: a real HTTP server on a free
//! loopback port that records every request it receives and answers by a rule the test chooses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the manager received.
#[derive(Debug, Clone)]
pub struct HookCall {
    /// Request path, e.g. `/on_publish`.
    pub path: String,
    /// `Content-Type` header.
    pub content_type: String,
    /// Form fields in the order sent (repeated names kept).
    pub form: Vec<(String, String)>,
}

impl HookCall {
    /// First value of a form field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How the manager answers a request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Status code with an empty body.
    Status(u16),
    /// 302 with `Location: <name>`.
    Rename(String),
    /// Wait this long before answering 200 (for timeouts).
    Delay(Duration),
    /// Status code with these extra headers (e.g. `X-Record: on`).
    WithHeaders(u16, Vec<(String, String)>),
}

type Rule = dyn Fn(&HookCall) -> Answer + Send + Sync;

/// The running manager; stops when dropped.
pub struct Manager {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<HookCall>>>,
    stop: Arc<AtomicBool>,
}

impl Manager {
    /// Starts a manager answering by `rule`.
    pub fn start(rule: impl Fn(&HookCall) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind manager");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<Rule> = Arc::new(rule);
        {
            let (calls, stop) = (calls.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (calls, rule) = (calls.clone(), rule.clone());
                            std::thread::spawn(move || serve(conn, &calls, &*rule));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Self { addr, calls, stop }
    }

    /// `http://addr/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<HookCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Calls whose `call` field is `call`.
    pub fn calls_of(&self, call: &str) -> Vec<HookCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.get("call") == Some(call))
            .collect()
    }

    /// Waits until `n` calls with `call` arrived, or the timeout passes; returns them.
    pub fn wait_for(&self, call: &str, n: usize, timeout: Duration) -> Vec<HookCall> {
        crate::poll(timeout, Duration::from_millis(50), || {
            Some(self.calls_of(call)).filter(|got| got.len() >= n)
        })
        .unwrap_or_else(|| self.calls_of(call))
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, calls: &Mutex<Vec<HookCall>>, rule: &Rule) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (mut len, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let call = HookCall {
        path,
        content_type,
        form: parse_form(&String::from_utf8_lossy(&body)),
    };
    if let Ok(mut c) = calls.lock() {
        c.push(call.clone());
    }
    let response = match rule(&call) {
        Answer::Status(code) => format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        Answer::Rename(name) => format!(
            "HTTP/1.1 302 Found\r\nlocation: {name}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        Answer::WithHeaders(code, headers) => {
            let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            format!("HTTP/1.1 {code} X\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n")
        }
        Answer::Delay(d) => {
            std::thread::sleep(d);
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
        }
    };
    let mut conn = conn;
    let _ = conn.write_all(response.as_bytes());
}

/// Decodes `application/x-www-form-urlencoded`.
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).map(|h| u8::from_str_radix(h, 16)) {
                    Ok(Ok(b)) => {
                        out.push(b);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
