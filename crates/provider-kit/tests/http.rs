//! The HTTP client and body readers against a real local server (127.0.0.1 only).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::timeout;
use waav_provider_kit::http::{chunks, sse, HttpClient, HttpClientConfig};
use waav_provider_kit::{ErrorCategory, PluginError, Secret};

const LIMIT: Duration = Duration::from_secs(10);
const KEY: &str = "sk-test-SECRET-4242";

type Feed = Arc<Mutex<Option<futures::channel::mpsc::Receiver<Result<Bytes, std::io::Error>>>>>;

async fn stream_handler(State(feed): State<Feed>) -> Response {
    let rx = feed.lock().await.take().expect("one streaming request");
    Body::from_stream(rx).into_response()
}

async fn status_handler(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    let mut h = HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    let body = format!("{{\"error\":\"key {KEY} is {code}\"}}");
    (StatusCode::from_u16(code).unwrap(), h, body).into_response()
}

async fn sse_handler() -> Response {
    let parts: Vec<Result<Bytes, std::io::Error>> = [
        &b": ok\r\n\r\nevent: chunk\r\ndata: {\"audio\":"[..],
        b"\"AAA\"}\r\n\r\nda",
        b"ta: done\n\n",
    ]
    .into_iter()
    .map(|p| Ok(Bytes::from_static(p)))
    .collect();
    Body::from_stream(futures::stream::iter(parts)).into_response()
}

async fn pcm_handler() -> Body {
    // Odd-sized pieces: one splits a 2-byte sample.
    let parts = [Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
    Body::from_stream(futures::stream::iter(parts.map(Ok::<_, std::io::Error>)))
}

async fn slow_handler() -> &'static str {
    tokio::time::sleep(LIMIT).await;
    "late"
}

async fn serve(feed: Feed) -> String {
    let app = Router::new()
        .route("/stream", get(stream_handler))
        .route("/status/{code}", get(status_handler))
        .route("/sse", get(sse_handler))
        .route("/pcm", get(pcm_handler))
        .route("/slow", get(slow_handler))
        .with_state(feed);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn client(timeout: Option<Duration>) -> HttpClient {
    HttpClient::new(HttpClientConfig {
        timeout,
        secrets: vec![Secret::new(KEY)],
        context: "tts".into(),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn streaming_body_arrives_chunk_by_chunk() {
    let (mut tx, rx) = futures::channel::mpsc::channel(1);
    let base = serve(Arc::new(Mutex::new(Some(rx)))).await;
    let c = client(None);
    // The first chunk is queued before the request; the second only after the client saw the first.
    use futures::SinkExt;
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    let mut body = timeout(LIMIT, c.send_streaming(c.get(&format!("{base}/stream"))))
        .await
        .unwrap()
        .unwrap();
    let first = timeout(LIMIT, body.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, "first");
    tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
    let second = timeout(LIMIT, body.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(second, "second");
    drop(tx);
    assert!(timeout(LIMIT, body.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn error_statuses_are_categorised_with_redacted_excerpts() {
    let base = serve(Arc::default()).await;
    let c = client(None);
    for (code, category) in [
        (401, ErrorCategory::Auth),
        (429, ErrorCategory::RateLimited),
        (503, ErrorCategory::Transient),
        (400, ErrorCategory::Permanent),
        (404, ErrorCategory::Config),
    ] {
        let e = c
            .send(c.get(&format!("{base}/status/{code}?api_key={KEY}")))
            .await
            .unwrap_err();
        assert_eq!(e.category(), category, "{code}: {e}");
        let text = e.to_string();
        assert!(text.contains(&format!("tts: HTTP {code}")), "{text}");
        assert!(text.contains("\"error\""), "excerpt kept: {text}");
        assert!(!text.contains(KEY), "secret leaked: {text}");
        if code == 429 {
            assert!(
                matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3))
            );
        }
    }
}

#[tokio::test]
async fn transport_failures_map_and_never_leak_the_url_key() {
    let base = serve(Arc::default()).await;
    let c = client(Some(Duration::from_millis(200)));
    let e = c
        .send(c.get(&format!("{base}/slow?key={KEY}")))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    assert!(!e.to_string().contains(KEY));

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = client(None);
    let e = c
        .send(c.get(&format!("http://127.0.0.1:{port}/x?api_key={KEY}")))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(!e.to_string().contains(KEY), "{e}");
}

#[tokio::test]
async fn sse_and_rechunking_over_http() {
    let base = serve(Arc::default()).await;
    let c = client(None);
    let body = c
        .send_streaming(c.get(&format!("{base}/sse")))
        .await
        .unwrap();
    let events: Vec<_> = sse::events(body, 1024, 4096, c.redactor().clone())
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event, "chunk");
    assert_eq!(events[0].data, "{\"audio\":\"AAA\"}");
    assert_eq!(events[1].event, "message");
    assert_eq!(events[1].data, "done");

    let body = c
        .send_streaming(c.get(&format!("{base}/pcm")))
        .await
        .unwrap();
    let pieces: Vec<_> = chunks::rechunk(body, 4, 2)
        .map(Result::unwrap)
        .collect()
        .await;
    assert!(pieces.iter().all(|p| p.len() <= 4 && p.len() % 2 == 0));
    assert_eq!(pieces.concat(), b"abcdefgh");
}

#[tokio::test]
async fn tts_audio_streams_into_the_sink_and_stops_when_it_refuses() {
    use waav_plugin_api::{AudioSink, CancelFlag, TtsEvent};
    use waav_provider_kit::http::audio::{expect_audio, stream_into, StreamEnd};
    let app = axum::Router::new()
        .route(
            "/audio",
            axum::routing::get(|| async {
                let chunks = futures::stream::iter(
                    (0..4u8).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i; 100]))),
                );
                (
                    [("content-type", "audio/pcm")],
                    axum::body::Body::from_stream(chunks),
                )
            }),
        )
        .route(
            "/json",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"error": "nope"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let redactor = waav_provider_kit::redact::Redactor::new();
    let resp = client
        .get(format!("http://{addr}/json"))
        .send()
        .await
        .unwrap();
    assert!(expect_audio(&resp, "t", &redactor).is_err());

    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let resp = client
        .get(format!("http://{addr}/audio"))
        .send()
        .await
        .unwrap();
    expect_audio(&resp, "t", &redactor).unwrap();
    let end = stream_into(
        resp,
        &sink,
        std::time::Duration::from_secs(5),
        "t",
        &redactor,
        |c| Ok(c.slice(1..)),
    )
    .await
    .unwrap();
    assert_eq!(end, StreamEnd::Complete);
    let mut total = 0;
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        total += data.len();
    }
    assert_eq!(total, 4 * 99, "every chunk, transformed");

    let flag = CancelFlag::new();
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let sink = AudioSink::new(1, tx, flag.clone());
    flag.cancel_up_to(1);
    let resp = client
        .get(format!("http://{addr}/audio"))
        .send()
        .await
        .unwrap();
    let end = stream_into(
        resp,
        &sink,
        std::time::Duration::from_secs(5),
        "t",
        &redactor,
        Ok,
    )
    .await
    .unwrap();
    assert_eq!(end, StreamEnd::Stopped);
}
