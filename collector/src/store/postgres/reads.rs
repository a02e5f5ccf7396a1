//! The PostgreSQL store's queries: nodes, history, the fleet questions. Each runs in one
//! read-only snapshot; the fleet summary reads the counters and the stale index ranges,
//! never the history or a scan of the fleet, as on SQLite.

use std::collections::HashMap;

use postgres::Row;

use super::{check_status, get, get_json, get_opt_u64, get_u64, node_status, StoreResult, Tx};
use crate::store::rules::{counters_verdict, CounterRows, FleetCounts};
use crate::store::sqlite::cis_order;
use crate::store::{
    ChainEvent, CheckCounts, DriftEvent, DriftPage, ExceptionEvent, ExceptionRecord, FailingCheck,
    FleetSummary, HistoryEntry, NodeKey, NodeRecord, PendingClaim, StoreError,
};

pub(super) fn node_from_row(row: &Row) -> StoreResult<NodeRecord> {
    let status: String = get(row, 3)?;
    Ok(NodeRecord {
        name: get(row, 0)?,
        key_id: get(row, 1)?,
        public_key: get(row, 2)?,
        status: node_status(&status)?,
        enrolled_at: get(row, 4)?,
        last_sequence: get_u64(row, 5, "sequence")?,
        last_digest: get(row, 6)?,
        last_scan_time: get(row, 7)?,
        last_seen: get(row, 8)?,
        interval_secs: get_opt_u64(row, 9, "interval")?,
        last_full_digest: get(row, 10)?,
        last_full_sequence: get_opt_u64(row, 11, "sequence")?,
        posture: get(row, 12)?,
        summary: get_json(row, 13)?,
        failing: get_json(row, 14)?.unwrap_or_default(),
    })
}

pub(super) fn node_named(tx: &mut Tx<'_>, name: &str) -> StoreResult<Option<NodeRecord>> {
    tx.opt(select_node!("WHERE name = $1"), &[&name])?
        .map(|r| node_from_row(&r))
        .transpose()
}

/// [`node_named`], taking the node's row lock until the transaction ends: every write
/// that decides on a node's state reads it this way, so two collectors deciding on the
/// same node take turns.
pub(super) fn node_for_update(tx: &mut Tx<'_>, name: &str) -> StoreResult<Option<NodeRecord>> {
    tx.opt(select_node!("WHERE name = $1 FOR UPDATE"), &[&name])?
        .map(|r| node_from_row(&r))
        .transpose()
}

pub(super) fn node_with_key(tx: &mut Tx<'_>, key_id: &str) -> StoreResult<Option<NodeRecord>> {
    tx.opt(select_node!("WHERE key_id = $1"), &[&key_id])?
        .map(|r| node_from_row(&r))
        .transpose()
}

pub(super) fn node_key_in(tx: &mut Tx<'_>, key_id: &str) -> StoreResult<Option<NodeKey>> {
    tx.opt(
        "SELECT name, key_id, public_key, status FROM nodes WHERE key_id = $1",
        &[&key_id],
    )?
    .map(|r| {
        let status: String = get(&r, 3)?;
        Ok(NodeKey {
            name: get(&r, 0)?,
            key_id: get(&r, 1)?,
            public_key: get(&r, 2)?,
            status: node_status(&status)?,
        })
    })
    .transpose()
}

pub(super) fn node_exists(tx: &mut Tx<'_>, name: &str) -> StoreResult<bool> {
    Ok(tx
        .opt("SELECT 1 FROM nodes WHERE name = $1", &[&name])?
        .is_some())
}

pub(super) fn list_nodes(tx: &mut Tx<'_>) -> StoreResult<Vec<NodeRecord>> {
    // Sorted here, in the byte order SQLite and Rust sort by (`ORDER BY name COLLATE "C"`
    // made the server sort every row, 100,000 rows of ~500 bytes spilling to disk under the
    // default work_mem; names are unique, so the order is the same).
    let mut nodes: Vec<NodeRecord> = tx
        .query(select_node!(""), &[])?
        .iter()
        .map(node_from_row)
        .collect::<StoreResult<_>>()?;
    nodes.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

pub(super) fn pending_claim_from_row(r: &Row) -> StoreResult<PendingClaim> {
    Ok(PendingClaim {
        name: get(r, 0)?,
        key_id: get(r, 1)?,
        source: get(r, 2)?,
        claimed_at: get(r, 3)?,
    })
}

pub(super) fn pending_claims(tx: &mut Tx<'_>) -> StoreResult<Vec<PendingClaim>> {
    tx.query(
        "SELECT * FROM (
             SELECT name, key_id, claim_source, enrolled_at FROM nodes
                 WHERE status = 'pending'
             UNION ALL
             SELECT name, key_id, source, claimed_at FROM extra_claims) AS c
         ORDER BY enrolled_at, name COLLATE \"C\", key_id COLLATE \"C\"",
        &[],
    )?
    .iter()
    .map(pending_claim_from_row)
    .collect()
}

