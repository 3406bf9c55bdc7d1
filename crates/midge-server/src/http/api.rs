//! The admin API's handlers (`/api/v1`): JSON in and out, errors as `{"error": "..."}` with
//! a 4xx status. `crates/midge-server/src/http/openapi.json` describes every route; a test
//! checks the two agree.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream::Stream;
use midge_broker::admin::SessionSnapshot;
use midge_broker::session::StoredSubscription;
use midge_broker::watch::Watch;
use midge_broker::{Broker, Message, Notify, NEVER_EXPIRE};
use midge_codec::{ProtocolVersion, PublishProperties, QoS, TopicFilter, TopicName};
use serde::{Deserialize, Serialize};

use super::AppState;

/// Most items one list request returns.
pub const MAX_LIMIT: usize = 10_000;
/// Items a list request returns without `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Messages a topic watch holds for a slow browser before it drops.
pub const WATCH_CAPACITY: usize = 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/broker", get(broker_info))
        .route("/api/v1/clients", get(list_clients))
        .route("/api/v1/clients/{client_id}", get(get_client))
        .route("/api/v1/clients/{client_id}/kick", post(kick))
        .route("/api/v1/sessions", get(list_sessions))
        .route(
            "/api/v1/sessions/{client_id}",
            get(get_session).delete(delete_session),
        )
        .route("/api/v1/subscriptions", get(list_subscriptions))
        .route(
            "/api/v1/retained",
            get(list_retained).delete(delete_retained),
        )
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/watch", get(watch))
}

/// An axum extractor (`Query`, `Path`) whose rejection (`?limit=ten`, a client id that is not
/// UTF-8) is answered like every other API error, as JSON, instead of as axum's plain text.
struct Api<E>(E);

impl<E, S> axum::extract::FromRequestParts<S> for Api<E>
where
    E: axum::extract::FromRequestParts<S>,
    E::Rejection: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        E::from_request_parts(parts, state)
            .await
            .map(Api)
            .map_err(|e| {
                let message = e.to_string();
                error(e.into_response().status(), &message)
            })
    }
}

