//! The streaming session: one `multi-stream-input` WebSocket per session, one context per
//! request.
//!
//! `wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input?model_id=…&output_format=…`
//! with `xi-api-key` on the upgrade (TTS_PROTOCOLS.md §2 "WebSocket multi-stream-input"; the
//! LiveKit plugin, `livekit-plugins-elevenlabs/.../tts.py` `_Connection`, runs the same
//! protocol in production). Per request `id`, context `waav-<id>`:
//! 1. `{"text":" ","context_id","voice_settings",…}` opens the context with its settings;
//! 2. `{"text":"<text> ","context_id","flush":true}` sends the whole text and flushes it;
//! 3. `{"context_id","close_context":true}`: the context "will continue flushing" and then
//!    ends (`close_context.py`), so the server sends the audio and then `isFinal` for it.
//!
//! Audio messages for the context become [`TtsEvent::Audio`], its final [`TtsEvent::Done`].
//! `SpeakRequest::flush` is always honoured as true: each request is complete in itself.
//!
//! `Cancel` sends `close_context` for the request in flight (the vendor stops generating;
//! audio it already flushed may still arrive and is dropped here, the context is then
//! "draining" until its final), and the next request starts at once in a new context on the
//! same socket: clean per-request boundaries without a reconnect. ElevenLabs allows a few
//! contexts per socket (5, observed); when the draining ones would exceed `max_contexts`, the
//! socket is replaced instead, which drops them all at once.
//!
//! The socket is opened when the session starts and reopened lazily for the next request when
//! the vendor closed it (its inactivity timeout, 20 s by default). A request that gets no
//! message for `response_timeout` fails with a Timeout and the (silent) socket is dropped. When
//! the host closes the input, the socket is closed with a close frame, bounded.

use super::messages::{self, decode_audio, ServerMessage, Transcoder};
use super::settings::Transcode;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{PluginError, SpeakRequest, TtsEvent, TtsInput, TtsIo};
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsReceiver, WsSender};

/// How long the closing handshake may take when the session ends.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Everything a session needs, resolved from the config before it starts.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    /// The socket (URL, `xi-api-key` header, timeouts).
    pub ws: WsConfig,
    /// `voice_settings` for every context, when any are set.
    pub voice_settings: Option<Value>,
    /// `generation_config.chunk_length_schedule`, when set.
    pub chunk_length_schedule: Option<Vec<u64>>,
    /// G.711 step after decoding, if any.
    pub transcode: Transcode,
    /// Silent-vendor bound per request.
    pub response_timeout: Duration,
    /// Most contexts on one socket.
    pub max_contexts: usize,
}

struct Conn {
    tx: WsSender,
    rx: WsReceiver,
    /// Cancelled contexts whose final has not arrived yet.
    draining: HashSet<String>,
}

struct Active {
    id: u64,
    context: String,
    deadline: Instant,
    transcoder: Transcoder,
}

enum Wake {
    Input(Option<TtsInput>),
    Socket(Result<Option<Message>, PluginError>),
    Deadline,
}

