//! What the operator commands (`token create`, `nodes`, `fleet`) compute, kept here as
//! plain functions over the store so `main` only parses arguments and prints, and the
//! renderings are tested without a process.

use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nodeproof_proto::sha256_hex;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::fleet::{self, ExceptionState, ExceptionView, FailingView, FleetCounts, NodeView};
use super::read::is_stale;
use super::rfc3339;
use crate::store::{CheckCounts, NodeRecord, Store, StoreResult};
use crate::text::escape;

/// A new bootstrap token: `npt_` and 32 random bytes, base64url without padding. The prefix
/// lets secret scanners and people recognise it.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("npt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a token: its SHA-256 (of the whole text, prefix included), so a
/// stolen database does not hand out enrolments.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Parses durations like `90s`, `5m`, `1h30m`, `7d`, `2w` into seconds. A bare number is
/// seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let err = || {
        format!("{text:?} is not a duration: use a number with a unit, e.g. 30s, 5m, 1h, 7d, 1h30m")
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(err()),
        };
        let n: u64 = number.parse().map_err(|_| err())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    if !number.is_empty() {
        return Err(err());
    }
    Ok(total)
}

/// `nodeproof-collector fleet --format json`: the summary counts, the nodes with their
/// failures (excepted ones marked), the per-check counts, the exceptions and the warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    pub generated_at: String,
    pub summary: FleetCounts,
    pub nodes: Vec<NodeView>,
    /// Per check, over approved nodes' latest state (excepted failures included).
    pub checks: Vec<CheckCounts>,
    /// Every exception, by id.
    pub exceptions: Vec<ExceptionView>,
    pub warnings: Vec<String>,
}

/// Reads the fleet report from the store at Unix time `now` (exceptions and staleness are
/// judged at `now`).
pub fn fleet_report(store: &dyn Store, now: i64) -> StoreResult<FleetReport> {
    let summary = store.fleet_summary(now)?;
    let view = fleet::read(store, now)?;
    Ok(FleetReport {
        generated_at: view.generated_at,
        summary: view.counts,
        nodes: view.nodes,
        checks: summary.checks,
        exceptions: view.exceptions,
        warnings: view.warnings,
    })
}

/// One line about a pending claim, for `nodes approve`: what to compare with the node.
pub fn describe_claim(claim: &crate::store::PendingClaim) -> String {
    format!(
        "pending claim on {}: key {}, from {}, at {}",
        escape(&claim.name),
        escape(&claim.key_id),
        escape(claim.source.as_deref().unwrap_or("(unknown address)")),
        rfc3339(claim.claimed_at)
    )
}

/// Every pending claim, one a line with the full key id (what `nodes approve --key-id`
/// takes) and where and when it came from; empty when there are none. A name with several
/// claims has been claimed by more than one key: only one of them is the real node.
pub fn render_claims_text(claims: &[crate::store::PendingClaim]) -> String {
    if claims.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = claims
        .iter()
        .map(|c| {
            let n = claims.iter().filter(|o| o.name == c.name).count();
            vec![
                c.name.clone(),
                c.key_id.clone(),
                c.source.clone().unwrap_or_else(|| "-".to_string()),
                rfc3339(c.claimed_at),
                n.to_string(),
            ]
        })
        .collect();
    format!(
        "\npending claims (approve one with `nodes approve NODE --key-id KEY`):\n{}",
        table(
            &["NODE", "KEY ID", "SOURCE", "CLAIMED AT", "CLAIMS ON NODE"],
            &rows
        )
    )
}

/// A plain-text table, columns padded to their widest cell. Cells hold what nodes sent
/// (names, key ids): control characters in them are escaped, so a node cannot rewrite an
/// operator's terminal.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c)).collect())
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn short_key(key_id: &str) -> String {
    key_id.chars().take(16).collect()
}

