//! The API server's side of its connections to kubelets, on control-plane nodes: CIS
//! Kubernetes Benchmark v1.12 1.2.4 and 1.2.5 (the kube-apiserver presents a client
//! certificate to kubelets and verifies theirs), and 1.1.19-1.1.21 (owner and mode of the
//! files those flags name), judged over what [`crate::kube_apiserver`] collects
//! ([`ApiServer`]).
//!
//! Numbering, titles and Automated/Manual follow kube-bench's profile for CIS 1.12,
//! aquasecurity/kube-bench `cfg/cis-1.12/master.yaml` (commit
//! 0139daa50912236542f062e53d58372b51922e7e): 1.2.4 `--kubelet-client-certificate` and
//! `--kubelet-client-key` set, 1.2.5 `--kubelet-certificate-authority` set (both Automated);
//! 1.1.19 root:root, 1.1.20 certificates 644 or more restrictive, 1.1.21 keys 600 (both
//! Manual), each with `op: bitmask` as in [`super::files`]. (kube-bench's `cis-1.10` profile
//! numbers the flag checks the same; older benchmarks, with `--kubelet-https` as 1.2.4,
//! numbered them 1.2.5 and 1.2.6.) CIS audits 1.1.19-1.1.21 over every file of
//! `/etc/kubernetes/pki`; nodeproof checks the files the running API server's kubelet flags
//! name, wherever they are, and says so in `expected`.
//!
//! Why 1.2.5 matters: without a CA the API server's kubelet client runs with TLS
//! verification off (`pkg/kubelet/client/kubelet_client.go`, `transportConfig`: "if
//! !cfg.HasCA() { cfg.TLS.Insecure = true }"). kubeadm sets the client certificate and key
//! but not the CA (`cmd/kubeadm/app/phases/controlplane/manifests.go`,
//! `getAPIServerCommand`), because kubelets serve self-signed certificates unless
//! `serverTLSBootstrap` is on, so a stock kubeadm control plane fails 1.2.5.
//!
//! No kube-apiserver on the node (a worker) passes every check as "not applicable", the
//! shape [`super::files`] uses for a file the node does not use. A command line the API
//! server would refuse to start with, or an API server whose arguments cannot be read, is
//! `error`.

use nodeproof_proto::{CheckResult, Source};

use super::files::{judge_set, mode_problem, owner_problem};
use super::{Check, OnUnmet, Verdict};
use crate::kube_apiserver::{ApiServer, ApiServerProcess};
use crate::node_files::{FileSet, Watched};

/// Runs every API server check, in catalogue order.
pub fn evaluate(api: &ApiServer) -> Vec<CheckResult> {
    CATALOGUE.iter().map(|c| c.run(api)).collect()
}

const NO_CONFIG_FILE: &str = "none: kube-apiserver takes these only as flags (with kubeadm, \
                              ClusterConfiguration apiServer.extraArgs)";
const NO_CONFIG_FORM: &str = "none: a file's mode and owner are not settings";

