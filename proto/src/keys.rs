//! Key identity and key files. The agent keeps its signing key in a PKCS#8 PEM file and the
//! collector is given each agent's public key as a SubjectPublicKeyInfo PEM file, the formats
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write, so operators can make
//! and inspect keys with tools they already trust. Decoding checks the PEM label and the
//! algorithm itself before handing the DER to ed25519-dalek, so that the common mistakes (a
//! public key where a private one belongs, an RSA or ECDSA key) get an error that says so
//! instead of an ASN.1 complaint.
//!
//! The key id is the lowercase hex SHA-256 of the raw 32-byte public key: stable, cheap, and
//! the same in every language (see `scripts/dsse_interop.py`). DSSE treats it as an
//! unauthenticated hint; we use it only to pick which signature to check.

use ed25519_dalek::pkcs8::spki::der::pem;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, PrivateKeyInfo};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The PEM label of a PKCS#8 (RFC 5208/5958) private key.
pub const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// The PEM label of a SubjectPublicKeyInfo (RFC 5280) public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// `id-Ed25519` (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "not a PEM file ({reason}): expected a block starting with \
         \"-----BEGIN {expected}-----\""
    )]
    NotPem {
        expected: &'static str,
        reason: String,
    },

    #[error("wrong PEM label \"{found}\", expected \"{expected}\": {hint}")]
    WrongLabel {
        expected: &'static str,
        found: String,
        hint: &'static str,
    },

    #[error(
        "the key is not an ed25519 key (its algorithm is {oid}, ed25519 is {ED25519_OID}): \
         nodeproof signs only with ed25519; make one with `openssl genpkey -algorithm ed25519`"
    )]
    NotEd25519 { oid: String },

    #[error(
        "the {what} is not valid DER for its PEM label ({reason}): the file is damaged or \
         was not written by a PKCS#8/SPKI encoder"
    )]
    Malformed { what: &'static str, reason: String },

    #[error(
        "the public key is a weak (small-order) ed25519 point that any signature could \
         match: refuse it and ask for the agent's real public key"
    )]
    WeakKey,

    #[error("could not encode the {what} as PEM: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// The key id of `key`: lowercase hex SHA-256 of its raw 32 bytes.
pub fn keyid(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Encodes `key` as a PKCS#8 v1 PEM ("PRIVATE KEY"), wiped from memory when dropped.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<Zeroizing<String>, KeyError> {
    key.to_pkcs8_pem(pem::LineEnding::LF)
        .map_err(|e| KeyError::Encode {
            what: "private key",
            reason: e.to_string(),
        })
}

/// Decodes a PKCS#8 PEM ("PRIVATE KEY") holding an ed25519 key. When the file carries the
/// public key too (PKCS#8 v2), it must match the private key.
pub fn signing_key_from_pem(pem_text: &str) -> Result<SigningKey, KeyError> {
    let der = Zeroizing::new(decode_pem(pem_text, PRIVATE_KEY_LABEL)?);
    let info = PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| KeyError::Malformed {
        what: "private key",
        reason: e.to_string(),
    })?;
    require_ed25519(&info.algorithm.oid.to_string())?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::Malformed {
        what: "private key",
        reason: e.to_string(),
    })
}

/// Encodes `key` as a SubjectPublicKeyInfo PEM ("PUBLIC KEY").
pub fn verifying_key_to_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(pem::LineEnding::LF)
        .map_err(|e| KeyError::Encode {
            what: "public key",
            reason: e.to_string(),
        })
}

/// Decodes a SubjectPublicKeyInfo PEM ("PUBLIC KEY") holding an ed25519 key, refusing
/// small-order points.
pub fn verifying_key_from_pem(pem_text: &str) -> Result<VerifyingKey, KeyError> {
    let der = decode_pem(pem_text, PUBLIC_KEY_LABEL)?;
    let info =
        SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|e| KeyError::Malformed {
            what: "public key",
            reason: e.to_string(),
        })?;
    require_ed25519(&info.algorithm.oid.to_string())?;
    let key = VerifyingKey::from_public_key_der(&der).map_err(|e| KeyError::Malformed {
        what: "public key",
        reason: e.to_string(),
    })?;
    if key.is_weak() {
        return Err(KeyError::WeakKey);
    }
    Ok(key)
}

