//! Input adapters: where the kubelet's arguments and files come from, per distribution.
//!
//! Why it exists: most kubelets are a process of their own whose command line is the
//! truth ([`kubelet`]). Some distributions run the kubelet inside one of their own
//! processes and hand it arguments that appear on no command line: k3s ([`k3s`]) assembles
//! them from its built-in defaults, `--kubelet-arg` and its config files; microk8s'
//! kubelite ([`microk8s`]) reads them from an arguments file. Each adapter turns what it
//! finds into the same [`Snapshot`]: the kubelet's argv as the kubelet receives it, where
//! each argument came from, and the files that argv names, read through the process's
//! root. [`crate::effective`] and [`crate::checks`] then never learn which distribution
//! they look at. (rke2 starts a real `kubelet` child process, so [`kubelet`] reads it.)

pub mod k3s;
pub mod kubelet;
pub mod microk8s;

use crate::probe::{self, Probe};
use crate::process::{find_candidates, Candidate, Embedded, FindError, KubeletProcess};
use crate::scan::{ScanError, ScanOptions, Snapshot};

/// The one kubelet on this node (or the one `--pid` names), read by its adapter. Several
/// candidates without `--pid` are [`FindError::Several`].
pub fn collect(opts: &ScanOptions) -> Result<Snapshot, ScanError> {
    let candidates = find_candidates(&opts.proc_dir, opts.pid)?;
    if candidates.len() > 1 {
        return Err(FindError::Several(candidates.iter().map(|c| c.process.pid).collect()).into());
    }
    let candidate = candidates
        .into_iter()
        .next()
        .ok_or_else(|| FindError::NotFound {
            proc_dir: opts.proc_dir.clone(),
            scanned: 0,
            unreadable: 0,
        })?;
    Ok(snapshot(&candidate, opts))
}

/// Every kubelet on this node, in pid order (several kind nodes on one host, say), each
/// read by its adapter. With `--pid`, just that one.
pub fn collect_all(opts: &ScanOptions) -> Result<Vec<Snapshot>, ScanError> {
    let candidates = find_candidates(&opts.proc_dir, opts.pid)?;
    Ok(candidates.iter().map(|c| snapshot(c, opts)).collect())
}

fn snapshot(candidate: &Candidate, opts: &ScanOptions) -> Snapshot {
    let mut snap = match candidate.embedded {
        None => kubelet::snapshot(&candidate.process, opts),
        Some(Embedded::K3s) => k3s::snapshot(&candidate.process, opts),
        Some(Embedded::Microk8s) => microk8s::snapshot(&candidate.process, opts),
    };
    // The files the kubelet uses (CIS 4.1) follow from the argv the adapter rebuilt, so
    // they are stated the same way for every distribution. When no kubelet can be running
    // with these inputs (input_error), no file is "in use" either: the file checks are
    // error with the same reason, never a verdict on a kubelet that does not run.
    if let Some(err) = &snap.input_error {
        snap.node_files = crate::node_files::NodeFiles::not_collected(err);
        // Nor are its ports probed: whatever answers there is not a kubelet running with
        // these inputs.
        if opts.probe {
            snap.probe = Some(Probe::not_probed(format!(
                "no kubelet runs with these inputs ({err}), so its ports were not probed"
            )));
        }
        return snap;
    }
    let cmd = crate::cmdline::parse_cmdline(snap.argv.get(1..).unwrap_or_default());
    snap.node_files = crate::scan::collect_node_files(
        &opts.proc_dir,
        &candidate.process,
        &cmd,
        (&snap.config_file, &snap.dropins),
        snap.kubelet_version.as_deref(),
    );
    // A kube-apiserver is the node's, not the kubelet's: looked for the same way whatever
    // runs the kubelet, among the processes on the kubelet's node (its network namespace),
    // so that with several kubelets on one host (kind nodes) each report judges only its
    // own node's API server.
    snap.apiserver = crate::kube_apiserver::collect(&opts.proc_dir, candidate.process.pid);
    // The live probes go where the effective settings say the kubelet listens, so they
    // follow the adapter too, and are the same for every distribution.
    if opts.probe {
        snap.probe = Some(probe_snapshot(&snap, &candidate.process, opts));
    }
    snap
}

