//! The agent binary end to end: scan formats, exit codes, keys, signatures verified by our
//! code and by securesystemslib, and a real process named `kubelet` read through /proc.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;
use nodeproof_proto::{verify, verifying_key_from_pem, Report, Source, Status};
use serde_json::Value;

fn scan_json(proc_dir: &std::path::Path) -> (Value, i32) {
    let out = run(agent()
        .args(["scan", "--format", "json", "--proc"])
        .arg(proc_dir));
    let code = out.status.code().expect("exit code");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    (report, code)
}

#[test]
fn json_report_has_effective_settings_with_sources_and_exit_1_on_failure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--read-only-port=10255",
        ],
        &[(
            "/var/lib/kubelet/config.yaml",
            &format!("{HEAD}authentication:\n  anonymous:\n    enabled: true\n"),
        )],
    );
    let (r, code) = scan_json(&proc_dir);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["kubelet"]["pid"], 4242);
    assert_eq!(r["kubelet"]["config_file"], "/var/lib/kubelet/config.yaml");
    assert_eq!(r["kubelet"]["cmdline"][2], "--read-only-port=10255");
    let port = &r["settings"]["readOnlyPort"];
    assert_eq!(port["value"], 10255);
    assert_eq!(port["source"], "flag");
    assert_eq!(port["origin"], "--read-only-port=10255");
    let anon = &r["settings"]["authentication.anonymous.enabled"];
    assert_eq!(
        (anon["value"].clone(), anon["source"].clone()),
        (Value::Bool(true), "config-file".into())
    );
    assert_eq!(
        r["settings"]["authentication.x509.clientCAFile"]["value"],
        ""
    );
    assert_eq!(
        r["settings"]["streamingConnectionIdleTimeout"]["value"],
        "4h0m0s"
    );
    // Every field the issue names is present.
    for key in [
        "authentication.webhook.enabled",
        "authorization.mode",
        "port",
        "address",
        "tlsCertFile",
        "tlsPrivateKeyFile",
        "tlsCipherSuites",
        "tlsMinVersion",
        "rotateCertificates",
        "serverTLSBootstrap",
        "protectKernelDefaults",
        "makeIPTablesUtilChains",
        "eventRecordQPS",
        "podPidsLimit",
        "seccompDefault",
        "enableDebuggingHandlers",
    ] {
        assert!(r["settings"].get(key).is_some(), "missing {key}");
    }
    let checks = r["checks"].as_array().expect("checks");
    let count = |group: &str| {
        checks
            .iter()
            .filter(|c| c["cis"].as_str().unwrap_or("").starts_with(group))
            .count()
    };
    assert_eq!(
        (count("4.2."), count("4.1."), count("1."), checks.len()),
        (14, 11, 5, 30)
    );
    let c421 = checks.iter().find(|c| c["cis"] == "4.2.1").expect("4.2.1");
    assert_eq!(c421["status"], "fail");
    assert_eq!(c421["source"], "config-file");
    assert!(c421["remediation"]["flag"]
        .as_str()
        .unwrap_or("")
        .contains("--anonymous-auth=false"));
    assert_eq!(r["node"]["hostname"], "node-1");
    assert_eq!(r["node"]["os"], "Test Linux");
    // The report parses as our type, too.
    let typed: Report = serde_json::from_value(r).expect("report type");
    assert_eq!(
        typed.summary.fail as usize,
        typed
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    );
}

#[test]
fn exit_0_when_every_check_passes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (r, code) = scan_json(&secure_node(tmp.path()));
    assert_eq!(code, 0, "{}", r["checks"]);
    // 14 kubelet settings, the 11 worker-node file checks (4.1) and the 5 API server
    // checks, which pass as not applicable on a node without a kube-apiserver.
    assert_eq!(r["summary"]["pass"], 30, "{}", r["summary"]);
}

/// A secure node with `args` added to the kubelet's command line and `extra` to its config.
fn node_with(tmp: &std::path::Path, args: &[&str], extra: &str) -> std::path::PathBuf {
    let mut argv = vec!["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"];
    argv.extend_from_slice(args);
    fake_node(
        tmp,
        &argv,
        &[("/var/lib/kubelet/config.yaml", &secure_config(extra))],
    )
}

