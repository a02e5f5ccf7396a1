//! The checks: one shared catalogue type (`Check`, judged into a `Verdict`) and one module
//! per group (`kubelet`: CIS section 4.2; `files`: 4.1; `apiserver`: the API server's side,
//! 1.2.4/1.2.5 and 1.1.19-1.1.21; `probes`: the live probes of the kubelet's ports, labelled
//! `P.n`).
//!
//! Why a shared type: reports and the collector key on `id`, `cis`, `status` and `source`
//! whatever a check looks at, so every group fills in the same `CheckResult`; what differs
//! between groups is only the input a judge reads.
//!
//! Verdict policy (docs/checks.md): a judge only says whether the recommendation is met;
//! `Check::run` turns "not met" into the status the catalogue's `on_unmet` names. CIS's
//! Automated/Manual (`scored`) is a label, not the policy: an open read-only port is a fact
//! whether CIS can script its audit or not, so it fails. Only the two checks where a person
//! must judge a known value warn: 4.2.7 (an override some distributions need) and 4.2.8
//! (what event rate is "appropriate"). A judge's `Err` is `error` (unknown), never a verdict.

pub mod apiserver;
pub mod files;
pub mod kubelet;
pub mod probes;

pub use kubelet::{CATALOGUE, CIS_STRONG_CIPHERS};

use nodeproof_proto::{CheckResult, Remediation, Setting, Severity, Source, Status};
use serde_json::Value;

use crate::effective::Effective;

/// What a check's function concludes about one node, before the catalogue turns it into a
/// `CheckResult`. `Err(reason)` from the function means the value cannot be known.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the recommendation holds for the effective value; the catalogue's `on_unmet`
    /// decides what "not met" becomes.
    pub met: bool,
    /// The effective value in config-file form, e.g. `readOnlyPort: 10255`.
    pub actual: String,
    /// The source and origin of the setting the verdict rests on.
    pub source: Option<Source>,
    pub origin: Option<String>,
    pub note: String,
}

impl Verdict {
    /// A verdict resting on `setting`, with the value shown as `path: value`.
    fn on(setting: &Setting, path: &str, met: bool, note: impl Into<String>) -> Verdict {
        Verdict {
            met,
            actual: config_form(path, &setting.value),
            source: Some(setting.source),
            origin: Some(setting.origin.clone()),
            note: note.into(),
        }
    }
}

/// The judging function of one check, over its group's input (`Effective` for the kubelet
/// settings, [`crate::node_files::NodeFiles`] for the node's files,
/// [`probes::Observed`] for the live probes).
pub type Judge<I = Effective> = fn(&I) -> Result<Verdict, String>;

/// What a known value that does not meet the recommendation becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnmet {
    /// The value settles it: the node is not compliant.
    Fail,
    /// The value is known but a person must judge whether it is acceptable here.
    Warn,
}

impl OnUnmet {
    fn status(self) -> Status {
        match self {
            OnUnmet::Fail => Status::Fail,
            OnUnmet::Warn => Status::Warn,
        }
    }
}

/// One CIS recommendation: what the README and the report say about it, plus its judge.
#[derive(Debug)]
pub struct Check<I: 'static = Effective> {
    /// Our stable id; reports and the collector key on it, so never reuse or rename one.
    pub id: &'static str,
    pub cis: &'static str,
    /// The CIS title without its "(Automated)"/"(Manual)" suffix, which `scored` carries.
    pub title: &'static str,
    /// CIS "Automated" (true) or "Manual" (false): a label from the benchmark, which does
    /// not decide the status (`on_unmet` does).
    pub scored: bool,
    /// The status of a known value that does not meet the recommendation.
    pub on_unmet: OnUnmet,
    pub expected: &'static str,
    /// The command-line form of the fix.
    pub flag_fix: &'static str,
    /// The config-file form of the fix, as YAML to merge into the KubeletConfiguration.
    pub config_fix: &'static str,
    pub judge: Judge<I>,
}

impl<I> Check<I> {
    /// The check's severity, from the catalogue both the agent and the collector share.
    pub fn severity(&self) -> Severity {
        nodeproof_proto::check_meta(self.id)
            .map(|m| m.severity)
            .expect("every check is in proto's catalogue (tested)")
    }

    /// Judges `input` and builds the report's entry for this check.
    pub fn run(&self, input: &I) -> CheckResult {
        let (status, actual, source, origin, note) = match (self.judge)(input) {
            Ok(v) => {
                let status = if v.met {
                    Status::Pass
                } else {
                    self.on_unmet.status()
                };
                (status, v.actual, v.source, v.origin, v.note)
            }
            Err(reason) => (Status::Error, "unknown".to_string(), None, None, reason),
        };
        CheckResult {
            id: self.id.to_string(),
            cis: self.cis.to_string(),
            title: self.title.to_string(),
            scored: self.scored,
            severity: self.severity(),
            status,
            expected: self.expected.to_string(),
            actual,
            source,
            origin,
            note,
            remediation: Remediation {
                flag: self.flag_fix.to_string(),
                config: self.config_fix.to_string(),
            },
        }
    }
}

