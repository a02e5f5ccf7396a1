//! The worker-node file checks of the CIS Kubernetes Benchmark v1.12, section 4.1: the mode
//! and owner of the files the kubelet really uses, judged over the stat results that
//! [`crate::node_files`] collects ([`NodeFiles`]).
//!
//! Numbering, titles, Automated/Manual and the modes follow kube-bench's profile for CIS 1.12,
//! aquasecurity/kube-bench `cfg/cis-1.12/node.yaml` (commit
//! 3a25de80aba65946143cdcb7bbc83ddea2420866): 600 or more restrictive for the service file,
//! the proxy kubeconfig, the kubelet's kubeconfig and its config file, 644 or more
//! restrictive for the client CA, root:root for each. "More restrictive" is kube-bench's
//! `op: bitmask`: no bit outside the allowed mask, so 0400 passes a 600 check and 0640 fails
//! it, and setuid, setgid or sticky bits always fail. 4.1.11 (the `--config-dir` directory) is
//! not in CIS v1.12 or kube-bench's 1.12 profile; it is numbered as CIS v2.x numbers it, and
//! nodeproof requires what keeps anyone but root from adding or changing drop-ins:
//! root:root and 755 or more restrictive (docs/checks.md).
//!
//! A file that does not exist fails no permission check: nobody can read or change it
//! through its mode. kube-bench's audits skip a missing file too (`if test -e`). But a pass
//! is never silent: the note says the file is absent and what that means (the kubelet will
//! not start again without its config, say). A kind of file the node does not use at all
//! (no kube-proxy on the host, a kubelet not started by systemd) passes as "not applicable",
//! with the reason.

use nodeproof_proto::CheckResult;

use super::{Check, OnUnmet, Verdict};
use crate::node_files::{FileKind, FileSet, Meta, NodeFiles, Stat};

/// Runs every 4.1 check, in catalogue order.
pub fn evaluate(files: &NodeFiles) -> Vec<CheckResult> {
    CATALOGUE.iter().map(|c| c.run(files)).collect()
}

const NO_CONFIG_FORM: &str = "none: a file's mode and owner are not kubelet settings";

pub static CATALOGUE: &[Check<NodeFiles>] = &[
    Check {
        id: "kubelet-service-file-permissions",
        cis: "4.1.1",
        title: "Ensure that the kubelet service file permissions are set to 600 or more \
                restrictive",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the kubelet's systemd unit file and its drop-ins: 600 or more restrictive",
        flag_fix: "chmod 600 <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| permissions(&f.unit, 0o600, ""),
    },
    Check {
        id: "kubelet-service-file-ownership",
        cis: "4.1.2",
        title: "Ensure that the kubelet service file ownership is set to root:root",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the kubelet's systemd unit file and its drop-ins: owned by root:root",
        flag_fix: "chown root:root <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| ownership(&f.unit, ""),
    },
    Check {
        id: "proxy-kubeconfig-permissions",
        cis: "4.1.3",
        title: "If proxy kubeconfig file exists ensure permissions are set to 600 or more \
                restrictive",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the kubeconfig of a kube-proxy on the host: 600 or more restrictive",
        flag_fix: "chmod 600 <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| permissions(&f.proxy_kubeconfig, 0o600, ABSENT_PROXY),
    },
    Check {
        id: "proxy-kubeconfig-ownership",
        cis: "4.1.4",
        title: "If proxy kubeconfig file exists ensure ownership is set to root:root",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the kubeconfig of a kube-proxy on the host: owned by root:root",
        flag_fix: "chown root:root <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| ownership(&f.proxy_kubeconfig, ABSENT_PROXY),
    },
    Check {
        id: "kubelet-kubeconfig-permissions",
        cis: "4.1.5",
        title: "Ensure that the --kubeconfig kubelet.conf file permissions are set to 600 or \
                more restrictive",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the file --kubeconfig names: 600 or more restrictive",
        flag_fix: "chmod 600 <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| permissions(&f.kubeconfig, 0o600, ABSENT_KUBECONFIG),
    },
    Check {
        id: "kubelet-kubeconfig-ownership",
        cis: "4.1.6",
        title: "Ensure that the --kubeconfig kubelet.conf file ownership is set to root:root",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the file --kubeconfig names: owned by root:root",
        flag_fix: "chown root:root <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| ownership(&f.kubeconfig, ABSENT_KUBECONFIG),
    },
    Check {
        id: "client-ca-file-permissions",
        cis: "4.1.7",
        title: "Ensure that the certificate authorities file permissions are set to 644 or \
                more restrictive",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the client CA file (authentication.x509.clientCAFile): 644 or more \
                   restrictive",
        flag_fix: "chmod 644 <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| permissions(&f.client_ca, 0o644, ABSENT_CLIENT_CA),
    },
    Check {
        id: "client-ca-file-ownership",
        cis: "4.1.8",
        title: "Ensure that the client certificate authorities file ownership is set to \
                root:root",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the client CA file (authentication.x509.clientCAFile): owned by root:root",
        flag_fix: "chown root:root <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| ownership(&f.client_ca, ABSENT_CLIENT_CA),
    },
    Check {
        id: "kubelet-config-file-permissions",
        cis: "4.1.9",
        title: "If the kubelet config.yaml configuration file is being used validate \
                permissions set to 600 or more restrictive",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the --config file and the drop-ins of --config-dir: 600 or more restrictive",
        flag_fix: "chmod 600 <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| permissions(&f.config, 0o600, ABSENT_CONFIG),
    },
    Check {
        id: "kubelet-config-file-ownership",
        cis: "4.1.10",
        title: "If the kubelet config.yaml configuration file is being used validate file \
                ownership is set to root:root",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the --config file and the drop-ins of --config-dir: owned by root:root",
        flag_fix: "chown root:root <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |f| ownership(&f.config, ABSENT_CONFIG),
    },
    Check {
        id: "kubelet-config-dir-permissions",
        cis: "4.1.11",
        title: "Ensure that the kubelet --config-dir directory ownership is set to root:root \
                and permissions to 755 or more restrictive",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the --config-dir directory: owned by root:root, 755 or more restrictive",
        flag_fix: "chown root:root <the directory under actual> && chmod 755 <the directory>",
        config_fix: NO_CONFIG_FORM,
        judge: config_dir,
    },
];

