//! The `TranscriptEvent` payload and its mapping to [`Transcript`]s. No I/O.
//!
//! Shape from the Transcribe API Reference (`TranscriptEvent` → `Transcript` → `Result`,
//! `Alternative`, `Item`) as summarised in `STT_PROTOCOLS.md` §8 "S→C: events":
//! `Transcript.Results[]` with `ResultId`, `StartTime`/`EndTime` (seconds), `IsPartial`,
//! `ChannelId`, `LanguageCode`, `Alternatives[]` of `{Transcript, Items[]}`, each item with
//! `StartTime`, `EndTime`, `Type` (`pronunciation` | `punctuation`), `Content`, and optionally
//! `Confidence`, `Speaker`, `Stable`. Every field is optional here: a result that lacks what we
//! need is skipped, never a panic.

use serde::Deserialize;
use waav_plugin_api::{Transcript, Word};

/// A `TranscriptEvent` payload.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TranscriptEvent {
    /// The transcript.
    #[serde(default)]
    pub transcript: TranscriptBody,
}

/// `Transcript`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TranscriptBody {
    /// Results (often one; empty in keep-alive-like events).
    #[serde(default)]
    pub results: Vec<TranscribeResult>,
}

/// `Result`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TranscribeResult {
    /// Stays the same while a segment is revised.
    #[serde(default)]
    pub result_id: Option<String>,
    /// `true` while the segment may still change.
    #[serde(default)]
    pub is_partial: bool,
    /// Alternatives, best first.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    /// With language identification.
    #[serde(default)]
    pub language_code: Option<String>,
}

/// `Alternative`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Alternative {
    /// The text, punctuated.
    #[serde(default)]
    pub transcript: String,
    /// Words and punctuation.
    #[serde(default)]
    pub items: Vec<Item>,
}

/// `Item`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    /// Seconds from the stream start.
    #[serde(default)]
    pub start_time: f64,
    /// Seconds from the stream start.
    #[serde(default)]
    pub end_time: f64,
    /// `pronunciation` or `punctuation`.
    #[serde(default, rename = "Type")]
    pub kind: String,
    /// The word or mark.
    #[serde(default)]
    pub content: String,
    /// 0–1, on final results.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// With `show-speaker-label`.
    #[serde(default)]
    pub speaker: Option<String>,
}

/// Parses a payload; `None` (logged by the caller) when it is not a `TranscriptEvent`.
pub fn parse(payload: &[u8]) -> Option<TranscriptEvent> {
    serde_json::from_slice(payload).ok()
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x.max(0.0)
    } else {
        0.0
    }
}

/// One result as a transcript, times shifted by `offset` seconds (the audio sent on earlier
/// connections of the session). `None` for a result without text.
///
/// - `is_final` = `!IsPartial`; `is_speech_final` = `is_final`: Transcribe ends a result (a
///   segment) only at a pause it judged to end the utterance, or at the end of the stream, and
///   never revises it, so every final is the end of an utterance.
/// - confidence: the mean `Confidence` of the words (finals carry it; partials do not: 0).
/// - words: the `pronunciation` items (punctuation is in the text only).
/// - speaker: the items' `Speaker` when all words share one.
/// - text: `Alternatives[0].Transcript`, or the words joined by spaces when the session asked
///   for no punctuation.
pub fn to_transcript(r: &TranscribeResult, offset: f64, punctuation: bool) -> Option<Transcript> {
    let alt = r.alternatives.first()?;
    let words: Vec<Word> = alt
        .items
        .iter()
        .filter(|i| i.kind == "pronunciation" && !i.content.is_empty())
        .map(|i| Word {
            word: i.content.clone(),
            start: offset + finite(i.start_time),
            end: offset + finite(i.end_time),
            confidence: i.confidence.map_or(0.0, |c| finite(c).min(1.0)) as f32,
            speaker: i.speaker.clone(),
        })
        .collect();
    let text = if punctuation || words.is_empty() {
        alt.transcript.trim().to_owned()
    } else {
        words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if text.is_empty() {
        return None;
    }
    let scored: Vec<f64> = alt
        .items
        .iter()
        .filter(|i| i.kind == "pronunciation")
        .filter_map(|i| i.confidence)
        .filter(|c| c.is_finite())
        .collect();
    let confidence = if scored.is_empty() {
        0.0
    } else {
        (scored.iter().sum::<f64>() / scored.len() as f64).clamp(0.0, 1.0) as f32
    };
    let speaker = words.first().and_then(|w| w.speaker.clone()).filter(|s| {
        words
            .iter()
            .all(|w| w.speaker.as_deref() == Some(s.as_str()))
    });
    let is_final = !r.is_partial;
    Some(Transcript {
        text,
        is_final,
        is_speech_final: is_final,
        confidence,
        words,
        language: r.language_code.clone(),
        speaker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINAL: &str = r#"{"Transcript":{"Results":[{"ResultId":"9c3e","StartTime":0.12,"EndTime":1.05,"IsPartial":false,"ChannelId":"ch_0",
 "Alternatives":[{"Transcript":"Hello world.","Items":[{"StartTime":0.12,"EndTime":0.5,"Type":"pronunciation","Content":"Hello","VocabularyFilterMatch":false,"Confidence":0.99,"Stable":true,"Speaker":"0"},{"StartTime":0.5,"EndTime":1.05,"Type":"pronunciation","Content":"world","VocabularyFilterMatch":false,"Confidence":0.79,"Speaker":"0"},{"StartTime":1.05,"EndTime":1.05,"Type":"punctuation","Content":".","VocabularyFilterMatch":false}],"Entities":[]}]}]}}"#;

    #[test]
    fn maps_results() {
        let ev = parse(FINAL.as_bytes()).unwrap();
        let t = to_transcript(&ev.transcript.results[0], 2.0, true).unwrap();
        assert_eq!(t.text, "Hello world.");
        assert!(t.is_final && t.is_speech_final);
        assert!((t.confidence - 0.89).abs() < 1e-4, "{}", t.confidence);
        assert_eq!(t.words.len(), 2);
        assert!((t.words[1].start - 2.5).abs() < 1e-9);
        assert_eq!(t.speaker.as_deref(), Some("0"));
        let t = to_transcript(&ev.transcript.results[0], 0.0, false).unwrap();
        assert_eq!(t.text, "Hello world");
        // Odd shapes never panic.
        assert!(parse(br#"{"Transcript":{"Results":[{"IsPartial":"yes"}]}}"#).is_none());
        let ev = parse(br#"{"Transcript":{"Results":[{},{"Alternatives":[{}]}]}}"#).unwrap();
        assert!(ev
            .transcript
            .results
            .iter()
            .all(|r| to_transcript(r, 0.0, true).is_none()));
        assert!(parse(b"{}").unwrap().transcript.results.is_empty());
    }
}
