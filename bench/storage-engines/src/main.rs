//! Storage-engine benchmark for midge: fjall vs redb vs SQLite (rusqlite, bundled) on the
//! broker's persistence workload. See README.md for what is measured and why.
//!
//! The parent process (`run`, the default) starts one child process per measurement (so
//! that each engine's peak RSS is its own), collects the `R key=value` lines they print,
//! and writes a markdown report with the median of the repetitions and their spread.

mod crash;
mod engines;
mod scenarios;
mod util;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use engines::Res;
use util::Rng;

type Fields = BTreeMap<String, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = dispatch(&args);
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn arg(args: &[String], i: usize) -> Res<&str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}").into())
}

fn dispatch(args: &[String]) -> Res<()> {
    let cmd = args.first().map(String::as_str).unwrap_or("run");
    match cmd {
        "child-a" => scenarios::scenario_a(
            arg(args, 1)?,
            arg(args, 2)?.parse()?,
            Path::new(arg(args, 3)?),
            arg(args, 4)?.parse()?,
        ),
        "child-b" => scenarios::scenario_b(arg(args, 1)?, Path::new(arg(args, 2)?)),
        "child-c" => scenarios::scenario_c(
            arg(args, 1)?,
            Path::new(arg(args, 2)?),
            arg(args, 3)?.parse()?,
        ),
        "child-d" => scenarios::scenario_d(
            arg(args, 1)?,
            Path::new(arg(args, 2)?),
            arg(args, 3)?,
            arg(args, 4)?.parse()?,
            arg(args, 5)?.parse()?,
        ),
        "crash-child" => crash::crash_child(arg(args, 1)?, Path::new(arg(args, 2)?)),
        "verify" => crash::verify(
            arg(args, 1)?,
            Path::new(arg(args, 2)?),
            arg(args, 3)?.parse()?,
        ),
        "run" => run(&args[1.min(args.len())..]),
        "-h" | "--help" | "help" => {
            println!(
                "usage: storage-engines-bench [run] [--reps N] [--secs S] [--kills N] \
                 [--only A,B,C,D,crash,torn] [--modes m1,m2] [--dir DIR] [--out FILE]"
            );
            Ok(())
        }
        other => Err(format!("unknown command {other}").into()),
    }
}

struct Opts {
    reps: usize,
    secs: f64,
    kills: usize,
    only: Vec<String>,
    modes: Vec<String>,
    dir: PathBuf,
    out: Option<PathBuf>,
}

fn parse_opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        reps: 3,
        secs: 0.6,
        kills: 20,
        only: ["A", "B", "C", "D", "crash", "torn"]
            .map(String::from)
            .to_vec(),
        modes: engines::MODES.map(String::from).to_vec(),
        dir: PathBuf::from("/tmp/midge-storage-bench"),
        out: None,
    };
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--reps" => o.reps = v.parse()?,
            "--secs" => o.secs = v.parse()?,
            "--kills" => o.kills = v.parse()?,
            "--only" => o.only = v.split(',').map(String::from).collect(),
            "--modes" => o.modes = v.split(',').map(String::from).collect(),
            "--dir" => o.dir = PathBuf::from(v),
            "--out" => o.out = Some(PathBuf::from(v)),
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    Ok(o)
}

