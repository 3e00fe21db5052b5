//! One realtime session: base64 audio chunks and commits out, transcripts in, the graceful end
//! (commit what is left, wait for its transcript, close 1000).
//!
//! Protocol facts (STT_PROTOCOLS.md §3, checked against `elevenlabs-python`
//! `realtime/connection.py`): there is no close-stream message; to get the last text a client
//! commits, waits for the `committed_transcript`, then closes with 1000 "User ended
//! conversation", as `RealtimeConnection.close` does. A `committed_transcript` ends a segment
//! (manual commit or the server's VAD), so it is a final and the end of the utterance; with
//! `include_timestamps=true` it is followed by `committed_transcript_with_timestamps` for the
//! same segment, which this client waits for (bounded) so that the final carries words, and
//! emits once.

use super::messages::{self, ErrorKind, ServerMessage, TranscriptPayload, WireWord};
use super::settings::{CommitStrategy, WireAudio};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use waav_plugin_api::{
    ErrorCategory, PluginError, SttEvent, SttInput, SttIo, Transcript, VadEvent, Word,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{CloseCode, Message, WsReceiver, WsSender};

/// Names the provider in messages.
const CTX: &str = "elevenlabs";

/// The close reason the SDK sends (`RealtimeConnection.close`).
const CLOSE_REASON: &str = "User ended conversation";

/// What a session needs besides its socket.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The wire audio format.
    pub audio: WireAudio,
    /// Who commits.
    pub commit_strategy: CommitStrategy,
    /// Manual strategy: commit on the host VAD's end of speech.
    pub commit_on_vad: bool,
    /// Whether a timestamped copy follows each committed transcript.
    pub include_timestamps: bool,
    /// How long a committed transcript waits for its timestamped copy.
    pub timestamps_wait: Duration,
    /// Context text for the first chunk.
    pub previous_text: Option<String>,
    /// A commit unanswered this long fails the session; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Bound on the final commit and the close.
    pub drain_timeout: Duration,
    /// Most audio bytes in one chunk (a whole number of samples).
    pub max_chunk_bytes: usize,
}

/// Waits for `session_started` (bounded by `timeout`); a vendor error message first becomes
/// its error.
pub async fn await_started(
    rx: &mut WsReceiver,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<(), PluginError> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(Some(Message::Text(text))) => match messages::parse(&text) {
                    Some(ServerMessage::SessionStarted { session_id }) => {
                        tracing::debug!(session_id = %session_id, "elevenlabs: session started");
                        return Ok(());
                    }
                    Some(ServerMessage::Error {
                        kind,
                        message_type,
                        text,
                    }) => return Err(vendor_error(kind, &message_type, &text, redactor)),
                    _ => tracing::debug!(
                        bytes = text.len(),
                        "elevenlabs: skipped before session_started"
                    ),
                },
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{CTX}: the server closed the socket before session_started"),
                        None,
                        redactor,
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(errors::timeout(
            &format!("{CTX}: waiting for session_started"),
            timeout,
            redactor,
        )),
    }
}

/// The error for a vendor error message.
pub fn vendor_error(
    kind: ErrorKind,
    message_type: &str,
    text: &str,
    redactor: &Redactor,
) -> PluginError {
    let category = match kind {
        ErrorKind::Auth => ErrorCategory::Auth,
        // Billing and terms: an operator must act (the kit maps HTTP 402 the same way).
        ErrorKind::Quota | ErrorKind::UnacceptedTerms => ErrorCategory::Auth,
        ErrorKind::RateLimited | ErrorKind::ResourceExhausted | ErrorKind::CommitThrottled => {
            ErrorCategory::RateLimited
        }
        ErrorKind::QueueOverflow | ErrorKind::Transcriber => ErrorCategory::Transient,
        ErrorKind::Input => ErrorCategory::Config,
        ErrorKind::ChunkSize | ErrorKind::Generic => ErrorCategory::Permanent,
        // The session's own limits: a new session may go on.
        ErrorKind::SessionTimeLimit | ErrorKind::InsufficientAudio => ErrorCategory::Timeout,
    };
    let what = errors::excerpt(text.as_bytes(), errors::BODY_EXCERPT_LIMIT);
    let msg = if what.is_empty() {
        format!("{CTX}: {message_type}")
    } else {
        format!("{CTX}: {message_type}: {what}")
    };
    errors::make(category, msg, None, redactor)
}

