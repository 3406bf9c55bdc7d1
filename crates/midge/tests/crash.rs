//! The crash test of the durable store: publishers send numbered QoS 1 and QoS 2 messages
//! to persistent subscribers (one online, reconnecting after every crash; one offline until
//! the end) while `midge serve` is killed with SIGKILL at random moments and restarted on
//! the same data directory, several times. At the end every message the broker
//! acknowledged has reached both subscribers, QoS 2 messages exactly once, and the retained
//! message and the subscriptions are intact.
//!
//! The clients are midge-client with automatic reconnect: a publish interrupted by a crash
//! is re-sent with DUP on the same packet id once the broker is back, so the broker's
//! durable inbound QoS 2 ids are what keeps QoS 2 exactly-once here.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_serve, Broker};
use midge_client::{Client, ClientOptions, Event, Message};
use midge_codec::{ProtocolVersion, QoS, ReasonCode};

/// Messages published in all.
const MESSAGES: u32 = 2000;
/// Kills of the broker during the run.
const KILLS: u32 = 6;
/// The whole test must finish within this.
const LIMIT: Duration = Duration::from_secs(120);

/// `midge serve` on `dir`, with room in each session queue for every message of the test
/// (the default limit, 1,000, would drop the oldest for the offline subscriber).
fn serve(dir: &std::path::Path, listen: &str) -> Broker {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("midge.toml");
    std::fs::write(&config, "[limits]\nmax_queued_messages = 10000\n").unwrap();
    start_serve(
        &[
            "--data-dir",
            dir.join("data").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--listen",
            listen,
        ],
        &[],
    )
}

fn options(addr: &str, id: &str) -> ClientOptions {
    ClientOptions::new(addr, id)
        .protocol(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(3600)
        .reconnect(true)
}

/// A pseudo-random number from the clock (no dependency for one number).
fn jitter(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(nanos.wrapping_mul(2_654_435_761) % max_ms)
}

type Received = Arc<Mutex<HashMap<u32, u32>>>;

/// Collects the numbers a subscriber receives, with how often each came.
fn collect(mut events: midge_client::Events) -> Received {
    let got: Received = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Message(m) = e {
                if let Ok(n) = std::str::from_utf8(&m.payload).unwrap_or("").parse::<u32>() {
                    *g.lock().unwrap().entry(n).or_default() += 1;
                }
            }
        }
    });
    got
}

fn missing(got: &Received) -> Vec<u32> {
    let g = got.lock().unwrap();
    (0..MESSAGES).filter(|n| !g.contains_key(n)).collect()
}

/// The first missing numbers and how many, for a readable failure.
fn report(missing: &[u32]) -> String {
    format!(
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    let started = Instant::now();
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "midge-crash-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let mut broker = serve(&dir, "127.0.0.1:0");
    let addr = broker.addr.clone();

    // The offline subscriber: subscribes, leaves, and comes back only at the end.
    let (offline, _) = Client::connect(options(&addr, "offline").reconnect(false))
        .await
        .unwrap();
    offline
        .subscribe("crash/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    offline.disconnect().await.unwrap();

    let (online, online_events) = Client::connect(options(&addr, "online")).await.unwrap();
    online.subscribe("crash/#", QoS::ExactlyOnce).await.unwrap();
    let online_got = collect(online_events);

    let (publisher, _pub_events) = Client::connect(options(&addr, "publisher")).await.unwrap();
    publisher
        .publish(Message::new("state/crash", "kept", QoS::AtLeastOnce, true).unwrap())
        .await
        .unwrap();
    let publishing = tokio::spawn(async move {
        for n in 0..MESSAGES {
            let qos = if n % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let code = publisher
                .publish(Message::new("crash/n", n.to_string(), qos, false).unwrap())
                .await
                .expect("every publish completes once the broker is back");
            // A PUBREL re-sent after a crash may find the id already released (the broker
            // stored the release, then died before PUBCOMP): 0x92 ends that flow, and the
            // message itself was stored before PUBREC.
            assert!(
                !code.is_error() || code == ReasonCode::PacketIdentifierNotFound,
                "{n}: {code:?}"
            );
        }
        publisher
    });

    let mut kills_while_publishing = 0;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(50) + jitter(300)).await;
        if !publishing.is_finished() {
            kills_while_publishing += 1;
        }
        drop(broker); // SIGKILL
        broker = serve(&dir, &addr);
    }
    // The test is about crashes under load: most kills must hit the publishing.
    assert!(
        kills_while_publishing >= KILLS / 2,
        "only {kills_while_publishing} of {KILLS} kills happened while publishing"
    );
    let publisher = tokio::time::timeout(LIMIT.saturating_sub(started.elapsed()), publishing)
        .await
        .expect("the publisher finished in time")
        .unwrap();

    // Every number was acknowledged: the online subscriber gets them all.
    while !missing(&online_got).is_empty() {
        assert!(
            started.elapsed() < LIMIT,
            "online subscriber: {}",
            report(&missing(&online_got))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The offline one comes back to its stored session.
    let (offline, offline_events) = Client::connect(options(&addr, "offline")).await.unwrap();
    assert!(offline.connack().session_present);
    let offline_got = collect(offline_events);
    while !missing(&offline_got).is_empty() {
        assert!(
            started.elapsed() < LIMIT,
            "offline subscriber: {}",
            report(&missing(&offline_got))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let late duplicates arrive before counting them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, got) in [("online", &online_got), ("offline", &offline_got)] {
        let g = got.lock().unwrap();
        let dup_qos2: Vec<_> = g
            .iter()
            .filter(|(n, c)| *n % 2 == 1 && **c > 1)
            .map(|(n, c)| (*n, *c))
            .collect();
        assert!(
            dup_qos2.is_empty(),
            "{name}: QoS 2 delivered more than once: {dup_qos2:?}"
        );
    }
    // The retained message survived every crash.
    let (fresh, mut fresh_events) =
        Client::connect(ClientOptions::new(addr.as_str(), "fresh").protocol(ProtocolVersion::V5))
            .await
            .unwrap();
    fresh.subscribe("state/#", QoS::AtLeastOnce).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), fresh_events.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"kept");
    drop((publisher, online, offline, fresh, broker));
    let _ = std::fs::remove_dir_all(&dir);
}
