//! Reading inside a process's root (`/proc/<pid>/root`) the way the process itself would:
//! every component resolved on this side, symlinks followed inside the root and never out of
//! it, sizes bounded, a file that changes while read refused. `process` hands these reads to
//! the kubelet's and the API server's adapters; nothing here knows what a kubelet is.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{
    clean, ReadCause, ReadError, MAX_FILE_BYTES, MAX_SYMLINK_HOPS, MAX_WALK_DEPTH, MAX_WALK_ENTRIES,
};

/// A process's root directory on this host (`/proc/<pid>/root`), and the reads that stay
/// inside it.
pub(super) struct RootFs {
    pub(super) pid: i32,
    pub(super) root: PathBuf,
}

/// A path resolved inside a root: every component is a real directory except maybe the last
/// (a symlink only when the caller asked not to follow it), each with its lstat.
pub(super) struct Resolved {
    pub(super) parts: Vec<(OsString, fs::Metadata)>,
    pub(super) root_meta: fs::Metadata,
}

impl Resolved {
    pub(super) fn meta(&self) -> &fs::Metadata {
        self.parts.last().map(|(_, m)| m).unwrap_or(&self.root_meta)
    }
}

impl RootFs {
    pub(super) fn host_path<'a>(&self, parts: impl IntoIterator<Item = &'a OsStr>) -> PathBuf {
        let mut p = self.root.clone();
        for c in parts {
            p.push(c);
        }
        p
    }

    pub(super) fn error(&self, path: &str, host_path: PathBuf, cause: ReadCause) -> ReadError {
        ReadError {
            pid: self.pid,
            path: path.to_string(),
            host_path,
            cause,
        }
    }

    /// Resolves `path` (absolute inside the root) component by component; see
    /// [`KubeletProcess::read_file`] for the rules.
    pub(super) fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved, ReadError> {
        let root_meta = fs::metadata(&self.root)
            .map_err(|e| self.error(path, self.root.clone(), ReadCause::Io(e)))?;
        let mut parts: Vec<(OsString, fs::Metadata)> = Vec::new();
        // Components still to resolve, the next one last.
        let mut pending: Vec<OsString> = components(path.as_bytes()).rev().collect();
        let mut hops = 0usize;
        while let Some(c) = pending.pop() {
            if c == ".." {
                parts.pop();
                continue;
            }
            let host = self
                .host_path(parts.iter().map(|(p, _)| p.as_os_str()))
                .join(&c);
            let meta = fs::symlink_metadata(&host)
                .map_err(|e| self.error(path, host.clone(), ReadCause::Io(e)))?;
            if meta.file_type().is_symlink() && (follow_last || !pending.is_empty()) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(self.error(path, host, ReadCause::SymlinkLoop));
                }
                let target = fs::read_link(&host)
                    .map_err(|e| self.error(path, host.clone(), ReadCause::Io(e)))?;
                let target = target.as_os_str().as_bytes();
                if target.starts_with(b"/") {
                    parts.clear();
                }
                pending.extend(components(target).rev());
                continue;
            }
            if !pending.is_empty() && !meta.is_dir() {
                let component = format!("/{}", {
                    let mut names: Vec<String> = parts
                        .iter()
                        .map(|(p, _)| p.to_string_lossy().into_owned())
                        .collect();
                    names.push(c.to_string_lossy().into_owned());
                    names.join("/")
                });
                return Err(self.error(path, host, ReadCause::NotADirectory { component }));
            }
            parts.push((c, meta));
        }
        Ok(Resolved { parts, root_meta })
    }

    pub(super) fn read_file(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let resolved = self.resolve(path, true)?;
        let host = self.host_path(resolved.parts.iter().map(|(p, _)| p.as_os_str()));
        let meta = resolved.meta();
        if meta.is_dir() {
            return Err(self.error(path, host, ReadCause::IsDirectory));
        }
        if !meta.is_file() {
            return Err(self.error(path, host, not_regular(&meta.file_type())));
        }
        if path.ends_with('/') {
            let component = path.trim_end_matches('/').to_string();
            return Err(self.error(path, host, ReadCause::NotADirectory { component }));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(self.error(
                path,
                host,
                ReadCause::TooLarge {
                    limit: MAX_FILE_BYTES,
                },
            ));
        }
        let file =
            File::open(&host).map_err(|e| self.error(path, host.clone(), ReadCause::Io(e)))?;
        let opened = file
            .metadata()
            .map_err(|e| self.error(path, host.clone(), ReadCause::Io(e)))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(self.error(path, host, ReadCause::Changed));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(path, host.clone(), ReadCause::Io(e)))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(self.error(
                path,
                host,
                ReadCause::TooLarge {
                    limit: MAX_FILE_BYTES,
                },
            ));
        }
        Ok(bytes)
    }

    pub(super) fn walk_dir(&self, dir: &str, follow_last: bool) -> Result<Vec<String>, ReadError> {
        let resolved = self.resolve(dir, follow_last)?;
        // WalkDir reports the root under the name it was given, and children under
        // filepath.Join(root, name), which is clean.
        let name = clean(dir);
        if !resolved.meta().is_dir() {
            return Ok(vec![name]);
        }
        let host = self.host_path(resolved.parts.iter().map(|(p, _)| p.as_os_str()));
        let mut out = Vec::new();
        self.walk(dir, &host, &name, 0, &mut out)?;
        Ok(out)
    }

    pub(super) fn walk(
        &self,
        asked: &str,
        host: &Path,
        name: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), ReadError> {
        if depth > MAX_WALK_DEPTH {
            return Err(self.error(asked, host.to_path_buf(), ReadCause::TreeTooLarge));
        }
        let io_err = |e: io::Error| self.error(asked, host.to_path_buf(), ReadCause::Io(e));
        let mut entries: Vec<(OsString, fs::FileType)> = Vec::new();
        for entry in fs::read_dir(host).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let file_type = entry.file_type().map_err(io_err)?;
            entries.push((entry.file_name(), file_type));
            if entries.len() > MAX_WALK_ENTRIES {
                return Err(self.error(asked, host.to_path_buf(), ReadCause::TreeTooLarge));
            }
        }
        // os.ReadDir sorts by name, comparing bytes.
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (entry_name, file_type) in entries {
            let child = if name == "/" {
                format!("/{}", entry_name.to_string_lossy())
            } else {
                format!("{name}/{}", entry_name.to_string_lossy())
            };
            if file_type.is_dir() {
                self.walk(asked, &host.join(&entry_name), &child, depth + 1, out)?;
            } else {
                if out.len() >= MAX_WALK_ENTRIES {
                    return Err(self.error(asked, host.to_path_buf(), ReadCause::TreeTooLarge));
                }
                out.push(child);
            }
        }
        Ok(())
    }
}

/// The non-empty, non-`.` components of a `/`-separated path.
pub(super) fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

pub(super) fn not_regular(t: &fs::FileType) -> ReadCause {
    let kind = if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    };
    ReadCause::NotRegular { kind }
}
