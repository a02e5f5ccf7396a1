//! The PostgreSQL backend: for a fleet (or an availability requirement) that outgrows one
//! collector process with a SQLite file. Several stateless collectors share one database;
//! every rule of ingest holds across them because it is enforced by the database
//! (transactions, row locks, unique constraints), never by a lock inside one process.
//!
//! Why it is built the way it is:
//! - Client: the synchronous `postgres` crate (tokio-postgres underneath), because the
//!   [`Store`] trait is synchronous and its callers already run it on blocking threads; an
//!   async client (sqlx, tokio-postgres directly) would need a runtime inside every call.
//!   The sync client must never be called from an async context (it would panic): the
//!   server calls the store through `spawn_blocking`, the CLI outside any runtime, and
//!   dropping the store closes its connections on a thread of its own (see `Drop`).
//! - Pool: `r2d2` with a small manager of our own ([`Manager`]), so each connection carries
//!   its prepared statements. A connection that broke (the server restarted, an operator
//!   ran `pg_terminate_backend`) is dropped and a new one made on the next call; while the
//!   database cannot be reached, calls fail with [`StoreError::Unavailable`] (HTTP 503) and
//!   nothing is acknowledged.
//! - Writes: one transaction each, `READ COMMITTED`, taking the rows they decide on with
//!   `SELECT ... FOR UPDATE` in a fixed order (node names, then counter keys sorted), so two
//!   collectors serialize on the same node and never deadlock on the counters. A
//!   serialization failure, deadlock or unique violation between concurrent writers
//!   re-runs the whole transaction (it then sees the other writer's commit and decides
//!   again); what still fails is a Conflict.
//! - Schema: `.sql` files in `migrations/postgres/`, embedded, applied at open inside one
//!   transaction holding a transaction-level advisory lock, so collectors starting at once
//!   apply each migration exactly once (see [`schema`]).

mod claims;
mod commit;
mod evidence;
mod reads;
pub mod schema;
mod sqlite_import;
pub mod testdb;

pub use sqlite_import::{import_sqlite, ImportReport};

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use nodeproof_proto::Status;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{NoTls, Row, Statement};

use super::{NodeStatus, Store, StoreError, StoreResult};

/// Connections kept at most; a blocked caller waits for one up to [`CHECKOUT_TIMEOUT`].
const POOL_SIZE: u32 = 16;
/// How long a call waits for a connection (the database restarting, the pool exhausted)
/// before it answers Unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long making a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often one write transaction is run again after losing a race to another writer.
const WRITE_ATTEMPTS: usize = 8;

