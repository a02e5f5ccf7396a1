//! Checks an evidence bundle from its bytes alone (no database, no network): the manifest's
//! signature by the export key (pinned, or only the bundle's own), every file's SHA-256
//! against the manifest, every report's signature against the node key that was valid when
//! it was received, and every node's chain (`proto::chain::walk`) for gaps, forks and
//! reordering. Every fault names the file or the node at fault.
//!
//! The bundle is read twice as a stream: first every file is hashed and the small files
//! (manifest, keys, sums) kept; then each report is read again and its signature checked. So
//! memory holds the manifest and one report at a time, however large the bundle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Read};

use ed25519_dalek::VerifyingKey;
use nodeproof_proto::chain::{walk, ChainLink, LinkKind};
use nodeproof_proto::{
    check_unique_keys, keyid, verify, verify_signed, verifying_key_from_pem, Envelope, Predicate,
    PAYLOAD_TYPE,
};
use sha2::{Digest, Sha256};

use super::manifest::{
    report_file, KeysFile, ManifestStatement, EXPORT_KEY_FILE, MANIFEST_FILE,
    MANIFEST_PREDICATE_TYPE, SUMS_FILE,
};

/// The largest file a bundle may hold (a report envelope is far smaller; the aggregate
/// files are bounded by the nodes and checks).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One thing wrong with a bundle: which file or node, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub file: Option<String>,
    pub node: Option<String>,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.node) {
            (Some(file), _) => write!(f, "{file}: {}", self.message),
            (None, Some(node)) => write!(f, "node {node}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub faults: Vec<Fault>,
    pub files: u64,
    pub nodes: usize,
    pub reports: u64,
    /// The key that signed the manifest (when it verified).
    pub export_keyid: Option<String>,
    /// Whether that key was pinned by the caller (else the bundle vouches for itself).
    pub pinned: bool,
}

impl VerifyOutcome {
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }

    /// The text `verify` prints: a summary, then each fault on its own line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "bundle: {} files, {} reports from {} nodes\n",
            self.files, self.reports, self.nodes
        );
        match (&self.export_keyid, self.pinned) {
            (Some(k), true) => {
                out.push_str(&format!("manifest: signed by the pinned export key {k}\n"))
            }
            (Some(k), false) => out.push_str(&format!(
                "manifest: signed by export key {k} from the bundle itself: only self-consistent; \
                 pin the key you got from the operator with --export-key\n"
            )),
            (None, _) => out.push_str("manifest: NOT verified\n"),
        }
        if self.faults.is_empty() {
            out.push_str("OK: every signature, hash and chain holds\n");
        } else {
            for f in &self.faults {
                out.push_str(&format!("FAULT: {}\n", crate::text::escape(&f.to_string())));
            }
            out.push_str(&format!("FAILED: {} faults\n", self.faults.len()));
        }
        out
    }
}

struct Seen {
    sha256: String,
    /// Kept for the small files verify reads.
    bytes: Option<Vec<u8>>,
}

/// A node's keys by keyid: the key and the times it was valid from and until.
type KeysById = HashMap<String, (VerifyingKey, i64, Option<i64>)>;

fn fault(file: Option<&str>, node: Option<&str>, message: impl Into<String>) -> Fault {
    Fault {
        file: file.map(str::to_string),
        node: node.map(str::to_string),
        message: message.into(),
    }
}

fn keep(path: &str) -> bool {
    path == MANIFEST_FILE
        || path == EXPORT_KEY_FILE
        || path == SUMS_FILE
        || (path.starts_with("nodes/") && (path.ends_with("/keys.json") || path.contains("/keys/")))
}

/// Reads every entry of the tar.gz: `on_entry(path, bytes-or-None, sha256)`; a file over the
/// size limit or not a regular file is a fault.
fn read_entries(
    reader: Box<dyn Read>,
    faults: &mut Vec<Fault>,
    mut on_entry: impl FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => {
                faults.push(fault(
                    None,
                    None,
                    format!("an entry has an unreadable name: {e}"),
                ));
                continue;
            }
        };
        if !entry.header().entry_type().is_file() {
            faults.push(fault(
                Some(&path),
                None,
                "is not a regular file (a bundle holds only files)",
            ));
            continue;
        }
        if entry.size() > MAX_FILE_BYTES {
            faults.push(fault(
                Some(&path),
                None,
                format!(
                    "is {} bytes, over the {MAX_FILE_BYTES}-byte limit of a bundle file",
                    entry.size()
                ),
            ));
            continue;
        }
        on_entry(&path, &mut entry)?;
    }
    // Read the gzip stream to its end, so its CRC-32 and length are checked: a changed
    // byte in the archive's padding after the last entry (which tar never reads) or in
    // the gzip trailer is then an error too, not a bundle that verifies.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

