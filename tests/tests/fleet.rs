//! The fleet end to end: a real collector process and several agents (fake /proc nodes
//! with different postures) enrol and report; the fleet view shows exactly the right nodes
//! failing the right checks; spooled reports arrive in order after an outage; and kill -9
//! of the collector loses nothing it acknowledged.
//!
//! Synchronisation is by events: the collector's `listening on` line, the agents' exit
//! codes and their `delivered` log lines. Nothing sleeps.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nodeproof_collector::store;
use serde_json::Value;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

struct Collector {
    child: Child,
    addr: String,
    db: String,
}

impl Collector {
    /// Starts `nodeproof-collector serve` on `listen` and waits for its `listening on` line.
    fn start(dir: &Path, listen: &str) -> Collector {
        let db = format!("sqlite://{}/fleet.db", dir.display());
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, ADMIN_TOKEN).expect("admin token");
        let mut child = Command::new(bin("nodeproof-collector"))
            .args([
                "serve",
                "--init",
                "--listen",
                listen,
                "--db",
                &db,
                "--admin-token-file",
            ])
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
        Collector { child, addr, db }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
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

    fn token(&self) -> String {
        let out = run(Command::new(bin("nodeproof-collector"))
            .args(["token", "create", "--db", &self.db, "--ttl", "1h"]));
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out);
        assert_eq!(token.lines().count(), 1, "token alone on stdout: {token:?}");
        token.trim().to_string()
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

