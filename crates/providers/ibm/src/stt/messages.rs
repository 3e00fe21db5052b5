//! The `/v1/recognize` WebSocket messages (no I/O).
//!
//! Shapes from cloud.ibm.com docs "The WebSocket interface" (sections "Send audio and receive
//! recognition results", "Wait for the listening state", "Results"), the API reference
//! `SpeechRecognitionResults` / `SpeechRecognitionResult` / `SpeechRecognitionAlternative` /
//! `SpeakerLabelsResult`, and watson-developer-cloud/python-sdk
//! `ibm_watson/websocket/recognize_listener.py` (start/stop actions, `state`, `results`,
//! `error` handling), summarised in STT_PROTOCOLS.md §6.

use serde::Serialize;
use serde_json::{Map, Value};
use waav_plugin_api::{Transcript, Word};

/// `{"action": "stop"}`: ends the current request; its final results follow, then
/// `{"state": "listening"}` (recognize_listener.py `on_data`/`send_audio` end).
pub const STOP: &str = r#"{"action":"stop"}"#;

/// The `start` message opening each request (docs "Open a connection and send a start
/// message"; every field but `action` and `content-type` optional).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Start {
    /// Always `start`.
    pub action: &'static str,
    /// `audio/l16;rate=N;channels=1;endianness=little-endian`, `audio/mulaw;rate=N`, ….
    #[serde(rename = "content-type")]
    pub content_type: String,
    /// Interim hypotheses (`final: false`) as they form.
    pub interim_results: bool,
    /// Per-word confidences on final results (`word_confidence: [[w, c]]`).
    pub word_confidence: bool,
    /// Per-word timings (`timestamps: [[w, start, end]]`).
    pub timestamps: bool,
    /// Dates, times, numbers… as digits and symbols.
    pub smart_formatting: bool,
    /// Seconds of speechless audio before the service closes the session; `-1` is never.
    pub inactivity_timeout: i64,
    /// Diarisation (`speaker_labels` array in results).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub speaker_labels: bool,
    /// Further documented fields (`profanity_filter`, `end_of_phrase_silence_time`,
    /// `split_transcript_at_phrase_end`, `speech_detector_sensitivity`,
    /// `background_audio_suppression`, `low_latency`, …) and operator extras.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Start {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A message from the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `{"state": "listening"}`: ready after `start`, and again after each request's finals.
    Listening,
    /// Another state value (none documented; logged).
    OtherState(String),
    /// `{"results": […], "result_index": n, "speaker_labels": […]}`.
    Results(Vec<Transcript>),
    /// `{"error": "…"}`, sent just before the service closes the socket.
    Error(String),
    /// Anything else: `{"warnings": […]}` alone, speaker labels alone, unknown shapes.
    Other,
}

/// Parses one text frame; `None` for text that is not a JSON object.
pub fn parse(text: &str) -> Option<Incoming> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    if let Some(e) = obj.get("error") {
        let msg = match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Some(Incoming::Error(msg));
    }
    if let Some(w) = obj.get("warnings").and_then(Value::as_array) {
        for w in w {
            tracing::debug!(warning = %w, "ibm stt: service warning");
        }
    }
    if let Some(state) = obj.get("state") {
        return Some(match state.as_str() {
            Some("listening") => Incoming::Listening,
            Some(s) => Incoming::OtherState(s.to_owned()),
            None => Incoming::Other,
        });
    }
    if let Some(results) = obj.get("results").and_then(Value::as_array) {
        let labels = speaker_labels(obj.get("speaker_labels"));
        let out = results
            .iter()
            .filter_map(|r| transcript(r, &labels))
            .collect();
        return Some(Incoming::Results(out));
    }
    Some(Incoming::Other)
}

/// One `speaker_labels` entry: `{"from": s, "to": s, "speaker": n, "confidence": c, "final": b}`
/// (API reference `SpeakerLabelsResult`); `from`/`to` equal the word's timestamps.
#[derive(Debug, Clone, PartialEq)]
struct SpeakerLabel {
    from: f64,
    to: f64,
    speaker: String,
}

fn speaker_labels(v: Option<&Value>) -> Vec<SpeakerLabel> {
    let Some(arr) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    arr.iter()
        .filter_map(|l| {
            let speaker = match l.get("speaker")? {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return None,
            };
            Some(SpeakerLabel {
                from: l.get("from")?.as_f64()?,
                to: l.get("to")?.as_f64()?,
                speaker,
            })
        })
        .collect()
}

