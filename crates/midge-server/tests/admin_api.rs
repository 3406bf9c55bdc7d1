//! The admin HTTP API (`/api/v1`), `/metrics`, `/api/openapi.json` and `/` against a real
//! server in this process (MQTT and HTTP on 127.0.0.1:0), driven by real MQTT clients
//! (`rumqttc`, 3.1.1 and 5.0; one hand-made 3.1.1 CONNECT where the test must know the
//! client's own address) and a small HTTP/1.1 client written here.
//!
//! Every answer of a described path is checked against `src/http/openapi.json`: the status
//! must be documented for that path and method, the media type too, and a JSON body must
//! validate against the schema (a validator for the subset the description uses, written
//! here: type, properties, required, additionalProperties, items, enum, nullable, minimum,
//! maximum, `$ref`; any other keyword is an error, so nothing passes unchecked). The
//! scenarios run concurrently inside one test, which then asserts that every documented
//! (path, method, status, media type) was seen. Two more tests hold the description to
//! `api.rs` (its `.route(...)` lines, parsed from the source) and to the validator's subset,
//! and one proves that the validator and the reply check can fail.
//!
//! Every wait is bounded: HTTP answers and MQTT events within [`WAIT`], silence for [`QUIET`].
//!
//! One file, longer than the house's ~1,000 lines, on purpose: it carries its own HTTP
//! client, schema validator and client wrappers so that it depends on nothing but the server
//! and `rumqttc`; the sections below are in that order: scenarios, description checks,
//! validator, HTTP, servers, MQTT.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use midge_auth::password::{HashParams, PasswordFile};
use midge_server::config::HttpConfig;
use midge_server::{ListenerConfig, RunningServer, Server, ServerConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long an HTTP answer, an MQTT packet or a state change may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not come.
const QUIET: Duration = Duration::from_millis(400);
/// How long one scenario may take in all.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// The admin token of every server here.
const TOKEN: &str = "admin-api-test-token-5f0c9e";
/// Cheap password hashes: these tests check who gets in, not how slow hashing is.
const FAST: HashParams = HashParams {
    argon2_memory_kib: 8,
    argon2_iterations: 1,
    argon2_parallelism: 1,
    scram_iterations: 2,
};

// ---------------------------------------------------------------------------------------------
// The scenarios, run concurrently, and the coverage of the description
// ---------------------------------------------------------------------------------------------

type Scenario = Pin<Box<dyn Future<Output = ()> + Send>>;

fn scenarios(seen: &Seen) -> Vec<(&'static str, Scenario)> {
    let s = || seen.clone();
    vec![
        ("credentials", Box::pin(credentials(s()))),
        ("open endpoints", Box::pin(open_endpoints(s()))),
        ("broker", Box::pin(broker_counters(s()))),
        ("clients", Box::pin(clients(s()))),
        ("kick", Box::pin(kick(s()))),
        ("sessions", Box::pin(sessions(s()))),
        (
            "delete online session",
            Box::pin(delete_online_session(s())),
        ),
        ("subscriptions", Box::pin(subscriptions(s()))),
        ("retained", Box::pin(retained(s()))),
        ("publish", Box::pin(publish(s()))),
        ("reload", Box::pin(reload(s()))),
        ("watch", Box::pin(watch(s()))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_a_real_server() {
    let seen = Seen::default();
    let mut set = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for (name, scenario) in scenarios(&seen) {
        let handle = set.spawn(async move {
            if tokio::time::timeout(SCENARIO_LIMIT, scenario)
                .await
                .is_err()
            {
                panic!("did not finish within {SCENARIO_LIMIT:?}");
            }
        });
        names.insert(handle.id(), name);
    }
    let mut failed = Vec::new();
    while let Some(done) = set.join_next_with_id().await {
        if let Err(e) = done {
            let name = names.get(&e.id()).copied().unwrap_or("?");
            let why = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into())
            } else {
                e.to_string()
            };
            failed.push(format!("scenario `{name}`: {why}"));
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));

    let seen = seen.0.lock().unwrap().clone();
    let missing: Vec<String> = documented()
        .difference(&seen)
        .map(|(m, p, s, t)| format!("{} {p} -> {s} {t}", m.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "documented in openapi.json but never answered in these tests:\n{}",
        missing.join("\n")
    );
    let ops: BTreeSet<(String, String)> = seen.iter().map(|o| (o.0.clone(), o.1.clone())).collect();
    for op in operations() {
        assert!(ops.contains(&op), "{op:?} never exercised");
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// One request per described operation that the server answers without error when the
/// caller is let in.
struct Probe {
    path: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    stream: bool,
}

fn probe(method: &str, template: &str) -> Probe {
    let p = |path: &str, status| Probe {
        path: path.into(),
        body: Vec::new(),
        content_type: None,
        status,
        stream: false,
    };
    match (method, template) {
        ("get", "/api/v1/broker") => p(template, 200),
        ("get", "/api/v1/clients") => p(template, 200),
        ("get", "/api/v1/clients/{client_id}") => p("/api/v1/clients/nobody", 404),
        ("post", "/api/v1/clients/{client_id}/kick") => p("/api/v1/clients/nobody/kick", 404),
        ("get", "/api/v1/sessions") => p(template, 200),
        ("get", "/api/v1/sessions/{client_id}") => p("/api/v1/sessions/nobody", 404),
        ("delete", "/api/v1/sessions/{client_id}") => p("/api/v1/sessions/nobody", 404),
        ("get", "/api/v1/subscriptions") => p(template, 200),
        ("get", "/api/v1/retained") => p(template, 200),
        ("delete", "/api/v1/retained") => p("/api/v1/retained?topic=no/such", 404),
        ("post", "/api/v1/publish") => Probe {
            body: br#"{"topic":"auth/probe"}"#.to_vec(),
            content_type: Some("application/json"),
            ..p(template, 200)
        },
        ("post", "/api/v1/reload") => p(template, 422),
        ("get", "/api/v1/watch") => Probe {
            stream: true,
            ..p(template, 200)
        },
        ("get", "/metrics") => p(template, 200),
        other => panic!("no probe for {other:?}: add one for the new operation"),
    }
}

/// Who gets in: 401 for every operation without credentials or with wrong ones; the
/// token (header or query) and a user of `http.password_file` listed in `http.users` work.
async fn credentials(seen: Seen) {
    let dir = TempDir::new("credentials");
    let file = password_file(&dir);
    let s = start(&seen, dir, |c| {
        let h = c.http.as_mut().unwrap();
        h.password_file = Some(file);
        h.users = vec!["alice".into()];
    })
    .await;
    let bad = [
        Cred::Nothing,
        Cred::Bearer("wrong-token".into()),
        Cred::Query("wrong-token".into()),
        Cred::Basic("alice".into(), "not-wonderland".into()),
        // The right password, but bob is not in http.users.
        Cred::Basic("bob".into(), "builder".into()),
        Cred::Basic("mallory".into(), "wonderland".into()),
        // A Bearer header is the token; the query is not looked at.
        Cred::BearerAndQuery("wrong-token".into(), TOKEN.into()),
        Cred::Header("Authorization".into(), "Basic !!!not-base64".into()),
    ];
    let good = [
        Cred::Bearer(TOKEN.into()),
        Cred::Query(TOKEN.into()),
        Cred::Basic("alice".into(), "wonderland".into()),
    ];
    for (method, template) in operations() {
        if template == "/metrics" {
            // Open by default, password file or not (see `open_endpoints` for the rest).
            let r = s.api.with(Cred::Nothing).get("/metrics").await;
            assert_eq!(r.status, 200, "{}", r.text());
            continue;
        }
        let pr = probe(&method, &template);
        for cred in &bad {
            let r = s
                .api
                .with(cred.clone())
                .send(&method, &pr.path, pr.content_type, &pr.body)
                .await;
            assert_eq!(
                r.status,
                401,
                "{method} {} with {cred:?}: {}",
                pr.path,
                r.text()
            );
            assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"midge\""));
        }
        for cred in &good {
            let api = s.api.with(cred.clone());
            if pr.stream {
                drop(api.watch(&pr.path).await);
                continue;
            }
            let r = api.send(&method, &pr.path, pr.content_type, &pr.body).await;
            assert_eq!(
                r.status,
                pr.status,
                "{method} {} with {cred:?}: {}",
                pr.path,
                r.text()
            );
        }
    }
    s.stop().await;
}

/// A password file for `http.password_file`: alice (wonderland) and bob (builder).
fn password_file(dir: &TempDir) -> PathBuf {
    let mut passwords = PasswordFile::new().with_params(FAST);
    passwords.set("alice", b"wonderland").unwrap();
    passwords.set("bob", b"builder").unwrap();
    let file = dir.path("http.passwd");
    passwords.save(&file).unwrap();
    file
}

/// `/metrics` is open unless `http.metrics_require_auth`; `/` and `/api/openapi.json`
/// always are, and the latter serves the file these tests check against.
async fn open_endpoints(seen: Seen) {
    let s = start(&seen, TempDir::new("open"), |_| {}).await;
    let anonymous = s.api.with(Cred::Nothing);
    let r = anonymous.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.text().contains("\nmidge_clients_connected 0\n"),
        "{}",
        r.text()
    );
    check_open_assets(s.api.addr).await;

    let dir = TempDir::new("metrics-auth");
    let file = password_file(&dir);
    let locked = start(&seen, dir, |c| {
        let h = c.http.as_mut().unwrap();
        h.metrics_require_auth = true;
        h.password_file = Some(file);
    })
    .await;
    for cred in [
        Cred::Nothing,
        Cred::Bearer("wrong-token".into()),
        Cred::Query("wrong-token".into()),
        Cred::Basic("alice".into(), "not-wonderland".into()),
    ] {
        let r = locked.api.with(cred.clone()).get("/metrics").await;
        assert_eq!(r.status, 401, "/metrics with {cred:?}: {}", r.text());
    }
    for cred in [
        Cred::Bearer(TOKEN.into()),
        Cred::Query(TOKEN.into()),
        Cred::Basic("bob".into(), "builder".into()),
    ] {
        let r = locked.api.with(cred.clone()).get("/metrics").await;
        assert_eq!(r.status, 200, "/metrics with {cred:?}: {}", r.text());
        assert!(r.text().contains("# TYPE midge_clients_connected gauge"));
    }
    check_open_assets(locked.api.addr).await;
    s.stop().await;
    locked.stop().await;
}

async fn check_open_assets(addr: SocketAddr) {
    let r = http(addr, "GET", "/api/openapi.json", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.media_type(), "application/json");
    assert_eq!(&r.json(), spec(), "/api/openapi.json serves openapi.json");
    let r = http(addr, "GET", "/", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.media_type(), "text/html");
    assert!(r.text().to_lowercase().contains("<html"), "{}", r.text());
    // Outside the API, an unknown path is 404 for anyone (the fallback, not the auth layer).
    let r = http(addr, "GET", "/api/v1/no-such-thing", &[], b"").await;
    assert_eq!(r.status, 404, "{}", r.text());
}

/// `GET /api/v1/broker`: the totals follow connections, subscriptions, retained messages,
/// and the counters move after a publish.
async fn broker_counters(seen: Seen) {
    let s = start(&seen, TempDir::new("broker"), |_| {}).await;
    let before = s.api.get_ok("/api/v1/broker").await;
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["clients_connected"], 0);
    assert_eq!(before["sessions"], 0);
    assert_eq!(before["subscriptions"], 0);
    assert_eq!(before["retained"], 0);
    assert_eq!(before["messages_received"], 0);
    assert!(before["memory_budget_bytes"].as_u64().unwrap() > 0);

    let mut sub = V4::connect(v4_options(s.mqtt, "counter-sub")).await;
    sub.subscribe("count/#", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher = V5::connect(v5_options(s.mqtt, "counter-pub")).await;
    publisher
        .publish("count/a", v5qos(1), true, b"12345".to_vec())
        .await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"12345");

    let after = s
        .api
        .until("/api/v1/broker", "counters after one publish", |b| {
            b["messages_received"].as_u64() >= Some(1) && b["messages_sent"].as_u64() >= Some(1)
        })
        .await;
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(n(&after, "messages_received"), 1, "{after}");
    assert_eq!(n(&after, "messages_sent"), 1, "{after}");
    assert!(n(&after, "bytes_received") > n(&before, "bytes_received"));
    assert!(n(&after, "bytes_sent") > n(&before, "bytes_sent"));
    assert_eq!(n(&after, "clients_connected"), 2, "{after}");
    assert_eq!(n(&after, "sessions"), 2, "{after}");
    assert_eq!(n(&after, "subscriptions"), 1, "{after}");
    assert_eq!(n(&after, "retained"), 1, "{after}");
    assert!(n(&after, "uptime_secs") < 600);
    let r = s
        .api
        .post("/api/v1/publish", Some(&json!({"topic": "count/api"})))
        .await;
    assert_eq!(r.json()["matched"], 1);
    assert_eq!(&sub.recv().await.payload[..], b"");
    s.api
        .until("/api/v1/broker", "the API's publish counted", |b| {
            b["messages_received"] == 2 && b["messages_sent"] == 2
        })
        .await;
    publisher.disconnect().await;
    sub.disconnect().await;
    s.api
        .until("/api/v1/broker", "both clients gone", |b| {
            b["clients_connected"] == 0 && b["sessions"] == 0
        })
        .await;
    s.stop().await;
}

/// `GET /api/v1/clients` (list, search, paging) and `GET /api/v1/clients/{id}` (address,
/// protocol, keep-alive, user name, listener), 404 for an unknown id.
async fn clients(seen: Seen) {
    let s = start(&seen, TempDir::new("clients"), |_| {}).await;
    let t0 = now_ms();
    let raw = raw_connect_311(s.mqtt, "raw-311", 30, Some("alice")).await;
    let raw_addr = raw.local_addr().unwrap();
    let mut o = v5_options(s.mqtt, "mq5-beta");
    o.set_keep_alive(Duration::from_secs(45));
    let beta = V5::connect(o).await;
    let mut pages = Vec::new();
    for i in 0..5 {
        let mut o = v4_options(s.mqtt, &format!("page-{i}"));
        o.set_keep_alive(Duration::from_secs(20));
        pages.push(V4::connect(o).await);
    }
    let odd = V4::connect(v4_options(s.mqtt, "dev/ice 1")).await;
    let t1 = now_ms();

    let all = s.api.get_ok("/api/v1/clients").await;
    assert_eq!(all["total"], 8, "{all}");
    assert_eq!(
        ids(&all["clients"]),
        [
            "dev/ice 1",
            "mq5-beta",
            "page-0",
            "page-1",
            "page-2",
            "page-3",
            "page-4",
            "raw-311"
        ]
    );

    let c = s.api.get_ok("/api/v1/clients/raw-311").await;
    assert_eq!(c["client_id"], "raw-311");
    assert_eq!(
        c["address"],
        raw_addr.to_string(),
        "the client's own address"
    );
    assert_eq!(c["protocol"], "3.1.1");
    assert_eq!(c["keep_alive_secs"], 30);
    assert_eq!(c["username"], "alice");
    assert_eq!(c["listener"], format!("mqtt://{}", s.mqtt));
    assert_eq!(c["clean_start"], true);
    assert_eq!(c["session_expiry_secs"], 0);
    assert_eq!(
        (c["subscriptions"].clone(), c["queued"].clone()),
        (json!(0), json!(0))
    );
    let since = c["connected_since_ms"].as_u64().unwrap();
    assert!((t0..=t1).contains(&since), "{since} not in {t0}..={t1}");
    assert_eq!(c, all["clients"][7], "the list shows the same view");

    let c = s.api.get_ok("/api/v1/clients/mq5-beta").await;
    assert_eq!(c["protocol"], "5.0");
    assert_eq!(c["keep_alive_secs"], 45);
    assert_eq!(c["username"], Value::Null);
    let addr: SocketAddr = c["address"].as_str().unwrap().parse().unwrap();
    assert!(
        addr.ip().is_loopback() && addr != raw_addr && addr != s.mqtt,
        "{addr}"
    );
    let c = s.api.get_ok("/api/v1/clients/page-3").await;
    assert_eq!(
        (c["protocol"].clone(), c["keep_alive_secs"].clone()),
        (json!("3.1.1"), json!(20))
    );
    // A client id that needs percent-encoding in a path segment.
    let c = s
        .api
        .get_ok(&format!("/api/v1/clients/{}", enc("dev/ice 1")))
        .await;
    assert_eq!(c["client_id"], "dev/ice 1");

    let page = s
        .api
        .get_ok("/api/v1/clients?q=page-&limit=2&offset=1")
        .await;
    assert_eq!(page["total"], 5);
    assert_eq!(ids(&page["clients"]), ["page-1", "page-2"]);
    let one = s.api.get_ok("/api/v1/clients?client_id=page-3").await;
    assert_eq!(
        (one["total"].clone(), ids(&one["clients"])),
        (json!(1), vec!["page-3".to_string()])
    );
    let none = s.api.get_ok("/api/v1/clients?client_id=page").await;
    assert_eq!(none["total"], 0, "client_id is exact");
    let counted = s.api.get_ok("/api/v1/clients?limit=0").await;
    assert_eq!(
        (counted["total"].clone(), counted["clients"].clone()),
        (json!(8), json!([]))
    );
    let past = s.api.get_ok("/api/v1/clients?offset=100").await;
    assert_eq!(
        (past["total"].clone(), past["clients"].clone()),
        (json!(8), json!([]))
    );

    let r = s.api.get("/api/v1/clients/ghost").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("no client connected with this id"))
    );
    // A method a path does not serve, and rejections of axum's extractors, are JSON errors
    // like the API's own.
    let r = http(
        s.api.addr,
        "put",
        &s.api.target("/api/v1/clients"),
        &s.api.headers(),
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.media_type().as_str()),
        (405, "application/json")
    );
    assert!(r.json()["error"].is_string(), "{}", r.text());
    let r = s.api.get("/api/v1/clients?limit=abc").await;
    assert_eq!(
        (r.status, r.media_type().as_str()),
        (400, "application/json")
    );
    assert!(r.json()["error"].is_string(), "{}", r.text());
    let r = s.api.get("/api/v1/clients/%FF").await;
    assert_eq!(
        (r.status, r.media_type().as_str()),
        (400, "application/json")
    );
    assert!(r.json()["error"].is_string(), "{}", r.text());

    drop(raw);
    drop(odd);
    drop(beta);
    drop(pages);
    s.stop().await;
}

