//! Text that came from the network (the collector's messages, or whatever answered in its
//! place), made safe to log: whoever controls it must not be able to forge log lines
//! (newlines), drive the terminal (escape sequences) or hide text (bidirectional
//! overrides), nor fill the log.

/// At most this many characters of one untrusted text go into a log line or a message.
pub const MAX_CHARS: usize = 500;

/// `text` with control characters, bidirectional controls and backslashes escaped
/// (`\n`, `\u{1b}`, `\u{202e}`, `\\`), on one line, cut to [`MAX_CHARS`] characters.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 2));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...(cut)");
            break;
        }
        if c == '\\' {
            out.push_str("\\\\");
        } else if nodeproof_proto::text::is_unsafe_char(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_injection_is_escaped() {
        assert_eq!(escape("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(escape("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape("c:\\n"), "c:\\\\n");
        assert_eq!(escape("héllo wörld"), "héllo wörld");
        let long = escape(&"x".repeat(10_000));
        assert!(long.len() < MAX_CHARS + 20, "{}", long.len());
        assert!(long.ends_with("(cut)"));
    }
}
