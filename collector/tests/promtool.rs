//! `/metrics` as Prometheus reads it: the real output of a collector with a failing node
//! and an exception about to expire passes `promtool check metrics`, carries the compliance
//! gauges alerts are written on, and the example rules in `deploy/prometheus/` pass
//! `promtool check rules` and their unit tests. promtool comes from Debian's `prometheus`
//! package, which `scripts/test` installs.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use nodeproof_collector::server::ui::UiConfig;
use nodeproof_collector::server::AdminToken;
use serde_json::json;

fn promtool() -> PathBuf {
    let path = std::env::var_os("NODEPROOF_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is needed (Debian: apt-get install prometheus; scripts/test installs it)"
    );
    path
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn metrics(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut r = server.client.get(server.url("/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_pass_promtool_and_show_a_failing_node() {
    let promtool = promtool();
    let server = TestServer::start_with_ui(UiConfig {
        metrics_cache: std::time::Duration::ZERO,
        ..UiConfig::default()
    })
    .await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let report = agent.next_full();
    assert_eq!(server.post("/v1/reports", report.clone()).await.0, 201);
    agent.accepted(&report);
    // An exception ending in 3 days: counted active and expiring.
    let until = time_at(3 * 86_400);
    let (status, body) = server
        .post_json(
            "/v1/exceptions",
            &json!({"check": "4.2.13", "all": true, "until": until, "reason": "r", "by": "b"}),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, text) = metrics(&server, None).await;
    assert_eq!(status, 200);
    for line in [
        "nodeproof_nodes{status=\"failing\"} 1\n",
        "nodeproof_check_failing_nodes{cis=\"4.2.1\",id=\"kubelet-anonymous-auth\",severity=\"critical\"} 1\n",
        "nodeproof_node_failing_checks{node=\"node-1\",severity=\"critical\"} 1\n",
        "nodeproof_exceptions{state=\"active\"} 1\n",
        "nodeproof_exceptions_expiring 1\n",
        "nodeproof_reports_accepted_total 1\n",
        "nodeproof_connections_open ",
        "nodeproof_node_last_report_timestamp_seconds{node=\"node-1\"} ",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_example_alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = promtool();
    let dir = repo().join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn with_a_metrics_token_metrics_need_it() {
    let server = TestServer::start_with_ui(UiConfig {
        metrics_token: Some(AdminToken::new("scrape-me")),
        ..UiConfig::default()
    })
    .await;
    assert_eq!(metrics(&server, None).await.0, 401);
    assert_eq!(metrics(&server, Some("wrong")).await.0, 401);
    assert_eq!(
        metrics(&server, Some(ADMIN_TOKEN)).await.0,
        401,
        "its own token"
    );
    let (status, text) = metrics(&server, Some("scrape-me")).await;
    assert_eq!(status, 200);
    assert!(text.contains("nodeproof_nodes{status=\"ok\"} 0"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn per_node_series_can_be_turned_off() {
    let server = TestServer::start_with_ui(UiConfig {
        metrics_per_node_limit: 0,
        ..UiConfig::default()
    })
    .await;
    let mut agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let report = agent.next_full();
    assert_eq!(server.post("/v1/reports", report.clone()).await.0, 201);
    agent.accepted(&report);
    let (_, text) = metrics(&server, None).await;
    assert!(!text.contains("node=\""), "{text}");
    assert!(text.contains("nodeproof_metrics_per_node 0\n"));
    assert!(text.contains("nodeproof_nodes{status=\"failing\"} 1\n"));
    server.stop().await.unwrap();
}
