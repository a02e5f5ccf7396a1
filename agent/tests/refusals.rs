//! A configuration the kubelet refuses to start with is `error`, never a verdict: every
//! check of the report is `error`, naming the rule and the upstream function, and the
//! report carries a warning saying the same. One test per refusal rule, plus the
//! near-misses the kubelet accepts (which must keep their verdicts).

use nodeproof_agent::cmdline::parse_cmdline;
use nodeproof_agent::effective::{compute_for, Effective, FileInput};
use nodeproof_agent::node_files::NodeFiles;
use nodeproof_agent::scan::{assemble, Snapshot};
use nodeproof_proto::{NodeFacts, Report, Status};

const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

/// A compliant kubeadm-like config: every scored check passes on it unless a test changes it.
const GOOD: &str = "authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\n";

fn argv(extra: &str) -> Vec<String> {
    let mut v = vec![
        "/usr/bin/kubelet".to_string(),
        "--kubeconfig=/etc/kubernetes/kubelet.conf".to_string(),
        "--config=/var/lib/kubelet/config.yaml".to_string(),
    ];
    v.extend(extra.split_whitespace().map(str::to_string));
    v
}

fn eff(extra_flags: &str, extra_config: &str, minor: Option<u32>) -> Effective {
    let argv = argv(extra_flags);
    let cmd = parse_cmdline(&argv[1..]);
    let file = FileInput {
        path: "/var/lib/kubelet/config.yaml".to_string(),
        content: Ok(format!("{HEAD}{GOOD}{extra_config}")),
    };
    compute_for(&cmd, Some(&file), None, minor)
}

fn report(extra_flags: &str, extra_config: &str) -> Report {
    let snap = Snapshot {
        pid: 4242,
        argv: argv(extra_flags),
        config_file: Some(FileInput {
            path: "/var/lib/kubelet/config.yaml".to_string(),
            content: Ok(format!("{HEAD}{GOOD}{extra_config}")),
        }),
        dropins: None,
        kubeconfig: None,
        exe: Err("not read in this test".to_string()),
        kubelet_version: Some("v1.31.4".to_string()),
        node: NodeFacts::default(),
        files: Vec::new(),
        warnings: Vec::new(),
        node_files: NodeFiles::not_collected("not read in this test"),
        apiserver: nodeproof_agent::kube_apiserver::ApiServer::not_collected(
            "not read in this test",
        ),
        arg_origins: Vec::new(),
        distribution: None,
        embedded_in: None,
        undetermined: Default::default(),
        input_error: None,
        probe: None,
    };
    assemble(&snap, "2026-01-01T00:00:00Z".to_string())
}

/// Every kubelet-settings check is error, each note and one report warning name `function`
/// and `rule`. (The 4.1 file checks judge modes and owners, which a refused config does not
/// make unknown.)
fn assert_refused(report: &Report, function: &str, rule: &str) {
    assert!(!report.checks.is_empty());
    for c in report.checks.iter().filter(|c| c.cis.starts_with("4.2.")) {
        assert_eq!(c.status, Status::Error, "{} ({}): {}", c.id, c.cis, c.note);
        assert_eq!(c.actual, "unknown", "{}", c.id);
        assert!(c.note.contains(function), "{}: {}", c.id, c.note);
        assert!(c.note.contains(rule), "{}: {}", c.id, c.note);
        assert!(c.note.contains("refuses"), "{}: {}", c.id, c.note);
    }
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains(function) && w.message.contains(rule)),
        "{:#?}",
        report.warnings
    );
}

fn assert_accepted(report: &Report) {
    assert!(
        report
            .checks
            .iter()
            .all(|c| !c.note.contains("refuses this")),
        "{:#?}",
        report.checks
    );
    assert!(report
        .warnings
        .iter()
        .all(|w| !w.message.contains("refuses this")));
}

#[test]
fn compliant_baseline_is_accepted_and_passes() {
    let r = report("", "");
    assert_accepted(&r);
    let c = r.checks.iter().find(|c| c.cis == "4.2.1").unwrap();
    assert_eq!(c.status, Status::Pass);
}

