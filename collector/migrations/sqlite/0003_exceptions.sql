-- Exceptions (waivers): an operator's recorded decision that a failing check is accepted on
-- one node (or all) until a time. The signed reports are untouched; the fleet view applies
-- exceptions when it is read, so an expired one fails again with nobody touching anything.

CREATE TABLE exceptions (
    id           INTEGER PRIMARY KEY,
    -- The catalogue's check id and CIS number (the collector's copy, never a report's).
    check_id     TEXT    NOT NULL,
    cis          TEXT    NOT NULL,
    -- NULL: every node.
    node         TEXT,
    -- Unix seconds: the exception applies while now < until_at.
    until_at     INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    revoked_by   TEXT,
    revoke_reason TEXT
) STRICT;

CREATE INDEX exceptions_check ON exceptions (check_id);

-- Every add and revoke, who, when and why: the evidence export reads this. Append-only:
-- the triggers refuse to change or delete a row.
CREATE TABLE exception_events (
    id           INTEGER PRIMARY KEY,
    exception_id INTEGER NOT NULL REFERENCES exceptions (id),
    action       TEXT    NOT NULL CHECK (action IN ('add', 'revoke')),
    at           INTEGER NOT NULL,
    by           TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    check_id     TEXT    NOT NULL,
    node         TEXT,
    until_at     INTEGER NOT NULL
) STRICT;

CREATE TRIGGER exception_events_no_update BEFORE UPDATE ON exception_events
BEGIN
    SELECT RAISE(ABORT, 'exception_events is append-only');
END;

CREATE TRIGGER exception_events_no_delete BEFORE DELETE ON exception_events
BEGIN
    SELECT RAISE(ABORT, 'exception_events is append-only');
END;
