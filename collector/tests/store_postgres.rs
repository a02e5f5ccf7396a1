//! The storage stories (`store::conformance`) on PostgreSQL, one fresh database each, and
//! what only a shared database has: several collectors (separate pools) racing for the
//! same node's next sequence, migrations when collectors start at once, connections cut
//! under the store, and moving an installation from SQLite.
//!
//! They need a server: `NODEPROOF_TEST_PG=postgres://postgres@127.0.0.1:5432/test` (set by
//! `.ci/run` and `scripts/test`). Without it each test says it was not run.

use std::sync::{Arc, Barrier};

use nodeproof_collector::store::conformance::{self, check, Agent};
use nodeproof_collector::store::postgres::testdb::TestDatabase;
use nodeproof_collector::store::postgres::{import_sqlite, schema, PgStore};
use nodeproof_collector::store::{self, Store, StoreError};
use nodeproof_proto::Status;

fn open(db: &TestDatabase) -> PgStore {
    PgStore::open(db.url(), db.url(), true).expect("open the test database")
}

macro_rules! stories {
    ($($story:ident),* $(,)?) => {
        $(
            #[test]
            fn $story() {
                let Some(db) = TestDatabase::create(stringify!($story)) else { return };
                let store = open(&db);
                conformance::$story(&store);
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

#[test]
fn every_story_runs_on_postgres() {
    let all: Vec<&str> = conformance::STORIES.iter().map(|(name, _)| *name).collect();
    assert_eq!(all, TESTED, "add the new story to the stories! list above");
}

/// `store::open` picks PostgreSQL by URL; `open_existing` refuses a database without the
/// schema (a mistyped --db is not a new fleet), and accepts it once created.
#[test]
fn postgres_urls_open_the_postgres_store() {
    let Some(db) = TestDatabase::create("postgres_urls_open_the_postgres_store") else {
        return;
    };
    let Err(err) = store::open_existing(db.url()) else {
        panic!("no schema yet: open_existing must refuse");
    };
    assert!(
        err.to_string().contains("has no nodeproof schema") && err.to_string().contains("init"),
        "{err}"
    );
    let s = store::open(db.url()).expect("create");
    Agent::new("a").enroll(&*s, true, 0);
    drop(s);
    let s = store::open_existing(db.url()).expect("reopen");
    assert!(s.node("a").expect("node").is_some());
    let alias = db.url().replacen("postgres://", "postgresql://", 1);
    assert!(store::open_existing(&alias).is_ok(), "postgresql:// too");
}

#[test]
fn a_password_in_a_bad_postgres_url_is_masked() {
    let Err(err) = store::open("postgres://nodeproof:s3cret@127.0.0.1:1/nodeproof") else {
        panic!("nothing listens on port 1");
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// Several collectors starting at once on a fresh database: every one opens, and each
/// migration is applied exactly once (the advisory lock).
#[test]
fn collectors_starting_at_once_migrate_once() {
    let Some(db) = TestDatabase::create("collectors_starting_at_once_migrate_once") else {
        return;
    };
    let url = db.url().to_owned();
    let start = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (url, start) = (url.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&url, &url, true).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("every collector opens");
    }
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("schema_migrations");
    let applied: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(i64, String)> = schema::MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect();
    assert_eq!(applied, want);
}

/// Many collectors (each its own store and pool) race to commit the same node's next
/// sequence, each with its own statement for it (a fork): exactly one wins each
/// sequence, the others get a Conflict, and the stored chain has no gap and no fork.
#[test]
fn racing_collectors_store_each_sequence_once() {
    let Some(db) = TestDatabase::create("racing_collectors_store_each_sequence_once") else {
        return;
    };
    const COLLECTORS: usize = 6;
    const SEQUENCES: u64 = 15;
    let stores: Vec<Arc<PgStore>> = (0..COLLECTORS).map(|_| Arc::new(open(&db))).collect();
    let agent = Agent::new("raced");
    agent.enroll(stores[0].as_ref(), true, 0);
    let mut winners = Vec::new();
    for seq in 1..=SEQUENCES {
        let head = stores[0].node("raced").expect("node").expect("exists");
        assert_eq!(head.last_sequence, seq - 1);
        let start = Arc::new(Barrier::new(COLLECTORS));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Each collector's own statement for this sequence, chained to the head.
                let mut a = agent.clone();
                a.name = "raced".into();
                a.sequence = seq - 1;
                a.last = head.last_digest.clone();
                a.last_full = head.last_full_digest.clone();
                let stmt = a.full(
                    1000 + i64::try_from(seq * 10).expect("small") + i as i64,
                    vec![check(
                        "4.2.1",
                        if i % 2 == 0 {
                            Status::Pass
                        } else {
                            Status::Fail
                        },
                    )],
                );
                let (s, start) = (Arc::clone(s), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    (stmt.digest.clone(), s.commit(std::slice::from_ref(&stmt)))
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let won: Vec<&String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(d, _)| d)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "sequence {seq}: exactly one collector wins: {results:?}"
        );
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, StoreError::Conflict(_)),
                    "a loser gets a Conflict: {e:?}"
                );
            }
        }
        winners.push(won[0].clone());
    }
    let history = stores[1].history("raced", 100).expect("history");
    let mut seqs: Vec<u64> = history.iter().map(|h| h.sequence).collect();
    seqs.reverse();
    assert_eq!(seqs, (1..=SEQUENCES).collect::<Vec<_>>(), "no gap, no fork");
    let mut stored: Vec<String> = history.iter().map(|h| h.digest.clone()).collect();
    stored.reverse();
    assert_eq!(stored, winners, "the stored statements are the winners");
    // And each stored statement links to the one before it.
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT digest, previous FROM reports ORDER BY sequence",
            &[],
        )
        .expect("reports");
    for pair in rows.windows(2) {
        let prev: String = pair[0].get(0);
        let link: Option<String> = pair[1].get(1);
        assert_eq!(link.as_deref(), Some(prev.as_str()), "the chain links");
    }
    stores[0].verify_counters().expect("counters");
}

