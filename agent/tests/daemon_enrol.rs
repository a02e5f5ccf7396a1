//! Enrolment, keys and the node's name through the binary: `enroll` (its done file, a
//! refused or pending token, a proxy's page, a token over plain http), `keygen
//! --if-missing`, `rotate-key`, private keys refused when others can read them, and
//! `enroll` and `run` agreeing on the kubelet's --hostname-override.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nodeproof_agent::daemon::spool::Spool;
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_proto::{signing_key_to_pem, verify};
use tempfile::TempDir;

use common::*;

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
