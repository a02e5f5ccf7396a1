//! Distributions that run the kubelet inside another process (k3s, microk8s' kubelite), and
//! several kubelets on one host (`--all`), scanned end to end on fake /proc trees.
//!
//! The fixtures under `tests/fixtures/distributions/<name>/` follow each distribution's real
//! defaults; each `SOURCE.md` names the upstream file and commit it follows. Expected values
//! were worked out by hand from the upstream code (k3s `util.GetArgs` and
//! `configfilearg`, kubelite's `ReadArgsFromFile`) and the kubelet's own rules, not by
//! running nodeproof.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::process::FindError;
use nodeproof_agent::render;
use nodeproof_agent::scan::{assemble, collect, collect_all, ScanError, ScanOptions};
use nodeproof_proto::{Report, Source, Status};
use serde_json::{json, Value};
use tempfile::TempDir;

const SCAN_TIME: &str = "2026-01-01T00:00:00Z";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/distributions")
        .join(name)
        .join("root")
}

/// A fake /proc with a host (PID 1 and a containerd, rooted at `root`).
struct Host {
    tmp: TempDir,
    proc: FakeProc,
    root: PathBuf,
}

impl Host {
    fn new(root: &Path) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let proc = FakeProc::new(&tmp.path().join("proc")).unwrap();
        proc.node("host-a", "6.8.0-1029-aws", 1_767_225_600)
            .unwrap();
        proc.process(1, "systemd", &["/sbin/init"])
            .and_then(|p| p.root(root))
            .unwrap();
        proc.process(
            640,
            "containerd",
            &["containerd", "-a", "/run/k3s/containerd/containerd.sock"],
        )
        .and_then(|p| p.root(root))
        .unwrap();
        Host {
            tmp,
            proc,
            root: root.to_path_buf(),
        }
    }

    /// A stand-in executable outside the fixture carrying the version stamp Go records
    /// from `-ldflags` (none: a stripped binary without one).
    fn exe(&self, name: &str, stamp: Option<&str>) -> PathBuf {
        let exe = self.tmp.path().join("bin").join(name);
        fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let body = match stamp {
            Some(v) => format!(
                "\x7fELF...build\t-ldflags=\"-X 'k8s.io/component-base/version.gitVersion={v}'\"..."
            ),
            None => "\x7fELF...stripped...".to_string(),
        };
        fs::write(&exe, body).unwrap();
        exe
    }

    fn opts(&self) -> ScanOptions {
        ScanOptions {
            proc_dir: self.proc.path().to_path_buf(),
            pid: None,
            kubelet_version: None,
            // A fake node: its ports are not this machine's.
            probe: false,
        }
    }

    fn scan(&self) -> Report {
        let snap = collect(&self.opts()).unwrap_or_else(|e| panic!("scan failed: {e}"));
        assemble(&snap, SCAN_TIME.to_string())
    }

    /// `k3s <role> args...` with this version stamp and environment.
    fn k3s(&self, pid: i32, role: &str, args: &[&str], stamp: Option<&str>, env: &[(&str, &str)]) {
        let mut argv = vec!["/usr/local/bin/k3s", role];
        argv.extend_from_slice(args);
        let exe = self.exe("k3s", stamp);
        self.proc
            .process(pid, &format!("k3s-{role}"), &argv)
            .and_then(|p| p.root(&self.root))
            .and_then(|p| p.exe(&exe))
            .and_then(|p| p.environ(env))
            .unwrap();
    }
}

fn status(r: &Report, cis: &str) -> Status {
    r.checks
        .iter()
        .find(|c| c.cis == cis)
        .unwrap_or_else(|| panic!("no check {cis}"))
        .status
}

fn check_note(r: &Report, cis: &str) -> String {
    let c = r.checks.iter().find(|c| c.cis == cis).unwrap();
    format!("{} / {} / {:?}", c.actual, c.note, c.origin)
}

