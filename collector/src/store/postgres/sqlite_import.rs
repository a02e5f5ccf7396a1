//! `nodeproof-collector migrate --from sqlite://... --to postgres://...`: moves an
//! installation from its SQLite file to PostgreSQL without losing a report or breaking a
//! chain. Every table is copied row for row (ids included, so the order of history, drift,
//! chain events and the exception log is kept), in ONE target transaction; before it
//! commits, the copy is checked: the row count of every table, a SHA-256 over every
//! report's id, digest and envelope bytes on both sides, and the counters recomputed from
//! the copied rows. A target that already holds data is refused (nothing is merged).

use std::path::Path;

use postgres::types::ToSql;
use rusqlite::types::Value;
use sha2::{Digest as _, Sha256};

use super::{get, get_u64, PgStore, StoreResult, Tx};
use crate::store::sqlite::{CheckpointOptions, SqliteStore};
use crate::store::StoreError;

/// A column's type on the PostgreSQL side (SQLite stores booleans as 0/1).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
    Bytes,
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table, in an order that satisfies the foreign keys, with its columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "nodes",
        &[
            ("name", Text),
            ("key_id", Text),
            ("public_key", Text),
            ("status", Text),
            ("enrolled_at", Int),
            ("approved_at", Int),
            ("revoked_at", Int),
            ("key_rotated_at", Int),
            ("last_sequence", Int),
            ("last_digest", Text),
            ("last_scan_time", Text),
            ("last_seen", Int),
            ("interval_secs", Int),
            ("stale_after", Int),
            ("last_full_digest", Text),
            ("last_full_sequence", Int),
            ("posture", Text),
            ("summary", Text),
            ("failing", Text),
            ("failing_any", Bool),
            ("last_run_digest", Text),
            ("claim_source", Text),
        ],
    ),
    (
        "node_tally",
        &[("status", Text), ("failing_any", Bool), ("n", Int)],
    ),
    (
        "node_keys",
        &[
            ("key_id", Text),
            ("node", Text),
            ("public_key", Text),
            ("added_at", Int),
            ("retired_at", Int),
        ],
    ),
    (
        "tokens",
        &[
            ("sha256", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("uses_left", Int),
        ],
    ),
    (
        "reports",
        &[
            ("id", Int),
            ("digest", Text),
            ("node", Text),
            ("sequence", Int),
            ("previous", Text),
            ("kind", Text),
            ("scan_time", Text),
            ("received_at", Int),
            ("summary", Text),
            ("posture", Text),
            ("since", Text),
            ("count", Int),
            ("first_unchanged", Text),
            ("envelope", Bytes),
        ],
    ),
    (
        "node_checks",
        &[
            ("node", Text),
            ("cis", Text),
            ("id", Text),
            ("scored", Bool),
            ("status", Text),
            ("since_at", Int),
            ("digest", Text),
        ],
    ),
    (
        "check_counts",
        &[
            ("cis", Text),
            ("id", Text),
            ("pass", Int),
            ("fail", Int),
            ("warn", Int),
            ("error", Int),
        ],
    ),
    (
        "drift",
        &[
            ("id", Int),
            ("node", Text),
            ("cis", Text),
            ("from_status", Text),
            ("to_status", Text),
            ("at", Int),
            ("digest", Text),
        ],
    ),
    (
        "chain_events",
        &[
            ("id", Int),
            ("node", Text),
            ("kind", Text),
            ("digest", Text),
            ("first_at", Int),
            ("last_at", Int),
            ("count", Int),
            ("expected_sequence", Int),
            ("got_sequence", Int),
            ("detail", Text),
        ],
    ),
    (
        "exceptions",
        &[
            ("id", Int),
            ("check_id", Text),
            ("cis", Text),
            ("node", Text),
            ("until_at", Int),
            ("reason", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("revoked_at", Int),
            ("revoked_by", Text),
            ("revoke_reason", Text),
        ],
    ),
    (
        "exception_events",
        &[
            ("id", Int),
            ("exception_id", Int),
            ("action", Text),
            ("at", Int),
            ("by", Text),
            ("reason", Text),
            ("check_id", Text),
            ("node", Text),
            ("until_at", Int),
        ],
    ),
    (
        "extra_claims",
        &[
            ("key_id", Text),
            ("name", Text),
            ("public_key", Text),
            ("source", Text),
            ("claimed_at", Int),
        ],
    ),
];

/// Tables whose `id` comes from an identity sequence, moved past the copied ids.
const IDENTITIES: &[&str] = &[
    "reports",
    "drift",
    "chain_events",
    "exceptions",
    "exception_events",
];

/// What was copied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows per table, in copy order (equal on both sides).
    pub tables: Vec<(String, u64)>,
    /// SHA-256 (hex) over every report's id, digest and envelope, by id: equal on both
    /// sides.
    pub envelopes_sha256: String,
}

