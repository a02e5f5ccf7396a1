//! The collector's HTTP API against the real server: started in-process on `127.0.0.1:0`
//! with a real SQLite file, driven by a real HTTP client, with envelopes signed by
//! `nodeproof_proto` as an agent signs them. Every refusal in the acceptance table is
//! checked for its status and `error` code AND for storing nothing (the node's chain state,
//! its history, the envelope's digest, the chain events). No sleeps: listeners are bound
//! before the server starts, and shutdown is observed, not waited for.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use nodeproof_collector::server::{serve, AdminToken, ServeConfig, ServeError, TlsFiles};
use nodeproof_collector::store::NodeStatus;
use nodeproof_proto::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

// ---------------------------------------------------------------- enrolment

#[tokio::test]
async fn enrolment_with_a_token_approves_and_the_token_runs_out() {
    let server = TestServer::start().await;
    let token = nodeproof_collector::server::admin::new_token();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    server
        .store
        .create_token(
            &nodeproof_collector::server::admin::token_hash(&token),
            now + 3600,
            Some(1),
            now,
        )
        .unwrap();

    let a = TestAgent::new("node-a", 1);
    let (status, body) = server
        .post("/v1/enroll", a.enrollment(Some(&token), &time_at(0)))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["key_id"], a.key_id());
    assert_eq!(server.node("node-a").status, NodeStatus::Approved);

    // Re-enrolling with the same key is idempotent and does not need the (spent) token.
    let (status, body) = server
        .post("/v1/enroll", a.enrollment(Some(&token), &time_at(0)))
        .await;
    assert_eq!(status, 201, "{body}");

    // The token had one use: the next node is told so (401, with what to do), and is not
    // enrolled as pending behind the operator's back.
    let b = TestAgent::new("node-b", 2);
    let (status, body) = server
        .post("/v1/enroll", b.enrollment(Some(&token), &time_at(0)))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "bad_token");
    assert!(
        body["message"].as_str().unwrap().contains("token create"),
        "{body}"
    );
    assert!(server.store.node("node-b").unwrap().is_none());
}

#[tokio::test]
async fn enrolment_without_a_token_is_pending_until_approved() {
    let server = TestServer::start().await;
    let mut agent = TestAgent::new("node-1", 1);
    let (status, body) = server
        .post("/v1/enroll", agent.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");

    let report = agent.next_full();
    let before = server.snapshot("node-1");
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("node_pending")),
        "{body}"
    );
    server.assert_nothing_stored(&before, &report, false);

    server
        .store
        .set_status("node-1", NodeStatus::Approved, 0)
        .unwrap();
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&report);
    assert_eq!(server.node("node-1").last_sequence, 1);
}

#[tokio::test]
async fn enrolling_a_taken_name_with_another_key_is_409() {
    let (server, _agent) = server_with_node().await;
    let impostor = TestAgent::new("node-1", 9);
    let (status, body) = server
        .post("/v1/enroll", impostor.enrollment(None, &time_at(0)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("name_taken")),
        "{body}"
    );
    assert_ne!(server.node("node-1").key_id, impostor.key_id());
}

#[tokio::test]
async fn enrolment_signed_by_another_key_is_401() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-1", 1);
    let other = TestAgent::new("node-1", 2);
    // The payload names agent's key, but other signed it (under agent's keyid).
    let mut envelope = Envelope::from_json_bytes(&agent.enrollment(None, &time_at(0))).unwrap();
    let payload = STANDARD.decode(&envelope.payload).unwrap();
    let forged = sign(ENROLL_PAYLOAD_TYPE, &payload, &other.key);
    envelope.signatures[0].sig = forged.signatures[0].sig.clone();
    let (status, body) = server.post("/v1/enroll", envelope.to_json_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    assert!(server.store.node("node-1").unwrap().is_none());
}

#[tokio::test]
async fn enrolment_with_a_stale_time_is_refused() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-1", 1);
    let (status, body) = server
        .post("/v1/enroll", agent.enrollment(None, &time_at(-3600)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("clock_skew")),
        "{body}"
    );
    assert!(server.store.node("node-1").unwrap().is_none());
}

// ---------------------------------------------------------------- acceptance

#[tokio::test]
async fn chained_reports_are_accepted_in_order() {
    let (server, mut agent) = server_with_node().await;
    for sequence in 2..=4 {
        let report = agent.next_full();
        let (status, body) = server.post("/v1/reports", report.clone()).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["sequence"], sequence);
        assert_eq!(body["duplicate"], false);
        assert_eq!(body["digest"], sha256_hex(&report));
        agent.accepted(&report);
    }
    let node = server.node("node-1");
    assert_eq!(node.last_sequence, 4);
    assert_eq!(node.last_digest, agent.last);
    assert_eq!(server.history_len("node-1"), 4);
}

