//! DSSE (Dead Simple Signing Envelope) v1 signing and verification of in-toto statements.
//! See <https://github.com/secure-systems-lab/dsse/blob/master/protocol.md> and `envelope.md`.
//!
//! This is where the collector decides whether evidence is trusted, so [`verify`] is a pure
//! function of the envelope bytes and one key, and it never looks inside the payload until
//! the signature over the exact payload bytes has checked out. [`Verified`] hands those exact
//! bytes back, so a caller can store what was signed rather than a re-serialization.
//!
//! Decisions where the spec leaves room, all made in favour of one reading of an envelope:
//!
//! * Unknown envelope fields are ignored, as DSSE requires of consumers ("Consumers MUST
//!   ignore unrecognized fields"). They are not signed and [`Envelope`] does not keep them,
//!   so nothing downstream can mistake them for evidence. A field given twice
//!   (`"payload"` two times) is an error, so two JSON parsers cannot read two envelopes.
//! * Base64 must be the canonical standard encoding (RFC 4648 alphabet, `=` padding, zero
//!   trailing bits). DSSE also allows URL-safe and unpadded encodings; we produce only the
//!   canonical form and reject the others with [`VerifyError::NonCanonicalBase64`], so one
//!   payload has one encoding and an envelope's bytes identify what was signed.
//! * `keyid` is an unauthenticated hint: it only chooses which signature to check, never
//!   whether to trust it. We take the signature whose keyid is [`keyid`] of the key we were
//!   given. An unset or empty keyid means "unspecified" (DSSE: unset is the same as empty)
//!   and is checked only when no signature names our key. Two signatures with the same
//!   keyid, including two unset ones, make the envelope ambiguous and are rejected.
//! * Every signature's `sig` must be canonical base64, but only the chosen one must be a
//!   64-byte ed25519 signature: co-signers may use other algorithms.
//! * Signatures are checked with `verify_strict` (no small-order keys, no malleable `s`).
//! * The signed payload is parsed strictly: an object that names a key twice, at any depth,
//!   is a malformed statement ([`check_unique_keys`]). JSON leaves duplicate keys undefined
//!   (RFC 8259 §4: "SHOULD be unique"), and serde keeps the last one for maps and ignored
//!   fields, so another verifier could read a different report out of the same signed bytes.
//! * What is kept as evidence is [`Envelope::evidence`]: payloadType, payload and the one
//!   signature that verified, labelled with the verifying key's id, as compact JSON. Unsigned
//!   extra fields, co-signatures nobody checked and whitespace are dropped, so one signed
//!   statement has one stored form and one digest. It is byte for byte what [`sign`] and
//!   [`Envelope::to_json_bytes`] produce, so an agent's digest of what it sent is the same.

use std::collections::BTreeSet;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::keys::keyid;
use crate::statement::{
    is_sha256_hex, Statement, PREDICATE_TYPE, STATEMENT_TYPE, SUBJECT_DIGEST_ALGORITHM,
    UNCHANGED_PREDICATE_TYPE,
};

/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE JSON envelope, as it travels from the agent to the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signed bytes, standard base64 with padding.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

/// One signature in an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// [`keyid`] of the signing key; unset on the wire means empty.
    #[serde(default)]
    pub keyid: String,
    /// The ed25519 signature over [`pae`], standard base64 with padding.
    pub sig: String,
}

/// What [`verify`] returns: the statement, and the exact bytes the signature covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The exact signed bytes (the decoded `payload`).
    pub payload: Vec<u8>,
    /// `payload` parsed, after the signature checked out.
    pub statement: Statement,
    /// The keyid of the key that verified it.
    pub keyid: String,
}

/// Why a statement could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "could not serialize the statement as JSON ({0}): this is a bug in the report builder"
    )]
    Serialize(#[from] serde_json::Error),
}