    /// Runs `nodeproof-collector ARGS --db DB`.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(bin("nodeproof-collector"))
            .args(args)
            .args(["--db", &self.db]))
    }

    /// `fleet --format json --at AT`: the view at another time (the CLI's injectable clock).
    fn fleet_at(&self, at: i64) -> Value {
        let at = nodeproof_collector::server::rfc3339(at);
        let out = self.cli(&["fleet", "--format", "json", "--at", &at]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn fleet_cli(&self) -> Value {
        let out = run(Command::new(bin("nodeproof-collector"))
            .args(["fleet", "--db", &self.db, "--format", "json"]));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

/// One simulated node: a fake /proc whose kubelet reads `config`, a key, a spool.
struct Node {
    name: String,
    dir: PathBuf,
    proc_dir: PathBuf,
}

impl Node {
    fn new(base: &Path, name: &str, argv: &[&str], config: Option<&str>) -> Node {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let files: Vec<(&str, &str)> = config
            .map(|c| vec![("/var/lib/kubelet/config.yaml", c)])
            .unwrap_or_default();
        let proc_dir = fake_node(&dir, argv, &files);
        let out = run(agent().args(["keygen", "--out"]).arg(dir.join("keys")));
        assert!(out.status.success(), "{}", stderr(&out));
        Node {
            name: name.to_string(),
            dir,
            proc_dir,
        }
    }

    /// Rewrites the kubelet's config file (a posture change).
    fn set_config(&self, text: &str) {
        std::fs::write(self.dir.join("root/var/lib/kubelet/config.yaml"), text).expect("config");
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

    fn run_args(&self, collector: &str) -> Command {
        let mut cmd = agent();
        cmd.args(["run", "--collector", collector, "--key"])
            .arg(self.dir.join("keys/agent.key"))
            .args(["--node-name", &self.name, "--proc"])
            .arg(&self.proc_dir)
            .arg("--spool")
            .arg(self.dir.join("spool"))
            .args(["--retry-base", "50ms", "--retry-cap", "500ms"]);
        cmd
    }

    fn run_once(&self, collector: &str) -> i32 {
        let out = run(self.run_args(collector).args(["--once", "--timeout", "5s"]));
        out.status.code().unwrap_or(-1)
    }

    fn spooled(&self) -> usize {
        std::fs::read_dir(self.dir.join("spool"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.ends_with(".json") && n.chars().next().is_some_and(|c| c.is_ascii_digit())
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A config that passes every check (every failing check counts, Manual ones too), with
/// anonymous access switched on or off.
fn config(anonymous: bool) -> String {
    secure_config("").replace(
        "anonymous:\n    enabled: false",
        &format!("anonymous:\n    enabled: {anonymous}"),
    )
}

fn failing_by_node(fleet: &Value) -> BTreeMap<String, BTreeSet<String>> {
    fleet["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let failing = n["failing"]
                .as_array()
                .expect("failing")
                .iter()
                .map(|c| c["cis"].as_str().expect("cis").to_string())
                .collect();
            (n["name"].as_str().expect("name").to_string(), failing)
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_fleet_view_shows_exactly_which_nodes_fail_which_checks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collector = Collector::start(tmp.path(), "127.0.0.1:0");
    let token = collector.token();
    let argv_config = ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"];
    let secure = Node::new(tmp.path(), "secure", &argv_config, Some(&hardened(false)));
    let anonymous = Node::new(tmp.path(), "anonymous", &argv_config, Some(&hardened(true)));
    // No --config: the legacy flag defaults (anonymous, AlwaysAllow, no client CA).
    let legacy = Node::new(
        tmp.path(),
        "legacy",
        &[
            "/usr/bin/kubelet",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
        ],
        None,
    );
    for n in [&secure, &anonymous, &legacy] {
        n.enroll(&collector.url(), &token);
        assert_eq!(n.run_once(&collector.url()), 0, "{} delivers", n.name);
        assert_eq!(n.spooled(), 0);
    }

    let fleet = collector.fleet_cli();
    let failing = failing_by_node(&fleet);
    assert_eq!(failing["secure"], set(&[]));
    assert_eq!(failing["anonymous"], set(&["4.2.1"]));
    // The legacy node fails Manual checks too (as `warn` or `fail`, depending on the
    // agent); its Automated failures are exactly these.
    let automated: BTreeSet<String> = failing["legacy"]
        .iter()
        .filter(|cis| {
            nodeproof_proto::CHECKS
                .iter()
                .any(|c| c.cis == cis.as_str() && c.scored)
        })
        .cloned()
        .collect();
    assert_eq!(automated, set(&["4.2.1", "4.2.2", "4.2.3", "4.2.10"]));
    let check = |fleet: &Value, cis: &str| -> (u64, u64) {
        let c = fleet["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["cis"] == cis)
            .cloned()
            .expect("check");
        (
            c["pass"].as_u64().expect("pass"),
            c["fail"].as_u64().expect("fail"),
        )
    };
    assert_eq!(check(&fleet, "4.2.1"), (1, 2));
    assert_eq!(check(&fleet, "4.2.2"), (2, 1));

    // The HTTP view says the same, and needs the admin token.
    let http = collector.get("/v1/fleet");
    assert_eq!(http["nodes"]["total"], 3);
    assert_eq!(http["nodes"]["compliant"], 1);
    assert_eq!(http["nodes"]["failing"], 2);
    let unauthorised = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/v1/fleet", collector.url())));
    assert_eq!(stdout(&unauthorised), "401");
    let failing_421: Vec<String> = collector
        .get("/v1/checks/4.2.1/failing")
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        failing_421.iter().collect::<BTreeSet<_>>(),
        set(&["anonymous", "legacy"]).iter().collect()
    );

    // Nothing changed: an unchanged notice, and the history does not grow past it.
    assert_eq!(secure.run_once(&collector.url()), 0);
    assert_eq!(secure.run_once(&collector.url()), 0);
    let history = collector.get("/v1/nodes/secure/history");
    let kinds: Vec<&str> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["unchanged", "full"], "{history}");
    assert_eq!(history[0]["sequence"], 3);

    // The anonymous node is fixed: it becomes compliant and the change shows as drift.
    let before = collector.get("/v1/fleet")["generated_at"].clone();
    anonymous.set_config(&hardened(false));
    assert_eq!(anonymous.run_once(&collector.url()), 0);
    let failing = failing_by_node(&collector.fleet_cli());
    assert_eq!(failing["anonymous"], set(&[]));
    let since = before.as_str().expect("time");
    let drift = collector.get(&format!("/v1/drift?since={since}"));
    let changes: Vec<(String, String, String)> = drift
        .as_array()
        .expect("drift")
        .iter()
        .filter(|d| d["node"] == "anonymous")
        .map(|d| {
            (
                d["cis"].as_str().unwrap_or("").to_string(),
                d["from"].as_str().unwrap_or("").to_string(),
                d["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("4.2.1".into(), "fail".into(), "pass".into())),
        "{drift}"
    );
    collector.stop();
}

/// A config that passes every check a person does not have to judge (all but 4.2.7
/// hostname-override and 4.2.8 event-qps), Manual ones too, with anonymous auth as asked:
/// so the exceptions test sees exactly the failures it means to, whether failing Manual
/// checks arrive as `warn` or `fail`.
fn hardened(anonymous: bool) -> String {
    format!(
        "{}authorization:\n  mode: Webhook\nreadOnlyPort: 0\n\
         streamingConnectionIdleTimeout: 4h0m0s\nmakeIPTablesUtilChains: true\n\
         serverTLSBootstrap: true\nfeatureGates:\n  RotateKubeletServerCertificate: true\n\
         tlsCipherSuites:\n- TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n\
         - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\npodPidsLimit: 4096\nseccompDefault: true\n",
        config(anonymous)
    )
}

fn now_unix() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_secs()).expect("time fits")
}

/// The node named `name` in a fleet view.
fn fleet_node<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {fleet}"))
}

#[test]
fn exceptions_expire_are_revoked_and_stale_nodes_keep_failing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collector = Collector::start(tmp.path(), "127.0.0.1:0");
    let token = collector.token();
    let argv_config = ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"];
    let secure = Node::new(tmp.path(), "secure", &argv_config, Some(&hardened(false)));
    let anonymous = Node::new(tmp.path(), "anonymous", &argv_config, Some(&hardened(true)));
    for n in [&secure, &anonymous] {
        n.enroll(&collector.url(), &token);
        assert_eq!(n.run_once(&collector.url()), 0, "{} delivers", n.name);
    }
    let fleet = collector.fleet_cli();
    // Only 4.2.1 on `anonymous` fails; nothing but the two judgement checks is left to a
    // person.
    let judged: Vec<&str> = fleet["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["warn"] != 0)
        .map(|c| c["cis"].as_str().unwrap_or(""))
        .collect();
    assert!(
        judged.iter().all(|c| ["4.2.7", "4.2.8"].contains(c)),
        "{judged:?}: {fleet}"
    );
    assert_eq!(
        failing_by_node(&fleet)["anonymous"],
        set(&["4.2.1"]),
        "{fleet}"
    );
    assert_eq!(failing_by_node(&fleet)["secure"], set(&[]), "{fleet}");
    assert_eq!(
        fleet_node(&fleet, "anonymous")["health"],
        "failing",
        "{fleet}"
    );
    let failure = &fleet_node(&fleet, "anonymous")["failing"][0];
    assert_eq!(failure["cis"], "4.2.1");
    assert_eq!(failure["severity"], "critical", "the collector's catalogue");

    // Refused with a message, nothing recorded: unknown check, past date, unknown node,
    // neither --node nor --all.
    let now = now_unix();
    let day = 86_400;
    let until = nodeproof_collector::server::rfc3339(now + 10 * day);
    // Exit 1 for a refused request, 2 (clap) for a malformed command line.
    let cases: [(Vec<&str>, i32, &str); 4] = [
        (
            vec![
                "--check",
                "4.2.99",
                "--node",
                "anonymous",
                "--until",
                &until,
            ],
            1,
            "not a check",
        ),
        (
            vec![
                "--check",
                "4.2.1",
                "--node",
                "anonymous",
                "--until",
                "2001-01-01",
            ],
            1,
            "not in the future",
        ),
        (
            vec!["--check", "4.2.1", "--node", "nobody", "--until", &until],
            1,
            "nobody",
        ),
        (vec!["--check", "4.2.1", "--until", &until], 2, "--node"),
    ];
    for (args, code, says) in cases {
        let mut argv = vec!["exception", "add", "--reason", "r", "--by", "b"];
        argv.extend(args.iter().copied());
        let out = collector.cli(&argv);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{argv:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = collector.cli(&["exception", "list", "--all", "--format", "json"]);
    assert_eq!(stdout(&out).trim(), "[]", "refused adds store nothing");

    // Accept 4.2.1 on `anonymous` for ten days (by check id), and 4.2.1 on `secure`,
    // which passes it: that one matches nothing and is warned about.
    let add = |check: &str, node: &str| -> String {
        let out = collector.cli(&[
            "exception",
            "add",
            "--check",
            check,
            "--node",
            node,
            "--until",
            &until,
            "--reason",
            "vendor fix due",
            "--by",
            "alice",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let waiver = add("kubelet-anonymous-auth", "anonymous");
    let useless = add("4.2.1", "secure");
    let fleet = collector.fleet_cli();
    let node = fleet_node(&fleet, "anonymous");
    assert_eq!(node["health"], "ok", "{fleet}");
    assert_eq!(node["failing"][0]["excepted"]["by"], "alice");
    assert_eq!(node["failing"][0]["excepted"]["reason"], "vendor fix due");
    assert_eq!(
        node["failing"][0]["excepted"]["exception"].to_string(),
        waiver
    );
    assert_eq!(fleet["summary"]["compliant"], 2, "{fleet}");
    assert_eq!(fleet["summary"]["failing"], 0, "{fleet}");
    let warnings = fleet["warnings"].to_string();
    assert!(
        warnings.contains(&format!("exception {useless} ")),
        "{warnings}"
    );
    assert!(warnings.contains("matches no failing check"), "{warnings}");
    assert!(!warnings.contains("expires"), "ten days left: {warnings}");
    // The HTTP view agrees.
    let http = collector.get("/v1/fleet");
    assert_eq!(http["nodes"]["failing"], 0, "{http}");
    assert_eq!(http["nodes"]["excepted"], 1, "{http}");

    // The text table: a STATUS column, and the failure marked as excepted.
    let out = collector.cli(&["fleet"]);
    let text = stdout(&out);
    assert!(text.contains("STATUS"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("anonymous"))
        .unwrap_or_default();
    assert!(line.contains(" ok "), "{text}");
    assert!(
        line.contains(&format!("4.2.1(critical, excepted #{waiver})")),
        "{text}"
    );

    // Moving the clock: five days before the end, a warning; the nodes are stale by then,
    // and a stale node's failures still count (the excepted one does not yet).
    let soon = collector.fleet_at(now + 5 * day);
    assert!(
        soon["warnings"].to_string().contains("expires"),
        "{}",
        soon["warnings"]
    );
    assert_eq!(soon["summary"]["stale"], 2, "{soon}");
    assert_eq!(soon["summary"]["failing"], 0, "{soon}");
    assert_eq!(fleet_node(&soon, "anonymous")["health"], "stale");
    // At the end: failing again with nobody touching anything, counted as stale *and*
    // failing, its last known failure kept.
    let after = collector.fleet_at(now + 10 * day);
    assert_eq!(after["summary"]["stale"], 2, "{after}");
    assert_eq!(after["summary"]["failing"], 1, "{after}");
    assert_eq!(after["summary"]["compliant"], 0, "{after}");
    let node = fleet_node(&after, "anonymous");
    assert_eq!(node["failing"][0]["cis"], "4.2.1", "{after}");
    assert!(node["failing"][0]["excepted"].is_null(), "{after}");

    // Revoked now: failing at once, and the revocation is on the log with who and why.
    let out = collector.cli(&[
        "exception",
        "revoke",
        &waiver,
        "--by",
        "bob",
        "--reason",
        "audit refused the waiver",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = collector.cli(&[
        "exception",
        "revoke",
        &waiver,
        "--by",
        "bob",
        "--reason",
        "twice",
    ]);
    assert_eq!(out.status.code(), Some(1), "revoking twice is refused");
    assert!(stderr(&out).contains("already revoked"), "{}", stderr(&out));
    let fleet = collector.fleet_cli();
    assert_eq!(
        fleet_node(&fleet, "anonymous")["health"],
        "failing",
        "{fleet}"
    );
    assert_eq!(fleet["summary"]["failing"], 1, "{fleet}");
    let out = collector.cli(&["exception", "list", "--all", "--format", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let states: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["revoked", "active"], "{list}");
    let log: Value =
        serde_json::from_slice(&collector.cli(&["exception", "log"]).stdout).expect("JSON");
    let entries: Vec<(String, String, String)> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| {
            (
                e["exception"].to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e["by"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (waiver.clone(), "add".to_string(), "alice".to_string()),
            (useless.clone(), "add".to_string(), "alice".to_string()),
            (waiver.clone(), "revoke".to_string(), "bob".to_string()),
        ],
        "{log}"
    );
    assert_eq!(log[2]["reason"], "audit refused the waiver");
    collector.stop();
}

#[test]
fn reports_spooled_while_the_collector_is_down_arrive_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collector = Collector::start(tmp.path(), "127.0.0.1:0");
    let url = collector.url();
    let node = Node::new(
        tmp.path(),
        "node-a",
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        Some(&config(false)),
    );
    node.enroll(&url, &collector.token());
    collector.stop();

    // Three scans with three postures while nothing listens: all spooled, exit 1.
    for (i, anonymous) in [true, false, true].into_iter().enumerate() {
        node.set_config(&config(anonymous));
        assert_eq!(node.run_once(&url), 1, "scan {i} stays spooled");
        assert_eq!(node.spooled(), i + 1);
    }

    let port = url.rsplit(':').next().expect("port").to_string();
    let collector = Collector::start(tmp.path(), &format!("127.0.0.1:{port}"));
    assert_eq!(node.run_once(&collector.url()), 0, "the spool drains");
    assert_eq!(node.spooled(), 0);

    let history = collector.get("/v1/nodes/node-a/history");
    let seqs: Vec<u64> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["sequence"].as_u64().expect("sequence"))
        .collect();
    // Newest first: the fourth scan matched the third posture (an unchanged notice).
    assert_eq!(seqs, [4, 3, 2, 1], "{history}");
    assert_eq!(history[0]["kind"], "unchanged");
    let store = store::open(&collector.db).expect("store");
    assert!(store.chain_events("node-a").expect("events").is_empty());
    collector.stop();
}

/// Lines that agents log, tagged with the agent's index.
fn watch(children: &mut [Child]) -> mpsc::Receiver<(usize, String)> {
    let (tx, rx) = mpsc::channel();
    for (i, child) in children.iter_mut().enumerate() {
        let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// `sequence` and `digest` of a `delivered` log line.
fn delivered(line: &str) -> Option<(u64, String, String)> {
    if !line.contains(" delivered") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_string())
    };
    Some((
        field("sequence")?.parse().ok()?,
        field("digest")?,
        field("kind")?,
    ))
}

#[test]
fn kill_9_of_the_collector_loses_nothing_it_acknowledged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collector = Collector::start(tmp.path(), "127.0.0.1:0");
    let url = collector.url();
    let port = url.rsplit(':').next().expect("port").to_string();
    let token = collector.token();
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let n = Node::new(
                tmp.path(),
                &format!("k{i}"),
                &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
                Some(&config(i % 2 == 0)),
            );
            n.enroll(&url, &token);
            n
        })
        .collect();
    let mut agents: Vec<Child> = nodes
        .iter()
        .map(|n| {
            n.run_args(&url)
                .args(["--interval", "1s", "--timeout", "2s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start agent")
        })
        .collect();
    let rx = watch(&mut agents);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked: Vec<Vec<(u64, String, String)>> = vec![Vec::new(); nodes.len()];
    let wait_for = |acked: &mut Vec<Vec<(u64, String, String)>>, at_least: usize| {
        while acked.iter().any(|a| a.len() < at_least) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (i, line) = rx.recv_timeout(left).expect("agents keep delivering");
            if let Some(d) = delivered(&line) {
                acked[i].push(d);
            }
        }
    };
    // Each agent has had at least two reports acknowledged; then kill -9 mid-stream.
    wait_for(&mut acked, 2);
    collector.kill9();
    // Back on the same address; each agent delivers at least two more.
    let collector = Collector::start(tmp.path(), &format!("127.0.0.1:{port}"));
    let before: Vec<usize> = acked.iter().map(Vec::len).collect();
    wait_for(&mut acked, before.iter().max().copied().unwrap_or(0) + 2);
    for a in &agents {
        let _ = Command::new("kill")
            .args(["-TERM", &a.id().to_string()])
            .status();
    }
    for a in &mut agents {
        let status = a.wait().expect("agent exit");
        assert!(status.success(), "agent exits cleanly on SIGTERM: {status}");
    }
    collector.stop();

    let store = store::open(&format!("sqlite://{}/fleet.db", tmp.path().display())).expect("store");
    for (node, acks) in nodes.iter().zip(&acked) {
        let record = store.node(&node.name).expect("node").expect("enrolled");
        let max = acks.iter().map(|a| a.0).max().expect("acks");
        assert!(
            record.last_sequence >= max,
            "{}: stored chain ends at {} but {max} was acknowledged",
            node.name,
            record.last_sequence
        );
        // Every acknowledged full report is stored byte for byte; acknowledged unchanged
        // notices are covered by the latest notice of their run (kept in place).
        for (seq, digest, kind) in acks {
            if kind == "full" {
                assert!(
                    store.has_digest(digest).expect("has_digest"),
                    "{} #{seq}",
                    node.name
                );
            }
        }
        let seqs: Vec<u64> = acks.iter().map(|a| a.0).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            seqs, sorted,
            "{}: acknowledged in order, none twice",
            node.name
        );
        assert!(
            store.chain_events(&node.name).expect("events").is_empty(),
            "{}: no chain breaks",
            node.name
        );
    }
}
