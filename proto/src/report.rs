//! The report an agent produces: what it observed about one node's kubelet, the effective
//! settings with their provenance, and one verdict per check. Shared by the agent (which
//! builds it) and the collector (which stores and queries it), so field names are part of
//! the wire format: change them only with a new `schema`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The value of `Report::schema`; bump when the shape changes incompatibly.
pub const REPORT_SCHEMA: &str = "nodeproof.dev/report/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    /// The check catalogue the verdicts were judged against (`CATALOGUE_VERSION`).
    pub catalogue: String,
    /// RFC 3339, UTC, when the scan read the node.
    pub scan_time: String,
    pub agent_version: String,
    pub node: NodeFacts,
    pub kubelet: KubeletInfo,
    /// Keyed by v1beta1 JSON path (`authentication.anonymous.enabled`, `readOnlyPort`,
    /// `featureGates.RotateKubeletServerCertificate`) or, for flag-only settings, by the
    /// flag name with its dashes (`--hostname-override`).
    pub settings: BTreeMap<String, Setting>,
    pub checks: Vec<CheckResult>,
    pub summary: Summary,
    pub warnings: Vec<Warning>,
    /// Every file the scan read to reach its verdicts, with its digest.
    pub files: Vec<FileDigest>,
    /// Set when the agent daemon sends the report to a collector (absent from
    /// `scan --format dsse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

impl Report {
    /// A digest of everything that decides the node's posture: the kubelet's command line,
    /// files and binary, the effective settings, the verdicts and the warnings. Not the
    /// scan time, the pid or node facts. Two scans with the same posture digest may be
    /// sent as one full report and [`Unchanged`] notices.
    pub fn posture_digest(&self) -> String {
        sha256_hex(&self.posture_json())
    }

    /// The exact bytes [`Report::posture_digest`] hashes (compact JSON of the posture
    /// fields), for a caller that hashes them with another SHA-256 implementation.
    pub fn posture_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Posture<'a> {
            cmdline: &'a [String],
            config_file: &'a Option<String>,
            config_dir: &'a Option<String>,
            exe_sha256: &'a Option<String>,
            settings: &'a BTreeMap<String, Setting>,
            checks: &'a [CheckResult],
            warnings: &'a [Warning],
            files: &'a [FileDigest],
        }
        let mut out = Vec::with_capacity(16 * 1024);
        let written = serde_json::to_writer(
            &mut out,
            &Posture {
                cmdline: &self.kubelet.cmdline,
                config_file: &self.kubelet.config_file,
                config_dir: &self.kubelet.config_dir,
                exe_sha256: &self.kubelet.exe_sha256,
                settings: &self.settings,
                checks: &self.checks,
                warnings: &self.warnings,
                files: &self.files,
            },
        );
        if written.is_err() {
            out.clear();
        }
        out
    }

    /// The CIS numbers of checks that did not pass (fail, warn or error), in catalogue
    /// order, for fleet views.
    pub fn not_passing(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| c.cis.clone())
            .collect()
    }
}

/// Lowercase hex SHA-256 of `bytes`; the digest of an envelope is this over its exact bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Where a signed statement stands in its node's chain of reports. The collector accepts a
/// statement only if `sequence` follows the node's last accepted one and `previous` is that
/// statement's envelope digest, so a dropped, replayed or forked report shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The node's name as enrolled.
    pub node: String,
    /// 1 for the first statement a node sends, then one more each time.
    pub sequence: u64,
    /// [`sha256_hex`] of the previous statement's envelope bytes; `None` for sequence 1.
    pub previous: Option<String>,
    /// How often the agent scans, so the collector can tell a silent node (stale).
    pub interval_secs: u64,
}

