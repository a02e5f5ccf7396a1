//! The storage story: what every [`Store`] backend must do, written once against
//! `&dyn Store` so the SQLite tests run it today and a PostgreSQL backend runs the same
//! stories later (as atuin's `tests-database` does for its servers).
//!
//! Each story takes a fresh, empty store. Times are passed in explicitly (no clock, no
//! sleeps), digests and keys are deterministic fakes: the store treats them as opaque.
//! A failing assertion panics with a message that says which promise broke.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use nodeproof_proto::chain::{walk, ChainLink, LinkKind};
use nodeproof_proto::{Status, Summary};

use super::{
    Accepted, AcceptedKind, ChainEvent, CheckCounts, CheckState, FailingCheck, NewException,
    NodeCounts, NodeKey, NodeRecord, NodeStatus, Store, StoreError, StoreResult,
};

/// A story: one promise of the `Store` contract, checked on a fresh store.
pub type Story = fn(&dyn Store);

/// Every story, by name, so a backend's test file can run them one test each.
pub const STORIES: &[(&str, Story)] = &[
    ("tokens", tokens),
    ("enrolment", enrolment),
    ("approval_and_revocation", approval_and_revocation),
    ("key_rotation", key_rotation),
    ("full_reports", full_reports),
    ("unchanged_runs", unchanged_runs),
    ("stored_chain_has_no_gap", stored_chain_has_no_gap),
    (
        "commit_refuses_a_notice_that_breaks_the_chain",
        commit_refuses_a_notice_that_breaks_the_chain,
    ),
    ("batch_atomicity", batch_atomicity),
    ("fleet_summary", fleet_summary),
    ("failing_by_check", failing_by_check),
    ("drift_since", drift_since),
    ("drift_newest", drift_newest),
    ("chain_events", chain_events),
    ("chain_events_are_counted", chain_events_are_counted),
    ("pending_claims_and_deletion", pending_claims_and_deletion),
    (
        "several_claims_on_a_pending_name",
        several_claims_on_a_pending_name,
    ),
    ("claims_expire_one_by_one", claims_expire_one_by_one),
    ("failing_checks", failing_checks),
    ("stale_nodes", stale_nodes),
    ("exceptions", exceptions),
    ("evidence_export", evidence_export),
];

/// Runs every story, each on a store from `make` (which must return an empty one).
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, story) in STORIES {
        eprintln!("storage story: {name}");
        story(&*make());
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures.

/// 64 lowercase hex characters derived from `s` (FNV-1a, four seeds): a stand-in for a
/// SHA-256 digest or key id.
pub fn fake_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    for seed in [0xcbf2_9ce4_8422_2325_u64, 1, 2, 3] {
        let mut h = seed;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// The RFC 3339 form of a Unix time, as an agent would sign it.
pub fn rfc3339(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| panic!("{at} is not a representable time"))
}

/// A scored check.
pub fn check(cis: &str, status: Status) -> CheckState {
    CheckState {
        id: format!("kubelet-{}", cis.replace('.', "-")),
        cis: cis.into(),
        scored: true,
        status,
    }
}

/// A check that does not count towards compliance.
pub fn unscored(cis: &str, status: Status) -> CheckState {
    CheckState {
        scored: false,
        ..check(cis, status)
    }
}

/// A node's side of the chain: builds the statements an agent would send, in order.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub key_id: String,
    pub interval_secs: u64,
    pub sequence: u64,
    pub last: Option<String>,
    pub last_full: Option<String>,
    run_start: Option<String>,
    run_count: u64,
}

impl Agent {
    pub fn new(name: &str) -> Agent {
        Agent::with_interval(name, 300)
    }

    pub fn with_interval(name: &str, interval_secs: u64) -> Agent {
        Agent {
            name: name.into(),
            key_id: fake_hex(&format!("key of {name}")),
            interval_secs,
            sequence: 0,
            last: None,
            last_full: None,
            run_start: None,
            run_count: 0,
        }
    }

    pub fn public_key(&self) -> String {
        public_key_for(&self.key_id)
    }

    pub fn enroll(&self, s: &dyn Store, approved: bool, now: i64) -> NodeRecord {
        s.enroll(&self.name, &self.key_id, &self.public_key(), approved, now)
            .unwrap_or_else(|e| panic!("enrolling {}: {e}", self.name))
    }

    fn next(&mut self, at: i64, kind: AcceptedKind) -> Accepted {
        self.sequence += 1;
        let digest = fake_hex(&format!("{} {} {at}", self.name, self.sequence));
        let envelope = format!(
            "{{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"{}\",\
             \"signatures\":[{{\"keyid\":\"{}\",\"sig\":\"{}\"}}]}}\n",
            fake_hex(&format!("payload {digest}")).repeat(3),
            self.key_id,
            fake_hex(&format!("sig {digest}")),
        )
        .into_bytes();
        Accepted {
            node: self.name.clone(),
            key_id: self.key_id.clone(),
            digest: digest.clone(),
            sequence: self.sequence,
            previous: self.last.replace(digest),
            received_at: at,
            scan_time: rfc3339(at),
            interval_secs: self.interval_secs,
            envelope,
            kind,
        }
    }

    /// The next statement: a full report of `checks`, scanned and received at `at`.
    pub fn full(&mut self, at: i64, checks: Vec<CheckState>) -> Accepted {
        let posture = fake_hex(&format!("{checks:?}"));
        let summary = Summary::count(checks.iter().map(|c| c.status));
        let a = self.next(
            at,
            AcceptedKind::Full {
                posture,
                summary,
                checks,
            },
        );
        self.last_full = Some(a.digest.clone());
        self.run_start = None;
        self.run_count = 0;
        a
    }

    /// The next statement: an unchanged notice of the current run, by the chain rule:
    /// it links to the run's full report (`previous == since`) and counts the sequences
    /// since it.
    pub fn unchanged(&mut self, at: i64) -> Accepted {
        let since = self
            .last_full
            .clone()
            .unwrap_or_else(|| panic!("{}: no full report yet", self.name));
        self.run_count += 1;
        let first_unchanged = self.run_start.get_or_insert_with(|| rfc3339(at)).clone();
        let mut a = self.next(
            at,
            AcceptedKind::Unchanged {
                since: since.clone(),
                count: self.run_count,
                first_unchanged,
            },
        );
        a.previous = Some(since);
        a
    }
}

fn public_key_for(key_id: &str) -> String {
    format!(
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA{}\n-----END PUBLIC KEY-----\n",
        &key_id[..43]
    )
}

