//! End-to-end scans of realistic nodes, one per distribution.
//!
//! Each fixture under `tests/fixtures/nodes/<name>/` is what a distribution really ships (its
//! `SOURCE.md` says where every file comes from): `cmdline` (one argument per line, argv[0]
//! first), `root/` (the kubelet's filesystem as the kubelet sees it), optionally `host/` (the
//! machine's own filesystem, which must not be read when the kubelet runs in a container), and
//! `expected.json` (verdicts and values worked out by hand from the kubelet's rules, not by
//! running nodeproof).
//!
//! Each test lays out a fake /proc with `nodeproof_agent::fakeproc` (the kubelet plus init,
//! runtimes and decoy processes that merely mention the kubelet), runs the real scan
//! (`scan::collect` + `scan::assemble`) and compares the report with `expected.json`. All
//! mismatches of a node are reported together.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{assemble, collect, ScanOptions};
use nodeproof_proto::Report;
use serde_json::Value;
use tempfile::TempDir;

const SCAN_TIME: &str = "2026-01-01T00:00:00Z";

/// Every fixture directory and the test that scans it; `every_fixture_has_a_test` keeps the two
/// in step.
const NODES: &[&str] = &[
    "aks-flags",
    "bottlerocket",
    "eks-al2",
    "eks-al2023",
    "gce",
    "kind",
    "kubeadm",
    "legacy-flags",
    "rke2",
    "talos",
];

const CIS_IDS: &[&str] = &[
    "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5", "4.2.6", "4.2.7", "4.2.8", "4.2.9", "4.2.10",
    "4.2.11", "4.2.12", "4.2.13", "4.2.14",
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join("nodes")
}

/// One fixture node and the fake /proc being built around it.
struct Node {
    name: &'static str,
    dir: PathBuf,
    tmp: TempDir,
    proc: FakeProc,
}

impl Node {
    fn new(name: &'static str) -> Node {
        let dir = fixtures_dir().join(name);
        assert!(dir.is_dir(), "no fixture directory {}", dir.display());
        let tmp = tempfile::tempdir().expect("tempdir");
        let proc = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
        proc.node(&format!("{name}-node"), "6.8.0-1029-aws", 1_767_225_600)
            .expect("node files");
        Node {
            name,
            dir,
            tmp,
            proc,
        }
    }

    /// The kubelet's root: the fixture's `root/`.
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The machine's root: the fixture's `host/` when the kubelet runs in a container,
    /// otherwise the kubelet's own root.
    fn host(&self) -> PathBuf {
        let host = self.dir.join("host");
        if host.is_dir() {
            host
        } else {
            self.root()
        }
    }

