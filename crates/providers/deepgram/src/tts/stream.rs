//! The streaming path: one speak WebSocket per session (`TTS_PROTOCOLS.md` §1 "WebSocket
//! protocol"; python SDK `speak/v1/socket_client.py`; docs tts-ws-flush, tts-ws-clear,
//! tts-ws-close).
//!
//! Each request's text goes out as `Speak`, followed by `Flush` when the request asks for it.
//! Deepgram answers a `Flush` with the audio of everything buffered and then `Flushed`, in order,
//! so requests are grouped by flush: the audio before a group's `Flushed` belongs to the group's
//! first request (the one the host is playing), and `Flushed` ends every request of the group,
//! in order. Several groups may be outstanding at once (the next sentence synthesises while the
//! previous one plays).
//!
//! `Cancel` drops cancelled requests not yet sent; when some were already sent, it sends `Clear`
//! (which drops Deepgram's whole buffer), discards audio until `Cleared`, and sends again the
//! requests the cancel did not cover. A connection that ends between requests (Deepgram closes
//! idle sockets) is redialled when the next request comes; one that ends before a request heard
//! any audio is retried once on a new socket. Nothing heard for `response_timeout` while audio
//! is owed fails the outstanding requests (Timeout) and drops the socket.

use super::messages::{self, Server};
use super::options::Settings;
use std::collections::VecDeque;
use tokio::time::Instant;
use waav_plugin_api::{ErrorCategory, PluginError, SpeakRequest, TtsEvent, TtsInput, TtsIo};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;
use waav_provider_kit::ws::{self, Message, WsConfig, WsReceiver, WsSender};

/// Maps a handshake refusal: a 400 on the upgrade is a query Deepgram refused (model, encoding,
/// sample rate): Config rather than the kit's Permanent.
pub fn refine(e: PluginError) -> PluginError {
    match e {
        PluginError::Permanent(m) if m.contains("HTTP 400") => PluginError::Config(m),
        other => other,
    }
}

/// Dials the speak socket.
pub async fn connect(cfg: &WsConfig) -> Result<(WsSender, WsReceiver), PluginError> {
    let conn = ws::connect(cfg).await.map_err(refine)?;
    if let Some(id) = conn
        .info()
        .response_headers
        .get("dg-request-id")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(request_id = id, "deepgram tts: stream open");
    }
    Ok(conn.split())
}

#[derive(Debug)]
struct Req {
    req: SpeakRequest,
    /// Audio was emitted for it (it cannot be retried).
    heard: bool,
    /// Already re-sent once after a lost connection.
    retried: bool,
}

impl Req {
    fn new(req: SpeakRequest) -> Self {
        Self {
            req,
            heard: false,
            retried: false,
        }
    }

    fn id(&self) -> u64 {
        self.req.id
    }
}

/// One session's state.
pub struct Session {
    settings: Settings,
    ws_cfg: WsConfig,
    redactor: Redactor,
    io: TtsIo,
    conn: Option<(WsSender, WsReceiver)>,
    /// Every id ≤ this is cancelled.
    cancelled_up_to: u64,
    /// Requests to send, in order (new ones, and ones to re-send after a Clear or a lost socket).
    backlog: VecDeque<Req>,
    /// Sent (`Speak`), not flushed yet.
    open: Vec<Req>,
    /// Flushed, awaiting `Flushed`, oldest first.
    groups: VecDeque<Vec<Req>>,
    /// A `Clear` is outstanding: audio is discarded and nothing is sent until `Cleared`.
    clearing: bool,
    /// Last time the vendor answered while something was owed.
    last_heard: Instant,
}

/// Why the loop stopped.
enum Stop {
    /// The host closed the input: close the socket gracefully.
    InputClosed,
    /// The host stopped reading events.
    HostGone,
}

impl Session {
    /// A session over an already open connection (`conn`, if any).
    pub fn new(
        settings: Settings,
        ws_cfg: WsConfig,
        io: TtsIo,
        conn: Option<(WsSender, WsReceiver)>,
    ) -> Self {
        let redactor = ws_cfg.redactor();
        Self {
            settings,
            ws_cfg,
            redactor,
            io,
            conn,
            cancelled_up_to: 0,
            backlog: VecDeque::new(),
            open: Vec::new(),
            groups: VecDeque::new(),
            clearing: false,
            last_heard: Instant::now(),
        }
    }

    /// Runs until the host closes the input (then closes the socket, bounded) or goes away.
    pub async fn run(mut self) -> Result<(), PluginError> {
        let stop = self.main_loop().await;
        if let Stop::InputClosed = stop {
            self.close().await;
        }
        Ok(())
    }

