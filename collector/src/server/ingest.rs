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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nodeproof_proto::{
    sha256_hex, verify_envelope, verifying_key_from_pem, Envelope, ReportAccepted, Statement,
    VerifyError, PAYLOAD_TYPE,
};
use tokio::sync::{mpsc, oneshot};

use super::body::{read_limited, MAX_BODY};
use super::error::HttpError;
use super::stats::Stats;
use super::{blocking, now_unix, AppState};
use crate::accept::{advance, decide, needs_stored_check, Outcome, Policy, Rejection};
use crate::store::{Accepted, ChainEvent, NodeRecord, NodeStatus, Store, StoreError};

/// At most this many signatures are looked up by keyid: DSSE allows several signers, but an
/// envelope with hundreds would only make the collector query its key table hundreds of times.
const MAX_SIGNATURES: usize = 8;
/// At most this many statements go into one commit.
const MAX_BATCH: usize = 512;

/// A statement whose signature checked out, on its way to the writer.
#[derive(Debug)]
pub struct Job {
    node: String,
    key_id: String,
    statement: Box<Statement>,
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
}

/// The handler of `POST /v1/reports`.
pub async fn post_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (node, result) = ingest(&state, &headers, body).await;
    let stats: &Stats = &state.stats;
    match result {
        Ok(Reply::Created(answer)) => {
            stats.accepted();
            tracing::debug!(node = %answer.node, sequence = answer.sequence, digest = %answer.digest, "report accepted");
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Ok(Reply::Duplicate(answer)) => {
            stats.duplicate();
            tracing::debug!(node = %answer.node, sequence = answer.sequence, digest = %answer.digest, "duplicate report, already stored");
            (StatusCode::OK, Json(answer)).into_response()
        }
        Ok(Reply::Rejected(rejection)) => refuse(stats, node.as_deref(), rejection.into()),
        Ok(Reply::Failed(err)) | Err(err) => refuse(stats, node.as_deref(), err),
    }
}

/// Counts and logs a refusal, then answers it.
fn refuse(stats: &Stats, node: Option<&str>, err: HttpError) -> Response {
    stats.rejected(err.code());
    let node = node.unwrap_or("-");
    if err.status.is_server_error() {
        tracing::error!(node, code = err.code(), message = %err.body.message, "report failed");
    } else {
        tracing::warn!(node, code = err.code(), message = %err.body.message, "report rejected");
    }
    err.into_response()
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

    let node = match find_node(state, &envelope).await {
        Ok(n) => n,
        Err(e) => return (None, Err(e)),
    };
    let name = Some(node.name.clone());
    if let Err(e) = require_approved(&node) {
        return (name, Err(e));
    }

    // Verification parses up to a megabyte of JSON after an ed25519 check: keep it off the
    // async workers so slow envelopes do not stall other connections.
    let public_key = node.public_key.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let key = verifying_key_from_pem(&public_key).map_err(|e| {
            HttpError::internal(format!(
                "the stored public key of this node cannot be read ({e}): the database is \
                 damaged; re-enrol the node"
            ))
        })?;
        let verified = verify_envelope(&envelope, &key).map_err(verify_error)?;
        Ok::<_, HttpError>((verified, sha256_hex(&bytes), bytes))
    })
    .await;
    let (verified, digest, bytes) = match verified {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return (name, Err(e)),
        Err(e) => {
            return (
                name,
                Err(HttpError::internal(format!(
                    "signature verification failed: {e}"
                ))),
            )
        }
    };

    let (reply, answer) = oneshot::channel();
    let job = Job {
        node: node.name.clone(),
        key_id: verified.keyid,
        statement: Box::new(verified.statement),
        digest,
        envelope: bytes.to_vec(),
        reply,
    };
    if state.writer.send(job).await.is_err() {
        return (name, Err(shutting_down()));
    }
    match answer.await {
        Ok(reply) => (name, Ok(reply)),
        Err(_) => (name, Err(shutting_down())),
    }
}

fn shutting_down() -> HttpError {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the collector is shutting down (or failed internally) and did not acknowledge \
         this report; send it again",
    )
}

/// The node whose key signed the envelope, by the keyids its signatures name. Keyids are
/// unauthenticated hints: this only picks the key that the signature must then verify with.
async fn find_node(state: &AppState, envelope: &Envelope) -> Result<NodeRecord, HttpError> {
    let mut keyids: Vec<String> = Vec::new();
    for s in &envelope.signatures {
        if !s.keyid.is_empty() && !keyids.contains(&s.keyid) {
            keyids.push(s.keyid.clone());
        }
    }
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
    let wanted = keyids.clone();
    let found = blocking(state, move |store| {
        for k in &wanted {
            if let Some(node) = store.node_by_key(k)? {
                return Ok(Some(node));
            }
        }
        Ok(None)
    })
    .await?;
    found.ok_or_else(|| {
        HttpError::new(
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
        )
    })
}

