//! Text chunking for the local engines, so TTS can start speaking the first sentence while the
//! rest is synthesized (sentence boundaries come from the plugin contract's `sentences`).

pub use waav_plugin_api::sentences::split_sentences;

/// Cuts `piece` into parts of at most `max_bytes` (at least 4), at the last whitespace that
/// fits, else at a character boundary; parts are trimmed, and a part without anything speakable
/// is dropped. Bounds the text one synthesis (or one espeak-ng process) gets when a "sentence"
/// has no punctuation at all.
pub fn split_long(piece: &str, max_bytes: usize) -> Vec<&str> {
    let max = max_bytes.max(4);
    let mut out = Vec::new();
    let mut rest = piece.trim();
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(char::is_whitespace) {
            if space > 0 {
                cut = space;
            }
        }
        push_trimmed(&mut out, &rest[..cut]);
        rest = rest[cut..].trim_start();
    }
    push_trimmed(&mut out, rest);
    out
}

/// Groups `text` into chunks of at most `max_bytes`: whole sentences joined by a space where
/// they fit, over-long sentences cut by [`split_long`]. Text that fits is returned unchanged.
pub fn chunk_text(text: &str, max_bytes: usize) -> Vec<String> {
    if text.len() <= max_bytes {
        return vec![text.to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for piece in split_sentences(text)
        .into_iter()
        .flat_map(|s| split_long(s, max_bytes))
    {
        if !current.is_empty() && current.len() + 1 + piece.len() > max_bytes {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(piece);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub(crate) use waav_plugin_api::sentences::ends_sentence;

fn push_trimmed<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    let piece = piece.trim();
    if !piece.is_empty() && piece.chars().any(char::is_alphanumeric) {
        out.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_text, split_long};

    #[test]
    fn long_pieces_are_bounded() {
        let long = "word ".repeat(1000);
        let parts = split_long(&long, 64);
        assert!(parts.iter().all(|p| p.len() <= 64 && !p.ends_with(' ')));
        assert_eq!(parts.join(" "), long.trim());
        // No whitespace at all, multi-byte characters: cut at a char boundary.
        let dense = "é".repeat(100);
        let parts = split_long(&dense, 9);
        assert!(parts.iter().all(|p| p.len() <= 9));
        assert_eq!(parts.concat(), dense);
        assert_eq!(split_long("  short. ", 64), vec!["short."]);

        let text = format!("One. Two. Three {}. Four.", long.trim());
        let chunks = chunk_text(&text, 100);
        assert!(chunks.iter().all(|c| c.len() <= 100), "{chunks:?}");
        // Short sentences share a chunk; the long one is cut at words.
        assert_eq!(chunks[0], "One. Two.");
        assert!(chunks[1].starts_with("Three word"), "{chunks:?}");
        assert!(
            chunks.last().unwrap().ends_with("word. Four."),
            "{chunks:?}"
        );
        assert_eq!(chunk_text("Fits. As is!", 100), vec!["Fits. As is!"]);
    }
}
