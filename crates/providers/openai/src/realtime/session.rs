//! One realtime session: host inputs to client events, server events to [`RealtimeEvent`]s.
//!
//! Flow (TTS_PROTOCOLS.md §12 "Typical turn"; openai-python `types/realtime/`):
//! - setup ([`setup`]): wait for `session.created`, send the first `session.update`, wait for
//!   its `session.updated` (an `error` instead fails the connect with its category), all
//!   bounded;
//! - audio → `input_audio_buffer.append` (base64, at most `max_append_bytes` per event);
//!   `CommitAudio` → `input_audio_buffer.commit` (+ `response.create` when turns are manual,
//!   since nothing else will start the response); `ClearAudio` → `input_audio_buffer.clear`;
//!   `Text` → a user `input_text` message item + `response.create`; `FunctionResult` → a
//!   `function_call_output` item + `response.create`; `CreateResponse` → `response.create`;
//!   `CancelResponse` → `response.cancel` when a response is asked for or under way;
//!   `UpdateSession` → `session.update`, and its `session.updated` → `SessionUpdated`;
//! - barge-in: `input_audio_buffer.speech_started` while a response is under way, or while its
//!   audio is still playing by our estimate, emits `Interrupted` after the `Speech` event. With
//!   server/semantic VAD `interrupt_response` defaults to true and the server cancels the
//!   response itself (`realtime_audio_input_turn_detection.py`), so no `response.cancel` is
//!   sent. On barge-in and on cancel the assistant item's audio is truncated
//!   (`conversation.item.truncate`) to an estimate of what the client played: the wall-clock
//!   time since the item's first audio, capped by the audio sent (the server produces audio
//!   faster than real time and the plugin cannot see playback; `truncate_on_interrupt: false`
//!   turns this off). Errors about our own truncate and cancel events are logged, not
//!   reported;
//! - function calls are emitted once per `call_id`, when the call's `response.output_item.done`
//!   arrives with a status other than `incomplete` (arguments of a cancelled call are partial:
//!   `response.function_call_arguments.done` "is also emitted when a Response is interrupted"),
//!   or at a `completed` `response.done` for a call seen only in
//!   `response.function_call_arguments.done`;
//! - `error` events are non-fatal `Error`s (categories: `invalid_request_error` → Config,
//!   authentication → Auth, rate limits → RateLimited, `server_error` → Transient, others
//!   Permanent), except authentication and `session_expired`, which end the session with that
//!   error; a `failed` `response.done` also reports its `status_details.error`;
//! - the host closing its input closes the socket with 1000 and waits (bounded) for the end;
//!   the server closing first ends the task with an error; a response asked for with nothing
//!   heard for `response_timeout_ms` is a timeout; pings and the idle bound catch a dead peer.

