//! Storage alone: commits batches of full reports with envelopes of the size the ingest
//! benchmark sends, straight through the `Store` trait on one thread (no HTTP, no
//! verification), and prints the cost per report in wall time and in CPU time of the whole
//! process (the writer and the background checkpointer).
//!   cargo run --release -p nodeproof-collector --example bench_commit [-- NODES ROUNDS BATCH]

use std::time::Instant;

use nodeproof_collector::store::conformance::{check, Agent};
use nodeproof_collector::store::sqlite::SqliteStore;
use nodeproof_collector::store::Store;
use nodeproof_proto::Status;

fn cpu_secs() -> f64 {
    // utime + stime of this process, from /proc/self/stat (fields 14 and 15), in clock
    // ticks of USER_HZ, which Linux fixes at 100 for this interface.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let nodes = args.first().copied().unwrap_or(200);
    let rounds = args.get(1).copied().unwrap_or(25);
    let batch = args.get(2).copied().unwrap_or(21);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db"))?;
    let mut agents: Vec<Agent> = (0..nodes)
        .map(|i| Agent::new(&format!("node-{i:05}")))
        .collect();
    for a in &agents {
        a.enroll(&store, true, 0);
    }
    let checks: Vec<_> = (1..=14)
        .map(|i| {
            check(
                &format!("4.2.{i}"),
                if i % 3 == 0 {
                    Status::Fail
                } else {
                    Status::Pass
                },
            )
        })
        .collect();
    let mut all = Vec::with_capacity(nodes * rounds);
    for round in 0..rounds {
        for a in agents.iter_mut() {
            let mut acc = a.full(1000 + round as i64, checks.clone());
            acc.envelope = vec![b'e'; 18_912];
            all.push(acc);
        }
    }
    let (wall, cpu) = (Instant::now(), cpu_secs());
    for chunk in all.chunks(batch) {
        store.commit(chunk)?;
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_secs() - cpu);
    let n = all.len() as f64;
    println!(
        "{} reports in batches of {batch}: {:.0} reports/s, {:.0} us wall and {:.0} us CPU per report",
        all.len(),
        n / wall,
        wall / n * 1e6,
        cpu / n * 1e6
    );
    Ok(())
}