    async fn main_loop(&mut self) -> Stop {
        loop {
            if let Err(stop) = self.pump().await {
                return stop;
            }
            let owed = !self.groups.is_empty() || self.clearing;
            let deadline = self.last_heard + self.settings.response_timeout;
            let conn_open = self.conn.is_some();
            tokio::select! {
                biased;
                input = self.io.input.recv() => match input {
                    None => return Stop::InputClosed,
                    Some(TtsInput::Speak(r)) => {
                        if r.id > self.cancelled_up_to {
                            self.backlog.push_back(Req::new(r));
                        }
                    }
                    Some(TtsInput::Cancel { up_to }) => self.cancel(up_to).await,
                },
                msg = recv(&mut self.conn), if conn_open => {
                    if let Err(stop) = self.on_message(msg).await {
                        return stop;
                    }
                }
                () = tokio::time::sleep_until(deadline), if owed => {
                    let e = errors::timeout(
                        &format!("{}: no audio", super::rest::CONTEXT),
                        self.settings.response_timeout,
                        &self.redactor,
                    );
                    tracing::debug!("deepgram tts: vendor silent; dropping the socket");
                    self.conn = None;
                    self.clearing = false;
                    if let Err(stop) = self.fail_outstanding(e, false).await {
                        return stop;
                    }
                }
            }
        }
    }

    async fn emit(&self, ev: TtsEvent) -> Result<(), Stop> {
        self.io.events.send(ev).await.map_err(|_| Stop::HostGone)
    }

    /// Sends what the backlog holds, unless a Clear is outstanding.
    async fn pump(&mut self) -> Result<(), Stop> {
        while !self.clearing {
            let Some(r) = self.backlog.pop_front() else {
                return Ok(());
            };
            if r.id() <= self.cancelled_up_to {
                continue;
            }
            self.send_request(r).await?;
        }
        Ok(())
    }

