//! One test per rule of the kubelet's effective-configuration algorithm, on the pure API:
//! a command line and file contents in, settings with provenance out.

use nodeproof_agent::cmdline::parse_cmdline;
use nodeproof_agent::effective::{compute, compute_for, DropInDir, Effective, FileInput};
use nodeproof_proto::Source;
use serde_json::{json, Value};

const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn file(path: &str, text: &str) -> FileInput {
    FileInput {
        path: path.to_string(),
        content: Ok(text.to_string()),
    }
}

fn run(cmdline: &str, config: Option<FileInput>, dropins: Option<DropInDir>) -> Effective {
    let cmd = parse_cmdline(&args(cmdline));
    compute(&cmd, config.as_ref(), dropins.as_ref())
}

/// For a kubelet of a known minor version (drop-ins merge differently before 1.32).
fn run_v(
    minor: u32,
    cmdline: &str,
    config: Option<FileInput>,
    dropins: Option<DropInDir>,
) -> Effective {
    let cmd = parse_cmdline(&args(cmdline));
    compute_for(&cmd, config.as_ref(), dropins.as_ref(), Some(minor))
}

fn value(eff: &Effective, path: &str) -> Value {
    eff.lookup(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .value
        .clone()
}

fn source(eff: &Effective, path: &str) -> Source {
    eff.lookup(path).expect(path).source
}

fn dropins(dir: &str, files: Vec<FileInput>) -> Option<DropInDir> {
    Some(DropInDir {
        dir: dir.to_string(),
        files: Ok(files),
    })
}

#[test]
fn flags_only_node_gets_the_legacy_defaults() {
    let eff = run("--kubeconfig=/etc/kubernetes/kubelet.conf", None, None);
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
    assert_eq!(value(&eff, "authentication.webhook.enabled"), json!(false));
    assert_eq!(value(&eff, "authorization.mode"), json!("AlwaysAllow"));
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    let s = eff.lookup("readOnlyPort").expect("port");
    assert_eq!(s.source, Source::Default);
    assert!(s.origin.contains("legacy"), "{}", s.origin);
    // Everything else is the v1beta1 default.
    assert_eq!(value(&eff, "port"), json!(10250));
    assert_eq!(
        value(&eff, "streamingConnectionIdleTimeout"),
        json!("4h0m0s")
    );
    assert_eq!(value(&eff, "authentication.x509.clientCAFile"), json!(""));
    assert_eq!(value(&eff, "tlsCipherSuites"), json!([]));
    assert_eq!(value(&eff, "eventRecordQPS"), json!(50));
    assert_eq!(value(&eff, "podPidsLimit"), json!(-1));
}

#[test]
fn config_file_defaults_are_secure_and_absent_fields_are_defaults() {
    let eff = run(
        "--config=/var/lib/kubelet/config.yaml",
        Some(file("/var/lib/kubelet/config.yaml", HEAD)),
        None,
    );
    assert_eq!(
        value(&eff, "authentication.anonymous.enabled"),
        json!(false)
    );
    assert_eq!(value(&eff, "authentication.webhook.enabled"), json!(true));
    assert_eq!(value(&eff, "authorization.mode"), json!("Webhook"));
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(source(&eff, "readOnlyPort"), Source::Default);
    assert!(eff.config_error.is_none());
}

#[test]
fn zero_values_of_non_pointer_fields_take_the_default() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}streamingConnectionIdleTimeout: 0s\nport: 0\nauthorization:\n  mode: \"\"\nauthentication:\n  webhook:\n    cacheTTL: 0s\n"),
        )),
        None,
    );
    assert_eq!(
        value(&eff, "streamingConnectionIdleTimeout"),
        json!("4h0m0s")
    );
    assert_eq!(
        source(&eff, "streamingConnectionIdleTimeout"),
        Source::Default
    );
    assert!(eff
        .lookup("streamingConnectionIdleTimeout")
        .expect("s")
        .origin
        .contains("zero value"));
    assert_eq!(value(&eff, "port"), json!(10250));
    assert_eq!(value(&eff, "authorization.mode"), json!("Webhook"));
    assert_eq!(
        value(&eff, "authentication.webhook.cacheTTL"),
        json!("2m0s")
    );
}