use super::messages::{self, Server, VendorError};
use super::settings::{self, Purpose, Settings, Transcode, Wire};
use base64::Engine as _;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::codec;
use waav_plugin_api::{
    ErrorCategory, PluginError, RealtimeEvent, RealtimeInput, RealtimeIo, RealtimeSessionConfig,
    Role,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{CloseCode, Message, WsReceiver, WsSender};

const CTX: &str = "openai realtime";
/// Event ids whose errors are expected and kept quiet (our cancels and truncates).
const QUIET_IDS: usize = 32;
/// Bound on the per-response function-call bookkeeping.
const MAX_CALLS: usize = 256;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The category of a vendor error (`realtime_error.py` `type`, `code`).
pub fn category(e: &VendorError) -> ErrorCategory {
    let kind = e.kind.to_ascii_lowercase();
    let code = e.code.as_deref().unwrap_or("").to_ascii_lowercase();
    if kind.contains("auth") || code == "invalid_api_key" || code.contains("authentication") {
        ErrorCategory::Auth
    } else if kind.contains("rate_limit") || code.contains("rate_limit") {
        ErrorCategory::RateLimited
    } else if code == "session_expired" {
        // UNCONFIRMED code name; the session's own time limit.
        ErrorCategory::Timeout
    } else if kind == "server_error" {
        ErrorCategory::Transient
    } else if kind == "invalid_request_error" {
        ErrorCategory::Config
    } else {
        ErrorCategory::Permanent
    }
}

/// Whether an error ends the session (the server closes after these).
pub fn is_fatal(e: &VendorError) -> bool {
    matches!(category(e), ErrorCategory::Auth | ErrorCategory::Timeout)
}

/// The [`PluginError`] for a vendor error, redacted and bounded.
pub fn vendor_error(e: &VendorError, redactor: &Redactor) -> PluginError {
    let mut m = format!(
        "{CTX}: {}",
        if e.kind.is_empty() { "error" } else { &e.kind }
    );
    if let Some(c) = &e.code {
        m.push_str(&format!(" ({c})"));
    }
    let text = errors::excerpt(e.message.as_bytes(), errors::BODY_EXCERPT_LIMIT);
    if !text.is_empty() {
        m.push_str(": ");
        m.push_str(&text);
    }
    errors::make(category(e), m, None, redactor)
}

/// The wire side of a session.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    /// What `input_audio_buffer.append` carries.
    pub input: Wire,
    /// Host → wire conversion.
    pub input_transcode: Transcode,
    /// What `response.output_audio.delta` carries.
    pub output: Wire,
    /// Wire → host conversion.
    pub output_transcode: Transcode,
}

/// Numbers client events (`event_id`, echoed by errors).
#[derive(Debug, Default)]
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("waav_{}", self.0)
    }
}

/// Waits (bounded) for a server event `want` picks out; an `error` first fails with its
/// category, a close fails as transient.
async fn wait_for<T>(
    rx: &mut WsReceiver,
    timeout: Duration,
    what: &str,
    redactor: &Redactor,
    mut want: impl FnMut(Server) -> Option<T>,
) -> Result<T, PluginError> {
    let wait = async {
        loop {
            match rx.recv().await? {
                Some(Message::Text(t)) => match messages::parse(&t) {
                    Some(Server::Error(e)) => return Err(vendor_error(&e, redactor)),
                    Some(ev) => {
                        if let Some(v) = want(ev) {
                            return Ok(v);
                        }
                    }
                    None => tracing::debug!(bytes = t.len(), "{CTX}: unparsed event skipped"),
                },
                Some(_) => {}
                None => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{CTX}: the server closed the socket while waiting for {what}"),
                        None,
                        redactor,
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(errors::timeout(
            &format!("{CTX}: waiting for {what}"),
            timeout,
            redactor,
        )),
    }
}

/// The connect-time exchange: `session.created`, the first `session.update`, its
/// `session.updated`. Returns the session id and model.
pub async fn setup(
    tx: &WsSender,
    rx: &mut WsReceiver,
    settings: &Settings,
    config: &RealtimeSessionConfig,
    formats: Formats,
    redactor: &Redactor,
) -> Result<(String, Option<String>), PluginError> {
    let (id, model) = wait_for(
        rx,
        settings.setup_timeout,
        "session.created",
        redactor,
        |ev| match ev {
            Server::SessionCreated { id, model } => Some((id, model)),
            _ => None,
        },
    )
    .await?;
    let session = settings::session_object(
        settings,
        config,
        formats.input,
        formats.output,
        Purpose::Initial,
        None,
    )?;
    tx.send_text(messages::session_update("waav_setup", session))
        .await?;
    wait_for(
        rx,
        settings.setup_timeout,
        "session.updated",
        redactor,
        |ev| matches!(ev, Server::SessionUpdated).then_some(()),
    )
    .await?;
    Ok((id, model))
}

/// The assistant audio item being played, for barge-in and truncation.
#[derive(Debug)]
struct AudioItem {
    id: String,
    first_at: Instant,
    /// Wire audio sent to the host, in ms.
    sent_ms: f64,
}

impl AudioItem {
    /// What the client has probably played: wall-clock time since the first audio, capped by
    /// what was sent.
    fn played_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.first_at).as_secs_f64() * 1000.0;
        elapsed.min(self.sent_ms).floor() as u64
    }

    fn still_playing(&self, now: Instant) -> bool {
        (now.saturating_duration_since(self.first_at).as_secs_f64() * 1000.0) < self.sent_ms
    }
}

