//! The daemon's spool and loop on real files: statements written, read back, chained,
//! dropped, set aside, re-chained and recovered after a restart or a crash, in temporary
//! directories. The real collector is tested end to end elsewhere; here a stand-in HTTP
//! server on 127.0.0.1:0 plays whatever answers in its place (a captive portal, an endless
//! body, a wrong acknowledgement, a hostile message), which the real one never sends.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nodeproof_agent::daemon::chain::{ChainPoint, Kind};
use nodeproof_agent::daemon::spool::{Rejection, Spool, SpoolError, REJECTED_DIR, STATE_FILE};
use nodeproof_agent::daemon::{self, Config, Stopped};
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_proto::{sha256_hex, signing_key_to_pem, verify, Predicate, Report, Statement};
use tempfile::TempDir;

const NODE: &str = "node-1";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A fake node whose kubelet has one of two postures (0: read-only port closed, 1: open).
fn fake_node(dir: &Path, posture: usize) -> PathBuf {
    let flag = ["--read-only-port=0", "--read-only-port=10255"][posture % 2];
    let fake = FakeProc::new(&dir.join("proc")).expect("fake proc");
    fake.node(NODE, "6.1.0", 1_700_000_000).expect("node facts");
    fake.process(4242, "kubelet", &["/usr/bin/kubelet", flag])
        .and_then(|p| p.root(&dir.join("host")))
        .expect("kubelet");
    fake.path().to_path_buf()
}

/// A report of posture 0 or 1, scanned at minute `minute`.
fn report(minute: u32, posture: usize) -> Report {
    static REPORTS: OnceLock<Vec<Report>> = OnceLock::new();
    let reports = REPORTS.get_or_init(|| {
        (0..2)
            .map(|p| {
                let tmp = TempDir::new().unwrap();
                let proc_dir = fake_node(tmp.path(), p);
                let snap = scan::collect(&ScanOptions {
                    proc_dir,
                    pid: None,
                    kubelet_version: None,
                    // A fake node: its ports are not this machine's.
                    probe: false,
                })
                .expect("scan of the fake node");
                scan::assemble(&snap, String::new())
            })
            .collect()
    });
    let mut r = reports[posture].clone();
    r.scan_time = format!("2026-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
    r
}

fn open(dir: &Path, max: usize) -> Spool {
    Spool::open(dir, NODE, key(1), max).expect("open the spool")
}

fn slot_path(spool: &Spool, slot: u64) -> PathBuf {
    spool.dir().join(format!("{slot:020}.json"))
}

/// Reads every spooled statement back as it is on disk, verifies it with `signer` and
/// checks that together they form one chain after the spool's base. True of a spool where
/// nothing left undelivered since the statements were written (or re-keyed).
fn check_chain(spool: &Spool, signer: &SigningKey) -> Vec<Statement> {
    let mut previous = spool.base().digest.clone();
    let mut sequence = spool.base().sequence;
    let mut last_full: Option<(String, u64)> = None;
    let mut out = Vec::new();
    for entry in spool.pending() {
        let bytes = fs::read(slot_path(spool, entry.slot)).expect("spooled file");
        assert_eq!(sha256_hex(&bytes), entry.digest, "slot {}", entry.slot);
        let v = verify(&bytes, &signer.verifying_key()).expect("spooled statement verifies");
        let link = v.statement.link().expect("link").clone();
        sequence += 1;
        assert_eq!(link.sequence, sequence, "sequence of slot {}", entry.slot);
        assert_eq!(entry.sequence, sequence);
        assert_eq!(link.node, NODE);
        match &v.statement.predicate {
            Predicate::Report(_) => {
                assert_eq!(link.previous, previous, "previous of slot {}", entry.slot);
                last_full = Some((entry.digest.clone(), sequence));
            }
            Predicate::Unchanged(u) => {
                // The chain rule: a notice links to its run's report and counts the
                // sequences since it.
                assert_eq!(
                    link.previous.as_ref(),
                    Some(&u.since),
                    "previous of slot {}",
                    entry.slot
                );
                assert_eq!(
                    u.count,
                    sequence - u.since_sequence,
                    "count of slot {}",
                    entry.slot
                );
                if let Some((d, s)) = &last_full {
                    assert_eq!(
                        (&u.since, u.since_sequence),
                        (d, *s),
                        "since of slot {}",
                        entry.slot
                    );
                }
            }
        }
        previous = Some(entry.digest.clone());
        out.push(v.statement);
    }
    out
}

/// Takes every statement off the spool as the daemon does (`head`, send, `ack_head`),
/// checking what would be sent: signed by `signer`, following the collector's last
/// statement (the base), a notice resting on the last full report acknowledged.
fn deliver_all(spool: &mut Spool, signer: &SigningKey) -> Vec<Statement> {
    let mut out = Vec::new();
    while let Some((entry, bytes)) = spool.head().unwrap() {
        assert_eq!(sha256_hex(&bytes), entry.digest);
        assert_eq!(
            fs::read(slot_path(spool, entry.slot)).unwrap(),
            bytes,
            "sent as spooled"
        );
        let v = verify(&bytes, &signer.verifying_key()).expect("sent statement verifies");
        let link = v.statement.link().expect("link").clone();
        let base = spool.base().clone();
        assert_eq!(
            link.sequence,
            base.sequence + 1,
            "sequence of slot {}",
            entry.slot
        );
        assert_eq!(entry.sequence, link.sequence);
        match &v.statement.predicate {
            Predicate::Report(_) => assert_eq!(
                link.previous, base.digest,
                "previous of slot {}",
                entry.slot
            ),
            Predicate::Unchanged(u) => {
                assert_eq!(
                    link.previous.as_ref(),
                    Some(&u.since),
                    "a notice links to its run's report: slot {}",
                    entry.slot
                );
                assert_eq!(
                    u.count,
                    link.sequence - u.since_sequence,
                    "count of slot {}",
                    entry.slot
                );
            }
        }
        assert_eq!(link.node, NODE);
        if let (Predicate::Unchanged(u), Some(acked)) = (&v.statement.predicate, spool.acked_full())
        {
            assert_eq!(
                (&u.since, u.since_sequence, &u.posture),
                (&acked.digest, acked.sequence, &acked.posture),
                "since of slot {}",
                entry.slot
            );
        }
        spool.ack_head().unwrap();
        assert!(!slot_path(spool, entry.slot).exists());
        out.push(v.statement);
    }
    out
}

fn kind_of(s: &Statement) -> &'static str {
    match s.predicate {
        Predicate::Report(_) => "report",
        Predicate::Unchanged(_) => "unchanged",
    }
}

fn count_of(s: &Statement) -> u64 {
    match &s.predicate {
        Predicate::Report(_) => 0,
        Predicate::Unchanged(u) => u.count,
    }
}

fn kinds(spool: &Spool) -> Vec<&'static str> {
    spool.pending().iter().map(|e| e.kind.name()).collect()
}

fn counts(spool: &Spool) -> Vec<u64> {
    spool
        .pending()
        .iter()
        .map(|e| match &e.kind {
            Kind::Unchanged { count, .. } => *count,
            Kind::Full { .. } => 0,
        })
        .collect()
}

fn rejection(code: &str) -> Rejection {
    Rejection {
        at: "2026-01-01T00:00:00Z".into(),
        status: Some(422),
        error: code.into(),
        message: "refused for the test".into(),
        sequence: None,
        digest: None,
    }
}

