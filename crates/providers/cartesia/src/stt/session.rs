//! One `/stt/websocket` session: binary audio and the `finalize` command out, transcripts in,
//! the graceful end (the close command, the remaining transcripts, `done`).
//!
//! Protocol (STT_PROTOCOLS.md §4; SDK 2.0.17 `stt/_async_websocket.py` `transcribe`, SDK 4.0.1
//! `resources/stt/manual_finalize.py` docstring): audio is raw binary frames in the declared
//! encoding; `finalize` flushes the buffered audio into final transcripts and is answered by
//! `flush_done`; `done` (or `close`, by API version) makes the server send what is left, then
//! `done`, then close. Each final's `text` is the segment since the previous final, so every
//! final is emitted as its own segment; ink-whisper also finalizes by itself after
//! `max_silence_duration_secs` of silence. A final therefore ends the utterance.

use super::messages::{self, ErrorMessage, ServerMessage, TranscriptMessage, FINALIZE};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use waav_plugin_api::{
    ErrorCategory, PluginError, SttEvent, SttInput, SttIo, Transcript, VadEvent, Word,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{Message, WsReceiver, WsSender};

/// Names the provider in messages.
const CTX: &str = "cartesia";

/// What a session needs besides its socket.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `done` or `close`.
    pub close_command: &'static str,
    /// Send `finalize` when the host's VAD reports the end of speech.
    pub finalize_on_vad: bool,
    /// A `finalize` unanswered this long fails the session; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Bound on the wait for `done` after the close command.
    pub drain_timeout: Duration,
}

