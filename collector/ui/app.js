// The nodeproof dashboard: a hash-routed single page over the collector's /v1 JSON API.
// Every value that came from a node (names, check values, origins, hostnames) is put in
// the page with textContent, never parsed as HTML: see el() below, the only way this file
// creates content. The session cookie is HttpOnly; the CSRF token (from /ui/session) is
// sent only with the one change this page makes, logging out.
//
// Each view is an async function that returns the page's new content; route() puts it on
// screen only if no later navigation started meanwhile (a slow answer never replaces a
// newer view), then marks #view with data-route, the hash it shows (the browser tests
// wait on that).

let session = null;
// Bumped by every navigation; a view whose number is no longer current is dropped.
let generation = 0;

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(status) {
  return el("span", { class: `badge s-${status}` }, status);
}

async function api(path) {
  return (await apiResponse(path)).body;
}

/** The JSON body of a GET and the response's headers. */
async function apiResponse(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) {
    location.assign("/ui/login");
    throw new Error("not logged in");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || `${r.status}`);
  return { body, headers: r.headers };
}

function show(children, hash) {
  const view = document.getElementById("view");
  view.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  view.dataset.route = hash;
}

function failure(e) {
  return [el("p", { class: "error", id: "view-error" }, `Could not load: ${e.message}`)];
}

/** The evidence bundle (GET /v1/export, admin only), of one node or of the fleet. */
function exportLink(node, text) {
  if (!session || session.role !== "admin") return null;
  const href = node ? `/v1/export?node=${encodeURIComponent(node)}` : "/v1/export";
  return el("a", { href, download: node ? `nodeproof-evidence-${node}.tar.gz` : "nodeproof-evidence.tar.gz", class: "export" }, text);
}

function reportLink(node, digest, text) {
  return el("a", {
    href: `/v1/nodes/${encodeURIComponent(node)}/reports/${encodeURIComponent(digest)}`,
    download: `${node}-${digest.slice(0, 12)}.json`,
    class: "download",
  }, text);
}

function nodeLink(name) {
  return el("a", { href: `#/node/${encodeURIComponent(name)}`, class: "node-link" }, name);
}

// ---- overview ----------------------------------------------------------------------

async function overview() {
  const o = await api("/v1/overview");
  const statuses = ["ok", "excepted", "failing", "stale", "pending", "revoked"];
  const cards = el("div", { class: "cards", id: "status-cards" },
    statuses.map((s) => el("a", { class: "card", href: `#/matrix?status=${s}`, "data-status": s },
      el("div", { class: "n" }, o.nodes[s]), el("div", { class: "l" }, badge(s)))));
  const sev = el("table", { id: "severities" },
    el("tr", {}, el("th", {}, "Severity"), el("th", {}, "Failing checks"), el("th", {}, "Nodes")),
    o.severities.map((s) => el("tr", {},
      el("td", {}, el("a", { class: `sev-${s.severity}`, href: `#/matrix?severity=${s.severity}` }, s.severity)),
      el("td", {}, s.failures), el("td", {}, s.nodes))));
  const failing = o.checks.filter((c) => c.failing_nodes > 0 || c.excepted_nodes > 0)
    .sort((a, b) => b.failing_nodes - a.failing_nodes);
  const checks = failing.length === 0
    ? el("p", { class: "muted" }, "No check fails on any approved node.")
    : el("table", { id: "failing-checks" },
      el("tr", {}, el("th", {}, "CIS"), el("th", {}, "Check"), el("th", {}, "Severity"),
        el("th", {}, "Failing nodes"), el("th", {}, "Excepted")),
      failing.map((c) => el("tr", {},
        el("td", {}, el("a", { href: `#/matrix?check=${c.cis}` }, c.cis)), el("td", { class: "mono" }, c.id),
        el("td", { class: `sev-${c.severity}` }, c.severity), el("td", {}, c.failing_nodes),
        el("td", {}, c.excepted_nodes))));
  const warnings = o.warnings.length
    ? el("ul", { id: "warnings" }, o.warnings.map((w) => el("li", {}, w))) : null;
  const evidence = exportLink(null, "Download the signed evidence bundle of the whole fleet");
  return [el("h1", {}, "Fleet"), el("p", { class: "muted" }, `As of ${o.generated_at}`), cards,
    el("h2", {}, "Failing checks by severity"), sev,
    el("h2", {}, "Checks that fail"), checks,
    warnings ? el("h2", {}, "Warnings") : null, warnings,
    evidence ? el("h2", {}, "Evidence") : null,
    evidence ? el("p", {}, evidence, el("span", { class: "muted" }, " (every stored statement, keys and chain events, signed with the collector's export key; see docs/verifying-evidence.md)")) : null];
}