fn rejected_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir.join(REJECTED_DIR)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn stray_temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn statements_are_written_in_order_and_read_back() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    for (minute, posture) in [(0, 0), (5, 0), (10, 1)] {
        spool.append(report(minute, posture), 300).unwrap();
    }
    assert_eq!(kinds(&spool), ["report", "unchanged", "report"]);
    let statements = check_chain(&spool, &key(1));
    assert_eq!(spool.base(), &ChainPoint::GENESIS);
    assert_eq!(statements[0].link().unwrap().previous, None);
    assert_eq!(statements[2].link().unwrap().interval_secs, 300);
    // Name order is chain order; the spool directory is private.
    let slots: Vec<u64> = spool.pending().iter().map(|e| e.slot).collect();
    assert!(slots.windows(2).all(|w| w[0] < w[1]));
    assert!(stray_temp_files(&dir).is_empty());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(state["node"], NODE);
    assert_eq!(state["last_full"]["sequence"], 3);
    // The bytes read for sending are the bytes whose digest chains.
    let (head, bytes) = spool.head().unwrap().unwrap();
    assert_eq!(sha256_hex(&bytes), head.digest);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(
        sent.iter().map(kind_of).collect::<Vec<_>>(),
        ["report", "unchanged", "report"]
    );
    assert_eq!(sent[0].scan_time(), "2026-01-01T00:00:00Z");
    assert_eq!(spool.base().sequence, 3);
}

#[test]
fn unchanged_scans_count_up_and_a_change_ends_the_run() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    for minute in 0..4 {
        spool.append(report(minute * 5, 0), 300).unwrap();
    }
    spool.append(report(20, 1), 300).unwrap();
    spool.append(report(25, 1), 300).unwrap();
    assert_eq!(
        kinds(&spool),
        [
            "report",
            "unchanged",
            "unchanged",
            "unchanged",
            "report",
            "unchanged"
        ]
    );
    assert_eq!(counts(&spool), [0, 1, 2, 3, 0, 1]);
    let statements = check_chain(&spool, &key(1));
    let Predicate::Unchanged(u) = &statements[3].predicate else {
        panic!("a notice")
    };
    assert_eq!(u.first_unchanged, "2026-01-01T00:05:00Z");
    assert_eq!(u.scan_time, "2026-01-01T00:15:00Z");
    assert_eq!(u.posture, report(0, 0).posture_digest());
    assert_eq!(u.summary, report(0, 0).summary);
    assert_eq!(
        spool.run().map(|r| r.count),
        Some(1),
        "the run after the change starts again"
    );
}

#[test]
fn an_acknowledged_statement_becomes_the_base_and_leaves_the_spool() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    spool.append(report(0, 0), 300).unwrap();
    spool.append(report(5, 1), 300).unwrap();
    let first = spool.pending()[0].clone();
    spool.ack_head().unwrap();
    assert!(!slot_path(&spool, first.slot).exists());
    assert_eq!(
        spool.base(),
        &ChainPoint {
            sequence: 1,
            digest: Some(first.digest.clone())
        }
    );
    spool.append(report(10, 1), 300).unwrap();
    check_chain(&spool, &key(1));
    assert_eq!(spool.pending()[1].sequence, 3);
}

#[test]
fn a_restart_continues_the_chain_and_the_run() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let (full_digest, second_digest) = {
        let mut spool = open(&dir, 100);
        spool.append(report(0, 0), 300).unwrap();
        spool.append(report(5, 0), 300).unwrap();
        let d = (
            spool.pending()[0].digest.clone(),
            spool.pending()[1].digest.clone(),
        );
        spool.ack_head().unwrap();
        d
    };
    let mut spool = open(&dir, 100);
    assert_eq!(spool.pending().len(), 1);
    assert_eq!(spool.pending()[0].digest, second_digest, "bytes untouched");
    spool.append(report(10, 0), 300).unwrap();
    check_chain(&spool, &key(1));
    assert_eq!(counts(&spool), [1, 2]);
    assert_eq!(spool.last_full().unwrap().digest, full_digest);
    // Everything delivered, then a restart: the next unchanged scan still points at the
    // delivered report.
    spool.ack_head().unwrap();
    spool.ack_head().unwrap();
    drop(spool);
    let mut spool = open(&dir, 100);
    assert!(spool.is_empty());
    let appended = spool.append(report(15, 0), 300).unwrap();
    assert_eq!(appended.entry.sequence, 4);
    match &appended.entry.kind {
        Kind::Unchanged {
            since,
            since_sequence,
            count,
            first_unchanged,
            ..
        } => {
            assert_eq!((since, *since_sequence, *count), (&full_digest, 1, 3));
            assert_eq!(first_unchanged, "2026-01-01T00:05:00Z");
        }
        other => panic!("expected a notice, got {other:?}"),
    }
    check_chain(&spool, &key(1));
}

#[test]
fn a_full_spool_drops_the_oldest_and_rechains() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 3);
    let mut dropped = 0;
    for i in 0..5 {
        // Alternate postures: every statement is a full report.
        dropped += spool
            .append(report(i * 5, (i % 2) as usize), 300)
            .unwrap()
            .dropped;
    }
    assert_eq!(dropped, 2);
    assert_eq!(spool.pending().len(), 3);
    assert_eq!(spool.dropped_total(), 2);
    let seqs: Vec<u64> = spool.pending().iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let note = spool
        .last_drop()
        .cloned()
        .expect("the drop is noted in the state");
    let files = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().len() == 25)
        .count();
    assert_eq!(files, 3, "only three statement files are left");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(state["dropped_total"], 2);
    // The three newest scans survive, sent as 1..3 after the (genesis) base.
    let statements = deliver_all(&mut spool, &key(1));
    let times: Vec<&str> = statements.iter().map(|s| s.scan_time()).collect();
    assert_eq!(
        times,
        [
            "2026-01-01T00:10:00Z",
            "2026-01-01T00:15:00Z",
            "2026-01-01T00:20:00Z"
        ]
    );
    assert_eq!(note.count, 1);
    assert_eq!(note.first_scan, "2026-01-01T00:05:00Z");
}

#[test]
fn a_full_spool_keeps_the_report_that_notices_rest_on() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 3);
    for i in 0..6 {
        spool.append(report(i * 5, 0), 300).unwrap();
    }
    // The full report stays; the oldest notices go. The rest follow the report without
    // a gap, so each notice counts the sequences since the report (the chain rule); the
    // dropped scans are in dropped_total, not in the count.
    assert_eq!(kinds(&spool), ["report", "unchanged", "unchanged"]);
    assert_eq!(spool.dropped_total(), 3);
    let statements = deliver_all(&mut spool, &key(1));
    assert_eq!(statements[0].scan_time(), "2026-01-01T00:00:00Z");
    assert_eq!(
        statements.iter().map(count_of).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let Predicate::Unchanged(u) = &statements[2].predicate else {
        panic!()
    };
    assert_eq!(u.first_unchanged, "2026-01-01T00:05:00Z");
}

#[test]
fn a_spool_of_one_sends_a_full_report_when_its_base_must_go() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 1);
    spool.append(report(0, 0), 300).unwrap();
    let appended = spool.append(report(5, 0), 300).unwrap();
    assert_eq!(appended.dropped, 1);
    assert_eq!(kinds(&spool), ["report"]);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent[0].scan_time(), "2026-01-01T00:05:00Z");
}

#[test]
fn a_refused_statement_is_set_aside_with_its_reason_and_the_rest_rechained() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    for (i, p) in [0, 1, 0].iter().enumerate() {
        spool.append(report(i as u32 * 5, *p), 300).unwrap();
    }
    let head = spool.pending()[0].clone();
    let head_bytes = fs::read(slot_path(&spool, head.slot)).unwrap();
    assert_eq!(spool.reject_head(&rejection("clock_skew")).unwrap(), 1);
    let names = rejected_files(&dir);
    let file = format!("{:020}.json", head.slot);
    let reason = format!("{:020}.reason.json", head.slot);
    assert_eq!(names, [file.clone(), reason.clone()]);
    assert_eq!(
        fs::read(dir.join(REJECTED_DIR).join(&file)).unwrap(),
        head_bytes,
        "set aside byte for byte"
    );
    let why: Rejection =
        serde_json::from_slice(&fs::read(dir.join(REJECTED_DIR).join(&reason)).unwrap()).unwrap();
    assert_eq!(why.error, "clock_skew");
    assert_eq!(why.status, Some(422));
    assert_eq!(why.sequence, Some(1));
    assert_eq!(why.digest.as_deref(), Some(head.digest.as_str()));
    assert_eq!(spool.rejected_total(), 1);
    // The two that were behind it now start the chain.
    assert_eq!(spool.pending().len(), 2);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent[0].scan_time(), "2026-01-01T00:05:00Z");
}

