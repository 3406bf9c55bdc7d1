//! `midge sub`: subscribe and print messages.

use std::io::Write;
use std::time::Duration;

use midge_client::{Client, Message};
use midge_codec::{
    FilterEntry, Publish, QoS, SubscribeProperties, Subscription, SubscriptionOptions, TopicFilter,
};

use super::format::Output;
use super::{props, ConnArgs, ToolError, EXIT_TIMEOUT};

/// Options of `midge sub` (mosquitto_sub's flags).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: Output,
    /// Topic filter to subscribe to (repeatable).
    #[arg(short = 't', long = "topic")]
    topics: Vec<String>,
    /// Do not print messages whose topic matches this filter (repeatable).
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit with code 27 if no message arrives for this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Do not print retained (stale) messages.
    #[arg(short = 'R')]
    no_retained: bool,
    /// Persistent session: do not clean the session on connect or disconnect.
    #[arg(short = 'c', long = "disable-clean-session")]
    persistent: bool,
    /// Exit right after the subscriptions are acknowledged.
    #[arg(short = 'E')]
    exit_after_subscribe: bool,
    /// Print only retained messages; exit at the first non-retained one.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Delete every retained message received (publish an empty retained message to it).
    #[arg(long = "remove-retained")]
    remove_retained: bool,
}

/// Runs `midge sub`.
pub async fn run(args: SubArgs) -> Result<(), ToolError> {
    let qos = args.conn.qos()?;
    let (mut opts, url_topic) = args.conn.options("sub")?;
    let mut topics = args.topics.clone();
    topics.extend(url_topic);
    if topics.is_empty() {
        return Err(ToolError::usage("a topic filter is required: -t FILTER"));
    }
    if args.persistent {
        if args.conn.id.is_none() && args.conn.id_prefix.is_none() {
            return Err(ToolError::usage(
                "-c needs a fixed client id: give one with -i ID",
            ));
        }
        opts.clean_start = false;
        if opts.protocol.is_v5() && opts.session_expiry_secs.is_none() {
            // Like mosquitto_sub: -c alone keeps the session until the broker drops it.
            opts.session_expiry_secs = Some(u32::MAX);
        }
    }
    let filters = parse_filters(&topics)?;
    let filter_out = parse_filters(&args.filter_out)?;
    let properties: SubscribeProperties =
        props::parse(&args.conn.property, opts.protocol)?.subscribe;
    let output = args.output.clone();
    let debug = args.conn.debug;
    if debug {
        eprintln!("Client {} sending CONNECT", opts.client_id);
    }
    let (client, mut events) = Client::connect(opts).await?;
    if debug {
        eprintln!("Client {} received CONNACK (0)", client.client_id());
        eprintln!("Client {} sending SUBSCRIBE", client.client_id());
    }
    let subscriptions = filters
        .into_iter()
        .map(|f| Subscription {
            filter: FilterEntry::Valid(f),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        })
        .collect::<Vec<_>>();
    let ack = client.subscribe_many(subscriptions, properties).await?;
    if debug {
        let codes: Vec<String> = ack.codes.iter().map(|c| c.as_u8().to_string()).collect();
        eprintln!(
            "Client {} received SUBACK\nSubscribed (mid: {}): {}",
            client.client_id(),
            ack.packet_id,
            codes.join(", ")
        );
    }
    for (code, topic) in ack.codes.iter().zip(&topics) {
        if code.is_error() {
            eprintln!("Subscription to {topic} refused: {code}");
        }
    }
    if ack.codes.iter().all(|c| c.is_error()) {
        return Err(ToolError {
            code: 1,
            message: "All subscription requests were denied.".into(),
        });
    }
    if args.exit_after_subscribe {
        client.disconnect().await?;
        return Ok(());
    }
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let next = events.next_message();
        let msg: Option<Publish> = match args.timeout {
            Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), next).await {
                Ok(m) => m,
                Err(_) => {
                    let _ = client.disconnect().await;
                    return Err(ToolError {
                        code: EXIT_TIMEOUT,
                        message: "Timed out".into(),
                    });
                }
            },
            None => next.await,
        };
        let Some(msg) = msg else {
            return Err(ToolError {
                code: 1,
                message: "Error: connection lost".into(),
            });
        };
        if args.retained_only && !msg.retain {
            break;
        }
        if args.remove_retained && msg.retain {
            if let Some(t) = &msg.topic {
                client
                    .publish_nowait(Message {
                        topic: t.clone(),
                        payload: bytes::Bytes::new(),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: Default::default(),
                    })
                    .await?;
            }
        }
        if args.no_retained && msg.retain {
            continue;
        }
        if let Some(t) = &msg.topic {
            if filter_out.iter().any(|f| f.matches(t)) {
                continue;
            }
        }
        {
            let mut out = stdout.lock();
            let _ = out.write_all(output.render(&msg).as_bytes());
            let _ = out.flush();
        }
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    client.disconnect().await?;
    Ok(())
}

fn parse_filters(topics: &[String]) -> Result<Vec<TopicFilter>, ToolError> {
    topics
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|e| ToolError::usage(format!("-t {t}: invalid topic filter: {e}")))
        })
        .collect()
}
