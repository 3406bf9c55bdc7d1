//! Small helpers: a seeded PRNG, keys and values shaped like midge's, latency percentiles,
//! memory and disk usage.

use std::path::Path;
use std::time::Duration;

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Queue key: session id (u32, big-endian) then sequence number (u64, big-endian), so that
/// one session's queue is one contiguous key range in sequence order.
pub fn queue_key(sid: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&sid.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The key range `[start, end)` holding every queue entry of `sid`.
pub fn session_range(sid: u32) -> (Vec<u8>, Vec<u8>) {
    (queue_key(sid, 0), (sid + 1).to_be_bytes().to_vec())
}

pub fn parse_queue_key(k: &[u8]) -> Option<(u32, u64)> {
    if k.len() != 12 {
        return None;
    }
    let sid = u32::from_be_bytes(k[..4].try_into().ok()?);
    let seq = u64::from_be_bytes(k[4..].try_into().ok()?);
    Some((sid, seq))
}

/// A queued message as midge would store it, 120 bytes: 16 bytes of metadata (QoS, flags,
/// message expiry, publish time, message id), a 40-byte topic, a 64-byte payload. The
/// payload is random (incompressible), the topic realistic text.
pub fn queued_value(rng: &mut Rng, msg_id: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(120);
    v.push(1); // qos
    v.push(0); // flags
    v.extend_from_slice(&3600u16.to_be_bytes()); // expiry
    v.extend_from_slice(&(msg_id as u32).to_be_bytes()); // publish time (stand-in)
    v.extend_from_slice(&msg_id.to_be_bytes());
    let site = rng.below(1000);
    let dev = rng.below(100_000);
    let topic = format!("sensors/site-{site:03}/dev-{dev:05}/temperature/");
    let mut t = topic.into_bytes();
    t.resize(40, b'x');
    v.extend_from_slice(&t);
    let mut p = [0u8; 64];
    rng.fill(&mut p);
    v.extend_from_slice(&p);
    v
}

/// A session record, ~200 bytes: expiry, flags, offline-since, then subscriptions.
pub fn session_value(rng: &mut Rng, stamp: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(200);
    v.extend_from_slice(&stamp.to_be_bytes());
    v.extend_from_slice(&3600u32.to_be_bytes());
    for i in 0..4u64 {
        let sub = format!("home/{}/+/state/{:04}#", rng.below(1000), i);
        v.push(1);
        v.extend_from_slice(sub.as_bytes());
    }
    v.resize(200, 0);
    v
}

/// A retained topic name, ~40 bytes.
pub fn retained_key(i: u32) -> Vec<u8> {
    format!("devices/{:03}/{:06}/status/last-known", i % 997, i).into_bytes()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// (VmRSS, VmHWM) of this process in bytes.
pub fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes this process has caused to be written to storage so far (`write_bytes` of
/// /proc/self/io, counted when pages are dirtied; includes journal, WAL and checkpoints).
pub fn io_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
pub fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                apparent += m.len();
                allocated += m.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

/// Asks the kernel to drop clean page-cache pages, for a cold open. Best effort: returns
/// whether it worked (needs root).
pub fn drop_page_cache() -> bool {
    let synced = std::process::Command::new("sync").status().is_ok();
    synced && std::fs::write("/proc/sys/vm/drop_caches", b"1\n").is_ok()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