/// A committed transcript waiting for its timestamped copy.
struct Held {
    transcript: Transcript,
    until: Instant,
}

/// Session state outside the socket.
struct State {
    setup: Setup,
    redactor: Redactor,
    /// Audio bytes sent since the last commit this client sent.
    uncommitted: usize,
    /// Commits sent and not yet answered by a committed transcript.
    awaiting: usize,
    /// When the oldest unanswered commit went out (cleared by any server message).
    awaiting_since: Option<Instant>,
    /// A partial has been seen since the last committed transcript.
    in_speech: bool,
    held: Option<Held>,
    /// The odd byte of a PCM16 chunk, sent with the next one.
    carry: Option<u8>,
    first_chunk: bool,
}

/// What to do after a server message.
enum Step {
    Emit(Vec<SttEvent>),
    Fatal(PluginError),
}

impl State {
    fn on_text(&mut self, text: &str, now: Instant) -> Step {
        let mut out = Vec::new();
        match messages::parse(text) {
            Some(ServerMessage::Partial(p)) => {
                if p.text.trim().is_empty() {
                    return Step::Emit(out);
                }
                self.flush_held(&mut out);
                if !self.in_speech {
                    // The vendor has no speech-start event; its first words of a segment are.
                    self.in_speech = true;
                    out.push(SttEvent::SpeechStarted);
                }
                out.push(Transcript::interim(p.text, 0.0).into());
            }
            Some(ServerMessage::Committed(p)) => {
                self.flush_held(&mut out);
                self.answered();
                self.in_speech = false;
                let t = committed(p);
                if self.setup.include_timestamps && !self.setup.timestamps_wait.is_zero() {
                    self.held = Some(Held {
                        transcript: t,
                        until: now + self.setup.timestamps_wait,
                    });
                } else {
                    out.push(t.into());
                }
            }
            Some(ServerMessage::CommittedWithTimestamps(p)) => match self.held.take() {
                Some(_) => out.push(committed(p).into()),
                None if !self.setup.include_timestamps || self.setup.timestamps_wait.is_zero() => {
                    tracing::trace!("elevenlabs: timestamped copy of an emitted final skipped");
                }
                None => {
                    tracing::debug!("elevenlabs: timestamped copy arrived after its wait; skipped")
                }
            },
            Some(ServerMessage::SessionStarted { session_id }) => {
                tracing::debug!(session_id = %session_id, "elevenlabs: session_started again");
            }
            Some(ServerMessage::Error {
                kind: ErrorKind::CommitThrottled,
                message_type,
                text,
            }) => {
                // The segment stays uncommitted; the next commit (or the VAD) picks it up.
                self.answered();
                let e = vendor_error(
                    ErrorKind::CommitThrottled,
                    &message_type,
                    &text,
                    &self.redactor,
                );
                out.push(SttEvent::Error(e));
            }
            Some(ServerMessage::Error {
                kind,
                message_type,
                text,
            }) => return Step::Fatal(vendor_error(kind, &message_type, &text, &self.redactor)),
            Some(ServerMessage::Other(t)) => {
                tracing::debug!(message_type = %t, "elevenlabs: message type not used, skipped");
            }
            None => tracing::debug!(bytes = text.len(), "elevenlabs: malformed message skipped"),
        }
        Step::Emit(out)
    }

