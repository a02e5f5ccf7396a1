-- Every fleet view (GET /v1/fleet's counts, /v1/nodes, /v1/overview, /v1/matrix) reads every
-- failing check of every approved node. With only node_checks_by_check (cis, status),
-- PostgreSQL scanned all of node_checks (14 rows a node: 1.4 million at 100,000 nodes) and
-- hashed every node to keep the approved ones: 185-215 ms at 100,000 nodes.
--
-- The failing rows, in node order, with what the view reads: an index-only scan of the
-- failing part of the table (4 % of the rows in the benchmark). Its entries change only when
-- a check starts or stops failing, so it costs nothing on an unchanged report.
CREATE INDEX node_checks_failing ON node_checks (node, cis) INCLUDE (id, status, since_at)
    WHERE status IN ('fail', 'error');

-- The nodes that are not approved (pending claims, revoked nodes): a handful. The failing
-- read drops their rows with an anti-join against this index instead of hashing the whole
-- nodes table. A row enters this index only while its node is not approved, so the
-- update-heavy approved rows never touch it.
CREATE INDEX nodes_not_approved ON nodes (name) WHERE status <> 'approved';
