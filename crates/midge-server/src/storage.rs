//! Opening the data directory at start: the store, then the broker recovered from it. A
//! directory that cannot be opened or read stops the start with a message naming it and the
//! way out, unless `recover_empty` is set: then it is moved aside (renamed
//! `<dir>.damaged-<unix seconds>`, nothing deleted) and the broker starts empty. A directory
//! that is sound but not for this process (held by a running broker, written by a newer
//! version) is never moved aside.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use midge_broker::store::StoreError;
use midge_broker::{Broker, BrokerConfig};
use midge_storage::GroupCommitStore;
use tracing::{error, info, warn};

use crate::config::StorageConfig;

/// Opens the store and recovers the broker from it.
pub fn open(
    s: &StorageConfig,
    broker: &BrokerConfig,
) -> std::io::Result<(Broker, Arc<GroupCommitStore>)> {
    match attempt(s, broker) {
        Ok(v) => Ok(v),
        Err(StoreError::Unavailable(why)) => Err(std::io::Error::other(why)),
        Err(e) if s.recover_empty => {
            let aside = moved_aside(&s.data_dir);
            error!(
                dir = %s.data_dir.display(),
                moved_to = %aside.display(),
                error = %e,
                "the data directory cannot be used; moving it aside and starting empty (--recover-empty)"
            );
            std::fs::rename(&s.data_dir, &aside).map_err(|io| {
                std::io::Error::other(format!(
                    "cannot move the data directory {} aside to {}: {io}",
                    s.data_dir.display(),
                    aside.display()
                ))
            })?;
            attempt(s, broker).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot start with an empty data directory {}: {e}",
                    s.data_dir.display()
                ))
            })
        }
        Err(e) => Err(std::io::Error::other(format!(
            "cannot open the data directory {}: {e}. Repair or move it, or start with \
             --recover-empty to move it aside and start with an empty store",
            s.data_dir.display()
        ))),
    }
}

fn attempt(
    s: &StorageConfig,
    config: &BrokerConfig,
) -> Result<(Broker, Arc<GroupCommitStore>), StoreError> {
    let started = Instant::now();
    let store = Arc::new(midge_storage::open(&s.data_dir, s.policy, s.engine)?);
    let now = crate::driver::now();
    let broker = match Broker::with_store(config.clone(), store.clone(), now) {
        Ok(b) => b,
        Err(e) => {
            store.close();
            return Err(e);
        }
    };
    let skipped = store.skipped_records();
    if skipped > 0 {
        warn!(
            dir = %s.data_dir.display(),
            skipped,
            "records that could not be read were skipped"
        );
    }
    info!(
        dir = %s.data_dir.display(),
        sessions = broker.session_count(),
        retained = broker.retained_count(),
        wills = broker.pending_wills(),
        ms = started.elapsed().as_millis() as u64,
        "store opened"
    );
    Ok((broker, store))
}

fn moved_aside(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".damaged-{secs}"));
    PathBuf::from(name)
}
