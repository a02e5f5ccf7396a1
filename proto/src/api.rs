//! The collector's wire API that both sides share: enrolment and key-rotation requests
//! (signed like reports, in DSSE envelopes of their own payload types) and the JSON error
//! body every rejection carries. Types only.

use serde::{Deserialize, Serialize};

/// Payload type of a signed enrolment request.
pub const ENROLL_PAYLOAD_TYPE: &str = "application/vnd.nodeproof.enroll+json";
/// Payload type of a signed key rotation.
pub const ROTATE_PAYLOAD_TYPE: &str = "application/vnd.nodeproof.rotate+json";

/// `POST /v1/enroll`: a node asks to report under `node` with `public_key`. The envelope
/// is signed by that key, which proves the node holds it. With a valid bootstrap token the
/// node is approved at once; without, it waits for `nodeproof-collector nodes approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub node: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// RFC 3339; the collector refuses requests far from its clock (replays).
    pub time: String,
}

/// `POST /v1/rotate`: signed by the node's current key and co-signed by the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequest {
    pub node: String,
    /// SubjectPublicKeyInfo PEM of the key that replaces the current one.
    pub new_public_key: String,
    pub time: String,
}

/// The answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub node: String,
    pub key_id: String,
    /// `approved` or `pending`.
    pub status: String,
}

/// The answer to an accepted report (200 for a duplicate, 201 for a new one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAccepted {
    pub node: String,
    pub sequence: u64,
    pub digest: String,
    pub duplicate: bool,
}

/// The JSON body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code, e.g. `bad_signature`, `chain_fork`, `too_large`.
    pub error: String,
    /// What was wrong and what to do, for a person.
    pub message: String,
    /// On chain errors: the node's last accepted sequence and envelope digest, so an agent
    /// can re-chain what it still has to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_digest: Option<String>,
}
