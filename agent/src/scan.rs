//! One scan: find the kubelet, read what it reads, compute, check, and assemble the report.
//!
//! `scan` is the only function here that touches the system (through `process`); the
//! rest (`assemble`, `statement`, `exit_code`) are pure so the report's shape is tested
//! without a node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nodeproof_proto::{
    CheckResult, FileDigest, KubeletInfo, NodeFacts, Report, Severity, Statement, Status, Subject,
    Summary, Warning, REPORT_SCHEMA,
};
use sha2::{Digest, Sha256};

use crate::checks;
use crate::cmdline::{parse_cmdline, ArgOrigin};
use crate::effective::{compute_for, DropInDir, Effective, FileInput};
use crate::kube_apiserver::ApiServer;
use crate::kubeconfig;
use crate::node_files::{self, NodeFiles};
use crate::probe::Probe;
use crate::process::{kubelet_minor, ExeInfo, FindError, KubeletProcess};
use crate::validate;

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// The /proc to read (the host's, mounted into a pod, or a fake one in tests).
    pub proc_dir: PathBuf,
    pub pid: Option<i32>,
    /// The kubelet's version (`v1.31.4`, or `1.31`), when the operator knows it better
    /// than the binary's build stamp; it decides how drop-ins merge.
    pub kubelet_version: Option<String>,
    /// Probe the kubelet's ports live ([`crate::probe`]), unless `--no-probe`. Off for a
    /// fake /proc tree, whose ports are not this machine's.
    pub probe: bool,
}

/// Why a scan could not run at all (exit code 2). Anything less is in the report.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Find(#[from] FindError),
}

/// Everything read from the node, as read. Built by an adapter in [`crate::sources`],
/// consumed by `assemble`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The process the kubelet runs in: the kubelet's own, or the distribution's process
    /// that embeds it (see `embedded_in`).
    pub pid: i32,
    /// The kubelet's argv as the kubelet receives it: its own command line, or for an
    /// embedded kubelet the arguments the distribution assembled (`argv[0]` is then
    /// `kubelet`).
    pub argv: Vec<String>,
    /// Where each of `argv[1..]` came from, by index, when an adapter assembled them; empty
    /// for a kubelet's own command line.
    pub arg_origins: Vec<ArgOrigin>,
    /// The distribution whose layout was read (`k3s`, `microk8s`), for an embedded kubelet.
    pub distribution: Option<String>,
    /// The process the kubelet is embedded in, described for the report.
    pub embedded_in: Option<String>,
    pub config_file: Option<FileInput>,
    pub dropins: Option<DropInDir>,
    /// The file `--kubeconfig` names, when given: what the kubelet authenticates to the API
    /// server with decides whether CIS 4.2.10 applies.
    pub kubeconfig: Option<FileInput>,
    pub exe: Result<ExeInfo, String>,
    /// The kubelet's version: read from its binary, or set by the caller
    /// (`--kubelet-version`) before `assemble`.
    pub kubelet_version: Option<String>,
    pub node: NodeFacts,
    /// Raw bytes' digests of every file read, in read order.
    pub files: Vec<FileDigest>,
    pub warnings: Vec<Warning>,
    /// Mode and owner of the files the kubelet uses (CIS 4.1).
    pub node_files: NodeFiles,
    /// The kube-apiserver on this node, if any, and the files its kubelet flags name (CIS
    /// 1.2.4/1.2.5, 1.1.19-1.1.21).
    pub apiserver: ApiServer,
    /// Settings (v1beta1 paths) the adapter could not determine, with the reason; their
    /// checks report `error` (an argument k3s passes only from some version on, when the
    /// version is unknown).
    pub undetermined: BTreeMap<String, String>,
    /// Set when the distribution would refuse to start with its inputs as they are now (a
    /// malformed k3s config.yaml, a missing kubelite arguments file): no kubelet can be
    /// running with them, so every check reports `error` with this reason.
    pub input_error: Option<String>,
    /// What the kubelet's ports answered ([`crate::probe`]); `None` with `--no-probe`.
    pub probe: Option<Probe>,
}

/// Reads the node: finds the kubelet (or the process it is embedded in) and reads what it
/// reads, through that process's root ([`crate::sources`]).
pub fn collect(opts: &ScanOptions) -> Result<Snapshot, ScanError> {
    crate::sources::collect(opts)
}

/// Like [`collect`], for every kubelet on the node (`--all`).
pub fn collect_all(opts: &ScanOptions) -> Result<Vec<Snapshot>, ScanError> {
    crate::sources::collect_all(opts)
}