/// `POST /api/v1/clients/{id}/kick`: a 5.0 client gets DISCONNECT 0x98, a 3.1.1 client's
/// connection closes, and both wills are published.
async fn kick(seen: Seen) {
    let s = start(&seen, TempDir::new("kick"), |_| {}).await;
    let mut watcher = V4::connect(v4_options(s.mqtt, "will-watcher")).await;
    watcher
        .subscribe("wills/#", rumqttc::QoS::AtLeastOnce)
        .await;
    let mut o = v5_options(s.mqtt, "kick-5");
    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "wills/kick-5",
        "gone-5",
        v5qos(1),
        false,
        None,
    ));
    let mut five = V5::connect(o).await;
    let mut o = v4_options(s.mqtt, "kick-311");
    o.set_last_will(rumqttc::LastWill::new(
        "wills/kick-311",
        "gone-311",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let mut three = V4::connect(o).await;

    let r = s.api.post("/api/v1/clients/kick-5/kick", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"kicked": "kick-5"})));
    assert_eq!(five.conn.ended().await, Ended::Disconnect(0x98));
    let will = watcher.recv().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/kick-5", &b"gone-5"[..])
    );

    let r = s.api.post("/api/v1/clients/kick-311/kick", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"kicked": "kick-311"})));
    assert_eq!(three.conn.ended().await, Ended::Closed);
    let will = watcher.recv().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/kick-311", &b"gone-311"[..])
    );

    for id in ["kick-5", "kick-311"] {
        s.api
            .until_status(
                &format!("/api/v1/clients/{id}"),
                404,
                "the kicked client gone",
            )
            .await;
        let r = s
            .api
            .post(&format!("/api/v1/clients/{id}/kick"), None)
            .await;
        assert_eq!(r.status, 404, "{}", r.text());
    }
    let r = s.api.post("/api/v1/clients/nobody/kick", None).await;
    assert_eq!(r.status, 404);
    let r = s.api.post("/api/v1/clients/%FF/kick", None).await;
    assert_eq!(r.status, 400);
    let left = s.api.get_ok("/api/v1/clients").await;
    assert_eq!(ids(&left["clients"]), ["will-watcher"]);
    watcher.conn.quiet("another will").await;
    watcher.disconnect().await;
    s.stop().await;
}

