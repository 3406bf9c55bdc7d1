//! Crash and torn-write checks.
//!
//! `crash_child` commits forever: commit `i` inserts 16 queue entries (sequence numbers
//! `16*i .. 16*i+16`, each value carrying `i`), deletes the 16 entries of commit `i-50`
//! and sets `sessions["last"] = i`, all in one durable transaction; only after `commit`
//! returns does it print `i` on stdout (the "acknowledgement"). The parent SIGKILLs it at a
//! random moment (commits also rewrite 4 KiB of filler, so that files grow and background
//! work runs) and runs `verify` in a fresh process, which must find exactly the commits
//! `hi-49 ..= hi` (whole, never partial), with `hi == sessions["last"]` and
//! `hi >= last acknowledged` (nothing acknowledged lost) and `hi <= acknowledged + 1`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::engines::{self, Op, Res, Table};
use crate::util::{ms, parse_queue_key, queue_key, Rng};

const PER_COMMIT: u64 = 16;
const WINDOW: u64 = 50;
const LAST: &[u8] = b"last";

fn commit_key(i: u64, j: u64) -> Vec<u8> {
    queue_key((i % 64) as u32, i * PER_COMMIT + j)
}

pub fn crash_child(mode: &str, dir: &Path) -> Res<()> {
    let mut e = engines::open(mode, dir)?;
    let start = match e.get(Table::Sessions, LAST)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into()?),
        None => 0,
    };
    let mut rng = Rng::new(start + 1);
    let mut ops = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "start {start}")?;
    out.flush()?;
    for i in start + 1.. {
        for j in 0..PER_COMMIT {
            let mut v = vec![0u8; 120];
            rng.fill(&mut v);
            v[..8].copy_from_slice(&i.to_be_bytes());
            ops.push(Op::Put(Table::Queue, commit_key(i, j), v));
        }
        if i > WINDOW {
            for j in 0..PER_COMMIT {
                ops.push(Op::Del(Table::Queue, commit_key(i - WINDOW, j)));
            }
        }
        ops.push(Op::Put(
            Table::Sessions,
            LAST.to_vec(),
            i.to_be_bytes().to_vec(),
        ));
        // 4 KiB of filler per commit so that the files grow, journals rotate, memtables
        // flush and WAL checkpoints run while the kills land.
        let mut blob = vec![0u8; 4096];
        rng.fill(&mut blob);
        ops.push(Op::Put(
            Table::Retained,
            format!("blob/{}", i % 8).into_bytes(),
            blob,
        ));
        e.commit(&mut ops)?;
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}

/// Opens, scans everything, checks the invariants; prints one `R` line. `acked` is the last
/// commit the parent saw acknowledged.
pub fn verify(mode: &str, dir: &Path, acked: u64) -> Res<()> {
    let t0 = Instant::now();
    let opened = engines::open(mode, dir);
    let open_ms = ms(t0.elapsed());
    let mut e = match opened {
        Ok(e) => e,
        Err(err) => {
            println!(
                "R open=refused open_ms={open_ms:.3} error={}",
                err.to_string().replace(char::is_whitespace, "_")
            );
            return Ok(());
        }
    };
    let mut counts: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut bad_values = 0u64;
    let scan = e.scan(
        Table::Queue,
        &[],
        &[0xff; 13],
        usize::MAX,
        &mut |k, v| match parse_queue_key(k) {
            Some((_, seq)) => {
                let i = seq / PER_COMMIT;
                *counts.entry(i).or_default() += 1;
                if v.len() != 120 || v[..8] != i.to_be_bytes() {
                    bad_values += 1;
                }
            }
            None => bad_values += 1,
        },
    );
    if let Err(err) = scan {
        println!(
            "R open=ok scan=error open_ms={open_ms:.3} error={}",
            err.to_string().replace(char::is_whitespace, "_")
        );
        return Ok(());
    }
    let last = match e.get(Table::Sessions, LAST) {
        Ok(Some(v)) => u64::from_be_bytes(v.as_slice().try_into()?),
        Ok(None) => 0,
        Err(err) => {
            println!(
                "R open=ok scan=ok get=error open_ms={open_ms:.3} error={}",
                err.to_string().replace(char::is_whitespace, "_")
            );
            return Ok(());
        }
    };
    let partial = counts.values().filter(|&&c| c != PER_COMMIT).count();
    let lo = counts.keys().next().copied().unwrap_or(0);
    let hi = counts.keys().next_back().copied().unwrap_or(0);
    let contiguous = counts.is_empty() || (hi - lo + 1) as usize == counts.len();
    let expect_len = hi.min(WINDOW);
    let consistent = partial == 0
        && bad_values == 0
        && contiguous
        && hi == last
        && counts.len() as u64 == expect_len;
    let lost = acked.saturating_sub(last);
    println!(
        "R open=ok scan=ok open_ms={open_ms:.3} acked={acked} recovered={last} lost_acked={lost} \
         consistent={consistent} partial_commits={partial} bad_values={bad_values} commits_present={}",
        counts.len()
    );
    // A write after recovery must work too (the broker goes on running).
    let mut ops = vec![Op::Put(Table::Sessions, b"probe".to_vec(), vec![1])];
    match e.commit(&mut ops) {
        Ok(()) => println!("R write_after=ok"),
        Err(err) => println!(
            "R write_after=error error={}",
            err.to_string().replace(char::is_whitespace, "_")
        ),
    }
    let _ = e.close();
    Ok(())
}
