//! The kubelet's effective settings: defaults, then the config file, then drop-ins, then
//! flags, each value with its source and origin. This is where correctness lives.
//!
//! The order follows `NewKubeletCommand` in cmd/kubelet/app/server.go (1.30+):
//! 1. flags are parsed onto the v1beta1 defaults plus the four legacy flag defaults;
//! 2. `--config FILE` replaces that config with the file, defaulted with the v1beta1
//!    defaults (zero values of non-pointer fields take the default);
//! 3. `--config-dir DIR` merges every `*.conf` below DIR (lexical walk) as a JSON merge
//!    patch onto the JSON of the config so far and decodes the result with Go's
//!    case-insensitive `encoding/json`; how exactly changed in 1.32 (see [`MergeRules`]);
//! 4. with either, every config-backed flag is parsed again on top, so flags win; feature
//!    gates merge per key with the command line winning.

use std::collections::BTreeMap;

use nodeproof_proto::{Setting, Source, Warning};
use serde_json::Value;

use crate::cmdline::{format_go_duration, parse_bool_map, parse_go_bool, parse_go_duration};
use crate::cmdline::{parse_int_bits, parse_string_list, CommandLine};
use crate::config::{self, check_type_meta, decode_config_file, typed, warn, ConfigError};
use crate::kubeconfig::ClientAuth;
use crate::schema::{self, Field, FlagKind, Kind, KUBELET_CONFIGURATION};
use crate::yaml::{self, Node};

/// Settings keyed by v1beta1 JSON path (`readOnlyPort`, `authentication.anonymous.enabled`,
/// `featureGates.RotateKubeletServerCertificate`); flag-only settings by their flag name
/// (`--hostname-override`). Flag-only settings appear only when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    pub settings: BTreeMap<String, Setting>,
    /// Settings whose value cannot be known, with the reason (a flag value the kubelet
    /// would refuse, say).
    pub unknown: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
    /// Set when a config file or drop-in could not be decoded as the kubelet would decode it
    /// (the kubelet would refuse to start with it, so the file changed after it started, or
    /// we misread it). Values that do not come from a flag are then unknown.
    pub config_error: Option<String>,
    /// What the kubelet's `--kubeconfig` authenticates with: `None` when no `--kubeconfig`
    /// is given (or it was not read), otherwise the answer or why it is not known. Filled
    /// in by the scan (`scan::assemble`), not by the computation.
    pub client_auth: Option<Result<ClientAuth, String>>,
    /// Set when the kubelet would refuse to start with this configuration
    /// ([`crate::validate`]): the message naming each rule and the upstream function. No
    /// value then describes a running kubelet, so every check is `error`.
    pub refused: Option<String>,
}

impl Effective {
    /// The setting at `path`, or why it cannot be known. Checks call this, never
    /// `settings` directly, so that an unreadable config file turns into `error` verdicts
    /// instead of verdicts on defaults that may not apply.
    pub fn lookup(&self, path: &str) -> Result<&Setting, String> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let parent_unknown = path
            .split_once('.')
            .and_then(|(head, _)| self.unknown.get(head));
        if let Some(reason) = self.unknown.get(path).or(parent_unknown) {
            return Err(reason.clone());
        }
        match (self.settings.get(path), &self.config_error) {
            (Some(s), _) if s.source.is_flag() => Ok(s),
            (_, Some(err)) => Err(format!(
                "{path} is not set by a flag and the kubelet's config could not be read: {err}"
            )),
            (Some(s), None) => Ok(s),
            (None, None) => Err(format!(
                "{path} is not among the settings nodeproof computes"
            )),
        }
    }

    /// A flag-only setting (`--hostname-override`), which is either given or absent; absence
    /// is certain even when the config file is unreadable, since files cannot set it.
    pub fn flag(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name)
    }
}

/// A file as the scanner read it: its path inside the kubelet's root, and its text or why
/// it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInput {
    pub path: String,
    pub content: Result<String, String>,
}

/// The `--config-dir` directory: every regular file below it in the kubelet's walk order,
/// or why it could not be listed. Files that are not `*.conf` are filtered here.
#[derive(Debug, Clone, PartialEq)]
pub struct DropInDir {
    pub dir: String,
    pub files: Result<Vec<FileInput>, String>,
}

/// Whether the kubelet applies the file at `path` (found under `--config-dir`) as a
/// drop-in: `filepath.Ext(name) == ".conf"`.
pub fn is_dropin(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.ends_with(".conf"))
}