#[tokio::test]
async fn duplicate_resend_is_200_and_stored_once() {
    let (server, mut agent) = server_with_node().await;
    let report = agent.next_full();
    let (status, _) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201);
    agent.accepted(&report);
    let before = server.snapshot("node-1");

    // The answer was lost; the agent sends the same bytes again.
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["sequence"], 2);
    assert_eq!(server.snapshot("node-1"), before);

    // An older one, not the last, is a duplicate too (not a replay).
    let first_digest = server.store.history("node-1", 10).unwrap()[1]
        .digest
        .clone();
    let first = server.store.envelope(&first_digest).unwrap().unwrap();
    let (status, body) = server.post("/v1/reports", first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.snapshot("node-1"), before);
}

#[tokio::test]
async fn concurrent_copies_of_one_report_store_it_once() {
    let (server, agent) = server_with_node().await;
    let report = agent.next_full();
    let answers = join_all(
        (0..8)
            .map(|_| server.post_task("/v1/reports", report.clone()))
            .collect(),
    )
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let duplicates = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, duplicates), (1, 7), "{answers:?}");
    assert_eq!(server.history_len("node-1"), 2);
}

#[tokio::test]
async fn many_nodes_reporting_at_once_all_commit() {
    let server = TestServer::start().await;
    let mut agents = Vec::new();
    for i in 0..10u8 {
        let agent = TestAgent::new(&format!("node-{i}"), 10 + i);
        enroll_approved(&server, &agent).await;
        agents.push(agent);
    }
    for _round in 0..3 {
        let envelopes: Vec<Vec<u8>> = agents.iter().map(TestAgent::next_full).collect();
        let answers = join_all(
            envelopes
                .iter()
                .map(|e| server.post_task("/v1/reports", e.clone()))
                .collect(),
        )
        .await;
        for ((status, body), (agent, envelope)) in
            answers.iter().zip(agents.iter_mut().zip(&envelopes))
        {
            assert_eq!(*status, 201, "{body}");
            agent.accepted(envelope);
        }
    }
    for agent in &agents {
        assert_eq!(server.node(&agent.name).last_sequence, 3);
        assert_eq!(server.history_len(&agent.name), 3);
    }
    let (_, stats) = server.get("/v1/stats", None).await;
    assert_eq!(stats["reports"]["accepted"], 30);
}

/// Sends a refused request and checks the answer and that nothing was stored.
async fn refused(
    server: &TestServer,
    envelope: Vec<u8>,
    status: u16,
    code: &str,
    chain_event: bool,
) -> Value {
    let before = server.snapshot("node-1");
    let (got, body) = server.post("/v1/reports", envelope.clone()).await;
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| m.len() > 20),
        "a message a person can act on: {body}"
    );
    server.assert_nothing_stored(&before, &envelope, chain_event);
    let (_, stats) = server.get("/v1/stats", None).await;
    assert!(
        stats["reports"]["rejected"][code].as_u64().unwrap_or(0) >= 1,
        "{code} is counted: {stats}"
    );
    body
}

#[tokio::test]
async fn forged_signature_is_401() {
    let (server, agent) = server_with_node().await;
    // Signed by another key that claims to be the node's (keyids are only hints).
    let forger = TestAgent {
        key: ed25519_dalek::SigningKey::from_bytes(&[66; 32]),
        ..agent.clone()
    };
    let mut envelope = Envelope::from_json_bytes(&forger.next_full()).unwrap();
    envelope.signatures[0].keyid = agent.key_id();
    refused(
        &server,
        envelope.to_json_bytes(),
        401,
        "bad_signature",
        false,
    )
    .await;
}

#[tokio::test]
async fn tampered_payload_is_401() {
    let (server, agent) = server_with_node().await;
    let mut envelope = Envelope::from_json_bytes(&agent.next_full()).unwrap();
    let payload = String::from_utf8(STANDARD.decode(&envelope.payload).unwrap()).unwrap();
    let tampered = payload.replacen("\"status\":\"fail\"", "\"status\":\"pass\"", 1);
    assert_ne!(tampered, payload);
    envelope.payload = STANDARD.encode(tampered);
    refused(
        &server,
        envelope.to_json_bytes(),
        401,
        "bad_signature",
        false,
    )
    .await;
}

#[tokio::test]
async fn truncated_signature_is_401() {
    let (server, agent) = server_with_node().await;
    let mut envelope = Envelope::from_json_bytes(&agent.next_full()).unwrap();
    let sig = STANDARD.decode(&envelope.signatures[0].sig).unwrap();
    envelope.signatures[0].sig = STANDARD.encode(&sig[..32]);
    refused(
        &server,
        envelope.to_json_bytes(),
        401,
        "bad_signature",
        false,
    )
    .await;
}