fn ok<T>(r: StoreResult<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

fn node(s: &dyn Store, name: &str) -> NodeRecord {
    ok(s.node(name), "node").unwrap_or_else(|| panic!("node {name} should exist"))
}

fn commit(s: &dyn Store, batch: &[Accepted]) {
    ok(s.commit(batch), "commit")
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "{what}: expected a Conflict, got {r:?}"
    );
}

#[track_caller]
fn assert_no_such_node<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NoSuchNode(_))),
        "{what}: expected NoSuchNode, got {r:?}"
    );
}

fn counts(cis: &str, pass: u64, fail: u64, warn: u64, error: u64) -> CheckCounts {
    CheckCounts {
        id: format!("kubelet-{}", cis.replace('.', "-")),
        cis: cis.into(),
        pass,
        fail,
        warn,
        error,
    }
}

fn check_counts(s: &dyn Store) -> Vec<CheckCounts> {
    ok(s.fleet_summary(0), "fleet_summary").checks
}

fn names(nodes: &[NodeRecord]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

use Status::{Error as E, Fail as F, Pass as P, Warn as W};

// ---------------------------------------------------------------------------------------
// Stories.

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

/// Full reports: chain state, latest checks, counts, drift, history, evidence bytes.
pub fn full_reports(s: &dyn Store) {
    let mut a = Agent::new("node-a");
    a.enroll(s, true, 10);
    assert!(
        ok(s.history("node-a", 10), "history").is_empty(),
        "no history before a report"
    );

    let mut r1 = a.full(
        100,
        vec![
            check("4.2.1", P),
            check("4.2.2", F),
            unscored("4.2.10", F),
            check("4.2.3", E),
        ],
    );
    // Not valid UTF-8, NUL, CRLF, trailing newline: the envelope is bytes, not text.
    r1.envelope = b"{\"payload\":\"\x00\xff\xfe\"}\r\n\xc3\x28 \n".to_vec();
    commit(s, std::slice::from_ref(&r1));

    let n = node(s, "node-a");
    assert_eq!(n.last_sequence, 1);
    assert_eq!(
        n.last_digest.as_deref(),
        Some(r1.digest.as_str()),
        "last_digest"
    );
    assert_eq!(
        n.last_scan_time.as_deref(),
        Some(r1.scan_time.as_str()),
        "last_scan_time"
    );
    assert_eq!(
        (n.last_seen, n.interval_secs),
        (Some(100), Some(300)),
        "last_seen, interval"
    );
    assert_eq!(
        n.last_full_digest.as_deref(),
        Some(r1.digest.as_str()),
        "last_full_digest"
    );
    assert_eq!(n.last_full_sequence, Some(1), "last_full_sequence");
    let AcceptedKind::Full { posture, .. } = &r1.kind else {
        unreachable!()
    };
    assert_eq!(n.posture.as_ref(), Some(posture), "posture");
    assert_eq!(
        n.summary,
        Some(Summary {
            pass: 1,
            fail: 2,
            warn: 0,
            error: 1
        }),
        "summary"
    );
    assert_eq!(
        n.failing,
        ["4.2.2", "4.2.3"],
        "failing: scored fail/error checks, CIS order"
    );

    assert!(
        ok(s.has_digest(&r1.digest), "has_digest"),
        "the report is stored"
    );
    assert!(
        !ok(s.has_digest(&fake_hex("other")), "has_digest"),
        "unknown digest"
    );
    assert_eq!(
        ok(s.envelope(&r1.digest), "envelope"),
        Some(r1.envelope.clone()),
        "envelope byte for byte"
    );
    assert_eq!(
        ok(s.envelope(&fake_hex("other")), "envelope"),
        None,
        "unknown envelope"
    );

    let mut first = ok(s.drift(0, None), "drift").events;
    first.sort_by(|x, y| x.cis.cmp(&y.cis));
    let got: Vec<_> = first
        .iter()
        .map(|d| (d.cis.as_str(), d.from, d.to, d.at, d.digest.as_str()))
        .collect();
    let d1 = r1.digest.as_str();
    assert_eq!(
        got,
        [
            ("4.2.1", None, P, 100, d1),
            ("4.2.10", None, F, 100, d1),
            ("4.2.2", None, F, 100, d1),
            ("4.2.3", None, E, 100, d1)
        ],
        "a first report records every check as drift from nothing"
    );

    let r2 = a.full(
        200,
        vec![
            check("4.2.1", P),
            check("4.2.2", P),
            unscored("4.2.10", F),
            check("4.2.3", P),
        ],
    );
    commit(s, std::slice::from_ref(&r2));
    let got: Vec<_> = ok(s.drift(150, None), "drift")
        .events
        .into_iter()
        .map(|d| (d.cis, d.from, d.to, d.at, d.digest))
        .collect();
    assert_eq!(
        got,
        [
            ("4.2.2".to_string(), Some(F), P, 200, r2.digest.clone()),
            ("4.2.3".to_string(), Some(E), P, 200, r2.digest.clone())
        ],
        "only changed checks drift, with from and to"
    );
    let n = node(s, "node-a");
    assert!(
        n.failing.is_empty(),
        "nothing scored fails any more: {:?}",
        n.failing
    );
    assert_eq!(
        n.summary,
        Some(Summary {
            pass: 3,
            fail: 1,
            warn: 0,
            error: 0
        })
    );
    assert_eq!(
        check_counts(s),
        vec![
            counts("4.2.1", 1, 0, 0, 0),
            counts("4.2.2", 1, 0, 0, 0),
            counts("4.2.3", 1, 0, 0, 0),
            counts("4.2.10", 0, 1, 0, 0)
        ],
        "counts follow the latest report, in CIS order"
    );
    assert!(
        ok(s.failing("4.2.2"), "failing").is_empty(),
        "fixed checks leave failing()"
    );

    let h = ok(s.history("node-a", 10), "history");
    let got: Vec<_> = h
        .iter()
        .map(|e| (e.sequence, e.digest.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        [(2, r2.digest.as_str(), "full"), (1, d1, "full")],
        "history, newest first"
    );
    assert_eq!(h[0].scan_time, r2.scan_time);
    assert_eq!(
        (h[0].received_at, h[0].count, h[0].since.clone()),
        (200, None, None)
    );
    assert_eq!(
        h[0].summary,
        Some(Summary {
            pass: 3,
            fail: 1,
            warn: 0,
            error: 0
        }),
        "history summary"
    );
    assert_eq!(
        h[1].summary,
        Some(Summary {
            pass: 1,
            fail: 2,
            warn: 0,
            error: 1
        })
    );
    assert_eq!(
        ok(s.history("node-a", 1), "history").len(),
        1,
        "history honours limit"
    );
    assert_no_such_node(s.history("ghost", 10), "history of an unknown node");

    // Several statements of one node, and another node, in one batch, in order.
    let mut b = Agent::new("node-b");
    b.enroll(s, true, 10);
    let r3 = a.full(
        300,
        vec![
            check("4.2.1", F),
            check("4.2.2", P),
            unscored("4.2.10", F),
            check("4.2.3", P),
        ],
    );
    let rb = b.full(300, vec![check("4.2.1", P)]);
    // A later report may drop a check (another agent version): it leaves the latest state.
    let r4 = a.full(
        301,
        vec![check("4.2.1", W), check("4.2.2", P), check("4.2.3", P)],
    );
    commit(s, &[r3, rb, r4.clone()]);
    let n = node(s, "node-a");
    assert_eq!(
        (n.last_sequence, n.last_digest.as_deref()),
        (4, Some(r4.digest.as_str()))
    );
    assert_eq!(ok(s.history("node-a", 10), "history").len(), 4);
    assert_eq!(
        check_counts(s),
        vec![
            counts("4.2.1", 1, 0, 1, 0),
            counts("4.2.2", 1, 0, 0, 0),
            counts("4.2.3", 1, 0, 0, 0)
        ],
        "a dropped check no longer counts"
    );

    let mut replay = a.full(400, vec![check("4.2.1", P)]);
    replay.sequence = 4;
    assert_conflict(
        s.commit(std::slice::from_ref(&replay)),
        "a sequence that does not extend the chain",
    );
    assert!(
        !ok(s.has_digest(&replay.digest), "has_digest"),
        "nothing stored"
    );
    assert_eq!(node(s, "node-a").last_sequence, 4, "the chain is unchanged");

    let mut ghost = Agent::new("ghost");
    assert_no_such_node(
        s.commit(&[ghost.full(100, vec![])]),
        "a report of an unknown node",
    );
    ok(s.commit(&[]), "an empty batch");
}

/// Unchanged runs: each notice of a run replaces the previous one, so storage stays flat.
pub fn unchanged_runs(s: &dyn Store) {
    let mut a = Agent::new("quiet");
    a.enroll(s, true, 0);
    let posture = vec![check("4.2.1", P), check("4.2.2", F)];
    let f1 = a.full(1000, posture.clone());
    commit(s, std::slice::from_ref(&f1));

    let n1 = a.unchanged(1300);
    commit(s, std::slice::from_ref(&n1));
    let h = ok(s.history("quiet", 10), "history");
    assert_eq!(h.len(), 2, "the first notice of a run is a new row");
    assert_eq!(
        (
            h[0].sequence,
            h[0].kind.as_str(),
            h[0].count,
            h[0].since.as_deref()
        ),
        (2, "unchanged", Some(1), Some(f1.digest.as_str()))
    );
    assert_eq!(
        h[0].summary,
        Some(Summary {
            pass: 1,
            fail: 1,
            warn: 0,
            error: 0
        }),
        "a notice has its report's summary"
    );
    assert_eq!(
        h[0].first_unchanged.as_deref(),
        Some(rfc3339(1300).as_str())
    );

    let n2 = a.unchanged(1600);
    commit(s, std::slice::from_ref(&n2));
    let h = ok(s.history("quiet", 10), "history");
    assert_eq!(h.len(), 2, "the second notice replaces the first");
    assert_eq!(
        (
            h[0].sequence,
            h[0].digest.as_str(),
            h[0].count,
            h[0].received_at
        ),
        (3, n2.digest.as_str(), Some(2), 1600),
        "the run's row now is the latest notice"
    );
    assert_eq!(
        h[0].first_unchanged.as_deref(),
        Some(rfc3339(1300).as_str()),
        "the run began at the first notice"
    );
    assert_eq!(h[0].scan_time, rfc3339(1600));
    assert_eq!(h[1].digest, f1.digest, "the full report stays");
    assert!(
        !ok(s.has_digest(&n1.digest), "has_digest"),
        "the replaced notice is gone"
    );
    assert_eq!(ok(s.envelope(&n1.digest), "envelope"), None);
    assert_eq!(
        ok(s.envelope(&n2.digest), "envelope"),
        Some(n2.envelope.clone()),
        "the latest notice is evidence"
    );
    let n = node(s, "quiet");
    assert_eq!(
        (
            n.last_sequence,
            n.last_digest.as_deref(),
            n.last_seen,
            n.last_scan_time.clone()
        ),
        (3, Some(n2.digest.as_str()), Some(1600), Some(rfc3339(1600))),
        "notices advance the chain"
    );
    assert_eq!(
        (n.last_full_digest.as_deref(), n.last_full_sequence),
        (Some(f1.digest.as_str()), Some(1))
    );
    assert_eq!(
        ok(s.drift(1001, None), "drift").events,
        vec![],
        "notices are not drift"
    );

    let mut at = 1600;
    for _ in 2..10 {
        at += 300;
        commit(s, &[a.unchanged(at)]);
    }
    let after_10 = ok(s.size_bytes(), "size_bytes");
    for _ in 10..1000 {
        at += 300;
        commit(s, &[a.unchanged(at)]);
    }
    let after_1000 = ok(s.size_bytes(), "size_bytes");
    eprintln!("unchanged run: {after_10} bytes after 10 notices, {after_1000} after 1,000");
    let h = ok(s.history("quiet", 10), "history");
    assert_eq!(h.len(), 2, "1,000 notices of one run are one row");
    assert_eq!((h[0].count, h[0].sequence), (Some(1000), 1001));
    assert!(
        after_1000 <= after_10 + 16 * 1024,
        "storage must not grow with unchanged notices: {after_10} bytes after 10, {after_1000} after 1,000"
    );

    let mut wrong_base = a.clone().unchanged(at + 300);
    if let AcceptedKind::Unchanged { since, .. } = &mut wrong_base.kind {
        *since = fake_hex("not a full report");
    }
    assert_conflict(
        s.commit(&[wrong_base]),
        "a notice whose base is not the last full report",
    );

    let f2 = a.full(at + 300, vec![check("4.2.1", P), check("4.2.2", P)]);
    commit(s, std::slice::from_ref(&f2));
    let n3 = a.unchanged(at + 600);
    commit(s, std::slice::from_ref(&n3));
    let h = ok(s.history("quiet", 10), "history");
    let got: Vec<_> = h
        .iter()
        .map(|e| (e.kind.as_str(), e.since.clone(), e.count))
        .collect();
    assert_eq!(
        got,
        [
            ("unchanged", Some(f2.digest.clone()), Some(1)),
            ("full", None, None),
            ("unchanged", Some(f1.digest.clone()), Some(1000)),
            ("full", None, None)
        ],
        "a full report ends the run; the next notice starts a new row"
    );
}

/// The stored chain links up with no gap: runs of notices collapse to their last notice,
/// which links to the run's full report and covers every sequence since it, and the next
/// full report links to that notice. `chain_links` returns it in order, and `walk` finds
/// no fault.
pub fn stored_chain_has_no_gap(s: &dyn Store) {
    let mut a = Agent::new("walker");
    a.enroll(s, true, 0);
    assert_eq!(ok(s.chain_links("walker"), "chain_links"), vec![]);
    assert!(matches!(
        s.chain_links("nobody"),
        Err(StoreError::NoSuchNode(_))
    ));
    let mut at = 1000;
    let mut tick = || {
        at += 300;
        at
    };
    let f1 = a.full(tick(), vec![check("4.2.1", P)]);
    commit(s, std::slice::from_ref(&f1));
    let mut last_notice = None;
    for _ in 0..5 {
        let n = a.unchanged(tick());
        commit(s, std::slice::from_ref(&n));
        last_notice = Some(n);
    }
    let n6 = last_notice.take().expect("a notice");
    let f7 = a.full(tick(), vec![check("4.2.1", F)]);
    commit(s, std::slice::from_ref(&f7));
    let f8 = a.full(tick(), vec![check("4.2.1", P)]);
    // A batch: a full report and two notices of its run.
    let n9 = a.unchanged(tick());
    let n10 = a.unchanged(tick());
    commit(s, &[f8.clone(), n9, n10.clone()]);

    let links = ok(s.chain_links("walker"), "chain_links");
    let full = |x: &Accepted| ChainLink {
        digest: x.digest.clone(),
        sequence: x.sequence,
        previous: x.previous.clone(),
        kind: LinkKind::Full,
    };
    let notice = |x: &Accepted, since: &Accepted| ChainLink {
        digest: x.digest.clone(),
        sequence: x.sequence,
        previous: Some(since.digest.clone()),
        kind: LinkKind::Unchanged {
            since: since.digest.clone(),
            since_sequence: since.sequence,
            count: x.sequence - since.sequence,
        },
    };
    assert_eq!(
        links,
        vec![
            full(&f1),
            notice(&n6, &f1),
            full(&f7),
            full(&f8),
            notice(&n10, &f8)
        ],
        "the stored chain, oldest first"
    );
    assert_eq!(
        (links[1].sequence, f7.previous.as_deref()),
        (6, Some(n6.digest.as_str())),
        "the full report after a run links to the run's stored notice"
    );
    assert_eq!(walk(None, &links), vec![], "the stored chain holds");
    assert_eq!(
        ok(s.chain_links("walker"), "chain_links").len(),
        ok(s.history("walker", 100), "history").len(),
        "one link per stored row"
    );
}

/// The commit re-checks the chain rule, so a notice that would leave a hole in the stored
/// chain is never stored, whatever the caller decided.
pub fn commit_refuses_a_notice_that_breaks_the_chain(s: &dyn Store) {
    let mut a = Agent::new("strict");
    a.enroll(s, true, 0);
    let f1 = a.full(1000, vec![check("4.2.1", P)]);
    let n2 = a.unchanged(1300);
    commit(s, &[f1.clone(), n2.clone()]);

    // The old rule: a notice linked to the notice before it (which is then replaced).
    let mut linked_to_notice = a.clone().unchanged(1600);
    linked_to_notice.previous = Some(n2.digest.clone());
    assert_conflict(
        s.commit(&[linked_to_notice]),
        "a notice whose previous is the last notice instead of its run's report",
    );
    let mut too_many = a.clone().unchanged(1600);
    if let AcceptedKind::Unchanged { count, .. } = &mut too_many.kind {
        *count = 7;
    }
    assert_conflict(
        s.commit(&[too_many]),
        "a notice that claims more scans than its sequence allows",
    );
    let mut skips = a.clone().unchanged(1600);
    skips.sequence = 9;
    if let AcceptedKind::Unchanged { count, .. } = &mut skips.kind {
        *count = 8;
    }
    assert_conflict(
        s.commit(&[skips]),
        "a notice that skips sequences (the old gap: 2, then 9)",
    );
    let mut skips_the_notice = a.clone().full(1600, vec![check("4.2.1", F)]);
    skips_the_notice.previous = Some(f1.digest.clone());
    assert_conflict(
        s.commit(&[skips_the_notice]),
        "a full report that links past the run's stored notice",
    );
    let n = node(s, "strict");
    assert_eq!(
        (n.last_sequence, n.last_digest.as_deref()),
        (2, Some(n2.digest.as_str())),
        "nothing was stored"
    );
    // The rule's own next notice is fine.
    let n3 = a.unchanged(1600);
    commit(s, std::slice::from_ref(&n3));
    assert_eq!(
        walk(None, &ok(s.chain_links("strict"), "chain_links")),
        vec![]
    );
}

/// A batch commits whole or not at all.
pub fn batch_atomicity(s: &dyn Store) {
    let (mut a, mut b, mut c) = (Agent::new("a"), Agent::new("b"), Agent::new("c"));
    for x in [&a, &b, &c] {
        x.enroll(s, true, 0);
    }
    let fresh = (a.clone(), b.clone(), c.clone());
    let ra = a.full(100, vec![check("4.2.1", F)]);
    let rb = b.full(100, vec![check("4.2.1", P)]);
    let mut rc = c.full(100, vec![check("4.2.1", P)]);
    rc.digest = ra.digest.clone();
    assert_conflict(
        s.commit(&[ra.clone(), rb.clone(), rc]),
        "a batch whose 3rd report repeats a digest",
    );
    let nothing = |why: &str| {
        for name in ["a", "b", "c"] {
            let n = node(s, name);
            assert_eq!(
                (n.last_sequence, n.last_digest, n.summary),
                (0, None, None),
                "{why}: {name}'s chain"
            );
            assert!(
                ok(s.history(name, 10), "history").is_empty(),
                "{why}: {name}'s history"
            );
        }
        assert!(
            !ok(s.has_digest(&ra.digest), "has_digest"),
            "{why}: a's report"
        );
        assert!(
            !ok(s.has_digest(&rb.digest), "has_digest"),
            "{why}: b's report"
        );
        assert!(
            ok(s.drift(0, None), "drift").events.is_empty(),
            "{why}: drift"
        );
        assert!(check_counts(s).is_empty(), "{why}: check counts");
        assert!(
            ok(s.failing("4.2.1"), "failing").is_empty(),
            "{why}: failing"
        );
    };
    nothing("after a duplicate digest");

    let mut dup_seq = fresh.0.clone().full(100, vec![check("4.2.1", P)]);
    dup_seq.digest = fake_hex("another statement with sequence 1");
    assert_conflict(
        s.commit(&[ra.clone(), rb.clone(), dup_seq]),
        "a batch whose 3rd report repeats a sequence",
    );
    nothing("after a repeated sequence");

    let mut unknown = Agent::new("ghost");
    assert_no_such_node(
        s.commit(&[ra.clone(), rb.clone(), unknown.full(100, vec![])]),
        "a batch with an unknown node",
    );
    nothing("after an unknown node");

    (a, b, c) = fresh;
    let batch = [
        a.full(100, vec![check("4.2.1", F)]),
        b.full(100, vec![check("4.2.1", P)]),
        c.full(100, vec![check("4.2.1", P)]),
    ];
    commit(s, &batch);
    for (r, name) in batch.iter().zip(["a", "b", "c"]) {
        assert_eq!(node(s, name).last_sequence, 1, "{name} committed");
        assert!(
            ok(s.has_digest(&r.digest), "has_digest"),
            "{name}'s report stored"
        );
    }
    assert_eq!(
        check_counts(s),
        vec![counts("4.2.1", 2, 1, 0, 0)],
        "the whole batch counts"
    );
}

/// The fleet summary: node counts, staleness by interval, per-check counts in CIS order.
pub fn fleet_summary(s: &dyn Store) {
    let three = |x: Status, y: Status, z: CheckState| vec![check("4.2.1", x), check("4.2.2", y), z];
    let mut n1 = Agent::new("n1");
    let mut n2 = Agent::new("n2");
    let mut n3 = Agent::with_interval("n3", 60);
    let n4 = Agent::new("n4");
    let mut n5 = Agent::new("n5");
    let mut n6 = Agent::new("n6");
    let pending = Agent::new("p");
    let mut revoked = Agent::new("r");
    for x in [&n1, &n2, &n3, &n4, &n5, &n6, &revoked] {
        x.enroll(s, true, 0);
    }
    pending.enroll(s, false, 0);

    let empty = ok(s.fleet_summary(0), "fleet_summary");
    assert!(empty.checks.is_empty(), "no reports, no check counts");
    assert_eq!(
        empty.nodes.stale, 7,
        "approved nodes that never reported are stale"
    );

    commit(
        s,
        &[
            n1.full(1000, three(P, P, check("4.2.10", P))),
            n2.full(1000, three(P, F, check("4.2.10", P))),
            n3.full(1000, three(P, P, check("4.2.10", W))),
            n5.full(100, three(E, P, check("4.2.10", P))),
            n6.full(1000, three(P, P, unscored("4.2.10", F))),
            revoked.full(1000, three(F, F, check("4.2.10", F))),
        ],
    );
    ok(s.set_status("r", NodeStatus::Revoked, 1100), "revoke r");

    let f = ok(s.fleet_summary(1200), "fleet_summary");
    assert_eq!(
        f.nodes,
        NodeCounts {
            total: 8,
            approved: 6,
            pending: 1,
            revoked: 1,
            compliant: 2,
            failing: 1,
            stale: 3
        },
        "at 1200: n1, n6 compliant (an unscored failure does not count); n2 failing; \
         n3 (60s interval), n4 (never) and n5 (failing, but silent) stale"
    );
    assert_eq!(
        f.checks,
        vec![counts("4.2.1", 4, 0, 0, 1), counts("4.2.2", 4, 1, 0, 0), counts("4.2.10", 3, 1, 1, 0)],
        "per-check counts over approved nodes, stale ones included, in CIS order (4.2.2 before 4.2.10)"
    );
    assert_eq!(
        ok(s.fleet_summary(1900), "fleet_summary").nodes.compliant,
        2,
        "n1 at exactly 3 intervals is not stale"
    );
    let late = ok(s.fleet_summary(1901), "fleet_summary").nodes;
    assert_eq!(
        (late.compliant, late.failing, late.stale),
        (0, 0, 6),
        "after 3 intervals everyone is stale"
    );

    // Postures change: n2 fixes 4.2.2, n1 breaks 4.2.1; n5 comes back.
    commit(
        s,
        &[
            n2.full(1300, three(P, P, check("4.2.10", P))),
            n1.full(1300, three(F, P, check("4.2.10", P))),
            n5.full(1300, three(P, P, check("4.2.10", P))),
        ],
    );
    let f = ok(s.fleet_summary(1400), "fleet_summary");
    assert_eq!(
        (f.nodes.compliant, f.nodes.failing, f.nodes.stale),
        (3, 1, 2),
        "n2, n5, n6 compliant; n1 failing; n3, n4 stale"
    );
    assert_eq!(
        f.checks,
        vec![
            counts("4.2.1", 4, 1, 0, 0),
            counts("4.2.2", 5, 0, 0, 0),
            counts("4.2.10", 3, 1, 1, 0)
        ],
        "counts follow each node's latest report"
    );
    assert_eq!(
        ok(s.list_nodes(), "list_nodes")
            .iter()
            .map(|n| (n.name.as_str(), n.failing.clone()))
            .collect::<Vec<_>>(),
        [
            ("n1", vec!["4.2.1".to_string()]),
            ("n2", vec![]),
            ("n3", vec![]),
            ("n4", vec![]),
            ("n5", vec![]),
            ("n6", vec![]),
            ("p", vec![]),
            ("r", vec!["4.2.1".into(), "4.2.2".into(), "4.2.10".into()])
        ],
        "each node's failing list, in CIS order"
    );
}

/// `failing(cis)`: approved nodes whose latest state fails (or errors on) that check.
pub fn failing_by_check(s: &dyn Store) {
    let mut agents: Vec<Agent> = ["d", "b", "a", "c", "e"]
        .iter()
        .map(|n| Agent::new(n))
        .collect();
    for x in &agents {
        x.enroll(s, true, 0);
    }
    let postures = [
        vec![check("4.2.6", F)],    // d
        vec![check("4.2.6", E)],    // b: an error counts as failing
        vec![unscored("4.2.6", F)], // a: unscored, still failing that check
        vec![check("4.2.6", P)],    // c
        vec![check("4.2.6", F)],    // e: revoked below
    ];
    let batch: Vec<Accepted> = agents
        .iter_mut()
        .zip(postures)
        .map(|(x, p)| x.full(100, p))
        .collect();
    commit(s, &batch);
    ok(s.set_status("e", NodeStatus::Revoked, 200), "revoke e");
    assert_eq!(
        names(&ok(s.failing("4.2.6"), "failing")),
        ["a", "b", "d"],
        "by name, approved only"
    );
    assert!(
        ok(s.failing("9.9.9"), "failing").is_empty(),
        "an unknown check fails nowhere"
    );

    let d = &mut agents[0];
    commit(s, &[d.full(300, vec![check("4.2.6", P)])]);
    assert_eq!(
        names(&ok(s.failing("4.2.6"), "failing")),
        ["a", "b"],
        "only the latest state counts"
    );
    let b = ok(s.failing("4.2.6"), "failing").remove(1);
    assert_eq!(b, node(s, "b"), "failing returns whole records");
}

/// `drift(since)`: every check change at or after a time, oldest first.
pub fn drift_since(s: &dyn Store) {
    let mut x = Agent::new("x");
    let mut y = Agent::new("y");
    x.enroll(s, true, 0);
    y.enroll(s, true, 0);
    commit(s, &[x.full(100, vec![check("1.1", P), check("1.2", F)])]);
    commit(s, &[y.full(150, vec![check("1.1", F)])]);
    let x2 = x.full(200, vec![check("1.1", F), check("1.2", F)]);
    commit(s, std::slice::from_ref(&x2));
    commit(s, &[x.unchanged(300)]);
    commit(s, &[y.full(350, vec![check("1.1", F)])]);
    let x4 = x.full(400, vec![check("1.1", F), check("1.2", P)]);
    commit(s, std::slice::from_ref(&x4));

    let all = ok(s.drift(0, None), "drift").events;
    let got: Vec<_> = all
        .iter()
        .map(|d| (d.node.as_str(), d.cis.as_str(), d.from, d.to, d.at))
        .collect();
    assert_eq!(
        got,
        [
            ("x", "1.1", None, P, 100),
            ("x", "1.2", None, F, 100),
            ("y", "1.1", None, F, 150),
            ("x", "1.1", Some(P), F, 200),
            ("x", "1.2", Some(F), P, 400)
        ],
        "every change, oldest first; unchanged checks and notices are not drift"
    );
    assert_eq!(
        all[3].digest, x2.digest,
        "drift names the report that changed the check"
    );
    let from_200: Vec<_> = ok(s.drift(200, None), "drift")
        .events
        .into_iter()
        .map(|d| d.at)
        .collect();
    assert_eq!(from_200, [200, 400], "since is inclusive");
    assert_eq!(ok(s.drift(201, None), "drift").events.len(), 1);
    assert_eq!(
        ok(s.drift(401, None), "drift").events,
        vec![],
        "nothing after the last change"
    );
    assert_eq!(ok(s.drift(400, None), "drift").events[0].digest, x4.digest);
}

/// `drift(since, Some(limit))`: the newest `limit` changes at or after a time, oldest
/// first, and whether older ones since then were left out.
pub fn drift_newest(s: &dyn Store) {
    let mut x = Agent::new("x");
    let mut y = Agent::new("y");
    x.enroll(s, true, 0);
    y.enroll(s, true, 0);
    // Three changes in one batch at 100 (their order recorded decides among them), then
    // one at 200 and one at 300.
    commit(
        s,
        &[
            x.full(100, vec![check("1.1", P), check("1.2", F)]),
            y.full(100, vec![check("1.1", F)]),
        ],
    );
    commit(s, &[x.full(200, vec![check("1.1", F), check("1.2", F)])]);
    commit(s, &[y.full(300, vec![check("1.1", P)])]);
    let key = |p: &super::DriftPage| -> (Vec<(String, String, i64)>, bool) {
        (
            p.events
                .iter()
                .map(|d| (d.node.clone(), d.cis.clone(), d.at))
                .collect(),
            p.more,
        )
    };
    let row = |n: &str, c: &str, at: i64| (n.to_string(), c.to_string(), at);
    let all = ok(s.drift(0, None), "drift");
    assert_eq!(
        key(&all),
        (
            vec![
                row("x", "1.1", 100),
                row("x", "1.2", 100),
                row("y", "1.1", 100),
                row("x", "1.1", 200),
                row("y", "1.1", 300),
            ],
            false
        ),
        "without a limit: everything, and never more"
    );
    for limit in 0..=7u32 {
        let page = ok(s.drift(0, Some(limit)), "drift with a limit");
        let n = all.events.len().min(limit as usize);
        assert_eq!(
            page.events,
            all.events[all.events.len() - n..],
            "limit {limit}: the newest {n}, oldest first"
        );
        assert_eq!(
            page.more,
            (limit as usize) < all.events.len(),
            "limit {limit}: more only when some were left out"
        );
    }
    assert_eq!(
        key(&ok(s.drift(0, Some(2)), "drift")),
        (vec![row("x", "1.1", 200), row("y", "1.1", 300)], true)
    );
    assert_eq!(
        key(&ok(s.drift(100, Some(4)), "drift")),
        (
            vec![
                row("x", "1.2", 100),
                row("y", "1.1", 100),
                row("x", "1.1", 200),
                row("y", "1.1", 300),
            ],
            true
        ),
        "within one second, the order recorded decides which are newest"
    );
    assert_eq!(
        key(&ok(s.drift(200, Some(2)), "drift")),
        (vec![row("x", "1.1", 200), row("y", "1.1", 300)], false),
        "older changes before since are not more"
    );
    assert_eq!(
        key(&ok(s.drift(200, Some(1)), "drift")),
        (vec![row("y", "1.1", 300)], true)
    );
    assert_eq!(
        ok(s.drift(301, Some(1)), "drift"),
        super::DriftPage::default(),
        "nothing after the last change"
    );
    assert_eq!(
        ok(s.drift(0, Some(u32::MAX)), "drift"),
        all,
        "the largest limit is no limit"
    );
}

/// Chain events round-trip, per node, in the order recorded.
pub fn chain_events(s: &dyn Store) {
    let mut a = Agent::new("a");
    Agent::new("b").enroll(s, true, 0);
    Agent::new("quiet").enroll(s, true, 0);
    a.enroll(s, true, 0);
    commit(s, &[a.full(100, vec![check("4.2.1", P)])]);
    let event = |node: &str, kind: &str, at: i64, expected: u64, got: u64| ChainEvent {
        node: node.into(),
        kind: kind.into(),
        at,
        last_at: at,
        count: 1,
        expected_sequence: expected,
        got_sequence: got,
        digest: fake_hex(&format!("{node} {kind} {at}")),
        detail: format!("{kind}: expected sequence {expected}, got {got}"),
    };
    let e1 = event("a", "chain_gap", 200, 2, 5);
    let e2 = event("b", "replay", 210, 1, 1);
    let e3 = event("a", "chain_fork", 220, 2, 2);
    for e in [&e1, &e2, &e3] {
        ok(s.record_chain_event(e), "record_chain_event");
    }
    assert_eq!(
        ok(s.chain_events("a"), "chain_events"),
        vec![e1, e3],
        "a's events, in order"
    );
    assert_eq!(
        ok(s.chain_events("b"), "chain_events"),
        vec![e2],
        "b's events"
    );
    assert_eq!(
        ok(s.chain_events("quiet"), "chain_events"),
        vec![],
        "a node without events"
    );
    assert_eq!(
        node(s, "a").last_sequence,
        1,
        "recording a break does not touch the chain"
    );
    assert_no_such_node(
        s.record_chain_event(&event("ghost", "replay", 1, 1, 1)),
        "an unknown node's event",
    );
    assert_no_such_node(s.chain_events("ghost"), "an unknown node's events");
}

/// The same refused statement again and again is one record with a count and its first
/// and last time, not a row per request (a re-sent envelope once filled a disk).
pub fn chain_events_are_counted(s: &dyn Store) {
    let a = Agent::new("a");
    a.enroll(s, true, 0);
    let event = |at: i64, digest: &str| ChainEvent {
        node: "a".into(),
        kind: "replay".into(),
        at,
        last_at: at,
        count: 1,
        expected_sequence: 2,
        got_sequence: 1,
        digest: digest.into(),
        detail: format!("replay at {at}"),
    };
    let one = fake_hex("one");
    for at in 100..1100 {
        ok(s.record_chain_event(&event(at, &one)), "record_chain_event");
    }
    ok(
        s.record_chain_event(&event(2000, &fake_hex("two"))),
        "record",
    );
    let events = ok(s.chain_events("a"), "chain_events");
    assert_eq!(events.len(), 2, "one record per digest: {events:?}");
    assert_eq!(
        (events[0].at, events[0].last_at, events[0].count),
        (100, 1099, 1000),
        "first time, last time, count"
    );
    assert_eq!(
        events[0].detail, "replay at 100",
        "the first occurrence's detail"
    );
    assert_eq!((events[1].count, events[1].at), (1, 2000));
    // Another kind with the same digest is another record.
    let mut gap = event(3000, &one);
    gap.kind = "chain_gap".into();
    ok(s.record_chain_event(&gap), "record");
    assert_eq!(ok(s.chain_events("a"), "chain_events").len(), 3);
}

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

/// `failing_checks`: every failing or erroring check (scored or not) of approved nodes'
/// latest state, by node then CIS order, with the time it took that status.
pub fn failing_checks(s: &dyn Store) {
    let mut agents: Vec<Agent> = ["b", "a", "p", "r"].iter().map(|n| Agent::new(n)).collect();
    for (i, x) in agents.iter().enumerate() {
        x.enroll(s, i != 2, 0); // p stays pending
    }
    let postures = [
        vec![check("4.2.10", F), check("4.2.2", E), check("4.2.3", P)], // b
        vec![unscored("4.2.13", F), check("4.2.1", W)],                 // a: unscored fails
        vec![check("4.2.1", F)],                                        // p: pending
        vec![check("4.2.1", F)],                                        // r: revoked below
    ];
    let approved: Vec<Accepted> = agents
        .iter_mut()
        .zip(postures)
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, (x, p))| x.full(100, p))
        .collect();
    commit(s, &approved);
    ok(s.set_status("r", NodeStatus::Revoked, 150), "revoke r");
    let got = ok(s.failing_checks(), "failing_checks");
    let row = |node: &str, cis: &str, status: Status, since_at: i64| FailingCheck {
        node: node.into(),
        id: format!("kubelet-{}", cis.replace('.', "-")),
        cis: cis.into(),
        status,
        since_at,
    };
    assert_eq!(
        got,
        vec![
            row("a", "4.2.13", F, 100),
            row("b", "4.2.2", E, 100),
            row("b", "4.2.10", F, 100),
        ],
        "approved nodes only, unscored too, errors too, warn and pass not"
    );
    // The latest state only; a check that stays failing keeps its since_at.
    let b = &mut agents[0];
    commit(
        s,
        &[b.full(300, vec![check("4.2.10", F), check("4.2.2", P)])],
    );
    let got = ok(s.failing_checks(), "failing_checks");
    assert_eq!(
        got,
        vec![row("a", "4.2.13", F, 100), row("b", "4.2.10", F, 100)],
        "after b's next report"
    );
}

