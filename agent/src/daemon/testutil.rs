//! Reports for the daemon's unit tests, made by the real scan of a fake node, so they stay
//! valid whatever fields the report gains.

use std::sync::OnceLock;

use nodeproof_proto::Report;

use crate::fakeproc::FakeProc;
use crate::scan::{self, ScanOptions};

/// A scanned report at `scan_time`. `posture` picks one of two kubelets that differ in a
/// flag (so in posture): 0 or 1.
pub(crate) fn report(scan_time: &str, posture: usize) -> Report {
    static REPORTS: OnceLock<Vec<Report>> = OnceLock::new();
    let reports = REPORTS.get_or_init(|| {
        ["--read-only-port=0", "--read-only-port=10255"]
            .iter()
            .map(|flag| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let fake = FakeProc::new(&tmp.path().join("proc")).expect("fake proc");
                fake.node("node-1", "6.1.0", 1_700_000_000).expect("node");
                fake.process(4242, "kubelet", &["/usr/bin/kubelet", flag])
                    .and_then(|p| p.root(&tmp.path().join("host")))
                    .expect("kubelet");
                let snap = scan::collect(&ScanOptions {
                    proc_dir: fake.path().to_path_buf(),
                    pid: None,
                    kubelet_version: None,
                    // A fake node: its ports are not this machine's.
                    probe: false,
                })
                .expect("scan of the fake node");
                scan::assemble(&snap, "2026-01-01T00:00:00Z".into())
            })
            .collect()
    });
    let mut r = reports[posture % reports.len()].clone();
    r.scan_time = scan_time.to_string();
    r
}
