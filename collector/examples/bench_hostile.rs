//! The collector under hostile load: starts the real `nodeproof-collector serve` process
//! (release build, default bounds) on 127.0.0.1, then measures its resident memory (VmRSS
//! from /proc) and the latency of `/healthz` on a new connection, with nothing, then with
//! 400 idle TCP connections, then with 400 more that sent a request head announcing ~1 MiB
//! and 16 KiB of body before stalling. Only 127.0.0.1; everything has a deadline; it stops
//! the server and exits on its own. The per-address cap is raised (all connections come
//! from 127.0.0.1), so the global bounds are what is measured.
//!   cargo build --release -p nodeproof-collector --bins
//!   cargo run --release -p nodeproof-collector --example bench_hostile [-- IDLE STALLED]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(5);
const SAMPLES: usize = 200;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// One GET on a new connection; the whole exchange, in microseconds.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u128, String)> {
    let start = Instant::now();
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .context("no answer within 5 s")??;
    Ok((start.elapsed().as_micros(), answer))
}

async fn measure(label: &str, addr: SocketAddr, pid: u32) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let (us, answer) = get(addr, "/healthz").await?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("/healthz answered {answer:?}");
        }
        times.push(us);
    }
    times.sort_unstable();
    let (_, stats) = get(addr, "/v1/stats").await?;
    let body = stats.split("\r\n\r\n").nth(1).unwrap_or("{}");
    let stats: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let c = &stats["connections"];
    println!(
        "{label:<34} RSS {:>7} KiB   /healthz p50 {:>6} us  p99 {:>6} us  max {:>6} us   open {:>4}  buffered {:>8} B",
        rss_kib(pid)?,
        times[SAMPLES / 2],
        times[SAMPLES * 99 / 100],
        times[SAMPLES - 1],
        c["connections_open"],
        c["request_bytes_buffered"],
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let idle_n = args.first().copied().unwrap_or(400);
    let stalled_n = args.get(1).copied().unwrap_or(400);

    // target/release/examples/bench_hostile -> target/release/nodeproof-collector
    let exe = std::env::current_exe()?;
    let bin: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("nodeproof-collector"))
        .context("where is the collector binary?")?;
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p nodeproof-collector --bins` first",
            bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--init",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
            "--log",
            "warn",
        ])
        // Every connection comes from 127.0.0.1 here; with the default per-address cap
        // (256) the stalled uploads would take all of that address's slots and /healthz
        // from the same address would be refused, which is the cap working. The bench
        // stands for many addresses instead.
        .args(["--max-connections-per-ip", "1024"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the collector")?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .context("the collector exited before listening")??;
        if let Some(a) = line.split("listening on ").nth(1) {
            break a.trim().parse()?;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let run = async {
        println!("collector pid {pid} on {addr}, default bounds");
        measure("quiet", addr, pid).await?;

        let mut idle = Vec::with_capacity(idle_n);
        for _ in 0..idle_n {
            idle.push(TcpStream::connect(addr).await?);
        }
        measure(&format!("{idle_n} idle connections"), addr, pid).await?;

        let mut head =
            b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
Content-Length: 1000000\r\n\r\n"
                .to_vec();
        head.extend(std::iter::repeat_n(b' ', 16 << 10));
        let mut stalled = Vec::with_capacity(stalled_n);
        for _ in 0..stalled_n {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&head).await?;
            stalled.push(s);
        }
        measure(&format!("+ {stalled_n} stalled 16 KiB bodies"), addr, pid).await?;
        drop(stalled);
        drop(idle);
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), run).await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    outcome.context("the benchmark did not finish within 120 s")?
}
