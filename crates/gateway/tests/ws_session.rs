//! `/ws` end to end over real sockets, driven by a real WebSocket client, with the loopback
//! providers from the testkit.

mod common;

use common::ws::{stt_config, tts_config, utterance, Frame, WsClient};
use common::TestServer;
use serde_json::json;

const FAST_TURNS: &str = "session: { end_of_turn_ms: 200, end_of_turn_max_ms: 400 }\n";

async fn server() -> TestServer {
    TestServer::start(FAST_TURNS).await
}

#[tokio::test]
async fn stt_session_streams_interims_finals_and_a_synthetic_end_of_turn() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let ready = c
        .configure(json!({"type":"config","stream_id":"call-42","stt_config": stt_config("loopback-stt", "", 16000)}))
        .await;
    assert_eq!(
        ready,
        json!({"type":"ready","stream_id":"call-42","livekit_url":""})
    );
    for f in utterance(600, 400, 16000) {
        c.send_binary(f).await;
    }
    let mut interims = 0;
    let last = loop {
        let v = c.json().await;
        assert_eq!(v["type"], "stt_result", "{v}");
        if v["is_final"] == true {
            break v;
        }
        interims += 1;
        assert_eq!(v["provider"], "loopback");
    };
    assert!(
        interims >= 3,
        "an interim every 100 ms of a 600 ms utterance, got {interims}"
    );
    assert_eq!(last["transcript"], "utterance 1: 600 ms");
    assert_eq!(last["is_speech_final"], false);
    // No further final within end_of_turn_ms: the gateway ends the turn itself.
    let eot = c.json().await;
    assert_eq!(
        eot,
        json!({"type":"stt_result","transcript":"","is_final":true,"is_speech_final":true,"confidence":1.0})
    );
}

#[tokio::test]
async fn provider_speech_finals_are_forwarded_without_a_synthetic_one() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","stt_config": stt_config("loopback", "speech_final=1", 8000)}),
    )
    .await;
    for round in 1..=2 {
        for f in utterance(300, 400, 8000) {
            c.send_binary(f).await;
        }
        let fin = loop {
            let v = c.json().await;
            if v["is_final"] == true {
                break v;
            }
        };
        assert_eq!(fin["transcript"], format!("utterance {round}: 300 ms"));
        assert_eq!(fin["is_speech_final"], true);
    }
    // Had a synthetic end of turn been scheduled it would precede this reply.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.assert_alive().await;
}

#[tokio::test]
async fn tts_session_streams_audio_then_one_playback_complete() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let ready = c
        .configure(json!({"type":"config","tts_config": tts_config("loopback", "latency_ms=50")}))
        .await;
    assert_eq!(
        ready["stream_id"].as_str().unwrap().len(),
        36,
        "a UUIDv4 when none is given"
    );
    c.send_json(json!({"type":"speak","text":"0123456789"}))
        .await;
    c.send_json(json!({"type":"speak","text":"abcdefghij","flush":true}))
        .await;
    c.send_json(json!({"type":"speak","text":"   "})).await; // ignored
    let mut audio = 0;
    loop {
        match c.recv().await {
            Frame::Binary(b) => audio += b.len(),
            Frame::Json(v) => {
                assert_eq!(v["type"], "tts_playback_complete", "{v}");
                assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
                break;
            }
            Frame::Closed(c) => panic!("closed {c:?}"),
        }
    }
    // Two texts of 10 chars: 2 × 100 ms at 16 kHz PCM16 = 6400 bytes, all before the completion.
    assert_eq!(audio, 6400);
    c.assert_alive().await;
}

