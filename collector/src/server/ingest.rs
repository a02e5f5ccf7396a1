//! `POST /v1/reports`: the checks that need no chain state run in the request handlers, in
//! parallel (size, JSON, payload type, key lookup, node status, signature); the chain
//! decision and the commit run in ONE writer task, because two reports of the same node
//! decided at once could both extend the same link.
//!
//! The writer takes whatever is waiting on its channel, decides each statement against the
//! node's chain state (kept in memory, loaded from the store on first use, moved forward as
//! statements are accepted so later ones in the same batch chain to them), commits all the
//! accepted ones in one `Store::commit` (group commit: one durable write shared by many
//! reports) and only then answers each request. Nothing is acknowledged that was not
//! committed: when the commit fails, every answer that depended on it becomes a 500 and the
//! in-memory state of those nodes is dropped so it is reloaded from the store.
//!
//! The in-memory chain state assumes this process is the only writer of the database (one
//! `serve` per database); approvals, revocations and rotations do not touch chain state, so
//! the CLI may change those concurrently.
//!
//! Where the time goes, and what keeps it down: per report the collector must verify the
//! signature and parse the statement (as any verifier does), hash the envelope (its digest)
//! and the posture (SHA-256, with aws-lc's assembly), and store it. So the handler does no
//! more than that: the statement is reduced to its [`Claim`] (posture digest and check
//! states computed there, in parallel, not in the writer), a node's key is remembered
//! (see [`KeyCache`]) instead of read from the database per report, and a small envelope
//! with a remembered key is checked on the async worker rather than handed to a blocking
//! thread and back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ed25519_dalek::VerifyingKey;
use nodeproof_proto::{
    verify_envelope, verifying_key_from_pem, Envelope, ReportAccepted, VerifyError, PAYLOAD_TYPE,
};
use tokio::sync::{mpsc, oneshot};

use super::body::{read_limited, MAX_BODY};
use super::error::HttpError;
use super::quota::RateLimiter;
use super::stats::Stats;
use super::{now_unix, AppState, Peer};
use crate::accept::{
    advance, decide_claim, link_needs_stored_check, Claim, Outcome, Policy, Rejection,
};
use crate::store::{Accepted, ChainEvent, NodeKey, NodeRecord, NodeStatus, Store, StoreError};
use crate::text::escape;

/// At most this many signatures are looked up by keyid: DSSE allows several signers, but an
/// envelope with hundreds would only make the collector query its key table hundreds of times.
const MAX_SIGNATURES: usize = 8;
/// At most this many statements go into one commit.
const MAX_BATCH: usize = 512;
/// Envelopes up to this size whose key is in the [`KeyCache`] are checked on the async
/// worker that read them (a report is typically 10 to 30 KiB: a few hundred microseconds
/// of CPU, and no I/O); larger ones, and every check that reads the store, on a blocking
/// thread. Two thread hand-offs per report cost more than the wait they would spare.
const INLINE_CHECK: usize = 64 * 1024;
/// Keys kept in the [`KeyCache`]; past this it starts over.
const MAX_CACHED_KEYS: usize = 1 << 17;

/// A statement whose signature checked out, on its way to the writer.
#[derive(Debug)]
pub struct Job {
    node: String,
    key_id: String,
    /// Checked with a key from the [`KeyCache`]: the writer confirms the node's key and
    /// status from the store before deciding.
    cached: bool,
    claim: Box<Claim>,
    digest: String,
    envelope: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// The writer's answer to one job.
#[derive(Debug)]
pub enum Reply {
    Created(ReportAccepted),
    Duplicate(ReportAccepted),
    Rejected(Rejection),
    Failed(HttpError),
    /// The key or status the handler remembered is no longer the store's: check the
    /// envelope (given back) again from the store. Only for `cached` jobs.
    Stale(Vec<u8>),
}

/// The approved nodes' keys, parsed, by keyid: so a node's reports do not each cost a
/// database read (which, with the writer committing all the time, also re-reads pages
/// the commits changed) and a PEM parse.
///
/// An entry is only a guess, never the word on a node's status: the CLI approves and
/// revokes from another process, and keys are rotated. So a report checked with a
/// remembered key goes to the writer marked `cached`, and the writer reads those nodes'
/// current key and status from the store (one read per batch) before deciding anything.
/// Any difference, and the report is sent back to be checked again from the store (see
/// [`Reply::Stale`]), exactly as if there were no cache. A report that fails a check
/// after a cache hit is likewise checked again from the store before it is answered, so a
/// refusal never rests on a remembered status either.
#[derive(Debug, Default)]
pub struct KeyCache(Mutex<HashMap<String, CachedKey>>);

#[derive(Debug, Clone)]
struct CachedKey {
    node: String,
    key: VerifyingKey,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key_id: &str) -> Option<CachedKey> {
        self.lock().get(key_id).cloned()
    }