fn decode_pem(pem_text: &str, expected: &'static str) -> Result<Vec<u8>, KeyError> {
    let (label, der) =
        pem::decode_vec(pem_text.trim().as_bytes()).map_err(|e| KeyError::NotPem {
            expected,
            reason: e.to_string(),
        })?;
    if label != expected {
        return Err(KeyError::WrongLabel {
            expected,
            found: label.to_string(),
            hint: label_hint(expected, label),
        });
    }
    Ok(der)
}

fn label_hint(expected: &str, found: &str) -> &'static str {
    match (expected, found) {
        (PRIVATE_KEY_LABEL, PUBLIC_KEY_LABEL) => {
            "this is a public key; signing needs the agent's private key file"
        }
        (PUBLIC_KEY_LABEL, PRIVATE_KEY_LABEL) => {
            "this is a private key; give the verifier only the public key \
             (`openssl pkey -in key.pem -pubout`), and keep the private key on the node"
        }
        (_, "ENCRYPTED PRIVATE KEY") => {
            "encrypted keys are not supported; decrypt it with `openssl pkey -in key.pem`"
        }
        (_, "OPENSSH PRIVATE KEY") => {
            "OpenSSH key files are not supported; make a PKCS#8 key with \
             `openssl genpkey -algorithm ed25519`"
        }
        _ => "use an unencrypted PKCS#8 \"PRIVATE KEY\" or SPKI \"PUBLIC KEY\" PEM file",
    }
}

fn require_ed25519(oid: &str) -> Result<(), KeyError> {
    if oid == ED25519_OID {
        Ok(())
    } else {
        Err(KeyError::NotEd25519 {
            oid: oid.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn pem_round_trips() {
        let sk = key();
        let pem = signing_key_to_pem(&sk).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            signing_key_from_pem(&pem).unwrap().to_bytes(),
            sk.to_bytes()
        );

        let vk = sk.verifying_key();
        let pem = verifying_key_to_pem(&vk).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(verifying_key_from_pem(&pem).unwrap(), vk);
    }

    #[test]
    fn keyid_is_sha256_of_raw_key() {
        let vk = key().verifying_key();
        let id = keyid(&vk);
        assert_eq!(id.len(), 64);
        assert_eq!(id, hex::encode(Sha256::digest(vk.to_bytes())));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn swapped_files_get_a_label_error() {
        let sk = key();
        let public = verifying_key_to_pem(&sk.verifying_key()).unwrap();
        let private = signing_key_to_pem(&sk).unwrap();
        let err = signing_key_from_pem(&public).unwrap_err();
        assert!(matches!(err, KeyError::WrongLabel { .. }), "{err}");
        assert!(err.to_string().contains("public key"), "{err}");
        let err = verifying_key_from_pem(&private).unwrap_err();
        assert!(matches!(err, KeyError::WrongLabel { .. }), "{err}");
    }

    #[test]
    fn garbage_is_not_pem() {
        assert!(matches!(
            verifying_key_from_pem("hello"),
            Err(KeyError::NotPem { .. })
        ));
        assert!(matches!(
            signing_key_from_pem(""),
            Err(KeyError::NotPem { .. })
        ));
    }

    #[test]
    fn other_algorithms_are_refused() {
        // An EC P-256 public key (`openssl ecparam -genkey -name prime256v1 | openssl ec -pubout`).
        let p256 = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEookkDtW20Qa0abkHqfWGDxNxjmdr\n\
AgzjqflZrxCgkVOQzOQyJYntgJ2te3Fx8QxdT2nXpoJ37xmPAUzlyegyzA==\n\
-----END PUBLIC KEY-----\n";
        let err = verifying_key_from_pem(p256).unwrap_err();
        assert!(matches!(err, KeyError::NotEd25519 { .. }), "{err}");
        assert!(err.to_string().contains("1.2.840.10045.2.1"), "{err}");
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point (y = 1) has order 1.
        let mut raw = [0u8; 32];
        raw[0] = 1;
        let weak = VerifyingKey::from_bytes(&raw).unwrap();
        let pem = verifying_key_to_pem(&weak).unwrap();
        assert!(matches!(
            verifying_key_from_pem(&pem),
            Err(KeyError::WeakKey)
        ));
    }
}
