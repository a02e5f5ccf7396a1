//! The acceptance decision for a statement whose signature has already checked out: does it
//! extend its node's chain, is it a retry of something stored, or must it be refused, and
//! why. It is a pure function of the node's chain state, the statement, its envelope digest
//! and the clock, so every row of the table in `docs/collector.md` is tested here without a
//! socket or a database; the server only feeds it and carries out what it says.

use std::collections::HashSet;

use nodeproof_proto::{check_meta, CheckResult, Link, Predicate, Statement, Summary};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::{Accepted, AcceptedKind, CheckState, NodeRecord};

/// At most this many checks in one report. The catalogue has a few dozen; a report with
/// thousands is not from our agent, and each one would cost the writer time.
pub const MAX_CHECKS: usize = 256;
/// The longest reporting interval accepted (30 days). Longer would make "stale" meaningless,
/// and `last_seen + 3 * interval` must stay far from the storage's integer range.
pub const MAX_INTERVAL_SECS: u64 = 30 * 24 * 60 * 60;
/// Sequences and counts are stored as signed 64-bit integers (SQLite's, PostgreSQL's
/// `bigint`): anything above is refused here as the sender's error, never a store failure.
pub const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// The clock limits the collector enforces (`--skew`, `--max-age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How far a scan time may be ahead of the collector's clock, and how far behind the
    /// node's previous scan time, before the clocks are taken to disagree.
    pub skew_secs: i64,
    /// How old a scan may be when it arrives; older evidence says nothing about now.
    pub max_age_secs: i64,
}

impl Default for Policy {
    /// 5 minutes of skew, 7 days of age, as documented.
    fn default() -> Policy {
        Policy {
            skew_secs: 5 * 60,
            max_age_secs: 7 * 24 * 60 * 60,
        }
    }
}

/// What to do with a statement that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It extends the chain: commit it. `envelope` is left empty because the decision never
    /// needs the bytes; the caller attaches the exact bytes it verified before committing.
    New(Box<Accepted>),
    /// The same envelope is already stored (a retry after a lost answer): answer 200 and
    /// store nothing.
    Duplicate { sequence: u64 },
}

/// Why a statement was refused: the HTTP status, the stable `error` code, a message for a
/// person and, for chain errors, where the node's chain stands so the agent can re-chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub last_sequence: Option<u64>,
    pub last_digest: Option<String>,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: String) -> Rejection {
        Rejection {
            status,
            code,
            message,
            last_sequence: None,
            last_digest: None,
        }
    }

    fn chain(code: &'static str, message: String, node: &NodeRecord) -> Rejection {
        Rejection {
            status: 409,
            code,
            message,
            last_sequence: Some(node.last_sequence),
            last_digest: node.last_digest.clone(),
        }
    }

    /// Whether this refusal is a chain break that is recorded in `chain_events`.
    pub fn is_chain_break(&self) -> bool {
        matches!(self.code, "replay" | "chain_fork" | "chain_gap")
    }
}

/// What [`decide`] reads of a verified statement, taken out of it once where it was
/// verified (in the request handlers, in parallel), so that the writer, which decides one
/// statement at a time, never walks, hashes or frees a whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// RFC 3339 as signed; parsed by the decision (a bad one is `bad_statement`).
    pub scan_time: String,
    pub link: Option<Link>,
    pub kind: ClaimKind,
    /// Why the statement's content cannot be stored although its signature holds (a check
    /// listed twice, too many checks): the decision refuses it with 422 `bad_statement`.
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKind {
    /// A full report: its posture digest, verdict counts and check states. Only checks
    /// whose id is in the collector's catalogue are kept (with the catalogue's CIS number
    /// and scoring), and the counts are over those: a node cannot add checks of its own
    /// to the fleet view.
    Full {
        posture: String,
        summary: Summary,
        checks: Vec<CheckState>,
    },
    /// An unchanged notice and the full report it claims to match.
    Unchanged {
        since: String,
        since_sequence: u64,
        posture: String,
        count: u64,
        first_unchanged: String,
    },
}

