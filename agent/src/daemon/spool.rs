//! The spool: every statement the daemon builds is written here, fsync'd, before it is
//! sent, and deleted only once the collector has acknowledged it. So a crash, a reboot or a
//! collector outage loses nothing, and what is sent is exactly what was written (the chain
//! digest of a statement is the SHA-256 of these bytes).
//!
//! Layout of the spool directory (mode 0700):
//!
//! ```text
//! state.json                     chain state (atomic: temp file, fsync, rename, fsync dir)
//! lock                           "pid starttime" of the daemon using the spool
//! NNNNNNNNNNNNNNNNNNNN.json      one DSSE envelope per undelivered statement; NNN (20
//!                                digits) is a slot number that only grows, so name order
//!                                is chain order; the chain sequence is inside
//! rejected/NNN...N.json          statements the collector refused (or found damaged here),
//! rejected/NNN...N.reason.json   set aside byte for byte, with why; never retried
//! foreign/NAME                   anything else found in the directory, moved aside unopened
//! .NAME.tmp                      a write in progress; removed on open
//! ```
//!
//! Only names the agent wrote are slots: a regular file (never a FIFO, device, symlink or
//! directory, which are moved to `foreign/` by name, without being opened), named as above,
//! whose number the slot counter has already given out (at most one past it: the crash
//! between writing a statement and saving the state). A file named with a larger number
//! was not written here and would pin the counter, so it is set aside too. Files are read
//! non-blocking and bounded (see [`super::files`]). The counter stays far below the largest
//! 20-digit name: before it reaches [`SLOT_LIMIT`] the spooled statements are renumbered
//! from 1, so it can neither wrap nor stick.
//!
//! `state.json` holds what the statements cannot say: the chain point the first spooled
//! statement follows (`base`: the last statement the collector acknowledged, or the one it
//! named in a chain error), the last full report it acknowledged (what a notice at the head
//! rests on), the last full report built and the current run of unchanged scans.
//!
//! Re-chaining is done at the head. When a statement leaves the spool without being
//! delivered (refused, dropped because the spool is full) or the collector names another
//! chain point, only the state changes; the statements behind keep their bytes. Each one is
//! re-linked to the base (sequence, `previous`, and for a notice `since`), re-signed and
//! atomically rewritten when it comes to the head, just before it is sent. A refusal or a
//! drop thus costs one rewrite, not one per spooled statement (a week of spool refused
//! `too_old` after a long outage would otherwise rewrite the spool once per statement), and
//! a crash at any point leaves a spool that needs no repair: the head is fixed on the way out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use nodeproof_proto::{
    keyid, sha256_hex, sign_statement, verify_envelope, verifying_key_from_pem,
    verifying_key_to_pem, Envelope, Report, SignError,
};
use serde::{Deserialize, Serialize};

use super::chain::{
    self, build_statement, decide, next_link, plan_eviction, same_base, with_dependents,
    ChainPoint, Decision, FullRef, Kind, Run, Spooled,
};
use super::files::{self, read_regular, Follow};

pub const STATE_FILE: &str = "state.json";
pub const LOCK_FILE: &str = "lock";
pub const REJECTED_DIR: &str = "rejected";
pub const FOREIGN_DIR: &str = "foreign";
const DAMAGED_STATE: &str = "state.json.damaged";
/// The slot counter never goes past this; the spool is renumbered from 1 before it would.
pub const SLOT_LIMIT: u64 = 1_000_000_000_000_000_000;
/// No statement the agent writes comes near this (the collector takes at most 1 MiB).
const MAX_FILE_BYTES: u64 = 16 << 20;
const STATE_VERSION: u32 = 1;

/// Why the spool could not be used or changed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the spool {} is in use by process {pid} (another `nodeproof-agent run`?): stop it, \
         or give this agent its own --spool directory",
        dir.display()
    )]
    Locked { dir: PathBuf, pid: u32 },

    #[error(
        "the spool {dir} holds the chain of node \"{found}\", but this agent reports as \
         \"{expected}\" (its name comes from --node-name, else the kubelet's \
         --hostname-override, else the hostname; `nodeproof-agent enroll` prints it). If \
         \"{expected}\" is the name the node is enrolled under, move the old chain aside: \
         `mv {dir} {dir}.{found}` (a new chain starts; what was spooled for \"{found}\" stays \
         in the moved directory). If the node is enrolled as \"{found}\", run with \
         --node-name {found} (NODEPROOF_NODE_NAME={found})",
        dir = dir.display()
    )]
    OtherNode {
        dir: PathBuf,
        found: String,
        expected: String,
    },

    #[error("--spool-max must be at least 1 statement")]
    ZeroMax,

    #[error(transparent)]
    Sign(#[from] SignError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// When statements were dropped because the spool was full; kept in the state so a person
/// can see that the chain was re-linked over a hole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropNote {
    pub at: String,
    pub count: u64,
    /// Sequences and scan times of the oldest and newest dropped statement.
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub first_scan: String,
    pub last_scan: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    node: String,
    /// The key that signed the spooled statements, so that after a key rotation they can
    /// be checked with it before being re-signed with the new one.
    key_id: String,
    public_key: String,
    base: ChainPoint,
    next_slot: u64,
    /// The last full report the collector acknowledged.
    #[serde(default)]
    acked_full: Option<FullRef>,
    /// The last full report built (spooled or acknowledged): what the next scan compares
    /// its posture with.
    last_full: Option<FullRef>,
    run: Option<Run>,
    #[serde(default)]
    dropped_total: u64,
    #[serde(default)]
    rejected_total: u64,
    #[serde(default)]
    last_drop: Option<DropNote>,
}

