//! OSCAL assessment results (OSCAL 1.2.1, as compliance-trestle 5.2 models them) from the
//! reports of a range: one result per node; per control (CIS number) one finding, whose
//! target is satisfied only when the check passed in every full report of the range, with
//! the latest effective value and its source; observations that cite the signed reports
//! (bundle path and digest) behind each finding; and the exceptions in force as risks
//! (reason, owner, expiry), linked from the findings they cover.
//!
//! OSCAL control and target ids are tokens (they must start with a letter), so CIS 4.2.1 is
//! `cis-4.2.1`. UUIDs are version-4 shaped and derived from the export key id, the export
//! time and what they name, so the same export gives the same document.

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::server::rfc3339;
use crate::store::ExceptionRecord;

/// The OSCAL version the document declares.
pub const OSCAL_VERSION: &str = "1.2.1";
/// The namespace of nodeproof's own props.
pub const NS: &str = "https://nodeproof.dev/ns/oscal";

/// A statement that backs a finding: its bundle path, digest and scan time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Evidence {
    path: String,
    digest: String,
    time: String,
}

#[derive(Debug, Clone)]
struct CheckAcc {
    id: String,
    cis: String,
    title: String,
    passed: u64,
    not_passed: u64,
    status: nodeproof_proto::Status,
    expected: String,
    value: String,
    source: String,
    latest: Evidence,
    first_not_passing: Option<(Evidence, nodeproof_proto::Status, String)>,
}

/// What one node's statements in the range say, check by check (memory: one entry per
/// check, not per report).
#[derive(Debug, Clone)]
pub struct NodeAssessment {
    node: String,
    first: Option<String>,
    last: Option<String>,
    full_reports: u64,
    notices: u64,
    checks: Vec<CheckAcc>,
    index: HashMap<String, usize>,
}

