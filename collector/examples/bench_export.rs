//! Fills a SQLite store for the export benchmark: NODES nodes, each with REPORTS/NODES
//! full reports chained one after the other, every one a real signed envelope (the agent
//! library scans the bundled sample node through a fake /proc once, as `bench_ingest` does;
//! about 19 KB signed). The reports go through the collector's own decision
//! (`accept::decide`) and `Store::commit` in batches, with no HTTP, so 100,000 take
//! minutes, not hours. Scan times are 5 minutes apart and end before now, so every report
//! is in any export's range. Prints what it stored.
//!
//! `scripts/bench-export` runs it and times `nodeproof-collector export` and `verify` on
//! the result (docs/benchmarks.md):
//!
//!   cargo run --release -p nodeproof-collector --example bench_export -- DB_FILE REPORTS NODES

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_collector::accept::{self, Outcome, Policy};
use nodeproof_collector::store;
use nodeproof_proto::{keyid, sha256_hex, sign_statement, verifying_key_to_pem, Link, Status};

const BATCH: usize = 64;
const INTERVAL: i64 = 300;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, reports, nodes] = args.as_slice() else {
        bail!("usage: bench_export DB_FILE REPORTS NODES (REPORTS a multiple of NODES)");
    };
    let db = PathBuf::from(db);
    let reports: usize = reports.parse().context("REPORTS")?;
    let nodes: usize = nodes.parse().context("NODES")?;
    if nodes == 0 || reports % nodes != 0 {
        bail!("REPORTS ({reports}) must be a multiple of NODES ({nodes}), NODES at least 1");
    }
    if db.exists() {
        bail!(
            "{} exists: the benchmark fills a new database",
            db.display()
        );
    }
    let per_node = reports / nodes;
    let tmp = tempfile::tempdir()?;

    // One real report, from the sample node.
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/examples/sample-node");
    let root = std::fs::canonicalize(node_dir.join("root"))?;
    let argv_text = std::fs::read_to_string(node_dir.join("cmdline"))?;
    let argv: Vec<&str> = argv_text.lines().filter(|l| !l.is_empty()).collect();
    let proc_dir = tmp.path().join("proc");
    let fake = FakeProc::new(&proc_dir)?;
    fake.process(4242, "kubelet", &argv)?.root(&root)?;
    let snap = scan::collect(&ScanOptions {
        proc_dir: proc_dir.clone(),
        pid: None,
        kubelet_version: None,
        probe: false,
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let first_scan = now - per_node as i64 * INTERVAL;
    let base = scan::assemble(&snap, rfc3339(first_scan)?);

    let started = Instant::now();
    let store = store::open(&format!("sqlite://{}", db.display()))
        .with_context(|| format!("open {}", db.display()))?;
    let policy = Policy::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut bytes = 0u64;
    for n in 0..nodes {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let name = format!("bench-node-{n:05}");
        let pem = verifying_key_to_pem(&key.verifying_key())?;
        let mut record = store.enroll(
            &name,
            &keyid(&key.verifying_key()),
            &pem,
            true,
            first_scan - 60,
        )?;
        for i in 0..per_node as i64 {
            let scanned = first_scan + i * INTERVAL;
            let mut report = base.clone();
            report.scan_time = rfc3339(scanned)?;
            report.link = Some(Link {
                node: name.clone(),
                sequence: record.last_sequence + 1,
                previous: record.last_digest.clone(),
                interval_secs: INTERVAL as u64,
            });
            // A posture change every tenth scan: anonymous auth flips.
            if i % 10 == 9 {
                report.checks[0].status = match report.checks[0].status {
                    Status::Pass => Status::Fail,
                    _ => Status::Pass,
                };
            }
            let statement = scan::statement(&report);
            let envelope = sign_statement(&statement, &key)?.to_json_bytes();
            let digest = sha256_hex(&envelope);
            let outcome = accept::decide(&record, &statement, &digest, scanned + 1, &policy, false)
                .map_err(|r| anyhow::anyhow!("{name} #{}: refused: {}", i + 1, r.message))?;
            let Outcome::New(mut accepted) = outcome else {
                bail!("{name} #{}: taken for a duplicate", i + 1);
            };
            accepted.envelope = envelope;
            bytes += accepted.envelope.len() as u64;
            accept::advance(&mut record, &accepted);
            batch.push(*accepted);
            if batch.len() == BATCH {
                store.commit(&batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.commit(&batch)?;
            batch.clear();
        }
    }
    drop(store);
    println!(
        "filled {}: {reports} reports ({} MB of envelopes) from {nodes} nodes in {:.1} s",
        db.display(),
        bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rfc3339(at: i64) -> Result<String> {
    Ok(time::OffsetDateTime::from_unix_timestamp(at)?
        .format(&time::format_description::well_known::Rfc3339)?)
}