/// A signed notice that a scan found exactly the posture of an earlier full report. The
/// daemon sends one instead of a full report when nothing changed, so storage does not
/// grow with unchanged scans; the collector keeps the latest notice of each run, which
/// attests the whole run (`first_unchanged` to `scan_time`, `count` scans).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unchanged {
    pub link: Link,
    pub scan_time: String,
    pub agent_version: String,
    /// The envelope digest of the full report whose posture this scan matched.
    pub since: String,
    pub since_sequence: u64,
    /// The posture digest both share ([`Report::posture_digest`]).
    pub posture: String,
    /// Unchanged scans since that report, this one included.
    pub count: u64,
    /// When the first of those scans ran.
    pub first_unchanged: String,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeFacts {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    /// RFC 3339, UTC.
    pub boot_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeletInfo {
    pub pid: i32,
    pub cmdline: Vec<String>,
    /// The `--config` path as the kubelet resolves it (absolute, inside its root).
    pub config_file: Option<String>,
    pub config_dir: Option<String>,
    /// The executable, as `/proc/<pid>/exe` names it, and its digest when it could be read.
    pub exe: Option<String>,
    pub exe_sha256: Option<String>,
    /// Why the executable could not be hashed, when it could not.
    pub exe_error: Option<String>,
    /// The kubelet's version (`v1.31.4`), read from its binary's build stamp or given with
    /// `--kubelet-version`; it decides how drop-ins merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The distribution whose layout nodeproof read the kubelet's settings from (`k3s`,
    /// `microk8s`), when it is not a plain kubelet process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    /// When the kubelet runs inside another process (k3s, microk8s' kubelite): that process,
    /// as `k3s server (pid 812)`. `pid` and `cmdline` then describe that process and the
    /// kubelet's arguments as nodeproof reconstructed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_in: Option<String>,
}

/// Where an effective value came from. Later sources override earlier ones in the order
/// default < config-file < drop-in < flag, exactly as the kubelet applies them.
/// `distribution-default` is a flag too (same precedence), but one the distribution passes
/// to a kubelet it runs in-process (k3s' built-in kubelet arguments): it is written nowhere
/// on the node, nodeproof computed it from the distribution's code, and only the
/// distribution's log (`Running kubelet ...`) confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Default,
    ConfigFile,
    DropIn,
    Flag,
    DistributionDefault,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::ConfigFile => "config-file",
            Source::DropIn => "drop-in",
            Source::Flag => "flag",
            Source::DistributionDefault => "distribution-default",
        }
    }

    /// A command-line flag, whether written on the command line or passed by the
    /// distribution: the kubelet applies both last, over every file.
    pub fn is_flag(self) -> bool {
        matches!(self, Source::Flag | Source::DistributionDefault)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// As the kubelet's /configz would show it (durations as `"4h0m0s"`).
    pub value: serde_json::Value,
    pub source: Source,
    /// The flag as written on the command line, or the path of the file that set it; for a
    /// default, what made it the default (`kubelet v1beta1 defaults`, `legacy flag defaults`).
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The value is known but a person must judge it (4.2.7 and 4.2.8 only; docs/checks.md).
    Warn,
    /// The check could not be evaluated; `note` says why.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediation {
    /// The command-line form, e.g. `--read-only-port=0`.
    pub flag: String,
    /// The config-file form, e.g. `readOnlyPort: 0`.
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Our stable id, e.g. `kubelet-read-only-port`.
    pub id: String,
    /// The CIS Kubernetes Benchmark number, e.g. `4.2.4`.
    pub cis: String,
    pub title: String,
    /// CIS "Automated" (true) or "Manual" (false): the benchmark's label, kept for readers;
    /// it decides neither the status nor the exit code.
    pub scored: bool,
    /// From the catalogue (`crate::catalogue::CHECKS`); the collector uses its own copy.
    pub severity: crate::Severity,
    pub status: Status,
    pub expected: String,
    pub actual: String,
    /// The setting's source and origin, when the verdict rests on one setting.
    pub source: Option<Source>,
    pub origin: Option<String>,
    pub note: String,
    pub remediation: Remediation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub pass: u32,
    pub fail: u32,
    pub warn: u32,
    pub error: u32,
}

impl Summary {
    pub fn of(checks: &[CheckResult]) -> Summary {
        Summary::count(checks.iter().map(|c| c.status))
    }

    /// Counts verdicts, wherever they are held.
    pub fn count(statuses: impl IntoIterator<Item = Status>) -> Summary {
        let mut s = Summary::default();
        for status in statuses {
            match status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Warn => s.warn += 1,
                Status::Error => s.error += 1,
            }
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub message: String,
    /// The file the warning is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The v1beta1 field path or flag it concerns, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The path as the kubelet sees it (inside its own root).
    pub path: String,
    pub sha256: String,
}