#[tokio::test]
async fn unknown_key_is_401() {
    let (server, agent) = server_with_node().await;
    let stranger = TestAgent {
        key: ed25519_dalek::SigningKey::from_bytes(&[77; 32]),
        ..agent.clone()
    };
    refused(&server, stranger.next_full(), 401, "unknown_key", false).await;
}

#[tokio::test]
async fn revoked_node_is_403() {
    let (server, agent) = server_with_node().await;
    server
        .store
        .set_status("node-1", NodeStatus::Revoked, 0)
        .unwrap();
    refused(&server, agent.next_full(), 403, "node_revoked", false).await;
}

// The node's key was used (and remembered) by the report `server_with_node` sent: these
// check that a remembered key never outlives a revocation, whatever else is wrong.

#[tokio::test]
async fn revoked_node_with_a_bad_signature_is_403() {
    let (server, agent) = server_with_node().await;
    server
        .store
        .set_status("node-1", NodeStatus::Revoked, 0)
        .unwrap();
    let mut envelope = Envelope::from_json_bytes(&agent.next_full()).unwrap();
    let payload = String::from_utf8(STANDARD.decode(&envelope.payload).unwrap()).unwrap();
    envelope.payload =
        STANDARD.encode(payload.replacen("\"status\":\"fail\"", "\"status\":\"pass\"", 1));
    refused(
        &server,
        envelope.to_json_bytes(),
        403,
        "node_revoked",
        false,
    )
    .await;
}

#[tokio::test]
async fn revoked_node_out_of_chain_is_403_not_a_chain_break() {
    let (server, mut agent) = server_with_node().await;
    server
        .store
        .set_status("node-1", NodeStatus::Revoked, 0)
        .unwrap();
    // A gap would be a 409 with a chain event for an approved node.
    agent.sequence += 1;
    refused(&server, agent.next_full(), 403, "node_revoked", false).await;
}

#[tokio::test]
async fn revocation_by_another_process_is_seen_at_once() {
    let (server, mut agent) = server_with_node().await;
    // The CLI opens the database file on its own, as `nodes revoke` does.
    let cli = open_store(&server.dir);
    cli.set_status("node-1", NodeStatus::Pending, 0).unwrap();
    refused(&server, agent.next_full(), 403, "node_pending", false).await;
    cli.set_status("node-1", NodeStatus::Approved, 0).unwrap();
    let report = agent.next_full();
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&report);
    cli.set_status("node-1", NodeStatus::Revoked, 0).unwrap();
    refused(&server, agent.next_full(), 403, "node_revoked", false).await;
}

#[tokio::test]
async fn replayed_sequence_is_409_and_recorded() {
    let (server, mut agent) = server_with_node().await;
    let second = agent.next_full();
    assert_eq!(server.post("/v1/reports", second.clone()).await.0, 201);
    agent.accepted(&second);
    // Sequence 2 again, but a different envelope (a new scan signed for the same slot).
    // Its scan time is a minute earlier: `time_at(-1)` could equal the second report's
    // `time_at(0)` when the clock crosses a second between the two, and the very same
    // envelope is a duplicate (200), not a replay.
    let first = server.store.history("node-1", 10).unwrap()[1]
        .digest
        .clone();
    let replay = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(2, Some(first), &time_at(-60)),
    ));
    let body = refused(&server, replay, 409, "replay", true).await;
    assert_eq!(body["last_sequence"], 2);
    assert_eq!(body["last_digest"], json!(agent.last));
    let events = server.store.chain_events("node-1").unwrap();
    assert_eq!(events[0].kind, "replay");
    assert_eq!(events[0].got_sequence, 2);
}

#[tokio::test]
async fn fork_is_409_and_recorded() {
    let (server, agent) = server_with_node().await;
    let fork = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(2, Some("00".repeat(32)), &time_at(0)),
    ));
    let body = refused(&server, fork, 409, "chain_fork", true).await;
    assert_eq!(body["last_sequence"], 1);
    assert_eq!(body["last_digest"], json!(agent.last));
    assert_eq!(
        server.store.chain_events("node-1").unwrap()[0].kind,
        "chain_fork"
    );
}

