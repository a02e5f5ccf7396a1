//! Decoding a KubeletConfiguration file (`--config`) and drop-ins (`--config-dir`) the way
//! the kubelet does, field by field against the v1beta1 schema.
//!
//! The two are decoded differently by the kubelet, and so here:
//! - The config file goes through the API machinery's case-sensitive decoder: strict first,
//!   then leniently, so unknown, miscased or duplicated fields are ignored (the last
//!   duplicate wins) and only type errors, a wrong apiVersion or kind, or an empty file are
//!   fatal. Zero values of non-pointer fields are then defaulted (by `effective`).
//! - A drop-in is decoded into an untyped object (strict, so duplicate keys are fatal; it
//!   must be exactly kubelet.config.k8s.io/v1beta1 KubeletConfiguration),
//!   JSON-merge-patched onto the v1beta1 JSON of the config so far, and the result is
//!   decoded with Go's `encoding/json`, which matches keys case-insensitively, then
//!   defaulted. See `effective::apply_dropins`.

use std::collections::BTreeMap;

use nodeproof_proto::Warning;
use serde_json::Value;

use crate::cmdline::{format_go_duration, parse_go_duration};
use crate::schema::{self, Field, Kind, KUBELET_CONFIGURATION};
use crate::yaml::{self, Node, Syntax};

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";

/// Why the kubelet would refuse a file. The kubelet that is running cannot have loaded the
/// file as it is now, so values that would come from it are unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path} is empty; the kubelet refuses an empty config file")]
    Empty { path: String },
    #[error("{path}: {source}")]
    Syntax {
        path: String,
        #[source]
        source: yaml::YamlError,
    },
    #[error("{path}: the top level is {found}, not an object with apiVersion and kind")]
    NotAnObject { path: String, found: &'static str },
    #[error("{path}: {field} is missing; a KubeletConfiguration needs apiVersion: {API_VERSION} and kind: {KIND}")]
    MissingTypeField { path: String, field: &'static str },
    #[error("{path}: {field} is {found:?}, expected {expected:?}")]
    WrongType {
        path: String,
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: field {field}: {message}")]
    BadValue {
        path: String,
        field: String,
        message: String,
    },
    #[error("{path}: key {field} appears more than once; the kubelet's strict decoding of drop-ins refuses duplicate keys")]
    DuplicateInDropIn { path: String, field: String },
    #[error("could not read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// A config file's fields, as decoded: leaves by dotted v1beta1 path, each in /configz
/// form. Zero values are kept as written; defaulting is `effective`'s job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    pub values: BTreeMap<String, Value>,
    pub warnings: Vec<Warning>,
}

/// Parses and type-checks a config file with the kubelet's rules for `--config`.
pub fn decode_config_file(path: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.is_empty() {
        return Err(ConfigError::Empty {
            path: path.to_string(),
        });
    }
    let parsed = yaml::parse(text).map_err(|source| ConfigError::Syntax {
        path: path.to_string(),
        source,
    })?;
    let mut out = FileConfig::default();
    if parsed.more_documents {
        out.warnings.push(warn(
            path,
            None,
            "the file holds more than one YAML document; the kubelet reads only the first"
                .to_string(),
        ));
    }
    let entries = top_level(path, &parsed.node)?;
    check_type_meta(path, entries, false)?;
    let ints_from_floats = parsed.syntax == Syntax::Yaml;
    walk_file(
        path,
        entries,
        KUBELET_CONFIGURATION,
        "",
        ints_from_floats,
        &mut out,
    )?;
    Ok(out)
}

fn top_level<'a>(path: &str, node: &'a Node) -> Result<&'a [(String, Node)], ConfigError> {
    match node {
        Node::Map(entries) => Ok(entries),
        Node::Null => Err(ConfigError::Empty {
            path: path.to_string(),
        }),
        other => Err(ConfigError::NotAnObject {
            path: path.to_string(),
            found: other.kind_name(),
        }),
    }
}

