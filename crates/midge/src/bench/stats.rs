//! What a benchmark run measures: counts, loss, duplicates, order, throughput and latency.

use std::collections::HashMap;

use hdrhistogram::Histogram;

/// Tracks the sequence numbers one subscriber received from one publisher.
#[derive(Debug, Default)]
pub struct SeqTracker {
    seen: Vec<u64>,
    max: Option<u64>,
}

/// What one received sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// First time, in order.
    New,
    /// First time, but after a higher number.
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

impl SeqTracker {
    /// Records `seq`.
    pub fn record(&mut self, seq: u64) -> SeqOutcome {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            return SeqOutcome::Duplicate;
        }
        self.seen[word] |= bit;
        let ooo = self.max.is_some_and(|m| seq < m);
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        if ooo {
            SeqOutcome::OutOfOrder
        } else {
            SeqOutcome::New
        }
    }
}

/// Counters of one subscriber.
#[derive(Debug)]
pub struct SubStats {
    /// Unique messages received.
    pub received: u64,
    /// Unique messages received inside the measurement window.
    pub received_in_window: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Out-of-order messages.
    pub out_of_order: u64,
    /// Latency in microseconds of messages sent inside the window.
    pub latency_us: Histogram<u64>,
    /// Per publisher.
    pub trackers: HashMap<u32, SeqTracker>,
}

impl Default for SubStats {
    fn default() -> Self {
        SubStats {
            received: 0,
            received_in_window: 0,
            duplicates: 0,
            out_of_order: 0,
            latency_us: new_histogram(),
            trackers: HashMap::new(),
        }
    }
}

/// A histogram of 1 µs to 60 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("invariant: valid histogram bounds")
}

impl SubStats {
    /// Adds another subscriber's counters.
    pub fn merge(&mut self, o: &SubStats) {
        self.received += o.received;
        self.received_in_window += o.received_in_window;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        let _ = self.latency_us.add(&o.latency_us);
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// QoS.
    pub qos: u8,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Publisher and subscriber connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Messages published.
    pub sent: u64,
    /// Messages that should have arrived (sent x receivers per message).
    pub expected: u64,
    /// Unique messages received.
    pub received: u64,
    /// Expected but not received.
    pub lost: u64,
    /// Received more than once.
    pub duplicated: u64,
    /// Received after a later message of the same publisher.
    pub out_of_order: u64,
    /// Published per second in the measurement window.
    pub msgs_per_sec_in: f64,
    /// Delivered per second in the measurement window.
    pub msgs_per_sec_out: f64,
    /// Latency percentiles in milliseconds.
    pub latency_ms_p50: f64,
    /// p99.
    pub latency_ms_p99: f64,
    /// p99.9.
    pub latency_ms_p999: f64,
    /// max.
    pub latency_ms_max: f64,
    /// Broker CPU seconds during the run, if `--pid` was given.
    pub broker_cpu_secs: Option<f64>,
    /// Broker peak RSS in MiB, if `--pid` was given.
    pub broker_peak_rss_mib: Option<f64>,
    /// Broker RSS at the end, MiB.
    pub broker_rss_mib: Option<f64>,
}

impl Report {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} qos{} {}B: {} pub, {} sub\n  sent {}  expected {}  received {}  lost {}  dup {}  out-of-order {}\n  in {:.0} msg/s  out {:.0} msg/s\n  latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.scenario,
            self.qos,
            self.payload_bytes,
            self.publishers,
            self.subscribers,
            self.sent,
            self.expected,
            self.received,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.msgs_per_sec_in,
            self.msgs_per_sec_out,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_p999,
            self.latency_ms_max,
        );
        if let (Some(cpu), Some(peak)) = (self.broker_cpu_secs, self.broker_peak_rss_mib) {
            s.push_str(&format!(
                "  broker: {cpu:.2} CPU s, peak RSS {peak:.1} MiB\n"
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_classifies() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), SeqOutcome::New);
        assert_eq!(t.record(2), SeqOutcome::New);
        assert_eq!(t.record(1), SeqOutcome::OutOfOrder);
        assert_eq!(t.record(2), SeqOutcome::Duplicate);
        assert_eq!(t.record(700), SeqOutcome::New);
    }
}
