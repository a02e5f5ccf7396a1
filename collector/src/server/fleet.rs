//! The fleet view, shared by `GET /v1/fleet`, `/v1/nodes`, `/v1/checks/{cis}/failing` and
//! the `fleet` and `nodes list` commands: which nodes fail which checks, how badly, and
//! which failures an operator has accepted for a while (exceptions).
//!
//! Exceptions are applied here, when the view is read, at a time the caller passes in
//! (`now`): the stored reports never change, so an exception that expires makes its failure
//! count again with no one touching anything, and tests move the clock instead of sleeping.
//! Severity and check identity come from the collector's own copy of the catalogue
//! (`nodeproof_proto::CHECKS`), never from the report: a compromised node would label its
//! failures low.

use std::collections::{HashMap, HashSet};

use nodeproof_proto::{check_meta, CheckMeta, Severity, Status, CHECKS};
use serde::{Deserialize, Serialize};

use super::read::is_stale;
use super::rfc3339;
use crate::store::{
    ExceptionRecord, FailingCheck, NewException, NodeCounts, NodeRecord, NodeStatus, Store,
    StoreResult,
};

/// Exceptions that end within this many seconds are warned about.
pub const EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// Longest `reason` and `by` an exception may carry (they are shown in every fleet view).
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_BY_CHARS: usize = 200;

/// The catalogue entry a user means by `text`: a CIS number (`4.2.13`) or a check id
/// (`kubelet-pod-pids-limit`).
pub fn lookup_check(text: &str) -> Option<&'static CheckMeta> {
    let text = text.trim();
    CHECKS.iter().find(|c| c.cis == text || c.id == text)
}

/// Why an exception cannot be added, as a message for the operator.
pub fn unknown_check(text: &str) -> String {
    format!(
        "{text:?} is not a check of this collector's catalogue ({}): give a CIS number such \
         as 4.2.13 or a check id such as kubelet-pod-pids-limit",
        nodeproof_proto::CATALOGUE_VERSION
    )
}

/// Parses an exception's end: RFC 3339 (`2027-03-01T12:00:00Z`) or a plain date
/// (`2027-03-01`), which means the *start* of that day in UTC: an exception "until
/// 2027-03-01" no longer applies on March 1st. The earlier reading is the safer one for a
/// waiver.
pub fn parse_until(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = crate::accept::parse_time(text) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            format!(
                "{text:?} is not a date: give a day (2027-03-01, meaning 00:00 UTC that day) \
                 or an RFC 3339 time (2027-03-01T12:00:00Z)"
            )
        })
}

/// What `exception add` (CLI or HTTP) asks for, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    /// CIS number or check id.
    pub check: String,
    /// One node, or `all: true` for every node; exactly one of the two.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub all: bool,
    /// RFC 3339 or a plain date (start of that day, UTC).
    pub until: String,
    pub reason: String,
    pub by: String,
}

/// Checks a request against the catalogue and the clock; the message says what to fix.
pub fn validate_exception(req: &ExceptionRequest, now: i64) -> Result<NewException, String> {
    let meta = lookup_check(&req.check).ok_or_else(|| unknown_check(&req.check))?;
    let node = match (&req.node, req.all) {
        (Some(_), true) => return Err("give either a node or all, not both".into()),
        (None, false) => {
            return Err(
                "say which nodes the exception is for: a node name, or all nodes (--all)".into(),
            )
        }
        (Some(n), false) if n.trim().is_empty() => return Err("the node name is empty".into()),
        (Some(n), false) => Some(n.trim().to_string()),
        (None, true) => None,
    };
    let until = parse_until(&req.until)?;
    if until <= now {
        return Err(format!(
            "until {} is not in the future (now is {}): an exception must end later",
            rfc3339(until),
            rfc3339(now)
        ));
    }
    let reason = text_field("reason", &req.reason, MAX_REASON_CHARS)?;
    let by = text_field("by", &req.by, MAX_BY_CHARS)?;
    Ok(NewException {
        check_id: meta.id.to_string(),
        cis: meta.cis.to_string(),
        node,
        until,
        reason,
        by,
    })
}

