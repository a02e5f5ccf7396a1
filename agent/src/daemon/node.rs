//! The node's name, decided in one place for `enroll`, `rotate-key` and `run`: the
//! collector knows a node by the name it was enrolled under and refuses reports under any
//! other, and the spool's chain belongs to one name. If `enroll` and `run` derived it
//! differently (the hostname here, the kubelet's `--hostname-override` there), reports
//! would be refused and the spool tied to the wrong name.
//!
//! Precedence, first that applies:
//!
//! 1. `--node-name` / `NODEPROOF_NODE_NAME`, as given (trimmed). An operator's explicit
//!    choice wins over anything derived: the DaemonSet passes `spec.nodeName`, which is
//!    the API server's own name for the node and the best there is; derived names are a
//!    guess at that name. When it differs from the derived one, a warning says so.
//! 2. The running kubelet's `--hostname-override`, when it is given and not empty (for a
//!    kubelet inside k3s or microk8s, in the arguments [`crate::sources`] rebuilds).
//! 3. The hostname (`PROC/sys/kernel/hostname`).
//!
//! 2 and 3 are what the kubelet itself registers its Node object as, normalised as it
//! does: trimmed and lowercased, and an override of only spaces is an error, as it is for
//! the kubelet (k8s.io/component-helpers/node/util: `GetHostname`).

use std::path::Path;

use crate::cmdline::parse_cmdline;
use crate::process::node_facts;

/// Where the name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// `--node-name` or `NODEPROOF_NODE_NAME`.
    Explicit,
    /// The kubelet's `--hostname-override` (the kubelet's pid).
    HostnameOverride { pid: i32 },
    /// The hostname; `why` says why the kubelet's override was not used, `kubelet`
    /// whether a kubelet was found at all (without one, the name is a guess).
    Hostname { why: String, kubelet: bool },
}

impl std::fmt::Display for NameSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameSource::Explicit => f.write_str("from --node-name (NODEPROOF_NODE_NAME)"),
            NameSource::HostnameOverride { pid } => {
                write!(f, "from the kubelet's --hostname-override (pid {pid})")
            }
            NameSource::Hostname { why, .. } => write!(f, "from the hostname ({why})"),
        }
    }
}

/// The node's name and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName {
    pub name: String,
    pub source: NameSource,
    /// What the kubelet's settings give, when an explicit name differs from it.
    pub derived_differs: Option<String>,
}

/// Why no name could be decided.
#[derive(Debug, thiserror::Error)]
pub enum NodeNameError {
    #[error(
        "the kubelet (pid {pid}) runs with --hostname-override={value:?}, which is empty once \
         trimmed (the kubelet itself refuses that: \"empty hostname is invalid\"); pass \
         --node-name NAME"
    )]
    BlankOverride { pid: i32, value: String },
    #[error(
        "could not read the hostname from {path} and found no kubelet --hostname-override \
         ({why}): pass --node-name NAME"
    )]
    NoHostname { path: String, why: String },
}

/// Decides the node's name (see the module comment for the order). `pid` picks the kubelet
/// when several run.
pub fn resolve(
    explicit: Option<&str>,
    proc_dir: &Path,
    pid: Option<i32>,
) -> Result<NodeName, NodeNameError> {
    let explicit = explicit.map(str::trim).filter(|n| !n.is_empty());
    let derived = derive(proc_dir, pid);
    match (explicit, derived) {
        (Some(name), derived) => Ok(NodeName {
            name: name.to_string(),
            source: NameSource::Explicit,
            // Compared only with what a running kubelet says, not with a guess.
            derived_differs: derived
                .ok()
                .filter(|d| !matches!(d.source, NameSource::Hostname { kubelet: false, .. }))
                .map(|d| d.name)
                .filter(|d| d.as_str() != name),
        }),
        (None, derived) => derived,
    }
}