/// A failure as one cell: `4.2.1(critical)`, `4.2.13(medium, excepted #3)`.
fn failure_cell(f: &FailingView) -> String {
    let severity = f.severity.map_or("unknown", |s| s.as_str());
    let error = if f.status == nodeproof_proto::Status::Error {
        ", error"
    } else {
        ""
    };
    match &f.excepted {
        Some(e) => format!("{}({severity}{error}, excepted #{})", f.cis, e.exception),
        None => format!("{}({severity}{error})", f.cis),
    }
}

/// `fleet --format text`.
pub fn render_fleet_text(report: &FleetReport) -> String {
    let s = &report.summary;
    let mut out = format!(
        "fleet at {}: {} nodes ({} approved, {} pending, {} revoked); {} compliant ({} with \
         exceptions), {} failing, {} stale\n",
        report.generated_at,
        s.total,
        s.approved,
        s.pending,
        s.revoked,
        s.compliant,
        s.excepted,
        s.failing,
        s.stale
    );
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {}", escape(w));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.health.as_str().to_string(),
                n.last_seen.clone().unwrap_or_else(|| "never".to_string()),
                short_key(&n.key_id),
                if n.failing.is_empty() {
                    "-".to_string()
                } else {
                    n.failing
                        .iter()
                        .map(failure_cell)
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &["NODE", "STATUS", "LAST SEEN", "KEY", "FAILING"],
        &rows,
    ));
    if !report.checks.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.cis.clone(),
                    c.id.clone(),
                    nodeproof_proto::check_meta(&c.id)
                        .map_or("unknown", |m| m.severity.as_str())
                        .to_string(),
                    c.pass.to_string(),
                    c.fail.to_string(),
                    c.warn.to_string(),
                    c.error.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CIS", "CHECK", "SEVERITY", "PASS", "FAIL", "WARN", "ERROR"],
            &rows,
        ));
    }
    let active: Vec<&ExceptionView> = report
        .exceptions
        .iter()
        .filter(|e| e.state == ExceptionState::Active)
        .collect();
    if !active.is_empty() {
        out.push('\n');
        out.push_str(&render_exceptions_text(active.into_iter()));
    }
    out
}

/// `exception list`, and the active exceptions under `fleet`.
pub fn render_exceptions_text<'a>(exceptions: impl Iterator<Item = &'a ExceptionView>) -> String {
    let rows: Vec<Vec<String>> = exceptions
        .map(|e| {
            vec![
                format!("#{}", e.id),
                e.cis.clone(),
                e.node.clone().unwrap_or_else(|| "(all)".to_string()),
                match e.state {
                    ExceptionState::Active => "active",
                    ExceptionState::Expired => "expired",
                    ExceptionState::Revoked => "revoked",
                }
                .to_string(),
                e.until.clone(),
                e.matches.to_string(),
                e.by.clone(),
                e.reason.replace('\n', " "),
            ]
        })
        .collect();
    table(
        &[
            "EXCEPTION",
            "CIS",
            "NODE",
            "STATE",
            "UNTIL",
            "MATCHES",
            "BY",
            "REASON",
        ],
        &rows,
    )
}

