//! Interop over TLS with `mosquitto_sub` and `mosquitto_pub` (Debian `mosquitto-clients`,
//! OpenSSL underneath), clients nobody here wrote, through a midge server in this process
//! whose `mqtts` listener serves a certificate from a CA made here with rcgen (SANs
//! `127.0.0.1` and `localhost`), written to a temporary directory.
//!
//! - `--cafile`: `mosquitto_sub` and `mosquitto_pub` verify the server against the CA (by IP
//!   and by name), and messages flow at QoS 0, 1 and 2 with MQTT 3.1.1 and 5.0. A client that
//!   trusts another CA, and one speaking plain MQTT to the TLS port, are refused, so the
//!   messages above did travel over verified TLS.
//! - Mutual TLS (`--cert/--key`): with a listener that requires a client certificate, clients
//!   presenting one signed by the CA exchange messages; a client without a certificate, and
//!   one with a certificate from another CA, get no CONNACK, and what they tried to publish
//!   never arrives.
//!
//! Every process has `-W` or is waited for with a limit, is killed on drop, and every wait
//! here is bounded.

#![allow(clippy::unwrap_used)]

mod tls_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tls_support::{start_tls_server, Identity, Pki};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long any single expected line or process may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(500);
/// `-W` of every `mosquitto_sub`: it exits by itself after this many seconds at the latest.
const SUB_SECS: &str = "30";

/// How a mosquitto client proves who it is and whom it trusts: `--cafile`, optionally
/// `--cert/--key`.
#[derive(Clone, Copy)]
struct Tls<'a> {
    ca: Option<&'a Path>,
    client: Option<&'a Identity>,
}

impl Tls<'_> {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(ca) = self.ca {
            a.extend(["--cafile".to_owned(), ca.display().to_string()]);
        }
        if let Some(id) = self.client {
            a.extend([
                "--cert".to_owned(),
                id.cert.display().to_string(),
                "--key".to_owned(),
                id.key.display().to_string(),
            ]);
        }
        a
    }
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

/// A running `mosquitto_sub -d -F 'MSG|%t|%q|%p'` whose output lines are read as they come.
struct Sub {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Sub {
    fn spawn(host: &str, port: u16, version: &str, tls: Tls<'_>, args: &[&str]) -> Sub {
        // Line-buffered: piped, mosquitto_sub's debug lines would wait in its stdio buffer.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "mosquitto_sub", "-h", host])
            .args(["-p", &port.to_string(), "-V", version])
            .args(tls.args())
            .args(["-d", "-W", SUB_SECS, "-F", "MSG|%t|%q|%p"])
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
        Sub {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Starts `mosquitto_sub` and waits until it has its SUBACK.
    async fn start(host: &str, port: u16, version: &str, tls: Tls<'_>, args: &[&str]) -> Sub {
        let mut sub = Self::spawn(host, port, version, tls, args);
        sub.wait_for_line("received SUBACK", |l| l.ends_with("received SUBACK"))
            .await;
        sub
    }

    /// The next line, or None when the process has closed its output.
    async fn next_line(&mut self, deadline: tokio::time::Instant) -> Option<String> {
        match tokio::time::timeout_at(deadline, self.lines.recv()).await {
            Ok(Some(line)) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Ok(None) => None,
            Err(_) => panic!("mosquitto_sub: no line within {WAIT:?}:\n{}", self.log()),
        }
    }

    async fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.next_line(deadline).await {
                Some(line) if pred(&line) => return line,
                Some(_) => {}
                None => panic!("mosquitto_sub ended before {what}:\n{}", self.log()),
            }
        }
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// The next message as `topic|qos|payload`.
    async fn recv(&mut self) -> String {
        let line = self
            .wait_for_line("a message", |l| l.starts_with("MSG|"))
            .await;
        line["MSG|".len()..].to_owned()
    }

    /// Asserts that no message arrives within [`QUIET`].
    async fn expect_nothing(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(line.clone());
            assert!(
                !line.starts_with("MSG|"),
                "unexpected message {line}:\n{}",
                self.log()
            );
        }
    }

    /// Waits for the process to end by itself; returns its exit code and output.
    async fn exit(mut self) -> (i32, String) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.next_line(deadline).await.is_some() {}
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("mosquitto_sub did not exit:\n{}", self.log()))
            .unwrap();
        (status.code().unwrap_or(-1), self.log())
    }
}

/// Runs `mosquitto_pub -d`; returns whether it succeeded, and its output.
async fn publish(
    host: &str,
    port: u16,
    version: &str,
    tls: Tls<'_>,
    args: &[&str],
) -> (bool, String) {
    let child = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", &port.to_string(), "-V", version, "-d"])
        .args(tls.args())
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
    (out.status.success(), text)
}

/// Like [`publish`], and asserts that it succeeded.
async fn publish_ok(host: &str, port: u16, version: &str, tls: Tls<'_>, args: &[&str]) -> String {
    let (ok, out) = publish(host, port, version, tls, args).await;
    assert!(ok, "mosquitto_pub {args:?}: {out}");
    out
}

