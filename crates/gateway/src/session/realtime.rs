//! One `/realtime` speech-to-speech session: client messages in order, one provider link, audio
//! converted both ways by the core, every reply through the connection's outgoing FIFO. The same
//! isolation as `/ws`: a provider that panics, fails or stalls ends its link, never the process
//! or another session, and the client is told with `error`.

use super::errors::WsError;
use super::link::{connect_error, Link, SendError, Signal};
use super::outbound::{write_loop, Outbound};
use super::post_tts::ClientAudio;
use super::pre_stt::PreStt;
use super::protocol::{
    self, RealtimeClientMessage, RealtimeConfig, ServerMessage, MAX_AUDIO_FRAME, MAX_TEXT_FRAME,
};
use super::{sleep_until, stopping, AuthState, CLOSE_AUTH_FAILED, CLOSE_GOING_AWAY, CLOSE_GRACE};
use crate::audio::{negotiate, Bridge};
use crate::isolation::guard;
use crate::metrics::Metrics;
use crate::middleware::auth;
use crate::middleware::limits::ConnectionSlot;
use crate::pipeline::AudioPipeline;
use crate::registry::ClientCredentials;
use crate::state::SharedState;
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, PluginError, RealtimeEvent, RealtimeInput, RealtimeIo,
    RealtimeSessionConfig,
};

/// Inputs buffered towards the provider (about 1.3 s of 20 ms frames).
const INPUT_CAPACITY: usize = 64;

/// An open realtime provider.
struct Provider {
    id: &'static str,
    link: Link<RealtimeInput, RealtimeEvent>,
    config: RealtimeSessionConfig,
    input: Bridge,
    /// The input processors, when the session has any (then `input` is unused).
    pre: Option<Box<PreStt>>,
    output: ClientAudio,
    frames: Vec<Bytes>,
    /// A response is under way (audio or an assistant transcript since the last `ResponseDone`).
    responding: bool,
    /// Output of a cancelled or interrupted response is dropped until that response is done.
    muted: bool,
    /// Post-STT text processors, run on the user's transcripts before they are sent.
    post_stt: Option<Box<crate::pipeline::TextPipeline>>,
}

struct Session {
    state: SharedState,
    out: Outbound,
    auth: AuthState,
    provider: Option<Provider>,
    stall: Duration,
}

/// Runs a `/realtime` session on an upgraded socket until either side ends it.
pub async fn run(socket: WebSocket, state: SharedState, auth: AuthState, slot: ConnectionSlot) {
    let metrics = Metrics::get();
    metrics.active_sessions.increment(1.0);
    let (sink, mut stream) = socket.split();
    let settings = state.config.session.clone();
    let (out, rx) = Outbound::with_stall(Duration::from_millis(settings.client_stall_ms));
    let writer = tokio::spawn(write_loop(sink, rx));
    let idle = Duration::from_secs(settings.idle_timeout_secs.max(1));
    let mut shutdown = state.shutdown_signal();
    let mut s = Session {
        state,
        out,
        auth,
        provider: None,
        stall: Duration::from_millis(settings.provider_stall_ms),
    };
    let auth_timeout = Duration::from_secs(settings.auth_timeout_secs);
    let mut auth_deadline = None;
    if s.auth == AuthState::Pending {
        auth_deadline = Some(Instant::now() + auth_timeout);
        s.out.send(ServerMessage::AuthRequired).await;
    }
    let mut last_activity = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        if s.out.is_closed() {
            break;
        }
        if s.auth != AuthState::Pending {
            auth_deadline = None;
        }
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                last_activity = Instant::now();
                if !Box::pin(s.on_message(msg)).await {
                    break;
                }
            }
            sig = next(&mut s.provider) => s.on_provider(sig).await,
            () = sleep_until(auth_deadline) => {
                s.error(WsError::AuthTimeout(auth_timeout.as_secs())).await;
                s.out.close(CLOSE_AUTH_FAILED, "authentication timeout").await;
                break;
            }
            () = stopping(&mut shutdown) => {
                s.error(WsError::ShuttingDown).await;
                s.out.close(CLOSE_GOING_AWAY, "server shutting down").await;
                break;
            }
            () = &mut idle_timer => {
                let due = last_activity + idle;
                if Instant::now() >= due {
                    s.out.send(WsError::Idle.into()).await;
                    s.out.close(1000, "idle timeout").await;
                    break;
                }
                idle_timer.as_mut().reset(due);
            }
        }
    }
    if let Some(p) = s.provider.take() {
        p.link.close(CLOSE_GRACE).await;
    }
    drop(s);
    let _ = writer.await;
    drop(slot);
    metrics.active_sessions.decrement(1.0);
}