/// A statement set aside in `rejected/`, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// RFC 3339.
    pub at: String,
    /// The HTTP status, when the collector refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The collector's error code (`clock_skew`, `bad_statement`, ...) or ours: `damaged`
    /// (unreadable or not verifiable in the spool), `base_rejected` (a notice whose full
    /// report was refused or lost).
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// One undelivered statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub slot: u64,
    /// Where it stands in the chain: the base's sequence plus its place in the spool. The
    /// file says the same once the statement has been re-linked at the head.
    pub sequence: u64,
    /// [`sha256_hex`] of the envelope bytes in the file now.
    pub digest: String,
    pub kind: Kind,
    pub scan_time: String,
    /// Digests this statement had before this process re-signed it, so that a chain error
    /// naming one of them is recognised as "already delivered".
    pub former_digests: Vec<String>,
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub entry: Entry,
    /// Oldest statements dropped to make room (0 when there was room).
    pub dropped: usize,
}

/// The spool directory, open and locked.
pub struct Spool {
    dir: PathBuf,
    max: usize,
    key: SigningKey,
    old_key: Option<VerifyingKey>,
    node: String,
    state: State,
    pending: Vec<Entry>,
    /// Files set aside since the spool was opened without the collector refusing them:
    /// foreign files, damaged statements.
    set_aside_here: u64,
    _lock: Lock,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max", &self.max)
            .field("node", &self.node)
            .field("key_id", &keyid(&self.key.verifying_key()))
            .field("base", &self.state.base)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating it if needed) and locks the spool in `dir` for `node`, signing with
    /// `key`, holding at most `max` statements. Cleans up what a crash may have left: stray
    /// temp files, a statement acknowledged but not yet deleted, damaged files (set aside),
    /// statements signed by the previous key (checked with it, then re-signed).
    pub fn open(dir: &Path, node: &str, key: SigningKey, max: usize) -> Result<Spool, SpoolError> {
        if max == 0 {
            return Err(SpoolError::ZeroMax);
        }
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(io_err("create the spool directory", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("set the mode of", dir))?;
        }
        let lock = Lock::acquire(dir)?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max,
            old_key: None,
            node: node.to_string(),
            state: State {
                version: STATE_VERSION,
                node: node.to_string(),
                key_id: keyid(&key.verifying_key()),
                public_key: String::new(),
                base: ChainPoint::GENESIS,
                next_slot: 1,
                acked_full: None,
                last_full: None,
                run: None,
                dropped_total: 0,
                rejected_total: 0,
                last_drop: None,
            },
            key,
            pending: Vec::new(),
            set_aside_here: 0,
            _lock: lock,
        };
        spool.recover()?;
        Ok(spool)
    }

    /// Reads the spool from disk again, as [`Spool::open`] does (without re-locking): for
    /// after an I/O error left the in-memory view in doubt.
    pub fn recover(&mut self) -> Result<(), SpoolError> {
        let dir = self.dir.clone();
        let (slots, moved) = sort_directory(&dir)?;
        self.set_aside_here += moved;
        let current_id = keyid(&self.key.verifying_key());
        let fresh = match read_state(&dir)? {
            Some(s) => {
                self.state = s;
                false
            }
            None => {
                self.state.base = ChainPoint::GENESIS;
                self.state.acked_full = None;
                self.state.last_full = None;
                self.state.run = None;
                true
            }
        };
        if self.state.node != self.node {
            return Err(SpoolError::OtherNode {
                dir,
                found: self.state.node.clone(),
                expected: self.node.clone(),
            });
        }
        self.old_key = None;
        if self.state.key_id != current_id {
            tracing::warn!(
                old_key = %self.state.key_id,
                new_key = %current_id,
                "the signing key changed since the spool was last used; spooled statements \
                 signed by the old key are checked with it and re-signed with the new one"
            );
            self.old_key = verifying_key_from_pem(&self.state.public_key).ok();
        }
        self.pending.clear();

        // Slots the counter never gave out were not written here (a file copied in, or
        // named to pin the counter); one past it is the crash before the state was saved.
        // Without a state, every verifiable statement counts.
        let (slots, strays): (Vec<u64>, Vec<u64>) = if fresh {
            (slots, Vec::new())
        } else {
            let limit = self.state.next_slot;
            slots.into_iter().partition(|s| *s <= limit)
        };
        for slot in strays {
            let name = slot_name(slot);
            tracing::warn!(
                file = %dir.join(&name).display(),
                next_slot = self.state.next_slot,
                "a statement file numbered beyond the spool's counter was not written by this \
                 agent; moved to foreign/ unread"
            );
            set_aside_foreign(&dir, &name)?;
            self.set_aside_here += 1;
        }
        let mut loaded = self.load_slots(&slots)?;
        if let Some((last, _)) = loaded.last() {
            self.state.next_slot = self.state.next_slot.max(last.slot.saturating_add(1));
        }
        self.state.next_slot = self.state.next_slot.max(1);
        if fresh {
            // No state (first start, or it was lost): the first spooled statement says
            // where the chain stood.
            if let Some(link) = loaded.first().and_then(|(_, s)| s.statement.link()) {
                self.state.base = ChainPoint {
                    sequence: link.sequence.saturating_sub(1),
                    digest: link.previous.clone(),
                };
            }
        }
        // A statement whose digest is the base was acknowledged; the crash came before its
        // file was deleted.
        if let Some(d) = self.state.base.digest.clone() {
            if let Some(pos) = loaded.iter().position(|(e, _)| e.digest == d) {
                for (entry, _) in loaded.drain(..=pos) {
                    self.remove_file(entry.slot)?;
                }
            }
        }
        if loaded.iter().any(|(_, s)| s.signed_by != current_id) {
            // After a key rotation: re-sign everything now, while the old key is on record.
            self.rekey(loaded)?;
        } else {
            self.pending = loaded.into_iter().map(|(e, _)| e).collect();
        }
        self.refresh_tail();
        if self.pending.len() > self.max {
            let need = self.pending.len() - self.max;
            self.evict(need, false)?;
        }
        if self.state.next_slot >= SLOT_LIMIT {
            self.renumber()?;
        }
        self.state.key_id = current_id;
        self.state.public_key =
            verifying_key_to_pem(&self.key.verifying_key()).map_err(|e| SpoolError::Io {
                action: "encode the public key for",
                path: dir.join(STATE_FILE),
                source: io::Error::other(e.to_string()),
            })?;
        self.old_key = None;
        self.save_state()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The undelivered statements, oldest (next to send) first.
    pub fn pending(&self) -> &[Entry] {
        &self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The chain point the first spooled statement follows.
    pub fn base(&self) -> &ChainPoint {
        &self.state.base
    }

    /// The last full report built, which a notice about an unchanged scan points at.
    pub fn last_full(&self) -> Option<&FullRef> {
        self.state.last_full.as_ref()
    }

    /// The last full report the collector acknowledged.
    pub fn acked_full(&self) -> Option<&FullRef> {
        self.state.acked_full.as_ref()
    }

    /// The run of unchanged scans since [`Spool::last_full`].
    pub fn run(&self) -> Option<&Run> {
        self.state.run.as_ref()
    }

    /// Statements dropped because the spool was full, since it was created.
    pub fn dropped_total(&self) -> u64 {
        self.state.dropped_total
    }

    /// The last time statements were dropped.
    pub fn last_drop(&self) -> Option<&DropNote> {
        self.state.last_drop.as_ref()
    }

    /// Files set aside since the spool was opened for a reason of the spool's own, not the
    /// collector's: foreign files moved to `foreign/`, damaged statements to `rejected/`.
    pub fn set_aside_here(&self) -> u64 {
        self.set_aside_here
    }

    /// The slot the next statement is written to.
    pub fn next_slot(&self) -> u64 {
        self.state.next_slot
    }

    /// Statements set aside in `rejected/`, since the spool was created.
    pub fn rejected_total(&self) -> u64 {
        self.state.rejected_total
    }

    /// The bytes of a spooled statement as they are on disk now.
    pub fn read(&self, entry: &Entry) -> Result<Vec<u8>, SpoolError> {
        let path = self.slot_path(entry.slot);
        read_regular(&path, Follow::NoSymlink, MAX_FILE_BYTES)
            .map_err(io_err("read the spooled statement", &path))
    }

    /// The next statement to send and its exact bytes, linked to the base: when it does
    /// not yet follow the base (something before it left the spool undelivered, or the
    /// collector named another chain point), it is re-linked, re-signed and atomically
    /// rewritten first. A file that is unreadable, no longer verifies or changed on disk
    /// is set aside as damaged (with the notices resting on it) and the next one taken.
    pub fn head(&mut self) -> Result<Option<(Entry, Vec<u8>)>, SpoolError> {
        loop {
            let Some(entry) = self.pending.first().cloned() else {
                return Ok(None);
            };
            let spooled = match self.load_slot(entry.slot) {
                Ok((_, s)) if sha256_hex(&s.bytes) == entry.digest => s,
                Ok(_) => {
                    self.set_aside_damaged(0, "its bytes changed on disk after it was written")?;
                    continue;
                }
                Err(why) => {
                    self.set_aside_damaged(0, &why)?;
                    continue;
                }
            };
            let mut statement = spooled.statement.clone();
            chain::relink(
                &mut statement,
                self.state.base.sequence.saturating_add(1),
                self.state.base.digest.clone(),
                self.state.acked_full.as_ref(),
            );
            if statement == spooled.statement {
                return Ok(Some((entry, spooled.bytes)));
            }
            let bytes = sign_statement(&statement, &self.key)?.to_json_bytes();
            self.write_slot(entry.slot, &bytes)?;
            let digest = sha256_hex(&bytes);
            tracing::info!(
                sequence = entry.sequence,
                slot = entry.slot,
                digest = %digest,
                "re-linked the next statement to the chain and re-signed it"
            );
            let head = &mut self.pending[0];
            head.former_digests
                .push(std::mem::replace(&mut head.digest, digest));
            head.kind = Kind::of(&statement);
            let head = head.clone();
            self.refresh_tail();
            self.save_state()?;
            return Ok(Some((head, bytes)));
        }
    }

    /// Builds the statement for a scan (a full report, or an unchanged notice when the
    /// posture is that of the last full report), signs it and writes it to the spool
    /// (fsync'd file and directory) before anyone sends it. When the spool is full the
    /// oldest undelivered statements are dropped first.
    pub fn append(&mut self, report: Report, interval_secs: u64) -> Result<Appended, SpoolError> {
        let posture = report.posture_digest();
        let mut decision = decide(
            self.state.last_full.as_ref(),
            self.state.run.as_ref(),
            &posture,
            &report.scan_time,
        );
        let mut dropped = 0;
        if self.pending.len() >= self.max {
            let need = self.pending.len() + 1 - self.max;
            // A notice rests on the latest spooled full report, when there is one.
            let protect = matches!(decision, Decision::Unchanged { .. })
                && self.pending.iter().any(|e| e.kind.is_full());
            dropped = self.evict(need, protect)?;
            // Dropping may have taken the report the notice was to rest on.
            decision = decide(
                self.state.last_full.as_ref(),
                self.state.run.as_ref(),
                &posture,
                &report.scan_time,
            );
        }
        let link = next_link(
            &self.state.base,
            self.pending.len(),
            self.pending.last().map(|e| e.digest.as_str()),
            &self.node,
            interval_secs,
        );
        let sequence = link.sequence;
        let scan_time = report.scan_time.clone();
        let statement = build_statement(report, &decision, link);
        let bytes = sign_statement(&statement, &self.key)?.to_json_bytes();
        let digest = sha256_hex(&bytes);
        if self.state.next_slot >= SLOT_LIMIT {
            self.renumber()?;
        }
        let slot = self.state.next_slot;
        self.write_slot(slot, &bytes)?;
        let entry = Entry {
            slot,
            sequence,
            digest,
            kind: Kind::of(&statement),
            scan_time,
            former_digests: Vec::new(),
        };
        self.pending.push(entry.clone());
        self.state.next_slot = slot.saturating_add(1);
        self.refresh_tail();
        self.save_state()?;
        Ok(Appended { entry, dropped })
    }

    /// The collector acknowledged the head (201, or 200 duplicate): it becomes the base,
    /// then its file goes.
    pub fn ack_head(&mut self) -> Result<(), SpoolError> {
        let Some(head) = self.pending.first().cloned() else {
            return Ok(());
        };
        self.state.base = ChainPoint {
            sequence: head.sequence,
            digest: Some(head.digest.clone()),
        };
        if let Kind::Full { posture } = &head.kind {
            self.state.acked_full = Some(FullRef {
                digest: head.digest.clone(),
                sequence: head.sequence,
                posture: posture.clone(),
            });
        }
        self.pending.remove(0);
        self.refresh_tail();
        self.save_state()?;
        self.remove_file(head.slot)
    }

    /// The collector refused the head for a reason of its own (4xx other than a chain
    /// error): set it aside in `rejected/` with the reason, and with it the notices that
    /// rest on it when it is a full report. The statements behind are re-linked as they
    /// come to the head. Returns how many went.
    pub fn reject_head(&mut self, rejection: &Rejection) -> Result<usize, SpoolError> {
        let indices = with_dependents(&self.fulls(), 0);
        self.reject_indices(&indices, rejection)
    }

    /// The collector does not know the full report the head notice rests on
    /// (`unknown_base`): set aside every notice of that run and forget that report, so the
    /// next scan is sent in full. Returns how many went.
    pub fn reject_head_run(&mut self, rejection: &Rejection) -> Result<usize, SpoolError> {
        let fulls = self.fulls();
        let mut indices = same_base(&fulls, 0);
        if indices.is_empty() {
            indices = with_dependents(&fulls, 0);
        }
        if let Some(Kind::Unchanged { since, .. }) = self.pending.first().map(|e| e.kind.clone()) {
            for full in [&mut self.state.acked_full, &mut self.state.last_full] {
                if full.as_ref().is_some_and(|f| f.digest == since) {
                    *full = None;
                }
            }
            self.state.run = None;
        }
        self.reject_indices(&indices, rejection)
    }

    /// The collector says the node's chain ends at `point` (a chain error). Statements up
    /// to one with that digest (now or before a re-sign) were delivered and go; the rest
    /// follow `point` from now on. Returns how many were found delivered.
    pub fn rebase(&mut self, point: ChainPoint) -> Result<usize, SpoolError> {
        let found = point.digest.as_ref().and_then(|d| {
            self.pending
                .iter()
                .position(|e| &e.digest == d || e.former_digests.contains(d))
        });
        let gone: Vec<Entry> = match found {
            Some(pos) => self.pending.drain(..=pos).collect(),
            None => Vec::new(),
        };
        if let Some(j) = gone.iter().rposition(|e| e.kind.is_full()) {
            if let Kind::Full { posture } = &gone[j].kind {
                // The last one found is the statement the collector named, under the digest
                // it named; the ones before it stand that much earlier in its chain.
                let last = gone.len() - 1;
                self.state.acked_full = Some(FullRef {
                    digest: match (&point.digest, j == last) {
                        (Some(d), true) => d.clone(),
                        _ => gone[j].digest.clone(),
                    },
                    sequence: point.sequence.saturating_sub((last - j) as u64),
                    posture: posture.clone(),
                });
            }
        }
        self.state.base = point;
        self.refresh_tail();
        self.save_state()?;
        for e in &gone {
            self.remove_file(e.slot)?;
        }
        Ok(gone.len())
    }

    /// Re-signs statements that a previous key signed (checked with that key when they
    /// were loaded), re-linked after the base, each file atomically replaced.
    fn rekey(&mut self, loaded: Vec<(Entry, Spooled)>) -> Result<(), SpoolError> {
        let (mut entries, spooled): (Vec<Entry>, Vec<Spooled>) = loaded.into_iter().unzip();
        let relinked = chain::rechain(&self.state.base, spooled, &self.key)?;
        for (entry, r) in entries.iter_mut().zip(&relinked) {
            if r.changed {
                self.write_slot(entry.slot, &r.bytes)?;
                entry.former_digests.push(entry.digest.clone());
                entry.digest = r.digest.clone();
                entry.kind = Kind::of(&r.statement);
            }
        }
        tracing::warn!(
            count = entries.len(),
            "re-signed the spooled statements with the new key"
        );
        self.pending = entries;
        Ok(())
    }

    /// Drops the `need` oldest statements (see [`chain::plan_eviction`]).
    fn evict(&mut self, need: usize, protect_latest_full: bool) -> Result<usize, SpoolError> {
        let plan = plan_eviction(&self.fulls(), need, protect_latest_full);
        if plan.remove.is_empty() {
            return Ok(0);
        }
        let gone = self.take(&plan.remove);
        for e in &gone {
            self.remove_file(e.slot)?;
        }
        let (first, last) = (&gone[0], &gone[gone.len() - 1]);
        let note = DropNote {
            at: crate::scan::now_rfc3339(),
            count: gone.len() as u64,
            first_sequence: first.sequence,
            last_sequence: last.sequence,
            first_scan: first.scan_time.clone(),
            last_scan: last.scan_time.clone(),
        };
        tracing::error!(
            dropped = gone.len(),
            first_sequence = note.first_sequence,
            last_sequence = note.last_sequence,
            first_scan = %note.first_scan,
            last_scan = %note.last_scan,
            spool_max = self.max,
            "the spool is full: dropped the {} oldest undelivered statement(s), never to be \
             sent, and re-chained the rest over the hole; the collector has been unreachable \
             or refusing for a long time (check it, or raise --spool-max)",
            gone.len()
        );
        self.state.dropped_total = self.state.dropped_total.saturating_add(gone.len() as u64);
        self.state.last_drop = Some(note);
        self.refresh_tail();
        self.save_state()?;
        Ok(gone.len())
    }

    /// Removes the entries at `indices` from the pending list and forgets the last full
    /// report if it is among them.
    fn take(&mut self, indices: &[usize]) -> Vec<Entry> {
        let mut gone = Vec::new();
        let mut keep = Vec::with_capacity(self.pending.len());
        for (i, e) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            if indices.contains(&i) {
                gone.push(e);
            } else {
                keep.push(e);
            }
        }
        self.pending = keep;
        for e in &gone {
            if e.kind.is_full()
                && self
                    .state
                    .last_full
                    .as_ref()
                    .is_some_and(|f| f.digest == e.digest)
            {
                self.state.last_full = None;
                self.state.run = None;
            }
        }
        gone
    }

    fn reject_indices(
        &mut self,
        indices: &[usize],
        rejection: &Rejection,
    ) -> Result<usize, SpoolError> {
        let gone = self.take(indices);
        let Some(first) = gone.first() else {
            return Ok(0);
        };
        let head_sequence = first.sequence;
        for (n, e) in gone.iter().enumerate() {
            let mut why = rejection.clone();
            why.sequence = Some(e.sequence);
            why.digest = Some(e.digest.clone());
            if n > 0 {
                why.status = None;
                why.error = "base_rejected".to_string();
                why.message = format!(
                    "this notice rests on statement {head_sequence}, which was set aside \
                     ({}: {}), so the collector could not accept it",
                    rejection.error, rejection.message
                );
            }
            self.set_aside_file(e.slot, &why)?;
        }
        self.state.rejected_total = self.state.rejected_total.saturating_add(gone.len() as u64);
        self.refresh_tail();
        self.save_state()?;
        Ok(gone.len())
    }

    fn set_aside_damaged(&mut self, index: usize, why: &str) -> Result<(), SpoolError> {
        let Some(e) = self.pending.get(index) else {
            return Ok(());
        };
        self.set_aside_here = self.set_aside_here.saturating_add(1);
        tracing::error!(
            slot = e.slot,
            sequence = e.sequence,
            "spooled statement is damaged ({why}); set aside in rejected/"
        );
        let indices = with_dependents(&self.fulls(), index);
        self.reject_indices(
            &indices,
            &Rejection {
                at: crate::scan::now_rfc3339(),
                status: None,
                error: "damaged".to_string(),
                message: why.to_string(),
                sequence: None,
                digest: None,
            },
        )?;
        Ok(())
    }

    /// Gives the spooled statements the slots 1, 2, ... in their order, so the counter
    /// starts low again. Renaming upwards in order never overwrites: the i-th slot is at
    /// least i. A crash halfway leaves the order intact and the state's counter high, so
    /// the next open finishes the job.
    fn renumber(&mut self) -> Result<(), SpoolError> {
        tracing::warn!(
            next_slot = self.state.next_slot,
            pending = self.pending.len(),
            "the spool's slot counter is near its end; renumbering the spooled statements from 1"
        );
        for i in 0..self.pending.len() {
            let to = i as u64 + 1;
            let from = self.pending[i].slot;
            if from != to {
                let (a, b) = (self.slot_path(from), self.slot_path(to));
                fs::rename(&a, &b).map_err(io_err("renumber", &a))?;
                self.pending[i].slot = to;
            }
        }
        sync_dir(&self.dir)?;
        self.state.next_slot = self.pending.len() as u64 + 1;
        self.save_state()
    }

    fn fulls(&self) -> Vec<bool> {
        self.pending.iter().map(|e| e.kind.is_full()).collect()
    }

    /// Reads and verifies the statements in `slots`; any that cannot be read, do not verify
    /// with this agent's key (or the previous one), have no link or belong to another node
    /// are set aside as damaged, and so are notices left without their full report.
    fn load_slots(&mut self, slots: &[u64]) -> Result<Vec<(Entry, Spooled)>, SpoolError> {
        let mut out: Vec<(Entry, Spooled)> = Vec::with_capacity(slots.len());
        for &slot in slots {
            match self.load_slot(slot) {
                Ok(pair) => out.push(pair),
                Err(why) => {
                    tracing::error!(slot, "spooled statement set aside in rejected/: {why}");
                    self.set_aside_loaded(slot, "damaged", why, None)?;
                }
            }
        }
        let kinds: Vec<Kind> = out.iter().map(|(e, _)| e.kind.clone()).collect();
        let orphans = chain::orphans(&kinds);
        if !orphans.is_empty() {
            let mut kept = Vec::with_capacity(out.len());
            for (i, (entry, spooled)) in out.into_iter().enumerate() {
                if orphans.contains(&i) {
                    tracing::error!(
                        slot = entry.slot,
                        "spooled notice set aside in rejected/: the full report it rests on is gone"
                    );
                    self.set_aside_loaded(
                        entry.slot,
                        "base_rejected",
                        "the full report this notice rests on was damaged or set aside".into(),
                        Some(&entry),
                    )?;
                } else {
                    kept.push((entry, spooled));
                }
            }
            out = kept;
        }
        Ok(out)
    }

    fn set_aside_loaded(
        &mut self,
        slot: u64,
        code: &str,
        message: String,
        entry: Option<&Entry>,
    ) -> Result<(), SpoolError> {
        self.set_aside_here = self.set_aside_here.saturating_add(1);
        self.set_aside_file(
            slot,
            &Rejection {
                at: crate::scan::now_rfc3339(),
                status: None,
                error: code.to_string(),
                message,
                sequence: entry.map(|e| e.sequence),
                digest: entry.map(|e| e.digest.clone()),
            },
        )?;
        self.state.rejected_total = self.state.rejected_total.saturating_add(1);
        Ok(())
    }

    fn load_slot(&self, slot: u64) -> Result<(Entry, Spooled), String> {
        let bytes = read_regular(&self.slot_path(slot), Follow::NoSymlink, MAX_FILE_BYTES)
            .map_err(|e| format!("unreadable: {e}"))?;
        let envelope = Envelope::from_json_bytes(&bytes).map_err(|e| e.to_string())?;
        let verified = match verify_envelope(&envelope, &self.key.verifying_key()) {
            Ok(v) => v,
            Err(first) => match &self.old_key {
                Some(old) => verify_envelope(&envelope, old).map_err(|e| e.to_string())?,
                None => return Err(first.to_string()),
            },
        };
        let statement = verified.statement;
        let link = statement
            .link()
            .ok_or("the statement has no link (it was not written by the daemon)")?;
        if link.node != self.node {
            return Err(format!(
                "the statement belongs to node \"{}\", not \"{}\"",
                link.node, self.node
            ));
        }
        let entry = Entry {
            slot,
            sequence: link.sequence,
            digest: sha256_hex(&bytes),
            kind: Kind::of(&statement),
            scan_time: statement.scan_time().to_string(),
            former_digests: Vec::new(),
        };
        Ok((
            entry,
            Spooled {
                statement,
                bytes,
                signed_by: verified.keyid,
            },
        ))
    }

    /// Numbers the spooled statements after the base, and brings the last full report and
    /// the run in line with them.
    fn refresh_tail(&mut self) {
        let base = self.state.base.sequence;
        for (i, e) in self.pending.iter_mut().enumerate() {
            e.sequence = base.saturating_add(i as u64).saturating_add(1);
        }
        let latest_full = self.pending.iter().rev().find(|e| e.kind.is_full());
        self.state.last_full = match (latest_full, self.pending.last()) {
            (Some(e), _) => match &e.kind {
                Kind::Full { posture } => Some(FullRef {
                    digest: e.digest.clone(),
                    sequence: e.sequence,
                    posture: posture.clone(),
                }),
                Kind::Unchanged { .. } => None,
            },
            // No full report spooled: the last one built was delivered (or it left the
            // spool undelivered, and the collector's last full report is what counts).
            (None, _) if self.state.acked_full.is_some() => self.state.acked_full.clone(),
            // The state was lost: a spooled notice still names its report.
            (
                None,
                Some(Entry {
                    kind:
                        Kind::Unchanged {
                            since,
                            since_sequence,
                            posture,
                            ..
                        },
                    ..
                }),
            ) => Some(FullRef {
                digest: since.clone(),
                sequence: *since_sequence,
                posture: posture.clone(),
            }),
            (None, _) => None,
        };
        match self.pending.last().map(|e| &e.kind) {
            Some(Kind::Full { .. }) => self.state.run = None,
            Some(Kind::Unchanged {
                count,
                first_unchanged,
                ..
            }) => {
                self.state.run = Some(Run {
                    count: *count,
                    first_unchanged: first_unchanged.clone(),
                })
            }
            None => {}
        }
        if self.state.last_full.is_none() {
            self.state.run = None;
        }
    }

    fn slot_path(&self, slot: u64) -> PathBuf {
        self.dir.join(slot_name(slot))
    }

    fn write_slot(&self, slot: u64, bytes: &[u8]) -> Result<(), SpoolError> {
        write_atomic(&self.dir, &slot_name(slot), bytes)
    }

    fn remove_file(&self, slot: u64) -> Result<(), SpoolError> {
        let path = self.slot_path(slot);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove the delivered statement", &path)(e)),
        }
    }

    /// Moves a statement to `rejected/` with its reason next to it, then keeps `rejected/`
    /// to at most `max` statements (oldest go first).
    fn set_aside_file(&self, slot: u64, why: &Rejection) -> Result<(), SpoolError> {
        let rejected = self.dir.join(REJECTED_DIR);
        if !rejected.is_dir() {
            fs::create_dir_all(&rejected).map_err(io_err("create", &rejected))?;
            sync_dir(&self.dir)?;
        }
        let reason = serde_json::to_vec_pretty(why).unwrap_or_default();
        write_atomic(&rejected, &format!("{slot:020}.reason.json"), &reason)?;
        let from = self.slot_path(slot);
        let to = rejected.join(slot_name(slot));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("move the refused statement to", &to)(e)),
        }
        sync_dir(&rejected)?;
        sync_dir(&self.dir)?;
        let kept = list_slots(&rejected)?;
        if kept.len() > self.max {
            let excess = kept.len() - self.max;
            for old in &kept[..excess] {
                for name in [slot_name(*old), format!("{old:020}.reason.json")] {
                    let p = rejected.join(name);
                    if let Err(e) = fs::remove_file(&p) {
                        if e.kind() != io::ErrorKind::NotFound {
                            return Err(io_err("remove", &p)(e));
                        }
                    }
                }
            }
            tracing::warn!(
                removed = excess,
                "rejected/ holds more than --spool-max statements: removed the oldest"
            );
            sync_dir(&rejected)?;
        }
        Ok(())
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        write_atomic(&self.dir, STATE_FILE, &bytes)
    }
}