#[tokio::test]
async fn a_speak_goes_one_sentence_per_request_and_counts_once() {
    let server = TestServer::start("session: { max_queued_speaks: 2 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    // Requests from the second on fail: the first sentence is heard, the second fails, and the
    // third goes with it; one error for the one `speak`.
    c.configure(
        json!({"type":"config","tts_config": tts_config("loopback", "fault=error,after=2")}),
    )
    .await;
    c.send_json(json!({"type":"speak","text":"One two. Three four! Five six?"}))
        .await;
    let (mut audio, mut errors) = (0, Vec::new());
    loop {
        match c.recv().await {
            Frame::Binary(b) => audio += b.len(),
            Frame::Json(v) if v["type"] == "tts_playback_complete" => break,
            Frame::Json(v) => errors.push(v),
            Frame::Closed(code) => panic!("closed {code:?}"),
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["type"], "error");
    // "One two." alone: 8 chars × 10 ms at 16 kHz PCM16.
    assert_eq!(audio, 8 * 10 * 32);

    // The queue bound counts `speak`s, not their sentences.
    c.configure(json!({"type":"config","tts_config": tts_config("loopback", "latency_ms=300")}))
        .await;
    let five = "One. Two. Three. Four. Five.";
    for _ in 0..3 {
        c.send_json(json!({"type":"speak","text":five})).await;
    }
    let (mut full, mut complete) = (0, 0);
    while complete == 0 {
        match c.recv().await {
            Frame::Json(v) if v["code"] == "tts_queue_full" => full += 1,
            Frame::Json(v) if v["type"] == "tts_playback_complete" => complete += 1,
            Frame::Json(v) => panic!("unexpected {v}"),
            Frame::Binary(_) => {}
            Frame::Closed(code) => panic!("closed {code:?}"),
        }
    }
    assert_eq!(full, 1, "two speaks of five sentences fit a queue of two");
    c.assert_alive().await;
}

#[tokio::test]
async fn repeated_text_is_served_from_the_cache_in_order() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config": tts_config("loopback", "chunk_ms=30")}))
        .await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        c.send_json(json!({"type":"speak","text":"cache me please"}))
            .await;
        let mut frames = Vec::new();
        loop {
            match c.recv().await {
                Frame::Binary(b) => frames.push(b),
                Frame::Json(v) if v["type"] == "tts_playback_complete" => break,
                other => panic!("{other:?}"),
            }
        }
        runs.push(frames);
    }
    assert_eq!(runs[0], runs[1], "same audio, same framing");
    let metrics = server.metrics().await;
    assert!(metrics.contains("waav_tts_cache_hits_total"), "{metrics}");
}

#[tokio::test]
async fn clear_drops_queued_and_in_flight_audio() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config": tts_config("loopback", "realtime=1")}))
        .await;
    let long = "x".repeat(300); // 3 s of audio, paced in real time
    c.send_json(json!({"type":"speak","text": long})).await;
    c.send_json(json!({"type":"speak","text": "queued behind it"}))
        .await;
    assert!(matches!(c.recv().await, Frame::Binary(_)));
    c.send_json(json!({"type":"clear"})).await;
    // A few frames may already be on the wire; then nothing more of either request.
    c.send_json(json!({"type":"speak","text":"after"})).await;
    let (_, bytes) = c.until("tts_playback_complete").await;
    // "after" is 5 chars = 50 ms = 1600 bytes; the cleared 3 s (96000 bytes) must not arrive.
    assert!(
        bytes < 1600 + 10 * 640,
        "cleared audio kept flowing: {bytes} bytes"
    );
    assert!(bytes >= 1600);
}

#[tokio::test]
async fn non_interruptible_speech_ignores_clear_and_holds_back_stt_results() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config",
        "stt_config": stt_config("loopback", "speech_final=1", 16000),
        "tts_config": tts_config("loopback", "realtime=1")}))
        .await;
    c.send_json(json!({"type":"speak","text":"x".repeat(40),"allow_interruption":false}))
        .await;
    assert!(matches!(c.recv().await, Frame::Binary(_)));
    c.send_json(json!({"type":"clear"})).await;
    for f in utterance(200, 400, 16000) {
        c.send_binary(f).await;
    }
    // 400 ms of audio plays to the end despite `clear`, and no transcript interrupts it.
    let mut audio = 640; // the first 20 ms frame
    loop {
        match c.recv().await {
            Frame::Binary(b) => audio += b.len(),
            Frame::Json(v) => {
                assert_eq!(v["type"], "tts_playback_complete", "STT result leaked: {v}");
                break;
            }
            Frame::Closed(_) => panic!("closed"),
        }
    }
    assert_eq!(audio, 12_800);
    // Once the audio has played, results flow again.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    for f in utterance(200, 400, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert!(v["transcript"].as_str().unwrap().starts_with("utterance"));
}

#[tokio::test]
async fn reconfig_replaces_providers_and_stt_only_tts_only_are_valid() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stream_id":"a","tts_config": tts_config("loopback", "")}))
        .await;
    c.send_binary(vec![0; 640]).await;
    let msg = c.expect_error("stt_not_configured").await;
    assert!(msg.starts_with("STT is not configured"), "{msg}");
    let ready = c
        .configure(json!({"type":"config","stream_id":"b","stt_config": stt_config("loopback", "speech_final=1", 16000)}))
        .await;
    assert_eq!(ready["stream_id"], "b");
    c.send_json(json!({"type":"speak","text":"hello"})).await;
    c.expect_error("tts_not_configured").await;
    for f in utterance(200, 400, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert_eq!(v["provider"], "loopback");
}

