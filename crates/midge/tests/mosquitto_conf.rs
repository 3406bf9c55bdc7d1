//! `midge serve --mosquitto-conf FILE` and `midge check-config` as a user migrating from
//! mosquitto runs them: a mosquitto.conf with a TCP and a WebSocket listener, a password
//! file made by `midge passwd`, an ACL file, persistence and `sys_interval 1`, driven by
//! Debian's `mosquitto_sub`/`mosquitto_pub` (mosquitto-clients). Then the TOML printed by
//! `midge check-config` runs the same broker with `midge serve -c`, and a bad file is refused
//! with its line. Every wait is bounded; every process is killed on drop.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{free_port, midge, spawn_serve, Broker, TempDir};
use midge_codec::{
    decode, encode, Connect, ConnectProperties, DecodeLimits, Packet, ProtocolVersion, ReasonCode,
};

/// How long any single expected line, process or connection may take.
const WAIT: Duration = Duration::from_secs(15);

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to its end within [`WAIT`] (killed and failed otherwise).
fn run(cmd: &mut Command) -> Output {
    let mut p = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (mosquitto-clients installed?): {e}")),
    );
    let mut out = p.0.stdout.take().unwrap();
    let mut err = p.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} did not end within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Starts `midge serve` with `args` and waits until every URL in `urls` is logged as
/// listening; returns the broker and the log lines up to then.
fn start(args: &[&str], urls: &[String]) -> (Broker, Vec<String>) {
    let broker = spawn_serve(args);
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !urls
        .iter()
        .all(|u| lines.iter().any(|l: &String| l.contains(u.as_str())))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match broker.logs.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "midge did not log listening on {urls:?} within {WAIT:?}:\n{}",
                lines.join("\n")
            ),
        }
    }
    (broker, lines)
}

/// `mosquitto_pub` of one QoS 1 message with `auth` (`-u`/`-P`), run to its end.
fn publish(port: u16, auth: &[&str], topic: &str, message: &str) -> Output {
    run(Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(auth)
        .args(["-t", topic, "-m", message]))
}

