//! Sentence splitting, so TTS can start speaking the first sentence while the rest is synthesized.

/// Words that end with a period without ending a sentence (compared case-insensitively).
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "inc",
    "ltd", "co", "corp", "no", "approx", "fig", "dept", "gen", "gov", "sgt", "capt", "lt", "col",
    "rev", "hon", "ave", "blvd", "rd", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "a.m", "p.m", "u.s", "u.k",
];

/// Splits `text` into sentences at `.`, `!`, `?`, `;` and newlines.
///
/// Terminators stay attached to their sentence (with trailing quotes or brackets), pieces are
/// trimmed, and empty pieces are dropped. A period does not split after a common abbreviation
/// ("Dr.", "e.g."), a single-letter initial ("J. Smith"), inside a number ("3.14") or when the
/// next word starts in lower case.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let end = match c {
            '\n' | '\r' => {
                push_trimmed(&mut out, &text[start..i]);
                start = i + c.len_utf8();
                continue;
            }
            '.' | '!' | '?' | ';' | '…' => {
                // Swallow runs like "?!", "..." and closing quotes/brackets.
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = iter.peek() {
                    if matches!(
                        d,
                        '.' | '!' | '?' | ';' | '…' | '"' | '\'' | ')' | ']' | '”' | '’'
                    ) {
                        end = j + d.len_utf8();
                        iter.next();
                    } else {
                        break;
                    }
                }
                end
            }
            _ => continue,
        };
        let rest = &text[end..];
        // Only split at a boundary: end of text or whitespace ("3.14", "a.b" stay whole).
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            continue;
        }
        if c == '.' && end == i + 1 && !ends_sentence(&text[start..i], rest) {
            continue;
        }
        push_trimmed(&mut out, &text[start..end]);
        start = end;
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

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

/// Decides whether a single period after `before` ends the sentence, given the text after it.
pub(crate) fn ends_sentence(before: &str, after: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"')
        .next()
        .unwrap_or("");
    let is_initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    if is_initial || ABBREVIATIONS.iter().any(|a| a.eq_ignore_ascii_case(word)) {
        return false;
    }
    // "... and so on. then" reads as one sentence; a lower-case continuation is not a new one.
    let next = after.trim_start().chars().next();
    !next.is_some_and(char::is_lowercase)
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    let piece = piece.trim();
    if !piece.is_empty() && piece.chars().any(char::is_alphanumeric) {
        out.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_text, split_long, split_sentences};

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

    #[test]
    fn splits_on_terminators_and_newlines() {
        assert_eq!(
            split_sentences("Hello there! How are you? Fine; thanks.\nNext line"),
            vec![
                "Hello there!",
                "How are you?",
                "Fine;",
                "thanks.",
                "Next line"
            ]
        );
    }

    #[test]
    fn keeps_abbreviations_numbers_and_initials() {
        assert_eq!(
            split_sentences("Dr. Smith paid $3.50 to J. R. Tolkien, e.g. for books. Then he left."),
            vec![
                "Dr. Smith paid $3.50 to J. R. Tolkien, e.g. for books.",
                "Then he left."
            ]
        );
    }

    #[test]
    fn no_empty_pieces() {
        assert!(split_sentences("").is_empty());
        assert!(split_sentences("  \n\n ... !? \n").is_empty());
        assert_eq!(
            split_sentences("Wait...  what?!\n\n"),
            vec!["Wait...", "what?!"]
        );
        assert_eq!(
            split_sentences("He said \"stop.\" Then"),
            vec!["He said \"stop.\"", "Then"]
        );
        assert_eq!(split_sentences("no terminator"), vec!["no terminator"]);
    }
}
