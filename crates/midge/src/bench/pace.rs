//! Fixed-rate pacing with sub-millisecond spacing.
//!
//! tokio's timer has a resolution of one millisecond: publishers that each sleep until their
//! next message is due all wake on the same tick, so a run at 10,000 msg/s sends bursts of ten
//! messages every millisecond, and the last of each burst waits behind the other nine in the
//! broker and in the generator. An open-loop load at a fixed rate sends one message every
//! 1/rate seconds instead: a pacer thread, sleeping on the kernel's high-resolution timers
//! (late by the thread's timer slack, 50 µs by default, and its wake-up), grants send
//! credits at those instants, round robin over the publishers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Messages one publisher may have sent so far, and the wake-up when that grows.
#[derive(Debug, Default)]
pub struct Credits {
    granted: AtomicU64,
    notify: Notify,
}

impl Credits {
    /// Messages granted so far.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Acquire)
    }

    /// Resolves once a credit was granted after the last call (or immediately if one was
    /// granted while nobody waited). Callers re-check [`Credits::granted`] after waking.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    fn grant(&self) {
        self.granted.fetch_add(1, Ordering::Release);
        self.notify.notify_one();
    }
}

/// The pacer thread; it stops by itself at the end of the run, or when dropped.
#[derive(Debug)]
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Grants message `k` (counting from 0 over all publishers) at `start + k / rate` to
    /// publisher `k % publishers.len()`, until `end`.
    pub fn spawn(
        rate: f64,
        start: Instant,
        end: Instant,
        publishers: Vec<Arc<Credits>>,
    ) -> std::io::Result<Pacer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || run(rate, start, end, &publishers, &flag))?;
        Ok(Pacer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The longest single sleep, so that a dropped pacer stops promptly even at very low rates.
const MAX_SLEEP: Duration = Duration::from_millis(50);

fn run(rate: f64, start: Instant, end: Instant, publishers: &[Arc<Credits>], stop: &AtomicBool) {
    if publishers.is_empty() || rate <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut k: u64 = 0;
    let mut due = start;
    while due < end && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < due {
            std::thread::sleep((due - now).min(MAX_SLEEP));
            continue;
        }
        // Everything due by now: a late wake-up catches up, so the rate holds on average.
        while due <= now && due < end {
            publishers[(k % publishers.len() as u64) as usize].grant();
            k += 1;
            due = start + period.mul_f64(k as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(creds: &[Arc<Credits>]) -> u64 {
        creds.iter().map(|c| c.granted()).sum()
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn grants_round_robin_and_stops_at_the_end() {
        let creds: Vec<_> = (0..3).map(|_| Arc::new(Credits::default())).collect();
        let start = Instant::now();
        let end = start + Duration::from_millis(100);
        let _pacer = Pacer::spawn(1000.0, start, end, creds.clone()).expect("pacer");
        wait_for(|| total(&creds) >= 100);
        std::thread::sleep(Duration::from_millis(50));
        let g: Vec<u64> = creds.iter().map(|c| c.granted()).collect();
        // 100 messages in 100 ms at 1000/s, spread 34/33/33, and none after the end.
        assert_eq!(g.iter().sum::<u64>(), 100, "{g:?}");
        assert!(g.iter().all(|&x| (33..=34).contains(&x)), "{g:?}");
    }

    #[test]
    fn a_dropped_pacer_stops_granting() {
        let creds = vec![Arc::new(Credits::default())];
        let start = Instant::now();
        let end = start + Duration::from_secs(60);
        let pacer = Pacer::spawn(1000.0, start, end, creds.clone()).expect("pacer");
        wait_for(|| total(&creds) > 0);
        drop(pacer);
        let after_drop = total(&creds);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(total(&creds), after_drop);
        assert!(after_drop < 60_000, "{after_drop}");
    }
}
