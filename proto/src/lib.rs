//! nodeproof-proto: the types the agent and the collector share, and the DSSE signing and
//! verification they both rely on. Pure on purpose: no I/O, no clock, no network, so every
//! byte that decides whether evidence is trusted can be tested on its own.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalogue;
pub mod chain;
pub mod dsse;
pub mod keys;
pub mod report;
pub mod statement;
pub mod tabular;
pub mod text;

pub use api::*;
pub use catalogue::{check_meta, CheckMeta, Severity, CATALOGUE_VERSION, CHECKS};
pub use dsse::{
    add_signature, check_unique_keys, pae, sign, sign_statement, verify, verify_envelope,
    verify_signed, Envelope, SignError, Signature, Verified, VerifyError, PAYLOAD_TYPE,
};
pub use keys::{
    keyid, signing_key_from_pem, signing_key_to_pem, verifying_key_from_pem, verifying_key_to_pem,
    KeyError,
};
pub use report::*;
pub use statement::{
    Predicate, Statement, Subject, PREDICATE_TYPE, STATEMENT_TYPE, UNCHANGED_PREDICATE_TYPE,
};
