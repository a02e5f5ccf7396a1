//! The CIS 4.1 file checks on fake nodes with real files and real modes.
//!
//! Each test lays out a fake /proc (`nodeproof_agent::fakeproc`) whose kubelet's root is a
//! temporary directory holding real files, chmods and chowns them, writes the kubelet's
//! `/proc/<pid>/cgroup`, and runs the real scan (`scan::collect` + `scan::assemble`). The
//! tests run as root here, but assert only what holds for any user who owns the files they
//! create: a wrong owner is made with `chown` to uid 1000 when running as root, and that
//! test says so and stops otherwise.

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{assemble, collect, ScanOptions};
use nodeproof_proto::{CheckResult, Report, Source, Status};
use tempfile::TempDir;

const KUBELET_PID: i32 = 4242;
const CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
                      kind: KubeletConfiguration\n\
                      authentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n";

/// A node whose kubelet (and init) are rooted at `root`.
struct Node {
    tmp: TempDir,
    proc: FakeProc,
    root: PathBuf,
}

impl Node {
    /// A kubeadm-like node: the unit and its drop-in, kubelet.conf, config.yaml and the CA,
    /// each with the mode CIS wants, owned by the test's user; cgroup v2.
    fn kubeadm() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let proc = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
        proc.node("node-1", "6.8.0", 1_767_225_600)
            .expect("node files");
        let root = tmp.path().join("host");
        let node = Node { tmp, proc, root };
        node.proc
            .process(1, "systemd", &["/sbin/init"])
            .and_then(|p| p.root(&node.root))
            .expect("pid 1");
        node.kubelet(&[
            "/usr/bin/kubelet",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
        ]);
        node.cgroup("0::/system.slice/kubelet.service\n");
        node.write(
            "/usr/lib/systemd/system/kubelet.service",
            "[Service]\n",
            0o600,
        );
        node.write(
            "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "[Service]\nExecStart=\n",
            0o600,
        );
        node.write("/etc/kubernetes/kubelet.conf", "apiVersion: v1\n", 0o600);
        node.write("/var/lib/kubelet/config.yaml", CONFIG, 0o600);
        node.write("/etc/kubernetes/pki/ca.crt", "CA\n", 0o644);
        node
    }

    fn kubelet(&self, argv: &[&str]) {
        self.proc
            .process(KUBELET_PID, "kubelet", argv)
            .and_then(|p| p.root(&self.root))
            .expect("kubelet");
    }

    fn cgroup(&self, text: &str) {
        let path = self
            .proc
            .path()
            .join(KUBELET_PID.to_string())
            .join("cgroup");
        fs::write(path, text).expect("cgroup");
    }

    /// The host path of `path` inside the kubelet's root.
    fn host(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn write(&self, path: &str, text: &str, mode: u32) {
        let host = self.host(path);
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(&host, text).expect("write");
        chmod(&host, mode);
    }

    fn scan(&self) -> Report {
        let opts = ScanOptions {
            proc_dir: self.proc.path().to_path_buf(),
            pid: None,
            kubelet_version: Some("v1.31.4".to_string()),
            // A fake node: its ports are not this machine's.
            probe: false,
        };
        let snap = collect(&opts).expect("scan");
        assemble(&snap, "2026-01-01T00:00:00Z".to_string())
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn check<'a>(r: &'a Report, cis: &str) -> &'a CheckResult {
    r.checks
        .iter()
        .find(|c| c.cis == cis)
        .unwrap_or_else(|| panic!("{cis} not in the report"))
}

fn status(r: &Report, cis: &str) -> Status {
    check(r, cis).status
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

const FILE_CHECKS: &[&str] = &[
    "4.1.1", "4.1.2", "4.1.3", "4.1.4", "4.1.5", "4.1.6", "4.1.7", "4.1.8", "4.1.9", "4.1.10",
    "4.1.11",
];

#[test]
fn a_node_as_cis_wants_it_passes_the_4_1_checks() {
    let node = Node::kubeadm();
    let r = node.scan();
    if !running_as_root() {
        // The files belong to the test's user, so only the mode checks can pass.
        return;
    }
    for cis in FILE_CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {} / {}", c.actual, c.note);
    }
    let unit = check(&r, "4.1.1");
    assert_eq!(
        unit.actual,
        "/usr/lib/systemd/system/kubelet.service 0600 0:0; \
         /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf 0600 0:0"
    );
    assert_eq!(unit.source, None);
    assert_eq!(
        unit.origin.as_deref(),
        Some("/usr/lib/systemd/system/kubelet.service: /proc/4242/cgroup (kubelet.service)")
    );
    let kubeconfig = check(&r, "4.1.5");
    assert_eq!(kubeconfig.source, Some(Source::Flag));
    assert_eq!(
        kubeconfig.origin.as_deref(),
        Some("/etc/kubernetes/kubelet.conf: --kubeconfig=/etc/kubernetes/kubelet.conf")
    );
    let ca = check(&r, "4.1.7");
    assert_eq!(ca.source, Some(Source::ConfigFile));
    assert_eq!(ca.actual, "/etc/kubernetes/pki/ca.crt 0644 0:0");
    // Not in use on this node, and said so.
    assert!(check(&r, "4.1.3").note.contains("no kube-proxy process"));
    assert!(check(&r, "4.1.11").note.contains("without --config-dir"));
}

