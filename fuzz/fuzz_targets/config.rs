//! A `--config` file: the YAML/JSON decoder and the file's effective settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeproof_agent::cmdline::parse_cmdline;
use nodeproof_agent::config::decode_config_file;
use nodeproof_agent::effective::{compute, FileInput};
use nodeproof_agent::yaml;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = yaml::parse(text);
    let _ = decode_config_file("/var/lib/kubelet/config.yaml", text);
    let cmd = parse_cmdline(&["--config=/var/lib/kubelet/config.yaml".to_string()]);
    let file = FileInput {
        path: "/var/lib/kubelet/config.yaml".to_string(),
        content: Ok(text.to_string()),
    };
    let _ = compute(&cmd, Some(&file), None);
});