/// apiVersion and kind must be present and right (the kubelet's decoder picks the type by
/// them). For drop-ins the kubelet only insists on kind; we insist on both, as a drop-in
/// without them is not a KubeletConfiguration by any reading.
pub(crate) fn check_type_meta(
    path: &str,
    entries: &[(String, Node)],
    _dropin: bool,
) -> Result<(), ConfigError> {
    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        let found = entries
            .iter()
            .rev()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v);
        match found {
            None | Some(Node::Null) => {
                return Err(ConfigError::MissingTypeField {
                    path: path.to_string(),
                    field,
                })
            }
            Some(Node::Str(s)) if s == expected => {}
            Some(Node::Str(s)) => {
                return Err(ConfigError::WrongType {
                    path: path.to_string(),
                    field,
                    found: s.clone(),
                    expected,
                })
            }
            Some(other) => {
                return Err(ConfigError::WrongType {
                    path: path.to_string(),
                    field,
                    found: other.kind_name().to_string(),
                    expected,
                })
            }
        }
    }
    Ok(())
}

fn walk_file(
    path: &str,
    entries: &[(String, Node)],
    fields: &'static [Field],
    prefix: &str,
    ints_from_floats: bool,
    out: &mut FileConfig,
) -> Result<(), ConfigError> {
    for (i, (key, value)) in entries.iter().enumerate() {
        let full = join(prefix, key);
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            out.warnings.push(warn(
                path,
                Some(&full),
                unknown_field_message(&full, fields),
            ));
            continue;
        };
        if entries[i + 1..].iter().any(|(k, _)| k == key) {
            out.warnings.push(warn(
                path,
                Some(&full),
                format!("{full} is set more than once; the kubelet uses the last one"),
            ));
            continue;
        }
        if prefix.is_empty() && (key == "apiVersion" || key == "kind") {
            continue;
        }
        match (field.kind, value) {
            // apimachinery `metav1.Duration.UnmarshalJSON` is handed the null (its type has
            // a pointer-receiver unmarshaler), reads it as "" and fails in
            // `time.ParseDuration("")`: `streamingConnectionIdleTimeout:` with no value
            // stops the kubelet rather than leaving the default.
            (Kind::Duration, Node::Null) => {
                return Err(ConfigError::BadValue {
                    path: path.to_string(),
                    field: full,
                    message: "null (or no value) is not a duration: the kubelet's decoder \
                              fails with time: invalid duration \"\"; write a duration such \
                              as \"4h0m0s\" or remove the line"
                        .to_string(),
                });
            }
            (_, Node::Null) => {}
            (Kind::Struct(sub), Node::Map(inner)) => {
                walk_file(path, inner, sub, &full, ints_from_floats, out)?;
            }
            (Kind::BoolMap, Node::Map(inner)) => {
                for (j, (gate, v)) in inner.iter().enumerate() {
                    if inner[j + 1..].iter().any(|(k, _)| k == gate) {
                        continue;
                    }
                    let Node::Bool(b) = v else {
                        return Err(bad(path, &format!("{full}.{gate}"), v, "a boolean"));
                    };
                    out.values.insert(format!("{full}.{gate}"), Value::Bool(*b));
                }
            }
            (kind, v) => {
                let value = typed(kind, v, ints_from_floats)
                    .map_err(|expected| bad(path, &full, v, expected))?;
                out.values.insert(full, value);
            }
        }
    }
    Ok(())
}

fn bad(path: &str, field: &str, found: &Node, expected: &str) -> ConfigError {
    ConfigError::BadValue {
        path: path.to_string(),
        field: field.to_string(),
        message: format!(
            "expected {expected}, found {}{}",
            found.kind_name(),
            match found {
                Node::Str(s) => format!(" {s:?}"),
                Node::Int(i) => format!(" {i}"),
                Node::Float(f) => format!(" {f}"),
                Node::Bool(b) => format!(" {b}"),
                _ => String::new(),
            }
        ),
    }
}

