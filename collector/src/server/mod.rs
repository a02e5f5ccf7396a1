//! The collector's HTTP edge: axum on tokio, TLS with rustls, graceful shutdown. The handlers
//! check what they can on their own, in parallel; one writer task serializes the chain
//! decisions and commits (see [`ingest`]). [`serve`] runs the real server on a listener the
//! caller bound, so tests run it in-process on `127.0.0.1:0` exactly as the binary does.

pub mod admin;
pub mod body;
pub mod enroll;
pub mod error;
pub mod evidence;
pub mod fleet;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod overview;
pub mod quota;
pub mod read;
pub mod stats;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::accept::Policy;
use crate::store::Store;
use error::HttpError;
pub use limits::Limits;
pub use read::AdminToken;
use stats::Stats;

/// How long shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Verified statements waiting for the writer; handlers wait for room beyond this.
const QUEUE: usize = 4096;

/// Certificate files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate they issued.
    pub client_ca: Option<PathBuf>,
}

/// Everything [`serve`] needs besides the listener.
pub struct ServeConfig {
    /// The opened (and migrated) store. Shared, so tests can look at what was stored.
    pub store: Arc<dyn Store>,
    /// TLS certificate files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// The bearer token of the read endpoints; `None` closes them.
    pub admin_token: Option<AdminToken>,
    /// Clock skew and maximum age.
    pub policy: Policy,
    /// Quotas on enrolments and reports.
    pub quotas: quota::Quotas,
    /// Connection, time and byte bounds (see [`limits`]).
    pub limits: Limits,
    /// The dashboard's, the viewer token's and `/metrics`' settings (see [`ui`]).
    pub ui: ui::UiConfig,
    /// Signs the bundles of `GET /v1/export`; `None` answers it 503.
    pub export_key: Option<Arc<crate::evidence::ExportKey>>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("tls", &self.tls)
            .field("allow_plain_http", &self.allow_plain_http)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .field("ui", &self.ui)
            .finish_non_exhaustive()
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve plain HTTP on {0}: bootstrap tokens and reports would cross the \
         network in clear; give --tls-cert and --tls-key, listen on a loopback address (behind \
         a TLS-terminating proxy), or pass --allow-plain-http"
    )]
    PlainHttp(SocketAddr),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub policy: Policy,
    pub admin_token: Option<AdminToken>,
    pub stats: Arc<Stats>,
    pub limits: Limits,
    /// What the connection and byte bounds did.
    pub limit_stats: Arc<limits::LimitStats>,
    budget: Arc<limits::Budget>,
    writer: mpsc::Sender<ingest::Job>,
    key_cache: Arc<ingest::KeyCache>,
    pub quotas: quota::Quotas,
    /// Token-less enrolments by source IP.
    enroll_rate: quota::RateLimiter<std::net::IpAddr>,
    /// Dashboard sessions, the viewer and metrics tokens.
    pub ui: ui::UiState,
    /// Signs evidence bundles.
    pub export_key: Option<Arc<crate::evidence::ExportKey>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy", &self.policy)
            .field("admin_token", &self.admin_token)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Runs the collector on `listener` until `shutdown` completes, then stops accepting
/// connections, lets in-flight requests finish (up to 30 s), lets the writer commit and
/// answer everything it was given, and returns.
///
/// Prints `listening on ADDR` on stderr once it is ready to accept, so a script (or a test
/// running the binary) that bound port 0 can learn the port.
pub async fn serve(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None if addr.ip().is_loopback() => None,
        None if config.allow_plain_http => {
            tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--allow-plain-http): put a TLS-terminating proxy in front");
            None
        }
        None => return Err(ServeError::PlainHttp(addr)),
    };

    let stats = Arc::new(Stats::default());
    let (jobs, queue) = mpsc::channel(QUEUE);
    let (stop_writer, writer_stop) = oneshot::channel();
    let writer = ingest::Writer::new(Arc::clone(&config.store), config.policy, Arc::clone(&stats))
        .with_quota(Arc::default(), config.quotas.reports_per_minute);
    let writer = tokio::spawn(writer.run(queue, writer_stop));

    let limit_stats = Arc::new(limits::LimitStats::default());
    let tracker = limits::Tracker::new(config.limits, Arc::clone(&limit_stats));
    let state = Arc::new(AppState {
        store: config.store,
        policy: config.policy,
        admin_token: config.admin_token,
        stats,
        limits: config.limits,
        budget: limits::Budget::new(&config.limits, Arc::clone(&limit_stats)),
        limit_stats,
        writer: jobs,
        key_cache: Arc::default(),
        quotas: config.quotas,
        enroll_rate: Default::default(),
        ui: ui::UiState::new(config.ui, tls.is_some()),
        export_key: config.export_key,
    });
    let app = router(state);

    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        on_shutdown.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });

    let std_listener = listener.into_std()?;
    eprintln!("listening on {addr}");
    tracing::info!(%addr, tls = tls.is_some(), "collector listening");
    // The guard sits on the TCP stream, under TLS: a connection holds its slot (and its
    // idle clock runs) from accept, through the handshake, to close.
    let guard = limits::GuardAcceptor::new(tracker);
    let served = match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
                axum_server::tls_rustls::RustlsConfig::from_config(tls),
            )
            .handshake_timeout(config.limits.idle_timeout)
            .acceptor(guard);
            let mut server = axum_server::from_tcp(std_listener).acceptor(acceptor);
            limits::configure_http(server.http_builder(), &config.limits);
            server
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
        None => {
            let mut server = axum_server::from_tcp(std_listener).acceptor(guard);
            limits::configure_http(server.http_builder(), &config.limits);
            server
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
    };

    // Every connection is closed: the writer commits and answers what it still holds.
    watcher.abort();
    let _ = stop_writer.send(());
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "the ingest writer did not finish cleanly");
    }
    tracing::info!("collector stopped");
    Ok(served?)
}