/// A setting nodeproof computes, with its defaults.
struct Tracked {
    path: &'static str,
    default: Def,
    /// The value without `--config` when it differs (`applyLegacyDefaults`).
    legacy: Option<Def>,
    /// Relative values in the config file resolve against the file's directory.
    is_path: bool,
}

#[derive(Clone, Copy)]
enum Def {
    Bool(bool),
    Int(i64),
    Str(&'static str),
    EmptyList,
}

impl Def {
    fn value(self) -> Value {
        match self {
            Def::Bool(b) => Value::Bool(b),
            Def::Int(i) => Value::from(i),
            Def::Str(s) => Value::String(s.to_string()),
            Def::EmptyList => Value::Array(Vec::new()),
        }
    }
}

const fn t(path: &'static str, default: Def) -> Tracked {
    Tracked {
        path,
        default,
        legacy: None,
        is_path: false,
    }
}

/// Defaults from pkg/kubelet/apis/config/v1beta1/defaults.go (SetDefaults_KubeletConfiguration)
/// and the legacy flag defaults from cmd/kubelet/app/options/options.go (applyLegacyDefaults).
static TRACKED: &[Tracked] = &[
    Tracked {
        legacy: Some(Def::Bool(true)),
        ..t("authentication.anonymous.enabled", Def::Bool(false))
    },
    Tracked {
        legacy: Some(Def::Bool(false)),
        ..t("authentication.webhook.enabled", Def::Bool(true))
    },
    t("authentication.webhook.cacheTTL", Def::Str("2m0s")),
    Tracked {
        is_path: true,
        ..t("authentication.x509.clientCAFile", Def::Str(""))
    },
    Tracked {
        legacy: Some(Def::Str("AlwaysAllow")),
        ..t("authorization.mode", Def::Str("Webhook"))
    },
    t("authorization.webhook.cacheAuthorizedTTL", Def::Str("5m0s")),
    t(
        "authorization.webhook.cacheUnauthorizedTTL",
        Def::Str("30s"),
    ),
    Tracked {
        legacy: Some(Def::Int(10255)),
        ..t("readOnlyPort", Def::Int(0))
    },
    t("port", Def::Int(10250)),
    t("address", Def::Str("0.0.0.0")),
    t("healthzPort", Def::Int(10248)),
    t("healthzBindAddress", Def::Str("127.0.0.1")),
    Tracked {
        is_path: true,
        ..t("tlsCertFile", Def::Str(""))
    },
    Tracked {
        is_path: true,
        ..t("tlsPrivateKeyFile", Def::Str(""))
    },
    t("tlsCipherSuites", Def::EmptyList),
    t("tlsMinVersion", Def::Str("")),
    t("rotateCertificates", Def::Bool(false)),
    t("serverTLSBootstrap", Def::Bool(false)),
    t("protectKernelDefaults", Def::Bool(false)),
    t("makeIPTablesUtilChains", Def::Bool(true)),
    t("eventRecordQPS", Def::Int(50)),
    t("eventBurst", Def::Int(100)),
    t("streamingConnectionIdleTimeout", Def::Str("4h0m0s")),
    t("podPidsLimit", Def::Int(-1)),
    t("seccompDefault", Def::Bool(false)),
    t("enableDebuggingHandlers", Def::Bool(true)),
    t("enableServer", Def::Bool(true)),
    Tracked {
        is_path: true,
        ..t("staticPodPath", Def::Str(""))
    },
];

/// The paths of every setting `compute` always reports.
pub fn tracked_paths() -> impl Iterator<Item = &'static str> {
    TRACKED.iter().map(|t| t.path)
}

const V1BETA1_DEFAULT: &str = "kubelet v1beta1 default";
const LEGACY_DEFAULT: &str = "kubelet legacy flag default (no --config)";

/// The `--config` file the kubelet loads, as given (empty means none).
pub fn config_flag(cmd: &CommandLine) -> Option<String> {
    cmd.last("config")
        .map(|f| f.value.clone())
        .filter(|v| !v.is_empty())
}

/// The `--config-dir` directory, as given (empty means none).
pub fn config_dir_flag(cmd: &CommandLine) -> Option<String> {
    cmd.last("config-dir")
        .map(|f| f.value.clone())
        .filter(|v| !v.is_empty())
}

/// Computes the effective settings from the parsed command line and the files it names,
/// for a kubelet of unknown version (see [`compute_for`]).
pub fn compute(
    cmd: &CommandLine,
    config_file: Option<&FileInput>,
    dropins: Option<&DropInDir>,
) -> Effective {
    compute_for(cmd, config_file, dropins, None)
}

