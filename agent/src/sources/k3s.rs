//! k3s: the kubelet runs inside the `k3s server` / `k3s agent` process (comm `k3s-server`,
//! `k3s-agent`), which hands it an argv assembled from k3s' built-in defaults and the
//! operator's `--kubelet-arg` values.
//!
//! Upstream (k3s-io/k3s), as this module reconstructs it:
//! - `pkg/configfilearg/parser.go` @ f646604010affc6a1d3233a8a0870bca46bf80cf (`Parse`,
//!   `readConfigFile`, `dotDFiles`) and `defaultparser.go` @
//!   f5e626d270758e7de46b8a1bae33a0029b32d84e: the config file is `$K3S_CONFIG_FILE`, else
//!   the first `--config`/`-c` on the command line, else `/etc/rancher/k3s/config.yaml`.
//!   It and every `*.yaml`/`*.yml` in `<file>.d/` (sorted by name) are read in that order;
//!   a key replaces the value so far, a key ending in `+` appends to it; each value becomes
//!   `--key=value` (a list: one per item), inserted right after `server`/`agent`, so the
//!   command line comes after it. A missing file with no drop-ins is no config; a file that
//!   is not valid YAML (or cannot be read) stops k3s (`logrus.Fatal`).
//! - `pkg/daemons/agent/agent.go` (`startKubelet`: `util.GetArgs(argsMap,
//!   cfg.ExtraKubeletArgs)`, logged as `Running kubelet ...`) and `pkg/util/args.go` @
//!   0aa32d5656f84887848522c45df9d6869d8eaec9 (`GetArgs`): each `--kubelet-arg` value
//!   `key=value` (leading `--` optional, no `=` means `true`) replaces k3s' default for
//!   that key; `key+=value` appends to it and `key-=value` prepends; repeated keys keep
//!   every value in order; the result is sorted by key, each written `--key=value`.
//! - `pkg/daemons/agent/agent_linux.go` @ 00014d2846a2c2cf4fb506d90f27cc04bb9497f3
//!   (`kubeletArgsAndConfig`): the defaults k3s always passes are `--config-dir=<data
//!   dir>/agent/etc/kubelet.conf.d` (where k3s writes `00-k3s-defaults.conf`, the
//!   KubeletConfiguration with anonymous auth off, Webhook authn/authz, the client CA and
//!   the serving certificate), `--kubeconfig=<data dir>/agent/kubelet.kubeconfig`,
//!   `--hostname-override=<node name>`, `--node-labels=...`, and since k3s-io/k3s#12165
//!   (v1.32.4, v1.33.0) `--read-only-port=0`: the drop-in cannot carry a zero read-only
//!   port (`omitempty`), so k3s 1.32.0-1.32.3 ran with the kubelet's legacy 10255
//!   (k3s-io/k3s#12164). The drop-in directory is a real directory on the node and is read
//!   as the kubelet reads it; only the arguments are reconstructed.
//!
//! Arguments k3s derives from the machine (`--node-ip`, `--cloud-provider=external`,
//! `--runtime-cgroups`, the image credential provider, rootless gates) are left out: none is
//! a setting the checks judge. Every argument k3s adds by itself is reported with source
//! `distribution-default`, which only k3s' log line `Running kubelet ...` confirms.
//!
//! k3s before v1.32 passed every kubelet setting as a flag and wrote no drop-in
//! (`kubeletArgs` in `pkg/daemons/agent/agent_linux.go`, e.g. @
//! 82394d7d3642de2090c509cc27a62e28fa3fa88c, until k3s-io/k3s#10433): `anonymous-auth=false`,
//! `authentication-token-webhook=true`, `authorization-mode=Webhook`,
//! `client-ca-file=<agent>/client-ca.crt`, `healthz-bind-address=127.0.0.1`,
//! `read-only-port=0`, `tls-cert-file`/`tls-private-key-file=<agent>/serving-kubelet.*`,
//! `pod-manifest-path`, `--protect-kernel-defaults` when k3s has it, and no `--config`, so
//! every other setting keeps the kubelet's legacy flag default. Those are reconstructed for
//! a k3s whose version says it is older than v1.32.

use std::collections::BTreeMap;

use nodeproof_proto::{FileDigest, Warning};

use crate::cmdline::ArgOrigin;
use crate::process::{kubelet_minor, KubeletProcess};
use crate::scan::{ScanOptions, Snapshot};
use crate::yaml::{self, Node};

use super::kubelet::{blank, read_kubelet_files};
use super::{parse_environ, sha256_hex};

