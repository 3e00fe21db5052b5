//! Turn messages → normalised transcripts (no I/O).
//!
//! AssemblyAI's only stable segment is the turn: every `Turn` message with `end_of_turn:false`
//! is a partial (its `words` may still change; `transcript` holds only the finalised words), and
//! the `end_of_turn:true` one closes it. So here:
//!
//! - a partial Turn → an interim transcript (`is_final:false`), its text all the words so far,
//!   non-final ones included (more responsive than `transcript`, which lags by a word);
//! - the end-of-turn Turn → the one final (`is_final:true`, `is_speech_final:true`);
//! - an end-of-turn Turn with no text → [`SttEvent::UtteranceEnd`] (e.g. `ForceEndpoint` during
//!   silence), never an empty final.
//!
//! **Formatted vs unformatted (no duplicate final).** With `format_turns=true` the service sends
//! the unformatted end-of-turn Turn and then "an additional message where `turn_is_formatted:
//! true`" for the same `turn_order` (docs "Message Sequence": "End of turn formatting"). Emitting
//! both as finals would give the client the same turn twice. Our rule, keyed on `turn_order` as the
//! docs advise:
//!
//! - `format_turns` off: the first end-of-turn Turn is the final; anything later for that
//!   `turn_order` (a formatted copy) is dropped.
//! - `format_turns` on: the unformatted end-of-turn Turn is emitted as an *interim* carrying the
//!   whole turn text (captions update at once), and the formatted one becomes the final. If the
//!   formatted Turn does not come (a newer turn starts, the session ends, or `format_wait` passes)
//!   the held unformatted text is emitted as the final instead. Models that format in one step
//!   (`u3-rt-pro`: "`turn_is_formatted` is true on end-of-turn transcripts. There is no separate
//!   formatting step") send only the formatted end-of-turn Turn, which is then final at once.
//!   Whatever the order the two arrive in (not documented), only the first final counts.
//!
//! LiveKit's AssemblyAI plugin makes the same choice (`stt.py`: a final only when `end_of_turn`
//! and, with `format_turns`, `turn_is_formatted`).

use crate::messages::Turn;
use waav_plugin_api::{SttEvent, Transcript, Word};

/// Tracks finalised turns so each turn yields exactly one final.
#[derive(Debug, Default)]
pub struct TurnMapper {
    format_turns: bool,
    /// The highest `turn_order` already finalised.
    finalized: Option<u64>,
    /// With `format_turns`: an unformatted end of turn waiting for its formatted copy.
    pending: Option<(u64, Transcript)>,
}

/// At most two events come out of one Turn (a flushed pending final, then this turn's result).
pub type Out = [Option<SttEvent>; 2];

impl TurnMapper {
    /// A mapper for a session with or without `format_turns`.
    pub fn new(format_turns: bool) -> Self {
        Self {
            format_turns,
            ..Self::default()
        }
    }

    /// Whether an unformatted final is held back.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The `turn_order` of the held-back final, if any.
    pub fn pending_order(&self) -> Option<u64> {
        self.pending.as_ref().map(|(o, _)| *o)
    }

    /// Maps one Turn message.
    pub fn on_turn(&mut self, turn: Turn) -> Out {
        let order = turn.turn_order;
        if self.finalized.is_some_and(|f| order <= f) {
            // Already finalised: a formatted copy after the final, or a late partial.
            return [None, None];
        }
        let mut out: Out = [None, None];
        if self.pending.as_ref().is_some_and(|(p, _)| order > *p) {
            out[0] = self.flush();
        }
        if !turn.end_of_turn {
            out[1] = interim(&turn).map(SttEvent::from);
            return out;
        }
        let fin = final_of(&turn);
        if fin.text.trim().is_empty() {
            self.pending = None;
            self.finalized = Some(order);
            out[1] = Some(SttEvent::UtteranceEnd);
        } else if !self.format_turns || turn.turn_is_formatted {
            self.pending = None;
            self.finalized = Some(order);
            out[1] = Some(fin.into());
        } else {
            let mut early = fin.clone();
            early.is_final = false;
            early.is_speech_final = false;
            self.pending = Some((order, fin));
            out[1] = Some(early.into());
        }
        out
    }

    /// The held unformatted final, if any (its formatted copy did not come in time).
    pub fn flush(&mut self) -> Option<SttEvent> {
        let (order, t) = self.pending.take()?;
        self.finalized = Some(order);
        Some(t.into())
    }
}

