//! The chain decisions, pure: whether a scan becomes a full report or an [`Unchanged`]
//! notice, where a new statement goes in the node's chain, which spooled statements to drop
//! when the spool is full, which go with one that is refused, and how to re-link a
//! statement (sequence, `previous`, `since`) after one before it left the spool undelivered
//! or the collector said its chain ends elsewhere ([`relink`], one statement at the head;
//! [`rechain`], the whole spool at once after a key change).
//!
//! Nothing here touches a file or the network; `spool` does the I/O around these.
//!
//! The chain rule (checked by the collector and by `nodeproof_proto::chain::walk`): every
//! statement's sequence is one more than the statement before it; a full report's
//! `previous` is the statement just before it (which may be a notice), but an unchanged
//! notice's `previous` is its run's full report (`since`) and its `count` is
//! `sequence - since_sequence`. Every notice of a run thus links to the run's full report,
//! and the collector, which keeps only the latest notice of a run, stores a chain with no
//! gap: `F(s) <- N(s+k, count k) <- F(s+k+1)`.
//!
//! Invariant the spool keeps and these functions rely on: every spooled [`Unchanged`]
//! notice's base (`since`) is the nearest full report before it in the spool, or, when no
//! full report precedes it there, a report that already left the spool (delivered). That is
//! true when a statement is built, and every removal below removes a full report only
//! together with the notices that rest on it, so it stays true.

use ed25519_dalek::SigningKey;
use nodeproof_proto::{
    keyid, sha256_hex, sign_statement, Link, Predicate, Report, SignError, Statement, Unchanged,
};
use serde::{Deserialize, Serialize};

use crate::scan;

/// A position in a node's chain: the statement that the next one follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPoint {
    /// 0 before the first statement.
    pub sequence: u64,
    /// The envelope digest of that statement; `None` before the first.
    pub digest: Option<String>,
}

impl ChainPoint {
    /// Before any statement: the next one is sequence 1 with no `previous`.
    pub const GENESIS: ChainPoint = ChainPoint {
        sequence: 0,
        digest: None,
    };
}

/// The last full report built: what an [`Unchanged`] notice points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullRef {
    /// Envelope digest.
    pub digest: String,
    pub sequence: u64,
    /// [`Report::posture_digest`].
    pub posture: String,
}

/// The run of unchanged scans since the last full report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub count: u64,
    pub first_unchanged: String,
}

/// What a scan becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The posture is new (or there is no earlier full report to compare with).
    Full,
    /// The posture is that of `since`; the run's first unchanged scan was at
    /// `first_unchanged`. The notice's `count` comes from its place in the chain
    /// ([`build_statement`]).
    Unchanged {
        since: FullRef,
        first_unchanged: String,
    },
}

/// Full report or unchanged notice: unchanged exactly when `posture` equals the posture of
/// the last full report. A change ends the run; the next unchanged scan starts a new one.
pub fn decide(
    last_full: Option<&FullRef>,
    run: Option<&Run>,
    posture: &str,
    scan_time: &str,
) -> Decision {
    match last_full {
        Some(full) if full.posture == posture => {
            let first_unchanged = match run {
                Some(r) => r.first_unchanged.clone(),
                None => scan_time.to_string(),
            };
            Decision::Unchanged {
                since: full.clone(),
                first_unchanged,
            }
        }
        _ => Decision::Full,
    }
}

/// The link of a statement appended after `pending` statements that follow `base`: the
/// next sequence, and `previous` the statement just before it (what a full report links
/// to; [`build_statement`] points a notice at its run's full report instead).
pub fn next_link(
    base: &ChainPoint,
    pending: usize,
    last_pending_digest: Option<&str>,
    node: &str,
    interval_secs: u64,
) -> Link {
    Link {
        node: node.to_string(),
        sequence: base
            .sequence
            .saturating_add(pending as u64)
            .saturating_add(1),
        previous: match last_pending_digest {
            Some(d) => Some(d.to_string()),
            None => base.digest.clone(),
        },
        interval_secs,
    }
}