#[test]
fn loose_modes_fail_each_permission_check() {
    let node = Node::kubeadm();
    chmod(&node.host("/usr/lib/systemd/system/kubelet.service"), 0o644);
    chmod(&node.host("/etc/kubernetes/kubelet.conf"), 0o640);
    chmod(&node.host("/etc/kubernetes/pki/ca.crt"), 0o664);
    chmod(&node.host("/var/lib/kubelet/config.yaml"), 0o644);
    let r = node.scan();
    for cis in ["4.1.1", "4.1.5", "4.1.7", "4.1.9"] {
        assert_eq!(status(&r, cis), Status::Fail, "{cis}: {:?}", check(&r, cis));
    }
    let ca = check(&r, "4.1.7");
    assert!(
        ca.note.contains("0664 has bits outside 0644"),
        "{}",
        ca.note
    );
    assert!(ca.note.contains("can write"), "{}", ca.note);
    let unit = check(&r, "4.1.1");
    assert!(
        unit.note
            .starts_with("/usr/lib/systemd/system/kubelet.service: 0644"),
        "{}",
        unit.note
    );
    // 0400 is more restrictive than 600.
    chmod(&node.host("/etc/kubernetes/kubelet.conf"), 0o400);
    assert_eq!(status(&node.scan(), "4.1.5"), Status::Pass);
}

#[test]
fn a_wrong_owner_fails_each_ownership_check() {
    if !running_as_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let node = Node::kubeadm();
    for path in [
        "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/pki/ca.crt",
        "/var/lib/kubelet/config.yaml",
    ] {
        chown(node.host(path), Some(1000), Some(1000)).expect("chown");
    }
    let r = node.scan();
    for cis in ["4.1.2", "4.1.6", "4.1.8", "4.1.10"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Fail, "{cis}: {c:?}");
        assert!(c.note.contains("uid 1000 gid 1000"), "{cis}: {}", c.note);
    }
    assert!(check(&r, "4.1.2")
        .actual
        .ends_with("10-kubeadm.conf 0600 1000:1000"));
    // The mode checks are not affected.
    for cis in ["4.1.1", "4.1.5", "4.1.7", "4.1.9"] {
        assert_eq!(status(&r, cis), Status::Pass, "{cis}");
    }
}

#[test]
fn absent_files_pass_with_a_note_saying_so() {
    let node = Node::kubeadm();
    fs::remove_file(node.host("/etc/kubernetes/kubelet.conf")).expect("rm");
    fs::remove_file(node.host("/etc/kubernetes/pki/ca.crt")).expect("rm");
    let r = node.scan();
    for cis in ["4.1.5", "4.1.6", "4.1.7", "4.1.8"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert!(c.actual.ends_with(": absent"), "{cis}: {}", c.actual);
        assert!(c.note.contains("does not exist"), "{cis}: {}", c.note);
    }
    assert!(check(&r, "4.1.5").note.contains("--bootstrap-kubeconfig"));
    assert!(check(&r, "4.1.7").note.contains("will not start again"));
}

#[test]
fn unit_found_from_cgroup_v1() {
    let node = Node::kubeadm();
    node.cgroup(
        "12:pids:/system.slice/kubelet.service\n\
         3:cpu,cpuacct:/system.slice/kubelet.service\n\
         1:name=systemd:/system.slice/kubelet.service\n\
         0::/\n",
    );
    chmod(&node.host("/usr/lib/systemd/system/kubelet.service"), 0o644);
    let r = node.scan();
    let c = check(&r, "4.1.1");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c
        .actual
        .contains("/usr/lib/systemd/system/kubelet.service 0644"));
}

