//! `midge store check` and `midge store dump`: inspect a data directory offline (with the
//! broker stopped: the store is locked while it runs).
//!
//! `check` reads every record and prints what is there; it exits 1 if records could not be
//! read (they are skipped, as the broker would skip them) and 2 if the directory cannot be
//! opened. `dump` prints the sessions with their subscriptions and queues, the retained
//! messages and the delayed wills, as text or JSON lines (`--json`).

use std::path::PathBuf;

use anyhow::Context;
use midge_broker::store::{InflightRecord, Recovered, Store};
use midge_storage::{FjallSettings, SyncPolicy};
use serde_json::json;

/// Options of `midge store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Read every record and report counts and damage.
    Check(DirArgs),
    /// Print sessions, subscriptions, queues, retained messages and wills.
    Dump(DumpArgs),
}

#[derive(Debug, clap::Args)]
struct DirArgs {
    /// The data directory (default: midge-data).
    #[arg(long, value_name = "DIR", default_value = "midge-data")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct DumpArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Also print every queued message (topic, QoS, size), not only the counts.
    #[arg(long)]
    messages: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `midge store ...`; returns the exit code.
pub fn run(args: StoreArgs) -> anyhow::Result<i32> {
    match args.command {
        StoreCommand::Check(d) => check(&d.data_dir),
        StoreCommand::Dump(d) => dump(&d),
    }
}

/// Everything in the store, and how many records were unreadable.
fn load(dir: &std::path::Path) -> anyhow::Result<(Recovered, u64)> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a data directory (no such directory)",
            dir.display()
        );
    }
    let store = midge_storage::open(dir, SyncPolicy::EveryCommit, FjallSettings::default())
        .with_context(|| {
            format!(
                "cannot open the data directory {} (is a broker running on it?)",
                dir.display()
            )
        })?;
    let recovered = store
        .recover(usize::MAX)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
    let skipped = store.skipped_records();
    store.close();
    Ok((recovered, skipped))
}

fn check(dir: &std::path::Path) -> anyhow::Result<i32> {
    let (r, skipped) = match load(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return Ok(2);
        }
    };
    let queued: u64 = r.sessions.iter().map(|s| s.queued).sum();
    let bytes: u64 = r.sessions.iter().map(|s| s.queued_bytes).sum();
    let inflight = r
        .sessions
        .iter()
        .flat_map(|s| &s.head)
        .filter(|(_, _, i)| i.is_some())
        .count();
    let qos2: usize = r.sessions.iter().map(|s| s.incoming_qos2.len()).sum();
    let subs: usize = r
        .sessions
        .iter()
        .map(|s| s.record.subscriptions.len())
        .sum();
    println!("data directory: {}", dir.display());
    println!("sessions: {}", r.sessions.len());
    println!("subscriptions: {subs}");
    println!("queued messages: {queued} ({bytes} bytes of topic and payload)");
    println!("QoS 2 messages in flight to clients: {inflight}");
    println!("QoS 2 packet ids awaiting PUBREL: {qos2}");
    println!("retained messages: {}", r.retained.len());
    println!("delayed wills: {}", r.wills.len());
    if skipped > 0 {
        println!("unreadable records: {skipped} (skipped; see the log lines above)");
        return Ok(1);
    }
    println!("ok: every record is readable");
    Ok(0)
}

fn dump(args: &DumpArgs) -> anyhow::Result<i32> {
    let (mut r, _) = load(&args.dir.data_dir)?;
    r.sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    for s in &r.sessions {
        let subs: Vec<_> = s
            .record
            .subscriptions
            .iter()
            .map(|x| {
                json!({
                    "filter": x.filter.as_str(),
                    "qos": x.options.qos as u8,
                    "no_local": x.options.no_local,
                    "retain_as_published": x.options.retain_as_published,
                    "subscription_id": x.sub_id.map(|i| i.get()),
                })
            })
            .collect();
        let messages: Vec<_> = s
            .head
            .iter()
            .filter(|_| args.messages)
            .map(|(seq, m, inflight)| {
                json!({
                    "seq": seq,
                    "topic": m.msg.topic.as_str(),
                    "qos": m.qos as u8,
                    "bytes": m.msg.payload.len(),
                    "inflight": inflight.map(|i| match i {
                        InflightRecord::Published(p) => format!("published {}", p.get()),
                        InflightRecord::Released(p) => format!("released {}", p.get()),
                    }),
                })
            })
            .collect();
        if args.json {
            println!(
                "{}",
                json!({
                    "session": &*s.client_id,
                    "protocol": s.record.protocol.to_string(),
                    "expiry_secs": s.record.expiry_secs,
                    "offline_since_ms": s.record.offline_since.map(|t| t.0),
                    "subscriptions": subs,
                    "queued": s.queued,
                    "queued_bytes": s.queued_bytes,
                    "incoming_qos2": s.incoming_qos2.iter().map(|p| p.get()).collect::<Vec<_>>(),
                    "messages": messages,
                })
            );
        } else {
            println!(
                "session {} (MQTT {}, expiry {} s): {} subscriptions, {} queued ({} bytes)",
                s.client_id,
                s.record.protocol,
                s.record.expiry_secs,
                s.record.subscriptions.len(),
                s.queued,
                s.queued_bytes
            );
            for x in &s.record.subscriptions {
                println!(
                    "  subscription {} qos {}",
                    x.filter.as_str(),
                    x.options.qos as u8
                );
            }
            for m in &messages {
                println!("  message {m}");
            }
        }
    }
    for m in &r.retained {
        if args.json {
            println!(
                "{}",
                json!({"retained": m.topic.as_str(), "qos": m.qos as u8, "bytes": m.payload.len()})
            );
        } else {
            println!(
                "retained {} qos {} ({} bytes)",
                m.topic.as_str(),
                m.qos as u8,
                m.payload.len()
            );
        }
    }
    for (id, m, at) in &r.wills {
        if args.json {
            println!(
                "{}",
                json!({"will_of": &**id, "topic": m.topic.as_str(), "due_ms": at.0})
            );
        } else {
            println!("will of {id} on {} due at {} ms", m.topic.as_str(), at.0);
        }
    }
    Ok(0)
}
