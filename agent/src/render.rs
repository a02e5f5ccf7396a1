//! The human-readable report, laid out the way kube-bench prints one, so that people who
//! know kube-bench can read ours at a glance: one `[PASS]`/`[FAIL]`/`[WARN]`/`[ERROR]` line
//! per check, then what to do about each one that did not pass, then a summary. Each line
//! also shows the check's severity, so a reader sees which failure to fix first and what
//! `--fail-on` will make of it.
//!
//! Why it escapes data: paths, values and warnings come from files on the node, which an
//! attacker may write. Every such string is reduced to printable ASCII before it reaches a
//! terminal, so a config value cannot smuggle in escape sequences; the only escapes in the
//! output are the colours we add, and only when asked to.

use std::fmt::Write;

use nodeproof_proto::{CheckResult, Report, Status};

const RESET: &str = "\x1b[0m";

/// The whole report as text; `color` adds ANSI colours to the status tags.
pub fn text(report: &Report, color: bool) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report, color);
    out
}

fn write_report(out: &mut String, report: &Report, color: bool) -> std::fmt::Result {
    let k = &report.kubelet;
    let probed = report.checks.iter().any(|c| cis_group(&c.cis) == "P");
    writeln!(
        out,
        "== nodeproof: kubelet CIS Kubernetes Benchmark v1.12, sections 4.1, 4.2 and the API server's kubelet client{} ==",
        if probed { ", and live probes" } else { "" }
    )?;
    writeln!(out, "node:        {}", opt(&report.node.hostname))?;
    writeln!(
        out,
        "scanned:     {} by nodeproof-agent {}",
        clean(&report.scan_time),
        clean(&report.agent_version)
    )?;
    writeln!(out, "kubelet:     pid {} ({})", k.pid, opt(&k.exe))?;
    if let Some(embedded) = &k.embedded_in {
        writeln!(out, "embedded in: {}", clean(embedded))?;
        writeln!(
            out,
            "             the kubelet runs inside this process; its arguments were \
             reconstructed ({}), and values marked distribution-default only its log confirms",
            clean(k.distribution.as_deref().unwrap_or("distribution"))
        )?;
    }
    writeln!(out, "config file: {}", opt(&k.config_file))?;
    writeln!(out, "config dir:  {}", opt(&k.config_dir))?;
    writeln!(out)?;

    // A kube-bench-style `[INFO] 4.2 Kubelet` heading wherever the CIS group changes.
    let mut group = String::new();
    for c in &report.checks {
        let this = cis_group(&c.cis);
        if this != group {
            writeln!(
                out,
                "{} {}",
                paint("[INFO]", None, color),
                group_heading(this)
            )?;
            group = this.to_string();
        }
        writeln!(out, "{}", line(c, color))?;
    }

    writeln!(out)?;

    let open: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass)
        .collect();
    if !open.is_empty() {
        writeln!(out, "== Remediations ==")?;
        for c in open {
            writeln!(out, "{}", line(c, color))?;
            field(out, "id", &c.id)?;
            // The reason comes from our own catalogue, never from the report.
            let severity = match nodeproof_proto::check_meta(&c.id) {
                Some(meta) => format!("{} ({})", c.severity, meta.why),
                None => c.severity.to_string(),
            };
            field(out, "severity", &severity)?;
            field(out, "expected", &c.expected)?;
            field(out, "actual", &c.actual)?;
            let source = match (c.source, &c.origin) {
                (Some(s), Some(o)) => format!("{s} ({o})"),
                (Some(s), None) => s.to_string(),
                (None, Some(o)) => o.clone(),
                (None, None) => "n/a".to_string(),
            };
            field(out, "source", &source)?;
            if !c.note.is_empty() {
                field(out, "note", &c.note)?;
            }
            field(out, "flag", &c.remediation.flag)?;
            // The config form is YAML to merge, so its lines stay lines.
            for (i, line) in c.remediation.config.lines().enumerate() {
                field(out, if i == 0 { "config" } else { "" }, line)?;
            }
            writeln!(out)?;
        }
    }

    if !report.warnings.is_empty() {
        writeln!(out, "== Warnings ==")?;
        for w in &report.warnings {
            let mut line = format!("- {}", clean(&w.message));
            if let Some(file) = &w.file {
                line.push_str(&format!(" (file: {})", clean(file)));
            }
            if let Some(field) = &w.field {
                line.push_str(&format!(" (field: {})", clean(field)));
            }
            writeln!(out, "{line}")?;
        }
        writeln!(out)?;
    }

    let s = &report.summary;
    writeln!(
        out,
        "== Summary: {} pass, {} fail, {} warn, {} error ==",
        s.pass, s.fail, s.warn, s.error
    )
}