/// A required, bounded, single-purpose text: who decided and why.
pub fn text_field(name: &str, value: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!(
            "{name} is required: an exception records who decided and why"
        ));
    }
    if value.chars().count() > max {
        return Err(format!("{name} is longer than {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{name} contains control characters"));
    }
    Ok(value.to_string())
}

/// A node's state at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Approved, reporting, and nothing fails that is not excepted.
    Ok,
    /// Approved, reporting, and at least one failure is not excepted.
    Failing,
    /// Approved but silent for more than 3 of its intervals (or never reported); its last
    /// known failures still count.
    Stale,
    /// Enrolled, waiting for approval.
    Pending,
    Revoked,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Failing => "failing",
            Health::Stale => "stale",
            Health::Pending => "pending",
            Health::Revoked => "revoked",
        }
    }
}

/// The exception that covers a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excepted {
    pub exception: i64,
    pub reason: String,
    pub by: String,
    /// RFC 3339.
    pub until: String,
}

/// One failing (or erroring) check of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingView {
    pub cis: String,
    pub id: String,
    /// From the collector's catalogue; `None` for an id it does not know.
    pub severity: Option<Severity>,
    /// `fail` or `error`.
    pub status: Status,
    /// Set while an active exception covers this failure: it does not count against the
    /// node until the exception expires or is revoked.
    pub excepted: Option<Excepted>,
}

/// A node as the read endpoints and commands show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub key_id: String,
    /// Enrolment status.
    pub status: NodeStatus,
    /// ok, failing, stale, pending or revoked.
    pub health: Health,
    /// RFC 3339; `None` until the first accepted statement.
    pub last_seen: Option<String>,
    pub last_sequence: u64,
    /// Every failing or erroring check of the latest posture (scored or not), excepted
    /// ones included and marked, in CIS order.
    pub failing: Vec<FailingView>,
    pub stale: bool,
}

impl NodeView {
    /// Whether an unexcepted failure is among `failing`.
    pub fn fails(&self) -> bool {
        self.failing.iter().any(|f| f.excepted.is_none())
    }
}

/// The node counts of the fleet view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FleetCounts {
    pub total: u64,
    pub approved: u64,
    pub pending: u64,
    pub revoked: u64,
    /// Approved, not stale, and nothing fails that is not excepted.
    pub compliant: u64,
    /// Of `compliant`, those with at least one excepted failure.
    pub excepted: u64,
    /// Approved with at least one unexcepted failure, stale or not.
    pub failing: u64,
    /// Approved and silent for more than 3 of its intervals (or never reported). A stale
    /// node with failures is counted here and in `failing`.
    pub stale: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionState {
    Active,
    Expired,
    Revoked,
}

/// An exception as `exception list` and `GET /v1/exceptions` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionView {
    pub id: i64,
    pub check: String,
    pub cis: String,
    pub severity: Option<Severity>,
    /// `None`: every node.
    pub node: Option<String>,
    /// RFC 3339.
    pub until: String,
    pub reason: String,
    pub by: String,
    pub created_at: String,
    pub state: ExceptionState,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    /// Failures it excepts now (0 unless active).
    pub matches: u64,
}

impl ExceptionView {
    pub fn of(e: &ExceptionRecord, now: i64, matches: u64) -> ExceptionView {
        let state = if e.revoked_at.is_some() {
            ExceptionState::Revoked
        } else if now < e.until {
            ExceptionState::Active
        } else {
            ExceptionState::Expired
        };
        ExceptionView {
            id: e.id,
            check: e.check_id.clone(),
            cis: e.cis.clone(),
            severity: check_meta(&e.check_id).map(|m| m.severity),
            node: e.node.clone(),
            until: rfc3339(e.until),
            reason: e.reason.clone(),
            by: e.created_by.clone(),
            created_at: rfc3339(e.created_at),
            state,
            revoked_at: e.revoked_at.map(rfc3339),
            revoked_by: e.revoked_by.clone(),
            revoke_reason: e.revoke_reason.clone(),
            matches,
        }
    }

    fn scope(&self) -> String {
        match &self.node {
            Some(n) => format!("on node {n}"),
            None => "on all nodes".to_string(),
        }
    }
}

