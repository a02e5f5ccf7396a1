//! Attacks on ingest and enrolment, through the real server on 127.0.0.1:0 with a real
//! SQLite file: one test per attack, named after it (see the table "Collector: ingest and
//! enrollment" in docs/security.md). Each would fail on the collector before these fixes.

mod common;

use common::*;
use nodeproof_collector::server::quota::Quotas;
use nodeproof_collector::store::NodeStatus;
use nodeproof_proto::*;
use serde_json::{json, Value};

/// The same envelope with other whitespace (what a proxy, a retry tool or an attacker with
/// a captured copy may send): the same signed statement.
fn reformatted(envelope: &[u8], i: usize) -> Vec<u8> {
    let value: Value = serde_json::from_slice(envelope).unwrap();
    let mut out = if i % 2 == 0 {
        serde_json::to_vec_pretty(&value).unwrap()
    } else {
        serde_json::to_vec(&value).unwrap()
    };
    out.splice(0..0, std::iter::repeat_n(b' ', i % 7));
    out.extend(std::iter::repeat_n(b'\n', i));
    out
}

#[tokio::test]
async fn resent_envelope_with_other_whitespace_is_counted_not_stored() {
    // A small quota: the copies must not use it up either.
    let server = TestServer::start_with_quotas(Quotas {
        reports_per_minute: 3,
        ..Quotas::default()
    })
    .await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let first = agent.next_full();
    let (status, body) = server.post("/v1/reports", first.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&first);
    let size_before = server.store.size_bytes().unwrap();
    let before = server.snapshot("node-1");
    // The node's last accepted report, re-sent 200 times in other shapes: each is the
    // same signed statement, so each is a duplicate of what is stored.
    let first = agent.last.clone().unwrap();
    let stored = server.store.envelope(&first).unwrap().unwrap();
    for i in 0..200 {
        let (status, body) = server
            .post("/v1/reports", reformatted(&stored, i + 1))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["duplicate"], true);
        assert_eq!(body["digest"], first.as_str());
    }
    server.assert_nothing_stored(&before, b"", false);

    // A signed statement that replays an old position (authenticated, so evidence):
    // refused each time, recorded once, with a count.
    let mut replay = agent.clone();
    replay.sequence = 0;
    replay.last = None;
    let old = replay.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(1, None, &time_at(-10)),
    ));
    for i in 0..50 {
        let (status, body) = server.post("/v1/reports", reformatted(&old, i)).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"], "replay");
    }
    let events = server.store.chain_events("node-1").unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].kind.as_str(), events[0].count), ("replay", 50));
    assert!(events[0].at <= events[0].last_at);
    assert_eq!(server.history_len("node-1"), 1);
    // 250 refused or repeated requests cost (almost) nothing on disk.
    let grown = server.store.size_bytes().unwrap() - size_before;
    assert!(grown < 64 * 1024, "the database grew by {grown} bytes");
    // And the node's quota (3 a minute: its first report and the one recorded replay
    // used two) is still there for its next real report.
    let (status, body) = server.post("/v1/reports", agent.next_full()).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn unsigned_extra_fields_and_bogus_signatures_are_not_stored() {
    let (server, mut agent) = server_with_node().await;
    let honest = agent.next_full();
    let mut value: Value = serde_json::from_slice(&honest).unwrap();
    value["x-note"] = json!("approved by the security team");
    value["signatures"][0]["x-trust"] = json!("full");
    value["signatures"]
        .as_array_mut()
        .unwrap()
        .push(json!({"keyid": "ca-root", "sig": "AAAA"}));
    let padded = serde_json::to_vec_pretty(&value).unwrap();
    let (status, body) = server.post("/v1/reports", padded).await;
    assert_eq!(status, 201, "{body}");
    let digest = sha256_hex(&honest);
    assert_eq!(
        body["digest"],
        digest.as_str(),
        "the digest of the evidence form"
    );
    let stored = server.store.envelope(&digest).unwrap().unwrap();
    assert_eq!(
        stored, honest,
        "only the payload and the verified signature"
    );
    agent.accepted(&honest);
    // The agent's next report chains to the digest it computed itself.
    let (status, body) = server.post("/v1/reports", agent.next_full()).await;
    assert_eq!(status, 201, "{body}");
}

