//! Shared helpers: paths of the built binaries, fake nodes, running commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nodeproof_agent::fakeproc::FakeProc;

pub const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

/// A binary of the workspace, from the target directory this test runs from
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The agent binary, with the live probes off (`NODEPROOF_NO_PROBE`): the nodes of these
/// tests are fake /proc trees, whose ports are not this machine's. A test that probes
/// removes the variable.
pub fn agent() -> Command {
    let mut cmd = Command::new(bin("nodeproof-agent"));
    cmd.env("NODEPROOF_NO_PROBE", "1");
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fake node: a kubelet (pid 4242) with `argv` whose filesystem holds `files`, plus a
/// decoy process and PID 1. Returns the fake /proc directory.
pub fn fake_node(tmp: &Path, argv: &[&str], files: &[(&str, &str)]) -> PathBuf {
    let root = tmp.join("root");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::write(root.join("usr/bin/kubelet"), b"not really a kubelet\n").expect("exe");
    let proc_dir = tmp.join("proc");
    let fake = FakeProc::new(&proc_dir).expect("fake proc");
    fake.node("node-1", "6.1.0", 1_764_000_000).expect("node");
    fake.process(1, "systemd", &["/sbin/init"])
        .and_then(|p| p.root(&root))
        .and_then(|p| p.file("/etc/os-release", "PRETTY_NAME=\"Test Linux\"\n"))
        .expect("pid 1");
    fake.process(77, "grep", &["grep", "kubelet"])
        .expect("decoy");
    let mut p = fake
        .process(4242, "kubelet", argv)
        .and_then(|p| p.root(&root))
        .and_then(|p| p.exe(&root.join("usr/bin/kubelet")))
        .expect("kubelet");
    for (path, text) in files {
        p = p.file(path, text).expect("file");
        // As CIS 4.1 wants a kubelet's files (the tests' umask would leave them 0644).
        let host = p.in_root(path).expect("path");
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
    proc_dir
}

/// A KubeletConfiguration that passes every check: the v1beta1 defaults leave the serving
/// certificate self-signed, the cipher suites Go's, no pod PID limit and seccomp off, so
/// each is set here. `extra` (whole lines, keys not set here) is appended.
pub fn secure_config(extra: &str) -> String {
    format!(
        "{HEAD}authentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n\
         rotateCertificates: true\n\
         tlsCertFile: /var/lib/kubelet/pki/kubelet.crt\n\
         tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key\n\
         tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n\
         podPidsLimit: 4096\n\
         seccompDefault: true\n{extra}"
    )
}

/// A node whose kubelet passes every check.
pub fn secure_node(tmp: &Path) -> PathBuf {
    fake_node(
        tmp,
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[("/var/lib/kubelet/config.yaml", &secure_config(""))],
    )
}

/// The python with securesystemslib: NODEPROOF_PYTHON, or scripts/pyenv's.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEPROOF_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(&mut Command::new(root.join("scripts/pyenv")));
    assert!(
        out.status.success(),
        "scripts/pyenv failed: {}",
        stderr(&out)
    );
    PathBuf::from(stdout(&out).lines().last().unwrap_or_default().trim())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
