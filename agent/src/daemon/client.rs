//! The collector's HTTP API, as the agent uses it: the edge where the network lives.
//!
//! What an answer *means* for the spool is decided by [`classify`], a pure function of the
//! status and body, tested without a server; [`Collector`] only moves bytes (HTTPS with
//! rustls, a private CA and a client certificate when asked, no redirects, timeouts, and
//! at most [`MAX_ANSWER`] bytes of any answer).
//!
//! Whatever answers is not trusted to be the collector: a proxy or a captive portal answers
//! 200 with HTML. A report counts as delivered only on the collector's JSON acknowledgement
//! naming that envelope's digest, and every text from an answer is escaped before it is
//! logged ([`super::text::escape`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodeproof_proto::{ApiError, EnrollResponse, Envelope, ReportAccepted};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Certificate, Identity, Url};

use super::chain::ChainPoint;
use super::text::escape;

/// The most the agent reads of any answer. The collector's answers are a few hundred
/// bytes; a peer that sends more (an endless body) is cut off, not buffered.
pub const MAX_ANSWER: usize = 64 * 1024;

/// How to reach the collector over TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM bundle of CA certificates to trust, for a collector with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the built-in web PKI roots.
    pub ca_only: bool,
    /// Client certificate (PEM chain) and its private key (PEM), for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// How long to wait for the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole request, answer included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

/// Why talking to the collector failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--collector \"{url}\" is not usable ({reason}): give it as https://HOST[:PORT]")]
    BadUrl { url: String, reason: String },

    #[error("could not read {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} holds no usable {what} ({reason}); it must be PEM", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "--client-cert and --client-key go together (mutual TLS needs the certificate and its key)"
    )]
    HalfIdentity,

    #[error("--ca-only needs --ca-file: without it no certificate could be trusted")]
    CaOnlyWithoutCa,

    #[error("could not set up the HTTPS client: {0}")]
    Build(String),

    #[error(
        "could not reach the collector at {url}: {detail}; check --collector, the network \
         and the collector's TLS certificate (--ca-file for a private CA)"
    )]
    Transport { url: String, detail: String },

    /// `api`'s texts are escaped ([`escape`]) already.
    #[error("the collector refused the request ({status} {}): {}", .api.error, .api.message)]
    Api { status: u16, api: ApiError },

    #[error(
        "the answer from {url} is larger than {limit} bytes, far more than the collector \
         ever sends; cut off (is --collector the collector, or a proxy in front of it?)"
    )]
    AnswerTooLarge { url: String, limit: usize },

    #[error("unexpected answer from {url}: HTTP {status}: {body}")]
    Unexpected {
        url: String,
        status: u16,
        body: String,
    },
}

/// An HTTP answer, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when the collector sent one.
    pub retry_after: Option<Duration>,
}

/// The collector at one URL.
#[derive(Debug, Clone)]
pub struct Collector {
    http: reqwest::Client,
    base: Url,
}

