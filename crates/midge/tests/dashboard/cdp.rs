//! A small Chrome DevTools Protocol driver for the dashboard test: headless Chromium on a
//! debugging port of its choice, one page target attached over the browser's WebSocket
//! (flat sessions), and the handful of commands the test needs.
//!
//! Synchronous on purpose (tungstenite over a std `TcpStream` with a read timeout): the
//! test is a sequence of bounded waits, and every call has a deadline. Events are not
//! dispatched; the page's console messages, uncaught exceptions and log entries are kept
//! as text for failure messages.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use crate::common::{chromium, Proc};

/// From Chromium's start to its `DevTools listening on` line (a cold start on a slow
/// machine).
const STARTUP: Duration = Duration::from_secs(45);
/// One DevTools command, a full-page screenshot included.
const CALL: Duration = Duration::from_secs(30);
/// How long one read of the socket blocks before the deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(200);
/// Console lines and Chromium output lines kept for failure messages.
const KEEP_LINES: usize = 200;

/// Lines kept for a failure message, oldest dropped first.
#[derive(Debug, Default, Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn push(&self, line: String) {
        let mut v = self.0.lock().unwrap();
        if v.len() == KEEP_LINES {
            v.remove(0);
        }
        v.push(line);
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Headless Chromium with one page attached.
#[derive(Debug)]
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    /// The window's width, CSS pixels.
    width: u32,
    /// The page's console output, exceptions and log entries.
    console: Vec<String>,
    /// Chromium's own output (stderr and stdout).
    output: Lines,
    /// Dropped last: Chromium's whole process group is killed.
    _process: Proc,
}

