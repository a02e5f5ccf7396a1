//! The SQLite backend: the default store, one file next to the collector, no server to run.
//!
//! Why it is set up the way it is:
//! - Durability: the collector acknowledges a report only after `commit` returns, and the
//!   agent then deletes it from its spool, so an acknowledged report must survive `kill -9`
//!   and power loss. WAL mode with `synchronous=FULL` syncs the log on every commit; the
//!   ingest path batches many reports into one `commit`, so they share that cost.
//! - Concurrency: SQLite allows one writer at a time, so writes go through one mutexed
//!   connection (`BEGIN IMMEDIATE`, so a second process such as `token create` waits on the
//!   busy timeout instead of failing half-way). Reads use a small pool of other
//!   connections: in WAL mode they see the last commit and never block the writer.
//! - Cost: `fleet_summary` reads counters that enrolment, `commit` and `set_status` keep up
//!   to date (nodes by status and failing, verdicts per check) and counts only the stale
//!   nodes, as index ranges; never the history, never a scan of the fleet. A run of
//!   unchanged notices is one `reports` row rewritten in place, so a quiet fleet does not
//!   grow the file.
//! - Checkpoints: WAL mode writes every page twice, once into the log at commit and once
//!   into the database when the log is checkpointed. SQLite would checkpoint inside the
//!   committing call every 1,000 pages, on the one writer that every report waits for; a
//!   background thread with its own connection does it instead (`Checkpointer`), while
//!   the writer goes on committing. The writer still checkpoints itself past
//!   [`CheckpointOptions::writer_after_pages`], so the log stays bounded even if the thread
//!   cannot keep up.
//! - Schema: plain `.sql` files in `migrations/sqlite/`, embedded in the binary, applied in
//!   order inside one transaction at open and recorded in `schema_migrations`. A database
//!   that a newer collector migrated further is refused rather than misread.

mod checkpoint;
mod claims;
mod commit;
mod evidence;
mod exceptions;
mod lock;
mod open;
mod read;
#[cfg(test)]
mod tests;

pub use lock::{LockError, ServeLock};
pub use open::{Migration, Settings, MIGRATIONS};

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nodeproof_proto::chain::ChainLink;
use nodeproof_proto::Status;
use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row};

use super::{
    Accepted, ChainEvent, DriftPage, ExceptionEvent, ExceptionRecord, FailingCheck, FleetSummary,
    HistoryEntry, NewException, NodeKey, NodeRecord, NodeStatus, PendingClaim, Store, StoreError,
    StoreResult,
};
use checkpoint::Checkpointer;
use open::configure;

/// How long a connection waits for another one's lock (another process writing, a
/// checkpoint) before it gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept for reuse; more are opened under load and then closed.
const MAX_IDLE_READERS: usize = 4;
/// Enough for every statement `commit` uses, so none is re-prepared per report.
const STATEMENT_CACHE: usize = 64;

/// The SQLite store. Cheap to share: `Send + Sync`, internally locked.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Checkpointer,
    /// Bytes committed since the checkpointer was last woken (estimated).
    uncheckpointed: AtomicU64,
    background_after_bytes: u64,
    /// (device, inode) of the file at open; see [`SqliteStore::check_identity`].
    identity: (u64, u64),
    /// Why the file is no longer ours, once it is not (sticky).
    lost: Mutex<Option<String>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// When the log is checkpointed. The defaults suit the collector; tests make them small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// The background checkpoint thread is woken after about this many bytes were
    /// committed. Default 4 MiB (SQLite's own default is 1,000 pages, 4 MiB).
    pub background_after_bytes: u64,
    /// The writer checkpoints inside its commit only when the log has grown past this
    /// many pages: the safety net for a checkpointer that falls behind, so the log cannot
    /// grow without bound. Default 16,384 pages (64 MiB); 0 turns it off.
    pub writer_after_pages: u32,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            background_after_bytes: 4 << 20,
            writer_after_pages: 16_384,
        }
    }
}