#[tokio::test]
async fn gap_is_409_and_recorded() {
    let (server, agent) = server_with_node().await;
    let gap = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(5, Some("00".repeat(32)), &time_at(0)),
    ));
    let body = refused(&server, gap, 409, "chain_gap", true).await;
    assert_eq!(body["last_sequence"], 1);
    assert_eq!(
        server.store.chain_events("node-1").unwrap()[0].kind,
        "chain_gap"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (server, _agent) = server_with_node().await;
    let body = vec![b' '; (1 << 20) + 4096];
    refused(&server, body, 413, "too_large", false).await;
    // The connection survived the refusal well enough for the next request.
    assert_eq!(server.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (server, agent) = server_with_node().await;
    let whole = agent.next_full();
    refused(
        &server,
        whole[..whole.len() / 2].to_vec(),
        400,
        "malformed",
        false,
    )
    .await;
    refused(&server, b"{\"hello\": 1}".to_vec(), 400, "malformed", false).await;
}

#[tokio::test]
async fn wrong_payload_type_is_422() {
    let (server, agent) = server_with_node().await;
    let mut envelope = Envelope::from_json_bytes(&agent.next_full()).unwrap();
    let payload = STANDARD.decode(&envelope.payload).unwrap();
    envelope = sign("application/json", &payload, &agent.key);
    refused(
        &server,
        envelope.to_json_bytes(),
        422,
        "wrong_payload_type",
        false,
    )
    .await;
}

#[tokio::test]
async fn statement_without_subjects_is_422() {
    let (server, agent) = server_with_node().await;
    let envelope = agent.sign(&Statement::new(
        vec![],
        agent.report(2, agent.last.clone(), &time_at(0)),
    ));
    refused(&server, envelope, 422, "bad_statement", false).await;
}

#[tokio::test]
async fn scan_time_ahead_of_the_clock_is_422() {
    let (server, agent) = server_with_node().await;
    let envelope = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(2, agent.last.clone(), &time_at(3600)),
    ));
    refused(&server, envelope, 422, "clock_skew", false).await;
}

#[tokio::test]
async fn scan_time_before_the_previous_scan_is_422() {
    let (server, agent) = server_with_node().await;
    let envelope = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(2, agent.last.clone(), &time_at(-3600)),
    ));
    let body = refused(&server, envelope, 422, "clock_skew", false).await;
    assert!(
        body["message"].as_str().unwrap().contains("backwards"),
        "{body}"
    );
}

#[tokio::test]
async fn scan_older_than_max_age_is_422() {
    let server = TestServer::start().await;
    let agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let envelope = agent.sign(&Statement::new(
        TestAgent::subjects(),
        agent.report(1, None, &time_at(-8 * 24 * 3600)),
    ));
    refused(&server, envelope, 422, "too_old", false).await;
}

#[tokio::test]
async fn report_without_link_is_bad_link() {
    let (server, agent) = server_with_node().await;
    let mut report = agent.report(2, agent.last.clone(), &time_at(0));
    report.link = None;
    let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
    refused(&server, envelope, 422, "bad_link", false).await;
}

#[tokio::test]
async fn report_for_another_node_is_bad_link() {
    let (server, agent) = server_with_node().await;
    let other = TestAgent::new("node-2", 2);
    enroll_approved(&server, &other).await;
    // node-1's key, node-2's name in the link.
    let mut report = other.report(1, None, &time_at(0));
    report.link.as_mut().unwrap().node = "node-2".into();
    let envelope = agent.sign(&Statement::new(TestAgent::subjects(), report));
    refused(&server, envelope, 422, "bad_link", false).await;
    assert_eq!(server.node("node-2").last_sequence, 0);
}

#[tokio::test]
async fn unchanged_notice_of_an_unknown_report_is_409() {
    let (server, mut agent) = server_with_node().await;
    agent.last_full = Some(("cd".repeat(32), 1, "ef".repeat(32)));
    refused(&server, agent.next_unchanged(1), 409, "unknown_base", false).await;
}

#[tokio::test]
async fn a_failed_commit_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = std::sync::Arc::new(FlakyStore {
        inner: open_store(&dir),
        fail_commits: std::sync::atomic::AtomicBool::new(false),
    });
    let server = TestServer::start_with(dir, None, flaky.clone()).await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let first = agent.next_full();
    assert_eq!(server.post("/v1/reports", first.clone()).await.0, 201);
    agent.accepted(&first);

    flaky
        .fail_commits
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let report = agent.next_full();
    let before = server.snapshot("node-1");
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("internal")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("injected"),
        "{body}"
    );
    server.assert_nothing_stored(&before, &report, false);

    // The writer forgot what it had decided: the same report is new, not a duplicate,
    // and the chain goes on from what is stored.
    flaky
        .fail_commits
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["duplicate"], false);
    agent.accepted(&report);
    let next = agent.next_full();
    assert_eq!(server.post("/v1/reports", next).await.0, 201);
}

// ---------------------------------------------------------------- unchanged notices

