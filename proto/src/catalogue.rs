//! The check catalogue's identity, shared by the agent (which runs the checks) and the
//! collector (which must not believe a node about which checks exist or how severe they are).
//!
//! Why here and not only in the agent: a compromised node signs whatever it likes. The
//! collector keys its fleet view on check ids and ranks failures by severity, so both come
//! from this table, never from the report. The agent keeps the judging functions and the
//! remediation text; a test in the agent keeps its catalogue equal to this one.

use serde::{Deserialize, Serialize};

/// Names the catalogue a report was judged against (`Report::catalogue`). Bump the suffix when
/// a check is added, removed or changes meaning, so the collector can tell old reports apart.
/// v2: the worker-node files (4.1); v3: the API server's side (1.2.4/1.2.5, 1.1.19-1.1.21);
/// v4: the live probes of the kubelet's ports (`P.n`).
pub const CATALOGUE_VERSION: &str = "nodeproof.dev/checks/cis-1.12/v4";

/// How bad a failure of a check is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase name, as flags and the HTTP API spell it.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the collector needs to know of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckMeta {
    /// Stable id; never reuse or rename one.
    pub id: &'static str,
    pub cis: &'static str,
    /// CIS "Automated" (true) or "Manual" (false). A label only: both pass or fail.
    pub scored: bool,
    pub severity: Severity,
    /// Why this severity, for docs and the README.
    pub why: &'static str,
}

