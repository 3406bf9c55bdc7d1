//! `$SYS` topics with mosquitto's names and meanings, published as retained messages every
//! `sys.interval_secs` (default 10; 0: none). They are routed like any message, so a
//! subscriber needs the ACL's read permission for them, and never written to the store.
//! midge counts PUBLISH packets in `messages/*` as in `publish/messages/*`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_broker::Message;
use midge_codec::{PublishProperties, QoS, TopicName};
use tokio_util::sync::CancellationToken;

use crate::Control;

/// Moving averages per minute over 1, 5 and 15 minutes of one counter.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    last: u64,
    avg: [f64; 3],
}

const WINDOWS_SECS: [f64; 3] = [60.0, 300.0, 900.0];
const WINDOW_NAMES: [&str; 3] = ["1min", "5min", "15min"];

impl Load {
    fn update(&mut self, value: u64, elapsed: f64) {
        if elapsed <= 0.0 {
            return;
        }
        let per_min = value.saturating_sub(self.last) as f64 / elapsed * 60.0;
        self.last = value;
        for (avg, window) in self.avg.iter_mut().zip(WINDOWS_SECS) {
            let keep = (-elapsed / window).exp();
            *avg = per_min + (*avg - per_min) * keep;
        }
    }
}

/// The load topics: name under `$SYS/broker/load/` and the counter behind it.
const LOADS: [&str; 8] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "publish/dropped",
    "bytes/received",
    "bytes/sent",
    "connections",
];

fn load_values(c: &Control) -> [u64; 8] {
    let m = &c.broker.metrics;
    let r = m.received();
    let s = m.sent();
    [
        r,
        s,
        r,
        s,
        m.dropped_total(),
        m.bytes_received.load(Ordering::Relaxed),
        m.bytes_sent.load(Ordering::Relaxed),
        m.connections_total.load(Ordering::Relaxed),
    ]
}

/// Every `$SYS` topic with its value now.
fn topics(c: &Control, loads: &[Load; 8]) -> Vec<(String, String)> {
    let m = &c.broker.metrics;
    let t = c.broker.totals();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let retained = c.broker.retained_count();
    let mut v = vec![
        (
            "version".to_owned(),
            format!("midge version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime".to_owned(),
            format!("{} seconds", c.started.elapsed().as_secs()),
        ),
        ("clients/connected".into(), t.online.to_string()),
        ("clients/active".into(), t.online.to_string()),
        (
            "clients/disconnected".into(),
            (t.sessions - t.online).to_string(),
        ),
        (
            "clients/inactive".into(),
            (t.sessions - t.online).to_string(),
        ),
        ("clients/total".into(), t.sessions.to_string()),
        (
            "clients/maximum".into(),
            m.clients_maximum.load(Ordering::Relaxed).to_string(),
        ),
        ("clients/expired".into(), get(&m.sessions_expired)),
        ("messages/received".into(), m.received().to_string()),
        ("messages/sent".into(), m.sent().to_string()),
        (
            "messages/stored".into(),
            (t.queued_messages + retained).to_string(),
        ),
        ("store/messages/count".into(), t.queued_messages.to_string()),
        ("store/messages/bytes".into(), t.queued_bytes.to_string()),
        ("publish/messages/received".into(), m.received().to_string()),
        ("publish/messages/sent".into(), m.sent().to_string()),
        (
            "publish/messages/dropped".into(),
            m.dropped_total().to_string(),
        ),
        (
            "publish/bytes/received".into(),
            get(&m.publish_bytes_received),
        ),
        ("bytes/received".into(), get(&m.bytes_received)),
        ("bytes/sent".into(), get(&m.bytes_sent)),
        ("retained messages/count".into(), retained.to_string()),
        (
            "subscriptions/count".into(),
            c.broker.subscription_count().to_string(),
        ),
        ("heap/current".into(), c.memory.current().to_string()),
        ("heap/maximum".into(), c.memory.maximum().to_string()),
    ];
    for (name, load) in LOADS.iter().zip(loads) {
        for (w, avg) in WINDOW_NAMES.iter().zip(load.avg) {
            v.push((format!("load/{name}/{w}"), format!("{avg:.2}")));
        }
    }
    v.into_iter()
        .map(|(k, val)| (format!("$SYS/broker/{k}"), val))
        .collect()
}

fn publish_all(c: &Control, loads: &[Load; 8]) {
    let now = crate::driver::now();
    for (topic, value) in topics(c, loads) {
        let Ok(topic) = TopicName::try_from(topic) else {
            continue;
        };
        c.broker.publish_internal(
            Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
            },
            now,
        );
    }
}

/// Publishes `$SYS` at the configured interval until shutdown; the interval may change
/// (reload), and 0 stops the updates.
pub async fn sys_loop(c: Arc<Control>, shutdown: CancellationToken) {
    let mut loads = [Load::default(); 8];
    for (l, v) in loads.iter_mut().zip(load_values(&c)) {
        l.last = v;
    }
    let mut last = Instant::now();
    loop {
        let interval = **c.sys_interval.load();
        if let Some(every) = interval {
            let elapsed = last.elapsed().as_secs_f64();
            last = Instant::now();
            for (l, v) in loads.iter_mut().zip(load_values(&c)) {
                l.update(v, elapsed);
            }
            publish_all(&c, &loads);
            c.memory.sample();
            tokio::select! {
                // Cancel-safe: a timer.
                _ = tokio::time::sleep(every) => {}
                // Cancel-safe: level-triggered.
                _ = shutdown.cancelled() => return,
            }
        } else {
            tokio::select! {
                // Cancel-safe: a timer; looks again for an interval set by a reload.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                // Cancel-safe: level-triggered.
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_converges_to_the_rate_per_minute() {
        let mut l = Load::default();
        // 10 messages per second for 15 minutes, sampled every 10 s.
        for i in 1..=90u64 {
            l.update(i * 100, 10.0);
        }
        assert!((l.avg[0] - 600.0).abs() < 1.0, "{:?}", l.avg);
        // After one 15-minute window an average covers 1 - 1/e of the way.
        assert!(l.avg[2] > 360.0 && l.avg[2] < 400.0, "{:?}", l.avg);
    }
}
