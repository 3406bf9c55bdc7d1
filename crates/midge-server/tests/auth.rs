//! Authentication and authorization end to end: a password file (argon2id and a
//! mosquitto_passwd `$7$` hash), anonymous access per listener, an ACL file applied to
//! PUBLISH, SUBSCRIBE, deliveries, retained messages and wills.

mod auth_support;
mod common;

use std::time::Duration;

use auth_support::*;
use common::*;
use midge_codec::{Packet, ProtocolVersion, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../midge-auth/tests/fixtures");

#[tokio::test]
async fn the_password_file_decides_who_connects() {
    let s = server_with(Some(password_file()), None, false).await;
    for (version, user, pass, ok) in [
        (V5, Some("alice"), Some(&b"wonderland"[..]), true),
        (V311, Some("alice"), Some(&b"wonderland"[..]), true),
        (V5, Some("alice"), Some(&b"wrong"[..]), false),
        (V311, Some("alice"), Some(&b"wrong"[..]), false),
        (V5, Some("mallory"), Some(&b"wonderland"[..]), false),
        (V5, Some("alice"), None, false),
        (V5, None, None, false),
        (V311, None, None, false),
    ] {
        let (_c, ack) =
            Client::connect_with(s.addr, login(version, &unique_id("pw"), user, pass)).await;
        let expected = if ok {
            ReasonCode::Success
        } else {
            ReasonCode::BadUserNameOrPassword
        };
        assert_eq!(ack.code, expected, "{version:?} user {user:?}");
    }
    assert_eq!(
        s.server
            .broker
            .metrics
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
}

#[tokio::test]
async fn mosquitto_passwd_hashes_log_in() {
    // Written by Debian's mosquitto_passwd: PBKDF2-SHA512 ($7$) and SHA-512 ($6$).
    let s = server_with(
        Some(format!("{FIXTURES}/mosquitto_passwd.txt").into()),
        None,
        false,
    )
    .await;
    for (user, pass, ok) in [
        ("alice", &b"wonderland"[..], true),
        ("carol", &b"secret6"[..], true),
        ("dave", "pässwörd €".as_bytes(), true),
        ("alice", &b"wonderland "[..], false),
        ("carol", &b"secret"[..], false),
    ] {
        let (_c, ack) =
            Client::connect_with(s.addr, login(V5, &unique_id(user), Some(user), Some(pass))).await;
        let expected = if ok {
            ReasonCode::Success
        } else {
            ReasonCode::BadUserNameOrPassword
        };
        assert_eq!(ack.code, expected, "{user}");
    }
}

#[tokio::test]
async fn anonymous_clients_are_accepted_only_where_allowed() {
    let s = server_with(Some(password_file()), None, true).await;
    let (_c, ack) = Client::connect_with(s.addr, login(V5, "anon", None, None)).await;
    assert_eq!(
        ack.code,
        ReasonCode::Success,
        "anonymous allowed next to a password file"
    );
    let (_c, ack) = Client::connect_with(s.addr, login(V5, "bad", Some("alice"), Some(b"x"))).await;
    assert_eq!(
        ack.code,
        ReasonCode::BadUserNameOrPassword,
        "a wrong password is still refused"
    );
}

const ACL: &str = "\
# anonymous clients may only read the public topics
topic read public/#

user alice
topic readwrite sensors/alice/#
topic read sensors/#
topic write wills/alice

pattern readwrite clients/%u/#
";

async fn acl_server() -> TestServer {
    let acl = temp_file("acl", ACL);
    server_with(Some(password_file()), Some(acl), true).await
}

async fn as_user(s: &TestServer, version: ProtocolVersion, user: &str) -> Client {
    let (c, ack) = Client::connect_with(
        s.addr,
        login(version, &unique_id(user), Some(user), Some(b"wonderland")),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::Success);
    c
}

#[tokio::test]
async fn the_acl_file_governs_subscribe_publish_and_delivery() {
    let s = acl_server().await;
    let mut alice = as_user(&s, V5, "alice").await;
    // Subscribe: allowed filters get their QoS, others 0x87.
    alice
        .send(&subscribe_packet(
            1,
            vec![
                subscription("sensors/#", opts(Q1)),
                subscription("secret/#", opts(Q1)),
                subscription("#", opts(Q1)),
                subscription("clients/alice/inbox", opts(Q1)),
            ],
        ))
        .await;
    let ack = alice.recv_suback().await;
    assert_eq!(
        ack.codes,
        vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1
        ]
    );
    // Publish: allowed topics are delivered; a denied QoS 1 publish gets PUBACK 0x87.
    alice
        .send_publish(publish("sensors/alice/t", Q1, 1, b"mine"))
        .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        match alice.recv().await {
            Packet::PubAck(a) => assert_eq!(a.code, ReasonCode::Success),
            Packet::Publish(p) => {
                got.push(p.payload.clone());
                if let Some(id) = p.qos.packet_id() {
                    alice.send(&Packet::PubAck(ack_of(id.get()))).await;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![bytes::Bytes::from_static(b"mine")]);
    alice
        .send_publish(publish("sensors/bob/t", Q1, 2, b"not mine"))
        .await;
    match alice.recv().await {
        Packet::PubAck(a) => assert_eq!(a.code, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    // The %u pattern gives alice her own inbox.
    alice
        .send_publish(publish("clients/alice/inbox", Q0, 0, b"note"))
        .await;
    assert_eq!(&alice.recv_publish().await.payload[..], b"note");
    assert!(matches!(
        alice.read(Duration::from_millis(200)).await,
        Read::Timeout
    ));
}

fn ack_of(id: u16) -> midge_codec::PubAck {
    ack(id)
}

#[tokio::test]
async fn denied_publishes_are_dropped_silently_in_3_1_1_and_deliveries_are_filtered() {
    let s = acl_server().await;
    // An anonymous reader of public/# and alice, who may not read public/#.
    let (mut anon, ack) =
        Client::connect_with(s.addr, login(V311, "anon-reader", None, None)).await;
    assert_eq!(ack.code, ReasonCode::Success);
    anon.send(&subscribe_packet(
        1,
        vec![subscription("public/#", opts(Q1))],
    ))
    .await;
    assert_eq!(
        anon.recv_suback().await.codes,
        vec![ReasonCode::GrantedQoS1]
    );
    // Anonymous clients may not publish anything: PUBACK as usual in 3.1.1, nothing routed.
    anon.send_publish(publish("public/x", Q1, 5, b"from anon"))
        .await;
    match anon.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id.get(), 5),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert!(matches!(
        anon.read(Duration::from_millis(200)).await,
        Read::Timeout
    ));
    let mut alice = as_user(&s, V311, "alice").await;
    // 3.1.1 has no 0x87: a refused filter gets 0x80.
    alice
        .send(&subscribe_packet(
            1,
            vec![subscription("public/#", opts(Q0))],
        ))
        .await;
    assert_eq!(
        alice.recv_suback().await.codes,
        vec![ReasonCode::UnspecifiedError]
    );
}

#[tokio::test]
async fn retained_messages_and_wills_are_checked() {
    let s = acl_server().await;
    let mut alice = as_user(&s, V5, "alice").await;
    alice
        .send_publish(retained("sensors/alice/last", Q0, 0, b"kept"))
        .await;
    alice
        .send(&subscribe_packet(
            1,
            vec![subscription("sensors/alice/#", opts(Q0))],
        ))
        .await;
    let _ = alice.recv_suback().await;
    assert_eq!(&alice.recv_publish().await.payload[..], b"kept");
    // The anonymous reader may subscribe to public/# but alice's retained message is not
    // in it; and a will on a topic the client may not write is refused at CONNECT.
    let mut c = login(V5, "will-denied", Some("alice"), Some(b"wonderland"));
    c.will = Some(will("sensors/bob/will", b"x", Q0, false));
    let (_c, ack) = Client::connect_with(s.addr, c).await;
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    let mut c = login(V5, "will-ok", Some("alice"), Some(b"wonderland"));
    c.will = Some(will("wills/alice", b"x", Q0, false));
    let (_c, ack) = Client::connect_with(s.addr, c).await;
    assert_eq!(ack.code, ReasonCode::Success);
}
