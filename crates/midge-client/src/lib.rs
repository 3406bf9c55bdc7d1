//! An async MQTT 3.1.1 / 5.0 client on midge's codec: QoS 0, 1 and 2 with their full flows in
//! both directions, keep-alive, and automatic reconnect that resumes the session and resends
//! unacknowledged messages. The CLI tools (`midge pub`, `midge sub`, ...) and the tests use it.
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

#![warn(missing_docs)]

mod client;
mod error;
mod options;

pub use client::{disconnect_with_expiry, Client, Event, Events, Message};
pub use error::ClientError;
pub use options::ClientOptions;
