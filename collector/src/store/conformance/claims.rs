//! Stories of pending claims: their sources, expiry, deletion, several claims on a name.

use nodeproof_proto::Status;

use super::fixtures::{assert_no_such_node, check, commit, fake_hex, node, ok, Agent};
use crate::store::{ChainEvent, NodeStatus, Store, StoreError};

use Status::{Fail as F, Pass as P};

/// Pending claims carry their source; they expire; a pending or revoked name can be
/// deleted and enrolled again (with another key); an approved one cannot be deleted.
pub fn pending_claims_and_deletion(s: &dyn Store) {
    let early = Agent::new("early");
    let late = Agent::new("late");
    let live = Agent::new("live");
    early.enroll(s, false, 100);
    late.enroll(s, false, 500);
    live.enroll(s, true, 100);
    ok(
        s.set_claim_source("early", &early.key_id, "192.0.2.7:5555"),
        "set_claim_source",
    );
    // Only for the pending claim with that key.
    ok(
        s.set_claim_source("live", &live.key_id, "x"),
        "set_claim_source",
    );
    let claims = ok(s.pending_claims(), "pending_claims");
    assert_eq!(
        claims
            .iter()
            .map(|c| (
                c.name.as_str(),
                c.key_id.as_str(),
                c.source.as_deref(),
                c.claimed_at
            ))
            .collect::<Vec<_>>(),
        vec![
            ("early", early.key_id.as_str(), Some("192.0.2.7:5555"), 100),
            ("late", late.key_id.as_str(), None, 500)
        ]
    );

    let expired = ok(s.expire_pending(300), "expire_pending");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].name, "early");
    assert!(
        ok(s.node("early"), "node").is_none(),
        "expired claims are gone"
    );
    assert_eq!(ok(s.fleet_summary(600), "fleet_summary").nodes.pending, 1);
    // The expired claim's key is free again, and so is its name.
    let other = Agent::with_interval("early", 60);
    let mut other = other;
    other.key_id = fake_hex("the real early");
    other.enroll(s, true, 700);

    // Approving by key id: only the claim with that key.
    let wrong = s.approve("late", Some(&fake_hex("not late's key")), 800);
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
    assert_eq!(node(s, "late").status, NodeStatus::Pending);
    let approved = ok(s.approve("late", Some(&late.key_id), 800), "approve");
    assert_eq!(approved.status, NodeStatus::Approved);

    // Deleting: refused while approved; a revoked node goes with its evidence.
    let mut live = live;
    commit(s, &[live.full(200, vec![check("4.2.1", F)])]);
    assert!(matches!(
        s.delete_node("live"),
        Err(StoreError::Conflict(_))
    ));
    ok(s.set_status("live", NodeStatus::Revoked, 900), "revoke");
    ok(
        s.record_chain_event(&ChainEvent {
            node: "live".into(),
            kind: "replay".into(),
            at: 901,
            last_at: 901,
            count: 1,
            expected_sequence: 2,
            got_sequence: 1,
            digest: fake_hex("r"),
            detail: String::new(),
        }),
        "record",
    );
    let deleted = ok(s.delete_node("live"), "delete_node");
    assert_eq!(deleted.status, NodeStatus::Revoked);
    assert!(ok(s.node("live"), "node").is_none());
    assert_no_such_node(s.history("live", 10), "a deleted node's history");
    let mut reissued = Agent::new("live");
    reissued.key_id = fake_hex("live, reissued");
    let again = reissued.enroll(s, true, 1000);
    assert_eq!(
        (again.status, again.last_sequence),
        (NodeStatus::Approved, 0)
    );
    assert_no_such_node(s.delete_node("ghost"), "deleting an unknown node");
    let summary = ok(s.fleet_summary(1000), "fleet_summary");
    assert_eq!((summary.nodes.total, summary.nodes.pending), (3, 0));
}

