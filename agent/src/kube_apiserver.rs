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
//! - the node: only the processes in the kubelet's network namespace are its node's
//!   ([`collect`] explains why that, and not the root or the mount namespace). On a host
//!   running several kind nodes, each kind node's kubelet sees only its own node's API
//!   server.
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
use crate::node_files::{find_where, stat, Watched};
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
    /// Set when whether it runs on the kubelet's node could not be told (a network
    /// namespace link could not be read): why. It is then judged as the node's, as
    /// before nodeproof scoped API servers to the kubelet's node, and the notes say so.
    pub scope: Option<String>,
}

/// What a process is, for this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A kube-apiserver; its own argv starts at this index of the process's argv.
    ApiServer { argv_start: usize },
    /// k3s' `k3s server`, which runs the API server in-process.
    K3sServer,
    /// microk8s' kubelite, which may run the API server in-process.
    Kubelite,
}

fn classify(comm: &str, argv: &[String]) -> Option<Kind> {
    let arg0 = argv.first().map_or("", String::as_str);
    let base = arg0.rsplit('/').next().unwrap_or(arg0);
    let arg1 = argv.get(1).map(String::as_str);
    if comm == "kube-apiserver" || base == "kube-apiserver" {
        return Some(Kind::ApiServer { argv_start: 0 });
    }
    // `hyperkube kube-apiserver ...` (hyperkube images, before Kubernetes 1.19): its own
    // argv starts after `hyperkube`.
    if base == "hyperkube" && matches!(arg1, Some("kube-apiserver" | "apiserver")) {
        return Some(Kind::ApiServer { argv_start: 1 });
    }
    if comm == "k3s-server" || (base == "k3s" && arg1 == Some("server")) {
        return Some(Kind::K3sServer);
    }
    if comm == "kubelite" || base == "kubelite" {
        return Some(Kind::Kubelite);
    }
    None
}

/// Finds the kube-apiserver processes of `proc_dir` that run on the node of the kubelet
/// in process `kubelet_pid` (in one pass over it) and stats the files their kubelet flags
/// name.
///
/// Which node a process is on: the one whose network namespace it shares. The kubelet runs
/// in its node's network namespace, and a kube-apiserver on that node runs there too,
/// however it is started:
/// - kubeadm: the kubelet is a host process; the API server is a static pod with
///   `hostNetwork: true` (kubeadm's `ComponentPod`), so it is in the host's network
///   namespace, while its root, mount namespace and PID namespace are its container's.
///   Comparing roots or mount namespaces would wrongly put it on no node.
/// - kind: the kubelet runs inside the node container, and the API server is a static pod
///   nested in it, again with `hostNetwork: true`, so both are in the node container's
///   network namespace; each kind node container has a network namespace of its own, so
///   several kind nodes on one host each see their own API server, and a worker sees none.
/// - a kube-apiserver run by systemd on the host shares the host kubelet's namespace.
/// - k3s and microk8s run the API server inside their own process (the kubelet's, for a
///   k3s server), trivially in the same namespace; a k3d agent node's `k3s agent` does not
///   share a k3d server node's.
/// - an API server in a pod without `hostNetwork` (a hosted control plane for another
///   cluster, vcluster) is in a network namespace of its own: it is not this node's
///   control plane, and it is left out.
///
/// The namespace is the target of `/proc/<pid>/ns/net` (`net:[4026531840]`), which the
/// kernel shows the same for every process in it. When the kubelet's link cannot be read
/// (no permission to read another user's namespaces), every API server found is judged,
/// as before this scoping: a single kubelet's report is then unchanged, and each API
/// server's notes say its node was not known ([`ApiServerProcess::scope`]). Likewise for
/// one API server whose link cannot be read while the kubelet's can.
pub fn collect(proc_dir: &Path, kubelet_pid: i32) -> ApiServer {
    if let Err(e) = fs::read_dir(proc_dir) {
        return ApiServer::Unknown(format!(
            "cannot list {}: {e}, so whether a kube-apiserver runs here is not known",
            proc_dir.display()
        ));
    }
    let kubelet_ns = net_ns(proc_dir, kubelet_pid);
    let found = find_where(proc_dir, |comm, argv| classify(comm, argv).is_some());
    let mut apiservers = Vec::new();
    let mut embedded = None;
    // Processes that would be an API server, on other nodes: (pid, namespace).
    let mut elsewhere = Vec::new();
    for mut p in found {
        let scope = match on_node(&kubelet_ns, proc_dir, p.pid) {
            OnNode::Yes => None,
            OnNode::No(ns) => {
                elsewhere.push(format!("pid {} in {ns}", p.pid));
                continue;
            }
            OnNode::Assumed(why) => Some(why),
        };
        match classify(&p.comm, &p.argv) {
            Some(Kind::ApiServer { argv_start }) => {
                p.argv.drain(..argv_start);
                let mut api = process(&p);
                api.scope = scope;
                apiservers.push(api);
            }
            Some(kind) if embedded.is_none() => embedded = Some((kind, p.pid)),
            _ => {}
        }
    }
    if !apiservers.is_empty() {
        return ApiServer::Running(apiservers);
    }
    match embedded {
        Some((Kind::K3sServer, pid)) => ApiServer::Unknown(format!(
            "k3s server (pid {pid}) runs the API server inside its own process, with \
             arguments k3s assembles and puts on no command line; nodeproof does not \
             reconstruct them yet, so the API server's kubelet flags are not known"
        )),
        Some((_, pid)) => ApiServer::Unknown(format!(
            "microk8s' kubelite (pid {pid}) may run the API server inside its own process, \
             with arguments from its --apiserver-args-file; nodeproof does not read those \
             yet, so whether an API server runs here, and with which kubelet flags, is not \
             known"
        )),
        None if elsewhere.is_empty() => ApiServer::Absent(
            "no kube-apiserver process runs on this node (a worker node, or a control plane \
             that runs elsewhere, as managed clusters do), so there is no API server to \
             connect to kubelets from here"
                .to_string(),
        ),
        None => ApiServer::Absent(format!(
            "no kube-apiserver process runs on this node: none shares the kubelet's network \
             namespace ({}), as an API server on the kubelet's node does (a static pod with \
             hostNetwork, or a host process). The API server processes of this host are in \
             other network namespaces ({}): other nodes on this host (other kind nodes), \
             judged in their own kubelets' reports, or API servers in pods of their own",
            kubelet_ns.as_deref().unwrap_or("?"),
            elsewhere.join(", ")
        )),
    }
}