/// Probes the kubelet's ports where its effective settings say it listens.
fn probe_snapshot(snap: &Snapshot, process: &KubeletProcess, opts: &ScanOptions) -> Probe {
    let eff = crate::scan::effective(snap);
    probe::probe(&eff, &opts.proc_dir, process.pid)
}

/// `os.Expand` of Go's standard library, which kubelite applies to every argument
/// (`os.ExpandEnv`): `$NAME` and `${NAME}` are replaced by `lookup(NAME)`, a `$` followed by
/// one of Go's shell special characters (`*#$@!?-` and digits) takes that character as the
/// name, `${}` and an unterminated `${` are dropped, and a `$` followed by anything else (or
/// nothing) stays. Returns the names looked up, in order, with the text.
pub fn go_expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    let alnum = |c: u8| c == b'_' || c.is_ascii_alphanumeric();
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut names = Vec::new();
    let mut start = 0; // first byte not yet copied
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] != b'$' || j + 1 >= bytes.len() {
            j += 1;
            continue;
        }
        out.push_str(&s[start..j]);
        let rest = &bytes[j + 1..];
        // (name, bytes after the `$` consumed)
        let (name, width): (&str, usize) = if rest[0] == b'{' {
            if rest.len() > 2 && special(rest[1]) && rest[2] == b'}' {
                (&s[j + 2..j + 3], 3)
            } else {
                match rest.iter().skip(1).position(|&c| c == b'}') {
                    Some(0) => ("", 2),
                    Some(p) => (&s[j + 2..j + 2 + p], p + 2),
                    None => ("", 1),
                }
            }
        } else if special(rest[0]) {
            (&s[j + 1..j + 2], 1)
        } else {
            let n = rest.iter().take_while(|&&c| alnum(c)).count();
            (&s[j + 1..j + 1 + n], n)
        };
        if name.is_empty() && width == 0 {
            out.push('$'); // valid syntax, but no name: the `$` stays
        } else if !name.is_empty() {
            out.push_str(&lookup(name).unwrap_or_default());
            names.push(name.to_string());
        }
        j += width + 1;
        start = j;
    }
    out.push_str(&s[start.min(s.len())..]);
    (out, names)
}

/// SHA-256 of `bytes`, hex-encoded, as the report's file digests are.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A process's environment, from `/proc/<pid>/environ` (`NAME=value`, NUL-separated); the
/// first definition of a name wins, as Go's `os.Getenv` finds it.
pub fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in raw.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        if let Some((k, v)) = entry.split_once('=') {
            if !out.iter().any(|(name, _)| name == k) {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SNAP_DATA" => Some("/var/snap/microk8s/x1".to_string()),
            "1" => Some("one".to_string()),
            _ => None,
        }
    }

    #[test]
    fn go_expand_follows_os_expand() {
        let e = |s: &str| go_expand(s, &env).0;
        assert_eq!(e("${SNAP_DATA}/args"), "/var/snap/microk8s/x1/args");
        assert_eq!(e("$SNAP_DATA/args"), "/var/snap/microk8s/x1/args");
        assert_eq!(e("$SNAP_DATAx"), "");
        assert_eq!(e("a${UNKNOWN}b"), "ab");
        assert_eq!(e("cost$"), "cost$");
        assert_eq!(e("a$/b"), "a$/b");
        assert_eq!(e("a${}b"), "ab");
        assert_eq!(e("a${b"), "ab");
        assert_eq!(e("$1x"), "onex");
        assert_eq!(e("${1}x"), "onex");
        assert_eq!(e("no dollars"), "no dollars");
        assert_eq!(e("é$SNAP_DATA"), "é/var/snap/microk8s/x1");
        assert_eq!(
            go_expand("${A}${SNAP_DATA}", &env).1,
            vec!["A".to_string(), "SNAP_DATA".to_string()]
        );
    }

    #[test]
    fn environ_first_definition_wins() {
        let env = parse_environ(b"A=1\0B=x=y\0A=2\0junk\0");
        assert_eq!(
            env,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x=y".to_string())
            ]
        );
    }
}
