//! One streaming session: audio and control messages out, results in, the graceful close.

use super::messages::{self, Incoming, Results, ServerMessage, CLOSE_STREAM, FINALIZE, KEEP_ALIVE};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use waav_plugin_api::ErrorCategory;
use waav_plugin_api::{PluginError, SttEvent, SttInput, SttIo, Transcript, Word};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{Message, WsConnection};

/// The waits a session observes.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// KeepAlive after this long without sending anything; `None`: never.
    pub keepalive: Option<Duration>,
    /// Fail when sent audio goes unanswered this long; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Bound on the wait for the vendor's close after `CloseStream`.
    pub drain_timeout: Duration,
}

/// Names the provider in messages.
const CTX: &str = "deepgram";

/// Runs the session until the host closes the input (then `CloseStream` and drain) or a fatal
/// error.
pub async fn run(
    conn: WsConnection,
    io: SttIo,
    timing: Timing,
    redactor: Redactor,
) -> Result<(), PluginError> {
    let (tx, mut rx) = conn.split();
    let SttIo { mut input, events } = io;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut last_sent = Instant::now();
    // When the oldest unanswered audio (or Finalize) went out.
    let mut awaiting: Option<Instant> = None;
    // The drain deadline, once CloseStream is sent.
    let mut closing = false;
    let keepalive = sleep_until(timing.keepalive.map_or(far, |k| last_sent + k));
    let response = sleep_until(far);
    let drain = sleep_until(far);
    tokio::pin!(keepalive, response, drain);

    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(Message::Text(text))) => {
                    awaiting = None;
                    match on_text(&text, &redactor) {
                        Step::Skip => {}
                        Step::Emit(ev) => {
                            if events.send(ev).await.is_err() {
                                // The host hung up; dropping the socket closes it.
                                return Ok(());
                            }
                        }
                        Step::Fatal(e) => return Err(e),
                    }
                }
                Ok(Some(other)) => {
                    awaiting = None;
                    tracing::debug!(kind = ?std::mem::discriminant(&other), "deepgram: non-text message skipped");
                }
                Ok(None) if closing => return Ok(()),
                Ok(None) => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{CTX}: the server closed the stream mid-session"),
                        None,
                        &redactor,
                    ))
                }
                Err(e) => return Err(refine(e)),
            },
            inp = input.recv(), if !closing => {
                let now = Instant::now();
                match inp {
                    // Never a zero-length binary frame: Deepgram reads it as end of stream
                    // (STT_PROTOCOLS.md §1 "C→S messages").
                    Some(SttInput::Audio(bytes)) if bytes.is_empty() => continue,
                    Some(SttInput::Audio(bytes)) => tx.send_binary(bytes).await.map_err(refine)?,
                    Some(SttInput::Finalize) => tx.send_text(FINALIZE).await.map_err(refine)?,
                    // Deepgram endpoints itself (`endpointing`, `utterance_end_ms`).
                    Some(_) => continue,
                    None => {
                        tx.send_text(CLOSE_STREAM).await.map_err(refine)?;
                        closing = true;
                        drain.as_mut().reset(now + timing.drain_timeout);
                        continue;
                    }
                }
                last_sent = now;
                if awaiting.is_none() {
                    awaiting = Some(now);
                    if let Some(t) = timing.response_timeout {
                        response.as_mut().reset(now + t);
                    }
                }
            },
            () = &mut keepalive, if timing.keepalive.is_some() && !closing => {
                let every = timing.keepalive.unwrap_or(Duration::MAX);
                let now = Instant::now();
                if now >= last_sent + every {
                    tx.send_text(KEEP_ALIVE).await.map_err(refine)?;
                    last_sent = now;
                }
                keepalive.as_mut().reset(last_sent + every);
            },
            () = &mut response, if awaiting.is_some() && timing.response_timeout.is_some() => {
                let (Some(since), Some(limit)) = (awaiting, timing.response_timeout) else { continue };
                if Instant::now() >= since + limit {
                    return Err(errors::timeout(&format!("{CTX}: no response to streamed audio"), limit, &redactor));
                }
                response.as_mut().reset(since + limit);
            },
            () = &mut drain, if closing => {
                return Err(errors::timeout(
                    &format!("{CTX}: CloseStream sent, the server did not close"),
                    timing.drain_timeout,
                    &redactor,
                ));
            }
        }
    }
}

