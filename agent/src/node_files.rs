//! The files the kubelet really uses, with their mode and owner, for the CIS 4.1 checks.
//!
//! Why a module of its own: `process` reads what a file *says*; the 4.1 checks need who may
//! *change* it, for files found from the running processes rather than from a distribution's
//! usual paths. This is the edge that finds and stats them; [`crate::checks::files`] judges
//! the plain values it returns ([`NodeFiles`]), so the checks are tested without a node.
//!
//! Where each file comes from:
//! - the systemd unit: `/proc/<pid>/cgroup` names the service the kubelet runs in
//!   (`0::/system.slice/kubelet.service` on cgroup v2, the `name=systemd` line on v1); the
//!   unit file is the first of systemd's unit directories ([`UNIT_DIRS`]) that has it, and
//!   its drop-ins are `<unit>.d/*.conf` in all of them (a name in an earlier directory hides
//!   the same name in a later one), plus systemd's `service.d/` and dash-prefix drop-ins;
//! - `--kubeconfig`, `--config`, the `.conf` files of `--config-dir` and the directory
//!   itself, from the kubelet's command line;
//! - the client CA, from the effective `authentication.x509.clientCAFile`;
//! - the kube-proxy kubeconfig, from a running kube-proxy's `--kubeconfig`, or its
//!   `--config` file's `clientConnection.kubeconfig`.
//!
//! Every path is stat'ed through the owning process's root (`/proc/<pid>/root`), following
//! symbolic links inside that root (see [`KubeletProcess::stat`]). The unit files are read
//! through the kubelet's root too: systemd and the services it starts share a mount
//! namespace, so that root is where the kubelet's systemd found its unit, on a host and in
//! a kind node alike. So no `--host-root` is needed: an agent in a pod with `hostPID` reads
//! the host's unit files through `/proc/<kubelet-pid>/root` as it reads the kubelet's config
//! (deploy/kubernetes mounts no host root). The one setup this misses is a kubelet that
//! systemd starts in the service's cgroup but in another root (CoreOS's old `rkt fly`
//! kubelet-wrapper): its unit is reported absent (docs/install.md, "Kubernetes").

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nodeproof_proto::Source;

use crate::cmdline::CommandLine;
use crate::effective;
use crate::process::{split_cmdline, KubeletProcess};

/// systemd's unit directories for the system manager, highest priority first
/// (`systemd.unit(5)`, "System Unit Search Path"), without the `.control`, `.attached` and
/// generator directories that tools, not people, write; `/lib/systemd/system` for
/// distributions without a merged `/usr`.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/transient",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Most drop-in files looked at per directory; more are not a drop-in directory.
const MAX_DROPINS: usize = 256;

/// What the 4.1 checks look at, as read. Plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// 4.1.1/4.1.2: the kubelet's systemd unit file, then its drop-ins.
    pub unit: FileSet,
    /// 4.1.3/4.1.4: the kubeconfig of a kube-proxy running on the host.
    pub proxy_kubeconfig: FileSet,
    /// 4.1.5/4.1.6: the file `--kubeconfig` names.
    pub kubeconfig: FileSet,
    /// 4.1.7/4.1.8: the client CA file.
    pub client_ca: FileSet,
    /// 4.1.9/4.1.10: the `--config` file, then the drop-ins of `--config-dir` it applies.
    pub config: FileSet,
    /// 4.1.11: the `--config-dir` directory itself.
    pub config_dir: FileSet,
}

impl NodeFiles {
    /// Every kind unknown for the same reason: for a snapshot built without reading the
    /// node's files (tests, or a source that cannot stat them).
    pub fn not_collected(why: &str) -> NodeFiles {
        let unknown = || FileSet::Unknown(why.to_string());
        NodeFiles {
            unit: unknown(),
            proxy_kubeconfig: unknown(),
            kubeconfig: unknown(),
            client_ca: unknown(),
            config: unknown(),
            config_dir: unknown(),
        }
    }
}

