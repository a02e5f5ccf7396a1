//! `--config-dir` drop-ins: the input is split at NUL bytes into a config file and up to
//! three drop-ins, merged under both merge rules (1.31 and 1.32) and with none known.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeproof_agent::cmdline::parse_cmdline;
use nodeproof_agent::effective::{compute_for, DropInDir, FileInput};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let base = parts.next().unwrap_or("");
    let files: Vec<FileInput> = parts
        .take(3)
        .enumerate()
        .map(|(i, t)| FileInput {
            path: format!("/etc/kubelet.d/{i}0-x.conf"),
            content: Ok(t.to_string()),
        })
        .collect();
    let cmd = parse_cmdline(&[
        "--config=/k.yaml".to_string(),
        "--config-dir=/etc/kubelet.d".to_string(),
    ]);
    let config = FileInput {
        path: "/k.yaml".to_string(),
        content: Ok(base.to_string()),
    };
    let dir = DropInDir {
        dir: "/etc/kubelet.d".to_string(),
        files: Ok(files),
    };
    for minor in [Some(31), Some(32), None] {
        let _ = compute_for(&cmd, Some(&config), Some(&dir), minor);
    }
});
