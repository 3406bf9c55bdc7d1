//! Interop with `mosquitto_sub` and `mosquitto_pub` (Debian `mosquitto-clients`), clients
//! nobody here wrote, through a midge server in this process, with `-V mqttv311` and
//! `-V mqttv5`: QoS 0, 1 and 2 both ways, retained messages (`-r`), wills (`--will-topic`,
//! fired by SIGKILL, not by a normal DISCONNECT), a persistent session (`-c -i ID`) that
//! gets the messages published while it was offline, and 5.0 properties (`-D`) forwarded.
//!
//! `mosquitto_sub` runs with `-d` (to see its SUBACK and acknowledgements) and
//! `-F 'MSG|%t|%q|%r|%p'`, so message lines are told apart from debug lines. Every process
//! has `-W` or a `-C` with a `-W`, is killed on drop, and every wait here is bounded.

#![allow(clippy::unwrap_used)]

mod interop_support;

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use interop_support::start_server;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long any single expected line may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(400);
/// `-W` of every `mosquitto_sub`: it exits by itself after this many seconds at the latest.
const SUB_SECS: &str = "20";

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// One message line of `mosquitto_sub -F 'MSG|%t|%q|%r|%p'`.
#[derive(Debug, PartialEq, Eq)]
struct Msg {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
}

fn msg(topic: &str, qos: u8, retain: bool, payload: &str) -> Msg {
    Msg {
        topic: topic.to_owned(),
        qos,
        retain,
        payload: payload.to_owned(),
    }
}

/// A running `mosquitto_sub` whose output lines are read as they come.
struct Sub {
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
    /// Starts `mosquitto_sub` with `args` (after the connection and output options) and
    /// waits until it has its SUBACK.
    async fn start(port: u16, version: &str, args: &[&str]) -> Sub {
        Self::start_with(port, version, args, "MSG|%t|%q|%r|%p").await
    }

    async fn start_with(port: u16, version: &str, args: &[&str], format: &str) -> Sub {
        // Line-buffered: piped, mosquitto_sub's debug lines would wait in its stdio buffer.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "-eL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-V",
                version,
            ])
            .args(["-d", "-W", SUB_SECS, "-F", format])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto_sub from mosquitto-clients; run scripts/install-test-deps.sh");
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().unwrap(), tx.clone());
        forward(child.stderr.take().unwrap(), tx);
        let mut sub = Sub {
            child,
            lines,
            seen: Vec::new(),
            pending: VecDeque::new(),
        };
        sub.wait_for_line("received SUBACK", |l| l.ends_with("received SUBACK"))
            .await;
        sub
    }

    /// Waits for a line matching `pred`, keeping message lines seen on the way.
    async fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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
            if line.starts_with("MSG|") {
                self.pending.push_back(line);
            }
        }
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// The next message line, split into its fields.
    async fn next_raw(&mut self) -> String {
        match self.pending.pop_front() {
            Some(line) => line,
            None => {
                self.wait_for_line("a message", |l| l.starts_with("MSG|"))
                    .await
            }
        }
    }

    async fn recv(&mut self) -> Msg {
        let line = self.next_raw().await;
        let f: Vec<&str> = line.splitn(5, '|').collect();
        assert_eq!(f.len(), 5, "{line}");
        Msg {
            topic: f[1].to_owned(),
            qos: f[2].parse().unwrap(),
            retain: f[3] == "1",
            payload: f[4].to_owned(),
        }
    }

    /// Asserts that no message arrives within [`QUIET`].
    async fn expect_nothing(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(line.clone());
            if line.starts_with("MSG|") {
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

    /// Waits for the process to exit by itself (after `-C N`, `-E` or `-W`); returns its
    /// exit code.
    async fn exit(mut self) -> (i32, String) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("mosquitto_sub did not exit:\n{}", self.log()))
            .unwrap();
        // Read what is left of its output.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(1), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.log())
    }

    /// SIGKILL: the TCP connection ends without a DISCONNECT.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Runs `mosquitto_pub -d` with `args` and asserts it succeeds; returns its output.
