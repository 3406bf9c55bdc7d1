//! The on-disk engine: fjall (an LSM tree with a write-ahead journal), chosen by measurement
//! in docs/decisions/0005-storage-engine.md. One keyspace per kind of record:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `meta` | `format` | the format byte of the newest writer |
//! | `sessions` | client id | [`format::encode_session`] |
//! | `queue` | client id, 0x00, seq (u64 BE) | [`format::encode_queued`] |
//! | `inflight` | same key as the queued message | [`format::encode_inflight`] |
//! | `qos2in` | client id, 0x00, packet id (u16 BE) | empty |
//! | `retained` | topic | [`format::encode_retained`] |
//! | `wills` | client id | [`format::encode_will`] |
//!
//! A batch of ops is written as one fjall write batch (atomic in the journal). Within a
//! batch the last op on a key wins (ops are folded per key first), and a session deletion
//! first writes what precedes it, because it reads the session's ranges.
//!
//! Recovery: fjall replays its journal on open and drops a torn or corrupt tail; a record that
//! does not decode is logged, counted and skipped rather than stopping the broker.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use fjall::config::{FilterPolicy, PinningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use midge_broker::store::{
    InflightRecord, QueuedRecord, Recovered, RecoveredSession, StoreError, StoreOp,
};
use midge_codec::PacketId;
use tracing::{error, warn};

use crate::committer::Engine;
use crate::format::{self, FormatError, FORMAT};

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FjallSettings {
    /// Block cache, bytes.
    pub cache_bytes: u64,
    /// Memtable size per keyspace, bytes.
    pub memtable_bytes: u64,
}

impl Default for FjallSettings {
    fn default() -> Self {
        FjallSettings {
            cache_bytes: 32 << 20,
            memtable_bytes: 16 << 20,
        }
    }
}

const KEYSPACES: [&str; 7] = [
    "meta", "sessions", "queue", "inflight", "qos2in", "retained", "wills",
];
const META: usize = 0;
const SESSIONS: usize = 1;
const QUEUE: usize = 2;
const INFLIGHT: usize = 3;
const QOS2IN: usize = 4;
const RETAINED: usize = 5;
const WILLS: usize = 6;

/// Records skipped because they did not decode, since the store was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Records that could not be read.
    pub skipped: u64,
}

/// The fjall engine.
pub struct FjallEngine {
    db: Database,
    ks: Vec<Keyspace>,
    damage: Damage,
    /// Held while open; declared last so it is released after the database closes.
    _lock: File,
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallEngine")
            .field("damage", &self.damage)
            .finish_non_exhaustive()
    }
}

/// The name of the lock file midge keeps in a data directory (fjall keeps its own, `lock`).
pub const LOCK_FILE: &str = "midge.lock";

