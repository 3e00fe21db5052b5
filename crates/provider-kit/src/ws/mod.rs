//! A WebSocket client for streaming providers.
//!
//! [`connect`] dials TCP with `TCP_NODELAY` (Nagle plus delayed ACK adds tens of milliseconds to
//! small audio frames), does TLS with rustls (or plain `ws://` for tests and self-hosted engines),
//! and sizes tungstenite's buffers from [`WsConfig`] (its defaults are 128 KiB each way per socket).
//! A rejected handshake becomes a categorised [`PluginError`] via [`crate::errors::from_http`].
//! A handshake that failed retryably (refused, reset, timed out, a 5xx or short-`retry-after`
//! 429 upgrade response) is retried within a budget ([`crate::retry`]); 401/403 and other
//! Auth/Config/Permanent refusals are not. [`connect_once`] makes exactly one attempt.
//!
//! The connection is driven by one small task that sends keepalive pings, answers the server's
//! pings, enforces the idle timeout and maps close codes, so a provider only calls
//! [`WsConnection::send`] and [`WsConnection::recv`] (or [`WsConnection::split`] them across tasks).

mod reconnect;
mod replay;

pub use reconnect::Reconnector;
pub use replay::ReplayBuffer;
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::Message;

use crate::errors::{self, CloseCodeOverrides};
use crate::redact::Redactor;
use crate::retry::{RetryBudget, RetryConfig};
use futures::{SinkExt, StreamExt};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error as WsError};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use waav_plugin_api::{ErrorCategory, PluginError, Secret};

/// A header value that may be a secret (an API key); secrets are marked sensitive on the wire
/// request and never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum MaybeSecret {
    /// An ordinary value.
    Plain(String),
    /// A credential.
    Secret(Secret),
}

impl MaybeSecret {
    fn expose(&self) -> &str {
        match self {
            Self::Plain(s) => s,
            Self::Secret(s) => s.expose(),
        }
    }
}

impl fmt::Debug for MaybeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(s) => fmt::Debug::fmt(s, f),
            Self::Secret(s) => fmt::Debug::fmt(s, f),
        }
    }
}

impl From<&str> for MaybeSecret {
    fn from(s: &str) -> Self {
        Self::Plain(s.to_owned())
    }
}

impl From<String> for MaybeSecret {
    fn from(s: String) -> Self {
        Self::Plain(s)
    }
}

impl From<Secret> for MaybeSecret {
    fn from(s: Secret) -> Self {
        Self::Secret(s)
    }
}

/// How to open and run one provider socket.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// `wss://…` or `ws://…`. A key in the query string must also be listed in `secrets`.
    pub url: String,
    /// Extra handshake headers (`Authorization`, `xi-api-key`, `Sec-WebSocket-Protocol`, …).
    pub headers: Vec<(String, MaybeSecret)>,
    /// Secrets that are not headers (e.g. a key inside `url`), for redaction.
    pub secrets: Vec<Secret>,
    /// Deadline for TCP + TLS + handshake, per attempt.
    pub connect_timeout: Duration,
    /// Handshake retries (see [`crate::retry`]).
    pub retry: RetryConfig,
    /// The budget those retries draw on; `None`: the one shared by every connection with this
    /// `context` in the process ([`crate::retry::shared_budget`]).
    pub retry_budget: Option<RetryBudget>,
    /// tungstenite's read buffer (default 4 KiB instead of 128 KiB).
    pub read_buffer_size: usize,
    /// tungstenite's write buffer before a flush (default 4 KiB instead of 128 KiB).
    pub write_buffer_size: usize,
    /// Largest incoming message accepted (default 16 MiB).
    pub max_message_size: usize,
    /// Send a ping this often (`None`: no keepalive).
    pub ping_interval: Option<Duration>,
    /// Fail with [`PluginError::Timeout`] if nothing (data, ping or pong) arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// Vendor close codes the provider knows, checked before [`errors::close_category`]'s table.
    pub close_codes: Vec<(u16, ErrorCategory)>,
    /// Outgoing messages queued before [`WsConnection::send`] waits (backpressure).
    pub send_queue: usize,
    /// Incoming messages queued for [`WsConnection::recv`]. When it is full the driver stops
    /// reading the socket (TCP pushes back on the vendor) but keeps sending, so a provider that
    /// sends and receives in one loop cannot deadlock, and a flooding vendor costs bounded memory.
    pub recv_queue: usize,
    /// Names this provider in error messages (`"deepgram"`).
    pub context: String,
}