#[test]
fn a_zero_value_equal_to_the_default_stays_the_files() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}rotateCertificates: false\nreadOnlyPort: 0\n"),
        )),
        None,
    );
    let s = eff.lookup("rotateCertificates").expect("r");
    assert_eq!(
        (s.source, s.origin.as_str()),
        (Source::ConfigFile, "/k.yaml")
    );
    assert_eq!(source(&eff, "readOnlyPort"), Source::ConfigFile);
}

#[test]
fn pointer_fields_keep_an_explicit_zero_or_false() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}eventRecordQPS: 0\nmakeIPTablesUtilChains: false\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: false\n"),
        )),
        None,
    );
    assert_eq!(value(&eff, "eventRecordQPS"), json!(0));
    assert_eq!(source(&eff, "eventRecordQPS"), Source::ConfigFile);
    assert_eq!(value(&eff, "makeIPTablesUtilChains"), json!(false));
    assert_eq!(value(&eff, "authentication.webhook.enabled"), json!(false));
    assert_eq!(
        source(&eff, "authentication.webhook.enabled"),
        Source::ConfigFile
    );
}

#[test]
fn flags_override_the_config_file() {
    let eff = run(
        "--config=/k.yaml --read-only-port=10255 --anonymous-auth=true",
        Some(file("/k.yaml", &format!("{HEAD}readOnlyPort: 0\n"))),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    let s = eff.lookup("readOnlyPort").expect("port");
    assert_eq!(s.source, Source::Flag);
    assert_eq!(s.origin, "--read-only-port=10255");
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
}

#[test]
fn the_config_file_origin_is_its_path() {
    let eff = run(
        "--config /etc/k.yaml",
        Some(file("/etc/k.yaml", &format!("{HEAD}readOnlyPort: 10255\n"))),
        None,
    );
    let s = eff.lookup("readOnlyPort").expect("port");
    assert_eq!(
        (s.source, s.origin.as_str()),
        (Source::ConfigFile, "/etc/k.yaml")
    );
}

#[test]
fn relative_paths_in_the_file_resolve_against_its_directory() {
    let eff = run(
        "--config=/etc/kubernetes/kubelet/config.yaml",
        Some(file(
            "/etc/kubernetes/kubelet/config.yaml",
            &format!("{HEAD}authentication:\n  x509:\n    clientCAFile: ../pki/ca.crt\ntlsCertFile: /abs/cert.pem\ntlsPrivateKeyFile: key.pem\n"),
        )),
        None,
    );
    assert_eq!(
        value(&eff, "authentication.x509.clientCAFile"),
        json!("/etc/kubernetes/pki/ca.crt")
    );
    assert_eq!(value(&eff, "tlsCertFile"), json!("/abs/cert.pem"));
    assert_eq!(
        value(&eff, "tlsPrivateKeyFile"),
        json!("/etc/kubernetes/kubelet/key.pem")
    );
}

#[test]
fn json_config_files_decode_too() {
    let eff = run(
        "--config=/etc/kubernetes/kubelet/config.json",
        Some(file(
            "/etc/kubernetes/kubelet/config.json",
            r#"{"kind":"KubeletConfiguration","apiVersion":"kubelet.config.k8s.io/v1beta1","readOnlyPort":0,"authentication":{"anonymous":{"enabled":false},"webhook":{"cacheTTL":"2m0s","enabled":true},"x509":{"clientCAFile":"/etc/kubernetes/pki/ca.crt"}},"authorization":{"mode":"Webhook"}}"#,
        )),
        None,
    );
    assert_eq!(
        value(&eff, "authentication.x509.clientCAFile"),
        json!("/etc/kubernetes/pki/ca.crt")
    );
    assert_eq!(source(&eff, "authorization.mode"), Source::ConfigFile);
}

#[test]
fn miscased_field_in_the_config_file_is_ignored_and_warned() {
    let eff = run(
        "--config=/k.yaml",
        Some(file("/k.yaml", &format!("{HEAD}ReadOnlyPort: 10255\n"))),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert!(eff
        .warnings
        .iter()
        .any(|w| w.field.as_deref() == Some("ReadOnlyPort") && w.message.contains("readOnlyPort")));
}

#[test]
fn misplaced_authorization_mode_is_ignored_with_a_suggestion() {
    // The seed document's own mistake: `authentication.mode` instead of authorization.mode.
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}authentication:\n  mode: AlwaysAllow\n"),
        )),
        None,
    );
    assert_eq!(value(&eff, "authorization.mode"), json!("Webhook"));
    let w = eff
        .warnings
        .iter()
        .find(|w| w.field.as_deref() == Some("authentication.mode"))
        .expect("warning");
    assert!(w.message.contains("authorization.mode"), "{}", w.message);
}

