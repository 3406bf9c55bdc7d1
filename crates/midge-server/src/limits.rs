//! Server-side limits, all changeable while running (reload): connection slots in total
//! and per listener, the connection rate, the per-client byte rate, and the memory budget
//! at which the broker stops reading from publishers.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midge_broker::Notify;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::process::MemoryGauge;

/// Connection slots: a count and a maximum that can change at any time.
#[derive(Debug)]
pub struct Slots {
    count: AtomicUsize,
    max: AtomicUsize,
}

impl Slots {
    /// Slots for at most `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots {
            count: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        })
    }

    /// Takes a slot unless all are in use.
    pub fn try_take(self: &Arc<Self>) -> Option<SlotGuard> {
        let max = self.max.load(Ordering::Relaxed);
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < max).then_some(c + 1)
            })
            .ok()
            .map(|_| SlotGuard(self.clone()))
    }

    /// Changes the maximum; connections above a lowered maximum stay.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
}

/// A taken slot, given back on drop.
#[derive(Debug)]
pub struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token bucket of one second's capacity, refilled continuously.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` per second.
    pub fn new(rate: f64) -> Self {
        Bucket {
            tokens: rate,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, rate: f64, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt if needed; returns how long until the bucket is
    /// out of debt (zero if it is not in debt).
    pub fn spend(&mut self, n: f64, rate: f64, now: Instant) -> Duration {
        self.refill(rate, now);
        self.tokens -= n;
        if self.tokens >= 0.0 || rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Counters of what the server-side limits refused.
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Connections refused because `max_connections` (total or listener) was reached.
    pub refused_max_connections: AtomicU64,
    /// Connections refused by the connection rate.
    pub refused_connection_rate: AtomicU64,
    /// Times a client's reading was paused by the byte rate.
    pub throttled_bytes: AtomicU64,
    /// Times the memory budget paused publishers.
    pub memory_pauses: AtomicU64,
}

/// At most one log line per second for an event that can repeat thousands of times a second
/// (a connection flood against a full server), counting the occurrences it did not log.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// No line before this time (ms since the UNIX epoch).
    next_ms: AtomicU64,
    /// Occurrences since the last line.
    unlogged: AtomicU64,
}

impl LogThrottle {
    /// `Some(n)`: log this occurrence, and say that `n` were not logged since the last line;
    /// `None`: count it and stay quiet.
    pub fn admit(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(next, now_ms + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Log throttles of the refusals at accept.
#[derive(Debug, Default)]
pub struct RefusalLogs {
    /// `limits.max_connections` reached.
    pub max_connections: LogThrottle,
    /// A listener's `max_connections` reached.
    pub listener_max_connections: LogThrottle,
    /// `limits.max_connection_rate_per_sec` exceeded.
    pub connection_rate: LogThrottle,
}

/// The live limits every listener and connection reads.
#[derive(Debug)]
pub struct Limits {
    /// Connections at once, all listeners.
    pub slots: Arc<Slots>,
    connection_rate: AtomicU32,
    accept_bucket: Mutex<Bucket>,
    /// Bytes per second per client; 0 = no limit.
    pub bytes_rate: AtomicU64,
    /// Memory budget in bytes.
    memory_budget: AtomicU64,
    /// True while memory is over budget: publishers are not read from.
    memory_paused: AtomicBool,
    /// Connections waiting for the memory pause to end.
    paused_waiters: Mutex<Vec<Arc<dyn Notify>>>,
    /// What was refused.
    pub stats: LimitStats,
    /// Refusals logged at most once a second each.
    pub refusal_logs: RefusalLogs,
}

impl Limits {
    /// Limits from the configuration.
    pub fn new(max_connections: usize, rates: &crate::config::RateLimits) -> Self {
        let l = Limits {
            slots: Slots::new(max_connections),
            connection_rate: AtomicU32::new(0),
            accept_bucket: Mutex::new(Bucket::new(f64::from(rates.connection_rate))),
            bytes_rate: AtomicU64::new(0),
            memory_budget: AtomicU64::new(0),
            memory_paused: AtomicBool::new(false),
            paused_waiters: Mutex::new(Vec::new()),
            stats: LimitStats::default(),
            refusal_logs: RefusalLogs::default(),
        };
        l.update(max_connections, rates);
        l
    }

    /// Applies a new configuration (reload).
    pub fn update(&self, max_connections: usize, rates: &crate::config::RateLimits) {
        self.slots.set_max(max_connections);
        self.connection_rate
            .store(rates.connection_rate, Ordering::Relaxed);
        self.bytes_rate.store(rates.bytes_rate, Ordering::Relaxed);
        let budget = rates
            .memory_budget
            .unwrap_or_else(|| crate::process::memory_limit().map_or(u64::MAX, |m| m / 4 * 3));
        self.memory_budget.store(budget, Ordering::Relaxed);
    }

    /// Whether a new connection may be accepted now (the connection rate).
    pub fn accept_allowed(&self) -> bool {
        let rate = self.connection_rate.load(Ordering::Relaxed);
        if rate == 0 {
            return true;
        }
        let ok = self
            .accept_bucket
            .lock()
            .try_take(f64::from(rate), Instant::now());
        if !ok {
            self.stats
                .refused_connection_rate
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The memory budget in bytes.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget.load(Ordering::Relaxed)
    }

    /// True while publishers are not read from for lack of memory.
    pub fn memory_paused(&self) -> bool {
        self.memory_paused.load(Ordering::Relaxed)
    }

    /// Registers a connection to wake when the memory pause ends. False if it ended
    /// meanwhile (the caller should read at once).
    pub fn wait_for_memory(&self, notify: Arc<dyn Notify>) -> bool {
        let mut waiters = self.paused_waiters.lock();
        if !self.memory_paused() {
            return false;
        }
        waiters.push(notify);
        true
    }

    /// Compares memory use with the budget: pauses publishers above it, lets them go on
    /// below 90% of it.
    pub fn check_memory(&self, used: u64) {
        let budget = self.memory_budget();
        let paused = self.memory_paused();
        if !paused && used > budget {
            self.memory_paused.store(true, Ordering::Relaxed);
            self.stats.memory_pauses.fetch_add(1, Ordering::Relaxed);
            warn!(
                used_mib = used >> 20,
                budget_mib = budget >> 20,
                "memory budget exceeded: not reading from publishers until memory use falls below 90% of limits.memory_budget_mib"
            );
        } else if paused && used < budget / 10 * 9 {
            let waiters = {
                let mut w = self.paused_waiters.lock();
                self.memory_paused.store(false, Ordering::Relaxed);
                std::mem::take(&mut *w)
            };
            info!(
                used_mib = used >> 20,
                budget_mib = budget >> 20,
                "memory use back under budget: reading from publishers again"
            );
            for n in waiters {
                n.notify();
            }
        }
    }
}

/// How often memory use is compared with the budget.
pub const MEMORY_CHECK: Duration = Duration::from_millis(100);

/// Samples memory use and applies the budget until shutdown.
pub async fn memory_loop(limits: Arc<Limits>, gauge: Arc<MemoryGauge>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(MEMORY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Cancel-safe: an interval tick.
            _ = tick.tick() => limits.check_memory(gauge.sample()),
            // Cancel-safe: level-triggered.
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let t = LogThrottle::default();
        assert_eq!(t.admit(10_000), Some(0));
        for ms in 10_001..10_999 {
            assert_eq!(t.admit(ms), None);
        }
        assert_eq!(t.admit(11_000), Some(998));
        assert_eq!(t.admit(11_001), None);
        assert_eq!(t.admit(60_000), Some(1));
    }

    #[test]
    fn slots_count_and_change() {
        let s = Slots::new(2);
        let a = s.try_take().expect("first");
        let _b = s.try_take().expect("second");
        assert!(s.try_take().is_none());
        drop(a);
        assert!(s.try_take().is_some());
        s.set_max(5);
        assert_eq!(s.max(), 5);
    }

    #[test]
    fn bucket_debt_is_repaid_at_the_rate() {
        let now = Instant::now();
        let mut b = Bucket::new(1000.0);
        assert_eq!(b.spend(500.0, 1000.0, now), Duration::ZERO);
        let wait = b.spend(1500.0, 1000.0, now);
        assert!(wait >= Duration::from_millis(999), "{wait:?}");
    }
}