impl WsConfig {
    /// A config for `url` with small buffers, a 10 s connect timeout, default handshake retries,
    /// no keepalive, no idle timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            secrets: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            retry_budget: None,
            read_buffer_size: 4 * 1024,
            write_buffer_size: 4 * 1024,
            max_message_size: 16 << 20,
            ping_interval: None,
            idle_timeout: None,
            close_codes: Vec::new(),
            send_queue: 64,
            recv_queue: 256,
            context: "websocket".to_owned(),
        }
    }

    /// Adds a handshake header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<MaybeSecret>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Registers a secret that appears outside the headers (for redaction).
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Sets the name used in error messages.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = context.into();
        self
    }

    /// A redactor knowing every secret of this config.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::from_secrets(&self.secrets);
        for (_, v) in &self.headers {
            if let MaybeSecret::Secret(s) = v {
                r.add(s);
            }
        }
        r
    }
}

/// Facts about an open connection (for diagnostics and tests).
#[derive(Debug, Clone)]
pub struct WsInfo {
    /// The handshake response status (101).
    pub status: http::StatusCode,
    /// The handshake response headers (vendors put request ids here).
    pub response_headers: http::HeaderMap,
    /// Whether `TCP_NODELAY` is set on the socket.
    pub nodelay: bool,
    /// The peer address.
    pub peer_addr: Option<SocketAddr>,
    /// The local address.
    pub local_addr: Option<SocketAddr>,
    /// tungstenite's read buffer size in effect.
    pub read_buffer_size: usize,
    /// tungstenite's write buffer size in effect.
    pub write_buffer_size: usize,
    /// The incoming message size limit in effect.
    pub max_message_size: Option<usize>,
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Queued outgoing messages written together before one flush (bounded, so a sender that
/// never pauses cannot keep the socket from being read).
const MAX_BATCH: usize = 32;

/// Opens a connection: TCP (`TCP_NODELAY`), TLS for `wss://`, the handshake with `cfg.headers`,
/// each attempt within `cfg.connect_timeout`; a retryable failure is retried per `cfg.retry`
/// within the budget, and the last attempt's error is returned.
pub async fn connect(cfg: &WsConfig) -> Result<WsConnection, PluginError> {
    use tower::ServiceExt;
    let budget = cfg
        .retry_budget
        .clone()
        .unwrap_or_else(|| crate::retry::shared_budget(&cfg.context, &cfg.retry));
    let attempt = tower::service_fn(move |()| connect_once(cfg));
    tower::retry::Retry::new(budget.policy("ws"), attempt)
        .oneshot(())
        .await
}

/// [`connect`] without retries: one attempt within `cfg.connect_timeout`.
pub async fn connect_once(cfg: &WsConfig) -> Result<WsConnection, PluginError> {
    let redactor = cfg.redactor();
    let ctx = cfg.context.as_str();
    let fut = open(cfg, &redactor);
    let (ws, info) = match tokio::time::timeout(cfg.connect_timeout, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(errors::timeout(
                &format!("{ctx}: connect"),
                cfg.connect_timeout,
                &redactor,
            ))
        }
    };
    Ok(WsConnection::start(ws, info, cfg, redactor))
}

async fn open(cfg: &WsConfig, redactor: &Redactor) -> Result<(Stream, WsInfo), PluginError> {
    let ctx = cfg.context.as_str();
    let config_err = |m: String| errors::make(ErrorCategory::Config, m, None, redactor);
    let mut request = cfg
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| config_err(format!("{ctx}: invalid url {}: {e}", cfg.url)))?;
    for (name, value) in &cfg.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| config_err(format!("{ctx}: invalid header name {name}: {e}")))?;
        let mut v = http::HeaderValue::from_str(value.expose())
            .map_err(|_| config_err(format!("{ctx}: invalid value for header {name}")))?;
        v.set_sensitive(matches!(value, MaybeSecret::Secret(_)));
        request.headers_mut().append(name, v);
    }
    let uri = request.uri();
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        other => return Err(config_err(format!("{ctx}: unsupported scheme {other:?}"))),
    };
    let host = uri
        .host()
        .ok_or_else(|| config_err(format!("{ctx}: url has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| errors::from_io(&e, &format!("{ctx}: connect {host}:{port}"), redactor))?;
    tcp.set_nodelay(true)
        .map_err(|e| errors::from_io(&e, &format!("{ctx}: TCP_NODELAY"), redactor))?;
    let nodelay = tcp.nodelay().unwrap_or(false);
    let (peer_addr, local_addr) = (tcp.peer_addr().ok(), tcp.local_addr().ok());

    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        // Backpressure point: at most a few buffers' worth queued in tungstenite itself.
        .max_write_buffer_size(cfg.write_buffer_size.saturating_mul(4).max(64 * 1024))
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    let connector = if tls {
        Connector::Rustls(crate::tls::http1_config())
    } else {
        Connector::Plain
    };
    let (ws, response) = tokio_tungstenite::client_async_tls_with_config(
        request,
        tcp,
        Some(ws_config),
        Some(connector),
    )
    .await
    .map_err(|e| map_ws_error(e, ctx, &cfg.close_codes, redactor))?;
    let c = ws.get_config();
    let info = WsInfo {
        status: response.status(),
        response_headers: response.headers().clone(),
        nodelay,
        peer_addr,
        local_addr,
        read_buffer_size: c.read_buffer_size,
        write_buffer_size: c.write_buffer_size,
        max_message_size: c.max_message_size,
    };
    Ok((ws, info))
}

/// Maps a tungstenite error (including a rejected handshake) to a [`PluginError`].
pub fn map_ws_error(
    err: WsError,
    context: &str,
    close_codes: &CloseCodeOverrides,
    redactor: &Redactor,
) -> PluginError {
    use tungstenite::error::ProtocolError;
    let make =
        |c: ErrorCategory, m: String| errors::make(c, format!("{context}: {m}"), None, redactor);
    match err {
        WsError::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            errors::from_http(
                resp.status(),
                resp.headers(),
                body,
                &format!("{context}: handshake"),
                redactor,
            )
        }
        WsError::Io(e) => errors::from_io(&e, context, redactor),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            make(ErrorCategory::Transient, "connection closed".into())
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            make(ErrorCategory::Transient, "connection reset".into())
        }
        WsError::Capacity(e) => make(ErrorCategory::Permanent, e.to_string()),
        WsError::Url(e) => make(ErrorCategory::Config, e.to_string()),
        WsError::HttpFormat(e) => make(ErrorCategory::Config, e.to_string()),
        WsError::WriteBufferFull(_) => make(ErrorCategory::Transient, "write buffer full".into()),
        WsError::Tls(e) => {
            let m = errors::chain(&e);
            // A certificate the roots reject will not start working on retry.
            let c = if m.contains("certificate") {
                ErrorCategory::Config
            } else {
                ErrorCategory::Transient
            };
            make(c, format!("tls: {m}"))
        }
        other => {
            let _ = close_codes;
            make(ErrorCategory::Permanent, other.to_string())
        }
    }
}

