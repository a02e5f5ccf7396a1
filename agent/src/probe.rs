//! Live probes of the kubelet's ports: the edge that asks the running kubelet what it
//! answers, as `/proc` is the edge that reads what it was told.
//!
//! Why it exists: the files say what the kubelet should do; only the kubelet's ports say
//! what is listening now. An old kubelet still running, another process on 10255, a file
//! edited after the kubelet started: none of these shows in the files. So, unless
//! `--no-probe`, the scan sends the seed's two curl commands, done properly, and the
//! healthz request:
//!
//! ```text
//! GET https://<address>:<port>/pods            anonymous: 401, 403 or 200?
//! GET http://<address>:<readOnlyPort>/pods     (10255 when readOnlyPort is 0): open?
//! GET http://<healthzBindAddress>:<healthzPort>/healthz
//! ```
//!
//! Rules, each enforced here by construction: only `GET` of read-only paths; no
//! credentials of any kind (no client certificate, no token, no cookie); no redirects
//! (nothing here follows a `Location`); one second per request, connect included; only
//! the status line is read (at most [`MAX_HEAD`] bytes), never the body. The kubelet's
//! serving certificate is not verified: the question is whether it answers anonymous
//! requests, not who it is, and nothing secret is sent.
//!
//! [`plan`] is pure: it turns the effective settings into targets (the wildcard address
//! becomes loopback, as the seed's `localhost`). [`probe`] performs the requests and
//! returns a [`Probe`] snapshot, which the pure checks in `checks::probes` judge.
//!
//! Network namespaces: when the kubelet's `/proc/<pid>/ns/net` is not the agent's (a kind
//! node, a pod without `hostNetwork`), a thread of its own enters the kubelet's namespace
//! (`setns`, CAP_SYS_ADMIN) and sends the probes from there, so `127.0.0.1` is the
//! kubelet's loopback. Without the capability, only a specific `address` is probed, from
//! the agent's own namespace, and loopback targets are skipped with the reason.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodeproof_proto::Setting;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use crate::effective::Effective;

/// How long one probe may take, from connect to the status line.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The read-only port probed when the settings say it is off (`readOnlyPort: 0`): the
/// well-known port, where an old kubelet or another process would answer.
pub const WELL_KNOWN_READ_ONLY_PORT: u16 = 10255;

/// At most this much of an answer is read: enough for a status line.
pub const MAX_HEAD: usize = 4096;

/// Which of the kubelet's endpoints a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The authenticated API on `port` (10250), over HTTPS.
    KubeletApi,
    /// The unauthenticated read-only API on `readOnlyPort` (10255), plain HTTP.
    ReadOnly,
    /// `healthzBindAddress:healthzPort` (127.0.0.1:10248), plain HTTP.
    Healthz,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::KubeletApi, Endpoint::ReadOnly, Endpoint::Healthz];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::KubeletApi => "kubelet API",
            Endpoint::ReadOnly => "read-only port",
            Endpoint::Healthz => "healthz",
        }
    }

    fn scheme(self) -> Scheme {
        match self {
            Endpoint::KubeletApi => Scheme::Https,
            Endpoint::ReadOnly | Endpoint::Healthz => Scheme::Http,
        }
    }

    /// The only path each probe requests; both are read-only GETs.
    fn path(self) -> &'static str {
        match self {
            Endpoint::KubeletApi | Endpoint::ReadOnly => "/pods",
            Endpoint::Healthz => "/healthz",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where one probe goes, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    pub scheme: Scheme,
    pub address: IpAddr,
    pub port: u16,
    pub path: &'static str,
    /// How the address and port follow from the settings, e.g.
    /// `address 0.0.0.0 (kubelet v1beta1 default), so 127.0.0.1; port 10250 (kubelet v1beta1 default)`.
    pub basis: String,
    /// The settings could not be read, so the kubelet's defaults were probed: an answer
    /// there is a fact, but silence there proves nothing about where the kubelet listens.
    pub assumed: bool,
}

