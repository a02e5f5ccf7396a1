//! Stories of the fleet questions: the summary, failing nodes and checks, drift, stale
//! nodes.

use nodeproof_proto::Status;

use super::fixtures::{check, commit, counts, names, node, ok, unscored, Agent};
use crate::store::{Accepted, CheckState, FailingCheck, NodeCounts, NodeStatus, Store};

use Status::{Error as E, Fail as F, Pass as P, Warn as W};

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
    let key = |p: &crate::store::DriftPage| -> (Vec<(String, String, i64)>, bool) {
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
        crate::store::DriftPage::default(),
        "nothing after the last change"
    );
    assert_eq!(
        ok(s.drift(0, Some(u32::MAX)), "drift"),
        all,
        "the largest limit is no limit"
    );
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
