//! The stored history audit behind `nodeproof-collector chain`: reads each node's stored
//! chain (`Store::chain_links`) and walks it with `nodeproof_proto::chain::walk`, the rule
//! the acceptance enforces, so an operator (or an auditor with a copy of the database) can
//! check that what is stored links up with no gap. Pure apart from the store read.

use nodeproof_proto::chain::{walk, ChainFault, LinkKind};
use serde::Serialize;

use crate::store::{Store, StoreResult};
use crate::text::escape;

/// One node's stored chain, walked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeChain {
    pub node: String,
    /// Stored statements.
    pub stored: usize,
    /// Of which full reports; the rest are unchanged notices (one per run).
    pub full: usize,
    /// Scans the chain stands for: the last stored sequence (0 when empty).
    pub last_sequence: u64,
    /// Every fault `walk` found; empty when the chain holds.
    pub faults: Vec<ChainFault>,
}

impl NodeChain {
    pub fn holds(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Walks the stored chain of each of `nodes`, or of every node when `nodes` is empty
/// (NoSuchNode for a name the store does not know).
pub fn audit(store: &dyn Store, nodes: &[String]) -> StoreResult<Vec<NodeChain>> {
    let names: Vec<String> = if nodes.is_empty() {
        store.list_nodes()?.into_iter().map(|n| n.name).collect()
    } else {
        nodes.to_vec()
    };
    names
        .into_iter()
        .map(|node| {
            let links = store.chain_links(&node)?;
            Ok(NodeChain {
                stored: links.len(),
                full: links
                    .iter()
                    .filter(|l| matches!(l.kind, LinkKind::Full))
                    .count(),
                last_sequence: links.last().map_or(0, |l| l.sequence),
                faults: walk(None, &links),
                node,
            })
        })
        .collect()
}

/// One line per node, then one indented line per fault.
pub fn render_text(chains: &[NodeChain]) -> String {
    let mut out = String::new();
    for c in chains {
        let verdict = if c.holds() {
            "holds".to_string()
        } else {
            format!("BROKEN ({} fault(s))", c.faults.len())
        };
        out.push_str(&format!(
            "{}: {verdict}: {} stored statement(s) ({} full report(s), {} unchanged notice(s)) \
             for sequences 1..={}\n",
            escape(&c.node),
            c.stored,
            c.full,
            c.stored - c.full,
            c.last_sequence
        ));
        for f in &c.faults {
            out.push_str(&format!("  {}\n", escape(&f.to_string())));
        }
    }
    if chains.is_empty() {
        out.push_str("no nodes\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{check, Agent};
    use crate::store::sqlite::SqliteStore;
    use nodeproof_proto::Status;

    #[test]
    fn a_clean_chain_holds_and_a_missing_node_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("a.db")).unwrap();
        let mut a = Agent::new("n1");
        a.enroll(&store, true, 0);
        let f = a.full(1000, vec![check("4.2.1", Status::Pass)]);
        let n = a.unchanged(1300);
        let n2 = a.unchanged(1600);
        store.commit(&[f, n, n2]).unwrap();
        let chains = audit(&store, &[]).unwrap();
        assert_eq!(chains.len(), 1);
        assert!(chains[0].holds(), "{:?}", chains[0].faults);
        assert_eq!(
            (chains[0].stored, chains[0].full, chains[0].last_sequence),
            (2, 1, 3)
        );
        let text = render_text(&chains);
        assert!(text.starts_with("n1: holds: 2 stored"), "{text}");
        assert!(audit(&store, &["ghost".to_string()]).is_err());
    }

    #[test]
    fn faults_are_listed_one_per_line() {
        let chains = vec![NodeChain {
            node: "n\u{1b}[31m".into(),
            stored: 2,
            full: 2,
            last_sequence: 4,
            faults: vec![ChainFault::Gap {
                after: 2,
                next: 4,
                missing: 1,
                digest: "d".into(),
            }],
        }];
        let text = render_text(&chains);
        assert!(text.contains("BROKEN (1 fault(s))"), "{text}");
        assert!(text.contains("\n  gap: after sequence 2"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "terminal escapes are escaped: {text}"
        );
    }
}
