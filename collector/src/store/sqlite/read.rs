//! The SQLite store's queries: nodes, history, chains, the fleet questions and the
//! counter verification. Each runs on a read connection.

use std::collections::HashMap;

use nodeproof_proto::chain::{ChainLink, LinkKind};
use nodeproof_proto::Summary;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{bad_value, check_status, cis_order, get_json, get_status, node_status, SqliteStore};
use crate::store::rules;
use crate::store::{
    ChainEvent, CheckCounts, DriftEvent, DriftPage, FailingCheck, FleetSummary, HistoryEntry,
    NodeKey, NodeRecord, StoreError, StoreResult,
};

impl SqliteStore {
    /// Recomputes the counters the fleet summary reads (`node_tally`, `check_counts`,
    /// `failing_any`) from the nodes and their latest check states, and says where they
    /// differ. The tests run it after every story; an operator can run it when a summary
    /// looks wrong.
    pub fn verify_counters(&self) -> StoreResult<()> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let pairs = |sql: &str| -> StoreResult<rules::CounterRows> {
                let mut stmt = tx.prepare(sql)?;
                let mut rows = stmt.query([])?;
                let mut out = HashMap::new();
                while let Some(r) = rows.next()? {
                    let v = [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?];
                    if v != [0; 4] {
                        out.insert(r.get(0)?, v);
                    }
                }
                Ok(out)
            };
            let tally_kept =
                pairs("SELECT status || '/' || failing_any, n, 0, 0, 0 FROM node_tally")?;
            let tally_actual = pairs(
                "SELECT status || '/' || failing_any, COUNT(*), 0, 0, 0 FROM nodes GROUP BY 1",
            )?;
            let counts_kept = pairs("SELECT cis, pass, fail, warn, error FROM check_counts")?;
            let counts_actual = pairs(
                "SELECT c.cis, SUM(c.status = 'pass'), SUM(c.status = 'fail'),
                        SUM(c.status = 'warn'), SUM(c.status = 'error')
                 FROM node_checks c JOIN nodes n ON n.name = c.node
                 WHERE n.status = 'approved' GROUP BY c.cis",
            )?;
            let wrong: i64 = tx.query_row(
                "SELECT COUNT(*) FROM nodes WHERE failing_any != (failing != '[]')",
                [],
                |r| r.get(0),
            )?;
            tx.commit()?;
            rules::counters_verdict(
                (tally_kept, tally_actual),
                (counts_kept, counts_actual),
                wrong,
            )
        })
    }
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let status: String = row.get(3)?;
    Ok(NodeRecord {
        name: row.get(0)?,
        key_id: row.get(1)?,
        public_key: row.get(2)?,
        status: node_status(&status).ok_or_else(|| bad_value(3, "node status", &status))?,
        enrolled_at: row.get(4)?,
        last_sequence: row.get(5)?,
        last_digest: row.get(6)?,
        last_scan_time: row.get(7)?,
        last_seen: row.get(8)?,
        interval_secs: row.get(9)?,
        last_full_digest: row.get(10)?,
        last_full_sequence: row.get(11)?,
        posture: row.get(12)?,
        summary: get_json(row, 13)?,
        failing: get_json(row, 14)?.unwrap_or_default(),
    })
}

pub(super) fn node_named(conn: &Connection, name: &str) -> StoreResult<Option<NodeRecord>> {
    let mut stmt = conn.prepare_cached(select_node!("WHERE name = ?1"))?;
    Ok(stmt.query_row([name], node_from_row).optional()?)
}

fn node_key_in(conn: &Connection, key_id: &str) -> StoreResult<Option<NodeKey>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, key_id, public_key, status FROM nodes WHERE key_id = ?1")?;
    Ok(stmt
        .query_row([key_id], |r| {
            let status: String = r.get(3)?;
            Ok(NodeKey {
                name: r.get(0)?,
                key_id: r.get(1)?,
                public_key: r.get(2)?,
                status: node_status(&status).ok_or_else(|| bad_value(3, "node status", &status))?,
            })
        })
        .optional()?)
}

pub(super) fn node_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")?;
    Ok(stmt.exists([name])?)
}

/// Drift since ?1, newest first, at most ?2 rows (-1: all), so the LIMIT keeps the newest:
/// the index drift_at (at, and the rowid id after it) read backwards, no sort (see the test).
pub(super) const DRIFT_NEWEST: &str = "SELECT node, cis, from_status, to_status, at, digest
     FROM drift WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2";

pub(super) fn node(store: &SqliteStore, name: &str) -> StoreResult<Option<NodeRecord>> {
    store.read(|c| node_named(c, name))
}

pub(super) fn node_by_key(store: &SqliteStore, key_id: &str) -> StoreResult<Option<NodeRecord>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(select_node!("WHERE key_id = ?1"))?;
        Ok(stmt.query_row([key_id], node_from_row).optional()?)
    })
}