    /// argv of the kubelet, from `cmdline` (one argument per line).
    fn argv(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.join("cmdline")).expect("cmdline");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.split('\n').map(str::to_string).collect()
    }

    /// A stand-in executable outside the fixture (fixtures are never written to).
    fn exe(&self) -> PathBuf {
        let exe = self.tmp.path().join("bin").join("kubelet");
        fs::create_dir_all(exe.parent().unwrap()).unwrap();
        fs::write(&exe, format!("fake kubelet binary for {}\n", self.name)).unwrap();
        exe
    }

    /// PID 1, the host's init, rooted at the host.
    fn init(&self, comm: &str, argv: &[&str]) {
        self.proc
            .process(1, comm, argv)
            .and_then(|p| p.root(&self.host()))
            .expect("pid 1");
    }

    /// The kubelet itself, rooted at the fixture's `root/`.
    fn kubelet(&self, pid: i32) {
        let argv = self.argv();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let exe = self.exe();
        self.proc
            .process(pid, "kubelet", &argv)
            .and_then(|p| p.root(&self.root()))
            .and_then(|p| p.exe(&exe))
            .expect("kubelet process");
    }

    /// Any other process, on the host.
    fn other(&self, pid: i32, comm: &str, argv: &[&str]) {
        self.proc
            .process(pid, comm, argv)
            .and_then(|p| p.root(&self.host()))
            .expect("other process");
    }

    /// Another process sharing the kubelet's root (a container's init, say).
    fn in_root(&self, pid: i32, comm: &str, argv: &[&str]) {
        self.proc
            .process(pid, comm, argv)
            .and_then(|p| p.root(&self.root()))
            .expect("process in the kubelet's root");
    }

    /// Scans the fake /proc (no `--pid`: the scan must pick the kubelet out by itself) and
    /// compares the report with `expected.json`.
    fn scan_and_compare(&self) -> Report {
        let opts = ScanOptions {
            proc_dir: self.proc.path().to_path_buf(),
            pid: None,
            kubelet_version: None,
            // A fake node: its ports are not this machine's.
            probe: false,
        };
        let snapshot = collect(&opts).unwrap_or_else(|e| panic!("{}: scan failed: {e}", self.name));
        let report = assemble(&snapshot, SCAN_TIME.to_string());
        let expected: Value = serde_json::from_str(
            &fs::read_to_string(self.dir.join("expected.json")).expect("expected.json"),
        )
        .expect("expected.json is JSON");
        let problems = compare(&report, &expected);
        if !problems.is_empty() {
            let warnings: Vec<&str> = report.warnings.iter().map(|w| w.message.as_str()).collect();
            panic!(
                "{} node: {} mismatch(es):\n  - {}\nreport warnings:\n  - {}",
                self.name,
                problems.len(),
                problems.join("\n  - "),
                warnings.join("\n  - ")
            );
        }
        report
    }
}

/// Every difference between the report and the expectation, as readable lines.
fn compare(report: &Report, expected: &Value) -> Vec<String> {
    let mut problems = Vec::new();

    // Checks: every CIS 4.2.x id must be expected, and match.
    let checks = expected["checks"].as_object().expect("expected.checks");
    for id in CIS_IDS {
        if !checks.contains_key(*id) {
            problems.push(format!("expected.json lists no verdict for {id}"));
        }
    }
    for (cis, want) in checks {
        let want = want.as_str().expect("status string");
        match report.checks.iter().find(|c| &c.cis == cis) {
            None => problems.push(format!("{cis}: no such check in the report")),
            Some(c) => {
                let got = c.status.as_str();
                if got != want {
                    problems.push(format!(
                        "{cis} ({}): expected {want}, got {got}; actual `{}`, source {:?}, \
                         origin {:?}, note: {}",
                        c.id, c.actual, c.source, c.origin, c.note
                    ));
                }
            }
        }
    }

    // Settings: value always, source and origin when the expectation names them.
    if let Some(settings) = expected["settings"].as_object() {
        for (path, want) in settings {
            let Some(got) = report.settings.get(path) else {
                problems.push(format!("setting {path}: missing from the report"));
                continue;
            };
            if got.value != want["value"] {
                problems.push(format!(
                    "setting {path}: expected value {}, got {} (source {}, origin {})",
                    want["value"],
                    got.value,
                    got.source.as_str(),
                    got.origin
                ));
            }
            if let Some(source) = want["source"].as_str() {
                if got.source.as_str() != source {
                    problems.push(format!(
                        "setting {path}: expected source {source}, got {} (origin {})",
                        got.source.as_str(),
                        got.origin
                    ));
                }
            }
            if let Some(origin) = want["origin"].as_str() {
                if got.origin != origin {
                    problems.push(format!(
                        "setting {path}: expected origin {origin:?}, got {:?}",
                        got.origin
                    ));
                }
            }
        }
    }
    if let Some(absent) = expected["absent_settings"].as_array() {
        for path in absent {
            let path = path.as_str().expect("setting name");
            if let Some(s) = report.settings.get(path) {
                problems.push(format!(
                    "setting {path} should be absent, got {} from {}",
                    s.value, s.origin
                ));
            }
        }
    }

    // Which files the kubelet reads, as the report names them.
    if let Some(kubelet) = expected["kubelet"].as_object() {
        let fields = [
            ("config_file", &report.kubelet.config_file),
            ("config_dir", &report.kubelet.config_dir),
        ];
        for (name, got) in fields {
            if let Some(want) = kubelet.get(name) {
                let want = want.as_str().map(str::to_string);
                if &want != got {
                    problems.push(format!("kubelet.{name}: expected {want:?}, got {got:?}"));
                }
            }
        }
    }
    if let Some(files) = expected["files_read"].as_array() {
        let want: Vec<&str> = files.iter().map(|f| f.as_str().expect("path")).collect();
        let got: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
        if want != got {
            problems.push(format!("files read: expected {want:?}, got {got:?}"));
        }
    }
    problems
}

