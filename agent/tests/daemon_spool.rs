//! The spool on disk, in temporary directories: damaged, changed, missing or half-written
//! statements and a lost state repaired on open, statements re-signed after a key
//! rotation, the lock, another node's spool, the bounds, and foreign files (fifos,
//! symlinks, strays, slot names at the counter's end) set aside without blocking.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nodeproof_agent::daemon;
use nodeproof_agent::daemon::spool::{Rejection, Spool, SpoolError, REJECTED_DIR, STATE_FILE};
use nodeproof_proto::verify;
use tempfile::TempDir;

use common::*;

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
