//! Exceptions on SQLite: adding, revoking and listing them, and their append-only log.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::read::node_exists;
use super::SqliteStore;
use crate::store::rules;
use crate::store::{ExceptionEvent, ExceptionRecord, NewException, StoreError, StoreResult};

const SELECT_EXCEPTION: &str = "SELECT id, check_id, cis, node, until_at, reason, created_by,
        created_at, revoked_at, revoked_by, revoke_reason FROM exceptions";

fn exception_from_row(r: &Row<'_>) -> rusqlite::Result<ExceptionRecord> {
    Ok(ExceptionRecord {
        id: r.get(0)?,
        check_id: r.get(1)?,
        cis: r.get(2)?,
        node: r.get(3)?,
        until: r.get(4)?,
        reason: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        revoked_at: r.get(8)?,
        revoked_by: r.get(9)?,
        revoke_reason: r.get(10)?,
    })
}

fn exception_by_id(conn: &Connection, id: i64) -> StoreResult<Option<ExceptionRecord>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT_EXCEPTION} WHERE id = ?1"))?;
    Ok(stmt.query_row([id], exception_from_row).optional()?)
}

/// Appends one entry to the exception log (inside the caller's transaction).
fn exception_event(
    tx: &Transaction<'_>,
    e: &ExceptionRecord,
    action: &str,
    at: i64,
    by: &str,
    reason: &str,
) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO exception_events (exception_id, action, at, by, reason, check_id, node,
                                       until_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.id, action, at, by, reason, e.check_id, e.node, e.until
    ])?;
    Ok(())
}

pub(super) fn add_exception(
    store: &SqliteStore,
    new: &NewException,
    now: i64,
) -> StoreResult<ExceptionRecord> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(node) = &new.node {
        if !node_exists(&tx, node)? {
            return Err(StoreError::NoSuchNode(node.clone()));
        }
    }
    tx.prepare_cached(
        "INSERT INTO exceptions (check_id, cis, node, until_at, reason, created_by,
                                 created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        new.check_id,
        new.cis,
        new.node,
        new.until,
        new.reason,
        new.by,
        now
    ])?;
    let id = tx.last_insert_rowid();
    let record = exception_by_id(&tx, id)?
        .ok_or_else(|| StoreError::Backend(format!("exception {id} vanished")))?;
    exception_event(&tx, &record, "add", now, &new.by, &new.reason)?;
    tx.commit()?;
    Ok(record)
}

pub(super) fn revoke_exception(
    store: &SqliteStore,
    id: i64,
    by: &str,
    reason: &str,
    now: i64,
) -> StoreResult<Option<ExceptionRecord>> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(current) = exception_by_id(&tx, id)? else {
        return Ok(None);
    };
    rules::check_revocable(&current, id)?;
    tx.prepare_cached(
        "UPDATE exceptions SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, now, by, reason])?;
    exception_event(&tx, &current, "revoke", now, by, reason)?;
    let record = exception_by_id(&tx, id)?;
    tx.commit()?;
    Ok(record)
}

pub(super) fn exceptions(store: &SqliteStore) -> StoreResult<Vec<ExceptionRecord>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(&format!("{SELECT_EXCEPTION} ORDER BY id"))?;
        let rows = stmt.query_map([], exception_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

pub(super) fn exception_events(store: &SqliteStore) -> StoreResult<Vec<ExceptionEvent>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT id, exception_id, action, at, by, reason, check_id, node, until_at
             FROM exception_events ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ExceptionEvent {
                id: r.get(0)?,
                exception_id: r.get(1)?,
                action: r.get(2)?,
                at: r.get(3)?,
                by: r.get(4)?,
                reason: r.get(5)?,
                check_id: r.get(6)?,
                node: r.get(7)?,
                until: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}