/// A pooled connection and its prepared statements.
pub struct Conn {
    client: postgres::Client,
    cache: HashMap<&'static str, Statement>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("statements", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Makes and checks pool connections.
#[derive(Debug)]
pub struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.config.connect(NoTls)?,
            cache: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// The PostgreSQL store. Cheap to share: `Send + Sync`, a pool inside.
pub struct PgStore {
    /// `None` only while dropping (see `Drop`).
    pool: Option<r2d2::Pool<Manager>>,
    /// The URL with any password masked, for messages.
    shown: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing a sync client blocks on its own runtime, which panics inside an async
        // context (the server drops its state on a runtime thread): close them on a plain
        // thread.
        if let Some(pool) = self.pool.take() {
            let closing = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(pool));
            if let Ok(t) = closing {
                let _ = t.join();
            }
        }
    }
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user[:password]@host[:port]/db`)
    /// and brings its schema up to date (creating it when `create`; otherwise a database
    /// without the collector's schema is an error saying how to create it).
    pub fn open(url: &str, shown: &str, create: bool) -> StoreResult<PgStore> {
        let mut config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!(
                "{shown} is not a PostgreSQL URL ({e}): use postgres://user@host:5432/database"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("nodeproof-collector");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .test_on_check_out(true)
            .error_handler(Box::new(LogErrors))
            .build(Manager { config })
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to {shown}: {e}; check that PostgreSQL runs there, the \
                     database exists and the user may log in"
                ))
            })?;
        let store = PgStore {
            pool: Some(pool),
            shown: shown.to_owned(),
        };
        let mut conn = store.conn()?;
        schema::migrate(&mut conn, shown, create)?;
        Ok(store)
    }

    /// The masked URL.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn conn(&self) -> StoreResult<r2d2::PooledConnection<Manager>> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closing".into()))?;
        pool.get().map_err(|e| {
            StoreError::Unavailable(format!(
                "no connection to PostgreSQL {} ({e}); it may be restarting",
                self.shown
            ))
        })
    }

    /// Runs `f` in one read-only transaction (`REPEATABLE READ`: one snapshot for all of
    /// its statements).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        let Conn { client, cache } = &mut *conn;
        let tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| pg_error(&e))?;
        let mut tx = Tx {
            tx: Some(tx),
            cache,
            failed: None,
        };
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in one read-write transaction, again (from the start, on a fresh snapshot)
    /// when it lost a race to another writer: a serialization failure, a deadlock, or a
    /// unique violation that the other writer's commit caused.
    pub(crate) fn write<T>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.conn()?;
            let Conn { client, cache } = &mut *conn;
            let tx = client.transaction().map_err(|e| pg_error(&e))?;
            let mut tx = Tx {
                tx: Some(tx),
                cache,
                failed: None,
            };
            let result = f(&mut tx).and_then(|out| tx.commit().map(|()| out));
            let failed = tx.failed.take();
            drop(tx);
            match result {
                Ok(out) => return Ok(out),
                Err(e) if attempt < WRITE_ATTEMPTS && failed.as_ref().is_some_and(retryable) => {
                    tracing::debug!(attempt, error = %e, "write lost a race; running it again");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Logs the pool's connection errors (the callers get Unavailable).
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<postgres::Error> for LogErrors {
    fn handle_error(&self, error: postgres::Error) {
        tracing::warn!(%error, "PostgreSQL connection failed");
    }
}

/// A transaction with the connection's statement cache. Statements are `&'static str` so
/// each is prepared once per connection.
pub struct Tx<'a> {
    tx: Option<postgres::Transaction<'a>>,
    cache: &'a mut HashMap<&'static str, Statement>,
    /// The SQLSTATE of the first statement that failed, for [`PgStore::write`]'s retry.
    failed: Option<SqlState>,
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

