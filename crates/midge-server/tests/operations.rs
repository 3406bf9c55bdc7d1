//! Operating a running broker (issue 7): `$SYS` topic values and their ACL, each metric of
//! `/metrics` moving when its event happens, live reload of each kind with connected clients
//! staying, and each limit enforced with the right reason code. A real server on
//! 127.0.0.1:0 per test, raw MQTT clients, and `/metrics` read over real HTTP.

#![allow(clippy::unwrap_used)]

mod auth_support;
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auth_support::{login, password_text, temp_file};
use common::*;
use midge_codec::{Packet, ReasonCode};
use midge_server::config::{HttpConfig, RateLimits};
use midge_server::{ListenerConfig, RunningServer, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "operations-test-token";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn http_config() -> HttpConfig {
    HttpConfig {
        addr: loopback(),
        token: Some(TOKEN.into()),
        token_file: "unused.token".into(),
        password_file: None,
        users: Vec::new(),
        metrics_require_auth: false,
    }
}

async fn run(config: ServerConfig) -> RunningServer {
    Server::bind(config).await.unwrap().start()
}

/// A server with one plain listener and HTTP, after `f` adjusts the config.
async fn server(f: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut c = ServerConfig {
        listeners: vec![ListenerConfig::tcp(loopback())],
        http: Some(http_config()),
        ..ServerConfig::default()
    };
    f(&mut c);
    run(c).await
}

/// GET over HTTP/1.1; returns status and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Every sample of `/metrics`, by name with labels (`name{l="v"}`).
async fn metrics(s: &RunningServer) -> HashMap<String, f64> {
    let (status, body) = http_get(s.http_addr.unwrap(), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

async fn metric(s: &RunningServer, name: &str) -> f64 {
    *metrics(s)
        .await
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Waits until metric `name` satisfies `cond`.
async fn metric_until(s: &RunningServer, name: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(s, name).await;
        if cond(v) {
            return v;
        }
        assert!(start.elapsed() < TIMEOUT, "{name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------------------------

/// Reads retained `$SYS` messages until `topic` has a value satisfying `cond`.
async fn sys_value(c: &mut Client, topic: &str, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{topic} never satisfied the condition"
        );
        let p = c.recv_publish().await;
        if p.topic.as_ref().map(|t| t.as_str()) == Some(topic) {
            let v = String::from_utf8(p.payload.to_vec()).unwrap();
            if cond(&v) {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn sys_topics_have_mosquitto_names_and_values() {
    let s = server(|c| c.sys_interval = Some(Duration::from_millis(200))).await;
    let addr = s.local_addrs[0];
    let mut watcher = Client::v311(addr, "sys-watcher").await;
    watcher.subscribe("$SYS/#", Q0).await;
    let num = |v: &str| v.parse::<f64>().unwrap();
    assert_eq!(
        sys_value(&mut watcher, "$SYS/broker/version", |_| true).await,
        format!("midge version {}", env!("CARGO_PKG_VERSION"))
    );
    let uptime = sys_value(&mut watcher, "$SYS/broker/uptime", |_| true).await;
    assert!(uptime.ends_with(" seconds"), "{uptime}");
    sys_value(&mut watcher, "$SYS/broker/clients/connected", |v| v == "1").await;
    // A persistent session that goes offline: total 2, disconnected 1.
    let mut p = Client::connect_ok(addr, {
        let mut c = connect_packet(V311, "sys-offline");
        c.clean_start = false;
        c
    })
    .await
    .0;
    p.subscribe("sys/x", Q1).await;
    p.disconnect().await;
    sys_value(&mut watcher, "$SYS/broker/clients/total", |v| v == "2").await;
    sys_value(&mut watcher, "$SYS/broker/clients/disconnected", |v| {
        v == "1"
    })
    .await;
    sys_value(&mut watcher, "$SYS/broker/clients/maximum", |v| {
        num(v) >= 2.0
    })
    .await;
    sys_value(&mut watcher, "$SYS/broker/subscriptions/count", |v| {
        v == "2"
    })
    .await;
    // Three QoS 1 messages for the offline session: received 3, stored 3.
    let mut publisher = Client::v311(addr, "sys-publisher").await;
    for i in 0..3u16 {
        publisher
            .publish_flow(publish("sys/x", Q1, i + 1, b"payload"))
            .await;
    }
    publisher
        .publish_flow(retained("sys/r", Q0, 0, b"kept"))
        .await;
    sys_value(&mut watcher, "$SYS/broker/messages/received", |v| v == "4").await;
    sys_value(&mut watcher, "$SYS/broker/publish/messages/received", |v| {
        v == "4"
    })
    .await;
    sys_value(&mut watcher, "$SYS/broker/store/messages/count", |v| {
        v == "3"
    })
    .await;
    sys_value(&mut watcher, "$SYS/broker/store/messages/bytes", |v| {
        num(v) >= 21.0
    })
    .await;
    // The retained count includes the broker's own $SYS messages, as in mosquitto.
    sys_value(&mut watcher, "$SYS/broker/retained messages/count", |v| {
        num(v) > 30.0
    })
    .await;
    sys_value(&mut watcher, "$SYS/broker/bytes/received", |v| num(v) > 0.0).await;
    sys_value(&mut watcher, "$SYS/broker/bytes/sent", |v| num(v) > 0.0).await;
    sys_value(&mut watcher, "$SYS/broker/messages/sent", |v| num(v) > 0.0).await;
    sys_value(&mut watcher, "$SYS/broker/heap/current", |v| num(v) > 0.0).await;
    sys_value(&mut watcher, "$SYS/broker/heap/maximum", |v| num(v) > 0.0).await;
    sys_value(
        &mut watcher,
        "$SYS/broker/load/messages/received/1min",
        |v| num(v) > 0.0,
    )
    .await;
    sys_value(&mut watcher, "$SYS/broker/load/connections/5min", |v| {
        num(v) > 0.0
    })
    .await;
    // Expiry: mosquitto's clients/expired counts sessions that expired.
    let stored = s.broker.session("sys-offline").unwrap();
    assert_eq!(stored.lock().queued_len(), 3);
}

#[tokio::test]
async fn sys_topics_follow_the_acl() {
    let acl = temp_file(
        "acl",
        "user admin\ntopic read $SYS/#\n\nuser bob\ntopic readwrite bob/#\n",
    );
    let s = server(|c| {
        c.sys_interval = Some(Duration::from_millis(100));
        c.listeners[0].acl_file = Some(acl);
    })
    .await;
    let addr = s.local_addrs[0];
    let (mut admin, _) =
        Client::connect_ok(addr, login(V311, "admin-1", Some("admin"), None)).await;
    let (mut bob, _) = Client::connect_ok(addr, login(V311, "bob-1", Some("bob"), None)).await;
    admin.subscribe("$SYS/broker/uptime", Q0).await;
    let p = admin.recv_publish().await;
    assert_eq!(p.topic.unwrap().as_str(), "$SYS/broker/uptime");
    // bob has no read permission: his subscription is refused and nothing arrives while
    // several intervals pass.
    let ack = bob
        .subscribe_with(1, vec![subscription("$SYS/#", opts(Q0))])
        .await;
    assert_eq!(ack.codes, vec![ReasonCode::UnspecifiedError]);
    bob.expect_nothing_for(Duration::from_millis(500)).await;
    bob.ping().await;
}

#[tokio::test]
async fn sys_interval_zero_publishes_nothing() {
    let s = server(|c| c.sys_interval = None).await;
    let mut c = Client::v311(s.local_addrs[0], "no-sys").await;
    c.subscribe("$SYS/#", Q0).await;
    c.expect_nothing_for(Duration::from_millis(500)).await;
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_move_with_their_events() {
    let pass = temp_file("passwd", &password_text(&[("alice", "wonderland")]));
    let s = server(|c| {
        c.listeners[0].password_file = Some(pass);
        c.listeners[0].allow_anonymous = true;
        c.auth.failed_login_delay = Duration::from_millis(10);
        c.broker.max_queued_messages = 2;
        c.broker.max_inflight = 1;
    })
    .await;
    let addr = s.local_addrs[0];
    let m0 = metrics(&s).await;
    assert_eq!(m0["midge_clients_connected"], 0.0);
    assert_eq!(m0["midge_connects_total"], 0.0);
    assert!(m0["process_resident_memory_bytes"] > 0.0);
    assert!(m0["process_open_fds"] > 0.0);
    assert!(m0.contains_key("process_cpu_seconds_total"));
    assert!(m0["midge_memory_budget_bytes"] > 0.0);
    assert_eq!(m0["midge_memory_paused"], 0.0);

    // Connects, subscriptions, messages in and out by QoS, bytes.
    let mut sub = Client::v5(addr, "m-sub").await;
    sub.subscribe("m/#", Q2).await;
    metric_until(&s, "midge_clients_connected", |v| v == 1.0).await;
    assert_eq!(metric(&s, "midge_connects_total").await, 1.0);
    assert_eq!(metric(&s, "midge_subscriptions").await, 1.0);
    let mut publisher = Client::v5(addr, "m-pub").await;
    publisher.publish("m/a", Q1, b"one").await;
    let p = sub.recv_publish().await;
    sub.ack_publish(&p).await;
    let m = metrics(&s).await;
    assert_eq!(m["midge_messages_received_total{qos=\"1\"}"], 1.0);
    assert_eq!(m["midge_messages_sent_total{qos=\"1\"}"], 1.0);
    assert_eq!(m["midge_publish_payload_bytes_received_total"], 3.0);
    assert!(m["midge_bytes_received_total"] > m0["midge_bytes_received_total"]);
    assert!(m["midge_bytes_sent_total"] > m0["midge_bytes_sent_total"]);
    publisher.publish("m/b", Q0, b"zero").await;
    sub.recv_publish().await;
    assert_eq!(
        metric_until(&s, "midge_messages_sent_total{qos=\"0\"}", |v| v == 1.0).await,
        1.0
    );

    // Retained gauge; unrouted counter.
    publisher.publish_flow(retained("m/r", Q0, 0, b"r")).await;
    sub.recv_publish().await;
    metric_until(&s, "midge_retained_messages", |v| v == 1.0).await;
    publisher.publish("nobody/listens", Q0, b"x").await;
    metric_until(&s, "midge_messages_unrouted_total", |v| v == 1.0).await;

    // Queue full (limit 2, inflight 1): an offline persistent session gets 4 QoS 1 messages.
    let (mut slow, _) = Client::connect_ok(
        addr,
        connect_v5_with("m-slow", |c| {
            c.clean_start = false;
            c.properties.session_expiry_interval = Some(600);
        }),
    )
    .await;
    slow.subscribe("q/#", Q1).await;
    slow.disconnect().await;
    for i in 0..4u16 {
        publisher
            .publish_flow(publish("q/x", Q1, i + 1, b"queued"))
            .await;
    }
    metric_until(
        &s,
        "midge_messages_dropped_total{cause=\"queue_full\"}",
        |v| v == 2.0,
    )
    .await;
    assert_eq!(metric(&s, "midge_queued_messages").await, 2.0);
    assert!(metric(&s, "midge_queued_bytes").await >= 12.0);
    assert_eq!(metric(&s, "midge_sessions").await, 3.0);

    // Disconnect reasons: normal, protocol error, kicked, connection lost.
    metric_until(
        &s,
        "midge_disconnects_total{reason=\"client_disconnect\"}",
        |v| v == 1.0,
    )
    .await;
    let mut bad = Client::v311(addr, "m-bad").await;
    // SUBSCRIBE without packet id or payload: malformed.
    bad.send_raw(&[0x82, 0x00]).await;
    bad.expect_closed().await;
    metric_until(
        &s,
        "midge_disconnects_total{reason=\"protocol_error\"}",
        |v| v >= 1.0,
    )
    .await;
    let mut victim = Client::v5(addr, "m-victim").await;
    assert!(s.broker.kick("m-victim"));
    victim
        .expect_disconnect(ReasonCode::AdministrativeAction)
        .await;
    metric_until(&s, "midge_disconnects_total{reason=\"kicked\"}", |v| {
        v == 1.0
    })
    .await;
    let lost = Client::v311(addr, "m-lost").await;
    lost.drop_connection();
    metric_until(
        &s,
        "midge_disconnects_total{reason=\"connection_lost\"}",
        |v| v >= 1.0,
    )
    .await;

    // Authentication failures and refused connects.
    let (_c, ack) =
        Client::connect_with(addr, login(V5, "m-intruder", Some("alice"), Some(b"wrong"))).await;
    assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword);
    metric_until(&s, "midge_auth_failures_total", |v| v == 1.0).await;
    assert!(metric(&s, "midge_connects_refused_total").await >= 1.0);

    // ACL drops.
    let m = metrics(&s).await;
    assert_eq!(m["midge_messages_dropped_total{cause=\"acl\"}"], 0.0);
    assert!(m["midge_uptime_seconds"] >= 0.0);
}

#[tokio::test]
async fn store_metrics_count_commits() {
    let dir = std::env::temp_dir().join(unique_id("midge-ops-store"));
    let s = server(|c| {
        c.storage = Some(midge_server::config::StorageConfig {
            data_dir: dir.clone(),
            policy: midge_storage::SyncPolicy::EveryCommit,
            engine: Default::default(),
            recover_empty: false,
        });
    })
    .await;
    let addr = s.local_addrs[0];
    let (mut c, _) = Client::connect_ok(
        addr,
        connect_v5_with("store-m", |c| {
            c.properties.session_expiry_interval = Some(60);
        }),
    )
    .await;
    c.subscribe("s/#", Q1).await;
    c.publish("s/a", Q1, b"durable").await;
    metric_until(&s, "midge_store_commits_total", |v| v >= 1.0).await;
    assert!(metric(&s, "midge_store_ops_total").await >= 1.0);
    assert!(metric(&s, "midge_store_commit_seconds_total").await > 0.0);
    assert_eq!(metric(&s, "midge_store_commit_failures_total").await, 0.0);
    s.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_adds_and_removes_listeners_and_keeps_clients() {
    let s = server(|_| {}).await;
    let first = s.local_addrs[0];
    let mut stays = Client::v311(first, "stays").await;
    // Add a listener (the first one is matched by its configured address, port 0).
    let mut c = s.control.config.lock().clone();
    let second_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    c.listeners.push(ListenerConfig::tcp(second_addr));
    let report = s.control.reload_with(c.clone()).await.unwrap();
    assert!(report.iter().any(|r| r.contains("added")), "{report:?}");
    let mut on_second = Client::v311(second_addr, "on-second").await;
    on_second.ping().await;
    stays.ping().await;
    // Remove the second: its client is disconnected, the first keeps its client.
    c.listeners.pop();
    let report = s.control.reload_with(c).await.unwrap();
    assert!(report.iter().any(|r| r.contains("removed")), "{report:?}");
    on_second.expect_closed().await;
    assert!(tokio::net::TcpStream::connect(second_addr).await.is_err());
    stays.ping().await;
}

#[tokio::test]
async fn reload_changes_a_listeners_kind_on_the_same_socket() {
    let s = server(|_| {}).await;
    let addr = s.local_addrs[0];
    let mut stays = Client::v311(addr, "stays").await;
    let mut c = s.control.config.lock().clone();
    c.listeners[0].kind = midge_server::config::ListenerKind::Ws;
    c.listeners[0].ws_path = "/mqtt".into();
    let report = s.control.reload_with(c).await.expect("reload");
    assert!(
        report.contains(&format!("listener ws://{addr} changed")),
        "{report:?}"
    );
    // The connection made over plain MQTT stays; new ones must speak WebSocket.
    stays.ping().await;
    let mut ws = tokio::net::TcpStream::connect(addr).await.unwrap();
    let upgrade = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    ws.write_all(upgrade.as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(TIMEOUT, ws.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // And back: plain MQTT again on the same socket.
    let mut c = s.control.config.lock().clone();
    c.listeners[0].kind = midge_server::config::ListenerKind::Mqtt;
    let report = s.control.reload_with(c).await.expect("reload");
    assert!(
        report.contains(&format!("listener mqtt://{addr} changed")),
        "{report:?}"
    );
    Client::v311(addr, "plain-again").await.ping().await;
    stays.ping().await;
}

#[tokio::test]
async fn lowered_protocol_limits_apply_from_a_clients_next_connection() {
    let s = server(|_| {}).await;
    let addr = s.local_addrs[0];
    let mut before = Client::v5(addr, "told-before").await;
    let mut sub = Client::v5(addr, "watcher").await;
    sub.subscribe("limits/#", Q0).await;
    let mut c = s.control.config.lock().clone();
    c.broker.max_qos = Q1;
    c.broker.topic_alias_maximum = 0;
    c.broker.receive_maximum = 1;
    s.control.reload_with(c).await.expect("reload");
    // Its CONNACK promised QoS 2, 64 aliases and 64 QoS 2 messages in flight: still so.
    let mut p = publish("limits/a", Q2, 7, b"aliased");
    p.properties.topic_alias = Some(nz16(5));
    let rec = before.publish_flow(p).await.expect("PUBREC");
    assert_eq!(rec.code, ReasonCode::Success);
    let mut p = publish("unused", Q2, 8, b"by alias");
    p.topic = None;
    p.properties.topic_alias = Some(nz16(5));
    before.send_publish(p).await;
    before
        .send_publish(publish("limits/b", Q2, 9, b"second"))
        .await;
    for id in [pid(8), pid(9)] {
        let rec = before
            .recv_matching("PUBREC", |p| match p {
                Packet::PubRec(a) if a.packet_id == id => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(rec.code, ReasonCode::Success, "{id}");
    }
    for payload in [&b"aliased"[..], b"by alias"] {
        assert_eq!(&sub.recv_publish().await.payload[..], payload);
    }
    // A client connecting now is told the new limits, and held to them.
    let (mut after, ack) = Client::connect_ok(addr, connect_packet(V5, "told-after")).await;
    assert_eq!(ack.properties.maximum_qos, Some(Q1));
    assert_eq!(ack.properties.topic_alias_maximum, None);
    assert_eq!(ack.properties.receive_maximum, Some(nz16(1)));
    after.send_publish(publish("limits/c", Q2, 1, b"x")).await;
    after.expect_disconnect(ReasonCode::QoSNotSupported).await;
}

/// A server whose listener has a password file (alice, password "one") and the ACL file
/// `acl`, and alice connected and subscribed to `news/#`.
async fn alice_under_acl(pass: &str, acl: &std::path::Path) -> (RunningServer, Client) {
    let pass = temp_file(pass, &password_text(&[("alice", "one")]));
    let s = server(|c| {
        c.listeners[0].password_file = Some(pass);
        c.listeners[0].acl_file = Some(acl.to_path_buf());
        c.auth.failed_login_delay = Duration::from_millis(10);
    })
    .await;
    let (mut alice, _) = Client::connect_ok(
        s.local_addrs[0],
        login(V311, "alice-1", Some("alice"), Some(b"one")),
    )
    .await;
    alice.subscribe("news/#", Q0).await;
    (s, alice)
}

#[tokio::test]
async fn reload_of_password_and_acl_files_applies_to_connected_clients() {
    let acl = temp_file("acl", "user alice\ntopic read news/#\n");
    let (s, mut alice) = alice_under_acl("passwd", &acl).await;
    let pass = s.control.config.lock().listeners[0]
        .password_file
        .clone()
        .unwrap();
    let addr = s.local_addrs[0];
    let mut publisher_login = login(V311, "alice-pub", Some("alice"), Some(b"one"));
    publisher_login.clean_start = true;
    let (mut publisher, _) = Client::connect_ok(addr, publisher_login).await;
    // alice may read news but not write it: the message is dropped.
    publisher.publish("news/a", Q0, b"denied").await;
    alice.expect_nothing().await;
    // New password and ACL contents; reload through the whole-config path.
    std::fs::write(&pass, password_text(&[("alice", "two")])).unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite news/#\n").unwrap();
    let c = s.control.config.lock().clone();
    s.control.reload_with(c).await.unwrap();
    publisher.publish("news/b", Q0, b"allowed").await;
    let p = alice.recv_publish().await;
    assert_eq!(&p.payload[..], b"allowed");
    let (_x, ack) =
        Client::connect_with(addr, login(V311, "alice-2", Some("alice"), Some(b"one"))).await;
    assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword);
    Client::connect_ok(addr, login(V311, "alice-3", Some("alice"), Some(b"two"))).await;
    alice.ping().await;
}

#[tokio::test]
async fn a_reload_that_changes_the_listener_and_its_acl_path_reaches_connected_clients() {
    let acl = temp_file("acl-old", "user alice\ntopic read news/#\n");
    let moved = temp_file("acl-new", "user alice\ntopic readwrite news/#\n");
    let (s, mut alice) = alice_under_acl("passwd-moved", &acl).await;
    alice.publish("news/a", Q0, b"denied").await;
    alice.expect_nothing().await;
    // Another ACL file and another listener key in one reload (an invalid reload before
    // it must leave the running files alone).
    let mut c = s.control.config.lock().clone();
    c.listeners[0].acl_file = Some(moved.clone());
    c.listeners[0].max_connections = Some(100);
    let mut broken = c.clone();
    broken.listeners[0].password_file = Some("/nonexistent/midge/passwd".into());
    s.control.reload_with(broken).await.unwrap_err();
    alice.publish("news/b", Q0, b"still denied").await;
    alice.expect_nothing().await;
    let report = s.control.reload_with(c).await.unwrap();
    assert!(report.iter().any(|r| r.contains("changed")), "{report:?}");
    // alice, connected before, now follows the new file.
    alice.publish("news/c", Q0, b"allowed").await;
    assert_eq!(&alice.recv_publish().await.payload[..], b"allowed");
    // And so do later reloads of that file's contents.
    std::fs::write(&moved, "user alice\ntopic read news/#\n").unwrap();
    let c = s.control.config.lock().clone();
    s.control.reload_with(c).await.unwrap();
    alice.publish("news/d", Q0, b"denied again").await;
    alice.expect_nothing().await;
}

#[tokio::test]
async fn invalid_reload_is_refused_as_a_whole() {
    let s = server(|_| {}).await;
    let mut stays = Client::v311(s.local_addrs[0], "stays").await;
    let old = s.control.config.lock().clone();
    let mut c = old.clone();
    let extra: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // A good new listener, a changed limit, and a listener whose password file is missing.
    c.listeners.push(ListenerConfig::tcp(extra));
    c.max_connections = 1;
    let mut broken = ListenerConfig::tcp(loopback());
    broken.password_file = Some("/nonexistent/midge/passwd".into());
    c.listeners.push(broken);
    let e = s.control.reload_with(c).await.unwrap_err();
    assert!(e.contains("/nonexistent/midge/passwd"), "{e}");
    assert!(tokio::net::TcpStream::connect(extra).await.is_err());
    assert_eq!(*s.control.config.lock(), old);
    // The old limit stays: a second client connects.
    Client::v311(s.local_addrs[0], "second").await.ping().await;
    stays.ping().await;
}

#[tokio::test]
async fn reload_changes_limits_and_broker_settings() {
    let s = server(|c| c.max_connections = 1).await;
    let addr = s.local_addrs[0];
    let mut first = Client::v311(addr, "first").await;
    let mut refused = Client::open(addr, V311).await;
    refused.expect_closed().await;
    let mut c = s.control.config.lock().clone();
    c.max_connections = 5;
    c.broker.max_qos = Q1;
    s.control.reload_with(c).await.unwrap();
    let (mut second, ack) = Client::connect_ok(addr, connect_packet(V5, "second")).await;
    assert_eq!(ack.properties.maximum_qos, Some(Q1));
    second.ping().await;
    first.ping().await;
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn max_connections_in_total_and_per_listener() {
    let s = server(|c| {
        c.max_connections = 3;
        c.listeners[0].max_connections = Some(1);
        c.listeners.push(ListenerConfig::tcp(loopback()));
    })
    .await;
    let (a, b) = (s.local_addrs[0], s.local_addrs[1]);
    let mut one = Client::v311(a, "one").await;
    let mut refused = Client::open(a, V311).await;
    refused.expect_closed().await;
    let _two = Client::v311(b, "two").await;
    let _three = Client::v311(b, "three").await;
    let mut refused = Client::open(b, V311).await;
    refused.expect_closed().await;
    one.ping().await;
    assert_eq!(
        metric(
            &s,
            "midge_connections_refused_total{limit=\"max_connections\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_listener_keeps_counting_its_connections_across_reloads() {
    let s = server(|_| {}).await;
    let addr = s.local_addrs[0];
    let one = Client::v311(addr, "one").await;
    // A limit set by a reload counts the connection that was already open.
    let mut c = s.control.config.lock().clone();
    c.listeners[0].max_connections = Some(1);
    s.control.reload_with(c.clone()).await.unwrap();
    let mut refused = Client::open(addr, V311).await;
    refused.expect_closed().await;
    // Raising it keeps the count: one more, not two.
    c.listeners[0].max_connections = Some(2);
    s.control.reload_with(c).await.unwrap();
    let mut two = Client::v311(addr, "two").await;
    let mut refused = Client::open(addr, V311).await;
    refused.expect_closed().await;
    // A connection from before the reloads gives its slot back when it ends (the broker
    // closes the socket just before it lets go of the slot: retry briefly).
    one.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut three = loop {
        let mut c = Client::open(addr, V311).await;
        c.send(&Packet::Connect(Box::new(connect_packet(V311, "three"))))
            .await;
        match c.read(Duration::from_secs(2)).await {
            Read::Packet(Packet::ConnAck(a)) if a.code == ReasonCode::Success => break c,
            other if Instant::now() > deadline => panic!("three: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    three.ping().await;
    two.ping().await;
}

#[tokio::test]
async fn connection_rate_refuses_a_burst() {
    let s = server(|c| {
        c.limits = RateLimits {
            connection_rate: 2,
            ..RateLimits::default()
        }
    })
    .await;
    let addr = s.local_addrs[0];
    let mut closed = 0;
    let mut kept = Vec::new();
    for _ in 0..6 {
        let mut c = Client::open(addr, V311).await;
        match c.read(Duration::from_millis(200)).await {
            Read::Closed => closed += 1,
            _ => kept.push(c),
        }
    }
    // One second's burst (2) gets through; the rest of an instant burst does not.
    assert!(closed >= 3, "{closed} of 6 refused");
    assert!(
        metric(
            &s,
            "midge_connections_refused_total{limit=\"connection_rate\"}"
        )
        .await
            >= 3.0
    );
}

#[tokio::test]
async fn publish_rate_answers_quota_exceeded_to_v5() {
    let s = server(|c| {
        c.limits = RateLimits {
            publish_rate: 3,
            ..RateLimits::default()
        }
    })
    .await;
    let addr = s.local_addrs[0];
    let mut c = Client::v5(addr, "fast").await;
    let mut codes = Vec::new();
    for i in 0..6u16 {
        let ack = c
            .publish_flow(publish("rate/x", Q1, i + 1, b"m"))
            .await
            .unwrap();
        codes.push(ack.code);
    }
    let refused = codes
        .iter()
        .filter(|c| **c == ReasonCode::QuotaExceeded)
        .count();
    assert!(refused >= 2, "{codes:?}");
    // QoS 2 is refused at PUBREC, QoS 0 is dropped and counted.
    let rec = c
        .publish_flow(publish("rate/x", Q2, 20, b"m"))
        .await
        .unwrap();
    assert_eq!(rec.code, ReasonCode::QuotaExceeded);
    c.publish("rate/x", Q0, b"m").await;
    c.ping().await;
    let dropped = metric(&s, "midge_messages_dropped_total{cause=\"quota_exceeded\"}").await;
    assert!(dropped >= refused as f64 + 2.0, "{dropped}");
}

#[tokio::test]
async fn publish_rate_slows_v311_clients_down_without_loss() {
    let s = server(|c| {
        c.limits = RateLimits {
            publish_rate: 10,
            ..RateLimits::default()
        }
    })
    .await;
    let addr = s.local_addrs[0];
    let mut sub = Client::v311(addr, "slow-sub").await;
    sub.subscribe("slow/#", Q1).await;
    let mut c = Client::v311(addr, "slow-pub").await;
    let start = Instant::now();
    // 20 messages at 10/s with a burst of 10: at least 0.9 s, whatever the machine's speed.
    for i in 0..20u16 {
        let ack = c
            .publish_flow(publish("slow/x", Q1, i + 1, b"m"))
            .await
            .unwrap();
        assert_eq!(ack.code, ReasonCode::Success);
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    for _ in 0..20 {
        let p = sub.recv_publish().await;
        sub.ack_publish(&p).await;
    }
}

#[tokio::test]
async fn byte_rate_throttles_reading() {
    let s = server(|c| {
        c.limits = RateLimits {
            bytes_rate: 20_000,
            ..RateLimits::default()
        }
    })
    .await;
    let addr = s.local_addrs[0];
    let mut c = Client::v5(addr, "bulk").await;
    let payload = vec![7u8; 10_000];
    let start = Instant::now();
    for i in 0..6u16 {
        c.publish_flow(publish("bulk/x", Q1, i + 1, &payload)).await;
    }
    // 60 kB at 20 kB/s with a 20 kB burst: at least 2 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    assert!(metric(&s, "midge_client_reads_throttled_total").await >= 1.0);
}

#[tokio::test]
async fn memory_budget_pauses_publishers_until_memory_is_back() {
    let s = server(|c| {
        c.limits = RateLimits {
            memory_budget: Some(1 << 20),
            ..RateLimits::default()
        }
    })
    .await;
    let addr = s.local_addrs[0];
    metric_until(&s, "midge_memory_paused", |v| v == 1.0).await;
    assert!(metric(&s, "midge_memory_pauses_total").await >= 1.0);
    let mut sub = Client::v311(addr, "mem-sub").await;
    sub.subscribe("mem/#", Q1).await;
    let mut publisher = Client::v311(addr, "mem-pub").await;
    // The first PUBLISH makes the client a publisher; the next one is not read.
    publisher.publish("mem/a", Q1, b"first").await;
    publisher
        .send_publish(publish("mem/b", Q1, 2, b"second"))
        .await;
    publisher
        .expect_nothing_for(Duration::from_millis(500))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"first");
    sub.ack_publish(&p).await;
    // A subscriber that never published is still read (its PINGREQ is answered).
    sub.ping().await;
    // A larger budget (reload): reading resumes.
    let mut c = s.control.config.lock().clone();
    c.limits.memory_budget = Some(1 << 40);
    s.control.reload_with(c).await.unwrap();
    match publisher.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(2)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"second");
    metric_until(&s, "midge_memory_paused", |v| v == 0.0).await;
}

/// The kernel's timer on the broker's side of the connection from `client`, from
/// /proc/net/tcp: "02" is the keep-alive timer, "00" none.
#[cfg(target_os = "linux")]
fn server_side_timer(server: SocketAddr, client: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{:04X}", server.port());
    let remote = format!(":{:04X}", client.port());
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[1].ends_with(&local) && f[2].ends_with(&remote))
            .then(|| f[5].split(':').next().unwrap().to_owned())
    })
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn client_sockets_get_tcp_keepalive_unless_it_is_turned_off() {
    for (setting, timer) in [(Some(Duration::from_secs(300)), "02"), (None, "00")] {
        let s = server(|c| c.tcp_keepalive = setting).await;
        let addr = s.local_addrs[0];
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connect = Packet::Connect(Box::new(connect_packet(
            midge_codec::ProtocolVersion::V311,
            "keepalive",
        )));
        stream
            .write_all(&bytes_of(&connect, midge_codec::ProtocolVersion::V311))
            .await
            .unwrap();
        // CONNACK: the broker has accepted the socket and set its options.
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack[0], 0x20);
        let client = stream.local_addr().unwrap();
        // "01" (retransmission) until the client's ACK of the CONNACK is in.
        let mut seen = server_side_timer(addr, client);
        for _ in 0..100 {
            if seen.as_deref() != Some("01") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen = server_side_timer(addr, client);
        }
        assert_eq!(seen.as_deref(), Some(timer), "tcp_keepalive {setting:?}");
    }
}
