//! The per-connection outgoing FIFO: every JSON and binary frame leaves through one bounded queue,
//! so their relative order is kept, and a slow client applies backpressure instead of growing
//! memory.
//!
//! Backpressure is bounded in time: a sender that finds the FIFO full for longer than the stall
//! bound gives up, marks the connection stalled and tells the writer to drop it. A client that
//! closes is answered at once (RFC 6455 §5.5.1), ahead of whatever is still queued.

use super::protocol::ServerMessage;
use crate::metrics::Metrics;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::stream::SplitSink;
use futures::SinkExt;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};

/// Frames queued per connection before senders wait.
pub const OUTBOUND_CAPACITY: usize = 256;
/// Default time a sender waits on a full FIFO before the client counts as stalled.
pub const DEFAULT_STALL: Duration = Duration::from_secs(5);
/// Close code for a client that stopped reading (1008: policy violation).
pub const CLOSE_STALLED: u16 = 1008;
/// How long the last words (error, close frame) to a stalled client may take.
const LAST_WORDS: Duration = Duration::from_millis(200);

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

/// Out-of-band orders to the writer.
#[derive(Debug, Default)]
struct Control {
    wake: Notify,
    /// The client stopped reading.
    stalled: AtomicBool,
    /// The client sent a close frame with this code (0: none).
    client_closed: AtomicU16,
    /// The session opted out of `provider_switched` events.
    quiet_switches: AtomicBool,
}

/// The sending side of a connection's FIFO.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    stall: Duration,
    control: Arc<Control>,
}

/// The writer's side of a connection's FIFO.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::Receiver<Outgoing>,
    control: Arc<Control>,
}

impl OutboundRx {
    /// The next queued frame (benchmarks and tests drain the FIFO with it).
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// A queued frame, if one is ready.
    pub fn try_recv(&mut self) -> Result<Outgoing, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl Outbound {
    /// Creates the FIFO with the default stall bound; the receiver goes to [`write_loop`].
    pub fn new() -> (Self, OutboundRx) {
        Self::with_stall(DEFAULT_STALL)
    }

    /// Creates the FIFO; a sender waiting longer than `stall` on a full FIFO stalls the client.
    pub fn with_stall(stall: Duration) -> (Self, OutboundRx) {
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let control = Arc::new(Control::default());
        (
            Self {
                tx,
                stall,
                control: control.clone(),
            },
            OutboundRx { rx, control },
        )
    }

    async fn push(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(item)) => {
                match tokio::time::timeout(self.stall, self.tx.send(item)).await {
                    Ok(sent) => sent.is_ok(),
                    Err(_) => {
                        if !self.control.stalled.swap(true, Ordering::AcqRel) {
                            Metrics::get().error("client_stalled");
                            tracing::warn!(
                                stall_ms = self.stall.as_millis() as u64,
                                "client stopped reading; dropping the connection"
                            );
                        }
                        self.control.wake.notify_one();
                        false
                    }
                }
            }
        }
    }

    /// Queues a JSON message. `false` when the connection is gone or stalled.
    pub async fn send(&self, msg: ServerMessage) -> bool {
        // One place for every path that reports a switch (failover, reconnect, hedge, return).
        if matches!(msg, ServerMessage::ProviderSwitched { .. })
            && self.control.quiet_switches.load(Ordering::Relaxed)
        {
            return !self.is_closed();
        }
        let m = Metrics::get();
        m.message_out(msg.kind());
        if let ServerMessage::Error { code, .. } = &msg {
            m.error(code);
        }
        let text = serde_json::to_string(&msg).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","message":"serialization failed: {e}","code":"internal"}}"#)
        });
        self.push(Outgoing::Text(text.into())).await
    }

    /// Queues an audio frame. `false` when the connection is gone or stalled.
    pub async fn binary(&self, data: Bytes) -> bool {
        let m = Metrics::get();
        m.audio_frames_out.increment(1);
        m.audio_bytes_out.increment(data.len() as u64);
        self.push(Outgoing::Binary(data)).await
    }

    /// Queues a close frame after everything already queued.
    pub async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.push(Outgoing::Close(code, reason)).await;
    }

    /// The client sent a close frame: the writer answers it now, dropping what is still queued.
    pub fn client_closed(&self, code: u16) {
        self.control
            .client_closed
            .store(code.max(1), Ordering::Release);
        self.control.wake.notify_one();
    }

    /// Whether `provider_switched` events reach the client (a session's opt-out).
    pub fn set_switch_events(&self, on: bool) {
        self.control.quiet_switches.store(!on, Ordering::Relaxed);
    }

    /// Whether the client stopped reading (the connection is being dropped).
    pub fn is_stalled(&self) -> bool {
        self.control.stalled.load(Ordering::Acquire)
    }

    /// Whether the connection can take no more frames (writer gone or client stalled).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.is_stalled()
    }
}

/// Writes queued frames to the socket, batching what is ready into one flush, until the FIFO
/// closes, a close frame is written, the client closes, or the client stalls.
pub async fn write_loop(mut sink: SplitSink<WebSocket, Message>, rx: OutboundRx) {
    let OutboundRx { mut rx, control } = rx;
    let woken = tokio::select! {
        // The writer itself may be the one stuck (a full socket buffer), so the orders are
        // raced against the whole loop, not checked between frames.
        () = control.wake.notified() => true,
        () = write_all(&mut sink, &mut rx) => false,
    };
    if control.client_closed.load(Ordering::Acquire) != 0 {
        // tungstenite queued the close reply when it read the client's close; flushing sends it.
        // Checked even when the loop ended first: a frame written after the client's close
        // fails (SendAfterClosing), which ends the loop before the wake is seen.
        let _ = tokio::time::timeout(LAST_WORDS, sink.flush()).await;
    } else if woken && control.stalled.load(Ordering::Acquire) {
        let error =
            ServerMessage::error("client_stalled", "Client is not reading; connection closed");
        let text = serde_json::to_string(&error).unwrap_or_default();
        let _ = tokio::time::timeout(LAST_WORDS, async {
            let _ = sink.feed(Message::Text(text.into())).await;
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CLOSE_STALLED,
                    reason: "client not reading".into(),
                })))
                .await;
        })
        .await;
    }
    // Dropping the receiver wakes every sender still waiting on the FIFO.
    drop(rx);
}

async fn write_all(sink: &mut SplitSink<WebSocket, Message>, rx: &mut mpsc::Receiver<Outgoing>) {
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