pub static CATALOGUE: &[Check<ApiServer>] = &[
    Check {
        id: "apiserver-kubelet-client-certificate",
        cis: "1.2.4",
        title: "Ensure that the --kubelet-client-certificate and --kubelet-client-key \
                arguments are set as appropriate",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "kube-apiserver: --kubelet-client-certificate and --kubelet-client-key \
                   both set",
        flag_fix: "--kubelet-client-certificate=<path/to/client.crt> \
                   --kubelet-client-key=<path/to/client.key>",
        config_fix: NO_CONFIG_FILE,
        judge: |a| each(a, client_certificate),
    },
    Check {
        id: "apiserver-kubelet-certificate-authority",
        cis: "1.2.5",
        title: "Ensure that the --kubelet-certificate-authority argument is set as appropriate",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "kube-apiserver: --kubelet-certificate-authority set (the CA that signs \
                   the kubelets' serving certificates)",
        flag_fix: "--kubelet-certificate-authority=<path/to/ca.crt> (kubelets need serving \
                   certificates that CA signs: serverTLSBootstrap: true, see 4.2.9)",
        config_fix: NO_CONFIG_FILE,
        judge: |a| each(a, certificate_authority),
    },
    Check {
        id: "apiserver-kubelet-pki-ownership",
        cis: "1.1.19",
        title: "Ensure that the Kubernetes PKI directory and file ownership is set to root:root",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "the files kube-apiserver's --kubelet-client-certificate, \
                   --kubelet-client-key and --kubelet-certificate-authority name: owned by \
                   root:root",
        flag_fix: "chown root:root <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |a| {
            each(a, |p| {
                let files = [
                    &p.client_certificate,
                    &p.client_key,
                    &p.certificate_authority,
                ];
                judge_set(&file_set(p, &files), ABSENT, owner_problem)
            })
        },
    },
    Check {
        id: "apiserver-kubelet-pki-cert-permissions",
        cis: "1.1.20",
        title: "Ensure that the Kubernetes PKI certificate file permissions are set to 644 or \
                more restrictive",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the certificates kube-apiserver's --kubelet-client-certificate and \
                   --kubelet-certificate-authority name: 644 or more restrictive",
        flag_fix: "chmod 644 <each file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |a| {
            each(a, |p| {
                let files = [&p.client_certificate, &p.certificate_authority];
                judge_set(&file_set(p, &files), ABSENT, |m| mode_problem(m, 0o644))
            })
        },
    },
    Check {
        id: "apiserver-kubelet-client-key-permissions",
        cis: "1.1.21",
        title: "Ensure that the Kubernetes PKI key file permissions are set to 600",
        scored: false,
        on_unmet: OnUnmet::Fail,
        expected: "the key kube-apiserver's --kubelet-client-key names: 600 or more \
                   restrictive",
        flag_fix: "chmod 600 <the file under actual>",
        config_fix: NO_CONFIG_FORM,
        judge: |a| {
            each(a, |p| {
                judge_set(&file_set(p, &[&p.client_key]), ABSENT, |m| {
                    mode_problem(m, 0o600)
                })
            })
        },
    },
];

const ABSENT: &str = "the API server loaded it when it started and will not start again \
                      without it";

// ---- the command line ------------------------------------------------------------------

/// One flag's effective value: the last occurrence, as pflag keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub value: String,
    /// The flag as written: `--kubelet-client-key=/k` or `--kubelet-client-key /k`.
    pub written: String,
    /// How many times it was given; only the last counts.
    pub times: usize,
}

/// kube-apiserver's flags for its connections to kubelets. All three are string flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeletFlags {
    pub client_certificate: Option<FlagValue>,
    pub client_key: Option<FlagValue>,
    pub certificate_authority: Option<FlagValue>,
}

