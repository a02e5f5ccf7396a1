//! The PostgreSQL queries behind the evidence export (`Store::chain_links`,
//! `for_each_statement`, `chain_anchor`, `key_history`): the same answers as SQLite's
//! (`store/sqlite/evidence.rs`). Reads only, each in one `REPEATABLE READ` snapshot, so an
//! export sees one state of the history while collectors keep accepting reports.

use nodeproof_proto::chain::{Anchor, ChainLink, LinkKind};

use super::reads::node_exists;
use super::{get, get_opt_u64, get_u64, StoreResult, Tx};
use crate::store::{ExportFilter, KeyPeriod, StoreError, StoredStatement};

/// Rows fetched from the statements' portal at a time: enough to amortise the round trip,
/// few enough that a handful of envelopes is all the walk holds.
const STATEMENTS_PER_FETCH: i32 = 64;

/// See [`crate::store::Store::chain_links`].
pub(super) fn chain_links(tx: &mut Tx<'_>, node: &str) -> StoreResult<Vec<ChainLink>> {
    let rows = tx.query(
        "SELECT r.digest, r.sequence, r.previous, r.kind, r.since, r.count, f.sequence
         FROM reports r
         LEFT JOIN reports f ON f.digest = r.since AND f.node = r.node
         WHERE r.node = $1 ORDER BY r.sequence",
        &[&node],
    )?;
    let mut links = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = get(r, 3)?;
        let kind = match kind.as_str() {
            "full" => LinkKind::Full,
            "unchanged" => LinkKind::Unchanged {
                since: get::<Option<String>>(r, 4)?.unwrap_or_default(),
                since_sequence: get_opt_u64(r, 6, "sequence")?.unwrap_or(0),
                count: get_opt_u64(r, 5, "count")?.unwrap_or(0),
            },
            other => {
                return Err(StoreError::Backend(format!(
                    "unexpected report kind {other:?} in the database"
                )))
            }
        };
        links.push(ChainLink {
            digest: get(r, 0)?,
            sequence: get_u64(r, 1, "sequence")?,
            previous: get(r, 2)?,
            kind,
        });
    }
    if links.is_empty() && !node_exists(tx, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    Ok(links)
}

/// See [`crate::store::Store::for_each_statement`]. The node names are read first (in byte
/// order, as SQLite and Rust sort them); each node's statements then come through a portal,
/// [`STATEMENTS_PER_FETCH`] rows at a time, so memory stays flat however long the history.
pub(super) fn for_each_statement(
    tx: &mut Tx<'_>,
    filter: &ExportFilter,
    f: &mut dyn FnMut(StoredStatement) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut names: Vec<String> = if filter.nodes.is_empty() {
        tx.query("SELECT name FROM nodes ORDER BY name COLLATE \"C\"", &[])?
            .iter()
            .map(|r| get(r, 0))
            .collect::<StoreResult<_>>()?
    } else {
        for name in &filter.nodes {
            if !node_exists(tx, name)? {
                return Err(StoreError::NoSuchNode(name.clone()));
            }
        }
        filter.nodes.clone()
    };
    names.sort();
    names.dedup();
    let since = filter.since.unwrap_or(i64::MIN);
    let until = filter.until.unwrap_or(i64::MAX);
    for name in names {
        let portal = tx.portal(
            "SELECT sequence, digest, previous, kind, scan_time, received_at, envelope
             FROM reports WHERE node = $1 AND received_at >= $2 AND received_at < $3
             ORDER BY sequence",
            &[&name, &since, &until],
        )?;
        loop {
            let rows = tx.fetch(&portal, STATEMENTS_PER_FETCH)?;
            let done = rows.len() < STATEMENTS_PER_FETCH as usize;
            for r in rows {
                f(StoredStatement {
                    node: name.clone(),
                    sequence: get_u64(&r, 0, "sequence")?,
                    digest: get(&r, 1)?,
                    previous: get(&r, 2)?,
                    kind: get(&r, 3)?,
                    scan_time: get(&r, 4)?,
                    received_at: get(&r, 5)?,
                    envelope: get(&r, 6)?,
                })?;
            }
            if done {
                break;
            }
        }
    }
    Ok(())
}

/// See [`crate::store::Store::chain_anchor`].
pub(super) fn chain_anchor(
    tx: &mut Tx<'_>,
    node: &str,
    before: i64,
) -> StoreResult<Option<Anchor>> {
    if !node_exists(tx, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    tx.opt(
        "SELECT digest, sequence FROM reports WHERE node = $1 AND received_at < $2
         ORDER BY sequence DESC LIMIT 1",
        &[&node, &before],
    )?
    .map(|r| {
        Ok(Anchor {
            digest: get(&r, 0)?,
            sequence: get_u64(&r, 1, "sequence")?,
        })
    })
    .transpose()
}

/// See [`crate::store::Store::key_history`]: SQLite's order (`retired_at IS NULL` puts
/// the current key last; key ids compared byte by byte).
pub(super) fn key_history(tx: &mut Tx<'_>, node: &str) -> StoreResult<Vec<KeyPeriod>> {
    if !node_exists(tx, node)? {
        return Err(StoreError::NoSuchNode(node.into()));
    }
    tx.query(
        "SELECT key_id, public_key, added_at, retired_at FROM node_keys WHERE node = $1
         ORDER BY added_at, retired_at IS NULL, retired_at, key_id COLLATE \"C\"",
        &[&node],
    )?
    .iter()
    .map(|r| {
        Ok(KeyPeriod {
            key_id: get(r, 0)?,
            public_key: get(r, 1)?,
            added_at: get(r, 2)?,
            retired_at: get(r, 3)?,
        })
    })
    .collect()
}