/// The whole view at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetState {
    pub generated_at: String,
    pub counts: FleetCounts,
    /// By name.
    pub nodes: Vec<NodeView>,
    /// Every exception, by id.
    pub exceptions: Vec<ExceptionView>,
    /// Exceptions about to expire, and active ones that match nothing.
    pub warnings: Vec<String>,
}

/// Reads what the view needs from the store and evaluates it at `now`.
pub fn read(store: &dyn Store, now: i64) -> StoreResult<FleetState> {
    let nodes = store.list_nodes()?;
    let failing = store.failing_checks()?;
    let exceptions = store.exceptions()?;
    Ok(evaluate(&nodes, &failing, &exceptions, now))
}

/// Each node's failures as the view shows them (catalogue severity, exceptions applied at
/// `now`), and how many failures each exception covers.
fn apply_exceptions<'a>(
    failing: &'a [FailingCheck],
    active: &[&ExceptionRecord],
    now: i64,
) -> (HashMap<&'a str, Vec<FailingView>>, HashMap<i64, u64>) {
    debug_assert!(active.iter().all(|e| e.active(now)));
    let mut matches: HashMap<i64, u64> = HashMap::new();
    let mut by_node: HashMap<&str, Vec<FailingView>> = HashMap::new();
    for f in failing {
        let meta = check_meta(&f.id);
        // The first matching exception by id, so the choice is stable.
        let covering = active.iter().find(|e| e.covers(&f.node, &f.id));
        if let Some(e) = covering {
            *matches.entry(e.id).or_default() += 1;
        }
        by_node.entry(&f.node).or_default().push(FailingView {
            cis: meta.map_or_else(|| f.cis.clone(), |m| m.cis.to_string()),
            id: f.id.clone(),
            severity: meta.map(|m| m.severity),
            status: f.status,
            excepted: covering.map(|e| Excepted {
                exception: e.id,
                reason: e.reason.clone(),
                by: e.created_by.clone(),
                until: rfc3339(e.until),
            }),
        });
    }
    (by_node, matches)
}

/// Every exception as shown at `now`, and the warnings about them: ending within 7 days,
/// or matching no failure.
fn exception_views(
    exceptions: &[ExceptionRecord],
    matches: &HashMap<i64, u64>,
    now: i64,
) -> (Vec<ExceptionView>, Vec<String>) {
    let views: Vec<ExceptionView> = exceptions
        .iter()
        .map(|e| ExceptionView::of(e, now, matches.get(&e.id).copied().unwrap_or(0)))
        .collect();
    let mut warnings = Vec::new();
    for (e, r) in views.iter().zip(exceptions) {
        if e.state != ExceptionState::Active {
            continue;
        }
        let left = r.until - now;
        if left <= EXPIRY_WARNING_SECS {
            warnings.push(format!(
                "exception {} ({} {}) expires at {} (in {}): fix the finding or renew the \
                 exception",
                e.id,
                e.cis,
                e.scope(),
                e.until,
                human_duration(left)
            ));
        }
        if e.matches == 0 {
            warnings.push(format!(
                "exception {} ({} {}) matches no failing check: revoke it if the finding is \
                 fixed",
                e.id,
                e.cis,
                e.scope()
            ));
        }
    }
    (views, warnings)
}

