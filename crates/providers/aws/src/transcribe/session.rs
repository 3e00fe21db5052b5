//! One streaming session: presigned WebSocket connections carrying event-stream messages.
//!
//! # Wire (Transcribe Developer Guide, `websocket.md`)
//!
//! - C→S: one binary frame per `AudioEvent` message (headers `:message-type: event`,
//!   `:event-type: AudioEvent`, `:content-type: application/octet-stream`; raw PCM payload).
//!   Over WebSocket the messages are not wrapped in signed envelopes: the presigned URL is the
//!   authentication. "To end the audio data stream, send an empty audio chunk in an
//!   event-stream-encoded message."
//! - S→C: `TranscriptEvent` messages (JSON payload), or on failure one `exception` message
//!   (`:exception-type`) followed by a close frame.
//!
//! # Life cycle
//!
//! - Audio is forwarded as it arrives (split into `AudioEvent`s of at most `max_chunk_ms`;
//!   empty chunks are never sent, since an empty `AudioEvent` ends the stream).
//! - `Finalize`: Transcribe has no flush message, so the stream is ended (empty `AudioEvent`);
//!   the service sends the last finals and closes. Audio arriving meanwhile is held (bounded by
//!   `max_pending_ms`) and opens a new connection (a freshly presigned URL) once the old one
//!   closed or `finalize_timeout` passed. Result times of a later connection are shifted by the
//!   audio sent before it, so they stay relative to the session's first byte.
//! - Input closed: the stream is ended the same way and drained for at most `drain_timeout`,
//!   then the socket is closed with 1000.
//! - An exception message ends the session with its category (kit `aws::classify`:
//!   BadRequestException → Config, LimitExceededException → RateLimited,
//!   InternalFailureException / ServiceUnavailableException → Transient,
//!   UnrecognizedClientException → Auth; ConflictException → Transient here: the session id was
//!   reused, and a new stream without it may succeed). A close or a reset while audio is owed
//!   ends it with the kit's close-code category, and so does any end after the end of stream
//!   but the service's normal close (its last finals may be lost; see `on_closed`). Malformed
//!   frames (bad CRC, bad JSON, unknown events) are logged and skipped; a bad frame also
//!   yields a non-fatal error event.
//! - `SpeechStarted` is emitted when a new result id first appears (a segment began).

use super::messages;
use super::settings::Settings;
use crate::auth;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use waav_plugin_api::{ErrorCategory, PluginError, SttEvent, SttInput, SttIo};
use waav_provider_kit::aws::{self, AwsSigner, EventStreamDecoder, ServerMessage};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsConnection};

/// Names the provider in messages.
pub const CONTEXT: &str = "aws transcribe";
/// How long the closing handshake may take at the end of a session.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The parts of a session fixed at connect.
#[derive(Debug)]
pub struct Params {
    /// Settings of the section.
    pub settings: Settings,
    /// The signer (service `transcribe`).
    pub signer: AwsSigner,
    /// The URL to presign for each connection.
    pub url: String,
    /// The socket settings (the URL is replaced on each dial).
    pub ws: WsConfig,
    /// Audio bytes per second.
    pub bytes_per_sec: u64,
    /// The session asked for punctuation.
    pub punctuation: bool,
}

/// Presigns the URL and dials.
pub async fn dial(p: &Params) -> Result<WsConnection, PluginError> {
    let url = p
        .signer
        .presign_url("GET", &p.url, p.settings.url_expiry, auth::now())?;
    let mut cfg = p.ws.clone();
    cfg.url = url;
    let conn = ws::connect(&cfg).await?;
    let h = &conn.info().response_headers;
    let id = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    tracing::debug!(
        session_id = id("x-amzn-sessionid"),
        request_id = id("x-amzn-requestid"),
        "aws transcribe: stream open"
    );
    Ok(conn)
}

/// End the session quietly: the host stopped listening, or the drain is over.
struct Stop;

/// What woke the loop.
enum Wake {
    Socket(Result<Option<Message>, PluginError>),
    Input(Option<SttInput>),
    Deadline,
}

/// A running session.
pub struct Session {
    p: Params,
    conn: Option<WsConnection>,
    /// The end of stream was sent on `conn`: the deadline for its close.
    ending: Option<Instant>,
    /// The input closed.
    closing: bool,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    max_pending_bytes: usize,
    dropped_reported: bool,
    max_chunk: usize,
    /// Seconds of audio sent on earlier connections.
    offset: f64,
    /// Audio bytes sent on `conn`.
    conn_bytes: u64,
    /// The result id of the segment in progress.
    segment: Option<String>,
    input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    redactor: Redactor,
}

