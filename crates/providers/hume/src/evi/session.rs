//! One EVI chat: the dial, `chat_metadata`, the initial `session_settings`, then the task that
//! moves host inputs to Hume and Hume's messages to host events until either side ends.
//!
//! Mapping (`TTS_PROTOCOLS.md` §13; hume-python-sdk `empathic_voice/types/*.py`):
//!
//! | host | EVI |
//! |---|---|
//! | `Audio` | `audio_input {data: b64 linear16}` (format declared in `session_settings.audio`) |
//! | `Text` | `user_input {text}` (EVI answers it like speech) |
//! | `FunctionResult` | `tool_response {tool_call_id, content, tool_name, tool_type}` |
//! | `UpdateSession` | a new `session_settings`, then `SessionUpdated` (EVI sends no ack) |
//! | `CancelResponse` | EVI has no cancel message (`pause_assistant_message` holds *later* replies and releases them on resume, so it cannot drop this one): the response is ended here (`ResponseDone` at once) and what Hume still sends of it is dropped until its `assistant_end` or the next user turn |
//! | `CommitAudio` / `CreateResponse` | manual turn detection: `resume_assistant_message` (see below); server VAD: nothing (debug log) |
//! | `ClearAudio` | nothing (EVI has no input buffer to clear; debug log) |
//!
//! | EVI | host |
//! |---|---|
//! | `chat_metadata` | `SessionCreated {session_id: chat_id}` |
//! | `user_message` | `Transcript {User, is_final: !interim}`; `Speech` started (first message of a turn, `time.begin`) and stopped (the final one, `time.end`) for spoken turns |
//! | `assistant_message` | `Transcript {Assistant, final}` |
//! | `audio_output` | `Audio`: the chunk's WAV header stripped, mono linear16 48 kHz |
//! | `assistant_end` | `ResponseDone` |
//! | `user_interruption` | `Speech` started (if not yet), `Interrupted`, then `ResponseDone` of the response in progress; its stragglers are dropped |
//! | `tool_call` | `FunctionCall {call_id: tool_call_id, name, arguments: parameters}` |
//! | `error` | `Error` (categorised from code/slug/message); Auth-category errors end the session |
//!
//! Manual turn detection is emulated with EVI's pause feature (`pause_assistant_message.py`:
//! "EVI will not respond until a Resume Assistant message is sent … transcriptions of your
//! audio inputs will still be recorded"; `resume_assistant_message.py`: "EVI … will respond to
//! the last user message"): the chat is paused after `session_settings` and after every
//! `assistant_end`; `CommitAudio`, `CreateResponse`, `Text` and `FunctionResult` resume it.
//! EVI's own pause semantics beyond what those docstrings say are UNCONFIRMED.

use super::settings::{AuthMode, Settings};
use super::wire::{self, Incoming};
use bytes::Bytes;
use std::collections::VecDeque;
use waav_plugin_api::{
    AudioEncoding, ErrorCategory, PluginError, ProviderTask, RealtimeEvent, RealtimeInput,
    RealtimeIo, RealtimeSessionConfig, Role, Secret,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsReceiver, WsSender};

/// The only output format: `audio_output.py` "The returned audio format is WAV and the sample
/// rate is 48kHz"; 16-bit mono is what the SDK's player accepts (`audio_utilities.py`
/// `_wav_info`: "Only 16-bit PCM WAV supported").
pub const OUTPUT_RATE: u32 = 48_000;
/// Largest message accepted from Hume (an `audio_output` chunk is far smaller).
const MAX_MESSAGE: usize = 8 << 20;
/// Tool names remembered for `tool_response.tool_name`.
const MAX_TOOL_CALLS: usize = 64;
/// Malformed messages logged per session (the rest are only counted).
const MAX_MALFORMED_LOGS: u32 = 8;

const CONTEXT: &str = "hume evi";

fn api_key(config: &RealtimeSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| PluginError::Auth("hume: no API key (set api_key or HUME_API_KEY)".into()))
}

fn is_manual(config: &RealtimeSessionConfig) -> bool {
    config
        .turn_detection
        .as_ref()
        .and_then(|t| t.get("mode"))
        .and_then(|m| m.as_str())
        == Some("manual")
}

