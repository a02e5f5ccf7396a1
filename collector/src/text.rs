//! Text that came from nodes and peers (node names, key ids, payload types, messages that
//! quote them) is printed on operators' terminals and written to logs. A control character
//! in it could move the cursor, recolour or erase lines, or forge a log line, so every such
//! string goes through [`escape`] before it is shown.

use std::fmt::Write as _;

use nodeproof_proto::text::is_unsafe_char;

/// `text` with every character [`is_unsafe_char`] names (controls, bidirectional and
/// zero-width marks, line separators) written as `\u{..}` escapes, and backslashes doubled so an escape cannot be
/// faked; anything else as it is.
pub fn escape(text: &str) -> String {
    if !text.chars().any(is_unsafe_char) && !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
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
    fn control_characters_are_escaped() {
        assert_eq!(escape("node-1"), "node-1");
        assert_eq!(escape("a\x1b[31mred\n"), "a\\u{1b}[31mred\\u{a}");
        assert_eq!(escape("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(escape("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(escape("\\u{1b}"), "\\\\u{1b}", "an escape cannot be faked");
    }
}
