//! The agent binary on a node whose configuration the kubelet would refuse to start with:
//! every check is `error`, the exit code says so, and both outputs name the rule.

mod common;

use common::*;
use serde_json::Value;

fn refused_node(tmp: &std::path::Path) -> std::path::PathBuf {
    fake_node(
        tmp,
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[(
            "/var/lib/kubelet/config.yaml",
            &format!(
                "{HEAD}authentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nrotateCertificates: true\nserverTLSBootstrap: true\nfeatureGates:\n  RotateKubeletServerCertificate: false\n"
            ),
        )],
    )
}

#[test]
fn refused_configuration_is_error_everywhere_and_exit_1() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = refused_node(tmp.path());
    let out = run(agent()
        .args(["scan", "--format", "json", "--proc"])
        .arg(&proc_dir));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    // The kubelet-settings checks; the 4.1 file checks judge modes, which a refused
    // configuration does not make unknown.
    for c in checks
        .iter()
        .filter(|c| c["cis"].as_str().unwrap_or("").starts_with("4.2."))
    {
        assert_eq!(c["status"], "error", "{c}");
        let note = c["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("ValidateKubeletConfiguration")
                && note.contains("RotateKubeletServerCertificate"),
            "{note}"
        );
    }
    assert!(
        report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w["message"]
                .as_str()
                .is_some_and(|m| m.contains("the kubelet refuses this configuration"))),
        "{}",
        report["warnings"]
    );

    let out = run(agent().args(["scan", "--proc"]).arg(&proc_dir));
    let text = stdout(&out);
    assert!(
        text.contains("[ERROR] 4.2.1") || text.contains("ERROR"),
        "{text}"
    );
    assert!(text.contains("refuses this configuration"), "{text}");
}
