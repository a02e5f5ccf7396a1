//! Finding the running kubelet in /proc, and reading the files it really uses.
//!
//! This is the only module that reads /proc or the kubelet's files. Everything else in the
//! agent works on the values it returns, so that the rest can be tested on plain values.
//!
//! Three ideas shape it:
//!
//! - **The process table is the truth.** We do not guess where a distribution keeps its
//!   config: we find the kubelet that is running, and read its argv.
//! - **Files are read through the kubelet's own root** (`/proc/<pid>/root`), so a kubelet in
//!   a container (kind, Talos) or in a chroot is read as it sees its files, and so is an agent
//!   that runs in a pod with the host's /proc mounted. Symbolic links inside that root are
//!   resolved by us, component by component, relative to that root (like
//!   `openat2(RESOLVE_IN_ROOT)`): an absolute link `/etc/kubernetes -> /opt/k8s` must land on
//!   the kubelet's `/opt/k8s`, not the host's, and `..` never climbs out of the root.
//! - **Walking a drop-in directory copies Go's `filepath.WalkDir`**, which is what the
//!   kubelet uses, so the order in which drop-ins apply is the kubelet's order.
//!
//! Tests run all of this on a fake /proc laid out on disk by [`crate::fakeproc`], through the
//! same procfs calls and the same file reads as on a real node.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nodeproof_proto::NodeFacts;
use procfs::process::Process;
use procfs::ProcError;
use sha2::{Digest, Sha256};

mod rootfs;
use rootfs::{not_regular, RootFs};

/// Symbolic links followed while resolving one path before we give up, as Linux does
/// (`MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Largest file [`KubeletProcess::read_file`] returns. Kubelet configs, kubeconfigs and CA
/// bundles are kilobytes; anything this large is not one, and reading it whole would only
/// cost memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Most entries [`KubeletProcess::walk_dir`] returns, and deepest directory it enters. The
/// kubelet has no such limits; a drop-in directory that reaches them is not a drop-in
/// directory, and the limits keep a hostile tree from exhausting the agent.
pub const MAX_WALK_ENTRIES: usize = 10_000;
pub const MAX_WALK_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why the kubelet could not be found. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The process table itself could not be read.
    #[error(
        "cannot list the processes in {}: {cause}. Pass --proc with the path of the host's \
         /proc (in a pod: mount the host's /proc with a hostPath volume and set hostPID: true)",
        proc_dir.display()
    )]
    ProcUnreadable { proc_dir: PathBuf, cause: String },

    /// No process looked like a kubelet.
    #[error("{}", not_found_message(proc_dir, *scanned, *unreadable))]
    NotFound {
        proc_dir: PathBuf,
        /// Processes whose command line was read.
        scanned: usize,
        /// Processes that were listed but could not be read (permission denied).
        unreadable: usize,
    },

    /// More than one kubelet, and no `--pid` to choose.
    #[error(
        "several kubelets are running (pids {}); pass --pid with the one to check (`scan \
         --all` checks each)",
        join_pids(.0)
    )]
    Several(Vec<i32>),

    /// A distribution that runs the kubelet inside another process (k3s, microk8s).
    #[error(
        "process {pid} is {what}: this distribution runs the kubelet in-process, so the \
         kubelet has no command line of its own (`nodeproof-agent scan` reads its settings \
         through the distribution's files)"
    )]
    Unsupported { pid: i32, what: String },

    /// `--pid N` named a process that does not exist (or exited).
    #[error(
        "--pid {pid}: there is no process {pid} in {} (it may have exited, or {} is not the \
         /proc of the host the kubelet runs on; pass --proc)",
        proc_dir.display(), proc_dir.display()
    )]
    NoSuchProcess { pid: i32, proc_dir: PathBuf },

    /// `--pid N` named a process that is not a kubelet.
    #[error(
        "--pid {pid} is {what}, not a kubelet (nodeproof takes a process whose comm or argv[0] \
         file name is `kubelet`, or `hyperkube kubelet ...`); leave out --pid to search for it"
    )]
    NotKubelet { pid: i32, what: String },

    /// `--pid N` named a process whose command line could not be read.
    #[error(
        "--pid {pid}: cannot read the command line of process {pid} in {}: {cause} (run \
         nodeproof as root)",
        proc_dir.display()
    )]
    ProcessUnreadable {
        pid: i32,
        proc_dir: PathBuf,
        cause: String,
    },
}