/// `model` selects an EVI configuration: empty means the plugin's `config_id` (or Hume's
/// default configuration), otherwise `<config_id>` or `<config_id>@<version>`. An EVI
/// configuration carries the prompt, language model, voice, tools and EVI version, which is
/// what a "model" is elsewhere.
pub fn model_config(model: &str) -> Result<(Option<String>, Option<u64>), PluginError> {
    let model = model.trim();
    if model.is_empty() {
        return Ok((None, None));
    }
    let (id, version) = match model.split_once('@') {
        Some((id, v)) => {
            let v = v.parse::<u64>().map_err(|_| {
                PluginError::Config(format!(
                    "hume: model {model:?}: the version after '@' must be an integer"
                ))
            })?;
            (id, Some(v))
        }
        None => (model, None),
    };
    super::settings::check_id("hume: model (an EVI config_id[@version])", id)?;
    Ok((Some(id.to_owned()), version))
}

/// Checks what the session asks for; the settings, key and dial URL.
pub fn check(
    config: &RealtimeSessionConfig,
) -> Result<(Settings, Secret, String, String), PluginError> {
    let s = Settings::from_config(&config.plugin_config)?;
    let key = api_key(config)?;
    let (input, output) = (config.input_format, config.output_format);
    if input.encoding != AudioEncoding::Linear16 || input.channels != 1 || input.sample_rate == 0 {
        return Err(PluginError::Config(format!(
            "hume: EVI takes mono linear16 input, not {input:?}"
        )));
    }
    if output.encoding != AudioEncoding::Linear16
        || output.channels != 1
        || output.sample_rate != OUTPUT_RATE
    {
        return Err(PluginError::Config(format!(
            "hume: EVI produces mono linear16 at {OUTPUT_RATE} Hz, not {output:?}"
        )));
    }
    let (config_id, version) = model_config(&config.model)?;
    let verbose = s.verbose_transcription.unwrap_or(config.transcribe_input);
    let url = s.chat_url(config_id.as_deref(), version, verbose, &key);
    let model = match (config_id.or_else(|| s.config_id.clone()), version) {
        (Some(c), Some(v)) => format!("{c}@{v}"),
        (Some(c), None) => c,
        (None, _) => "evi-default".to_owned(),
    };
    Ok((s, key, url, model))
}

/// The `PluginError` for an EVI `error` message. Hume documents the message shape
/// (`web_socket_error.py`: `code`, `slug`, `message`) but not the full list of codes (the
/// Errors page lists `E0100` invalid JSON, `E0101` invalid structure, `E02xx` media problems,
/// `E0300` out of credits); the category is therefore read from the code and slug: credits,
/// billing and credentials → Auth (an operator must act, as the kit treats HTTP 402); rate,
/// limit and concurrency → RateLimited; timeouts → Timeout; configs not found → Config;
/// invalid or unparsable input and other `E` codes → Permanent; anything else (internal
/// faults) → Transient. The exact slugs are UNCONFIRMED.
pub fn vendor_error(code: &str, slug: &str, message: &str, redactor: &Redactor) -> PluginError {
    let hay = format!("{code} {slug} {message}").to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| hay.contains(w));
    let category = if code == "E0300"
        || has(&[
            "credit",
            "billing",
            "payment",
            "unauthori",
            "forbidden",
            "api_key",
            "api key",
            "invalid_key",
            "access_token",
            "credential",
            "authenticat",
        ]) {
        ErrorCategory::Auth
    } else if has(&[
        "rate_limit",
        "rate limit",
        "too_many",
        "too many",
        "concurren",
        "quota",
    ]) {
        ErrorCategory::RateLimited
    } else if has(&[
        "timeout",
        "timed out",
        "timed_out",
        "inactivity",
        "max_duration",
    ]) {
        ErrorCategory::Timeout
    } else if has(&[
        "config_not_found",
        "not_found",
        "not found",
        "invalid_config",
    ]) {
        ErrorCategory::Config
    } else if code.starts_with('E')
        || code.starts_with('W')
        || has(&["invalid", "parse", "malformed", "unsupported"])
    {
        ErrorCategory::Permanent
    } else {
        ErrorCategory::Transient
    };
    let what = [code, slug]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let text = if message.is_empty() { "error" } else { message };
    errors::make(
        category,
        format!("hume: {what}: {}", errors::excerpt(text.as_bytes(), 512)),
        None,
        redactor,
    )
}

