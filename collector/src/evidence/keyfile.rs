//! The collector's export key on disk: `export-key create --out DIR` writes
//! `DIR/export-key.pem` (PKCS#8, mode 0600, never overwritten) and `DIR/export-key.pub.pem`;
//! `export --key` and `serve --export-key` read the private key; `verify --export-key` reads
//! a pinned public key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use nodeproof_proto::{
    signing_key_from_pem, signing_key_to_pem, verifying_key_from_pem, verifying_key_to_pem,
};

use super::manifest::ExportKey;

/// Why a key file could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path} already exists; export-key create never overwrites a key (move it away first if you mean to replace it, and tell your auditors the new keyid)")]
    Exists { path: PathBuf },
    #[error("could not {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ed25519 {what} PEM: {source}")]
    Key {
        what: &'static str,
        path: PathBuf,
        source: nodeproof_proto::KeyError,
    },
}

/// The paths `create` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub private: PathBuf,
    pub public: PathBuf,
    pub keyid: String,
    pub public_pem: String,
}

/// Makes a new export key in `dir`.
pub fn create(dir: &Path) -> Result<Created, KeyFileError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let private = dir.join("export-key.pem");
    let public = dir.join("export-key.pub.pem");
    for p in [&private, &public] {
        if p.exists() {
            return Err(KeyFileError::Exists { path: p.clone() });
        }
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let key_error = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Key { what, path, source }
    };
    let private_pem = signing_key_to_pem(&key).map_err(key_error("private key", &private))?;
    let public_pem =
        verifying_key_to_pem(&key.verifying_key()).map_err(key_error("public key", &public))?;
    write_new(&private, private_pem.as_bytes(), 0o600).map_err(io("write", &private))?;
    write_new(&public, public_pem.as_bytes(), 0o644).map_err(io("write", &public))?;
    Ok(Created {
        private,
        public,
        keyid: nodeproof_proto::keyid(&key.verifying_key()),
        public_pem,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads the private export key.
pub fn load(path: &Path) -> Result<ExportKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let key = signing_key_from_pem(&text).map_err(|source| KeyFileError::Key {
        what: "private key (from `nodeproof-collector export-key create`)",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ExportKey { key })
}

/// Reads a pinned public export key.
pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    verifying_key_from_pem(&text).map_err(|source| KeyFileError::Key {
        what: "public key",
        path: path.to_path_buf(),
        source,
    })
}
