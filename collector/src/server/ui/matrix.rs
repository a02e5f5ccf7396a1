//! `GET /v1/matrix`: nodes against checks, one page at a time, filtered and sorted on the
//! server, so the dashboard stays fast at thousands of nodes (a page of 50 nodes is a few
//! kilobytes whatever the fleet's size). Statuses come from the fleet view, with
//! exceptions applied at read time, as everywhere else.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nodeproof_proto::{CheckMeta, Severity, Status, CHECKS};
use serde::{Deserialize, Serialize};

use crate::server::error::HttpError;
use crate::server::fleet::{self, NodeView};
use crate::server::overview::{node_status, STATUSES};
use crate::server::{blocking, now_unix, AppState};
use crate::store::NodeStatus;

/// Default and largest page size.
pub const PER_PAGE_DEFAULT: usize = 50;
pub const PER_PAGE_MAX: usize = 500;
/// Longest node-name filter.
const MAX_FILTER_CHARS: usize = 253;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixQuery {
    page: Option<usize>,
    per_page: Option<usize>,
    /// Part of a node name (case-insensitive).
    node: Option<String>,
    /// One of ok, excepted, failing, stale, pending, revoked.
    status: Option<String>,
    /// A CIS number or check id: that column only, and nodes failing it.
    check: Option<String>,
    /// critical, high, medium or low: those columns only, and nodes failing one of them.
    severity: Option<String>,
    /// name, -name, failing (most first), -failing, status, last_seen (oldest first).
    sort: Option<String>,
}

/// A column.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub cis: &'static str,
    pub id: &'static str,
    pub severity: Severity,
}

/// A row: one node.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// See [`node_status`].
    pub status: &'static str,
    pub last_seen: Option<String>,
    /// Failures not covered by an exception.
    pub failing: usize,
    /// One per column: `fail`, `error`, `excepted` (fails under an active exception), `ok`
    /// (pass or warn), or `none` (no report to judge).
    pub cells: Vec<&'static str>,
}

/// `GET /v1/matrix`.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub generated_at: String,
    /// Rows that match the filters, over all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub pages: usize,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Every check of the catalogue, for the filter's choices.
    pub catalogue: Vec<Column>,
}

fn cell(n: &NodeView, check: &CheckMeta) -> &'static str {
    if n.status != NodeStatus::Approved || n.last_seen.is_none() {
        return "none";
    }
    match n.failing.iter().find(|f| f.id == check.id) {
        Some(f) if f.excepted.is_some() => "excepted",
        Some(f) if f.status == Status::Error => "error",
        Some(_) => "fail",
        None => "ok",
    }
}

/// The matrix page `query` asks for, of the fleet view `view`.
pub fn build(view: &fleet::FleetState, query: &MatrixQuery) -> Result<Matrix, String> {
    let per_page = query.per_page.unwrap_or(PER_PAGE_DEFAULT);
    if per_page == 0 || per_page > PER_PAGE_MAX {
        return Err(format!("per_page must be between 1 and {PER_PAGE_MAX}"));
    }
    let page = query.page.unwrap_or(1).max(1);
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) if STATUSES.contains(&s) => Some(s),
        Some(s) => {
            return Err(format!(
                "status {:?} is not one of {}",
                crate::text::escape(s),
                STATUSES.join(", ")
            ))
        }
        None => None,
    };
    let severity = match query.severity.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            format!(
                "severity {:?} is not one of critical, high, medium, low",
                crate::text::escape(s)
            )
        })?),
        None => None,
    };
    let check = match query.check.as_deref().filter(|s| !s.is_empty()) {
        Some(c) => Some(fleet::lookup_check(c).ok_or_else(|| fleet::unknown_check(c))?),
        None => None,
    };
    let name_filter = match query
        .node
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(n) if n.chars().count() > MAX_FILTER_CHARS => {
            return Err(format!(
                "the node filter is longer than {MAX_FILTER_CHARS} characters"
            ))
        }
        Some(n) => Some(n.to_lowercase()),
        None => None,
    };
    let columns: Vec<&CheckMeta> = CHECKS
        .iter()
        .filter(|c| severity.is_none_or(|s| c.severity == s))
        .filter(|c| check.is_none_or(|k| k.id == c.id))
        .collect();
    let narrowed = severity.is_some() || check.is_some();

    let mut rows: Vec<(&NodeView, Row)> = view
        .nodes
        .iter()
        .filter(|n| status.is_none_or(|s| node_status(n) == s))
        .filter(|n| {
            name_filter
                .as_deref()
                .is_none_or(|f| n.name.to_lowercase().contains(f))
        })
        .map(|n| {
            let cells: Vec<&'static str> = columns.iter().map(|c| cell(n, c)).collect();
            let failing = n.failing.iter().filter(|f| f.excepted.is_none()).count();
            (
                n,
                Row {
                    name: n.name.clone(),
                    status: node_status(n),
                    last_seen: n.last_seen.clone(),
                    failing,
                    cells,
                },
            )
        })
        .filter(|(_, r)| !narrowed || r.cells.iter().any(|c| *c == "fail" || *c == "error"))
        .collect();

    match query.sort.as_deref().unwrap_or("name") {
        // The fleet view is sorted by name already.
        "name" | "" => {}
        "-name" => rows.reverse(),
        "failing" => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.failing)),
        "-failing" => rows.sort_by_key(|(_, r)| r.failing),
        "status" => rows.sort_by_key(|(_, r)| STATUSES.iter().position(|s| *s == r.status)),
        "last_seen" => rows.sort_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen)),
        other => {
            return Err(format!(
                "sort {:?} is not one of name, -name, failing, -failing, status, last_seen",
                crate::text::escape(other)
            ))
        }
    }
    let total = rows.len();
    let pages = total.div_ceil(per_page).max(1);
    let rows = rows
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(_, r)| r)
        .collect();
    Ok(Matrix {
        generated_at: view.generated_at.clone(),
        total,
        page,
        per_page,
        pages,
        columns: columns
            .iter()
            .map(|c| Column {
                cis: c.cis,
                id: c.id,
                severity: c.severity,
            })
            .collect(),
        rows,
        catalogue: CHECKS
            .iter()
            .map(|c| Column {
                cis: c.cis,
                id: c.id,
                severity: c.severity,
            })
            .collect(),
    })
}

