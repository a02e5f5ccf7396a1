//! Text that came from nodes and peers (node names, key ids, payload types, messages that
//! quote them) is printed on operators' terminals and written to logs. A control character
//! in it could move the cursor, recolour or erase lines, or forge a log line, so every such
//! string goes through [`escape`] before it is shown.

use std::fmt::Write as _;

/// `text` with every control character (C0, DEL, C1) and the Unicode line and paragraph
/// separators written as `\u{..}` escapes, and backslashes doubled so an escape cannot be
/// faked; anything else as it is.
pub fn escape(text: &str) -> String {
    if !text.chars().any(needs_escape) && !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("node-1"), "node-1");
        assert_eq!(escape("a\x1b[31mred\n"), "a\\u{1b}[31mred\\u{a}");
        assert_eq!(escape("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(escape("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(escape("\\u{1b}"), "\\\\u{1b}", "an escape cannot be faked");
    }
}