/// The statement for a scan: the report with its `link`, or an unchanged notice about the
/// same subjects. A notice links to its run's full report (`previous == since`) and counts
/// the sequences since it (`count == sequence - since_sequence`: the scans it stands for,
/// earlier notices of the run included, which the collector does not keep).
pub fn build_statement(mut report: Report, decision: &Decision, mut link: Link) -> Statement {
    match decision {
        Decision::Full => {
            report.link = Some(link);
            scan::statement(&report)
        }
        Decision::Unchanged {
            since,
            first_unchanged,
        } => {
            let subjects = scan::statement(&report).subject;
            link.previous = Some(since.digest.clone());
            let count = notice_count(link.sequence, since.sequence);
            Statement::unchanged(
                subjects,
                Unchanged {
                    link,
                    scan_time: report.scan_time.clone(),
                    agent_version: report.agent_version.clone(),
                    since: since.digest.clone(),
                    since_sequence: since.sequence,
                    posture: since.posture.clone(),
                    count,
                    first_unchanged: first_unchanged.clone(),
                    summary: report.summary,
                },
            )
        }
    }
}

/// The `count` of a notice at `sequence` in the run of the full report at `since_sequence`:
/// the sequences since that report, this one included. A notice always comes after its
/// report, so this is at least 1; a notice placed wrongly gets 0, which the collector
/// refuses rather than the agent inventing a count.
pub fn notice_count(sequence: u64, since_sequence: u64) -> u64 {
    sequence.saturating_sub(since_sequence)
}

/// Points a notice (when `statement` is one) at its run's full report under the chain rule:
/// `previous = since`, `count = sequence - since_sequence`.
fn link_notice_to_since(statement: &mut Statement) {
    if let Predicate::Unchanged(u) = &mut statement.predicate {
        u.link.previous = Some(u.since.clone());
        u.count = notice_count(u.link.sequence, u.since_sequence);
    }
}

/// What a spooled statement is, as far as the chain cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Full {
        posture: String,
    },
    Unchanged {
        since: String,
        since_sequence: u64,
        posture: String,
        count: u64,
        first_unchanged: String,
    },
}

impl Kind {
    pub fn of(statement: &Statement) -> Kind {
        match &statement.predicate {
            Predicate::Report(r) => Kind::Full {
                posture: r.posture_digest(),
            },
            Predicate::Unchanged(u) => Kind::Unchanged {
                since: u.since.clone(),
                since_sequence: u.since_sequence,
                posture: u.posture.clone(),
                count: u.count,
                first_unchanged: u.first_unchanged.clone(),
            },
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, Kind::Full { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Full { .. } => "report",
            Kind::Unchanged { .. } => "unchanged",
        }
    }
}

fn link_mut(statement: &mut Statement) -> Option<&mut Link> {
    match &mut statement.predicate {
        Predicate::Report(r) => r.link.as_mut(),
        Predicate::Unchanged(u) => Some(&mut u.link),
    }
}

/// A statement read back from the spool, already verified.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub statement: Statement,
    /// The exact envelope bytes on disk.
    pub bytes: Vec<u8>,
    /// The keyid of the key whose signature verified.
    pub signed_by: String,
}

/// A statement after re-chaining.
#[derive(Debug, Clone)]
pub struct Relinked {
    pub statement: Statement,
    pub bytes: Vec<u8>,
    pub digest: String,
    /// False when the statement already stood where it belongs and was signed by `key`:
    /// its bytes are the original ones, byte for byte.
    pub changed: bool,
}