/// The error for a vendor `error` message: its `status_code` when it has one (2025-11-04 and
/// later), else what its message says.
pub fn vendor_error(e: &ErrorMessage, redactor: &Redactor) -> PluginError {
    let message = e.message.as_deref().unwrap_or("");
    let category = match e.status_code {
        // Bad parameters or audio: the session's configuration (the kit's default is
        // Permanent).
        Some(400 | 422) => ErrorCategory::Config,
        Some(s) => errors::status_category(s).unwrap_or(ErrorCategory::Permanent),
        None => message_category(message),
    };
    let what = [e.title.as_deref(), Some(message), e.error_code.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let mut msg = format!("{CTX}: error");
    if let Some(s) = e.status_code {
        msg.push_str(&format!(" {s}"));
    }
    let what = errors::excerpt(what.as_bytes(), errors::BODY_EXCERPT_LIMIT);
    if !what.is_empty() {
        msg.push_str(": ");
        msg.push_str(&what);
    }
    errors::make(category, msg, None, redactor)
}

/// The category an older (message-only) error reads as.
fn message_category(message: &str) -> ErrorCategory {
    let m = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if has(&[
        "api key",
        "unauthori",
        "authenticat",
        "forbidden",
        "credits",
    ]) {
        ErrorCategory::Auth
    } else if has(&["rate limit", "too many", "concurrency"]) {
        ErrorCategory::RateLimited
    } else if has(&["timed out", "timeout", "idle"]) {
        ErrorCategory::Timeout
    } else if has(&["invalid", "unsupported", "must be", "not supported"]) {
        ErrorCategory::Config
    } else {
        ErrorCategory::Permanent
    }
}

/// The kit's generic handshake categories, refined: a 400 at the upgrade means bad parameters.
pub fn refine(e: PluginError) -> PluginError {
    match e {
        PluginError::Permanent(m) if m.contains("handshake: HTTP 400") => PluginError::Config(m),
        other => other,
    }
}

/// Session state outside the socket.
struct State {
    redactor: Redactor,
    /// Audio bytes sent since the last `finalize`.
    unflushed: usize,
    /// `finalize`s not yet answered by `flush_done`.
    awaiting: usize,
    /// When the oldest unanswered `finalize` went out (refreshed by any server message).
    awaiting_since: Option<Instant>,
    /// Interim text has been seen since the last final.
    in_speech: bool,
}

enum Step {
    Emit(Vec<SttEvent>),
    Done,
    Fatal(PluginError),
}

impl State {
    fn on_text(&mut self, text: &str) -> Step {
        let mut out = Vec::new();
        match messages::parse(text) {
            Some(ServerMessage::Transcript(t)) => self.transcript(t, &mut out),
            Some(ServerMessage::FlushDone) => {
                self.awaiting = self.awaiting.saturating_sub(1);
                if self.in_speech {
                    // Speech was heard but the flush produced no final text.
                    self.in_speech = false;
                    out.push(SttEvent::UtteranceEnd);
                }
            }
            Some(ServerMessage::Done) => return Step::Done,
            Some(ServerMessage::Error(e)) => return Step::Fatal(vendor_error(&e, &self.redactor)),
            Some(ServerMessage::Other(t)) => {
                tracing::debug!(kind = %t, "cartesia: message type not used, skipped");
            }
            None => tracing::debug!(bytes = text.len(), "cartesia: malformed message skipped"),
        }
        Step::Emit(out)
    }

    fn transcript(&mut self, t: TranscriptMessage, out: &mut Vec<SttEvent>) {
        let text = t.text.trim();
        if text.is_empty() {
            if t.is_final && self.in_speech {
                self.in_speech = false;
                out.push(SttEvent::UtteranceEnd);
            }
            return;
        }
        if !t.is_final {
            if !self.in_speech {
                // The socket has no speech-start event; the first words of a segment are one.
                self.in_speech = true;
                out.push(SttEvent::SpeechStarted);
            }
            out.push(Transcript::interim(text, 0.0).into());
            return;
        }
        self.in_speech = false;
        out.push(final_transcript(t).into());
    }
}

/// A final `transcript` as a contract final (the segment ends the utterance; the vendor gives
/// no confidence, so it is 0).
pub fn final_transcript(t: TranscriptMessage) -> Transcript {
    let words = t
        .words
        .unwrap_or_default()
        .into_iter()
        .filter(|w| !w.word.trim().is_empty())
        .map(|w| {
            let start = secs(w.start);
            Word {
                word: w.word.trim().to_owned(),
                start,
                end: secs(w.end).max(start),
                confidence: 0.0,
                speaker: None,
            }
        })
        .collect();
    Transcript {
        text: t.text.trim().to_owned(),
        is_final: true,
        is_speech_final: true,
        confidence: 0.0,
        words,
        language: t.language.filter(|l| !l.is_empty()),
        speaker: None,
    }
}

fn secs(x: Option<f64>) -> f64 {
    x.filter(|v| v.is_finite() && *v >= 0.0).unwrap_or(0.0)
}

/// Runs the session until the host closes the input (then the close command and `done`) or a
/// fatal error.
pub async fn run(
    tx: WsSender,
    mut rx: WsReceiver,
    io: SttIo,
    setup: Setup,
    redactor: Redactor,
) -> Result<(), PluginError> {
    let SttIo { mut input, events } = io;
    let mut st = State {
        redactor: redactor.clone(),
        unflushed: 0,
        awaiting: 0,
        awaiting_since: None,
        in_speech: false,
    };
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut closing = false;
    let response = sleep_until(far);
    let drain = sleep_until(far);
    tokio::pin!(response, drain);

    loop {
        if let (Some(since), Some(limit)) = (st.awaiting_since, setup.response_timeout) {
            response.as_mut().reset(since + limit);
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(Message::Text(text))) => {
                    let step = st.on_text(&text);
                    st.awaiting_since = (st.awaiting > 0).then(Instant::now);
                    match step {
                        Step::Emit(evs) => {
                            for ev in evs {
                                if events.send(ev).await.is_err() {
                                    // The host hung up; dropping the socket closes it.
                                    return Ok(());
                                }
                            }
                        }
                        Step::Done if closing => return Ok(()),
                        Step::Done => tracing::debug!("cartesia: done before the close command"),
                        Step::Fatal(e) => return Err(e),
                    }
                }
                Ok(Some(_)) => tracing::debug!("cartesia: binary message skipped"),
                // A normal close after the close command: everything was sent.
                Ok(None) if closing => return Ok(()),
                Ok(None) => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{CTX}: the server closed the stream mid-session"),
                        None,
                        &redactor,
                    ))
                }
                Err(e) => return Err(e),
            },
            inp = input.recv(), if !closing => {
                let now = Instant::now();
                match inp {
                    Some(SttInput::Audio(bytes)) if bytes.is_empty() => {}
                    Some(SttInput::Audio(bytes)) => {
                        st.unflushed += bytes.len();
                        tx.send_binary(bytes).await?;
                    }
                    Some(SttInput::Finalize) => flush(&tx, &mut st, now).await?,
                    Some(SttInput::Vad(VadEvent::SpeechEnded { .. })) if setup.finalize_on_vad => {
                        flush(&tx, &mut st, now).await?
                    }
                    Some(_) => {}
                    None => {
                        tx.send_text(setup.close_command).await?;
                        closing = true;
                        drain.as_mut().reset(now + setup.drain_timeout);
                    }
                }
            },
            () = &mut response, if st.awaiting_since.is_some() && setup.response_timeout.is_some() && !closing => {
                let (Some(since), Some(limit)) = (st.awaiting_since, setup.response_timeout) else { continue };
                if Instant::now() >= since + limit {
                    return Err(errors::timeout(&format!("{CTX}: finalize unanswered"), limit, &redactor));
                }
            },
            () = &mut drain, if closing => {
                return Err(errors::timeout(
                    &format!("{CTX}: {} sent, no done", setup.close_command),
                    setup.drain_timeout,
                    &redactor,
                ));
            }
        }
    }
}

