//! The three engines behind one small key-value interface: three tables (queue, sessions,
//! retained) of byte keys and byte values, atomic multi-op commits, range reads.
//!
//! Each engine is opened in one "mode" that fixes how a commit reaches the disk:
//! - `fjall-syncall`, `fjall-syncdata`: every write batch is written to the journal and the
//!   journal is `fsync`ed (`PersistMode::SyncAll`) or `fdatasync`ed (`PersistMode::SyncData`)
//!   before `commit` returns. Both survive power loss on Linux (fdatasync also flushes the
//!   file size of an appended journal).
//! - `fjall-periodic`: batches go to the OS at commit (`PersistMode::Buffer`), an `fdatasync`
//!   of the journal happens when 100 ms have passed since the last one. Survives a process
//!   crash, not a power loss of the last 100 ms.
//! - `redb-immediate`: `Durability::Immediate` (redb's default, 1-phase commit + fsync).
//! - `redb-quickrepair`: the same with `set_quick_repair(true)` (2-phase commit, allocator
//!   state saved in each commit, so that opening after a crash needs no full repair).
//! - `redb-periodic`: `Durability::None`, with an `Immediate` commit when 100 ms have passed.
//! - `sqlite-full`: WAL journal, `synchronous=FULL`: the WAL is fsynced at every commit;
//!   survives power loss.
//! - `sqlite-normal`: WAL journal, `synchronous=NORMAL`: the WAL is only fsynced at
//!   checkpoints; survives a process crash, may roll back the last commits on power loss.
//!
//! Memory: every engine gets a 32 MiB cache (fjall block cache, redb cache, SQLite page
//! cache); fjall also gets 16 MiB memtables per keyspace (default 64 MiB).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Cache of every engine: 32 MiB, or `MIDGE_BENCH_CACHE_MIB`.
pub fn cache_bytes() -> usize {
    env_mib("MIDGE_BENCH_CACHE_MIB", 32) as usize
}

/// fjall memtable size per keyspace: 16 MiB, or `MIDGE_BENCH_FJALL_MEMTABLE_MIB` (the crash
/// test uses 1 MiB so that kills also land during memtable flushes and compactions).
pub fn fjall_memtable_bytes() -> u64 {
    env_mib("MIDGE_BENCH_FJALL_MEMTABLE_MIB", 16)
}

fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
        * 1024
        * 1024
}
const PERIODIC: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Queue,
    Sessions,
    Retained,
}

const TABLES: [Table; 3] = [Table::Queue, Table::Sessions, Table::Retained];

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Queue => "queue",
            Table::Sessions => "sessions",
            Table::Retained => "retained",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
pub enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Del(Table, Vec<u8>),
}

pub trait Engine {
    /// Applies `ops` (drained) as one atomic transaction, durable as the mode says.
    fn commit(&mut self, ops: &mut Vec<Op>) -> Res<()>;
    /// Calls `f` for up to `max` entries with `start <= key < end`, in key order.
    fn scan(
        &mut self,
        t: Table,
        start: &[u8],
        end: &[u8],
        max: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Res<usize>;
    /// Deletes every key in `start..end` in one durable transaction; returns how many.
    fn delete_range(&mut self, t: Table, start: &[u8], end: &[u8]) -> Res<usize>;
    fn get(&mut self, t: Table, key: &[u8]) -> Res<Option<Vec<u8>>>;
    /// Makes everything committed so far durable (used at the end of the periodic modes
    /// and after bulk loads).
    fn sync(&mut self) -> Res<()>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> Res<()>;
}

pub const MODES: [&str; 8] = [
    "fjall-syncall",
    "fjall-syncdata",
    "fjall-periodic",
    "redb-immediate",
    "redb-quickrepair",
    "redb-periodic",
    "sqlite-full",
    "sqlite-normal",
];

/// Opens (creating if needed) the engine of `mode` in directory `dir`.
pub fn open(mode: &str, dir: &Path) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match mode {
        "fjall-syncall" => Box::new(FjallEngine::open(dir, FjallSync::All)?),
        "fjall-syncdata" => Box::new(FjallEngine::open(dir, FjallSync::Data)?),
        "fjall-periodic" => Box::new(FjallEngine::open(dir, FjallSync::Periodic)?),
        "redb-immediate" => Box::new(RedbEngine::open(dir, RedbSync::Immediate)?),
        "redb-quickrepair" => Box::new(RedbEngine::open(dir, RedbSync::QuickRepair)?),
        "redb-periodic" => Box::new(RedbEngine::open(dir, RedbSync::Periodic)?),
        "sqlite-full" => Box::new(SqliteEngine::open(dir, "FULL")?),
        "sqlite-normal" => Box::new(SqliteEngine::open(dir, "NORMAL")?),
        other => return Err(format!("unknown mode {other}").into()),
    })
}