/// `DefaultConfig` in pkg/configfilearg/defaultparser.go.
pub const DEFAULT_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// k3s' default `--data-dir` when run as root.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/rancher/k3s";

/// How to confirm an argument k3s passes by itself.
const CONFIRM: &str = "k3s default (pkg/daemons/agent/agent_linux.go kubeletArgsAndConfig); \
                       confirm in k3s' log line \"Running kubelet ...\"";

/// The kubelet inside the k3s process `kp`.
pub fn snapshot(kp: &KubeletProcess, opts: &ScanOptions) -> Snapshot {
    let mut snap = blank(kp, opts, vec!["kubelet".to_string()]);
    snap.distribution = Some("k3s".to_string());
    let args = kp.argv.get(1..).unwrap_or_default();
    let role = match (kp.comm.as_str(), args.first().map(String::as_str)) {
        ("k3s-agent", _) | (_, Some("agent")) => "agent",
        _ => "server",
    };
    // Not k3s' command line: it often carries the cluster's join token (`--token`), which
    // must not travel in a report.
    snap.embedded_in = Some(format!("k3s {role} (pid {})", kp.pid));

    let env = match kp.environ() {
        Ok(raw) => parse_environ(&raw),
        Err(e) => {
            snap.warnings.push(Warning {
                message: format!(
                    "cannot read the environment of k3s (pid {}): {e}; K3S_CONFIG_FILE, \
                     K3S_DATA_DIR and K3S_NODE_NAME are taken as unset (run nodeproof as root)",
                    kp.pid
                ),
                file: None,
                field: None,
            });
            Vec::new()
        }
    };
    let getenv = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };

    // The config file and its drop-ins, flattened into arguments.
    let config = getenv("K3S_CONFIG_FILE")
        .or_else(|| config_flag(args))
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    if config.starts_with("http://") || config.starts_with("https://") {
        snap.input_error = Some(format!(
            "k3s (pid {}) reads its configuration from an {} URL (K3S_CONFIG_FILE or \
             --config; not shown, it may carry credentials); nodeproof does not fetch it, so \
             the kubelet's arguments cannot be known",
            kp.pid,
            if config.starts_with("https") {
                "https"
            } else {
                "http"
            }
        ));
        return snap;
    }
    let config = kp.resolve(&config);
    let from_files = match read_config(kp, &config, &mut snap.files) {
        Ok(values) => values,
        Err(e) => {
            snap.input_error = Some(format!(
                "{e}. k3s stops with this error when it starts (configfilearg.MustParse, \
                 logrus.Fatal), so no kubelet can be running with the files as they are now \
                 (changed since k3s started?); fix the file and scan again"
            ));
            return snap;
        }
    };

    // k3s' own flags: config values first, then the command line (which wins).
    let mut flags = K3sFlags::default();
    for (arg, place) in &from_files {
        flags.take(std::slice::from_ref(arg), Some(place));
    }
    flags.take(args.get(1..).unwrap_or_default(), None);

    if flags.disable_agent {
        snap.input_error = Some(format!(
            "k3s server (pid {}) runs with disable-agent: it runs no kubelet, so there is \
             nothing to check on this process",
            kp.pid
        ));
        return snap;
    }

    let data_dir = kp.resolve(
        &flags
            .data_dir
            .clone()
            .or_else(|| getenv("K3S_DATA_DIR"))
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()),
    );
    let agent_dir = format!("{}/agent", data_dir.trim_end_matches('/'));
    let node_name = flags
        .node_name
        .clone()
        .or_else(|| getenv("K3S_NODE_NAME"))
        .or_else(|| snap.node.hostname.clone())
        .map(|n| n.to_lowercase());

    // The version decides --read-only-port=0.
    let version = snap.kubelet_version.clone();
    let era = version.as_deref().map(era_of);
    let kubeconfig = (
        "kubeconfig".to_string(),
        format!("{agent_dir}/kubelet.kubeconfig"),
    );
    let mut defaults: Vec<(String, String)> = match era {
        // Before v1.32 every setting was a flag (`kubeletArgs`, agent_linux.go before
        // k3s-io/k3s#10433), with the same client CA and serving certificate files the
        // drop-in names today; no --config, so anything not passed keeps the kubelet's
        // legacy flag default.
        Some(Era::Flags) => {
            let mut d = vec![
                ("anonymous-auth", "false".to_string()),
                ("authentication-token-webhook", "true".to_string()),
                ("authorization-mode", "Webhook".to_string()),
                ("client-ca-file", format!("{agent_dir}/client-ca.crt")),
                ("healthz-bind-address", "127.0.0.1".to_string()),
                ("pod-manifest-path", format!("{agent_dir}/pod-manifests")),
                ("read-only-port", "0".to_string()),
                ("tls-cert-file", format!("{agent_dir}/serving-kubelet.crt")),
                (
                    "tls-private-key-file",
                    format!("{agent_dir}/serving-kubelet.key"),
                ),
            ];
            if flags.protect_kernel_defaults {
                d.push(("protect-kernel-defaults", "true".to_string()));
            }
            d.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        }
        _ => vec![(
            "config-dir".to_string(),
            format!("{agent_dir}/etc/kubelet.conf.d"),
        )],
    };
    defaults.push(kubeconfig);
    defaults.push(("node-labels".to_string(), flags.node_labels.join(",")));
    if let Some(name) = &node_name {
        defaults.push(("hostname-override".to_string(), name.clone()));
    }
    let sets_read_only_port = flags
        .kubelet_args
        .iter()
        .any(|(a, _)| arg_key(a) == "read-only-port");
    match era {
        Some(Era::DropInReadOnlyPort) => {
            defaults.push(("read-only-port".to_string(), "0".to_string()))
        }
        Some(Era::DropInOnly) | Some(Era::Flags) => {}
        None if sets_read_only_port => {}
        None => {
            snap.undetermined.insert(
                "readOnlyPort".to_string(),
                "k3s passes --read-only-port=0 to its kubelet only from v1.32.4 on \
                 (k3s-io/k3s#12164: 1.32.0-1.32.3 leave the legacy 10255), and this k3s' \
                 version is unknown (its binary carries no version stamp nodeproof found); \
                 pass --kubelet-version, or set kubelet-arg read-only-port=0"
                    .to_string(),
            );
        }
    }

    let assembled = get_args(&defaults, &flags.kubelet_args);
    for (arg, origin) in assembled {
        snap.argv.push(arg);
        snap.arg_origins.push(origin);
    }
    read_kubelet_files(kp, &mut snap);
    if let Some(Err(e)) = snap.dropins.as_ref().map(|d| &d.files) {
        if era.is_none() {
            snap.warnings.push(Warning {
                message: format!(
                    "k3s' kubelet drop-in directory could not be read ({e}); this may be a \
                     k3s older than v1.32, which nodeproof does not reconstruct"
                ),
                file: None,
                field: None,
            });
        }
    }
    snap
}

