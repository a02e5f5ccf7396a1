//! `POST /v1/enroll` and `POST /v1/rotate`: how a key becomes a node's, and how a node
//! changes keys. Both are DSSE envelopes like reports, so the same strict verification
//! applies: an enrolment is signed by the key it enrols (proof of possession), a rotation by
//! the current key and co-signed by the new one. Both carry a time that must be within the
//! skew of the collector's clock, so a captured request cannot be replayed much later.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use nodeproof_proto::{
    check_unique_keys, keyid, sha256_hex, verify_signed, verifying_key_from_pem, EnrollRequest,
    EnrollResponse, Envelope, RotateRequest, VerifyError, ENROLL_PAYLOAD_TYPE, ROTATE_PAYLOAD_TYPE,
};
use serde::de::DeserializeOwned;

use super::body::{read_limited, MAX_BODY};
use super::error::HttpError;
use super::{blocking, now_unix, AppState, Peer};
use crate::accept::parse_time;
use crate::store::{NodeStatus, StoreError};
use crate::text::escape;

/// How many nodes wait for approval (the claims are bounded by the cap, so reading them
/// is cheap).
fn existing_pending_count(store: &dyn crate::store::Store) -> Result<usize, StoreError> {
    Ok(store.pending_claims()?.len())
}

fn too_many_pending(max_pending: usize) -> HttpError {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_pending",
        format!(
            "{max_pending} claims are already waiting for approval, the collector's limit: \
             enrol with a bootstrap token, or ask an operator to approve or delete pending \
             nodes (`nodeproof-collector nodes list`)"
        ),
    )
}

fn key_taken(name: &str) -> HttpError {
    HttpError::new(
        StatusCode::CONFLICT,
        "key_taken",
        format!("this key is already enrolled as (or claims) node {name:?}: each node needs its own key"),
    )
}

fn key_taken_by_enrolled(
    store: &dyn crate::store::Store,
    kid: &str,
) -> Result<HttpError, StoreError> {
    Ok(key_taken(
        &store.node_by_key(kid)?.map(|n| n.name).unwrap_or_default(),
    ))
}

/// Enrolment and rotation bodies are a key and a few strings.
const MAX_REQUEST: usize = 64 * 1024;

/// The handler of `POST /v1/enroll`.
pub async fn post_enroll(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match enroll(&state, peer, &headers, body).await {
        Ok((status, answer)) => {
            tracing::info!(%peer, node = %escape(&answer.node), key_id = %answer.key_id, status = %answer.status, "node enrolled");
            (status, Json(answer)).into_response()
        }
        Err((node, err)) => refuse("enroll", peer, node.as_deref(), err),
    }
}

/// The handler of `POST /v1/rotate`.
pub async fn post_rotate(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match rotate(&state, &headers, body).await {
        Ok(answer) => {
            tracing::info!(%peer, node = %escape(&answer.node), key_id = %answer.key_id, "node key rotated");
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err((node, err)) => refuse("rotate", peer, node.as_deref(), err),
    }
}

/// Logs a refusal with the peer's address; what the peer sent is escaped.
fn refuse(what: &str, peer: Peer, node: Option<&str>, err: HttpError) -> Response {
    let node = escape(node.unwrap_or("-"));
    let message = escape(&err.body.message);
    if err.status.is_server_error() {
        tracing::error!(%peer, %node, code = err.code(), %message, "{what} failed");
    } else {
        tracing::warn!(%peer, %node, code = err.code(), %message, "{what} rejected");
    }
    err.into_response()
}

type Failure = (Option<String>, HttpError);

async fn read_envelope(
    headers: &HeaderMap,
    body: Body,
    payload_type: &str,
) -> Result<Envelope, HttpError> {
    let bytes = read_limited(headers, body, MAX_REQUEST.min(MAX_BODY)).await?;
    let envelope = Envelope::from_json_bytes(&bytes)
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    if envelope.payload_type != payload_type {
        return Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_payload_type",
            format!(
                "the envelope's payloadType is {:?}, expected {payload_type:?}",
                envelope.payload_type
            ),
        ));
    }
    Ok(envelope)
}

fn parse_payload<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, HttpError> {
    // A key named twice (two tokens, two node names) must not be read one way here and
    // another way by anyone else.
    check_unique_keys(bytes)
        .and_then(|()| serde_json::from_slice(bytes))
        .map_err(|e| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("the signed payload is not a {what} ({e}): the agent is incompatible"),
            )
        })
}