async fn publish(port: u16, version: &str, args: &[&str]) -> String {
    let child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            version,
            "-d",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_pub from mosquitto-clients; run scripts/install-test-deps.sh");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("mosquitto_pub {args:?} did not finish in {WAIT:?}"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mosquitto_pub {args:?}: {text}");
    text
}

async fn pub_sub_at_qos_0_1_2(version: &str) {
    let (server, port) = start_server().await;
    let mut sub = Sub::start(port, version, &["-q", "2", "-t", "mq/#", "-C", "3"]).await;
    let mut sub1 = Sub::start(port, version, &["-q", "1", "-t", "mq/+", "-C", "3"]).await;
    for q in 0..3u8 {
        let (q_arg, topic, payload) = (q.to_string(), format!("mq/q{q}"), format!("m{q}"));
        let out = publish(port, version, &["-q", &q_arg, "-t", &topic, "-m", &payload]).await;
        // The publisher's side of each acknowledgement flow.
        match q {
            1 => assert!(out.contains("received PUBACK"), "{out}"),
            2 => assert!(
                out.contains("received PUBREC") && out.contains("received PUBCOMP"),
                "{out}"
            ),
            _ => {}
        }
    }
    for q in 0..3u8 {
        let (topic, payload) = (format!("mq/q{q}"), format!("m{q}"));
        assert_eq!(sub.recv().await, msg(&topic, q, false, &payload));
        // Delivered at min(publish QoS, granted QoS).
        assert_eq!(sub1.recv().await, msg(&topic, q.min(1), false, &payload));
    }
    // The subscriber's side of the flows: it acknowledged what it received.
    let (code, log) = sub.exit().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("sending PUBACK") && log.contains("sending PUBCOMP"),
        "{log}"
    );
    let (code, log) = sub1.exit().await;
    assert_eq!(code, 0, "{log}");
    server.shutdown(WAIT).await;
}

async fn retained(version: &str) {
    let (server, port) = start_server().await;
    publish(port, version, &["-r", "-q", "1", "-t", "mr/a", "-m", "old"]).await;
    publish(port, version, &["-r", "-q", "2", "-t", "mr/a", "-m", "new"]).await;
    // A new subscription gets the newest retained message, retain set.
    let mut sub = Sub::start(port, version, &["-q", "2", "-t", "mr/#"]).await;
    assert_eq!(sub.recv().await, msg("mr/a", 2, true, "new"));
    sub.expect_nothing().await;
    // A live message to an existing subscription has retain cleared.
    publish(
        port,
        version,
        &["-r", "-q", "1", "-t", "mr/a", "-m", "live"],
    )
    .await;
    assert_eq!(sub.recv().await, msg("mr/a", 1, false, "live"));
    // An empty retained message (-n) deletes it.
    publish(port, version, &["-r", "-q", "1", "-t", "mr/a", "-n"]).await;
    assert_eq!(sub.recv().await, msg("mr/a", 1, false, ""));
    let mut late = Sub::start(port, version, &["-q", "1", "-t", "mr/#"]).await;
    late.expect_nothing().await;
    sub.kill().await;
    late.kill().await;
    server.shutdown(WAIT).await;
}

