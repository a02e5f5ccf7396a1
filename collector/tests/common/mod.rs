//! Shared by the HTTP tests: the real server started in-process on `127.0.0.1:0` with a
//! shutdown future and a SQLite file in a temporary directory (as atuin's server tests do),
//! a test agent that builds, chains and signs statements with `nodeproof_proto`, and the
//! checks that a refused request stored nothing.

// Each test uses part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use nodeproof_collector::accept::Policy;
use nodeproof_collector::server::quota::Quotas;
use nodeproof_collector::server::ui::UiConfig;
use nodeproof_collector::server::{serve, AdminToken, Limits, ServeConfig, ServeError, TlsFiles};
use nodeproof_collector::store::{self, NodeRecord, Store};
use nodeproof_proto::*;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The seed of the export key the test server signs bundles with.
pub const EXPORT_KEY_SEED: [u8; 32] = [0xe5; 32];

/// The collector, running.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` with TLS).
    pub base: String,
    /// The same store the server writes, to check what was stored.
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Plain HTTP on loopback.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        TestServer::start_in(dir, None).await
    }

    /// With the database (and any TLS files) in `dir`. With TLS, replace `client` with
    /// one that trusts the certificate.
    pub async fn start_in(dir: tempfile::TempDir, tls: Option<TlsFiles>) -> TestServer {
        let store = open_store(&dir);
        TestServer::start_with(dir, tls, store).await
    }

    /// With a given store (e.g. one that fails on demand).
    pub async fn start_with(
        dir: tempfile::TempDir,
        tls: Option<TlsFiles>,
        store: Arc<dyn Store>,
    ) -> TestServer {
        TestServer::start_limited(dir, tls, store, Limits::default()).await
    }

    /// Plain HTTP, a fresh database, and the given quotas.
    pub async fn start_with_quotas(quotas: Quotas) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir);
        TestServer::start_configured(dir, None, store, Limits::default(), quotas).await
    }

    /// With other connection, time and byte bounds (small ones, for the hostile-load tests).
    pub async fn start_limited(
        dir: tempfile::TempDir,
        tls: Option<TlsFiles>,
        store: Arc<dyn Store>,
        limits: Limits,
    ) -> TestServer {
        TestServer::start_configured(dir, tls, store, limits, Quotas::default()).await
    }

    pub async fn start_configured(
        dir: tempfile::TempDir,
        tls: Option<TlsFiles>,
        store: Arc<dyn Store>,
        limits: Limits,
        quotas: Quotas,
    ) -> TestServer {
        TestServer::start_full(dir, tls, store, limits, quotas, UiConfig::default()).await
    }

    /// Plain HTTP, a fresh database, and the given dashboard and metrics settings.
    pub async fn start_with_ui(ui: UiConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir);
        TestServer::start_full(dir, None, store, Limits::default(), Quotas::default(), ui).await
    }

    pub async fn start_full(
        dir: tempfile::TempDir,
        tls: Option<TlsFiles>,
        store: Arc<dyn Store>,
        limits: Limits,
        quotas: Quotas,
        ui: UiConfig,
    ) -> TestServer {
        let client = reqwest::Client::new();
        // Bound before the server starts, so no request can race the start.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let base = if tls.is_some() {
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let (shutdown, stop) = oneshot::channel::<()>();
        let config = ServeConfig {
            store: Arc::clone(&store),
            tls,
            allow_plain_http: false,
            admin_token: Some(AdminToken::new(ADMIN_TOKEN)),
            policy: Policy::default(),
            limits,
            quotas,
            ui,
            export_key: Some(Arc::new(nodeproof_collector::evidence::ExportKey {
                key: SigningKey::from_bytes(&EXPORT_KEY_SEED),
            })),
        };
        let task = tokio::spawn(serve(config, listener, async {
            let _ = stop.await;
        }));
        TestServer {
            addr,
            base,
            store,
            client,
            shutdown: Some(shutdown),
            task: Some(task),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.trigger_shutdown();
        let task = self.task.take().expect("server task");
        tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task does not panic")
    }

    /// POSTs raw bytes; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        post_to(self.client.clone(), self.url(path), body).await
    }

    /// A POST that owns everything it needs, to run on its own task.
    pub fn post_task(&self, path: &str, body: Vec<u8>) -> tokio::task::JoinHandle<(u16, Value)> {
        tokio::spawn(post_to(self.client.clone(), self.url(path), body))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text:?}"));
        (status, json)
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.get(path, Some(ADMIN_TOKEN)).await
    }

    /// POSTs JSON with `token` as the bearer token (None: no Authorization header).
    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text:?}"));
        (status, json)
    }

    pub fn node(&self, name: &str) -> NodeRecord {
        self.store
            .node(name)
            .expect("store readable")
            .unwrap_or_else(|| panic!("node {name} is enrolled"))
    }

    pub fn history_len(&self, name: &str) -> usize {
        self.store.history(name, 1000).expect("history").len()
    }
}