async fn next(p: &mut Option<Provider>) -> Signal<RealtimeEvent> {
    match p {
        Some(p) => p.link.next().await,
        None => std::future::pending().await,
    }
}

/// The client's audio format from a `/realtime` name and optional rate.
fn client_format(name: Option<&str>, rate: Option<u32>) -> Result<AudioFormat, String> {
    let (encoding, default_rate) = match name.unwrap_or("pcm16") {
        "pcm16" => (AudioEncoding::Linear16, 24_000),
        "g711_ulaw" => (AudioEncoding::Mulaw, 8_000),
        "g711_alaw" => (AudioEncoding::Alaw, 8_000),
        other => {
            let e: AudioEncoding = other.parse().map_err(|e| format!("{e}"))?;
            (e, 24_000)
        }
    };
    Ok(AudioFormat {
        encoding,
        sample_rate: rate.unwrap_or(default_rate),
        channels: 1,
    })
}

/// Applies the fields `c` sets onto `s`.
fn apply(s: &mut RealtimeSessionConfig, c: &RealtimeConfig) {
    if let Some(v) = &c.model {
        s.model = v.clone();
    }
    if let Some(v) = &c.voice {
        s.voice = v.clone();
    }
    if c.instructions.is_some() {
        s.instructions = c.instructions.clone();
    }
    if c.temperature.is_some() {
        s.temperature = c.temperature;
    }
    if c.max_response_tokens.is_some() {
        s.max_response_tokens = c.max_response_tokens;
    }
    if c.turn_detection.is_some() {
        s.turn_detection = c.turn_detection.clone();
    }
    if let Some(t) = &c.tools {
        s.tools = t.clone();
    }
    if let Some(m) = &c.modalities {
        s.modalities = m.clone();
    }
    if let Some(t) = c.transcribe_input {
        s.transcribe_input = t;
    }
}

impl Session {
    async fn error(&self, e: WsError) {
        self.out.send(e.into()).await;
    }

    /// Handles one client frame; `false` ends the session.
    async fn on_message(&mut self, msg: Message) -> bool {
        match msg {
            Message::Binary(audio) => {
                if self.auth == AuthState::Pending {
                    self.error(WsError::AuthRequired).await;
                    self.out
                        .close(CLOSE_AUTH_FAILED, "authentication required")
                        .await;
                    return false;
                }
                self.on_audio(audio).await;
                true
            }
            Message::Text(text) => {
                if text.len() > MAX_TEXT_FRAME {
                    self.error(WsError::MessageTooLarge(text.len())).await;
                    return true;
                }
                let parsed = serde_json::from_str::<RealtimeClientMessage>(text.as_str());
                if self.auth == AuthState::Pending {
                    return self.on_pending_auth(parsed.ok()).await;
                }
                match parsed {
                    Ok(m) => {
                        Metrics::get().message_in(m.kind());
                        if let Err(e) = self.on_client(m).await {
                            self.error(e).await;
                        }
                    }
                    Err(e) => self.error(WsError::InvalidFormat(e.to_string())).await,
                }
                true
            }
            Message::Close(frame) => {
                self.out.client_closed(frame.map_or(1005, |f| f.code));
                false
            }
            Message::Ping(_) | Message::Pong(_) => true,
        }
    }

