//! The ingest commit on SQLite: a batch of accepted reports in one `BEGIN IMMEDIATE`
//! transaction, the latest check states, drift, and the counters summed over the batch.

use std::collections::{HashMap, HashSet};

use nodeproof_proto::Status;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    bad_value, conflict_or, get_status, is_constraint, node_status, to_i64, to_json, SqliteStore,
};
use crate::store::rules;
use crate::store::{Accepted, AcceptedKind, CheckState, NodeStatus, StoreError, StoreResult};

/// What a committed report adds to the log beyond its envelope: its row, index entries,
/// the node's row and check states (an estimate, only for waking the checkpointer).
const LOG_BYTES_PER_REPORT: u64 = 4096;

/// Changes to `check_counts`, summed over a whole batch so each counter row is written
/// once per commit however many reports touched it.
#[derive(Debug, Default)]
pub(super) struct Deltas(HashMap<String, (String, [i64; 4])>);

impl Deltas {
    fn add(&mut self, cis: &str, id: &str, status: Status, n: i64) {
        let e = self
            .0
            .entry(cis.to_owned())
            .or_insert_with(|| (id.to_owned(), [0; 4]));
        rules::add_check_delta(e, id, status, n);
    }

    /// Counts (with sign `n`) every check in a node's latest state.
    pub(super) fn add_node(&mut self, conn: &Connection, node: &str, n: i64) -> StoreResult<()> {
        let mut stmt =
            conn.prepare_cached("SELECT cis, id, status FROM node_checks WHERE node = ?1")?;
        let mut rows = stmt.query([node])?;
        while let Some(row) = rows.next()? {
            let cis: String = row.get(0)?;
            let id: String = row.get(1)?;
            self.add(&cis, &id, get_status(row, 2)?, n);
        }
        Ok(())
    }

