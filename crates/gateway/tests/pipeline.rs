//! Processor pipelines in real `/ws` sessions: configured chains run in order on client audio,
//! their speech boundaries reach the client (and drive barge-in), their costs reach `/metrics`,
//! and a failing processor is disabled for its session only.

mod common;

use common::ws::{stt_config, tts_config, utterance, Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

const YAML: &str = r#"
plugins:
  processors:
    vad: { type: level-vad, config: { silence_frames: 3 } }
    loud: { type: level-vad, config: { gain: 2, level: 30000 } }
    crashy: { type: level-vad, config: { panic_after: 2 } }
    broken: { type: level-vad, config: { error_after: 1 } }
    turn: { type: level-vad, config: { silence_frames: 3, end_of_turn: 1 } }
    double: { type: level-vad, config: { gain: 2 } }
    unbuildable: { type: level-vad, config: { panic_on_create: 1 } }
  pipelines: { default_stt_pre: [vad] }
"#;

/// Sends frames and collects every JSON message until `until` has been seen `times` times.
async fn send_and_collect(
    c: &mut WsClient,
    frames: &[Vec<u8>],
    until: &str,
    times: usize,
) -> Vec<Value> {
    for f in frames {
        c.send_binary(f.clone()).await;
    }
    let mut seen = Vec::new();
    let mut hits = 0;
    while hits < times {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) => {
                if v["type"] == until {
                    hits += 1;
                }
                seen.push(v);
            }
            Ok(_) => {}
            Err(_) => panic!("no {until} within 10 s; saw {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn the_default_chain_reports_speech_boundaries_timed_on_the_stream() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
        .await;
    // 200 ms of tone then 200 ms of silence: started at the first frame, stopped 3 frames
    // (60 ms) into the silence.
    let seen = send_and_collect(&mut c, &utterance(200, 200, 16_000), "speech_event", 2).await;
    let events: Vec<(&str, u64)> = seen
        .iter()
        .filter(|v| v["type"] == "speech_event")
        .map(|v| {
            (
                v["event"].as_str().unwrap(),
                v["audio_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(events, vec![("started", 20), ("stopped", 260)]);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("waav_processor_frames_total{processor=\"vad\",stage=\"pre_stt\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("waav_processor_seconds"), "{metrics}");
}

#[tokio::test]
async fn a_session_chooses_its_own_chain_or_none() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "", 16000);
    stt["pipeline"] = json!([]);
    c.configure(json!({"type":"config","stt_config":stt})).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    // The loopback STT still answers (a final after the gap), and no VAD event comes first.
    loop {
        match c.recv().await {
            Frame::Json(v) if v["type"] == "speech_event" => panic!("no VAD configured: {v}"),
            Frame::Json(v) if v["type"] == "stt_result" && v["is_final"] == true => break,
            _ => {}
        }
    }
    let mut stt = stt_config("loopback", "", 16000);
    stt["pipeline"] = json!(["nope"]);
    c.send_json(json!({"type":"config","stt_config":stt})).await;
    let msg = c.expect_error("invalid_config").await;
    assert!(msg.contains("nope"), "{msg}");
}

#[tokio::test]
async fn a_failing_processor_is_disabled_for_its_session_only_and_audio_keeps_flowing() {
    let server = TestServer::start(YAML).await;
    for bad in ["crashy", "broken"] {
        let mut c = WsClient::connect(&server.ws_url("/ws")).await;
        let mut stt = stt_config("loopback", "", 16000);
        stt["pipeline"] = json!([bad, "vad"]);
        c.configure(json!({"type":"config","stt_config":stt})).await;
        let mut other = WsClient::connect(&server.ws_url("/ws")).await;
        other
            .configure(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
            .await;
        let seen = send_and_collect(&mut c, &utterance(200, 600, 16_000), "stt_result", 1).await;
        let errors: Vec<&Value> = seen.iter().filter(|v| v["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "{bad}: reported once: {seen:?}");
        assert_eq!(errors[0]["code"], "processor_failed");
        assert!(errors[0]["message"].as_str().unwrap().contains(bad));
        // The processor after it still runs.
        assert!(seen.iter().any(|v| v["type"] == "speech_event"), "{seen:?}");
        // Another session is untouched.
        let seen =
            send_and_collect(&mut other, &utterance(200, 200, 16_000), "speech_event", 2).await;
        assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
        // The failed session keeps transcribing: its next utterance gets results too.
        send_and_collect(&mut c, &utterance(200, 600, 16_000), "stt_result", 1).await;
    }
}

#[tokio::test]
async fn barge_in_clears_interruptible_speech_when_the_user_talks() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","barge_in":true,
        "stt_config":stt_config("loopback","",16000),
        "tts_config":tts_config("loopback","realtime=1,ms_per_char=100")}))
        .await;
    c.send_json(json!({"type":"speak","text":"a long answer the user will talk over"}))
        .await;
    c.until_binary().await;
    for f in utterance(60, 0, 16_000) {
        c.send_binary(f).await;
    }
    let mut interrupted = false;
    let mut after = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(800), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "tts_interrupted" => interrupted = true,
            Ok(Frame::Binary(_)) if interrupted => after += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(interrupted, "no tts_interrupted");
    // Frames already in the socket may still arrive; the provider's stream stopped.
    assert!(after <= 2, "{after} audio frames after the interruption");
}

#[tokio::test]
async fn without_barge_in_speech_over_tts_changes_nothing() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config",
        "stt_config":stt_config("loopback","",16000),
        "tts_config":tts_config("loopback","realtime=1,ms_per_char=20")}))
        .await;
    c.send_json(json!({"type":"speak","text":"short answer"}))
        .await;
    c.until_binary().await;
    for f in utterance(60, 0, 16_000) {
        c.send_binary(f).await;
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "tts_interrupted" => panic!("barge-in is off"),
            Ok(Frame::Json(v)) if v["type"] == "tts_playback_complete" => break,
            Ok(_) => {}
            Err(_) => panic!("playback never completed"),
        }
    }
}

