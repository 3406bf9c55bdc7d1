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

mod interop_support;
mod tls_support;

use std::path::Path;

use interop_support::mosquitto::{self, host_port, Sub, WAIT};
use tls_support::{start_tls_server, Identity, Pki};

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

/// `-h host -p port` and the TLS options.
fn conn(host: &str, port: u16, tls: Tls<'_>) -> Vec<String> {
    let mut c = host_port(host, port);
    c.extend(tls.args());
    c
}

/// The format of every subscriber's message lines.
const FORMAT: &str = "MSG|%t|%q|%p";

/// Starts `mosquitto_sub` without waiting for anything.
fn spawn_sub(host: &str, port: u16, version: &str, tls: Tls<'_>, args: &[&str]) -> Sub {
    Sub::spawn(&conn(host, port, tls), version, args, FORMAT)
}

/// Starts `mosquitto_sub` and waits until it has its SUBACK.
async fn subscribe(host: &str, port: u16, version: &str, tls: Tls<'_>, args: &[&str]) -> Sub {
    Sub::start(&conn(host, port, tls), version, args, FORMAT).await
}

/// Runs `mosquitto_pub -d`; returns whether it succeeded, and its output.
async fn publish(
    host: &str,
    port: u16,
    version: &str,
    tls: Tls<'_>,
    args: &[&str],
) -> (bool, String) {
    mosquitto::publish(&conn(host, port, tls), version, args).await
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
    let mut sub = subscribe("127.0.0.1", port, version, tls, &["-q", "2", "-t", "tls/#"]).await;
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
        assert_eq!(sub.next_message().await, format!("{topic}|{q}|{payload}"));
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

    let mut sub = subscribe(
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
    assert_eq!(sub.next_message().await, "mtls/a|1|signed");

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
    let bare = spawn_sub(
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
    assert_eq!(sub.next_message().await, "mtls/d|1|still");
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
