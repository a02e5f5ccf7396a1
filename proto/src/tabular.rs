//! One row per (node, check) of a report, and the two flat forms teams already feed to their
//! tools: CSV (spreadsheets, SIEM imports) and JUnit XML (CI dashboards, as kube-bench's
//! `--junit`). Shared by the agent's `scan --format csv|junit` and the collector's evidence
//! bundle, so both write the same columns the same way.
//!
//! Every field is untrusted text (a node chooses its name, the kubelet's values come from
//! its files): CSV cells are quoted, and a cell that starts with `=`, `+`, `-`, `@`, a tab
//! or a carriage return gets a leading `'` so a spreadsheet shows it instead of running it
//! as a formula (OWASP "CSV injection"); XML text and attributes are escaped, and the
//! characters XML 1.0 cannot carry at all are written as U+FFFD.

use std::io::{self, Write};

use crate::{Report, Status};

/// The CSV header, the columns of [`Row`].
pub const CSV_HEADER: &str = "node,time,check,status,value,source";

/// One check's verdict on one node at one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub node: String,
    /// RFC 3339 scan time.
    pub time: String,
    /// The CIS number (`4.2.1`).
    pub check: String,
    /// nodeproof's check id (`kubelet-anonymous-auth`).
    pub id: String,
    pub status: Status,
    /// The effective value the check judged (`actual`).
    pub value: String,
    /// Where the value came from: `default`, `config-file`, `drop-in`, `flag`, or empty.
    pub source: String,
    /// What the check expects (for the JUnit failure message).
    pub expected: String,
    pub title: String,
}

/// The rows of `report`, one per check in report order. `node` names the node (the
/// report's link, else its hostname, else the caller's choice).
pub fn rows(node: &str, report: &Report) -> Vec<Row> {
    report
        .checks
        .iter()
        .map(|c| Row {
            node: node.to_string(),
            time: report.scan_time.clone(),
            check: c.cis.clone(),
            id: c.id.clone(),
            status: c.status,
            value: c.actual.clone(),
            source: c.source.map(|s| s.as_str().to_string()).unwrap_or_default(),
            expected: c.expected.clone(),
            title: c.title.clone(),
        })
        .collect()
}

/// The name a report's rows carry: the chain's node name, else the hostname, else `local`.
pub fn node_name(report: &Report) -> String {
    report
        .link
        .as_ref()
        .map(|l| l.node.clone())
        .or_else(|| report.node.hostname.clone())
        .unwrap_or_else(|| "local".to_string())
}

/// One CSV cell: defused against formula injection, then quoted when it needs to be.
pub fn csv_cell(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) || defused.starts_with('\'') {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// Writes the header line (RFC 4180: CRLF line ends are allowed, LF is what tools expect).
pub fn write_csv_header(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{CSV_HEADER}")
}

/// Writes one row as a CSV line.
pub fn write_csv_row(w: &mut dyn Write, row: &Row) -> io::Result<()> {
    let cells = [
        csv_cell(&row.node),
        csv_cell(&row.time),
        csv_cell(&row.check),
        csv_cell(row.status.as_str()),
        csv_cell(&row.value),
        csv_cell(&row.source),
    ];
    writeln!(w, "{}", cells.join(","))
}

/// `text` escaped for XML text and attribute values (both quotes too), with the characters
/// XML 1.0 forbids (most C0 controls, U+FFFE/U+FFFF) replaced by U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", u32::from(c))),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One JUnit test suite: a node's checks at one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    pub node: String,
    pub time: String,
    pub rows: Vec<Row>,
}

/// Writes a JUnit XML document: one `<testsuite>` per node, one `<testcase>` per check
/// (classname the node, name `CIS id title`). `fail` is a `<failure>`, `error` an
/// `<error>`, `warn` (a manual check) `<skipped>`, as kube-bench reports them.
pub fn write_junit(w: &mut dyn Write, suites: &[Suite]) -> io::Result<()> {
    let mut totals = JunitTotals::default();
    for s in suites {
        totals.add(s);
    }
    write_junit_head(w, &totals)?;
    for s in suites {
        write_junit_suite(w, s)?;
    }
    write_junit_tail(w)
}