/// Asserts a setting's value, source and (part of) its origin.
fn assert_setting(r: &Report, path: &str, value: Value, source: Source, origin_has: &str) {
    let s = r
        .settings
        .get(path)
        .unwrap_or_else(|| panic!("setting {path} missing"));
    assert_eq!(s.value, value, "{path}: {}", s.origin);
    assert_eq!(s.source, source, "{path}: {}", s.origin);
    assert!(
        s.origin.contains(origin_has),
        "{path}: origin {:?} lacks {origin_has:?}",
        s.origin
    );
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn warnings(r: &Report) -> String {
    r.warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- k3s ---------------------------------------------------------------------------------

const K3S_DIR: &str = "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d";

#[test]
fn k3s_server_node() {
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(
        812,
        "server",
        &["--kubelet-arg", "streaming-connection-idle-timeout=5m"],
        Some("v1.33.1+k3s1"),
        &[("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")],
    );
    // Decoys: k3s' kubectl, and a shell that mentions the kubelet.
    host.proc
        .process(
            950,
            "k3s",
            &["/usr/local/bin/k3s", "kubectl", "get", "nodes"],
        )
        .and_then(|p| p.root(&host.root))
        .unwrap();
    let r = host.scan();

    assert_eq!(r.kubelet.pid, 812);
    assert_eq!(r.kubelet.distribution.as_deref(), Some("k3s"));
    let embedded = r.kubelet.embedded_in.clone().unwrap_or_default();
    assert!(embedded.starts_with("k3s server (pid 812)"), "{embedded}");
    assert_eq!(r.kubelet.config_file, None);
    assert_eq!(r.kubelet.config_dir.as_deref(), Some(K3S_DIR));
    assert_eq!(r.kubelet.version.as_deref(), Some("v1.33.1+k3s1"));
    // util.GetArgs: sorted by key, config.yaml's list replaced by 50-hardening.yaml, then
    // 60-ciphers.yml appended, then the command line.
    assert_eq!(
        r.kubelet.cmdline,
        vec![
            "kubelet",
            "--config-dir=/var/lib/rancher/k3s/agent/etc/kubelet.conf.d",
            "--event-qps=5",
            "--hostname-override=k3s-server-1",
            "--kubeconfig=/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
            "--node-labels=",
            "--read-only-port=0",
            "--streaming-connection-idle-timeout=5m",
            "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ]
    );

    let defaults = format!("{K3S_DIR}/00-k3s-defaults.conf");
    assert_setting(
        &r,
        "authentication.anonymous.enabled",
        json!(false),
        Source::DropIn,
        &defaults,
    );
    assert_setting(
        &r,
        "authorization.mode",
        json!("Webhook"),
        Source::DropIn,
        &defaults,
    );
    assert_setting(
        &r,
        "readOnlyPort",
        json!(0),
        Source::DistributionDefault,
        "confirm in k3s' log line \"Running kubelet ...\"",
    );
    assert_setting(
        &r,
        "--hostname-override",
        json!("k3s-server-1"),
        Source::DistributionDefault,
        "k3s default",
    );
    assert_setting(
        &r,
        "eventRecordQPS",
        json!(5),
        Source::Flag,
        "--event-qps=5 (in /etc/rancher/k3s/config.yaml.d/50-hardening.yaml (kubelet-arg))",
    );
    assert_setting(
        &r,
        "tlsCipherSuites",
        json!([
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]),
        Source::Flag,
        "/etc/rancher/k3s/config.yaml.d/60-ciphers.yml",
    );
    assert_setting(
        &r,
        "streamingConnectionIdleTimeout",
        json!("5m0s"),
        Source::Flag,
        "k3s' command line (--kubelet-arg)",
    );
    let local = format!("{K3S_DIR}/90-local.conf");
    assert_setting(
        &r,
        "protectKernelDefaults",
        json!(true),
        Source::DropIn,
        &local,
    );
    assert_setting(
        &r,
        "rotateCertificates",
        json!(true),
        Source::DropIn,
        &local,
    );

    for (cis, want) in [
        ("4.2.1", Status::Pass),
        ("4.2.2", Status::Pass),
        ("4.2.3", Status::Pass),
        ("4.2.4", Status::Pass),
        ("4.2.5", Status::Pass),
        ("4.2.6", Status::Pass),
        ("4.2.7", Status::Warn),
        ("4.2.9", Status::Pass),
        ("4.2.10", Status::Pass),
    ] {
        assert_eq!(status(&r, cis), want, "{cis}: {}", check_note(&r, cis));
    }
    let c = r.checks.iter().find(|c| c.cis == "4.2.4").unwrap();
    assert_eq!(c.source, Some(Source::DistributionDefault));

    let read: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        read,
        vec![
            "/etc/rancher/k3s/config.yaml",
            "/etc/rancher/k3s/config.yaml.d/50-hardening.yaml",
            "/etc/rancher/k3s/config.yaml.d/60-ciphers.yml",
            "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/00-k3s-defaults.conf",
            "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/90-local.conf",
            "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
        ]
    );
    assert!(
        r.warnings.iter().all(|w| !w.message.contains("stray")),
        "{}",
        warnings(&r)
    );
    let text = render::text(&r, false);
    assert!(text.contains("embedded in: k3s server (pid 812)"), "{text}");
    assert!(text.contains("distribution-default"), "{text}");
}

/// k3s 1.32.0-1.32.3 passed no `--read-only-port` and its drop-in cannot carry a zero port,
/// so the kubelet served 10255 (k3s-io/k3s#12164); 1.32.4 fixed it. Without a version the
/// value is unknown, unless the operator set it.
#[test]
fn k3s_agent_read_only_port_depends_on_the_k3s_version() {
    let args = [
        "--server",
        "https://10.0.0.1:6443",
        "--token",
        "K10secret-join-token::server:abc",
        "--data-dir",
        "/opt/k3s",
    ];
    let env = [("K3S_NODE_NAME", "Worker-7")];
    for (stamp, extra, kubelet_version, want, source) in [
        (
            Some("v1.32.3+k3s1"),
            None,
            None,
            Status::Fail,
            Some(Source::Default),
        ),
        (
            Some("v1.32.4+k3s1"),
            None,
            None,
            Status::Pass,
            Some(Source::DistributionDefault),
        ),
        (None, None, None, Status::Error, None),
        (
            None,
            None,
            Some("v1.33.0"),
            Status::Pass,
            Some(Source::DistributionDefault),
        ),
        (
            None,
            Some("--kubelet-arg=read-only-port=0"),
            None,
            Status::Pass,
            Some(Source::Flag),
        ),
    ] {
        let host = Host::new(&fixture("k3s-agent"));
        let mut argv: Vec<&str> = args.to_vec();
        argv.extend(extra);
        host.k3s(1200, "agent", &argv, stamp, &env);
        let mut opts = host.opts();
        opts.kubelet_version = kubelet_version.map(str::to_string);
        let r = assemble(&collect(&opts).unwrap(), SCAN_TIME.to_string());
        let case = format!("{stamp:?} {extra:?} {kubelet_version:?}");
        assert_eq!(
            status(&r, "4.2.4"),
            want,
            "{case}: {}",
            check_note(&r, "4.2.4")
        );
        match source {
            Some(s) => assert_eq!(r.settings["readOnlyPort"].source, s, "{case}"),
            None => assert!(
                check_note(&r, "4.2.4").contains("--kubelet-version"),
                "{case}: {}",
                check_note(&r, "4.2.4")
            ),
        }
        if want == Status::Fail {
            assert_setting(&r, "readOnlyPort", json!(10255), Source::Default, "legacy");
        }
        // Everything else is the drop-in's, under the agent's data dir.
        assert_eq!(
            r.kubelet.config_dir.as_deref(),
            Some("/opt/k3s/agent/etc/kubelet.conf.d"),
            "{case}"
        );
        assert_eq!(status(&r, "4.2.1"), Status::Pass, "{case}");
        assert_eq!(status(&r, "4.2.2"), Status::Pass, "{case}");
        // K3S_NODE_NAME, lowercased as k3s does.
        assert_eq!(r.settings["--hostname-override"].value, json!("worker-7"));
        assert_eq!(
            r.kubelet
                .embedded_in
                .as_deref()
                .map(|e| e.starts_with("k3s agent (pid 1200)")),
            Some(true)
        );
        // k3s' own command line (with its join token) never reaches the report.
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("K10secret"), "{case}: the join token leaked");
        // No config.yaml on this node: none read, no error.
        assert!(r.files.iter().all(|f| !f.path.starts_with("/etc/rancher")));
        assert_eq!(
            r.files.last().map(|f| f.path.as_str()),
            Some("/opt/k3s/agent/kubelet.kubeconfig")
        );
    }
}

/// k3s stops at start-up on a config file it cannot parse (`logrus.Fatal` in
/// `configfilearg.MustParse`), so a running k3s cannot have it: every check is `error`,
/// and the warning names the file.
#[test]
fn k3s_malformed_config_yaml_is_an_error_naming_the_file() {
    for (config, says) in [
        ("kubelet-arg: [\"anonymous-auth=false\"\n", "not valid YAML"),
        ("- kubelet-arg\n", "not a mapping"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        copy_tree(&fixture("k3s-server"), &root);
        fs::write(
            root.join("etc/rancher/k3s/config.yaml.d/70-broken.yaml"),
            config,
        )
        .unwrap();
        let host = Host::new(&root);
        host.k3s(812, "server", &[], Some("v1.33.1+k3s1"), &[]);
        let r = host.scan();
        for c in &r.checks {
            assert_eq!(c.status, Status::Error, "{}: {}", c.cis, c.note);
        }
        let w = warnings(&r);
        assert!(
            w.contains("/etc/rancher/k3s/config.yaml.d/70-broken.yaml") && w.contains(says),
            "{w}"
        );
    }

    // A directory where the config file belongs cannot be read: the same.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&fixture("k3s-server"), &root);
    fs::remove_file(root.join("etc/rancher/k3s/config.yaml")).unwrap();
    fs::create_dir(root.join("etc/rancher/k3s/config.yaml")).unwrap();
    let host = Host::new(&root);
    host.k3s(812, "server", &[], Some("v1.33.1+k3s1"), &[]);
    let r = host.scan();
    assert!(r.checks.iter().all(|c| c.status == Status::Error));
    assert!(
        warnings(&r).contains("/etc/rancher/k3s/config.yaml"),
        "{}",
        warnings(&r)
    );

    // K3S_CONFIG_FILE wins over the default path: the broken default is never read.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&fixture("k3s-server"), &root);
    fs::write(root.join("etc/rancher/k3s/config.yaml"), "{{{ broken").unwrap();
    fs::write(
        root.join("etc/k3s-custom.yaml"),
        "kubelet-arg:\n  - anonymous-auth=true\n",
    )
    .unwrap();
    let host = Host::new(&root);
    host.k3s(
        812,
        "server",
        &[],
        Some("v1.33.1+k3s1"),
        &[("K3S_CONFIG_FILE", "/etc/k3s-custom.yaml")],
    );
    let r = host.scan();
    assert_eq!(
        status(&r, "4.2.1"),
        Status::Fail,
        "{}",
        check_note(&r, "4.2.1")
    );
    assert_setting(
        &r,
        "authentication.anonymous.enabled",
        json!(true),
        Source::Flag,
        "/etc/k3s-custom.yaml",
    );
}

/// `k3s server --disable-agent` runs no kubelet: no verdict may describe one.
#[test]
fn k3s_server_without_agent_has_no_kubelet_to_pass() {
    for args in [&["--disable-agent"][..], &["--disable-agent=true"][..]] {
        let host = Host::new(&fixture("k3s-server"));
        host.k3s(812, "server", args, Some("v1.33.1+k3s1"), &[]);
        let r = host.scan();
        assert!(
            r.checks.iter().all(|c| c.status == Status::Error),
            "{args:?}"
        );
        assert!(warnings(&r).contains("runs no kubelet"), "{}", warnings(&r));
    }
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(
        812,
        "server",
        &["--disable-agent=false"],
        Some("v1.33.1+k3s1"),
        &[],
    );
    assert_eq!(status(&host.scan(), "4.2.1"), Status::Pass);
}

/// With the live probes on, a k3s server without an agent is not probed: whatever answers
/// on 10250 is not a kubelet of this k3s. The probe checks are there, `error`, saying why;
/// nothing is sent (this node's ports are this machine's, so a probe would be a bug).
#[test]
fn k3s_server_without_agent_is_not_probed() {
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(
        812,
        "server",
        &["--disable-agent"],
        Some("v1.33.1+k3s1"),
        &[],
    );
    let opts = ScanOptions {
        probe: true,
        ..host.opts()
    };
    let snap = collect(&opts).unwrap_or_else(|e| panic!("scan failed: {e}"));
    let probe = snap.probe.as_ref().expect("probes asked for");
    assert!(
        probe.answers.iter().all(|a| a.target.is_none()),
        "nothing may be sent: {probe:?}"
    );
    let r = assemble(&snap, SCAN_TIME.to_string());
    for cis in ["P.1", "P.2", "P.3", "P.4"] {
        assert_eq!(status(&r, cis), Status::Error, "{cis}");
    }
    for cis in ["P.1", "P.2", "P.3"] {
        let note = check_note(&r, cis);
        assert!(note.contains("not probed"), "{cis}: {note}");
        assert!(note.contains("runs no kubelet"), "{cis}: {note}");
    }
    // --no-probe: no probe checks at all.
    let r = host.scan();
    assert!(r.checks.iter().all(|c| !c.id.starts_with("probe-")));
}

/// k3s before v1.32 passed every kubelet setting as a flag (`kubeletArgs`,
/// pkg/daemons/agent/agent_linux.go before k3s-io/k3s#10433) and no `--config`: the drop-in
/// directory is not read even when one is left on disk, every value k3s sets is a
/// distribution default, and the rest keep the kubelet's legacy flag defaults.
#[test]
fn k3s_before_1_32_passes_flags_only() {
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(
        812,
        "server",
        &["--protect-kernel-defaults"],
        Some("v1.31.9+k3s1"),
        &[],
    );
    let r = host.scan();
    assert_eq!(r.kubelet.config_dir, None);
    assert_eq!(r.kubelet.config_file, None);
    let agent = "/var/lib/rancher/k3s/agent";
    for (path, value) in [
        ("authentication.anonymous.enabled", json!(false)),
        ("authentication.webhook.enabled", json!(true)),
        ("authorization.mode", json!("Webhook")),
        ("readOnlyPort", json!(0)),
        ("protectKernelDefaults", json!(true)),
        ("healthzBindAddress", json!("127.0.0.1")),
        (
            "authentication.x509.clientCAFile",
            json!(format!("{agent}/client-ca.crt")),
        ),
        ("tlsCertFile", json!(format!("{agent}/serving-kubelet.crt"))),
        ("staticPodPath", json!(format!("{agent}/pod-manifests"))),
    ] {
        assert_setting(
            &r,
            path,
            value,
            Source::DistributionDefault,
            "Running kubelet",
        );
    }
    // Not passed, no config file: the kubelet's own defaults.
    assert_setting(&r, "rotateCertificates", json!(false), Source::Default, "");
    assert_setting(
        &r,
        "eventRecordQPS",
        json!(5),
        Source::Flag,
        "50-hardening.yaml",
    );
    for (cis, want) in [
        ("4.2.1", Status::Pass),
        ("4.2.2", Status::Pass),
        ("4.2.3", Status::Pass),
        ("4.2.4", Status::Pass),
        ("4.2.6", Status::Pass),
        ("4.2.9", Status::Pass),
        ("4.2.10", Status::Fail),
    ] {
        assert_eq!(status(&r, cis), want, "{cis}: {}", check_note(&r, cis));
    }
    assert!(
        r.files.iter().all(|f| !f.path.contains("kubelet.conf.d")),
        "{:?}",
        r.files
    );
}

// ---- microk8s ----------------------------------------------------------------------------

const SNAP_DATA: &str = "/var/snap/microk8s/7229";
const ARGS_FILE: &str = "/var/snap/microk8s/7229/args/kubelet";

fn snap_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SNAP", "/snap/microk8s/7229"),
        ("SNAP_DATA", SNAP_DATA),
        ("SNAP_COMMON", "/var/snap/microk8s/common"),
        ("SNAP_NAME", "microk8s"),
    ]
}

