//! The measured scenarios. Each runs in its own child process (so that VmHWM is the peak of
//! that engine alone) and prints one `R key=value ...` line for the parent to collect.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engines::{self, Op, Res, Table};
use crate::util::{self, ms, percentile, queue_key, session_range, Rng};

/// Pool of pre-built 120-byte values; each use stamps its message id into bytes 8..16, so
/// that building a batch costs a clone, not a format.
struct ValuePool(Vec<Vec<u8>>);

impl ValuePool {
    fn new(rng: &mut Rng, n: usize) -> Self {
        ValuePool((0..n).map(|i| util::queued_value(rng, i as u64)).collect())
    }
    fn get(&self, rng: &mut Rng, msg_id: u64) -> Vec<u8> {
        let mut v = self.0[rng.below(self.0.len() as u64) as usize].clone();
        v[8..16].copy_from_slice(&msg_id.to_be_bytes());
        v
    }
}

fn emit(fields: &[(&str, String)]) {
    let mut line = String::from("R");
    for (k, v) in fields {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(v);
    }
    println!("{line}");
}

fn f(x: f64) -> String {
    format!("{x:.3}")
}

fn lat_fields(prefix: &str, lat: &mut [Duration], out: &mut Vec<(String, String)>) {
    lat.sort();
    out.push((format!("{prefix}_p50_ms"), f(ms(percentile(lat, 0.50)))));
    out.push((format!("{prefix}_p99_ms"), f(ms(percentile(lat, 0.99)))));
    out.push((format!("{prefix}_max_ms"), f(ms(percentile(lat, 1.0)))));
}

fn emit_owned(v: Vec<(String, String)>) {
    let borrowed: Vec<(&str, String)> = v.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    emit(&borrowed);
}

