//! The storage story: what every [`Store`] backend must do, written once against
//! `&dyn Store` so the SQLite tests run it today and a PostgreSQL backend runs the same
//! stories later (as atuin's `tests-database` does for its servers).
//!
//! Each story takes a fresh, empty store. Times are passed in explicitly (no clock, no
//! sleeps), digests and keys are deterministic fakes: the store treats them as opaque.
//! A failing assertion panics with a message that says which promise broke.

mod claims;
mod evidence;
mod exceptions;
mod fixtures;
mod fleet;
mod ingest;
mod nodes;

pub use claims::{
    claims_expire_one_by_one, pending_claims_and_deletion, several_claims_on_a_pending_name,
};
pub use evidence::evidence_export;
pub use exceptions::exceptions;
pub use fixtures::{check, fake_hex, rfc3339, unscored, Agent};
pub use fleet::{
    drift_newest, drift_since, failing_by_check, failing_checks, fleet_summary, stale_nodes,
};
pub use ingest::{
    batch_atomicity, chain_events, chain_events_are_counted,
    commit_refuses_a_notice_that_breaks_the_chain, full_reports, stored_chain_has_no_gap,
    unchanged_runs,
};
pub use nodes::{approval_and_revocation, enrolment, key_rotation, tokens};

use super::Store;

/// A story: one promise of the `Store` contract, checked on a fresh store.
pub type Story = fn(&dyn Store);

/// Every story, by name, so a backend's test file can run them one test each.
pub const STORIES: &[(&str, Story)] = &[
    ("tokens", tokens),
    ("enrolment", enrolment),
    ("approval_and_revocation", approval_and_revocation),
    ("key_rotation", key_rotation),
    ("full_reports", full_reports),
    ("unchanged_runs", unchanged_runs),
    ("stored_chain_has_no_gap", stored_chain_has_no_gap),
    (
        "commit_refuses_a_notice_that_breaks_the_chain",
        commit_refuses_a_notice_that_breaks_the_chain,
    ),
    ("batch_atomicity", batch_atomicity),
    ("fleet_summary", fleet_summary),
    ("failing_by_check", failing_by_check),
    ("drift_since", drift_since),
    ("drift_newest", drift_newest),
    ("chain_events", chain_events),
    ("chain_events_are_counted", chain_events_are_counted),
    ("pending_claims_and_deletion", pending_claims_and_deletion),
    (
        "several_claims_on_a_pending_name",
        several_claims_on_a_pending_name,
    ),
    ("claims_expire_one_by_one", claims_expire_one_by_one),
    ("failing_checks", failing_checks),
    ("stale_nodes", stale_nodes),
    ("exceptions", exceptions),
    ("evidence_export", evidence_export),
];

/// Runs every story, each on a store from `make` (which must return an empty one).
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, story) in STORIES {
        eprintln!("storage story: {name}");
        story(&*make());
    }
}