fn kubelite(host: &Host, args_file: &str, env: Option<&[(&str, &str)]>) {
    let flag = format!("--kubelet-args-file={args_file}");
    let exe = host.exe("kubelite", Some("v1.33.3"));
    let p = host
        .proc
        .process(
            2100,
            "kubelite",
            &[
                "/snap/microk8s/7229/kubelite",
                "--scheduler-args-file=/var/snap/microk8s/7229/args/kube-scheduler",
                "--controller-manager-args-file=/var/snap/microk8s/7229/args/kube-controller-manager",
                "--proxy-args-file=/var/snap/microk8s/7229/args/kube-proxy",
                &flag,
                "--apiserver-args-file=/var/snap/microk8s/7229/args/kube-apiserver",
                "--kubeconfig-file=/var/snap/microk8s/7229/credentials/client.config",
                "--start-control-plane=true",
            ],
        )
        .and_then(|p| p.root(&host.root))
        .and_then(|p| p.exe(&exe))
        .unwrap();
    if let Some(env) = env {
        p.environ(env).unwrap();
    }
}

#[test]
fn microk8s_node_runs_always_allow() {
    let host = Host::new(&fixture("microk8s"));
    kubelite(&host, ARGS_FILE, Some(&snap_env()));
    let r = host.scan();

    assert_eq!(r.kubelet.pid, 2100);
    assert_eq!(r.kubelet.distribution.as_deref(), Some("microk8s"));
    assert!(
        r.kubelet
            .embedded_in
            .as_deref()
            .is_some_and(|e| e.contains("kubelite (pid 2100)") && e.contains(ARGS_FILE)),
        "{:?}",
        r.kubelet.embedded_in
    );
    assert_eq!(r.kubelet.config_file, None);
    assert_eq!(r.kubelet.config_dir, None);
    // Quotes removed, ${SNAP_DATA} and ${SNAP_COMMON} expanded.
    assert_eq!(
        r.kubelet.cmdline[1],
        "--kubeconfig=/var/snap/microk8s/7229/credentials/kubelet.config"
    );
    assert!(r.kubelet.cmdline.contains(
        &"--eviction-hard=memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi"
            .to_string()
    ));
    assert!(r
        .kubelet
        .cmdline
        .contains(&"--root-dir=/var/snap/microk8s/common/var/lib/kubelet".to_string()));

    // No --config and no --authorization-mode: the legacy flag default.
    assert_eq!(
        status(&r, "4.2.2"),
        Status::Fail,
        "{}",
        check_note(&r, "4.2.2")
    );
    assert_setting(
        &r,
        "authorization.mode",
        json!("AlwaysAllow"),
        Source::Default,
        "legacy",
    );
    assert_setting(
        &r,
        "authentication.anonymous.enabled",
        json!(false),
        Source::Flag,
        "--anonymous-auth=false (in /var/snap/microk8s/7229/args/kubelet line 4)",
    );
    assert_setting(
        &r,
        "authentication.x509.clientCAFile",
        json!("/var/snap/microk8s/7229/certs/ca.crt"),
        Source::Flag,
        "line 3",
    );
    assert_setting(
        &r,
        "authentication.webhook.enabled",
        json!(true),
        Source::Flag,
        "line 10",
    );
    assert_setting(&r, "readOnlyPort", json!(0), Source::Flag, "line 11");
    for cis in ["4.2.1", "4.2.3", "4.2.4"] {
        assert_eq!(
            status(&r, cis),
            Status::Pass,
            "{cis}: {}",
            check_note(&r, cis)
        );
    }
    let read: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        read,
        vec![
            ARGS_FILE,
            "/var/snap/microk8s/7229/credentials/kubelet.config"
        ]
    );
    assert!(
        r.warnings.iter().all(|w| !w.message.contains("stray")),
        "{}",
        warnings(&r)
    );
}

