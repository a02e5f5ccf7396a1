//! The kubelet's command line, read with pflag's rules.
//!
//! Scanners that match flags by substring get these wrong: `--anonymous-auth false` does
//! not set anything (a boolean never takes the next token, and the stray `false` would stop
//! the kubelet), `--read-only-port=0x0` is 0, `--feature_gates` is `--feature-gates`, and the
//! last `--authorization-mode` wins. This module only splits and types the arguments; the
//! effective computation decides what they override.

use nodeproof_proto::{Source, Warning};

use crate::schema::{self, Flag, FlagKind};

/// One flag as the kubelet parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFlag {
    pub flag: &'static Flag,
    /// The raw value pflag hands to the flag's `Set` (`"true"` for a bare boolean).
    pub value: String,
    /// The flag as written, for provenance: `--read-only-port=0` or `--read-only-port 0`.
    pub written: String,
    /// The index, in the arguments parsed, of the argument the flag starts at; it finds the
    /// flag's [`ArgOrigin`].
    pub arg: usize,
}

/// Where one argument of the kubelet's command line came from, when it is not the kubelet
/// process's own command line: a kubelet that runs inside another process (k3s, microk8s'
/// kubelite) gets arguments that a distribution assembled ([`crate::sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgOrigin {
    /// Written by the operator in a file or on another process's command line, named here
    /// (`/etc/rancher/k3s/config.yaml (kubelet-arg)`).
    Written { place: String },
    /// Passed by the distribution itself; nodeproof computed it from the distribution's
    /// code. `by` names the distribution and how to confirm it.
    DistributionDefault { by: String },
}

/// A flag whose value the kubelet would refuse (`--read-only-port=abc`).
#[derive(Debug, Clone, PartialEq)]
pub struct BadFlag {
    pub flag: &'static Flag,
    pub written: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLine {
    /// Known flags with well-formed values, in command-line order.
    pub flags: Vec<ParsedFlag>,
    /// Known flags whose values do not parse.
    pub bad: Vec<BadFlag>,
    /// Everything a kubelet would refuse to start with (unknown flags, positional
    /// arguments), plus deprecation notices.
    pub warnings: Vec<Warning>,
    /// Where each argument came from, by index, when the arguments were assembled rather
    /// than read from the kubelet's own command line; empty (or shorter than the
    /// arguments) means the rest are the process's own command line.
    pub origins: Vec<ArgOrigin>,
}

impl CommandLine {
    /// All values of one flag, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ParsedFlag> + 'a {
        self.flags.iter().filter(move |f| f.flag.name == name)
    }

    /// The last value of a scalar flag, which is the one that counts.
    pub fn last(&self, name: &str) -> Option<&ParsedFlag> {
        self.flags.iter().rev().find(|f| f.flag.name == name)
    }

    pub fn is_bad(&self, name: &str) -> Option<&BadFlag> {
        self.bad.iter().rev().find(|b| b.flag.name == name)
    }

    /// The source and origin of a setting made by `flag`: [`Source::Flag`] and the flag as
    /// written, unless [`origins`](Self::origins) says the argument came from elsewhere.
    pub fn source_of(&self, flag: &ParsedFlag) -> (Source, String) {
        match self.origins.get(flag.arg) {
            None => (Source::Flag, flag.written.clone()),
            Some(ArgOrigin::Written { place }) => {
                (Source::Flag, format!("{} (in {place})", flag.written))
            }
            Some(ArgOrigin::DistributionDefault { by }) => (
                Source::DistributionDefault,
                format!("{} ({by})", flag.written),
            ),
        }
    }
}

const REFUSED: &str = "a kubelet refuses to start with this, so either this process is not \
                       the kubelet nodeproof thinks it is, or its version knows flags that \
                       nodeproof does not";

