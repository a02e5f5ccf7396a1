//! The fleet dashboard the collector serves itself: a login page, a session cookie, and a
//! small single-page app (hand-written HTML, CSS and one vanilla JavaScript module under
//! `collector/ui/`, embedded in the binary: no CDN, no build step) that reads the same
//! `/v1` JSON endpoints as scripts do. The app is read-only; logging out is its only
//! change, and it carries the session's CSRF token.
//!
//! Every response (the API's too) carries a strict Content-Security-Policy: scripts, styles
//! and images from the collector only, no inline script, no framing. The app writes node
//! data into the page with `textContent` only, so a check value such as
//! `<img src=x onerror=alert(1)>` is shown as text.

pub mod assets;
pub mod auth;
pub mod matrix;
pub mod node;
pub mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::quota::RateLimiter;
use super::{AdminToken, AppState, Peer};
use session::{Clock, Sessions};

/// The dashboard's, the viewer's and the metrics' settings (`serve` flags).
#[derive(Clone)]
pub struct UiConfig {
    /// A second token that can read everything and change nothing (`--viewer-token-file`).
    pub viewer_token: Option<AdminToken>,
    /// When set, `/metrics` needs it as a bearer token (`--metrics-token-file`).
    pub metrics_token: Option<AdminToken>,
    /// Per-node metric series are written while the fleet has at most this many approved
    /// nodes; 0 turns them off (`--metrics-per-node-limit`).
    pub metrics_per_node_limit: usize,
    /// `/metrics` is computed at most once per this long; scrapes in between get the same
    /// text, so a peer polling it cannot make the collector read the fleet in a loop.
    pub metrics_cache: Duration,
    /// How long a dashboard session lasts (`--session-ttl`).
    pub session_ttl_secs: i64,
    /// Dashboard sessions held at most; the oldest goes first.
    pub max_sessions: usize,
    /// Login attempts per source address per minute.
    pub logins_per_minute: u32,
    /// What sessions' expiry and the login quota go by: the system clock, or in tests a
    /// manual one ([`Clock::manual`]).
    pub clock: Clock,
}

impl Default for UiConfig {
    /// No viewer or metrics token, per-node series up to 5,000 approved nodes, metrics
    /// recomputed at most every 5 s, 8-hour sessions, 1,000 sessions, 10 logins a minute
    /// per address.
    fn default() -> UiConfig {
        UiConfig {
            viewer_token: None,
            metrics_token: None,
            metrics_per_node_limit: 5000,
            metrics_cache: Duration::from_secs(5),
            session_ttl_secs: 8 * 3600,
            max_sessions: 1000,
            logins_per_minute: 10,
            clock: Clock::system(),
        }
    }
}

impl std::fmt::Debug for UiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiConfig")
            .field(
                "viewer_token",
                &self.viewer_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics_per_node_limit", &self.metrics_per_node_limit)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("max_sessions", &self.max_sessions)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// What the dashboard keeps while the collector runs.
#[derive(Debug)]
pub struct UiState {
    pub viewer_token: Option<AdminToken>,
    pub metrics_token: Option<AdminToken>,
    pub metrics_per_node_limit: usize,
    pub metrics_cache: Duration,
    pub sessions: Sessions,
    /// The time sessions and logins are judged by.
    pub clock: Clock,
    /// Login attempts by source IP.
    logins: RateLimiter<std::net::IpAddr>,
    logins_per_minute: u32,
    /// Cookies get `Secure` when the collector serves TLS itself.
    secure_cookies: bool,
    /// The last `/metrics` text and when it was made.
    pub metrics_last: Mutex<Option<(tokio::time::Instant, String)>>,
}

impl UiState {
    pub fn new(config: UiConfig, tls: bool) -> UiState {
        UiState {
            sessions: Sessions::new(config.max_sessions, config.session_ttl_secs),
            viewer_token: config.viewer_token,
            metrics_token: config.metrics_token,
            metrics_per_node_limit: config.metrics_per_node_limit,
            metrics_cache: config.metrics_cache,
            clock: config.clock,
            logins: RateLimiter::default(),
            logins_per_minute: config.logins_per_minute,
            secure_cookies: tls,
            metrics_last: Mutex::new(None),
        }
    }
}

/// The policy every response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                       base-uri 'none'; form-action 'self'";

/// The dashboard's routes (the read endpoints it uses are in the main router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(root))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(get_session))
        .route("/ui/assets/{file}", get(asset))
}

/// Security headers on every response; `Cache-Control: no-store` unless the handler chose.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn root() -> Response {
    see_other("/ui/")
}

async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if auth::session(&state, &headers).is_none() {
        return see_other("/ui/login");
    }
    html(StatusCode::OK, assets::INDEX_HTML.to_string())
}