fn claims_of(s: &dyn Store, name: &str) -> Vec<(String, Option<String>, i64)> {
    ok(s.pending_claims(), "pending_claims")
        .into_iter()
        .filter(|c| c.name == name)
        .map(|c| (c.key_id, c.source, c.claimed_at))
        .collect()
}

/// A squatter claims a name first; the real node's claim on the same name is recorded
/// next to it (idempotently), approving needs the key id when there are several, and
/// approving one key drops the other claims, whose keys then belong to nobody.
pub fn several_claims_on_a_pending_name(s: &dyn Store) {
    let squatter = Agent::new("node-7");
    let mut real = Agent::new("node-7");
    real.key_id = fake_hex("the real node-7");
    squatter.enroll(s, false, 100);
    ok(
        s.set_claim_source("node-7", &squatter.key_id, "203.0.113.66:1"),
        "set_claim_source",
    );
    ok(
        s.add_claim(
            "node-7",
            &real.key_id,
            &real.public_key(),
            "10.0.0.7:2",
            200,
        ),
        "add_claim",
    );
    // The same claim again changes nothing; the first key is not an extra claim.
    ok(
        s.add_claim(
            "node-7",
            &real.key_id,
            &real.public_key(),
            "10.9.9.9:9",
            300,
        ),
        "add_claim again",
    );
    ok(
        s.add_claim("node-7", &squatter.key_id, &squatter.public_key(), "x", 300),
        "add_claim with the pending key",
    );
    assert_eq!(
        claims_of(s, "node-7"),
        vec![
            (squatter.key_id.clone(), Some("203.0.113.66:1".into()), 100),
            (real.key_id.clone(), Some("10.0.0.7:2".into()), 200),
        ]
    );
    // Claims count one pending node in the tallies, two claims against the cap.
    assert_eq!(ok(s.fleet_summary(300), "fleet_summary").nodes.pending, 1);
    assert_eq!(ok(s.pending_claims(), "pending_claims").len(), 2);
    // A key claims one name only; unknown and decided names take no claims.
    let elsewhere = Agent::new("other");
    elsewhere.enroll(s, true, 100);
    let taken = s.add_claim("other", &real.key_id, &real.public_key(), "x", 300);
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let mut third = Agent::new("node-7");
    third.key_id = fake_hex("third");
    let taken = s.add_claim("node-7", &elsewhere.key_id, &third.public_key(), "x", 300);
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_no_such_node(
        s.add_claim("ghost", &third.key_id, &third.public_key(), "x", 300),
        "a claim on an unknown name",
    );
    // Enrolling another name with a key that claims node-7 is refused.
    let reuse = s.enroll("fresh", &real.key_id, &real.public_key(), true, 300);
    assert!(matches!(reuse, Err(StoreError::Conflict(_))), "{reuse:?}");

    // Two claims: the operator must say which.
    let which = s.approve("node-7", None, 400);
    assert!(matches!(which, Err(StoreError::Conflict(_))), "{which:?}");
    let unknown = s.approve("node-7", Some(&third.key_id), 400);
    assert!(
        matches!(unknown, Err(StoreError::Conflict(_))),
        "{unknown:?}"
    );
    assert_eq!(claims_of(s, "node-7").len(), 2, "nothing changed");
    let approved = ok(s.approve("node-7", Some(&real.key_id), 400), "approve");
    assert_eq!(
        (
            approved.key_id.as_str(),
            approved.status,
            approved.public_key.as_str()
        ),
        (
            real.key_id.as_str(),
            NodeStatus::Approved,
            real.public_key().as_str()
        )
    );
    assert!(ok(s.pending_claims(), "pending_claims").is_empty());
    assert!(ok(s.node_by_key(&squatter.key_id), "node_by_key").is_none());
    assert_eq!(
        ok(s.node_key(&real.key_id), "node_key").map(|k| k.status),
        Some(NodeStatus::Approved)
    );
    // The approved node reports; a decided name takes no more claims.
    commit(s, &[real.full(500, vec![check("4.2.1", P)])]);
    let late = s.add_claim("node-7", &third.key_id, &third.public_key(), "x", 600);
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let summary = ok(s.fleet_summary(600), "fleet_summary");
    assert_eq!((summary.nodes.approved, summary.nodes.pending), (2, 0));

    // Approving the first claim's key drops the later ones; so do revoking and deleting.
    let first = Agent::new("n2");
    let mut second = Agent::new("n2");
    second.key_id = fake_hex("second n2");
    first.enroll(s, false, 700);
    ok(
        s.add_claim("n2", &second.key_id, &second.public_key(), "x", 701),
        "add_claim",
    );
    ok(
        s.approve("n2", Some(&first.key_id), 702),
        "approve the first",
    );
    assert!(ok(s.pending_claims(), "pending_claims").is_empty());
    let again = Agent::new("n3");
    again.enroll(s, false, 703);
    ok(
        s.add_claim("n3", &second.key_id, &second.public_key(), "x", 704),
        "the dropped key may claim another name",
    );
    ok(s.delete_node("n3"), "delete");
    assert!(ok(s.pending_claims(), "pending_claims").is_empty());
}