/// The peer's address, for log lines and per-address quotas; `None` when the router runs
/// without connection info (in-process tests that call it directly).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Peer, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

impl Peer {
    /// The peer's IP (unspecified when unknown, so all such requests share one quota).
    pub fn ip(&self) -> std::net::IpAddr {
        self.0
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
                a.ip()
            })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}

/// Every route. Unknown paths and methods answer JSON too.
pub fn router(state: Arc<AppState>) -> Router {
    let budget = Arc::clone(&state.budget);
    Router::new()
        .route("/v1/reports", post(ingest::post_report))
        .route("/v1/enroll", post(enroll::post_enroll))
        .route("/v1/rotate", post(enroll::post_rotate))
        .route("/v1/fleet", get(read::get_fleet))
        .route("/v1/nodes", get(read::get_nodes))
        .route("/v1/nodes/{name}", get(ui::node::get_node))
        .route("/v1/nodes/{name}/history", get(read::get_history))
        .route("/v1/nodes/{name}/keys", get(evidence::get_node_keys))
        .route("/v1/export", get(evidence::get_export))
        .route("/v1/nodes/{name}/reports/{digest}", get(read::get_report))
        .route("/v1/checks/{cis}/failing", get(read::get_failing))
        .route("/v1/drift", get(read::get_drift))
        .route(
            "/v1/exceptions",
            get(read::get_exceptions).post(read::post_exception),
        )
        .route("/v1/exceptions/events", get(read::get_exception_events))
        .route(
            "/v1/exceptions/{id}/revoke",
            post(read::post_revoke_exception),
        )
        .route("/v1/overview", get(overview::get_overview))
        .route("/v1/matrix", get(ui::matrix::get_matrix))
        .route("/v1/stats", get(get_stats))
        .route("/metrics", get(metrics::get_metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .merge(ui::routes())
        .with_state(state)
        .layer(axum::middleware::from_fn(ui::security_headers))
        .layer(axum::middleware::from_fn_with_state(budget, limits::budget))
}

/// 200 with `{"status":"ok"}` when the database is the file opened, writable and not full;
/// 503 with `{"status":"unavailable"}` and what is wrong otherwise, so a load balancer or
/// monitor stops sending (or pages) before agents pile up unacknowledged reports.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let store = Arc::clone(&state.store);
    let min_free = state.limits.min_free_bytes;
    let health = match tokio::task::spawn_blocking(move || store.health(min_free)).await {
        Ok(h) => h,
        Err(e) => crate::store::StoreHealth {
            problems: vec![format!("the health check failed: {e}")],
            ..Default::default()
        },
    };
    let ok = health.problems.is_empty();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": health,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Counters carry no node data, so monitoring can scrape them without the admin token.
async fn get_stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let mut stats = state.stats.to_json();
    if let Some(map) = stats.as_object_mut() {
        map.insert("connections".into(), state.limit_stats.to_json());
        map.insert(
            "dashboard".into(),
            serde_json::json!({ "sessions": state.ui.sessions.len() }),
        );
    }
    Json(stats)
}

async fn not_found() -> HttpError {
    HttpError::not_found("no such endpoint: see docs/collector.md for the API")
}

async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method: see docs/collector.md for the API",
    )
}

/// Runs a synchronous store call on a blocking thread. A store error becomes the matching
/// HTTP error (500 unless it is a conflict or a missing node).
pub async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, HttpError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, HttpError> + Send + 'static,
{
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || {
        // Not from (or into) a database file that was deleted or replaced: see
        // `Store::check_file`. Checked after the call too, so a write that raced the swap
        // is not acknowledged.
        store.check_file().map_err(|e| HttpError::store(&e))?;
        let out = f(store.as_ref())?;
        store.check_file().map_err(|e| HttpError::store(&e))?;
        Ok(out)
    })
    .await
    .map_err(|e| HttpError::internal(format!("a database call failed: {e}")))?
}

/// The collector's clock, as Unix seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix seconds as RFC 3339 (UTC); out-of-range values (never written by the collector)
/// show as the number.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
