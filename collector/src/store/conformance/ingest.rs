//! Stories of ingest: full reports, unchanged runs, the stored chain and its rule, batch
//! atomicity, and the chain events recorded for refused statements.

use nodeproof_proto::chain::{walk, ChainLink, LinkKind};
use nodeproof_proto::{Status, Summary};

use super::fixtures::{
    assert_conflict, assert_no_such_node, check, check_counts, commit, counts, fake_hex, node, ok,
    rfc3339, unscored, Agent,
};
use crate::store::{Accepted, AcceptedKind, ChainEvent, Store, StoreError};

use Status::{Error as E, Fail as F, Pass as P, Warn as W};

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