    async fn on_pending_auth(&mut self, msg: Option<RealtimeClientMessage>) -> bool {
        let Some(RealtimeClientMessage::Auth { token }) = msg else {
            self.error(WsError::AuthRequired).await;
            self.out
                .close(CLOSE_AUTH_FAILED, "authentication required")
                .await;
            return false;
        };
        let verified = (token.len() <= protocol::MAX_AUTH_TOKEN)
            .then(|| auth::verify(&self.state.config.auth, &token))
            .flatten();
        match verified {
            Some(id) => {
                self.auth = AuthState::Authenticated(Some(id.clone()));
                self.out.send(ServerMessage::Authenticated { id }).await;
                true
            }
            None => {
                self.error(WsError::InvalidToken).await;
                self.out.close(CLOSE_AUTH_FAILED, "invalid token").await;
                false
            }
        }
    }

    async fn on_audio(&mut self, audio: Bytes) {
        let m = Metrics::get();
        m.audio_frames_in.increment(1);
        m.audio_bytes_in.increment(audio.len() as u64);
        if audio.len() > MAX_AUDIO_FRAME {
            self.error(WsError::AudioFrameTooLarge(audio.len())).await;
            return;
        }
        let Some(p) = self.provider.as_mut() else {
            self.error(WsError::InvalidConfig {
                section: "config",
                message: "send config before audio".into(),
            })
            .await;
            return;
        };
        let mut frames = std::mem::take(&mut p.frames);
        match p.pre.as_mut() {
            Some(pre) => {
                if let Err(e) = pre.process(audio, &mut frames).await {
                    tracing::warn!(error = %e, "realtime input processing failed");
                }
                // The vendor detects speech itself; the processors' boundaries are not needed.
                pre.events.clear();
                if let Some(d) = pre.disabled.pop() {
                    self.out
                        .send(
                            WsError::ProcessorFailed {
                                name: d.name,
                                error: d.error,
                            }
                            .into(),
                        )
                        .await;
                }
            }
            None => p.input.push(audio, &mut |f| frames.push(f)),
        }
        let mut result = Ok(());
        for f in frames.drain(..) {
            if result.is_ok() {
                result = p
                    .link
                    .send_within(RealtimeInput::Audio(f), self.stall)
                    .await;
            }
        }
        p.frames = frames;
        self.on_send_result(result).await;
    }

    async fn on_send_result(&mut self, result: Result<(), SendError>) {
        if let Err(SendError::Stalled) = result {
            if let Some(p) = self.provider.take() {
                let provider = p.id;
                tokio::spawn(p.link.close(CLOSE_GRACE));
                self.error(WsError::ProviderStalled {
                    role: "realtime",
                    provider,
                })
                .await;
            }
        }
        // `Gone`: the provider's end arrives through `next` and is reported there.
    }

    async fn on_client(&mut self, msg: RealtimeClientMessage) -> Result<(), WsError> {
        let invalid = |message: String| WsError::InvalidConfig {
            section: "config",
            message,
        };
        let input = match msg {
            RealtimeClientMessage::Config(c) => {
                c.validate().map_err(invalid)?;
                return self.open(&c).await;
            }
            RealtimeClientMessage::UpdateSession(c) => {
                c.validate().map_err(invalid)?;
                if c.provider.is_some()
                    || c.input_audio_format.is_some()
                    || c.output_audio_format.is_some()
                    || c.input_sample_rate.is_some()
                    || c.output_sample_rate.is_some()
                {
                    return Err(invalid(
                        "provider and audio formats change with a new config, not update_session"
                            .into(),
                    ));
                }
                let p = self.provider.as_mut().ok_or_else(no_session)?;
                apply(&mut p.config, &c);
                RealtimeInput::UpdateSession(Box::new(p.config.clone()))
            }
            RealtimeClientMessage::Text { text } => {
                WsError::check_size("text.text", text.len(), protocol::MAX_SPEAK_TEXT)?;
                RealtimeInput::Text(text)
            }
            RealtimeClientMessage::CreateResponse => RealtimeInput::CreateResponse,
            RealtimeClientMessage::CancelResponse => {
                // Audio of the cancelled response still in flight is not sent on.
                if let Some(p) = self.provider.as_mut().filter(|p| p.responding) {
                    p.muted = true;
                    p.output.discard();
                }
                RealtimeInput::CancelResponse
            }
            RealtimeClientMessage::CommitAudio => RealtimeInput::CommitAudio,
            RealtimeClientMessage::ClearAudio => RealtimeInput::ClearAudio,
            RealtimeClientMessage::FunctionResult { call_id, result } => {
                WsError::check_size("function_result.call_id", call_id.len(), protocol::MAX_NAME)?;
                WsError::check_size(
                    "function_result.result",
                    result.len(),
                    protocol::MAX_SPEAK_TEXT,
                )?;
                RealtimeInput::FunctionResult { call_id, result }
            }
            RealtimeClientMessage::Auth { .. } => return Ok(()),
        };
        let p = self.provider.as_mut().ok_or_else(no_session)?;
        let result = p.link.send_within(input, self.stall).await;
        self.on_send_result(result).await;
        Ok(())
    }

