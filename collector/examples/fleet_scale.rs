//! A measurement, not a test: fills a SQLite store with a fleet (100,000 approved nodes by
//! default, each with one full report of 14 checks, and two exceptions) and times the fleet
//! reads: the store methods behind `GET /v1/fleet`, `/v1/nodes`, `/v1/overview`,
//! `/v1/matrix`, `/v1/drift` and `/v1/checks/{cis}`, and the server's views built on them.
//!
//! `cargo run --release -p nodeproof-collector --example fleet_scale
//!  [-- NODES [DB_PATH] [--db postgres://user@host/db]]`
//! (without DB_PATH the SQLite file lives in a temporary directory and is removed). With
//! `--db`, the same fleet is copied into a new database made on that server for the run
//! (`nodeproof-collector migrate`'s import, then `VACUUM (ANALYZE)` as autovacuum would do
//! after so many inserts), dropped
//! after; every read is timed on both stores side by side and their answers must be equal
//! (the run fails otherwise). Then `EXPLAIN (ANALYZE, BUFFERS)` of the PostgreSQL fleet
//! queries is printed.

use std::time::{Duration, Instant};

use anyhow::Context;
use nodeproof_collector::server::{fleet, overview::Overview, ui::matrix};
use nodeproof_collector::store::postgres::{import_sqlite, testdb::TestDatabase, PgStore};
use nodeproof_collector::store::sqlite::{NewNode, SqliteStore};
use nodeproof_collector::store::{Accepted, AcceptedKind, CheckState, NewException, Store};
use nodeproof_proto::{Status, Summary};

const CHECKS: [&str; 14] = [
    "4.1.1", "4.1.5", "4.1.9", "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5", "4.2.6", "4.2.7",
    "4.2.8", "4.2.9", "4.2.10", "4.2.13",
];
const BATCH: usize = 1_000;
const INTERVAL: u64 = 300;
const NOW: i64 = 1_750_000_000;

fn hex(n: u64, salt: u64) -> String {
    (0..4)
        .map(|i| {
            format!(
                "{:016x}",
                (n ^ salt.rotate_left(i * 16)).wrapping_mul(0x9e37_79b9_7f4a_7c15 + u64::from(i))
            )
        })
        .collect()
}

fn report(i: u64, key_id: &str) -> Accepted {
    let checks: Vec<CheckState> = CHECKS
        .iter()
        .enumerate()
        .map(|(k, cis)| {
            // Most checks pass; some nodes fail or warn on some checks.
            let status = match (i * 7 + k as u64 * 13) % 97 {
                0..=2 => Status::Fail,
                3 => Status::Warn,
                4 => Status::Error,
                _ => Status::Pass,
            };
            CheckState {
                id: format!("kubelet-{}", cis.replace('.', "-")),
                cis: (*cis).into(),
                scored: k % 5 != 4,
                status,
            }
        })
        .collect();
    let mut summary = Summary::default();
    for c in &checks {
        match c.status {
            Status::Pass => summary.pass += 1,
            Status::Fail => summary.fail += 1,
            Status::Warn => summary.warn += 1,
            Status::Error => summary.error += 1,
        }
    }
    let digest = hex(i, 1);
    // About one node in ten has been silent for more than 3 intervals.
    let received_at = NOW - (i % 1_000) as i64;
    let envelope = format!(
        "{{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"{}\",\
         \"signatures\":[{{\"keyid\":\"{key_id}\",\"sig\":\"{}\"}}]}}",
        hex(i, 2).repeat(2),
        hex(i, 3)
    )
    .into_bytes();
    Accepted {
        node: format!("node-{i:06}"),
        key_id: key_id.to_owned(),
        digest,
        sequence: 1,
        previous: None,
        received_at,
        scan_time: "2025-06-15T15:06:40Z".into(),
        interval_secs: INTERVAL,
        envelope,
        kind: AcceptedKind::Full {
            posture: hex(i, 4),
            summary,
            checks,
        },
    }
}

/// Times `f` `runs` times (after one warm-up call) and returns the median and the answer.
fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut answer = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        answer = f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times[runs / 2], answer))
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// One fleet read: its name, how many runs, and what it does on a store.
type Read = (
    &'static str,
    usize,
    fn(&dyn Store) -> anyhow::Result<String>,
);

