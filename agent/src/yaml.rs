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
//!
//! Entries are kept in the order go-yaml writes them into its Go map (a `<<` merge is
//! expanded where it stands), so the last entry for a key is the value the kubelet sees.
//! Whatever go-yaml v2 or sigs.k8s.io/yaml refuse (a tag that does not fit, a null key,
//! NaN, control characters, excessive aliasing, `%YAML 1.2`) is [`YamlError::Refused`]:
//! the kubelet would not start with the file. docs/effective-config.md ("Decoding rules")
//! lists every rule with its upstream function and test.

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
    /// What go-yaml v2 or sigs.k8s.io/yaml refuse although the YAML is well formed; the
    /// kubelet then refuses the file.
    #[error("line {line}, column {col}: {message}")]
    Refused {
        line: usize,
        col: usize,
        message: String,
    },
}

const MAX_DEPTH: usize = 64;

/// Parses a config file. The kubelet recognises JSON by a leading `{`; everything else is
/// YAML. Only the first YAML document counts, as in the kubelet; `more_documents` tells
/// the caller that others were ignored.
pub fn parse(text: &str) -> Result<Parsed, YamlError> {
    // apimachinery `utilyaml.IsJSONBuffer`: `{` after `unicode.IsSpace`, which is Rust's
    // White_Space set; a leading byte-order mark is not a space, so such a file is YAML.
    if text.trim_start().starts_with('{') {
        let node: JsonNode =
            serde_json::from_str(text).map_err(|e| YamlError::Json(e.to_string()))?;
        return Ok(Parsed {
            node: node.0,
            syntax: Syntax::Json,
            more_documents: false,
        });
    }
    check_printable(text)?;
    check_yaml_directive(text)?;
    // go-yaml v2 `yaml_parser_determine_encoding` skips a UTF-8 byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        decode_count: 1, // go-yaml counts the document node too
        alias_count: 0,
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
    /// Each anchor's node and how many `unmarshal` calls go-yaml makes to decode it, which
    /// it makes again for every alias (see `count_alias`).
    anchors: HashMap<usize, (Node, u64)>,
    decode_count: u64,
    alias_count: u64,
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
                ev => node = finite(self.node(ev, mark, 0)?, mark)?,
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
        let before = self.decode_count;
        if !matches!(ev, Event::Alias(_)) {
            self.count(mark, 0)?;
        }
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let node = resolve_scalar(&value, style, tag.as_ref())
                    .map_err(|message| refused(mark, message))?;
                (node, anchor)
            }
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias(id))?;
                self.count(mark, size)?;
                return Ok(node);
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, mark) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(finite(self.node(ev, mark, depth + 1)?, mark)?);
                }
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                loop {
                    let (ev, kmark) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let merge_key = is_merge_key(&ev);
                    let key_is_uint = matches!(&ev, Event::Scalar(v, TScalarStyle::Plain, _, None)
                        if resolves_to_uint(v));
                    let key = self.node(ev, kmark, depth + 1)?;
                    if merge_key {
                        // `(*decoder).mapping` hands the value to `merge` without
                        // unmarshalling the `<<` key.
                        self.decode_count -= 1;
                    }
                    let (vev, vmark) = self.next()?;
                    let value = finite(self.node(vev, vmark, depth + 1)?, vmark)?;
                    if merge_key {
                        merge_into(&mut entries, value, vmark)?;
                        continue;
                    }
                    if key_is_uint {
                        return Err(refused(
                            kmark,
                            "an integer key beyond int64 is an unsupported map key for \
                             sigs.k8s.io/yaml, so the kubelet refuses the file",
                        ));
                    }
                    entries.push((key_string(&key, kmark)?, value));
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
            let size = self.decode_count - before;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(node)
    }

    /// go-yaml v2 `(*decoder).unmarshal`'s alias budget: every node decoded counts, and an
    /// alias re-decodes its anchor's whole subtree (`aliased` calls), all of which count as
    /// alias-driven; once more than 100 alias-driven calls and 1000 calls in all have been
    /// made, a share above `allowedAliasRatio` fails with "document contains excessive
    /// aliasing". This refuses billion-laughs files as the kubelet does, and bounds what
    /// the clones here can cost.
    fn count(&mut self, mark: Marker, aliased: u64) -> Result<(), YamlError> {
        self.decode_count += 1 + aliased;
        self.alias_count += aliased;
        let (d, a) = (self.decode_count, self.alias_count);
        if a > 100 && d > 1000 && a as f64 / d as f64 > allowed_alias_ratio(d) {
            return Err(refused(
                mark,
                "document contains excessive aliasing (go-yaml v2), so the kubelet refuses \
                 the file",
            ));
        }
        Ok(())
    }
}