#[tokio::test]
async fn unchanged_notices_replace_each_other_in_place() {
    let (server, mut agent) = server_with_node().await;
    let mut notices = Vec::new();
    for count in 1..=3 {
        let notice = agent.next_unchanged(count);
        let (status, body) = server.post("/v1/reports", notice.clone()).await;
        assert_eq!(status, 201, "{body}");
        agent.accepted(&notice);
        notices.push(notice);
    }
    // One full report and one notice, which attests the whole run.
    let history = server.store.history("node-1", 10).unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].kind, "unchanged");
    assert_eq!(history[0].sequence, 4);
    assert_eq!(history[0].count, Some(3));
    assert!(server.store.has_digest(&sha256_hex(&notices[2])).unwrap());
    assert!(!server.store.has_digest(&sha256_hex(&notices[0])).unwrap());
    assert_eq!(server.node("node-1").last_sequence, 4);

    // A full report ends the run; the next notice starts a new row.
    let full = agent.next_full();
    assert_eq!(server.post("/v1/reports", full.clone()).await.0, 201);
    agent.accepted(&full);
    let notice = agent.next_unchanged(1);
    assert_eq!(server.post("/v1/reports", notice.clone()).await.0, 201);
    assert_eq!(server.history_len("node-1"), 4);
}

/// The old collector stored notice 3, then notice 9 whose `previous` named notice 8, which
/// it had replaced: a chain with a hole. Under the chain rule such a notice is refused, and
/// what is stored walks with no fault.
#[tokio::test]
async fn the_old_gap_in_the_stored_chain_can_no_longer_happen() {
    let (server, mut agent) = server_with_node().await;
    for count in 1..=2 {
        let notice = agent.next_unchanged(count);
        assert_eq!(server.post("/v1/reports", notice.clone()).await.0, 201);
        agent.accepted(&notice);
    }
    let last_notice = agent.last.clone();
    // Old rule: linked to the notice before it, which the collector does not keep.
    let old_style = agent.unchanged_at(4, last_notice.clone(), 3);
    let body = refused(&server, old_style, 409, "chain_fork", true).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("upgrade the agent"),
        "{body}"
    );
    // Sequences skipped: the notice would stand for scans nobody signed for.
    let skips = agent.unchanged_at(9, Some(agent.last_full.clone().unwrap().0), 8);
    refused(&server, skips, 409, "chain_gap", true).await;
    // Claiming more scans than its place allows.
    let inflated = agent.unchanged_at(4, Some(agent.last_full.clone().unwrap().0), 30);
    refused(&server, inflated, 422, "bad_link", false).await;

    let notice = agent.next_unchanged(3);
    assert_eq!(server.post("/v1/reports", notice.clone()).await.0, 201);
    agent.accepted(&notice);
    let full = agent.next_full();
    assert_eq!(server.post("/v1/reports", full.clone()).await.0, 201);
    let links = server.store.chain_links("node-1").unwrap();
    let shape: Vec<(u64, bool)> = links
        .iter()
        .map(|l| {
            (
                l.sequence,
                matches!(l.kind, nodeproof_proto::chain::LinkKind::Full),
            )
        })
        .collect();
    assert_eq!(shape, [(1, true), (4, false), (5, true)]);
    assert_eq!(links[2].previous.as_deref(), Some(links[1].digest.as_str()));
    assert_eq!(nodeproof_proto::chain::walk(None, &links), vec![]);
}

// ---------------------------------------------------------------- key rotation

fn rotation(agent: &TestAgent, new: &TestAgent, time: &str) -> Envelope {
    let request = RotateRequest {
        node: agent.name.clone(),
        new_public_key: new.public_pem(),
        time: time.to_string(),
    };
    sign(
        ROTATE_PAYLOAD_TYPE,
        &serde_json::to_vec(&request).unwrap(),
        &agent.key,
    )
}

