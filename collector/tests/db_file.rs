//! The database file under attack or accident: deleted or replaced while `serve` runs,
//! mistyped on the command line, shared by two `serve` processes, on a full disk. The
//! collector must stop acknowledging, say why, and never quietly start an empty fleet.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use common::*;
use nodeproof_collector::server::Limits;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nodeproof-collector"))
}

fn db_path(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("collector.db")
}

#[tokio::test]
async fn deleted_database_stops_acknowledging() {
    let (server, agent) = server_with_node().await;
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"]["same_file"], true);

    std::fs::remove_file(db_path(&server)).expect("delete the database");

    let next = agent.next_full();
    let (status, body) = server.post("/v1/reports", next.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("deleted"),
        "{body}"
    );
    // And it stays refused: nothing is acknowledged into the unlinked file.
    let (status, _) = server.post("/v1/reports", next).await;
    assert_eq!(status, 503);

    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"]["same_file"], false);
    let problem = body["database"]["problems"][0].as_str().unwrap();
    assert!(problem.contains("collector.db"), "{problem}");
    // Enrolment is refused too (it would write into the lost file).
    let late = TestAgent::new("node-2", 2);
    let (status, body) = server
        .post("/v1/enroll", late.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 503, "{body}");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn replaced_database_stops_acknowledging() {
    let (server, agent) = server_with_node().await;
    // Another (valid, empty) database renamed over the path: a restore gone wrong.
    let other = server.dir.path().join("other.db");
    drop(nodeproof_collector::store::open(&format!("sqlite://{}", other.display())).unwrap());
    std::fs::rename(&other, db_path(&server)).expect("replace the database");

    let (status, body) = server.post("/v1/reports", agent.next_full()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("replaced"),
        "{body}"
    );
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"]["same_file"], false);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn healthz_reports_the_database_state() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["writable"], true);
    assert_eq!(body["database"]["full"], false);
    assert!(
        body["database"]["free_bytes"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert_eq!(body["database"]["problems"], serde_json::json!([]));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn nearly_full_disk_fails_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let limits = Limits {
        // More than any disk has free.
        min_free_bytes: u64::MAX,
        ..Limits::default()
    };
    let server = TestServer::start_limited(dir, None, store, limits).await;
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"]["full"], true);
    assert_eq!(body["database"]["same_file"], true);
    assert!(
        body["database"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("--min-free-space"),
        "{body}"
    );
    server.stop().await.expect("clean stop");
}

#[test]
fn mistyped_db_is_an_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let db = format!("sqlite://{}", missing.display());
    for args in [
        vec!["fleet", "--db", &db],
        vec!["nodes", "list", "--db", &db],
        vec!["nodes", "approve", "n1", "--db", &db],
        vec!["token", "create", "--db", &db],
        vec!["serve", "--listen", "127.0.0.1:0", "--db", &db],
    ] {
        let out = binary().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&missing.display().to_string()) && stderr.contains("does not exist"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("init"),
            "{args:?} says how to create it: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[test]
fn empty_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let db = format!("sqlite://{}", path.display());
    let out = binary().args(["fleet", "--db", &db]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("empty file"), "{stderr}");
}

#[test]
fn init_creates_the_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    for _ in 0..2 {
        let out = binary().args(["init", "--db", &db]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let out = binary()
        .args(["fleet", "--db", &db, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fleet["summary"]["total"], 0, "{fleet}");
}

#[test]
fn second_serve_on_one_database_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut first = binary()
        .args(["serve", "--init", "--listen", "127.0.0.1:0", "--db", &db])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "first serve exited"
        );
        if line.contains("listening on ") {
            break;
        }
    }

    let second = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &db])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.id())) && stderr.contains("c.db.lock"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");

    let ok = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut rest = String::new();
    let _ = lines.read_to_string(&mut rest);
    assert_eq!(first.wait().unwrap().code(), Some(0), "{rest}");

    // Once the first is gone, the lock is free again.
    let lock = nodeproof_collector::store::sqlite::ServeLock::acquire(&dir.path().join("c.db"))
        .expect("the lock is released with its process");
    assert!(lock.path().ends_with("c.db.lock"));
}