/// An error response.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn protocol_name(p: ProtocolVersion) -> &'static str {
    match p {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// Paging and search parameters of list requests.
#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    /// Substring of the client id (or of the filter, for subscriptions).
    q: Option<String>,
    client_id: Option<String>,
    online: Option<bool>,
    filter: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

impl ListQuery {
    fn page<T>(&self, items: Vec<T>) -> (usize, Vec<T>) {
        let total = items.len();
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let offset = self.offset.unwrap_or(0);
        (total, items.into_iter().skip(offset).take(limit).collect())
    }

    fn matches_id(&self, id: &str) -> bool {
        self.q.as_deref().is_none_or(|q| id.contains(q))
            && self.client_id.as_deref().is_none_or(|c| c == id)
    }
}

#[derive(Debug, Serialize)]
struct BrokerInfo {
    version: &'static str,
    uptime_secs: u64,
    clients_connected: usize,
    sessions: usize,
    subscriptions: usize,
    retained: usize,
    messages_received: u64,
    messages_sent: u64,
    bytes_received: u64,
    bytes_sent: u64,
    messages_dropped: u64,
    queued_messages: usize,
    inflight: usize,
    memory_bytes: u64,
    memory_budget_bytes: u64,
    reading_paused: bool,
}

async fn broker_info(State(s): State<AppState>) -> Json<BrokerInfo> {
    let c = &s.control;
    let m = &c.broker.metrics;
    let t = c.broker.totals();
    Json(BrokerInfo {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: c.started.elapsed().as_secs(),
        clients_connected: t.online,
        sessions: t.sessions,
        subscriptions: c.broker.subscription_count(),
        retained: c.broker.retained_count(),
        messages_received: m.received(),
        messages_sent: m.sent(),
        bytes_received: m.bytes_received.load(Ordering::Relaxed),
        bytes_sent: m.bytes_sent.load(Ordering::Relaxed),
        messages_dropped: m.dropped_total(),
        queued_messages: t.queued_messages,
        inflight: t.inflight,
        memory_bytes: c.memory.current(),
        memory_budget_bytes: c.limits.memory_budget(),
        reading_paused: c.limits.memory_paused(),
    })
}

#[derive(Debug, Serialize)]
struct ClientView {
    client_id: String,
    username: Option<String>,
    address: Option<String>,
    listener: String,
    protocol: &'static str,
    keep_alive_secs: u16,
    clean_start: bool,
    connected_since_ms: u64,
    inflight: usize,
    queued: usize,
    subscriptions: usize,
    session_expiry_secs: u32,
}

fn client_view(s: &SessionSnapshot) -> Option<ClientView> {
    let c = s.client.as_ref()?;
    Some(ClientView {
        client_id: s.client_id.as_str().to_owned(),
        username: c.username.as_deref().map(str::to_owned),
        address: c.peer.map(|p| p.to_string()),
        listener: c.listener.to_string(),
        protocol: protocol_name(s.protocol),
        keep_alive_secs: c.keep_alive,
        clean_start: c.clean_start,
        connected_since_ms: c.connected_at.as_millis(),
        inflight: s.inflight,
        queued: s.queued,
        subscriptions: s.subscription_count,
        session_expiry_secs: s.expiry_secs,
    })
}

#[derive(Debug, Serialize)]
struct ClientList {
    total: usize,
    clients: Vec<ClientView>,
}

async fn list_clients(
    State(s): State<AppState>,
    Api(Query(q)): Api<Query<ListQuery>>,
) -> Json<ClientList> {
    let snaps = s
        .control
        .broker
        .sessions_snapshot(|id| q.matches_id(id), false);
    let views: Vec<ClientView> = snaps.iter().filter_map(client_view).collect();
    let (total, clients) = q.page(views);
    Json(ClientList { total, clients })
}

async fn get_client(State(s): State<AppState>, Api(Path(id)): Api<Path<String>>) -> Response {
    match s
        .control
        .broker
        .session_snapshot(&id)
        .as_ref()
        .and_then(client_view)
    {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no client connected with this id"),
    }
}

async fn kick(State(s): State<AppState>, Api(Path(id)): Api<Path<String>>) -> Response {
    if s.control.broker.kick(&id) {
        tracing::info!(client_id = %id, "client kicked through the admin API");
        Json(serde_json::json!({ "kicked": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no client connected with this id")
    }
}

#[derive(Debug, Serialize)]
struct SubscriptionView {
    client_id: String,
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    subscription_id: Option<u32>,
}

fn subscription_view(client_id: &str, s: &StoredSubscription) -> SubscriptionView {
    SubscriptionView {
        client_id: client_id.to_owned(),
        filter: s.filter.as_str().to_owned(),
        qos: s.options.qos as u8,
        no_local: s.options.no_local,
        retain_as_published: s.options.retain_as_published,
        retain_handling: s.options.retain_handling as u8,
        subscription_id: s.sub_id.map(|i| i.get()),
    }
}

#[derive(Debug, Serialize)]
struct SessionView {
    client_id: String,
    online: bool,
    protocol: &'static str,
    expiry_secs: u32,
    expires_in_secs: Option<u64>,
    queued: usize,
    queued_bytes: usize,
    inflight: usize,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<Vec<SubscriptionView>>,
}

fn session_view(s: &SessionSnapshot, with_filters: bool) -> SessionView {
    let now = crate::driver::now();
    SessionView {
        client_id: s.client_id.as_str().to_owned(),
        online: s.client.is_some(),
        protocol: protocol_name(s.protocol),
        expiry_secs: s.expiry_secs,
        expires_in_secs: s
            .expires_at
            .filter(|_| s.client.is_none() && s.expiry_secs != NEVER_EXPIRE)
            .map(|t| t.since(now).as_secs()),
        queued: s.queued,
        queued_bytes: s.queued_bytes,
        inflight: s.inflight,
        subscriptions: s.subscription_count,
        filters: with_filters.then(|| {
            s.subscriptions
                .iter()
                .map(|f| subscription_view(s.client_id.as_str(), f))
                .collect()
        }),
    }
}

#[derive(Debug, Serialize)]
struct SessionList {
    total: usize,
    sessions: Vec<SessionView>,
}

async fn list_sessions(
    State(s): State<AppState>,
    Api(Query(q)): Api<Query<ListQuery>>,
) -> Json<SessionList> {
    let snaps = s
        .control
        .broker
        .sessions_snapshot(|id| q.matches_id(id), false);
    let views: Vec<SessionView> = snaps
        .iter()
        .filter(|s| q.online.is_none_or(|o| o == s.client.is_some()))
        .map(|s| session_view(s, false))
        .collect();
    let (total, sessions) = q.page(views);
    Json(SessionList { total, sessions })
}

async fn get_session(State(s): State<AppState>, Api(Path(id)): Api<Path<String>>) -> Response {
    match s.control.broker.session_snapshot(&id) {
        Some(snap) => Json(session_view(&snap, true)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no session with this client id"),
    }
}

async fn delete_session(State(s): State<AppState>, Api(Path(id)): Api<Path<String>>) -> Response {
    if s.control.broker.delete_session(&id, crate::driver::now()) {
        tracing::info!(client_id = %id, "session deleted through the admin API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no session with this client id")
    }
}

#[derive(Debug, Serialize)]
struct SubscriptionList {
    total: usize,
    subscriptions: Vec<SubscriptionView>,
}

async fn list_subscriptions(
    State(s): State<AppState>,
    Api(Query(q)): Api<Query<ListQuery>>,
) -> Json<SubscriptionList> {
    let by_client = q.client_id.clone();
    let snaps = s
        .control
        .broker
        .sessions_snapshot(|id| by_client.as_deref().is_none_or(|c| c == id), true);
    let views: Vec<SubscriptionView> = snaps
        .iter()
        .flat_map(|snap| {
            snap.subscriptions
                .iter()
                .filter(|f| q.q.as_deref().is_none_or(|t| f.filter.as_str().contains(t)))
                .map(|f| subscription_view(snap.client_id.as_str(), f))
        })
        .collect();
    let (total, subscriptions) = q.page(views);
    Json(SubscriptionList {
        total,
        subscriptions,
    })
}

/// A payload as JSON: UTF-8 text when it is, base64 otherwise.
fn payload_json(payload: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(payload) {
        Ok(t) => (t.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            "base64",
        ),
    }
}

#[derive(Debug, Serialize)]
struct MessageView {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
    payload_encoding: &'static str,
    payload_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_ms: Option<u64>,
}

fn message_view(m: &Message, received_ms: Option<u64>) -> MessageView {
    let (payload, payload_encoding) = payload_json(&m.payload);
    MessageView {
        topic: m.topic.as_str().to_owned(),
        qos: m.qos as u8,
        retain: m.retain,
        payload,
        payload_encoding,
        payload_bytes: m.payload.len(),
        received_ms,
    }
}

#[derive(Debug, Serialize)]
struct RetainedList {
    total: usize,
    messages: Vec<MessageView>,
}

fn parse_filter(f: Option<&str>) -> Result<TopicFilter, Box<Response>> {
    let text = f.unwrap_or("#");
    if text.starts_with("$share/") {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "a shared subscription filter cannot be used here",
        )));
    }
    TopicFilter::try_from(text).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("`{text}` is not a topic filter: {e}"),
        ))
    })
}

