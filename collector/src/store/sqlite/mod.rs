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

mod evidence;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nodeproof_proto::chain::{ChainLink, LinkKind};
use nodeproof_proto::{Status, Summary};
use rusqlite::types::Type;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};

use super::rules;
use super::{
    Accepted, AcceptedKind, ChainEvent, CheckCounts, CheckState, DriftEvent, DriftPage,
    ExceptionEvent, ExceptionRecord, FailingCheck, FleetSummary, HistoryEntry, NewException,
    NodeKey, NodeRecord, NodeStatus, PendingClaim, Store, StoreError, StoreResult,
};

/// One schema change, embedded from `migrations/sqlite/NNNN_name.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: a file that has shipped is never edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "ingest_hardening",
        sql: include_str!("../../../migrations/sqlite/0002_ingest_hardening.sql"),
    },
    Migration {
        version: 3,
        name: "exceptions",
        sql: include_str!("../../../migrations/sqlite/0003_exceptions.sql"),
    },
    Migration {
        version: 4,
        name: "claims",
        sql: include_str!("../../../migrations/sqlite/0004_claims.sql"),
    },
];

/// How long a connection waits for another one's lock (another process writing, a
/// checkpoint) before it gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept for reuse; more are opened under load and then closed.
const MAX_IDLE_READERS: usize = 4;
/// Enough for every statement `commit` uses, so none is re-prepared per report.
const STATEMENT_CACHE: usize = 64;
/// What a committed report adds to the log beyond its envelope: its row, index entries,
/// the node's row and check states (an estimate, only for waking the checkpointer).
const LOG_BYTES_PER_REPORT: u64 = 4096;

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
    /// Opens (creating if needed) the database file at `path` and brings its schema up to
    /// date. The directory must exist: a typo in the path should fail loudly, not leave
    /// the evidence somewhere unexpected.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, CheckpointOptions::default())
    }

    /// [`SqliteStore::open`] with other checkpoint thresholds.
    pub fn open_with(path: &Path, checkpoints: CheckpointOptions) -> StoreResult<SqliteStore> {
        SqliteStore::open_mode(path, checkpoints, true)
    }

    /// Opens the database at `path`; when `create` is false a missing (or empty) file is an
    /// error naming the path and how to create it, never a new empty database.
    pub fn open_mode(
        path: &Path,
        checkpoints: CheckpointOptions,
        create: bool,
    ) -> StoreResult<SqliteStore> {
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err(StoreError::Backend(
                "the SQLite database path is empty: use sqlite:///path/to/file.db".into(),
            ));
        }
        if path.is_dir() {
            return Err(StoreError::Backend(format!(
                "cannot open SQLite database {shown}: it is a directory; name a file in it"
            )));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::Backend(format!(
                "cannot open SQLite database {shown}: directory {} does not exist (create it \
                 first; nodeproof does not create directories)",
                dir.display()
            )));
        }
        if !create {
            let missing = || {
                StoreError::Backend(format!(
                    "the SQLite database {shown} does not exist: check the path (--db), or \
                     create it with `nodeproof-collector init --db sqlite://{shown}` (or \
                     `serve --init`)"
                ))
            };
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                Err(e) => {
                    return Err(StoreError::Backend(format!("cannot open {shown}: {e}")));
                }
                // An empty file is not a database the collector made (SQLite would take it
                // as a new one); refusing it is the same rule as a missing one.
                Ok(m) if m.len() == 0 => {
                    return Err(StoreError::Backend(format!(
                        "the SQLite database {shown} is an empty file, not a collector \
                         database: check the path (--db), or remove it and create the \
                         database with `nodeproof-collector init`"
                    )));
                }
                Ok(_) => {}
            }
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut writer = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Backend(format!("cannot open {shown}: {e}")))?;
        // Recorded once the file is open, so it is the identity of the file SQLite holds
        // (a file swapped in between the two would be caught by the first check).
        let identity = file_identity(path)
            .map_err(|e| StoreError::Backend(format!("cannot stat {shown}: {e}")))?;
        configure(&writer, false)
            .map_err(|e| StoreError::Backend(format!("cannot use {shown} as a database: {e}")))?;
        migrate(&mut writer, path)?;
        writer.pragma_update(None, "wal_autocheckpoint", checkpoints.writer_after_pages)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            checkpointer,
            uncheckpointed: AtomicU64::new(0),
            background_after_bytes: checkpoints.background_after_bytes,
            identity,
            lost: Mutex::new(None),
        })
    }

    /// Whether the file at the store's path is still the file it opened. SQLite keeps
    /// writing into its open descriptor when the file is unlinked or renamed over, so
    /// without this a deleted database goes on "accepting" reports that nobody will ever
    /// read. Once the identity changed it stays lost: the writes in between went to the
    /// old file, and only a restart (on a database the operator chose) is safe.
    pub fn check_identity(&self) -> StoreResult<()> {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = lost.as_ref() {
            return Err(StoreError::Lost(why.clone()));
        }
        let shown = self.path.display();
        let why = match file_identity(&self.path) {
            Ok(id) if id == self.identity => return Ok(()),
            Ok(_) => format!(
                "{shown} was replaced by another file since the collector opened it; \
                 reports are no longer acknowledged: put the original back or restart the \
                 collector on the database you mean"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "{shown} was deleted or moved since the collector opened it; reports are no \
                 longer acknowledged: restore it and restart the collector"
            ),
            // Any other failure to look at it (permissions changed, I/O error): the file
            // cannot be shown to be ours, which is the same for the writer.
            Err(e) => format!(
                "cannot stat {shown} ({e}); reports are no longer acknowledged: check the \
                 file and restart the collector"
            ),
        };
        tracing::error!(path = %shown, reason = %why, "the database file changed");
        *lost = Some(why.clone());
        Err(StoreError::Lost(why))
    }

    /// The database's state for `/healthz`: [`SqliteStore::check_identity`], whether the
    /// file and its file system accept writes, and the free space on that file system.
    pub fn file_health(&self, min_free_bytes: u64) -> super::StoreHealth {
        let mut health = super::StoreHealth::default();
        if let Err(e) = self.check_identity() {
            health.same_file = false;
            health.problems.push(e.to_string());
            // The rest would describe the new file, not ours.
            health.writable = false;
            return health;
        }
        let shown = self.path.display();
        if let Err(e) = rustix::fs::access(&self.path, rustix::fs::Access::WRITE_OK) {
            health.writable = false;
            health.problems.push(format!(
                "{shown} is not writable by the collector ({e}): check its owner and mode"
            ));
        }
        match rustix::fs::statvfs(&self.path) {
            Ok(vfs) => {
                if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
                    health.writable = false;
                    health.problems.push(format!(
                        "the file system holding {shown} is mounted read-only"
                    ));
                }
                // Space an unprivileged process may use (the collector runs as its own user).
                let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
                health.free_bytes = Some(free);
                if free < min_free_bytes {
                    health.full = true;
                    health.problems.push(format!(
                        "only {free} bytes free on the file system holding {shown} (threshold \
                         {min_free_bytes}, --min-free-space): free space before SQLite fails \
                         commits"
                    ));
                }
            }
            Err(e) => health.problems.push(format!(
                "cannot read the free space of {shown}'s file system: {e}"
            )),
        }
        health
    }

    /// Counts `bytes` as committed and wakes the checkpointer once enough have been.
    fn committed(&self, bytes: u64) {
        let total = self
            .uncheckpointed
            .fetch_add(bytes, AtomicOrdering::Relaxed)
            .saturating_add(bytes);
        if total >= self.background_after_bytes {
            self.uncheckpointed.store(0, AtomicOrdering::Relaxed);
            self.checkpointer.wake();
        }
    }

    /// How many checkpoints the background thread has completed.
    pub fn background_checkpoints(&self) -> u64 {
        self.checkpointer.done()
    }

    /// Waits until the background thread has completed at least `n` checkpoints, for at
    /// most `timeout`; returns whether it had.
    pub fn wait_for_background_checkpoints(&self, n: u64, timeout: Duration) -> bool {
        self.checkpointer.wait_done(n, timeout)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability settings in force on the write connection, so tests and operators
    /// can check them rather than trust them.
    pub fn settings(&self) -> StoreResult<Settings> {
        let conn = self.writer();
        settings_of(&conn)
    }

    /// Recomputes the counters the fleet summary reads (`node_tally`, `check_counts`,
    /// `failing_any`) from the nodes and their latest check states, and says where they
    /// differ. The tests run it after every story; an operator can run it when a summary
    /// looks wrong.
    pub fn verify_counters(&self) -> StoreResult<()> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let pairs = |sql: &str| -> StoreResult<rules::CounterRows> {
                let mut stmt = tx.prepare(sql)?;
                let mut rows = stmt.query([])?;
                let mut out = HashMap::new();
                while let Some(r) = rows.next()? {
                    let v = [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?];
                    if v != [0; 4] {
                        out.insert(r.get(0)?, v);
                    }
                }
                Ok(out)
            };
            let tally_kept =
                pairs("SELECT status || '/' || failing_any, n, 0, 0, 0 FROM node_tally")?;
            let tally_actual = pairs(
                "SELECT status || '/' || failing_any, COUNT(*), 0, 0, 0 FROM nodes GROUP BY 1",
            )?;
            let counts_kept = pairs("SELECT cis, pass, fail, warn, error FROM check_counts")?;
            let counts_actual = pairs(
                "SELECT c.cis, SUM(c.status = 'pass'), SUM(c.status = 'fail'),
                        SUM(c.status = 'warn'), SUM(c.status = 'error')
                 FROM node_checks c JOIN nodes n ON n.name = c.node
                 WHERE n.status = 'approved' GROUP BY c.cis",
            )?;
            let wrong: i64 = tx.query_row(
                "SELECT COUNT(*) FROM nodes WHERE failing_any != (failing != '[]')",
                [],
                |r| r.get(0),
            )?;
            tx.commit()?;
            rules::counters_verdict(
                (tally_kept, tally_actual),
                (counts_kept, counts_actual),
                wrong,
            )
        })
    }

    /// Enrols many nodes in one transaction, with the same rules as [`Store::enroll`]
    /// (all or none). For bulk imports and the `fleet_scale` measurement, where one
    /// durable transaction per node would dominate the run time.
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

