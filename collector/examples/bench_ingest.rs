//! Ingest benchmark: many simulated nodes send signed reports concurrently to a real
//! collector process on 127.0.0.1, and, in the same run, this process measures how many of
//! the same envelopes per second it can merely verify using every core, as the collector
//! may. The last line reads `ingest: X reports/s, verify-only: Y reports/s, ratio: Z`.
//! Run it through `scripts/bench-ingest` (docs/benchmarks.md).
//!
//! `--db postgres://user@host/db` runs it on PostgreSQL, in a new database made on that
//! server for the run (and dropped after); `--collectors 2` starts two collector processes
//! on that one database and spreads the senders' connections over both.
//!
//! Verify-only is the best of three passes over every envelope (the machines are shared and
//! noisy; the best pass is the highest bar for the ratio). `--http-floor` also sends the
//! same requests to a server in this process that only reads each body and answers 201:
//! what HTTP and the client cost with no verification and no storage at all.
//!
//! The reports are real: the agent library scans the bundled sample node through a fake
//! /proc once, and every simulated node sends that report (about 19 KB signed) with its own
//! chain links, signed with its own key. Signing happens before the clock starts, and so
//! does building the HTTP requests: the senders are a lean HTTP/1.1 client (keep-alive, one
//! connection each, every answer read and checked to be a 201) on one thread, so that the
//! collector, not the client, gets the cores.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_collector::store;
use nodeproof_proto::{keyid, sha256_hex, sign_statement, verify, verifying_key_to_pem, Link};

