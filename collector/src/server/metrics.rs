//! `GET /metrics`: the ingest and connection counters, and gauges of the fleet's compliance
//! that alerting rules can watch (see `deploy/prometheus/alerts.yaml` and
//! docs/collector.md). The gauges come from the same fleet view and [`Overview`] as the
//! dashboard, so an alert and the page agree.
//!
//! Cardinality is bounded: statuses, severities and exception states are fixed sets; checks
//! are the collector's catalogue (ids a node invents are not labels); per-node series
//! (`node` label: approved nodes only, never a pending name an unauthenticated peer chose)
//! are written only while the fleet has at most `--metrics-per-node-limit` approved nodes
//! (0 turns them off), and `nodeproof_metrics_per_node` says whether they are.
//!
//! The text is computed at most once per `metrics_cache` (5 s by default), so scraping in a
//! loop cannot make the collector read the whole fleet in a loop.

use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nodeproof_proto::Severity;

use super::error::HttpError;
use super::fleet::FleetState;
use super::overview::{Overview, STATUSES};
use super::stats::write_family;
use super::{blocking, now_unix, AppState};
use crate::store::NodeStatus;

/// The compliance gauges of `view` at `now`; per-node series only while the approved nodes
/// are at most `per_node_limit` (0: never).
pub fn compliance(view: &FleetState, now: i64, per_node_limit: usize) -> String {
    let overview = Overview::of(view, now);
    let mut out = String::new();
    write_family(
        &mut out,
        "nodeproof_nodes",
        "gauge",
        "Nodes by status (each node once; exceptions applied): ok, excepted (every failure under an active exception), failing, stale, pending, revoked.",
        &STATUSES
            .iter()
            .map(|s| (vec![("status", *s)], overview.nodes.get(s) as f64))
            .collect::<Vec<_>>(),
    );
    write_family(
        &mut out,
        "nodeproof_check_failing_nodes",
        "gauge",
        "Approved nodes on which a catalogue check fails or errors with no active exception.",
        &overview
            .checks
            .iter()
            .map(|c| {
                (
                    vec![
                        ("cis", c.cis),
                        ("id", c.id),
                        ("severity", c.severity.as_str()),
                    ],
                    c.failing_nodes as f64,
                )
            })
            .collect::<Vec<_>>(),
    );
    let states = [
        ("active", overview.exceptions.active),
        ("expired", overview.exceptions.expired),
        ("revoked", overview.exceptions.revoked),
    ];
    write_family(
        &mut out,
        "nodeproof_exceptions",
        "gauge",
        "Exceptions by state.",
        &states
            .iter()
            .map(|(s, n)| (vec![("state", *s)], *n as f64))
            .collect::<Vec<_>>(),
    );
    write_family(
        &mut out,
        "nodeproof_exceptions_expiring",
        "gauge",
        "Active exceptions that end within 7 days.",
        &[(vec![], overview.exceptions.expiring as f64)],
    );

    let approved: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Approved)
        .collect();
    let per_node = per_node_limit > 0 && approved.len() <= per_node_limit;
    write_family(
        &mut out,
        "nodeproof_metrics_per_node",
        "gauge",
        "1 while per-node series are written (approved nodes within --metrics-per-node-limit), else 0.",
        &[(vec![], if per_node { 1.0 } else { 0.0 })],
    );
    if per_node {
        let mut failing = Vec::with_capacity(approved.len() * Severity::ALL.len());
        let mut last = Vec::with_capacity(approved.len());
        for n in &approved {
            for sev in Severity::ALL {
                let count = n
                    .failing
                    .iter()
                    .filter(|f| f.excepted.is_none() && f.severity == Some(sev))
                    .count();
                failing.push((
                    vec![("node", n.name.as_str()), ("severity", sev.as_str())],
                    count as f64,
                ));
            }
            if let Some(seen) = n
                .last_seen
                .as_deref()
                .and_then(|t| crate::accept::parse_time(t).ok())
            {
                last.push((vec![("node", n.name.as_str())], seen as f64));
            }
        }
        write_family(
            &mut out,
            "nodeproof_node_failing_checks",
            "gauge",
            "Checks failing or erroring on an approved node with no active exception, by catalogue severity.",
            &failing,
        );
        write_family(
            &mut out,
            "nodeproof_node_last_report_timestamp_seconds",
            "gauge",
            "When the collector last accepted a statement from an approved node (Unix seconds).",
            &last,
        );
    }
    out
}

/// Lets a scrape through: anyone without `--metrics-token-file`, else its bearer token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(token) = &state.ui.metrics_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if token.matches(t) => Ok(()),
        _ => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "/metrics needs `Authorization: Bearer <metrics token>` (the token in the \
             collector's --metrics-token-file)",
        )),
    }
}

pub async fn get_metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let cached = {
        let last = state
            .ui
            .metrics_last
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < state.ui.metrics_cache)
            .map(|(_, text)| text.clone())
    };
    let fleet = match cached {
        Some(text) => text,
        None => {
            let now = now_unix();
            let limit = state.ui.metrics_per_node_limit;
            match blocking(&state, move |s| Ok(super::fleet::read(s, now)?)).await {
                Ok(view) => {
                    let text = compliance(&view, now, limit);
                    *state
                        .ui
                        .metrics_last
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        Some((tokio::time::Instant::now(), text.clone()));
                    text
                }
                Err(e) => {
                    tracing::error!(message = %e.body.message, "metrics: the fleet view failed");
                    return e.into_response();
                }
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.stats.to_prometheus() + &state.limit_stats.to_prometheus() + &fleet,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fleet;
    use crate::store::{FailingCheck, NodeRecord};
    use nodeproof_proto::Status;

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
            last_seen: Some(NOW - 5),
            interval_secs: Some(300),
            last_full_digest: None,
            last_full_sequence: None,
            posture: None,
            summary: None,
            failing: vec![],
        }
    }

    fn view(n: usize) -> FleetState {
        let nodes: Vec<NodeRecord> = (0..n).map(|i| node(&format!("n{i}"))).collect();
        let failing = vec![FailingCheck {
            node: "n0".into(),
            id: "kubelet-read-only-port".into(),
            cis: "4.2.4".into(),
            status: Status::Fail,
            since_at: NOW,
        }];
        fleet::evaluate(&nodes, &failing, &[], NOW)
    }

    #[test]
    fn a_node_that_opens_its_read_only_port_shows_in_the_gauges() {
        let text = compliance(&view(3), NOW, 10);
        assert!(
            text.contains("nodeproof_nodes{status=\"failing\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nodeproof_nodes{status=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "nodeproof_check_failing_nodes{cis=\"4.2.4\",id=\"kubelet-read-only-port\",severity=\"critical\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("nodeproof_node_failing_checks{node=\"n0\",severity=\"critical\"} 1\n")
        );
        assert!(
            text.contains("nodeproof_node_failing_checks{node=\"n1\",severity=\"critical\"} 0\n")
        );
        assert!(text.contains(&format!(
            "nodeproof_node_last_report_timestamp_seconds{{node=\"n2\"}} {}\n",
            NOW - 5
        )));
        assert!(text.contains("nodeproof_metrics_per_node 1\n"));
    }

    #[test]
    fn per_node_series_stop_past_the_limit_and_when_off() {
        for (n, limit) in [(11, 10), (3, 0)] {
            let text = compliance(&view(n), NOW, limit);
            assert!(!text.contains("node=\""), "{text}");
            assert!(text.contains("nodeproof_metrics_per_node 0\n"));
            assert!(text.contains("nodeproof_nodes{status=\"failing\"} 1\n"));
        }
    }
}
