//! Interop over TLS with the Python `paho-mqtt` 2.x client, a client nobody here wrote: a
//! midge server in this process with an `mqtts` listener on 127.0.0.1 serves a certificate
//! from a CA made here (rcgen), and `tests/python/test_paho_interop.py --cafile CA` runs its
//! cases with every client on `tls_set(ca_certs=CA)`, so paho verifies the server's chain and
//! name.
//!
//! - Server authentication only: the whole suite (QoS 0/1/2, retained messages, wills, a
//!   persistent session, and for 5.0 the request/response properties) over TLS.
//! - Mutual TLS: the listener requires a client certificate signed by the CA; the clients
//!   present one (`--cert/--key`) and exchange messages, and the case `certificate_required`
//!   checks that a client without one gets no CONNACK.
//!
//! The script fails a client whose socket is not TLS, and prints `N passed, N failed`; the
//! test fails on a non-zero exit, on no passing case, or when the script runs too long.
//! `python3` from `PATH`, or `MIDGE_PYTHON`, as in `interop_paho.rs`.

#![allow(clippy::unwrap_used)]

mod interop_support;
mod tls_support;

use std::time::Duration;

use interop_support::{check_paho_installed, paho_script, run_python};
use tls_support::{start_tls_server, Pki};

/// The script's whole run may take this long; the full suite needs about 8 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the script against `port` with `extra` arguments; asserts that it passed.
async fn run_script(protocol: &str, port: u16, extra: &[&str]) -> String {
    let script = paho_script();
    let port = port.to_string();
    let mut args = vec![
        script.to_str().unwrap(),
        "--port",
        &port,
        "--protocol",
        protocol,
    ];
    args.extend_from_slice(extra);
    let (ok, out) = run_python(&args, SCRIPT_TIMEOUT).await;
    assert!(ok, "paho-mqtt over TLS ({extra:?}) failed:\n{out}");
    // The closing line, so that a script that ran nothing cannot pass.
    assert!(
        out.lines()
            .any(|l| l.ends_with(" passed, 0 failed") && !l.starts_with("0 ")),
        "no passing summary line:\n{out}"
    );
    println!("{out}");
    out
}

async fn paho_tls(protocol: &str) {
    check_paho_installed().await;
    let pki = Pki::new("paho-tls");
    let server_id = pki.issue("server", "localhost");
    let (server, port) = start_tls_server(&server_id, None, false).await;
    let ca = pki.ca_file();
    let out = run_script(protocol, port, &["--cafile", ca.to_str().unwrap()]).await;
    assert!(out.contains("over TLS,"), "{out}");
    server.shutdown(Duration::from_secs(5)).await;
}

async fn paho_mutual_tls(protocol: &str) {
    check_paho_installed().await;
    let pki = Pki::new("paho-mtls");
    let server_id = pki.issue("server", "localhost");
    let client = pki.issue("client", "paho-device");
    let ca = pki.ca_file();
    let (server, port) = start_tls_server(&server_id, Some(&ca), true).await;
    let out = run_script(
        protocol,
        port,
        &[
            "--cafile",
            ca.to_str().unwrap(),
            "--cert",
            client.cert.to_str().unwrap(),
            "--key",
            client.key.to_str().unwrap(),
            "--require-certificate",
            "--only",
            "qos_0_1_2",
            "--only",
            "certificate_required",
        ],
    )
    .await;
    assert!(
        out.contains("ok   certificate_required") && out.contains("ok   qos_0_1_2"),
        "{out}"
    );
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v311_over_tls() {
    paho_tls("311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v5_over_tls() {
    paho_tls("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v311_with_client_certificate() {
    paho_mutual_tls("311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v5_with_client_certificate() {
    paho_mutual_tls("5").await;
}