/// Sends `finalize` when audio went out since the last one.
async fn flush(tx: &WsSender, st: &mut State, now: Instant) -> Result<(), PluginError> {
    if st.unflushed == 0 {
        return Ok(());
    }
    st.unflushed = 0;
    st.awaiting += 1;
    st.awaiting_since.get_or_insert(now);
    tx.send_text(FINALIZE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            redactor: Redactor::new(),
            unflushed: 0,
            awaiting: 0,
            awaiting_since: None,
            in_speech: false,
        }
    }

    fn emitted(step: Step) -> Vec<SttEvent> {
        match step {
            Step::Emit(e) => e,
            _ => panic!("not an emit"),
        }
    }

    #[test]
    fn transcripts_map_to_interims_and_speech_finals() {
        let mut st = state();
        assert!(
            emitted(st.on_text(r#"{"type":"transcript","text":"","is_final":false}"#)).is_empty()
        );
        let evs = emitted(st.on_text(r#"{"type":"transcript","text":" Hello","is_final":false}"#));
        assert_eq!(evs[0], SttEvent::SpeechStarted);
        let evs = emitted(st.on_text(
            r#"{"type":"transcript","request_id":"r","text":" Hello world","is_final":true,"language":"en",
            "words":[{"word":" Hello","start":0.2,"end":0.6},{"word":"world","start":0.6,"end":0.5}]}"#,
        ));
        let SttEvent::Transcript(t) = &evs[0] else {
            panic!()
        };
        assert_eq!(t.text, "Hello world");
        assert!(t.is_final && t.is_speech_final);
        assert_eq!(t.words[0].word, "Hello");
        assert_eq!(t.words[1].end, 0.6, "end never before start");
        assert_eq!(t.language.as_deref(), Some("en"));
        // Interims without a final, then flush_done: the utterance ended without text.
        emitted(st.on_text(r#"{"type":"transcript","text":"uh","is_final":false}"#));
        st.awaiting = 1;
        let evs = emitted(st.on_text(r#"{"type":"flush_done","request_id":"r"}"#));
        assert_eq!(evs, [SttEvent::UtteranceEnd]);
        assert_eq!(st.awaiting, 0);
        assert!(matches!(st.on_text(r#"{"type":"done"}"#), Step::Done));
    }

    #[test]
    fn errors_are_categorised() {
        let r = Redactor::new();
        let e = |json: &str| match messages::parse(json) {
            Some(ServerMessage::Error(m)) => vendor_error(&m, &r),
            other => panic!("{other:?}"),
        };
        let c = |json: &str| e(json).category();
        assert_eq!(
            c(r#"{"type":"error","message":"Invalid API key"}"#),
            ErrorCategory::Auth
        );
        assert_eq!(
            c(r#"{"type":"error","message":"Rate limit exceeded"}"#),
            ErrorCategory::RateLimited
        );
        assert_eq!(
            c(r#"{"type":"error","message":"invalid sample_rate"}"#),
            ErrorCategory::Config
        );
        assert_eq!(
            c(r#"{"type":"error","message":"something broke"}"#),
            ErrorCategory::Permanent
        );
        assert_eq!(
            c(r#"{"type":"error","message":"x","status_code":429}"#),
            ErrorCategory::RateLimited
        );
        assert_eq!(
            c(r#"{"type":"error","message":"x","status_code":400}"#),
            ErrorCategory::Config
        );
        assert_eq!(
            c(r#"{"type":"error","message":"x","status_code":503}"#),
            ErrorCategory::Transient
        );
        let m = e(r#"{"type":"error","message":"slow down","status_code":429,"title":"Too Many Requests","error_code":"rate_limited"}"#).to_string();
        assert!(
            m.contains("429") && m.contains("Too Many Requests: slow down: rate_limited"),
            "{m}"
        );
        let e = refine(PluginError::Permanent(
            "cartesia: handshake: HTTP 400 Bad Request".into(),
        ));
        assert!(matches!(e, PluginError::Config(_)));
    }
}
