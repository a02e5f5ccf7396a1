//! The daemon loop: the only part of the daemon with a clock. It asks the pure parts what
//! to do and does it: deliver the spool oldest first (never a statement before the one
//! ahead of it is acknowledged), scan on the interval, spool before sending, back off on
//! failures that may pass, and stop cleanly when the shutdown future completes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};
use tracing::{error, info, warn};

use super::backoff::backoff;
use super::chain::Kind;
use super::client::{Collector, Delivery};
use super::spool::{Rejection, Spool, SpoolError};
use super::{format_duration, Config, DaemonError, RunOutcome, Stopped};
use crate::scan;

/// Runs the daemon with `config` until `shutdown` completes (or, with `config.once`, for
/// one cycle: deliver the spool, scan, deliver). Returns what it did; errors only when it
/// cannot start (bad URL or TLS files, unusable spool, bad settings). A failing scan, an
/// unreachable collector or a refused statement are logged and handled, not returned.
///
/// Shutdown abandons a request in flight (the statement stays spooled; the collector
/// answers "duplicate" if it had stored it) and never leaves the spool half-written.
pub async fn run<F>(config: Config, shutdown: F) -> Result<RunOutcome, DaemonError>
where
    F: Future<Output = ()> + Send + 'static,
{
    validate(&config)?;
    let client = Collector::new(&config.collector, &config.tls, config.timeouts)?;
    if client.url().scheme() == "http" {
        warn!(
            collector = %client.url(),
            "the collector URL is plain http: reports are signed, so they cannot be altered \
             unseen, but anyone on the path can read them; use https outside tests"
        );
    }
    let spool = Spool::open(
        &config.spool_dir,
        &config.node,
        config.key.clone(),
        config.spool_max,
    )?;
    info!(
        node = %config.node,
        key = %nodeproof_proto::keyid(&config.key.verifying_key()),
        collector = %client.url(),
        interval = %format_duration(config.interval),
        spool = %config.spool_dir.display(),
        pending = spool.pending().len(),
        once = config.once,
        "nodeproof-agent daemon starting"
    );
    let once = config.once;
    let mut daemon = Daemon {
        out: RunOutcome::new(if once {
            Stopped::Once
        } else {
            Stopped::Shutdown
        }),
        config,
        client,
        spool,
        attempt: 0,
    };
    let mut stop = Stop {
        fut: Some(Box::pin(shutdown)),
        fired: false,
    };
    if once {
        daemon.once(&mut stop).await;
        if stop.fired {
            daemon.out.stopped = Stopped::Shutdown;
        }
    } else {
        daemon.forever(&mut stop).await;
    }
    daemon.out.pending = daemon.spool.pending().len();
    daemon.out.set_aside = daemon.spool.set_aside_here();
    info!(
        delivered = daemon.out.delivered,
        pending = daemon.out.pending,
        rejected = daemon.out.rejected,
        dropped = daemon.out.dropped,
        set_aside = daemon.out.set_aside,
        "nodeproof-agent daemon stopped"
    );
    Ok(daemon.out)
}

fn validate(config: &Config) -> Result<(), DaemonError> {
    if config.interval < Duration::from_secs(1) {
        return Err(DaemonError::Interval);
    }
    let n = &config.node;
    if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DaemonError::NodeName(n.clone()));
    }
    if config.spool_max == 0 {
        return Err(DaemonError::SpoolMax);
    }
    Ok(())
}

/// The shutdown future, polled only until it completes once.
struct Stop {
    fut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    fired: bool,
}

impl Stop {
    /// Completes when shutdown was asked for; cancel-safe.
    async fn wait(&mut self) {
        if let Some(f) = self.fut.as_mut() {
            f.as_mut().await;
            self.fut = None;
        }
        self.fired = true;
    }
}

/// What one delivery pass ended with.
#[derive(Debug)]
enum Step {
    /// The spool is empty.
    Done,
    /// Try again after a backoff, at least `at_least` (the collector's Retry-After).
    Retry {
        reason: String,
        at_least: Duration,
    },
    /// Something about the node or setup stops delivery; try again next interval.
    Blocked,
    Stopped,
}

struct Daemon {
    config: Config,
    client: Collector,
    spool: Spool,
    out: RunOutcome,
    /// Consecutive failed delivery passes, for the backoff.
    attempt: u32,
}