#[test]
fn a_broken_config_file_makes_non_flag_values_unknown() {
    let eff = run(
        "--config=/k.yaml --anonymous-auth=false",
        Some(file("/k.yaml", &format!("{HEAD}readOnlyPort: \"0\"\n"))),
        None,
    );
    let err = eff.lookup("readOnlyPort").expect_err("unknown");
    assert!(err.contains("readOnlyPort"), "{err}");
    // A flag still decides its own setting.
    assert_eq!(
        value(&eff, "authentication.anonymous.enabled"),
        json!(false)
    );
    assert!(eff
        .config_error
        .as_deref()
        .unwrap_or("")
        .contains("/k.yaml"));
}

#[test]
fn an_unreadable_config_file_makes_non_flag_values_unknown() {
    let eff = run(
        "--config=/missing.yaml",
        Some(FileInput {
            path: "/missing.yaml".into(),
            content: Err("No such file or directory".into()),
        }),
        None,
    );
    assert!(eff.lookup("authorization.mode").is_err());
}

#[test]
fn drop_ins_merge_in_lexical_order_and_override_the_file() {
    let eff = run(
        "--config=/etc/k.yaml --config-dir=/etc/k.d",
        Some(file(
            "/etc/k.yaml",
            &format!("{HEAD}readOnlyPort: 0\neventRecordQPS: 5\n"),
        )),
        dropins(
            "/etc/k.d",
            vec![
                file(
                    "/etc/k.d/10-a.conf",
                    &format!("{HEAD}readOnlyPort: 10255\nauthorization:\n  mode: AlwaysAllow\n"),
                ),
                file(
                    "/etc/k.d/20-b.conf",
                    &format!("{HEAD}authorization:\n  mode: Webhook\n"),
                ),
                file(
                    "/etc/k.d/sub/00-c.conf",
                    &format!("{HEAD}eventRecordQPS: 7\n"),
                ),
                file("/etc/k.d/README.md", "readOnlyPort: 1\n"),
                file(
                    "/etc/k.d/30-d.conf.bak",
                    &format!("{HEAD}readOnlyPort: 1\n"),
                ),
            ],
        ),
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    let s = eff.lookup("readOnlyPort").expect("port");
    assert_eq!(
        (s.source, s.origin.as_str()),
        (Source::DropIn, "/etc/k.d/10-a.conf")
    );
    assert_eq!(value(&eff, "authorization.mode"), json!("Webhook"));
    assert_eq!(
        eff.lookup("authorization.mode").expect("m").origin,
        "/etc/k.d/20-b.conf"
    );
    assert_eq!(value(&eff, "eventRecordQPS"), json!(7));
    assert!(eff.config_error.is_none(), "{:?}", eff.config_error);
}

#[test]
fn drop_ins_deep_merge_objects_and_replace_lists() {
    let eff = run(
        "--config=/k.yaml --config-dir=/d",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}tlsCipherSuites: [TLS_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_256_CBC_SHA]\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /ca.crt\n"),
        )),
        dropins(
            "/d",
            vec![file("/d/a.conf", &format!("{HEAD}tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\nauthentication:\n  anonymous:\n    enabled: true\n"))],
        ),
    );
    assert_eq!(
        value(&eff, "tlsCipherSuites"),
        json!(["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
    );
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
    assert_eq!(
        value(&eff, "authentication.x509.clientCAFile"),
        json!("/ca.crt")
    );
    assert_eq!(
        source(&eff, "authentication.x509.clientCAFile"),
        Source::ConfigFile
    );
}

#[test]
fn drop_in_zero_values_are_defaulted_from_1_32_but_kept_before() {
    let zero = || {
        (
            Some(file("/k.yaml", HEAD)),
            dropins(
                "/d",
                vec![file(
                    "/d/a.conf",
                    &format!("{HEAD}streamingConnectionIdleTimeout: 0s\n"),
                )],
            ),
        )
    };
    // 1.32+ (kubernetes#127421) defaults the merged v1beta1 config again: 0s becomes 4h.
    let (c, d) = zero();
    let eff = run_v(32, "--config=/k.yaml --config-dir=/d", c, d);
    assert_eq!(
        value(&eff, "streamingConnectionIdleTimeout"),
        json!("4h0m0s")
    );
    let s = eff.lookup("streamingConnectionIdleTimeout").expect("s");
    assert_eq!(s.source, Source::Default);
    assert!(s.origin.contains("/d/a.conf"), "{}", s.origin);
    // 1.30-1.31 decode into the internal struct without defaulting: no idle timeout.
    let (c, d) = zero();
    let eff = run_v(31, "--config=/k.yaml --config-dir=/d", c, d);
    assert_eq!(value(&eff, "streamingConnectionIdleTimeout"), json!("0s"));
    assert_eq!(
        source(&eff, "streamingConnectionIdleTimeout"),
        Source::DropIn
    );
    // Unknown version: the value is unknown, and says why.
    let (c, d) = zero();
    let eff = run("--config=/k.yaml --config-dir=/d", c, d);
    let err = eff
        .lookup("streamingConnectionIdleTimeout")
        .expect_err("ambiguous");
    assert!(
        err.contains("1.32") && err.contains("--kubelet-version"),
        "{err}"
    );
    // Settings the drop-in does not touch are unaffected.
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
}

#[test]
fn a_drop_in_null_resets_a_value_to_the_default_from_1_32_and_does_nothing_before() {
    // Merge-patch null deletes the key. 1.32+ decode a fresh struct and default it, which
    // closes the legacy read-only port; 1.30-1.31 decode into the struct as it was.
    let nulls = || {
        dropins(
            "/d",
            vec![file(
                "/d/a.conf",
                &format!("{HEAD}readOnlyPort: null\nauthorization:\n  mode: null\n"),
            )],
        )
    };
    let eff = run_v(33, "--config-dir=/d", None, nulls());
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(value(&eff, "authorization.mode"), json!("Webhook"));
    assert_eq!(source(&eff, "authorization.mode"), Source::Default);
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
    let eff = run_v(30, "--config-dir=/d", None, nulls());
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    assert_eq!(value(&eff, "authorization.mode"), json!("AlwaysAllow"));
}

#[test]
fn drop_ins_without_config_patch_the_legacy_defaults() {
    // rke2 runs the kubelet with --config-dir and no --config.
    let eff = run(
        "--config-dir=/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
        None,
        dropins(
            "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
            vec![file(
                "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf",
                &format!("{HEAD}authentication:\n  anonymous:\n    enabled: false\n"),
            )],
        ),
    );
    assert_eq!(
        value(&eff, "authentication.anonymous.enabled"),
        json!(false)
    );
    // Not patched: the legacy flag defaults remain.
    assert_eq!(value(&eff, "authorization.mode"), json!("AlwaysAllow"));
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
}

#[test]
fn drop_in_keys_match_case_insensitively() {
    // The kubelet decodes merged drop-ins with Go's encoding/json, which matches keys
    // case-insensitively: unlike in the config file, this applies (on every version, since
    // the base's readOnlyPort is 0: left out by omitempty on 1.32+, and "ReadOnlyPort"
    // is replaced exactly on 1.30-1.31).
    for minor in [31, 32] {
        let eff = run_v(
            minor,
            "--config=/k.yaml --config-dir=/d",
            Some(file("/k.yaml", HEAD)),
            dropins(
                "/d",
                vec![file("/d/a.conf", &format!("{HEAD}ReadOnlyPort: 10255\n"))],
            ),
        );
        assert_eq!(value(&eff, "readOnlyPort"), json!(10255), "1.{minor}");
        assert!(eff
            .warnings
            .iter()
            .any(|w| w.message.contains("case-insensitively")));
    }
}

#[test]
fn a_miscased_drop_in_key_loses_to_the_properly_spelled_base_key_from_1_32() {
    // 1.32+: merged keys are sorted bytewise, "ReadOnlyPort" < "readOnlyPort", and the
    // base's own readOnlyPort (10255, not a zero value, so present) is decoded last and
    // wins: this drop-in does not close the port. 1.30-1.31: the base key is the Go name
    // "ReadOnlyPort" itself, which the drop-in replaces: the port closes.
    let run_it = |minor| {
        run_v(
            minor,
            "--config=/k.yaml --config-dir=/d",
            Some(file("/k.yaml", &format!("{HEAD}readOnlyPort: 10255\n"))),
            dropins(
                "/d",
                vec![file("/d/a.conf", &format!("{HEAD}ReadOnlyPort: 0\n"))],
            ),
        )
    };
    let eff = run_it(32);
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    assert_eq!(source(&eff, "readOnlyPort"), Source::ConfigFile);
    let eff = run_it(31);
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(source(&eff, "readOnlyPort"), Source::DropIn);
}

#[test]
fn drop_in_problems_are_fatal_like_in_the_kubelet() {
    for (name, text) in [
        (
            "no kind",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nreadOnlyPort: 0\n".to_string(),
        ),
        (
            "wrong version",
            "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n".to_string(),
        ),
        (
            "duplicate",
            format!("{HEAD}readOnlyPort: 0\nreadOnlyPort: 1\n"),
        ),
        ("type", format!("{HEAD}readOnlyPort: zero\n")),
        ("empty", String::new()),
    ] {
        let eff = run(
            "--config=/k.yaml --config-dir=/d",
            Some(file("/k.yaml", HEAD)),
            dropins("/d", vec![file("/d/a.conf", &text)]),
        );
        assert!(eff.config_error.is_some(), "{name}");
        assert!(eff.lookup("readOnlyPort").is_err(), "{name}");
    }
    let eff = run(
        "--config-dir=/missing",
        None,
        Some(DropInDir {
            dir: "/missing".into(),
            files: Err("No such file or directory".into()),
        }),
    );
    assert!(eff
        .config_error
        .as_deref()
        .unwrap_or("")
        .contains("/missing"));
}

#[test]
fn flags_override_drop_ins() {
    let eff = run(
        "--config-dir=/d --read-only-port=0",
        None,
        dropins(
            "/d",
            vec![file("/d/a.conf", &format!("{HEAD}readOnlyPort: 10255\n"))],
        ),
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(source(&eff, "readOnlyPort"), Source::Flag);
}

#[test]
fn feature_gates_merge_per_key_with_the_command_line_winning() {
    let eff = run(
        "--config=/k.yaml --feature-gates=RotateKubeletServerCertificate=false,A=true --feature-gates B=false",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}featureGates:\n  RotateKubeletServerCertificate: true\n  C: true\n  A: false\n"),
        )),
        None,
    );
    assert_eq!(
        value(&eff, "featureGates.RotateKubeletServerCertificate"),
        json!(false)
    );
    assert_eq!(
        source(&eff, "featureGates.RotateKubeletServerCertificate"),
        Source::Flag
    );
    assert_eq!(value(&eff, "featureGates.A"), json!(true));
    assert_eq!(value(&eff, "featureGates.B"), json!(false));
    assert_eq!(value(&eff, "featureGates.C"), json!(true));
    assert_eq!(source(&eff, "featureGates.C"), Source::ConfigFile);
}

