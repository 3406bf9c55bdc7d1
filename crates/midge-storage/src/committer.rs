//! Group commit: connections submit ops from any thread; one committer thread applies
//! everything submitted since its last commit as one engine batch and syncs it once, so
//! many messages share one fsync. While it syncs, the next batch accumulates.
//!
//! Ordering: ops are applied in ticket order. Whoever applies (the committer, or a reader
//! that needs every submitted op applied first) takes the engine lock before taking the
//! pending ops, so batches never overtake each other.
//!
//! Durability: with [`SyncPolicy::EveryCommit`] the durable watermark moves only after the
//! engine synced the batch, and acknowledgements wait for it. With
//! [`SyncPolicy::Periodic`] ops are applied at once and synced every interval; the
//! watermark follows the submissions (nothing waits) and a crash may lose up to one
//! interval of acknowledged messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use midge_broker::session::Notify;
use midge_broker::store::{QueuedRecord, Recovered, Store, StoreError, StoreOp};
use tracing::error;

/// When data reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every batch is synced before anything in it is acknowledged (the default: nothing
    /// acknowledged is lost).
    EveryCommit,
    /// Batches are synced every interval; acknowledgements do not wait, and a crash loses
    /// at most the last interval.
    Periodic(Duration),
}

/// A storage engine as the committer drives it.
pub trait Engine: Send {
    /// Applies `ops` in order as one atomic batch; synced to disk when `sync`.
    fn apply(&mut self, ops: &[StoreOp], sync: bool) -> Result<(), StoreError>;
    /// Syncs everything applied so far.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Queued messages of a session from sequence number `from` on, in order.
    fn read_queue(
        &mut self,
        client_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError>;
    /// Everything stored.
    fn recover(&mut self, head: usize) -> Result<Recovered, StoreError>;
    /// Records skipped because they could not be read.
    fn skipped_records(&self) -> u64 {
        0
    }
}

/// Counters of the committer, for metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches committed.
    pub commits: AtomicU64,
    /// Ops committed.
    pub ops: AtomicU64,
    /// Total time spent applying and syncing, in microseconds.
    pub commit_micros: AtomicU64,
    /// Failed commits (the store stops acknowledging after one).
    pub failures: AtomicU64,
}

#[derive(Default)]
struct Pending {
    ops: Vec<StoreOp>,
    submitted: u64,
    shutdown: bool,
    /// Open atomic groups by their first ticket (with how many start there).
    open: BTreeMap<u64, usize>,
}

impl Pending {
    /// Ticket of `ops[0]`.
    fn first_ticket(&self) -> u64 {
        self.submitted + 1 - self.ops.len() as u64
    }

