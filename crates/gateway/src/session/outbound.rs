//! The per-connection outgoing FIFO: every JSON and binary frame leaves through one bounded queue,
//! so their relative order is kept, and a slow client applies backpressure instead of growing
//! memory.

use super::protocol::ServerMessage;
use crate::metrics::Metrics;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::stream::SplitSink;
use futures::SinkExt;
use tokio::sync::mpsc;

/// Frames queued per connection before senders wait.
pub const OUTBOUND_CAPACITY: usize = 256;

/// A frame for the client.
#[derive(Debug)]
pub enum Outgoing {
    /// A text (JSON) frame.
    Text(Utf8Bytes),
    /// A binary (audio) frame.
    Binary(Bytes),
    /// Close the connection with a code and reason.
    Close(u16, &'static str),
}

/// The sending side of a connection's FIFO.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
}

impl Outbound {
    /// Creates the FIFO; the receiver goes to [`write_loop`].
    pub fn new() -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        (Self { tx }, rx)
    }

    /// Queues a JSON message. `false` when the connection is gone.
    pub async fn send(&self, msg: ServerMessage) -> bool {
        let m = Metrics::get();
        m.message_out(msg.kind());
        if let ServerMessage::Error { code, .. } = &msg {
            m.error(code);
        }
        let text = serde_json::to_string(&msg).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","message":"serialization failed: {e}","code":"internal"}}"#)
        });
        self.tx.send(Outgoing::Text(text.into())).await.is_ok()
    }

    /// Queues an audio frame. `false` when the connection is gone.
    pub async fn binary(&self, data: Bytes) -> bool {
        let m = Metrics::get();
        m.audio_frames_out.increment(1);
        m.audio_bytes_out.increment(data.len() as u64);
        self.tx.send(Outgoing::Binary(data)).await.is_ok()
    }

    /// Queues a close frame after everything already queued.
    pub async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.tx.send(Outgoing::Close(code, reason)).await;
    }
}

/// Writes queued frames to the socket, batching what is ready into one flush.
pub async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let msg = match item {
                Outgoing::Text(t) => Message::Text(t),
                Outgoing::Binary(b) => Message::Binary(b),
                Outgoing::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
