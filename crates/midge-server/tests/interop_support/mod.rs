//! What the interop tests share: a midge server in this process on a free port of 127.0.0.1,
//! and running the clients nobody here wrote (processes with a time limit, the paho-mqtt
//! script with its interpreter).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use midge_server::{RunningServer, Server, ServerConfig};
use tokio::process::Command;

pub mod mosquitto;

/// Runs `cmd` with stdin closed and its output captured, killed after `limit`; returns
/// whether it succeeded and its stdout + stderr, or `None` if it ran too long.
pub async fn run_captured(mut cmd: Command, limit: Duration) -> Option<(bool, String)> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/install-test-deps.sh): {e}"));
    // On timeout the future is dropped with the child, which kill_on_drop kills.
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .ok()?
        .unwrap_or_else(|e| panic!("waiting for {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

/// The Python of the paho-mqtt tests: `python3` from `PATH`, or `MIDGE_PYTHON`.
pub fn python() -> String {
    std::env::var("MIDGE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// tests/python/test_paho_interop.py.
pub fn paho_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_paho_interop.py")
}

/// Runs `python` with `args`, killed after `limit`; returns (success, stdout + stderr).
pub async fn run_python(args: &[&str], limit: Duration) -> (bool, String) {
    let mut cmd = Command::new(python());
    cmd.args(args);
    run_captured(cmd, limit)
        .await
        .unwrap_or_else(|| (false, format!("killed after {limit:?}")))
}

/// Fails the test with the fix if paho-mqtt 2.x cannot be imported.
pub async fn check_paho_installed() {
    let (ok, out) = run_python(
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
}

/// Starts a broker with the default configuration on 127.0.0.1 and a free port, and returns
/// it with that port.
pub async fn start_server() -> (RunningServer, u16) {
    let config = ServerConfig {
        listeners: vec![midge_server::ListenerConfig::tcp(
            "127.0.0.1:0".parse().expect("a valid address"),
        )],
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .await
        .expect("binding 127.0.0.1:0")
        .start();
    let port = server.local_addrs[0].port();
    (server, port)
}
