//! One `/ws` voice session: a single task per connection that handles client messages strictly
//! in order, drives the STT and TTS provider links, applies the turn logic, and writes every
//! reply through one outgoing FIFO.

pub(crate) mod chain;
pub(crate) mod errors;
pub(crate) mod link;
pub mod outbound;
pub mod post_tts;
mod pre_stt;
pub mod protocol;
pub(crate) mod realtime;
mod recovery;
pub(crate) mod stt;
pub mod tts;
pub(crate) mod turn;

use crate::metrics::Metrics;
use crate::middleware::auth;
use crate::middleware::limits::ConnectionSlot;
use crate::pipeline::TextPipeline;
use crate::state::SharedState;
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use errors::WsError;
use futures::StreamExt;
use outbound::{write_loop, Outbound};
use protocol::{ClientMessage, ConfigMessage, ServerMessage};
use std::collections::VecDeque;
use std::time::Duration;
use stt::{SttLink, SttSignal};
use tokio::time::Instant;
use tts::{TtsLimits, TtsLink, TtsProvider, TtsSignal};
use turn::TurnTimer;
use waav_plugin_api::{CustomMessageContext, SttEvent, Transcript};

/// Time a provider gets to finish after its session is closed, before it is aborted.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The pause before reopening a dropped STT provider, doubled at each further attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// A rate limit asking for a longer pause than this fails over instead of reconnecting.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// WebSocket close code for failed authentication.
pub(crate) const CLOSE_AUTH_FAILED: u16 = 4001;
/// WebSocket close code when the server stops (RFC 6455 "going away").
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;

/// Whether the connection must authenticate with an `auth` message first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthState {
    /// Authenticated at upgrade (or auth not required); the client id, if any.
    Authenticated(Option<String>),
    /// Waiting for `{"type":"auth"}`.
    Pending,
}

enum Flow {
    Continue,
    Close,
}

struct Session {
    state: SharedState,
    out: Outbound,
    auth: AuthState,
    stream_id: String,
    audio_enabled: bool,
    stt: Option<SttLink>,
    tts: Option<TtsLink>,
    turn: TurnTimer,
    /// An STT-side error already reported for the current config (avoids one per frame).
    stt_problem_reported: bool,
    /// Clear interruptible TTS when the VAD hears the user.
    barge_in: bool,
    /// A turn detector ended the turn before its final transcript arrived.
    turn_decided: bool,
    /// The configs and remaining fallbacks of the open providers (boxed: idle sessions are
    /// counted in bytes).
    chains: Option<Box<Chains>>,
    /// Post-STT text processors, run on each transcript just before it is sent.
    post_stt: Option<Box<TextPipeline>>,
    /// Pre-TTS text processors, run on each `speak` text before it is queued.
    pre_tts: Option<Box<TextPipeline>>,
}

/// What a session needs to fail over: each role's config and the fallbacks not yet tried.
#[derive(Debug, Default)]
struct Chains {
    stt: Option<(protocol::SttConfig, std::collections::VecDeque<String>)>,
    tts: Option<(protocol::TtsConfig, std::collections::VecDeque<String>)>,
    /// The last final transcript, to drop its repeat after a failover replays audio.
    last_final: Option<String>,
    /// An STT failover happened; finals repeating `last_final` are duplicates.
    replayed: bool,
    /// Reopenings of a dropped STT provider left before failing over (refilled at each final).
    stt_reconnects_left: u8,
    /// Getting back to the session's own providers after a failover.
    recovery: recovery::Recovery,
}

/// Runs a session on an upgraded socket until either side ends it.
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
        stream_id: String::new(),
        audio_enabled: false,
        stt: None,
        tts: None,
        turn: TurnTimer::new(
            Duration::from_millis(settings.end_of_turn_ms),
            Duration::from_millis(settings.end_of_turn_max_ms),
        ),
        stt_problem_reported: false,
        barge_in: false,
        turn_decided: false,
        chains: None,
        post_stt: None,
        pre_tts: None,
    };
    // A pending socket holds a slot, so it gets a short deadline, not the idle timeout.
    let auth_timeout = Duration::from_secs(settings.auth_timeout_secs);
    let mut auth_deadline = None;
    if s.auth == AuthState::Pending {
        auth_deadline = Some(Instant::now() + auth_timeout);
        s.out.send(ServerMessage::AuthRequired).await;
    }
    // Re-armed lazily: a message only stamps `last_activity`, the timer checks it when it fires.
    let mut last_activity = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        if s.out.is_closed() {
            // The writer is gone or the client stopped reading: nothing more can reach it.
            break;
        }
        if s.auth != AuthState::Pending {
            auth_deadline = None;
        }
        let turn_due = s.turn.deadline();
        let tts_due = s.tts.as_ref().and_then(TtsLink::deadline);
        let stt_due = s
            .stt
            .as_ref()
            .and_then(|l| l.silent_deadline(s.state.resilience.stt_silent()));
        // One timer for both providers' watchdogs (each select arm's timer sizes the task).
        let watch_due = match (tts_due, stt_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                last_activity = Instant::now();
                if let Flow::Close = s.on_message(msg).await {
                    break;
                }
            }
            sig = next_stt(&mut s.stt) => s.on_stt(sig).await,
            sig = next_tts(&mut s.tts) => s.on_tts_next(sig).await,
            r = recovery::next(&mut s.chains) => Box::pin(s.on_reopened(r)).await,
            () = sleep_until(turn_due) => {
                s.turn.fire();
                s.send_result(Transcript::final_result("", 1.0, true), None).await;
            }
            () = sleep_until(watch_due) => {
                let now = Instant::now();
                if tts_due.is_some_and(|d| d <= now) {
                    if let Some(tts) = s.tts.as_mut() {
                        if let Some(tripped) = tts.on_timeout(&s.out).await {
                            Box::pin(s.on_tts_tripped(tripped)).await;
                        }
                    }
                }
                if stt_due.is_some_and(|d| d <= now) {
                    Box::pin(s.on_stt_silent()).await;
                }
            }
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
    // Boxed: closing both providers is the deepest future here, and inline it would size every
    // session's task for its whole life (3.3 of 5 KB).
    Box::pin(s.stop_providers()).await;
    drop(s);
    let _ = writer.await;
    drop(slot);
    metrics.active_sessions.decrement(1.0);
}