fn bad_key(e: impl std::fmt::Display) -> HttpError {
    HttpError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_key",
        format!("the public key cannot be used: {e}"),
    )
}

fn bad_signature(e: VerifyError, whose: &str) -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "bad_signature",
        format!("the {whose} signature does not check out: {e}"),
    )
}

/// Refuses a request whose time is not within `skew_secs` of `now`, either way.
pub fn check_request_time(time: &str, now: i64, skew_secs: i64) -> Result<(), HttpError> {
    let t = parse_time(time).map_err(|e| {
        HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            format!("the request time {time:?} is not RFC 3339 ({e})"),
        )
    })?;
    if (t - now).abs() > skew_secs {
        return Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "clock_skew",
            format!(
                "the request time {time} is {}s from the collector's clock (allowed {skew_secs}s): \
                 fix the node's clock (NTP) and send a new request; old requests are refused so \
                 they cannot be replayed",
                t - now
            ),
        ));
    }
    Ok(())
}

/// Node names are what operators type and what the fleet view shows: DNS-label-like, so
/// they need no quoting anywhere.
pub fn check_node_name(name: &str) -> Result<(), HttpError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            format!(
                "{name:?} is not a valid node name: use 1 to 253 letters, digits, '-', '.' or \
                 '_', starting with a letter or digit (the Kubernetes node name fits)"
            ),
        ))
    }
}

