//! The evidence export story: the reads behind `nodeproof evidence export`.

use nodeproof_proto::Status;

use super::fixtures::{assert_no_such_node, check, commit, fake_hex, ok, public_key_for, Agent};
use crate::store::{Store, StoreError};

use Status::{Fail as F, Pass as P};

/// The evidence export's reads: every stored statement of a range in node, then sequence
/// order with its exact bytes; the anchor before a range; every key a node held and when.
pub fn evidence_export(s: &dyn Store) {
    use crate::store::{ExportFilter, StoredStatement};
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
