//! Evidence an auditor can check without trusting nodeproof or its operator: `export`
//! writes one tar.gz bundle holding every signed report of a range exactly as the nodes
//! signed it, each node's keys with their validity periods, the exception log, OSCAL
//! assessment results, JUnit and CSV for existing tools, and a manifest (an in-toto
//! statement whose subjects are every file with its SHA-256) signed by the collector's
//! export key. `verify` checks a bundle from its bytes alone: no database, no network.
//!
//! Bundle layout (see docs/collector.md):
//!
//! ```text
//! README.md                          how to verify, with and without nodeproof
//! export-key.pub.pem                 the export key (pin it: verify --export-key)
//! nodes/<node>/keys.json             the node's keys, validity periods, securesystemslib form
//! nodes/<node>/keys/<keyid>.pem      each key as a SubjectPublicKeyInfo PEM
//! nodes/<node>/reports/<seq>-<digest>.json   each envelope as stored (seq: 20 digits)
//! exceptions.json                    the exception log (every add and revoke) and records
//! results.csv                        node,time,check,status,value,source per full report
//! junit.xml                          each node's latest posture in the range
//! assessment-results.json            OSCAL 1.2.1 assessment results, one result per node
//! SHA256SUMS                         `sha256sum -c` input for every file above
//! manifest.intoto.json               DSSE envelope: in-toto statement over all of the above
//! ```

pub mod bundle;
pub mod keyfile;
pub mod manifest;
pub mod oscal;
pub mod verify;

pub use bundle::{export, ExportError, ExportSummary};
pub use manifest::{ExportKey, MANIFEST_FILE, MANIFEST_PREDICATE_TYPE};
pub use verify::{verify_bundle, Fault, VerifyOutcome};