fn not_found_message(proc_dir: &Path, scanned: usize, unreadable: usize) -> String {
    let mut msg = format!(
        "no kubelet is running according to {dir}: looked at {scanned} processes for one whose \
         comm or argv[0] file name is `kubelet`, or that runs `hyperkube kubelet`. Check that \
         {dir} is the host's /proc: in a pod, mount the host's /proc with a hostPath volume, \
         set hostPID: true, and pass --proc with where it is mounted",
        dir = proc_dir.display(),
    );
    if unreadable > 0 {
        msg.push_str(&format!(
            ". {unreadable} processes could not be read (permission denied): run nodeproof as \
             root, and check that /proc is not mounted with hidepid"
        ));
    }
    msg
}

fn join_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A file of the kubelet that could not be read: the path as the kubelet names it, the path
/// on this host we tried to read it through, and why.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read {path} as the kubelet (pid {pid}) sees it ({} on this host): {cause}",
    host_path.display()
)]
pub struct ReadError {
    pub pid: i32,
    /// The path inside the kubelet's root, as it was asked for.
    pub path: String,
    /// Where on this host the failure happened (below `/proc/<pid>/root`).
    pub host_path: PathBuf,
    pub cause: ReadCause,
}

impl ReadError {
    /// The file (or a directory on its way) does not exist. The kubelet refuses to start on
    /// a missing `--config` or `--config-dir`, so callers often need to tell this apart.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.cause, ReadCause::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// The reason inside a [`ReadError`].
#[derive(Debug, thiserror::Error)]
pub enum ReadCause {
    #[error("{}", io_message(.0))]
    Io(io::Error),
    #[error("{component} is not a directory")]
    NotADirectory { component: String },
    #[error(
        "more than {MAX_SYMLINK_HOPS} symbolic links (a loop?) while resolving it inside the \
         kubelet's root"
    )]
    SymlinkLoop,
    #[error("it is a directory, not a file")]
    IsDirectory,
    #[error("it is a {kind}, not a regular file; nodeproof only reads regular files")]
    NotRegular { kind: &'static str },
    #[error("it is larger than {limit} bytes, too large to be a kubelet file")]
    TooLarge { limit: u64 },
    #[error("it was replaced while nodeproof opened it; run the scan again")]
    Changed,
    #[error(
        "the directory tree is larger than nodeproof walks ({MAX_WALK_ENTRIES} entries, depth \
         {MAX_WALK_DEPTH})"
    )]
    TreeTooLarge,
}

fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "{e} (run nodeproof as root; in a pod it needs hostPID and the privileges to read \
             /proc/<pid>/root)"
        ),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The kubelet process
// ---------------------------------------------------------------------------------------

/// The running kubelet, as found in /proc.
///
/// All fields are plain values, so tests elsewhere can build one by hand around a fake
/// /proc. The methods read through `proc_dir/<pid>/root` at the time they are called; if the
/// kubelet exits (or its pid is reused) in between, they read whatever is there then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletProcess {
    pub pid: i32,
    /// `/proc/<pid>/comm` (at most 15 bytes, as the kernel truncates it).
    pub comm: String,
    /// The kubelet's own argv: `argv[0]` is the kubelet, the rest its arguments. For
    /// `hyperkube kubelet ...`, the leading `hyperkube` is dropped.
    pub argv: Vec<String>,
    /// The process's argv exactly as /proc shows it (with `hyperkube`, if any).
    pub cmdline: Vec<String>,
    /// The /proc it was found in.
    pub proc_dir: PathBuf,
    /// The working directory, as a path inside the kubelet's root (see [`inside_root`] for
    /// how); `None` if `/proc/<pid>/cwd` could not be read.
    pub cwd: Option<String>,
}

impl KubeletProcess {
    /// `proc_dir/<pid>`.
    fn pid_dir(&self) -> PathBuf {
        self.proc_dir.join(self.pid.to_string())
    }

