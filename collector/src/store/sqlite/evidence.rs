//! The SQLite queries behind the evidence export (`Store::for_each_statement`,
//! `chain_anchor`, `key_history`), apart from the ingest and fleet queries in `sqlite/mod.rs`.
//! Reads only: the export walks one read transaction, so it sees one snapshot of the
//! history while the collector keeps accepting reports.

use nodeproof_proto::chain::Anchor;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{ExportFilter, KeyPeriod, StoreError, StoreResult, StoredStatement};

fn node_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")?
        .exists([name])?)
}

/// See [`crate::store::Store::for_each_statement`].
pub(super) fn for_each_statement(
    conn: &Connection,
    filter: &ExportFilter,
    f: &mut dyn FnMut(StoredStatement) -> StoreResult<()>,
) -> StoreResult<()> {
    // One snapshot for the whole walk (a deferred read transaction, rolled back on drop).
    let tx = conn.unchecked_transaction()?;
    let mut names: Vec<String> = if filter.nodes.is_empty() {
        let mut stmt = tx.prepare_cached("SELECT name FROM nodes ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    } else {
        for name in &filter.nodes {
            if !node_exists(&tx, name)? {
                return Err(StoreError::NoSuchNode(name.clone()));
            }
        }
        filter.nodes.clone()
    };
    names.sort();
    names.dedup();
    let since = filter.since.unwrap_or(i64::MIN);
    let until = filter.until.unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(
        "SELECT sequence, digest, previous, kind, scan_time, received_at, envelope
         FROM reports WHERE node = ?1 AND received_at >= ?2 AND received_at < ?3
         ORDER BY sequence",
    )?;
    for name in names {
        let mut rows = stmt.query(params![name, since, until])?;
        while let Some(r) = rows.next()? {
            f(StoredStatement {
                node: name.clone(),
                sequence: r.get(0)?,
                digest: r.get(1)?,
                previous: r.get(2)?,
                kind: r.get(3)?,
                scan_time: r.get(4)?,
                received_at: r.get(5)?,
                envelope: r.get(6)?,
            })?;
        }
    }
    Ok(())
}

/// See [`crate::store::Store::chain_anchor`].
pub(super) fn chain_anchor(
    conn: &Connection,
    node: &str,
    before: i64,
) -> StoreResult<Option<Anchor>> {
    if !node_exists(conn, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    Ok(conn
        .prepare_cached(
            "SELECT digest, sequence FROM reports WHERE node = ?1 AND received_at < ?2
             ORDER BY sequence DESC LIMIT 1",
        )?
        .query_row(params![node, before], |r| {
            Ok(Anchor {
                digest: r.get(0)?,
                sequence: r.get(1)?,
            })
        })
        .optional()?)
}

/// See [`crate::store::Store::key_history`].
pub(super) fn key_history(conn: &Connection, node: &str) -> StoreResult<Vec<KeyPeriod>> {
    if !node_exists(conn, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT key_id, public_key, added_at, retired_at FROM node_keys WHERE node = ?1
         ORDER BY added_at, retired_at IS NULL, retired_at, key_id",
    )?;
    let rows = stmt.query_map([node], |r| {
        Ok(KeyPeriod {
            key_id: r.get(0)?,
            public_key: r.get(1)?,
            added_at: r.get(2)?,
            retired_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