/// The session task.
pub async fn run(setup: StreamSetup, io: TtsIo) -> Result<(), PluginError> {
    let TtsIo { mut input, events } = io;
    let redactor = setup.ws.redactor();
    // Open the socket up front so the first request does not wait for the handshake; a
    // failure here is reported on the first request (which dials again).
    let mut conn = match connect(&setup).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "elevenlabs: initial connect failed; retrying on the first request");
            None
        }
    };
    let mut queue: VecDeque<SpeakRequest> = VecDeque::new();
    let mut cancelled = 0u64;
    let mut active: Option<Active> = None;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);

    loop {
        while active.is_none() {
            let Some(req) = queue.pop_front() else { break };
            if req.id <= cancelled {
                continue;
            }
            let id = req.id;
            let event = if req.text.trim().is_empty() {
                Some(TtsEvent::Done { id })
            } else {
                match start(&setup, &mut conn, &req).await {
                    Ok(a) => {
                        active = Some(a);
                        None
                    }
                    Err(error) => Some(TtsEvent::Error { id, error }),
                }
            };
            if let Some(ev) = event {
                if events.send(ev).await.is_err() {
                    return shutdown(conn).await;
                }
            }
        }

        let deadline = active.as_ref().map(|a| a.deadline);
        let wake = tokio::select! {
            i = input.recv() => Wake::Input(i),
            m = async { conn.as_mut().expect("guarded").rx.recv().await }, if conn.is_some() => Wake::Socket(m),
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Wake::Deadline,
        };

        match wake {
            Wake::Input(None) => return shutdown(conn).await,
            Wake::Input(Some(TtsInput::Speak(r))) => {
                if r.id > cancelled {
                    queue.push_back(r);
                }
            }
            Wake::Input(Some(TtsInput::Cancel { up_to })) => {
                cancelled = cancelled.max(up_to);
                queue.retain(|r| r.id > up_to);
                if let Some(a) = active.take_if(|a| a.id <= up_to) {
                    if let Some(c) = conn.as_mut() {
                        match c.tx.send_text(messages::close_context(&a.context)).await {
                            Ok(()) => {
                                c.draining.insert(a.context);
                            }
                            Err(_) => conn = None,
                        }
                    }
                }
            }
            Wake::Deadline => {
                if let Some(a) = active.take() {
                    let error = waav_provider_kit::errors::timeout(
                        &format!("elevenlabs: request {} audio", a.id),
                        setup.response_timeout,
                        &redactor,
                    );
                    // A vendor this silent is not trusted with the next request.
                    conn = None;
                    if events
                        .send(TtsEvent::Error { id: a.id, error })
                        .await
                        .is_err()
                    {
                        return shutdown(conn).await;
                    }
                }
            }
            Wake::Socket(Err(error)) => {
                conn = None;
                if let Some(a) = active.take() {
                    if events
                        .send(TtsEvent::Error { id: a.id, error })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            Wake::Socket(Ok(None)) => {
                conn = None;
                if let Some(a) = active.take() {
                    let error = PluginError::Transient(format!(
                        "elevenlabs: the socket closed before request {} finished",
                        a.id
                    ));
                    if events
                        .send(TtsEvent::Error { id: a.id, error })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            Wake::Socket(Ok(Some(Message::Text(text)))) => {
                let Some(c) = conn.as_mut() else { continue };
                let out = on_text(&text, &mut active, &mut c.draining, &setup, &redactor);
                for ev in out {
                    if events.send(ev).await.is_err() {
                        return shutdown(conn).await;
                    }
                }
            }
            Wake::Socket(Ok(Some(other))) => {
                tracing::debug!(len = other.len(), "elevenlabs: ignoring a non-text frame");
            }
        }
    }
}

/// Handles one server text message; returns the events to emit.
fn on_text(
    text: &str,
    active: &mut Option<Active>,
    draining: &mut HashSet<String>,
    setup: &StreamSetup,
    redactor: &Redactor,
) -> Vec<TtsEvent> {
    let Some(msg) = ServerMessage::parse(text) else {
        tracing::debug!(
            len = text.len(),
            "elevenlabs: ignoring an unparseable message"
        );
        return Vec::new();
    };
    let ctx = msg.context_id();
    if let Some(error) = msg.error(redactor) {
        if let Some(c) = ctx.filter(|c| draining.contains(*c)) {
            draining.remove(c);
            return Vec::new();
        }
        // An error naming no context, or ours, fails the request in flight.
        let ours = active
            .as_ref()
            .is_some_and(|a| ctx.is_none_or(|c| c == a.context));
        if ours {
            let a = active.take().expect("checked");
            return vec![TtsEvent::Error { id: a.id, error }];
        }
        tracing::warn!(error = %error, "elevenlabs: vendor error outside a request");
        return Vec::new();
    }
    if msg.is_flush_done() {
        return Vec::new();
    }
    let is_active = active
        .as_ref()
        .is_some_and(|a| ctx.is_none_or(|c| c == a.context));
    if !is_active {
        match ctx {
            Some(c) if draining.contains(c) => {
                if msg.is_final() {
                    draining.remove(c);
                }
            }
            _ => tracing::debug!(context = ?ctx, "elevenlabs: message for an unknown context"),
        }
        return Vec::new();
    }
    let a = active.as_mut().expect("checked");
    let mut out = Vec::new();
    if let Some(b64) = msg.audio_b64() {
        match decode_audio(b64) {
            Ok(raw) => {
                let data = a.transcoder.push(Bytes::from(raw));
                a.deadline = Instant::now() + setup.response_timeout;
                if !data.is_empty() {
                    out.push(TtsEvent::Audio { id: a.id, data });
                }
            }
            Err(error) => {
                // The context's audio is corrupt: fail it; its remaining messages are dropped.
                let a = active.take().expect("checked");
                draining.insert(a.context);
                return vec![TtsEvent::Error { id: a.id, error }];
            }
        }
    } else {
        // Any message for the request shows the vendor is alive.
        a.deadline = Instant::now() + setup.response_timeout;
    }
    if msg.is_final() {
        let a = active.take().expect("checked");
        out.push(TtsEvent::Done { id: a.id });
    }
    out
}

async fn connect(setup: &StreamSetup) -> Result<Conn, PluginError> {
    let (tx, rx) = ws::connect(&setup.ws).await?.split();
    if let Some(trace) = tx
        .info()
        .response_headers
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(trace, "elevenlabs: stream open");
    }
    Ok(Conn {
        tx,
        rx,
        draining: HashSet::new(),
    })
}

/// Opens request `req`'s context and sends its text, (re)connecting as needed. A send that
/// fails (the vendor closed the socket just now) is retried once on a new socket.
async fn start(
    setup: &StreamSetup,
    conn: &mut Option<Conn>,
    req: &SpeakRequest,
) -> Result<Active, PluginError> {
    let context = format!("waav-{}", req.id);
    let frames = [
        messages::init_context(
            &context,
            setup.voice_settings.as_ref(),
            setup.chunk_length_schedule.as_deref(),
        ),
        messages::send_text(&context, &req.text),
        messages::close_context(&context),
    ];
    let mut attempt = 0;
    loop {
        attempt += 1;
        let replace = conn
            .as_ref()
            .is_some_and(|c| c.tx.is_closed() || c.draining.len() >= setup.max_contexts.max(1));
        if replace {
            // Dropping both halves closes the socket; its draining contexts go with it.
            *conn = None;
        }
        if conn.is_none() {
            *conn = Some(connect(setup).await?);
        }
        let c = conn.as_mut().expect("connected");
        let mut sent = Ok(());
        for f in &frames {
            sent = c.tx.send_text(f.clone()).await;
            if sent.is_err() {
                break;
            }
        }
        match sent {
            Ok(()) => {
                return Ok(Active {
                    id: req.id,
                    context,
                    deadline: Instant::now() + setup.response_timeout,
                    transcoder: Transcoder::new(setup.transcode),
                })
            }
            Err(e) if attempt >= 2 => return Err(e),
            Err(_) => *conn = None,
        }
    }
}

/// Closes the socket with a close frame and waits (bounded) for the vendor's close.
async fn shutdown(conn: Option<Conn>) -> Result<(), PluginError> {
    let Some(mut c) = conn else { return Ok(()) };
    if c.tx.close(CloseCode::Normal, "").await.is_ok() {
        let drain = async { while let Ok(Some(_)) = c.rx.recv().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
    Ok(())
}
