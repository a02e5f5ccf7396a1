//! Exceptions over HTTP: `/v1/exceptions` (admin token) adds, lists and revokes waivers;
//! the fleet view shows an excepted failure as compliant; bad requests are refused with a
//! message and store nothing; every add and revoke is on the log. Expiry is tested with
//! the fleet view's injectable `now` (server::fleet), not by waiting.

mod common;

use common::*;
use nodeproof_collector::server::fleet;
use serde_json::{json, Value};

fn request(check: &str, node: Option<&str>, until: &str) -> Value {
    let mut body = json!({
        "check": check,
        "until": until,
        "reason": "vendor fix due in 2027-Q1",
        "by": "alice@example.com",
    });
    match node {
        Some(n) => body["node"] = json!(n),
        None => body["all"] = json!(true),
    }
    body
}

#[tokio::test]
async fn exceptions_are_added_applied_and_revoked_over_http() {
    let (server, _agent) = server_with_node().await;
    // node-1's report fails 4.2.1.
    let (_, fleet_before) = server.admin_get("/v1/fleet").await;
    assert_eq!(fleet_before["nodes"]["failing"], 1, "{fleet_before}");

    let (status, added) = server
        .post_json(
            "/v1/exceptions",
            &request("4.2.1", Some("node-1"), "2099-01-01"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["check"], "kubelet-anonymous-auth");
    assert_eq!(added["cis"], "4.2.1");
    assert_eq!(added["until"], "2099-01-01T00:00:00Z");
    assert_eq!(added["state"], "active");
    let id = added["id"].as_i64().expect("id");

    let (_, fleet_view) = server.admin_get("/v1/fleet").await;
    assert_eq!(fleet_view["nodes"]["failing"], 0, "{fleet_view}");
    assert_eq!(fleet_view["nodes"]["compliant"], 1, "{fleet_view}");
    assert_eq!(fleet_view["nodes"]["excepted"], 1, "{fleet_view}");
    let (_, nodes) = server.admin_get("/v1/nodes").await;
    assert_eq!(nodes[0]["health"], "ok", "{nodes}");
    let excepted = &nodes[0]["failing"][0]["excepted"];
    assert_eq!(excepted["exception"], id, "{nodes}");
    assert_eq!(excepted["by"], "alice@example.com");
    assert_eq!(excepted["reason"], "vendor fix due in 2027-Q1");
    // Still listed as failing the check: the report is not hidden, only judged.
    let (_, failing) = server.admin_get("/v1/checks/4.2.1/failing").await;
    assert_eq!(failing[0]["name"], "node-1", "{failing}");

    let (_, list) = server.admin_get("/v1/exceptions").await;
    assert_eq!(list[0]["matches"], 1, "{list}");

    // Revoked: failing again at once.
    let revoke = json!({"by": "bob", "reason": "fixed upstream, no longer needed"});
    let path = format!("/v1/exceptions/{id}/revoke");
    let (status, revoked) = server.post_json(&path, &revoke, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revoked_by"], "bob");
    let (_, fleet_after) = server.admin_get("/v1/fleet").await;
    assert_eq!(fleet_after["nodes"]["failing"], 1, "{fleet_after}");
    // Twice is a conflict; an unknown one is a 404.
    let (status, body) = server.post_json(&path, &revoke, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = server
        .post_json("/v1/exceptions/999/revoke", &revoke, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 404, "{body}");

    // Both decisions are on the log, who, when and why.
    let (_, log) = server.admin_get("/v1/exceptions/events").await;
    let log = log.as_array().expect("log");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0]["action"].as_str(), log[0]["by"].as_str()),
        (Some("add"), Some("alice@example.com"))
    );
    assert_eq!(
        (log[1]["action"].as_str(), log[1]["by"].as_str()),
        (Some("revoke"), Some("bob"))
    );
    assert_eq!(log[1]["reason"], "fixed upstream, no longer needed");
    assert!(log[1]["at"].is_string());
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_exception_expires_without_anyone_touching_it() {
    let (server, _agent) = server_with_node().await;
    let (status, added) = server
        .post_json(
            "/v1/exceptions",
            &request("kubelet-anonymous-auth", None, "2099-01-01T00:00:00Z"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let until = nodeproof_collector::accept::parse_time("2099-01-01T00:00:00Z").unwrap();
    // The view at a moved clock: a second before the end it holds (and warns), at the end
    // it no longer does. node-1 would be stale by then, and a stale node's failures still
    // count.
    let before = fleet::read(server.store.as_ref(), until - 1).expect("view");
    assert_eq!(before.counts.failing, 0);
    assert!(
        before.warnings.iter().any(|w| w.contains("expires")),
        "{:?}",
        before.warnings
    );
    let after = fleet::read(server.store.as_ref(), until).expect("view");
    assert_eq!(after.counts.failing, 1);
    assert_eq!(after.counts.stale, 1);
    assert_eq!(after.exceptions[0].state, fleet::ExceptionState::Expired);
    assert!(after.nodes[0].failing[0].excepted.is_none());
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_exception_requests_are_refused_and_store_nothing() {
    let (server, _agent) = server_with_node().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            request("4.2.99", Some("node-1"), "2099-01-01"),
            400,
            "not a check",
        ),
        (
            request("4.2.1", Some("node-1"), "2001-01-01"),
            400,
            "not in the future",
        ),
        (
            request("4.2.1", Some("node-1"), "next week"),
            400,
            "not a date",
        ),
        (
            request("4.2.1", Some("nobody"), "2099-01-01"),
            404,
            "nobody",
        ),
        (
            json!({"check": "4.2.1", "all": true, "until": "2099-01-01", "reason": "x", "by": ""}),
            400,
            "by is required",
        ),
        (
            json!({"check": "4.2.1", "until": "2099-01-01", "reason": "x", "by": "a"}),
            400,
            "which nodes",
        ),
        (
            json!({"check": "4.2.1", "all": true, "until": "2099-01-01", "reason": "x",
                   "by": "a", "expires": "never"}),
            400,
            "expires",
        ),
    ];
    for (body, want, says) in cases {
        let (status, answer) = server
            .post_json("/v1/exceptions", &body, Some(ADMIN_TOKEN))
            .await;
        assert_eq!(status, want, "{body} -> {answer}");
        let message = answer["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body} -> {answer}");
    }
    // Without the admin token: 401.
    let (status, _) = server
        .post_json(
            "/v1/exceptions",
            &request("4.2.1", None, "2099-01-01"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post_json(
            "/v1/exceptions",
            &request("4.2.1", None, "2099-01-01"),
            Some("wrong-token"),
        )
        .await;
    assert_eq!(status, 401);
    assert!(server.store.exceptions().expect("read").is_empty());
    assert!(server.store.exception_events().expect("read").is_empty());
    server.stop().await.expect("clean stop");
}

/// A compromised node labels its failures `low` (and a failing Manual check unscored):
/// the fleet view ranks them by the collector's catalogue and counts them anyway.
#[tokio::test]
async fn a_node_labelling_its_failures_low_is_ranked_by_the_catalogue() {
    use nodeproof_proto::{Severity, Statement, Status, Summary};
    let (server, mut agent) = server_with_node().await;
    let mut report = agent.report(2, agent.last.clone(), &time_at(0));
    for c in &mut report.checks {
        c.severity = Severity::Low;
        c.scored = false;
        c.status = Status::Fail;
    }
    report.summary = Summary::of(&report.checks);
    let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&envelope);

    let (_, nodes) = server.admin_get("/v1/nodes").await;
    let severities: Vec<(&str, &str)> = nodes[0]["failing"]
        .as_array()
        .expect("failing")
        .iter()
        .map(|f| {
            (
                f["cis"].as_str().unwrap_or(""),
                f["severity"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        severities,
        [("4.2.1", "critical"), ("4.2.4", "critical")],
        "{nodes}"
    );
    assert_eq!(nodes[0]["health"], "failing");
    server.stop().await.expect("clean stop");
}

/// `GET /v1/fleet` counts without listing the nodes (`fleet::counts`); the node view
/// (`fleet::read`) lists them. Both must agree, at every time, with exceptions of every kind.
#[test]
fn the_cheap_counts_agree_with_the_node_view() {
    use nodeproof_collector::store::conformance::{check, unscored, Agent};
    use nodeproof_collector::store::sqlite::SqliteStore;
    use nodeproof_collector::store::{NewException, Store};
    use nodeproof_proto::Status::{Error as E, Fail as F, Pass as P};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("c.db")).expect("open");
    let mut agents: Vec<Agent> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|n| Agent::with_interval(n, 100))
        .collect();
    for (i, x) in agents.iter().enumerate() {
        x.enroll(&store, i != 5, 0); // f stays pending
    }
    let postures = [
        vec![check("4.2.1", F)],                        // a: fails, excepted below
        vec![check("4.2.1", F), unscored("4.2.13", F)], // b: 4.2.13 excepted for all
        vec![check("4.2.1", P), unscored("4.2.13", E)], // c: only an excepted error
        vec![check("4.2.1", P)],                        // d: compliant
        vec![check("4.2.2", F)],                        // e: reports early, goes stale
    ];
    let mut batch = Vec::new();
    for (i, (x, p)) in agents.iter_mut().zip(postures).enumerate() {
        batch.push(x.full(if i == 4 { 500 } else { 1000 }, p));
    }
    store.commit(&batch).expect("commit");
    let add = |check_id: &str, cis: &str, node: Option<&str>, until: i64| {
        store
            .add_exception(
                &NewException {
                    check_id: check_id.into(),
                    cis: cis.into(),
                    node: node.map(str::to_string),
                    until,
                    reason: "r".into(),
                    by: "b".into(),
                },
                900,
            )
            .expect("add");
    };
    add("kubelet-4-2-1", "4.2.1", Some("a"), 1100);
    add("kubelet-4-2-13", "4.2.13", None, 1200);
    add("kubelet-4-2-2", "4.2.2", Some("e"), 5000);
    add("kubelet-4-2-3", "4.2.3", None, 1010); // matches nothing, ends soon
    for now in [1000, 1099, 1100, 1199, 1200, 1301, 6000] {
        let (counts, warnings) = fleet::counts(&store, now).expect("counts");
        let view = fleet::read(&store, now).expect("view");
        assert_eq!(counts, view.counts, "at {now}");
        assert_eq!(warnings, view.warnings, "at {now}");
    }
    let view = fleet::read(&store, 1000).expect("view");
    assert_eq!(
        (
            view.counts.compliant,
            view.counts.excepted,
            view.counts.failing,
            view.counts.stale
        ),
        (3, 2, 1, 1),
        "a and c compliant by exceptions, d outright; b fails 4.2.1; e stale, excepted"
    );
}