/// Files read must be the kubelet's (inside its root), never the host's.
fn assert_digests_match_root(node: &Node, report: &Report) {
    use sha2::{Digest, Sha256};
    for f in &report.files {
        let on_disk = node.root().join(f.path.trim_start_matches('/'));
        let bytes = fs::read(&on_disk)
            .unwrap_or_else(|e| panic!("{}: {} not in the kubelet's root: {e}", node.name, f.path));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            f.sha256,
            "{}: digest of {} is not the kubelet's copy",
            node.name,
            f.path
        );
    }
}

#[test]
fn every_fixture_has_a_test() {
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for entry in fs::read_dir(fixtures_dir()).expect("fixtures/nodes") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            dirs.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let known: BTreeSet<String> = NODES.iter().map(|s| s.to_string()).collect();
    assert_eq!(dirs, known, "fixture directories and NODES differ");
    for name in NODES {
        let dir = fixtures_dir().join(name);
        for file in ["cmdline", "expected.json", "SOURCE.md"] {
            assert!(dir.join(file).is_file(), "{name}: missing {file}");
        }
        assert!(dir.join("root").is_dir(), "{name}: missing root/");
    }
}

#[test]
fn kubeadm_node() {
    let n = Node::new("kubeadm");
    n.init("systemd", &["/sbin/init"]);
    n.other(640, "containerd", &["/usr/bin/containerd"]);
    // A kubelet that exited and was not reaped yet: comm says kubelet, the command line is empty.
    n.proc
        .process(1180, "kubelet", &[])
        .and_then(|p| p.state('Z'))
        .expect("zombie");
    n.kubelet(1234);
    n.other(4410, "grep", &["grep", "--color=auto", "kubelet"]);
    n.other(
        4411,
        "sh",
        &[
            "/bin/sh",
            "-c",
            "systemctl status kubelet; journalctl -u kubelet -n 50",
        ],
    );
    let report = n.scan_and_compare();
    assert_eq!(report.kubelet.pid, 1234);
    assert_digests_match_root(&n, &report);
}

#[test]
fn kind_node_reads_through_proc_root() {
    let n = Node::new("kind");
    // The host: a laptop running Docker. Its own /var/lib/kubelet/config.yaml is wide open.
    n.init(
        "systemd",
        &["/usr/lib/systemd/systemd", "--switched-root", "--system"],
    );
    n.other(900, "dockerd", &["/usr/bin/dockerd", "-H", "fd://"]);
    n.other(
        2790,
        "containerd-shim",
        &[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "moby",
            "-id",
            "5d1f0c0ffee5",
            "-address",
            "/run/containerd/containerd.sock",
        ],
    );
    // Inside the node container: its systemd, its containerd, then the kubelet.
    n.in_root(2811, "systemd", &["/sbin/init"]);
    n.in_root(2950, "containerd", &["/usr/local/bin/containerd"]);
    n.kubelet(3377);
    n.other(
        5120,
        "docker",
        &[
            "docker",
            "exec",
            "kind-control-plane",
            "cat",
            "/var/lib/kubelet/config.yaml",
        ],
    );
    let report = n.scan_and_compare();
    assert_eq!(report.kubelet.pid, 3377);
    assert_digests_match_root(&n, &report);
    // The host's decoy exists at the same path and differs: reading it would have shown up
    // as failed checks above; make sure the decoy is really there, so the test means something.
    let host_file = n.host().join("var/lib/kubelet/config.yaml");
    let kubelet_file = n.root().join("var/lib/kubelet/config.yaml");
    assert_ne!(
        fs::read(host_file).unwrap(),
        fs::read(kubelet_file).unwrap()
    );
}