/// kubelite stops (`klog.Fatalf`) when it cannot open its arguments file.
#[test]
fn microk8s_missing_args_file_is_an_error_naming_it() {
    let host = Host::new(&fixture("microk8s"));
    kubelite(
        &host,
        "/var/snap/microk8s/7229/args/kubelet-gone",
        Some(&snap_env()),
    );
    let r = host.scan();
    assert!(r.checks.iter().all(|c| c.status == Status::Error));
    let w = warnings(&r);
    assert!(
        w.contains("/var/snap/microk8s/7229/args/kubelet-gone"),
        "{w}"
    );
    assert!(w.contains("ReadArgsFromFile"), "{w}");
}

/// `ReadArgsFromFile`'s rules: comments and blank lines skipped, every quote deleted,
/// split on single spaces (two make an empty argument, which the kubelet refuses), an
/// unknown variable expanded to nothing (with a warning).
#[test]
fn microk8s_args_file_quotes_variables_and_spaces() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&fixture("microk8s"), &root);
    fs::write(
        root.join("var/snap/microk8s/7229/args/kubelet"),
        "# managed by hand\n\
         \n\
         --kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n\
         \t--anonymous-auth=false   \n\
         --client-ca-file='${UNKNOWN}/ca.crt'\n\
         --authorization-mode=\"Web\"hook\n\
         --read-only-port=0  --v=2\r\n",
    )
    .unwrap();
    let host = Host::new(&root);
    kubelite(&host, ARGS_FILE, Some(&snap_env()));
    let r = host.scan();
    assert_setting(
        &r,
        "authorization.mode",
        json!("Webhook"),
        Source::Flag,
        "line 6",
    );
    assert_eq!(status(&r, "4.2.2"), Status::Pass);
    assert_setting(
        &r,
        "authentication.x509.clientCAFile",
        json!("/ca.crt"),
        Source::Flag,
        "line 5",
    );
    let w = warnings(&r);
    assert!(
        w.contains("$UNKNOWN") && w.contains("not in kubelite's environment"),
        "{w}"
    );
    // "--read-only-port=0  --v=2" has two spaces: an empty argument in between.
    assert!(w.contains("stray argument \"\""), "{w}");
    assert_eq!(
        &r.kubelet.cmdline[1..],
        &[
            "--kubeconfig=/var/snap/microk8s/7229/credentials/kubelet.config",
            "--anonymous-auth=false",
            "--client-ca-file=/ca.crt",
            "--authorization-mode=Webhook",
            "--read-only-port=0",
            "",
            "--v=2",
        ]
    );
}