/// A kubelet's minor version (`31` for v1.31.4), when known; it decides how drop-ins merge.
pub type KubeletMinor = u32;

/// Computes the effective settings for a kubelet of minor version `minor`, when known.
/// The version only matters with `--config-dir`: drop-ins merge differently before and
/// after 1.32 ([`MergeRules`]). With no version, both are computed and any setting on which
/// they disagree is unknown, with the reason.
pub fn compute_for(
    cmd: &CommandLine,
    config_file: Option<&FileInput>,
    dropins: Option<&DropInDir>,
    minor: Option<KubeletMinor>,
) -> Effective {
    let mut eff = Effective {
        warnings: cmd.warnings.clone(),
        ..Effective::default()
    };
    let mut errors: Vec<String> = Vec::new();

    // 1 and 2: the base config.
    match config_file {
        None => {
            for tr in TRACKED {
                let (value, origin) = match tr.legacy {
                    Some(l) => (l.value(), LEGACY_DEFAULT),
                    None => (tr.default.value(), V1BETA1_DEFAULT),
                };
                eff.settings
                    .insert(tr.path.to_string(), setting(value, Source::Default, origin));
            }
        }
        Some(file) => {
            let decoded = match &file.content {
                Ok(text) => decode_config_file(&file.path, text),
                Err(reason) => Err(ConfigError::Unreadable {
                    path: file.path.clone(),
                    reason: reason.clone(),
                }),
            };
            let values = match decoded {
                Ok(fc) => {
                    eff.warnings.extend(fc.warnings);
                    fc.values
                }
                Err(e) => {
                    errors.push(e.to_string());
                    BTreeMap::new()
                }
            };
            apply_file(&mut eff, &file.path, &values);
        }
    }

    // 3: drop-ins.
    if let Some(dir) = dropins {
        match minor.map(MergeRules::for_minor) {
            Some(rules) => {
                if let Err(e) = apply_dropins(&mut eff, dir, rules) {
                    errors.push(e);
                }
            }
            None => {
                let mut internal = eff.clone();
                let r_internal = apply_dropins(&mut internal, dir, MergeRules::Internal);
                let r_versioned = apply_dropins(&mut eff, dir, MergeRules::Versioned);
                match (r_internal, r_versioned) {
                    (Ok(()), Ok(())) => disagreements(&mut eff, &internal),
                    (_, Err(e)) | (Err(e), Ok(())) => errors.push(e),
                }
            }
        }
    }

    // 4: flags.
    apply_flags(&mut eff, cmd);

    if !errors.is_empty() {
        eff.config_error = Some(errors.join("; "));
    }

    // 5: what the kubelet would refuse to start with.
    let validation = crate::validate::validate(&eff, minor);
    eff.warnings.extend(validation.warnings);
    if !validation.refusals.is_empty() {
        eff.refused = Some(crate::validate::refusal_message(&validation.refusals));
    }
    eff
}

fn setting(value: Value, source: Source, origin: impl Into<String>) -> Setting {
    Setting {
        value,
        source,
        origin: origin.into(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0s",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Null => true,
    }
}

/// Values other than zero that `SetDefaults_KubeletConfiguration`
/// (pkg/kubelet/apis/config/v1beta1/defaults.go) replaces with the default: "default nil or
/// negative value to -1" for podPidsLimit. No other tracked field has such a rewrite.
fn defaulting_rewrites(path: &str, v: &Value) -> bool {
    path == "podPidsLimit" && v.as_i64().is_some_and(|n| n < 0) && v.as_i64() != Some(-1)
}

fn apply_file(eff: &mut Effective, path: &str, values: &BTreeMap<String, Value>) {
    let dir = parent_dir(path);
    for tr in TRACKED {
        let pointer = schema::lookup_field(tr.path).is_some_and(|f| f.pointer);
        let s = match values.get(tr.path) {
            None => setting(tr.default.value(), Source::Default, V1BETA1_DEFAULT),
            // A zero value that defaulting changes counts as the default; one that equals
            // the default (rotateCertificates: false) stays the file's, so the operator sees
            // where to change it.
            Some(v) if !pointer && is_zero(v) && *v != tr.default.value() => setting(
                tr.default.value(),
                Source::Default,
                format!(
                    "{V1BETA1_DEFAULT} ({path} sets {} to {v}, a zero value, which defaulting replaces)",
                    tr.path
                ),
            ),
            Some(v) if defaulting_rewrites(tr.path, v) => setting(
                tr.default.value(),
                Source::Default,
                format!(
                    "{V1BETA1_DEFAULT} ({path} sets {} to {v}, which defaulting replaces)",
                    tr.path
                ),
            ),
            Some(v) => {
                let v = match (tr.is_path, v) {
                    (true, Value::String(p)) if !p.starts_with('/') => {
                        Value::String(join_path(&dir, p))
                    }
                    _ => v.clone(),
                };
                setting(v, Source::ConfigFile, path)
            }
        };
        eff.settings.insert(tr.path.to_string(), s);
    }
    for (k, v) in values {
        if k.starts_with("featureGates.") {
            eff.settings
                .insert(k.clone(), setting(v.clone(), Source::ConfigFile, path));
        }
    }
}

fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => ".".to_string(),
    }
}

