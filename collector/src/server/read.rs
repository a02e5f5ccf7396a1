//! The read side: fleet summary, nodes, history, stored evidence, failing checks, drift.
//! Everything here is behind the admin bearer token, because the fleet's weak spots are
//! exactly what an attacker would like to list. The summary reads the store's latest-state
//! table and counters, never the history, so its cost does not grow with the reports.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use nodeproof_proto::{Envelope, Predicate, Statement, Status, Summary};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::HttpError;
use super::fleet::{self, ExceptionRequest, ExceptionView, FleetCounts};
use super::{blocking, now_unix, rfc3339, AppState};
use crate::accept::parse_time;
use crate::store::{CheckCounts, ExceptionEvent, NodeRecord, NodeStatus};

/// The admin token, kept only as its SHA-256 so it can be compared in constant time
/// whatever the length of what a client sends.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    pub(crate) fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(self.0.ct_eq(&given))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

pub use super::fleet::NodeView;

/// Whether an approved node has been silent for more than 3 of its intervals (or has never
/// reported), the same rule the store's fleet counters use.
pub fn is_stale(node: &NodeRecord, now: i64) -> bool {
    if node.status != NodeStatus::Approved {
        return false;
    }
    match (node.last_seen, node.interval_secs) {
        (Some(seen), Some(interval)) => {
            now.saturating_sub(seen) > i64::try_from(interval.saturating_mul(3)).unwrap_or(i64::MAX)
        }
        _ => true,
    }
}

/// `GET /v1/fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetView {
    pub generated_at: String,
    /// With exceptions applied at `generated_at`.
    pub nodes: FleetCounts,
    /// Verdicts per check over approved nodes' latest state, excepted failures included.
    pub checks: Vec<CheckCounts>,
    /// Exceptions about to expire, and active ones that match nothing.
    pub warnings: Vec<String>,
}

/// One row of `GET /v1/nodes/{name}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub sequence: u64,
    pub digest: String,
    /// `full` or `unchanged`.
    pub kind: String,
    pub scan_time: String,
    /// RFC 3339.
    pub received_at: String,
    pub summary: Option<Summary>,
    /// For unchanged notices: scans in the run, and the full report they match.
    pub count: Option<u64>,
    pub since: Option<String>,
}

/// One row of `GET /v1/drift`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftView {
    pub node: String,
    pub cis: String,
    pub from: Option<Status>,
    pub to: Status,
    /// RFC 3339.
    pub at: String,
    pub digest: String,
}

/// Reads: the admin or viewer bearer token, or a dashboard session (see `ui::auth`).
fn guard(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    super::ui::auth::read(state, headers).map(|_| ())
}

/// Changes: the admin bearer token, or an admin session with its CSRF token.
fn guard_write(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    super::ui::auth::write(state, headers)
}

fn answer<T: Serialize>(result: Result<T, HttpError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code(), message = %e.body.message, "read failed");
            }
            e.into_response()
        }
    }
}

pub async fn get_fleet(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let now = now_unix();
            let (summary, (counts, warnings)) = blocking(&state, move |s| {
                let summary = s.fleet_summary(now)?;
                let counts = fleet::counts_from(s, &summary.nodes, now)?;
                Ok((summary, counts))
            })
            .await?;
            Ok(FleetView {
                generated_at: rfc3339(now),
                nodes: counts,
                checks: summary.checks,
                warnings,
            })
        }
        .await,
    )
}

pub async fn get_nodes(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let now = now_unix();
            let view = blocking(&state, move |s| Ok(fleet::read(s, now)?)).await?;
            Ok(view.nodes)
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<u32>,
}

/// Default and largest `limit` of a history page.
const HISTORY_DEFAULT: u32 = 50;
const HISTORY_MAX: u32 = 1000;

pub async fn get_history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
            let limit = query.limit.unwrap_or(HISTORY_DEFAULT);
            if limit == 0 || limit > HISTORY_MAX {
                return Err(HttpError::bad_request(format!(
                    "limit must be between 1 and {HISTORY_MAX}"
                )));
            }
            blocking(&state, move |s| {
                if s.node(&name)?.is_none() {
                    return Err(HttpError::not_found(format!(
                        "no node named {name:?} is enrolled"
                    )));
                }
                let entries = s.history(&name, limit)?;
                // The history rows carry no verdict counts; the stored envelopes do.
                let mut out = Vec::with_capacity(entries.len());
                for e in entries {
                    let summary = s
                        .envelope(&e.digest)?
                        .and_then(|bytes| stored_statement(&bytes))
                        .map(|st| match &st.predicate {
                            Predicate::Report(r) => r.summary,
                            Predicate::Unchanged(u) => u.summary,
                        });
                    out.push(HistoryView {
                        sequence: e.sequence,
                        digest: e.digest,
                        kind: e.kind,
                        scan_time: e.scan_time,
                        received_at: rfc3339(e.received_at),
                        summary,
                        count: e.count,
                        since: e.since,
                    });
                }
                Ok(out)
            })
            .await
        }
        .await,
    )
}

