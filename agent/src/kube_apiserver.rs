//! The kube-apiserver on this node, if one runs: its command line and the files its kubelet
//! flags name, for the API server's side of CIS 1.2.4/1.2.5 and 1.1.19-1.1.21.
//!
//! Why a module of its own: like [`crate::node_files`], this is the edge that reads the node;
//! [`crate::checks::apiserver`] judges the plain values it returns ([`ApiServer`]), so the
//! checks are tested without a node.
//!
//! Where things come from:
//! - the process: every process whose comm, or argv\[0\]'s file name, is `kube-apiserver`
//!   (kubeadm's static pod runs `kube-apiserver --...`; a hand-made systemd unit runs
//!   `/usr/local/bin/kube-apiserver --...`), or that runs `hyperkube kube-apiserver`;
//! - its flags: its own command line, parsed with pflag's rules
//!   ([`crate::checks::apiserver::parse_args`]). kube-apiserver has no configuration file
//!   for these flags, and reads no environment variable for them;
//! - the files: each path those flags name, made absolute against the apiserver's working
//!   directory and stat'ed through its root (`/proc/<pid>/root`, symbolic links followed
//!   inside it), as [`crate::node_files`] does for the kubelet. For kubeadm's static pod
//!   that root is the container's, whose `/etc/kubernetes/pki` is a hostPath mount of the
//!   host's directory, so the mode and owner seen there are the host file's.
//!
//! No kube-apiserver process is the normal case on a worker node (and on managed control
//! planes, where the API server runs off the node): the checks then say "not applicable".
//! k3s servers and microk8s' kubelite run the API server inside their own process, with
//! arguments on no command line; nodeproof does not reconstruct those yet, so it says it
//! cannot know ([`ApiServer::Unknown`]) rather than pass them.

use std::fs;
use std::path::Path;

use nodeproof_proto::Source;

use crate::checks::apiserver::{parse_args, KubeletFlags};
use crate::node_files::{find_named, stat, Watched};
use crate::process::KubeletProcess;

/// What the API server checks look at, as read. Plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiServer {
    /// No kube-apiserver runs on this node; why, for the "not applicable" note.
    Absent(String),
    /// Whether one runs, or with what arguments, could not be found out; why.
    Unknown(String),
    /// Every kube-apiserver process found, in pid order; never empty.
    Running(Vec<ApiServerProcess>),
}

impl ApiServer {
    /// Unknown for `why`: a snapshot built without looking for the API server.
    pub fn not_collected(why: &str) -> ApiServer {
        ApiServer::Unknown(why.to_string())
    }
}

/// One kube-apiserver process and the files its kubelet flags name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerProcess {
    pub pid: i32,
    /// Its own command line, `argv[0]` first (without a leading `hyperkube`).
    pub argv: Vec<String>,
    /// `--kubelet-client-certificate`, stat'ed, when given a non-empty value.
    pub client_certificate: Option<Watched>,
    /// `--kubelet-client-key`, likewise.
    pub client_key: Option<Watched>,
    /// `--kubelet-certificate-authority`, likewise.
    pub certificate_authority: Option<Watched>,
}

/// Finds the kube-apiserver processes of `proc_dir` and stats the files their kubelet
/// flags name.
pub fn collect(proc_dir: &Path) -> ApiServer {
    if let Err(e) = fs::read_dir(proc_dir) {
        return ApiServer::Unknown(format!(
            "cannot list {}: {e}, so whether a kube-apiserver runs here is not known",
            proc_dir.display()
        ));
    }
    let mut found = find_named(proc_dir, "kube-apiserver");
    // `hyperkube kube-apiserver ...` (hyperkube images, before Kubernetes 1.19): its own
    // argv starts after `hyperkube`.
    for mut p in find_named(proc_dir, "hyperkube") {
        if let Some("kube-apiserver" | "apiserver") = p.argv.get(1).map(String::as_str) {
            p.argv.remove(0);
            found.push(p);
        }
    }
    found.sort_by_key(|p| p.pid);
    found.dedup_by_key(|p| p.pid);
    if !found.is_empty() {
        return ApiServer::Running(found.iter().map(process).collect());
    }
    if let Some(why) = embedded(proc_dir) {
        return ApiServer::Unknown(why);
    }
    ApiServer::Absent(
        "no kube-apiserver process runs on this node (a worker node, or a control plane \
         that runs elsewhere, as managed clusters do), so there is no API server to \
         connect to kubelets from here"
            .to_string(),
    )
}

/// A distribution process that runs the API server inside itself, described.
fn embedded(proc_dir: &Path) -> Option<String> {
    let k3s = find_named(proc_dir, "k3s-server").into_iter().chain(
        find_named(proc_dir, "k3s")
            .into_iter()
            .filter(|p| p.argv.get(1).map(String::as_str) == Some("server")),
    );
    if let Some(p) = k3s.min_by_key(|p| p.pid) {
        return Some(format!(
            "k3s server (pid {}) runs the API server inside its own process, with arguments \
             k3s assembles and puts on no command line; nodeproof does not reconstruct them \
             yet, so the API server's kubelet flags are not known",
            p.pid
        ));
    }
    find_named(proc_dir, "kubelite").first().map(|p| {
        format!(
            "microk8s' kubelite (pid {}) may run the API server inside its own process, with \
             arguments from its --apiserver-args-file; nodeproof does not read those yet, so \
             whether an API server runs here, and with which kubelet flags, is not known",
            p.pid
        )
    })
}

fn process(p: &KubeletProcess) -> ApiServerProcess {
    let (cert, key, ca) = match parse_args(p.argv.get(1..).unwrap_or_default()) {
        // The checks report the refusal; no file is the one the API server uses then.
        Err(_) => (None, None, None),
        Ok(KubeletFlags {
            client_certificate,
            client_key,
            certificate_authority,
        }) => {
            let watch = |flag: Option<crate::checks::apiserver::FlagValue>| {
                flag.filter(|f| !f.value.is_empty()).map(|f| {
                    let path = p.resolve(&f.value);
                    Watched {
                        stat: stat(p, &path),
                        why: format!("kube-apiserver (pid {}) {}", p.pid, f.written),
                        source: Some(Source::Flag),
                        path,
                    }
                })
            };
            (
                watch(client_certificate),
                watch(client_key),
                watch(certificate_authority),
            )
        }
    };
    ApiServerProcess {
        pid: p.pid,
        argv: p.argv.clone(),
        client_certificate: cert,
        client_key: key,
        certificate_authority: ca,
    }
}
