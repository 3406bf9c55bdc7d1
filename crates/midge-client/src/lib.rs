//! An async MQTT 3.1.1 / 5.0 client on midge's codec: QoS 0, 1 and 2 with their full flows in
//! both directions, keep-alive, and automatic reconnect that resumes the session and resends
//! unacknowledged messages. It speaks MQTT over TCP, TLS (rustls, with mutual TLS), WebSocket
//! and WebSocket over TLS. The CLI tools (`midge pub`, `midge sub`, ...) and the tests use it.
//!
//! ```no_run
//! use midge_client::{Client, ClientOptions, Message};
//! use midge_codec::QoS;
//!
//! # async fn demo() -> Result<(), midge_client::ClientError> {
//! let (client, mut events) = Client::connect(ClientOptions::new("127.0.0.1:1883", "demo")).await?;
//! client.subscribe("home/+/light", QoS::AtLeastOnce).await?;
//! client.publish(Message::new("home/bedroom/light", "on", QoS::AtLeastOnce, false)?).await?;
//! if let Some(msg) = events.next_message().await {
//!     println!("{:?}: {:?}", msg.topic, msg.payload);
//! }
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Over TLS with a client certificate, or over secure WebSocket: pick the transport with a
//! URL (`mqtt://`, `mqtts://`, `ws://`, `wss://`; default ports 1883, 8883, 8080, 8081; the
//! WebSocket path defaults to `/mqtt`) or with [`ClientOptions::transport`]. There are no
//! built-in CA roots: name a CA file, or set `insecure` to skip verification in tests.
//!
//! ```no_run
//! use midge_client::{Client, ClientOptions, TlsOptions, Transport};
//!
//! # async fn demo() -> Result<(), midge_client::ClientError> {
//! let tls = TlsOptions {
//!     ca_file: Some("ca.pem".into()),
//!     cert_file: Some("device.pem".into()),
//!     key_file: Some("device.key".into()),
//!     ..TlsOptions::default()
//! };
//! let opts = ClientOptions::new("broker.example:8883", "device-1")
//!     .transport(Transport::Tls)
//!     .tls(tls.clone());
//! let (client, _events) = Client::connect(opts).await?;
//! client.disconnect().await?;
//!
//! let opts = ClientOptions::from_url("wss://broker.example:8081/mqtt", "browser-like")?.tls(tls);
//! let (client, _events) = Client::connect(opts).await?;
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod options;
mod tls;
pub mod transport;
mod ws;

pub use client::{disconnect_with_expiry, Client, Event, Events, Message};
pub use error::{ClientError, FileProblem, TlsFile, TlsSetupError};
pub use options::{ClientOptions, TlsOptions, Transport, DEFAULT_WS_PATH};
pub use ws::WsStream;