    fn insert(&self, key_id: &str, entry: CachedKey) {
        let mut keys = self.lock();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(key_id.to_string(), entry);
    }

    fn forget(&self, key_id: &str) {
        self.lock().remove(key_id);
    }
}

/// The handler of `POST /v1/reports`.
pub async fn post_report(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (node, result) = ingest(&state, &headers, body).await;
    let stats: &Stats = &state.stats;
    match result {
        Ok(Reply::Created(answer)) => {
            stats.accepted();
            tracing::debug!(%peer, node = %escape(&answer.node), sequence = answer.sequence, digest = %answer.digest, "report accepted");
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Ok(Reply::Duplicate(answer)) => {
            stats.duplicate();
            tracing::debug!(%peer, node = %escape(&answer.node), sequence = answer.sequence, digest = %answer.digest, "duplicate report, already stored");
            (StatusCode::OK, Json(answer)).into_response()
        }
        Ok(Reply::Rejected(rejection)) => refuse(stats, peer, node.as_deref(), rejection.into()),
        Ok(Reply::Failed(err)) | Err(err) => refuse(stats, peer, node.as_deref(), err),
        Ok(Reply::Stale(_)) => refuse(
            stats,
            peer,
            node.as_deref(),
            HttpError::internal("a report was sent back unanswered"),
        ),
    }
}

/// Counts and logs a refusal (naming the peer; what the peer sent is escaped), then
/// answers it.
fn refuse(stats: &Stats, peer: Peer, node: Option<&str>, err: HttpError) -> Response {
    stats.rejected(err.code());
    let node = escape(node.unwrap_or("-"));
    let message = escape(&err.body.message);
    if err.status.is_server_error() {
        tracing::error!(%peer, %node, code = err.code(), %message, "report failed");
    } else {
        tracing::warn!(%peer, %node, code = err.code(), %message, "report rejected");
    }
    err.into_response()
}

/// What the checks before the writer hand on to it.
struct Checked {
    node: String,
    key_id: String,
    cached: bool,
    claim: Box<Claim>,
    digest: String,
    envelope: Vec<u8>,
}

/// Everything up to the writer's answer. Returns the node's name once it is known, for
/// the log line.
async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> (Option<String>, Result<Reply, HttpError>) {
    let bytes = match read_limited(headers, body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (None, Err(e)),
    };
    match submit(state, bytes, true).await {
        // Checked with a remembered key that the store no longer agrees with: once more,
        // from the store (which the writer never sends back).
        (_, Ok(Reply::Stale(bytes))) => match submit(state, bytes, false).await {
            (name, Ok(Reply::Stale(_))) => (
                name,
                Err(HttpError::internal(
                    "the ingest writer sent a report back twice",
                )),
            ),
            other => other,
        },
        other => other,
    }
}

/// The checks of one envelope, then the writer's answer. `use_cache`: whether the key may
/// come from the [`KeyCache`].
async fn submit(
    state: &AppState,
    bytes: Vec<u8>,
    use_cache: bool,
) -> (Option<String>, Result<Reply, HttpError>) {
    let envelope = match Envelope::from_json_bytes(&bytes) {
        Ok(e) => e,
        Err(e) => {
            return (
                None,
                Err(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    e.to_string(),
                )),
            )
        }
    };
    if envelope.payload_type != PAYLOAD_TYPE {
        return (
            None,
            Err(HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong_payload_type",
                VerifyError::WrongPayloadType {
                    found: envelope.payload_type.clone(),
                }
                .to_string(),
            )),
        );
    }
    let keyids = match signature_keyids(&envelope) {
        Ok(k) => k,
        Err(e) => return (None, Err(e)),
    };

    // A small envelope with a remembered key is checked right here; anything else (a big
    // envelope, a key lookup in the store) on a blocking thread, so slow envelopes and the
    // database do not stall other connections' I/O.
    let mut bytes = bytes;
    let mut use_cache = use_cache;
    if use_cache && bytes.len() <= INLINE_CHECK {
        match check_cached(&state.key_cache, &keyids, &envelope, bytes) {
            Ok(checked) => return send(state, checked).await,
            Err(back) => bytes = back,
        }
        use_cache = false;
    }
    let store = Arc::clone(&state.store);
    let cache = Arc::clone(&state.key_cache);
    let checked = tokio::task::spawn_blocking(move || {
        let bytes = if use_cache {
            match check_cached(&cache, &keyids, &envelope, bytes) {
                Ok(checked) => return (Some(checked.node.clone()), Ok(checked)),
                Err(back) => back,
            }
        } else {
            bytes
        };
        drop(bytes);
        check(store.as_ref(), &cache, &keyids, &envelope)
    })
    .await;
    let checked = match checked {
        Ok((_, Ok(c))) => c,
        Ok((name, Err(e))) => return (name, Err(e)),
        Err(e) => {
            return (
                None,
                Err(HttpError::internal(format!(
                    "signature verification failed: {e}"
                ))),
            )
        }
    };
    send(state, checked).await
}

