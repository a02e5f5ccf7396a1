//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver by
//! chromedriver (see `webdriver/`), against the real collector on 127.0.0.1:0 holding real
//! signed reports. A person logs in, sees the failing node in the matrix, opens it, sees the
//! failing check with its value, source and origin, filters by severity, and logs out; a
//! check value, origin and hostname sent by a node as HTML are shown as text, and no script
//! of theirs runs.
//!
//! With `NODEPROOF_SCREENSHOTS=DIR` the views are saved there as PNG (the README's images
//! come from `NODEPROOF_SCREENSHOTS=docs/images`); otherwise they are taken and checked,
//! and dropped. `matrix_at_5000_nodes` measures the matrix view at 5,000 nodes and prints
//! the figures recorded in docs/benchmarks.md.

mod common;
mod webdriver;

use std::path::PathBuf;

use common::*;
use nodeproof_collector::server::ui::UiConfig;
use nodeproof_collector::server::AdminToken;
use nodeproof_proto::*;
use serde_json::json;
use webdriver::{Browser, Driver};

/// What a node sends as HTML in its report; the page must show it as these characters.
const XSS_VALUE: &str = "<img src=x onerror=alert(1)>";
const XSS_ORIGIN: &str = "<script>alert(2)</script>";
const XSS_HOST: &str = "<img src=x onerror=\"document.title='pwned'\">";
/// A node named as HTML. Enrolment refuses such a name, but a database edited by hand or
/// imported could hold one, and the page must still show it as text.
const XSS_NODE: &str = "<img src=x onerror=alert(1)>";

/// A full report of every catalogue check: those in `fails` fail with the given value,
/// source and origin; the rest pass.
fn report(agent: &TestAgent, fails: &[(&str, &str, Source, &str)], hostname: &str) -> Vec<u8> {
    let mut r = agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0));
    r.checks = CHECKS
        .iter()
        .map(|m| {
            let fail = fails.iter().find(|f| f.0 == m.id);
            CheckResult {
                id: m.id.into(),
                cis: m.cis.into(),
                title: m.why.into(),
                scored: m.scored,
                severity: m.severity,
                status: if fail.is_some() {
                    Status::Fail
                } else {
                    Status::Pass
                },
                expected: "as the CIS benchmark says".into(),
                actual: fail.map_or("compliant", |f| f.1).into(),
                source: Some(fail.map_or(Source::ConfigFile, |f| f.2)),
                origin: Some(fail.map_or("/var/lib/kubelet/config.yaml", |f| f.3).into()),
                note: String::new(),
                remediation: Remediation {
                    flag: String::new(),
                    config: String::new(),
                },
            }
        })
        .collect();
    r.summary = Summary::of(&r.checks);
    r.node = NodeFacts {
        hostname: Some(hostname.into()),
        os: Some("Debian GNU/Linux 12 (bookworm)".into()),
        kernel: Some("6.1.0-28-amd64".into()),
        boot_time: None,
    };
    agent.sign(&Statement::new(TestAgent::subjects(), r))
}

async fn node(
    server: &TestServer,
    name: &str,
    seed: u8,
    fails: &[(&str, &str, Source, &str)],
    hostname: &str,
) {
    let mut agent = TestAgent::new(name, seed);
    enroll_approved(server, &agent).await;
    let envelope = report(&agent, fails, hostname);
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&envelope);
}

