//! The floor: a bare tokio-tungstenite server that answers the load generator the way the
//! gateway with the loopback STT does (`ready`, then a stamp report every N frames), with no
//! gateway in between. Whatever the gateway costs above this is the gateway's own cost.
//!
//! With `--upstream ws://…` it is instead the bare relay for the provider-hop phase: each
//! session dials the Deepgram fake at that address and relays frames and results
//! (`waav_bench::hop::relay_session`).

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use waav_testkit::stamp::{now_ns, read_header, StampReport};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 3002)]
    port: u16,
    /// Relay every session to this Deepgram-compatible `/v1/listen` server (`ws://host:port`).
    #[arg(long)]
    upstream: Option<String>,
    /// The key presented upstream (`Authorization: Token <key>`).
    #[arg(long, default_value = waav_bench::hop::API_KEY)]
    api_key: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    waav_bench::raise_fd_limit();
    let args = Args::parse();
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let upstream: Option<std::sync::Arc<(String, String)>> = args
        .upstream
        .map(|u| std::sync::Arc::new((u, args.api_key.clone())));
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut http = [0u8; 4];
            // Health probes (`GET / `) get the gateway's answer; everything else is a WebSocket.
            if tcp.peek(&mut http).await.is_ok() && &http == b"GET " {
                let mut line = [0u8; 6];
                if tcp.peek(&mut line).await.is_ok() && &line == b"GET / " {
                    use tokio::io::AsyncWriteExt;
                    let mut tcp = tcp;
                    let body = r#"{"status":"OK"}"#;
                    let _ = tcp
                        .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                    return;
                }
            }
            let cfg = waav_bench::load::client_ws_config();
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
                return;
            };
            match upstream {
                Some(u) => waav_bench::hop::relay_session(ws, &u.0, &u.1).await,
                None => relay(ws).await,
            }
        });
    }
}

async fn relay(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    let (mut tx, mut rx) = ws.split();
    let mut every = 5u64;
    let mut received = 0u64;
    let mut transit = Vec::new();
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if let Some(n) = v["stt_config"]["model"]
                    .as_str()
                    .and_then(|m| m.strip_prefix("stamp="))
                {
                    every = n.parse().unwrap_or(5).max(1);
                }
                let ready = r#"{"type":"ready","stream_id":"floor","livekit_url":""}"#;
                if tx.send(Message::text(ready)).await.is_err() {
                    return;
                }
            }
            Message::Binary(frame) => {
                let arrived = now_ns();
                received += 1;
                if let Some((_, sent)) = read_header(&frame) {
                    transit.push(arrived.saturating_sub(sent));
                }
                if received.is_multiple_of(every) {
                    let report = StampReport {
                        received,
                        emitted_ns: now_ns(),
                        transit_ns: std::mem::take(&mut transit),
                    };
                    let msg = serde_json::json!({"type":"stt_result","transcript":report.encode(),
                        "is_final":false,"is_speech_final":false,"confidence":1.0});
                    if tx.send(Message::text(msg.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}