/// Without kubelite's environment the variables cannot be expanded: the settings they make
/// are unknown (error), never a guess at `$SNAP_DATA`.
#[test]
fn microk8s_unreadable_environment_leaves_variables_unknown() {
    let host = Host::new(&fixture("microk8s"));
    kubelite(&host, ARGS_FILE, None);
    let r = host.scan();
    assert!(warnings(&r).contains("cannot read the environment of kubelite"));
    assert_eq!(
        status(&r, "4.2.3"),
        Status::Error,
        "{}",
        check_note(&r, "4.2.3")
    );
    // Settings without variables are still known.
    assert_eq!(status(&r, "4.2.1"), Status::Pass);
    assert_eq!(status(&r, "4.2.2"), Status::Fail);
}

// ---- several kubelets ----------------------------------------------------------------------

fn kind_argv() -> Vec<String> {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nodes/kind/cmdline"),
    )
    .unwrap();
    text.lines().map(str::to_string).collect()
}

/// Two kind nodes on one laptop: each kubelet in its own container root.
fn two_kind_nodes() -> Host {
    let kind_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nodes/kind");
    let host = Host::new(&kind_root.join("host"));
    let argv = kind_argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    for pid in [3377, 4377] {
        let exe = host.exe(&format!("kubelet-{pid}"), Some("v1.33.1"));
        host.proc
            .process(pid, "kubelet", &argv)
            .and_then(|p| p.root(&kind_root.join("root")))
            .and_then(|p| p.exe(&exe))
            .unwrap();
    }
    host
}