#[tokio::test]
async fn key_rotation_switches_keys_and_refuses_the_old_one() {
    let (server, mut agent) = server_with_node().await;
    let new = TestAgent {
        key: ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
        ..agent.clone()
    };

    // Without the new key's co-signature it is refused.
    let unsigned = rotation(&agent, &new, &time_at(0));
    let (status, body) = server.post("/v1/rotate", unsigned.to_json_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    assert_eq!(server.node("node-1").key_id, agent.key_id());

    let mut envelope = rotation(&agent, &new, &time_at(0));
    add_signature(&mut envelope, &new.key).unwrap();
    let (status, body) = server.post("/v1/rotate", envelope.to_json_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key_id"], new.key_id());
    assert_eq!(server.node("node-1").key_id, new.key_id());

    // The old key is now unknown.
    refused(&server, agent.next_full(), 401, "unknown_key", false).await;
    let mut back = rotation(&agent, &agent, &time_at(0));
    back.signatures.clear();
    let back = sign(
        ROTATE_PAYLOAD_TYPE,
        &STANDARD.decode(&back.payload).unwrap(),
        &agent.key,
    );
    let (status, body) = server.post("/v1/rotate", back.to_json_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown_key")),
        "{body}"
    );
    // Sending the same rotation again (its answer lost) changes nothing and says so.
    let (status, body) = server.post("/v1/rotate", envelope.to_json_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key_id"], new.key_id());
    assert_eq!(server.node("node-1").key_id, new.key_id());

    // The chain goes on under the new key.
    agent.key = new.key.clone();
    let report = agent.next_full();
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&report);
    assert_eq!(server.node("node-1").last_sequence, 2);
}

// ---------------------------------------------------------------- reading

#[tokio::test]
async fn read_endpoints_need_the_admin_token() {
    let (server, agent) = server_with_node().await;
    let digest = agent.last.clone().unwrap();
    let paths = [
        "/v1/fleet".to_string(),
        "/v1/nodes".to_string(),
        "/v1/nodes/node-1/history".to_string(),
        format!("/v1/nodes/node-1/reports/{digest}"),
        "/v1/checks/4.2.1/failing".to_string(),
        "/v1/drift?since=2000-01-01T00:00:00Z".to_string(),
        "/v1/exceptions".to_string(),
        "/v1/exceptions/events".to_string(),
    ];
    for path in &paths {
        let (status, body) = server.get(path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        let (status, _) = server.get(path, Some("wrong-token")).await;
        assert_eq!(status, 401, "{path}");
        let (status, body) = server.admin_get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn read_endpoints_answer_the_documented_shapes() {
    let (server, mut agent) = server_with_node().await;
    let notice = agent.next_unchanged(1);
    assert_eq!(server.post("/v1/reports", notice.clone()).await.0, 201);
    agent.accepted(&notice);
    let pending = TestAgent::new("node-2", 2);
    server
        .post("/v1/enroll", pending.enrollment(None, &time_at(0)))
        .await;

    let (_, fleet) = server.admin_get("/v1/fleet").await;
    assert!(fleet["generated_at"].is_string(), "{fleet}");
    assert_eq!(fleet["nodes"]["total"], 2, "{fleet}");
    assert_eq!(fleet["nodes"]["approved"], 1, "{fleet}");
    assert_eq!(fleet["nodes"]["pending"], 1, "{fleet}");
    assert_eq!(fleet["nodes"]["failing"], 1, "{fleet}");
    let check = fleet["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cis"] == "4.2.1")
        .expect("4.2.1 counted");
    assert_eq!(check["fail"], 1, "{fleet}");

    let (_, nodes) = server.admin_get("/v1/nodes").await;
    let node = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-1")
        .unwrap();
    assert_eq!(node["status"], "approved");
    assert_eq!(node["last_sequence"], 2);
    assert_eq!(node["failing"][0]["cis"], "4.2.1", "{node}");
    assert_eq!(node["failing"][0]["severity"], "critical", "{node}");
    assert_eq!(node["failing"].as_array().unwrap().len(), 1, "{node}");
    assert_eq!(node["health"], "failing");
    assert_eq!(node["stale"], false);
    assert!(node["last_seen"].is_string());

    let (_, history) = server.admin_get("/v1/nodes/node-1/history?limit=10").await;
    assert_eq!(history[0]["kind"], "unchanged", "{history}");
    assert_eq!(history[0]["count"], 1);
    assert_eq!(history[1]["kind"], "full");
    assert_eq!(history[1]["summary"]["fail"], 1, "{history}");
    let (status, _) = server.admin_get("/v1/nodes/nobody/history").await;
    assert_eq!(status, 404);
    let (status, _) = server.admin_get("/v1/nodes/node-1/history?limit=0").await;
    assert_eq!(status, 400);

    // The stored envelope, byte for byte, and only under its own node.
    let digest = sha256_hex(&notice);
    let response = server
        .client
        .get(server.url(&format!("/v1/nodes/node-1/reports/{digest}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), notice);
    let (status, _) = server
        .admin_get(&format!("/v1/nodes/node-2/reports/{digest}"))
        .await;
    assert_eq!(status, 404);

    let (_, failing) = server.admin_get("/v1/checks/4.2.1/failing").await;
    assert_eq!(failing[0]["name"], "node-1", "{failing}");
    let (_, passing) = server.admin_get("/v1/checks/4.2.4/failing").await;
    assert_eq!(passing, json!([]));
    // By check id too; a check the catalogue does not have is a 404 that says so.
    let (_, by_id) = server
        .admin_get("/v1/checks/kubelet-anonymous-auth/failing")
        .await;
    assert_eq!(by_id[0]["name"], "node-1", "{by_id}");
    let (status, body) = server.admin_get("/v1/checks/4.2.99/failing").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a check"),
        "{body}"
    );

    let (_, drift) = server
        .admin_get("/v1/drift?since=2000-01-01T00:00:00Z")
        .await;
    let first = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["cis"] == "4.2.1")
        .expect("first report's verdicts are drift");
    assert_eq!(first["node"], "node-1");
    assert_eq!(first["to"], "fail");
    let (status, body) = server.admin_get("/v1/drift").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    // A limit keeps the newest events, in the same order.
    let all = drift.as_array().unwrap();
    assert!(all.len() >= 2, "{drift}");
    let (status, newest) = server
        .admin_get("/v1/drift?since=2000-01-01T00:00:00Z&limit=1")
        .await;
    assert_eq!(status, 200, "{newest}");
    assert_eq!(newest.as_array().unwrap()[..], all[all.len() - 1..]);
    let (_, more) = server
        .admin_get("/v1/drift?since=2000-01-01T00:00:00Z&limit=100000")
        .await;
    assert_eq!(&more, &drift);
    // X-Drift-More says whether the limit left older changes out.
    let drift_more = |query: String| {
        let request = server
            .client
            .get(server.url(&format!("/v1/drift?since=2000-01-01T00:00:00Z{query}")))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let more = response.headers()["x-drift-more"]
                .to_str()
                .unwrap()
                .to_string();
            let body: Value = response.json().await.unwrap();
            (more, body.as_array().unwrap().len())
        }
    };
    let n = all.len();
    assert_eq!(drift_more(String::new()).await, ("false".into(), n));
    assert_eq!(
        drift_more(format!("&limit={}", n - 1)).await,
        ("true".into(), n - 1)
    );
    assert_eq!(drift_more(format!("&limit={n}")).await, ("false".into(), n));
    assert_eq!(drift_more("&limit=1".into()).await, ("true".into(), 1));
    for bad in ["0", "100001", "-1", "x"] {
        let (status, body) = server
            .admin_get(&format!("/v1/drift?since=2000-01-01T00:00:00Z&limit={bad}"))
            .await;
        assert_eq!(status, 400, "limit={bad}: {body}");
    }
}

#[tokio::test]
async fn a_changed_verdict_shows_as_drift_and_in_the_counts() {
    let (server, mut agent) = server_with_node().await;
    // The operator fixed anonymous auth: 4.2.1 now passes.
    let mut report = agent.report(2, agent.last.clone(), &time_at(0));
    report.checks[0].status = Status::Pass;
    report.summary = Summary::of(&report.checks);
    let fixed = agent.sign(&Statement::new(TestAgent::subjects(), report));
    let (status, body) = server.post("/v1/reports", fixed.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&fixed);

    let (_, drift) = server
        .admin_get("/v1/drift?since=2000-01-01T00:00:00Z")
        .await;
    assert!(
        drift
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["cis"] == "4.2.1" && d["from"] == "fail" && d["to"] == "pass"),
        "{drift}"
    );
    let (_, fleet) = server.admin_get("/v1/fleet").await;
    assert_eq!(fleet["nodes"]["compliant"], 1, "{fleet}");
    let check = fleet["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cis"] == "4.2.1")
        .unwrap()
        .clone();
    assert_eq!(
        (check["pass"].as_u64(), check["fail"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(server.node("node-1").failing, Vec::<String>::new());
}

#[tokio::test]
async fn stats_and_metrics_count_by_code() {
    let (server, agent) = server_with_node().await;
    server.post("/v1/reports", b"nope".to_vec()).await;
    server.post("/v1/reports", b"nope".to_vec()).await;
    let (status, stats) = server.get("/v1/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["reports"]["accepted"], 1, "{stats}");
    assert_eq!(stats["reports"]["rejected"]["malformed"], 2, "{stats}");
    assert_eq!(stats["reports"]["rejected"]["replay"], 0, "{stats}");
    let _ = agent;

    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("nodeproof_reports_accepted_total 1"),
        "{text}"
    );
    assert!(
        text.contains("nodeproof_reports_rejected_total{reason=\"malformed\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/v2/nothing", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = server.get("/v1/reports", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

// ---------------------------------------------------------------- serving

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_identity: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nodeproof test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["node-1".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&client_key, &ca, &ca_key).unwrap();

    Pki {
        ca: ca.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_identity: format!("{}{}", client_key.serialize_pem(), client_cert.pem()),
    }
}

fn tls_client(pki: &Pki, addr: std::net::SocketAddr, identity: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .resolve("localhost", addr);
    if identity {
        builder =
            builder.identity(reqwest::Identity::from_pem(pki.client_identity.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn tls_with_a_required_client_certificate() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        cert: write("server.pem", &pki.server_cert),
        key: write("server.key", &pki.server_key),
        client_ca: Some(write("ca.pem", &pki.ca)),
    };
    let mut server = TestServer::start_in(dir, Some(files)).await;
    let addr = server.addr;
    server.client = tls_client(&pki, addr, true);

    let (status, _) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let report = agent.next_full();
    let (status, body) = server.post("/v1/reports", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    agent.accepted(&report);

    // Without a client certificate the handshake is refused.
    let anonymous = tls_client(&pki, addr, false);
    let err = anonymous
        .get(server.url("/healthz"))
        .send()
        .await
        .expect_err("no client certificate, no connection");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // Plain HTTP to the TLS port gets nowhere either.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tls_without_client_ca_serves_any_client() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), &pki.server_key).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        client_ca: None,
    };
    let server = TestServer::start_in(dir, Some(files)).await;
    let client = tls_client(&pki, server.addr, false);
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plain_http_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = std::sync::Arc::from(nodeproof_collector::store::open(&url).unwrap());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = ServeConfig {
        store,
        tls: None,
        allow_plain_http: false,
        admin_token: Some(AdminToken::new("x")),
        policy: Default::default(),
        limits: Default::default(),
        quotas: Default::default(),
        ui: Default::default(),
        export_key: None,
    };
    let err = serve(config, listener, std::future::pending())
        .await
        .expect_err("refused");
    assert!(matches!(err, ServeError::PlainHttp(_)), "{err}");
    assert!(err.to_string().contains("--allow-plain-http"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_completes_an_in_flight_request() {
    let (mut server, agent) = server_with_node().await;
    let report = agent.next_full();
    let addr = server.addr;

    // Headers now, body later: with `Expect: 100-continue` the server says when the handler
    // is reading the body, so the request is certainly in flight.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        report.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 256];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    server.trigger_shutdown();
    // The server stops accepting: new connections are refused.
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(s) => {
                    drop(s);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener is still open after shutdown");

    // The in-flight request still completes, and what it acknowledged is stored.
    socket.write_all(&report).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("the answer comes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    let store = std::sync::Arc::clone(&server.store);
    server.stop().await.expect("a clean stop");
    assert!(store.has_digest(&sha256_hex(&report)).unwrap());
    assert_eq!(store.node("node-1").unwrap().unwrap().last_sequence, 2);
}

// ---------------------------------------------------------------- the binary

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nodeproof-collector"))
}

#[test]
fn token_create_prints_the_token_alone_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let init = binary().args(["init", "--db", &db]).output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let out = binary()
        .args([
            "token", "create", "--db", &db, "--ttl", "10m", "--uses", "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert!(!token.contains('\n'), "{stdout:?}");
    assert!(token.starts_with("npt_"), "{token}");
    assert_eq!(token.len(), 4 + 43);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 use(s)"), "{stderr}");

    // The token works once per use.
    let store = nodeproof_collector::store::open(&db).unwrap();
    let hash = nodeproof_collector::server::admin::token_hash(token);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(store.redeem_token(&hash, now).unwrap());
    assert!(store.redeem_token(&hash, now).unwrap());
    assert!(!store.redeem_token(&hash, now).unwrap());
}

#[test]
fn nodes_and_fleet_commands_work_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = nodeproof_collector::store::open(&db).unwrap();
    let agent = TestAgent::new("node-1", 1);
    store
        .enroll("node-1", &agent.key_id(), &agent.public_pem(), false, 0)
        .unwrap();
    drop(store);

    let run = |args: &[&str]| {
        let out = binary().args(args).args(["--db", &db]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["nodes", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("node-1") && stdout.contains("pending"),
        "{stdout}"
    );
    assert_eq!(run(&["nodes", "approve", "node-1"]).0, Some(0));
    let (code, stdout, _) = run(&["fleet", "--format", "json"]);
    assert_eq!(code, Some(0));
    let fleet: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(fleet["summary"]["approved"], 1, "{fleet}");
    assert_eq!(fleet["nodes"][0]["name"], "node-1");
    assert_eq!(fleet["nodes"][0]["status"], "approved");
    assert!(fleet["checks"].is_array());
    let (code, stdout, _) = run(&["fleet"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("1 nodes (1 approved"), "{stdout}");

    // An error names what went wrong, with its cause, and exits 1.
    let (code, _, stderr) = run(&["nodes", "revoke", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[test]
fn serve_prints_its_address_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut child = binary()
        .args(["serve", "--init", "--listen", "127.0.0.1:0", "--db", &db])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    // A request on a plain socket: the server answers.
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut socket,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Read to the end (the child's exit closes the pipe) before waiting, so a chatty
    // shutdown cannot fill the pipe and block.
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
}

#[test]
fn serve_refuses_plain_http_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let out = binary()
        .args(["serve", "--init", "--listen", "0.0.0.0:0", "--db", &db])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-plain-http"), "{stderr}");
}