#[test]
fn a_refused_report_takes_the_notices_resting_on_it() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    for (i, p) in [0, 0, 0, 1].iter().enumerate() {
        spool.append(report(i as u32 * 5, *p), 300).unwrap();
    }
    assert_eq!(spool.reject_head(&rejection("bad_statement")).unwrap(), 3);
    assert_eq!(kinds(&spool), ["report"]);
    assert_eq!(rejected_files(&dir).len(), 6);
    let why: Rejection = serde_json::from_slice(
        &fs::read(
            dir.join(REJECTED_DIR)
                .join(format!("{:020}.reason.json", 2)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(why.error, "base_rejected");
    assert!(why.message.contains("bad_statement"), "{}", why.message);
    assert_eq!(spool.last_full().unwrap().sequence, 1);
    deliver_all(&mut spool, &key(1));
}

#[test]
fn after_the_last_report_is_refused_the_next_scan_is_sent_in_full() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    spool.append(report(0, 0), 300).unwrap();
    spool.reject_head(&rejection("too_old")).unwrap();
    assert!(spool.last_full().is_none());
    let appended = spool.append(report(5, 0), 300).unwrap();
    assert!(appended.entry.kind.is_full());
    assert_eq!(appended.entry.sequence, 1);
}

#[test]
fn an_unknown_base_sets_aside_its_run_and_the_next_scan_is_full() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    for i in 0..3 {
        spool.append(report(i * 5, 0), 300).unwrap();
    }
    spool.ack_head().unwrap(); // the full report was delivered
    assert_eq!(
        spool.reject_head_run(&rejection("unknown_base")).unwrap(),
        2
    );
    assert!(spool.is_empty());
    assert!(spool.last_full().is_none());
    let appended = spool.append(report(15, 0), 300).unwrap();
    assert!(appended.entry.kind.is_full());
    assert_eq!(appended.entry.sequence, 2);
    deliver_all(&mut spool, &key(1));
}

#[test]
fn a_chain_error_rechains_after_the_collectors_last() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    for i in 0..3 {
        spool.append(report(i * 5, 0), 300).unwrap();
    }
    let theirs = ChainPoint {
        sequence: 41,
        digest: Some("c".repeat(64)),
    };
    assert_eq!(spool.rebase(theirs.clone()).unwrap(), 0);
    assert_eq!(spool.base(), &theirs);
    assert_eq!(spool.last_full().unwrap().sequence, 42);
    // The next statement continues from there.
    let appended = spool.append(report(15, 0), 300).unwrap();
    assert_eq!(appended.entry.sequence, 45);
    // Each goes out re-linked; the notices rest on their re-signed report.
    let statements = deliver_all(&mut spool, &key(1));
    assert_eq!(statements[0].link().unwrap().sequence, 42);
    assert_eq!(
        statements[0].link().unwrap().previous.as_deref(),
        Some("c".repeat(64).as_str())
    );
    assert_eq!(
        statements.iter().map(count_of).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(spool.base().sequence, 45);
}

#[test]
fn a_chain_error_naming_one_of_ours_counts_it_delivered() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    for i in 0..3 {
        spool.append(report(i * 5, (i % 2) as usize), 300).unwrap();
    }
    let second = spool.pending()[1].clone();
    let third = spool.pending()[2].clone();
    let found = spool
        .rebase(ChainPoint {
            sequence: second.sequence,
            digest: Some(second.digest.clone()),
        })
        .unwrap();
    assert_eq!(found, 2);
    assert_eq!(spool.pending().len(), 1);
    let (head, _) = spool.head().unwrap().unwrap();
    assert_eq!(head.digest, third.digest, "untouched: it already fits");
    deliver_all(&mut spool, &key(1));
}

#[test]
fn notices_behind_a_report_found_delivered_rest_on_it() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    for i in 0..3 {
        spool.append(report(i * 5, 0), 300).unwrap();
    }
    let full = spool.pending()[0].clone();
    // The collector stored the report but its answer was lost; a chain error names it.
    let found = spool
        .rebase(ChainPoint {
            sequence: 1,
            digest: Some(full.digest.clone()),
        })
        .unwrap();
    assert_eq!(found, 1);
    assert_eq!(
        spool.acked_full().map(|f| (f.digest.as_str(), f.sequence)),
        Some((full.digest.as_str(), 1))
    );
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent.iter().map(count_of).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn a_chain_error_naming_a_former_digest_is_recognised() {
    let tmp = TempDir::new().unwrap();
    let mut spool = open(&tmp.path().join("spool"), 100);
    for i in 0..2 {
        spool
            .append(report(i * 5, 1 - (i % 2) as usize), 300)
            .unwrap();
    }
    let old_head = spool.pending()[0].digest.clone();
    // Re-chained elsewhere: the head is re-signed on its way out, its digest changes ...
    spool
        .rebase(ChainPoint {
            sequence: 10,
            digest: Some("a".repeat(64)),
        })
        .unwrap();
    let (head, _) = spool.head().unwrap().unwrap();
    assert_ne!(head.digest, old_head);
    assert_eq!(head.sequence, 11);
    // ... then the collector turns out to have had the original head after all.
    let found = spool
        .rebase(ChainPoint {
            sequence: 1,
            digest: Some(old_head),
        })
        .unwrap();
    assert_eq!(found, 1);
    assert_eq!(spool.pending().len(), 1);
    deliver_all(&mut spool, &key(1));
}

#[test]
fn a_damaged_statement_is_set_aside_on_open_and_the_chain_repaired() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let slot = {
        let mut spool = open(&dir, 100);
        for i in 0..3 {
            spool.append(report(i * 5, (i % 2) as usize), 300).unwrap();
        }
        spool.pending()[1].slot
    };
    // Flip a byte inside the payload: the signature no longer verifies.
    let path = dir.join(format!("{slot:020}.json"));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    fs::write(&path, &bytes).unwrap();
    let mut spool = open(&dir, 100);
    assert_eq!(spool.pending().len(), 2);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent[1].scan_time(), "2026-01-01T00:10:00Z");
    let why: Rejection = serde_json::from_slice(
        &fs::read(
            dir.join(REJECTED_DIR)
                .join(format!("{slot:020}.reason.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(why.error, "damaged");
}

#[test]
fn a_statement_changed_after_open_is_caught_before_sending() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(0, 0), 300).unwrap();
    spool.append(report(5, 1), 300).unwrap();
    let head = spool.pending()[0].clone();
    fs::write(slot_path(&spool, head.slot), b"{}").unwrap();
    let (next, _) = spool.head().unwrap().expect("the next one");
    assert_eq!(next.sequence, 1, "the second statement moved up");
    assert_eq!(spool.pending().len(), 1);
    deliver_all(&mut spool, &key(1));
}

#[test]
fn a_crash_after_the_ack_before_the_delete_is_repaired() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = open(&dir, 100);
        spool.append(report(0, 0), 300).unwrap();
        spool.append(report(5, 1), 300).unwrap();
        let head = spool.pending()[0].clone();
        let bytes = fs::read(slot_path(&spool, head.slot)).unwrap();
        spool.ack_head().unwrap();
        // The state says delivered, but the file is still there.
        fs::write(slot_path(&spool, head.slot), bytes).unwrap();
    }
    let spool = open(&dir, 100);
    assert_eq!(spool.pending().len(), 1);
    assert_eq!(spool.pending()[0].sequence, 2);
    check_chain(&spool, &key(1));
}

#[test]
fn a_statement_gone_from_the_spool_is_linked_over() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = open(&dir, 100);
        for (i, p) in [0, 1, 1, 1].iter().enumerate() {
            spool.append(report(i as u32 * 5, *p), 300).unwrap();
        }
        // The head's file disappears while the daemon is down.
        let head = spool.pending()[0].slot;
        fs::remove_file(slot_path(&spool, head)).unwrap();
    }
    let mut spool = open(&dir, 100);
    assert_eq!(kinds(&spool), ["report", "unchanged", "unchanged"]);
    assert_eq!(spool.pending()[0].sequence, 1);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent[0].scan_time(), "2026-01-01T00:05:00Z");
}

