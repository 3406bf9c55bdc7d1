//! Security end to end over real sockets: SCRAM-SHA-256/512 enhanced authentication
//! (CONNECT, AUTH, CONNACK, re-authentication; wrong passwords and unknown methods), the
//! delay before a refused login, password and ACL files reloaded under connected clients,
//! and the ACL paths an attacker would try: a wildcard subscription over a denied topic
//! (live and retained), `$share` around a read deny, and taking over another user's
//! session to read its queue.

#![allow(clippy::unwrap_used)]

mod auth_support;
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use auth_support::*;
use bytes::Bytes;
use common::*;
use midge_auth::{ScramClient, ScramMechanism};
use midge_codec::{
    Auth, AuthProperties, ConnAck, Packet, ProtocolVersion, PubAck, ReasonCode, SubscriptionOptions,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn auth_packet(code: ReasonCode, method: &str, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        code,
        properties: AuthProperties {
            authentication_method: Some(mstr(method)),
            authentication_data: Some(Bytes::from(data)),
            ..Default::default()
        },
    })
}

fn expect_auth(p: Packet) -> (ReasonCode, Bytes) {
    match p {
        Packet::Auth(a) => (a.code, a.properties.authentication_data.unwrap_or_default()),
        other => panic!("expected AUTH, got {other:?}"),
    }
}

fn expect_connack(p: Packet) -> ConnAck {
    match p {
        Packet::ConnAck(c) => c,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Runs a SCRAM login; returns the client and the CONNACK (after a verified server-final
/// message when it succeeded).
async fn scram_login(
    s: &TestServer,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> (Client, ConnAck) {
    let method = mechanism.name();
    let scram = ScramClient::new(mechanism, user, password.as_bytes()).unwrap();
    let mut c = Client::open(s.addr, V5).await;
    let mut connect = connect_packet(V5, &unique_id("scram"));
    connect.properties.authentication_method = Some(mstr(method));
    connect.properties.authentication_data = Some(Bytes::from(scram.client_first()));
    c.send(&Packet::Connect(Box::new(connect))).await;
    let (code, server_first) = expect_auth(c.recv().await);
    assert_eq!(code, ReasonCode::ContinueAuthentication);
    let (client_final, finish) = scram.handle_server_first(&server_first).unwrap();
    c.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        method,
        client_final,
    ))
    .await;
    let ack = expect_connack(c.recv().await);
    if ack.code == ReasonCode::Success {
        assert_eq!(
            ack.properties
                .authentication_method
                .as_ref()
                .unwrap()
                .as_str(),
            method
        );
        let server_final = ack.properties.authentication_data.clone().unwrap();
        finish
            .verify_server_final(&server_final)
            .expect("the server proves it knows the credentials");
    }
    (c, ack)
}

/// Re-authenticates on a live connection; returns the broker's last answer.
async fn scram_reauth(c: &mut Client, user: &str, password: &str) -> Packet {
    let mechanism = ScramMechanism::Sha256;
    let method = mechanism.name();
    let scram = ScramClient::new(mechanism, user, password.as_bytes()).unwrap();
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        method,
        scram.client_first(),
    ))
    .await;
    let (code, server_first) = expect_auth(c.recv().await);
    assert_eq!(code, ReasonCode::ContinueAuthentication);
    let (client_final, _) = scram.handle_server_first(&server_first).unwrap();
    c.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        method,
        client_final,
    ))
    .await;
    c.recv().await
}

