//! Counters of what happened to reports, kept in atomics so the ingest path never takes a
//! lock to count, and exposed as JSON (`GET /v1/stats`) and Prometheus text (`GET /metrics`).
//! A rejection that nobody counts is an attack nobody sees.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

/// Every `error` code `POST /v1/reports` can answer, in the order of the acceptance table,
/// plus `internal` (a store failure) and `unavailable` (shutting down). Codes not listed
/// here are counted as `other`.
pub const REPORT_ERROR_CODES: &[&str] = &[
    "too_large",
    "malformed",
    "wrong_payload_type",
    "unknown_key",
    "node_pending",
    "node_revoked",
    "bad_signature",
    "bad_statement",
    "bad_link",
    "replay",
    "chain_fork",
    "chain_gap",
    "unknown_base",
    "clock_skew",
    "too_old",
    "internal",
    "unavailable",
    "other",
];

/// Report counters, shared by every handler and the writer.
#[derive(Debug)]
pub struct Stats {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    rejected: Vec<AtomicU64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            rejected: REPORT_ERROR_CODES
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Stats {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// One durable commit of `statements` new statements (group commit).
    pub fn commit(&self, statements: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(statements as u64, Ordering::Relaxed);
    }

    pub fn rejected(&self, code: &str) {
        let index = REPORT_ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(REPORT_ERROR_CODES.len() - 1);
        if let Some(counter) = self.rejected.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How often `code` was answered so far.
    pub fn rejected_count(&self, code: &str) -> u64 {
        REPORT_ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.rejected.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn rejections(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REPORT_ERROR_CODES
            .iter()
            .zip(&self.rejected)
            .map(|(code, n)| (*code, n.load(Ordering::Relaxed)))
    }

    /// `GET /v1/stats`: `{"reports": {"accepted", "duplicate", "rejected": {code: n},
    /// "commits", "committed"}}`. Every code is listed, zeros included, so a dashboard
    /// does not have to know them in advance.
    pub fn to_json(&self) -> Value {
        let rejected: Map<String, Value> = self
            .rejections()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        json!({
            "reports": {
                "accepted": self.accepted.load(Ordering::Relaxed),
                "duplicate": self.duplicates.load(Ordering::Relaxed),
                "rejected": rejected,
                "commits": self.batches.load(Ordering::Relaxed),
                "committed": self.batched.load(Ordering::Relaxed),
            }
        })
    }

    /// `GET /metrics` in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            write_metric(out, name, "counter", help, value);
        };
        counter(
            &mut out,
            "nodeproof_reports_accepted_total",
            "Statements accepted and stored.",
            self.accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "nodeproof_reports_duplicate_total",
            "Retries of stored statements, answered 200 and not stored again.",
            self.duplicates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "nodeproof_commits_total",
            "Durable commits (each holds one or more statements).",
            self.batches.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP nodeproof_reports_rejected_total Reports refused, by error code.\n\
             # TYPE nodeproof_reports_rejected_total counter"
        );
        for (code, n) in self.rejections() {
            let _ = writeln!(
                out,
                "nodeproof_reports_rejected_total{{reason=\"{code}\"}} {n}"
            );
        }
        out
    }
}

/// One unlabelled metric in the Prometheus text exposition format: `# HELP`, `# TYPE`
/// (`counter` or `gauge`) and the sample, each on its own line.
pub(crate) fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// A labelled metric family in the Prometheus text exposition format: `# HELP`, `# TYPE`,
/// then one sample per entry of `samples` (label pairs and value). Label values are escaped
/// as the format requires (backslash, double quote, newline).
pub(crate) fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(Vec<(&str, &str)>, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// A label value as the exposition format writes it.
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        write_family(&mut out, "m", "gauge", "h.", &[(vec![("k", "v\"")], 2.0)]);
        assert_eq!(out, "# HELP m h.\n# TYPE m gauge\nm{k=\"v\\\"\"} 2\n");
    }

    use super::*;

    #[test]
    fn counts_by_code_and_unknown_codes_as_other() {
        let s = Stats::default();
        s.rejected("replay");
        s.rejected("replay");
        s.rejected("no-such-code");
        s.accepted();
        assert_eq!(s.rejected_count("replay"), 2);
        assert_eq!(s.rejected_count("other"), 1);
        let j = s.to_json();
        assert_eq!(j["reports"]["rejected"]["replay"], 2);
        assert_eq!(j["reports"]["rejected"]["too_old"], 0);
        assert_eq!(j["reports"]["accepted"], 1);
        let p = s.to_prometheus();
        assert!(
            p.contains("nodeproof_reports_rejected_total{reason=\"replay\"} 2"),
            "{p}"
        );
        assert!(p.contains("nodeproof_reports_accepted_total 1"), "{p}");
    }
}
