//! Lays out a fake /proc for a node described by a directory (`cmdline`, one argument per
//! line, and `root/`, the kubelet's filesystem), so `nodeproof-agent scan --proc` can be
//! tried without a cluster: `scripts/demo` uses it with `agent/examples/sample-node`.
//!
//! Usage: `cargo run -p nodeproof-agent --example sample_node -- NODE_DIR OUT_DIR`; the
//! fake /proc is `OUT_DIR/proc`.

use std::path::PathBuf;
use std::process::ExitCode;

use nodeproof_agent::fakeproc::FakeProc;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [node, out] = args.as_slice() else {
        eprintln!("usage: sample_node NODE_DIR OUT_DIR");
        return ExitCode::from(2);
    };
    match lay_out(node, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sample_node: {e}");
            ExitCode::from(2)
        }
    }
}

fn lay_out(node: &std::path::Path, out: &std::path::Path) -> std::io::Result<()> {
    let cmdline = std::fs::read_to_string(node.join("cmdline"))?;
    // One argument per line, as the fixture nodes have it: an empty line is an empty argument
    // (systemd passes `"${EMPTY}"` as one), so only the file's final newline is dropped.
    let argv: Vec<&str> = cmdline
        .strip_suffix('\n')
        .unwrap_or(&cmdline)
        .split('\n')
        .collect();
    let root = std::fs::canonicalize(node.join("root"))?;
    let fake = FakeProc::new(&out.join("proc"))?;
    fake.node("worker-1", "6.1.0-28-amd64", 1_764_300_000)?;
    fake.process(1, "systemd", &["/sbin/init"])?.root(&root)?;
    let exe = root.join("usr/bin/kubelet");
    fake.process(4242, "kubelet", &argv)?
        .root(&root)?
        .exe(&exe)?;
    // A decoy: a shell that only mentions the kubelet.
    fake.process(
        4300,
        "bash",
        &["/bin/bash", "-c", "journalctl -u kubelet | grep kubelet"],
    )?
    .root(&root)?;
    Ok(())
}
