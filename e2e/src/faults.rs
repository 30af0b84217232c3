//! Fault injection for the end-to-end tests: SIGKILL (brokers, media, edges), an edge restarted on its
//! old port, and a TCP proxy whose link can be cut without a FIN.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::Proc;

/// Kills `proc` with SIGKILL (no chance to clean up) and reaps it.
pub fn kill_hard(proc: &mut Proc) -> Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", &proc.pid().to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -KILL {} ({}) failed", proc.pid(), proc.name);
    }
    proc.wait(Duration::from_secs(10))?;
    Ok(())
}

/// A TCP proxy on loopback that forwards to `target` until [`Proxy::cut`]: from then on it neither
/// reads nor writes, and keeps both sockets open, so each side sees a silent peer with no FIN or RST, as
/// when a network path dies. Sockets close when the proxy is dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding connections on a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (cut, stop) = (cut.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(target) else {
                        continue;
                    };
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                            continue;
                        };
                        let (cut, stop) = (cut.clone(), stop.clone());
                        std::thread::spawn(move || pump(from, to, &cut, &stop));
                    }
                }
            });
        }
        Ok(Self { addr, cut, stop })
    }

    /// Stops forwarding in both directions, without closing anything.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until EOF, an error, or `stop`; while `cut`, touches neither socket.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            // Bytes read just as the link is cut are lost, like packets in flight.
            Ok(_) if cut.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    if !cut.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}
