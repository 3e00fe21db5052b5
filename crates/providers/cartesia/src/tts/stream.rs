//! The streaming session: one `/tts/websocket` connection per session, one context per request.
//!
//! Protocol (TTS_PROTOCOLS.md §5; SDK 2.0.17 `tts/_websocket.py`, 4.0.1 `lib/_tts.py`):
//! - URL `wss://api.cartesia.ai/tts/websocket?api_key=<key>&cartesia_version=<date>` (the
//!   docs' "API conventions" for 2024-11-13: the key travels in the query on WebSockets;
//!   `cartesia_version` in the query takes precedence over the header). With
//!   `auth_scheme: bearer` the key goes in `Authorization: Bearer` on the upgrade instead.
//! - A generation request per text frame: the REST body plus `context_id` and `continue`. A
//!   request's whole text goes in one message with `continue: false`, which ends the context
//!   (the SDK's `push(text)` + `no_more_inputs()` — an empty transcript with `continue: false` —
//!   is the same thing in two messages). The host's `flush` flag needs nothing more: a context
//!   whose input has ended is generated at once.
//! - `{"context_id": X, "cancel": true}` stops a context; audio already sent is not recalled,
//!   so messages for contexts this session no longer knows are dropped.
//! - Contexts multiplex on one socket, so the next `prefetch` requests are sent while the head
//!   plays; their audio is held (bounded by `max_prefetch_bytes`) until they are the head, so
//!   events stay in request order.
//!
//! Context ids are `waav-<session nonce>-<request id>-<attempt>`: a request re-sent after a
//! dropped connection (only if none of its audio was emitted yet) or after its held audio
//! overflowed gets a new attempt number, so stale messages cannot be confused with new ones.

use super::messages::{self, ServerMessage};
use super::options::{self, AuthScheme, Settings};
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{
    ErrorCategory, PluginError, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsSessionConfig,
};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, CloseCode, Message, WsConfig, WsReceiver, WsSender};

/// How long the closing handshake may take when the session ends.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Not sent (yet, or again).
    Unsent,
    /// Sent; the vendor is generating.
    Sent,
    /// The vendor sent `done` (or the text was empty).
    Done,
    /// Failed; reported when it is the head.
    Failed(PluginError),
}

#[derive(Debug)]
struct Req {
    id: u64,
    text: String,
    state: State,
    attempt: u32,
    /// Some of its audio reached the host (it can no longer be re-sent).
    emitted: bool,
    /// Re-sent once after a lost connection already.
    retried: bool,
    /// Its held audio overflowed: send it again only once it is the head.
    deferred: bool,
    held: Vec<Bytes>,
    held_bytes: usize,
}

impl Req {
    fn new(r: SpeakRequest) -> Self {
        Self {
            id: r.id,
            text: r.text,
            state: State::Unsent,
            attempt: 0,
            emitted: false,
            retried: false,
            deferred: false,
            held: Vec::new(),
            held_bytes: 0,
        }
    }
}

struct Conn {
    tx: WsSender,
    rx: WsReceiver,
}

/// The host went away: end the session.
struct HostGone;

enum Wake {
    Input(Option<TtsInput>),
    Vendor(Result<Option<Message>, PluginError>),
    Timeout,
}

/// One session's state.
pub struct Session {
    s: Settings,
    cfg: TtsSessionConfig,
    ws: WsConfig,
    io: TtsIo,
    conn: Option<Conn>,
    queue: VecDeque<Req>,
    prefix: String,
    redactor: Redactor,
    deadline: Instant,
}

fn session_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("waav-{:x}", t ^ n.rotate_left(32))
}

impl Session {
    /// Connects (so a bad key or URL fails the session's start) and builds the session.
    pub async fn open(
        s: Settings,
        cfg: TtsSessionConfig,
        key: Secret,
        io: TtsIo,
    ) -> Result<Self, PluginError> {
        let mut ws = WsConfig::new(s.websocket_url(key.expose()))
            .secret(key.clone())
            .context("cartesia");
        if s.auth == AuthScheme::Bearer {
            ws = ws.header(
                "Authorization",
                Secret::new(format!("Bearer {}", key.expose())),
            );
        }
        ws.connect_timeout = s.connect_timeout;
        ws.max_message_size = s.max_message_bytes;
        let redactor = ws.redactor();
        let mut session = Self {
            deadline: Instant::now() + s.response_timeout,
            s,
            cfg,
            ws,
            io,
            conn: None,
            queue: VecDeque::new(),
            prefix: session_prefix(),
            redactor,
        };
        session.connect().await?;
        Ok(session)
    }

