//! The kubelet's command line as /proc/PID/cmdline gives it: NUL-separated arguments.
//! Parsing and the effective computation must never panic, whatever the node runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeproof_agent::cmdline::parse_cmdline;
use nodeproof_agent::effective::compute;

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cmd = parse_cmdline(&args);
    let _ = compute(&cmd, None, None);
});
