//! The static agent (`scripts/build-static`): one executable for every node, whatever its
//! libc. Checks that the file really is static (no program interpreter, no shared library
//! needed; and `ldd` agrees), and that it scans a fake node exactly as the ordinary build
//! does, with an empty environment as in a `scratch` or distroless image.
//!
//! The binary is NODEPROOF_STATIC_AGENT, else `target/x86_64-unknown-linux-musl/debug/
//! nodeproof-agent`; `scripts/test` builds it with `scripts/build-static --debug` first.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const TARGET: &str = "x86_64-unknown-linux-musl";

fn static_agent() -> PathBuf {
    let path = match std::env::var_os("NODEPROOF_STATIC_AGENT") {
        Some(p) => PathBuf::from(p),
        None => {
            // target/debug/deps/<this test> -> target/
            let exe = std::env::current_exe().expect("current_exe");
            let target = exe
                .ancestors()
                .nth(3)
                .expect("target directory")
                .to_path_buf();
            target.join(TARGET).join("debug/nodeproof-agent")
        }
    };
    assert!(
        path.is_file(),
        "{} is not built: run `scripts/build-static --debug` first (scripts/test does), or \
         set NODEPROOF_STATIC_AGENT to the static binary",
        path.display()
    );
    path
}

/// How an ELF executable is linked, read from its program headers: the same facts `ldd`
/// and `file` go by, without depending on either.
#[derive(Debug, PartialEq, Eq)]
enum Linkage {
    /// No PT_INTERP, no DT_NEEDED: the kernel runs it as it is (static or static-pie).
    Static,
    /// Needs the dynamic loader `interpreter` and/or `needed` shared libraries.
    Dynamic {
        interpreter: Option<String>,
        needed: usize,
    },
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn offset(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("offset {v} out of range"))
}

/// The linkage of a 64-bit little-endian ELF file (x86-64's format).
fn linkage(b: &[u8]) -> Result<Linkage, String> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let phoff = offset(u64_at(b, 0x20)?)?;
    let phentsize = usize::from(u16_at(b, 0x36)?);
    let phnum = usize::from(u16_at(b, 0x38)?);
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    let mut interpreter = None;
    let mut needed = 0;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or("overflow")?)
            .ok_or("overflow")?;
        let kind = u32_at(b, ph)?;
        let file_off = offset(u64_at(b, ph + 8)?)?;
        let file_size = offset(u64_at(b, ph + 32)?)?;
        let end = file_off.checked_add(file_size).ok_or("overflow")?;
        let seg = b
            .get(file_off..end)
            .ok_or_else(|| format!("segment {i} lies outside the file"))?;
        match kind {
            PT_INTERP => {
                let path = seg.split(|&c| c == 0).next().unwrap_or_default();
                interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
            PT_DYNAMIC => {
                for entry in seg.chunks_exact(16) {
                    match u64_at(entry, 0)? {
                        DT_NULL => break,
                        DT_NEEDED => needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if interpreter.is_none() && needed == 0 {
        Ok(Linkage::Static)
    } else {
        Ok(Linkage::Dynamic {
            interpreter,
            needed,
        })
    }
}

fn linkage_of(path: &Path) -> Linkage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    linkage(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_static_agent_needs_no_loader_and_no_library() {
    assert_eq!(linkage_of(&static_agent()), Linkage::Static);
}

#[test]
fn the_ordinary_build_is_seen_as_dynamic() {
    // The check above can fail: the glibc build needs ld-linux and libc.so.6.
    match linkage_of(&bin("nodeproof-agent")) {
        Linkage::Dynamic {
            interpreter: Some(interp),
            needed,
        } => {
            assert!(interp.contains("ld-linux"), "{interp}");
            assert!(needed >= 1, "{needed}");
        }
        other => panic!("the glibc build read as {other:?}"),
    }
}

#[test]
fn bad_elf_files_are_errors() {
    let good = std::fs::read(static_agent()).expect("read");
    assert_eq!(linkage(b"#!/bin/sh\n"), Err("not an ELF file".into()));
    assert_eq!(linkage(b""), Err("not an ELF file".into()));
    let mut elf32 = good[..64].to_vec();
    elf32[4] = 1;
    assert_eq!(
        linkage(&elf32),
        Err("not a 64-bit little-endian ELF file".into())
    );
    assert_eq!(linkage(&good[..0x30]), Err("truncated at byte 54".into()));
    // The header promises program headers the file does not hold.
    assert!(linkage(&good[..64]).is_err());
}

/// `ldd` is what the issue names and what an operator runs: glibc's says "statically
/// linked" for a static-pie executable and "not a dynamic executable" for a plain static
/// one, and lists libc for the ordinary build.
#[test]
fn ldd_says_static() {
    let out = Command::new("ldd")
        .arg(static_agent())
        .output()
        .expect("ldd (Debian's libc-bin) must be installed");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "ldd says: {text}"
    );
    let out = run(Command::new("ldd").arg(bin("nodeproof-agent")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("libc.so"), "{}", stdout(&out));
}

fn scan(agent: &Path, proc_dir: &Path) -> (Value, i32) {
    // No environment at all, as in a scratch image: no PATH, HOME, locale or TZ. No live
    // probes: the node is fake, and this machine's 127.0.0.1:10250 is not its kubelet.
    let out = run(Command::new(agent)
        .env_clear()
        .args(["scan", "--no-probe", "--format", "json", "--proc"])
        .arg(proc_dir));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}{}",
            agent.display(),
            stdout(&out),
            stderr(&out)
        )
    });
    (report, out.status.code().expect("exit code"))
}

/// The part of a report that does not depend on when it was made.
fn verdicts(r: &Value) -> Value {
    serde_json::json!({
        "kubelet": r["kubelet"],
        "settings": r["settings"],
        "checks": r["checks"],
        "summary": r["summary"],
        "warnings": r["warnings"],
        "files": r["files"],
    })
}

#[test]
fn the_static_agent_scans_a_node_as_the_ordinary_build_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = secure_node(tmp.path());
    let (statically, code) = scan(&static_agent(), &proc_dir);
    assert_eq!(code, 0, "{}", statically["checks"]);
    assert_eq!(statically["kubelet"]["pid"], 4242);
    assert!(
        statically["checks"]
            .as_array()
            .is_some_and(|c| c.len() > 10),
        "{statically}"
    );
    let (dynamically, code) = scan(&bin("nodeproof-agent"), &proc_dir);
    assert_eq!(code, 0);
    assert_eq!(verdicts(&statically), verdicts(&dynamically));
}

