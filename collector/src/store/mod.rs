//! Storage behind a trait, so the HTTP handlers and the CLI do not know which database
//! holds the evidence. Backends: SQLite (`sqlite://path`, embedded, the default) and
//! PostgreSQL (`postgres://...`, several collectors sharing one database). Each runs its
//! migrations when it opens.
//!
//! Times are Unix seconds (UTC) unless a field says RFC 3339. The trait is synchronous:
//! callers on an async runtime run it on a blocking thread; the ingest path batches many
//! accepted reports into one `commit`, so the cost of a durable commit is shared.

/// `SELECT` of a whole `NodeRecord`, followed by the rest of the query: one column list
/// for both backends, in the order their `node_from_row` reads it. (Defined before the
/// backend modules, so that they see it.)
macro_rules! select_node {
    ($rest:literal) => {
        concat!(
            "SELECT name, key_id, public_key, status, enrolled_at, last_sequence, last_digest, \
             last_scan_time, last_seen, interval_secs, last_full_digest, last_full_sequence, \
             posture, summary, failing FROM nodes ",
            $rest
        )
    };
}

pub mod conformance;
pub mod postgres;
mod rules;
pub mod sqlite;

use nodeproof_proto::{Status, Summary};
use serde::{Deserialize, Serialize};

/// What went wrong in the store. Messages say what to do where they can.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no node named {0}")]
    NoSuchNode(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Backend(String),
    #[error(
        "unsupported database URL {0:?}: use sqlite:///path/to/file.db (or \
         sqlite://./relative.db) or postgres://user@host:5432/database"
    )]
    BadUrl(String),
    /// The database file the store opened was removed or replaced: whatever is written now
    /// goes to a file nobody will read again. Sticky for the life of the store.
    #[error("the database file changed under the collector: {0}")]
    Lost(String),
    /// The disk (or the database's size limit) is full.
    #[error("the database is full: {0}")]
    Full(String),
    /// The database server cannot be reached right now (restarting, connection lost): the
    /// call did nothing durable; the same call later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store a database URL names, running its migrations: `sqlite:///abs/path.db`,
/// `sqlite://./relative.db`, `sqlite://relative.db`, or `postgres://user@host:5432/db`
/// (`postgresql://` too). Anything else is `BadUrl`, with any password in the URL masked
/// so the error can be logged.
pub fn open(url: &str) -> StoreResult<Box<dyn Store>> {
    open_url(url, true)
}

/// [`open`] for a database that must already exist: the read commands and `serve` without
/// `--init`, so a mistyped `--db` (or a database deleted behind the collector's back) is an
/// error that names the path instead of a new, empty fleet.
pub fn open_existing(url: &str) -> StoreResult<Box<dyn Store>> {
    open_url(url, false)
}

/// The file a `sqlite://` URL names, for the serve lock; `None` for other URLs.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    url.strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn masked(url: &str) -> String {
    // scheme://user:password@host/... -> scheme://user:***@host/...
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{scheme}://{}:***{}", &authority[..colon], &rest[at..])
        }
        _ => url.to_owned(),
    }
}

fn open_url(url: &str, create: bool) -> StoreResult<Box<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PgStore::open(
            url,
            &masked(url),
            create,
        )?));
    }
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(Box::new(sqlite::SqliteStore::open_mode(
            std::path::Path::new(path),
            sqlite::CheckpointOptions::default(),
            create,
        )?)),
        _ => Err(StoreError::BadUrl(masked(url))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Pending,
    Approved,
    Revoked,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Approved => "approved",
            NodeStatus::Revoked => "revoked",
        }
    }
}

/// A node and the latest state of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
    pub status: NodeStatus,
    pub enrolled_at: i64,
    /// 0 before the first accepted statement.
    pub last_sequence: u64,
    /// Envelope digest of the last accepted statement.
    pub last_digest: Option<String>,
    /// RFC 3339 scan time of the last accepted statement.
    pub last_scan_time: Option<String>,
    /// When the last statement was accepted.
    pub last_seen: Option<i64>,
    pub interval_secs: Option<u64>,
    /// Envelope digest, sequence and posture digest of the last full report.
    pub last_full_digest: Option<String>,
    pub last_full_sequence: Option<u64>,
    pub posture: Option<String>,
    /// Verdict counts of the latest posture.
    pub summary: Option<Summary>,
    /// CIS numbers of scored checks that fail or error in the latest posture.
    pub failing: Vec<String>,
}