impl Claim {
    /// Takes what the decision and the commit need out of `statement` (computing a full
    /// report's posture digest); the rest of the statement is dropped here.
    pub fn of(statement: Statement) -> Claim {
        match statement.predicate {
            Predicate::Report(report) => {
                let report = *report;
                let refusal = check_list_refusal(&report.checks);
                // Over the report as signed, as the agent computes it: its unchanged
                // notices name this digest.
                let posture = crate::digest::posture_digest(&report);
                let known: Vec<CheckResult> = report
                    .checks
                    .into_iter()
                    .filter_map(|c| {
                        let meta = check_meta(&c.id)?;
                        Some(CheckResult {
                            cis: meta.cis.to_string(),
                            scored: meta.scored,
                            ..c
                        })
                    })
                    .collect();
                let kind = ClaimKind::Full {
                    posture,
                    summary: Summary::of(&known),
                    checks: known
                        .into_iter()
                        .map(|c| CheckState {
                            id: c.id,
                            cis: c.cis,
                            scored: c.scored,
                            status: c.status,
                        })
                        .collect(),
                };
                Claim {
                    scan_time: report.scan_time,
                    link: report.link,
                    kind,
                    refusal,
                }
            }
            Predicate::Unchanged(u) => {
                let u = *u;
                let refusal =
                    (u.count > MAX_SEQUENCE || u.since_sequence > MAX_SEQUENCE).then(|| {
                        format!(
                            "the unchanged notice's count {} or since_sequence {} is above \
                             {MAX_SEQUENCE}: the agent that signed it is broken; upgrade it",
                            u.count, u.since_sequence
                        )
                    });
                Claim {
                    refusal,
                    scan_time: u.scan_time,
                    link: Some(u.link),
                    kind: ClaimKind::Unchanged {
                        since: u.since,
                        since_sequence: u.since_sequence,
                        posture: u.posture,
                        count: u.count,
                        first_unchanged: u.first_unchanged,
                    },
                }
            }
        }
    }
}

/// Why a report's check list cannot be stored: more than [`MAX_CHECKS`], or one id twice
/// (which of the two verdicts would count?).
fn check_list_refusal(checks: &[CheckResult]) -> Option<String> {
    if checks.len() > MAX_CHECKS {
        return Some(format!(
            "the report lists {} checks, more than the {MAX_CHECKS} a report may carry: it \
             was not made by a nodeproof agent",
            checks.len()
        ));
    }
    let mut seen = HashSet::new();
    checks
        .iter()
        .find(|c| !seen.insert(c.id.as_str()))
        .map(|c| {
            format!(
                "the report lists check {:?} twice: it is ambiguous which verdict counts; the \
             agent that signed it is broken",
                c.id
            )
        })
}

/// Decides whether `statement` (envelope digest `digest`, verified with `node`'s key) is
/// accepted at Unix time `now`. `already_stored` says whether a statement with this digest
/// is stored (the caller asks the store only when it matters: see [`needs_stored_check`]).
///
/// The order is the table's: statement shape, link, duplicate, replay, fork, gap, unknown
/// base, clock skew, age. A duplicate is answered before the chain and clock checks so a
/// retry of an accepted report is never refused for having grown old in a spool.
pub fn decide(
    node: &NodeRecord,
    statement: &Statement,
    digest: &str,
    now: i64,
    policy: &Policy,
    already_stored: bool,
) -> Result<Outcome, Rejection> {
    decide_claim(
        node,
        Claim::of(statement.clone()),
        digest,
        now,
        policy,
        already_stored,
    )
}