#[test]
fn eks_al2023_node() {
    let n = Node::new("eks-al2023");
    n.init(
        "systemd",
        &[
            "/usr/lib/systemd/systemd",
            "--switched-root",
            "--system",
            "--deserialize=32",
        ],
    );
    n.other(1702, "containerd", &["/usr/bin/containerd"]);
    n.kubelet(1983);
    n.other(
        2104,
        "aws-k8s-agent",
        &["./aws-k8s-agent", "--enable-ipv6=false"],
    );
    n.other(6001, "grep", &["grep", "-c", "kubelet"]);
    let report = n.scan_and_compare();
    assert_digests_match_root(&n, &report);
}

#[test]
fn eks_al2_node() {
    let n = Node::new("eks-al2");
    n.init(
        "systemd",
        &[
            "/usr/lib/systemd/systemd",
            "--switched-root",
            "--system",
            "--deserialize",
            "22",
        ],
    );
    n.other(3120, "containerd", &["/usr/bin/containerd"]);
    n.kubelet(3345);
    // The AL2 AMI's old kubelet health monitor: mentions the kubelet, is not one.
    n.other(
        3400,
        "health-monitor.",
        &["/bin/bash", "/usr/bin/health-monitor.sh", "kubelet"],
    );
    let report = n.scan_and_compare();
    assert_digests_match_root(&n, &report);
}

#[test]
fn bottlerocket_node() {
    let n = Node::new("bottlerocket");
    n.init(
        "systemd",
        &["/sbin/init", "systemd.log_target=journal-or-kmsg"],
    );
    n.other(1030, "containerd", &["/usr/bin/containerd"]);
    // Bottlerocket's settings API server: named apiserver, not Kubernetes'.
    n.other(
        905,
        "apiserver",
        &[
            "/usr/bin/apiserver",
            "--datastore-path",
            "/var/lib/bottlerocket/datastore/current",
            "--socket-gid",
            "274",
        ],
    );
    n.kubelet(1288);
    let report = n.scan_and_compare();
    assert_digests_match_root(&n, &report);
    // The empty argument after --register-with-taints is that flag's value, so nothing on
    // the command line is left over as a positional.
    assert!(
        report
            .warnings
            .iter()
            .all(|w| !w.message.contains("stray argument")),
        "the empty argument was lost: {:?}",
        report.warnings
    );
}

#[test]
fn gce_node() {
    let n = Node::new("gce");
    n.init(
        "systemd",
        &["/usr/lib/systemd/systemd", "noresume", "noswap"],
    );
    n.other(810, "containerd", &["/usr/bin/containerd"]);
    n.kubelet(1066);
    // kube-up's kubelet-monitor.service: `health-monitor.sh kubelet`.
    n.other(
        1101,
        "health-monitor.",
        &["bash", "/home/kubernetes/bin/health-monitor.sh", "kubelet"],
    );
    let report = n.scan_and_compare();
    assert_digests_match_root(&n, &report);
}

#[test]
fn rke2_node() {
    let n = Node::new("rke2");
    n.init("systemd", &["/sbin/init"]);
    // The supervisor, its containerd, then the kubelet it spawned (argv[0] is just "kubelet").
    n.other(1015, "rke2", &["/usr/local/bin/rke2", "server"]);
    n.other(
        1042,
        "containerd",
        &[
            "containerd",
            "-c",
            "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
            "-a",
            "/run/k3s/containerd/containerd.sock",
            "--state",
            "/run/k3s/containerd",
            "--root",
            "/var/lib/rancher/rke2/agent/containerd",
        ],
    );
    n.kubelet(1077);
    n.other(7001, "sh", &["/bin/sh", "-c", "ps aux | grep kubelet"]);
    let report = n.scan_and_compare();
    assert_eq!(
        report.kubelet.cmdline.first().map(String::as_str),
        Some("kubelet")
    );
    assert_digests_match_root(&n, &report);
}

