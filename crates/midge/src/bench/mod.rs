//! `midge bench`: a load generator with the standard MQTT benchmark shapes.
//!
//! - `conn`: N idle connections opened at R per second; connect rate, failures, and the
//!   broker's resident memory per connection (with `--pid`).
//! - `fanin`: N publishers, one subscriber on a wildcard.
//! - `fanout`: one publisher, N subscribers on one topic.
//! - `p2p`: N publisher/subscriber pairs.
//! - `shared`: N publishers, M subscribers in one `$share` group.
//! - `subs`: a routing table of `--filters` exact subscriptions plus `--wildcards` wildcard
//!   filters; publishers send to random subscribed topics.
//! - `custom`: `--pubs`/`--subs` with topic patterns (`{i}` is the client number).
//!
//! Every payload carries the publisher id, a sequence number and the send time, so the report
//! counts loss, duplicates and reordering and measures latency (hdrhistogram).

pub mod net;
pub mod pace;
pub mod proc;
pub mod stats;
pub mod tasks;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use midge_client::transport::Connector;
use midge_client::ClientOptions;
use midge_codec::{ProtocolVersion, QoS, TopicFilter, TopicName};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::tools::{parse_protocol, parse_qos, parse_url, ToolError, TransportArgs};
use net::Target;
use stats::{Report, SubStats};
use tasks::{Clock, Live, PubSpec};

/// The scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Idle connections.
    Conn,
    /// Many publishers, one wildcard subscriber.
    Fanin,
    /// One publisher, many subscribers.
    Fanout,
    /// Publisher/subscriber pairs.
    P2p,
    /// Publishers to one shared subscription group.
    Shared,
    /// A large routing table.
    Subs,
    /// Publishers and subscribers as given by --pubs/--subs and the topic patterns.
    Custom,
}

/// Options of `midge bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// Scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port [default: 1883; 8883 with TLS; 8080 for --ws, 8081 with TLS].
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// URL: mqtt|mqtts|ws|wss://[user[:password]@]host[:port] (sets the transport, host,
    /// port and credentials; bench picks its own topics).
    #[arg(short = 'L', long = "url")]
    pub url: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// MQTT version: 311 or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311")]
    pub protocol: String,
    /// QoS of publishes and subscriptions.
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub qos: u8,
    /// Payload size in bytes (at least 20: id, sequence, timestamp).
    #[arg(short = 's', long = "size", default_value_t = 64)]
    pub size: usize,
    /// Clients: publishers (fanin, shared, subs), subscribers (fanout), pairs (p2p),
    /// connections (conn). Default 100 (conn: 1000).
    #[arg(short = 'n', long = "clients")]
    pub clients: Option<usize>,
    /// Publishers for `custom` and `subs` (default 10 for subs).
    #[arg(long = "pubs")]
    pub pubs: Option<usize>,
    /// Subscribers for `custom`, `shared` (default 10) and `subs` (default 10).
    #[arg(long = "subs")]
    pub subs: Option<usize>,
    /// Topic pattern of publisher i for `custom` (`{i}` is replaced).
    #[arg(long = "pub-topic", default_value = "bench/{i}")]
    pub pub_topic: String,
    /// Filter pattern of subscriber i for `custom`.
    #[arg(long = "sub-filter", default_value = "bench/#")]
    pub sub_filter: String,
    /// Receivers each message should reach, for `custom` loss accounting.
    #[arg(long = "receivers", default_value_t = 1)]
    pub receivers: u64,
    /// Exact subscriptions in the routing table (`subs`).
    #[arg(long = "filters", default_value_t = 100_000)]
    pub filters: usize,
    /// Wildcard filters in the routing table (`subs`).
    #[arg(long = "wildcards", default_value_t = 1_000)]
    pub wildcards: usize,
    /// Total messages per second over all publishers, one every 1/rate seconds, round robin
    /// over the publishers (open loop); 0 = as fast as possible.
    #[arg(short = 'r', long = "rate", default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of measurement.
    #[arg(short = 'd', long = "duration", default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(short = 'w', long = "warmup", default_value_t = 1.0)]
    pub warmup: f64,
    /// QoS 1/2 messages in flight per publisher.
    #[arg(long = "inflight", default_value_t = 64)]
    pub inflight: usize,
    /// Connections per second for `conn` (0 = as fast as possible).
    #[arg(long = "conn-rate", default_value_t = 0.0)]
    pub conn_rate: f64,
    /// Seconds to hold the idle connections open (`conn`).
    #[arg(long = "hold", default_value_t = 2.0)]
    pub hold: f64,
    /// Keep-alive in CONNECT, seconds. 0 (default) asks for none; some brokers (rumqttd)
    /// refuse 0. The bench sends no PINGREQ: keep runs shorter than 1.5 times this.
    #[arg(long = "keep-alive", value_name = "SECS", default_value_t = 0)]
    pub keep_alive: u16,
    /// Persistent sessions for every client: clean start off (clean session 0 in 3.1.1),
    /// session expiry one hour in 5.0. With a store, QoS 1/2 messages to them are written
    /// before they are acknowledged.
    #[arg(long = "persistent")]
    pub persistent: bool,
    /// Spread connections over this many source addresses 127.0.0.1..=127.0.0.N.
    #[arg(long = "source-ips", default_value_t = 1)]
    pub source_ips: usize,
    /// Broker process id, to report its CPU time and memory.
    #[arg(long = "pid")]
    pub pid: Option<u32>,
    /// Print the report as JSON on stdout.
    #[arg(long = "json")]
    pub json: bool,
    /// No live progress line.
    #[arg(long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Where and how the bench connects: the transport, the resolved address (so that every