/// Parses kube-apiserver's arguments (without `argv[0]`) with pflag's rules and
/// kube-apiserver's flag set, for the three kubelet flags: `--name=value` or `--name value`
/// (a string flag takes the next argument whatever it is), `_` read as `-` (component-base's
/// `cli.Run` sets `WordSepNormalizeFunc`), and the last occurrence wins.
///
/// `Err` when kube-apiserver would refuse to start with these arguments, so no running API
/// server has them: a non-empty positional argument (its cobra command's `Args` rejects them:
/// "does not take any arguments"; empty ones pass), anything non-empty after `--`, a
/// malformed flag (`---x`, `--=x`), or one of the three flags last on the line with no value
/// ("flag needs an argument").
///
/// Other flags are not ours to judge, only to step over: `--name=value` is one argument;
/// `--name` followed by an argument that does not begin with `-` takes it as its value (were
/// `--name` a boolean, that argument would be a positional one, which kube-apiserver
/// refuses); `--name` followed by one that begins with `-` is read as a boolean. A string
/// flag given a separate value that begins with `-` would be misread; kube-apiserver's
/// string flags take paths, addresses, names and lists, none of which begins with `-`.
/// kube-apiserver's only shorthands are klog's `-v`, which takes a value (`-v 2`, `-v=2`,
/// `-v2`), and cobra's `-h`; any other (`-kubelet-client-key=/k`, one dash) is an unknown
/// shorthand, which it refuses.
pub fn parse_args(args: &[String]) -> Result<KubeletFlags, String> {
    let refused = |what: String| {
        Err(format!(
            "{what}: kube-apiserver refuses to start with this command line, so no running \
             API server has it (was /proc read while the process changed?)"
        ))
    };
    let mut out = KubeletFlags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(p) = args[i..].iter().find(|a| !a.is_empty()) {
                return refused(format!("the positional argument {p:?} after --"));
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            if name.is_empty() || name.starts_with('-') {
                return refused(format!("bad flag syntax {arg:?}"));
            }
            let slot = match name.replace('_', "-").as_str() {
                "kubelet-client-certificate" => Some(&mut out.client_certificate),
                "kubelet-client-key" => Some(&mut out.client_key),
                "kubelet-certificate-authority" => Some(&mut out.certificate_authority),
                _ => None,
            };
            let Some(slot) = slot else {
                if inline.is_none() && args.get(i).is_some_and(|next| !next.starts_with('-')) {
                    i += 1;
                }
                continue;
            };
            let (value, written) = match inline {
                Some(v) => (v.to_string(), arg.clone()),
                None => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        (v.clone(), format!("{arg} {v}"))
                    }
                    None => return refused(format!("flag needs an argument: {arg}")),
                },
            };
            let times = slot.as_ref().map_or(0, |f| f.times) + 1;
            *slot = Some(FlagValue {
                value,
                written,
                times,
            });
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // pflag reads `-hv3` as -h, then -v with the rest as its value.
            for (at, c) in short.char_indices() {
                match c {
                    'h' => continue,
                    'v' => {
                        if at + 1 == short.len() {
                            if args.get(i).is_none() {
                                return refused(format!("flag needs an argument: 'v' in {arg}"));
                            }
                            i += 1;
                        }
                        break;
                    }
                    other => {
                        return refused(format!(
                            "unknown shorthand flag {other:?} in {arg:?} (a long flag needs \
                             two dashes)"
                        ))
                    }
                }
            }
        } else if !arg.is_empty() {
            return refused(format!("the positional argument {arg:?}"));
        }
    }
    Ok(out)
}

// ---- judges ----------------------------------------------------------------------------

