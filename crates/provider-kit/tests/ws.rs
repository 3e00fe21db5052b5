//! The WebSocket client against real local servers (127.0.0.1 only).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as SMessage;
use waav_provider_kit::backoff::BackoffPolicy;
use waav_provider_kit::ws::{self, Message, Reconnector, ReplayBuffer, WsConfig};
use waav_provider_kit::{ErrorCategory, PluginError, Secret};

const LIMIT: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test]
async fn connect_echo_nodelay_and_small_buffers() {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                SMessage::Text(t) if t.as_str() == "big" => {
                    ws.send(SMessage::Binary(vec![0u8; 2048].into()))
                        .await
                        .unwrap();
                }
                m @ (SMessage::Text(_) | SMessage::Binary(_)) => ws.send(m).await.unwrap(),
                _ => {}
            }
        }
    });
    let mut cfg = WsConfig::new(format!("{url}/v1/listen?model=x"))
        .header("x-request-tag", "t1")
        .header("authorization", Secret::new("Token abc"));
    cfg.max_message_size = 1024;
    let mut conn = timeout(LIMIT, ws::connect(&cfg)).await.unwrap().unwrap();
    let info = conn.info().clone();
    assert!(info.nodelay, "TCP_NODELAY must be set");
    assert_eq!(info.read_buffer_size, 4096);
    assert_eq!(info.write_buffer_size, 4096);
    assert_eq!(info.max_message_size, Some(1024));
    assert_eq!(info.status, 101);

    conn.send(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        .await
        .unwrap();
    let got = timeout(LIMIT, conn.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::Binary(Bytes::from_static(&[1, 2, 3])));
    conn.send(Message::Text("hello".into())).await.unwrap();
    let got = timeout(LIMIT, conn.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::Text("hello".into()));

    // A message over max_message_size is refused, not buffered.
    conn.send(Message::Text("big".into())).await.unwrap();
    let e = timeout(LIMIT, conn.recv()).await.unwrap().unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
    assert_eq!(timeout(LIMIT, conn.recv()).await.unwrap(), Ok(None));
    // The sender now reports the same failure.
    let e2 = conn.send(Message::Text("x".into())).await.unwrap_err();
    assert_eq!(e2.category(), ErrorCategory::Permanent);
}

/// A raw HTTP server answering every request with `response`, echoing the request line and
/// headers into the body when `echo` (to prove secrets get redacted).
async fn http_server(response_head: &'static str, echo: bool) -> String {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let body = if echo {
                    String::from_utf8_lossy(&buf[..n]).into_owned()
                } else {
                    "nope".to_owned()
                };
                let resp = format!(
                    "{response_head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn handshake_statuses_map_to_categories() {
    let key = Secret::new("dg-secret-0123456789");
    type Check = fn(&PluginError) -> bool;
    let cases: [(&'static str, Check); 5] = [
        ("HTTP/1.1 401 Unauthorized", |e| {
            e.category() == ErrorCategory::Auth
        }),
        ("HTTP/1.1 403 Forbidden", |e| {
            e.category() == ErrorCategory::Auth
        }),
        (
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7",
            |e| matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if *d == Duration::from_secs(7)),
        ),
        ("HTTP/1.1 503 Service Unavailable", |e| {
            e.category() == ErrorCategory::Transient
        }),
        ("HTTP/1.1 404 Not Found", |e| {
            e.category() == ErrorCategory::Config
        }),
    ];
    for (head, check) in cases {
        let url = http_server(head, true).await;
        let cfg = WsConfig::new(format!("{url}/v1/listen?api_key={}", key.expose()))
            .header("authorization", key.clone())
            .secret(key.clone())
            .context("deepgram");
        let e = timeout(LIMIT, ws::connect(&cfg))
            .await
            .unwrap()
            .unwrap_err();
        assert!(check(&e), "{head}: {e:?}");
        let text = e.to_string();
        assert!(text.contains("deepgram: handshake: HTTP"), "{text}");
        assert!(
            text.contains("GET /v1/listen"),
            "the body excerpt is kept: {text}"
        );
        assert!(!text.contains(key.expose()), "secret leaked: {text}");
        assert!(!format!("{e:?}").contains(key.expose()));
    }
}

