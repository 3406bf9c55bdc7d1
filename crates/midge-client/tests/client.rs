//! midge-client against a real midge server on 127.0.0.1:0.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use midge_client::{Client, ClientError, ClientOptions, Event, Events, Message};
use midge_codec::{Disconnect, ProtocolVersion, QoS, ReasonCode, Will, WillProperties};
use midge_server::{RunningServer, Server, ServerConfig};

async fn server_on(addr: &str) -> RunningServer {
    let config = ServerConfig {
        listeners: vec![midge_server::ListenerConfig::tcp(addr.parse().unwrap())],
        ..ServerConfig::default()
    };
    Server::bind(config).await.unwrap().start()
}

async fn next(events: &mut Events) -> midge_codec::Publish {
    tokio::time::timeout(Duration::from_secs(5), events.next_message())
        .await
        .expect("a message within 5 s")
        .expect("client still running")
}

#[tokio::test]
async fn publish_and_receive_at_every_qos_in_both_versions() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0].to_string();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let (sub, mut events) = Client::connect(ClientOptions::new(&addr, "sub").protocol(v))
            .await
            .unwrap();
        let ack = sub.subscribe("t/#", QoS::ExactlyOnce).await.unwrap();
        assert_eq!(ack.codes, vec![ReasonCode::GrantedQoS2]);
        let (publisher, _ev) = Client::connect(ClientOptions::new(&addr, "pub").protocol(v))
            .await
            .unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("{v} {qos:?}");
            let code = publisher
                .publish(Message::new("t/x", payload.clone(), qos, false).unwrap())
                .await
                .unwrap();
            assert_eq!(code, ReasonCode::Success);
            let got = next(&mut events).await;
            assert_eq!(got.payload, Bytes::from(payload));
            assert_eq!(got.qos.qos(), qos);
        }
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn many_messages_pipelined_arrive_in_order() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0].to_string();
    let (sub, mut events) = Client::connect(ClientOptions::new(&addr, "s"))
        .await
        .unwrap();
    sub.subscribe("seq", QoS::AtLeastOnce).await.unwrap();
    let (publisher, _ev) = Client::connect(ClientOptions::new(&addr, "p"))
        .await
        .unwrap();
    for i in 0..2000u32 {
        publisher
            .publish_nowait(
                Message::new("seq", i.to_be_bytes().to_vec(), QoS::AtLeastOnce, false).unwrap(),
            )
            .await
            .unwrap();
    }
    for i in 0..2000u32 {
        assert_eq!(
            next(&mut events).await.payload,
            Bytes::from(i.to_be_bytes().to_vec())
        );
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn retained_message_and_will() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0].to_string();
    let (publisher, _ev) = Client::connect(ClientOptions::new(&addr, "p"))
        .await
        .unwrap();
    publisher
        .publish(Message::new("r/a", "kept", QoS::AtLeastOnce, true).unwrap())
        .await
        .unwrap();
    let (sub, mut events) =
        Client::connect(ClientOptions::new(&addr, "s").protocol(ProtocolVersion::V5))
            .await
            .unwrap();
    sub.subscribe("r/#", QoS::AtLeastOnce).await.unwrap();
    let got = next(&mut events).await;
    assert!(got.retain);
    assert_eq!(got.payload, Bytes::from_static(b"kept"));

    sub.subscribe("will/#", QoS::AtLeastOnce).await.unwrap();
    let will = Will {
        topic: "will/dev".parse().unwrap(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    };
    let (dev, _ev) = Client::connect(
        ClientOptions::new(&addr, "dev")
            .protocol(ProtocolVersion::V5)
            .will(will),
    )
    .await
    .unwrap();
    dev.disconnect_with(Disconnect {
        code: ReasonCode::DisconnectWithWillMessage,
        properties: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(
        next(&mut events).await.payload,
        Bytes::from_static(b"offline")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn persistent_session_receives_what_was_published_while_offline() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0].to_string();
    let opts = ClientOptions::new(&addr, "persist")
        .protocol(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(300);
    let (sub, _ev) = Client::connect(opts.clone()).await.unwrap();
    sub.subscribe("offline/#", QoS::AtLeastOnce).await.unwrap();
    sub.disconnect().await.unwrap();
    let (publisher, _ev) = Client::connect(ClientOptions::new(&addr, "p"))
        .await
        .unwrap();
    publisher
        .publish(Message::new("offline/1", "while away", QoS::AtLeastOnce, false).unwrap())
        .await
        .unwrap();
    let (again, mut events) = Client::connect(opts).await.unwrap();
    assert!(again.connack().session_present);
    assert_eq!(
        next(&mut events).await.payload,
        Bytes::from_static(b"while away")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0];
    let (client, mut events) = Client::connect(
        ClientOptions::new(addr.to_string(), "rc")
            .protocol(ProtocolVersion::V5)
            .reconnect(true),
    )
    .await
    .unwrap();
    server.shutdown(Duration::from_secs(2)).await;
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap();
    assert!(matches!(ev, Some(Event::Disconnected(_))), "{ev:?}");
    let server = server_on(&addr.to_string()).await;
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap();
    assert!(matches!(ev, Some(Event::Connected(_))), "{ev:?}");
    client.subscribe("back", QoS::AtLeastOnce).await.unwrap();
    client
        .publish(Message::new("back", "again", QoS::AtLeastOnce, false).unwrap())
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await.payload,
        Bytes::from_static(b"again")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn refused_connection_reports_the_reason() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addrs[0].to_string();
    // 3.1.1 with an empty client id and no clean session: identifier rejected.
    let err = Client::connect(ClientOptions::new(&addr, "").clean_start(false))
        .await
        .unwrap_err();
    match err {
        ClientError::Refused { code, .. } => assert_eq!(code, ReasonCode::ClientIdentifierNotValid),
        other => panic!("{other:?}"),
    }
    server.shutdown(Duration::from_secs(2)).await;
}