    fn answered(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    fn flush_held(&mut self, out: &mut Vec<SttEvent>) {
        if let Some(h) = self.held.take() {
            out.push(h.transcript.into());
        }
    }

    /// The audio of one host chunk as wire chunks (split to `max_chunk_bytes`, PCM16 kept
    /// sample-aligned, mu-law decoded when the wire wants PCM).
    fn chunks(&mut self, audio: &[u8]) -> Vec<String> {
        let a = self.setup.audio;
        let decoded;
        let mut bytes: &[u8] = audio;
        if a.decode_mulaw {
            decoded = audio
                .iter()
                .flat_map(|b| waav_plugin_api::codec::mulaw_decode(*b).to_le_bytes())
                .collect::<Vec<u8>>();
            bytes = &decoded;
        }
        let joined;
        if a.sample_bytes == 2 && (self.carry.is_some() || bytes.len() % 2 == 1) {
            let mut v = Vec::with_capacity(bytes.len() + 1);
            v.extend(self.carry.take());
            v.extend_from_slice(bytes);
            if v.len() % 2 == 1 {
                self.carry = v.pop();
            }
            joined = v;
            bytes = &joined;
        }
        let max = self.setup.max_chunk_bytes.max(a.sample_bytes);
        bytes
            .chunks(max)
            .map(|piece| {
                let prev = if self.first_chunk {
                    self.first_chunk = false;
                    self.setup.previous_text.as_deref()
                } else {
                    None
                };
                self.uncommitted += piece.len();
                messages::audio_chunk(piece, a.sample_rate, prev)
            })
            .collect()
    }

    /// A commit message, when audio went out since the last one.
    fn commit(&mut self, now: Instant) -> Option<String> {
        if self.uncommitted == 0 {
            return None;
        }
        self.uncommitted = 0;
        self.awaiting += 1;
        self.awaiting_since.get_or_insert(now);
        Some(messages::commit(self.setup.audio.sample_rate))
    }
}

/// Runs the session until the host closes the input (then the final commit and close) or a
/// fatal error.
pub async fn run(
    tx: WsSender,
    mut rx: WsReceiver,
    io: SttIo,
    setup: Setup,
    redactor: Redactor,
) -> Result<(), PluginError> {
    let SttIo { mut input, events } = io;
    let response_timeout = setup.response_timeout;
    let drain_timeout = setup.drain_timeout;
    let mut st = State {
        setup,
        redactor: redactor.clone(),
        uncommitted: 0,
        awaiting: 0,
        awaiting_since: None,
        in_speech: false,
        held: None,
        carry: None,
        first_chunk: true,
    };
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    // Input closed: the final commit is out (or was not needed).
    let mut closing = false;
    // The close frame is out.
    let mut close_sent = false;
    let response = sleep_until(far);
    let held = sleep_until(far);
    let drain = sleep_until(far);
    tokio::pin!(response, held, drain);

    loop {
        // The final commit is answered (and its timestamped copy in): say goodbye.
        if closing && !close_sent && st.awaiting == 0 && st.held.is_none() {
            tx.close(CloseCode::Normal, CLOSE_REASON).await?;
            close_sent = true;
        }
        if let Some(h) = &st.held {
            held.as_mut().reset(h.until);
        }
        if let (Some(since), Some(limit)) = (st.awaiting_since, response_timeout) {
            response.as_mut().reset(since + limit);
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(Message::Text(text))) => {
                    st.awaiting_since = (st.awaiting > 0).then(Instant::now);
                    match st.on_text(&text, Instant::now()) {
                        Step::Emit(evs) => {
                            if st.awaiting == 0 {
                                st.awaiting_since = None;
                            }
                            for ev in evs {
                                if events.send(ev).await.is_err() {
                                    // The host hung up; dropping the socket closes it.
                                    return Ok(());
                                }
                            }
                        }
                        Step::Fatal(e) => return Err(e),
                    }
                }
                Ok(Some(_)) => tracing::debug!("elevenlabs: binary message skipped"),
                Ok(None) if close_sent => return Ok(()),
                Ok(None) => {
                    let what = if closing {
                        "the server closed the socket before the final transcript"
                    } else {
                        "the server closed the socket mid-session"
                    };
                    return Err(errors::make(ErrorCategory::Transient, format!("{CTX}: {what}"), None, &redactor));
                }
                Err(e) => return Err(e),
            },
            inp = input.recv(), if !closing => {
                let now = Instant::now();
                match inp {
                    Some(SttInput::Audio(bytes)) if bytes.is_empty() => {}
                    Some(SttInput::Audio(bytes)) => {
                        for m in st.chunks(&bytes) {
                            tx.send_text(m).await?;
                        }
                    }
                    Some(SttInput::Finalize) => {
                        if let Some(m) = st.commit(now) {
                            tx.send_text(m).await?;
                        }
                    }
                    Some(SttInput::Vad(VadEvent::SpeechEnded { .. }))
                        if st.setup.commit_strategy == CommitStrategy::Manual && st.setup.commit_on_vad =>
                    {
                        if let Some(m) = st.commit(now) {
                            tx.send_text(m).await?;
                        }
                    }
                    // The vendor's VAD (or the host's Finalize) ends utterances.
                    Some(_) => {}
                    None => {
                        closing = true;
                        if let Some(m) = st.commit(now) {
                            tx.send_text(m).await?;
                        }
                        drain.as_mut().reset(now + drain_timeout);
                    }
                }
            },
            () = &mut held, if st.held.is_some() => {
                if st.held.as_ref().is_some_and(|h| Instant::now() >= h.until) {
                    tracing::debug!("elevenlabs: no timestamped copy in time; final sent without words");
                    let mut out = Vec::new();
                    st.flush_held(&mut out);
                    for ev in out {
                        if events.send(ev).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            },
            () = &mut response, if st.awaiting_since.is_some() && response_timeout.is_some() && !closing => {
                let (Some(since), Some(limit)) = (st.awaiting_since, response_timeout) else { continue };
                if Instant::now() >= since + limit {
                    return Err(errors::timeout(&format!("{CTX}: commit unanswered"), limit, &redactor));
                }
            },
            () = &mut drain, if closing => {
                if close_sent {
                    // Everything arrived; the close handshake alone did not finish.
                    return Ok(());
                }
                return Err(errors::timeout(
                    &format!("{CTX}: final commit unanswered"),
                    drain_timeout,
                    &redactor,
                ));
            }
        }
    }
}

/// A committed transcript (plain or timestamped) as a final that ends the utterance.
pub fn committed(p: TranscriptPayload) -> Transcript {
    let words = p.words.map(words).unwrap_or_default();
    let confidence = if words.is_empty() {
        0.0
    } else {
        words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
    };
    let speaker = majority_speaker(&words);
    Transcript {
        text: p.text,
        is_final: true,
        is_speech_final: true,
        confidence,
        words,
        language: p.language_code.filter(|l| !l.is_empty()),
        speaker,
    }
}

fn secs(x: Option<f64>) -> f64 {
    x.filter(|v| v.is_finite() && *v >= 0.0).unwrap_or(0.0)
}

/// Vendor words as contract words: spacing dropped, punctuation appended to the word before
/// it, confidence `exp(logprob)` (0 when the vendor gave none).
pub fn words(wire: Vec<WireWord>) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::with_capacity(wire.len());
    for w in wire {
        let text = w.text.unwrap_or_default();
        match w.kind.as_deref() {
            Some("spacing") => continue,
            Some("punctuation") => {
                if let Some(last) = out.last_mut() {
                    last.word.push_str(text.trim());
                    last.end = last.end.max(secs(w.end));
                }
                continue;
            }
            _ => {}
        }
        if text.trim().is_empty() {
            continue;
        }
        let start = secs(w.start);
        let confidence = w
            .logprob
            .filter(|l| l.is_finite())
            .map(|l| l.min(0.0).exp().clamp(0.0, 1.0) as f32)
            .unwrap_or(0.0);
        out.push(Word {
            word: text.trim().to_owned(),
            start,
            end: secs(w.end).max(start),
            confidence,
            speaker: w.speaker_id.filter(|s| !s.is_empty()),
        });
    }
    out
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

