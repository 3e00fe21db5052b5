//! One recognition session over `/v1/recognize`.
//!
//! The flow (docs "The WebSocket interface"; python-sdk `recognize_listener.py`):
//! 1. `start` (text) opens a request; the service answers `{"state": "listening"}`. Audio may
//!    follow at once, before that answer.
//! 2. Audio goes out as binary frames, as received (at least 100 bytes per request, at most
//!    4 MB per frame: the host's chunks are far smaller).
//! 3. `Finalize` sends `{"action": "stop"}`: the service sends the request's final results and
//!    then `listening` again; audio sent afterwards starts the next request with the same
//!    `start` parameters (docs "Send additional requests and modify request parameters").
//! 4. When the host closes the input, `stop` (if audio was sent since the last one), the finals
//!    are drained until that `listening` (bounded), and the socket is closed with 1000.
//!
//! `{"error": "…"}` is fatal: the service closes right after it (1011 or 1008). Each `start`
//! and `stop` must be answered by `listening` within the ack timeout, which is how a silent
//! service is caught (IBM sends nothing during silence, so a response timeout on audio would
//! misfire).

use super::messages::{self, Incoming, STOP};
use super::CTX;
use crate::common;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use waav_plugin_api::{ErrorCategory, PluginError, SttInput, SttIo};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{CloseCode, Message, WsConnection};

/// The waits a session observes.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Deadline for each `listening` owed (after `start`, after each `stop`).
    pub ack_timeout: Duration,
    /// Deadline for the close after the input ended.
    pub drain_timeout: Duration,
}

/// The service refuses requests with fewer bytes (docs: "at least 100 bytes"; its error is
/// "Stream was 0 bytes but needs to be at least 100 bytes.").
const MIN_REQUEST_BYTES: usize = 100;

/// Runs the session until the host closes the input (then stop, drain, close) or a fatal error.
pub async fn run(
    conn: WsConnection,
    io: SttIo,
    start: String,
    silence: u8,
    timing: Timing,
    redactor: Redactor,
) -> Result<(), PluginError> {
    let (tx, mut rx) = conn.split();
    let SttIo { mut input, events } = io;
    tx.send_text(start).await.map_err(refine)?;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    // `listening` messages owed: one for the start, one per stop.
    let mut owed: u32 = 1;
    let ack = sleep_until(Instant::now() + timing.ack_timeout);
    let drain = sleep_until(far);
    tokio::pin!(ack, drain);
    let mut since_stop: usize = 0;
    let mut closing = false;
    let mut close_sent = false;

    loop {
        if closing && owed == 0 && !close_sent {
            // Everything owed arrived: the normal close.
            close_sent = true;
            let _ = tx.close(CloseCode::Normal, "").await;
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(Message::Text(text))) => match messages::parse(&text) {
                    Some(Incoming::Listening) => {
                        owed = owed.saturating_sub(1);
                        if owed > 0 {
                            ack.as_mut().reset(Instant::now() + timing.ack_timeout);
                        }
                    }
                    Some(Incoming::Results(ts)) => {
                        for t in ts {
                            if events.send(t.into()).await.is_err() {
                                return Ok(()); // the host hung up
                            }
                        }
                    }
                    Some(Incoming::Error(e)) => return Err(service_error(&e, &redactor)),
                    Some(Incoming::OtherState(s)) => {
                        tracing::debug!(state = %errors::excerpt(s.as_bytes(), 64), "ibm stt: unknown state");
                    }
                    Some(Incoming::Other) => {
                        tracing::debug!(bytes = text.len(), "ibm stt: message without results skipped");
                    }
                    None => tracing::debug!(bytes = text.len(), "ibm stt: malformed message skipped"),
                },
                Ok(Some(_)) => tracing::debug!("ibm stt: non-text message skipped"),
                Ok(None) if closing && owed == 0 => return Ok(()),
                Ok(None) => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{CTX}: the service closed the socket mid-session"),
                        None,
                        &redactor,
                    ))
                }
                Err(e) if closing && owed == 0 => {
                    tracing::debug!(error = %e, "ibm stt: error after the last results");
                    return Ok(());
                }
                Err(e) => return Err(refine(e)),
            },
            inp = input.recv(), if !closing => match inp {
                Some(SttInput::Audio(bytes)) if bytes.is_empty() => {}
                Some(SttInput::Audio(bytes)) => {
                    since_stop += bytes.len();
                    // An empty binary frame would mean stop (docs): never sent, see above.
                    tx.send_binary(bytes).await.map_err(refine)?;
                }
                Some(SttInput::Finalize) => {
                    if stop(&tx, &mut since_stop, silence).await? {
                        owed += 1;
                        if owed == 1 {
                            ack.as_mut().reset(Instant::now() + timing.ack_timeout);
                        }
                    }
                }
                // IBM endpoints itself (end_of_phrase_silence_time).
                Some(_) => {}
                None => {
                    closing = true;
                    if stop(&tx, &mut since_stop, silence).await.unwrap_or(false) {
                        owed += 1;
                    }
                    drain.as_mut().reset(Instant::now() + timing.drain_timeout);
                }
            },
            () = &mut ack, if owed > 0 && !closing => {
                return Err(errors::timeout(
                    &format!("{CTX}: no listening state from the service"),
                    timing.ack_timeout,
                    &redactor,
                ));
            }
            () = &mut drain, if closing => {
                return Err(errors::timeout(
                    &format!("{CTX}: input closed, the service did not finish"),
                    timing.drain_timeout,
                    &redactor,
                ));
            }
        }
    }
}