/// Copies the SQLite database at `from` into the PostgreSQL database `to` (see the module
/// comment). The SQLite schema is brought up to date first (as any collector opening it
/// would); the source is otherwise only read.
pub fn import_sqlite(from: &Path, to: &PgStore) -> StoreResult<ImportReport> {
    // Opens (and migrates) the source exactly as `serve` would, then reads it on a
    // connection of our own inside one read transaction: one consistent snapshot.
    drop(SqliteStore::open_mode(
        from,
        CheckpointOptions::default(),
        false,
    )?);
    let mut source = rusqlite::Connection::open_with_flags(
        from,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", from.display())))?;
    let snapshot = source.transaction()?;
    every_column_is_copied(&snapshot, from)?;
    to.write(|tx| {
        // No collector may write while the copy runs (a running `serve` on the target
        // waits; it should not be running at all).
        tx.batch(
            "LOCK TABLE nodes, node_tally, node_keys, tokens, reports, node_checks,
                        check_counts, drift, chain_events, exceptions, exception_events,
                        extra_claims IN EXCLUSIVE MODE",
        )?;
        for (table, _) in TABLES {
            let stmt = tx.prepare_dynamic(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))?;
            let rows = tx.query_prepared(&stmt, &[])?;
            let any = rows.first().map(|r| get::<bool>(r, 0)).transpose()?;
            if any == Some(true) {
                return Err(StoreError::Conflict(format!(
                    "the target database {} already holds data (table {table} is not \
                     empty): migrate only into a new database (`nodeproof-collector init \
                     --db ...` on an empty one); nothing was copied",
                    to.url()
                )));
            }
        }
        let mut tables = Vec::new();
        for (table, columns) in TABLES {
            let copied = copy_table(&snapshot, tx, table, columns)?;
            tables.push(((*table).to_owned(), copied));
        }
        for table in IDENTITIES {
            tx.batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               GREATEST(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
            ))?;
        }
        // The checks, before anything is committed.
        for (table, copied) in &tables {
            let stmt = tx.prepare_dynamic(&format!("SELECT COUNT(*) FROM {table}"))?;
            let rows = tx.query_prepared(&stmt, &[])?;
            let there = rows
                .first()
                .map(|r| get_u64(r, 0, "count"))
                .transpose()?
                .unwrap_or(0);
            if there != *copied {
                return Err(StoreError::Backend(format!(
                    "copying {table}: {copied} rows read but {there} in the target; nothing \
                     was committed"
                )));
            }
        }
        let source_sum = source_envelopes(&snapshot)?;
        let target_sum = target_envelopes(tx)?;
        if source_sum != target_sum {
            return Err(StoreError::Backend(format!(
                "the copied envelopes differ from the source's (SHA-256 {target_sum} vs \
                 {source_sum}); nothing was committed"
            )));
        }
        super::reads::verify_counters(tx)?;
        Ok(ImportReport {
            tables,
            envelopes_sha256: source_sum,
        })
    })
}

