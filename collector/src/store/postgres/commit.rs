//! Committing accepted statements on PostgreSQL, safe with several collectors writing at
//! once. The collector that accepted a statement decided against the chain state it read
//! before; another collector may have extended the same chain since. So the commit locks
//! every node of the batch (`SELECT ... FOR UPDATE`, in name order so two batches never
//! wait on each other in a circle) and re-checks each statement against the locked,
//! current head: status, key, sequence, and for notices the run they belong to. A
//! statement that no longer fits refuses the whole batch with a Conflict, as on SQLite.
//! Behind the re-check, `UNIQUE (node, sequence)` and `UNIQUE (digest)` on `reports` make
//! a second copy of a sequence impossible even for a writer that skipped the lock.
//!
//! The counters (`node_tally`, `check_counts`) are summed over the batch and written once
//! per key, in sorted key order, for the same reason.

use std::collections::{BTreeMap, HashSet};

use nodeproof_proto::Status;

use super::{
    check_status, get, get_opt_u64, get_u64, node_status, to_i64, to_json, StoreResult, Tx,
};
use crate::store::rules::{self, check_commit, failing_checks, Head};
use crate::store::{Accepted, AcceptedKind, CheckState, NodeStatus, StoreError};

/// Changes to `check_counts`, by CIS number: (id, [pass, fail, warn, error]).
#[derive(Debug, Default)]
pub(super) struct Deltas(BTreeMap<String, (String, [i64; 4])>);

impl Deltas {
    pub(super) fn add(&mut self, cis: &str, id: &str, status: Status, n: i64) {
        let e = self
            .0
            .entry(cis.to_owned())
            .or_insert_with(|| (id.to_owned(), [0; 4]));
        rules::add_check_delta(e, id, status, n);
    }

    /// Counts (with sign `n`) every check in a node's latest state.
    pub(super) fn add_node(&mut self, tx: &mut Tx<'_>, node: &str, n: i64) -> StoreResult<()> {
        for row in tx.query(
            "SELECT cis, id, status FROM node_checks WHERE node = $1",
            &[&node],
        )? {
            let cis: String = get(&row, 0)?;
            let id: String = get(&row, 1)?;
            let status: String = get(&row, 2)?;
            self.add(&cis, &id, check_status(&status)?, n);
        }
        Ok(())
    }

    /// Writes the deltas, one row per CIS number, in CIS-string order (the BTreeMap's).
    pub(super) fn apply(self, tx: &mut Tx<'_>) -> StoreResult<()> {
        for (cis, (id, d)) in self.0 {
            if d == [0; 4] {
                continue;
            }
            // Not an upsert: the CHECK constraints of the row to insert are checked before
            // the conflict is found, so a negative delta would be refused.
            let changed = tx
                .exec(
                    "UPDATE check_counts SET id = $2, pass = pass + $3, fail = fail + $4,
                         warn = warn + $5, error = error + $6
                     WHERE cis = $1",
                    &[&cis, &id, &d[0], &d[1], &d[2], &d[3]],
                )
                .map_err(|e| negative(e, &format!("check counters for {cis}")))?;
            if changed == 0 {
                tx.exec(
                    "INSERT INTO check_counts (cis, id, pass, fail, warn, error)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&cis, &id, &d[0], &d[1], &d[2], &d[3]],
                )
                .map_err(|e| negative(e, &format!("check counters for {cis}")))?;
            }
        }
        Ok(())
    }
}

