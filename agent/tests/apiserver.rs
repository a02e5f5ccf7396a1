//! The API server's side (CIS 1.2.4, 1.2.5, 1.1.19-1.1.21) on fake nodes with real files
//! and real modes.
//!
//! Each test lays out a fake /proc (`nodeproof_agent::fakeproc`) with a kubelet on the host
//! and, on a control-plane node, a kube-apiserver whose root is a directory of its own (a
//! static pod's container) holding its PKI files, then runs the real scan
//! (`scan::collect` + `scan::assemble`). A wrong owner is made with `chown` to uid 1000 when
//! running as root; that test says so and stops otherwise.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{assemble, collect, collect_all, ScanOptions};
use nodeproof_proto::{CheckResult, Report, Source, Status};
use tempfile::TempDir;

const KUBELET_PID: i32 = 4242;
const APISERVER_PID: i32 = 3100;
const CHECKS: &[&str] = &["1.2.4", "1.2.5", "1.1.19", "1.1.20", "1.1.21"];

const CERT: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.key";
const CA: &str = "/etc/kubernetes/pki/ca.crt";

/// The host's network namespace, as `readlink /proc/<pid>/ns/net` shows it: the host's
/// processes and every hostNetwork pod (kubeadm's static kube-apiserver) share it.
const HOST_NET: &str = "net:[4026531840]";

/// kube-apiserver's command line as kubeadm writes it into
/// `/etc/kubernetes/manifests/kube-apiserver.yaml`: the defaults of `getAPIServerCommand`
/// (kubernetes/kubernetes `cmd/kubeadm/app/phases/controlplane/manifests.go`, commit
/// ad7cb45bb24a21d7f391c10985d0af850471f426), local etcd, `authorization-mode=Node,RBAC`,
/// sorted by name as `kubeadmutil.ArgumentsToCommand` writes them. kubeadm sets
/// `--kubelet-client-certificate` and `--kubelet-client-key` but not
/// `--kubelet-certificate-authority`.
fn kubeadm_apiserver() -> Vec<String> {
    [
        "kube-apiserver",
        "--advertise-address=172.18.0.2",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// kubeadm's command line with `apiServer.extraArgs: [{name:
/// kubelet-certificate-authority, value: /etc/kubernetes/pki/ca.crt}]`, which kubeadm merges
/// into its sorted list.
fn kubeadm_apiserver_with_ca() -> Vec<String> {
    let mut argv = kubeadm_apiserver();
    argv.push(format!("--kubelet-certificate-authority={CA}"));
    argv[1..].sort();
    argv
}

struct Node {
    tmp: TempDir,
    proc: FakeProc,
}

impl Node {
    /// A node with init and a kubelet on the host, and no API server (a worker).
    fn worker() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let proc = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
        proc.node("node-1", "6.8.0", 1_767_225_600)
            .expect("node files");
        let host = tmp.path().join("host");
        proc.process(1, "systemd", &["/sbin/init"])
            .and_then(|p| p.root(&host))
            .and_then(|p| p.netns(HOST_NET))
            .expect("pid 1");
        proc.process(
            KUBELET_PID,
            "kubelet",
            &[
                "/usr/bin/kubelet",
                "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml",
            ],
        )
        .and_then(|p| p.root(&host))
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| {
            p.file(
                "/var/lib/kubelet/config.yaml",
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
            )
        })
        .expect("kubelet");
        Node { tmp, proc }
    }

    /// A kubeadm control-plane node: the worker's kubelet plus a kube-apiserver in a
    /// container of its own (its own root, the host's network: a static pod with
    /// `hostNetwork: true`) with `argv`, and the PKI files kubeadm writes (certificates
    /// 0644, keys 0600, `pkiutil`'s modes), owned by the test's user.
    fn control_plane(argv: &[String]) -> Node {
        let node = Node::worker();
        node.apiserver(argv);
        node.write(CERT, 0o644);
        node.write(KEY, 0o600);
        node.write(CA, 0o644);
        node
    }

    /// The directory standing for the API server container's `/`.
    fn apiserver_root(&self) -> PathBuf {
        self.tmp.path().join("containers/kube-apiserver/rootfs")
    }

    fn apiserver(&self, argv: &[String]) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.proc
            .process(APISERVER_PID, "kube-apiserver", &argv)
            .and_then(|p| p.root(&self.apiserver_root()))
            .and_then(|p| p.netns(HOST_NET))
            .expect("kube-apiserver");
    }

    /// The host path of `path` inside the API server's root.
    fn host(&self, path: &str) -> PathBuf {
        self.apiserver_root().join(path.trim_start_matches('/'))
    }

    fn write(&self, path: &str, mode: u32) {
        let host = self.host(path);
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(&host, "-----BEGIN CERTIFICATE-----\n").expect("write");
        chmod(&host, mode);
    }

    fn scan(&self) -> Report {
        self.scan_pid(None)
    }

    fn scan_pid(&self, pid: Option<i32>) -> Report {
        let opts = ScanOptions {
            proc_dir: self.proc.path().to_path_buf(),
            pid,
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

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn check<'a>(r: &'a Report, cis: &str) -> &'a CheckResult {
    r.checks
        .iter()
        .find(|c| c.cis == cis)
        .unwrap_or_else(|| panic!("{cis} not in the report"))
}