    /// The process's environment as `/proc/<pid>/environ` holds it (what it was started
    /// with): `NAME=value` entries separated by NULs. Read with the same privilege as its
    /// root; at most [`MAX_FILE_BYTES`].
    pub fn environ(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(self.pid_dir().join("environ"))?
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// `proc_dir/<pid>/root`: the kubelet's `/`, as seen from here.
    pub fn root(&self) -> PathBuf {
        self.pid_dir().join("root")
    }

    /// The absolute, cleaned path the kubelet opens for `path`: a relative path is joined to
    /// its working directory (as Go's `filepath.Abs` does), and `.`/`..` are removed
    /// lexically (`filepath.Clean`). Without a readable cwd, relative paths are taken against
    /// `/`, which is where systemd starts services.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            clean(path)
        } else {
            let cwd = self.cwd.as_deref().unwrap_or("/");
            clean(&format!("{cwd}/{path}"))
        }
    }

    fn root_fs(&self) -> RootFs {
        RootFs {
            pid: self.pid,
            root: self.root(),
        }
    }

    /// Reads the file at `path` inside the kubelet's root.
    ///
    /// `path` is absolute inside that root (a relative one is first made absolute with
    /// [`resolve`](Self::resolve)). Every component is resolved inside the root: a symbolic
    /// link is read and its target followed relative to the kubelet's `/` (absolute targets)
    /// or to the link's directory (relative ones), `..` goes to the physical parent and
    /// stops at the kubelet's `/`, and at most [`MAX_SYMLINK_HOPS`] links are followed.
    /// Only regular files are read (a FIFO would block us forever), up to
    /// [`MAX_FILE_BYTES`].
    ///
    /// A race remains: a directory swapped for a symlink between our check and the open is
    /// followed by the kernel. The final open is checked against the inode we resolved, so
    /// a file swapped at the last step is reported as [`ReadCause::Changed`]. Whoever can swap
    /// files in the kubelet's root can rewrite its config anyway.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let abs = self.resolve_relative(path);
        self.root_fs().read_file(&abs)
    }

    /// Every entry below `dir` that is not a directory, recursively, as paths inside the
    /// kubelet's root, in the order Go's `filepath.WalkDir` visits them: depth first, the
    /// names of each directory sorted bytewise. The caller applies the kubelet's filter.
    ///
    /// Why not only regular files: the kubelet's drop-in filter
    /// (`cmd/kubelet/app/server.go`, `mergeKubeletConfigurations`) is
    /// `!info.IsDir() && filepath.Ext(info.Name()) == ".conf"`, where `info` is WalkDir's
    /// `DirEntry`, whose type comes from lstat. So a symlink named `x.conf` counts whatever
    /// it points to, and the kubelet then reads it following the link: a link to a file is
    /// applied, a link to a directory makes the kubelet fail. WalkDir never descends into a
    /// symlinked directory. A directory named `x.conf` is entered, not loaded. Reading an
    /// entry with [`read_file`](Self::read_file) then behaves as the kubelet's read does.
    ///
    /// Like WalkDir, `dir` itself is looked up with lstat: if it is a symlink (even to a
    /// directory) or a file, the walk visits just `dir` and returns it, which is what the
    /// kubelet applies (for a symlinked `--config-dir` whose name does not end in `.conf`:
    /// nothing at all). A trailing `/` makes the lookup follow a final symlink, as lstat
    /// does. A missing `dir` is an error, as it is for the kubelet, and so is a directory
    /// below it that cannot be read. Names that are not UTF-8 come back with U+FFFD in
    /// them (and then cannot be read back).
    pub fn walk_dir(&self, dir: &str) -> Result<Vec<String>, ReadError> {
        let abs = self.resolve_relative(dir);
        let follow_last = dir.len() > 1 && dir.ends_with('/');
        self.root_fs().walk_dir(&abs, follow_last)
    }

    /// The kubelet's executable as `/proc/<pid>/exe` names it (expressed inside the
    /// kubelet's root, like `cwd`), its SHA-256, and the version its build stamped into it
    /// (Kubernetes builds set `-X 'k8s.io/component-base/version.gitVersion=v1.31.4'`;
    /// see [`crate::exe_version`] for how it is found on stripped `-trimpath` release
    /// binaries), read in the same pass.
    ///
    /// The bytes are read by opening `/proc/<pid>/exe` itself, which is the binary that is
    /// running even when the file on disk was replaced or deleted since (its name then ends
    /// in ` (deleted)`). The file is streamed, never held whole.
    pub fn exe_info(&self) -> Result<ExeInfo, ReadError> {
        let link = self.pid_dir().join("exe");
        let err = |name: &str, host: &Path, cause| ReadError {
            pid: self.pid,
            path: name.to_string(),
            host_path: host.to_path_buf(),
            cause,
        };
        let name = match fs::read_link(&link) {
            Ok(target) => inside_root(&target, &root_prefixes(&self.root())),
            Err(e) => return Err(err("the kubelet's executable", &link, ReadCause::Io(e))),
        };
        let mut file = File::open(&link).map_err(|e| err(&name, &link, ReadCause::Io(e)))?;
        let meta = file
            .metadata()
            .map_err(|e| err(&name, &link, ReadCause::Io(e)))?;
        if meta.is_dir() {
            return Err(err(&name, &link, ReadCause::IsDirectory));
        }
        if !meta.is_file() {
            return Err(err(&name, &link, not_regular(&meta.file_type())));
        }
        // A long-running agent hashes the same binary every interval: a real kubelet is
        // about 100 MiB, half a second of CPU. The inode, size and change time identify
        // the bytes (ctime cannot be set from user space and moves on every write), so a
        // digest computed once per running binary is reused.
        let identity = {
            use std::os::unix::fs::MetadataExt;
            (
                meta.dev(),
                meta.ino(),
                meta.size(),
                meta.ctime(),
                meta.ctime_nsec(),
            )
        };
        if let Some((sha256, version)) = exe_cache_get(identity) {
            return Ok(ExeInfo {
                path: name,
                sha256,
                version,
            });
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut version = crate::exe_version::VersionScanner::default();
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    version.feed(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(&name, &link, ReadCause::Io(e))),
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        let version = version.finish();
        exe_cache_put(identity, (sha256.clone(), version.clone()));
        Ok(ExeInfo {
            path: name,
            sha256,
            version,
        })
    }

    /// The metadata of what the kubelet opens at `path`, found as
    /// [`read_file`](Self::read_file) finds it (symbolic links followed inside its root), and
    /// the path inside the root the links led to. For the permission checks (CIS 4.1): the
    /// mode and owner that matter are those of the file the kubelet reads, not of a link.
    pub fn stat(&self, path: &str) -> Result<(fs::Metadata, String), ReadError> {
        let abs = self.resolve_relative(path);
        let resolved = self.root_fs().resolve(&abs, true)?;
        let names: Vec<String> = resolved
            .parts
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        Ok((resolved.meta().clone(), format!("/{}", names.join("/"))))
    }

    /// Process `pid` of `proc_dir` with this comm and command line, read the way the
    /// kubelet is (its cwd expressed inside its root), for reading another component's files
    /// (kube-proxy, kube-apiserver) through its own root.
    pub fn of_process(proc_dir: &Path, pid: i32, comm: String, cmdline: Vec<String>) -> Self {
        build(proc_dir, pid, comm, cmdline, 0)
    }

    fn resolve_relative(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            self.resolve(path)
        }
    }
}