    pub(super) fn apply(self, conn: &Connection) -> StoreResult<()> {
        // Not an upsert: SQLite checks the CHECK constraints of the row to insert before it
        // finds the conflict, so a negative delta would be refused.
        let mut update = conn.prepare_cached(
            "UPDATE check_counts SET id = ?2, pass = pass + ?3, fail = fail + ?4,
                 warn = warn + ?5, error = error + ?6
             WHERE cis = ?1",
        )?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO check_counts (cis, id, pass, fail, warn, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (cis, (id, d)) in self.0 {
            if d == [0; 4] {
                continue;
            }
            let values = params![cis, id, d[0], d[1], d[2], d[3]];
            let written = match update.execute(values) {
                Ok(0) => insert.execute(values),
                other => other,
            };
            written.map_err(|e| {
                if is_constraint(&e) {
                    StoreError::Backend(format!(
                        "check counters for {cis} would go negative ({e}): the counters are \
                         out of step with the latest states"
                    ))
                } else {
                    StoreError::from(e)
                }
            })?;
        }
        Ok(())
    }
}

/// Adds `n` to the number of nodes with this status and `failing_any`.
pub(super) fn tally(
    conn: &Connection,
    status: NodeStatus,
    failing_any: bool,
    n: i64,
) -> StoreResult<()> {
    let values = params![status.as_str(), failing_any, n];
    let written = match conn
        .prepare_cached("UPDATE node_tally SET n = n + ?3 WHERE status = ?1 AND failing_any = ?2")?
        .execute(values)
    {
        Ok(0) => conn
            .prepare_cached("INSERT INTO node_tally (status, failing_any, n) VALUES (?1, ?2, ?3)")?
            .execute(values),
        other => other,
    };
    written.map_err(|e| {
        if is_constraint(&e) {
            StoreError::Backend(format!(
                "the node tally for {} would go negative ({e}): it is out of step with nodes",
                status.as_str()
            ))
        } else {
            StoreError::from(e)
        }
    })?;
    Ok(())
}

fn commit_one(tx: &Transaction<'_>, a: &Accepted, deltas: &mut Deltas) -> StoreResult<()> {
    let head = tx
        .prepare_cached(
            "SELECT status, key_id, last_sequence, last_full_digest, last_run_digest, summary,
                    posture, failing_any, last_digest, last_full_sequence
             FROM nodes WHERE name = ?1",
        )?
        .query_row([&a.node], |r| {
            let status: String = r.get(0)?;
            Ok(rules::Head {
                status: node_status(&status).ok_or_else(|| bad_value(0, "node status", &status))?,
                key_id: r.get(1)?,
                last_sequence: r.get(2)?,
                last_full_digest: r.get(3)?,
                last_run_digest: r.get(4)?,
                summary: r.get(5)?,
                posture: r.get(6)?,
                failing_any: r.get(7)?,
                last_digest: r.get(8)?,
                last_full_sequence: r.get(9)?,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::NoSuchNode(a.node.clone()))?;
    rules::check_commit(&head, a)?;
    let sequence = to_i64(a.sequence, "sequence")?;
    let interval = to_i64(a.interval_secs, "interval_secs")?;
    let stale_after = a.received_at.saturating_add(interval.saturating_mul(3));
    let previous = a.previous.as_deref();
    let stored = |e| {
        conflict_or(e, || {
            format!(
                "report {} (node {}, sequence {}) conflicts with a stored one; nothing committed",
                a.digest, a.node, a.sequence
            )
        })
    };

    match &a.kind {
        AcceptedKind::Full {
            posture,
            summary,
            checks,
        } => {
            let summary_json = to_json(summary)?;
            tx.prepare_cached(
                "INSERT INTO reports (digest, node, sequence, previous, kind, scan_time,
                                      received_at, summary, posture, envelope)
                 VALUES (?1, ?2, ?3, ?4, 'full', ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                a.digest,
                a.node,
                sequence,
                previous,
                a.scan_time,
                a.received_at,
                summary_json,
                posture,
                a.envelope
            ])
            .map_err(stored)?;
            update_checks(tx, a, checks, deltas)?;
            let failing = rules::failing_checks(checks);
            let failing_any = !failing.is_empty();
            tx.prepare_cached(
                "UPDATE nodes SET last_sequence = ?2, last_digest = ?3, last_scan_time = ?4,
                     last_seen = ?5, interval_secs = ?6, stale_after = ?7,
                     last_full_digest = ?3, last_full_sequence = ?2, posture = ?8,
                     summary = ?9, failing = ?10, failing_any = ?11, last_run_digest = NULL
                 WHERE name = ?1",
            )?
            .execute(params![
                a.node,
                sequence,
                a.digest,
                a.scan_time,
                a.received_at,
                interval,
                stale_after,
                posture,
                summary_json,
                to_json(&failing)?,
                failing_any
            ])?;
            if head.failing_any != failing_any {
                tally(tx, head.status, head.failing_any, -1)?;
                tally(tx, head.status, failing_any, 1)?;
            }
        }
        AcceptedKind::Unchanged {
            since,
            count,
            first_unchanged,
        } => {
            let count = to_i64(*count, "count")?;
            // The previous statement was a notice of this same run (a full report ends a
            // run and clears last_run_digest, and `since` is the last full report): this
            // notice attests the whole run, so it takes that row's place.
            if let Some(run) = &head.last_run_digest {
                let n = tx
                    .prepare_cached(
                        "UPDATE reports SET digest = ?2, sequence = ?3, previous = ?4,
                             scan_time = ?5, received_at = ?6, count = ?7,
                             first_unchanged = ?8, envelope = ?9
                         WHERE digest = ?1 AND kind = 'unchanged'",
                    )?
                    .execute(params![
                        run,
                        a.digest,
                        sequence,
                        previous,
                        a.scan_time,
                        a.received_at,
                        count,
                        first_unchanged,
                        a.envelope
                    ])
                    .map_err(stored)?;
                if n != 1 {
                    return Err(StoreError::Backend(format!(
                        "node {} points at unchanged run {run}, which is not stored",
                        a.node
                    )));
                }
            } else {
                tx.prepare_cached(
                    "INSERT INTO reports (digest, node, sequence, previous, kind, scan_time,
                                          received_at, summary, posture, since, count,
                                          first_unchanged, envelope)
                     VALUES (?1, ?2, ?3, ?4, 'unchanged', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    a.digest,
                    a.node,
                    sequence,
                    previous,
                    a.scan_time,
                    a.received_at,
                    head.summary,
                    head.posture,
                    since,
                    count,
                    first_unchanged,
                    a.envelope
                ])
                .map_err(stored)?;
            }
            tx.prepare_cached(
                "UPDATE nodes SET last_sequence = ?2, last_digest = ?3, last_scan_time = ?4,
                     last_seen = ?5, interval_secs = ?6, stale_after = ?7, last_run_digest = ?3
                 WHERE name = ?1",
            )?
            .execute(params![
                a.node,
                sequence,
                a.digest,
                a.scan_time,
                a.received_at,
                interval,
                stale_after
            ])?;
        }
    }
    Ok(())
}

/// Replaces a node's latest check states with a full report's, writing only what changed,
/// recording drift and the counter deltas.
fn update_checks(
    tx: &Transaction<'_>,
    a: &Accepted,
    checks: &[CheckState],
    deltas: &mut Deltas,
) -> StoreResult<()> {
    // The new checks by CIS number, to match the stored rows against without copying them.
    let mut by_cis: Vec<(&str, usize)> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cis.as_str(), i))
        .collect();
    by_cis.sort_unstable();
    if by_cis.windows(2).any(|w| w[0].0 == w[1].0) {
        // Name the first repeated check in the report's order.
        let mut seen = HashSet::new();
        let twice = checks
            .iter()
            .find(|c| !seen.insert(c.cis.as_str()))
            .map_or("", |c| c.cis.as_str());
        return Err(StoreError::Conflict(format!(
            "report {} lists check {twice} twice; nothing committed",
            a.digest
        )));
    }