impl Daemon {
    async fn forever(&mut self, stop: &mut Stop) {
        let interval = self.config.interval;
        let mut next_scan = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            if retry_at.is_none_or(|t| t <= Instant::now()) {
                match self.deliver(stop).await {
                    Step::Stopped => break,
                    step => retry_at = self.schedule(step),
                }
            }
            if Instant::now() >= next_scan {
                self.out.cycles += 1;
                self.scan_and_spool().await;
                while next_scan <= Instant::now() {
                    next_scan += interval;
                }
                if retry_at.is_none() {
                    match self.deliver(stop).await {
                        Step::Stopped => break,
                        step => retry_at = self.schedule(step),
                    }
                }
            }
            if stop.fired {
                break;
            }
            let wake = retry_at.map_or(next_scan, |t| t.min(next_scan));
            tokio::select! {
                () = sleep_until(wake) => {}
                () = stop.wait() => break,
            }
        }
    }

    /// When to try delivering again after a pass that ended with `step`.
    fn schedule(&mut self, step: Step) -> Option<Instant> {
        match step {
            Step::Done | Step::Stopped => {
                self.attempt = 0;
                None
            }
            Step::Retry { reason, at_least } => {
                let wait = self.backoff_wait(self.attempt, at_least);
                self.attempt = self.attempt.saturating_add(1);
                warn!(
                    pending = self.spool.pending().len(),
                    attempt = self.attempt,
                    retry_in = %format_duration(wait),
                    "could not deliver to the collector: {reason}; the statements stay spooled"
                );
                Some(Instant::now() + wait)
            }
            Step::Blocked => {
                self.attempt = 0;
                Some(Instant::now() + self.config.interval)
            }
        }
    }

    fn backoff_wait(&self, attempt: u32, at_least: Duration) -> Duration {
        let cap = self.config.retry_cap;
        backoff(attempt, self.config.retry_base, cap, rand::random::<f64>()).max(at_least.min(cap))
    }

    async fn once(&mut self, stop: &mut Stop) {
        self.out.cycles = 1;
        let attempts = self.config.once_attempts.max(1);
        let Some(reachable) = self.deliver_with_retries(stop, attempts).await else {
            return;
        };
        self.scan_and_spool().await;
        if stop.fired {
            return;
        }
        // When the collector could not be reached a moment ago, one more try will do.
        let attempts = if reachable { attempts } else { 1 };
        self.deliver_with_retries(stop, attempts).await;
    }

    /// Delivers the spool, retrying a failure that may pass up to `attempts` tries in all.
    /// `None` when stopped; otherwise whether the collector was reached.
    async fn deliver_with_retries(&mut self, stop: &mut Stop, attempts: u32) -> Option<bool> {
        let mut failures = 0;
        loop {
            match self.deliver(stop).await {
                Step::Done | Step::Blocked => return Some(true),
                Step::Stopped => return None,
                Step::Retry { reason, at_least } => {
                    failures += 1;
                    if failures >= attempts {
                        warn!(
                            pending = self.spool.pending().len(),
                            tries = failures,
                            "could not deliver to the collector: {reason}; giving up for this \
                             run, the statements stay spooled for the next"
                        );
                        return Some(false);
                    }
                    let wait = self.backoff_wait(failures - 1, at_least);
                    warn!(
                        retry_in = %format_duration(wait),
                        "could not deliver to the collector: {reason}"
                    );
                    tokio::select! {
                        () = sleep(wait) => {}
                        () = stop.wait() => return None,
                    }
                }
            }
        }
    }

    /// One delivery pass: sends the spool, oldest first, one statement at a time, until it
    /// is empty or something stops it.
    async fn deliver(&mut self, stop: &mut Stop) -> Step {
        let mut chain_errors_in_row = 0u32;
        loop {
            if stop.fired {
                return Step::Stopped;
            }
            let (entry, bytes) = match self.spool.head() {
                Ok(Some(head)) => head,
                Ok(None) => return Step::Done,
                Err(e) => return self.spool_failed(e),
            };
            let delivery = tokio::select! {
                d = self.client.send_report(bytes) => d,
                () = stop.wait() => {
                    info!(
                        sequence = entry.sequence,
                        "shutting down: abandoned the report in flight; it stays spooled and \
                         is sent again on the next start (a duplicate if the collector had it)"
                    );
                    return Step::Stopped;
                }
            };
            let done = match delivery {
                // classify() checked that the acknowledgement names the digest of the bytes
                // sent, which are the head's.
                Delivery::Delivered {
                    duplicate,
                    accepted: _,
                } => {
                    info!(
                        sequence = entry.sequence,
                        kind = entry.kind.name(),
                        digest = %entry.digest,
                        duplicate,
                        "delivered"
                    );
                    chain_errors_in_row = 0;
                    self.out.delivered += 1;
                    self.out.duplicates += u64::from(duplicate);
                    self.out.blocked = None;
                    self.spool.ack_head()
                }
                Delivery::Retry { reason, after } => {
                    return Step::Retry {
                        reason: format!("statement {}: {reason}", entry.sequence),
                        at_least: after.unwrap_or(Duration::ZERO),
                    };
                }
                Delivery::Chain {
                    code,
                    message,
                    point,
                } => {
                    self.out.chain_errors += 1;
                    chain_errors_in_row += 1;
                    error!(
                        code = %code,
                        our_sequence = entry.sequence,
                        collector_last_sequence = point.sequence,
                        collector_last_digest = point.digest.as_deref().unwrap_or("-"),
                        pending = self.spool.pending().len(),
                        "CHAIN BREAK: the collector says {message}; re-chaining every spooled \
                         statement after the collector's last one (the collector keeps the \
                         break on record in chain_events)"
                    );
                    if chain_errors_in_row > 3 {
                        return Step::Retry {
                            reason: "the collector keeps answering chain errors after \
                                     re-chaining; waiting before trying again"
                                .into(),
                            at_least: Duration::ZERO,
                        };
                    }
                    self.spool.rebase(point).map(|found| {
                        if found > 0 {
                            info!(
                                found,
                                "the collector already had the oldest spooled statement(s); \
                                 counted as delivered"
                            );
                            self.out.delivered += found as u64;
                        }
                    })
                }
                Delivery::UnknownBase { status, message } => {
                    let why = rejection(Some(status), "unknown_base", &message);
                    self.spool.reject_head_run(&why).map(|n| {
                        error!(
                            status,
                            sequence = entry.sequence,
                            set_aside = n,
                            dir = %self.spool.dir().join("rejected").display(),
                            "the collector does not know the report this unchanged notice rests \
                             on ({message}): set the notices of that run aside; the next scan \
                             is sent as a full report"
                        );
                        self.out.rejected += n as u64;
                    })
                }
                Delivery::Reject {
                    status,
                    code,
                    message,
                } => {
                    let why = rejection(Some(status), &code, &message);
                    self.spool.reject_head(&why).map(|n| {
                        error!(
                            status,
                            code = %code,
                            sequence = entry.sequence,
                            kind = entry.kind.name(),
                            set_aside = n,
                            dir = %self.spool.dir().join("rejected").display(),
                            "the collector refused the statement: {message}; set aside (with \
                             any notices resting on it) and the rest re-chained"
                        );
                        self.out.rejected += n as u64;
                    })
                }
                Delivery::Blocked {
                    status,
                    code,
                    message,
                    hint,
                } => {
                    error!(
                        status,
                        code = %code,
                        pending = self.spool.pending().len(),
                        retry_in = %format_duration(self.config.interval),
                        "the collector will not take reports from this node: {message}; {hint}"
                    );
                    self.out.blocked = Some(format!("{code}: {message}"));
                    return Step::Blocked;
                }
            };
            if let Err(e) = done {
                return self.spool_failed(e);
            }
        }
    }

    fn spool_failed(&mut self, e: SpoolError) -> Step {
        error!("spool error: {e}; re-reading the spool from disk before the next try");
        if let Err(again) = self.spool.recover() {
            error!("the spool could not be re-read either: {again}");
        }
        Step::Retry {
            reason: format!("spool error: {e}"),
            at_least: Duration::ZERO,
        }
    }

    async fn scan_and_spool(&mut self) {
        let opts = self.config.scan.clone();
        let clock = self.config.clock.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            scan::collect(&opts).map(|snap| scan::assemble(&snap, clock.now()))
        })
        .await;
        let report = match scanned {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => return self.scan_failed(e.to_string()),
            Err(e) => return self.scan_failed(format!("the scan did not finish: {e}")),
        };
        let interval_secs = self.config.interval.as_secs();
        match self.spool.append(report, interval_secs) {
            Ok(appended) => {
                let e = &appended.entry;
                match &e.kind {
                    Kind::Full { .. } => self.out.full_reports += 1,
                    Kind::Unchanged { .. } => self.out.unchanged += 1,
                }
                self.out.dropped += appended.dropped as u64;
                let count = match &e.kind {
                    Kind::Unchanged { count, .. } => *count,
                    Kind::Full { .. } => 0,
                };
                info!(
                    sequence = e.sequence,
                    kind = e.kind.name(),
                    unchanged_count = count,
                    digest = %e.digest,
                    pending = self.spool.pending().len(),
                    "spooled"
                );
            }
            Err(e) => {
                self.scan_failed(format!(
                    "could not write the statement to the spool ({e}); it is not sent (only \
                     what is safely on disk is)"
                ));
                if let Err(again) = self.spool.recover() {
                    error!("the spool could not be re-read: {again}");
                }
            }
        }
    }

    fn scan_failed(&mut self, message: String) {
        self.out.scans_failed += 1;
        if self.config.once {
            error!("scan failed, nothing sent for it: {message}");
        } else {
            error!(
                next_try_in = %format_duration(self.config.interval),
                "scan failed, nothing sent for it: {message}"
            );
        }
        self.out.last_scan_error = Some(message);
    }
}

fn rejection(status: Option<u16>, code: &str, message: &str) -> Rejection {
    Rejection {
        at: scan::now_rfc3339(),
        status,
        error: code.to_string(),
        message: message.to_string(),
        sequence: None,
        digest: None,
    }
}