/// The roots a link target from `/proc/<pid>/{cwd,exe}` may start with, when that target is
/// expressed on the reader's side rather than inside the process's root.
fn root_prefixes(root_link: &Path) -> Vec<PathBuf> {
    let mut prefixes = Vec::new();
    if let Ok(t) = fs::read_link(root_link) {
        prefixes.push(t);
    }
    if let Ok(c) = fs::canonicalize(root_link) {
        prefixes.push(c);
    }
    prefixes.retain(|p| p.is_absolute() && p != Path::new("/"));
    prefixes.dedup();
    prefixes
}

/// Expresses a link target read from `/proc/<pid>/cwd` (or `exe`) as a path inside the
/// process's root.
///
/// The kernel prints these links relative to the *reader's* root when it can reach the
/// target from there, and relative to the target's mount namespace otherwise:
/// - a kubelet in another mount namespace (a container; or the host's kubelet seen by an
///   agent in a pod): `root` reads `/`, `cwd` reads the path inside the kubelet's root.
///   Nothing to strip.
/// - a kubelet chrooted in our mount namespace: `root` reads `/srv/root` and `cwd` reads
///   `/srv/root/var/lib/kubelet`. Stripping the root gives `/var/lib/kubelet`.
/// - a fake /proc ([`crate::fakeproc`]): `root` is a symlink to a fixture directory and `cwd`
///   a symlink to a directory under it, which is the chroot case again. We also try the
///   canonical form of the root, in case the fixture path goes through a symlink.
///
/// A target outside every root prefix is returned as is (a chrooted process whose cwd was
/// left outside its root; its relative paths cannot be expressed inside the root).
pub fn inside_root(target: &Path, root_prefixes: &[PathBuf]) -> String {
    for prefix in root_prefixes {
        if let Ok(rest) = target.strip_prefix(prefix) {
            return format!("/{}", rest.to_string_lossy());
        }
    }
    target.to_string_lossy().into_owned()
}

/// Go's `filepath.Clean` for absolute paths: one `/` between components, no `.`, `..`
/// removes the component before it and stops at `/`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

// ---------------------------------------------------------------------------------------
// Finding the kubelet
// ---------------------------------------------------------------------------------------

/// What a process is, for our purposes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A kubelet; its own argv starts at this index of the process's argv.
    Kubelet {
        argv_start: usize,
    },
    /// A distribution that runs the kubelet inside this process.
    InProcess(Embedded),
    Other,
}

/// A distribution that runs the kubelet inside one of its own processes, where the kubelet's
/// arguments are not on any command line ([`crate::sources`] reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedded {
    /// `k3s server` or `k3s agent` (comm `k3s-server`, `k3s-agent`).
    K3s,
    /// microk8s' `kubelite`.
    Microk8s,
}

