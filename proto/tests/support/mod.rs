//! Shared by the integration tests: a small but complete report, the deterministic fixture
//! keys, and the generator of the attack fixtures in `tests/data/`. Keeping the generator in
//! code (with fixed seeds; ed25519 signing is deterministic) means the committed fixtures
//! can always be rebuilt byte for byte, and a test notices when they drift.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use nodeproof_proto::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The fixture signer. Not a secret: it signs test data only.
pub const FIXTURE_SEED: [u8; 32] = *b"nodeproof-fixture-key-0000000001";
/// Another signer, for envelopes made with the wrong key.
pub const OTHER_SEED: [u8; 32] = *b"nodeproof-fixture-key-0000000002";

pub fn fixture_key() -> SigningKey {
    SigningKey::from_bytes(&FIXTURE_SEED)
}

pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&OTHER_SEED)
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A report with one passing and one failing check, as an agent would produce it.
pub fn sample_report() -> Report {
    let config = "/var/lib/kubelet/config.yaml";
    let checks = vec![
        CheckResult {
            id: "kubelet-read-only-port".into(),
            cis: "4.2.4".into(),
            title: "Verify that the --read-only-port argument is set to 0".into(),
            scored: true,
            severity: nodeproof_proto::Severity::Critical,
            status: Status::Pass,
            expected: "0".into(),
            actual: "0".into(),
            source: Some(Source::Flag),
            origin: Some("--read-only-port=0".into()),
            note: String::new(),
            remediation: Remediation {
                flag: "--read-only-port=0".into(),
                config: "readOnlyPort: 0".into(),
            },
        },
        CheckResult {
            id: "kubelet-anonymous-auth".into(),
            cis: "4.2.1".into(),
            title: "Ensure that the --anonymous-auth argument is set to false".into(),
            scored: true,
            severity: nodeproof_proto::Severity::Critical,
            status: Status::Fail,
            expected: "false".into(),
            actual: "true".into(),
            source: Some(Source::ConfigFile),
            origin: Some(config.into()),
            note: String::new(),
            remediation: Remediation {
                flag: "--anonymous-auth=false".into(),
                config: "authentication:\n  anonymous:\n    enabled: false".into(),
            },
        },
    ];
    Report {
        schema: REPORT_SCHEMA.into(),
        catalogue: nodeproof_proto::CATALOGUE_VERSION.into(),
        scan_time: "2024-05-01T12:00:00Z".into(),
        agent_version: "0.1.0".into(),
        node: NodeFacts {
            hostname: Some("node-1".into()),
            os: Some("Ubuntu 22.04.4 LTS".into()),
            kernel: Some("5.15.0-105-generic".into()),
            boot_time: Some("2024-04-30T08:00:00Z".into()),
        },
        kubelet: KubeletInfo {
            pid: 1234,
            cmdline: vec![
                "/usr/bin/kubelet".into(),
                format!("--config={config}"),
                "--read-only-port=0".into(),
            ],
            config_file: Some(config.into()),
            config_dir: None,
            exe: Some("/usr/bin/kubelet".into()),
            exe_sha256: Some(sha256_hex(b"kubelet binary")),
            exe_error: None,
            version: None,
            distribution: None,
            embedded_in: None,
        },
        settings: BTreeMap::from([
            (
                "readOnlyPort".to_string(),
                Setting {
                    value: json!(0),
                    source: Source::Flag,
                    origin: "--read-only-port=0".into(),
                },
            ),
            (
                "authentication.anonymous.enabled".to_string(),
                Setting {
                    value: json!(true),
                    source: Source::ConfigFile,
                    origin: config.into(),
                },
            ),
        ]),
        summary: Summary::of(&checks),
        checks,
        warnings: vec![Warning {
            message: "unknown field \"fooBar\" ignored".into(),
            file: Some(config.into()),
            field: Some("fooBar".into()),
        }],
        files: vec![FileDigest {
            path: config.into(),
            sha256: sha256_hex(b"kubelet config"),
        }],
        link: None,
    }
}

/// The statement an agent would sign for [`sample_report`]: the kubelet binary and every
/// file read, by digest.
pub fn sample_statement() -> Statement {
    let report = sample_report();
    let mut subjects = vec![Subject::sha256(
        "/usr/bin/kubelet",
        report.kubelet.exe_sha256.clone().unwrap_or_default(),
    )];
    subjects.extend(
        report
            .files
            .iter()
            .map(|f| Subject::sha256(f.path.clone(), f.sha256.clone())),
    );
    Statement::new(subjects, report)
}

fn pretty(value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("fixture serializes");
    out.push(b'\n');
    out
}

fn signed(statement: &Statement, key: &SigningKey) -> Envelope {
    sign_statement(statement, key).expect("fixture statement serializes")
}