#[test]
fn server_tls_bootstrap_without_its_gate_is_refused() {
    let r = report(
        "",
        "serverTLSBootstrap: true\nfeatureGates:\n  RotateKubeletServerCertificate: false\n",
    );
    assert_refused(
        &r,
        "ValidateKubeletConfiguration (pkg/kubelet/apis/config/validation/validation.go)",
        "requires feature gate RotateKubeletServerCertificate, which is off",
    );
    // The gate off on the command line refuses the same file too.
    let r = report(
        "--feature-gates=RotateKubeletServerCertificate=false",
        "serverTLSBootstrap: true\n",
    );
    assert_refused(
        &r,
        "ValidateKubeletConfiguration",
        "RotateKubeletServerCertificate",
    );
    // With the gate at its default (on), serverTLSBootstrap is fine.
    assert_accepted(&report("", "serverTLSBootstrap: true\n"));
}

#[test]
fn miscased_feature_gate_in_file_is_refused() {
    let r = report(
        "",
        "featureGates:\n  rotateKubeletServerCertificate: true\n",
    );
    assert_refused(
        &r,
        "featureGate.SetFromMap",
        "unrecognized feature gate: rotateKubeletServerCertificate",
    );
}

#[test]
fn miscased_feature_gate_on_command_line_is_refused() {
    let r = report("--feature-gates=ROTATEKUBELETSERVERCERTIFICATE=true", "");
    assert_refused(
        &r,
        "featureGate.SetFromMap",
        "unrecognized feature gate: ROTATEKUBELETSERVERCERTIFICATE",
    );
}

#[test]
fn gate_unknown_to_nodeproof_is_a_warning_not_a_refusal() {
    let e = eff("--feature-gates=SomeFutureGate=true", "", Some(36));
    assert!(e.refused.is_none(), "{:?}", e.refused);
    let w = e
        .warnings
        .iter()
        .find(|w| w.message.contains("SomeFutureGate"))
        .expect("a warning names the gate");
    assert!(
        w.message.contains("cannot tell whether kubelet 1.36"),
        "{}",
        w.message
    );
}

#[test]
fn empty_authorization_mode_flag_is_refused() {
    // `--authorization-mode=$MODE` with MODE unset: flags apply after defaulting, so the
    // empty mode reaches BuildAuthz.
    let r = report("--authorization-mode=", "");
    assert_refused(
        &r,
        "BuildAuthz (cmd/kubelet/app/auth.go)",
        "no authorization mode specified",
    );
}

#[test]
fn empty_authorization_mode_in_file_is_defaulted_not_refused() {
    // In the file, "" is a zero value and defaulting makes it Webhook.
    let r = report("", "authorization:\n  mode: \"\"\n");
    assert_accepted(&r);
}

#[test]
fn unknown_authorization_mode_is_refused() {
    for (flags, config, mode) in [
        ("--authorization-mode=Node,RBAC", "", "Node,RBAC"),
        ("", "authorization:\n  mode: webhook\n", "webhook"),
        ("--authorization-mode=AlwaysDeny", "", "AlwaysDeny"),
    ] {
        let r = report(flags, config);
        assert_refused(
            &r,
            "BuildAuthz",
            &format!("unknown authorization mode {mode}"),
        );
    }
}

#[test]
fn unknown_cipher_suite_is_refused() {
    let r = report(
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA384",
        "",
    );
    assert_refused(
        &r,
        "cliflag.TLSCipherSuites",
        "Cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA384 not supported or doesn't exist",
    );
    // Names are case sensitive.
    let r = report(
        "",
        "tlsCipherSuites: [tls_ecdhe_rsa_with_aes_128_gcm_sha256]\n",
    );
    assert_refused(
        &r,
        "cliflag.TLSCipherSuites",
        "tls_ecdhe_rsa_with_aes_128_gcm_sha256",
    );
}

