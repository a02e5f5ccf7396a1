//! The serve lock: one `serve` process per database file.

use std::path::{Path, PathBuf};

/// An exclusive lock that one `serve` process holds on `<db>.lock` for its whole life, so
/// a second `serve` on the same database refuses to start instead of interleaving its
/// chain decisions with the first's (each keeps its own chain state in memory).
///
/// `flock(2)` on a separate file, not on the database: SQLite locks the database file with
/// POSIX record locks, which a process loses when it closes *any* descriptor of that file
/// (and which `flock` may interact with on some systems, NFS for one); a file of our own
/// has no such sharing. The lock goes with the process, however it ends (`kill -9`
/// included), so a stale lock file is harmless. It holds the pid, to name the holder.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
    path: PathBuf,
}

/// Why the serve lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another nodeproof-collector ({holder}) is serving {db}: it holds the lock {lock}; \
         stop it first (two collectors on one database would each keep their own chain state)"
    )]
    Held {
        db: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("cannot take the lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ServeLock {
    /// Takes the lock for the database `db`, without waiting.
    pub fn acquire(db: &Path) -> Result<ServeLock, LockError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let io = |source: std::io::Error| LockError::Io {
            lock: lock.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    db: db.to_path_buf(),
                    lock,
                    holder: if pid.is_empty() {
                        "pid unknown".to_string()
                    } else {
                        format!("pid {pid}")
                    },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(ServeLock {
            _file: file,
            path: lock,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
