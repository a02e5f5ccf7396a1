//! The dashboard's access rules over real HTTP: login with the admin or viewer token, the
//! session cookie's flags, expiry, logout, CSRF on changes, the session cap, the login
//! quota, and the security headers. The browser itself is driven in `browser.rs`.

mod common;

use common::*;
use nodeproof_collector::server::ui::session::Clock;
use nodeproof_collector::server::ui::UiConfig;
use nodeproof_collector::server::{AdminToken, TlsFiles};
use serde_json::{json, Value};

const VIEWER_TOKEN: &str = "test-viewer-token";

/// Where the tests that move the server's clock start it: 2027-01-15T08:00:00Z, the start
/// of a minute (the login quota counts per calendar minute).
const START: i64 = 1_800_000_000;

fn ui() -> UiConfig {
    UiConfig {
        viewer_token: Some(AdminToken::new(VIEWER_TOKEN)),
        ..UiConfig::default()
    }
}

/// A client that does not follow redirects and keeps no cookies: each test sees exactly
/// what the server sent.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs the login form; returns the status, the Set-Cookie header and the body.
async fn login(server: &TestServer, token: &str) -> (u16, Option<String>, String) {
    let r = raw_client()
        .post(server.url("/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cookie, r.text().await.unwrap())
}

/// The `name=value` part of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

async fn get_with_cookie(server: &TestServer, path: &str, cookie: &str) -> (u16, Value) {
    let r = raw_client()
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn sessions(server: &TestServer) -> u64 {
    let (status, stats) = server.get("/v1/stats", None).await;
    assert_eq!(status, 200);
    stats["dashboard"]["sessions"]
        .as_u64()
        .expect("session count")
}

#[tokio::test]
async fn login_with_the_admin_token_sets_a_strict_httponly_session_cookie() {
    let server = TestServer::start_with_ui(ui()).await;
    let (status, cookie, _) = login(&server, ADMIN_TOKEN).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("nodeproof_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    assert!(!cookie.contains(ADMIN_TOKEN), "the token is not the cookie");
    let pair = cookie_pair(&cookie);
    let (status, fleet) = get_with_cookie(&server, "/v1/fleet", &pair).await;
    assert_eq!(status, 200, "{fleet}");
    let (status, session) = get_with_cookie(&server, "/ui/session", &pair).await;
    assert_eq!(status, 200);
    assert_eq!(session["role"], "admin");
    assert_eq!(session["csrf"].as_str().unwrap().len(), 64);
    assert_eq!(sessions(&server).await, 1);
    server.stop().await.unwrap();
}

/// Behind a TLS-terminating proxy (`--allow-plain-http`) the browser is on HTTPS: the
/// proxy's `X-Forwarded-Proto: https` makes the cookie `Secure`.
#[tokio::test]
async fn behind_a_tls_proxy_the_session_cookie_is_secure() {
    let server = TestServer::start_with_ui(ui()).await;
    for (proto, secure) in [("https", true), ("HTTPS, http", true), ("http", false)] {
        let r = raw_client()
            .post(server.url("/ui/login"))
            .header("x-forwarded-proto", proto)
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(cookie.ends_with("; Secure"), secure, "{proto}: {cookie}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn login_with_a_wrong_token_gets_401_and_no_session() {
    let server = TestServer::start_with_ui(ui()).await;
    let (status, cookie, body) = login(&server, "not-the-token").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none(), "{cookie:?}");
    assert!(
        body.contains("not the collector's admin or viewer token"),
        "{body}"
    );
    assert_eq!(sessions(&server).await, 0);
    // A made-up cookie reads nothing.
    let (status, _) = get_with_cookie(
        &server,
        "/v1/fleet",
        &format!("nodeproof_session={}", "a".repeat(64)),
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn attack_login_flood_with_wrong_tokens_creates_no_sessions() {
    let server = TestServer::start_with_ui(UiConfig {
        logins_per_minute: 1000,
        ..ui()
    })
    .await;
    for i in 0..200 {
        let (status, cookie, _) = login(&server, &format!("guess-{i}")).await;
        assert_eq!(status, 401);
        assert!(cookie.is_none());
    }
    assert_eq!(sessions(&server).await, 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn attack_login_guessing_is_rate_limited_per_address() {
    // On a manual clock, so the attempts cannot straddle a minute and get a fresh quota.
    let (clock, hand) = Clock::manual(START);
    let server = TestServer::start_with_ui(UiConfig {
        logins_per_minute: 5,
        clock,
        ..ui()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(login(&server, "guess").await.0, 401);
    }
    // Past the quota even the right token waits: a guesser learns nothing more.
    let (status, cookie, body) = login(&server, ADMIN_TOKEN).await;
    assert_eq!(status, 429, "{body}");
    assert!(cookie.is_none());
    assert!(body.contains("Too many login attempts"));
    hand.advance(59);
    assert_eq!(login(&server, ADMIN_TOKEN).await.0, 429, "the same minute");
    // The next minute brings a new quota.
    hand.advance(1);
    let (status, cookie, body) = login(&server, ADMIN_TOKEN).await;
    assert_eq!(status, 303, "{body}");
    assert!(cookie.is_some());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn attack_session_table_is_capped_and_the_oldest_session_goes() {
    let server = TestServer::start_with_ui(UiConfig {
        max_sessions: 3,
        ..ui()
    })
    .await;
    let mut cookies = Vec::new();
    for _ in 0..5 {
        let (status, cookie, _) = login(&server, VIEWER_TOKEN).await;
        assert_eq!(status, 303);
        cookies.push(cookie_pair(&cookie.unwrap()));
    }
    assert_eq!(sessions(&server).await, 3);
    // The first two made room for the last two.
    for (i, c) in cookies.iter().enumerate() {
        let want = if i < 2 { 401 } else { 200 };
        assert_eq!(
            get_with_cookie(&server, "/v1/fleet", c).await.0,
            want,
            "session {i}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_expires() {
    // The server's clock moves only when the test moves it: no waiting on the real one.
    let (clock, hand) = Clock::manual(START);
    let server = TestServer::start_with_ui(UiConfig {
        session_ttl_secs: 60,
        clock,
        ..ui()
    })
    .await;
    let (_, cookie, _) = login(&server, ADMIN_TOKEN).await;
    let cookie = cookie.unwrap();
    assert!(cookie.contains("Max-Age=60"), "{cookie}");
    let pair = cookie_pair(&cookie);
    let (status, session) = get_with_cookie(&server, "/ui/session", &pair).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["expires_at"], "2027-01-15T08:01:00Z", "{session}");
    hand.advance(59);
    assert_eq!(get_with_cookie(&server, "/v1/fleet", &pair).await.0, 200);
    assert_eq!(sessions(&server).await, 1);
    hand.advance(1);
    assert_eq!(
        get_with_cookie(&server, "/v1/fleet", &pair).await.0,
        401,
        "expired at its end"
    );
    assert_eq!(sessions(&server).await, 0, "an expired session is dropped");
    assert_eq!(get_with_cookie(&server, "/ui/session", &pair).await.0, 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_ends_the_session_server_side() {
    let server = TestServer::start_with_ui(ui()).await;
    let (_, cookie, _) = login(&server, ADMIN_TOKEN).await;
    let pair = cookie_pair(&cookie.unwrap());
    let (_, session) = get_with_cookie(&server, "/ui/session", &pair).await;
    let csrf = session["csrf"].as_str().unwrap().to_string();

    let r = raw_client()
        .post(server.url("/ui/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token, no logout");
    assert_eq!(get_with_cookie(&server, "/v1/fleet", &pair).await.0, 200);

    let r = raw_client()
        .post(server.url("/ui/logout"))
        .header("cookie", &pair)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The same cookie, kept by an attacker, is worthless now.
    assert_eq!(get_with_cookie(&server, "/v1/fleet", &pair).await.0, 401);
    assert_eq!(sessions(&server).await, 0);
    server.stop().await.unwrap();
}

fn exception_body() -> Value {
    json!({"check": "4.2.13", "all": true, "until": "2099-01-01", "reason": "r", "by": "b"})
}

#[tokio::test]
async fn attack_csrf_a_change_with_the_cookie_alone_is_refused() {
    let server = TestServer::start_with_ui(ui()).await;
    let (_, cookie, _) = login(&server, ADMIN_TOKEN).await;
    let pair = cookie_pair(&cookie.unwrap());
    let post = |csrf: Option<String>| {
        let mut r = raw_client()
            .post(server.url("/v1/exceptions"))
            .header("cookie", &pair)
            .json(&exception_body());
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("CSRF"), "{body}");
    assert_eq!(post(Some("0".repeat(64))).await.unwrap().status(), 403);
    assert!(
        server.store.exceptions().unwrap().is_empty(),
        "nothing was added"
    );

    let (_, session) = get_with_cookie(&server, "/ui/session", &pair).await;
    let csrf = session["csrf"].as_str().unwrap().to_string();
    assert_eq!(post(Some(csrf)).await.unwrap().status(), 201);
    assert_eq!(server.store.exceptions().unwrap().len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_viewer_token_reads_but_cannot_change() {
    let server = TestServer::start_with_ui(ui()).await;
    let (status, _) = server.get("/v1/fleet", Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post_json("/v1/exceptions", &exception_body(), Some(VIEWER_TOKEN))
        .await;
    assert_eq!(status, 403, "{body}");
    // A viewer session with its own CSRF token cannot change anything either.
    let (_, cookie, _) = login(&server, VIEWER_TOKEN).await;
    let pair = cookie_pair(&cookie.unwrap());
    let (_, session) = get_with_cookie(&server, "/ui/session", &pair).await;
    assert_eq!(session["role"], "viewer");
    let r = raw_client()
        .post(server.url("/v1/exceptions"))
        .header("cookie", &pair)
        .header("x-csrf-token", session["csrf"].as_str().unwrap())
        .json(&exception_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(server.store.exceptions().unwrap().is_empty());
    server.stop().await.unwrap();
}

/// `GET /v1/export` streams the signed evidence bundle: the admin token, or an admin
/// dashboard session (the dashboard's export link); never the viewer role, never nobody.
/// `GET /v1/nodes/{name}/keys` (public keys, shown on the node page) is any reader's.
#[tokio::test]
async fn the_export_takes_an_admin_session_and_refuses_the_viewer() {
    let server = TestServer::start_with_ui(ui()).await;
    let agent = TestAgent::new("node-1", 1);
    enroll_approved(&server, &agent).await;
    let export = |auth: Option<(&'static str, String)>| {
        let mut r = raw_client().get(server.url("/v1/export?node=node-1"));
        if let Some((name, value)) = auth {
            r = r.header(name, value);
        }
        r.send()
    };
    let (_, admin, _) = login(&server, ADMIN_TOKEN).await;
    let admin = cookie_pair(&admin.unwrap());
    let r = export(Some(("cookie", admin.clone()))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let bundle = r.bytes().await.unwrap();
    assert_eq!(&bundle[..2], b"\x1f\x8b", "a gzip stream");

    let (_, viewer, _) = login(&server, VIEWER_TOKEN).await;
    let viewer = cookie_pair(&viewer.unwrap());
    for (auth, status) in [
        (Some(("cookie", viewer.clone())), 403),
        (
            Some(("authorization", format!("Bearer {VIEWER_TOKEN}"))),
            403,
        ),
        (Some(("authorization", "Bearer wrong".to_string())), 401),
        (
            Some(("cookie", format!("nodeproof_session={}", "0".repeat(64)))),
            401,
        ),
        (None, 401),
    ] {
        let r = export(auth.clone()).await.unwrap();
        assert_eq!(r.status(), status, "{auth:?}");
        assert_ne!(r.headers()["content-type"], "application/gzip");
        let body: Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("admin"), "{message}");
    }

    // The keys: admin or viewer, token or session.
    for (name, value) in [
        ("cookie", viewer.clone()),
        ("cookie", admin.clone()),
        ("authorization", format!("Bearer {VIEWER_TOKEN}")),
    ] {
        let r = raw_client()
            .get(server.url("/v1/nodes/node-1/keys"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let keys: Value = r.json().await.unwrap();
        assert_eq!(keys["keys"][0]["keyid"], agent.key_id().as_str());
    }
    let (status, _) = server.get("/v1/nodes/node-1/keys", None).await;
    assert_eq!(status, 401);

    // After logout the admin cookie exports nothing.
    let (_, session) = get_with_cookie(&server, "/ui/session", &admin).await;
    let r = raw_client()
        .post(server.url("/ui/logout"))
        .header("cookie", &admin)
        .header("x-csrf-token", session["csrf"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(export(Some(("cookie", admin))).await.unwrap().status(), 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn attack_login_csrf_from_another_origin_is_refused() {
    let server = TestServer::start_with_ui(ui()).await;
    let r = raw_client()
        .post(server.url("/ui/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(sessions(&server).await, 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_token_never_travels_in_a_url() {
    let server = TestServer::start_with_ui(ui()).await;
    // The login page posts the token in the body.
    let page = raw_client()
        .get(server.url("/ui/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("method=\"post\""), "{page}");
    // A successful login redirects to a URL without it.
    let r = raw_client()
        .post(server.url("/ui/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    // A token in the query string is not a credential anywhere.
    for path in [
        format!("/v1/fleet?token={ADMIN_TOKEN}"),
        format!("/ui/?token={ADMIN_TOKEN}"),
        format!("/ui/login?token={ADMIN_TOKEN}"),
    ] {
        let r = raw_client().get(server.url(&path)).send().await.unwrap();
        assert!(
            r.status() == 401
                || r.headers()
                    .get("location")
                    .is_some_and(|l| l == "/ui/login")
                || r.status() == 200 && !r.headers().contains_key("set-cookie"),
            "{path}: {}",
            r.status()
        );
        assert!(r.headers().get("set-cookie").is_none(), "{path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_dashboard_sends_a_strict_content_security_policy() {
    let server = TestServer::start_with_ui(ui()).await;
    let (_, cookie, _) = login(&server, ADMIN_TOKEN).await;
    let pair = cookie_pair(&cookie.unwrap());
    for path in ["/ui/login", "/ui/", "/ui/assets/app.js", "/v1/fleet"] {
        let mut r = raw_client().get(server.url(path));
        if path != "/ui/login" {
            r = r.header("cookie", &pair);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for d in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(d), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    // Without a session the app page sends you to the login page.
    let r = raw_client().get(server.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = raw_client().get(server.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    let r = raw_client()
        .get(server.url("/ui/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_secure() {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("s.key"), key.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("s.pem"),
        key: dir.path().join("s.key"),
        client_ca: None,
    };
    let store = open_store(&dir);
    let server = TestServer::start_full(
        dir,
        Some(files),
        store,
        Default::default(),
        Default::default(),
        ui(),
    )
    .await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(server.url("/ui/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_matrix_and_node_endpoints_show_a_failing_node() {
    let (server, agent) = server_with_node().await;
    let (status, m) = server.admin_get("/v1/matrix?status=failing").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["total"], 1);
    assert_eq!(m["rows"][0]["name"], "node-1");
    let col = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["cis"] == "4.2.1")
        .unwrap();
    assert_eq!(m["rows"][0]["cells"][col], "fail");
    let (status, m) = server
        .admin_get("/v1/matrix?severity=low&status=failing")
        .await;
    assert_eq!(status, 200);
    assert_eq!(m["total"], 0, "4.2.1 is critical, not low: {m}");
    let (status, bad) = server.admin_get("/v1/matrix?severity=urgent").await;
    assert_eq!(status, 400, "{bad}");

    let (status, d) = server.admin_get("/v1/nodes/node-1").await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "failing");
    assert_eq!(d["key"]["key_id"], agent.key_id());
    let checks = d["report"]["checks"].as_array().unwrap();
    let anon = checks.iter().find(|c| c["cis"] == "4.2.1").unwrap();
    assert_eq!(anon["status"], "fail");
    assert_eq!(anon["severity"], "critical");
    let (status, _) = server.admin_get("/v1/nodes/nobody").await;
    assert_eq!(status, 404);

    let (status, o) = server.admin_get("/v1/overview").await;
    assert_eq!(status, 200);
    assert_eq!(o["nodes"]["failing"], 1);
    assert_eq!(o["severities"][0]["severity"], "critical");
    assert_eq!(o["severities"][0]["nodes"], 1);
    server.stop().await.unwrap();
}