#[test]
fn legacy_flags_only_node() {
    let n = Node::new("legacy-flags");
    n.init("systemd", &["/sbin/init", "splash"]);
    n.other(700, "containerd", &["/usr/bin/containerd"]);
    n.kubelet(955);
    n.other(8800, "grep", &["grep", "kubelet"]);
    let report = n.scan_and_compare();
    assert!(
        report.files.is_empty(),
        "a flags-only kubelet reads no config file"
    );
}

#[test]
fn aks_flags_only_node() {
    let n = Node::new("aks-flags");
    n.init("systemd", &["/sbin/init"]);
    n.other(990, "containerd", &["/usr/bin/containerd"]);
    n.kubelet(2331);
    n.other(2400, "journalctl", &["journalctl", "-u", "kubelet", "-f"]);
    let report = n.scan_and_compare();
    assert!(
        report.files.is_empty(),
        "a flags-only kubelet reads no config file"
    );
}

#[test]
fn talos_node() {
    let n = Node::new("talos");
    // Talos' PID 1 is machined; the kubelet runs in a container with its own root. Its host
    // has no kubelet files at all: point PID 1 at an empty directory.
    let talos_host = n.tmp.path().join("talos-host");
    fs::create_dir_all(&talos_host).unwrap();
    n.proc
        .process(1, "machined", &["/sbin/init"])
        .and_then(|p| p.root(&talos_host))
        .expect("pid 1");
    n.proc
        .process(
            1320,
            "containerd",
            &[
                "/bin/containerd",
                "--address",
                "/system/run/containerd/containerd.sock",
            ],
        )
        .and_then(|p| p.root(&talos_host))
        .expect("system containerd");
    n.kubelet(2214);
    let report = n.scan_and_compare();
    assert_digests_match_root(&n, &report);
}

// ---- traps from kube-bench's issue tracker, on a synthetic node ---------------------------

/// aquasecurity/kube-bench#1256: `--config=kubelet_conf.json` (relative) made kube-bench read
/// the wrong file and fail 4.2.1–4.2.3. The kubelet resolves a relative `--config` against its
/// own working directory (`filepath.Abs` in `loadConfigFile`, cmd/kubelet/app/server.go), so the
/// scan must too, inside the kubelet's root. A decoy with the same name sits at `/`, where a
/// reader that ignores the cwd would look.
#[test]
fn relative_config_resolves_against_kubelet_cwd() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = FakeProc::new(&tmp.path().join("proc")).unwrap();
    proc.node("crio-node", "5.14.0", 1_767_225_600).unwrap();
    let root = tmp.path().join("root");
    let good = r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration",
        "authentication":{"anonymous":{"enabled":false},"webhook":{"enabled":true},
        "x509":{"clientCAFile":"/etc/kubernetes/ca.crt"}},
        "authorization":{"mode":"Webhook"},"protectKernelDefaults":true}"#;
    let decoy = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 authentication:\n  anonymous:\n    enabled: true\nauthorization:\n  mode: AlwaysAllow\n";
    proc.process(1, "systemd", &["/sbin/init"])
        .and_then(|p| p.root(&root))
        .unwrap();
    proc.process(
        2048,
        "kubelet",
        &[
            "/usr/bin/kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--container-runtime-endpoint=unix:///var/run/crio/crio.sock",
            "--config=kubelet_conf.json",
        ],
    )
    .and_then(|p| p.root(&root))
    .and_then(|p| p.file("/etc/kubernetes/kubelet_conf.json", good))
    .and_then(|p| p.file("/kubelet_conf.json", decoy))
    .and_then(|p| p.cwd(&root.join("etc/kubernetes")))
    .unwrap();
    let snap = collect(&ScanOptions {
        proc_dir: proc.path().to_path_buf(),
        pid: None,
        kubelet_version: None,
        // A fake node: its ports are not this machine's.
        probe: false,
    })
    .unwrap();
    let report = assemble(&snap, SCAN_TIME.to_string());
    assert_eq!(
        report.kubelet.config_file.as_deref(),
        Some("/etc/kubernetes/kubelet_conf.json")
    );
    for cis in ["4.2.1", "4.2.2", "4.2.3"] {
        let c = report.checks.iter().find(|c| c.cis == cis).unwrap();
        assert_eq!(
            c.status.as_str(),
            "pass",
            "{cis}: {} ({})",
            c.actual,
            c.note
        );
    }
}