/// Runs every kubelet-settings check (4.2), in catalogue order.
pub fn evaluate(eff: &Effective) -> Vec<CheckResult> {
    CATALOGUE.iter().map(|c| c.run(eff)).collect()
}

/// What every group's catalogue entry has in common, for tests and docs that span groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: &'static str,
    pub cis: &'static str,
    pub scored: bool,
    pub on_unmet: OnUnmet,
}

/// Every check of every group, in report order: the shared catalogue
/// (`nodeproof_proto::CHECKS`) must list the same.
pub fn all_checks() -> Vec<Entry> {
    fn entry<I>(c: &Check<I>) -> Entry {
        Entry {
            id: c.id,
            cis: c.cis,
            scored: c.scored,
            on_unmet: c.on_unmet,
        }
    }
    let kubelet = CATALOGUE.iter().map(entry);
    let files = files::CATALOGUE.iter().map(entry);
    let apiserver = apiserver::CATALOGUE.iter().map(entry);
    let probes = probes::CATALOGUE.iter().map(entry);
    kubelet
        .chain(files)
        .chain(apiserver)
        .chain(probes)
        .collect()
}

// ---- helpers --------------------------------------------------------------------------

/// A default that applies only because the kubelet runs without `--config`.
fn is_legacy_default(s: &Setting) -> bool {
    s.source == Source::Default && s.origin.contains("legacy")
}

fn as_bool(s: &Setting, path: &str) -> Result<bool, String> {
    s.value
        .as_bool()
        .ok_or_else(|| format!("{path}: expected a boolean, found {}", s.value))
}

fn as_i64(s: &Setting, path: &str) -> Result<i64, String> {
    s.value
        .as_i64()
        .ok_or_else(|| format!("{path}: expected an integer, found {}", s.value))
}

fn as_str<'a>(s: &'a Setting, path: &str) -> Result<&'a str, String> {
    s.value
        .as_str()
        .ok_or_else(|| format!("{path}: expected a string, found {}", s.value))
}

fn as_str_array<'a>(s: &'a Setting, path: &str) -> Result<Vec<&'a str>, String> {
    let err = || format!("{path}: expected a list of strings, found {}", s.value);
    s.value
        .as_array()
        .ok_or_else(err)?
        .iter()
        .map(|v| v.as_str().ok_or_else(err))
        .collect()
}

/// `path: value` as a person would write it in the config file.
fn config_form(path: &str, value: &Value) -> String {
    format!("{path}: {}", yaml_value(value))
}

fn yaml_value(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(yaml_value).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The collector trusts proto's catalogue, never the report: every group's checks must
    /// be in it, in report order, with the same CIS number and label.
    #[test]
    fn catalogue_matches_protos_catalogue() {
        let protos: Vec<_> = nodeproof_proto::CHECKS
            .iter()
            .map(|c| (c.id, c.cis, c.scored))
            .collect();
        let ours: Vec<_> = all_checks()
            .iter()
            .map(|c| (c.id, c.cis, c.scored))
            .collect();
        assert_eq!(ours, protos);
    }

    /// docs/checks.md and the README document the policy and severities; they must say
    /// what the code does.
    #[test]
    fn docs_and_readme_tables_match_the_catalogue() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |name: &str| {
            std::fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let (docs, readme) = (read("docs/checks.md"), read("README.md"));
        for c in all_checks() {
            let meta = nodeproof_proto::check_meta(c.id).expect("in proto's catalogue");
            let label = if c.scored { "Automated" } else { "Manual" };
            let policy = match c.on_unmet {
                OnUnmet::Fail => "fail",
                OnUnmet::Warn => "**warn**",
            };
            let row = format!(
                "| {} | `{}` | {label} | {policy} | {} | {} |",
                c.cis, c.id, meta.severity, meta.why
            );
            assert!(docs.contains(&row), "docs/checks.md lacks the row\n{row}");
            let start = format!("| {} | `{}` | ", c.cis, c.id);
            let line = readme
                .lines()
                .find(|l| l.starts_with(&start))
                .unwrap_or_else(|| panic!("README lacks {}", c.cis));
            let cells: Vec<&str> = line.split(" | ").collect();
            assert_eq!(cells[3], label, "README scored of {}", c.cis);
            let severity = match c.on_unmet {
                OnUnmet::Fail => meta.severity.to_string(),
                OnUnmet::Warn => format!("{} (warn)", meta.severity),
            };
            assert_eq!(cells[4], severity, "README severity of {}", c.cis);
        }
    }
}
