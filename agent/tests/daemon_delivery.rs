//! The daemon's loop and delivery: `run --once` and a daemon stopped on shutdown, bad
//! settings refused, and a stand-in HTTP server on 127.0.0.1:0 in the collector's place
//! playing what the real one never sends (a captive portal, an endless body, a wrong
//! acknowledgement, a hostile message). Delivery is proven by the acknowledgement, not
//! assumed, and the live probes' verdicts reach the collector in the signed report.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nodeproof_agent::daemon::spool::Spool;
use nodeproof_agent::daemon::{self, Stopped};
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_proto::{verify, Predicate, Report};
use tempfile::TempDir;

use common::*;

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