#[test]
fn list_flags_replace_the_file_and_append_across_uses() {
    let eff = run(
        "--config=/k.yaml --tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 --tls-cipher-suites TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some(file("/k.yaml", &format!("{HEAD}tlsCipherSuites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"))),
        None,
    );
    assert_eq!(
        value(&eff, "tlsCipherSuites"),
        json!([
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        ])
    );
}

#[test]
fn seccomp_default_is_the_flag_or_the_file() {
    let with = |flag: &str, file_value: &str| {
        let eff = run(
            &format!("--config=/k.yaml {flag}"),
            Some(file(
                "/k.yaml",
                &format!("{HEAD}seccompDefault: {file_value}\n"),
            )),
            None,
        );
        value(&eff, "seccompDefault")
    };
    assert_eq!(with("--seccomp-default", "false"), json!(true));
    assert_eq!(with("--seccomp-default=false", "true"), json!(true));
    assert_eq!(with("--seccomp-default=false", "false"), json!(false));
    assert_eq!(with("", "true"), json!(true));
}

#[test]
fn go_integer_prefixes_and_durations_on_the_command_line() {
    let eff = run(
        "--read-only-port=0x0 --event-qps=010 --streaming-connection-idle-timeout=30m",
        None,
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(value(&eff, "eventRecordQPS"), json!(8));
    assert_eq!(
        value(&eff, "streamingConnectionIdleTimeout"),
        json!("30m0s")
    );
}

#[test]
fn an_unparsable_flag_value_makes_its_setting_unknown() {
    let eff = run("--read-only-port=zero", None, None);
    let err = eff.lookup("readOnlyPort").expect_err("unknown");
    assert!(err.contains("--read-only-port=zero"), "{err}");
}

#[test]
fn a_stray_boolean_is_a_warning_and_the_flag_is_true() {
    let eff = run("--anonymous-auth false", None, None);
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
    assert!(eff
        .warnings
        .iter()
        .any(|w| w.message.contains("stray argument")));
}

#[test]
fn flag_only_settings_are_reported_when_given() {
    let eff = run(
        "--hostname-override=node-1 --config=/k.yaml",
        Some(file("/k.yaml", HEAD)),
        None,
    );
    let s = eff.flag("--hostname-override").expect("given");
    assert_eq!(s.value, json!("node-1"));
    assert!(eff.flag("--node-ip").is_none());
}

// ---- Decoding rules (docs/effective-config.md, "Decoding rules") ----------------------
//
// Each test is a config that a reader not following the kubelet's Go libraries would
// misread; the check on the setting must see what the kubelet sees.

fn status(eff: &Effective, cis: &str) -> nodeproof_proto::Status {
    nodeproof_agent::checks::evaluate(eff)
        .into_iter()
        .find(|r| r.cis == cis)
        .unwrap_or_else(|| panic!("no check {cis}"))
        .status
}

/// go-yaml v2 `(*decoder).mapping`/`merge`: a `<<` merge placed after `readOnlyPort: 0`
/// overwrites it, so the read-only port is open (a spec-following reader says 0). 4.2.4
/// is a Manual check, so an open port is `warn`.
#[test]
fn merge_key_after_read_only_port_opens_the_port() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!(
                "{HEAD}x-common: &common\n  readOnlyPort: 10255\nreadOnlyPort: 0\n<<: *common\n"
            ),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Fail);
    // Written after the merge, the file's own key wins.
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!(
                "{HEAD}x-common: &common\n  readOnlyPort: 10255\n<<: *common\nreadOnlyPort: 0\n"
            ),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Pass);
}

