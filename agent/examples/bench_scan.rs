//! Times one full scan in-process (no process start-up): `scan::collect` (read the fake
//! /proc and the kubelet's files), `scan::assemble` (effective settings, checks, report),
//! `scan::statement`, `nodeproof_proto::sign_statement` and the envelope's JSON, the same
//! steps `nodeproof-agent scan --format dsse` runs. `scripts/bench-scan` drives it; see
//! docs/benchmarks.md.
//!
//! Usage: `bench_scan PROC_DIR [ITERATIONS [WARMUP]]` (defaults 1000 and 50). Prints, per
//! phase and in total, the mean, median, p95 and minimum per iteration in microseconds; the
//! last line is `total: mean=.. median=.. p95=.. min=.. us` for scripts.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_proto::sign_statement;

const PHASES: [&str; 5] = ["collect", "assemble", "statement", "sign", "envelope-json"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (proc_dir, iterations, warmup) = match args.as_slice() {
        [p] => (p, Some(1000), Some(50)),
        [p, n] => (p, n.parse().ok(), Some(50)),
        [p, n, w] => (p, n.parse().ok(), w.parse().ok()),
        _ => (&String::new(), None, None),
    };
    let (Some(iterations), Some(warmup)) = (iterations, warmup) else {
        eprintln!("usage: bench_scan PROC_DIR [ITERATIONS [WARMUP]]");
        return ExitCode::from(2);
    };
    if proc_dir.is_empty() || iterations == 0 {
        eprintln!("usage: bench_scan PROC_DIR [ITERATIONS [WARMUP]] (ITERATIONS > 0)");
        return ExitCode::from(2);
    }
    let opts = ScanOptions {
        proc_dir: PathBuf::from(proc_dir),
        pid: None,
        kubelet_version: None,
        // A fake node: its ports are not this machine's.
        probe: false,
    };
    // A fixed key is fine for timing: ed25519 signing costs the same for every key.
    let key = SigningKey::from_bytes(&[7u8; 32]);

    // One checked run first, so a broken fixture fails loudly instead of timing errors.
    let envelope_bytes = match one_scan(&opts, &key) {
        Ok((_, n)) => n,
        Err(e) => {
            eprintln!("bench_scan: the scan failed: {e}");
            return ExitCode::from(2);
        }
    };
    for _ in 0..warmup {
        let _ = black_box(one_scan(&opts, &key));
    }
    let mut samples: Vec<[Duration; 5]> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        match one_scan(&opts, &key) {
            Ok((phases, _)) => samples.push(phases),
            Err(e) => {
                eprintln!("bench_scan: the scan failed: {e}");
                return ExitCode::from(2);
            }
        }
    }

    println!(
        "bench_scan: {iterations} iterations after {warmup} warm-up, envelope {envelope_bytes} bytes, proc {}",
        opts.proc_dir.display()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10}",
        "phase", "mean_us", "median_us", "p95_us", "min_us"
    );
    for (i, name) in PHASES.iter().enumerate() {
        let s = Stats::of(samples.iter().map(|p| p[i]).collect());
        println!(
            "{:<14} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            name, s.mean, s.median, s.p95, s.min
        );
    }
    let total = Stats::of(samples.iter().map(|p| p.iter().sum()).collect());
    println!(
        "{:<14} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        "total", total.mean, total.median, total.p95, total.min
    );
    println!(
        "total: mean={:.1} median={:.1} p95={:.1} min={:.1} us",
        total.mean, total.median, total.p95, total.min
    );
    ExitCode::SUCCESS
}

/// One scan as `nodeproof-agent scan --format dsse` runs it, timed phase by phase. Returns
/// the phases' durations and the envelope's size.
fn one_scan(opts: &ScanOptions, key: &SigningKey) -> Result<([Duration; 5], usize), String> {
    let t0 = Instant::now();
    let snapshot = scan::collect(opts).map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let report = scan::assemble(&snapshot, scan::now_rfc3339());
    let t2 = Instant::now();
    let statement = scan::statement(&report);
    let t3 = Instant::now();
    let envelope = sign_statement(&statement, key).map_err(|e| e.to_string())?;
    let t4 = Instant::now();
    let bytes = black_box(envelope.to_json_bytes());
    let t5 = Instant::now();
    Ok(([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4], bytes.len()))
}

/// Per-iteration figures in microseconds.
struct Stats {
    mean: f64,
    median: f64,
    p95: f64,
    min: f64,
}

impl Stats {
    fn of(mut d: Vec<Duration>) -> Stats {
        d.sort_unstable();
        let us = |x: Duration| x.as_secs_f64() * 1e6;
        let n = d.len();
        let mean = d.iter().map(|&x| us(x)).sum::<f64>() / n as f64;
        let median = if n % 2 == 1 {
            us(d[n / 2])
        } else {
            (us(d[n / 2 - 1]) + us(d[n / 2])) / 2.0
        };
        // Nearest-rank p95.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Stats {
            mean,
            median,
            p95: us(d[rank - 1]),
            min: us(d[0]),
        }
    }
}
