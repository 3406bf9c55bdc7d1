//! The per-client publish rate (`limits.max_publish_rate_per_client`): a token bucket that
//! holds one second's worth of messages. A 5.0 client over its quota has its QoS 1/2
//! messages refused with 0x97 (quota exceeded) and its QoS 0 messages dropped; a 3.x
//! client, which has no way to hear a refusal, has its message delivered and is then not
//! read from until the bucket is no longer in debt.

use std::sync::atomic::Ordering;

use midge_codec::{Publish, QosPid, ReasonCode};

use super::Connection;
use crate::time::Timestamp;

/// Thousandths of a message, so that rates below one per millisecond refill smoothly.
const MILLI: i64 = 1000;

/// A connection's publish bucket.
#[derive(Debug, Default)]
pub(super) struct Quota {
    /// Available thousandths of a message; negative while a 3.x client is in debt.
    milli: i64,
    last: Option<Timestamp>,
    rate: u32,
    /// A 3.x client is not read from until then.
    pub(super) paused_until: Option<Timestamp>,
}

impl Quota {
    /// Refills for the time since the last call at `rate` messages per second and takes
    /// one message. True if it was within the quota.
    fn take(&mut self, rate: u32, now: Timestamp, allow_debt: bool) -> bool {
        let capacity = i64::from(rate) * MILLI;
        match self.last {
            Some(last) if self.rate == rate => {
                let elapsed = now.as_millis().saturating_sub(last.as_millis()) as i64;
                self.milli = (self.milli + elapsed * i64::from(rate)).min(capacity);
            }
            // First message, or the rate changed (reload): start with a full bucket.
            _ => self.milli = capacity,
        }
        self.rate = rate;
        self.last = Some(now);
        if self.milli >= MILLI {
            self.milli -= MILLI;
            return true;
        }
        if allow_debt {
            self.milli -= MILLI;
            let wait_ms = (-self.milli) / i64::from(rate.max(1)) + 1;
            self.paused_until = Some(now + std::time::Duration::from_millis(wait_ms as u64));
        }
        false
    }
}

impl Connection {
    /// Applies the publish rate to one PUBLISH. Returns the packet back if it may be
    /// routed; `None` if it was refused (and answered) here.
    pub(super) fn within_quota(&mut self, p: Publish, now: Timestamp) -> Option<Publish> {
        let rate = self.broker.limits.publish_rate.load(Ordering::Relaxed);
        if rate == 0 {
            return Some(p);
        }
        let v5 = self.version.is_v5();
        let quota = self.quota.get_or_insert_with(Box::default);
        if quota.take(rate, now, !v5) {
            return Some(p);
        }
        if !v5 {
            // Delivered; the client is slowed down instead (see `read_paused`).
            return Some(p);
        }
        self.broker
            .metrics
            .dropped_quota_exceeded
            .fetch_add(1, Ordering::Relaxed);
        match p.qos {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(pid) | QosPid::ExactlyOnce(pid) => {
                self.push_ack(p.qos, pid, ReasonCode::QuotaExceeded);
            }
        }
        None
    }

    /// Ends a 3.x client's pause once its bucket is out of debt.
    pub(super) fn check_quota_pause(&mut self, now: Timestamp) {
        if let Some(q) = self.quota.as_mut() {
            if q.paused_until.is_some_and(|t| now >= t) {
                q.paused_until = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_second_of_messages_then_refills() {
        let mut q = Quota::default();
        let t0 = Timestamp(1_000_000);
        for _ in 0..10 {
            assert!(q.take(10, t0, false));
        }
        assert!(!q.take(10, t0, false));
        // 100 ms at 10/s refills one message.
        assert!(q.take(10, t0 + std::time::Duration::from_millis(100), false));
        assert!(!q.take(10, t0 + std::time::Duration::from_millis(100), false));
    }

    #[test]
    fn debt_pauses_until_repaid() {
        let mut q = Quota::default();
        let t0 = Timestamp(1_000_000);
        assert!(q.take(2, t0, true));
        assert!(q.take(2, t0, true));
        assert!(!q.take(2, t0, true));
        // One message in debt at 2/s: 500 ms.
        let until = q.paused_until.expect("paused");
        assert!(until.as_millis() - t0.as_millis() >= 500, "{until:?}");
    }
}