/// go-yaml v2 `(*decoder).scalar` + `resolve`: `!!int "10255"` is the integer 10255 and
/// `!!bool "true"` is true, so these set the port and anonymous auth (a reader that types
/// every quoted scalar as a string would call the file broken).
#[test]
fn core_tags_on_quoted_scalars_set_the_port_and_anonymous_auth() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!(
                "{HEAD}readOnlyPort: !!int \"10255\"\nauthentication:\n  anonymous:\n    enabled: !!bool \"true\"\n"
            ),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    assert_eq!(value(&eff, "authentication.anonymous.enabled"), json!(true));
    assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Fail);
    assert_eq!(status(&eff, "4.2.1"), nodeproof_proto::Status::Fail);
}

/// Go's encoding/json `foldName` (fold.go, `foldRune` over `unicode.SimpleFold`): in the
/// merged drop-ins `anonymouſ` (U+017F) is `anonymous`, and it sorts after the base's
/// `anonymous`, so it is decoded last and wins on every version.
#[test]
fn long_s_in_a_drop_in_key_enables_anonymous_auth() {
    for minor in [31, 32] {
        let eff = run_v(
            minor,
            "--config=/k.yaml --config-dir=/d",
            Some(file(
                "/k.yaml",
                &format!("{HEAD}authentication:\n  anonymous:\n    enabled: false\n"),
            )),
            dropins(
                "/d",
                vec![file(
                    "/d/a.conf",
                    &format!("{HEAD}authentication:\n  anonymou\u{17F}:\n    enabled: true\n"),
                )],
            ),
        );
        assert_eq!(
            value(&eff, "authentication.anonymous.enabled"),
            json!(true),
            "1.{minor}"
        );
        assert_eq!(
            source(&eff, "authentication.anonymous.enabled"),
            Source::DropIn
        );
        assert_eq!(
            status(&eff, "4.2.1"),
            nodeproof_proto::Status::Fail,
            "1.{minor}"
        );
    }
}

