//! The AssemblyAI Universal Streaming v3 STT plugin: connect, stream, finalize, close.

use crate::chunker::Chunker;
use crate::messages::{self, ServerMessage};
use crate::settings::{AuthMode, Settings, MODELS};
use crate::turns::TurnMapper;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ErrorCategory, ModelInfo, Plugin, PluginError,
    PluginInfo, ProviderTask, Secret, SttEvent, SttInput, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::errors;
use waav_provider_kit::http::{HttpClient, HttpClientConfig};
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsReceiver, WsSender};

const CONTEXT: &str = "assemblyai";

/// Credentials: the API key, sent raw as `Authorization` (docs "Streaming API": "Use your API
/// key for authentication"; SDK `_build_headers`).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "ASSEMBLYAI_API_KEY")];

/// Close codes and `error_code`s of the streaming API (SDK `RealTimeErrorCodes`), by category.
/// 1008 (Auth) and 1013 (RateLimited) come from the kit's table.
pub const CLOSE_CODES: &[(u16, ErrorCategory)] = &[
    (3005, ErrorCategory::Transient),   // server error
    (3006, ErrorCategory::Config),      // input validation (a bad parameter)
    (3007, ErrorCategory::Permanent),   // audio chunk duration outside 50–1000 ms
    (3008, ErrorCategory::Transient),   // maximum session duration exceeded: a new one works
    (3009, ErrorCategory::RateLimited), // too many concurrent sessions
    (4000, ErrorCategory::Config),      // bad sample rate
    (4001, ErrorCategory::Auth),        // not authorized
    (4002, ErrorCategory::Auth),        // insufficient funds (an operator must act, like 402)
    (4003, ErrorCategory::Auth),        // paid-only feature (needs a card on the account)
    (4004, ErrorCategory::Permanent),   // session not found
    (4008, ErrorCategory::Transient),   // session expired: a new session works
    (4010, ErrorCategory::Permanent),   // session previously closed
    (4029, ErrorCategory::RateLimited), // audio sent too fast
    (4030, ErrorCategory::Permanent),   // session handled by another websocket
    (4031, ErrorCategory::Timeout),     // idle too long
    (4032, ErrorCategory::Permanent),   // audio too short
    (4033, ErrorCategory::Permanent),   // audio too long
    (4034, ErrorCategory::Permanent),   // audio too small to transcode
    (4100, ErrorCategory::Permanent),   // invalid JSON (our bug)
    (4101, ErrorCategory::Permanent),   // invalid schema (our bug)
    (4102, ErrorCategory::RateLimited), // too many streams on the account
    (4103, ErrorCategory::Transient),   // session reconnected elsewhere
];

/// Lowest sample rate offered. The docs name no range (UNCONFIRMED); 8 kHz telephony to 48 kHz
/// full band covers every rate their examples and integrations use.
pub const MIN_RATE: u32 = 8_000;
/// Highest sample rate offered (see [`MIN_RATE`]).
pub const MAX_RATE: u32 = 48_000;

/// Largest temporary-token response read.
const TOKEN_BODY_LIMIT: usize = 16 * 1024;

/// The AssemblyAI streaming STT plugin (`assemblyai`, alias `assembly-ai`).
#[derive(Debug, Default)]
pub struct AssemblyAiStt {
    /// Pooled client for `/v3/token`, built on first use.
    http: OnceLock<HttpClient>,
}

impl AssemblyAiStt {
    /// A plugin object.
    pub fn new() -> Self {
        Self::default()
    }

    fn http(&self) -> Result<&HttpClient, PluginError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = HttpClient::new(HttpClientConfig {
            timeout: Some(Duration::from_secs(10)),
            context: format!("{CONTEXT}: temporary token"),
            ..HttpClientConfig::default()
        })?;
        Ok(self.http.get_or_init(|| client))
    }

    /// Mints a one-use temporary token (SDK `create_temporary_token`: `GET /v3/token?
    /// expires_in_seconds=N` with `Authorization: <key>`, response `{"token": "…"}`).
    async fn mint_token(
        &self,
        settings: &Settings,
        key: &Secret,
        redactor: &Redactor,
    ) -> Result<Secret, PluginError> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: String,
        }
        let http = self.http()?;
        let req = http
            .get(&settings.token_request_url())
            .header("authorization", key.expose());
        let resp: TokenResponse = http
            .send_json(req, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| redactor.redact_error(e))?;
        if resp.token.is_empty() {
            return Err(PluginError::Permanent(format!(
                "{CONTEXT}: temporary token response without a token"
            )));
        }
        Ok(Secret::from(resp.token))
    }
}

impl Plugin for AssemblyAiStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("assemblyai", "AssemblyAI")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["assembly-ai"])
            .description("AssemblyAI Universal Streaming v3 speech-to-text")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(MODELS.iter().map(|(id, name)| ModelInfo::new(*id, *name)))
            // English model, plus the multilingual model's languages (docs "Streaming Audio").
            .languages(["en", "en-US", "es", "fr", "de", "it", "pt"])
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mulaw])
            .sample_rate_range(MIN_RATE, MAX_RATE)
            .max_channels(1)
            .features(true, false, true, true)
    }
}