/// The fleet view of `nodes` with their `failing` checks, `exceptions` applied at `now`.
pub fn evaluate(
    nodes: &[NodeRecord],
    failing: &[FailingCheck],
    exceptions: &[ExceptionRecord],
    now: i64,
) -> FleetState {
    let active: Vec<&ExceptionRecord> = exceptions.iter().filter(|e| e.active(now)).collect();
    let (mut by_node, matches) = apply_exceptions(failing, &active, now);

    let mut counts = FleetCounts::default();
    let mut views = Vec::with_capacity(nodes.len());
    for n in nodes {
        let failing = by_node.remove(n.name.as_str()).unwrap_or_default();
        let stale = is_stale(n, now);
        let mut view = NodeView {
            name: n.name.clone(),
            key_id: n.key_id.clone(),
            status: n.status,
            health: Health::Ok,
            last_seen: n.last_seen.map(rfc3339),
            last_sequence: n.last_sequence,
            failing,
            stale,
        };
        counts.total += 1;
        view.health = match n.status {
            NodeStatus::Pending => {
                counts.pending += 1;
                Health::Pending
            }
            NodeStatus::Revoked => {
                counts.revoked += 1;
                Health::Revoked
            }
            NodeStatus::Approved => {
                counts.approved += 1;
                let fails = view.fails();
                if fails {
                    counts.failing += 1;
                }
                if stale {
                    counts.stale += 1;
                    Health::Stale
                } else if fails {
                    Health::Failing
                } else {
                    counts.compliant += 1;
                    if !view.failing.is_empty() {
                        counts.excepted += 1;
                    }
                    Health::Ok
                }
            }
        };
        views.push(view);
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    let (exceptions, warnings) = exception_views(exceptions, &matches, now);
    FleetState {
        generated_at: rfc3339(now),
        counts,
        nodes: views,
        exceptions,
        warnings,
    }
}

/// The counts and warnings of [`evaluate`] without the node list, for `GET /v1/fleet`: it
/// reads the store's tallies, the stale nodes and the failing rows, so it costs what the
/// stale and failing part of the fleet costs, not the whole fleet.
pub fn counts(store: &dyn Store, now: i64) -> StoreResult<(FleetCounts, Vec<String>)> {
    let tally = store.fleet_summary(now)?.nodes;
    counts_from(store, &tally, now)
}

/// [`counts`] from tallies already read (`GET /v1/fleet` reads the fleet summary for its
/// per-check counters anyway: one read of the counters, not two).
pub fn counts_from(
    store: &dyn Store,
    tally: &NodeCounts,
    now: i64,
) -> StoreResult<(FleetCounts, Vec<String>)> {
    let stale: HashSet<String> = store.stale_nodes(now)?.into_iter().collect();
    let failing = store.failing_checks()?;
    let exceptions = store.exceptions()?;
    let active: Vec<&ExceptionRecord> = exceptions.iter().filter(|e| e.active(now)).collect();
    let (by_node, matches) = apply_exceptions(&failing, &active, now);
    let mut counts = FleetCounts {
        total: tally.total,
        approved: tally.approved,
        pending: tally.pending,
        revoked: tally.revoked,
        stale: stale.len() as u64,
        ..FleetCounts::default()
    };
    let mut not_compliant = stale.len() as u64;
    for (node, failures) in &by_node {
        let fails = failures.iter().any(|f| f.excepted.is_none());
        let is_stale = stale.contains(*node);
        if fails {
            counts.failing += 1;
            if !is_stale {
                not_compliant += 1;
            }
        } else if !is_stale {
            counts.excepted += 1;
        }
    }
    counts.compliant = counts.approved.saturating_sub(not_compliant);
    let (_, warnings) = exception_views(&exceptions, &matches, now);
    Ok((counts, warnings))
}

/// `3d 4h`, `5h 10m`, `42m`: how long until an exception ends.
fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{}m", m.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn node(name: &str, status: NodeStatus, last_seen: Option<i64>) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            key_id: format!("key-{name}"),
            public_key: String::new(),
            status,
            enrolled_at: 0,
            last_sequence: 1,
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

    fn failing(node: &str, id: &str) -> FailingCheck {
        FailingCheck {
            node: node.into(),
            id: id.into(),
            cis: check_meta(id).map_or("9.9.9", |m| m.cis).into(),
            status: Status::Fail,
            since_at: NOW - 10,
        }
    }

    fn exception(id: i64, check: &str, node: Option<&str>, until: i64) -> ExceptionRecord {
        ExceptionRecord {
            id,
            check_id: check.into(),
            cis: check_meta(check).expect("known").cis.into(),
            node: node.map(str::to_string),
            until,
            reason: "vendor fix due".into(),
            created_by: "alice".into(),
            created_at: NOW - 100,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    #[test]
    fn check_lookup_takes_cis_or_id_and_refuses_others() {
        assert_eq!(lookup_check("4.2.13").unwrap().id, "kubelet-pod-pids-limit");
        assert_eq!(
            lookup_check("kubelet-pod-pids-limit").unwrap().cis,
            "4.2.13"
        );
        for bad in ["4.2.99", "", "kubelet", "4.2"] {
            assert!(lookup_check(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn until_is_rfc3339_or_the_start_of_a_day() {
        assert_eq!(
            parse_until("2027-03-01"),
            parse_until("2027-03-01T00:00:00Z")
        );
        assert_eq!(
            parse_until("2027-03-01T12:00:00+02:00").unwrap(),
            parse_until("2027-03-01T10:00:00Z").unwrap()
        );
        for bad in ["", "tomorrow", "2027-02-30", "2027-3-1x", "1700000000"] {
            assert!(parse_until(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exception_requests_are_checked() {
        let ok = ExceptionRequest {
            check: "4.2.13".into(),
            node: Some("node-a".into()),
            all: false,
            until: "2030-01-01".into(),
            reason: "vendor fix due".into(),
            by: "alice".into(),
        };
        let new = validate_exception(&ok, NOW).unwrap();
        assert_eq!(new.check_id, "kubelet-pod-pids-limit");
        assert_eq!(new.node.as_deref(), Some("node-a"));
        let bad = |f: &dyn Fn(&mut ExceptionRequest), what: &str| {
            let mut r = ok.clone();
            f(&mut r);
            let e = validate_exception(&r, NOW).unwrap_err();
            assert!(e.contains(what), "{e}");
        };
        bad(&|r| r.check = "4.2.99".into(), "not a check");
        bad(&|r| r.all = true, "not both");
        bad(&|r| r.node = None, "which nodes");
        bad(&|r| r.until = "2020-01-01".into(), "not in the future");
        bad(&|r| r.until = "soon".into(), "not a date");
        bad(&|r| r.reason = "  ".into(), "reason is required");
        bad(&|r| r.by = String::new(), "by is required");
        bad(&|r| r.reason = "x".repeat(MAX_REASON_CHARS + 1), "longer");
        bad(&|r| r.by = "a\u{1b}[31m".into(), "control");
    }

    #[test]
    fn every_failure_counts_with_the_catalogues_severity() {
        let nodes = [node("a", NodeStatus::Approved, Some(NOW))];
        // 4.2.13 is a Manual check: it still fails the node.
        let view = evaluate(&nodes, &[failing("a", "kubelet-pod-pids-limit")], &[], NOW);
        assert_eq!(view.counts.failing, 1);
        assert_eq!(view.counts.compliant, 0);
        let f = &view.nodes[0].failing[0];
        assert_eq!(
            (f.cis.as_str(), f.severity),
            ("4.2.13", Some(Severity::Medium))
        );
        assert_eq!(view.nodes[0].health, Health::Failing);
    }

    #[test]
    fn an_excepted_failure_is_compliant_until_it_expires() {
        let nodes = [node("a", NodeStatus::Approved, Some(NOW))];
        let fails = [failing("a", "kubelet-pod-pids-limit")];
        let until = NOW + 30 * 86_400;
        let ex = [exception(1, "kubelet-pod-pids-limit", Some("a"), until)];
        let view = evaluate(&nodes, &fails, &ex, NOW);
        assert_eq!(view.counts.compliant, 1);
        assert_eq!(view.counts.excepted, 1);
        assert_eq!(view.counts.failing, 0);
        assert_eq!(view.nodes[0].health, Health::Ok);
        let e = view.nodes[0].failing[0]
            .excepted
            .as_ref()
            .expect("excepted");
        assert_eq!((e.exception, e.by.as_str()), (1, "alice"));
        assert!(view.warnings.is_empty(), "{:?}", view.warnings);
        // A week before the end: a warning. The node reports on time throughout.
        let soon = until - 6 * 86_400;
        let nodes_soon = [node("a", NodeStatus::Approved, Some(soon))];
        let view = evaluate(&nodes_soon, &fails, &ex, soon);
        assert_eq!(view.counts.compliant, 1);
        assert!(view.warnings[0].contains("expires"), "{:?}", view.warnings);
        // At the end: failing again, nobody touched anything.
        let nodes_after = [node("a", NodeStatus::Approved, Some(until))];
        let view = evaluate(&nodes_after, &fails, &ex, until);
        assert_eq!(view.counts.failing, 1);
        assert_eq!(view.nodes[0].health, Health::Failing);
        assert!(view.nodes[0].failing[0].excepted.is_none());
        assert_eq!(view.exceptions[0].state, ExceptionState::Expired);
    }

    #[test]
    fn an_exception_covers_only_its_check_and_node() {
        let nodes = [
            node("a", NodeStatus::Approved, Some(NOW)),
            node("b", NodeStatus::Approved, Some(NOW)),
        ];
        let fails = [
            failing("a", "kubelet-pod-pids-limit"),
            failing("a", "kubelet-anonymous-auth"),
            failing("b", "kubelet-pod-pids-limit"),
        ];
        let ex = [exception(
            1,
            "kubelet-pod-pids-limit",
            Some("a"),
            NOW + 86_400 * 30,
        )];
        let view = evaluate(&nodes, &fails, &ex, NOW);
        assert_eq!(view.counts.failing, 2);
        assert_eq!(view.exceptions[0].matches, 1);
        let all = [exception(
            2,
            "kubelet-pod-pids-limit",
            None,
            NOW + 86_400 * 30,
        )];
        let view = evaluate(&nodes, &fails, &all, NOW);
        assert_eq!(view.exceptions[0].matches, 2);
        assert_eq!(view.nodes[1].health, Health::Ok);
        assert_eq!(
            view.nodes[0].health,
            Health::Failing,
            "4.2.1 is not excepted"
        );
    }

    #[test]
    fn a_revoked_exception_excepts_nothing() {
        let nodes = [node("a", NodeStatus::Approved, Some(NOW))];
        let fails = [failing("a", "kubelet-pod-pids-limit")];
        let mut e = exception(1, "kubelet-pod-pids-limit", None, NOW + 86_400 * 30);
        e.revoked_at = Some(NOW - 1);
        let view = evaluate(&nodes, &fails, &[e], NOW);
        assert_eq!(view.counts.failing, 1);
        assert_eq!(view.exceptions[0].state, ExceptionState::Revoked);
        assert!(view.warnings.is_empty());
    }

    #[test]
    fn an_exception_that_matches_nothing_is_warned_about() {
        let nodes = [node("a", NodeStatus::Approved, Some(NOW))];
        let ex = [exception(
            4,
            "kubelet-seccomp-default",
            None,
            NOW + 86_400 * 30,
        )];
        let view = evaluate(&nodes, &[], &ex, NOW);
        assert_eq!(view.warnings.len(), 1);
        assert!(
            view.warnings[0].contains("exception 4"),
            "{:?}",
            view.warnings
        );
        assert!(view.warnings[0].contains("matches no failing check"));
    }

    #[test]
    fn a_stale_node_keeps_its_failures_and_counts_as_stale_and_failing() {
        let nodes = [
            node("quiet", NodeStatus::Approved, Some(NOW - 901)),
            node("never", NodeStatus::Approved, None),
            node("new", NodeStatus::Pending, None),
        ];
        let view = evaluate(
            &nodes,
            &[failing("quiet", "kubelet-anonymous-auth")],
            &[],
            NOW,
        );
        assert_eq!(view.counts.stale, 2);
        assert_eq!(view.counts.failing, 1);
        assert_eq!(view.counts.compliant, 0);
        assert_eq!(view.counts.pending, 1);
        let quiet = view.nodes.iter().find(|n| n.name == "quiet").unwrap();
        assert_eq!(quiet.health, Health::Stale);
        assert_eq!(quiet.failing[0].cis, "4.2.1");
        let new = view.nodes.iter().find(|n| n.name == "new").unwrap();
        assert_eq!(new.health, Health::Pending);
    }

    #[test]
    fn an_unknown_check_id_has_no_severity_and_still_fails() {
        let nodes = [node("a", NodeStatus::Approved, Some(NOW))];
        let view = evaluate(&nodes, &[failing("a", "kubelet-made-up")], &[], NOW);
        assert_eq!(view.nodes[0].failing[0].severity, None);
        assert_eq!(view.counts.failing, 1);
    }
}