/// `scan --format json [extra]`: the exit code and the status of each CIS number.
fn scan_with(proc_dir: &std::path::Path, extra: &[&str]) -> (i32, Value) {
    let out = run(agent()
        .args(["scan", "--format", "json", "--proc"])
        .arg(proc_dir)
        .args(extra));
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)));
    let statuses = r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| {
            (
                c["cis"].as_str().unwrap_or("").to_string(),
                c["status"].clone(),
            )
        })
        .collect::<serde_json::Map<_, _>>();
    (
        out.status.code().expect("exit code"),
        Value::Object(statuses),
    )
}

/// CIS calls 4.2.14 Manual, but seccompDefault: false is a known value: it fails and the
/// scan exits 1, unless --fail-on raises the bar above its severity (medium).
#[test]
fn a_failing_manual_check_exits_1_unless_fail_on_is_above_its_severity() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[(
            "/var/lib/kubelet/config.yaml",
            &secure_config("").replace("seccompDefault: true", "seccompDefault: false"),
        )],
    );
    let want = serde_json::json!({"4.2.14": "fail"});
    assert_eq!(scan_with(&proc_dir, &[]), (1, want.clone()));
    assert_eq!(
        scan_with(&proc_dir, &["--fail-on", "low"]),
        (1, want.clone())
    );
    assert_eq!(
        scan_with(&proc_dir, &["--fail-on", "medium"]),
        (1, want.clone())
    );
    assert_eq!(
        scan_with(&proc_dir, &["--fail-on", "high"]),
        (0, want.clone())
    );
    assert_eq!(
        scan_with(&proc_dir, &["--fail-on", "critical"]),
        (0, want.clone())
    );
    // The environment sets the bar too, and the flag wins over it.
    let out = run(agent()
        .args(["scan", "--proc"])
        .arg(&proc_dir)
        .env("NODEPROOF_FAIL_ON", "critical"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(agent()
        .args(["scan", "--fail-on", "low", "--proc"])
        .arg(&proc_dir)
        .env("NODEPROOF_FAIL_ON", "critical"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// The seed's control: an open read-only port is critical, so even --fail-on critical exits 1.
#[test]
fn an_open_read_only_port_fails_even_with_fail_on_critical() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = node_with(tmp.path(), &["--read-only-port=10255"], "");
    let (code, statuses) = scan_with(&proc_dir, &["--fail-on", "critical"]);
    assert_eq!((code, statuses), (1, serde_json::json!({"4.2.4": "fail"})));
}

/// 4.2.7 is one of the two checks a person judges: it warns, and a warning never changes
/// the exit code.
#[test]
fn a_warning_does_not_change_the_exit_code() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = node_with(tmp.path(), &["--hostname-override=node-1.internal"], "");
    assert_eq!(
        scan_with(&proc_dir, &[]),
        (0, serde_json::json!({"4.2.7": "warn"}))
    );
}

/// A config file the kubelet could not load makes every check it feeds `error`: unknown is
/// not a pass, so the scan exits 1 whatever --fail-on says.
#[test]
fn an_unknown_value_exits_1_whatever_fail_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[(
            "/var/lib/kubelet/config.yaml",
            "apiVersion: kubelet.config.k8s.io/v1alpha9\nkind: KubeletConfiguration\n",
        )],
    );
    let (code, statuses) = scan_with(&proc_dir, &["--fail-on", "critical"]);
    assert_eq!(code, 1, "{statuses}");
    assert_eq!(statuses["4.2.14"], "error", "{statuses}");
    assert!(
        statuses
            .as_object()
            .expect("map")
            .values()
            .all(|s| s == "error"),
        "{statuses}"
    );
}

#[test]
fn fail_on_an_unknown_severity_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = secure_node(tmp.path());
    for bad in ["severe", "Critical", ""] {
        let out = run(agent()
            .args(["scan", "--fail-on", bad, "--proc"])
            .arg(&proc_dir));
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = stderr(&out);
        assert!(
            err.contains("low, medium, high or critical"),
            "{bad:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "no report on a usage error");
    }
}

