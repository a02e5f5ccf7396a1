//! nodeproof-agent: command-line wiring only; the work is in the library.
#![forbid(unsafe_code)]

use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use nodeproof_agent::render;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_proto::{
    keyid, sign_statement, signing_key_from_pem, signing_key_to_pem, verifying_key_to_pem,
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
    /// Exit codes: 0 every scored check passes; 1 a scored check fails or could not be
    /// evaluated; 2 the scan could not run.
    Scan(ScanArgs),
    /// Create a signing key pair: DIR/agent.key (PKCS#8 PEM, mode 0600) and DIR/agent.pub.
    Keygen {
        /// Directory to write the keys to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
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
    /// The kubelet's pid, when several run or to pick one explicitly.
    #[arg(long)]
    pid: Option<i32>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Ed25519 private key (PKCS#8 PEM, from `keygen`); required for --format dsse.
    #[arg(long, value_name = "FILE", env = "NODEPROOF_KEY")]
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A table like kube-bench's.
    Text,
    /// The report as JSON.
    Json,
    /// The report as an in-toto statement in a signed DSSE envelope.
    Dsse,
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
        Command::Keygen { out } => {
            keygen(&out)?;
            Ok(0)
        }
    }
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
    let snapshot = scan::collect(&ScanOptions {
        proc_dir: args.proc_dir,
        pid: args.pid,
    })?;
    let report = scan::assemble(&snapshot, scan::now_rfc3339());
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            let color = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
            stdout.write_all(render::text(&report, color).as_bytes())?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            stdout.write_all(b"\n")?;
        }
        Format::Dsse => {
            let key = key.context("internal: key missing")?;
            let envelope = sign_statement(&scan::statement(&report), &key)
                .context("could not serialize the statement")?;
            stdout.write_all(&envelope.to_json_bytes())?;
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()?;
    Ok(scan::exit_code(&report))
}

fn load_key(path: &Path) -> Result<SigningKey> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("could not read the signing key {}", path.display()))?;
    signing_key_from_pem(&pem).with_context(|| {
        format!(
            "{} is not an ed25519 PKCS#8 private key (create one with `nodeproof-agent keygen`)",
            path.display()
        )
    })
}

fn keygen(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let key_path = dir.join("agent.key");
    let pub_path = dir.join("agent.pub");
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
