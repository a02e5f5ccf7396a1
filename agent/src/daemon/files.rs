//! Reading the daemon's own files (spool statements, state, lock, signing key) without
//! trusting what sits at their path: a FIFO named like a statement would block a plain
//! `open` forever (and with it the runtime thread that answers SIGTERM), a symlink to
//! `/dev/zero` would be read without end. So files are opened non-blocking, checked to be
//! regular files on the descriptor (no race between check and read), and read up to a
//! bound.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How a path may be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The file itself must not be a symlink (spool files: the agent never writes one).
    NoSymlink,
    /// Symlinks are followed (a key mounted from a Kubernetes Secret is a symlink chain).
    Symlinks,
}

/// Opens `path` for reading without blocking on a FIFO or a device, and checks that it is
/// a regular file. Returns the open file, so that what is checked is what is read.
pub fn open_regular(path: &Path, follow: Follow) -> io::Result<File> {
    use rustix::fs::OFlags;
    let mut flags = OFlags::NONBLOCK | OFlags::CLOEXEC;
    if follow == Follow::NoSymlink {
        flags |= OFlags::NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a regular file ({})", describe_type(&kind)),
        ));
    }
    Ok(file)
}

/// Reads a regular file of at most `max` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, follow: Follow, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path, follow)?;
    read_bounded(file, max)
}

/// Reads at most `max` bytes from `file`; more is an error, not a truncation.
pub fn read_bounded(file: File, max: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_big(max));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_big(max));
    }
    Ok(buf)
}

fn too_big(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {max} bytes, more than the agent ever writes there"),
    )
}

/// A file type in words, for messages.
pub fn describe_type(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "regular file"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "unknown type"
    }
}

/// Why a private key file was not read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("could not read the private key {}: {cause}", path.display())]
    Read {
        path: std::path::PathBuf,
        cause: io::Error,
    },
    #[error(
        "the private key {} is {who} (mode {mode:04o}): whoever can read it can sign reports \
         as this node, and whoever can write it can swap it. Run `chmod 600 {}` (and make it \
         owned by the user the agent runs as)",
        path.display(),
        path.display()
    )]
    TooOpen {
        path: std::path::PathBuf,
        mode: u32,
        who: &'static str,
    },
}

/// Reads a private key file (at most 64 KiB), refusing one that others may read or write,
/// as ssh does (openssh `sshkey_perm_ok`): any permission for "other" is refused; any for
/// "group" is refused when the agent's user owns the file. A file owned by another user
/// with group bits is that owner's decision, as in ssh; it is also what a systemd
/// credential looks like (root's file, mode 0400 plus an ACL entry for the service user,
/// which shows as group bits in the mode).
pub fn read_private_key(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    use std::os::unix::fs::MetadataExt;
    let read = |cause| KeyFileError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let file = open_regular(path, Follow::Symlinks).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    let mode = meta.mode() & 0o7777;
    let ours = meta.uid() == rustix::process::geteuid().as_raw();
    let who = if mode & 0o007 != 0 {
        Some(if mode & 0o002 != 0 {
            "writable by others"
        } else {
            "readable by others"
        })
    } else if ours && mode & 0o070 != 0 {
        Some(if mode & 0o020 != 0 {
            "writable by its group"
        } else {
            "readable by its group"
        })
    } else {
        None
    };
    if let Some(who) = who {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
            who,
        });
    }
    read_bounded(file, 64 * 1024).map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_read_refuses_more() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, Follow::NoSymlink, 5).unwrap(), b"12345");
        assert!(read_regular(&p, Follow::NoSymlink, 4).is_err());
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(read_regular(&link, Follow::NoSymlink, 5).is_err());
        assert!(read_regular(&link, Follow::Symlinks, 5).is_ok());
        let err = read_regular(tmp.path(), Follow::NoSymlink, 5).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn group_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("agent.key");
        std::fs::write(&p, b"k").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o620, false),
            (0o604, false),
            (0o602, false),
            (0o644, false),
            (0o700, true),
            (0o610, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = read_private_key(&p);
            assert_eq!(got.is_ok(), ok, "{mode:o}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("chmod 600"), "{e}");
            }
        }
    }
}