pub(crate) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Tx<'a> {
    fn inner(&mut self) -> StoreResult<&mut postgres::Transaction<'a>> {
        self.tx
            .as_mut()
            .ok_or_else(|| StoreError::Backend("the transaction is already over".into()))
    }

    fn note(&mut self, e: postgres::Error) -> StoreError {
        if self.failed.is_none() {
            self.failed = e.code().cloned();
        }
        pg_error(&e)
    }

    fn prepared(&mut self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.inner()?.prepare(sql);
        let stmt = prepared.map_err(|e| self.note(e))?;
        self.cache.insert(sql, stmt.clone());
        Ok(stmt)
    }

    /// Every row of a query.
    pub(crate) fn query(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let stmt = self.prepared(sql)?;
        let rows = self.inner()?.query(&stmt, params);
        rows.map_err(|e| self.note(e))
    }

    /// At most one row.
    pub(crate) fn opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> StoreResult<Option<Row>> {
        let stmt = self.prepared(sql)?;
        let row = self.inner()?.query_opt(&stmt, params);
        row.map_err(|e| self.note(e))
    }

    /// Exactly one row.
    pub(crate) fn one(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<Row> {
        let stmt = self.prepared(sql)?;
        let row = self.inner()?.query_one(&stmt, params);
        row.map_err(|e| self.note(e))
    }

    /// Opens a portal (a server-side cursor) on a query, for [`Tx::fetch`]: rows are read
    /// a few at a time, so a walk over any number of rows keeps memory flat. It lives until
    /// the transaction ends.
    pub(crate) fn portal(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> StoreResult<postgres::Portal> {
        let stmt = self.prepared(sql)?;
        let portal = self.inner()?.bind(&stmt, params);
        portal.map_err(|e| self.note(e))
    }

    /// The next (at most) `max_rows` rows of a portal; fewer than `max_rows` when it is
    /// done.
    pub(crate) fn fetch(
        &mut self,
        portal: &postgres::Portal,
        max_rows: i32,
    ) -> StoreResult<Vec<Row>> {
        let rows = self.inner()?.query_portal(portal, max_rows);
        rows.map_err(|e| self.note(e))
    }

    /// Rows changed.
    pub(crate) fn exec(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<u64> {
        let stmt = self.prepared(sql)?;
        let n = self.inner()?.execute(&stmt, params);
        n.map_err(|e| self.note(e))
    }

    /// A statement that is not reused (migrations, the import's DDL-like steps).
    pub(crate) fn batch(&mut self, sql: &str) -> StoreResult<()> {
        let done = self.inner()?.batch_execute(sql);
        done.map_err(|e| self.note(e))
    }

    /// A statement built at run time (the import's per-table inserts), prepared once by
    /// the caller and run with [`Tx::exec_prepared`].
    pub(crate) fn prepare_dynamic(&mut self, sql: &str) -> StoreResult<Statement> {
        let stmt = self.inner()?.prepare(sql);
        stmt.map_err(|e| self.note(e))
    }

    pub(crate) fn exec_prepared(
        &mut self,
        stmt: &Statement,
        params: Params<'_>,
    ) -> StoreResult<u64> {
        let n = self.inner()?.execute(stmt, params);
        n.map_err(|e| self.note(e))
    }

    pub(crate) fn query_prepared(
        &mut self,
        stmt: &Statement,
        params: Params<'_>,
    ) -> StoreResult<Vec<Row>> {
        let rows = self.inner()?.query(stmt, params);
        rows.map_err(|e| self.note(e))
    }

    fn commit(&mut self) -> StoreResult<()> {
        let tx = self
            .tx
            .take()
            .ok_or_else(|| StoreError::Backend("the transaction is already over".into()))?;
        tx.commit().map_err(|e| self.note(e))
    }
}

/// Whether a write that failed with `code` may succeed when run again from the start.
fn retryable(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::UNIQUE_VIOLATION
}

/// What a PostgreSQL error means to the collector: the database out of reach (restarting,
/// the connection terminated, too many connections) is Unavailable, so the HTTP edge
/// answers 503 and the client sends again; a constraint another writer or the caller broke
/// is a Conflict; anything else a Backend error.
pub(crate) fn pg_error(e: &postgres::Error) -> StoreError {
    let Some(code) = e.code() else {
        // No SQLSTATE: the socket, the protocol, a closed connection.
        return StoreError::Unavailable(format!("the connection to PostgreSQL failed: {e}"));
    };
    let class = &code.code()[..2.min(code.code().len())];
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned());
    if *code == SqlState::DISK_FULL {
        return StoreError::Full(detail);
    }
    match class {
        // connection exception; insufficient resources; operator intervention (shutdown,
        // pg_terminate_backend, "cannot connect now").
        "08" | "53" | "57" => StoreError::Unavailable(format!("PostgreSQL: {detail}")),
        "23" | "40" => StoreError::Conflict(format!(
            "{detail} (a concurrent change; nothing of this call was stored)"
        )),
        _ => StoreError::Backend(format!("PostgreSQL {}: {detail}", code.code())),
    }
}

// Values: PostgreSQL has no unsigned integers; the columns are BIGINT with CHECKs where it
// matters, and these convert at the edge.

pub(crate) fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Conflict(format!("{what} {v} is out of range")))
}

pub(crate) fn get_u64(row: &Row, idx: usize, what: &str) -> StoreResult<u64> {
    let v: i64 = row.try_get(idx).map_err(|e| pg_error(&e))?;
    u64::try_from(v)
        .map_err(|_| StoreError::Backend(format!("negative {what} {v} in the database")))
}

pub(crate) fn get_opt_u64(row: &Row, idx: usize, what: &str) -> StoreResult<Option<u64>> {
    let v: Option<i64> = row.try_get(idx).map_err(|e| pg_error(&e))?;
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| StoreError::Backend(format!("negative {what} {v} in the database")))
    })
    .transpose()
}

pub(crate) fn get<'r, T: postgres::types::FromSql<'r>>(row: &'r Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(|e| pg_error(&e))
}

