//! `midge ctl` against a real `midge serve -c FILE --listen-http`, with the real
//! `mosquitto_sub` as the connected client: status, clients, publish, retained messages,
//! reload by SIGHUP and by `midge ctl reload` (a listener added each time while the client
//! stays connected; an invalid file refused with the key named), kick, a wrong token, and
//! JSON logs. Every wait is bounded; every process is killed on drop.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, midge, spawn_serve, TempDir};

const TOKEN: &str = "ctl-test-token";
const WAIT: Duration = Duration::from_secs(10);

fn config(ports: &[u16], http: u16) -> String {
    let mut s = format!("[http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"{TOKEN}\"\n");
    for p in ports {
        s.push_str(&format!("\n[[listener]]\nbind = \"127.0.0.1:{p}\"\n"));
    }
    s
}

fn ctl(http: u16, args: &[&str]) -> Output {
    let mut child = midge()
        .args(["ctl", "--url", &format!("http://127.0.0.1:{http}")])
        .args(["--token", TOKEN])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("midge ctl {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mosquitto_sub` printing what it receives, killed on drop.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_sub(port: u16, id: &str, topic: &str) -> Sub {
    let mut child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "5"])
        .args(["-i", id, "-t", topic])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (Debian mosquitto-clients; scripts/install-test-deps.sh)");
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Sub { child, lines }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn ctl_operates_a_running_broker_and_reloads_it() {
    let dir = TempDir::new("ctl");
    let cfg = dir.0.join("midge.toml");
    let (p1, p2, p3, http) = (free_port(), free_port(), free_port(), free_port());
    write(&cfg, &config(&[p1], http));
    let broker = spawn_serve(&[
        "-c",
        cfg.to_str().unwrap(),
        "--in-memory",
        "--log-format",
        "json",
    ]);
    until("the MQTT and HTTP listeners", || {
        accepts(p1) && accepts(http)
    });

    // JSON logs: every line is one object with a level.
    let line = broker.logs.recv_timeout(WAIT).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(v.get("level").is_some(), "{line}");

    let sub = mosquitto_sub(p1, "ctl-sub", "ctl/#");
    until("ctl-sub in `midge ctl clients`", || {
        stdout(&ctl(http, &["clients"])).contains("ctl-sub")
    });
    let status = ctl(http, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["clients_connected"], 1);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

    // Publish through the API: the subscriber prints it; it is retained, then deleted.
    let o = ctl(
        http,
        &["publish", "ctl/a", "hello from ctl", "-r", "-q", "1"],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sub.lines.recv_timeout(WAIT).unwrap(), "hello from ctl");
    assert!(stdout(&ctl(http, &["retained"])).contains("ctl/a"));
    assert!(ctl(http, &["delete-retained", "ctl/a"]).status.success());
    let again = ctl(http, &["delete-retained", "ctl/a"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"));

    // Reload by SIGHUP: a second listener; the subscriber stays.
    write(&cfg, &config(&[p1, p2], http));
    let hup = Command::new("kill")
        .args(["-HUP", &broker.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    until("the listener added by SIGHUP", || accepts(p2));
    // Reload by `midge ctl reload`: a third.
    write(&cfg, &config(&[p1, p2, p3], http));
    let o = ctl(http, &["reload"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("added"), "{}", stdout(&o));
    assert!(accepts(p3));
    // An invalid file is refused, naming the key; everything keeps running.
    write(&cfg, "[limits]\nmax_conections = 3\n");
    let o = ctl(http, &["reload"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("max_conections"),
        "{o:?}"
    );
    assert!(accepts(p2) && accepts(p3));
    let o = ctl(http, &["publish", "ctl/b", "still here"]);
    assert!(o.status.success());
    assert_eq!(sub.lines.recv_timeout(WAIT).unwrap(), "still here");

    // Kick: mosquitto_sub loses its connection.
    assert!(ctl(http, &["kick", "ctl-sub"]).status.success());
    let mut sub = sub;
    until("mosquitto_sub to end after the kick", || {
        sub.child.try_wait().unwrap().is_some()
    });
    assert_eq!(ctl(http, &["client", "ctl-sub"]).status.code(), Some(1));

    // A wrong token is refused.
    let o = midge()
        .args(["ctl", "--url", &format!("http://127.0.0.1:{http}")])
        .args(["--token", "wrong", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    drop(broker);
}