/// The SQLite store in `dir`.
pub fn open_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("collector.db").display());
    Arc::from(store::open(&url).expect("open the store"))
}

/// POSTs `body` to `url`; returns the status and the JSON answer.
pub async fn post_to(client: reqwest::Client, url: String, body: Vec<u8>) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text:?}"));
    (status, json)
}

/// Waits for every task, in order.
pub async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("the request task does not panic"));
    }
    out
}

/// The state of a node's evidence, to compare before and after a refused request.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    node: NodeRecord,
    history: usize,
    chain_events: usize,
}

impl TestServer {
    pub fn snapshot(&self, name: &str) -> Snapshot {
        Snapshot {
            node: self.node(name),
            history: self.history_len(name),
            chain_events: self.store.chain_events(name).expect("chain events").len(),
        }
    }

    /// A refusal stored nothing: the node's chain did not move, its history did not grow,
    /// the refused envelope is not stored, and no chain event was added unless expected.
    pub fn assert_nothing_stored(&self, before: &Snapshot, refused: &[u8], chain_event: bool) {
        let after = self.snapshot(&before.node.name);
        assert_eq!(after.node, before.node, "the node's chain state moved");
        assert_eq!(after.history, before.history, "the history grew");
        assert!(
            !self
                .store
                .has_digest(&sha256_hex(refused))
                .expect("has_digest"),
            "the refused envelope was stored"
        );
        let added = after.chain_events - before.chain_events;
        assert_eq!(added, usize::from(chain_event), "chain events added");
    }
}

/// RFC 3339 for now plus `offset` seconds.
pub fn time_at(offset: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(offset))
        .replace_nanosecond(0)
        .expect("zero nanoseconds")
        .format(&Rfc3339)
        .expect("formats")
}

/// A node as the agent daemon would run it: its key and where its chain stands.
#[derive(Debug, Clone)]
pub struct TestAgent {
    pub name: String,
    pub key: SigningKey,
    pub sequence: u64,
    pub last: Option<String>,
    /// Digest, sequence and posture of the last full report.
    pub last_full: Option<(String, u64, String)>,
}

impl TestAgent {
    pub fn new(name: &str, seed: u8) -> TestAgent {
        TestAgent {
            name: name.to_string(),
            key: SigningKey::from_bytes(&[seed; 32]),
            sequence: 0,
            last: None,
            last_full: None,
        }
    }

    pub fn key_id(&self) -> String {
        keyid(&self.key.verifying_key())
    }

    pub fn public_pem(&self) -> String {
        verifying_key_to_pem(&self.key.verifying_key()).expect("key encodes")
    }

    /// A signed enrolment request.
    pub fn enrollment(&self, token: Option<&str>, time: &str) -> Vec<u8> {
        let request = EnrollRequest {
            node: self.name.clone(),
            public_key: self.public_pem(),
            token: token.map(str::to_string),
            time: time.to_string(),
        };
        let payload = serde_json::to_vec(&request).expect("serializes");
        sign(ENROLL_PAYLOAD_TYPE, &payload, &self.key).to_json_bytes()
    }

    /// A report with one failing and one passing check, linked at `sequence` after
    /// `previous`.
    pub fn report(&self, sequence: u64, previous: Option<String>, scan_time: &str) -> Report {
        let check = |id: &str, cis: &str, status: Status| CheckResult {
            id: id.into(),
            cis: cis.into(),
            title: id.into(),
            scored: true,
            severity: nodeproof_proto::check_meta(id)
                .map(|m| m.severity)
                .unwrap_or(nodeproof_proto::Severity::Low),
            status,
            expected: "x".into(),
            actual: "y".into(),
            source: None,
            origin: None,
            note: String::new(),
            remediation: Remediation {
                flag: String::new(),
                config: String::new(),
            },
        };
        let checks = vec![
            check("kubelet-anonymous-auth", "4.2.1", Status::Fail),
            check("kubelet-read-only-port", "4.2.4", Status::Pass),
        ];
        let kubelet: KubeletInfo = serde_json::from_value(serde_json::json!({
            "pid": 1234,
            "cmdline": ["/usr/bin/kubelet", "--read-only-port=0"],
            "config_file": null,
            "config_dir": null,
            "exe": "/usr/bin/kubelet",
            "exe_sha256": "ab".repeat(32),
            "exe_error": null,
        }))
        .expect("kubelet info");
        Report {
            schema: REPORT_SCHEMA.into(),
            catalogue: nodeproof_proto::CATALOGUE_VERSION.into(),
            scan_time: scan_time.to_string(),
            agent_version: "0.1.0".into(),
            node: NodeFacts::default(),
            kubelet,
            settings: Default::default(),
            summary: Summary::of(&checks),
            checks,
            warnings: vec![],
            files: vec![],
            link: Some(Link {
                node: self.name.clone(),
                sequence,
                previous,
                interval_secs: 300,
            }),
        }
    }

