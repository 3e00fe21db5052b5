//! Cloud providers end to end: a WaaV client → the gateway → the vendor's fake on 127.0.0.1,
//! through the same config, registry, audio conversion and session code as production.
#![cfg(all(
    feature = "deepgram",
    feature = "assemblyai",
    feature = "elevenlabs",
    feature = "cartesia",
    feature = "azure",
    feature = "ibm"
))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::json;
use std::time::Duration;
use waav_assemblyai as _;
use waav_azure as _;
use waav_cartesia as _;
use waav_deepgram as _;
use waav_elevenlabs as _;
use waav_ibm as _;
use waav_plugin_api::codec::{alaw_encode, mulaw_encode};
use waav_testkit::fakes::assemblyai::{AssemblyAiFake, AssemblyAiOptions};
use waav_testkit::fakes::azure::{AzureFake, AzureFakeConfig};
use waav_testkit::fakes::cartesia_stt::{CartesiaSttFake, CartesiaSttOptions};
use waav_testkit::fakes::deepgram::DeepgramFake;
use waav_testkit::fakes::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttOptions};
use waav_testkit::fakes::ibm::{IbmFake, IbmFakeOptions, INSTANCE};

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

/// Reads `stt_result`s until a final with text: the interims before it, and the final.
async fn interims_then_final(c: &mut WsClient) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut interims = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "stt_result" && v["is_final"] == false => {
                interims.push(v);
            }
            Ok(Frame::Json(v)) if v["type"] == "stt_result" => {
                if v["transcript"].as_str().is_some_and(|t| !t.is_empty()) {
                    return (interims, v);
                }
            }
            Ok(Frame::Json(v)) if v["type"] == "error" => panic!("error: {v}"),
            Ok(Frame::Closed(code)) => panic!("closed ({code:?}) before a final"),
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

#[tokio::test]
async fn elevenlabs_gets_pcm_decoded_from_an_alaw_client_and_commits_by_vad() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        api_key: "el-test-key".into(),
        vad_commit_after_ms: Some(600),
        ..ElevenLabsSttOptions::default()
    })
    .await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    elevenlabs: {{ api_key: el-test-key, base_url: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":{
        "provider":"elevenlabs","language":"en-US","sample_rate":8000,"channels":1,
        "punctuation":true,"encoding":"alaw","model":""}}))
        .await;
    let mut samples = 0;
    for frame in speech(8_000, 1_000, 400) {
        samples += frame.len();
        c.send_binary(frame.iter().map(|&s| alaw_encode(s)).collect())
            .await;
    }
    let (interims, result) = interims_then_final(&mut c).await;
    assert_eq!(result["provider"], "elevenlabs");
    // The fake commits after 600 ms of audio: six words, the committed text punctuated.
    assert_eq!(result["transcript"], "w1 w2 w3 w4 w5 w6.", "{result}");
    assert!(!interims.is_empty(), "partial transcripts are forwarded");
    assert!(interims.iter().all(|v| v["provider"] == "elevenlabs"));
    let session = &fake.sessions()[0];
    let request = session.request.as_ref().expect("upgrade recorded");
    assert_eq!(request.path(), "/v1/speech-to-text/realtime");
    assert_eq!(request.header("xi-api-key"), Some("el-test-key"));
    // A-law is not an ElevenLabs input: the core decoded it to PCM16 at the client's rate.
    assert_eq!(request.query("audio_format"), Some("pcm_8000"));
    assert_eq!(request.query("commit_strategy"), Some("vad"));
    assert!(!session.audio.is_empty() && session.audio.len() % 2 == 0);
    assert!(
        session.audio.len() <= samples * 2,
        "one sample in, two bytes out"
    );
}

#[tokio::test]
async fn cartesia_gets_mono_from_a_stereo_client() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        api_key: "ct-test-key".into(),
        auto_final_after_ms: Some(500),
        ..CartesiaSttOptions::default()
    })
    .await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    cartesia: {{ api_key: ct-test-key, base_url: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":{
        "provider":"cartesia","language":"en-US","sample_rate":16000,"channels":2,
        "punctuation":true,"encoding":"linear16","model":""}}))
        .await;
    let mut mono = Vec::new();
    for frame in speech(16_000, 1_000, 400) {
        mono.extend_from_slice(&frame);
        // Stereo: each sample twice, so the mix-down is exact.
        let bytes: Vec<u8> = frame
            .iter()
            .flat_map(|s| [s.to_le_bytes(), s.to_le_bytes()].concat())
            .collect();
        c.send_binary(bytes).await;
    }
    let (interims, result) = interims_then_final(&mut c).await;
    assert_eq!(result["provider"], "cartesia");
    // 500 ms of audio per segment: five words.
    assert_eq!(
        result["transcript"].as_str().map(str::trim),
        Some("w1 w2 w3 w4 w5")
    );
    assert!(!interims.is_empty(), "interim transcripts are forwarded");
    let session = &fake.sessions()[0];
    let request = session.request.as_ref().expect("upgrade recorded");
    assert_eq!(request.path(), "/stt/websocket");
    assert_eq!(request.header("x-api-key"), Some("ct-test-key"));
    assert_eq!(request.query("encoding"), Some("pcm_s16le"));
    assert_eq!(request.query("sample_rate"), Some("16000"));
    // The core mixed the two equal channels to mono: the fake holds the mono samples, in order.
    let expected = le(&mono);
    assert!(!session.audio.is_empty());
    assert!(
        expected.starts_with(&session.audio),
        "{} bytes at the vendor are not the mono prefix",
        session.audio.len()
    );
}

