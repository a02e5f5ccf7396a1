//! nodeproof-agent: command-line wiring only; the work is in the library.
#![forbid(unsafe_code)]

use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use nodeproof_agent::daemon::enroll::{enroll_envelope, rotate_envelope};
use nodeproof_agent::daemon::files::read_private_key;
use nodeproof_agent::daemon::node::NodeName;
use nodeproof_agent::daemon::text::escape;
use nodeproof_agent::daemon::{
    self, parse_duration, ClientError, Collector, Config, Timeouts, TlsOptions,
};
use nodeproof_agent::render;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_proto::{
    keyid, sign_statement, signing_key_from_pem, signing_key_to_pem, verifying_key_to_pem, Severity,
};

#[derive(Debug, Parser)]
#[command(
    name = "nodeproof-agent",
    version,
    about = "Finds the running kubelet, computes its effective settings, checks them against the CIS Kubernetes Benchmark and signs the report."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan this node's kubelet and print the report.
    ///
    /// Exit codes: 0 no check fails at or above --fail-on and none is `error`; 1 a check at
    /// or above --fail-on fails, or a check could not be evaluated (`error`, whatever its
    /// severity); `warn` never changes it; 2 the scan could not run.
    Scan(ScanArgs),
    /// Create a signing key pair: DIR/agent.key (PKCS#8 PEM, mode 0600) and DIR/agent.pub.
    Keygen {
        /// Directory to write the keys to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// When DIR/agent.key exists, keep it and print its keyid instead of refusing (it
        /// must still be a valid key readable by its owner only): for an init container or
        /// a provisioning script that runs on every start. Never overwrites anything.
        #[arg(long)]
        if_missing: bool,
    },
    /// Enrol this node's key with a collector (POST /v1/enroll, signed by the key).
    ///
    /// Prints the node name it enrols (and where the name came from), the keyid and the
    /// status. Exit codes: 0 approved; 3 pending: enrolled without a token, waiting for
    /// `nodeproof-collector nodes approve NAME` (reports are spooled, not accepted, until
    /// then); 2 error, including a wrong, expired or used-up token (the collector's 401/403
    /// message says which), and a token the collector did not honour.
    Enroll(EnrollArgs),
    /// Replace this node's key at the collector (POST /v1/rotate, signed by the current key
    /// and co-signed by the new one). Then restart `run` with --key NEW.
    ///
    /// Exit codes: 0 rotated; 2 error.
    RotateKey(RotateArgs),
    /// Run as a daemon: scan every --interval, sign, spool, and deliver to the collector
    /// in order. Logs go to stderr, one line per event.
    ///
    /// Exit codes: 0 stopped by SIGTERM/SIGINT, or with --once everything was delivered;
    /// 1 with --once, something is left undelivered (still spooled, set aside in
    /// rejected/, or dropped: only the collector's acknowledgement of a statement's digest
    /// counts as delivered) or a file the agent did not write was moved out of the spool
    /// to foreign/; 2 it could not start, or with --once the scan could not run.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct CollectorArgs {
    /// The collector's URL, e.g. https://collector.example:8443.
    #[arg(long, value_name = "URL", env = "NODEPROOF_COLLECTOR")]
    collector: String,
    /// PEM bundle of CA certificates to trust (a collector with a private CA), in addition
    /// to the built-in web PKI roots.
    #[arg(long, value_name = "FILE", env = "NODEPROOF_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Trust only --ca-file, not the built-in roots.
    #[arg(long, requires = "ca_file")]
    ca_only: bool,
    /// Client certificate (PEM) for mutual TLS; needs --client-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "NODEPROOF_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "NODEPROOF_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// How long one request to the collector may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

