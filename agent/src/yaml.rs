//! Reads a kubelet config file into a plain tree the way the kubelet's decoder sees it.
//!
//! The kubelet converts YAML to JSON with `sigs.k8s.io/yaml`, which resolves plain scalars
//! with go-yaml v2's YAML 1.1 rules: `enabled: yes` is the boolean true, `port: 0x10` is 16
//! and `10250.0` is a number. A YAML 1.2 library would read those as strings, and a file
//! the kubelet accepts would look broken to us. So this module walks the parser's events
//! itself, keeps each scalar's style (a quoted `"yes"` stays a string), and keeps every
//! mapping entry in order, duplicates included, so the decoder can report them.
//! JSON files go through `serde_json` with the same duplicate-keeping tree, because the
//! kubelet decodes them with a JSON decoder, where `10250.0` is not an integer.

use std::collections::HashMap;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One decoded value. Mappings keep every entry in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What a person would call this kind of value, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number with a fraction",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "an object",
        }
    }
}

/// How the file was written; it decides a few decoding rules (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YamlError {
    #[error("not valid YAML at line {line}, column {col}: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("YAML alias *{0} refers to no anchor")]
    UnknownAlias(usize),
    #[error("YAML nesting is deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

const MAX_DEPTH: usize = 64;

/// Parses a config file. The kubelet recognises JSON by a leading `{`; everything else is
/// YAML. Only the first YAML document counts, as in the kubelet; `more_documents` tells
/// the caller that others were ignored.
pub fn parse(text: &str) -> Result<Parsed, YamlError> {
    if text.trim_start().starts_with('{') {
        let node: JsonNode =
            serde_json::from_str(text).map_err(|e| YamlError::Json(e.to_string()))?;
        return Ok(Parsed {
            node: node.0,
            syntax: Syntax::Json,
            more_documents: false,
        });
    }
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    loader.document()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub node: Node,
    pub syntax: Syntax,
    pub more_documents: bool,
}

struct Loader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
}

fn syntax_error(mark: Marker, message: impl Into<String>) -> YamlError {
    YamlError::Syntax {
        line: mark.line(),
        col: mark.col() + 1,
        message: message.into(),
    }
}