/// The thread that checkpoints the log in the background, with its own connection.
/// Checkpoints are `PASSIVE`: they copy what no reader still needs and never wait for the
/// writer or readers, so the writer is never held up by them. Stopped and joined on drop.
struct Checkpointer {
    shared: Arc<CheckpointShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CheckpointShared {
    state: Mutex<CheckpointState>,
    /// Signalled when a checkpoint is wanted or the thread must stop.
    wake: Condvar,
    /// Signalled after each checkpoint.
    finished: Condvar,
}

#[derive(Default)]
struct CheckpointState {
    wanted: bool,
    stop: bool,
    /// Checkpoints completed.
    done: u64,
}

impl Checkpointer {
    fn start(path: &Path) -> StoreResult<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let shared = Arc::new(CheckpointShared::default());
        let theirs = Arc::clone(&shared);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &theirs, &shown))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CheckpointState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.lock().wanted = true;
        self.shared.wake.notify_one();
    }

    fn done(&self) -> u64 {
        self.lock().done
    }

    fn wait_done(&self, n: u64, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .shared
            .finished
            .wait_timeout_while(state, timeout, |s| s.done < n)
            .unwrap_or_else(PoisonError::into_inner);
        state.done >= n
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared, path: &str) {
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.wanted && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.wanted = false;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, copied)) => {
                tracing::debug!(database = path, log, copied, "checkpoint");
                shared
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .done += 1;
                shared.finished.notify_all();
            }
            // Nothing is lost: the pages stay in the log, and the writer checkpoints
            // itself once the log is large.
            Err(e) => tracing::warn!(database = path, error = %e, "background checkpoint failed"),
        }
    }
}

