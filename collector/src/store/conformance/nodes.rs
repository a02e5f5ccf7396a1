//! Stories of tokens, enrolment, approval and revocation, and key rotation.

use nodeproof_proto::Status;

use super::fixtures::{
    assert_conflict, assert_no_such_node, check, check_counts, commit, counts, fake_hex, names,
    node, ok, public_key_for, Agent,
};
use crate::store::{NodeKey, NodeStatus, Store};

use Status::{Fail as F, Pass as P};

/// Bootstrap tokens: expiry, limited and unlimited uses, unknown tokens.
pub fn tokens(s: &dyn Store) {
    let two = fake_hex("token two uses");
    ok(s.create_token(&two, 1000, Some(2), 0), "create_token");
    assert!(
        ok(s.redeem_token(&two, 10), "redeem"),
        "first use of a 2-use token"
    );
    assert!(
        ok(s.redeem_token(&two, 20), "redeem"),
        "second use of a 2-use token"
    );
    assert!(
        !ok(s.redeem_token(&two, 30), "redeem"),
        "a spent token must not redeem"
    );

    let unlimited = fake_hex("token unlimited");
    ok(s.create_token(&unlimited, 1000, None, 0), "create_token");
    for i in 0..5 {
        assert!(
            ok(s.redeem_token(&unlimited, 100 + i), "redeem"),
            "unlimited token, use {i}"
        );
    }
    assert!(
        !ok(s.redeem_token(&unlimited, 1000), "redeem"),
        "a token is expired at expires_at"
    );

    let short = fake_hex("token short-lived");
    ok(s.create_token(&short, 100, Some(1), 0), "create_token");
    assert!(
        !ok(s.redeem_token(&short, 101), "redeem"),
        "an expired token must not redeem"
    );
    assert!(
        ok(s.redeem_token(&short, 99), "redeem"),
        "an expired attempt must not use up the token"
    );

    let none = fake_hex("token with no uses");
    ok(s.create_token(&none, 1000, Some(0), 0), "create_token");
    assert!(
        !ok(s.redeem_token(&none, 1), "redeem"),
        "a token with 0 uses must not redeem"
    );

    assert!(
        !ok(s.redeem_token(&fake_hex("never created"), 1), "redeem"),
        "unknown token"
    );
    assert_conflict(
        s.create_token(&two, 5000, None, 0),
        "creating a stored token again",
    );
}

