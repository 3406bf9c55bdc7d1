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

use std::time::Duration;

use interop_support::{check_paho_installed, paho_script, run_python, start_server};

/// The script's whole run may take this long; it needs about 8 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

async fn paho(protocol: &str) {
    check_paho_installed().await;
    let (server, port) = start_server().await;
    let script = paho_script();
    let port = port.to_string();
    let (ok, out) = run_python(
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