#[test]
fn a_kubeadm_control_plane_with_a_kubelet_ca_passes() {
    let node = Node::control_plane(&kubeadm_apiserver_with_ca());
    let r = node.scan();
    let owner_ok = running_as_root();
    for cis in CHECKS {
        let c = check(&r, cis);
        if *cis == "1.1.19" && !owner_ok {
            continue; // the files belong to the test's user
        }
        assert_eq!(c.status, Status::Pass, "{cis}: {} / {}", c.actual, c.note);
        assert!(c.note.is_empty(), "{cis}: {}", c.note);
        assert_eq!(c.source, Some(Source::Flag), "{cis}");
    }
    let c = check(&r, "1.2.4");
    assert_eq!(c.id, "apiserver-kubelet-client-certificate");
    assert_eq!(
        c.actual,
        format!("--kubelet-client-certificate={CERT} --kubelet-client-key={KEY}")
    );
    assert_eq!(
        c.origin.as_deref(),
        Some(
            format!("kube-apiserver (pid {APISERVER_PID}) --kubelet-client-certificate={CERT}")
                .as_str()
        )
    );
    assert_eq!(
        check(&r, "1.1.20").actual,
        format!("{CERT} 0644 {u}:{u}; {CA} 0644 {u}:{u}", u = uid())
    );
    assert_eq!(
        check(&r, "1.1.21").actual,
        format!("{KEY} 0600 {u}:{u}", u = uid())
    );

    // The report's JSON has the same shape as every other check's.
    let json = serde_json::to_value(&r).expect("json");
    let entry = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["cis"] == "1.2.5")
        .expect("1.2.5 in the JSON");
    assert_eq!(entry["id"], "apiserver-kubelet-certificate-authority");
    assert_eq!(entry["status"], "pass");
    assert_eq!(entry["source"], "flag");
    assert_eq!(entry["severity"], "high");

    // And the text report groups them under kube-bench's headings.
    let text = nodeproof_agent::render::text(&r, false);
    assert!(
        text.contains("[INFO] 1.2 API Server\n[PASS] 1.2.4 "),
        "{text}"
    );
    assert!(
        text.contains("[INFO] 1.1 Control Plane Node Configuration Files\n"),
        "{text}"
    );
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// kubeadm as it comes: everything but the kubelet CA, which it never sets.
#[test]
fn a_stock_kubeadm_control_plane_fails_only_the_kubelet_ca() {
    let node = Node::control_plane(&kubeadm_apiserver());
    let r = node.scan();
    let c = check(&r, "1.2.5");
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.actual, "--kubelet-certificate-authority: not set");
    assert_eq!(c.source, Some(Source::Default));
    assert!(c.note.contains("kubeadm does not set it"), "{}", c.note);
    for cis in ["1.2.4", "1.1.20", "1.1.21"] {
        assert_eq!(check(&r, cis).status, Status::Pass, "{cis}");
    }
    // 1.1.20 then looks at the client certificate alone.
    assert_eq!(
        check(&r, "1.1.20").actual,
        format!("{CERT} 0644 {u}:{u}", u = uid())
    );
}