#[async_trait::async_trait]
impl SttPlugin for AssemblyAiStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        // Everything is validated before any I/O.
        let settings = Settings::from_session(&config)?;
        let key = config
            .credentials
            .get("api_key")
            .or(config.api_key.as_ref())
            .filter(|k| !k.is_empty())
            .cloned()
            .ok_or_else(|| {
                PluginError::Auth(format!(
                    "{CONTEXT}: API key not configured (ASSEMBLYAI_API_KEY or the session's api_key)"
                ))
            })?;
        let mut redactor = Redactor::new().with_secret(&key);

        let mut wcfg = match settings.auth {
            AuthMode::Header => {
                WsConfig::new(settings.ws_url(None)).header("Authorization", key.clone())
            }
            AuthMode::TemporaryToken => {
                let token = self.mint_token(&settings, &key, &redactor).await?;
                redactor.add(&token);
                WsConfig::new(settings.ws_url(Some(token.expose()))).secret(token)
            }
        };
        if let Some(v) = &settings.api_version {
            wcfg = wcfg.header("AssemblyAI-Version", v.as_str());
        }
        wcfg = wcfg
            .header(
                "User-Agent",
                concat!("waav-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .context(CONTEXT);
        wcfg.secrets.push(key);
        wcfg.ping_interval = settings.ping_interval;
        wcfg.idle_timeout = settings.idle_timeout;
        wcfg.max_message_size = settings.max_message_bytes;
        wcfg.close_codes = CLOSE_CODES.to_vec();
        wcfg.send_queue = 32;
        wcfg.recv_queue = 64;
        let redactor = wcfg.redactor();

        let conn = ws::connect(&wcfg).await?;
        let (tx, mut rx) = conn.split();
        // The session starts with `Begin` (docs "Message Sequence"); an auth or parameter
        // problem shows up here as an Error message or a close code, so connect reports it.
        match tokio::time::timeout(settings.begin_timeout, wait_begin(&mut rx, &redactor)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(errors::timeout(
                    &format!("{CONTEXT}: waiting for Begin"),
                    settings.begin_timeout,
                    &redactor,
                ))
            }
        }
        Ok(Box::pin(run(settings, tx, rx, io, redactor)))
    }
}

async fn wait_begin(rx: &mut WsReceiver, redactor: &Redactor) -> Result<(), PluginError> {
    loop {
        match rx.recv().await? {
            None => {
                return Err(PluginError::Transient(format!(
                    "{CONTEXT}: closed before Begin"
                )))
            }
            Some(Message::Text(t)) => match ServerMessage::parse(&t) {
                Ok(ServerMessage::Begin(b)) => {
                    tracing::debug!(session = %b.id, "assemblyai: session began");
                    return Ok(());
                }
                Ok(ServerMessage::Error(e)) => return Err(vendor_error(&e, redactor)),
                Ok(other) => tracing::debug!(?other, "assemblyai: message before Begin ignored"),
                Err(e) => tracing::debug!(error = %e, "assemblyai: unparsable message ignored"),
            },
            Some(_) => {}
        }
    }
}

/// The error for an `Error` message: its `error_code` through [`CLOSE_CODES`] (Permanent when
/// absent or unknown).
fn vendor_error(e: &messages::ErrorMessage, redactor: &Redactor) -> PluginError {
    let category = e
        .error_code
        .and_then(|c| errors::close_category(c, CLOSE_CODES))
        .unwrap_or(ErrorCategory::Permanent);
    let text = errors::excerpt(e.error.as_bytes(), errors::BODY_EXCERPT_LIMIT);
    let msg = match e.error_code {
        Some(c) => format!("{CONTEXT}: error {c}: {text}"),
        None => format!("{CONTEXT}: error: {text}"),
    };
    errors::make(category, msg, None, redactor)
}

/// Sends every ready chunk.
async fn send_ready(chunker: &mut Chunker, tx: &WsSender) -> Result<bool, PluginError> {
    let mut sent = false;
    while let Some(c) = chunker.next_chunk() {
        tx.send(Message::Binary(c)).await?;
        sent = true;
    }
    Ok(sent)
}

/// What one vendor message means for the loop.
enum Step {
    Continue,
    /// `Termination` arrived.
    Terminated,
}

async fn emit(io: &SttIo, ev: Option<SttEvent>) -> bool {
    match ev {
        Some(ev) => io.events.send(ev).await.is_ok(),
        None => true,
    }
}