/// Parses the kubelet's arguments (without `argv[0]`) the way pflag does with the kubelet's
/// flag set and its `_`-to-`-` normalisation.
pub fn parse_cmdline(args: &[String]) -> CommandLine {
    let mut out = CommandLine::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let at = i;
        i += 1;
        if arg == "--" {
            for rest in &args[i..] {
                out.warnings.push(positional(rest));
            }
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            out.warnings.push(positional(arg));
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let normalized = name.replace('_', "-");
            let Some(flag) = schema::lookup_flag(&normalized) else {
                out.warnings.push(Warning {
                    message: format!("unknown flag --{name}: {REFUSED}"),
                    file: None,
                    field: Some(format!("--{name}")),
                });
                continue;
            };
            take_value(&mut out, flag, at, arg, inline, args, &mut i);
        } else {
            // Shorthands: `-v=3`, `-v 3`, `-v3`, `-h`; several booleans may be combined.
            for (pos, c) in arg[1..].char_indices() {
                let Some(flag) = schema::lookup_shorthand(c) else {
                    out.warnings.push(Warning {
                        message: format!(
                            "unknown shorthand flag '{c}' in {arg}: {REFUSED} (a long flag \
                             needs two dashes)"
                        ),
                        file: None,
                        field: Some(arg.clone()),
                    });
                    break;
                };
                let rest = &arg[1 + pos + c.len_utf8()..];
                if let Some(v) = rest.strip_prefix('=') {
                    take_value(&mut out, flag, at, arg, Some(v), args, &mut i);
                    break;
                }
                if flag.kind == FlagKind::Bool {
                    take_value(&mut out, flag, at, arg, None, args, &mut i);
                    continue;
                }
                if !rest.is_empty() {
                    take_value(&mut out, flag, at, arg, Some(rest), args, &mut i);
                } else {
                    take_value(&mut out, flag, at, arg, None, args, &mut i);
                }
                break;
            }
        }
    }
    out
}

fn positional(arg: &str) -> Warning {
    let hint = if matches!(
        arg.to_ascii_lowercase().as_str(),
        "true" | "false" | "1" | "0" | "t" | "f"
    ) {
        " (a boolean flag never takes the next argument: write --flag=false)"
    } else {
        ""
    };
    Warning {
        message: format!(
            "stray argument {arg:?} on the kubelet's command line{hint}: a kubelet refuses \
             to start with positional arguments, so nodeproof may be misreading this command \
             line; the flag before it did not take it as a value"
        ),
        file: None,
        field: None,
    }
}

fn take_value(
    out: &mut CommandLine,
    flag: &'static Flag,
    at: usize,
    arg: &str,
    inline: Option<&str>,
    args: &[String],
    i: &mut usize,
) {
    let (value, written) = match inline {
        Some(v) => (v.to_string(), arg.to_string()),
        None if flag.kind == FlagKind::Bool => ("true".to_string(), arg.to_string()),
        None => match args.get(*i) {
            Some(next) => {
                *i += 1;
                (next.clone(), format!("{arg} {next}"))
            }
            None => {
                out.bad.push(BadFlag {
                    flag,
                    written: arg.to_string(),
                    reason: "the flag needs an argument and none follows".to_string(),
                });
                out.warnings.push(Warning {
                    message: format!("flag {arg} needs an argument: {REFUSED}"),
                    file: None,
                    field: Some(format!("--{}", flag.name)),
                });
                return;
            }
        },
    };
    if flag.deprecated.is_some() {
        note_deprecated(out, flag);
    }
    match validate(flag.kind, &value) {
        Ok(()) => out.flags.push(ParsedFlag {
            flag,
            value,
            written,
            arg: at,
        }),
        Err(reason) => {
            out.warnings.push(Warning {
                message: format!("invalid value in {written}: {reason}; {REFUSED}"),
                file: None,
                field: Some(format!("--{}", flag.name)),
            });
            out.bad.push(BadFlag {
                flag,
                written,
                reason,
            });
        }
    }
}

/// One warning per deprecation message, listing every flag it applies to: the kubelet
/// marks every config-backed flag deprecated, and a line each would bury the rest.
fn note_deprecated(out: &mut CommandLine, flag: &'static Flag) {
    let Some(note) = flag.deprecated else { return };
    let name = format!("--{}", flag.name);
    let prefix = "deprecated flags (";
    let suffix = format!("): {note}");
    if let Some(w) = out
        .warnings
        .iter_mut()
        .find(|w| w.message.starts_with(prefix) && w.message.ends_with(&suffix))
    {
        let listed = &w.message[prefix.len()..w.message.len() - suffix.len()];
        if !listed.split(' ').any(|n| n == name) {
            w.message = format!("{prefix}{listed} {name}{suffix}");
        }
        return;
    }
    out.warnings.push(Warning {
        message: format!("{prefix}{name}{suffix}"),
        file: None,
        field: None,
    });
}