#[test]
fn an_api_server_without_kubelet_flags_fails_the_flag_checks() {
    let node = Node::worker();
    node.apiserver(&[
        "/usr/local/bin/kube-apiserver".to_string(),
        "--etcd-servers".to_string(),
        "https://10.0.0.5:2379".to_string(),
        "--anonymous-auth".to_string(),
        "--secure-port=6443".to_string(),
    ]);
    let r = node.scan();
    for cis in ["1.2.4", "1.2.5"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Fail, "{cis}: {c:?}");
        assert_eq!(c.source, Some(Source::Default), "{cis}");
    }
    assert_eq!(
        check(&r, "1.2.4").actual,
        "--kubelet-client-certificate: not set --kubelet-client-key: not set"
    );
    for cis in ["1.1.19", "1.1.20", "1.1.21"] {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}");
        assert!(c.note.starts_with("Not applicable: "), "{cis}: {}", c.note);
    }
}

#[test]
fn loose_modes_fail_the_permission_checks() {
    let node = Node::control_plane(&kubeadm_apiserver_with_ca());
    chmod(&node.host(KEY), 0o644);
    chmod(&node.host(CA), 0o664);
    let r = node.scan();
    let key = check(&r, "1.1.21");
    assert_eq!(key.status, Status::Fail, "{key:?}");
    assert!(
        key.note.contains("0644 has bits outside 0600"),
        "{}",
        key.note
    );
    assert!(
        key.note.contains("group or others can read it"),
        "{}",
        key.note
    );
    assert_eq!(
        key.origin.as_deref(),
        Some(
            format!("{KEY}: kube-apiserver (pid {APISERVER_PID}) --kubelet-client-key={KEY}")
                .as_str()
        )
    );
    let certs = check(&r, "1.1.20");
    assert_eq!(certs.status, Status::Fail);
    assert!(
        certs.note.starts_with(&format!("{CA}: 0664")),
        "{}",
        certs.note
    );
    // The flags are still right.
    assert_eq!(check(&r, "1.2.4").status, Status::Pass);

    // More restrictive than asked passes.
    chmod(&node.host(KEY), 0o400);
    chmod(&node.host(CA), 0o444);
    let r = node.scan();
    assert_eq!(check(&r, "1.1.21").status, Status::Pass);
    assert_eq!(check(&r, "1.1.20").status, Status::Pass);
}

#[test]
fn a_wrong_owner_fails_the_ownership_check() {
    if !running_as_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let node = Node::control_plane(&kubeadm_apiserver_with_ca());
    chown(node.host(CA), Some(1000), Some(1000)).expect("chown");
    let r = node.scan();
    let c = check(&r, "1.1.19");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.note.starts_with(&format!("{CA}: owned by uid 1000")),
        "{}",
        c.note
    );
}

#[test]
fn a_worker_without_an_api_server_is_not_applicable() {
    let node = Node::worker();
    // A zombie kube-apiserver has no command line: not a running API server.
    node.proc
        .process(APISERVER_PID, "kube-apiserver", &[])
        .and_then(|p| p.state('Z'))
        .expect("zombie");
    // Nor is a process that merely names it.
    node.proc
        .process(77, "grep", &["grep", "kube-apiserver"])
        .expect("grep");
    let r = node.scan();
    for cis in CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert_eq!(c.actual, "no kube-apiserver on this node");
        assert!(
            c.note
                .starts_with("Not applicable: no kube-apiserver process"),
            "{}",
            c.note
        );
        assert_eq!(c.source, None);
    }
}

#[test]
fn a_command_line_kube_apiserver_would_refuse_is_error() {
    for extra in [
        &["stray-positional"][..],
        &["--kubelet-client-key"][..],
        &["--", "x"][..],
    ] {
        let mut argv = kubeadm_apiserver_with_ca();
        argv.extend(extra.iter().map(|s| s.to_string()));
        let node = Node::control_plane(&argv);
        let r = node.scan();
        for cis in CHECKS {
            let c = check(&r, cis);
            assert_eq!(c.status, Status::Error, "{extra:?} {cis}: {c:?}");
            assert!(c.note.contains("refuses to start"), "{}", c.note);
        }
        // The kubelet's checks are not touched by it.
        assert_ne!(check(&r, "4.2.6").status, Status::Error, "{extra:?}");
    }
}

