//! Display text people type (room titles, names): trimmed, bounded, and free of characters
//! that would let one string disguise itself or break another's layout.

/// Why a piece of display text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty after trimming, or longer than allowed.
    #[error("{what} must be 1 to {max} characters")]
    Length {
        /// What the text is ("a title").
        what: &'static str,
        /// Most characters allowed.
        max: usize,
    },
    /// Holds a control character (NUL, newline, escape…).
    #[error("{0} must not contain control characters (such as NUL or a line break)")]
    Control(&'static str),
    /// Holds a bidirectional override or isolate (which reorder the text around it).
    #[error("{0} must not contain bidirectional formatting characters")]
    Bidi(&'static str),
}

/// Whether `c` reorders text around it: the embeddings and overrides U+202A–U+202E, the
/// isolates U+2066–U+2069, and the marks U+200E/U+200F and U+061C.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `text` trimmed, if it has 1 to `max` characters and neither control nor bidirectional
/// formatting characters; `what` names it in the error ("a title").
pub fn clean(text: &str, what: &'static str, max: usize) -> Result<String, TextError> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > max {
        return Err(TextError::Length { what, max });
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::Control(what));
    }
    if text.chars().any(is_bidi_control) {
        return Err(TextError::Bidi(what));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_text_is_trimmed_and_checked() {
        assert_eq!(clean("  Town hall ", "a title", 20).unwrap(), "Town hall");
        assert_eq!(
            clean("Café — 東京 🎙", "a title", 20).unwrap(),
            "Café — 東京 🎙"
        );
        let long = "x".repeat(21);
        for (bad, want) in [
            (
                "",
                TextError::Length {
                    what: "a title",
                    max: 20,
                },
            ),
            (
                "   ",
                TextError::Length {
                    what: "a title",
                    max: 20,
                },
            ),
            (
                long.as_str(),
                TextError::Length {
                    what: "a title",
                    max: 20,
                },
            ),
            ("a\0b", TextError::Control("a title")),
            ("line\nbreak", TextError::Control("a title")),
            ("tab\there", TextError::Control("a title")),
            ("esc\u{1b}[31m", TextError::Control("a title")),
            ("evil\u{202E}txt.exe", TextError::Bidi("a title")),
            ("iso\u{2067}late", TextError::Bidi("a title")),
            ("mark\u{200F}", TextError::Bidi("a title")),
        ] {
            assert_eq!(clean(bad, "a title", 20).unwrap_err(), want, "{bad:?}");
        }
    }
}
