//! One recognition session: turns on a WebSocket, and the mapping of results to events.
//!
//! # Turns (from `ServiceRecognizerBase.ts` of the JavaScript Speech SDK)
//!
//! - On a new connection the client sends `speech.config` (`sendSpeechServiceConfig`), then
//!   starts a turn with the same `X-RequestId` (`configureConnection` →
//!   `sendPrePayloadJSON(connection, false)`).
//! - A turn is `speech.context` (`sendSpeechContext`), the WAV header as the first `audio`
//!   message with `Content-Type: audio/x-wav` (`sendWaveHeader`), then raw PCM in `audio`
//!   messages without a content type (`sendAudio`), all with the turn's `X-RequestId`; an
//!   `audio` message with no payload ends the audio (`sendFinalAudio`).
//! - The service answers `turn.start`, `speech.startDetected`, `speech.hypothesis`…,
//!   `speech.phrase` (one per segment; in conversation mode many per turn), `speech.endDetected`
//!   and `turn.end`. Messages whose `X-RequestId` is not the current turn's are dropped
//!   (`receiveMessage`). A continuous recogniser that is still running after `turn.end` starts a
//!   new turn with a new request id, a new `speech.context` and a new WAV header (the `turn.end`
//!   case of `receiveMessage`); offsets in results are relative to the turn's audio, so the SDK
//!   adds the turn's start (`currentTurnAudioOffset`) to them, and so do we.
//!
//! # Mapping to the plugin contract
//!
//! - `speech.hypothesis` (and `speech.fragment`, which the SDK treats alike) → an interim
//!   transcript (confidence 0: the service reports none for hypotheses).
//! - `speech.phrase` with `Success` → a final transcript with `is_speech_final` set: the service
//!   only ends a phrase at a pause it judged to end the utterance (segmentation silence timeout)
//!   or at the end of the audio, and never revises a phrase, so every phrase is both final and
//!   the end of an utterance. Text is `NBest[0].Display` (or `MaskedITN`/`ITN` when the session
//!   asks for no punctuation), confidence `NBest[0].Confidence` (0 in the simple format), words
//!   from `NBest[0].Words` with ticks turned into seconds from the session's first audio.
//! - `NoMatch`, `InitialSilenceTimeout`, `BabbleTimeout` and `EndOfDictation` → no transcript
//!   (`EnumTranslation.implTranslateRecognitionResult` makes them NoMatch; the SDK drops
//!   `EndOfDictation` without an event).
//! - `Error`, `TooManyRequests`, `BadRequest`, `Forbidden` cancel recognition in the SDK
//!   (`implTranslateCancelErrorCode`): here they end the session as Transient, RateLimited,
//!   Config and Auth ("free subscription out of quota") errors.
//! - `speech.startDetected` → `SpeechStarted`; `speech.endDetected` → `UtteranceEnd`.
//!
//! # Finalize and what follows
//!
//! `Finalize` sends the end-of-audio message (as `stopRecognizing` does) and waits, bounded by
//! `finalize_timeout`, for `turn.end`. Audio that arrives meanwhile is held (at most
//! `max_pending_ms` of it) and opens the next turn on the same connection once `turn.end` came,
//! as the SDK does after a turn. If the service closes the socket between turns (normally, or
//! with a passing failure such as 1001/1011 or a reset), the next audio dials a new connection
//! (lazily); a failure during a turn ends the session. When the input closes, an open turn is ended the
//! same way and drained for at most `drain_timeout`, then the socket is closed with 1000
//! "Normal closure by client" (`WebsocketMessageAdapter.close`).

use super::messages::{
    speech_context, ConfigAudio, ConfigAudioSource, ConfigContext, ConfigOs, ConfigSystem, NBest,
    RecognitionStatus, SpeechConfig, SpeechHypothesis, SpeechPhrase, TICKS_PER_SECOND,
};
use super::settings::{Format, Settings};
use crate::protocol::{self, CONNECTION_ID};
use bytes::Bytes;
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tokio::time::Instant;
use waav_plugin_api::{
    ErrorCategory, PluginError, SttEvent, SttInput, SttIo, SttSessionConfig, Transcript, Word,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, MaybeSecret, Message, WsConfig, WsConnection};

const AUDIO: &str = "audio";
const JSON: &str = "application/json";
const WAV: &str = "audio/x-wav";
const CONTEXT: &str = "azure stt";
/// How long the closing handshake may take at the end of a session.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The current turn.
#[derive(Debug)]
struct Turn {
    id: String,
    /// Stream time of the turn's first audio byte, in ticks.
    base_ticks: f64,
    /// PCM bytes sent in this turn.
    audio_bytes: u64,
    /// Set once the end of audio was sent: the deadline for `turn.end`.
    ending: Option<Instant>,
}

