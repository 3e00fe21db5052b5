//! Text -> espeak IPA phonemes -> Piper phoneme ids.
//!
//! Mirrors piper-phonemize (rhasspy/piper-phonemize `src/phonemize.cpp`, `src/phoneme_ids.cpp`):
//! phonemes are NFD-decomposed, `(lang)` switch flags are dropped, each clause gets its
//! terminator (`. ? !` end a sentence; `, : ;` are followed by a space), and ids are
//! `^ _ p1 _ p2 _ ... pn _ $`. piper-phonemize reads the terminator from libespeak-ng's clause
//! API; we run the `espeak-ng` program instead (GPL: never linked), so clauses are split here
//! and sent as separate paragraphs, whose phonemes come back separated by blank lines.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use crate::error::Result;
use crate::espeak::{run_espeak, RunLimits, MAX_ESPEAK_INPUT};
use crate::text::{ends_sentence, split_long};

/// Beginning-of-sentence, end-of-sentence and padding symbols of Piper's phoneme id map.
pub(crate) const BOS: char = '^';
pub(crate) const EOS: char = '$';
pub(crate) const PAD: char = '_';

/// A clause of the input text and the punctuation that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause<'a> {
    pub text: &'a str,
    /// `.`, `?`, `!`, `,`, `:`, `;` or `None` (newline or end of text).
    pub terminator: Option<char>,
}

/// Splits text into clauses at `. ? ! , : ;` (followed by whitespace or the end) and newlines.
/// A period after an abbreviation or initial ("Dr.", "J.") does not end a clause.
pub(crate) fn split_clauses(text: &str) -> Vec<Clause<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '\n' || c == '\r' {
            push(&mut out, &text[start..i], None);
            start = i + c.len_utf8();
            continue;
        }
        let terminator = match c {
            '.' | '?' | '!' | ',' | ':' | ';' => c,
            '…' => '.',
            _ => continue,
        };
        let mut end = i + c.len_utf8();
        let mut run = 1;
        while let Some(&(j, d)) = iter.peek() {
            if matches!(
                d,
                '.' | '?' | '!' | '…' | '"' | '\'' | ')' | ']' | '”' | '’'
            ) {
                run += usize::from(matches!(d, '.' | '?' | '!' | '…'));
                end = j + d.len_utf8();
                iter.next();
            } else {
                break;
            }
        }
        let rest = &text[end..];
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            continue;
        }
        if terminator == '.' && run == 1 && !ends_sentence(&text[start..i], rest) {
            continue;
        }
        push(&mut out, &text[start..i], Some(terminator));
        start = end;
    }
    push(&mut out, &text[start..], None);
    out
}

fn push<'a>(out: &mut Vec<Clause<'a>>, piece: &'a str, terminator: Option<char>) {
    let piece = piece.trim();
    if piece.chars().any(char::is_alphanumeric) {
        out.push(Clause {
            text: piece,
            terminator,
        });
    }
}

/// Phonemizes `text` with `espeak-ng -q --ipa -v voice`; returns one phoneme string per
/// sentence (Piper synthesizes each sentence separately).
///
/// Each espeak run gets at most [`MAX_ESPEAK_INPUT`] bytes: long text is phonemized in batches
/// of whole clauses (a clause too long on its own is cut at words), each run under `limits`.
pub(crate) fn phonemize(text: &str, voice: &str, limits: &RunLimits) -> Result<Vec<String>> {
    let mut clauses = Vec::new();
    for clause in split_clauses(text) {
        // The "\n\n" separators count against the limit too.
        let parts = split_long(clause.text, MAX_ESPEAK_INPUT - 2);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.into_iter().enumerate() {
            clauses.push(Clause {
                text: part,
                // A cut inside a clause ends a sentence without punctuation.
                terminator: if i == last { clause.terminator } else { None },
            });
        }
    }
    let mut sentences = Vec::new();
    for batch in batches(&clauses, MAX_ESPEAK_INPUT) {
        // One espeak run per batch: clauses as paragraphs, stripped of their terminator.
        let input = batch
            .iter()
            .map(|c| c.text)
            .collect::<Vec<_>>()
            .join("\n\n");
        let output = run_espeak(&["-q", "--ipa", "-v", voice], &input, limits)?;
        sentences.extend(assemble(batch, &String::from_utf8_lossy(&output)));
    }
    Ok(sentences)
}

/// Splits clauses into runs whose paragraph-joined text fits `max_bytes`, preferring to end a
/// run at the end of a sentence so punctuation is placed as in one run.
fn batches<'c, 'a>(clauses: &'c [Clause<'a>], max_bytes: usize) -> Vec<&'c [Clause<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut len, mut sentence_end) = (0, 0, None);
    for (i, clause) in clauses.iter().enumerate() {
        let add = clause.text.len() + if i > start { 2 } else { 0 };
        if i > start && len + add > max_bytes {
            let cut = sentence_end.filter(|&e| e > start).unwrap_or(i);
            out.push(&clauses[start..cut]);
            start = cut;
            len = clauses[start..i]
                .iter()
                .map(|c| c.text.len() + 2)
                .sum::<usize>()
                .saturating_sub(2);
        }
        len += clause.text.len() + if i > start { 2 } else { 0 };
        if !matches!(clause.terminator, Some(',' | ':' | ';')) {
            sentence_end = Some(i + 1);
        }
    }
    if start < clauses.len() {
        out.push(&clauses[start..]);
    }
    out
}