#[test]
fn exit_2_with_advice_when_no_kubelet_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fake = nodeproof_agent::fakeproc::FakeProc::new(&tmp.path().join("proc")).expect("proc");
    fake.process(1, "systemd", &["/sbin/init"]).expect("init");
    fake.process(2, "bash", &["bash", "-c", "kubelet --help"])
        .expect("decoy");
    let out = run(agent().args(["scan", "--proc"]).arg(fake.path()));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no kubelet") || err.contains("No kubelet"),
        "{err}"
    );
    assert!(err.contains("--proc"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn several_kubelets_need_a_pid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = secure_node(tmp.path());
    let fake = nodeproof_agent::fakeproc::FakeProc::new(&proc_dir).expect("proc");
    fake.process(
        5000,
        "kubelet",
        &["/usr/bin/kubelet", "--read-only-port=10255"],
    )
    .expect("second kubelet");
    let out = run(agent().args(["scan", "--proc"]).arg(&proc_dir));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("4242") && err.contains("5000") && err.contains("--pid"),
        "{err}"
    );
    let out = run(agent()
        .args(["scan", "--format", "json", "--pid", "4242", "--proc"])
        .arg(&proc_dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn text_output_is_plain_when_piped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = secure_node(tmp.path());
    let out = run(agent().args(["scan", "--proc"]).arg(&proc_dir));
    let text = stdout(&out);
    assert!(text.contains("\n[PASS] 4.2.1  critical Ensure"), "{text}");
    assert!(text.contains("\n[PASS] 4.2.13 medium   Ensure"), "{text}");
    assert!(text.contains("== Summary:"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape in piped output");
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("keys");
    let out = run(agent().args(["keygen", "--out"]).arg(&dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let keyid = stdout(&out).trim().to_string();
    assert_eq!(keyid.len(), 64);
    assert!(keyid
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let mode = std::fs::metadata(dir.join("agent.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(dir.join("agent.pub")).expect("pub");
    let key = verifying_key_from_pem(&pem).expect("public key");
    assert_eq!(nodeproof_proto::keyid(&key), keyid);
    let before = std::fs::read(dir.join("agent.key")).expect("key");
    let again = run(agent().args(["keygen", "--out"]).arg(&dir));
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(dir.join("agent.key")).expect("key"), before);
}

#[test]
fn dsse_needs_a_usable_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = secure_node(tmp.path());
    let out = run(agent()
        .args(["scan", "--format", "dsse", "--proc"])
        .arg(&proc_dir));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("keygen"), "{}", stderr(&out));
    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "not a key").expect("write");
    let out = run(agent()
        .args(["scan", "--format", "dsse", "--key"])
        .arg(&bad)
        .arg("--proc")
        .arg(&proc_dir));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.key"), "{}", stderr(&out));
}

#[test]
fn dsse_envelope_verifies_here_and_with_securesystemslib_and_not_after_tampering() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--config-dir=/etc/kubernetes/kubelet.conf.d",
        ],
        &[
            ("/var/lib/kubelet/config.yaml", HEAD),
            (
                "/etc/kubernetes/kubelet.conf.d/10-a.conf",
                &format!("{HEAD}readOnlyPort: 10255\n"),
            ),
        ],
    );
    let keys = tmp.path().join("keys");
    assert!(run(agent().args(["keygen", "--out"]).arg(&keys))
        .status
        .success());
    let out = run(agent()
        .args(["scan", "--format", "dsse", "--key"])
        .arg(keys.join("agent.key"))
        .arg("--proc")
        .arg(&proc_dir));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let envelope_path = tmp.path().join("envelope.json");
    std::fs::write(&envelope_path, &out.stdout).expect("write");

    let pem = std::fs::read_to_string(keys.join("agent.pub")).expect("pub");
    let key = verifying_key_from_pem(&pem).expect("key");
    let verified = verify(&out.stdout, &key).expect("verifies");
    let st = &verified.statement;
    assert_eq!(st.type_, "https://in-toto.io/Statement/v1");
    let names: Vec<&str> = st.subject.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"/var/lib/kubelet/config.yaml"), "{names:?}");
    assert!(
        names.contains(&"/etc/kubernetes/kubelet.conf.d/10-a.conf"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("usr/bin/kubelet")),
        "{names:?}"
    );
    let report = st.report().expect("a full report");
    let port = &report.settings["readOnlyPort"];
    assert_eq!(
        (port.value.clone(), port.source),
        (Value::from(10255), Source::DropIn)
    );

    // Tampering with one byte of the payload breaks our verification...
    let mut env: Value = serde_json::from_slice(&out.stdout).expect("json");
    let payload = env["payload"].as_str().expect("payload").to_string();
    let mut chars: Vec<char> = payload.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    env["payload"] = Value::String(chars.into_iter().collect());
    let tampered = serde_json::to_vec(&env).expect("json");
    assert!(verify(&tampered, &key).is_err());

    // ...and securesystemslib verifies the original and rejects a one-byte change.
    let py = run(Command::new(python())
        .arg(repo_root().join("scripts/dsse_interop.py"))
        .arg(&envelope_path)
        .arg(keys.join("agent.pub")));
    assert!(
        py.status.success(),
        "securesystemslib disagrees:\n{}{}",
        stdout(&py),
        stderr(&py)
    );
}