/// Where a torn write would land: the file and the offset just past the last committed
/// byte. fjall: the end of the content of the newest journal (append-only, preallocated). redb: the end of the database
/// file (it has no log; its torn-write defence is the pair of checksummed commit slots in
/// the header, see [`redb_active_slot`]). SQLite: the end of the last valid commit frame in
/// the WAL (the WAL is reused after a checkpoint, so the file's tail may be stale frames),
/// or the end of the main file when the WAL holds no valid frame.
pub fn write_frontier(mode: &str, dir: &Path) -> Res<(PathBuf, u64)> {
    if mode.starts_with("fjall") {
        let mut journals: Vec<(u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if let Some(id) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                journals.push((id, p));
            }
        }
        journals.sort();
        let (_, p) = journals.pop().ok_or("no journal")?;
        // The active journal is preallocated (64 MiB of zeros); its content ends at the
        // last non-zero byte (a batch ends with its checksum).
        let bytes = std::fs::read(&p)?;
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Ok((p, end as u64))
    } else if mode.starts_with("redb") {
        let p = dir.join("db.redb");
        let len = std::fs::metadata(&p)?.len();
        Ok((p, len))
    } else {
        let wal = dir.join("db.sqlite-wal");
        if let Ok(bytes) = std::fs::read(&wal) {
            if let Some(end) = sqlite_wal_commit_end(&bytes) {
                return Ok((wal, end));
            }
        }
        let p = dir.join("db.sqlite");
        let len = std::fs::metadata(&p)?.len();
        Ok((p, len))
    }
}

/// End offset of the last commit frame of the current WAL generation: frames are read from
/// the start while their salts match the header's (checksums are not checked here; SQLite
/// checks them on open).
fn sqlite_wal_commit_end(wal: &[u8]) -> Option<u64> {
    if wal.len() < 32 {
        return None;
    }
    let be = |o: usize| u32::from_be_bytes([wal[o], wal[o + 1], wal[o + 2], wal[o + 3]]);
    let page = be(8) as usize;
    let (salt1, salt2) = (be(16), be(20));
    let frame = 24 + page;
    let mut off = 32;
    let mut end = None;
    while off + frame <= wal.len() {
        if be(off + 8) != salt1 || be(off + 12) != salt2 {
            break;
        }
        if be(off + 4) != 0 {
            end = Some((off + frame) as u64);
        }
        off += frame;
    }
    end
}

/// Offset and length of the commit slot redb's header marks as primary (the god byte at
/// offset 9, bit 0 selects slot 0 at 64 or slot 1 at 192; 128 bytes each).
pub fn redb_active_slot(path: &Path) -> Res<(u64, usize)> {
    let bytes = std::fs::read(path)?;
    let god = *bytes.get(9).ok_or("short redb file")?;
    Ok((if god & 1 == 0 { 64 } else { 192 }, 128))
}

// ---------------------------------------------------------------------------------------
// fjall

#[derive(Clone, Copy, PartialEq, Eq)]
enum FjallSync {
    All,
    Data,
    Periodic,
}

struct FjallEngine {
    db: fjall::Database,
    ks: Vec<fjall::Keyspace>,
    sync: FjallSync,
    last_sync: Instant,
}

