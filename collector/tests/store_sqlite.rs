//! The storage stories (`store::conformance`) on SQLite files in a temporary directory,
//! and what only the SQLite backend has: URLs, migrations across reopen, the file's
//! durability settings, and reports that survive the process being killed.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nodeproof_collector::store::conformance::{self, check, Agent};
use nodeproof_collector::store::sqlite::{CheckpointOptions, SqliteStore};
use nodeproof_collector::store::{self, Store, StoreError};
use nodeproof_proto::Status;
use tempfile::TempDir;

fn url_of(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn fresh_sqlite() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("nodeproof.db")).expect("open a new database");
    (dir, store)
}

macro_rules! stories {
    ($($story:ident),* $(,)?) => {
        $(
            #[test]
            fn $story() {
                let (_dir, store) = fresh_sqlite();
                conformance::$story(&store);
                // The story saw the right summaries; the counters behind them must also
                // agree with the rows they summarise.
                store.verify_counters().expect("counters after the story");
            }
        )*
        const TESTED: &[&str] = &[$(stringify!($story)),*];
    };
}

stories!(
    tokens,
    enrolment,
    approval_and_revocation,
    key_rotation,
    full_reports,
    unchanged_runs,
    stored_chain_has_no_gap,
    commit_refuses_a_notice_that_breaks_the_chain,
    batch_atomicity,
    fleet_summary,
    failing_by_check,
    drift_since,
    drift_newest,
    chain_events,
    chain_events_are_counted,
    pending_claims_and_deletion,
    several_claims_on_a_pending_name,
    claims_expire_one_by_one,
    failing_checks,
    stale_nodes,
    exceptions,
    evidence_export,
);

/// `run_all` is what another backend's test calls; here it opens each store by URL.
#[test]
fn run_all_through_store_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = std::cell::Cell::new(0);
    conformance::run_all(&|| {
        opened.set(opened.get() + 1);
        let path = dir.path().join(format!("story-{}.db", opened.get()));
        store::open(&url_of(&path)).expect("open by URL")
    });
    assert_eq!(
        opened.get(),
        conformance::STORIES.len(),
        "one fresh store per story"
    );
}

#[test]
fn every_story_runs_on_sqlite() {
    let all: Vec<&str> = conformance::STORIES.iter().map(|(name, _)| *name).collect();
    assert_eq!(all, TESTED, "add the new story to the stories! list above");
}

fn migrations(path: &Path) -> Vec<(i64, String, i64)> {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn reopening_keeps_everything_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keep.db");
    let url = url_of(&path);
    let mut a = Agent::new("a");
    let report = a.full(100, vec![check("4.2.1", Status::Fail)]);
    let token = conformance::fake_hex("token");
    {
        let s = store::open(&url).expect("open");
        a.enroll(&*s, true, 0);
        s.commit(std::slice::from_ref(&report)).expect("commit");
        s.create_token(&token, 1000, Some(2), 0).expect("token");
        assert!(s.redeem_token(&token, 1).expect("redeem"));
    }
    let applied = migrations(&path);
    assert_eq!(
        applied
            .iter()
            .map(|(v, n, _)| (*v, n.as_str()))
            .collect::<Vec<_>>(),
        store::sqlite::MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name))
            .collect::<Vec<_>>(),
        "the first open applied every migration"
    );

    let s = store::open(&url).expect("reopen");
    assert_eq!(
        migrations(&path),
        applied,
        "reopening applies nothing again"
    );
    let n = s.node("a").expect("node").expect("a survives");
    assert_eq!(
        (n.last_sequence, n.failing.clone()),
        (1, vec!["4.2.1".to_string()])
    );
    assert_eq!(
        s.envelope(&report.digest).expect("envelope"),
        Some(report.envelope.clone())
    );
    assert_eq!(s.history("a", 10).expect("history").len(), 1);
    assert_eq!(
        s.fleet_summary(200).expect("summary").checks[0].fail,
        1,
        "counters survive"
    );
    assert!(
        s.redeem_token(&token, 2).expect("redeem"),
        "the token's second use is left"
    );
    assert!(
        !s.redeem_token(&token, 3).expect("redeem"),
        "and only that one"
    );
    drop(s);
    store::open(&url).expect("a third open");
    assert_eq!(migrations(&path), applied);
}

