//! The exceptions story: add, list, revoke, and the append-only log.

use super::fixtures::{assert_conflict, assert_no_such_node, ok, Agent};
use crate::store::{NewException, Store};

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
