//! The live probes end to end: the agent binary scans a node whose ports are served by
//! `fake-kubelet-server` (real HTTPS and HTTP listeners answering as each posture would),
//! and, in `a_kubelet_in_its_own_network_namespace_is_probed_there`, a real
//! process in a network namespace of its own, reached over a veth pair.
//!
//! Each test binds its listeners on an address of its own in 127.0.0.0/8, so the ports the
//! kubelet's settings name (10255 among them) collide with nothing else on this machine.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use common::*;
use serde_json::Value;

/// A running fake kubelet server; it exits when dropped (its stdin closes).
struct Server {
    child: Child,
    /// `(scheme, bound address)` per listener, in the order given.
    listening: Vec<(String, SocketAddr)>,
    record: PathBuf,
}

impl Server {
    /// Starts `program args` (the server binary, or `ip netns exec ...` around it) with
    /// `FAKE_KUBELET_LISTEN=listen`, and waits until it says it is ready.
    fn start(mut cmd: Command, listen: &str, record: &Path) -> Server {
        std::fs::create_dir_all(record).expect("record dir");
        let mut child = cmd
            .env("FAKE_KUBELET_LISTEN", listen)
            .env("FAKE_KUBELET_RECORD", record)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fake-kubelet-server");
        let mut listening = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read server stdout");
            if line == "ready" {
                return Server {
                    child,
                    listening,
                    record: record.to_path_buf(),
                };
            }
            let mut parts = line.split(' ');
            if let (Some("listening"), Some(scheme), Some(addr)) =
                (parts.next(), parts.next(), parts.next())
            {
                listening.push((scheme.to_string(), addr.parse().expect("addr")));
            }
        }
        let out = child.wait_with_output().expect("server exit");
        panic!(
            "fake-kubelet-server did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn port(&self, i: usize) -> u16 {
        self.listening[i].1.port()
    }

    /// The request heads the server received, in arrival order.
    fn requests(&self) -> Vec<String> {
        let mut files: Vec<(usize, String)> = std::fs::read_dir(&self.record)
            .expect("record dir")
            .map(|e| {
                let path = e.expect("entry").path();
                let n = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .expect("numbered file");
                (n, std::fs::read_to_string(&path).expect("request"))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, text)| text).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// An address of this test's own in 127.0.0.0/8 (every one of them is local on Linux).
fn own_loopback() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        77,
        (pid % 250) as u8,
        NEXT.fetch_add(1, Ordering::SeqCst),
    )
}

fn server_cmd() -> Command {
    Command::new(bin("fake-kubelet-server"))
}

/// A fake node whose kubelet runs with the secure configuration plus `extra` lines.
fn node(tmp: &Path, extra: &str) -> PathBuf {
    node_anonymous(tmp, false, extra)
}

/// The same, with anonymous authentication `anonymous`.
fn node_anonymous(tmp: &Path, anonymous: bool, extra: &str) -> PathBuf {
    let config = secure_config(extra).replace(
        "anonymous:\n    enabled: false",
        &format!("anonymous:\n    enabled: {anonymous}"),
    );
    assert!(config.contains(&format!("enabled: {anonymous}")));
    fake_node(
        tmp,
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[("/var/lib/kubelet/config.yaml", &config)],
    )
}

/// `scan --format json` with the probes on: the report and the exit code.
fn scan_probed(args: &[&str]) -> (Value, i32) {
    let mut cmd = agent();
    cmd.env_remove("NODEPROOF_NO_PROBE");
    report_of(cmd.args(["scan", "--format", "json"]).args(args))
}

fn report_of(cmd: &mut Command) -> (Value, i32) {
    let out = run(cmd);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    (report, out.status.code().expect("exit code"))
}

/// The same scan by an agent without CAP_SYS_ADMIN (`setpriv` drops it from the bounding
/// and inheritable sets), so it cannot enter another network namespace.
fn scan_probed_without_sys_admin(args: &[&str]) -> (Value, i32) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
        .arg(bin("nodeproof-agent"))
        .args(["scan", "--format", "json"])
        .args(args)
        .env_remove("NODEPROOF_NO_PROBE");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("this test needs setpriv (util-linux) to drop CAP_SYS_ADMIN: {e}")
    });
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); setpriv (util-linux) must be able to drop CAP_SYS_ADMIN: {}{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (report, out.status.code().expect("exit code"))
}