/// A database written before refusals were counted: its chain-event rows, one per request,
/// become one counted record per (node, kind, digest).
#[test]
fn chain_event_rows_are_counted_by_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open raw");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY,
                 name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        conn.execute_batch(nodeproof_collector::store::sqlite::MIGRATIONS[0].sql)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO schema_migrations VALUES (1, 'initial', 0);
             INSERT INTO nodes (name, key_id, public_key, status, enrolled_at)
                 VALUES ('n', 'k', 'pem', 'approved', 0);
             INSERT INTO chain_events (node, kind, at, expected_sequence, got_sequence,
                                       digest, detail)
                 VALUES ('n', 'replay', 10, 5, 1, 'd1', 'first'),
                        ('n', 'replay', 20, 5, 1, 'd1', 'second'),
                        ('n', 'chain_gap', 25, 5, 9, 'd2', 'gap'),
                        ('n', 'replay', 30, 6, 1, 'd1', 'third');",
        )
        .unwrap();
    }
    let s = store::open(&url_of(&path)).expect("migrate");
    let events = s.chain_events("n").expect("events");
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.digest.as_str(),
                e.at,
                e.last_at,
                e.count,
                e.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("replay", "d1", 10, 30, 3, "first"),
            ("chain_gap", "d2", 25, 25, 1, "gap")
        ]
    );
}

#[test]
fn a_database_from_a_newer_collector_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    drop(store::open(&url_of(&path)).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    let future = store::sqlite::MIGRATIONS.len() as i64 + 1;
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'from_the_future', 0)",
        [future],
    )
    .expect("pretend a newer collector migrated it");
    drop(conn);

    let err = store::open(&url_of(&path))
        .map(|_| ())
        .expect_err("a newer schema must be refused");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    for part in [
        "newer nodeproof-collector",
        &format!("migration {future}"),
        "from_the_future",
        "upgrade",
    ] {
        assert!(
            msg.contains(part),
            "the error should mention {part:?}: {msg}"
        );
    }
    assert_eq!(
        migrations(&path).len(),
        future as usize,
        "refusing changes nothing"
    );
}

#[test]
fn unsupported_urls_are_refused_with_the_form_to_use() {
    for url in [
        "mysql://nodeproof:s3cret@localhost/x",
        "sqlite:relative.db",
        "sqlite://",
        "/var/lib/nodeproof/collector.db",
        "",
    ] {
        let err = store::open(url).map(|_| ()).expect_err(url);
        let msg = err.to_string();
        assert!(matches!(err, StoreError::BadUrl(_)), "{url}: {err:?}");
        assert!(
            msg.contains("sqlite:///path/to/file.db") && msg.contains("postgres://"),
            "{url}: the message says what works: {msg}"
        );
        assert!(
            !msg.contains("s3cret"),
            "a password must not reach the logs: {msg}"
        );
    }
    // A postgres:// URL is supported: with nothing listening it is Unavailable, and its
    // password is masked in that message too.
    let err = store::open("postgres://nodeproof:s3cret@127.0.0.1:1/nodeproof")
        .map(|_| ())
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("postgres://nodeproof:***@127.0.0.1:1/nodeproof") && !msg.contains("s3cret"),
        "{msg}"
    );
}

#[test]
fn a_missing_directory_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/dir");
    let err = store::open(&url_of(&missing.join("x.db")))
        .map(|_| ())
        .expect_err("missing dir");
    let msg = err.to_string();
    assert!(
        msg.contains("does not exist") && msg.contains(&missing.display().to_string()),
        "{msg}"
    );
    assert!(
        !dir.path().join("no").exists(),
        "nodeproof must not create directories"
    );

    let err = store::open(&url_of(dir.path()))
        .map(|_| ())
        .expect_err("a directory");
    assert!(err.to_string().contains("is a directory"), "{err}");
}

/// `path` relative to the current directory, walking up with `..` (tests must not change
/// the process's directory: they run in parallel).
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().expect("cwd");
    let ups = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut rel: PathBuf = std::iter::repeat_n("..", ups).collect();
    rel.extend(
        path.components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    rel
}

