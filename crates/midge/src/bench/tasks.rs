//! The publisher and subscriber tasks of a run. Each batches its writes: it encodes everything
//! it may send now into one buffer and writes it with as few syscalls as the socket allows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use midge_codec::{
    decode, encode, DecodeLimits, FilterEntry, Packet, PacketId, PubAck, Publish,
    PublishProperties, QoS, QosPid, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::net::{parse_header, payload, Conn};
use super::pace::Credits;
use super::stats::{SeqOutcome, SubStats};

/// Stop encoding new messages while this much output is unsent.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// QoS 0 messages encoded per turn when running flat out.
const QOS0_BATCH: usize = 256;

/// Shared clock and counters of a run.
#[derive(Debug)]
pub struct Clock {
    /// Base of the timestamps in payloads.
    pub base: Instant,
    /// Measurement window start.
    pub window_start: Instant,
    /// Publishing stops here.
    pub end: Instant,
}

impl Clock {
    /// Microseconds since `base`.
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_micros() as u64
    }
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Published.
    pub sent: AtomicU64,
    /// Received (unique).
    pub received: AtomicU64,
}

/// One publisher's work.
#[derive(Debug, Clone)]
pub struct PubSpec {
    /// Publisher number (goes into the payload).
    pub id: u32,
    /// Topics used round robin.
    pub topics: Vec<TopicName>,
    /// QoS.
    pub qos: QoS,
    /// Payload size.
    pub size: usize,
    /// Send credits from the pacer (fixed rate); `None`: as fast as possible.
    pub credits: Option<Arc<Credits>>,
    /// QoS 1/2 messages in flight.
    pub inflight: usize,
}

/// What a publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PubResult {
    /// Published.
    pub sent: u64,
    /// Published inside the measurement window.
    pub sent_in_window: u64,
    /// Still unacknowledged at the end.
    pub unacked: u64,
}

/// Publishes until `clock.end`, then waits (at most 10 s) for the last acknowledgements.
pub async fn publisher(
    mut c: Conn,
    spec: PubSpec,
    clock: Arc<Clock>,
    live: Arc<Live>,
) -> std::io::Result<PubResult> {
    let v = c.version;
    let limits = DecodeLimits::default();
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut res = PubResult::default();
    let mut seq: u64 = 0;
    let mut inflight = 0usize;
    let mut next_pid: u16 = 1;
    let mut draining = false;
    let drain_deadline = clock.end + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        if !draining && now >= clock.end {
            draining = true;
        }
        if draining && (inflight == 0 || now >= drain_deadline) && wbuf.is_empty() {
            break;
        }
        if !draining && wbuf.len() < WRITE_HIGH_WATER {
            let mut budget = match &spec.credits {
                Some(c) => c.granted().saturating_sub(seq) as usize,
                None => QOS0_BATCH,
            };
            if spec.qos != QoS::AtMostOnce {
                budget = budget.min(spec.inflight.saturating_sub(inflight));
            }
            for _ in 0..budget {
                let topic = &spec.topics[(seq % spec.topics.len() as u64) as usize];
                let qos = match spec.qos {
                    QoS::AtMostOnce => QosPid::AtMostOnce,
                    q => {
                        let pid = PacketId::new(next_pid).expect("invariant: pid is never 0");
                        next_pid = next_pid.checked_add(1).unwrap_or(1);
                        inflight += 1;
                        if q == QoS::AtLeastOnce {
                            QosPid::AtLeastOnce(pid)
                        } else {
                            QosPid::ExactlyOnce(pid)
                        }
                    }
                };
                let ts = Instant::now();
                let mut body = BytesMut::with_capacity(spec.size.max(super::net::HEADER_LEN));
                payload(&mut body, spec.id, seq, clock.us(ts), spec.size);
                let p = Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: Some(topic.clone()),
                    properties: PublishProperties::default(),
                    payload: body.freeze(),
                };
                encode(&Packet::Publish(p), v, &mut wbuf).map_err(std::io::Error::other)?;
                seq += 1;
                res.sent += 1;
                if ts >= clock.window_start && ts < clock.end {
                    res.sent_in_window += 1;
                }
                live.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        // In rate mode the task waits for the pacer's next credit: one wake-up per message.
        let paced = spec.credits.as_deref().filter(|_| !draining);
        tokio::select! {
            r = c.reader.read_buf(&mut c.rbuf) => {
                if r? == 0 {
                    return Err(std::io::Error::other("broker closed a publisher"));
                }
                while let Some(p) = decode(&mut c.rbuf, v, &limits).map_err(std::io::Error::other)? {
                    match p {
                        Packet::PubAck(_) | Packet::PubComp(_) => inflight = inflight.saturating_sub(1),
                        Packet::PubRec(a) => {
                            encode(&Packet::PubRel(PubAck::new(a.packet_id)), v, &mut wbuf)
                                .map_err(std::io::Error::other)?;
                        }
                        _ => {}
                    }
                }
            }
            // Cancel-safe: see `WriteHalf::write_or_flush`.
            r = c.writer.write_or_flush(&mut wbuf), if !wbuf.is_empty() || c.writer.unflushed() => { r?; }
            _ = next_credit(paced), if paced.is_some() && wbuf.is_empty() => {}
            _ = tokio::time::sleep_until(clock.end), if !draining => {}
            _ = tokio::time::sleep_until(drain_deadline), if draining => {}
        }
    }
    res.unacked = inflight as u64;
    let _ = encode(&Packet::Disconnect(Default::default()), v, &mut wbuf);
    let _ = c.writer.write_all_buf(&mut wbuf).await;
    let _ = c.writer.flush().await;
    Ok(res)
}

