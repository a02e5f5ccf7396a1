//! Writes the evidence bundle as a stream: statements come from the store one at a time
//! (`Store::for_each_statement`) and go straight into the tar.gz. What grows with the
//! reports is spooled to temporary files, not kept in memory: the CSV rows, the SHA256SUMS
//! lines, and the manifest's subjects and chain entries. The manifest payload is assembled
//! from those spools into one more temporary file, signed by reading it (Ed25519 reads its
//! message twice: `raw_sign_byupdate` streams it both times) and base64-encoded into the
//! envelope chunk by chunk. What stays in memory grows with the nodes and checks only.
//! File order is fixed (README, export key, then node by node, then the aggregate files,
//! SHA256SUMS and the manifest last), so two exports of the same history list the same
//! files in the same order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use nodeproof_proto::chain::Anchor;
use nodeproof_proto::statement::STATEMENT_TYPE;
use nodeproof_proto::tabular::{self, Suite};
use nodeproof_proto::{keyid, sha256_hex, Envelope, Predicate, Report, Statement, Subject};
use sha2::{Digest, Sha256};

use super::manifest::{
    key_file, keys_file, keys_of, report_file, safe_name, ChainEntry, ExportKey, KeyEntry,
    NodeManifest, Range, EXPORT_KEY_FILE, MANIFEST_FILE, MANIFEST_PREDICATE_TYPE, SUMS_FILE,
};
use super::oscal::{self, NodeAssessment};
use crate::server::rfc3339;
use crate::store::{
    ExceptionEvent, ExceptionRecord, ExportFilter, KeyPeriod, Store, StoreError, StoredStatement,
};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub nodes: usize,
    pub reports: u64,
    pub files: u64,
    pub export_keyid: String,
}

/// Why an export stopped. The bundle written so far is incomplete: discard it.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write the bundle: {0}")]
    Io(#[from] io::Error),
    #[error(
        "node name {0:?} cannot be a file name in the bundle (only letters, digits, '-', '.' \
         and '_'): export the other nodes with --node, and rename this one"
    )]
    BadName(String),
    #[error(
        "stored statement {digest} of node {node} cannot be read ({why}): the database holds \
         something the collector did not accept; restore it from a backup"
    )]
    BadStatement {
        node: String,
        digest: String,
        why: String,
    },
}

