//! Writes the evidence bundle as a stream: statements come from the store one at a time
//! (`Store::for_each_statement`) and go straight into the tar.gz; the CSV rows are spooled
//! to a temporary file. What stays in memory grows with the nodes and checks, plus one
//! manifest entry (about 250 bytes) per report: the manifest must be whole to be signed.
//! File order is fixed (README, export key, then node by node, then the aggregate files,
//! SHA256SUMS and the manifest last), so two exports of the same history list the same
//! files in the same order.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Seek, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use nodeproof_proto::chain::Anchor;
use nodeproof_proto::statement::STATEMENT_TYPE;
use nodeproof_proto::tabular::{self, Suite};
use nodeproof_proto::{sha256_hex, Envelope, Predicate, Report, Statement, Subject};
use sha2::{Digest, Sha256};

use super::manifest::{
    key_file, keys_file, keys_of, report_file, safe_name, ChainEntry, ExportKey, KeyEntry,
    Manifest, ManifestStatement, NodeManifest, Range, EXPORT_KEY_FILE, MANIFEST_FILE,
    MANIFEST_PREDICATE_TYPE, SUMS_FILE,
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
    let mut w = Writer::new(out, now, key)?;
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
    // Nodes named in the filter that had nothing in the range still show their keys.
    for name in &filter.nodes {
        if !w.nodes.contains_key(name) {
            w.open_node(store, filter, name)?;
        }
    }
    w.finish(store, filter)
}

/// Per node: what the manifest, the JUnit file and the OSCAL result need.
struct NodeState {
    manifest: NodeManifest,
    assessment: NodeAssessment,
    latest: Option<Report>,
}

struct Writer<'a> {
    tar: tar::Builder<flate2::write::GzEncoder<&'a mut dyn Write>>,
    now: i64,
    key: &'a ExportKey,
    subjects: Vec<Subject>,
    nodes: BTreeMap<String, NodeState>,
    csv: Option<HashingWriter<BufWriter<std::fs::File>>>,
    reports: u64,
}

impl<'a> Writer<'a> {
    fn new(
        out: &'a mut dyn Write,
        now: i64,
        key: &'a ExportKey,
    ) -> Result<Writer<'a>, ExportError> {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        let mut csv = HashingWriter::new(BufWriter::new(tempfile::tempfile()?));
        tabular::write_csv_header(&mut csv)?;
        Ok(Writer {
            tar: tar::Builder::new(gz),
            now,
            key,
            subjects: Vec::new(),
            nodes: BTreeMap::new(),
            csv: Some(csv),
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

    /// Adds a file and lists it (with its SHA-256) for the manifest.
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let mut h = self.header(bytes.len() as u64);
        self.tar.append_data(&mut h, path, bytes)?;
        self.subjects.push(Subject::sha256(path, sha256_hex(bytes)));
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
                assessment: NodeAssessment::new(name),
                latest: None,
            },
        );
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
        if !self.nodes.contains_key(&st.node) {
            self.open_node(store, filter, &st.node)?;
        }
        let digest = sha256_hex(&st.envelope);
        let path = report_file(&st.node, st.sequence, &digest);
        let statement = parse(&st)?;
        self.add_file(&path, &st.envelope)?;
        self.reports += 1;
        let state = self
            .nodes
            .get_mut(&st.node)
            .ok_or_else(|| io::Error::other("internal: node state missing"))?;
        state.manifest.chain.push(ChainEntry {
            sequence: st.sequence,
            digest: digest.clone(),
            kind: st.kind.clone(),
            received: rfc3339(st.received_at),
            file: path.clone(),
        });
        match statement.predicate {
            Predicate::Report(report) => {
                if let Some(csv) = self.csv.as_mut() {
                    for row in tabular::rows(&st.node, &report) {
                        tabular::write_csv_row(csv, &row)?;
                    }
                }
                state.assessment.full_report(&report, &digest, &path);
                state.latest = Some(*report);
            }
            Predicate::Unchanged(u) => {
                state
                    .assessment
                    .unchanged(&u.scan_time, u.count, &digest, &path);
            }
        }
        Ok(())
    }

    fn finish(
        mut self,
        store: &dyn Store,
        filter: &ExportFilter,
    ) -> Result<ExportSummary, ExportError> {
        let records = store.exceptions()?;
        let events = store.exception_events()?;
        self.add_file("exceptions.json", &exceptions_json(&records, &events)?)?;

        // The CSV, from its spool.
        let mut csv = self
            .csv
            .take()
            .ok_or_else(|| io::Error::other("internal: the CSV spool is gone"))?;
        csv.flush()?;
        let (sha, len, buffered) = csv.finish();
        let mut file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        let mut h = self.header(len);
        self.tar
            .append_data(&mut h, "results.csv", (&mut file).take(len))?;
        self.subjects.push(Subject::sha256("results.csv", sha));

        let suites: Vec<Suite> = self
            .nodes
            .values()
            .filter_map(|n| {
                n.latest.as_ref().map(|r| Suite {
                    node: n.manifest.name.clone(),
                    time: r.scan_time.clone(),
                    rows: tabular::rows(&n.manifest.name, r),
                })
            })
            .collect();
        let mut junit = Vec::new();
        tabular::write_junit(&mut junit, &suites)?;
        self.add_file("junit.xml", &junit)?;

        let in_force_at = filter.until.map_or(self.now, |u| u.min(self.now));
        let assessments: Vec<&NodeAssessment> =
            self.nodes.values().map(|n| &n.assessment).collect();
        let ar = oscal::assessment_results(
            &assessments,
            &records,
            in_force_at,
            self.now,
            &self.key.keyid(),
        );
        self.add_file("assessment-results.json", &pretty(&ar)?)?;

        let mut sums = String::new();
        for s in &self.subjects {
            let sha = s
                .digest
                .get("sha256")
                .map(String::as_str)
                .unwrap_or_default();
            sums.push_str(&format!("{sha}  {}\n", s.name));
        }
        self.add_file(SUMS_FILE, sums.as_bytes())?;

        let files = self.subjects.len() as u64 + 1;
        let nodes = self.nodes.len();
        let statement = ManifestStatement {
            type_: STATEMENT_TYPE.to_string(),
            subject: std::mem::take(&mut self.subjects),
            predicate_type: MANIFEST_PREDICATE_TYPE.to_string(),
            predicate: Manifest {
                created: rfc3339(self.now),
                collector_version: env!("CARGO_PKG_VERSION").to_string(),
                export_keyid: self.key.keyid(),
                range: Range {
                    since: filter.since.map(rfc3339),
                    until: filter.until.map(rfc3339),
                    nodes: filter.nodes.clone(),
                },
                nodes: std::mem::take(&mut self.nodes)
                    .into_values()
                    .map(|n| n.manifest)
                    .collect(),
            },
        };
        let payload = serde_json::to_vec(&statement).map_err(io::Error::other)?;
        let envelope =
            nodeproof_proto::sign(nodeproof_proto::PAYLOAD_TYPE, &payload, &self.key.key);
        let mut bytes = envelope.to_json_bytes();
        bytes.push(b'\n');
        let mut h = self.header(bytes.len() as u64);
        self.tar
            .append_data(&mut h, MANIFEST_FILE, bytes.as_slice())?;
        let gz = self.tar.into_inner()?;
        gz.finish()?.flush()?;
        Ok(ExportSummary {
            nodes,
            reports: self.reports,
            files,
            export_keyid: self.key.keyid(),
        })
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