async fn next_credit(credits: Option<&Credits>) {
    match credits {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Subscribes to `filters` (100 per SUBSCRIBE) and waits for every SUBACK.
pub async fn subscribe(c: &mut Conn, filters: &[TopicFilter], qos: QoS) -> std::io::Result<()> {
    let v = c.version;
    let mut wbuf = BytesMut::new();
    let mut pending = HashSet::new();
    for (i, chunk) in filters.chunks(100).enumerate() {
        let pid = PacketId::new((i % 65_535) as u16 + 1).expect("invariant: non-zero");
        pending.insert(pid);
        let s = Subscribe {
            packet_id: pid,
            properties: Default::default(),
            subscriptions: chunk
                .iter()
                .map(|f| Subscription {
                    filter: FilterEntry::Valid(f.clone()),
                    options: SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                })
                .collect(),
        };
        encode(&Packet::Subscribe(s), v, &mut wbuf).map_err(std::io::Error::other)?;
        // Keep at most 16 SUBSCRIBE in flight.
        while pending.len() >= 16 {
            c.writer.write_all_buf(&mut wbuf).await?;
            c.writer.flush().await?;
            read_subacks(c, &mut pending).await?;
        }
    }
    c.writer.write_all_buf(&mut wbuf).await?;
    c.writer.flush().await?;
    while !pending.is_empty() {
        read_subacks(c, &mut pending).await?;
    }
    Ok(())
}

async fn read_subacks(c: &mut Conn, pending: &mut HashSet<PacketId>) -> std::io::Result<()> {
    if c.reader.read_buf(&mut c.rbuf).await? == 0 {
        return Err(std::io::Error::other("closed while subscribing"));
    }
    while let Some(p) =
        decode(&mut c.rbuf, c.version, &DecodeLimits::default()).map_err(std::io::Error::other)?
    {
        if let Packet::SubAck(a) = p {
            if a.codes.iter().any(|c| c.is_error()) {
                return Err(std::io::Error::other(format!(
                    "subscription refused: {:?}",
                    a.codes
                )));
            }
            pending.remove(&a.packet_id);
        }
    }
    Ok(())
}

/// Receives and acknowledges until `stop` turns true.
pub async fn subscriber(
    mut c: Conn,
    clock: Arc<Clock>,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<SubStats> {
    let v = c.version;
    let limits = DecodeLimits::default();
    let mut stats = SubStats::default();
    let mut wbuf = BytesMut::new();
    let window_start = clock.us(clock.window_start);
    let window_end = clock.us(clock.end);
    if c.rbuf.capacity() < 64 * 1024 {
        c.rbuf.reserve(64 * 1024);
    }
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = c.reader.read_buf(&mut c.rbuf) => {
                if r? == 0 {
                    return Err(std::io::Error::other("broker closed a subscriber"));
                }
                let now_us = clock.us(Instant::now());
                while let Some(p) = decode(&mut c.rbuf, v, &limits).map_err(std::io::Error::other)? {
                    match p {
                        Packet::Publish(p) => {
                            record(&mut stats, &p, now_us, window_start, window_end, &live);
                            match p.qos {
                                QosPid::AtMostOnce => {}
                                QosPid::AtLeastOnce(pid) => encode(&Packet::PubAck(PubAck::new(pid)), v, &mut wbuf).map_err(std::io::Error::other)?,
                                QosPid::ExactlyOnce(pid) => encode(&Packet::PubRec(PubAck::new(pid)), v, &mut wbuf).map_err(std::io::Error::other)?,
                            }
                        }
                        Packet::PubRel(a) => encode(&Packet::PubComp(PubAck::new(a.packet_id)), v, &mut wbuf).map_err(std::io::Error::other)?,
                        _ => {}
                    }
                }
            }
            // Cancel-safe: see `WriteHalf::write_or_flush`.
            r = c.writer.write_or_flush(&mut wbuf), if !wbuf.is_empty() || c.writer.unflushed() => { r?; }
            _ = stop.changed() => {}
        }
    }
    let _ = encode(&Packet::Disconnect(Default::default()), v, &mut wbuf);
    let _ = c.writer.write_all_buf(&mut wbuf).await;
    let _ = c.writer.flush().await;
    Ok(stats)
}

fn record(
    stats: &mut SubStats,
    p: &Publish,
    now_us: u64,
    window_start: u64,
    window_end: u64,
    live: &Live,
) {
    let Some((publisher, seq, ts)) = parse_header(&p.payload) else {
        return;
    };
    match stats.trackers.entry(publisher).or_default().record(seq) {
        SeqOutcome::Duplicate => {
            stats.duplicates += 1;
            return;
        }
        SeqOutcome::OutOfOrder => stats.out_of_order += 1,
        SeqOutcome::New => {}
    }
    stats.received += 1;
    live.received.fetch_add(1, Ordering::Relaxed);
    // Throughput counts what arrived during the window; latency what was sent during it.
    if now_us >= window_start && now_us < window_end {
        stats.received_in_window += 1;
    }
    if ts >= window_start && ts < window_end {
        let _ = stats.latency_us.record(now_us.saturating_sub(ts).max(1));
    }
}