pub(super) fn chain_events(tx: &mut Tx<'_>, node: &str) -> StoreResult<Vec<ChainEvent>> {
    let events: Vec<ChainEvent> = tx
        .query(
            "SELECT node, kind, first_at, expected_sequence, got_sequence, digest, detail,
                    last_at, count
             FROM chain_events WHERE node = $1 ORDER BY id",
            &[&node],
        )?
        .iter()
        .map(|r| {
            Ok(ChainEvent {
                node: get(r, 0)?,
                kind: get(r, 1)?,
                at: get(r, 2)?,
                expected_sequence: get_u64(r, 3, "sequence")?,
                got_sequence: get_u64(r, 4, "sequence")?,
                digest: get(r, 5)?,
                detail: get(r, 6)?,
                last_at: get(r, 7)?,
                count: get_u64(r, 8, "count")?,
            })
        })
        .collect::<StoreResult<_>>()?;
    if events.is_empty() && !node_exists(tx, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    Ok(events)
}

pub(super) fn fleet_summary(tx: &mut Tx<'_>, now: i64) -> StoreResult<FleetSummary> {
    let mut counts = FleetCounts::default();
    for r in tx.query("SELECT status, failing_any, n FROM node_tally", &[])? {
        let status: String = get(&r, 0)?;
        let failing_any: bool = get(&r, 1)?;
        let n = get_u64(&r, 2, "node tally")?;
        counts.add(node_status(&status)?, failing_any, n);
    }
    // Index ranges of nodes_fleet: the cost of the stale part of the fleet.
    let r = tx.one(
        "SELECT
             (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                  AND failing_any = false AND stale_after < $1)
           + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                  AND failing_any = false AND stale_after IS NULL),
             (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                  AND failing_any = true AND stale_after < $1)
           + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                  AND failing_any = true AND stale_after IS NULL)",
        &[&now],
    )?;
    let nodes = counts.finish(get_u64(&r, 0, "count")?, get_u64(&r, 1, "count")?);
    let mut checks: Vec<CheckCounts> = tx
        .query(
            "SELECT cis, id, pass, fail, warn, error FROM check_counts
             WHERE pass + fail + warn + error > 0",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(CheckCounts {
                cis: get(r, 0)?,
                id: get(r, 1)?,
                pass: get_u64(r, 2, "count")?,
                fail: get_u64(r, 3, "count")?,
                warn: get_u64(r, 4, "count")?,
                error: get_u64(r, 5, "count")?,
            })
        })
        .collect::<StoreResult<_>>()?;
    checks.sort_by(|a, b| cis_order(&a.cis, &b.cis));
    Ok(FleetSummary { nodes, checks })
}

pub(super) fn history(tx: &mut Tx<'_>, node: &str, limit: u32) -> StoreResult<Vec<HistoryEntry>> {
    let limit = i64::from(limit);
    let entries: Vec<HistoryEntry> = tx
        .query(
            "SELECT sequence, digest, kind, scan_time, received_at, summary, count, since,
                    first_unchanged
             FROM reports WHERE node = $1 ORDER BY sequence DESC LIMIT $2",
            &[&node, &limit],
        )?
        .iter()
        .map(|r| {
            Ok(HistoryEntry {
                sequence: get_u64(r, 0, "sequence")?,
                digest: get(r, 1)?,
                kind: get(r, 2)?,
                scan_time: get(r, 3)?,
                received_at: get(r, 4)?,
                summary: get_json(r, 5)?,
                count: get_opt_u64(r, 6, "count")?,
                since: get(r, 7)?,
                first_unchanged: get(r, 8)?,
            })
        })
        .collect::<StoreResult<_>>()?;
    if entries.is_empty() && !node_exists(tx, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    Ok(entries)
}

pub(super) fn failing(tx: &mut Tx<'_>, cis: &str) -> StoreResult<Vec<NodeRecord>> {
    tx.query(
        select_node!(
            "WHERE status = 'approved' AND name IN (
                 SELECT node FROM node_checks
                 WHERE cis = $1 AND status IN ('fail', 'error'))
             ORDER BY name COLLATE \"C\""
        ),
        &[&cis],
    )?
    .iter()
    .map(node_from_row)
    .collect()
}

