//! Opening the SQLite store: the connections and their settings, the embedded migrations,
//! and the file identity and health checks that notice the file being replaced under us.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::checkpoint::Checkpointer;
use super::{CheckpointOptions, SqliteStore, BUSY_TIMEOUT, STATEMENT_CACHE};
use crate::store::{StoreError, StoreResult};

/// One schema change, embedded from `migrations/sqlite/NNNN_name.sql`.
pub use crate::store::Migration;

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
    Migration {
        version: 5,
        name: "fleet_failing",
        sql: include_str!("../../../migrations/sqlite/0005_fleet_failing.sql"),
    },
];

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
    pub fn file_health(&self, min_free_bytes: u64) -> crate::store::StoreHealth {
        let mut health = crate::store::StoreHealth::default();
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

    /// The durability settings in force on the write connection, so tests and operators
    /// can check them rather than trust them.
    pub fn settings(&self) -> StoreResult<Settings> {
        let conn = self.writer();
        settings_of(&conn)
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

pub(super) fn settings_of(conn: &Connection) -> StoreResult<Settings> {
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
pub(super) fn configure(conn: &Connection, read_only: bool) -> StoreResult<()> {
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

/// (device, inode) of the file at `path`, following symlinks as SQLite does.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}