pub(super) fn node_key(store: &SqliteStore, key_id: &str) -> StoreResult<Option<NodeKey>> {
    store.read(|c| node_key_in(c, key_id))
}

pub(super) fn node_keys(
    store: &SqliteStore,
    key_ids: &[&str],
) -> StoreResult<Vec<Option<NodeKey>>> {
    store.read(|c| {
        // One snapshot, and the pages a commit changed are read again only once.
        let tx = c.unchecked_transaction()?;
        let keys = key_ids
            .iter()
            .map(|k| node_key_in(&tx, k))
            .collect::<StoreResult<_>>()?;
        tx.commit()?;
        Ok(keys)
    })
}

pub(super) fn list_nodes(store: &SqliteStore) -> StoreResult<Vec<NodeRecord>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(select_node!("ORDER BY name"))?;
        let rows = stmt.query_map([], node_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

pub(super) fn has_digest(store: &SqliteStore, digest: &str) -> StoreResult<bool> {
    store.read(|c| {
        Ok(c.prepare_cached("SELECT 1 FROM reports WHERE digest = ?1")?
            .exists([digest])?)
    })
}

pub(super) fn chain_events(store: &SqliteStore, node: &str) -> StoreResult<Vec<ChainEvent>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT node, kind, first_at, expected_sequence, got_sequence, digest, detail,
                    last_at, count
             FROM chain_events WHERE node = ?1 ORDER BY id",
        )?;
        let events: Vec<ChainEvent> = stmt
            .query_map([node], |r| {
                Ok(ChainEvent {
                    node: r.get(0)?,
                    kind: r.get(1)?,
                    at: r.get(2)?,
                    expected_sequence: r.get(3)?,
                    got_sequence: r.get(4)?,
                    digest: r.get(5)?,
                    detail: r.get(6)?,
                    last_at: r.get(7)?,
                    count: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        if events.is_empty() && !node_exists(c, node)? {
            return Err(StoreError::NoSuchNode(node.into()));
        }
        Ok(events)
    })
}

pub(super) fn fleet_summary(store: &SqliteStore, now: i64) -> StoreResult<FleetSummary> {
    store.read(|c| {
        // One snapshot for both tables.
        let tx = c.unchecked_transaction()?;
        let mut counts = rules::FleetCounts::default();
        {
            let mut stmt = tx.prepare_cached("SELECT status, failing_any, n FROM node_tally")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let status: String = r.get(0)?;
                let failing_any: bool = r.get(1)?;
                let n: u64 = r.get(2)?;
                let status =
                    node_status(&status).ok_or_else(|| bad_value(0, "node status", &status))?;
                counts.add(status, failing_any, n);
            }
        }
        // Stale nodes are index ranges (never reported: stale_after IS NULL), so this
        // costs what the stale part of the fleet costs, not the whole fleet.
        let (stale_ok, stale_failing): (u64, u64) = tx
            .prepare_cached(
                "SELECT
                     (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                          AND failing_any = 0 AND stale_after < ?1)
                   + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                          AND failing_any = 0 AND stale_after IS NULL),
                     (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                          AND failing_any = 1 AND stale_after < ?1)
                   + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                          AND failing_any = 1 AND stale_after IS NULL)",
            )?
            .query_row([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let nodes = counts.finish(stale_ok, stale_failing);
        let mut checks: Vec<CheckCounts> = tx
            .prepare_cached(
                "SELECT cis, id, pass, fail, warn, error FROM check_counts
                 WHERE pass + fail + warn + error > 0",
            )?
            .query_map([], |r| {
                Ok(CheckCounts {
                    cis: r.get(0)?,
                    id: r.get(1)?,
                    pass: r.get(2)?,
                    fail: r.get(3)?,
                    warn: r.get(4)?,
                    error: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        tx.commit()?;
        checks.sort_by(|a, b| cis_order(&a.cis, &b.cis));
        Ok(FleetSummary { nodes, checks })
    })
}

pub(super) fn history(
    store: &SqliteStore,
    node: &str,
    limit: u32,
) -> StoreResult<Vec<HistoryEntry>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT sequence, digest, kind, scan_time, received_at, summary, count, since,
                    first_unchanged
             FROM reports WHERE node = ?1 ORDER BY sequence DESC LIMIT ?2",
        )?;
        let entries: Vec<HistoryEntry> = stmt
            .query_map(params![node, limit], |r| {
                Ok(HistoryEntry {
                    sequence: r.get(0)?,
                    digest: r.get(1)?,
                    kind: r.get(2)?,
                    scan_time: r.get(3)?,
                    received_at: r.get(4)?,
                    summary: get_json::<Summary>(r, 5)?,
                    count: r.get(6)?,
                    since: r.get(7)?,
                    first_unchanged: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        if entries.is_empty() && !node_exists(c, node)? {
            return Err(StoreError::NoSuchNode(node.into()));
        }
        Ok(entries)
    })
}

pub(super) fn chain_links(store: &SqliteStore, node: &str) -> StoreResult<Vec<ChainLink>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT r.digest, r.sequence, r.previous, r.kind, r.since, r.count, f.sequence
             FROM reports r
             LEFT JOIN reports f ON f.digest = r.since AND f.node = r.node
             WHERE r.node = ?1 ORDER BY r.sequence",
        )?;
        let links: Vec<ChainLink> = stmt
            .query_map([node], |r| {
                let kind: String = r.get(3)?;
                let kind = match kind.as_str() {
                    "full" => LinkKind::Full,
                    "unchanged" => LinkKind::Unchanged {
                        since: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        since_sequence: r.get::<_, Option<u64>>(6)?.unwrap_or(0),
                        count: r.get::<_, Option<u64>>(5)?.unwrap_or(0),
                    },
                    other => return Err(bad_value(3, "report kind", other)),
                };
                Ok(ChainLink {
                    digest: r.get(0)?,
                    sequence: r.get(1)?,
                    previous: r.get(2)?,
                    kind,
                })
            })?
            .collect::<Result<_, _>>()?;
        if links.is_empty() && !node_exists(c, node)? {
            return Err(StoreError::NoSuchNode(node.into()));
        }
        Ok(links)
    })
}