impl Collector {
    /// A client for the collector at `url` (`https://HOST[:PORT][/PREFIX]`; `http://` works
    /// too, for tests and for a TLS-terminating proxy on the same host).
    pub fn new(url: &str, tls: &TlsOptions, timeouts: Timeouts) -> Result<Collector, ClientError> {
        let base = parse_base_url(url)?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nodeproof-agent/", env!("CARGO_PKG_VERSION")));
        if tls.ca_only && tls.ca_file.is_none() {
            return Err(ClientError::CaOnlyWithoutCa);
        }
        if let Some(path) = &tls.ca_file {
            let pem = read(path, "the CA bundle")?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::BadPem {
                what: "CA certificate",
                path: path.clone(),
                reason: describe(&e),
            })?;
            if certs.is_empty() {
                return Err(ClientError::BadPem {
                    what: "CA certificate",
                    path: path.clone(),
                    reason: "no CERTIFICATE block".into(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
            if tls.ca_only {
                builder = builder.tls_built_in_root_certs(false);
            }
        }
        match (&tls.client_cert, &tls.client_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let mut pem = read(key, "the client key")?;
                pem.push(b'\n');
                pem.extend(read(cert, "the client certificate")?);
                let identity = Identity::from_pem(&pem).map_err(|e| ClientError::BadPem {
                    what: "client certificate and key",
                    path: cert.clone(),
                    reason: describe(&e),
                })?;
                builder = builder.identity(identity);
            }
            _ => return Err(ClientError::HalfIdentity),
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(describe(&e)))?;
        Ok(Collector { http, base })
    }

    /// The collector's base URL.
    pub fn url(&self) -> &Url {
        &self.base
    }

    /// `POST {base}/{path}` with a JSON body; any HTTP answer is `Ok`, only a failure to get
    /// one (connect, TLS, timeout, reset) is `Err`.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        let url = self.endpoint(path)?;
        // Escaped: a transport error can quote what the peer sent (a malformed header).
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            detail: escape(&describe(&e)),
        };
        let mut resp = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let too_large = || ClientError::AnswerTooLarge {
            url: url.to_string(),
            limit: MAX_ANSWER,
        };
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        // Chunk by chunk, so an endless body costs at most MAX_ANSWER bytes; dropping the
        // response closes the connection.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Sends one report envelope (`POST /v1/reports`) and says what the answer means.
    pub async fn send_report(&self, envelope: Vec<u8>) -> Delivery {
        let digest = nodeproof_proto::sha256_hex(&envelope);
        match self.post("v1/reports", envelope).await {
            Ok(answer) => classify(&answer, &digest),
            Err(e) => Delivery::Retry {
                reason: e.to_string(),
                after: None,
            },
        }
    }

    /// `POST /v1/enroll` with a signed enrolment envelope.
    pub async fn enroll(&self, envelope: &Envelope) -> Result<EnrollResponse, ClientError> {
        let answer = self.post("v1/enroll", envelope.to_json_bytes()).await?;
        self.expect_json(answer, "v1/enroll")
    }

    /// `POST /v1/rotate` with a signed and co-signed rotation envelope. The answer names
    /// the node and the key it now has; the caller checks that it is the new key (an empty
    /// or foreign 2xx proves nothing).
    pub async fn rotate(&self, envelope: &Envelope) -> Result<EnrollResponse, ClientError> {
        let answer = self.post("v1/rotate", envelope.to_json_bytes()).await?;
        self.expect_json(answer, "v1/rotate")
    }

    fn expect_json<T: serde::de::DeserializeOwned>(
        &self,
        answer: Answer,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = self
            .endpoint(path)
            .map_or_else(|_| path.to_string(), |u| u.to_string());
        if (200..300).contains(&answer.status) {
            return serde_json::from_slice(&answer.body).map_err(|e| ClientError::Unexpected {
                url,
                status: answer.status,
                body: format!("{} ({e})", snippet(&answer.body)),
            });
        }
        match serde_json::from_slice::<ApiError>(&answer.body) {
            Ok(api) => Err(ClientError::Api {
                status: answer.status,
                api: escaped(api),
            }),
            Err(_) => Err(ClientError::Unexpected {
                url,
                status: answer.status,
                body: snippet(&answer.body),
            }),
        }
    }

    fn endpoint(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::BadUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })
    }
}