#[test]
fn relative_urls_name_files_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = relative_to_cwd(&dir.path().join("plain.db"));
    assert!(rel.is_relative());
    store::open(&format!("sqlite://{}", rel.display())).expect("sqlite://rel.db");
    assert!(dir.path().join("plain.db").is_file());

    let dotted = format!(
        "sqlite://./{}",
        relative_to_cwd(&dir.path().join("dotted.db")).display()
    );
    store::open(&dotted).expect("sqlite://./rel.db");
    assert!(dir.path().join("dotted.db").is_file());

    store::open(&format!("sqlite://{}", dir.path().join("abs.db").display()))
        .expect("sqlite:///abs.db");
    assert!(dir.path().join("abs.db").is_file());
}

#[test]
fn the_file_is_wal_with_synchronous_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("durable.db");
    let s = SqliteStore::open(&path).expect("open");
    let settings = s.settings().expect("settings");
    assert_eq!(settings.journal_mode, "wal");
    assert_eq!(
        settings.synchronous, 2,
        "synchronous must be FULL (2): {settings:?}"
    );
    assert!(settings.foreign_keys, "foreign keys on");
    assert!(settings.busy_timeout_ms > 0, "a busy timeout is set");
    assert_eq!(
        settings.wal_autocheckpoint,
        i64::from(CheckpointOptions::default().writer_after_pages),
        "the writer checkpoints itself only as a safety net"
    );

    let mut a = Agent::new("a");
    a.enroll(&s, true, 0);
    s.commit(&[a.full(100, vec![])]).expect("commit");
    // The file format bytes say WAL (2, 2) to any reader, and the log exists.
    let header = std::fs::read(&path).expect("read the file");
    assert_eq!(
        (header[18], header[19]),
        (2, 2),
        "the header marks the file as WAL"
    );
    assert!(
        path.with_extension("db-wal").exists(),
        "the write-ahead log is next to the file"
    );
}

#[test]
fn the_store_is_shared_between_threads() {
    let (_dir, store) = fresh_sqlite();
    let s: &dyn Store = &store;
    let mut agents: Vec<Agent> = (0..4).map(|i| Agent::new(&format!("n{i}"))).collect();
    for a in &agents {
        a.enroll(s, true, 0);
    }
    std::thread::scope(|scope| {
        for a in agents.iter_mut() {
            scope.spawn(move || {
                for i in 0..10 {
                    let status = if i % 2 == 0 {
                        Status::Fail
                    } else {
                        Status::Pass
                    };
                    s.commit(&[a.full(100 + i, vec![check("4.2.1", status)])])
                        .expect("commit");
                    s.fleet_summary(100 + i).expect("read while others write");
                }
            });
        }
    });
    let f = s.fleet_summary(200).expect("summary");
    assert_eq!(
        (f.nodes.compliant, f.nodes.failing),
        (4, 0),
        "every node's last report passed"
    );
    assert_eq!(
        (f.checks[0].pass, f.checks[0].fail),
        (4, 0),
        "counters agree after concurrent commits"
    );
    assert_eq!(
        s.drift(0, None).expect("drift").events.len(),
        40,
        "every change recorded"
    );
    store
        .verify_counters()
        .expect("counters after concurrent commits");
}

#[test]
fn verify_counters_notices_counters_out_of_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skewed.db");
    let store = SqliteStore::open(&path).expect("open");
    let mut a = Agent::new("a");
    a.enroll(&store, true, 0);
    store
        .commit(&[a.full(100, vec![check("4.2.1", Status::Fail)])])
        .expect("commit");
    store.verify_counters().expect("consistent after a commit");

    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute("UPDATE check_counts SET fail = fail + 1", [])
        .expect("skew the counters");
    let err = store.verify_counters().expect_err("skewed check counts");
    assert!(err.to_string().contains("check_counts"), "{err}");
    raw.execute("UPDATE check_counts SET fail = fail - 1", [])
        .expect("unskew");
    raw.execute("UPDATE node_tally SET n = n + 1", [])
        .expect("skew the tally");
    let err = store.verify_counters().expect_err("skewed node tally");
    assert!(err.to_string().contains("node_tally"), "{err}");
}

// kill -9 durability is tested end to end against the real collector binary, with
// agents sending (tests/tests/fleet.rs).