const ABSENT_PROXY: &str = "kube-proxy named it when it started; it was removed since, and \
                            kube-proxy cannot reconnect to the API server without it";
const ABSENT_KUBECONFIG: &str = "with --bootstrap-kubeconfig the kubelet writes it (mode 600) \
                                 once its certificate is issued; otherwise it was removed \
                                 after the kubelet started, and the kubelet will not start \
                                 again without it";
const ABSENT_CLIENT_CA: &str = "the kubelet read it when it started; it will not start again \
                                without it. Restore it with mode 644 or less";
const ABSENT_CONFIG: &str = "the kubelet read it when it started; it refuses to start \
                             without it. Restore it with mode 600";

/// One line of `actual` for a file: `path 0644 0:0` (with `-> target` when links were
/// followed).
fn shown(path: &str, stat: &Stat) -> String {
    match stat {
        Stat::Present(m) => {
            let target = m
                .target
                .as_deref()
                .map_or_else(String::new, |t| format!(" -> {t}"));
            format!("{path}{target} {:04o} {}:{}", m.mode, m.uid, m.gid)
        }
        Stat::Absent(_) => format!("{path}: absent"),
        Stat::Error(_) => format!("{path}: unknown"),
    }
}

/// What is wrong with a mode, or `None` when no bit lies outside `allowed`.
pub(super) fn mode_problem(m: &Meta, allowed: u32) -> Option<String> {
    let extra = m.mode & !allowed;
    if extra == 0 {
        return None;
    }
    let mut what = Vec::new();
    if extra & 0o022 != 0 {
        what.push("group or others can write it (and so change what the kubelet trusts or runs)");
    }
    if extra & 0o044 != 0 {
        what.push("group or others can read it");
    }
    if extra & 0o111 != 0 {
        what.push("it has an execute bit");
    }
    if extra & 0o200 != 0 && allowed & 0o200 == 0 {
        what.push("its owner can write it");
    }
    if extra & 0o7000 != 0 {
        what.push("it has a setuid, setgid or sticky bit");
    }
    Some(format!(
        "{:04o} has bits outside {:04o}: {}",
        m.mode,
        allowed,
        what.join("; ")
    ))
}

pub(super) fn owner_problem(m: &Meta) -> Option<String> {
    if (m.uid, m.gid) == (0, 0) {
        return None;
    }
    Some(format!(
        "owned by uid {} gid {}, not root:root: that user{} can change it",
        m.uid,
        m.gid,
        if m.gid != 0 {
            " (and, with a group write bit, that group)"
        } else {
            ""
        }
    ))
}

