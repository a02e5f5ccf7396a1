//! A week of scans at a 5 minute interval (2,016) through the real parts: the agent
//! daemon (`daemon::run`, once per scan, so every scan is also a restart of the daemon on
//! its spool) scanning a fake /proc whose kubelet changes posture a few times, against the
//! real collector process on 127.0.0.1 with its SQLite file. The scan time advances through
//! the daemon's injected clock ([`ScanClock`]); the week ends just before now, so the
//! collector's own clock checks apply unchanged (with `--max-age 8d`). Includes a
//! collector outage longer than the spool, so notices are dropped and the rest re-linked.
//!
//! Then: the stored chain walks with no fault (`chain_links` + `walk`, the
//! `nodeproof-collector chain` command, and `verify` on the week's exported evidence
//! bundle), the stored rows are the full reports plus one
//! notice per run, and the storage per node-day is under 100 KB. Nothing sleeps.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::SigningKey;
use nodeproof_agent::daemon::{self, Config, ScanClock, Stopped};
use nodeproof_agent::scan::ScanOptions;
use nodeproof_collector::store;
use nodeproof_proto::chain::{walk, LinkKind};
use nodeproof_proto::{keyid, verifying_key_to_pem};

const NODE: &str = "node-1";
const SCANS: i64 = 7 * 24 * 12;
const INTERVAL: i64 = 300;
/// Scans at which the kubelet's posture flips (closed <-> open read-only port).
const CHANGES: [i64; 6] = [200, 201, 700, 1100, 1500, 1900];
/// Scans during which the collector is unreachable: longer than the spool, inside a run.
const OUTAGE: std::ops::Range<i64> = 1200..1240;
const SPOOL_MAX: usize = 16;

struct Collector {
    child: Child,
    addr: String,
}

impl Collector {
    fn start(dir: &Path, db: &str) -> Collector {
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, "week-admin-token-0123456789").expect("admin token");
        let mut child = Command::new(bin("nodeproof-collector"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
            // A week of scans arrives in seconds: the age and rate limits of a real week.
            .args(["--max-age", "8d", "--reports-per-minute", "100000"])
            .arg("--admin-token-file")
            .arg(&token_file)
            .arg("--log")
            .arg("warn,nodeproof_collector=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the collector");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the collector exited before listening")
                .expect("read stderr");
            if let Some(a) = line.split("listening on ").nth(1) {
                break a.trim().to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Collector { child, addr }
    }

    fn stop(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM")
            .success();
        assert!(ok);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "collector exit on SIGTERM: {status}");
    }
}

/// A URL where nothing listens: a port that was just free.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn posture_at(scan: i64) -> usize {
    CHANGES.iter().filter(|c| **c <= scan).count() % 2
}

fn fake_nodes(dir: &Path) -> [PathBuf; 2] {
    let closed = fake_node(
        &dir.join("closed"),
        &["/usr/bin/kubelet", "--read-only-port=0"],
        &[],
    );
    let open = fake_node(
        &dir.join("open"),
        &["/usr/bin/kubelet", "--read-only-port=10255"],
        &[],
    );
    [closed, open]
}

fn rfc3339(at: i64) -> String {
    nodeproof_collector::server::rfc3339(at)
}

