//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! chromedriver from the tests: sessions, navigation, elements, scripts, screenshots and
//! alerts. WebDriver is JSON over HTTP, so this is reqwest (already a test dependency) and
//! serde_json rather than another client crate and its dependency tree.
//!
//! chromedriver runs as a child process on a port it picks itself (`--port=0`); the tests
//! read its stdout until it says which, with a deadline, and kill it on drop.
//!
//! Nothing here sleeps. A wait is a WebDriver "execute async script" call whose script
//! resolves in the page as soon as its condition holds: it tests the condition, then again
//! on every DOM mutation and hash change (a `MutationObserver`). Each call watches one
//! document for at most [`WINDOW`] and then says so; the test then asks again, in whatever
//! document the browser now shows, until [`WAIT`] has passed. So a wait that the page's own
//! navigation cuts short (chromedriver answers "document unloaded", or, rarely, never
//! answers for the old document until its script timeout) is picked up in the new document.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one wait may take in all. Generous, for a debug build on a shared 2-core
/// machine; a wait that holds returns as soon as it does.
const WAIT: Duration = Duration::from_secs(60);
/// How long one script watches one document before it hands back to the test.
const WINDOW: Duration = Duration::from_secs(2);
/// chromedriver's script timeout: the backstop for a script whose document went away
/// without chromedriver noticing (seen after the app's own `location.assign` on logout).
/// A timeout is only ever a reason to ask again, so a slow machine costs time, not a
/// failure.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a waiting script answers when its window ends with the condition still false.
const AGAIN: &str = "nodeproof-wait-again";

/// An async script that calls back with the first truthy value of `condition` (a function
/// body; `arguments` holds the wait's arguments), testing it now and after each change of
/// the document or of the location's hash.
fn waiting_script(condition: &str) -> String {
    let window_ms = WINDOW.as_millis();
    format!(
        r#"const done = arguments[arguments.length - 1];
const args = Array.prototype.slice.call(arguments, 0, -1);
const test = function () {{ {condition} }};
let finished = false;
let observer = null;
let window_end = null;
const finish = (value) => {{
  finished = true;
  if (observer) observer.disconnect();
  if (window_end !== null) clearTimeout(window_end);
  window.removeEventListener("hashchange", check);
  done(value);
}};
const check = () => {{
  if (finished) return;
  let value = null;
  try {{ value = test.apply(null, args); }} catch (e) {{ value = null; }}
  if (value) finish(value);
}};
observer = new MutationObserver(check);
observer.observe(document, {{ childList: true, subtree: true, attributes: true, characterData: true }});
window.addEventListener("hashchange", check);
window_end = setTimeout(() => {{ if (!finished) finish("{AGAIN}"); }}, {window_ms});
check();"#
    )
}

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
        let mut child = Command::new(&chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        // "ChromeDriver was started successfully on port 40715." once it listens. The
        // thread then drains stdout to its end, so chromedriver never blocks on the pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok());
                if let Some(port) = port {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not say it was listening within 30 s: {e}");
            }
        };
        Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: tempfile::tempdir().unwrap(),
            chromium,
        }
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
            "timeouts": {"script": SCRIPT_TIMEOUT.as_millis() as u64, "pageLoad": WAIT.as_millis() as u64, "implicit": 0},
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

    /// Runs the waiting script of `condition` with `args` until it gives the condition's
    /// first truthy value, in whatever document the browser shows, for at most [`WAIT`];
    /// then panics with `what`, the page's address and its text.
    async fn wait_on(&self, what: &str, condition: &str, args: Value) -> Value {
        let script = waiting_script(condition);
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let v = self
                .post("/execute/async", json!({"script": script, "args": args}))
                .await;
            let error = v["error"].as_str().unwrap_or_default();
            if error.is_empty() {
                if v == AGAIN {
                    continue;
                }
                return v;
            }
            let message = v["message"].as_str().unwrap_or_default();
            // The document went away under the script, or never answered: ask again. An
            // open alert (node data that ran as script) or anything else is an error.
            let gone = error == "script timeout"
                || ["unloaded", "navigat", "context", "detached"]
                    .iter()
                    .any(|w| message.contains(w));
            if !gone {
                panic!(
                    "waiting for {what} on {}: {error}: {message}",
                    self.current_url().await
                );
            }
            last = format!("{error}: {message}");
            eprintln!("waiting for {what}: asking again after {last}");
        }
        panic!(
            "waited {} s for {what} on {} (last: {last}); page text: {}",
            WAIT.as_secs(),
            self.current_url().await,
            self.eval(
                "return document.body ? document.body.innerText : ''",
                json!([])
            )
            .await
        );
    }

    /// Waits until `css` selects an element, and returns it.
    pub async fn wait_for(&self, css: &str) -> String {
        let v = self
            .wait_on(css, "return document.querySelector(args[0]);", json!([css]))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("waiting for {css}: not an element: {v}"))
            .to_string()
    }

    /// Waits until `script` (a function body) returns true.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let v = self
            .wait_on(
                what,
                &format!("return ({{ f() {{ {script} }} }}).f() === true;"),
                json!([]),
            )
            .await;
        assert_eq!(v, Value::Bool(true), "waiting for {what}");
    }

    /// Waits until the dashboard shows the view of the current address: the app marks
    /// `#view` with the hash it rendered once that view's data is on screen.
    pub async fn wait_view(&self) {
        self.wait_until(
            "the dashboard to show the view of the current address",
            "const v = document.getElementById('view'); \
             return !!v && v.dataset.route === (location.hash || '#/');",
        )
        .await;
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