/// A running session.
pub struct Session {
    tx: WsSender,
    rx: WsReceiver,
    io: RealtimeIo,
    settings: Settings,
    config: RealtimeSessionConfig,
    formats: Formats,
    redactor: Redactor,
    session_id: String,
    model: String,
    ids: Ids,
    manual: bool,
    voice: Option<String>,
    quiet: VecDeque<String>,
    pending_updates: usize,
    /// `response.id` of the response under way (`response.created` … `response.done`).
    response: Option<String>,
    /// `response.create` sent, `response.created` not yet seen.
    requested: Option<String>,
    awaiting_since: Option<Instant>,
    audio_item: Option<AudioItem>,
    in_carry: Option<u8>,
    out_carry: Option<u8>,
    item_names: HashMap<String, String>,
    pending_args: HashMap<String, (String, String, Option<String>)>,
    calls_emitted: HashSet<String>,
}

/// Everything [`Session::new`] needs.
pub struct Parts {
    /// The socket's sending half.
    pub tx: WsSender,
    /// The socket's receiving half.
    pub rx: WsReceiver,
    /// The host's channels.
    pub io: RealtimeIo,
    /// Plugin settings.
    pub settings: Settings,
    /// The session config.
    pub config: RealtimeSessionConfig,
    /// Wire formats.
    pub formats: Formats,
    /// Redacts the key.
    pub redactor: Redactor,
    /// From `session.created`.
    pub session_id: String,
    /// The model in use.
    pub model: String,
}

impl Session {
    /// A session after [`setup`].
    pub fn new(p: Parts) -> Self {
        let manual = settings::is_manual(p.config.turn_detection.as_ref());
        let voice = settings::voice_of(&p.settings, &p.config);
        Self {
            tx: p.tx,
            rx: p.rx,
            io: p.io,
            settings: p.settings,
            config: p.config,
            formats: p.formats,
            redactor: p.redactor,
            session_id: p.session_id,
            model: p.model,
            ids: Ids::default(),
            manual,
            voice,
            quiet: VecDeque::new(),
            pending_updates: 0,
            response: None,
            requested: None,
            awaiting_since: None,
            audio_item: None,
            in_carry: None,
            out_carry: None,
            item_names: HashMap::new(),
            pending_args: HashMap::new(),
            calls_emitted: HashSet::new(),
        }
    }

    /// Runs until the host closes its input (`Ok`) or the session fails.
    pub async fn run(mut self) -> Result<(), PluginError> {
        self.emit(RealtimeEvent::SessionCreated {
            session_id: self.session_id.clone(),
            model: self.model.clone(),
        })
        .await?;
        loop {
            let deadline = self
                .awaiting_since
                .zip(self.settings.response_timeout)
                .map(|(t, d)| t + d);
            tokio::select! {
                input = self.io.input.recv() => match input {
                    Some(i) => self.on_input(i).await?,
                    None => return self.close().await,
                },
                msg = self.rx.recv() => match msg? {
                    Some(Message::Text(t)) => {
                        self.awaiting_since = None;
                        self.on_text(&t).await?;
                    }
                    Some(Message::Binary(b)) => {
                        tracing::debug!(bytes = b.len(), "{CTX}: binary frame ignored");
                    }
                    Some(_) => {}
                    None => {
                        return Err(errors::make(
                            ErrorCategory::Transient,
                            format!("{CTX}: the server closed the session"),
                            None,
                            &self.redactor,
                        ))
                    }
                },
                () = sleep_until(deadline) => {
                    let d = self.settings.response_timeout.unwrap_or_default();
                    return Err(errors::timeout(
                        &format!("{CTX}: no answer from the server"),
                        d,
                        &self.redactor,
                    ));
                }
            }
        }
    }