/// A small fleet: failing, compliant, excepted, hostile and pending nodes.
async fn seed(server: &TestServer) {
    node(
        server,
        "node-1",
        1,
        &[(
            "kubelet-anonymous-auth",
            "true",
            Source::Flag,
            "--anonymous-auth=true",
        )],
        "node-1.prod",
    )
    .await;
    node(
        server,
        "web-7",
        2,
        &[(
            "kubelet-read-only-port",
            XSS_VALUE,
            Source::DropIn,
            XSS_ORIGIN,
        )],
        XSS_HOST,
    )
    .await;
    for (i, name) in ["node-2", "node-4", "node-5"].iter().enumerate() {
        node(server, name, 10 + i as u8, &[], &format!("{name}.prod")).await;
    }
    node(
        server,
        "node-3",
        20,
        &[(
            "kubelet-pod-pids-limit",
            "-1",
            Source::Default,
            "kubelet v1beta1 defaults",
        )],
        "node-3.prod",
    )
    .await;
    node(
        server,
        "batch-9",
        21,
        &[
            (
                "kubelet-event-qps",
                "0",
                Source::ConfigFile,
                "/var/lib/kubelet/config.yaml",
            ),
            (
                "kubelet-pod-pids-limit",
                "-1",
                Source::Default,
                "kubelet v1beta1 defaults",
            ),
        ],
        "batch-9.prod",
    )
    .await;
    // An exception on node-3 that ends in 3 days, and a long one.
    for (node, days) in [("node-3", 3), ("batch-9", 60)] {
        let (status, body) = server
            .post_json(
                "/v1/exceptions",
                &json!({"check": "4.2.13", "node": node, "until": time_at(days * 86_400),
                        "reason": "PID limits come with the next node image", "by": "alice"}),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // The node named as HTML: put in the store directly (POST /v1/enroll refuses the
    // name), its report ingested as any other.
    let mut hostile = TestAgent::new(XSS_NODE, 40);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    server
        .store
        .enroll(
            XSS_NODE,
            &hostile.key_id(),
            &hostile.public_pem(),
            true,
            now,
        )
        .unwrap();
    let envelope = report(
        &hostile,
        &[("kubelet-event-qps", "0", Source::ConfigFile, XSS_NODE)],
        XSS_NODE,
    );
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 201, "{body}");
    hostile.accepted(&envelope);
    // A pending claim.
    let pending = TestAgent::new("node-new", 30);
    let (status, _) = server
        .post("/v1/enroll", pending.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202);
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("NODEPROOF_SCREENSHOTS").map(|d| {
        let d = PathBuf::from(d);
        let d = if d.is_absolute() {
            d
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(d)
        };
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

async fn snap(browser: &Browser, name: &str, full: bool) {
    let png = if full {
        browser.full_screenshot(1400).await
    } else {
        browser.screenshot().await
    };
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    assert!(png.len() > 5_000, "{name} shows something");
    if let Some(dir) = screenshots() {
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn no_dialog_and_no_injected_markup(browser: &Browser) {
    assert_eq!(browser.alert_text().await, None, "an alert dialog opened");
    let injected = browser
        .eval(
            "return document.querySelectorAll('#view img, #view script').length",
            json!([]),
        )
        .await;
    assert_eq!(injected, 0, "node data became markup");
    let title = browser.eval("return document.title", json!([])).await;
    assert_eq!(title, "nodeproof · fleet");
}

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let server = TestServer::start_with_ui(UiConfig {
        viewer_token: Some(AdminToken::new("viewer-token")),
        ..UiConfig::default()
    })
    .await;
    seed(&server).await;
    let driver = Driver::start().await;
    let browser = driver.session().await;

    // Not logged in: the app sends you to the login page.
    browser.goto(&server.url("/ui/")).await;
    let input = browser.wait_for("#token").await;
    assert!(browser.current_url().await.ends_with("/ui/login"));
    snap(&browser, "login", false).await;
    // A wrong token: the page says so, no session.
    browser.type_into(&input, "wrong").await;
    browser.click(&browser.wait_for("#login").await).await;
    let error = browser.wait_for("#login-error").await;
    let error = browser.text(&error).await;
    assert!(error.contains("not the collector"), "{error:?}");

    // Log in with the admin token: the overview.
    let input = browser.wait_for("#token").await;
    browser.type_into(&input, ADMIN_TOKEN).await;
    browser.click(&browser.wait_for("#login").await).await;
    let cards = browser.wait_for("#status-cards").await;
    browser.wait_view().await;
    let cards_text = browser.text(&cards).await;
    assert!(!browser.current_url().await.contains(ADMIN_TOKEN));
    assert!(
        cards_text.to_lowercase().contains("failing"),
        "{cards_text}"
    );
    // The session cookie is invisible to scripts (HttpOnly).
    let cookies = browser.eval("return document.cookie", json!([])).await;
    assert_eq!(cookies, "");
    snap(&browser, "overview", true).await;

    // An admin session has the export link (GET /v1/export streams the signed bundle).
    // It is fetched for node-1 alone: a bundle's paths are node names, and the export
    // refuses the whole fleet while it holds the node named as HTML.
    let export = browser.wait_for("#nav-export").await;
    let href = browser
        .eval(
            "return arguments[0].getAttribute('href')",
            json!([{ "element-6066-11e4-a52e-4f735466cecf": export }]),
        )
        .await;
    assert_eq!(href, "/v1/export");
    let gzip = browser
        .eval(
            "return fetch('/v1/export?node=node-1').then(async r => [r.status, r.headers.get('content-type'), \
             Array.from(new Uint8Array(await r.arrayBuffer()).slice(0, 2))])",
            json!([]),
        )
        .await;
    assert_eq!(
        gzip,
        json!([200, "application/gzip", [0x1f, 0x8b]]),
        "{gzip}"
    );

    // The matrix: node-1 fails 4.2.1.
    browser.goto(&server.url("/ui/#/matrix")).await;
    browser.wait_view().await;
    let row = browser.wait_for("tr[data-node='node-1']").await;
    assert!(browser.text(&row).await.contains("failing"));
    browser
        .wait_for("tr[data-node='node-1'] span[data-cell='fail']")
        .await;
    browser
        .wait_for("tr[data-node='node-3'] span[data-cell='excepted']")
        .await;
    // The node named as HTML is a row whose name is text.
    let link = browser
        .wait_for(&format!("tr[data-node=\"{XSS_NODE}\"] a.node-link"))
        .await;
    assert_eq!(browser.text(&link).await, XSS_NODE);
    no_dialog_and_no_injected_markup(&browser).await;
    snap(&browser, "matrix", true).await;

    // Filter by severity: node-1's only failure is critical.
    browser
        .click(&browser.wait_for("#f-severity option[value='low']").await)
        .await;
    browser
        .wait_until(
            "the low-severity filter",
            "return location.hash.includes('severity=low') \
             && document.getElementById('view').dataset.route === location.hash",
        )
        .await;
    assert!(browser.find("tr[data-node='node-1']").await.is_none());
    assert!(
        browser.find("tr[data-node='batch-9']").await.is_some(),
        "batch-9 fails 4.2.8, a low-severity check"
    );
    browser
        .click(
            &browser
                .wait_for("#f-severity option[value='critical']")
                .await,
        )
        .await;
    browser
        .wait_until(
            "the critical filter",
            "return location.hash.includes('severity=critical') \
             && document.getElementById('view').dataset.route === location.hash",
        )
        .await;
    assert!(browser.find("tr[data-node='node-1']").await.is_some());
    assert!(browser.find("tr[data-node='node-2']").await.is_none());

    // Open node-1: the failing check with its value, source and origin.
    browser
        .click(&browser.wait_for("tr[data-node='node-1'] a.node-link").await)
        .await;
    browser.wait_view().await;
    assert!(browser.current_url().await.ends_with("#/node/node-1"));
    let check = browser
        .wait_for("#checks tr[data-check='kubelet-anonymous-auth']")
        .await;
    let text = browser.text(&check).await;
    for want in [
        "4.2.1",
        "fail",
        "critical",
        "true",
        "flag",
        "--anonymous-auth=true",
    ] {
        assert!(text.contains(want), "{want} missing from {text:?}");
    }
    browser.wait_for("#timeline li").await;
    browser.wait_for("#chain").await;
    // Its key: one, current.
    let keys = browser.text(&browser.wait_for("#keys").await).await;
    assert!(keys.contains("current key"), "{keys}");
    // And its own evidence export.
    let export = browser.wait_for("#view a.export").await;
    let href = browser
        .eval(
            "return arguments[0].getAttribute('href')",
            json!([{ "element-6066-11e4-a52e-4f735466cecf": export }]),
        )
        .await;
    assert_eq!(href, "/v1/export?node=node-1");
    let link = browser.wait_for("a.download").await;
    let href = browser
        .eval(
            "return arguments[0].getAttribute('href')",
            json!([{ "element-6066-11e4-a52e-4f735466cecf": link }]),
        )
        .await;
    assert!(href
        .as_str()
        .unwrap()
        .starts_with("/v1/nodes/node-1/reports/"));
    snap(&browser, "node", true).await;
    // The link downloads the signed envelope, with the session cookie.
    let signed = browser
        .eval(
            "return fetch(document.querySelector('a.download').href).then(r => r.text())",
            json!([]),
        )
        .await;
    assert!(signed.as_str().unwrap().contains("payloadType"), "{signed}");

    // The hostile node: its HTML is text.
    browser.goto(&server.url("/ui/#/node/web-7")).await;
    browser.wait_view().await;
    let value = browser
        .wait_for("#checks tr[data-check='kubelet-read-only-port'] td.value")
        .await;
    assert_eq!(browser.text(&value).await, XSS_VALUE);
    let origin = browser
        .wait_for("#checks tr[data-check='kubelet-read-only-port'] td.origin")
        .await;
    assert_eq!(browser.text(&origin).await, XSS_ORIGIN);
    let facts = browser.text(&browser.wait_for("#facts").await).await;
    assert!(facts.contains(XSS_HOST), "{facts}");
    no_dialog_and_no_injected_markup(&browser).await;
    snap(&browser, "node-hostile", false).await;

    // The node named as HTML, opened from its link: its name, and its check's origin.
    browser.goto(&server.url("/ui/#/matrix")).await;
    browser.wait_view().await;
    browser
        .click(
            &browser
                .wait_for(&format!("tr[data-node=\"{XSS_NODE}\"] a.node-link"))
                .await,
        )
        .await;
    browser.wait_view().await;
    let name = browser.wait_for("#node-name").await;
    assert_eq!(browser.text(&name).await, XSS_NODE);
    let origin = browser
        .wait_for("#checks tr[data-check='kubelet-event-qps'] td.origin")
        .await;
    assert_eq!(browser.text(&origin).await, XSS_NODE);
    browser.wait_for("#timeline li").await;
    no_dialog_and_no_injected_markup(&browser).await;

    // The other filters, as a person uses them: part of a name (any case), then a status.
    let rows = "return Array.from(document.querySelectorAll('#matrix tr[data-node]'), \
                r => r.dataset.node).join(' ')";
    browser.goto(&server.url("/ui/#/matrix")).await;
    browser.wait_view().await;
    browser
        .type_into(&browser.wait_for("#f-node").await, "WEB\u{E007}")
        .await;
    browser
        .wait_until(
            "the name filter",
            "return location.hash.includes('node=WEB') \
             && document.getElementById('view').dataset.route === location.hash",
        )
        .await;
    assert_eq!(browser.eval(rows, json!([])).await, "web-7");
    browser
        .click(&browser.wait_for("#f-status option[value='ok']").await)
        .await;
    browser
        .wait_until(
            "the status filter",
            "return location.hash.includes('status=ok') \
             && document.getElementById('view').dataset.route === location.hash",
        )
        .await;
    assert_eq!(browser.eval(rows, json!([])).await, "", "web-7 is failing");
    let info = browser.text(&browser.wait_for("#page-info").await).await;
    assert!(info.contains("0 nodes"), "{info}");

    // Drift and exceptions, with the one close to expiry flagged.
    browser.goto(&server.url("/ui/#/drift")).await;
    browser.wait_view().await;
    browser.wait_for("#drift").await;
    snap(&browser, "drift", false).await;
    browser.goto(&server.url("/ui/#/exceptions")).await;
    browser.wait_view().await;
    let expiring = browser.wait_for("#exceptions tr.expiring").await;
    assert!(browser.text(&expiring).await.contains("node-3"));
    snap(&browser, "exceptions", true).await;

    // Log out: the session ends, the app is closed again.
    browser.click(&browser.wait_for("#logout").await).await;
    browser.wait_for("#token").await;
    browser.goto(&server.url("/ui/")).await;
    browser.wait_for("#token").await;
    let (_, stats) = server.get("/v1/stats", None).await;
    assert_eq!(stats["dashboard"]["sessions"], 0);

    // The viewer token reads the fleet but has no export: no link, and 403 if asked.
    let input = browser.wait_for("#token").await;
    browser.type_into(&input, "viewer-token").await;
    browser.click(&browser.wait_for("#login").await).await;
    browser.wait_for("#status-cards").await;
    browser.wait_view().await;
    let who = browser.text(&browser.wait_for("#who").await).await;
    assert!(who.starts_with("viewer session"), "{who}");
    assert!(browser.find("#nav-export").await.is_none());
    let status = browser
        .eval("return fetch('/v1/export').then(r => r.status)", json!([]))
        .await;
    assert_eq!(status, 403);
    browser.goto(&server.url("/ui/#/node/node-1")).await;
    browser.wait_view().await;
    browser.wait_for("#keys").await;
    assert!(browser.find("#view a.export").await.is_none());
    browser.click(&browser.wait_for("#logout").await).await;
    browser.wait_for("#token").await;

    browser.quit().await;
    drop(driver);
    server.stop().await.unwrap();
}

/// 5,000 approved nodes with a full report each, written straight into the SQLite file
/// (the ingest path has its own benchmarks); about one node in six fails a check.
fn seed_fleet(dir: &tempfile::TempDir, nodes: usize) {
    use nodeproof_collector::store::sqlite::{NewNode, SqliteStore};
    use nodeproof_collector::store::{Accepted, AcceptedKind, CheckState, Store};
    let store = SqliteStore::open(&dir.path().join("collector.db")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = |i: usize| format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15 + 1);
    let batch: Vec<NewNode> = (0..nodes)
        .map(|i| NewNode {
            name: format!("node-{i:05}"),
            key_id: key(i),
            public_key: String::new(),
        })
        .collect();
    store.enroll_many(&batch, true, now - 86_400).unwrap();
    let reports: Vec<Accepted> = (0..nodes)
        .map(|i| {
            let checks: Vec<CheckState> = CHECKS
                .iter()
                .enumerate()
                .map(|(k, m)| CheckState {
                    id: m.id.into(),
                    cis: m.cis.into(),
                    scored: m.scored,
                    status: match (i * 7 + k * 13) % 83 {
                        0 => Status::Fail,
                        1 => Status::Error,
                        _ => Status::Pass,
                    },
                })
                .collect();
            Accepted {
                node: format!("node-{i:05}"),
                key_id: key(i),
                digest: format!("{:064x}", i as u128 + 7),
                sequence: 1,
                previous: None,
                received_at: now - (i % 600) as i64,
                scan_time: time_at(0),
                interval_secs: 300,
                envelope: b"{}".to_vec(),
                kind: AcceptedKind::Full {
                    posture: format!("{:064x}", i as u128 + 11),
                    summary: Summary::count(checks.iter().map(|c| c.status)),
                    checks,
                },
            }
        })
        .collect();
    for chunk in reports.chunks(1000) {
        store.commit(chunk).unwrap();
    }
}

#[tokio::test]
async fn matrix_at_5000_nodes() {
    const NODES: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let seeded = std::time::Instant::now();
    seed_fleet(&dir, NODES);
    let seeded = seeded.elapsed();
    let store = open_store(&dir);
    let server = TestServer::start_full(
        dir,
        None,
        store,
        Default::default(),
        Default::default(),
        UiConfig::default(),
    )
    .await;
    // The server's part alone: GET /v1/matrix (the fleet view of 5,000 nodes, filtered,
    // sorted, one page of 50), five times.
    let mut api = Vec::new();
    let mut m = serde_json::Value::Null;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (status, body) = server.admin_get("/v1/matrix").await;
        api.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
        m = body;
    }
    api.sort_by(f64::total_cmp);
    assert_eq!(m["total"], NODES);
    let page_bytes = serde_json::to_vec(&m).unwrap().len();
    let all_nodes = server
        .client
        .get(server.url("/v1/nodes"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();

    let driver = Driver::start().await;
    let browser = driver.session().await;
    browser.goto(&server.url("/ui/login")).await;
    let input = browser.wait_for("#token").await;
    browser.type_into(&input, ADMIN_TOKEN).await;
    browser.click(&browser.wait_for("#login").await).await;
    browser.wait_for("#status-cards").await;

    // Cold loads of the matrix page: a new document each time, no cached assets.
    let mut loads = Vec::new();
    let mut transfer = 0u64;
    for _ in 0..5 {
        browser.goto("about:blank").await;
        browser.goto(&server.url("/ui/#/matrix")).await;
        browser
            .wait_until(
                "the matrix",
                "return !!document.body && !!document.body.dataset.matrixReady",
            )
            .await;
        let rows = browser
            .eval(
                "return document.querySelectorAll('#matrix tr[data-node]').length",
                json!([]),
            )
            .await;
        assert_eq!(rows, 50);
        let figures = browser
            .eval(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const res = performance.getEntriesByType('resource');
                 return { ready: window.__matrixReadyAt,
                          bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
                          requests: 1 + res.length };",
                json!([]),
            )
            .await;
        loads.push(figures["ready"].as_f64().unwrap());
        transfer = figures["bytes"].as_u64().unwrap();
        eprintln!("matrix load: {figures}");
    }
    loads.sort_by(f64::total_cmp);
    let median = loads[loads.len() / 2];

    // Paging and filtering within the page: fetch and render only.
    let mut steps = Vec::new();
    for action in [
        "document.getElementById('next').click()",
        "location.hash = '#/matrix?status=failing'",
        "location.hash = '#/matrix?severity=critical&sort=failing'",
        "location.hash = '#/matrix?node=node-049'",
    ] {
        browser
            .eval("delete document.body.dataset.matrixReady", json!([]))
            .await;
        browser.eval(action, json!([])).await;
        browser
            .wait_until(
                "the next view",
                "return !!document.body.dataset.matrixReady",
            )
            .await;
        steps.push(
            browser
                .eval("return window.__matrixMs", json!([]))
                .await
                .as_f64()
                .unwrap(),
        );
    }

    // Drift over the same fleet: 5,000 first reports are 125,000 changes in the last day;
    // the page shows the newest 500 and says there are more.
    let started = std::time::Instant::now();
    browser.goto(&server.url("/ui/#/drift")).await;
    browser.wait_view().await;
    browser.wait_for("#drift-more").await;
    let drift_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rows = browser
        .eval(
            "return document.querySelectorAll('#drift tr').length",
            json!([]),
        )
        .await;
    assert_eq!(rows, 501, "500 changes and the header");

    println!(
        "drift view (newest 500 of {} changes): {drift_ms:.0} ms",
        NODES * CHECKS.len()
    );
    println!(
        "matrix at {NODES} nodes: seeded in {:.1} s; cold load to rendered: median {median:.0} ms \
         (min {:.0}, max {:.0}) over 5; transferred {transfer} bytes (document, assets, one \
         JSON page of 50 rows = {page_bytes} bytes; GET /v1/nodes would be {all_nodes}); \
         next page / filter failing / critical by failures / name filter: {:.0} / {:.0} / \
         {:.0} / {:.0} ms; GET /v1/matrix alone: median {:.0} ms (min {:.0}, max {:.0})",
        seeded.as_secs_f64(),
        loads[0],
        loads[loads.len() - 1],
        steps[0],
        steps[1],
        steps[2],
        steps[3],
        api[api.len() / 2],
        api[0],
        api[api.len() - 1],
    );
    // A debug build on a shared machine: generous bounds that still catch a page that
    // tries to load the whole fleet.
    assert!(page_bytes < 64 * 1024, "{page_bytes}");
    assert!(transfer < 256 * 1024, "{transfer}");
    assert!(median < 10_000.0, "{median} ms");

    browser.quit().await;
    drop(driver);
    server.stop().await.unwrap();
}