/// Scenario A, durable group commit: 1,000 sessions each holding ~100 queued messages;
/// every op is one PUBLISH delivered to 1..=10 random sessions (an insert each), and the
/// oldest entry of a session whose queue passes 100 is deleted (its acknowledgement).
/// `batch` ops per commit. Runs at least `secs` and 20 commits.
pub fn scenario_a(mode: &str, batch: usize, dir: &Path, secs: f64) -> Res<()> {
    const SESSIONS: usize = 1000;
    const DEPTH: u64 = 100;
    let mut rng = Rng::new(0xA + batch as u64);
    let pool = ValuePool::new(&mut rng, 4096);
    let mut e = engines::open(mode, dir)?;
    let mut ops = Vec::new();
    let mut msg_id = 0u64;
    for sid in 0..SESSIONS as u32 {
        for seq in 0..DEPTH {
            msg_id += 1;
            ops.push(Op::Put(
                Table::Queue,
                queue_key(sid, seq),
                pool.get(&mut rng, msg_id),
            ));
        }
        if ops.len() >= 10_000 {
            e.commit(&mut ops)?;
        }
    }
    e.commit(&mut ops)?;
    e.sync()?;

    let mut head = vec![0u64; SESSIONS];
    let mut tail = vec![DEPTH; SESSIONS];
    let (mut msgs, mut inserts, mut deletes) = (0u64, 0u64, 0u64);
    let mut lat = Vec::new();
    let io0 = util::io_write_bytes();
    let start = Instant::now();
    loop {
        let t0 = Instant::now();
        for _ in 0..batch {
            msgs += 1;
            msg_id += 1;
            let fanout = 1 + rng.below(10);
            for _ in 0..fanout {
                let s = rng.below(SESSIONS as u64) as usize;
                ops.push(Op::Put(
                    Table::Queue,
                    queue_key(s as u32, tail[s]),
                    pool.get(&mut rng, msg_id),
                ));
                tail[s] += 1;
                inserts += 1;
                if tail[s] - head[s] > DEPTH {
                    ops.push(Op::Del(Table::Queue, queue_key(s as u32, head[s])));
                    head[s] += 1;
                    deletes += 1;
                }
            }
        }
        e.commit(&mut ops)?;
        lat.push(t0.elapsed());
        let el = start.elapsed().as_secs_f64();
        if (el >= secs && lat.len() >= 20) || el >= secs * 4.0 {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    e.sync()?;
    let written = util::io_write_bytes() - io0;

    // A reconnecting session reads its queue head: after all this churn (deleted entries
    // in front of every head), how long does that take?
    let mut head_lat = Vec::new();
    for _ in 0..200 {
        let s = rng.below(SESSIONS as u64) as u32;
        let (a, b) = session_range(s);
        let t0 = Instant::now();
        let n = e.scan(Table::Queue, &a, &b, 100, &mut |_, _| {})?;
        head_lat.push(t0.elapsed());
        if n != 100 {
            return Err(format!("session {s}: read {n} queued, expected 100").into());
        }
    }
    let (rss, hwm) = util::rss();
    let mut out = vec![
        ("scenario".to_string(), "A".to_string()),
        ("mode".into(), mode.into()),
        ("batch".into(), batch.to_string()),
        ("commits".into(), lat.len().to_string()),
        ("msgs_per_s".into(), f(msgs as f64 / wall)),
        ("inserts_per_s".into(), f(inserts as f64 / wall)),
        ("deletes_per_s".into(), f(deletes as f64 / wall)),
        (
            "written_bytes_per_insert".into(),
            f(written as f64 / inserts as f64),
        ),
    ];
    lat_fields("commit", &mut lat, &mut out);
    lat_fields("head_read", &mut head_lat, &mut out);
    out.push(("rss_mib".into(), f(rss as f64 / 1048576.0)));
    out.push(("hwm_mib".into(), f(hwm as f64 / 1048576.0)));
    emit_owned(out);
    e.close()?;
    Ok(())
}

pub const B_SESSIONS: u32 = 10_000;
pub const B_PER_SESSION: u64 = 100;
pub const B_COMMIT: usize = 1000;

/// Scenario B, offline backlog: 10,000 sessions x 100 messages written in durable commits of
/// 1,000 entries, interleaved as they would arrive (each round of 10,000 is one random
/// permutation of the sessions). Then the heads of 1,000 random sessions are read, then
/// 1,000 other sessions expire (all their entries deleted, one durable commit each).
pub fn scenario_b(mode: &str, dir: &Path) -> Res<()> {
    let mut out: Vec<(String, String)> = vec![
        ("scenario".into(), "B".into()),
        ("mode".into(), mode.into()),
    ];
    let (rss0, _) = util::rss();
    out.push(("rss_start_mib".into(), f(rss0 as f64 / 1048576.0)));
    let mut rng = Rng::new(0xB);
    let pool = ValuePool::new(&mut rng, 4096);
    let mut e = engines::open(mode, dir)?;
    let mut perm: Vec<u32> = (0..B_SESSIONS).collect();
    let mut ops = Vec::with_capacity(B_COMMIT);
    let mut lat = Vec::new();
    let mut msg_id = 0u64;
    let io0 = util::io_write_bytes();
    let start = Instant::now();
    for round in 0..B_PER_SESSION {
        rng.shuffle(&mut perm);
        for &sid in &perm {
            msg_id += 1;
            ops.push(Op::Put(
                Table::Queue,
                queue_key(sid, round),
                pool.get(&mut rng, msg_id),
            ));
            if ops.len() == B_COMMIT {
                let t0 = Instant::now();
                e.commit(&mut ops)?;
                lat.push(t0.elapsed());
            }
        }
    }
    let t0 = Instant::now();
    e.commit(&mut ops)?;
    lat.push(t0.elapsed());
    e.sync()?;
    let write_s = start.elapsed().as_secs_f64();
    let written = util::io_write_bytes() - io0;
    out.push((
        "written_bytes_per_msg".into(),
        f(written as f64 / msg_id as f64),
    ));
    let (rss1, hwm1) = util::rss();
    let (app, alloc) = util::dir_size(dir);
    out.push(("write_s".into(), f(write_s)));
    out.push(("msgs_per_s".into(), f(msg_id as f64 / write_s)));
    lat_fields("commit", &mut lat, &mut out);
    out.push(("rss_after_write_mib".into(), f(rss1 as f64 / 1048576.0)));
    out.push(("hwm_after_write_mib".into(), f(hwm1 as f64 / 1048576.0)));
    out.push(("disk_after_write_mib".into(), f(app as f64 / 1048576.0)));
    out.push((
        "disk_alloc_after_write_mib".into(),
        f(alloc as f64 / 1048576.0),
    ));

    // Reconnect: read the head (first 100 entries) of 1,000 random sessions.
    let mut sids: Vec<u32> = (0..B_SESSIONS).collect();
    rng.shuffle(&mut sids);
    let (readers, expirers) = sids.split_at(1000);
    let mut read_lat = Vec::new();
    let mut bytes = 0usize;
    for &s in readers {
        let (a, b) = session_range(s);
        let t0 = Instant::now();
        let n = e.scan(Table::Queue, &a, &b, 100, &mut |k, v| {
            bytes += k.len() + v.len()
        })?;
        read_lat.push(t0.elapsed());
        if n != 100 {
            return Err(format!("session {s}: read {n}, expected 100").into());
        }
    }
    lat_fields("head_read", &mut read_lat, &mut out);

    // Session expiry: delete all entries of 1,000 other sessions, one durable commit each.
    let mut del_lat = Vec::new();
    let t_del = Instant::now();
    for &s in &expirers[..1000] {
        let (a, b) = session_range(s);
        let t0 = Instant::now();
        let n = e.delete_range(Table::Queue, &a, &b)?;
        del_lat.push(t0.elapsed());
        if n != 100 {
            return Err(format!("session {s}: deleted {n}, expected 100").into());
        }
    }
    out.push(("expire_1000_s".into(), f(t_del.elapsed().as_secs_f64())));
    lat_fields("expire", &mut del_lat, &mut out);
    let (rss2, hwm2) = util::rss();
    out.push(("rss_end_mib".into(), f(rss2 as f64 / 1048576.0)));
    out.push(("hwm_end_mib".into(), f(hwm2 as f64 / 1048576.0)));
    let t_close = Instant::now();
    e.close()?;
    out.push(("close_ms".into(), f(ms(t_close.elapsed()))));
    let (app, alloc) = util::dir_size(dir);
    out.push(("disk_closed_mib".into(), f(app as f64 / 1048576.0)));
    out.push(("disk_alloc_closed_mib".into(), f(alloc as f64 / 1048576.0)));
    // Which sessions expired, for the recovery check of scenario D.
    out.push(("expired_sid".into(), expirers[0].to_string()));
    out.push(("kept_sid".into(), readers[0].to_string()));
    emit_owned(out);
    Ok(())
}

/// Scenario D, reopen after B. `phase` is `clean` (B closed cleanly) or `crash` (the
/// previous `clean` phase ended with a durable commit and `process::exit` without closing:
/// the state a SIGKILL leaves). Reports the time from open to the first read of a queue
/// head, with the OS page cache dropped first when permitted. The `clean` phase then
/// commits one message durably and exits without closing.
pub fn scenario_d(mode: &str, dir: &Path, phase: &str, kept: u32, expired: u32) -> Res<()> {
    let cold = util::drop_page_cache();
    let t0 = Instant::now();
    let mut e = engines::open(mode, dir)?;
    let open_ms = ms(t0.elapsed());
    let (a, b) = session_range(kept);
    let n = e.scan(Table::Queue, &a, &b, 100, &mut |_, _| {})?;
    let first_read_ms = ms(t0.elapsed());
    let (a2, b2) = session_range(expired);
    let gone = e.scan(Table::Queue, &a2, &b2, 100, &mut |_, _| {})?;
    let (rss, hwm) = util::rss();
    let mut extra = 0;
    if phase == "crash" {
        // The message committed just before the simulated kill must be there.
        let (a3, b3) = session_range(B_SESSIONS + 1);
        extra = e.scan(Table::Queue, &a3, &b3, 10, &mut |_, _| {})?;
    }
    emit(&[
        ("scenario", "D".into()),
        ("mode", mode.into()),
        ("phase", phase.into()),
        ("page_cache_dropped", cold.to_string()),
        ("open_ms", f(open_ms)),
        ("first_read_ms", f(first_read_ms)),
        ("kept_read", n.to_string()),
        ("expired_read", gone.to_string()),
        ("crash_commit_present", extra.to_string()),
        ("rss_mib", f(rss as f64 / 1048576.0)),
        ("hwm_mib", f(hwm as f64 / 1048576.0)),
    ]);
    if phase == "clean" {
        let mut ops = vec![Op::Put(
            Table::Queue,
            queue_key(B_SESSIONS + 1, 0),
            vec![7u8; 120],
        )];
        e.commit(&mut ops)?;
        e.sync()?;
        use std::io::Write;
        std::io::stdout().flush()?;
        // No close, no destructors: what a kill leaves on disk.
        std::process::exit(0);
    }
    e.close()?;
    Ok(())
}

/// Scenario C, session state and retained messages: 10,000 session records (~200 bytes)
/// and 100,000 retained topics (~120-byte messages). Each op is a session update (50%),
/// a retained put (40%) or a retained delete (10%); 64 ops per durable commit.
pub fn scenario_c(mode: &str, dir: &Path, secs: f64) -> Res<()> {
    const SESSIONS: u32 = 10_000;
    const TOPICS: u32 = 100_000;
    const BATCH: usize = 64;
    let mut rng = Rng::new(0xC);
    let pool = ValuePool::new(&mut rng, 4096);
    let sess_pool: Vec<Vec<u8>> = (0..1024)
        .map(|i| util::session_value(&mut rng, i))
        .collect();
    let mut e = engines::open(mode, dir)?;
    let mut ops = Vec::new();
    for s in 0..SESSIONS {
        ops.push(Op::Put(
            Table::Sessions,
            s.to_be_bytes().to_vec(),
            sess_pool[s as usize % 1024].clone(),
        ));
    }
    e.commit(&mut ops)?;
    for t in 0..TOPICS {
        ops.push(Op::Put(
            Table::Retained,
            util::retained_key(t),
            pool.get(&mut rng, t as u64),
        ));
        if ops.len() >= 10_000 {
            e.commit(&mut ops)?;
        }
    }
    e.commit(&mut ops)?;
    e.sync()?;

    let mut lat = Vec::new();
    let mut n_ops = 0u64;
    let start = Instant::now();
    loop {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            n_ops += 1;
            let r = rng.below(10);
            if r < 5 {
                let s = rng.below(SESSIONS as u64) as u32;
                let mut v = sess_pool[rng.below(1024) as usize].clone();
                v[..8].copy_from_slice(&n_ops.to_be_bytes());
                ops.push(Op::Put(Table::Sessions, s.to_be_bytes().to_vec(), v));
            } else if r < 9 {
                let t = rng.below(TOPICS as u64) as u32;
                ops.push(Op::Put(
                    Table::Retained,
                    util::retained_key(t),
                    pool.get(&mut rng, n_ops),
                ));
            } else {
                let t = rng.below(TOPICS as u64) as u32;
                ops.push(Op::Del(Table::Retained, util::retained_key(t)));
            }
        }
        e.commit(&mut ops)?;
        lat.push(t0.elapsed());
        let el = start.elapsed().as_secs_f64();
        if (el >= secs && lat.len() >= 20) || el >= secs * 4.0 {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let mut out = vec![
        ("scenario".to_string(), "C".to_string()),
        ("mode".into(), mode.into()),
        ("commits".into(), lat.len().to_string()),
        ("ops_per_s".into(), f(n_ops as f64 / wall)),
    ];
    lat_fields("commit", &mut lat, &mut out);
    emit_owned(out);
    e.close()?;
    Ok(())
}