/// Enrolment: pending vs approved, idempotent with the same key, name and key conflicts.
pub fn enrolment(s: &dyn Store) {
    let a = Agent::new("node-a");
    let rec = a.enroll(s, false, 10);
    assert_eq!(rec.status, NodeStatus::Pending, "no token: pending");
    assert_eq!(
        (
            rec.name.as_str(),
            rec.key_id.as_str(),
            rec.public_key.clone(),
            rec.enrolled_at
        ),
        ("node-a", a.key_id.as_str(), a.public_key(), 10),
        "the record holds what was enrolled"
    );
    assert_eq!(
        (
            rec.last_sequence,
            &rec.last_digest,
            &rec.last_seen,
            &rec.summary,
            rec.failing.len()
        ),
        (0, &None, &None, &None, 0),
        "a new node has an empty chain"
    );
    assert_eq!(
        a.enroll(s, false, 20),
        rec,
        "re-enrolling with the same key is idempotent"
    );

    let approved = a.enroll(s, true, 30);
    assert_eq!(
        approved.status,
        NodeStatus::Approved,
        "a token approves a pending node"
    );
    assert_eq!(
        approved.enrolled_at, 10,
        "re-enrolling keeps the enrolment time"
    );
    assert_eq!(
        a.enroll(s, false, 40).status,
        NodeStatus::Approved,
        "without a token it stays approved"
    );

    let other_key = Agent::new("someone else");
    assert_conflict(
        s.enroll(
            "node-a",
            &other_key.key_id,
            &other_key.public_key(),
            true,
            50,
        ),
        "same name, another key",
    );
    assert_eq!(
        node(s, "node-a").key_id,
        a.key_id,
        "a refused enrolment changes nothing"
    );
    assert_conflict(
        s.enroll("node-b", &a.key_id, &a.public_key(), true, 50),
        "a key of another node",
    );
    assert_eq!(
        ok(s.node("node-b"), "node"),
        None,
        "a refused enrolment creates nothing"
    );

    let b = Agent::new("node-b");
    b.enroll(s, true, 60);
    ok(s.set_status("node-b", NodeStatus::Revoked, 70), "revoke");
    assert_eq!(
        b.enroll(s, true, 80).status,
        NodeStatus::Revoked,
        "a token never un-revokes a node"
    );

    assert_eq!(
        ok(s.node_by_key(&a.key_id), "node_by_key").map(|n| n.name),
        Some("node-a".into())
    );
    assert_eq!(
        ok(s.node_by_key(&fake_hex("nobody's key")), "node_by_key"),
        None,
        "unknown key"
    );
    // The narrow lookups agree with node_by_key.
    for key in [a.key_id.clone(), b.key_id.clone(), fake_hex("nobody's key")] {
        assert_eq!(
            ok(s.node_key(&key), "node_key"),
            ok(s.node_by_key(&key), "node_by_key").map(NodeKey::from),
            "node_key {key}"
        );
    }
    assert_eq!(
        ok(
            s.node_keys(&[b.key_id.as_str(), "nobody", a.key_id.as_str()]),
            "node_keys"
        )
        .into_iter()
        .map(|k| k.map(|k| (k.name, k.status)))
        .collect::<Vec<_>>(),
        vec![
            Some(("node-b".to_string(), NodeStatus::Revoked)),
            None,
            Some(("node-a".to_string(), NodeStatus::Approved)),
        ],
        "node_keys, in order"
    );
    assert_eq!(ok(s.node("ghost"), "node"), None, "unknown node");
    assert_no_such_node(
        s.set_status("ghost", NodeStatus::Approved, 1),
        "set_status of an unknown node",
    );

    Agent::new("node-0").enroll(s, false, 90);
    let listed = ok(s.list_nodes(), "list_nodes");
    assert_eq!(
        names(&listed),
        ["node-0", "node-a", "node-b"],
        "list_nodes is sorted by name"
    );
    assert_eq!(
        listed[1],
        node(s, "node-a"),
        "list_nodes returns whole records"
    );
}

/// Approval and revocation decide which nodes' checks count, and whose reports are stored.
pub fn approval_and_revocation(s: &dyn Store) {
    let mut a = Agent::new("a");
    let mut b = Agent::new("b");
    let mut c = Agent::new("c");
    a.enroll(s, true, 0);
    b.enroll(s, true, 0);
    c.enroll(s, false, 0);

    let pending = c.full(100, vec![check("4.2.1", P)]);
    assert_conflict(
        s.commit(std::slice::from_ref(&pending)),
        "a pending node's report",
    );
    assert!(
        !ok(s.has_digest(&pending.digest), "has_digest"),
        "a refused report is not stored"
    );

    commit(
        s,
        &[a.full(100, vec![check("4.2.1", P), check("4.2.2", F)])],
    );
    commit(
        s,
        &[b.full(100, vec![check("4.2.1", F), check("4.2.2", F)])],
    );
    let both = vec![counts("4.2.1", 1, 1, 0, 0), counts("4.2.2", 0, 2, 0, 0)];
    assert_eq!(check_counts(s), both, "both approved nodes count");

    ok(s.set_status("b", NodeStatus::Revoked, 200), "revoke b");
    assert_eq!(node(s, "b").status, NodeStatus::Revoked);
    let only_a = vec![counts("4.2.1", 1, 0, 0, 0), counts("4.2.2", 0, 1, 0, 0)];
    assert_eq!(
        check_counts(s),
        only_a,
        "a revoked node's checks no longer count"
    );
    assert_eq!(
        names(&ok(s.failing("4.2.2"), "failing")),
        ["a"],
        "failing lists approved nodes only"
    );
    let nodes = ok(s.fleet_summary(200), "fleet_summary").nodes;
    assert_eq!(
        (nodes.approved, nodes.revoked, nodes.pending),
        (1, 1, 1),
        "node counts by status"
    );

    let late = b
        .clone()
        .full(300, vec![check("4.2.1", P), check("4.2.2", P)]);
    assert_conflict(
        s.commit(std::slice::from_ref(&late)),
        "a revoked node's report",
    );
    assert!(
        !ok(s.has_digest(&late.digest), "has_digest"),
        "a revoked node's report is not stored"
    );

    ok(
        s.set_status("b", NodeStatus::Revoked, 300),
        "revoke b again",
    );
    assert_eq!(check_counts(s), only_a, "revoking twice subtracts once");

    ok(
        s.set_status("b", NodeStatus::Approved, 400),
        "approve b again",
    );
    assert_eq!(
        check_counts(s),
        both,
        "re-approving counts the node's latest state again"
    );
    commit(
        s,
        &[b.full(500, vec![check("4.2.1", P), check("4.2.2", P)])],
    );
    assert_eq!(
        check_counts(s),
        vec![counts("4.2.1", 2, 0, 0, 0), counts("4.2.2", 1, 1, 0, 0)],
        "a re-approved node reports again"
    );

    ok(s.set_status("c", NodeStatus::Approved, 600), "approve c");
    assert_eq!(node(s, "c").status, NodeStatus::Approved);
    assert_eq!(
        check_counts(s).len(),
        2,
        "approving a node that never reported adds nothing"
    );
    ok(
        s.set_status("a", NodeStatus::Pending, 700),
        "back to pending",
    );
    assert_eq!(
        check_counts(s),
        vec![counts("4.2.1", 1, 0, 0, 0), counts("4.2.2", 1, 0, 0, 0)],
        "only approved nodes count, whatever else they are"
    );
}

