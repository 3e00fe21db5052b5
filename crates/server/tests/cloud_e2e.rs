//! Cloud providers end to end: a WaaV client → the gateway → the vendor's fake on 127.0.0.1,
//! through the same config, registry, audio conversion and session code as production.
#![cfg(all(feature = "deepgram", feature = "assemblyai"))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::json;
use std::time::Duration;
use waav_assemblyai as _;
use waav_deepgram as _;
use waav_plugin_api::codec::alaw_encode;
use waav_testkit::fakes::assemblyai::{AssemblyAiFake, AssemblyAiOptions};
use waav_testkit::fakes::deepgram::DeepgramFake;

/// 20 ms frames of a loud tone, then silence, as PCM16 samples at `rate`.
fn speech(rate: u32, speech_ms: u32, silence_ms: u32) -> Vec<Vec<i16>> {
    let frame = (rate / 50) as usize;
    let total = (rate * (speech_ms + silence_ms) / 1000) as usize;
    let voiced = (rate * speech_ms / 1000) as usize;
    let samples: Vec<i16> = (0..total)
        .map(|i| {
            if i < voiced {
                ((i as f32 * 0.12).sin() * 12_000.0) as i16
            } else {
                0
            }
        })
        .collect();
    samples.chunks(frame).map(<[i16]>::to_vec).collect()
}

fn le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Reads until a final `stt_result` with text arrives.
async fn first_final(c: &mut WsClient) -> serde_json::Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "stt_result" && v["is_final"] == true => {
                if v["transcript"].as_str().is_some_and(|t| !t.is_empty()) {
                    return v;
                }
            }
            Ok(Frame::Json(v)) if v["type"] == "error" => panic!("error: {v}"),
            Ok(_) => {}
            Err(_) => panic!("no final transcript within 20 s"),
        }
    }
}

#[tokio::test]
async fn deepgram_transcribes_through_the_gateway_with_audio_untouched() {
    let fake = DeepgramFake::start("dg-test-key").await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    deepgram: {{ api_key: dg-test-key, base_url: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":{
        "provider":"deepgram","language":"en-US","sample_rate":16000,"channels":1,
        "punctuation":true,"encoding":"linear16","model":"nova-3"}}))
        .await;
    let mut sent = Vec::new();
    for frame in speech(16_000, 1_000, 600) {
        let bytes = le(&frame);
        sent.extend_from_slice(&bytes);
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "deepgram");
    // The client's format is one Deepgram takes: the bytes reach the vendor as sent.
    let seen = fake.sessions();
    let session = &seen[0];
    assert_eq!(session.request.query("encoding"), Some("linear16"));
    assert_eq!(session.request.query("sample_rate"), Some("16000"));
    assert_eq!(
        session.request.header("authorization"),
        Some("Token dg-test-key")
    );
    assert!(sent.starts_with(&session.audio[..session.audio.len().min(sent.len())]));
    assert!(!session.audio.is_empty());
}

#[tokio::test]
async fn assemblyai_gets_mono_pcm_converted_once_from_a_stereo_alaw_client() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions {
        eot_after_ms: Some(600),
        ..AssemblyAiOptions::default()
    })
    .await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    assemblyai: {{ api_key: test-assemblyai-key, base_url: \"{}\", format_turns: false }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":{
        "provider":"assemblyai","language":"en-US","sample_rate":8000,"channels":2,
        "punctuation":false,"encoding":"alaw","model":""}}))
        .await;
    let frames = speech(8_000, 1_200, 400);
    let mut samples = 0;
    for frame in &frames {
        samples += frame.len();
        // Stereo A-law: each sample twice.
        let bytes: Vec<u8> = frame.iter().flat_map(|&s| [alaw_encode(s); 2]).collect();
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "assemblyai");
    let session = &fake.sessions()[0];
    let request = session.request.as_ref().expect("upgrade recorded");
    // A-law is not something AssemblyAI takes: the core decoded it to linear16 and mixed to mono.
    assert_eq!(request.query("encoding"), Some("pcm_s16le"));
    assert_eq!(request.query("sample_rate"), Some("8000"));
    assert!(
        session.audio.len() <= samples * 2,
        "one sample in, two bytes out"
    );
    assert!(!session.audio.is_empty() && session.audio.len() % 2 == 0);
}
