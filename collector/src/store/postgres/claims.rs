//! Enrolment, approval, revocation, key rotation, pending claims, tokens, chain events
//! and exceptions on PostgreSQL: the same rules as the SQLite store, each write in one
//! transaction that locks the node row it decides on, so a decision made through one
//! collector (or the CLI) is the one every collector sees.

use super::commit::{Deltas, Tally};
use super::reads::{exception_by_id, node_for_update, node_named, pending_claim_from_row};
use super::{get, to_i64, PgStore, StoreResult, Tx};
use crate::store::rules::{self, Approval};
use crate::store::{
    ChainEvent, ExceptionRecord, NewException, NodeRecord, NodeStatus, PendingClaim, StoreError,
};

pub(super) fn create_token(
    store: &PgStore,
    token_sha256: &str,
    expires_at: i64,
    uses: Option<u32>,
    now: i64,
) -> StoreResult<()> {
    let uses = uses.map(i64::from);
    // Not through `write`: a unique violation here is the caller's duplicate, not a race
    // to run again.
    let mut conn = store.conn()?;
    conn.client
        .execute(
            "INSERT INTO tokens (sha256, created_at, expires_at, uses_left)
             VALUES ($1, $2, $3, $4)",
            &[&token_sha256, &now, &expires_at, &uses],
        )
        .map_err(|e| match super::pg_error(&e) {
            StoreError::Conflict(m) => {
                StoreError::Conflict(format!("this token is already stored ({m})"))
            }
            other => other,
        })?;
    Ok(())
}

pub(super) fn redeem_token(store: &PgStore, token_sha256: &str, now: i64) -> StoreResult<bool> {
    // One statement: two enrolments (on any collectors) racing for a token's last use
    // cannot both win; the row lock makes the second see the first's decrement.
    store.write(|tx| {
        let n = tx.exec(
            "UPDATE tokens SET uses_left = uses_left - 1
             WHERE sha256 = $1 AND expires_at > $2 AND (uses_left IS NULL OR uses_left > 0)",
            &[&token_sha256, &now],
        )?;
        Ok(n == 1)
    })
}

/// Moves a node between statuses; check counts follow whether it is approved. The caller
/// holds the node's row lock.
fn change_status(
    tx: &mut Tx<'_>,
    name: &str,
    from: NodeStatus,
    to: NodeStatus,
    now: i64,
) -> StoreResult<()> {
    let failing_any: bool = get(
        &tx.one("SELECT failing_any FROM nodes WHERE name = $1", &[&name])?,
        0,
    )?;
    tx.exec(
        "UPDATE nodes SET status = $2,
             approved_at = CASE WHEN $2 = 'approved' THEN $3 ELSE approved_at END,
             revoked_at = CASE WHEN $2 = 'revoked' THEN $3 ELSE revoked_at END
         WHERE name = $1",
        &[&name, &to.as_str(), &now],
    )?;
    if from == NodeStatus::Pending && to != NodeStatus::Pending {
        // The name is decided: the other claims on it are void.
        tx.exec("DELETE FROM extra_claims WHERE name = $1", &[&name])?;
    }
    let mut tally = Tally::default();
    tally.add(from, failing_any, -1);
    tally.add(to, failing_any, 1);
    tally.apply(tx)?;
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
fn key_owner(tx: &mut Tx<'_>, key_id: &str) -> StoreResult<Option<String>> {
    tx.opt(
        "SELECT node FROM node_keys WHERE key_id = $1
         UNION ALL SELECT name FROM extra_claims WHERE key_id = $1 LIMIT 1",
        &[&key_id],
    )?
    .map(|r| get(&r, 0))
    .transpose()
}

/// Every pending claim on `name`, oldest first.
fn claims_of(tx: &mut Tx<'_>, name: &str) -> StoreResult<Vec<PendingClaim>> {
    tx.query(
        "SELECT * FROM (
             SELECT name, key_id, claim_source, enrolled_at FROM nodes
                 WHERE name = $1 AND status = 'pending'
             UNION ALL
             SELECT name, key_id, source, claimed_at FROM extra_claims WHERE name = $1) AS c
         ORDER BY enrolled_at, key_id COLLATE \"C\"",
        &[&name],
    )?
    .iter()
    .map(pending_claim_from_row)
    .collect()
}

