//! The PostgreSQL schema's migrations, and applying them safely when several collectors
//! start at once: inside one transaction that first takes a transaction-level advisory
//! lock, so the second collector waits for the first to finish and then finds nothing
//! left to do. A database migrated further by a newer collector is refused.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{get, Conn, StoreError, StoreResult, Tx};

/// One schema change, embedded from `migrations/postgres/NNNN_name.sql`.
pub use crate::store::Migration;

/// Every migration, in order. Append only: a file that has shipped is never edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "drift_newest",
        sql: include_str!("../../../migrations/postgres/0002_drift_newest.sql"),
    },
    Migration {
        version: 3,
        name: "fleet_failing",
        sql: include_str!("../../../migrations/postgres/0003_fleet_failing.sql"),
    },
];

/// The advisory lock key the migrations hold ("nodeproof" in ASCII, as a number): any
/// constant works as long as every collector uses the same one.
pub const MIGRATION_LOCK: i64 = 0x6e6f_6465_7072_6f6f;

/// Applies the migrations `schema_migrations` does not list, in order, in one transaction
/// under [`MIGRATION_LOCK`]. Without `create`, a database that has no collector schema is
/// an error (a mistyped `--db` must not become a new, empty fleet).
pub(super) fn migrate(conn: &mut Conn, shown: &str, create: bool) -> StoreResult<()> {
    let Conn { client, cache } = conn;
    let tx = client.transaction().map_err(|e| super::pg_error(&e))?;
    let mut tx = Tx {
        tx: Some(tx),
        cache,
        failed: None,
    };
    // Released at commit or rollback, whatever happens to this process.
    tx.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
    let exists: bool = get(
        &tx.one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?,
        0,
    )?;
    if !exists && !create {
        return Err(StoreError::Backend(format!(
            "PostgreSQL database {shown} has no nodeproof schema: check --db, or create the \
             schema with `nodeproof-collector init --db {shown}` (or `serve --init`)"
        )));
    }
    tx.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT NOT NULL PRIMARY KEY,
             name       TEXT   NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )?;
    let applied: Vec<(i64, String)> = tx
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect::<StoreResult<_>>()?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for (version, name) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Backend(format!(
                    "{shown} was migrated by a newer nodeproof-collector (migration {version} \
                     {name:?} is applied; this version knows migrations up to {known}): \
                     refusing to use it; upgrade nodeproof-collector"
                )))
            }
            Some(m) if m.name != name => {
                return Err(StoreError::Backend(format!(
                    "{shown}: migration {version} is recorded as {name:?} but this version's \
                     migration {version} is {:?}: the database is not one this version wrote",
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
        tx.batch(m.sql).map_err(|e| {
            StoreError::Backend(format!(
                "migration {:04}_{} failed on {shown}: {e}",
                m.version, m.name
            ))
        })?;
        tx.exec(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &now],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Guards against adding a migration file and forgetting to embed it (or the reverse).
    #[test]
    fn every_postgres_migration_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations/postgres")
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
        assert_eq!(
            files, embedded,
            "migrations/postgres and MIGRATIONS disagree"
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions must be 1, 2, 3, ...");
            let on_disk = std::fs::read_to_string(dir.join(&embedded[i])).expect("read");
            assert_eq!(on_disk, m.sql, "{} is not the embedded text", embedded[i]);
        }
    }
}
