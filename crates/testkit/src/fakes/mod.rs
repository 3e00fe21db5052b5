//! Protocol-faithful fakes of the cloud vendors, one module per vendor, each listening on
//! 127.0.0.1 only. A fake speaks the vendor's wire protocol closely enough that the real provider
//! client cannot tell it from the service for the paths the tests exercise, and it records what it
//! received so tests can assert on the exact requests (URLs, headers, messages).
//!
//! The building blocks here are shared: [`WsFake`] accepts WebSocket connections and hands each to
//! a handler along with the upgrade request; [`HttpFake`] serves an axum router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::WebSocketStream;

pub mod assemblyai;
pub mod aws;
pub mod azure;
pub mod azure_tts;
pub mod cartesia;
pub mod cartesia_stt;
pub mod deepgram;
pub mod elevenlabs;
pub mod elevenlabs_stt;
pub mod google;
pub mod hume;
pub mod hume_evi;
pub mod ibm;
pub mod lmnt;
pub mod openai;
pub mod openai_realtime;
pub mod playht;

pub use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A WebSocket connection accepted by a fake.
pub type FakeSocket = WebSocketStream<tokio::net::TcpStream>;

/// The upgrade request a fake received: what tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Path and query, e.g. `/v1/listen?encoding=linear16`.
    pub uri: String,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, percent-decoding not applied.
    pub fn query(&self, name: &str) -> Option<&str> {
        let q = self.uri.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

/// How a fake refuses a WebSocket upgrade: an HTTP status with headers and a body, as vendors
/// do (`retry-after`, request ids, JSON error bodies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
}

impl Reject {
    /// A refusal with `status` and a short text body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("rejected with {status}"),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// A WebSocket server on 127.0.0.1 that runs `handler` for every connection. Stops when dropped.
#[derive(Debug)]
pub struct WsFake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

impl WsFake {
    /// Binds 127.0.0.1 on a free port and serves every connection with `handler`. The handler
    /// may reject the upgrade by returning `Err(status)` from `accept` (auth checks).
    pub async fn start<A, H, F>(accept: A, handler: H) -> Self
    where
        A: Fn(&SeenRequest) -> Result<(), u16> + Send + Sync + 'static,
        H: Fn(SeenRequest, FakeSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        Self::start_with(
            move |r: &SeenRequest| accept(r).map_err(Reject::status),
            handler,
        )
        .await
    }

    /// Like [`WsFake::start`], refusing upgrades with headers and a body.
    // tungstenite's handshake callback returns its HTTP response as the error type.
    #[allow(clippy::result_large_err)]
    pub async fn start_with<A, H, F>(accept: A, handler: H) -> Self
    where
        A: Fn(&SeenRequest) -> Result<(), Reject> + Send + Sync + 'static,
        H: Fn(SeenRequest, FakeSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accept = Arc::new(accept);
        let handler = Arc::new(handler);
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (accept, handler, seen) = (accept.clone(), handler.clone(), seen2.clone());
                tokio::spawn(async move {
                    let mut captured = None;
                    let callback = |req: &Request, resp: Response| {
                        let seen = SeenRequest {
                            uri: req.uri().to_string(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect(),
                        };
                        let verdict = accept(&seen);
                        captured = Some(seen);
                        verdict.map(|()| resp).map_err(reject_response)
                    };
                    let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
                    let Some(req) = captured else { return };
                    seen.lock().expect("seen lock").push(req.clone());
                    if let Ok(ws) = ws {
                        handler(req, ws).await;
                    }
                });
            }
        });
        Self { addr, seen, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:port`, the base URL to configure a provider with.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every upgrade request received so far, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// The handshake's refusal (tungstenite's callback error type is an HTTP response).
fn reject_response(r: Reject) -> tokio_tungstenite::tungstenite::handshake::server::ErrorResponse {
    use tokio_tungstenite::tungstenite::http;
    let mut resp = http::Response::new(Some(r.body));
    *resp.status_mut() =
        http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::FORBIDDEN);
    for (name, value) in r.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::try_from(name),
            http::HeaderValue::try_from(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

impl Drop for WsFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP server on 127.0.0.1 serving an axum router. Stops when dropped.
#[derive(Debug)]
pub struct HttpFake {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpFake {
    /// Binds 127.0.0.1 on a free port and serves `router`.
    pub async fn start(router: axum::Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, the base URL to configure a provider with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