/// Connection settings that durability and integrity depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `wal`.
    pub journal_mode: String,
    /// SQLite's number: 2 is FULL.
    pub synchronous: i64,
    pub foreign_keys: bool,
    pub busy_timeout_ms: i64,
    /// Log pages past which the writer checkpoints inside its commit.
    pub wal_autocheckpoint: i64,
}

fn settings_of(conn: &Connection) -> StoreResult<Settings> {
    let get =
        |name: &str| conn.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0));
    let int = |name: &str| -> StoreResult<i64> {
        match get(name)? {
            rusqlite::types::Value::Integer(i) => Ok(i),
            v => Err(StoreError::Backend(format!("PRAGMA {name} returned {v:?}"))),
        }
    };
    let journal_mode = match get("journal_mode")? {
        rusqlite::types::Value::Text(t) => t,
        v => {
            return Err(StoreError::Backend(format!(
                "PRAGMA journal_mode returned {v:?}"
            )))
        }
    };
    Ok(Settings {
        journal_mode,
        synchronous: int("synchronous")?,
        foreign_keys: int("foreign_keys")? == 1,
        busy_timeout_ms: int("busy_timeout")?,
        wal_autocheckpoint: int("wal_autocheckpoint")?,
    })
}

/// Per-connection settings. `journal_mode` is a property of the file (set once, kept);
/// the others must be set on every connection.
fn configure(conn: &Connection, read_only: bool) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if !read_only {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "SQLite refused WAL mode (journal_mode is {mode}); put the database on a local \
                 filesystem"
            )));
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(())
}