    async fn emit(&self, ev: RealtimeEvent) -> Result<(), PluginError> {
        self.io
            .events
            .send(ev)
            .await
            .map_err(|_| PluginError::Transient(format!("{CTX}: the host went away")))
    }

    async fn send(&self, text: String) -> Result<(), PluginError> {
        self.tx.send_text(text).await
    }

    fn quiet(&mut self, id: &str) {
        if self.quiet.len() == QUIET_IDS {
            self.quiet.pop_front();
        }
        self.quiet.push_back(id.to_owned());
    }

    async fn request_response(&mut self) -> Result<(), PluginError> {
        let id = self.ids.next();
        self.send(messages::response_create(&id)).await?;
        self.requested = Some(id);
        self.awaiting_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn close(self) -> Result<(), PluginError> {
        let Self {
            tx,
            mut rx,
            settings,
            ..
        } = self;
        if tx.close(CloseCode::Normal, "").await.is_err() {
            return Ok(());
        }
        let drain = async { while let Ok(Some(_)) = rx.recv().await {} };
        if tokio::time::timeout(settings.close_timeout, drain)
            .await
            .is_err()
        {
            tracing::debug!("{CTX}: the server did not finish the close in time");
        }
        Ok(())
    }

    async fn on_input(&mut self, input: RealtimeInput) -> Result<(), PluginError> {
        match input {
            RealtimeInput::Audio(a) => self.append(&a).await?,
            RealtimeInput::CommitAudio => {
                let id = self.ids.next();
                self.send(messages::simple(&id, "input_audio_buffer.commit"))
                    .await?;
                self.awaiting_since.get_or_insert_with(Instant::now);
                if self.manual {
                    self.request_response().await?;
                }
            }
            RealtimeInput::ClearAudio => {
                self.in_carry = None;
                let id = self.ids.next();
                self.send(messages::simple(&id, "input_audio_buffer.clear"))
                    .await?;
            }
            RealtimeInput::Text(t) => {
                let id = self.ids.next();
                self.send(messages::user_text(&id, &t)).await?;
                self.request_response().await?;
            }
            RealtimeInput::FunctionResult { call_id, result } => {
                let id = self.ids.next();
                self.send(messages::function_output(&id, &call_id, &result))
                    .await?;
                self.request_response().await?;
            }
            RealtimeInput::CreateResponse => self.request_response().await?,
            RealtimeInput::CancelResponse => self.cancel().await?,
            RealtimeInput::UpdateSession(c) => self.update(*c).await?,
        }
        Ok(())
    }

    async fn append(&mut self, audio: &[u8]) -> Result<(), PluginError> {
        let wire = transcode_in(self.formats.input_transcode, audio, &mut self.in_carry);
        let max = self.settings.max_append_bytes;
        let align = if self.formats.input == Wire::Pcm {
            2
        } else {
            1
        };
        let max = (max / align).max(1) * align;
        for chunk in wire.chunks(max) {
            let id = self.ids.next();
            self.send(messages::append(&id, &b64().encode(chunk)))
                .await?;
        }
        Ok(())
    }

    async fn cancel(&mut self) -> Result<(), PluginError> {
        if self.response.is_none() && self.requested.is_none() {
            tracing::debug!("{CTX}: cancel with no response under way; nothing sent");
            return Ok(());
        }
        let id = self.ids.next();
        self.quiet(&id);
        self.send(messages::response_cancel(&id, self.response.as_deref()))
            .await?;
        self.truncate().await
    }

    async fn truncate(&mut self) -> Result<(), PluginError> {
        let Some(item) = self.audio_item.take() else {
            return Ok(());
        };
        if !self.settings.truncate_on_interrupt || item.id.is_empty() {
            return Ok(());
        }
        let id = self.ids.next();
        self.quiet(&id);
        let ms = item.played_ms(Instant::now());
        self.send(messages::truncate(&id, &item.id, ms)).await
    }

    async fn update(&mut self, mut c: RealtimeSessionConfig) -> Result<(), PluginError> {
        // Compared with what was asked for (the vendor may report a dated snapshot id).
        let asked = self.settings.model_for(&self.config);
        if self.settings.model_for(&c) != asked {
            self.emit(RealtimeEvent::Error(PluginError::Config(format!(
                "{CTX}: the model cannot change within a session (send a new config); \
                 keeping {asked}"
            ))))
            .await?;
            c.model = self.config.model.clone();
        }
        let session = match settings::session_object(
            &self.settings,
            &c,
            self.formats.input,
            self.formats.output,
            Purpose::Update,
            self.voice.as_deref(),
        ) {
            Ok(s) => s,
            Err(e) => return self.emit(RealtimeEvent::Error(e)).await,
        };
        let id = self.ids.next();
        self.send(messages::session_update(&id, session)).await?;
        self.pending_updates += 1;
        self.manual = settings::is_manual(c.turn_detection.as_ref());
        if let Some(v) = settings::voice_of(&self.settings, &c) {
            self.voice = Some(v);
        }
        self.config = c;
        Ok(())
    }

    fn responding(&self, now: Instant) -> bool {
        self.response.is_some()
            || self
                .audio_item
                .as_ref()
                .is_some_and(|a| a.still_playing(now))
    }

    async fn on_text(&mut self, text: &str) -> Result<(), PluginError> {
        let Some(ev) = messages::parse(text) else {
            tracing::debug!(bytes = text.len(), "{CTX}: malformed event skipped");
            return Ok(());
        };
        match ev {
            Server::SessionCreated { .. } => {}
            Server::SessionUpdated => {
                if self.pending_updates > 0 {
                    self.pending_updates -= 1;
                    self.emit(RealtimeEvent::SessionUpdated).await?;
                }
            }
            Server::SpeechStarted { ms } => {
                let interrupted = self.responding(Instant::now());
                self.emit(RealtimeEvent::Speech {
                    started: true,
                    audio_ms: ms,
                })
                .await?;
                if interrupted {
                    self.emit(RealtimeEvent::Interrupted).await?;
                    self.truncate().await?;
                }
            }
            Server::SpeechStopped { ms } => {
                self.emit(RealtimeEvent::Speech {
                    started: false,
                    audio_ms: ms,
                })
                .await?;
            }
            Server::UserTranscript { text, is_final } => {
                self.emit(RealtimeEvent::Transcript {
                    text,
                    role: Role::User,
                    is_final,
                })
                .await?;
            }
            Server::TranscriptionFailed { message } => {
                let m = errors::excerpt(message.as_bytes(), errors::BODY_EXCERPT_LIMIT);
                self.emit(RealtimeEvent::Error(errors::make(
                    ErrorCategory::Permanent,
                    format!("{CTX}: input transcription failed: {m}"),
                    None,
                    &self.redactor,
                )))
                .await?;
            }
            Server::ResponseCreated { id } => {
                self.requested = None;
                self.response = Some(id);
            }
            Server::ResponseDone {
                id,
                status,
                reason,
                error,
            } => self.on_done(id, status, reason, error).await?,
            Server::Audio { item_id, delta } => self.on_audio(item_id, &delta).await?,
            Server::AssistantText { text, is_final } => {
                self.emit(RealtimeEvent::Transcript {
                    text,
                    role: Role::Assistant,
                    is_final,
                })
                .await?;
            }
            Server::ArgumentsDone {
                item_id,
                call_id,
                name,
                arguments,
            } => {
                if self.pending_args.len() < MAX_CALLS {
                    let name = name.or_else(|| self.item_names.get(&item_id).cloned());
                    self.pending_args
                        .insert(item_id, (call_id, arguments, name));
                }
            }
            Server::FunctionItem {
                done,
                item_id,
                call_id,
                name,
                arguments,
                status,
            } => {
                if !done {
                    if let Some(n) = name {
                        if self.item_names.len() < MAX_CALLS {
                            self.item_names.insert(item_id, n);
                        }
                    }
                    return Ok(());
                }
                let pending = self.pending_args.remove(&item_id);
                if status.as_deref() == Some("incomplete") {
                    tracing::debug!("{CTX}: incomplete function call dropped");
                    return Ok(());
                }
                let call_id = call_id.or_else(|| pending.as_ref().map(|p| p.0.clone()));
                let name = name
                    .or_else(|| pending.as_ref().and_then(|p| p.2.clone()))
                    .or_else(|| self.item_names.get(&item_id).cloned());
                let arguments = arguments
                    .filter(|a| !a.is_empty())
                    .or_else(|| pending.map(|p| p.1))
                    .unwrap_or_default();
                if let (Some(call_id), Some(name)) = (call_id, name) {
                    self.function_call(call_id, name, arguments).await?;
                }
            }
            Server::Error(e) => self.on_error(e).await?,
            Server::Other(ty) => tracing::trace!(ty, "{CTX}: event ignored"),
        }
        Ok(())
    }

    async fn function_call(
        &mut self,
        call_id: String,
        name: String,
        arguments: String,
    ) -> Result<(), PluginError> {
        if self.calls_emitted.len() >= MAX_CALLS || !self.calls_emitted.insert(call_id.clone()) {
            return Ok(());
        }
        self.emit(RealtimeEvent::FunctionCall {
            call_id,
            name,
            arguments,
        })
        .await
    }

    async fn on_done(
        &mut self,
        id: String,
        status: String,
        reason: Option<String>,
        error: Option<(String, Option<String>)>,
    ) -> Result<(), PluginError> {
        if status == "completed" {
            let left: Vec<_> = self.pending_args.drain().collect();
            for (_, (call_id, arguments, name)) in left {
                if let Some(name) = name {
                    self.function_call(call_id, name, arguments).await?;
                }
            }
        }
        if status == "failed" {
            let (kind, code) = error.unwrap_or_default();
            let e = VendorError {
                kind,
                code,
                message: "the response failed".into(),
                ..Default::default()
            };
            self.emit(RealtimeEvent::Error(vendor_error(&e, &self.redactor)))
                .await?;
        } else if status == "incomplete" {
            tracing::debug!(reason = ?reason, "{CTX}: response incomplete");
        }
        self.response = None;
        self.out_carry = None;
        self.pending_args.clear();
        self.item_names.clear();
        self.calls_emitted.clear();
        self.emit(RealtimeEvent::ResponseDone { response_id: id })
            .await
    }

    async fn on_audio(&mut self, item_id: String, delta: &str) -> Result<(), PluginError> {
        let Ok(wire) = b64().decode(delta) else {
            tracing::debug!(
                bytes = delta.len(),
                "{CTX}: audio delta is not base64; skipped"
            );
            return Ok(());
        };
        let now = Instant::now();
        if self.audio_item.as_ref().is_none_or(|a| a.id != item_id) {
            self.audio_item = Some(AudioItem {
                id: item_id,
                first_at: now,
                sent_ms: 0.0,
            });
        }
        let per_ms = match self.formats.output {
            Wire::Pcm => 48.0,
            Wire::Pcmu | Wire::Pcma => 8.0,
        };
        if let Some(a) = self.audio_item.as_mut() {
            a.sent_ms += wire.len() as f64 / per_ms;
        }
        let out = transcode_out(
            self.formats.output_transcode,
            self.formats.output,
            &wire,
            &mut self.out_carry,
        );
        if out.is_empty() {
            return Ok(());
        }
        self.emit(RealtimeEvent::Audio(Bytes::from(out))).await
    }

    async fn on_error(&mut self, e: VendorError) -> Result<(), PluginError> {
        let about = e.event_id.clone().unwrap_or_default();
        if !about.is_empty() && self.requested.as_deref() == Some(about.as_str()) {
            self.requested = None;
        }
        if !about.is_empty() && self.quiet.contains(&about) {
            tracing::debug!(code = ?e.code, "{CTX}: expected error about our own event");
            return Ok(());
        }
        let err = vendor_error(&e, &self.redactor);
        if is_fatal(&e) {
            let _ = self.tx.close(CloseCode::Normal, "").await;
            return Err(err);
        }
        self.emit(RealtimeEvent::Error(err)).await
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Host audio → wire audio.
pub fn transcode_in(t: Transcode, audio: &[u8], carry: &mut Option<u8>) -> Vec<u8> {
    match t {
        Transcode::None => audio.to_vec(),
        Transcode::Pcm16Mulaw => {
            let pcm = with_carry(audio, carry);
            pcm.chunks_exact(2)
                .map(|p| codec::mulaw_encode(i16::from_le_bytes([p[0], p[1]])))
                .collect()
        }
        Transcode::MulawPcm16 => audio
            .iter()
            .flat_map(|&b| codec::mulaw_decode(b).to_le_bytes())
            .collect(),
        Transcode::AlawPcm16 => audio
            .iter()
            .flat_map(|&b| codec::alaw_decode(b).to_le_bytes())
            .collect(),
    }
}

/// Wire audio → host audio; whole PCM16 samples only (an odd byte waits in `carry`).
pub fn transcode_out(t: Transcode, wire: Wire, audio: &[u8], carry: &mut Option<u8>) -> Vec<u8> {
    match t {
        Transcode::None if wire == Wire::Pcm => with_carry(audio, carry),
        Transcode::None => audio.to_vec(),
        Transcode::Pcm16Mulaw => audio
            .iter()
            .flat_map(|&b| codec::mulaw_decode(b).to_le_bytes())
            .collect(),
        Transcode::MulawPcm16 => with_carry(audio, carry)
            .chunks_exact(2)
            .map(|p| codec::mulaw_encode(i16::from_le_bytes([p[0], p[1]])))
            .collect(),
        Transcode::AlawPcm16 => with_carry(audio, carry)
            .chunks_exact(2)
            .map(|p| codec::alaw_encode(i16::from_le_bytes([p[0], p[1]])))
            .collect(),
    }
}

/// `carry` + `audio`, cut to an even length (the odd byte goes back into `carry`).
fn with_carry(audio: &[u8], carry: &mut Option<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(audio.len() + 1);
    v.extend(carry.take());
    v.extend_from_slice(audio);
    if v.len() % 2 == 1 {
        *carry = v.pop();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        let e = |kind: &str, code: Option<&str>| VendorError {
            kind: kind.into(),
            code: code.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            category(&e("invalid_request_error", Some("invalid_value"))),
            ErrorCategory::Config
        );
        assert_eq!(
            category(&e("authentication_error", None)),
            ErrorCategory::Auth
        );
        assert_eq!(
            category(&e("invalid_request_error", Some("invalid_api_key"))),
            ErrorCategory::Auth
        );
        assert_eq!(
            category(&e("rate_limit_error", None)),
            ErrorCategory::RateLimited
        );
        assert_eq!(
            category(&e("invalid_request_error", Some("rate_limit_exceeded"))),
            ErrorCategory::RateLimited
        );
        assert_eq!(category(&e("server_error", None)), ErrorCategory::Transient);
        assert_eq!(category(&e("weird", None)), ErrorCategory::Permanent);
        assert!(is_fatal(&e("authentication_error", None)));
        assert!(!is_fatal(&e("server_error", None)));
    }

    #[test]
    fn carries_keep_whole_samples() {
        let mut c = None;
        assert_eq!(
            transcode_out(Transcode::None, Wire::Pcm, &[1, 2, 3], &mut c),
            vec![1, 2]
        );
        assert_eq!(c, Some(3));
        assert_eq!(
            transcode_out(Transcode::None, Wire::Pcm, &[4], &mut c),
            vec![3, 4]
        );
        let mut c = None;
        let pcm: Vec<u8> = [1000i16, -1000]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mu = transcode_in(Transcode::Pcm16Mulaw, &pcm, &mut c);
        assert_eq!(
            mu,
            vec![codec::mulaw_encode(1000), codec::mulaw_encode(-1000)]
        );
        let back = transcode_out(Transcode::Pcm16Mulaw, Wire::Pcmu, &mu, &mut c);
        assert_eq!(back.len(), 4);
    }
}