/// What to do with one text frame.
enum Step {
    Skip,
    Emit(SttEvent),
    Fatal(PluginError),
}

fn on_text(text: &str, redactor: &Redactor) -> Step {
    match messages::parse(text) {
        Some(Incoming::Message(ServerMessage::Results(r))) => match transcript(r) {
            Some(t) => Step::Emit(t.into()),
            None => Step::Skip,
        },
        Some(Incoming::Message(ServerMessage::SpeechStarted(s))) => {
            tracing::trace!(timestamp = s.timestamp, "deepgram: speech started");
            Step::Emit(SttEvent::SpeechStarted)
        }
        Some(Incoming::Message(ServerMessage::UtteranceEnd(u))) => {
            tracing::trace!(last_word_end = u.last_word_end, "deepgram: utterance end");
            Step::Emit(SttEvent::UtteranceEnd)
        }
        Some(Incoming::Message(ServerMessage::Metadata(m))) => {
            tracing::debug!(request_id = %m.request_id, duration = m.duration, "deepgram: metadata");
            Step::Skip
        }
        Some(Incoming::Message(ServerMessage::Unknown)) => {
            tracing::debug!(bytes = text.len(), "deepgram: unknown message type skipped");
            Step::Skip
        }
        Some(Incoming::Message(ServerMessage::Error(e))) => {
            let what = [
                e.message.as_str(),
                e.variant.as_str(),
                e.description.as_str(),
            ]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": ");
            let msg = format!(
                "{CTX}: error: {}",
                errors::excerpt(what.as_bytes(), errors::BODY_EXCERPT_LIMIT)
            );
            let category = if what.contains("DATA-") {
                ErrorCategory::Config
            } else {
                ErrorCategory::Permanent
            };
            Step::Fatal(errors::make(category, msg, None, redactor))
        }
        Some(Incoming::Error(e)) => {
            let code = e.error_code.unwrap_or(0);
            let what = [
                e.err_code.as_deref(),
                e.error_message.as_deref(),
                e.err_msg.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
            let category = match code {
                // As for the upgrade: a 400 means bad parameters, a config problem.
                400 => ErrorCategory::Config,
                c => errors::status_category(c).unwrap_or(ErrorCategory::Permanent),
            };
            let msg = format!(
                "{CTX}: error {code}: {}",
                errors::excerpt(what.as_bytes(), errors::BODY_EXCERPT_LIMIT)
            );
            Step::Fatal(errors::make(category, msg, None, redactor))
        }
        None => {
            tracing::debug!(bytes = text.len(), "deepgram: malformed message skipped");
            Step::Skip
        }
    }
}

/// Deepgram's meanings for the generic categories the kit derives from transport failures
/// (close reasons from STT_PROTOCOLS.md §1 "Errors and limits"; the kit's messages carry the
/// close code, reason and HTTP status).
pub fn refine(e: PluginError) -> PluginError {
    let inner = match &e {
        PluginError::Config(m)
        | PluginError::Auth(m)
        | PluginError::Transient(m)
        | PluginError::Permanent(m)
        | PluginError::Timeout(m)
        | PluginError::Panicked(m) => m,
        PluginError::RateLimited { message, .. } => message,
    };
    // 1011 NET-0001: no audio or KeepAlive within 10 s, the vendor's idle timeout.
    if inner.contains("NET-0001") {
        return PluginError::Timeout(inner.clone());
    }
    // 1008 DATA-0000: the payload could not be decoded as the declared audio, so the session's
    // format is wrong (the kit's default for 1008 is Auth).
    if inner.contains("code 1008") && inner.contains("DATA-") {
        return PluginError::Config(inner.clone());
    }
    // A 400 at the upgrade: bad parameters or model (the kit's default for 400 is Permanent).
    if matches!(e, PluginError::Permanent(_)) && inner.contains("handshake: HTTP 400") {
        return PluginError::Config(inner.clone());
    }
    e
}

