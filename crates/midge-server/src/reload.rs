//! Live reload (SIGHUP, `midge ctl reload`): the configuration is read again and applied
//! without a restart. Listeners are added, removed (closing their connections) or changed
//! (new connections use the new settings); password, ACL and certificate files are read
//! again in place, so connected clients are checked against the new contents; limits and
//! broker settings change at once. A configuration that does not load, or a listener that
//! cannot be set up, refuses the whole reload: nothing changes. Settings that need a
//! restart (storage, worker threads, the HTTP listener, logging) are reported and keep
//! their running values.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{AuthPool, PendingAuth};
use crate::config::{ListenerConfig, ServerConfig};
use crate::driver::DriverConfig;
use crate::listener::{self, BoundListener, ListenerRuntime};
use crate::Control;

/// A running listener.
#[derive(Debug)]
pub(crate) struct ListenerEntry {
    /// Its configuration as written (the port may be 0).
    pub configured: ListenerConfig,
    /// The address bound.
    pub local_addr: Option<SocketAddr>,
    /// What its new connections use.
    pub runtime: Arc<ArcSwap<ListenerRuntime>>,
    /// Removes it.
    pub stop: CancellationToken,
}

impl Control {
    /// Reads the configuration from the config source and applies it. Returns what
    /// changed; an error (nothing changed) says why.
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        let Some(source) = &self.source else {
            return Err("this server has no configuration source to reload from".into());
        };
        let new = source()?;
        self.reload_with(new).await
    }

    /// Applies `new` as far as it can change while running; see the module docs.
    pub async fn reload_with(&self, new: ServerConfig) -> Result<Vec<String>, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.config.lock().clone();
        let mut report = Vec::new();
        let restart = |what: &str, report: &mut Vec<String>| {
            report.push(format!(
                "{what} changed: needs a restart, the running value stays"
            ));
        };
        if new
            .storage
            .as_ref()
            .map(|s| (&s.data_dir, s.policy, s.engine))
            != old
                .storage
                .as_ref()
                .map(|s| (&s.data_dir, s.policy, s.engine))
        {
            restart("storage", &mut report);
        }
        if new.worker_threads != old.worker_threads {
            restart("server.worker_threads", &mut report);
        }
        if new.http != old.http {
            restart("http", &mut report);
        }
        if new.log != old.log {
            restart("log", &mut report);
        }
        // Stage every listener first: any failure leaves everything as it is.
        let pool = self.auth_pool(&new)?;
        let mut matched: Vec<(usize, ListenerRuntime, PendingAuth)> = Vec::new();
        let mut to_add = Vec::new();
        let count = {
            let entries = self.listeners.lock();
            for lc in &new.listeners {
                // Matched by address alone: a listener whose kind changes (`mqtt` to `ws`)
                // keeps its socket and serves new connections with the new kind; binding a
                // second socket first would find the address taken.
                let found = entries.iter().position(|e| e.configured.addr == lc.addr);
                match found {
                    Some(i) => {
                        let e = &entries[i];
                        let name = match (e.configured.kind == lc.kind, e.local_addr) {
                            (false, Some(bound)) => {
                                format!("{}://{bound}", lc.kind.scheme()).into()
                            }
                            _ => e.runtime.load().name.clone(),
                        };
                        // Loading checks every file and certificate, also for in-place
                        // reloads. The password and ACL objects the listener's connections
                        // hold are kept, and get the new contents if the reload commits.
                        let held = e.runtime.load();
                        let (rt, pending) = ListenerRuntime::load_reusing(
                            lc.clone(),
                            name,
                            &new.auth,
                            pool.as_ref(),
                            Some(&held.auth_files),
                        )
                        .map_err(|e| e.to_string())?;
                        matched.push((i, rt, pending));
                    }
                    None => to_add.push(lc.clone()),
                }
            }
            entries.len()
        };
        let mut added = Vec::new();
        for lc in to_add {
            let l = BoundListener::bind(
                lc.clone(),
                &new.auth,
                pool.as_ref(),
                self.shared.shutdown.child_token(),
            )
            .await
            .map_err(|e| e.to_string())?;
            added.push((lc, l));
        }
        // Commit.
        let mut entries = self.listeners.lock();
        debug_assert_eq!(entries.len(), count, "reloads are serialized");
        let mut keep = vec![false; entries.len()];
        for (i, rt, pending) in matched {
            keep[i] = true;
            let e = &mut entries[i];
            if e.configured == rt.config && old.auth == new.auth {
                // The running password and ACL objects were reused by the staging: give
                // them the contents it read.
                pending.apply();
                let running = e.runtime.load();
                if let Some(tls) = &running.tls {
                    if let Err(err) = tls.reload(true) {
                        warn!(error = %err, "certificates changed again during the reload; the previous ones stay");
                    }
                }
            } else {
                report.push(format!("listener {} changed", rt.name));
                pending.apply();
                // Same socket, same connections: they keep counting against its limit.
                let mut rt = rt;
                rt.slots = e.runtime.load().slots.clone();
                rt.slots
                    .set_max(rt.config.max_connections.unwrap_or(usize::MAX));
                e.configured = rt.config.clone();
                e.runtime.store(Arc::new(rt));
            }
        }
        let mut i = 0;
        entries.retain(|e| {
            let k = keep[i];
            i += 1;
            if !k {
                report.push(format!("listener {} removed", e.runtime.load().name));
                e.stop.cancel();
            }
            k
        });
        for (lc, l) in added {
            report.push(format!("listener {} added", l.runtime.load().name));
            entries.push(ListenerEntry {
                configured: lc,
                local_addr: l.local_addr().ok(),
                runtime: l.runtime.clone(),
                stop: l.stop.clone(),
            });
            self.shared
                .tasks
                .spawn(listener::accept_loop(l, self.shared.clone()));
        }
        drop(entries);
        self.limits.update(new.max_connections, &new.limits);
        self.broker
            .limits
            .publish_rate
            .store(new.limits.publish_rate, Ordering::Relaxed);
        self.broker.set_config(new.broker.clone());
        self.shared.cfg.store(Arc::new(DriverConfig {
            limits: new.decode_limits(),
            connect_timeout: new.connect_timeout,
            tcp_keepalive: new.tcp_keepalive,
            live: self.limits.clone(),
        }));
        self.sys_interval.store(Arc::new(new.sys_interval));
        if new.max_connections != old.max_connections
            || new.limits != old.limits
            || new.broker != old.broker
            || new.connect_timeout != old.connect_timeout
            || new.sys_interval != old.sys_interval
        {
            report.push("limits and broker settings applied".into());
        }
        let mut applied = new;
        applied.storage = old.storage;
        applied.worker_threads = old.worker_threads;
        applied.http = old.http;
        applied.log = old.log;
        *self.config.lock() = applied;
        info!(changes = %report.join("; "), "configuration reloaded");
        Ok(report)
    }
}