/// A process that runs a kubelet: a kubelet process, or a distribution's process with the
/// kubelet inside ([`Embedded`]; its [`KubeletProcess::argv`] is then the whole command
/// line of that process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub process: KubeletProcess,
    pub embedded: Option<Embedded>,
}

fn basename(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

/// Decides from comm and argv alone. A process that merely mentions the kubelet in its
/// arguments (`grep kubelet`, `sh -c "kubelet ..."`, `kubelet-healthcheck`) is not one: the
/// executable's own name must be exactly `kubelet`.
fn classify(comm: &str, argv: &[String]) -> Kind {
    let Some(arg0) = argv.first() else {
        // Kernel threads and zombies have no command line.
        return Kind::Other;
    };
    let base = basename(arg0);
    if base == "hyperkube" && argv.get(1).map(String::as_str) == Some("kubelet") {
        return Kind::Kubelet { argv_start: 1 };
    }
    if comm == "kubelet" || base == "kubelet" {
        return Kind::Kubelet { argv_start: 0 };
    }
    if comm == "k3s-server" || comm == "k3s-agent" {
        return Kind::InProcess(Embedded::K3s);
    }
    if base == "k3s" {
        if let Some("server" | "agent") = argv.get(1).map(String::as_str) {
            return Kind::InProcess(Embedded::K3s);
        }
    }
    if comm == "kubelite" || base == "kubelite" {
        return Kind::InProcess(Embedded::Microk8s);
    }
    Kind::Other
}

/// A short, readable description of a process for error messages.
fn describe(comm: &str, argv: &[String]) -> String {
    if argv.is_empty() {
        return format!("`{comm}`, with an empty command line (a kernel thread or a zombie)");
    }
    let mut line = argv.join(" ");
    if line.chars().count() > 120 {
        line = line.chars().take(117).collect::<String>() + "...";
    }
    format!("`{comm}` ({line})")
}

/// Splits `/proc/<pid>/cmdline` into argv: each argument is NUL-terminated; empty
/// arguments are kept (`--node-labels ""` matters to a flag parser). Bytes that are not
/// UTF-8 are replaced.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    if raw.is_empty() {
        return Vec::new();
    }
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn read_cmdline(p: &Process) -> Result<Vec<String>, ProcError> {
    let mut raw = Vec::new();
    p.open_relative("cmdline")?.read_to_end(&mut raw)?;
    Ok(split_cmdline(&raw))
}

fn read_comm(p: &Process) -> String {
    let mut raw = Vec::new();
    match p
        .open_relative("comm")
        .and_then(|mut f| Ok(f.read_to_end(&mut raw)?))
    {
        Ok(_) => String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(&raw)).into_owned(),
        Err(_) => String::new(),
    }
}

/// The process exited while we looked at it: not an error, just gone.
fn vanished(e: &ProcError) -> bool {
    const ESRCH: i32 = 3;
    match e {
        ProcError::NotFound(_) => true,
        ProcError::Io(e, _) => e.raw_os_error() == Some(ESRCH),
        _ => false,
    }
}

fn build(
    proc_dir: &Path,
    pid: i32,
    comm: String,
    cmdline: Vec<String>,
    argv_start: usize,
) -> KubeletProcess {
    let pid_dir = proc_dir.join(pid.to_string());
    let cwd = fs::read_link(pid_dir.join("cwd"))
        .ok()
        .map(|target| inside_root(&target, &root_prefixes(&pid_dir.join("root"))));
    KubeletProcess {
        pid,
        comm,
        argv: cmdline.get(argv_start..).unwrap_or_default().to_vec(),
        cmdline,
        proc_dir: proc_dir.to_path_buf(),
        cwd,
    }
}

/// Finds the running kubelet in `proc_dir` (normally `/proc`; the host's /proc mounted
/// elsewhere when the agent runs in a pod).
///
/// The kubelet is the process whose comm is `kubelet`, or whose argv\[0\] file name is
/// `kubelet`, or which runs `hyperkube kubelet ...`. With `pid`, that process must be one;
/// without, exactly one must be running. k3s and microk8s, which run the kubelet inside
/// another process, are reported as [`FindError::Unsupported`] when no separate kubelet
/// runs: their kubelet has no command line to read here (the scan reads them through
/// [`find_candidates`] and [`crate::sources`]). Processes that exit or cannot be read
/// during the scan are skipped.
///
/// Two kubelets may briefly appear when the kubelet forks a child that has not yet exec'd;
/// scanning again, or `--pid`, settles it.
pub fn find_kubelet(proc_dir: &Path, pid: Option<i32>) -> Result<KubeletProcess, FindError> {
    let candidates = find_candidates(proc_dir, pid)?;
    let (kubelets, embedded): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| c.embedded.is_none());
    if kubelets.len() > 1 {
        return Err(FindError::Several(
            kubelets.iter().map(|c| c.process.pid).collect(),
        ));
    }
    if let Some(k) = kubelets.into_iter().next() {
        return Ok(k.process);
    }
    match embedded.into_iter().next() {
        Some(c) => Err(FindError::Unsupported {
            pid: c.process.pid,
            what: describe_embedded(&c),
        }),
        // find_candidates never returns an empty list.
        None => Err(FindError::NotFound {
            proc_dir: proc_dir.to_path_buf(),
            scanned: 0,
            unreadable: 0,
        }),
    }
}