struct Args {
    db: Option<String>,
    nodes: usize,
    reports: usize,
    concurrency: usize,
    collector: PathBuf,
    http_floor: bool,
    collectors: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        db: None,
        nodes: 200,
        reports: 25,
        concurrency: 64,
        collector: PathBuf::from("target/release/nodeproof-collector"),
        http_floor: false,
        collectors: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--db" => args.db = Some(val()?),
            "--nodes" => args.nodes = val()?.parse()?,
            "--reports" => args.reports = val()?.parse()?,
            "--concurrency" => args.concurrency = val()?.parse()?,
            "--collector" => args.collector = PathBuf::from(val()?),
            "--http-floor" => args.http_floor = true,
            "--collectors" => args.collectors = val()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: bench_ingest [--db URL] [--nodes N] \
                 [--reports N] [--concurrency N] [--collector PATH] [--http-floor] \
                 [--collectors N]"
            ),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    // PostgreSQL: a fresh database on the named server, dropped when the run ends.
    let pg = args
        .db
        .as_deref()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .map(|server| {
            store::postgres::testdb::TestDatabase::create_on(server, "nodeproof_bench", "bench")
        });
    let db = match (&pg, &args.db) {
        (Some(pg), _) => pg.url().to_owned(),
        (None, Some(db)) => db.clone(),
        (None, None) => format!("sqlite://{}/bench.db", tmp.path().display()),
    };
    if args.collectors == 0 || (args.collectors > 1 && pg.is_none()) {
        bail!(
            "--collectors 2 and more need --db postgres://... (one SQLite file has one collector)"
        );
    }

    // One real report, from the sample node.
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/examples/sample-node");
    let root = std::fs::canonicalize(node_dir.join("root"))?;
    let argv_text = std::fs::read_to_string(node_dir.join("cmdline"))?;
    let argv: Vec<&str> = argv_text.lines().filter(|l| !l.is_empty()).collect();
    let proc_dir = tmp.path().join("proc");
    let fake = FakeProc::new(&proc_dir)?;
    fake.process(4242, "kubelet", &argv)?.root(&root)?;
    let snap = scan::collect(&ScanOptions {
        proc_dir: proc_dir.clone(),
        pid: None,
        kubelet_version: None,
    })?;
    let now = time::OffsetDateTime::now_utc();
    let scan_time = now
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let base = scan::assemble(&snap, scan_time);

    // Enrol the nodes and sign every report, chained, before the clock starts.
    let store = store::open(&db).with_context(|| format!("open {db}"))?;
    let mut nodes = Vec::with_capacity(args.nodes);
    for n in 0..args.nodes {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let name = format!("bench-node-{n:05}");
        let pem = verifying_key_to_pem(&key.verifying_key())?;
        store.enroll(
            &name,
            &keyid(&key.verifying_key()),
            &pem,
            true,
            now.unix_timestamp(),
        )?;
        let mut previous = None;
        let mut envelopes = Vec::with_capacity(args.reports);
        for seq in 1..=args.reports as u64 {
            let mut report = base.clone();
            report.link = Some(Link {
                node: name.clone(),
                sequence: seq,
                previous: previous.clone(),
                interval_secs: 300,
            });
            let env = sign_statement(&scan::statement(&report), &key)?.to_json_bytes();
            previous = Some(sha256_hex(&env));
            envelopes.push(env);
        }
        nodes.push((key, envelopes));
    }
    drop(store);
    let total = args.nodes * args.reports;
    let size = nodes[0].1[0].len();

    // The collectors, as their own processes, on the one database.
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..args.collectors {
        let mut child = Command::new(&args.collector)
            .args([
                "serve",
                "--init",
                "--listen",
                "127.0.0.1:0",
                "--db",
                &db,
                "--log",
                "warn",
                // Throughput, not the per-node quota, is measured here.
                "--reports-per-minute",
                "4294967295",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", args.collector.display()))?;
        let stderr = child.stderr.take().context("collector stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("collector exited before listening")??;
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        children.push(child);
        addrs.push(addr);
    }
    let addr = addrs[0].clone();

    // Every request is built before the clock starts (headers and body in one buffer), so
    // the senders only write requests and read answers: a lean HTTP/1.1 client with
    // keep-alive, one connection per sender, that checks every answer is a 201. It shares
    // the cores with the collector, so the less it costs the more the collector gets.
    let requests: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
        nodes
            .iter()
            .map(|(_, envelopes)| {
                envelopes
                    .iter()
                    .map(|env| http_request(&addr, "/v1/reports", env))
                    .collect()
            })
            .collect(),
    );
    let ingest_secs = send_all(&addrs, &requests, args.concurrency)?;
    for child in &mut children {
        stop(child);
    }

    // Every acknowledged report is committed.
    let store = store::open(&db)?;
    let mut missing = 0;
    for (_, envelopes) in &nodes {
        for env in envelopes {
            if !store.has_digest(&sha256_hex(env))? {
                missing += 1;
            }
        }
    }
    if missing > 0 {
        bail!("{missing} acknowledged reports are missing from the store");
    }

    // Verify-only, on every core: the best of three passes.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut verify_secs = f64::INFINITY;
    for _ in 0..3 {
        let verify_started = Instant::now();
        std::thread::scope(|s| {
            for chunk in nodes.chunks(nodes.len().div_ceil(cores)) {
                s.spawn(move || {
                    for (key, envelopes) in chunk {
                        let vk = key.verifying_key();
                        for env in envelopes {
                            assert!(verify(env, &vk).is_ok(), "bench envelope failed to verify");
                        }
                    }
                });
            }
        });
        verify_secs = verify_secs.min(verify_started.elapsed().as_secs_f64());
    }

    if args.http_floor {
        let floor_secs = http_floor(&requests, args.concurrency)?;
        eprintln!(
            "http floor (same requests, a server that only reads them): {:.0} reports/s",
            total as f64 / floor_secs
        );
    }

    let ingest_rate = total as f64 / ingest_secs;
    let verify_rate = total as f64 / verify_secs;
    eprintln!(
        "{} nodes x {} reports ({} bytes each), {} concurrent senders, {cores} cores, db {}, \
         {} collector(s)",
        args.nodes,
        args.reports,
        size,
        args.concurrency,
        store::masked(&db),
        args.collectors
    );
    eprintln!("all {total} acknowledged reports are in the store");
    println!(
        "ingest: {ingest_rate:.0} reports/s, verify-only: {verify_rate:.0} reports/s, ratio: {:.2}",
        ingest_rate / verify_rate
    );
    Ok(())
}

/// Sends every node's requests, in order per node, over `concurrency` keep-alive
/// connections from one thread; every answer must be a 201. Returns the seconds taken.
fn send_all(
    addrs: &[String],
    requests: &Arc<Vec<Vec<Vec<u8>>>>,
    concurrency: usize,
) -> Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    // One thread is plenty for the senders, which mostly wait for answers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..concurrency {
            // Connections spread evenly over the collectors.
            let (addr, requests, next, failures) = (
                addrs[task % addrs.len()].clone(),
                Arc::clone(requests),
                next.clone(),
                failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut conn: Option<HttpConn> = None;
                // Each task takes whole nodes, whose reports must go in order.
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(node_requests) = requests.get(i) else {
                        break;
                    };
                    for request in node_requests {
                        let status = match conn.as_mut() {
                            Some(c) => c.send(request).await,
                            None => match HttpConn::connect(&addr).await {
                                Ok(c) => conn.insert(c).send(request).await,
                                Err(e) => Err(e),
                            },
                        };
                        match status {
                            Ok((201, keep_alive)) => {
                                if !keep_alive {
                                    conn = None;
                                }
                            }
                            Ok((status, _)) => {
                                eprintln!("a report was answered {status}, not 201");
                                failures.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                            Err(e) => {
                                eprintln!("a report was not answered: {e}");
                                failures.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        let total: usize = requests.iter().map(Vec::len).sum();
        bail!("{failed} of {total} reports were not accepted with 201");
    }
    Ok(secs)
}

/// The same requests against a server in this process that reads each body whole and
/// answers 201 with a small JSON body, on as many threads as there are cores: what HTTP and
/// this client cost by themselves.
fn http_floor(requests: &Arc<Vec<Vec<Vec<u8>>>>, concurrency: usize) -> Result<f64> {
    use axum::routing::post;
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?.to_string();
    let app = axum::Router::new().route(
        "/v1/reports",
        post(|body: axum::body::Bytes| async move {
            let answer = format!(
                "{{\"node\":\"bench\",\"sequence\":1,\"digest\":\"{}\",\"duplicate\":false}}",
                body.len()
            );
            (axum::http::StatusCode::CREATED, answer)
        }),
    );
    server.spawn(async move { axum::serve(listener, app).await });
    // The paths and hosts in the prepared requests do not matter to this server.
    let secs = send_all(&[addr], requests, concurrency)?;
    server.shutdown_background();
    Ok(secs)
}

/// A whole HTTP/1.1 POST of a JSON body.
fn http_request(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// One keep-alive HTTP/1.1 connection: writes a request, reads the whole answer.
struct HttpConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    async fn connect(addr: &str) -> Result<HttpConn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and reads the answer: its status, and whether the connection stays
    /// open. Only `content-length` bodies are expected (the collector answers JSON).
    async fn send(&mut self, request: &[u8]) -> Result<(u16, bool)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                bail!("the answer's headers are over 64 KiB");
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("the collector closed the connection before answering");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("answer headers")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
        let mut length = None;
        let mut keep_alive = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("unexpected transfer-encoding {value:?} in the answer");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep_alive = false;
            }
        }
        let length = length.context("the answer has no content-length")?;
        let mut have = self.buf.len() - head_end;
        if have > length {
            bail!("the collector sent more than one answer");
        }
        let mut chunk = [0u8; 4096];
        while have < length {
            let n = self
                .stream
                .read(&mut chunk[..(length - have).min(4096)])
                .await?;
            if n == 0 {
                bail!("the collector closed the connection in the middle of an answer");
            }
            have += n;
        }
        Ok((status, keep_alive))
    }
}

/// Stops the collector with SIGTERM (graceful) via the `kill` command, then waits.
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