/// `GET /api/v1/sessions` with offline persistent sessions whose queues grow while they
/// are away, `GET /api/v1/sessions/{id}`, `DELETE` of an offline session.
async fn sessions(seen: Seen) {
    let s = start(&seen, TempDir::new("sessions"), |_| {}).await;
    let mut o = v4_options(s.mqtt, "offline-311");
    o.set_clean_session(false);
    let mut c = V4::connect(o.clone()).await;
    c.subscribe("queue/#", rumqttc::QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut o5 = v5_options(s.mqtt, "offline-5");
    o5.set_clean_start(false);
    o5.set_session_expiry_interval(Some(600));
    let mut c5 = V5::connect(o5.clone()).await;
    c5.subscribe("queue/5", v5qos(1)).await;
    c5.disconnect().await;
    let online = V4::connect(v4_options(s.mqtt, "online-311")).await;

    let off = s
        .api
        .until(
            "/api/v1/sessions?online=false",
            "two offline sessions",
            |v| v["total"] == 2,
        )
        .await;
    assert_eq!(ids(&off["sessions"]), ["offline-311", "offline-5"]);
    let all = s.api.get_ok("/api/v1/sessions").await;
    assert_eq!(all["total"], 3);
    assert_eq!(
        ids(&all["sessions"]),
        ["offline-311", "offline-5", "online-311"]
    );
    let on = s.api.get_ok("/api/v1/sessions?online=true").await;
    assert_eq!(ids(&on["sessions"]), ["online-311"]);
    let page = s
        .api
        .get_ok("/api/v1/sessions?q=offline&limit=1&offset=1")
        .await;
    assert_eq!(
        (page["total"].clone(), ids(&page["sessions"])),
        (json!(2), vec!["offline-5".to_string()])
    );
    let exact = s
        .api
        .get_ok("/api/v1/sessions?client_id=offline-5&online=false")
        .await;
    assert_eq!(ids(&exact["sessions"]), ["offline-5"]);

    let v = &off["sessions"][0];
    assert_eq!(v["online"], false);
    assert_eq!(v["protocol"], "3.1.1");
    assert_eq!(
        v["expiry_secs"],
        u64::from(u32::MAX),
        "3.1.1 sessions never expire"
    );
    assert_eq!(v["expires_in_secs"], Value::Null);
    assert_eq!(
        (v["queued"].clone(), v["subscriptions"].clone()),
        (json!(0), json!(1))
    );
    let v = &off["sessions"][1];
    assert_eq!(
        (v["protocol"].clone(), v["expiry_secs"].clone()),
        (json!("5.0"), json!(600))
    );
    let left = v["expires_in_secs"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "expires_in_secs {left}");
    let v = &all["sessions"][2];
    assert_eq!(
        (v["online"].clone(), v["expires_in_secs"].clone()),
        (json!(true), Value::Null)
    );
    assert_eq!(v["expiry_secs"], 0);

    // Messages for an offline session are queued.
    for payload in ["one", "two"] {
        let r = s
            .api
            .post(
                "/api/v1/publish",
                Some(&json!({"topic": "queue/a", "payload": payload, "qos": 1})),
            )
            .await;
        assert_eq!(r.json()["matched"], 1, "only offline-311 matches queue/a");
    }
    let v = s
        .api
        .until("/api/v1/sessions/offline-311", "two queued", |v| {
            v["queued"] == 2
        })
        .await;
    assert!(v["queued_bytes"].as_u64().unwrap() >= 6, "{v}");
    assert_eq!(
        v["filters"],
        json!([{"client_id": "offline-311", "filter": "queue/#", "qos": 1, "no_local": false,
                "retain_as_published": false, "retain_handling": 0, "subscription_id": null}])
    );
    let r = s
        .api
        .post(
            "/api/v1/publish",
            Some(&json!({"topic": "queue/5", "payload": "three", "qos": 1})),
        )
        .await;
    assert_eq!(r.json()["matched"], 2);
    s.api
        .until("/api/v1/sessions?online=false", "3 and 1 queued", |v| {
            v["sessions"][0]["queued"] == 3 && v["sessions"][1]["queued"] == 1
        })
        .await;
    let b = s.api.get_ok("/api/v1/broker").await;
    assert_eq!(b["queued_messages"], 4, "{b}");

    // Back online: the queue is delivered and empties.
    let mut c = V4::connect(o).await;
    assert!(c.session_present);
    let mut got: Vec<String> = Vec::new();
    for _ in 0..3 {
        got.push(String::from_utf8(c.recv().await.payload.to_vec()).unwrap());
    }
    assert_eq!(got, ["one", "two", "three"]);
    s.api
        .until("/api/v1/sessions/offline-311", "online, queue empty", |v| {
            v["online"] == true && v["queued"] == 0 && v["inflight"] == 0
        })
        .await;
    c.disconnect().await;

    // DELETE of an offline session.
    let r = s.api.delete("/api/v1/sessions/offline-5").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = s.api.get("/api/v1/sessions/offline-5").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("no session with this client id"))
    );
    let r = s.api.delete("/api/v1/sessions/offline-5").await;
    assert_eq!(r.status, 404);
    let all = s.api.get_ok("/api/v1/sessions").await;
    assert_eq!(ids(&all["sessions"]), ["offline-311", "online-311"]);
    let c5 = V5::connect(o5).await;
    assert!(!c5.session_present, "the deleted session is gone for good");
    c5.disconnect().await;

    let r = s.api.get("/api/v1/sessions?online=maybe").await;
    assert_eq!(r.status, 400);
    let r = s.api.get("/api/v1/sessions/%FF").await;
    assert_eq!(r.status, 400);
    let r = s.api.delete("/api/v1/sessions/%FF").await;
    assert_eq!(r.status, 400);
    drop(online);
    s.stop().await;
}

/// `DELETE /api/v1/sessions/{id}` of an online session: the client is disconnected (0x98),
/// its will published, and the session is gone.
async fn delete_online_session(seen: Seen) {
    let s = start(&seen, TempDir::new("delete-online"), |_| {}).await;
    let mut watcher = V4::connect(v4_options(s.mqtt, "watcher")).await;
    watcher
        .subscribe("wills/#", rumqttc::QoS::AtLeastOnce)
        .await;
    let mut o = v5_options(s.mqtt, "doomed");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(600));
    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "wills/doomed",
        "bye",
        v5qos(1),
        false,
        None,
    ));
    let mut c = V5::connect(o.clone()).await;
    c.subscribe("doomed/#", v5qos(1)).await;

    let r = s.api.delete("/api/v1/sessions/doomed").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(c.conn.ended().await, Ended::Disconnect(0x98));
    let will = watcher.recv().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/doomed", &b"bye"[..])
    );
    s.api
        .until_status("/api/v1/sessions/doomed", 404, "the session gone")
        .await;
    let all = s.api.get_ok("/api/v1/sessions").await;
    assert_eq!(ids(&all["sessions"]), ["watcher"]);
    let r = s.api.delete("/api/v1/sessions/doomed").await;
    assert_eq!(r.status, 404);
    let c = V5::connect(o).await;
    assert!(!c.session_present, "the deleted session is gone for good");
    let subs = s.api.get_ok("/api/v1/subscriptions?client_id=doomed").await;
    assert_eq!(subs["total"], 0, "its subscriptions went with it");
    drop(c);
    watcher.disconnect().await;
    s.stop().await;
}