#[tokio::test]
async fn azure_by_its_alias_gets_16_khz_resampled_from_a_48_khz_client() {
    let fake = AzureFake::start(AzureFakeConfig {
        key: "az-test-key".into(),
        phrase_every_ms: Some(400),
        ..AzureFakeConfig::default()
    })
    .await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    microsoft-azure: {{ api_key: az-test-key, base_url: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":{
        "provider":"azure","language":"en-US","sample_rate":48000,"channels":1,
        "punctuation":true,"encoding":"linear16","model":""}}))
        .await;
    let mut sent = 0;
    for frame in speech(48_000, 1_000, 400) {
        sent += frame.len() * 2;
        c.send_binary(le(&frame)).await;
    }
    let (interims, result) = interims_then_final(&mut c).await;
    // The alias resolves to the plugin's id.
    assert_eq!(result["provider"], "microsoft-azure");
    // A phrase after (at least) 400 ms of audio at 100 ms per word: the script's words, in order,
    // the first four at least.
    let text = result["transcript"].as_str().unwrap();
    assert!(text.starts_with("Hello world from the"), "{result}");
    let words: Vec<&str> = result["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["word"].as_str().unwrap())
        .collect();
    let script = ["hello", "world", "from", "the", "azure", "fake"];
    assert!(words.len() >= 4 && script.starts_with(&words), "{words:?}");
    assert!(!interims.is_empty(), "hypotheses are forwarded");
    assert!(
        interims[0]["transcript"]
            .as_str()
            .is_some_and(|t| t.starts_with("hello")),
        "{interims:?}"
    );
    let conn = &fake.connections()[0];
    assert!(conn.violations.is_empty(), "{:?}", conn.violations);
    assert_eq!(
        conn.request.header("ocp-apim-subscription-key"),
        Some("az-test-key")
    );
    assert_eq!(conn.request.query("language"), Some("en-US"));
    // Azure takes 8 or 16 kHz: the turn's WAV header says 16 kHz mono PCM16, and a third of
    // the client's bytes (at most) reached it.
    let turn = &conn.turns[0];
    let rate = u32::from_le_bytes(turn.wav_header[24..28].try_into().unwrap());
    assert_eq!(rate, 16_000);
    assert_eq!(
        u16::from_le_bytes([turn.wav_header[22], turn.wav_header[23]]),
        1
    );
    assert!(!turn.audio.is_empty());
    assert!(
        turn.audio.len() <= sent / 3 + 64,
        "{} of {sent}",
        turn.audio.len()
    );
}

#[tokio::test]
async fn ibm_watson_by_its_aliases_transcribes_mulaw_with_an_iam_token() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        final_every_bytes: 6_400,
        interim_every_bytes: 2_000,
        ..IbmFakeOptions::new("ibm-test-key")
    })
    .await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    ibm-watson: {{ api_key: ibm-test-key, url: \"{}\", iam_url: \"{}\" }}\n",
        fake.instance_url(),
        fake.iam_url()
    ))
    .await;
    for (i, alias) in ["watson", "ibm"].into_iter().enumerate() {
        let mut c = WsClient::connect(&server.ws_url("/ws")).await;
        c.configure(json!({"type":"config","stt_config":{
            "provider":alias,"language":"en-US","sample_rate":8000,"channels":1,
            "punctuation":true,"encoding":"mulaw","model":""}}))
            .await;
        let mut sent = Vec::new();
        for frame in speech(8_000, 1_000, 400) {
            let bytes: Vec<u8> = frame.iter().map(|&s| mulaw_encode(s)).collect();
            sent.extend_from_slice(&bytes);
            c.send_binary(bytes).await;
        }
        let (interims, result) = interims_then_final(&mut c).await;
        assert_eq!(result["provider"], "ibm-watson", "{alias}");
        // 6400 bytes of 8 kHz mu-law per phrase (40 frames of 20 ms): 800 ms.
        assert_eq!(
            result["transcript"].as_str().map(str::trim),
            Some("heard 800 milliseconds"),
            "{alias}: {result}"
        );
        assert!(
            !interims.is_empty(),
            "{alias}: interim results are forwarded"
        );
        drop(c);
        let session = &fake.stt_sessions()[i];
        assert_eq!(
            session.request.path(),
            format!("/instances/{INSTANCE}/v1/recognize")
        );
        assert!(
            session
                .request
                .query("access_token")
                .is_some_and(|t| t.starts_with("fake-token-")),
            "{:?}",
            session.request.uri
        );
        // Mu-law is a Watson input: the bytes went through unchanged.
        let start: serde_json::Value = serde_json::from_str(&session.texts[0]).unwrap();
        assert_eq!(start["action"], "start");
        assert_eq!(start["content-type"], "audio/mulaw;rate=8000");
        assert!(!session.audio.is_empty());
        assert!(sent.starts_with(&session.audio[..session.audio.len().min(sent.len())]));
    }
    // One IAM exchange with the configured key, the token cached for the second session.
    let tokens = fake.token_requests();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].field("apikey"), Some("ibm-test-key"));
}