#[test]
fn a_write_interrupted_before_its_rename_is_cleaned_up() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = open(&dir, 100);
        spool.append(report(0, 0), 300).unwrap();
    }
    fs::write(dir.join(".00000000000000000002.json.tmp"), b"half a statem").unwrap();
    fs::write(dir.join(".state.json.tmp"), b"{").unwrap();
    let spool = open(&dir, 100);
    assert!(stray_temp_files(&dir).is_empty());
    assert_eq!(spool.pending().len(), 1);
}

#[test]
fn a_lost_or_damaged_state_is_rebuilt_from_the_statements() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = open(&dir, 100);
        for i in 0..3 {
            spool.append(report(i * 5, 0), 300).unwrap();
        }
        spool.ack_head().unwrap();
    }
    fs::write(dir.join(STATE_FILE), b"{ not json").unwrap();
    let mut spool = open(&dir, 100);
    assert!(dir.join("state.json.damaged").exists());
    // The first spooled statement says where the chain stood.
    assert_eq!(spool.base().sequence, 1);
    assert_eq!(spool.pending().len(), 2);
    check_chain(&spool, &key(1));
    let appended = spool.append(report(15, 0), 300).unwrap();
    assert_eq!(appended.entry.sequence, 4);
    assert_eq!(
        counts(&spool),
        [1, 2, 3],
        "the run goes on from the notices"
    );
    deliver_all(&mut spool, &key(1));
}

#[test]
fn statements_of_a_previous_key_are_re_signed_with_the_new_one() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = Spool::open(&dir, NODE, key(1), 100).unwrap();
        spool.append(report(0, 0), 300).unwrap();
        spool.append(report(5, 0), 300).unwrap();
    }
    let spool = Spool::open(&dir, NODE, key(2), 100).unwrap();
    assert_eq!(spool.pending().len(), 2);
    check_chain(&spool, &key(2));
    let bytes = fs::read(slot_path(&spool, spool.pending()[0].slot)).unwrap();
    assert!(verify(&bytes, &key(1).verifying_key()).is_err());
    drop(spool);
    // Rotating again works the same way: key 2 is the recorded previous key.
    let spool = Spool::open(&dir, NODE, key(3), 100).unwrap();
    assert_eq!(spool.pending().len(), 2);
    check_chain(&spool, &key(3));
    drop(spool);
    // A key that cannot check them cannot launder them: with no record of the key that
    // signed them, they are set aside, not re-signed.
    let state_path = dir.join(STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&state_path).unwrap()).unwrap();
    state["public_key"] = serde_json::Value::String(String::new());
    state["key_id"] = serde_json::Value::String("someone-else".into());
    fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let spool = Spool::open(&dir, NODE, key(4), 100).unwrap();
    assert!(spool.is_empty());
    assert_eq!(rejected_files(&dir).len(), 4);
}

#[test]
fn a_second_daemon_on_the_same_spool_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let first = open(&dir, 100);
    let err = Spool::open(&dir, NODE, key(1), 100).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("--spool"), "{err}");
    drop(first);
    open(&dir, 100);
}

#[test]
fn a_stale_lock_is_taken_over() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir_all(&dir).unwrap();
    // A pid that cannot be running (pid_max is at most 2^22).
    fs::write(dir.join("lock"), "99999999 12345").unwrap();
    open(&dir, 100);
}

#[test]
fn a_spool_of_another_node_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    drop(open(&dir, 100));
    let err = Spool::open(&dir, "node-2", key(1), 100).unwrap_err();
    assert!(matches!(err, SpoolError::OtherNode { .. }));
    let text = err.to_string();
    assert!(text.contains("--node-name node-1"), "{text}");
    assert!(
        text.contains(&format!("mv {} {}.node-1", dir.display(), dir.display())),
        "{text}"
    );
}

#[test]
fn a_smaller_spool_max_takes_effect_on_open() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    {
        let mut spool = open(&dir, 100);
        for i in 0..5 {
            spool.append(report(i * 5, (i % 2) as usize), 300).unwrap();
        }
    }
    let mut spool = open(&dir, 2);
    assert_eq!(spool.pending().len(), 2);
    assert_eq!(spool.dropped_total(), 3);
    let sent = deliver_all(&mut spool, &key(1));
    assert_eq!(sent[0].scan_time(), "2026-01-01T00:15:00Z");
    assert!(matches!(
        Spool::open(&dir, NODE, key(1), 0),
        Err(SpoolError::ZeroMax)
    ));
}

#[test]
fn rejected_is_bounded_too() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 2);
    for i in 0..4 {
        spool.append(report(i * 5, (i % 2) as usize), 300).unwrap();
        spool.reject_head(&rejection("clock_skew")).unwrap();
    }
    // Two statements and their reasons, the newest.
    assert_eq!(
        rejected_files(&dir),
        [
            "00000000000000000003.json",
            "00000000000000000003.reason.json",
            "00000000000000000004.json",
            "00000000000000000004.reason.json"
        ]
    );
}

/// A URL where nothing listens: a port that was just free.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn config(tmp: &Path, proc_dir: PathBuf) -> Config {
    let mut c = Config::new(dead_url(), key(1), NODE);
    c.spool_dir = tmp.join("spool");
    c.scan = ScanOptions {
        proc_dir,
        pid: None,
        kubelet_version: None,
        // A fake node: its ports are not this machine's.
        probe: false,
    };
    c.retry_base = Duration::from_millis(5);
    c.retry_cap = Duration::from_millis(20);
    c.once_attempts = 2;
    c.interval = Duration::from_secs(60);
    c
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn once_with_no_collector_spools_the_scan_and_reports_it_undelivered() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let c = config(tmp.path(), proc_dir);
    let mut c1 = c.clone();
    c1.once = true;
    let outcome = block_on(daemon::run(c1.clone(), std::future::pending())).unwrap();
    assert_eq!(outcome.stopped, Stopped::Once);
    assert_eq!((outcome.full_reports, outcome.pending), (1, 1));
    assert_eq!(outcome.exit_code(), 1);
    // The next run finds the first statement spooled and chains the new scan after it.
    let outcome = block_on(daemon::run(c1, std::future::pending())).unwrap();
    assert_eq!((outcome.unchanged, outcome.pending), (1, 2));
    let spool = Spool::open(&c.spool_dir, NODE, key(1), 100).unwrap();
    assert_eq!(kinds(&spool), ["report", "unchanged"]);
    check_chain(&spool, &key(1));
}

#[test]
fn once_without_a_kubelet_sends_nothing_and_says_so() {
    let tmp = TempDir::new().unwrap();
    let fake = FakeProc::new(&tmp.path().join("proc")).unwrap();
    fake.node(NODE, "6.1.0", 1_700_000_000).unwrap();
    let mut c = config(tmp.path(), fake.path().to_path_buf());
    c.once = true;
    let outcome = block_on(daemon::run(c.clone(), std::future::pending())).unwrap();
    assert_eq!(outcome.scans_failed, 1);
    assert!(outcome.last_scan_error.is_some());
    assert_eq!(outcome.pending, 0);
    assert_eq!(outcome.exit_code(), 2);
    let spool = Spool::open(&c.spool_dir, NODE, key(1), 100).unwrap();
    assert!(spool.is_empty());
}

#[test]
fn the_daemon_stops_cleanly_on_shutdown() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let c = config(tmp.path(), proc_dir);
    let outcome = block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(daemon::run(c.clone(), async move {
            let _ = rx.await;
        }));
        // Let it scan, spool and fail to deliver a few times, then stop it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(()).unwrap();
        run.await.unwrap()
    })
    .unwrap();
    assert_eq!(outcome.stopped, Stopped::Shutdown);
    assert_eq!(outcome.cycles, 1);
    assert_eq!(outcome.pending, 1);
    assert_eq!(outcome.exit_code(), 0);
    // The lock is released and the spool consistent.
    let spool = Spool::open(&c.spool_dir, NODE, key(1), 100).unwrap();
    check_chain(&spool, &key(1));
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let mut c = config(tmp.path(), proc_dir);
    c.node = "two words".into();
    let err = block_on(daemon::run(c.clone(), std::future::pending())).unwrap_err();
    assert!(err.to_string().contains("--node-name"), "{err}");
    c.node = NODE.into();
    c.collector = "collector.example".into();
    let err = block_on(daemon::run(c.clone(), std::future::pending())).unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    c.collector = dead_url();
    c.interval = Duration::from_millis(10);
    assert!(block_on(daemon::run(c, std::future::pending())).is_err());
    assert!(!tmp.path().join("spool").exists(), "nothing created");
}

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeproof-agent"));
    // The nodes here are fake /proc trees: their ports are not this machine's.
    cmd.env("NODEPROOF_NO_PROBE", "1");
    cmd
}