/// Why an envelope was not accepted. Each variant is one distinct failure, so tests and the
/// collector can tell an attack from a misconfiguration.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "the envelope is not DSSE JSON ({0}): expected an object with \"payloadType\", \
         \"payload\" and \"signatures\"; the sender may be misconfigured or the body was cut off"
    )]
    MalformedEnvelope(#[source] serde_json::Error),

    #[error(
        "the envelope's payloadType is \"{found}\", expected \"{PAYLOAD_TYPE}\": \
         it does not carry an in-toto statement"
    )]
    WrongPayloadType { found: String },

    #[error(
        "the envelope's {field} is not base64 ({source}): it must be standard base64 \
         with padding; the envelope was damaged in transit or not written by a DSSE signer"
    )]
    NotBase64 {
        field: String,
        #[source]
        source: base64::DecodeError,
    },

    #[error(
        "the envelope's {field} is base64 but not in canonical form (standard alphabet, \
         '=' padding, no stray trailing bits): re-encode it canonically; nodeproof agents \
         always do, so this envelope was altered"
    )]
    NonCanonicalBase64 { field: String },

    #[error("the envelope has no signatures: it was never signed; sign it with the agent's key")]
    NoSignatures,

    #[error(
        "the envelope has more than one signature with keyid {}: it is ambiguous which one \
         counts; an envelope may hold one signature per key",
        display_keyid(.keyid)
    )]
    DuplicateSignatures { keyid: String },

    #[error(
        "no signature in the envelope is from key {keyid} (it has keyids {}): it was signed \
         by another key; check that the verifier has this agent's public key",
        .found.iter().map(|k| display_keyid(k)).collect::<Vec<_>>().join(", ")
    )]
    NoSignatureForKey { keyid: String, found: Vec<String> },

    #[error(
        "the signature for key {keyid} is {len} bytes, an ed25519 signature is 64: \
         it was truncated or made with another algorithm"
    )]
    SignatureLength { keyid: String, len: usize },

    #[error(
        "the verifying key {keyid} is a weak (small-order) ed25519 point: no signature from it \
         can be trusted; configure the agent's real public key"
    )]
    WeakKey { keyid: String },

    #[error(
        "signature does not verify with key {keyid}: the payload was changed after signing, \
         or it was signed by another key"
    )]
    BadSignature { keyid: String },

    #[error(
        "the signed payload is not an in-toto statement with a nodeproof report ({0}): \
         the signer is running an incompatible agent version"
    )]
    MalformedStatement(#[source] serde_json::Error),

    #[error(
        "the statement's _type is \"{found}\", expected \"{STATEMENT_TYPE}\": \
         it is not an in-toto v1 statement"
    )]
    WrongStatementType { found: String },

    #[error(
        "the statement's predicateType is \"{found}\", expected \"{PREDICATE_TYPE}\": \
         it is validly signed but is not a nodeproof kubelet report"
    )]
    WrongPredicateType { found: String },

    #[error("the statement has no subjects: a report must name at least one artifact by digest")]
    NoSubjects,

    #[error(
        "subject {index} (\"{name}\") has no valid sha256 digest ({reason}): each subject \
         needs \"digest\": {{\"sha256\": <64 lowercase hex digits>}}"
    )]
    BadSubjectDigest {
        index: usize,
        name: String,
        reason: String,
    },
}

fn display_keyid(keyid: &str) -> String {
    if keyid.is_empty() {
        "(unset)".to_string()
    } else {
        keyid.to_string()
    }
}