/// Go's `filepath.Join` for an absolute directory and a relative path.
fn join_path(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in dir.split('/').chain(rel.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if dir.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

// ---- drop-ins ----------------------------------------------------------------------------
//
// cmd/kubelet/app/server.go `mergeKubeletConfigurations`: the config so far is marshalled
// to JSON, each drop-in is merge-patched on, and the result is decoded with Go's
// `encoding/json` (keys matched case-insensitively, in the bytewise order `json.Marshal`
// gives a map's keys, the last one winning). What is marshalled and whether the result is
// defaulted again depends on the version: see `MergeRules`.

/// How the kubelet merges drop-ins, which changed in 1.32 (kubernetes/kubernetes#127421,
/// "Merge kubelet configuration files using versioned serialized data").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRules {
    /// 1.28 to 1.31: the internal struct is marshalled with Go's field names
    /// (`ReadOnlyPort`, every field present), drop-ins are patched on, and the result is
    /// decoded into the same struct without defaulting: a drop-in's `0s` stays zero, and
    /// a `null` leaves the value as it was.
    Internal,
    /// 1.32 and later: the v1beta1 form (zero `omitempty` fields left out), drop-ins must
    /// be exactly kubelet.config.k8s.io/v1beta1, and the merged result is decoded into a
    /// fresh v1beta1 struct and defaulted: a drop-in's `0s` becomes the default, and a
    /// `null` resets the field to its default.
    Versioned,
}

impl MergeRules {
    pub fn for_minor(minor: KubeletMinor) -> MergeRules {
        if minor >= 32 {
            MergeRules::Versioned
        } else {
            MergeRules::Internal
        }
    }
}

/// Marks unknown every setting on which the two merge rules disagree, since the kubelet's
/// version, which decides, is not known.
fn disagreements(versioned: &mut Effective, internal: &Effective) {
    let paths: std::collections::BTreeSet<&String> = versioned
        .settings
        .keys()
        .chain(internal.settings.keys())
        .collect();
    for path in paths {
        let a = versioned.settings.get(path).map(|s| &s.value);
        let b = internal.settings.get(path).map(|s| &s.value);
        if a != b {
            let show = |v: Option<&Value>| v.map_or("unset".to_string(), Value::to_string);
            versioned.unknown.insert(
                path.clone(),
                format!(
                    "the drop-ins make {path} {} on kubelet 1.32 and later but {} on 1.30 and \
                     1.31 (the merge changed in 1.32), and nodeproof could not read the \
                     kubelet's version from its binary; pass --kubelet-version to decide",
                    show(a),
                    show(b)
                ),
            );
        }
    }
}

/// Where a value in the merged JSON came from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    Base,
    DropIn(usize),
}

/// The merged JSON: objects keep keys sorted bytewise, as Go's `json.Marshal` of a map
/// does, which decides which of two keys that match the same field case-insensitively is
/// decoded last and wins.
#[derive(Debug, Clone)]
enum Merged {
    Leaf(Node, Origin),
    Obj(BTreeMap<String, Merged>),
}

/// JSON names whose internal Go field name is not the JSON name capitalised.
const GO_NAMES: &[(&str, &str)] = &[
    ("x509", "X509"),
    ("clientCAFile", "ClientCAFile"),
    ("cacheTTL", "CacheTTL"),
    ("cacheAuthorizedTTL", "CacheAuthorizedTTL"),
    ("cacheUnauthorizedTTL", "CacheUnauthorizedTTL"),
    ("tlsCertFile", "TLSCertFile"),
    ("tlsPrivateKeyFile", "TLSPrivateKeyFile"),
    ("tlsCipherSuites", "TLSCipherSuites"),
    ("tlsMinVersion", "TLSMinVersion"),
    ("serverTLSBootstrap", "ServerTLSBootstrap"),
    ("makeIPTablesUtilChains", "MakeIPTablesUtilChains"),
    ("eventRecordQPS", "EventRecordQPS"),
    ("podPidsLimit", "PodPidsLimit"),
];