/// Runs this executable with `args`, returns the merged `R` fields, or an error with the
/// end of its stderr. Kills it after `timeout`.
fn child(args: &[&str], timeout: Duration) -> Result<Fields, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = c.stdout.take().ok_or("no stdout")?;
    let stderr = c.stderr.take().ok_or("no stderr")?;
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            v.push(l);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            v.push(l);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        match c.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > timeout => {
                let _ = c.kill();
                let _ = c.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let lines = out_t.join().unwrap_or_default();
    let errs = err_t.join().unwrap_or_default();
    let mut f = Fields::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("R ") {
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    f.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    let tail: Vec<&str> = errs
        .iter()
        .rev()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match status {
        None => {
            f.insert("status".into(), "timeout".into());
            Ok(f)
        }
        Some(s) if s.success() => Ok(f),
        Some(s) => {
            f.insert(
                "status".into(),
                format!(
                    "exit:{}",
                    s.code().map_or("signal".into(), |c| c.to_string())
                ),
            );
            f.insert(
                "stderr".into(),
                tail.join(" | ").replace(char::is_whitespace, "_"),
            );
            if f.len() > 2 {
                Ok(f)
            } else {
                Err(format!("{args:?}: {s}: {}", tail.join(" | ")))
            }
        }
    }
}

fn fresh(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

fn num(f: &Fields, k: &str) -> Option<f64> {
    f.get(k).and_then(|v| v.parse().ok())
}

/// Median of a field over repetitions, and the spread (max-min) relative to the median.
fn med(rs: &[Fields], k: &str) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = rs.iter().filter_map(|r| num(r, k)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v[v.len() / 2];
    let spread = if m != 0.0 {
        (v[v.len() - 1] - v[0]) / m * 100.0
    } else {
        0.0
    };
    Some((m, spread))
}

fn fmt_num(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.0}", x)
    } else if x >= 10.0 {
        format!("{:.1}", x)
    } else if x >= 1.0 {
        format!("{:.2}", x)
    } else {
        format!("{:.3}", x)
    }
}

fn cell(rs: &[Fields], k: &str) -> String {
    med(rs, k).map_or("-".into(), |(m, _)| fmt_num(m))
}

fn cell_spread(rs: &[Fields], k: &str) -> String {
    med(rs, k).map_or("-".into(), |(m, s)| {
        format!("{} (±{:.0}%)", fmt_num(m), s / 2.0)
    })
}

fn log(msg: &str) {
    eprintln!(
        "[{:>7.1}s] {msg}",
        START.with(|s| s.elapsed().as_secs_f64())
    );
}

thread_local! {
    static START: Instant = Instant::now();
}

