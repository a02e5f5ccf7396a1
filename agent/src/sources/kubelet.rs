//! The plain kubelet: a process of its own, whose command line is the kubelet's argv
//! (kubeadm, kind, EKS, GKE, AKS, Talos, rke2's `kubelet` child, ...).
//!
//! It also holds what every adapter shares once it knows the kubelet's argv: reading the
//! files that argv names (`--config`, `--config-dir`, `--kubeconfig`) through the process's
//! root, and hashing the executable.

use nodeproof_proto::{FileDigest, Warning};
use sha2::{Digest, Sha256};

use crate::cmdline::parse_cmdline;
use crate::effective::{self, DropInDir, FileInput};
use crate::process::{self, KubeletProcess};
use crate::scan::{ScanOptions, Snapshot};

/// A kubelet process, read as it runs.
pub fn snapshot(kp: &KubeletProcess, opts: &ScanOptions) -> Snapshot {
    let mut snap = blank(kp, opts, kp.argv.clone());
    read_kubelet_files(kp, &mut snap);
    snap
}

/// A snapshot of `kp` with `argv` as the kubelet's argv, nothing read yet but the
/// executable and the node's facts.
pub(crate) fn blank(kp: &KubeletProcess, opts: &ScanOptions, argv: Vec<String>) -> Snapshot {
    let exe = kp.exe_info().map_err(|e| e.to_string());
    let mut warnings = Vec::new();
    if let Err(e) = &exe {
        warnings.push(Warning {
            message: format!(
                "could not hash the kubelet binary: {e}; the report's subjects then name only \
                 the files read (run the agent as root with CAP_SYS_PTRACE to read \
                 /proc/<pid>/exe)"
            ),
            file: None,
            field: None,
        });
    }
    Snapshot {
        pid: kp.pid,
        argv,
        arg_origins: Vec::new(),
        distribution: None,
        embedded_in: None,
        config_file: None,
        dropins: None,
        kubeconfig: None,
        apiserver: crate::kube_apiserver::ApiServer::not_collected(
            "the API server is looked for once the kubelet's snapshot is read",
        ),
        kubelet_version: opts
            .kubelet_version
            .clone()
            .or_else(|| exe.as_ref().ok().and_then(|e| e.version.clone())),
        exe,
        node: process::node_facts(&opts.proc_dir),
        files: Vec::new(),
        warnings,
        undetermined: Default::default(),
        input_error: None,
        probe: None,
        node_files: crate::node_files::NodeFiles::not_collected(
            "the kubelet's files are stated once its arguments are known",
        ),
    }
}

/// Reads the files the kubelet's argv (`snap.argv`) names, as the kubelet opens them:
/// `--config`, every drop-in below `--config-dir`, and `--kubeconfig`.
pub(crate) fn read_kubelet_files(kp: &KubeletProcess, snap: &mut Snapshot) {
    let cmd = parse_cmdline(snap.argv.get(1..).unwrap_or_default());
    let files = &mut snap.files;
    snap.config_file = effective::config_flag(&cmd).map(|p| {
        let path = kp.resolve(&p);
        read_text(kp, &path, files)
    });
    snap.dropins = effective::config_dir_flag(&cmd).map(|d| {
        let dir = kp.resolve(&d);
        let listed = kp.walk_dir(&dir).map_err(|e| e.to_string());
        DropInDir {
            files: listed.map(|paths| {
                paths
                    .into_iter()
                    .filter(|p| effective::is_dropin(p))
                    .map(|p| read_text(kp, &p, files))
                    .collect()
            }),
            dir,
        }
    });
    snap.kubeconfig = cmd
        .last("kubeconfig")
        .filter(|f| !f.value.is_empty())
        .map(|f| read_text(kp, &kp.resolve(&f.value), files));
}

/// Reads a text file inside the process's root, recording its digest when it was read.
pub(crate) fn read_text(kp: &KubeletProcess, path: &str, files: &mut Vec<FileDigest>) -> FileInput {
    let content = match kp.read_file(path) {
        Ok(bytes) => {
            files.push(FileDigest {
                path: path.to_string(),
                sha256: hex::encode(Sha256::digest(&bytes)),
            });
            String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    FileInput {
        path: path.to_string(),
        content,
    }
}