/// Judges every file of `set` with `problem`; see the module comment for absent files.
pub(super) fn judge_set(
    set: &FileSet,
    absent_why: &str,
    problem: impl Fn(&Meta) -> Option<String>,
) -> Result<Verdict, String> {
    let files = match set {
        FileSet::Unknown(why) => return Err(why.clone()),
        FileSet::NotUsed(why) => {
            return Ok(Verdict {
                met: true,
                actual: "no such file in use".to_string(),
                source: None,
                origin: None,
                note: format!("Not applicable: {why}."),
            })
        }
        FileSet::Files(files) if files.is_empty() => {
            return Ok(Verdict {
                met: true,
                actual: "no such file in use".to_string(),
                source: None,
                origin: None,
                note: "Not applicable: no such file is in use.".to_string(),
            })
        }
        FileSet::Files(files) => files,
    };
    let mut actual = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for w in files {
        actual.push(shown(&w.path, &w.stat));
        match &w.stat {
            Stat::Present(m) => {
                if let Some(p) = problem(m) {
                    failures.push((w, format!("{}: {p}.", w.path)));
                } else if m.kind == FileKind::Other {
                    notes.push(format!("{} is not a regular file or directory.", w.path));
                }
            }
            Stat::Absent(e) => {
                let why = if absent_why.is_empty() {
                    e.clone()
                } else {
                    format!("{absent_why} ({e})")
                };
                notes.push(format!(
                    "{} does not exist, so no mode or owner lets anyone read or change it: \
                     {why}.",
                    w.path
                ));
            }
            Stat::Error(e) => errors.push(format!("{}: {e}", w.path)),
        }
    }
    let met = failures.is_empty();
    if met && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let basis = failures.first().map_or(&files[0], |(w, _)| *w);
    let mut note: Vec<String> = failures.into_iter().map(|(_, p)| p).collect();
    note.extend(notes);
    if !errors.is_empty() {
        note.push(format!("Not read: {}.", errors.join("; ")));
    }
    Ok(Verdict {
        met,
        actual: actual.join("; "),
        source: basis.source,
        origin: Some(format!("{}: {}", basis.path, basis.why)),
        note: note.join(" "),
    })
}

fn permissions(set: &FileSet, allowed: u32, absent_why: &str) -> Result<Verdict, String> {
    judge_set(set, absent_why, |m| mode_problem(m, allowed))
}

fn ownership(set: &FileSet, absent_why: &str) -> Result<Verdict, String> {
    judge_set(set, absent_why, owner_problem)
}