impl NodeAssessment {
    pub fn new(node: &str) -> NodeAssessment {
        NodeAssessment {
            node: node.to_string(),
            first: None,
            last: None,
            full_reports: 0,
            notices: 0,
            checks: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn seen(&mut self, time: &str) {
        if self.first.is_none() {
            self.first = Some(time.to_string());
        }
        self.last = Some(time.to_string());
    }

    /// A full report of the range, in chain order.
    pub fn full_report(&mut self, report: &nodeproof_proto::Report, digest: &str, path: &str) {
        self.seen(&report.scan_time);
        self.full_reports += 1;
        let evidence = Evidence {
            path: path.to_string(),
            digest: digest.to_string(),
            time: report.scan_time.clone(),
        };
        for c in &report.checks {
            let i = match self.index.get(&c.cis) {
                Some(i) => *i,
                None => {
                    self.index.insert(c.cis.clone(), self.checks.len());
                    self.checks.push(CheckAcc {
                        id: c.id.clone(),
                        cis: c.cis.clone(),
                        title: c.title.clone(),
                        passed: 0,
                        not_passed: 0,
                        status: c.status,
                        expected: String::new(),
                        value: String::new(),
                        source: String::new(),
                        latest: evidence.clone(),
                        first_not_passing: None,
                    });
                    self.checks.len() - 1
                }
            };
            let acc = &mut self.checks[i];
            if c.status == nodeproof_proto::Status::Pass {
                acc.passed += 1;
            } else {
                acc.not_passed += 1;
                if acc.first_not_passing.is_none() {
                    acc.first_not_passing = Some((evidence.clone(), c.status, c.actual.clone()));
                }
            }
            acc.id = c.id.clone();
            acc.title = c.title.clone();
            acc.status = c.status;
            acc.expected = c.expected.clone();
            acc.value = c.actual.clone();
            acc.source = c.source.map(|s| s.as_str().to_string()).unwrap_or_default();
            acc.latest = evidence.clone();
        }
    }

    /// An unchanged notice: the latest posture held again at `scan_time`.
    pub fn unchanged(&mut self, scan_time: &str, count: u64, digest: &str, path: &str) {
        self.seen(scan_time);
        self.notices += 1;
        let evidence = Evidence {
            path: path.to_string(),
            digest: digest.to_string(),
            time: scan_time.to_string(),
        };
        for acc in &mut self.checks {
            if acc.status == nodeproof_proto::Status::Pass {
                acc.passed += count;
            } else {
                acc.not_passed += count;
            }
            acc.latest = evidence.clone();
        }
    }
}

/// A UUID (version 4 layout) derived from `seed`.
fn uuid(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// OSCAL strings must not be empty nor start or end with white space.
fn text(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = t.trim();
    if t.is_empty() {
        "(empty)".to_string()
    } else {
        t.to_string()
    }
}

/// An RFC 3339 time from a node, normalised (OSCAL needs an offset); `fallback` when it
/// does not parse.
fn datetime(s: &str, fallback: i64) -> String {
    crate::accept::parse_time(s).map_or_else(|_| rfc3339(fallback), rfc3339)
}

fn prop(name: &str, value: &str) -> Value {
    json!({ "name": name, "ns": NS, "value": text(value) })
}

/// The whole document.
pub fn assessment_results(
    nodes: &[&NodeAssessment],
    exceptions: &[ExceptionRecord],
    in_force_at: i64,
    now: i64,
    export_keyid: &str,
) -> Value {
    let results: Vec<Value> = nodes
        .iter()
        .map(|n| result(n, exceptions, in_force_at, now, export_keyid))
        .collect();
    document(results, now, export_keyid)
}

/// The assessment-results document around `results` (from [`result`]); a writer that
/// streams the results passes none and splices them into the empty `"results": []`.
pub fn document(results: Vec<Value>, now: i64, export_keyid: &str) -> Value {
    let seed = format!("{export_keyid} {now}");
    json!({
        "assessment-results": {
            "uuid": uuid(&format!("{seed} document")),
            "metadata": {
                "title": "nodeproof kubelet CIS assessment results",
                "last-modified": rfc3339(now),
                "version": env!("CARGO_PKG_VERSION"),
                "oscal-version": OSCAL_VERSION,
                "props": [prop("export-keyid", export_keyid)],
                "remarks": "Generated by nodeproof-collector export from node-signed reports; \
                    verify the bundle (nodeproof-collector verify, or docs/verifying-evidence.md) \
                    before relying on these results.",
            },
            "import-ap": {
                "href": "#nodeproof-kubelet-cis-assessment-plan",
                "remarks": "The plan is implicit: every node's kubelet is scanned against the \
                    CIS Kubernetes Benchmark's kubelet controls (section 4.2) on its interval.",
            },
            "results": results,
        }
    })
}

/// One node's result of the document [`document`] makes for an export at `now`.
pub fn result(
    n: &NodeAssessment,
    exceptions: &[ExceptionRecord],
    in_force_at: i64,
    now: i64,
    export_keyid: &str,
) -> Value {
    node_result(
        n,
        exceptions,
        in_force_at,
        now,
        &format!("{export_keyid} {now}"),
    )
}

fn node_result(
    n: &NodeAssessment,
    exceptions: &[ExceptionRecord],
    in_force_at: i64,
    now: i64,
    seed: &str,
) -> Value {
    let seed = format!("{seed} node {}", n.node);
    let in_force: Vec<&ExceptionRecord> = exceptions
        .iter()
        .filter(|e| e.active(in_force_at) && e.node.as_deref().is_none_or(|x| x == n.node))
        .collect();
    let risks: Vec<Value> = in_force
        .iter()
        .map(|e| {
            json!({
                "uuid": uuid(&format!("{seed} risk {}", e.id)),
                "title": text(&format!("Exception #{} for {} ({})", e.id, e.cis, e.check_id)),
                "description": text(&format!(
                    "Failures of {} on {} are accepted until {}.",
                    e.check_id,
                    e.node.as_deref().unwrap_or("every node"),
                    rfc3339(e.until)
                )),
                "statement": text(&e.reason),
                "status": "deviation-approved",
                "deadline": rfc3339(e.until),
                "props": [
                    prop("exception-id", &e.id.to_string()),
                    prop("owner", &e.created_by),
                    prop("approved-at", &rfc3339(e.created_at)),
                    prop("check", &e.check_id),
                ],
            })
        })
        .collect();
    let mut observations = Vec::new();
    let mut findings = Vec::new();
    let mut controls = Vec::new();
    for c in &n.checks {
        let control = format!("cis-{}", c.cis);
        controls.push(json!({ "control-id": control }));
        let mut evidence = vec![json!({
            "href": c.latest.path,
            "description": text(&format!(
                "Latest signed statement, scanned {}: sha256 {}", c.latest.time, c.latest.digest
            )),
            "props": [prop("sha256", &c.latest.digest)],
        })];
        if let Some((first, status, value)) = &c.first_not_passing {
            if first.digest != c.latest.digest {
                evidence.push(json!({
                    "href": first.path,
                    "description": text(&format!(
                        "First signed report in the range where it did not pass ({status}, value {value:?}), scanned {}: sha256 {}",
                        first.time, first.digest
                    )),
                    "props": [prop("sha256", &first.digest)],
                }));
            }
        }
        let observation = uuid(&format!("{seed} observation {}", c.cis));
        observations.push(json!({
            "uuid": observation,
            "title": text(&format!("{} {} on {}", c.cis, c.id, n.node)),
            "description": text(&format!(
                "{}: {} scans passed, {} did not in the range; latest status {}, effective value {:?} from {}.",
                c.title,
                c.passed,
                c.not_passed,
                c.status,
                c.value,
                if c.source.is_empty() { "no source" } else { &c.source }
            )),
            "methods": ["TEST"],
            "types": ["finding"],
            "collected": datetime(&c.latest.time, now),
            "props": [prop("check-id", &c.id), prop("cis", &c.cis)],
            "relevant-evidence": evidence,
        }));
        let satisfied = c.not_passed == 0 && c.passed > 0;
        let related_risks: Vec<Value> = in_force
            .iter()
            .filter(|e| e.covers(&n.node, &c.id))
            .map(|e| json!({ "risk-uuid": uuid(&format!("{seed} risk {}", e.id)) }))
            .collect();
        let mut target_props = vec![
            prop("effective-value", &c.value),
            prop("expected", &c.expected),
            prop("latest-status", c.status.as_str()),
        ];
        if !c.source.is_empty() {
            target_props.push(prop("source", &c.source));
        }
        let mut finding = json!({
            "uuid": uuid(&format!("{seed} finding {}", c.cis)),
            "title": text(&format!("CIS {} {}", c.cis, c.title)),
            "description": text(&format!(
                "Effective value {:?} (source: {}), expected {}.",
                c.value,
                if c.source.is_empty() { "none" } else { &c.source },
                c.expected
            )),
            "target": {
                "type": "objective-id",
                "target-id": format!("{control}_obj"),
                "status": { "state": if satisfied { "satisfied" } else { "not-satisfied" } },
                "props": target_props,
            },
            "related-observations": [{ "observation-uuid": observation }],
        });
        if !related_risks.is_empty() {
            finding["related-risks"] = Value::Array(related_risks);
        }
        findings.push(finding);
    }
    let start = n
        .first
        .as_deref()
        .map_or_else(|| rfc3339(now), |t| datetime(t, now));
    let end = n
        .last
        .as_deref()
        .map_or_else(|| rfc3339(now), |t| datetime(t, now));
    let mut result = json!({
        "uuid": uuid(&format!("{seed} result")),
        "title": text(&format!("Node {}", n.node)),
        "description": text(&format!(
            "{} full reports and {} unchanged notices signed by node {} in the range.",
            n.full_reports, n.notices, n.node
        )),
        "start": start,
        "end": end,
        "props": [prop("node", &n.node)],
        "reviewed-controls": {
            "control-selections": [
                if controls.is_empty() {
                    json!({ "include-all": {} })
                } else {
                    json!({ "include-controls": controls })
                }
            ],
        },
    });
    if !observations.is_empty() {
        result["observations"] = Value::Array(observations);
    }
    if !findings.is_empty() {
        result["findings"] = Value::Array(findings);
    }
    if !risks.is_empty() {
        result["risks"] = Value::Array(risks);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_shaped_and_stable() {
        let u = uuid("x");
        assert_eq!(u, uuid("x"));
        assert_ne!(u, uuid("y"));
        let b = u.as_bytes();
        assert_eq!(u.len(), 36);
        assert_eq!(b[14], b'4');
        assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{u}");
    }

    #[test]
    fn oscal_strings_are_never_empty_or_padded() {
        assert_eq!(text("  "), "(empty)");
        assert_eq!(text(" a\nb "), "a b");
    }
}
