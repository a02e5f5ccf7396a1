//! Fixtures the stories share: fake digests and keys, checks, an agent that builds the
//! statements of a chain, and assertions that name the promise that broke.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use nodeproof_proto::{Status, Summary};

use crate::store::{
    Accepted, AcceptedKind, CheckCounts, CheckState, NodeRecord, Store, StoreError, StoreResult,
};

/// 64 lowercase hex characters derived from `s` (FNV-1a, four seeds): a stand-in for a
/// SHA-256 digest or key id.
pub fn fake_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    for seed in [0xcbf2_9ce4_8422_2325_u64, 1, 2, 3] {
        let mut h = seed;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// The RFC 3339 form of a Unix time, as an agent would sign it.
pub fn rfc3339(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| panic!("{at} is not a representable time"))
}

/// A scored check.
pub fn check(cis: &str, status: Status) -> CheckState {
    CheckState {
        id: format!("kubelet-{}", cis.replace('.', "-")),
        cis: cis.into(),
        scored: true,
        status,
    }
}

/// A check that does not count towards compliance.
pub fn unscored(cis: &str, status: Status) -> CheckState {
    CheckState {
        scored: false,
        ..check(cis, status)
    }
}

/// A node's side of the chain: builds the statements an agent would send, in order.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub key_id: String,
    pub interval_secs: u64,
    pub sequence: u64,
    pub last: Option<String>,
    pub last_full: Option<String>,
    run_start: Option<String>,
    run_count: u64,
}

impl Agent {
    pub fn new(name: &str) -> Agent {
        Agent::with_interval(name, 300)
    }

    pub fn with_interval(name: &str, interval_secs: u64) -> Agent {
        Agent {
            name: name.into(),
            key_id: fake_hex(&format!("key of {name}")),
            interval_secs,
            sequence: 0,
            last: None,
            last_full: None,
            run_start: None,
            run_count: 0,
        }
    }

    pub fn public_key(&self) -> String {
        public_key_for(&self.key_id)
    }

    pub fn enroll(&self, s: &dyn Store, approved: bool, now: i64) -> NodeRecord {
        s.enroll(&self.name, &self.key_id, &self.public_key(), approved, now)
            .unwrap_or_else(|e| panic!("enrolling {}: {e}", self.name))
    }

    fn next(&mut self, at: i64, kind: AcceptedKind) -> Accepted {
        self.sequence += 1;
        let digest = fake_hex(&format!("{} {} {at}", self.name, self.sequence));
        let envelope = format!(
            "{{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"{}\",\
             \"signatures\":[{{\"keyid\":\"{}\",\"sig\":\"{}\"}}]}}\n",
            fake_hex(&format!("payload {digest}")).repeat(3),
            self.key_id,
            fake_hex(&format!("sig {digest}")),
        )
        .into_bytes();
        Accepted {
            node: self.name.clone(),
            key_id: self.key_id.clone(),
            digest: digest.clone(),
            sequence: self.sequence,
            previous: self.last.replace(digest),
            received_at: at,
            scan_time: rfc3339(at),
            interval_secs: self.interval_secs,
            envelope,
            kind,
        }
    }

    /// The next statement: a full report of `checks`, scanned and received at `at`.
    pub fn full(&mut self, at: i64, checks: Vec<CheckState>) -> Accepted {
        let posture = fake_hex(&format!("{checks:?}"));
        let summary = Summary::count(checks.iter().map(|c| c.status));
        let a = self.next(
            at,
            AcceptedKind::Full {
                posture,
                summary,
                checks,
            },
        );
        self.last_full = Some(a.digest.clone());
        self.run_start = None;
        self.run_count = 0;
        a
    }

    /// The next statement: an unchanged notice of the current run, by the chain rule:
    /// it links to the run's full report (`previous == since`) and counts the sequences
    /// since it.
    pub fn unchanged(&mut self, at: i64) -> Accepted {
        let since = self
            .last_full
            .clone()
            .unwrap_or_else(|| panic!("{}: no full report yet", self.name));
        self.run_count += 1;
        let first_unchanged = self.run_start.get_or_insert_with(|| rfc3339(at)).clone();
        let mut a = self.next(
            at,
            AcceptedKind::Unchanged {
                since: since.clone(),
                count: self.run_count,
                first_unchanged,
            },
        );
        a.previous = Some(since);
        a
    }
}

pub(super) fn public_key_for(key_id: &str) -> String {
    format!(
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA{}\n-----END PUBLIC KEY-----\n",
        &key_id[..43]
    )
}

pub(super) fn ok<T>(r: StoreResult<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

pub(super) fn node(s: &dyn Store, name: &str) -> NodeRecord {
    ok(s.node(name), "node").unwrap_or_else(|| panic!("node {name} should exist"))
}

pub(super) fn commit(s: &dyn Store, batch: &[Accepted]) {
    ok(s.commit(batch), "commit")
}

#[track_caller]
pub(super) fn assert_conflict<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "{what}: expected a Conflict, got {r:?}"
    );
}

#[track_caller]
pub(super) fn assert_no_such_node<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NoSuchNode(_))),
        "{what}: expected NoSuchNode, got {r:?}"
    );
}

pub(super) fn counts(cis: &str, pass: u64, fail: u64, warn: u64, error: u64) -> CheckCounts {
    CheckCounts {
        id: format!("kubelet-{}", cis.replace('.', "-")),
        cis: cis.into(),
        pass,
        fail,
        warn,
        error,
    }
}

pub(super) fn check_counts(s: &dyn Store) -> Vec<CheckCounts> {
    ok(s.fleet_summary(0), "fleet_summary").checks
}

pub(super) fn names(nodes: &[NodeRecord]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}
