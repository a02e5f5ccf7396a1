//! A DSSE envelope as a peer sends it to the collector: parsing and verification must
//! reject anything malformed without panicking.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use nodeproof_proto::dsse::{self, Envelope};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let _ = Envelope::from_json_bytes(data);
    let _ = dsse::verify(data, &key);
});