fn write_key(dir: &Path) -> PathBuf {
    let path = dir.join("agent.key");
    fs::write(&path, signing_key_to_pem(&key(1)).unwrap()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn cli_run_once_exits_1_when_the_collector_is_unreachable() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let key_path = write_key(tmp.path());
    let out = agent()
        .args([
            "run",
            "--once",
            "--collector",
            &dead_url(),
            "--retry-base",
            "0s",
        ])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .arg("--spool")
        .arg(tmp.path().join("spool"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("spooled"), "{stderr}");
    assert!(stderr.contains("could not reach the collector"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no colour: {stderr}");
    // The node name came from the fake node's hostname.
    let spool = Spool::open(&tmp.path().join("spool"), NODE, key(1), 100).unwrap();
    assert_eq!(spool.pending().len(), 1);
}

#[test]
fn cli_enroll_exits_2_with_the_reason_when_the_collector_is_unreachable() {
    let tmp = TempDir::new().unwrap();
    let key_path = write_key(tmp.path());
    let out = agent()
        .args([
            "enroll",
            "--collector",
            &dead_url(),
            "--token",
            "npt_x",
            "--node-name",
            NODE,
        ])
        .arg("--key")
        .arg(&key_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not reach the collector"), "{stderr}");
}

/// `enroll --done-file`, as the DaemonSet's init container runs it on every pod start:
/// only an approval creates the file, and with the file present nothing is sent.
#[test]
fn cli_enroll_done_file_is_written_on_approval_and_skips_the_next_start() {
    let tmp = TempDir::new().unwrap();
    let key_path = write_key(tmp.path());
    let keyid = nodeproof_proto::keyid(&key(1).verifying_key());
    let answer = format!(r#"{{"node":"{NODE}","key_id":"{keyid}","status":"STATUS"}}"#);
    let enroll = |url: &str, done: &Path, token: bool| {
        let mut cmd = agent();
        cmd.args(["enroll", "--collector", url, "--node-name", NODE])
            .arg("--key")
            .arg(&key_path)
            .arg("--done-file")
            .arg(done);
        if token {
            cmd.args(["--token", "npt_x"]);
        }
        cmd.output().unwrap()
    };

    // Pending (no token): exit 3, no file, so the next start asks again.
    let pending_answer = answer.replace("STATUS", "pending");
    let pending = stand_in(move |_, _| http(201, &pending_answer));
    let done = tmp.path().join("enrolled");
    let out = enroll(&pending.url, &done, false);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!done.exists());

    // An empty token (an empty Secret) is no token: pending too, and no "token" sent.
    let out = agent()
        .args(["enroll", "--collector", &pending.url, "--node-name", NODE])
        .arg("--key")
        .arg(&key_path)
        .arg("--done-file")
        .arg(&done)
        .env("NODEPROOF_TOKEN", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the token is empty"), "{stderr}");
    let sent = pending.seen.lock().unwrap()[1].1.clone();
    let envelope = nodeproof_proto::Envelope::from_json_bytes(&sent).unwrap();
    let (payload, _) =
        nodeproof_proto::verify_signed(&envelope, &key(1).verifying_key(), &envelope.payload_type)
            .unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(!payload.contains("\"token\""), "{payload}");
    assert!(!done.exists());

    // Approved: exit 0 and the file names the node and the key.
    let approved_answer = answer.replace("STATUS", "approved");
    let approved = stand_in(move |_, _| http(201, &approved_answer));
    let out = enroll(&approved.url, &done, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(&done).unwrap(),
        format!("node: {NODE}\nkeyid: {keyid}\n")
    );
    assert_eq!(approved.requests(), 1);

    // The next start: nothing sent, exit 0, the file untouched.
    let out = enroll(&approved.url, &done, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert_eq!(approved.requests(), 1);

    // A refused token: exit 2 and still no file.
    let refused = stand_in(|_, _| {
        http(
            401,
            r#"{"error":"bad_token","message":"the token is used up"}"#,
        )
    });
    let other = tmp.path().join("other");
    let out = enroll(&refused.url, &other, true);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!other.exists());

    // A done file in a directory that does not exist: approved, but the file cannot be
    // written, so exit 2 with both facts (the next start enrols again, idempotently).
    let approved_answer = answer.replace("STATUS", "approved");
    let approved = stand_in(move |_, _| http(201, &approved_answer));
    let out = enroll(&approved.url, &tmp.path().join("missing/enrolled"), true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("approved, but --done-file"), "{stderr}");
}

/// `keygen --if-missing` creates a key once and then keeps it, but not a key it would
/// refuse to use.
#[test]
fn cli_keygen_if_missing_keeps_a_good_key_and_refuses_a_bad_one() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("key");
    let keygen = || {
        agent()
            .args(["keygen", "--if-missing", "--out"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = keygen();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = fs::read(dir.join("agent.key")).unwrap();
    let second = keygen();
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(second.stdout, first.stdout, "the same keyid");
    assert!(String::from_utf8_lossy(&second.stderr).contains("kept the existing key"));
    assert_eq!(fs::read(dir.join("agent.key")).unwrap(), before);

    fs::set_permissions(dir.join("agent.key"), fs::Permissions::from_mode(0o640)).unwrap();
    let out = keygen();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fs::write(dir.join("agent.key"), "not a key").unwrap();
    fs::set_permissions(dir.join("agent.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = keygen();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an ed25519"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(dir.join("agent.key")).unwrap(),
        b"not a key",
        "never overwritten"
    );
}

#[test]
fn cli_rotate_key_refuses_the_same_key() {
    let tmp = TempDir::new().unwrap();
    let key_path = write_key(tmp.path());
    let out = agent()
        .args([
            "rotate-key",
            "--collector",
            &dead_url(),
            "--node-name",
            NODE,
        ])
        .arg("--key")
        .arg(&key_path)
        .arg("--new-key")
        .arg(&key_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("keygen"), "{stderr}");
}

// --- A stand-in for whatever answers at the collector's URL ------------------------------

/// What the stand-in answers to one request.
enum Reply {
    /// These bytes, as the whole HTTP response.
    Raw(Vec<u8>),
    /// A 200 whose body never ends; the number of bytes written before the client hung up
    /// is sent on the channel.
    Endless(mpsc::Sender<u64>),
}

/// An HTTP/1.1 response with `body`.
fn http(status: u16, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The collector's acknowledgement of the envelope `body`.
fn ack(body: &[u8]) -> Reply {
    http(
        201,
        &format!(
            r#"{{"node":"{NODE}","sequence":1,"digest":"{}","duplicate":false}}"#,
            sha256_hex(body)
        ),
    )
}

/// (path, body) of one request.
type Request = (String, Vec<u8>);

struct Stand {
    url: String,
    /// Every request, in order.
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Stand {
    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Serves `respond` on 127.0.0.1:0, one connection at a time, in a thread that lives as
/// long as the test process. The listener is bound before this returns.
fn stand_in<F>(respond: F) -> Stand
where
    F: Fn(&str, &[u8]) -> Reply + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((path, body)) = read_request(&mut stream) else {
                continue;
            };
            log.lock().unwrap().push((path.clone(), body.clone()));
            match respond(&path, &body) {
                Reply::Raw(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Reply::Endless(tx) => {
                    let mut sent = 0u64;
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                    if stream.write_all(head.as_bytes()).is_ok() {
                        let chunk = [b'x'; 16 * 1024];
                        while stream.write_all(&chunk).is_ok() {
                            sent += chunk.len() as u64;
                        }
                    }
                    let _ = tx.send(sent);
                }
            }
        }
    });
    Stand { url, seen }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// One `run --once` against `url` with the fake node, in the library.
fn once_against(tmp: &Path, url: &str) -> daemon::RunOutcome {
    let proc_dir = fake_node(tmp, 0);
    let mut c = config(tmp, proc_dir);
    c.collector = url.to_string();
    c.once = true;
    block_on(daemon::run(c, std::future::pending())).unwrap()
}

fn spooled(tmp: &Path) -> usize {
    Spool::open(&tmp.join("spool"), NODE, key(1), 100)
        .unwrap()
        .pending()
        .len()
}

// --- Delivery is proven, not assumed ----------------------------------------------------

#[test]
fn the_collectors_ack_deletes_the_statement() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, body| ack(body));
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.pending), (1, 0), "{out:?}");
    assert_eq!(out.exit_code(), 0);
    assert_eq!(spooled(tmp.path()), 0);
}

#[test]
fn captive_portal_200_keeps_the_statement() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, _| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 44\r\n\r\n<html>Log in to the hotel wifi first</html>\n"
                .to_vec(),
        )
    });
    let out = once_against(tmp.path(), &stand.url);
    assert!(stand.requests() >= 1);
    assert_eq!((out.delivered, out.pending), (0, 1), "{out:?}");
    assert_eq!(out.exit_code(), 1);
    assert_eq!(spooled(tmp.path()), 1);
}

#[test]
fn empty_200_keeps_the_statement() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, _| http(200, ""));
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.pending), (0, 1), "{out:?}");
    assert_eq!(out.exit_code(), 1);
    assert_eq!(spooled(tmp.path()), 1);
}