fn validate(kind: FlagKind, value: &str) -> Result<(), String> {
    match kind {
        FlagKind::Bool => parse_go_bool(value).map(drop),
        FlagKind::Int32 => parse_int_bits(value, 32).map(drop),
        FlagKind::Int64 => parse_int_bits(value, 64).map(drop),
        FlagKind::Float64 => value
            .parse::<f64>()
            .map(drop)
            .map_err(|_| format!("{value:?} is not a number")),
        FlagKind::Duration => parse_go_duration(value).map(drop),
        FlagKind::BoolMap => parse_bool_map(value).map(drop),
        FlagKind::String | FlagKind::StringList | FlagKind::StringMap | FlagKind::Other => Ok(()),
        #[allow(unreachable_patterns)]
        _ => Ok(()),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Go's `strconv.ParseInt(s, 0, bits)`, as pflag's `int32Value.Set` and `int64Value.Set`
/// call it: every Go integer literal form (`0x`, `0o`, `0b`, a leading `0` for octal, `_`
/// between digits), with the range of the flag's own size, so `--read-only-port=4294977551`
/// is out of range for an int32 flag rather than wrapping to 10255.
pub fn parse_int_bits(s: &str, bits: u32) -> Result<i64, String> {
    crate::yaml::go_parse_int(s, 0, bits).map_err(|e| match e {
        crate::yaml::GoIntError::Syntax => format!("{s:?} is not an integer"),
        crate::yaml::GoIntError::Range => {
            format!("{s} is out of range for a {bits}-bit integer")
        }
    })
}

/// `--feature-gates A=true,B=false` (k8s.io/component-base `MapStringBool.Set`): pairs
/// separated by commas, spaces around them trimmed, values parsed with `ParseBool`.
pub fn parse_bool_map(s: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("malformed pair {pair:?}, expect KEY=true|false"));
        };
        let v = parse_go_bool(v.trim()).map_err(|e| format!("feature gate {}: {e}", k.trim()))?;
        out.push((k.trim().to_string(), v));
    }
    Ok(out)
}

/// pflag's string slice: the value is one CSV record (quotes allowed, no trimming).
pub fn parse_string_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if cur.is_empty() => quoted = true,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Go's `time.ParseDuration` (time/format.go), in nanoseconds: an optional sign, then
/// one or more `[0-9]*(\.[0-9]*)?unit` with at least one digit each (`.5s` and `5.s` are
/// fine, `.s` is not), units ns, us, µs (U+00B5), μs (U+03BC), ms, s, m, h; a bare `0`
/// needs no unit; `leadingInt` overflow and a total beyond 1<<63 are errors. The fraction
/// goes through float64 as in Go (`v += uint64(float64(f) * (float64(unit) / scale))`),
/// so results agree to the nanosecond.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let err = || format!("{s:?} is not a duration (Go syntax, such as 4h0m0s, 30s or 500ms)");
    const LIMIT: u64 = 1 << 63;
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut d: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(err());
        }
        // leadingInt
        let int_end = b
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(b.len());
        let mut v: u64 = 0;
        for &c in &b[..int_end] {
            if v > LIMIT / 10 {
                return Err(err());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(err());
            }
        }
        let pre = int_end > 0;
        rest = &rest[int_end..];
        // leadingFraction: digits past overflow are ignored.
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(r) = rest.strip_prefix('.') {
            let fb = r.as_bytes();
            let end = fb
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(fb.len());
            let mut overflow = false;
            for &c in &fb[..end] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = end > 0;
            rest = &r[end..];
        }
        if !pre && !post {
            return Err(err());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_end == 0 {
            return Err(format!("{s:?} is not a duration: missing unit"));
        }
        let unit: u64 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            u => return Err(format!("{s:?} is not a duration: unknown unit {u:?}")),
        };
        rest = &rest[unit_end..];
        if v > LIMIT / unit {
            return Err(err());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(err());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(err());
        }
    }
    if neg {
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(err());
    }
    Ok(d as i64)
}

