//! `midge pub`: publish one message, a file, stdin, or stdin line by line.

use std::io::{BufRead, Read};
use std::time::Duration;

use bytes::Bytes;
use midge_client::{Client, Message};
use midge_codec::TopicName;

use super::{props, ConnArgs, ToolError};

/// Options of `midge pub` (mosquitto_pub's flags).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
    /// Message payload.
    #[arg(short = 'm', long = "message", group = "source")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", group = "source")]
    file: Option<std::path::PathBuf>,
    /// Read the message from stdin, whole.
    #[arg(short = 's', long = "stdin-file", group = "source")]
    stdin_file: bool,
    /// Read messages from stdin, one per line.
    #[arg(short = 'l', long = "stdin-line", group = "source")]
    stdin_line: bool,
    /// Send an empty (zero-length) message.
    #[arg(short = 'n', long = "null-message", group = "source")]
    null_message: bool,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message this many times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u32,
    /// Seconds between repeats (fractions allowed).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
}

/// Runs `midge pub`.
pub async fn run(args: PubArgs) -> Result<(), ToolError> {
    let qos = args.conn.qos()?;
    let (opts, url_topic) = args.conn.options("pub")?;
    let topic = args
        .topic
        .or(url_topic)
        .ok_or_else(|| ToolError::usage("a topic is required: -t TOPIC (or -L with a path)"))?;
    let topic: TopicName = topic
        .parse()
        .map_err(|e| ToolError::usage(format!("-t {topic}: {e}")))?;
    let properties = props::parse(&args.conn.property, opts.protocol)?.publish;
    let debug = args.conn.debug;
    let payloads: Vec<Bytes> = if let Some(m) = args.message {
        vec![Bytes::from(m)]
    } else if let Some(f) = &args.file {
        let data =
            std::fs::read(f).map_err(|e| ToolError::usage(format!("-f {}: {e}", f.display())))?;
        vec![Bytes::from(data)]
    } else if args.stdin_file {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| ToolError::usage(format!("reading stdin: {e}")))?;
        vec![Bytes::from(data)]
    } else if args.null_message {
        vec![Bytes::new()]
    } else if args.stdin_line {
        Vec::new()
    } else {
        return Err(ToolError::usage(
            "a message is required: -m MSG, -f FILE, -s, -l or -n",
        ));
    };
    if debug {
        eprintln!("Client {} sending CONNECT", opts.client_id);
    }
    let (client, _events) = Client::connect(opts).await?;
    if debug {
        eprintln!("Client {} received CONNACK (0)", client.client_id());
    }
    let make = |payload: Bytes| Message {
        topic: topic.clone(),
        payload,
        qos,
        retain: args.retain,
        properties: properties.clone(),
    };
    if args.stdin_line {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.map_err(|e| ToolError::usage(format!("reading stdin: {e}")))?;
            send(&client, make(Bytes::from(line)), debug).await?;
        }
    } else {
        for i in 0..args.repeat.max(1) {
            if i > 0 && args.repeat_delay > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
            }
            for p in &payloads {
                send(&client, make(p.clone()), debug).await?;
            }
        }
    }
    client.disconnect().await?;
    if debug {
        eprintln!("Client {} sending DISCONNECT", client.client_id());
    }
    Ok(())
}

async fn send(client: &Client, m: Message, debug: bool) -> Result<(), ToolError> {
    if debug {
        eprintln!(
            "Client {} sending PUBLISH (q{}, r{}, '{}', ... ({} bytes))",
            client.client_id(),
            m.qos.as_u8(),
            u8::from(m.retain),
            m.topic,
            m.payload.len()
        );
    }
    let code = client.publish(m).await?;
    if code.is_error() {
        return Err(ToolError {
            code: 1,
            message: format!("Publish refused by the broker: {code}"),
        });
    }
    Ok(())
}