fn durable_modes(modes: &[String]) -> Vec<String> {
    [
        "fjall-syncall",
        "redb-immediate",
        "redb-quickrepair",
        "sqlite-full",
    ]
    .iter()
    .filter(|m| modes.iter().any(|x| x == *m))
    .map(|m| m.to_string())
    .collect()
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_opts(args)?;
    START.with(|_| ());
    let want = |s: &str| o.only.iter().any(|x| x == s);
    std::fs::create_dir_all(&o.dir)?;
    let mut a: BTreeMap<(String, usize), Vec<Fields>> = BTreeMap::new();
    let mut b: BTreeMap<String, Vec<Fields>> = BTreeMap::new();
    let mut c: BTreeMap<String, Vec<Fields>> = BTreeMap::new();
    let mut d: BTreeMap<(String, String), Vec<Fields>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let secs = o.secs.to_string();
    let long = Duration::from_secs(300);

    for rep in 0..o.reps {
        if want("A") {
            for mode in &o.modes {
                for batch in [1usize, 16, 128, 1024] {
                    let dir = o.dir.join(format!("a-{mode}-{batch}"));
                    fresh(&dir)?;
                    let bs = batch.to_string();
                    match child(
                        &["child-a", mode, &bs, dir.to_str().unwrap_or(""), &secs],
                        long,
                    ) {
                        Ok(f) => {
                            log(&format!(
                                "rep {rep} A {mode} batch {batch}: {} msg/s, p99 {} ms",
                                f.get("msgs_per_s").map_or("?", String::as_str),
                                f.get("commit_p99_ms").map_or("?", String::as_str)
                            ));
                            a.entry((mode.clone(), batch)).or_default().push(f);
                        }
                        Err(e) => errors.push(format!("A {mode} {batch}: {e}")),
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        if want("C") {
            for mode in durable_modes(&o.modes) {
                let dir = o.dir.join(format!("c-{mode}"));
                fresh(&dir)?;
                match child(&["child-c", &mode, dir.to_str().unwrap_or(""), &secs], long) {
                    Ok(f) => {
                        log(&format!(
                            "rep {rep} C {mode}: {} ops/s",
                            f.get("ops_per_s").map_or("?", String::as_str)
                        ));
                        c.entry(mode.clone()).or_default().push(f);
                    }
                    Err(e) => errors.push(format!("C {mode}: {e}")),
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        if want("B") {
            // redb-quickrepair writes like redb-immediate (scenario A shows the commit cost);
            // it only changes what a crash leaves, so D opens redb-immediate's B database in
            // both redb modes instead of writing 1,000,000 messages once more.
            for mode in durable_modes(&o.modes)
                .into_iter()
                .filter(|m| m != "redb-quickrepair")
            {
                let dir = o.dir.join(format!("b-{mode}"));
                fresh(&dir)?;
                let ds = dir.to_str().unwrap_or("").to_string();
                let fb = match child(&["child-b", &mode, &ds], Duration::from_secs(600)) {
                    Ok(f) => f,
                    Err(e) => {
                        errors.push(format!("B {mode}: {e}"));
                        continue;
                    }
                };
                log(&format!(
                    "rep {rep} B {mode}: write {} s, rss {} MiB, peak {} MiB, disk {} MiB",
                    fb.get("write_s").map_or("?", String::as_str),
                    fb.get("rss_after_write_mib").map_or("?", String::as_str),
                    fb.get("hwm_end_mib").map_or("?", String::as_str),
                    fb.get("disk_closed_mib").map_or("?", String::as_str),
                ));
                let kept = fb.get("kept_sid").cloned().unwrap_or_default();
                let expired = fb.get("expired_sid").cloned().unwrap_or_default();
                b.entry(mode.clone()).or_default().push(fb);
                let mut d_modes = vec![mode.clone()];
                if mode == "redb-immediate" && o.modes.iter().any(|m| m == "redb-quickrepair") {
                    d_modes.push("redb-quickrepair".to_string());
                }
                for mode in d_modes.iter().filter(|_| want("D")) {
                    for phase in ["clean", "crash"] {
                        match child(&["child-d", mode, &ds, phase, &kept, &expired], long) {
                            Ok(f) => {
                                log(&format!(
                                    "rep {rep} D {mode} {phase}: open->first read {} ms",
                                    f.get("first_read_ms").map_or("?", String::as_str)
                                ));
                                d.entry((mode.clone(), phase.to_string()))
                                    .or_default()
                                    .push(f);
                            }
                            Err(e) => errors.push(format!("D {mode} {phase}: {e}")),
                        }
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    let mut crash_rows = Vec::new();
    let mut torn_rows = Vec::new();
    if want("crash") || want("torn") {
        for mode in durable_modes(&o.modes) {
            let dir = o.dir.join(format!("crash-{mode}"));
            fresh(&dir)?;
            let mut rng = Rng::new(42);
            let mut results = Vec::new();
            let kills = if want("crash") { o.kills } else { 0 };
            // Small fjall memtables so that kills also land in flushes and compactions.
            let crash_env = [("MIDGE_BENCH_FJALL_MEMTABLE_MIB", "1")];
            for k in 0..kills {
                let (acked, delay) = kill_run(&mode, &dir, &mut rng, &crash_env)?;
                let v = child(
                    &[
                        "verify",
                        &mode,
                        dir.to_str().unwrap_or(""),
                        &acked.to_string(),
                    ],
                    long,
                )
                .unwrap_or_else(|e| Fields::from([("open".to_string(), format!("failed:{e}"))]));
                log(&format!(
                    "crash {mode} #{k}: killed after {delay} ms, acked {acked}: {v:?}"
                ));
                results.push(v);
            }
            if !results.is_empty() {
                crash_rows.push((mode.clone(), results));
            }
            if want("torn") {
                // One more kill, then damage copies of exactly that on-disk state.
                let (acked, _) = kill_run(&mode, &dir, &mut rng, &crash_env)?;
                let (target, end) = engines::write_frontier(&mode, &dir)?;
                let rel = target.strip_prefix(&dir)?.to_path_buf();
                let size = std::fs::metadata(&target)?.len();
                let mut damages: Vec<&str> = DAMAGES.to_vec();
                if mode.starts_with("redb") {
                    damages.push("header-write-lost");
                    damages.push("garbage-over-active-commit-slot");
                }
                for damage in damages {
                    let copy = o.dir.join(format!("torn-{mode}"));
                    fresh(&copy)?;
                    copy_dir(&dir, &copy)?;
                    apply_damage(&copy.join(&rel), end, damage, &mut rng)?;
                    let v = child(
                        &[
                            "verify",
                            &mode,
                            copy.to_str().unwrap_or(""),
                            &acked.to_string(),
                        ],
                        long,
                    )
                    .unwrap_or_else(|e| {
                        Fields::from([("open".to_string(), format!("failed:{e}"))])
                    });
                    log(&format!(
                        "torn {mode} {damage} on {} (end {end} of {size} B): {v:?}",
                        rel.display()
                    ));
                    torn_rows.push((
                        mode.clone(),
                        damage.to_string(),
                        format!("{} (end {end} of {size} B)", rel.display()),
                        v,
                    ));
                    let _ = std::fs::remove_dir_all(&copy);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let report = render(&o, &a, &b, &c, &d, &crash_rows, &torn_rows, &errors);
    match &o.out {
        Some(p) => std::fs::write(p, &report)?,
        None => print!("{report}"),
    }
    log("done");
    Ok(())
}

/// Starts a crash child on `dir`, kills it (SIGKILL) 50..650 ms after it opened the
/// database, returns the last acknowledged commit and the delay.
fn kill_run(mode: &str, dir: &Path, rng: &mut Rng, env: &[(&str, &str)]) -> Res<(u64, u64)> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe)
        .args(["crash-child", mode, dir.to_str().unwrap_or("")])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = c.stdout.take().ok_or("no stdout")?;
    let acked = Arc::new(AtomicU64::new(0));
    let acked2 = acked.clone();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(s) = l.strip_prefix("start ") {
                acked2.store(s.parse().unwrap_or(0), Ordering::SeqCst);
                let _ = tx.send(());
            } else if let Ok(i) = l.parse::<u64>() {
                acked2.store(i, Ordering::SeqCst);
            }
        }
    });
    let _ = rx.recv_timeout(Duration::from_secs(60));
    let delay = 50 + rng.below(600);
    std::thread::sleep(Duration::from_millis(delay));
    c.kill()?; // SIGKILL
    c.wait()?;
    let _ = reader.join();
    Ok((acked.load(Ordering::SeqCst), delay))
}

const DAMAGES: [&str; 6] = [
    "truncate-1B",
    "truncate-100B",
    "truncate-4113B",
    "overwrite-last-512B",
    "append-4KiB-garbage",
    "append-4KiB-zeros",
];

/// Damages `path` around `len`, the end of its last committed write (see
/// `engines::write_frontier`): cut into it, overwrite its last 512 bytes (a torn sector),
/// or write 4 KiB of garbage or zeros just past it (a torn or unwritten next write).
fn apply_damage(path: &Path, len: u64, damage: &str, rng: &mut Rng) -> Res<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    match damage {
        "header-write-lost" => {
            // The last header write did not reach the disk: the god byte still selects
            // the other commit slot.
            let mut god = [0u8; 1];
            f.read_exact_at(&mut god, 9)?;
            god[0] ^= 1;
            f.write_all_at(&god, 9)?;
        }
        "garbage-over-active-commit-slot" => {
            let (off, n) = engines::redb_active_slot(path)?;
            let mut buf = vec![0u8; n];
            rng.fill(&mut buf);
            f.write_all_at(&buf, off)?;
        }
        "truncate-1B" => f.set_len(len.saturating_sub(1))?,
        "truncate-100B" => f.set_len(len.saturating_sub(100))?,
        "truncate-4113B" => f.set_len(len.saturating_sub(4113))?,
        "overwrite-last-512B" => {
            let n = 512.min(len);
            let mut buf = vec![0u8; n as usize];
            rng.fill(&mut buf);
            f.write_all_at(&buf, len - n)?;
        }
        "append-4KiB-garbage" => {
            let mut buf = vec![0u8; 4096];
            rng.fill(&mut buf);
            f.write_all_at(&buf, len)?;
        }
        "append-4KiB-zeros" => f.write_all_at(&[0u8; 4096], len)?,
        other => return Err(format!("unknown damage {other}").into()),
    }
    f.sync_all()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn render(
    o: &Opts,
    a: &BTreeMap<(String, usize), Vec<Fields>>,
    b: &BTreeMap<String, Vec<Fields>>,
    c: &BTreeMap<String, Vec<Fields>>,
    d: &BTreeMap<(String, String), Vec<Fields>>,
    crash_rows: &[(String, Vec<Fields>)],
    torn_rows: &[(String, String, String, Fields)],
    errors: &[String],
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# storage-engines-bench\n\nreps: {} (median shown, ±: half the max-min spread in % of the median); \
         scenario A/C measured for at least {} s and 20 commits per run; data dir {}\n",
        o.reps,
        o.secs,
        o.dir.display()
    );
    if !a.is_empty() {
        let _ = writeln!(w, "## A: durable group commit (1,000 sessions x ~100 queued; 1 op = 1 message to 1..10 sessions + acks)\n");
        let _ = writeln!(w, "| mode | ops/commit | messages/s | queue inserts/s | commit p50 ms | commit p99 ms | bytes written per insert | head read after churn p50/p99 ms | RSS MiB |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
        for ((mode, batch), rs) in a {
            let _ = writeln!(
                w,
                "| {mode} | {batch} | {} | {} | {} | {} | {} | {} / {} | {} |",
                cell_spread(rs, "msgs_per_s"),
                cell(rs, "inserts_per_s"),
                cell(rs, "commit_p50_ms"),
                cell(rs, "commit_p99_ms"),
                cell(rs, "written_bytes_per_insert"),
                cell(rs, "head_read_p50_ms"),
                cell(rs, "head_read_p99_ms"),
                cell(rs, "hwm_mib"),
            );
        }
        let _ = writeln!(w);
    }
    if !b.is_empty() {
        let _ = writeln!(w, "## B: offline backlog (10,000 sessions x 100 = 1,000,000 messages, durable commits of 1,000)\n");
        let _ = writeln!(w, "| mode | write s | messages/s | bytes written per message | commit p50/p99 ms | RSS after write MiB | peak RSS during write MiB | peak RSS end MiB | disk after write MiB (allocated) | disk closed MiB (allocated) | head read (100) p50/p99 ms | expire session p50/p99 ms |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (mode, rs) in b {
            let disk_written = format!(
                "{} ({})",
                cell(rs, "disk_after_write_mib"),
                cell(rs, "disk_alloc_after_write_mib")
            );
            let disk_closed = format!(
                "{} ({})",
                cell(rs, "disk_closed_mib"),
                cell(rs, "disk_alloc_closed_mib")
            );
            let _ = writeln!(
                w,
                "| {mode} | {} | {} | {} | {} / {} | {} | {} | {} | {disk_written} | {disk_closed} | {} / {} | {} / {} |",
                cell_spread(rs, "write_s"),
                cell(rs, "msgs_per_s"),
                cell(rs, "written_bytes_per_msg"),
                cell(rs, "commit_p50_ms"),
                cell(rs, "commit_p99_ms"),
                cell(rs, "rss_after_write_mib"),
                cell(rs, "hwm_after_write_mib"),
                cell(rs, "hwm_end_mib"),
                cell(rs, "head_read_p50_ms"),
                cell(rs, "head_read_p99_ms"),
                cell(rs, "expire_p50_ms"),
                cell(rs, "expire_p99_ms"),
            );
        }
        let _ = writeln!(
            w,
            "\nRSS at process start (before opening): {}\n",
            b.iter()
                .map(|(m, rs)| format!("{m} {} MiB", cell(rs, "rss_start_mib")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !d.is_empty() {
        let _ = writeln!(
            w,
            "## D: reopen after B (page cache dropped: {})\n",
            d.values()
                .flatten()
                .any(|f| f.get("page_cache_dropped").is_some_and(|v| v == "true"))
        );
        let _ = writeln!(w, "| mode | after | open ms | open + first head read ms | RSS after open MiB | data check |");
        let _ = writeln!(w, "|---|---|---|---|---|---|");
        for ((mode, phase), rs) in d {
            let ok = rs.iter().all(|f| {
                f.get("kept_read").is_some_and(|v| v == "100")
                    && f.get("expired_read").is_some_and(|v| v == "0")
                    && (phase != "crash" || f.get("crash_commit_present").is_some_and(|v| v == "1"))
            });
            let _ = writeln!(
                w,
                "| {mode} | {} | {} | {} | {} | {} |",
                if phase == "clean" {
                    "clean close"
                } else {
                    "kill (no close)"
                },
                cell_spread(rs, "open_ms"),
                cell_spread(rs, "first_read_ms"),
                cell(rs, "rss_mib"),
                if ok { "ok" } else { "MISMATCH" }
            );
        }
        let _ = writeln!(w);
    }
    if !c.is_empty() {
        let _ = writeln!(w, "## C: session state + retained (10,000 sessions, 100,000 topics, 64 ops per durable commit)\n");
        let _ = writeln!(w, "| mode | ops/s | commit p50 ms | commit p99 ms |");
        let _ = writeln!(w, "|---|---|---|---|");
        for (mode, rs) in c {
            let _ = writeln!(
                w,
                "| {mode} | {} | {} | {} |",
                cell_spread(rs, "ops_per_s"),
                cell(rs, "commit_p50_ms"),
                cell(rs, "commit_p99_ms")
            );
        }
        let _ = writeln!(w);
    }
    if !crash_rows.is_empty() {
        let _ = writeln!(
            w,
            "## Crash: SIGKILL during durable commits, reopen, verify\n"
        );
        let _ = writeln!(w, "| mode | kills | opened | acked commits lost | inconsistent | write after recovery ok | recovery open ms median / max |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for (mode, rs) in crash_rows {
            let opened = rs
                .iter()
                .filter(|f| f.get("open").is_some_and(|v| v == "ok"))
                .count();
            let lost: u64 = rs
                .iter()
                .filter_map(|f| num(f, "lost_acked"))
                .map(|x| x as u64)
                .sum();
            let incons = rs
                .iter()
                .filter(|f| f.get("consistent").is_some_and(|v| v != "true"))
                .count();
            let wr = rs
                .iter()
                .filter(|f| f.get("write_after").is_some_and(|v| v == "ok"))
                .count();
            let mut om: Vec<f64> = rs.iter().filter_map(|f| num(f, "open_ms")).collect();
            om.sort_by(|x, y| x.total_cmp(y));
            let (m, mx) = if om.is_empty() {
                (0.0, 0.0)
            } else {
                (om[om.len() / 2], om[om.len() - 1])
            };
            let _ = writeln!(
                w,
                "| {mode} | {} | {opened} | {lost} | {incons} | {wr} | {} / {} |",
                rs.len(),
                fmt_num(m),
                fmt_num(mx)
            );
        }
        let _ = writeln!(w);
    }
    if !torn_rows.is_empty() {
        let _ = writeln!(
            w,
            "## Torn tail: damage to the file a torn write would hit, after a SIGKILL\n"
        );
        let _ = writeln!(w, "| mode | file (committed end of size) | damage | opens | last acked / recovered | acked commits lost | consistent | write after | note |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
        for (mode, damage, file, f) in torn_rows {
            let opens = f
                .get("open")
                .cloned()
                .unwrap_or_else(|| f.get("status").cloned().unwrap_or("?".into()));
            let note = f
                .get("error")
                .or(f.get("stderr"))
                .cloned()
                .unwrap_or_default();
            let note: String = note.chars().take(140).collect();
            let _ = writeln!(
                w,
                "| {mode} | {file} | {damage} | {opens} | {} / {} | {} | {} | {} | {} |",
                f.get("acked").map_or("-", String::as_str),
                f.get("recovered").map_or("-", String::as_str),
                f.get("lost_acked").map_or("-", String::as_str),
                f.get("consistent").map_or("-", String::as_str),
                f.get("write_after").map_or("-", String::as_str),
                note.replace('|', "/")
            );
        }
        let _ = writeln!(w);
    }
    if !errors.is_empty() {
        let _ = writeln!(w, "## Errors\n");
        for e in errors {
            let _ = writeln!(w, "- {}", e.replace('\n', " "));
        }
    }
    s
}