fn describe_embedded(c: &Candidate) -> String {
    match c.embedded {
        Some(Embedded::K3s) => format!("k3s (comm `{}`)", c.process.comm),
        Some(Embedded::Microk8s) => "microk8s' kubelite".to_string(),
        None => format!("`{}`", c.process.comm),
    }
}

/// Every process in `proc_dir` that runs a kubelet, in pid order: kubelet processes and
/// the processes of distributions that run the kubelet inside them. With `pid`, that one
/// process, which must be one. Never empty: no candidate is [`FindError::NotFound`].
pub fn find_candidates(proc_dir: &Path, pid: Option<i32>) -> Result<Vec<Candidate>, FindError> {
    if let Err(e) = fs::read_dir(proc_dir) {
        return Err(FindError::ProcUnreadable {
            proc_dir: proc_dir.to_path_buf(),
            cause: e.to_string(),
        });
    }
    match pid {
        Some(pid) => find_pid(proc_dir, pid).map(|c| vec![c]),
        None => scan(proc_dir),
    }
}

fn find_pid(proc_dir: &Path, pid: i32) -> Result<Candidate, FindError> {
    let no_such = || FindError::NoSuchProcess {
        pid,
        proc_dir: proc_dir.to_path_buf(),
    };
    let unreadable = |e: ProcError| FindError::ProcessUnreadable {
        pid,
        proc_dir: proc_dir.to_path_buf(),
        cause: e.to_string(),
    };
    if pid <= 0 {
        return Err(no_such());
    }
    let process = match Process::new_with_root(proc_dir.join(pid.to_string())) {
        Ok(p) => p,
        Err(e) if vanished(&e) => return Err(no_such()),
        Err(e) => return Err(unreadable(e)),
    };
    let cmdline = match read_cmdline(&process) {
        Ok(c) => c,
        Err(e) if vanished(&e) => return Err(no_such()),
        Err(e) => return Err(unreadable(e)),
    };
    let comm = read_comm(&process);
    match classify(&comm, &cmdline) {
        Kind::Kubelet { argv_start } => Ok(Candidate {
            process: build(proc_dir, pid, comm, cmdline, argv_start),
            embedded: None,
        }),
        Kind::InProcess(embedded) => Ok(Candidate {
            process: build(proc_dir, pid, comm, cmdline, 0),
            embedded: Some(embedded),
        }),
        Kind::Other => Err(FindError::NotKubelet {
            pid,
            what: describe(&comm, &cmdline),
        }),
    }
}