/// [`decide`] on the [`Claim`] taken out of the statement.
pub fn decide_claim(
    node: &NodeRecord,
    claim: Claim,
    digest: &str,
    now: i64,
    policy: &Policy,
    already_stored: bool,
) -> Result<Outcome, Rejection> {
    if let Some(message) = &claim.refusal {
        return Err(Rejection::new(422, "bad_statement", message.clone()));
    }
    let scan_time = parse_time(&claim.scan_time).map_err(|e| {
        Rejection::new(
            422,
            "bad_statement",
            format!(
                "the statement's scan_time {:?} is not an RFC 3339 time ({e}): the agent \
                 that signed it is broken; upgrade it",
                claim.scan_time
            ),
        )
    })?;
    if let ClaimKind::Unchanged {
        first_unchanged, ..
    } = &claim.kind
    {
        parse_time(first_unchanged).map_err(|e| {
            Rejection::new(
                422,
                "bad_statement",
                format!(
                    "the unchanged notice's first_unchanged {first_unchanged:?} is not an RFC \
                     3339 time ({e}): the agent that signed it is broken; upgrade it",
                ),
            )
        })?;
    }

    let Some(link) = &claim.link else {
        return Err(Rejection::new(
            422,
            "bad_link",
            "the report has no link (node, sequence, previous): only the agent daemon's \
             chained reports are accepted; run `nodeproof-agent run` rather than sending \
             `scan --format dsse` output"
                .to_string(),
        ));
    };
    if link.sequence > MAX_SEQUENCE {
        return Err(Rejection::new(
            422,
            "bad_link",
            format!(
                "the link's sequence {} is above {MAX_SEQUENCE}, the largest the collector \
                 stores: the agent that signed it is broken; upgrade it",
                link.sequence
            ),
        ));
    }
    if link.interval_secs == 0 || link.interval_secs > MAX_INTERVAL_SECS {
        return Err(Rejection::new(
            422,
            "bad_link",
            format!(
                "the link's interval_secs {} is not between 1 and {MAX_INTERVAL_SECS} (30 \
                 days): run the agent with an --interval in that range",
                link.interval_secs
            ),
        ));
    }
    if link.node != node.name {
        return Err(Rejection::new(
            422,
            "bad_link",
            format!(
                "the report's link names node {:?} but it is signed by the key of node {:?}: \
                 a node may only report for itself; check the agent's --node-name",
                link.node, node.name
            ),
        ));
    }

    if already_stored || node.last_digest.as_deref() == Some(digest) {
        return Ok(Outcome::Duplicate {
            sequence: link.sequence,
        });
    }

    let last = node.last_sequence;
    let last_digest = node.last_digest.as_deref().unwrap_or("(none)");
    if link.sequence <= last {
        return Err(Rejection::chain(
            "replay",
            format!(
                "sequence {} is not after the node's last accepted sequence {last} and this \
                 envelope is not stored: it is a replay or was re-signed; re-chain pending \
                 reports after sequence {last} (digest {last_digest})",
                link.sequence
            ),
            node,
        ));
    }
    let next = last.saturating_add(1);
    if link.sequence == next
        && matches!(claim.kind, ClaimKind::Full { .. })
        && link.previous.as_deref() != node.last_digest.as_deref()
    {
        return Err(Rejection::chain(
            "chain_fork",
            format!(
                "sequence {} names previous {} but the node's last accepted statement \
                 (sequence {last}) has digest {last_digest}: the chain forked; re-chain \
                 pending reports after sequence {last}",
                link.sequence,
                link.previous.as_deref().unwrap_or("(none)"),
            ),
            node,
        ));
    }
    if link.sequence > next {
        return Err(Rejection::chain(
            "chain_gap",
            format!(
                "sequence {} follows the node's last accepted sequence {last}: {} \
                 statement(s) are missing; send them first, or re-chain pending reports \
                 after sequence {last} (digest {last_digest})",
                link.sequence,
                link.sequence - next
            ),
            node,
        ));
    }

    if let ClaimKind::Unchanged {
        since,
        since_sequence,
        posture,
        count,
        ..
    } = &claim.kind
    {
        check_notice(
            node,
            link,
            &NoticeClaim {
                since,
                since_sequence: *since_sequence,
                posture,
                count: *count,
            },
        )?;
    }

    if scan_time > now.saturating_add(policy.skew_secs) {
        return Err(Rejection::new(
            422,
            "clock_skew",
            format!(
                "the scan time {} is {}s ahead of the collector's clock (allowed skew {}s): \
                 fix the node's clock (NTP) and rescan",
                claim.scan_time,
                scan_time - now,
                policy.skew_secs
            ),
        ));
    }
    if let Some(prev) = node.last_scan_time.as_deref() {
        if let Ok(prev_time) = parse_time(prev) {
            if scan_time < prev_time.saturating_sub(policy.skew_secs) {
                return Err(Rejection::new(
                    422,
                    "clock_skew",
                    format!(
                        "the scan time {} is {}s before the node's previous scan ({prev}), more \
                         than the allowed skew of {}s: the node's clock went backwards; fix \
                         it (NTP) and rescan",
                        claim.scan_time,
                        prev_time - scan_time,
                        policy.skew_secs
                    ),
                ));
            }
        }
    }
    if scan_time < now.saturating_sub(policy.max_age_secs) {
        return Err(Rejection::new(
            422,
            "too_old",
            format!(
                "the scan time {} is {}s old, more than the collector's --max-age of {}s: \
                 it no longer says anything about the node; discard it and rescan",
                claim.scan_time,
                now - scan_time,
                policy.max_age_secs
            ),
        ));
    }

    let sequence = link.sequence;
    let interval_secs = link.interval_secs;
    let Claim {
        scan_time,
        link,
        kind,
        refusal: _,
    } = claim;
    let previous = link.and_then(|l| l.previous);
    let kind = match kind {
        ClaimKind::Full {
            posture,
            summary,
            checks,
        } => AcceptedKind::Full {
            posture,
            summary,
            checks,
        },
        ClaimKind::Unchanged {
            since,
            count,
            first_unchanged,
            ..
        } => AcceptedKind::Unchanged {
            since,
            count,
            first_unchanged,
        },
    };
    Ok(Outcome::New(Box::new(Accepted {
        node: node.name.clone(),
        key_id: node.key_id.clone(),
        digest: digest.to_string(),
        sequence,
        previous,
        received_at: now,
        scan_time,
        interval_secs,
        envelope: Vec::new(),
        kind,
    })))
}

/// What an unchanged notice claims about its run, as [`check_notice`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct NoticeClaim<'a> {
    pub since: &'a str,
    pub since_sequence: u64,
    pub posture: &'a str,
    pub count: u64,
}

