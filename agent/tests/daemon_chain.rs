//! The spool's chain, in temporary directories: statements written and read back in
//! order, unchanged scans counted as notices on their run's report, acknowledgements that
//! move the base, a restart, a full spool dropping the oldest, refusals set aside with
//! their reason, and chain errors that re-chain after the collector's last statement.

mod common;

use std::fs;

use nodeproof_agent::daemon::chain::{ChainPoint, Kind};
use nodeproof_agent::daemon::spool::{Rejection, REJECTED_DIR, STATE_FILE};
use nodeproof_proto::{sha256_hex, Predicate, Statement};
use tempfile::TempDir;

use common::*;

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