    pub fn subjects() -> Vec<Subject> {
        vec![Subject::sha256("/usr/bin/kubelet", "ab".repeat(32))]
    }

    pub fn sign(&self, statement: &Statement) -> Vec<u8> {
        sign_statement(statement, &self.key)
            .expect("signs")
            .to_json_bytes()
    }

    /// The next full report in the chain, scanned now.
    pub fn next_full(&self) -> Vec<u8> {
        self.sign(&Statement::new(
            Self::subjects(),
            self.report(self.sequence + 1, self.last.clone(), &time_at(0)),
        ))
    }

    /// The next statement: an unchanged notice of the last full report, `count` in a row,
    /// linked by the chain rule to that report (`previous == since`).
    pub fn next_unchanged(&self, count: u64) -> Vec<u8> {
        let since = self.last_full.clone().expect("a full report was sent").0;
        self.unchanged_at(self.sequence + 1, Some(since), count)
    }

    /// An unchanged notice of the last full report at `sequence`, naming `previous`,
    /// counting `count` scans: any link, right or wrong.
    pub fn unchanged_at(&self, sequence: u64, previous: Option<String>, count: u64) -> Vec<u8> {
        let (since, since_sequence, posture) =
            self.last_full.clone().expect("a full report was sent");
        self.sign(&Statement::unchanged(
            Self::subjects(),
            Unchanged {
                link: Link {
                    node: self.name.clone(),
                    sequence,
                    previous,
                    interval_secs: 300,
                },
                scan_time: time_at(0),
                agent_version: "0.1.0".into(),
                since,
                since_sequence,
                posture,
                count,
                first_unchanged: time_at(0),
                summary: Summary::default(),
            },
        ))
    }

    /// Moves the chain past `envelope`, after the collector accepted it.
    pub fn accepted(&mut self, envelope: &[u8]) {
        let digest = sha256_hex(envelope);
        let verified = verify(envelope, &self.key.verifying_key()).expect("own envelope");
        let link = verified.statement.link().expect("linked").clone();
        if let Some(report) = verified.statement.report() {
            self.last_full = Some((digest.clone(), link.sequence, report.posture_digest()));
        }
        self.sequence = link.sequence;
        self.last = Some(digest);
    }
}

/// Starts a server with one approved node (enrolled with a bootstrap token) that has one
/// accepted full report.
pub async fn server_with_node() -> (TestServer, TestAgent) {
    let server = TestServer::start().await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let first = agent.next_full();
    let (status, body) = server.post("/v1/reports", first.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&first);
    (server, agent)
}

/// Creates a token in the store and enrols `agent` with it.
pub async fn enroll_approved(server: &TestServer, agent: &TestAgent) {
    let token = nodeproof_collector::server::admin::new_token();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    server
        .store
        .create_token(
            &nodeproof_collector::server::admin::token_hash(&token),
            now + 3600,
            None,
            now,
        )
        .expect("token stored");
    let (status, body) = server
        .post("/v1/enroll", agent.enrollment(Some(&token), &time_at(0)))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "approved");
}

/// A store whose commits fail while `fail_commits` is set, to check that nothing is
/// acknowledged that was not committed. Everything else goes to the real store.
pub struct FlakyStore {
    pub inner: Arc<dyn Store>,
    pub fail_commits: std::sync::atomic::AtomicBool,
}