/// Puts `pending` back in line after `base` (used when the signing key changed, to re-sign
/// the whole spool while the old key is still on record): sequence `base + 1, ...`, each
/// full report's `previous` the digest of the one before, each unchanged notice's `since`
/// the (possibly new) digest and sequence of the nearest full report before it in the list
/// (kept when none precedes it there: its report was delivered), its `previous` that same
/// report and its `count` the sequences since it, and every statement signed by `key`. Statements already right are kept byte for byte, so running
/// this twice, or after a crash half-way through, gives the same result.
pub fn rechain(
    base: &ChainPoint,
    pending: Vec<Spooled>,
    key: &SigningKey,
) -> Result<Vec<Relinked>, SignError> {
    let current = keyid(&key.verifying_key());
    let mut out: Vec<Relinked> = Vec::with_capacity(pending.len());
    let mut previous = base.digest.clone();
    let mut sequence = base.sequence;
    let mut last_full: Option<(String, u64)> = None;
    for item in pending {
        sequence = sequence.saturating_add(1);
        let mut statement = item.statement.clone();
        if let Some(link) = link_mut(&mut statement) {
            link.sequence = sequence;
            link.previous = previous.clone();
        }
        if let (Predicate::Unchanged(u), Some((digest, seq))) =
            (&mut statement.predicate, &last_full)
        {
            u.since = digest.clone();
            u.since_sequence = *seq;
        }
        link_notice_to_since(&mut statement);
        let changed = statement != item.statement || item.signed_by != current;
        let (bytes, digest) = if changed {
            let bytes = sign_statement(&statement, key)?.to_json_bytes();
            let digest = sha256_hex(&bytes);
            (bytes, digest)
        } else {
            let digest = sha256_hex(&item.bytes);
            (item.bytes, digest)
        };
        if statement.report().is_some() {
            last_full = Some((digest.clone(), sequence));
        }
        previous = Some(digest.clone());
        out.push(Relinked {
            statement,
            bytes,
            digest,
            changed,
        });
    }
    Ok(out)
}

/// Links one statement at `sequence` after `previous`; a notice is pointed at
/// `acked_full`, the last full report the collector acknowledged, which is what a notice at
/// the head of the spool rests on (unless its posture says otherwise, and then its `since`
/// is left for the collector to judge), and, by the chain rule, links to its `since`
/// (not to `previous`) with `count = sequence - since_sequence`.
pub fn relink(
    statement: &mut Statement,
    sequence: u64,
    previous: Option<String>,
    acked_full: Option<&FullRef>,
) {
    if let Some(link) = link_mut(statement) {
        link.sequence = sequence;
        link.previous = previous;
    }
    if let (Predicate::Unchanged(u), Some(full)) = (&mut statement.predicate, acked_full) {
        if u.posture == full.posture {
            u.since = full.digest.clone();
            u.since_sequence = full.sequence;
        }
    }
    link_notice_to_since(statement);
}

/// Which spooled statements to drop to make room for `need` more, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Indices into the pending list, ascending.
    pub remove: Vec<usize>,
    /// The latest full report had to go although the new statement was to rest on it: the
    /// new statement must be a full report instead.
    pub base_lost: bool,
}

/// Picks the oldest statements to drop, `need` of them, from a spool whose statements are
/// full reports (`true`) or unchanged notices (`false`), oldest first.
///
/// A full report that a remaining notice rests on is skipped (dropping it would leave the
/// notice pointing at a report the collector never gets, refused as `unknown_base`); the
/// collector keeps only the latest notice of a run anyway, so dropping older notices of a
/// run loses nothing it would store. `protect_latest_full` says the statement about to be
/// appended is a notice resting on the latest full report here. Only when nothing else is
/// left (a spool of one) does that report go, and then `base_lost` is set.
pub fn plan_eviction(fulls: &[bool], need: usize, protect_latest_full: bool) -> Eviction {
    let n = fulls.len();
    let latest_full = fulls.iter().rposition(|f| *f);
    let mut removed = vec![false; n];
    let mut count = 0;
    let mut base_lost = false;
    let protected = |i: usize, removed: &[bool]| -> bool {
        if !fulls[i] {
            return false;
        }
        if protect_latest_full && Some(i) == latest_full {
            return true;
        }
        (i + 1..n).take_while(|&j| !fulls[j]).any(|j| !removed[j])
    };
    while count < need {
        let pick = (0..n).find(|&i| !removed[i] && !protected(i, &removed));
        let pick = match pick {
            Some(i) => i,
            None => match (0..n).find(|&i| !removed[i]) {
                Some(i) => {
                    if Some(i) == latest_full {
                        base_lost = true;
                    }
                    i
                }
                None => break,
            },
        };
        removed[pick] = true;
        count += 1;
    }
    Eviction {
        remove: (0..n).filter(|&i| removed[i]).collect(),
        base_lost,
    }
}

/// The statements that go when statement `index` is set aside: a full report takes the
/// notices resting on it (the collector would refuse them as `unknown_base`); a notice
/// goes alone.
pub fn with_dependents(fulls: &[bool], index: usize) -> Vec<usize> {
    if index >= fulls.len() {
        return Vec::new();
    }
    let mut out = vec![index];
    if fulls[index] {
        out.extend((index + 1..fulls.len()).take_while(|&j| !fulls[j]));
    }
    out
}