#[test]
fn a_real_process_named_kubelet_is_scanned_through_the_real_proc() {
    let tmp = tempfile::tempdir().expect("tmp");
    let kubelet = tmp.path().join("kubelet");
    // A symlink, not a copy: the kernel names the process after the path it executes
    // (`comm` is `kubelet`), and no writable descriptor of a fresh copy can leak into
    // another test's child and make the exec fail with ETXTBSY.
    std::os::unix::fs::symlink(bin("fake-kubelet"), &kubelet).expect("symlink");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{HEAD}authentication:\n  anonymous:\n    enabled: false\nrotateCertificates: true\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(&kubelet)
        .arg(format!("--config={}", config.display()))
        .arg("--read-only-port=10255")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start fake kubelet");
    let pid = child.id().to_string();
    let out = run(agent().args(["scan", "--format", "json", "--pid", &pid]));
    // Let the stand-in exit before asserting, so a failure does not leak a process.
    drop(child.stdin.take());
    let _ = child.wait();
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(r["kubelet"]["pid"].to_string(), pid);
    assert_eq!(r["kubelet"]["config_file"], config.display().to_string());
    assert_eq!(r["settings"]["readOnlyPort"]["source"], "flag");
    assert_eq!(
        r["settings"]["authentication.anonymous.enabled"]["source"],
        "config-file"
    );
    assert_eq!(r["settings"]["rotateCertificates"]["value"], true);
    let exe_digest = r["kubelet"]["exe_sha256"].as_str().expect("exe digest");
    assert_eq!(exe_digest.len(), 64);
    let _ = std::io::stdout().flush();
}

#[test]
fn kubelet_version_flag_decides_how_drop_ins_merge() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--config-dir=/etc/kubernetes/kubelet.conf.d",
        ],
        &[
            ("/var/lib/kubelet/config.yaml", HEAD),
            (
                "/etc/kubernetes/kubelet.conf.d/50-timeout.conf",
                &format!("{HEAD}streamingConnectionIdleTimeout: 0s\n"),
            ),
        ],
    );
    let setting = |version: Option<&str>| {
        let mut cmd = agent();
        cmd.args(["scan", "--format", "json", "--proc"])
            .arg(&proc_dir);
        if let Some(v) = version {
            cmd.args(["--kubelet-version", v]);
        }
        let r: Value = serde_json::from_slice(&run(&mut cmd).stdout).expect("json");
        let c425 = r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["cis"] == "4.2.5")
            .cloned()
            .expect("4.2.5");
        (
            r["settings"]["streamingConnectionIdleTimeout"]["value"].clone(),
            c425["status"].clone(),
        )
    };
    assert_eq!(
        setting(Some("1.31")),
        (Value::from("0s"), Value::from("fail"))
    );
    assert_eq!(
        setting(Some("v1.32.0")),
        (Value::from("4h0m0s"), Value::from("pass"))
    );
    assert_eq!(setting(None).1, Value::from("error"));
    let bad = run(agent()
        .args(["scan", "--kubelet-version", "two", "--proc"])
        .arg(&proc_dir));
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("1.31"), "{}", stderr(&bad));
}