/// Refuses reports from nodes that are not (or no longer) approved.
pub fn require_approved(node: &NodeRecord) -> Result<(), HttpError> {
    match node.status {
        NodeStatus::Approved => Ok(()),
        NodeStatus::Pending => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "node_pending",
            format!(
                "node {:?} is enrolled but not approved yet: an operator runs \
                 `nodeproof-collector nodes approve {}`, or enrol with a bootstrap token",
                node.name, node.name
            ),
        )),
        NodeStatus::Revoked => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "node_revoked",
            format!(
                "node {:?} was revoked: its reports are no longer accepted; an operator \
                 must enrol the machine again under a new name",
                node.name
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
}

impl Writer {
    pub fn new(store: Arc<dyn Store>, policy: Policy, stats: Arc<Stats>) -> Writer {
        Writer {
            store,
            policy,
            stats,
            chains: HashMap::new(),
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
            let w = writer
                .take()
                .unwrap_or_else(|| Writer::new(Arc::clone(&store), policy, Arc::clone(&stats)));
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
        let now = now_unix();
        let mut batch: Vec<Accepted> = Vec::new();
        let mut pending_digests: HashSet<String> = HashSet::new();
        let mut touched: HashSet<String> = HashSet::new();
        let mut decided: Vec<(oneshot::Sender<Reply>, String, Pending)> = Vec::new();

        for job in jobs {
            let answer = self.decide_one(&job, now, &mut pending_digests);
            let answer = match answer {
                (Pending::Created(a), Some(mut accepted)) => {
                    accepted.envelope = job.envelope;
                    touched.insert(job.node.clone());
                    batch.push(accepted);
                    Pending::Created(a)
                }
                (answer, _) => answer,
            };
            decided.push((job.reply, job.node, answer));
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
        for node in failed.keys() {
            // Reloaded from the store on next use.
            self.chains.remove(node);
        }

        decided
            .into_iter()
            .map(|(reply, node, answer)| {
                let answer = match (failed.get(&node), answer) {
                    (Some(e), _) => Reply::Failed(e.clone()),
                    (None, Pending::Created(a)) => Reply::Created(a),
                    (None, Pending::Duplicate(a)) => Reply::Duplicate(a),
                    (None, Pending::Rejected(r, None)) => Reply::Rejected(r),
                    (None, Pending::Rejected(r, Some(event))) => {
                        // Detected and recorded, not silently refused: when the record
                        // cannot be written the refusal is not final either.
                        match self.store.record_chain_event(&event) {
                            Ok(()) => Reply::Rejected(r),
                            Err(e) => Reply::Failed(HttpError::store(&e)),
                        }
                    }
                    (None, Pending::Failed(e)) => Reply::Failed(e),
                };
                (reply, answer)
            })
            .collect()
    }

    /// One job against its node's chain. A new statement comes back with its `Accepted`
    /// (envelope not yet attached) and the node's in-memory chain already moved past it.
    fn decide_one(
        &mut self,
        job: &Job,
        now: i64,
        pending_digests: &mut HashSet<String>,
    ) -> (Pending, Option<Accepted>) {
        let store = Arc::clone(&self.store);
        let policy = self.policy;
        let node = match self.chain(&job.node) {
            Ok(n) => n,
            Err(e) => return (Pending::Failed(e), None),
        };
        // A rotation since the handler's lookup changes the key, not the chain.
        node.key_id.clone_from(&job.key_id);

        let already_stored = if needs_stored_check(node, &job.statement, &job.digest) {
            if pending_digests.contains(&job.digest) {
                true
            } else {
                match store.has_digest(&job.digest) {
                    Ok(stored) => stored,
                    Err(e) => return (Pending::Failed(HttpError::store(&e)), None),
                }
            }
        } else {
            false
        };

        let answer = |sequence: u64, duplicate: bool| ReportAccepted {
            node: job.node.clone(),
            sequence,
            digest: job.digest.clone(),
            duplicate,
        };
        match decide(
            node,
            &job.statement,
            &job.digest,
            now,
            &policy,
            already_stored,
        ) {
            Ok(Outcome::New(accepted)) => {
                advance(node, &accepted);
                pending_digests.insert(job.digest.clone());
                (
                    Pending::Created(answer(accepted.sequence, false)),
                    Some(*accepted),
                )
            }
            Ok(Outcome::Duplicate { sequence }) => {
                (Pending::Duplicate(answer(sequence, true)), None)
            }
            Err(rejection) => {
                let event = rejection.is_chain_break().then(|| ChainEvent {
                    node: job.node.clone(),
                    kind: rejection.code.to_string(),
                    at: now,
                    expected_sequence: node.last_sequence.saturating_add(1),
                    got_sequence: job.statement.link().map_or(0, |l| l.sequence),
                    digest: job.digest.clone(),
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