// ---- matrix ------------------------------------------------------------------------

const CELL = { fail: "✗", error: "!", excepted: "~", ok: "✓", none: "·" };

async function matrix(params) {
  const q = new URLSearchParams(params);
  if (!q.get("per_page")) q.set("per_page", "50");
  const m = await api(`/v1/matrix?${q}`);
  const go = (changes) => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) {
      if (v === "" || v === null) next.delete(k); else next.set(k, v);
    }
    if (!("page" in changes)) next.delete("page");
    location.hash = `#/matrix?${next}`;
  };
  const select = (name, options, label) => el("label", {}, label,
    el("select", { id: `f-${name}`, onchange: (e) => go({ [name]: e.target.value }) },
      options.map(([v, t]) => el("option", { value: v, selected: (q.get(name) || "") === v }, t))));
  const nodeInput = el("input", { id: "f-node", type: "search", value: q.get("node") || "", placeholder: "part of a name" });
  nodeInput.addEventListener("change", () => go({ node: nodeInput.value.trim() }));
  const filters = el("div", { class: "filters" },
    el("label", {}, "Node", nodeInput),
    select("status", [["", "any"], ...["ok", "excepted", "failing", "stale", "pending", "revoked"].map((s) => [s, s])], "Status"),
    select("severity", [["", "any"], ...["critical", "high", "medium", "low"].map((s) => [s, s])], "Severity"),
    select("check", [["", "any"], ...m.catalogue.map((c) => [c.cis, `${c.cis} ${c.id}`])], "Check"),
    select("sort", [["name", "name"], ["-name", "name, Z to A"], ["failing", "most failures"], ["status", "status"], ["last_seen", "oldest report"]], "Sort"));
  const head = el("tr", {}, el("th", {}, "Node"), el("th", {}, "Status"), el("th", {}, "Failing"),
    m.columns.map((c) => el("th", { class: "col", title: `${c.id} (${c.severity}): show the nodes failing it` },
      el("a", { href: `#/matrix?check=${encodeURIComponent(c.cis)}` }, c.cis))));
  const rows = m.rows.map((r) => el("tr", { "data-node": r.name },
    el("td", {}, nodeLink(r.name)), el("td", {}, badge(r.status)), el("td", {}, r.failing),
    r.cells.map((c, i) => el("td", { class: "cell", title: `${m.columns[i].cis}: ${c}` },
      el("span", { class: `s-${c}`, "data-cell": c }, CELL[c] || c)))));
  const pager = el("div", { class: "pager" },
    el("button", { type: "button", id: "prev", disabled: m.page <= 1, onclick: () => go({ page: m.page - 1 }) }, "‹ Previous"),
    el("span", { id: "page-info" }, `Page ${m.page} of ${m.pages} · ${m.total} nodes`),
    el("button", { type: "button", id: "next", disabled: m.page >= m.pages, onclick: () => go({ page: m.page + 1 }) }, "Next ›"));
  return [el("h1", {}, "Nodes × checks"), filters, pager,
    el("div", { class: "matrix-wrap" }, el("table", { class: "matrix", id: "matrix" }, head, rows)),
    el("p", { class: "muted" }, "✗ fails · ! error · ~ fails under an exception · ✓ pass or warn · · no report")];
}

// ---- node --------------------------------------------------------------------------

function dl(pairs, id) {
  return el("dl", { class: "grid2", id }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v ?? "—")]));
}

