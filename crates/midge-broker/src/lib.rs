//! The broker core of midge, without I/O: subscription index, retained store, sessions with
//! their queues and QoS 1/2 flows, wills and expiry, and the per-connection protocol state
//! machine. Time is always a parameter (`Timestamp`), never read from a clock, so every
//! behaviour that depends on time is tested on a simulated clock.

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod index;
pub mod message;
pub mod metrics;
pub mod out;
pub mod retained;
pub mod session;
pub mod small;
pub mod store;
pub mod time;
pub mod watch;

pub use broker::{Attached, Broker, ConnectRequest, PublishOutcome, NEVER_EXPIRE};
pub use config::{BrokerConfig, QueueFullPolicy};
pub use connection::{CloseReason, ConnectInfo, Connection};
pub use message::{Delivery, Message};
pub use out::OutBuffer;
pub use session::{ClientInfo, Notify};
pub use time::Timestamp;