/// The files of one kind the node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSet {
    /// None is in use; why, for the report's note.
    NotUsed(String),
    /// Which files are in use could not be found out; why.
    Unknown(String),
    /// The files in use, each stat'ed.
    Files(Vec<Watched>),
}

/// One file a process uses, and why we look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The path as the process names it (absolute, inside its root).
    pub path: String,
    /// What names it: `--kubeconfig=/etc/kubernetes/kubelet.conf`, `/proc/4242/cgroup
    /// (kubelet.service)`.
    pub why: String,
    /// The source of the setting that names it, when a kubelet setting does.
    pub source: Option<Source>,
    pub stat: Stat,
}

/// What a stat of the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stat {
    Present(Meta),
    /// It (or a directory on its way) does not exist; the reader's message.
    Absent(String),
    /// It could not be stat'ed (permission denied, a symlink loop); the reader's message.
    Error(String),
}

/// The mode and owner of a file, after following symbolic links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: FileKind,
    /// Where symbolic links led, inside the root, when that differs from the path.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    /// A FIFO, socket or device.
    Other,
}

/// Stats `path` inside `process`'s root.
pub fn stat(process: &KubeletProcess, path: &str) -> Stat {
    match process.stat(path) {
        Ok((meta, resolved)) => {
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                FileKind::Directory
            } else if ft.is_file() {
                FileKind::File
            } else {
                FileKind::Other
            };
            Stat::Present(Meta {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                kind,
                target: (resolved != path).then_some(resolved),
            })
        }
        Err(e) if e.is_not_found() => Stat::Absent(e.to_string()),
        Err(e) => Stat::Error(e.to_string()),
    }
}

/// Finds and stats every file the 4.1 checks look at. `client_ca` is the effective
/// `authentication.x509.clientCAFile` with its source, when known (`Err`: why not).
pub fn collect(
    proc_dir: &Path,
    kubelet: &KubeletProcess,
    cmd: &CommandLine,
    client_ca: Result<(String, Source, String), String>,
) -> NodeFiles {
    NodeFiles {
        unit: unit_files(proc_dir, kubelet),
        proxy_kubeconfig: proxy_kubeconfig(proc_dir),
        kubeconfig: kubeconfig(kubelet, cmd),
        client_ca: match client_ca {
            Err(why) => FileSet::Unknown(why),
            Ok((path, _, _)) if path.is_empty() => FileSet::NotUsed(
                "no client CA file is configured (authentication.x509.clientCAFile is empty; \
                 see 4.2.3), so there is no file to protect"
                    .to_string(),
            ),
            Ok((path, source, origin)) => {
                let path = kubelet.resolve(&path);
                FileSet::Files(vec![Watched {
                    stat: stat(kubelet, &path),
                    why: format!("authentication.x509.clientCAFile ({origin})"),
                    source: Some(source),
                    path,
                }])
            }
        },
        config: config_files(kubelet, cmd),
        config_dir: match effective::config_dir_flag(cmd) {
            None => FileSet::NotUsed(
                "the kubelet runs without --config-dir, so there is no drop-in directory"
                    .to_string(),
            ),
            Some(dir) => {
                let path = kubelet.resolve(&dir);
                FileSet::Files(vec![Watched {
                    stat: stat(kubelet, &path),
                    why: written(cmd, "config-dir"),
                    source: Some(Source::Flag),
                    path,
                }])
            }
        },
    }
}

/// The flag as it was written, for `why`.
fn written(cmd: &CommandLine, name: &str) -> String {
    cmd.last(name)
        .map_or_else(|| format!("--{name}"), |f| f.written.clone())
}