/// A drop-in's `streamingConnectionIdleTimeout: 0s` means different things by version:
/// 1.30-1.31 decode merged drop-ins into the internal struct without defaulting
/// (`mergeKubeletConfigurations`, cmd/kubelet/app/server.go), so 0 stays 0 (no idle
/// timeout; CIS 4.2.5 not met); 1.32+ (kubernetes/kubernetes#127421) decode into a fresh
/// v1beta1 struct and default it, so it becomes 4h. nodeproof reads the version from the
/// build stamp in the kubelet's binary; without one the setting is unknown and the check is
/// an error, never a guess. Any tool that marshals a v1beta1 `KubeletConfiguration` into a
/// drop-in without setting the field writes exactly this line.
#[test]
fn dropin_zero_duration_depends_on_the_kubelet_version() {
    for (stamp, value, source, status) in [
        (Some("v1.31.4"), Some("0s"), Some("drop-in"), "fail"),
        (Some("v1.32.1"), Some("4h0m0s"), Some("default"), "pass"),
        (None, None, None, "error"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let proc = FakeProc::new(&tmp.path().join("proc")).unwrap();
        proc.node("n", "6.8.0", 1_767_225_600).unwrap();
        // The kubeadm node, copied so a drop-in can be added without touching the fixture.
        let combined = tmp.path().join("root");
        copy_tree(&fixtures_dir().join("kubeadm").join("root"), &combined);
        let dropins = combined.join("etc/kubernetes/kubelet.conf.d");
        fs::create_dir_all(&dropins).unwrap();
        fs::write(
            dropins.join("90-tuning.conf"),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             streamingConnectionIdleTimeout: 0s\n",
        )
        .unwrap();
        // A stand-in binary carrying the build stamp Go records from -ldflags.
        let exe = combined.join("usr/bin/kubelet");
        fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let body = match stamp {
            Some(v) => format!(
                "\x7fELF...build\t-ldflags=\"-X 'k8s.io/component-base/version.gitVersion={v}'\"..."
            ),
            None => "\x7fELF...stripped...".to_string(),
        };
        fs::write(&exe, body).unwrap();
        proc.process(1, "systemd", &["/sbin/init"])
            .and_then(|p| p.root(&combined))
            .unwrap();
        proc.process(
            1234,
            "kubelet",
            &[
                "/usr/bin/kubelet",
                "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml",
                "--config-dir=/etc/kubernetes/kubelet.conf.d",
            ],
        )
        .and_then(|p| p.root(&combined))
        .and_then(|p| p.exe(&exe))
        .unwrap();
        let snap = collect(&ScanOptions {
            proc_dir: proc.path().to_path_buf(),
            pid: None,
            kubelet_version: None,
            // A fake node: its ports are not this machine's.
            probe: false,
        })
        .unwrap();
        assert_eq!(snap.kubelet_version.as_deref(), stamp);
        let report = assemble(&snap, SCAN_TIME.to_string());
        assert_eq!(report.kubelet.version.as_deref(), stamp);
        let c = report.checks.iter().find(|c| c.cis == "4.2.5").unwrap();
        assert_eq!(c.status.as_str(), status, "{stamp:?}: {}", c.note);
        match (value, source) {
            (Some(value), Some(source)) => {
                let s = &report.settings["streamingConnectionIdleTimeout"];
                assert_eq!(s.value, Value::String(value.into()), "{}", s.origin);
                assert_eq!(s.source.as_str(), source);
            }
            _ => assert!(c.note.contains("1.32"), "{}", c.note),
        }
    }
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
