//! Builds each listener's authentication and authorization from its files: the password
//! file (`midge passwd` or `mosquitto_passwd`), which also serves SCRAM-SHA-256/512 through
//! MQTT 5 enhanced authentication, and the ACL file (mosquitto's format). Also the thread
//! pool that checks passwords, so that slow hashing never stalls the tasks that move
//! messages, and the reload of the files on SIGHUP.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use midge_auth::acl::{AclAuthorizer, AclFile};
use midge_auth::password::{PasswordAuthenticator, PasswordFile};
use midge_auth::ScramAuthenticator;
use midge_broker::auth::{BlockingRunner, ListenerAuth};
use tracing::{error, info, warn};

use crate::config::ListenerConfig;

/// Settings shared by every listener's authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// A refused login is answered after this long.
    pub failed_login_delay: Duration,
    /// Threads that check passwords.
    pub check_threads: usize,
    /// Password checks that may wait for a thread; a login beyond that is refused with
    /// "server busy".
    pub max_pending_checks: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            failed_login_delay: Duration::from_secs(1),
            check_threads: 0,
            max_pending_checks: 1024,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run password checks, fed by a bounded queue. They stop when the last
/// listener that uses the pool is gone.
#[derive(Debug)]
pub struct AuthPool {
    jobs: SyncSender<Job>,
}

impl AuthPool {
    /// Starts `threads` threads (0: one per core) with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Arc<Self>> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("midge-auth-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Arc::new(AuthPool { jobs }))
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        // A panicking backend must not take the thread with it; the client then hits the
        // connect timeout.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            error!("an authentication backend panicked");
        }
    }
}

impl BlockingRunner for AuthPool {
    fn run(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}

/// A listener's files, kept to reload them.
#[derive(Debug, Default)]
pub struct AuthFiles {
    password: Option<(PathBuf, Arc<PasswordAuthenticator>)>,
    acl: Option<(PathBuf, Arc<AclAuthorizer>)>,
}

impl AuthFiles {
    /// Reads the files again and swaps them in; a file that no longer loads keeps its
    /// previous version in force (and the error is returned).
    pub fn reload(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some((path, authn)) = &self.password {
            match PasswordFile::load(path) {
                Ok(file) => {
                    info!(file = %path.display(), users = file.len(), "password file reloaded");
                    authn.reload(file);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some((path, authz)) = &self.acl {
            match AclFile::load(path) {
                Ok(file) => {
                    for w in file.warnings() {
                        warn!(file = %path.display(), "{w}");
                    }
                    info!(file = %path.display(), rules = file.rule_count(), "ACL file reloaded");
                    authz.reload(file);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// File contents read by a reload for the password and ACL objects that connections
/// already hold, applied only when the reload commits (a reload is all or nothing).
#[derive(Debug, Default)]
pub struct PendingAuth {
    password: Option<(Arc<PasswordAuthenticator>, PasswordFile)>,
    acl: Option<(Arc<AclAuthorizer>, AclFile)>,
}

impl PendingAuth {
    /// Swaps the new contents in: the connections that hold these objects use them from
    /// their next check.
    pub fn apply(self) {
        if let Some((authn, file)) = self.password {
            authn.reload(file);
        }
        if let Some((authz, file)) = self.acl {
            authz.reload(file);
        }
    }
}

/// Loads a listener's password and ACL files. With `reuse` (the files of the listener a
/// reload changes), a listener that had a password or ACL file and still has one keeps
/// the same authenticator and authorizer objects, so that the connections already open
/// follow the new file (also when its path changed) once the returned `PendingAuth` is
/// applied.
pub fn listener_auth(
    c: &ListenerConfig,
    settings: &AuthSettings,
    pool: Option<&Arc<AuthPool>>,
    reuse: Option<&AuthFiles>,
) -> Result<(ListenerAuth, AuthFiles, PendingAuth), String> {
    let mut auth = ListenerAuth {
        allow_anonymous: c.allow_anonymous,
        use_identity_as_username: c.tls.as_ref().is_some_and(|t| t.use_identity_as_username),
        failed_login_delay: settings.failed_login_delay,
        runner: pool.map(|p| p.clone() as Arc<dyn BlockingRunner>),
        ..Default::default()
    };
    let mut files = AuthFiles::default();
    let mut pending = PendingAuth::default();
    if let Some(path) = &c.password_file {
        let file = PasswordFile::load(path).map_err(|e| e.to_string())?;
        info!(file = %path.display(), users = file.len(), "password file loaded");
        let authn = match reuse.and_then(|r| r.password.as_ref()) {
            Some((_, held)) => {
                pending.password = Some((held.clone(), file));
                held.clone()
            }
            None => Arc::new(PasswordAuthenticator::new(file)),
        };
        auth.authenticators.push(authn.clone());
        auth.enhanced
            .push(Arc::new(ScramAuthenticator::new(authn.clone())));
        files.password = Some((path.clone(), authn));
    }
    if let Some(path) = &c.acl_file {
        let file = AclFile::load(path).map_err(|e| e.to_string())?;
        for w in file.warnings() {
            warn!(file = %path.display(), "{w}");
        }
        info!(file = %path.display(), rules = file.rule_count(), "ACL file loaded");
        let authz = match reuse.and_then(|r| r.acl.as_ref()) {
            Some((_, held)) => {
                pending.acl = Some((held.clone(), file));
                held.clone()
            }
            None => Arc::new(AclAuthorizer::new(file)),
        };
        auth.authorizers.push(authz.clone());
        files.acl = Some((path.clone(), authz));
    }
    Ok((auth, files, pending))
}