    /// Resolves, validates and connects the provider; replaces an open one.
    async fn open(&mut self, c: &RealtimeConfig) -> Result<(), WsError> {
        let invalid = |message: String| WsError::InvalidConfig {
            section: "config",
            message,
        };
        let name = c.provider.as_deref().unwrap_or("openai");
        let client_in =
            client_format(c.input_audio_format.as_deref(), c.input_sample_rate).map_err(invalid)?;
        let client_out = client_format(c.output_audio_format.as_deref(), c.output_sample_rate)
            .map_err(invalid)?;
        let p = self
            .state
            .registry
            .realtime_with(name, ClientCredentials::new(&c.api_key, &None))?;
        let caps = p.entry.capabilities();
        let model = c.model.clone().unwrap_or_default();
        caps.check_model(&model).map_err(invalid)?;
        let taken = negotiate::stt_input(&caps, client_in).map_err(invalid)?;
        let produced = negotiate::tts_output(&caps, client_out).map_err(invalid)?;
        let input = Bridge::build(client_in, taken, 0)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let frame = client_out
            .frame_bytes()
            .map_or(0, |b| b * (client_out.sample_rate as usize / 50));
        let pipelines = self.state.registry.pipelines();
        let build = |names: &[String], stage, rate| {
            if names.is_empty() {
                return Ok(None);
            }
            let ctx = waav_plugin_api::ProcessorContext::new(stage, rate, 1);
            AudioPipeline::build(&self.state.registry, names, ctx).map(Some)
        };
        let input_names = c.pipeline.as_ref().unwrap_or(&pipelines.default_stt_pre);
        let pre = match build(
            input_names,
            waav_plugin_api::Stage::PreStt,
            client_in.sample_rate,
        )
        .map_err(invalid)?
        {
            Some(pipeline) => Some(Box::new(
                PreStt::new(client_in, taken, pipeline)
                    .await
                    .map_err(|e| invalid(e.to_string()))?,
            )),
            None => None,
        };
        let output_names = c
            .output_pipeline
            .as_ref()
            .unwrap_or(&pipelines.default_tts_post);
        let post = build(
            output_names,
            waav_plugin_api::Stage::PostTts,
            client_out.sample_rate,
        )
        .map_err(invalid)?;
        let output = ClientAudio::build(produced, client_out, frame, post)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let post_stt = crate::pipeline::TextPipeline::build(
            &self.state.registry,
            c.post_pipeline
                .as_ref()
                .unwrap_or(&pipelines.default_stt_post),
            waav_plugin_api::Stage::PostStt,
        )
        .map_err(invalid)?;
        let mut config = RealtimeSessionConfig::default();
        apply(&mut config, c);
        config.input_format = taken;
        config.output_format = produced;
        config.api_key = p.api_key.clone();
        config.credentials = p.credentials.clone();
        config.plugin_config = p.entry.plugin_config();
        let id = p.entry.id;
        if let Some(old) = self.provider.take() {
            tokio::spawn(old.link.close(CLOSE_GRACE));
        }
        let (io, peer) = RealtimeIo::pair(INPUT_CAPACITY);
        let connect_timeout =
            Duration::from_secs(self.state.config.session.provider_connect_timeout_secs);
        let started = Instant::now();
        let what = format!("realtime provider {id} connect");
        let task = guard(&what, connect_timeout, p.plugin.connect(config.clone(), io))
            .await
            .map_err(|e| connect_error("realtime", id, e))?;
        Metrics::get().provider_latency(id, "connect", started.elapsed());
        self.provider = Some(Provider {
            id,
            link: Link::spawn(peer, task),
            config,
            input,
            pre,
            output,
            frames: Vec::new(),
            responding: false,
            muted: false,
            post_stt,
        });
        Ok(())
    }