/// The statement inside a stored envelope. Stored envelopes were verified on the way in,
/// so this only reads them back.
pub(crate) fn stored_statement(envelope: &[u8]) -> Option<Statement> {
    let envelope = Envelope::from_json_bytes(envelope).ok()?;
    let payload = STANDARD.decode(envelope.payload).ok()?;
    serde_json::from_slice(&payload).ok()
}

pub async fn get_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, digest)): Path<(String, String)>,
) -> Response {
    let result = async {
        guard(&state, &headers)?;
        let wanted = digest.clone();
        let bytes = blocking(&state, move |s| Ok(s.envelope(&wanted)?)).await?;
        // Digests are global; the URL names a node, so the evidence must be that node's.
        let owner = bytes
            .as_deref()
            .and_then(stored_statement)
            .and_then(|st| st.link().map(|l| l.node.clone()));
        match (bytes, owner) {
            (Some(bytes), Some(owner)) if owner == name => Ok(bytes),
            _ => Err(HttpError::not_found(format!(
                "node {name:?} has no stored statement with digest {digest}"
            ))),
        }
    }
    .await;
    match result {
        // Byte for byte what the node signed and sent.
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn get_failing(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(cis): Path<String>,
) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let meta = fleet::lookup_check(&cis)
                .ok_or_else(|| HttpError::not_found(fleet::unknown_check(&cis)))?;
            let now = now_unix();
            let view = blocking(&state, move |s| Ok(fleet::read(s, now)?)).await?;
            Ok(view
                .nodes
                .into_iter()
                .filter(|n| n.status == NodeStatus::Approved)
                .filter(|n| n.failing.iter().any(|f| f.id == meta.id))
                .collect::<Vec<_>>())
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
pub struct DriftQuery {
    since: Option<String>,
    /// At most this many events, the newest (1 to [`DRIFT_LIMIT_MAX`]); all without it.
    limit: Option<u32>,
}

/// The largest `limit` of `GET /v1/drift`.
pub const DRIFT_LIMIT_MAX: u32 = 100_000;

/// The header of `GET /v1/drift` that says whether `limit` left older changes out
/// (`true` or `false`; always `false` without a limit).
pub const DRIFT_MORE_HEADER: &str = "x-drift-more";

pub async fn get_drift(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<DriftQuery>, QueryRejection>,
) -> Response {
    let result = async {
        guard(&state, &headers)?;
        let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
        let since_text = query.since.ok_or_else(|| {
            HttpError::bad_request(
                "drift needs ?since=<RFC 3339 time>, e.g. ?since=2024-05-01T00:00:00Z",
            )
        })?;
        let since = parse_time(&since_text).map_err(|e| {
            HttpError::bad_request(format!(
                "since={since_text:?} is not an RFC 3339 time ({e}), e.g. 2024-05-01T00:00:00Z"
            ))
        })?;
        if let Some(limit) = query.limit {
            if limit == 0 || limit > DRIFT_LIMIT_MAX {
                return Err(HttpError::bad_request(format!(
                    "limit must be between 1 and {DRIFT_LIMIT_MAX}"
                )));
            }
        }
        // The store reads only the newest `limit` (and one more, to know of more).
        let limit = query.limit;
        let page = blocking(&state, move |s| Ok(s.drift(since, limit)?)).await?;
        let events = page
            .events
            .into_iter()
            .map(|e| DriftView {
                node: e.node,
                cis: e.cis,
                from: e.from,
                to: e.to,
                at: rfc3339(e.at),
                digest: e.digest,
            })
            .collect::<Vec<_>>();
        Ok((page.more, events))
    }
    .await;
    match result {
        Ok((more, events)) => {
            let mut response = Json(events).into_response();
            response.headers_mut().insert(
                DRIFT_MORE_HEADER,
                HeaderValue::from_static(if more { "true" } else { "false" }),
            );
            response
        }
        Err(e) => answer::<()>(Err(e)),
    }
}

// Exceptions: admin-token writes and reads of the collector's own decisions. They never
// touch the stored reports; the fleet view applies them when it is read.

/// `GET /v1/exceptions`: every exception (active, expired, revoked), by id.
pub async fn get_exceptions(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let now = now_unix();
            let view = blocking(&state, move |s| Ok(fleet::read(s, now)?)).await?;
            Ok(view.exceptions)
        }
        .await,
    )
}

