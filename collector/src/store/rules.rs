//! The store's pure rules, shared by both backends: each backend reads the rows (with the
//! locking its database needs) and asks these functions what to do, so the rules and
//! their messages cannot drift apart between SQLite and PostgreSQL. Nothing here touches
//! a database.

use std::collections::HashMap;

use nodeproof_proto::Status;

use super::sqlite::cis_order;
use super::{
    Accepted, AcceptedKind, CheckState, ExceptionRecord, NodeCounts, NodeRecord, NodeStatus,
    PendingClaim, StoreError, StoreResult,
};

/// What `commit` needs to know about a node before adding a statement to its chain (on
/// PostgreSQL read under the node's row lock).
pub(super) struct Head {
    pub(super) status: NodeStatus,
    pub(super) key_id: String,
    pub(super) last_sequence: u64,
    pub(super) last_digest: Option<String>,
    pub(super) last_full_digest: Option<String>,
    pub(super) last_full_sequence: Option<u64>,
    pub(super) last_run_digest: Option<String>,
    pub(super) summary: Option<String>,
    pub(super) posture: Option<String>,
    pub(super) failing_any: bool,
}

/// The re-checks at commit. The acceptance rules were decided before the batch; these
/// keep the chain sound if something changed since (a revocation, a rotation, a
/// concurrent duplicate, another collector extending the chain): the node is approved,
/// still has the key the statement was accepted under, is not past its sequence, and the
/// statement is the chain's next step.
pub(super) fn check_commit(head: &Head, a: &Accepted) -> StoreResult<()> {
    if head.status != NodeStatus::Approved {
        return Err(StoreError::Conflict(format!(
            "node {} is {}: report {} cannot be stored; nothing committed",
            a.node,
            head.status.as_str(),
            a.digest
        )));
    }
    if head.key_id != a.key_id {
        return Err(StoreError::Conflict(format!(
            "report {} was accepted under key {}, but node {} now has key {}; nothing committed",
            a.digest, a.key_id, a.node, head.key_id
        )));
    }
    if a.sequence <= head.last_sequence {
        return Err(StoreError::Conflict(format!(
            "report {} has sequence {} but node {} is already at {}; nothing committed",
            a.digest, a.sequence, a.node, head.last_sequence
        )));
    }
    check_chain_step(head, a)
}

/// The chain rule, re-checked at commit against the node's row (the same rule as
/// `accept::decide` and `accept::check_notice`; see "The chain" in docs/collector.md):
/// the statement is the node's next (`last_sequence + 1`); a full report links to the
/// last stored statement; an unchanged notice links to the node's last full report
/// (`previous == since == last_full_digest`) and counts the sequences since it (`count ==
/// sequence - last_full_sequence`). So whatever is stored links up with no gap, even when
/// a notice then replaces the previous notice of its run, and however many collectors
/// commit.
pub(super) fn check_chain_step(head: &Head, a: &Accepted) -> StoreResult<()> {
    let conflict = |why: String| {
        Err(StoreError::Conflict(format!(
            "statement {} (node {}, sequence {}) {why}; nothing committed",
            a.digest, a.node, a.sequence
        )))
    };
    if a.sequence != head.last_sequence.saturating_add(1) {
        return conflict(format!(
            "does not follow the node's last sequence {}",
            head.last_sequence
        ));
    }
    match &a.kind {
        AcceptedKind::Full { .. } => {
            if a.previous != head.last_digest {
                return conflict(format!(
                    "names previous {} but the node's last statement is {}",
                    a.previous.as_deref().unwrap_or("(none)"),
                    head.last_digest.as_deref().unwrap_or("(none)")
                ));
            }
        }
        AcceptedKind::Unchanged { since, count, .. } => {
            let (Some(full), Some(full_sequence)) =
                (head.last_full_digest.as_deref(), head.last_full_sequence)
            else {
                return conflict("is an unchanged notice but the node has no full report".into());
            };
            if since != full {
                return conflict(format!(
                    "is an unchanged notice of full report {since}, but the node's last full \
                     report is {full}"
                ));
            }
            if a.previous.as_deref() != Some(full) {
                return conflict(format!(
                    "is an unchanged notice naming previous {}, not its run's full report {full}",
                    a.previous.as_deref().unwrap_or("(none)")
                ));
            }
            if *count != a.sequence.saturating_sub(full_sequence) {
                return conflict(format!(
                    "is an unchanged notice counting {count} scan(s) since sequence \
                     {full_sequence}, which its sequence does not allow"
                ));
            }
        }
    }
    Ok(())
}