#[tokio::test]
async fn connect_failures_are_transient_or_timeout() {
    let (l, url) = listener().await;
    drop(l);
    let e = ws::connect(&WsConfig::new(url)).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");

    // A server that accepts TCP but never answers the handshake.
    let (l, url) = listener().await;
    let hold = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        tokio::time::sleep(LIMIT).await;
        drop(tcp);
    });
    let mut cfg = WsConfig::new(url);
    cfg.connect_timeout = Duration::from_millis(200);
    let e = timeout(LIMIT, ws::connect(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    hold.abort();

    let e = ws::connect(&WsConfig::new("http://127.0.0.1:1/"))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
}

#[tokio::test]
async fn idle_timeout_fires_on_a_silent_server() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        tokio::time::sleep(LIMIT).await; // silent: never reads, never writes
        drop(ws);
    });
    let mut cfg = WsConfig::new(url);
    cfg.idle_timeout = Some(Duration::from_millis(200));
    let mut conn = ws::connect(&cfg).await.unwrap();
    let started = std::time::Instant::now();
    let e = timeout(LIMIT, conn.recv()).await.unwrap().unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    server.abort();
}

#[tokio::test]
async fn keepalive_pings_reach_the_server_and_close_codes_map() {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // Wait for a keepalive ping, then close with a vendor code.
        while let Some(Ok(m)) = ws.next().await {
            if let SMessage::Ping(_) = m {
                break;
            }
        }
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4001u16.into(),
            reason: "invalid credentials".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let mut cfg = WsConfig::new(url).context("assemblyai");
    cfg.ping_interval = Some(Duration::from_millis(50));
    cfg.close_codes = vec![(4001, ErrorCategory::Auth)];
    let mut conn = ws::connect(&cfg).await.unwrap();
    let e = timeout(LIMIT, conn.recv()).await.unwrap().unwrap_err();
    assert_eq!(
        e,
        PluginError::Auth("assemblyai: closed with code 4001: invalid credentials".into())
    );
}

#[tokio::test]
async fn normal_close_ends_the_stream_and_receiver_drains_after_sender_drop() {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // "Finalize": on a text message, send two results and close normally.
        while let Some(Ok(m)) = ws.next().await {
            if let SMessage::Text(_) = m {
                ws.send(SMessage::Text("r1".into())).await.unwrap();
                ws.send(SMessage::Text("r2".into())).await.unwrap();
                ws.close(None).await.unwrap();
            }
        }
    });
    let conn = ws::connect(&WsConfig::new(url)).await.unwrap();
    let (tx, mut rx) = conn.split();
    tx.send_text("finalize").await.unwrap();
    drop(tx); // the sending side is done; results must still arrive
    let mut got = Vec::new();
    while let Some(m) = timeout(LIMIT, rx.recv()).await.unwrap().unwrap() {
        got.push(m);
    }
    assert_eq!(
        got,
        [Message::Text("r1".into()), Message::Text("r2".into())]
    );
}