/// Go's encoding/json `foldName`: U+212A KELVIN SIGN folds to `K`, so
/// `ma\u{212A}eIPTablesUtilChains` in a drop-in sets makeIPTablesUtilChains.
#[test]
fn kelvin_sign_in_a_drop_in_key_sets_the_field() {
    let eff = run_v(
        32,
        "--config=/k.yaml --config-dir=/d",
        Some(file("/k.yaml", HEAD)),
        dropins(
            "/d",
            vec![file(
                "/d/a.conf",
                &format!("{HEAD}ma\u{212A}eIPTablesUtilChains: false\n"),
            )],
        ),
    );
    assert_eq!(value(&eff, "makeIPTablesUtilChains"), json!(false));
}

/// apimachinery's serializer decodes the config file with sigs.k8s.io/json
/// `UnmarshalCaseSensitivePreserveInts` (and `UnmarshalStrict`, also case-sensitive): in
/// the file, `anonymouſ` is an unknown field and the secure default stands.
#[test]
fn long_s_in_the_config_file_is_ignored_because_the_file_decode_is_case_sensitive() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}authentication:\n  anonymou\u{17F}:\n    enabled: true\n"),
        )),
        None,
    );
    assert_eq!(
        value(&eff, "authentication.anonymous.enabled"),
        json!(false)
    );
    assert!(eff
        .warnings
        .iter()
        .any(|w| w.message.contains("did you mean")));
}