/// The CIS numbers a full report fails (scored checks that fail or err), in CIS order,
/// once each: the node's `failing` column.
pub(super) fn failing_checks(checks: &[CheckState]) -> Vec<&str> {
    let mut failing: Vec<&str> = checks
        .iter()
        .filter(|c| c.scored && matches!(c.status, Status::Fail | Status::Error))
        .map(|c| c.cis.as_str())
        .collect();
    failing.sort_by(|x, y| cis_order(x, y));
    failing.dedup();
    failing
}

/// Adds `n` of `status` to one CIS number's `check_counts` change `e` (id, [pass, fail,
/// warn, error]); a check counted in (`n > 0`) names the row's id.
pub(super) fn add_check_delta(e: &mut (String, [i64; 4]), id: &str, status: Status, n: i64) {
    if n > 0 {
        e.0 = id.to_owned();
    }
    let slot = match status {
        Status::Pass => 0,
        Status::Fail => 1,
        Status::Warn => 2,
        Status::Error => 3,
    };
    e.1[slot] += n;
}

/// The fleet's node counts, summed from the `node_tally` rows (status, failing_any, n)
/// and then the counts of stale approved nodes.
#[derive(Debug, Default)]
pub(super) struct FleetCounts {
    nodes: NodeCounts,
    ok: u64,
    failing: u64,
}

impl FleetCounts {
    /// One `node_tally` row.
    pub(super) fn add(&mut self, status: NodeStatus, failing_any: bool, n: u64) {
        self.nodes.total += n;
        match status {
            NodeStatus::Approved => {
                self.nodes.approved += n;
                if failing_any {
                    self.failing += n;
                } else {
                    self.ok += n;
                }
            }
            NodeStatus::Pending => self.nodes.pending += n,
            NodeStatus::Revoked => self.nodes.revoked += n,
        }
    }

    /// The counts, given how many approved nodes are stale among those passing
    /// (`stale_ok`) and those failing (`stale_failing`): a stale node is neither
    /// compliant nor failing.
    pub(super) fn finish(self, stale_ok: u64, stale_failing: u64) -> NodeCounts {
        let mut nodes = self.nodes;
        nodes.stale = stale_ok + stale_failing;
        nodes.compliant = self.ok.saturating_sub(stale_ok);
        nodes.failing = self.failing.saturating_sub(stale_failing);
        nodes
    }
}

/// A counter table as `verify_counters` reads it: key, then up to four counts (rows of
/// zeros left out).
pub(super) type CounterRows = HashMap<String, [i64; 4]>;

/// The verdict of `verify_counters`: `node_tally` and `check_counts` as kept against as
/// recomputed from the rows they summarise, and how many nodes have `failing_any` out of
/// step with `failing`.
pub(super) fn counters_verdict(
    tally: (CounterRows, CounterRows),
    counts: (CounterRows, CounterRows),
    wrong_failing_any: i64,
) -> StoreResult<()> {
    let mut problems = Vec::new();
    let (kept, actual) = tally;
    if kept != actual {
        problems.push(format!("node_tally {kept:?} but nodes say {actual:?}"));
    }
    let (kept, actual) = counts;
    if kept != actual {
        problems.push(format!(
            "check_counts {kept:?} but node_checks say {actual:?}"
        ));
    }
    let wrong = wrong_failing_any;
    if wrong != 0 {
        problems.push(format!(
            "{wrong} nodes have failing_any out of step with failing"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "counters out of step: {}",
            problems.join("; ")
        )))
    }
}