/// `nodes list`.
pub fn render_nodes_text(nodes: &[NodeRecord], now: i64) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.status.as_str().to_string(),
                short_key(&n.key_id),
                rfc3339(n.enrolled_at),
                n.last_seen.map_or_else(|| "never".to_string(), rfc3339),
                n.last_sequence.to_string(),
                if is_stale(n, now) { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "STATUS",
            "KEY",
            "ENROLLED",
            "LAST SEEN",
            "SEQUENCE",
            "STALE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_node_name_are_escaped_in_fleet_output() {
        use crate::store::NodeStatus;
        let node = NodeRecord {
            name: "evil\x1b[2J\x1b[Hnode-1 approved\n".into(),
            key_id: "k\x07".into(),
            public_key: String::new(),
            status: NodeStatus::Pending,
            enrolled_at: 0,
            last_sequence: 0,
            last_digest: None,
            last_scan_time: None,
            last_seen: None,
            interval_secs: None,
            last_full_digest: None,
            last_full_sequence: None,
            posture: None,
            summary: None,
            failing: vec![],
        };
        let view = fleet::evaluate(&[node], &[], &[], 1_800_000_000);
        let report = FleetReport {
            generated_at: view.generated_at,
            summary: view.counts,
            nodes: view.nodes,
            checks: vec![],
            exceptions: vec![],
            warnings: vec!["about evil\x1b[2J\nwarning: forged".into()],
        };
        let text = render_fleet_text(&report);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("warning:")).count(),
            1,
            "no injected warning line: {text}"
        );
        assert!(text.contains("evil\\u{1b}[2J"), "{text}");
    }

    #[test]
    fn tokens_are_prefixed_random_base64url() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("npt_"));
        let body = &a[4..];
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        for bad in ["", "m", "5x", "5m3", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999999999999w").is_err());
    }

    #[test]
    fn fleet_text_lists_nodes_status_severity_and_exceptions() {
        use crate::store::{ExceptionRecord, FailingCheck, NodeStatus};
        let now = 1_800_000_000;
        let node = |name: &str, status| NodeRecord {
            name: name.into(),
            key_id: "ab".repeat(32),
            public_key: String::new(),
            status,
            enrolled_at: 0,
            last_sequence: 1,
            last_digest: None,
            last_scan_time: None,
            last_seen: Some(now),
            interval_secs: Some(300),
            last_full_digest: None,
            last_full_sequence: None,
            posture: None,
            summary: None,
            failing: vec![],
        };
        let fail = |node: &str, id: &str, cis: &str| FailingCheck {
            node: node.into(),
            id: id.into(),
            cis: cis.into(),
            status: nodeproof_proto::Status::Fail,
            since_at: now,
        };
        let nodes = [
            node("node-1", NodeStatus::Approved),
            node("node-2", NodeStatus::Approved),
            node("node-3", NodeStatus::Pending),
        ];
        let failing = [
            fail("node-1", "kubelet-anonymous-auth", "4.2.1"),
            fail("node-2", "kubelet-pod-pids-limit", "4.2.13"),
        ];
        let exceptions = [ExceptionRecord {
            id: 7,
            check_id: "kubelet-pod-pids-limit".into(),
            cis: "4.2.13".into(),
            node: None,
            until: now + 3 * 86_400,
            reason: "vendor fix due".into(),
            created_by: "alice".into(),
            created_at: now - 10,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }];
        let view = fleet::evaluate(&nodes, &failing, &exceptions, now);
        let report = FleetReport {
            generated_at: view.generated_at,
            summary: view.counts,
            nodes: view.nodes,
            checks: vec![CheckCounts {
                id: "kubelet-anonymous-auth".into(),
                cis: "4.2.1".into(),
                pass: 0,
                fail: 1,
                warn: 0,
                error: 0,
            }],
            exceptions: view.exceptions,
            warnings: view.warnings,
        };
        let text = render_fleet_text(&report);
        assert!(text.contains("3 nodes (2 approved, 1 pending"), "{text}");
        assert!(
            text.contains("1 compliant (1 with exceptions), 1 failing"),
            "{text}"
        );
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or("");
        assert!(line("node-1").contains("failing"), "{text}");
        assert!(line("node-1").contains("4.2.1(critical)"), "{text}");
        assert!(line("node-2").contains(" ok "), "{text}");
        assert!(
            line("node-2").contains("4.2.13(medium, excepted #7)"),
            "{text}"
        );
        assert!(line("node-3").contains("pending"), "{text}");
        assert!(text.contains("warning: exception 7"), "{text}");
        assert!(text.contains("critical"), "{text}");
        assert!(line("#7").contains("vendor fix due"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nodes"][0]["failing"][0]["cis"], "4.2.1");
        assert_eq!(json["nodes"][0]["failing"][0]["severity"], "critical");
        assert_eq!(json["nodes"][1]["health"], "ok");
        assert_eq!(json["nodes"][1]["failing"][0]["excepted"]["by"], "alice");
        assert_eq!(json["summary"]["total"], 3);
    }
}
