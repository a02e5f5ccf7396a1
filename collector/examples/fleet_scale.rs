//! A measurement, not a test: fills a SQLite store with a fleet (100,000 approved nodes by
//! default, each with one full report of 14 checks) and times `fleet_summary`, to back the
//! design's claim that the summary costs the same for 10 or 100,000 nodes because it reads
//! the latest-state table and counters, never the history.
//!
//! `cargo run --release -p nodeproof-collector --example fleet_scale [-- NODES [DB_PATH]]`
//! (without DB_PATH the database lives in a temporary directory and is removed).

use std::time::{Duration, Instant};

use anyhow::Context;
use nodeproof_collector::store::sqlite::{NewNode, SqliteStore};
use nodeproof_collector::store::{Accepted, AcceptedKind, CheckState, Store};
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

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: u64 = args
        .next()
        .map(|n| n.parse())
        .transpose()
        .context("NODES")?
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    let path = args
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

    let mut times: Vec<Duration> = Vec::new();
    let mut summary = store.fleet_summary(NOW)?;
    for _ in 0..20 {
        let t = Instant::now();
        summary = store.fleet_summary(NOW)?;
        times.push(t.elapsed());
    }
    times.sort();
    let median = (times[9] + times[10]) / 2;

    println!("enrolled {nodes} nodes in {:.1} s", enrolled.as_secs_f64());
    println!(
        "committed {nodes} full reports of {} checks in batches of {BATCH}: {:.1} s ({:.0} ms per batch)",
        CHECKS.len(),
        committed.as_secs_f64(),
        per_batch.as_secs_f64() * 1e3
    );
    println!("nodes: {:?}", summary.nodes);
    println!(
        "checks: {} (first: {:?})",
        summary.checks.len(),
        summary.checks.first()
    );
    println!(
        "fleet summary over {nodes} nodes: {:.2} ms (median of 20)",
        median.as_secs_f64() * 1e3
    );
    println!(
        "  min {:.2} ms, max {:.2} ms",
        times[0].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3
    );
    // The node view (what `/v1/fleet`, `/v1/nodes` and `fleet` read since exceptions): the
    // node list and the failing rows, exceptions applied in memory.
    let mut view_times: Vec<Duration> = Vec::new();
    let mut view = nodeproof_collector::server::fleet::read(&store, NOW)?;
    for _ in 0..5 {
        let t = Instant::now();
        view = nodeproof_collector::server::fleet::read(&store, NOW)?;
        view_times.push(t.elapsed());
    }
    view_times.sort();
    println!("view counts: {:?}", view.counts);
    let mut count_times: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (counts, _) = nodeproof_collector::server::fleet::counts(&store, NOW)?;
        count_times.push(t.elapsed());
        assert_eq!(counts, view.counts, "the counts agree with the node view");
    }
    count_times.sort();
    println!(
        "fleet counts (GET /v1/fleet: tallies, stale nodes, failing rows) over {nodes} nodes: {:.1} ms (median of 5)",
        count_times[2].as_secs_f64() * 1e3
    );
    println!(
        "fleet view (nodes + failures + exceptions) over {nodes} nodes: {:.1} ms (median of 5)",
        view_times[2].as_secs_f64() * 1e3
    );
    println!(
        "database size: {:.1} MiB ({} bytes)",
        store.size_bytes()? as f64 / 1048576.0,
        store.size_bytes()?
    );
    Ok(())
}