fn kubeconfig(kubelet: &KubeletProcess, cmd: &CommandLine) -> FileSet {
    match cmd.last("kubeconfig").filter(|f| !f.value.is_empty()) {
        None => FileSet::NotUsed(
            "the kubelet runs without --kubeconfig (standalone mode: it talks to no API \
             server), so there is no kubeconfig to protect"
                .to_string(),
        ),
        Some(f) => {
            let path = kubelet.resolve(&f.value);
            FileSet::Files(vec![Watched {
                stat: stat(kubelet, &path),
                why: f.written.clone(),
                source: Some(Source::Flag),
                path,
            }])
        }
    }
}

fn config_files(kubelet: &KubeletProcess, cmd: &CommandLine) -> FileSet {
    let mut files = Vec::new();
    if let Some(config) = effective::config_flag(cmd) {
        let path = kubelet.resolve(&config);
        files.push(Watched {
            stat: stat(kubelet, &path),
            why: written(cmd, "config"),
            source: Some(Source::Flag),
            path,
        });
    }
    if let Some(dir) = effective::config_dir_flag(cmd) {
        let dir = kubelet.resolve(&dir);
        match kubelet.walk_dir(&dir) {
            Ok(paths) => {
                for path in paths.into_iter().filter(|p| effective::is_dropin(p)) {
                    files.push(Watched {
                        stat: stat(kubelet, &path),
                        why: format!("a drop-in of {}", written(cmd, "config-dir")),
                        source: Some(Source::Flag),
                        path,
                    });
                }
            }
            // The directory itself is 4.1.11's; a missing one has no drop-ins.
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return FileSet::Unknown(format!(
                    "the drop-ins of {} could not be listed: {e}",
                    written(cmd, "config-dir")
                ))
            }
        }
    }
    if files.is_empty() && effective::config_flag(cmd).is_none() {
        let why = if effective::config_dir_flag(cmd).is_some() {
            "the kubelet runs without --config and its --config-dir holds no .conf file"
        } else {
            "the kubelet runs without --config or --config-dir: every setting comes from \
             flags and defaults, so there is no configuration file to protect"
        };
        return FileSet::NotUsed(why.to_string());
    }
    FileSet::Files(files)
}

// ---- the systemd unit ------------------------------------------------------------------

/// The systemd service a process runs in, from the text of `/proc/<pid>/cgroup`: the last
/// `*.service` component of the cgroup v2 path (`0::...`), or else of the v1 `name=systemd`
/// hierarchy. `Err` with the cgroup path when that names no service (a `.scope`, a
/// container's cgroup): no unit file then controls the process.
pub fn service_from_cgroup(text: &str) -> Result<String, String> {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "name=systemd") {
            v1 = Some(path);
        }
    }
    // Under cgroup v1 the `0::` line also exists but systemd keeps its tree in name=systemd.
    let path = match (v1, v2) {
        (Some(p), _) => p,
        (None, Some(p)) => p,
        (None, None) => return Err("no cgroup v2 or name=systemd line".to_string()),
    };
    path.rsplit('/')
        .find(|c| c.ends_with(".service") && c.len() > ".service".len())
        .map(str::to_string)
        .ok_or_else(|| path.to_string())
}

/// The names of the drop-in directories systemd reads for `unit`, most specific last (the
/// order does not matter for our checks): `service.d`, one per dash prefix
/// (`rke2-.service.d` for `rke2-server.service`), the template's (`getty@.service.d`), and
/// the unit's own.
pub fn dropin_dir_names(unit: &str) -> Vec<String> {
    let Some(stem) = unit.strip_suffix(".service") else {
        return vec![format!("{unit}.d")];
    };
    let mut names = vec!["service.d".to_string()];
    for (i, _) in stem.match_indices('-') {
        names.push(format!("{}-.service.d", &stem[..i]));
    }
    if let Some((prefix, instance)) = stem.split_once('@') {
        if !instance.is_empty() {
            names.push(format!("{prefix}@.service.d"));
        }
    }
    names.push(format!("{unit}.d"));
    names
}