/// Refuses a source with a table or column that [`TABLES`] does not copy (one a newer
/// SQLite migration added, or an operator's own), naming it: a migration that dropped it
/// silently would not be the same installation. `schema_migrations` stays behind (the
/// target has its own) and SQLite's internal tables are not data.
fn every_column_is_copied(source: &rusqlite::Transaction<'_>, from: &Path) -> StoreResult<()> {
    let mut missing = Vec::new();
    let mut tables = source.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' \
         ESCAPE '\\' AND name <> 'schema_migrations' ORDER BY name",
    )?;
    let names: Vec<String> = tables
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in names {
        let Some((_, copied)) = TABLES.iter().find(|(t, _)| *t == table) else {
            missing.push(format!("table {table}"));
            continue;
        };
        let mut info = source.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        let columns: Vec<String> = info
            .query_map([&table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for column in columns {
            if !copied.iter().any(|(c, _)| *c == column) {
                missing.push(format!("column {table}.{column}"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Backend(format!(
        "{} has {} that this collector does not copy to PostgreSQL (a newer SQLite schema, \
         or one changed by hand); nothing was copied: migrate with the collector version that \
         wrote it",
        from.display(),
        missing.join(", ")
    )))
}

fn copy_table(
    source: &rusqlite::Transaction<'_>,
    tx: &mut Tx<'_>,
    table: &str,
    columns: &[(&str, Kind)],
) -> StoreResult<u64> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = tx.prepare_dynamic(&format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    ))?;
    // In the source's physical order for tables with ids (so ids ascend), by key otherwise.
    let mut stmt = source.prepare(&format!(
        "SELECT {} FROM {table} ORDER BY {}",
        names.join(", "),
        if names.first() == Some(&"id") {
            "id"
        } else {
            "1"
        }
    ))?;
    let mut rows = stmt.query([])?;
    let mut copied = 0u64;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
        for (i, (name, kind)) in columns.iter().enumerate() {
            let v: Value = row.get(i)?;
            let wrong = |v: &Value| {
                StoreError::Backend(format!(
                    "{table}.{name} holds {v:?} in the SQLite database, not the expected type"
                ))
            };
            values.push(match (kind, v) {
                (Int, Value::Null) => Box::new(None::<i64>),
                (Int, Value::Integer(n)) => Box::new(Some(n)),
                (Bool, Value::Null) => Box::new(None::<bool>),
                (Bool, Value::Integer(n)) => Box::new(Some(n != 0)),
                (Text, Value::Null) => Box::new(None::<String>),
                (Text, Value::Text(s)) => Box::new(Some(s)),
                (Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
                (Bytes, Value::Blob(b)) => Box::new(Some(b)),
                (_, other) => return Err(wrong(&other)),
            });
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        tx.exec_prepared(&insert, &params)?;
        copied += 1;
    }
    Ok(copied)
}

/// Hashes one report into the running digest: id, digest, envelope length and bytes.
fn hash_report(h: &mut Sha256, id: i64, digest: &str, envelope: &[u8]) {
    h.update(id.to_be_bytes());
    h.update((digest.len() as u64).to_be_bytes());
    h.update(digest.as_bytes());
    h.update((envelope.len() as u64).to_be_bytes());
    h.update(envelope);
}

fn source_envelopes(source: &rusqlite::Transaction<'_>) -> StoreResult<String> {
    let mut h = Sha256::new();
    let mut stmt = source.prepare("SELECT id, digest, envelope FROM reports ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let digest: String = r.get(1)?;
        let envelope: Vec<u8> = r.get(2)?;
        hash_report(&mut h, id, &digest, &envelope);
    }
    Ok(hex::encode(h.finalize()))
}

/// Through a portal, a few rows at a time: every envelope of an installation does not fit
/// in memory at once.
fn target_envelopes(tx: &mut Tx<'_>) -> StoreResult<String> {
    const PER_FETCH: i32 = 64;
    let mut h = Sha256::new();
    let portal = tx.portal("SELECT id, digest, envelope FROM reports ORDER BY id", &[])?;
    loop {
        let rows = tx.fetch(&portal, PER_FETCH)?;
        let done = rows.len() < PER_FETCH as usize;
        for r in rows {
            let id: i64 = get(&r, 0)?;
            let digest: String = get(&r, 1)?;
            let envelope: Vec<u8> = get(&r, 2)?;
            hash_report(&mut h, id, &digest, &envelope);
        }
        if done {
            return Ok(hex::encode(h.finalize()));
        }
    }
}