/// Collectors race for the same node's next sequence with notices and full reports mixed
/// (the chain rule of issue 8 under concurrency): exactly one statement wins each sequence,
/// a run's notices replace each other in place, and the stored chain walks with no gap,
/// whichever collector committed which link.
#[test]
fn racing_notices_keep_the_stored_chain_gap_free() {
    let Some(db) = TestDatabase::create("racing_notices_keep_the_stored_chain_gap_free") else {
        return;
    };
    const COLLECTORS: usize = 4;
    const SEQUENCES: u64 = 12;
    let stores: Vec<Arc<PgStore>> = (0..COLLECTORS).map(|_| Arc::new(open(&db))).collect();
    let mut agent = Agent::new("noticed");
    agent.enroll(stores[0].as_ref(), true, 0);
    commit_one(
        &stores[0],
        agent.full(1000, vec![check("4.2.1", Status::Pass)]),
    );
    for seq in 2..=SEQUENCES {
        let start = Arc::new(Barrier::new(COLLECTORS));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Collector i's own statement for this sequence: a notice of the current
                // run from the even ones, a full report from the odd ones (every third
                // sequence, so runs grow long enough to be replaced in place).
                let mut mine = agent.clone();
                let at = 1000 + i64::try_from(seq * 10 + i as u64).expect("small");
                let stmt = if i % 2 == 1 && seq % 3 == 0 {
                    mine.full(at, vec![check("4.2.1", Status::Fail)])
                } else {
                    mine.unchanged(at)
                };
                let (s, start) = (Arc::clone(s), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    let r = s.commit(std::slice::from_ref(&stmt));
                    (mine, r)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let mut won = results.into_iter().filter_map(|(a, r)| match r {
            Ok(()) => Some(a),
            Err(StoreError::Conflict(_)) => None,
            Err(e) => panic!("sequence {seq}: a loser gets a Conflict, not {e:?}"),
        });
        agent = won.next().expect("one collector wins");
        assert!(won.next().is_none(), "sequence {seq}: only one wins");
    }
    let links = stores[1].chain_links("noticed").expect("chain_links");
    assert_eq!(
        nodeproof_proto::chain::walk(None, &links),
        vec![],
        "the stored chain holds: {links:#?}"
    );
    assert_eq!(links.last().map(|l| l.sequence), Some(SEQUENCES));
    assert!(
        links.len() < usize::try_from(SEQUENCES).expect("small"),
        "runs of notices were collapsed: {links:#?}"
    );
    assert_eq!(
        links.len(),
        stores[2].history("noticed", 100).expect("history").len()
    );
    stores[0].verify_counters().expect("counters");
}

fn commit_one(s: &PgStore, a: store::Accepted) {
    s.commit(std::slice::from_ref(&a)).expect("commit");
}

/// `for_each_statement` reads through a portal a few rows at a time: histories longer
/// than one fetch, one exactly a fetch's multiple and an empty one come back whole, in
/// order, byte for byte; a callback error mid-history stops the walk there.
#[test]
fn the_export_walk_pages_through_long_histories() {
    let Some(db) = TestDatabase::create("the_export_walk_pages_through_long_histories") else {
        return;
    };
    let s = open(&db);
    // 64 rows a fetch: 128 is two whole fetches (the third is empty), 150 ends mid-fetch.
    let mut sent = Vec::new();
    for (name, n) in [("long", 150u64), ("exact", 128), ("empty", 0)] {
        let mut a = Agent::new(name);
        a.enroll(&s, true, 0);
        let batch: Vec<_> = (0..n)
            .map(|i| a.full(100 + i64::try_from(i).expect("small"), vec![]))
            .collect();
        s.commit(&batch).expect("commit");
        sent.push((name, batch));
    }
    let mut got: Vec<(String, u64, String, Vec<u8>)> = Vec::new();
    s.for_each_statement(&store::ExportFilter::default(), &mut |st| {
        got.push((st.node, st.sequence, st.digest, st.envelope));
        Ok(())
    })
    .expect("walk");
    sent.sort_by_key(|(name, _)| *name);
    let want: Vec<(String, u64, String, Vec<u8>)> = sent
        .iter()
        .flat_map(|(_, batch)| batch.iter())
        .map(|a| {
            (
                a.node.clone(),
                a.sequence,
                a.digest.clone(),
                a.envelope.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), 278);
    assert!(
        got == want,
        "every statement, node then sequence, byte for byte"
    );

    let mut seen = 0;
    let stopped = s.for_each_statement(&store::ExportFilter::default(), &mut |_| {
        seen += 1;
        if seen == 100 {
            return Err(StoreError::Backend("stop".into()));
        }
        Ok(())
    });
    assert!(
        matches!(stopped, Err(StoreError::Backend(_))),
        "{stopped:?}"
    );
    assert_eq!(
        seen, 100,
        "the walk stops at the error, in the second fetch"
    );
    // The store is still usable: the portal died with its transaction.
    assert_eq!(s.chain_links("exact").expect("links").len(), 128);
}

/// Collectors commit different nodes' reports in batches that overlap in opposite orders,
/// with verdicts flipping (so the counter rows are written by all of them at once): no
/// deadlock surfaces as an error, and the counters stay exact.
#[test]
fn overlapping_batches_do_not_deadlock_and_keep_counters_exact() {
    let Some(db) =
        TestDatabase::create("overlapping_batches_do_not_deadlock_and_keep_counters_exact")
    else {
        return;
    };
    let a = open(&db);
    let names: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    for n in &names {
        Agent::new(n).enroll(&a, true, 0);
    }
    let start = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let store = open(&db);
            let start = Arc::clone(&start);
            // Collector w owns nodes w and w + 4 (a node's chain is one collector's here),
            // and sends its two nodes' reports in one batch, in an order that alternates.
            let mut mine = [Agent::new(&names[w]), Agent::new(&names[w + 4])];
            std::thread::spawn(move || {
                start.wait();
                for round in 0..20i64 {
                    let status = if (round + w as i64) % 2 == 0 {
                        Status::Pass
                    } else {
                        Status::Fail
                    };
                    let mut batch: Vec<_> = mine
                        .iter_mut()
                        .map(|ag| {
                            ag.full(
                                100 + round,
                                vec![check("4.2.1", status), check("4.2.2", status)],
                            )
                        })
                        .collect();
                    if round % 2 == 1 {
                        batch.reverse();
                    }
                    store.commit(&batch).expect("commit");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a collector failed");
    }
    a.verify_counters().expect("counters");
    let summary = a.fleet_summary(100).expect("summary");
    assert_eq!(summary.nodes.approved, 8);
    let total: u64 = summary.checks.iter().map(|c| c.pass + c.fail).sum();
    assert_eq!(total, 16, "two checks per node, each counted once");
}

/// Connections cut under the store (the server restarted, an operator's
/// pg_terminate_backend): calls answer Unavailable or succeed, never a wrong answer, and
/// the store recovers without being reopened.
#[test]
fn the_store_reconnects_after_its_connections_are_terminated() {
    let Some(db) =
        TestDatabase::create("the_store_reconnects_after_its_connections_are_terminated")
    else {
        return;
    };
    let s = open(&db);
    let mut agent = Agent::new("r");
    agent.enroll(&s, true, 0);
    s.commit(&[agent.full(10, vec![check("4.2.1", Status::Pass)])])
        .expect("first commit");
    for round in 0..5 {
        assert!(
            db.terminate_connections() >= 1,
            "round {round}: the pool had a connection"
        );
        // The pool tests a connection before handing it out and replaces a dead one.
        let report = agent.full(20 + round, vec![check("4.2.1", Status::Fail)]);
        match s.commit(std::slice::from_ref(&report)) {
            Ok(()) => {}
            Err(StoreError::Unavailable(m)) => {
                // Not acknowledged: the caller sends it again, and then it is stored.
                eprintln!("round {round}: unavailable ({m}); sending again");
                s.commit(std::slice::from_ref(&report))
                    .expect("the retry is stored");
            }
            Err(e) => panic!("round {round}: {e:?}"),
        }
        assert_eq!(
            s.envelope(&report.digest).expect("read back"),
            Some(report.envelope.clone())
        );
    }
    assert_eq!(s.node("r").expect("node").expect("r").last_sequence, 6);
}

/// An installation moved from SQLite: every table, every envelope byte for byte, the
/// same fleet answers, and a target that already holds data is refused.
#[test]
fn migrating_from_sqlite_keeps_every_envelope_byte_for_byte() {
    let Some(db) = TestDatabase::create("migrating_from_sqlite_keeps_every_envelope_byte_for_byte")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let sqlite = store::open(&format!("sqlite://{}", path.display())).expect("sqlite");
    // A history with everything in it: full reports, runs of notices, drift, a rotation,
    // a revoked node, a pending claim with a second claim, tokens, exceptions, refusals.
    let mut agents: Vec<Agent> = (0..5).map(|i| Agent::new(&format!("node-{i}"))).collect();
    for (i, a) in agents.iter().enumerate() {
        a.enroll(&*sqlite, i != 4, 1);
    }
    for round in 0..6i64 {
        for (i, a) in agents.iter_mut().enumerate().take(4) {
            let at = 100 + round * 10 + i as i64;
            let st = if (round + i as i64) % 3 == 0 {
                Status::Fail
            } else {
                Status::Pass
            };
            let next = if round % 2 == 1 && a.last_full.is_some() {
                a.unchanged(at)
            } else {
                a.full(at, vec![check("4.2.1", st), check("4.2.10", Status::Warn)])
            };
            sqlite.commit(&[next]).expect("commit");
        }
    }
    sqlite
        .rotate_key(
            "node-1",
            &agents[1].key_id,
            &conformance::fake_hex("new key"),
            "pem",
            200,
        )
        .expect("rotate");
    sqlite
        .set_status("node-3", store::NodeStatus::Revoked, 210)
        .expect("revoke");
    sqlite
        .add_claim(
            "node-4",
            &conformance::fake_hex("squatter"),
            "pem2",
            "10.0.0.9",
            220,
        )
        .expect("claim");
    sqlite
        .create_token(&conformance::fake_hex("tok"), 5000, Some(3), 1)
        .expect("token");
    let e = sqlite
        .add_exception(
            &store::NewException {
                check_id: "kubelet-4-2-1".into(),
                cis: "4.2.1".into(),
                node: Some("node-0".into()),
                until: 9000,
                reason: "accepted".into(),
                by: "ops".into(),
            },
            230,
        )
        .expect("exception");
    sqlite
        .revoke_exception(e.id, "ops", "fixed", 240)
        .expect("revoke exception");
    sqlite
        .record_chain_event(&store::ChainEvent {
            node: "node-2".into(),
            kind: "replay".into(),
            at: 250,
            last_at: 250,
            count: 1,
            expected_sequence: 7,
            got_sequence: 2,
            digest: conformance::fake_hex("replayed"),
            detail: "replay".into(),
        })
        .expect("chain event");

    let target = open(&db);
    let report = import_sqlite(&path, &target).expect("migrate");
    let reports = report
        .tables
        .iter()
        .find(|(t, _)| t == "reports")
        .expect("reports")
        .1;
    assert!(reports >= 12, "reports copied: {report:?}");

    // Every envelope, byte for byte, and the same answers to every question.
    let pg: &dyn Store = &target;
    let mut digests = 0;
    for n in sqlite.list_nodes().expect("nodes") {
        for h in sqlite.history(&n.name, 1000).expect("history") {
            assert_eq!(
                pg.envelope(&h.digest).expect("pg envelope"),
                sqlite.envelope(&h.digest).expect("sqlite envelope"),
                "envelope {}",
                h.digest
            );
            digests += 1;
        }
        assert_eq!(
            pg.history(&n.name, 1000).expect("h"),
            sqlite.history(&n.name, 1000).expect("h")
        );
        assert_eq!(
            pg.chain_events(&n.name).expect("ce"),
            sqlite.chain_events(&n.name).expect("ce")
        );
    }
    assert_eq!(digests as u64, reports);
    assert_eq!(pg.list_nodes().expect("l"), sqlite.list_nodes().expect("l"));
    for at in [0, 150, 10_000] {
        assert_eq!(
            pg.fleet_summary(at).expect("s"),
            sqlite.fleet_summary(at).expect("s")
        );
        assert_eq!(
            pg.stale_nodes(at).expect("s"),
            sqlite.stale_nodes(at).expect("s")
        );
    }
    assert_eq!(
        pg.failing_checks().expect("f"),
        sqlite.failing_checks().expect("f")
    );
    assert_eq!(
        pg.drift(0, None).expect("d"),
        sqlite.drift(0, None).expect("d")
    );
    assert_eq!(
        pg.pending_claims().expect("p"),
        sqlite.pending_claims().expect("p")
    );
    assert_eq!(pg.exceptions().expect("e"), sqlite.exceptions().expect("e"));
    assert_eq!(
        pg.exception_events().expect("e"),
        sqlite.exception_events().expect("e")
    );
    // The evidence export reads the same from both: every statement with its bytes, each
    // node's chain, its anchors and its keys (node-1's rotation included).
    let statements = |s: &dyn Store| {
        let mut out = Vec::new();
        s.for_each_statement(&store::ExportFilter::default(), &mut |st| {
            out.push(st);
            Ok(())
        })
        .expect("for_each_statement");
        out
    };
    let exported = statements(pg);
    assert_eq!(exported.len() as u64, reports);
    assert!(exported == statements(&*sqlite), "the same export");
    for n in sqlite.list_nodes().expect("nodes") {
        assert_eq!(
            pg.chain_links(&n.name).expect("links"),
            sqlite.chain_links(&n.name).expect("links")
        );
        assert_eq!(
            pg.key_history(&n.name).expect("keys"),
            sqlite.key_history(&n.name).expect("keys")
        );
        for before in [100, 125, 10_000] {
            assert_eq!(
                pg.chain_anchor(&n.name, before).expect("anchor"),
                sqlite.chain_anchor(&n.name, before).expect("anchor")
            );
        }
    }
    assert_eq!(pg.key_history("node-1").expect("keys").len(), 2);
    assert!(pg
        .redeem_token(&conformance::fake_hex("tok"), 2)
        .expect("token"));
    target.verify_counters().expect("counters");

    // The chains go on where they were: the next report of a node is accepted on
    // PostgreSQL, and a new exception gets a fresh id.
    let next = agents[0].full(400, vec![check("4.2.1", Status::Pass)]);
    pg.commit(&[next])
        .expect("the chain continues on PostgreSQL");
    let e2 = pg
        .add_exception(
            &store::NewException {
                check_id: "kubelet-4-2-1".into(),
                cis: "4.2.1".into(),
                node: None,
                until: 9000,
                reason: "r".into(),
                by: "ops".into(),
            },
            500,
        )
        .expect("exception after migration");
    assert!(e2.id > e.id);

    // A second migration into the now non-empty database is refused, and changes nothing.
    let again = import_sqlite(&path, &target).expect_err("target not empty");
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    assert!(again.to_string().contains("already holds data"), "{again}");
}

/// A SQLite database with a table or column the import does not know (a newer schema, or
/// one changed by hand) is refused before anything is copied, naming what would be lost:
/// the copy carries every column or nothing.
#[test]
fn migrating_refuses_a_sqlite_column_it_would_not_copy() {
    let Some(db) = TestDatabase::create("migrating_refuses_a_sqlite_column_it_would_not_copy")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    let sqlite = store::open(&format!("sqlite://{}", path.display())).expect("sqlite");
    let mut a = Agent::new("n");
    a.enroll(&*sqlite, true, 1);
    sqlite
        .commit(&[a.full(100, vec![check("4.2.1", Status::Pass)])])
        .expect("commit");
    drop(sqlite);
    let raw = rusqlite::Connection::open(&path).expect("open the file");
    raw.execute_batch(
        "ALTER TABLE reports ADD COLUMN attestation BLOB;
         CREATE TABLE node_labels (node TEXT NOT NULL, label TEXT NOT NULL);",
    )
    .expect("a newer schema");
    drop(raw);

    let target = open(&db);
    let err = import_sqlite(&path, &target).expect_err("columns it would drop");
    let msg = err.to_string();
    assert!(
        msg.contains("column reports.attestation") && msg.contains("table node_labels"),
        "{msg}"
    );
    assert!(msg.contains("nothing was copied"), "{msg}");
    assert!(
        target.list_nodes().expect("nodes").is_empty(),
        "nothing copied"
    );
}