#[test]
fn unit_in_etc_hides_the_vendor_unit_and_drop_ins_come_from_every_directory() {
    let node = Node::kubeadm();
    node.write("/etc/systemd/system/kubelet.service", "[Service]\n", 0o600);
    // The same drop-in name in /etc hides the vendor's; another name adds to it.
    node.write(
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "[Service]\n",
        0o600,
    );
    node.write(
        "/run/systemd/system/kubelet.service.d/50-extra.conf",
        "[Service]\n",
        0o666,
    );
    node.write("/etc/systemd/system/kubelet.service.d/README", "", 0o666);
    chmod(
        &node.host("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"),
        0o666,
    );
    let r = node.scan();
    let c = check(&r, "4.1.1");
    assert_eq!(
        c.actual,
        "/etc/systemd/system/kubelet.service 0600 0:0; \
         /etc/systemd/system/kubelet.service.d/10-kubeadm.conf 0600 0:0; \
         /run/systemd/system/kubelet.service.d/50-extra.conf 0666 0:0"
            .replace(" 0:0", &format!(" {}", owner()))
    );
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.note
            .starts_with("/run/systemd/system/kubelet.service.d/50-extra.conf: 0666"),
        "{}",
        c.note
    );
}

/// `uid:gid` of the files the test creates.
fn owner() -> String {
    format!(
        "{}:{}",
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw()
    )
}

#[test]
fn a_kubelet_outside_systemd_has_no_unit_to_check() {
    let node = Node::kubeadm();
    node.cgroup("0::/system.slice/docker-0123abcd.scope\n");
    let r = node.scan();
    for cis in ["4.1.1", "4.1.2"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass);
        assert!(c
            .note
            .starts_with("Not applicable: the kubelet does not run as a systemd"));
        assert!(c.note.contains("docker-0123abcd.scope"), "{}", c.note);
    }
}

#[test]
fn an_unreadable_cgroup_is_error_not_a_pass() {
    let node = Node::kubeadm();
    fs::remove_file(
        node.proc
            .path()
            .join(KUBELET_PID.to_string())
            .join("cgroup"),
    )
    .expect("rm");
    let r = node.scan();
    let c = check(&r, "4.1.1");
    assert_eq!(c.status, Status::Error, "{c:?}");
    assert!(c.note.contains("cgroup"), "{}", c.note);
}

/// Some distributions symlink the kubeconfig: the mode that matters is the target's, found
/// inside the kubelet's root even for an absolute link (which must not reach this host's
/// /opt), and the report shows where the link led.
#[test]
fn symlinked_kubeconfig_is_judged_by_its_target_inside_the_root() {
    let node = Node::kubeadm();
    fs::remove_file(node.host("/etc/kubernetes/kubelet.conf")).expect("rm");
    node.write(
        "/opt/nodeproof-test/kubelet.conf",
        "apiVersion: v1\n",
        0o644,
    );
    symlink(
        "/opt/nodeproof-test/kubelet.conf",
        node.host("/etc/kubernetes/kubelet.conf"),
    )
    .expect("symlink");
    let r = node.scan();
    let c = check(&r, "4.1.5");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.actual,
        format!(
            "/etc/kubernetes/kubelet.conf -> /opt/nodeproof-test/kubelet.conf 0644 {}",
            owner()
        )
    );
    chmod(&node.host("/opt/nodeproof-test/kubelet.conf"), 0o600);
    assert_eq!(status(&node.scan(), "4.1.5"), Status::Pass);
    // A link that climbs out with `..` stays inside the root: here it finds nothing.
    fs::remove_file(node.host("/etc/kubernetes/kubelet.conf")).expect("rm");
    symlink(
        "../../../../../../../../etc/hostname",
        node.host("/etc/kubernetes/kubelet.conf"),
    )
    .expect("symlink");
    let c = check(&node.scan(), "4.1.5").clone();
    assert_eq!(c.actual, "/etc/kubernetes/kubelet.conf: absent", "{c:?}");
}

#[test]
fn config_dir_and_its_drop_ins() {
    let node = Node::kubeadm();
    node.kubelet(&[
        "/usr/bin/kubelet",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
        "--config-dir=/etc/kubernetes/kubelet.conf.d",
    ]);
    node.write(
        "/etc/kubernetes/kubelet.conf.d/10-a.conf",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
        0o644,
    );
    node.write("/etc/kubernetes/kubelet.conf.d/notes.txt", "", 0o666);
    let dir = node.host("/etc/kubernetes/kubelet.conf.d");
    chmod(&dir, 0o775);
    let r = node.scan();
    let config = check(&r, "4.1.9");
    assert_eq!(config.status, Status::Fail, "{config:?}");
    assert!(
        config.actual.ends_with(&format!(
            "/etc/kubernetes/kubelet.conf.d/10-a.conf 0644 {}",
            owner()
        )),
        "{}",
        config.actual
    );
    assert!(!config.actual.contains("notes.txt"), "{}", config.actual);
    let c = check(&r, "4.1.11");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.note.contains("0775 has bits outside 0755"), "{}", c.note);
    chmod(&dir, 0o755);
    let c = check(&node.scan(), "4.1.11").clone();
    if running_as_root() {
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }
}

