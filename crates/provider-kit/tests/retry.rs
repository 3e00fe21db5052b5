//! Budgeted retries before the first response byte, against local servers (127.0.0.1 only).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use waav_provider_kit::backoff::BackoffPolicy;
use waav_provider_kit::http::{HttpClient, HttpClientConfig, RetryVeto};
use waav_provider_kit::retry::{RetryBudget, RetryConfig};
use waav_provider_kit::ws::{self, WsConfig};
use waav_provider_kit::{ErrorCategory, PluginError};

const LIMIT: Duration = Duration::from_secs(10);

/// Retries spaced by a millisecond, a generous budget unless a test narrows it.
fn fast(max_retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries,
        budget_min_per_sec: 10,
        backoff: BackoffPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryConfig::default().backoff
        },
        ..RetryConfig::default()
    }
}

fn client(retry: RetryConfig) -> HttpClient {
    HttpClient::new(HttpClientConfig {
        context: "tts".into(),
        retry,
        ..HttpClientConfig::default()
    })
    .unwrap()
}

#[derive(Clone, Default)]
struct Hits {
    flaky: Arc<AtomicUsize>,
    status: Arc<AtomicUsize>,
    stream: Arc<AtomicUsize>,
    upload: Arc<AtomicUsize>,
}

/// 503 for the first request, then `ok`.
async fn flaky(State(h): State<Hits>) -> Response {
    if h.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
    } else {
        "ok".into_response()
    }
}

/// Always `code`, with `retry-after: <secs>` when the query asks for it.
async fn status(
    State(h): State<Hits>,
    axum::extract::Path(code): axum::extract::Path<u16>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    h.status.fetch_add(1, Ordering::SeqCst);
    let mut headers = HeaderMap::new();
    if let Some(s) = q.get("retry_after") {
        headers.insert("retry-after", s.parse().unwrap());
    }
    if let Some(s) = q.get("retry_after_ms") {
        headers.insert("retry-after-ms", s.parse().unwrap());
    }
    (StatusCode::from_u16(code).unwrap(), headers, "no").into_response()
}

/// Two chunks of audio, then the body fails.
async fn broken_stream(State(h): State<Hits>) -> Response {
    h.stream.fetch_add(1, Ordering::SeqCst);
    // The head and the first bytes go out before the failure (a pause lets hyper flush them).
    let parts = futures::stream::unfold(0, |i| async move {
        let item: Result<Bytes, std::io::Error> = match i {
            0 => Ok(Bytes::from_static(b"RIFF0000")),
            1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("vendor died"))
            }
            _ => return None,
        };
        Some((item, i + 1))
    });
    Body::from_stream(parts).into_response()
}

async fn upload(State(h): State<Hits>) -> Response {
    h.upload.fetch_add(1, Ordering::SeqCst);
    (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
}

async fn serve() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/flaky", get(flaky))
        .route("/status/{code}", get(status))
        .route("/stream", get(broken_stream))
        .route("/upload", post(upload))
        .with_state(hits.clone());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, hits)
}

#[tokio::test]
async fn a_503_then_success_is_retried_and_succeeds() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let body = timeout(LIMIT, c.send_bytes(c.get(&format!("{base}/flaky")), 1024))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(hits.flaky.load(Ordering::SeqCst), 2, "one retry");
}

/// Answers raw HTTP: the first `drop_first` connections are closed without a response.
async fn dropping_server(drop_first: usize) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            let n = s.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                read_head(&mut tcp).await;
                if n < drop_first {
                    return; // dropped: the client sees the connection close with no response
                }
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, seen)
}

async fn read_head(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match timeout(LIMIT, tcp.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
            _ => break,
        }
    }
    buf
}