enum Command {
    Send(Message),
    Close(Option<CloseFrame>),
}

// The first fatal error of a connection, shared so that both halves report it.
type Fatal = Arc<Mutex<Option<PluginError>>>;

/// An open connection. Dropping it (both halves) closes the socket.
#[derive(Debug)]
pub struct WsConnection {
    sender: WsSender,
    receiver: WsReceiver,
}

/// The sending half of a [`WsConnection`]; cheap to clone.
#[derive(Clone)]
pub struct WsSender {
    tx: mpsc::Sender<Command>,
    fatal: Fatal,
    info: Arc<WsInfo>,
    redactor: Redactor,
    context: Arc<str>,
}

/// The receiving half of a [`WsConnection`].
pub struct WsReceiver {
    // Unbounded on purpose: the driver must never wait on a slow reader while the reader waits
    // on a full send queue (one select loop doing both would deadlock). Incoming messages are
    // small and bounded by `max_message_size`.
    rx: mpsc::Receiver<Result<Message, PluginError>>,
    done: bool,
    info: Arc<WsInfo>,
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("context", &self.context)
            .finish()
    }
}

impl fmt::Debug for WsReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReceiver")
            .field("done", &self.done)
            .finish()
    }
}

impl WsConnection {
    fn start(ws: Stream, info: WsInfo, cfg: &WsConfig, redactor: Redactor) -> Self {
        let info = Arc::new(info);
        let (tx, cmd_rx) = mpsc::channel(cfg.send_queue.max(1));
        let (in_tx, rx) = mpsc::channel(cfg.recv_queue.max(1));
        let fatal: Fatal = Arc::default();
        let context: Arc<str> = cfg.context.as_str().into();
        let driver = Driver {
            ws,
            cmd_rx,
            in_tx,
            fatal: fatal.clone(),
            ping_interval: cfg.ping_interval,
            idle_timeout: cfg.idle_timeout,
            close_codes: cfg.close_codes.clone(),
            redactor: redactor.clone(),
            context: context.clone(),
        };
        tokio::spawn(driver.run());
        Self {
            sender: WsSender {
                tx,
                fatal,
                info: info.clone(),
                redactor,
                context,
            },
            receiver: WsReceiver {
                rx,
                done: false,
                info,
            },
        }
    }

