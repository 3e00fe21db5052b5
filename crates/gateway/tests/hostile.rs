//! The hostile-client suite: each class of bad input or bad peer, over real sockets, against a
//! real gateway. After every case the gateway must still answer `GET /` within a second, serve a
//! fresh session end to end, and not have run away with memory; most cases also check that the
//! offending connection itself survived (or was closed with a code) and released its slot.

mod common;

use common::ws::{stt_config, tts_config, utterance, Frame, WsClient};
use common::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Short bounds so the slow-peer cases finish quickly.
const HOSTILE: &str = "session: { client_stall_ms: 300, provider_stall_ms: 300, auth_timeout_secs: 1, max_queued_speaks: 8, end_of_turn_ms: 200, end_of_turn_max_ms: 400 }\n";
/// Memory a case may leave behind before it counts as runaway (the failures this guards
/// against grew by gigabytes).
const RSS_SLACK_KB: u64 = 400 * 1024;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The gateway is alive and well after a case: `GET /` answers within 1 s, a fresh session
/// transcribes an utterance, and memory has not grown past the slack since `rss_before`.
async fn assert_gateway_healthy(server: &TestServer, rss_before: u64) {
    let health = tokio::time::timeout(Duration::from_secs(1), reqwest::get(server.url("/")))
        .await
        .expect("GET / answers within 1 s")
        .expect("GET / succeeds");
    assert_eq!(health.status(), 200);
    let auth = &server.gateway.state().config.auth;
    let token = auth
        .required
        .then(|| auth.api_secrets[0].secret.expose().to_owned());
    let mut c = WsClient::connect_with(&server.ws_url("/ws"), token.as_deref())
        .await
        .expect("a fresh session is accepted");
    c.configure(json!({"type":"config","stt_config": stt_config("loopback-stt", "", 16000)}))
        .await;
    for f in utterance(300, 300, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert_eq!(v["provider"], "loopback", "{v}");
    // Give a leaking session left behind a moment to show itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = rss_kb().saturating_sub(rss_before);
    assert!(
        grown < RSS_SLACK_KB,
        "memory grew by {grown} KiB during the case"
    );
}

/// Waits (bounded) until the gateway holds no connection slot.
async fn assert_slots_released(server: &TestServer) {
    let limiter = &server.gateway.state().limiter;
    for _ in 0..250 {
        if limiter.active() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} connection slot(s) still held", limiter.active());
}

fn config(stt: Option<Value>, tts: Option<Value>) -> Value {
    let mut c = json!({"type":"config"});
    if let Some(s) = stt {
        c["stt_config"] = s;
    }
    if let Some(t) = tts {
        c["tts_config"] = t;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers_are_refused_before_anything_is_built() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut huge_rate = stt_config("loopback-stt", "", 16000);
    huge_rate["sample_rate"] = json!(4_294_967_295u32);
    let mut no_channels = stt_config("loopback-stt", "", 16000);
    no_channels["channels"] = json!(0);
    let mut many_channels = stt_config("loopback-stt", "", 16000);
    many_channels["channels"] = json!(65535);
    let mut low_rate = stt_config("loopback-stt", "", 16000);
    low_rate["sample_rate"] = json!(1);
    let mut tts_rate = tts_config("loopback", "");
    tts_rate["sample_rate"] = json!(4_294_967_295u32);
    let mut tts_timeout = tts_config("loopback", "");
    tts_timeout["request_timeout"] = json!(u64::MAX);
    let mut tts_connect = tts_config("loopback", "");
    tts_connect["connection_timeout"] = json!(86_400);
    let mut tts_speed = tts_config("loopback", "");
    tts_speed["speaking_rate"] = json!(1e30);
    let mut tts_pron = tts_config("loopback", "");
    tts_pron["pronunciations"] = json!((0..1000)
        .map(|i| json!({"word": format!("w{i}"), "pronunciation": "x"}))
        .collect::<Vec<_>>());
    let mut tts_voice = tts_config("loopback", "");
    tts_voice["voice_id"] = json!("v".repeat(10_000));
    for cfg in [
        config(Some(huge_rate), None),
        config(Some(no_channels), None),
        config(Some(many_channels), None),
        config(Some(low_rate), None),
        config(None, Some(tts_rate)),
        config(None, Some(tts_timeout)),
        config(None, Some(tts_connect)),
        config(None, Some(tts_speed)),
        config(None, Some(tts_pron)),
        config(None, Some(tts_voice)),
    ] {
        c.send_json(cfg.clone()).await;
        let msg = c.expect_error("invalid_config").await;
        assert!(msg.starts_with("Invalid "), "{cfg}: {msg}");
    }
    c.assert_alive().await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_nested_messages_cost_an_error() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    for bad in [
        "{",
        "null",
        "[]",
        "\"config\"",
        r#"{"type":"config","stt_config":{"provider":1}}"#,
        r#"{"type":"speak","text":["a"]}"#,
        r#"{"type":"config","stt_config":{"provider":"loopback-stt","language":"en-US","sample_rate":-1,"channels":1,"punctuation":true,"encoding":"linear16","model":""}}"#,
        r#"{"type":"config","stt_config":{"provider":"loopback-stt","language":"en-US","sample_rate":1e400,"channels":1,"punctuation":true,"encoding":"linear16","model":""}}"#,
    ] {
        c.send_text(bad).await;
        c.expect_error("invalid_message").await;
    }
    // Deeply nested JSON: serde_json's recursion limit answers it, nothing overflows the stack.
    let nested = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
    c.send_text(&nested).await;
    c.expect_error("invalid_message").await;
    let nested_payload = format!(
        r#"{{"type":"custom","message_type":"x","payload":{}{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    c.send_text(&nested_payload).await;
    c.expect_error("invalid_message").await;
    c.send_text(&"x".repeat(1024 * 1024 + 1)).await;
    c.expect_error("message_too_large").await;
    c.send_json(json!({"type":"speak","text":"a".repeat(200 * 1024)}))
        .await;
    c.expect_error("field_too_large").await;
    c.assert_alive().await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audio_frames_cost_an_error_and_keep_the_stream() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    // Audio before config: one error, not one per frame.
    for _ in 0..20 {
        c.send_binary(vec![0; 640]).await;
    }
    c.expect_error("audio_disabled").await;
    c.assert_alive().await;
    c.configure(config(Some(stt_config("loopback-stt", "", 16000)), None))
        .await;
    c.send_binary(vec![0; 641]).await;
    c.expect_error("invalid_audio_frame").await;
    c.send_binary(vec![0; 5 * 1024 * 1024 + 2]).await;
    c.expect_error("audio_frame_too_large").await;
    c.send_binary(Vec::new()).await;
    c.assert_alive().await;
    // Whole frames still get through and transcribe.
    for f in utterance(300, 300, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert_eq!(v["provider"], "loopback");
    // Over the transport's 10 MiB cap the connection is dropped, and nothing else is.
    let mut big = WsClient::connect(&server.ws_url("/ws")).await.into_socket();
    // The server may hang up while the frame is still being written.
    let _ = big.send(Message::binary(vec![0; 11 * 1024 * 1024])).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match big.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the oversized connection is ended");
    assert_slots_released_except(&server, 1).await;
    drop(c);
    assert_gateway_healthy(&server, rss).await;
}

async fn assert_slots_released_except(server: &TestServer, open: usize) {
    let limiter = &server.gateway.state().limiter;
    for _ in 0..250 {
        if limiter.active() == open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} slots held, expected {open}", limiter.active());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_speaks_are_bounded_by_the_queue() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(None, Some(tts_config("loopback", "realtime=1"))))
        .await;
    for i in 0..300 {
        c.send_json(json!({"type":"speak","text":format!("sentence number {i}.")}))
            .await;
    }
    c.send_json(json!({"type":"clear"})).await;
    c.send_json(json!({"type":"custom","message_type":"no-such-type","payload":{}}))
        .await;
    let mut full = 0;
    loop {
        match c.recv().await {
            Frame::Json(v) if v["code"] == "tts_queue_full" => full += 1,
            Frame::Json(v) if v["code"] == "unknown_custom_type" => break,
            Frame::Json(v) if v["type"] == "error" => panic!("unexpected {v}"),
            Frame::Json(_) | Frame::Binary(_) => {}
            Frame::Closed(code) => panic!("closed {code:?}"),
        }
    }
    assert!(
        full >= 250,
        "only {full} of 300 pipelined speaks were refused"
    );
    drop(c);
    assert_slots_released(&server).await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_its_slot_released() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(None, Some(tts_config("loopback", "ms_per_char=10"))))
        .await;
    // ~1000 s of audio per request (32 MB), far more than the socket buffers hold; then the
    // client stops reading altogether.
    let text = "a".repeat(100 * 1024);
    for _ in 0..4 {
        c.send_json(json!({"type":"speak","text":text})).await;
    }
    assert_slots_released(&server).await;
    drop(c);
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_reads_is_disconnected() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(
        Some(stt_config("loopback-stt", "fault=deaf", 16000)),
        None,
    ))
    .await;
    for f in utterance(3000, 0, 16000) {
        c.send_binary(f).await;
    }
    // It is reopened (it stays deaf) until the reconnect budget is spent, then reported.
    let mut reopened = 0;
    loop {
        let v = c.json().await;
        if v["type"] == "provider_switched" {
            reopened += 1;
            continue;
        }
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        if code == "provider_stalled" {
            break;
        }
        assert_eq!(code, "stt_backpressure", "{v}");
    }
    assert_eq!(reopened, 2, "the default reconnect budget");
    // The provider is gone; the connection is not.
    c.assert_alive().await;
    c.configure(config(Some(stt_config("loopback-stt", "", 16000)), None))
        .await;
    drop(c);
    assert_slots_released(&server).await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_times_out_per_request() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", "fault=deaf");
    tts["request_timeout"] = json!(1);
    c.configure(config(None, Some(tts))).await;
    c.send_json(json!({"type":"speak","text":"hello"})).await;
    c.expect_error("provider_timeout").await;
    let (done, _) = c.until("tts_playback_complete").await;
    assert!(done["timestamp"].as_u64().is_some());
    c.assert_alive().await;
    drop(c);
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reconfig_leaves_the_working_session_as_it_was() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(
        Some(stt_config("loopback-stt", "", 16000)),
        Some(tts_config("loopback", "")),
    ))
    .await;
    c.send_json(config(
        Some(stt_config("no-such-provider", "", 16000)),
        None,
    ))
    .await;
    let v = c.json().await;
    assert_eq!(v["type"], "error", "{v}");
    let mut bad_tts = tts_config("loopback", "");
    bad_tts["sample_rate"] = json!(0);
    c.send_json(config(
        Some(stt_config("loopback-stt", "", 16000)),
        Some(bad_tts),
    ))
    .await;
    c.expect_error("invalid_config").await;
    // Both old providers still serve.
    for f in utterance(300, 300, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert_eq!(v["provider"], "loopback");
    c.send_json(json!({"type":"speak","text":"still here"}))
        .await;
    let (_, audio) = c.until("tts_playback_complete").await;
    assert!(audio > 0);
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_at_once_after_speak() {
    let server = TestServer::start(HOSTILE).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(None, Some(tts_config("loopback", "realtime=1"))))
        .await;
    c.send_json(json!({"type":"speak","text":"a long sentence that is still playing when the client hangs up"}))
        .await;
    // Wait for audio to flow, then hang up mid-playback. The guard is generous; before the fix
    // the handshake could take the client's full 10 s timeout.
    c.until_binary().await;
    let answered = c.close_answered_within(Duration::from_secs(3)).await;
    assert!(answered, "the server answers the close frame");
    // Unpaced audio keeps the writer busy when the close arrives: a frame written after it
    // fails, which once ended the writer before the close reply was flushed.
    for round in 0..20 {
        let mut c = WsClient::connect(&server.ws_url("/ws")).await;
        c.configure(config(None, Some(tts_config("loopback", ""))))
            .await;
        let text = "a long sentence that is still playing when the client hangs up ".repeat(20);
        c.send_json(json!({"type":"speak","text":text})).await;
        c.until_binary().await;
        let answered = c.close_answered_within(Duration::from_secs(3)).await;
        assert!(
            answered,
            "round {round}: the server answers the close frame"
        );
    }
    assert_slots_released(&server).await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sessions_with_going_away() {
    let server = TestServer::start(HOSTILE).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(config(Some(stt_config("loopback-stt", "", 16000)), None))
        .await;
    let stopped = tokio::spawn(server.stop());
    c.expect_error("server_shutdown").await;
    assert_eq!(c.recv().await, Frame::Closed(Some(1001)));
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server stops once its sessions closed")
        .unwrap();
}

const AUTH: &str = "auth: { required: true, api_secrets: [{ id: tester, secret: s3cret }] }\nsession: { auth_timeout_secs: 1 }\nserver: { metrics: auth }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_auth_socket_is_closed_after_the_auth_timeout() {
    let server = TestServer::start(AUTH).await;
    let rss = rss_kb();
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    assert_eq!(c.json().await["type"], "auth_required");
    let msg = c.expect_error("auth_timeout").await;
    assert!(msg.contains("1 s"), "{msg}");
    assert_eq!(c.recv().await, Frame::Closed(Some(4001)));
    assert_slots_released(&server).await;
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_path_or_method_bypasses_auth() {
    let server = TestServer::start(AUTH).await;
    let rss = rss_kb();
    let http = reqwest::Client::new();
    let routes = [
        ("GET", "/voices"),
        ("GET", "/plugins"),
        ("GET", "/health/plugins"),
        ("GET", "/metrics"),
        ("POST", "/speak"),
    ];
    let tricks: [(&str, &str); 6] = [
        ("upgrade", "x"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("authorization", "Bearer wrong"),
        ("authorization", "Basic czNjcmV0"),
        ("x-forwarded-for", "127.0.0.1"),
    ];
    for (method, path) in routes {
        let method: reqwest::Method = method.parse().unwrap();
        for (h, v) in tricks {
            let res = http
                .request(method.clone(), server.url(path))
                .header(h, v)
                .body(r#"{"text":"hi","tts_config":{"provider":"loopback","model":""}}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "{method} {path} with {h}: {v}");
        }
        let res = http
            .request(method.clone(), server.url(&format!("{path}?token=wrong")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {path}?token=wrong");
        let res = http
            .request(method.clone(), server.url(path))
            .bearer_auth("s3cret")
            .body(r#"{"text":"hi","tts_config":{"provider":"loopback","model":""}}"#)
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 401, "{method} {path} with the right token");
    }
    // Path and method variants reach no handler without auth.
    for path in [
        "/voices/",
        "//voices",
        "/VOICES",
        "/voices%2F",
        "/plugins/../voices",
    ] {
        let res = http.get(server.url(path)).send().await.unwrap();
        assert!(
            res.status() == 401 || res.status() == 404,
            "{path}: {}",
            res.status()
        );
    }
    let res = http.delete(server.url("/voices")).send().await.unwrap();
    assert!(
        res.status() == 401 || res.status() == 405,
        "{}",
        res.status()
    );
    // Route-plugin routes sit behind auth unless their plugin declared them public.
    let res = http.get(server.url("/testkit/ping")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(server.url("/testkit/ping"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "pong");
    let res = http
        .get(server.url("/testkit/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "open");
    let res = http
        .post(server.url("/testkit/echo"))
        .bearer_auth("s3cret")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "hello");
    // Its own connection: the server answers 413 and hangs up without reading the rest, so the
    // client may see the reset before the status.
    let big = reqwest::Client::new()
        .post(server.url("/testkit/echo"))
        .bearer_auth("s3cret")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await;
    if let Ok(res) = big {
        assert_eq!(res.status(), 413, "a plugin route's body is capped");
    }
    let plugins: Value = http
        .get(server.url("/plugins"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let route = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "route")
        .expect("the testkit route plugin is listed");
    assert_eq!(
        route["routes"][1],
        json!({"method": "GET", "path": "/testkit/public", "public": true})
    );
    // Liveness stays open.
    let res = http.get(server.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // A WebSocket with a wrong token is refused at upgrade.
    assert_eq!(
        WsClient::connect_with(&server.ws_url("/ws"), Some("wrong"))
            .await
            .err(),
        Some(401)
    );
    assert_gateway_healthy(&server, rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_applied_when_configured() {
    let server =
        TestServer::start("server: { cors_allowed_origins: [\"https://app.example\"] }\n").await;
    let rss = rss_kb();
    let http = reqwest::Client::new();
    let res = http
        .request(reqwest::Method::OPTIONS, server.url("/speak"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = http
        .get(server.url("/"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let plain = TestServer::start("").await;
    let res = http
        .get(plain.url("/"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    assert_gateway_healthy(&server, rss).await;
}