/// The collector URL as a base that relative endpoints join onto (so a path prefix is
/// kept): `https://c.example/np` becomes `https://c.example/np/`.
pub fn parse_base_url(url: &str) -> Result<Url, ClientError> {
    let bad = |reason: String| ClientError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let mut parsed = Url::parse(url.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad(format!("scheme \"{}\" is not https", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a query or fragment has no place in it".into()));
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

/// Whether `url`'s host is this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`):
/// nothing sent there crosses a network.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientError> {
    fs::read(path).map_err(|source| ClientError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// An error with its causes, on one line (reqwest's own message names only the URL).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// At most 200 characters of a body, on one line, escaped, for a log or an error.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if one_line.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        escape(one_line.trim())
    }
}

/// The collector's error with its texts escaped, for logs and messages.
fn escaped(api: ApiError) -> ApiError {
    ApiError {
        error: escape(&api.error),
        message: escape(&api.message),
        last_sequence: api.last_sequence,
        last_digest: api.last_digest,
    }
}

/// What the collector's answer to a report means for the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored (201), or already stored (200, `duplicate`), as the collector's JSON
    /// acknowledgement naming this envelope's digest says: delete it from the spool.
    Delivered {
        duplicate: bool,
        accepted: ReportAccepted,
    },
    /// Try again later: no answer, a timeout, 5xx, 408, 429, and a 2xx that is not the
    /// collector's acknowledgement of this very envelope (a proxy's page, an empty body,
    /// another digest): delivery is proven, not assumed.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A chain error (`replay`, `chain_fork`, `chain_gap`): the node's chain at the
    /// collector ends at `point`; re-chain what is spooled after it.
    Chain {
        code: String,
        message: String,
        point: ChainPoint,
    },
    /// The collector does not have the full report this notice rests on (`unknown_base`):
    /// set aside the notices of that run, send the next scan in full.
    UnknownBase { status: u16, message: String },
    /// Refused for something in the statement itself: set it aside in `rejected/`.
    Reject {
        status: u16,
        code: String,
        message: String,
    },
    /// Refused for something about the node or the setup, not the statement (key not
    /// enrolled, node pending or revoked, wrong URL): keep everything, wait, retry later.
    Blocked {
        status: u16,
        code: String,
        message: String,
        hint: String,
    },
}

/// Error codes that speak about the node or the agent's setup, not one statement: every
/// statement would be refused alike until someone acts, so none is set aside. (`bad_link`:
/// our statements always carry a link, so it means the node name is not the one the key
/// was enrolled under; setting statements aside would throw away the whole spool.)
const NODE_CODES: &[&str] = &["unknown_key", "node_pending", "node_revoked", "bad_link"];
/// Error codes after which the agent re-chains after the collector's last statement.
const CHAIN_CODES: &[&str] = &["replay", "chain_fork", "chain_gap"];

/// What an answer to `POST /v1/reports` of the envelope whose digest ([`sha256_hex`] of
/// its bytes) is `digest` means. Pure.
///
/// [`sha256_hex`]: nodeproof_proto::sha256_hex
pub fn classify(answer: &Answer, digest: &str) -> Delivery {
    let status = answer.status;
    let api = serde_json::from_slice::<ApiError>(&answer.body)
        .ok()
        .map(escaped);
    match status {
        200..=299 => match serde_json::from_slice::<ReportAccepted>(&answer.body) {
            Ok(accepted) if accepted.digest == digest => Delivery::Delivered {
                duplicate: accepted.duplicate,
                accepted,
            },
            Ok(other) => Delivery::Retry {
                reason: format!(
                    "HTTP {status} acknowledges digest {}, not this statement's {digest}: not \
                     counted as delivered, the statement stays spooled",
                    escape(&other.digest)
                ),
                after: answer.retry_after,
            },
            Err(_) => Delivery::Retry {
                reason: format!(
                    "HTTP {status} without the collector's acknowledgement ({}): a proxy or \
                     captive portal in the way? not counted as delivered, the statement stays \
                     spooled; check --collector",
                    snippet(&answer.body)
                ),
                after: answer.retry_after,
            },
        },
        408 | 425 | 429 | 500..=599 => Delivery::Retry {
            reason: match &api {
                Some(a) => format!("HTTP {status} {}: {}", a.error, a.message),
                None => format!("HTTP {status}: {}", snippet(&answer.body)),
            },
            after: answer.retry_after,
        },
        300..=399 => Delivery::Blocked {
            status,
            code: "redirect".into(),
            message: format!("HTTP {status}: the collector URL redirects elsewhere"),
            hint: "give --collector the collector's own URL (the agent does not follow \
                   redirects with reports)"
                .into(),
        },
        _ => match api {
            Some(a) if CHAIN_CODES.contains(&a.error.as_str()) => {
                match chain_point(a.last_sequence, a.last_digest.clone()) {
                    Some(point) => Delivery::Chain {
                        code: a.error,
                        message: a.message,
                        point,
                    },
                    None => Delivery::Blocked {
                        status,
                        code: a.error,
                        message: a.message,
                        hint: "the collector did not say where the node's chain ends \
                               (last_sequence/last_digest), so the agent cannot re-chain; \
                               check the collector's version"
                            .into(),
                    },
                }
            }
            Some(a) if a.error == "unknown_base" => Delivery::UnknownBase {
                status,
                message: a.message,
            },
            Some(a) if NODE_CODES.contains(&a.error.as_str()) => Delivery::Blocked {
                status,
                hint: node_hint(&a.error),
                code: a.error,
                message: a.message,
            },
            Some(a) if (400..500).contains(&status) => Delivery::Reject {
                status,
                code: a.error,
                message: a.message,
            },
            // Whoever answered, these say the request itself is bad; retrying the same
            // bytes cannot help, and holding it would block every statement behind it.
            _ if matches!(status, 400 | 413 | 422) => Delivery::Reject {
                status,
                code: match status {
                    413 => "too_large",
                    422 => "unprocessable",
                    _ => "malformed",
                }
                .into(),
                message: snippet(&answer.body),
            },
            _ => Delivery::Blocked {
                status,
                code: format!("http_{status}"),
                message: snippet(&answer.body),
                hint: "this is not the collector's answer (no JSON error body): check \
                       --collector (the URL and any proxy in front of the collector)"
                    .into(),
            },
        },
    }
}

fn chain_point(last_sequence: Option<u64>, last_digest: Option<String>) -> Option<ChainPoint> {
    match (last_sequence?, last_digest) {
        (0, _) => Some(ChainPoint::GENESIS),
        (sequence, Some(digest)) if nodeproof_proto::statement::is_sha256_hex(&digest) => {
            Some(ChainPoint {
                sequence,
                digest: Some(digest),
            })
        }
        _ => None,
    }
}

fn node_hint(code: &str) -> String {
    match code {
        "unknown_key" => "the collector does not know this agent's key: enroll it with \
                          `nodeproof-agent enroll --collector URL --key FILE --token TOKEN`; if \
                          its enrolment is a second claim on a pending name, an operator must \
                          approve it (`nodeproof-collector nodes approve NAME --key-id KEYID`); \
                          after `rotate-key`, restart the daemon with the new --key"
            .into(),
        "node_pending" => "the node is enrolled but waits for approval: run \
                           `nodeproof-collector nodes approve NAME` on the collector"
            .into(),
        "node_revoked" => "the node was revoked on the collector; reports stay spooled \
                           until an operator re-admits it"
            .into(),
        "bad_link" => "the node name in the reports is not the name this key was enrolled \
                       under: run with --node-name set to the enrolled name (`nodes list` on \
                       the collector shows it)"
            .into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            retry_after: None,
        }
    }

    /// The digest the tests' envelope has.
    const D: &str = "d";

    fn classify_(a: &Answer) -> Delivery {
        classify(a, D)
    }

    fn api(code: &str) -> String {
        format!(r#"{{"error":"{code}","message":"because"}}"#)
    }

    #[test]
    fn created_and_duplicate_are_delivered() {
        let body = r#"{"node":"n","sequence":3,"digest":"d","duplicate":false}"#;
        assert!(matches!(
            classify_(&answer(201, body)),
            Delivery::Delivered {
                duplicate: false,
                ..
            }
        ));
        let body = r#"{"node":"n","sequence":3,"digest":"d","duplicate":true}"#;
        assert!(matches!(
            classify_(&answer(200, body)),
            Delivery::Delivered {
                duplicate: true,
                ..
            }
        ));
    }

    #[test]
    fn two_hundreds_without_an_ack_are_retried() {
        for (status, body) in [
            (
                200,
                "<html><body>Please log in to the hotel wifi</body></html>",
            ),
            (200, ""),
            (201, "ok"),
            (204, ""),
            (200, r#"{"node":"n","sequence":3,"duplicate":true}"#),
        ] {
            assert!(
                matches!(classify_(&answer(status, body)), Delivery::Retry { .. }),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn an_ack_for_another_digest_is_retried() {
        let body = r#"{"node":"n","sequence":3,"digest":"e","duplicate":false}"#;
        match classify_(&answer(201, body)) {
            Delivery::Retry { reason, .. } => assert!(reason.contains("not this"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collector_messages_are_escaped() {
        let body = r#"{"error":"too_old","message":"no\nINFO delivered sequence=9\u001b[2J"}"#;
        match classify_(&answer(422, body)) {
            Delivery::Reject { message, .. } => {
                assert_eq!(message, "no\\nINFO delivered sequence=9\\u{1b}[2J");
            }
            other => panic!("{other:?}"),
        }
        match classify_(&answer(502, "bad\u{202e}gateway\r\nX")) {
            Delivery::Retry { reason, .. } => {
                assert!(!reason.contains(['\n', '\r', '\u{202e}']), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_errors_and_throttling_are_retried() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(
                matches!(classify_(&answer(status, "")), Delivery::Retry { .. }),
                "{status}"
            );
        }
        let mut a = answer(503, &api("overloaded"));
        a.retry_after = Some(Duration::from_secs(7));
        match classify_(&a) {
            Delivery::Retry { reason, after } => {
                assert!(reason.contains("overloaded"));
                assert_eq!(after, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chain_errors_carry_the_collectors_last_point() {
        let d = "a".repeat(64);
        for code in ["replay", "chain_fork", "chain_gap"] {
            let body = format!(
                r#"{{"error":"{code}","message":"m","last_sequence":12,"last_digest":"{d}"}}"#
            );
            assert_eq!(
                classify_(&answer(409, &body)),
                Delivery::Chain {
                    code: code.into(),
                    message: "m".into(),
                    point: ChainPoint {
                        sequence: 12,
                        digest: Some(d.clone())
                    }
                }
            );
        }
        // A node with nothing stored yet: the chain starts over.
        let body = r#"{"error":"chain_gap","message":"m","last_sequence":0}"#;
        assert!(matches!(
            classify_(&answer(409, body)),
            Delivery::Chain { point, .. } if point == ChainPoint::GENESIS
        ));
    }

    #[test]
    fn a_chain_error_without_a_point_blocks_instead_of_guessing() {
        let body = r#"{"error":"chain_fork","message":"m"}"#;
        assert!(matches!(
            classify_(&answer(409, body)),
            Delivery::Blocked { .. }
        ));
        let body =
            r#"{"error":"chain_fork","message":"m","last_sequence":4,"last_digest":"nothex"}"#;
        assert!(matches!(
            classify_(&answer(409, body)),
            Delivery::Blocked { .. }
        ));
    }

    #[test]
    fn unknown_base_is_its_own_case() {
        assert!(matches!(
            classify_(&answer(409, &api("unknown_base"))),
            Delivery::UnknownBase { status: 409, .. }
        ));
    }

    #[test]
    fn statement_errors_are_set_aside() {
        for (status, code) in [
            (400, "malformed"),
            (413, "too_large"),
            (422, "wrong_payload_type"),
            (401, "bad_signature"),
            (422, "bad_statement"),
            (422, "clock_skew"),
            (422, "too_old"),
            (418, "something_new"),
        ] {
            match classify_(&answer(status, &api(code))) {
                Delivery::Reject {
                    status: s,
                    code: c,
                    message,
                } => {
                    assert_eq!((s, c.as_str(), message.as_str()), (status, code, "because"));
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
        // A proxy's 413 page: still too large, whoever says so.
        assert!(matches!(
            classify_(&answer(413, "<html>too big</html>")),
            Delivery::Reject { status: 413, .. }
        ));
    }

    #[test]
    fn node_errors_block_and_keep_the_spool() {
        for (status, code) in [
            (401, "unknown_key"),
            (403, "node_pending"),
            (403, "node_revoked"),
            (422, "bad_link"),
        ] {
            match classify_(&answer(status, &api(code))) {
                Delivery::Blocked { code: c, hint, .. } => {
                    assert_eq!(c, code);
                    assert!(!hint.is_empty());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn answers_that_are_not_the_collectors_block() {
        for status in [401, 403, 404, 405] {
            assert!(
                matches!(
                    classify_(&answer(status, "<html>nope</html>")),
                    Delivery::Blocked { .. }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            classify_(&answer(308, "")),
            Delivery::Blocked { .. }
        ));
    }

    #[test]
    fn base_urls_keep_their_prefix() {
        let u = parse_base_url("https://c.example:8443").unwrap();
        assert_eq!(
            u.join("v1/reports").unwrap().as_str(),
            "https://c.example:8443/v1/reports"
        );
        let u = parse_base_url("https://c.example/np").unwrap();
        assert_eq!(
            u.join("v1/enroll").unwrap().as_str(),
            "https://c.example/np/v1/enroll"
        );
        let u = parse_base_url("http://127.0.0.1:3000/").unwrap();
        assert_eq!(
            u.join("v1/rotate").unwrap().as_str(),
            "http://127.0.0.1:3000/v1/rotate"
        );
    }

    #[test]
    fn loopback_is_only_this_machine() {
        for (url, local) in [
            ("http://127.0.0.1:3000", true),
            ("http://127.8.9.10", true),
            ("http://[::1]:80", true),
            ("http://LocalHost:8080", true),
            ("http://0.0.0.0:80", false),
            ("http://10.0.0.1", false),
            ("http://collector.example", false),
            ("http://localhost.example.com", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(url).unwrap()), local, "{url}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in [
            "c.example",
            "ftp://c.example",
            "https://",
            "https://c/?x=1",
            "",
        ] {
            assert!(
                matches!(parse_base_url(bad), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn half_an_identity_is_an_error() {
        let tls = TlsOptions {
            client_cert: Some("/x.pem".into()),
            ..TlsOptions::default()
        };
        assert!(matches!(
            Collector::new("https://c.example", &tls, Timeouts::default()),
            Err(ClientError::HalfIdentity)
        ));
        let tls = TlsOptions {
            ca_only: true,
            ..TlsOptions::default()
        };
        assert!(matches!(
            Collector::new("https://c.example", &tls, Timeouts::default()),
            Err(ClientError::CaOnlyWithoutCa)
        ));
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let tls = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = Collector::new("https://c.example", &tls, Timeouts::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"a\nb"), "a b");
        assert_eq!(snippet("x".repeat(500).as_bytes()).len(), 200);
    }
}
