//! `/realtime` end to end: a real WebSocket client → the gateway → the loopback realtime
//! provider, every client message of the protocol, format conversion both ways, function calls,
//! cancel and barge-in, provider failures, and the hostile-client classes.

mod common;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

/// 20 ms PCM16 frames of a tone at `rate`, `ms` long.
fn tone_frames(rate: u32, ms: u32) -> Vec<Vec<u8>> {
    let n = (rate * ms / 1000) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| ((i as f32 * 0.1).sin() * 9000.0) as i16)
        .collect();
    samples
        .chunks((rate / 50) as usize)
        .map(|c| c.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect()
}

async fn open(server: &TestServer, config: Value) -> (WsClient, Value) {
    let mut c = WsClient::connect(&server.ws_url("/realtime")).await;
    let mut msg = json!({"type":"config","provider":"loopback"});
    for (k, v) in config.as_object().unwrap() {
        msg[k] = v.clone();
    }
    c.send_json(msg).await;
    let created = c.json().await;
    assert_eq!(created["type"], "session_created", "{created}");
    (c, created)
}

/// Every frame until `type` arrives: (JSON messages, binary frames).
async fn until(c: &mut WsClient, ty: &str) -> (Vec<Value>, Vec<Vec<u8>>) {
    let (mut json, mut bin) = (Vec::new(), Vec::new());
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) => {
                let done = v["type"] == ty;
                json.push(v);
                if done {
                    return (json, bin);
                }
            }
            Ok(Frame::Binary(b)) => bin.push(b),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("no {ty} within 10 s; saw {json:?}"),
        }
    }
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().map(|m| m["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_spoken_turn_gives_transcripts_both_ways_and_audio() {
    let server = TestServer::start("").await;
    let (mut c, created) = open(&server, json!({"turn_detection":{"mode":"manual"}})).await;
    assert_eq!(created["provider"], "loopback");
    assert_eq!(created["model"], "loopback-1");
    assert_eq!(created["session_id"], "loopback-session");
    for f in tone_frames(24_000, 200) {
        c.send_binary(f).await;
    }
    c.send_json(json!({"type":"commit_audio"})).await;
    let (msgs, audio) = until(&mut c, "response_done").await;
    assert_eq!(
        types(&msgs),
        [
            "speech_event",
            "speech_event",
            "transcript",
            "transcript",
            "response_done"
        ]
    );
    assert_eq!(msgs[0]["event"], "started");
    assert_eq!(
        (msgs[1]["event"].as_str(), msgs[1]["audio_ms"].as_u64()),
        (Some("stopped"), Some(200))
    );
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(msgs[2]["text"], "heard 200 ms");
    assert_eq!(msgs[3]["role"], "assistant");
    // 200 ms of 24 kHz PCM16 in 20 ms frames.
    let bytes: usize = audio.iter().map(Vec::len).sum();
    assert_eq!(bytes, 24_000 * 2 / 5);
    assert!(audio.iter().all(|f| f.len() == 960));
}

#[tokio::test]
async fn audio_is_converted_both_ways_for_a_g711_client() {
    let server = TestServer::start("").await;
    let (mut c, _) = open(
        &server,
        json!({"turn_detection":{"mode":"manual"},
               "input_audio_format":"g711_ulaw","output_audio_format":"g711_ulaw"}),
    )
    .await;
    // 300 ms of 8 kHz mu-law: 160-byte frames.
    for _ in 0..15 {
        c.send_binary(vec![0x10; 160]).await;
    }
    c.send_json(json!({"type":"commit_audio"})).await;
    let (msgs, audio) = until(&mut c, "response_done").await;
    let heard = msgs.iter().find(|m| m["role"] == "user").unwrap();
    // The provider got 24 kHz PCM: the same 300 ms (give or take the resampler's tail).
    let ms: u32 = heard["text"].as_str().unwrap()[6..]
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!((280..=300).contains(&ms), "{heard}");
    // 200 ms of output at 8 kHz mu-law: 1600 bytes in 160-byte frames.
    let bytes: usize = audio.iter().map(Vec::len).sum();
    assert!((1_590..=1_610).contains(&bytes), "{bytes}");
    assert!(audio[..audio.len() - 1].iter().all(|f| f.len() == 160));
}

#[tokio::test]
async fn a_function_call_round_trip() {
    let server = TestServer::start("").await;
    let tools = json!([{"type":"function","function":{"name":"get_weather","parameters":{}}}]);
    let (mut c, _) = open(&server, json!({"tools":tools})).await;
    c.send_json(json!({"type":"text","text":"call get_weather"}))
        .await;
    let call = c.json().await;
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["call_id"], "call-1");
    c.send_json(json!({"type":"function_result","call_id":"call-1","result":"{\"temp\":21}"}))
        .await;
    let (msgs, _) = until(&mut c, "response_done").await;
    let reply = msgs.iter().find(|m| m["type"] == "transcript").unwrap();
    assert_eq!(reply["text"], "reply to: call-1 returned {\"temp\":21}");
}