/// A running session.
pub struct Session {
    settings: Settings,
    ws: WsConfig,
    conn: Option<WsConnection>,
    /// The id of the `speech.config` just sent, which the connection's first turn reuses.
    config_id: Option<String>,
    turn: Option<Turn>,
    config_body: String,
    context_body: String,
    wav: [u8; 44],
    bytes_per_sec: u64,
    punctuation: bool,
    /// PCM bytes sent over the whole session (stream time).
    sent_bytes: u64,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    max_pending_bytes: usize,
    /// Largest PCM payload per `audio` message (100 ms).
    max_chunk: usize,
    dropped_reported: bool,
    closing: bool,
    input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    redactor: Redactor,
}

/// The host hung up on our events: stop quietly.
struct HostGone;

type Step = Result<Result<(), HostGone>, PluginError>;

impl Session {
    /// Sends `speech.config` and opens the first turn on `conn`.
    pub async fn start(
        settings: Settings,
        ws: WsConfig,
        conn: WsConnection,
        config: &SttSessionConfig,
        io: SttIo,
    ) -> Result<Self, PluginError> {
        let bytes_per_sec = u64::from(config.sample_rate) * 2 * u64::from(config.channels);
        let config_body = serde_json::to_string(&SpeechConfig {
            context: ConfigContext {
                system: ConfigSystem {
                    name: "WaaVGateway",
                    version: env!("CARGO_PKG_VERSION"),
                    build: "Rust",
                    lang: "Rust",
                },
                os: ConfigOs {
                    platform: std::env::consts::FAMILY,
                    name: std::env::consts::OS,
                    version: "unknown",
                },
                audio: ConfigAudio {
                    source: ConfigAudioSource {
                        connectivity: "Unknown",
                        kind: "Stream",
                        samplerate: config.sample_rate,
                        bitspersample: 16,
                        channelcount: config.channels,
                    },
                },
            },
            recognition: settings.mode.as_str(),
        })
        .unwrap_or_else(|_| "{}".to_owned());
        let max_pending_bytes =
            usize::try_from(settings.max_pending_ms * bytes_per_sec / 1000).unwrap_or(usize::MAX);
        let redactor = ws.redactor();
        let mut s = Self {
            context_body: speech_context(&settings.phrases),
            wav: protocol::wav_header(config.sample_rate, config.channels, 16),
            settings,
            ws,
            conn: Some(conn),
            config_id: None,
            turn: None,
            config_body,
            bytes_per_sec,
            punctuation: config.punctuation,
            sent_bytes: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_pending_bytes,
            // Whole sample frames: the rate over 10, times 2 bytes times the channels.
            max_chunk: (bytes_per_sec / 10).max(2) as usize,
            dropped_reported: false,
            closing: false,
            input: io.input,
            events: io.events,
            redactor,
        };
        s.send_config().await?;
        s.begin_turn().await?;
        Ok(s)
    }

    /// The session task.
    pub async fn run(mut self) -> Result<(), PluginError> {
        let result = self.drive().await;
        if let Some(mut conn) = self.conn.take() {
            // Wait (bounded) for the closing handshake, so the close frame goes out before the
            // socket is dropped; what arrives meanwhile is for a finished session.
            if conn
                .close(CloseCode::Normal, "Normal closure by client")
                .await
                .is_ok()
            {
                let handshake = async { while let Ok(Some(_)) = conn.recv().await {} };
                let _ = tokio::time::timeout(CLOSE_WAIT, handshake).await;
            }
        }
        result
    }

    async fn drive(&mut self) -> Result<(), PluginError> {
        let mut input_open = true;
        loop {
            if self.closing && self.turn.is_none() && self.pending.is_empty() {
                return Ok(());
            }
            let deadline = self.turn.as_ref().and_then(|t| t.ending);
            let step = tokio::select! {
                input = self.input.recv(), if input_open => match input {
                    Some(SttInput::Audio(audio)) => self.audio(audio).await,
                    Some(SttInput::Finalize) => {
                        let wait = self.settings.finalize_timeout;
                        self.end_audio(wait).await.map(Ok)
                    }
                    // The service segments phrases itself.
                    Some(_) => continue,
                    None => {
                        input_open = false;
                        self.input_closed().await.map(Ok)
                    }
                },
                msg = recv(&mut self.conn) => match msg {
                    Ok(Some(m)) => self.message(m).await,
                    Ok(None) => self.vendor_closed().map(Ok),
                    Err(e) => self.vendor_failed(e).map(Ok),
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    let wait = if self.closing {
                        self.settings.drain_timeout
                    } else {
                        self.settings.finalize_timeout
                    };
                    Err(errors::timeout(&format!("{CONTEXT}: turn.end after end of audio"), wait, &self.redactor))
                }
            };
            if step?.is_err() {
                return Ok(());
            }
        }
    }