/// Enrolling `name` with `key_id` when the name is enrolled already: with another key it
/// is a Conflict; with the same key, whether the token approves it now (a valid token
/// approves a pending node; it never brings back a revoked one).
pub(super) fn enrol_again(
    existing: &NodeRecord,
    name: &str,
    key_id: &str,
    approved: bool,
) -> StoreResult<bool> {
    if existing.key_id != key_id {
        return Err(StoreError::Conflict(format!(
            "node {name} is already enrolled with another key ({}); rotate its key instead \
             of enrolling again",
            existing.key_id
        )));
    }
    Ok(approved && existing.status == NodeStatus::Pending)
}

/// Enrolling a new name with a key that belongs to (or is claimed for) node `owner`.
pub(super) fn enrol_key_taken(key_id: &str, owner: &str) -> StoreError {
    StoreError::Conflict(format!(
        "key {key_id} already belongs to node {owner}; every node needs its own key"
    ))
}

/// Rotating `name` away from `old_key_id`: the node must still have that key.
pub(super) fn check_rotation(node: &NodeRecord, name: &str, old_key_id: &str) -> StoreResult<()> {
    if node.key_id != old_key_id {
        return Err(StoreError::Conflict(format!(
            "node {name}'s key is {}, not {old_key_id} (rotated already?); nothing changed",
            node.key_id
        )));
    }
    Ok(())
}

/// Rotating `name` to a key that belongs (or belonged) to node `owner`.
pub(super) fn rotation_key_taken(name: &str, new_key_id: &str, owner: &str) -> StoreError {
    let whose = if owner == name {
        "this node used it before".to_owned()
    } else {
        format!("it belongs to node {owner}")
    };
    StoreError::Conflict(format!(
        "cannot rotate node {name} to key {new_key_id}: {whose}; use a fresh key"
    ))
}

/// Adding a claim on `name`: only a pending name takes more claims.
pub(super) fn check_claimable(node: &NodeRecord, name: &str) -> StoreResult<()> {
    if node.status != NodeStatus::Pending {
        return Err(StoreError::Conflict(format!(
            "node {name} is {}: only a pending name takes more claims",
            node.status.as_str()
        )));
    }
    Ok(())
}

/// Adding a claim with a key that belongs to (or claims) node `owner`.
pub(super) fn claim_key_taken(key_id: &str, owner: &str) -> StoreError {
    StoreError::Conflict(format!(
        "key {key_id} already belongs to (or claims) node {owner}; every node needs its own \
         key"
    ))
}

/// What approving a node comes to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Approval<'a> {
    /// A later claim, with this key, becomes the name's only claim, approved.
    Promote(&'a str),
    /// The node (pending) becomes approved.
    Approve,
    /// The node is approved already: nothing to change.
    Approved,
}