/// A node to enrol through [`SqliteStore::enroll_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub name: String,
    pub key_id: String,
    pub public_key: String,
}

impl SqliteStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its Transaction, which rolled back: the
        // connection is consistent, so poisoning carries no information here.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_IDLE_READERS && conn.is_autocommit() {
            pool.push(conn);
        }
        out
    }

    fn open_reader(&self) -> StoreResult<Connection> {
        // No CREATE: the writer made the file; if it is gone, say so rather than read an
        // empty new database.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| {
            StoreError::Backend(format!("cannot open {}: {e}", self.path.display()))
        })?;
        configure(&conn, true)?;
        Ok(conn)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match &e {
            // SQLITE_FULL: kept apart so `/healthz` can say the disk is full.
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
                StoreError::Full(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// A constraint failure is the caller's conflict (a duplicate digest, a reused key), not
/// a broken database.
fn conflict_or(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_constraint(&e) {
        StoreError::Conflict(format!("{}: {e}", what()))
    } else {
        StoreError::from(e)
    }
}

/// A value in the database that this version cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unexpected {what} {value:?} in the database")]
struct BadValue {
    what: &'static str,
    value: String,
}

fn bad_value(idx: usize, what: &'static str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        Type::Text,
        Box::new(BadValue {
            what,
            value: value.to_owned(),
        }),
    )
}

fn node_status(s: &str) -> Option<NodeStatus> {
    match s {
        "pending" => Some(NodeStatus::Pending),
        "approved" => Some(NodeStatus::Approved),
        "revoked" => Some(NodeStatus::Revoked),
        _ => None,
    }
}

fn check_status(s: &str) -> Option<Status> {
    match s {
        "pass" => Some(Status::Pass),
        "fail" => Some(Status::Fail),
        "warn" => Some(Status::Warn),
        "error" => Some(Status::Error),
        _ => None,
    }
}

fn get_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<Status> {
    let s: String = row.get(idx)?;
    check_status(&s).ok_or_else(|| bad_value(idx, "check status", &s))
}

fn get_json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<T>> {
    let s: Option<String> = row.get(idx)?;
    s.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Conflict(format!("{what} {v} is out of range")))
}