#[test]
fn pflag_rules_decide_which_file_is_used() {
    // The last --kubelet-client-key wins, `_` is `-`, a relative path is taken against the
    // API server's working directory, and the separate-argument form works.
    let mut argv = kubeadm_apiserver_with_ca();
    argv.extend(
        ["--kubelet_client_key", "pki/other.key", "-v", "2"]
            .iter()
            .map(|s| s.to_string()),
    );
    let node = Node::control_plane(&argv);
    node.write("/etc/kubernetes/pki/other.key", 0o640);
    let cwd = node.host("/etc/kubernetes");
    fs::remove_file(node.proc.path().join(APISERVER_PID.to_string()).join("cwd")).expect("rm");
    std::os::unix::fs::symlink(
        &cwd,
        node.proc.path().join(APISERVER_PID.to_string()).join("cwd"),
    )
    .expect("cwd");
    let r = node.scan();
    let c = check(&r, "1.1.21");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.actual,
        format!("/etc/kubernetes/pki/other.key 0640 {u}:{u}", u = uid())
    );
    let flags = check(&r, "1.2.4");
    assert_eq!(flags.status, Status::Pass);
    assert!(
        flags.note.contains("--kubelet-client-key is given 2 times"),
        "{}",
        flags.note
    );
    assert!(
        flags.actual.ends_with("--kubelet-client-key=pki/other.key"),
        "{}",
        flags.actual
    );
}

#[test]
fn a_symlinked_or_absent_key_is_judged_inside_the_api_servers_root() {
    let node = Node::control_plane(&kubeadm_apiserver_with_ca());
    // kubeadm's files as links into another directory of the container: judged by the
    // target, which is 0644.
    fs::remove_file(node.host(KEY)).expect("rm");
    node.write("/var/lib/pki/kubelet-client.key", 0o644);
    std::os::unix::fs::symlink("/var/lib/pki/kubelet-client.key", node.host(KEY)).expect("ln");
    let r = node.scan();
    let c = check(&r, "1.1.21");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.actual,
        format!(
            "{KEY} -> /var/lib/pki/kubelet-client.key 0644 {u}:{u}",
            u = uid()
        )
    );
    // Gone: nobody can read it through a mode; the note says what that means.
    fs::remove_file(node.host(KEY)).expect("rm");
    let r = node.scan();
    let c = check(&r, "1.1.21");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert_eq!(c.actual, format!("{KEY}: absent"));
    assert!(
        c.note.contains("will not start again without it"),
        "{}",
        c.note
    );
}

/// k3s runs the API server inside its `k3s server` process: its flags are on no command
/// line, so the verdict is unknown, never a pass.
#[test]
fn an_embedded_api_server_is_not_known() {
    let node = Node::worker();
    node.proc
        .process(812, "k3s-server", &["/usr/local/bin/k3s", "server"])
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| p.root(&node.tmp.path().join("host")))
        .expect("k3s");
    let r = node.scan_pid(Some(KUBELET_PID));
    for cis in CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Error, "{cis}: {c:?}");
        assert!(
            c.note
                .starts_with("k3s server (pid 812) runs the API server"),
            "{}",
            c.note
        );
    }
}

#[test]
fn several_api_servers_are_each_judged() {
    let node = Node::control_plane(&kubeadm_apiserver_with_ca());
    let argv = kubeadm_apiserver();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    node.proc
        .process(3200, "kube-apiserver", &argv)
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| p.root(&node.apiserver_root()))
        .expect("second kube-apiserver");
    let r = node.scan();
    let c = check(&r, "1.2.5");
    assert_eq!(c.status, Status::Fail);
    assert_eq!(
        c.actual,
        format!(
            "kube-apiserver pid {APISERVER_PID}: --kubelet-certificate-authority={CA}; \
             kube-apiserver pid 3200: --kubelet-certificate-authority: not set"
        )
    );
    assert_eq!(check(&r, "1.2.4").status, Status::Pass);
}

/// Old hyperkube images run `hyperkube kube-apiserver ...`: the same API server.
#[test]
fn a_hyperkube_api_server_is_found() {
    let node = Node::control_plane(&kubeadm_apiserver());
    fs::remove_dir_all(node.proc.path().join(APISERVER_PID.to_string())).expect("rm");
    let mut argv = vec!["/hyperkube".to_string()];
    argv.extend(kubeadm_apiserver());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    node.proc
        .process(APISERVER_PID, "hyperkube", &argv)
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| p.root(&node.apiserver_root()))
        .expect("hyperkube");
    let r = node.scan();
    assert_eq!(check(&r, "1.2.4").status, Status::Pass);
    assert_eq!(check(&r, "1.2.5").status, Status::Fail);
    assert_eq!(check(&r, "1.1.21").status, Status::Pass);
}