impl Target {
    /// `https://127.0.0.1:10250/pods`, `http://[::1]:10255/pods`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            SocketAddr::new(self.address, self.port),
            self.path
        )
    }
}

/// What planning decided for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Probe(Target),
    /// Not probed, and why (another network namespace, a setting that is not an address).
    Skip {
        endpoint: Endpoint,
        reason: String,
    },
    /// Not probed: the settings turn the endpoint off.
    Off {
        endpoint: Endpoint,
        reason: String,
    },
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP status line with this code.
    Status(u16),
    /// The connection was refused: nothing listens there.
    Refused,
    /// No connection or no status line within [`TIMEOUT`].
    Timeout,
    /// The TLS handshake failed (not TLS on that port, or no cipher suite in common).
    Tls(String),
    /// Something answered, but not with an HTTP status line.
    NotHttp(String),
    /// Any other network error (unreachable, reset, ...).
    Failed(String),
    /// Not probed because the settings turn the endpoint off (`healthzPort: 0`).
    Off(String),
    /// The probe was not sent; the reason.
    Skipped(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(code) => write!(f, "HTTP {code}{}", reason_phrase(*code)),
            Outcome::Refused => f.write_str("connection refused (nothing listens)"),
            Outcome::Timeout => write!(f, "no answer within {} s", TIMEOUT.as_secs()),
            Outcome::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Outcome::NotHttp(e) => write!(f, "not an HTTP answer: {e}"),
            Outcome::Failed(e) => write!(f, "network error: {e}"),
            Outcome::Off(reason) | Outcome::Skipped(reason) => {
                write!(f, "not probed: {reason}")
            }
        }
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => " OK",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        500 => " Internal Server Error",
        _ => "",
    }
}

/// One endpoint's probe: where it went (if anywhere) and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub endpoint: Endpoint,
    pub target: Option<Target>,
    pub outcome: Outcome,
}

impl Answer {
    /// `GET https://127.0.0.1:10250/pods: HTTP 401 Unauthorized`.
    pub fn describe(&self) -> String {
        match &self.target {
            Some(t) => format!("GET {}: {}", t.url(), self.outcome),
            None => format!("{}: {}", self.endpoint.as_str(), self.outcome),
        }
    }
}

/// The agent's network namespace compared with the kubelet's, and where the probes were
/// sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Same,
    /// The namespaces differ (`net:[4026531840]`-style names of both), and the probes were
    /// sent from inside the kubelet's: its loopback is reached as the kubelet sees it.
    Entered {
        agent: String,
        kubelet: String,
    },
    /// The namespaces differ and the agent could not enter the kubelet's (`why`: setns
    /// needs CAP_SYS_ADMIN): its loopback is not the kubelet's, so only a specific address
    /// is probed.
    Different {
        agent: String,
        kubelet: String,
        why: String,
    },
    /// Either link could not be read (a fake /proc, no CAP_SYS_PTRACE): probed as if the
    /// same.
    Unknown(String),
}

/// Everything the probes saw, handed to the pure checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub netns: Netns,
    /// One answer per [`Endpoint`], in [`Endpoint::ALL`] order.
    pub answers: Vec<Answer>,
}

impl Probe {
    /// No endpoint probed, for `reason` (no kubelet runs with the inputs read, say).
    pub fn not_probed(reason: impl Into<String>) -> Probe {
        let reason = reason.into();
        Probe {
            netns: Netns::Unknown("not probed".into()),
            answers: Endpoint::ALL
                .into_iter()
                .map(|endpoint| Answer {
                    endpoint,
                    target: None,
                    outcome: Outcome::Skipped(reason.clone()),
                })
                .collect(),
        }
    }

    pub fn answer(&self, endpoint: Endpoint) -> Option<&Answer> {
        self.answers.iter().find(|a| a.endpoint == endpoint)
    }
}

// ---- planning (pure) ------------------------------------------------------------------

/// Where to probe each endpoint, from the effective settings. A setting that cannot be
/// read falls back to the kubelet's default, marked `assumed`.
pub fn plan(eff: &Effective, netns: &Netns) -> Vec<Plan> {
    Endpoint::ALL
        .into_iter()
        .map(|endpoint| plan_one(eff, netns, endpoint))
        .collect()
}