#[test]
fn kube_proxy_on_the_host_has_its_kubeconfig_checked() {
    let node = Node::kubeadm();
    node.write("/var/lib/kube-proxy/kubeconfig", "apiVersion: v1\n", 0o644);
    node.proc
        .process(
            500,
            "kube-proxy",
            &[
                "/usr/local/bin/kube-proxy",
                "--kubeconfig",
                "/var/lib/kube-proxy/kubeconfig",
            ],
        )
        .and_then(|p| p.root(&node.root))
        .expect("kube-proxy");
    let r = node.scan();
    let c = check(&r, "4.1.3");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.origin.as_deref(),
        Some("/var/lib/kube-proxy/kubeconfig: kube-proxy (pid 500) --kubeconfig /var/lib/kube-proxy/kubeconfig")
    );
    chmod(&node.host("/var/lib/kube-proxy/kubeconfig"), 0o600);
    assert_eq!(status(&node.scan(), "4.1.3"), Status::Pass);
}

#[test]
fn kube_proxy_config_file_names_the_kubeconfig() {
    let node = Node::kubeadm();
    node.write(
        "/etc/kube-proxy/config.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
         clientConnection:\n  kubeconfig: /etc/kube-proxy/kubeconfig\n",
        0o644,
    );
    node.write("/etc/kube-proxy/kubeconfig", "apiVersion: v1\n", 0o666);
    node.proc
        .process(
            500,
            "kube-proxy",
            &["kube-proxy", "--config=/etc/kube-proxy/config.yaml"],
        )
        .and_then(|p| p.root(&node.root))
        .expect("kube-proxy");
    let c = check(&node.scan(), "4.1.3").clone();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.actual.starts_with("/etc/kube-proxy/kubeconfig 0666"),
        "{}",
        c.actual
    );
}

/// kubeadm runs kube-proxy as a DaemonSet: its kubeconfig is in a ConfigMap volume of its
/// pod, not a host file, and the checks say so instead of judging it.
#[test]
fn kube_proxy_in_a_pod_is_not_a_host_file() {
    let node = Node::kubeadm();
    let pod_root = node.tmp.path().join("kube-proxy-container");
    node.proc
        .process(
            600,
            "kube-proxy",
            &[
                "/usr/local/bin/kube-proxy",
                "--config=/var/lib/kube-proxy/config.conf",
                "--hostname-override=node-1",
            ],
        )
        .and_then(|p| p.root(&pod_root))
        .and_then(|p| {
            p.file(
                "/var/lib/kube-proxy/config.conf",
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
                 clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n",
            )
        })
        .and_then(|p| p.file("/var/lib/kube-proxy/kubeconfig.conf", "apiVersion: v1\n"))
        .expect("kube-proxy pod");
    chmod(&pod_root.join("var/lib/kube-proxy/kubeconfig.conf"), 0o644);
    let r = node.scan();
    for cis in ["4.1.3", "4.1.4"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert!(c.note.contains("runs in a container"), "{}", c.note);
        assert!(c.note.contains("mode 0644"), "{}", c.note);
    }
}

#[test]
fn the_4_1_checks_have_the_4_2_shape_in_json() {
    let node = Node::kubeadm();
    let json = serde_json::to_value(node.scan()).expect("json");
    let checks = json["checks"].as_array().expect("checks");
    for cis in FILE_CHECKS {
        let c = checks
            .iter()
            .find(|c| c["cis"] == *cis)
            .unwrap_or_else(|| panic!("{cis} not in the JSON"));
        for key in [
            "id", "cis", "status", "source", "origin", "severity", "note",
        ] {
            assert!(c.get(key).is_some(), "{cis} lacks {key}: {c}");
        }
    }
    let text = nodeproof_agent::render::text(&node.scan(), false);
    assert!(
        text.contains("4.1 Worker Node Configuration Files"),
        "{text}"
    );
    assert!(text.contains("4.1.11"), "{text}");
}