pub async fn get_matrix(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<MatrixQuery>, QueryRejection>,
) -> Response {
    let result = async {
        auth_read(&state, &headers)?;
        let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
        let now = now_unix();
        let view = blocking(&state, move |s| Ok(fleet::read(s, now)?)).await?;
        build(&view, &query).map_err(HttpError::bad_request)
    }
    .await;
    match result {
        Ok(m) => Json(m).into_response(),
        Err(e) => e.into_response(),
    }
}

fn auth_read(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    super::auth::read(state, headers).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailingCheck, NodeRecord};

    const NOW: i64 = 1_800_000_000;

    fn node(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            key_id: format!("k-{name}"),
            public_key: String::new(),
            status: NodeStatus::Approved,
            enrolled_at: 0,
            last_sequence: 1,
            last_digest: None,
            last_scan_time: None,
            last_seen: Some(NOW),
            interval_secs: Some(300),
            last_full_digest: None,
            last_full_sequence: None,
            posture: None,
            summary: None,
            failing: vec![],
        }
    }

    fn fails(node: &str, id: &str) -> FailingCheck {
        FailingCheck {
            node: node.into(),
            id: id.into(),
            cis: nodeproof_proto::check_meta(id)
                .map_or("9", |m| m.cis)
                .into(),
            status: Status::Fail,
            since_at: NOW,
        }
    }

    fn view() -> fleet::FleetState {
        let nodes: Vec<NodeRecord> = (0..120).map(|i| node(&format!("n{i:03}"))).collect();
        let failing = vec![
            fails("n007", "kubelet-anonymous-auth"),
            fails("n007", "kubelet-pod-pids-limit"),
            fails("n100", "kubelet-pod-pids-limit"),
        ];
        fleet::evaluate(&nodes, &failing, &[], NOW)
    }

    fn q(f: impl FnOnce(&mut MatrixQuery)) -> MatrixQuery {
        let mut m = MatrixQuery::default();
        f(&mut m);
        m
    }

    #[test]
    fn pages_cover_the_fleet_once() {
        let v = view();
        let m = build(&v, &q(|_| {})).unwrap();
        assert_eq!((m.total, m.pages, m.rows.len()), (120, 3, 50));
        assert_eq!(m.columns.len(), CHECKS.len());
        let last = build(&v, &q(|m| m.page = Some(3))).unwrap();
        assert_eq!(last.rows.len(), 20);
        assert_eq!(last.rows[19].name, "n119");
        assert!(build(&v, &q(|m| m.page = Some(9))).unwrap().rows.is_empty());
        assert!(build(&v, &q(|m| m.per_page = Some(0))).is_err());
        assert!(build(&v, &q(|m| m.per_page = Some(PER_PAGE_MAX + 1))).is_err());
    }

    #[test]
    fn filters_narrow_rows_and_columns() {
        let v = view();
        let m = build(&v, &q(|m| m.status = Some("failing".into()))).unwrap();
        let names: Vec<&str> = m.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["n007", "n100"]);
        let m = build(&v, &q(|m| m.severity = Some("critical".into()))).unwrap();
        assert!(m.columns.iter().all(|c| c.severity == Severity::Critical));
        assert_eq!(m.rows.len(), 1, "only n007 fails a critical check");
        assert!(m.rows[0].cells.contains(&"fail"));
        let m = build(&v, &q(|m| m.check = Some("4.2.13".into()))).unwrap();
        assert_eq!(m.columns.len(), 1);
        assert_eq!(m.total, 2);
        let m = build(&v, &q(|m| m.node = Some("N10".into()))).unwrap();
        assert_eq!(m.total, 10, "n100 to n109, case-insensitive");
        for bad in [
            q(|m| m.status = Some("bad".into())),
            q(|m| m.severity = Some("urgent".into())),
            q(|m| m.check = Some("9.9".into())),
            q(|m| m.sort = Some("x".into())),
        ] {
            assert!(build(&v, &bad).is_err());
        }
    }

    #[test]
    fn sorting_by_failures_puts_the_worst_first() {
        let v = view();
        let m = build(&v, &q(|m| m.sort = Some("failing".into()))).unwrap();
        assert_eq!(m.rows[0].name, "n007");
        assert_eq!(m.rows[0].failing, 2);
        assert_eq!(m.rows[1].name, "n100");
        let m = build(&v, &q(|m| m.sort = Some("-name".into()))).unwrap();
        assert_eq!(m.rows[0].name, "n119");
    }
}
