//! Untrusted text and pending claims, through the built `nodeproof-collector` binary: what
//! an operator sees in `fleet`, `nodes list`, `nodes approve` and the server's log must not
//! be something a node or a peer wrote raw (control characters, colour codes, fake lines).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

use common::*;
use nodeproof_collector::store::{self, NodeStatus};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nodeproof-collector"))
}

fn run(db: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = binary().args(args).args(["--db", db]).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn control_characters_in_node_name_are_escaped_in_fleet_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let s = store::open(&db).unwrap();
    // The HTTP API refuses such names; the database may still hold one (an older version,
    // another backend, a hand edit), and the key id column too.
    let agent = TestAgent::new("x", 1);
    let evil = "node\u{1b}[2J\u{1b}[H\rall compliant\u{7}\nfake-node approved";
    s.enroll(evil, "key\u{1b}[31m", &agent.public_pem(), true, 0)
        .unwrap();
    drop(s);
    for args in [&["fleet"][..], &["nodes", "list"]] {
        let (code, stdout, stderr) = run(&db, args);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!has_control(&stdout), "{args:?}: {stdout:?}");
        assert!(stdout.contains("node\\u{1b}[2J"), "{stdout}");
        assert!(
            !stdout.lines().any(|l| l.starts_with("fake-node")),
            "an injected line: {stdout}"
        );
    }
}

#[test]
fn nodes_approve_shows_the_claim_and_key_id_makes_it_approve_only_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let s = store::open(&db).unwrap();
    let agent = TestAgent::new("node-1", 1);
    s.enroll("node-1", &agent.key_id(), &agent.public_pem(), false, 0)
        .unwrap();
    s.set_claim_source("node-1", &agent.key_id(), "198.51.100.4:40000")
        .unwrap();
    drop(s);

    let other = TestAgent::new("node-1", 2).key_id();
    let (code, _, stderr) = run(&db, &["nodes", "approve", "node-1", "--key-id", &other]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&agent.key_id()), "{stderr}");
    assert!(stderr.contains("198.51.100.4:40000"), "{stderr}");
    let s = store::open(&db).unwrap();
    assert_eq!(
        s.node("node-1").unwrap().unwrap().status,
        NodeStatus::Pending
    );
    drop(s);

    let (code, _, stderr) = run(
        &db,
        &["nodes", "approve", "node-1", "--key-id", &agent.key_id()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let s = store::open(&db).unwrap();
    assert_eq!(
        s.node("node-1").unwrap().unwrap().status,
        NodeStatus::Approved
    );
}

#[test]
fn squatters_claim_is_shown_next_to_the_real_one_and_approve_needs_a_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let s = store::open(&db).unwrap();
    let squatter = TestAgent::new("node-7", 66);
    let real = TestAgent::new("node-7", 7);
    s.enroll(
        "node-7",
        &squatter.key_id(),
        &squatter.public_pem(),
        false,
        0,
    )
    .unwrap();
    s.set_claim_source("node-7", &squatter.key_id(), "203.0.113.66:1")
        .unwrap();
    s.add_claim(
        "node-7",
        &real.key_id(),
        &real.public_pem(),
        "10.0.0.7:4000",
        60,
    )
    .unwrap();
    drop(s);

    let (code, stdout, stderr) = run(&db, &["nodes", "list"]);
    assert_eq!(code, Some(0), "{stderr}");
    for want in [
        squatter.key_id(),
        real.key_id(),
        "203.0.113.66:1".into(),
        "10.0.0.7:4000".into(),
        "1970-01-01T00:01:00Z".into(),
        "--key-id".into(),
    ] {
        assert!(stdout.contains(&want), "{want} in {stdout}");
    }

    let (code, _, stderr) = run(&db, &["nodes", "approve", "node-7"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("2 pending claims"), "{stderr}");
    assert!(stderr.contains("--key-id"), "{stderr}");
    assert!(
        stderr.contains("203.0.113.66:1") && stderr.contains("10.0.0.7:4000"),
        "{stderr}"
    );
    let s = store::open(&db).unwrap();
    assert_eq!(s.pending_claims().unwrap().len(), 2, "nothing changed");
    drop(s);

    let (code, _, stderr) = run(
        &db,
        &["nodes", "approve", "node-7", "--key-id", &real.key_id()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let dropped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("dropped:"))
        .collect();
    assert_eq!(dropped.len(), 1, "{stderr}");
    assert!(dropped[0].contains(&squatter.key_id()), "{stderr}");
    let s = store::open(&db).unwrap();
    let node = s.node("node-7").unwrap().unwrap();
    assert_eq!(
        (node.key_id, node.status),
        (real.key_id(), NodeStatus::Approved)
    );
    assert!(s.pending_claims().unwrap().is_empty());
}

#[test]
fn nodes_delete_frees_a_revoked_name_but_not_an_approved_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let s = store::open(&db).unwrap();
    let old = TestAgent::new("node-1", 1);
    s.enroll("node-1", &old.key_id(), &old.public_pem(), true, 0)
        .unwrap();
    drop(s);
    let (code, _, stderr) = run(&db, &["nodes", "delete", "node-1"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("revoke it first"), "{stderr}");
    assert_eq!(run(&db, &["nodes", "revoke", "node-1"]).0, Some(0));
    let (code, _, stderr) = run(&db, &["nodes", "delete", "node-1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let s = store::open(&db).unwrap();
    let new = TestAgent::new("node-1", 2);
    let node = s
        .enroll("node-1", &new.key_id(), &new.public_pem(), true, 1)
        .unwrap();
    assert_eq!(node.key_id, new.key_id(), "the name was reissued");
}

/// A raw HTTP/1.1 POST on a plain socket; returns the status line.
fn post(addr: &str, path: &str, body: &[u8]) -> String {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket.write_all(body).unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn rejection_log_names_the_peer_and_escapes_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut child = binary()
        .args(["serve", "--init", "--listen", "127.0.0.1:0", "--db", &db])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    // A payload type that would recolour the terminal and forge a log line.
    let forged = "x\u{1b}[32m\n2026-01-01T00:00:00Z  INFO report accepted node=node-1";
    let envelope = serde_json::json!({
        "payloadType": forged,
        "payload": "e30=",
        "signatures": [{"keyid": "k", "sig": "AAAA"}],
    });
    let status = post(
        &addr,
        "/v1/reports",
        &serde_json::to_vec(&envelope).unwrap(),
    );
    assert!(status.contains("422"), "{status}");
    let enrolment = serde_json::json!({
        "payloadType": forged,
        "payload": "e30=",
        "signatures": [],
    });
    let status = post(
        &addr,
        "/v1/enroll",
        &serde_json::to_vec(&enrolment).unwrap(),
    );
    assert!(status.contains("422"), "{status}");

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}");

    // stderr is a pipe: no colour codes, and nothing a peer sent raw.
    assert!(!rest.contains('\u{1b}'), "{rest:?}");
    let rejected: Vec<&str> = rest.lines().filter(|l| l.contains("rejected")).collect();
    assert_eq!(rejected.len(), 2, "{rest}");
    for line in &rejected {
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        // The peer's text is there, escaped (one way or another), on the same line.
        assert!(line.contains("u{1b}[32m"), "{line}");
        assert!(line.contains("INFO report accepted"), "{line}");
    }
    assert!(
        !rest.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line: {rest}"
    );
}