async function nodePage(name) {
  const [d, history, keys] = await Promise.all([
    api(`/v1/nodes/${encodeURIComponent(name)}`),
    api(`/v1/nodes/${encodeURIComponent(name)}/history?limit=200`),
    // The key history is shown when it can be read; the page does not depend on it.
    api(`/v1/nodes/${encodeURIComponent(name)}/keys`).catch((e) => ({ error: e.message })),
  ]);
  const parts = [el("h1", {}, "Node ", el("span", { id: "node-name" }, d.node.name), " ", badge(d.status))];
  const evidence = exportLink(d.node.name, "export this node's evidence");
  if (d.report) {
    const r = d.report;
    parts.push(el("p", { class: "muted" }, `Latest report scanned ${r.scan_time} by agent ${r.agent_version} · `,
      reportLink(d.node.name, r.digest, "download the signed report"), evidence ? " · " : null, evidence));
    parts.push(dl([["Hostname", r.hostname], ["OS", r.os], ["Kernel", r.kernel], ["Kubelet", r.kubelet_version]], "facts"));
    parts.push(el("h2", {}, "Checks"));
    parts.push(el("table", { id: "checks" },
      el("tr", {}, ["CIS", "Check", "Severity", "Status", "Expected", "Value", "Source", "Origin", "Note"].map((h) => el("th", {}, h))),
      r.checks.map((c) => el("tr", { "data-check": c.id, "data-status": c.status },
        el("td", {}, c.cis), el("td", {}, el("div", {}, c.title), el("div", { class: "mono muted" }, c.id)),
        el("td", { class: `sev-${c.severity}` }, c.severity ?? "unknown"),
        el("td", {}, badge(c.excepted ? "excepted" : c.status),
          c.excepted ? el("div", { class: "muted" }, `exception ${c.excepted.exception} until ${c.excepted.until}`) : null),
        el("td", { class: "mono" }, c.expected), el("td", { class: "mono value" }, c.actual),
        el("td", { class: "source" }, c.source ?? "—"), el("td", { class: "mono origin" }, c.origin ?? "—"),
        el("td", {}, c.note)))));
    if (r.warnings.length) parts.push(el("ul", {}, r.warnings.map((w) => el("li", {}, w))));
  } else {
    parts.push(el("p", { class: "muted" }, "No full report yet. ", evidence));
  }
  parts.push(el("h2", {}, "Key and chain"));
  parts.push(dl([
    ["Enrolment", d.node.status], ["Key id", d.key.key_id], ["Enrolled", d.key.enrolled_at],
    ["Last sequence", d.chain.last_sequence], ["Last digest", d.chain.last_digest],
    ["Last seen", d.node.last_seen], ["Interval", d.chain.interval_secs ? `${d.chain.interval_secs} s` : null],
    ["Last full report", d.chain.last_full_digest], ["Posture digest", d.chain.posture],
    ["Chain breaks", d.chain.breaks.length ? `${d.chain.breaks.length} recorded` : "none"],
  ], "chain"));
  if (keys.error) {
    parts.push(el("p", { class: "muted", id: "keys-error" }, `Key history: ${keys.error}`));
  } else {
    parts.push(el("table", { id: "keys" },
      el("tr", {}, ["Key id", "Valid from", "Valid until"].map((h) => el("th", {}, h))),
      keys.keys.map((k) => el("tr", { class: k.valid_until ? "retired" : "current" },
        el("td", { class: "mono" }, k.keyid), el("td", {}, k.valid_from), el("td", {}, k.valid_until ?? "current key")))));
  }
  if (d.chain.breaks.length) {
    parts.push(el("table", { id: "breaks" },
      el("tr", {}, ["Kind", "First", "Last", "Times", "Expected", "Got", "Detail"].map((h) => el("th", {}, h))),
      d.chain.breaks.map((b) => el("tr", {}, el("td", {}, b.kind), el("td", {}, b.first_at), el("td", {}, b.last_at),
        el("td", {}, b.count), el("td", {}, b.expected_sequence), el("td", {}, b.got_sequence), el("td", {}, b.detail)))));
  }
  parts.push(el("h2", {}, "Posture history"));
  // Oldest first to find changes; shown newest first.
  const rows = [...history].reverse();
  let prev = null;
  const items = rows.map((h) => {
    const s = h.summary;
    let cls = "";
    let what;
    if (h.kind === "unchanged") {
      what = `unchanged (${h.count} scan${h.count === 1 ? "" : "s"} matching the report before)`;
    } else if (!prev) {
      what = "first report";
    } else {
      what = "posture changed";
      cls = s && prev && s.fail + s.error < prev.fail + prev.error ? "better" : "change";
    }
    if (h.kind === "full") prev = s;
    return el("li", { class: cls },
      el("strong", {}, h.received_at), ` · #${h.sequence} · ${what}`,
      s ? ` · pass ${s.pass}, fail ${s.fail}, warn ${s.warn}, error ${s.error} · ` : " · ",
      reportLink(d.node.name, h.digest, "signed statement"));
  }).reverse();
  parts.push(el("ul", { class: "timeline", id: "timeline" }, items));
  return parts;
}

// ---- drift -------------------------------------------------------------------------

function isoMinutesAgo(minutes) {
  return new Date(Date.now() - minutes * 60000).toISOString().replace(/\.\d+Z$/, "Z");
}

const DRIFT_ROWS = 500;