async fn run(
    settings: Settings,
    tx: WsSender,
    mut rx: WsReceiver,
    mut io: SttIo,
    redactor: Redactor,
) -> Result<(), PluginError> {
    let mut chunker = Chunker::new(
        settings.frame_bytes,
        settings.min_chunk,
        settings.max_chunk,
        settings.silence,
    );
    let mut turns = TurnMapper::new(settings.format_turns);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut last_audio = Instant::now();
    let mut pending_deadline = far;
    let mut pending_for: Option<u64> = None;
    // Set once `Terminate` was sent: the loop then only drains results until this deadline.
    let mut drain_deadline: Option<Instant> = None;
    let keepalive = settings.keepalive;
    let result = loop {
        let keepalive_at = keepalive.map_or(far, |k| last_audio + k);
        tokio::select! {
            input = io.input.recv(), if drain_deadline.is_none() => match input {
                Some(SttInput::Audio(bytes)) => {
                    chunker.push(bytes);
                    if send_ready(&mut chunker, &tx).await? {
                        last_audio = Instant::now();
                    }
                }
                Some(SttInput::Finalize) => {
                    // Buffered audio goes first (padded to 50 ms), then the turn is ended.
                    if let Some(c) = chunker.flush() {
                        tx.send(Message::Binary(c)).await?;
                    }
                    tx.send_text(messages::FORCE_ENDPOINT).await?;
                    last_audio = Instant::now();
                }
                // AssemblyAI endpoints turns itself.
                Some(_) => {}
                None => {
                    // Graceful end (docs "Message Sequence"): Terminate, then the server sends
                    // in-flight Turns and Termination and closes with 1000.
                    if let Some(c) = chunker.flush() {
                        let _ = tx.send(Message::Binary(c)).await;
                    }
                    if tx.send_text(messages::TERMINATE).await.is_err() {
                        break Ok(());
                    }
                    drain_deadline = Some(Instant::now() + settings.drain_timeout);
                }
            },
            msg = rx.recv() => match msg {
                Ok(Some(Message::Text(text))) => {
                    match on_message(&text, &mut turns, &io, &redactor).await {
                        Ok(Some(Step::Terminated)) => {
                            break if drain_deadline.is_some() {
                                Ok(())
                            } else {
                                // The server ended a session we did not end (e.g. its own
                                // limits): the host should know it is over.
                                Err(PluginError::Transient(format!(
                                    "{CONTEXT}: session terminated by the server"
                                )))
                            };
                        }
                        Ok(Some(Step::Continue)) => {
                            // Each held-back turn gets its own `format_wait`.
                            match turns.pending_order() {
                                Some(o) if pending_for != Some(o) => {
                                    pending_for = Some(o);
                                    pending_deadline = Instant::now() + settings.format_wait;
                                }
                                Some(_) => {}
                                None => {
                                    pending_for = None;
                                    pending_deadline = far;
                                }
                            }
                        }
                        Ok(None) => break Ok(()), // the host stopped listening
                        Err(e) => break Err(e),
                    }
                }
                Ok(Some(_)) => {} // binary frames are not part of the S→C protocol
                Ok(None) => {
                    break if drain_deadline.is_some() {
                        Ok(())
                    } else {
                        Err(PluginError::Transient(format!(
                            "{CONTEXT}: the server closed the session"
                        )))
                    };
                }
                Err(e) => break Err(e),
            },
            () = tokio::time::sleep_until(pending_deadline), if turns.is_pending() => {
                pending_deadline = far;
                pending_for = None;
                if !emit(&io, turns.flush()).await {
                    break Ok(());
                }
            }
            () = tokio::time::sleep_until(keepalive_at), if keepalive.is_some() && drain_deadline.is_none() => {
                tx.send_text(messages::KEEP_ALIVE).await?;
                last_audio = Instant::now();
            }
            () = tokio::time::sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() => {
                tracing::debug!("assemblyai: no Termination within the drain timeout");
                break Ok(());
            }
        }
    };
    // A held unformatted final is still the turn's text: deliver it whatever happened.
    emit(&io, turns.flush()).await;
    if result.is_ok() {
        let _ = tx.close(CloseCode::Normal, "").await;
    }
    result
}

/// Handles one text message. `Ok(None)` when the host no longer listens.
async fn on_message(
    text: &str,
    turns: &mut TurnMapper,
    io: &SttIo,
    redactor: &Redactor,
) -> Result<Option<Step>, PluginError> {
    let msg = match ServerMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, len = text.len(), "assemblyai: unparsable message skipped");
            return Ok(Some(Step::Continue));
        }
    };
    match msg {
        ServerMessage::Turn(turn) => {
            for ev in turns.on_turn(turn) {
                if !emit(io, ev).await {
                    return Ok(None);
                }
            }
        }
        ServerMessage::SpeechStarted(_) => {
            if !emit(io, Some(SttEvent::SpeechStarted)).await {
                return Ok(None);
            }
        }
        ServerMessage::Termination(t) => {
            tracing::debug!(
                audio_s = ?t.audio_duration_seconds,
                session_s = ?t.session_duration_seconds,
                "assemblyai: session terminated"
            );
            return Ok(Some(Step::Terminated));
        }
        // The session ends after an Error (SDK `_build_connection_closed_error`).
        ServerMessage::Error(e) => return Err(vendor_error(&e, redactor)),
        ServerMessage::Warning(w) => {
            tracing::warn!(
                code = ?w.warning_code,
                warning = %redactor.redact(&w.warning),
                "assemblyai: warning"
            );
        }
        ServerMessage::Begin(_) | ServerMessage::Other => {}
    }
    Ok(Some(Step::Continue))
}
