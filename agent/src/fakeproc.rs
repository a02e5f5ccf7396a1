//! A fake /proc on disk, for tests and for the bundled sample node.
//!
//! Why it exists: the code that finds the kubelet and reads its files should be tested as it
//! runs on a node, through the real procfs crate and real file reads, not through a mock of
//! either. So instead of faking an interface, this lays out the files that procfs and
//! [`crate::process`] read, in a directory you then pass as `proc_dir`:
//!
//! ```text
//! <dir>/<pid>/comm      "kubelet\n"              (truncated to 15 bytes, as the kernel does)
//! <dir>/<pid>/cmdline   "kubelet\0--v=2\0"       (every argument NUL-terminated)
//! <dir>/<pid>/stat      "<pid> (kubelet) S 1 ..." (all 52 fields, parseable by procfs)
//! <dir>/<pid>/environ   "SNAP_DATA=/var/snap/microk8s/x1\0" (only when set)
//! <dir>/<pid>/cgroup    "0::/\n"                  (the root cgroup unless `cgroup` sets one)
//! <dir>/<pid>/root  ->  a directory standing for the process's `/`
//! <dir>/<pid>/cwd   ->  a directory under that root
//! <dir>/<pid>/exe   ->  a file standing for the executable
//! <dir>/<pid>/ns/net -> "net:[4026531840]"       (only when `netns` sets it)
//! <dir>/sys/kernel/{hostname,osrelease}, <dir>/stat (with `btime`)
//! ```
//!
//! `root`, `cwd` and `exe` are ordinary symlinks to host paths. That is how the kernel
//! shows them for a process chrooted into a directory of our mount namespace, and
//! [`crate::process`] handles that case (see [`crate::process::inside_root`]).
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use nodeproof_agent::fakeproc::FakeProc;
//! let tmp = std::path::Path::new("/tmp/example");
//! let proc_dir = tmp.join("proc");
//! let fake = FakeProc::new(&proc_dir)?;
//! fake.node("node-1", "6.1.0", 1_700_000_000)?;
//! fake.process(1, "systemd", &["/sbin/init"])?
//!     .root(&tmp.join("host"))?
//!     .file("/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")?;
//! fake.process(4242, "kubelet", &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"])?
//!     .root(&tmp.join("host"))?
//!     .file("/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n")?;
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A fake /proc being laid out in a directory.
#[derive(Debug, Clone)]
pub struct FakeProc {
    dir: PathBuf,
}

