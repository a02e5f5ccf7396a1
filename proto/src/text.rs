//! Which characters of untrusted text (from nodes, peers, or whatever answered in the
//! collector's place) must never reach a terminal or a log line as they are. Shared so that
//! the agent and the collector cannot drift apart on what counts as dangerous; each side
//! keeps its own output form.

/// Control characters (C0, DEL, C1) and the Unicode format characters that reorder, hide or
/// break text in a terminal ("Trojan Source", CVE-2021-42574): zero-width and bidirectional
/// marks, embeddings, overrides and isolates, the line and paragraph separators, word
/// joiners and the byte-order mark.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_unsafe_letters_are_not() {
        for c in [
            '\n', '\x1b', '\x7f', '\u{85}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{200b}',
        ] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        for c in ['a', 'é', 'ſ', ' ', '\\', '\u{2030}'] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
    }
}