/// Hands a checked statement to the writer and waits for its answer.
async fn send(state: &AppState, checked: Checked) -> (Option<String>, Result<Reply, HttpError>) {
    let name = Some(checked.node.clone());
    let key_id = checked.key_id.clone();

    let (reply, answer) = oneshot::channel();
    let job = Job {
        node: checked.node,
        key_id: checked.key_id,
        cached: checked.cached,
        claim: checked.claim,
        digest: checked.digest,
        envelope: checked.envelope,
        reply,
    };
    if state.writer.send(job).await.is_err() {
        return (name, Err(shutting_down()));
    }
    match answer.await {
        Ok(Reply::Stale(bytes)) => {
            state.key_cache.forget(&key_id);
            (name, Ok(Reply::Stale(bytes)))
        }
        Ok(reply) => (name, Ok(reply)),
        Err(_) => (name, Err(shutting_down())),
    }
}

/// The checks with the key the [`KeyCache`] has for the envelope's first keyid (the store
/// picks the first keyid, in the envelope's order, that is enrolled: so with that one the
/// cache picks the key the store would). The bytes come back when there is no such key or
/// a check fails: a refusal is never given on a remembered key, only by [`check`].
fn check_cached(
    cache: &KeyCache,
    keyids: &[String],
    envelope: &Envelope,
    bytes: Vec<u8>,
) -> Result<Checked, Vec<u8>> {
    let Some(first) = keyids.first() else {
        return Err(bytes);
    };
    let Some(hit) = cache.get(first) else {
        return Err(bytes);
    };
    match verified_claim(&hit.key, envelope) {
        Ok((key_id, claim, digest, evidence)) => Ok(Checked {
            node: hit.node,
            key_id,
            cached: true,
            claim,
            digest,
            envelope: evidence,
        }),
        Err(_) => {
            cache.forget(first);
            Err(bytes)
        }
    }
}

/// The key lookup in the store and the checks that need the key: node status, signature,
/// statement. On a blocking thread. Returns the node's name once it is known, for the log
/// line.
fn check(
    store: &dyn Store,
    cache: &KeyCache,
    keyids: &[String],
    envelope: &Envelope,
) -> (Option<String>, Result<Checked, HttpError>) {
    let node = match find_node(store, keyids) {
        Ok(n) => n,
        Err(e) => return (None, Err(e)),
    };
    let result = (|| {
        require_approved(&node.name, node.status)?;
        let key = verifying_key_from_pem(&node.public_key).map_err(|e| {
            HttpError::internal(format!(
                "the stored public key of this node cannot be read ({e}): the database is \
                 damaged; re-enrol the node"
            ))
        })?;
        cache.insert(
            &node.key_id,
            CachedKey {
                node: node.name.clone(),
                key,
            },
        );
        let (key_id, claim, digest, evidence) = verified_claim(&key, envelope)?;
        Ok(Checked {
            node: node.name.clone(),
            key_id,
            cached: false,
            claim,
            digest,
            envelope: evidence,
        })
    })();
    (Some(node.name), result)
}