/// A later claim: its key's PEM, source and time.
fn extra_claim(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: &str,
) -> StoreResult<Option<(String, Option<String>, i64)>> {
    tx.opt(
        "SELECT public_key, source, claimed_at FROM extra_claims WHERE name = $1 AND key_id = $2",
        &[&name, &key_id],
    )?
    .map(|r| Ok((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?)))
    .transpose()
}

/// Makes the later claim `key_id` the name's only claim (see the SQLite store).
fn promote_claim(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: &str,
    approved: bool,
    now: i64,
) -> StoreResult<NodeRecord> {
    let (public_key, source, claimed_at) =
        extra_claim(tx, name, key_id)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
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
        tx.exec(
            "UPDATE nodes SET claim_source = $2 WHERE name = $1",
            &[&name, &source],
        )?;
    }
    Ok(node)
}

pub(super) fn enroll_in(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: &str,
    public_key: &str,
    approved: bool,
    now: i64,
) -> StoreResult<NodeRecord> {
    if let Some(existing) = node_for_update(tx, name)? {
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
    // A concurrent enrolment of the same name or key makes this a unique violation: the
    // transaction runs again and sees that enrolment (see `PgStore::write`).
    tx.exec(
        "INSERT INTO nodes (name, key_id, public_key, status, enrolled_at, approved_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &name,
            &key_id,
            &public_key,
            &status.as_str(),
            &now,
            &approved.then_some(now),
        ],
    )?;
    tx.exec(
        "INSERT INTO node_keys (key_id, node, public_key, added_at) VALUES ($1, $2, $3, $4)",
        &[&key_id, &name, &public_key, &now],
    )?;
    let mut tally = Tally::default();
    tally.add(status, false, 1);
    tally.apply(tx)?;
    node_named(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))
}

fn insert_extra_claim(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: &str,
    public_key: &str,
    source: Option<&str>,
    claimed_at: i64,
) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO extra_claims (key_id, name, public_key, source, claimed_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&key_id, &name, &public_key, &source, &claimed_at],
    )?;
    Ok(())
}