#[tokio::test]
async fn a_turn_detector_ends_the_turn_with_the_final_instead_of_the_silence_timer() {
    // end_of_turn_ms is long: only the detector can end the turn within the test.
    let server = TestServer::start(&format!(
        "session: {{ end_of_turn_ms: 60000, end_of_turn_max_ms: 60000 }}\n{YAML}"
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "", 16000);
    stt["pipeline"] = json!(["turn"]);
    c.configure(json!({"type":"config","stt_config":stt})).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let fin = loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "stt_result" && v["is_final"] == true => break v,
            Ok(_) => {}
            Err(_) => panic!("no final within 10 s"),
        }
    };
    assert_eq!(fin["is_speech_final"], true, "{fin}");
}

/// Peak of PCM16 little-endian audio.
fn peak(audio: &[u8]) -> i32 {
    audio
        .chunks_exact(2)
        .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])).abs())
        .max()
        .unwrap_or(0)
}

async fn spoken(c: &mut WsClient) -> Vec<u8> {
    c.send_json(json!({"type":"speak","text":"hello"})).await;
    let mut audio = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Binary(b)) => audio.extend_from_slice(&b),
            Ok(Frame::Json(v)) if v["type"] == "tts_playback_complete" => return audio,
            Ok(Frame::Json(v)) => panic!("unexpected {v}"),
            Ok(_) => {}
            Err(_) => panic!("no playback complete"),
        }
    }
}

#[tokio::test]
async fn post_tts_processors_run_on_the_audio_the_client_gets() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config":tts_config("loopback","")}))
        .await;
    let plain = spoken(&mut c).await;
    let mut tts = tts_config("loopback", "");
    tts["pipeline"] = json!(["double"]);
    c.configure(json!({"type":"config","tts_config":tts})).await;
    let doubled = spoken(&mut c).await;
    assert_eq!(plain.len(), doubled.len());
    let (a, b) = (peak(&plain), peak(&doubled));
    assert!((b - 2 * a).abs() <= 2, "peak {a} then {b}");
}

#[tokio::test]
async fn a_processor_that_panics_when_created_rejects_the_config_and_the_session_lives() {
    let server = TestServer::start(YAML).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "", 16000);
    stt["pipeline"] = json!(["unbuildable"]);
    c.send_json(json!({"type":"config","stt_config":stt})).await;
    let v = c.json().await;
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("unbuildable") && m.contains("panic")),
        "{v}"
    );
    // The same connection takes a working config afterwards.
    c.configure(json!({"type":"config","stt_config":stt_config("loopback", "", 16000)}))
        .await;
    c.assert_alive().await;
}

#[tokio::test]
async fn plugins_lists_processor_instances_with_stage_settings_and_budget() {
    let server = TestServer::start(YAML).await;
    let v: Value = reqwest::get(server.url("/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loud = v["processors"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "loud"))
        .unwrap_or_else(|| panic!("no processor instance `loud`: {v}"));
    assert_eq!(loud["plugin"], "level-vad", "{loud}");
    assert_eq!(loud["settings"]["gain"], 2, "{loud}");
    assert!(
        loud["stages"].as_array().is_some_and(|s| !s.is_empty()),
        "{loud}"
    );
    assert_eq!(loud["budget_us_per_20ms_frame"], 2000, "{loud}");
}
