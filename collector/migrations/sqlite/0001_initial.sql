-- The first collector schema. Migrations are append-only: never edit this file once it has
-- shipped; add 0002_<name>.sql instead (and list it in src/store/sqlite.rs).
--
-- Times are Unix seconds (UTC) unless the column name says otherwise; scan times are the
-- RFC 3339 strings the agents signed. STRICT tables so a wrong type is an error, not a
-- silently coerced value.

-- A node, its current key and the head of its chain. The fleet summary reads node_tally,
-- check_counts and the stale part of nodes_fleet, never the history.
CREATE TABLE nodes (
    name               TEXT    NOT NULL PRIMARY KEY,
    key_id             TEXT    NOT NULL UNIQUE,
    public_key         TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
    enrolled_at        INTEGER NOT NULL,
    approved_at        INTEGER,
    revoked_at         INTEGER,
    key_rotated_at     INTEGER,
    -- The chain: 0 / NULL before the first accepted statement.
    last_sequence      INTEGER NOT NULL DEFAULT 0,
    last_digest        TEXT,
    last_scan_time     TEXT,
    last_seen          INTEGER,
    interval_secs      INTEGER,
    -- last_seen + 3 * interval_secs: the node is stale once now passes it (NULL: never
    -- reported). Kept as a column so "stale" is an index range, not per-row arithmetic.
    stale_after        INTEGER,
    last_full_digest   TEXT,
    last_full_sequence INTEGER,
    posture            TEXT,
    -- The latest posture: a JSON Summary, the JSON array of scored checks that fail or
    -- error (CIS order), and whether that array is not empty (so "compliant" is an index
    -- range).
    summary            TEXT,
    failing            TEXT    NOT NULL DEFAULT '[]',
    failing_any        INTEGER NOT NULL DEFAULT 0 CHECK (failing_any IN (0, 1)),
    -- Digest of the reports row holding the current run of unchanged notices (the node's
    -- last statement), NULL when the last statement was a full report. The next notice of
    -- the run rewrites that row instead of adding one.
    last_run_digest    TEXT
) STRICT;

-- The fleet summary counts stale nodes as ranges of this index (cost: the stale nodes,
-- not the fleet) and takes everything else from node_tally.
CREATE INDEX nodes_fleet ON nodes (status, failing_any, stale_after);

-- How many nodes have each status and failing_any: nodes grouped, kept up to date by
-- enrolment, status changes and commits, so the summary does not scan nodes.
CREATE TABLE node_tally (
    status      TEXT    NOT NULL,
    failing_any INTEGER NOT NULL,
    n           INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (status, failing_any)
) STRICT, WITHOUT ROWID;

-- Every key a node has held, so envelopes signed before a rotation stay verifiable. A key
-- belongs to one node forever: reusing it (even a retired one) is refused.
CREATE TABLE node_keys (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    node       TEXT    NOT NULL REFERENCES nodes (name),
    public_key TEXT    NOT NULL,
    added_at   INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;

CREATE INDEX node_keys_node ON node_keys (node);

-- Bootstrap tokens: only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
    sha256     TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uses_left  INTEGER CHECK (uses_left IS NULL OR uses_left >= 0) -- NULL: unlimited
) STRICT;

-- Accepted statements: the evidence. Full reports are append-only. A run of unchanged
-- notices is one row, rewritten in place by each notice of the run (digest, sequence,
-- previous, scan_time, received_at, count, envelope), so sequences stay unique per node
-- and increase with the row's age. The envelope is the last column so that reading
-- history does not touch its overflow pages.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY,
    digest          TEXT    NOT NULL UNIQUE,
    node            TEXT    NOT NULL REFERENCES nodes (name),
    sequence        INTEGER NOT NULL,
    previous        TEXT,
    kind            TEXT    NOT NULL CHECK (kind IN ('full', 'unchanged')),
    scan_time       TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    -- JSON Summary of the posture the statement attests (for notices, their full report's).
    summary         TEXT,
    posture         TEXT,
    -- Unchanged notices only: the full report they match, scans in the run, run start.
    since           TEXT,
    count           INTEGER,
    first_unchanged TEXT,
    envelope        BLOB    NOT NULL
) STRICT;

CREATE UNIQUE INDEX reports_history ON reports (node, sequence DESC);

-- The latest state of every check on every node; since_at and digest say when and in
-- which report the check took its current status.
CREATE TABLE node_checks (
    node     TEXT    NOT NULL REFERENCES nodes (name),
    cis      TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    scored   INTEGER NOT NULL CHECK (scored IN (0, 1)),
    status   TEXT    NOT NULL CHECK (status IN ('pass', 'fail', 'warn', 'error')),
    since_at INTEGER NOT NULL,
    digest   TEXT    NOT NULL,
    PRIMARY KEY (node, cis)
) STRICT, WITHOUT ROWID;

CREATE INDEX node_checks_by_check ON node_checks (cis, status);

-- Per-check verdict counts over approved nodes' latest state, kept up to date by every
-- commit and status change. A negative count would be a bug: refuse it.
CREATE TABLE check_counts (
    cis   TEXT    NOT NULL PRIMARY KEY,
    id    TEXT    NOT NULL,
    pass  INTEGER NOT NULL DEFAULT 0 CHECK (pass >= 0),
    fail  INTEGER NOT NULL DEFAULT 0 CHECK (fail >= 0),
    warn  INTEGER NOT NULL DEFAULT 0 CHECK (warn >= 0),
    error INTEGER NOT NULL DEFAULT 0 CHECK (error >= 0)
) STRICT, WITHOUT ROWID;

-- Every change of a check's status (from_status NULL on the node's first report), at the
-- time the collector accepted the report, so polling with `since` never misses a report
-- that was delivered late.
CREATE TABLE drift (
    id          INTEGER PRIMARY KEY,
    node        TEXT    NOT NULL REFERENCES nodes (name),
    cis         TEXT    NOT NULL,
    from_status TEXT    CHECK (from_status IN ('pass', 'fail', 'warn', 'error')),
    to_status   TEXT    NOT NULL CHECK (to_status IN ('pass', 'fail', 'warn', 'error')),
    at          INTEGER NOT NULL,
    digest      TEXT    NOT NULL
) STRICT;

CREATE INDEX drift_at ON drift (at);

-- Refused statements that broke a chain (replay, fork, gap): kept on record.
CREATE TABLE chain_events (
    id                INTEGER PRIMARY KEY,
    node              TEXT    NOT NULL REFERENCES nodes (name),
    kind              TEXT    NOT NULL,
    at                INTEGER NOT NULL,
    expected_sequence INTEGER NOT NULL,
    got_sequence      INTEGER NOT NULL,
    digest            TEXT    NOT NULL,
    detail            TEXT    NOT NULL
) STRICT;

CREATE INDEX chain_events_node ON chain_events (node, id);
