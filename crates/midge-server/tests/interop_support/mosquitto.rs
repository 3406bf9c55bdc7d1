//! Driving Debian's `mosquitto_sub` and `mosquitto_pub` (package mosquitto-clients) from
//! the interop tests: a subscriber whose output lines are read as they come, and a
//! publisher run to its end. `conn` is the connection part of the command line (`-h HOST
//! -p PORT` and any TLS options); the caller picks the output format.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long any single expected line or process may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for a message that must not arrive.
pub const QUIET: Duration = Duration::from_millis(500);
/// `-W` of every `mosquitto_sub`: it exits by itself after this many seconds at the latest.
const SUB_SECS: &str = "30";
/// Message lines start with this (the `-F` format must too).
pub const MSG: &str = "MSG|";

/// `-h host -p port`.
pub fn host_port(host: &str, port: u16) -> Vec<String> {
    vec!["-h".into(), host.into(), "-p".into(), port.to_string()]
}

/// A running `mosquitto_sub -d -F FORMAT` whose output lines are read as they come.
pub struct Sub {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    pending: VecDeque<String>,
}

fn forward(out: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` after the connection and output options.
    pub fn spawn(conn: &[String], version: &str, args: &[&str], format: &str) -> Sub {
        // Line-buffered: piped, mosquitto_sub's debug lines would wait in its stdio buffer.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "mosquitto_sub"])
            .args(conn)
            .args(["-V", version, "-d", "-W", SUB_SECS, "-F", format])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto_sub from mosquitto-clients; run scripts/install-test-deps.sh");
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().expect("piped stdout"), tx.clone());
        forward(child.stderr.take().expect("piped stderr"), tx);
        Sub {
            child,
            lines,
            seen: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    /// As [`Sub::spawn`], then waits until it has its SUBACK.
    pub async fn start(conn: &[String], version: &str, args: &[&str], format: &str) -> Sub {
        let mut sub = Self::spawn(conn, version, args, format);
        sub.wait_for_line("received SUBACK", |l| l.ends_with("received SUBACK"))
            .await;
        sub
    }

    /// Waits for a line matching `pred`, keeping message lines seen on the way.
    pub async fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("mosquitto_sub ended before {what}:\n{}", self.log()),
                Err(_) => panic!("no {what} within {WAIT:?}:\n{}", self.log()),
            };
            self.seen.push(line.clone());
            if pred(&line) {
                return line;
            }
            if line.starts_with(MSG) {
                self.pending.push_back(line);
            }
        }
    }

    /// Every line so far.
    pub fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// The next message line, without its `MSG|` prefix.
    pub async fn next_message(&mut self) -> String {
        let line = match self.pending.pop_front() {
            Some(line) => line,
            None => {
                self.wait_for_line("a message", |l| l.starts_with(MSG))
                    .await
            }
        };
        line[MSG.len()..].to_owned()
    }

    /// Asserts that no message arrives within [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(line.clone());
            if line.starts_with(MSG) {
                self.pending.push_back(line);
            }
        }
        assert!(
            self.pending.is_empty(),
            "unexpected messages {:?}:\n{}",
            self.pending,
            self.log()
        );
    }

    /// Waits for the process to end by itself (after `-C N`, `-E` or `-W`, or refused);
    /// returns its exit code and output.
    pub async fn exit(mut self) -> (i32, String) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(line);
        }
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("mosquitto_sub did not exit:\n{}", self.log()))
            .expect("waiting for mosquitto_sub");
        (status.code().unwrap_or(-1), self.log())
    }

    /// SIGKILL: the TCP connection ends without a DISCONNECT.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("killing mosquitto_sub");
    }
}

/// Runs `mosquitto_pub -d`; returns whether it succeeded, and its output.
pub async fn publish(conn: &[String], version: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(conn).args(["-V", version, "-d"]).args(args);
    super::run_captured(cmd, WAIT)
        .await
        .unwrap_or_else(|| panic!("mosquitto_pub {args:?} did not finish in {WAIT:?}"))
}
