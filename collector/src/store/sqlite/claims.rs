//! Enrolment, approval, revocation, key rotation, pending claims, tokens and chain events
//! on SQLite, each write one `BEGIN IMMEDIATE` transaction on the writer.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::commit::{tally, Deltas};
use super::read::node_named;
use super::{conflict_or, is_constraint, to_i64, NewNode, SqliteStore};
use crate::store::rules;
use crate::store::{ChainEvent, NodeRecord, NodeStatus, PendingClaim, StoreError, StoreResult};

impl SqliteStore {
    /// Enrols many nodes in one transaction, with the same rules as
    /// [`Store::enroll`](crate::store::Store::enroll) (all or none). For bulk imports and
    /// the `fleet_scale` measurement, where one durable transaction per node would
    /// dominate the run time.
    pub fn enroll_many(
        &self,
        nodes: &[NewNode],
        approved: bool,
        now: i64,
    ) -> StoreResult<Vec<NodeRecord>> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            out.push(enroll_in(
                &tx,
                &n.name,
                &n.key_id,
                &n.public_key,
                approved,
                now,
            )?);
        }
        tx.commit()?;
        Ok(out)
    }
}

/// Moves a node between statuses; check counts follow whether it is approved.
fn change_status(
    tx: &Transaction<'_>,
    name: &str,
    from: NodeStatus,
    to: NodeStatus,
    now: i64,
) -> StoreResult<()> {
    let failing_any: bool = tx
        .prepare_cached("SELECT failing_any FROM nodes WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    tally(tx, from, failing_any, -1)?;
    tally(tx, to, failing_any, 1)?;
    tx.prepare_cached(
        "UPDATE nodes SET status = ?2,
             approved_at = CASE WHEN ?2 = 'approved' THEN ?3 ELSE approved_at END,
             revoked_at = CASE WHEN ?2 = 'revoked' THEN ?3 ELSE revoked_at END
         WHERE name = ?1",
    )?
    .execute(params![name, to.as_str(), now])?;
    if from == NodeStatus::Pending && to != NodeStatus::Pending {
        // The name is decided: the other claims on it are void.
        tx.prepare_cached("DELETE FROM extra_claims WHERE name = ?1")?
            .execute([name])?;
    }
    let was = from == NodeStatus::Approved;
    let is = to == NodeStatus::Approved;
    if was != is {
        let mut d = Deltas::default();
        d.add_node(tx, name, if is { 1 } else { -1 })?;
        d.apply(tx)?;
    }
    Ok(())
}

/// The node a key belongs to, or the name it claims (a later pending claim).
fn key_owner(conn: &Connection, key_id: &str) -> StoreResult<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node FROM node_keys WHERE key_id = ?1
         UNION ALL SELECT name FROM extra_claims WHERE key_id = ?1 LIMIT 1",
    )?;
    Ok(stmt.query_row([key_id], |r| r.get(0)).optional()?)
}