fn derive(proc_dir: &Path, pid: Option<i32>) -> Result<NodeName, NodeNameError> {
    // The kubelet's argv as the kubelet receives it: for k3s and microk8s, as their
    // adapters rebuild it (k3s passes its node name as --hostname-override).
    let found = crate::sources::collect(&crate::scan::ScanOptions {
        proc_dir: proc_dir.to_path_buf(),
        pid,
        kubelet_version: None,
        // Only the argv is wanted here.
        probe: false,
    });
    let kubelet = found.is_ok();
    let why = match found {
        Ok(kubelet) => {
            let args = kubelet.argv.get(1..).unwrap_or_default();
            match parse_cmdline(args).last("hostname-override") {
                // GetHostname: an empty override means "use the hostname".
                Some(flag) if flag.value.is_empty() => {
                    "the kubelet's --hostname-override is empty".to_string()
                }
                Some(flag) => {
                    let name = flag.value.trim();
                    if name.is_empty() {
                        return Err(NodeNameError::BlankOverride {
                            pid: kubelet.pid,
                            value: flag.value.clone(),
                        });
                    }
                    return Ok(NodeName {
                        name: name.to_lowercase(),
                        source: NameSource::HostnameOverride { pid: kubelet.pid },
                        derived_differs: None,
                    });
                }
                None => "the kubelet has no --hostname-override".to_string(),
            }
        }
        Err(e) => format!(
            "no kubelet found to read --hostname-override from: {}",
            super::text::escape(&e.to_string())
        ),
    };
    match node_facts(proc_dir).hostname {
        Some(h) if !h.trim().is_empty() => Ok(NodeName {
            name: h.trim().to_lowercase(),
            source: NameSource::Hostname { why, kubelet },
            derived_differs: None,
        }),
        _ => Err(NodeNameError::NoHostname {
            path: proc_dir.join("sys/kernel/hostname").display().to_string(),
            why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakeproc::FakeProc;

    fn node(hostname: &str, kubelet_args: Option<&[&str]>) -> (tempfile::TempDir, FakeProc) {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeProc::new(&tmp.path().join("proc")).unwrap();
        fake.node(hostname, "6.1.0", 1_700_000_000).unwrap();
        if let Some(args) = kubelet_args {
            let mut argv = vec!["/usr/bin/kubelet"];
            argv.extend_from_slice(args);
            fake.process(4242, "kubelet", &argv)
                .and_then(|p| p.root(&tmp.path().join("host")))
                .unwrap();
        }
        (tmp, fake)
    }

    #[test]
    fn the_override_is_trimmed_and_lowercased_like_the_kubelets() {
        let (_t, fake) = node("host-a", Some(&["--hostname-override= Worker-7.Example "]));
        let n = resolve(None, fake.path(), None).unwrap();
        assert_eq!(n.name, "worker-7.example");
        assert_eq!(n.source, NameSource::HostnameOverride { pid: 4242 });
    }

    #[test]
    fn the_last_override_counts_and_an_empty_one_means_the_hostname() {
        let (_t, fake) = node(
            "Host-A",
            Some(&["--hostname-override=x", "--hostname-override="]),
        );
        let n = resolve(None, fake.path(), None).unwrap();
        assert_eq!(n.name, "host-a");
        assert!(matches!(n.source, NameSource::Hostname { .. }));
    }

    #[test]
    fn a_blank_override_is_an_error_as_for_the_kubelet() {
        let (_t, fake) = node("host-a", Some(&["--hostname-override", "  "]));
        let err = resolve(None, fake.path(), None).unwrap_err();
        assert!(err.to_string().contains("--node-name"), "{err}");
    }

    #[test]
    fn without_a_kubelet_the_hostname_is_used_and_says_why() {
        let (_t, fake) = node("host-a", None);
        let n = resolve(None, fake.path(), None).unwrap();
        assert_eq!(n.name, "host-a");
        assert!(n.source.to_string().contains("no kubelet"), "{}", n.source);
        // An explicit name is not compared with a guess.
        let n = resolve(Some("node-9"), fake.path(), None).unwrap();
        assert_eq!(n.derived_differs, None);
    }

    #[test]
    fn an_explicit_name_wins_and_a_difference_is_noted() {
        let (_t, fake) = node("host-a", Some(&["--hostname-override=worker-7"]));
        let n = resolve(Some(" node-9 "), fake.path(), None).unwrap();
        assert_eq!(n.name, "node-9");
        assert_eq!(n.source, NameSource::Explicit);
        assert_eq!(n.derived_differs.as_deref(), Some("worker-7"));
        let n = resolve(Some("worker-7"), fake.path(), None).unwrap();
        assert_eq!(n.derived_differs, None);
        // An empty NODEPROOF_NODE_NAME= line means "derive it".
        let n = resolve(Some(""), fake.path(), None).unwrap();
        assert_eq!(n.name, "worker-7");
    }
}