/// Converts a decoded value to its /configz JSON form if it fits the field's Go type, or
/// names what was expected.
pub(crate) fn typed(kind: Kind, v: &Node, ints_from_floats: bool) -> Result<Value, &'static str> {
    let int = |bits_min: i128, bits_max: i128| -> Result<Value, &'static str> {
        let n: i128 = match v {
            Node::Int(i) => i128::from(*i),
            Node::Float(f) if ints_from_floats && f.fract() == 0.0 && f.abs() < 1e21 => *f as i128,
            _ => return Err("an integer"),
        };
        if n < bits_min || n > bits_max {
            return Err("an integer in range");
        }
        Ok(Value::from(n as i64))
    };
    match kind {
        Kind::Bool => match v {
            Node::Bool(b) => Ok(Value::Bool(*b)),
            _ => Err("a boolean"),
        },
        Kind::Int32 => int(i128::from(i32::MIN), i128::from(i32::MAX)),
        Kind::Int64 => int(i128::from(i64::MIN), i128::from(i64::MAX)),
        Kind::Uint32 => int(0, i128::from(u32::MAX)),
        Kind::Float64 => match v {
            Node::Int(i) => Ok(Value::from(*i)),
            Node::Float(f) => Ok(Value::from(*f)),
            _ => Err("a number"),
        },
        Kind::String => match v {
            Node::Str(s) => Ok(Value::String(s.clone())),
            _ => Err("a string"),
        },
        Kind::Duration => match v {
            Node::Str(s) => parse_go_duration(s)
                .map(|n| Value::String(format_go_duration(n)))
                .map_err(|_| "a duration such as \"4h0m0s\""),
            _ => Err("a duration string such as \"4h0m0s\""),
        },
        Kind::StringList => match v {
            Node::Seq(items) => items
                .iter()
                .map(|i| match i {
                    Node::Str(s) => Ok(Value::String(s.clone())),
                    _ => Err("a list of strings"),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => Err("a list of strings"),
        },
        Kind::StringMap => match v {
            Node::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, val) in entries {
                    match val {
                        Node::Str(s) => {
                            m.insert(k.clone(), Value::String(s.clone()));
                        }
                        _ => return Err("an object of strings"),
                    }
                }
                Ok(Value::Object(m))
            }
            _ => Err("an object of strings"),
        },
        Kind::BoolMap => match v {
            Node::Map(_) => Ok(Value::Null),
            _ => Err("an object of booleans"),
        },
        Kind::Struct(_) => match v {
            Node::Map(_) => Ok(Value::Null),
            _ => Err("an object"),
        },
        Kind::Opaque => Ok(Value::Null),
        #[allow(unreachable_patterns)]
        _ => Ok(Value::Null),
    }
}

pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(crate) fn warn(file: &str, field: Option<&str>, message: String) -> Warning {
    Warning {
        message,
        file: Some(file.to_string()),
        field: field.map(str::to_string),
    }
}

/// The warning for a field the kubelet ignores, with the most likely intended field.
fn unknown_field_message(full: &str, fields: &'static [Field]) -> String {
    let key = full.rsplit('.').next().unwrap_or(full);
    let prefix = full.strip_suffix(key).unwrap_or("");
    if let Some(f) = fields
        .iter()
        .find(|f| crate::effective::go_fold_eq(key, f.name))
    {
        return format!(
            "unknown field {full}: field names are case sensitive, so the kubelet ignores it; \
             did you mean {prefix}{}?",
            f.name
        );
    }
    let elsewhere = schema_paths_ending_in(key);
    if !elsewhere.is_empty() {
        return format!(
            "unknown field {full}: the kubelet ignores it; {key} belongs at {}",
            elsewhere.join(" or ")
        );
    }
    format!(
        "unknown field {full}: not a KubeletConfiguration v1beta1 field, so the kubelet ignores it"
    )
}