#[tokio::test]
async fn cancel_mid_response_stops_its_audio() {
    let server = TestServer::start("").await;
    let (mut c, _) = open(&server, json!({"model":"realtime=1,response_ms=3000"})).await;
    c.send_json(json!({"type":"create_response"})).await;
    c.until_binary().await;
    c.send_json(json!({"type":"cancel_response"})).await;
    let (_, audio) = until(&mut c, "response_done").await;
    // Frames queued before the cancel may still arrive; then nothing.
    assert!(audio.len() <= 3, "{} frames after cancel", audio.len());
    let quiet = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(
        quiet.is_err(),
        "more output after the response ended: {quiet:?}"
    );
}

#[tokio::test]
async fn barge_in_interrupts_the_response() {
    let server = TestServer::start("").await;
    let (mut c, _) = open(
        &server,
        json!({"model":"realtime=1,response_ms=3000","turn_detection":{"mode":"manual"}}),
    )
    .await;
    c.send_json(json!({"type":"create_response"})).await;
    c.until_binary().await;
    c.send_binary(tone_frames(24_000, 20).remove(0)).await;
    let (msgs, audio) = until(&mut c, "response_done").await;
    assert!(types(&msgs).contains(&"response_interrupted"), "{msgs:?}");
    assert!(
        audio.len() <= 3,
        "{} frames after the interruption",
        audio.len()
    );
}

#[tokio::test]
async fn update_session_is_applied() {
    let server = TestServer::start("").await;
    let (mut c, _) = open(&server, json!({})).await;
    c.send_json(json!({"type":"update_session","instructions":"be brief","temperature":0.7}))
        .await;
    assert_eq!(c.json().await["type"], "session_updated");
    c.send_json(json!({"type":"update_session","provider":"other"}))
        .await;
    c.expect_error("invalid_config").await;
}

#[tokio::test]
async fn provider_errors_and_ends_reach_the_client_and_the_connection_survives() {
    let server = TestServer::start("").await;
    let (mut c, _) = open(&server, json!({"model":"fault=error"})).await;
    c.send_json(json!({"type":"create_response"})).await;
    let e = c.json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("provider_rate_limited"))
    );
    for fault in ["fault=fatal", "fault=panic"] {
        let mut config = json!({"type":"config","provider":"loopback","model":fault});
        c.send_json(config.take()).await;
        assert_eq!(c.json().await["type"], "session_created");
        c.send_json(json!({"type":"create_response"})).await;
        let e = c.json().await;
        assert_eq!(e["type"], "error", "{fault}: {e}");
    }
    // A fresh config works on the same connection.
    c.send_json(json!({"type":"config","provider":"loopback"}))
        .await;
    assert_eq!(c.json().await["type"], "session_created");
    c.send_json(json!({"type":"text","text":"hello"})).await;
    until(&mut c, "response_done").await;
}

#[tokio::test]
async fn hostile_messages_get_clear_errors_and_lose_nothing() {
    let server = TestServer::start("").await;
    let mut c = WsClient::connect(&server.ws_url("/realtime")).await;
    c.send_text("{not json").await;
    c.expect_error("invalid_message").await;
    c.send_json(json!({"type":"no_such_type"})).await;
    c.expect_error("invalid_message").await;
    c.send_binary(vec![0; 960]).await;
    c.expect_error("invalid_config").await;
    c.send_json(json!({"type":"text","text":"no session"}))
        .await;
    c.expect_error("invalid_config").await;
    for bad in [
        json!({"type":"config","provider":"loopback","temperature":5.0}),
        json!({"type":"config","provider":"loopback","input_sample_rate":0}),
        json!({"type":"config","provider":"loopback","output_sample_rate":4294967295u32}),
        json!({"type":"config","provider":"loopback","max_response_tokens":0}),
        json!({"type":"config","provider":"loopback","turn_detection":{"mode":"psychic"}}),
        json!({"type":"config","provider":"loopback","turn_detection":{"mode":"server_vad","threshold":7}}),
        json!({"type":"config","provider":"loopback","modalities":["smell"]}),
        json!({"type":"config","provider":"loopback","tools":[{"type":"function"}]}),
        json!({"type":"config","provider":"loopback","input_audio_format":"aiff"}),
        json!({"type":"config","provider":"loopback","unknown_field":1}),
        json!({"type":"config","provider":"loopback","instructions":"x".repeat(70_000)}),
    ] {
        c.send_json(bad.clone()).await;
        let e = c.json().await;
        assert_eq!(e["type"], "error", "{bad}: {e}");
    }
    let tools: Vec<Value> = (0..200)
        .map(|i| json!({"type":"function","function":{"name":format!("f{i}")}}))
        .collect();
    c.send_json(json!({"type":"config","provider":"loopback","tools":tools}))
        .await;
    c.expect_error("invalid_config").await;
    c.send_json(json!({"type":"config","provider":"no-such-provider"}))
        .await;
    let e = c.json().await;
    assert_eq!(e["type"], "error");
    c.send_text(&"x".repeat(1024 * 1024 + 1)).await;
    c.expect_error("message_too_large").await;
    // Still serving.
    c.send_json(json!({"type":"config","provider":"loopback"}))
        .await;
    assert_eq!(c.json().await["type"], "session_created");
    c.send_json(json!({"type":"text","text":"still here"}))
        .await;
    until(&mut c, "response_done").await;
}

