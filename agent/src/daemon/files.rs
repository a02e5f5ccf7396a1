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
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if follow == Follow::NoSymlink {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
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
}