    /// Facts about the connection.
    pub fn info(&self) -> &WsInfo {
        &self.sender.info
    }

    /// Queues a message; see [`WsSender::send`].
    pub async fn send(&self, msg: Message) -> Result<(), PluginError> {
        self.sender.send(msg).await
    }

    /// The next text or binary message; see [`WsReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Message>, PluginError> {
        self.receiver.recv().await
    }

    /// Sends a close frame; see [`WsSender::close`].
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), PluginError> {
        self.sender.close(code, reason).await
    }

    /// The two halves, for a sending task and a receiving task.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.sender, self.receiver)
    }
}

impl WsSender {
    /// Queues `msg` for sending, waiting while the send queue is full. Fails with the
    /// connection's error once it has failed or closed.
    pub async fn send(&self, msg: Message) -> Result<(), PluginError> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        self.tx
            .send(Command::Send(msg))
            .await
            .map_err(|_| self.closed_error())
    }

    /// Queues a binary message.
    pub async fn send_binary(&self, data: impl Into<bytes::Bytes>) -> Result<(), PluginError> {
        self.send(Message::Binary(data.into())).await
    }

    /// Queues a text message.
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), PluginError> {
        self.send(Message::Text(text.into().into())).await
    }

    /// Sends a close frame; the receiver then yields the remaining messages and `Ok(None)`.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), PluginError> {
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        self.tx
            .send(Command::Close(Some(frame)))
            .await
            .map_err(|_| self.closed_error())
    }

    /// Facts about the connection.
    pub fn info(&self) -> &WsInfo {
        &self.info
    }

    /// Whether the connection has stopped (failed, closed, or the receiver ended it).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn fatal_error(&self) -> Option<PluginError> {
        self.fatal.lock().ok().and_then(|g| g.clone())
    }

    fn closed_error(&self) -> PluginError {
        self.fatal_error().unwrap_or_else(|| {
            errors::make(
                ErrorCategory::Transient,
                format!("{}: connection closed", self.context),
                None,
                &self.redactor,
            )
        })
    }
}

impl WsReceiver {
    /// The next text or binary message; `Ok(None)` after a normal close (code 1000, or the
    /// close we asked for); an error once for a failure (then `Ok(None)`). Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Message>, PluginError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Facts about the connection.
    pub fn info(&self) -> &WsInfo {
        &self.info
    }
}

struct Driver {
    ws: Stream,
    cmd_rx: mpsc::Receiver<Command>,
    in_tx: mpsc::Sender<Result<Message, PluginError>>,
    fatal: Fatal,
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    close_codes: Vec<(u16, ErrorCategory)>,
    redactor: Redactor,
    context: Arc<str>,
}

impl Driver {
    async fn run(mut self) {
        if let Err(e) = self.drive().await {
            if let Ok(mut f) = self.fatal.lock() {
                f.get_or_insert(e.clone());
            }
            // Bounded: a receiver that no longer reads still finds the error in `fatal`.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.in_tx.send(Err(e))).await;
        }
        // Dropping the stream closes the socket; the halves see the channels close.
    }