/// microk8s' kubelite may run the API server in-process: not known, never a pass. A k3s
/// agent (a worker) runs none.
#[test]
fn kubelite_is_not_known_and_a_k3s_agent_runs_no_api_server() {
    let node = Node::worker();
    node.proc
        .process(900, "kubelite", &["/snap/microk8s/7229/kubelite"])
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| p.root(&node.tmp.path().join("host")))
        .expect("kubelite");
    let r = node.scan_pid(Some(KUBELET_PID));
    for cis in CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Error, "{cis}: {c:?}");
        assert!(
            c.note.starts_with("microk8s' kubelite (pid 900)"),
            "{}",
            c.note
        );
    }

    let node = Node::worker();
    node.proc
        .process(812, "k3s-agent", &["/usr/local/bin/k3s", "agent"])
        .and_then(|p| p.netns(HOST_NET))
        .and_then(|p| p.root(&node.tmp.path().join("host")))
        .expect("k3s agent");
    let r = node.scan_pid(Some(KUBELET_PID));
    for cis in CHECKS {
        assert_eq!(check(&r, cis).status, Status::Pass, "{cis}");
    }
}

/// One kind node on a host: a container whose root is `root` and whose network namespace
/// is `net`, with its kubelet (pid `kubelet`) and, for a control-plane node, its
/// kube-apiserver (pid `kubelet + 100`), a static pod nested in the node container: a root
/// of its own, the node container's network (`hostNetwork: true`).
fn kind_node(
    proc: &FakeProc,
    base: &Path,
    name: &str,
    net: &str,
    kubelet: i32,
    api: Option<&[String]>,
) {
    let root = base.join(name);
    proc.process(
        kubelet,
        "kubelet",
        &[
            "/usr/bin/kubelet",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
        ],
    )
    .and_then(|p| p.root(&root))
    .and_then(|p| p.netns(net))
    .and_then(|p| {
        p.file(
            "/var/lib/kubelet/config.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
        )
    })
    .expect("kind kubelet");
    let Some(argv) = api else { return };
    let api_root = base.join(format!("{name}-apiserver"));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let p = proc
        .process(kubelet + 100, "kube-apiserver", &argv)
        .and_then(|p| p.root(&api_root))
        .and_then(|p| p.netns(net))
        .expect("kind kube-apiserver");
    for (path, mode) in [(CERT, 0o644), (KEY, 0o600), (CA, 0o644)] {
        let host = p.in_root(path).expect("in root");
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(&host, "-----BEGIN CERTIFICATE-----\n").expect("write");
        chmod(&host, mode);
    }
}

/// `scan --all` on a host running two kind clusters: each kubelet's report judges only
/// the API server on its own node (the one in its network namespace). Cluster one's API
/// server lacks `--kubelet-certificate-authority` (1.2.5 fails), cluster two's has it; the
/// worker of cluster one runs none. Without scoping, every report would carry both API
/// servers and 1.2.5 would fail in all three.
#[test]
fn with_several_kind_nodes_each_kubelet_sees_its_own_nodes_api_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let proc = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
    proc.node("host", "6.8.0", 1_767_225_600)
        .expect("node files");
    proc.process(1, "systemd", &["/sbin/init"])
        .and_then(|p| p.root(&tmp.path().join("host")))
        .and_then(|p| p.netns(HOST_NET))
        .expect("pid 1");
    let base = tmp.path().join("docker");
    let (one, one_worker, two) = ("net:[4026532301]", "net:[4026532402]", "net:[4026532503]");
    kind_node(
        &proc,
        &base,
        "one-control-plane",
        one,
        5001,
        Some(&kubeadm_apiserver()),
    );
    kind_node(&proc, &base, "one-worker", one_worker, 6001, None);
    kind_node(
        &proc,
        &base,
        "two-control-plane",
        two,
        7001,
        Some(&kubeadm_apiserver_with_ca()),
    );
    let opts = ScanOptions {
        proc_dir: proc.path().to_path_buf(),
        pid: None,
        kubelet_version: Some("v1.31.4".to_string()),
        probe: false,
    };
    let reports: Vec<Report> = collect_all(&opts)
        .expect("scan --all")
        .iter()
        .map(|s| assemble(s, "2026-01-01T00:00:00Z".to_string()))
        .collect();
    let pids: Vec<i32> = reports.iter().map(|r| r.kubelet.pid).collect();
    assert_eq!(pids, [5001, 6001, 7001]);

    // Cluster one's control plane: its API server alone, named by neither pid prefix nor
    // the other cluster's flags.
    let c = check(&reports[0], "1.2.5");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.actual, "--kubelet-certificate-authority: not set");
    assert!(
        c.origin.as_deref().unwrap_or("").contains("pid 5101"),
        "{c:?}"
    );
    assert_eq!(check(&reports[0], "1.2.4").status, Status::Pass);

    // Cluster one's worker: no API server on its node; the note names the others.
    for cis in CHECKS {
        let c = check(&reports[1], cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert_eq!(c.actual, "no kube-apiserver on this node");
        assert!(
            c.note.starts_with(&format!(
                "Not applicable: no kube-apiserver process runs on this node: none shares \
                 the kubelet's network namespace ({one_worker})"
            )),
            "{cis}: {}",
            c.note
        );
        assert!(c.note.contains(&format!("pid 5101 in {one}")), "{}", c.note);
        assert!(c.note.contains(&format!("pid 7101 in {two}")), "{}", c.note);
    }

    // Cluster two's control plane: its own API server, which sets the kubelet CA.
    let c = check(&reports[2], "1.2.5");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert_eq!(c.actual, format!("--kubelet-certificate-authority={CA}"));
    assert!(c.note.is_empty(), "{}", c.note);
}

