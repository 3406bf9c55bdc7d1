//! Interop with `mosquitto_sub` and `mosquitto_pub` (Debian `mosquitto-clients`), clients
//! nobody here wrote, through a midge server in this process, with `-V mqttv311` and
//! `-V mqttv5`: QoS 0, 1 and 2 both ways, retained messages (`-r`), wills (`--will-topic`,
//! fired by SIGKILL, not by a normal DISCONNECT), a persistent session (`-c -i ID`) that
//! gets the messages published while it was offline, and 5.0 properties (`-D`) forwarded.
//!
//! `mosquitto_sub` runs with `-d` (to see its SUBACK and acknowledgements) and
//! `-F 'MSG|%t|%q|%r|%p'`, so message lines are told apart from debug lines. Every process
//! has `-W` or a `-C` with a `-W`, is killed on drop, and every wait here is bounded.

#![allow(clippy::unwrap_used)]

mod interop_support;

use interop_support::mosquitto::{self, host_port, Sub, WAIT};
use interop_support::start_server;

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// One message line of `mosquitto_sub -F 'MSG|%t|%q|%r|%p'`.
#[derive(Debug, PartialEq, Eq)]
struct Msg {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
}

fn msg(topic: &str, qos: u8, retain: bool, payload: &str) -> Msg {
    Msg {
        topic: topic.to_owned(),
        qos,
        retain,
        payload: payload.to_owned(),
    }
}

/// The format of every subscriber's message lines.
const FORMAT: &str = "MSG|%t|%q|%r|%p";

/// Starts `mosquitto_sub` against the broker on `port` with `args` and waits for its SUBACK.
async fn subscribe(port: u16, version: &str, args: &[&str]) -> Sub {
    Sub::start(&host_port("127.0.0.1", port), version, args, FORMAT).await
}

/// The next message of a subscriber started with [`FORMAT`], split into its fields.
async fn recv(sub: &mut Sub) -> Msg {
    let line = sub.next_message().await;
    let f: Vec<&str> = line.splitn(4, '|').collect();
    assert_eq!(f.len(), 4, "{line}");
    Msg {
        topic: f[0].to_owned(),
        qos: f[1].parse().unwrap(),
        retain: f[2] == "1",
        payload: f[3].to_owned(),
    }
}

/// Runs `mosquitto_pub -d` with `args` and asserts it succeeds; returns its output.
async fn publish(port: u16, version: &str, args: &[&str]) -> String {
    let (ok, text) = mosquitto::publish(&host_port("127.0.0.1", port), version, args).await;
    assert!(ok, "mosquitto_pub {args:?}: {text}");
    text
}

async fn pub_sub_at_qos_0_1_2(version: &str) {
    let (server, port) = start_server().await;
    let mut sub = subscribe(port, version, &["-q", "2", "-t", "mq/#", "-C", "3"]).await;
    let mut sub1 = subscribe(port, version, &["-q", "1", "-t", "mq/+", "-C", "3"]).await;
    for q in 0..3u8 {
        let (q_arg, topic, payload) = (q.to_string(), format!("mq/q{q}"), format!("m{q}"));
        let out = publish(port, version, &["-q", &q_arg, "-t", &topic, "-m", &payload]).await;
        // The publisher's side of each acknowledgement flow.
        match q {
            1 => assert!(out.contains("received PUBACK"), "{out}"),
            2 => assert!(
                out.contains("received PUBREC") && out.contains("received PUBCOMP"),
                "{out}"
            ),
            _ => {}
        }
    }
    for q in 0..3u8 {
        let (topic, payload) = (format!("mq/q{q}"), format!("m{q}"));
        assert_eq!(recv(&mut sub).await, msg(&topic, q, false, &payload));
        // Delivered at min(publish QoS, granted QoS).
        assert_eq!(
            recv(&mut sub1).await,
            msg(&topic, q.min(1), false, &payload)
        );
    }
    // The subscriber's side of the flows: it acknowledged what it received.
    let (code, log) = sub.exit().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("sending PUBACK") && log.contains("sending PUBCOMP"),
        "{log}"
    );
    let (code, log) = sub1.exit().await;
    assert_eq!(code, 0, "{log}");
    server.shutdown(WAIT).await;
}

async fn retained(version: &str) {
    let (server, port) = start_server().await;
    publish(port, version, &["-r", "-q", "1", "-t", "mr/a", "-m", "old"]).await;
    publish(port, version, &["-r", "-q", "2", "-t", "mr/a", "-m", "new"]).await;
    // A new subscription gets the newest retained message, retain set.
    let mut sub = subscribe(port, version, &["-q", "2", "-t", "mr/#"]).await;
    assert_eq!(recv(&mut sub).await, msg("mr/a", 2, true, "new"));
    sub.expect_nothing().await;
    // A live message to an existing subscription has retain cleared.
    publish(
        port,
        version,
        &["-r", "-q", "1", "-t", "mr/a", "-m", "live"],
    )
    .await;
    assert_eq!(recv(&mut sub).await, msg("mr/a", 1, false, "live"));
    // An empty retained message (-n) deletes it.
    publish(port, version, &["-r", "-q", "1", "-t", "mr/a", "-n"]).await;
    assert_eq!(recv(&mut sub).await, msg("mr/a", 1, false, ""));
    let mut late = subscribe(port, version, &["-q", "1", "-t", "mr/#"]).await;
    late.expect_nothing().await;
    sub.kill().await;
    late.kill().await;
    server.shutdown(WAIT).await;
}