/// Every schema path whose last segment is `key` (case-insensitively), for suggestions
/// such as `authentication.mode` -> `authorization.mode`.
fn schema_paths_ending_in(key: &str) -> Vec<String> {
    fn walk(fields: &'static [Field], prefix: &str, key: &str, out: &mut Vec<String>) {
        for f in fields {
            let full = join(prefix, f.name);
            if f.name.eq_ignore_ascii_case(key) {
                out.push(full.clone());
            }
            if let Kind::Struct(sub) = f.kind {
                walk(sub, &full, key, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(KUBELET_CONFIGURATION, "", key, &mut out);
    out
}

/// The field at a dotted path, for callers that hold a path.
pub fn field(path: &str) -> Option<&'static Field> {
    schema::lookup_field(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    fn decode(body: &str) -> Result<FileConfig, ConfigError> {
        decode_config_file("/etc/k.yaml", &format!("{HEAD}{body}"))
    }

    #[test]
    fn typed_values_in_configz_form() {
        let c = decode(
            "readOnlyPort: 0x0\nstreamingConnectionIdleTimeout: 4h\nauthentication:\n  anonymous:\n    enabled: no\n",
        )
        .expect("decodes");
        assert_eq!(c.values["readOnlyPort"], Value::from(0));
        assert_eq!(
            c.values["streamingConnectionIdleTimeout"],
            Value::from("4h0m0s")
        );
        assert_eq!(
            c.values["authentication.anonymous.enabled"],
            Value::Bool(false)
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn quoted_port_is_a_type_error() {
        let err = decode("readOnlyPort: \"0\"\n").expect_err("fatal");
        assert!(
            matches!(&err, ConfigError::BadValue { field, .. } if field == "readOnlyPort"),
            "{err}"
        );
    }

    #[test]
    fn miscased_and_misplaced_fields_are_ignored_with_a_suggestion() {
        let c = decode("ReadOnlyPort: 10255\nauthentication:\n  mode: AlwaysAllow\n").expect("ok");
        assert!(!c.values.contains_key("readOnlyPort"));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].message.contains("did you mean readOnlyPort"));
        assert_eq!(c.warnings[1].field.as_deref(), Some("authentication.mode"));
        assert!(c.warnings[1].message.contains("authorization.mode"));
    }

    #[test]
    fn duplicates_warn_and_the_last_wins() {
        let c = decode("readOnlyPort: 0\nreadOnlyPort: 10255\n").expect("ok");
        assert_eq!(c.values["readOnlyPort"], Value::from(10255));
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn wrong_kind_or_version_and_empty_files_are_fatal() {
        assert!(matches!(
            decode_config_file("/k", ""),
            Err(ConfigError::Empty { .. })
        ));
        assert!(matches!(
            decode_config_file("/k", "# only a comment\n"),
            Err(ConfigError::Empty { .. })
        ));
        assert!(matches!(
            decode_config_file("/k", "kind: KubeletConfiguration\nport: 1\n"),
            Err(ConfigError::MissingTypeField {
                field: "apiVersion",
                ..
            })
        ));
        assert!(matches!(
            decode_config_file(
                "/k",
                "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n"
            ),
            Err(ConfigError::WrongType {
                field: "apiVersion",
                ..
            })
        ));
        assert!(matches!(
            decode_config_file("/k", "- a\n- b\n"),
            Err(ConfigError::NotAnObject { .. })
        ));
    }

    #[test]
    fn json_integers_must_be_integers_but_yaml_floats_are_not() {
        let json = "{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",\"readOnlyPort\":10255.0}";
        assert!(matches!(
            decode_config_file("/k.json", json),
            Err(ConfigError::BadValue { .. })
        ));
        let c = decode("readOnlyPort: 10255.0\n").expect("yaml float");
        assert_eq!(c.values["readOnlyPort"], Value::from(10255));
    }

    #[test]
    fn bad_duration_is_fatal() {
        let err = decode("streamingConnectionIdleTimeout: 4 hours\n").expect_err("fatal");
        assert!(err.to_string().contains("streamingConnectionIdleTimeout"));
    }

    #[test]
    fn feature_gates_are_flattened() {
        let c = decode("featureGates:\n  RotateKubeletServerCertificate: false\n  Foo: true\n")
            .expect("ok");
        assert_eq!(
            c.values["featureGates.RotateKubeletServerCertificate"],
            Value::Bool(false)
        );
        assert_eq!(c.values["featureGates.Foo"], Value::Bool(true));
    }
}
