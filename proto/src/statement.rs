//! The in-toto Statement v1 that wraps a [`Report`]. The agent does not sign a bare report: it
//! signs a statement that says what the report is about (the subjects: the kubelet binary and
//! the files the scan read, by digest) and what kind of claim it is (the predicate type), so
//! that standard in-toto/DSSE tooling can check and route our evidence without knowing our
//! report schema. See <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Report;

/// The `_type` of every in-toto v1 statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of a nodeproof kubelet report; bump with `REPORT_SCHEMA`.
pub const PREDICATE_TYPE: &str = "https://nodeproof.dev/attestation/kubelet-report/v1";
/// The digest algorithm every subject must carry (in-toto's name for SHA-256).
pub const SUBJECT_DIGEST_ALGORITHM: &str = "sha256";

/// An in-toto v1 statement whose predicate is a nodeproof [`Report`]. Unknown fields are
/// ignored when parsing, as the in-toto spec requires of consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Report,
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
            predicate: report,
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