#[tokio::test]
async fn config_errors_leave_the_connection_usable() {
    std::env::remove_var("WAAV_TESTKIT_KEYED_API_KEY");
    let server = TestServer::start("session: { provider_connect_timeout_secs: 1 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;

    c.send_binary(vec![0; 320]).await;
    assert_eq!(
        c.expect_error("audio_disabled").await,
        "Audio processing is disabled. Send config message with audio=true first."
    );
    c.send_json(json!({"type":"config","stt_config": stt_config("nope", "", 16000)}))
        .await;
    assert_eq!(
        c.expect_error("unsupported_provider").await,
        "Unsupported provider: nope"
    );
    c.send_json(json!({"type":"config","stt_config": stt_config("keyed", "", 16000)}))
        .await;
    assert_eq!(
        c.expect_error("missing_api_key").await,
        "Keyed API key not configured in server environment"
    );
    let mut wrong_key = stt_config("keyed", "", 16000);
    wrong_key["api_key"] = json!("bad-key");
    c.send_json(json!({"type":"config","stt_config": wrong_key}))
        .await;
    let msg = c.expect_error("provider_auth").await;
    assert!(msg.contains("keyed: invalid API key"), "{msg}");
    c.send_json(json!({"type":"config","stt_config": stt_config("loopback", "fault=hang_on_connect", 16000)}))
        .await;
    assert_eq!(
        c.expect_error("provider_timeout").await,
        "Timeout waiting for voice providers to be ready"
    );
    c.send_json(
        json!({"type":"config","tts_config": tts_config("loopback", "fault=panic_on_connect")}),
    )
    .await;
    let msg = c.expect_error("provider_panicked").await;
    assert!(msg.contains("injected panic in connect"), "{msg}");
    c.send_json(json!({"type":"config"})).await;
    assert_eq!(
        c.expect_error("invalid_config").await,
        "At least one of stt_config or tts_config is required when audio=true"
    );
    let mut bad_voice = tts_config("loopback", "");
    bad_voice["voice_id"] = json!("baritone");
    c.send_json(json!({"type":"config","tts_config": bad_voice}))
        .await;
    let msg = c.expect_error("invalid_config").await;
    assert!(
        msg.contains("tone-a4, tone-c5"),
        "supported voices are listed: {msg}"
    );
    let mut bad_enc = stt_config("loopback", "", 16000);
    bad_enc["encoding"] = json!("aiff");
    c.send_json(json!({"type":"config","stt_config": bad_enc}))
        .await;
    c.expect_error("invalid_config").await;

    // After all that, a good config works on the same connection, with a key from the client.
    let mut good = stt_config("keyed", "", 16000);
    good["api_key"] = json!("good-key");
    c.configure(json!({"type":"config","stt_config": good}))
        .await;
}

#[tokio::test]
async fn malformed_and_oversized_input_gets_clear_errors() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.send_text("{not json").await;
    assert!(c
        .expect_error("invalid_message")
        .await
        .starts_with("Invalid message format:"));
    c.send_text(r#"{"type":"dance"}"#).await;
    assert!(c
        .expect_error("invalid_message")
        .await
        .starts_with("Invalid message format:"));
    c.send_text(r#"{"type":"config","stt_config":{"provider":"loopback","language":"en","sample_rate":16000.0,"channels":1,"punctuation":true,"encoding":"linear16","model":""}}"#).await;
    assert!(c
        .expect_error("invalid_message")
        .await
        .starts_with("Invalid message format:"));

    let big = format!(
        r#"{{"type":"speak","text":"{}"}}"#,
        "a".repeat(1024 * 1024 + 10)
    );
    let n = big.len();
    c.send_text(&big).await;
    assert_eq!(
        c.expect_error("message_too_large").await,
        format!("Message too large: {n} bytes (max 1048576 bytes)")
    );
    c.send_binary(vec![0; 5 * 1024 * 1024 + 2]).await;
    assert_eq!(
        c.expect_error("audio_frame_too_large").await,
        format!(
            "Audio frame too large: {} bytes (max 5242880 bytes)",
            5 * 1024 * 1024 + 2
        )
    );
    c.configure(json!({"type":"config","tts_config": tts_config("loopback", "")}))
        .await;
    c.send_json(json!({"type":"speak","text":"a".repeat(100 * 1024 + 1)}))
        .await;
    assert_eq!(
        c.expect_error("field_too_large").await,
        "Field speak.text too large: 102401 bytes (max 102400 bytes)"
    );
    c.send_json(json!({"type":"config","stream_id":"s".repeat(257),"tts_config": tts_config("loopback", "")})).await;
    c.expect_error("field_too_large").await;
    c.send_json(json!({"type":"custom","message_type":"echo","payload":"p".repeat(50 * 1024 + 1)}))
        .await;
    c.expect_error("field_too_large").await;
    c.send_json(json!({"type":"send_message","message":"hi","role":"user"}))
        .await;
    assert_eq!(
        c.expect_error("livekit_not_configured").await,
        "LiveKit client not configured. Send config message with livekit configuration first."
    );
    c.send_json(json!({"type":"sip_transfer","transfer_to":"555-CALL"}))
        .await;
    let v = c.json().await;
    assert_eq!(v["type"], "sip_transfer_error");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid phone number"));
    c.send_json(json!({"type":"sip_transfer","transfer_to":"+15551234567"}))
        .await;
    let v = c.json().await;
    assert_eq!(v["type"], "sip_transfer_error");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("SIP transfer failed"));
    c.assert_alive().await;
}

#[tokio::test]
async fn custom_messages_reach_route_plugins_with_isolation() {
    let server = TestServer::start("session: { custom_handler_timeout_ms: 300 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stream_id":"s1","tts_config": tts_config("loopback", "")}))
        .await;
    c.send_json(json!({"type":"custom","message_type":"echo","payload":{"n":1}}))
        .await;
    assert_eq!(
        c.json().await,
        json!({"type":"plugin_response","message_type":"echo","payload":{"echo":{"n":1},"stream_id":"s1"}})
    );
    c.send_json(json!({"type":"custom","message_type":"panic","payload":{}}))
        .await;
    assert!(c
        .expect_error("custom_handler_failed")
        .await
        .contains("injected panic"));
    c.send_json(json!({"type":"custom","message_type":"hang","payload":{}}))
        .await;
    assert!(c
        .expect_error("custom_handler_failed")
        .await
        .contains("timed out"));
    c.send_json(json!({"type":"custom","message_type":"silent","payload":{}}))
        .await;
    c.assert_alive().await;
    let pong = reqwest::get(server.url("/testkit/ping")).await.unwrap();
    assert_eq!(pong.headers()["x-frame-options"], "DENY");
    assert_eq!(pong.text().await.unwrap(), "pong");
}

