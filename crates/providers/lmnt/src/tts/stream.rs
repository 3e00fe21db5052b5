//! The `/v1/ai/speech/stream` WebSocket session for [`TtsPlugin::open_stream`]
//! (`crate::tts`), one socket per host session, one request at a time.
//!
//! Protocol: lmnt-python `src/lmnt/resources/sessions.py` (the typed session protocol generated
//! from LMNT's asyncapi.yaml; `TTS_PROTOCOLS.md` §10 "The newer typed session protocol"):
//! - client, first: the init object `{"X-API-Key", "lmnt-version": "1.1", "voice", "format",
//!   "language"?, "return_timestamps"?, "sample_rate"}` (sessions.py `connect` sends it without
//!   the `type: init` its model declares; the fake accepts both);
//! - client: `{"type": "text", "text"}`, `{"type": "flush", "nonce"}`, `{"type": "reset",
//!   "nonce"}`, `{"type": "finish"}`;
//! - server: `{"type": "ready", "request_id"}`, binary frames of audio, `{"type": "timestamps"}`,
//!   `{"type": "flush_complete", "nonce"}`, `{"type": "reset_complete", "nonce"}`, `{"type":
//!   "error", "error": {"message", "type"}, "request_id"}`.
//!
//! Per request: its text, then a flush with a fresh nonce; audio frames belong to it until its
//! `flush_complete`, which ends it (`Done`). A cancel of the request in flight sends `reset`:
//! everything up to the matching `reset_complete` is dropped, then the next request starts.
//! Cancelled requests still queued are never sent. A socket the vendor closed between requests
//! is re-opened for the next one; one that fails mid-request fails that request (the next one
//! reconnects). When the host closes the input, `finish` is sent and the close awaited, bounded.
//! Timestamps are not emitted (no place in the contract yet). With `ulaw`, a WAV header at the
//! start of a request's audio is removed (whether LMNT sends one per session or per flush is
//! UNCONFIRMED; the stripper passes headerless audio through).

use super::wav::WavStripper;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{ErrorCategory, PluginError, SpeakRequest, TtsEvent, TtsInput, TtsIo};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsReceiver, WsSender};

/// How long the closing handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a session needs.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    /// The socket (URL, secrets, timeouts).
    pub ws: WsConfig,
    /// The init message, key included.
    pub init: serde_json::Value,
    /// Strip a WAV header from each request's audio (`ulaw`).
    pub strip_wav: bool,
    /// A request without any message for this long fails with Timeout.
    pub response_timeout: Duration,
}

struct Conn {
    tx: WsSender,
    rx: WsReceiver,
}

struct Active {
    id: u64,
    nonce: u64,
    stripper: Option<WavStripper>,
    /// The request, kept for one re-send when the socket dies before any answer to it.
    request: SpeakRequest,
    /// Something arrived for it.
    answered: bool,
    /// It was re-sent already.
    resent: bool,
}

enum Wake {
    Input(Option<TtsInput>),
    Socket(Result<Option<Message>, PluginError>),
    Deadline,
}

/// The category of a session `error` message's `type` (error_body.py).
fn category_of(kind: Option<&str>, message: &str) -> ErrorCategory {
    match kind.unwrap_or("") {
        "authentication_error" | "permission_error" | "payment_required_error" => {
            ErrorCategory::Auth
        }
        "rate_limit_error" => ErrorCategory::RateLimited,
        "internal_server_error" => ErrorCategory::Transient,
        "invalid_request_error" if message.to_ascii_lowercase().contains("text") => {
            ErrorCategory::Permanent
        }
        "invalid_request_error" | "not_found_error" => ErrorCategory::Config,
        _ => ErrorCategory::Permanent,
    }
}

/// A parsed server text message.
#[derive(Debug, PartialEq)]
enum Server {
    Ready(String),
    FlushComplete(u64),
    ResetComplete(u64),
    Error(ErrorCategory, String),
    Other,
}

fn parse(text: &str) -> Option<Server> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let error_of = |v: &serde_json::Value| match &v["error"] {
        serde_json::Value::String(m) => Some((None, m.clone())),
        o @ serde_json::Value::Object(_) => Some((
            o["type"].as_str().map(str::to_owned),
            o["message"].as_str().unwrap_or("error").to_owned(),
        )),
        _ => None,
    };
    Some(match v["type"].as_str() {
        Some("ready") => Server::Ready(v["request_id"].as_str().unwrap_or("").to_owned()),
        Some("flush_complete") => Server::FlushComplete(v["nonce"].as_u64()?),
        Some("reset_complete") => Server::ResetComplete(v["nonce"].as_u64()?),
        Some("error") | None => match error_of(&v) {
            Some((kind, m)) => Server::Error(category_of(kind.as_deref(), &m), m),
            None => Server::Other,
        },
        Some(_) => Server::Other,
    })
}

