//! Finding the kubelet and reading its files, on a fake /proc laid out by `fakeproc` (through
//! the real procfs code and real file reads), and once on this machine's real /proc.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nodeproof_agent::fakeproc::{FakeProc, FakeProcess};
use nodeproof_agent::process::{find_kubelet, node_facts, FindError, KubeletProcess, ReadCause};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A temp dir holding `proc/` (the fake /proc) and `rootfs/` (the kubelet's `/`).
struct Node {
    tmp: TempDir,
    fake: FakeProc,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fake = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
        Node { tmp, fake }
    }
    fn proc_dir(&self) -> &Path {
        self.fake.path()
    }
    fn rootfs(&self) -> PathBuf {
        self.tmp.path().join("rootfs")
    }
    /// Some ordinary processes every node has.
    fn with_background(self) -> Self {
        self.fake
            .process(1, "systemd", &["/sbin/init", "splash"])
            .unwrap();
        self.fake.process(2, "kthreadd", &[]).unwrap();
        self.fake
            .process(812, "containerd", &["/usr/bin/containerd"])
            .unwrap();
        self
    }
    fn kubelet(&self, pid: i32, argv: &[&str]) -> FakeProcess {
        self.fake
            .process(pid, "kubelet", argv)
            .unwrap()
            .root(&self.rootfs())
            .unwrap()
    }
    /// `find_kubelet(.., None)` must succeed.
    fn find(&self) -> KubeletProcess {
        find_kubelet(self.proc_dir(), None).expect("kubelet found")
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- finding the kubelet -------------------------------------------------------------

#[test]
fn finds_the_kubelet_by_comm() {
    let node = Node::new().with_background();
    node.kubelet(
        4242,
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
    );
    let k = node.find();
    assert_eq!(k.pid, 4242);
    assert_eq!(k.comm, "kubelet");
    assert_eq!(
        k.argv,
        strings(&["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"])
    );
    assert_eq!(k.proc_dir, node.proc_dir());
    assert_eq!(k.root(), node.proc_dir().join("4242").join("root"));
}

#[test]
fn finds_the_kubelet_by_argv0_when_comm_differs() {
    let node = Node::new().with_background();
    node.fake
        .process(77, "kubelet-v1.30", &["/opt/bin/kubelet", "--v=2"])
        .unwrap();
    let k = node.find();
    assert_eq!((k.pid, k.comm.as_str()), (77, "kubelet-v1.30"));
    assert_eq!(k.argv, strings(&["/opt/bin/kubelet", "--v=2"]));
}

#[test]
fn hyperkube_kubelet_drops_hyperkube_from_argv() {
    let node = Node::new().with_background();
    node.fake
        .process(
            300,
            "hyperkube",
            &["/hyperkube", "kubelet", "--anonymous-auth=false"],
        )
        .unwrap();
    node.fake
        .process(301, "hyperkube", &["/hyperkube", "kube-proxy", "--v=2"])
        .unwrap();
    let k = node.find();
    assert_eq!(k.pid, 300);
    assert_eq!(k.argv, strings(&["kubelet", "--anonymous-auth=false"]));
    assert_eq!(
        k.cmdline,
        strings(&["/hyperkube", "kubelet", "--anonymous-auth=false"])
    );
}

#[test]
fn empty_arguments_survive_in_argv() {
    let node = Node::new();
    node.kubelet(5, &["kubelet", "--node-labels", "", "--v=2"]);
    assert_eq!(
        node.find().argv,
        strings(&["kubelet", "--node-labels", "", "--v=2"])
    );
}

fn add_decoys(node: &Node) {
    let f = &node.fake;
    f.process(900, "grep", &["grep", "--color=auto", "kubelet"])
        .unwrap();
    f.process(
        901,
        "sh",
        &["/bin/sh", "-c", "kubelet --config=/etc/k.yaml"],
    )
    .unwrap();
    f.process(
        902,
        "kubelet-healthcheck",
        &["/usr/local/bin/kubelet-healthcheck", "--port=10248"],
    )
    .unwrap();
    f.process(
        903,
        "kube-proxy",
        &["kube-proxy", "--kubelet-x=1", "kubelet"],
    )
    .unwrap();
    f.process(904, "kubelet-wrapper", &["/usr/bin/kubelet-wrapper"])
        .unwrap();
    f.process(905, "bash", &["bash", "/usr/local/bin/kubelet.sh"])
        .unwrap();
    // A zombie kubelet (exited, not yet reaped) has an empty command line.
    f.process(906, "kubelet", &[]).unwrap().state('Z').unwrap();
}

#[test]
fn decoys_that_mention_kubelet_are_ignored() {
    let node = Node::new().with_background();
    add_decoys(&node);
    // comm is truncated to 15 bytes, as the kernel does.
    assert_eq!(
        fs::read_to_string(node.proc_dir().join("902/comm")).unwrap(),
        "kubelet-healthc\n"
    );
    match find_kubelet(node.proc_dir(), None) {
        Err(FindError::NotFound { .. }) => {}
        other => panic!("expected NotFound with only decoys, got {other:?}"),
    }
    node.kubelet(4242, &["/usr/bin/kubelet"]);
    assert_eq!(node.find().pid, 4242);
}

#[test]
fn several_kubelets_is_an_error_that_lists_them() {
    let node = Node::new().with_background();
    node.kubelet(5001, &["kubelet", "--v=2"]);
    node.kubelet(4001, &["/usr/bin/kubelet"]);
    let err = find_kubelet(node.proc_dir(), None).unwrap_err();
    match &err {
        FindError::Several(pids) => assert_eq!(pids, &vec![4001, 5001]),
        other => panic!("expected Several, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("4001, 5001") && msg.contains("--pid"), "{msg}");
}

#[test]
fn no_kubelet_says_what_was_looked_for_and_what_to_check() {
    let node = Node::new().with_background();
    let err = find_kubelet(node.proc_dir(), None).unwrap_err();
    assert!(matches!(&err, FindError::NotFound { proc_dir, .. } if proc_dir == node.proc_dir()));
    let msg = err.to_string();
    for needle in ["kubelet", "hostPID", "--proc", "host's /proc"] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[test]
fn pid_picks_one_of_several() {
    let node = Node::new().with_background();
    node.kubelet(4001, &["/usr/bin/kubelet", "--v=1"]);
    node.kubelet(5001, &["/usr/bin/kubelet", "--v=5"]);
    let k = find_kubelet(node.proc_dir(), Some(5001)).unwrap();
    assert_eq!((k.pid, k.argv[1].as_str()), (5001, "--v=5"));
}

#[test]
fn pid_of_a_non_kubelet_says_what_it_is() {
    let node = Node::new().with_background();
    add_decoys(&node);
    let err = find_kubelet(node.proc_dir(), Some(900)).unwrap_err();
    assert!(
        matches!(err, FindError::NotKubelet { pid: 900, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("grep --color=auto kubelet") && msg.contains("not a kubelet"),
        "{msg}"
    );

    let err = find_kubelet(node.proc_dir(), Some(906)).unwrap_err();
    assert!(err.to_string().contains("zombie"), "{err}");

    let err = find_kubelet(node.proc_dir(), Some(31337)).unwrap_err();
    assert!(
        matches!(err, FindError::NoSuchProcess { pid: 31337, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no process 31337"), "{err}");
}

#[test]
fn in_process_kubelets_are_unsupported_not_missing() {
    let node = Node::new().with_background();
    node.fake
        .process(600, "k3s-server", &["/usr/local/bin/k3s", "server"])
        .unwrap();
    let err = find_kubelet(node.proc_dir(), None).unwrap_err();
    assert!(
        matches!(&err, FindError::Unsupported { pid: 600, what } if what.contains("k3s")),
        "{err:?}"
    );
    assert!(err.to_string().contains("in-process"), "{err}");

    let node = Node::new();
    node.fake
        .process(
            700,
            "kubelite",
            &["/snap/microk8s/123/kubelite", "--kubelet-args-file=x"],
        )
        .unwrap();
    let err = find_kubelet(node.proc_dir(), Some(700)).unwrap_err();
    assert!(
        matches!(&err, FindError::Unsupported { pid: 700, what } if what.contains("kubelite")),
        "{err:?}"
    );
}

#[test]
fn processes_that_vanish_or_cannot_be_read_are_skipped() {
    let node = Node::new().with_background();
    node.kubelet(4242, &["/usr/bin/kubelet"]);
    // A process that exited between the listing and the read: its directory is empty.
    fs::create_dir_all(node.proc_dir().join("999")).unwrap();
    // Not processes at all.
    fs::create_dir_all(node.proc_dir().join("sys")).unwrap();
    fs::write(node.proc_dir().join("uptime"), "1.0 1.0\n").unwrap();
    assert_eq!(node.find().pid, 4242);
}

#[test]
fn unreadable_proc_dir_is_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-proc");
    let err = find_kubelet(&missing, None).unwrap_err();
    assert!(matches!(err, FindError::ProcUnreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("--proc"), "{err}");
    let err = find_kubelet(&missing, Some(1)).unwrap_err();
    assert!(matches!(err, FindError::ProcUnreadable { .. }), "{err:?}");
}

#[test]
fn fake_stat_parses_with_procfs() {
    let node = Node::new();
    node.kubelet(4242, &["/usr/bin/kubelet"]);
    let p = procfs::process::Process::new_with_root(node.proc_dir().join("4242")).unwrap();
    let stat = p.stat().unwrap();
    assert_eq!(
        (stat.pid, stat.comm.as_str(), stat.state),
        (4242, "kubelet", 'S')
    );
    assert!(p.is_alive());
    assert_eq!(p.cmdline().unwrap(), strings(&["/usr/bin/kubelet"]));
}

// ---- reading through the kubelet's root -----------------------------------------------

#[test]
fn relative_paths_resolve_against_the_kubelets_cwd() {
    let node = Node::new();
    let rootfs = node.rootfs();
    node.kubelet(10, &["kubelet", "--config=config.yaml"])
        .cwd(&rootfs.join("var/lib/kubelet"))
        .unwrap()
        .file("/var/lib/kubelet/config.yaml", "from cwd")
        .unwrap();
    let k = node.find();
    assert_eq!(k.cwd.as_deref(), Some("/var/lib/kubelet"));
    assert_eq!(k.resolve("config.yaml"), "/var/lib/kubelet/config.yaml");
    assert_eq!(k.resolve("../x/./y.yaml"), "/var/lib/x/y.yaml");
    assert_eq!(k.resolve("/etc//kubernetes/../k.yaml"), "/etc/k.yaml");
    assert_eq!(k.read_file("config.yaml").unwrap(), b"from cwd");
    assert_eq!(k.read_file(&k.resolve("config.yaml")).unwrap(), b"from cwd");
}

#[test]
fn a_kubelet_without_a_cwd_resolves_against_slash() {
    let node = Node::new();
    node.fake.process(10, "kubelet", &["kubelet"]).unwrap();
    let k = node.find();
    assert_eq!(k.cwd, None);
    assert_eq!(k.resolve("config.yaml"), "/config.yaml");
}

#[test]
fn files_are_read_inside_the_root_not_on_the_host() {
    let node = Node::new();
    node.kubelet(10, &["kubelet"])
        .file("/etc/os-release", "ID=kubelets-own\n")
        .unwrap();
    let k = node.find();
    let inside = k.read_file("/etc/os-release").unwrap();
    assert_eq!(inside, b"ID=kubelets-own\n");
    if let Ok(host) = fs::read("/etc/os-release") {
        assert_ne!(host, inside);
    }
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    let node = Node::new();
    node.kubelet(10, &["kubelet"])
        .file("/opt/k8s/config.yaml", "real config")
        .unwrap()
        .symlink("/etc/kubernetes", "/opt/k8s")
        .unwrap()
        .symlink("/etc/alias.yaml", "/etc/kubernetes/config.yaml")
        .unwrap()
        .symlink("/etc/relative.yaml", "../opt/./k8s/config.yaml")
        .unwrap()
        // Exists on every host, not in this root: must not be found.
        .symlink("/etc/host-passwd", "/etc/passwd")
        .unwrap();
    let k = node.find();
    assert_eq!(
        k.read_file("/etc/kubernetes/config.yaml").unwrap(),
        b"real config"
    );
    assert_eq!(k.read_file("/etc/alias.yaml").unwrap(), b"real config");
    assert_eq!(k.read_file("/etc/relative.yaml").unwrap(), b"real config");
    let err = k.read_file("/etc/host-passwd").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.host_path.starts_with(k.root()),
        "{}",
        err.host_path.display()
    );
}

#[test]
fn dot_dot_cannot_escape_the_root() {
    let node = Node::new();
    // A file just outside the root, which `..` would reach on the host.
    fs::write(node.tmp.path().join("secret"), "outside").unwrap();
    node.kubelet(10, &["kubelet"])
        .file("/secret", "inside")
        .unwrap()
        .symlink("/var/lib/up", "../../../../../../secret")
        .unwrap()
        .symlink("/var/lib/abs-up", "/../../secret")
        .unwrap();
    let k = node.find();
    assert_eq!(k.read_file("/../../secret").unwrap(), b"inside");
    assert_eq!(k.read_file("/var/lib/up").unwrap(), b"inside");
    assert_eq!(k.read_file("/var/lib/abs-up").unwrap(), b"inside");
    assert_eq!(k.read_file("../../../../secret").unwrap(), b"inside");
}

#[test]
fn read_errors_say_what_and_where() {
    let node = Node::new();
    node.kubelet(10, &["kubelet"])
        .dir_in_root("/etc/kubernetes")
        .unwrap()
        .file("/etc/file", "x")
        .unwrap()
        .symlink("/loop/a", "/loop/b")
        .unwrap()
        .symlink("/loop/b", "a")
        .unwrap();
    let k = node.find();

    let err = k.read_file("/etc/kubernetes/kubelet.yaml").unwrap_err();
    assert!(err.is_not_found());
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/kubernetes/kubelet.yaml") && msg.contains("pid 10"),
        "{msg}"
    );
    assert!(
        msg.contains(
            &k.root()
                .join("etc/kubernetes/kubelet.yaml")
                .display()
                .to_string()
        ),
        "{msg}"
    );

    let err = k.read_file("/etc/kubernetes").unwrap_err();
    assert!(matches!(err.cause, ReadCause::IsDirectory), "{err}");
    let err = k.read_file("/etc/file/more").unwrap_err();
    assert!(
        matches!(&err.cause, ReadCause::NotADirectory { component } if component == "/etc/file"),
        "{err}"
    );
    let err = k.read_file("/loop/a").unwrap_err();
    assert!(matches!(err.cause, ReadCause::SymlinkLoop), "{err}");
}

#[test]
fn fifos_are_refused_not_read() {
    let node = Node::new();
    let p = node.kubelet(10, &["kubelet"]).dir_in_root("/etc").unwrap();
    let fifo = p.in_root("/etc/pipe.conf").unwrap();
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !matches!(made, Ok(s) if s.success()) {
        eprintln!("mkfifo unavailable; skipping");
        return;
    }
    let err = node.find().read_file("/etc/pipe.conf").unwrap_err();
    assert!(
        matches!(err.cause, ReadCause::NotRegular { kind: "FIFO" }),
        "{err}"
    );
}

// ---- walking a drop-in directory ------------------------------------------------------

fn drop_in_node() -> (Node, KubeletProcess) {
    let node = Node::new();
    node.kubelet(10, &["kubelet", "--config-dir=/etc/kubelet.conf.d"])
        .file("/etc/kubelet.conf.d/2-b.conf", "b")
        .unwrap()
        .file("/etc/kubelet.conf.d/10-a.conf", "a")
        .unwrap()
        .file("/etc/kubelet.conf.d/sub/00.conf", "sub")
        .unwrap()
        .file("/etc/kubelet.conf.d/README.txt", "not a drop-in")
        .unwrap()
        .file(
            "/etc/kubelet.conf.d/x.conf/inner.conf",
            "inside a dir named x.conf",
        )
        .unwrap()
        .file("/etc/kubelet.conf.d/Z-upper.conf", "z")
        .unwrap()
        .symlink(
            "/etc/kubelet.conf.d/30-link.conf",
            "/etc/kubelet.conf.d/10-a.conf",
        )
        .unwrap()
        .file(
            "/etc/other/99.conf",
            "not walked through a symlinked directory",
        )
        .unwrap()
        .symlink("/etc/kubelet.conf.d/40-dirlink.conf", "/etc/other")
        .unwrap()
        .symlink("/etc/link.conf.d", "/etc/kubelet.conf.d")
        .unwrap();
    let k = node.find();
    (node, k)
}

#[test]
fn walk_dir_visits_like_go_walkdir() {
    let (_node, k) = drop_in_node();
    let all = k.walk_dir("/etc/kubelet.conf.d").unwrap();
    assert_eq!(
        all,
        strings(&[
            "/etc/kubelet.conf.d/10-a.conf",
            "/etc/kubelet.conf.d/2-b.conf",
            "/etc/kubelet.conf.d/30-link.conf",
            "/etc/kubelet.conf.d/40-dirlink.conf",
            "/etc/kubelet.conf.d/README.txt",
            "/etc/kubelet.conf.d/Z-upper.conf",
            "/etc/kubelet.conf.d/sub/00.conf",
            "/etc/kubelet.conf.d/x.conf/inner.conf",
        ])
    );
    // The kubelet's own filter: not a directory, extension `.conf`.
    let drop_ins: Vec<&String> = all.iter().filter(|p| p.ends_with(".conf")).collect();
    assert_eq!(drop_ins.len(), 7);
    assert_eq!(
        k.read_file(drop_ins[2]).unwrap(),
        b"a",
        "a symlink to a file is read through"
    );
    let err = k.read_file(drop_ins[3]).unwrap_err();
    assert!(
        matches!(err.cause, ReadCause::IsDirectory),
        "the kubelet fails on it too: {err}"
    );
}

#[test]
fn walk_dir_does_not_follow_a_symlinked_root_unless_it_ends_in_a_slash() {
    let (_node, k) = drop_in_node();
    assert_eq!(
        k.walk_dir("/etc/link.conf.d").unwrap(),
        strings(&["/etc/link.conf.d"])
    );
    let followed = k.walk_dir("/etc/link.conf.d/").unwrap();
    assert_eq!(
        followed.first().map(String::as_str),
        Some("/etc/link.conf.d/10-a.conf")
    );
    assert_eq!(followed.len(), 8);
}

#[test]
fn walk_dir_of_a_missing_directory_is_not_found() {
    let (_node, k) = drop_in_node();
    let err = k.walk_dir("/etc/nope.d").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // A file given as the directory is visited as itself, as WalkDir does.
    assert_eq!(
        k.walk_dir("/etc/kubelet.conf.d/2-b.conf").unwrap(),
        strings(&["/etc/kubelet.conf.d/2-b.conf"])
    );
}

#[test]
fn walk_dir_of_a_relative_directory_uses_the_cwd() {
    let (node, _) = drop_in_node();
    node.fake
        .process(10, "kubelet", &["kubelet"])
        .unwrap()
        .cwd(&node.rootfs().join("etc"))
        .unwrap();
    let k = node.find();
    assert_eq!(
        k.walk_dir("kubelet.conf.d/sub").unwrap(),
        strings(&["/etc/kubelet.conf.d/sub/00.conf"])
    );
}

// ---- the executable ---------------------------------------------------------------------

#[test]
fn exe_is_named_inside_the_root_and_hashed() {
    let node = Node::new();
    let rootfs = node.rootfs();
    let binary = vec![0x7fu8; 200_000];
    node.kubelet(10, &["kubelet"])
        .file("/usr/bin/kubelet", &binary)
        .unwrap()
        .exe(&rootfs.join("usr/bin/kubelet"))
        .unwrap();
    let exe = node.find().exe_info().unwrap();
    let (name, digest) = (exe.path, exe.sha256);
    assert_eq!(name, "/usr/bin/kubelet");
    assert_eq!(digest, hex::encode(Sha256::digest(&binary)));
}

#[test]
fn a_changed_binary_is_hashed_again() {
    // The digest of a binary is cached by inode, size and change time: the same bytes are
    // hashed once, and any write (which moves ctime and here the size) is seen.
    let node = Node::new();
    let rootfs = node.rootfs();
    node.kubelet(10, &["kubelet"])
        .file(
            "/usr/bin/kubelet",
            b"first build version.gitVersion=v1.31.2 end",
        )
        .unwrap()
        .exe(&rootfs.join("usr/bin/kubelet"))
        .unwrap();
    let first = node.find().exe_info().unwrap();
    assert_eq!(first.version.as_deref(), Some("v1.31.2"));
    assert_eq!(node.find().exe_info().unwrap(), first);
    fs::write(
        rootfs.join("usr/bin/kubelet"),
        b"second, longer build version.gitVersion=v1.32.0 end",
    )
    .unwrap();
    let second = node.find().exe_info().unwrap();
    assert_ne!(second.sha256, first.sha256);
    assert_eq!(second.version.as_deref(), Some("v1.32.0"));
}

#[test]
fn missing_exe_is_a_read_error() {
    let node = Node::new();
    node.kubelet(10, &["kubelet"]);
    let err = node.find().exe_info().unwrap_err();
    assert!(err.to_string().contains("exe"), "{err}");
}

// ---- node facts -------------------------------------------------------------------------

#[test]
fn node_facts_from_a_fake_tree() {
    let node = Node::new();
    node.fake
        .node("worker-1", "6.1.0-18-amd64", 1_700_000_000)
        .unwrap();
    node.fake
        .process(1, "systemd", &["/sbin/init"])
        .unwrap()
        .root(&node.tmp.path().join("host"))
        .unwrap()
        .file(
            "/usr/lib/os-release",
            "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .unwrap()
        .symlink("/etc/os-release", "../usr/lib/os-release")
        .unwrap();
    let facts = node_facts(node.proc_dir());
    assert_eq!(facts.hostname.as_deref(), Some("worker-1"));
    assert_eq!(facts.kernel.as_deref(), Some("6.1.0-18-amd64"));
    assert_eq!(facts.boot_time.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(facts.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
}

#[test]
fn node_facts_never_fail() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        node_facts(&tmp.path().join("nothing-here")),
        Default::default()
    );
    // Garbage instead of the expected files.
    let fake = FakeProc::new(&tmp.path().join("proc")).unwrap();
    fs::create_dir_all(fake.path().join("sys/kernel")).unwrap();
    fs::write(fake.path().join("sys/kernel/hostname"), "\n").unwrap();
    fs::write(fake.path().join("stat"), "btime soon\n").unwrap();
    let facts = node_facts(fake.path());
    assert_eq!(
        (facts.hostname, facts.boot_time, facts.os),
        (None, None, None)
    );
}

#[test]
fn node_facts_on_this_machine() {
    let facts = node_facts(Path::new("/proc"));
    assert!(facts.kernel.is_some(), "{facts:?}");
    assert!(
        facts.boot_time.as_deref().is_some_and(|t| t.ends_with('Z')),
        "{facts:?}"
    );
}

// ---- a real process ----------------------------------------------------------------------

/// A child process that is killed and reaped however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs /bin/sh through a symlink `<dir>/kubelet`, so the kernel names it `kubelet` (a
/// symlink rather than a copy: no freshly written file, so no ETXTBSY when another test
/// forks meanwhile). It says `ready` once it runs (so there is no sleeping for it), then
/// waits for its stdin to close.
fn spawn_shell_named_kubelet(dir: &Path) -> std::io::Result<Reaped> {
    let exe = dir.join("kubelet");
    std::os::unix::fs::symlink("/bin/sh", &exe)?;
    let child = Command::new(&exe)
        .args(["-c", "echo ready; read x; exit 0", "--anonymous-auth=false"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut child = Reaped(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().expect("stdout")).read_line(&mut line)?;
    assert_eq!(line, "ready\n");
    Ok(child)
}

#[test]
fn finds_a_real_process_named_kubelet_in_the_real_proc() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = fs::canonicalize(tmp.path())?;
    fs::write(dir.join("config.yaml"), "kind: KubeletConfiguration\n")?;
    let mut child = spawn_shell_named_kubelet(&dir)?;
    let pid = i32::try_from(child.0.id())?;
    let exe = dir.join("kubelet");
    let argv = vec![
        exe.display().to_string(),
        "-c".into(),
        "echo ready; read x; exit 0".into(),
        "--anonymous-auth=false".into(),
    ];

    let k = find_kubelet(Path::new("/proc"), Some(pid))?;
    assert_eq!((k.pid, k.comm.as_str()), (pid, "kubelet"));
    assert_eq!(k.argv, argv);
    assert_eq!(k.cwd.as_deref(), Some(dir.to_str().unwrap()));
    assert_eq!(k.read_file("config.yaml")?, b"kind: KubeletConfiguration\n");
    let info = k.exe_info()?;
    let (exe_name, digest) = (info.path, info.sha256);
    // /proc/<pid>/exe names the file executed, behind the symlink.
    assert_eq!(exe_name, fs::canonicalize(&exe)?.display().to_string());
    assert_eq!(digest, hex::encode(Sha256::digest(fs::read(&exe)?)));

    // Without --pid it is found too, possibly among other kubelets on this machine.
    match find_kubelet(Path::new("/proc"), None) {
        Ok(found) => assert_eq!(found.pid, pid),
        Err(FindError::Several(pids)) => assert!(pids.contains(&pid), "{pids:?}"),
        Err(e) => panic!("the real process was not found: {e}"),
    }

    // Closing its stdin lets it exit on its own.
    drop(child.0.stdin.take());
    let status = child.0.wait()?;
    assert!(status.success());
    let err = find_kubelet(Path::new("/proc"), Some(pid)).unwrap_err();
    assert!(matches!(err, FindError::NoSuchProcess { .. }), "{err:?}");
    Ok(())
}