/// Normalises a `Results` into a transcript; `None` for an empty interim (Deepgram sends
/// those for silence).
pub fn transcript(r: Results) -> Option<Transcript> {
    let alt = r
        .channel
        .alternatives
        .into_iter()
        .next()
        .unwrap_or_default();
    if !r.is_final && alt.transcript.trim().is_empty() {
        return None;
    }
    let language = alt
        .languages
        .into_iter()
        .next()
        .or_else(|| alt.words.iter().find_map(|w| w.language.clone()));
    let words: Vec<Word> = alt
        .words
        .into_iter()
        .map(|w| Word {
            word: w.punctuated_word.unwrap_or(w.word),
            start: w.start,
            end: w.end,
            confidence: unit(w.confidence),
            speaker: w.speaker.as_ref().and_then(speaker_label),
        })
        .collect();
    let speaker = majority_speaker(&words);
    Some(Transcript {
        text: alt.transcript,
        is_final: r.is_final,
        // A Finalize asked for the utterance to end; its result closes the turn too.
        is_speech_final: r.speech_final || (r.is_final && r.from_finalize),
        confidence: unit(alt.confidence),
        words,
        language,
        speaker,
    })
}

fn unit(x: f64) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0) as f32
    } else {
        0.0
    }
}

fn speaker_label(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(match n.as_u64() {
            Some(i) => i.to_string(),
            None => n.to_string(),
        }),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The speaker of most words (ties: the first seen), when any word has one.
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

    fn results(json: &str) -> Results {
        match messages::parse(json) {
            Some(Incoming::Message(ServerMessage::Results(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_results() {
        let t = transcript(results(
            r#"{"type":"Results","is_final":true,"speech_final":false,"channel":{"alternatives":[
            {"transcript":"Hello world.","confidence":1.5,"words":[
              {"word":"hello","start":0.1,"end":0.4,"confidence":0.9,"punctuated_word":"Hello","speaker":1},
              {"word":"world","start":0.4,"end":0.8,"confidence":0.8,"punctuated_word":"world.","speaker":0},
              {"word":"again","start":0.8,"end":0.9,"confidence":0.8,"speaker":1}]}]}}"#,
        ))
        .unwrap();
        assert_eq!(t.text, "Hello world.");
        assert!(t.is_final && !t.is_speech_final);
        assert_eq!(t.confidence, 1.0);
        assert_eq!(t.words[0].word, "Hello");
        assert_eq!(t.words[2].word, "again");
        assert_eq!(t.words[1].speaker.as_deref(), Some("0"));
        assert_eq!(t.speaker.as_deref(), Some("1"));
        assert_eq!(t.language, None);

        let empty =
            r#"{"type":"Results","is_final":false,"channel":{"alternatives":[{"transcript":""}]}}"#;
        assert!(transcript(results(empty)).is_none());
        let fin = r#"{"type":"Results","is_final":true,"from_finalize":true,"channel":{"alternatives":[]}}"#;
        let t = transcript(results(fin)).unwrap();
        assert!(t.is_final && t.is_speech_final && t.text.is_empty());
    }

    #[test]
    fn refines_kit_errors() {
        let e = refine(PluginError::Auth(
            "deepgram: closed with code 1008: DATA-0000 cannot decode".into(),
        ));
        assert!(matches!(e, PluginError::Config(m) if m.contains("DATA-0000")));
        let e = refine(PluginError::Transient(
            "deepgram: closed with code 1011: NET-0001".into(),
        ));
        assert!(matches!(e, PluginError::Timeout(_)));
        let e = refine(PluginError::Permanent(
            "deepgram: handshake: HTTP 400 Bad Request: bad model".into(),
        ));
        assert!(matches!(e, PluginError::Config(_)));
        let e = refine(PluginError::Auth("deepgram: closed with code 1008".into()));
        assert!(matches!(e, PluginError::Auth(_)));
        let e = refine(PluginError::Transient(
            "deepgram: closed with code 1011: NET-0000".into(),
        ));
        assert!(matches!(e, PluginError::Transient(_)));
    }
}