/// Sends `stop` when audio went out since the last one, padding a request shorter than the
/// service's minimum with silence. Returns whether a stop was sent.
async fn stop(
    tx: &waav_provider_kit::ws::WsSender,
    since_stop: &mut usize,
    silence: u8,
) -> Result<bool, PluginError> {
    if *since_stop == 0 {
        return Ok(false);
    }
    if *since_stop < MIN_REQUEST_BYTES {
        let pad = vec![silence; MIN_REQUEST_BYTES - *since_stop];
        tx.send_binary(pad).await.map_err(refine)?;
    }
    *since_stop = 0;
    tx.send_text(STOP).await.map_err(refine)?;
    Ok(true)
}

/// The category of an `{"error": …}` message (texts from the docs' "WebSocket return codes"
/// and "inactivity timeout" sections, and errors seen from the service: "Session timed out.",
/// "No speech detected for 30s.", "Unable to transcode data stream …", "Model … not found",
/// "Stream was 0 bytes but needs to be at least 100 bytes.").
pub fn service_error(msg: &str, redactor: &Redactor) -> PluginError {
    let m = msg.to_ascii_lowercase();
    let category = if m.contains("timed out")
        || m.contains("no speech detected")
        || m.contains("inactivity")
    {
        ErrorCategory::Timeout
    } else if m.contains("unauthorized")
        || m.contains("access token")
        || m.contains("not authorized")
    {
        ErrorCategory::Auth
    } else if m.contains("too many") || m.contains("rate limit") || m.contains("throttl") {
        ErrorCategory::RateLimited
    } else if m.contains("transcode")
        || m.contains("content-type")
        || m.contains("content type")
        || m.contains("not found")
        || m.contains("invalid")
        || m.contains("unsupported")
        || m.contains("not supported")
        || m.contains("needs to be at least")
    {
        ErrorCategory::Config
    } else if m.contains("internal") || m.contains("unavailable") || m.contains("try again") {
        ErrorCategory::Transient
    } else {
        ErrorCategory::Permanent
    };
    errors::make(
        category,
        format!(
            "{CTX}: service error: {}",
            errors::excerpt(msg.as_bytes(), errors::BODY_EXCERPT_LIMIT)
        ),
        None,
        redactor,
    )
}

/// IBM's meanings for what the kit derives from transport failures: a 400 at the upgrade is a
/// bad parameter (Config; the kit says Permanent), and 1007/1009 closes are about the audio or
/// frame size we sent (Config).
pub fn refine(e: PluginError) -> PluginError {
    let m = common::message(&e);
    if matches!(e, PluginError::Permanent(_))
        && (m.contains("handshake: HTTP 400")
            || m.contains("handshake: HTTP 406")
            || m.contains("handshake: HTTP 415")
            || m.contains("code 1007")
            || m.contains("code 1009"))
    {
        return PluginError::Config(m.to_owned());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_categories() {
        let r = Redactor::new();
        let cat = |m: &str| service_error(m, &r).category();
        assert_eq!(cat("Session timed out."), ErrorCategory::Timeout);
        assert_eq!(cat("No speech detected for 30s."), ErrorCategory::Timeout);
        assert_eq!(
            cat("Unable to transcode data stream audio/wav -> audio/x-float-array"),
            ErrorCategory::Config
        );
        assert_eq!(cat("Model en-XX_Foo not found"), ErrorCategory::Config);
        assert_eq!(cat("Internal server error"), ErrorCategory::Transient);
        assert_eq!(cat("something else"), ErrorCategory::Permanent);
        let e = refine(PluginError::Permanent(
            "ibm stt: handshake: HTTP 400 Bad Request".into(),
        ));
        assert!(matches!(e, PluginError::Config(_)));
        let e = refine(PluginError::Transient(
            "ibm stt: closed with code 1011".into(),
        ));
        assert!(matches!(e, PluginError::Transient(_)));
    }
}