async fn enroll(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, EnrollResponse), Failure> {
    let envelope = read_envelope(headers, body, ENROLL_PAYLOAD_TYPE)
        .await
        .map_err(|e| (None, e))?;

    // Self-signed: the key to verify with is inside the payload, so the payload is read
    // first, and trusted only once its own key's signature over it checks out.
    let unverified = STANDARD.decode(&envelope.payload).map_err(|e| {
        (
            None,
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("the envelope's payload is not base64 ({e})"),
            ),
        )
    })?;
    let claimed: EnrollRequest =
        parse_payload(&unverified, "enrolment request").map_err(|e| (None, e))?;
    let key = verifying_key_from_pem(&claimed.public_key).map_err(|e| (None, bad_key(e)))?;
    let (payload, key_id) = verify_signed(&envelope, &key, ENROLL_PAYLOAD_TYPE)
        .map_err(|e| (None, bad_signature(e, "enrolling key's")))?;
    let request: EnrollRequest =
        parse_payload(&payload, "enrolment request").map_err(|e| (None, e))?;
    let name = Some(request.node.clone());
    check_node_name(&request.node).map_err(|e| (name.clone(), e))?;
    let now = now_unix();
    check_request_time(&request.time, now, state.policy.skew_secs)
        .map_err(|e| (name.clone(), e))?;

    if request.token.is_none()
        && !state
            .enroll_rate
            .allow(&peer.ip(), now, state.quotas.enrolls_per_minute)
    {
        return Err((
            name,
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} enrolments without a token from this address in a minute: \
                     try again in a minute, or enrol with a bootstrap token",
                    state.quotas.enrolls_per_minute
                ),
            ),
        ));
    }

    let public_key = request.public_key.clone();
    let node = request.node.clone();
    let token_hash = request.token.as_deref().map(|t| sha256_hex(t.as_bytes()));
    let kid = key_id.clone();
    let quotas = state.quotas;
    let source = peer.to_string();
    let record = blocking(state, move |store| {
        // Pending claims wait a limited time; dropped ones free their name and key.
        for claim in store.expire_pending(now - quotas.pending_ttl_secs)? {
            tracing::info!(node = %escape(&claim.name), key_id = %escape(&claim.key_id), source = %escape(claim.source.as_deref().unwrap_or("-")), "pending enrolment expired");
        }
        // Read once: bounded by the cap, and needed for the cap, the key's other claims and
        // the log of the claims a decision drops.
        let claims = store.pending_claims()?;
        // Checked before the token is spent, so a conflicting or repeated enrolment does
        // not use up a bootstrap token.
        let mut takes_over = None;
        if let Some(other) = claims.iter().find(|c| c.key_id == kid && c.name != node) {
            return Err(key_taken(&other.name));
        }
        if let Some(existing) = store.node(&node)? {
            if existing.key_id != kid {
                // Only a claim: a valid token outranks it, so whoever sends a name first
                // cannot keep the real node out.
                if existing.status == NodeStatus::Pending && token_hash.is_some() {
                    takes_over = Some(existing);
                } else if existing.status == NodeStatus::Pending {
                    // Another claim on a pending name: recorded next to the first, so a
                    // squatter's earlier claim cannot keep the real node's from the
                    // operator, who picks one with `nodes approve NAME --key-id`.
                    if claims.iter().any(|c| c.key_id == kid) {
                        return Ok(existing);
                    }
                    if store.node_by_key(&kid)?.is_some() {
                        return Err(key_taken_by_enrolled(store, &kid)?);
                    }
                    if claims.len() >= quotas.max_pending {
                        return Err(too_many_pending(quotas.max_pending));
                    }
                    match store.add_claim(&node, &kid, &public_key, &source, now) {
                        Err(StoreError::Conflict(message)) => {
                            return Err(HttpError::new(StatusCode::CONFLICT, "name_taken", message))
                        }
                        other => other?,
                    }
                    tracing::warn!(node = %escape(&node), key_id = %kid, source = %escape(&source), first_key_id = %escape(&existing.key_id), "another key claims a pending name: approve the real one with `nodes approve --key-id`");
                    return Ok(existing);
                } else {
                    return Err(HttpError::new(
                        StatusCode::CONFLICT,
                        "name_taken",
                        format!(
                            "node {node:?} is already {} with another key ({}): to replace \
                             the key of an enrolled node, rotate it with `nodeproof-agent \
                             rotate-key` using the old key; a name that is only pending is \
                             taken by enrolling with a bootstrap token, or freed by an \
                             operator with `nodeproof-collector nodes delete {node}`",
                            if existing.status == NodeStatus::Pending { "claimed (pending)" } else { "enrolled" },
                            existing.key_id
                        ),
                    ));
                }
            } else if existing.status != NodeStatus::Pending {
                return Ok(existing);
            }
        } else if store.node_by_key(&kid)?.is_some() {
            return Err(key_taken_by_enrolled(store, &kid)?);
        }
        let approved = match &token_hash {
            Some(hash) => {
                if !store.redeem_token(hash, now)? {
                    return Err(HttpError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_token",
                        "the bootstrap token is not valid: it is wrong, expired or used up; \
                         create a new one with `nodeproof-collector token create` (or enrol \
                         without a token and have an operator run `nodes approve`)",
                    ));
                }
                true
            }
            None => false,
        };
        if let Some(claim) = takes_over {
            match store.delete_node(&claim.name) {
                Ok(_) | Err(StoreError::NoSuchNode(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if approved {
            // A token decides the name: every other claim on it is dropped, on record.
            for c in claims.iter().filter(|c| c.name == node && c.key_id != kid) {
                tracing::warn!(node = %escape(&node), claim_key_id = %escape(&c.key_id), claim_source = %escape(c.source.as_deref().unwrap_or("-")), new_key_id = %kid, "a pending claim on this name was dropped by an enrolment with a valid token");
            }
        }
        if !approved && existing_pending_count(store)? >= quotas.max_pending {
            return Err(too_many_pending(quotas.max_pending));
        }
        let record = match store.enroll(&node, &kid, &public_key, approved, now) {
            // Lost a race with another enrolment of the same name.
            Err(StoreError::Conflict(message)) => {
                return Err(HttpError::new(StatusCode::CONFLICT, "name_taken", message))
            }
            other => other?,
        };
        if record.status == NodeStatus::Pending {
            store.set_claim_source(&node, &kid, &source)?;
        }
        Ok(record)
    })
    .await
    .map_err(|e| (name.clone(), e))?;

    match record.status {
        NodeStatus::Revoked => Err((
            name,
            HttpError::new(
                StatusCode::FORBIDDEN,
                "node_revoked",
                format!(
                    "node {:?} was revoked and cannot enrol again with the same key: enrol \
                     the machine under a new name with a new key",
                    record.name
                ),
            ),
        )),
        status => Ok((
            if status == NodeStatus::Approved {
                StatusCode::CREATED
            } else {
                StatusCode::ACCEPTED
            },
            EnrollResponse {
                node: record.name,
                key_id,
                status: status.as_str().to_string(),
            },
        )),
    }
}

async fn rotate(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<EnrollResponse, Failure> {
    let envelope = read_envelope(headers, body, ROTATE_PAYLOAD_TYPE)
        .await
        .map_err(|e| (None, e))?;
    let keyids: Vec<String> = envelope
        .signatures
        .iter()
        .filter(|s| !s.keyid.is_empty())
        .map(|s| s.keyid.clone())
        .take(8)
        .collect();
    let current = blocking(state, move |store| {
        for k in &keyids {
            if let Some(node) = store.node_by_key(k)? {
                return Ok(Some(node));
            }
        }
        Ok(None)
    })
    .await
    .map_err(|e| (None, e))?
    .ok_or_else(|| {
        (
            None,
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_key",
                "no signature is by an enrolled key: a rotation must be signed by the node's \
                 current key (was it already rotated?)",
            ),
        )
    })?;
    let name = Some(current.name.clone());
    if current.status == NodeStatus::Revoked {
        return Err((
            name,
            HttpError::new(
                StatusCode::FORBIDDEN,
                "node_revoked",
                format!(
                    "node {:?} was revoked: its key cannot be rotated",
                    current.name
                ),
            ),
        ));
    }
    let old_key = verifying_key_from_pem(&current.public_key).map_err(|e| {
        (
            name.clone(),
            HttpError::internal(format!("the stored public key cannot be read ({e})")),
        )
    })?;
    let (payload, old_kid) = verify_signed(&envelope, &old_key, ROTATE_PAYLOAD_TYPE)
        .map_err(|e| (name.clone(), bad_signature(e, "current key's")))?;
    let request: RotateRequest =
        parse_payload(&payload, "key rotation request").map_err(|e| (name.clone(), e))?;
    if request.node != current.name {
        return Err((
            name,
            HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_request",
                format!(
                    "the rotation names node {:?} but is signed by the key of node {:?}",
                    request.node, current.name
                ),
            ),
        ));
    }
    let new_key =
        verifying_key_from_pem(&request.new_public_key).map_err(|e| (name.clone(), bad_key(e)))?;
    let new_kid = keyid(&new_key);
    if new_kid == old_kid {
        // Already done: a retry whose answer was lost, or a replay, signed by the key the
        // node has now. Nothing changes, so the answer is the same as the first time.
        return Ok(EnrollResponse {
            node: current.name,
            key_id: new_kid,
            status: current.status.as_str().to_string(),
        });
    }
    verify_signed(&envelope, &new_key, ROTATE_PAYLOAD_TYPE)
        .map_err(|e| (name.clone(), bad_signature(e, "new key's co-")))?;
    let now = now_unix();
    check_request_time(&request.time, now, state.policy.skew_secs)
        .map_err(|e| (name.clone(), e))?;

    let node = current.name.clone();
    let pem = request.new_public_key.clone();
    let kid = new_kid.clone();
    blocking(state, move |store| {
        match store.rotate_key(&node, &old_kid, &kid, &pem, now) {
            // Rotated concurrently, or the new key is another node's.
            Err(StoreError::Conflict(message)) => Err(HttpError::new(
                StatusCode::CONFLICT,
                "key_conflict",
                message,
            )),
            other => Ok(other?),
        }
    })
    .await
    .map_err(|e| (name.clone(), e))?;
    Ok(EnrollResponse {
        node: current.name,
        key_id: new_kid,
        status: current.status.as_str().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_must_be_near_now() {
        let now = 1_714_564_800; // 2024-05-01T12:00:00Z
        assert!(check_request_time("2024-05-01T12:04:00Z", now, 300).is_ok());
        assert!(check_request_time("2024-05-01T11:56:00Z", now, 300).is_ok());
        let e = check_request_time("2024-05-01T12:06:00Z", now, 300).unwrap_err();
        assert_eq!(e.code(), "clock_skew");
        let e = check_request_time("2024-05-01T11:54:00Z", now, 300).unwrap_err();
        assert_eq!(e.code(), "clock_skew");
        let e = check_request_time("noon", now, 300).unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }

    #[test]
    fn node_names_are_dns_like() {
        for ok in ["node-1", "ip-10-0-0-1.ec2.internal", "a", "n_1"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "x/../y", "é", &"a".repeat(254)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