fn scan(proc_dir: &Path) -> Result<Vec<Candidate>, FindError> {
    let processes = procfs::process::all_processes_with_root(proc_dir).map_err(|e| {
        FindError::ProcUnreadable {
            proc_dir: proc_dir.to_path_buf(),
            cause: e.to_string(),
        }
    })?;
    let mut found: Vec<Candidate> = Vec::new();
    let (mut scanned, mut unreadable) = (0usize, 0usize);
    let mut listing_error: Option<String> = None;
    for process in processes {
        let process = match process {
            Ok(p) => p,
            Err(e) if vanished(&e) => continue,
            // procfs gives per-process errors with the process's path; an error without
            // one comes from listing the directory itself.
            Err(ProcError::Io(e, None)) => {
                listing_error = Some(e.to_string());
                continue;
            }
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let cmdline = match read_cmdline(&process) {
            Ok(c) => c,
            Err(e) if vanished(&e) => continue,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        scanned += 1;
        if cmdline.is_empty() {
            continue;
        }
        let comm = read_comm(&process);
        let pid = process.pid();
        match classify(&comm, &cmdline) {
            Kind::Kubelet { argv_start } => found.push(Candidate {
                process: build(proc_dir, pid, comm, cmdline, argv_start),
                embedded: None,
            }),
            Kind::InProcess(embedded) => found.push(Candidate {
                process: build(proc_dir, pid, comm, cmdline, 0),
                embedded: Some(embedded),
            }),
            Kind::Other => {}
        }
    }
    found.sort_by_key(|c| c.process.pid);
    if !found.is_empty() {
        return Ok(found);
    }
    if let Some(cause) = listing_error {
        return Err(FindError::ProcUnreadable {
            proc_dir: proc_dir.to_path_buf(),
            cause,
        });
    }
    Err(FindError::NotFound {
        proc_dir: proc_dir.to_path_buf(),
        scanned,
        unreadable,
    })
}

// ---------------------------------------------------------------------------------------
// Node facts
// ---------------------------------------------------------------------------------------

/// Facts about the node, each `None` when it cannot be read. Never fails.
///
/// - `hostname`: `proc_dir/sys/kernel/hostname`. This is the UTS namespace of the *reader*:
///   in a pod it is the node's name only with `hostNetwork: true` (which shares the host's
///   UTS namespace); otherwise it is the pod's.
/// - `kernel`: `proc_dir/sys/kernel/osrelease` (one kernel per node, no namespace).
/// - `boot_time`: the `btime` line of `proc_dir/stat`, as RFC 3339 UTC.
/// - `os`: `PRETTY_NAME` from the os-release of PID 1's root (`proc_dir/1/root`,
///   `/etc/os-release`, then `/usr/lib/os-release` as the os-release spec says), read with
///   the same in-root resolution as the kubelet's files, since `/etc/os-release` is usually
///   a symlink. PID 1 is the host's init even when the agent runs in a pod with the host's
///   /proc and hostPID. There is deliberately no fallback to the agent's own
///   `/etc/os-release`: in a pod that names the agent's image, not the node.
pub fn node_facts(proc_dir: &Path) -> NodeFacts {
    let one_line = |rel: &str| -> Option<String> {
        let text = fs::read_to_string(proc_dir.join(rel)).ok()?;
        let line = text.trim();
        (!line.is_empty()).then(|| line.to_string())
    };
    NodeFacts {
        hostname: one_line("sys/kernel/hostname"),
        kernel: one_line("sys/kernel/osrelease"),
        boot_time: fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(|s| boot_time(&s)),
        os: host_os(proc_dir),
    }
}

fn boot_time(stat: &str) -> Option<String> {
    let secs = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<i64>().ok())?;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn host_os(proc_dir: &Path) -> Option<String> {
    let init_root = RootFs {
        pid: 1,
        root: proc_dir.join("1").join("root"),
    };
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| init_root.read_file(p).ok())
        .and_then(|bytes| os_pretty_name(&String::from_utf8_lossy(&bytes)))
}

/// `PRETTY_NAME` from an os-release file (shell-style assignments), or `NAME VERSION`
/// when it has none.
pub fn os_pretty_name(text: &str) -> Option<String> {
    let vars: HashMap<&str, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), unquote(v.trim())))
        .collect();
    let non_empty = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
    non_empty("PRETTY_NAME").or_else(|| {
        let name = non_empty("NAME")?;
        Some(match non_empty("VERSION") {
            Some(v) => format!("{name} {v}"),
            None => name,
        })
    })
}

