//! microk8s: the kubelet runs inside `kubelite`, which reads the kubelet's arguments from a
//! file.
//!
//! Upstream (canonical/microk8s @ d099c907d3646a2dae3d3e33f07aef5a5bc8a090):
//! `build-scripts/components/kubernetes/patches/v1.35.0/0000-Kubelite-integration.patch`
//! adds `cmd/kubelite`. Its `--kubelet-args-file` (default
//! `/var/snap/microk8s/current/args/kubelet`; the snap passes `$SNAP_DATA/args/kubelet`,
//! `microk8s-resources/default-args/kubelite`) names the file, and `ReadArgsFromFile`
//! turns it into the kubelet's argv, which `StartKubelet` hands to the kubelet's own cobra
//! command (`NewKubeletCommand`, `SetArgs`): so every kubelet rule (pflag, `--config`,
//! drop-ins, legacy defaults) applies unchanged. `ReadArgsFromFile`, line by line
//! (`bufio.Scanner`: a line longer than 64 KiB is fatal):
//! - trims white space; skips empty lines and lines starting with `#`;
//! - removes every `"` and `'` (not shell quoting: they are deleted wherever they are);
//! - splits on single spaces (two spaces make an empty argument, which the kubelet refuses
//!   as a positional argument);
//! - expands `$VAR`/`${VAR}` in each part from kubelite's environment (`os.ExpandEnv`; an
//!   unset variable becomes the empty string).
//!
//! A file kubelite cannot open is fatal for it (`klog.Fatalf`). The stock file
//! (`microk8s-resources/default-args/kubelet`) sets no `--config` and no
//! `--authorization-mode`, so the kubelet runs with the legacy flag default AlwaysAllow.

use nodeproof_proto::Warning;

use crate::cmdline::ArgOrigin;
use crate::process::KubeletProcess;
use crate::scan::{ScanOptions, Snapshot};
use crate::schema;

use super::kubelet::{blank, read_kubelet_files};
use super::{go_expand, parse_environ};

/// kubelite's default `--kubelet-args-file` (`NewOptions` in cmd/kubelite/app/options).
pub const DEFAULT_ARGS_FILE: &str = "/var/snap/microk8s/current/args/kubelet";

/// `bufio.MaxScanTokenSize`: a longer line stops `bufio.Scanner` with "token too long".
const MAX_LINE: usize = 64 * 1024;

/// The kubelet inside the kubelite process `kp`.
pub fn snapshot(kp: &KubeletProcess, opts: &ScanOptions) -> Snapshot {
    let args_file = args_file_flag(kp.argv.get(1..).unwrap_or_default());
    let path = kp.resolve(args_file.as_deref().unwrap_or(DEFAULT_ARGS_FILE));
    let mut snap = blank(kp, opts, vec!["kubelet".to_string()]);
    snap.distribution = Some("microk8s".to_string());
    snap.embedded_in = Some(format!(
        "microk8s kubelite (pid {}), arguments from {path} (--kubelet-args-file{})",
        kp.pid,
        if args_file.is_some() { "" } else { ", default" }
    ));

    let text = match kp.read_file(&path) {
        Ok(bytes) => {
            snap.files.push(nodeproof_proto::FileDigest {
                path: path.clone(),
                sha256: super::sha256_hex(&bytes),
            });
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) => {
            snap.input_error = Some(format!(
                "microk8s' kubelite (pid {}) reads the kubelet's arguments from {path}, which \
                 cannot be read: {e}. kubelite stops when it cannot open that file \
                 (ReadArgsFromFile, klog.Fatalf), so no kubelet can be running with it as it \
                 is now; check `snap services microk8s` and the file, then scan again",
                kp.pid
            ));
            return snap;
        }
    };

    let env = match kp.environ() {
        Ok(raw) => Some(parse_environ(&raw)),
        Err(e) => {
            snap.warnings.push(Warning {
                message: format!(
                    "cannot read the environment of kubelite (pid {}): {e}; arguments in \
                     {path} that use variables ($SNAP_DATA, ...) cannot be expanded, so the \
                     settings they make are unknown (run nodeproof as root)",
                    kp.pid
                ),
                file: Some(path.clone()),
                field: None,
            });
            None
        }
    };

    for (n, raw_line) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.len() > MAX_LINE {
            snap.input_error = Some(format!(
                "{path} line {line_no} is longer than {MAX_LINE} bytes: kubelite's \
                 ReadArgsFromFile (bufio.Scanner) stops with \"token too long\" and kubelite \
                 exits, so no kubelet can be running with this file as it is now"
            ));
            return snap;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.replace(['"', '\''], "");
        for part in line.split(' ') {
            let lookup = |name: &str| -> Option<String> {
                env.as_ref()?
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let (arg, names) = go_expand(part, &lookup);
            if !names.is_empty() && env.is_none() {
                // The value is unknown: leave the argument out and say which setting
                // it would have made.
                if let Some(path_of) = config_path_of(part) {
                    snap.undetermined.insert(
                        path_of.to_string(),
                        format!(
                            "{part} in {path} uses environment variables, and kubelite's \
                             environment could not be read"
                        ),
                    );
                }
                continue;
            }
            for name in names.iter().filter(|name| lookup(name).is_none()) {
                snap.warnings.push(Warning {
                    message: format!(
                        "{part} in {path} line {line_no} uses ${name}, which is not in \
                         kubelite's environment (pid {}): kubelite expands it to an empty \
                         string, so the kubelet got {arg:?}",
                        kp.pid
                    ),
                    file: Some(path.clone()),
                    field: None,
                });
            }
            snap.argv.push(arg);
            snap.arg_origins.push(ArgOrigin::Written {
                place: format!("{path} line {line_no}"),
            });
        }
    }
    read_kubelet_files(kp, &mut snap);
    snap
}

/// The last `--kubelet-args-file` on kubelite's command line (pflag: `=value` or the next
/// argument; `_` reads as `-`).
fn args_file_flag(args: &[String]) -> Option<String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].replace('_', "-");
        i += 1;
        if arg == "--" {
            break;
        }
        if let Some(v) = arg.strip_prefix("--kubelet-args-file=") {
            found = Some(args[i - 1][args[i - 1].len() - v.len()..].to_string());
        } else if arg == "--kubelet-args-file" {
            if let Some(v) = args.get(i) {
                found = Some(v.clone());
                i += 1;
            }
        }
    }
    found
}

/// The v1beta1 path a `--flag=value` argument sets, if it is a config-backed flag.
fn config_path_of(arg: &str) -> Option<&'static str> {
    let name = arg.strip_prefix("--")?.split('=').next()?.replace('_', "-");
    schema::lookup_flag(&name)?.config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_file_flag_forms() {
        assert_eq!(args_file_flag(&s(&[])), None);
        assert_eq!(
            args_file_flag(&s(&[
                "--kubelet-args-file=/a",
                "--kubelet_args_file",
                "/b_c"
            ])),
            Some("/b_c".to_string())
        );
        assert_eq!(
            args_file_flag(&s(&["--kubelet_args_file=/x_y"])),
            Some("/x_y".to_string())
        );
        assert_eq!(args_file_flag(&s(&["--start-control-plane=true"])), None);
    }

    #[test]
    fn config_paths_of_arguments() {
        assert_eq!(
            config_path_of("--client-ca-file=${SNAP_DATA}/certs/ca.crt"),
            Some("authentication.x509.clientCAFile")
        );
        assert_eq!(config_path_of("--kubeconfig=$SNAP_DATA/x"), None);
        assert_eq!(config_path_of("junk"), None);
    }
}