/// Takes the exclusive lock of `dir` (created if missing), released when the file is closed,
/// including when the process dies.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(in_use(dir)),
        Err(TryLockError::Error(e)) => Err(StoreError::Io(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn in_use(dir: &Path) -> StoreError {
    StoreError::Unavailable(format!(
        "the data directory {} is in use by another process (a running midge?); stop it \
         or give this one another --data-dir",
        dir.display()
    ))
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// The first key after every key starting with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl FjallEngine {
    /// Opens (or creates) the store in `dir`, holding an exclusive lock on it while open.
    /// Refuses, as [`StoreError::Unavailable`], a directory another process holds and data
    /// written by a newer format.
    pub fn open(dir: &Path, settings: FjallSettings) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        let db = match Database::builder(dir)
            .cache_size(settings.cache_bytes)
            .open()
        {
            Ok(db) => db,
            Err(fjall::Error::Locked) => return Err(in_use(dir)),
            Err(e) => return Err(io(e)),
        };
        let mut ks = Vec::new();
        for (i, name) in KEYSPACES.into_iter().enumerate() {
            ks.push(
                db.keyspace(name, || {
                    let options =
                        KeyspaceCreateOptions::default().max_memtable_size(settings.memtable_bytes);
                    if i == QUEUE {
                        // Queues are only ever read by range (a session's head), never by
                        // point lookup: bloom filters would be built and kept for nothing,
                        // and their index blocks go through the bounded block cache instead
                        // of staying pinned in memory as the backlog grows.
                        options
                            .filter_policy(FilterPolicy::disabled())
                            .filter_block_pinning_policy(PinningPolicy::disabled())
                            .index_block_pinning_policy(PinningPolicy::disabled())
                    } else {
                        options
                    }
                })
                .map_err(io)?,
            );
        }
        let engine = FjallEngine {
            db,
            ks,
            damage: Damage::default(),
            _lock: lock,
        };
        let stored = engine.ks[META].get(b"format").map_err(io)?;
        match stored.as_deref().map(|v| v.first().copied().unwrap_or(0)) {
            Some(newer) if newer > FORMAT => {
                return Err(StoreError::Unavailable(format!(
                    "the data directory {} was written by a newer midge: {}; run that \
                     version, or move the directory away to start empty",
                    dir.display(),
                    FormatError::TooNew(newer)
                )));
            }
            Some(current) if current == FORMAT => {}
            // New, or written by an older format this version reads: from now on it holds
            // records of this format too, so an older midge must refuse it.
            _ => {
                let mut b = engine.db.batch().durability(Some(PersistMode::SyncAll));
                b.insert(&engine.ks[META], b"format", [FORMAT]);
                b.commit().map_err(io)?;
            }
        }
        Ok(engine)
    }

    /// Records skipped so far because they did not decode.
    pub fn damage(&self) -> Damage {
        self.damage
    }

    /// Every key of keyspace `ks` starting with `prefix`.
    fn keys_with_prefix(&self, ks: usize, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match prefix_end(prefix) {
            Some(end) => Box::new(self.ks[ks].range(prefix.to_vec()..end)),
            None => Box::new(self.ks[ks].range(prefix.to_vec()..)),
        };
        for g in iter {
            keys.push(g.key().map_err(io)?.to_vec());
        }
        Ok(keys)
    }

    /// Writes folded ops as one batch.
    fn write(
        &mut self,
        folded: &mut BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>,
        sync: bool,
    ) -> Result<(), StoreError> {
        if folded.is_empty() && !sync {
            return Ok(());
        }
        let mode = sync.then_some(PersistMode::SyncAll);
        let mut b = self.db.batch().durability(mode);
        for ((ks, key), value) in std::mem::take(folded) {
            match value {
                Some(v) => b.insert(&self.ks[ks], key, v),
                None => b.remove(&self.ks[ks], key),
            }
        }
        b.commit().map_err(io)?;
        if sync {
            self.db.persist(PersistMode::SyncAll).map_err(io)?;
        }
        Ok(())
    }

    fn decode_skip<T>(&mut self, what: &str, key: &[u8], r: Result<T, FormatError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.damage.skipped += 1;
                error!(record = what, key = %String::from_utf8_lossy(key), error = %e, "unreadable record skipped");
                None
            }
        }
    }
}

