//! Unit tests of the SQLite store's internals.

use rusqlite::params;

use super::open::settings_of;
use super::read::{DRIFT_NEWEST, FAILING_CHECKS};
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

/// The fleet views' failing-checks read scans only the failing rows, from the partial
/// covering index (never the primary key, which holds every check of every node), and
/// looks each row's node up by name.
#[test]
fn the_failing_checks_are_read_from_the_partial_index_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    let plan: Vec<String> = store
        .read(|c| {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {FAILING_CHECKS}"))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .expect("explain");
    assert_eq!(
        plan,
        [
            "SCAN k USING COVERING INDEX node_checks_failing",
            "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (name=?)"
        ]
    );
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