/// `GET /api/v1/subscriptions` with `client_id`, `q` and paging, the 5.0 options shown,
/// and the same entries in the session detail.
async fn subscriptions(seen: Seen) {
    use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule, SubscribeProperties};
    let s = start(&seen, TempDir::new("subscriptions"), |_| {}).await;
    let mut a = V5::connect(v5_options(s.mqtt, "subs-a")).await;
    a.client
        .subscribe_many_with_properties(
            vec![
                Filter {
                    path: "sensors/+/temp".into(),
                    qos: v5qos(2),
                    nolocal: true,
                    preserve_retain: true,
                    retain_forward_rule: RetainForwardRule::Never,
                },
                Filter::new("alerts/#", v5qos(1)),
            ],
            SubscribeProperties {
                id: Some(7),
                user_properties: Vec::new(),
            },
        )
        .await
        .unwrap();
    a.suback().await;
    let mut b = V4::connect(v4_options(s.mqtt, "subs-b")).await;
    b.subscribe("sensors/#", rumqttc::QoS::AtMostOnce).await;
    let mut c = V5::connect(v5_options(s.mqtt, "subs-c")).await;
    c.subscribe("$share/grp/jobs/#", v5qos(1)).await;

    let all = s.api.get_ok("/api/v1/subscriptions").await;
    assert_eq!(all["total"], 4, "{all}");
    let pairs: Vec<(String, String)> = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["client_id"].as_str().unwrap().into(),
                v["filter"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("subs-a", "alerts/#"),
        ("subs-a", "sensors/+/temp"),
        ("subs-b", "sensors/#"),
        ("subs-c", "$share/grp/jobs/#"),
    ];
    assert_eq!(pairs, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(
        all["subscriptions"][1],
        json!({"client_id": "subs-a", "filter": "sensors/+/temp", "qos": 2, "no_local": true,
               "retain_as_published": true, "retain_handling": 2, "subscription_id": 7})
    );
    assert_eq!(
        all["subscriptions"][0],
        json!({"client_id": "subs-a", "filter": "alerts/#", "qos": 1, "no_local": false,
               "retain_as_published": false, "retain_handling": 0, "subscription_id": 7})
    );
    assert_eq!(all["subscriptions"][2]["qos"], 0);
    assert_eq!(all["subscriptions"][2]["subscription_id"], Value::Null);

    let by_client = s.api.get_ok("/api/v1/subscriptions?client_id=subs-a").await;
    assert_eq!(by_client["total"], 2);
    let detail = s.api.get_ok("/api/v1/sessions/subs-a").await;
    assert_eq!(
        detail["filters"], by_client["subscriptions"],
        "the session shows the same"
    );
    assert_eq!(detail["subscriptions"], 2);
    let q = s.api.get_ok("/api/v1/subscriptions?q=sensors").await;
    assert_eq!(q["total"], 2);
    let q = s
        .api
        .get_ok("/api/v1/subscriptions?q=sensors&client_id=subs-b")
        .await;
    assert_eq!(
        (q["total"].clone(), q["subscriptions"][0]["filter"].clone()),
        (json!(1), json!("sensors/#"))
    );
    let q = s
        .api
        .get_ok(&format!("/api/v1/subscriptions?q={}", enc("$share")))
        .await;
    assert_eq!(q["total"], 1);
    let page = s.api.get_ok("/api/v1/subscriptions?limit=1&offset=1").await;
    assert_eq!(
        (page["total"].clone(), page["subscriptions"][0].clone()),
        (json!(4), all["subscriptions"][1].clone())
    );
    let b_info = s.api.get_ok("/api/v1/broker").await;
    assert_eq!(b_info["subscriptions"], 4);
    // `matched` of a publish: one per session (subs-a and subs-b), one per shared group.
    let r = s
        .api
        .post("/api/v1/publish", Some(&json!({"topic": "sensors/a/temp"})))
        .await;
    assert_eq!(r.json(), json!({"matched": 2}));
    let r = s
        .api
        .post("/api/v1/publish", Some(&json!({"topic": "jobs/1"})))
        .await;
    assert_eq!(r.json(), json!({"matched": 1}));
    let r = s.api.get("/api/v1/subscriptions?offset=-1").await;
    assert_eq!(r.status, 400);
    drop((a, b, c));
    s.stop().await;
}

/// `GET /api/v1/retained` (filter, paging, base64 for binary payloads) and
/// `DELETE /api/v1/retained` (204, then 404; a new subscriber gets nothing).
async fn retained(seen: Seen) {
    let s = start(&seen, TempDir::new("retained"), |_| {}).await;
    let mut p = V4::connect(v4_options(s.mqtt, "ret-pub")).await;
    let q1 = rumqttc::QoS::AtLeastOnce;
    p.publish("ret/text", q1, true, b"hello".to_vec()).await;
    p.publish("ret/bin", q1, true, vec![0xff, 0x00, 0xfe]).await;
    p.publish("misc/x", rumqttc::QoS::AtMostOnce, true, b"m".to_vec())
        .await;
    let all = s
        .api
        .until("/api/v1/retained", "three retained", |v| v["total"] == 3)
        .await;
    assert_eq!(
        all["messages"],
        json!([
            {"topic": "misc/x", "qos": 0, "retain": true, "payload": "m", "payload_encoding": "utf8", "payload_bytes": 1},
            {"topic": "ret/bin", "qos": 1, "retain": true, "payload": B64.encode([0xff, 0x00, 0xfe]), "payload_encoding": "base64", "payload_bytes": 3},
            {"topic": "ret/text", "qos": 1, "retain": true, "payload": "hello", "payload_encoding": "utf8", "payload_bytes": 5},
        ])
    );
    let f = s
        .api
        .get_ok(&format!("/api/v1/retained?filter={}", enc("ret/#")))
        .await;
    assert_eq!(topics(&f["messages"]), ["ret/bin", "ret/text"]);
    let f = s
        .api
        .get_ok(&format!("/api/v1/retained?filter={}", enc("+/x")))
        .await;
    assert_eq!(topics(&f["messages"]), ["misc/x"]);
    let f = s.api.get_ok("/api/v1/retained?limit=1&offset=2").await;
    assert_eq!(
        (f["total"].clone(), topics(&f["messages"])),
        (json!(3), vec!["ret/text".to_string()])
    );
    for bad in ["a/#/b", "$share/g/ret/#", ""] {
        let r = s
            .api
            .get(&format!("/api/v1/retained?filter={}", enc(bad)))
            .await;
        assert_eq!(
            (r.status, r.media_type().as_str()),
            (400, "application/json"),
            "{bad:?}: {}",
            r.text()
        );
    }
    let r = s.api.get("/api/v1/retained?limit=x").await;
    assert_eq!(
        (r.status, r.media_type().as_str()),
        (400, "application/json")
    );
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("limit"), "{error}");

    let r = s.api.delete("/api/v1/retained?topic=ret/text").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = s.api.delete("/api/v1/retained?topic=ret/text").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("no retained message on this topic"))
    );
    let r = s
        .api
        .delete(&format!("/api/v1/retained?topic={}", enc("ret/#")))
        .await;
    assert_eq!(r.status, 404, "a filter is not a topic: nothing is deleted");
    let r = s.api.delete("/api/v1/retained").await;
    assert_eq!(r.status, 400);
    let left = s.api.get_ok("/api/v1/retained").await;
    assert_eq!(topics(&left["messages"]), ["misc/x", "ret/bin"]);

    let mut sub = V4::connect(v4_options(s.mqtt, "ret-sub")).await;
    sub.subscribe("ret/text", q1).await;
    sub.conn.quiet("the deleted retained message").await;
    sub.subscribe("ret/#", q1).await;
    let got = sub.recv().await;
    assert_eq!((got.topic.as_str(), got.retain), ("ret/bin", true));
    sub.conn.quiet("a second retained message").await;

    // `#` (the default filter) does not match topics starting with `$`, as in MQTT.
    let r = s
        .api
        .post(
            "/api/v1/publish",
            Some(&json!({"topic": "$app/x", "payload": "d", "retain": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let all = s.api.get_ok("/api/v1/retained").await;
    assert_eq!(topics(&all["messages"]), ["misc/x", "ret/bin"]);
    let dollar = s
        .api
        .get_ok(&format!("/api/v1/retained?filter={}", enc("$app/#")))
        .await;
    assert_eq!(topics(&dollar["messages"]), ["$app/x"]);

    // An empty retained publish through the API deletes, as over MQTT.
    let r = s
        .api
        .post(
            "/api/v1/publish",
            Some(&json!({"topic": "misc/x", "retain": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    let left = s.api.get_ok("/api/v1/retained").await;
    assert_eq!(topics(&left["messages"]), ["ret/bin"]);
    p.disconnect().await;
    sub.disconnect().await;
    s.stop().await;
}

/// `POST /api/v1/publish`: utf8 and base64 payloads, qos, retain, reach a subscriber;
/// malformed requests are 400, a message over the packet limit 413.
async fn publish(seen: Seen) {
    let s = start(&seen, TempDir::new("publish"), |c| {
        c.broker.max_packet_size = 4096;
    })
    .await;
    let mut sub = V5::connect(v5_options(s.mqtt, "pub-sub")).await;
    sub.subscribe("pub/#", v5qos(2)).await;
    let request_schema = json!({"$ref": "#/components/schemas/PublishRequest"});

    // (body, topic, payload and QoS the subscriber gets)
    let ok_cases = [
        (
            json!({"topic": "pub/text", "payload": "héllo"}),
            "pub/text",
            "héllo".as_bytes().to_vec(),
            0,
        ),
        (
            json!({"topic": "pub/bin", "payload": "AAEC/w==", "payload_encoding": "base64", "qos": 1}),
            "pub/bin",
            vec![0, 1, 2, 255],
            1,
        ),
        (
            json!({"topic": "pub/kept", "payload": "k", "payload_encoding": "utf8", "qos": 2, "retain": true}),
            "pub/kept",
            b"k".to_vec(),
            2,
        ),
        (
            json!({"topic": "pub/null", "payload_encoding": null}),
            "pub/null",
            Vec::new(),
            0,
        ),
        (
            json!({"topic": "pub/big", "payload": "x".repeat(3000)}),
            "pub/big",
            vec![b'x'; 3000],
            0,
        ),
    ];
    for (body, topic, payload, qos) in ok_cases {
        assert_eq!(
            validate(&request_schema, &body),
            Vec::<String>::new(),
            "{body}"
        );
        let r = s.api.post("/api/v1/publish", Some(&body)).await;
        assert_eq!((r.status, r.json()), (200, json!({"matched": 1})), "{body}");
        let got = sub.recv().await;
        assert_eq!(&got.topic[..], topic.as_bytes());
        assert_eq!(got.payload.to_vec(), payload, "{body}");
        // Delivered to a subscription that existed already: the retain flag is not set.
        assert_eq!((got.qos as u8, got.retain), (qos, false), "{body}");
    }
    let kept = s
        .api
        .get_ok(&format!("/api/v1/retained?filter={}", enc("pub/#")))
        .await;
    assert_eq!(
        kept["messages"],
        json!([{"topic": "pub/kept", "qos": 2, "retain": true, "payload": "k", "payload_encoding": "utf8", "payload_bytes": 1}])
    );
    let r = s
        .api
        .post("/api/v1/publish", Some(&json!({"topic": "nobody/listens"})))
        .await;
    assert_eq!(r.json(), json!({"matched": 0}));

    // Refused: (body, whether the schema already refuses it).
    let bad = [
        (json!({"topic": "pub/+"}), false),
        (json!({"topic": ""}), false),
        (
            json!({"topic": "pub/x", "payload": "!!!", "payload_encoding": "base64"}),
            false,
        ),
        (json!({"topic": "pub/x", "qos": 3}), true),
        (json!({"topic": "pub/x", "qos": 300}), true),
        (json!({"topic": "pub/x", "payload_encoding": "hex"}), true),
        (json!({"topic": "pub/x", "colour": "red"}), true),
        (json!({"payload": "x"}), true),
        (json!({"topic": 5}), true),
        (json!({"topic": "pub/x", "retain": "yes"}), true),
    ];
    for (body, schema_refuses) in bad {
        assert_eq!(
            !validate(&request_schema, &body).is_empty(),
            schema_refuses,
            "{body}"
        );
        let r = s.api.post("/api/v1/publish", Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }
    let r = s
        .api
        .send(
            "post",
            "/api/v1/publish",
            Some("application/json"),
            b"not json",
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .api
        .send("post", "/api/v1/publish", None, br#"{"topic":"pub/x"}"#)
        .await;
    assert_eq!(r.status, 400, "no Content-Type: {}", r.text());

    let big = json!({"topic": "pub/big", "payload": "x".repeat(5000)});
    let r = s.api.post("/api/v1/publish", Some(&big)).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("max_packet_size"));
    sub.conn.quiet("a refused message").await;
    sub.disconnect().await;
    s.stop().await;
}

/// `POST /api/v1/reload`: 422 without a configuration source or when it fails; 200 with the
/// changes, which then apply.
async fn reload(seen: Seen) {
    let s = start(&seen, TempDir::new("reload-none"), |_| {}).await;
    let r = s.api.post("/api/v1/reload", None).await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no configuration source"),
        "{}",
        r.text()
    );
    s.stop().await;

    let dir = TempDir::new("reload");
    let config = base_config(&dir);
    let mut smaller = config.clone();
    smaller.broker.max_packet_size = 8192;
    let answer: Arc<Mutex<Result<ServerConfig, String>>> = Arc::new(Mutex::new(Ok(smaller)));
    let source = answer.clone();
    let server = Server::bind(config)
        .await
        .unwrap()
        .with_config_source(Arc::new(move || source.lock().unwrap().clone()))
        .start();
    let s = TestServer::new(server, &seen, dir);
    let body = json!({"topic": "t", "payload": "x".repeat(9000)});
    let r = s.api.post("/api/v1/publish", Some(&body)).await;
    assert_eq!(r.status, 200, "under the default 1 MiB limit: {}", r.text());

    let r = s.api.post("/api/v1/reload", None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"reloaded": true, "changes": ["limits and broker settings applied"]})
        )
    );
    let r = s.api.post("/api/v1/publish", Some(&body)).await;
    assert_eq!(r.status, 413, "the reloaded limit applies: {}", r.text());
    let r = s.api.post("/api/v1/reload", None).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"reloaded": true, "changes": []}))
    );

    *answer.lock().unwrap() =
        Err("midge.toml: [limits] max_packet_size_bytes: out of range".into());
    let r = s.api.post("/api/v1/reload", None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            422,
            json!({"error": "midge.toml: [limits] max_packet_size_bytes: out of range"})
        )
    );
    s.stop().await;
}

