//! nodeproof-collector: command-line wiring only.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "nodeproof-collector", version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("nodeproof-collector: the collector service is being built (see docs/collector.md)");
    std::process::ExitCode::from(2)
}
