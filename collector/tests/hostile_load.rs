//! Peers that never authenticate and try to exhaust the collector: idle sockets, stalled
//! bodies, trickled headers, stalled TLS handshakes, HTTP/2 streams. Each test runs the real
//! server on 127.0.0.1 with small bounds and checks the server's own accounting
//! (`/v1/stats`), never RSS. Nothing sleeps to synchronise: a test waits for the server to
//! close a socket (a read with a bounded timeout) or for answers to arrive.

mod common;

use std::future::Future as _;
use std::time::{Duration, Instant};

use common::*;
use nodeproof_collector::server::{Limits, TlsFiles};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How many hostile connections each test opens.
const FLOOD: usize = 400;

fn small_limits() -> Limits {
    Limits {
        max_connections: 100,
        max_connections_per_ip: 100,
        header_read_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_buffered_bytes: 256 << 10,
        h2_max_concurrent_streams: 8,
        min_free_bytes: 0,
    }
}

async fn start(limits: Limits) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    TestServer::start_limited(dir, None, store, limits).await
}

async fn connections(server: &TestServer) -> Value {
    // A fresh client: the test's pooled connection may itself have been closed as idle.
    let response = reqwest::Client::new()
        .get(format!("http://{}/v1/stats", server.addr))
        .send()
        .await
        .expect("stats answered");
    let body: Value = response.json().await.expect("stats JSON");
    body["connections"].clone()
}

/// Reads until the server closes `stream` (EOF or reset); returns what it sent and how
/// long that took, or panics after `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + within).into(), stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

async fn open_idle(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    idle
}