/// Stats the files the kubelet uses; the client CA's path is the effective setting, so the
/// (pure) effective computation runs here once for it.
pub(crate) fn collect_node_files(
    proc_dir: &std::path::Path,
    kp: &KubeletProcess,
    cmd: &crate::cmdline::CommandLine,
    (config_file, dropins): (&Option<FileInput>, &Option<DropInDir>),
    version: Option<&str>,
) -> NodeFiles {
    let minor = version.and_then(kubelet_minor);
    let eff = compute_for(cmd, config_file.as_ref(), dropins.as_ref(), minor);
    let client_ca = eff
        .lookup("authentication.x509.clientCAFile")
        .and_then(|s| match &s.value {
            serde_json::Value::String(p) => Ok((p.clone(), s.source, s.origin.clone())),
            other => Err(format!(
                "authentication.x509.clientCAFile is {other}, not a path"
            )),
        });
    node_files::collect(proc_dir, kp, cmd, client_ca)
}

/// The kubelet's effective settings as a snapshot states them (flags, files, what the
/// adapter could not determine, a refused input, the kubeconfig's client auth). Pure.
pub fn effective(snap: &Snapshot) -> Effective {
    let mut cmd = parse_cmdline(snap.argv.get(1..).unwrap_or_default());
    cmd.origins = snap.arg_origins.clone();
    let minor = snap.kubelet_version.as_deref().and_then(kubelet_minor);
    let mut eff = compute_for(
        &cmd,
        snap.config_file.as_ref(),
        snap.dropins.as_ref(),
        minor,
    );
    for (path, reason) in &snap.undetermined {
        eff.unknown
            .entry(path.clone())
            .or_insert_with(|| reason.clone());
    }
    if let Some(err) = &snap.input_error {
        eff.refused = Some(err.clone());
    }
    eff.client_auth = snap.kubeconfig.as_ref().map(|k| {
        // A read error already names the file (and how the kubelet's root was reached).
        k.content
            .as_deref()
            .map_err(String::clone)
            .and_then(|text| kubeconfig::client_auth(text).map_err(|e| format!("{}: {e}", k.path)))
    });
    eff
}

/// Computes and checks a snapshot and assembles the report. Pure.
pub fn assemble(snap: &Snapshot, scan_time: String) -> Report {
    let eff = effective(snap);
    let mut checks = checks::evaluate(&eff);
    validate::overrule(&mut checks, &eff);
    // File modes are facts of their own: a refused config does not make them unknown.
    checks.extend(checks::files::evaluate(&snap.node_files));
    // The API server is a process of its own: the kubelet's inputs do not change it.
    checks.extend(checks::apiserver::evaluate(&snap.apiserver));
    // The ports' answers are facts of their own too, which `overrule` must not touch;
    // where they contradict the settings, a warning says so next to `probe-contradiction`.
    let mut contradictions = Vec::new();
    if let Some(probe) = &snap.probe {
        checks.extend(checks::probes::evaluate(&eff, probe));
        contradictions = checks::probes::warnings(&eff, probe);
    }
    let mut report = report_from(snap, &eff, checks, scan_time);
    report.warnings.extend(contradictions);
    report
}

fn report_from(
    snap: &Snapshot,
    eff: &Effective,
    checks: Vec<CheckResult>,
    scan_time: String,
) -> Report {
    let mut warnings = snap.warnings.clone();
    warnings.extend(eff.warnings.iter().cloned());
    if let Some(err) = &eff.config_error {
        warnings.push(Warning {
            message: format!(
                "the kubelet's configuration could not be read as the kubelet reads it: {err}. \
                 A running kubelet cannot have loaded it as it is now (was it changed after the \
                 kubelet started?); checks on values not set by flags report error"
            ),
            file: None,
            field: None,
        });
    }
    if let Some(refused) = &eff.refused {
        let message = if snap.input_error.as_ref() == Some(refused) {
            format!("{refused}. Every check reports error")
        } else {
            format!(
                "{refused}. Every check reports error; fix the configuration (or restart the \
                 kubelet to see it fail) and scan again"
            )
        };
        warnings.push(Warning {
            message,
            file: None,
            field: None,
        });
    }
    let (exe, exe_sha256, exe_error) = match &snap.exe {
        Ok(info) => (Some(info.path.clone()), Some(info.sha256.clone()), None),
        Err(e) => (None, None, Some(e.clone())),
    };
    Report {
        schema: REPORT_SCHEMA.to_string(),
        catalogue: nodeproof_proto::CATALOGUE_VERSION.to_string(),
        scan_time,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        node: snap.node.clone(),
        kubelet: KubeletInfo {
            pid: snap.pid,
            cmdline: snap.argv.clone(),
            config_file: snap.config_file.as_ref().map(|f| f.path.clone()),
            config_dir: snap.dropins.as_ref().map(|d| d.dir.clone()),
            exe,
            exe_sha256,
            exe_error,
            version: snap.kubelet_version.clone(),
            distribution: snap.distribution.clone(),
            embedded_in: snap.embedded_in.clone(),
        },
        settings: eff.settings.clone(),
        summary: Summary::of(&checks),
        checks,
        warnings,
        files: snap.files.clone(),
        link: None,
    }
}

