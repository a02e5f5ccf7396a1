//! What the daemon's integration tests (tests/daemon_*.rs) share: a fake node and the
//! reports scanned from it, the spool opened and its chain checked as the collector would,
//! the daemon run in the library or as the binary, and a stand-in HTTP server on
//! 127.0.0.1:0 that plays whatever answers at the collector's URL. Each tests/*.rs file
//! is its own crate: a helper some of them do not use carries `#[allow(dead_code)]`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nodeproof_agent::daemon::chain::Kind;
use nodeproof_agent::daemon::spool::{Rejection, Spool, REJECTED_DIR};
use nodeproof_agent::daemon::{self, Config};
use nodeproof_agent::fakeproc::FakeProc;
use nodeproof_agent::scan::{self, ScanOptions};
use nodeproof_proto::{sha256_hex, signing_key_to_pem, verify, Predicate, Report, Statement};
use tempfile::TempDir;

pub const NODE: &str = "node-1";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A fake node whose kubelet has one of two postures (0: read-only port closed, 1: open).
pub fn fake_node(dir: &Path, posture: usize) -> PathBuf {
    let flag = ["--read-only-port=0", "--read-only-port=10255"][posture % 2];
    let fake = FakeProc::new(&dir.join("proc")).expect("fake proc");
    fake.node(NODE, "6.1.0", 1_700_000_000).expect("node facts");
    fake.process(4242, "kubelet", &["/usr/bin/kubelet", flag])
        .and_then(|p| p.root(&dir.join("host")))
        .expect("kubelet");
    fake.path().to_path_buf()
}

/// A report of posture 0 or 1, scanned at minute `minute`.
#[allow(dead_code)]
pub fn report(minute: u32, posture: usize) -> Report {
    static REPORTS: OnceLock<Vec<Report>> = OnceLock::new();
    let reports = REPORTS.get_or_init(|| {
        (0..2)
            .map(|p| {
                let tmp = TempDir::new().unwrap();
                let proc_dir = fake_node(tmp.path(), p);
                let snap = scan::collect(&ScanOptions {
                    proc_dir,
                    pid: None,
                    kubelet_version: None,
                    // A fake node: its ports are not this machine's.
                    probe: false,
                })
                .expect("scan of the fake node");
                scan::assemble(&snap, String::new())
            })
            .collect()
    });
    let mut r = reports[posture].clone();
    r.scan_time = format!("2026-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
    r
}

#[allow(dead_code)]
pub fn open(dir: &Path, max: usize) -> Spool {
    Spool::open(dir, NODE, key(1), max).expect("open the spool")
}

#[allow(dead_code)]
pub fn slot_path(spool: &Spool, slot: u64) -> PathBuf {
    spool.dir().join(format!("{slot:020}.json"))
}

/// Reads every spooled statement back as it is on disk, verifies it with `signer` and
/// checks that together they form one chain after the spool's base. True of a spool where
/// nothing left undelivered since the statements were written (or re-keyed).
#[allow(dead_code)]
pub fn check_chain(spool: &Spool, signer: &SigningKey) -> Vec<Statement> {
    let mut previous = spool.base().digest.clone();
    let mut sequence = spool.base().sequence;
    let mut last_full: Option<(String, u64)> = None;
    let mut out = Vec::new();
    for entry in spool.pending() {
        let bytes = fs::read(slot_path(spool, entry.slot)).expect("spooled file");
        assert_eq!(sha256_hex(&bytes), entry.digest, "slot {}", entry.slot);
        let v = verify(&bytes, &signer.verifying_key()).expect("spooled statement verifies");
        let link = v.statement.link().expect("link").clone();
        sequence += 1;
        assert_eq!(link.sequence, sequence, "sequence of slot {}", entry.slot);
        assert_eq!(entry.sequence, sequence);
        assert_eq!(link.node, NODE);
        match &v.statement.predicate {
            Predicate::Report(_) => {
                assert_eq!(link.previous, previous, "previous of slot {}", entry.slot);
                last_full = Some((entry.digest.clone(), sequence));
            }
            Predicate::Unchanged(u) => {
                // The chain rule: a notice links to its run's report and counts the
                // sequences since it.
                assert_eq!(
                    link.previous.as_ref(),
                    Some(&u.since),
                    "previous of slot {}",
                    entry.slot
                );
                assert_eq!(
                    u.count,
                    sequence - u.since_sequence,
                    "count of slot {}",
                    entry.slot
                );
                if let Some((d, s)) = &last_full {
                    assert_eq!(
                        (&u.since, u.since_sequence),
                        (d, *s),
                        "since of slot {}",
                        entry.slot
                    );
                }
            }
        }
        previous = Some(entry.digest.clone());
        out.push(v.statement);
    }
    out
}

/// Takes every statement off the spool as the daemon does (`head`, send, `ack_head`),
/// checking what would be sent: signed by `signer`, following the collector's last
/// statement (the base), a notice resting on the last full report acknowledged.
#[allow(dead_code)]
pub fn deliver_all(spool: &mut Spool, signer: &SigningKey) -> Vec<Statement> {
    let mut out = Vec::new();
    while let Some((entry, bytes)) = spool.head().unwrap() {
        assert_eq!(sha256_hex(&bytes), entry.digest);
        assert_eq!(
            fs::read(slot_path(spool, entry.slot)).unwrap(),
            bytes,
            "sent as spooled"
        );
        let v = verify(&bytes, &signer.verifying_key()).expect("sent statement verifies");
        let link = v.statement.link().expect("link").clone();
        let base = spool.base().clone();
        assert_eq!(
            link.sequence,
            base.sequence + 1,
            "sequence of slot {}",
            entry.slot
        );
        assert_eq!(entry.sequence, link.sequence);
        match &v.statement.predicate {
            Predicate::Report(_) => assert_eq!(
                link.previous, base.digest,
                "previous of slot {}",
                entry.slot
            ),
            Predicate::Unchanged(u) => {
                assert_eq!(
                    link.previous.as_ref(),
                    Some(&u.since),
                    "a notice links to its run's report: slot {}",
                    entry.slot
                );
                assert_eq!(
                    u.count,
                    link.sequence - u.since_sequence,
                    "count of slot {}",
                    entry.slot
                );
            }
        }
        assert_eq!(link.node, NODE);
        if let (Predicate::Unchanged(u), Some(acked)) = (&v.statement.predicate, spool.acked_full())
        {
            assert_eq!(
                (&u.since, u.since_sequence, &u.posture),
                (&acked.digest, acked.sequence, &acked.posture),
                "since of slot {}",
                entry.slot
            );
        }
        spool.ack_head().unwrap();
        assert!(!slot_path(spool, entry.slot).exists());
        out.push(v.statement);
    }
    out
}

#[allow(dead_code)]
pub fn kinds(spool: &Spool) -> Vec<&'static str> {
    spool.pending().iter().map(|e| e.kind.name()).collect()
}