    async fn send_request(&mut self, r: Req) -> Result<(), Stop> {
        if r.req.text.trim().is_empty() {
            // Nothing to say: it ends with what is ahead of it (no vendor round trip).
            if !self.open.is_empty() {
                let flush = r.req.flush;
                self.open.push(r);
                if flush {
                    return self.flush_open().await;
                }
            } else if let Some(last) = self.groups.back_mut() {
                last.push(r);
            } else {
                self.emit(TtsEvent::Done { id: r.id() }).await?;
            }
            return Ok(());
        }
        if self.conn.is_none() {
            match connect(&self.ws_cfg).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    return self
                        .emit(TtsEvent::Error {
                            id: r.id(),
                            error: e,
                        })
                        .await
                }
            }
        }
        let flush = r.req.flush;
        let speak = messages::speak(&r.req.text);
        self.open.push(r);
        if let Err(e) = self.send_text(speak).await {
            return self.lost(Some(e)).await;
        }
        if flush {
            self.flush_open().await?;
        }
        Ok(())
    }

    async fn send_text(&self, text: String) -> Result<(), PluginError> {
        match &self.conn {
            Some((tx, _)) => tx.send_text(text).await,
            None => Err(PluginError::Transient(format!(
                "{}: not connected",
                super::rest::CONTEXT
            ))),
        }
    }

    /// Sends `Flush` for the open requests, which become a group.
    async fn flush_open(&mut self) -> Result<(), Stop> {
        if self.open.iter().all(|r| r.req.text.trim().is_empty()) {
            // Only empty requests (nothing was sent): end them with what is ahead.
            let reqs = std::mem::take(&mut self.open);
            match self.groups.back_mut() {
                Some(last) => last.extend(reqs),
                None => {
                    for r in reqs {
                        self.emit(TtsEvent::Done { id: r.id() }).await?;
                    }
                }
            }
            return Ok(());
        }
        if self.groups.is_empty() {
            self.last_heard = Instant::now();
        }
        self.groups.push_back(std::mem::take(&mut self.open));
        if let Err(e) = self.send_text(messages::FLUSH.to_owned()).await {
            return self.lost(Some(e)).await;
        }
        Ok(())
    }

    async fn cancel(&mut self, up_to: u64) {
        self.cancelled_up_to = self.cancelled_up_to.max(up_to);
        self.backlog.retain(|r| r.req.id > up_to);
        let sent_cancelled = self
            .groups
            .iter()
            .flatten()
            .chain(self.open.iter())
            .any(|r| r.id() <= up_to);
        if !sent_cancelled {
            return;
        }
        // Clear drops Deepgram's whole buffer: what it held for later requests is sent again.
        let mut keep: Vec<Req> = self
            .groups
            .drain(..)
            .flatten()
            .chain(self.open.drain(..))
            .filter(|r| r.id() > up_to)
            .collect();
        for r in keep.drain(..).rev() {
            self.backlog.push_front(r);
        }
        if self.conn.is_some() {
            match self.send_text(messages::CLEAR.to_owned()).await {
                Ok(()) => {
                    self.clearing = true;
                    self.last_heard = Instant::now();
                }
                // A dead socket holds nothing: the next request dials a new one.
                Err(_) => self.conn = None,
            }
        }
    }

    async fn on_message(&mut self, msg: Result<Option<Message>, PluginError>) -> Result<(), Stop> {
        match msg {
            Ok(Some(Message::Binary(data))) => {
                if self.clearing {
                    return Ok(());
                }
                let target = match self.groups.front_mut() {
                    Some(g) => g.first_mut(),
                    None => self.open.first_mut(),
                };
                let Some(r) = target else {
                    tracing::debug!(bytes = data.len(), "deepgram tts: audio for no request");
                    return Ok(());
                };
                r.heard = true;
                let id = r.id();
                // The host paces us by not taking audio: time spent handing it over is not
                // vendor silence, so the clock restarts after the hand-over.
                self.emit(TtsEvent::Audio { id, data }).await?;
                self.last_heard = Instant::now();
                Ok(())
            }
            Ok(Some(Message::Text(t))) => match messages::parse_server(t.as_str()) {
                Server::Flushed { sequence_id } => {
                    if self.clearing {
                        // A flush from before the Clear: its requests were dropped.
                        return Ok(());
                    }
                    match self.groups.pop_front() {
                        Some(g) => {
                            for r in g {
                                self.emit(TtsEvent::Done { id: r.id() }).await?;
                            }
                        }
                        None => tracing::debug!(?sequence_id, "deepgram tts: stray Flushed"),
                    }
                    self.last_heard = Instant::now();
                    Ok(())
                }
                Server::Cleared { sequence_id } => {
                    tracing::debug!(?sequence_id, "deepgram tts: cleared");
                    self.clearing = false;
                    self.last_heard = Instant::now();
                    Ok(())
                }
                Server::Metadata {
                    request_id,
                    model_name,
                } => {
                    tracing::debug!(%request_id, %model_name, "deepgram tts: metadata");
                    Ok(())
                }
                Server::Warning { code, description } => {
                    // E.g. the flush limit (20 per 60 s, docs tts-ws-flush): Deepgram then
                    // ignores the Flush, and the request it ended fails by `response_timeout`.
                    tracing::warn!(%code, %description, "deepgram tts: warning");
                    Ok(())
                }
                Server::Other(kind) => {
                    tracing::debug!(%kind, "deepgram tts: ignored server message");
                    Ok(())
                }
            },
            Ok(Some(_)) => Ok(()),
            Ok(None) => self.lost(None).await,
            Err(e) => self.lost(Some(e)).await,
        }
    }

    /// The socket ended (`err` is `None` for a normal close).
    async fn lost(&mut self, err: Option<PluginError>) -> Result<(), Stop> {
        self.conn = None;
        self.clearing = false;
        let retryable = err
            .as_ref()
            .is_none_or(|e| e.category() == ErrorCategory::Transient);
        let e = err.unwrap_or_else(|| {
            errors::make(
                ErrorCategory::Transient,
                format!(
                    "{}: the socket closed before the audio ended",
                    super::rest::CONTEXT
                ),
                None,
                &self.redactor,
            )
        });
        if self.groups.is_empty() && self.open.is_empty() {
            tracing::debug!(error = %e, "deepgram tts: socket ended between requests");
            return Ok(());
        }
        self.fail_outstanding(e, retryable).await
    }

    /// Fails what was sent, in order; with `retry`, a group none of whose requests was heard
    /// and none retried before is sent again instead (on a new socket).
    async fn fail_outstanding(&mut self, e: PluginError, retry: bool) -> Result<(), Stop> {
        let mut groups: Vec<Vec<Req>> = self.groups.drain(..).collect();
        if !self.open.is_empty() {
            groups.push(std::mem::take(&mut self.open));
        }
        let mut again = Vec::new();
        let mut failing = true;
        for g in groups {
            // Once one group is re-sent, every later one must be too (order).
            let fresh = g.iter().all(|r| !r.heard && !r.retried);
            if retry && fresh {
                failing = false;
            }
            if failing {
                for r in g {
                    self.emit(TtsEvent::Error {
                        id: r.id(),
                        error: e.clone(),
                    })
                    .await?;
                }
            } else {
                again.extend(g.into_iter().map(|mut r| {
                    r.retried = true;
                    r
                }));
            }
        }
        for r in again.into_iter().rev() {
            self.backlog.push_front(r);
        }
        Ok(())
    }

    /// Sends `Close` and waits (bounded) for the server to close.
    async fn close(&mut self) {
        let Some((tx, mut rx)) = self.conn.take() else {
            return;
        };
        if tx.send_text(messages::CLOSE.to_owned()).await.is_err() {
            return;
        }
        let drain = async { while let Ok(Some(_)) = rx.recv().await {} };
        if tokio::time::timeout(self.settings.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::debug!("deepgram tts: no close after Close; dropping the socket");
        }
    }
}

async fn recv(conn: &mut Option<(WsSender, WsReceiver)>) -> Result<Option<Message>, PluginError> {
    match conn {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