/// The signature check, then what the writer needs of the statement: the verifying keyid,
/// the [`Claim`] and the envelope's digest.
///
/// What is stored, and what the digest is of, is the envelope's evidence form
/// ([`Envelope::evidence`]): the payload type, the payload and the one signature that
/// verified, as compact JSON. That is byte for byte what the agent sent (and hashed for its
/// next `previous`), and the same for a copy re-sent with other whitespace, unsigned extra
/// fields or extra signatures: such a copy is a duplicate, never a new row.
fn verified_claim(
    key: &VerifyingKey,
    envelope: &Envelope,
) -> Result<(String, Box<Claim>, String, Vec<u8>), HttpError> {
    let verified = verify_envelope(envelope, key).map_err(verify_error)?;
    let evidence = envelope
        .evidence(&verified.keyid)
        .ok_or_else(|| HttpError::internal("the verified signature could not be found again"))?
        .to_json_bytes();
    Ok((
        verified.keyid,
        Box::new(Claim::of(verified.statement)),
        crate::digest::sha256_hex(&evidence),
        evidence,
    ))
}

fn shutting_down() -> HttpError {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the collector is shutting down (or failed internally) and did not acknowledge \
         this report; send it again",
    )
}

/// The distinct keyids the envelope's signatures name, or `malformed` past
/// [`MAX_SIGNATURES`].
fn signature_keyids(envelope: &Envelope) -> Result<Vec<String>, HttpError> {
    if envelope.signatures.len() > MAX_SIGNATURES {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!(
                "the envelope has {} signatures; at most {MAX_SIGNATURES} are accepted",
                envelope.signatures.len()
            ),
        ));
    }
    let mut keyids: Vec<String> = Vec::new();
    for s in &envelope.signatures {
        if !s.keyid.is_empty() && !keyids.contains(&s.keyid) {
            keyids.push(s.keyid.clone());
        }
    }
    Ok(keyids)
}

/// The node whose key signed the envelope, by the keyids its signatures name. Keyids are
/// unauthenticated hints: this only picks the key that the signature must then verify with.
fn find_node(store: &dyn Store, keyids: &[String]) -> Result<NodeKey, HttpError> {
    for k in keyids {
        if let Some(node) = store.node_key(k).map_err(HttpError::from)? {
            return Ok(node);
        }
    }
    Err(HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unknown_key",
        format!(
            "no signature is by an enrolled key (keyids: {}): enrol the node with \
             `nodeproof-agent enroll`; after a key rotation, sign with the new key",
            if keyids.is_empty() {
                "none given".to_string()
            } else {
                keyids.join(", ")
            }
        ),
    ))
}

/// Refuses reports from nodes that are not (or no longer) approved.
pub fn require_approved(name: &str, status: NodeStatus) -> Result<(), HttpError> {
    match status {
        NodeStatus::Approved => Ok(()),
        NodeStatus::Pending => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "node_pending",
            format!(
                "node {name:?} is enrolled but not approved yet: an operator runs \
                 `nodeproof-collector nodes approve {name}`, or enrol with a bootstrap token",
            ),
        )),
        NodeStatus::Revoked => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "node_revoked",
            format!(
                "node {name:?} was revoked: its reports are no longer accepted; an operator \
                 must enrol the machine again under a new name",
            ),
        )),
    }
}

/// A statement problem is the signer's content (422 `bad_statement`); anything else means
/// the signature cannot be trusted (401 `bad_signature`).
fn verify_error(e: VerifyError) -> HttpError {
    match e {
        VerifyError::MalformedStatement(_)
        | VerifyError::WrongStatementType { .. }
        | VerifyError::WrongPredicateType { .. }
        | VerifyError::NoSubjects
        | VerifyError::BadSubjectDigest { .. } => HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_statement",
            e.to_string(),
        ),
        VerifyError::WrongPayloadType { .. } => HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_payload_type",
            e.to_string(),
        ),
        _ => HttpError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()),
    }
}