/// `GET /api/v1/watch` (Server-Sent Events, with `?token=` as a browser's EventSource
/// sends it): messages published after it opened, as JSON; bad filters are 400; the watch
/// ends when the reader goes away.
async fn watch(seen: Seen) {
    let s = start(&seen, TempDir::new("watch"), |_| {}).await;
    let api = s.api.with(Cred::Query(TOKEN.into()));
    let mut p = V4::connect(v4_options(s.mqtt, "watch-pub")).await;
    // Published before the watch: never shown.
    p.publish(
        "watch/early",
        rumqttc::QoS::AtLeastOnce,
        false,
        b"early".to_vec(),
    )
    .await;
    assert_eq!(s.server.broker.watch_count(), 0);
    let t0 = now_ms();
    let mut w = api
        .watch(&format!("/api/v1/watch?filter={}", enc("watch/#")))
        .await;
    assert_eq!(s.server.broker.watch_count(), 1);

    p.publish("other/x", rumqttc::QoS::AtLeastOnce, false, b"no".to_vec())
        .await;
    p.publish(
        "watch/a",
        rumqttc::QoS::AtLeastOnce,
        false,
        b"first".to_vec(),
    )
    .await;
    p.publish(
        "watch/bin",
        rumqttc::QoS::AtMostOnce,
        true,
        vec![0xc3, 0x28],
    )
    .await;
    let (event, m) = w.next_event().await;
    assert_eq!(event, "message");
    let received = m["received_ms"].as_u64().unwrap();
    assert!(
        (t0..=now_ms()).contains(&received),
        "received_ms {received}"
    );
    assert_eq!(
        m,
        json!({"topic": "watch/a", "qos": 1, "retain": false, "payload": "first",
               "payload_encoding": "utf8", "payload_bytes": 5, "received_ms": received})
    );
    let (_, m) = w.next_event().await;
    assert_eq!(
        (m["topic"].clone(), m["retain"].clone()),
        (json!("watch/bin"), json!(true))
    );
    assert_eq!(
        (m["payload"].clone(), m["payload_encoding"].clone()),
        (json!(B64.encode([0xc3, 0x28])), json!("base64"))
    );
    let r = s
        .api
        .post(
            "/api/v1/publish",
            Some(&json!({"topic": "watch/api", "payload": "from the API", "qos": 2})),
        )
        .await;
    assert_eq!(r.json()["matched"], 0, "a watch is not a session");
    let (_, m) = w.next_event().await;
    assert_eq!(
        (m["topic"].clone(), m["qos"].clone(), m["payload"].clone()),
        (json!("watch/api"), json!(2), json!("from the API"))
    );

    for bad in ["a/#/b", "$share/g/watch/#"] {
        let r = api.get(&format!("/api/v1/watch?filter={}", enc(bad))).await;
        assert_eq!(
            (r.status, r.media_type().as_str()),
            (400, "application/json"),
            "{bad}: {}",
            r.text()
        );
    }
    let r = api.get("/api/v1/watch?limit=many").await;
    assert_eq!(
        (r.status, r.media_type().as_str()),
        (400, "application/json")
    );
    assert_eq!(
        s.server.broker.watch_count(),
        1,
        "refused watches leave nothing behind"
    );

    // The reader goes away: the next messages find the connection closed and end the watch.
    drop(w);
    let deadline = Instant::now() + WAIT;
    while s.server.broker.watch_count() != 0 {
        assert!(Instant::now() < deadline, "the watch outlived its reader");
        let r = s
            .api
            .post("/api/v1/publish", Some(&json!({"topic": "watch/after"})))
            .await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.disconnect().await;
    s.stop().await;
}

/// A message larger than axum's default body limit (2 MiB) but within
/// `limits.max_packet_size_bytes` is published: the API's body limit follows the packet
/// size (a regression test: it used to be refused with 400).
#[tokio::test]
async fn publish_obeys_max_packet_size_above_two_mib() {
    let seen = Seen::default();
    let s = start(&seen, TempDir::new("big"), |c| {
        c.broker.max_packet_size = 4 * 1024 * 1024;
    })
    .await;
    let body = json!({"topic": "big", "payload": "x".repeat(3 * 1024 * 1024)});
    let r = s.api.post("/api/v1/publish", Some(&body)).await;
    assert_eq!(r.status, 200, "3 MiB within a 4 MiB limit: {}", r.text());
    let body = json!({"topic": "big", "payload": "x".repeat(5 * 1024 * 1024)});
    let r = s.api.post("/api/v1/publish", Some(&body)).await;
    assert_eq!(r.status, 413, "5 MiB over a 4 MiB limit: {}", r.text());
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The description against the source, and the validator against wrong bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn the_description_has_every_route_of_api_rs_and_nothing_else() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/");
    let api = parse_routes(&std::fs::read_to_string(format!("{dir}api.rs")).unwrap());
    assert!(
        api.contains(&("get".into(), "/api/v1/broker".into())) && api.len() >= 13,
        "the route parser found too little in api.rs: {api:?}"
    );
    let outer = parse_routes(&std::fs::read_to_string(format!("{dir}mod.rs")).unwrap());
    let metrics = ("get".to_string(), "/metrics".to_string());
    assert!(outer.contains(&metrics), "{outer:?}");
    let mut routes = api;
    routes.insert(metrics);
    let described: BTreeSet<(String, String)> = operations().into_iter().collect();
    let missing: Vec<_> = routes.difference(&described).collect();
    let extra: Vec<_> = described.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes not in openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.json describes routes that do not exist: {extra:?}"
    );
}