/// Writes the bundle of what `filter` selects to `out`, signed by `key`, dated `now`.
pub fn export(
    store: &dyn Store,
    filter: &ExportFilter,
    key: &ExportKey,
    now: i64,
    out: &mut dyn Write,
) -> Result<ExportSummary, ExportError> {
    for name in &filter.nodes {
        if !safe_name(name) {
            return Err(ExportError::BadName(name.clone()));
        }
    }
    let records = store.exceptions()?;
    let events = store.exception_events()?;
    let in_force_at = filter.until.map_or(now, |u| u.min(now));
    let mut w = Writer::new(out, now, key, records, in_force_at)?;
    w.add_file("README.md", readme(&key.keyid()).as_bytes())?;
    let public_pem = nodeproof_proto::verifying_key_to_pem(&key.public())
        .map_err(|e| io::Error::other(e.to_string()))?;
    w.add_file(EXPORT_KEY_FILE, public_pem.as_bytes())?;

    let mut failure: Option<ExportError> = None;
    let walked = store.for_each_statement(filter, &mut |st| match w.statement(store, filter, st) {
        Ok(()) => Ok(()),
        Err(e) => {
            failure = Some(e);
            Err(StoreError::Backend("export stopped".into()))
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walked?;
    w.close_node()?;
    // Nodes named in the filter that had nothing in the range still show their keys (after
    // the others: their results come last).
    for name in &filter.nodes {
        if !w.nodes.contains_key(name) {
            w.open_node(store, filter, name)?;
            w.close_node()?;
        }
    }
    w.finish(filter, &events)
}

/// Per node, until the export ends: its manifest entry. `manifest.chain` stays empty: the
/// node's chain entries are bytes `chain_start..chain_end` of the chain spool (the store
/// hands out statements node by node, so each node's are contiguous).
struct NodeState {
    manifest: NodeManifest,
    chain_start: u64,
    chain_end: u64,
}

/// The node whose statements are coming: what its JUnit suite and OSCAL result need. When
/// the next node starts both are written to their spools and this is dropped, so memory
/// does not grow with the nodes' reports either.
struct OpenNode {
    name: String,
    /// Chain entries spooled so far.
    spooled: u64,
    assessment: NodeAssessment,
    latest: Option<Report>,
}

/// A temporary file written through a hash; its bytes are read back once it is finished.
type Spool = HashingWriter<BufWriter<File>>;

fn spool() -> io::Result<Spool> {
    Ok(HashingWriter::new(BufWriter::with_capacity(
        64 * 1024,
        tempfile::tempfile()?,
    )))
}

/// Flushes a spool and hands back its SHA-256, its length and the file.
fn finish_spool(spool: Spool) -> io::Result<(String, u64, File)> {
    let (sha, len, buffered) = spool.finish();
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    Ok((sha, len, file))
}

struct Writer<'a> {
    tar: tar::Builder<flate2::write::GzEncoder<&'a mut dyn Write>>,
    now: i64,
    key: &'a ExportKey,
    /// The manifest's subjects, as JSON array elements (`{..},{..}`).
    subjects: Spool,
    files: u64,
    /// SHA256SUMS, line by line.
    sums: Spool,
    /// Every node's chain entries, as JSON array elements, node after node.
    chain: Spool,
    open: Option<OpenNode>,
    nodes: BTreeMap<String, NodeState>,
    csv: Option<Spool>,
    /// JUnit suites, node by node, and their counts.
    junit: Spool,
    junit_totals: tabular::JunitTotals,
    /// OSCAL results, node by node, as JSON array elements.
    oscal: Spool,
    oscal_results: u64,
    /// The exceptions, for each node's OSCAL risks; those active at `in_force_at` count.
    records: Vec<ExceptionRecord>,
    in_force_at: i64,
    reports: u64,
}

impl<'a> Writer<'a> {
    fn new(
        out: &'a mut dyn Write,
        now: i64,
        key: &'a ExportKey,
        records: Vec<ExceptionRecord>,
        in_force_at: i64,
    ) -> Result<Writer<'a>, ExportError> {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        let mut csv = spool()?;
        tabular::write_csv_header(&mut csv)?;
        Ok(Writer {
            tar: tar::Builder::new(gz),
            now,
            key,
            subjects: spool()?,
            files: 0,
            sums: spool()?,
            chain: spool()?,
            open: None,
            nodes: BTreeMap::new(),
            csv: Some(csv),
            junit: spool()?,
            junit_totals: tabular::JunitTotals::default(),
            oscal: spool()?,
            oscal_results: 0,
            records,
            in_force_at,
            reports: 0,
        })
    }

    fn header(&self, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(u64::try_from(self.now).unwrap_or(0));
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    /// Adds a file and lists it (with its SHA-256) for the manifest and SHA256SUMS.
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let mut h = self.header(bytes.len() as u64);
        self.tar.append_data(&mut h, path, bytes)?;
        self.list(path, &sha256_hex(bytes), true)
    }

    /// Adds `len` bytes of `file` (from its start) as the bundle file `path`.
    fn add_spooled(&mut self, path: &str, mut file: File, len: u64) -> Result<(), ExportError> {
        file.rewind()?;
        let mut h = self.header(len);
        self.tar
            .append_data(&mut h, path, io::BufReader::new(file).take(len))?;
        Ok(())
    }

    /// Lists a file for the manifest (and for SHA256SUMS when `sum`).
    fn list(&mut self, path: &str, sha: &str, sum: bool) -> Result<(), ExportError> {
        if self.files > 0 {
            self.subjects.write_all(b",")?;
        }
        serde_json::to_writer(&mut self.subjects, &Subject::sha256(path, sha))
            .map_err(io::Error::other)?;
        self.files += 1;
        if sum {
            writeln!(self.sums, "{sha}  {path}")?;
        }
        Ok(())
    }

    fn open_node(
        &mut self,
        store: &dyn Store,
        filter: &ExportFilter,
        name: &str,
    ) -> Result<(), ExportError> {
        if !safe_name(name) {
            return Err(ExportError::BadName(name.to_string()));
        }
        let periods = store.key_history(name)?;
        let anchor: Option<Anchor> = match filter.since {
            Some(since) => store.chain_anchor(name, since)?,
            None => None,
        };
        let (keys_json, entries) = self.key_files(name, &periods)?;
        self.add_file(&keys_file(name), &keys_json)?;
        let at = self.chain.len;
        self.nodes.insert(
            name.to_string(),
            NodeState {
                manifest: NodeManifest {
                    name: name.to_string(),
                    anchor,
                    keys_file: keys_file(name),
                    keys: entries,
                    chain: Vec::new(),
                },
                chain_start: at,
                chain_end: at,
            },
        );
        self.open = Some(OpenNode {
            name: name.to_string(),
            spooled: 0,
            assessment: NodeAssessment::new(name),
            latest: None,
        });
        Ok(())
    }

    /// Writes the open node's JUnit suite and OSCAL result to their spools.
    fn close_node(&mut self) -> Result<(), ExportError> {
        let Some(node) = self.open.take() else {
            return Ok(());
        };
        if let Some(r) = &node.latest {
            let suite = Suite {
                node: node.name.clone(),
                time: r.scan_time.clone(),
                rows: tabular::rows(&node.name, r),
            };
            self.junit_totals.add(&suite);
            tabular::write_junit_suite(&mut self.junit, &suite)?;
        }
        let result = oscal::result(
            &node.assessment,
            &self.records,
            self.in_force_at,
            self.now,
            &self.key.keyid(),
        );
        if self.oscal_results > 0 {
            self.oscal.write_all(b",\n")?;
        }
        serde_json::to_writer_pretty(&mut self.oscal, &result).map_err(io::Error::other)?;
        self.oscal_results += 1;
        Ok(())
    }

    /// Writes each key's PEM and returns `keys.json` and the manifest's key entries.
    fn key_files(
        &mut self,
        node: &str,
        periods: &[KeyPeriod],
    ) -> Result<(Vec<u8>, Vec<KeyEntry>), ExportError> {
        let file = keys_of(node, periods).map_err(|why| ExportError::BadStatement {
            node: node.to_string(),
            digest: "(a key)".into(),
            why,
        })?;
        let mut entries = Vec::new();
        for k in &file.keys {
            let path = key_file(node, &k.keyid);
            self.add_file(&path, k.pem.as_bytes())?;
            entries.push(KeyEntry {
                keyid: k.keyid.clone(),
                file: path,
                valid_from: k.valid_from.clone(),
                valid_until: k.valid_until.clone(),
            });
        }
        Ok((pretty(&file)?, entries))
    }

    fn statement(
        &mut self,
        store: &dyn Store,
        filter: &ExportFilter,
        st: StoredStatement,
    ) -> Result<(), ExportError> {
        if self.open.as_ref().map(|n| &n.name) != Some(&st.node) {
            if self.nodes.contains_key(&st.node) {
                return Err(io::Error::other(format!(
                    "internal: the store handed out node {}'s statements in two runs",
                    st.node
                ))
                .into());
            }
            self.close_node()?;
            self.open_node(store, filter, &st.node)?;
        }
        let digest = sha256_hex(&st.envelope);
        let path = report_file(&st.node, st.sequence, &digest);
        let statement = parse(&st)?;
        self.add_file(&path, &st.envelope)?;
        self.reports += 1;
        let entry = ChainEntry {
            sequence: st.sequence,
            digest: digest.clone(),
            kind: st.kind.clone(),
            received: rfc3339(st.received_at),
            file: path.clone(),
        };
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| io::Error::other("internal: no open node"))?;
        if open.spooled > 0 {
            self.chain.write_all(b",")?;
        }
        open.spooled += 1;
        serde_json::to_writer(&mut self.chain, &entry).map_err(io::Error::other)?;
        self.nodes
            .get_mut(&st.node)
            .ok_or_else(|| io::Error::other("internal: node state missing"))?
            .chain_end = self.chain.len;
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| io::Error::other("internal: no open node"))?;
        match statement.predicate {
            Predicate::Report(report) => {
                if let Some(csv) = self.csv.as_mut() {
                    for row in tabular::rows(&st.node, &report) {
                        tabular::write_csv_row(csv, &row)?;
                    }
                }
                open.assessment.full_report(&report, &digest, &path);
                open.latest = Some(*report);
            }
            Predicate::Unchanged(u) => {
                open.assessment
                    .unchanged(&u.scan_time, u.count, &digest, &path);
            }
        }
        Ok(())
    }

    fn finish(
        mut self,
        filter: &ExportFilter,
        events: &[ExceptionEvent],
    ) -> Result<ExportSummary, ExportError> {
        let log = exceptions_json(&self.records, events)?;
        self.add_file("exceptions.json", &log)?;

        // The CSV, from its spool.
        let csv = self
            .csv
            .take()
            .ok_or_else(|| io::Error::other("internal: the CSV spool is gone"))?;
        let (sha, len, file) = finish_spool(csv)?;
        self.add_spooled("results.csv", file, len)?;
        self.list("results.csv", &sha, true)?;

        // JUnit: the counts, then the suites from their spool.
        let mut junit = spool()?;
        tabular::write_junit_head(&mut junit, &self.junit_totals)?;
        let suites = std::mem::replace(&mut self.junit, spool()?);
        let (_, suites_len, suites) = finish_spool(suites)?;
        copy_range(&suites, 0, suites_len, &mut junit)?;
        tabular::write_junit_tail(&mut junit)?;
        let (sha, len, file) = finish_spool(junit)?;
        self.add_spooled("junit.xml", file, len)?;
        self.list("junit.xml", &sha, true)?;

        // OSCAL: the document with its results spliced in from their spool.
        let head = pretty(&oscal::document(Vec::new(), self.now, &self.key.keyid()))?;
        let head = String::from_utf8(head).map_err(io::Error::other)?;
        let (before, after) = head.split_once("\"results\": []").ok_or_else(|| {
            io::Error::other("internal: the OSCAL document has no empty results to fill")
        })?;
        let mut ar = spool()?;
        ar.write_all(before.as_bytes())?;
        ar.write_all(b"\"results\": [\n")?;
        let results = std::mem::replace(&mut self.oscal, spool()?);
        let (_, results_len, results) = finish_spool(results)?;
        copy_range(&results, 0, results_len, &mut ar)?;
        ar.write_all(b"\n]")?;
        ar.write_all(after.as_bytes())?;
        let (sha, len, file) = finish_spool(ar)?;
        self.add_spooled("assessment-results.json", file, len)?;
        self.list("assessment-results.json", &sha, true)?;

        // SHA256SUMS, from its spool: every file so far.
        let sums = std::mem::replace(&mut self.sums, spool()?);
        let (sha, len, file) = finish_spool(sums)?;
        self.add_spooled(SUMS_FILE, file, len)?;
        self.list(SUMS_FILE, &sha, false)?;

        // The manifest statement, assembled from the spools.
        let files = self.files + 1;
        let nodes = self.nodes.len();
        let payload = self.payload(filter)?;
        let (_, payload_len, payload) = finish_spool(payload)?;
        let envelope = signed_envelope(&payload, payload_len, &self.key.key)?;
        let (_, envelope_len, envelope) = finish_spool(envelope)?;
        self.add_spooled(MANIFEST_FILE, envelope, envelope_len)?;
        let gz = self.tar.into_inner()?;
        gz.finish()?.flush()?;
        Ok(ExportSummary {
            nodes,
            reports: self.reports,
            files,
            export_keyid: self.key.keyid(),
        })
    }

    /// The manifest statement's JSON (a `ManifestStatement`), written from the subject and
    /// chain spools into a new spool.
    fn payload(&mut self, filter: &ExportFilter) -> Result<Spool, ExportError> {
        let subjects = std::mem::replace(&mut self.subjects, spool()?);
        let (_, subjects_len, subjects) = finish_spool(subjects)?;
        let chain = std::mem::replace(&mut self.chain, spool()?);
        let (_, _, chain) = finish_spool(chain)?;

        let mut out = spool()?;
        write!(out, "{{\"_type\":{},\"subject\":[", json(&STATEMENT_TYPE)?)?;
        copy_range(&subjects, 0, subjects_len, &mut out)?;
        let range = Range {
            since: filter.since.map(rfc3339),
            until: filter.until.map(rfc3339),
            nodes: filter.nodes.clone(),
        };
        write!(
            out,
            "],\"predicateType\":{},\"predicate\":{{\"created\":{},\"collector_version\":{},\
             \"export_keyid\":{},\"range\":{},\"nodes\":[",
            json(&MANIFEST_PREDICATE_TYPE)?,
            json(&rfc3339(self.now))?,
            json(&env!("CARGO_PKG_VERSION"))?,
            json(&self.key.keyid())?,
            json(&range)?,
        )?;
        for (i, state) in self.nodes.values().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            // The node's entry with an empty chain, its chain spliced into the brackets.
            let head = json(&state.manifest)?;
            let head = head.strip_suffix("[]}").ok_or_else(|| {
                io::Error::other("internal: a node's manifest entry does not end in its chain")
            })?;
            out.write_all(head.as_bytes())?;
            out.write_all(b"[")?;
            copy_range(&chain, state.chain_start, state.chain_end, &mut out)?;
            out.write_all(b"]}")?;
        }
        out.write_all(b"]}}")?;
        Ok(out)
    }
}

