//! Durability as a user sees it: `midge serve --data-dir DIR` is killed with SIGKILL while a
//! persistent subscriber is offline with messages queued for it, and started again on the
//! same directory: the session, its subscriptions, every message the broker acknowledged
//! (QoS 1 and QoS 2) and the retained message are there. A data directory that cannot be
//! opened stops the start with a message, unless `--recover-empty` moves it aside; one in
//! use by a running broker is never moved aside.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{midge, start_serve, Broker};
use midge_client::{Client, ClientOptions, Message};
use midge_codec::{ProtocolVersion, QoS};

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "midge-persist-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("data")
}

fn serve(dir: &std::path::Path, listen: &str) -> Broker {
    start_serve(
        &["--data-dir", dir.to_str().unwrap(), "--listen", listen],
        &[],
    )
}

/// The retained message of `topic`, as a new subscriber gets it.
async fn retained(addr: &str, topic: &str) -> String {
    let (client, mut events) =
        Client::connect(ClientOptions::new(addr, "retained-reader").protocol(ProtocolVersion::V5))
            .await
            .unwrap();
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), events.next_message())
        .await
        .expect("the retained message")
        .expect("the connection stays");
    String::from_utf8(m.payload.to_vec()).unwrap()
}

fn options(addr: &str, id: &str) -> ClientOptions {
    ClientOptions::new(addr, id)
        .protocol(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(3600)
        .reconnect(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let dir = data_dir("kill");
    let broker = serve(&dir, "127.0.0.1:0");
    let addr = broker.addr.clone();

    // A persistent subscriber at QoS 1 and 2, then offline.
    let (sub, _events) = Client::connect(options(&addr, "subscriber")).await.unwrap();
    sub.subscribe("crash/q1/#", QoS::AtLeastOnce).await.unwrap();
    sub.subscribe("crash/q2/#", QoS::ExactlyOnce).await.unwrap();
    sub.disconnect().await.unwrap();

    let (publisher, _pe) = Client::connect(options(&addr, "publisher")).await.unwrap();
    for i in 0..40u32 {
        let (topic, qos) = if i % 2 == 0 {
            ("crash/q1/a", QoS::AtLeastOnce)
        } else {
            ("crash/q2/a", QoS::ExactlyOnce)
        };
        let code = publisher
            .publish(Message::new(topic, format!("{i}"), qos, false).unwrap())
            .await
            .unwrap();
        assert!(!code.is_error(), "{code:?}");
    }
    publisher
        .publish(Message::new("crash/state", "kept", QoS::AtLeastOnce, true).unwrap())
        .await
        .unwrap();
    // Every publish above was acknowledged: now the broker dies without a chance to flush.
    drop(publisher);
    drop(broker);

    let broker = serve(&dir, &addr);
    let (sub, mut events) = Client::connect(options(&addr, "subscriber")).await.unwrap();
    assert!(sub.connack().session_present, "the session survived");
    let mut got = Vec::new();
    while got.len() < 40 {
        let m = tokio::time::timeout(Duration::from_secs(10), events.next_message())
            .await
            .expect("a queued message")
            .expect("the connection stays");
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(sorted, expected, "every acknowledged message, exactly once");
    // Each QoS keeps its order.
    for parity in [0, 1] {
        let seq: Vec<u32> = got
            .iter()
            .map(|s| s.parse::<u32>().unwrap())
            .filter(|n| n % 2 == parity)
            .collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
    }
    // The retained message, to a new subscriber.
    assert_eq!(retained(&addr, "crash/state").await, "kept");
    drop(broker);

    // Offline inspection of what is left.
    let out = midge()
        .args(["store", "check", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("retained messages: 1"), "{text}");
    assert!(text.contains("ok: every record is readable"), "{text}");
    let out = midge()
        .args(["store", "dump", "--json", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.lines()
            .any(|l| l.contains(r#""session":"subscriber""#) && l.contains("crash/q2/#")),
        "{text}"
    );
    assert!(text.contains(r#""retained":"crash/state""#), "{text}");
    // A directory that is not a store is reported, exit code 2.
    let out = midge()
        .args(["store", "check", "--data-dir", "/nonexistent/midge-data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_data_directory_that_cannot_be_opened_needs_recover_empty() {
    let dir = data_dir("damaged");
    std::fs::create_dir_all(&dir).unwrap();
    // Not a store: a file where fjall keeps its format version, with garbage in it.
    std::fs::write(dir.join("version"), b"garbage!").unwrap();
    let out = midge()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the data directory") && err.contains("--recover-empty"),
        "{err}"
    );
    // With --recover-empty it starts, and the damaged directory is kept aside.
    let broker = start_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--recover-empty",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    drop(broker);
    let parent = dir.parent().unwrap();
    let aside = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("data.damaged-"));
    assert!(aside, "the damaged directory is moved aside, not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_in_use_is_never_moved_aside() {
    let dir = data_dir("in-use");
    let running = serve(&dir, "127.0.0.1:0");
    let (client, mut events) = Client::connect(options(&running.addr, "keeper"))
        .await
        .unwrap();
    client.subscribe("kept/#", QoS::AtLeastOnce).await.unwrap();

    // A second broker on the same directory, even with --recover-empty, refuses to start.
    let out = midge()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--recover-empty",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another process") && !err.contains("--recover-empty to"),
        "{err}"
    );
    let parent = dir.parent().unwrap();
    let moved = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("damaged"));
    assert!(!moved, "a directory in use is never moved aside");
    // The offline tools say the same.
    let out = midge()
        .args(["store", "check", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The running broker is undisturbed: the session it holds still gets messages.
    let (publisher, _pe) = Client::connect(options(&running.addr, "pub-in-use"))
        .await
        .unwrap();
    publisher
        .publish(Message::new("kept/a", "still here", QoS::AtLeastOnce, false).unwrap())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), events.next_message())
        .await
        .expect("the message")
        .expect("the connection stays");
    assert_eq!(&m.payload[..], b"still here");
}

/// Connects with a will delayed by `delay` seconds and drops the TCP connection without a
/// DISCONNECT, so the broker schedules the will.
async fn connect_and_vanish(addr: &str, id: &str, will_topic: &str, delay: u32) {
    use midge_codec::{
        decode, encode, ClientId, Connect, ConnectProperties, DecodeLimits, Packet, TopicName,
        Will, WillProperties,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let v5 = ProtocolVersion::V5;
    let connect = Connect {
        protocol: v5,
        clean_start: false,
        keep_alive: 0,
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            ..ConnectProperties::default()
        },
        client_id: ClientId::try_from(id).unwrap(),
        will: Some(Will {
            topic: TopicName::try_from(will_topic).unwrap(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..WillProperties::default()
            },
        }),
        username: None,
        password: None,
    };
    let mut buf = bytes::BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), v5, &mut buf).unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&buf).await.unwrap();
    let mut rbuf = bytes::BytesMut::new();
    loop {
        if let Some(p) = decode(&mut rbuf, v5, &DecodeLimits::default()).unwrap() {
            assert!(matches!(p, Packet::ConnAck(_)), "{p:?}");
            break;
        }
        assert!(
            s.read_buf(&mut rbuf).await.unwrap() > 0,
            "closed before CONNACK"
        );
    }
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_wills_that_come_due_while_the_broker_is_down_are_handled_at_start() {
    let dir = data_dir("expiry");
    let broker = serve(&dir, "127.0.0.1:0");
    let addr = broker.addr.clone();

    // Two persistent sessions: one expires 2 s after it goes offline, one in an hour.
    for (id, expiry) in [("short-lived", 2), ("long-lived", 3600)] {
        let (c, _e) = Client::connect(options(&addr, id).session_expiry(expiry))
            .await
            .unwrap();
        c.subscribe("expiry/#", QoS::AtLeastOnce).await.unwrap();
        c.disconnect().await.unwrap();
    }
    // A client vanishes with a will delayed by 2 s: the broker schedules it.
    connect_and_vanish(&addr, "vanished", "expiry/will", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The broker dies before either deadline and stays down past both.
    drop(broker);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let broker = serve(&dir, &addr);
    let (short, _se) = Client::connect(options(&addr, "short-lived").session_expiry(2))
        .await
        .unwrap();
    assert!(
        !short.connack().session_present,
        "a session that expired while the broker was down is gone"
    );
    let (long, _le) = Client::connect(options(&addr, "long-lived")).await.unwrap();
    assert!(
        long.connack().session_present,
        "an unexpired session is kept"
    );
    // The will came due while the broker was down: published at start, retained.
    assert_eq!(retained(&addr, "expiry/will").await, "gone");
    drop(broker);
}