impl CollectorArgs {
    fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            ca_only: self.ca_only,
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            request: self.timeout,
            ..Timeouts::default()
        }
    }

    fn client(&self) -> Result<Collector> {
        Ok(Collector::new(
            &self.collector,
            &self.tls(),
            self.timeouts(),
        )?)
    }
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The node's name at the collector. When given (and not empty) it wins; otherwise the
    /// name the kubelet registers: its --hostname-override, else the hostname
    /// (PROC/sys/kernel/hostname), trimmed and lowercased as the kubelet does.
    #[arg(long, value_name = "NAME", env = "NODEPROOF_NODE_NAME")]
    node_name: Option<String>,
    /// The /proc to read (the host's, or the host's mounted into a pod).
    #[arg(
        long = "proc",
        value_name = "DIR",
        default_value = "/proc",
        env = "NODEPROOF_PROC"
    )]
    proc_dir: PathBuf,
}

impl NodeArgs {
    /// The node's name, decided once for every subcommand ([`daemon::node::resolve`]).
    fn node_name(&self, pid: Option<i32>) -> Result<NodeName> {
        Ok(daemon::node::resolve(
            self.node_name.as_deref(),
            &self.proc_dir,
            pid,
        )?)
    }
}

/// Says which name is used and why, and warns when an explicit name is not the one the
/// kubelet registers.
fn announce(node: &NodeName) {
    eprintln!("node name: {} ({})", node.name, node.source);
    if matches!(
        node.source,
        daemon::node::NameSource::Hostname { kubelet: false, .. }
    ) {
        eprintln!(
            "warning: no running kubelet was found, so the name is the hostname; if the \
             kubelet will run with --hostname-override, or Kubernetes names this node \
             otherwise, pass --node-name (NODEPROOF_NODE_NAME) here and to `run`"
        );
    }
    if let Some(derived) = &node.derived_differs {
        eprintln!(
            "warning: the kubelet on this machine registers as \"{derived}\", not \"{}\"; \
             reports carry \"{}\" (--node-name wins)",
            node.name, node.name
        );
    }
}

#[derive(Debug, clap::Args)]
struct EnrollArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// Bootstrap token from `nodeproof-collector token create`; without one the node is
    /// left pending until an operator approves it.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "NODEPROOF_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Read the token from FILE instead (keeps it out of the process list).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Do nothing (exit 0) when FILE exists, and create FILE when the collector approves
    /// the node: for an init container that runs on every pod start. Pending (exit 3) and
    /// errors (exit 2) leave it absent, so the next start tries again.
    #[arg(long, value_name = "FILE")]
    done_file: Option<PathBuf>,
    /// The node's ed25519 private key (from `keygen`).
    #[arg(long, value_name = "FILE", env = "NODEPROOF_KEY")]
    key: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// The key the collector knows now.
    #[arg(long, value_name = "FILE", env = "NODEPROOF_KEY")]
    key: PathBuf,
    /// The key to replace it with (from `keygen --out OTHER_DIR`).
    #[arg(long, value_name = "FILE")]
    new_key: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// The node's ed25519 private key, as enrolled.
    #[arg(long, value_name = "FILE", env = "NODEPROOF_KEY")]
    key: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    /// The kubelet's pid, when several run or to pick one explicitly.
    #[arg(long)]
    pid: Option<i32>,
    /// The kubelet's version (e.g. 1.31), when its binary carries no build stamp; it
    /// decides how --config-dir drop-ins merge (the rules changed in 1.32).
    #[arg(long, value_name = "VERSION", env = "NODEPROOF_KUBELET_VERSION", value_parser = parse_kubelet_version)]
    kubelet_version: Option<String>,
    /// How often to scan (30s, 5m, 1h; plain numbers are seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", env = "NODEPROOF_INTERVAL", value_parser = parse_duration)]
    interval: Duration,
    /// Where undelivered statements wait (created, mode 0700).
    #[arg(long, value_name = "DIR", default_value = daemon::DEFAULT_SPOOL_DIR, env = "NODEPROOF_SPOOL")]
    spool: PathBuf,
    /// At most this many undelivered statements are kept; when full, the oldest are dropped.
    #[arg(long, value_name = "N", default_value_t = daemon::DEFAULT_SPOOL_MAX)]
    spool_max: usize,
    /// One cycle: deliver the spool, scan, deliver; then exit (0 all delivered, 1 something
    /// left undelivered or set aside, 2 the scan could not run).
    #[arg(long)]
    once: bool,
    /// The first retry after a failed delivery waits up to this long, doubling each time.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    retry_base: Duration,
    /// Retries wait at most this long.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    retry_cap: Duration,
    /// Do not probe the kubelet's ports (by default the scan sends an anonymous GET /pods
    /// to the kubelet API and the read-only port, and GET /healthz, each without
    /// credentials and within a second; see `probe-*` in the report).
    /// `NODEPROOF_NO_PROBE` takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "NODEPROOF_NO_PROBE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    no_probe: bool,
}