#[test]
fn insecure_and_tls13_cipher_names_are_accepted() {
    // cliflag accepts Go's insecure suites (it only logs them) and the TLS 1.3 names.
    let r = report(
        "",
        "tlsCipherSuites: [TLS_RSA_WITH_3DES_EDE_CBC_SHA, TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n",
    );
    assert_accepted(&r);
}

#[test]
fn unknown_tls_version_is_refused() {
    let r = report("--tls-min-version=TLS1.2", "");
    assert_refused(&r, "cliflag.TLSVersion", "unknown tls version \"TLS1.2\"");
    let r = report("", "tlsMinVersion: versiontls12\n");
    assert_refused(&r, "cliflag.TLSVersion", "versiontls12");
    assert_accepted(&report("", "tlsMinVersion: VersionTLS13\n"));
}

#[test]
fn out_of_range_ports_are_refused() {
    for (flags, config, rule) in [
        (
            "--port=0",
            "",
            "port (--port) 0 must be between 1 and 65535, inclusive",
        ),
        (
            "",
            "port: 70000\n",
            "port (--port) 70000 must be between 1 and 65535",
        ),
        (
            "--read-only-port=65536",
            "",
            "readOnlyPort (--read-only-port) 65536 must be between 0 and 65535",
        ),
        (
            "",
            "healthzPort: -1\n",
            "healthzPort (--healthz-port) -1 must be between 1 and 65535",
        ),
    ] {
        let r = report(flags, config);
        assert_refused(&r, "ValidateKubeletConfiguration", rule);
    }
    // port: 0 in the file is a zero value that defaulting replaces with 10250.
    assert_accepted(&report("", "port: 0\nreadOnlyPort: 0\nhealthzPort: 0\n"));
}

#[test]
fn negative_event_qps_and_burst_are_refused() {
    let r = report("--event-qps=-1", "");
    assert_refused(
        &r,
        "ValidateKubeletConfiguration",
        "eventRecordQPS (--event-qps) -1 must not be a negative number",
    );
    let r = report("", "eventBurst: -5\n");
    assert_refused(
        &r,
        "ValidateKubeletConfiguration",
        "eventBurst (--event-burst) -5",
    );
}

#[test]
fn whitespace_hostname_override_is_refused() {
    // `report` splits its flags on whitespace, so the argument is built here.
    let argv: Vec<String> = vec![
        "/usr/bin/kubelet".into(),
        "--kubeconfig=/etc/kubernetes/kubelet.conf".into(),
        "--config=/var/lib/kubelet/config.yaml".into(),
        "--hostname-override=  ".into(),
    ];
    let snap = Snapshot {
        pid: 1,
        argv,
        config_file: Some(FileInput {
            path: "/var/lib/kubelet/config.yaml".to_string(),
            content: Ok(format!("{HEAD}{GOOD}")),
        }),
        dropins: None,
        kubeconfig: None,
        exe: Err("not read".to_string()),
        kubelet_version: None,
        node: NodeFacts::default(),
        files: Vec::new(),
        warnings: Vec::new(),
        node_files: NodeFiles::not_collected("not read in this test"),
        apiserver: nodeproof_agent::kube_apiserver::ApiServer::not_collected(
            "not read in this test",
        ),
        arg_origins: Vec::new(),
        distribution: None,
        embedded_in: None,
        undetermined: Default::default(),
        input_error: None,
        probe: None,
    };
    let r = assemble(&snap, "2026-01-01T00:00:00Z".to_string());
    assert_refused(&r, "GetHostname", "empty hostname is invalid");
}

#[test]
fn empty_hostname_override_overrides_nothing_and_passes() {
    // `--hostname-override=$NODE_NAME` with the variable unset: GetHostname falls back to
    // the node's hostname, so the node registers under its own name.
    let r = report("--hostname-override=", "");
    assert_accepted(&r);
    let c = r.checks.iter().find(|c| c.cis == "4.2.7").unwrap();
    assert_eq!(c.status, Status::Pass, "{}", c.note);
    assert!(c.note.contains("GetHostname"), "{}", c.note);
}