/// A running `mosquitto_sub -d`, killed on drop; message lines are `MSG|topic|payload`.
struct Sub {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` and waits for its SUBACK.
    fn start(port: u16, args: &[&str]) -> Sub {
        // Line-buffered: piped, mosquitto_sub's debug lines would wait in its stdio buffer.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "mosquitto_sub", "-h", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-d", "-W", "20", "-F", "MSG|%t|%p"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub from mosquitto-clients");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut sub = Sub {
            _proc: Proc(child),
            lines,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + WAIT;
        while !sub.seen.iter().any(|l| l.contains("received SUBACK")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.lines.recv_timeout(left) {
                Ok(line) => sub.seen.push(line),
                Err(_) => panic!("mosquitto_sub got no SUBACK:\n{}", sub.seen.join("\n")),
            }
        }
        sub
    }

    /// Every message until the process ends by itself (`-C N` or `-W`), bounded.
    fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("mosquitto_sub did not end:\n{}", self.seen.join("\n"))
                }
            }
        }
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("MSG|"))
            .map(str::to_owned)
            .collect()
    }
}

/// CONNECT over the WebSocket listener (path /mqtt, subprotocol mqtt); the CONNACK code.
fn ws_connect(port: u16, login: Option<(&str, &str)>) -> ReasonCode {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "handshake cut short");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 30,
        properties: ConnectProperties::default(),
        client_id: "ws-client".try_into().unwrap(),
        will: None,
        username: login.map(|(u, _)| u.try_into().unwrap()),
        password: login.map(|(_, p)| bytes::Bytes::copy_from_slice(p.as_bytes())),
    };
    let mut mqtt = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V311,
        &mut mqtt,
    )
    .unwrap();
    assert!(mqtt.len() < 126);
    // One masked binary frame; a zero mask leaves the payload as is.
    let mut frame = vec![0x82, 0x80 | mqtt.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&mqtt);
    s.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    s.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x82, "a binary frame");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    s.read_exact(&mut payload).unwrap();
    let mut buf = BytesMut::from(&payload[..]);
    match decode(&mut buf, ProtocolVersion::V311, &DecodeLimits::default()).unwrap() {
        Some(Packet::ConnAck(a)) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Writes the password file (`midge passwd`), the ACL file and the mosquitto.conf.
fn write_config(dir: &Path, port: u16, ws_port: u16) -> PathBuf {
    let pw = dir.join("passwd");
    let pw_s = pw.to_str().unwrap();
    for (create, user, pass) in [(true, "alice", "secret"), (false, "bob", "builder")] {
        let mut cmd = midge();
        cmd.arg("passwd");
        if create {
            cmd.arg("-c");
        }
        let out = run(cmd.args(["-b", pw_s, user, pass]));
        assert!(out.status.success(), "midge passwd: {out:?}");
    }
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite allowed/#\ntopic read $SYS/#\n\nuser bob\ntopic read allowed/#\n",
    )
    .unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "# A mosquitto 2 configuration.\n\
             per_listener_settings false\n\
             \n\
             listener {port} 127.0.0.1\n\
             listener {ws_port} localhost\n\
             protocol websockets\n\
             \n\
             password_file {pw}\n\
             acl_file {acl}\n\
             persistence true\n\
             persistence_location {data}\n\
             max_queued_messages 100\n\
             sys_interval 1\n\
             log_dest syslog   \n\
             connection_messages true\n",
            pw = pw.display(),
            acl = acl.display(),
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    conf
}

#[test]
fn serve_runs_a_mosquitto_conf_and_check_config_prints_toml_that_serves_the_same() {
    let tmp = TempDir::new("mosquitto-conf-serve");
    let (port, ws_port) = (free_port(), free_port());
    let conf = write_config(&tmp.0, port, ws_port);
    let urls = [
        format!("mqtt://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{ws_port}"),
    ];
    let alice = ["-u", "alice", "-P", "secret"];

    let (broker, logs) = start(&["--mosquitto-conf", conf.to_str().unwrap()], &urls);
    assert!(
        logs.iter()
            .any(|l| l.contains("WARN") && l.contains("`log_dest` is not supported")),
        "no warning about log_dest:\n{}",
        logs.join("\n")
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("`connection_messages`"))
            .count(),
        1
    );

    // mosquitto 2 semantics: anonymous clients are refused without allow_anonymous.
    let anon = publish(port, &[], "allowed/t", "anonymous");
    assert!(
        !anon.status.success(),
        "anonymous publish accepted: {anon:?}"
    );
    let wrong = publish(port, &["-u", "alice", "-P", "wrong"], "allowed/t", "x");
    assert!(
        !wrong.status.success(),
        "wrong password accepted: {wrong:?}"
    );

    // The ACL: bob may read allowed/# but not write it, so only alice's message (sent
    // after bob's was acknowledged) arrives.
    let sub = Sub::start(
        port,
        &[&alice[..], &["-q", "1", "-t", "allowed/#", "-C", "1"]].concat(),
    );
    let bob = publish(
        port,
        &["-u", "bob", "-P", "builder"],
        "allowed/t",
        "from-bob",
    );
    let from_alice = publish(port, &alice, "allowed/t", "from-alice");
    assert!(from_alice.status.success(), "{from_alice:?}");
    assert_eq!(sub.messages(), ["allowed/t|from-alice"], "bob: {bob:?}");

    // sys_interval 1: three updates of the uptime (the first retained) well within the
    // 10 s mosquitto's default interval would take for two.
    let started = Instant::now();
    let sys = Sub::start(
        port,
        &[&alice[..], &["-t", "$SYS/broker/uptime", "-C", "3"]].concat(),
    );
    assert_eq!(sys.messages().len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // The WebSocket listener (bound to `localhost`) shares the global password file.
    assert_eq!(
        ws_connect(ws_port, Some(("alice", "secret"))),
        ReasonCode::Success
    );
    assert_ne!(ws_connect(ws_port, None), ReasonCode::Success);

    // persistence true: the store is in persistence_location.
    let data = std::fs::read_dir(tmp.0.join("data")).unwrap().count();
    assert!(data > 0, "persistence_location is empty");
    drop(broker);

    // check-config prints TOML with the same meaning...
    let out = run(midge().args(["check-config", "--mosquitto-conf", conf.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check-config failed: {stderr}");
    assert!(stderr.contains("`log_dest` is not supported"), "{stderr}");
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(toml.contains("max_queued_messages = 100"), "{toml}");
    assert!(toml.contains("interval_secs = 1\n"), "{toml}");
    assert!(toml.contains("in_memory = false"), "{toml}");
    let toml_file = tmp.0.join("midge.toml");
    std::fs::write(&toml_file, &toml).unwrap();
    let again = run(midge().args(["check-config", "-c", toml_file.to_str().unwrap()]));
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8(again.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        toml.lines().skip(1).collect::<Vec<_>>(),
        "the TOML does not round-trip"
    );

    // ...which `midge serve -c` runs with the same listeners, logins and ACL.
    let (_broker, logs) = start(&["-c", toml_file.to_str().unwrap()], &urls);
    assert!(
        !logs.iter().any(|l| l.contains("WARN")),
        "{}",
        logs.join("\n")
    );
    let anon = publish(port, &[], "allowed/t", "anonymous");
    assert!(
        !anon.status.success(),
        "anonymous publish accepted: {anon:?}"
    );
    // bob logs in and reads (his subscription is granted), but his own write is dropped.
    let bob = ["-u", "bob", "-P", "builder"];
    let sub = Sub::start(
        port,
        &[&bob[..], &["-q", "1", "-t", "allowed/#", "-C", "1"]].concat(),
    );
    let from_bob = publish(port, &bob, "allowed/t", "from-bob");
    assert!(publish(port, &alice, "allowed/t", "again").status.success());
    assert_eq!(sub.messages(), ["allowed/t|again"], "bob: {from_bob:?}");
    assert_eq!(
        ws_connect(ws_port, Some(("alice", "secret"))),
        ReasonCode::Success
    );
}

#[test]
fn a_bad_mosquitto_conf_is_refused_naming_the_line_and_the_fix() {
    let tmp = TempDir::new("mosquitto-conf-bad");
    let conf = tmp.0.join("bad.conf");
    std::fs::write(&conf, "# bad\nlistener 1883 127.0.0.1\nmax_qos 7\n").unwrap();
    let conf = conf.to_str().unwrap();

    let out = run(midge().args(["check-config", "--mosquitto-conf", conf]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.conf:3")
            && stderr.contains("max_qos")
            && stderr.contains("use 0, 1 or 2"),
        "{stderr}"
    );

    // `midge serve` refuses it the same way, before listening.
    let out = run(midge().args(["serve", "--mosquitto-conf", conf]));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.conf:3") && stderr.contains("max_qos"),
        "{stderr}"
    );

    // A midge TOML file is checked too.
    let toml = tmp.0.join("bad.toml");
    std::fs::write(&toml, "[mqtt]\nmax_qos = 3\n").unwrap();
    let out = run(midge().args(["check-config", "-c", toml.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mqtt.max_qos"),
        "{out:?}"
    );
}