/// Every fixture case, by folder name, with its `envelope.json`. Errors here are bugs in the
/// generator, so it may panic.
pub fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let key = fixture_key();
    let other = other_key();
    let statement = sample_statement();
    let valid = signed(&statement, &key);
    let payload = STANDARD
        .decode(&valid.payload)
        .expect("own payload decodes");
    let sig = STANDARD
        .decode(&valid.signatures[0].sig)
        .expect("own signature decodes");

    let mut cases = vec![("valid", pretty(&valid))];

    // A failing check flipped to passing after signing: the attack the signature exists for.
    let text = String::from_utf8(payload.clone()).expect("payload is JSON text");
    let tampered = text.replacen("\"status\":\"fail\"", "\"status\":\"pass\"", 1);
    assert_ne!(
        tampered, text,
        "the sample report must have a failing check"
    );
    let mut env = valid.clone();
    env.payload = STANDARD.encode(tampered);
    cases.push(("tampered-payload", pretty(&env)));

    // Signed by another key that claims to be ours (keyids are unauthenticated).
    let mut env = signed(&statement, &other);
    env.signatures[0].keyid = valid.signatures[0].keyid.clone();
    cases.push(("wrong-key", pretty(&env)));

    // Signed by another key under its own keyid.
    cases.push(("unknown-keyid", pretty(&signed(&statement, &other))));

    let mut env = valid.clone();
    env.signatures[0].sig = STANDARD.encode(&sig[..32]);
    cases.push(("truncated-signature", pretty(&env)));

    // Validly signed, but announced as something other than an in-toto statement.
    cases.push((
        "wrong-payload-type",
        pretty(&sign("application/json", &payload, &key)),
    ));

    let mut env = valid.clone();
    env.signatures.push(env.signatures[0].clone());
    cases.push(("duplicate-signatures", pretty(&env)));

    // A validly signed payload with its base64 padding dropped: a lenient decoder would
    // accept it and the signature would still verify. Padding exists only when the length
    // is not a multiple of 3, so pad the JSON with a space if need be.
    let mut unpadded = payload.clone();
    if unpadded.len() % 3 == 0 {
        unpadded.push(b' ');
    }
    let mut env = sign(PAYLOAD_TYPE, &unpadded, &key);
    env.payload = env.payload.trim_end_matches('=').to_string();
    cases.push(("non-canonical-base64", pretty(&env)));

    let mut env = valid.clone();
    env.signatures.clear();
    cases.push(("no-signatures", pretty(&env)));

    let mut st = statement.clone();
    st.predicate_type = "https://slsa.dev/provenance/v1".into();
    cases.push(("wrong-predicate-type", pretty(&signed(&st, &key))));

    let mut st = statement.clone();
    st.type_ = "https://in-toto.io/Statement/v0.1".into();
    cases.push(("wrong-statement-type", pretty(&signed(&st, &key))));

    let mut st = statement.clone();
    st.subject.clear();
    cases.push(("empty-subjects", pretty(&signed(&st, &key))));

    let mut st = statement.clone();
    let upper = st.subject[0].digest["sha256"].to_uppercase();
    st.subject[0].digest.insert("sha256".into(), upper);
    cases.push(("bad-subject-digest", pretty(&signed(&st, &key))));

    // Signed, right types, but the predicate is not a nodeproof report.
    let not_a_report = serde_json::to_vec(&json!({
        "_type": STATEMENT_TYPE,
        "subject": statement.subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {"hello": "world"},
    }))
    .expect("fixture serializes");
    cases.push((
        "malformed-statement",
        pretty(&sign(PAYLOAD_TYPE, &not_a_report, &key)),
    ));

    // Signed, but one object names a key twice: serde would keep the second subject digest,
    // another JSON reader the first. The signer chooses which report each verifier sees.
    let honest = String::from_utf8(serde_json::to_vec(&statement).expect("fixture serializes"))
        .expect("JSON is UTF-8");
    let twice = honest.replacen(
        "\"sha256\":\"",
        &format!("\"sha256\":\"{}\",\"sha256\":\"", "0".repeat(64)),
        1,
    );
    assert_ne!(
        twice, honest,
        "the fixture statement has a sha256 subject digest"
    );
    cases.push((
        "duplicate-key-in-payload",
        pretty(&sign(PAYLOAD_TYPE, twice.as_bytes(), &key)),
    ));

    // Signed, right types, but the report's checks are a string, not a list.
    let mut value = serde_json::to_value(&statement).expect("fixture serializes");
    value["predicate"]["checks"] = json!("all passed");
    let wrong_shape = serde_json::to_vec(&value).expect("fixture serializes");
    cases.push((
        "predicate-wrong-shape",
        pretty(&sign(PAYLOAD_TYPE, &wrong_shape, &key)),
    ));

    let whole = pretty(&valid);
    cases.push(("malformed-json", whole[..whole.len() / 2].to_vec()));

    let mut env = valid.clone();
    env.payload = "this is not base64!".into();
    cases.push(("not-base64", pretty(&env)));

    // Accepted: DSSE says consumers MUST ignore unrecognized fields.
    let mut value = serde_json::to_value(&valid).expect("fixture serializes");
    value["x-unsigned-note"] = json!("not covered by the signature");
    value["signatures"][0]["x-extension"] = json!({"kind": "test"});
    cases.push(("extension-fields", pretty(&value)));

    // Accepted: an unset keyid means "unspecified".
    let mut value = serde_json::to_value(&valid).expect("fixture serializes");
    if let Some(sig) = value["signatures"][0].as_object_mut() {
        sig.remove("keyid");
    }
    cases.push(("unset-keyid", pretty(&value)));

    cases
}

pub fn fixture_public_key_pem() -> String {
    verifying_key_to_pem(&fixture_key().verifying_key()).expect("fixture key encodes")
}