    async fn on_provider(&mut self, sig: Signal<RealtimeEvent>) {
        let Some(p) = self.provider.as_mut() else {
            return;
        };
        let provider = p.id;
        let ev = match sig {
            Signal::Event(ev) => ev,
            Signal::Ended(result) => {
                self.provider = None;
                let error = result.err().unwrap_or_else(|| {
                    PluginError::Transient("the provider ended the session".into())
                });
                self.error(WsError::Provider {
                    role: "realtime",
                    provider,
                    error,
                })
                .await;
                return;
            }
        };
        let msg = match ev {
            RealtimeEvent::Audio(data) => {
                p.responding = true;
                if p.muted {
                    return;
                }
                let mut frames = std::mem::take(&mut p.frames);
                p.output.push(data, &mut |f| frames.push(f));
                if let Some(h) = (!frames.is_empty())
                    .then(|| p.output.take_header())
                    .flatten()
                {
                    self.out.binary(h).await;
                }
                for f in frames.drain(..) {
                    self.out.binary(f).await;
                }
                if let Some(p) = self.provider.as_mut() {
                    p.frames = frames;
                    if let Some(d) = p.output.take_disabled() {
                        self.error(WsError::ProcessorFailed {
                            name: d.name,
                            error: d.error,
                        })
                        .await;
                    }
                }
                return;
            }
            RealtimeEvent::SessionCreated { session_id, model } => ServerMessage::SessionCreated {
                session_id,
                provider,
                model,
            },
            RealtimeEvent::SessionUpdated => ServerMessage::SessionUpdated,
            RealtimeEvent::Transcript {
                mut text,
                role,
                is_final,
            } => {
                if role == waav_plugin_api::Role::Assistant {
                    p.responding = true;
                }
                // What the user said leaves the gateway through the post-STT processors (PII
                // redaction, say), as `/ws` transcripts do. The assistant's text is what its
                // audio says, so it is left as spoken.
                if role == waav_plugin_api::Role::User && !text.is_empty() {
                    if let Some(d) = p.post_stt.as_mut().and_then(|t| t.run(&mut text)) {
                        self.out
                            .send(
                                WsError::ProcessorFailed {
                                    name: d.name,
                                    error: d.error,
                                }
                                .into(),
                            )
                            .await;
                    }
                }
                ServerMessage::Transcript {
                    text,
                    role,
                    is_final,
                }
            }
            RealtimeEvent::Speech { started, audio_ms } => ServerMessage::SpeechEvent {
                event: if started { "started" } else { "stopped" },
                audio_ms,
            },
            RealtimeEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => ServerMessage::FunctionCall {
                call_id,
                name,
                arguments,
            },
            RealtimeEvent::ResponseDone { response_id } => {
                // What the resampler still holds belongs to this response.
                let mut frames = std::mem::take(&mut p.frames);
                if p.muted {
                    p.output.discard();
                } else {
                    p.output.flush(&mut |f| frames.push(f));
                }
                p.muted = false;
                p.responding = false;
                for f in frames.drain(..) {
                    self.out.binary(f).await;
                }
                if let Some(p) = self.provider.as_mut() {
                    p.frames = frames;
                }
                ServerMessage::ResponseDone { response_id }
            }
            RealtimeEvent::Interrupted => {
                p.muted = p.responding;
                p.output.discard();
                ServerMessage::ResponseInterrupted
            }
            RealtimeEvent::Error(error) => WsError::Provider {
                role: "realtime",
                provider,
                error,
            }
            .into(),
        };
        self.out.send(msg).await;
    }
}

fn no_session() -> WsError {
    WsError::InvalidConfig {
        section: "config",
        message: "no realtime session: send config first".into(),
    }
}