impl Control {
    /// The password-check pool, started if a listener of `config` needs one and none runs.
    fn auth_pool(&self, config: &ServerConfig) -> Result<Option<Arc<AuthPool>>, String> {
        let mut pool = self.pool.lock();
        if pool.is_none() && config.listeners.iter().any(|l| l.password_file.is_some()) {
            *pool = Some(
                AuthPool::start(config.auth.check_threads, config.auth.max_pending_checks)
                    .map_err(|e| format!("cannot start the password check threads: {e}"))?,
            );
        }
        Ok(pool.clone())
    }

    /// Addresses the MQTT listeners are bound to.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .lock()
            .iter()
            .filter_map(|e| e.local_addr)
            .collect()
    }

    /// Reloads the certificates of TLS listeners, all of them (`force`) or those whose
    /// files changed. A failed reload is logged and the running certificates stay.
    pub fn reload_certificates(&self, force: bool) {
        let handles: Vec<_> = self
            .listeners
            .lock()
            .iter()
            .filter_map(|e| e.runtime.load().tls.clone())
            .collect();
        for h in handles {
            match h.reload(force) {
                Ok(true) => {
                    info!(cert = %h.settings().cert_file.display(), "TLS certificates reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "TLS certificates not reloaded; the previous ones stay in use")
                }
            }
        }
    }

    /// Reads every listener's password and ACL files again, in place.
    pub fn reload_auth_files(&self) -> Result<(), String> {
        let runtimes: Vec<_> = self
            .listeners
            .lock()
            .iter()
            .map(|e| e.runtime.load_full())
            .collect();
        let errors: Vec<String> = runtimes
            .iter()
            .filter_map(|rt| rt.auth_files.reload().err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Reloads the certificates of TLS listeners whose files changed, every `every`, until
/// shutdown.
pub async fn watch_certificates(
    control: Arc<Control>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            // Cancel-safe: a timer.
            _ = tokio::time::sleep(every) => control.reload_certificates(false),
            // Cancel-safe: level-triggered.
            _ = shutdown.cancelled() => return,
        }
    }
}