async fn will(version: &str) {
    let (server, port) = start_server().await;
    let mut watcher = subscribe(port, version, &["-q", "2", "-t", "mw/#"]).await;

    // Exits with a normal DISCONNECT after one message (-C 1): no will.
    let will_args = |topic: &'static str| {
        [
            "--will-topic",
            topic,
            "--will-payload",
            "bye",
            "--will-qos",
            "2",
        ]
    };
    let mut polite = vec!["-t", "trigger/mw", "-C", "1"];
    polite.extend(will_args("mw/polite"));
    let polite = subscribe(port, version, &polite).await;
    publish(port, version, &["-t", "trigger/mw", "-m", "go"]).await;
    let (code, log) = polite.exit().await;
    assert_eq!(code, 0, "{log}");
    watcher.expect_nothing().await;

    // SIGKILL: the will is published.
    let mut killed = vec!["-t", "nothing/mw"];
    killed.extend(will_args("mw/killed"));
    subscribe(port, version, &killed).await.kill().await;
    assert_eq!(recv(&mut watcher).await, msg("mw/killed", 2, false, "bye"));

    // A retained will stays for later subscribers.
    let retained = [
        "-t",
        "nothing/mw",
        "--will-topic",
        "mw/kept",
        "--will-payload",
        "kept",
        "--will-qos",
        "1",
        "--will-retain",
    ];
    subscribe(port, version, &retained).await.kill().await;
    assert_eq!(recv(&mut watcher).await, msg("mw/kept", 1, false, "kept"));
    let mut late = subscribe(port, version, &["-q", "1", "-t", "mw/kept"]).await;
    assert_eq!(recv(&mut late).await, msg("mw/kept", 1, true, "kept"));

    watcher.kill().await;
    late.kill().await;
    server.shutdown(WAIT).await;
}

async fn persistent_session(version: &str) {
    let (server, port) = start_server().await;
    let id = format!("mosq-persist-{version}");
    let session = ["-c", "-i", &id, "-q", "2", "-t", "mp/#"];

    // Subscribe, and disconnect normally once subscribed (-E): the session stays.
    let mut first = session.to_vec();
    first.push("-E");
    let (code, log) = subscribe(port, version, &first).await.exit().await;
    assert_eq!(code, 0, "{log}");
    publish(port, version, &["-q", "1", "-t", "mp/1", "-m", "one"]).await;
    publish(port, version, &["-q", "0", "-t", "mp/0", "-m", "zero"]).await;
    publish(port, version, &["-q", "2", "-t", "mp/2", "-m", "two"]).await;

    // Back: the QoS 1 and 2 messages, in order; QoS 0 is not queued by default.
    let mut sub = subscribe(port, version, &session).await;
    assert_eq!(recv(&mut sub).await, msg("mp/1", 1, false, "one"));
    assert_eq!(recv(&mut sub).await, msg("mp/2", 2, false, "two"));
    sub.expect_nothing().await;

    // Killed this time; the session stays all the same.
    sub.kill().await;
    publish(port, version, &["-q", "2", "-t", "mp/3", "-m", "three"]).await;
    let mut sub = subscribe(port, version, &session).await;
    assert_eq!(recv(&mut sub).await, msg("mp/3", 2, false, "three"));
    sub.expect_nothing().await;
    sub.kill().await;
    server.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_pub_sub_at_qos_0_1_2() {
    pub_sub_at_qos_0_1_2(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_pub_sub_at_qos_0_1_2() {
    pub_sub_at_qos_0_1_2(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_retained() {
    retained(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retained() {
    retained(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_will() {
    will(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will() {
    will(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_persistent_session() {
    persistent_session(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_persistent_session() {
    persistent_session(V5).await;
}

/// 5.0 properties set with `mosquitto_pub -D` reach `mosquitto_sub` unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_properties_forwarded() {
    let (server, port) = start_server().await;
    let mut sub = Sub::start(
        &host_port("127.0.0.1", port),
        V5,
        &["-q", "1", "-t", "props/#", "-C", "1"],
        "MSG|%t|%q|%r|%P;%R;%C;%D;%F|%p",
    )
    .await;
    publish(
        port,
        V5,
        &[
            "-q",
            "1",
            "-t",
            "props/req",
            "-m",
            "{}",
            "-D",
            "publish",
            "user-property",
            "k",
            "1",
            "-D",
            "publish",
            "user-property",
            "k",
            "2",
            "-D",
            "publish",
            "response-topic",
            "props/reply",
            "-D",
            "publish",
            "correlation-data",
            "c-42",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
    )
    .await;
    let line = sub.next_message().await;
    assert_eq!(
        line,
        "props/req|1|0|k:1 k:2;props/reply;application/json;c-42;1|{}"
    );
    let (code, log) = sub.exit().await;
    assert_eq!(code, 0, "{log}");
    server.shutdown(WAIT).await;
}