/// Dials, waits for `chat_metadata`, sends `session_settings` (and, for manual turn detection,
/// `pause_assistant_message`), and returns the session task.
pub async fn connect(
    config: RealtimeSessionConfig,
    io: RealtimeIo,
) -> Result<ProviderTask, PluginError> {
    let (s, key, url, model) = check(&config)?;
    let mut wc = WsConfig::new(url).context(CONTEXT).secret(key.clone());
    if s.auth == AuthMode::Header {
        wc = wc.header("X-Hume-Api-Key", key.clone());
    }
    if let Some(k) = &s.language_model_api_key {
        wc = wc.secret(k.clone());
    }
    wc.connect_timeout = s.connect_timeout;
    wc.ping_interval = Some(s.ping_interval);
    wc.idle_timeout = Some(s.idle_timeout);
    wc.max_message_size = MAX_MESSAGE;
    let redactor = wc.redactor();
    let conn = ws::connect(&wc).await?;
    let (tx, mut rx) = conn.split();
    let (chat_id, chat_group_id) =
        match tokio::time::timeout(s.metadata_timeout, metadata(&mut rx, &redactor)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(errors::timeout(
                    "hume evi: waiting for chat_metadata",
                    s.metadata_timeout,
                    &redactor,
                ))
            }
        };
    tracing::debug!(%chat_id, %chat_group_id, "hume evi: chat started");
    let send_tools = wire::has_function_tools(&config);
    let settings = wire::session_settings(&s, &config, false);
    tx.send_text(serde_json::Value::Object(settings).to_string())
        .await?;
    let manual = is_manual(&config);
    if manual {
        tx.send_text(wire::pause()).await?;
    }
    note_unsupported(&config);
    let audio_out = config.modalities.is_empty() || config.modalities.iter().any(|m| m == "audio");
    let session = Session {
        io,
        tx,
        rx,
        redactor,
        settings: s,
        config,
        chat_id,
        model,
        manual,
        paused: manual,
        sent_tools: send_tools,
        audio_out,
        responding: None,
        discarding: false,
        responses: 0,
        turn_open: false,
        input_bytes: 0,
        tool_names: VecDeque::new(),
        last_error: None,
        format_error_sent: false,
        malformed: 0,
    };
    Ok(Box::pin(session.run()))
}

/// Reads until `chat_metadata` (`chat_metadata.py`: sent first on every chat).
async fn metadata(
    rx: &mut WsReceiver,
    redactor: &Redactor,
) -> Result<(String, String), PluginError> {
    loop {
        match rx.recv().await? {
            Some(Message::Text(t)) => match wire::parse(t.as_str()) {
                Incoming::ChatMetadata {
                    chat_id,
                    chat_group_id,
                } => return Ok((chat_id, chat_group_id)),
                Incoming::Error {
                    code,
                    slug,
                    message,
                } => return Err(vendor_error(&code, &slug, &message, redactor)),
                other => tracing::debug!(?other, "hume evi: message before chat_metadata"),
            },
            Some(_) => {}
            None => {
                return Err(PluginError::Transient(
                    "hume evi: the chat closed before chat_metadata".into(),
                ))
            }
        }
    }
}

/// Logs the session fields EVI's session settings have no place for.
fn note_unsupported(config: &RealtimeSessionConfig) {
    if config.temperature.is_some() || config.max_response_tokens.is_some() {
        tracing::debug!(
            "hume evi: temperature and max_response_tokens are set in the EVI configuration's \
             language model, not per session; ignored"
        );
    }
    if let Some(td) = &config.turn_detection {
        if td.as_object().is_some_and(|o| o.len() > 1) {
            tracing::debug!(
                "hume evi: turn detection is tuned in the EVI configuration; parameters ignored"
            );
        }
    }
}

struct Session {
    io: RealtimeIo,
    tx: WsSender,
    rx: WsReceiver,
    redactor: Redactor,
    settings: Settings,
    config: RealtimeSessionConfig,
    chat_id: String,
    model: String,
    /// Manual turn detection (emulated with pause/resume).
    manual: bool,
    /// We sent `pause_assistant_message` and no resume since.
    paused: bool,
    /// `session_settings` carried a `tools` list before (an update must clear it explicitly).
    sent_tools: bool,
    /// `modalities` include audio (or are unset).
    audio_out: bool,
    /// The response in progress (output seen since the last `assistant_end`).
    responding: Option<String>,
    /// A cancelled or interrupted response: its remaining output is dropped.
    discarding: bool,
    responses: u64,
    /// A spoken user turn has started (`Speech` started sent, stopped not yet).
    turn_open: bool,
    input_bytes: u64,
    tool_names: VecDeque<(String, String)>,
    /// The last `error` message, reported again if Hume then closes the chat.
    last_error: Option<PluginError>,
    format_error_sent: bool,
    malformed: u32,
}