/// Orders CIS numbers by their dotted parts as numbers: 4.2.2 before 4.2.10.
pub(crate) fn cis_order(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n).then_with(|| x.cmp(y)),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl Store for SqliteStore {
    fn create_token(
        &self,
        token_sha256: &str,
        expires_at: i64,
        uses: Option<u32>,
        now: i64,
    ) -> StoreResult<()> {
        claims::create_token(self, token_sha256, expires_at, uses, now)
    }

    fn redeem_token(&self, token_sha256: &str, now: i64) -> StoreResult<bool> {
        claims::redeem_token(self, token_sha256, now)
    }

    fn enroll(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        approved: bool,
        now: i64,
    ) -> StoreResult<NodeRecord> {
        claims::enroll(self, name, key_id, public_key, approved, now)
    }

    fn node(&self, name: &str) -> StoreResult<Option<NodeRecord>> {
        read::node(self, name)
    }

    fn node_by_key(&self, key_id: &str) -> StoreResult<Option<NodeRecord>> {
        read::node_by_key(self, key_id)
    }

    fn node_key(&self, key_id: &str) -> StoreResult<Option<NodeKey>> {
        read::node_key(self, key_id)
    }

    fn node_keys(&self, key_ids: &[&str]) -> StoreResult<Vec<Option<NodeKey>>> {
        read::node_keys(self, key_ids)
    }

    fn set_status(&self, name: &str, status: NodeStatus, now: i64) -> StoreResult<()> {
        claims::set_status(self, name, status, now)
    }

    fn rotate_key(
        &self,
        name: &str,
        old_key_id: &str,
        new_key_id: &str,
        new_public_key: &str,
        now: i64,
    ) -> StoreResult<()> {
        claims::rotate_key(self, name, old_key_id, new_key_id, new_public_key, now)
    }

    fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        read::list_nodes(self)
    }

    fn commit(&self, batch: &[Accepted]) -> StoreResult<()> {
        commit::commit(self, batch)
    }

    fn has_digest(&self, digest: &str) -> StoreResult<bool> {
        read::has_digest(self, digest)
    }

    fn record_chain_event(&self, event: &ChainEvent) -> StoreResult<bool> {
        claims::record_chain_event(self, event)
    }

    fn chain_events(&self, node: &str) -> StoreResult<Vec<ChainEvent>> {
        read::chain_events(self, node)
    }

    fn pending_claims(&self) -> StoreResult<Vec<PendingClaim>> {
        claims::pending_claims(self)
    }

    fn set_claim_source(&self, name: &str, key_id: &str, source: &str) -> StoreResult<()> {
        claims::set_claim_source(self, name, key_id, source)
    }

    fn add_claim(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        source: &str,
        now: i64,
    ) -> StoreResult<()> {
        claims::add_claim(self, name, key_id, public_key, source, now)
    }

    fn expire_pending(&self, enrolled_before: i64) -> StoreResult<Vec<PendingClaim>> {
        claims::expire_pending(self, enrolled_before)
    }

    fn delete_node(&self, name: &str) -> StoreResult<NodeRecord> {
        claims::delete_node(self, name)
    }

    fn approve(&self, name: &str, key_id: Option<&str>, now: i64) -> StoreResult<NodeRecord> {
        claims::approve(self, name, key_id, now)
    }

    fn fleet_summary(&self, now: i64) -> StoreResult<FleetSummary> {
        read::fleet_summary(self, now)
    }

    fn history(&self, node: &str, limit: u32) -> StoreResult<Vec<HistoryEntry>> {
        read::history(self, node, limit)
    }

    fn chain_links(&self, node: &str) -> StoreResult<Vec<ChainLink>> {
        read::chain_links(self, node)
    }

    fn envelope(&self, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        read::envelope(self, digest)
    }

    fn failing(&self, cis: &str) -> StoreResult<Vec<NodeRecord>> {
        read::failing(self, cis)
    }

    fn drift(&self, since: i64, limit: Option<u32>) -> StoreResult<DriftPage> {
        read::drift(self, since, limit)
    }

    fn stale_nodes(&self, now: i64) -> StoreResult<Vec<String>> {
        read::stale_nodes(self, now)
    }

    fn failing_checks(&self) -> StoreResult<Vec<FailingCheck>> {
        read::failing_checks(self)
    }

    fn add_exception(&self, new: &NewException, now: i64) -> StoreResult<ExceptionRecord> {
        exceptions::add_exception(self, new, now)
    }

    fn revoke_exception(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<ExceptionRecord>> {
        exceptions::revoke_exception(self, id, by, reason, now)
    }

    fn exceptions(&self) -> StoreResult<Vec<ExceptionRecord>> {
        exceptions::exceptions(self)
    }

    fn exception_events(&self) -> StoreResult<Vec<ExceptionEvent>> {
        exceptions::exception_events(self)
    }

    fn for_each_statement(
        &self,
        filter: &super::ExportFilter,
        f: &mut dyn FnMut(super::StoredStatement) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.read(|c| evidence::for_each_statement(c, filter, f))
    }

    fn chain_anchor(
        &self,
        node: &str,
        before: i64,
    ) -> StoreResult<Option<nodeproof_proto::chain::Anchor>> {
        self.read(|c| evidence::chain_anchor(c, node, before))
    }

    fn key_history(&self, node: &str) -> StoreResult<Vec<super::KeyPeriod>> {
        self.read(|c| evidence::key_history(c, node))
    }

    fn size_bytes(&self) -> StoreResult<u64> {
        // The logical size (pages in use or free, including those still in the WAL): what
        // the file is once checkpointed.
        self.read(|c| {
            Ok(c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )?)
        })
    }

    fn check_file(&self) -> StoreResult<()> {
        self.check_identity()
    }

    fn health(&self, min_free_bytes: u64) -> super::StoreHealth {
        self.file_health(min_free_bytes)
    }
}