/// `value` as a JSON string.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<String> {
    serde_json::to_string(value).map_err(io::Error::other)
}

/// Copies bytes `start..end` of `file` to `out`.
fn copy_range(file: &File, start: u64, end: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = start;
    while at < end {
        let want = usize::try_from(end - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a spool file is shorter than written",
            ));
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// The DSSE envelope (`Envelope`'s JSON, one line) of the `len`-byte payload in `payload`,
/// signed by `key`, written to a new spool: the payload is read from the file, never held.
fn signed_envelope(payload: &File, len: u64, key: &ed25519_dalek::SigningKey) -> io::Result<Spool> {
    use ed25519_dalek::hazmat::{raw_sign_byupdate, ExpandedSecretKey};
    use ed25519_dalek::{Digest, Sha512};

    let payload_type = nodeproof_proto::PAYLOAD_TYPE;
    // DSSE's pre-authentication encoding, with the payload streamed after its header.
    let pae_head = format!("DSSEv1 {} {payload_type} {len} ", payload_type.len());
    let failed: RefCell<Option<io::Error>> = RefCell::new(None);
    let expanded = ExpandedSecretKey::from(key.as_bytes());
    let signature = raw_sign_byupdate::<Sha512, _>(
        &expanded,
        |digest: &mut Sha512| {
            digest.update(pae_head.as_bytes());
            let mut hasher = DigestWriter(digest);
            copy_range(payload, 0, len, &mut hasher).map_err(|e| {
                *failed.borrow_mut() = Some(e);
                ed25519_dalek::SignatureError::new()
            })
        },
        &key.verifying_key(),
    );
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    let signature = signature.map_err(|e| io::Error::other(format!("signing failed: {e}")))?;

    // The envelope's JSON around an empty payload, the base64 payload streamed into it.
    let frame = Envelope {
        payload_type: payload_type.to_string(),
        payload: String::new(),
        signatures: vec![nodeproof_proto::Signature {
            keyid: keyid(&key.verifying_key()),
            sig: STANDARD.encode(signature.to_bytes()),
        }],
    }
    .to_json_bytes();
    const EMPTY: &[u8] = b"\"payload\":\"\"";
    let at = frame
        .windows(EMPTY.len())
        .position(|w| w == EMPTY)
        .ok_or_else(|| io::Error::other("internal: the envelope has no payload field"))?
        + EMPTY.len()
        - 1;
    let mut out = spool()?;
    out.write_all(&frame[..at])?;
    // Whole 3-byte groups encode without padding, so chunks of 48 KiB concatenate.
    let mut buf = vec![0u8; 48 * 1024];
    let mut encoded = String::with_capacity(64 * 1024 + 4);
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        payload.read_exact_at(&mut buf[..want], done)?;
        encoded.clear();
        STANDARD.encode_string(&buf[..want], &mut encoded);
        out.write_all(encoded.as_bytes())?;
        done += want as u64;
    }
    out.write_all(&frame[at..])?;
    out.write_all(b"\n")?;
    Ok(out)
}