/// The login page, with one of a few fixed messages (never text from the request).
fn login_html(message: Option<&'static str>) -> String {
    let note = match message {
        Some(m) => format!("<p class=\"error\" id=\"login-error\" role=\"alert\">{m}</p>"),
        None => String::new(),
    };
    assets::LOGIN_HTML.replace("<!--message-->", &note)
}

async fn login_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if auth::session(&state, &headers).is_some() {
        return see_other("/ui/");
    }
    html(StatusCode::OK, login_html(None))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// Whether a state-changing request comes from this site. Browsers send `Sec-Fetch-Site`
/// on every request (it names the initiator's relation to this site, and, unlike `Origin`,
/// is not blanked to `null` by our `Referrer-Policy: no-referrer`), so it decides when
/// present; otherwise an `Origin` must name this host. A request with neither is not a
/// browser's, and the token it carries is its own authority.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    !host.is_empty() && origin_host == Some(host)
}

/// Whether the browser reached us over HTTPS: the collector serves TLS itself, or a
/// TLS-terminating proxy says so in `X-Forwarded-Proto: https` (as behind
/// `--allow-plain-http`). A forged header can only add `Secure` to the cookie, which makes
/// it stricter, never take it away.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.ui.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_https(state, headers) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        auth::COOKIE
    ))
    // The id is hex and the rest constant: always a valid header value.
    .unwrap_or_else(|_| HeaderValue::from_static("nodeproof_session=; Max-Age=0"))
}

/// `POST /ui/login` with the form field `token`: a session for the admin or viewer token,
/// else the login page again with 401 (429 past the per-address quota).
async fn login(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return html(
            StatusCode::FORBIDDEN,
            login_html(Some(
                "This login did not come from the collector's own page.",
            )),
        );
    }
    let now = state.ui.clock.now();
    if !state
        .ui
        .logins
        .allow(&peer.ip(), now, state.ui.logins_per_minute)
    {
        tracing::warn!(peer = %peer, "dashboard login refused: too many attempts");
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            login_html(Some(
                "Too many login attempts from this address: wait a minute.",
            )),
        );
    }
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            login_html(Some("Enter the collector's admin or viewer token.")),
        );
    };
    let Some(role) = auth::token_role(&state, form.token.trim()) else {
        tracing::warn!(peer = %peer, "dashboard login refused: wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            login_html(Some(
                "That is not the collector's admin or viewer token (the contents of \
                 --admin-token-file or --viewer-token-file).",
            )),
        );
    };
    let (id, _) = state.ui.sessions.create(role, now);
    tracing::info!(peer = %peer, role = ?role, "dashboard session opened");
    let mut response = see_other("/ui/");
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &headers, &id, state.ui.sessions.ttl_secs()),
    );
    response
}

/// `POST /ui/logout` with the session's CSRF token in `X-CSRF-Token`: ends the session
/// server-side and clears the cookie.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some((id, session)) = auth::session(&state, &headers) else {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut()
            .insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
        return r;
    };
    let given = headers
        .get(auth::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session.csrf_matches(given) {
        return super::error::HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "logging out needs the session's CSRF token in X-CSRF-Token",
        )
        .into_response();
    }
    state.ui.sessions.remove(&id);
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
    r
}

/// `GET /ui/session`: the session's role, expiry and CSRF token, for the app. Readable
/// only by this site's pages (no CORS), with the cookie.
async fn get_session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match auth::session(&state, &headers) {
        Some((_, s)) => Json(serde_json::json!({
            "role": s.role,
            "csrf": s.csrf,
            "expires_at": super::rfc3339(s.expires_at),
        }))
        .into_response(),
        None => super::error::HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no dashboard session: log in at /ui/login",
        )
        .into_response(),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::find(&file) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => super::error::HttpError::not_found(format!(
            "the dashboard has no file {:?}",
            crate::text::escape(&file)
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_login_from_another_site_is_refused() {
        assert!(same_origin(&headers(&[("host", "c:8443")])));
        assert!(same_origin(&headers(&[
            ("host", "c:8443"),
            ("origin", "https://c:8443")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "c:8443"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "c:8443"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[("host", "c"), ("origin", "null")])));
        // What Chromium sends for our own login form under no-referrer.
        assert!(same_origin(&headers(&[
            ("host", "c:8443"),
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "c:8443"),
            ("origin", "https://c:8443"),
            ("sec-fetch-site", "same-site")
        ])));
    }

    #[test]
    fn the_login_page_takes_only_fixed_messages() {
        let page = login_html(Some("m"));
        assert!(page.contains("<p class=\"error\" id=\"login-error\" role=\"alert\">m</p>"));
        assert!(!login_html(None).contains("login-error"));
    }
}