/// Removes a pending or revoked node and everything kept about it; an approved node is a
/// Conflict.
pub(super) fn delete_node_in(tx: &mut Tx<'_>, name: &str) -> StoreResult<NodeRecord> {
    let node = node_for_update(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    if node.status == NodeStatus::Approved {
        return Err(StoreError::Conflict(format!(
            "node {name} is approved: revoke it first (`nodes revoke {name}`), then delete it"
        )));
    }
    let failing_any: bool = get(
        &tx.one("SELECT failing_any FROM nodes WHERE name = $1", &[&name])?,
        0,
    )?;
    tx.exec("DELETE FROM extra_claims WHERE name = $1", &[&name])?;
    tx.exec("DELETE FROM chain_events WHERE node = $1", &[&name])?;
    tx.exec("DELETE FROM drift WHERE node = $1", &[&name])?;
    tx.exec("DELETE FROM node_checks WHERE node = $1", &[&name])?;
    tx.exec("DELETE FROM reports WHERE node = $1", &[&name])?;
    tx.exec("DELETE FROM node_keys WHERE node = $1", &[&name])?;
    tx.exec("DELETE FROM nodes WHERE name = $1", &[&name])?;
    let mut tally = Tally::default();
    tally.add(node.status, failing_any, -1);
    tally.apply(tx)?;
    Ok(node)
}

pub(super) fn set_status(
    store: &PgStore,
    name: &str,
    status: NodeStatus,
    now: i64,
) -> StoreResult<()> {
    store.write(|tx| {
        let current =
            node_for_update(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
        if current.status != status {
            change_status(tx, name, current.status, status, now)?;
        }
        Ok(())
    })
}

pub(super) fn rotate_key(
    store: &PgStore,
    name: &str,
    old_key_id: &str,
    new_key_id: &str,
    new_public_key: &str,
    now: i64,
) -> StoreResult<()> {
    store.write(|tx| {
        let node = node_for_update(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
        rules::check_rotation(&node, name, old_key_id)?;
        if let Some(owner) = key_owner(tx, new_key_id)? {
            return Err(rules::rotation_key_taken(name, new_key_id, &owner));
        }
        tx.exec(
            "UPDATE node_keys SET retired_at = $2 WHERE key_id = $1",
            &[&old_key_id, &now],
        )?;
        tx.exec(
            "INSERT INTO node_keys (key_id, node, public_key, added_at) VALUES ($1, $2, $3, $4)",
            &[&new_key_id, &name, &new_public_key, &now],
        )?;
        tx.exec(
            "UPDATE nodes SET key_id = $2, public_key = $3, key_rotated_at = $4 WHERE name = $1",
            &[&name, &new_key_id, &new_public_key, &now],
        )?;
        Ok(())
    })
}

pub(super) fn add_claim(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: &str,
    public_key: &str,
    source: &str,
    now: i64,
) -> StoreResult<()> {
    let node = node_for_update(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    rules::check_claimable(&node, name)?;
    if node.key_id == key_id || extra_claim(tx, name, key_id)?.is_some() {
        return Ok(());
    }
    if let Some(owner) = key_owner(tx, key_id)? {
        return Err(rules::claim_key_taken(key_id, &owner));
    }
    insert_extra_claim(tx, name, key_id, public_key, Some(source), now)
}

pub(super) fn expire_pending(
    store: &PgStore,
    enrolled_before: i64,
) -> StoreResult<Vec<PendingClaim>> {
    // Asked on every enrolment: a read first, so a write transaction is only started when
    // there is something to drop.
    let any = store.read(|tx| {
        Ok(tx
            .opt(
                "SELECT 1 FROM nodes WHERE status = 'pending' AND enrolled_at < $1
                 UNION ALL SELECT 1 FROM extra_claims WHERE claimed_at < $1 LIMIT 1",
                &[&enrolled_before],
            )?
            .is_some())
    })?;
    if !any {
        return Ok(Vec::new());
    }
    store.write(|tx| {
        let mut expired: Vec<PendingClaim> = tx
            .query(
                "DELETE FROM extra_claims WHERE claimed_at < $1
                 RETURNING name, key_id, source, claimed_at",
                &[&enrolled_before],
            )?
            .iter()
            .map(pending_claim_from_row)
            .collect::<StoreResult<_>>()?;
        expired.sort_by_key(|c| c.claimed_at);
        let first: Vec<PendingClaim> = tx
            .query(
                "SELECT name, key_id, claim_source, enrolled_at FROM nodes
                 WHERE status = 'pending' AND enrolled_at < $1
                 ORDER BY enrolled_at, name COLLATE \"C\" FOR UPDATE",
                &[&enrolled_before],
            )?
            .iter()
            .map(pending_claim_from_row)
            .collect::<StoreResult<_>>()?;
        for claim in &first {
            let later = claims_of(tx, &claim.name)?;
            match later.iter().find(|c| c.key_id != claim.key_id) {
                Some(next) => {
                    let mut others = Vec::new();
                    for c in later
                        .iter()
                        .filter(|c| c.key_id != claim.key_id && c.key_id != next.key_id)
                    {
                        others.push((c.clone(), extra_claim(tx, &c.name, &c.key_id)?));
                    }
                    promote_claim(tx, &claim.name, &next.key_id, false, 0)?;
                    for (c, row) in others {
                        if let Some((pem, source, at)) = row {
                            insert_extra_claim(
                                tx,
                                &c.name,
                                &c.key_id,
                                &pem,
                                source.as_deref(),
                                at,
                            )?;
                        }
                    }
                }
                None => {
                    delete_node_in(tx, &claim.name)?;
                }
            }
        }
        expired.extend(first);
        expired.sort_by_key(|c| c.claimed_at);
        Ok(expired)
    })
}

pub(super) fn approve(
    tx: &mut Tx<'_>,
    name: &str,
    key_id: Option<&str>,
    now: i64,
) -> StoreResult<NodeRecord> {
    let node = node_for_update(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
    let claims = if node.status == NodeStatus::Pending {
        claims_of(tx, name)?
    } else {
        Vec::new()
    };
    match rules::approval(name, node.status, &node.key_id, key_id, &claims)? {
        Approval::Promote(want) => return promote_claim(tx, name, want, true, now),
        Approval::Approve => change_status(tx, name, node.status, NodeStatus::Approved, now)?,
        Approval::Approved => {}
    }
    node_named(tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))
}

pub(super) fn record_chain_event(store: &PgStore, event: &ChainEvent) -> StoreResult<bool> {
    let expected = to_i64(event.expected_sequence, "expected_sequence")?;
    let got = to_i64(event.got_sequence, "got_sequence")?;
    let result = store.write(|tx| {
        let r = tx.one(
            "INSERT INTO chain_events (node, kind, digest, first_at, last_at, count,
                                       expected_sequence, got_sequence, detail)
             VALUES ($1, $2, $3, $4, $4, 1, $5, $6, $7)
             ON CONFLICT (node, kind, digest) DO UPDATE SET
                 count = chain_events.count + 1,
                 last_at = GREATEST(chain_events.last_at, excluded.last_at)
             RETURNING count",
            &[
                &event.node,
                &event.kind,
                &event.digest,
                &event.at,
                &expected,
                &got,
                &event.detail,
            ],
        )?;
        get::<i64>(&r, 0)
    });
    match result {
        Ok(count) => Ok(count == 1),
        // The only foreign key: the node.
        Err(StoreError::Conflict(m)) if m.contains("foreign key") => {
            Err(StoreError::NoSuchNode(event.node.clone()))
        }
        Err(e) => Err(e),
    }
}

pub(super) fn add_exception(
    tx: &mut Tx<'_>,
    new: &NewException,
    now: i64,
) -> StoreResult<ExceptionRecord> {
    if let Some(node) = &new.node {
        // Shared lock: the node cannot be deleted before this commits.
        if tx
            .opt("SELECT 1 FROM nodes WHERE name = $1 FOR SHARE", &[node])?
            .is_none()
        {
            return Err(StoreError::NoSuchNode(node.clone()));
        }
    }
    let id: i64 = get(
        &tx.one(
            "INSERT INTO exceptions (check_id, cis, node, until_at, reason, created_by,
                                     created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &new.check_id,
                &new.cis,
                &new.node,
                &new.until,
                &new.reason,
                &new.by,
                &now,
            ],
        )?,
        0,
    )?;
    let record = exception_by_id(tx, id)?
        .ok_or_else(|| StoreError::Backend(format!("exception {id} vanished")))?;
    exception_event(tx, &record, "add", now, &new.by, &new.reason)?;
    Ok(record)
}

pub(super) fn revoke_exception(
    tx: &mut Tx<'_>,
    id: i64,
    by: &str,
    reason: &str,
    now: i64,
) -> StoreResult<Option<ExceptionRecord>> {
    // Locked: two operators revoking at once on two collectors cannot both succeed.
    if tx
        .opt("SELECT 1 FROM exceptions WHERE id = $1 FOR UPDATE", &[&id])?
        .is_none()
    {
        return Ok(None);
    }
    let Some(current) = exception_by_id(tx, id)? else {
        return Ok(None);
    };
    rules::check_revocable(&current, id)?;
    tx.exec(
        "UPDATE exceptions SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
         WHERE id = $1",
        &[&id, &now, &by, &reason],
    )?;
    exception_event(tx, &current, "revoke", now, by, reason)?;
    exception_by_id(tx, id)
}

/// Appends one entry to the exception log (inside the caller's transaction).
fn exception_event(
    tx: &mut Tx<'_>,
    e: &ExceptionRecord,
    action: &str,
    at: i64,
    by: &str,
    reason: &str,
) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO exception_events (exception_id, action, at, by, reason, check_id, node,
                                       until_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &e.id,
            &action,
            &at,
            &by,
            &reason,
            &e.check_id,
            &e.node,
            &e.until,
        ],
    )?;
    Ok(())
}