fn config_dir(files: &NodeFiles) -> Result<Verdict, String> {
    judge_set(
        &files.config_dir,
        "the kubelet refuses to start without its --config-dir; it was removed after the \
         kubelet started",
        |m| {
            let problems: Vec<String> = [owner_problem(m), mode_problem(m, 0o755)]
                .into_iter()
                .flatten()
                .collect();
            let mut out = problems.join("; ");
            if m.kind != FileKind::Directory && m.kind != FileKind::Other {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str("it is not a directory");
            }
            (!out.is_empty()).then_some(out)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_files::Watched;
    use nodeproof_proto::{Source, Status};

    fn file(path: &str, mode: u32, uid: u32, gid: u32) -> Watched {
        Watched {
            path: path.to_string(),
            why: "--test".to_string(),
            source: Some(Source::Flag),
            stat: Stat::Present(Meta {
                mode,
                uid,
                gid,
                kind: FileKind::File,
                target: None,
            }),
        }
    }

    fn absent(path: &str) -> Watched {
        Watched {
            stat: Stat::Absent(format!("cannot read {path}: No such file or directory")),
            ..file(path, 0, 0, 0)
        }
    }

    fn set(files: Vec<Watched>) -> FileSet {
        FileSet::Files(files)
    }

    /// A node whose every file is as CIS wants it.
    fn good() -> NodeFiles {
        NodeFiles {
            unit: set(vec![
                file("/usr/lib/systemd/system/kubelet.service", 0o600, 0, 0),
                file(
                    "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
                    0o600,
                    0,
                    0,
                ),
            ]),
            proxy_kubeconfig: set(vec![file("/var/lib/kube-proxy/kubeconfig", 0o600, 0, 0)]),
            kubeconfig: set(vec![file("/etc/kubernetes/kubelet.conf", 0o600, 0, 0)]),
            client_ca: set(vec![file("/etc/kubernetes/pki/ca.crt", 0o644, 0, 0)]),
            config: set(vec![file("/var/lib/kubelet/config.yaml", 0o600, 0, 0)]),
            config_dir: set(vec![Watched {
                stat: Stat::Present(Meta {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    kind: FileKind::Directory,
                    target: None,
                }),
                ..file("/etc/kubernetes/kubelet.conf.d", 0, 0, 0)
            }]),
        }
    }

    /// The file set a check judges, to change it.
    fn field<'a>(n: &'a mut NodeFiles, cis: &str) -> &'a mut FileSet {
        match cis {
            "4.1.1" | "4.1.2" => &mut n.unit,
            "4.1.3" | "4.1.4" => &mut n.proxy_kubeconfig,
            "4.1.5" | "4.1.6" => &mut n.kubeconfig,
            "4.1.7" | "4.1.8" => &mut n.client_ca,
            "4.1.9" | "4.1.10" => &mut n.config,
            "4.1.11" => &mut n.config_dir,
            other => panic!("no file set for {other}"),
        }
    }

    fn result(n: &NodeFiles, cis: &str) -> CheckResult {
        evaluate(n)
            .into_iter()
            .find(|r| r.cis == cis)
            .unwrap_or_else(|| panic!("{cis} not in the catalogue"))
    }

    #[test]
    fn catalogue_is_cis_4_1_in_order() {
        let cis: Vec<&str> = CATALOGUE.iter().map(|c| c.cis).collect();
        let want: Vec<String> = (1..=11).map(|i| format!("4.1.{i}")).collect();
        assert_eq!(cis, want);
        // kube-bench cfg/cis-1.12/node.yaml: 4.1.3, 4.1.4, 4.1.7, 4.1.8 are Manual.
        let manual: Vec<&str> = CATALOGUE
            .iter()
            .filter(|c| !c.scored)
            .map(|c| c.cis)
            .collect();
        assert_eq!(manual, ["4.1.3", "4.1.4", "4.1.7", "4.1.8", "4.1.11"]);
    }

    #[test]
    fn a_node_as_cis_wants_it_passes_every_check() {
        for r in evaluate(&good()) {
            assert_eq!(r.status, Status::Pass, "{} {}: {}", r.cis, r.actual, r.note);
            assert!(r.note.is_empty(), "{}: {}", r.cis, r.note);
        }
    }

    /// Pass, fail, absent, not in use and unknown, for every check.
    #[test]
    fn every_check_passes_fails_and_explains_absence() {
        for c in CATALOGUE {
            let ownership = c.id.ends_with("ownership");
            let allowed = match c.cis {
                "4.1.7" => 0o644,
                "4.1.11" => 0o755,
                _ => 0o600,
            };
            // Fail: a write bit for others on a permission check, uid 1000 on an owner one.
            let mut n = good();
            let bad = if ownership {
                file("/bad", allowed, 1000, 0)
            } else {
                file("/bad", allowed | 0o002, 0, 0)
            };
            *field(&mut n, c.cis) = set(vec![bad]);
            let r = result(&n, c.cis);
            assert_eq!(r.status, Status::Fail, "{}: {r:?}", c.cis);
            assert!(r.note.starts_with("/bad: "), "{}: {}", c.cis, r.note);
            assert_eq!(r.source, Some(Source::Flag));
            assert_eq!(r.origin.as_deref(), Some("/bad: --test"));
            // More restrictive passes.
            let mut n = good();
            let mut ok = file("/ok", 0o400, 0, 0);
            if let (Stat::Present(m), "4.1.11") = (&mut ok.stat, c.cis) {
                m.kind = FileKind::Directory;
            }
            *field(&mut n, c.cis) = set(vec![ok]);
            assert_eq!(result(&n, c.cis).status, Status::Pass, "{}", c.cis);
            // Absent: pass, and the note says so.
            let mut n = good();
            *field(&mut n, c.cis) = set(vec![absent("/gone")]);
            let r = result(&n, c.cis);
            assert_eq!(r.status, Status::Pass, "{}", c.cis);
            assert_eq!(r.actual, "/gone: absent");
            assert!(
                r.note.contains("/gone does not exist"),
                "{}: {}",
                c.cis,
                r.note
            );
            // Not in use: pass, "Not applicable" with the reason.
            let mut n = good();
            *field(&mut n, c.cis) = FileSet::NotUsed("no kube-proxy runs here".to_string());
            let r = result(&n, c.cis);
            assert_eq!(r.status, Status::Pass);
            assert_eq!(r.note, "Not applicable: no kube-proxy runs here.");
            // Unknown: error with the reason.
            let mut n = good();
            *field(&mut n, c.cis) = FileSet::Unknown("cannot read cgroup".to_string());
            let r = result(&n, c.cis);
            assert_eq!(r.status, Status::Error);
            assert_eq!(r.note, "cannot read cgroup");
        }
    }

    #[test]
    fn more_restrictive_means_no_bit_outside_the_mask() {
        let m = |mode| Meta {
            mode,
            uid: 0,
            gid: 0,
            kind: FileKind::File,
            target: None,
        };
        for ok in [0o600, 0o400, 0o200, 0o000] {
            assert_eq!(mode_problem(&m(ok), 0o600), None, "{ok:o}");
        }
        for bad in [0o640, 0o604, 0o700, 0o4600, 0o1600] {
            assert!(mode_problem(&m(bad), 0o600).is_some(), "{bad:o}");
        }
        // 644 allows 640 and 444 but not 664 or 744.
        assert_eq!(mode_problem(&m(0o640), 0o644), None);
        assert_eq!(mode_problem(&m(0o444), 0o644), None);
        let p = mode_problem(&m(0o664), 0o644).unwrap_or_default();
        assert!(p.contains("can write"), "{p}");
        assert!(mode_problem(&m(0o744), 0o644).is_some());
    }

    #[test]
    fn one_bad_file_among_several_fails_and_is_named() {
        let mut n = good();
        n.config = set(vec![
            file("/var/lib/kubelet/config.yaml", 0o600, 0, 0),
            file("/etc/kubernetes/kubelet.conf.d/10-x.conf", 0o644, 0, 0),
        ]);
        let r = result(&n, "4.1.9");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.actual,
            "/var/lib/kubelet/config.yaml 0600 0:0; /etc/kubernetes/kubelet.conf.d/10-x.conf 0644 0:0"
        );
        assert!(r
            .note
            .starts_with("/etc/kubernetes/kubelet.conf.d/10-x.conf: 0644"));
        assert!(r.note.contains("group or others can read it"), "{}", r.note);
    }

    #[test]
    fn an_unreadable_file_is_error_unless_another_already_fails() {
        let unreadable = Watched {
            stat: Stat::Error("permission denied".to_string()),
            ..file("/x", 0, 0, 0)
        };
        let mut n = good();
        n.config = set(vec![file("/a", 0o600, 0, 0), unreadable.clone()]);
        let r = result(&n, "4.1.9");
        assert_eq!(r.status, Status::Error);
        assert!(r.note.contains("permission denied"), "{}", r.note);
        n.config = set(vec![file("/a", 0o666, 0, 0), unreadable]);
        let r = result(&n, "4.1.9");
        assert_eq!(r.status, Status::Fail);
        assert!(r.note.contains("Not read: /x"), "{}", r.note);
    }

    #[test]
    fn config_dir_needs_root_and_no_group_write() {
        let dir = |mode, uid| {
            let mut n = good();
            n.config_dir = set(vec![Watched {
                stat: Stat::Present(Meta {
                    mode,
                    uid,
                    gid: 0,
                    kind: FileKind::Directory,
                    target: None,
                }),
                ..file("/etc/kubernetes/kubelet.conf.d", 0, 0, 0)
            }]);
            result(&n, "4.1.11")
        };
        assert_eq!(dir(0o755, 0).status, Status::Pass);
        assert_eq!(dir(0o700, 0).status, Status::Pass);
        assert_eq!(dir(0o775, 0).status, Status::Fail);
        assert_eq!(dir(0o1777, 0).status, Status::Fail);
        let r = dir(0o755, 1000);
        assert_eq!(r.status, Status::Fail);
        assert!(r.note.contains("uid 1000"), "{}", r.note);
    }

    #[test]
    fn a_followed_symlink_shows_its_target() {
        let mut n = good();
        n.kubeconfig = set(vec![Watched {
            stat: Stat::Present(Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                kind: FileKind::File,
                target: Some("/opt/k8s/kubelet.conf".to_string()),
            }),
            ..file("/etc/kubernetes/kubelet.conf", 0, 0, 0)
        }]);
        let r = result(&n, "4.1.5");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.actual,
            "/etc/kubernetes/kubelet.conf -> /opt/k8s/kubelet.conf 0644 0:0"
        );
    }
}
