//! Shared helpers of the binary's tests: run `midge` and start `midge serve` on a free port.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `midge` binary under test.
pub fn midge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_midge"))
}

/// A running `midge serve`, killed on drop.
pub struct Broker {
    pub child: Child,
    pub addr: String,
    pub port: String,
    pub logs: mpsc::Receiver<String>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `midge serve --in-memory --listen 127.0.0.1:0` and waits for the address it
/// logs.
pub fn start(extra: &[&str]) -> Broker {
    start_serve(&["--in-memory", "--listen", "127.0.0.1:0"], extra)
}

/// Starts `midge serve` with `args` then `extra` and waits for the address it logs.
pub fn start_serve(args: &[&str], extra: &[&str]) -> Broker {
    let mut child = midge()
        .arg("serve")
        .args(args)
        .args(extra)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("mqtt://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let addr = addr
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .to_owned();
                let port = addr.rsplit(':').next().unwrap().to_owned();
                return Broker {
                    child,
                    addr,
                    port,
                    logs: rx,
                };
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("midge did not log its listening address");
}