#[test]
fn several_kind_nodes_need_all_or_pid() {
    let host = two_kind_nodes();
    match collect(&host.opts()) {
        Err(ScanError::Find(FindError::Several(pids))) => assert_eq!(pids, vec![3377, 4377]),
        other => panic!("expected Several, got {:?}", other.map(|s| s.pid)),
    }
    let all = collect_all(&host.opts()).unwrap();
    assert_eq!(
        all.iter().map(|s| s.pid).collect::<Vec<_>>(),
        vec![3377, 4377]
    );
    let reports: Vec<Report> = all
        .iter()
        .map(|s| assemble(s, SCAN_TIME.to_string()))
        .collect();
    for r in &reports {
        assert_eq!(
            r.kubelet.config_file.as_deref(),
            Some("/var/lib/kubelet/config.yaml")
        );
        assert_eq!(r.kubelet.distribution, None);
        assert_eq!(r.kubelet.embedded_in, None);
    }
    // The settings' verdicts are the same; the 4.1 notes name each kubelet's own
    // /proc/<pid>/root, so those compare by status.
    let verdicts = |r: &Report| -> Vec<_> {
        r.checks
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.status,
                    if c.cis.starts_with("4.1") {
                        String::new()
                    } else {
                        c.note.clone()
                    },
                )
            })
            .collect()
    };
    assert_eq!(verdicts(&reports[0]), verdicts(&reports[1]));
}