    fn setup() -> Setup {
        Setup {
            audio: WireAudio {
                format: "pcm_16000",
                sample_rate: 16_000,
                sample_bytes: 2,
                decode_mulaw: false,
            },
            commit_strategy: CommitStrategy::Vad,
            commit_on_vad: true,
            include_timestamps: true,
            timestamps_wait: Duration::from_secs(1),
            previous_text: Some("ctx".into()),
            response_timeout: None,
            drain_timeout: Duration::from_secs(1),
            max_chunk_bytes: 4,
        }
    }

    fn state(setup: Setup) -> State {
        State {
            setup,
            redactor: Redactor::new(),
            uncommitted: 0,
            awaiting: 0,
            awaiting_since: None,
            in_speech: false,
            held: None,
            carry: None,
            first_chunk: true,
        }
    }

    fn b64_of(m: &str) -> (String, Option<String>) {
        let v: serde_json::Value = serde_json::from_str(m).unwrap();
        (
            v["audio_base_64"].as_str().unwrap().to_owned(),
            v["previous_text"].as_str().map(str::to_owned),
        )
    }

    #[test]
    fn chunks_split_align_and_carry_context_once() {
        let mut st = state(setup());
        let ms = st.chunks(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(ms.len(), 2);
        assert_eq!(b64_of(&ms[0]), ("AQIDBA==".into(), Some("ctx".into())));
        assert_eq!(b64_of(&ms[1]), ("BQY=".into(), None));
        // The odd byte 7 leads the next chunk.
        let ms = st.chunks(&[8]);
        assert_eq!(b64_of(&ms[0]).0, "Bwg=");
        assert_eq!(st.uncommitted, 8);
        assert!(st.commit(Instant::now()).is_some());
        assert!(st.commit(Instant::now()).is_none(), "nothing new to commit");
    }

    #[test]
    fn mulaw_is_decoded_when_the_wire_wants_pcm() {
        let mut s = setup();
        s.audio.decode_mulaw = true;
        s.max_chunk_bytes = 1000;
        let mut st = state(s);
        let ms = st.chunks(&[0xff, 0x7f]);
        // mu-law 0xff and 0x7f are both (near) zero.
        let (b64, _) = b64_of(&ms[0]);
        assert_eq!(b64.len(), 8, "4 PCM bytes");
    }

    #[test]
    fn committed_waits_for_its_timestamped_copy() {
        let mut st = state(setup());
        let now = Instant::now();
        let Step::Emit(evs) =
            st.on_text(r#"{"message_type":"partial_transcript","text":"hel"}"#, now)
        else {
            panic!()
        };
        assert_eq!(evs[0], SttEvent::SpeechStarted);
        let Step::Emit(evs) = st.on_text(
            r#"{"message_type":"committed_transcript","text":"Hello."}"#,
            now,
        ) else {
            panic!()
        };
        assert!(evs.is_empty());
        let Step::Emit(evs) = st.on_text(
            r#"{"message_type":"committed_transcript_with_timestamps","text":"Hello.","language_code":"en",
            "words":[{"text":"Hello","start":0.1,"end":0.3,"type":"word","logprob":0.0,"speaker_id":"speaker_1"},
            {"text":" ","start":0.3,"end":0.3,"type":"spacing"},{"text":".","start":0.3,"end":0.35,"type":"punctuation"}]}"#,
            now,
        ) else { panic!() };
        let SttEvent::Transcript(t) = &evs[0] else {
            panic!()
        };
        assert!(t.is_final && t.is_speech_final);
        assert_eq!(t.words.len(), 1);
        assert_eq!(t.words[0].word, "Hello.");
        assert!((t.words[0].end - 0.35).abs() < 1e-9);
        assert_eq!(t.confidence, 1.0);
        assert_eq!(t.speaker.as_deref(), Some("speaker_1"));
        assert_eq!(t.language.as_deref(), Some("en"));
    }

    #[test]
    fn errors_map_to_categories() {
        let mut st = state(setup());
        let now = Instant::now();
        for (t, c) in [
            ("auth_error", ErrorCategory::Auth),
            ("quota_exceeded", ErrorCategory::Auth),
            ("rate_limited", ErrorCategory::RateLimited),
            ("input_error", ErrorCategory::Config),
            ("transcriber_error", ErrorCategory::Transient),
            ("session_time_limit_exceeded", ErrorCategory::Timeout),
            ("error", ErrorCategory::Permanent),
        ] {
            let m = format!(r#"{{"message_type":"{t}","error":"boom"}}"#);
            let Step::Fatal(e) = st.on_text(&m, now) else {
                panic!("{t}")
            };
            assert_eq!(e.category(), c, "{t}");
            assert!(e.to_string().contains("boom"));
        }
        let Step::Emit(evs) =
            st.on_text(r#"{"message_type":"commit_throttled","error":"slow"}"#, now)
        else {
            panic!()
        };
        assert!(
            matches!(&evs[0], SttEvent::Error(e) if e.category() == ErrorCategory::RateLimited)
        );
    }
}