/// The note of a check, where an `error` says what the probe saw and why it settles
/// nothing (`actual` is then `unknown`, as for every check whose value is unknown).
fn note(r: &Value, id: &str) -> String {
    check(r, id)["note"].as_str().unwrap_or("").to_string()
}

fn check<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {}", r["checks"]))
}

fn status(r: &Value, id: &str) -> String {
    check(r, id)["status"].as_str().unwrap_or("").to_string()
}

/// Every request a probe sent: a GET of a read-only path, with no credentials.
fn assert_harmless(requests: &[String]) {
    for head in requests {
        assert!(
            head.starts_with("GET /pods HTTP/1.1\r\n")
                || head.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{head}"
        );
        let lower = head.to_ascii_lowercase();
        for header in [
            "authorization:",
            "cookie:",
            "proxy-authorization:",
            "x-remote-user:",
        ] {
            assert!(!lower.contains(header), "credentials sent: {head}");
        }
    }
}

/// The three postures of the seed: anonymous off (401), anonymous on with Webhook (403),
/// anonymous on with AlwaysAllow and the read-only port open (200 and 200).
#[test]
fn each_posture_is_read_from_what_its_ports_answer() {
    let postures = [
        // (anonymous, mode, api answer, read-only open, want P.1, want P.2)
        (false, "Webhook", "401", false, "pass", "pass"),
        (true, "Webhook", "403", false, "fail", "pass"),
        (true, "AlwaysAllow", "200", true, "fail", "fail"),
    ];
    for (anonymous, mode, answer, read_only_open, want_api, want_read_only) in postures {
        let tmp = tempfile::tempdir().expect("tmp");
        let ip = own_loopback();
        let server = Server::start(
            server_cmd(),
            &format!("https={ip}:0={answer},http={ip}:0=200,http={ip}:0=200"),
            &tmp.path().join("requests"),
        );
        let read_only = if read_only_open { server.port(1) } else { 0 };
        let config = format!(
            "address: {ip}\nport: {}\nreadOnlyPort: {read_only}\nhealthzBindAddress: {ip}\n\
             healthzPort: {}\nauthorization:\n  mode: {mode}\n",
            server.port(0),
            server.port(2)
        );
        let proc_dir = node_anonymous(tmp.path(), anonymous, &config);
        let (r, code) = scan_probed(&["--proc", proc_dir.to_str().expect("utf-8")]);
        let posture = format!("anonymous {anonymous}, {mode}, answer {answer}");
        assert_eq!(
            status(&r, "probe-kubelet-anonymous"),
            want_api,
            "{posture}: {r}"
        );
        assert_eq!(
            status(&r, "probe-read-only-port"),
            want_read_only,
            "{posture}"
        );
        assert_eq!(status(&r, "probe-healthz"), "pass", "{posture}");
        assert_eq!(
            status(&r, "probe-contradiction"),
            "pass",
            "{posture}: {}",
            check(&r, "probe-contradiction")
        );
        let api = check(&r, "probe-kubelet-anonymous");
        assert_eq!(api["cis"], "P.1");
        assert_eq!(api["severity"], "critical");
        assert!(
            api["actual"].as_str().unwrap_or("").starts_with(&format!(
                "GET https://{ip}:{}/pods: HTTP {answer}",
                server.port(0)
            )),
            "{}",
            api["actual"]
        );
        // The configuration checks agree with the ports here.
        let c421 = if anonymous { "fail" } else { "pass" };
        assert_eq!(status(&r, "kubelet-anonymous-auth"), c421, "{posture}");
        assert_eq!(code, if want_api == "pass" { 0 } else { 1 }, "{posture}");
        let requests = server.requests();
        assert_harmless(&requests);
        // Exactly the three probes (the read-only probe of a closed port reached nothing).
        let expected = if read_only_open { 3 } else { 2 };
        assert_eq!(requests.len(), expected, "{requests:?}");
    }
}

