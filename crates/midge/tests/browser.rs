//! MQTT.js (npm `mqtt`, its browser bundle `dist/mqtt.min.js`) in a real headless Chromium
//! talks to a real `midge serve` over `ws://` and then `wss://`, both ways, with the real
//! `midge pub` and `midge sub` on the other end over plain TCP.
//!
//! The test starts `midge serve` with three listeners (mqtt, ws and wss, on free ports of
//! 127.0.0.1; the wss certificate comes from a CA made here with rcgen) and serves
//! `tests/browser/index.html` and the bundle from a small HTTP server of its own on
//! 127.0.0.1. Chromium opens the page, which needs no driver: it reports each step by POSTing
//! one line to `/event` on the same server. For each transport (ws with MQTT 3.1.1, then wss
//! with MQTT 5.0) the page subscribes to `browser/down/NAME`; the test then publishes there
//! with `midge pub`; the page reports what it received and answers on `browser/up/NAME`,
//! which `midge sub` (started before the browser) must print. The test checks every line
//! the page reports, in order, and the lines `midge sub` prints.
//!
//! Chromium verifies the wss certificate against nothing but the SHA-256 of the server's
//! public key (`--ignore-certificate-errors-spki-list`): any other certificate is refused.
//! It runs with `--headless --no-sandbox` (the tests run as root in CI containers, where the
//! sandbox cannot start) and `--disable-dev-shm-usage` (small /dev/shm in containers).
//!
//! Bounded: every wait has a limit, the page has its own per-transport limit, and every
//! process (Chromium's whole process group, `midge serve`, `midge sub`) is killed on drop.
//! Needs the Debian package `chromium` (or `MIDGE_CHROMIUM=/path/to/chrome`) and
//! `npm ci` in tests/browser: scripts/install-test-deps.sh does both.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{chromium, midge, spawn_serve, Broker, Proc, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};

/// From Chromium's start to the page's first report (a cold start on a slow machine).
const STARTUP: Duration = Duration::from_secs(45);
/// Any later step the page reports; the page gives up on its own after 20 s per transport.
const STEP: Duration = Duration::from_secs(25);
/// A `midge` tool run to completion.
const TOOL: Duration = Duration::from_secs(20);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Waits for `p` to exit, killing it after `limit`; returns its output.
fn wait_output(mut p: Proc, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while p.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = p.child.kill();
    let mut out = Output {
        status: p.child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut s) = p.child.stdout.take() {
        s.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut s) = p.child.stderr.take() {
        s.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

/// A test CA and a server certificate for 127.0.0.1 and localhost it signed; returns the
/// certificate and key files and the base64 SHA-256 of the server's SubjectPublicKeyInfo,
/// as `--ignore-certificate-errors-spki-list` takes it.
fn server_certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "midge browser test CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let spki = Sha256::digest(key.subject_public_key_info());
    let spki = base64::engine::general_purpose::STANDARD.encode(spki);
    (cert_file, key_file, spki)
}

/// `midge serve` with an mqtt, a ws and a wss listener on free ports of 127.0.0.1.
struct Listeners {
    /// The process, and its mqtt listener.
    broker: Broker,
    ws: SocketAddr,
    wss: SocketAddr,
}

fn start_broker(cert: &Path, key: &Path) -> Listeners {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // Killed on drop from here on, a failure below included.
    let mut broker = spawn_serve(&[
        "--in-memory",
        "--listen",
        "127.0.0.1:0",
        "--listen-ws",
        "127.0.0.1:0",
        "--listen-wss",
        "127.0.0.1:0",
        "--cert",
        cert,
        "--key",
        key,
    ]);
    // `listening for MQTT on SCHEME://ADDR`, one line per listener, in any order.
    let mut found = std::collections::HashMap::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while found.len() < 3 && Instant::now() < deadline {
        let Ok(line) = broker.logs.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(rest) = line.split("listening for MQTT on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap_or("");
            if let Some((scheme, addr)) = url.split_once("://") {
                found.insert(scheme.to_owned(), addr.to_owned());
            }
        }
        seen.push(line);
    }
    let addr = |scheme: &str| -> SocketAddr {
        found
            .get(scheme)
            .unwrap_or_else(|| panic!("midge serve logged no {scheme} listener:\n{seen:#?}"))
            .parse()
            .unwrap()
    };
    let (tcp, ws, wss) = (addr("mqtt"), addr("ws"), addr("wss"));
    broker.addr = tcp.to_string();
    broker.port = tcp.port().to_string();
    Listeners { broker, ws, wss }
}

/// The page's reports, as they arrive at the test's HTTP server.
type Events = mpsc::Receiver<String>;

/// Serves `GET /` (index.html), `GET /mqtt.min.js` and `POST /event` on 127.0.0.1, each
/// connection on a thread of its own; returns the address and the reported lines.
fn serve_page(dir: PathBuf) -> (SocketAddr, Events) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    // Runs until the test process exits.
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (dir, tx) = (dir.clone(), tx.clone());
            std::thread::spawn(move || handle_http(stream, &dir, &tx));
        }
    });
    (addr, rx)
}