    async fn connect(&mut self) -> Result<(), PluginError> {
        let conn = ws::connect(&self.ws).await?;
        let (tx, rx) = conn.split();
        self.conn = Some(Conn { tx, rx });
        tracing::debug!(prefix = %self.prefix, "cartesia: websocket open");
        Ok(())
    }

    /// Runs until the host closes the input (or drops the events).
    pub async fn run(mut self) -> Result<(), PluginError> {
        loop {
            if self.advance().await.is_err() {
                break;
            }
            let in_flight = self.queue.iter().any(|r| r.state == State::Sent);
            let deadline = self.deadline;
            let wake = {
                let rx = self.conn.as_mut().map(|c| &mut c.rx);
                let has_conn = rx.is_some();
                let vendor = async move {
                    match rx {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    i = self.io.input.recv() => Wake::Input(i),
                    m = vendor, if has_conn => Wake::Vendor(m),
                    () = tokio::time::sleep_until(deadline), if in_flight => Wake::Timeout,
                }
            };
            let step = match wake {
                Wake::Input(None) => break,
                Wake::Input(Some(TtsInput::Speak(r))) => {
                    self.queue.push_back(Req::new(r));
                    Ok(())
                }
                Wake::Input(Some(TtsInput::Cancel { up_to })) => {
                    self.cancel(up_to).await;
                    Ok(())
                }
                Wake::Vendor(m) => self.on_vendor(m).await,
                Wake::Timeout => {
                    self.on_timeout().await;
                    Ok(())
                }
            };
            if step.is_err() {
                break;
            }
        }
        self.close().await;
        Ok(())
    }

    fn context_id(&self, r: &Req) -> String {
        format!("{}-{}-{}", self.prefix, r.id, r.attempt)
    }

    /// The queue index of the request a context belongs to, if it is still waiting for it.
    fn find(&self, context_id: Option<&str>) -> Option<usize> {
        let rest = context_id?.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let (id, attempt) = rest.split_once('-')?;
        let (id, attempt): (u64, u32) = (id.parse().ok()?, attempt.parse().ok()?);
        self.queue
            .iter()
            .position(|r| r.id == id && r.attempt == attempt && r.state == State::Sent)
    }

    async fn emit(&self, ev: TtsEvent) -> Result<(), HostGone> {
        self.io.events.send(ev).await.map_err(|_| HostGone)
    }

    /// Delivers what the head has (held audio, its end) and sends the requests in the window,
    /// until nothing changes.
    async fn advance(&mut self) -> Result<(), HostGone> {
        loop {
            while let Some(head) = self.queue.front_mut() {
                if !head.held.is_empty() {
                    let held = std::mem::take(&mut head.held);
                    head.held_bytes = 0;
                    head.emitted = true;
                    let id = head.id;
                    for data in held {
                        self.emit(TtsEvent::Audio { id, data }).await?;
                    }
                    continue;
                }
                match &head.state {
                    State::Done => {
                        let id = head.id;
                        self.queue.pop_front();
                        self.emit(TtsEvent::Done { id }).await?;
                    }
                    State::Failed(e) => {
                        let (id, error) = (head.id, e.clone());
                        self.queue.pop_front();
                        self.emit(TtsEvent::Error { id, error }).await?;
                    }
                    _ => break,
                }
            }
            if !self.send_window().await {
                return Ok(());
            }
        }
    }

    /// Sends unsent requests within the window; returns whether the head may have finished.
    async fn send_window(&mut self) -> bool {
        let window = (self.s.prefetch + 1).min(self.queue.len());
        let mut head_finished = false;
        for i in 0..window {
            let r = &self.queue[i];
            if r.state != State::Unsent || (r.deferred && i > 0) {
                continue;
            }
            let outcome = if r.text.trim().is_empty() {
                // Nothing to say (Cartesia rejects an empty transcript).
                State::Done
            } else {
                match self.send_request(i).await {
                    Ok(()) => State::Sent,
                    Err(e) => State::Failed(e),
                }
            };
            if i == 0 && outcome != State::Sent {
                head_finished = true;
            }
            self.queue[i].state = outcome;
        }
        head_finished
    }

    fn generation(&self, r: &Req) -> Result<String, PluginError> {
        let mut body = options::generation_body(&self.s, &self.cfg, &r.text)?;
        body.insert("context_id".into(), self.context_id(r).into());
        body.insert("continue".into(), false.into());
        if self.s.add_timestamps {
            body.insert("add_timestamps".into(), true.into());
        }
        if let Some(ms) = self.s.max_buffer_delay_ms {
            body.insert("max_buffer_delay_ms".into(), ms.into());
        }
        Ok(Value::Object(body).to_string())
    }

    /// Sends request `i`, (re)connecting first if needed; one fresh connection is tried when
    /// sending on the old one fails.
    async fn send_request(&mut self, i: usize) -> Result<(), PluginError> {
        let text = self.generation(&self.queue[i])?;
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.connect().await?;
            }
            let tx = &self.conn.as_ref().expect("connected").tx;
            match tx.send_text(text.clone()).await {
                Ok(()) => {
                    self.deadline = Instant::now() + self.s.response_timeout;
                    return Ok(());
                }
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, "cartesia: send failed; reconnecting");
                    self.lose_connection(&e);
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    async fn send_cancel(&self, r: &Req) {
        if let Some(c) = &self.conn {
            let msg = serde_json::json!({"context_id": self.context_id(r), "cancel": true});
            if let Err(e) = c.tx.send_text(msg.to_string()).await {
                tracing::debug!(error = %e, "cartesia: cancel not sent");
            }
        }
    }

    async fn cancel(&mut self, up_to: u64) {
        let (gone, kept): (Vec<Req>, Vec<Req>) = self.queue.drain(..).partition(|r| r.id <= up_to);
        self.queue = kept.into();
        for r in gone.iter().filter(|r| r.state == State::Sent) {
            self.send_cancel(r).await;
        }
    }

    /// The connection is gone: in-flight requests none of whose audio was emitted are sent
    /// again (once); the others fail with `err`.
    fn lose_connection(&mut self, err: &PluginError) {
        self.conn = None;
        for r in self.queue.iter_mut().filter(|r| r.state == State::Sent) {
            if !r.emitted && !r.retried {
                r.retried = true;
                r.attempt += 1;
                r.held.clear();
                r.held_bytes = 0;
                r.state = State::Unsent;
            } else {
                r.state = State::Failed(err.clone());
            }
        }
    }

    async fn on_timeout(&mut self) {
        let e = errors::timeout(
            "cartesia: no message from the vendor",
            self.s.response_timeout,
            &self.redactor,
        );
        let sent: Vec<usize> = (0..self.queue.len())
            .filter(|&i| self.queue[i].state == State::Sent)
            .collect();
        for &i in &sent {
            self.send_cancel(&self.queue[i]).await;
            self.queue[i].state = State::Failed(e.clone());
        }
        // A wedged socket is not reused: the next request dials afresh.
        self.conn = None;
    }

    async fn on_vendor(&mut self, m: Result<Option<Message>, PluginError>) -> Result<(), HostGone> {
        let text = match m {
            Ok(Some(Message::Text(t))) => t,
            Ok(Some(Message::Binary(b))) => {
                tracing::debug!(bytes = b.len(), "cartesia: unexpected binary frame ignored");
                return Ok(());
            }
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {
                let e = errors::make(
                    ErrorCategory::Transient,
                    "cartesia: the server closed the connection",
                    None,
                    &self.redactor,
                );
                self.lose_connection(&e);
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "cartesia: connection lost");
                self.lose_connection(&e);
                return Ok(());
            }
        };
        let msg = match messages::parse(text.as_str(), &self.redactor) {
            Ok(m) => m,
            Err(why) => {
                tracing::debug!(%why, "cartesia: unparsable message ignored");
                return Ok(());
            }
        };
        match msg {
            ServerMessage::Chunk {
                context_id,
                audio,
                done,
            } => {
                if let Some(i) = self.find(context_id.as_deref()) {
                    self.deadline = Instant::now() + self.s.response_timeout;
                    self.on_audio(i, audio).await?;
                    if done {
                        self.queue[i].state = State::Done;
                    }
                }
            }
            ServerMessage::Done { context_id } => {
                if let Some(i) = self.find(context_id.as_deref()) {
                    self.deadline = Instant::now() + self.s.response_timeout;
                    self.queue[i].state = State::Done;
                }
            }
            ServerMessage::Timestamps {
                context_id,
                words,
                done,
            } => {
                if let Some(i) = self.find(context_id.as_deref()) {
                    self.deadline = Instant::now() + self.s.response_timeout;
                    // Word timings are not part of the contract yet: logged, not emitted.
                    tracing::trace!(id = self.queue[i].id, ?words, "cartesia: word timestamps");
                    if done {
                        self.queue[i].state = State::Done;
                    }
                }
            }
            ServerMessage::Error {
                context_id: Some(ctx),
                error,
            } => {
                if let Some(i) = self.find(Some(&ctx)) {
                    self.queue[i].state = State::Failed(error);
                } else {
                    tracing::debug!(%error, "cartesia: error for a finished context ignored");
                }
            }
            ServerMessage::Error {
                context_id: None,
                error,
            } => {
                // Not tied to a context: every in-flight request fails, the socket is dropped.
                tracing::debug!(%error, "cartesia: connection-level error");
                for r in self.queue.iter_mut().filter(|r| r.state == State::Sent) {
                    r.state = State::Failed(error.clone());
                }
                self.conn = None;
            }
            ServerMessage::Other {
                context_id,
                kind,
                done,
            } => {
                if let Some(i) = self.find(context_id.as_deref()) {
                    self.deadline = Instant::now() + self.s.response_timeout;
                    if done {
                        self.queue[i].state = State::Done;
                    }
                } else if kind.is_empty() {
                    tracing::debug!("cartesia: message without a type ignored");
                }
            }
        }
        Ok(())
    }