impl Loader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|e| YamlError::Syntax {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })
    }

    fn document(&mut self) -> Result<Parsed, YamlError> {
        let mut node = Node::Null;
        loop {
            let (ev, mark) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentStart => {}
                Event::StreamEnd => break,
                Event::DocumentEnd => {
                    let more = self.rest_has_documents()?;
                    return Ok(Parsed {
                        node,
                        syntax: Syntax::Yaml,
                        more_documents: more,
                    });
                }
                ev => node = self.node(ev, mark, 0)?,
            }
        }
        Ok(Parsed {
            node,
            syntax: Syntax::Yaml,
            more_documents: false,
        })
    }

    fn rest_has_documents(&mut self) -> Result<bool, YamlError> {
        loop {
            match self.next() {
                Ok((Event::StreamEnd, _)) => return Ok(false),
                Ok((Event::DocumentStart, _)) => {}
                Ok((Event::DocumentEnd, _)) => {}
                Ok(_) => return Ok(true),
                // The kubelet never reads past the first document, so neither do we.
                Err(_) => return Ok(true),
            }
        }
    }

    fn node(&mut self, ev: Event, mark: Marker, depth: usize) -> Result<Node, YamlError> {
        if depth > MAX_DEPTH {
            return Err(YamlError::TooDeep);
        }
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                (resolve_scalar(&value, style, tag), anchor)
            }
            Event::Alias(id) => {
                return self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias(id))
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, mark) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, mark, depth + 1)?);
                }
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                let mut merged: Vec<(String, Node)> = Vec::new();
                loop {
                    let (ev, kmark) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let merge_key =
                        matches!(&ev, Event::Scalar(k, TScalarStyle::Plain, _, None) if k == "<<");
                    let key = self.node(ev, kmark, depth + 1)?;
                    let (vev, vmark) = self.next()?;
                    let value = self.node(vev, vmark, depth + 1)?;
                    if merge_key {
                        // go-yaml's merge key: entries of the merged mapping(s) that the
                        // mapping does not set itself.
                        let sources = match value {
                            Node::Map(m) => vec![m],
                            Node::Seq(items) => items
                                .into_iter()
                                .filter_map(|n| match n {
                                    Node::Map(m) => Some(m),
                                    _ => None,
                                })
                                .collect(),
                            _ => return Err(syntax_error(vmark, "merge key << needs a mapping")),
                        };
                        for m in sources {
                            for (k, v) in m {
                                if !merged.iter().any(|(e, _)| *e == k) {
                                    merged.push((k, v));
                                }
                            }
                        }
                        continue;
                    }
                    entries.push((key_string(&key, kmark)?, value));
                }
                // Keys the mapping sets itself win over merged ones, wherever they stand.
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| *e == k) {
                        entries.push((k, v));
                    }
                }
                (Node::Map(entries), anchor)
            }
            other => {
                return Err(syntax_error(
                    mark,
                    format!("unexpected YAML event {other:?}"),
                ));
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// sigs.k8s.io/yaml turns every mapping key into a JSON string.
fn key_string(key: &Node, mark: Marker) -> Result<String, YamlError> {
    Ok(match key {
        Node::Str(s) => s.clone(),
        Node::Null => "null".to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Seq(_) | Node::Map(_) => {
            return Err(syntax_error(mark, "a mapping key must be a scalar"));
        }
    })
}

/// go-yaml v2's resolution of a scalar (resolve.go): only plain scalars are typed.
fn resolve_scalar(value: &str, style: TScalarStyle, tag: Option<Tag>) -> Node {
    if let Some(tag) = tag {
        if tag.handle == "!!" && tag.suffix == "str" {
            return Node::Str(value.to_string());
        }
    }
    if style != TScalarStyle::Plain {
        return Node::Str(value.to_string());
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Node::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Node::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Node::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Node::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Node::Float(f64::NAN),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        let plain = value.replace('_', "");
        if let Some(i) = parse_go_int(&plain) {
            return Node::Int(i);
        }
        if let Some(bin) = plain.strip_prefix("0b") {
            if let Ok(i) = i64::from_str_radix(bin, 2) {
                return Node::Int(i);
            }
        }
        if let Some(bin) = plain.strip_prefix("-0b") {
            if let Ok(i) = i64::from_str_radix(bin, 2) {
                return Node::Int(-i);
            }
        }
        if is_yaml_float(&plain) {
            if let Ok(f) = plain.parse::<f64>() {
                return Node::Float(f);
            }
        }
    }
    Node::Str(value.to_string())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, go-yaml v2's float pattern.
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => digits(e.strip_prefix(['-', '+']).unwrap_or(e)),
    };
    mantissa_ok && exponent_ok
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional sign, then `0x`, `0o`, `0b` or a leading
/// `0` (octal) prefix, or decimal. Underscores are only allowed with a prefix; callers that
/// follow go-yaml have removed them already.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, r)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    let digits = if radix == 10 {
        digits.to_string()
    } else {
        // Go allows `_` between digits (the prefix counts as a digit) only with a prefix.
        if digits.ends_with('_') || digits.contains("__") {
            return None;
        }
        digits.replace('_', "")
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// A serde sink for JSON that keeps duplicate keys and the integer/float distinction.
struct JsonNode(Node);

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(JsonNode)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(JsonNode(n)) = seq.next_element()? {
            items.push(n);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, JsonNode(v))) = map.next_entry::<String, JsonNode>()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        let p = parse(text).expect("parses");
        assert_eq!(p.syntax, Syntax::Yaml);
        p.node
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match node {
            Node::Map(m) => &m.iter().find(|(k, _)| k == key).expect("key").1,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn yaml_1_1_booleans_resolve_like_go_yaml_v2() {
        let n = yaml("a: yes\nb: off\nc: \"yes\"\nd: 'no'\ne: True\n");
        assert_eq!(get(&n, "a"), &Node::Bool(true));
        assert_eq!(get(&n, "b"), &Node::Bool(false));
        assert_eq!(get(&n, "c"), &Node::Str("yes".into()));
        assert_eq!(get(&n, "d"), &Node::Str("no".into()));
        assert_eq!(get(&n, "e"), &Node::Bool(true));
    }

    #[test]
    fn integers_take_go_prefixes_and_floats_stay_floats() {
        let n = yaml("a: 0x10\nb: 010\nc: 10250.0\nd: 1_000\ne: \"10250\"\nf: -5\ng: 0b101\n");
        assert_eq!(get(&n, "a"), &Node::Int(16));
        assert_eq!(get(&n, "b"), &Node::Int(8));
        assert_eq!(get(&n, "c"), &Node::Float(10250.0));
        assert_eq!(get(&n, "d"), &Node::Int(1000));
        assert_eq!(get(&n, "e"), &Node::Str("10250".into()));
        assert_eq!(get(&n, "f"), &Node::Int(-5));
        assert_eq!(get(&n, "g"), &Node::Int(5));
    }

    #[test]
    fn duplicates_are_kept_in_order() {
        let n = yaml("readOnlyPort: 0\nreadOnlyPort: 10255\n");
        assert_eq!(
            n,
            Node::Map(vec![
                ("readOnlyPort".into(), Node::Int(0)),
                ("readOnlyPort".into(), Node::Int(10255)),
            ])
        );
        let j = parse("{\"a\": 1, \"a\": 2.0}").expect("json");
        assert_eq!(j.syntax, Syntax::Json);
        assert_eq!(
            j.node,
            Node::Map(vec![
                ("a".into(), Node::Int(1)),
                ("a".into(), Node::Float(2.0))
            ])
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = yaml("base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  b: 3\n");
        let other = get(&n, "other");
        assert_eq!(get(other, "a"), &Node::Int(1));
        assert_eq!(get(other, "b"), &Node::Int(3));
        // go-yaml v2 resolves a plain `y` key as the boolean true, so it becomes "true".
        let n = yaml("y: 1\n");
        assert_eq!(get(&n, "true"), &Node::Int(1));
    }

    #[test]
    fn empty_and_comment_only_files_are_null() {
        assert_eq!(yaml(""), Node::Null);
        assert_eq!(yaml("# nothing\n"), Node::Null);
    }

    #[test]
    fn extra_documents_are_noticed() {
        let p = parse("a: 1\n---\nb: 2\n").expect("parses");
        assert!(p.more_documents);
        assert_eq!(get(&p.node, "a"), &Node::Int(1));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("a: 1\n b: [\n").expect_err("broken");
        assert!(matches!(err, YamlError::Syntax { .. }), "{err}");
        assert!(matches!(parse("{\"a\": }"), Err(YamlError::Json(_))));
    }

    #[test]
    fn go_int_parsing() {
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("0o17"), Some(15));
        assert_eq!(parse_go_int("-0x10"), Some(-16));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("08"), None);
        assert_eq!(parse_go_int("1_0"), None);
        assert_eq!(parse_go_int("0x_1"), Some(1));
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("--1"), None);
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
    }
}
