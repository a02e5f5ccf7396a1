//! The signed requests that introduce a node to the collector and change its key, built
//! without I/O so their signatures are tested here.
//!
//! Enrolment is signed by the key being enrolled (proof of possession); a rotation is
//! signed by the current key and co-signed by the new one, so the collector knows both the
//! node asked and the new key's holder agreed.

use ed25519_dalek::SigningKey;
use nodeproof_proto::{
    add_signature, keyid, sign, verifying_key_to_pem, EnrollRequest, Envelope, KeyError,
    RotateRequest, ENROLL_PAYLOAD_TYPE, ROTATE_PAYLOAD_TYPE,
};

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("could not encode the public key: {0}")]
    Key(#[from] KeyError),
    #[error("could not serialize the request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("could not co-sign the rotation: {0}")]
    CoSign(#[from] nodeproof_proto::VerifyError),
    #[error(
        "the new key is the current key (keyid {0}): create a new one with \
         `nodeproof-agent keygen --out DIR` and pass it as --new-key"
    )]
    SameKey(String),
    #[error("the node name is empty: pass --node-name NAME")]
    EmptyNode,
}

/// `POST /v1/enroll`'s body: `EnrollRequest {node, public_key, token, time}` signed by `key`.
pub fn enroll_envelope(
    node: &str,
    key: &SigningKey,
    token: Option<String>,
    time: String,
) -> Result<Envelope, RequestError> {
    if node.trim().is_empty() {
        return Err(RequestError::EmptyNode);
    }
    let request = EnrollRequest {
        node: node.to_string(),
        public_key: verifying_key_to_pem(&key.verifying_key())?,
        token,
        time,
    };
    let payload = serde_json::to_vec(&request)?;
    Ok(sign(ENROLL_PAYLOAD_TYPE, &payload, key))
}

/// `POST /v1/rotate`'s body: `RotateRequest {node, new_public_key, time}` signed by `old`
/// and co-signed by `new`.
pub fn rotate_envelope(
    node: &str,
    old: &SigningKey,
    new: &SigningKey,
    time: String,
) -> Result<Envelope, RequestError> {
    if node.trim().is_empty() {
        return Err(RequestError::EmptyNode);
    }
    if old.verifying_key() == new.verifying_key() {
        return Err(RequestError::SameKey(keyid(&old.verifying_key())));
    }
    let request = RotateRequest {
        node: node.to_string(),
        new_public_key: verifying_key_to_pem(&new.verifying_key())?,
        time,
    };
    let payload = serde_json::to_vec(&request)?;
    let mut envelope = sign(ROTATE_PAYLOAD_TYPE, &payload, old);
    add_signature(&mut envelope, new)?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::{verify_signed, verifying_key_from_pem, PAYLOAD_TYPE};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn enrolment_is_signed_by_the_enrolled_key() {
        let k = key(3);
        let env = enroll_envelope(
            "node-1",
            &k,
            Some("npt_x".into()),
            "2026-01-01T00:00:00Z".into(),
        )
        .unwrap();
        let (payload, id) = verify_signed(&env, &k.verifying_key(), ENROLL_PAYLOAD_TYPE).unwrap();
        assert_eq!(id, keyid(&k.verifying_key()));
        let req: EnrollRequest = serde_json::from_slice(&payload).unwrap();
        assert_eq!(req.node, "node-1");
        assert_eq!(req.token.as_deref(), Some("npt_x"));
        assert_eq!(
            verifying_key_from_pem(&req.public_key).unwrap(),
            k.verifying_key()
        );
        // Not a report: the report payload type must not verify.
        assert!(verify_signed(&env, &k.verifying_key(), PAYLOAD_TYPE).is_err());
    }

    #[test]
    fn enrolment_without_token_leaves_it_out() {
        let env = enroll_envelope("n", &key(3), None, "t".into()).unwrap();
        let (payload, _) =
            verify_signed(&env, &key(3).verifying_key(), ENROLL_PAYLOAD_TYPE).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(v.get("token").is_none());
    }

    #[test]
    fn rotation_is_signed_by_both_keys() {
        let (old, new) = (key(1), key(2));
        let env = rotate_envelope("n", &old, &new, "t".into()).unwrap();
        assert_eq!(env.signatures.len(), 2);
        let (p1, _) = verify_signed(&env, &old.verifying_key(), ROTATE_PAYLOAD_TYPE).unwrap();
        let (p2, _) = verify_signed(&env, &new.verifying_key(), ROTATE_PAYLOAD_TYPE).unwrap();
        assert_eq!(p1, p2);
        let req: RotateRequest = serde_json::from_slice(&p1).unwrap();
        assert_eq!(
            verifying_key_from_pem(&req.new_public_key).unwrap(),
            new.verifying_key()
        );
        assert!(verify_signed(&env, &key(9).verifying_key(), ROTATE_PAYLOAD_TYPE).is_err());
    }

    #[test]
    fn rotation_to_the_same_key_is_refused() {
        assert!(matches!(
            rotate_envelope("n", &key(1), &key(1), "t".into()),
            Err(RequestError::SameKey(_))
        ));
    }

    #[test]
    fn empty_node_names_are_refused() {
        assert!(matches!(
            enroll_envelope(" ", &key(1), None, "t".into()),
            Err(RequestError::EmptyNode)
        ));
    }
}