pub(crate) fn node_status(s: &str) -> StoreResult<NodeStatus> {
    match s {
        "pending" => Ok(NodeStatus::Pending),
        "approved" => Ok(NodeStatus::Approved),
        "revoked" => Ok(NodeStatus::Revoked),
        _ => Err(StoreError::Backend(format!(
            "unexpected node status {s:?} in the database"
        ))),
    }
}

pub(crate) fn check_status(s: &str) -> StoreResult<Status> {
    match s {
        "pass" => Ok(Status::Pass),
        "fail" => Ok(Status::Fail),
        "warn" => Ok(Status::Warn),
        "error" => Ok(Status::Error),
        _ => Err(StoreError::Backend(format!(
            "unexpected check status {s:?} in the database"
        ))),
    }
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    row: &Row,
    idx: usize,
) -> StoreResult<Option<T>> {
    let s: Option<String> = get(row, idx)?;
    s.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| StoreError::Backend(format!("unreadable JSON in the database: {e}")))
    })
    .transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

impl Store for PgStore {
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
    ) -> StoreResult<super::NodeRecord> {
        self.write(|tx| claims::enroll_in(tx, name, key_id, public_key, approved, now))
    }

    fn node(&self, name: &str) -> StoreResult<Option<super::NodeRecord>> {
        self.read(|tx| reads::node_named(tx, name))
    }

    fn node_by_key(&self, key_id: &str) -> StoreResult<Option<super::NodeRecord>> {
        self.read(|tx| reads::node_with_key(tx, key_id))
    }

    fn node_key(&self, key_id: &str) -> StoreResult<Option<super::NodeKey>> {
        self.read(|tx| reads::node_key_in(tx, key_id))
    }

    fn node_keys(&self, key_ids: &[&str]) -> StoreResult<Vec<Option<super::NodeKey>>> {
        self.read(|tx| key_ids.iter().map(|k| reads::node_key_in(tx, k)).collect())
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

    fn list_nodes(&self) -> StoreResult<Vec<super::NodeRecord>> {
        self.read(reads::list_nodes)
    }

    fn commit(&self, batch: &[super::Accepted]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|tx| commit::commit_batch(tx, batch))
    }

    fn has_digest(&self, digest: &str) -> StoreResult<bool> {
        self.read(|tx| {
            Ok(tx
                .opt("SELECT 1 FROM reports WHERE digest = $1", &[&digest])?
                .is_some())
        })
    }

    fn record_chain_event(&self, event: &super::ChainEvent) -> StoreResult<bool> {
        claims::record_chain_event(self, event)
    }

    fn chain_events(&self, node: &str) -> StoreResult<Vec<super::ChainEvent>> {
        self.read(|tx| reads::chain_events(tx, node))
    }

    fn pending_claims(&self) -> StoreResult<Vec<super::PendingClaim>> {
        self.read(reads::pending_claims)
    }

    fn add_claim(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        source: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.write(|tx| claims::add_claim(tx, name, key_id, public_key, source, now))
    }

    fn set_claim_source(&self, name: &str, key_id: &str, source: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.exec(
                "UPDATE nodes SET claim_source = $3
                 WHERE name = $1 AND key_id = $2 AND status = 'pending'",
                &[&name, &key_id, &source],
            )?;
            Ok(())
        })
    }

    fn expire_pending(&self, enrolled_before: i64) -> StoreResult<Vec<super::PendingClaim>> {
        claims::expire_pending(self, enrolled_before)
    }

    fn delete_node(&self, name: &str) -> StoreResult<super::NodeRecord> {
        self.write(|tx| claims::delete_node_in(tx, name))
    }

    fn approve(
        &self,
        name: &str,
        key_id: Option<&str>,
        now: i64,
    ) -> StoreResult<super::NodeRecord> {
        self.write(|tx| claims::approve(tx, name, key_id, now))
    }

    fn fleet_summary(&self, now: i64) -> StoreResult<super::FleetSummary> {
        self.read(|tx| reads::fleet_summary(tx, now))
    }

    fn history(&self, node: &str, limit: u32) -> StoreResult<Vec<super::HistoryEntry>> {
        self.read(|tx| reads::history(tx, node, limit))
    }

    fn envelope(&self, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|tx| {
            tx.opt("SELECT envelope FROM reports WHERE digest = $1", &[&digest])?
                .map(|r| get(&r, 0))
                .transpose()
        })
    }

    fn chain_links(&self, node: &str) -> StoreResult<Vec<nodeproof_proto::chain::ChainLink>> {
        self.read(|tx| evidence::chain_links(tx, node))
    }

    fn failing(&self, cis: &str) -> StoreResult<Vec<super::NodeRecord>> {
        self.read(|tx| reads::failing(tx, cis))
    }

    fn stale_nodes(&self, now: i64) -> StoreResult<Vec<String>> {
        self.read(|tx| reads::stale_nodes(tx, now))
    }

    fn failing_checks(&self) -> StoreResult<Vec<super::FailingCheck>> {
        self.read(reads::failing_checks)
    }

    fn drift(&self, since: i64, limit: Option<u32>) -> StoreResult<super::DriftPage> {
        self.read(|tx| reads::drift(tx, since, limit))
    }

    fn add_exception(
        &self,
        new: &super::NewException,
        now: i64,
    ) -> StoreResult<super::ExceptionRecord> {
        self.write(|tx| claims::add_exception(tx, new, now))
    }

    fn revoke_exception(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<super::ExceptionRecord>> {
        self.write(|tx| claims::revoke_exception(tx, id, by, reason, now))
    }

    fn exceptions(&self) -> StoreResult<Vec<super::ExceptionRecord>> {
        self.read(reads::exceptions)
    }

    fn exception_events(&self) -> StoreResult<Vec<super::ExceptionEvent>> {
        self.read(reads::exception_events)
    }

    fn for_each_statement(
        &self,
        filter: &super::ExportFilter,
        f: &mut dyn FnMut(super::StoredStatement) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.read(|tx| evidence::for_each_statement(tx, filter, f))
    }

    fn chain_anchor(
        &self,
        node: &str,
        before: i64,
    ) -> StoreResult<Option<nodeproof_proto::chain::Anchor>> {
        self.read(|tx| evidence::chain_anchor(tx, node, before))
    }

    fn key_history(&self, node: &str) -> StoreResult<Vec<super::KeyPeriod>> {
        self.read(|tx| evidence::key_history(tx, node))
    }

    /// The bytes of the live rows of every table: what the data takes. Not the files'
    /// size, which also holds the row versions that updates left behind until (auto)vacuum
    /// makes their space reusable (see "Vacuum" in docs/collector.md); that would measure
    /// the vacuum schedule, not the store. A scan of every table: for measurements only.
    fn size_bytes(&self) -> StoreResult<u64> {
        self.read(|tx| {
            let r = tx.one(
                "SELECT ((SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM nodes t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM node_tally t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM node_keys t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM tokens t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM reports t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM node_checks t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM check_counts t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM drift t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM chain_events t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM exceptions t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM exception_events t)
                      + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM extra_claims t))::text",
                &[],
            )?;
            // SUM over integers is NUMERIC in PostgreSQL: read it as text (cast below).
            let text: String = get(&r, 0)?;
            text.parse::<u64>()
                .map_err(|e| StoreError::Backend(format!("unexpected database size {text:?}: {e}")))
        })
    }

    fn health(&self, min_free_bytes: u64) -> super::StoreHealth {
        let _ = min_free_bytes;
        let mut health = super::StoreHealth::default();
        // One round trip: the database answers and accepts writes (not a read-only replica
        // after a failover).
        let answer = self.read(|tx| {
            let r = tx.one("SELECT pg_is_in_recovery()", &[])?;
            get::<bool>(&r, 0)
        });
        match answer {
            Ok(false) => {}
            Ok(true) => {
                health.writable = false;
                health.problems.push(format!(
                    "PostgreSQL {} is a read-only standby: point --db at the primary",
                    self.shown
                ));
            }
            Err(e) => {
                health.writable = false;
                health.problems.push(format!("{e}"));
            }
        }
        health
    }

    fn shared(&self) -> bool {
        true
    }
}

impl PgStore {
    /// Recomputes the counters the fleet summary reads from the rows they summarise and
    /// says where they differ (as `SqliteStore::verify_counters`).
    pub fn verify_counters(&self) -> StoreResult<()> {
        self.read(reads::verify_counters)
    }
}