/// Verifies the bundle that `open` reads (it is called twice, for the two passes), with the
/// export key pinned to `pinned` when given.
pub fn verify_bundle(
    open: &dyn Fn() -> io::Result<Box<dyn Read>>,
    pinned: Option<&VerifyingKey>,
) -> io::Result<VerifyOutcome> {
    let mut out = VerifyOutcome {
        pinned: pinned.is_some(),
        ..VerifyOutcome::default()
    };
    let mut faults = Vec::new();

    // Pass 1: hash everything, keep the small files.
    let mut files: BTreeMap<String, Seen> = BTreeMap::new();
    let mut twice = Vec::new();
    read_entries(open()?, &mut faults, |path, r| {
        let mut hash = Sha256::new();
        let mut kept = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            if keep(path) {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        let seen = Seen {
            sha256: hex::encode(hash.finalize()),
            bytes: keep(path).then_some(kept),
        };
        if files.insert(path.to_string(), seen).is_some() {
            twice.push(fault(Some(path), None, "appears twice in the bundle"));
        }
        Ok(())
    })?;
    faults.append(&mut twice);
    out.files = files.len() as u64;

    // The manifest and its signature.
    let Some(manifest_bytes) = files.get(MANIFEST_FILE).and_then(|s| s.bytes.clone()) else {
        faults.push(fault(
            Some(MANIFEST_FILE),
            None,
            "is missing: nothing in the bundle can be trusted",
        ));
        out.faults = faults;
        return Ok(out);
    };
    let bundled_key = files
        .get(EXPORT_KEY_FILE)
        .and_then(|s| s.bytes.as_ref())
        .map(|b| verifying_key_from_pem(&String::from_utf8_lossy(b)));
    let key = match (pinned, bundled_key) {
        (Some(p), Some(Ok(b))) => {
            if keyid(p) != keyid(&b) {
                faults.push(fault(
                    Some(EXPORT_KEY_FILE),
                    None,
                    format!(
                        "is export key {}, not the pinned export key {}",
                        keyid(&b),
                        keyid(p)
                    ),
                ));
            }
            *p
        }
        (Some(p), _) => *p,
        (None, Some(Ok(b))) => b,
        (None, Some(Err(e))) => {
            faults.push(fault(
                Some(EXPORT_KEY_FILE),
                None,
                format!("is not a usable public key: {e}"),
            ));
            out.faults = faults;
            return Ok(out);
        }
        (None, None) => {
            faults.push(fault(
                Some(EXPORT_KEY_FILE),
                None,
                "is missing, and no --export-key was given",
            ));
            out.faults = faults;
            return Ok(out);
        }
    };
    let payload = match Envelope::from_json_bytes(&manifest_bytes)
        .and_then(|env| verify_signed(&env, &key, PAYLOAD_TYPE))
    {
        Ok((payload, _)) => payload,
        Err(e) => {
            faults.push(fault(
                Some(MANIFEST_FILE),
                None,
                format!(
                    "the signature does not verify with export key {}: {e}",
                    keyid(&key)
                ),
            ));
            out.faults = faults;
            return Ok(out);
        }
    };
    out.export_keyid = Some(keyid(&key));
    let manifest: ManifestStatement =
        match check_unique_keys(&payload).and_then(|()| serde_json::from_slice(&payload)) {
            Ok(m) => m,
            Err(e) => {
                faults.push(fault(
                    Some(MANIFEST_FILE),
                    None,
                    format!("is signed but not a nodeproof manifest: {e}"),
                ));
                out.faults = faults;
                return Ok(out);
            }
        };
    if manifest.predicate_type != MANIFEST_PREDICATE_TYPE {
        faults.push(fault(
            Some(MANIFEST_FILE),
            None,
            format!(
                "predicateType is {:?}, expected {MANIFEST_PREDICATE_TYPE}",
                manifest.predicate_type
            ),
        ));
    }

    // Every file against the manifest's subjects.
    let mut listed: HashMap<&str, &str> = HashMap::new();
    for s in &manifest.subject {
        let sha = s
            .digest
            .get("sha256")
            .map(String::as_str)
            .unwrap_or_default();
        if listed.insert(s.name.as_str(), sha).is_some() {
            faults.push(fault(
                Some(&s.name),
                None,
                "is listed twice in the manifest",
            ));
        }
        match files.get(&s.name) {
            None => faults.push(fault(
                Some(&s.name),
                None,
                "is listed in the manifest but missing from the bundle (removed)",
            )),
            Some(seen) if seen.sha256 != sha => faults.push(fault(
                Some(&s.name),
                None,
                format!(
                    "SHA-256 is {}, the manifest says {sha}: the file was changed",
                    seen.sha256
                ),
            )),
            Some(_) => {}
        }
    }
    for path in files.keys() {
        if path != MANIFEST_FILE && !listed.contains_key(path.as_str()) {
            faults.push(fault(
                Some(path),
                None,
                "is not listed in the manifest (added)",
            ));
        }
    }
    if let Some(sums) = files.get(SUMS_FILE).and_then(|s| s.bytes.as_ref()) {
        for line in String::from_utf8_lossy(sums).lines() {
            let Some((sha, name)) = line.split_once("  ") else {
                faults.push(fault(
                    Some(SUMS_FILE),
                    None,
                    format!("line {line:?} is not `SHA256  PATH`"),
                ));
                continue;
            };
            if listed.get(name) != Some(&sha) {
                faults.push(fault(
                    Some(SUMS_FILE),
                    None,
                    format!("says {name} has SHA-256 {sha}, the manifest disagrees"),
                ));
            }
        }
    }

    // Keys, node by node.
    struct NodeKeys {
        keys: KeysById,
    }
    let mut node_keys: HashMap<String, NodeKeys> = HashMap::new();
    for node in &manifest.predicate.nodes {
        let n = node.name.as_str();
        let mut keys = HashMap::new();
        let parsed: Option<KeysFile> = files
            .get(&node.keys_file)
            .and_then(|s| s.bytes.as_ref())
            .and_then(|b| match serde_json::from_slice(b) {
                Ok(k) => Some(k),
                Err(e) => {
                    faults.push(fault(
                        Some(&node.keys_file),
                        Some(n),
                        format!("is not a keys file: {e}"),
                    ));
                    None
                }
            });
        if let Some(file) = parsed {
            if file.node != n {
                faults.push(fault(
                    Some(&node.keys_file),
                    Some(n),
                    format!("holds the keys of node {:?}, not of node {n}", file.node),
                ));
            }
            for k in &file.keys {
                let key = match verifying_key_from_pem(&k.pem) {
                    Ok(key) => key,
                    Err(e) => {
                        faults.push(fault(
                            Some(&node.keys_file),
                            Some(n),
                            format!("key {}: {e}", k.keyid),
                        ));
                        continue;
                    }
                };
                if keyid(&key) != k.keyid {
                    faults.push(fault(
                        Some(&node.keys_file),
                        Some(n),
                        format!("key {} is really key {}", k.keyid, keyid(&key)),
                    ));
                    continue;
                }
                let from = crate::accept::parse_time(&k.valid_from).unwrap_or(i64::MAX);
                let until = k
                    .valid_until
                    .as_deref()
                    .map(|t| crate::accept::parse_time(t).unwrap_or(i64::MIN));
                keys.insert(k.keyid.clone(), (key, from, until));
            }
        }
        for entry in &node.keys {
            let pem = files.get(&entry.file).and_then(|s| s.bytes.as_ref());
            match pem.map(|b| verifying_key_from_pem(&String::from_utf8_lossy(b))) {
                Some(Ok(k)) if keyid(&k) == entry.keyid => {}
                Some(Ok(k)) => faults.push(fault(
                    Some(&entry.file),
                    Some(n),
                    format!(
                        "is key {}, not node {n}'s key {} (swapped)",
                        keyid(&k),
                        entry.keyid
                    ),
                )),
                Some(Err(e)) => faults.push(fault(
                    Some(&entry.file),
                    Some(n),
                    format!("is not a public key: {e}"),
                )),
                None => {}
            }
            if !keys.contains_key(&entry.keyid) {
                faults.push(fault(
                    Some(&node.keys_file),
                    Some(n),
                    format!("does not hold key {} that the manifest lists", entry.keyid),
                ));
            }
        }
        node_keys.insert(node.name.clone(), NodeKeys { keys });
    }

    // Pass 2: each report's signature, by the key valid when it was received.
    let mut wanted: HashMap<String, (String, usize)> = HashMap::new();
    for node in &manifest.predicate.nodes {
        for (i, c) in node.chain.iter().enumerate() {
            let expected = report_file(&node.name, c.sequence, &c.digest);
            if c.file != expected {
                faults.push(fault(
                    Some(&c.file),
                    Some(&node.name),
                    format!("is not named for its sequence and digest ({expected})"),
                ));
            }
            if listed.get(c.file.as_str()) != Some(&c.digest.as_str()) {
                faults.push(fault(
                    Some(&c.file),
                    Some(&node.name),
                    "the chain's digest is not the manifest's SHA-256 of the file",
                ));
            }
            wanted.insert(c.file.clone(), (node.name.clone(), i));
        }
        out.reports += node.chain.len() as u64;
    }
    out.nodes = manifest.predicate.nodes.len();
    let mut links: HashMap<(String, usize), ChainLink> = HashMap::new();
    let mut pass2_faults = Vec::new();
    let mut report_faults = Vec::new();
    read_entries(open()?, &mut pass2_faults, |path, r| {
        let Some((node, i)) = wanted.get(path) else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)?;
        let entry = manifest
            .predicate
            .nodes
            .iter()
            .find(|n| &n.name == node)
            .and_then(|n| n.chain.get(*i));
        let Some(entry) = entry else { return Ok(()) };
        match check_report(
            &bytes,
            node,
            entry,
            node_keys.get(node.as_str()).map(|k| &k.keys),
        ) {
            Ok((link, problem)) => {
                if let Some(message) = problem {
                    report_faults.push(fault(Some(path), Some(node), message));
                }
                links.insert((node.clone(), *i), link);
            }
            Err(message) => report_faults.push(fault(Some(path), Some(node), message)),
        }
        Ok(())
    })?;
    faults.append(&mut report_faults);

    // Each node's chain, in the manifest's order, from what the nodes signed.
    for node in &manifest.predicate.nodes {
        let chain: Vec<ChainLink> = (0..node.chain.len())
            .filter_map(|i| links.remove(&(node.name.clone(), i)))
            .collect();
        for f in walk(node.anchor.as_ref(), &chain) {
            faults.push(fault(None, Some(&node.name), format!("chain: {f}")));
        }
    }
    out.faults = faults;
    Ok(out)
}