/// What sigs.k8s.io/yaml or go-yaml v2 refuse, the kubelet refuses to start with: a null
/// key (`convertToJSONableObject`: "unsupported map key"), NaN (`json.Marshal`), a core tag
/// that does not fit, a merge of a non-mapping, a control character, a null duration
/// (`metav1.Duration.UnmarshalJSON`). The checks then say error, never pass or fail.
#[test]
fn inputs_the_kubelet_refuses_make_the_config_unknown() {
    for body in [
        "readOnlyPort: 0\n~: x\n",
        "readOnlyPort: 0\nnull: x\n",
        "readOnlyPort: 0\nevictionHard: {memory.available: .nan}\n",
        "readOnlyPort: !!int zero\n",
        "readOnlyPort: 0\n<<: [1]\n",
        "readOnlyPort: 0\nstaticPodPath: \"a\u{1}\"\n",
        "readOnlyPort: 0\nstreamingConnectionIdleTimeout:\n",
        "readOnlyPort: 0\nstreamingConnectionIdleTimeout: 4 h\n",
    ] {
        let eff = run(
            "--config=/k.yaml",
            Some(file("/k.yaml", &format!("{HEAD}{body}"))),
            None,
        );
        assert!(eff.config_error.is_some(), "{body:?} should be refused");
        assert_eq!(
            status(&eff, "4.2.4"),
            nodeproof_proto::Status::Error,
            "{body:?}"
        );
    }
}

/// encoding/json `(*decodeState).literalStore`: a number into an int32 field goes through
/// `strconv.ParseInt(s, 10, 64)` and `OverflowInt`: `10255.0` in a JSON file and a value
/// beyond int32 (even one that would wrap to 10255) are type errors. YAML's `10255.0` is
/// a float that `json.Marshal` writes as `10255`, so it sets the port.
#[test]
fn json_floats_and_int32_overflow_are_type_errors_but_yaml_whole_floats_are_ints() {
    let json_head =
        "{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",";
    for body in [
        "\"readOnlyPort\":10255.0}",
        "\"readOnlyPort\":4294977551}",
        "\"readOnlyPort\":1e4}",
    ] {
        let eff = run(
            "--config=/k.json",
            Some(file("/k.json", &format!("{json_head}{body}"))),
            None,
        );
        assert!(eff.config_error.is_some(), "{body}");
        assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Error);
    }
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}readOnlyPort: 4294977551\n"),
        )),
        None,
    );
    assert!(eff.config_error.is_some());
    for yaml_port in [
        "10255.0", "1.0255e4", "0x280F", "0o24017", "1_0255", "+10255",
    ] {
        let eff = run(
            "--config=/k.yaml",
            Some(file(
                "/k.yaml",
                &format!("{HEAD}readOnlyPort: {yaml_port}\n"),
            )),
            None,
        );
        assert_eq!(value(&eff, "readOnlyPort"), json!(10255), "{yaml_port}");
        assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Fail);
    }
}

/// pflag `int32Value.Set` = `strconv.ParseInt(s, 0, 32)`: `1_0255` is a Go literal for
/// 10255 (underscores between digits), so the port is open, not "unparseable"; a value
/// beyond int32 is refused rather than wrapped.
#[test]
fn go_integer_literal_flags_open_the_port() {
    for flag in [
        "--read-only-port=1_0255",
        "--read-only-port=0x_280F",
        "--read-only-port=024017",
    ] {
        let eff = run(flag, None, None);
        assert_eq!(value(&eff, "readOnlyPort"), json!(10255), "{flag}");
        assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Fail);
    }
    let eff = run("--read-only-port=4294977551", None, None);
    assert!(eff.lookup("readOnlyPort").is_err());
    assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Error);
}