/// What a report's handler needs to know about a key before checking a signature with it:
/// whose it is and whether that node may report. A [`NodeRecord`] without the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKey {
    pub name: String,
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
    pub status: NodeStatus,
}

impl From<NodeRecord> for NodeKey {
    fn from(n: NodeRecord) -> NodeKey {
        NodeKey {
            name: n.name,
            key_id: n.key_id,
            public_key: n.public_key,
            status: n.status,
        }
    }
}

/// One check's verdict in a full report, as stored in the latest-state table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    pub id: String,
    pub cis: String,
    pub scored: bool,
    pub status: Status,
}

/// An accepted statement, decided by `accept` and ready to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub node: String,
    pub key_id: String,
    pub digest: String,
    pub sequence: u64,
    pub previous: Option<String>,
    pub received_at: i64,
    pub scan_time: String,
    pub interval_secs: u64,
    /// The exact envelope bytes: the evidence.
    pub envelope: Vec<u8>,
    pub kind: AcceptedKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptedKind {
    /// A full report: appended to history; its checks replace the node's latest state
    /// (and change events are recorded for drift).
    Full {
        posture: String,
        summary: Summary,
        checks: Vec<CheckState>,
    },
    /// An unchanged notice. When the node's previous accepted statement was an unchanged
    /// notice of the same run (`since`), this one replaces it in place; otherwise it is a
    /// new history row.
    Unchanged {
        since: String,
        count: u64,
        first_unchanged: String,
    },
}

/// A chain break, recorded when a signed statement is refused for replay, fork or gap.
/// Counted, not stored per request: one record per (node, kind, digest), so the same
/// statement sent again and again costs one row (see `docs/security.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvent {
    pub node: String,
    /// `replay`, `chain_fork` or `chain_gap`.
    pub kind: String,
    /// When it first came (and, given to `record_chain_event`, when it came this time).
    pub at: i64,
    /// When it last came. Ignored by `record_chain_event`.
    pub last_at: i64,
    /// How many times it came. Ignored by `record_chain_event`, which adds one.
    pub count: u64,
    pub expected_sequence: u64,
    pub got_sequence: u64,
    pub digest: String,
    pub detail: String,
}

/// A pending enrolment: which key claimed a name, from which address, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingClaim {
    pub name: String,
    pub key_id: String,
    /// The peer address the claim came from (unset for claims older than this field).
    pub source: Option<String>,
    pub claimed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub sequence: u64,
    pub digest: String,
    /// `full` or `unchanged`.
    pub kind: String,
    pub scan_time: String,
    pub received_at: i64,
    /// Verdict counts of the posture the statement attests (for an unchanged notice, the
    /// full report's it matches).
    pub summary: Option<Summary>,
    /// For unchanged notices: scans in the run so far, and the full report they match.
    pub count: Option<u64>,
    pub since: Option<String>,
    /// For unchanged notices: the RFC 3339 scan time the run began.
    pub first_unchanged: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    pub node: String,
    pub cis: String,
    /// The previous status, `None` for the node's first report.
    pub from: Option<Status>,
    pub to: Status,
    pub at: i64,
    pub digest: String,
}

/// What [`Store::drift`] returns: the changes, oldest first, and whether older ones since
/// the same time were left out by the limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftPage {
    pub events: Vec<DriftEvent>,
    pub more: bool,
}

/// The page of at most `limit` events from a backend's newest-first rows, which hold one
/// row past the limit when there are more.
pub(crate) fn drift_page(mut newest_first: Vec<DriftEvent>, limit: Option<u32>) -> DriftPage {
    let keep = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let more = newest_first.len() > keep;
    newest_first.truncate(keep);
    newest_first.reverse();
    DriftPage {
        events: newest_first,
        more,
    }
}

/// The store's own counters (scored failures, stale nodes not counted as failing). The fleet
/// view that users see (`server::fleet`) judges every failure and applies exceptions at read
/// time instead; these stay for the scale measurement and the counters' consistency checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeCounts {
    pub total: u64,
    pub approved: u64,
    pub pending: u64,
    pub revoked: u64,
    /// Approved, reported at least once, not stale, no failing scored check.
    pub compliant: u64,
    /// Approved, not stale, at least one failing scored check.
    pub failing: u64,
    /// Approved and silent for more than 3 of its intervals (or never reported).
    pub stale: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    pub id: String,
    pub cis: String,
    pub pass: u64,
    pub fail: u64,
    pub warn: u64,
    pub error: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSummary {
    pub nodes: NodeCounts,
    /// Over approved nodes' latest state, in CIS order.
    pub checks: Vec<CheckCounts>,
}