#[test]
fn scan_all_prints_every_report_and_exits_with_the_worst() {
    let host = two_kind_nodes();
    let proc_dir = host.proc.path().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nodeproof-agent"))
            .args(["scan", "--proc", &proc_dir])
            .args(args)
            .env_remove("NODEPROOF_PROC")
            // Fake kind nodes: their ports are not this machine's.
            .env("NODEPROOF_NO_PROBE", "1")
            .output()
            .unwrap()
    };
    let out = run(&["--all", "--format", "json"]);
    let reports: Vec<Report> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        reports.iter().map(|r| r.kubelet.pid).collect::<Vec<_>>(),
        vec![3377, 4377]
    );
    // The kind fixture fails some checks: exit 1, the worst of the two.
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("== nodeproof:").count(), 2, "{text}");
    assert!(text.contains("pid 3377") && text.contains("pid 4377"));

    // Without --all or --pid: exit 2, and the message says how to choose.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--all"), "{err}");

    // One of them by --pid: one report, a JSON object.
    let out = run(&["--pid", "4377", "--format", "json"]);
    let one: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one.kubelet.pid, 4377);
}

/// The daemon's node name follows the kubelet's `--hostname-override`; inside k3s that is
/// the node name k3s passes (config.yaml's `node-name` here), not the hostname.
#[test]
fn k3s_node_name_for_the_collector_is_the_one_k3s_passes() {
    use nodeproof_agent::daemon::node::{resolve, NameSource};
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(812, "server", &[], Some("v1.33.1+k3s1"), &[]);
    let n = resolve(None, host.proc.path(), None).unwrap();
    assert_eq!(n.name, "k3s-server-1");
    assert_eq!(n.source, NameSource::HostnameOverride { pid: 812 });
}

/// k3s is often started with its cluster join token on the command line (`--token`) or in
/// its environment (`K3S_TOKEN`); whoever holds it can join nodes to the cluster. The report
/// travels to the collector, so neither may appear in it, in any format.
#[test]
fn k3s_join_token_never_reaches_the_report() {
    let host = Host::new(&fixture("k3s-server"));
    host.k3s(
        812,
        "server",
        &[
            "--token",
            "K10leak-me::server:s3cr3t",
            "--token=K10leak-me-too",
        ],
        Some("v1.33.1+k3s1"),
        &[("K3S_TOKEN", "K10leak-env")],
    );
    let r = host.scan();
    let json = serde_json::to_string(&r).unwrap();
    let text = render::text(&r, false);
    for out in [&json, &text] {
        assert!(!out.contains("K10leak"), "the join token leaked");
    }
}