#[tokio::test]
async fn realtime_requires_auth_like_ws() {
    let server =
        TestServer::start("auth: { required: true, api_secrets: [{ id: c1, secret: s3cret }] }\n")
            .await;
    let mut c = WsClient::connect(&server.ws_url("/realtime")).await;
    assert_eq!(c.json().await["type"], "auth_required");
    c.send_json(json!({"type":"config","provider":"loopback"}))
        .await;
    c.expect_error("auth_required").await;
    let mut c = WsClient::connect(&server.ws_url("/realtime")).await;
    assert_eq!(c.json().await["type"], "auth_required");
    c.send_json(json!({"type":"auth","token":"s3cret"})).await;
    assert_eq!(c.json().await["type"], "authenticated");
    c.send_json(json!({"type":"config","provider":"loopback"}))
        .await;
    assert_eq!(c.json().await["type"], "session_created");
}

#[tokio::test]
async fn processors_run_on_realtime_audio_both_ways() {
    let server = TestServer::start(
        "plugins:\n  processors:\n    double: { type: level-vad, config: { gain: 2 } }\n    crashy: { type: level-vad, config: { panic_after: 1 } }\n",
    )
    .await;
    let peak = |frames: &[Vec<u8>]| {
        frames
            .iter()
            .flat_map(|f| {
                f.chunks_exact(2)
                    .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])).abs())
            })
            .max()
            .unwrap_or(0)
    };
    let (mut c, _) = open(&server, json!({"turn_detection":{"mode":"manual"}})).await;
    c.send_json(json!({"type":"create_response"})).await;
    let (_, plain) = until(&mut c, "response_done").await;
    let (mut c, _) = open(
        &server,
        json!({"turn_detection":{"mode":"manual"},"output_pipeline":["double"],"pipeline":["crashy"]}),
    )
    .await;
    c.send_json(json!({"type":"create_response"})).await;
    let (_, doubled) = until(&mut c, "response_done").await;
    assert!((peak(&doubled) - 2 * peak(&plain)).abs() <= 2);
    // The input processor panics on its second frame: reported once, the turn still works.
    for f in tone_frames(24_000, 100) {
        c.send_binary(f).await;
    }
    let (msgs, _) = until(&mut c, "error").await;
    let e = msgs.last().unwrap();
    assert_eq!(e["code"], "processor_failed", "{e}");
    c.send_json(json!({"type":"commit_audio"})).await;
    let (msgs, _) = until(&mut c, "response_done").await;
    assert!(msgs.iter().any(|m| m["role"] == "user"), "{msgs:?}");
}

#[tokio::test]
async fn post_stt_text_processors_run_on_the_users_transcripts() {
    // Links the built-in processors (redact_pii) into this test binary.
    let _ = waav_processors::PROCESSOR_IDS;
    let server = TestServer::start(
        "plugins:\n  processors:\n    leak: { type: text-probe, config: { append: \" mail me at jo@example.com\" } }\n    pii: { type: redact_pii }\n",
    )
    .await;
    let (mut c, _) = open(
        &server,
        json!({"turn_detection":{"mode":"manual"},"post_pipeline":["leak","pii"]}),
    )
    .await;
    for f in tone_frames(24_000, 200) {
        c.send_binary(f).await;
    }
    c.send_json(json!({"type":"commit_audio"})).await;
    let (msgs, _) = until(&mut c, "response_done").await;
    let said = |role: &str| {
        msgs.iter()
            .find(|m| m["type"] == "transcript" && m["role"] == role)
            .and_then(|m| m["text"].as_str())
            .unwrap_or_else(|| panic!("no {role} transcript: {msgs:?}"))
            .to_owned()
    };
    let user = said("user");
    assert!(user.starts_with("heard 200 ms mail me at "), "{user}");
    assert!(!user.contains("jo@example.com"), "{user}");
    // The assistant's text is what its audio says: not rewritten.
    assert!(!said("assistant").contains("mail me"), "{msgs:?}");
    // A name that is not configured refuses the config.
    let mut c = WsClient::connect(&server.ws_url("/realtime")).await;
    c.send_json(json!({"type":"config","provider":"loopback","post_pipeline":["nope"]}))
        .await;
    let e = c.json().await;
    assert_eq!(e["type"], "error", "{e}");
}