impl Engine for FjallEngine {
    fn apply(&mut self, ops: &[StoreOp], sync: bool) -> Result<(), StoreError> {
        let mut folded: BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                StoreOp::PutSession { client_id, record } => {
                    folded.insert(
                        (SESSIONS, client_id.as_bytes().to_vec()),
                        Some(format::encode_session(record)),
                    );
                }
                StoreOp::DeleteSession { client_id } => {
                    // The ranges are read from what is written: write what came before.
                    self.write(&mut folded, false)?;
                    let prefix = format::queue_prefix(client_id);
                    for ks in [QUEUE, INFLIGHT, QOS2IN] {
                        for key in self.keys_with_prefix(ks, &prefix)? {
                            folded.insert((ks, key), None);
                        }
                    }
                    folded.insert((SESSIONS, client_id.as_bytes().to_vec()), None);
                }
                StoreOp::Enqueue {
                    client_id,
                    seq,
                    record,
                } => {
                    let value = format::encode_queued(record)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    folded.insert((QUEUE, format::queue_key(client_id, *seq)), Some(value));
                }
                StoreOp::SetInflight {
                    client_id,
                    seq,
                    state,
                } => {
                    folded.insert(
                        (INFLIGHT, format::queue_key(client_id, *seq)),
                        Some(format::encode_inflight(*state)),
                    );
                }
                StoreOp::Dequeue { client_id, seq } => {
                    let key = format::queue_key(client_id, *seq);
                    folded.insert((QUEUE, key.clone()), None);
                    folded.insert((INFLIGHT, key), None);
                }
                StoreOp::IncomingQos2 {
                    client_id,
                    pid,
                    present,
                } => {
                    folded.insert(
                        (QOS2IN, format::qos2_key(client_id, *pid)),
                        present.then(Vec::new),
                    );
                }
                StoreOp::Retain { topic, msg } => {
                    let value = match msg {
                        Some(m) => Some(
                            format::encode_retained(m)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        ),
                        None => None,
                    };
                    folded.insert((RETAINED, topic.as_bytes().to_vec()), value);
                }
                StoreOp::Will { client_id, will } => {
                    let value = match will {
                        Some((m, at)) => Some(
                            format::encode_will(m, *at)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        ),
                        None => None,
                    };
                    folded.insert((WILLS, client_id.as_bytes().to_vec()), value);
                }
            }
        }
        self.write(&mut folded, sync)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(io)
    }

    fn read_queue(
        &mut self,
        client_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError> {
        let start = format::queue_key(client_id, from);
        let end = prefix_end(&format::queue_prefix(client_id));
        let mut raw = Vec::new();
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match end {
            Some(end) => Box::new(self.ks[QUEUE].range(start..end)),
            None => Box::new(self.ks[QUEUE].range(start..)),
        };
        for g in iter.take(max) {
            let (k, v) = g.into_inner().map_err(io)?;
            raw.push((k.to_vec(), v.to_vec()));
        }
        let mut out = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let Some((_, seq)) = self.decode_skip("queue key", &k, format::split_key(&k, 8)) else {
                continue;
            };
            if let Some(r) = self.decode_skip("queued message", &k, format::decode_queued(&v)) {
                out.push((seq, r));
            }
        }
        Ok(out)
    }

    fn recover(&mut self, head: usize) -> Result<Recovered, StoreError> {
        let mut out = Recovered::default();
        let mut sessions = Vec::new();
        for g in self.ks[SESSIONS].iter() {
            let (k, v) = g.into_inner().map_err(io)?;
            sessions.push((k.to_vec(), v.to_vec()));
        }
        for (k, v) in sessions {
            let Some(record) = self.decode_skip("session", &k, format::decode_session(&v)) else {
                continue;
            };
            let Ok(id) = std::str::from_utf8(&k) else {
                self.damage.skipped += 1;
                warn!("session with a client id that is not UTF-8 skipped");
                continue;
            };
            let client_id: Arc<str> = Arc::from(id);
            let prefix = format::queue_prefix(id);
            let mut entries = Vec::new();
            let iter: Box<dyn Iterator<Item = fjall::Guard>> = match prefix_end(&prefix) {
                Some(end) => Box::new(self.ks[QUEUE].range(prefix.clone()..end)),
                None => Box::new(self.ks[QUEUE].range(prefix.clone()..)),
            };
            for g in iter {
                let (k, v) = g.into_inner().map_err(io)?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            let mut rs = RecoveredSession {
                client_id: client_id.clone(),
                record,
                head: Vec::new(),
                queued: 0,
                queued_bytes: 0,
                next_seq: 1,
                incoming_qos2: Vec::new(),
            };
            for (k, v) in entries {
                let Some((_, seq)) = self.decode_skip("queue key", &k, format::split_key(&k, 8))
                else {
                    continue;
                };
                let Some(r) = self.decode_skip("queued message", &k, format::decode_queued(&v))
                else {
                    continue;
                };
                rs.queued += 1;
                rs.queued_bytes += r.msg.weight() as u64;
                rs.next_seq = rs.next_seq.max(seq + 1);
                let inflight: Option<InflightRecord> =
                    match self.ks[INFLIGHT].get(&k).map_err(io)? {
                        Some(v) => {
                            let v = v.to_vec();
                            self.decode_skip("inflight state", &k, format::decode_inflight(&v))
                        }
                        None => None,
                    };
                if rs.head.len() < head || inflight.is_some() {
                    rs.head.push((seq, r, inflight));
                }
            }
            for key in self.keys_with_prefix(QOS2IN, &prefix)? {
                if let Some((_, pid)) =
                    self.decode_skip("inbound QoS 2 id", &key, format::split_key(&key, 2))
                {
                    if let Some(pid) = u16::try_from(pid).ok().and_then(PacketId::new) {
                        rs.incoming_qos2.push(pid);
                    }
                }
            }
            out.sessions.push(rs);
        }
        let mut retained = Vec::new();
        for g in self.ks[RETAINED].iter() {
            let (k, v) = g.into_inner().map_err(io)?;
            retained.push((k.to_vec(), v.to_vec()));
        }
        for (k, v) in retained {
            if let Some(m) = self.decode_skip("retained message", &k, format::decode_retained(&v)) {
                out.retained.push(Arc::new(m));
            }
        }
        let mut wills = Vec::new();
        for g in self.ks[WILLS].iter() {
            let (k, v) = g.into_inner().map_err(io)?;
            wills.push((k.to_vec(), v.to_vec()));
        }
        for (k, v) in wills {
            let Some((m, at)) = self.decode_skip("will", &k, format::decode_will(&v)) else {
                continue;
            };
            if let Ok(id) = std::str::from_utf8(&k) {
                out.wills.push((Arc::from(id), Arc::new(m), at));
            }
        }
        Ok(out)
    }

    fn skipped_records(&self) -> u64 {
        self.damage.skipped
    }
}