/// The notices whose nearest full report before them in the list has another posture:
/// their own report is gone (damaged, set aside), so the collector would refuse them.
pub fn orphans(kinds: &[Kind]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut base_posture: Option<&str> = None;
    for (i, k) in kinds.iter().enumerate() {
        match k {
            Kind::Full { posture } => base_posture = Some(posture),
            Kind::Unchanged { posture, .. } => {
                if base_posture.is_some_and(|p| p != posture) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// The notices that share the base of notice `index`: every notice between the full
/// report before it (or the start) and the full report after it (or the end). When the
/// collector does not know that base (`unknown_base`), none of them can be delivered.
pub fn same_base(fulls: &[bool], index: usize) -> Vec<usize> {
    if index >= fulls.len() || fulls[index] {
        return Vec::new();
    }
    let start = fulls[..index].iter().rposition(|f| *f).map_or(0, |f| f + 1);
    (start..fulls.len()).take_while(|&j| !fulls[j]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::verify;

    fn full_ref(posture: &str) -> FullRef {
        FullRef {
            digest: "d".repeat(64),
            sequence: 7,
            posture: posture.to_string(),
        }
    }

    #[test]
    fn no_earlier_report_means_full() {
        assert_eq!(decide(None, None, "p", "t1"), Decision::Full);
    }

    #[test]
    fn same_posture_means_unchanged_starting_a_run() {
        let base = full_ref("p");
        assert_eq!(
            decide(Some(&base), None, "p", "t1"),
            Decision::Unchanged {
                since: base.clone(),
                first_unchanged: "t1".into()
            }
        );
    }

    #[test]
    fn a_run_keeps_its_first_time() {
        let base = full_ref("p");
        let run = Run {
            count: 4,
            first_unchanged: "t0".into(),
        };
        assert_eq!(
            decide(Some(&base), Some(&run), "p", "t5"),
            Decision::Unchanged {
                since: base,
                first_unchanged: "t0".into()
            }
        );
    }

    #[test]
    fn a_change_ends_the_run() {
        let base = full_ref("p");
        let run = Run {
            count: 4,
            first_unchanged: "t0".into(),
        };
        assert_eq!(decide(Some(&base), Some(&run), "q", "t5"), Decision::Full);
    }

    #[test]
    fn notice_count_is_the_sequences_since_the_report() {
        assert_eq!(notice_count(12, 1), 11);
        assert_eq!(notice_count(2, 1), 1);
        // Misplaced (before its report): 0, which the collector refuses.
        assert_eq!(notice_count(3, 7), 0);
        assert_eq!(notice_count(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn next_link_follows_base_and_pending() {
        let l = next_link(&ChainPoint::GENESIS, 0, None, "n", 300);
        assert_eq!((l.sequence, l.previous), (1, None));
        let base = ChainPoint {
            sequence: 9,
            digest: Some("b".into()),
        };
        let l = next_link(&base, 0, None, "n", 300);
        assert_eq!((l.sequence, l.previous.as_deref()), (10, Some("b")));
        let l = next_link(&base, 3, Some("t"), "n", 300);
        assert_eq!((l.sequence, l.previous.as_deref()), (13, Some("t")));
        assert_eq!((l.node.as_str(), l.interval_secs), ("n", 300));
    }

    fn report(scan_time: &str) -> Report {
        crate::daemon::testutil::report(scan_time, 0)
    }

    #[test]
    fn full_statement_carries_the_link() {
        let link = next_link(&ChainPoint::GENESIS, 0, None, "n", 60);
        let s = build_statement(report("t"), &Decision::Full, link.clone());
        assert_eq!(s.link(), Some(&link));
        assert!(s.report().is_some());
    }

    #[test]
    fn unchanged_statement_points_at_its_base() {
        // Three statements after report 7: the last of them is a notice, sequence 10.
        let base = full_ref("p");
        let point = ChainPoint {
            sequence: 7,
            digest: Some(base.digest.clone()),
        };
        let link = next_link(&point, 2, Some("x"), "n", 60);
        let s = build_statement(
            report("t9"),
            &Decision::Unchanged {
                since: base.clone(),
                first_unchanged: "t8".into(),
            },
            link.clone(),
        );
        assert_eq!(s.predicate_type, nodeproof_proto::UNCHANGED_PREDICATE_TYPE);
        let Predicate::Unchanged(u) = &s.predicate else {
            panic!("not a notice")
        };
        assert_eq!(u.link.sequence, 10);
        assert_eq!(
            u.link.previous.as_deref(),
            Some(base.digest.as_str()),
            "a notice links to its run's full report, not to the statement before it"
        );
        assert_eq!(u.since, base.digest);
        assert_eq!(u.since_sequence, 7);
        assert_eq!(u.posture, "p");
        assert_eq!((u.count, u.first_unchanged.as_str()), (3, "t8"));
        assert_eq!(u.scan_time, "t9");
        assert_eq!(s.subject, scan::statement(&report("t9")).subject);
    }

    /// Builds a spooled chain after `base` from kinds (true = full).
    fn chain_of(base: &ChainPoint, fulls: &[bool], key: &SigningKey) -> Vec<Spooled> {
        let mut out: Vec<Spooled> = Vec::new();
        let mut last_full: Option<FullRef> = None;
        let mut run: Option<Run> = None;
        for (i, full) in fulls.iter().enumerate() {
            let r = report(&format!("2026-01-01T00:{i:02}:00Z"));
            let posture = r.posture_digest();
            let decision = if *full {
                Decision::Full
            } else {
                decide(last_full.as_ref(), run.as_ref(), &posture, &r.scan_time)
            };
            let link = next_link(
                base,
                out.len(),
                out.last().map(|s| sha256_hex(&s.bytes)).as_deref(),
                "n",
                60,
            );
            let seq = link.sequence;
            let st = build_statement(r, &decision, link);
            let bytes = sign_statement(&st, key).unwrap().to_json_bytes();
            match &decision {
                Decision::Full => {
                    last_full = Some(FullRef {
                        digest: sha256_hex(&bytes),
                        sequence: seq,
                        posture,
                    });
                    run = None;
                }
                Decision::Unchanged {
                    first_unchanged, ..
                } => {
                    run = Some(Run {
                        count: run.as_ref().map_or(1, |r| r.count + 1),
                        first_unchanged: first_unchanged.clone(),
                    })
                }
            }
            out.push(Spooled {
                statement: st,
                bytes,
                signed_by: keyid(&key.verifying_key()),
            });
        }
        out
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn check_chain(base: &ChainPoint, out: &[Relinked], key: &SigningKey) {
        let mut previous = base.digest.clone();
        let mut last_full: Option<(String, u64)> = None;
        for (i, r) in out.iter().enumerate() {
            let v = verify(&r.bytes, &key.verifying_key()).expect("re-signed statement verifies");
            assert_eq!(v.statement, r.statement);
            assert_eq!(r.digest, sha256_hex(&r.bytes));
            let link = v.statement.link().unwrap();
            assert_eq!(link.sequence, base.sequence + i as u64 + 1);
            match &v.statement.predicate {
                Predicate::Report(_) => {
                    assert_eq!(link.previous, previous);
                    last_full = Some((r.digest.clone(), link.sequence));
                }
                Predicate::Unchanged(u) => {
                    if let Some((d, s)) = &last_full {
                        assert_eq!((&u.since, u.since_sequence), (d, *s));
                    }
                    assert_eq!(link.previous.as_ref(), Some(&u.since));
                    assert_eq!(u.count, link.sequence - u.since_sequence);
                }
            }
            previous = Some(r.digest.clone());
        }
    }

    #[test]
    fn rechain_of_a_correct_chain_keeps_every_byte() {
        let k = key(1);
        let spooled = chain_of(&ChainPoint::GENESIS, &[true, false, false, true], &k);
        let before: Vec<Vec<u8>> = spooled.iter().map(|s| s.bytes.clone()).collect();
        let out = rechain(&ChainPoint::GENESIS, spooled, &k).unwrap();
        assert!(out.iter().all(|r| !r.changed));
        let after: Vec<Vec<u8>> = out.iter().map(|r| r.bytes.clone()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn rechain_after_a_dropped_head_fixes_sequence_previous_and_since() {
        let k = key(1);
        let mut spooled = chain_of(&ChainPoint::GENESIS, &[true, true, false, false], &k);
        let old_full = sha256_hex(&spooled[1].bytes);
        spooled.remove(0);
        let out = rechain(&ChainPoint::GENESIS, spooled, &k).unwrap();
        assert!(out.iter().all(|r| r.changed));
        check_chain(&ChainPoint::GENESIS, &out, &k);
        let Predicate::Unchanged(u) = &out[2].statement.predicate else {
            panic!()
        };
        assert_ne!(u.since, old_full, "since follows the re-signed full report");
        assert_eq!(u.since, out[0].digest);
        assert_eq!(u.since_sequence, 1);
    }

    #[test]
    fn rechain_after_the_collectors_last_point() {
        let k = key(1);
        let spooled = chain_of(&ChainPoint::GENESIS, &[true, false, true], &k);
        let base = ChainPoint {
            sequence: 41,
            digest: Some("c".repeat(64)),
        };
        let out = rechain(&base, spooled, &k).unwrap();
        check_chain(&base, &out, &k);
        assert_eq!(out[0].statement.link().unwrap().sequence, 42);
    }

    #[test]
    fn rechain_keeps_the_base_of_notices_whose_report_was_delivered() {
        let k = key(1);
        let all = chain_of(&ChainPoint::GENESIS, &[true, false, false], &k);
        let base_digest = sha256_hex(&all[0].bytes);
        let base = ChainPoint {
            sequence: 1,
            digest: Some(base_digest.clone()),
        };
        // The second notice is set aside; the third moves up to sequence 2.
        let pending = vec![all[2].clone()];
        let out = rechain(&base, pending, &k).unwrap();
        check_chain(&base, &out, &k);
        let Predicate::Unchanged(u) = &out[0].statement.predicate else {
            panic!()
        };
        assert_eq!(
            (u.since.as_str(), u.since_sequence),
            (base_digest.as_str(), 1)
        );
        assert_eq!(
            (u.link.previous.as_deref(), u.count),
            (Some(base_digest.as_str()), 1),
            "the notice links to its report and counts the sequences it stands for"
        );
    }

    #[test]
    fn rechain_re_signs_with_a_new_key() {
        let old = key(1);
        let new = key(2);
        let spooled = chain_of(&ChainPoint::GENESIS, &[true, false], &old);
        let out = rechain(&ChainPoint::GENESIS, spooled, &new).unwrap();
        assert!(out.iter().all(|r| r.changed));
        check_chain(&ChainPoint::GENESIS, &out, &new);
        assert!(verify(&out[0].bytes, &old.verifying_key()).is_err());
    }

    #[test]
    fn rechain_is_idempotent_after_a_crash_half_way() {
        let k = key(1);
        let mut spooled = chain_of(&ChainPoint::GENESIS, &[true, true, false, false, true], &k);
        spooled.remove(0);
        let full = rechain(&ChainPoint::GENESIS, spooled.clone(), &k).unwrap();
        // Crash after the first two files were rewritten.
        let mut mixed: Vec<Spooled> = full[..2]
            .iter()
            .map(|r| Spooled {
                statement: r.statement.clone(),
                bytes: r.bytes.clone(),
                signed_by: keyid(&k.verifying_key()),
            })
            .collect();
        mixed.extend(spooled[2..].iter().cloned());
        let again = rechain(&ChainPoint::GENESIS, mixed, &k).unwrap();
        let a: Vec<&[u8]> = full.iter().map(|r| r.bytes.as_slice()).collect();
        let b: Vec<&[u8]> = again.iter().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(a, b);
        assert!(!again[0].changed && !again[1].changed && again[2].changed);
    }

    #[test]
    fn relink_moves_a_statement_and_points_a_notice_at_the_acknowledged_report() {
        let k = key(1);
        let spooled = chain_of(&ChainPoint::GENESIS, &[true, false], &k);
        let mut notice = spooled[1].statement.clone();
        let posture = report("t").posture_digest();
        let acked = FullRef {
            digest: "e".repeat(64),
            sequence: 40,
            posture: posture.clone(),
        };
        relink(&mut notice, 41, Some("e".repeat(64)), Some(&acked));
        let Predicate::Unchanged(u) = &notice.predicate else {
            panic!()
        };
        assert_eq!(
            (u.link.sequence, u.link.previous.clone()),
            (41, Some("e".repeat(64)))
        );
        assert_eq!(
            (u.since.as_str(), u.since_sequence, u.count),
            (acked.digest.as_str(), 40, 1)
        );
        // A report of another posture is not this notice's base: left alone.
        let mut other = spooled[1].statement.clone();
        let stranger = FullRef {
            posture: "other".into(),
            ..acked
        };
        relink(&mut other, 41, None, Some(&stranger));
        let Predicate::Unchanged(u) = &other.predicate else {
            panic!()
        };
        assert_eq!(u.since, sha256_hex(&spooled[0].bytes));
        // A full report only moves.
        let mut full = spooled[0].statement.clone();
        relink(&mut full, 7, Some("p".into()), Some(&stranger));
        assert_eq!(full.link().unwrap().sequence, 7);
        assert_eq!(full.report().unwrap().posture_digest(), posture);
    }

    #[test]
    fn eviction_drops_oldest_first() {
        let e = plan_eviction(&[true, true, true, true], 2, false);
        assert_eq!(e.remove, vec![0, 1]);
        assert!(!e.base_lost);
        let e = plan_eviction(&[false, false, true], 1, false);
        assert_eq!(e.remove, vec![0]);
    }

    #[test]
    fn eviction_keeps_a_report_that_notices_rest_on() {
        // F U U U: the notices go, oldest first, the report stays.
        let e = plan_eviction(&[true, false, false, false], 2, false);
        assert_eq!(e.remove, vec![1, 2]);
        // Once its notices are gone the report is fair game.
        let e = plan_eviction(&[true, false, true, false], 2, false);
        assert_eq!(e.remove, vec![0, 1]);
    }

    #[test]
    fn eviction_keeps_the_base_of_the_statement_to_come() {
        let e = plan_eviction(&[true, true], 1, true);
        assert_eq!(e.remove, vec![0]);
        let e = plan_eviction(&[false, true], 1, true);
        assert_eq!(e.remove, vec![0]);
        // A spool of one: the base must go, the new statement becomes a full report.
        let e = plan_eviction(&[true], 1, true);
        assert_eq!(e.remove, vec![0]);
        assert!(e.base_lost);
        let e = plan_eviction(&[true, false], 2, true);
        assert_eq!(e.remove, vec![0, 1]);
        assert!(e.base_lost);
    }

    #[test]
    fn eviction_of_more_than_there_is_stops() {
        let e = plan_eviction(&[false, true], 5, false);
        assert_eq!(e.remove, vec![0, 1]);
        assert!(plan_eviction(&[], 1, true).remove.is_empty());
    }

    #[test]
    fn a_rejected_report_takes_its_notices() {
        let fulls = [true, false, false, true, false];
        assert_eq!(with_dependents(&fulls, 0), vec![0, 1, 2]);
        assert_eq!(with_dependents(&fulls, 1), vec![1]);
        assert_eq!(with_dependents(&fulls, 3), vec![3, 4]);
        assert!(with_dependents(&fulls, 9).is_empty());
    }

    fn full(p: &str) -> Kind {
        Kind::Full { posture: p.into() }
    }

    fn notice(p: &str) -> Kind {
        Kind::Unchanged {
            since: "s".into(),
            since_sequence: 1,
            posture: p.into(),
            count: 1,
            first_unchanged: "t".into(),
        }
    }

    #[test]
    fn notices_without_their_report_are_orphans() {
        // The report of posture b was lost between the first report and its notices.
        let kinds = [
            full("a"),
            notice("a"),
            notice("b"),
            notice("b"),
            full("c"),
            notice("c"),
        ];
        assert_eq!(orphans(&kinds), vec![2, 3]);
        // Notices before any spooled report rest on a delivered one: not for us to judge.
        assert!(orphans(&[notice("x"), full("y"), notice("y")]).is_empty());
    }

    #[test]
    fn notices_of_an_unknown_base_go_together() {
        let fulls = [false, false, true, false];
        assert_eq!(same_base(&fulls, 0), vec![0, 1]);
        assert_eq!(same_base(&fulls, 3), vec![3]);
        assert!(same_base(&fulls, 2).is_empty());
    }
}