    async fn on_audio(&mut self, i: usize, audio: Bytes) -> Result<(), HostGone> {
        if audio.is_empty() {
            return Ok(());
        }
        if i == 0 {
            let id = self.queue[0].id;
            self.queue[0].emitted = true;
            self.emit(TtsEvent::Audio { id, data: audio }).await?;
            // Time spent waiting on the host is not the vendor's silence.
            self.deadline = Instant::now() + self.s.response_timeout;
            return Ok(());
        }
        let over = {
            let r = &mut self.queue[i];
            r.held_bytes += audio.len();
            r.held.push(audio);
            r.held_bytes > self.s.max_prefetch_bytes
        };
        if over {
            // Too much audio waiting behind the head: drop it and ask again when it is due.
            let r = &self.queue[i];
            tracing::debug!(
                id = r.id,
                bytes = r.held_bytes,
                "cartesia: prefetch overflow"
            );
            self.send_cancel(r).await;
            let r = &mut self.queue[i];
            r.held.clear();
            r.held_bytes = 0;
            r.attempt += 1;
            r.deferred = true;
            r.state = State::Unsent;
        }
        Ok(())
    }

    /// Ends the session: cancels what is in flight, closes the socket (bounded).
    async fn close(&mut self) {
        let sent: Vec<usize> = (0..self.queue.len())
            .filter(|&i| self.queue[i].state == State::Sent)
            .collect();
        for &i in &sent {
            self.send_cancel(&self.queue[i]).await;
        }
        if let Some(mut c) = self.conn.take() {
            let drain = async {
                if c.tx.close(CloseCode::Normal, "").await.is_ok() {
                    while let Ok(Some(_)) = c.rx.recv().await {}
                }
            };
            if tokio::time::timeout(CLOSE_WAIT, drain).await.is_err() {
                tracing::debug!("cartesia: closing handshake timed out; socket dropped");
            }
        }
    }
}