#[test]
fn the_route_parser_reads_chained_methods_across_lines() {
    let src = r#"
        Router::new()
            .route("/a", get(get_a))
            .route(
                "/b/{id}",
                get(show_b).delete(delete_b),
            )
            .route("/c", post(forget).put(c))
    "#;
    let want: BTreeSet<(String, String)> = [
        ("get", "/a"),
        ("get", "/b/{id}"),
        ("delete", "/b/{id}"),
        ("post", "/c"),
        ("put", "/c"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(parse_routes(src), want);
}

#[test]
fn the_description_is_well_formed_and_within_the_validator() {
    let doc = spec();
    assert_eq!(doc["openapi"], "3.0.3");
    walk(doc, &mut |v| {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            assert!(pointer(r).is_some(), "dangling $ref {r}");
        }
    });
    let schemes: BTreeSet<String> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| {
            let v = |k: &str| s[k].as_str().unwrap_or("").to_string();
            format!("{}/{}/{}/{}", v("type"), v("scheme"), v("in"), v("name"))
        })
        .collect();
    let want: BTreeSet<String> = ["http/bearer//", "http/basic//", "apiKey//query/token"]
        .map(String::from)
        .into();
    assert_eq!(schemes, want);
    let mut ids = BTreeSet::new();
    for (method, template) in operations() {
        let op = &doc["paths"][&template][&method];
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
        assert!(
            op["responses"].get("401").is_some(),
            "{method} {template}: no 401"
        );
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|a| a.iter().map(resolve).collect())
            .unwrap_or_default();
        for seg in template.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    params
                        .iter()
                        .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true),
                    "{method} {template}: path parameter {name} not declared"
                );
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut errors = Vec::new();
        known_keywords(schema, name, &mut errors);
        if name != "PublishRequest" {
            // What the server writes: every key always present (null when absent), no other.
            closed_and_complete(schema, name, &mut errors);
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[test]
fn the_validator_and_the_reply_check_can_fail() {
    let list = json!({"$ref": "#/components/schemas/ClientList"});
    let client = json!({
        "client_id": "c", "username": "u", "address": "127.0.0.1:5", "listener": "mqtt://127.0.0.1:1883",
        "protocol": "5.0", "keep_alive_secs": 60, "clean_start": true, "connected_since_ms": 1,
        "inflight": 0, "queued": 0, "subscriptions": 0, "session_expiry_secs": 0
    });
    let good = json!({"total": 1, "clients": [client]});
    assert_eq!(validate(&list, &good), Vec::<String>::new());
    let mut nullable = good.clone();
    nullable["clients"][0]["username"] = Value::Null;
    assert_eq!(validate(&list, &nullable), Vec::<String>::new());

    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 12] = [
        ("a required key missing", |v| {
            v.as_object_mut().unwrap().remove("total");
        }),
        ("an unknown key", |v| v["extra"] = json!(1)),
        ("a string for an integer", |v| v["total"] = json!("1")),
        ("a fraction for an integer", |v| v["total"] = json!(1.5)),
        ("below the minimum", |v| v["total"] = json!(-1)),
        ("null where not nullable", |v| {
            v["clients"][0]["client_id"] = Value::Null
        }),
        ("outside the enum", |v| {
            v["clients"][0]["protocol"] = json!("4.0")
        }),
        ("above the maximum", |v| {
            v["clients"][0]["keep_alive_secs"] = json!(70000)
        }),
        ("an object for an array", |v| v["clients"] = json!({})),
        ("an item of the wrong type", |v| v["clients"] = json!([1])),
        ("a key missing in an item", |v| {
            v["clients"][0].as_object_mut().unwrap().remove("listener");
        }),
        ("a number for a boolean", |v| {
            v["clients"][0]["clean_start"] = json!(1)
        }),
    ];
    for (what, mutate) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        assert!(!validate(&list, &v).is_empty(), "{what}: passed: {v}");
    }
    let session = json!({"client_id": "c", "online": true, "protocol": "5.0", "expiry_secs": 0,
        "expires_in_secs": null, "queued": 0, "queued_bytes": 0, "inflight": 0, "subscriptions": 0});
    let sref = |n: &str| json!({ "$ref": format!("#/components/schemas/{n}") });
    assert!(validate(&sref("Session"), &session).is_empty());
    assert!(
        !validate(&sref("SessionDetail"), &session).is_empty(),
        "filters missing"
    );
    let mut detail = session.clone();
    detail["filters"] = json!([]);
    assert!(validate(&sref("SessionDetail"), &detail).is_empty());
    assert!(
        !validate(&sref("Session"), &detail).is_empty(),
        "filters extra"
    );
    assert!(
        !validate(&json!({"type": "string", "pattern": "^a"}), &json!("a")).is_empty(),
        "an unknown keyword must not pass silently"
    );

    let reply = |status, media: &str, body: &str| Reply {
        status,
        headers: if media.is_empty() {
            Vec::new()
        } else {
            vec![("content-type".into(), media.into())]
        },
        body: body.as_bytes().to_vec(),
    };
    let get = |r: &Reply, path: &str| check_reply("get", path, r);
    assert!(get(
        &reply(200, "application/json", r#"{"total":0,"clients":[]}"#),
        "/api/v1/clients"
    )
    .is_ok());
    assert!(get(
        &reply(200, "application/json", r#"{"total":0}"#),
        "/api/v1/clients"
    )
    .is_err());
    assert!(get(
        &reply(200, "application/json", "not json"),
        "/api/v1/clients"
    )
    .is_err());
    assert!(get(
        &reply(418, "application/json", r#"{"error":"x"}"#),
        "/api/v1/clients"
    )
    .is_err());
    assert!(get(&reply(200, "text/html", "<html>"), "/api/v1/clients").is_err());
    assert!(get(&reply(200, "application/json", "{}"), "/api/v1/nowhere").is_err());
    // The 401 of the API must carry WWW-Authenticate.
    assert!(get(
        &reply(401, "application/json", r#"{"error":"x"}"#),
        "/api/v1/clients"
    )
    .is_err());
    let deleted = |body: &str| check_reply("delete", "/api/v1/sessions/x", &reply(204, "", body));
    assert!(deleted("").is_ok());
    assert!(deleted("{}").is_err(), "204 with a body");
}

// ---------------------------------------------------------------------------------------------
// openapi.json: lookup and validation
// ---------------------------------------------------------------------------------------------

/// (method, path template, status, media type or "" without a body).
type Observed = (String, String, u16, String);

/// What the scenarios saw, shared between them.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<Mutex<BTreeSet<Observed>>>);

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_json::from_str(midge_server::http::OPENAPI).expect("openapi.json is JSON")
    })
}

fn pointer(r: &str) -> Option<&'static Value> {
    spec().pointer(r.strip_prefix('#')?)
}

/// `v`, or what its `$ref` (chain) points to.
fn resolve(v: &Value) -> &Value {
    let mut v = v;
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = pointer(r).unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => return v,
        }
    }
    panic!("$ref chain too long at {v}")
}

/// Every (method, path template) of the description.
fn operations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((method.clone(), path.clone()));
        }
    }
    out
}