/// sigs.k8s.io/yaml `yamlToJSONTarget` ends in `json.Marshal`, which fails with
/// "unsupported value: NaN" (or +Inf) wherever such a value stands; as a key it is text.
fn finite(node: Node, mark: Marker) -> Result<Node, YamlError> {
    match node {
        Node::Float(f) if !f.is_finite() => Err(refused(
            mark,
            format!(
                "{} is not a JSON number; sigs.k8s.io/yaml cannot convert it, so the kubelet \
                 refuses the file",
                go_format_float32_g(f)
            ),
        )),
        node => Ok(node),
    }
}

/// go-yaml v2 `allowedAliasRatio`: 99% of decode calls may come from aliases up to 400,000
/// calls, 10% from 4,000,000, linear in between.
fn allowed_alias_ratio(decode_count: u64) -> f64 {
    const LOW: u64 = 400_000;
    const HIGH: u64 = 4_000_000;
    if decode_count <= LOW {
        0.99
    } else if decode_count >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decode_count - LOW) as f64 / (HIGH - LOW) as f64)
    }
}

fn refused(mark: Marker, message: impl Into<String>) -> YamlError {
    YamlError::Refused {
        line: mark.line(),
        col: mark.col() + 1,
        message: message.into(),
    }
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

/// The tag as go-yaml v2 names it: `!!int` for `tag:yaml.org,2002:int` (`shortTag`), `!`
/// for the non-specific tag, the full tag otherwise.
fn short_tag(tag: &Tag) -> String {
    let full = format!("{}{}", tag.handle, tag.suffix);
    if full == "!" {
        return full;
    }
    match full.strip_prefix(CORE_TAG) {
        Some(rest) => format!("!!{rest}"),
        None => full,
    }
}

/// go-yaml v2 `isMerge`: a scalar `<<` that is plain and untagged, or has the non-specific
/// tag `!` (the parser's `plain_implicit`), or is tagged `!!merge`.
fn is_merge_key(ev: &Event) -> bool {
    let Event::Scalar(value, style, _, tag) = ev else {
        return false;
    };
    if value != "<<" {
        return false;
    }
    match tag {
        None => *style == TScalarStyle::Plain,
        Some(t) => matches!(short_tag(t).as_str(), "!" | "!!merge"),
    }
}

/// go-yaml v2 `(*decoder).merge` into a map, called from `(*decoder).mapping` where the
/// `<<` key stands: every merged key is set with `setMapIndex`, overwriting a key written
/// before the `<<`, and keys written after it overwrite the merged ones. Of a sequence of
/// mappings the last is applied first, so earlier ones win. (The YAML merge-key spec says
/// keys of the mapping itself always win; go-yaml v2, and so the kubelet, do not.)
/// Entries are appended, so "the last entry wins" gives Go's map, and strict readers see a
/// merged key that collides as the duplicate go-yaml's `UnmarshalStrict` reports.
fn merge_into(
    entries: &mut Vec<(String, Node)>,
    value: Node,
    mark: Marker,
) -> Result<(), YamlError> {
    let want_map = || {
        refused(
            mark,
            "map merge requires map or sequence of maps as the value (go-yaml v2 \
             failWantMap), so the kubelet refuses the file",
        )
    };
    let sources = match value {
        Node::Map(m) => vec![m],
        Node::Seq(items) => {
            let mut maps = Vec::new();
            for item in items.into_iter().rev() {
                match item {
                    Node::Map(m) => maps.push(m),
                    _ => return Err(want_map()),
                }
            }
            maps
        }
        _ => return Err(want_map()),
    };
    for m in sources {
        // The merged mapping is a Go map: one value per key, the last one written.
        let mut deduped: Vec<(String, Node)> = Vec::new();
        for (k, v) in m {
            deduped.retain(|(e, _)| *e != k);
            deduped.push((k, v));
        }
        entries.extend(deduped);
    }
    Ok(())
}

/// sigs.k8s.io/yaml `convertToJSONableObject`: string, int, float and bool keys become JSON
/// strings; any other key (null, or an integer only uint64 holds) is an "unsupported map
/// key", and the conversion fails.
fn key_string(key: &Node, mark: Marker) -> Result<String, YamlError> {
    Ok(match key {
        Node::Str(s) => s.clone(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => go_format_float32_g(*f),
        Node::Null => {
            return Err(refused(
                mark,
                "a null mapping key is an unsupported map key for sigs.k8s.io/yaml, so the \
                 kubelet refuses the file",
            ));
        }
        Node::Seq(_) | Node::Map(_) => {
            return Err(syntax_error(mark, "a mapping key must be a scalar"));
        }
    })
}

/// `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for the non-finite values,
/// as sigs.k8s.io/yaml turns a float key into a string.
fn go_format_float32_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let x = f as f32;
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip an f32, as Go's shortest
    // formatting does: `d.ddde[-]x`.
    let sci = format!("{:e}", x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    // Go: %e when exp < -4 || exp >= 6 (the shortest form decides with precision 6).
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = point as usize;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

/// go-yaml v2 `(*decoder).scalar` with `resolve`: an untagged quoted scalar is a string; a
/// plain one, or one with a core tag (`!!int "10255"` is the integer 10255), is resolved;
/// a tag that does not fit the value is an error; any other tag leaves the text a string.
fn resolve_scalar(value: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Node, String> {
    let tag = tag.map(short_tag);
    let tag = match tag.as_deref() {
        None if style != TScalarStyle::Plain => return Ok(Node::Str(value.to_string())),
        None => "",
        Some(t) => t,
    };
    match tag {
        "" | "!!bool" | "!!int" | "!!float" | "!!null" => {}
        "!!str" => return Ok(Node::Str(value.to_string())),
        "!!timestamp" => {
            // go-yaml v2 hands timestamps to interface{} targets as their text.
            return if looks_like_timestamp(value) {
                Ok(Node::Str(value.to_string()))
            } else {
                Err(format!(
                    "cannot decode {value:?} as a !!timestamp, so the kubelet refuses the file"
                ))
            };
        }
        "!!binary" => {
            return Err(
                "nodeproof does not decode !!binary scalars; write the value as a plain string"
                    .to_string(),
            )
        }
        // Not resolvable (`resolvableTag`): the text stays a string.
        _ => return Ok(Node::Str(value.to_string())),
    }
    let (resolved, uint) = resolve_plain(value);
    let rtag = match (&resolved, uint) {
        (_, true) => "!!int",
        (Node::Null, _) => "!!null",
        (Node::Bool(_), _) => "!!bool",
        (Node::Int(_), _) => "!!int",
        (Node::Float(_), _) => "!!float",
        _ => "!!str",
    };
    if tag.is_empty() || tag == rtag {
        return Ok(resolved);
    }
    if let ("!!float", Node::Int(i), false) = (tag, &resolved, uint) {
        return Ok(Node::Float(*i as f64));
    }
    Err(format!(
        "cannot decode {rtag} `{value}` as a {tag} (go-yaml v2 resolve), so the kubelet \
         refuses the file"
    ))
}

/// go-yaml v2 `parseTimestamp`'s quick check: four digits and a dash.
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Whether go-yaml v2 resolves this plain scalar to a `uint64` (an integer above int64).
fn resolves_to_uint(value: &str) -> bool {
    resolve_plain(value).1
}

/// go-yaml v2 `resolve` for an untagged plain scalar (resolve.go, YAML 1.1 rules): the
/// first byte picks the candidates (`resolveTable`), the YAML 1.1 words come from
/// `resolveMap`, numbers lose every `_` and go through `strconv.ParseInt(s, 0, 64)`, then
/// `ParseUint`, then the float pattern. Sexagesimal (`1:20`) and timestamps stay strings.
/// The flag is true for an integer only `uint64` holds (returned as a float).
fn resolve_plain(value: &str) -> (Node, bool) {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return (Node::Null, false),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return (Node::Bool(true), false)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return (Node::Bool(false), false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return (Node::Float(f64::INFINITY), false)
        }
        "-.inf" | "-.Inf" | "-.INF" => return (Node::Float(f64::NEG_INFINITY), false),
        ".nan" | ".NaN" | ".NAN" => return (Node::Float(f64::NAN), false),
        _ => {}
    }
    let text = || (Node::Str(value.to_string()), false);
    let first = value.as_bytes()[0];
    if first == b'.' {
        // resolve.go: `strconv.ParseFloat(in, 64)` on the text as written.
        return match parse_go_float(value) {
            Some(f) => (Node::Float(f), false),
            None => text(),
        };
    }
    if !(first.is_ascii_digit() || first == b'-' || first == b'+') {
        return text();
    }
    let plain = value.replace('_', "");
    if let Ok(i) = go_parse_int(&plain, 0, 64) {
        return (Node::Int(i), false);
    }
    if let Ok(u) = go_parse_uint(&plain, 0, 64) {
        return (Node::Float(u as f64), true);
    }
    if is_yaml_float(&plain) {
        if let Some(f) = parse_go_float(&plain) {
            return (Node::Float(f), false);
        }
    }
    if let Some(bin) = plain.strip_prefix("0b") {
        if let Ok(i) = go_parse_int(bin, 2, 64) {
            return (Node::Int(i), false);
        }
        if let Ok(u) = go_parse_uint(bin, 2, 64) {
            return (Node::Float(u as f64), true);
        }
    } else if let Some(bin) = plain.strip_prefix("-0b") {
        if let Ok(i) = go_parse_int(&format!("-{bin}"), 2, 64) {
            return (Node::Int(i), false);
        }
    }
    text()
}

/// `strconv.ParseFloat(s, 64)` for the decimal forms go-yaml lets through; out of range
/// (`1e400`) is an error in Go, so the scalar stays a string.
fn parse_go_float(s: &str) -> Option<f64> {
    if s.contains('_')
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
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

/// Why Go's `strconv.ParseInt`/`ParseUint` refused a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoIntError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseUint(s, base, bits)` for base 0 (prefix decides) or 2..=36: with
/// base 0, `0x`/`0o`/`0b` (only when a digit may follow: three bytes or more) or a leading
/// `0` (octal); `_` is skipped and then checked by `underscoreOK`.
pub fn go_parse_uint(s: &str, base: u32, bits: u32) -> Result<u64, GoIntError> {
    if s.is_empty() {
        return Err(GoIntError::Syntax);
    }
    let base0 = base == 0;
    let b = s.as_bytes();
    let lower = |c: u8| c | (b'x' - b'X');
    let (base, digits) = if base0 {
        if b[0] == b'0' {
            match b.get(1).map(|&c| lower(c)) {
                Some(b'b') if b.len() >= 3 => (2, &b[2..]),
                Some(b'o') if b.len() >= 3 => (8, &b[2..]),
                Some(b'x') if b.len() >= 3 => (16, &b[2..]),
                _ => (8, &b[1..]),
            }
        } else {
            (10, b)
        }
    } else {
        (base, b)
    };
    let max: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut underscores = false;
    let mut n: u64 = 0;
    let mut range = false;
    for &c in digits {
        let d = match c {
            b'_' if base0 => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u32::from(c - b'0'),
            _ if lower(c).is_ascii_lowercase() => u32::from(lower(c) - b'a') + 10,
            _ => return Err(GoIntError::Syntax),
        };
        if d >= base {
            return Err(GoIntError::Syntax);
        }
        if range {
            continue;
        }
        match n
            .checked_mul(u64::from(base))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(v) if v <= max => n = v,
            _ => range = true,
        }
    }
    if underscores && !underscore_ok(s) {
        return Err(GoIntError::Syntax);
    }
    if range {
        return Err(GoIntError::Range);
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, base, bits)`: one optional sign, then `ParseUint`, then the
/// signed range of `bits`.
pub fn go_parse_int(s: &str, base: u32, bits: u32) -> Result<i64, GoIntError> {
    if s.is_empty() {
        return Err(GoIntError::Syntax);
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = match go_parse_uint(body, base, bits) {
        Ok(u) => u,
        Err(GoIntError::Range) => return Err(GoIntError::Range),
        Err(e) => return Err(e),
    };
    let cutoff: u64 = 1u64 << (bits.clamp(1, 64) - 1);
    if !neg && un >= cutoff {
        return Err(GoIntError::Range);
    }
    if neg && un > cutoff {
        return Err(GoIntError::Range);
    }
    Ok(if neg {
        (un as i64).wrapping_neg()
    } else {
        un as i64
    })
}

/// Go's `strconv.underscoreOK`: `_` only between digits, or between a base prefix and a
/// digit (so `1_000` and `0x_1f` are fine, `_1`, `1__0` and `1_` are not).
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let lower = |c: u8| c | (b'x' - b'X');
    let b = match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    };
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(lower(b[1]), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = lower(b[1]) == b'x';
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || hex && (b'a'..=b'f').contains(&lower(c)) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `strconv.ParseInt(s, 0, 64)`, as pflag's int flags and go-yaml call it.
pub fn parse_go_int(s: &str) -> Option<i64> {
    go_parse_int(s, 0, 64).ok()
}

/// go-yaml v2 `yaml_parser_process_directives` refuses any `%YAML` version but 1.1 ("found
/// incompatible YAML document"), so `%YAML 1.2` stops the kubelet.
fn check_yaml_directive(text: &str) -> Result<(), YamlError> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("%YAML") {
            let version = rest.split('#').next().unwrap_or("").trim();
            if version != "1.1" {
                return Err(YamlError::Refused {
                    line: i + 1,
                    col: 1,
                    message: format!(
                        "%YAML {version}: go-yaml v2 reads only YAML 1.1 documents (found \
                         incompatible YAML document), so the kubelet refuses the file"
                    ),
                });
            }
            continue;
        }
        if line.starts_with('%') {
            continue;
        }
        return Ok(());
    }
    Ok(())
}

/// go-yaml v2's reader (`yaml_parser_update_buffer`) refuses characters outside
/// `#x9 | #xA | #xD | [#x20-#x7E] | #x85 | [#xA0-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]`
/// with "control characters are not allowed".
fn check_printable(text: &str) -> Result<(), YamlError> {
    let mut line = 1;
    let mut col = 1;
    for c in text.chars() {
        let ok = matches!(c as u32,
            0x09 | 0x0A | 0x0D | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD
            | 0x10000..=0x10FFFF);
        if !ok {
            return Err(YamlError::Refused {
                line,
                col,
                message: format!(
                    "control character U+{:04X} is not allowed (go-yaml v2 reader), so the \
                     kubelet refuses the file",
                    c as u32
                ),
            });
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    Ok(())
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
            // The last entry wins, as in the Go map go-yaml builds.
            Node::Map(m) => &m.iter().rfind(|(k, _)| k == key).expect("key").1,
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
        assert_eq!(parse_go_int("1_0"), Some(10));
        assert_eq!(parse_go_int("0x_1"), Some(1));
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("--1"), None);
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
    }

    fn refused(text: &str) -> String {
        match parse(text) {
            Err(e @ YamlError::Refused { .. }) => e.to_string(),
            other => panic!("expected a refusal for {text:?}, got {other:?}"),
        }
    }

    /// go-yaml v2 `(*decoder).mapping` calls `(*decoder).merge` where `<<` stands, and
    /// `merge` sets every merged key with `setMapIndex`: a key written before the `<<` is
    /// overwritten by the merged mapping, one written after it wins.
    #[test]
    fn merge_key_overwrites_keys_before_it_like_go_yaml_v2() {
        let n = yaml("x: &x {readOnlyPort: 10255}\nc:\n  readOnlyPort: 0\n  <<: *x\n");
        assert_eq!(get(get(&n, "c"), "readOnlyPort"), &Node::Int(10255));
        let n = yaml("x: &x {readOnlyPort: 10255}\nc:\n  <<: *x\n  readOnlyPort: 0\n");
        assert_eq!(get(get(&n, "c"), "readOnlyPort"), &Node::Int(0));
    }

    /// go-yaml v2 `(*decoder).merge`, sequence case: "Step backwards as earlier nodes take
    /// precedence"; a non-mapping item is `failWantMap`.
    #[test]
    fn merge_key_sequence_earlier_maps_win_and_non_maps_are_refused() {
        let n = yaml("a: &a {p: 1}\nb: &b {p: 2, q: 3}\nc:\n  <<: [*a, *b]\n");
        let c = get(&n, "c");
        assert_eq!(get(c, "p"), &Node::Int(1));
        assert_eq!(get(c, "q"), &Node::Int(3));
        refused("a: &a 1\nc:\n  <<: *a\n");
        refused("c:\n  <<: [{p: 1}, 2]\n");
    }

    /// go-yaml v2 `isMerge`: `n.value == "<<" && (n.implicit || n.tag == "!!merge")`; a
    /// quoted `"<<"` is an ordinary key.
    #[test]
    fn merge_key_tagged_merges_and_quoted_does_not() {
        let n = yaml("c:\n  p: 0\n  !!merge <<: {p: 1}\n");
        assert_eq!(get(get(&n, "c"), "p"), &Node::Int(1));
        let n = yaml("c:\n  p: 0\n  \"<<\": {p: 1}\n");
        assert_eq!(get(get(&n, "c"), "p"), &Node::Int(0));
        assert!(matches!(get(get(&n, "c"), "<<"), Node::Map(_)));
    }

    /// go-yaml v2 `(*decoder).scalar` + `resolve`: a quoted scalar with a core tag is
    /// resolved as that type (`!!int "10255"` is 10255, `!!bool "true"` is true); `!!str`
    /// keeps text; `!!float` accepts an integer.
    #[test]
    fn core_tags_on_quoted_scalars_resolve_like_go_yaml_v2() {
        let n = yaml(
            "a: !!int \"10255\"\nb: !!bool \"true\"\nc: !!str 10255\nd: !!float \"1\"\n\
             e: !!null \"\"\nf: !!bool yes\ng: !<tag:yaml.org,2002:int> '0x10'\n",
        );
        assert_eq!(get(&n, "a"), &Node::Int(10255));
        assert_eq!(get(&n, "b"), &Node::Bool(true));
        assert_eq!(get(&n, "c"), &Node::Str("10255".into()));
        assert_eq!(get(&n, "d"), &Node::Float(1.0));
        assert_eq!(get(&n, "e"), &Node::Null);
        assert_eq!(get(&n, "f"), &Node::Bool(true));
        assert_eq!(get(&n, "g"), &Node::Int(16));
    }

    /// go-yaml v2 `resolve`'s deferred check: "cannot decode !!str `abc` as a !!int".
    #[test]
    fn core_tag_that_does_not_fit_is_refused() {
        refused("a: !!int abc\n");
        refused("a: !!bool \"1\"\n");
        refused("a: !!int 1.5\n");
        refused("a: !!null x\n");
    }

    /// go-yaml v2 `resolvableTag`: any other tag (`!foo`, `!`, `!!map` on a scalar) leaves
    /// the text a string, so `!port 10255` is the string "10255".
    #[test]
    fn unknown_tags_leave_the_text_a_string() {
        let n = yaml("a: !port 10255\nb: ! true\nc: !!map 1\n");
        assert_eq!(get(&n, "a"), &Node::Str("10255".into()));
        assert_eq!(get(&n, "b"), &Node::Str("true".into()));
        assert_eq!(get(&n, "c"), &Node::Str("1".into()));
    }

    /// sigs.k8s.io/yaml `convertToJSONableObject`: int, float and bool keys become strings
    /// (`1: x` is "1", `true: x` and `y: x` are "true", `1.5: x` is "1.5" by
    /// `FormatFloat(f, 'g', -1, 32)`); a null key or one only uint64 holds is an
    /// "unsupported map key".
    #[test]
    fn non_string_keys_convert_like_sigs_k8s_yaml() {
        let n = yaml("1: a\ntrue: b\n1.5: c\n0x10: d\n1e6: e\n.inf: f\n");
        assert_eq!(get(&n, "1"), &Node::Str("a".into()));
        assert_eq!(get(&n, "true"), &Node::Str("b".into()));
        assert_eq!(get(&n, "1.5"), &Node::Str("c".into()));
        assert_eq!(get(&n, "16"), &Node::Str("d".into()));
        assert_eq!(get(&n, "1e+06"), &Node::Str("e".into()));
        assert_eq!(get(&n, ".inf"), &Node::Str("f".into()));
        refused("null: x\n");
        refused("~: x\n");
        refused("? \n: x\n");
        refused("18446744073709551615: x\n");
    }

    /// sigs.k8s.io/yaml `yamlToJSONTarget` ends in `json.Marshal`, which refuses NaN and
    /// infinities ("json: unsupported value"), wherever they stand.
    #[test]
    fn nan_and_infinity_values_are_refused() {
        refused("a: .nan\n");
        refused("unknownField: [-.inf]\n");
        // ParseFloat's range error keeps an overflowing float a string.
        assert_eq!(get(&yaml("a: 1e400\n"), "a"), &Node::Str("1e400".into()));
    }

    /// go-yaml v2 `resolve` ('D'/'S' hint): every `_` is removed, then
    /// `strconv.ParseInt(plain, 0, 64)`, then `ParseUint`, then the float pattern; base-60
    /// (`1:20`) is "purposefully unsupported" and timestamps stay text.
    #[test]
    fn yaml_1_1_numbers_resolve_like_go_yaml_v2() {
        let n = yaml(
            "a: 1:20\nb: 0o17\nc: +0x10\nd: 1__0\ne: 0b+101\nf: 2001-12-14\ng: 0x\n\
             h: 1e3\ni: .5\nj: 9223372036854775808\nk: 08\nl: -0b11\n",
        );
        assert_eq!(get(&n, "a"), &Node::Str("1:20".into()));
        assert_eq!(get(&n, "b"), &Node::Int(15));
        assert_eq!(get(&n, "c"), &Node::Int(16));
        assert_eq!(get(&n, "d"), &Node::Int(10));
        assert_eq!(get(&n, "e"), &Node::Int(5));
        assert_eq!(get(&n, "f"), &Node::Str("2001-12-14".into()));
        assert_eq!(get(&n, "g"), &Node::Str("0x".into()));
        assert_eq!(get(&n, "h"), &Node::Float(1000.0));
        assert_eq!(get(&n, "i"), &Node::Float(0.5));
        assert_eq!(get(&n, "j"), &Node::Float(9223372036854775808.0));
        // `08` is not octal, but matches the float pattern: 8.0.
        assert_eq!(get(&n, "k"), &Node::Float(8.0));
        assert_eq!(get(&n, "l"), &Node::Int(-3));
        let n = yaml("m: +.5\nr: 1.\no: -1E2\np: 1e\nq: 0x1p4\n");
        assert_eq!(get(&n, "m"), &Node::Float(0.5));
        assert_eq!(get(&n, "r"), &Node::Float(1.0));
        assert_eq!(get(&n, "o"), &Node::Float(-100.0));
        assert_eq!(get(&n, "p"), &Node::Str("1e".into()));
        // A hex float is not YAML 1.1's float pattern.
        assert_eq!(get(&n, "q"), &Node::Str("0x1p4".into()));
    }

    /// go-yaml v2's reader skips a UTF-8 byte-order mark (`yaml_parser_determine_encoding`).
    #[test]
    fn byte_order_mark_is_skipped() {
        let n = yaml("\u{feff}readOnlyPort: 10255\n");
        assert_eq!(get(&n, "readOnlyPort"), &Node::Int(10255));
    }

    /// go-yaml v2 `(*decoder).unmarshal` with `allowedAliasRatio`: a billion-laughs file is
    /// refused ("document contains excessive aliasing") before its expansion is built.
    #[test]
    fn excessive_aliasing_is_refused_like_go_yaml_v2() {
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*l{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{items}]\n"));
        }
        let started = std::time::Instant::now();
        let err = refused(&text);
        assert!(err.contains("excessive aliasing"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Ordinary reuse stays well inside the budget.
        let n = yaml("a: &a {p: 1, q: 2}\nb: *a\nc: *a\nd: [*a, *a]\n");
        assert_eq!(get(get(&n, "c"), "q"), &Node::Int(2));
    }

    /// go-yaml v2 `yaml_parser_process_directives`: only `%YAML 1.1`.
    #[test]
    fn yaml_directive_other_than_1_1_is_refused() {
        refused("%YAML 1.2\n---\na: 1\n");
        assert_eq!(get(&yaml("%YAML 1.1\n---\na: 1\n"), "a"), &Node::Int(1));
        // Not a directive once the document has begun.
        assert_eq!(
            get(&yaml("a: 1\nb: \"%YAML 1.2\"\n"), "b"),
            &Node::Str("%YAML 1.2".into())
        );
    }

    /// go-yaml v2 `yaml_parser_update_buffer`: "control characters are not allowed".
    #[test]
    fn control_characters_are_refused() {
        refused("a: b\u{1}\n");
        refused("a: \"\u{7f}\"\n");
    }

    /// Go's `strconv.ParseInt(s, 0, bits)` (atoi.go, with `underscoreOK`): prefixes need a
    /// digit after them, `_` only between digits or after a prefix, the range is per size.
    #[test]
    fn go_parse_int_follows_strconv() {
        let ok = |s: &str, bits| go_parse_int(s, 0, bits);
        assert_eq!(ok("1_000", 64), Ok(1000));
        assert_eq!(ok("0x_1f", 64), Ok(31));
        assert_eq!(ok("0_7", 64), Ok(7));
        assert_eq!(ok("0B101", 64), Ok(5));
        assert_eq!(ok("+0o17", 64), Ok(15));
        assert_eq!(ok("-0x80000000", 32), Ok(-2147483648));
        assert_eq!(ok("0x80000000", 32), Err(GoIntError::Range));
        assert_eq!(ok("4294977551", 32), Err(GoIntError::Range));
        assert_eq!(ok("2147483647", 32), Ok(i64::from(i32::MAX)));
        assert_eq!(ok("99999999999999999999", 64), Err(GoIntError::Range));
        for bad in [
            "_1", "1_", "1__0", "0x", "0b", "0x1_", "0_x1", "08", "0o8", "+-1", "1 ", " 1", "0x1g",
            "１",
        ] {
            assert_eq!(ok(bad, 64), Err(GoIntError::Syntax), "{bad:?}");
        }
    }
}