/// `POST /v1/exceptions` with an [`ExceptionRequest`]: 201 and the new exception.
pub async fn post_exception(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ExceptionRequest>, JsonRejection>,
) -> Response {
    let result = async {
        guard_write(&state, &headers)?;
        let Json(request) = body.map_err(|e| HttpError::bad_request(e.body_text()))?;
        let now = now_unix();
        let new = fleet::validate_exception(&request, now).map_err(HttpError::bad_request)?;
        let record = blocking(&state, move |s| Ok(s.add_exception(&new, now)?)).await?;
        Ok(ExceptionView::of(&record, now, 0))
    }
    .await;
    match result {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(e) => answer::<()>(Err(e)),
    }
}

/// What `POST /v1/exceptions/{id}/revoke` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub by: String,
    pub reason: String,
}

pub async fn post_revoke_exception(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Response {
    answer(
        async {
            guard_write(&state, &headers)?;
            let id: i64 = id.parse().map_err(|_| {
                HttpError::not_found(format!("{id:?} is not an exception id (a number)"))
            })?;
            let Json(request) = body.map_err(|e| HttpError::bad_request(e.body_text()))?;
            let by = fleet::text_field("by", &request.by, fleet::MAX_BY_CHARS)
                .map_err(HttpError::bad_request)?;
            let reason = fleet::text_field("reason", &request.reason, fleet::MAX_REASON_CHARS)
                .map_err(HttpError::bad_request)?;
            let now = now_unix();
            let record = blocking(&state, move |s| {
                Ok(s.revoke_exception(id, &by, &reason, now)?)
            })
            .await?
            .ok_or_else(|| HttpError::not_found(format!("there is no exception {id}")))?;
            Ok(ExceptionView::of(&record, now, 0))
        }
        .await,
    )
}

/// One entry of `GET /v1/exceptions/events`, the append-only log of adds and revokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionEventView {
    pub exception: i64,
    /// `add` or `revoke`.
    pub action: String,
    /// RFC 3339.
    pub at: String,
    pub by: String,
    pub reason: String,
    pub check: String,
    pub node: Option<String>,
    pub until: String,
}

impl From<ExceptionEvent> for ExceptionEventView {
    fn from(e: ExceptionEvent) -> ExceptionEventView {
        ExceptionEventView {
            exception: e.exception_id,
            action: e.action,
            at: rfc3339(e.at),
            by: e.by,
            reason: e.reason,
            check: e.check_id,
            node: e.node,
            until: rfc3339(e.until),
        }
    }
}

pub async fn get_exception_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    answer(
        async {
            guard(&state, &headers)?;
            let events = blocking(&state, |s| Ok(s.exception_events()?)).await?;
            Ok(events
                .into_iter()
                .map(ExceptionEventView::from)
                .collect::<Vec<_>>())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_in_debug() {
        assert!(!format!("{:?}", AdminToken::new("s3cret")).contains("s3cret"));
    }

    fn node(status: NodeStatus, last_seen: Option<i64>) -> NodeRecord {
        NodeRecord {
            name: "n".into(),
            key_id: "k".into(),
            public_key: String::new(),
            status,
            enrolled_at: 0,
            last_sequence: 0,
            last_digest: None,
            last_scan_time: None,
            last_seen,
            interval_secs: last_seen.map(|_| 300),
            last_full_digest: None,
            last_full_sequence: None,
            posture: None,
            summary: None,
            failing: vec![],
        }
    }

    #[test]
    fn stale_after_three_intervals() {
        let now = 10_000;
        assert!(!is_stale(&node(NodeStatus::Approved, Some(now - 900)), now));
        assert!(is_stale(&node(NodeStatus::Approved, Some(now - 901)), now));
        assert!(is_stale(&node(NodeStatus::Approved, None), now));
        assert!(!is_stale(&node(NodeStatus::Pending, None), now));
    }
}