#[tokio::test]
async fn idle_socket_flood_does_not_block_healthz() {
    let server = start(small_limits()).await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;

    // Four times the connection limit, all idle (never a byte sent).
    let idle = open_idle(server.addr, FLOOD).await;

    let fresh = reqwest::Client::new();
    let health = fresh
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .expect("healthz answered under the flood");
    assert_eq!(health.status(), 200);
    let report = agent.next_full();
    let (status, body) = post_to(
        reqwest::Client::new(),
        format!("http://{}/v1/reports", server.addr),
        report.clone(),
    )
    .await;
    assert_eq!(status, 201, "a real agent gets through: {body}");
    agent.accepted(&report);

    let stats = connections(&server).await;
    assert!(
        stats["connections_open"].as_u64().unwrap() <= 100 + 2,
        "{stats}"
    );
    assert!(
        stats["connections_evicted"].as_u64().unwrap() >= (FLOOD - 100) as u64,
        "the idle ones made room: {stats}"
    );
    drop(idle);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let server = start(Limits {
        idle_timeout: Duration::from_millis(200),
        ..small_limits()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = closed_by_server(&mut silent, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(150), "{took:?}");

    // Keep-alive after a request: idle again, closed again.
    let mut used = TcpStream::connect(server.addr).await.unwrap();
    used.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = closed_by_server(&mut used, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let stats = connections(&server).await;
    assert!(
        stats["connections_idle_closed"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    server.stop().await.expect("clean stop");
}

/// What a stalled upload sends: a head announcing ~1 MiB, then 4 KiB, then nothing.
fn stalled_upload() -> Vec<u8> {
    let mut request = b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
Content-Length: 1000000\r\n\r\n"
        .to_vec();
    request.extend(std::iter::repeat_n(b' ', 4096));
    request
}

#[tokio::test]
async fn stalled_bodies_are_bounded() {
    let limits = Limits {
        max_connections: 1000,
        max_connections_per_ip: 1000,
        ..small_limits()
    };
    let budget = limits.max_buffered_bytes as u64;
    let server = start(limits).await;

    // 400 uploads of 4 KiB each would hold 1.6 MiB, over six times the budget.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(FLOOD);
    let mut held = Vec::new();
    for _ in 0..FLOOD {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&stalled_upload()).await.unwrap();
        let tx = tx.clone();
        held.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // The ones over the budget are answered at once; the others wait for their body.
            if let Ok(n) = stream.read(&mut buf).await {
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
            }
            // Keep the socket open until the test ends.
            let _ = stream.read(&mut buf).await;
        }));
    }
    drop(tx);
    // At most budget / 4 KiB = 64 uploads fit; every other one is answered 503.
    let must_refuse = FLOOD - (budget as usize / 4096);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    while refused < must_refuse {
        let answer = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("the uploads over the budget are answered within 30 s")
            .expect("answers");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"busy\""), "{answer}");
        refused += 1;
    }

    let stats = connections(&server).await;
    let peak = stats["request_bytes_buffered_peak"].as_u64().unwrap();
    let now = stats["request_bytes_buffered"].as_u64().unwrap();
    assert!(
        peak <= budget,
        "peak {peak} over the budget {budget}: {stats}"
    );
    assert!(now <= budget, "{stats}");
    assert!(now >= 4096, "the uploads that fit are counted: {stats}");
    assert!(
        stats["requests_over_budget"].as_u64().unwrap() >= must_refuse as u64,
        "{stats}"
    );
    // The server still answers.
    let health = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for task in held {
        task.abort();
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn stalled_body_times_out() {
    let server = start(Limits {
        body_timeout: Duration::from_millis(300),
        ..small_limits()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&stalled_upload()).await.unwrap();
    let (answer, took) = closed_by_server(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took < Duration::from_secs(10));
    let stats = connections(&server).await;
    assert_eq!(stats["request_body_timeouts"], 1, "{stats}");
    assert_eq!(stats["request_bytes_buffered"], 0, "released: {stats}");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn slowloris_headers_time_out() {
    let server = start(Limits {
        header_read_timeout: Duration::from_millis(500),
        ..small_limits()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    // One header line every 50 ms for 20 s: bytes keep moving, so only the whole-head
    // deadline can stop it.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0..400 {
            tick.tick().await;
            if write
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        400
    });
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf)).await {
            Err(_) => panic!("a trickled request head was not cut off within 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {} // a 408 answer, if any; wait for the close
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let sent = trickle.await.unwrap();
    assert!(sent < 400, "the server closed before the trickle ended");
    server.stop().await.expect("clean stop");
}

// ---------------------------------------------------------------- TLS

fn tls_files(dir: &tempfile::TempDir) -> (TlsFiles, String) {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    (
        TlsFiles {
            cert: write("server.pem", &cert.pem()),
            key: write("server.key", &key.serialize_pem()),
            client_ca: None,
        },
        cert.pem(),
    )
}

#[tokio::test]
async fn tls_handshake_flood_does_not_block_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca) = tls_files(&dir);
    let store = open_store(&dir);
    let server = TestServer::start_limited(dir, Some(files), store, small_limits()).await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();

    // 400 TCP connections that never start their handshake, four times the limit.
    let stalled = open_idle(server.addr, FLOOD).await;
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz over TLS under the flood");
    assert_eq!(health.status(), 200);
    let stats: Value = client
        .get(server.url("/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["connections"]["connections_evicted"]
            .as_u64()
            .unwrap()
            >= (FLOOD - 100) as u64,
        "{stats}"
    );
    drop(stalled);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn tls_stalled_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = tls_files(&dir);
    let store = open_store(&dir);
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..small_limits()
    };
    let server = TestServer::start_limited(dir, Some(files), store, limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The first bytes of a ClientHello record header, then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let (_, took) = closed_by_server(&mut stream, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(10));
    server.stop().await.expect("clean stop");
}

// ---------------------------------------------------------------- HTTP/2

#[tokio::test]
async fn h2_stalled_streams_are_bounded() {
    let limits = Limits {
        // Room for four 4 KiB bodies.
        max_buffered_bytes: 16 << 10,
        h2_max_concurrent_streams: 8,
        ..small_limits()
    };
    let server = start(limits).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    // Prior knowledge (h2c), as a client behind a TLS-terminating proxy would speak.
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });

    let mut responses = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..8 {
        client = client.ready().await.expect("a stream slot");
        let request = http::Request::post(format!("http://{}/v1/reports", server.addr))
            .header("content-type", "application/json")
            .header("content-length", "1000000")
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(bytes::Bytes::from(vec![b' '; 4096]), false)
            .unwrap();
        responses.push(response);
        bodies.push(body); // never finished
    }
    // Four fit the budget; the other four are answered 503 at once.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending = responses;
    while refused < 4 {
        let (answer, _, rest) =
            tokio::time::timeout_at(deadline.into(), futures_select_ok(pending))
                .await
                .expect("the streams over the budget are answered");
        assert_eq!(answer, 503);
        refused += 1;
        pending = rest;
    }
    let stats = connections(&server).await;
    let peak = stats["request_bytes_buffered_peak"].as_u64().unwrap();
    assert!(peak <= 16 << 10, "{stats}");
    assert!(
        stats["requests_over_budget"].as_u64().unwrap() >= 4,
        "{stats}"
    );
    drop(bodies);
    driver.abort();
    server.stop().await.expect("clean stop");
}

/// The first of `responses` to complete: its status, its index, and the others.
async fn futures_select_ok(
    responses: Vec<h2::client::ResponseFuture>,
) -> (u16, usize, Vec<h2::client::ResponseFuture>) {
    let mut responses: Vec<_> = responses.into_iter().map(Some).collect();
    std::future::poll_fn(move |cx| {
        for i in 0..responses.len() {
            if let Some(f) = responses[i].as_mut() {
                if let std::task::Poll::Ready(r) = std::pin::Pin::new(f).poll(cx) {
                    let status = r.expect("an answer").status().as_u16();
                    responses[i] = None;
                    let rest = std::mem::take(&mut responses)
                        .into_iter()
                        .flatten()
                        .collect();
                    return std::task::Poll::Ready((status, i, rest));
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}