/// Maps one `SpeechRecognitionResult`: its first alternative's transcript (IBM ends it with a
/// space), confidence (final results only; interims use the mean word confidence, else 0),
/// words from `timestamps` joined by position with `word_confidence`, speakers from the
/// labels. `final` becomes both `is_final` and `is_speech_final`: a final result is IBM's end
/// of a phrase (its endpointing, `end_of_phrase_silence_time`), the only end-of-turn signal it
/// gives. `None` for an empty interim.
fn transcript(r: &Value, labels: &[SpeakerLabel]) -> Option<Transcript> {
    let is_final = r.get("final").and_then(Value::as_bool).unwrap_or(false);
    let alt = r
        .get("alternatives")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let text = alt
        .and_then(|a| a.get("transcript"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    if !is_final && text.is_empty() {
        return None;
    }
    if let Some(reason) = r.get("end_of_utterance").and_then(Value::as_str) {
        tracing::trace!(reason, "ibm stt: end of utterance");
    }
    let confs: Vec<f64> = alt
        .and_then(|a| a.get("word_confidence"))
        .and_then(Value::as_array)
        .map(|wc| {
            wc.iter()
                .map(|e| e.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN))
                .collect()
        })
        .unwrap_or_default();
    let alt_conf = alt
        .and_then(|a| a.get("confidence"))
        .and_then(Value::as_f64);
    let words: Vec<Word> = alt
        .and_then(|a| a.get("timestamps"))
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let word = e.get(0)?.as_str()?.to_owned();
                    let start = finite(e.get(1)?.as_f64()?)?;
                    let end = finite(e.get(2)?.as_f64()?)?;
                    let confidence = confs
                        .get(i)
                        .copied()
                        .filter(|c| c.is_finite())
                        .or(alt_conf)
                        .map_or(0.0, unit);
                    let speaker = labels
                        .iter()
                        .find(|l| (l.from - start).abs() < 1e-6 && (l.to - end).abs() < 1e-6)
                        .map(|l| l.speaker.clone());
                    Some(Word {
                        word,
                        start,
                        end,
                        confidence,
                        speaker,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let confidence = match alt_conf {
        Some(c) => unit(c),
        None => {
            let known: Vec<f64> = confs.iter().copied().filter(|c| c.is_finite()).collect();
            if known.is_empty() {
                0.0
            } else {
                unit(known.iter().sum::<f64>() / known.len() as f64)
            }
        }
    };
    let speaker = majority_speaker(&words);
    Some(Transcript {
        text,
        is_final,
        is_speech_final: is_final,
        confidence,
        words,
        language: None,
        speaker,
    })
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn unit(x: f64) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0) as f32
    } else {
        0.0
    }
}

/// The speaker of most words (ties: the first seen).
fn majority_speaker(words: &[Word]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for s in words.iter().filter_map(|w| w.speaker.as_deref()) {
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for (k, n) in counts {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((k, n));
        }
    }
    best.map(|(k, _)| k.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(json: &str) -> Vec<Transcript> {
        match parse(json) {
            Some(Incoming::Results(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn final_with_words_confidences_and_speakers() {
        // The documented example (STT_PROTOCOLS.md §6) plus word_confidence and speaker labels.
        let t = results(
            r#"{"result_index":0,"results":[{"final":true,"alternatives":[{"transcript":"name the mayflower ","confidence":0.94,
            "timestamps":[["name",0.1,0.4],["the",0.4,0.5],["mayflower",0.5,1.2]],
            "word_confidence":[["name",0.9],["the",1.0],["mayflower",0.8]]}]}],
            "speaker_labels":[{"from":0.1,"to":0.4,"speaker":0,"confidence":0.5,"final":true},
            {"from":0.4,"to":0.5,"speaker":1,"confidence":0.5,"final":true},
            {"from":0.5,"to":1.2,"speaker":1,"confidence":0.5,"final":true}]}"#,
        );
        assert_eq!(t.len(), 1);
        let t = &t[0];
        assert_eq!(t.text, "name the mayflower");
        assert!(t.is_final && t.is_speech_final);
        assert!((t.confidence - 0.94).abs() < 1e-6);
        assert_eq!(t.words.len(), 3);
        assert_eq!(t.words[2].word, "mayflower");
        assert_eq!((t.words[2].start, t.words[2].end), (0.5, 1.2));
        assert!((t.words[0].confidence - 0.9).abs() < 1e-6);
        assert_eq!(t.words[0].speaker.as_deref(), Some("0"));
        assert_eq!(t.speaker.as_deref(), Some("1"));
    }

    #[test]
    fn interims_states_errors_and_junk() {
        let t = results(
            r#"{"result_index":1,"results":[{"final":false,"alternatives":[{"transcript":"name the "}]}]}"#,
        );
        assert_eq!(t[0].text, "name the");
        assert!(!t[0].is_final && !t[0].is_speech_final);
        assert_eq!(t[0].confidence, 0.0);
        assert!(results(r#"{"results":[{"final":false,"alternatives":[]}]}"#).is_empty());
        assert_eq!(parse(r#"{"state":"listening"}"#), Some(Incoming::Listening));
        assert_eq!(
            parse(r#"{"error":"Session timed out."}"#),
            Some(Incoming::Error("Session timed out.".into()))
        );
        assert_eq!(
            parse(r#"{"warnings":["Unknown arguments: x."]}"#),
            Some(Incoming::Other)
        );
        assert_eq!(parse("[1,2]"), None);
        assert_eq!(parse("{not json"), None);
        // Wrong types inside never panic; bad entries are dropped.
        let t = results(
            r#"{"results":[{"final":true,"alternatives":[{"transcript":5,"confidence":"x",
            "timestamps":[["a","b",1],[1,2,3],["ok",0.1,0.2]],"word_confidence":"no"}]}]}"#,
        );
        assert_eq!(t[0].words.len(), 1);
        assert_eq!(t[0].text, "");
    }

    #[test]
    fn start_message_shape() {
        let mut extra = Map::new();
        extra.insert("low_latency".into(), Value::Bool(true));
        let s = Start {
            action: "start",
            content_type: "audio/l16;rate=16000;channels=1;endianness=little-endian".into(),
            interim_results: true,
            word_confidence: true,
            timestamps: true,
            smart_formatting: false,
            inactivity_timeout: -1,
            speaker_labels: false,
            extra,
        };
        let v: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["action"], "start");
        assert_eq!(
            v["content-type"],
            "audio/l16;rate=16000;channels=1;endianness=little-endian"
        );
        assert_eq!(v["inactivity_timeout"], -1);
        assert_eq!(v["low_latency"], true);
        assert!(v.get("speaker_labels").is_none());
    }
}
