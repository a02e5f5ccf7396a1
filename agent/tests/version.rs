//! The kubelet's version, read from binaries built the way Kubernetes builds them.
//!
//! Release binaries are built with `-trimpath` (so Go leaves `-ldflags` out of the build
//! info, golang/go#52372) and stripped (`-s -w`), with the version set by
//! `-X k8s.io/component-base/version.gitVersion=...` (and the same for client-go;
//! hack/lib/version.sh `kube::version::ldflags`). These tests build stand-in kubelets with
//! the real Go toolchain (Debian's `golang` package: `apt-get install golang`), from two
//! local modules that mirror component-base's and client-go's version packages, offline
//! (`GOPROXY=off`), then scan them through a fake /proc as the agent scans a node. Nothing
//! built is ever executed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{assemble, collect, ScanOptions};
use serde_json::Value;

/// The Go toolchain, or a panic that says how to get it.
fn go() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("go");
        if p.is_file() {
            return p;
        }
    }
    for p in ["/usr/lib/go/bin/go", "/usr/local/go/bin/go"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "these tests build stand-in kubelet binaries with Go, and no `go` was found on PATH \
         or in /usr/lib/go/bin: install Debian's toolchain with `apt-get install -y golang` \
         (scripts/test does this when run as root)"
    );
}

const BASE_GO: &str = r#"package version

// Mirrors k8s.io/component-base/version/base.go: the defaults the linker's -X replaces.
var (
	gitMajor     string
	gitMinor     string
	gitVersion   = "v0.0.0-master+$Format:%H$"
	gitCommit    = "$Format:%H$"
	gitTreeState = ""
	buildDate    = "1970-01-01T00:00:00Z"
)

func Get() string {
	return gitMajor + "." + gitMinor + " " + gitVersion + " " + gitCommit + " " + gitTreeState + " " + buildDate
}
"#;

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"os"

	clientversion "k8s.io/client-go/pkg/version"
	"k8s.io/component-base/version"
)

// A dependency's own version string, shaped like Kubernetes': it must not be taken for
// the kubelet's.
var grpcLikeVersion = "v1.5.2"

func main() {
	fmt.Println(version.Get(), clientversion.Get(), grpcLikeVersion)
	os.Exit(0)
}
"#;

/// A temporary Go workspace with the two version modules and a main package.
fn workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-stub-kubelet");
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in [
            (
                "go.mod",
                "module example.com/kubelet\n\ngo 1.19\n\nrequire (\n\tk8s.io/client-go v0.0.0\n\tk8s.io/component-base v0.0.0\n)\n\nreplace k8s.io/component-base => ./component-base\n\nreplace k8s.io/client-go => ./client-go\n",
            ),
            ("main.go", MAIN_GO),
            ("component-base/go.mod", "module k8s.io/component-base\n\ngo 1.19\n"),
            ("component-base/version/base.go", BASE_GO),
            ("client-go/go.mod", "module k8s.io/client-go\n\ngo 1.19\n"),
            ("client-go/pkg/version/base.go", BASE_GO),
        ] {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    })
}

