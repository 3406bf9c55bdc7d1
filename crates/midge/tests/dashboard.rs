//! The web dashboard in a real headless Chromium, driven over the DevTools protocol, against
//! a real `midge serve` with its HTTP listener, real `midge sub` clients and `midge pub`.
//!
//! The test starts `midge serve --in-memory -c FILE` (an MQTT listener on a free port, the
//! HTTP listener on a free port, an admin token), keeps two `midge sub` clients connected
//! (`dash-test-client` over MQTT 5.0, `dash-second-client` once the page runs) and opens
//! the dashboard in Chromium (tests/dashboard/cdp.rs). It checks, in order:
//! - without a token the page shows the login form;
//! - with a wrong token (`#token=...`) it shows a 401 error and the login form again;
//! - the login form logs in with the right token;
//! - `#token=TOKEN` logs in, and leaves the address bar;
//! - the client table lists `dash-test-client`; the connections chart gets points and
//!   follows the count when a second client connects; the messages chart shows a rate in
//!   and out after `midge pub` publishes;
//! - the topic watch (EventSource) shows a published message, as text;
//! - the retained browser shows a retained message and deletes it (the API agrees);
//! - the Kick button disconnects `dash-test-client`: its `midge sub` exits, the API
//!   answers 404 for it, its row goes and the other client's row stays.
//!
//! Finally it saves a screenshot, `dashboard.png` in `$MIDGE_TEST_ARTIFACTS` or else in
//! `target/test-artifacts/` of the workspace.
//!
//! Bounded: every wait has a limit and every process (Chromium's whole process group,
//! `midge serve`, the `midge sub`s) is killed on drop. Needs the Debian package `chromium`
//! (or `MIDGE_CHROMIUM=/path/to/chrome`): scripts/install-test-deps.sh installs it.

#![allow(clippy::unwrap_used)]

#[path = "dashboard/cdp.rs"]
mod cdp;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cdp::Browser;
use common::{midge, start_serve, Broker, Proc, TempDir};
use serde_json::Value;

/// The HTTP listener answering after `midge serve` logged its MQTT listener.
const HTTP_UP: Duration = Duration::from_secs(15);
/// Anything the page shows after a poll (it polls the broker every second, the client
/// table every two).
const PAGE: Duration = Duration::from_secs(15);
/// A `midge` tool run to completion, or `midge sub` subscribed.
const TOOL: Duration = Duration::from_secs(20);
/// One request to the admin API.
const HTTP: Duration = Duration::from_secs(10);

const SUB_ID: &str = "dash-test-client";
const SECOND_ID: &str = "dash-second-client";

/// `midge serve` with an MQTT and an HTTP listener, and its admin token.
struct Server {
    broker: Broker,
    http: SocketAddr,
    token: String,
}