/// A report signed by the agent's key whose payload was written by hand.
fn sign_payload(agent: &TestAgent, payload: &[u8]) -> Vec<u8> {
    sign(PAYLOAD_TYPE, payload, &agent.key).to_json_bytes()
}

#[tokio::test]
async fn duplicate_key_in_signed_payload_is_422() {
    let (server, agent) = server_with_node().await;
    let before = server.snapshot("node-1");
    let statement = Statement::new(
        TestAgent::subjects(),
        agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0)),
    );
    let honest = String::from_utf8(serde_json::to_vec(&statement).unwrap()).unwrap();
    // Two "status" keys in the first check: serde would keep the second ("pass").
    let twice = honest.replacen(
        "\"status\":\"fail\"",
        "\"status\":\"fail\",\"status\":\"pass\"",
        1,
    );
    assert_ne!(twice, honest);
    let envelope = sign_payload(&agent, twice.as_bytes());
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "bad_statement");
    assert!(
        body["message"].as_str().unwrap().contains("duplicate key"),
        "{body}"
    );
    server.assert_nothing_stored(&before, &envelope, false);
}

#[tokio::test]
async fn predicate_of_the_wrong_shape_is_422() {
    let (server, agent) = server_with_node().await;
    let statement = Statement::new(
        TestAgent::subjects(),
        agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0)),
    );
    for (path, bad) in [
        ("checks", json!({"4.2.1": "pass"})),
        ("link", json!([1, 2, 3])),
        ("summary", json!("all good")),
    ] {
        let mut value = serde_json::to_value(&statement).unwrap();
        value["predicate"][path] = bad;
        let envelope = sign_payload(&agent, &serde_json::to_vec(&value).unwrap());
        let (status, body) = server.post("/v1/reports", envelope).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["error"], "bad_statement", "{path}");
    }
}

#[tokio::test]
async fn sequence_near_u64_max_is_422() {
    let (server, agent) = server_with_node().await;
    let before = server.snapshot("node-1");
    for sequence in [u64::MAX, u64::MAX - 1, 1 << 63] {
        let envelope = agent.sign(&Statement::new(
            TestAgent::subjects(),
            agent.report(sequence, agent.last.clone(), &time_at(0)),
        ));
        let (status, body) = server.post("/v1/reports", envelope.clone()).await;
        assert_eq!(status, 422, "{sequence}: {body}");
        assert_eq!(body["error"], "bad_link");
        server.assert_nothing_stored(&before, &envelope, false);
    }
    for interval in [0, u64::MAX] {
        let mut report = agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0));
        report.link.as_mut().unwrap().interval_secs = interval;
        let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
        let (status, body) = server.post("/v1/reports", envelope).await;
        assert_eq!(status, 422, "interval {interval}: {body}");
    }
}

#[tokio::test]
async fn fake_check_ids_are_not_stored() {
    let (server, mut agent) = server_with_node().await;
    let mut report = agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0));
    let real = report.checks[0].clone();
    for i in 0..200 {
        report.checks.push(CheckResult {
            id: format!("made-up-{i}"),
            cis: format!("9.{i}"),
            status: Status::Fail,
            ..real.clone()
        });
    }
    let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
    let (status, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&envelope);
    let (status, fleet) = server.admin_get("/v1/fleet").await;
    assert_eq!(status, 200, "{fleet}");
    let checks = fleet["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .all(|c| check_meta(c["id"].as_str().unwrap()).is_some()),
        "{checks:?}"
    );
    assert!(checks.len() <= CHECKS.len());
    // The whole envelope is still the evidence, as signed.
    assert_eq!(
        server
            .store
            .envelope(&sha256_hex(&envelope))
            .unwrap()
            .unwrap(),
        envelope
    );
}

#[tokio::test]
async fn check_listed_twice_is_422() {
    let (server, agent) = server_with_node().await;
    let mut report = agent.report(agent.sequence + 1, agent.last.clone(), &time_at(0));
    let mut again = report.checks[0].clone();
    again.status = Status::Pass;
    report.checks.push(again);
    let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
    let (status, body) = server.post("/v1/reports", envelope).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "bad_statement");
}