impl Browser {
    /// Starts Chromium with a fresh profile in `profile`, a `width` x `height` window, and
    /// attaches to a new blank page.
    pub fn launch(profile: &Path, width: u32, height: u32) -> Browser {
        let mut child = std::process::Command::new(chromium())
            .args([
                "--headless",
                // The tests run as root in CI containers, where the sandbox cannot start.
                "--no-sandbox",
                // Containers have a small /dev/shm.
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--password-store=basic",
                // Timers of a page that headless Chromium considers hidden still run at
                // full speed: the dashboard polls every second.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
        let output = Lines::default();
        let (tx, rx) = mpsc::channel();
        for pipe in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (output, tx) = (output.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    // Without D-Bus in a container Chromium complains a lot, harmlessly.
                    if line.contains("dbus") {
                        continue;
                    }
                    let _ = tx.send(line.clone());
                    output.push(line);
                }
            });
        }
        // Killed on drop from here on, a failure below included.
        let process = Proc { child, group: true };
        let deadline = Instant::now() + STARTUP;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                        break rest.trim().to_owned();
                    }
                }
                Err(_) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "Chromium did not print its DevTools address within {STARTUP:?}; \
                     its output:\n{}",
                    output.snapshot().join("\n")
                ),
            }
        };
        let ws = connect(&url);
        let mut browser = Browser {
            ws,
            next_id: 0,
            session: String::new(),
            width,
            console: Vec::new(),
            output,
            _process: process,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser
    }

    /// Sends `method` (to the page once one is attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params, CALL)
            .unwrap_or_else(|e| self.fail(&format!("DevTools {method}: {e}")))
    }

    /// [`Browser::call`] that returns what went wrong instead of failing the test.
    fn try_call(&mut self, method: &str, params: Value, limit: Duration) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("cannot send: {e}"))?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(format!("connection lost: {e}")),
            };
            let v: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("bad JSON from DevTools ({e}): {text}"))?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("failed: {err}"));
                }
                return Ok(v["result"].clone());
            }
            self.event(&v);
        }
        Err(format!("no answer within {limit:?}"))
    }

    /// Keeps what the page said: console calls, uncaught exceptions, log entries (failed
    /// loads among them).
    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        let line = match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| match &a["value"] {
                        Value::String(s) => s.clone(),
                        Value::Null => a["description"].as_str().unwrap_or("").to_owned(),
                        other => other.to_string(),
                    })
                    .collect();
                format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or("?"),
                    args.join(" ")
                )
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                format!(
                    "exception: {} {}",
                    d["text"].as_str().unwrap_or(""),
                    d["exception"]["description"].as_str().unwrap_or("")
                )
            }
            // Chromium's advice on the page's markup, not something the page did.
            Some("Log.entryAdded") if p["entry"]["level"] == "verbose" => return,
            Some("Log.entryAdded") => format!(
                "log.{}: {} {}",
                p["entry"]["level"].as_str().unwrap_or("?"),
                p["entry"]["text"].as_str().unwrap_or(""),
                p["entry"]["url"].as_str().unwrap_or("")
            ),
            _ => return,
        };
        if self.console.len() == KEEP_LINES {
            self.console.remove(0);
        }
        self.console.push(line);
    }

    /// Opens `url` in the page; returns once its document is parsed and its deferred
    /// scripts ran (`DOMContentLoaded`).
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        if let Some(e) = r["errorText"].as_str() {
            self.fail(&format!("navigating to {url}: {e}"));
        }
        self.wait_until(
            &format!("{url} to load"),
            "document.readyState !== 'loading'",
            CALL,
        );
    }

    /// The value of the JavaScript expression `expr` in the page (awaited if a promise).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(d) = r.get("exceptionDetails") {
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("?")
                .to_owned();
            self.fail(&format!("JavaScript `{expr}` threw: {what}"));
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is `true`; fails after `limit`, saying `what` was awaited.
    pub fn wait_until(&mut self, what: &str, expr: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(expr) == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "waited {limit:?} for {what}: `{expr}` stayed false"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the whole page (at most 4000 CSS pixels tall).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let size = &m["cssContentSize"];
        // Captured beyond the viewport the page has no scrollbar: as wide as the window.
        let (w, h) = (
            size["width"]
                .as_f64()
                .unwrap_or(0.0)
                .max(f64::from(self.width)),
            size["height"].as_f64().unwrap_or(0.0).clamp(1.0, 4000.0),
        );
        let r = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 }
            }),
        );
        let data = r["data"].as_str().unwrap_or("");
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(png) => png,
            Err(e) => self.fail(&format!("screenshot is not base64: {e}")),
        }
    }

    /// What the page shows and said, and what Chromium said, for a failure message.
    pub fn diagnostics(&mut self) -> String {
        let shown = match self.try_call(
            "Runtime.evaluate",
            json!({
                "expression": "document.body ? document.body.innerText.slice(0, 3000) : ''",
                "returnByValue": true
            }),
            Duration::from_secs(5),
        ) {
            Ok(r) => r["result"]["value"].as_str().unwrap_or("").to_owned(),
            Err(e) => format!("(cannot read the page: {e})"),
        };
        let out = self.output.snapshot();
        let tail = &out[out.len().saturating_sub(40)..];
        format!(
            "the page shows:\n{shown}\n\nthe page's console and log:\n{}\n\n\
             Chromium's last output lines:\n{}",
            self.console.join("\n"),
            tail.join("\n")
        )
    }

    /// Fails the test with `what` and everything the browser said.
    pub fn fail(&mut self, what: &str) -> ! {
        panic!("{what}\n{}", self.diagnostics())
    }
}

/// Connects to Chromium's browser endpoint `ws://127.0.0.1:PORT/devtools/browser/ID`.
fn connect(url: &str) -> WebSocket<TcpStream> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("unexpected DevTools address {url}"));
    let stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream.set_read_timeout(Some(CALL)).unwrap();
    stream.set_write_timeout(Some(CALL)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut ws = match tungstenite::client(url, stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("WebSocket handshake with {url}: {e}"),
    };
    // From here on reads return often, so that every call checks its deadline.
    ws.get_mut().set_read_timeout(Some(READ_SLICE)).unwrap();
    ws
}
