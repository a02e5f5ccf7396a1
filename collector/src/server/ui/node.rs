//! `GET /v1/nodes/{name}`: one node as the dashboard's node page shows it: its status and
//! failures (exceptions applied, as in the fleet view), its key and chain, the breaks of
//! its chain the collector recorded, and its latest full report (the same rows as
//! `nodeproof-agent scan`: value, source and origin of each check), read back from the
//! stored, signed envelope.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nodeproof_proto::{check_meta, Predicate, Severity, Source, Status};
use serde::Serialize;

use crate::server::error::HttpError;
use crate::server::fleet::{self, Excepted, NodeView};
use crate::server::overview::node_status;
use crate::server::read::stored_statement;
use crate::server::{blocking, now_unix, rfc3339, AppState};

#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
    /// RFC 3339.
    pub enrolled_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainBreak {
    /// `replay`, `chain_fork` or `chain_gap`.
    pub kind: String,
    pub first_at: String,
    pub last_at: String,
    pub count: u64,
    pub expected_sequence: u64,
    pub got_sequence: u64,
    pub digest: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainView {
    pub last_sequence: u64,
    pub last_digest: Option<String>,
    pub last_scan_time: Option<String>,
    pub interval_secs: Option<u64>,
    pub last_full_digest: Option<String>,
    pub last_full_sequence: Option<u64>,
    pub posture: Option<String>,
    /// Refused statements that broke the chain, as recorded (one per node, kind, digest).
    pub breaks: Vec<ChainBreak>,
}

/// One row of the latest report, as `scan` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub cis: String,
    pub id: String,
    pub title: String,
    /// The collector's catalogue severity (never the node's).
    pub severity: Option<Severity>,
    pub status: Status,
    pub expected: String,
    /// The effective value.
    pub actual: String,
    pub source: Option<Source>,
    pub origin: Option<String>,
    pub note: String,
    /// The active exception that covers this failure, if any.
    pub excepted: Option<Excepted>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    /// Digest of the stored envelope (the download link's).
    pub digest: String,
    pub scan_time: String,
    pub agent_version: String,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub kubelet_version: Option<String>,
    pub checks: Vec<CheckRow>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    pub generated_at: String,
    /// ok, excepted, failing, stale, pending or revoked.
    pub status: &'static str,
    pub node: NodeView,
    pub key: KeyView,
    pub chain: ChainView,
    /// `None` before the first full report.
    pub report: Option<ReportView>,
}

pub async fn get_node(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        super::auth::read(&state, &headers)?;
        let now = now_unix();
        blocking(&state, move |s| {
            let Some(record) = s.node(&name)? else {
                return Err(HttpError::not_found(format!(
                    "no node named {:?} is enrolled",
                    crate::text::escape(&name)
                )));
            };
            let failing: Vec<_> = s
                .failing_checks()?
                .into_iter()
                .filter(|f| f.node == name)
                .collect();
            let exceptions = s.exceptions()?;
            let view = fleet::evaluate(std::slice::from_ref(&record), &failing, &exceptions, now);
            let Some(node) = view.nodes.into_iter().next() else {
                return Err(HttpError::internal("the fleet view lost the node"));
            };
            let report = match &record.last_full_digest {
                Some(digest) => s
                    .envelope(digest)?
                    .as_deref()
                    .and_then(stored_statement)
                    .and_then(|st| match st.predicate {
                        Predicate::Report(r) => Some(r),
                        Predicate::Unchanged(_) => None,
                    })
                    .map(|r| ReportView {
                        digest: digest.clone(),
                        scan_time: r.scan_time,
                        agent_version: r.agent_version,
                        hostname: r.node.hostname,
                        os: r.node.os,
                        kernel: r.node.kernel,
                        kubelet_version: r.kubelet.version,
                        checks: r
                            .checks
                            .into_iter()
                            .map(|c| CheckRow {
                                severity: check_meta(&c.id).map(|m| m.severity),
                                excepted: node
                                    .failing
                                    .iter()
                                    .find(|f| f.id == c.id)
                                    .and_then(|f| f.excepted.clone()),
                                cis: c.cis,
                                id: c.id,
                                title: c.title,
                                status: c.status,
                                expected: c.expected,
                                actual: c.actual,
                                source: c.source,
                                origin: c.origin,
                                note: c.note,
                            })
                            .collect(),
                        warnings: r.warnings.into_iter().map(|w| w.message).collect(),
                    }),
                None => None,
            };
            let breaks = s
                .chain_events(&name)?
                .into_iter()
                .map(|e| ChainBreak {
                    kind: e.kind,
                    first_at: rfc3339(e.at),
                    last_at: rfc3339(e.last_at),
                    count: e.count,
                    expected_sequence: e.expected_sequence,
                    got_sequence: e.got_sequence,
                    digest: e.digest,
                    detail: e.detail,
                })
                .collect();
            Ok(NodeDetail {
                generated_at: rfc3339(now),
                status: node_status(&node),
                key: KeyView {
                    key_id: record.key_id.clone(),
                    public_key: record.public_key.clone(),
                    enrolled_at: rfc3339(record.enrolled_at),
                },
                chain: ChainView {
                    last_sequence: record.last_sequence,
                    last_digest: record.last_digest.clone(),
                    last_scan_time: record.last_scan_time.clone(),
                    interval_secs: record.interval_secs,
                    last_full_digest: record.last_full_digest.clone(),
                    last_full_sequence: record.last_full_sequence,
                    posture: record.posture.clone(),
                    breaks,
                },
                node,
                report,
            })
        })
        .await
    }
    .await;
    match result {
        Ok(d) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}