impl FjallEngine {
    fn open(dir: &Path, sync: FjallSync) -> Res<Self> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes() as u64)
            .open()?;
        let mut ks = Vec::new();
        for t in TABLES {
            ks.push(db.keyspace(t.name(), || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(fjall_memtable_bytes())
            })?);
        }
        Ok(FjallEngine {
            db,
            ks,
            sync,
            last_sync: Instant::now(),
        })
    }

    fn mode(&self) -> Option<fjall::PersistMode> {
        match self.sync {
            FjallSync::All => Some(fjall::PersistMode::SyncAll),
            FjallSync::Data => Some(fjall::PersistMode::SyncData),
            FjallSync::Periodic => None,
        }
    }

    fn after_commit(&mut self) -> Res<()> {
        if self.sync == FjallSync::Periodic && self.last_sync.elapsed() >= PERIODIC {
            self.db.persist(fjall::PersistMode::SyncData)?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}

impl Engine for FjallEngine {
    fn commit(&mut self, ops: &mut Vec<Op>) -> Res<()> {
        let mut b = self.db.batch().durability(self.mode());
        for op in ops.drain(..) {
            match op {
                Op::Put(t, k, v) => b.insert(&self.ks[t.idx()], k, v),
                Op::Del(t, k) => b.remove(&self.ks[t.idx()], k),
            }
        }
        b.commit()?;
        self.after_commit()
    }

    fn scan(
        &mut self,
        t: Table,
        start: &[u8],
        end: &[u8],
        max: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Res<usize> {
        let mut n = 0;
        for g in self.ks[t.idx()].range(start..end).take(max) {
            let (k, v) = g.into_inner()?;
            f(&k, &v);
            n += 1;
        }
        Ok(n)
    }

    fn delete_range(&mut self, t: Table, start: &[u8], end: &[u8]) -> Res<usize> {
        let ks = &self.ks[t.idx()];
        let mut b = self.db.batch().durability(self.mode());
        let mut n = 0;
        for g in ks.range(start..end) {
            b.remove(ks, g.key()?);
            n += 1;
        }
        b.commit()?;
        self.after_commit()?;
        Ok(n)
    }

    fn get(&mut self, t: Table, key: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.ks[t.idx()].get(key)?.map(|v| v.to_vec()))
    }

    fn sync(&mut self) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// redb

#[derive(Clone, Copy, PartialEq, Eq)]
enum RedbSync {
    Immediate,
    QuickRepair,
    Periodic,
}

type RTable = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
const REDB_TABLES: [RTable; 3] = [
    redb::TableDefinition::new("queue"),
    redb::TableDefinition::new("sessions"),
    redb::TableDefinition::new("retained"),
];

struct RedbEngine {
    db: redb::Database,
    sync: RedbSync,
    last_sync: Instant,
}

impl RedbEngine {
    fn open(dir: &Path, sync: RedbSync) -> Res<Self> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes())
            .create(dir.join("db.redb"))?;
        let e = RedbEngine {
            db,
            sync,
            last_sync: Instant::now(),
        };
        // Create the tables so that reads never meet a missing table.
        let tx = e.begin()?;
        for t in REDB_TABLES {
            tx.open_table(t)?;
        }
        tx.commit()?;
        Ok(e)
    }

    fn begin(&self) -> Res<redb::WriteTransaction> {
        let mut tx = self.db.begin_write()?;
        match self.sync {
            RedbSync::Immediate => tx.set_durability(redb::Durability::Immediate)?,
            RedbSync::QuickRepair => {
                tx.set_durability(redb::Durability::Immediate)?;
                tx.set_quick_repair(true);
            }
            RedbSync::Periodic => {
                if self.last_sync.elapsed() >= PERIODIC {
                    tx.set_durability(redb::Durability::Immediate)?;
                } else {
                    tx.set_durability(redb::Durability::None)?;
                }
            }
        }
        Ok(tx)
    }

    fn committed(&mut self) {
        if self.sync == RedbSync::Periodic && self.last_sync.elapsed() >= PERIODIC {
            self.last_sync = Instant::now();
        }
    }
}

