//! Shared helpers of the binary's tests: run `midge` and start `midge serve` on a free port.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

/// Spawns `midge serve` with `args` (info logs, no colour) and a thread that forwards its
/// log lines; the process is killed when the returned [`Broker`] is dropped (its address is
/// empty until the caller fills it in).
pub fn spawn_serve(args: &[&str]) -> Broker {
    let mut child = midge()
        .arg("serve")
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Broker {
        child,
        addr: String::new(),
        port: String::new(),
        logs,
    }
}

/// Starts `midge serve` with `args` then `extra` and waits for the address it logs.
pub fn start_serve(args: &[&str], extra: &[&str]) -> Broker {
    let all: Vec<&str> = args.iter().chain(extra).copied().collect();
    let mut broker = spawn_serve(&all);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = broker.logs.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("mqtt://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let addr = addr
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .to_owned();
                broker.port = addr.rsplit(':').next().unwrap().to_owned();
                broker.addr = addr;
                return broker;
            }
        }
    }
    // Dropping the broker kills the process.
    panic!("midge did not log its listening address");
}

/// A fresh directory `midge-{prefix}-{pid}` under the system's temporary directory,
/// removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("midge-{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (with its whole process group, if it leads one) and reaped on
/// drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub group: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            // The negative id names the process group that this child leads, Chromium's
            // browser, renderer, GPU and utility processes together.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Chromium executable: `MIDGE_CHROMIUM`; else Debian's binary itself, not its
/// `/usr/bin/chromium` wrapper script, which adds flags of its own from /etc/chromium.d;
/// else `chromium` or `chromium-browser` on PATH.
pub fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("MIDGE_CHROMIUM") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/lib/chromium/chromium");
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no chromium (Debian package `chromium`); \
                 run scripts/install-test-deps.sh or set MIDGE_CHROMIUM"
            )
        })
}

/// A loopback port that was free a moment ago (for configs that cannot say "any port").
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
