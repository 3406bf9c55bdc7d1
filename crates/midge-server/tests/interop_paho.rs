//! Interop with the Python `paho-mqtt` 2.x client, a client nobody here wrote: starts a midge
//! server in this process on 127.0.0.1 and a free port, and runs
//! `tests/python/test_paho_interop.py --port PORT --protocol 311|5` against it (QoS 0/1/2,
//! retained messages, wills, a persistent session resumed after reconnect, and for 5.0 the
//! request/response properties). The test fails with the script's output when the script
//! exits non-zero or does not finish in time.
//!
//! The interpreter is `python3` from `PATH`, the one `scripts/install-test-deps.sh` installs
//! paho-mqtt into; `MIDGE_PYTHON` names another one.

#![allow(clippy::unwrap_used)]

mod interop_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use interop_support::start_server;
use tokio::process::Command;

/// The script's whole run may take this long; it needs about 8 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("MIDGE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_paho_interop.py")
}

/// Runs `python` with `args`, killed after `limit`; returns (success, stdout + stderr).
async fn run(args: &[&str], limit: Duration) -> (bool, String) {
    let child = Command::new(python())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
        // Dropping the future drops the child, which kill_on_drop kills.
        Err(_) => (false, format!("killed after {limit:?}")),
    }
}

async fn paho(protocol: &str) {
    let (ok, out) = run(
        &[
            "-c",
            "import paho.mqtt, sys; sys.exit(paho.mqtt.__version__[0] != '2')",
        ],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        ok,
        "paho-mqtt 2.x is not importable by {}; run scripts/install-test-deps.sh\n{out}",
        python()
    );

    let (server, port) = start_server().await;
    let script = script();
    let port = port.to_string();
    let (ok, out) = run(
        &[
            script.to_str().unwrap(),
            "--port",
            &port,
            "--protocol",
            protocol,
        ],
        SCRIPT_TIMEOUT,
    )
    .await;
    server.shutdown(Duration::from_secs(5)).await;
    assert!(ok, "paho-mqtt interop (MQTT {protocol}) failed:\n{out}");
    // The closing line, so that a script that ran nothing cannot pass.
    assert!(
        out.lines()
            .any(|l| l.ends_with(" passed, 0 failed") && !l.starts_with("0 ")),
        "no passing summary line:\n{out}"
    );
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v311() {
    paho("311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_v5() {
    paho("5").await;
}