/// The issue's example: the files say the read-only port is 0, yet it answers.
#[test]
fn read_only_port_answering_though_the_files_say_0_is_a_loud_contradiction() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let server = Server::start(
        server_cmd(),
        &format!("https={ip}:0=401,http={ip}:10255=200"),
        &tmp.path().join("requests"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nreadOnlyPort: 0\nhealthzPort: 0\n",
        server.port(0)
    );
    let proc_dir = node(tmp.path(), &config);
    let (r, code) = scan_probed(&["--proc", proc_dir.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    // The files pass 4.2.4; the port is open; the two disagree, loudly.
    assert_eq!(status(&r, "kubelet-read-only-port"), "pass");
    assert_eq!(status(&r, "probe-read-only-port"), "fail");
    let c = check(&r, "probe-contradiction");
    assert_eq!(
        (c["status"].as_str(), c["severity"].as_str()),
        (Some("fail"), Some("critical"))
    );
    assert!(
        c["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("CONTRADICTION"),
        "{c}"
    );
    let actual = c["actual"].as_str().unwrap_or("");
    assert!(actual.contains("readOnlyPort is 0, yet"), "{actual}");
    assert!(
        actual.contains(&format!("http://{ip}:10255/pods: HTTP 200")),
        "{actual}"
    );
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("CONTRADICTION"), "{warnings}");
    // healthz is off in these settings: nothing probed, nothing to find.
    assert_eq!(status(&r, "probe-healthz"), "pass");

    // The text report says it too.
    let out = run(agent()
        .env_remove("NODEPROOF_NO_PROBE")
        .args(["scan", "--proc"])
        .arg(&proc_dir));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "== nodeproof: kubelet CIS Kubernetes Benchmark v1.12, sections 4.1, 4.2 and the API server's kubelet client, and \
             live probes =="
        ),
        "{text}"
    );
    assert!(text.contains("[INFO] P   Live probes"), "{text}");
    assert!(text.contains("[FAIL] P.4"), "{text}");
    assert!(
        text.contains("- CONTRADICTION (probe-contradiction)"),
        "{text}"
    );
    assert_harmless(&server.requests());
}

/// A port the files call open but that is closed: the probe passes, the configuration
/// check still fails, and the contradiction fails. A probe never turns a failing
/// configuration check into a pass.
#[test]
fn a_closed_port_never_turns_a_failing_configuration_check_into_a_pass() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let server = Server::start(
        server_cmd(),
        &format!("https={ip}:0=401"),
        &tmp.path().join("requests"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nreadOnlyPort: 10255\nhealthzPort: 0\n",
        server.port(0)
    );
    let proc_dir = node(tmp.path(), &config);
    let (r, _) = scan_probed(&["--proc", proc_dir.to_str().expect("utf-8")]);
    assert_eq!(status(&r, "kubelet-read-only-port"), "fail");
    assert_eq!(status(&r, "probe-read-only-port"), "pass");
    assert_eq!(status(&r, "probe-contradiction"), "fail");
}

/// An attacker who controls the port answers with a redirect to an endpoint that changes
/// something: the probe reports the 302 and goes nowhere else.
#[test]
fn probe_does_not_follow_redirects() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let target = Server::start(
        server_cmd(),
        &format!("http={ip}:0=200"),
        &tmp.path().join("target"),
    );
    let redirector = Server::start(
        server_cmd(),
        &format!(
            "https={ip}:0=302>http://{ip}:{}/run/default/victim/app?cmd=id",
            target.port(0)
        ),
        &tmp.path().join("redirector"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nhealthzPort: 0\n",
        redirector.port(0)
    );
    let proc_dir = node(tmp.path(), &config);
    let (r, _) = scan_probed(&["--proc", proc_dir.to_str().expect("utf-8")]);
    let api = check(&r, "probe-kubelet-anonymous");
    assert_eq!(api["status"], "error", "{api}");
    assert_eq!(api["actual"], "unknown", "{api}");
    assert!(
        note(&r, "probe-kubelet-anonymous").starts_with(&format!(
            "GET https://{ip}:{}/pods: HTTP 302.",
            redirector.port(0)
        )),
        "{api}"
    );
    assert_eq!(redirector.requests().len(), 1);
    assert!(target.requests().is_empty(), "followed the redirect");
}