fn slot_name(slot: u64) -> String {
    format!("{slot:020}.json")
}

fn parse_slot(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The statement slots in `dir`, ascending.
fn list_slots(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut slots = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let item = item.map_err(io_err("list", dir))?;
        if let Some(slot) = item.file_name().to_str().and_then(parse_slot) {
            slots.push(slot);
        }
    }
    slots.sort_unstable();
    Ok(slots)
}

/// Sorts what the spool directory holds by name and type, opening nothing: removes the
/// temp files of unfinished writes, moves everything the agent did not write to `foreign/`
/// and returns the statement slots (ascending) and how many files were moved.
fn sort_directory(dir: &Path) -> Result<(Vec<u64>, u64), SpoolError> {
    let mut slots = Vec::new();
    let mut moved = 0u64;
    for item in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let item = item.map_err(io_err("list", dir))?;
        let name = item.file_name();
        // `file_type` comes from the directory entry (or lstat): it never follows a link.
        let kind = item.file_type().map_err(io_err("inspect", &item.path()))?;
        let Some(text) = name.to_str() else {
            tracing::warn!(file = ?item.path(), "a file the agent did not write (its name is not UTF-8) moved to foreign/");
            set_aside_foreign_os(dir, &name)?;
            moved += 1;
            continue;
        };
        let ours = match text {
            STATE_FILE | LOCK_FILE | DAMAGED_STATE => kind.is_file(),
            REJECTED_DIR | FOREIGN_DIR => kind.is_dir(),
            t if t.starts_with('.') && t.ends_with(".tmp") && kind.is_file() => {
                let path = item.path();
                fs::remove_file(&path).map_err(io_err("remove the unfinished write", &path))?;
                continue;
            }
            t => match parse_slot(t) {
                Some(slot) if kind.is_file() && slot > 0 => {
                    slots.push(slot);
                    true
                }
                _ => false,
            },
        };
        if !ours {
            tracing::warn!(
                file = %item.path().display(),
                kind = files::describe_type(&kind),
                "a file the agent did not write is in the spool; moved to foreign/ unopened"
            );
            set_aside_foreign(dir, text)?;
            moved += 1;
        }
    }
    slots.sort_unstable();
    Ok((slots, moved))
}

