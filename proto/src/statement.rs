//! The in-toto Statement v1 that wraps a [`Report`]. The agent does not sign a bare report: it
//! signs a statement that says what the report is about (the subjects: the kubelet binary and
//! the files the scan read, by digest) and what kind of claim it is (the predicate type), so
//! that standard in-toto/DSSE tooling can check and route our evidence without knowing our
//! report schema. See <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::{Link, Report, Unchanged};

/// The `_type` of every in-toto v1 statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of a nodeproof kubelet report; bump with `REPORT_SCHEMA`.
pub const PREDICATE_TYPE: &str = "https://nodeproof.dev/attestation/kubelet-report/v1";
/// The `predicateType` of a statement that a scan found the same posture as an earlier
/// full report (see [`Unchanged`]).
pub const UNCHANGED_PREDICATE_TYPE: &str = "https://nodeproof.dev/attestation/kubelet-unchanged/v1";
/// The digest algorithm every subject must carry (in-toto's name for SHA-256).
pub const SUBJECT_DIGEST_ALGORITHM: &str = "sha256";

/// An in-toto v1 statement whose predicate is a nodeproof [`Report`] or an [`Unchanged`]
/// notice; `predicateType` says which. Unknown fields are ignored when parsing, as the
/// in-toto spec requires of consumers.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub type_: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// What a statement claims.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Report(Box<Report>),
    Unchanged(Box<Unchanged>),
}

/// The wire form: the predicate is parsed by its type only after the type is known.
#[derive(Serialize, Deserialize)]
struct Wire<P> {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: P,
}

impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum P<'a> {
            Report(&'a Report),
            Unchanged(&'a Unchanged),
        }
        Wire {
            type_: self.type_.clone(),
            subject: self.subject.clone(),
            predicate_type: self.predicate_type.clone(),
            predicate: match &self.predicate {
                Predicate::Report(r) => P::Report(r),
                Predicate::Unchanged(u) => P::Unchanged(u),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Statement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire: Wire<Box<RawValue>> = Wire::deserialize(d)?;
        let predicate = match wire.predicate_type.as_str() {
            UNCHANGED_PREDICATE_TYPE => Predicate::Unchanged(Box::new(
                serde_json::from_str(wire.predicate.get()).map_err(D::Error::custom)?,
            )),
            _ => Predicate::Report(Box::new(
                serde_json::from_str(wire.predicate.get()).map_err(D::Error::custom)?,
            )),
        };
        Ok(Statement {
            type_: wire.type_,
            subject: wire.subject,
            predicate_type: wire.predicate_type,
            predicate,
        })
    }
}

/// A software artifact the statement is about, named and identified by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    /// Algorithm (`sha256`) to lowercase hex digest.
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// A statement of our type and predicate type about `subjects`.
    pub fn new(subjects: Vec<Subject>, report: Report) -> Statement {
        Statement {
            type_: STATEMENT_TYPE.to_string(),
            subject: subjects,
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: Predicate::Report(Box::new(report)),
        }
    }

    /// A statement that a scan matched an earlier full report.
    pub fn unchanged(subjects: Vec<Subject>, unchanged: Unchanged) -> Statement {
        Statement {
            type_: STATEMENT_TYPE.to_string(),
            subject: subjects,
            predicate_type: UNCHANGED_PREDICATE_TYPE.to_string(),
            predicate: Predicate::Unchanged(Box::new(unchanged)),
        }
    }

    /// The full report, when this statement carries one.
    pub fn report(&self) -> Option<&Report> {
        match &self.predicate {
            Predicate::Report(r) => Some(r),
            Predicate::Unchanged(_) => None,
        }
    }

    /// Where the statement stands in its node's chain, when it was sent by a daemon.
    pub fn link(&self) -> Option<&Link> {
        match &self.predicate {
            Predicate::Report(r) => r.link.as_ref(),
            Predicate::Unchanged(u) => Some(&u.link),
        }
    }

    /// When the scan behind the statement ran (RFC 3339).
    pub fn scan_time(&self) -> &str {
        match &self.predicate {
            Predicate::Report(r) => &r.scan_time,
            Predicate::Unchanged(u) => &u.scan_time,
        }
    }
}

impl Subject {
    /// A subject identified by the SHA-256 `sha256_hex` (lowercase hex, 64 characters).
    pub fn sha256(name: impl Into<String>, sha256_hex: impl Into<String>) -> Subject {
        Subject {
            name: name.into(),
            digest: BTreeMap::from([(SUBJECT_DIGEST_ALGORITHM.to_string(), sha256_hex.into())]),
        }
    }
}

/// Whether `s` is a SHA-256 digest the way in-toto writes it: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lowercase_and_64_long() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
        assert!(!is_sha256_hex(""));
    }
}