/// Builds the stand-in kubelet with `flags` (passed to `go build` as they are) into `out`.
fn build(flags: &[&str], out: &Path) {
    let ws = workspace();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let output = Command::new(go())
        .current_dir(ws)
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(".")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", tmp.join("go-cache"))
        .env("GOPATH", tmp.join("go-path"))
        .env("HOME", tmp)
        .output()
        .expect("running go build");
    assert!(
        output.status.success(),
        "go build {flags:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `-X` flags hack/lib/version.sh passes for `version`, for both packages.
fn release_ldflags(version: &str) -> String {
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for pkg in [
        "k8s.io/client-go/pkg/version",
        "k8s.io/component-base/version",
    ] {
        for (key, val) in [
            ("buildDate", "2024-12-10T11:43:41Z"),
            ("gitCommit", "c83cbee114ec3a6c3a52fa4f5cb5b8fc4e4a9b7c"),
            ("gitTreeState", "clean"),
            ("gitVersion", version),
            ("gitMajor", "1"),
            ("gitMinor", version.split('.').nth(1).unwrap_or("0")),
        ] {
            flags.push(format!("-X '{pkg}.{key}={val}'"));
        }
    }
    format!("-ldflags={}", flags.join(" "))
}

/// Scans a fake node whose kubelet runs `exe` (with the kubeadm fixture's files and a
/// drop-in), returning the version the agent found and the report.
fn scan_node(exe: &Path, dropin: Option<&str>) -> (Option<String>, nodeproof_proto::Report) {
    let tmp = tempfile::tempdir().unwrap();
    let proc = FakeProc::new(&tmp.path().join("proc")).unwrap();
    proc.node("n", "6.8.0", 1_767_225_600).unwrap();
    let root = tmp.path().join("root");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nodes/kubeadm/root"),
        &root,
    );
    let mut argv = vec![
        "/usr/bin/kubelet",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
    ];
    if let Some(text) = dropin {
        let d = root.join("etc/kubernetes/kubelet.conf.d");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("90-tuning.conf"), text).unwrap();
        argv.push("--config-dir=/etc/kubernetes/kubelet.conf.d");
    }
    let in_root = root.join("usr/bin/kubelet");
    fs::create_dir_all(in_root.parent().unwrap()).unwrap();
    fs::copy(exe, &in_root).unwrap();
    proc.process(1, "systemd", &["/sbin/init"])
        .and_then(|p| p.root(&root))
        .unwrap();
    proc.process(1234, "kubelet", &argv)
        .and_then(|p| p.root(&root))
        .and_then(|p| p.exe(&in_root))
        .unwrap();
    let snap = collect(&ScanOptions {
        proc_dir: proc.path().to_path_buf(),
        pid: None,
        kubelet_version: None,
        // A fake node: its ports are not this machine's.
        probe: false,
    })
    .unwrap();
    let version = snap.kubelet_version.clone();
    (version, assemble(&snap, "2026-01-01T00:00:00Z".to_string()))
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

fn out(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-stub-bins");
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn release_build_trimpath_stripped_version_is_found() {
    let exe = out("release-1.31.4");
    build(&["-trimpath", &release_ldflags("v1.31.4")], &exe);
    // What made the old detection fail: no -ldflags in the build info.
    let bytes = fs::read(&exe).unwrap();
    assert!(memchr::memmem::find(&bytes, b"version.gitVersion=").is_none());
    let (version, report) = scan_node(&exe, None);
    assert_eq!(version.as_deref(), Some("v1.31.4"));
    assert_eq!(report.kubelet.version.as_deref(), Some("v1.31.4"));
}

#[test]
fn release_build_of_a_prerelease_and_a_distribution_suffix_are_found() {
    for v in ["v1.32.0-rc.1", "v1.30.2+k3s1", "v1.31.2-eks-7f9249a"] {
        let exe = out(&format!("release-{v}"));
        build(&["-trimpath", &release_ldflags(v)], &exe);
        assert_eq!(scan_node(&exe, None).0.as_deref(), Some(v));
    }
}

#[test]
fn unstripped_trimpath_build_with_one_stamp_is_found() {
    let exe = out("unstripped-1.33.1");
    build(
        &[
            "-trimpath",
            "-ldflags=-X k8s.io/component-base/version.gitVersion=v1.33.1",
        ],
        &exe,
    );
    assert_eq!(scan_node(&exe, None).0.as_deref(), Some("v1.33.1"));
}

#[test]
fn build_without_trimpath_is_found_through_build_info() {
    let exe = out("buildinfo-1.34.0");
    build(
        &["-ldflags=-s -w -X k8s.io/component-base/version.gitVersion=v1.34.0"],
        &exe,
    );
    assert_eq!(scan_node(&exe, None).0.as_deref(), Some("v1.34.0"));
}

#[test]
fn build_without_a_stamp_has_no_version() {
    // Only the source defaults and a dependency's "v1.5.2" are in it: neither is taken.
    let exe = out("unstamped");
    build(&["-trimpath", "-ldflags=-s -w"], &exe);
    assert_eq!(scan_node(&exe, None).0, None);
}

/// The fixture-node rule the version decides: a drop-in's
/// `streamingConnectionIdleTimeout: 0s` is 0 (no timeout, CIS 4.2.5 not met) on 1.31 and
/// defaulted to 4h on 1.32 (kubernetes/kubernetes#127421); with release binaries nodeproof
/// now knows which, where before it reported `error`.
#[test]
fn release_binary_version_decides_the_dropin_zero_duration() {
    let dropin = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                  streamingConnectionIdleTimeout: 0s\n";
    for (v, value, status) in [("v1.31.4", "0s", "fail"), ("v1.32.1", "4h0m0s", "pass")] {
        let exe = out(&format!("release-{v}"));
        build(&["-trimpath", &release_ldflags(v)], &exe);
        let (version, report) = scan_node(&exe, Some(dropin));
        assert_eq!(version.as_deref(), Some(v));
        let c = report.checks.iter().find(|c| c.cis == "4.2.5").unwrap();
        assert_eq!(c.status.as_str(), status, "{v}: {}", c.note);
        assert_eq!(
            report.settings["streamingConnectionIdleTimeout"].value,
            Value::String(value.into())
        );
    }
    // The same node with an unstamped binary: unknown, so error, as before.
    let exe = out("unstamped-dropin");
    build(&["-trimpath", "-ldflags=-s -w"], &exe);
    let (version, report) = scan_node(&exe, Some(dropin));
    assert_eq!(version, None);
    let c = report.checks.iter().find(|c| c.cis == "4.2.5").unwrap();
    assert_eq!(c.status.as_str(), "error", "{}", c.note);
}

/// A position-independent build (some distributions build so) relocates the string
/// headers' addresses at load time. Go's internal linker also writes them in place (with
/// Debian's Go 1.19 the version is found), but an external linker may leave only the
/// relocation: the version may then not be found, but a wrong one never is.
#[test]
fn pie_build_is_never_a_wrong_version() {
    let exe = out("pie-1.31.4");
    build(
        &["-buildmode=pie", "-trimpath", &release_ldflags("v1.31.4")],
        &exe,
    );
    let found = scan_node(&exe, None).0;
    assert!(
        found.is_none() || found.as_deref() == Some("v1.31.4"),
        "{found:?}"
    );
}