/// Exceptions: add (node or all), list, revoke once, and the append-only log of both.
pub fn exceptions(s: &dyn Store) {
    Agent::new("node-a").enroll(s, true, 0);
    let new = |node: Option<&str>, until: i64| NewException {
        check_id: "kubelet-pod-pids-limit".into(),
        cis: "4.2.13".into(),
        node: node.map(str::to_string),
        until,
        reason: "vendor fix due".into(),
        by: "alice".into(),
    };
    assert!(ok(s.exceptions(), "exceptions").is_empty());
    let one = ok(s.add_exception(&new(Some("node-a"), 5000), 100), "add");
    assert_eq!(one.node.as_deref(), Some("node-a"));
    assert_eq!((one.until, one.created_at), (5000, 100));
    assert_eq!(one.created_by, "alice");
    assert_eq!(one.revoked_at, None);
    assert!(
        one.active(4999) && !one.active(5000),
        "ends at until, exclusive"
    );
    let two = ok(s.add_exception(&new(None, 9000), 200), "add for all nodes");
    assert!(two.id > one.id, "ids increase");
    assert!(two.covers("any-node", "kubelet-pod-pids-limit"));
    assert!(!one.covers("node-b", "kubelet-pod-pids-limit"));
    assert!(!one.covers("node-a", "kubelet-anonymous-auth"));

    // A node that is not enrolled: refused, nothing recorded.
    assert_no_such_node(
        s.add_exception(&new(Some("nobody"), 5000), 300),
        "unknown node",
    );
    assert_eq!(
        ok(s.exceptions(), "exceptions"),
        vec![one.clone(), two.clone()]
    );

    let revoked = ok(s.revoke_exception(one.id, "bob", "fixed", 400), "revoke")
        .expect("the exception exists");
    assert_eq!(revoked.revoked_at, Some(400));
    assert_eq!(revoked.revoked_by.as_deref(), Some("bob"));
    assert_eq!(revoked.revoke_reason.as_deref(), Some("fixed"));
    assert!(!revoked.active(401));
    assert_conflict(
        s.revoke_exception(one.id, "bob", "again", 500),
        "revoke twice",
    );
    assert_eq!(
        ok(
            s.revoke_exception(one.id + 1000, "bob", "x", 500),
            "revoke unknown"
        ),
        None
    );
    let all = ok(s.exceptions(), "exceptions");
    assert_eq!(all, vec![revoked, two.clone()], "revoked ones are kept");

    let log = ok(s.exception_events(), "exception_events");
    let summary: Vec<(i64, &str, i64, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.exception_id,
                e.action.as_str(),
                e.at,
                e.by.as_str(),
                e.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (one.id, "add", 100, "alice", "vendor fix due"),
            (two.id, "add", 200, "alice", "vendor fix due"),
            (one.id, "revoke", 400, "bob", "fixed"),
        ],
        "every add and revoke, in order, and nothing for refused ones"
    );
    assert_eq!(log[0].node.as_deref(), Some("node-a"));
    assert_eq!((log[1].node.as_deref(), log[1].until), (None, 9000));
    assert_eq!(log[2].check_id, "kubelet-pod-pids-limit");
}