/// connection skips DNS and may pick its source address) and the credentials of `-L`.
async fn target(args: &BenchArgs) -> Result<Target, ToolError> {
    let (mut host, mut port, mut scheme) = (args.host.clone(), args.port, None);
    let (mut username, mut password) = (None, None);
    if let Some(u) = &args.url {
        let url = parse_url(u)?;
        if url.topic.is_some() {
            return Err(ToolError::usage(format!(
                "-L {u}: bench picks its own topics; leave the path out"
            )));
        }
        (host, port, scheme) = (url.host, url.port.or(port), Some(url.transport));
        (username, password) = (url.user, url.password.map(Bytes::from));
    }
    let (transport, tls, ws_path) = args.transport.choose(scheme)?;
    let port = port.unwrap_or_else(|| transport.default_port());
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let opts = ClientOptions::new(addr, "")
        .transport(transport)
        .tls(tls)
        .ws_path(ws_path);
    let connector = Connector::new(&opts)?;
    let addr = connector
        .resolve()
        .await
        .map_err(|e| ToolError::usage(format!("--host {host}: {e}")))?;
    Ok(Target {
        connector,
        addr,
        username,
        password,
        keep_alive: args.keep_alive,
        persistent: args.persistent,
    })
}

/// Runs `midge bench`.
pub async fn run(args: BenchArgs) -> Result<(), ToolError> {
    let target = Arc::new(target(&args).await?);
    let version = parse_protocol(&args.protocol)?;
    let qos = parse_qos("-q", args.qos)?;
    let json = if args.scenario == Scenario::Conn {
        conn_scenario(&args, target, version).await?
    } else {
        let plan = plan(&args, qos)?;
        let report = run_plan(&args, target, version, qos, plan).await?;
        if !args.json {
            print!("{}", report.human());
        }
        serde_json::to_value(&report).map_err(|e| ToolError::usage(e.to_string()))?
    };
    if args.json {
        println!("{json}");
    }
    Ok(())
}

/// Who publishes where and who subscribes to what.
struct Plan {
    name: &'static str,
    publishers: Vec<Vec<TopicName>>,
    subscribers: Vec<Vec<TopicFilter>>,
    receivers_per_message: u64,
}