/// Judges every API server with `judge`: not applicable without one, and with several (a
/// host running several control-plane containers) unmet when any one is, naming each by
/// pid.
fn each(
    api: &ApiServer,
    judge: impl Fn(&ApiServerProcess) -> Result<Verdict, String>,
) -> Result<Verdict, String> {
    let processes = match api {
        ApiServer::Unknown(why) => return Err(why.clone()),
        ApiServer::Absent(why) => {
            return Ok(Verdict {
                met: true,
                actual: "no kube-apiserver on this node".to_string(),
                source: None,
                origin: None,
                note: format!("Not applicable: {why}."),
            })
        }
        ApiServer::Running(p) => p,
    };
    let several = processes.len() > 1;
    let mut verdicts = Vec::new();
    let mut errors = Vec::new();
    for p in processes {
        match judge(p) {
            Ok(mut v) => {
                if several {
                    v.actual = format!("kube-apiserver pid {}: {}", p.pid, v.actual);
                }
                verdicts.push(v);
            }
            Err(e) if several => errors.push(format!("kube-apiserver pid {}: {e}", p.pid)),
            Err(e) => errors.push(e),
        }
    }
    let unmet: Vec<&Verdict> = verdicts.iter().filter(|v| !v.met).collect();
    if unmet.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let basis = unmet.first().copied().or(verdicts.first());
    let Some(basis) = basis else {
        return Err("no kube-apiserver could be judged".to_string());
    };
    let mut note: Vec<String> = unmet
        .iter()
        .copied()
        .chain(verdicts.iter().filter(|v| v.met))
        .map(|v| v.note.clone())
        .filter(|n| !n.is_empty())
        .collect();
    note.dedup();
    if !errors.is_empty() {
        note.push(format!("Not judged: {}.", errors.join("; ")));
    }
    note.extend(processes.iter().filter_map(|p| {
        p.scope.as_ref().map(|why| {
            format!(
                "Whether kube-apiserver pid {} runs on this kubelet's node could not be told \
                 ({why}); it is judged as this node's.",
                p.pid
            )
        })
    }));
    Ok(Verdict {
        met: unmet.is_empty(),
        actual: verdicts
            .iter()
            .map(|v| v.actual.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        source: basis.source,
        origin: basis.origin.clone(),
        note: note.join(" "),
    })
}

/// `--name=value`, or `--name: not set` (also for an empty value, which kube-apiserver
/// treats as unset).
fn shown(name: &str, flag: &Option<FlagValue>) -> String {
    match flag {
        Some(f) if !f.value.is_empty() => format!("--{name}={}", f.value),
        Some(_) => format!("--{name}=\"\" (not set)"),
        None => format!("--{name}: not set"),
    }
}

fn is_set(flag: &Option<FlagValue>) -> bool {
    flag.as_ref().is_some_and(|f| !f.value.is_empty())
}

/// Notes for flags given more than once: pflag keeps the last.
fn repeated(flags: &[(&str, &Option<FlagValue>)]) -> Vec<String> {
    flags
        .iter()
        .filter_map(|(name, f)| {
            f.as_ref().filter(|f| f.times > 1).map(|f| {
                format!(
                    "--{name} is given {} times; the last ({}) is the one kube-apiserver uses.",
                    f.times, f.written
                )
            })
        })
        .collect()
}

/// Source and origin of a verdict on `flags`: the first of them that is written.
fn origin(p: &ApiServerProcess, flags: &[&Option<FlagValue>]) -> (Option<Source>, Option<String>) {
    match flags.iter().find_map(|f| f.as_ref()) {
        Some(f) => (
            Some(Source::Flag),
            Some(format!("kube-apiserver (pid {}) {}", p.pid, f.written)),
        ),
        None => (
            Some(Source::Default),
            Some(format!(
                "kube-apiserver (pid {}): not on its command line; the default is empty",
                p.pid
            )),
        ),
    }
}

fn client_certificate(p: &ApiServerProcess) -> Result<Verdict, String> {
    let flags = parse_args(p.argv.get(1..).unwrap_or_default())?;
    let (cert, key) = (&flags.client_certificate, &flags.client_key);
    let met = is_set(cert) && is_set(key);
    let mut note = Vec::new();
    if !met {
        note.push(match (is_set(cert), is_set(key)) {
            (false, false) => "The API server presents no client certificate to kubelets: a \
                               kubelet that requires one (4.2.1, 4.2.3) refuses its exec, \
                               logs and port-forward requests, and one that answers them \
                               accepts anonymous callers."
                .to_string(),
            (true, false) => "--kubelet-client-key is not set: a certificate without its key \
                              gives the API server no client identity."
                .to_string(),
            _ => "--kubelet-client-certificate is not set: a key without its certificate \
                  gives the API server no client identity."
                .to_string(),
        });
    }
    note.extend(repeated(&[
        ("kubelet-client-certificate", cert),
        ("kubelet-client-key", key),
    ]));
    // The verdict rests on the missing flag when one is missing.
    let basis: Vec<&Option<FlagValue>> = if met || (!is_set(cert) && !is_set(key)) {
        vec![cert, key]
    } else if !is_set(cert) {
        vec![cert]
    } else {
        vec![key]
    };
    let (source, origin) = origin(p, &basis);
    Ok(Verdict {
        met,
        actual: format!(
            "{} {}",
            shown("kubelet-client-certificate", cert),
            shown("kubelet-client-key", key)
        ),
        source,
        origin,
        note: note.join(" "),
    })
}

fn certificate_authority(p: &ApiServerProcess) -> Result<Verdict, String> {
    let flags = parse_args(p.argv.get(1..).unwrap_or_default())?;
    let ca = &flags.certificate_authority;
    let met = is_set(ca);
    let mut note = Vec::new();
    if !met {
        note.push(
            "Without it the API server does not verify the kubelets' serving certificates \
             (its kubelet client then runs with TLS verification off), so whoever can \
             intercept its connections to port 10250 can pose as a kubelet and read or \
             change exec, attach and logs. Set it to the CA that signs the kubelets' serving \
             certificates; kubeadm does not set it."
                .to_string(),
        );
    }
    note.extend(repeated(&[("kubelet-certificate-authority", ca)]));
    let (source, origin) = origin(p, &[ca]);
    Ok(Verdict {
        met,
        actual: shown("kubelet-certificate-authority", ca),
        source,
        origin,
        note: note.join(" "),
    })
}

/// The stat'ed files of `files` that are set, or "not in use" when none is; a command
/// line kube-apiserver would refuse is an error.
fn file_set(p: &ApiServerProcess, files: &[&Option<Watched>]) -> FileSet {
    if let Err(e) = parse_args(p.argv.get(1..).unwrap_or_default()) {
        return FileSet::Unknown(e);
    }
    let set: Vec<Watched> = files.iter().filter_map(|f| (*f).clone()).collect();
    if set.is_empty() {
        return FileSet::NotUsed(format!(
            "kube-apiserver (pid {}) names no such file (its kubelet flags are not set; see \
             1.2.4 and 1.2.5)",
            p.pid
        ));
    }
    FileSet::Files(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_files::{FileKind, Meta, Stat};
    use nodeproof_proto::Status;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn watched(path: &str, mode: u32, uid: u32) -> Watched {
        Watched {
            path: path.to_string(),
            why: format!("kube-apiserver (pid 7) --flag={path}"),
            source: Some(Source::Flag),
            stat: Stat::Present(Meta {
                mode,
                uid,
                gid: 0,
                kind: FileKind::File,
                target: None,
            }),
        }
    }

    const CERT: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.crt";
    const KEY: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.key";
    const CA: &str = "/etc/kubernetes/pki/ca.crt";

    /// A kubeadm API server with --kubelet-certificate-authority added.
    fn good_process(pid: i32) -> ApiServerProcess {
        ApiServerProcess {
            pid,
            argv: args(&[
                "kube-apiserver",
                "--advertise-address=10.0.0.10",
                "--allow-privileged=true",
                &format!("--kubelet-certificate-authority={CA}"),
                &format!("--kubelet-client-certificate={CERT}"),
                &format!("--kubelet-client-key={KEY}"),
                "--secure-port=6443",
            ]),
            client_certificate: Some(watched(CERT, 0o644, 0)),
            client_key: Some(watched(KEY, 0o600, 0)),
            certificate_authority: Some(watched(CA, 0o644, 0)),
            scope: None,
        }
    }

    fn good() -> ApiServer {
        ApiServer::Running(vec![good_process(7)])
    }

    fn result(api: &ApiServer, cis: &str) -> CheckResult {
        evaluate(api)
            .into_iter()
            .find(|r| r.cis == cis)
            .unwrap_or_else(|| panic!("{cis} not in the catalogue"))
    }

    fn with_argv(argv: &[&str]) -> ApiServer {
        ApiServer::Running(vec![ApiServerProcess {
            argv: args(argv),
            ..good_process(7)
        }])
    }

    #[test]
    fn catalogue_is_kube_benchs_numbering() {
        let got: Vec<(&str, bool)> = CATALOGUE.iter().map(|c| (c.cis, c.scored)).collect();
        assert_eq!(
            got,
            [
                ("1.2.4", true),
                ("1.2.5", true),
                ("1.1.19", true),
                ("1.1.20", false),
                ("1.1.21", false)
            ]
        );
    }

    #[test]
    fn a_control_plane_as_cis_wants_it_passes_every_check() {
        for r in evaluate(&good()) {
            assert_eq!(r.status, Status::Pass, "{} {}: {}", r.cis, r.actual, r.note);
            assert!(r.note.is_empty(), "{}: {}", r.cis, r.note);
            assert_eq!(r.source, Some(Source::Flag), "{}", r.cis);
        }
        let r = result(&good(), "1.2.4");
        assert_eq!(
            r.actual,
            format!("--kubelet-client-certificate={CERT} --kubelet-client-key={KEY}")
        );
        assert_eq!(
            r.origin.as_deref(),
            Some(format!("kube-apiserver (pid 7) --kubelet-client-certificate={CERT}").as_str())
        );
    }

    #[test]
    fn a_worker_without_an_api_server_is_not_applicable() {
        let api = ApiServer::Absent("no kube-apiserver process runs on this node".to_string());
        for r in evaluate(&api) {
            assert_eq!(r.status, Status::Pass, "{}", r.cis);
            assert_eq!(r.actual, "no kube-apiserver on this node");
            assert_eq!(
                r.note,
                "Not applicable: no kube-apiserver process runs on this node."
            );
            assert_eq!(r.source, None);
        }
    }

    #[test]
    fn an_api_server_that_cannot_be_known_is_error() {
        let api = ApiServer::Unknown("k3s server (pid 9) runs it inside".to_string());
        for r in evaluate(&api) {
            assert_eq!(r.status, Status::Error, "{}", r.cis);
            assert_eq!(r.note, "k3s server (pid 9) runs it inside");
        }
    }

    #[test]
    fn client_certificate_needs_both_flags() {
        let r = result(
            &with_argv(&["kube-apiserver", "--secure-port=6443"]),
            "1.2.4",
        );
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.actual,
            "--kubelet-client-certificate: not set --kubelet-client-key: not set"
        );
        assert_eq!(r.source, Some(Source::Default));
        assert!(r.note.contains("no client certificate"), "{}", r.note);

        let r = result(
            &with_argv(&[
                "kube-apiserver",
                &format!("--kubelet-client-certificate={CERT}"),
            ]),
            "1.2.4",
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.note.starts_with("--kubelet-client-key is not set"),
            "{}",
            r.note
        );
        assert_eq!(r.source, Some(Source::Default));

        let r = result(
            &with_argv(&["kube-apiserver", "--kubelet-client-key", KEY]),
            "1.2.4",
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.note
                .starts_with("--kubelet-client-certificate is not set"),
            "{}",
            r.note
        );
    }

    #[test]
    fn an_empty_value_is_not_set_and_the_last_occurrence_wins() {
        // The last --kubelet-client-key is empty: unset, whatever came before.
        let r = result(
            &with_argv(&[
                "kube-apiserver",
                &format!("--kubelet-client-certificate={CERT}"),
                &format!("--kubelet-client-key={KEY}"),
                "--kubelet-client-key=",
            ]),
            "1.2.4",
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.actual.ends_with("--kubelet-client-key=\"\" (not set)"),
            "{}",
            r.actual
        );
        assert_eq!(r.source, Some(Source::Flag));
        assert_eq!(
            r.origin.as_deref(),
            Some("kube-apiserver (pid 7) --kubelet-client-key=")
        );
        assert!(r.note.contains("given 2 times"), "{}", r.note);

        // An empty first value, then a real one: set.
        let r = result(
            &with_argv(&[
                "kube-apiserver",
                "--kubelet-certificate-authority=",
                "--kubelet_certificate_authority",
                CA,
            ]),
            "1.2.5",
        );
        assert_eq!(r.status, Status::Pass, "{}", r.note);
        assert_eq!(r.actual, format!("--kubelet-certificate-authority={CA}"));
        assert_eq!(
            r.origin.as_deref(),
            Some(format!("kube-apiserver (pid 7) --kubelet_certificate_authority {CA}").as_str())
        );
    }

    #[test]
    fn certificate_authority_missing_fails_and_says_what_it_means() {
        let r = result(
            &with_argv(&[
                "kube-apiserver",
                &format!("--kubelet-client-certificate={CERT}"),
                &format!("--kubelet-client-key={KEY}"),
            ]),
            "1.2.5",
        );
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.actual, "--kubelet-certificate-authority: not set");
        assert!(r.note.contains("TLS verification off"), "{}", r.note);
    }

    #[test]
    fn parse_follows_pflag() {
        let parse = |list: &[&str]| parse_args(&args(list));
        // A string flag takes the next argument whatever it is.
        let f = parse(&["--kubelet-client-key", "--weird"]).unwrap();
        assert_eq!(f.client_key.unwrap().value, "--weird");
        // An unknown flag steps over its separate value, which is not ours.
        let f = parse(&[
            "--etcd-servers",
            "https://127.0.0.1:2379",
            "--kubelet-client-key=/k",
        ])
        .unwrap();
        assert_eq!(f.client_key.unwrap().value, "/k");
        // A bare unknown flag before one of ours is a boolean.
        let f = parse(&["--anonymous-auth", "--kubelet-client-key=/k"]).unwrap();
        assert_eq!(f.client_key.unwrap().value, "/k");
        // -v takes a value, inline or separate.
        let f = parse(&[
            "-v",
            "2",
            "--kubelet-client-key=/k",
            "-v=3",
            "-v4",
            "-hv",
            "5",
        ])
        .unwrap();
        assert_eq!(f.client_key.unwrap().written, "--kubelet-client-key=/k");
        // `_` is `-`; a value with `=` in it keeps it.
        let f = parse(&["--kubelet_client_key=/a=b"]).unwrap();
        assert_eq!(f.client_key.unwrap().value, "/a=b");
        // Empty positional arguments pass cobra's Args check.
        assert!(parse(&["", "--kubelet-client-key=/k", "--", ""]).is_ok());
    }

    #[test]
    fn a_command_line_kube_apiserver_refuses_is_error() {
        for (argv, says) in [
            (
                vec!["kube-apiserver", "stray"],
                "positional argument \"stray\"",
            ),
            (
                vec!["kube-apiserver", "--kubelet-client-key"],
                "flag needs an argument",
            ),
            (vec!["kube-apiserver", "--", "x"], "after --"),
            (vec!["kube-apiserver", "---x"], "bad flag syntax"),
            (vec!["kube-apiserver", "--=x"], "bad flag syntax"),
            (vec!["kube-apiserver", "-"], "positional argument \"-\""),
            (
                vec!["kube-apiserver", "-kubelet-client-key=/k"],
                "unknown shorthand flag 'k'",
            ),
            (vec!["kube-apiserver", "-v"], "flag needs an argument: 'v'"),
        ] {
            for r in evaluate(&with_argv(&argv)) {
                assert_eq!(r.status, Status::Error, "{argv:?} {}: {}", r.cis, r.note);
                assert!(r.note.contains(says), "{argv:?} {}: {}", r.cis, r.note);
                assert!(r.note.contains("refuses to start"), "{}", r.note);
            }
        }
    }

    #[test]
    fn file_checks_pass_fail_and_are_not_applicable_without_flags() {
        // Key readable by the group: 1.1.21 fails, 1.1.20 does not look at it.
        let mut p = good_process(7);
        p.client_key = Some(watched(KEY, 0o640, 0));
        let api = ApiServer::Running(vec![p]);
        let r = result(&api, "1.1.21");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.actual, format!("{KEY} 0640 0:0"));
        assert!(r.note.contains("group or others can read it"), "{}", r.note);
        assert_eq!(result(&api, "1.1.20").status, Status::Pass);
        assert_eq!(result(&api, "1.1.19").status, Status::Pass);

        // A CA others can write: 1.1.20 fails and names it.
        let mut p = good_process(7);
        p.certificate_authority = Some(watched(CA, 0o666, 0));
        let r = result(&ApiServer::Running(vec![p]), "1.1.20");
        assert_eq!(r.status, Status::Fail);
        assert!(r.note.starts_with(&format!("{CA}: 0666")), "{}", r.note);

        // Owned by someone else: 1.1.19 fails.
        let mut p = good_process(7);
        p.client_certificate = Some(watched(CERT, 0o644, 1000));
        let r = result(&ApiServer::Running(vec![p]), "1.1.19");
        assert_eq!(r.status, Status::Fail);
        assert!(r.note.contains("uid 1000"), "{}", r.note);

        // 0400 is more restrictive than 600 and 644.
        let mut p = good_process(7);
        p.client_key = Some(watched(KEY, 0o400, 0));
        p.client_certificate = Some(watched(CERT, 0o400, 0));
        let api = ApiServer::Running(vec![p]);
        for cis in ["1.1.20", "1.1.21"] {
            assert_eq!(result(&api, cis).status, Status::Pass, "{cis}");
        }

        // No kubelet flags: the file checks are not applicable (1.2.4 fails instead).
        let api = ApiServer::Running(vec![ApiServerProcess {
            argv: args(&["kube-apiserver"]),
            client_certificate: None,
            client_key: None,
            certificate_authority: None,
            pid: 7,
            scope: None,
        }]);
        for cis in ["1.1.19", "1.1.20", "1.1.21"] {
            let r = result(&api, cis);
            assert_eq!(r.status, Status::Pass, "{cis}");
            assert!(r.note.starts_with("Not applicable: "), "{cis}: {}", r.note);
        }
    }

    #[test]
    fn an_absent_key_passes_and_says_why() {
        let mut p = good_process(7);
        p.client_key = Some(Watched {
            stat: Stat::Absent(format!("cannot read {KEY}: No such file or directory")),
            ..watched(KEY, 0, 0)
        });
        let r = result(&ApiServer::Running(vec![p]), "1.1.21");
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.actual, format!("{KEY}: absent"));
        assert!(r.note.contains("will not start again"), "{}", r.note);
    }

    #[test]
    fn several_api_servers_fail_when_one_does() {
        let mut bad = good_process(9);
        bad.argv
            .retain(|a| !a.starts_with("--kubelet-certificate-authority"));
        let api = ApiServer::Running(vec![good_process(7), bad]);
        let r = result(&api, "1.2.5");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.actual,
            format!(
                "kube-apiserver pid 7: --kubelet-certificate-authority={CA}; \
                 kube-apiserver pid 9: --kubelet-certificate-authority: not set"
            )
        );
        assert_eq!(
            r.origin.as_deref(),
            Some("kube-apiserver (pid 9): not on its command line; the default is empty")
        );
        // One refused command line among good ones: error, unless another already fails.
        let mut refused = good_process(9);
        refused.argv.push("stray".to_string());
        let api = ApiServer::Running(vec![good_process(7), refused.clone()]);
        let r = result(&api, "1.2.4");
        assert_eq!(r.status, Status::Error);
        assert!(r.note.starts_with("kube-apiserver pid 9: "), "{}", r.note);
        let mut bad = good_process(7);
        bad.argv.truncate(1);
        let r = result(&ApiServer::Running(vec![bad, refused]), "1.2.4");
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.note.contains("Not judged: kube-apiserver pid 9"),
            "{}",
            r.note
        );
    }

    /// An API server whose node could not be told is judged as the node's, and every
    /// check's note says so; the verdict is the same as without the doubt.
    #[test]
    fn an_api_server_of_unknown_node_is_judged_and_says_so() {
        let mut p = good_process(7);
        p.scope = Some("the kubelet's network namespace could not be read (EACCES)".into());
        for check in evaluate(&ApiServer::Running(vec![p])) {
            assert_eq!(check.status, Status::Pass, "{}", check.cis);
            assert_eq!(
                check.note,
                "Whether kube-apiserver pid 7 runs on this kubelet's node could not be told \
                 (the kubelet's network namespace could not be read (EACCES)); it is judged as \
                 this node's.",
                "{}",
                check.cis
            );
        }
        let mut p = good_process(7);
        p.scope = Some("its network namespace could not be read".into());
        p.argv.truncate(1);
        let r = result(&ApiServer::Running(vec![p]), "1.2.4");
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.note.ends_with("it is judged as this node's."),
            "{}",
            r.note
        );
    }
}