/// Why the loop stopped.
enum Stop {
    /// The host is gone or closed the input.
    Host,
}

type Step = Result<(), Result<Stop, PluginError>>;

impl Session {
    async fn run(mut self) -> Result<(), PluginError> {
        let created = RealtimeEvent::SessionCreated {
            session_id: self.chat_id.clone(),
            model: self.model.clone(),
        };
        if self.io.events.send(created).await.is_err() {
            return self.close().await;
        }
        loop {
            let step = tokio::select! {
                input = self.io.input.recv() => match input {
                    Some(i) => self.on_input(i).await,
                    None => Err(Ok(Stop::Host)),
                },
                msg = self.rx.recv() => self.on_vendor(msg).await,
            };
            match step {
                Ok(()) => {}
                Err(Ok(Stop::Host)) => return self.close().await,
                Err(Err(e)) => return Err(e),
            }
        }
    }

    /// Graceful close: a close frame, then Hume's answer, bounded by `close_timeout`.
    async fn close(mut self) -> Result<(), PluginError> {
        let _ = self.tx.close(CloseCode::Normal, "").await;
        let wait = self.settings.close_timeout;
        let _ = tokio::time::timeout(wait, async {
            while let Ok(Some(_)) = self.rx.recv().await {}
        })
        .await;
        Ok(())
    }

    async fn emit(&self, ev: RealtimeEvent) -> Step {
        self.io.events.send(ev).await.map_err(|_| Ok(Stop::Host))
    }

    async fn send(&self, text: String) -> Step {
        match self.tx.send_text(text).await {
            Ok(()) => Ok(()),
            // The connection failed (the receiver may still hold the reason; this is the
            // kit's account of it).
            Err(e) => Err(Err(e)),
        }
    }

    fn input_ms(&self) -> u64 {
        let rate = u64::from(self.config.input_format.sample_rate.max(1));
        self.input_bytes / 2 * 1000 / rate
    }

    async fn resume(&mut self) -> Step {
        if self.manual && self.paused {
            self.paused = false;
            self.send(wire::resume()).await?;
        }
        Ok(())
    }

    async fn pause(&mut self) -> Step {
        if self.manual && !self.paused {
            self.paused = true;
            self.send(wire::pause()).await?;
        }
        Ok(())
    }

    async fn on_input(&mut self, input: RealtimeInput) -> Step {
        match input {
            RealtimeInput::Audio(pcm) => {
                if pcm.is_empty() {
                    return Ok(());
                }
                self.input_bytes += pcm.len() as u64;
                self.send(wire::audio_input(&pcm)).await
            }
            RealtimeInput::Text(text) => {
                self.send(wire::user_input(&text)).await?;
                self.resume().await
            }
            RealtimeInput::CommitAudio | RealtimeInput::CreateResponse => {
                if self.manual {
                    self.resume().await
                } else {
                    tracing::debug!(
                        "hume evi: commit/create_response ignored: EVI detects turns itself"
                    );
                    Ok(())
                }
            }
            RealtimeInput::ClearAudio => {
                tracing::debug!("hume evi: clear_audio ignored: EVI keeps no input buffer");
                Ok(())
            }
            RealtimeInput::CancelResponse => {
                if let Some(id) = self.responding.take() {
                    self.discarding = true;
                    self.emit(RealtimeEvent::ResponseDone { response_id: id })
                        .await?;
                }
                Ok(())
            }
            RealtimeInput::FunctionResult { call_id, result } => {
                let name = self
                    .tool_names
                    .iter()
                    .find(|(id, _)| *id == call_id)
                    .map(|(_, n)| n.clone());
                self.send(wire::tool_response(&call_id, &result, name.as_deref()))
                    .await?;
                // The answer continues the conversation: what follows is a new response.
                self.discarding = false;
                self.resume().await
            }
            RealtimeInput::UpdateSession(c) => {
                let mut c = *c;
                // The formats were fixed at connect.
                c.input_format = self.config.input_format;
                c.output_format = self.config.output_format;
                let manual = is_manual(&c);
                let has_tools = wire::has_function_tools(&c);
                let settings = wire::session_settings(&self.settings, &c, self.sent_tools);
                self.sent_tools |= has_tools;
                note_unsupported(&c);
                self.audio_out =
                    c.modalities.is_empty() || c.modalities.iter().any(|m| m == "audio");
                self.config = c;
                self.send(serde_json::Value::Object(settings).to_string())
                    .await?;
                if manual != self.manual {
                    if manual {
                        self.manual = true;
                        if self.responding.is_none() {
                            self.pause().await?;
                        }
                    } else {
                        self.resume().await?;
                        self.manual = false;
                        self.paused = false;
                    }
                }
                self.emit(RealtimeEvent::SessionUpdated).await
            }
        }
    }