/// The chain rule for an unchanged notice (see `docs/collector.md`, "Reports and the
/// chain"), checked once its sequence is the node's next (`last_sequence + 1`; replays and
/// gaps are refused before): the notice links to the full report its run matches, not to
/// the statement before it, and counts the sequences since that report.
///
/// - `since`, `since_sequence` and `posture` are the node's last full report's, else 409
///   `unknown_base` (the agent sends a full report instead). Since every statement after
///   the last full report is a notice resting on it, this also says that the node's last
///   stored statement is that report or a notice of the same run;
/// - `previous == since`, else 409 `chain_fork` (an agent from before this rule links a
///   notice to the notice before it, which the collector does not keep: the stored chain
///   would have a hole);
/// - `count == sequence - since_sequence`, else 422 `bad_link` (the notice claims more, or
///   fewer, scans than its place in the chain allows).
///
/// A notice that passes replaces the previous notice of its run in the store, so the
/// stored chain is `F(s) <- N(s+k, count k) <- F(s+k+1)` with no gap. The rule holds after
/// a notice stored under the old rule too: it only asks for `previous == since`.
pub fn check_notice(
    node: &NodeRecord,
    link: &Link,
    notice: &NoticeClaim<'_>,
) -> Result<(), Rejection> {
    let base_matches = node.last_full_digest.as_deref() == Some(notice.since)
        && node.last_full_sequence == Some(notice.since_sequence)
        && node.posture.as_deref() == Some(notice.posture);
    if !base_matches {
        return Err(Rejection::chain(
            "unknown_base",
            format!(
                "the unchanged notice refers to full report {} (sequence {}, posture {}) \
                 but the node's last full report is {} (sequence {}, posture {}): send \
                 a full report instead",
                notice.since,
                notice.since_sequence,
                notice.posture,
                node.last_full_digest.as_deref().unwrap_or("(none)"),
                node.last_full_sequence
                    .map_or_else(|| "(none)".to_string(), |s| s.to_string()),
                node.posture.as_deref().unwrap_or("(none)"),
            ),
            node,
        ));
    }
    if link.previous.as_deref() != Some(notice.since) {
        let hint = if link.previous.is_some() && link.previous == node.last_digest {
            "it links to the statement before it, as agents before the gap-free chain did; \
             upgrade the agent (it re-links its spooled notices itself)"
        } else {
            "re-chain pending reports after the node's last statement"
        };
        return Err(Rejection::chain(
            "chain_fork",
            format!(
                "unchanged notice at sequence {} names previous {} but a notice must link to \
                 the full report of its run, since {} (sequence {}): {hint}",
                link.sequence,
                link.previous.as_deref().unwrap_or("(none)"),
                notice.since,
                notice.since_sequence,
            ),
            node,
        ));
    }
    let covered = link.sequence.saturating_sub(notice.since_sequence);
    if notice.count != covered {
        return Err(Rejection::new(
            422,
            "bad_link",
            format!(
                "unchanged notice at sequence {} counts {} scan(s) since full report {} \
                 (sequence {}), but its place in the chain stands for {covered}: count must \
                 be sequence - since_sequence; the agent that signed it is broken; upgrade it",
                link.sequence, notice.count, notice.since, notice.since_sequence,
            ),
        ));
    }
    Ok(())
}

/// Whether [`decide`] can only tell a duplicate from a replay by asking the store: the
/// sequence is at or behind the node's last one and the digest is not the last one. For
/// every other statement the answer cannot change the decision, so the store is not asked.
pub fn needs_stored_check(node: &NodeRecord, statement: &Statement, digest: &str) -> bool {
    link_needs_stored_check(node, statement.link(), digest)
}

/// [`needs_stored_check`] for a statement's link.
pub fn link_needs_stored_check(node: &NodeRecord, link: Option<&Link>, digest: &str) -> bool {
    link.is_some_and(|link| {
        link.node == node.name
            && link.sequence <= node.last_sequence
            && node.last_digest.as_deref() != Some(digest)
    })
}