#[test]
fn ack_for_another_digest_keeps_the_statement() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, _| {
        http(
            201,
            &format!(
                r#"{{"node":"{NODE}","sequence":1,"digest":"{}","duplicate":false}}"#,
                "a".repeat(64)
            ),
        )
    });
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.pending), (0, 1), "{out:?}");
    assert_eq!(out.exit_code(), 1);
    assert_eq!(spooled(tmp.path()), 1);
    // The next run, with the real acknowledgement, delivers what was kept, in order.
    let stand = stand_in(|_, body| ack(body));
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.pending), (2, 0), "{out:?}");
}

// --- Bounded answers ----------------------------------------------------------------------

#[test]
fn endless_answer_is_cut_off() {
    let (tx, rx) = mpsc::channel();
    let stand = stand_in(move |_, _| Reply::Endless(tx.clone()));
    let url = stand.url.clone();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let timeouts = daemon::Timeouts {
            connect: Duration::from_secs(5),
            // Far longer than the test waits: only the size limit can end this request.
            request: Duration::from_secs(3600),
        };
        let client =
            daemon::Collector::new(&url, &daemon::TlsOptions::default(), timeouts).unwrap();
        let _ = done_tx.send(block_on(client.send_report(b"{}".to_vec())));
    });
    let delivery = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the agent stopped reading the endless answer");
    match delivery {
        daemon::Delivery::Retry { reason, .. } => {
            assert!(reason.contains("larger than 65536 bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The connection was closed: the server's writes failed.
    let sent = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(sent >= 64 * 1024, "{sent}");
}

#[test]
fn huge_declared_answer_is_refused_unread() {
    let stand = stand_in(|_, _| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{\"node\":".to_vec())
    });
    let client = daemon::Collector::new(
        &stand.url,
        &daemon::TlsOptions::default(),
        daemon::Timeouts::default(),
    )
    .unwrap();
    match block_on(client.send_report(b"{}".to_vec())) {
        daemon::Delivery::Retry { reason, .. } => {
            assert!(reason.contains("larger than"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

// --- Untrusted text -------------------------------------------------------------------------

#[test]
fn collector_message_cannot_forge_log_lines() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let key_path = write_key(tmp.path());
    let stand = stand_in(|_, _| {
        http(
            422,
            r#"{"error":"bad_statement","message":"no\n2026-01-01T00:00:00Z  INFO delivered sequence=1 FORGED\u001b[2J\u202e"}"#,
        )
    });
    let out = agent()
        .args(["run", "--once", "--collector", &stand.url])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .arg("--spool")
        .arg(tmp.path().join("spool"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FORGED"), "the message is logged: {stderr}");
    for line in stderr.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "forged line: {line}"
        );
    }
    assert!(!stderr.contains(['\x1b', '\u{202e}']), "{stderr}");
    assert!(stderr.contains("\\u{1b}"), "{stderr}");
}

// --- Foreign files in the spool ------------------------------------------------------------

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

/// Opens the spool in a thread and waits at most a minute: a blocking open would hang.
fn open_bounded(dir: &Path) -> Spool {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    thread::spawn(move || {
        let _ = tx.send(Spool::open(&dir, NODE, key(1), 100));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the spool open blocked")
        .expect("the spool opens")
}

fn foreign_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir.join("foreign")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn fifo_named_like_a_slot_is_set_aside_without_blocking() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    drop(spool);
    // The next slot, and one the counter gave out already.
    mkfifo(&dir.join("00000000000000000002.json"));
    mkfifo(&dir.join("00000000000000000001.json.x"));
    let spool = open_bounded(&dir);
    assert_eq!(spool.pending().len(), 1);
    assert_eq!(spool.set_aside_here(), 2);
    assert_eq!(
        foreign_files(&dir),
        ["00000000000000000001.json.x", "00000000000000000002.json"]
    );
    check_chain(&spool, &key(1));
}

#[test]
fn fifo_as_the_state_or_the_lock_does_not_block() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    drop(spool);
    fs::remove_file(dir.join(STATE_FILE)).unwrap();
    mkfifo(&dir.join(STATE_FILE));
    mkfifo(&dir.join("lock"));
    let spool = open_bounded(&dir);
    // The state is rebuilt from the statement.
    assert_eq!(spool.pending().len(), 1);
    check_chain(&spool, &key(1));
}

#[test]
fn fifo_in_the_spool_does_not_stop_sigterm() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let key_path = write_key(tmp.path());
    let dir = tmp.path().join("spool");
    fs::create_dir_all(&dir).unwrap();
    mkfifo(&dir.join("00000000000000000001.json"));
    let mut child = agent()
        .args(["run", "--collector", &dead_url(), "--interval", "1h"])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .arg("--spool")
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (by reading its log) until the daemon runs: its signal handlers are in place.
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut seen = String::new();
        let mut line = String::new();
        while log.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("daemon starting") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            line.clear();
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (wtx, wrx) = mpsc::channel();
    thread::spawn(move || {
        let _ = wtx.send(child.wait());
    });
    let exit = wrx
        .recv_timeout(Duration::from_secs(60))
        .expect("the agent ignored SIGTERM")
        .unwrap();
    assert!(started.is_ok(), "the daemon never started");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_eq!(foreign_files(&dir), ["00000000000000000001.json"]);
}

#[test]
fn a_foreign_file_makes_once_exit_1() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "left here by someone").unwrap();
    let stand = stand_in(|_, body| ack(body));
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.pending, out.set_aside), (1, 0, 1));
    assert_eq!(out.exit_code(), 1);
    assert_eq!(foreign_files(&dir), ["notes.txt"]);
    // Set aside once: the next run is clean.
    let out = once_against(tmp.path(), &stand.url);
    assert_eq!((out.delivered, out.set_aside, out.exit_code()), (1, 0, 0));
}

#[test]
fn max_slot_name_does_not_pin_the_counter() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    drop(spool);
    let max = format!("{}.json", u64::MAX);
    fs::write(dir.join(&max), "not ours").unwrap();
    let mut spool = open(&dir, 100);
    assert_eq!(foreign_files(&dir), [max]);
    spool.append(report(2, 1), 300).unwrap();
    spool.append(report(3, 0), 300).unwrap();
    let slots: Vec<u64> = spool.pending().iter().map(|e| e.slot).collect();
    assert_eq!(slots, [1, 2, 3]);
    check_chain(&spool, &key(1));
}

