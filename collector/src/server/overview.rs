//! The fleet at a glance, computed from the fleet view ([`super::fleet::read`], which
//! applies exceptions at read time) and shared by the dashboard (`GET /v1/overview`) and
//! the Prometheus gauges (`/metrics`), so both say the same thing: each node in exactly one
//! status, and each check with the number of approved nodes that fail it and are not
//! excepted.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nodeproof_proto::{Severity, CHECKS};
use serde::Serialize;

use super::fleet::{ExceptionState, FleetState, Health, NodeView, EXPIRY_WARNING_SECS};
use super::{blocking, now_unix, AppState};
use crate::accept::parse_time;

/// The statuses a node can have, in the order the dashboard shows them.
pub const STATUSES: [&str; 6] = ["ok", "excepted", "failing", "stale", "pending", "revoked"];

/// One status per node: `ok` (nothing fails), `excepted` (every failure is under an active
/// exception), `failing`, `stale` (silent for more than 3 intervals, whatever it last
/// reported), `pending` or `revoked`.
pub fn node_status(n: &NodeView) -> &'static str {
    match n.health {
        Health::Ok if !n.failing.is_empty() => "excepted",
        Health::Ok => "ok",
        Health::Failing => "failing",
        Health::Stale => "stale",
        Health::Pending => "pending",
        Health::Revoked => "revoked",
    }
}

/// One catalogue check across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    pub cis: &'static str,
    pub id: &'static str,
    pub severity: Severity,
    /// Approved nodes where it fails or errors and no active exception covers it.
    pub failing_nodes: u64,
    /// Approved nodes where it fails under an active exception.
    pub excepted_nodes: u64,
}

/// Failing checks of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeverityLine {
    pub severity: Severity,
    /// (node, check) pairs that fail and are not excepted.
    pub failures: u64,
    /// Approved nodes with at least one such failure.
    pub nodes: u64,
}

/// Nodes by [`node_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusCounts {
    pub ok: u64,
    pub excepted: u64,
    pub failing: u64,
    pub stale: u64,
    pub pending: u64,
    pub revoked: u64,
}

impl StatusCounts {
    /// The count of a status of [`STATUSES`].
    pub fn get(&self, status: &str) -> u64 {
        match status {
            "ok" => self.ok,
            "excepted" => self.excepted,
            "failing" => self.failing,
            "stale" => self.stale,
            "pending" => self.pending,
            "revoked" => self.revoked,
            _ => 0,
        }
    }

    fn add(&mut self, status: &str) {
        let slot = match status {
            "ok" => &mut self.ok,
            "excepted" => &mut self.excepted,
            "failing" => &mut self.failing,
            "stale" => &mut self.stale,
            "pending" => &mut self.pending,
            _ => &mut self.revoked,
        };
        *slot += 1;
    }
}

/// Exceptions by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ExceptionCounts {
    pub active: u64,
    pub expired: u64,
    pub revoked: u64,
    /// Of the active ones, those ending within 7 days.
    pub expiring: u64,
}

/// `GET /v1/overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub generated_at: String,
    /// Nodes by status, each node once.
    pub nodes: StatusCounts,
    pub severities: Vec<SeverityLine>,
    /// Every catalogue check, in CIS order.
    pub checks: Vec<CheckLine>,
    pub exceptions: ExceptionCounts,
    pub warnings: Vec<String>,
}

impl Overview {
    pub fn of(view: &FleetState, now: i64) -> Overview {
        let mut nodes = StatusCounts::default();
        let mut checks: Vec<CheckLine> = CHECKS
            .iter()
            .map(|c| CheckLine {
                cis: c.cis,
                id: c.id,
                severity: c.severity,
                failing_nodes: 0,
                excepted_nodes: 0,
            })
            .collect();
        let mut severities: Vec<SeverityLine> = Severity::ALL
            .iter()
            .map(|s| SeverityLine {
                severity: *s,
                failures: 0,
                nodes: 0,
            })
            .collect();
        for n in &view.nodes {
            nodes.add(node_status(n));
            if n.status != crate::store::NodeStatus::Approved {
                continue;
            }
            let mut seen = [false; 4];
            for f in &n.failing {
                if let Some(line) = checks.iter_mut().find(|c| c.id == f.id) {
                    if f.excepted.is_some() {
                        line.excepted_nodes += 1;
                    } else {
                        line.failing_nodes += 1;
                    }
                }
                if f.excepted.is_some() {
                    continue;
                }
                if let Some(sev) = f.severity {
                    if let Some(i) = Severity::ALL.iter().position(|s| *s == sev) {
                        severities[i].failures += 1;
                        if !seen[i] {
                            seen[i] = true;
                            severities[i].nodes += 1;
                        }
                    }
                }
            }
        }
        let mut exceptions = ExceptionCounts::default();
        for e in &view.exceptions {
            match e.state {
                ExceptionState::Active => {
                    exceptions.active += 1;
                    if parse_time(&e.until).is_ok_and(|u| u - now <= EXPIRY_WARNING_SECS) {
                        exceptions.expiring += 1;
                    }
                }
                ExceptionState::Expired => exceptions.expired += 1,
                ExceptionState::Revoked => exceptions.revoked += 1,
            }
        }
        Overview {
            generated_at: view.generated_at.clone(),
            nodes,
            severities,
            checks,
            exceptions,
            warnings: view.warnings.clone(),
        }
    }
}

pub async fn get_overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let result = async {
        super::ui::auth::read(&state, &headers)?;
        let now = now_unix();
        let view = blocking(&state, move |s| Ok(super::fleet::read(s, now)?)).await?;
        Ok::<_, super::error::HttpError>(Overview::of(&view, now))
    }
    .await;
    match result {
        Ok(o) => Json(o).into_response(),
        Err(e) => e.into_response(),
    }
}
