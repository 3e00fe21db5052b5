//! A WebSocket client for the `/ws` protocol.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Guard against a hung test; never a latency assertion.
const RECV_GUARD: Duration = Duration::from_secs(10);

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Json(Value),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

pub struct WsClient {
    socket: Socket,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, None).await.expect("upgrade")
    }

    /// Connects, optionally with `Authorization: Bearer <token>`; `Err(status)` if refused.
    pub async fn connect_with(url: &str, bearer: Option<&str>) -> Result<Self, u16> {
        let mut req = url.into_client_request().unwrap();
        if let Some(t) = bearer {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((socket, _)) => Ok(Self { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// The raw socket, for cases that drive the protocol by hand.
    pub fn into_socket(self) -> Socket {
        self.socket
    }

    /// Sends a close frame and reports whether the server's close frame came back within
    /// `guard` (RFC 6455: it must answer at once, whatever it is still doing).
    pub async fn close_answered_within(self, guard: Duration) -> bool {
        let mut socket = self.socket;
        socket.send(Message::Close(None)).await.unwrap();
        tokio::time::timeout(guard, async {
            while let Some(Ok(msg)) = socket.next().await {
                if let Message::Close(_) = msg {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Waits (guarded) for the next binary frame.
    pub async fn until_binary(&mut self) {
        loop {
            match self.recv().await {
                Frame::Binary(_) => return,
                Frame::Closed(c) => panic!("closed ({c:?}) while waiting for audio"),
                Frame::Json(_) => {}
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.socket
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.socket.send(Message::text(t.to_owned())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.socket.send(Message::binary(b)).await.unwrap();
    }

    /// The next frame (pings skipped).
    pub async fn recv(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(RECV_GUARD, self.socket.next())
                .await
                .expect("no frame from the server within the guard time");
            return match msg {
                None => Frame::Closed(None),
                Some(Err(_)) => Frame::Closed(None),
                Some(Ok(Message::Text(t))) => Frame::Json(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => Frame::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
            };
        }
    }

    /// The next JSON message (binary frames are an error here).
    pub async fn json(&mut self) -> Value {
        match self.recv().await {
            Frame::Json(v) => v,
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    /// Skips frames until a JSON message of `ty`; returns it and the binary bytes skipped.
    pub async fn until(&mut self, ty: &str) -> (Value, usize) {
        let mut bytes = 0;
        loop {
            match self.recv().await {
                Frame::Json(v) if v["type"] == ty => return (v, bytes),
                Frame::Json(_) => {}
                Frame::Binary(b) => bytes += b.len(),
                Frame::Closed(c) => panic!("closed ({c:?}) while waiting for {ty}"),
            }
        }
    }

    /// Expects an `error` with `code`; returns its message.
    pub async fn expect_error(&mut self, code: &str) -> String {
        let v = self.json().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        v["message"].as_str().unwrap().to_owned()
    }

    /// Sends `config` and waits for `ready`.
    pub async fn configure(&mut self, config: Value) -> Value {
        self.send_json(config).await;
        let v = self.json().await;
        assert_eq!(v["type"], "ready", "{v}");
        v
    }

    /// Proves the connection is alive and in order: an unknown custom type gets its error back.
    pub async fn assert_alive(&mut self) {
        self.send_json(
            serde_json::json!({"type":"custom","message_type":"no-such-type","payload":{}}),
        )
        .await;
        let msg = self.expect_error("unknown_custom_type").await;
        assert_eq!(msg, "Unknown custom message type: no-such-type");
    }
}

pub fn stt_config(provider: &str, model: &str, rate: u32) -> Value {
    serde_json::json!({
        "provider": provider, "language": "en-US", "sample_rate": rate, "channels": 1,
        "punctuation": true, "encoding": "linear16", "model": model
    })
}

pub fn tts_config(provider: &str, model: &str) -> Value {
    serde_json::json!({ "provider": provider, "model": model, "audio_format": "linear16", "sample_rate": 16000 })
}

/// `ms` of speech-like tone followed by `gap_ms` of silence, as 20 ms PCM16 frames at `rate`.
pub fn utterance(ms: u32, gap_ms: u32, rate: u32) -> Vec<Vec<u8>> {
    use waav_testkit::audio::{frames, silence, to_le_bytes, tone};
    let mut s = tone(300.0, ms, rate);
    s.extend(silence(gap_ms, rate));
    frames(&to_le_bytes(&s), rate, 20)
}