async fn list_retained(
    State(s): State<AppState>,
    Api(Query(q)): Api<Query<ListQuery>>,
) -> Response {
    let filter = match parse_filter(q.filter.as_deref()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let msgs = s
        .control
        .broker
        .retained_snapshot(&filter, crate::driver::now());
    let views: Vec<MessageView> = msgs.iter().map(|m| message_view(m, None)).collect();
    let (total, messages) = q.page(views);
    Json(RetainedList { total, messages }).into_response()
}

async fn delete_retained(
    State(s): State<AppState>,
    Api(Query(q)): Api<Query<HashMap<String, String>>>,
) -> Response {
    let Some(topic) = q.get("topic") else {
        return error(StatusCode::BAD_REQUEST, "give the topic: ?topic=a/b");
    };
    if s.control.broker.delete_retained(topic) {
        tracing::info!(%topic, "retained message deleted through the admin API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no retained message on this topic")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    payload_encoding: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

async fn publish(
    State(s): State<AppState>,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let topic = match TopicName::try_from(req.topic.as_str()) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`{}` is not a topic name: {e}", req.topic),
            )
        }
    };
    let Ok(qos) = QoS::try_from(req.qos) else {
        return error(StatusCode::BAD_REQUEST, "qos must be 0, 1 or 2");
    };
    let payload = match req.payload_encoding.as_deref().unwrap_or("utf8") {
        "utf8" => Bytes::from(req.payload),
        "base64" => match base64::engine::general_purpose::STANDARD.decode(&req.payload) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("payload is not base64: {e}"),
                )
            }
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("payload_encoding `{other}`: use \"utf8\" or \"base64\""),
            )
        }
    };
    let max = s.control.broker.config().max_packet_size as usize;
    if payload.len() + topic.len() > max {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the message is larger than limits.max_packet_size_bytes",
        );
    }
    let matched = s.control.broker.publish(
        Message {
            topic,
            payload,
            qos,
            retain: req.retain,
            properties: PublishProperties::default(),
            expires_at: None,
        },
        None,
        crate::driver::now(),
    );
    Json(serde_json::json!({ "matched": matched })).into_response()
}