/// Commits `rounds` batches of one full report per agent, each with an envelope of
/// `envelope_bytes`, and returns the bytes of envelopes committed.
fn commit_big_reports(
    s: &dyn Store,
    agents: &mut [Agent],
    rounds: i64,
    envelope_bytes: usize,
) -> u64 {
    let mut total = 0;
    for round in 0..rounds {
        let batch: Vec<_> = agents
            .iter_mut()
            .map(|a| {
                let mut accepted = a.full(100 + round, vec![check("4.2.1", Status::Pass)]);
                accepted.envelope = vec![b'e'; envelope_bytes];
                total += envelope_bytes as u64;
                accepted
            })
            .collect();
        s.commit(&batch).expect("commit");
    }
    total
}

fn agents(n: usize) -> Vec<Agent> {
    (0..n).map(|i| Agent::new(&format!("node-{i}"))).collect()
}

/// The background thread, not the writer, moves committed pages into the database file.
#[test]
fn the_log_is_checkpointed_by_the_background_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open_with(
        &path,
        CheckpointOptions {
            background_after_bytes: 1 << 20,
            // The writer never checkpoints by itself here.
            writer_after_pages: 0,
        },
    )
    .expect("open");
    assert_eq!(store.settings().expect("settings").wal_autocheckpoint, 0);
    let mut agents = agents(4);
    for a in &agents {
        a.enroll(&store, true, 0);
    }
    let before = std::fs::metadata(&path).expect("db file").len();
    let committed = commit_big_reports(&store, &mut agents, 40, 16 * 1024);
    assert!(committed > 2 << 20, "enough to wake the checkpointer twice");
    assert!(
        store.wait_for_background_checkpoints(1, Duration::from_secs(60)),
        "no background checkpoint after {committed} bytes were committed"
    );
    let after = std::fs::metadata(&path).expect("db file").len();
    assert!(
        after >= before + (1 << 20),
        "the database file grew from {before} to {after} bytes only: the committed pages \
         are still all in the log"
    );
    // Everything is readable, whoever copied it.
    for a in &agents {
        assert_eq!(store.history(&a.name, 1000).expect("history").len(), 40);
    }
    store.verify_counters().expect("counters");
}

/// With the background thread never woken, the writer's own checkpoints keep the log from
/// growing past its threshold (plus the commit that crossed it).
#[test]
fn the_writer_bounds_the_log_when_the_background_thread_falls_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("net.db");
    let store = SqliteStore::open_with(
        &path,
        CheckpointOptions {
            background_after_bytes: u64::MAX,
            writer_after_pages: 256,
        },
    )
    .expect("open");
    let mut agents = agents(4);
    for a in &agents {
        a.enroll(&store, true, 0);
    }
    let committed = commit_big_reports(&store, &mut agents, 100, 16 * 1024);
    let wal = std::fs::metadata(path.with_extension("db-wal"))
        .expect("the log")
        .len();
    // 256 pages of 4 KiB, plus one commit of four 16 KiB reports and the pages they touch.
    assert!(
        wal <= 2 << 20,
        "the log is {wal} bytes after {committed} bytes were committed: it must stay near \
         256 pages"
    );
    assert_eq!(
        store.background_checkpoints(),
        0,
        "the thread was never woken"
    );
    for a in &agents {
        assert_eq!(store.history(&a.name, 1000).expect("history").len(), 100);
    }
}

/// The exception log is evidence: even someone with the database file and SQL cannot
/// rewrite or delete an entry without dropping the triggers first.
#[test]
fn exception_log_cannot_be_rewritten() {
    let (dir, store) = fresh_sqlite();
    Agent::new("node-a").enroll(&store, true, 0);
    let new = store::NewException {
        check_id: "kubelet-pod-pids-limit".into(),
        cis: "4.2.13".into(),
        node: None,
        until: 5000,
        reason: "vendor fix due".into(),
        by: "alice".into(),
    };
    store.add_exception(&new, 100).expect("add");
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("nodeproof.db")).expect("open raw");
    for sql in [
        "UPDATE exception_events SET by = 'mallory'",
        "DELETE FROM exception_events",
    ] {
        let e = conn.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM exception_events WHERE by = 'alice'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1);
}