/// Opens the TTS provider `c` names as a session link (the session's limits and watchdogs).
pub(crate) async fn open_tts_link(
    state: &crate::state::AppState,
    c: &protocol::TtsConfig,
) -> Result<TtsLink, WsError> {
    let settings = &state.config.session;
    let (timeout, request_timeout) = tts::timeouts(c, settings);
    let limits = TtsLimits::from_settings(settings);
    TtsProvider::open(
        &state.registry,
        c,
        timeout,
        limits.input_capacity(),
        settings.tts_frame_ms,
    )
    .await
    .map(|p| {
        TtsLink::new(p, request_timeout, limits, true)
            .with_watchdogs(state.resilience.tts_watchdogs())
    })
}

async fn next_stt(link: &mut Option<SttLink>) -> SttSignal {
    match link {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

async fn next_tts(link: &mut Option<TtsLink>) -> tts::TtsNext {
    match link {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves once a graceful stop has begun.
pub(crate) async fn stopping(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // Only an error (the state dropped) ends the wait early; then the server is gone anyway.
    let _ = rx.wait_for(|stopping| *stopping).await;
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    async fn error(&self, e: WsError) {
        self.out.send(e.into()).await;
    }

    async fn on_message(&mut self, msg: Message) -> Flow {
        match msg {
            Message::Binary(audio) => self.on_audio(audio).await,
            Message::Text(text) => {
                if text.len() > protocol::MAX_TEXT_FRAME {
                    self.error(WsError::MessageTooLarge(text.len())).await;
                    return Flow::Continue;
                }
                let parsed = serde_json::from_str::<ClientMessage>(text.as_str());
                if self.auth == AuthState::Pending {
                    return self.on_pending_auth(parsed.ok()).await;
                }
                match parsed {
                    Ok(m) => {
                        Metrics::get().message_in(m.kind());
                        // Boxed: `config` opens providers through deep futures, and inline
                        // they would size every session's task, idle or not. One allocation per
                        // client message (never per audio frame) buys kilobytes per session.
                        Box::pin(self.on_client(m)).await;
                    }
                    Err(e) => self.error(WsError::InvalidFormat(e.to_string())).await,
                }
                Flow::Continue
            }
            Message::Close(frame) => {
                // Answer at once (RFC 6455 §5.5.1); providers are torn down behind it.
                self.out.client_closed(frame.map_or(1005, |f| f.code));
                Flow::Close
            }
            Message::Ping(_) | Message::Pong(_) => Flow::Continue,
        }
    }

    async fn on_pending_auth(&mut self, msg: Option<ClientMessage>) -> Flow {
        let Some(ClientMessage::Auth { token }) = msg else {
            self.error(WsError::AuthRequired).await;
            self.out
                .close(CLOSE_AUTH_FAILED, "authentication required")
                .await;
            return Flow::Close;
        };
        Metrics::get().message_in("auth");
        let verified = (token.len() <= protocol::MAX_AUTH_TOKEN)
            .then(|| auth::verify(&self.state.config.auth, &token))
            .flatten();
        match verified {
            Some(id) => {
                self.out
                    .send(ServerMessage::Authenticated { id: id.clone() })
                    .await;
                self.auth = AuthState::Authenticated(Some(id));
                Flow::Continue
            }
            None => {
                self.error(WsError::InvalidToken).await;
                self.out.close(CLOSE_AUTH_FAILED, "invalid token").await;
                Flow::Close
            }
        }
    }

    async fn on_audio(&mut self, audio: Bytes) -> Flow {
        let m = Metrics::get();
        m.audio_frames_in.increment(1);
        m.audio_bytes_in.increment(audio.len() as u64);
        if self.auth == AuthState::Pending {
            self.error(WsError::AuthRequired).await;
            self.out
                .close(CLOSE_AUTH_FAILED, "authentication required")
                .await;
            return Flow::Close;
        }
        if audio.len() > protocol::MAX_AUDIO_FRAME {
            self.error(WsError::AudioFrameTooLarge(audio.len())).await;
            return Flow::Continue;
        }
        let result = match (&mut self.stt, self.audio_enabled) {
            (_, false) => Err(WsError::AudioDisabled),
            (Some(stt), true) => stt.send_audio(audio).await,
            (None, true) => Err(WsError::SttNotConfigured),
        };
        self.on_processor_news().await;
        match result {
            Ok(()) => self.stt_problem_reported = false,
            Err(e @ WsError::ProviderStalled { provider, .. }) => {
                tracing::warn!(error = %e, "disconnecting a stalled STT provider");
                let error =
                    waav_plugin_api::PluginError::Timeout("the provider stopped reading".into());
                Box::pin(self.on_stt_failed(provider, error, Some(e))).await;
            }
            // One report per condition, not one per frame.
            Err(e) if !self.stt_problem_reported => {
                self.stt_problem_reported = true;
                self.error(e).await;
            }
            Err(_) => {}
        }
        Flow::Continue
    }

    /// Speech boundaries and failures the pre-STT processors reported for the last frame.
    async fn on_processor_news(&mut self) {
        let Some(stt) = self.stt.as_mut() else { return };
        let (mut events, disabled) = stt.take_processor_news();
        if events.is_empty() && disabled.is_none() {
            return;
        }
        if let Some(d) = disabled {
            self.error(WsError::ProcessorFailed {
                name: d.name,
                error: d.error,
            })
            .await;
        }
        for (event, audio_ms) in events.drain(..) {
            let event = match event {
                waav_plugin_api::ProcessorEvent::SpeechStarted => "started",
                waav_plugin_api::ProcessorEvent::SpeechEnded => "stopped",
                waav_plugin_api::ProcessorEvent::EndOfTurn { probability } => {
                    // A turn model decided: the turn ends now instead of at the silence timer.
                    tracing::debug!(probability, "end of turn from the turn detector");
                    if self.turn.pending() {
                        self.turn.fire();
                        self.send_result(Transcript::final_result("", probability, true), None)
                            .await;
                    } else {
                        // The transcript is still on its way: its final ends the turn.
                        self.turn_decided = true;
                    }
                    continue;
                }
            };
            if event == "started" {
                self.turn_decided = false;
            }
            if let Some(stt) = self.stt.as_mut() {
                stt.on_speech(event == "started");
            }
            self.out
                .send(ServerMessage::SpeechEvent { event, audio_ms })
                .await;
            // Barge-in: the user talks over the agent; interruptible audio stops as `clear` does.
            if event == "started" && self.barge_in {
                if let Some(tts) = self.tts.as_mut() {
                    if tts.is_speaking() && !tts.suppresses_interruptions() {
                        tts.clear().await;
                        self.out
                            .send(ServerMessage::TtsInterrupted {
                                timestamp: protocol::now_ms(),
                            })
                            .await;
                    }
                }
            }
        }
        events.clear();
        stt_events_back(self.stt.as_mut(), events);
    }

    async fn on_client(&mut self, msg: ClientMessage) {
        let result = match msg {
            ClientMessage::Config(cfg) => self.on_config(*cfg).await,
            ClientMessage::Speak {
                text,
                flush,
                allow_interruption,
            } => {
                self.on_speak(
                    text,
                    flush.unwrap_or(true),
                    allow_interruption.unwrap_or(true),
                )
                .await
            }
            ClientMessage::Clear => {
                if let Some(tts) = self.tts.as_mut() {
                    tts.clear().await;
                }
                Ok(())
            }
            ClientMessage::SendMessage { message, .. } => WsError::check_size(
                "send_message.message",
                message.len(),
                protocol::MAX_SEND_MESSAGE,
            )
            .and(Err(WsError::LiveKitNotConfigured)),
            ClientMessage::SipTransfer { transfer_to } => {
                let message = if valid_phone(&transfer_to) {
                    "SIP transfer failed: LiveKit is not configured for this session".to_owned()
                } else {
                    format!("Invalid phone number: {transfer_to:?} must be + followed by digits")
                };
                self.out
                    .send(ServerMessage::SipTransferError { message })
                    .await;
                Ok(())
            }
            // Already authenticated (or auth not required): nothing to do.
            ClientMessage::Auth { .. } => Ok(()),
            ClientMessage::Custom {
                message_type,
                payload,
            } => self.on_custom(message_type, payload).await,
        };
        if let Err(e) = result {
            self.error(e).await;
        }
    }

    async fn stop_providers(&mut self) {
        let stt = self.stt.take();
        let tts = self.tts.take();
        tokio::join!(
            async {
                if let Some(l) = stt {
                    l.close(CLOSE_GRACE).await;
                }
            },
            async {
                if let Some(l) = tts {
                    l.close(CLOSE_GRACE).await;
                }
            }
        );
        self.audio_enabled = false;
        self.turn.on_speech_final();
        self.stt_problem_reported = false;
    }

    /// Applies a `config`. The new providers are opened while the old ones keep working; only
    /// a config that fully succeeds replaces them, so a rejected one changes nothing.
    async fn on_config(&mut self, cfg: ConfigMessage) -> Result<(), WsError> {
        if let Some(id) = &cfg.stream_id {
            WsError::check_size("config.stream_id", id.len(), protocol::MAX_STREAM_ID)?;
        }
        let audio = cfg.audio.unwrap_or(true);
        if audio && cfg.stt_config.is_none() && cfg.tts_config.is_none() {
            return Err(WsError::NothingToConfigure);
        }
        // The session's text processors, before any provider is dialled (a bad name rejects
        // the config and changes nothing).
        let (post_stt, pre_tts) = if audio {
            self.text_pipelines(&cfg)?
        } else {
            (None, None)
        };
        let (stt, tts) = if audio {
            self.open_providers(&cfg).await?
        } else {
            (None, None)
        };
        (self.post_stt, self.pre_tts) = (post_stt, pre_tts);
        // The old providers stop before the new ones get audio (no crosstalk).
        self.stop_providers().await;
        let mut chains = Chains::default();
        self.stt = stt.map(|(link, cfg, rest)| {
            chains.stt = Some((cfg, rest));
            link
        });
        self.tts = tts.map(|(link, cfg, rest)| {
            chains.tts = Some((cfg, rest));
            link
        });
        // Only sessions with somewhere to fail over to (another provider, or the same one
        // reopened), or already on a fallback (to return from), keep their chain: idle memory
        // counts.
        chains.stt_reconnects_left = self.state.resilience.stt_reconnects();
        let registry = &self.state.registry;
        let away = |kind, cfg_provider: &str, serving: Option<&'static str>| {
            serving.is_some() && registry.find(kind, cfg_provider).map(|e| e.id) != serving
        };
        let has_fallbacks = chains.stt.as_ref().is_some_and(|(c, n)| {
            !n.is_empty()
                || chains.stt_reconnects_left > 0
                || away(
                    waav_plugin_api::PluginKind::Stt,
                    &c.provider,
                    self.stt.as_ref().map(|l| l.provider),
                )
        }) || chains.tts.as_ref().is_some_and(|(c, n)| {
            !n.is_empty()
                || away(
                    waav_plugin_api::PluginKind::Tts,
                    &c.provider,
                    self.tts.as_ref().map(TtsLink::provider_id),
                )
        });
        self.chains = has_fallbacks.then(|| Box::new(chains));
        self.audio_enabled = audio;
        self.barge_in = cfg.barge_in.unwrap_or(false);
        self.out
            .set_switch_events(cfg.provider_switched.unwrap_or(true));
        if cfg.livekit.is_some() {
            self.error(WsError::LiveKitNotConfigured).await;
        }
        self.stream_id = cfg
            .stream_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.out
            .send(ServerMessage::Ready {
                stream_id: self.stream_id.clone(),
                livekit_url: String::new(),
            })
            .await;
        if self.chains.is_some() {
            self.connected().await;
        }
        Ok(())
    }

    /// The post-STT and pre-TTS chains `cfg` asks for (the session's own, else the defaults).
    #[allow(clippy::type_complexity)]
    fn text_pipelines(
        &self,
        cfg: &ConfigMessage,
    ) -> Result<(Option<Box<TextPipeline>>, Option<Box<TextPipeline>>), WsError> {
        use waav_plugin_api::Stage;
        let registry = &self.state.registry;
        let defaults = registry.pipelines();
        let build = |chosen: Option<&Vec<String>>, default, stage, section| {
            TextPipeline::build(registry, chosen.unwrap_or(default), stage)
                .map_err(|message| WsError::InvalidConfig { section, message })
        };
        let post_stt = match &cfg.stt_config {
            Some(c) => build(
                c.post_pipeline.as_ref(),
                &defaults.default_stt_post,
                Stage::PostStt,
                "stt_config",
            )?,
            None => None,
        };
        let pre_tts = match &cfg.tts_config {
            Some(c) => build(
                c.pre_pipeline.as_ref(),
                &defaults.default_tts_pre,
                Stage::PreTts,
                "tts_config",
            )?,
            None => None,
        };
        Ok((post_stt, pre_tts))
    }

    /// Validates and connects the providers `cfg` asks for, concurrently; on any failure closes
    /// whatever did connect and reports the first failure.
    #[allow(clippy::type_complexity)]
    async fn open_providers(
        &self,
        cfg: &ConfigMessage,
    ) -> Result<
        (
            Option<(SttLink, protocol::SttConfig, VecDeque<String>)>,
            Option<(TtsLink, protocol::TtsConfig, VecDeque<String>)>,
        ),
        WsError,
    > {
        let stt_fut = async {
            match &cfg.stt_config {
                Some(c) => {
                    let kind = waav_plugin_api::PluginKind::Stt;
                    let mut names: VecDeque<String> = [c.provider.clone()].into();
                    names.extend(chain::fallbacks(
                        &self.state,
                        kind,
                        &c.provider,
                        c.fallback.as_deref(),
                    ));
                    if c.fallback.is_none() {
                        chain::order(&self.state, kind, &c.provider, &mut names);
                    }
                    self.open_stt(c, &mut names, Some(&c.provider))
                        .await
                        .map(|link| Some((link, c.clone(), names)))
                }
                None => Ok(None),
            }
        };
        let tts_fut = async {
            match &cfg.tts_config {
                Some(c) => {
                    let kind = waav_plugin_api::PluginKind::Tts;
                    let mut names: VecDeque<String> = [c.provider.clone()].into();
                    names.extend(chain::fallbacks(
                        &self.state,
                        kind,
                        &c.provider,
                        c.fallback.as_deref(),
                    ));
                    if c.fallback.is_none() {
                        chain::order(&self.state, kind, &c.provider, &mut names);
                    }
                    self.open_tts(c, &mut names, Some(&c.provider))
                        .await
                        .map(|link| tts::attach_hedge(&self.state, link, c, &names))
                        .map(|link| Some((link, c.clone(), names)))
                }
                None => Ok(None),
            }
        };
        match tokio::join!(stt_fut, tts_fut) {
            (Ok(stt), Ok(tts)) => Ok((stt, tts)),
            (Err(e), tts) => {
                if let Ok(Some((t, _, _))) = tts {
                    t.close(CLOSE_GRACE).await;
                }
                Err(e)
            }
            (Ok(stt), Err(e)) => {
                if let Some((s, _, _)) = stt {
                    s.close(CLOSE_GRACE).await;
                }
                Err(e)
            }
        }
    }

    /// Opens the first STT provider of `names` that works (`cfg` is the primary's config).
    async fn open_stt(
        &self,
        cfg: &protocol::SttConfig,
        names: &mut VecDeque<String>,
        primary: Option<&str>,
    ) -> Result<SttLink, WsError> {
        let settings = &self.state.config.session;
        let timeout = Duration::from_secs(settings.provider_connect_timeout_secs);
        let stall = Duration::from_millis(settings.provider_stall_ms);
        let registry = &self.state.registry;
        let replay = self.state.resilience.stt_replay();
        let kind = waav_plugin_api::PluginKind::Stt;
        chain::open_first(&self.state, kind, "STT", names, primary, |name, primary| {
            let c = if primary {
                cfg.clone()
            } else {
                chain::stt_for(cfg, &name)
            };
            async move { SttLink::open(registry, &c, timeout, stall).await }
        })
        .await
        // Audio is kept for a replay only while there is a provider left to replay it into
        // (another one, or the same one reopened after a drop).
        .map(|(link, _)| {
            if names.is_empty() && self.state.resilience.stt_reconnects() == 0 {
                link
            } else {
                link.with_replay(replay)
            }
        })
    }

    /// Opens the first TTS provider of `names` that works (`cfg` is the primary's config).
    async fn open_tts(
        &self,
        cfg: &protocol::TtsConfig,
        names: &mut VecDeque<String>,
        primary: Option<&str>,
    ) -> Result<TtsLink, WsError> {
        let kind = waav_plugin_api::PluginKind::Tts;
        chain::open_first(&self.state, kind, "TTS", names, primary, |name, primary| {
            let c = if primary {
                cfg.clone()
            } else {
                chain::tts_for(cfg, &name)
            };
            async move { open_tts_link(&self.state, &c).await }
        })
        .await
        .map(|(link, _)| link)
    }

    /// The STT provider `from` failed with `error`: the next provider of the chain takes over,
    /// fed the audio since the last final first. `false` when there is none left.
    async fn stt_failover(
        &mut self,
        from: &'static str,
        error: &waav_plugin_api::PluginError,
        replay: Vec<Bytes>,
    ) -> bool {
        let Some((cfg, mut names)) = self.chains.as_mut().and_then(|c| c.stt.take()) else {
            return false;
        };
        if names.is_empty() {
            self.restore_stt_chain(cfg, names);
            return false;
        }
        let opened = self.open_stt(&cfg, &mut names, None).await;
        self.restore_stt_chain(cfg, names);
        let Ok(mut link) = opened else { return false };
        for chunk in replay {
            let _ = link.send_audio(chunk).await;
        }
        let to = link.provider;
        self.stt = Some(link);
        self.stt_problem_reported = false;
        if let Some(c) = self.chains.as_mut() {
            c.replayed = true;
        }
        self.moved_to(waav_plugin_api::PluginKind::Stt, to);
        crate::resilience::count_failover(waav_plugin_api::PluginKind::Stt, from, to);
        self.out
            .send(ServerMessage::ProviderSwitched {
                role: "stt",
                from,
                to,
                reason: error.to_string(),
            })
            .await;
        true
    }

    /// The STT provider `from` dropped with a retryable `error`: it is reopened (after a short
    /// backoff) and fed the audio since the last final, while the session's reconnect budget
    /// lasts and its breaker is closed. `false` leaves the failure to the chain.
    async fn stt_reconnect(
        &mut self,
        from: &'static str,
        error: &waav_plugin_api::PluginError,
        replay: &[Bytes],
    ) -> bool {
        let kind = waav_plugin_api::PluginKind::Stt;
        let Some(c) = self.chains.as_mut() else {
            return false;
        };
        let Some((primary, _)) = c.stt.as_ref() else {
            return false;
        };
        if c.stt_reconnects_left == 0 || !self.state.resilience.allow(kind, from) {
            return false;
        }
        // A long rate-limit pause is better spent on a fallback than in silence.
        let pause = match error {
            waav_plugin_api::PluginError::RateLimited { retry_after, .. } => {
                match retry_after.unwrap_or(RECONNECT_PAUSE) {
                    d if d > MAX_RECONNECT_PAUSE => return false,
                    d => d,
                }
            }
            _ => {
                let spent = self.state.resilience.stt_reconnects() - c.stt_reconnects_left;
                RECONNECT_PAUSE * (1 << spent.min(4))
            }
        };
        c.stt_reconnects_left -= 1;
        // The provider that dropped is the primary or a fallback the chain already moved to.
        let primary_id = self
            .state
            .registry
            .find(kind, &primary.provider)
            .map(|e| e.id);
        let cfg = if primary_id == Some(from) {
            primary.clone()
        } else {
            chain::stt_for(primary, from)
        };
        tokio::time::sleep(pause).await;
        let settings = &self.state.config.session;
        let opened = SttLink::open(
            &self.state.registry,
            &cfg,
            Duration::from_secs(settings.provider_connect_timeout_secs),
            Duration::from_millis(settings.provider_stall_ms),
        )
        .await;
        let mut link = match opened {
            Ok(link) => link.with_replay(self.state.resilience.stt_replay()),
            Err(e) => {
                if let Some(f) = e.provider_failure() {
                    self.state.resilience.record(kind, from, Err(&f));
                }
                tracing::warn!(provider = from, error = %e, "reopening the STT provider failed");
                return false;
            }
        };
        self.state.resilience.record(kind, from, Ok(()));
        for chunk in replay {
            let _ = link.send_audio(chunk.clone()).await;
        }
        self.stt = Some(link);
        self.stt_problem_reported = false;
        if let Some(c) = self.chains.as_mut() {
            c.replayed = true;
        }
        crate::resilience::count_reconnect(kind, from);
        tracing::info!(provider = from, error = %error, "STT provider reopened after a drop");
        self.out
            .send(ServerMessage::ProviderSwitched {
                role: "stt",
                from,
                to: from,
                reason: error.to_string(),
            })
            .await;
        true
    }

    fn restore_stt_chain(&mut self, cfg: protocol::SttConfig, names: VecDeque<String>) {
        if let Some(c) = self.chains.as_mut() {
            c.stt = Some((cfg, names));
        }
    }

    /// The TTS provider `from` failed with `error`: the next provider of the chain takes over
    /// and speaks every request not yet finished (one per sentence: the sentence being spoken
    /// restarts from its start, those already spoken are not repeated). The old link comes back when
    /// none is left (or none opens).
    async fn tts_failover(
        &mut self,
        from: &'static str,
        error: &waav_plugin_api::PluginError,
        old: TtsLink,
    ) -> Result<(), TtsLink> {
        let Some((cfg, mut names)) = self.chains.as_mut().and_then(|c| c.tts.take()) else {
            return Err(old);
        };
        let opened = if names.is_empty() {
            Err(WsError::NothingToConfigure)
        } else {
            self.open_tts(&cfg, &mut names, None).await
        };
        if let Some(c) = self.chains.as_mut() {
            c.tts = Some((cfg, names));
        }
        let Ok(link) = opened else {
            return Err(old);
        };
        // The first request after a failover races again, against the rest of the chain.
        let mut link = match self.chains.as_ref().and_then(|c| c.tts.as_ref()) {
            Some((cfg, names)) => tts::attach_hedge(&self.state, link, cfg, names),
            None => link,
        };
        let pending = old.into_unfinished();
        link.continue_stream_of(&pending);
        let to = link.provider_id();
        self.moved_to(waav_plugin_api::PluginKind::Tts, to);
        crate::resilience::count_failover(waav_plugin_api::PluginKind::Tts, from, to);
        self.out
            .send(ServerMessage::ProviderSwitched {
                role: "tts",
                from,
                to,
                reason: error.to_string(),
            })
            .await;
        if let Err(e) = link.resume(pending, &self.state.cache, &self.out).await {
            self.error(e).await;
        }
        self.tts = Some(link);
        Ok(())
    }

    /// The head TTS request failed (a retryable error, or a watchdog's finding): it counts
    /// against the provider, the chain takes over (speaking the request again), or it fails.
    async fn on_tts_tripped(&mut self, tripped: tts::Tripped) {
        let Some(old) = self.tts.take() else { return };
        let provider = old.provider_id();
        let kind = waav_plugin_api::PluginKind::Tts;
        match tripped.watchdog {
            Some(w) => {
                tracing::warn!(provider, watchdog = w, error = %tripped.error, "TTS watchdog tripped");
                crate::resilience::count_watchdog(kind, provider, w);
            }
            None => tracing::warn!(provider, error = %tripped.error, "TTS request failed"),
        }
        self.state
            .resilience
            .record(kind, provider, Err(&tripped.error));
        if let Err(mut old) = self.tts_failover(provider, &tripped.error, old).await {
            old.fail_head(tripped.error, &self.out).await;
            self.tts = Some(old);
        }
    }

    async fn on_speak(
        &mut self,
        text: String,
        flush: bool,
        interruptible: bool,
    ) -> Result<(), WsError> {
        WsError::check_size("speak.text", text.len(), protocol::MAX_SPEAK_TEXT)?;
        if text.trim().is_empty() {
            return Ok(());
        }
        if self.tts.is_none() {
            return Err(WsError::TtsNotConfigured);
        }
        // Pre-TTS processors: what they leave is what is cached, queued and spoken.
        let mut text = text;
        if let Some(pre) = self.pre_tts.as_mut() {
            if let Some(d) = pre.run(&mut text) {
                self.error(WsError::ProcessorFailed {
                    name: d.name,
                    error: d.error,
                })
                .await;
            }
            if text.trim().is_empty() {
                return Ok(());
            }
        }
        if self.chains.is_some() {
            Box::pin(self.tts_boundary()).await;
        }
        let tts = self.tts.as_mut().ok_or(WsError::TtsNotConfigured)?;
        let result = tts
            .speak(text, flush, interruptible, &self.state.cache, &self.out)
            .await;
        if let Err(e @ WsError::ProviderStalled { provider, .. }) = &result {
            tracing::warn!(error = %e, "disconnecting a stalled TTS provider");
            let error =
                waav_plugin_api::PluginError::Timeout("the provider stopped reading".into());
            let kind = waav_plugin_api::PluginKind::Tts;
            self.state.resilience.record(kind, provider, Err(&error));
            if let Some(old) = self.tts.take() {
                // The chain speaks what the stalled provider left unfinished, this request too.
                if let Err(old) = Box::pin(self.tts_failover(provider, &error, old)).await {
                    tokio::spawn(old.close(CLOSE_GRACE));
                } else {
                    return Ok(());
                }
            }
        }
        result
    }

    async fn on_custom(
        &mut self,
        message_type: String,
        payload: serde_json::Value,
    ) -> Result<(), WsError> {
        let size = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(0);
        WsError::check_size("custom.payload", size, protocol::MAX_CUSTOM_PAYLOAD)?;
        let handler = self
            .state
            .custom_handlers
            .get(&message_type)
            .cloned()
            .ok_or_else(|| WsError::UnknownCustomType(message_type.clone()))?;
        let timeout = Duration::from_millis(self.state.config.session.custom_handler_timeout_ms);
        let ctx = CustomMessageContext::new(self.stream_id.clone());
        let what = format!("custom handler {message_type}");
        match crate::isolation::guard(
            &what,
            timeout,
            handler.handle_custom(ctx, &message_type, payload),
        )
        .await
        {
            Ok(Some(payload)) => {
                self.out
                    .send(ServerMessage::PluginResponse {
                        message_type,
                        payload,
                    })
                    .await;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => Err(WsError::CustomHandler {
                message_type,
                error,
            }),
        }
    }

    async fn on_stt(&mut self, sig: SttSignal) {
        let provider = self.stt.as_ref().map(|s| s.provider);
        match sig {
            SttSignal::Event(SttEvent::Transcript(t)) => {
                if let Some(stt) = self.stt.as_mut() {
                    stt.answered();
                    if let Some(d) = stt.first_result_latency() {
                        let kind = waav_plugin_api::PluginKind::Stt;
                        self.state.resilience.observe(kind, stt.provider, d);
                    }
                }
                self.on_transcript(*t, provider).await
            }
            SttSignal::Event(SttEvent::UtteranceEnd) => {
                if self.turn.pending() {
                    self.turn.fire();
                    self.send_result(Transcript::final_result("", 1.0, true), None)
                        .await;
                }
            }
            SttSignal::Event(SttEvent::SpeechStarted) => {}
            SttSignal::Event(SttEvent::Error(error)) => {
                if let Some(provider) = provider {
                    self.error(WsError::Provider {
                        role: "STT",
                        provider,
                        error,
                    })
                    .await;
                }
            }
            SttSignal::Ended(result) => {
                let provider = provider.unwrap_or("unknown");
                let error = result.err().unwrap_or_else(|| {
                    waav_plugin_api::PluginError::Transient("the provider ended the session".into())
                });
                tracing::warn!(provider, error = %error, "STT provider session ended");
                self.on_stt_failed(provider, error, None).await;
            }
        }
    }

    /// The STT provider failed (ended, stalled, or a watchdog found it silent): it counts
    /// against its breaker, and the session reopens it, fails over, or reports `report` (the
    /// provider's error when `None`). A link still held is closed in the background.
    async fn on_stt_failed(
        &mut self,
        provider: &'static str,
        error: waav_plugin_api::PluginError,
        report: Option<WsError>,
    ) {
        let replay = match self.stt.take() {
            Some(mut link) => {
                let replay = link.take_replay();
                // It may take the whole grace period; the session does not wait for it.
                tokio::spawn(link.close(CLOSE_GRACE));
                replay
            }
            None => Vec::new(),
        };
        self.stt_problem_reported = true;
        let kind = waav_plugin_api::PluginKind::Stt;
        self.state.resilience.record(kind, provider, Err(&error));
        // Boxed: the failover path opens providers through deep futures, and inline it
        // would size every session's task.
        if crate::resilience::breaker::counts(&error)
            && (Box::pin(self.stt_reconnect(provider, &error, &replay)).await
                || Box::pin(self.stt_failover(provider, &error, replay)).await)
        {
            return;
        }
        let e = report.unwrap_or(WsError::Provider {
            role: "STT",
            provider,
            error,
        });
        self.error(e).await;
    }

    /// The STT provider owes a result past the silent-STT bound.
    async fn on_stt_silent(&mut self) {
        let Some(link) = self.stt.as_ref() else {
            return;
        };
        let provider = link.provider;
        let bound = self.state.resilience.stt_silent().unwrap_or_default();
        crate::resilience::count_watchdog(waav_plugin_api::PluginKind::Stt, provider, "no_result");
        let error = waav_plugin_api::PluginError::Timeout(format!(
            "no result within {} ms of the speech the VAD reported",
            bound.as_millis()
        ));
        tracing::warn!(provider, error = %error, "STT watchdog tripped");
        self.on_stt_failed(provider, error, None).await;
    }

    async fn on_transcript(&mut self, t: Transcript, provider: Option<&'static str>) {
        if self
            .tts
            .as_ref()
            .is_some_and(TtsLink::suppresses_interruptions)
        {
            return;
        }
        let empty = t.text.trim().is_empty();
        if !t.is_final {
            if !empty {
                self.send_result(t, provider).await;
            }
            return;
        }
        if empty {
            // Empty finals are dropped; an empty speech-final still ends an open turn.
            if t.is_speech_final && self.turn.pending() {
                self.turn.fire();
                self.send_result(Transcript::final_result("", 1.0, true), None)
                    .await;
            }
            return;
        }
        // Audio up to a final is settled: a failover replays only what came after it. After a
        // failover, the final of replayed audio the old provider had already given is dropped.
        if let Some(stt) = self.stt.as_mut() {
            stt.settled();
        }
        if let Some(c) = self.chains.as_mut() {
            c.stt_reconnects_left = self.state.resilience.stt_reconnects();
            let norm = normalized(&t.text);
            if c.replayed && c.last_final.as_deref() == Some(norm.as_str()) {
                c.replayed = false;
                return;
            }
            c.last_final = Some(norm);
        }
        let mut t = t;
        // A turn detector's verdict makes this final the turn's end, however slow the STT was
        // to deliver it: the verdict stands until the user speaks again (a speech start clears
        // it), so a late final still ends its turn instead of waiting for the silence timer.
        if std::mem::take(&mut self.turn_decided) {
            t.is_speech_final = true;
        }
        if t.is_speech_final {
            self.turn.on_speech_final();
        } else {
            self.turn.on_final(Instant::now());
        }
        self.send_result(t, provider).await;
        if self.chains.is_some() {
            self.stt_boundary();
        }
    }

    async fn send_result(&mut self, mut t: Transcript, provider: Option<&'static str>) {
        // Post-STT processors see every transcript text just before it leaves the gateway.
        if let Some(post) = self.post_stt.as_mut().filter(|_| !t.text.is_empty()) {
            let disabled = post.run(&mut t.text);
            // Word timings cannot be mapped onto rewritten text, and would carry what a
            // redaction removed: a changed result goes without them.
            if post.changed() {
                t.words.clear();
            }
            if let Some(d) = disabled {
                self.error(WsError::ProcessorFailed {
                    name: d.name,
                    error: d.error,
                })
                .await;
            }
        }
        self.out
            .send(ServerMessage::SttResult {
                transcript: t.text,
                is_final: t.is_final,
                is_speech_final: t.is_speech_final,
                confidence: t.confidence,
                provider,
                language: t.language,
                words: t.words,
                speaker: t.speaker,
            })
            .await;
    }

    async fn on_tts_next(&mut self, next: tts::TtsNext) {
        match next {
            tts::TtsNext::Provider(sig) => self.on_tts(sig).await,
            tts::TtsNext::Hedge(wake) => Box::pin(self.on_tts_hedge(wake)).await,
        }
    }

    /// A hedge side woke: a partner that won moves the chain on (the loser stays in it), a
    /// race both sides lost is the provider's failure.
    async fn on_tts_hedge(&mut self, wake: tts::HedgeWake) {
        let Some(tts) = self.tts.as_mut() else { return };
        match tts.on_hedge(wake, &self.state.cache, &self.out).await {
            tts::HedgeOutcome::None => {}
            tts::HedgeOutcome::Switched { entry, loser } => {
                if let Some((_, names)) = self.chains.as_mut().and_then(|c| c.tts.as_mut()) {
                    if let Some(i) = names.iter().position(|n| *n == entry) {
                        names.remove(i);
                    }
                    if !names.contains(&loser) {
                        names.push_back(loser);
                    }
                }
            }
            tts::HedgeOutcome::Tripped(t) => self.on_tts_tripped(t).await,
            tts::HedgeOutcome::Ended(r) => self.on_tts(TtsSignal::Ended(r)).await,
        }
    }

    async fn on_tts(&mut self, sig: TtsSignal) {
        let Some(tts) = self.tts.as_mut() else { return };
        match sig {
            TtsSignal::Event(ev) => {
                let tripped = tts.on_event(ev, &self.state.cache, &self.out).await;
                if let Some(d) = tts.take_first_byte() {
                    let kind = waav_plugin_api::PluginKind::Tts;
                    self.state.resilience.observe(kind, tts.provider_id(), d);
                }
                if let Some(tripped) = tripped {
                    Box::pin(self.on_tts_tripped(tripped)).await;
                } else if self.chains.is_some() && self.tts.as_ref().is_some_and(TtsLink::is_idle) {
                    Box::pin(self.tts_boundary()).await;
                }
            }
            TtsSignal::Ended(result) => {
                let provider = tts.provider_id();
                let old = self.tts.take();
                let error = result.err().unwrap_or_else(|| {
                    waav_plugin_api::PluginError::Transient("the provider ended the session".into())
                });
                tracing::warn!(provider, error = %error, "TTS provider session ended");
                let kind = waav_plugin_api::PluginKind::Tts;
                self.state.resilience.record(kind, provider, Err(&error));
                if let Some(old) = old.filter(|_| crate::resilience::breaker::counts(&error)) {
                    if Box::pin(self.tts_failover(provider, &error, old))
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
                self.error(WsError::Provider {
                    role: "TTS",
                    provider,
                    error,
                })
                .await;
            }
        }
    }
}

/// Hands the (emptied) event buffer back to the pre-STT stage, so it is reused.
fn stt_events_back(stt: Option<&mut SttLink>, events: Vec<pre_stt::TimedEvent>) {
    if let Some(stt) = stt {
        stt.return_processor_events(events);
    }
}

/// Lower case, punctuation and extra spaces removed: what a repeated final is compared by.
fn normalized(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `+` followed by 1–20 digits.
fn valid_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (1..=20).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}