/// Approving `name` (optionally only with `key_id`), a node with `status` and key
/// `node_key`: `claims` are its pending claims, oldest first, read when the node is
/// pending (ignored otherwise). Several claims need the key named; a key that is not the
/// node's is a Conflict; a revoked node stays revoked.
pub(super) fn approval<'a>(
    name: &str,
    status: NodeStatus,
    node_key: &str,
    key_id: Option<&'a str>,
    claims: &[PendingClaim],
) -> StoreResult<Approval<'a>> {
    if status == NodeStatus::Pending {
        match key_id {
            None if claims.len() > 1 => {
                let keys: Vec<&str> = claims.iter().map(|c| c.key_id.as_str()).collect();
                return Err(StoreError::Conflict(format!(
                    "node {name} has {} pending claims, with keys {}: only one is the real \
                     node; check the key id on the node and approve it with `nodes approve \
                     {name} --key-id <key id>`; nothing changed",
                    claims.len(),
                    keys.join(", ")
                )));
            }
            Some(want) if want != node_key && claims.iter().any(|c| c.key_id == want) => {
                return Ok(Approval::Promote(want));
            }
            _ => {}
        }
    }
    if let Some(want) = key_id {
        if node_key != want {
            return Err(StoreError::Conflict(format!(
                "node {name}'s key is {node_key}, not {want}: the claim is not the one you \
                 meant to approve; nothing changed (check the key id on the node, and `nodes \
                 delete {name}` a claim that is not the node's)"
            )));
        }
    }
    match status {
        NodeStatus::Revoked => Err(StoreError::Conflict(format!(
            "node {name} is revoked and stays so: `nodes delete {name}` to reissue the name"
        ))),
        NodeStatus::Approved => Ok(Approval::Approved),
        NodeStatus::Pending => Ok(Approval::Approve),
    }
}