fn words(turn: &Turn) -> Vec<Word> {
    turn.words
        .iter()
        .map(|w| Word {
            word: w.text.clone(),
            start: w.start.max(0.0) / 1000.0,
            end: w.end.max(0.0) / 1000.0,
            confidence: unit(w.confidence),
            speaker: w.speaker.clone(),
        })
        .collect()
}

fn unit(v: f64) -> f32 {
    if v.is_finite() {
        v.clamp(0.0, 1.0) as f32
    } else {
        0.0
    }
}

/// Mean word confidence (the Turn carries no overall one; `end_of_turn_confidence` is the
/// probability that the turn ended, not of the text).
fn confidence(words: &[Word]) -> f32 {
    if words.is_empty() {
        return 0.0;
    }
    let sum: f32 = words.iter().map(|w| w.confidence).sum();
    (sum / words.len() as f32).clamp(0.0, 1.0)
}

fn joined(turn: &Turn) -> String {
    let mut s = String::with_capacity(turn.words.iter().map(|w| w.text.len() + 1).sum());
    for w in turn.words.iter().filter(|w| !w.text.is_empty()) {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&w.text);
    }
    s
}

fn transcript(turn: &Turn, text: String, is_final: bool) -> Transcript {
    let words = words(turn);
    Transcript {
        text,
        is_final,
        is_speech_final: is_final,
        confidence: confidence(&words),
        words,
        language: turn.language_code.clone().filter(|l| !l.is_empty()),
        speaker: turn.speaker_label.clone().filter(|s| !s.is_empty()),
    }
}

fn interim(turn: &Turn) -> Option<Transcript> {
    let text = if turn.words.is_empty() {
        turn.transcript.clone()
    } else {
        joined(turn)
    };
    (!text.trim().is_empty()).then(|| transcript(turn, text, false))
}

fn final_of(turn: &Turn) -> Transcript {
    let text = if turn.transcript.trim().is_empty() {
        joined(turn)
    } else {
        turn.transcript.clone()
    };
    transcript(turn, text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::TurnWord;

    fn turn(order: u64, text: &str, eot: bool, formatted: bool) -> Turn {
        Turn {
            turn_order: order,
            turn_is_formatted: formatted,
            end_of_turn: eot,
            transcript: text.into(),
            words: text
                .split_whitespace()
                .enumerate()
                .map(|(i, w)| TurnWord {
                    text: w.into(),
                    start: i as f64 * 100.0,
                    end: i as f64 * 100.0 + 80.0,
                    confidence: 0.5,
                    word_is_final: true,
                    speaker: None,
                })
                .collect(),
            ..Turn::default()
        }
    }

    fn finals(out: &Out) -> Vec<(String, bool)> {
        out.iter()
            .flatten()
            .filter_map(|e| match e {
                SttEvent::Transcript(t) => Some((t.text.clone(), t.is_final)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unformatted_mode_one_final_per_turn() {
        let mut m = TurnMapper::new(false);
        assert_eq!(
            finals(&m.on_turn(turn(0, "hi my", false, false))),
            [("hi my".into(), false)]
        );
        assert_eq!(
            finals(&m.on_turn(turn(0, "hi my name", true, false))),
            [("hi my name".into(), true)]
        );
        assert!(finals(&m.on_turn(turn(0, "Hi my name.", true, true))).is_empty());
    }

    #[test]
    fn formatted_mode_waits_for_the_formatted_copy() {
        let mut m = TurnMapper::new(true);
        assert_eq!(
            finals(&m.on_turn(turn(0, "hi there", true, false))),
            [("hi there".into(), false)]
        );
        assert!(m.is_pending());
        assert_eq!(
            finals(&m.on_turn(turn(0, "Hi there.", true, true))),
            [("Hi there.".into(), true)]
        );
        assert!(!m.is_pending());
        // A missing formatted copy: the next turn flushes the held text as the final.
        m.on_turn(turn(1, "again", true, false));
        let out = m.on_turn(turn(2, "next", false, false));
        assert_eq!(
            finals(&out),
            [("again".into(), true), ("next".into(), false)]
        );
        // Formatted first, unformatted after: still one final.
        assert_eq!(
            finals(&m.on_turn(turn(3, "Yes.", true, true))),
            [("Yes.".into(), true)]
        );
        assert!(finals(&m.on_turn(turn(3, "yes", true, false))).is_empty());
    }

    #[test]
    fn empty_end_of_turn_is_an_utterance_end() {
        let mut m = TurnMapper::new(true);
        let out = m.on_turn(turn(0, "", true, false));
        assert_eq!(out[1], Some(SttEvent::UtteranceEnd));
        assert!(m.flush().is_none());
    }
}