#[test]
fn max_slot_name_without_a_state_does_not_pin_the_counter() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    drop(spool);
    fs::remove_file(dir.join(STATE_FILE)).unwrap();
    let max = format!("{}.json", u64::MAX);
    fs::write(dir.join(&max), "not ours").unwrap();
    let mut spool = open(&dir, 100);
    // Not a statement of ours: set aside as damaged, and the counter ignores it.
    assert!(
        rejected_files(&dir).contains(&max),
        "{:?}",
        rejected_files(&dir)
    );
    spool.append(report(2, 1), 300).unwrap();
    spool.append(report(3, 0), 300).unwrap();
    let slots: Vec<u64> = spool.pending().iter().map(|e| e.slot).collect();
    assert_eq!(slots, [1, 2, 3]);
    check_chain(&spool, &key(1));
}

#[test]
fn a_counter_at_its_end_is_renumbered_not_stuck() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    spool.append(report(2, 1), 300).unwrap();
    drop(spool);
    // A state whose counter was pushed to the end (edited, or copied from elsewhere).
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
    state["next_slot"] = serde_json::json!(u64::MAX);
    fs::write(dir.join(STATE_FILE), serde_json::to_vec(&state).unwrap()).unwrap();
    let mut spool = open(&dir, 100);
    assert!(spool.next_slot() < daemon::spool::SLOT_LIMIT);
    spool.append(report(3, 0), 300).unwrap();
    spool.append(report(4, 1), 300).unwrap();
    let slots: Vec<u64> = spool.pending().iter().map(|e| e.slot).collect();
    assert_eq!(slots, [1, 2, 3, 4]);
    assert_eq!(kinds(&spool).len(), 4);
    check_chain(&spool, &key(1));
}

// --- Enrolment ------------------------------------------------------------------------------

fn enroll_cli(tmp: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    let key_path = write_key(tmp);
    agent()
        .args(["enroll", "--collector", url])
        .args(extra)
        .arg("--key")
        .arg(&key_path)
        .output()
        .unwrap()
}

#[test]
fn refused_token_exits_2_with_the_collectors_message() {
    for status in [401, 403] {
        let tmp = TempDir::new().unwrap();
        let stand = stand_in(move |_, _| {
            http(
                status,
                r#"{"error":"token_expired","message":"the token expired at 2026-01-01T00:00:00Z\nstatus: approved"}"#,
            )
        });
        let out = enroll_cli(
            tmp.path(),
            &stand.url,
            &["--token", "npt_x", "--node-name", NODE],
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("the token expired at"), "{stderr}");
        assert!(stderr.contains("token create"), "{stderr}");
        assert!(
            !stderr.lines().any(|l| l.starts_with("status:")),
            "{stderr}"
        );
        assert!(
            !stdout.contains("pending") && !stdout.contains("approved"),
            "{stdout}"
        );
    }
}

#[test]
fn a_proxys_403_page_is_an_enrolment_error() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, _| {
        Reply::Raw(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nForbidden".to_vec())
    });
    let out = enroll_cli(
        tmp.path(),
        &stand.url,
        &["--token", "npt_x", "--node-name", NODE],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
}

#[test]
fn a_token_left_pending_is_not_success() {
    let tmp = TempDir::new().unwrap();
    let stand = stand_in(|_, _| {
        http(
            202,
            &format!(r#"{{"node":"{NODE}","key_id":"x","status":"pending"}}"#),
        )
    });
    let out = enroll_cli(
        tmp.path(),
        &stand.url,
        &["--token", "npt_x", "--node-name", NODE],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("token was not accepted"), "{stderr}");
    // Without a token, pending is pending: exit 3.
    let out = enroll_cli(tmp.path(), &stand.url, &["--node-name", NODE]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn token_over_plain_http_to_a_remote_address_is_warned() {
    let tmp = TempDir::new().unwrap();
    // 0.0.0.0 is not loopback by address, yet a connection to it stays on this machine
    // (and is refused at once here: nothing listens on that port).
    let port = dead_url().rsplit(':').next().unwrap().to_string();
    let out = enroll_cli(
        tmp.path(),
        &format!("http://0.0.0.0:{port}"),
        &["--token", "npt_x", "--node-name", NODE],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("warning: sending the enrolment token over plain http"),
        "{stderr}"
    );
    // To the loopback address: no warning.
    let out = enroll_cli(
        tmp.path(),
        &dead_url(),
        &["--token", "npt_x", "--node-name", NODE],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("plain http"), "{stderr}");
}

// --- Private keys ---------------------------------------------------------------------------

#[test]
fn group_readable_key_is_refused() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = fake_node(tmp.path(), 0);
    let key_path = write_key(tmp.path());
    for mode in [0o640, 0o604, 0o660, 0o666] {
        fs::set_permissions(&key_path, fs::Permissions::from_mode(mode)).unwrap();
        let spool = tmp.path().join("spool");
        for args in [
            vec!["run", "--once", "--spool", spool.to_str().unwrap()],
            vec!["enroll", "--token", "npt_x"],
        ] {
            let out = agent()
                .args(&args)
                .args(["--collector", &dead_url()])
                .arg("--key")
                .arg(&key_path)
                .arg("--proc")
                .arg(&proc_dir)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{mode:o} {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("chmod 600 {}", key_path.display())),
                "{stderr}"
            );
        }
    }
    assert!(!tmp.path().join("spool").exists(), "nothing ran");
}

// --- The node's name ------------------------------------------------------------------------

/// A fake node whose kubelet runs with `--hostname-override=Worker-7`.
fn overridden_node(dir: &Path) -> PathBuf {
    let fake = FakeProc::new(&dir.join("proc")).expect("fake proc");
    fake.node(NODE, "6.1.0", 1_700_000_000).expect("node facts");
    fake.process(
        4242,
        "kubelet",
        &["/usr/bin/kubelet", "--hostname-override= Worker-7 "],
    )
    .and_then(|p| p.root(&dir.join("host")))
    .expect("kubelet");
    fake.path().to_path_buf()
}

#[test]
fn enroll_and_run_agree_on_the_kubelets_hostname_override() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = overridden_node(tmp.path());
    let enrolled = Arc::new(Mutex::new(None::<String>));
    let names = Arc::clone(&enrolled);
    let stand = stand_in(move |path, body| {
        if path.ends_with("/v1/enroll") {
            let env = nodeproof_proto::Envelope::from_json_bytes(body).unwrap();
            let (payload, _) = nodeproof_proto::verify_signed(
                &env,
                &key(1).verifying_key(),
                nodeproof_proto::ENROLL_PAYLOAD_TYPE,
            )
            .unwrap();
            let req: nodeproof_proto::EnrollRequest = serde_json::from_slice(&payload).unwrap();
            *names.lock().unwrap() = Some(req.node.clone());
            http(
                201,
                &format!(
                    r#"{{"node":"{}","key_id":"x","status":"approved"}}"#,
                    req.node
                ),
            )
        } else {
            ack(body)
        }
    });
    let key_path = write_key(tmp.path());
    let out = agent()
        .args(["enroll", "--collector", &stand.url, "--token", "npt_x"])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .env_remove("NODEPROOF_NODE_NAME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("node name: worker-7 (from the kubelet's --hostname-override (pid 4242))"),
        "{stderr}"
    );
    assert_eq!(enrolled.lock().unwrap().as_deref(), Some("worker-7"));
    let out = agent()
        .args(["run", "--once", "--collector", &stand.url])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .arg("--spool")
        .arg(tmp.path().join("spool"))
        .env_remove("NODEPROOF_NODE_NAME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The spool's chain is worker-7's.
    assert!(Spool::open(&tmp.path().join("spool"), "worker-7", key(1), 100).is_ok());
    let (_, body) = stand.seen.lock().unwrap().last().cloned().unwrap();
    let v = verify(&body, &key(1).verifying_key()).unwrap();
    assert_eq!(v.statement.link().unwrap().node, "worker-7");
}

#[test]
fn an_explicit_node_name_wins_over_the_override() {
    let tmp = TempDir::new().unwrap();
    let proc_dir = overridden_node(tmp.path());
    let key_path = write_key(tmp.path());
    let out = agent()
        .args([
            "run",
            "--once",
            "--collector",
            &dead_url(),
            "--retry-base",
            "0s",
        ])
        .arg("--key")
        .arg(&key_path)
        .arg("--proc")
        .arg(&proc_dir)
        .arg("--spool")
        .arg(tmp.path().join("spool"))
        .env("NODEPROOF_NODE_NAME", "node-9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kubelet_registers_as=worker-7"), "{stderr}");
    assert!(Spool::open(&tmp.path().join("spool"), "node-9", key(1), 100).is_ok());
}

#[test]
fn empty_200_to_a_rotation_is_not_a_rotation() {
    let tmp = TempDir::new().unwrap();
    let old = write_key(tmp.path());
    let new = tmp.path().join("new.key");
    fs::write(&new, signing_key_to_pem(&key(2)).unwrap()).unwrap();
    fs::set_permissions(&new, fs::Permissions::from_mode(0o600)).unwrap();
    let new_id = nodeproof_proto::keyid(&key(2).verifying_key());
    let answers = [
        (http(200, ""), Some(2)),
        (
            http(
                200,
                &format!(r#"{{"node":"{NODE}","key_id":"other","status":"approved"}}"#),
            ),
            Some(2),
        ),
        (
            http(
                200,
                &format!(r#"{{"node":"{NODE}","key_id":"{new_id}","status":"approved"}}"#),
            ),
            Some(0),
        ),
    ];
    for (reply, code) in answers {
        let Reply::Raw(bytes) = reply else {
            unreachable!()
        };
        let stand = stand_in(move |_, _| Reply::Raw(bytes.clone()));
        let out = agent()
            .args(["rotate-key", "--collector", &stand.url, "--node-name", NODE])
            .arg("--key")
            .arg(&old)
            .arg("--new-key")
            .arg(&new)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), code, "{stderr}");
    }
}

#[test]
fn symlink_named_like_a_slot_is_set_aside_unread() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = open(&dir, 100);
    spool.append(report(1, 0), 300).unwrap();
    spool.append(report(2, 1), 300).unwrap();
    drop(spool);
    // Slot 1 swapped for a link to an endless file.
    let first = dir.join("00000000000000000001.json");
    fs::remove_file(&first).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &first).unwrap();
    let mut spool = open_bounded(&dir);
    assert_eq!(foreign_files(&dir), ["00000000000000000001.json"]);
    assert_eq!(spool.set_aside_here(), 1);
    // The statement behind is linked over the hole when it is sent.
    assert_eq!(kinds(&spool), ["report"]);
    assert_eq!(deliver_all(&mut spool, &key(1)).len(), 1);
}