/// Go's `time.Duration.String()`: `4h0m0s`, `2m0s`, `1.5s`, `100ms`, `0s`.
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fmt_frac(u, div));
    }
    let secs_total = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = secs_total % 60;
    let secs = fmt_frac(s * 1_000_000_000 + frac, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

fn fmt_frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let frac = v % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    /// The warnings other than the kubelet's own deprecation notices.
    fn problems(c: &CommandLine) -> Vec<&Warning> {
        c.warnings
            .iter()
            .filter(|w| !w.message.starts_with("deprecated flags ("))
            .collect()
    }

    #[test]
    fn equals_and_space_forms() {
        let c = parse_cmdline(&args(&[
            "--read-only-port=0",
            "--authorization-mode",
            "Webhook",
        ]));
        assert!(problems(&c).is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.last("read-only-port").map(|f| f.value.as_str()),
            Some("0")
        );
        let mode = c.last("authorization-mode").expect("mode");
        assert_eq!(mode.value, "Webhook");
        assert_eq!(mode.written, "--authorization-mode Webhook");
    }

    /// systemd passes `--register-with-taints "${NODE_TAINTS}"` with an empty variable as
    /// one empty argument (Bottlerocket); pflag takes it as the flag's value. An empty
    /// argument where a flag is expected is a positional, as in pflag.
    #[test]
    fn an_empty_argument_is_a_value() {
        let c = parse_cmdline(&args(&[
            "--register-with-taints",
            "",
            "--pod-infra-container-image",
            "localhost/kubernetes/pause:0.1.0",
        ]));
        assert!(problems(&c).is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.last("register-with-taints").map(|f| f.value.as_str()),
            Some("")
        );
        assert_eq!(
            c.last("pod-infra-container-image")
                .map(|f| f.value.as_str()),
            Some("localhost/kubernetes/pause:0.1.0")
        );
        let c = parse_cmdline(&args(&["--read-only-port=0", ""]));
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("stray argument \"\""), "{p:?}");
    }

    #[test]
    fn bare_boolean_never_takes_the_next_token() {
        let c = parse_cmdline(&args(&["--anonymous-auth", "false", "--read-only-port=0"]));
        assert_eq!(
            c.last("anonymous-auth").map(|f| f.value.as_str()),
            Some("true")
        );
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("stray argument \"false\""));
        assert!(p[0].message.contains("--flag=false"));
        assert_eq!(
            c.last("read-only-port").map(|f| f.value.as_str()),
            Some("0")
        );
    }

    #[test]
    fn underscores_normalise_and_last_scalar_wins() {
        let c = parse_cmdline(&args(&["--read_only_port=10255", "--read-only-port=0"]));
        assert!(problems(&c).is_empty());
        assert_eq!(c.values("read-only-port").count(), 2);
        assert_eq!(
            c.last("read-only-port").map(|f| f.value.as_str()),
            Some("0")
        );
    }

    #[test]
    fn unknown_flags_and_single_dash_long_names_warn() {
        let c = parse_cmdline(&args(&["--no-such-flag=1", "-config=/x"]));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0]
            .message
            .contains("unknown flag --no-such-flag"));
        assert!(c.warnings[1].message.contains("two dashes"));
    }

    #[test]
    fn shorthand_verbosity() {
        let c = parse_cmdline(&args(&["-v=2", "-v", "3", "-v4"]));
        assert!(problems(&c).is_empty(), "{:?}", c.warnings);
        let vs: Vec<_> = c.values("v").map(|f| f.value.clone()).collect();
        assert_eq!(vs, ["2", "3", "4"]);
    }

    #[test]
    fn invalid_values_are_bad_not_silently_used() {
        let c = parse_cmdline(&args(&["--read-only-port=abc", "--anonymous-auth=nope"]));
        assert_eq!(c.bad.len(), 2);
        assert!(c.last("read-only-port").is_none());
        assert!(c.is_bad("anonymous-auth").is_some());
    }

    #[test]
    fn missing_argument_at_the_end() {
        let c = parse_cmdline(&args(&["--config"]));
        assert!(c.is_bad("config").is_some());
        assert!(c.warnings[0].message.contains("needs an argument"));
    }

    #[test]
    fn double_dash_ends_flags() {
        let c = parse_cmdline(&args(&["--", "--read-only-port=0"]));
        assert!(c.last("read-only-port").is_none());
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn deprecations_are_one_warning_per_message() {
        let c = parse_cmdline(&args(&[
            "--read-only-port=0",
            "--anonymous-auth=false",
            "--read-only-port=0",
        ]));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let m = &c.warnings[0].message;
        assert!(m.contains("--read-only-port --anonymous-auth)"), "{m}");
    }

    #[test]
    fn go_values() {
        assert_eq!(parse_int_bits("0x10", 32), Ok(16));
        assert_eq!(parse_int_bits("010", 32), Ok(8));
        assert!(parse_int_bits("2147483648", 32).is_err());
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert!(parse_go_bool("yes").is_err());
        assert_eq!(
            parse_bool_map(" A=true , B=false"),
            Ok(vec![("A".into(), true), ("B".into(), false)])
        );
        assert!(parse_bool_map("A").is_err());
        assert_eq!(parse_string_list("a,b"), ["a", "b"]);
        assert_eq!(parse_string_list("\"a,b\",c"), ["a,b", "c"]);
    }

    #[test]
    fn durations_round_trip_like_go() {
        for (text, nanos, shown) in [
            ("4h", 4 * 3_600_000_000_000i64, "4h0m0s"),
            ("0", 0, "0s"),
            ("0s", 0, "0s"),
            ("5m", 300_000_000_000, "5m0s"),
            ("1.5s", 1_500_000_000, "1.5s"),
            ("100ms", 100_000_000, "100ms"),
            ("1h30m", 5_400_000_000_000, "1h30m0s"),
            ("-2s", -2_000_000_000, "-2s"),
            ("2m0.25s", 120_250_000_000, "2m0.25s"),
        ] {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
            assert_eq!(format_go_duration(nanos), shown, "{text}");
        }
        for bad in ["", "4", "h", "4x", "1..2s", "-"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    /// Go's `strconv.ParseBool` (strconv/atob.go): exactly 1, t, T, TRUE, true, True and
    /// 0, f, F, FALSE, false, False; YAML's yes/on and mixed case like `tRUE` are errors.
    #[test]
    fn parse_bool_accepts_exactly_strconv_forms() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false), "{f}");
        }
        for bad in ["yes", "on", "tRUE", "", " true", "2", "y"] {
            assert!(parse_go_bool(bad).is_err(), "{bad:?}");
        }
    }

    /// pflag `int32Value.Set` is `strconv.ParseInt(s, 0, 32)`: every Go literal form, and
    /// the int32 range (a value that would wrap to 10255 in 32 bits is an error).
    #[test]
    fn int32_flags_parse_like_strconv_parse_int_bits_32() {
        for (text, v) in [
            ("1_0255", 10255),
            ("0x2_80F", 10255),
            ("0o24017", 10255),
            ("0b10100000001111", 10255),
            ("024017", 10255),
            ("+10255", 10255),
            ("-0", 0),
        ] {
            assert_eq!(parse_int_bits(text, 32), Ok(v), "{text}");
        }
        for bad in [
            "4294977551",
            "0x1_0000_280F",
            "10255.0",
            "1e4",
            "_10255",
            "10255_",
            "0x",
            " 1",
        ] {
            assert!(parse_int_bits(bad, 32).is_err(), "{bad}");
        }
        assert_eq!(parse_int_bits("4294977551", 64), Ok(4294977551));
    }

    /// Go's `time.ParseDuration` edge cases (time/format.go): sign, bare `0`, fractions
    /// without an integer part, the µ and μ spellings, `leadingInt` overflow, and
    /// a total beyond int64.
    #[test]
    fn parse_duration_edge_cases_follow_time_parse_duration() {
        for (text, nanos) in [
            ("+0", 0),
            ("-0", 0),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("1µs", 1_000),
            ("1μs", 1_000),
            ("1h1h", 7_200_000_000_000),
            ("0.000000001s", 1),
            ("0.1234567891s", 123_456_789),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ] {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for bad in [
            ".s",
            "1",
            "+",
            "1S",
            "1 s",
            "1h 1m",
            "2562047h47m16.854775808s",
            "9223372036854775808ns",
            "99999999999999999999s",
            "1d",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