#[tokio::test]
async fn idle_connections_are_closed_with_an_error() {
    let server = TestServer::start("session: { idle_timeout_secs: 1 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    assert_eq!(
        c.expect_error("idle_timeout").await,
        "Connection closed due to inactivity"
    );
    assert!(matches!(c.recv().await, Frame::Closed(_)));
}

#[tokio::test]
async fn pending_auth_flow() {
    let yaml = "auth: { required: true, api_secrets: [ { id: client-a, secret: s3cret } ] }\n";
    let server = TestServer::start(yaml).await;
    let url = server.ws_url("/ws");

    let mut c = WsClient::connect(&url).await;
    assert_eq!(c.json().await, json!({"type":"auth_required"}));
    c.send_json(json!({"type":"auth","token":"s3cret"})).await;
    assert_eq!(
        c.json().await,
        json!({"type":"authenticated","id":"client-a"})
    );
    c.configure(json!({"type":"config","tts_config": tts_config("loopback", "")}))
        .await;

    let mut c = WsClient::connect(&url).await;
    c.json().await;
    c.send_json(json!({"type":"auth","token":"wrong"})).await;
    assert_eq!(
        c.expect_error("invalid_token").await,
        "Invalid authentication token"
    );
    assert_eq!(c.recv().await, Frame::Closed(Some(4001)));

    let mut c = WsClient::connect(&url).await;
    c.json().await;
    c.send_json(json!({"type":"speak","text":"hi"})).await;
    assert_eq!(
        c.expect_error("auth_required").await,
        "Authentication required. Send auth message first."
    );
    assert_eq!(c.recv().await, Frame::Closed(Some(4001)));

    // A token at upgrade skips the pending step; a bad one is refused with 401.
    let mut c = WsClient::connect(&format!("{url}?token=s3cret")).await;
    c.assert_alive().await;
    let mut c = WsClient::connect_with(&url, Some("s3cret")).await.unwrap();
    c.assert_alive().await;
    assert_eq!(
        WsClient::connect_with(&url, Some("nope")).await.err(),
        Some(401)
    );

    // REST routes need the token too.
    let res = reqwest::get(server.url("/voices")).await.unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "missing_auth_header");
    let res = reqwest::Client::new()
        .get(server.url("/voices"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_panicking_provider_ends_only_its_own_session() {
    let server = server().await;
    let url = server.ws_url("/ws");
    let mut bad = WsClient::connect(&url).await;
    let mut good = WsClient::connect(&url).await;
    bad.configure(
        json!({"type":"config","stt_config": stt_config("loopback", "fault=panic,after=2", 16000)}),
    )
    .await;
    good.configure(json!({"type":"config","stt_config": stt_config("loopback", "", 16000)}))
        .await;
    let frames = utterance(800, 400, 16000);
    for f in &frames {
        bad.send_binary(f.clone()).await;
        good.send_binary(f.clone()).await;
    }
    let (err, _) = bad.until("error").await;
    assert_eq!(err["code"], "provider_panicked", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("STT provider loopback failed"));
    let fin = loop {
        let v = good.json().await;
        if v["is_final"] == true {
            break v;
        }
    };
    assert_eq!(fin["transcript"], "utterance 1: 800 ms");
    // The failed session stays connected and can configure again.
    bad.configure(json!({"type":"config","stt_config": stt_config("loopback", "", 16000)}))
        .await;
    assert_eq!(reqwest::get(server.url("/")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_stalled_tts_provider_times_out_its_request() {
    let server = server().await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut cfg = tts_config("loopback", "fault=stall");
    cfg["request_timeout"] = json!(1);
    c.configure(json!({"type":"config","tts_config": cfg}))
        .await;
    c.send_json(json!({"type":"speak","text":"never"})).await;
    let msg = c.expect_error("provider_timeout").await;
    assert!(msg.contains("TTS provider loopback failed"), "{msg}");
    let (v, _) = c.until("tts_playback_complete").await;
    assert_eq!(v["type"], "tts_playback_complete");
    c.assert_alive().await;
}

#[tokio::test]
async fn connection_caps_refuse_and_release() {
    let server = TestServer::start("limits: { max_websocket_connections: 1 }\n").await;
    let url = server.ws_url("/ws");
    let c = WsClient::connect(&url).await;
    assert_eq!(WsClient::connect_with(&url, None).await.err(), Some(503));
    drop(c);
    // The slot is released when the first connection ends.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(c) = WsClient::connect_with(&url, None).await {
            ok = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ok.expect("slot released").assert_alive().await;
}

#[tokio::test]
async fn a_named_instance_serves_sessions_under_its_own_id() {
    let server = TestServer::start(
        "session: { end_of_turn_ms: 200, end_of_turn_max_ms: 400 }\nplugins:\n  stt:\n    loopback-eu: { plugin: loopback-stt }\n",
    )
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config": stt_config("Loopback-EU", "", 16000)}))
        .await;
    for f in utterance(300, 300, 16000) {
        c.send_binary(f).await;
    }
    let (v, _) = c.until("stt_result").await;
    assert_eq!(v["provider"], "loopback-eu", "{v}");
    let plugins: serde_json::Value = reqwest::get(server.url("/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eu = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "loopback-eu")
        .expect("the instance is listed");
    assert_eq!(eu["plugin"], "loopback");
    assert_eq!(eu["kind"], "stt");
}

#[tokio::test]
async fn the_host_applies_pronunciations_for_every_provider() {
    let server = server().await;
    // The loopback TTS speaks a tone as long as its text: the rewritten text is what it got.
    let audio_for = |pronunciations: serde_json::Value| {
        let url = server.ws_url("/ws");
        async move {
            let mut c = WsClient::connect(&url).await;
            let mut tts = tts_config("loopback", "ms_per_char=10");
            tts["pronunciations"] = pronunciations;
            c.configure(json!({"type":"config","tts_config": tts}))
                .await;
            c.send_json(json!({"type":"speak","text":"SQL and MySQL"}))
                .await;
            c.until("tts_playback_complete").await.1
        }
    };
    let plain = audio_for(json!([])).await;
    let rewritten = audio_for(json!([{"word":"SQL","pronunciation":"sequel server"}])).await;
    // "SQL and MySQL" is 13 characters, "sequel server and MySQL" 23: at 10 ms per character
    // and 16 kHz PCM16 that is 100 ms (3,200 bytes) more; MySQL is left alone (whole words).
    assert_eq!(
        rewritten - plain,
        3_200,
        "plain {plain} B, rewritten {rewritten} B"
    );
}