/// YAML 1.1 scalars as go-yaml v2 resolves them: `yes`/`on`/`y` are true, `off`/`n` false,
/// so `enabled: on` turns anonymous auth on; a quoted "on" is a string (a type error).
#[test]
fn yaml_1_1_booleans_turn_anonymous_auth_on() {
    for word in ["yes", "on", "y", "Y", "ON", "True"] {
        let eff = run(
            "--config=/k.yaml",
            Some(file(
                "/k.yaml",
                &format!("{HEAD}authentication:\n  anonymous:\n    enabled: {word}\n"),
            )),
            None,
        );
        assert_eq!(
            value(&eff, "authentication.anonymous.enabled"),
            json!(true),
            "{word}"
        );
        assert_eq!(status(&eff, "4.2.1"), nodeproof_proto::Status::Fail);
    }
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}authentication:\n  anonymous:\n    enabled: \"on\"\n"),
        )),
        None,
    );
    assert!(eff.config_error.is_some());
}

/// A YAML file holds one config: `yamlToJSONTarget` calls go-yaml v2 `Unmarshal`, which
/// reads the first document only, so a second document that opens the port is ignored
/// (with a warning); a JSON file's duplicate key and a YAML duplicate both keep the last.
#[test]
fn second_documents_are_ignored_and_duplicates_keep_the_last() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}readOnlyPort: 0\n---\n{HEAD}readOnlyPort: 10255\n"),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(0));
    assert!(eff
        .warnings
        .iter()
        .any(|w| w.message.contains("more than one YAML document")));
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("{HEAD}readOnlyPort: 0\nreadOnlyPort: 10255\n"),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    let eff = run(
        "--config=/k.json",
        Some(file(
            "/k.json",
            "{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",\"readOnlyPort\":0,\"readOnlyPort\":10255}",
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
}

/// `SetDefaults_KubeletConfiguration`: "default nil or negative value to -1" for
/// podPidsLimit, a rewrite of a value the file sets, not only of a zero value.
#[test]
fn negative_pod_pids_limit_defaults_to_minus_one() {
    let eff = run(
        "--config=/k.yaml",
        Some(file("/k.yaml", &format!("{HEAD}podPidsLimit: -5\n"))),
        None,
    );
    assert_eq!(value(&eff, "podPidsLimit"), json!(-1));
    assert_eq!(source(&eff, "podPidsLimit"), Source::Default);
    let eff = run(
        "--config=/k.yaml",
        Some(file("/k.yaml", &format!("{HEAD}podPidsLimit: 0\n"))),
        None,
    );
    assert_eq!(value(&eff, "podPidsLimit"), json!(0));
}

/// go-yaml v2's reader skips a leading UTF-8 byte-order mark; apimachinery's
/// `IsJSONBuffer` does not count it as space, so such a file is read as YAML, which JSON
/// also is.
#[test]
fn byte_order_mark_before_yaml_or_json_is_skipped() {
    let eff = run(
        "--config=/k.yaml",
        Some(file(
            "/k.yaml",
            &format!("\u{feff}{HEAD}readOnlyPort: 10255\n"),
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
    let eff = run(
        "--config=/k.json",
        Some(file(
            "/k.json",
            "\u{feff}{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",\"readOnlyPort\":10255}",
        )),
        None,
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
}

/// A drop-in is decoded strictly (`YAMLToJSONStrict`, go-yaml v2 `UnmarshalStrict`), where
/// `setMapIndex` reports a key the `<<` merge sets again as "already set in map", and the
/// kubelet does not fall back to lenient decoding for drop-ins: fatal.
#[test]
fn merge_key_collision_in_a_drop_in_is_fatal() {
    let eff = run_v(
        32,
        "--config=/k.yaml --config-dir=/d",
        Some(file("/k.yaml", HEAD)),
        dropins(
            "/d",
            vec![file(
                "/d/a.conf",
                &format!("{HEAD}readOnlyPort: 0\n<<: {{readOnlyPort: 10255}}\n"),
            )],
        ),
    );
    assert!(eff.config_error.is_some());
    assert_eq!(status(&eff, "4.2.4"), nodeproof_proto::Status::Error);
    // Without a collision the merge is fine in a drop-in too.
    let eff = run_v(
        32,
        "--config=/k.yaml --config-dir=/d",
        Some(file("/k.yaml", HEAD)),
        dropins(
            "/d",
            vec![file(
                "/d/a.conf",
                &format!("{HEAD}<<: {{readOnlyPort: 10255}}\n"),
            )],
        ),
    );
    assert_eq!(value(&eff, "readOnlyPort"), json!(10255));
}