/// DSSE v1 pre-authentication encoding: what is actually signed.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = payload.len().to_string();
    let mut out = Vec::with_capacity(
        "DSSEv1".len() + 4 + type_len.len() + payload_type.len() + body_len.len() + payload.len(),
    );
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` as `payload_type` with `key`, labelling the signature with its [`keyid`].
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload_type: payload_type.to_string(),
        payload: STANDARD.encode(payload),
        signatures: vec![Signature {
            keyid: keyid(&key.verifying_key()),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    }
}

/// Serializes `statement` to JSON once and signs exactly those bytes.
pub fn sign_statement(statement: &Statement, key: &SigningKey) -> Result<Envelope, SignError> {
    let payload = serde_json::to_vec(statement)?;
    Ok(sign(PAYLOAD_TYPE, &payload, key))
}

impl Envelope {
    /// The envelope as evidence after [`verify_signed`] (or [`verify_envelope`]) checked
    /// it with the key whose id is `keyid`: the payload type, the payload and only the
    /// signature that verified (with `keyid` as its label), nothing else. `None` when no
    /// signature would have been chosen for that key. See the module documentation.
    pub fn evidence(&self, keyid: &str) -> Option<Envelope> {
        let chosen = chosen_signature(self, keyid)?;
        Some(Envelope {
            payload_type: self.payload_type.clone(),
            payload: self.payload.clone(),
            signatures: vec![Signature {
                keyid: keyid.to_string(),
                sig: self.signatures[chosen].sig.clone(),
            }],
        })
    }

    /// The envelope as compact JSON, as it is spooled and sent.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings cannot fail: no maps with non-string keys, no
        // floats, no custom serializers.
        serde_json::to_vec(self).expect("an envelope of strings always serializes")
    }

    /// Parses envelope JSON without checking anything but its shape, e.g. so the collector
    /// can read the keyids to find candidate keys. Trust nothing in it until [`verify`].
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Envelope, VerifyError> {
        serde_json::from_slice(bytes).map_err(VerifyError::MalformedEnvelope)
    }
}

/// Verifies DSSE envelope JSON against `key` and, only then, parses and checks the statement.
/// See the module documentation for the rules.
pub fn verify(envelope_json: &[u8], key: &VerifyingKey) -> Result<Verified, VerifyError> {
    verify_envelope(&Envelope::from_json_bytes(envelope_json)?, key)
}

/// [`verify`] for an envelope that is already parsed.
pub fn verify_envelope(envelope: &Envelope, key: &VerifyingKey) -> Result<Verified, VerifyError> {
    let (payload, keyid) = verify_signed(envelope, key, PAYLOAD_TYPE)?;
    // Authenticated from here on.
    let statement = parse_statement(&payload)?;
    Ok(Verified {
        payload,
        statement,
        keyid,
    })
}

/// Checks an envelope's signature by `key` over a payload of `payload_type`, and returns
/// the payload's exact bytes and the key's id; nothing in the payload is parsed. For
/// envelopes that carry something other than a statement (enrolment, key rotation).
pub fn verify_signed(
    envelope: &Envelope,
    key: &VerifyingKey,
    payload_type: &str,
) -> Result<(Vec<u8>, String), VerifyError> {
    if envelope.payload_type != payload_type {
        return Err(VerifyError::WrongPayloadType {
            found: envelope.payload_type.clone(),
        });
    }
    let payload = decode_canonical("payload", &envelope.payload)?;

    if envelope.signatures.is_empty() {
        return Err(VerifyError::NoSignatures);
    }
    let mut seen = BTreeSet::new();
    for s in &envelope.signatures {
        if !seen.insert(s.keyid.as_str()) {
            return Err(VerifyError::DuplicateSignatures {
                keyid: s.keyid.clone(),
            });
        }
    }
    let sigs = envelope
        .signatures
        .iter()
        .enumerate()
        .map(|(i, s)| decode_canonical(&format!("signatures[{i}].sig"), &s.sig))
        .collect::<Result<Vec<_>, _>>()?;

    let want = keyid(key);
    let chosen =
        chosen_signature(envelope, &want).ok_or_else(|| VerifyError::NoSignatureForKey {
            keyid: want.clone(),
            found: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        })?;
    let sig_bytes: [u8; 64] =
        sigs[chosen]
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::SignatureLength {
                keyid: want.clone(),
                len: sigs[chosen].len(),
            })?;
    if key.is_weak() {
        return Err(VerifyError::WeakKey { keyid: want });
    }
    key.verify_strict(
        &pae(&envelope.payload_type, &payload),
        &ed25519_dalek::Signature::from_bytes(&sig_bytes),
    )
    .map_err(|_| VerifyError::BadSignature {
        keyid: want.clone(),
    })?;
    Ok((payload, want))
}

/// The signature checked for the key `want`: the one labelled with its id, else an
/// unlabelled one.
fn chosen_signature(envelope: &Envelope, want: &str) -> Option<usize> {
    envelope
        .signatures
        .iter()
        .position(|s| s.keyid == want)
        .or_else(|| envelope.signatures.iter().position(|s| s.keyid.is_empty()))
}

/// Checks that no JSON object in `json` names a key twice, at any depth (keys compared
/// after unescaping, so `"a"` and `"\u0061"` are the same key). Run on signed payloads
/// before they are parsed into types: serde would silently keep the last of two keys in
/// a map or an ignored field, and another reader might keep the first.
pub fn check_unique_keys(json: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(json).map(|_| ())
}

/// A JSON value walked only to find duplicate keys; nothing is kept but the keys of the
/// object being read.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueKeys, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?} in one object: a signed payload must name each key \
                     once, so every reader reads the same statement"
                )));
            }
            map.next_value::<UniqueKeys>()?;
            seen.insert(key);
        }
        Ok(UniqueKeys)
    }
}

/// Adds `key`'s signature to an envelope that others signed (DSSE allows several), e.g.
/// the new key's co-signature on a key rotation.
pub fn add_signature(envelope: &mut Envelope, key: &SigningKey) -> Result<(), VerifyError> {
    let payload = decode_canonical("payload", &envelope.payload)?;
    let sig = key.sign(&pae(&envelope.payload_type, &payload));
    envelope.signatures.push(Signature {
        keyid: keyid(&key.verifying_key()),
        sig: STANDARD.encode(sig.to_bytes()),
    });
    Ok(())
}

/// The two fields that say what a payload is, read before the whole statement so that a
/// statement of another type gets "wrong type" rather than a schema error.
#[derive(Deserialize)]
struct StatementHeader {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

fn parse_statement(payload: &[u8]) -> Result<Statement, VerifyError> {
    check_unique_keys(payload).map_err(VerifyError::MalformedStatement)?;
    let header: StatementHeader =
        serde_json::from_slice(payload).map_err(VerifyError::MalformedStatement)?;
    if header.type_ != STATEMENT_TYPE {
        return Err(VerifyError::WrongStatementType {
            found: header.type_,
        });
    }
    if header.predicate_type != PREDICATE_TYPE && header.predicate_type != UNCHANGED_PREDICATE_TYPE
    {
        return Err(VerifyError::WrongPredicateType {
            found: header.predicate_type,
        });
    }
    let statement: Statement =
        serde_json::from_slice(payload).map_err(VerifyError::MalformedStatement)?;
    if statement.subject.is_empty() {
        return Err(VerifyError::NoSubjects);
    }
    for (index, subject) in statement.subject.iter().enumerate() {
        let reason = match subject.digest.get(SUBJECT_DIGEST_ALGORITHM) {
            None => Some("no \"sha256\" entry".to_string()),
            Some(d) if !is_sha256_hex(d) => Some(format!("\"{d}\" is not 64 lowercase hex")),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            return Err(VerifyError::BadSubjectDigest {
                index,
                name: subject.name.clone(),
                reason,
            });
        }
    }
    Ok(statement)
}

/// Accepts standard base64 with padding only, and tells a non-canonical encoding of some
/// bytes (unpadded, URL-safe, stray trailing bits) apart from text that is not base64 at all.
fn decode_canonical(field: &str, text: &str) -> Result<Vec<u8>, VerifyError> {
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

    match STANDARD.decode(text) {
        // STANDARD already requires padding and zero trailing bits; the round trip makes
        // "one encoding per payload" true by construction rather than by engine settings.
        Ok(bytes) if STANDARD.encode(&bytes) == text => Ok(bytes),
        Ok(_) => Err(VerifyError::NonCanonicalBase64 {
            field: field.to_string(),
        }),
        Err(source) => {
            if LENIENT_STANDARD.decode(text).is_ok() || LENIENT_URL_SAFE.decode(text).is_ok() {
                Err(VerifyError::NonCanonicalBase64 {
                    field: field.to_string(),
                })
            } else {
                Err(VerifyError::NotBase64 {
                    field: field.to_string(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> Result<Vec<u8>, VerifyError> {
        decode_canonical("payload", text)
    }

    #[test]
    fn canonical_base64_decodes() {
        assert_eq!(canonical("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(canonical("").unwrap(), b"");
        assert_eq!(canonical("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn missing_padding_is_non_canonical() {
        assert!(matches!(
            canonical("aGVsbG8"),
            Err(VerifyError::NonCanonicalBase64 { .. })
        ));
    }

    #[test]
    fn trailing_bits_are_non_canonical() {
        // "aGVsbG8=" with the last symbol's unused low bits set.
        assert!(matches!(
            canonical("aGVsbG9="),
            Err(VerifyError::NonCanonicalBase64 { .. })
        ));
    }

    #[test]
    fn url_safe_alphabet_is_non_canonical() {
        assert!(matches!(
            canonical("-_-_"),
            Err(VerifyError::NonCanonicalBase64 { .. })
        ));
    }

    #[test]
    fn junk_is_not_base64() {
        for junk in ["not base64!", "aGVs\nbG8=", "aGVsbG8==", "====", "a"] {
            assert!(
                matches!(canonical(junk), Err(VerifyError::NotBase64 { .. })),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert!(check_unique_keys(br#"{"a":1,"b":[{"c":2,"d":3}]}"#).is_ok());
        for dup in [
            &br#"{"a":1,"a":1}"#[..],
            br#"{"x":{"y":[{"c":2,"c":3}]}}"#,
            br#"{"a":1,"\u0061":2}"#,
        ] {
            let err = check_unique_keys(dup).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
        // The same key in two objects is fine.
        assert!(check_unique_keys(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn evidence_keeps_only_the_verified_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut env = sign(PAYLOAD_TYPE, b"{}", &key);
        let honest = env.to_json_bytes();
        let other = SigningKey::from_bytes(&[8; 32]);
        add_signature(&mut env, &other).unwrap();
        let id = keyid(&key.verifying_key());
        let evidence = env.evidence(&id).unwrap();
        assert_eq!(
            evidence.to_json_bytes(),
            honest,
            "what the agent sent, byte for byte"
        );
        // An unlabelled signature is relabelled with the verifying key's id.
        env.signatures = vec![Signature {
            keyid: String::new(),
            sig: env.signatures[0].sig.clone(),
        }];
        assert_eq!(env.evidence(&id).unwrap().to_json_bytes(), honest);
        env.signatures[0].keyid = "someone-else".into();
        assert!(env.evidence(&id).is_none());
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        assert_eq!(pae("é", b""), "DSSEv1 2 é 0 ".as_bytes());
    }

    #[test]
    fn keyid_display_names_unset() {
        let err = VerifyError::DuplicateSignatures {
            keyid: String::new(),
        };
        assert!(err.to_string().contains("(unset)"), "{err}");
    }
}
