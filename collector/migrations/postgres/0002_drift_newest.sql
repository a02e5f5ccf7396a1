-- GET /v1/drift with a limit reads the newest changes first (ORDER BY at DESC, id DESC
-- LIMIT n). On (at) alone PostgreSQL must sort each second's changes by id, reading all of
-- a busy second's; on (at, id) it reads exactly the rows it returns, backwards.
CREATE INDEX drift_at_id ON drift (at, id);
DROP INDEX drift_at;