/// What a k3s version passes to its kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// Before v1.32: flags only.
    Flags,
    /// v1.32.0-v1.32.3: the drop-in, no `--read-only-port`.
    DropInOnly,
    /// v1.32.4 and later: the drop-in and `--read-only-port=0`.
    DropInReadOnlyPort,
}

fn era_of(version: &str) -> Era {
    let minor = kubelet_minor(version).unwrap_or(0);
    let patch: u32 = version
        .trim_start_matches('v')
        .split('.')
        .nth(2)
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    match (minor, patch) {
        (0..=31, _) => Era::Flags,
        (32, 0..=3) => Era::DropInOnly,
        _ => Era::DropInReadOnlyPort,
    }
}

/// The first `--config`/`-c` on k3s' command line (`findConfigFileFlag`: the flag followed
/// by its value, or `flag=value`).
fn config_flag(args: &[String]) -> Option<String> {
    for (i, arg) in args.iter().enumerate() {
        for name in ["--config", "-c"] {
            if arg == name {
                return args.get(i + 1).cloned();
            }
            if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The k3s flags that decide the kubelet's arguments, as urfave/cli reads them (Go's flag
/// syntax: one or two dashes, `=value` or the next argument; the last value of a scalar
/// wins, list flags collect every value).
#[derive(Debug, Default)]
struct K3sFlags {
    data_dir: Option<String>,
    node_name: Option<String>,
    node_labels: Vec<String>,
    /// `--disable-agent`: a server that runs no kubelet at all.
    disable_agent: bool,
    /// `--protect-kernel-defaults`: before v1.32 passed to the kubelet as the flag of the
    /// same name (since, written into the drop-in, which is read from disk).
    protect_kernel_defaults: bool,
    /// Each `--kubelet-arg` value and where it was written.
    kubelet_args: Vec<(String, ArgOrigin)>,
}

impl K3sFlags {
    /// Reads `args`; `place` names the config file they were flattened from (None: the
    /// command line).
    fn take(&mut self, args: &[String], place: Option<&str>) {
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if name == "disable-agent" || name == "protect-kernel-defaults" {
                // A Go boolean flag: bare is true, `=value` is strconv.ParseBool.
                let on = match inline.as_deref() {
                    None => true,
                    Some(v) => matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"),
                };
                if name == "disable-agent" {
                    self.disable_agent = on;
                } else {
                    self.protect_kernel_defaults = on;
                }
                continue;
            }
            let takes_value = matches!(
                name,
                "kubelet-arg" | "data-dir" | "d" | "node-name" | "node-label"
            );
            if !takes_value {
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => continue,
                },
            };
            match name {
                "kubelet-arg" => {
                    let place = match place {
                        Some(p) => format!("{p} (kubelet-arg)"),
                        None => "k3s' command line (--kubelet-arg)".to_string(),
                    };
                    self.kubelet_args
                        .push((value, ArgOrigin::Written { place }));
                }
                "data-dir" | "d" => self.data_dir = Some(value),
                "node-name" => self.node_name = Some(value),
                _ => self.node_labels.push(value),
            }
        }
    }
}

/// The config file and its `.d` drop-ins flattened to `--key=value` arguments in k3s'
/// order, each with the file that set it. Errors name the file and say what is wrong.
fn read_config(
    kp: &KubeletProcess,
    config: &str,
    files: &mut Vec<FileDigest>,
) -> Result<Vec<(String, String)>, String> {
    let dropin_dir = format!("{config}.d");
    let mut paths: Vec<String> = match kp.walk_dir(&format!("{dropin_dir}/")) {
        Ok(entries) => entries
            .into_iter()
            // dotDFiles: entries of the directory itself (not below), named *.yaml or *.yml
            // in any case.
            .filter(|p| {
                p.strip_prefix(&format!("{dropin_dir}/"))
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .filter(|p| {
                let lower = p.to_ascii_lowercase();
                lower.ends_with(".yaml") || lower.ends_with(".yml")
            })
            .collect(),
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(format!("k3s cannot list its config drop-ins: {e}")),
    };
    match kp.read_file(config) {
        Ok(_) => paths.insert(0, config.to_string()),
        Err(e) if e.is_not_found() && !paths.is_empty() => {}
        // No config file and no drop-ins: k3s runs without one.
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(format!("k3s cannot read its config file: {e}")),
    }

    let mut order: Vec<String> = Vec::new();
    // Each key's values, each with the file that wrote it.
    let mut values: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for path in &paths {
        let bytes = kp
            .read_file(path)
            .map_err(|e| format!("k3s cannot read its config file: {e}"))?;
        files.push(FileDigest {
            path: path.clone(),
            sha256: sha256_hex(&bytes),
        });
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("k3s' config file {path} is not UTF-8 text"))?;
        let entries = match yaml::parse(&text) {
            Ok(parsed) => match parsed.node {
                Node::Map(entries) => entries,
                Node::Null => Vec::new(),
                other => {
                    return Err(format!(
                        "k3s' config file {path} is {}, not a mapping of flag names to values",
                        other.kind_name()
                    ))
                }
            },
            Err(e) => return Err(format!("k3s' config file {path} is not valid YAML: {e}")),
        };
        for (key, value) in entries {
            let append = key.ends_with('+');
            let key = key.trim_end_matches('+').to_string();
            if !order.contains(&key) {
                order.push(key.clone());
            }
            let items = to_strings(&value)
                .into_iter()
                .map(|item| (item, path.clone()));
            match values.get_mut(&key) {
                Some(old) if append => old.extend(items),
                _ => {
                    values.insert(key, items.collect());
                }
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        if let Some(items) = values.remove(&key) {
            let dashes = if key.chars().count() == 1 { "-" } else { "--" };
            for (item, path) in items {
                out.push((format!("{dashes}{key}={item}"), path));
            }
        }
    }
    Ok(out)
}

/// A config value as k3s flattens it: a list gives one argument per item, anything else one
/// (wrangler's `convert.ToString`).
fn to_strings(v: &Node) -> Vec<String> {
    match v {
        Node::Seq(items) => items.iter().map(scalar).collect(),
        other => vec![scalar(other)],
    }
}

fn scalar(v: &Node) -> String {
    match v {
        Node::Null => String::new(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Str(s) => s.clone(),
        Node::Seq(_) | Node::Map(_) => format!("{v:?}"),
    }
}

/// The key of a `--kubelet-arg` value, as `GetArgs` cleans it.
fn arg_key(arg: &str) -> &str {
    let body = arg.strip_prefix("--").unwrap_or(arg);
    let key = body.split_once('=').map_or(body, |(k, _)| k);
    key.trim_end_matches(['-', '+'])
}

/// `util.GetArgs` (pkg/util/args.go): k3s' defaults merged with the `--kubelet-arg`
/// values, each result with its origin.
fn get_args(
    defaults: &[(String, String)],
    extra: &[(String, ArgOrigin)],
) -> Vec<(String, ArgOrigin)> {
    let default_origin = || ArgOrigin::DistributionDefault {
        by: CONFIRM.to_string(),
    };
    let mut initial: BTreeMap<String, String> = defaults.iter().cloned().collect();
    let mut multi: BTreeMap<String, Vec<(String, ArgOrigin)>> = BTreeMap::new();
    for (unsplit, origin) in extra {
        let body = unsplit.strip_prefix("--").unwrap_or(unsplit);
        let (arg, value) = match body.split_once('=') {
            Some((a, v)) => (a, v.to_string()),
            None => (body, "true".to_string()),
        };
        let cleaned = arg.trim_end_matches(['-', '+']).to_string();
        let initial_value = initial.get(&cleaned).cloned();
        let existing = multi.remove(&cleaned).unwrap_or_default();
        let mut values = Vec::new();
        if arg.ends_with('+') {
            values.extend(initial_value.map(|v| (v, default_origin())));
            values.extend(existing);
            values.push((value, origin.clone()));
        } else if arg.ends_with('-') {
            values.push((value, origin.clone()));
            values.extend(initial_value.map(|v| (v, default_origin())));
            values.extend(existing);
        } else {
            values.extend(existing);
            values.push((value, origin.clone()));
        }
        initial.remove(&cleaned);
        multi.insert(cleaned, values);
    }
    for (k, v) in initial {
        multi.insert(k, vec![(v, default_origin())]);
    }
    let mut out = Vec::new();
    for (key, values) in multi {
        let key = key.strip_prefix("--").unwrap_or(&key).to_string();
        for (value, origin) in values {
            out.push((format!("--{key}={value}"), origin));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str) -> ArgOrigin {
        ArgOrigin::Written {
            place: p.to_string(),
        }
    }

    fn args(out: &[(String, ArgOrigin)]) -> Vec<&str> {
        out.iter().map(|(a, _)| a.as_str()).collect()
    }

    #[test]
    fn get_args_overrides_appends_prepends_and_sorts() {
        let defaults = vec![
            ("read-only-port".to_string(), "0".to_string()),
            ("node-labels".to_string(), "a=b".to_string()),
            ("kubeconfig".to_string(), "/k".to_string()),
        ];
        let extra = vec![
            ("read-only-port=10255".to_string(), w("cli")),
            ("--node-labels+=c=d".to_string(), w("cli")),
            ("protect-kernel-defaults".to_string(), w("cfg")),
            ("v=2".to_string(), w("cfg")),
            ("v=4".to_string(), w("cli")),
            ("kubeconfig-=/first".to_string(), w("cli")),
        ];
        let out = get_args(&defaults, &extra);
        assert_eq!(
            args(&out),
            vec![
                "--kubeconfig=/first",
                "--kubeconfig=/k",
                "--node-labels=a=b",
                "--node-labels=c=d",
                "--protect-kernel-defaults=true",
                "--read-only-port=10255",
                "--v=2",
                "--v=4",
            ]
        );
        assert!(matches!(out[1].1, ArgOrigin::DistributionDefault { .. }));
        assert_eq!(out[3].1, w("cli"));
        assert_eq!(out[5].1, w("cli"));
    }

    #[test]
    fn eras_by_version() {
        assert_eq!(era_of("v1.31.9+k3s1"), Era::Flags);
        assert_eq!(era_of("v1.32.3+k3s1"), Era::DropInOnly);
        assert_eq!(era_of("v1.32.4+k3s1"), Era::DropInReadOnlyPort);
        assert_eq!(era_of("v1.33.0+k3s1"), Era::DropInReadOnlyPort);
    }

    #[test]
    fn config_flag_is_the_first() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_flag(&s(&["server", "-c", "/a", "--config=/b"])),
            Some("/a".into())
        );
        assert_eq!(
            config_flag(&s(&["server", "--config=/b"])),
            Some("/b".into())
        );
        assert_eq!(config_flag(&s(&["server", "--config"])), None);
        assert_eq!(config_flag(&s(&["server"])), None);
        assert_eq!(arg_key("--feature-gates+=X=true"), "feature-gates");
        assert_eq!(arg_key("v"), "v");
    }
}