/// The serialized half of ingest: chain state, decisions, group commit.
pub struct Writer {
    store: Arc<dyn Store>,
    policy: Policy,
    stats: Arc<Stats>,
    /// Chain state by node name. Only this task moves it; see the module comment.
    chains: HashMap<String, NodeRecord>,
    /// Statements that add to the store, per node per minute (see [`Quotas`]).
    ///
    /// [`Quotas`]: super::quota::Quotas
    quota: Arc<RateLimiter<String>>,
    per_minute: u32,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("policy", &self.policy)
            .field("nodes", &self.chains.len())
            .finish_non_exhaustive()
    }
}

/// An answer decided but not sent: sent only after the batch's commit went through.
enum Pending {
    Created(ReportAccepted),
    Duplicate(ReportAccepted),
    Rejected(Rejection, Option<ChainEvent>),
    Failed(HttpError),
    Stale(Vec<u8>),
}

impl Writer {
    pub fn new(store: Arc<dyn Store>, policy: Policy, stats: Arc<Stats>) -> Writer {
        Writer {
            store,
            policy,
            stats,
            chains: HashMap::new(),
            quota: Arc::default(),
            per_minute: u32::MAX,
        }
    }

    /// With at most `per_minute` statements per node that add to the store.
    pub fn with_quota(mut self, quota: Arc<RateLimiter<String>>, per_minute: u32) -> Writer {
        self.quota = quota;
        self.per_minute = per_minute;
        self
    }

    fn over_quota(node: &str, per_minute: u32) -> Rejection {
        Rejection {
            status: 429,
            code: "rate_limited",
            message: format!(
                "node {node:?} sent more than {per_minute} new statements in a minute, the \
                 collector's per-node quota: nothing was stored; send it again in a minute"
            ),
            last_sequence: None,
            last_digest: None,
        }
    }

