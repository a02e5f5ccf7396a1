//! What the operator commands (`token create`, `nodes`, `fleet`) compute, kept here as
//! plain functions over the store so `main` only parses arguments and prints, and the
//! renderings are tested without a process.

use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nodeproof_proto::sha256_hex;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::read::is_stale;
use super::rfc3339;
use crate::store::{CheckCounts, NodeCounts, NodeRecord, NodeStatus, Store, StoreResult};
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

/// One node in `fleet`'s output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNode {
    pub name: String,
    pub key_id: String,
    pub status: NodeStatus,
    /// RFC 3339, `None` before the first report.
    pub last_seen: Option<String>,
    pub failing: Vec<String>,
}

/// `nodeproof-collector fleet --format json`: the summary counts, the node list and the
/// per-check counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    pub generated_at: String,
    pub summary: NodeCounts,
    pub nodes: Vec<FleetNode>,
    /// Per check, over approved nodes' latest state.
    pub checks: Vec<CheckCounts>,
}

/// Reads the fleet report from the store at Unix time `now`.
pub fn fleet_report(store: &dyn Store, now: i64) -> StoreResult<FleetReport> {
    let summary = store.fleet_summary(now)?;
    let nodes = store.list_nodes()?;
    Ok(FleetReport {
        generated_at: rfc3339(now),
        summary: summary.nodes,
        nodes: nodes
            .into_iter()
            .map(|n| FleetNode {
                last_seen: n.last_seen.map(rfc3339),
                name: n.name,
                key_id: n.key_id,
                status: n.status,
                failing: n.failing,
            })
            .collect(),
        checks: summary.checks,
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

/// `fleet --format text`.
pub fn render_fleet_text(report: &FleetReport) -> String {
    let s = &report.summary;
    let mut out = format!(
        "fleet at {}: {} nodes ({} approved, {} pending, {} revoked); {} compliant, {} failing, {} stale\n\n",
        report.generated_at, s.total, s.approved, s.pending, s.revoked, s.compliant, s.failing, s.stale
    );
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.status.as_str().to_string(),
                n.last_seen.clone().unwrap_or_else(|| "never".to_string()),
                short_key(&n.key_id),
                if n.failing.is_empty() {
                    "-".to_string()
                } else {
                    n.failing.join(",")
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
                    c.pass.to_string(),
                    c.fail.to_string(),
                    c.warn.to_string(),
                    c.error.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CIS", "CHECK", "PASS", "FAIL", "WARN", "ERROR"],
            &rows,
        ));
    }
    out
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
        let report = FleetReport {
            generated_at: rfc3339(0),
            summary: Default::default(),
            nodes: vec![FleetNode {
                name: "evil\x1b[2J\x1b[Hnode-1 approved\n".into(),
                key_id: "k\x07".into(),
                status: NodeStatus::Pending,
                last_seen: None,
                failing: vec![],
            }],
            checks: vec![],
        };
        let text = render_fleet_text(&report);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 4, "no injected line: {text}");
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
    fn fleet_text_lists_nodes_and_checks() {
        let report = FleetReport {
            generated_at: "2024-05-01T12:00:00Z".into(),
            summary: NodeCounts {
                total: 2,
                approved: 1,
                pending: 1,
                ..NodeCounts::default()
            },
            nodes: vec![FleetNode {
                name: "node-1".into(),
                key_id: "ab".repeat(32),
                status: NodeStatus::Approved,
                last_seen: None,
                failing: vec!["4.2.1".into(), "4.2.4".into()],
            }],
            checks: vec![CheckCounts {
                id: "kubelet-anonymous-auth".into(),
                cis: "4.2.1".into(),
                pass: 0,
                fail: 1,
                warn: 0,
                error: 0,
            }],
        };
        let text = render_fleet_text(&report);
        assert!(text.contains("2 nodes (1 approved, 1 pending"), "{text}");
        assert!(text.contains("node-1"), "{text}");
        assert!(text.contains("4.2.1,4.2.4"), "{text}");
        assert!(text.contains("kubelet-anonymous-auth"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nodes"][0]["failing"][0], "4.2.1");
        assert_eq!(json["checks"][0]["fail"], 1);
        assert_eq!(json["summary"]["total"], 2);
    }
}