/// Each claim expires on its own: when the first one on a name expires and a later one
/// has not, the later one becomes the pending node (with its own time and source).
pub fn claims_expire_one_by_one(s: &dyn Store) {
    let squatter = Agent::new("node-7");
    let mut real = Agent::new("node-7");
    real.key_id = fake_hex("the real node-7");
    let mut late = Agent::new("node-7");
    late.key_id = fake_hex("a later one");
    let mut stale = Agent::new("node-8");
    stale.key_id = fake_hex("node-8's second");
    squatter.enroll(s, false, 100);
    ok(
        s.add_claim(
            "node-7",
            &real.key_id,
            &real.public_key(),
            "10.0.0.7:2",
            500,
        ),
        "add_claim",
    );
    ok(
        s.add_claim(
            "node-7",
            &late.key_id,
            &late.public_key(),
            "10.0.0.8:3",
            600,
        ),
        "add_claim",
    );
    Agent::new("node-8").enroll(s, false, 400);
    ok(
        s.add_claim("node-8", &stale.key_id, &stale.public_key(), "x", 150),
        "add_claim",
    );
    let expired = ok(s.expire_pending(300), "expire_pending");
    assert_eq!(
        expired
            .iter()
            .map(|c| (c.name.as_str(), c.claimed_at))
            .collect::<Vec<_>>(),
        vec![("node-7", 100), ("node-8", 150)]
    );
    let promoted = node(s, "node-7");
    assert_eq!(
        (
            promoted.key_id.as_str(),
            promoted.status,
            promoted.enrolled_at
        ),
        (real.key_id.as_str(), NodeStatus::Pending, 500)
    );
    assert_eq!(
        claims_of(s, "node-7"),
        vec![
            (real.key_id.clone(), Some("10.0.0.7:2".into()), 500),
            (late.key_id.clone(), Some("10.0.0.8:3".into()), 600),
        ]
    );
    assert_eq!(
        node(s, "node-8").enrolled_at,
        400,
        "node-8's first claim stays"
    );
    assert_eq!(claims_of(s, "node-8").len(), 1);
    assert_eq!(ok(s.fleet_summary(700), "fleet_summary").nodes.pending, 2);
    // Everything expires: the names are free.
    let expired = ok(s.expire_pending(10_000), "expire_pending");
    assert_eq!(expired.len(), 3);
    assert!(ok(s.pending_claims(), "pending_claims").is_empty());
    assert!(ok(s.node("node-7"), "node").is_none());
    let summary = ok(s.fleet_summary(10_000), "fleet_summary");
    assert_eq!((summary.nodes.total, summary.nodes.pending), (0, 0));
}
