//! deploy/kubernetes/ parsed and checked: the DaemonSet runs on every node with the host's
//! PID namespace and /proc, read-only, with every capability dropped but the two the agent
//! needs, a read-only root filesystem and resource limits; the ConfigMap and Secret keys it
//! names exist; every NODEPROOF_* variable it sets is one the subcommand it runs reads (the
//! agent's own `--help`, which lists each option's `env =`); every argument list parses;
//! and the image is the Dockerfile's.
//!
//! The checks are one function returning the problems found, so each is shown to fire on a
//! manifest broken on purpose.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const IMAGE: &str = "registry.example.internal/nodeproof-agent:0.1.0";
const NAMESPACE: &str = "nodeproof";
/// The capabilities the scanning container needs (docs/install.md says why) and nothing else.
const AGENT_CAPS: [&str; 2] = ["SYS_PTRACE", "DAC_READ_SEARCH"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every `.yaml` file in deploy/kubernetes, by file name, as text.
fn manifest_texts() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(manifest_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let text = fs::read_to_string(&p).expect("read manifest");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

fn parse(texts: &[(String, String)]) -> Result<Vec<(String, Yaml)>, String> {
    let mut docs = Vec::new();
    for (name, text) in texts {
        let parsed = YamlLoader::load_from_str(text).map_err(|e| format!("{name}: {e}"))?;
        docs.extend(parsed.into_iter().map(|d| (name.clone(), d)));
    }
    Ok(docs)
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or("")
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

fn strings(y: &Yaml) -> Vec<&str> {
    list(y).iter().map(s).collect()
}

fn find<'a>(docs: &'a [(String, Yaml)], kind: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| s(&d["kind"]) == kind && s(&d["metadata"]["name"]) == name)
}

/// `nodeproof-agent <subcommand> --help`: the options and `[env: ...]` names it reads.
fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nodeproof-agent"))
        .args([subcommand, "--help"])
        .output()
        .expect("run the agent");
    assert!(out.status.success(), "{subcommand} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the agent accepts `args` (clap stops at the first unknown argument, before
/// `--help`).
fn args_parse(args: &[&str]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_nodeproof-agent"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run the agent")
        .status
        .success()
}

/// The Dockerfile's image name (its `docker build -t NAME` line).
fn dockerfile_image() -> String {
    let text = fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    text.lines()
        .find_map(|l| l.split_once("docker build -t ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a `docker build -t IMAGE` line in the Dockerfile")
        .to_string()
}

/// Every problem with the manifests; empty when they are right.
fn problems(texts: &[(String, String)]) -> Vec<String> {
    let docs = match parse(texts) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    let mut p = Vec::new();

    for (file, d) in &docs {
        if s(&d["apiVersion"]).is_empty() || s(&d["kind"]).is_empty() {
            p.push(format!("{file}: a document without apiVersion or kind"));
        }
        let kind = s(&d["kind"]);
        if kind != "Namespace"
            && kind != "Kustomization"
            && s(&d["metadata"]["namespace"]) != NAMESPACE
        {
            p.push(format!("{file}: {kind} not in namespace {NAMESPACE}"));
        }
    }

    // The kustomization applies every file, and names the Dockerfile's image.
    let files: BTreeSet<&str> = texts
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "kustomization.yaml")
        .collect();
    match docs.iter().find(|(_, d)| s(&d["kind"]) == "Kustomization") {
        None => p.push("no kustomization.yaml".into()),
        Some((_, k)) => {
            let listed: BTreeSet<&str> = strings(&k["resources"]).into_iter().collect();
            if listed != files {
                p.push(format!(
                    "kustomization resources {listed:?} are not the files {files:?}"
                ));
            }
            let image = list(&k["images"])
                .first()
                .map(|i| format!("{}:{}", s(&i["name"]), s(&i["newTag"])));
            if image.as_deref() != Some(IMAGE) {
                p.push(format!("kustomization image {image:?}, not {IMAGE}"));
            }
        }
    }

    match find(&docs, "Namespace", NAMESPACE) {
        None => p.push(format!("no Namespace {NAMESPACE}")),
        Some(ns) => {
            if s(&ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]) != "privileged" {
                p.push("the namespace does not allow privileged pods (hostPID, hostPath)".into());
            }
        }
    }
    let Some(config) = find(&docs, "ConfigMap", "nodeproof-agent") else {
        p.push("no ConfigMap nodeproof-agent".into());
        return p;
    };
    let Some(secret) = find(&docs, "Secret", "nodeproof-enroll") else {
        p.push("no Secret nodeproof-enroll".into());
        return p;
    };
    let Some(ds) = find(&docs, "DaemonSet", "nodeproof-agent") else {
        p.push("no DaemonSet nodeproof-agent".into());
        return p;
    };
    let pod = &ds["spec"]["template"]["spec"];

    // Selector and labels.
    let selector = ds["spec"]["selector"]["matchLabels"]
        .as_hash()
        .cloned()
        .unwrap_or_default();
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    if selector.is_empty() || selector.iter().any(|(k, v)| &labels[s(k)] != v) {
        p.push("the selector does not match the pod's labels".into());
    }

    // The service account, with no token.
    let sa_name = s(&pod["serviceAccountName"]);
    match find(&docs, "ServiceAccount", sa_name) {
        None => p.push(format!("no ServiceAccount {sa_name:?} for the pods")),
        Some(sa) => {
            if sa["automountServiceAccountToken"].as_bool() != Some(false) {
                p.push("the service account mounts a token".into());
            }
        }
    }
    if pod["automountServiceAccountToken"].as_bool() != Some(false) {
        p.push("the pod mounts a service account token".into());
    }

    // Host namespaces.
    if pod["hostPID"].as_bool() != Some(true) {
        p.push("hostPID is not true: the agent would not see the kubelet".into());
    }
    if pod["hostNetwork"].as_bool() != Some(true) {
        p.push("hostNetwork is not true: hostname and 127.0.0.1 would be the pod's".into());
    }

    // Every node: a toleration with operator Exists and no key and no effect tolerates
    // every taint.
    let everywhere = list(&pod["tolerations"]).iter().any(|t| {
        s(&t["operator"]) == "Exists" && t["key"].is_badvalue() && t["effect"].is_badvalue()
    });
    if !everywhere {
        p.push("no toleration tolerates every taint (operator: Exists, no key, no effect)".into());
    }
    // The image is x86-64 only (scripts/build-static).
    if s(&pod["nodeSelector"]["kubernetes.io/arch"]) != "amd64" {
        p.push("the pods are not kept to amd64 nodes, the image's architecture".into());
    }

    // Volumes: host paths only /proc and the state directory; never the host's root.
    let volumes = list(&pod["volumes"]);
    let volume = |name: &str| volumes.iter().find(|v| s(&v["name"]) == name);
    for v in volumes {
        let path = &v["hostPath"]["path"];
        if !path.is_badvalue() && !["/proc", "/var/lib/nodeproof"].contains(&s(path)) {
            p.push(format!(
                "volume {} mounts the host's {}: only /proc and /var/lib/nodeproof are needed",
                s(&v["name"]),
                s(path)
            ));
        }
    }

    let containers: Vec<&Yaml> = list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
        .collect();
    if list(&pod["containers"]).len() != 1 {
        p.push("not exactly one long-running container".into());
    }
    for c in &containers {
        let name = s(&c["name"]);
        let is_agent = list(&pod["containers"]).iter().any(|a| a == *c);
        if s(&c["image"]) != IMAGE {
            p.push(format!("{name}: image {:?}, not {IMAGE}", s(&c["image"])));
        }

        // Security context.
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            p.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if sc["privileged"].as_bool() == Some(true) {
            p.push(format!("{name}: privileged"));
        }
        if sc["readOnlyRootFilesystem"].as_bool() != Some(true) {
            p.push(format!("{name}: readOnlyRootFilesystem is not true"));
        }
        if strings(&sc["capabilities"]["drop"]) != ["ALL"] {
            p.push(format!("{name}: capabilities do not drop ALL"));
        }
        let added: BTreeSet<&str> = strings(&sc["capabilities"]["add"]).into_iter().collect();
        let wanted: BTreeSet<&str> = if is_agent {
            AGENT_CAPS.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        if added != wanted {
            p.push(format!(
                "{name}: adds capabilities {added:?}, not {wanted:?}"
            ));
        }
        let seccomp = if sc["seccompProfile"].is_badvalue() {
            &pod["securityContext"]["seccompProfile"]
        } else {
            &sc["seccompProfile"]
        };
        if s(&seccomp["type"]) != "RuntimeDefault" {
            p.push(format!("{name}: no RuntimeDefault seccomp profile"));
        }

        // Resources.
        for what in ["cpu", "memory"] {
            if s(&c["resources"]["limits"][what]).is_empty() {
                p.push(format!("{name}: no {what} limit"));
            }
            if s(&c["resources"]["requests"][what]).is_empty() {
                p.push(format!("{name}: no {what} request"));
            }
        }

        // Mounts: each names a volume; host paths other than the state directory are
        // read-only.
        let mounts = list(&c["volumeMounts"]);
        for m in mounts {
            let Some(v) = volume(s(&m["name"])) else {
                p.push(format!(
                    "{name}: mount of an unknown volume {}",
                    s(&m["name"])
                ));
                continue;
            };
            let host = s(&v["hostPath"]["path"]);
            if host == "/proc" && m["readOnly"].as_bool() != Some(true) {
                p.push(format!("{name}: the host's /proc is mounted writable"));
            }
        }
        let mount_of = |path: &str| {
            mounts
                .iter()
                .filter(|m| Path::new(path).starts_with(s(&m["mountPath"])))
                .max_by_key(|m| s(&m["mountPath"]).len())
        };

        // Arguments and environment: what the subcommand accepts and reads.
        let args = strings(&c["args"]);
        let Some(subcommand) = args.first().copied() else {
            p.push(format!("{name}: no subcommand"));
            continue;
        };
        if !args_parse(&args) {
            p.push(format!("{name}: the agent does not accept {args:?}"));
        }
        let help = help(subcommand);
        for e in list(&c["env"]) {
            let var = s(&e["name"]);
            if var.starts_with("NODEPROOF_") && !help.contains(&format!("[env: {var}")) {
                p.push(format!("{name}: `{subcommand}` does not read {var}"));
            }
            let from = &e["valueFrom"];
            let cm = &from["configMapKeyRef"];
            if !cm.is_badvalue()
                && (s(&cm["name"]) != "nodeproof-agent"
                    || config["data"][s(&cm["key"])].is_badvalue())
            {
                p.push(format!(
                    "{name}: {var} names a ConfigMap key that does not exist"
                ));
            }
            let sk = &from["secretKeyRef"];
            if !sk.is_badvalue()
                && (s(&sk["name"]) != "nodeproof-enroll"
                    || secret["stringData"][s(&sk["key"])].is_badvalue())
            {
                p.push(format!(
                    "{name}: {var} names a Secret key that does not exist"
                ));
            }
            let value = s(&e["value"]);
            // File settings point into a mount of the right volume.
            let wanted_volume = match var {
                "NODEPROOF_PROC" => Some("host-proc"),
                "NODEPROOF_KEY" | "NODEPROOF_SPOOL" => Some("state"),
                "NODEPROOF_CA_FILE" => Some("collector-ca"),
                _ => None,
            };
            if let Some(wanted) = wanted_volume {
                match mount_of(value) {
                    Some(m) if s(&m["name"]) == wanted => {
                        if var == "NODEPROOF_CA_FILE" {
                            let file = Path::new(value)
                                .strip_prefix(s(&m["mountPath"]))
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let items = &volume(wanted).expect("checked")["configMap"]["items"];
                            let present = list(items).iter().any(|i| {
                                s(&i["path"]) == file && !config["data"][s(&i["key"])].is_badvalue()
                            });
                            if !present {
                                p.push(format!("{name}: {value} is not a ConfigMap item"));
                            }
                        }
                        if var == "NODEPROOF_KEY"
                            && is_agent
                            && m["readOnly"].as_bool() != Some(true)
                        {
                            p.push(format!("{name}: the key is mounted writable"));
                        }
                    }
                    _ => p.push(format!("{name}: {var}={value} is not in volume {wanted}")),
                }
            }
        }
        let env_names: BTreeSet<&str> = list(&c["env"]).iter().map(|e| s(&e["name"])).collect();
        let needed: &[&str] = match subcommand {
            "run" => &[
                "NODEPROOF_COLLECTOR",
                "NODEPROOF_KEY",
                "NODEPROOF_PROC",
                "NODEPROOF_NODE_NAME",
                "NODEPROOF_CA_FILE",
                "NODEPROOF_SPOOL",
            ],
            "enroll" => &[
                "NODEPROOF_COLLECTOR",
                "NODEPROOF_KEY",
                "NODEPROOF_NODE_NAME",
                "NODEPROOF_CA_FILE",
                "NODEPROOF_TOKEN",
            ],
            _ => &[],
        };
        for var in needed {
            if !env_names.contains(var) {
                p.push(format!("{name}: `{subcommand}` is not given {var}"));
            }
        }
    }

    // The lifecycle: a key kept across restarts, an enrolment done once, then `run`.
    let subcommands: Vec<&str> = containers.iter().map(|c| s(&c["args"][0])).collect();
    if subcommands != ["keygen", "enroll", "run"] {
        p.push(format!(
            "containers run {subcommands:?}, not keygen, enroll, run"
        ));
    }
    p
}

#[test]
fn the_manifests_are_right() {
    let problems = problems(&manifest_texts());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_image_is_the_dockerfiles() {
    assert_eq!(dockerfile_image(), IMAGE);
}

/// Each check fires: the manifests with one thing broken.
#[test]
fn each_check_finds_its_mistake() {
    let texts = manifest_texts();
    let broken = |file: &str, from: &str, to: &str, expect: &str| {
        let mut t = texts.clone();
        let (_, text) = t.iter_mut().find(|(n, _)| n == file).expect(file);
        assert!(text.contains(from), "{file} has no {from:?}");
        *text = text.replacen(from, to, 1);
        let found = problems(&t);
        assert!(
            found.iter().any(|f| f.contains(expect)),
            "{from:?} -> {to:?}: expected {expect:?}, found {found:#?}"
        );
    };
    let ds = "daemonset.yaml";
    broken(ds, "hostPID: true", "hostPID: false", "hostPID is not true");
    broken(ds, "hostNetwork: true", "hostNetwork: false", "hostNetwork");
    broken(
        ds,
        "- operator: Exists",
        "- operator: Exists\n          effect: NoSchedule",
        "tolerates every taint",
    );
    broken(
        ds,
        "- operator: Exists",
        "- operator: Exists\n          key: node-role.kubernetes.io/control-plane",
        "tolerates every taint",
    );
    broken(ds, "- SYS_PTRACE", "- SYS_ADMIN", "adds capabilities");
    broken(ds, "drop: [ALL]", "drop: [NET_RAW]", "do not drop ALL");
    broken(
        ds,
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "keygen: readOnlyRootFilesystem",
    );
    broken(
        ds,
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
        "allowPrivilegeEscalation",
    );
    broken(
        ds,
        "mountPath: /host/proc\n              readOnly: true",
        "mountPath: /host/proc\n              readOnly: false",
        "/proc is mounted writable",
    );
    broken(
        ds,
        "path: /var/lib/nodeproof\n",
        "path: /\n",
        "mounts the host's /",
    );
    broken(
        ds,
        "limits: {cpu: 200m, memory: 128Mi, ephemeral-storage: 64Mi}",
        "limits: {memory: 128Mi}",
        "agent: no cpu limit",
    );
    broken(
        ds,
        "name: NODEPROOF_SPOOL",
        "name: NODEPROOF_SPOL",
        "does not read NODEPROOF_SPOL",
    );
    broken(
        ds,
        "name: NODEPROOF_TOKEN",
        "name: NODEPROOF_TOKENS",
        "`enroll` is not given NODEPROOF_TOKEN",
    );
    broken(
        ds,
        "key: collector",
        "key: colector",
        "ConfigMap key that does not exist",
    );
    broken(
        ds,
        "key: token",
        "key: tokn",
        "Secret key that does not exist",
    );
    broken(
        ds,
        "value: /etc/nodeproof/collector-ca/ca.crt",
        "value: /etc/nodeproof/collector-ca/ca.pem",
        "is not a ConfigMap item",
    );
    broken(
        ds,
        "value: /host/proc",
        "value: /proc",
        "is not in volume host-proc",
    );
    broken(
        ds,
        "subPath: key\n              readOnly: true",
        "subPath: key",
        "the key is mounted writable",
    );
    broken(ds, "--if-missing", "--if-absent", "does not accept");
    broken(ds, "args: [run]", "args: [scan]", "not keygen, enroll, run");
    broken(
        ds,
        "image: registry.example.internal/nodeproof-agent:0.1.0",
        "image: nodeproof:latest",
        "image \"nodeproof:latest\"",
    );
    broken(
        ds,
        "kubernetes.io/arch: amd64",
        "kubernetes.io/arch: arm64",
        "amd64",
    );
    broken(
        ds,
        "serviceAccountName: nodeproof-agent",
        "serviceAccountName: default",
        "no ServiceAccount",
    );
    broken(
        ds,
        "namespace: nodeproof",
        "namespace: default",
        "not in namespace",
    );
    broken(
        "serviceaccount.yaml",
        "automountServiceAccountToken: false",
        "automountServiceAccountToken: true",
        "mounts a token",
    );
    broken(
        "namespace.yaml",
        "enforce: privileged",
        "enforce: baseline",
        "privileged pods",
    );
    broken(
        "kustomization.yaml",
        "  - secret.yaml\n",
        "",
        "kustomization resources",
    );
    broken(
        "kustomization.yaml",
        "newTag: 0.1.0",
        "newTag: latest",
        "kustomization image",
    );
    broken(ds, "hostPID: true", "hostPID: [", "daemonset.yaml:");
}
