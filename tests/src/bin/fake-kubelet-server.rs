//! Stands in for a kubelet's network side in the probe tests: it listens where told and
//! answers every request with the status a kubelet posture would give (401, 403 or 200 on
//! the API over HTTPS, 200 on an open read-only port, `ok` on healthz), or never answers.
//!
//! Like `fake-kubelet`, the tests may copy it to a file named `kubelet` and start it with a
//! kubelet command line, which it ignores: its settings come from the environment.
//!
//! ```text
//! FAKE_KUBELET_LISTEN="https=127.0.0.1:0=401,http=127.0.0.1:0=200,http=127.0.0.1:0=hang"
//! FAKE_KUBELET_RECORD=/tmp/dir     each request's head is written to DIR/<n>.txt
//!                                  before the answer is sent
//! ```
//!
//! An answer of the form `302>URL` redirects there. It prints `listening SCHEME ADDR` per
//! listener, then `ready`, and exits when its stdin closes, so a test controls its lifetime
//! without sleeping.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
enum Answer {
    Status(u16),
    Redirect(String),
    /// Accept, read, never answer.
    Hang,
}

fn main() {
    let spec = std::env::var("FAKE_KUBELET_LISTEN").unwrap_or_default();
    let record = std::env::var_os("FAKE_KUBELET_RECORD").map(PathBuf::from);
    let tls = Arc::new(tls_config());
    let mut out = std::io::stdout().lock();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let mut parts = item.splitn(3, '=');
        let (scheme, addr, answer) = match (parts.next(), parts.next(), parts.next()) {
            (Some(s), Some(a), Some(r)) => (s.to_string(), a, r),
            _ => fail(&format!("bad listener {item:?}: want SCHEME=ADDR=ANSWER")),
        };
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| fail(&format!("bad address in {item:?}")));
        let answer = if answer == "hang" {
            Answer::Hang
        } else if let Some(url) = answer.strip_prefix("302>") {
            Answer::Redirect(url.to_string())
        } else {
            Answer::Status(
                answer
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("bad answer in {item:?}"))),
            )
        };
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| fail(&format!("cannot listen on {addr}: {e}")));
        let bound = listener.local_addr().expect("local addr");
        writeln!(out, "listening {scheme} {bound}").expect("stdout");
        let (tls, record) = (tls.clone(), record.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (tls, record, answer, scheme) =
                    (tls.clone(), record.clone(), answer.clone(), scheme.clone());
                std::thread::spawn(move || serve(conn, &scheme, &tls, record, &answer));
            }
        });
    }
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn fail(message: &str) -> ! {
    eprintln!("fake-kubelet-server: {message}");
    std::process::exit(2)
}

fn serve(
    conn: TcpStream,
    scheme: &str,
    tls: &Arc<rustls::ServerConfig>,
    record: Option<PathBuf>,
    answer: &Answer,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if scheme == "https" {
        let Ok(server) = rustls::ServerConnection::new(tls.clone()) else {
            return;
        };
        let stream = rustls::StreamOwned::new(server, conn);
        exchange(stream, record, answer);
    } else {
        exchange(conn, record, answer);
    }
}

fn exchange<S: Read + Write>(mut stream: S, record: Option<PathBuf>, answer: &Answer) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.is_empty() {
        return;
    }
    if let Some(dir) = record {
        let n = REQUESTS.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::write(dir.join(format!("{n}.txt")), &head);
    }
    let (status, extra, body) = match answer {
        Answer::Hang => {
            // Hold the connection open without answering until the client gives up.
            let _ = stream.read(&mut buf);
            return;
        }
        Answer::Redirect(url) => (302, format!("Location: {url}\r\n"), String::new()),
        Answer::Status(200) if head.starts_with(b"GET /healthz") => {
            (200, String::new(), "ok".to_string())
        }
        Answer::Status(200) => (
            200,
            "Content-Type: application/json\r\n".to_string(),
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#.to_string(),
        ),
        Answer::Status(code) => (*code, String::new(), format!("status {code}")),
    };
    let reply = format!(
        "HTTP/1.1 {status} Fake\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

fn tls_config() -> rustls::ServerConfig {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["kubelet".to_string()]).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config")
}