/// Revoking exception `id`: an exception is revoked once.
pub(super) fn check_revocable(current: &ExceptionRecord, id: i64) -> StoreResult<()> {
    if let Some(at) = current.revoked_at {
        return Err(StoreError::Conflict(format!(
            "exception {id} was already revoked (at Unix time {at} by {})",
            current.revoked_by.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            status: NodeStatus::Approved,
            key_id: "k1".into(),
            last_sequence: 4,
            last_digest: Some("d4".into()),
            last_full_digest: Some("d3".into()),
            last_full_sequence: Some(3),
            last_run_digest: Some("d4".into()),
            summary: None,
            posture: None,
            failing_any: false,
        }
    }

    fn full(sequence: u64, previous: Option<&str>) -> Accepted {
        Accepted {
            node: "n1".into(),
            key_id: "k1".into(),
            digest: "d".into(),
            sequence,
            previous: previous.map(Into::into),
            received_at: 0,
            scan_time: String::new(),
            interval_secs: 60,
            envelope: Vec::new(),
            kind: AcceptedKind::Full {
                posture: String::new(),
                summary: Default::default(),
                checks: Vec::new(),
            },
        }
    }

    fn notice(sequence: u64, previous: &str, since: &str, count: u64) -> Accepted {
        Accepted {
            kind: AcceptedKind::Unchanged {
                since: since.into(),
                count,
                first_unchanged: String::new(),
            },
            ..full(sequence, Some(previous))
        }
    }

    fn conflict(r: StoreResult<()>) -> String {
        match r {
            Err(StoreError::Conflict(m)) => m,
            other => panic!("expected a Conflict, got {other:?}"),
        }
    }

    #[test]
    fn the_chain_step_takes_the_next_statement_only() {
        check_commit(&head(), &full(5, Some("d4"))).expect("a full report linking up");
        check_commit(&head(), &notice(5, "d3", "d3", 2)).expect("a notice of the run");
        assert_eq!(
            conflict(check_commit(&head(), &full(6, Some("d4")))),
            "statement d (node n1, sequence 6) does not follow the node's last sequence 4; \
             nothing committed"
        );
        assert!(conflict(check_commit(&head(), &full(4, Some("d4")))).contains("already at 4"));
        assert!(conflict(check_commit(&head(), &full(5, Some("d3"))))
            .contains("names previous d3 but the node's last statement is d4"));
        assert!(conflict(check_commit(&head(), &notice(5, "d3", "d2", 2)))
            .contains("of full report d2, but the node's last full report is d3"));
        assert!(conflict(check_commit(&head(), &notice(5, "d4", "d3", 2)))
            .contains("naming previous d4, not its run's full report d3"));
        assert!(conflict(check_commit(&head(), &notice(5, "d3", "d3", 1)))
            .contains("counting 1 scan(s) since sequence 3"));
        let fresh = Head {
            last_full_digest: None,
            last_full_sequence: None,
            ..head()
        };
        assert!(conflict(check_commit(&fresh, &notice(5, "d3", "d3", 2)))
            .contains("the node has no full report"));
        let rotated = Head {
            key_id: "k2".into(),
            ..head()
        };
        assert!(conflict(check_commit(&rotated, &full(5, Some("d4")))).contains("now has key k2"));
        let revoked = Head {
            status: NodeStatus::Revoked,
            ..head()
        };
        assert!(conflict(check_commit(&revoked, &full(5, Some("d4")))).contains("is revoked"));
    }

    #[test]
    fn stale_nodes_are_neither_compliant_nor_failing() {
        let mut counts = FleetCounts::default();
        counts.add(NodeStatus::Approved, false, 5);
        counts.add(NodeStatus::Approved, true, 3);
        counts.add(NodeStatus::Pending, false, 2);
        counts.add(NodeStatus::Revoked, true, 1);
        let nodes = counts.finish(1, 2);
        assert_eq!(
            (nodes.total, nodes.approved, nodes.pending, nodes.revoked),
            (11, 8, 2, 1)
        );
        assert_eq!((nodes.stale, nodes.compliant, nodes.failing), (3, 4, 1));
    }

    #[test]
    fn counters_out_of_step_are_each_named() {
        let rows = |k: &str, n: i64| CounterRows::from([(k.to_owned(), [n, 0, 0, 0])]);
        counters_verdict(
            (rows("a", 1), rows("a", 1)),
            (rows("1.1", 2), rows("1.1", 2)),
            0,
        )
        .expect("counters in step");
        let e = counters_verdict(
            (rows("a", 1), rows("a", 2)),
            (rows("1.1", 2), rows("1.1", 3)),
            4,
        )
        .expect_err("three problems");
        let StoreError::Backend(m) = e else {
            panic!("expected a Backend error, got {e:?}")
        };
        assert!(
            m.starts_with("counters out of step: node_tally {\"a\": [1, 0, 0, 0]} but nodes say")
        );
        assert!(m.contains("; check_counts {\"1.1\": [2, 0, 0, 0]} but node_checks say"));
        assert!(m.ends_with("; 4 nodes have failing_any out of step with failing"));
    }

    fn claim(key_id: &str) -> PendingClaim {
        PendingClaim {
            name: "n1".into(),
            key_id: key_id.into(),
            source: None,
            claimed_at: 0,
        }
    }

    #[test]
    fn approval_names_the_key_when_several_claim_the_name() {
        let pending = NodeStatus::Pending;
        let two = [claim("k1"), claim("k2")];
        assert_eq!(
            approval("n1", pending, "k1", None, &[claim("k1")]).expect("one claim"),
            Approval::Approve
        );
        let e = approval("n1", pending, "k1", None, &two).expect_err("two claims, no key");
        assert!(
            matches!(e, StoreError::Conflict(m) if m.contains("2 pending claims, with keys k1, k2"))
        );
        assert_eq!(
            approval("n1", pending, "k1", Some("k2"), &two).expect("the later claim"),
            Approval::Promote("k2")
        );
        assert_eq!(
            approval("n1", pending, "k1", Some("k1"), &two).expect("the first claim"),
            Approval::Approve
        );
        let e = approval("n1", pending, "k1", Some("k3"), &two).expect_err("no such claim");
        assert!(matches!(e, StoreError::Conflict(m) if m ==
            "node n1's key is k1, not k3: the claim is not the one you meant to approve; nothing \
             changed (check the key id on the node, and `nodes delete n1` a claim that is not \
             the node's)"));
        let e = approval("n1", NodeStatus::Revoked, "k1", None, &[]).expect_err("revoked");
        assert!(matches!(e, StoreError::Conflict(m) if m.contains("stays so")));
        assert_eq!(
            approval("n1", NodeStatus::Approved, "k1", Some("k1"), &two).expect("already approved"),
            Approval::Approved
        );
    }
}