/// Every check of `CATALOGUE_VERSION`: the kubelet settings (4.2) in CIS order, then each
/// later group in a block of its own, in CIS order within it.
pub const CHECKS: &[CheckMeta] = &[
    CheckMeta {
        id: "kubelet-anonymous-auth",
        cis: "4.2.1",
        scored: true,
        severity: Severity::Critical,
        why: "anyone who reaches port 10250 is a user of the kubelet API",
    },
    CheckMeta {
        id: "kubelet-authorization-mode",
        cis: "4.2.2",
        scored: true,
        severity: Severity::Critical,
        why: "AlwaysAllow lets every authenticated (or anonymous) caller exec into any pod",
    },
    CheckMeta {
        id: "kubelet-client-ca-file",
        cis: "4.2.3",
        scored: true,
        severity: Severity::Critical,
        why: "without a client CA no client certificate is verified, so the API server cannot \
              be told from anyone else",
    },
    CheckMeta {
        id: "kubelet-read-only-port",
        cis: "4.2.4",
        scored: false,
        severity: Severity::Critical,
        why: "port 10255 serves pods, specs and metrics over plain HTTP with no authentication",
    },
    CheckMeta {
        id: "kubelet-streaming-idle-timeout",
        cis: "4.2.5",
        scored: false,
        severity: Severity::Medium,
        why: "idle exec/attach/port-forward streams are never closed: resource exhaustion and \
              sessions left open",
    },
    CheckMeta {
        id: "kubelet-iptables-util-chains",
        cis: "4.2.6",
        scored: true,
        severity: Severity::Low,
        why: "the kubelet stops managing its iptables chains; a hygiene and drift risk, not an \
              opening by itself",
    },
    CheckMeta {
        id: "kubelet-hostname-override",
        cis: "4.2.7",
        scored: false,
        severity: Severity::Low,
        why: "an overridden name can break TLS name checks between the API server and the \
              kubelet; some clouds need it, so a person judges",
    },
    CheckMeta {
        id: "kubelet-event-qps",
        cis: "4.2.8",
        scored: false,
        severity: Severity::Low,
        why: "events may be dropped, which weakens the audit trail",
    },
    CheckMeta {
        id: "kubelet-tls-cert-file",
        cis: "4.2.9",
        scored: false,
        severity: Severity::High,
        why: "a self-signed serving certificate cannot be verified, so connections to the \
              kubelet can be intercepted",
    },
    CheckMeta {
        id: "kubelet-rotate-certificates",
        cis: "4.2.10",
        scored: true,
        severity: Severity::Medium,
        why: "client certificates expire and are replaced by hand, or stay valid too long",
    },
    CheckMeta {
        id: "kubelet-rotate-server-certificate",
        cis: "4.2.11",
        scored: false,
        severity: Severity::Medium,
        why: "serving certificates are not rotated through the API server",
    },
    CheckMeta {
        id: "kubelet-tls-cipher-suites",
        cis: "4.2.12",
        scored: false,
        severity: Severity::Medium,
        why: "weak suites allow downgrade or non-forward-secret TLS to the kubelet",
    },
    CheckMeta {
        id: "kubelet-pod-pids-limit",
        cis: "4.2.13",
        scored: false,
        severity: Severity::Medium,
        why: "one pod can exhaust the node's PIDs (fork bomb) and take the node down",
    },
    CheckMeta {
        id: "kubelet-seccomp-default",
        cis: "4.2.14",
        scored: false,
        severity: Severity::Medium,
        why: "containers run unconfined by seccomp unless each pod asks for a profile",
    },
    // ---- CIS 4.1: worker-node files (the agent's checks::files) ----------------------
    CheckMeta {
        id: "kubelet-service-file-permissions",
        cis: "4.1.1",
        scored: true,
        severity: Severity::Medium,
        why: "a unit file others can write runs their command as root at the next restart; \
              one others can only read exposes the kubelet's flags",
    },
    CheckMeta {
        id: "kubelet-service-file-ownership",
        cis: "4.1.2",
        scored: true,
        severity: Severity::High,
        why: "the owner of the unit file decides the kubelet's command line, which runs as root",
    },
    CheckMeta {
        id: "proxy-kubeconfig-permissions",
        cis: "4.1.3",
        scored: false,
        severity: Severity::Medium,
        why: "kube-proxy's credentials for the API server can be read or redirected",
    },
    CheckMeta {
        id: "proxy-kubeconfig-ownership",
        cis: "4.1.4",
        scored: false,
        severity: Severity::Medium,
        why: "the owner can redirect kube-proxy to another API server or read its credentials",
    },
    CheckMeta {
        id: "kubelet-kubeconfig-permissions",
        cis: "4.1.5",
        scored: true,
        severity: Severity::High,
        why: "the node's credentials for the API server can be read (to act as the node) or \
              replaced",
    },
    CheckMeta {
        id: "kubelet-kubeconfig-ownership",
        cis: "4.1.6",
        scored: true,
        severity: Severity::High,
        why: "the owner can read the node's credentials or point the kubelet at another API \
              server",
    },
    CheckMeta {
        id: "client-ca-file-permissions",
        cis: "4.1.7",
        scored: false,
        severity: Severity::High,
        why: "644 allows reading; a write bit lets someone add a CA whose certificates the \
              kubelet then accepts as any user",
    },
    CheckMeta {
        id: "client-ca-file-ownership",
        cis: "4.1.8",
        scored: false,
        severity: Severity::High,
        why: "the owner decides which client certificates the kubelet accepts",
    },
    CheckMeta {
        id: "kubelet-config-file-permissions",
        cis: "4.1.9",
        scored: true,
        severity: Severity::Medium,
        why: "a config others can write can turn off the kubelet's authentication at the next \
              restart; one others can only read exposes its settings",
    },
    CheckMeta {
        id: "kubelet-config-file-ownership",
        cis: "4.1.10",
        scored: true,
        severity: Severity::High,
        why: "the owner of the config decides the kubelet's authentication and authorization",
    },
    CheckMeta {
        id: "kubelet-config-dir-permissions",
        cis: "4.1.11",
        scored: false,
        severity: Severity::High,
        why: "whoever can add a file to the drop-in directory overrides the kubelet's config",
    },
    // ---- end of CIS 4.1 ---------------------------------------------------------------
    // ---- CIS 1.2.4/1.2.5 and 1.1.19-1.1.21: the API server's side of its connections to
    // kubelets, on control-plane nodes (the agent's checks::apiserver) --------------------
    CheckMeta {
        id: "apiserver-kubelet-client-certificate",
        cis: "1.2.4",
        scored: true,
        severity: Severity::High,
        why: "without a client certificate the API server cannot authenticate to kubelets, \
              so exec, logs and port-forward work only where kubelets accept anonymous callers",
    },
    CheckMeta {
        id: "apiserver-kubelet-certificate-authority",
        cis: "1.2.5",
        scored: true,
        severity: Severity::High,
        why: "without it the API server skips verifying kubelets' serving certificates, so \
              anyone on the path can answer as a kubelet and read or change exec and logs",
    },
    CheckMeta {
        id: "apiserver-kubelet-pki-ownership",
        cis: "1.1.19",
        scored: true,
        severity: Severity::High,
        why: "the owner of these files can read the key the API server uses on every kubelet \
              or replace the CA it verifies kubelets with",
    },
    CheckMeta {
        id: "apiserver-kubelet-pki-cert-permissions",
        cis: "1.1.20",
        scored: false,
        severity: Severity::High,
        why: "a certificate others can write lets them swap the kubelet CA, so the API \
              server trusts a kubelet they impersonate",
    },
    CheckMeta {
        id: "apiserver-kubelet-client-key-permissions",
        cis: "1.1.21",
        scored: false,
        severity: Severity::Critical,
        why: "whoever reads the key is the API server to every kubelet (exec into any pod); \
              kubeadm's is also cluster-admin on the API server (group kubeadm:cluster-admins)",
    },
    // ---- end of the API server's side ---------------------------------------------------
    // ---- live probes (agent/src/checks/probes.rs) ------------------------------------
    // Not CIS recommendations: `cis` holds a `P.n` label (unique, as the collector keys a
    // node's checks on it); the related CIS control is named in `why` and the title.
    CheckMeta {
        id: "probe-kubelet-anonymous",
        cis: "P.1",
        scored: true,
        severity: Severity::Critical,
        why: "live 4.2.1/4.2.2: the kubelet API accepted a request without credentials",
    },
    CheckMeta {
        id: "probe-read-only-port",
        cis: "P.2",
        scored: true,
        severity: Severity::Critical,
        why: "live 4.2.4: the read-only port served the pod list to an unauthenticated request",
    },
    CheckMeta {
        id: "probe-healthz",
        cis: "P.3",
        scored: true,
        severity: Severity::Low,
        why: "the kubelet is unhealthy or not listening where configured; no opening by itself",
    },
    CheckMeta {
        id: "probe-contradiction",
        cis: "P.4",
        scored: true,
        severity: Severity::Critical,
        why: "what listens is not what the files describe: another process, an old kubelet, or \
              files changed since it started, so the configuration checks judge the wrong thing",
    },
];

/// The catalogue entry for `id`, if the id is one of ours.
pub fn check_meta(id: &str) -> Option<&'static CheckMeta> {
    CHECKS.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_cis_numbers_are_unique() {
        for (i, a) in CHECKS.iter().enumerate() {
            for b in &CHECKS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.cis, b.cis);
            }
        }
    }

    #[test]
    fn severity_orders_and_round_trips() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Medium > Severity::Low);
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Severity::parse("Critical"), None);
    }

    #[test]
    fn the_seeds_controls_are_critical() {
        for id in [
            "kubelet-anonymous-auth",
            "kubelet-authorization-mode",
            "kubelet-client-ca-file",
            "kubelet-read-only-port",
        ] {
            assert_eq!(check_meta(id).unwrap().severity, Severity::Critical, "{id}");
        }
        assert!(check_meta("kubelet-made-up").is_none());
    }
}
