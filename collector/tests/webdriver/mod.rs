//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! chromedriver from the tests: sessions, navigation, elements, scripts, screenshots and
//! alerts. WebDriver is JSON over HTTP, so this is reqwest (already a test dependency) and
//! serde_json rather than another client crate and its dependency tree.
//!
//! chromedriver runs as a child process on a port picked by binding 127.0.0.1:0; the tests
//! wait for its `/status` to say ready, with a deadline, and kill it on drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = PathBuf::from(dir).join(n);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "{} not found (set {env}); on Debian: apt-get install chromium chromium-driver \
         (scripts/test installs them)",
        names[0]
    );
}

/// A running chromedriver.
pub struct Driver {
    child: Child,
    pub base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start() -> Driver {
        let chromedriver = tool("NODEPROOF_CHROMEDRIVER", &["chromedriver"]);
        let chromium = tool("NODEPROOF_CHROMIUM", &["chromium", "chromium-browser"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: tempfile::tempdir().unwrap(),
            chromium,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// A new headless browser.
    pub async fn session(&self) -> Browser {
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", self._profile.path().display()),
        ];
        let body = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium.display().to_string(), "args": args},
            "unhandledPromptBehavior": "ignore",
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Browser {
            url: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        }
    }
}

/// One browser session.
pub struct Browser {
    url: String,
    http: reqwest::Client,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url })).await;
        assert!(v.is_null(), "navigate to {url}: {v}");
    }

    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The element `css` selects, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits (up to 20 s) until `css` selects an element, and returns it.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never appeared on {}; page text: {}",
                self.current_url().await,
                self.eval("return document.body.innerText", json!([])).await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (up to 20 s) until `script` returns true.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(script, json!([])).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn text(&self, element: &str) -> String {
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn click(&self, element: &str) {
        let v = self
            .post(&format!("/element/{element}/click"), json!({}))
            .await;
        assert!(v.is_null(), "click: {v}");
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        let v = self
            .post(
                &format!("/element/{element}/value"),
                json!({ "text": text }),
            )
            .await;
        assert!(v.is_null(), "type: {v}");
    }

    /// The text of an open alert, confirm or prompt dialog, if one is open.
    pub async fn alert_text(&self) -> Option<String> {
        let v = self.get("/alert/text").await;
        v.as_str().map(str::to_string)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .expect("base64")
    }

    /// A PNG of the whole page: the window is made as tall as the page first.
    pub async fn full_screenshot(&self, width: u64) -> Vec<u8> {
        let height = self
            .eval("return document.documentElement.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        self.post(
            "/window/rect",
            json!({"width": width, "height": height + 140}),
        )
        .await;
        self.screenshot().await
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