#[allow(dead_code)]
pub fn counts(spool: &Spool) -> Vec<u64> {
    spool
        .pending()
        .iter()
        .map(|e| match &e.kind {
            Kind::Unchanged { count, .. } => *count,
            Kind::Full { .. } => 0,
        })
        .collect()
}

#[allow(dead_code)]
pub fn rejection(code: &str) -> Rejection {
    Rejection {
        at: "2026-01-01T00:00:00Z".into(),
        status: Some(422),
        error: code.into(),
        message: "refused for the test".into(),
        sequence: None,
        digest: None,
    }
}

#[allow(dead_code)]
pub fn rejected_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir.join(REJECTED_DIR)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[allow(dead_code)]
pub fn stray_temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// A URL where nothing listens: a port that was just free.
#[allow(dead_code)]
pub fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[allow(dead_code)]
pub fn config(tmp: &Path, proc_dir: PathBuf) -> Config {
    let mut c = Config::new(dead_url(), key(1), NODE);
    c.spool_dir = tmp.join("spool");
    c.scan = ScanOptions {
        proc_dir,
        pid: None,
        kubelet_version: None,
        // A fake node: its ports are not this machine's.
        probe: false,
    };
    c.retry_base = Duration::from_millis(5);
    c.retry_cap = Duration::from_millis(20);
    c.once_attempts = 2;
    c.interval = Duration::from_secs(60);
    c
}

#[allow(dead_code)]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[allow(dead_code)]
pub fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeproof-agent"));
    // The nodes here are fake /proc trees: their ports are not this machine's.
    cmd.env("NODEPROOF_NO_PROBE", "1");
    cmd
}

#[allow(dead_code)]
pub fn write_key(dir: &Path) -> PathBuf {
    let path = dir.join("agent.key");
    fs::write(&path, signing_key_to_pem(&key(1)).unwrap()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

// --- A stand-in for whatever answers at the collector's URL ------------------------------

/// What the stand-in answers to one request.
#[allow(dead_code)]
pub enum Reply {
    /// These bytes, as the whole HTTP response.
    Raw(Vec<u8>),
    /// A 200 whose body never ends; the number of bytes written before the client hung up
    /// is sent on the channel.
    Endless(mpsc::Sender<u64>),
}

/// An HTTP/1.1 response with `body`.
#[allow(dead_code)]
pub fn http(status: u16, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The collector's acknowledgement of the envelope `body`.
#[allow(dead_code)]
pub fn ack(body: &[u8]) -> Reply {
    http(
        201,
        &format!(
            r#"{{"node":"{NODE}","sequence":1,"digest":"{}","duplicate":false}}"#,
            sha256_hex(body)
        ),
    )
}

/// (path, body) of one request.
#[allow(dead_code)]
pub type Request = (String, Vec<u8>);

#[allow(dead_code)]
pub struct Stand {
    pub url: String,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<Request>>>,
}

impl Stand {
    #[allow(dead_code)]
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Serves `respond` on 127.0.0.1:0, one connection at a time, in a thread that lives as
/// long as the test process. The listener is bound before this returns.
#[allow(dead_code)]
pub fn stand_in<F>(respond: F) -> Stand
where
    F: Fn(&str, &[u8]) -> Reply + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((path, body)) = read_request(&mut stream) else {
                continue;
            };
            log.lock().unwrap().push((path.clone(), body.clone()));
            match respond(&path, &body) {
                Reply::Raw(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Reply::Endless(tx) => {
                    let mut sent = 0u64;
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                    if stream.write_all(head.as_bytes()).is_ok() {
                        let chunk = [b'x'; 16 * 1024];
                        while stream.write_all(&chunk).is_ok() {
                            sent += chunk.len() as u64;
                        }
                    }
                    let _ = tx.send(sent);
                }
            }
        }
    });
    Stand { url, seen }
}

#[allow(dead_code)]
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// One `run --once` against `url` with the fake node, in the library.
#[allow(dead_code)]
pub fn once_against(tmp: &Path, url: &str) -> daemon::RunOutcome {
    let proc_dir = fake_node(tmp, 0);
    let mut c = config(tmp, proc_dir);
    c.collector = url.to_string();
    c.once = true;
    block_on(daemon::run(c, std::future::pending())).unwrap()
}
