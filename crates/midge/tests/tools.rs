//! `midge pub`, `midge sub` and `midge rr` run as a user runs them: spawned processes against
//! a spawned `midge serve`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{midge, start, Broker};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Runs a tool to completion with a time limit.
fn run(args: &[&str]) -> Output {
    let child = midge()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(20))
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Starts `midge sub -d` and waits until it reports its SUBACK.
fn spawn_sub(b: &Broker, args: &[&str]) -> Child {
    spawn_sub_with(&[&["-p", &b.port], args].concat())
}

/// Starts `midge sub -d ARGS` and waits until it reports its SUBACK.
fn spawn_sub_with(args: &[&str]) -> Child {
    let mut child = midge()
        .args(["sub", "-d"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("received SUBACK") {
                return child;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sub did not subscribe");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn sub_receives_what_pub_sends_at_each_qos_and_version() {
    let b = start(&[]);
    for v in ["311", "5"] {
        for qos in ["0", "1", "2"] {
            let sub = spawn_sub(
                &b,
                &["-t", "home/+/light", "-q", qos, "-V", v, "-C", "1", "-v"],
            );
            let msg = format!("on-{v}-{qos}");
            let o = run(&[
                "pub",
                "-p",
                &b.port,
                "-t",
                "home/bedroom/light",
                "-m",
                &msg,
                "-q",
                qos,
                "-V",
                v,
            ]);
            assert!(o.status.success(), "{o:?}");
            let out = wait_output(sub, Duration::from_secs(10));
            assert!(out.status.success(), "{out:?}");
            assert_eq!(stdout(&out), format!("home/bedroom/light {msg}\n"));
        }
    }
}

#[test]
fn retained_flag_and_format() {
    let b = start(&[]);
    let o = run(&[
        "pub",
        "-p",
        &b.port,
        "-t",
        "state/door",
        "-m",
        "open",
        "-r",
        "-q",
        "1",
    ]);
    assert!(o.status.success(), "{o:?}");
    let o = run(&[
        "sub", "-p", &b.port, "-t", "state/#", "-C", "1", "-F", "%t %p %r",
    ]);
    assert_eq!(stdout(&o), "state/door open 1\n");
    // -R skips retained messages: nothing else arrives, so -W ends it with 27.
    let o = run(&["sub", "-p", &b.port, "-t", "state/#", "-R", "-W", "1"]);
    assert_eq!(o.status.code(), Some(27), "{o:?}");
    // --json gives one object per line.
    let o = run(&["sub", "-p", &b.port, "-t", "state/#", "-C", "1", "--json"]);
    let line = stdout(&o);
    assert!(
        line.contains("\"topic\":\"state/door\"") && line.contains("\"retain\":true"),
        "{line}"
    );
}

#[test]
fn will_is_published_when_a_tool_is_killed() {
    let b = start(&[]);
    let watcher = spawn_sub(&b, &["-t", "will/#", "-C", "1", "-v"]);
    let mut victim = spawn_sub(
        &b,
        &[
            "-t",
            "x",
            "--will-topic",
            "will/victim",
            "--will-payload",
            "died",
            "-k",
            "5",
        ],
    );
    victim.kill().unwrap();
    let _ = victim.wait();
    let out = wait_output(watcher, Duration::from_secs(10));
    assert_eq!(stdout(&out), "will/victim died\n");
}

#[test]
fn count_and_timeout_end_sub() {
    let b = start(&[]);
    let sub = spawn_sub(&b, &["-t", "c", "-C", "3"]);
    for i in 0..3 {
        run(&["pub", "-p", &b.port, "-t", "c", "-m", &i.to_string()]);
    }
    let out = wait_output(sub, Duration::from_secs(10));
    assert!(out.status.success());
    assert_eq!(stdout(&out), "0\n1\n2\n");
    let started = Instant::now();
    let o = run(&["sub", "-p", &b.port, "-t", "silent", "-W", "1"]);
    assert_eq!(o.status.code(), Some(27));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn pub_reads_stdin_lines() {
    let b = start(&[]);
    let sub = spawn_sub(&b, &["-t", "lines", "-C", "2"]);
    let mut child = midge()
        .args(["pub", "-p", &b.port, "-t", "lines", "-l", "-q", "1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"first\nsecond\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let out = wait_output(sub, Duration::from_secs(10));
    assert_eq!(stdout(&out), "first\nsecond\n");
}

#[test]
fn rr_gets_its_answer() {
    let b = start(&[]);
    // A responder made of the tools: a sub that prints the response topic and correlation
    // data of one request, then a pub that answers there.
    let responder = spawn_sub(&b, &["-t", "svc/time", "-C", "1", "-V", "5", "-F", "%R %D"]);
    let requester = midge()
        .args([
            "rr",
            "-p",
            &b.port,
            "-t",
            "svc/time",
            "-e",
            "replies/me",
            "-m",
            "now?",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = wait_output(responder, Duration::from_secs(10));
    let line = stdout(&req);
    let mut parts = line.trim_end().splitn(2, ' ');
    let (topic, correlation) = (parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(topic, "replies/me");
    let o = run(&[
        "pub",
        "-p",
        &b.port,
        "-V",
        "5",
        "-t",
        topic,
        "-m",
        "12:00",
        "-D",
        "publish",
        "correlation-data",
        correlation,
    ]);
    assert!(o.status.success(), "{o:?}");
    let answer = wait_output(requester, Duration::from_secs(10));
    assert!(answer.status.success(), "{answer:?}");
    assert_eq!(stdout(&answer), "12:00\n");
}

#[test]
fn refused_connection_prints_the_reason_and_fails() {
    let b = start(&[]);
    let long_id = "x".repeat(300);
    let o = run(&[
        "pub", "-p", &b.port, "-V", "5", "-i", &long_id, "-t", "t", "-m", "m",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ClientIdentifierNotValid"), "{err}");
    let o = run(&["pub", "-p", "1", "-t", "t", "-m", "m"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["pub", "-p", &b.port, "-m", "no topic"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn url_flag_sets_host_port_and_topic() {
    let b = start(&[]);
    let sub = spawn_sub(&b, &["-t", "via/url", "-C", "1"]);
    let url = format!("mqtt://{}/via/url", b.addr);
    let o = run(&["pub", "-L", &url, "-m", "hello"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&wait_output(sub, Duration::from_secs(10))),
        "hello\n"
    );
}

/// A test CA and a server certificate for localhost and 127.0.0.1, in a fresh directory:
/// (directory, CA file, certificate file, key file).
fn certificates(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("midge-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "midge tools test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    (dir, files.0, files.1, files.2)
}

/// `midge serve` with mqtt, mqtts and ws listeners on free ports; returns the broker (its
/// mqtt port in `port`) and the mqtts and ws ports.
fn start_tls_ws(cert: &Path, key: &Path) -> (Broker, String, String) {
    let mut child = midge()
        .args(["serve", "--in-memory", "--listen", "127.0.0.1:0"])
        .args(["--listen-tls", "127.0.0.1:0", "--listen-ws", "127.0.0.1:0"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // `listening for MQTT on SCHEME://ADDR`, one line per listener, in any order.
    let mut found = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while found.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("listening for MQTT on ").nth(1) {
                let (scheme, addr) = rest.split_once("://").unwrap();
                let addr: String = addr
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                found.insert(scheme.to_owned(), addr);
            }
        }
    }
    let port = |scheme: &str| -> String {
        let addr = found
            .get(scheme)
            .unwrap_or_else(|| panic!("no {scheme} listener logged: {found:?}"));
        addr.rsplit(':').next().unwrap().to_owned()
    };
    let (tls, ws) = (port("mqtts"), port("ws"));
    let broker = Broker {
        addr: found["mqtt"].clone(),
        port: port("mqtt"),
        child,
        logs: rx,
    };
    (broker, tls, ws)
}

#[test]
fn sub_and_pub_over_tls_with_cafile() {
    let (dir, ca, cert, key) = certificates("tls");
    let (_b, tls, _ws) = start_tls_ws(&cert, &key);
    let ca = ca.to_str().unwrap();
    // --cafile without a URL scheme turns TLS on (mosquitto's behaviour).
    let sub = spawn_sub_with(&[
        "-h",
        "localhost",
        "-p",
        &tls,
        "--cafile",
        ca,
        "-t",
        "secure/+",
        "-C",
        "1",
        "-v",
    ]);
    let url = format!("mqtts://localhost:{tls}/secure/one");
    let o = run(&["pub", "-L", &url, "--cafile", ca, "-m", "sealed", "-q", "1"]);
    assert!(o.status.success(), "{o:?}");
    let out = wait_output(sub, Duration::from_secs(10));
    assert_eq!(stdout(&out), "secure/one sealed\n");

    // --insecure connects without a CA and says so.
    let o = run(&["pub", "-L", &url, "--insecure", "-m", "m"]);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--insecure"), "{err}");

    // Errors name the flag, the file and the problem.
    let o = run(&["pub", "-L", &url, "-m", "m"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS needs --cafile"), "{err}");
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let o = run(&["pub", "-L", &url, "--cafile", missing, "-m", "m"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot read --cafile {missing}: No such file")),
        "{err}"
    );
    let o = run(&[
        "pub",
        "-L",
        &url,
        "--cafile",
        cert.to_str().unwrap(),
        "-m",
        "m",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a CA that did not sign the broker: {o:?}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS handshake with localhost failed"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sub_and_pub_over_websocket() {
    let (dir, _ca, cert, key) = certificates("ws");
    let (_b, _tls, ws) = start_tls_ws(&cert, &key);
    let sub = spawn_sub_with(&["--ws", "-p", &ws, "-t", "web/#", "-C", "1", "-v"]);
    let url = format!("ws://127.0.0.1:{ws}/web/page");
    let o = run(&["pub", "-L", &url, "-m", "framed", "-q", "2"]);
    assert!(o.status.success(), "{o:?}");
    let out = wait_output(sub, Duration::from_secs(10));
    assert_eq!(stdout(&out), "web/page framed\n");
    // A path the broker does not serve fails in the upgrade, with the HTTP status.
    let o = run(&[
        "pub",
        "--ws",
        "--ws-path",
        "/nope",
        "-p",
        &ws,
        "-t",
        "t",
        "-m",
        "m",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("WebSocket handshake") && err.contains("404"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_runs_over_tls_and_websocket() {
    let (dir, ca, cert, key) = certificates("bench");
    let (_b, tls, ws) = start_tls_ws(&cert, &key);
    let ca = ca.to_str().unwrap();
    let wss_url = format!("mqtts://localhost:{tls}");
    let targets: [&[&str]; 2] = [
        &["-L", &wss_url, "--cafile", ca],
        &["-h", "localhost", "-p", &ws, "--ws"],
    ];
    for target in targets {
        let common = [
            "bench", "p2p", "-n", "2", "-q", "1", "-d", "0.5", "-w", "0", "--quiet", "--json",
        ];
        let o = run(&[&common[..], target].concat());
        assert!(o.status.success(), "{target:?}: {o:?}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(report["received"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["lost"], 0, "{report}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_at_a_fixed_rate_sends_no_more_than_the_rate_and_loses_nothing() {
    let b = start(&[]);
    for qos in ["0", "1"] {
        let o = run(&[
            "bench", "p2p", "-p", &b.port, "-n", "7", "-q", qos, "-r", "2000", "-d", "1", "-w",
            "0", "--quiet", "--json",
        ]);
        assert!(o.status.success(), "{o:?}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let sent = report["sent"].as_u64().unwrap();
        // One message every 0.5 ms for 1 s: 2,000, less the few granted just before the end
        // that a publisher saw only after it.
        assert!((1_900..=2_000).contains(&sent), "{report}");
        assert_eq!(report["received"].as_u64().unwrap(), sent, "{report}");
        assert_eq!(report["lost"], 0, "{report}");
        assert_eq!(report["duplicated"], 0, "{report}");
        assert_eq!(report["out_of_order"], 0, "{report}");
    }
}

#[test]
fn bench_conn_from_several_source_addresses_runs_back_to_back() {
    let b = start(&[]);
    // The second run meets the first one's ports in TIME_WAIT.
    for _ in 0..2 {
        let o = run(&[
            "bench",
            "conn",
            "-p",
            &b.port,
            "-n",
            "300",
            "--source-ips",
            "4",
            "--hold",
            "0",
            "--quiet",
            "--json",
        ]);
        assert!(o.status.success(), "{o:?}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["connections"], 300, "{report}");
        assert_eq!(report["failures"], 0, "{report}");
    }
}