    /// What a stored row of this node says, next to the new check with its CIS number.
    enum Stored {
        /// Same status and labels: nothing to write.
        Same,
        Relabel,
        Changed {
            id: String,
            from: Status,
        },
    }
    // Per new check: `None` when the node has no row for it yet.
    let mut stored: Vec<Option<Stored>> = (0..checks.len()).map(|_| None).collect();
    // Rows whose check the new report no longer has (another agent version).
    let mut gone: Vec<(String, String, Status)> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT cis, id, scored, status FROM node_checks WHERE node = ?1")?;
        let mut rows = stmt.query([&a.node])?;
        while let Some(row) = rows.next()? {
            let cis = row.get_ref(0)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e))
            })?;
            let status = get_status(row, 3)?;
            match by_cis.binary_search_by(|(k, _)| (*k).cmp(cis)) {
                Ok(pos) => {
                    let i = by_cis[pos].1;
                    let c = &checks[i];
                    let id = row.get_ref(1)?.as_str().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e))
                    })?;
                    let scored: bool = row.get(2)?;
                    stored[i] = Some(if status != c.status {
                        Stored::Changed {
                            id: id.to_owned(),
                            from: status,
                        }
                    } else if id != c.id || scored != c.scored {
                        Stored::Relabel
                    } else {
                        Stored::Same
                    });
                }
                Err(_) => gone.push((cis.to_owned(), row.get(1)?, status)),
            }
        }
    }

    let mut insert = tx.prepare_cached(
        "INSERT INTO node_checks (node, cis, id, scored, status, since_at, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut change = tx.prepare_cached(
        "UPDATE node_checks SET id = ?3, scored = ?4, status = ?5, since_at = ?6, digest = ?7
         WHERE node = ?1 AND cis = ?2",
    )?;
    let mut relabel = tx.prepare_cached(
        "UPDATE node_checks SET id = ?3, scored = ?4 WHERE node = ?1 AND cis = ?2",
    )?;
    let mut drift = tx.prepare_cached(
        "INSERT INTO drift (node, cis, from_status, to_status, at, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    // In the report's order, so drift events are recorded in it.
    for (c, stored) in checks.iter().zip(stored) {
        let to = c.status.as_str();
        match stored {
            None => {
                insert.execute(params![
                    a.node,
                    c.cis,
                    c.id,
                    c.scored,
                    to,
                    a.received_at,
                    a.digest
                ])?;
                drift.execute(params![
                    a.node,
                    c.cis,
                    None::<&str>,
                    to,
                    a.received_at,
                    a.digest
                ])?;
                deltas.add(&c.cis, &c.id, c.status, 1);
            }
            Some(Stored::Changed { id, from }) => {
                change.execute(params![
                    a.node,
                    c.cis,
                    c.id,
                    c.scored,
                    to,
                    a.received_at,
                    a.digest
                ])?;
                drift.execute(params![
                    a.node,
                    c.cis,
                    from.as_str(),
                    to,
                    a.received_at,
                    a.digest
                ])?;
                deltas.add(&c.cis, &id, from, -1);
                deltas.add(&c.cis, &c.id, c.status, 1);
            }
            Some(Stored::Relabel) => {
                relabel.execute(params![a.node, c.cis, c.id, c.scored])?;
                deltas.add(&c.cis, &c.id, c.status, 0);
            }
            Some(Stored::Same) => {}
        }
    }
    // Checks the new report no longer has (another agent version) leave the latest state.
    let mut remove = tx.prepare_cached("DELETE FROM node_checks WHERE node = ?1 AND cis = ?2")?;
    for (cis, id, status) in gone {
        remove.execute(params![a.node, cis])?;
        deltas.add(&cis, &id, status, -1);
    }
    Ok(())
}

pub(super) fn commit(store: &SqliteStore, batch: &[Accepted]) -> StoreResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut conn = store.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deltas = Deltas::default();
    for a in batch {
        commit_one(&tx, a, &mut deltas)?;
    }
    deltas.apply(&tx)?;
    // With synchronous=FULL the WAL is synced before this returns: durable.
    tx.commit()?;
    drop(conn);
    store.committed(
        batch
            .iter()
            .map(|a| a.envelope.len() as u64 + LOG_BYTES_PER_REPORT)
            .sum(),
    );
    Ok(())
}