#[test]
fn a_week_of_scans_stores_a_chain_with_no_gap_in_under_100_kb_a_day() {
    // In memory when the machine has a tmpfs: the week's ~10,000 fsyncs (agent spool and
    // collector commits) cost nothing there, and what is measured is the same.
    let tmp = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()),
        false => tempfile::tempdir(),
    }
    .expect("tempdir");
    let db = format!("sqlite://{}/week.db", tmp.path().display());
    let key = SigningKey::from_bytes(&[7; 32]);
    let now = nodeproof_collector::server::now_unix();
    let size_before = {
        let s = store::open(&db).expect("create the database");
        let pem = verifying_key_to_pem(&key.verifying_key()).expect("pem");
        s.enroll(NODE, &keyid(&key.verifying_key()), &pem, true, now)
            .expect("enrol");
        s.size_bytes().expect("size")
    };
    let collector = Collector::start(tmp.path(), &db);
    let url = format!("http://{}", collector.addr);
    let dead = dead_url();
    let procs = fake_nodes(tmp.path());

    // The week ends ten minutes before now.
    let start = now - SCANS * INTERVAL - 600;
    let clock = Arc::new(AtomicI64::new(start));
    let mut config = Config::new(url.clone(), key.clone(), NODE);
    config.spool_dir = tmp.path().join("spool");
    config.spool_max = SPOOL_MAX;
    config.interval = Duration::from_secs(INTERVAL as u64);
    config.once = true;
    config.once_attempts = 1;
    config.retry_base = Duration::from_millis(1);
    config.retry_cap = Duration::from_millis(2);
    let shared = Arc::clone(&clock);
    config.clock = ScanClock::from_fn(move || rfc3339(shared.load(Ordering::SeqCst)));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let began = Instant::now();
    let (mut full, mut unchanged, mut dropped, mut delivered) = (0u64, 0u64, 0u64, 0u64);
    for scan in 0..SCANS {
        clock.store(start + scan * INTERVAL, Ordering::SeqCst);
        let mut c = config.clone();
        c.scan = ScanOptions {
            proc_dir: procs[posture_at(scan)].clone(),
            pid: None,
            kubelet_version: None,
            // A fake node: its ports are not this machine's.
            probe: false,
        };
        if OUTAGE.contains(&scan) {
            c.collector = dead.clone();
        }
        let out = runtime
            .block_on(daemon::run(c, std::future::pending()))
            .expect("daemon run");
        assert_eq!(out.stopped, Stopped::Once);
        assert_eq!(
            (
                out.scans_failed,
                out.rejected,
                out.chain_errors,
                out.set_aside
            ),
            (0, 0, 0, 0),
            "scan {scan}: {out:?}"
        );
        if !OUTAGE.contains(&scan) {
            assert_eq!(out.pending, 0, "scan {scan}: everything delivered: {out:?}");
        }
        full += out.full_reports;
        unchanged += out.unchanged;
        dropped += out.dropped;
        delivered += out.delivered;
    }
    let elapsed = began.elapsed();
    collector.stop();

    // What the agent did: one statement per scan; a full report at the start and at each
    // change; the outage dropped what the spool could not hold.
    assert_eq!(full + unchanged, SCANS as u64);
    assert_eq!(full, 1 + CHANGES.len() as u64, "a full report per posture");
    assert_eq!(
        dropped,
        (OUTAGE.end - OUTAGE.start) as u64 - SPOOL_MAX as u64,
        "the outage overflowed the spool"
    );
    assert_eq!(delivered + dropped, SCANS as u64);

    let s = store::open_existing(&db).expect("open the database");
    let links = s.chain_links(NODE).expect("chain_links");
    assert_eq!(walk(None, &links), vec![], "the stored chain holds");
    // One row per full report, one per run of unchanged scans (a change right after a
    // change makes a full report without a run).
    let runs = (0..SCANS)
        .filter(|&i| i + 1 < SCANS && posture_at(i) == posture_at(i + 1))
        .filter(|&i| i == 0 || CHANGES.contains(&i))
        .count();
    assert_eq!(
        runs,
        CHANGES.len(),
        "every posture but one is followed by a run"
    );
    let fulls = links
        .iter()
        .filter(|l| matches!(l.kind, LinkKind::Full))
        .count();
    assert_eq!(fulls, 1 + CHANGES.len());
    assert_eq!(links.len(), 1 + CHANGES.len() + runs, "{links:#?}");
    assert_eq!(
        links.last().map(|l| l.sequence),
        Some(SCANS as u64 - dropped),
        "the chain stands for every scan delivered"
    );

    // The operator's command agrees.
    let out = run(Command::new(bin("nodeproof-collector")).args(["chain", "--db", &db]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{NODE}: holds")),
        "{}",
        stdout(&out)
    );

    // The auditor's side: the week exported as an evidence bundle, and `verify` (no
    // database, the export key pinned) walks every stored statement of it with no fault.
    let keys = tmp.path().join("export-keys");
    let out = run(Command::new(bin("nodeproof-collector"))
        .args(["export-key", "create", "--out"])
        .arg(&keys));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let bundle = tmp.path().join("week.tar.gz");
    let out = run(Command::new(bin("nodeproof-collector"))
        .args(["export", "--db", &db, "--key"])
        .arg(keys.join("export-key.pem"))
        .arg("--out")
        .arg(&bundle));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = run(Command::new(bin("nodeproof-collector"))
        .arg("verify")
        .arg(&bundle)
        .arg("--export-key")
        .arg(keys.join("export-key.pub.pem")));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("{} reports from 1 nodes", links.len()))
            && said.contains("signed by the pinned export key")
            && said.contains("OK: every signature, hash and chain holds"),
        "{said}"
    );

    // Storage per node-day: the database's growth over the week, and the evidence alone.
    let size_after = s.size_bytes().expect("size");
    let envelopes: usize = links
        .iter()
        .map(|l| {
            s.envelope(&l.digest)
                .expect("envelope")
                .map_or(0, |e| e.len())
        })
        .sum();
    let per_day = (size_after - size_before) / 7;
    eprintln!(
        "week: {SCANS} scans ({full} full, {unchanged} unchanged, {dropped} dropped) in \
         {elapsed:?}; {} stored statements; database {size_before} -> {size_after} bytes: \
         {per_day} bytes per node-day; envelopes {envelopes} bytes ({} per day)",
        links.len(),
        envelopes / 7
    );
    assert!(
        per_day < 100 * 1024,
        "{per_day} bytes per node-day is not under 100 KB"
    );
}
