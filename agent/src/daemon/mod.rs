//! The agent as a daemon: scan every interval, chain and sign each statement, spool it,
//! and deliver the spool to a collector in order, none lost, none twice.
//!
//! The parts, from pure to edge (see `docs/collector.md` for the protocol):
//!
//! * [`backoff`]: how long to wait before retrying (pure, deterministic given a draw).
//! * [`chain`]: full report or unchanged notice, where a statement goes in the chain,
//!   what to drop when the spool is full, how to re-chain (pure; signing is pure too).
//! * [`enroll`]: the signed enrolment and key-rotation requests (pure).
//! * [`spool`]: the spool directory; every write fsync'd, the state written atomically.
//! * [`client`]: HTTP to the collector, and [`client::classify`], the pure reading of its
//!   answers.
//! * [`run()`]: the loop that ties them together, and the only place with a clock.

pub mod backoff;
pub mod chain;
pub mod client;
pub mod enroll;
pub mod files;
pub mod node;
mod run;
pub mod spool;
#[cfg(test)]
mod testutil;
pub mod text;

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nodeproof_proto::keyid;

pub use client::{ClientError, Collector, Delivery, Timeouts, TlsOptions};
pub use run::run;
pub use spool::{Spool, SpoolError};

use crate::scan::ScanOptions;

/// Where the daemon spools by default.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/nodeproof/spool";
/// How many undelivered statements the spool holds by default (about a week at 5 minutes).
pub const DEFAULT_SPOOL_MAX: usize = 2000;
/// How often the daemon scans by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Everything [`run`] needs. Build it with [`Config::new`] and adjust the fields.
#[derive(Clone)]
pub struct Config {
    /// The collector's base URL (`https://collector.example:8443`).
    pub collector: String,
    pub tls: TlsOptions,
    pub timeouts: Timeouts,
    /// The node's signing key (the one enrolled at the collector).
    pub key: SigningKey,
    /// The node's name as enrolled; goes into every statement's link.
    pub node: String,
    /// How often to scan; also sent to the collector (`link.interval_secs`) so it can
    /// tell a silent node. Whole seconds, at least 1.
    pub interval: Duration,
    pub spool_dir: PathBuf,
    /// At most this many undelivered statements are kept; the oldest go first.
    pub spool_max: usize,
    /// One cycle (deliver the spool, scan, deliver), then return.
    pub once: bool,
    /// What to scan (`--proc`, `--pid`).
    pub scan: ScanOptions,
    /// Retry backoff: the first retry waits up to `retry_base`, doubling up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// With `once`: how many times one statement is tried before the run gives up on it.
    pub once_attempts: u32,
    /// Where each scan's time comes from: the system clock, except in tests that replay
    /// days of scans without waiting for them.
    pub clock: ScanClock,
}

/// The time stamped on a scan (RFC 3339 UTC): the system clock ([`ScanClock::system`]), or
/// a function ([`ScanClock::from_fn`]) so a test can drive a week of scans at a 5 minute
/// interval in seconds. Nothing else in the daemon reads it.
#[derive(Clone, Default)]
pub struct ScanClock(Option<std::sync::Arc<dyn Fn() -> String + Send + Sync>>);

impl ScanClock {
    pub fn system() -> ScanClock {
        ScanClock(None)
    }

    pub fn from_fn(f: impl Fn() -> String + Send + Sync + 'static) -> ScanClock {
        ScanClock(Some(std::sync::Arc::new(f)))
    }

    /// The scan time now.
    pub fn now(&self) -> String {
        match &self.0 {
            Some(f) => f(),
            None => crate::scan::now_rfc3339(),
        }
    }
}

impl std::fmt::Debug for ScanClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "injected"
        } else {
            "system"
        })
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("collector", &self.collector)
            .field("tls", &self.tls)
            .field("timeouts", &self.timeouts)
            .field(
                "key",
                &format_args!("keyid {}", keyid(&self.key.verifying_key())),
            )
            .field("node", &self.node)
            .field("interval", &self.interval)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max", &self.spool_max)
            .field("once", &self.once)
            .field("scan", &self.scan)
            .field("retry_base", &self.retry_base)
            .field("retry_cap", &self.retry_cap)
            .field("once_attempts", &self.once_attempts)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Config {
    /// The defaults: 5 minute interval, spool in [`DEFAULT_SPOOL_DIR`] holding 2000
    /// statements, retries from 1 s up to 5 min (3 tries per statement with `once`),
    /// 10 s to connect and 30 s per request, the host's /proc.
    pub fn new(collector: impl Into<String>, key: SigningKey, node: impl Into<String>) -> Config {
        Config {
            collector: collector.into(),
            tls: TlsOptions::default(),
            timeouts: Timeouts::default(),
            key,
            node: node.into(),
            interval: DEFAULT_INTERVAL,
            spool_dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            spool_max: DEFAULT_SPOOL_MAX,
            once: false,
            scan: ScanOptions {
                proc_dir: PathBuf::from("/proc"),
                pid: None,
                kubelet_version: None,
                probe: true,
            },
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            once_attempts: 3,
            clock: ScanClock::system(),
        }
    }
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the interval must be at least 1 second (--interval 5m, 30s, 1h)")]
    Interval,
    #[error(
        "the node name \"{0}\" is not usable: it must be non-empty, without spaces or control \
         characters (pass --node-name NAME)"
    )]
    NodeName(String),
    #[error("--spool-max must be at least 1 statement")]
    SpoolMax,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// `once`: the one cycle is done.
    Once,
    /// The shutdown future completed (SIGTERM, SIGINT).
    Shutdown,
}