/// Feeds writes into a digest.
struct DigestWriter<'a>(&'a mut ed25519_dalek::Sha512);

impl Write for DigestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ed25519_dalek::Digest::update(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The statement a stored envelope carries (the collector verified it on receipt; `verify`
/// checks the signature again from the bundle).
fn parse(st: &StoredStatement) -> Result<Statement, ExportError> {
    let bad = |why: String| ExportError::BadStatement {
        node: st.node.clone(),
        digest: st.digest.clone(),
        why,
    };
    let envelope = Envelope::from_json_bytes(&st.envelope).map_err(|e| bad(e.to_string()))?;
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| bad(format!("payload is not base64: {e}")))?;
    serde_json::from_slice(&payload).map_err(|e| bad(format!("payload is not a statement: {e}")))
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ExportError> {
    let mut out = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(out)
}

fn exceptions_json(
    records: &[ExceptionRecord],
    events: &[ExceptionEvent],
) -> Result<Vec<u8>, ExportError> {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id,
                "exception": e.exception_id,
                "action": e.action,
                "at": rfc3339(e.at),
                "by": e.by,
                "reason": e.reason,
                "check": e.check_id,
                "node": e.node,
                "until": rfc3339(e.until),
            })
        })
        .collect();
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "check": r.check_id,
                "cis": r.cis,
                "node": r.node,
                "until": rfc3339(r.until),
                "reason": r.reason,
                "created_by": r.created_by,
                "created_at": rfc3339(r.created_at),
                "revoked_at": r.revoked_at.map(rfc3339),
                "revoked_by": r.revoked_by,
                "revoke_reason": r.revoke_reason,
            })
        })
        .collect();
    pretty(&serde_json::json!({ "log": events, "exceptions": records }))
}