/// Drift since $1, newest first, at most $2 rows (NULL: all), so the LIMIT keeps the
/// newest: the index drift_at_id (at, id) read backwards, no sort (see the test below).
const DRIFT_NEWEST: &str = "SELECT node, cis, from_status, to_status, at, digest
     FROM drift WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2";

pub(super) fn drift(tx: &mut Tx<'_>, since: i64, limit: Option<u32>) -> StoreResult<DriftPage> {
    // One row past the limit says whether there are more.
    let fetch: Option<i64> = limit.map(|l| i64::from(l) + 1);
    let events = tx
        .query(DRIFT_NEWEST, &[&since, &fetch])?
        .iter()
        .map(|r| {
            let from: Option<String> = get(r, 2)?;
            let to: String = get(r, 3)?;
            Ok(DriftEvent {
                node: get(r, 0)?,
                cis: get(r, 1)?,
                from: from.as_deref().map(check_status).transpose()?,
                to: check_status(&to)?,
                at: get(r, 4)?,
                digest: get(r, 5)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(crate::store::drift_page(events, limit))
}

pub(super) fn stale_nodes(tx: &mut Tx<'_>, now: i64) -> StoreResult<Vec<String>> {
    tx.query(
        "SELECT name FROM (
             SELECT name FROM nodes WHERE status = 'approved'
                 AND failing_any IN (false, true) AND stale_after < $1
             UNION ALL
             SELECT name FROM nodes WHERE status = 'approved'
                 AND failing_any IN (false, true) AND stale_after IS NULL) AS s
         ORDER BY name COLLATE \"C\"",
        &[&now],
    )?
    .iter()
    .map(|r| get(r, 0))
    .collect()
}

/// Every failing check of every approved node: an index-only scan of node_checks_failing,
/// anti-joined with nodes_not_approved (migration 0003; see the test below). Every
/// node_checks row has its node (a foreign key), so "no node that is not approved" is
/// "an approved node".
const FAILING_CHECKS: &str = "SELECT k.node, k.id, k.cis, k.status, k.since_at
     FROM node_checks k
     WHERE k.status IN ('fail', 'error')
       AND NOT EXISTS (SELECT 1 FROM nodes n
                       WHERE n.name = k.node AND n.status <> 'approved')";

pub(super) fn failing_checks(tx: &mut Tx<'_>) -> StoreResult<Vec<FailingCheck>> {
    let mut rows: Vec<FailingCheck> = tx
        .query(FAILING_CHECKS, &[])?
        .iter()
        .map(|r| {
            let status: String = get(r, 3)?;
            Ok(FailingCheck {
                node: get(r, 0)?,
                id: get(r, 1)?,
                cis: get(r, 2)?,
                status: check_status(&status)?,
                since_at: get(r, 4)?,
            })
        })
        .collect::<StoreResult<_>>()?;
    rows.sort_by(|a, b| a.node.cmp(&b.node).then(cis_order(&a.cis, &b.cis)));
    Ok(rows)
}

pub(super) fn exception_from_row(r: &Row) -> StoreResult<ExceptionRecord> {
    Ok(ExceptionRecord {
        id: get(r, 0)?,
        check_id: get(r, 1)?,
        cis: get(r, 2)?,
        node: get(r, 3)?,
        until: get(r, 4)?,
        reason: get(r, 5)?,
        created_by: get(r, 6)?,
        created_at: get(r, 7)?,
        revoked_at: get(r, 8)?,
        revoked_by: get(r, 9)?,
        revoke_reason: get(r, 10)?,
    })
}

pub(super) fn exception_by_id(tx: &mut Tx<'_>, id: i64) -> StoreResult<Option<ExceptionRecord>> {
    tx.opt(
        "SELECT id, check_id, cis, node, until_at, reason, created_by, created_at, revoked_at,
                revoked_by, revoke_reason FROM exceptions WHERE id = $1",
        &[&id],
    )?
    .map(|r| exception_from_row(&r))
    .transpose()
}

pub(super) fn exceptions(tx: &mut Tx<'_>) -> StoreResult<Vec<ExceptionRecord>> {
    tx.query(
        "SELECT id, check_id, cis, node, until_at, reason, created_by, created_at, revoked_at,
                revoked_by, revoke_reason FROM exceptions ORDER BY id",
        &[],
    )?
    .iter()
    .map(exception_from_row)
    .collect()
}

pub(super) fn exception_events(tx: &mut Tx<'_>) -> StoreResult<Vec<ExceptionEvent>> {
    tx.query(
        "SELECT id, exception_id, action, at, by, reason, check_id, node, until_at
         FROM exception_events ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(ExceptionEvent {
            id: get(r, 0)?,
            exception_id: get(r, 1)?,
            action: get(r, 2)?,
            at: get(r, 3)?,
            by: get(r, 4)?,
            reason: get(r, 5)?,
            check_id: get(r, 6)?,
            node: get(r, 7)?,
            until: get(r, 8)?,
        })
    })
    .collect()
}

/// The counters the summary reads, recomputed from the rows they summarise.
pub(super) fn verify_counters(tx: &mut Tx<'_>) -> StoreResult<()> {
    let pairs = |rows: Vec<Row>| -> StoreResult<CounterRows> {
        let mut out = HashMap::new();
        for r in rows {
            let v = [get(&r, 1)?, get(&r, 2)?, get(&r, 3)?, get(&r, 4)?];
            if v != [0; 4] {
                out.insert(get(&r, 0)?, v);
            }
        }
        Ok(out)
    };
    let tally_kept = pairs(tx.query(
        "SELECT status || '/' || failing_any::text, n, 0::bigint, 0::bigint, 0::bigint
         FROM node_tally",
        &[],
    )?)?;
    let tally_actual = pairs(tx.query(
        "SELECT status || '/' || failing_any::text, COUNT(*), 0::bigint, 0::bigint, 0::bigint
         FROM nodes GROUP BY 1",
        &[],
    )?)?;
    let counts_kept =
        pairs(tx.query("SELECT cis, pass, fail, warn, error FROM check_counts", &[])?)?;
    let counts_actual = pairs(tx.query(
        "SELECT c.cis, COUNT(*) FILTER (WHERE c.status = 'pass'),
                COUNT(*) FILTER (WHERE c.status = 'fail'),
                COUNT(*) FILTER (WHERE c.status = 'warn'),
                COUNT(*) FILTER (WHERE c.status = 'error')
         FROM node_checks c JOIN nodes n ON n.name = c.node
         WHERE n.status = 'approved' GROUP BY c.cis",
        &[],
    )?)?;
    let wrong: i64 = get(
        &tx.one(
            "SELECT COUNT(*) FROM nodes WHERE failing_any != (failing != '[]')",
            &[],
        )?,
        0,
    )?;
    counters_verdict(
        (tally_kept, tally_actual),
        (counts_kept, counts_actual),
        wrong,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testdb::TestDatabase;
    use super::super::PgStore;
    use super::*;

    /// The newest-first drift query is served by an index in that order: with sorting
    /// priced out, the plan still has no Sort (on `drift (at)` alone it would need an
    /// Incremental Sort by id within each second).
    #[test]
    fn the_newest_drift_is_read_from_an_index_without_sorting() {
        let Some(db) = TestDatabase::create("newest_drift_plan") else {
            return;
        };
        let store = PgStore::open(db.url(), db.url(), true).expect("open");
        let plan: Vec<String> = store
            .read(|tx| {
                tx.batch("SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off")?;
                let explain = tx.prepare_dynamic(&format!("EXPLAIN (COSTS OFF) {DRIFT_NEWEST}"))?;
                let rows = tx.query_prepared(&explain, &[&0_i64, &Some(501_i64)])?;
                rows.iter().map(|r| get(r, 0)).collect()
            })
            .expect("explain");
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan Backward using drift_at_id on drift"),
            "{plan}"
        );
        assert!(!plan.contains("Sort"), "{plan}");
    }

    /// The failing rows are read from the partial index of failing checks (no scan of
    /// node_checks) and filtered against the small index of nodes that are not approved
    /// (no scan of nodes), even on an empty database where a scan would be cheaper.
    #[test]
    fn the_failing_checks_are_read_from_partial_indexes() {
        let Some(db) = TestDatabase::create("failing_checks_plan") else {
            return;
        };
        let store = PgStore::open(db.url(), db.url(), true).expect("open");
        let plan: Vec<String> = store
            .read(|tx| {
                tx.batch("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")?;
                let explain =
                    tx.prepare_dynamic(&format!("EXPLAIN (COSTS OFF) {FAILING_CHECKS}"))?;
                let rows = tx.query_prepared(&explain, &[])?;
                rows.iter().map(|r| get(r, 0)).collect()
            })
            .expect("explain");
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Only Scan using node_checks_failing on node_checks"),
            "{plan}"
        );
        assert!(plan.contains("using nodes_not_approved on nodes"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