/// Changes to `node_tally`, by (status, failing_any).
#[derive(Debug, Default)]
pub(super) struct Tally(BTreeMap<(&'static str, bool), i64>);

impl Tally {
    pub(super) fn add(&mut self, status: NodeStatus, failing_any: bool, n: i64) {
        *self.0.entry((status.as_str(), failing_any)).or_default() += n;
    }

    /// Writes the changes in key order.
    pub(super) fn apply(self, tx: &mut Tx<'_>) -> StoreResult<()> {
        for ((status, failing_any), n) in self.0 {
            if n == 0 {
                continue;
            }
            let what = format!("the node tally for {status}");
            let changed = tx
                .exec(
                    "UPDATE node_tally SET n = n + $3 WHERE status = $1 AND failing_any = $2",
                    &[&status, &failing_any, &n],
                )
                .map_err(|e| negative(e, &what))?;
            if changed == 0 {
                tx.exec(
                    "INSERT INTO node_tally (status, failing_any, n) VALUES ($1, $2, $3)",
                    &[&status, &failing_any, &n],
                )
                .map_err(|e| negative(e, &what))?;
            }
        }
        Ok(())
    }
}

/// A CHECK failure on a counter is a counter out of step (a bug), not the caller's
/// conflict; a lost race (unique violation on insert) stays a Conflict to be retried.
fn negative(e: StoreError, what: &str) -> StoreError {
    match e {
        StoreError::Conflict(m) if m.contains("check constraint") => StoreError::Backend(format!(
            "{what} would go negative ({m}): the counters are out of step with the latest states"
        )),
        other => other,
    }
}

/// Locks every node of the batch, in name order, then commits its statements in order.
pub(super) fn commit_batch(tx: &mut Tx<'_>, batch: &[Accepted]) -> StoreResult<()> {
    let mut names: Vec<&str> = batch.iter().map(|a| a.node.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        tx.opt("SELECT 1 FROM nodes WHERE name = $1 FOR UPDATE", &[name])?;
    }
    let mut deltas = Deltas::default();
    let mut tally = Tally::default();
    for a in batch {
        commit_one(tx, a, &mut deltas, &mut tally)?;
    }
    tally.apply(tx)?;
    deltas.apply(tx)
}

fn head(tx: &mut Tx<'_>, node: &str) -> StoreResult<Head> {
    let r = tx
        .opt(
            "SELECT status, key_id, last_sequence, last_full_digest, last_run_digest, summary,
                    posture, failing_any, last_digest, last_full_sequence
             FROM nodes WHERE name = $1",
            &[&node],
        )?
        .ok_or_else(|| StoreError::NoSuchNode(node.to_owned()))?;
    let status: String = get(&r, 0)?;
    Ok(Head {
        status: node_status(&status)?,
        key_id: get(&r, 1)?,
        last_sequence: get_u64(&r, 2, "sequence")?,
        last_full_digest: get(&r, 3)?,
        last_run_digest: get(&r, 4)?,
        summary: get(&r, 5)?,
        posture: get(&r, 6)?,
        failing_any: get(&r, 7)?,
        last_digest: get(&r, 8)?,
        last_full_sequence: get_opt_u64(&r, 9, "sequence")?,
    })
}

fn commit_one(
    tx: &mut Tx<'_>,
    a: &Accepted,
    deltas: &mut Deltas,
    tally: &mut Tally,
) -> StoreResult<()> {
    let head = head(tx, &a.node)?;
    // Re-checked under the lock: another collector (or the CLI) may have revoked, rotated
    // or extended the chain since this statement was accepted.
    check_commit(&head, a)?;
    let sequence = to_i64(a.sequence, "sequence")?;
    let interval = to_i64(a.interval_secs, "interval_secs")?;
    let stale_after = a.received_at.saturating_add(interval.saturating_mul(3));
    let previous = a.previous.as_deref();
    let stored = |e: StoreError| match e {
        StoreError::Conflict(m) => StoreError::Conflict(format!(
            "report {} (node {}, sequence {}) conflicts with a stored one ({m}); nothing \
             committed",
            a.digest, a.node, a.sequence
        )),
        other => other,
    };

    match &a.kind {
        AcceptedKind::Full {
            posture,
            summary,
            checks,
        } => {
            let summary_json = to_json(summary)?;
            tx.exec(
                "INSERT INTO reports (digest, node, sequence, previous, kind, scan_time,
                                      received_at, summary, posture, envelope)
                 VALUES ($1, $2, $3, $4, 'full', $5, $6, $7, $8, $9)",
                &[
                    &a.digest,
                    &a.node,
                    &sequence,
                    &previous,
                    &a.scan_time,
                    &a.received_at,
                    &summary_json,
                    posture,
                    &a.envelope,
                ],
            )
            .map_err(stored)?;
            update_checks(tx, a, checks, deltas)?;
            let failing = failing_checks(checks);
            let failing_any = !failing.is_empty();
            let failing_json = to_json(&failing)?;
            tx.exec(
                "UPDATE nodes SET last_sequence = $2, last_digest = $3, last_scan_time = $4,
                     last_seen = $5, interval_secs = $6, stale_after = $7,
                     last_full_digest = $3, last_full_sequence = $2, posture = $8,
                     summary = $9, failing = $10, failing_any = $11, last_run_digest = NULL
                 WHERE name = $1",
                &[
                    &a.node,
                    &sequence,
                    &a.digest,
                    &a.scan_time,
                    &a.received_at,
                    &interval,
                    &stale_after,
                    posture,
                    &summary_json,
                    &failing_json,
                    &failing_any,
                ],
            )?;
            if head.failing_any != failing_any {
                tally.add(head.status, head.failing_any, -1);
                tally.add(head.status, failing_any, 1);
            }
        }
        AcceptedKind::Unchanged {
            since,
            count,
            first_unchanged,
        } => {
            let count = to_i64(*count, "count")?;
            // The previous statement was a notice of this same run: this notice attests
            // the whole run, so it takes that row's place.
            if let Some(run) = &head.last_run_digest {
                let n = tx
                    .exec(
                        "UPDATE reports SET digest = $2, sequence = $3, previous = $4,
                             scan_time = $5, received_at = $6, count = $7,
                             first_unchanged = $8, envelope = $9
                         WHERE digest = $1 AND kind = 'unchanged'",
                        &[
                            run,
                            &a.digest,
                            &sequence,
                            &previous,
                            &a.scan_time,
                            &a.received_at,
                            &count,
                            first_unchanged,
                            &a.envelope,
                        ],
                    )
                    .map_err(stored)?;
                if n != 1 {
                    return Err(StoreError::Backend(format!(
                        "node {} points at unchanged run {run}, which is not stored",
                        a.node
                    )));
                }
            } else {
                tx.exec(
                    "INSERT INTO reports (digest, node, sequence, previous, kind, scan_time,
                                          received_at, summary, posture, since, count,
                                          first_unchanged, envelope)
                     VALUES ($1, $2, $3, $4, 'unchanged', $5, $6, $7, $8, $9, $10, $11, $12)",
                    &[
                        &a.digest,
                        &a.node,
                        &sequence,
                        &previous,
                        &a.scan_time,
                        &a.received_at,
                        &head.summary,
                        &head.posture,
                        since,
                        &count,
                        first_unchanged,
                        &a.envelope,
                    ],
                )
                .map_err(stored)?;
            }
            tx.exec(
                "UPDATE nodes SET last_sequence = $2, last_digest = $3, last_scan_time = $4,
                     last_seen = $5, interval_secs = $6, stale_after = $7, last_run_digest = $3
                 WHERE name = $1",
                &[
                    &a.node,
                    &sequence,
                    &a.digest,
                    &a.scan_time,
                    &a.received_at,
                    &interval,
                    &stale_after,
                ],
            )?;
        }
    }
    Ok(())
}