/// Pairs espeak's output groups (separated by blank lines) with the clauses. espeak may break
/// a clause further (e.g. at a dash), so lines within a group are joined with spaces. If the
/// counts disagree the punctuation cannot be placed safely: all phonemes become one sentence.
pub(crate) fn assemble(clauses: &[Clause<'_>], espeak_output: &str) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in espeak_output.lines() {
        let line = strip_language_flags(line.trim());
        if line.is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&line);
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }

    if groups.len() != clauses.len() {
        let joined = groups.join(" ");
        let mut sentence: String = joined.nfd().collect();
        if let Some(t @ ('.' | '?' | '!')) = clauses.last().and_then(|c| c.terminator) {
            sentence.push(t);
        }
        return if joined.is_empty() {
            Vec::new()
        } else {
            vec![sentence]
        };
    }

    let mut sentences = Vec::new();
    let mut sentence = String::new();
    for (group, clause) in groups.iter().zip(clauses) {
        sentence.extend(group.nfd());
        match clause.terminator {
            Some(t @ ('.' | '?' | '!')) => {
                sentence.push(t);
                sentences.push(std::mem::take(&mut sentence));
            }
            Some(t) => {
                sentence.push(t);
                sentence.push(' ');
            }
            // A line break ends the sentence without punctuation.
            None => sentences.push(std::mem::take(&mut sentence)),
        }
    }
    if !sentence.trim().is_empty() {
        sentences.push(sentence.trim_end().to_owned());
    }
    sentences
}

/// Removes espeak's `(fr)`...`(en)` language switch flags, as piper-phonemize does.
fn strip_language_flags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_flag = false;
    for c in line.chars() {
        match (in_flag, c) {
            (false, '(') => in_flag = true,
            (true, ')') => in_flag = false,
            (false, c) => out.push(c),
            (true, _) => {}
        }
    }
    out
}

/// Maps a phoneme string to ids: `^ _ p1 _ ... pn _ $`; phonemes absent from the map are
/// skipped, as in piper-phonemize.
pub(crate) fn phoneme_ids(phonemes: &str, id_map: &HashMap<char, Vec<i64>>) -> Vec<i64> {
    let pad = id_map.get(&PAD).map(Vec::as_slice).unwrap_or(&[0]);
    let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
    ids.extend_from_slice(id_map.get(&BOS).map(Vec::as_slice).unwrap_or(&[1]));
    ids.extend_from_slice(pad);
    for c in phonemes.chars() {
        if let Some(mapped) = id_map.get(&c) {
            ids.extend_from_slice(mapped);
            ids.extend_from_slice(pad);
        }
    }
    ids.extend_from_slice(id_map.get(&EOS).map(Vec::as_slice).unwrap_or(&[2]));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(text: &str, terminator: Option<char>) -> Clause<'_> {
        Clause { text, terminator }
    }

    #[test]
    fn clauses_follow_punctuation() {
        assert_eq!(
            split_clauses("Hello, Dr. Smith; how are you?! Fine\nbye"),
            vec![
                clause("Hello", Some(',')),
                clause("Dr. Smith", Some(';')),
                clause("how are you", Some('?')),
                clause("Fine", None),
                clause("bye", None),
            ]
        );
        assert_eq!(
            split_clauses("It costs 3.50."),
            vec![clause("It costs 3.50", Some('.'))]
        );
        assert!(split_clauses(" ... ").is_empty());
    }

    #[test]
    fn assembles_sentences_with_punctuation() {
        let clauses = split_clauses("Hello, world. How are you");
        let out = assemble(&clauses, "həlˈoʊ\n\nwˈɜːld\n\nhˈaʊ ɑːɹ\njuː\n");
        assert_eq!(out, vec!["həlˈoʊ, wˈɜːld.", "hˈaʊ ɑːɹ juː"]);
        // Count mismatch: one sentence, final punctuation kept.
        let clauses = split_clauses("One, two.");
        assert_eq!(assemble(&clauses, "wˈʌn tˈuː\n"), vec!["wˈʌn tˈuː."]);
        // Language flags are dropped; composed characters are decomposed (NFD).
        let clauses = split_clauses("Bonjour");
        assert_eq!(
            assemble(&clauses, "(fr)bɔ̃ʒuːɹ(en)ç\n"),
            vec!["bɔ̃ʒuːɹc\u{327}"]
        );
    }

    #[test]
    fn batches_fit_the_limit_and_end_at_sentences() {
        let text = "One two, three four. Five six. Seven, eight nine.";
        let clauses = split_clauses(text);
        for max in [10, 25, 40, 1000] {
            let runs = batches(&clauses, max);
            assert_eq!(runs.concat(), clauses, "max {max}");
            for run in &runs {
                let len = run.iter().map(|c| c.text.len()).sum::<usize>() + 2 * (run.len() - 1);
                assert!(len <= max || run.len() == 1, "max {max}: {run:?}");
            }
        }
        // Room for two sentences but not three: the cut falls after "Five six".
        let runs = batches(&clauses, 40);
        assert_eq!(runs[0].last().unwrap().text, "Five six", "{runs:?}");
        assert_eq!(batches(&clauses, 1000).len(), 1);
        assert!(batches(&[], 10).is_empty());
    }

    #[test]
    fn ids_are_padded_with_bos_and_eos() {
        let map: HashMap<char, Vec<i64>> = [
            ('_', vec![0]),
            ('^', vec![1]),
            ('$', vec![2]),
            ('a', vec![14]),
            ('b', vec![15]),
        ]
        .into_iter()
        .collect();
        assert_eq!(phoneme_ids("ab?", &map), vec![1, 0, 14, 0, 15, 0, 2]);
    }
}