impl Session {
    /// A session on the first connection.
    pub fn new(p: Params, conn: WsConnection, io: SttIo) -> Self {
        let max_pending_bytes = usize::try_from(p.settings.max_pending_ms * p.bytes_per_sec / 1000)
            .unwrap_or(usize::MAX);
        // Whole samples: an even number of bytes.
        let max_chunk = ((p.bytes_per_sec * p.settings.max_chunk_ms / 1000) as usize & !1).max(2);
        let mut redactor = p.ws.redactor();
        redactor.extend(p.signer.redactor());
        Self {
            p,
            conn: Some(conn),
            ending: None,
            closing: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_pending_bytes,
            dropped_reported: false,
            max_chunk,
            offset: 0.0,
            conn_bytes: 0,
            segment: None,
            input: io.input,
            events: io.events,
            redactor,
        }
    }

    /// The session task.
    pub async fn run(mut self) -> Result<(), PluginError> {
        let result = match self.drive().await {
            Ok(Ok(())) | Ok(Err(Stop)) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(mut conn) = self.conn.take() {
            if conn.close(CloseCode::Normal, "").await.is_ok() {
                let handshake = async { while let Ok(Some(_)) = conn.recv().await {} };
                let _ = tokio::time::timeout(CLOSE_WAIT, handshake).await;
            }
        }
        result
    }

    async fn drive(&mut self) -> Result<Result<(), Stop>, PluginError> {
        loop {
            let wake = {
                let conn = &mut self.conn;
                let input = &mut self.input;
                let socket = async {
                    match conn.as_mut() {
                        Some(c) => c.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let deadline = self.ending;
                let far = Instant::now() + Duration::from_secs(86_400);
                tokio::select! {
                    m = socket => Wake::Socket(m),
                    i = input.recv(), if !self.closing => Wake::Input(i),
                    () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Wake::Deadline,
                }
            };
            let step = match wake {
                Wake::Socket(Ok(Some(m))) => self.on_message(m).await?,
                Wake::Socket(Ok(None)) => self.on_closed(None).await?,
                Wake::Socket(Err(e)) => self.on_closed(Some(e)).await?,
                Wake::Input(Some(SttInput::Audio(b))) => {
                    if let Err(e) = self.on_audio(b).await {
                        return Err(self.explain(e).await);
                    }
                    Ok(())
                }
                Wake::Input(Some(SttInput::Finalize)) => {
                    let t = self.p.settings.finalize_timeout;
                    if let Err(e) = self.end_stream(t).await {
                        return Err(self.explain(e).await);
                    }
                    Ok(())
                }
                // VAD boundaries: Transcribe segments by itself.
                Wake::Input(Some(_)) => Ok(()),
                Wake::Input(None) => {
                    self.closing = true;
                    let t = self.p.settings.drain_timeout;
                    if self.conn.is_none() {
                        return Ok(Ok(()));
                    }
                    match self.ending {
                        None => self.end_stream(t).await?,
                        // Already ending after a finalize: keep the earlier deadline if sooner.
                        Some(d) => self.ending = Some(d.min(Instant::now() + t)),
                    }
                    Ok(())
                }
                Wake::Deadline => self.on_deadline().await?,
            };
            if step.is_err() {
                return Ok(step);
            }
            if self.closing && self.conn.is_none() {
                return Ok(Ok(()));
            }
        }
    }

    /// A send failed: the service may have said why just before closing (an exception
    /// message, then a close frame). Reads what is queued, briefly, and returns the
    /// exception's error if one is there, else `e`.
    async fn explain(&mut self, e: PluginError) -> PluginError {
        let Some(conn) = self.conn.as_mut() else {
            return e;
        };
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut decoder = EventStreamDecoder::new();
        while let Ok(Ok(Some(Message::Binary(b)))) =
            tokio::time::timeout_at(deadline, conn.recv()).await
        {
            decoder.push(&b);
            while let Ok(Some(m)) = decoder.next_message() {
                if let ServerMessage::Exception(x) | ServerMessage::Error(x) =
                    aws::classify(&m, &self.redactor)
                {
                    return refine(x, &m);
                }
            }
        }
        e
    }

    async fn emit(&self, ev: SttEvent) -> Result<(), Stop> {
        self.events.send(ev).await.map_err(|_| Stop)
    }

    /// Sends audio on the current connection (dialling one if there is none), in
    /// `AudioEvent`s of at most `max_chunk` bytes.
    async fn send_audio(&mut self, mut audio: Bytes) -> Result<(), PluginError> {
        if audio.is_empty() {
            return Ok(()); // an empty AudioEvent would end the stream
        }
        if self.conn.is_none() {
            self.conn = Some(dial(&self.p).await?);
            self.conn_bytes = 0;
        }
        let conn = self.conn.as_ref().expect("dialled above");
        while !audio.is_empty() {
            let piece = audio.split_to(audio.len().min(self.max_chunk));
            let n = piece.len() as u64;
            let frame = aws::encode(&aws::audio_event(piece))?;
            conn.send(Message::Binary(frame)).await?;
            self.conn_bytes += n;
        }
        Ok(())
    }

    async fn on_audio(&mut self, audio: Bytes) -> Result<(), PluginError> {
        if self.ending.is_none() {
            return self.send_audio(audio).await;
        }
        // The stream is ending: hold the audio for the next one.
        if self.pending_bytes + audio.len() > self.max_pending_bytes {
            if !self.dropped_reported {
                self.dropped_reported = true;
                let e = PluginError::Transient(format!(
                    "{CONTEXT}: audio dropped while the finalized stream was ending"
                ));
                let _ = self.events.try_send(SttEvent::Error(e));
            }
            return Ok(());
        }
        self.pending_bytes += audio.len();
        self.pending.push_back(audio);
        Ok(())
    }

    /// Sends the end of stream (an empty `AudioEvent`) and waits at most `wait` for the close.
    async fn end_stream(&mut self, wait: Duration) -> Result<(), PluginError> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(()); // nothing sent since the last end
        };
        if self.ending.is_some() {
            return Ok(());
        }
        let frame = aws::encode(&aws::audio_event(Bytes::new()))?;
        conn.send(Message::Binary(frame)).await?;
        self.ending = Some(Instant::now() + wait);
        Ok(())
    }

    /// The current connection is over (after an end of stream): account for its audio and
    /// carry on with the held audio, if any.
    async fn next_stream(&mut self) -> Result<(), PluginError> {
        self.conn = None;
        self.ending = None;
        self.segment = None;
        self.offset += self.conn_bytes as f64 / self.p.bytes_per_sec.max(1) as f64;
        self.conn_bytes = 0;
        self.dropped_reported = false;
        self.pending_bytes = 0;
        let held: Vec<Bytes> = self.pending.drain(..).collect();
        let had = !held.is_empty();
        for b in held {
            self.send_audio(b).await?;
        }
        if had && self.closing {
            let t = self.p.settings.drain_timeout;
            self.end_stream(t).await?;
        }
        Ok(())
    }

    /// The socket ended: `None` for the service's normal close, else the kit's error for it.
    ///
    /// After the end of stream only the normal close is the stream's completion: for a
    /// completed stream "the server sends the remaining finals and then ends" the stream
    /// normally (STT_PROTOCOLS.md §8, "Session end"; over WebSocket that is a close frame with
    /// 1000 or no code, while a failure comes as an exception message and then a close,
    /// `websocket.md` "Handling WebSocket streaming errors"). Nothing else tells that the
    /// last finals were all sent, so any other end (a 1011 or other error close, a dropped
    /// connection, the kit's idle timeout when pings go unanswered) may have lost them: it
    /// ends the session with that error (1011 and a drop are Transient, unanswered pings
    /// Timeout), as it does while audio is owed. The host replays the audio since the last
    /// final it got into a new stream, so nothing is lost even when the finals had all come.
    async fn on_closed(
        &mut self,
        err: Option<PluginError>,
    ) -> Result<Result<(), Stop>, PluginError> {
        if self.ending.is_some() {
            if let Some(e) = err {
                return Err(errors::make(
                    e.category(),
                    format!("{CONTEXT}: the stream ended abnormally after its end of stream, its last results may be lost: {e}"),
                    None,
                    &self.redactor,
                ));
            }
            self.next_stream().await?;
            return Ok(Ok(()));
        }
        Err(err.unwrap_or_else(|| {
            errors::make(
                ErrorCategory::Transient,
                format!("{CONTEXT}: the service closed the stream while audio was owed"),
                None,
                &self.redactor,
            )
        }))
    }

    async fn on_deadline(&mut self) -> Result<Result<(), Stop>, PluginError> {
        if self.closing && self.pending.is_empty() {
            tracing::debug!("aws transcribe: drain timeout; closing");
            return Ok(Err(Stop)); // bounded drain: `run` closes the socket
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close(CloseCode::Normal, "").await;
        }
        let e = errors::timeout(
            &format!("{CONTEXT}: waiting for the stream to end"),
            self.p.settings.finalize_timeout,
            &self.redactor,
        );
        if let Err(g) = self.emit(SttEvent::Error(e)).await {
            return Ok(Err(g));
        }
        self.next_stream().await?;
        Ok(Ok(()))
    }

    async fn on_message(&mut self, msg: Message) -> Result<Result<(), Stop>, PluginError> {
        let data = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => {
                tracing::debug!(len = t.len(), "aws transcribe: text frame ignored");
                return Ok(Ok(()));
            }
            _ => return Ok(Ok(())),
        };
        // Over WebSocket every binary frame carries whole event-stream messages ("each frame
        // contains one data frame", `websocket.md`), so a frame is decoded on its own: a corrupt
        // or truncated one cannot swallow the frames after it.
        let mut rest = &data[..];
        while !rest.is_empty() {
            let total = match rest.get(..4) {
                Some(p) => u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
                None => 0,
            };
            if total < 16 || total > rest.len() {
                let e = errors::make(
                    ErrorCategory::Transient,
                    format!(
                        "{CONTEXT}: malformed event-stream frame ({} bytes) skipped",
                        rest.len()
                    ),
                    None,
                    &self.redactor,
                );
                tracing::debug!(error = %e, "aws transcribe: bad frame");
                return Ok(self.emit(SttEvent::Error(e)).await);
            }
            let (one, tail) = rest.split_at(total);
            rest = tail;
            let mut decoder = EventStreamDecoder::new();
            decoder.push(one);
            let m = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => {
                    let e = errors::make(
                        ErrorCategory::Transient,
                        format!("{CONTEXT}: corrupt event-stream message skipped (length or CRC)"),
                        None,
                        &self.redactor,
                    );
                    tracing::debug!(error = %e, "aws transcribe: bad message");
                    if let Err(g) = self.emit(SttEvent::Error(e)).await {
                        return Ok(Err(g));
                    }
                    continue;
                }
            };
            match aws::classify(&m, &self.redactor) {
                ServerMessage::Event {
                    event_type,
                    payload,
                } if event_type == "TranscriptEvent" => {
                    if let Err(g) = self.on_transcript(&payload).await {
                        return Ok(Err(g));
                    }
                }
                ServerMessage::Event { event_type, .. } => {
                    tracing::debug!(event_type, "aws transcribe: unknown event ignored");
                }
                ServerMessage::Exception(e) | ServerMessage::Error(e) => {
                    return Err(refine(e, &m));
                }
            }
        }
        Ok(Ok(()))
    }

    async fn on_transcript(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let Some(ev) = messages::parse(payload) else {
            tracing::debug!(
                payload = %errors::excerpt(payload, 120),
                "aws transcribe: malformed TranscriptEvent skipped"
            );
            return Ok(());
        };
        for r in &ev.transcript.results {
            let Some(t) = messages::to_transcript(r, self.offset, self.p.punctuation) else {
                continue;
            };
            let id = r.result_id.clone();
            if id.is_none() || self.segment != id {
                self.emit(SttEvent::SpeechStarted).await?;
                self.segment = id;
            }
            if t.is_final {
                self.segment = None;
            }
            self.emit(t.into()).await?;
        }
        Ok(())
    }
}

/// `ConflictException` (a reused session id ended this stream) is a passing failure for us;
/// the kit's table has it as Permanent.
fn refine(e: PluginError, m: &aws::Message) -> PluginError {
    let conflict = m.headers().iter().any(|h| {
        h.name().as_str() == ":exception-type"
            && h.value()
                .as_string()
                .is_ok_and(|v| v.as_str() == "ConflictException")
    });
    match e {
        PluginError::Permanent(msg) if conflict => PluginError::Transient(msg),
        other => other,
    }
}