/// An API server in a pod of its own network (not hostNetwork: a hosted control plane
/// for another cluster) on a kubeadm worker is not this node's control plane.
#[test]
fn an_api_server_in_another_network_namespace_is_not_this_nodes() {
    let node = Node::worker();
    let argv = kubeadm_apiserver();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    node.proc
        .process(APISERVER_PID, "kube-apiserver", &argv)
        .and_then(|p| p.root(&node.apiserver_root()))
        .and_then(|p| p.netns("net:[4026532999]"))
        .expect("pod-network kube-apiserver");
    let r = node.scan();
    for cis in CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert_eq!(c.actual, "no kube-apiserver on this node");
        assert!(
            c.note
                .contains(&format!("pid {APISERVER_PID} in net:[4026532999]")),
            "{}",
            c.note
        );
    }
}

/// When the kubelet's network namespace cannot be read (the agent may not read another
/// user's namespaces), every API server found is judged, as before scoping, and each
/// check's note says its node was not known. Likewise for one API server whose link
/// cannot be read.
#[test]
fn an_unreadable_network_namespace_keeps_the_api_server_and_says_so() {
    let link = |node: &Node, pid: i32| node.proc.path().join(pid.to_string()).join("ns/net");
    let node = Node::control_plane(&kubeadm_apiserver());
    fs::remove_file(link(&node, KUBELET_PID)).expect("rm kubelet ns");
    let r = node.scan();
    let c = check(&r, "1.2.5");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.actual, "--kubelet-certificate-authority: not set");
    for cis in CHECKS {
        let c = check(&r, cis);
        assert!(
            c.note.contains(&format!(
                "Whether kube-apiserver pid {APISERVER_PID} runs on this kubelet's node could \
                 not be told (the kubelet's network namespace could not be read ({}: ",
                link(&node, KUBELET_PID).display()
            )),
            "{cis}: {}",
            c.note
        );
    }

    // The kubelet's link back, the API server's gone.
    let node = Node::control_plane(&kubeadm_apiserver());
    fs::remove_file(link(&node, APISERVER_PID)).expect("rm apiserver ns");
    let r = node.scan();
    let c = check(&r, "1.2.5");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.note
            .contains("could not be told (its network namespace could not be read ("),
        "{}",
        c.note
    );
}

/// k3d runs each k3s node in a container of its own network: a `k3s server` in another
/// node's network namespace is that node's, so this node has no API server (not
/// applicable) rather than an in-process one nodeproof cannot read (error).
#[test]
fn a_k3s_server_on_another_node_is_not_this_nodes() {
    let node = Node::worker();
    node.proc
        .process(812, "k3s-server", &["/usr/local/bin/k3s", "server"])
        .and_then(|p| p.root(&node.tmp.path().join("k3d-server-0")))
        .and_then(|p| p.netns("net:[4026532777]"))
        .expect("k3s server");
    let r = node.scan_pid(Some(KUBELET_PID));
    for cis in CHECKS {
        let c = check(&r, cis);
        assert_eq!(c.status, Status::Pass, "{cis}: {c:?}");
        assert!(c.note.contains("pid 812 in net:[4026532777]"), "{}", c.note);
    }
}