/// The internal struct's Go field name for a v1beta1 JSON name (1.30-1.31 merge base).
fn go_name(json: &str) -> String {
    if let Some((_, g)) = GO_NAMES.iter().find(|(j, _)| *j == json) {
        return g.to_string();
    }
    let mut c = json.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `go_name(json) == key`, without allocating (it runs for every key and field).
fn is_go_name(json: &str, key: &str) -> bool {
    if let Some((_, g)) = GO_NAMES.iter().find(|(j, _)| *j == json) {
        return *g == key;
    }
    let (mut a, mut b) = (json.chars(), key.chars());
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.to_uppercase().eq(std::iter::once(y)) && a.eq(b),
        _ => json.is_empty() && key.is_empty(),
    }
}

fn value_to_node(v: &Value) -> Node {
    match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Node::Int)
            .unwrap_or(Node::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => Node::Str(s.clone()),
        Value::Array(a) => Node::Seq(a.iter().map(value_to_node).collect()),
        Value::Object(o) => Node::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), value_to_node(v)))
                .collect(),
        ),
    }
}

fn insert_base(
    root: &mut BTreeMap<String, Merged>,
    json_path: &str,
    value: Node,
    rules: MergeRules,
) {
    let name = |part: &str| match rules {
        MergeRules::Internal => go_name(part),
        MergeRules::Versioned => part.to_string(),
    };
    let mut parts = json_path.split('.').peekable();
    let mut cur = root;
    while let Some(part) = parts.next() {
        // Feature gate names may contain dots? They do not; but keep the gate whole anyway.
        let key = if parts.peek().is_some() && part == "featureGates" {
            let gate: Vec<&str> = parts.by_ref().collect();
            let entry = cur
                .entry(name(part))
                .or_insert_with(|| Merged::Obj(BTreeMap::new()));
            if let Merged::Obj(m) = entry {
                m.insert(gate.join("."), Merged::Leaf(value, Origin::Base));
            }
            return;
        } else {
            name(part)
        };
        if parts.peek().is_none() {
            cur.insert(key, Merged::Leaf(value, Origin::Base));
            return;
        }
        let entry = cur
            .entry(key)
            .or_insert_with(|| Merged::Obj(BTreeMap::new()));
        if !matches!(entry, Merged::Obj(_)) {
            *entry = Merged::Obj(BTreeMap::new());
        }
        let Merged::Obj(next) = entry else { return };
        cur = next;
    }
}

/// RFC 7386 JSON merge patch, as evanphx/json-patch's `MergePatch` applies it.
fn merge_patch(target: &mut Merged, patch: &Node, origin: Origin) {
    match patch {
        Node::Map(entries) => {
            if !matches!(target, Merged::Obj(_)) {
                *target = Merged::Obj(BTreeMap::new());
            }
            let Merged::Obj(map) = target else { return };
            for (k, v) in entries {
                if *v == Node::Null {
                    map.remove(k);
                    continue;
                }
                let slot = map
                    .entry(k.clone())
                    .or_insert_with(|| Merged::Obj(BTreeMap::new()));
                if matches!(v, Node::Map(_)) {
                    merge_patch(slot, v, origin);
                } else {
                    *slot = Merged::Leaf(v.clone(), origin);
                }
            }
        }
        other => *target = Merged::Leaf(other.clone(), origin),
    }
}