#[test]
fn the_static_agent_fails_a_bad_node_and_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proc_dir = fake_node(
        tmp.path(),
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--read-only-port=10255",
        ],
        &[("/var/lib/kubelet/config.yaml", &secure_config(""))],
    );
    let (r, code) = scan(&static_agent(), &proc_dir);
    assert_eq!(code, 1, "{}", r["checks"]);
    assert_eq!(r["settings"]["readOnlyPort"]["value"], 10255);
    assert_eq!(r["settings"]["readOnlyPort"]["source"], "flag");
}

/// The live probes from the static binary: TLS (rustls and ring, built for musl) and plain
/// HTTP to a fake kubelet (`fake-kubelet-server`) on an address of this test's own, with
/// no environment.
#[test]
fn the_static_agent_probes_a_kubelet_over_tls() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ip = format!("127.78.{}.1", std::process::id() % 250);
    std::fs::create_dir_all(tmp.path().join("requests")).expect("record dir");
    let mut server = Command::new(bin("fake-kubelet-server"))
        .env(
            "FAKE_KUBELET_LISTEN",
            format!("https={ip}:0=401,http={ip}:0=200"),
        )
        .env("FAKE_KUBELET_RECORD", tmp.path().join("requests"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fake-kubelet-server");
    let mut ports = Vec::new();
    let announced = server.stdout.take().expect("stdout");
    for line in BufReader::new(announced).lines() {
        let line = line.expect("server stdout");
        if line == "ready" {
            break;
        }
        if let Some(addr) = line.split(' ').nth(2) {
            let addr: std::net::SocketAddr = addr.parse().expect("address");
            ports.push(addr.port());
        }
    }
    assert_eq!(ports.len(), 2, "fake-kubelet-server did not start");
    let config = format!(
        "address: {ip}\nport: {}\nreadOnlyPort: 0\nhealthzBindAddress: {ip}\nhealthzPort: {}\n",
        ports[0], ports[1]
    );
    let proc_dir = fake_node(
        tmp.path(),
        &["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"],
        &[("/var/lib/kubelet/config.yaml", &secure_config(&config))],
    );
    let out = run(Command::new(static_agent())
        .env_clear()
        .args(["scan", "--format", "json", "--proc"])
        .arg(&proc_dir));
    drop(server.stdin.take());
    let _ = server.wait();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    let status = |id: &str| {
        r["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .map(|c| (c["status"].clone(), c["actual"].clone()))
            .unwrap_or_else(|| panic!("no check {id}: {}", r["checks"]))
    };
    let (api, actual) = status("probe-kubelet-anonymous");
    assert_eq!(api, "pass", "{actual}");
    assert!(
        actual.as_str().is_some_and(
            |a| a.starts_with(&format!("GET https://{ip}:{}/pods: HTTP 401", ports[0]))
        ),
        "{actual}"
    );
    assert_eq!(status("probe-healthz").0, "pass");
    assert_eq!(out.status.code(), Some(0), "{}", r["checks"]);
}