impl FakeProc {
    /// Uses `dir` as the fake /proc, creating it if needed.
    pub fn new(dir: &Path) -> io::Result<FakeProc> {
        fs::create_dir_all(dir)?;
        Ok(FakeProc {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory to pass as `proc_dir`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Adds (or replaces) process `pid` with this comm and argv. An empty argv is how the
    /// kernel shows kernel threads and zombies. Set its root, cwd and exe on the result.
    pub fn process(&self, pid: i32, comm: &str, argv: &[&str]) -> io::Result<FakeProcess> {
        let dir = self.dir.join(pid.to_string());
        fs::create_dir_all(&dir)?;
        let comm = truncate_comm(comm);
        fs::write(dir.join("comm"), format!("{comm}\n"))?;
        let mut cmdline = Vec::new();
        for arg in argv {
            cmdline.extend_from_slice(arg.as_bytes());
            cmdline.push(0);
        }
        fs::write(dir.join("cmdline"), cmdline)?;
        // The root cgroup, which names no systemd service; `cgroup` sets another.
        fs::write(dir.join("cgroup"), "0::/\n")?;
        let process = FakeProcess {
            pid,
            comm: comm.to_string(),
            dir,
            root: None,
        };
        process.write_stat('S')?;
        Ok(process)
    }

    /// Writes the node-wide files [`crate::process::node_facts`] reads: the hostname, the
    /// kernel release and `/proc/stat` with this boot time (seconds since the epoch). The
    /// OS name comes from PID 1's root: add a process 1 with a root holding
    /// `/etc/os-release`.
    pub fn node(&self, hostname: &str, kernel: &str, btime: u64) -> io::Result<()> {
        let kernel_dir = self.dir.join("sys").join("kernel");
        fs::create_dir_all(&kernel_dir)?;
        fs::write(kernel_dir.join("hostname"), format!("{hostname}\n"))?;
        fs::write(kernel_dir.join("osrelease"), format!("{kernel}\n"))?;
        fs::write(
            self.dir.join("stat"),
            format!(
                "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0\n\
                 cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0\n\
                 intr 1462898 0 0 0\n\
                 ctxt 115315133\n\
                 btime {btime}\n\
                 processes 86031\n\
                 procs_running 2\n\
                 procs_blocked 0\n\
                 softirq 2298339 0 553823 1 137045 0 0 253806 667405 0 686259\n"
            ),
        )
    }
}

/// One fake process. Builder methods consume and return it, so they chain with `?`.
#[derive(Debug, Clone)]
pub struct FakeProcess {
    pid: i32,
    comm: String,
    dir: PathBuf,
    root: Option<PathBuf>,
}

impl FakeProcess {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `<proc>/<pid>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host directory standing for the process's `/`, once [`root`](Self::root) set it.
    pub fn root_dir(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Points `<pid>/root` at `dir` (created if needed). Unless a cwd was set already, the
    /// cwd becomes that root, as for a service started by systemd.
    pub fn root(mut self, dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        replace_symlink(dir, &self.dir.join("root"))?;
        if fs::symlink_metadata(self.dir.join("cwd")).is_err() {
            replace_symlink(dir, &self.dir.join("cwd"))?;
        }
        self.root = Some(dir.to_path_buf());
        Ok(self)
    }

    /// Points `<pid>/cwd` at `target`, a host path: for a process with a root, a directory
    /// under it (`root.join("var/lib/kubelet")`), as the kernel shows a chrooted process.
    pub fn cwd(self, target: &Path) -> io::Result<Self> {
        replace_symlink(target, &self.dir.join("cwd"))?;
        Ok(self)
    }

    /// Points `<pid>/exe` at `target`, a host path (usually a file under the root).
    pub fn exe(self, target: &Path) -> io::Result<Self> {
        replace_symlink(target, &self.dir.join("exe"))?;
        Ok(self)
    }

    /// Points `<pid>/ns/net` at `link`, verbatim (`net:[4026531840]`): `readlink` then
    /// answers what the kernel's magic link answers for a process in that network
    /// namespace. Processes that share one are given the same `link`. Without it, the
    /// link is absent, as when the agent may not read another user's namespaces.
    pub fn netns(self, link: &str) -> io::Result<Self> {
        fs::create_dir_all(self.dir.join("ns"))?;
        replace_symlink(Path::new(link), &self.dir.join("ns").join("net"))?;
        Ok(self)
    }

    /// Writes `<pid>/environ`: each `NAME=value` NUL-terminated, as the kernel shows it.
    pub fn environ(self, vars: &[(&str, &str)]) -> io::Result<Self> {
        let mut raw = Vec::new();
        for (name, value) in vars {
            raw.extend_from_slice(format!("{name}={value}").as_bytes());
            raw.push(0);
        }
        fs::write(self.dir.join("environ"), raw)?;
        Ok(self)
    }

    /// Writes `<pid>/cgroup` (`0::/system.slice/kubelet.service\n` for a kubelet under
    /// systemd with cgroup v2; the default is `0::/`, the root cgroup).
    pub fn cgroup(self, text: &str) -> io::Result<Self> {
        fs::write(self.dir.join("cgroup"), text)?;
        Ok(self)
    }

    /// Rewrites `<pid>/stat` with this state (`S` by default; `Z` for a zombie).
    pub fn state(self, state: char) -> io::Result<Self> {
        self.write_stat(state)?;
        Ok(self)
    }

    /// Writes a file at `path` inside the root (creating its directories).
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>) -> io::Result<Self> {
        let host = self.in_root(path)?;
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(host, contents)?;
        Ok(self)
    }

    /// Creates a directory at `path` inside the root.
    pub fn dir_in_root(self, path: &str) -> io::Result<Self> {
        fs::create_dir_all(self.in_root(path)?)?;
        Ok(self)
    }

    /// Creates a symlink at `path` inside the root whose target is `target`, verbatim: an
    /// absolute target means a path inside the process's root, as the process sees it.
    pub fn symlink(self, path: &str, target: &str) -> io::Result<Self> {
        let host = self.in_root(path)?;
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent)?;
        }
        replace_symlink(Path::new(target), &host)?;
        Ok(self)
    }

    /// The host path of `path` inside the root.
    pub fn in_root(&self, path: &str) -> io::Result<PathBuf> {
        let root = self.root.as_ref().ok_or_else(|| {
            io::Error::other(format!(
                "fake process {}: set its root before adding files",
                self.pid
            ))
        })?;
        Ok(root.join(path.trim_start_matches('/')))
    }

    fn write_stat(&self, state: char) -> io::Result<()> {
        let pid = self.pid;
        let comm = &self.comm;
        // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
        // vsize rss rsslim startcode endcode startstack kstkesp kstkeip signal blocked
        // sigignore sigcatch wchan nswap cnswap exit_signal processor rt_priority policy
        // delayacct_blkio_ticks guest_time cguest_time start_data end_data start_brk
        // arg_start arg_end env_start env_end exit_code
        let stat = format!(
            "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 12057 0 12 0 2210 1350 0 0 20 0 \
             14 0 4021 1949675520 28672 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 \
             0 0 0 0 0 0 0 0 0 0 0\n"
        );
        fs::write(self.dir.join("stat"), stat)
    }
}

/// The kernel keeps at most 15 bytes of a command's name.
fn truncate_comm(comm: &str) -> &str {
    let mut end = comm.len().min(15);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    &comm[..end]
}

fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link)?;
    }
    symlink(target, link)
}