/// Moves `name` into `foreign/` by renaming it (which opens nothing), under a name not
/// yet taken there.
fn set_aside_foreign(dir: &Path, name: &str) -> Result<(), SpoolError> {
    set_aside_foreign_os(dir, std::ffi::OsStr::new(name))
}

fn set_aside_foreign_os(dir: &Path, name: &std::ffi::OsStr) -> Result<(), SpoolError> {
    let foreign = dir.join(FOREIGN_DIR);
    if !foreign.is_dir() {
        fs::create_dir_all(&foreign).map_err(io_err("create", &foreign))?;
    }
    let from = dir.join(name);
    let mut to = foreign.join(name);
    let mut n = 1u32;
    while fs::symlink_metadata(&to).is_ok() {
        let mut alt = name.to_os_string();
        alt.push(format!(".{n}"));
        to = foreign.join(alt);
        n = n.saturating_add(1);
    }
    fs::rename(&from, &to).map_err(io_err("move aside the foreign file", &from))?;
    sync_dir(&foreign)?;
    sync_dir(dir)
}

/// Reads `state.json`: `None` when there is none. One that cannot be parsed is moved aside
/// (`state.json.damaged`) with a warning and rebuilt from the spooled statements.
fn read_state(dir: &Path) -> Result<Option<State>, SpoolError> {
    let path = dir.join(STATE_FILE);
    let bytes = match read_regular(&path, Follow::NoSymlink, MAX_FILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(
                "spool state {} is unusable ({e}); moved to state.json.damaged and rebuilt \
                 from the spooled statements",
                path.display()
            );
            set_aside_state(dir, &path)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err("read the spool state", &path)(e)),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == STATE_VERSION => Ok(Some(s)),
        Ok(s) => {
            tracing::warn!(
                version = s.version,
                "spool state has an unknown version; rebuilding it from the spooled statements"
            );
            set_aside_state(dir, &path)?;
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(
                "spool state {} is damaged ({e}); moved to state.json.damaged and rebuilt from \
                 the spooled statements (the next scan is sent as a full report)",
                path.display()
            );
            set_aside_state(dir, &path)?;
            Ok(None)
        }
    }
}