async function drift(params) {
  const since = params.get("since") || isoMinutesAgo(24 * 60);
  // The newest DRIFT_ROWS changes; the server says whether older ones were left out.
  const { body: events, headers } = await apiResponse(`/v1/drift?since=${encodeURIComponent(since)}&limit=${DRIFT_ROWS}`);
  const more = headers.get("x-drift-more") === "true";
  const input = el("input", { id: "since", type: "text", value: since, size: 24 });
  const form = el("div", { class: "filters" }, el("label", {}, "Since (RFC 3339)", input),
    el("button", { type: "button", id: "drift-go", onclick: () => { location.hash = `#/drift?since=${encodeURIComponent(input.value.trim())}`; } }, "Show"),
    ...[["last hour", 60], ["last day", 1440], ["last week", 10080]].map(([t, m]) =>
      el("button", { type: "button", onclick: () => { location.hash = `#/drift?since=${encodeURIComponent(isoMinutesAgo(m))}`; } }, t)));
  const table = events.length === 0 ? el("p", { class: "muted", id: "drift-empty" }, "No check changed status since then.")
    : el("table", { id: "drift" },
      el("tr", {}, ["When", "Node", "CIS", "From", "To", "Report"].map((h) => el("th", {}, h))),
      events.slice().reverse().map((e) => el("tr", {}, el("td", {}, e.at), el("td", {}, nodeLink(e.node)), el("td", {}, e.cis),
        el("td", {}, e.from ? badge(e.from) : "—"), el("td", {}, badge(e.to)), el("td", {}, reportLink(e.node, e.digest, "download")))));
  const count = more
    ? el("p", { class: "muted", id: "drift-more" }, `The latest ${DRIFT_ROWS} changes since ${since}; there are more: choose a later time.`)
    : el("p", { class: "muted" }, `${events.length} change(s) since ${since}`);
  return [el("h1", {}, "Drift"), form, count, table];
}

// ---- exceptions --------------------------------------------------------------------

async function exceptions() {
  const list = await api("/v1/exceptions");
  const now = Date.now();
  const week = 7 * 86400 * 1000;
  const table = list.length === 0 ? el("p", { class: "muted" }, "No exceptions.")
    : el("table", { id: "exceptions" },
      el("tr", {}, ["Id", "CIS", "Check", "Severity", "Scope", "Until", "State", "Matches", "Reason", "By"].map((h) => el("th", {}, h))),
      list.map((e) => {
        const expiring = e.state === "active" && Date.parse(e.until) - now <= week;
        return el("tr", { class: expiring ? "expiring" : "", "data-exception": e.id },
          el("td", {}, e.id), el("td", {}, e.cis), el("td", { class: "mono" }, e.check),
          el("td", { class: `sev-${e.severity}` }, e.severity ?? "unknown"),
          el("td", {}, e.node ? nodeLink(e.node) : "all nodes"),
          el("td", {}, e.until, expiring ? el("div", { class: "flag" }, "expires within 7 days") : null),
          el("td", {}, badge(e.state === "active" ? "excepted" : e.state === "expired" ? "stale" : "revoked"), " ", e.state),
          el("td", {}, e.matches), el("td", {}, e.reason), el("td", {}, e.by));
      }));
  return [el("h1", {}, "Exceptions"), el("p", { class: "muted" }, "Managed with `nodeproof-collector exception add|revoke` or the API; this page only reads."), table];
}

// ---- routing -----------------------------------------------------------------------

async function route() {
  const mine = ++generation;
  const started = performance.now();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll(".top nav a")) {
    const target = a.getAttribute("href").slice(1);
    a.classList.toggle("active", target === "/" ? path === "/" : path.startsWith(target));
  }
  let content;
  try {
    if (path === "/") content = await overview();
    else if (path === "/matrix") content = await matrix(params);
    else if (path.startsWith("/node/")) content = await nodePage(decodeURIComponent(path.slice(6)));
    else if (path === "/drift") content = await drift(params);
    else if (path === "/exceptions") content = await exceptions();
    else content = [el("p", {}, "No such page. "), el("a", { href: "#/" }, "Overview")];
  } catch (e) {
    content = failure(e);
  }
  // A later navigation started while this one waited for the server: its view wins.
  if (mine !== generation) return;
  show(content, `#${hash}`);
  if (path === "/matrix") {
    // For the benchmark and the browser tests: how long this view took, and when (since
    // the document's navigation started) it was on screen.
    window.__matrixMs = performance.now() - started;
    window.__matrixReadyAt = performance.now();
    document.body.dataset.matrixReady = String(Date.now());
  }
}

async function logout() {
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": session ? session.csrf : "" } });
  location.assign("/ui/login");
}

async function start() {
  try {
    session = await api("/ui/session");
  } catch (e) {
    return;
  }
  document.getElementById("who").textContent = `${session.role} session until ${session.expires_at}`;
  document.getElementById("logout").addEventListener("click", logout);
  const evidence = exportLink(null, "Export");
  if (evidence) {
    evidence.id = "nav-export";
    evidence.title = "The signed evidence bundle of the whole fleet (GET /v1/export)";
    document.querySelector(".top nav").append(evidence);
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();
