//! Several collectors, one PostgreSQL database, end to end: two `nodeproof-collector serve`
//! processes on different ports, real agents split between them and one node alternating
//! between both; the fleet answers are the same (and right) from either collector, a
//! revocation made once holds on both, and cutting the collector's database connections
//! under load (`pg_terminate_backend`) loses nothing that was acknowledged.
//!
//! Needs `NODEPROOF_TEST_PG` (see `store::postgres::testdb`); without it each test says it
//! was not run. Synchronisation is by events (the `listening on` line, exit codes, the
//! agents' `delivered` lines); nothing sleeps.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use nodeproof_collector::store;
use nodeproof_collector::store::postgres::testdb::TestDatabase;
use serde_json::Value;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

struct Collector {
    child: Child,
    addr: String,
}

impl Collector {
    /// `serve` on a free port of 127.0.0.1 with the database `db`.
    fn start(dir: &Path, db: &str) -> Collector {
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, ADMIN_TOKEN).expect("admin token");
        let mut child = Command::new(bin("nodeproof-collector"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
            .arg("--admin-token-file")
            .arg(&token_file)
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

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn get(&self, path: &str) -> Value {
        let out = run(Command::new("curl")
            .args(["-sS", "--fail-with-body", "-H"])
            .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
            .arg(format!("{}{path}", self.url())));
        assert!(
            out.status.success(),
            "GET {path}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(db: &str, args: &[&str]) -> std::process::Output {
    let out = run(Command::new(bin("nodeproof-collector"))
        .args(args)
        .args(["--db", db]));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// One simulated node: a fake /proc whose kubelet reads a config file, a key, a spool.
struct Node {
    name: String,
    dir: PathBuf,
    proc_dir: PathBuf,
}

impl Node {
    fn new(base: &Path, name: &str, anonymous: bool) -> Node {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let proc_dir = fake_node(
            &dir,
            &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
            &[("/var/lib/kubelet/config.yaml", &config(anonymous))],
        );
        let out = run(agent().args(["keygen", "--out"]).arg(dir.join("keys")));
        assert!(out.status.success(), "{}", stderr(&out));
        Node {
            name: name.to_string(),
            dir,
            proc_dir,
        }
    }

    fn set_anonymous(&self, anonymous: bool) {
        std::fs::write(
            self.dir.join("root/var/lib/kubelet/config.yaml"),
            config(anonymous),
        )
        .expect("config");
    }

    fn enroll(&self, collector: &str, token: &str) {
        let out = run(agent()
            .args([
                "enroll",
                "--collector",
                collector,
                "--token",
                token,
                "--key",
            ])
            .arg(self.dir.join("keys/agent.key"))
            .args(["--node-name", &self.name]));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    /// One scan and delivery attempt; the exit code and the digests acknowledged.
    fn run_once(&self, collector: &str) -> (i32, Vec<String>) {
        let out = run(agent()
            .args([
                "run",
                "--once",
                "--timeout",
                "5s",
                "--collector",
                collector,
                "--key",
            ])
            .arg(self.dir.join("keys/agent.key"))
            .args(["--node-name", &self.name, "--proc"])
            .arg(&self.proc_dir)
            .arg("--spool")
            .arg(self.dir.join("spool"))
            .args(["--retry-base", "50ms", "--retry-cap", "500ms"]));
        let delivered = stderr(&out)
            .lines()
            .filter(|l| l.contains("delivered") && l.contains("duplicate=false"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("digest="))
                    .map(str::to_owned)
            })
            .collect();
        (out.status.code().unwrap_or(-1), delivered)
    }
}

fn config(anonymous: bool) -> String {
    secure_config("").replace(
        "anonymous:\n    enabled: false",
        &format!("anonymous:\n    enabled: {anonymous}"),
    )
}

/// The nodes `/v1/checks/4.2.1/failing` names (anonymous access on).
fn failing_421(collector: &Collector) -> BTreeSet<String> {
    collector
        .get("/v1/checks/4.2.1/failing")
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn two_collectors_share_one_database() {
    let Some(db) = TestDatabase::create("two_collectors_share_one_database") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    cli(db.url(), &["init"]);
    let a = Collector::start(tmp.path(), db.url());
    let b = Collector::start(tmp.path(), db.url());
    // A token made once (through the database both use) enrols through either.
    let token = stdout(&cli(db.url(), &["token", "create", "--ttl", "1h"]))
        .trim()
        .to_string();

    let nodes: Vec<Node> = (0..4)
        .map(|i| Node::new(tmp.path(), &format!("node-{i}"), i % 2 == 1))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        let via = if i < 2 { &a } else { &b };
        n.enroll(&via.url(), &token);
        assert_eq!(n.run_once(&via.url()).0, 0, "{} delivers", n.name);
    }
    // One node alternating between the collectors, its posture changing now and then:
    // full reports and unchanged notices, each collector extending the chain the other
    // one left.
    let roamer = Node::new(tmp.path(), "roamer", false);
    roamer.enroll(&a.url(), &token);
    let mut delivered = Vec::new();
    for round in 0..8 {
        if round % 3 == 2 {
            roamer.set_anonymous(round % 2 == 0);
        }
        let via = if round % 2 == 0 { &a } else { &b };
        let (code, digests) = roamer.run_once(&via.url());
        assert_eq!(
            code, 0,
            "round {round}: the roamer delivers through {}",
            via.addr
        );
        delivered.extend(digests);
    }
    assert!(delivered.len() >= 8, "every round delivered: {delivered:?}");

    let store = store::open_existing(db.url()).expect("open");
    assert!(
        store.chain_events("roamer").expect("events").is_empty(),
        "alternating collectors never see a gap, fork or replay"
    );
    let roamer_record = store.node("roamer").expect("node").expect("roamer");
    assert_eq!(
        roamer_record.last_sequence, 8,
        "one sequence per round, none twice"
    );

    // The chain the two collectors built together holds, and the evidence export reads
    // it from PostgreSQL into a bundle that verifies (every signature, hash and chain).
    let chain = cli(db.url(), &["chain", "--node", "roamer"]);
    assert!(stdout(&chain).contains("roamer"), "{}", stdout(&chain));
    let keys = tmp.path().join("export-keys");
    let made = run(Command::new(bin("nodeproof-collector"))
        .args(["export-key", "create", "--out"])
        .arg(&keys));
    assert!(made.status.success(), "{}", stderr(&made));
    let bundle = tmp.path().join("evidence.tar.gz");
    cli(
        db.url(),
        &[
            "export",
            "--key",
            keys.join("export-key.pem").to_str().expect("utf-8 path"),
            "--out",
            bundle.to_str().expect("utf-8 path"),
        ],
    );
    let verified = run(Command::new(bin("nodeproof-collector"))
        .arg("verify")
        .arg(&bundle)
        .arg("--export-key")
        .arg(keys.join("export-key.pub.pem")));
    let said = format!("{}{}", stdout(&verified), stderr(&verified));
    assert!(verified.status.success(), "{said}");
    assert!(
        said.contains("from 5 nodes") && said.contains("OK: every signature, hash and chain holds"),
        "{said}"
    );

    // The same answers from either collector, and the right ones.
    let fleet_a = a.get("/v1/fleet");
    let fleet_b = b.get("/v1/fleet");
    assert_eq!(fleet_a, fleet_b, "both collectors give the same fleet");
    assert_eq!(fleet_a["nodes"]["total"], 5);
    let anonymous: BTreeSet<String> = ["node-1", "node-3"].iter().map(|s| s.to_string()).collect();
    assert_eq!(failing_421(&a), anonymous, "the anonymous nodes fail 4.2.1");
    assert_eq!(failing_421(&b), anonymous);

    // A revocation made once holds on both collectors, though both have served the node
    // (and remember its key).
    cli(db.url(), &["nodes", "revoke", "node-0"]);
    nodes[0].set_anonymous(true);
    for via in [&a, &b] {
        let (code, acknowledged) = nodes[0].run_once(&via.url());
        assert_ne!(code, 0, "a revoked node is refused by {}", via.addr);
        assert!(acknowledged.is_empty());
    }
    let fleet_a = a.get("/v1/fleet");
    assert_eq!(fleet_a, b.get("/v1/fleet"));
    assert_eq!(fleet_a["nodes"]["revoked"], 1);
}

/// The database's connections cut again and again while agents deliver: some requests
/// get 503 (and are sent again), every report acknowledged is stored, chains stay whole,
/// and the collector keeps serving without a restart.
#[test]
fn terminated_database_connections_lose_nothing_acknowledged() {
    let Some(db) =
        TestDatabase::create("terminated_database_connections_lose_nothing_acknowledged")
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    cli(db.url(), &["init"]);
    let collector = Collector::start(tmp.path(), db.url());
    let token = stdout(&cli(db.url(), &["token", "create", "--ttl", "1h"]))
        .trim()
        .to_string();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::new(tmp.path(), &format!("busy-{i}"), false))
        .collect();
    for n in &nodes {
        n.enroll(&collector.url(), &token);
    }
    let url = collector.url();
    let results: Vec<(Vec<String>, u64, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                let url = url.clone();
                let db = &db;
                s.spawn(move || {
                    let mut acknowledged = Vec::new();
                    let (mut terminated, mut failed) = (0, 0);
                    for round in 0..10 {
                        // A posture change every round: every report is a full report,
                        // which is never replaced, so each acknowledged digest must stay.
                        n.set_anonymous(round % 2 == 0);
                        let (code, digests) = n.run_once(&url);
                        failed += usize::from(code != 0);
                        acknowledged.extend(digests);
                        // After each attempt, cut every connection the collector has.
                        terminated += db.terminate_connections();
                    }
                    (acknowledged, terminated, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect()
    });
    let terminated: u64 = results.iter().map(|r| r.1).sum();
    assert!(terminated > 0, "the test cut connections");
    // No restart: whatever the outage left spooled is delivered now.
    for n in &nodes {
        let (code, _) = n.run_once(&url);
        assert_eq!(code, 0, "{} delivers after the outage", n.name);
    }
    let store = store::open_existing(db.url()).expect("open");
    let mut total = 0;
    for (n, (acknowledged, _, failed)) in nodes.iter().zip(&results) {
        eprintln!(
            "{}: {} acknowledged under cuts, {failed} runs not fully delivered",
            n.name,
            acknowledged.len()
        );
        for digest in acknowledged {
            assert!(
                store.envelope(digest).expect("envelope").is_some(),
                "{}: acknowledged report {digest} is stored",
                n.name
            );
        }
        assert!(store.chain_events(&n.name).expect("events").is_empty());
        let record = store.node(&n.name).expect("node").expect("exists");
        assert_eq!(
            record.last_sequence, 11,
            "{}: every scan stored once",
            n.name
        );
        total += acknowledged.len();
    }
    assert!(total > 0, "reports were acknowledged during the cuts");
    assert_eq!(collector.get("/v1/fleet")["nodes"]["total"], 3);

    // The database down (no new connection accepted, the old ones cut): requests get a
    // 503 that says what is wrong, reports are not acknowledged (they stay spooled), and
    // once the database is back the same collector serves again.
    db.set_accepting(false);
    db.terminate_connections();
    let out = run(Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
        .arg(format!("{url}/v1/fleet")));
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').expect("body and code");
    assert_eq!(code, "503", "{text}");
    let body: Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(body["error"], "database_unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("send it again")),
        "{body}"
    );
    nodes[0].set_anonymous(true);
    let (code, acknowledged) = nodes[0].run_once(&url);
    assert_ne!(
        code, 0,
        "nothing is acknowledged while the database is down"
    );
    assert!(acknowledged.is_empty());
    db.set_accepting(true);
    let (code, acknowledged) = nodes[0].run_once(&url);
    assert_eq!(
        code, 0,
        "delivered once the database is back, without a restart"
    );
    assert!(!acknowledged.is_empty());
    for digest in &acknowledged {
        assert!(store.envelope(digest).expect("envelope").is_some());
    }
}
