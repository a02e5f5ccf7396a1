//! The evidence bundle end to end: a collector receives a real history over HTTP (three
//! nodes, a key rotation, a posture change, unchanged notices, an exception added and one
//! revoked); `nodeproof-collector export` writes the bundle and `verify` passes it; the
//! OSCAL, JUnit and CSV files say what the history says; each kind of tampering is caught
//! with a fault that names the file or node; `GET /v1/export` streams a bundle that verifies
//! and `GET /v1/nodes/{name}/keys` lists a node's keys with their validity periods.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nodeproof_collector::evidence::{verify_bundle, VerifyOutcome};
use nodeproof_proto::*;
use serde_json::{json, Value};

const COLLECTOR: &str = env!("CARGO_BIN_EXE_nodeproof-collector");

/// What the history left, for the assertions.
struct History {
    server: TestServer,
    a: TestAgent,
    b_old_key: String,
    b: TestAgent,
}

async fn send(server: &TestServer, agent: &mut TestAgent, envelope: Vec<u8>) {
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&envelope);
}

/// A full report whose anonymous-auth check has `anonymous` (the read-only port passes).
fn full(agent: &TestAgent, anonymous: Status) -> Vec<u8> {
    let mut report = agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0));
    report.checks[0].status = anonymous;
    report.checks[0].actual = if anonymous == Status::Pass {
        "false".into()
    } else {
        "true".into()
    };
    report.checks[0].source = Some(Source::Flag);
    report.summary = Summary::of(&report.checks);
    agent.sign(&Statement::new(TestAgent::subjects(), report))
}

/// Each unchanged run has one notice, so the history holds under the old and the new
/// notice-linking rule alike.
async fn history() -> History {
    let server = TestServer::start().await;
    let mut a = TestAgent::new("node-a", 1);
    let mut b = TestAgent::new("node-b", 2);
    let mut c = TestAgent::new("node-c", 3);
    for agent in [&a, &b, &c] {
        enroll_approved(&server, agent).await;
    }
    // node-a: fails anonymous auth, unchanged once, fixes it (a posture change), unchanged.
    let e = full(&a, Status::Fail);
    send(&server, &mut a, e).await;
    let e = a.next_unchanged(1);
    send(&server, &mut a, e).await;
    let e = full(&a, Status::Pass);
    send(&server, &mut a, e).await;
    let e = a.next_unchanged(1);
    send(&server, &mut a, e).await;
    // node-b: one report, a key rotation, a report and a notice under the new key.
    let e = full(&b, Status::Fail);
    send(&server, &mut b, e).await;
    let b_old_key = b.key_id();
    let new_key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let request = RotateRequest {
        node: b.name.clone(),
        new_public_key: verifying_key_to_pem(&new_key.verifying_key()).unwrap(),
        time: time_at(0),
    };
    let mut rotation = sign(
        ROTATE_PAYLOAD_TYPE,
        &serde_json::to_vec(&request).unwrap(),
        &b.key,
    );
    add_signature(&mut rotation, &new_key).unwrap();
    let (status, body) = server.post("/v1/rotate", rotation.to_json_bytes()).await;
    assert_eq!(status, 200, "{body}");
    b.key = new_key;
    let e = full(&b, Status::Fail);
    send(&server, &mut b, e).await;
    let e = b.next_unchanged(1);
    send(&server, &mut b, e).await;
    // node-c: one passing report.
    let e = full(&c, Status::Pass);
    send(&server, &mut c, e).await;

    // An exception for node-b that stays, one for node-a that is revoked.
    let until = time_at(30 * 86_400);
    for node in ["node-b", "node-a"] {
        let (status, body) = server
            .post_json(
                "/v1/exceptions",
                &json!({"check": "4.2.1", "node": node, "until": until,
                        "reason": "legacy <monitoring> needs anonymous reads", "by": "alice"}),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = server
        .post_json(
            "/v1/exceptions/2/revoke",
            &json!({"by": "bob", "reason": "fixed on node-a"}),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    History {
        server,
        a,
        b_old_key,
        b,
    }
}

fn db_url(server: &TestServer) -> String {
    format!(
        "sqlite://{}",
        server.dir.path().join("collector.db").display()
    )
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(COLLECTOR)
        .args(args)
        .output()
        .expect("run nodeproof-collector")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Makes an export key in `dir`; returns (private, public) paths.
fn export_key(dir: &Path) -> (PathBuf, PathBuf) {
    let out = run(&["export-key", "create", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{printed}"
    );
    assert!(printed.contains("keyid: "), "{printed}");
    (dir.join("export-key.pem"), dir.join("export-key.pub.pem"))
}

fn export(server: &TestServer, key: &Path, out: &Path, extra: &[&str]) {
    let db = db_url(server);
    let mut args = vec![
        "export",
        "--db",
        &db,
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let result = run(&args);
    assert!(result.status.success(), "{}", text(&result));
}

/// The bundle's files in order.
fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.push((path, data));
    }
    files
}

fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn verify_bytes(bytes: &[u8], pinned: Option<&ed25519_dalek::VerifyingKey>) -> VerifyOutcome {
    let owned = bytes.to_vec();
    let open = move || -> std::io::Result<Box<dyn Read>> {
        Ok(Box::new(std::io::Cursor::new(owned.clone())))
    };
    verify_bundle(&open, pinned).expect("a readable bundle")
}

fn faults(outcome: &VerifyOutcome) -> Vec<String> {
    outcome.faults.iter().map(ToString::to_string).collect()
}

#[track_caller]
fn assert_fault(outcome: &VerifyOutcome, expected: &str) {
    let all = faults(outcome);
    assert!(
        all.iter().any(|f| f == expected),
        "expected the fault\n  {expected}\namong\n  {}",
        all.join("\n  ")
    );
}

#[track_caller]
fn assert_fault_starting(outcome: &VerifyOutcome, prefix: &str) -> String {
    let all = faults(outcome);
    all.iter()
        .find(|f| f.starts_with(prefix))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "expected a fault starting\n  {prefix}\namong\n  {}",
                all.join("\n  ")
            )
        })
}

fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|(p, _)| p == name)
        .unwrap_or_else(|| panic!("{name} is in the bundle"))
        .1
}