/// What a run did, for the exit code and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub stopped: Stopped,
    /// Scan cycles started.
    pub cycles: u64,
    /// Scans that could not run (no kubelet, ...); nothing was sent for them.
    pub scans_failed: u64,
    pub last_scan_error: Option<String>,
    /// Statements written to the spool: full reports and unchanged notices.
    pub full_reports: u64,
    pub unchanged: u64,
    /// Statements the collector acknowledged (201), and of those already stored (200).
    pub delivered: u64,
    pub duplicates: u64,
    /// Statements set aside in `rejected/` (refused by the collector, or damaged).
    pub rejected: u64,
    /// Statements dropped because the spool was full.
    pub dropped: u64,
    /// Files the spool set aside on its own this run: foreign files moved to `foreign/`
    /// (a FIFO or a stray file named like a statement), damaged statements.
    pub set_aside: u64,
    /// Chain errors answered by re-chaining.
    pub chain_errors: u64,
    /// Undelivered statements left in the spool.
    pub pending: usize,
    /// The last node-level refusal (not enrolled, pending, revoked) or setup problem,
    /// when delivery stopped on one.
    pub blocked: Option<String>,
}

impl RunOutcome {
    fn new(stopped: Stopped) -> RunOutcome {
        RunOutcome {
            stopped,
            cycles: 0,
            scans_failed: 0,
            last_scan_error: None,
            full_reports: 0,
            unchanged: 0,
            delivered: 0,
            duplicates: 0,
            rejected: 0,
            dropped: 0,
            set_aside: 0,
            chain_errors: 0,
            pending: 0,
            blocked: None,
        }
    }

    /// Every statement of this run reached the collector and none is left over.
    pub fn all_delivered(&self) -> bool {
        self.pending == 0 && self.rejected == 0 && self.dropped == 0 && self.set_aside == 0
    }

    /// The process exit code: after a shutdown 0; after `once`, 2 when the scan could not
    /// run, 1 when anything is left undelivered (spooled, set aside or dropped) or the spool
    /// had to set a file aside, else 0.
    pub fn exit_code(&self) -> u8 {
        match self.stopped {
            Stopped::Shutdown => 0,
            Stopped::Once if self.scans_failed > 0 => 2,
            Stopped::Once if !self.all_delivered() => 1,
            Stopped::Once => 0,
        }
    }
}

/// Parses a duration: `300` (seconds), `30s`, `5m`, `1h`, `1h30m`, `2d`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (e.g. 30s, 5m, 1h)".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, after) = rest.split_at(digits);
        let letters = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(letters);
        if number.is_empty() {
            return Err(format!(
                "\"{t}\": expected a number at \"{rest}\" (e.g. 30s, 5m, 1h30m)"
            ));
        }
        let ms_per: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "\"{t}\": \"{number}\" has no unit (ms, s, m, h or d)"
                ))
            }
            _ => {
                return Err(format!(
                    "\"{t}\": unknown unit \"{unit}\" (ms, s, m, h or d)"
                ))
            }
        };
        total_ms = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(ms_per))
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| format!("\"{t}\" is too long"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Renders a duration the way [`parse_duration`] reads it (`1h30m`, `5m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration(" 1m5s "), Ok(Duration::from_secs(65)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        for bad in [
            "",
            "m",
            "5x",
            "5m3",
            "-1s",
            "1 m",
            "5mm",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_format_back() {
        for s in ["5m", "1h30m", "45s", "2d", "1d1h1m1s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn exit_codes() {
        let mut o = RunOutcome::new(Stopped::Once);
        assert_eq!(o.exit_code(), 0);
        o.pending = 1;
        assert_eq!(o.exit_code(), 1);
        o.pending = 0;
        o.rejected = 1;
        assert_eq!(o.exit_code(), 1);
        o.rejected = 0;
        o.set_aside = 1;
        assert_eq!(o.exit_code(), 1);
        o.scans_failed = 1;
        assert_eq!(o.exit_code(), 2);
        let mut o = RunOutcome::new(Stopped::Shutdown);
        o.pending = 5;
        assert_eq!(o.exit_code(), 0);
    }

    #[test]
    fn config_debug_hides_the_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let text = format!("{:?}", Config::new("https://c", key.clone(), "n"));
        assert!(text.contains(&keyid(&key.verifying_key())));
        assert!(!text.contains(&format!("{:?}", key.to_bytes())));
    }
}