#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// The /proc to read: the host's (default), or the host's mounted into a pod.
    #[arg(
        long = "proc",
        value_name = "DIR",
        default_value = "/proc",
        env = "NODEPROOF_PROC"
    )]
    proc_dir: PathBuf,
    /// The kubelet's pid, when several run or to pick one explicitly (for k3s and
    /// microk8s: the pid of `k3s server`/`k3s agent` or `kubelite`, which runs it).
    #[arg(long)]
    pid: Option<i32>,
    /// Check every kubelet found (several kind nodes on one host, say): text prints one
    /// report after another, json an array of reports, dsse one envelope per line. The exit
    /// code is the worst of them.
    #[arg(long, conflicts_with = "pid")]
    all: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Ed25519 private key (PKCS#8 PEM, from `keygen`); required for --format dsse.
    #[arg(long, value_name = "FILE", env = "NODEPROOF_KEY")]
    key: Option<PathBuf>,
    /// Write the output to FILE (replaced whole, only once the scan is done) instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The kubelet's version (e.g. 1.31 or v1.31.4), when its binary carries no build
    /// stamp; it decides how --config-dir drop-ins merge (the rules changed in 1.32).
    #[arg(long, value_name = "VERSION", env = "NODEPROOF_KUBELET_VERSION", value_parser = parse_kubelet_version)]
    kubelet_version: Option<String>,
    /// Exit 1 only when a check of this severity or higher fails: low (any failing check),
    /// medium, high or critical. A check that could not be evaluated (`error`) exits 1
    /// whatever its severity; `warn` never does.
    #[arg(long, value_name = "SEVERITY", default_value = "low", env = "NODEPROOF_FAIL_ON", value_parser = parse_severity)]
    fail_on: Severity,
    /// Do not probe the kubelet's ports (by default the scan sends an anonymous GET /pods
    /// to the kubelet API and the read-only port, and GET /healthz, each without
    /// credentials and within a second; see `probe-*` in the report).
    /// `NODEPROOF_NO_PROBE` takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "NODEPROOF_NO_PROBE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    no_probe: bool,
}

/// The lowercase severity names, as the report and the collector spell them.
fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| {
        format!("{s:?} is not a severity: use low, medium, high or critical (lowercase)")
    })
}