/// Undoes os-release quoting: `"..."` with `\"`, `\\`, `\$`, `` \` `` escapes, `'...'`
/// literally, bare words with backslash escapes.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    let (inner, quoted) = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        (&v[1..v.len() - 1], true)
    } else {
        (v, false)
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
            Some(n) if !quoted => out.push(n),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl fmt::Display for KubeletProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kubelet (pid {}): {}", self.pid, self.argv.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn classify_kubelets_and_decoys() {
        assert_eq!(
            classify("kubelet", &s(&["kubelet"])),
            Kind::Kubelet { argv_start: 0 }
        );
        assert_eq!(
            classify("x", &s(&["/usr/bin/kubelet", "--v=2"])),
            Kind::Kubelet { argv_start: 0 }
        );
        assert_eq!(
            classify("hyperkube", &s(&["/hyperkube", "kubelet"])),
            Kind::Kubelet { argv_start: 1 }
        );
        assert_eq!(
            classify("hyperkube", &s(&["/hyperkube", "kube-proxy"])),
            Kind::Other
        );
        assert_eq!(classify("grep", &s(&["grep", "kubelet"])), Kind::Other);
        assert_eq!(
            classify("sh", &s(&["/bin/sh", "-c", "kubelet --v=2"])),
            Kind::Other
        );
        assert_eq!(
            classify(
                "kubelet-healthc",
                &s(&["/usr/local/bin/kubelet-healthcheck"])
            ),
            Kind::Other
        );
        assert_eq!(
            classify("kubelet-wrapper", &s(&["/usr/bin/kubelet-wrapper"])),
            Kind::Other
        );
        assert_eq!(classify("kubelet", &[]), Kind::Other);
        assert!(matches!(
            classify("k3s-server", &s(&["/usr/local/bin/k3s", "server"])),
            Kind::InProcess(..)
        ));
        assert!(matches!(
            classify("k3s", &s(&["k3s", "agent"])),
            Kind::InProcess(..)
        ));
        assert_eq!(classify("k3s", &s(&["k3s", "kubectl"])), Kind::Other);
        assert!(matches!(
            classify("kubelite", &s(&["/snap/microk8s/x/kubelite"])),
            Kind::InProcess(..)
        ));
    }

    #[test]
    fn cmdline_keeps_empty_arguments() {
        assert_eq!(split_cmdline(b""), Vec::<String>::new());
        assert_eq!(split_cmdline(b"a\0--x\0\0b\0"), s(&["a", "--x", "", "b"]));
        assert_eq!(split_cmdline(b"no-terminator"), s(&["no-terminator"]));
    }

    #[test]
    fn clean_is_go_clean_for_absolute_paths() {
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/a/b/../../../c"), "/c");
        assert_eq!(clean("/.."), "/");
    }

    #[test]
    fn inside_root_strips_only_whole_components() {
        let p = vec![PathBuf::from("/x/rootfs")];
        assert_eq!(inside_root(Path::new("/x/rootfs/var/lib"), &p), "/var/lib");
        assert_eq!(inside_root(Path::new("/x/rootfs"), &p), "/");
        assert_eq!(inside_root(Path::new("/x/rootfs2/a"), &p), "/x/rootfs2/a");
        assert_eq!(inside_root(Path::new("/var/lib"), &[]), "/var/lib");
    }

    #[test]
    fn os_release_quoting() {
        assert_eq!(
            os_pretty_name("PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n"),
            Some("Ubuntu 22.04.4 LTS".into())
        );
        assert_eq!(
            os_pretty_name("PRETTY_NAME='a \"b\"'"),
            Some("a \"b\"".into())
        );
        assert_eq!(
            os_pretty_name("PRETTY_NAME=\"say \\\"hi\\\" \\$x\""),
            Some("say \"hi\" $x".into())
        );
        assert_eq!(
            os_pretty_name("# c\nNAME=Talos\nVERSION=v1.7\n"),
            Some("Talos v1.7".into())
        );
        assert_eq!(os_pretty_name("ID=x\n"), None);
    }

    #[test]
    fn boot_time_is_rfc3339_utc() {
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some("2023-11-14T22:13:20Z".into())
        );
        assert_eq!(boot_time("btime x\n"), None);
        assert_eq!(boot_time("btime 99999999999999999\n"), None);
    }
}

/// (device, inode, size, ctime seconds, ctime nanoseconds) of an executable.
type ExeIdentity = (u64, u64, u64, i64, i64);
type ExeDigest = (String, Option<String>);

/// The digests of executables hashed so far, by identity; a few entries at most (one per
/// kubelet binary this agent has seen), so it is cleared rather than evicted when full.
fn exe_cache() -> &'static std::sync::Mutex<std::collections::HashMap<ExeIdentity, ExeDigest>> {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<ExeIdentity, ExeDigest>>,
    > = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn exe_cache_get(id: ExeIdentity) -> Option<ExeDigest> {
    exe_cache().lock().ok()?.get(&id).cloned()
}

fn exe_cache_put(id: ExeIdentity, digest: ExeDigest) {
    if let Ok(mut cache) = exe_cache().lock() {
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(id, digest);
    }
}

/// The kubelet's executable as `/proc/<pid>/exe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeInfo {
    /// Its path inside the kubelet's root.
    pub path: String,
    pub sha256: String,
    /// The Kubernetes version stamped in at build time (`v1.31.4`), when found.
    pub version: Option<String>,
}

/// The minor version of a Kubernetes version string: 31 for `v1.31.4`.
pub fn kubelet_minor(version: &str) -> Option<u32> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?;
    let minor = parts.next()?;
    if major != "1" {
        return None;
    }
    minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn minor_versions() {
        assert_eq!(kubelet_minor("v1.31.4"), Some(31));
        assert_eq!(kubelet_minor("v1.32.0-rc.1"), Some(32));
        assert_eq!(kubelet_minor("v1.30.2+k3s1"), Some(30));
        assert_eq!(kubelet_minor("v2.0.0"), None);
        assert_eq!(kubelet_minor("garbage"), None);
    }
}