/// The answers are compared through their `Debug` text (every type here derives `PartialEq`
/// and `Debug` the same way, so equal texts are equal values), hashed so that 100,000 rows
/// need not be kept twice.
fn digest<T: std::fmt::Debug>(value: &T) -> String {
    use sha2::{Digest as _, Sha256};
    let text = format!("{value:?}");
    format!(
        "{:x} ({} bytes of Debug)",
        Sha256::digest(text.as_bytes()),
        text.len()
    )
}

const SINCE: i64 = NOW - 3_600;

const READS: &[Read] = &[
    ("fleet_summary (counters)", 20, |s| {
        Ok(digest(&s.fleet_summary(NOW)?))
    }),
    ("stale_nodes", 5, |s| Ok(digest(&s.stale_nodes(NOW)?))),
    ("failing_checks", 5, |s| Ok(digest(&s.failing_checks()?))),
    ("list_nodes", 5, |s| Ok(digest(&s.list_nodes()?))),
    ("exceptions", 20, |s| Ok(digest(&s.exceptions()?))),
    ("failing(\"4.2.1\") (/v1/checks/{cis} store read)", 5, |s| {
        Ok(digest(&s.failing("4.2.1")?))
    }),
    ("drift(since, limit 1000)", 20, |s| {
        Ok(digest(&s.drift(SINCE, Some(1_000))?))
    }),
    ("drift(since), every change", 3, |s| {
        Ok(digest(&s.drift(SINCE, None)?))
    }),
    (
        "GET /v1/fleet (fleet_summary + fleet::counts_from)",
        5,
        |s| {
            let summary = s.fleet_summary(NOW)?;
            let counts = fleet::counts_from(s, &summary.nodes, NOW)?;
            Ok(digest(&(summary, counts)))
        },
    ),
    (
        "fleet::read (/v1/nodes, /v1/overview, /v1/matrix)",
        5,
        |s| Ok(digest(&fleet::read(s, NOW)?)),
    ),
    ("/v1/overview (fleet::read + Overview::of)", 3, |s| {
        let view = fleet::read(s, NOW)?;
        Ok(digest(&serde_json::to_string(&Overview::of(&view, NOW))?))
    }),
    ("/v1/matrix page 1 (fleet::read + matrix::build)", 3, |s| {
        let view = fleet::read(s, NOW)?;
        let page =
            matrix::build(&view, &matrix::MatrixQuery::default()).map_err(anyhow::Error::msg)?;
        Ok(digest(&serde_json::to_string(&page)?))
    }),
];