/// A failing (or erroring) check in an approved node's latest state: every check, scored
/// or not. `id` and `cis` are as the node reported them; the fleet view takes severity
/// from the collector's own catalogue by `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingCheck {
    pub node: String,
    pub id: String,
    pub cis: String,
    pub status: Status,
    /// When the check took this status (the collector's receive time).
    pub since_at: i64,
}

/// An exception to record: `check_id` and `cis` come from the collector's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewException {
    pub check_id: String,
    pub cis: String,
    /// `None`: every node.
    pub node: Option<String>,
    /// Unix seconds; the exception applies while `now < until`.
    pub until: i64,
    pub reason: String,
    pub by: String,
}

/// A recorded exception (waiver). Never deleted: a revoked one keeps who, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRecord {
    pub id: i64,
    pub check_id: String,
    pub cis: String,
    pub node: Option<String>,
    pub until: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl ExceptionRecord {
    /// Whether it excepts failures at Unix time `now`: not revoked and not yet expired.
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.until
    }

    /// Whether it covers `check_id` on `node`.
    pub fn covers(&self, node: &str, check_id: &str) -> bool {
        self.check_id == check_id && self.node.as_deref().is_none_or(|n| n == node)
    }
}

/// One entry of the append-only exception log: an add or a revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionEvent {
    pub id: i64,
    pub exception_id: i64,
    /// `add` or `revoke`.
    pub action: String,
    pub at: i64,
    pub by: String,
    pub reason: String,
    pub check_id: String,
    pub node: Option<String>,
    pub until: i64,
}

/// Which stored statements an evidence export covers: received at or after `since` and
/// before `until` (Unix seconds, the collector's receive time, which grows with each node's
/// sequence), of the named nodes (every node when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub nodes: Vec<String>,
}

/// One stored statement with its exact envelope bytes, for the evidence export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatement {
    pub node: String,
    pub sequence: u64,
    /// Envelope digest (SHA-256 of `envelope`, lowercase hex).
    pub digest: String,
    pub previous: Option<String>,
    /// `full` or `unchanged`.
    pub kind: String,
    /// RFC 3339, as the node signed it.
    pub scan_time: String,
    pub received_at: i64,
    /// The exact envelope bytes as stored: the evidence.
    pub envelope: Vec<u8>,
}

/// One key a node held, and when: from `added_at` (enrolment or rotation) until
/// `retired_at` (the rotation away from it; `None` for the current key). Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPeriod {
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
    pub added_at: i64,
    pub retired_at: Option<i64>,
}

/// One schema change of a backend, embedded from `migrations/<backend>/NNNN_name.sql`; each
/// backend lists its own (`sqlite::MIGRATIONS`, `postgres::schema::MIGRATIONS`), append only.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The storage every backend provides. Implementations must make `commit` atomic (all of
/// the batch or none) and durable before it returns, since the collector acknowledges the
/// reports after it.
pub trait Store: Send + Sync {
    // Bootstrap tokens (only hashes are stored).
    fn create_token(
        &self,
        token_sha256: &str,
        expires_at: i64,
        uses: Option<u32>,
        now: i64,
    ) -> StoreResult<()>;
    /// Uses one use of a valid, unexpired token; false when it is unknown, expired or spent.
    fn redeem_token(&self, token_sha256: &str, now: i64) -> StoreResult<bool>;