fn unit_files(proc_dir: &Path, kubelet: &KubeletProcess) -> FileSet {
    let cgroup_path = proc_dir.join(kubelet.pid.to_string()).join("cgroup");
    let text = match fs::read_to_string(&cgroup_path) {
        Ok(t) => t,
        Err(e) => {
            return FileSet::Unknown(format!(
                "cannot read {}: {e}, so the kubelet's systemd unit is not known",
                cgroup_path.display()
            ))
        }
    };
    let unit = match service_from_cgroup(&text) {
        Ok(u) => u,
        Err(cgroup) => {
            return FileSet::NotUsed(format!(
                "the kubelet does not run as a systemd service (its cgroup is {cgroup}): it \
                 was started by a container runtime, a supervisor other than systemd or by \
                 hand, so no unit file controls its arguments"
            ))
        }
    };
    let why = format!("/proc/{}/cgroup ({unit})", kubelet.pid);
    let mut files = Vec::new();
    // The unit file: the first directory that has it (a template instance falls back to
    // its template).
    let mut names = vec![unit.clone()];
    if let Some((prefix, rest)) = unit.split_once('@') {
        if rest != ".service" {
            names.push(format!("{prefix}@.service"));
        }
    }
    let found = names.iter().find_map(|name| {
        UNIT_DIRS.iter().find_map(|dir| {
            let path = format!("{dir}/{name}");
            match stat(kubelet, &path) {
                Stat::Absent(_) => None,
                other => Some((path, other)),
            }
        })
    });
    match found {
        Some((path, stat)) => files.push(Watched {
            path,
            why: why.clone(),
            source: None,
            stat,
        }),
        None => files.push(Watched {
            path: format!("{unit} (not found in {})", UNIT_DIRS.join(", ")),
            why: why.clone(),
            source: None,
            stat: Stat::Absent(format!(
                "systemd runs the kubelet as {unit}, but none of {} has a unit file of that \
                 name (a unit from a generator or an alias)",
                UNIT_DIRS.join(", ")
            )),
        }),
    }
    // Drop-ins: every `*.conf` of every drop-in directory; a file name already seen in a
    // directory of higher priority hides the later one, as in systemd.
    let mut seen: Vec<(String, String)> = Vec::new();
    for name in dropin_dir_names(&unit) {
        for dir in UNIT_DIRS {
            let dir = format!("{dir}/{name}");
            let Ok(entries) = kubelet.walk_dir(&dir) else {
                continue;
            };
            for path in entries.into_iter().take(MAX_DROPINS) {
                let Some(file) = path.strip_prefix(&format!("{dir}/")) else {
                    continue;
                };
                if file.contains('/') || !file.ends_with(".conf") {
                    continue;
                }
                if seen.iter().any(|(n, f)| *n == name && f == file) {
                    continue;
                }
                seen.push((name.clone(), file.to_string()));
                files.push(Watched {
                    stat: stat(kubelet, &path),
                    why: format!("a drop-in of {unit} ({why})"),
                    source: None,
                    path,
                });
            }
        }
    }
    FileSet::Files(files)
}

// ---- kube-proxy ------------------------------------------------------------------------

/// Processes of `proc_dir` whose comm, or argv\[0\]'s file name, is `name`, in pid order.
/// Processes that exit or cannot be read while we look are skipped.
pub fn find_named(proc_dir: &Path, name: &str) -> Vec<KubeletProcess> {
    find_where(proc_dir, |comm, argv| {
        let arg0 = argv.first().map_or("", String::as_str);
        comm == name || arg0.rsplit('/').next().unwrap_or(arg0) == name
    })
}