/// Whether a process runs on the kubelet's node, as far as /proc tells.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OnNode {
    /// In the kubelet's network namespace.
    Yes,
    /// In another network namespace (its link): another node's.
    No(String),
    /// Not known (why): taken to be on the kubelet's node.
    Assumed(String),
}

/// The target of `<proc_dir>/<pid>/ns/net`, which names the process's network namespace.
fn net_ns(proc_dir: &Path, pid: i32) -> Result<String, String> {
    let link = proc_dir.join(pid.to_string()).join("ns").join("net");
    fs::read_link(&link)
        .map(|target| target.to_string_lossy().into_owned())
        .map_err(|e| format!("{}: {e}", link.display()))
}

fn on_node(kubelet_ns: &Result<String, String>, proc_dir: &Path, pid: i32) -> OnNode {
    let kubelet_ns = match kubelet_ns {
        Ok(ns) => ns,
        Err(e) => {
            return OnNode::Assumed(format!(
                "the kubelet's network namespace could not be read ({e})"
            ))
        }
    };
    match net_ns(proc_dir, pid) {
        Ok(ns) if &ns == kubelet_ns => OnNode::Yes,
        Ok(ns) => OnNode::No(ns),
        Err(e) => OnNode::Assumed(format!("its network namespace could not be read ({e})")),
    }
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
        scope: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classify_knows_api_servers_and_what_embeds_one() {
        let api = Some(Kind::ApiServer { argv_start: 0 });
        assert_eq!(classify("kube-apiserver", &argv(&["kube-apiserver"])), api);
        // comm is whatever the binary is called; argv[0]'s file name decides too.
        assert_eq!(
            classify(
                "apiserver",
                &argv(&["/usr/local/bin/kube-apiserver", "--v=2"])
            ),
            api
        );
        assert_eq!(
            classify("hyperkube", &argv(&["/hyperkube", "kube-apiserver"])),
            Some(Kind::ApiServer { argv_start: 1 })
        );
        assert_eq!(
            classify("hyperkube", &argv(&["/hyperkube", "apiserver"])),
            Some(Kind::ApiServer { argv_start: 1 })
        );
        assert_eq!(
            classify("hyperkube", &argv(&["/hyperkube", "kubelet"])),
            None
        );
        assert_eq!(
            classify("k3s-server", &argv(&["/usr/local/bin/k3s", "server"])),
            Some(Kind::K3sServer)
        );
        assert_eq!(
            classify("k3s", &argv(&["/usr/local/bin/k3s", "server"])),
            Some(Kind::K3sServer)
        );
        assert_eq!(
            classify("k3s-agent", &argv(&["/usr/local/bin/k3s", "agent"])),
            None
        );
        assert_eq!(
            classify("kubelite", &argv(&["/snap/microk8s/7229/kubelite"])),
            Some(Kind::Kubelite)
        );
        // Processes that only mention it are not it.
        assert_eq!(classify("grep", &argv(&["grep", "kube-apiserver"])), None);
        assert_eq!(
            classify("sh", &argv(&["sh", "-c", "kube-apiserver --v=2"])),
            None
        );
        assert_eq!(
            classify("kube-apiserver-", &argv(&["kube-apiserver-healthcheck"])),
            None
        );
    }
}