impl Engine for RedbEngine {
    fn commit(&mut self, ops: &mut Vec<Op>) -> Res<()> {
        let tx = self.begin()?;
        {
            let mut tables = [
                tx.open_table(REDB_TABLES[0])?,
                tx.open_table(REDB_TABLES[1])?,
                tx.open_table(REDB_TABLES[2])?,
            ];
            for op in ops.drain(..) {
                match op {
                    Op::Put(t, k, v) => {
                        tables[t.idx()].insert(k.as_slice(), v.as_slice())?;
                    }
                    Op::Del(t, k) => {
                        tables[t.idx()].remove(k.as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        self.committed();
        Ok(())
    }

    fn scan(
        &mut self,
        t: Table,
        start: &[u8],
        end: &[u8],
        max: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Res<usize> {
        use redb::ReadableDatabase;
        let rx = self.db.begin_read()?;
        let table = rx.open_table(REDB_TABLES[t.idx()])?;
        let mut n = 0;
        for r in table.range::<&[u8]>(start..end)?.take(max) {
            let (k, v) = r?;
            f(k.value(), v.value());
            n += 1;
        }
        Ok(n)
    }

    fn delete_range(&mut self, t: Table, start: &[u8], end: &[u8]) -> Res<usize> {
        let tx = self.begin()?;
        let mut n = 0;
        {
            let mut table = tx.open_table(REDB_TABLES[t.idx()])?;
            table.retain_in::<&[u8], _>(start..end, |_, _| {
                n += 1;
                false
            })?;
        }
        tx.commit()?;
        self.committed();
        Ok(n)
    }

    fn get(&mut self, t: Table, key: &[u8]) -> Res<Option<Vec<u8>>> {
        use redb::ReadableDatabase;
        let rx = self.db.begin_read()?;
        let table = rx.open_table(REDB_TABLES[t.idx()])?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn sync(&mut self) -> Res<()> {
        // An empty commit, durable, with this mode's repair setting (a quick-repair
        // database must end on a quick-repair commit to open without a full repair).
        let mut tx = self.begin()?;
        tx.set_durability(redb::Durability::Immediate)?;
        tx.commit()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        let mut me = self;
        me.sync()?;
        drop(me);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

struct SqliteEngine {
    conn: rusqlite::Connection,
}

impl SqliteEngine {
    fn open(dir: &Path, synchronous: &str) -> Res<Self> {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(format!("journal_mode is {mode}").into());
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous};
             PRAGMA cache_size=-{};
             CREATE TABLE IF NOT EXISTS queue(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS sessions(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS retained(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
            cache_bytes() / 1024
        ))?;
        Ok(SqliteEngine { conn })
    }
}

impl Engine for SqliteEngine {
    fn commit(&mut self, ops: &mut Vec<Op>) -> Res<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for op in ops.drain(..) {
            match op {
                Op::Put(t, k, v) => {
                    let sql = match t {
                        Table::Queue => "INSERT OR REPLACE INTO queue(k, v) VALUES (?1, ?2)",
                        Table::Sessions => "INSERT OR REPLACE INTO sessions(k, v) VALUES (?1, ?2)",
                        Table::Retained => "INSERT OR REPLACE INTO retained(k, v) VALUES (?1, ?2)",
                    };
                    tx.prepare_cached(sql)?.execute((k, v))?;
                }
                Op::Del(t, k) => {
                    let sql = match t {
                        Table::Queue => "DELETE FROM queue WHERE k = ?1",
                        Table::Sessions => "DELETE FROM sessions WHERE k = ?1",
                        Table::Retained => "DELETE FROM retained WHERE k = ?1",
                    };
                    tx.prepare_cached(sql)?.execute((k,))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn scan(
        &mut self,
        t: Table,
        start: &[u8],
        end: &[u8],
        max: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Res<usize> {
        let sql = format!(
            "SELECT k, v FROM {} WHERE k >= ?1 AND k < ?2 ORDER BY k LIMIT ?3",
            t.name()
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query((start, end, max as i64))?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let k = row.get_ref(0)?.as_blob()?;
            let v = row.get_ref(1)?.as_blob()?;
            f(k, v);
            n += 1;
        }
        Ok(n)
    }

    fn delete_range(&mut self, t: Table, start: &[u8], end: &[u8]) -> Res<usize> {
        let sql = format!("DELETE FROM {} WHERE k >= ?1 AND k < ?2", t.name());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.prepare_cached(&sql)?.execute((start, end))?;
        tx.commit()?;
        Ok(n)
    }

    fn get(&mut self, t: Table, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let sql = format!("SELECT v FROM {} WHERE k = ?1", t.name());
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query((key,))?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    fn sync(&mut self) -> Res<()> {
        // A checkpoint syncs the WAL first (also in NORMAL mode).
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}