/// `4.2` of `4.2.12`: the CIS group a check belongs to; `P` for the live probes (`P.n`).
fn cis_group(cis: &str) -> &str {
    if cis.starts_with("P.") {
        return "P";
    }
    match cis.match_indices('.').nth(1) {
        Some((i, _)) => &cis[..i],
        None => cis,
    }
}

/// The group's number and CIS title, as kube-bench prints it.
fn group_heading(group: &str) -> String {
    let title = match group {
        "1.1" => " Control Plane Node Configuration Files",
        "1.2" => " API Server",
        "4.1" => " Worker Node Configuration Files",
        "4.2" => " Kubelet",
        // Padded to the width of `4.2 `, so the titles line up.
        "P" => "   Live probes of the kubelet's ports",
        _ => "",
    };
    format!("{}{title}", clean(group))
}

/// `[FAIL] 4.2.4  critical Verify that ... (Manual)`: status, CIS number and severity in
/// aligned columns, then the title.
fn line(c: &CheckResult, color: bool) -> String {
    format!(
        "{} {:<6} {:<8} {}",
        tag(c.status, color),
        clean(&c.cis),
        c.severity.as_str(),
        heading(c)
    )
}

/// The check's title with kube-bench's "(Automated)"/"(Manual)" suffix.
fn heading(c: &CheckResult) -> String {
    let kind = if c.scored { "Automated" } else { "Manual" };
    format!("{} ({kind})", clean(&c.title))
}

/// `    name:     value`, the value on one line; an empty name continues the field above.
fn field(out: &mut String, name: &str, value: &str) -> std::fmt::Result {
    let label = if name.is_empty() {
        String::new()
    } else {
        format!("    {name}:")
    };
    writeln!(out, "{label:<14}{}", clean(value))
}

fn tag(status: Status, color: bool) -> String {
    let (text, code) = match status {
        Status::Pass => ("[PASS]", "\x1b[32m"),
        Status::Fail => ("[FAIL]", "\x1b[31m"),
        Status::Warn => ("[WARN]", "\x1b[33m"),
        Status::Error => ("[ERROR]", "\x1b[35m"),
    };
    paint(text, Some(code), color)
}

/// kube-bench paints `[INFO]` blue.
fn paint(text: &str, code: Option<&str>, color: bool) -> String {
    if color {
        format!("{}{text}{RESET}", code.unwrap_or("\x1b[34m"))
    } else {
        text.to_string()
    }
}

fn opt(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "none".to_string(), clean)
}

