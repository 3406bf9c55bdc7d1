//! `midge rr`: MQTT 5 request/response. Subscribes to the response topic, publishes the
//! request with Response Topic and Correlation Data, prints the matching response.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use midge_client::{Client, Message};
use midge_codec::{ProtocolVersion, TopicName};

use super::format::Output;
use super::{props, ConnArgs, ToolError, EXIT_TIMEOUT};

/// Options of `midge rr` (mosquitto_rr's flags).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RrArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: Output,
    /// Topic to send the request to.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Topic the answer is expected on.
    #[arg(short = 'e', long = "response-topic")]
    response_topic: String,
    /// Request payload.
    #[arg(short = 'm', long = "message", default_value = "")]
    message: String,
    /// Seconds to wait for the answer (exit 27 on timeout).
    #[arg(short = 'W', long = "timeout", default_value_t = 10)]
    timeout: u64,
}

/// Runs `midge rr`.
pub async fn run(mut args: RrArgs) -> Result<(), ToolError> {
    args.conn.protocol = "5".into();
    let qos = args.conn.qos()?;
    let (opts, _) = args.conn.options("rr")?;
    debug_assert_eq!(opts.protocol, ProtocolVersion::V5);
    let topic: TopicName = args
        .topic
        .parse()
        .map_err(|e| ToolError::usage(format!("-t {}: {e}", args.topic)))?;
    let response: TopicName = args
        .response_topic
        .parse()
        .map_err(|e| ToolError::usage(format!("-e {}: {e}", args.response_topic)))?;
    let mut properties = props::parse(&args.conn.property, opts.protocol)?.publish;
    let correlation = Bytes::from(format!(
        "midge-rr-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    properties.response_topic = Some(response.clone());
    properties.correlation_data = Some(correlation.clone());
    let (client, mut events) = Client::connect(opts).await?;
    client.subscribe(response.as_str(), qos).await?;
    client
        .publish(Message {
            topic,
            payload: Bytes::from(args.message.clone()),
            qos,
            retain: false,
            properties,
        })
        .await?;
    let output = args.output.clone();
    let wait = async {
        while let Some(m) = events.next_message().await {
            // Answers to other requests on a shared response topic are skipped.
            let ours = m
                .properties
                .correlation_data
                .as_ref()
                .is_none_or(|c| *c == correlation);
            if ours {
                return Some(m);
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(args.timeout), wait).await {
        Ok(Some(m)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(output.render(&m).as_bytes());
            let _ = out.flush();
            client.disconnect().await?;
            Ok(())
        }
        Ok(None) => Err(ToolError {
            code: 1,
            message: "Error: connection lost".into(),
        }),
        Err(_) => Err(ToolError {
            code: EXIT_TIMEOUT,
            message: "Timed out waiting for the response".into(),
        }),
    }
}