    // Nodes.
    /// Registers a node; with the same name and key again it returns the existing record
    /// (approving it if `approved`); with the same name and another key it is a Conflict.
    /// A revoked node stays revoked. A key that belongs (or belonged, before a rotation) to
    /// another node is a Conflict too.
    fn enroll(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        approved: bool,
        now: i64,
    ) -> StoreResult<NodeRecord>;
    fn node(&self, name: &str) -> StoreResult<Option<NodeRecord>>;
    fn node_by_key(&self, key_id: &str) -> StoreResult<Option<NodeRecord>>;
    /// [`Store::node_by_key`] without the chain state, for the ingest path (a backend may
    /// answer it with a narrower query).
    fn node_key(&self, key_id: &str) -> StoreResult<Option<NodeKey>> {
        Ok(self.node_by_key(key_id)?.map(NodeKey::from))
    }
    /// [`Store::node_key`] of each of `key_ids`, in order, read together (one snapshot):
    /// the ingest writer confirms a batch's remembered keys with it.
    fn node_keys(&self, key_ids: &[&str]) -> StoreResult<Vec<Option<NodeKey>>> {
        key_ids.iter().map(|k| self.node_key(k)).collect()
    }
    fn set_status(&self, name: &str, status: NodeStatus, now: i64) -> StoreResult<()>;
    /// Switches a node from `old_key_id` to a new key (Conflict if the current key is not
    /// `old_key_id` or the new key belongs to another node). Keys are never reused: one
    /// that any node held before is a Conflict as well. Old keys are kept for audit.
    fn rotate_key(
        &self,
        name: &str,
        old_key_id: &str,
        new_key_id: &str,
        new_public_key: &str,
        now: i64,
    ) -> StoreResult<()>;
    fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    // Ingest.
    /// Commits accepted statements in order, atomically and durably, updating each node's
    /// chain state, latest checks, per-check counters and drift events. It re-checks what
    /// may have changed since acceptance: the whole batch is refused with a Conflict when a
    /// node is no longer approved, its key is no longer `key_id`, a sequence does not
    /// extend its chain, a digest is already stored, or a notice's `since` is not the
    /// node's last full report (NoSuchNode for an unknown node).
    fn commit(&self, batch: &[Accepted]) -> StoreResult<()>;
    /// Whether a statement with this envelope digest is stored (retries answer 200). An
    /// unchanged notice replaced by the next notice of its run is no longer stored.
    fn has_digest(&self, digest: &str) -> StoreResult<bool>;
    /// Records a chain break at `event.at`: the first time for its (node, kind, digest) a
    /// new record with count 1 (returns true), after that only its count and last time
    /// change (returns false).
    fn record_chain_event(&self, event: &ChainEvent) -> StoreResult<bool>;
    /// In the order first recorded; NoSuchNode for an unknown node (also from
    /// `record_chain_event`).
    fn chain_events(&self, node: &str) -> StoreResult<Vec<ChainEvent>>;

