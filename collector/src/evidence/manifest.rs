//! The bundle's manifest and the keys that sign and check it. The manifest is an in-toto
//! Statement v1 (so in-toto-attestation can validate it) whose subjects are every file of
//! the bundle with its SHA-256, and whose predicate lists each node's chain of report
//! digests, its keys and where its range starts. It travels in a DSSE envelope signed by
//! the collector's export key (so securesystemslib can check it), as `manifest.intoto.json`.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use nodeproof_proto::chain::Anchor;
use nodeproof_proto::{keyid, Subject};
use serde::{Deserialize, Serialize};

/// The manifest's file name in the bundle.
pub const MANIFEST_FILE: &str = "manifest.intoto.json";
/// The export key's public half in the bundle.
pub const EXPORT_KEY_FILE: &str = "export-key.pub.pem";
/// `sha256sum -c` input for every file but itself and the manifest.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// The predicate type of the manifest statement.
pub const MANIFEST_PREDICATE_TYPE: &str = "https://nodeproof.dev/attestation/evidence-bundle/v1";

/// The collector's export key: signs manifests.
#[derive(Debug)]
pub struct ExportKey {
    pub key: SigningKey,
}

impl ExportKey {
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn keyid(&self) -> String {
        keyid(&self.public())
    }
}

/// The manifest statement, as signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Manifest,
}

/// What the bundle holds, node by node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// RFC 3339 time of the export.
    pub created: String,
    pub collector_version: String,
    /// The keyid (SHA-256 of the raw key, hex) of the export key that signs this.
    pub export_keyid: String,
    pub range: Range,
    pub nodes: Vec<NodeManifest>,
}

/// The statements' receive times the export covers (RFC 3339; `None`: unbounded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only these nodes (empty: every node).
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeManifest {
    pub name: String,
    /// The statement stored just before the range (its digest and sequence), where the
    /// chain continues from; `None` when the range starts at the node's first statement.
    pub anchor: Option<Anchor>,
    pub keys_file: String,
    pub keys: Vec<KeyEntry>,
    /// Every statement of the range in chain order.
    pub chain: Vec<ChainEntry>,
}

/// One key of a node and when it was valid (collector time, RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub keyid: String,
    pub file: String,
    pub valid_from: String,
    /// `None`: still the node's key at export time.
    pub valid_until: Option<String>,
}

/// One statement of a node's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub sequence: u64,
    /// SHA-256 of the envelope file.
    pub digest: String,
    /// `full` or `unchanged`.
    pub kind: String,
    /// When the collector received it (RFC 3339): the key valid then must have signed it.
    pub received: String,
    pub file: String,
}

/// `nodes/<node>/keys.json`: a node's keys, in both forms an auditor's tools read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysFile {
    pub node: String,
    pub keys: Vec<KeyFileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFileEntry {
    /// nodeproof's keyid: SHA-256 of the raw 32-byte key, the `keyid` in the node's
    /// DSSE signatures.
    pub keyid: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// The key in securesystemslib's form (`SSlibKey.from_dict(keyid, securesystemslib)`).
    pub securesystemslib: SslibKey,
}

/// securesystemslib's JSON form of an ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslibKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: BTreeMap<String, String>,
}

impl SslibKey {
    pub fn ed25519(key: &VerifyingKey) -> SslibKey {
        SslibKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: BTreeMap::from([("public".to_string(), hex::encode(key.as_bytes()))]),
        }
    }
}

/// Where a node's files go. Node names were checked at enrolment (letters, digits, `-`,
/// `.`, `_`); [`safe_name`] checks again before a name becomes a path.
pub fn node_dir(node: &str) -> String {
    format!("nodes/{node}")
}

pub fn report_file(node: &str, sequence: u64, digest: &str) -> String {
    format!("nodes/{node}/reports/{sequence:020}-{digest}.json")
}

pub fn key_file(node: &str, keyid: &str) -> String {
    format!("nodes/{node}/keys/{keyid}.pem")
}

pub fn keys_file(node: &str) -> String {
    format!("nodes/{node}/keys.json")
}

/// Whether `name` can be a path component: 1 to 253 ASCII letters, digits, `-`, `.`, `_`,
/// starting with a letter or digit (so never `.` or `..`).
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// A node's keys with their validity periods, in both forms (what `keys.json` holds and
/// `GET /v1/nodes/{name}/keys` answers). Err names a stored key that is not an ed25519 PEM.
pub fn keys_of(node: &str, periods: &[crate::store::KeyPeriod]) -> Result<KeysFile, String> {
    let mut keys = Vec::new();
    for p in periods {
        let key = nodeproof_proto::verifying_key_from_pem(&p.public_key)
            .map_err(|e| format!("stored key {} of node {node}: {e}", p.key_id))?;
        keys.push(KeyFileEntry {
            keyid: keyid(&key),
            valid_from: crate::server::rfc3339(p.added_at),
            valid_until: p.retired_at.map(crate::server::rfc3339),
            pem: p.public_key.clone(),
            securesystemslib: SslibKey::ed25519(&key),
        });
    }
    Ok(KeysFile {
        node: node.to_string(),
        keys,
    })
}
