-- Every fleet view (GET /v1/fleet, /v1/overview, /v1/matrix) reads every failing check of
-- every approved node. With only the primary key (node, cis) and node_checks_by_check
-- (cis, status), SQLite walked every approved node and read all 14 of its check rows
-- (1.4 million rows at 100,000 nodes) to keep the few failing ones.
--
-- The failing rows, in node order, with every column the read returns: the read scans this
-- index alone, the failing part of the table only (4 % of the rows in the benchmark), and
-- looks each row's node up by name. Its entries change only when a check starts or stops
-- failing, so it costs nothing on an unchanged report.
CREATE INDEX node_checks_failing ON node_checks (node, cis, id, status, since_at)
    WHERE status IN ('fail', 'error');