    // Pending enrolments and names.
    /// Every pending claim, oldest first: each pending node's, and the later claims other
    /// keys made on a pending name (several per name).
    fn pending_claims(&self) -> StoreResult<Vec<PendingClaim>>;
    /// Records another key's claim on a name that is pending with a different key, so a
    /// squatter's earlier claim cannot keep the real node's claim from the operator. The
    /// same key again is a no-op. Conflict when the name is not pending or the key belongs
    /// to (or claims) another node; NoSuchNode for an unknown name.
    fn add_claim(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        source: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Notes the peer address of the claim when `name` is pending with `key_id`.
    fn set_claim_source(&self, name: &str, key_id: &str, source: &str) -> StoreResult<()>;
    /// Drops every pending claim made before `enrolled_before` and returns them. A pending
    /// node whose claim expired is deleted (as [`Store::delete_node`]), unless a later claim
    /// on its name is still live: that one becomes the pending node.
    fn expire_pending(&self, enrolled_before: i64) -> StoreResult<Vec<PendingClaim>>;
    /// Deletes a pending or revoked node with its keys, every claim on its name and
    /// everything stored about it, so the name can be enrolled again; an approved node is a
    /// Conflict (revoke it first).
    fn delete_node(&self, name: &str) -> StoreResult<NodeRecord>;
    /// Approves a pending node and drops the other claims on its name. With several claims
    /// `key_id` must say which (Conflict without it); with `key_id`, only that claim's key
    /// is approved (Conflict when no claim on the name has it). A revoked node is a
    /// Conflict; an approved one is left as it is.
    fn approve(&self, name: &str, key_id: Option<&str>, now: i64) -> StoreResult<NodeRecord>;

    // Queries.
    fn fleet_summary(&self, now: i64) -> StoreResult<FleetSummary>;
    /// Newest first, at most `limit`; NoSuchNode for an unknown node.
    fn history(&self, node: &str, limit: u32) -> StoreResult<Vec<HistoryEntry>>;
    fn envelope(&self, digest: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The node's stored chain, oldest first, as `nodeproof_proto::chain::walk` reads it
    /// (from the stored columns: digest, sequence, previous, kind; for a notice its `since`,
    /// `count`, and as `since_sequence` the stored sequence of its `since` report, 0 when
    /// that report is not stored); NoSuchNode for an unknown node.
    fn chain_links(&self, node: &str) -> StoreResult<Vec<nodeproof_proto::chain::ChainLink>>;
    /// Approved nodes whose latest state has this check failing (or in error).
    fn failing(&self, cis: &str) -> StoreResult<Vec<NodeRecord>>;
    /// Names of approved nodes that are stale at `now`: silent for more than 3 of their
    /// intervals, or never reported (the rule of `fleet_summary`'s `stale`).
    fn stale_nodes(&self, now: i64) -> StoreResult<Vec<String>>;
    /// Every failing or erroring check of approved nodes' latest state (scored or not),
    /// by node name, then CIS order.
    fn failing_checks(&self) -> StoreResult<Vec<FailingCheck>>;
    /// Check changes accepted at or after `since` (the collector's receive time, so a report
    /// delivered late is not missed by a poller), oldest first. With `limit`, only the newest
    /// `limit` of them (by receive time, then the order recorded), read as such from the
    /// database rather than all read and then cut, and `more` says whether older ones were
    /// left out; without it, all of them and `more` is false.
    fn drift(&self, since: i64, limit: Option<u32>) -> StoreResult<DriftPage>;
    // Exceptions.
    /// Records an exception and its `add` event together. NoSuchNode when `node` names no
    /// enrolled node (a typo would otherwise except nothing, silently).
    fn add_exception(&self, new: &NewException, now: i64) -> StoreResult<ExceptionRecord>;
    /// Revokes an exception and records the `revoke` event together; `None` when there is
    /// no exception `id`, Conflict when it is already revoked.
    fn revoke_exception(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<ExceptionRecord>>;
    /// Every exception ever added (revoked and expired ones too), by id.
    fn exceptions(&self) -> StoreResult<Vec<ExceptionRecord>>;
    /// The exception log, oldest first.
    fn exception_events(&self) -> StoreResult<Vec<ExceptionEvent>>;

    // Evidence export.
    /// Calls `f` with every stored statement `filter` selects, ordered by node name, then
    /// sequence, one at a time (a backend streams them, so memory stays flat however many
    /// there are). An error from `f` stops the walk and is returned.
    fn for_each_statement(
        &self,
        filter: &ExportFilter,
        f: &mut dyn FnMut(StoredStatement) -> StoreResult<()>,
    ) -> StoreResult<()>;
    /// The statement stored last before `before` (receive time, Unix seconds) for `node`:
    /// where a range's chain starts. `None` when there is none; NoSuchNode for an unknown
    /// node.
    fn chain_anchor(
        &self,
        node: &str,
        before: i64,
    ) -> StoreResult<Option<nodeproof_proto::chain::Anchor>>;
    /// Every key `node` held, oldest first, with its validity period; NoSuchNode for an
    /// unknown node.
    fn key_history(&self, node: &str) -> StoreResult<Vec<KeyPeriod>>;

    /// Stored bytes, for the storage-growth measurement.
    fn size_bytes(&self) -> StoreResult<u64>;

    // The database file itself.
    /// `Err(Lost)` once the file the store opened is gone or replaced (checked now, sticky
    /// afterwards). The ingest writer calls it before acknowledging each batch, so a
    /// report is never acknowledged into an unlinked file. Cheap: one `stat`.
    fn check_file(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The state of the database for `/healthz`: the same file, writable, not full (less
    /// than `min_free_bytes` free on its file system counts as full).
    fn health(&self, min_free_bytes: u64) -> StoreHealth {
        let _ = min_free_bytes;
        StoreHealth::default()
    }

    /// Whether other collectors may write this database at the same time (PostgreSQL).
    /// Then the ingest writer must not carry a node's chain state from one batch to the
    /// next: another collector may have extended the chain in between.
    fn shared(&self) -> bool {
        false
    }
}

/// What `/healthz` says about the database. `problems` is empty exactly when all is well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The file the store opened is still the file at its path.
    pub same_file: bool,
    /// The file and its file system accept writes.
    pub writable: bool,
    /// Free space is below the threshold.
    pub full: bool,
    /// Free bytes on the database's file system, when known.
    pub free_bytes: Option<u64>,
    /// What is wrong, each with what to do.
    pub problems: Vec<String>,
}

impl Default for StoreHealth {
    fn default() -> StoreHealth {
        StoreHealth {
            same_file: true,
            writable: true,
            full: false,
            free_bytes: None,
            problems: Vec::new(),
        }
    }
}
