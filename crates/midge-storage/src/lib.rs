//! The on-disk store of midge: durable sessions, queues, inflight state, retained messages
//! and delayed wills behind the broker's [`midge_broker::store::Store`] seam.

#![warn(missing_docs)]

pub mod committer;
pub mod format;

pub use committer::{CommitStats, Engine, GroupCommitStore, SyncPolicy};