#[tokio::test]
async fn scram_logs_in_reauthenticates_and_refuses_wrong_passwords() {
    let s = server_with(Some(password_file()), None, false).await;
    for mechanism in ScramMechanism::ALL {
        let (_c, ack) = scram_login(&s, mechanism, "alice", "wonderland").await;
        assert_eq!(ack.code, ReasonCode::Success, "{mechanism}");
        let (_c, ack) = scram_login(&s, mechanism, "alice", "wrong").await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{mechanism}");
        let (_c, ack) = scram_login(&s, mechanism, "mallory", "wonderland").await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{mechanism}");
    }

    // An unknown method: 0x8C.
    let mut c = Client::open(s.addr, V5).await;
    let mut connect = connect_packet(V5, "scram-1");
    connect.properties.authentication_method = Some(mstr("SCRAM-SHA-1"));
    c.send(&Packet::Connect(Box::new(connect))).await;
    assert_eq!(
        expect_connack(c.recv().await).code,
        ReasonCode::BadAuthenticationMethod
    );

    // Re-authentication: AUTH 0x19, 0x18, then AUTH 0x00; the connection keeps working.
    let (mut c, _) = scram_login(&s, ScramMechanism::Sha256, "alice", "wonderland").await;
    let (code, _) = expect_auth(scram_reauth(&mut c, "alice", "wonderland").await);
    assert_eq!(code, ReasonCode::Success);
    c.send(&Packet::PingReq).await;
    assert!(matches!(c.recv().await, Packet::PingResp));
    // A wrong password on re-authentication ends the connection with DISCONNECT 0x87.
    match scram_reauth(&mut c, "alice", "wrong").await {
        Packet::Disconnect(d) => assert_eq!(d.code, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    assert!(matches!(c.read(Duration::from_secs(2)).await, Read::Closed));
    // 2 x 2 failed logins, the unknown method and the failed re-authentication.
    assert_eq!(
        s.server
            .broker
            .metrics
            .auth_failures
            .load(Ordering::Relaxed),
        6
    );
}

#[tokio::test]
async fn a_failed_login_is_answered_late_and_a_good_one_at_once() {
    let delay = Duration::from_millis(400);
    let s = server_with_delay(Some(password_file()), None, false, delay).await;
    let started = Instant::now();
    let (_c, ack) =
        Client::connect_with(s.addr, login(V311, "late", Some("alice"), Some(b"guess"))).await;
    assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword);
    assert!(
        started.elapsed() >= delay,
        "refused after {:?}, before the {delay:?} delay",
        started.elapsed()
    );
    // Other clients are not held up meanwhile.
    let (_c, ack) = Client::connect_with(
        s.addr,
        login(V311, "ok", Some("alice"), Some(b"wonderland")),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::Success);
}

#[tokio::test]
async fn password_and_acl_files_reload_under_connected_clients() {
    let passwd = password_file();
    let acl = temp_file("acl", "user alice\ntopic readwrite a/#\n");
    let s = server_with(Some(passwd.clone()), Some(acl.clone()), false).await;
    let (mut alice, ack) = Client::connect_with(
        s.addr,
        login(V5, "alice-1", Some("alice"), Some(b"wonderland")),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::Success);
    alice.send_publish(publish("b/x", Q1, 1, b"x")).await;
    assert_eq!(puback_code(&mut alice).await, ReasonCode::NotAuthorized);

    std::fs::write(
        &passwd,
        password_text(&[("alice", "wonderland"), ("bob", "builder")]),
    )
    .unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\ntopic write b/#\n").unwrap();
    s.server.reload_auth_files().unwrap();

    // Alice is still connected, and her next publish is checked against the new ACL.
    alice.send_publish(publish("b/x", Q1, 2, b"x")).await;
    assert!(!puback_code(&mut alice).await.is_error());
    let (_bob, ack) =
        Client::connect_with(s.addr, login(V5, "bob-1", Some("bob"), Some(b"builder"))).await;
    assert_eq!(ack.code, ReasonCode::Success);

    // A file that no longer parses is refused and the previous one stays in force.
    std::fs::write(&acl, "user alice\ntopic sometimes a/#\n").unwrap();
    let err = s.server.reload_auth_files().unwrap_err();
    assert!(err.contains("sometimes"), "{err}");
    alice.send_publish(publish("b/x", Q1, 3, b"x")).await;
    assert!(!puback_code(&mut alice).await.is_error());
}

async fn puback_code(c: &mut Client) -> ReasonCode {
    match c.recv().await {
        Packet::PubAck(PubAck { code, .. }) => code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

const TENANTS: &str = "\
user alice
topic readwrite tenants/a/#

user bob
topic read #
topic deny tenants/a/#
topic readwrite tenants/b/#
";

async fn tenant(s: &TestServer, user: &str, pass: &[u8], id: &str, clean: bool) -> Client {
    let mut c = login(V5, id, Some(user), Some(pass));
    c.clean_start = clean;
    c.properties.session_expiry_interval = Some(600);
    let (client, ack) = Client::connect_with(s.addr, c).await;
    assert_eq!(ack.code, ReasonCode::Success, "{user}");
    client
}

async fn tenants_server() -> TestServer {
    let passwd = temp_file(
        "passwd",
        &password_text(&[("alice", "wonderland"), ("bob", "builder")]),
    );
    server_with(Some(passwd), Some(temp_file("acl", TENANTS)), false).await
}

async fn subscribe_codes(c: &mut Client, filters: &[&str]) -> Vec<ReasonCode> {
    let subs = filters
        .iter()
        .map(|f| {
            subscription(
                f,
                SubscriptionOptions {
                    qos: Q1,
                    ..Default::default()
                },
            )
        })
        .collect();
    c.send(&subscribe_packet(7, subs)).await;
    c.recv_suback().await.codes
}

/// Payloads that arrive within a short while, acknowledged.
async fn drain(c: &mut Client) -> Vec<Bytes> {
    let mut got = Vec::new();
    loop {
        match c.read(Duration::from_millis(300)).await {
            Read::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.qos.packet_id() {
                    c.send(&Packet::PubAck(ack(id.get()))).await;
                }
                got.push(p.payload.clone());
            }
            Read::Packet(Packet::PubAck(_)) => {}
            Read::Packet(other) => panic!("unexpected {other:?}"),
            _ => return got,
        }
    }
}

#[tokio::test]
async fn wildcards_and_shared_subscriptions_never_reach_a_denied_topic() {
    let s = tenants_server().await;
    let mut alice = tenant(&s, "alice", b"wonderland", "alice-pub", true).await;
    alice
        .send_publish(retained("tenants/a/secret", Q1, 1, b"retained secret"))
        .await;
    assert!(!puback_code(&mut alice).await.is_error());

    let mut bob = tenant(&s, "bob", b"builder", "bob-sub", true).await;
    // `#` and `$share/g/#` are allowed (bob reads everything else), a filter inside the
    // denied subtree is not, with or without `$share`.
    assert_eq!(
        subscribe_codes(
            &mut bob,
            &[
                "#",
                "$share/g/#",
                "tenants/a/#",
                "$share/g/tenants/a/secret",
                "tenants/+/secret"
            ]
        )
        .await,
        vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
        ]
    );
    // The retained secret was not delivered on subscribe.
    assert_eq!(drain(&mut bob).await, Vec::<Bytes>::new());

    // Live: alice publishes in tenant a, bob in tenant b; bob gets only tenant b, through
    // `#`, through `tenants/+/secret` and through the shared subscription.
    alice
        .send_publish(publish("tenants/a/secret", Q1, 2, b"a live"))
        .await;
    assert!(!puback_code(&mut alice).await.is_error());
    bob.send_publish(publish("tenants/b/secret", Q1, 3, b"b live"))
        .await;
    let got = drain(&mut bob).await;
    assert!(!got.is_empty(), "tenant b's message must arrive");
    assert!(got.iter().all(|p| p == "b live"), "{got:?}");
    assert!(
        s.server
            .broker
            .metrics
            .dropped_not_authorized
            .load(Ordering::Relaxed)
            >= 3,
        "the denied deliveries are counted"
    );
}

#[tokio::test]
async fn taking_over_another_users_session_does_not_reveal_its_queue() {
    let s = tenants_server().await;
    // Alice's persistent session subscribes to her tenant, then goes offline.
    let mut a = tenant(&s, "alice", b"wonderland", "alice-phone", true).await;
    assert_eq!(
        subscribe_codes(&mut a, &["tenants/a/#"]).await,
        vec![ReasonCode::GrantedQoS1]
    );
    a.send(&disconnect(ReasonCode::Success)).await;
    drop(a);
    // Messages queue for her.
    let mut publisher = tenant(&s, "alice", b"wonderland", "alice-pub", true).await;
    for (i, payload) in [&b"one"[..], b"two"].into_iter().enumerate() {
        publisher
            .send_publish(publish("tenants/a/inbox", Q1, i as u16 + 1, payload))
            .await;
        assert!(!puback_code(&mut publisher).await.is_error());
    }
    // Bob takes her client id and resumes the session: he reads nothing of tenant a.
    let mut bob = tenant(&s, "bob", b"builder", "alice-phone", false).await;
    assert_eq!(drain(&mut bob).await, Vec::<Bytes>::new());
    publisher
        .send_publish(publish("tenants/a/inbox", Q1, 3, b"three"))
        .await;
    assert!(!puback_code(&mut publisher).await.is_error());
    assert_eq!(drain(&mut bob).await, Vec::<Bytes>::new());
}