#[tokio::test]
async fn a_dropped_connection_before_the_response_is_retried() {
    let (url, seen) = dropping_server(1).await;
    let c = client(fast(2));
    let body = timeout(LIMIT, c.send_bytes(c.post(&url).body("text"), 1024))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn auth_and_config_errors_are_not_retried() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let e = timeout(LIMIT, c.send(c.get(&format!("{base}/status/401"))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert_eq!(hits.status.load(Ordering::SeqCst), 1, "401 sent once");
    let e = timeout(LIMIT, c.send(c.get(&format!("{base}/status/404"))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert_eq!(hits.status.load(Ordering::SeqCst), 2, "404 sent once");
}

#[tokio::test]
async fn a_body_failing_after_its_first_bytes_is_not_retried() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let mut body = timeout(LIMIT, c.send_streaming(c.get(&format!("{base}/stream"))))
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let mut failed = None;
    while let Some(chunk) = timeout(LIMIT, body.next()).await.unwrap() {
        match chunk {
            Ok(c) => got.extend_from_slice(&c),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    assert!(got.starts_with(b"RIFF0000"), "{got:?}");
    let e = failed.expect("the body fails");
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    // send_bytes on the same body: the failure is returned, the request is not sent again.
    let e = timeout(
        LIMIT,
        c.send_bytes(c.get(&format!("{base}/stream")), 1 << 20),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert_eq!(
        hits.stream.load(Ordering::SeqCst),
        2,
        "each request sent once"
    );
}

#[tokio::test]
async fn exhausted_retries_keep_the_error_category() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let e = timeout(LIMIT, c.send(c.get(&format!("{base}/status/503"))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(e.to_string().contains("tts: HTTP 503"), "{e}");
    assert_eq!(
        hits.status.load(Ordering::SeqCst),
        3,
        "first attempt + 2 retries"
    );

    // A 429 with a short retry-after is slept on and retried, and ends RateLimited with it.
    let e = timeout(
        LIMIT,
        c.send(c.get(&format!("{base}/status/429?retry_after_ms=20"))),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(20)),
        "{e:?}"
    );
    assert_eq!(hits.status.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_returns_at_once() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    // 60 s is far beyond LIMIT: sleeping on it would fail the timeout below.
    let e = timeout(
        LIMIT,
        c.send(c.get(&format!("{base}/status/429?retry_after=60"))),
    )
    .await
    .expect("not slept on")
    .unwrap_err();
    assert!(
        matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{e:?}"
    );
    assert_eq!(hits.status.load(Ordering::SeqCst), 1);
}

/// A caller's deadline 300 ms away: a 429 asking for 800 ms (within `max_retry_after`, so
/// `execute` would sleep on it) comes back at once, before the caller's own timeout.
#[tokio::test]
async fn a_retry_after_past_the_deadline_returns_the_429_at_once() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let req = c.get(&format!("{base}/status/429?retry_after_ms=800"));
    let resp = tokio::time::timeout_at(deadline, c.execute_within(req, deadline))
        .await
        .expect("returned before the caller's deadline")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        waav_provider_kit::errors::retry_after(resp.headers()),
        Some(Duration::from_millis(800)),
        "the caller sees the vendor's retry-after"
    );
    assert_eq!(hits.status.load(Ordering::SeqCst), 1, "not retried");
}

/// A short `retry-after` well within the deadline is retried as without one.
#[tokio::test]
async fn a_retry_after_within_the_deadline_is_retried() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let deadline = tokio::time::Instant::now() + LIMIT;
    let req = c.get(&format!("{base}/status/429?retry_after_ms=20"));
    let resp = tokio::time::timeout_at(deadline, c.execute_within(req, deadline))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429, "the last attempt's response");
    assert_eq!(
        hits.status.load(Ordering::SeqCst),
        3,
        "first attempt + 2 retries"
    );
    // A flaky endpoint recovers within the deadline.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let resp = c
        .execute_within(c.get(&format!("{base}/flaky")), deadline)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(hits.flaky.load(Ordering::SeqCst), 2);
}

fn vetoing(veto: RetryVeto) -> HttpClient {
    HttpClient::new(HttpClientConfig {
        context: "tts".into(),
        retry: fast(2),
        retry_veto: Some(veto),
        ..HttpClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_vetoed_response_is_sent_once() {
    let (base, hits) = serve().await;
    let c = vetoing(RetryVeto::rate_limit_without_retry_after());
    // A 429 without retry-after: vetoed, one request, and `send` still maps it.
    let e = timeout(LIMIT, c.send(c.get(&format!("{base}/status/429"))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    assert_eq!(hits.status.load(Ordering::SeqCst), 1, "vetoed");
    // With a retry-after, or a 503, the veto does not apply.
    let resp = timeout(
        LIMIT,
        c.execute(c.get(&format!("{base}/status/429?retry_after_ms=5"))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(hits.status.load(Ordering::SeqCst), 4, "1 + 3");
    let resp = timeout(LIMIT, c.execute(c.get(&format!("{base}/status/503"))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(hits.status.load(Ordering::SeqCst), 7, "4 + 3");

    // A predicate on the headers.
    let (base, hits) = serve().await;
    let c = vetoing(RetryVeto::new(|status, headers| {
        status.is_server_error() && headers.get("retry-after").is_none()
    }));
    let resp = timeout(LIMIT, c.execute(c.get(&format!("{base}/status/503"))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(hits.status.load(Ordering::SeqCst), 1, "vetoed");
    let resp = timeout(
        LIMIT,
        c.execute(c.get(&format!("{base}/status/503?retry_after=0"))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(hits.status.load(Ordering::SeqCst), 4, "1 + 3");
}

#[tokio::test]
async fn a_body_that_cannot_be_cloned_is_sent_once() {
    let (base, hits) = serve().await;
    let c = client(fast(2));
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"audio"))];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let e = timeout(LIMIT, c.send(c.post(&format!("{base}/upload")).body(body)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert_eq!(hits.upload.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_budget_bounds_retries_against_a_server_that_always_fails() {
    let (base, hits) = serve().await;
    // No floor, one retry per five requests, up to 3 retries each: without the budget 20
    // requests would cost 80 attempts.
    let c = client(RetryConfig {
        budget_min_per_sec: 0,
        budget_percent: 0.2,
        budget_ttl: Duration::from_secs(60),
        ..fast(3)
    });
    let url = format!("{base}/status/503");
    const M: usize = 20;
    for _ in 0..M / 2 {
        let e = timeout(LIMIT, c.send(c.get(&url)))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Transient);
    }
    let concurrent = (0..M / 2).map(|_| {
        let c = c.clone();
        let url = url.clone();
        async move { timeout(LIMIT, c.send(c.get(&url))).await.unwrap() }
    });
    for r in futures::future::join_all(concurrent).await {
        assert_eq!(r.unwrap_err().category(), ErrorCategory::Transient);
    }
    let sent = hits.status.load(Ordering::SeqCst);
    let allowed = M / 5;
    assert!(sent > M, "the budget allowed some retries: {sent}");
    assert!(
        sent <= M + allowed,
        "{sent} attempts for {M} requests: at most {allowed} retries"
    );
}

#[tokio::test]
async fn a_disabled_retry_config_sends_once() {
    let (base, hits) = serve().await;
    let c = client(RetryConfig::disabled());
    let e = timeout(LIMIT, c.send(c.get(&format!("{base}/flaky"))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient);
    assert_eq!(hits.flaky.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_missing_response_head_times_out_per_attempt_and_is_retried() {
    // Never answers the first connection; answers the second.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            read_head(&mut tcp).await;
            if s.fetch_add(1, Ordering::SeqCst) == 0 {
                held.push(tcp); // silent
                continue;
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let c = HttpClient::new(HttpClientConfig {
        headers_timeout: Some(Duration::from_millis(200)),
        read_timeout: None,
        retry: fast(2),
        ..HttpClientConfig::default()
    })
    .unwrap();
    let body = timeout(LIMIT, c.send_bytes(c.get(&url), 16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // With retries off the deadline is a Timeout.
    let c = HttpClient::new(HttpClientConfig {
        headers_timeout: Some(Duration::from_millis(200)),
        read_timeout: None,
        retry: RetryConfig::disabled(),
        ..HttpClientConfig::default()
    })
    .unwrap();
    seen.store(0, Ordering::SeqCst);
    let e = timeout(LIMIT, c.send(c.get(&url)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

/// A WebSocket endpoint refusing the first `refuse_first` upgrades with `head`.
async fn ws_server(refuse_first: usize, head: &'static str) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/listen", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            let n = s.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if n < refuse_first {
                    read_head(&mut tcp).await;
                    let resp = format!("{head}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = tcp.write_all(resp.as_bytes()).await;
                    return;
                }
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, seen)
}

fn ws_config(url: String, retry: RetryConfig) -> WsConfig {
    let mut cfg = WsConfig::new(url).context("vendor");
    // An own budget: tests run in parallel and must not share the per-context one.
    cfg.retry_budget = Some(RetryBudget::new(retry.clone(), "vendor"));
    cfg.retry = retry;
    cfg
}

#[tokio::test]
async fn a_ws_handshake_refused_with_503_is_retried() {
    let (url, seen) = ws_server(1, "HTTP/1.1 503 Service Unavailable").await;
    let conn = timeout(LIMIT, ws::connect(&ws_config(url, fast(2))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.info().status, 101);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_ws_handshake_refused_with_401_or_403_is_not_retried() {
    for head in ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 403 Forbidden"] {
        let (url, seen) = ws_server(usize::MAX, head).await;
        let e = timeout(LIMIT, ws::connect(&ws_config(url, fast(2))))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Auth, "{head}: {e}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "{head}");
    }
}

#[tokio::test]
async fn a_ws_handshake_that_keeps_failing_ends_with_its_error() {
    let (url, seen) = ws_server(usize::MAX, "HTTP/1.1 502 Bad Gateway").await;
    let e = timeout(LIMIT, ws::connect(&ws_config(url, fast(2))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(e.to_string().contains("vendor: handshake: HTTP 502"), "{e}");
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    // Connection refused: retried, then Transient; connect_once tries once.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    drop(l);
    let cfg = ws_config(url, fast(2));
    let e = timeout(LIMIT, ws::connect(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    let e = timeout(LIMIT, ws::connect_once(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
}