fn plan_one(eff: &Effective, netns: &Netns, endpoint: Endpoint) -> Plan {
    let skip = |reason: String| Plan::Skip { endpoint, reason };
    let (address_path, default_address) = match endpoint {
        Endpoint::KubeletApi | Endpoint::ReadOnly => ("address", "0.0.0.0"),
        Endpoint::Healthz => ("healthzBindAddress", "127.0.0.1"),
    };
    let mut assumed = false;
    let port = match endpoint {
        Endpoint::KubeletApi => setting_port(eff, "port", 10250, &mut assumed),
        Endpoint::ReadOnly => match setting_port(eff, "readOnlyPort", 10255, &mut assumed) {
            Ok((0, basis)) => Ok((
                WELL_KNOWN_READ_ONLY_PORT,
                format!(
                    "{basis}, so the well-known {WELL_KNOWN_READ_ONLY_PORT}: nothing should answer"
                ),
            )),
            other => other,
        },
        Endpoint::Healthz => match setting_port(eff, "healthzPort", 10248, &mut assumed) {
            Ok((0, basis)) => {
                return Plan::Off {
                    endpoint,
                    reason: format!("{basis}: the kubelet serves no healthz endpoint"),
                }
            }
            other => other,
        },
    };
    let (port, port_basis) = match port {
        Ok(p) => p,
        Err(reason) => return skip(reason),
    };
    let (address, address_basis) =
        match setting_address(eff, address_path, default_address, &mut assumed) {
            Ok(a) => a,
            Err(reason) => return skip(reason),
        };
    let mut basis = format!("{address_basis}; {port_basis}");
    match netns {
        Netns::Different {
            agent,
            kubelet,
            why,
        } if address.is_loopback() => {
            return skip(format!(
                "the kubelet runs in network namespace {kubelet} and the agent in {agent}, \
                 which it could not enter ({why}), so {address} here is not the kubelet's; \
                 give the agent CAP_SYS_ADMIN, or run it in the host's network \
                 (hostNetwork: true in a pod), or pass --no-probe"
            ));
        }
        Netns::Entered { kubelet, .. } => {
            basis.push_str(&format!(
                "; sent from inside the kubelet's network namespace {kubelet}"
            ));
        }
        _ => {}
    }
    Plan::Probe(Target {
        endpoint,
        scheme: endpoint.scheme(),
        address,
        port,
        path: endpoint.path(),
        basis,
        assumed,
    })
}

fn origin(s: &Setting) -> String {
    format!("{}: {}", s.source, s.origin)
}

/// The port a setting names, or the default (marking `assumed`) when it cannot be read.
/// `Ok((0, _))` is returned as is: the caller decides what an off port means.
fn setting_port(
    eff: &Effective,
    path: &str,
    default: u16,
    assumed: &mut bool,
) -> Result<(u16, String), String> {
    let s = match eff.lookup(path) {
        Ok(s) => s,
        Err(why) => {
            *assumed = true;
            return Ok((
                default,
                format!("{path} unknown ({why}), so the default {default}"),
            ));
        }
    };
    match s.value.as_i64().map(u16::try_from) {
        Some(Ok(port)) => Ok((port, format!("{path} {port} ({})", origin(s)))),
        _ => Err(format!(
            "{path} is {} ({}), not a port number",
            s.value,
            origin(s)
        )),
    }
}