fn topic(s: String) -> Result<TopicName, ToolError> {
    s.parse()
        .map_err(|e| ToolError::usage(format!("topic {s}: {e}")))
}

fn filter(s: String) -> Result<TopicFilter, ToolError> {
    s.parse()
        .map_err(|e| ToolError::usage(format!("filter {s}: {e}")))
}

/// A small deterministic generator for the `subs` topics (no need for real randomness).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn plan(args: &BenchArgs, _qos: QoS) -> Result<Plan, ToolError> {
    let n = args.clients.unwrap_or(100).max(1);
    Ok(match args.scenario {
        Scenario::Fanin => Plan {
            name: "fanin",
            publishers: (0..n)
                .map(|i| Ok(vec![topic(format!("bench/fanin/{i}"))?]))
                .collect::<Result<_, ToolError>>()?,
            subscribers: vec![vec![filter("bench/fanin/+".into())?]],
            receivers_per_message: 1,
        },
        Scenario::Fanout => Plan {
            name: "fanout",
            publishers: vec![vec![topic("bench/fanout".into())?]],
            subscribers: (0..n)
                .map(|_| Ok(vec![filter("bench/fanout".into())?]))
                .collect::<Result<_, ToolError>>()?,
            receivers_per_message: n as u64,
        },
        Scenario::P2p => Plan {
            name: "p2p",
            publishers: (0..n)
                .map(|i| Ok(vec![topic(format!("bench/p2p/{i}"))?]))
                .collect::<Result<_, ToolError>>()?,
            subscribers: (0..n)
                .map(|i| Ok(vec![filter(format!("bench/p2p/{i}"))?]))
                .collect::<Result<_, ToolError>>()?,
            receivers_per_message: 1,
        },
        Scenario::Shared => {
            let m = args.subs.unwrap_or(10).max(1);
            Plan {
                name: "shared",
                publishers: (0..n)
                    .map(|i| Ok(vec![topic(format!("bench/shared/{i}"))?]))
                    .collect::<Result<_, ToolError>>()?,
                subscribers: (0..m)
                    .map(|_| Ok(vec![filter("$share/bench/bench/shared/+".into())?]))
                    .collect::<Result<_, ToolError>>()?,
                receivers_per_message: 1,
            }
        }
        Scenario::Subs => {
            let subs = args.subs.unwrap_or(10).max(1);
            let pubs = args.pubs.unwrap_or(10).max(1);
            let filters = args.filters.max(1);
            let mut subscribers: Vec<Vec<TopicFilter>> = vec![Vec::new(); subs];
            for k in 0..filters {
                subscribers[k % subs].push(filter(format!("bench/route/{k}"))?);
            }
            for j in 0..args.wildcards {
                subscribers[j % subs].push(filter(format!("bench/wild/{j}/+"))?);
            }
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            let publishers = (0..pubs)
                .map(|_| {
                    (0..1000)
                        .map(|_| {
                            topic(format!(
                                "bench/route/{}",
                                xorshift(&mut seed) % filters as u64
                            ))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            Plan {
                name: "subs",
                publishers,
                subscribers,
                receivers_per_message: 1,
            }
        }
        Scenario::Custom => {
            let pubs = args.pubs.unwrap_or(1).max(1);
            let subs = args.subs.unwrap_or(1);
            Plan {
                name: "custom",
                publishers: (0..pubs)
                    .map(|i| Ok(vec![topic(args.pub_topic.replace("{i}", &i.to_string()))?]))
                    .collect::<Result<_, ToolError>>()?,
                subscribers: (0..subs)
                    .map(|i| {
                        Ok(vec![filter(
                            args.sub_filter.replace("{i}", &i.to_string()),
                        )?])
                    })
                    .collect::<Result<_, ToolError>>()?,
                receivers_per_message: args.receivers,
            }
        }
        Scenario::Conn => unreachable!("conn has its own runner"),
    })
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> ToolError + '_ {
    move |e| ToolError {
        code: 1,
        message: format!("{what}: {e}"),
    }
}

fn client_err(what: &str) -> impl Fn(midge_client::ClientError) -> ToolError + '_ {
    move |e| ToolError {
        code: 1,
        message: format!("{what}: {e}"),
    }
}

async fn run_plan(
    args: &BenchArgs,
    target: Arc<Target>,
    version: ProtocolVersion,
    qos: QoS,
    plan: Plan,
) -> Result<Report, ToolError> {
    let before = args.pid.and_then(proc::sample);
    let live = Arc::new(Live::default());
    let n_pubs = plan.publishers.len();
    let n_subs = plan.subscribers.len();
    // Subscribers first, each fully subscribed before anyone publishes.
    let mut sub_conns = Vec::with_capacity(n_subs);
    for (i, filters) in plan.subscribers.iter().enumerate() {
        let mut c = net::open(
            target.clone(),
            net::source_ip(i, args.source_ips),
            format!("bench-s-{i}"),
            version,
        )
        .await
        .map_err(client_err("subscriber connect"))?;
        tasks::subscribe(&mut c, filters, qos)
            .await
            .map_err(io_err("subscribe"))?;
        sub_conns.push(c);
    }
    let mut pub_conns = Vec::with_capacity(n_pubs);
    for i in 0..n_pubs {
        let c = net::open(
            target.clone(),
            net::source_ip(n_subs + i, args.source_ips),
            format!("bench-p-{i}"),
            version,
        )
        .await
        .map_err(client_err("publisher connect"))?;
        pub_conns.push(c);
    }
    let base = Instant::now();
    let window_start = base + Duration::from_secs_f64(args.warmup);
    let clock = Arc::new(Clock {
        base,
        window_start,
        end: window_start + Duration::from_secs_f64(args.duration),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let subs: Vec<_> = sub_conns
        .into_iter()
        .map(|c| {
            tokio::spawn(tasks::subscriber(
                c,
                clock.clone(),
                live.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let credits: Vec<Arc<pace::Credits>> = if args.rate > 0.0 {
        (0..n_pubs).map(|_| Arc::default()).collect()
    } else {
        Vec::new()
    };
    let pacer = (args.rate > 0.0)
        .then(|| {
            pace::Pacer::spawn(
                args.rate,
                clock.base.into_std(),
                clock.end.into_std(),
                credits.clone(),
            )
        })
        .transpose()
        .map_err(io_err("pacer"))?;
    let pubs: Vec<_> = pub_conns
        .into_iter()
        .zip(plan.publishers)
        .enumerate()
        .map(|(i, (c, topics))| {
            let spec = PubSpec {
                id: i as u32,
                topics,
                qos,
                size: args.size.max(net::HEADER_LEN),
                credits: credits.get(i).cloned(),
                inflight: args.inflight.max(1),
            };
            tokio::spawn(tasks::publisher(c, spec, clock.clone(), live.clone()))
        })
        .collect();
    let progress = (!args.quiet).then(|| tokio::spawn(progress_line(live.clone(), clock.clone())));
    let mut sent = 0;
    let mut sent_in_window = 0;
    for p in pubs {
        let r = p
            .await
            .map_err(|e| ToolError::usage(e.to_string()))?
            .map_err(io_err("publisher"))?;
        sent += r.sent;
        sent_in_window += r.sent_in_window;
    }
    drop(pacer);
    // Wait until everything expected arrived, or nothing has arrived for 2 s.
    let expected = sent * plan.receivers_per_message;
    let mut last = live.received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        let now_received = live.received.load(Ordering::Relaxed);
        if now_received >= expected {
            break;
        }
        if now_received != last {
            last = now_received;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    let mut total = SubStats::default();
    for s in subs {
        let st = s
            .await
            .map_err(|e| ToolError::usage(e.to_string()))?
            .map_err(io_err("subscriber"))?;
        total.merge(&st);
    }
    let after = args.pid.and_then(proc::sample);
    let h = &total.latency_us;
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(Report {
        scenario: plan.name.into(),
        qos: qos.as_u8(),
        payload_bytes: args.size.max(net::HEADER_LEN),
        publishers: n_pubs,
        subscribers: n_subs,
        sent,
        expected,
        received: total.received,
        lost: expected.saturating_sub(total.received),
        duplicated: total.duplicates,
        out_of_order: total.out_of_order,
        msgs_per_sec_in: sent_in_window as f64 / args.duration,
        msgs_per_sec_out: total.received_in_window as f64 / args.duration,
        latency_ms_p50: ms(h.value_at_quantile(0.5)),
        latency_ms_p99: ms(h.value_at_quantile(0.99)),
        latency_ms_p999: ms(h.value_at_quantile(0.999)),
        latency_ms_max: ms(h.max()),
        broker_cpu_secs: before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs),
        broker_peak_rss_mib: after.map(|a| a.peak_rss_kib as f64 / 1024.0),
        broker_rss_mib: after.map(|a| a.rss_kib as f64 / 1024.0),
    })
}

async fn progress_line(live: Arc<Live>, clock: Arc<Clock>) {
    let mut last = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = live.sent.load(Ordering::Relaxed);
        let r = live.received.load(Ordering::Relaxed);
        let phase = if Instant::now() < clock.window_start {
            "warm-up"
        } else if Instant::now() < clock.end {
            "measuring"
        } else {
            "draining"
        };
        eprint!(
            "\r\x1b[2K{phase}: sent {s} ({}/s)  received {r} ({}/s)",
            s - last.0,
            r - last.1
        );
        let _ = std::io::stderr().flush();
        last = (s, r);
    }
}

async fn conn_scenario(
    args: &BenchArgs,
    target: Arc<Target>,
    version: ProtocolVersion,
) -> Result<serde_json::Value, ToolError> {
    let n = args.clients.unwrap_or(1000);
    let before = args.pid.and_then(proc::sample);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut failures = 0usize;
    let mut first_error = None;
    let batch = 64;
    let mut i = 0;
    while i < n {
        let k = batch.min(n - i);
        let opens: Vec<_> = (i..i + k)
            .map(|j| {
                tokio::spawn(net::open(
                    target.clone(),
                    net::source_ip(j, args.source_ips),
                    format!("bench-c-{j}"),
                    version,
                ))
            })
            .collect();
        for o in opens {
            match o.await {
                Ok(Ok(c)) => conns.push(c),
                Ok(Err(e)) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        i += k;
        if args.conn_rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.conn_rate);
            tokio::time::sleep_until(due).await;
        }
        if !args.quiet && i % 1024 < batch {
            eprint!("\r\x1b[2Kconnected {}/{n}", conns.len());
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let during = args.pid.and_then(proc::sample);
    if !args.quiet {
        eprint!("\r\x1b[2K");
    }
    let held = conns.len();
    drop(conns);
    let per_conn_kib = before
        .zip(during)
        .filter(|_| held > 0)
        .map(|(b, d)| (d.rss_kib as f64 - b.rss_kib as f64) / held as f64);
    let report = serde_json::json!({
        "scenario": "conn",
        "connections": held,
        "failures": failures,
        "first_error": first_error,
        "connect_secs": connect_secs,
        "connects_per_sec": held as f64 / connect_secs,
        "broker_rss_mib": during.map(|d| d.rss_kib as f64 / 1024.0),
        "broker_rss_kib_per_connection": per_conn_kib,
    });
    if !args.json {
        println!(
            "conn: {held} connections held, {failures} failures, {:.0} connects/s{}",
            held as f64 / connect_secs,
            per_conn_kib
                .map(|k| format!(", broker RSS {k:.2} KiB per connection"))
                .unwrap_or_default()
        );
        if let Some(e) = &first_error {
            println!("  first error: {e}");
        }
    }
    Ok(report)
}