/// The in-toto statement for a report. Subjects: the kubelet binary when it could be
/// hashed, every file read, and always the command line itself (so the list is never empty
/// and the argv the verdicts rest on is bound to the signature too).
pub fn statement(report: &Report) -> Statement {
    let mut subjects = Vec::new();
    if let (Some(exe), Some(digest)) = (&report.kubelet.exe, &report.kubelet.exe_sha256) {
        subjects.push(Subject::sha256(exe.clone(), digest.clone()));
    }
    for f in &report.files {
        subjects.push(Subject::sha256(f.path.clone(), f.sha256.clone()));
    }
    subjects.push(Subject::sha256(
        format!("kubelet-cmdline:{}", report.kubelet.pid),
        hex::encode(Sha256::digest(report.kubelet.cmdline.join("\0").as_bytes())),
    ));
    Statement::new(subjects, report.clone())
}

/// The scan's exit code under `--fail-on` (docs/checks.md, "Exit codes"): 1 when a check at
/// or above `fail_on` fails, or when any check is `error` whatever its severity (a value
/// that could not be known is not a pass, and its severity says nothing about what the
/// value is); `warn` never changes it; otherwise 0. (2, the scan could not run, is decided
/// by the caller.)
pub fn exit_code(report: &Report, fail_on: Severity) -> u8 {
    let bad = report.checks.iter().any(|c| match c.status {
        Status::Fail => c.severity >= fail_on,
        Status::Error => true,
        Status::Pass | Status::Warn => false,
    });
    u8::from(bad)
}

/// The current time as RFC 3339 UTC, second precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::{Remediation, CATALOGUE_VERSION};

    fn report(checks: &[(Status, Severity)]) -> Report {
        let checks: Vec<CheckResult> = checks
            .iter()
            .enumerate()
            .map(|(i, &(status, severity))| CheckResult {
                id: format!("kubelet-test-{i}"),
                cis: format!("4.2.{}", i + 1),
                title: "test".to_string(),
                scored: false,
                severity,
                status,
                expected: String::new(),
                actual: String::new(),
                source: None,
                origin: None,
                note: String::new(),
                remediation: Remediation {
                    flag: String::new(),
                    config: String::new(),
                },
            })
            .collect();
        Report {
            schema: REPORT_SCHEMA.to_string(),
            catalogue: CATALOGUE_VERSION.to_string(),
            scan_time: "2026-01-01T00:00:00Z".to_string(),
            agent_version: "0".to_string(),
            node: NodeFacts::default(),
            kubelet: KubeletInfo {
                pid: 1,
                cmdline: vec![],
                config_file: None,
                config_dir: None,
                exe: None,
                exe_sha256: None,
                exe_error: None,
                version: None,
                distribution: None,
                embedded_in: None,
            },
            settings: Default::default(),
            summary: Summary::of(&checks),
            checks,
            warnings: vec![],
            files: vec![],
            link: None,
        }
    }

    #[test]
    fn any_failing_check_exits_1_by_default() {
        let r = report(&[
            (Status::Pass, Severity::Critical),
            (Status::Fail, Severity::Low),
        ]);
        assert_eq!(exit_code(&r, Severity::Low), 1);
        let r = report(&[
            (Status::Pass, Severity::Critical),
            (Status::Pass, Severity::Low),
        ]);
        assert_eq!(exit_code(&r, Severity::Low), 0);
    }

    #[test]
    fn fail_on_raises_the_bar_inclusively() {
        let r = report(&[
            (Status::Fail, Severity::Medium),
            (Status::Fail, Severity::High),
        ]);
        assert_eq!(exit_code(&r, Severity::Medium), 1);
        assert_eq!(exit_code(&r, Severity::High), 1);
        assert_eq!(exit_code(&r, Severity::Critical), 0);
    }

    #[test]
    fn warn_never_changes_the_exit_code() {
        let r = report(&[
            (Status::Warn, Severity::Critical),
            (Status::Pass, Severity::Low),
        ]);
        assert_eq!(exit_code(&r, Severity::Low), 0);
    }

    #[test]
    fn error_exits_1_whatever_fail_on() {
        let r = report(&[
            (Status::Error, Severity::Low),
            (Status::Pass, Severity::Critical),
        ]);
        for bar in Severity::ALL {
            assert_eq!(exit_code(&r, bar), 1, "--fail-on {bar}");
        }
    }
}
