//! The HTTP listener (`http.listen`, `--listen-http`; off by default): Prometheus metrics at
//! `/metrics`, the JSON admin API under `/api/v1` (described by `/api/openapi.json`), and the
//! dashboard at `/`. The API needs the admin token (`Authorization: Bearer`, or `?token=`
//! for the browser's EventSource) or a user of `http.password_file` (HTTP Basic); the
//! dashboard's files and the OpenAPI description do not, and `/metrics` only with
//! `http.metrics_require_auth`.

mod api;
mod metrics;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use midge_auth::password::PasswordFile;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::HttpConfig;
use crate::Control;

/// The OpenAPI description of the admin API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How the admin API checks callers.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    token: Option<String>,
    passwords: Option<Arc<PasswordFile>>,
    users: Vec<String>,
    metrics_require_auth: bool,
}

/// A bound HTTP listener.
#[derive(Debug)]
pub struct BoundHttp {
    tcp: TcpListener,
    auth: AdminAuth,
}

impl BoundHttp {
    /// Binds the listener and sets up its authentication: the configured token, else
    /// the token file (created with a random token when there is no password file either).
    pub async fn bind(c: &HttpConfig) -> std::io::Result<Self> {
        let passwords = match &c.password_file {
            Some(p) => Some(Arc::new(PasswordFile::load(p).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("http.password_file: {e}"),
                )
            })?)),
            None => None,
        };
        let token = match &c.token {
            Some(t) => Some(t.clone()),
            None => read_or_create_token(&c.token_file, passwords.is_none())?,
        };
        let tcp = TcpListener::bind(c.addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen for HTTP on {}: {e}", c.addr),
            )
        })?;
        Ok(BoundHttp {
            tcp,
            auth: AdminAuth {
                token,
                passwords,
                users: c.users.clone(),
                metrics_require_auth: c.metrics_require_auth,
            },
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The token in `path`; if the file does not exist and `create`, a new random token is
/// written there (mode 0600).
fn read_or_create_token(path: &Path, create: bool) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read the admin token file {}: {e}", path.display()),
            ))
        }
    }
    if !create {
        return Ok(None);
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create the admin token file {}: {e}", path.display()),
        )
    })?;
    writeln!(f, "{token}")?;
    info!(file = %path.display(), "admin API token created");
    Ok(Some(token))
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub control: Arc<Control>,
    pub auth: Arc<AdminAuth>,
    pub shutdown: CancellationToken,
}

/// Serves HTTP until shutdown.
pub async fn serve(h: BoundHttp, control: Arc<Control>, shutdown: CancellationToken) {
    if let Ok(addr) = h.local_addr() {
        info!(%addr, "HTTP: metrics at http://{addr}/metrics, dashboard at http://{addr}/");
    }
    let state = AppState {
        control,
        auth: Arc::new(h.auth),
        shutdown: shutdown.clone(),
    };
    let app = router(state);
    let stop = shutdown.clone();
    if let Err(e) = axum::serve(h.tcp, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        warn!(error = %e, "the HTTP listener stopped");
    }
}

fn router(state: AppState) -> Router {
    // A publish body holds at most one maximum-size message, base64-encoded, plus its JSON.
    let max_packet = state.control.broker.config().max_packet_size as usize;
    let body_limit = max_packet / 3 * 4 + 64 * 1024;
    let api = api::routes()
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ));
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", ASSET_INDEX)))
        .route(
            "/dashboard/app.js",
            get(|| asset("text/javascript; charset=utf-8", ASSET_JS)),
        )
        .route(
            "/dashboard/app.css",
            get(|| asset("text/css; charset=utf-8", ASSET_CSS)),
        )
        .route(
            "/api/openapi.json",
            get(|| asset("application/json", OPENAPI)),
        )
        .route("/metrics", get(metrics::metrics))
        .merge(api)
        .fallback(|| async { api::error(StatusCode::NOT_FOUND, "no such path") })
        .method_not_allowed_fallback(|| async {
            api::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path (see /api/openapi.json)",
            )
        })
        .with_state(state)
}

const ASSET_INDEX: &str = include_str!("assets/index.html");
const ASSET_JS: &str = include_str!("assets/app.js");
const ASSET_CSS: &str = include_str!("assets/app.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The token of a request: bearer header, else `token` query parameter.
fn bearer(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    let axum::extract::Query(q) =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
            .ok()?;
    q.get("token").cloned()
}

/// The user and password of an HTTP Basic header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

impl AdminAuth {
    /// Whether the request carries valid admin credentials.
    async fn allows(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
        if let (Some(expected), Some(given)) = (&self.token, bearer(headers, uri)) {
            use subtle::ConstantTimeEq;
            if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
                return true;
            }
        }
        if let (Some(file), Some((user, pass))) = (&self.passwords, basic(headers)) {
            if !self.users.is_empty() && !self.users.contains(&user) {
                return false;
            }
            let file = file.clone();
            // Password hashing is slow on purpose: off the async workers.
            return tokio::task::spawn_blocking(move || file.verify(&user, pass.as_bytes()))
                .await
                .unwrap_or(false);
        }
        false
    }
}

async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.auth.allows(req.headers(), req.uri()).await {
        return next.run(req).await;
    }
    let mut r = api::error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin credentials: send Authorization: Bearer TOKEN (see http.token / http.token_file) or a user of http.password_file",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"midge\""),
    );
    r
}