fn handle_http(mut stream: TcpStream, dir: &Path, events: &mpsc::Sender<String>) {
    // A connection the browser opened ahead of need and never uses times out here.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("");
    let target = request_line.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let (status, content_type, content) = match (method, path) {
        ("GET", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            std::fs::read(dir.join("index.html")).unwrap(),
        ),
        ("GET", "/mqtt.min.js") => (
            "200 OK",
            "text/javascript; charset=utf-8",
            std::fs::read(dir.join("node_modules/mqtt/dist/mqtt.min.js")).unwrap(),
        ),
        ("POST", "/event") => {
            let _ = events.send(String::from_utf8_lossy(&body).into_owned());
            ("204 No Content", "text/plain", Vec::new())
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&content);
}

/// Headless Chromium showing `url`, its output in `log`, in a process group of its own.
fn launch_chromium(url: &str, spki: &str, profile: &Path, log: &Path) -> Proc {
    let out = File::create(log).unwrap();
    let child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--password-store=basic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Only a certificate with this public key is accepted despite its unknown CA.
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    Proc { child, group: true }
}

/// Reads the page's reports in order and fails with everything known when one is not the
/// one expected.
struct Page<'a> {
    events: Events,
    seen: Vec<String>,
    chromium_log: &'a Path,
    broker: &'a Broker,
}

impl Page<'_> {
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(self.chromium_log).unwrap_or_default();
        // Without D-Bus in a container Chromium complains a lot, harmlessly.
        let log: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        let tail = &log[log.len().saturating_sub(40)..];
        let broker: Vec<String> = self.broker.logs.try_iter().collect();
        panic!(
            "{what}\npage reported so far: {:#?}\nmidge serve logged since it started \
             listening:\n{}\nChromium's last output lines:\n{}",
            self.seen,
            broker.join("\n"),
            tail.join("\n")
        );
    }

    /// The next report, which must start with `prefix`.
    fn expect(&mut self, prefix: &str, limit: Duration) -> String {
        let line = match self.events.recv_timeout(limit) {
            Ok(line) => line,
            Err(_) => self.fail(&format!("no report `{prefix}` within {limit:?}")),
        };
        self.seen.push(line.clone());
        if !line.starts_with(prefix) {
            self.fail(&format!("expected `{prefix}`, the page reported `{line}`"));
        }
        line
    }
}

/// Runs `midge pub` to completion.
fn publish(port: &str, topic: &str, payload: &str) {
    let child = midge()
        .args(["pub", "-h", "127.0.0.1", "-p", port, "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(
        Proc {
            child,
            group: false,
        },
        TOOL,
    );
    assert!(
        out.status.success(),
        "midge pub -t {topic}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `midge sub -v -C count` on `filter`, returned once it has its SUBACK.
fn subscribe(port: &str, filter: &str, count: usize) -> Proc {
    let mut child = midge()
        .args(["sub", "-d", "-v", "-h", "127.0.0.1", "-p", port, "-q", "1"])
        .args(["-t", filter, "-C", &count.to_string(), "-W", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // -d lines go to stderr; read them until the SUBACK, then keep draining them.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let sub = Proc {
        child,
        group: false,
    };
    let deadline = Instant::now() + TOOL;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("received SUBACK") {
                return sub;
            }
            seen.push(line);
        }
    }
    panic!("midge sub did not subscribe: {seen:#?}");
}

#[test]
fn mqtt_js_in_chromium_over_ws_and_wss() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/mqtt/dist/mqtt.min.js").is_file(),
        "no MQTT.js bundle in {}: run scripts/install-test-deps.sh (npm ci there)",
        dir.display()
    );
    // Dropped last: Chromium is gone before its profile is removed.
    let tmp = TempDir::new("browser");
    let (cert, key, spki) = server_certificate(&tmp.0);
    let l = start_broker(&cert, &key);
    let replies = subscribe(&l.broker.port, "browser/up/#", 2);

    let (http, events) = serve_page(dir);
    let url = format!(
        "http://{http}/?ws=ws://{}/mqtt&wss=wss://{}/mqtt",
        l.ws, l.wss
    );
    let chromium_log = tmp.0.join("chromium.log");
    let _browser = launch_chromium(&url, &spki, &tmp.0.join("profile"), &chromium_log);
    let mut page = Page {
        events,
        seen: Vec::new(),
        chromium_log: &chromium_log,
        broker: &l.broker,
    };
    page.expect("ready ", STARTUP);
    for name in ["ws", "wss"] {
        page.expect(&format!("subscribed {name} 1"), STEP);
        let (down, payload) = (
            format!("browser/down/{name}"),
            format!("to-{name}-from-tcp"),
        );
        publish(&l.broker.port, &down, &payload);
        page.expect(&format!("received {name} {down} {payload}"), STEP);
        page.expect(&format!("published {name}"), STEP);
    }
    page.expect("done", STEP);

    let out = wait_output(replies, STEP);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "browser/up/ws echo to-ws-from-tcp",
            "browser/up/wss echo to-wss-from-tcp"
        ],
        "what midge sub received from the browser ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "midge sub: {:?}", out.status);
}
