//! The on-disk store of midge: durable sessions, queues, inflight state, retained messages
//! and delayed wills behind the broker's [`midge_broker::store::Store`] seam.
//!
//! [`open`] gives the store `midge serve` uses: the [`FjallEngine`] in a data directory,
//! driven by the [`GroupCommitStore`] committer with a [`SyncPolicy`].

#![warn(missing_docs)]

pub mod committer;
pub mod format;

pub use committer::{CommitStats, Engine, GroupCommitStore, SyncPolicy};
pub mod fjall_engine;

pub use fjall_engine::{FjallEngine, FjallSettings};

use std::path::Path;

use midge_broker::store::StoreError;

/// Opens the store in `dir` (created if missing, locked while open) with group commit and
/// `policy`.
pub fn open(
    dir: &Path,
    policy: SyncPolicy,
    settings: FjallSettings,
) -> Result<GroupCommitStore, StoreError> {
    let engine = FjallEngine::open(dir, settings)?;
    GroupCommitStore::start(Box::new(engine), policy)
        .map_err(|e| StoreError::Io(format!("cannot start the store thread: {e}")))
}
