-- Several pending claims per name (issue 11). The first claim on a name stays the pending
-- row in `nodes` (so the agent's polling, ingest's "not approved yet" answer, the tallies
-- and deletion work as before); every later token-less claim on the same name, with
-- another key, waits here until an operator picks one with `nodes approve NAME --key-id`.
-- A row exists only while its name's `nodes` row is pending: approving, revoking or
-- deleting the name drops them. A key claims at most one name (PRIMARY KEY).
CREATE TABLE extra_claims (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL REFERENCES nodes (name),
    public_key TEXT    NOT NULL,
    source     TEXT,
    claimed_at INTEGER NOT NULL
) STRICT;

CREATE INDEX extra_claims_name ON extra_claims (name, claimed_at);
CREATE INDEX extra_claims_age ON extra_claims (claimed_at);