    async fn on_vendor(&mut self, msg: Result<Option<Message>, PluginError>) -> Step {
        let text = match msg {
            Ok(Some(Message::Text(t))) => t,
            Ok(Some(Message::Binary(_))) => {
                self.malformed("a binary frame");
                return Ok(());
            }
            Ok(Some(_)) => return Ok(()),
            // A normal close right after an `error` message: that error is why.
            Ok(None) => {
                let e = self.last_error.take().unwrap_or_else(|| {
                    PluginError::Transient("hume evi: Hume closed the chat".into())
                });
                return Err(Err(e));
            }
            // A close code or a dropped connection speaks for itself (the `error` message, if
            // any, was reported as an event already).
            Err(e) => return Err(Err(e)),
        };
        let incoming = wire::parse(text.as_str());
        if !matches!(incoming, Incoming::Error { .. }) {
            // Only an error right before a close explains the close.
            self.last_error = None;
        }
        match incoming {
            Incoming::ChatMetadata { .. } => Ok(()),
            Incoming::UserMessage {
                text,
                interim,
                from_text,
                begin,
                end,
            } => {
                if !interim {
                    // A new user turn: whatever was being dropped is over.
                    self.discarding = false;
                }
                if !from_text {
                    if !self.turn_open {
                        self.turn_open = true;
                        let audio_ms = begin.unwrap_or_else(|| self.input_ms());
                        self.emit(RealtimeEvent::Speech {
                            started: true,
                            audio_ms,
                        })
                        .await?;
                    }
                    if !interim {
                        self.turn_open = false;
                        let audio_ms = end.unwrap_or_else(|| self.input_ms());
                        self.emit(RealtimeEvent::Speech {
                            started: false,
                            audio_ms,
                        })
                        .await?;
                    }
                }
                self.emit(RealtimeEvent::Transcript {
                    text,
                    role: Role::User,
                    is_final: !interim,
                })
                .await
            }
            Incoming::AssistantMessage { id, text } => {
                if self.discarding {
                    return Ok(());
                }
                self.start_response(id);
                self.emit(RealtimeEvent::Transcript {
                    text,
                    role: Role::Assistant,
                    is_final: true,
                })
                .await
            }
            Incoming::AudioOutput { data, .. } => {
                if self.discarding {
                    return Ok(());
                }
                self.on_audio(&data).await
            }
            Incoming::AssistantEnd => {
                if self.discarding {
                    // The end of the cancelled or interrupted response.
                    self.discarding = false;
                    return self.pause().await;
                }
                let id = self.responding.take().unwrap_or_else(|| self.next_id());
                self.emit(RealtimeEvent::ResponseDone { response_id: id })
                    .await?;
                self.pause().await
            }
            Incoming::UserInterruption => {
                if !self.turn_open {
                    self.turn_open = true;
                    let audio_ms = self.input_ms();
                    self.emit(RealtimeEvent::Speech {
                        started: true,
                        audio_ms,
                    })
                    .await?;
                }
                self.emit(RealtimeEvent::Interrupted).await?;
                if let Some(id) = self.responding.take() {
                    self.discarding = true;
                    self.emit(RealtimeEvent::ResponseDone { response_id: id })
                        .await?;
                }
                Ok(())
            }
            Incoming::ToolCall {
                call_id,
                name,
                arguments,
            } => {
                if self.tool_names.len() >= MAX_TOOL_CALLS {
                    self.tool_names.pop_front();
                }
                self.tool_names.push_back((call_id.clone(), name.clone()));
                self.emit(RealtimeEvent::FunctionCall {
                    call_id,
                    name,
                    arguments,
                })
                .await
            }
            Incoming::Error {
                code,
                slug,
                message,
            } => {
                let e = vendor_error(&code, &slug, &message, &self.redactor);
                if e.category() == ErrorCategory::Auth {
                    let _ = self.tx.close(CloseCode::Normal, "").await;
                    return Err(Err(e));
                }
                self.last_error = Some(e.clone());
                self.emit(RealtimeEvent::Error(e)).await
            }
            Incoming::Ignored(ty) => {
                tracing::trace!(%ty, "hume evi: ignored");
                Ok(())
            }
            Incoming::Malformed(why) => {
                self.malformed(&why);
                Ok(())
            }
        }
    }