async fn reload(State(s): State<AppState>) -> Response {
    match s.control.reload().await {
        Ok(changes) => {
            Json(serde_json::json!({ "reloaded": true, "changes": changes })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "reload refused; the running configuration stays");
            error(StatusCode::UNPROCESSABLE_ENTITY, &e)
        }
    }
}

/// Wakes the event stream of a watch.
#[derive(Debug, Default)]
struct WatchWake(tokio::sync::Notify);

impl Notify for WatchWake {
    fn notify(&self) {
        self.0.notify_one();
    }
}

/// Closes the watch when the browser goes away (the stream is dropped).
struct WatchGuard {
    broker: Arc<Broker>,
    watch: Arc<Watch>,
    wake: Arc<WatchWake>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.broker.unwatch(&self.watch);
    }
}

async fn watch(State(s): State<AppState>, Api(Query(q)): Api<Query<ListQuery>>) -> Response {
    let filter = match parse_filter(q.filter.as_deref()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let wake = Arc::new(WatchWake::default());
    let broker = s.control.broker.clone();
    let w = broker.watch(filter, WATCH_CAPACITY, wake.clone());
    let guard = WatchGuard {
        broker,
        watch: w,
        wake,
    };
    Sse::new(events(guard, s.shutdown.clone()))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(
    guard: WatchGuard,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let pending: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    futures_util::stream::unfold(
        (guard, pending, shutdown),
        |(guard, mut pending, shutdown)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((Ok(e), (guard, pending, shutdown)));
                }
                let now = crate::driver::now().as_millis();
                for m in guard.watch.take() {
                    if let Ok(e) = Event::default()
                        .event("message")
                        .json_data(message_view(&m, Some(now)))
                    {
                        pending.push_back(e);
                    }
                }
                if !pending.is_empty() {
                    continue;
                }
                tokio::select! {
                    // Cancel-safe: a permit stored by `notify_one` is not lost.
                    _ = guard.wake.0.notified() => {}
                    // Cancel-safe: level-triggered; ends the stream at shutdown.
                    _ = shutdown.cancelled() => return None,
                }
            }
        },
    )
}