/// The PostgreSQL fleet queries as `reads.rs` sends them (parameters written in), for
/// `EXPLAIN (ANALYZE, BUFFERS)`.
fn explained() -> Vec<(&'static str, String)> {
    let node_cols = "name, key_id, public_key, status, enrolled_at, last_sequence, \
        last_digest, last_scan_time, last_seen, interval_secs, last_full_digest, \
        last_full_sequence, posture, summary, failing";
    vec![
        (
            "failing_checks",
            "SELECT k.node, k.id, k.cis, k.status, k.since_at \
             FROM node_checks k \
             WHERE k.status IN ('fail', 'error') \
             AND NOT EXISTS (SELECT 1 FROM nodes n \
             WHERE n.name = k.node AND n.status <> 'approved')"
                .to_owned(),
        ),
        (
            "stale_nodes",
            format!(
                "SELECT name FROM ( \
                 SELECT name FROM nodes WHERE status = 'approved' \
                 AND failing_any IN (false, true) AND stale_after < {NOW} \
                 UNION ALL \
                 SELECT name FROM nodes WHERE status = 'approved' \
                 AND failing_any IN (false, true) AND stale_after IS NULL) AS s \
                 ORDER BY name COLLATE \"C\""
            ),
        ),
        ("list_nodes", format!("SELECT {node_cols} FROM nodes")),
        (
            "failing('4.2.1')",
            format!(
                "SELECT {node_cols} FROM nodes WHERE status = 'approved' AND name IN ( \
                 SELECT node FROM node_checks \
                 WHERE cis = '4.2.1' AND status IN ('fail', 'error')) \
                 ORDER BY name COLLATE \"C\""
            ),
        ),
        (
            "drift(since, None)",
            format!(
                "SELECT node, cis, from_status, to_status, at, digest \
                 FROM drift WHERE at >= {SINCE} ORDER BY at DESC, id DESC LIMIT NULL"
            ),
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut pg_server = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--db" {
            pg_server = Some(args.next().context("--db needs postgres://user@host/db")?);
        } else {
            positional.push(arg);
        }
    }
    let mut positional = positional.into_iter();
    let nodes: u64 = positional
        .next()
        .map(|n| n.parse())
        .transpose()
        .context("NODES")?
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    let path = positional
        .next()
        .map_or_else(|| tmp.path().join("fleet.db"), Into::into);
    let store = SqliteStore::open(&path)?;
    let started = Instant::now();
    let keys: Vec<String> = (0..nodes).map(|i| hex(i, 0)).collect();
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<NewNode> = chunk
            .iter()
            .map(|&i| NewNode {
                name: format!("node-{i:06}"),
                key_id: keys[i as usize].clone(),
                public_key: format!(
                    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA{}\n-----END PUBLIC KEY-----\n",
                    &keys[i as usize][..43]
                ),
            })
            .collect();
        store.enroll_many(&batch, true, NOW - 86_400)?;
    }
    let enrolled = started.elapsed();

    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..nodes {
        batch.push(report(i, &keys[i as usize]));
        if batch.len() == BATCH || i + 1 == nodes {
            store.commit(&batch)?;
            batch.clear();
        }
    }
    let committed = started.elapsed();
    let per_batch = committed / u32::try_from(nodes.div_ceil(BATCH as u64)).unwrap_or(1);

    // Two exceptions, so the reads apply them: one check everywhere, one node's check.
    for (node, cis, id) in [
        (None, "4.2.6", "kubelet-4-2-6"),
        (Some("node-000007"), "4.1.1", "kubelet-4-1-1"),
    ] {
        store.add_exception(
            &NewException {
                check_id: id.into(),
                cis: cis.into(),
                node: node.map(Into::into),
                until: NOW + 86_400,
                reason: "fleet_scale".into(),
                by: "bench".into(),
            },
            NOW - 60,
        )?;
    }
    println!("enrolled {nodes} nodes in {:.1} s", enrolled.as_secs_f64());
    println!(
        "committed {nodes} full reports of {} checks in batches of {BATCH}: {:.1} s ({:.0} ms per batch)",
        CHECKS.len(),
        committed.as_secs_f64(),
        per_batch.as_secs_f64() * 1e3
    );
    println!("nodes: {:?}", store.fleet_summary(NOW)?.nodes);
    println!(
        "SQLite file: {:.1} MiB",
        store.size_bytes()? as f64 / 1048576.0
    );
    let (_, counts) = timed(1, || Ok(fleet::counts(&store, NOW)?))?;
    let view = fleet::read(&store, NOW)?;
    anyhow::ensure!(
        counts.0 == view.counts,
        "the counts agree with the node view"
    );
    println!("view counts: {:?}", view.counts);
    drop(view);

    // (store, admin connection, database): the database is dropped last.
    let mut pg = match pg_server {
        Some(server) => {
            let db = TestDatabase::create_on(&server, "nodeproof_bench", "fleet_scale");
            let pg = PgStore::open(db.url(), db.name(), true)?;
            let started = Instant::now();
            let report = import_sqlite(&path, &pg)?;
            let mut client = postgres::Client::connect(db.url(), postgres::NoTls)?;
            client.batch_execute("VACUUM (ANALYZE)")?;
            let size: i64 = client
                .query_one("SELECT pg_database_size(current_database())", &[])?
                .get(0);
            println!(
                "copied into PostgreSQL ({} tables) and vacuumed in {:.1} s; database {:.1} MiB",
                report.tables.len(),
                started.elapsed().as_secs_f64(),
                size as f64 / 1048576.0
            );
            Some((pg, client, db))
        }
        None => None,
    };

    println!();
    println!("| read over {nodes} nodes | runs | SQLite (median) | PostgreSQL (median) |");
    println!("| --- | --- | --- | --- |");
    for (name, runs, read) in READS {
        let (lite, lite_answer) = timed(*runs, || read(&store))?;
        let pg_cell = match &pg {
            Some((pg, _, _)) => {
                let (t, answer) = timed(*runs, || read(pg))?;
                anyhow::ensure!(
                    answer == lite_answer,
                    "{name}: PostgreSQL answers {answer}, SQLite {lite_answer}"
                );
                ms(t)
            }
            None => "-".to_owned(),
        };
        println!("| {name} | {runs} | {} | {pg_cell} |", ms(lite));
    }
    if pg.is_some() {
        println!("\nevery read above gave the same answer on both stores");
    }

    if let Some((_, client, _)) = &mut pg {
        for (name, sql) in explained() {
            println!("\nEXPLAIN (ANALYZE, BUFFERS) {name}:");
            for row in client.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &[])? {
                println!("  {}", row.get::<_, String>(0));
            }
        }
    }
    Ok(())
}