    /// Runs until `stop` fires and the channel is drained: after `stop` no new job can be
    /// sent, and every job already queued is still decided, committed and answered.
    pub async fn run(self, mut jobs: mpsc::Receiver<Job>, stop: oneshot::Receiver<()>) {
        let (store, policy, stats) = (
            Arc::clone(&self.store),
            self.policy,
            Arc::clone(&self.stats),
        );
        let (quota, per_minute) = (Arc::clone(&self.quota), self.per_minute);
        let mut writer = Some(self);
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            let first = tokio::select! {
                job = jobs.recv() => job,
                _ = &mut stop, if !stopping => {
                    jobs.close();
                    stopping = true;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // The store is synchronous: decide and commit on a blocking thread, taking the
            // writer along and getting it back.
            let w = writer.take().unwrap_or_else(|| {
                Writer::new(Arc::clone(&store), policy, Arc::clone(&stats))
                    .with_quota(Arc::clone(&quota), per_minute)
            });
            match tokio::task::spawn_blocking(move || {
                let mut w = w;
                let answers = w.process(batch);
                (w, answers)
            })
            .await
            {
                Ok((w, answers)) => {
                    writer = Some(w);
                    for (reply, answer) in answers {
                        // The client may have gone; what was committed stays committed and
                        // its retry is answered as a duplicate.
                        let _ = reply.send(answer);
                    }
                }
                Err(e) => {
                    // A panic in the store: the batch's reply channels are gone (those
                    // requests get a 503 and are retried). The next batch starts with a
                    // new writer whose chain state is reloaded from the store.
                    tracing::error!(error = %e, "the ingest writer failed; starting over");
                }
            }
        }
    }

    /// Decides every job of a batch, commits the accepted ones at once, and returns the
    /// answers to send.
    fn process(&mut self, jobs: Vec<Job>) -> Vec<(oneshot::Sender<Reply>, Reply)> {
        // The database file must still be the one opened: a report committed into a file
        // that was deleted or replaced would be acknowledged and lost (one stat).
        if let Err(e) = self.store.check_file() {
            let e = HttpError::store(&e);
            return jobs
                .into_iter()
                .map(|job| (job.reply, Reply::Failed(e.clone())))
                .collect();
        }
        // Several collectors share this database: another one may have extended any chain
        // since the last batch, so every batch starts from the store's chain state (and the
        // commit re-checks it under the node's row lock).
        if self.store.shared() {
            self.chains.clear();
        }
        let now = now_unix();
        let mut batch: Vec<Accepted> = Vec::new();
        let mut pending_digests: HashSet<String> = HashSet::new();
        let mut touched: HashSet<String> = HashSet::new();
        let mut decided: Vec<(oneshot::Sender<Reply>, String, Pending)> = Vec::new();

        let confirmed = self.confirm_cached(&jobs);
        for (job, confirmed) in jobs.into_iter().zip(confirmed) {
            let Job {
                node,
                key_id,
                cached: _,
                claim,
                digest,
                envelope,
                reply,
            } = job;
            match confirmed {
                Ok(true) => {}
                Ok(false) => {
                    decided.push((reply, node, Pending::Stale(envelope)));
                    continue;
                }
                Err(e) => {
                    decided.push((reply, node, Pending::Failed(e)));
                    continue;
                }
            }
            let answer = self.decide_one(&node, &key_id, *claim, digest, now, &mut pending_digests);
            let answer = match answer {
                (Pending::Created(a), Some(mut accepted)) => {
                    accepted.envelope = envelope;
                    touched.insert(node.clone());
                    batch.push(accepted);
                    Pending::Created(a)
                }
                (answer, _) => answer,
            };
            decided.push((reply, node, answer));
        }

        // Nodes whose statements could not be committed, with the answer for all of their
        // jobs in this batch (their other answers may have depended on the lost state).
        let mut failed: HashMap<String, HttpError> = HashMap::new();
        if !batch.is_empty() {
            match self.store.commit(&batch) {
                Ok(()) => self.stats.commit(batch.len()),
                // One node's conflict (revoked or rotated since its report was checked)
                // must not cost the other nodes their reports: commit one by one, and stop
                // at a node's first failure so its chain is not stored with a hole.
                Err(StoreError::Conflict(_)) if batch.len() > 1 => {
                    for accepted in &batch {
                        if failed.contains_key(&accepted.node) {
                            continue;
                        }
                        match self.store.commit(std::slice::from_ref(accepted)) {
                            Ok(()) => self.stats.commit(1),
                            Err(e) => {
                                tracing::error!(node = %accepted.node, error = %e, "commit failed; this node's reports in the batch are not acknowledged");
                                failed.insert(accepted.node.clone(), HttpError::store(&e));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, statements = batch.len(), "commit failed; nothing of this batch is acknowledged");
                    for node in &touched {
                        failed.insert(node.clone(), HttpError::store(&e));
                    }
                }
            }
        }
        // And still the same file after the commit: if it was swapped while committing, the
        // batch went to the old file and is not acknowledged.
        if !batch.is_empty() {
            if let Err(e) = self.store.check_file() {
                for node in &touched {
                    failed.insert(node.clone(), HttpError::store(&e));
                }
            }
        }
        for node in failed.keys() {
            // Reloaded from the store on next use.
            self.chains.remove(node);
        }

        decided
            .into_iter()
            .map(|(reply, node, answer)| {
                let answer = match (failed.get(&node), answer) {
                    (_, Pending::Stale(envelope)) => Reply::Stale(envelope),
                    (Some(e), _) => Reply::Failed(e.clone()),
                    (None, Pending::Created(a)) => Reply::Created(a),
                    (None, Pending::Duplicate(a)) => Reply::Duplicate(a),
                    (None, Pending::Rejected(r, None)) => Reply::Rejected(r),
                    (None, Pending::Rejected(r, Some(event))) => {
                        // Detected and recorded, not silently refused: when the record
                        // cannot be written the refusal is not final either. Only a
                        // break not recorded before counts against the node's quota.
                        match self.store.record_chain_event(&event) {
                            Ok(new) => {
                                if new {
                                    self.quota.allow(&node, now, self.per_minute);
                                }
                                Reply::Rejected(r)
                            }
                            Err(e) => Reply::Failed(HttpError::store(&e)),
                        }
                    }
                    (None, Pending::Failed(e)) => Reply::Failed(e),
                };
                (reply, answer)
            })
            .collect()
    }

    /// For each job: whether it may be decided. A job checked with a key from the
    /// [`KeyCache`] may only when the store still has that key as its node's current key
    /// and the node approved; the others are sent back (`Ok(false)`) to be checked from the
    /// store. Every such job is confirmed in one read.
    fn confirm_cached(&self, jobs: &[Job]) -> Vec<Result<bool, HttpError>> {
        let keys: Vec<&str> = jobs
            .iter()
            .filter(|j| j.cached)
            .map(|j| j.key_id.as_str())
            .collect();
        if keys.is_empty() {
            return vec![Ok(true); jobs.len()];
        }
        match self.store.node_keys(&keys) {
            Ok(current) => {
                let mut current = current.into_iter();
                jobs.iter()
                    .map(|j| {
                        if !j.cached {
                            return Ok(true);
                        }
                        Ok(current.next().flatten().is_some_and(|n| {
                            n.name == j.node
                                && n.key_id == j.key_id
                                && n.status == NodeStatus::Approved
                        }))
                    })
                    .collect()
            }
            Err(e) => {
                let e = HttpError::from(e);
                jobs.iter()
                    .map(|j| if j.cached { Err(e.clone()) } else { Ok(true) })
                    .collect()
            }
        }
    }

    /// One job against its node's chain. A new statement comes back with its `Accepted`
    /// (envelope not yet attached) and the node's in-memory chain already moved past it.
    fn decide_one(
        &mut self,
        name: &str,
        key_id: &str,
        claim: Claim,
        digest: String,
        now: i64,
        pending_digests: &mut HashSet<String>,
    ) -> (Pending, Option<Accepted>) {
        let store = Arc::clone(&self.store);
        let policy = self.policy;
        let (quota, per_minute) = (Arc::clone(&self.quota), self.per_minute);
        let node = match self.chain(name) {
            Ok(n) => n,
            Err(e) => return (Pending::Failed(e), None),
        };
        // A rotation since the handler's lookup changes the key, not the chain.
        node.key_id.clear();
        node.key_id.push_str(key_id);

        let already_stored = if link_needs_stored_check(node, claim.link.as_ref(), &digest) {
            if pending_digests.contains(&digest) {
                true
            } else {
                match store.has_digest(&digest) {
                    Ok(stored) => stored,
                    Err(e) => return (Pending::Failed(HttpError::store(&e)), None),
                }
            }
        } else {
            false
        };

        let got_sequence = claim.link.as_ref().map_or(0, |l| l.sequence);
        match decide_claim(node, claim, &digest, now, &policy, already_stored) {
            Ok(Outcome::New(_)) if !quota.allow(&name.to_string(), now, per_minute) => (
                Pending::Rejected(Writer::over_quota(name, per_minute), None),
                None,
            ),
            Ok(Outcome::New(accepted)) => {
                advance(node, &accepted);
                let answer = ReportAccepted {
                    node: name.to_string(),
                    sequence: accepted.sequence,
                    digest: accepted.digest.clone(),
                    duplicate: false,
                };
                pending_digests.insert(digest);
                (Pending::Created(answer), Some(*accepted))
            }
            Ok(Outcome::Duplicate { sequence }) => (
                Pending::Duplicate(ReportAccepted {
                    node: name.to_string(),
                    sequence,
                    digest,
                    duplicate: true,
                }),
                None,
            ),
            // A break is recorded only within the quota (once it is used up, breaks are
            // refused with 429, unrecorded); a repeat of one already recorded is only
            // counted (below) and does not use the quota up.
            Err(breaks)
                if breaks.is_chain_break() && !quota.peek(&name.to_string(), now, per_minute) =>
            {
                (
                    Pending::Rejected(Writer::over_quota(name, per_minute), None),
                    None,
                )
            }
            Err(rejection) => {
                let event = rejection.is_chain_break().then(|| ChainEvent {
                    node: name.to_string(),
                    kind: rejection.code.to_string(),
                    at: now,
                    last_at: now,
                    count: 1,
                    expected_sequence: node.last_sequence.saturating_add(1),
                    got_sequence,
                    digest,
                    detail: rejection.message.clone(),
                });
                (Pending::Rejected(rejection, event), None)
            }
        }
    }

    /// The node's chain state, loaded from the store the first time it is needed.
    fn chain(&mut self, name: &str) -> Result<&mut NodeRecord, HttpError> {
        if !self.chains.contains_key(name) {
            let record = self
                .store
                .node(name)
                .map_err(|e| HttpError::store(&e))?
                .ok_or_else(|| {
                    HttpError::internal(format!(
                        "node {name:?} disappeared from the database while its report was \
                         being verified; send it again"
                    ))
                })?;
            self.chains.insert(name.to_string(), record);
        }
        self.chains
            .get_mut(name)
            .ok_or_else(|| HttpError::internal("chain state lost"))
    }
}