async fn connect(setup: &StreamSetup) -> Result<Conn, PluginError> {
    let c = ws::connect(&setup.ws).await?;
    let (tx, rx) = c.split();
    tx.send_text(setup.init.to_string()).await?;
    Ok(Conn { tx, rx })
}

async fn send_request(c: &Conn, text: &str, nonce: u64) -> Result<(), PluginError> {
    c.tx.send_text(serde_json::json!({"type": "text", "text": text}).to_string())
        .await?;
    c.tx.send_text(serde_json::json!({"type": "flush", "nonce": nonce}).to_string())
        .await
}

async fn shutdown(conn: Option<Conn>) -> Result<(), PluginError> {
    let Some(mut c) = conn else { return Ok(()) };
    let finish = serde_json::json!({"type": "finish"}).to_string();
    if c.tx.send_text(finish).await.is_ok() {
        // The server closes once it has dispatched everything.
        let drain = async { while let Ok(Some(_)) = c.rx.recv().await {} };
        if tokio::time::timeout(CLOSE_GRACE, drain).await.is_err() {
            let _ = c.tx.close(CloseCode::Normal, "").await;
        }
    }
    Ok(())
}

/// Runs a session until the host closes the input (or goes away).
pub async fn run(setup: StreamSetup, io: TtsIo) -> Result<(), PluginError> {
    let TtsIo { mut input, events } = io;
    let redactor: Redactor = setup.ws.redactor();
    let mut queue: VecDeque<SpeakRequest> = VecDeque::new();
    let mut cancelled_up_to = 0u64;
    let mut conn: Option<Conn> = None;
    let mut active: Option<Active> = None;
    let mut resetting: Option<u64> = None;
    let mut nonce = 0u64;
    let mut input_open = true;
    // A request to send again first (its socket died before answering it).
    let mut retry: Option<(SpeakRequest, bool)> = None;
    let mut deadline = Instant::now() + setup.response_timeout;
    loop {
        // Start the next request when idle.
        while active.is_none() && resetting.is_none() {
            let Some((req, resent)) = retry
                .take()
                .or_else(|| queue.pop_front().map(|r| (r, false)))
            else {
                break;
            };
            if req.id <= cancelled_up_to {
                continue;
            }
            if req.text.trim().is_empty() {
                if events.send(TtsEvent::Done { id: req.id }).await.is_err() {
                    return shutdown(conn).await;
                }
                continue;
            }
            nonce += 1;
            // A socket the vendor closed while idle is replaced; a fresh one gets one try.
            let mut result = Err(PluginError::Transient("lmnt: not connected".into()));
            for attempt in 0..2 {
                if conn.as_ref().is_none_or(|c| c.tx.is_closed()) || attempt > 0 {
                    conn = None;
                    match connect(&setup).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                let c = conn.as_ref().expect("connected");
                result = send_request(c, &req.text, nonce).await;
                if result.is_ok() {
                    break;
                }
            }
            match result {
                Ok(()) => {
                    active = Some(Active {
                        id: req.id,
                        nonce,
                        stripper: setup.strip_wav.then(WavStripper::new),
                        request: req,
                        answered: false,
                        resent,
                    });
                    deadline = Instant::now() + setup.response_timeout;
                }
                Err(error) => {
                    conn = None;
                    if events
                        .send(TtsEvent::Error { id: req.id, error })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
        if !input_open
            && active.is_none()
            && resetting.is_none()
            && queue.is_empty()
            && retry.is_none()
        {
            return shutdown(conn).await;
        }
        let busy = active.is_some() || resetting.is_some();
        let wake = tokio::select! {
            m = input.recv(), if input_open => Wake::Input(m),
            m = async {
                match conn.as_mut() {
                    Some(c) => c.rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Socket(m),
            () = tokio::time::sleep_until(deadline), if busy => Wake::Deadline,
        };
        match wake {
            Wake::Input(None) => input_open = false,
            Wake::Input(Some(TtsInput::Speak(r))) => queue.push_back(r),
            Wake::Input(Some(TtsInput::Cancel { up_to })) => {
                cancelled_up_to = cancelled_up_to.max(up_to);
                queue.retain(|r| r.id > up_to);
                if active.as_ref().is_some_and(|a| a.id <= up_to) {
                    active = None;
                    nonce += 1;
                    let reset = serde_json::json!({"type": "reset", "nonce": nonce}).to_string();
                    match conn.as_ref() {
                        Some(c) if c.tx.send_text(reset).await.is_ok() => {
                            resetting = Some(nonce);
                            deadline = Instant::now() + setup.response_timeout;
                        }
                        // Without a socket there is nothing to drain.
                        _ => conn = None,
                    }
                }
            }
            Wake::Deadline => {
                // A vendor this silent is not trusted with the next request.
                conn = None;
                resetting = None;
                if let Some(a) = active.take() {
                    let error = errors::timeout(
                        &format!("lmnt: request {} audio", a.id),
                        setup.response_timeout,
                        &redactor,
                    );
                    if events
                        .send(TtsEvent::Error { id: a.id, error })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            Wake::Socket(r) => {
                let closed = match r {
                    Err(e) => Some(e),
                    Ok(None) => Some(PluginError::Transient(
                        "lmnt: the socket closed before the request finished".into(),
                    )),
                    Ok(Some(m)) => {
                        if let (Some(a), Message::Binary(_)) = (active.as_mut(), &m) {
                            a.answered = true;
                        }
                        let out = on_message(m, &mut active, &mut resetting, &mut conn, &redactor);
                        if let Some(ev) = out {
                            if matches!(ev, TtsEvent::Audio { .. } | TtsEvent::Done { .. }) {
                                deadline = Instant::now() + setup.response_timeout;
                            }
                            if events.send(ev).await.is_err() {
                                return shutdown(conn).await;
                            }
                        }
                        None
                    }
                };
                if let Some(error) = closed {
                    conn = None;
                    resetting = None;
                    if let Some(a) = active.take_if(|a| !a.answered && !a.resent) {
                        // The vendor closed the socket (an idle timeout racing our send)
                        // before answering: the request goes again on a new socket, once.
                        tracing::debug!(id = a.id, error = %error, "lmnt: re-sending on a new socket");
                        retry = Some((a.request, true));
                    } else if let Some(a) = active.take() {
                        if events
                            .send(TtsEvent::Error { id: a.id, error })
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Handles one server message; returns the event to emit, if any.
fn on_message(
    m: Message,
    active: &mut Option<Active>,
    resetting: &mut Option<u64>,
    conn: &mut Option<Conn>,
    redactor: &Redactor,
) -> Option<TtsEvent> {
    match m {
        Message::Binary(data) => {
            if resetting.is_some() {
                return None; // audio of the cancelled request
            }
            let Some(a) = active.as_mut() else {
                tracing::debug!(len = data.len(), "lmnt: audio outside a request dropped");
                return None;
            };
            let data = match a.stripper.as_mut() {
                None => data,
                Some(s) => match s.push(data) {
                    Ok(d) => d,
                    Err(e) => {
                        let id = a.id;
                        *active = None;
                        *conn = None;
                        return Some(TtsEvent::Error {
                            id,
                            error: PluginError::Permanent(format!("lmnt: ulaw audio: {e}")),
                        });
                    }
                },
            };
            (!data.is_empty()).then(|| TtsEvent::Audio { id: a.id, data })
        }
        Message::Text(text) => match parse(&text) {
            Some(Server::Ready(request_id)) => {
                tracing::debug!(request_id, "lmnt: session ready");
                None
            }
            Some(Server::FlushComplete(n)) => {
                if resetting.is_none() && active.as_ref().is_some_and(|a| a.nonce == n) {
                    let id = active.take().expect("checked").id;
                    return Some(TtsEvent::Done { id });
                }
                None
            }
            Some(Server::ResetComplete(n)) => {
                if *resetting == Some(n) {
                    *resetting = None;
                }
                None
            }
            Some(Server::Error(category, message)) => {
                let error = errors::make(category, format!("lmnt: {message}"), None, redactor);
                // The session is not trusted after an error: the next request reconnects.
                *conn = None;
                *resetting = None;
                match active.take() {
                    Some(a) => Some(TtsEvent::Error { id: a.id, error }),
                    None => {
                        tracing::warn!(error = %error, "lmnt: vendor error outside a request");
                        None
                    }
                }
            }
            Some(Server::Other) => None,
            None => {
                tracing::debug!(len = text.len(), "lmnt: ignoring an unparseable message");
                None
            }
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages() {
        assert_eq!(
            parse(r#"{"type":"ready","request_id":"r1"}"#),
            Some(Server::Ready("r1".into()))
        );
        assert_eq!(
            parse(r#"{"type":"flush_complete","nonce":3}"#),
            Some(Server::FlushComplete(3))
        );
        assert_eq!(
            parse(r#"{"type":"reset_complete","nonce":4}"#),
            Some(Server::ResetComplete(4))
        );
        assert_eq!(
            parse(
                r#"{"type":"error","error":{"message":"Invalid API key","type":"authentication_error"}}"#
            ),
            Some(Server::Error(ErrorCategory::Auth, "Invalid API key".into()))
        );
        assert_eq!(
            parse(r#"{"error":"Invalid voice"}"#),
            Some(Server::Error(
                ErrorCategory::Permanent,
                "Invalid voice".into()
            ))
        );
        assert_eq!(
            parse(r#"{"type":"timestamps","timestamps":[]}"#),
            Some(Server::Other)
        );
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"type":"flush_complete"}"#), None);
    }
}