/// Processes of `proc_dir` with a command line for which `wanted(comm, argv)` holds, in
/// pid order, found in one pass over `proc_dir`. Processes that exit or cannot be read
/// while we look, and those with an empty command line (kernel threads, zombies), are
/// skipped.
pub fn find_where(
    proc_dir: &Path,
    wanted: impl Fn(&str, &[String]) -> bool,
) -> Vec<KubeletProcess> {
    let Ok(all) = procfs::process::all_processes_with_root(proc_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for process in all.flatten() {
        let mut raw = Vec::new();
        let Ok(mut f) = process.open_relative("cmdline") else {
            continue;
        };
        if f.read_to_end(&mut raw).is_err() {
            continue;
        }
        let cmdline = split_cmdline(&raw);
        if cmdline.is_empty() {
            continue;
        }
        let mut comm = Vec::new();
        if let Ok(mut f) = process.open_relative("comm") {
            let _ = f.read_to_end(&mut comm);
        }
        let comm = String::from_utf8_lossy(comm.strip_suffix(b"\n").unwrap_or(&comm)).into_owned();
        if wanted(&comm, &cmdline) {
            found.push(KubeletProcess::of_process(
                proc_dir,
                process.pid(),
                comm,
                cmdline,
            ));
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// The last value of a string flag in `args` (`--name=v` or `--name v`; `_` read as `-`,
/// as kube-proxy's flag set normalises names), with the flag as written.
fn string_flag(args: &[String], name: &str) -> Option<(String, String)> {
    let mut last = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(long) = arg.strip_prefix("--") else {
            continue;
        };
        let (flag, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        if flag.replace('_', "-") != name {
            continue;
        }
        match inline {
            Some(v) => last = Some((v, arg.clone())),
            None => {
                if let Some(v) = args.get(i) {
                    last = Some((v.clone(), format!("{arg} {v}")));
                    i += 1;
                }
            }
        }
    }
    last
}

/// The kube-proxy kubeconfig: from the one kube-proxy running on the node, when it runs on
/// the host. A kube-proxy in a container (the kubeadm DaemonSet) reads its kubeconfig from
/// its pod's volumes, which are not host files.
fn proxy_kubeconfig(proc_dir: &Path) -> FileSet {
    let proxies = find_named(proc_dir, "kube-proxy");
    let Some(proxy) = proxies.first() else {
        return FileSet::NotUsed(
            "no kube-proxy process runs on this node (a CNI that replaces it, such as Cilium's \
             kube-proxy replacement, or a node without it), so there is no proxy kubeconfig"
                .to_string(),
        );
    };
    let args = proxy.argv.get(1..).unwrap_or_default();
    let pid = proxy.pid;
    // With --config, nodeproof takes the file's clientConnection.kubeconfig (kubeadm's
    // kube-proxy runs with --config and --hostname-override only); without, --kubeconfig.
    let (path, why) = match string_flag(args, "config") {
        Some((config, written)) if !config.is_empty() => {
            let config = proxy.resolve(&config);
            let text = match proxy.read_file(&config) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    return FileSet::Unknown(format!(
                        "kube-proxy (pid {pid}) runs with {written}, which cannot be read: {e}"
                    ))
                }
            };
            match client_connection_kubeconfig(&text) {
                Ok(Some(k)) => (
                    k,
                    format!("kube-proxy (pid {pid}) {written}: clientConnection.kubeconfig"),
                ),
                Ok(None) => {
                    return FileSet::NotUsed(format!(
                        "kube-proxy (pid {pid}) runs with {written}, whose \
                         clientConnection.kubeconfig is empty: it uses its in-cluster \
                         service account, so there is no kubeconfig file"
                    ))
                }
                Err(e) => {
                    return FileSet::Unknown(format!(
                        "kube-proxy (pid {pid}): {config} is not readable as YAML: {e}"
                    ))
                }
            }
        }
        _ => match string_flag(args, "kubeconfig") {
            Some((k, written)) if !k.is_empty() => (k, format!("kube-proxy (pid {pid}) {written}")),
            _ => {
                return FileSet::NotUsed(format!(
                    "kube-proxy (pid {pid}) runs without --kubeconfig or --config: it uses its \
                     in-cluster service account, so there is no kubeconfig file"
                ))
            }
        },
    };
    let path = proxy.resolve(&path);
    let st = stat(proxy, &path);
    if in_container(proc_dir, pid) {
        let seen = match &st {
            Stat::Present(m) => format!(" (there: mode {:04o}, owner {}:{})", m.mode, m.uid, m.gid),
            _ => String::new(),
        };
        return FileSet::NotUsed(format!(
            "kube-proxy (pid {pid}) runs in a container (its root is not PID 1's), so its \
             kubeconfig {path}{seen} is a file of its pod (with kubeadm, a ConfigMap volume \
             whose mode the pod's defaultMode sets), not a file on the host; CIS 4.1.3/4.1.4 \
             concern a kubeconfig on the host"
        ));
    }
    FileSet::Files(vec![Watched {
        path,
        why,
        source: None,
        stat: st,
    }])
}

/// `clientConnection.kubeconfig` of a KubeProxyConfiguration; `None` when unset or empty.
fn client_connection_kubeconfig(text: &str) -> Result<Option<String>, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let value = docs
        .first()
        .map(|d| d["clientConnection"]["kubeconfig"].clone());
    Ok(value
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty()))
}