/// `stale_nodes(now)`: approved nodes silent for more than 3 intervals, or never reported.
pub fn stale_nodes(s: &dyn Store) {
    let mut quiet = Agent::with_interval("quiet", 100);
    let mut fresh = Agent::with_interval("fresh", 100);
    let never = Agent::new("never");
    let pending = Agent::new("pending");
    for x in [&quiet, &fresh, &never] {
        x.enroll(s, true, 0);
    }
    pending.enroll(s, false, 0);
    commit(s, &[quiet.full(1000, vec![check("4.2.1", F)])]);
    commit(s, &[fresh.full(1000, vec![check("4.2.1", P)])]);
    assert_eq!(
        ok(s.stale_nodes(1300), "stale"),
        ["never"],
        "300 s is 3 intervals"
    );
    commit(s, &[fresh.unchanged(1250)]);
    assert_eq!(
        ok(s.stale_nodes(1301), "stale"),
        ["never", "quiet"],
        "by name; a failing node is stale too; pending nodes are not"
    );
    let summary = ok(s.fleet_summary(1301), "summary");
    assert_eq!(summary.nodes.stale, 2, "the same rule as fleet_summary");
}

/// The evidence export's reads: every stored statement of a range in node, then sequence
/// order with its exact bytes; the anchor before a range; every key a node held and when.
pub fn evidence_export(s: &dyn Store) {
    use super::{ExportFilter, StoredStatement};
    let mut a = Agent::new("node-a");
    let mut b = Agent::new("node-b");
    a.enroll(s, true, 10);
    b.enroll(s, true, 10);
    let a1 = a.full(100, vec![check("4.2.1", P)]);
    let b1 = b.full(110, vec![check("4.2.1", F)]);
    let a2 = a.unchanged(200);
    let a3 = a.full(300, vec![check("4.2.1", F)]);
    commit(s, &[a1.clone(), b1.clone(), a2.clone(), a3.clone()]);

    let walk = |filter: &ExportFilter| -> Vec<StoredStatement> {
        let mut out = Vec::new();
        ok(
            s.for_each_statement(filter, &mut |st| {
                out.push(st);
                Ok(())
            }),
            "for_each_statement",
        );
        out
    };
    let all = walk(&ExportFilter::default());
    let order: Vec<(&str, u64)> = all
        .iter()
        .map(|st| (st.node.as_str(), st.sequence))
        .collect();
    assert_eq!(
        order,
        vec![("node-a", 1), ("node-a", 2), ("node-a", 3), ("node-b", 1)],
        "node name, then sequence"
    );
    assert_eq!(all[0].envelope, a1.envelope, "the exact envelope bytes");
    assert_eq!(all[0].digest, a1.digest);
    assert_eq!(all[1].kind, "unchanged");
    assert_eq!(all[1].previous.as_deref(), Some(a1.digest.as_str()));
    assert_eq!((all[2].kind.as_str(), all[2].received_at), ("full", 300));
    assert_eq!(all[2].scan_time, a3.scan_time);

    let range = walk(&ExportFilter {
        since: Some(200),
        until: Some(300),
        nodes: vec![],
    });
    assert_eq!(
        range
            .iter()
            .map(|st| st.digest.as_str())
            .collect::<Vec<_>>(),
        vec![a2.digest.as_str()],
        "since is inclusive, until exclusive"
    );
    let only_b = walk(&ExportFilter {
        nodes: vec!["node-b".into()],
        ..ExportFilter::default()
    });
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].digest, b1.digest);
    assert_no_such_node(
        s.for_each_statement(
            &ExportFilter {
                nodes: vec!["ghost".into()],
                ..ExportFilter::default()
            },
            &mut |_| Ok(()),
        ),
        "an unknown node in the filter",
    );
    // An error from the callback stops the walk and comes back.
    let mut seen = 0;
    let stopped = s.for_each_statement(&ExportFilter::default(), &mut |_| {
        seen += 1;
        Err(StoreError::Backend("stop".into()))
    });
    assert!(
        matches!(stopped, Err(StoreError::Backend(_))),
        "{stopped:?}"
    );
    assert_eq!(seen, 1, "the walk stops at the first error");

    let anchor = ok(s.chain_anchor("node-a", 300), "chain_anchor")
        .unwrap_or_else(|| panic!("node-a has statements before 300"));
    assert_eq!(
        (anchor.digest.as_str(), anchor.sequence),
        (a2.digest.as_str(), 2)
    );
    assert_eq!(ok(s.chain_anchor("node-a", 100), "chain_anchor"), None);
    assert_no_such_node(
        s.chain_anchor("ghost", 100),
        "chain_anchor of an unknown node",
    );

    let old = a.key_id.clone();
    let new = fake_hex("node-a's second key");
    ok(
        s.rotate_key("node-a", &old, &new, &public_key_for(&new), 400),
        "rotate",
    );
    let keys = ok(s.key_history("node-a"), "key_history");
    let periods: Vec<(&str, i64, Option<i64>)> = keys
        .iter()
        .map(|k| (k.key_id.as_str(), k.added_at, k.retired_at))
        .collect();
    assert_eq!(
        periods,
        vec![(old.as_str(), 10, Some(400)), (new.as_str(), 400, None)],
        "every key, oldest first, with its validity period"
    );
    assert_eq!(keys[0].public_key, a.public_key());
    assert_eq!(ok(s.key_history("node-b"), "key_history").len(), 1);
    assert_no_such_node(s.key_history("ghost"), "key_history of an unknown node");
}
