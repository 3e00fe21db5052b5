//! Sentence boundaries in text to speak.
//!
//! The host sends each sentence of a flushed `speak` to the TTS provider as its own request
//! (first byte after the first sentence, per-sentence cache entries, failover resuming at the
//! sentence not yet spoken); the local engines use the same rules to synthesize incrementally.

/// Words that end with a period without ending a sentence (compared case-insensitively).
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "inc",
    "ltd", "co", "corp", "no", "approx", "fig", "dept", "gen", "gov", "sgt", "capt", "lt", "col",
    "rev", "hon", "ave", "blvd", "rd", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "a.m", "p.m", "u.s", "u.k",
];

/// Calls `cut` with the byte offset just past each sentence boundary of `text`, in order: after a
/// newline, or after a run of `.`, `!`, `?`, `;`, `…` (with closing quotes or brackets) followed
/// by whitespace or the end. A period does not end a sentence after a common abbreviation
/// ("Dr.", "e.g."), a single-letter initial ("J. Smith"), inside a number ("3.14") or when the
/// next word starts in lower case.
fn boundaries(text: &str, mut cut: impl FnMut(usize)) {
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let end = match c {
            '\n' | '\r' => i + c.len_utf8(),
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
                let rest = &text[end..];
                // Only at a boundary: end of text or whitespace ("3.14", "a.b" stay whole).
                if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                    continue;
                }
                if c == '.' && end == i + 1 && !ends_sentence(&text[start..i], rest) {
                    continue;
                }
                end
            }
            _ => continue,
        };
        cut(end);
        start = end;
    }
}

/// Splits `text` into sentences: terminators stay attached (with trailing quotes or brackets),
/// pieces are trimmed, and pieces with nothing speakable are dropped.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    boundaries(text, |end| {
        push_trimmed(&mut out, &text[start..end]);
        start = end;
    });
    push_trimmed(&mut out, &text[start..]);
    out
}

/// Cuts `text` into at most `max` (at least 1) consecutive pieces at sentence boundaries, each
/// with something speakable, that concatenate to `text` exactly (whitespace included, so a
/// provider that joins streamed text hears the same words). A piece with nothing speakable
/// joins the next one (at the end, the one before it); the last piece takes what is left over
/// `max`. Text without a boundary is one piece.
pub fn sentence_segments(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(1);
    // Cut offsets: each piece ends at one; the last piece ends at the text's end.
    let mut cuts: Vec<usize> = Vec::new();
    let mut start = 0;
    boundaries(text, |end| {
        if cuts.len() + 1 < max && speakable(&text[start..end]) {
            cuts.push(end);
            start = end;
        }
    });
    // A tail with nothing to say joins the last piece.
    if !speakable(&text[start..]) {
        cuts.pop();
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for cut in cuts {
        out.push(&text[from..cut]);
        from = cut;
    }
    out.push(&text[from..]);
    out
}

/// Decides whether a single period after `before` ends the sentence, given the text after it.
pub fn ends_sentence(before: &str, after: &str) -> bool {
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

fn speakable(piece: &str) -> bool {
    piece.chars().any(char::is_alphanumeric)
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    let piece = piece.trim();
    if speakable(piece) {
        out.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::{sentence_segments, split_sentences};

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

    #[test]
    fn segments_cover_the_text_exactly() {
        let cases = [
            "Hello there! How are you? Fine.",
            "  Leading space. And a tail without end",
            "One.\n\n... Two! ?! ",
            "Dr. Smith paid $3.50. Then he left.   ",
            "...",
            "",
            "no terminator",
            "é. ü! ß? ok",
        ];
        for text in cases {
            for max in [1, 2, 3, 64] {
                let segs = sentence_segments(text, max);
                assert_eq!(segs.concat(), text, "{text:?} max {max}: {segs:?}");
                assert!(!segs.is_empty() && segs.len() <= max, "{text:?}: {segs:?}");
                if segs.len() > 1 {
                    assert!(
                        segs.iter().all(|s| s.chars().any(char::is_alphanumeric)),
                        "{text:?}: {segs:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn segments_are_sentences() {
        assert_eq!(
            sentence_segments("Hello there! How are you? Fine.", 64),
            vec!["Hello there!", " How are you?", " Fine."]
        );
        // Punctuation alone joins the next sentence; at the end, the one before it.
        assert_eq!(
            sentence_segments("... One. ?! Two.  ", 64),
            vec!["... One.", " ?! Two.  "]
        );
        // Over the bound, the last piece takes the rest.
        assert_eq!(
            sentence_segments("One. Two. Three. Four.", 2),
            vec!["One.", " Two. Three. Four."]
        );
        assert_eq!(
            sentence_segments("Dr. Smith left.", 64),
            vec!["Dr. Smith left."]
        );
    }
}