async fn will(version: &str) {
    let (server, port) = start_server().await;
    let mut watcher = Sub::start(port, version, &["-q", "2", "-t", "mw/#"]).await;

    // Exits with a normal DISCONNECT after one message (-C 1): no will.
    let will_args = |topic: &'static str| {
        [
            "--will-topic",
            topic,
            "--will-payload",
            "bye",
            "--will-qos",
            "2",
        ]
    };
    let mut polite = vec!["-t", "trigger/mw", "-C", "1"];
    polite.extend(will_args("mw/polite"));
    let polite = Sub::start(port, version, &polite).await;
    publish(port, version, &["-t", "trigger/mw", "-m", "go"]).await;
    let (code, log) = polite.exit().await;
    assert_eq!(code, 0, "{log}");
    watcher.expect_nothing().await;

    // SIGKILL: the will is published.
    let mut killed = vec!["-t", "nothing/mw"];
    killed.extend(will_args("mw/killed"));
    Sub::start(port, version, &killed).await.kill().await;
    assert_eq!(watcher.recv().await, msg("mw/killed", 2, false, "bye"));

    // A retained will stays for later subscribers.
    let retained = [
        "-t",
        "nothing/mw",
        "--will-topic",
        "mw/kept",
        "--will-payload",
        "kept",
        "--will-qos",
        "1",
        "--will-retain",
    ];
    Sub::start(port, version, &retained).await.kill().await;
    assert_eq!(watcher.recv().await, msg("mw/kept", 1, false, "kept"));
    let mut late = Sub::start(port, version, &["-q", "1", "-t", "mw/kept"]).await;
    assert_eq!(late.recv().await, msg("mw/kept", 1, true, "kept"));

    watcher.kill().await;
    late.kill().await;
    server.shutdown(WAIT).await;
}

async fn persistent_session(version: &str) {
    let (server, port) = start_server().await;
    let id = format!("mosq-persist-{version}");
    let session = ["-c", "-i", &id, "-q", "2", "-t", "mp/#"];

    // Subscribe, and disconnect normally once subscribed (-E): the session stays.
    let mut first = session.to_vec();
    first.push("-E");
    let (code, log) = Sub::start(port, version, &first).await.exit().await;
    assert_eq!(code, 0, "{log}");
    publish(port, version, &["-q", "1", "-t", "mp/1", "-m", "one"]).await;
    publish(port, version, &["-q", "0", "-t", "mp/0", "-m", "zero"]).await;
    publish(port, version, &["-q", "2", "-t", "mp/2", "-m", "two"]).await;

    // Back: the QoS 1 and 2 messages, in order; QoS 0 is not queued by default.
    let mut sub = Sub::start(port, version, &session).await;
    assert_eq!(sub.recv().await, msg("mp/1", 1, false, "one"));
    assert_eq!(sub.recv().await, msg("mp/2", 2, false, "two"));
    sub.expect_nothing().await;

    // Killed this time; the session stays all the same.
    sub.kill().await;
    publish(port, version, &["-q", "2", "-t", "mp/3", "-m", "three"]).await;
    let mut sub = Sub::start(port, version, &session).await;
    assert_eq!(sub.recv().await, msg("mp/3", 2, false, "three"));
    sub.expect_nothing().await;
    sub.kill().await;
    server.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_pub_sub_at_qos_0_1_2() {
    pub_sub_at_qos_0_1_2(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_pub_sub_at_qos_0_1_2() {
    pub_sub_at_qos_0_1_2(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_retained() {
    retained(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retained() {
    retained(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_will() {
    will(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will() {
    will(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_persistent_session() {
    persistent_session(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_persistent_session() {
    persistent_session(V5).await;
}

/// 5.0 properties set with `mosquitto_pub -D` reach `mosquitto_sub` unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_properties_forwarded() {
    let (server, port) = start_server().await;
    let mut sub = Sub::start_with(
        port,
        V5,
        &["-q", "1", "-t", "props/#", "-C", "1"],
        "MSG|%t|%q|%r|%P;%R;%C;%D;%F|%p",
    )
    .await;
    publish(
        port,
        V5,
        &[
            "-q",
            "1",
            "-t",
            "props/req",
            "-m",
            "{}",
            "-D",
            "publish",
            "user-property",
            "k",
            "1",
            "-D",
            "publish",
            "user-property",
            "k",
            "2",
            "-D",
            "publish",
            "response-topic",
            "props/reply",
            "-D",
            "publish",
            "correlation-data",
            "c-42",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
    )
    .await;
    let line = sub.next_raw().await;
    assert_eq!(
        line,
        "MSG|props/req|1|0|k:1 k:2;props/reply;application/json;c-42;1|{}"
    );
    let (code, log) = sub.exit().await;
    assert_eq!(code, 0, "{log}");
    server.shutdown(WAIT).await;
}