/// Go's `encoding/json` field matching (`(*decodeState).object`): the exact name first
/// (the Go field name for the internal struct, the JSON name for v1beta1), else the first
/// field whose `foldName` equals the key's.
fn match_field(fields: &'static [Field], key: &str, rules: MergeRules) -> Option<&'static Field> {
    fields
        .iter()
        .find(|f| match rules {
            MergeRules::Internal => is_go_name(f.name, key),
            MergeRules::Versioned => f.name == key,
        })
        .or_else(|| fields.iter().find(|f| go_fold_eq(key, f.name)))
}

/// `foldName(key) == foldName(name)` for an ASCII `name` (every v1beta1 field name is
/// ASCII). Go's encoding/json `foldName` (fold.go) upper-cases ASCII letters and maps
/// every other rune to the smallest rune of its `unicode.SimpleFold` orbit (`foldRune`).
/// The only non-ASCII runes whose orbit holds an ASCII letter are U+017F LATIN SMALL
/// LETTER LONG S (orbit S, s, ſ) and U+212A KELVIN SIGN (orbit K, k, K), so `anonymouſ`
/// sets `anonymous`. (U+0130 and U+0131, the dotted and dotless i, have no orbit: they
/// do not match `i`.)
pub(crate) fn go_fold_eq(key: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    };
    let mut k = key.chars().map(fold);
    let mut n = name.chars().map(fold);
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Decodes the merged JSON into `out` (path -> value, origin), in Go's order: keys sorted
/// bytewise, nested objects decoded into the same struct, later keys overwriting.
fn decode_merged(
    obj: &BTreeMap<String, Merged>,
    fields: &'static [Field],
    prefix: &str,
    rules: MergeRules,
    out: &mut BTreeMap<String, (Value, Origin)>,
) -> Result<(), String> {
    for (key, val) in obj {
        let Some(field) = match_field(fields, key, rules) else {
            continue;
        };
        if prefix.is_empty() && (field.name == "apiVersion" || field.name == "kind") {
            continue;
        }
        let path = config::join(prefix, field.name);
        match (field.kind, val) {
            (_, Merged::Leaf(Node::Null, _)) => {}
            (Kind::Struct(sub), Merged::Obj(inner)) => {
                decode_merged(inner, sub, &path, rules, out)?;
            }
            (Kind::BoolMap, Merged::Obj(inner)) => {
                for (gate, v) in inner {
                    match v {
                        Merged::Leaf(Node::Bool(b), origin) => {
                            out.insert(format!("{path}.{gate}"), (Value::Bool(*b), *origin));
                        }
                        Merged::Leaf(Node::Null, _) => {}
                        _ => return Err(format!("{path}.{gate} must be a boolean")),
                    }
                }
            }
            (Kind::Opaque | Kind::StringMap, _) => {}
            (kind, Merged::Leaf(node, origin)) => {
                let v = typed(kind, node, true)
                    .map_err(|expected| format!("{path}: expected {expected}"))?;
                if !v.is_null() {
                    out.insert(path, (v, *origin));
                }
            }
            (_, Merged::Obj(_)) => {
                return Err(format!("{path}: an object where a value belongs"));
            }
        }
    }
    Ok(())
}

/// Checks one drop-in the way the kubelet's strict unstructured decode and the final
/// typed decode would, and reports fields it ignores or matches only case-insensitively.
fn check_dropin(
    path: &str,
    entries: &[(String, Node)],
    fields: &'static [Field],
    prefix: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    for (i, (key, value)) in entries.iter().enumerate() {
        let full = config::join(prefix, key);
        if entries[i + 1..].iter().any(|(k, _)| k == key) {
            return Err(ConfigError::DuplicateInDropIn {
                path: path.to_string(),
                field: full,
            });
        }
        let Some(field) = match_field(fields, key, MergeRules::Versioned) else {
            warnings.push(warn(
                path,
                Some(&full),
                format!("unknown field {full} in a drop-in: the kubelet ignores it"),
            ));
            continue;
        };
        let canonical = config::join(prefix, field.name);
        if field.name != key {
            warnings.push(warn(
                path,
                Some(&canonical),
                format!(
                    "drop-in key {full} is not spelled {canonical}; the kubelet decodes merged \
                     drop-ins case-insensitively, so it sets {canonical} only when no key with \
                     the proper spelling is in the merged config (that one sorts after it and \
                     wins); write {} instead",
                    field.name
                ),
            ));
        }
        match (field.kind, value) {
            (_, Node::Null) => {}
            (Kind::Struct(sub), Node::Map(inner)) => {
                check_dropin(path, inner, sub, &canonical, warnings)?;
            }
            (Kind::BoolMap, Node::Map(inner)) => {
                for (gate, v) in inner {
                    if !matches!(v, Node::Bool(_) | Node::Null) {
                        return Err(ConfigError::BadValue {
                            path: path.to_string(),
                            field: format!("{canonical}.{gate}"),
                            message: format!("expected a boolean, found {}", v.kind_name()),
                        });
                    }
                }
            }
            (kind, v) => {
                typed(kind, v, true).map_err(|expected| ConfigError::BadValue {
                    path: path.to_string(),
                    field: canonical.clone(),
                    message: format!("expected {expected}, found {}", v.kind_name()),
                })?;
            }
        }
    }
    Ok(())
}

fn load_dropin(file: &FileInput) -> Result<Node, ConfigError> {
    let text = file
        .content
        .as_ref()
        .map_err(|reason| ConfigError::Unreadable {
            path: file.path.clone(),
            reason: reason.clone(),
        })?;
    if text.is_empty() {
        return Err(ConfigError::Empty {
            path: file.path.clone(),
        });
    }
    let parsed = yaml::parse(text).map_err(|source| ConfigError::Syntax {
        path: file.path.clone(),
        source,
    })?;
    match &parsed.node {
        Node::Map(entries) => check_type_meta(&file.path, entries, true)?,
        Node::Null => {
            return Err(ConfigError::Empty {
                path: file.path.clone(),
            })
        }
        other => {
            return Err(ConfigError::NotAnObject {
                path: file.path.clone(),
                found: other.kind_name(),
            })
        }
    }
    Ok(parsed.node)
}

fn apply_dropins(eff: &mut Effective, dir: &DropInDir, rules: MergeRules) -> Result<(), String> {
    let files = dir.files.as_ref().map_err(|reason| {
        format!(
            "--config-dir {}: {reason}; the kubelet refuses to start when it cannot walk its \
             drop-in directory",
            dir.dir
        )
    })?;
    let confs: Vec<&FileInput> = files.iter().filter(|f| is_dropin(&f.path)).collect();
    if confs.is_empty() {
        return Ok(());
    }
    // The base, as the kubelet marshals it.
    let mut root = BTreeMap::new();
    for (path, s) in &eff.settings {
        let pointer = schema::lookup_field(path).is_some_and(|f| f.pointer);
        let gate = path.starts_with("featureGates.");
        if rules == MergeRules::Versioned && !gate && !pointer && is_zero(&s.value) {
            continue; // omitempty
        }
        insert_base(&mut root, path, value_to_node(&s.value), rules);
    }
    let mut merged = Merged::Obj(root);
    let mut warnings = Vec::new();
    for (i, file) in confs.iter().enumerate() {
        let node = load_dropin(file).map_err(|e| e.to_string())?;
        if let Node::Map(entries) = &node {
            check_dropin(
                &file.path,
                entries,
                KUBELET_CONFIGURATION,
                "",
                &mut warnings,
            )
            .map_err(|e| e.to_string())?;
        }
        merge_patch(&mut merged, &node, Origin::DropIn(i));
    }
    eff.warnings.extend(warnings);
    let Merged::Obj(root) = &merged else {
        return Err("merged drop-ins are not an object".to_string());
    };
    let mut decoded = BTreeMap::new();
    decode_merged(root, KUBELET_CONFIGURATION, "", rules, &mut decoded)?;

    for tr in TRACKED {
        let pointer = schema::lookup_field(tr.path).is_some_and(|f| f.pointer);
        let default = tr.default.value();
        let new = match (decoded.get(tr.path), rules) {
            (Some((_, Origin::Base)), _) => continue,
            (Some((v, Origin::DropIn(i))), MergeRules::Internal) => {
                setting(v.clone(), Source::DropIn, confs[*i].path.clone())
            }
            // 1.32+: defaulting runs again on the merged result.
            (Some((v, Origin::DropIn(i))), MergeRules::Versioned)
                if (pointer || !is_zero(v) || *v == default)
                    && !defaulting_rewrites(tr.path, v) =>
            {
                setting(v.clone(), Source::DropIn, confs[*i].path.clone())
            }
            (Some((v, Origin::DropIn(i))), MergeRules::Versioned) => setting(
                default,
                Source::Default,
                format!(
                    "{V1BETA1_DEFAULT} ({} sets {} to {v}, which defaulting \
                     replaces on kubelet 1.32 and later)",
                    confs[*i].path, tr.path
                ),
            ),
            // Deleted by a null: 1.30-1.31 decode into the struct as it was, so nothing
            // changes; 1.32+ decode into a fresh struct and default it.
            (None, MergeRules::Internal) => continue,
            (None, MergeRules::Versioned) => {
                if eff
                    .settings
                    .get(tr.path)
                    .is_some_and(|s| s.value == default)
                {
                    continue;
                }
                setting(
                    default,
                    Source::Default,
                    format!(
                        "{V1BETA1_DEFAULT} (a drop-in in {} removed the value with null)",
                        dir.dir
                    ),
                )
            }
        };
        eff.settings.insert(tr.path.to_string(), new);
    }
    if rules == MergeRules::Versioned {
        let gates: Vec<String> = eff
            .settings
            .keys()
            .filter(|k| k.starts_with("featureGates."))
            .cloned()
            .collect();
        for gate in gates {
            if !decoded.contains_key(&gate) {
                eff.settings.remove(&gate);
            }
        }
    }
    for (path, (value, origin)) in decoded {
        if let (true, Origin::DropIn(i)) = (path.starts_with("featureGates."), origin) {
            eff.settings
                .insert(path, setting(value, Source::DropIn, confs[i].path.clone()));
        }
    }
    Ok(())
}

// ---- flags ------------------------------------------------------------------------------

fn flag_value(kind: FlagKind, raw: &str) -> Option<Value> {
    Some(match kind {
        FlagKind::Bool => Value::Bool(parse_go_bool(raw).ok()?),
        FlagKind::Int32 => Value::from(parse_int_bits(raw, 32).ok()?),
        FlagKind::Int64 => Value::from(parse_int_bits(raw, 64).ok()?),
        FlagKind::Duration => Value::String(format_go_duration(parse_go_duration(raw).ok()?)),
        _ => Value::String(raw.to_string()),
    })
}

fn apply_flags(eff: &mut Effective, cmd: &CommandLine) {
    // Config-backed flags of tracked settings.
    for tr in TRACKED {
        let flags: Vec<_> = cmd
            .flags
            .iter()
            .filter(|f| f.flag.config == Some(tr.path))
            .collect();
        if let Some(bad) = cmd.bad.iter().find(|b| b.flag.config == Some(tr.path)) {
            eff.unknown.insert(
                tr.path.to_string(),
                format!(
                    "{} on the command line cannot be parsed ({}); a kubelet would refuse to \
                     start with it, so nodeproof cannot tell what value this kubelet uses",
                    bad.written, bad.reason
                ),
            );
            continue;
        }
        let Some(last) = flags.last() else { continue };
        if tr.path == "seccompDefault" {
            continue; // handled below: the flag ORs with the file.
        }
        if last.flag.kind == FlagKind::StringList {
            // pflag string slices: the first use replaces the config's list, later ones append.
            let items: Vec<Value> = flags
                .iter()
                .flat_map(|f| parse_string_list(&f.value))
                .map(Value::String)
                .collect();
            let sources: Vec<(Source, String)> = flags.iter().map(|f| cmd.source_of(f)).collect();
            // Written by someone if any part was; the distribution's alone otherwise.
            let source = if sources.iter().any(|(s, _)| *s == Source::Flag) {
                Source::Flag
            } else {
                Source::DistributionDefault
            };
            let origin = sources
                .into_iter()
                .map(|(_, o)| o)
                .collect::<Vec<_>>()
                .join(" ");
            eff.settings.insert(
                tr.path.to_string(),
                setting(Value::Array(items), source, origin),
            );
            continue;
        }
        if let Some(v) = flag_value(last.flag.kind, &last.value) {
            let (source, origin) = cmd.source_of(last);
            eff.settings
                .insert(tr.path.to_string(), setting(v, source, origin));
        }
    }

    // seccompDefault: `--seccomp-default` OR the file's seccompDefault.
    if let Some(f) = cmd.last("seccomp-default") {
        let (source, origin) = cmd.source_of(f);
        if parse_go_bool(&f.value) == Ok(true) {
            eff.settings.insert(
                "seccompDefault".to_string(),
                setting(Value::Bool(true), source, origin),
            );
        } else {
            let file_true = eff
                .settings
                .get("seccompDefault")
                .is_some_and(|s| s.value == Value::Bool(true));
            if !file_true {
                eff.settings.insert(
                    "seccompDefault".to_string(),
                    setting(Value::Bool(false), source, origin),
                );
            }
        }
    }

    // Feature gates: per key, the command line wins; within it, the last mention wins.
    for f in cmd.values("feature-gates") {
        if let Ok(pairs) = parse_bool_map(&f.value) {
            let (source, origin) = cmd.source_of(f);
            for (gate, on) in pairs {
                eff.settings.insert(
                    format!("featureGates.{gate}"),
                    setting(Value::Bool(on), source, origin.clone()),
                );
            }
        }
    }
    if let Some(bad) = cmd.is_bad("feature-gates") {
        eff.unknown.insert(
            "featureGates".to_string(),
            format!("{} cannot be parsed: {}", bad.written, bad.reason),
        );
    }

    // Flag-only settings, when given.
    for f in &cmd.flags {
        if f.flag.config.is_none() && !matches!(f.flag.name, "config" | "config-dir" | "v") {
            let (source, origin) = cmd.source_of(f);
            eff.settings.insert(
                format!("--{}", f.flag.name),
                setting(Value::String(f.value.clone()), source, origin),
            );
        }
    }
}