/// The address to probe for an address setting: a wildcard becomes loopback of its
/// family, as the seed's `localhost`.
fn setting_address(
    eff: &Effective,
    path: &str,
    default: &str,
    assumed: &mut bool,
) -> Result<(IpAddr, String), String> {
    let (text, basis) = match eff.lookup(path) {
        Ok(s) => match &s.value {
            Value::String(text) => (text.clone(), format!("{path} {text} ({})", origin(s))),
            other => return Err(format!("{path} is {other} ({}), not an address", origin(s))),
        },
        Err(why) => {
            *assumed = true;
            (
                default.to_string(),
                format!("{path} unknown ({why}), so the default {default}"),
            )
        }
    };
    // The kubelet's own default when the setting is empty (net.ParseIP("") is nil, and
    // the server then listens on all addresses).
    let parsed = if text.is_empty() {
        Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    } else {
        text.parse::<IpAddr>()
    };
    match parsed {
        Ok(ip) if ip.is_unspecified() => {
            let local = match ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            Ok((local, format!("{basis}, all addresses, so {local}")))
        }
        Ok(ip) => Ok((ip, basis)),
        Err(_) => Err(format!("{basis}: not an IP address this agent can probe")),
    }
}

// ---- the edge ---------------------------------------------------------------------------

/// The agent's and the kubelet's network namespaces, read from `/proc/self/ns/net` (the
/// agent's own /proc) and `<proc_dir>/<pid>/ns/net`. `Different` carries no `why` yet: it
/// says only that they differ.
pub fn netns(proc_dir: &Path, pid: i32) -> Netns {
    let agent = std::fs::read_link("/proc/self/ns/net");
    let kubelet = std::fs::read_link(ns_path(proc_dir, pid));
    match (agent, kubelet) {
        (Ok(a), Ok(k)) if a == k => Netns::Same,
        (Ok(a), Ok(k)) => Netns::Different {
            agent: a.to_string_lossy().into_owned(),
            kubelet: k.to_string_lossy().into_owned(),
            why: String::new(),
        },
        (Err(e), _) => Netns::Unknown(format!("/proc/self/ns/net: {e}")),
        (_, Err(e)) => Netns::Unknown(format!("{}: {e}", ns_path(proc_dir, pid).display())),
    }
}

fn ns_path(proc_dir: &Path, pid: i32) -> std::path::PathBuf {
    proc_dir.join(pid.to_string()).join("ns/net")
}

/// Probes the kubelet of process `pid`, from inside its network namespace when that is
/// not the agent's: a thread of its own enters it (`setns` on `<proc_dir>/<pid>/ns/net`,
/// which needs CAP_SYS_ADMIN), sends the probes and ends, so nothing else in the agent
/// changes namespace. When it cannot enter, the probes go from here and skip loopback,
/// saying why.
pub fn probe(eff: &Effective, proc_dir: &Path, pid: i32) -> Probe {
    match netns(proc_dir, pid) {
        Netns::Different { agent, kubelet, .. } => {
            match probe_inside(eff, &ns_path(proc_dir, pid), &agent, &kubelet) {
                Ok(probe) => probe,
                Err(why) => send(
                    eff,
                    Netns::Different {
                        agent,
                        kubelet,
                        why,
                    },
                ),
            }
        }
        other => send(eff, other),
    }
}

/// Plans and sends every probe from the calling thread's network namespace.
pub fn send(eff: &Effective, netns: Netns) -> Probe {
    let answers = plan(eff, &netns).into_iter().map(run).collect();
    Probe { netns, answers }
}

/// Sends every probe from a thread that entered the network namespace at `path`.
fn probe_inside(eff: &Effective, path: &Path, agent: &str, kubelet: &str) -> Result<Probe, String> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    use std::os::fd::AsFd;
    let ns = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
                    |e| {
                        format!(
                            "setns {}: {}",
                            path.display(),
                            std::io::Error::from_raw_os_error(e.raw_os_error())
                        )
                    },
                )?;
                Ok(send(
                    eff,
                    Netns::Entered {
                        agent: agent.to_string(),
                        kubelet: kubelet.to_string(),
                    },
                ))
            })
            .join()
            .unwrap_or_else(|_| Err("the probing thread panicked".to_string()))
    })
}

/// Sends one planned probe.
pub fn run(plan: Plan) -> Answer {
    match plan {
        Plan::Skip { endpoint, reason } => Answer {
            endpoint,
            target: None,
            outcome: Outcome::Skipped(reason),
        },
        Plan::Off { endpoint, reason } => Answer {
            endpoint,
            target: None,
            outcome: Outcome::Off(reason),
        },
        Plan::Probe(target) => {
            let outcome = request(&target);
            Answer {
                endpoint: target.endpoint,
                target: Some(target),
                outcome,
            }
        }
    }
}