pub(super) fn envelope(store: &SqliteStore, digest: &str) -> StoreResult<Option<Vec<u8>>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached("SELECT envelope FROM reports WHERE digest = ?1")?;
        Ok(stmt.query_row([digest], |r| r.get(0)).optional()?)
    })
}

pub(super) fn failing(store: &SqliteStore, cis: &str) -> StoreResult<Vec<NodeRecord>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(select_node!(
            "WHERE status = 'approved' AND name IN (
                 SELECT node FROM node_checks
                 WHERE cis = ?1 AND status IN ('fail', 'error'))
             ORDER BY name"
        ))?;
        let rows = stmt.query_map([cis], node_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

pub(super) fn drift(store: &SqliteStore, since: i64, limit: Option<u32>) -> StoreResult<DriftPage> {
    store.read(|c| {
        // One row past the limit says whether there are more; -1 is no limit.
        let mut stmt = c.prepare_cached(DRIFT_NEWEST)?;
        let fetch = limit.map_or(-1, |l| i64::from(l) + 1);
        let rows = stmt.query_map(params![since, fetch], |r| {
            let from: Option<String> = r.get(2)?;
            let from = match from {
                None => None,
                Some(s) => Some(check_status(&s).ok_or_else(|| bad_value(2, "check status", &s))?),
            };
            Ok(DriftEvent {
                node: r.get(0)?,
                cis: r.get(1)?,
                from,
                to: get_status(r, 3)?,
                at: r.get(4)?,
                digest: r.get(5)?,
            })
        })?;
        let events: Vec<DriftEvent> = rows.collect::<Result<_, _>>()?;
        Ok(crate::store::drift_page(events, limit))
    })
}

pub(super) fn stale_nodes(store: &SqliteStore, now: i64) -> StoreResult<Vec<String>> {
    // Two index ranges of nodes_fleet per failing_any, as in fleet_summary.
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT name FROM nodes WHERE status = 'approved' AND failing_any IN (0, 1)
                 AND stale_after < ?1
             UNION ALL
             SELECT name FROM nodes WHERE status = 'approved' AND failing_any IN (0, 1)
                 AND stale_after IS NULL
             ORDER BY 1",
        )?;
        let rows = stmt.query_map([now], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

/// Every failing check of every approved node. Its `status IN ('fail', 'error')` is the
/// condition of the partial index `node_checks_failing` (migration 0005), word for word, so
/// SQLite reads only the failing rows, from that index alone; `CROSS JOIN` makes it the
/// outer loop (SQLite never reorders a CROSS JOIN), each row then finding its node by name.
/// Left to itself the planner walked every approved node and searched the index per node:
/// 100,000 searches for 57,733 rows, twice as slow. A unit test checks the plan.
pub(super) const FAILING_CHECKS: &str = "SELECT k.node, k.id, k.cis, k.status, k.since_at
     FROM node_checks k CROSS JOIN nodes n ON n.name = k.node
     WHERE k.status IN ('fail', 'error') AND n.status = 'approved'";

pub(super) fn failing_checks(store: &SqliteStore) -> StoreResult<Vec<FailingCheck>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(FAILING_CHECKS)?;
        let mut rows: Vec<FailingCheck> = stmt
            .query_map([], |r| {
                Ok(FailingCheck {
                    node: r.get(0)?,
                    id: r.get(1)?,
                    cis: r.get(2)?,
                    status: get_status(r, 3)?,
                    since_at: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        rows.sort_by(|a, b| a.node.cmp(&b.node).then(cis_order(&a.cis, &b.cis)));
        Ok(rows)
    })
}