/// Asserts that `mosquitto_pub` with `tls` is refused: it fails, and never got a CONNACK.
async fn assert_pub_refused(port: u16, version: &str, tls: Tls<'_>, topic: &str, what: &str) {
    let (ok, out) = publish(
        "127.0.0.1",
        port,
        version,
        tls,
        &["-q", "1", "-t", topic, "-m", what],
    )
    .await;
    assert!(!ok, "mosquitto_pub {what} must be refused: {out}");
    assert!(!out.contains("received CONNACK"), "{what}: {out}");
}

async fn pub_sub_with_cafile(version: &str) {
    let pki = Pki::new("mosquitto-tls");
    let server_id = pki.issue("server", "localhost");
    let (server, port) = start_tls_server(&server_id, None, false).await;
    let ca = pki.ca_file();
    let tls = Tls {
        ca: Some(&ca),
        client: None,
    };

    // Connected by IP (the 127.0.0.1 SAN) and by name (the localhost SAN).
    let mut sub = Sub::start("127.0.0.1", port, version, tls, &["-q", "2", "-t", "tls/#"]).await;
    for (q, host) in [(0u8, "localhost"), (1, "127.0.0.1"), (2, "localhost")] {
        let (q_arg, topic, payload) = (q.to_string(), format!("tls/q{q}"), format!("m{q}"));
        let out = publish_ok(
            host,
            port,
            version,
            tls,
            &["-q", &q_arg, "-t", &topic, "-m", &payload],
        )
        .await;
        match q {
            1 => assert!(out.contains("received PUBACK"), "{out}"),
            2 => assert!(out.contains("received PUBCOMP"), "{out}"),
            _ => {}
        }
        assert_eq!(sub.recv().await, format!("{topic}|{q}|{payload}"));
    }

    // Verification is real: a client trusting another CA gives up in the handshake...
    let other = Pki::new("mosquitto-other");
    let other_ca = other.ca_file();
    let (ok, out) = publish(
        "127.0.0.1",
        port,
        version,
        Tls {
            ca: Some(&other_ca),
            client: None,
        },
        &["-t", "tls/q0", "-m", "untrusted"],
    )
    .await;
    assert!(
        !ok,
        "a client trusting another CA must refuse the server: {out}"
    );
    // ...and plain MQTT to the TLS port gets nowhere.
    let (ok, out) = publish(
        "127.0.0.1",
        port,
        version,
        Tls {
            ca: None,
            client: None,
        },
        &["-t", "tls/q0", "-m", "plain"],
    )
    .await;
    assert!(
        !ok && !out.contains("received CONNACK"),
        "plain MQTT to a TLS port: {out}"
    );
    sub.expect_nothing().await;
    drop(sub);
    server.shutdown(WAIT).await;
}

async fn mutual_tls(version: &str) {
    let pki = Pki::new("mosquitto-mtls");
    let server_id = pki.issue("server", "localhost");
    let device = pki.issue("device", "device-1");
    let sensor = pki.issue("sensor", "sensor-1");
    let ca = pki.ca_file();
    let (server, port) = start_tls_server(&server_id, Some(&ca), true).await;
    let with = |id| Tls {
        ca: Some(&ca),
        client: Some(id),
    };

    let mut sub = Sub::start(
        "127.0.0.1",
        port,
        version,
        with(&device),
        &["-q", "1", "-t", "mtls/#"],
    )
    .await;
    let out = publish_ok(
        "localhost",
        port,
        version,
        with(&sensor),
        &["-q", "1", "-t", "mtls/a", "-m", "signed"],
    )
    .await;
    assert!(out.contains("received PUBACK"), "{out}");
    assert_eq!(sub.recv().await, "mtls/a|1|signed");

    // No certificate: refused.
    assert_pub_refused(
        port,
        version,
        Tls {
            ca: Some(&ca),
            client: None,
        },
        "mtls/b",
        "without a certificate",
    )
    .await;
    // A certificate from another CA: refused.
    let rogue_pki = Pki::new("mosquitto-rogue");
    let rogue = rogue_pki.issue("rogue", "rogue-1");
    assert_pub_refused(
        port,
        version,
        with(&rogue),
        "mtls/c",
        "with a certificate of another CA",
    )
    .await;
    // A subscriber without a certificate gets no CONNACK, and gives up.
    let bare = Sub::spawn(
        "127.0.0.1",
        port,
        version,
        Tls {
            ca: Some(&ca),
            client: None,
        },
        &["-t", "mtls/#"],
    );
    let (code, log) = bare.exit().await;
    assert!(
        code != 0 && !log.contains("received CONNACK"),
        "mosquitto_sub without a certificate must be refused (exit {code}):\n{log}"
    );
    // Nothing the refused clients sent got through; the accepted ones still talk.
    sub.expect_nothing().await;
    publish_ok(
        "127.0.0.1",
        port,
        version,
        with(&device),
        &["-q", "2", "-t", "mtls/d", "-m", "still"],
    )
    .await;
    assert_eq!(sub.recv().await, "mtls/d|1|still");
    drop(sub);
    server.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_pub_sub_with_cafile() {
    pub_sub_with_cafile("mqttv311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_pub_sub_with_cafile() {
    pub_sub_with_cafile("mqttv5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_mutual_tls() {
    mutual_tls("mqttv311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_mutual_tls() {
    mutual_tls("mqttv5").await;
}