impl Store for FlakyStore {
    fn create_token(&self, h: &str, e: i64, u: Option<u32>, n: i64) -> store::StoreResult<()> {
        self.inner.create_token(h, e, u, n)
    }
    fn redeem_token(&self, h: &str, n: i64) -> store::StoreResult<bool> {
        self.inner.redeem_token(h, n)
    }
    fn enroll(
        &self,
        name: &str,
        key_id: &str,
        pem: &str,
        approved: bool,
        now: i64,
    ) -> store::StoreResult<NodeRecord> {
        self.inner.enroll(name, key_id, pem, approved, now)
    }
    fn node(&self, name: &str) -> store::StoreResult<Option<NodeRecord>> {
        self.inner.node(name)
    }
    fn node_by_key(&self, key_id: &str) -> store::StoreResult<Option<NodeRecord>> {
        self.inner.node_by_key(key_id)
    }
    fn set_status(&self, name: &str, s: store::NodeStatus, now: i64) -> store::StoreResult<()> {
        self.inner.set_status(name, s, now)
    }
    fn rotate_key(
        &self,
        name: &str,
        old: &str,
        new: &str,
        pem: &str,
        now: i64,
    ) -> store::StoreResult<()> {
        self.inner.rotate_key(name, old, new, pem, now)
    }
    fn list_nodes(&self) -> store::StoreResult<Vec<NodeRecord>> {
        self.inner.list_nodes()
    }
    fn commit(&self, batch: &[store::Accepted]) -> store::StoreResult<()> {
        if self.fail_commits.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(store::StoreError::Backend(
                "disk I/O error (injected)".into(),
            ));
        }
        self.inner.commit(batch)
    }
    fn has_digest(&self, digest: &str) -> store::StoreResult<bool> {
        self.inner.has_digest(digest)
    }
    fn record_chain_event(&self, event: &store::ChainEvent) -> store::StoreResult<bool> {
        self.inner.record_chain_event(event)
    }
    fn chain_events(&self, node: &str) -> store::StoreResult<Vec<store::ChainEvent>> {
        self.inner.chain_events(node)
    }
    fn pending_claims(&self) -> store::StoreResult<Vec<store::PendingClaim>> {
        self.inner.pending_claims()
    }
    fn set_claim_source(&self, name: &str, key_id: &str, source: &str) -> store::StoreResult<()> {
        self.inner.set_claim_source(name, key_id, source)
    }
    fn add_claim(
        &self,
        name: &str,
        key_id: &str,
        public_key: &str,
        source: &str,
        now: i64,
    ) -> store::StoreResult<()> {
        self.inner.add_claim(name, key_id, public_key, source, now)
    }
    fn expire_pending(&self, before: i64) -> store::StoreResult<Vec<store::PendingClaim>> {
        self.inner.expire_pending(before)
    }
    fn delete_node(&self, name: &str) -> store::StoreResult<NodeRecord> {
        self.inner.delete_node(name)
    }
    fn approve(
        &self,
        name: &str,
        key_id: Option<&str>,
        now: i64,
    ) -> store::StoreResult<NodeRecord> {
        self.inner.approve(name, key_id, now)
    }
    fn fleet_summary(&self, now: i64) -> store::StoreResult<store::FleetSummary> {
        self.inner.fleet_summary(now)
    }
    fn history(&self, node: &str, limit: u32) -> store::StoreResult<Vec<store::HistoryEntry>> {
        self.inner.history(node, limit)
    }
    fn envelope(&self, digest: &str) -> store::StoreResult<Option<Vec<u8>>> {
        self.inner.envelope(digest)
    }
    fn chain_links(
        &self,
        node: &str,
    ) -> store::StoreResult<Vec<nodeproof_proto::chain::ChainLink>> {
        self.inner.chain_links(node)
    }
    fn failing(&self, cis: &str) -> store::StoreResult<Vec<NodeRecord>> {
        self.inner.failing(cis)
    }
    fn drift(&self, since: i64, limit: Option<u32>) -> store::StoreResult<store::DriftPage> {
        self.inner.drift(since, limit)
    }
    fn size_bytes(&self) -> store::StoreResult<u64> {
        self.inner.size_bytes()
    }
    fn stale_nodes(&self, now: i64) -> store::StoreResult<Vec<String>> {
        self.inner.stale_nodes(now)
    }
    fn failing_checks(&self) -> store::StoreResult<Vec<store::FailingCheck>> {
        self.inner.failing_checks()
    }
    fn add_exception(
        &self,
        new: &store::NewException,
        now: i64,
    ) -> store::StoreResult<store::ExceptionRecord> {
        self.inner.add_exception(new, now)
    }
    fn revoke_exception(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> store::StoreResult<Option<store::ExceptionRecord>> {
        self.inner.revoke_exception(id, by, reason, now)
    }
    fn exceptions(&self) -> store::StoreResult<Vec<store::ExceptionRecord>> {
        self.inner.exceptions()
    }
    fn exception_events(&self) -> store::StoreResult<Vec<store::ExceptionEvent>> {
        self.inner.exception_events()
    }
    fn for_each_statement(
        &self,
        filter: &store::ExportFilter,
        f: &mut dyn FnMut(store::StoredStatement) -> store::StoreResult<()>,
    ) -> store::StoreResult<()> {
        self.inner.for_each_statement(filter, f)
    }
    fn chain_anchor(
        &self,
        node: &str,
        before: i64,
    ) -> store::StoreResult<Option<nodeproof_proto::chain::Anchor>> {
        self.inner.chain_anchor(node, before)
    }
    fn key_history(&self, node: &str) -> store::StoreResult<Vec<store::KeyPeriod>> {
        self.inner.key_history(node)
    }
}