/// The counts a JUnit document's `<testsuites>` element carries, summed suite by suite
/// (so a writer that streams its suites can count them as it goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JunitTotals {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl JunitTotals {
    pub fn add(&mut self, s: &Suite) {
        self.tests += s.rows.len();
        self.failures += count(s, Status::Fail);
        self.errors += count(s, Status::Error);
        self.skipped += count(s, Status::Warn);
    }
}

fn count(s: &Suite, st: Status) -> usize {
    s.rows.iter().filter(|r| r.status == st).count()
}

/// The XML declaration and the opening `<testsuites>` of [`write_junit`].
pub fn write_junit_head(w: &mut dyn Write, t: &JunitTotals) -> io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        w,
        r#"<testsuites name="nodeproof" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
        t.tests, t.failures, t.errors, t.skipped
    )
}

/// The closing `</testsuites>` of [`write_junit`].
pub fn write_junit_tail(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "</testsuites>")
}

/// One `<testsuite>` of [`write_junit`].
pub fn write_junit_suite(w: &mut dyn Write, s: &Suite) -> io::Result<()> {
    writeln!(
        w,
        r#"  <testsuite name="{}" timestamp="{}" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
        xml_escape(&s.node),
        xml_escape(&s.time),
        s.rows.len(),
        count(s, Status::Fail),
        count(s, Status::Error),
        count(s, Status::Warn),
    )?;
    for r in &s.rows {
        let name = format!("{} {} {}", r.check, r.id, r.title);
        let detail = format!(
            "expected {}; value {:?} from {}",
            r.expected,
            r.value,
            if r.source.is_empty() {
                "nowhere"
            } else {
                &r.source
            }
        );
        write!(
            w,
            r#"    <testcase classname="{}" name="{}""#,
            xml_escape(&r.node),
            xml_escape(&name)
        )?;
        match r.status {
            Status::Pass => writeln!(w, "/>")?,
            Status::Fail => writeln!(
                w,
                r#"><failure message="{}" type="fail">{}</failure></testcase>"#,
                xml_escape(&detail),
                xml_escape(&detail)
            )?,
            Status::Error => writeln!(
                w,
                r#"><error message="{}" type="error">{}</error></testcase>"#,
                xml_escape(&detail),
                xml_escape(&detail)
            )?,
            Status::Warn => writeln!(
                w,
                r#"><skipped message="{}"/></testcase>"#,
                xml_escape(&detail)
            )?,
        }
    }
    writeln!(w, "  </testsuite>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, value: &str, status: Status) -> Row {
        Row {
            node: node.into(),
            time: "2026-01-01T00:00:00Z".into(),
            check: "4.2.1".into(),
            id: "kubelet-anonymous-auth".into(),
            status,
            value: value.into(),
            source: "flag".into(),
            expected: "false".into(),
            title: "anonymous auth <off>".into(),
        }
    }

    #[test]
    fn csv_formula_injection_is_defused() {
        for bad in [
            "=cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            let cell = csv_cell(bad);
            assert!(cell.starts_with("\"'"), "{bad:?} -> {cell}");
        }
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_rows_have_the_header_columns() {
        let mut out = Vec::new();
        write_csv_header(&mut out).unwrap();
        write_csv_row(&mut out, &row("=evil", "a,b", Status::Fail)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "node,time,check,status,value,source\n\"'=evil\",2026-01-01T00:00:00Z,4.2.1,fail,\"a,b\",flag\n"
        );
    }

    #[test]
    fn xml_injection_in_names_and_values_is_escaped() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'\u{1}\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{fffd}&#10;"
        );
        let mut out = Vec::new();
        let suites = [Suite {
            node: "n\"/><x".into(),
            time: "t".into(),
            rows: vec![
                row("n\"/><x", "</failure>", Status::Fail),
                row("n", "1", Status::Pass),
                row("n", "1", Status::Warn),
                row("n", "1", Status::Error),
            ],
        }];
        write_junit(&mut out, &suites).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("<x"), "{text}");
        assert!(!text.contains("value \"</failure>"), "{text}");
        assert!(
            text.contains(r#"tests="4" failures="1" errors="1" skipped="1""#),
            "{text}"
        );
        assert_eq!(text.matches("<testcase ").count(), 4);
    }
}