fn set_aside_state(dir: &Path, path: &Path) -> Result<(), SpoolError> {
    let to = dir.join(DAMAGED_STATE);
    fs::rename(path, &to).map_err(io_err("move aside the damaged state", path))?;
    sync_dir(dir)
}

/// Writes `name` in `dir` so that it is either the old or the new content, never a part:
/// temp file, fsync, rename over, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &path)(e));
    }
    fs::rename(&tmp, &path).map_err(io_err("replace", &path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync the directory", dir))
}

/// `lock`: "pid starttime" of the process using the spool. A lock whose process is gone
/// (or is another process that got the same pid, as PID 1 does in every container start)
/// is stale and taken over.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    me: String,
}

impl Lock {
    fn acquire(dir: &Path) -> Result<Lock, SpoolError> {
        let path = dir.join(LOCK_FILE);
        let pid = std::process::id();
        let me = format!("{pid} {}", start_time(pid).unwrap_or(0));
        for _ in 0..3 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(io_err("write the lock", &path))?;
                    return Ok(Lock { path, me });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let held = read_regular(&path, Follow::NoSymlink, 256)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let mut parts = held.split_whitespace();
                    let holder = parts.next().and_then(|p| p.parse::<u32>().ok());
                    let started = parts.next().and_then(|s| s.parse::<u64>().ok());
                    if let Some(h) = holder {
                        if held.trim() == me || (started.is_some() && start_time(h) == started) {
                            return Err(SpoolError::Locked {
                                dir: dir.to_path_buf(),
                                pid: h,
                            });
                        }
                    }
                    tracing::warn!(lock = %path.display(), held = %held.trim(), "taking over a stale spool lock");
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("remove the stale lock", &path)(e)),
                    }
                }
                Err(e) => return Err(io_err("create the lock", &path)(e)),
            }
        }
        Err(SpoolError::Locked {
            dir: dir.to_path_buf(),
            pid: 0,
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if read_regular(&self.path, Follow::NoSymlink, 256)
            .is_ok_and(|b| String::from_utf8_lossy(&b).trim() == self.me)
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A process's start time (clock ticks after boot, field 22 of /proc/PID/stat), which
/// together with the pid names one process for good.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the command start at field 3 (state); starttime is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_sort_like_numbers() {
        assert_eq!(slot_name(7), "00000000000000000007.json");
        assert_eq!(parse_slot("00000000000000000007.json"), Some(7));
        assert_eq!(parse_slot("7.json"), None);
        assert_eq!(parse_slot("0000000000000000000x.json"), None);
        assert_eq!(parse_slot("00000000000000000007.reason.json"), None);
        assert_eq!(parse_slot(".00000000000000000007.json.tmp"), None);
    }

    #[test]
    fn start_time_of_this_process_is_stable() {
        let pid = std::process::id();
        let t = start_time(pid);
        assert!(t.is_some());
        assert_eq!(t, start_time(pid));
    }
}
