//! Load test (not a timed test): 1,000 clients connect over loopback, subscribe with a
//! wildcard, and exchange 1,000,000 QoS 1 messages. Every message must arrive exactly once,
//! in per-publisher order. Runs in release mode from `scripts/test.sh`:
//! `cargo test --release -p midge-server --test load -- --ignored`.
//! Sizes can be reduced for a quick run with MIDGE_LOAD_CLIENTS / MIDGE_LOAD_PER_TARGET.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use midge_codec::{
    decode, encode, Connect, ConnectProperties, DecodeLimits, Packet, PacketId, ProtocolVersion,
    PubAck, Publish, PublishProperties, QoS, QosPid, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter,
};
use midge_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Each client publishes to this many other clients.
const TARGETS: usize = 10;
/// Unacknowledged QoS 1 messages per publisher.
const WINDOW: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    /// Per publisher: the sequence numbers received, in arrival order.
    received: Vec<Vec<u32>>,
}

async fn client(
    id: usize,
    n: usize,
    per_target: usize,
    addr: SocketAddr,
    barrier: Arc<Barrier>,
) -> Outcome {
    let v = ProtocolVersion::V311;
    let limits = DecodeLimits::default();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let connect = Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 120,
        properties: ConnectProperties::default(),
        client_id: format!("load-{id}").try_into().unwrap(),
        will: None,
        username: None,
        password: None,
    };
    encode(&Packet::Connect(Box::new(connect)), v, &mut wbuf).unwrap();
    let filter: TopicFilter = format!("load/+/{id}").parse().unwrap();
    let sub = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
    };
    encode(&Packet::Subscribe(sub), v, &mut wbuf).unwrap();
    stream.write_all_buf(&mut wbuf).await.unwrap();
    // Wait for CONNACK and SUBACK.
    let mut acks = 0;
    while acks < 2 {
        stream.read_buf(&mut rbuf).await.unwrap();
        while let Some(p) = decode(&mut rbuf, v, &limits).unwrap() {
            assert!(matches!(p, Packet::ConnAck(_) | Packet::SubAck(_)), "{p:?}");
            acks += 1;
        }
    }
    barrier.wait().await;
    let (mut reader, mut writer) = stream.into_split();

    let total_out = TARGETS * per_target;
    let expected_in = TARGETS * per_target;
    let topics: Vec<midge_codec::TopicName> = (1..=TARGETS)
        .map(|k| format!("load/{id}/{}", (id + k) % n).parse().unwrap())
        .collect();
    let mut received = vec![Vec::new(); n];
    let mut got = 0usize;
    let mut sent = 0usize;
    let mut acked = 0usize;
    let mut next_pid: u16 = 1;
    while acked < total_out || got < expected_in {
        while sent < total_out && sent - acked < WINDOW {
            // Messages go round robin over the targets; seq counts per target.
            let target = sent % TARGETS;
            let seq = (sent / TARGETS) as u32;
            let mut payload = BytesMut::with_capacity(8);
            payload.put_u32(id as u32);
            payload.put_u32(seq);
            let p = Publish {
                dup: false,
                qos: QosPid::AtLeastOnce(PacketId::new(next_pid).unwrap()),
                retain: false,
                topic: Some(topics[target].clone()),
                properties: PublishProperties::default(),
                payload: payload.freeze(),
            };
            next_pid = next_pid.checked_add(1).unwrap_or(1);
            encode(&Packet::Publish(p), v, &mut wbuf).unwrap();
            sent += 1;
        }
        tokio::select! {
            r = reader.read_buf(&mut rbuf) => {
                assert!(r.unwrap() > 0, "client {id}: broker closed the connection");
                while let Some(p) = decode(&mut rbuf, v, &limits).unwrap() {
                    match p {
                        Packet::PubAck(_) => acked += 1,
                        Packet::Publish(p) => {
                            let mut b: Bytes = p.payload.clone();
                            let from = b.get_u32() as usize;
                            let seq = b.get_u32();
                            received[from].push(seq);
                            got += 1;
                            let pid = p.qos.packet_id().unwrap();
                            encode(&Packet::PubAck(PubAck::new(pid)), v, &mut wbuf).unwrap();
                        }
                        other => panic!("client {id}: unexpected {other:?}"),
                    }
                }
            }
            r = writer.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                r.unwrap();
            }
        }
    }
    writer.write_all_buf(&mut wbuf).await.unwrap();
    Outcome { received }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: run in release by scripts/test.sh"]
async fn thousand_clients_exchange_a_million_qos1_messages() {
    let n = env_usize("MIDGE_LOAD_CLIENTS", 1000);
    let per_target = env_usize("MIDGE_LOAD_PER_TARGET", 100);
    assert!(n > TARGETS);
    let mut config = ServerConfig {
        listeners: vec![midge_server::ListenerConfig::tcp(
            "127.0.0.1:0".parse().unwrap(),
        )],
        ..ServerConfig::default()
    };
    config.broker.max_queued_messages = 100_000;
    let server = Server::bind(config).await.unwrap().start();
    let addr = server.local_addrs[0];
    let barrier = Arc::new(Barrier::new(n));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        tasks.push(tokio::spawn(client(
            id,
            n,
            per_target,
            addr,
            barrier.clone(),
        )));
    }
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        let o = tokio::time::timeout(Duration::from_secs(600), t)
            .await
            .expect("load test finished within 10 minutes")
            .unwrap();
        outcomes.push(o);
    }
    let elapsed = started.elapsed();
    let mut total = 0usize;
    for (subscriber, o) in outcomes.iter().enumerate() {
        for (publisher, seqs) in o.received.iter().enumerate() {
            let targets_me = (1..=TARGETS).any(|k| (publisher + k) % n == subscriber);
            if !targets_me {
                assert!(
                    seqs.is_empty(),
                    "{subscriber} got messages from {publisher}"
                );
                continue;
            }
            let expected: Vec<u32> = (0..per_target as u32).collect();
            assert_eq!(
                seqs, &expected,
                "subscriber {subscriber} from publisher {publisher}: lost, duplicated or reordered"
            );
            total += seqs.len();
        }
    }
    assert_eq!(total, n * TARGETS * per_target);
    let m = &server.broker.metrics;
    assert_eq!(
        m.dropped_queue_full
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    println!(
        "load: {n} clients, {total} QoS 1 messages delivered exactly once in order in {:.1} s ({:.0} msg/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    server.shutdown(Duration::from_secs(5)).await;
}