impl Server {
    /// Starts `midge serve --in-memory -c FILE` and waits until the admin API answers.
    fn start(dir: &std::path::Path) -> Server {
        // A free port, given back just before midge binds it.
        let http = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("dash-{}-{nanos:08x}", std::process::id());
        let config = dir.join("midge.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"{http}\"\ntoken = \"{token}\"\n\n\
                 [[listener]]\nbind = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        let broker = start_serve(&["--in-memory", "-c", config.to_str().unwrap()], &[]);
        let server = Server {
            broker,
            http,
            token,
        };
        let deadline = Instant::now() + HTTP_UP;
        loop {
            match server.try_request("GET", "/api/v1/broker") {
                Ok((200, _)) => return server,
                Ok((status, body)) => server.fail(&format!(
                    "GET /api/v1/broker with the token answered {status}: {body}"
                )),
                Err(e) if Instant::now() >= deadline => server.fail(&format!(
                    "the HTTP listener {http} did not answer within {HTTP_UP:?}: {e}"
                )),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// One HTTP/1.1 request to the admin API with the bearer token: status and body.
    fn request(&self, method: &str, path: &str) -> (u16, String) {
        self.try_request(method, path)
            .unwrap_or_else(|e| self.fail(&format!("{method} {path}: {e}")))
    }

    fn try_request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.http, HTTP)?;
        s.set_read_timeout(Some(HTTP))?;
        s.set_write_timeout(Some(HTTP))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.http, self.token
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        parse_response(&raw).ok_or_else(|| std::io::Error::other(format!("bad response: {raw:?}")))
    }

    /// The broker's logs so far, for a failure message.
    fn logs(&self) -> String {
        self.broker.logs.try_iter().collect::<Vec<_>>().join("\n")
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\nmidge serve logged:\n{}", self.logs())
    }
}

/// Status and body of an HTTP/1.1 response read to its end (`Connection: close`), with a
/// chunked body decoded.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A running `midge sub`: its process and its `-d` lines.
struct Sub {
    proc: Proc,
    debug: mpsc::Receiver<String>,
}

impl Sub {
    /// `midge sub -V 5 -i ID -t FILTER`, returned once it has its SUBACK.
    fn start(port: &str, id: &str, filter: &str) -> Sub {
        let mut child = midge()
            .args(["sub", "-d", "-v", "-V", "5", "-h", "127.0.0.1", "-p", port])
            .args(["-q", "1", "-i", id, "-t", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, debug) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let sub = Sub {
            proc: Proc {
                child,
                group: false,
            },
            debug,
        };
        let deadline = Instant::now() + TOOL;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = sub.debug.recv_timeout(Duration::from_millis(100)) {
                if line.contains("received SUBACK") {
                    return sub;
                }
                seen.push(line);
            }
        }
        panic!("midge sub -i {id} did not subscribe: {seen:#?}");
    }

    /// Waits up to `limit` for the process to exit; its status and `-d` lines if it did.
    fn wait_exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Vec<String>)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.proc.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; give it a moment to pass the rest.
                std::thread::sleep(Duration::from_millis(100));
                return Some((status, self.debug.try_iter().collect()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Runs `midge pub` to completion (QoS 1; `-r` if `retain`).
fn publish(port: &str, topic: &str, payload: &str, retain: bool) {
    let mut cmd = midge();
    cmd.args(["pub", "-h", "127.0.0.1", "-p", port, "-q", "1"])
        .args(["-t", topic, "-m", payload]);
    if retain {
        cmd.arg("-r");
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = Proc {
        child,
        group: false,
    };
    let deadline = Instant::now() + TOOL;
    while p.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = p.child.kill();
    let status = p.child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut s) = p.child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(status.success(), "midge pub -t {topic}: {status:?}\n{err}");
}

/// A JavaScript string literal of `s`.
fn js(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The selector of the client table's row of `id`.
fn client_row(id: &str) -> String {
    format!(
        "document.querySelector('#clients-table tr[data-client-id=\"' + CSS.escape({}) + '\"]')",
        js(id)
    )
}

/// Where the screenshot goes: `$MIDGE_TEST_ARTIFACTS`, else `target/test-artifacts` of the
/// workspace.
fn artifacts_dir() -> PathBuf {
    match std::env::var_os("MIDGE_TEST_ARTIFACTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"),
    }
}

#[test]
fn dashboard_in_chromium() {
    // Dropped last: Chromium is gone before its profile is removed.
    let tmp = TempDir::new("dashboard");
    let server = Server::start(&tmp.0);
    let port = server.broker.port.clone();
    let mut sub = Sub::start(&port, SUB_ID, "dash/#");
    let mut page = Browser::launch(&tmp.0.join("profile"), 1280, 1000);
    let base = format!("http://{}/", server.http);
    // A failure message with the broker's side too.
    let fail = |page: &mut Browser, what: &str| -> ! {
        page.fail(&format!("{what}\nmidge serve logged:\n{}", server.logs()))
    };

    // No token anywhere (a fresh profile): the login form, not the dashboard.
    page.navigate(&base);
    page.wait_until(
        "the login form without a token",
        "!document.getElementById('login').hidden && document.getElementById('dashboard').hidden",
        PAGE,
    );

    // A wrong token: the broker's 401 in the status line, the login form again, and the
    // token gone from the address bar.
    page.navigate("about:blank");
    page.navigate(&format!("{base}#token=wrong-{}", server.token));
    page.wait_until(
        "a 401 error for a wrong token",
        "(() => { const s = document.getElementById('status'); \
         return s.dataset.state === 'error' && s.textContent.includes('401') \
         && !document.getElementById('login').hidden \
         && document.getElementById('dashboard').hidden && location.hash === ''; })()",
        PAGE,
    );

    // The login form with the right token.
    page.eval(&format!(
        "document.getElementById('login-token').value = {}; \
         document.getElementById('login-submit').click()",
        js(&server.token)
    ));
    page.wait_until(
        "the dashboard after logging in with the form",
        "!document.getElementById('dashboard').hidden \
         && /^\\d+$/.test(document.getElementById('clients-count').textContent)",
        PAGE,
    );

    // The token in the fragment, as `midge serve` prints the dashboard's address.
    page.navigate("about:blank");
    page.navigate(&format!("{base}#token={}", server.token));
    page.wait_until(
        &format!("the client table to list {SUB_ID}"),
        &format!(
            "location.hash === '' && document.getElementById('login').hidden && {} !== null",
            client_row(SUB_ID)
        ),
        PAGE,
    );
    let version = page.eval("document.getElementById('broker-version').textContent");
    assert_eq!(version, Value::String(env!("CARGO_PKG_VERSION").to_owned()));

    // The connections chart: points, one per poll, and the count follows a new client.
    page.wait_until(
        "two points on the connections chart",
        "(() => { const c = document.getElementById('chart-connections'); \
         return Number(c.dataset.points) >= 2 && c.dataset.last === '1'; })()",
        PAGE,
    );
    let before = page.eval("Number(document.getElementById('chart-connections').dataset.points)");
    let _second = Sub::start(&port, SECOND_ID, "dash/#");
    page.wait_until(
        "the second client on the chart, in the count and in the table",
        &format!(
            "(() => {{ const c = document.getElementById('chart-connections'); \
             return c.dataset.last === '2' && Number(c.dataset.points) > {before} \
             && document.getElementById('clients-count').textContent === '2' \
             && {} !== null; }})()",
            client_row(SECOND_ID)
        ),
        PAGE,
    );

    // The messages chart: a rate in (from midge pub) and out (to both subscribers).
    for i in 0..3 {
        publish(&port, "dash/chart", &format!("m{i}"), false);
    }
    page.wait_until(
        "messages in and out on the messages chart",
        "(() => { const c = document.getElementById('chart-messages'); \
         return Number(c.dataset.peakIn) > 0 && Number(c.dataset.peakOut) > 0; })()",
        PAGE,
    );

    // The topic watch: a message published after Start shows up, as text.
    page.eval(
        "document.getElementById('watch-filter').value = 'dash/#'; \
         document.getElementById('watch-start').click()",
    );
    page.wait_until(
        "the watch stream to open",
        "document.getElementById('watch-state').dataset.state === 'open'",
        PAGE,
    );
    let payload = "hello <b>watch</b> & co";
    let seen = format!(
        "(() => {{ const r = document.querySelector('#watch-table tr[data-topic=\"dash/watch\"]'); \
         return r !== null && r.textContent.includes({0}) \
         && r.querySelector('b') === null; }})()",
        js(payload)
    );
    // The stream may open before the broker's subscription for it: publish until seen.
    let deadline = Instant::now() + PAGE;
    loop {
        publish(&port, "dash/watch", payload, false);
        if (0..10).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            page.eval(&seen) == Value::Bool(true)
        }) {
            break;
        }
        if Instant::now() >= deadline {
            fail(&mut page, "the watch did not show dash/watch");
        }
    }
    page.eval("document.getElementById('watch-stop').click()");
    page.wait_until(
        "the watch to stop",
        "document.getElementById('watch-state').dataset.state === 'stopped'",
        PAGE,
    );

    // The retained browser: a retained message shows up, and Delete deletes it.
    publish(&port, "dash/retained", "kept", true);
    page.eval(
        "document.getElementById('retained-filter').value = 'dash/#'; \
         document.getElementById('retained-refresh').click()",
    );
    let retained_row = "document.querySelector('#retained-table tr[data-topic=\"dash/retained\"]')";
    page.wait_until(
        "the retained message in the retained browser",
        &format!("{retained_row} !== null && {retained_row}.textContent.includes('kept')"),
        PAGE,
    );
    page.eval(&format!(
        "{retained_row}.querySelector('button.delete').click()"
    ));
    page.wait_until(
        "the deleted retained message to leave the table",
        &format!("{retained_row} === null"),
        PAGE,
    );
    let (status, body) = server.request("GET", "/api/v1/retained?filter=dash%2Fretained");
    let left: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 || left["total"] != 0 {
        fail(
            &mut page,
            &format!("after Delete, GET /api/v1/retained?filter=dash/retained: {status} {body}"),
        );
    }

    // Kick: the client is really disconnected and its row goes; the other one stays.
    page.eval(&format!(
        "{}.querySelector('button.kick').click()",
        client_row(SUB_ID)
    ));
    match sub.wait_exit(PAGE) {
        // `midge sub` without -C runs until the broker drops it.
        Some((status, lines)) => assert!(
            !status.success() && lines.iter().any(|l| l.contains("connection lost")),
            "midge sub -i {SUB_ID} after Kick: {status:?}, {lines:#?}"
        ),
        None => fail(
            &mut page,
            &format!("midge sub -i {SUB_ID} still runs after Kick"),
        ),
    }
    let (status, body) = server.request("GET", &format!("/api/v1/clients/{SUB_ID}"));
    if status != 404 {
        fail(
            &mut page,
            &format!("after Kick, GET /api/v1/clients/{SUB_ID} answered {status}: {body}"),
        );
    }
    page.wait_until(
        "the kicked client's row to go, the other's to stay, the count to follow",
        &format!(
            "{} === null && {} !== null \
             && document.getElementById('clients-count').textContent === '1'",
            client_row(SUB_ID),
            client_row(SECOND_ID)
        ),
        PAGE,
    );

    // The screenshot, kept as a test artifact.
    let png = page.screenshot();
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard.png");
    std::fs::write(&file, &png).unwrap();
    let saved = std::fs::read(&file).unwrap();
    assert!(
        saved.len() > 1000 && saved.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        file.display(),
        saved.len()
    );
}