/// One report: signed by a key of `node` valid when it was received, for `node` at the
/// sequence the manifest says. Returns its link as signed (which the chain walk uses, so a
/// report in another's place shows there as reordering too) and what is wrong with its
/// place; Err when its signature cannot be trusted.
fn check_report(
    bytes: &[u8],
    node: &str,
    entry: &super::manifest::ChainEntry,
    keys: Option<&KeysById>,
) -> Result<(ChainLink, Option<String>), String> {
    let envelope = Envelope::from_json_bytes(bytes).map_err(|e| e.to_string())?;
    let keys = keys.ok_or_else(|| format!("node {node} has no keys in the bundle"))?;
    let ids: Vec<&str> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.as_str())
        .collect();
    let Some((kid, (key, from, until))) = keys.iter().find(|(k, _)| ids.contains(&k.as_str()))
    else {
        return Err(format!(
            "signed by key {}, which is not one of node {node}'s keys in the bundle",
            ids.join(", ")
        ));
    };
    let received =
        crate::accept::parse_time(&entry.received).map_err(|e| format!("bad receive time: {e}"))?;
    if received < *from || until.is_some_and(|u| received > u) {
        return Err(format!(
            "signed by key {kid}, which was not node {node}'s key when the report was received ({})",
            entry.received
        ));
    }
    let verified = verify(bytes, key)
        .map_err(|e| format!("the signature does not verify with node {node}'s key {kid}: {e}"))?;
    let digest = hex::encode(Sha256::digest(bytes));
    let link = verified
        .statement
        .link()
        .ok_or_else(|| "the signed statement has no chain link".to_string())?
        .clone();
    if link.node != node {
        return Err(format!(
            "is signed for node {:?}, not node {node}",
            link.node
        ));
    }
    let problem = (link.sequence != entry.sequence).then(|| {
        format!(
            "the signed sequence is {}, but the manifest and the file name say {} (reordered)",
            link.sequence, entry.sequence
        )
    });
    let kind = match &verified.statement.predicate {
        Predicate::Report(_) => LinkKind::Full,
        Predicate::Unchanged(u) => LinkKind::Unchanged {
            since: u.since.clone(),
            since_sequence: u.since_sequence,
            count: u.count,
        },
    };
    Ok((
        ChainLink {
            digest,
            sequence: link.sequence,
            previous: link.previous,
            kind,
        },
        problem,
    ))
}