#[tokio::test]
async fn reconnect_with_backoff_replays_exactly_the_unacknowledged_audio() {
    let (l, url) = listener().await;
    let accepts = Arc::new(AtomicUsize::new(0));
    let (replayed_tx, replayed_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let count = accepts.clone();
    tokio::spawn(async move {
        let mut replayed_tx = Some(replayed_tx);
        loop {
            let (mut tcp, _) = l.accept().await.unwrap();
            match count.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let mut received = 0;
                    while let Some(Ok(m)) = ws.next().await {
                        if let SMessage::Binary(b) = m {
                            received += b.len();
                            if received == 300 {
                                ws.send(SMessage::Text("ack 300".into())).await.unwrap();
                            }
                            if received == 500 {
                                break; // drop the socket without a close frame
                            }
                        }
                    }
                    drop(ws);
                }
                1 => {
                    // The first reconnect attempt hits an overloaded server.
                    let mut buf = [0u8; 4096];
                    let _ = tcp.read(&mut buf).await;
                    let _ = tcp
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
                _ => {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let mut got = Vec::new();
                    while let Some(Ok(m)) = ws.next().await {
                        match m {
                            SMessage::Binary(b) => got.extend_from_slice(&b),
                            SMessage::Close(_) => break,
                            _ => {}
                        }
                    }
                    if let Some(tx) = replayed_tx.take() {
                        let _ = tx.send(got);
                    }
                    return;
                }
            }
        }
    });

    let policy = BackoffPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_attempts: Some(5),
        max_elapsed: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let reconnector = Reconnector::new(WsConfig::new(url), policy);
    let mut replay = ReplayBuffer::new(450);
    let chunk = |i: u8| Bytes::from(vec![i; 100]);

    let mut conn = reconnector.connect().await.unwrap();
    for i in 0..3 {
        replay.push(chunk(i));
        conn.send(Message::Binary(chunk(i))).await.unwrap();
    }
    let ack = timeout(LIMIT, conn.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(ack, Message::Text("ack 300".into()));
    replay.ack(300);
    for i in 3..5 {
        replay.push(chunk(i));
        conn.send(Message::Binary(chunk(i))).await.unwrap();
    }
    let e = timeout(LIMIT, conn.recv()).await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "a dropped socket is retryable: {e:?}");
    assert!(replay.buffered_bytes() <= replay.max_bytes());
    assert_eq!(replay.replay_offset(), 300);

    let conn = timeout(
        LIMIT,
        reconnector.resume(&replay, |c| Message::Binary(c.clone())),
    )
    .await
    .unwrap()
    .unwrap();
    conn.close(ws::CloseCode::Normal, "done").await.unwrap();
    let got = timeout(LIMIT, replayed_rx).await.unwrap().unwrap();
    let mut want = vec![3u8; 100];
    want.extend(vec![4u8; 100]);
    assert_eq!(got, want, "exactly the unacknowledged audio");
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        3,
        "one failed attempt, then success"
    );
    assert_eq!(replay.lost_bytes(), 0);

    // Pushing past the bound keeps it and counts what cannot be replayed.
    for i in 5..12 {
        replay.push(chunk(i));
        assert!(replay.buffered_bytes() <= 450);
    }
    assert_eq!(replay.lost_bytes(), 9 * 100 - 450);
}

#[tokio::test]
async fn reconnect_gives_up_on_auth_errors_at_once() {
    let url = http_server("HTTP/1.1 401 Unauthorized", false).await;
    let reconnector = Reconnector::new(WsConfig::new(url), BackoffPolicy::default());
    let started = std::time::Instant::now();
    let e = timeout(LIMIT, reconnector.connect())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A vendor that floods results while the provider is still sending: the incoming queue is
/// bounded, sending keeps working while it is full, and every message arrives in order.
#[tokio::test]
async fn a_flooding_server_is_bounded_and_cannot_deadlock_the_sender() {
    const FLOOD: usize = 5_000;
    let (l, url) = listener().await;
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let reader = tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, SMessage::Binary(_)) {
                    n += 1;
                }
                if n == 100 {
                    break;
                }
            }
            n
        });
        for i in 0..FLOOD {
            if sink
                .send(SMessage::Text(i.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = got_tx.send(reader.await.unwrap());
        // Keep the socket open until the client has drained.
        tokio::time::sleep(LIMIT).await;
    });
    let mut cfg = WsConfig::new(url);
    cfg.recv_queue = 8;
    let mut conn = timeout(LIMIT, ws::connect(&cfg)).await.unwrap().unwrap();
    // Send while not reading: the driver must keep writing although its incoming queue is full.
    for _ in 0..100 {
        timeout(
            LIMIT,
            conn.send(Message::Binary(Bytes::from_static(&[0; 320]))),
        )
        .await
        .expect("sending is not blocked by a full incoming queue")
        .unwrap();
    }
    assert_eq!(timeout(LIMIT, got_rx).await.unwrap().unwrap(), 100);
    for i in 0..FLOOD {
        let m = timeout(LIMIT, conn.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::Text(i.to_string().into()));
    }
}

/// Messages queued faster than the driver writes go out in batches: all of them, in order, and a
/// close queued behind them still comes last.
#[tokio::test]
async fn queued_messages_arrive_in_order_with_a_close_behind_them() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut got = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                SMessage::Text(t) => got.push(t.to_string()),
                SMessage::Close(f) => {
                    got.push(format!("close {}", f.map_or(0, |f| u16::from(f.code))));
                    break;
                }
                _ => {}
            }
        }
        got
    });
    let conn = timeout(LIMIT, ws::connect(&WsConfig::new(url)))
        .await
        .unwrap()
        .unwrap();
    let (tx, _rx) = conn.split();
    for i in 0..100 {
        tx.send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
    }
    tx.close(ws::CloseCode::Normal, "done").await.unwrap();
    let got = timeout(LIMIT, server).await.unwrap().unwrap();
    let mut want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    want.push("close 1000".into());
    assert_eq!(got, want);
}