/// `GET target`, anonymously, within [`TIMEOUT`].
pub fn request(target: &Target) -> Outcome {
    let deadline = Instant::now() + TIMEOUT;
    let addr = SocketAddr::new(target.address, target.port);
    let stream = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(s) => s,
        Err(e) => return io_outcome(&e),
    };
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: nodeproof-agent/{} (probe)\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        env!("CARGO_PKG_VERSION")
    );
    match target.scheme {
        Scheme::Http => exchange(stream, head.as_bytes(), deadline),
        Scheme::Https => {
            let conn = match tls_config().and_then(|config| {
                rustls::ClientConnection::new(config, ServerName::IpAddress(target.address.into()))
            }) {
                Ok(c) => c,
                Err(e) => return Outcome::Tls(e.to_string()),
            };
            let tls = TlsStream {
                tls: rustls::StreamOwned::new(conn, stream),
            };
            exchange(tls, head.as_bytes(), deadline)
        }
    }
}

/// A TLS stream whose socket timeouts can be set.
struct TlsStream {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

trait Timed: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl Timed for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tls.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush()
    }
}

impl Timed for TlsStream {
    fn socket(&self) -> &TcpStream {
        self.tls.get_ref()
    }
}

/// Writes the request and reads up to the end of the status line, each socket operation
/// bounded by what is left of the deadline.
fn exchange<S: Timed>(mut stream: S, request: &[u8], deadline: Instant) -> Outcome {
    let set_timeouts = |s: &S| -> Result<(), Outcome> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Outcome::Timeout);
        }
        s.socket()
            .set_read_timeout(Some(left))
            .and_then(|()| s.socket().set_write_timeout(Some(left)))
            .map_err(|e| io_outcome(&e))
    };
    if let Err(o) = set_timeouts(&stream) {
        return o;
    }
    if let Err(e) = stream.write_all(request).and_then(|()| stream.flush()) {
        return io_outcome(&e);
    }
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            return status_line(&head[..end]);
        }
        if head.len() >= MAX_HEAD {
            return Outcome::NotHttp(format!("no status line in the first {MAX_HEAD} bytes"));
        }
        if let Err(o) = set_timeouts(&stream) {
            return o;
        }
        match stream.read(&mut buf) {
            Ok(0) if head.is_empty() => {
                return Outcome::NotHttp("the connection was closed without an answer".into())
            }
            Ok(0) => return status_line(&head),
            Ok(n) => head.extend_from_slice(&buf[..n.min(MAX_HEAD - head.len())]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return io_outcome(&e),
        }
    }
}

/// `HTTP/1.1 401 Unauthorized` -> 401.
fn status_line(line: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if version.starts_with("HTTP/1.") && code.len() == 3 {
        if let Ok(code) = code.parse::<u16>() {
            if (100..=599).contains(&code) {
                return Outcome::Status(code);
            }
        }
    }
    let shown: String = text
        .chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    Outcome::NotHttp(format!("the answer began {shown:?}"))
}

fn io_outcome(e: &io::Error) -> Outcome {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Outcome::Tls(tls.to_string());
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::Timeout,
        _ => Outcome::Failed(e.to_string()),
    }
}

