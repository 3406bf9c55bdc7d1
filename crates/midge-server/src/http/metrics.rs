//! `/metrics` in the Prometheus text format (version 0.0.4). Every metric is documented in
//! docs/operations.md.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use midge_broker::metrics::DISCONNECT_REASONS;

use super::AppState;

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {v}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
            }
        }
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.metric(name, "counter", help, &[("", v as f64)]);
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.metric(name, "gauge", help, &[("", v)]);
    }
}

fn by_qos(a: &[std::sync::atomic::AtomicU64; 3]) -> [(&'static str, f64); 3] {
    [
        ("qos=\"0\"", a[0].load(Ordering::Relaxed) as f64),
        ("qos=\"1\"", a[1].load(Ordering::Relaxed) as f64),
        ("qos=\"2\"", a[2].load(Ordering::Relaxed) as f64),
    ]
}

pub(super) async fn metrics(State(s): State<AppState>, req: Request) -> Response {
    if s.auth.metrics_require_auth && !s.auth.allows(req.headers(), req.uri()).await {
        return super::api::error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin credentials",
        );
    }
    let text = tokio::task::spawn_blocking(move || render(&s))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn render(s: &AppState) -> String {
    let c = &s.control;
    let m = &c.broker.metrics;
    let t = c.broker.totals();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut o = Out(String::with_capacity(8192));
    o.gauge(
        "midge_clients_connected",
        "Clients connected now.",
        t.online as f64,
    );
    o.gauge(
        "midge_clients_maximum",
        "Most clients connected at once since start.",
        m.clients_maximum.load(Ordering::Relaxed) as f64,
    );
    o.gauge(
        "midge_sessions",
        "Sessions, online and offline.",
        t.sessions as f64,
    );
    o.counter(
        "midge_connects_total",
        "CONNECTs accepted.",
        load(&m.connections_total),
    );
    o.counter(
        "midge_connects_refused_total",
        "CONNECTs refused (credentials, client id, protocol, server busy).",
        load(&m.connects_refused),
    );
    let reasons: Vec<(String, f64)> = DISCONNECT_REASONS
        .iter()
        .zip(&m.disconnects)
        .map(|(r, v)| (format!("reason=\"{r}\""), v.load(Ordering::Relaxed) as f64))
        .collect();
    let reasons: Vec<(&str, f64)> = reasons.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    o.metric(
        "midge_disconnects_total",
        "counter",
        "Connections that ended, by reason.",
        &reasons,
    );
    let st = &c.limits.stats;
    o.metric(
        "midge_connections_refused_total",
        "counter",
        "TCP connections refused by a limit before MQTT, by limit.",
        &[
            (
                "limit=\"max_connections\"",
                load(&st.refused_max_connections) as f64,
            ),
            (
                "limit=\"connection_rate\"",
                load(&st.refused_connection_rate) as f64,
            ),
        ],
    );
    o.counter(
        "midge_auth_failures_total",
        "Logins refused for bad credentials.",
        load(&m.auth_failures),
    );
    o.metric(
        "midge_messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        &by_qos(&m.messages_received_qos),
    );
    o.metric(
        "midge_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        &by_qos(&m.messages_sent_qos),
    );
    o.counter(
        "midge_publish_payload_bytes_received_total",
        "Payload bytes of the PUBLISH packets received.",
        load(&m.publish_bytes_received),
    );
    o.counter(
        "midge_bytes_received_total",
        "Bytes read from client connections.",
        load(&m.bytes_received),
    );
    o.counter(
        "midge_bytes_sent_total",
        "Bytes written to client connections.",
        load(&m.bytes_sent),
    );
    o.counter(
        "midge_messages_unrouted_total",
        "Messages that matched no subscription.",
        load(&m.messages_unrouted),
    );
    o.metric(
        "midge_messages_dropped_total",
        "counter",
        "Messages dropped, by cause.",
        &[
            ("cause=\"queue_full\"", load(&m.dropped_queue_full) as f64),
            (
                "cause=\"offline_qos0\"",
                load(&m.dropped_offline_qos0) as f64,
            ),
            ("cause=\"expired\"", load(&m.dropped_expired) as f64),
            ("cause=\"too_large\"", load(&m.dropped_too_large) as f64),
            ("cause=\"acl\"", load(&m.dropped_not_authorized) as f64),
            (
                "cause=\"quota_exceeded\"",
                load(&m.dropped_quota_exceeded) as f64,
            ),
            (
                "cause=\"retained_store_full\"",
                load(&m.retained_dropped_full) as f64,
            ),
        ],
    );
    o.counter(
        "midge_publishers_paused_total",
        "Times a publisher waited for a full subscriber queue (backpressure).",
        load(&m.publishers_paused),
    );
    o.counter(
        "midge_client_reads_throttled_total",
        "Times a client was not read from because of limits.max_bytes_per_sec_per_client.",
        load(&st.throttled_bytes),
    );
    o.gauge(
        "midge_queued_messages",
        "Messages queued for sessions (in memory and in the store).",
        t.queued_messages as f64,
    );
    o.gauge(
        "midge_queued_bytes",
        "Bytes of the queued messages.",
        t.queued_bytes as f64,
    );
    o.gauge(
        "midge_inflight_messages",
        "Messages sent to clients and not yet acknowledged.",
        t.inflight as f64,
    );
    o.gauge(
        "midge_retained_messages",
        "Retained messages.",
        c.broker.retained_count() as f64,
    );
    o.gauge(
        "midge_subscriptions",
        "Subscriptions.",
        c.broker.subscription_count() as f64,
    );
    o.counter(
        "midge_sessions_expired_total",
        "Sessions removed by expiry.",
        load(&m.sessions_expired),
    );
    if let Some(store) = &c.store {
        let stats = store.stats();
        o.counter(
            "midge_store_commits_total",
            "Store commits (each one write and, by default, one fsync).",
            load(&stats.commits),
        );
        o.counter(
            "midge_store_ops_total",
            "Operations written to the store.",
            load(&stats.ops),
        );
        o.metric(
            "midge_store_commit_seconds_total",
            "counter",
            "Time spent writing and syncing the store (divide by midge_store_commits_total for the mean commit latency).",
            &[("", load(&stats.commit_micros) as f64 / 1e6)],
        );
        o.counter(
            "midge_store_commit_failures_total",
            "Failed store commits.",
            load(&stats.failures),
        );
    }
    o.gauge(
        "midge_memory_bytes",
        "Memory in use as the memory budget measures it (heap, else resident set).",
        c.memory.current() as f64,
    );
    o.gauge(
        "midge_memory_budget_bytes",
        "limits.memory_budget_mib in bytes.",
        c.limits.memory_budget() as f64,
    );
    o.gauge(
        "midge_memory_paused",
        "1 while publishers are not read from because memory is over budget.",
        if c.limits.memory_paused() { 1.0 } else { 0.0 },
    );
    o.counter(
        "midge_memory_pauses_total",
        "Times the memory budget paused publishers.",
        load(&st.memory_pauses),
    );
    if let Some(rss) = crate::process::resident_bytes() {
        o.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss as f64,
        );
    }
    if let Some(cpu) = crate::process::cpu_seconds() {
        o.metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            &[("", cpu)],
        );
    }
    if let Some(fds) = crate::process::open_fds() {
        o.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            fds as f64,
        );
    }
    o.gauge(
        "midge_uptime_seconds",
        "Seconds since the broker started.",
        c.started.elapsed().as_secs_f64(),
    );
    o.0
}