    fn conn(&self) -> Result<&WsConnection, PluginError> {
        self.conn
            .as_ref()
            .ok_or_else(|| self.error(ErrorCategory::Transient, "not connected".into()))
    }

    fn error(&self, category: ErrorCategory, message: String) -> PluginError {
        errors::make(
            category,
            format!("{CONTEXT}: {message}"),
            None,
            &self.redactor,
        )
    }

    async fn send_config(&mut self) -> Result<(), PluginError> {
        let id = protocol::new_id();
        let msg = protocol::text_message("speech.config", &id, Some(JSON), &self.config_body);
        self.conn()?.send(Message::Text(msg.into())).await?;
        self.config_id = Some(id);
        Ok(())
    }

    /// Dials again after the service closed the previous connection between turns.
    async fn reconnect(&mut self) -> Result<(), PluginError> {
        // A fresh connection id per connection, as the SDK's `retryableConnect` makes one.
        if let Some(h) = self
            .ws
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(CONNECTION_ID))
        {
            h.1 = MaybeSecret::Plain(protocol::new_id());
        }
        tracing::debug!("{CONTEXT}: reconnecting for a new turn");
        self.conn = Some(ws::connect(&self.ws).await?);
        self.send_config().await
    }

    async fn begin_turn(&mut self) -> Result<(), PluginError> {
        let id = self.config_id.take().unwrap_or_else(protocol::new_id);
        let ctx = protocol::text_message("speech.context", &id, Some(JSON), &self.context_body);
        let wav = protocol::binary_message(AUDIO, &id, Some(WAV), &self.wav);
        let conn = self.conn()?;
        conn.send(Message::Text(ctx.into())).await?;
        conn.send(Message::Binary(wav)).await?;
        self.turn = Some(Turn {
            id,
            base_ticks: self.sent_bytes as f64 * TICKS_PER_SECOND / self.bytes_per_sec as f64,
            audio_bytes: 0,
            ending: None,
        });
        Ok(())
    }

    async fn audio(&mut self, audio: Bytes) -> Step {
        // An empty payload is the end-of-audio marker on this protocol: never forward one.
        if audio.is_empty() {
            return Ok(Ok(()));
        }
        if self.turn.as_ref().is_some_and(|t| t.ending.is_some()) {
            return self.hold(audio).await;
        }
        self.send_audio(audio).await?;
        Ok(Ok(()))
    }

    /// Keeps audio that arrived while a turn was ending, for the next turn.
    async fn hold(&mut self, audio: Bytes) -> Step {
        if self.pending_bytes + audio.len() <= self.max_pending_bytes {
            self.pending_bytes += audio.len();
            self.pending.push_back(audio);
            return Ok(Ok(()));
        }
        tracing::debug!("{CONTEXT}: audio dropped while waiting for turn.end");
        if std::mem::replace(&mut self.dropped_reported, true) {
            return Ok(Ok(()));
        }
        let e = self.error(
            ErrorCategory::Transient,
            "audio dropped: more than max_pending_ms arrived while a finalized turn ended".into(),
        );
        Ok(self.emit(SttEvent::Error(e)).await)
    }

    /// Sends PCM, opening a connection and a turn if needed. The SDK's push stream sends at
    /// most 100 ms per `audio` message (`AudioInputStream.ts`:
    /// `ChunkedArrayBufferStream(avgBytesPerSec / 10)`): larger chunks are cut to that size
    /// (zero-copy slices), smaller ones go as they are.
    async fn send_audio(&mut self, mut audio: Bytes) -> Result<(), PluginError> {
        while audio.len() > self.max_chunk {
            let head = audio.split_to(self.max_chunk);
            self.send_message(head).await?;
        }
        self.send_message(audio).await
    }

    async fn send_message(&mut self, audio: Bytes) -> Result<(), PluginError> {
        if self.conn.is_none() {
            self.reconnect().await?;
        }
        if self.turn.is_none() {
            self.begin_turn().await?;
        }
        let Some(turn) = self.turn.as_mut() else {
            return Ok(());
        };
        let frame = protocol::binary_message(AUDIO, &turn.id, None, &audio);
        turn.audio_bytes += audio.len() as u64;
        self.sent_bytes += audio.len() as u64;
        self.conn()?.send(Message::Binary(frame)).await
    }

    /// Sends the end of audio for the current turn, if it has audio and is not ending yet.
    async fn end_audio(&mut self, wait: std::time::Duration) -> Result<(), PluginError> {
        let Some(turn) = self.turn.as_ref() else {
            return Ok(());
        };
        if turn.ending.is_some() || turn.audio_bytes == 0 {
            return Ok(());
        }
        let end = protocol::binary_message(AUDIO, &turn.id, None, &[]);
        self.conn()?.send(Message::Binary(end)).await?;
        if let Some(t) = self.turn.as_mut() {
            t.ending = Some(Instant::now() + wait);
        }
        Ok(())
    }

    async fn input_closed(&mut self) -> Result<(), PluginError> {
        self.closing = true;
        match &self.turn {
            // Nothing was sent in this turn: there is nothing to wait for.
            Some(t) if t.audio_bytes == 0 && t.ending.is_none() => self.turn = None,
            Some(t) if t.ending.is_some() => {
                let cap = Instant::now() + self.settings.drain_timeout;
                if let Some(t) = self.turn.as_mut() {
                    t.ending = t.ending.map(|d| d.min(cap));
                }
            }
            Some(_) => self.end_audio(self.settings.drain_timeout).await?,
            None => {}
        }
        Ok(())
    }

    /// A connection failure between turns that may pass (a going-away close, a reset, an idle
    /// timeout) only drops the connection: the next audio dials again. Anything else, or any
    /// failure during a turn, ends the session.
    fn vendor_failed(&mut self, e: PluginError) -> Result<(), PluginError> {
        let passing = matches!(
            e.category(),
            ErrorCategory::Transient | ErrorCategory::Timeout
        );
        if self.turn.is_some() || self.closing || !passing {
            return Err(e);
        }
        tracing::debug!("{CONTEXT}: connection lost between turns ({e}); redialling on demand");
        self.conn = None;
        Ok(())
    }

    fn vendor_closed(&mut self) -> Result<(), PluginError> {
        self.conn = None;
        match &self.turn {
            None => {
                tracing::debug!("{CONTEXT}: the service closed the idle connection");
                Ok(())
            }
            Some(_) => Err(self.error(
                ErrorCategory::Transient,
                "the service closed the connection during a turn".into(),
            )),
        }
    }

    async fn emit(&self, event: SttEvent) -> Result<(), HostGone> {
        self.events.send(event).await.map_err(|_| HostGone)
    }

    async fn message(&mut self, msg: Message) -> Step {
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Binary(b) => {
                // Recognition results are text; binary messages (synthesis audio) are not ours.
                tracing::debug!("{CONTEXT}: ignoring a binary message of {} bytes", b.len());
                return Ok(Ok(()));
            }
            _ => return Ok(Ok(())),
        };
        let m = protocol::parse_text(text);
        let (Some(path), Some(turn)) = (m.path(), self.turn.as_ref()) else {
            tracing::debug!("{CONTEXT}: ignoring a message without a path or outside a turn");
            return Ok(Ok(()));
        };
        if !m
            .request_id()
            .is_some_and(|r| r.eq_ignore_ascii_case(&turn.id))
        {
            tracing::debug!("{CONTEXT}: ignoring {path} for another request id");
            return Ok(Ok(()));
        }
        let body = std::str::from_utf8(m.body).unwrap_or_default();
        let base = turn.base_ticks;
        let event = match path.to_ascii_lowercase().as_str() {
            "turn.start" => None,
            "speech.startdetected" => Some(SttEvent::SpeechStarted),
            "speech.enddetected" => Some(SttEvent::UtteranceEnd),
            "speech.hypothesis" | "speech.fragment" => {
                match serde_json::from_str::<SpeechHypothesis>(body) {
                    Ok(h) if !h.text.is_empty() => Some(interim(h).into()),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!("{CONTEXT}: unparsable {path}: {e}");
                        None
                    }
                }
            }
            "speech.phrase" => match serde_json::from_str::<SpeechPhrase>(body) {
                Ok(p) => self.phrase(p, base)?.map(SttEvent::from),
                Err(e) => {
                    tracing::debug!("{CONTEXT}: unparsable speech.phrase: {e}");
                    None
                }
            },
            "turn.end" => {
                self.turn_ended().await?;
                None
            }
            other => {
                tracing::debug!("{CONTEXT}: ignoring {other}");
                None
            }
        };
        match event {
            Some(e) => Ok(self.emit(e).await),
            None => Ok(Ok(())),
        }
    }

    async fn turn_ended(&mut self) -> Result<(), PluginError> {
        self.turn = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        // Audio that arrived while the turn ended opens the next one.
        self.pending_bytes = 0;
        self.dropped_reported = false;
        while let Some(audio) = self.pending.pop_front() {
            self.send_audio(audio).await?;
        }
        if self.closing {
            self.end_audio(self.settings.drain_timeout).await?;
        }
        Ok(())
    }

    fn phrase(&self, p: SpeechPhrase, base: f64) -> Result<Option<Transcript>, PluginError> {
        let Some(status) = RecognitionStatus::from_value(&p.recognition_status) else {
            tracing::debug!(
                "{CONTEXT}: speech.phrase with unknown status {}",
                p.recognition_status
            );
            return Ok(None);
        };
        let fatal = |category, what: &str| -> Result<Option<Transcript>, PluginError> {
            Err(self.error(
                category,
                format!("recognition status {}: {what}", status.as_str()),
            ))
        };
        match status {
            RecognitionStatus::Success => Ok(self.final_result(p, base)),
            RecognitionStatus::NoMatch
            | RecognitionStatus::InitialSilenceTimeout
            | RecognitionStatus::BabbleTimeout
            | RecognitionStatus::EndOfDictation => Ok(None),
            RecognitionStatus::Error => fatal(
                ErrorCategory::Transient,
                "the speech service encountered an internal error",
            ),
            RecognitionStatus::TooManyRequests => fatal(
                ErrorCategory::RateLimited,
                "the number of parallel requests exceeded the allowed concurrent transcriptions",
            ),
            RecognitionStatus::BadRequest => fatal(
                ErrorCategory::Config,
                "invalid parameter or unsupported audio format",
            ),
            RecognitionStatus::Forbidden => fatal(
                ErrorCategory::Auth,
                "the subscription is out of quota or not allowed",
            ),
        }
    }

    fn final_result(&self, p: SpeechPhrase, base: f64) -> Option<Transcript> {
        let language = p.primary_language.and_then(|l| l.language);
        let speaker = p.speaker_id;
        let best: Option<NBest> = match self.settings.format {
            Format::Detailed => p.nbest.into_iter().next(),
            Format::Simple => None,
        };
        let Some(best) = best else {
            let text = p.display_text.unwrap_or_default();
            return (!text.is_empty()).then(|| Transcript {
                text,
                is_final: true,
                is_speech_final: true,
                language,
                speaker,
                ..Transcript::default()
            });
        };
        let display = || {
            best.display
                .clone()
                .or_else(|| best.display_text.clone())
                .or_else(|| p.display_text.clone())
        };
        let text = if self.punctuation {
            display()
        } else {
            let itn = if self.settings.profanity.as_deref() == Some("raw") {
                best.itn.clone()
            } else {
                best.masked_itn.clone()
            };
            itn.or_else(|| best.lexical.clone()).or_else(display)
        }
        .unwrap_or_default();
        if text.is_empty() {
            return None;
        }
        let confidence = unit(best.confidence);
        let words = best
            .words
            .into_iter()
            .map(|w| {
                let start = (base + ticks(w.offset)) / TICKS_PER_SECOND;
                Word {
                    word: w.word,
                    start,
                    end: start + ticks(w.duration) / TICKS_PER_SECOND,
                    confidence: w.confidence.map_or(confidence, |c| unit(Some(c))),
                    speaker: speaker.clone(),
                }
            })
            .collect();
        Some(Transcript {
            text,
            is_final: true,
            is_speech_final: true,
            confidence,
            words,
            language,
            speaker,
        })
    }
}

fn interim(h: SpeechHypothesis) -> Transcript {
    Transcript {
        language: h.primary_language.and_then(|l| l.language),
        speaker: h.speaker_id,
        ..Transcript::interim(h.text, 0.0)
    }
}

/// A tick count, 0 when absent, negative or not finite.
fn ticks(v: Option<f64>) -> f64 {
    v.filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(0.0)
}

/// A 0–1 confidence; 0 when absent or not a number.
fn unit(v: Option<f64>) -> f32 {
    v.filter(|c| c.is_finite())
        .map_or(0.0, |c| c.clamp(0.0, 1.0) as f32)
}

async fn recv(conn: &mut Option<WsConnection>) -> Result<Option<Message>, PluginError> {
    match conn {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