/// rustls with ring (it needs only a C compiler, so the static musl build stays simple),
/// no client certificate, and a verifier that accepts any server certificate but still
/// checks the handshake's signatures.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate chain: the probe asks whether the kubelet answers anonymous
/// requests and sends nothing secret, so who answers does not matter. Handshake
/// signatures are still verified, so the TLS session itself is sound.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::Source;
    use std::net::TcpListener;

    fn put(eff: &mut Effective, path: &str, value: Value) {
        eff.settings.insert(
            path.to_string(),
            Setting {
                value,
                source: Source::Default,
                origin: "kubelet v1beta1 default".into(),
            },
        );
    }

    fn defaults() -> Effective {
        let mut eff = Effective::default();
        put(&mut eff, "address", Value::from("0.0.0.0"));
        put(&mut eff, "port", Value::from(10250));
        put(&mut eff, "readOnlyPort", Value::from(0));
        put(&mut eff, "healthzBindAddress", Value::from("127.0.0.1"));
        put(&mut eff, "healthzPort", Value::from(10248));
        eff
    }

    fn target(p: &Plan) -> &Target {
        match p {
            Plan::Probe(t) => t,
            other => panic!("not probed: {other:?}"),
        }
    }

    #[test]
    fn defaults_probe_the_seeds_localhost_urls() {
        let plans = plan(&defaults(), &Netns::Same);
        let urls: Vec<String> = plans.iter().map(|p| target(p).url()).collect();
        assert_eq!(
            urls,
            [
                "https://127.0.0.1:10250/pods",
                "http://127.0.0.1:10255/pods",
                "http://127.0.0.1:10248/healthz",
            ]
        );
        assert!(plans.iter().all(|p| !target(p).assumed));
        let ro = target(&plans[1]);
        assert!(ro.basis.contains("readOnlyPort 0"), "{}", ro.basis);
        assert!(ro.basis.contains("nothing should answer"), "{}", ro.basis);
    }

    #[test]
    fn a_specific_address_is_probed_there_and_ipv6_wildcard_is_its_loopback() {
        let mut eff = defaults();
        put(&mut eff, "address", Value::from("10.1.2.3"));
        put(&mut eff, "readOnlyPort", Value::from(10266));
        let plans = plan(&eff, &Netns::Same);
        assert_eq!(target(&plans[0]).url(), "https://10.1.2.3:10250/pods");
        assert_eq!(target(&plans[1]).url(), "http://10.1.2.3:10266/pods");
        // healthz has an address of its own.
        assert_eq!(target(&plans[2]).url(), "http://127.0.0.1:10248/healthz");
        put(&mut eff, "address", Value::from("::"));
        assert_eq!(
            target(&plan(&eff, &Netns::Same)[0]).url(),
            "https://[::1]:10250/pods"
        );
    }

    #[test]
    fn healthz_port_0_is_off_and_bad_values_are_skipped_with_a_reason() {
        let mut eff = defaults();
        put(&mut eff, "healthzPort", Value::from(0));
        put(&mut eff, "port", Value::from(70000));
        put(&mut eff, "address", Value::from("kubelet.local"));
        let plans = plan(&eff, &Netns::Same);
        assert!(
            matches!(&plans[2], Plan::Off { reason, .. } if reason.contains("healthzPort 0")),
            "{:?}",
            plans[2]
        );
        assert!(
            matches!(&plans[0], Plan::Skip { reason, .. } if reason.contains("not a port")),
            "{:?}",
            plans[0]
        );
        assert!(
            matches!(&plans[1], Plan::Skip { reason, .. } if reason.contains("not an IP")),
            "{:?}",
            plans[1]
        );
    }

    #[test]
    fn unreadable_settings_probe_the_defaults_marked_assumed() {
        let eff = Effective {
            config_error: Some("broken YAML".into()),
            ..Effective::default()
        };
        let plans = plan(&eff, &Netns::Same);
        let t = target(&plans[0]);
        assert_eq!(t.url(), "https://127.0.0.1:10250/pods");
        assert!(t.assumed);
        assert!(t.basis.contains("unknown"), "{}", t.basis);
        assert_eq!(target(&plans[1]).port, 10255);
    }

    #[test]
    fn another_network_namespace_skips_loopback_but_not_a_routable_address() {
        let other = Netns::Different {
            agent: "net:[1]".into(),
            kubelet: "net:[2]".into(),
            why: "setns: Operation not permitted".into(),
        };
        let plans = plan(&defaults(), &other);
        for p in &plans {
            match p {
                Plan::Skip { reason, .. } => {
                    assert!(reason.contains("network namespace net:[2]"), "{reason}");
                    assert!(reason.contains("hostNetwork"), "{reason}");
                }
                other => panic!("probed across namespaces: {other:?}"),
            }
        }
        let mut eff = defaults();
        put(&mut eff, "address", Value::from("10.9.9.2"));
        let plans = plan(&eff, &other);
        assert_eq!(target(&plans[0]).url(), "https://10.9.9.2:10250/pods");
        assert!(
            matches!(plans[2], Plan::Skip { .. }),
            "healthz stays on loopback"
        );
    }

    fn local_target(port: u16, scheme: Scheme) -> Target {
        Target {
            endpoint: Endpoint::ReadOnly,
            scheme,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            path: "/pods",
            basis: String::new(),
            assumed: false,
        }
    }

    /// Serves one connection with `reply` (or holds it open when `None`) and returns what
    /// the client sent.
    fn serve_once(reply: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            // Until the end of an HTTP head, or the first bytes of a TLS ClientHello.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.first() != Some(&0x16) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            match reply {
                Some(bytes) => {
                    let _ = conn.write_all(bytes);
                }
                // Wait for the client to give up (it closes the connection).
                None => {
                    let _ = conn.read(&mut buf);
                }
            }
            head
        });
        (port, handle)
    }

    #[test]
    fn a_plain_get_without_credentials_reads_only_the_status() {
        let (port, server) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
        let outcome = request(&local_target(port, Scheme::Http));
        assert_eq!(outcome, Outcome::Status(200));
        let head = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(head.starts_with("GET /pods HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        for header in ["authorization:", "cookie:", "proxy-authorization:"] {
            assert!(!lower.contains(header), "{head}");
        }
    }

    #[test]
    fn refused_timeout_and_garbage_are_told_apart() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        assert_eq!(request(&local_target(port, Scheme::Http)), Outcome::Refused);

        let (port, server) = serve_once(None);
        let started = Instant::now();
        assert_eq!(request(&local_target(port, Scheme::Http)), Outcome::Timeout);
        let took = started.elapsed();
        assert!(took >= TIMEOUT && took < TIMEOUT * 3, "{took:?}");
        server.join().unwrap();

        let (port, server) = serve_once(Some(b"SSH-2.0-OpenSSH_9.2\r\n"));
        assert!(matches!(
            request(&local_target(port, Scheme::Http)),
            Outcome::NotHttp(_)
        ));
        server.join().unwrap();

        // Plain HTTP where TLS is expected: a handshake failure, not a status.
        let (port, server) = serve_once(Some(b"HTTP/1.0 400 Bad Request\r\n\r\n"));
        assert!(matches!(
            request(&local_target(port, Scheme::Https)),
            Outcome::Tls(_)
        ));
        server.join().unwrap();
    }

    #[test]
    fn a_redirect_is_a_status_never_followed() {
        let (port, server) = serve_once(Some(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/run\r\n\r\n",
        ));
        assert_eq!(
            request(&local_target(port, Scheme::Http)),
            Outcome::Status(302)
        );
        server.join().unwrap();
    }

    /// An endless answer without a line break is cut at MAX_HEAD bytes.
    #[test]
    fn an_endless_status_line_is_cut_at_max_head() {
        static ENDLESS: [u8; 64 * 1024] = [b'A'; 64 * 1024];
        let (port, server) = serve_once(Some(&ENDLESS));
        assert!(matches!(
            request(&local_target(port, Scheme::Http)),
            Outcome::NotHttp(m) if m.contains("first 4096 bytes")
        ));
        let _ = server.join();
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 401 Unauthorized"),
            Outcome::Status(401)
        );
        assert_eq!(status_line(b"HTTP/1.0 200"), Outcome::Status(200));
        assert!(matches!(status_line(b"HTTP/2 200 OK"), Outcome::NotHttp(_)));
        assert!(matches!(
            status_line(b"HTTP/1.1 2000 OK"),
            Outcome::NotHttp(_)
        ));
        assert!(matches!(
            status_line(b"HTTP/1.1 099 x"),
            Outcome::NotHttp(_)
        ));
        assert!(matches!(status_line(b"\x1b[2J"), Outcome::NotHttp(m) if !m.contains('\x1b')));
    }
}