/// Accepts `1.31`, `v1.31` or `v1.31.4`.
fn parse_kubelet_version(s: &str) -> Result<String, String> {
    let v = if s.starts_with('v') {
        s.to_string()
    } else {
        format!("v{s}")
    };
    match nodeproof_agent::process::kubelet_minor(&v) {
        Some(_) => Ok(v),
        None => Err(format!(
            "{s:?} is not a Kubernetes 1.x version such as 1.31 or v1.31.4"
        )),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A table like kube-bench's.
    Text,
    /// The report as JSON.
    Json,
    /// The report as an in-toto statement in a signed DSSE envelope.
    Dsse,
    /// JUnit XML, one test case per check (as kube-bench's `--junit`).
    Junit,
    /// CSV: node,time,check,status,value,source (one row per check).
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("nodeproof-agent: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Scan(args) => scan_cmd(args),
        Command::Keygen { out, if_missing } => {
            keygen(&out, if_missing)?;
            Ok(0)
        }
        Command::Enroll(args) => enroll_cmd(args),
        Command::RotateKey(args) => rotate_cmd(args),
        Command::Run(args) => run_cmd(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// What to do next after the collector refused an enrolment or a rotation.
fn api_hint(code: &str) -> &'static str {
    match code {
        "name_taken" => {
            "the name is enrolled with another key: rotate that node's key with \
             `nodeproof-agent rotate-key`, or choose another --node-name"
        }
        "key_taken" | "key_conflict" => {
            "this key belongs to another node: create a key for this one with \
             `nodeproof-agent keygen --out DIR`"
        }
        "clock_skew" => "this machine's clock is too far from the collector's: fix NTP",
        "unknown_key" => {
            "the collector does not know the current key: check --key (enrol first with \
             `nodeproof-agent enroll`)"
        }
        "node_revoked" => "the node was revoked on the collector; an operator must re-admit it",
        _ => "",
    }
}

fn collector_error(err: ClientError) -> anyhow::Error {
    if let ClientError::Api { api, status } = &err {
        let hint = api_hint(&api.error);
        if !hint.is_empty() {
            return anyhow::anyhow!("{err}; {hint}");
        }
        if matches!(status, 401 | 403) {
            return anyhow::anyhow!(
                "{err}; check the token (`nodeproof-collector token create` makes a new one) \
                 or ask an operator to approve the node"
            );
        }
    }
    anyhow::Error::new(err)
}

fn enroll_cmd(args: EnrollArgs) -> Result<u8> {
    let key = load_key(&args.key)?;
    if let Some(done) = &args.done_file {
        if fs::symlink_metadata(done).is_ok() {
            eprintln!(
                "{} exists: key {} was enrolled and approved before; nothing to do (delete \
                 the file to enrol again)",
                done.display(),
                keyid(&key.verifying_key())
            );
            return Ok(0);
        }
    }
    let node = args.node.node_name(None)?;
    announce(&node);
    let node = node.name;
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(path)) => Some(
            fs::read_to_string(path)
                .with_context(|| format!("could not read the token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    // An empty token (an empty Secret, an empty file) is no token: enrol pending, and say
    // so, rather than send "" and be refused as a wrong token.
    let token = match token {
        Some(t) if t.is_empty() => {
            eprintln!("the token is empty: enrolling without one (the node will be pending)");
            None
        }
        t => t,
    };
    let sent_token = token.is_some();
    let envelope = enroll_envelope(&node, &key, token, scan::now_rfc3339())?;
    let client = args.collector.client()?;
    if sent_token && client.url().scheme() == "http" && !daemon::client::is_loopback(client.url()) {
        eprintln!(
            "warning: sending the enrolment token over plain http to {}: anyone on the path \
             can read it and enrol a machine of their own with it before this one; use https",
            client.url()
        );
    }
    let answer = runtime()?
        .block_on(client.enroll(&envelope))
        .map_err(collector_error)?;
    // Printed escaped: it is the collector's text.
    println!("node: {}", escape(&answer.node));
    println!("keyid: {}", escape(&answer.key_id));
    println!("status: {}", escape(&answer.status));
    if answer.node != node {
        eprintln!(
            "warning: the collector enrolled the node as \"{}\", not \"{node}\"",
            escape(&answer.node)
        );
    }
    if answer.key_id != keyid(&key.verifying_key()) {
        eprintln!(
            "warning: the collector names key {}, but {} is key {}",
            escape(&answer.key_id),
            args.key.display(),
            keyid(&key.verifying_key())
        );
    }
    match answer.status.as_str() {
        "approved" => {
            if let Some(done) = &args.done_file {
                let record = format!(
                    "node: {}\nkeyid: {}\n",
                    escape(&answer.node),
                    keyid(&key.verifying_key())
                );
                write_new(done, record.as_bytes(), 0o644).with_context(|| {
                    format!(
                        "the node is approved, but --done-file {} could not be written",
                        done.display()
                    )
                })?;
            }
            Ok(0)
        }
        // A token was sent and did not approve the node: it was not honoured (an older
        // collector answers a wrong or spent token this way). Not "pending": an init
        // container or script must not take it for enrolled.
        "pending" if sent_token => bail!(
            "the collector left node \"{}\" pending although a token was sent: the token was \
             not accepted (wrong, expired or used up?); create a new one with \
             `nodeproof-collector token create`, or have an operator run \
             `nodeproof-collector nodes approve {}`",
            escape(&answer.node),
            escape(&answer.node)
        ),
        "pending" => {
            eprintln!(
                "the node is enrolled but pending: an operator approves it with \
                 `nodeproof-collector nodes approve {}` (or enrol again with a valid --token)",
                escape(&answer.node)
            );
            Ok(3)
        }
        other => bail!(
            "the collector answered an unknown enrolment status \"{}\"",
            escape(other)
        ),
    }
}

fn rotate_cmd(args: RotateArgs) -> Result<u8> {
    let old = load_key(&args.key)?;
    let new = load_key(&args.new_key)?;
    let node = args.node.node_name(None)?;
    announce(&node);
    let node = node.name;
    let envelope = rotate_envelope(&node, &old, &new, scan::now_rfc3339())?;
    let client = args.collector.client()?;
    let answer = runtime()?
        .block_on(client.rotate(&envelope))
        .map_err(collector_error)?;
    // Rotated only when the collector says the node now has the new key.
    let new_id = keyid(&new.verifying_key());
    if answer.key_id != new_id || answer.node != node {
        bail!(
            "the collector's answer does not confirm the rotation: it names node \"{}\" with \
             key {}, not \"{node}\" with the new key {new_id}; keep using --key {} and check \
             --collector (is a proxy answering?)",
            escape(&answer.node),
            escape(&answer.key_id),
            args.key.display()
        );
    }
    println!("node: {node}");
    println!("old keyid: {}", keyid(&old.verifying_key()));
    println!("keyid: {new_id}");
    println!("status: rotated ({})", escape(&answer.status));
    eprintln!(
        "restart `nodeproof-agent run` with --key {}: reports signed by the old key are refused \
         from now on; the daemon re-signs what it still has spooled with the new key when it \
         starts",
        args.new_key.display()
    );
    Ok(0)
}

fn run_cmd(args: RunArgs) -> Result<u8> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let key = load_key(&args.key)?;
    let node = args.node.node_name(args.pid)?;
    tracing::info!(node = %node.name, source = %node.source, "node name");
    if matches!(
        node.source,
        daemon::node::NameSource::Hostname { kubelet: false, .. }
    ) {
        tracing::warn!(
            node = %node.name,
            "no running kubelet was found, so the node name is the hostname; if the kubelet \
             runs with --hostname-override, set --node-name (NODEPROOF_NODE_NAME) to the \
             enrolled name"
        );
    }
    if let Some(derived) = &node.derived_differs {
        tracing::warn!(
            node = %node.name,
            kubelet_registers_as = %derived,
            "--node-name differs from the name the kubelet registers; reports carry --node-name"
        );
    }
    let node = node.name;
    let mut config = Config::new(args.collector.collector.clone(), key, node);
    config.tls = args.collector.tls();
    config.timeouts = args.collector.timeouts();
    config.interval = args.interval;
    config.spool_dir = args.spool;
    config.spool_max = args.spool_max;
    config.once = args.once;
    config.scan = ScanOptions {
        proc_dir: args.node.proc_dir,
        pid: args.pid,
        kubelet_version: args.kubelet_version,
        probe: !args.no_probe,
    };
    config.retry_base = args.retry_base;
    config.retry_cap = args.retry_cap;

    let rt = runtime()?;
    let outcome = rt.block_on(async {
        // Register the handlers before anything else, so an early SIGTERM is not fatal.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).context("could not install the SIGTERM handler")?;
        let mut int =
            signal(SignalKind::interrupt()).context("could not install the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        };
        daemon::run(config, shutdown)
            .await
            .map_err(anyhow::Error::new)
    })?;
    Ok(outcome.exit_code())
}

fn scan_cmd(args: ScanArgs) -> Result<u8> {
    // Load the key first: a missing key should fail before any work, not after.
    let key = match (args.format, &args.key) {
        (Format::Dsse, None) => bail!(
            "--format dsse needs --key FILE (create one with `nodeproof-agent keygen --out DIR`)"
        ),
        (Format::Dsse, Some(path)) => Some(load_key(path)?),
        _ => None,
    };
    let opts = ScanOptions {
        proc_dir: args.proc_dir,
        pid: args.pid,
        kubelet_version: args.kubelet_version,
        probe: !args.no_probe,
    };
    let snapshots = if args.all {
        scan::collect_all(&opts)?
    } else {
        vec![scan::collect(&opts)?]
    };
    let scan_time = scan::now_rfc3339();
    let reports: Vec<_> = snapshots
        .iter()
        .map(|s| scan::assemble(s, scan_time.clone()))
        .collect();
    let mut out: Vec<u8> = Vec::new();
    match args.format {
        Format::Text => {
            let color = args.output.is_none()
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stdout().is_terminal();
            for (i, report) in reports.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                out.extend_from_slice(render::text(report, color).as_bytes());
            }
        }
        Format::Json if args.all => {
            serde_json::to_writer_pretty(&mut out, &reports)?;
            out.push(b'\n');
        }
        Format::Json => {
            for report in &reports {
                serde_json::to_writer_pretty(&mut out, report)?;
                out.push(b'\n');
            }
        }
        Format::Dsse => {
            let key = key.context("internal: key missing")?;
            for report in &reports {
                let envelope = sign_statement(&scan::statement(report), &key)
                    .context("could not serialize the statement")?;
                out.extend_from_slice(&envelope.to_json_bytes());
                out.push(b'\n');
            }
        }
        Format::Junit => {
            let suites: Vec<_> = reports
                .iter()
                .map(|report| {
                    let node = nodeproof_proto::tabular::node_name(report);
                    nodeproof_proto::tabular::Suite {
                        rows: nodeproof_proto::tabular::rows(&node, report),
                        time: report.scan_time.clone(),
                        node,
                    }
                })
                .collect();
            nodeproof_proto::tabular::write_junit(&mut out, &suites)?;
        }
        Format::Csv => {
            nodeproof_proto::tabular::write_csv_header(&mut out)?;
            for report in &reports {
                let node = nodeproof_proto::tabular::node_name(report);
                for row in nodeproof_proto::tabular::rows(&node, report) {
                    nodeproof_proto::tabular::write_csv_row(&mut out, &row)?;
                }
            }
        }
    }
    match &args.output {
        Some(path) => write_output(path, &out)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out)?;
            stdout.flush()?;
        }
    }
    Ok(reports
        .iter()
        .map(|r| scan::exit_code(r, args.fail_on))
        .max()
        .unwrap_or(0))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// a pipeline never reads half a report.
fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("could not create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("could not write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

fn load_key(path: &Path) -> Result<SigningKey> {
    let bytes = read_private_key(path)?;
    let pem = String::from_utf8(bytes)
        .with_context(|| format!("{} is not a PEM text file", path.display()))?;
    signing_key_from_pem(&pem).with_context(|| {
        format!(
            "{} is not an ed25519 PKCS#8 private key (create one with `nodeproof-agent keygen`)",
            path.display()
        )
    })
}

fn keygen(dir: &Path, if_missing: bool) -> Result<()> {
    let key_path = dir.join("agent.key");
    let pub_path = dir.join("agent.pub");
    if if_missing && fs::symlink_metadata(&key_path).is_ok() {
        let key = load_key(&key_path)?;
        eprintln!(
            "kept the existing key {} (--if-missing)",
            key_path.display()
        );
        println!("{}", keyid(&key.verifying_key()));
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(
                "{} already exists; nodeproof-agent keygen never overwrites a key (move it away \
                 first if you mean to replace it)",
                p.display()
            );
        }
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let private_pem = signing_key_to_pem(&key).context("could not encode the private key")?;
    let public_pem =
        verifying_key_to_pem(&key.verifying_key()).context("could not encode the public key")?;
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    write_new(&pub_path, public_pem.as_bytes(), 0o644)?;
    eprintln!(
        "wrote {} (private, mode 0600) and {}",
        key_path.display(),
        pub_path.display()
    );
    println!("{}", keyid(&key.verifying_key()));
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}
