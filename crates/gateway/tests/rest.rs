//! `POST /speak`, `GET /voices` and `GET /metrics` over HTTP.

mod common;

use common::TestServer;
use serde_json::{json, Value};

#[tokio::test]
async fn speak_returns_the_whole_audio_with_format_headers() {
    let server = TestServer::start("").await;
    let client = reqwest::Client::new();
    let res = client
        .post(server.url("/speak"))
        .json(&json!({"text":"0123456789","tts_config":{"provider":"loopback","model":"","sample_rate":8000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/pcm");
    assert_eq!(res.headers()["x-audio-format"], "linear16");
    assert_eq!(res.headers()["x-sample-rate"], "8000");
    assert_eq!(res.bytes().await.unwrap().len(), 1600, "100 ms at 8 kHz");

    let res = client
        .post(server.url("/speak"))
        .json(&json!({"text":"hi","tts_config":{"provider":"loopback","model":"","audio_format":"wav"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "audio/wav");
    assert!(res.bytes().await.unwrap().starts_with(b"RIFF"));

    let res = client
        .post(server.url("/speak"))
        .json(&json!({"text":"hi","tts_config":{"provider":"loopback","model":"","audio_format":"mulaw","sample_rate":8000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "audio/basic");
}

#[tokio::test]
async fn speak_errors_have_the_documented_statuses_and_bodies() {
    let server = TestServer::start("").await;
    let client = reqwest::Client::new();
    let post = |body: Value| client.post(server.url("/speak")).json(&body).send();

    let res = post(json!({"text":"  ","tts_config":{"provider":"loopback","model":""}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error":"Text cannot be empty"})
    );

    let res = post(
        json!({"text":"a".repeat(10 * 1024 + 1),"tts_config":{"provider":"loopback","model":""}}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);

    let res = post(json!({"text":"hi","tts_config":{"provider":"nope","model":""}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "Unsupported provider: nope"
    );

    let res = post(json!({"text":"hi","tts_config":{"provider":"loopback","model":"fault=error"}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 500);

    let res = post(json!({"text":"hi","tts_config":{"provider":"loopback","model":"fault=stall","request_timeout":1}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 504);

    let res = client
        .post(server.url("/speak"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("Invalid request body"));
}

#[tokio::test]
async fn voices_are_keyed_by_provider() {
    let server = TestServer::start("").await;
    let body: Value = reqwest::get(server.url("/voices"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let voices = body["loopback"].as_array().unwrap();
    assert_eq!(voices[0]["id"], "tone-a4");
    for field in ["id", "sample", "name", "accent", "gender", "language"] {
        assert!(voices[0].get(field).is_some(), "{field}");
    }

    let server = TestServer::start("plugins: { tts: { loopback: { enabled: false } } }\n").await;
    let body: Value = reqwest::get(server.url("/voices"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = TestServer::start("").await;
    reqwest::Client::new()
        .post(server.url("/speak"))
        .json(&json!({"text":"hello","tts_config":{"provider":"loopback","model":""}}))
        .send()
        .await
        .unwrap();
    let res = reqwest::get(server.url("/metrics")).await.unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains("waav_tts_cache_misses_total"), "{text}");
    assert!(
        text.contains("waav_provider_latency_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    for yaml in [
        "limits: { requests_per_second: 1, burst: 2 }\n",
        "plugins: { middleware: { rate_limiting: { type: token_bucket, config: { requests_per_second: 1, burst: 2 } } } }\n",
    ] {
        let server = TestServer::start(yaml).await;
        for _ in 0..2 {
            assert_eq!(reqwest::get(server.url("/")).await.unwrap().status(), 200, "{yaml}");
        }
        let res = reqwest::get(server.url("/")).await.unwrap();
        assert_eq!(res.status(), 429, "{yaml}");
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.text().await.unwrap(), "Too Many Requests! Wait for 1s");
    }
}