    fn malformed(&mut self, why: &str) {
        self.malformed = self.malformed.saturating_add(1);
        if self.malformed <= MAX_MALFORMED_LOGS {
            tracing::warn!(why, count = self.malformed, "hume evi: skipped a message");
        }
    }

    fn next_id(&mut self) -> String {
        self.responses += 1;
        format!("hume-response-{}", self.responses)
    }

    fn start_response(&mut self, id: Option<String>) {
        if self.responding.is_none() {
            let fallback = self.next_id();
            self.responding = Some(id.filter(|i| !i.is_empty()).unwrap_or(fallback));
        }
    }

    /// One `audio_output` chunk: the WAV unwrapped, checked against the declared 48 kHz 16-bit
    /// format, mixed down to mono.
    async fn on_audio(&mut self, data: &[u8]) -> Step {
        let chunk = wire::unwrap_wav(data);
        let pcm_tag = chunk.format_tag.is_none_or(|t| t == 1 || t == 0xFFFE);
        let bits_ok = chunk.bits.is_none_or(|b| b == 16);
        let rate_ok = chunk.sample_rate.is_none_or(|r| r == OUTPUT_RATE);
        if !(pcm_tag && bits_ok && rate_ok) {
            if !self.format_error_sent {
                self.format_error_sent = true;
                let e = PluginError::Permanent(format!(
                    "hume evi: audio_output is not 16-bit PCM at {OUTPUT_RATE} Hz (format {:?}, \
                     {:?} bits, {:?} Hz); dropped",
                    chunk.format_tag, chunk.bits, chunk.sample_rate
                ));
                self.emit(RealtimeEvent::Error(e)).await?;
            }
            return Ok(());
        }
        let channels = chunk.channels.unwrap_or(1).max(1);
        let mut pcm = if channels > 1 {
            wire::downmix(chunk.pcm, channels)
        } else {
            chunk.pcm.to_vec()
        };
        pcm.truncate(pcm.len() & !1);
        if pcm.is_empty() {
            return Ok(());
        }
        self.start_response(None);
        if !self.audio_out {
            return Ok(());
        }
        self.emit(RealtimeEvent::Audio(Bytes::from(pcm))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_categories() {
        let r = Redactor::new();
        for (code, slug, msg, cat) in [
            ("E0300", "out_of_credits", "No credits", ErrorCategory::Auth),
            (
                "E0100",
                "invalid_json",
                "Unable to parse",
                ErrorCategory::Permanent,
            ),
            (
                "I0100",
                "invalid_message",
                "Unable to parse message",
                ErrorCategory::Permanent,
            ),
            (
                "E0709",
                "concurrency_limit",
                "Too many chats",
                ErrorCategory::RateLimited,
            ),
            (
                "E0705",
                "inactivity_timeout",
                "Inactive",
                ErrorCategory::Timeout,
            ),
            (
                "E0710",
                "config_not_found",
                "No such config",
                ErrorCategory::Config,
            ),
            ("I0500", "uncaught", "Internal", ErrorCategory::Transient),
        ] {
            let e = vendor_error(code, slug, msg, &r);
            assert_eq!(e.category(), cat, "{code} {slug}");
            assert!(e.to_string().contains(code), "{e}");
        }
    }

    #[test]
    fn models_are_config_ids() {
        assert_eq!(model_config("").unwrap(), (None, None));
        assert_eq!(
            model_config("abc-1@2").unwrap(),
            (Some("abc-1".into()), Some(2))
        );
        assert!(model_config("abc@x").is_err());
        assert!(model_config("a b").is_err());
    }
}
