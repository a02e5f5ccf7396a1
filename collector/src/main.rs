//! nodeproof-collector: command-line wiring only. The server, the acceptance rules and the
//! operator commands' logic live in the library; this parses flags (each with an
//! `NODEPROOF_...` environment variable where a deployment would set it), opens the store,
//! and prints. Errors are printed with their whole cause chain and exit 1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nodeproof_collector::accept::Policy;
use nodeproof_collector::server::quota::Quotas;
use nodeproof_collector::server::ui::UiConfig;
use nodeproof_collector::server::{self, admin, fleet, AdminToken, Limits, ServeConfig, TlsFiles};
use nodeproof_collector::store::{self, NodeStatus, Store};
use nodeproof_collector::text::escape;
use nodeproof_collector::{evidence, store::ExportFilter};

#[derive(Debug, Parser)]
#[command(name = "nodeproof-collector", version, about)]
struct Cli {
    /// Log filter in RUST_LOG syntax (e.g. `info`, `nodeproof_collector=debug`); logs go to
    /// stderr. Defaults to RUST_LOG, then `info`.
    #[arg(long, global = true, env = "NODEPROOF_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive, verify and store reports, and answer fleet queries over HTTPS.
    Serve(Box<ServeArgs>),
    /// Bootstrap tokens for enrolment.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List, approve and revoke nodes (works on the database directly).
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Print the fleet summary, the nodes and the per-check counts.
    Fleet(FleetArgs),
    /// Create the database (or bring an existing one's schema up to date) and exit. Every
    /// other command refuses a database that does not exist.
    Init {
        #[command(flatten)]
        db: Db,
    },
    /// Accept a failing check for a while (a waiver that expires): add, list, revoke.
    #[command(subcommand)]
    Exception(ExceptionCommand),
    /// Walk each node's stored chain and say whether it links up with no gap (exit 1,
    /// naming each fault, when one does not).
    Chain(ChainArgs),
    /// Write an evidence bundle (tar.gz) an auditor can verify without trusting nodeproof:
    /// the signed reports, the nodes' keys, a signed manifest, OSCAL, JUnit and CSV.
    Export(ExportArgs),
    /// Check an evidence bundle: manifest signature, every file's hash, every report's
    /// signature and every node's chain. Exit 0 only when all holds. No database needed.
    Verify(VerifyArgs),
    /// The export key that signs evidence bundles.
    #[command(subcommand)]
    ExportKey(ExportKeyCommand),
    /// Move an installation from SQLite to PostgreSQL: copies every table in one
    /// transaction, checks row counts and every envelope's bytes, and refuses a target
    /// that already holds data. Stop the collector first.
    Migrate {
        /// The SQLite database to copy: `sqlite:///path/to/nodeproof.db`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database to fill: `postgres://user@host:5432/database` (empty,
        /// or with the schema only).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    db: Db,
    /// Where to write the bundle (a .tar.gz; replaced only when the export is complete).
    #[arg(long)]
    out: PathBuf,
    /// The export key (from `export-key create`).
    #[arg(long, env = "NODEPROOF_EXPORT_KEY")]
    key: PathBuf,
    /// Reports received at or after this: a date (2026-01-01 is 00:00 UTC) or RFC 3339.
    #[arg(long, value_parser = fleet::parse_until)]
    since: Option<i64>,
    /// Reports received before this: a date or RFC 3339.
    #[arg(long, value_parser = fleet::parse_until)]
    until: Option<i64>,
    /// Only this node (repeat for several).
    #[arg(long = "node")]
    nodes: Vec<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The bundle (.tar.gz).
    bundle: PathBuf,
    /// The export public key you pinned (from the collector's operator). Without it the
    /// manifest is checked only against the key inside the bundle.
    #[arg(long)]
    export_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ExportKeyCommand {
    /// Make a new ed25519 export key: DIR/export-key.pem (private, 0600) and
    /// DIR/export-key.pub.pem (give it to your auditors to pin).
    Create {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ChainArgs {
    #[command(flatten)]
    db: Db,
    /// Only this node (repeatable); every node when absent.
    #[arg(long)]
    node: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum ExceptionCommand {
    /// Except a failing check on one node (or all) until a date. The signed reports are
    /// unchanged; the fleet view shows the failure as `excepted` until the exception ends.
    Add {
        #[command(flatten)]
        db: Db,
        /// The check: a CIS number (4.2.13) or a check id (kubelet-pod-pids-limit).
        #[arg(long)]
        check: String,
        /// The node it applies to.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        node: Option<String>,
        /// Every node, present and future.
        #[arg(long)]
        all: bool,
        /// When it ends: a date (2027-03-01 means 00:00 UTC that day) or RFC 3339 time.
        #[arg(long)]
        until: String,
        /// Why the finding is accepted (kept on record).
        #[arg(long)]
        reason: String,
        /// Who decided (kept on record).
        #[arg(long)]
        by: String,
    },
    /// List exceptions: active ones, or every one with --all.
    List {
        #[command(flatten)]
        db: Db,
        /// Expired and revoked exceptions too.
        #[arg(long)]
        all: bool,
        /// Judge expiry at this RFC 3339 time instead of now.
        #[arg(long, value_parser = parse_at)]
        at: Option<i64>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// End an exception now: its failures count again. Kept on record.
    Revoke {
        /// The exception's number, as `exception list` shows it (#3 or 3).
        id: String,
        #[command(flatten)]
        db: Db,
        /// Why (kept on record).
        #[arg(long)]
        reason: String,
        /// Who (kept on record).
        #[arg(long)]
        by: String,
    },
    /// The append-only log of every add and revoke, oldest first (JSON).
    Log {
        #[command(flatten)]
        db: Db,
    },
}

/// `--at`: an RFC 3339 time as Unix seconds.
fn parse_at(text: &str) -> Result<i64, String> {
    nodeproof_collector::accept::parse_time(text)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}), e.g. 2027-03-01T00:00:00Z"))
}

#[derive(Debug, Args)]
struct Db {
    /// The database: `sqlite:///abs/path.db`, `sqlite://./relative.db`, or
    /// `postgres://user@host:5432/database` (several collectors may share it).
    #[arg(long, env = "NODEPROOF_DB", default_value = "sqlite://./nodeproof.db")]
    db: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, e.g. `0.0.0.0:8443` (port 0 picks a free port; the bound
    /// address is printed on stderr as `listening on ADDR`).
    #[arg(long, env = "NODEPROOF_LISTEN")]
    listen: String,
    #[command(flatten)]
    db: Db,
    /// PEM certificate chain for TLS.
    #[arg(long, env = "NODEPROOF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "NODEPROOF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: require client certificates issued by them (mutual TLS).
    #[arg(long, env = "NODEPROOF_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long, env = "NODEPROOF_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// File holding the bearer token of the read endpoints; without it they are closed.
    #[arg(long, env = "NODEPROOF_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// How far clocks may disagree (scan times ahead, enrolment and rotation times).
    #[arg(long, env = "NODEPROOF_SKEW", default_value = "5m", value_parser = admin::parse_duration)]
    skew: u64,
    /// The oldest scan accepted.
    #[arg(long, env = "NODEPROOF_MAX_AGE", default_value = "7d", value_parser = admin::parse_duration)]
    max_age: u64,
    /// Reports a node may send per minute (then 429).
    #[arg(long, env = "NODEPROOF_REPORTS_PER_MINUTE", default_value_t = Quotas::default().reports_per_minute)]
    reports_per_minute: u32,
    /// Enrolments without a token per source address per minute (then 429).
    #[arg(long, env = "NODEPROOF_ENROLLS_PER_MINUTE", default_value_t = Quotas::default().enrolls_per_minute)]
    enrolls_per_minute: u32,
    /// Pending nodes at most (then token-less enrolments are refused with 503).
    #[arg(long, env = "NODEPROOF_MAX_PENDING", default_value_t = Quotas::default().max_pending)]
    max_pending: usize,
    /// How long a pending claim waits for approval before it is dropped.
    #[arg(long, env = "NODEPROOF_PENDING_TTL", default_value = "24h", value_parser = admin::parse_duration)]
    pending_ttl: u64,
    /// Create the database if it does not exist. Without it a missing database is an
    /// error, so a wrong path or a deleted file never becomes a new, empty fleet.
    #[arg(long)]
    init: bool,
    /// Open connections at most; when full, the longest-idle connection is closed to make
    /// room.
    #[arg(long, env = "NODEPROOF_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Open connections from one IP address at most (same rule).
    #[arg(long, env = "NODEPROOF_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// An HTTP/1.1 request head must arrive whole within this.
    #[arg(long, env = "NODEPROOF_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration_ms)]
    header_timeout: std::time::Duration,
    /// A request body must arrive whole within this after its head.
    #[arg(long, env = "NODEPROOF_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration_ms)]
    body_timeout: std::time::Duration,
    /// A connection with no request in flight and nothing moving is closed after this
    /// (also bounds the TLS handshake).
    #[arg(long, env = "NODEPROOF_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration_ms)]
    idle_timeout: std::time::Duration,
    /// Request body bytes held at once over all requests; past it requests get 503.
    #[arg(long, env = "NODEPROOF_MAX_BUFFERED_BYTES", default_value_t = Limits::default().max_buffered_bytes)]
    max_buffered_bytes: usize,
    /// HTTP/2 requests at once on one connection.
    #[arg(long, env = "NODEPROOF_H2_MAX_STREAMS", default_value_t = Limits::default().h2_max_concurrent_streams)]
    h2_max_streams: u32,
    /// The export key (from `export-key create`) that signs the bundles of GET /v1/export;
    /// without it that endpoint answers 503.
    #[arg(long, env = "NODEPROOF_EXPORT_KEY")]
    export_key: Option<PathBuf>,
    /// /healthz reports the database full below this many free bytes on its file system.
    #[arg(long, env = "NODEPROOF_MIN_FREE_SPACE", default_value_t = Limits::default().min_free_bytes)]
    min_free_space: u64,
    /// File holding a read-only token: the read endpoints and the dashboard, no changes.
    #[arg(long, env = "NODEPROOF_VIEWER_TOKEN_FILE")]
    viewer_token_file: Option<PathBuf>,
    /// File holding the bearer token /metrics then needs; without it /metrics is open.
    #[arg(long, env = "NODEPROOF_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Per-node metric series (node label) while the fleet has at most this many approved
    /// nodes; 0 turns them off.
    #[arg(long, env = "NODEPROOF_METRICS_PER_NODE_LIMIT", default_value_t = UiConfig::default().metrics_per_node_limit)]
    metrics_per_node_limit: usize,
    /// How long a dashboard session lasts.
    #[arg(long, env = "NODEPROOF_SESSION_TTL", default_value = "8h", value_parser = admin::parse_duration)]
    session_ttl: u64,
}

/// A duration with a unit (`500ms`, `10s`, `5m`, `1h`, `7d`).
fn parse_duration_ms(s: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        let n: u64 = ms
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 10s, 5m"))?;
        return Ok(std::time::Duration::from_millis(n));
    }
    admin::parse_duration(s).map(std::time::Duration::from_secs)
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new bootstrap token (alone, on stdout); the database keeps only its hash.
    Create {
        #[command(flatten)]
        db: Db,
        /// How long the token can be used.
        #[arg(long, default_value = "1h", value_parser = admin::parse_duration)]
        ttl: u64,
        /// How many enrolments it approves (default: any number until it expires).
        #[arg(long)]
        uses: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum NodesCommand {
    /// List enrolled nodes.
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Approve a pending node: its reports are accepted from now on. Prints the key id
    /// and source address of the claim; compare the key id with the one the node printed.
    Approve {
        name: String,
        /// Approve only if the claim's key is this one (a claim by someone else is left).
        #[arg(long)]
        key_id: Option<String>,
        #[command(flatten)]
        db: Db,
    },
    /// Delete a pending or revoked node and everything kept about it, so that the name
    /// can be enrolled again (an approved node must be revoked first).
    Delete {
        name: String,
        #[command(flatten)]
        db: Db,
    },
    /// Revoke a node: its reports are refused from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[command(flatten)]
    db: Db,
    /// Judge staleness and exceptions at this RFC 3339 time instead of now (e.g. to see
    /// what fails once an exception expires).
    #[arg(long, value_parser = parse_at)]
    at: Option<i64>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodeproof-collector: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            // Another collector serves this database: exit 2, distinct from a failure, so
            // a supervisor or script can tell "already running" apart.
            if e.downcast_ref::<store::sqlite::LockError>()
                .is_some_and(|l| matches!(l, store::sqlite::LockError::Held { .. }))
            {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(flag: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = flag
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("nodeproof-collector: ignoring log filter {filter:?} ({e}); using info");
        EnvFilter::new("info")
    });
    // Colour codes only for a person at a terminal, never into files or journald.
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Opens an existing database: a missing one is an error naming the path.
fn open(db: &Db) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::open_existing(&db.db)
        .with_context(|| format!("cannot open the database {}", db.db))?;
    Ok(Arc::from(store))
}

fn run(command: Command) -> anyhow::Result<()> {
    let now = server::now_unix();
    match command {
        Command::Serve(args) => serve(*args),
        Command::Migrate { from, to } => migrate(&from, &to),
        Command::Init { db } => {
            store::open(&db.db).with_context(|| format!("cannot create the database {}", db.db))?;
            eprintln!("database {} is ready", db.db);
            Ok(())
        }
        Command::Token(TokenCommand::Create { db, ttl, uses }) => {
            let store = open(&db)?;
            let token = admin::new_token();
            let expires = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            store
                .create_token(&admin::token_hash(&token), expires, uses, now)
                .context("cannot store the token")?;
            println!("{token}");
            eprintln!(
                "bootstrap token created: valid until {}, {}; enrol with \
                 `nodeproof-agent enroll --token <token>`",
                server::rfc3339(expires),
                uses.map_or_else(
                    || "any number of uses".to_string(),
                    |n| format!("{n} use(s)")
                )
            );
            Ok(())
        }
        Command::Nodes(NodesCommand::List { db, format }) => {
            let store = open(&db)?;
            match format {
                Format::Text => {
                    let nodes = store.list_nodes().context("cannot list nodes")?;
                    print!("{}", admin::render_nodes_text(&nodes, now));
                    let claims = store
                        .pending_claims()
                        .context("cannot read pending claims")?;
                    print!("{}", admin::render_claims_text(&claims));
                }
                Format::Json => {
                    let view = fleet::read(store.as_ref(), now).context("cannot list nodes")?;
                    println!("{}", serde_json::to_string_pretty(&view.nodes)?);
                }
            }
            Ok(())
        }
        Command::Nodes(NodesCommand::Approve { name, key_id, db }) => {
            let store = open(&db)?;
            let claims: Vec<_> = store
                .pending_claims()
                .context("cannot read pending nodes")?
                .into_iter()
                .filter(|c| c.name == name)
                .collect();
            for c in &claims {
                eprintln!("{}", admin::describe_claim(c));
            }
            let node = store
                .approve(&name, key_id.as_deref(), now)
                .with_context(|| format!("cannot approve node {}", escape(&name)))?;
            for c in claims.iter().filter(|c| c.key_id != node.key_id) {
                eprintln!("dropped: {}", admin::describe_claim(c));
            }
            eprintln!(
                "node {} (key {}) is now {}",
                escape(&node.name),
                escape(&node.key_id),
                node.status.as_str()
            );
            Ok(())
        }
        Command::Nodes(NodesCommand::Delete { name, db }) => {
            let node = open(&db)?
                .delete_node(&name)
                .with_context(|| format!("cannot delete node {}", escape(&name)))?;
            eprintln!(
                "node {} ({}, key {}) deleted with its stored reports; the name can be \
                 enrolled again",
                escape(&node.name),
                node.status.as_str(),
                escape(&node.key_id)
            );
            Ok(())
        }
        Command::Nodes(NodesCommand::Revoke { name, db }) => {
            set_status(&db, &name, NodeStatus::Revoked, now)
        }
        Command::Exception(command) => exception(command, now),
        Command::Chain(args) => {
            let store = open(&args.db)?;
            let chains = nodeproof_collector::audit::audit(store.as_ref(), &args.node)
                .context("cannot read the stored chains")?;
            match args.format {
                Format::Text => print!("{}", nodeproof_collector::audit::render_text(&chains)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&chains)?),
            }
            let broken: Vec<String> = chains
                .iter()
                .filter(|c| !c.holds())
                .map(|c| escape(&c.node))
                .collect();
            if !broken.is_empty() {
                bail!(
                    "the stored chain of {} node(s) does not hold: {}",
                    broken.len(),
                    broken.join(", ")
                );
            }
            Ok(())
        }
        Command::Export(args) => export(args, now),
        Command::Verify(args) => verify(args),
        Command::ExportKey(ExportKeyCommand::Create { out }) => {
            let created = evidence::keyfile::create(&out)?;
            eprintln!(
                "wrote {} (private, mode 0600) and {}; give the public key (or its keyid) to \
                 your auditors so they can pin it: verify --export-key export-key.pub.pem",
                created.private.display(),
                created.public.display()
            );
            print!("{}", created.public_pem);
            println!("keyid: {}", created.keyid);
            Ok(())
        }
        Command::Fleet(args) => {
            let store = open(&args.db)?;
            let report = admin::fleet_report(store.as_ref(), args.at.unwrap_or(now))
                .context("cannot read the fleet summary")?;
            match args.format {
                Format::Text => print!("{}", admin::render_fleet_text(&report)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}

fn exception(command: ExceptionCommand, now: i64) -> anyhow::Result<()> {
    match command {
        ExceptionCommand::Add {
            db,
            check,
            node,
            all,
            until,
            reason,
            by,
        } => {
            let request = fleet::ExceptionRequest {
                check,
                node,
                all,
                until,
                reason,
                by,
            };
            let new = fleet::validate_exception(&request, now).map_err(anyhow::Error::msg)?;
            let record = open(&db)?
                .add_exception(&new, now)
                .context("cannot add the exception")?;
            println!("{}", record.id);
            eprintln!(
                "exception #{} added: {} ({}) {} is excepted until {}",
                record.id,
                record.cis,
                record.check_id,
                record
                    .node
                    .as_deref()
                    .map_or_else(|| "on all nodes".to_string(), |n| format!("on node {n}")),
                server::rfc3339(record.until)
            );
            Ok(())
        }
        ExceptionCommand::List {
            db,
            all,
            at,
            format,
        } => {
            let store = open(&db)?;
            let view = fleet::read(store.as_ref(), at.unwrap_or(now))
                .context("cannot read the exceptions")?;
            let shown: Vec<_> = view
                .exceptions
                .iter()
                .filter(|e| all || e.state == fleet::ExceptionState::Active)
                .collect();
            match format {
                Format::Text => {
                    print!("{}", admin::render_exceptions_text(shown.into_iter()));
                    for w in &view.warnings {
                        eprintln!("warning: {w}");
                    }
                }
                Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
            }
            Ok(())
        }
        ExceptionCommand::Revoke { id, db, reason, by } => {
            let number: i64 = id.trim_start_matches('#').parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not an exception number: see `exception list`")
            })?;
            let by =
                fleet::text_field("by", &by, fleet::MAX_BY_CHARS).map_err(anyhow::Error::msg)?;
            let reason = fleet::text_field("reason", &reason, fleet::MAX_REASON_CHARS)
                .map_err(anyhow::Error::msg)?;
            match open(&db)?
                .revoke_exception(number, &by, &reason, now)
                .with_context(|| format!("cannot revoke exception #{number}"))?
            {
                Some(_) => {
                    eprintln!("exception #{number} revoked: its failures count again");
                    Ok(())
                }
                None => bail!("there is no exception #{number}: see `exception list --all`"),
            }
        }
        ExceptionCommand::Log { db } => {
            let events = open(&db)?
                .exception_events()
                .context("cannot read the exception log")?;
            let views: Vec<_> = events
                .into_iter()
                .map(server::read::ExceptionEventView::from)
                .collect();
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(())
        }
    }
}

fn set_status(db: &Db, name: &str, status: NodeStatus, now: i64) -> anyhow::Result<()> {
    open(db)?
        .set_status(name, status, now)
        .with_context(|| format!("cannot mark node {} {}", escape(name), status.as_str()))?;
    eprintln!("node {} is now {}", escape(name), status.as_str());
    Ok(())
}

/// The token in `path` (`what` names the flag's token in errors).
fn read_token(path: Option<&PathBuf>, what: &str) -> anyhow::Result<Option<AdminToken>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the {what} token file {} is empty", path.display());
    }
    Ok(Some(AdminToken::new(token)))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let admin_token = read_token(args.admin_token_file.as_ref(), "admin")?;
    let ui = UiConfig {
        viewer_token: read_token(args.viewer_token_file.as_ref(), "viewer")?,
        metrics_token: read_token(args.metrics_token_file.as_ref(), "metrics")?,
        metrics_per_node_limit: args.metrics_per_node_limit,
        session_ttl_secs: i64::try_from(args.session_ttl).unwrap_or(i64::MAX),
        ..UiConfig::default()
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: args.client_ca,
        }),
        _ => None,
    };
    let policy = Policy {
        skew_secs: i64::try_from(args.skew).context("--skew is too large")?,
        max_age_secs: i64::try_from(args.max_age).context("--max-age is too large")?,
    };
    // One serve per database, taken before the database is touched (a second serve must
    // not even run migrations under the first).
    if !args.init && store::sqlite_path(&args.db.db).is_some_and(|p| !p.exists()) {
        open(&args.db)?; // the error that names the path and says how to create it
    }
    let _lock = match store::sqlite_path(&args.db.db) {
        Some(path) => Some(store::sqlite::ServeLock::acquire(&path)?),
        None => None,
    };
    // Migrations run here, before the port opens.
    let store = if args.init {
        Arc::from(
            store::open(&args.db.db)
                .with_context(|| format!("cannot open the database {}", args.db.db))?,
        )
    } else {
        open(&args.db)?
    };
    let config = ServeConfig {
        store,
        tls,
        allow_plain_http: args.allow_plain_http,
        admin_token,
        policy,
        limits: Limits {
            max_connections: args.max_connections.max(1),
            max_connections_per_ip: args.max_connections_per_ip.max(1),
            header_read_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            idle_timeout: args.idle_timeout,
            max_buffered_bytes: args.max_buffered_bytes,
            h2_max_concurrent_streams: args.h2_max_streams.max(1),
            min_free_bytes: args.min_free_space,
        },
        quotas: Quotas {
            reports_per_minute: args.reports_per_minute,
            enrolls_per_minute: args.enrolls_per_minute,
            max_pending: args.max_pending,
            pending_ttl_secs: i64::try_from(args.pending_ttl).unwrap_or(i64::MAX),
        },
        ui,
        export_key: match &args.export_key {
            Some(path) => Some(Arc::new(evidence::keyfile::load(path)?)),
            None => None,
        },
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store calls run on blocking threads; tokio's default ceiling (512) is far above
        // what SQLite can use and above the unit's TasksMax.
        .max_blocking_threads(64)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Registered before the port opens, so a signal right after `listening on` is
        // a graceful shutdown and not the default kill.
        let shutdown = shutdown_signal().context("cannot install signal handlers")?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        server::serve(config, listener, shutdown).await?;
        Ok(())
    })
}

/// `migrate --from sqlite://... --to postgres://...`.
fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    let Some(path) = store::sqlite_path(from) else {
        anyhow::bail!("--from {from:?} is not a sqlite:// URL: migrate copies a SQLite database");
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!("--to must be a postgres:// URL (the database to fill)");
    }
    if !path.exists() {
        anyhow::bail!(
            "the SQLite database {} does not exist: check --from",
            path.display()
        );
    }
    // Nothing may write the source while it is copied: the serve lock says whether a
    // collector is serving it.
    let _lock = store::sqlite::ServeLock::acquire(&path)?;
    let target = store::postgres::PgStore::open(to, &store::masked(to), true)
        .context("cannot open the PostgreSQL database (--to)")?;
    let report = store::postgres::import_sqlite(&path, &target)
        .with_context(|| format!("cannot migrate {} to {}", path.display(), target.url()))?;
    for (table, rows) in &report.tables {
        eprintln!("{table}: {rows} rows");
    }
    eprintln!(
        "migrated {} to {}: row counts and every envelope checked (SHA-256 over all \
         envelopes {}); serve with --db {}",
        path.display(),
        target.url(),
        report.envelopes_sha256,
        target.url()
    );
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn export(args: ExportArgs, now: i64) -> anyhow::Result<()> {
    let key = evidence::keyfile::load(&args.key)?;
    let store = open(&args.db)?;
    let dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Written beside the target and renamed only when complete, so a failed export never
    // leaves a bundle that looks whole.
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let filter = ExportFilter {
        since: args.since,
        until: args.until,
        nodes: args.nodes,
    };
    let mut out = std::io::BufWriter::new(tmp.as_file());
    let summary = evidence::export(store.as_ref(), &filter, &key, now, &mut out)
        .context("the export failed; no bundle was written")?;
    std::io::Write::flush(&mut out).context("cannot write the bundle")?;
    drop(out);
    tmp.as_file()
        .sync_all()
        .context("cannot write the bundle")?;
    tmp.persist(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {}: {} reports from {} nodes, {} files; manifest signed by export key {}",
        args.out.display(),
        summary.reports,
        summary.nodes,
        summary.files,
        summary.export_keyid
    );
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let pinned = match &args.export_key {
        Some(p) => Some(evidence::keyfile::load_public(p)?),
        None => None,
    };
    let path = args.bundle.clone();
    let open = move || -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::io::BufReader::new(std::fs::File::open(
            &path,
        )?)))
    };
    let outcome = evidence::verify_bundle(&open, pinned.as_ref())
        .with_context(|| format!("cannot read {} as a tar.gz bundle", args.bundle.display()))?;
    print!("{}", outcome.render());
    if outcome.ok() {
        Ok(())
    } else {
        bail!(
            "{} does not verify: {} faults",
            args.bundle.display(),
            outcome.faults.len()
        )
    }
}