// --- Probes in the daemon ----------------------------------------------------------------

/// A fake node whose kubelet listens on 127.0.0.1: its read-only port where a stand-in
/// answers 200 to `GET /pods` (an open read-only port), its API port where nothing
/// listens, and no healthz. Returns the fake /proc, the stand-in and the two ports.
fn probed_node(dir: &Path) -> (PathBuf, Stand, String, String) {
    let read_only = stand_in(|_, _| http(200, r#"{"kind":"PodList","items":[]}"#));
    let read_only_port = read_only.url.rsplit(':').next().unwrap().to_string();
    let api_port = dead_url().rsplit(':').next().unwrap().to_string();
    let fake = FakeProc::new(&dir.join("proc")).unwrap();
    fake.node(NODE, "6.1.0", 1_700_000_000).unwrap();
    fake.process(
        4242,
        "kubelet",
        &[
            "/usr/bin/kubelet",
            "--address=127.0.0.1",
            &format!("--port={api_port}"),
            &format!("--read-only-port={read_only_port}"),
            "--healthz-port=0",
        ],
    )
    .and_then(|p| p.root(&dir.join("host")))
    .unwrap();
    (
        fake.path().to_path_buf(),
        read_only,
        read_only_port,
        api_port,
    )
}

/// The report in the one statement `collector` received, its signature verified.
fn sent_report(collector: &Stand) -> Report {
    let sent = collector.seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one statement sent");
    let v = verify(&sent[0].1, &key(1).verifying_key()).expect("the sent statement verifies");
    match v.statement.predicate {
        Predicate::Report(report) => *report,
        _ => panic!("a full report is sent first"),
    }
}

fn find<'a>(report: &'a Report, id: &str) -> &'a nodeproof_proto::CheckResult {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} not in the sent report"))
}

/// `run` probes the kubelet's ports as `scan` does (Config::new turns probes on), and what
/// they answered is in the signed report the collector receives.
#[test]
fn run_sends_what_the_kubelets_ports_answered_in_the_signed_report() {
    let tmp = TempDir::new().unwrap();
    let (proc_dir, read_only, read_only_port, api_port) = probed_node(tmp.path());
    let collector = stand_in(|_, body| ack(body));
    let mut c = config(tmp.path(), proc_dir);
    c.scan.probe = true;
    c.collector = collector.url.clone();
    c.once = true;
    let out = block_on(daemon::run(c, std::future::pending())).unwrap();
    assert_eq!((out.delivered, out.pending), (1, 0), "{out:?}");

    // The read-only port was asked, once, for its pods.
    let asked: Vec<String> = read_only
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(asked, ["/pods"]);

    // The collector received the probe's verdicts, signed with the node's key.
    let report = sent_report(&collector);
    let ro = find(&report, "probe-read-only-port");
    assert_eq!(ro.status, nodeproof_proto::Status::Fail, "{ro:?}");
    assert_eq!(
        ro.actual,
        format!("GET http://127.0.0.1:{read_only_port}/pods: HTTP 200 OK")
    );
    // Nothing listens on the API port: not known, and the settings' 200 contradicted.
    let api = find(&report, "probe-kubelet-anonymous");
    assert_eq!(api.status, nodeproof_proto::Status::Error, "{api:?}");
    assert!(
        api.note.starts_with(&format!(
            "GET https://127.0.0.1:{api_port}/pods: connection refused"
        )),
        "{}",
        api.note
    );
    let contradiction = find(&report, "probe-contradiction");
    assert_eq!(contradiction.status, nodeproof_proto::Status::Fail);
    assert!(report
        .warnings
        .iter()
        .any(|w| w.message.starts_with("CONTRADICTION")));
    assert_eq!(
        find(&report, "probe-healthz").status,
        nodeproof_proto::Status::Pass
    );
}

/// The same through the binary: `nodeproof-agent run --once` probes by default, and
/// `--no-probe` sends no probe check and asks no port.
#[test]
fn cli_run_probes_unless_no_probe() {
    for no_probe in [false, true] {
        let tmp = TempDir::new().unwrap();
        let (proc_dir, read_only, read_only_port, _) = probed_node(tmp.path());
        let collector = stand_in(|_, body| ack(body));
        let key_path = write_key(tmp.path());
        let mut cmd = agent();
        cmd.env_remove("NODEPROOF_NO_PROBE")
            .env_remove("NODEPROOF_NODE_NAME")
            .args(["run", "--once", "--collector", &collector.url])
            .arg("--key")
            .arg(&key_path)
            .arg("--proc")
            .arg(&proc_dir)
            .arg("--spool")
            .arg(tmp.path().join("spool"));
        if no_probe {
            cmd.arg("--no-probe");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let report = sent_report(&collector);
        let probes: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.id.starts_with("probe-"))
            .map(|c| c.id.as_str())
            .collect();
        if no_probe {
            assert!(probes.is_empty(), "{probes:?}");
            assert_eq!(read_only.requests(), 0);
        } else {
            assert_eq!(
                probes,
                [
                    "probe-kubelet-anonymous",
                    "probe-read-only-port",
                    "probe-healthz",
                    "probe-contradiction"
                ]
            );
            assert_eq!(read_only.requests(), 1);
            assert_eq!(
                find(&report, "probe-read-only-port").actual,
                format!("GET http://127.0.0.1:{read_only_port}/pods: HTTP 200 OK")
            );
        }
    }
}
