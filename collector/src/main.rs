//! nodeproof-collector: receives signed reports from enrolled nodes. The service itself
//! arrives with issue 3; this binary only reserves the name and the CLI shape.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "nodeproof-collector", version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("nodeproof-collector: the collector service is not built yet (see issue 3)");
    std::process::ExitCode::from(2)
}