/// Every (method, template, status, media type) the description documents.
fn documented() -> BTreeSet<Observed> {
    let mut out = BTreeSet::new();
    for (method, template) in operations() {
        let responses = spec()["paths"][&template][&method]["responses"]
            .as_object()
            .unwrap();
        for (status, response) in responses {
            let status: u16 = status.parse().unwrap();
            match resolve(response).get("content").and_then(Value::as_object) {
                None => {
                    out.insert((method.clone(), template.clone(), status, String::new()));
                }
                Some(content) => {
                    for media in content.keys() {
                        out.insert((method.clone(), template.clone(), status, media.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The template of the description that a concrete path (query ignored) matches.
fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').collect();
    spec()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .find(|t| {
            let tsegs: Vec<&str> = t.split('/').collect();
            tsegs.len() == segs.len()
                && tsegs.iter().zip(&segs).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
}

/// Checks an answer against the description: status, media type, headers and body.
fn check_reply(method: &str, path: &str, reply: &Reply) -> Result<Observed, String> {
    let method = method.to_ascii_lowercase();
    let template = template_of(path).ok_or_else(|| format!("{path} is not described"))?;
    let responses = &spec()["paths"][template][&method]["responses"];
    let response = responses
        .get(reply.status.to_string())
        .map(resolve)
        .ok_or_else(|| {
            format!(
                "status {} is not documented: {}",
                reply.status,
                reply.text()
            )
        })?;
    for name in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|h| h.0)
    {
        if reply.header(name).is_none() {
            return Err(format!(
                "{} without the documented header {name}",
                reply.status
            ));
        }
    }
    let media = match response.get("content") {
        None if reply.body.is_empty() => String::new(),
        None => {
            return Err(format!(
                "{} with a body, documented without: {}",
                reply.status,
                reply.text()
            ))
        }
        Some(content) => {
            let media = reply.media_type();
            let entry = content.get(&media).ok_or_else(|| {
                format!(
                    "{} as `{media}`, which is not documented: {}",
                    reply.status,
                    reply.text()
                )
            })?;
            let body: Value = if media == "application/json" {
                serde_json::from_slice(&reply.body)
                    .map_err(|e| format!("not JSON ({e}): {}", reply.text()))?
            } else {
                Value::String(String::from_utf8(reply.body.clone()).map_err(|e| e.to_string())?)
            };
            let errors = validate(&entry["schema"], &body);
            if !errors.is_empty() {
                return Err(format!(
                    "{} body does not match the schema:\n  {}\n{body}",
                    reply.status,
                    errors.join("\n  ")
                ));
            }
            media
        }
    };
    Ok((method, template.to_string(), reply.status, media))
}

/// Where `v` breaks `schema` (empty: it does not).
fn validate(schema: &Value, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, v, "$", &mut errors);
    errors
}

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "format",
    "description",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "nullable",
    "minimum",
    "maximum",
    "default",
];

fn check(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    let Some(obj) = schema.as_object() else {
        errors.push(format!("{at}: the schema is not an object: {schema}"));
        return;
    };
    for k in obj.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            errors.push(format!("{at}: the validator does not know `{k}`"));
        }
    }
    if v.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            other => {
                errors.push(format!("{at}: unknown type {other}"));
                false
            }
        };
        if !ok {
            errors.push(format!("{at}: expected {t}, got {v}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            errors.push(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            errors.push(format!("{at}: {v} < minimum {min}"));
        }
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64()) {
        if n > max {
            errors.push(format!("{at}: {v} > maximum {max}"));
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                errors.push(format!("{at}: required `{r}` missing"));
            }
        }
        for (k, value) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, value, &format!("{at}.{k}"), errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{at}: unexpected `{k}`")),
                    Some(s @ Value::Object(_)) => check(s, value, &format!("{at}.{k}"), errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, item) in a.iter().enumerate() {
            check(items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

fn walk(v: &Value, f: &mut impl FnMut(&Value)) {
    f(v);
    match v {
        Value::Object(o) => o.values().for_each(|v| walk(v, f)),
        Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        _ => {}
    }
}

/// Every keyword of `schema` (and of what it contains) is one the validator checks.
fn known_keywords(schema: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(o) = schema.as_object() else { return };
    for (k, v) in o {
        if !KEYWORDS.contains(&k.as_str()) {
            errors.push(format!("{at}: keyword `{k}` is outside the validator"));
        }
        match k.as_str() {
            "properties" => {
                for (name, s) in v.as_object().into_iter().flatten() {
                    known_keywords(s, &format!("{at}.{name}"), errors);
                }
            }
            "items" => known_keywords(v, &format!("{at}[]"), errors),
            _ => {}
        }
    }
}

/// Every object in `schema` has `additionalProperties: false` and requires all its keys.
fn closed_and_complete(schema: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    if schema["type"] == "object" {
        if schema["additionalProperties"] != false {
            errors.push(format!("{at}: no additionalProperties: false"));
        }
        let props: BTreeSet<&str> = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|p| p.0.as_str())
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if props != required {
            errors.push(format!(
                "{at}: required {required:?} != properties {props:?}"
            ));
        }
        for (name, s) in schema["properties"].as_object().into_iter().flatten() {
            if s.get("$ref").is_none() {
                closed_and_complete(s, &format!("{at}.{name}"), errors);
            }
        }
    }
    if let Some(items) = schema.get("items") {
        if items.get("$ref").is_none() {
            closed_and_complete(items, &format!("{at}[]"), errors);
        }
    }
}

/// The (method, path) of every `.route("...", get(..).delete(..))` call in `src`.
fn parse_routes(src: &str) -> BTreeSet<(String, String)> {
    const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call's arguments: up to the parenthesis that closes `.route(`.
        let (mut depth, mut in_str, mut end) = (1, false, rest.len());
        for (j, c) in rest.char_indices() {
            match c {
                '"' => in_str = !in_str,
                '(' if !in_str => depth += 1,
                ')' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        let mut parts = args.splitn(3, '"');
        let (Some(_), Some(path), Some(handlers)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("a route without a string path: {args}");
        };
        for m in METHODS {
            for (k, _) in handlers.match_indices(&format!("{m}(")) {
                let before = handlers[..k].chars().last();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    out.insert((m.to_string(), path.to_string()));
                }
            }
        }
        rest = &rest[end..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The HTTP side: a small HTTP/1.1 client, credentials, the checked API caller, SSE
// ---------------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type without parameters (`text/plain`); "" without Content-Type.
    fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.status, self.text()))
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let method = method.to_ascii_uppercase();
    let raw = tokio::time::timeout(WAIT, async {
        let mut s = TcpStream::connect(addr).await.expect("connect to the HTTP listener");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // The server may answer and close before it reads a body it refuses: a failed write
        // is not the test's concern, the answer is.
        if s.write_all(head.as_bytes()).await.is_ok() {
            let _ = s.write_all(body).await;
        }
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        raw
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {target}: no complete answer within {WAIT:?}"));
    let fail = |e: String| -> ! {
        panic!(
            "{method} {target}: {e}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    };
    let Some(head) = parse_head(&raw).unwrap_or_else(|e| fail(e)) else {
        fail("the connection closed before the header ended".into())
    };
    let (status, headers, start) = head;
    let rest = &raw[start..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    reply.body = if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let (data, _, last) = dechunk(rest).unwrap_or_else(|e| fail(e));
        if !last {
            fail("the chunked body ended early".into());
        }
        data
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len
            .parse()
            .unwrap_or_else(|_| fail("bad Content-Length".into()));
        if rest.len() < len {
            fail(format!("{} of {len} body bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    reply
}

/// Status, headers and where the body starts; `None` until the header is complete.
type Head = (u16, Vec<(String, String)>, usize);

fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| format!("bad header {l:?}"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect::<Result<_, String>>()?;
    Ok(Some((status, headers, end + 4)))
}

/// The complete chunks at the start of `buf`: their data, the bytes they took, and
/// whether the last (empty) chunk was among them.
fn dechunk(buf: &[u8]) -> Result<(Vec<u8>, usize, bool), String> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok((data, at, false));
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|e| e.to_string())?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        let start = at + eol + 2;
        if size == 0 {
            return Ok((data, start, true));
        }
        if buf.len() < start + size + 2 {
            return Ok((data, at, false));
        }
        data.extend_from_slice(&buf[start..start + size]);
        at = start + size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How a request presents itself.
#[derive(Debug, Clone)]
enum Cred {
    Nothing,
    Bearer(String),
    Query(String),
    Basic(String, String),
    /// A Bearer header and a `?token=`.
    BearerAndQuery(String, String),
    /// Any header.
    Header(String, String),
}

/// Calls the API of one server with one set of credentials; every answer is checked
/// against the description and recorded.
#[derive(Debug, Clone)]
struct Api {
    addr: SocketAddr,
    cred: Cred,
    seen: Seen,
}

impl Api {
    fn with(&self, cred: Cred) -> Api {
        Api {
            cred,
            ..self.clone()
        }
    }

    fn target(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        match &self.cred {
            Cred::Query(t) | Cred::BearerAndQuery(_, t) => format!("{path}{sep}token={}", enc(t)),
            _ => path.to_string(),
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let auth = |v: String| vec![("Authorization".to_string(), v)];
        match &self.cred {
            Cred::Nothing | Cred::Query(_) => Vec::new(),
            Cred::Bearer(t) | Cred::BearerAndQuery(t, _) => auth(format!("Bearer {t}")),
            Cred::Basic(u, p) => auth(format!("Basic {}", B64.encode(format!("{u}:{p}")))),
            Cred::Header(k, v) => vec![(k.clone(), v.clone())],
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let mut headers = self.headers();
        if let Some(ct) = content_type {
            headers.push(("Content-Type".into(), ct.into()));
        }
        let reply = http(self.addr, method, &self.target(path), &headers, body).await;
        match check_reply(method, path, &reply) {
            Ok(o) => {
                self.seen.0.lock().unwrap().insert(o);
            }
            Err(e) => panic!("{} {path} ({:?}): {e}", method.to_uppercase(), self.cred),
        }
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("get", path, None, b"").await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("delete", path, None, b"").await
    }

    async fn post(&self, path: &str, body: Option<&Value>) -> Reply {
        match body {
            Some(b) => {
                self.send(
                    "post",
                    path,
                    Some("application/json"),
                    &serde_json::to_vec(b).unwrap(),
                )
                .await
            }
            None => self.send("post", path, None, b"").await,
        }
    }

    /// A GET that must answer 200: its JSON.
    async fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// GETs `path` until its JSON satisfies `done` (bounded by [`WAIT`]).
    async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.get_ok(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last GET {path}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GETs `path` until it answers `status` (bounded by [`WAIT`]).
    async fn until_status(&self, path: &str, status: u16, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.get(path).await;
            if r.status == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last GET {path}: {}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Opens an event stream (GET that must answer 200 `text/event-stream`).
    async fn watch(&self, path: &str) -> EventStream {
        let target = self.target(path);
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(self.addr))
            .await
            .expect("connect timed out")
            .expect("connect to the HTTP listener");
        let mut head = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            self.addr
        );
        for (k, v) in self.headers() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let deadline = Instant::now() + WAIT;
        let (status, headers, start) = loop {
            if let Some(h) = parse_head(&raw).unwrap() {
                break h;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("GET {path}: no answer within {WAIT:?}"))
                .unwrap();
            assert!(n > 0, "GET {path}: closed before the header");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        assert_eq!(
            status,
            200,
            "GET {path}: {:?}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(head.media_type(), "text/event-stream");
        // The body never ends: check the status and media type against the description,
        // the events one by one as they come.
        let template = template_of(path).unwrap();
        let media =
            &spec()["paths"][template]["get"]["responses"]["200"]["content"]["text/event-stream"];
        assert!(
            media.is_object(),
            "{template}: 200 text/event-stream not documented"
        );
        self.seen.0.lock().unwrap().insert((
            "get".into(),
            template.into(),
            200,
            "text/event-stream".into(),
        ));
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut s = EventStream {
            stream,
            raw: raw[start..].to_vec(),
            chunked,
            text: Vec::new(),
            events: media["x-event-data"].clone(),
        };
        s.decode();
        s
    }
}

/// A Server-Sent Events stream being read.
#[derive(Debug)]
struct EventStream {
    stream: TcpStream,
    /// Bytes read and not yet decoded (an incomplete chunk).
    raw: Vec<u8>,
    chunked: bool,
    /// Decoded event text not yet consumed.
    text: Vec<u8>,
    /// The schema of each event's data, by event name (`x-event-data` of the description).
    events: Value,
}

impl EventStream {
    fn decode(&mut self) {
        if self.chunked {
            let (data, used, last) = dechunk(&self.raw).unwrap();
            assert!(!last, "the event stream ended");
            self.raw.drain(..used);
            self.text.extend_from_slice(&data);
        } else {
            self.text.append(&mut self.raw);
        }
    }

    /// The next event with data (comments and keep-alives skipped): its name and its data,
    /// checked against the description.
    async fn next_event(&mut self) -> (String, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(end) = find(&self.text, b"\n\n") {
                let block: Vec<u8> = self.text.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                let mut event = "message".to_string();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&data.join("\n")).unwrap();
                let schema = self
                    .events
                    .get(&event)
                    .unwrap_or_else(|| panic!("event `{event}` is not documented"));
                let errors = validate(schema, &value);
                assert!(
                    errors.is_empty(),
                    "event `{event}` {value}:\n{}",
                    errors.join("\n")
                );
                return (event, value);
            }
            let mut buf = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))
                .unwrap();
            assert!(n > 0, "the event stream closed");
            self.raw.extend_from_slice(&buf[..n]);
            self.decode();
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    field(list, "client_id")
}

fn topics(list: &Value) -> Vec<String> {
    field(list, "topic")
}

fn field(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap().to_string())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A directory of its own under the system's temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("midge-admin-api-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// One MQTT listener and the HTTP listener, both on 127.0.0.1:0, with [`TOKEN`].
fn base_config(dir: &TempDir) -> ServerConfig {
    ServerConfig {
        listeners: vec![ListenerConfig::tcp(loopback())],
        http: Some(HttpConfig {
            addr: loopback(),
            token: Some(TOKEN.into()),
            token_file: dir.path("admin.token"),
            password_file: None,
            users: Vec::new(),
            metrics_require_auth: false,
        }),
        ..ServerConfig::default()
    }
}

#[derive(Debug)]
struct TestServer {
    server: RunningServer,
    mqtt: SocketAddr,
    /// The API with the Bearer token.
    api: Api,
    _dir: TempDir,
}

impl TestServer {
    fn new(server: RunningServer, seen: &Seen, dir: TempDir) -> TestServer {
        let mqtt = server.local_addrs[0];
        let addr = server.http_addr.expect("the HTTP listener is bound");
        assert!(mqtt.ip().is_loopback() && addr.ip().is_loopback());
        TestServer {
            server,
            mqtt,
            api: Api {
                addr,
                cred: Cred::Bearer(TOKEN.into()),
                seen: seen.clone(),
            },
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.server.shutdown(Duration::from_secs(3)).await;
    }
}

async fn start(seen: &Seen, dir: TempDir, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = base_config(&dir);
    tweak(&mut config);
    let server = Server::bind(config)
        .await
        .expect("bind on 127.0.0.1:0")
        .start();
    TestServer::new(server, seen, dir)
}

// ---------------------------------------------------------------------------------------------
// MQTT clients: rumqttc 3.1.1 and 5.0, each with its event loop in a task
// ---------------------------------------------------------------------------------------------

/// How a client's connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server sent DISCONNECT with this reason code (5.0).
    Disconnect(u8),
    /// The server closed the connection.
    Closed,
    Other(String),
}

fn closed_kind(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe
    )
}

/// The incoming packets of one connection; aborting its task on drop drops the socket
/// without DISCONNECT.
#[derive(Debug)]
struct Conn<P> {
    name: String,
    rx: mpsc::UnboundedReceiver<Result<P, Ended>>,
    buffered: VecDeque<P>,
    ended: Option<Ended>,
    task: JoinHandle<()>,
}

impl<P> Drop for Conn<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<P: std::fmt::Debug> Conn<P> {
    /// The first packet matching `want`; others are kept for later.
    async fn next(&mut self, what: &str, want: impl Fn(&P) -> bool) -> P {
        if let Some(i) = self.buffered.iter().position(&want) {
            return self.buffered.remove(i).unwrap();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: no {what} within {WAIT:?}; got {:?}",
                        self.name, self.buffered
                    )
                });
            match got {
                Some(Ok(p)) if want(&p) => return p,
                Some(Ok(p)) => self.buffered.push_back(p),
                Some(Err(e)) => panic!(
                    "{}: connection ended ({e:?}) while waiting for {what}",
                    self.name
                ),
                None => panic!("{}: event loop gone while waiting for {what}", self.name),
            }
        }
    }

    /// How the connection ends (packets before the end are kept).
    async fn ended(&mut self) -> Ended {
        if let Some(e) = self.ended.take() {
            return e;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: still connected after {WAIT:?}", self.name));
            match got {
                Some(Ok(p)) => self.buffered.push_back(p),
                Some(Err(e)) => return e,
                None => panic!("{}: event loop gone without an error", self.name),
            }
        }
    }

    /// Asserts that no packet but acknowledgements and pings comes within [`QUIET`].
    async fn quiet(&mut self, what: &str)
    where
        P: Quiet,
    {
        let deadline = Instant::now() + QUIET;
        while let Ok(got) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            match got {
                Some(Ok(p)) if p.is_noise() => {}
                Some(Ok(p)) => panic!("{}: expected no {what}, got {p:?}", self.name),
                Some(Err(e)) => {
                    self.ended = Some(e);
                    return;
                }
                None => return,
            }
        }
        if let Some(p) = self.buffered.iter().find(|p| !p.is_noise()) {
            panic!("{}: expected no {what}, got {p:?}", self.name);
        }
    }

    /// Waits for the event loop to stop after a DISCONNECT was sent.
    async fn finish(&mut self) {
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("{}: DISCONNECT not sent within {WAIT:?}", self.name))
            .unwrap();
    }
}

/// Packets that [`Conn::quiet`] ignores.
trait Quiet {
    fn is_noise(&self) -> bool;
}

impl Quiet for rumqttc::Packet {
    fn is_noise(&self) -> bool {
        use rumqttc::Packet::*;
        matches!(
            self,
            PubAck(_) | PubRec(_) | PubRel(_) | PubComp(_) | SubAck(_) | PingResp
        )
    }
}

impl Quiet for rumqttc::v5::mqttbytes::v5::Packet {
    fn is_noise(&self) -> bool {
        use rumqttc::v5::mqttbytes::v5::Packet::*;
        matches!(
            self,
            PubAck(_) | PubRec(_) | PubRel(_) | PubComp(_) | SubAck(_) | PingResp(_)
        )
    }
}

fn v4_options(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn v5_options(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn v5qos(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// A rumqttc 3.1.1 client.
#[derive(Debug)]
struct V4 {
    client: rumqttc::AsyncClient,
    conn: Conn<rumqttc::Packet>,
    session_present: bool,
}

impl V4 {
    async fn connect(o: rumqttc::MqttOptions) -> V4 {
        use rumqttc::{ConnectionError as E, Event, Outgoing, StateError};
        let name = o.client_id();
        let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let item = match el.poll().await {
                    Ok(Event::Incoming(p)) => Ok(p),
                    // Sent: stop, so that rumqttc does not reconnect.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(Event::Outgoing(_)) => continue,
                    Err(E::MqttState(StateError::ConnectionAborted)) => Err(Ended::Closed),
                    Err(E::MqttState(StateError::Io(ref e)) | E::Io(ref e)) if closed_kind(e) => {
                        Err(Ended::Closed)
                    }
                    Err(e) => Err(Ended::Other(e.to_string())),
                };
                let last = item.is_err();
                if tx.send(item).is_err() || last {
                    return;
                }
            }
        });
        let mut conn = Conn {
            name,
            rx,
            buffered: VecDeque::new(),
            ended: None,
            task,
        };
        let rumqttc::Packet::ConnAck(ack) = conn
            .next("CONNACK", |p| matches!(p, rumqttc::Packet::ConnAck(_)))
            .await
        else {
            unreachable!()
        };
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::Success,
            "{}",
            conn.name
        );
        V4 {
            client,
            conn,
            session_present: ack.session_present,
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        let rumqttc::Packet::SubAck(ack) = self
            .conn
            .next("SUBACK", |p| matches!(p, rumqttc::Packet::SubAck(_)))
            .await
        else {
            unreachable!()
        };
        assert!(
            ack.return_codes
                .iter()
                .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
            "{}: {ack:?}",
            self.conn.name
        );
    }

    /// Publishes; at QoS 1 waits for the PUBACK (QoS 2 is not used from this side).
    async fn publish(&mut self, topic: &str, qos: rumqttc::QoS, retain: bool, payload: Vec<u8>) {
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .unwrap();
        if qos == rumqttc::QoS::AtLeastOnce {
            self.conn
                .next("PUBACK", |p| matches!(p, rumqttc::Packet::PubAck(_)))
                .await;
        }
    }

    async fn recv(&mut self) -> rumqttc::Publish {
        match self
            .conn
            .next("PUBLISH", |p| matches!(p, rumqttc::Packet::Publish(_)))
            .await
        {
            rumqttc::Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// A normal DISCONNECT.
    async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.conn.finish().await;
    }
}

/// A rumqttc 5.0 client.
#[derive(Debug)]
struct V5 {
    client: rumqttc::v5::AsyncClient,
    conn: Conn<rumqttc::v5::mqttbytes::v5::Packet>,
    session_present: bool,
}

impl V5 {
    async fn connect(o: rumqttc::v5::MqttOptions) -> V5 {
        use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
        use rumqttc::v5::{ConnectionError as E, Event, StateError};
        let name = o.client_id();
        let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let item = match el.poll().await {
                    Ok(Event::Incoming(p)) => Ok(p),
                    // Sent: stop, so that rumqttc does not reconnect.
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(Event::Outgoing(_)) => continue,
                    Err(E::MqttState(StateError::ServerDisconnect { reason_code, .. })) => {
                        Err(Ended::Disconnect(reason_code as u8))
                    }
                    Err(E::MqttState(StateError::ConnectionAborted)) => Err(Ended::Closed),
                    Err(E::MqttState(StateError::Io(ref e))) if closed_kind(e) => {
                        Err(Ended::Closed)
                    }
                    Err(e) => Err(Ended::Other(e.to_string())),
                };
                let last = item.is_err();
                if tx.send(item).is_err() || last {
                    return;
                }
            }
        });
        let mut conn = Conn {
            name,
            rx,
            buffered: VecDeque::new(),
            ended: None,
            task,
        };
        let Packet::ConnAck(ack) = conn
            .next("CONNACK", |p| matches!(p, Packet::ConnAck(_)))
            .await
        else {
            unreachable!()
        };
        assert_eq!(ack.code, ConnectReturnCode::Success, "{}", conn.name);
        V5 {
            client,
            conn,
            session_present: ack.session_present,
        }
    }

    async fn suback(&mut self) {
        use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
        let Packet::SubAck(ack) = self
            .conn
            .next("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await
        else {
            unreachable!()
        };
        assert!(
            ack.return_codes
                .iter()
                .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
            "{}: {ack:?}",
            self.conn.name
        );
    }

    async fn subscribe(&mut self, filter: &str, qos: rumqttc::v5::mqttbytes::QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        self.suback().await;
    }

    /// Publishes; at QoS 1 waits for the PUBACK.
    async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        retain: bool,
        payload: Vec<u8>,
    ) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .unwrap();
        if qos == v5qos(1) {
            self.conn
                .next("PUBACK", |p| matches!(p, Packet::PubAck(_)))
                .await;
        }
    }

    async fn recv(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        use rumqttc::v5::mqttbytes::v5::Packet;
        match self
            .conn
            .next("PUBLISH", |p| matches!(p, Packet::Publish(_)))
            .await
        {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// A normal DISCONNECT.
    async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.conn.finish().await;
    }
}

/// A 3.1.1 connection made by hand, for the one check that needs the client's own
/// address: CONNECT (clean session), CONNACK 0 asserted; the socket is returned open.
async fn raw_connect_311(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
    username: Option<&str>,
) -> TcpStream {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    body.push(0x02 | if username.is_some() { 0x80 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    for s in std::iter::once(client_id).chain(username) {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    assert!(body.len() < 128, "one-byte remaining length");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    s
}