/// Replaces a node's latest check states with a full report's, writing only what changed,
/// recording drift and the counter deltas (the same rules as the SQLite store).
fn update_checks(
    tx: &mut Tx<'_>,
    a: &Accepted,
    checks: &[CheckState],
    deltas: &mut Deltas,
) -> StoreResult<()> {
    let mut seen = HashSet::new();
    if let Some(twice) = checks.iter().find(|c| !seen.insert(c.cis.as_str())) {
        return Err(StoreError::Conflict(format!(
            "report {} lists check {} twice; nothing committed",
            a.digest, twice.cis
        )));
    }
    let by_cis: std::collections::HashMap<&str, usize> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cis.as_str(), i))
        .collect();

    enum Stored {
        Same,
        Relabel,
        Changed { id: String, from: Status },
    }
    let mut stored: Vec<Option<Stored>> = (0..checks.len()).map(|_| None).collect();
    let mut gone: Vec<(String, String, Status)> = Vec::new();
    for row in tx.query(
        "SELECT cis, id, scored, status FROM node_checks WHERE node = $1",
        &[&a.node],
    )? {
        let cis: String = get(&row, 0)?;
        let id: String = get(&row, 1)?;
        let scored: bool = get(&row, 2)?;
        let status_text: String = get(&row, 3)?;
        let status = check_status(&status_text)?;
        match by_cis.get(cis.as_str()) {
            Some(&i) => {
                let c = &checks[i];
                stored[i] = Some(if status != c.status {
                    Stored::Changed { id, from: status }
                } else if id != c.id || scored != c.scored {
                    Stored::Relabel
                } else {
                    Stored::Same
                });
            }
            None => gone.push((cis, id, status)),
        }
    }

    for (c, stored) in checks.iter().zip(stored) {
        let to = c.status.as_str();
        match stored {
            None => {
                tx.exec(
                    "INSERT INTO node_checks (node, cis, id, scored, status, since_at, digest)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &a.node,
                        &c.cis,
                        &c.id,
                        &c.scored,
                        &to,
                        &a.received_at,
                        &a.digest,
                    ],
                )?;
                tx.exec(
                    "INSERT INTO drift (node, cis, from_status, to_status, at, digest)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &a.node,
                        &c.cis,
                        &None::<&str>,
                        &to,
                        &a.received_at,
                        &a.digest,
                    ],
                )?;
                deltas.add(&c.cis, &c.id, c.status, 1);
            }
            Some(Stored::Changed { id, from }) => {
                tx.exec(
                    "UPDATE node_checks SET id = $3, scored = $4, status = $5, since_at = $6,
                         digest = $7
                     WHERE node = $1 AND cis = $2",
                    &[
                        &a.node,
                        &c.cis,
                        &c.id,
                        &c.scored,
                        &to,
                        &a.received_at,
                        &a.digest,
                    ],
                )?;
                tx.exec(
                    "INSERT INTO drift (node, cis, from_status, to_status, at, digest)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &a.node,
                        &c.cis,
                        &from.as_str(),
                        &to,
                        &a.received_at,
                        &a.digest,
                    ],
                )?;
                deltas.add(&c.cis, &id, from, -1);
                deltas.add(&c.cis, &c.id, c.status, 1);
            }
            Some(Stored::Relabel) => {
                tx.exec(
                    "UPDATE node_checks SET id = $3, scored = $4 WHERE node = $1 AND cis = $2",
                    &[&a.node, &c.cis, &c.id, &c.scored],
                )?;
                deltas.add(&c.cis, &c.id, c.status, 0);
            }
            Some(Stored::Same) => {}
        }
    }
    for (cis, id, status) in gone {
        tx.exec(
            "DELETE FROM node_checks WHERE node = $1 AND cis = $2",
            &[&a.node, &cis],
        )?;
        deltas.add(&cis, &id, status, -1);
    }
    Ok(())
}