/// Whether process `pid` has a root other than PID 1's (a container). When either cannot
/// be read, it is taken as the host's.
fn in_container(proc_dir: &Path, pid: i32) -> bool {
    let id = |p: &str| {
        fs::metadata(proc_dir.join(p).join("root"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    match (id(&pid.to_string()), id("1")) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_from_cgroup_v2_and_v1() {
        assert_eq!(
            service_from_cgroup("0::/system.slice/kubelet.service\n"),
            Ok("kubelet.service".to_string())
        );
        let v1 = "12:pids:/system.slice/kubelet.service\n\
                  1:name=systemd:/system.slice/kubelet.service\n\
                  0::/\n";
        assert_eq!(service_from_cgroup(v1), Ok("kubelet.service".to_string()));
        // kind: the node container's own systemd runs the kubelet.
        assert_eq!(
            service_from_cgroup(
                "0::/system.slice/docker-0123.scope/kubelet.slice/kubelet.service\n"
            ),
            Ok("kubelet.service".to_string())
        );
        assert_eq!(
            service_from_cgroup("0::/system.slice/docker-0123.scope\n"),
            Err("/system.slice/docker-0123.scope".to_string())
        );
        assert!(service_from_cgroup("").is_err());
    }

    #[test]
    fn dropin_dirs_follow_systemd() {
        assert_eq!(
            dropin_dir_names("rke2-server.service"),
            ["service.d", "rke2-.service.d", "rke2-server.service.d"]
        );
        assert_eq!(
            dropin_dir_names("kubelet.service"),
            ["service.d", "kubelet.service.d"]
        );
    }

    #[test]
    fn string_flags_as_pflag_reads_them() {
        let args: Vec<String> = [
            "--kubeconfig",
            "/a",
            "--v=2",
            "--kube_config=x",
            "--kubeconfig=/b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            string_flag(&args, "kubeconfig"),
            Some(("/b".to_string(), "--kubeconfig=/b".to_string()))
        );
        assert_eq!(string_flag(&args[..2], "kubeconfig").unwrap().0, "/a");
        assert_eq!(string_flag(&args, "config"), None);
    }

    #[test]
    fn kube_proxy_config_names_its_kubeconfig() {
        let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
                    clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n";
        assert_eq!(
            client_connection_kubeconfig(text),
            Ok(Some("/var/lib/kube-proxy/kubeconfig.conf".to_string()))
        );
        assert_eq!(
            client_connection_kubeconfig("clientConnection:\n  kubeconfig: \"\"\n"),
            Ok(None)
        );
        assert!(client_connection_kubeconfig("a: [").is_err());
    }
}