fn report_path(files: &[(String, Vec<u8>)], node: &str, sequence: u64) -> String {
    let prefix = format!("nodes/{node}/reports/{sequence:020}-");
    files
        .iter()
        .map(|(p, _)| p.clone())
        .find(|p| p.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{node}'s report {sequence} is in the bundle"))
}

/// One export of the standard history, shared by the tampering tests.
struct Exported {
    bytes: Vec<u8>,
    files: Vec<(String, Vec<u8>)>,
    pinned: ed25519_dalek::VerifyingKey,
    history: History,
    _dir: tempfile::TempDir,
}

async fn exported() -> Exported {
    let history = history().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = export_key(&dir.path().join("keys"));
    let out = dir.path().join("bundle.tar.gz");
    export(&history.server, &key, &out, &[]);
    let bytes = std::fs::read(&out).unwrap();
    let pinned = verifying_key_from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    Exported {
        files: unpack(&bytes),
        bytes,
        pinned,
        history,
        _dir: dir,
    }
}

#[tokio::test]
async fn an_exported_history_verifies_and_its_files_say_what_happened() {
    let history = history().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = export_key(&dir.path().join("keys"));
    let out = dir.path().join("bundle.tar.gz");
    export(&history.server, &key, &out, &[]);

    let verified = run(&[
        "verify",
        out.to_str().unwrap(),
        "--export-key",
        public.to_str().unwrap(),
    ]);
    let said = text(&verified);
    assert!(verified.status.success(), "{said}");
    assert!(said.contains("bundle: "), "{said}");
    assert!(said.contains("8 reports from 3 nodes"), "{said}");
    assert!(said.contains("signed by the pinned export key"), "{said}");
    assert!(
        said.contains("OK: every signature, hash and chain holds"),
        "{said}"
    );
    // Without a pinned key it still verifies, and says what that is worth.
    let unpinned = run(&["verify", out.to_str().unwrap()]);
    assert!(unpinned.status.success(), "{}", text(&unpinned));
    assert!(
        text(&unpinned).contains("only self-consistent"),
        "{}",
        text(&unpinned)
    );

    let files = unpack(&std::fs::read(&out).unwrap());
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names[0], "README.md");
    assert_eq!(names[1], "export-key.pub.pem");
    assert_eq!(names.last(), Some(&"manifest.intoto.json"));
    assert_eq!(
        names.iter().filter(|n| n.contains("/reports/")).count(),
        8,
        "{names:?}"
    );
    // The envelopes exactly as the nodes signed them.
    let stored = history
        .server
        .store
        .envelope(history.a.last.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        file(&files, &report_path(&files, "node-a", 4)),
        stored.as_slice()
    );

    // node-b's two keys, with the rotation's date between them, in both forms.
    let keys: Value = serde_json::from_slice(file(&files, "nodes/node-b/keys.json")).unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["keyid"], history.b_old_key.as_str());
    assert_eq!(keys[1]["keyid"], history.b.key_id().as_str());
    assert!(keys[0]["valid_until"].is_string());
    assert!(keys[1]["valid_until"].is_null());
    assert_eq!(keys[0]["valid_until"], keys[1]["valid_from"]);
    assert_eq!(keys[1]["securesystemslib"]["keytype"], "ed25519");
    assert_eq!(
        keys[1]["securesystemslib"]["keyval"]["public"],
        hex::encode(history.b.key.verifying_key().as_bytes())
    );
    assert!(names.contains(&format!("nodes/node-b/keys/{}.pem", history.b_old_key).as_str()));

    // The CSV: one row per check of every full report (node-a 2, node-b 2, node-c 1).
    let csv = String::from_utf8(file(&files, "results.csv").to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "node,time,check,status,value,source");
    assert_eq!(lines.len(), 1 + 5 * 2, "{csv}");
    let a_rows: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("node-a,"))
        .collect();
    assert_eq!(a_rows.len(), 4);
    assert!(
        a_rows[0].ends_with(",4.2.1,fail,true,flag"),
        "{}",
        a_rows[0]
    );
    assert!(
        a_rows[2].ends_with(",4.2.1,pass,false,flag"),
        "{}",
        a_rows[2]
    );

    // The exception log: two adds and a revoke, with who and why.
    let log: Value = serde_json::from_slice(file(&files, "exceptions.json")).unwrap();
    let actions: Vec<(&str, &str)> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![("add", "alice"), ("add", "alice"), ("revoke", "bob")]
    );

    // OSCAL: a result per node; node-a's 4.2.1 failed once in the range (not satisfied),
    // node-c's passed throughout; node-b's exception in force is a risk its finding cites.
    let ar: Value = serde_json::from_slice(file(&files, "assessment-results.json")).unwrap();
    let ar = &ar["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.2.1");
    let results = ar["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let state = |node: usize, cis: &str| {
        results[node]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["target"]["target-id"] == format!("cis-{cis}_obj"))
            .map(|f| f["target"]["status"]["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(0, "4.2.1").as_deref(), Some("not-satisfied"));
    assert_eq!(state(0, "4.2.4").as_deref(), Some("satisfied"));
    assert_eq!(state(2, "4.2.1").as_deref(), Some("satisfied"));
    let risks = results[1]["risks"].as_array().unwrap();
    assert_eq!(risks.len(), 1, "the revoked exception is not in force");
    assert_eq!(
        risks[0]["statement"],
        "legacy <monitoring> needs anonymous reads"
    );
    assert_eq!(risks[0]["status"], "deviation-approved");
    assert!(
        results[0].get("risks").is_none(),
        "node-a's exception was revoked"
    );
    let b_finding = results[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["target"]["target-id"] == "cis-4.2.1_obj")
        .unwrap();
    assert_eq!(b_finding["related-risks"][0]["risk-uuid"], risks[0]["uuid"]);
    let evidence = &results[0]["observations"][0]["relevant-evidence"];
    assert!(
        evidence[0]["href"]
            .as_str()
            .unwrap()
            .starts_with("nodes/node-a/reports/"),
        "{evidence}"
    );

    // The standard tools read them: trestle loads the OSCAL, junitparser the JUnit file.
    let checked = python_check(&files);
    assert_eq!(checked["oscal_results"], 3, "{checked}");
    assert_eq!(checked["junit_suites"], 3, "{checked}");
    assert_eq!(checked["junit_tests"], 6, "{checked}");
    assert_eq!(checked["junit_failures"], 1, "{checked}");
}

/// Runs scripts/evidence_tools.py (trestle, junitparser) on the unpacked bundle.
fn python_check(files: &[(String, Vec<u8>)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    for (path, data) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(python())
        .arg(root.join("scripts/evidence_tools.py"))
        .arg(dir.path())
        .output()
        .expect("run evidence_tools.py");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// The python of scripts/pyenv (trestle, junitparser, securesystemslib, in-toto-attestation).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEPROOF_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/pyenv"))
        .output()
        .expect("run scripts/pyenv");
    assert!(out.status.success(), "scripts/pyenv: {}", text(&out));
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim(),
    )
}

/// A range with nothing in it for the nodes named: the bundle still verifies, shows their
/// keys and where their chains stand (the anchor), with an OSCAL result and no reports.
#[tokio::test]
async fn an_export_of_an_empty_range_verifies_and_anchors_each_chain() {
    let history = history().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = export_key(&dir.path().join("keys"));
    let out = dir.path().join("bundle.tar.gz");
    export(
        &history.server,
        &key,
        &out,
        &[
            "--since",
            "2099-01-01",
            "--node",
            "node-c",
            "--node",
            "node-a",
        ],
    );
    let bytes = std::fs::read(&out).unwrap();
    let pinned = verifying_key_from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    let outcome = verify_bytes(&bytes, Some(&pinned));
    assert!(outcome.ok(), "{}", outcome.render());
    assert_eq!((outcome.nodes, outcome.reports), (2, 0));
    let files = unpack(&bytes);
    assert!(files.iter().all(|(p, _)| !p.contains("/reports/")));
    let ar: Value = serde_json::from_slice(file(&files, "assessment-results.json")).unwrap();
    let results = ar["assessment-results"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{ar}");
    let csv = String::from_utf8(file(&files, "results.csv").to_vec()).unwrap();
    assert_eq!(csv, "node,time,check,status,value,source\n");
    // The manifest anchors node-a's chain at its last stored statement.
    let manifest: Value = serde_json::from_slice(file(&files, "manifest.intoto.json")).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        manifest["payload"].as_str().unwrap(),
    )
    .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    let a = statement["predicate"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-a")
        .unwrap();
    assert_eq!(a["chain"], json!([]));
    assert_eq!(a["anchor"]["sequence"], 4, "{a}");
    assert_eq!(a["anchor"]["digest"], history.a.last.as_deref().unwrap());
    let checked = python_check(&files);
    assert_eq!(checked["oscal_results"], 2, "{checked}");
    assert_eq!(checked["junit_tests"], 0, "{checked}");
}

// ------------------------------------------------------------------- tampering

#[tokio::test]
async fn tampering_one_byte_of_an_envelope_names_the_file() {
    let mut ex = exported().await;
    let path = report_path(&ex.files, "node-a", 2);
    let data = &mut ex.files.iter_mut().find(|(p, _)| *p == path).unwrap().1;
    let i = data.len() / 2;
    data[i] ^= 0x01;
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    assert!(!outcome.ok());
    let fault = assert_fault_starting(&outcome, &format!("{path}: SHA-256 is "));
    assert!(fault.ends_with(": the file was changed"), "{fault}");
}

/// A changed byte anywhere: in each file of the bundle in turn (the manifest has its own
/// test), each time the fault names that file.
#[tokio::test]
async fn one_changed_byte_in_any_file_names_that_file() {
    let ex = exported().await;
    let mut tried = 0;
    for (path, data) in &ex.files {
        if path == "manifest.intoto.json" {
            continue;
        }
        let mut files = ex.files.clone();
        let changed = &mut files.iter_mut().find(|(p, _)| p == path).unwrap().1;
        let i = data.len() / 2;
        changed[i] ^= 0x01;
        let changed_sha = sha256_hex(changed);
        let outcome = verify_bytes(&pack(&files), Some(&ex.pinned));
        assert!(!outcome.ok(), "{path} changed, yet the bundle verifies");
        let fault = assert_fault_starting(
            &outcome,
            &format!("{path}: SHA-256 is {}, the manifest says ", changed_sha),
        );
        assert!(fault.ends_with(": the file was changed"), "{fault}");
        // Every other file still matches the manifest.
        for other in faults(&outcome) {
            assert!(
                !other.contains(": SHA-256 is ") || other.starts_with(&format!("{path}:")),
                "{path} changed, and another file is said to be: {other}"
            );
        }
        tried += 1;
    }
    assert!(tried >= 20, "only {tried} files tried");
}

/// A changed byte of the compressed archive itself: the CLI refuses the bundle and exits 1.
/// The middle of this small archive is the tar padding after the last entry, which no tar
/// reader looks at: only the gzip CRC-32 catches it. `len - 5` is in that CRC-32. (The
/// gzip header's mtime and OS bytes are covered by no checksum and carry nothing.)
#[tokio::test]
async fn one_changed_byte_of_the_archive_is_refused() {
    let ex = exported().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pinned.pem");
    std::fs::write(&pem, verifying_key_to_pem(&ex.pinned).unwrap()).unwrap();
    for at in [ex.bytes.len() / 2, ex.bytes.len() - 5] {
        let mut bytes = ex.bytes.clone();
        bytes[at] ^= 0x01;
        let bundle = dir.path().join("b.tar.gz");
        std::fs::write(&bundle, &bytes).unwrap();
        let out = run(&[
            "verify",
            bundle.to_str().unwrap(),
            "--export-key",
            pem.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "byte {at}: {}", text(&out));
        assert!(
            text(&out).contains(&bundle.display().to_string()),
            "byte {at}: {}",
            text(&out)
        );
        assert!(!text(&out).contains("OK:"), "byte {at}: {}", text(&out));
    }
}

#[tokio::test]
async fn tampering_one_byte_of_the_manifest_breaks_its_signature() {
    let mut ex = exported().await;
    let data = &mut ex
        .files
        .iter_mut()
        .find(|(p, _)| p == "manifest.intoto.json")
        .unwrap()
        .1;
    // A byte inside the base64 payload: "A" <-> "B" keeps it base64.
    let at = data
        .windows(12)
        .position(|w| w == b"\"payload\":\"e")
        .unwrap()
        + 20;
    data[at] = if data[at] == b'A' { b'B' } else { b'A' };
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    assert_fault_starting(
        &outcome,
        &format!(
            "manifest.intoto.json: the signature does not verify with export key {}",
            keyid(&ex.pinned)
        ),
    );
    assert_eq!(outcome.faults.len(), 1, "{:?}", faults(&outcome));
}

#[tokio::test]
async fn tampering_one_byte_of_a_key_file_names_the_file() {
    let mut ex = exported().await;
    let path = format!("nodes/node-b/keys/{}.pem", ex.history.b.key_id());
    let data = &mut ex.files.iter_mut().find(|(p, _)| *p == path).unwrap().1;
    data[40] = if data[40] == b'A' { b'B' } else { b'A' };
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    let fault = assert_fault_starting(&outcome, &format!("{path}: SHA-256 is "));
    assert!(fault.ends_with(": the file was changed"), "{fault}");
}

#[tokio::test]
async fn a_removed_report_is_missing_and_a_gap_in_the_chain() {
    let mut ex = exported().await;
    let path = report_path(&ex.files, "node-a", 2);
    ex.files.retain(|(p, _)| *p != path);
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    assert_fault(
        &outcome,
        &format!("{path}: is listed in the manifest but missing from the bundle (removed)"),
    );
    let fault = assert_fault_starting(
        &outcome,
        "node node-a: chain: gap: after sequence 1 the next statement is sequence 3 (",
    );
    assert!(fault.ends_with("); 1 missing"), "{fault}");
}

#[tokio::test]
async fn a_swapped_key_names_the_key_file_and_every_report_it_no_longer_verifies() {
    let mut ex = exported().await;
    // node-c's keys in node-a's place.
    let c_keys = file(&ex.files, "nodes/node-c/keys.json").to_vec();
    let a_keys = ex
        .files
        .iter_mut()
        .find(|(p, _)| p == "nodes/node-a/keys.json")
        .unwrap();
    a_keys.1 = c_keys;
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    assert_fault_starting(&outcome, "nodes/node-a/keys.json: SHA-256 is ");
    assert_fault(
        &outcome,
        "nodes/node-a/keys.json: holds the keys of node \"node-c\", not of node node-a",
    );
    let a1 = report_path(&ex.files, "node-a", 1);
    assert_fault(
        &outcome,
        &format!(
            "{a1}: signed by key {}, which is not one of node node-a's keys in the bundle",
            ex.history.a.key_id()
        ),
    );
}

#[tokio::test]
async fn a_reordered_chain_is_a_fork() {
    let mut ex = exported().await;
    // The contents of node-a's reports 3 and 4 change places.
    let p3 = report_path(&ex.files, "node-a", 3);
    let p4 = report_path(&ex.files, "node-a", 4);
    let i3 = ex.files.iter().position(|(p, _)| *p == p3).unwrap();
    let i4 = ex.files.iter().position(|(p, _)| *p == p4).unwrap();
    let d3 = ex.files[i3].1.clone();
    ex.files[i3].1 = ex.files[i4].1.clone();
    ex.files[i4].1 = d3;
    let outcome = verify_bytes(&pack(&ex.files), Some(&ex.pinned));
    assert_fault(
        &outcome,
        &format!(
            "{p3}: the signed sequence is 4, but the manifest and the file name say 3 (reordered)"
        ),
    );
    assert_fault_starting(
        &outcome,
        "node node-a: chain: fork or reordering: sequence 3 (",
    );
}

#[tokio::test]
async fn another_export_key_than_the_pinned_one_is_refused() {
    let ex = exported().await;
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let outcome = verify_bytes(&ex.bytes, Some(&other));
    assert_fault_starting(
        &outcome,
        &format!(
            "export-key.pub.pem: is export key {}, not the pinned export key {}",
            keyid(&ex.pinned),
            keyid(&other)
        ),
    );
    assert_fault_starting(
        &outcome,
        "manifest.intoto.json: the signature does not verify",
    );
    // And the CLI exits 1 and names it.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    std::fs::write(&bundle, &ex.bytes).unwrap();
    let pem = dir.path().join("other.pem");
    std::fs::write(&pem, verifying_key_to_pem(&other).unwrap()).unwrap();
    let out = run(&[
        "verify",
        bundle.to_str().unwrap(),
        "--export-key",
        pem.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAULT: manifest.intoto.json"),
        "{}",
        text(&out)
    );
}

// ------------------------------------------------------------------- HTTP

#[tokio::test]
async fn get_export_streams_a_bundle_that_verifies() {
    let history = history().await;
    let server = &history.server;
    let response = server
        .client
        .get(server.url("/v1/export?node=node-a&node=node-b"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/gzip"
    );
    // Streamed as it is written: no length known up front.
    assert!(
        response.headers().get("content-length").is_none(),
        "{:?}",
        response.headers()
    );
    let bytes = response.bytes().await.unwrap();
    let pinned = ed25519_dalek::SigningKey::from_bytes(&EXPORT_KEY_SEED).verifying_key();
    let outcome = verify_bytes(&bytes, Some(&pinned));
    assert!(outcome.ok(), "{}", outcome.render());
    assert_eq!((outcome.nodes, outcome.reports), (2, 7));

    let (status, body) = server.get("/v1/export", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.admin_get("/v1/export?node=ghost").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = server.admin_get("/v1/export?since=yesterday").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn get_node_keys_lists_keys_with_their_validity() {
    let history = history().await;
    let (status, body) = history.server.admin_get("/v1/nodes/node-b/keys").await;
    assert_eq!(status, 200, "{body}");
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{body}");
    assert_eq!(keys[0]["keyid"], history.b_old_key.as_str());
    assert!(keys[0]["valid_until"].is_string());
    assert!(keys[1]["pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let (status, body) = history.server.admin_get("/v1/nodes/ghost/keys").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = history.server.get("/v1/nodes/node-b/keys", None).await;
    assert_eq!(status, 401, "{body}");
}

// ------------------------------------------------------------------- standard tools

/// The code blocks of docs/verifying-evidence.md, run as written on a real export: they
/// pass on the bundle and fail on a tampered copy.
#[tokio::test]
async fn the_documented_standard_tool_steps_verify_a_bundle_and_refuse_a_tampered_one() {
    let ex = exported().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/verifying-evidence.md")).unwrap();
    let (shell, script) = doc_steps(&doc);
    let python = python();
    let bin = python.parent().unwrap().to_path_buf();

    let run_steps = |bundle: &[u8]| -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.tar.gz"), bundle).unwrap();
        std::fs::write(dir.path().join("verify_bundle.py"), &script).unwrap();
        std::fs::write(
            dir.path().join("pinned-export-key.pub.pem"),
            verifying_key_to_pem(&ex.pinned).unwrap(),
        )
        .unwrap();
        let mut sh = std::fs::File::create(dir.path().join("steps.sh")).unwrap();
        writeln!(sh, "set -euo pipefail").unwrap();
        sh.write_all(shell.as_bytes()).unwrap();
        drop(sh);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg("steps.sh")
            .current_dir(dir.path())
            .env("PATH", path)
            .output()
            .expect("run the documented steps")
    };

    let good = run_steps(&ex.bytes);
    assert!(good.status.success(), "{}", text(&good));
    assert!(text(&good).contains("bundle verified"), "{}", text(&good));

    // One byte of one report changed, SHA256SUMS and all left as they were.
    let mut files = ex.files.clone();
    let path = report_path(&files, "node-b", 2);
    let data = &mut files.iter_mut().find(|(p, _)| *p == path).unwrap().1;
    let i = data.len() / 3;
    data[i] ^= 0x01;
    let bad = run_steps(&pack(&files));
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains(&path), "{}", text(&bad));

    // With SHA256SUMS rewritten to match, sha256sum passes, and the manifest check fails.
    let sums: String = files
        .iter()
        .filter(|(p, _)| p != "SHA256SUMS" && p != "manifest.intoto.json")
        .map(|(p, d)| format!("{}  {p}\n", sha256_hex(d)))
        .collect();
    files.iter_mut().find(|(p, _)| p == "SHA256SUMS").unwrap().1 = sums.into_bytes();
    let bad = run_steps(&pack(&files));
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("SHA256SUMS"), "{}", text(&bad));
}

/// The doc's ```sh blocks (joined) and its one ```python block.
fn doc_steps(doc: &str) -> (String, String) {
    let mut blocks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let lang = lang.trim();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        blocks.entry(lang).or_default().push(body);
    }
    let shell = blocks.get("sh").cloned().unwrap_or_default().join("");
    let python = blocks.get("python").cloned().unwrap_or_default();
    assert!(
        !shell.is_empty(),
        "docs/verifying-evidence.md has ```sh steps"
    );
    assert_eq!(
        python.len(),
        1,
        "docs/verifying-evidence.md has one ```python block"
    );
    (shell, python[0].clone())
}