/// Every pending claim on `name`, oldest first: the pending `nodes` row, then the later
/// claims of other keys.
fn claims_of(conn: &Connection, name: &str) -> StoreResult<Vec<PendingClaim>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, key_id, claim_source, enrolled_at FROM nodes
             WHERE name = ?1 AND status = 'pending'
         UNION ALL
         SELECT name, key_id, source, claimed_at FROM extra_claims WHERE name = ?1
         ORDER BY 4, 2",
    )?;
    let rows = stmt.query_map([name], pending_claim_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A later claim: its key's PEM, source and time.
fn extra_claim(
    conn: &Connection,
    name: &str,
    key_id: &str,
) -> StoreResult<Option<(String, Option<String>, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT public_key, source, claimed_at FROM extra_claims WHERE name = ?1 AND key_id = ?2",
    )?;
    Ok(stmt
        .query_row([name, key_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Makes the later claim `key_id` the name's only claim: the pending row (never reported,
/// so nothing but the claim is lost) is replaced by one with that key, pending or approved.
fn promote_claim(
    tx: &Transaction<'_>,
    name: &str,
    key_id: &str,
    approved: bool,
    now: i64,
) -> StoreResult<NodeRecord> {
    let (public_key, source, claimed_at) =
        extra_claim(tx, name, key_id)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    // Drops every claim on the name, this one too, so its key is free to enrol.
    delete_node_in(tx, name)?;
    let node = enroll_in(
        tx,
        name,
        key_id,
        &public_key,
        approved,
        if approved { now } else { claimed_at },
    )?;
    if !approved {
        tx.prepare_cached("UPDATE nodes SET claim_source = ?2 WHERE name = ?1")?
            .execute(params![name, source])?;
    }
    Ok(node)
}

fn enroll_in(
    tx: &Transaction<'_>,
    name: &str,
    key_id: &str,
    public_key: &str,
    approved: bool,
    now: i64,
) -> StoreResult<NodeRecord> {
    if let Some(existing) = node_named(tx, name)? {
        if rules::enrol_again(&existing, name, key_id, approved)? {
            change_status(tx, name, NodeStatus::Pending, NodeStatus::Approved, now)?;
            return node_named(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()));
        }
        return Ok(existing);
    }
    if let Some(owner) = key_owner(tx, key_id)? {
        return Err(rules::enrol_key_taken(key_id, &owner));
    }
    let status = if approved {
        NodeStatus::Approved
    } else {
        NodeStatus::Pending
    };
    tx.prepare_cached(
        "INSERT INTO nodes (name, key_id, public_key, status, enrolled_at, approved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?4 = 'approved' THEN ?5 END)",
    )?
    .execute(params![name, key_id, public_key, status.as_str(), now])
    .map_err(|e| conflict_or(e, || format!("cannot enrol node {name}")))?;
    tx.prepare_cached(
        "INSERT INTO node_keys (key_id, node, public_key, added_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key_id, name, public_key, now])?;
    tally(tx, status, false, 1)?;
    node_named(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))
}

fn insert_extra_claim(
    tx: &Transaction<'_>,
    name: &str,
    key_id: &str,
    public_key: &str,
    source: Option<&str>,
    claimed_at: i64,
) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO extra_claims (key_id, name, public_key, source, claimed_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key_id, name, public_key, source, claimed_at])
    .map_err(|e| conflict_or(e, || format!("cannot record a claim on node {name}")))?;
    Ok(())
}

fn pending_claim_from_row(r: &Row<'_>) -> rusqlite::Result<PendingClaim> {
    Ok(PendingClaim {
        name: r.get(0)?,
        key_id: r.get(1)?,
        source: r.get(2)?,
        claimed_at: r.get(3)?,
    })
}

/// Removes a pending or revoked node and everything kept about it (keys, statements,
/// latest checks, drift, chain events), so its name can be enrolled again. An approved
/// node is a Conflict: revoke it first, so a typo cannot erase a live node's evidence.
fn delete_node_in(tx: &Transaction<'_>, name: &str) -> StoreResult<NodeRecord> {
    let node = node_named(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    if node.status == NodeStatus::Approved {
        return Err(StoreError::Conflict(format!(
            "node {name} is approved: revoke it first (`nodes revoke {name}`), then delete it"
        )));
    }
    let failing_any: bool = tx
        .prepare_cached("SELECT failing_any FROM nodes WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    tx.prepare_cached("DELETE FROM extra_claims WHERE name = ?1")?
        .execute([name])?;
    for table in [
        "chain_events",
        "drift",
        "node_checks",
        "reports",
        "node_keys",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE node = ?1"), [name])?;
    }
    tx.prepare_cached("DELETE FROM nodes WHERE name = ?1")?
        .execute([name])?;
    tally(tx, node.status, failing_any, -1)?;
    Ok(node)
}

pub(super) fn create_token(
    store: &SqliteStore,
    token_sha256: &str,
    expires_at: i64,
    uses: Option<u32>,
    now: i64,
) -> StoreResult<()> {
    let conn = store.writer();
    conn.prepare_cached(
        "INSERT INTO tokens (sha256, created_at, expires_at, uses_left) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_sha256, now, expires_at, uses])
    .map_err(|e| conflict_or(e, || "this token is already stored".into()))?;
    Ok(())
}

pub(super) fn redeem_token(store: &SqliteStore, token_sha256: &str, now: i64) -> StoreResult<bool> {
    let conn = store.writer();
    // One statement: two enrolments racing for a token's last use cannot both win.
    let n = conn
        .prepare_cached(
            "UPDATE tokens SET uses_left = uses_left - 1
             WHERE sha256 = ?1 AND expires_at > ?2 AND (uses_left IS NULL OR uses_left > 0)",
        )?
        .execute(params![token_sha256, now])?;
    Ok(n == 1)
}

pub(super) fn enroll(
    store: &SqliteStore,
    name: &str,
    key_id: &str,
    public_key: &str,
    approved: bool,
    now: i64,
) -> StoreResult<NodeRecord> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let node = enroll_in(&tx, name, key_id, public_key, approved, now)?;
    tx.commit()?;
    Ok(node)
}

pub(super) fn set_status(
    store: &SqliteStore,
    name: &str,
    status: NodeStatus,
    now: i64,
) -> StoreResult<()> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    if current.status != status {
        change_status(&tx, name, current.status, status, now)?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn rotate_key(
    store: &SqliteStore,
    name: &str,
    old_key_id: &str,
    new_key_id: &str,
    new_public_key: &str,
    now: i64,
) -> StoreResult<()> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let node = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    rules::check_rotation(&node, name, old_key_id)?;
    if let Some(owner) = key_owner(&tx, new_key_id)? {
        return Err(rules::rotation_key_taken(name, new_key_id, &owner));
    }
    tx.prepare_cached("UPDATE node_keys SET retired_at = ?2 WHERE key_id = ?1")?
        .execute(params![old_key_id, now])?;
    tx.prepare_cached(
        "INSERT INTO node_keys (key_id, node, public_key, added_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![new_key_id, name, new_public_key, now])?;
    tx.prepare_cached(
        "UPDATE nodes SET key_id = ?2, public_key = ?3, key_rotated_at = ?4 WHERE name = ?1",
    )?
    .execute(params![name, new_key_id, new_public_key, now])
    .map_err(|e| {
        conflict_or(e, || {
            format!("cannot rotate node {name} to key {new_key_id}")
        })
    })?;
    tx.commit()?;
    Ok(())
}

pub(super) fn record_chain_event(store: &SqliteStore, event: &ChainEvent) -> StoreResult<bool> {
    let conn = store.writer();
    let count: i64 = conn
        .prepare_cached(
            "INSERT INTO chain_events (node, kind, digest, first_at, last_at, count,
                                   expected_sequence, got_sequence, detail)
         VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5, ?6, ?7)
         ON CONFLICT (node, kind, digest) DO UPDATE SET
             count = count + 1, last_at = MAX(last_at, excluded.last_at)
         RETURNING count",
        )?
        .query_row(
            params![
                event.node,
                event.kind,
                event.digest,
                event.at,
                to_i64(event.expected_sequence, "expected_sequence")?,
                to_i64(event.got_sequence, "got_sequence")?,
                event.detail
            ],
            |r| r.get(0),
        )
        .map_err(|e| {
            if is_constraint(&e) {
                StoreError::NoSuchNode(event.node.clone())
            } else {
                StoreError::from(e)
            }
        })?;
    Ok(count == 1)
}

pub(super) fn pending_claims(store: &SqliteStore) -> StoreResult<Vec<PendingClaim>> {
    store.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT name, key_id, claim_source, enrolled_at FROM nodes
                 WHERE status = 'pending'
             UNION ALL
             SELECT name, key_id, source, claimed_at FROM extra_claims
             ORDER BY 4, 1, 2",
        )?;
        let rows = stmt.query_map([], pending_claim_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

pub(super) fn set_claim_source(
    store: &SqliteStore,
    name: &str,
    key_id: &str,
    source: &str,
) -> StoreResult<()> {
    let conn = store.writer();
    conn.prepare_cached(
        "UPDATE nodes SET claim_source = ?3
         WHERE name = ?1 AND key_id = ?2 AND status = 'pending'",
    )?
    .execute(params![name, key_id, source])?;
    Ok(())
}

pub(super) fn add_claim(
    store: &SqliteStore,
    name: &str,
    key_id: &str,
    public_key: &str,
    source: &str,
    now: i64,
) -> StoreResult<()> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let node = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    rules::check_claimable(&node, name)?;
    if node.key_id == key_id || extra_claim(&tx, name, key_id)?.is_some() {
        return Ok(());
    }
    if let Some(owner) = key_owner(&tx, key_id)? {
        return Err(rules::claim_key_taken(key_id, &owner));
    }
    insert_extra_claim(&tx, name, key_id, public_key, Some(source), now)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn expire_pending(
    store: &SqliteStore,
    enrolled_before: i64,
) -> StoreResult<Vec<PendingClaim>> {
    // Asked on every enrolment: a read first, so the writer (which the ingest path
    // shares) is only taken when there is something to drop.
    let any = store.read(|c| {
        Ok(c.prepare_cached(
            "SELECT 1 FROM nodes WHERE status = 'pending' AND enrolled_at < ?1
                 UNION ALL SELECT 1 FROM extra_claims WHERE claimed_at < ?1 LIMIT 1",
        )?
        .exists([enrolled_before])?)
    })?;
    if !any {
        return Ok(Vec::new());
    }
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut expired: Vec<PendingClaim> = {
        let mut stmt = tx.prepare_cached(
            "SELECT name, key_id, source, claimed_at FROM extra_claims
             WHERE claimed_at < ?1 ORDER BY claimed_at",
        )?;
        let rows = stmt.query_map([enrolled_before], pending_claim_from_row)?;
        rows.collect::<Result<_, _>>()?
    };
    tx.prepare_cached("DELETE FROM extra_claims WHERE claimed_at < ?1")?
        .execute([enrolled_before])?;
    let first: Vec<PendingClaim> = {
        let mut stmt = tx.prepare_cached(
            "SELECT name, key_id, claim_source, enrolled_at FROM nodes
             WHERE status = 'pending' AND enrolled_at < ?1 ORDER BY enrolled_at",
        )?;
        let rows = stmt.query_map([enrolled_before], pending_claim_from_row)?;
        rows.collect::<Result<_, _>>()?
    };
    for claim in &first {
        // A later, unexpired claim on the name takes the pending row's place (keeping
        // its own time), so the first claim's expiry does not drop the others.
        let later = claims_of(&tx, &claim.name)?;
        match later.iter().find(|c| c.key_id != claim.key_id) {
            Some(next) => {
                let others: Vec<_> = later
                    .iter()
                    .filter(|c| c.key_id != claim.key_id && c.key_id != next.key_id)
                    .map(|c| Ok((c.clone(), extra_claim(&tx, &c.name, &c.key_id)?)))
                    .collect::<StoreResult<_>>()?;
                promote_claim(&tx, &claim.name, &next.key_id, false, 0)?;
                for (c, row) in others {
                    if let Some((pem, source, at)) = row {
                        insert_extra_claim(&tx, &c.name, &c.key_id, &pem, source.as_deref(), at)?;
                    }
                }
            }
            None => {
                delete_node_in(&tx, &claim.name)?;
            }
        }
    }
    expired.extend(first);
    expired.sort_by_key(|c| c.claimed_at);
    tx.commit()?;
    Ok(expired)
}

pub(super) fn delete_node(store: &SqliteStore, name: &str) -> StoreResult<NodeRecord> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let node = delete_node_in(&tx, name)?;
    tx.commit()?;
    Ok(node)
}

pub(super) fn approve(
    store: &SqliteStore,
    name: &str,
    key_id: Option<&str>,
    now: i64,
) -> StoreResult<NodeRecord> {
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let node = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    let claims = if node.status == NodeStatus::Pending {
        claims_of(&tx, name)?
    } else {
        Vec::new()
    };
    match rules::approval(name, node.status, &node.key_id, key_id, &claims)? {
        rules::Approval::Promote(want) => {
            let node = promote_claim(&tx, name, want, true, now)?;
            tx.commit()?;
            return Ok(node);
        }
        rules::Approval::Approve => {
            change_status(&tx, name, node.status, NodeStatus::Approved, now)?;
        }
        rules::Approval::Approved => {}
    }
    let node = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    tx.commit()?;
    Ok(node)
}