/// Key rotation: the old key stops finding the node, the chain carries on.
pub fn key_rotation(s: &dyn Store) {
    let mut a = Agent::new("a");
    let b = Agent::new("b");
    a.enroll(s, true, 0);
    b.enroll(s, true, 0);
    commit(s, &[a.full(100, vec![check("4.2.1", P)])]);

    let old = a.key_id.clone();
    let new = fake_hex("a's second key");
    let new_pem = public_key_for(&new);
    assert_conflict(
        s.rotate_key("a", &fake_hex("wrong"), &new, &new_pem, 200),
        "wrong old key",
    );
    assert_conflict(
        s.rotate_key("a", &old, &b.key_id, &b.public_key(), 200),
        "another node's key",
    );
    assert_conflict(
        s.rotate_key("a", &old, &old, &a.public_key(), 200),
        "the current key",
    );
    assert_no_such_node(
        s.rotate_key("ghost", &old, &new, &new_pem, 200),
        "unknown node",
    );
    assert_eq!(node(s, "a").key_id, old, "refused rotations change nothing");

    ok(s.rotate_key("a", &old, &new, &new_pem, 200), "rotate");
    assert_eq!(
        ok(s.node_by_key(&old), "node_by_key"),
        None,
        "the old key no longer finds the node"
    );
    assert_eq!(ok(s.node_key(&old), "node_key"), None, "nor node_key");
    assert_eq!(
        ok(s.node_key(&new), "node_key").map(|k| (k.name, k.public_key)),
        Some(("a".to_string(), new_pem.clone())),
        "node_key follows the rotation"
    );
    let rec = ok(s.node_by_key(&new), "node_by_key")
        .unwrap_or_else(|| panic!("the new key finds the node"));
    assert_eq!(
        (rec.name.as_str(), rec.public_key.as_str()),
        ("a", new_pem.as_str())
    );
    assert_eq!(rec.last_sequence, 1, "rotation keeps the chain");
    assert_conflict(
        s.rotate_key("a", &old, &fake_hex("third"), &new_pem, 300),
        "rotating from a retired key",
    );

    let stale_key = a.full(300, vec![check("4.2.1", F)]);
    assert_conflict(
        s.commit(std::slice::from_ref(&stale_key)),
        "a report accepted under the old key",
    );
    assert_eq!(node(s, "a").last_sequence, 1, "nothing committed");
    let mut signed_by_new = stale_key;
    signed_by_new.key_id = new.clone();
    commit(s, &[signed_by_new]);
    assert_eq!(
        node(s, "a").last_sequence,
        2,
        "reports under the new key extend the chain"
    );

    let c = Agent::new("c");
    assert_conflict(
        s.enroll("c", &old, &c.public_key(), true, 400),
        "a retired key is not reusable",
    );
    assert_conflict(
        s.rotate_key("b", &b.key_id, &old, &c.public_key(), 400),
        "nor by rotation",
    );
}