/// Passes writes through and hashes them, counting bytes.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hash.finalize()), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The bundle's README: how to verify it, with nodeproof and with standard tools.
pub fn readme(export_keyid: &str) -> String {
    format!(
        "# nodeproof evidence bundle

Every report in `nodes/<node>/reports/` is a DSSE envelope exactly as the node signed it;
`nodes/<node>/keys.json` lists the node's keys and when each was valid. The manifest
(`manifest.intoto.json`) is an in-toto statement listing every file with its SHA-256 and
each node's chain of report digests, signed by the collector's export key

    export keyid: {export_keyid}

(its public key is `export-key.pub.pem`). Compare that keyid with the one your collector's
operator gave you out of band: a bundle signed by another key proves nothing.

## With nodeproof

    nodeproof-collector verify BUNDLE.tar.gz --export-key PINNED-export-key.pub.pem

checks the manifest's signature, every file's SHA-256, every report's signature against
the node key valid when it was received, and each node's chain for gaps, forks and
reordering. It needs no database and no network; exit 0 means all of it holds.

## Without nodeproof

    mkdir bundle && tar -xzf BUNDLE.tar.gz -C bundle && cd bundle
    sha256sum -c SHA256SUMS

then verify the manifest's DSSE signature with Python's securesystemslib, validate its
statement with in-toto-attestation, and check that every subject's SHA-256 matches its
file; the full steps (a short Python script) are in nodeproof's docs/verifying-evidence.md.

## Files

- `assessment-results.json`: OSCAL 1.2.1 assessment results, one result per node.
- `junit.xml`: each node's latest posture in the range, one test case per check.
- `results.csv`: node,time,check,status,value,source for every check of every full report.
- `exceptions.json`: the exception log (every add and revoke: who, when, why).
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed envelope is byte for byte the one `sign` makes with the payload in
    /// memory (Ed25519 is deterministic), whatever the payload's length modulo 3 and its
    /// chunk count.
    #[test]
    fn a_streamed_manifest_envelope_is_the_in_memory_one() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        for len in [0usize, 1, 2, 3, 4, 48 * 1024, 48 * 1024 + 1, 150_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&payload).unwrap();
            let (_, n, mut env) =
                finish_spool(signed_envelope(&file, len as u64, &key).unwrap()).unwrap();
            env.rewind().unwrap();
            let mut streamed = Vec::new();
            env.read_to_end(&mut streamed).unwrap();
            assert_eq!(n, streamed.len() as u64);
            let mut expected = nodeproof_proto::sign(nodeproof_proto::PAYLOAD_TYPE, &payload, &key)
                .to_json_bytes();
            expected.push(b'\n');
            assert!(streamed == expected, "payload of {len} bytes");
        }
    }

    /// A payload file shorter than its stated length is an error, not a signature.
    #[test]
    fn a_short_payload_spool_is_an_error() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"abc").unwrap();
        let e = signed_envelope(&file, 10, &key).err().expect("an error");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}