/// Applies the embedded migrations that `schema_migrations` does not list, in order, in
/// one transaction: a failure leaves the database as it was.
fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER NOT NULL PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         ) STRICT",
    )?;
    let applied: Vec<(i64, String)> = {
        let mut stmt =
            tx.prepare("SELECT version, name FROM schema_migrations ORDER BY version")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for (version, name) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Backend(format!(
                    "{} was migrated by a newer nodeproof-collector (migration {version} \
                     {name:?} is applied; this version knows migrations up to {known}): \
                     refusing to use it; upgrade nodeproof-collector",
                    path.display()
                )))
            }
            Some(m) if m.name != name => {
                return Err(StoreError::Backend(format!(
                    "{}: migration {version} is recorded as {name:?} but this version's \
                     migration {version} is {:?}: the database is not one this version wrote",
                    path.display(),
                    m.name
                )))
            }
            Some(_) => {}
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for m in MIGRATIONS {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Backend(format!(
                "migration {:04}_{} failed on {}: {e}",
                m.version,
                m.name,
                path.display()
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now],
        )?;
    }
    tx.commit()?;
    Ok(())
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

/// (device, inode) of the file at `path`, following symlinks as SQLite does.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// An exclusive lock that one `serve` process holds on `<db>.lock` for its whole life, so
/// a second `serve` on the same database refuses to start instead of interleaving its
/// chain decisions with the first's (each keeps its own chain state in memory).
///
/// `flock(2)` on a separate file, not on the database: SQLite locks the database file with
/// POSIX record locks, which a process loses when it closes *any* descriptor of that file
/// (and which `flock` may interact with on some systems, NFS for one); a file of our own
/// has no such sharing. The lock goes with the process, however it ends (`kill -9`
/// included), so a stale lock file is harmless. It holds the pid, to name the holder.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
    path: PathBuf,
}