/// Moves `node`'s chain state past `accepted`, the same way a commit does in the store, so
/// the next statement in the same batch is decided against it.
pub fn advance(node: &mut NodeRecord, accepted: &Accepted) {
    node.last_sequence = accepted.sequence;
    node.last_digest = Some(accepted.digest.clone());
    node.last_scan_time = Some(accepted.scan_time.clone());
    node.last_seen = Some(accepted.received_at);
    node.interval_secs = Some(accepted.interval_secs);
    node.key_id.clone_from(&accepted.key_id);
    if let AcceptedKind::Full {
        posture,
        summary,
        checks,
    } = &accepted.kind
    {
        node.last_full_digest = Some(accepted.digest.clone());
        node.last_full_sequence = Some(accepted.sequence);
        node.posture = Some(posture.clone());
        node.summary = Some(*summary);
        node.failing = checks
            .iter()
            .filter(|c| {
                c.scored
                    && matches!(
                        c.status,
                        nodeproof_proto::Status::Fail | nodeproof_proto::Status::Error
                    )
            })
            .map(|c| c.cis.clone())
            .collect();
    }
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<i64, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339).map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::*;

    const NOW: i64 = 1_714_564_800; // 2024-05-01T12:00:00Z
    const DIGEST: &str = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";
    /// The last notice of report 4's run, in [`in_a_run`].
    const NOTICE: &str = "c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7";
    const LAST: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";

    fn at(offset: i64) -> String {
        OffsetDateTime::from_unix_timestamp(NOW + offset)
            .unwrap()
            .format(&Rfc3339)
            .unwrap()
    }

    fn report(sequence: u64, previous: Option<&str>, scan_offset: i64) -> Report {
        let checks = vec![CheckResult {
            id: "kubelet-anonymous-auth".into(),
            cis: "4.2.1".into(),
            title: "anonymous auth".into(),
            scored: true,
            severity: nodeproof_proto::Severity::Critical,
            status: Status::Fail,
            expected: "false".into(),
            actual: "true".into(),
            source: None,
            origin: None,
            note: String::new(),
            remediation: Remediation {
                flag: "--anonymous-auth=false".into(),
                config: String::new(),
            },
        }];
        Report {
            schema: REPORT_SCHEMA.into(),
            catalogue: nodeproof_proto::CATALOGUE_VERSION.into(),
            scan_time: at(scan_offset),
            agent_version: "0.1.0".into(),
            node: NodeFacts::default(),
            kubelet: KubeletInfo {
                pid: 1,
                cmdline: vec!["/usr/bin/kubelet".into()],
                config_file: None,
                config_dir: None,
                exe: None,
                exe_sha256: None,
                exe_error: None,
                version: None,
                distribution: None,
                embedded_in: None,
            },
            settings: Default::default(),
            summary: Summary::of(&checks),
            checks,
            warnings: vec![],
            files: vec![],
            link: Some(Link {
                node: "node-1".into(),
                sequence,
                previous: previous.map(str::to_string),
                interval_secs: 300,
            }),
        }
    }

    fn full(sequence: u64, previous: Option<&str>) -> Statement {
        Statement::new(
            vec![Subject::sha256("x", "00".repeat(32))],
            report(sequence, previous, 0),
        )
    }

    /// The node's next statement: a notice of the run of `since`, by the chain rule
    /// (previous = since, count = sequence - since_sequence).
    fn unchanged(node: &NodeRecord, since: &str, posture: &str) -> Statement {
        let sequence = node.last_sequence + 1;
        let since_sequence = node.last_full_sequence.unwrap_or(0);
        Statement::unchanged(
            vec![Subject::sha256("x", "00".repeat(32))],
            Unchanged {
                link: Link {
                    node: "node-1".into(),
                    sequence,
                    previous: Some(since.into()),
                    interval_secs: 300,
                },
                scan_time: at(0),
                agent_version: "0.1.0".into(),
                since: since.into(),
                since_sequence,
                posture: posture.into(),
                count: sequence - since_sequence,
                first_unchanged: at(0),
                summary: Summary::default(),
            },
        )
    }

    fn fresh() -> NodeRecord {
        NodeRecord {
            name: "node-1".into(),
            key_id: "k1".into(),
            public_key: String::new(),
            status: crate::store::NodeStatus::Approved,
            enrolled_at: NOW - 3600,
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
        }
    }

    /// A node whose last accepted statement is full report 4 with digest LAST.
    fn at_four() -> NodeRecord {
        let mut node = fresh();
        node.last_sequence = 4;
        node.last_digest = Some(LAST.into());
        node.last_scan_time = Some(at(-300));
        node.last_full_digest = Some(LAST.into());
        node.last_full_sequence = Some(4);
        node.posture = Some(report(4, None, 0).posture_digest());
        node
    }

    fn run(node: &NodeRecord, st: &Statement) -> Result<Outcome, Rejection> {
        decide(node, st, DIGEST, NOW, &Policy::default(), false)
    }

    fn code(result: Result<Outcome, Rejection>) -> &'static str {
        match result {
            Err(r) => r.code,
            Ok(o) => panic!("expected a rejection, got {o:?}"),
        }
    }

    #[test]
    fn first_report_is_accepted() {
        let Ok(Outcome::New(acc)) = run(&fresh(), &full(1, None)) else {
            panic!("first report refused");
        };
        assert_eq!(acc.sequence, 1);
        assert_eq!(acc.node, "node-1");
        assert_eq!(acc.digest, DIGEST);
        assert_eq!(acc.received_at, NOW);
        assert_eq!(acc.interval_secs, 300);
        let AcceptedKind::Full {
            summary, checks, ..
        } = &acc.kind
        else {
            panic!("not full");
        };
        assert_eq!(summary.fail, 1);
        assert_eq!(checks[0].cis, "4.2.1");
    }

    #[test]
    fn the_claim_carries_what_the_commit_needs() {
        let st = full(5, Some(LAST));
        let report = st.report().unwrap().clone();
        let claim = Claim::of(st);
        assert_eq!(claim.scan_time, report.scan_time);
        assert_eq!(claim.link, report.link);
        let ClaimKind::Full {
            posture,
            summary,
            checks,
        } = claim.kind
        else {
            panic!("not full");
        };
        assert_eq!(
            posture,
            report.posture_digest(),
            "same digest as the agent's"
        );
        assert_eq!(summary, Summary::of(&report.checks));
        assert_eq!(checks.len(), report.checks.len());
        assert_eq!(
            (checks[0].cis.as_str(), checks[0].status),
            ("4.2.1", Status::Fail)
        );
    }

    fn with_checks(mut st: Statement, f: impl FnOnce(&mut Vec<CheckResult>)) -> Statement {
        if let Predicate::Report(r) = &mut st.predicate {
            f(&mut r.checks);
        }
        st
    }

    #[test]
    fn fake_check_ids_are_not_stored() {
        let st = with_checks(full(1, None), |checks| {
            let real = checks[0].clone();
            // A compromised node invents checks, and relabels a real one's CIS number.
            checks[0].cis = "9.9.9".into();
            checks[0].scored = false;
            for i in 0..100 {
                checks.push(CheckResult {
                    id: format!("fake-{i}"),
                    cis: format!("4.2.{}", 100 + i),
                    ..real.clone()
                });
            }
        });
        let Ok(Outcome::New(acc)) = run(&fresh(), &st) else {
            panic!("refused");
        };
        let AcceptedKind::Full {
            checks, summary, ..
        } = &acc.kind
        else {
            panic!("not full");
        };
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(
            (checks[0].cis.as_str(), checks[0].scored),
            ("4.2.1", true),
            "the catalogue's number and scoring, not the node's"
        );
        assert_eq!((summary.fail, summary.pass), (1, 0), "{summary:?}");
    }

    #[test]
    fn check_listed_twice_is_422() {
        let st = with_checks(full(1, None), |checks| {
            let mut again = checks[0].clone();
            again.status = Status::Pass;
            checks.push(again);
        });
        let rej = run(&fresh(), &st).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "bad_statement"));
        assert!(rej.message.contains("twice"), "{}", rej.message);
    }

    #[test]
    fn thousands_of_checks_are_422() {
        let st = with_checks(full(1, None), |checks| {
            let real = checks[0].clone();
            checks.extend((0..MAX_CHECKS).map(|i| CheckResult {
                id: format!("fake-{i}"),
                ..real.clone()
            }));
        });
        let rej = run(&fresh(), &st).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "bad_statement"));
    }

    #[test]
    fn sequence_near_u64_max_is_422() {
        for sequence in [u64::MAX, u64::MAX - 1, MAX_SEQUENCE + 1] {
            let rej = run(&at_four(), &full(sequence, Some(LAST))).unwrap_err();
            assert_eq!((rej.status, rej.code), (422, "bad_link"), "{sequence}");
        }
        // The largest storable sequence is only a gap.
        assert_eq!(
            code(run(&at_four(), &full(MAX_SEQUENCE, Some(LAST)))),
            "chain_gap"
        );
    }

    #[test]
    fn interval_out_of_range_is_422() {
        for interval in [0, MAX_INTERVAL_SECS + 1, u64::MAX] {
            let mut st = full(1, None);
            if let Predicate::Report(r) = &mut st.predicate {
                r.link.as_mut().unwrap().interval_secs = interval;
            }
            let rej = run(&fresh(), &st).unwrap_err();
            assert_eq!((rej.status, rej.code), (422, "bad_link"), "{interval}");
        }
    }

    #[test]
    fn unchanged_count_near_u64_max_is_422() {
        let node = at_four();
        let posture = node.posture.clone().unwrap();
        let mut st = unchanged(&node, LAST, &posture);
        if let Predicate::Unchanged(u) = &mut st.predicate {
            u.count = u64::MAX;
        }
        assert_eq!(code(run(&node, &st)), "bad_statement");
    }

    #[test]
    fn next_report_is_accepted() {
        assert!(matches!(
            run(&at_four(), &full(5, Some(LAST))),
            Ok(Outcome::New(_))
        ));
    }

    #[test]
    fn missing_link_is_bad_link() {
        let mut st = full(1, None);
        if let Predicate::Report(r) = &mut st.predicate {
            r.link = None;
        }
        let rej = run(&fresh(), &st).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "bad_link"));
        assert!(
            rej.message.contains("nodeproof-agent run"),
            "{}",
            rej.message
        );
    }

    #[test]
    fn link_naming_another_node_is_bad_link() {
        let mut node = fresh();
        node.name = "node-2".into();
        let rej = run(&node, &full(1, None)).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "bad_link"));
        assert!(rej.message.contains("node-2"), "{}", rej.message);
    }

    #[test]
    fn stored_digest_is_duplicate() {
        let result = decide(
            &at_four(),
            &full(3, Some(LAST)),
            DIGEST,
            NOW,
            &Policy::default(),
            true,
        );
        assert_eq!(result, Ok(Outcome::Duplicate { sequence: 3 }));
    }

    #[test]
    fn last_digest_is_duplicate_even_when_old() {
        let mut node = at_four();
        node.last_digest = Some(DIGEST.into());
        // Too old and skewed: a retry of what is stored is still just a retry.
        let mut st = full(4, None);
        if let Predicate::Report(r) = &mut st.predicate {
            r.scan_time = at(-30 * 24 * 3600);
        }
        assert_eq!(run(&node, &st), Ok(Outcome::Duplicate { sequence: 4 }));
    }

    #[test]
    fn old_sequence_not_stored_is_replay() {
        let rej = run(&at_four(), &full(4, Some(LAST))).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "replay"));
        assert_eq!(rej.last_sequence, Some(4));
        assert_eq!(rej.last_digest.as_deref(), Some(LAST));
        assert!(rej.is_chain_break());
    }

    #[test]
    fn sequence_zero_is_replay() {
        assert_eq!(code(run(&fresh(), &full(0, None))), "replay");
    }

    #[test]
    fn wrong_previous_is_fork() {
        let rej = run(&at_four(), &full(5, Some(DIGEST))).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "chain_fork"));
        assert_eq!(rej.last_sequence, Some(4));
        assert!(rej.is_chain_break());
    }

    #[test]
    fn first_report_with_a_previous_is_fork() {
        assert_eq!(code(run(&fresh(), &full(1, Some(LAST)))), "chain_fork");
    }

    #[test]
    fn skipped_sequence_is_gap() {
        let rej = run(&at_four(), &full(7, Some(LAST))).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "chain_gap"));
        assert!(
            rej.message.contains("2 statement(s) are missing"),
            "{}",
            rej.message
        );
        assert_eq!(rej.last_digest.as_deref(), Some(LAST));
        assert!(rej.is_chain_break());
    }

    #[test]
    fn unchanged_matching_last_full_is_accepted() {
        let node = at_four();
        let posture = node.posture.clone().unwrap();
        let Ok(Outcome::New(acc)) = run(&node, &unchanged(&node, LAST, &posture)) else {
            panic!("notice refused");
        };
        assert!(matches!(acc.kind, AcceptedKind::Unchanged { count: 1, .. }));
    }

    #[test]
    fn unchanged_with_other_since_is_unknown_base() {
        let node = at_four();
        let posture = node.posture.clone().unwrap();
        let rej = run(&node, &unchanged(&node, DIGEST, &posture)).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "unknown_base"));
        assert!(!rej.is_chain_break());
    }

    #[test]
    fn unchanged_with_other_posture_is_unknown_base() {
        let node = at_four();
        assert_eq!(
            code(run(&node, &unchanged(&node, LAST, &"ff".repeat(32)))),
            "unknown_base"
        );
    }

    #[test]
    fn unchanged_without_any_full_report_is_unknown_base() {
        let node = fresh();
        assert_eq!(
            code(run(&node, &unchanged(&node, LAST, &"ff".repeat(32)))),
            "unknown_base"
        );
    }

    fn notice_mut(st: &mut Statement) -> &mut Unchanged {
        match &mut st.predicate {
            Predicate::Unchanged(u) => u,
            Predicate::Report(_) => panic!("not a notice"),
        }
    }

    /// Node at_four after notices 5..=7 of report 4's run: the last stored is notice 7.
    fn in_a_run() -> NodeRecord {
        let mut node = at_four();
        node.last_sequence = 7;
        node.last_digest = Some(NOTICE.into());
        node
    }

    #[test]
    fn a_later_notice_of_a_run_links_to_the_runs_report() {
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let st = unchanged(&node, LAST, &posture);
        assert_eq!(st.link().unwrap().previous.as_deref(), Some(LAST));
        let Ok(Outcome::New(acc)) =
            decide(&node, &st, &"ee".repeat(32), NOW, &Policy::default(), false)
        else {
            panic!("notice refused");
        };
        assert_eq!(acc.previous.as_deref(), Some(LAST));
        assert!(matches!(acc.kind, AcceptedKind::Unchanged { count: 4, .. }));
    }

    #[test]
    fn a_notice_linked_to_the_notice_before_it_is_a_fork() {
        // The old rule (and an agent from before it): previous = the last notice, which the
        // collector replaces, so the stored chain would name a statement it does not keep.
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let mut st = unchanged(&node, LAST, &posture);
        notice_mut(&mut st).link.previous = Some(NOTICE.into());
        let rej = decide(&node, &st, &"ee".repeat(32), NOW, &Policy::default(), false).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "chain_fork"));
        assert!(rej.message.contains("upgrade the agent"), "{}", rej.message);
        assert!(rej.message.contains(LAST), "{}", rej.message);
    }

    #[test]
    fn a_notice_linked_to_nothing_is_a_fork() {
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let mut st = unchanged(&node, LAST, &posture);
        notice_mut(&mut st).link.previous = None;
        assert_eq!(code(run(&node, &st)), "chain_fork");
    }

    #[test]
    fn a_notice_that_claims_more_scans_than_its_sequence_allows_is_bad_link() {
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        for count in [3, 5, 1000] {
            let mut st = unchanged(&node, LAST, &posture);
            notice_mut(&mut st).count = count;
            let rej = run(&node, &st).unwrap_err();
            assert_eq!((rej.status, rej.code), (422, "bad_link"), "count {count}");
            assert!(rej.message.contains("stands for 4"), "{}", rej.message);
        }
    }

    #[test]
    fn a_notice_that_skips_sequences_is_a_gap() {
        // The old collector's stored chain: notice 3, then notice 9 naming notice 8.
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let mut st = unchanged(&node, LAST, &posture);
        let u = notice_mut(&mut st);
        u.link.sequence = 13;
        u.count = 9;
        assert_eq!(code(run(&node, &st)), "chain_gap");
    }

    #[test]
    fn a_notice_after_an_old_style_notice_is_accepted() {
        // An agent upgraded in the middle of a run: the stored notice 7 linked to notice
        // 6 (old rule); the next notice needs only previous == since.
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let st = unchanged(&node, LAST, &posture);
        assert!(matches!(run(&node, &st), Ok(Outcome::New(_))));
    }

    #[test]
    fn a_full_report_after_a_run_links_to_the_runs_last_notice() {
        let node = in_a_run();
        assert!(matches!(
            run(&node, &full(8, Some(NOTICE))),
            Ok(Outcome::New(_))
        ));
        // Linking to the run's report instead skips the stored notice: a fork.
        let rej = run(&node, &full(8, Some(LAST))).unwrap_err();
        assert_eq!((rej.status, rej.code), (409, "chain_fork"));
    }

    #[test]
    fn a_notice_whose_since_sequence_is_not_its_reports_is_unknown_base() {
        let node = in_a_run();
        let posture = node.posture.clone().unwrap();
        let mut st = unchanged(&node, LAST, &posture);
        let u = notice_mut(&mut st);
        u.since_sequence = 5;
        u.count = 3;
        assert_eq!(code(run(&node, &st)), "unknown_base");
    }

    fn with_scan(mut st: Statement, offset: i64) -> Statement {
        if let Predicate::Report(r) = &mut st.predicate {
            r.scan_time = at(offset);
        }
        st
    }

    #[test]
    fn scan_time_ahead_is_clock_skew() {
        let rej = run(&fresh(), &with_scan(full(1, None), 301)).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "clock_skew"));
        // Within the skew is fine.
        assert!(run(&fresh(), &with_scan(full(1, None), 300)).is_ok());
    }

    #[test]
    fn scan_time_before_previous_is_clock_skew() {
        // The previous scan was at -300; more than 5 minutes before it is refused.
        let rej = run(&at_four(), &with_scan(full(5, Some(LAST)), -601)).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "clock_skew"));
        assert!(rej.message.contains("went backwards"), "{}", rej.message);
        assert!(run(&at_four(), &with_scan(full(5, Some(LAST)), -600)).is_ok());
    }

    #[test]
    fn late_delivery_in_order_is_fine() {
        // Spooled for an hour: old, but after its predecessor.
        let mut node = at_four();
        node.last_scan_time = Some(at(-7200));
        assert!(run(&node, &with_scan(full(5, Some(LAST)), -3600)).is_ok());
    }

    #[test]
    fn scan_older_than_max_age_is_too_old() {
        let rej = run(&fresh(), &with_scan(full(1, None), -8 * 24 * 3600)).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "too_old"));
        assert!(rej.message.contains("--max-age"), "{}", rej.message);
    }

    #[test]
    fn unparseable_scan_time_is_bad_statement() {
        let mut st = full(1, None);
        if let Predicate::Report(r) = &mut st.predicate {
            r.scan_time = "yesterday".into();
        }
        let rej = run(&fresh(), &st).unwrap_err();
        assert_eq!((rej.status, rej.code), (422, "bad_statement"));
    }

    #[test]
    fn chain_checks_come_before_clock_checks() {
        // A replayed report that is also skewed is reported as the replay.
        assert_eq!(
            code(run(&at_four(), &with_scan(full(2, Some(LAST)), 3600))),
            "replay"
        );
    }

    #[test]
    fn stored_check_is_needed_only_behind_the_chain() {
        let node = at_four();
        assert!(needs_stored_check(&node, &full(3, None), DIGEST));
        assert!(!needs_stored_check(&node, &full(3, None), LAST));
        assert!(!needs_stored_check(&node, &full(5, Some(LAST)), DIGEST));
    }

    #[test]
    fn advance_moves_the_chain() {
        let mut node = at_four();
        let Ok(Outcome::New(acc)) = run(&node, &full(5, Some(LAST))) else {
            panic!("refused");
        };
        advance(&mut node, &acc);
        assert_eq!(node.last_sequence, 5);
        assert_eq!(node.last_digest.as_deref(), Some(DIGEST));
        assert_eq!(node.last_full_digest.as_deref(), Some(DIGEST));
        assert_eq!(node.failing, vec!["4.2.1".to_string()]);
        // The same statement again is now a duplicate; the next one must chain to it.
        assert_eq!(
            run(&node, &full(5, Some(LAST))),
            Ok(Outcome::Duplicate { sequence: 5 })
        );
        let other = "ee".repeat(32);
        let next = decide(
            &node,
            &full(6, Some(LAST)),
            &other,
            NOW,
            &Policy::default(),
            false,
        );
        assert_eq!(code(next), "chain_fork");
        let next = decide(
            &node,
            &full(6, Some(DIGEST)),
            &other,
            NOW,
            &Policy::default(),
            false,
        );
        assert!(matches!(next, Ok(Outcome::New(_))));
    }
}