#[tokio::test]
async fn report_flood_from_one_node_is_rate_limited() {
    let server = TestServer::start_with_quotas(Quotas {
        reports_per_minute: 3,
        ..Quotas::default()
    })
    .await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        let envelope = agent.next_full();
        let (status, body) = server.post("/v1/reports", envelope.clone()).await;
        if status == 201 {
            agent.accepted(&envelope);
        }
        answers.push((status, body["error"].clone()));
    }
    // Three in the minute (a minute boundary in between may allow up to three more).
    let accepted = answers.iter().filter(|(s, _)| *s == 201).count();
    assert!((3..6).contains(&accepted), "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|(s, e)| *s == 429 && e == "rate_limited"),
        "{answers:?}"
    );
}

#[tokio::test]
async fn pending_claim_does_not_block_the_real_node() {
    let server = TestServer::start().await;
    // Someone claims the name first, without a token, with their own key (twice over).
    let squatter = TestAgent::new("node-7", 66);
    let (status, body) = server
        .post("/v1/enroll", squatter.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    let second = TestAgent::new("node-7", 67);
    let (status, body) = server
        .post("/v1/enroll", second.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(server.store.pending_claims().unwrap().len(), 2);
    // The real node comes with a bootstrap token: it gets the name, and every claim goes.
    let real = TestAgent::new("node-7", 7);
    enroll_approved(&server, &real).await;
    let node = server.node("node-7");
    assert_eq!(
        (node.key_id, node.status),
        (real.key_id(), NodeStatus::Approved)
    );
    assert!(server.store.pending_claims().unwrap().is_empty());
    // And its reports are accepted; the squatter's are not.
    let (status, body) = server.post("/v1/reports", real.next_full()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post("/v1/reports", squatter.next_full()).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn squatters_pending_claim_does_not_block_the_real_nodes_claim() {
    let server = TestServer::start().await;
    let squatter = TestAgent::new("node-7", 66);
    let (status, body) = server
        .post("/v1/enroll", squatter.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    // The real node has no token either: its claim is recorded next to the squatter's.
    let real = TestAgent::new("node-7", 7);
    let (status, body) = server
        .post("/v1/enroll", real.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["key_id"].as_str()),
        (Some("pending"), Some(real.key_id().as_str()))
    );
    // Polling again (the agent re-enrols while it waits) adds nothing.
    let (status, body) = server
        .post("/v1/enroll", real.enrollment(None, &time_at(1)))
        .await;
    assert_eq!(status, 202, "{body}");
    let claims = server.store.pending_claims().unwrap();
    assert_eq!(
        claims
            .iter()
            .map(|c| (c.name.as_str(), c.key_id.clone()))
            .collect::<Vec<_>>(),
        vec![("node-7", squatter.key_id()), ("node-7", real.key_id())]
    );
    assert!(claims[1]
        .source
        .as_deref()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Neither reports while pending.
    let (status, body) = server.post("/v1/reports", real.next_full()).await;
    assert_eq!(status, 401, "{body}");
    // The operator approves the real key.
    server
        .store
        .approve("node-7", Some(&real.key_id()), 0)
        .unwrap();
    assert!(server.store.pending_claims().unwrap().is_empty());
    let node = server.node("node-7");
    assert_eq!(
        (node.key_id, node.status),
        (real.key_id(), NodeStatus::Approved)
    );
    // The real node reports; the squatter's key cannot, nor claim the name again.
    let real = TestAgent::new("node-7", 7);
    let (status, body) = server.post("/v1/reports", real.next_full()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post("/v1/reports", squatter.next_full()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server
        .post("/v1/enroll", squatter.enrollment(None, &time_at(2)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("name_taken")),
        "{body}"
    );
}

#[tokio::test]
async fn approve_with_two_claims_needs_a_key_id() {
    let server = TestServer::start().await;
    let squatter = TestAgent::new("node-7", 66);
    let real = TestAgent::new("node-7", 7);
    for agent in [&squatter, &real] {
        let (status, body) = server
            .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let err = server.store.approve("node-7", None, 0).unwrap_err();
    assert!(err.to_string().contains("--key-id"), "{err}");
    assert_eq!(server.node("node-7").status, NodeStatus::Pending);
    assert_eq!(server.store.pending_claims().unwrap().len(), 2);
}

#[tokio::test]
async fn claims_on_one_name_count_against_the_pending_cap() {
    let server = TestServer::start_with_quotas(Quotas {
        max_pending: 2,
        ..Quotas::default()
    })
    .await;
    for seed in [66, 67] {
        let agent = TestAgent::new("node-7", seed);
        let (status, body) = server
            .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let third = TestAgent::new("node-7", 68);
    let (status, body) = server
        .post("/v1/enroll", third.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("too_many_pending")),
        "{body}"
    );
    assert_eq!(server.store.pending_claims().unwrap().len(), 2);
}

#[tokio::test]
async fn a_key_claiming_one_name_cannot_claim_another() {
    let server = TestServer::start().await;
    let first = TestAgent::new("node-7", 66);
    let (status, _) = server
        .post("/v1/enroll", first.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202);
    let claimer = TestAgent::new("node-7", 7);
    let (status, _) = server
        .post("/v1/enroll", claimer.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202);
    // The same key (a later claim on node-7) under another name.
    let elsewhere = TestAgent::new("node-8", 7);
    let (status, body) = server
        .post("/v1/enroll", elsewhere.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("key_taken")),
        "{body}"
    );
    assert!(server.store.node("node-8").unwrap().is_none());
}

#[tokio::test]
async fn a_pending_claim_without_a_token_does_not_take_an_approved_name() {
    let (server, _agent) = server_with_node().await;
    let squatter = TestAgent::new("node-1", 66);
    let (status, body) = server
        .post("/v1/enroll", squatter.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "name_taken");
}

#[tokio::test]
async fn pending_claims_record_their_source_address() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-9", 9);
    let (status, body) = server
        .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    let claims = server.store.pending_claims().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].key_id, agent.key_id());
    let source = claims[0].source.clone().unwrap();
    assert!(source.starts_with("127.0.0.1:"), "{source}");
}

#[tokio::test]
async fn enrollment_flood_from_one_address_is_rate_limited() {
    let server = TestServer::start_with_quotas(Quotas {
        enrolls_per_minute: 5,
        ..Quotas::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..12u8 {
        let agent = TestAgent::new(&format!("flood-{i}"), 100 + i);
        let (status, _) = server
            .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
            .await;
        statuses.push(status);
    }
    let pending = server.store.pending_claims().unwrap().len();
    // Five a minute (a minute boundary in between may allow five more).
    assert!((5..=10).contains(&pending), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // A node with a token is not held up by the flood from its address.
    let real = TestAgent::new("real", 1);
    enroll_approved(&server, &real).await;
}

#[tokio::test]
async fn pending_nodes_are_capped() {
    let server = TestServer::start_with_quotas(Quotas {
        max_pending: 3,
        ..Quotas::default()
    })
    .await;
    for i in 0..3u8 {
        let agent = TestAgent::new(&format!("p-{i}"), 100 + i);
        let (status, body) = server
            .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let fourth = TestAgent::new("p-3", 103);
    let (status, body) = server
        .post("/v1/enroll", fourth.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "too_many_pending");
    assert_eq!(server.store.pending_claims().unwrap().len(), 3);
    // A token still enrols.
    enroll_approved(&server, &fourth).await;
}

#[tokio::test]
async fn expired_pending_claims_free_their_name() {
    let server = TestServer::start_with_quotas(Quotas {
        pending_ttl_secs: -1,
        ..Quotas::default()
    })
    .await;
    let first = TestAgent::new("node-5", 50);
    let (status, _) = server
        .post("/v1/enroll", first.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202);
    // With a TTL that has always run out, the earlier claim is gone by the next enrolment.
    let second = TestAgent::new("node-5", 51);
    let (status, body) = server
        .post("/v1/enroll", second.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(server.node("node-5").key_id, second.key_id());
}

#[tokio::test]
async fn wrong_token_is_401() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-1", 1);
    let (status, body) = server
        .post(
            "/v1/enroll",
            agent.enrollment(Some("npt_not-a-real-token"), &time_at(0)),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "bad_token");
    assert!(server.store.node("node-1").unwrap().is_none());
}

#[tokio::test]
async fn duplicate_key_in_enrolment_payload_is_refused() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-1", 1);
    let payload = format!(
        "{{\"node\":\"node-1\",\"node\":\"node-2\",\"public_key\":{},\"time\":\"{}\"}}",
        serde_json::to_string(&agent.public_pem()).unwrap(),
        time_at(0)
    );
    let envelope = sign(ENROLL_PAYLOAD_TYPE, payload.as_bytes(), &agent.key).to_json_bytes();
    let (status, body) = server.post("/v1/enroll", envelope).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("duplicate"),
        "{body}"
    );
    assert!(server.store.list_nodes().unwrap().is_empty());
}