/// Why the serve lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another nodeproof-collector ({holder}) is serving {db}: it holds the lock {lock}; \
         stop it first (two collectors on one database would each keep their own chain state)"
    )]
    Held {
        db: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("cannot take the lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ServeLock {
    /// Takes the lock for the database `db`, without waiting.
    pub fn acquire(db: &Path) -> Result<ServeLock, LockError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let io = |source: std::io::Error| LockError::Io {
            lock: lock.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    db: db.to_path_buf(),
                    lock,
                    holder: if pid.is_empty() {
                        "pid unknown".to_string()
                    } else {
                        format!("pid {pid}")
                    },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(ServeLock {
            _file: file,
            path: lock,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
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

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let status: String = row.get(3)?;
    Ok(NodeRecord {
        name: row.get(0)?,
        key_id: row.get(1)?,
        public_key: row.get(2)?,
        status: node_status(&status).ok_or_else(|| bad_value(3, "node status", &status))?,
        enrolled_at: row.get(4)?,
        last_sequence: row.get(5)?,
        last_digest: row.get(6)?,
        last_scan_time: row.get(7)?,
        last_seen: row.get(8)?,
        interval_secs: row.get(9)?,
        last_full_digest: row.get(10)?,
        last_full_sequence: row.get(11)?,
        posture: row.get(12)?,
        summary: get_json(row, 13)?,
        failing: get_json(row, 14)?.unwrap_or_default(),
    })
}

fn node_named(conn: &Connection, name: &str) -> StoreResult<Option<NodeRecord>> {
    let mut stmt = conn.prepare_cached(select_node!("WHERE name = ?1"))?;
    Ok(stmt.query_row([name], node_from_row).optional()?)
}

fn node_key_in(conn: &Connection, key_id: &str) -> StoreResult<Option<NodeKey>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, key_id, public_key, status FROM nodes WHERE key_id = ?1")?;
    Ok(stmt
        .query_row([key_id], |r| {
            let status: String = r.get(3)?;
            Ok(NodeKey {
                name: r.get(0)?,
                key_id: r.get(1)?,
                public_key: r.get(2)?,
                status: node_status(&status).ok_or_else(|| bad_value(3, "node status", &status))?,
            })
        })
        .optional()?)
}

fn node_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")?;
    Ok(stmt.exists([name])?)
}

/// Changes to `check_counts`, summed over a whole batch so each counter row is written
/// once per commit however many reports touched it.
#[derive(Debug, Default)]
struct Deltas(HashMap<String, (String, [i64; 4])>);

impl Deltas {
    fn add(&mut self, cis: &str, id: &str, status: Status, n: i64) {
        let e = self
            .0
            .entry(cis.to_owned())
            .or_insert_with(|| (id.to_owned(), [0; 4]));
        rules::add_check_delta(e, id, status, n);
    }

    /// Counts (with sign `n`) every check in a node's latest state.
    fn add_node(&mut self, conn: &Connection, node: &str, n: i64) -> StoreResult<()> {
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

    fn apply(self, conn: &Connection) -> StoreResult<()> {
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
fn tally(conn: &Connection, status: NodeStatus, failing_any: bool, n: i64) -> StoreResult<()> {
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

/// Drift since ?1, newest first, at most ?2 rows (-1: all), so the LIMIT keeps the newest:
/// the index drift_at (at, and the rowid id after it) read backwards, no sort (see the test).
const DRIFT_NEWEST: &str = "SELECT node, cis, from_status, to_status, at, digest
     FROM drift WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2";

impl Store for SqliteStore {
    fn create_token(
        &self,
        token_sha256: &str,
        expires_at: i64,
        uses: Option<u32>,
        now: i64,
    ) -> StoreResult<()> {
        let conn = self.writer();
        conn.prepare_cached(
            "INSERT INTO tokens (sha256, created_at, expires_at, uses_left) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![token_sha256, now, expires_at, uses])
        .map_err(|e| conflict_or(e, || "this token is already stored".into()))?;
        Ok(())
    }

    fn redeem_token(&self, token_sha256: &str, now: i64) -> StoreResult<bool> {
        let conn = self.writer();
        // One statement: two enrolments racing for a token's last use cannot both win.
        let n = conn
            .prepare_cached(
                "UPDATE tokens SET uses_left = uses_left - 1
                 WHERE sha256 = ?1 AND expires_at > ?2 AND (uses_left IS NULL OR uses_left > 0)",
            )?
            .execute(params![token_sha256, now])?;
        Ok(n == 1)
    }

    fn enroll(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        approved: bool,
        now: i64,
    ) -> StoreResult<NodeRecord> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let node = enroll_in(&tx, name, key_id, public_key, approved, now)?;
        tx.commit()?;
        Ok(node)
    }

    fn node(&self, name: &str) -> StoreResult<Option<NodeRecord>> {
        self.read(|c| node_named(c, name))
    }

    fn node_by_key(&self, key_id: &str) -> StoreResult<Option<NodeRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(select_node!("WHERE key_id = ?1"))?;
            Ok(stmt.query_row([key_id], node_from_row).optional()?)
        })
    }

    fn node_key(&self, key_id: &str) -> StoreResult<Option<NodeKey>> {
        self.read(|c| node_key_in(c, key_id))
    }

    fn node_keys(&self, key_ids: &[&str]) -> StoreResult<Vec<Option<NodeKey>>> {
        self.read(|c| {
            // One snapshot, and the pages a commit changed are read again only once.
            let tx = c.unchecked_transaction()?;
            let keys = key_ids
                .iter()
                .map(|k| node_key_in(&tx, k))
                .collect::<StoreResult<_>>()?;
            tx.commit()?;
            Ok(keys)
        })
    }

    fn set_status(&self, name: &str, status: NodeStatus, now: i64) -> StoreResult<()> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = node_named(&tx, name)?.ok_or_else(|| StoreError::NoSuchNode(name.into()))?;
        if current.status != status {
            change_status(&tx, name, current.status, status, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn rotate_key(
        &self,
        name: &str,
        old_key_id: &str,
        new_key_id: &str,
        new_public_key: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut conn = self.writer();
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

    fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(select_node!("ORDER BY name"))?;
            let rows = stmt.query_map([], node_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn commit(&self, batch: &[Accepted]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deltas = Deltas::default();
        for a in batch {
            commit_one(&tx, a, &mut deltas)?;
        }
        deltas.apply(&tx)?;
        // With synchronous=FULL the WAL is synced before this returns: durable.
        tx.commit()?;
        drop(conn);
        self.committed(
            batch
                .iter()
                .map(|a| a.envelope.len() as u64 + LOG_BYTES_PER_REPORT)
                .sum(),
        );
        Ok(())
    }

    fn has_digest(&self, digest: &str) -> StoreResult<bool> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT 1 FROM reports WHERE digest = ?1")?
                .exists([digest])?)
        })
    }

    fn record_chain_event(&self, event: &ChainEvent) -> StoreResult<bool> {
        let conn = self.writer();
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

    fn chain_events(&self, node: &str) -> StoreResult<Vec<ChainEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT node, kind, first_at, expected_sequence, got_sequence, digest, detail,
                        last_at, count
                 FROM chain_events WHERE node = ?1 ORDER BY id",
            )?;
            let events: Vec<ChainEvent> = stmt
                .query_map([node], |r| {
                    Ok(ChainEvent {
                        node: r.get(0)?,
                        kind: r.get(1)?,
                        at: r.get(2)?,
                        expected_sequence: r.get(3)?,
                        got_sequence: r.get(4)?,
                        digest: r.get(5)?,
                        detail: r.get(6)?,
                        last_at: r.get(7)?,
                        count: r.get(8)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            if events.is_empty() && !node_exists(c, node)? {
                return Err(StoreError::NoSuchNode(node.into()));
            }
            Ok(events)
        })
    }

    fn pending_claims(&self) -> StoreResult<Vec<PendingClaim>> {
        self.read(|c| {
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

    fn set_claim_source(&self, name: &str, key_id: &str, source: &str) -> StoreResult<()> {
        let conn = self.writer();
        conn.prepare_cached(
            "UPDATE nodes SET claim_source = ?3
             WHERE name = ?1 AND key_id = ?2 AND status = 'pending'",
        )?
        .execute(params![name, key_id, source])?;
        Ok(())
    }

    fn add_claim(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        source: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut conn = self.writer();
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

    fn expire_pending(&self, enrolled_before: i64) -> StoreResult<Vec<PendingClaim>> {
        // Asked on every enrolment: a read first, so the writer (which the ingest path
        // shares) is only taken when there is something to drop.
        let any = self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM nodes WHERE status = 'pending' AND enrolled_at < ?1
                     UNION ALL SELECT 1 FROM extra_claims WHERE claimed_at < ?1 LIMIT 1",
            )?
            .exists([enrolled_before])?)
        })?;
        if !any {
            return Ok(Vec::new());
        }
        let mut conn = self.writer();
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
                            insert_extra_claim(
                                &tx,
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
                    delete_node_in(&tx, &claim.name)?;
                }
            }
        }
        expired.extend(first);
        expired.sort_by_key(|c| c.claimed_at);
        tx.commit()?;
        Ok(expired)
    }

    fn delete_node(&self, name: &str) -> StoreResult<NodeRecord> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let node = delete_node_in(&tx, name)?;
        tx.commit()?;
        Ok(node)
    }

    fn approve(&self, name: &str, key_id: Option<&str>, now: i64) -> StoreResult<NodeRecord> {
        let mut conn = self.writer();
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

    fn fleet_summary(&self, now: i64) -> StoreResult<FleetSummary> {
        self.read(|c| {
            // One snapshot for both tables.
            let tx = c.unchecked_transaction()?;
            let mut counts = rules::FleetCounts::default();
            {
                let mut stmt =
                    tx.prepare_cached("SELECT status, failing_any, n FROM node_tally")?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let status: String = r.get(0)?;
                    let failing_any: bool = r.get(1)?;
                    let n: u64 = r.get(2)?;
                    let status =
                        node_status(&status).ok_or_else(|| bad_value(0, "node status", &status))?;
                    counts.add(status, failing_any, n);
                }
            }
            // Stale nodes are index ranges (never reported: stale_after IS NULL), so this
            // costs what the stale part of the fleet costs, not the whole fleet.
            let (stale_ok, stale_failing): (u64, u64) = tx
                .prepare_cached(
                    "SELECT
                         (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                              AND failing_any = 0 AND stale_after < ?1)
                       + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                              AND failing_any = 0 AND stale_after IS NULL),
                         (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                              AND failing_any = 1 AND stale_after < ?1)
                       + (SELECT COUNT(*) FROM nodes WHERE status = 'approved'
                              AND failing_any = 1 AND stale_after IS NULL)",
                )?
                .query_row([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let nodes = counts.finish(stale_ok, stale_failing);
            let mut checks: Vec<CheckCounts> = tx
                .prepare_cached(
                    "SELECT cis, id, pass, fail, warn, error FROM check_counts
                     WHERE pass + fail + warn + error > 0",
                )?
                .query_map([], |r| {
                    Ok(CheckCounts {
                        cis: r.get(0)?,
                        id: r.get(1)?,
                        pass: r.get(2)?,
                        fail: r.get(3)?,
                        warn: r.get(4)?,
                        error: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            tx.commit()?;
            checks.sort_by(|a, b| cis_order(&a.cis, &b.cis));
            Ok(FleetSummary { nodes, checks })
        })
    }

    fn history(&self, node: &str, limit: u32) -> StoreResult<Vec<HistoryEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT sequence, digest, kind, scan_time, received_at, summary, count, since,
                        first_unchanged
                 FROM reports WHERE node = ?1 ORDER BY sequence DESC LIMIT ?2",
            )?;
            let entries: Vec<HistoryEntry> = stmt
                .query_map(params![node, limit], |r| {
                    Ok(HistoryEntry {
                        sequence: r.get(0)?,
                        digest: r.get(1)?,
                        kind: r.get(2)?,
                        scan_time: r.get(3)?,
                        received_at: r.get(4)?,
                        summary: get_json::<Summary>(r, 5)?,
                        count: r.get(6)?,
                        since: r.get(7)?,
                        first_unchanged: r.get(8)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            if entries.is_empty() && !node_exists(c, node)? {
                return Err(StoreError::NoSuchNode(node.into()));
            }
            Ok(entries)
        })
    }

    fn chain_links(&self, node: &str) -> StoreResult<Vec<ChainLink>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.digest, r.sequence, r.previous, r.kind, r.since, r.count, f.sequence
                 FROM reports r
                 LEFT JOIN reports f ON f.digest = r.since AND f.node = r.node
                 WHERE r.node = ?1 ORDER BY r.sequence",
            )?;
            let links: Vec<ChainLink> = stmt
                .query_map([node], |r| {
                    let kind: String = r.get(3)?;
                    let kind = match kind.as_str() {
                        "full" => LinkKind::Full,
                        "unchanged" => LinkKind::Unchanged {
                            since: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                            since_sequence: r.get::<_, Option<u64>>(6)?.unwrap_or(0),
                            count: r.get::<_, Option<u64>>(5)?.unwrap_or(0),
                        },
                        other => return Err(bad_value(3, "report kind", other)),
                    };
                    Ok(ChainLink {
                        digest: r.get(0)?,
                        sequence: r.get(1)?,
                        previous: r.get(2)?,
                        kind,
                    })
                })?
                .collect::<Result<_, _>>()?;
            if links.is_empty() && !node_exists(c, node)? {
                return Err(StoreError::NoSuchNode(node.into()));
            }
            Ok(links)
        })
    }

    fn envelope(&self, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT envelope FROM reports WHERE digest = ?1")?;
            Ok(stmt.query_row([digest], |r| r.get(0)).optional()?)
        })
    }

    fn failing(&self, cis: &str) -> StoreResult<Vec<NodeRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(select_node!(
                "WHERE status = 'approved' AND name IN (
                     SELECT node FROM node_checks
                     WHERE cis = ?1 AND status IN ('fail', 'error'))
                 ORDER BY name"
            ))?;
            let rows = stmt.query_map([cis], node_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn drift(&self, since: i64, limit: Option<u32>) -> StoreResult<DriftPage> {
        self.read(|c| {
            // One row past the limit says whether there are more; -1 is no limit.
            let mut stmt = c.prepare_cached(DRIFT_NEWEST)?;
            let fetch = limit.map_or(-1, |l| i64::from(l) + 1);
            let rows = stmt.query_map(params![since, fetch], |r| {
                let from: Option<String> = r.get(2)?;
                let from = match from {
                    None => None,
                    Some(s) => {
                        Some(check_status(&s).ok_or_else(|| bad_value(2, "check status", &s))?)
                    }
                };
                Ok(DriftEvent {
                    node: r.get(0)?,
                    cis: r.get(1)?,
                    from,
                    to: get_status(r, 3)?,
                    at: r.get(4)?,
                    digest: r.get(5)?,
                })
            })?;
            let events: Vec<DriftEvent> = rows.collect::<Result<_, _>>()?;
            Ok(super::drift_page(events, limit))
        })
    }

    fn stale_nodes(&self, now: i64) -> StoreResult<Vec<String>> {
        // Two index ranges of nodes_fleet per failing_any, as in fleet_summary.
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name FROM nodes WHERE status = 'approved' AND failing_any IN (0, 1)
                     AND stale_after < ?1
                 UNION ALL
                 SELECT name FROM nodes WHERE status = 'approved' AND failing_any IN (0, 1)
                     AND stale_after IS NULL
                 ORDER BY 1",
            )?;
            let rows = stmt.query_map([now], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn failing_checks(&self) -> StoreResult<Vec<FailingCheck>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT k.node, k.id, k.cis, k.status, k.since_at
                 FROM node_checks k JOIN nodes n ON n.name = k.node
                 WHERE k.status IN ('fail', 'error') AND n.status = 'approved'",
            )?;
            let mut rows: Vec<FailingCheck> = stmt
                .query_map([], |r| {
                    Ok(FailingCheck {
                        node: r.get(0)?,
                        id: r.get(1)?,
                        cis: r.get(2)?,
                        status: get_status(r, 3)?,
                        since_at: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            rows.sort_by(|a, b| a.node.cmp(&b.node).then(cis_order(&a.cis, &b.cis)));
            Ok(rows)
        })
    }

    fn add_exception(&self, new: &NewException, now: i64) -> StoreResult<ExceptionRecord> {
        let mut conn = self.writer();
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

    fn revoke_exception(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<ExceptionRecord>> {
        let mut conn = self.writer();
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

    fn exceptions(&self) -> StoreResult<Vec<ExceptionRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("{SELECT_EXCEPTION} ORDER BY id"))?;
            let rows = stmt.query_map([], exception_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn exception_events(&self) -> StoreResult<Vec<ExceptionEvent>> {
        self.read(|c| {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards against adding a migration file and forgetting to embed it (or the reverse).
    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations/sqlite")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, embedded, "migrations/sqlite and MIGRATIONS disagree");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version,
                i as i64 + 1,
                "migration versions must be 1, 2, 3, ..."
            );
            let on_disk = std::fs::read_to_string(dir.join(&embedded[i])).expect("read migration");
            assert_eq!(on_disk, m.sql, "{} is not the embedded text", embedded[i]);
        }
    }

    /// The newest-first drift query is served by the index in that order: no temporary
    /// B-tree for the ORDER BY.
    #[test]
    fn the_newest_drift_is_read_from_an_index_without_sorting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {DRIFT_NEWEST}"))?;
                let rows = stmt.query_map(params![0_i64, 501_i64], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .expect("explain");
        assert_eq!(plan, ["SEARCH drift USING INDEX drift_at (at>?)"]);
    }

    #[test]
    fn read_connections_are_as_durable_and_strict_as_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let writer = store.settings().expect("settings");
        let reader = store.read(settings_of).expect("reader settings");
        // Readers never write, so when they would checkpoint does not matter.
        let reader = Settings {
            wal_autocheckpoint: writer.wal_autocheckpoint,
            ..reader
        };
        assert_eq!(writer, reader);
        assert_eq!(
            (
                writer.journal_mode.as_str(),
                writer.synchronous,
                writer.foreign_keys
            ),
            ("wal", 2, true)
        );
        assert!(
            writer.busy_timeout_ms >= 1000,
            "busy timeout {}",
            writer.busy_timeout_ms
        );
        let query_only: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "query_only", |r| r.get(0))?))
            .expect("query_only");
        assert_eq!(query_only, 1, "read connections cannot write by mistake");
    }

    #[test]
    fn cis_numbers_sort_by_their_parts() {
        let mut v = vec!["4.2.10", "4.2.2", "4.1.1", "4.2.1", "1.10", "1.9", "4.2"];
        v.sort_by(|a, b| cis_order(a, b));
        assert_eq!(
            v,
            ["1.9", "1.10", "4.1.1", "4.2", "4.2.1", "4.2.2", "4.2.10"]
        );
    }
}