/// A port that accepts and never answers costs one second and is `error`, not `pass`.
#[test]
fn a_silent_port_times_out_within_a_second_and_is_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let server = Server::start(
        server_cmd(),
        &format!("https={ip}:0=hang,http={ip}:0=hang"),
        &tmp.path().join("requests"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nreadOnlyPort: {}\nhealthzPort: 0\n",
        server.port(0),
        server.port(1)
    );
    let proc_dir = node(tmp.path(), &config);
    let started = Instant::now();
    let (r, code) = scan_probed(&["--proc", proc_dir.to_str().expect("utf-8")]);
    let took = started.elapsed();
    assert_eq!(code, 1);
    for id in ["probe-kubelet-anonymous", "probe-read-only-port"] {
        let c = check(&r, id);
        assert_eq!(c["status"], "error", "{c}");
        assert!(note(&r, id).contains("no answer within 1 s"), "{c}");
    }
    // Two silent probes, one second each, plus the scan.
    assert!(took.as_secs_f64() < 4.5, "{took:?}");
}

#[test]
fn no_probe_sends_nothing_and_reports_no_probe_checks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let server = Server::start(
        server_cmd(),
        &format!("https={ip}:0=200,http={ip}:0=200"),
        &tmp.path().join("requests"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nhealthzBindAddress: {ip}\nhealthzPort: {}\n",
        server.port(0),
        server.port(1)
    );
    let proc_dir = node(tmp.path(), &config);
    let proc_arg = proc_dir.to_str().expect("utf-8");
    let probed = |r: &Value| {
        r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["id"].as_str().unwrap_or("").starts_with("probe-"))
            .count()
    };
    let (r, code) = scan_probed(&["--proc", proc_arg, "--no-probe"]);
    assert_eq!(code, 0, "{}", r["checks"]);
    assert_eq!(probed(&r), 0);
    // The environment variable, as the daemon's unit or a pod sets it: 1 is off, 0 is on.
    let scan_env = |value: &str| {
        report_of(
            agent()
                .env("NODEPROOF_NO_PROBE", value)
                .args(["scan", "--format", "json", "--proc", proc_arg]),
        )
    };
    let (r, code) = scan_env("1");
    assert_eq!((code, probed(&r)), (0, 0), "{}", r["checks"]);
    assert!(server.requests().is_empty());
    let (r, _) = scan_env("0");
    assert_eq!(probed(&r), 4, "{}", r["checks"]);
    assert_eq!(server.requests().len(), 2);
    let out = run(agent()
        .env("NODEPROOF_NO_PROBE", "maybe")
        .args(["scan", "--proc", proc_arg]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-probe"), "{}", stderr(&out));
}

// ---- a network namespace of its own -----------------------------------------------------

/// A network namespace with a veth pair to this one; removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// `10.<a>.<b>.1/30` here, `.2` in the namespace.
    fn create(tag: &str, a: u8, b: u8) -> Netns {
        let name = format!("np{tag}{}", std::process::id());
        let host_if = format!("np{}h", std::process::id() % 100_000);
        let ns_if = format!("np{}k", std::process::id() % 100_000);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                ns_if.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                ns_if.clone(),
                "netns".into(),
                name.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("10.{a}.{b}.1/30"),
                "dev".into(),
                host_if.clone(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("10.{a}.{b}.2/30"),
                "dev".into(),
                ns_if.clone(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                ns_if,
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if let Err(e) = ip(&args) {
                panic!(
                    "this test needs `ip netns` (root, CAP_SYS_ADMIN, iproute2; scripts/test \
                     installs iproute2) and could not set up its namespace: {e}"
                );
            }
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The fake kubelet runs as a real process named `kubelet` inside a network namespace of
/// its own, on the namespace's veth address and on its loopback. The agent, in this
/// namespace, reads it through the real /proc and sees that the namespaces differ. As root
/// it enters the kubelet's namespace to probe, so the kubelet's loopback is reached as the
/// kubelet sees it; without CAP_SYS_ADMIN it cannot, probes a specific `address` over the
/// veth pair, and never mistakes its own loopback for the kubelet's.
#[test]
fn a_kubelet_in_its_own_network_namespace_is_probed_there() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (250, (std::process::id() % 250) as u8);
    let ns = Netns::create("probe", a, b);
    let kubelet_ip = format!("10.{a}.{b}.2");
    // Named `kubelet` for the kernel's comm; a symlink, so no writable copy can leak.
    let kubelet = tmp.path().join("kubelet");
    std::os::unix::fs::symlink(bin("fake-kubelet-server"), &kubelet).expect("symlink");
    let config = tmp.path().join("config.yaml");
    let write_config = |address: &str| {
        std::fs::write(
            &config,
            secure_config(&format!("address: {address}\nreadOnlyPort: 0\n")),
        )
        .expect("config");
    };
    // The namespace's kubelet: 401 on 10250, and (though the files say 0) an open 10255,
    // on its veth address and its loopback; healthz on its loopback.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name])
        .arg(&kubelet)
        .arg(format!("--config={}", config.display()));
    let server = Server::start(
        cmd,
        &format!(
            "https={kubelet_ip}:10250=401,http={kubelet_ip}:10255=200,\
             https=127.0.0.1:10250=401,http=127.0.0.1:10255=200,http=127.0.0.1:10248=200"
        ),
        &tmp.path().join("requests"),
    );
    // `ip netns exec` execs the program: the child is the kubelet.
    let pid = server.child.id().to_string();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "kubelet");
    let mut sent = 0;

    // Root enters the namespace: every probe goes, loopback included.
    for (address, probed) in [
        (kubelet_ip.as_str(), kubelet_ip.as_str()),
        ("0.0.0.0", "127.0.0.1"),
    ] {
        write_config(address);
        let (r, _) = scan_probed(&["--pid", &pid]);
        let api = check(&r, "probe-kubelet-anonymous");
        assert_eq!(api["status"], "pass", "{address}: {api}");
        assert!(
            api["actual"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("GET https://{probed}:10250/pods: HTTP 401")),
            "{api}"
        );
        assert!(
            api["origin"]
                .as_str()
                .unwrap_or("")
                .contains("sent from inside the kubelet's network namespace net:["),
            "{api}"
        );
        assert_eq!(status(&r, "probe-read-only-port"), "fail", "{address}");
        assert_eq!(status(&r, "probe-healthz"), "pass", "{address}");
        assert_eq!(status(&r, "probe-contradiction"), "fail", "{address}");
        // The namespace's server saw all three: it listens nowhere else.
        sent += 3;
        assert_eq!(server.requests().len(), sent, "{address}");
    }

    // Without CAP_SYS_ADMIN: the specific address over the veth pair, not the loopback.
    write_config(&kubelet_ip);
    let (r, _) = scan_probed_without_sys_admin(&["--pid", &pid]);
    let api = check(&r, "probe-kubelet-anonymous");
    assert_eq!(api["status"], "pass", "{api}");
    assert!(
        api["actual"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("GET https://{kubelet_ip}:10250/pods: HTTP 401")),
        "{api}"
    );
    assert_eq!(status(&r, "probe-read-only-port"), "fail");
    assert_eq!(status(&r, "probe-contradiction"), "fail");
    let healthz = note(&r, "probe-healthz");
    assert_eq!(status(&r, "probe-healthz"), "error", "{healthz}");
    assert!(healthz.contains("could not enter"), "{healthz}");
    assert!(healthz.contains("hostNetwork: true"), "{healthz}");
    sent += 2;
    assert_eq!(server.requests().len(), sent);

    // ... and listening on all addresses, nothing at all: its loopback is not ours.
    write_config("0.0.0.0");
    let (r, code) = scan_probed_without_sys_admin(&["--pid", &pid]);
    assert_eq!(code, 1);
    for id in [
        "probe-kubelet-anonymous",
        "probe-read-only-port",
        "probe-healthz",
    ] {
        assert_eq!(status(&r, id), "error", "{id}");
        let why = note(&r, id);
        assert!(why.contains("network namespace"), "{why}");
        assert!(why.contains("hostNetwork: true"), "{why}");
    }
    assert_eq!(status(&r, "probe-contradiction"), "error");
    assert_eq!(server.requests().len(), sent, "nothing more was sent");
    assert_harmless(&server.requests());
    drop(server);
    drop(ns);
}

/// `scan --format csv` and `--format junit` carry the live probes (P.1-P.4) and the API
/// server's checks (1.2.4, 1.2.5, 1.1.19-1.1.21) with their statuses, as the JSON report
/// does. The node is a kubeadm control plane: a host kubelet whose API port hangs (P.1
/// error), whose read-only port is open (P.2 fail) and whose healthz answers (P.3 pass),
/// and a static-pod kube-apiserver in the host's network namespace (this test's own, so
/// the probes go from here) with a client certificate and key but no kubelet CA (1.2.4
/// pass, 1.2.5 fail; its files are absent, which 1.1.19-1.1.21 pass with a note).
#[test]
fn csv_and_junit_carry_the_probe_and_api_server_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = own_loopback();
    let server = Server::start(
        server_cmd(),
        &format!("https={ip}:0=hang,http={ip}:0=200,http={ip}:0=200"),
        &tmp.path().join("requests"),
    );
    let config = format!(
        "address: {ip}\nport: {}\nreadOnlyPort: {}\nhealthzBindAddress: {ip}\nhealthzPort: {}\n",
        server.port(0),
        server.port(1),
        server.port(2)
    );
    let proc_dir = node(tmp.path(), &config);
    let net = std::fs::read_link("/proc/self/ns/net").expect("readlink /proc/self/ns/net");
    let net = net.to_str().expect("utf-8");
    std::fs::create_dir_all(proc_dir.join("4242/ns")).expect("mkdir ns");
    std::os::unix::fs::symlink(net, proc_dir.join("4242/ns/net")).expect("kubelet ns/net");
    nodeproof_agent::fakeproc::FakeProc::new(&proc_dir)
        .and_then(|f| {
            f.process(
                3100,
                "kube-apiserver",
                &[
                    "kube-apiserver",
                    "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                    "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
                ],
            )
        })
        .and_then(|p| p.root(&tmp.path().join("apiserver-rootfs")))
        .and_then(|p| p.netns(net))
        .expect("kube-apiserver");
    let want = [
        ("P.1", "probe-kubelet-anonymous", "error"),
        ("P.2", "probe-read-only-port", "fail"),
        ("P.3", "probe-healthz", "pass"),
        ("P.4", "probe-contradiction", "pass"),
        ("1.2.4", "apiserver-kubelet-client-certificate", "pass"),
        ("1.2.5", "apiserver-kubelet-certificate-authority", "fail"),
        ("1.1.19", "", "pass"),
        ("1.1.20", "", "pass"),
        ("1.1.21", "", "pass"),
    ];
    let scan = |format: &str| {
        let mut cmd = agent();
        cmd.env_remove("NODEPROOF_NO_PROBE")
            .args(["scan", "--format", format, "--proc"])
            .arg(&proc_dir);
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stdout(&out)
    };

    let csv = scan("csv");
    let rows: Vec<Vec<String>> = csv.lines().map(csv_cells).collect();
    assert_eq!(
        csv.lines().next(),
        Some("node,time,check,status,value,source")
    );
    for (cis, _, status) in want {
        let row = rows
            .iter()
            .find(|r| r[2] == cis)
            .unwrap_or_else(|| panic!("no CSV row for {cis}:\n{csv}"));
        assert_eq!(row[3], status, "{cis}: {row:?}");
        assert_eq!(row[0], "node-1", "{row:?}");
    }
    let p2 = rows.iter().find(|r| r[2] == "P.2").expect("P.2");
    assert_eq!(
        p2[4],
        format!("GET http://{ip}:{}/pods: HTTP 200 OK", server.port(1))
    );
    let c125 = rows.iter().find(|r| r[2] == "1.2.5").expect("1.2.5");
    // A value starting with `-` is defused against formula injection with a leading `'`.
    assert_eq!(
        (c125[4].as_str(), c125[5].as_str()),
        ("'--kubelet-certificate-authority: not set", "default")
    );

    let junit = scan("junit");
    for (cis, id, status) in want {
        let prefix = if id.is_empty() {
            format!(r#"<testcase classname="node-1" name="{cis} "#)
        } else {
            format!(r#"<testcase classname="node-1" name="{cis} {id} "#)
        };
        let line = junit
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no test case for {cis}:\n{junit}"));
        let ok = match status {
            "pass" => {
                line.ends_with("/>") && !line.contains("<failure") && !line.contains("<error")
            }
            "fail" => line.contains(r#"<failure message=""#) && line.contains(r#"type="fail""#),
            "error" => line.contains(r#"<error message=""#) && line.contains(r#"type="error""#),
            _ => unreachable!(),
        };
        assert!(ok, "{cis} should be {status}: {line}");
    }
}

/// The cells of one CSV line as `tabular::write_csv_row` writes them (RFC 4180 quoting,
/// `""` for a quote inside a quoted cell).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("cell").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("cell").push(c),
        }
    }
    cells
}