    fn err(&self, e: WsError) -> PluginError {
        map_ws_error(e, &self.context, &self.close_codes, &self.redactor)
    }

    async fn drive(&mut self) -> Result<(), PluginError> {
        let far = Duration::from_secs(86_400 * 365);
        let idle = self.idle_timeout;
        let idle_sleep = tokio::time::sleep(idle.unwrap_or(far));
        tokio::pin!(idle_sleep);
        let mut ping = self.ping_interval.map(|p| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut closing = false;
        let mut commands_open = true;
        // A message read while the incoming queue was full; the socket is not read until it is
        // delivered.
        let mut pending: Option<Message> = None;
        loop {
            tokio::select! {
                permit = self.in_tx.reserve(), if pending.is_some() => match permit {
                    Ok(p) => p.send(Ok(pending.take().expect("guarded"))),
                    Err(_) => pending = None,
                },
                cmd = self.cmd_rx.recv(), if commands_open && !closing => match cmd {
                    Some(Command::Send(m)) => {
                        // Messages queued together (a request and its flush, say) leave in one
                        // write; a close queued behind them follows once they are out.
                        self.ws.feed(m).await.map_err(|e| self.err(e))?;
                        let mut close = None;
                        for _ in 1..MAX_BATCH {
                            match self.cmd_rx.try_recv() {
                                Ok(Command::Send(m)) => self.ws.feed(m).await.map_err(|e| self.err(e))?,
                                Ok(Command::Close(frame)) => {
                                    close = Some(frame);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.ws.flush().await.map_err(|e| self.err(e))?;
                        if let Some(frame) = close {
                            closing = true;
                            idle_sleep.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                            self.ws.close(frame).await.map_err(|e| self.err(e))?;
                        }
                    }
                    Some(Command::Close(frame)) => {
                        closing = true;
                        idle_sleep.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                        self.ws.close(frame).await.map_err(|e| self.err(e))?;
                    }
                    // Every sender is gone, but the receiver may still await final results.
                    None => commands_open = false,
                },
                _ = self.in_tx.closed(), if !closing => {
                    // Nobody reads any more: the provider is done with this socket.
                    closing = true;
                    idle_sleep.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                    let _ = self.ws.close(None).await;
                },
                frame = self.ws.next(), if pending.is_none() => {
                    if let (Some(d), false) = (idle, closing) {
                        idle_sleep.as_mut().reset(tokio::time::Instant::now() + d);
                    }
                    match frame {
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            // A dropped receiver just means nobody listens any more.
                            if let Err(mpsc::error::TrySendError::Full(Ok(m))) = self.in_tx.try_send(Ok(m)) {
                                pending = Some(m);
                            }
                        }
                        // tungstenite queued the pong; flush it now rather than on the next write.
                        Some(Ok(Message::Ping(_))) => self.ws.flush().await.map_err(|e| self.err(e))?,
                        Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            // Finish the closing handshake; errors here no longer matter.
                            let _ = self.ws.flush().await;
                            if closing && code == 1000 {
                                return Ok(());
                            }
                            return match errors::from_close(code, &reason, &self.close_codes, &self.context, &self.redactor) {
                                None => Ok(()),
                                Some(e) => Err(e),
                            };
                        }
                        Some(Err(WsError::ConnectionClosed)) | None if closing => return Ok(()),
                        Some(Err(e)) => return Err(self.err(e)),
                        None => return Err(self.err(WsError::ConnectionClosed)),
                    }
                },
                _ = async { ping.as_mut().expect("guarded").tick().await }, if ping.is_some() && !closing => {
                    self.ws.send(Message::Ping(bytes::Bytes::new())).await.map_err(|e| self.err(e))?;
                },
                _ = &mut idle_sleep, if idle.is_some() || closing => {
                    if closing {
                        // The peer never answered our close frame; drop the socket.
                        return Ok(());
                    }
                    let d = idle.unwrap_or(far);
                    return Err(errors::timeout(&format!("{}: idle, nothing received", self.context), d, &self.redactor));
                }
            }
        }
    }
}