#[test]
fn unreadable_values_are_not_validated() {
    // A --port flag that does not parse is unknown, not refused by our rules (the
    // existing "cannot be parsed" error stands for its check).
    let e = eff("--port=abc", "", Some(31));
    assert!(e.refused.is_none(), "{:?}", e.refused);
}

#[test]
fn several_rules_are_all_named() {
    let r = report("--authorization-mode= --event-qps=-2", "");
    assert_refused(&r, "BuildAuthz", "no authorization mode specified");
    assert_refused(&r, "ValidateKubeletConfiguration", "eventRecordQPS");
}

/// A drop-in's `authorization: {mode: ""}` (what marshalling an empty v1beta1 struct
/// writes): 1.30-1.31 merge drop-ins without defaulting, so the empty mode reaches
/// BuildAuthz and the kubelet refuses to start; 1.32+ default the merged result to
/// Webhook. Unknown version: the two merges disagree, so the mode is unknown and nothing
/// is refused (4.2.2 is error on its own).
#[test]
fn dropin_empty_authorization_mode_is_refused_only_before_1_32() {
    use nodeproof_agent::effective::DropInDir;
    let argv = argv("--config-dir=/etc/kubernetes/kubelet.conf.d");
    let cmd = parse_cmdline(&argv[1..]);
    let file = FileInput {
        path: "/var/lib/kubelet/config.yaml".to_string(),
        content: Ok(format!("{HEAD}{GOOD}")),
    };
    let dir = DropInDir {
        dir: "/etc/kubernetes/kubelet.conf.d".to_string(),
        files: Ok(vec![FileInput {
            path: "/etc/kubernetes/kubelet.conf.d/10-authz.conf".to_string(),
            content: Ok(format!("{HEAD}authorization:\n  mode: \"\"\n")),
        }]),
    };
    let e31 = compute_for(&cmd, Some(&file), Some(&dir), Some(31));
    let refused = e31.refused.as_deref().expect("1.31 refuses");
    assert!(
        refused.contains("BuildAuthz") && refused.contains("no authorization mode specified"),
        "{refused}"
    );
    assert!(refused.contains("10-authz.conf"), "{refused}");
    let e32 = compute_for(&cmd, Some(&file), Some(&dir), Some(32));
    assert!(e32.refused.is_none(), "{:?}", e32.refused);
    assert_eq!(
        e32.lookup("authorization.mode").unwrap().value,
        serde_json::json!("Webhook")
    );
    let unknown = compute_for(&cmd, Some(&file), Some(&dir), None);
    assert!(unknown.refused.is_none(), "{:?}", unknown.refused);
    assert!(unknown.lookup("authorization.mode").is_err());
}

/// `featureGates: {SeccompDefault: true}` is common in configurations written for 1.25-1.27
/// clusters; the gate was removed after 1.28, so a 1.30+ kubelet refuses to start with it.
#[test]
fn gate_removed_before_the_kubelet_version_is_refused() {
    let r = report("", "featureGates:\n  SeccompDefault: true\n");
    // report() scans a v1.31.4 kubelet.
    assert_refused(
        &r,
        "featureGate.SetFromMap",
        "unrecognized feature gate: SeccompDefault",
    );
    assert!(
        r.checks[0].note.contains("removed after Kubernetes 1.28"),
        "{}",
        r.checks[0].note
    );
    let e = eff("--feature-gates=DynamicKubeletConfig=false", "", Some(30));
    assert!(e
        .refused
        .as_deref()
        .unwrap()
        .contains("DynamicKubeletConfig"));
    // On a kubelet that still knows the gate, nothing is refused.
    assert!(eff("", "featureGates:\n  SeccompDefault: true\n", Some(28))
        .refused
        .is_none());
}

#[test]
fn removed_gate_with_unknown_version_is_a_warning() {
    let e = eff("", "featureGates:\n  KubeletPodResources: true\n", None);
    assert!(e.refused.is_none(), "{:?}", e.refused);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.message.contains("KubeletPodResources")
                && w.message.contains("removed after Kubernetes 1.29")),
        "{:#?}",
        e.warnings
    );
}
