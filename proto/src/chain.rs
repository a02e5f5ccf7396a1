//! The rule that makes a node's *stored* history verifiable: every stored statement links to
//! the stored statement before it, with no gap, even though the collector keeps only the
//! latest unchanged notice of a run.
//!
//! A full report links to the statement just before it (`previous`) at `sequence + 1`. An
//! unchanged notice links to the full report its run matches: `previous == since`, and its
//! sequence is `since_sequence + count`, so the notices it supersedes (the earlier scans
//! of the same run, each of which also linked to that full report) leave no hole: the last
//! notice of a run signs for all of them. The collector stores a notice in place of the
//! earlier notice of its run; everything it stores then forms one unbroken chain, which
//! [`walk`] checks. Pure: the caller verifies signatures and computes digests first.

use serde::{Deserialize, Serialize};

use crate::{Predicate, Statement};

/// One stored statement, as far as the chain is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The statement's envelope digest (SHA-256 of its evidence form, lowercase hex).
    pub digest: String,
    pub sequence: u64,
    /// `link.previous`: `None` only for sequence 1.
    pub previous: Option<String>,
    pub kind: LinkKind,
}

impl ChainLink {
    /// The link of a parsed (and already verified) statement whose envelope digest is
    /// `digest`, as signed; `None` when the statement carries no link (a report from
    /// `scan --format dsse`, which is not part of any chain).
    pub fn from_statement(digest: &str, statement: &Statement) -> Option<ChainLink> {
        let link = statement.link()?;
        let kind = match &statement.predicate {
            Predicate::Report(_) => LinkKind::Full,
            Predicate::Unchanged(u) => LinkKind::Unchanged {
                since: u.since.clone(),
                since_sequence: u.since_sequence,
                count: u.count,
            },
        };
        Some(ChainLink {
            digest: digest.to_string(),
            sequence: link.sequence,
            previous: link.previous.clone(),
            kind,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LinkKind {
    Full,
    Unchanged {
        since: String,
        since_sequence: u64,
        count: u64,
    },
}

/// Where a walk starts: the statement just before the first one given (when a range of a
/// longer chain is checked), or `None` when the first one given must be sequence 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub digest: String,
    pub sequence: u64,
}

/// A fault in a stored chain. Each names the sequence (and digest) at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum ChainFault {
    /// The first statement is not sequence 1 (or has a `previous`) and no anchor was given.
    #[error("the chain does not start at sequence 1: the first statement is sequence {sequence} ({digest})")]
    BadStart { sequence: u64, digest: String },
    /// Sequences do not follow: statements are missing between `after` and `next`.
    #[error("gap: after sequence {after} the next statement is sequence {next} ({digest}); {missing} missing")]
    Gap {
        after: u64,
        next: u64,
        missing: u64,
        digest: String,
    },
    /// Two statements claim the same place, or the order goes backwards.
    #[error("fork or reordering: sequence {sequence} ({digest}) comes after sequence {after}")]
    Fork {
        after: u64,
        sequence: u64,
        digest: String,
    },
    /// `previous` does not name the statement stored before it.
    #[error("broken link at sequence {sequence} ({digest}): previous is {found:?}, the statement before it is {expected}")]
    BrokenLink {
        sequence: u64,
        digest: String,
        expected: String,
        found: Option<String>,
    },
    /// An unchanged notice whose `since`, `since_sequence` or `count` does not match the
    /// full report before it.
    #[error("unchanged notice at sequence {sequence} ({digest}) does not match its run: {why}")]
    BadRun {
        sequence: u64,
        digest: String,
        why: String,
    },
    /// The same digest twice.
    #[error("statement {digest} is stored twice")]
    Duplicate { digest: String },
}

/// Checks that `links` (in stored order) form one unbroken chain from `anchor`, and
/// returns every fault found (empty when the chain holds). A notice must follow a full
/// report (or the anchor, when the anchor is its run's full report) and cover the
/// sequences since it exactly.
pub fn walk(anchor: Option<&Anchor>, links: &[ChainLink]) -> Vec<ChainFault> {
    let mut faults = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // The statement before the current one: (digest, sequence, is_full).
    let mut prev: Option<(String, u64, bool)> =
        anchor.map(|a| (a.digest.clone(), a.sequence, true));
    for l in links {
        if !seen.insert(l.digest.as_str()) {
            faults.push(ChainFault::Duplicate {
                digest: l.digest.clone(),
            });
            continue;
        }
        let Some((pd, ps, prev_full)) = prev.clone() else {
            if l.sequence != 1 || l.previous.is_some() {
                faults.push(ChainFault::BadStart {
                    sequence: l.sequence,
                    digest: l.digest.clone(),
                });
            }
            if let LinkKind::Unchanged { .. } = l.kind {
                faults.push(ChainFault::BadRun {
                    sequence: l.sequence,
                    digest: l.digest.clone(),
                    why: "the chain cannot start with an unchanged notice".into(),
                });
            }
            prev = Some((
                l.digest.clone(),
                l.sequence,
                matches!(l.kind, LinkKind::Full),
            ));
            continue;
        };
        if l.sequence <= ps {
            faults.push(ChainFault::Fork {
                after: ps,
                sequence: l.sequence,
                digest: l.digest.clone(),
            });
            continue;
        }
        if l.previous.as_deref() != Some(pd.as_str()) {
            faults.push(ChainFault::BrokenLink {
                sequence: l.sequence,
                digest: l.digest.clone(),
                expected: pd.clone(),
                found: l.previous.clone(),
            });
        }
        match &l.kind {
            LinkKind::Full => {
                if l.sequence != ps + 1 {
                    faults.push(ChainFault::Gap {
                        after: ps,
                        next: l.sequence,
                        missing: l.sequence - ps - 1,
                        digest: l.digest.clone(),
                    });
                }
            }
            LinkKind::Unchanged {
                since,
                since_sequence,
                count,
            } => {
                let mut why = Vec::new();
                if !prev_full {
                    why.push("it follows another unchanged notice, not a full report".to_string());
                }
                if since != &pd || *since_sequence != ps {
                    why.push(format!(
                        "since is {since} at sequence {since_sequence}, the full report before it is {pd} at sequence {ps}"
                    ));
                }
                if l.sequence != since_sequence.saturating_add(*count) {
                    why.push(format!(
                        "sequence {} is not since_sequence {since_sequence} + count {count}",
                        l.sequence
                    ));
                }
                if *count == 0 {
                    why.push("count is 0".into());
                }
                if !why.is_empty() {
                    faults.push(ChainFault::BadRun {
                        sequence: l.sequence,
                        digest: l.digest.clone(),
                        why: why.join("; "),
                    });
                }
            }
        }
        prev = Some((
            l.digest.clone(),
            l.sequence,
            matches!(l.kind, LinkKind::Full),
        ));
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(d: &str, seq: u64, prev: Option<&str>) -> ChainLink {
        ChainLink {
            digest: d.into(),
            sequence: seq,
            previous: prev.map(Into::into),
            kind: LinkKind::Full,
        }
    }

    fn notice(d: &str, seq: u64, since: &str, since_seq: u64) -> ChainLink {
        ChainLink {
            digest: d.into(),
            sequence: seq,
            previous: Some(since.into()),
            kind: LinkKind::Unchanged {
                since: since.into(),
                since_sequence: since_seq,
                count: seq - since_seq,
            },
        }
    }

    #[test]
    fn a_chain_with_collapsed_runs_holds() {
        // F1, 11 unchanged scans (only the last notice stored), F13, 3 unchanged, F17.
        let links = vec![
            full("f1", 1, None),
            notice("n12", 12, "f1", 1),
            full("f13", 13, Some("n12")),
            notice("n16", 16, "f13", 13),
            full("f17", 17, Some("n16")),
        ];
        assert_eq!(walk(None, &links), vec![]);
    }

    #[test]
    fn a_removed_full_report_is_a_gap() {
        let links = vec![
            full("f1", 1, None),
            full("f2", 2, Some("f1")),
            full("f4", 4, Some("f3")),
        ];
        let faults = walk(None, &links);
        assert!(matches!(
            faults[0],
            ChainFault::BrokenLink { sequence: 4, .. }
        ));
        assert!(matches!(
            faults[1],
            ChainFault::Gap {
                after: 2,
                next: 4,
                missing: 1,
                ..
            }
        ));
    }

    #[test]
    fn a_notice_that_claims_more_scans_than_its_sequence_is_a_bad_run() {
        let mut n = notice("n5", 5, "f1", 1);
        n.kind = LinkKind::Unchanged {
            since: "f1".into(),
            since_sequence: 1,
            count: 7,
        };
        let faults = walk(None, &[full("f1", 1, None), n]);
        assert!(matches!(
            faults[..],
            [ChainFault::BadRun { sequence: 5, .. }]
        ));
    }

    #[test]
    fn reordered_statements_are_a_fork() {
        let links = vec![
            full("f1", 1, None),
            full("f3", 3, Some("f2")),
            full("f2", 2, Some("f1")),
        ];
        let faults = walk(None, &links);
        assert!(faults.iter().any(|f| matches!(
            f,
            ChainFault::Fork {
                after: 3,
                sequence: 2,
                ..
            }
        )));
    }

    #[test]
    fn a_range_starts_from_its_anchor() {
        let anchor = Anchor {
            digest: "f9".into(),
            sequence: 9,
        };
        let links = vec![notice("n14", 14, "f9", 9), full("f15", 15, Some("n14"))];
        assert_eq!(walk(Some(&anchor), &links), vec![]);
        let faults = walk(None, &links);
        assert!(matches!(
            faults[0],
            ChainFault::BadStart { sequence: 14, .. }
        ));
    }

    #[test]
    fn two_notices_of_one_run_stored_is_a_bad_run() {
        let links = vec![
            full("f1", 1, None),
            notice("n2", 2, "f1", 1),
            notice("n3", 3, "f1", 1),
        ];
        let faults = walk(None, &links);
        assert!(matches!(
            faults[..],
            [ChainFault::BrokenLink { .. }, ChainFault::BadRun { .. }]
        ));
    }
}