/// Printable ASCII only: anything else (escape sequences, newlines, non-ASCII) is shown as
/// `\u{..}`, so data from the node cannot rewrite the terminal or fake a line.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeproof_proto::{
        KubeletInfo, NodeFacts, Remediation, Severity, Source, Summary, Warning, REPORT_SCHEMA,
    };

    fn check(cis: &str, status: Status, scored: bool) -> CheckResult {
        CheckResult {
            id: format!("kubelet-test-{cis}"),
            cis: cis.to_string(),
            title: format!("Ensure test {cis}"),
            scored,
            severity: Severity::Medium,
            status,
            expected: "readOnlyPort: 0".to_string(),
            actual: "readOnlyPort: 10255".to_string(),
            source: Some(Source::Default),
            origin: Some("legacy flag defaults".to_string()),
            note: "no --config: the legacy flag default is read-only-port=10255.".to_string(),
            remediation: Remediation {
                flag: "--read-only-port=0".to_string(),
                config: "authentication:\n  anonymous:\n    enabled: false".to_string(),
            },
        }
    }

    fn report(checks: Vec<CheckResult>) -> Report {
        Report {
            schema: REPORT_SCHEMA.to_string(),
            catalogue: nodeproof_proto::CATALOGUE_VERSION.to_string(),
            scan_time: "2025-01-02T03:04:05Z".to_string(),
            agent_version: "0.1.0".to_string(),
            node: NodeFacts {
                hostname: Some("worker-1".to_string()),
                ..NodeFacts::default()
            },
            kubelet: KubeletInfo {
                pid: 4242,
                cmdline: vec!["/usr/bin/kubelet".to_string()],
                config_file: Some("/var/lib/kubelet/config.yaml".to_string()),
                config_dir: None,
                exe: Some("/usr/bin/kubelet".to_string()),
                exe_sha256: None,
                exe_error: None,
                version: None,
                distribution: None,
                embedded_in: None,
            },
            settings: Default::default(),
            summary: Summary::of(&checks),
            checks,
            warnings: vec![Warning {
                message: "unknown field ReadOnlyPort ignored".to_string(),
                file: Some("/var/lib/kubelet/config.yaml".to_string()),
                field: Some("ReadOnlyPort".to_string()),
            }],
            files: vec![],
            link: None,
        }
    }

    fn mixed() -> Report {
        report(vec![
            check("4.2.1", Status::Pass, true),
            check("4.2.2", Status::Fail, true),
            check("4.2.4", Status::Warn, false),
            check("4.2.5", Status::Error, false),
        ])
    }

    #[test]
    fn plain_output_has_no_escapes_and_is_ascii() {
        let out = text(&mixed(), false);
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.is_ascii());
        assert!(
            out.contains("[PASS] 4.2.1  medium   Ensure test 4.2.1 (Automated)\n"),
            "{out}"
        );
        assert!(
            out.contains("[FAIL] 4.2.2  medium   Ensure test 4.2.2 (Automated)\n"),
            "{out}"
        );
        assert!(
            out.contains("[WARN] 4.2.4  medium   Ensure test 4.2.4 (Manual)\n"),
            "{out}"
        );
        assert!(
            out.contains("[ERROR] 4.2.5  medium   Ensure test 4.2.5 (Manual)\n"),
            "{out}"
        );
        assert!(
            out.ends_with("== Summary: 1 pass, 1 fail, 1 warn, 1 error ==\n"),
            "{out}"
        );
    }

    #[test]
    fn header_names_node_pid_and_config() {
        let out = text(&mixed(), false);
        assert!(out.contains("node:        worker-1\n"), "{out}");
        assert!(
            out.contains("kubelet:     pid 4242 (/usr/bin/kubelet)\n"),
            "{out}"
        );
        assert!(
            out.contains("config file: /var/lib/kubelet/config.yaml\n"),
            "{out}"
        );
        assert!(out.contains("config dir:  none\n"), "{out}");
    }

    /// The live probes (`P.n`) get one heading of their own after the CIS groups, and the
    /// title line says they were run; without them it does not.
    #[test]
    fn live_probes_are_a_group_of_their_own() {
        let out = text(&mixed(), false);
        assert!(
            out.starts_with(
                "== nodeproof: kubelet CIS Kubernetes Benchmark v1.12, sections 4.1, 4.2 and the API server's kubelet client ==\n"
            ),
            "{out}"
        );
        assert!(!out.contains("Live probes"), "{out}");
        let mut checks = mixed().checks;
        checks.extend([
            check("P.1", Status::Pass, true),
            check("P.4", Status::Fail, true),
        ]);
        let out = text(&report(checks), false);
        assert!(out.starts_with("== nodeproof: kubelet CIS Kubernetes Benchmark v1.12, sections 4.1, 4.2 and the API server's kubelet client, and live probes ==\n"), "{out}");
        assert_eq!(
            out.matches("[INFO] P   Live probes of the kubelet's ports\n")
                .count(),
            1,
            "{out}"
        );
        let heading = out.find("[INFO] P ").expect("heading");
        assert!(
            heading > out.find("4.2.5").expect("4.2.5") && heading < out.find("P.1").expect("P.1"),
            "{out}"
        );
    }

    #[test]
    fn colour_wraps_the_tags_only_when_asked() {
        let out = text(&mixed(), true);
        assert!(out.contains("\x1b[32m[PASS]\x1b[0m 4.2.1"), "{out}");
        assert!(out.contains("\x1b[31m[FAIL]\x1b[0m 4.2.2"), "{out}");
        assert!(out.contains("\x1b[33m[WARN]\x1b[0m 4.2.4"), "{out}");
        assert!(out.contains("\x1b[35m[ERROR]\x1b[0m 4.2.5"), "{out}");
    }

    #[test]
    fn failing_checks_show_both_remediation_forms_and_provenance() {
        let out = text(&mixed(), false);
        let (_, remediations) = out.split_once("== Remediations ==").unwrap_or_default();
        assert!(remediations.contains("[FAIL] 4.2.2"), "{out}");
        assert!(
            remediations.contains("    flag:     --read-only-port=0\n"),
            "{out}"
        );
        assert!(
            remediations.contains(
                "    config:   authentication:\n                anonymous:\n                  enabled: false\n"
            ),
            "{out}"
        );
        assert!(
            remediations.contains("    actual:   readOnlyPort: 10255\n"),
            "{out}"
        );
        assert!(
            remediations.contains("    source:   default (legacy flag defaults)\n"),
            "{out}"
        );
        assert!(
            !remediations.contains("[PASS]"),
            "passing checks need no remediation: {out}"
        );
        assert!(out.contains("- unknown field ReadOnlyPort ignored (file: /var/lib/kubelet/config.yaml) (field: ReadOnlyPort)"));
    }

    #[test]
    fn severity_is_a_column_and_remediations_give_the_catalogues_reason() {
        let mut port = check("4.2.4", Status::Fail, false);
        port.id = "kubelet-read-only-port".to_string();
        port.severity = Severity::Critical;
        let mut timeout = check("4.2.10", Status::Pass, true);
        timeout.severity = Severity::Low;
        let out = text(&report(vec![port, timeout]), false);
        assert!(
            out.contains("\n[FAIL] 4.2.4  critical Ensure test 4.2.4 (Manual)\n"),
            "{out}"
        );
        assert!(
            out.contains("\n[PASS] 4.2.10 low      Ensure test 4.2.10 (Automated)\n"),
            "{out}"
        );
        let (_, remediations) = out.split_once("== Remediations ==").unwrap_or_default();
        assert!(
            remediations.contains("    severity: critical (port 10255 serves pods"),
            "{out}"
        );
    }

    #[test]
    fn all_pass_has_no_remediation_section() {
        let mut r = report(vec![check("4.2.1", Status::Pass, true)]);
        r.warnings.clear();
        let out = text(&r, false);
        assert!(!out.contains("Remediations"), "{out}");
        assert!(
            out.ends_with("\n\n== Summary: 1 pass, 0 fail, 0 warn, 0 error ==\n"),
            "{out}"
        );
    }

    #[test]
    fn data_cannot_inject_terminal_escapes_or_lines() {
        let mut c = check("4.2.2", Status::Fail, true);
        c.actual = "readOnlyPort: \x1b[2J10255\n[PASS] 4.2.2 fake".to_string();
        let mut r = report(vec![c]);
        r.node.hostname = Some("n\u{e9}ode".to_string());
        let out = text(&r, true);
        assert!(!out.contains("\x1b[2J"), "{out}");
        assert!(
            out.contains("readOnlyPort: \\u{1b}[2J10255\\u{a}[PASS] 4.2.2 fake\n"),
            "{out}"
        );
        assert!(out.contains("node:        n\\u{e9}ode\n"), "{out}");
        let plain = text(&r, false);
        assert!(plain.is_ascii() && !plain.contains('\x1b'));
    }
}