    /// How many ops from the front may be committed: all those before the first open group
    /// (or all, when `all`).
    fn committable(&self, all: bool) -> usize {
        match self.open.keys().next() {
            Some(start) if !all => {
                let n = start.saturating_sub(self.first_ticket());
                (n as usize).min(self.ops.len())
            }
            _ => self.ops.len(),
        }
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    engine: Mutex<Box<dyn Engine>>,
    durable: AtomicU64,
    waiters: Mutex<Vec<(u64, Arc<dyn Notify>)>>,
    policy: SyncPolicy,
    failed: AtomicBool,
    stats: Arc<CommitStats>,
}

/// A [`Store`] over an [`Engine`], with group commit on its own thread.
pub struct GroupCommitStore {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupCommitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitStore")
            .field("policy", &self.shared.policy)
            .field("durable", &self.shared.durable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain values);
    // keep going rather than poison every later caller.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupCommitStore {
    /// Starts the committer thread over `engine`.
    pub fn start(engine: Box<dyn Engine>, policy: SyncPolicy) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            engine: Mutex::new(engine),
            durable: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            policy,
            failed: AtomicBool::new(false),
            stats: Arc::new(CommitStats::default()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("midge-store".into())
            .spawn(move || s.run())?;
        Ok(GroupCommitStore {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Records the engine skipped because they could not be read.
    pub fn skipped_records(&self) -> u64 {
        lock(&self.shared.engine).skipped_records()
    }

    /// The committer's counters.
    pub fn stats(&self) -> Arc<CommitStats> {
        self.shared.stats.clone()
    }

    /// Applies and syncs everything submitted, then stops the committer. Idempotent.
    pub fn close(&self) {
        lock(&self.shared.pending).shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        self.shared.flush(true, true);
    }
}

impl Drop for GroupCommitStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn run(&self) {
        let interval = match self.policy {
            SyncPolicy::EveryCommit => None,
            SyncPolicy::Periodic(d) => Some(d),
        };
        let mut last_sync = Instant::now();
        loop {
            {
                let mut p = lock(&self.pending);
                while p.committable(false) == 0 && !p.shutdown {
                    p = match interval {
                        None => self.wake.wait(p).unwrap_or_else(|e| e.into_inner()),
                        Some(d) => {
                            let left = d.saturating_sub(last_sync.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            self.wake
                                .wait_timeout(p, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                }
                if p.shutdown {
                    return;
                }
            }
            let sync_now = match interval {
                None => true,
                Some(d) => last_sync.elapsed() >= d,
            };
            self.flush(sync_now, false);
            if sync_now {
                last_sync = Instant::now();
            }
        }
    }

    /// Applies the pending ops before the first open group (every op, with `all`) as one
    /// batch, synced if `sync`, and moves the watermark.
    fn flush(&self, sync: bool, all: bool) {
        let mut engine = lock(&self.engine);
        let (ops, upto) = {
            let mut p = lock(&self.pending);
            let n = p.committable(all);
            let first = p.first_ticket();
            let ops: Vec<StoreOp> = p.ops.drain(..n).collect();
            (ops, first + n as u64 - 1)
        };
        if ops.is_empty() && !sync {
            return;
        }
        let started = Instant::now();
        let result = if ops.is_empty() {
            engine.sync()
        } else {
            engine.apply(&ops, sync)
        };
        drop(engine);
        let stats = &self.stats;
        match result {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
                stats
                    .commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                if sync || self.policy != SyncPolicy::EveryCommit {
                    self.durable.fetch_max(upto, Ordering::AcqRel);
                }
                self.wake_waiters();
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                // Nothing after this is acknowledged as durable: publishers wait (and time
                // out and retry) rather than be told a lie.
                self.failed.store(true, Ordering::Release);
                error!(error = %e, ops = ops.len(), "store commit failed; acknowledgements stop until restart");
            }
        }
    }

    fn wake_waiters(&self) {
        let durable = self.durable.load(Ordering::Acquire);
        let due: Vec<Arc<dyn Notify>> = {
            let mut w = lock(&self.waiters);
            let mut due = Vec::new();
            w.retain(|(t, n)| {
                if *t <= durable {
                    due.push(n.clone());
                    false
                } else {
                    true
                }
            });
            due
        };
        for n in due {
            n.notify();
        }
    }
}

impl Store for GroupCommitStore {
    fn submit(&self, op: StoreOp) -> u64 {
        let mut p = lock(&self.shared.pending);
        p.submitted += 1;
        p.ops.push(op);
        let t = p.submitted;
        let first = p.ops.len() == 1;
        drop(p);
        if first {
            self.shared.wake.notify_one();
        }
        t
    }

    fn submitted(&self) -> u64 {
        lock(&self.shared.pending).submitted
    }

    fn begin_group(&self) -> u64 {
        let mut p = lock(&self.shared.pending);
        let start = p.submitted + 1;
        *p.open.entry(start).or_default() += 1;
        start
    }

    fn end_group(&self, group: u64) {
        let mut p = lock(&self.shared.pending);
        if let Some(n) = p.open.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                p.open.remove(&group);
            }
        }
        drop(p);
        self.shared.wake.notify_one();
    }

    fn durable(&self) -> u64 {
        if self.shared.failed.load(Ordering::Acquire) {
            return self.shared.durable.load(Ordering::Acquire);
        }
        match self.shared.policy {
            SyncPolicy::EveryCommit => self.shared.durable.load(Ordering::Acquire),
            SyncPolicy::Periodic(_) => self.submitted(),
        }
    }

    fn notify_durable(&self, ticket: u64, notify: Arc<dyn Notify>) {
        {
            let mut w = lock(&self.shared.waiters);
            if ticket > self.durable() {
                w.push((ticket, notify));
                return;
            }
        }
        notify.notify();
    }

    fn read_queue(
        &self,
        client_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError> {
        // Every op submitted so far must be visible, without writing any early (that could
        // split an atomic group): the engine's records, overlaid with the pending ops. With
        // the engine locked no batch is half applied.
        let mut engine = lock(&self.shared.engine);
        let mut overlay: BTreeMap<u64, Option<QueuedRecord>> = BTreeMap::new();
        let mut engine_visible = true;
        for op in &lock(&self.shared.pending).ops {
            match op {
                StoreOp::Enqueue {
                    client_id: c,
                    seq,
                    record,
                } if &**c == client_id && *seq >= from => {
                    overlay.insert(*seq, Some(record.clone()));
                }
                StoreOp::Dequeue { client_id: c, seq } if &**c == client_id && *seq >= from => {
                    overlay.insert(*seq, None);
                }
                StoreOp::DeleteSession { client_id: c } if &**c == client_id => {
                    engine_visible = false;
                    overlay.clear();
                }
                _ => {}
            }
        }
        let mut merged: BTreeMap<u64, QueuedRecord> = BTreeMap::new();
        if engine_visible {
            let removed = overlay.values().filter(|v| v.is_none()).count();
            for (seq, r) in engine.read_queue(client_id, from, max.saturating_add(removed))? {
                merged.insert(seq, r);
            }
        }
        drop(engine);
        for (seq, v) in overlay {
            match v {
                Some(r) => {
                    merged.insert(seq, r);
                }
                None => {
                    merged.remove(&seq);
                }
            }
        }
        Ok(merged.into_iter().take(max).collect())
    }

    fn recover(&self, head: usize) -> Result<Recovered, StoreError> {
        self.shared.flush(true, true);
        lock(&self.shared.engine).recover(head)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use midge_broker::store::MemoryStore;
    use midge_broker::Message;
    use midge_codec::{PublishProperties, QoS, TopicName};
    use std::sync::atomic::AtomicUsize;

    /// An engine in memory that counts syncs and can be made slow.
    struct TestEngine {
        mem: MemoryStore,
        syncs: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Engine for TestEngine {
        fn apply(&mut self, ops: &[StoreOp], sync: bool) -> Result<(), StoreError> {
            for op in ops {
                self.mem.submit(op.clone());
            }
            if sync {
                self.sync()?;
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn read_queue(
            &mut self,
            id: &str,
            from: u64,
            max: usize,
        ) -> Result<Vec<(u64, QueuedRecord)>, StoreError> {
            self.mem.read_queue(id, from, max)
        }
        fn recover(&mut self, head: usize) -> Result<Recovered, StoreError> {
            self.mem.recover(head)
        }
    }

    #[derive(Debug, Default)]
    struct Count(AtomicUsize);
    impl Notify for Count {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enqueue(seq: u64) -> StoreOp {
        StoreOp::Enqueue {
            client_id: Arc::from("c"),
            seq,
            record: QueuedRecord {
                msg: Arc::new(Message {
                    topic: TopicName::try_from("t").unwrap(),
                    payload: bytes::Bytes::from_static(b"x"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: PublishProperties::default(),
                    expires_at: None,
                }),
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: vec![],
                share: None,
            },
        }
    }

    fn store(policy: SyncPolicy, delay: Duration) -> (GroupCommitStore, Arc<AtomicUsize>) {
        let syncs = Arc::new(AtomicUsize::new(0));
        let engine = TestEngine {
            mem: MemoryStore::new(),
            syncs: syncs.clone(),
            delay,
        };
        (
            GroupCommitStore::start(Box::new(engine), policy).unwrap(),
            syncs,
        )
    }

    fn wait_until(f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn many_ops_share_a_sync_and_waiters_wake_when_durable() {
        let (s, syncs) = store(SyncPolicy::EveryCommit, Duration::from_millis(20));
        let count = Arc::new(Count::default());
        let mut last = 0;
        for seq in 1..=1000 {
            last = s.submit(enqueue(seq));
        }
        assert_eq!(last, 1000);
        s.notify_durable(last, count.clone());
        wait_until(|| s.durable() >= 1000);
        wait_until(|| count.0.load(Ordering::SeqCst) == 1);
        assert!(
            syncs.load(Ordering::SeqCst) < 100,
            "1000 ops took {} syncs",
            syncs.load(Ordering::SeqCst)
        );
        // Already durable: woken at once.
        s.notify_durable(1, count.clone());
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn reads_see_every_submitted_op() {
        let (s, _) = store(SyncPolicy::EveryCommit, Duration::from_millis(50));
        for seq in 1..=5 {
            s.submit(enqueue(seq));
        }
        s.submit(StoreOp::Dequeue {
            client_id: Arc::from("c"),
            seq: 3,
        });
        // Pending or written, the read sees every op.
        let got = s.read_queue("c", 2, 10).unwrap();
        assert_eq!(got.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [2, 4, 5]);
        wait_until(|| s.durable() == 6);
        let got = s.read_queue("c", 2, 2).unwrap();
        assert_eq!(got.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn an_open_group_is_committed_whole_or_not_at_all() {
        let (s, _) = store(SyncPolicy::EveryCommit, Duration::ZERO);
        let before = s.submit(enqueue(1));
        let g = s.begin_group();
        let inside = s.submit(enqueue(2));
        wait_until(|| s.durable() >= before);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            s.durable() < inside,
            "nothing of an open group is committed"
        );
        assert_eq!(
            s.read_queue("c", 0, 10).unwrap().len(),
            2,
            "but it is readable"
        );
        let last = s.submit(enqueue(3));
        s.end_group(g);
        wait_until(|| s.durable() >= last);
    }

    #[test]
    fn periodic_sync_acknowledges_at_once_and_syncs_later() {
        let (s, syncs) = store(
            SyncPolicy::Periodic(Duration::from_millis(30)),
            Duration::ZERO,
        );
        let t = s.submit(enqueue(1));
        assert!(s.durable() >= t, "nothing waits with periodic sync");
        wait_until(|| syncs.load(Ordering::SeqCst) >= 1);
        s.close();
        assert_eq!(s.read_queue("c", 0, 10).unwrap().len(), 1);
    }
}
