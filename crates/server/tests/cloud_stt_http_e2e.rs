//! Cloud STT over HTTP-family transports end to end: a WaaV client → the gateway (`/ws`) → the
//! vendor's fake on 127.0.0.1, through the same config, registry, audio conversion, pipeline and
//! session code as production. Amazon Transcribe (event-stream over a presigned WebSocket),
//! OpenAI and Groq (a REST request per utterance, cut on the session VAD's speech end), and
//! Google Speech-to-Text v2 (gRPC `StreamingRecognize`).
//!
//! Google runs against its provider's gRPC fake (`crates/providers/google/tests/fake/`).
#![cfg(all(feature = "aws", feature = "openai", feature = "google"))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;
// Google's gRPC fake lives with its provider (see its module docs).
#[path = "../../providers/google/tests/fake/mod.rs"]
mod google_fake;

use common::ws::{utterance, Frame, WsClient};
use common::TestServer;
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2 as pb;
use serde_json::{json, Value};
use std::time::Duration;
use waav_aws as _;
use waav_google as _;
use waav_openai as _;
use waav_plugin_api::codec::{alaw_encode, mulaw_encode};
use waav_testkit::fakes::aws::transcribe::{TranscribeFake, TranscribeFakeOptions};
use waav_testkit::fakes::aws::FakeCredentials;
use waav_testkit::fakes::openai::OpenAiFake;

/// Bound on each wait for a message (a guard against hangs, not a latency check).
const WAIT: Duration = Duration::from_secs(20);

/// The session VAD (the testkit's deterministic level gate) on every session's audio: its
/// speech end is what cuts an utterance for the request/response providers.
const VAD: &str = "  processors:\n    vad: { type: level-vad, config: { silence_frames: 5 } }\n  pipelines: { default_stt_pre: [vad] }\n";

fn pcm16(frame: &[u8]) -> impl Iterator<Item = i16> + '_ {
    frame
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
}

/// Reads until a final `stt_result` with text arrives; an `error` fails the test.
async fn first_final(c: &mut WsClient) -> Value {
    loop {
        match tokio::time::timeout(WAIT, c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "stt_result" && v["is_final"] == true => {
                if v["transcript"].as_str().is_some_and(|t| !t.is_empty()) {
                    return v;
                }
            }
            Ok(Frame::Json(v)) if v["type"] == "error" => panic!("error: {v}"),
            Ok(Frame::Closed(c)) => panic!("closed ({c:?}) before a final"),
            Ok(_) => {}
            Err(_) => panic!("no final transcript within {WAIT:?}"),
        }
    }
}

fn stt(provider: &str, encoding: &str, rate: u32, model: &str) -> Value {
    json!({"type":"config","stt_config":{
        "provider":provider,"language":"en-US","sample_rate":rate,"channels":1,
        "punctuation":true,"encoding":encoding,"model":model}})
}

#[tokio::test]
async fn aws_transcribe_by_alias_from_an_alaw_client() {
    let mut opts =
        TranscribeFakeOptions::new(FakeCredentials::new("AKIAFAKETEST0001", "eu-west-1"));
    // A final per 500 ms of audio: the gateway never ends the stream by itself.
    opts.segment_ms = 500;
    let fake = TranscribeFake::start(opts).await;
    // The section under one alias, the session naming the other.
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    amazon-transcribe: {{ access_key_id: AKIAFAKETEST0001, secret_access_key: \"fakeSecretKey/+0123456789abcdefghijklmn\", region: eu-west-1, endpoint: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt("transcribe", "alaw", 8000, "")).await;
    let mut samples = 0;
    for frame in utterance(1_200, 400, 8_000) {
        let bytes: Vec<u8> = pcm16(&frame).map(alaw_encode).collect();
        samples += bytes.len();
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "aws-transcribe", "{result}");
    assert_eq!(result["transcript"], "hello world.", "{result}");
    let sessions = fake.sessions();
    let s = &sessions[0];
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let req = s.request.as_ref().expect("upgrade recorded");
    // A-law is not something Transcribe takes: the core decoded it to PCM16 at 8 kHz.
    assert_eq!(req.query("media-encoding"), Some("pcm"));
    assert_eq!(req.query("sample-rate"), Some("8000"));
    assert_eq!(req.query("language-code"), Some("en-US"));
    assert!(
        !s.audio.is_empty() && s.audio.len() <= samples * 2 && s.audio.len() % 2 == 0,
        "{} bytes of PCM16 for {samples} A-law samples",
        s.audio.len()
    );
}

/// Streams speech then silence; the VAD's speech end cuts the utterance, whose final is
/// returned with the request the fake received.
async fn rest_final(
    provider: &str,
    yaml: String,
    encoding: &str,
    rate: u32,
    model: &str,
    encode: impl Fn(&[u8]) -> Vec<u8>,
) -> Value {
    let server = TestServer::start(&yaml).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt(provider, encoding, rate, model)).await;
    for frame in utterance(1_000, 600, rate) {
        c.send_binary(encode(&frame)).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], provider, "{result}");
    result
}

#[tokio::test]
async fn openai_transcribes_a_48_khz_client_resampled_and_cut_by_the_vad() {
    let fake = OpenAiFake::start("test-key").await;
    let yaml = format!(
        "plugins:\n  stt:\n    openai: {{ api_key: test-key, base_url: \"{}\" }}\n{VAD}",
        fake.base_url()
    );
    // gpt-4o-transcribe (the default) answers with SSE interims, then the final.
    let result = rest_final("openai", yaml, "linear16", 48_000, "", |f| f.to_vec()).await;
    let text = result["transcript"].as_str().unwrap();
    assert!(text.starts_with("alpha bravo"), "{result}");
    assert_eq!(result["is_speech_final"], true, "{result}");
    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 1, "one utterance, one request");
    let r = &reqs[0];
    assert_eq!(r.request.header("authorization"), Some("Bearer test-key"));
    assert_eq!(r.field("model").as_deref(), Some("gpt-4o-transcribe"));
    assert!(r.streamed);
    assert_eq!(r.text, text, "the client got the fake's transcript");
    // 48 kHz is not a rate the plugin takes: the core resampled it once.
    let wav = r.wav.as_ref().expect("a WAV upload");
    assert!(
        [8_000, 16_000, 24_000].contains(&wav.sample_rate),
        "{}",
        wav.sample_rate
    );
    // About a second of speech plus the VAD's hangover and pre-roll, not the whole stream.
    let secs = wav.pcm.len() as f64 / 2.0 / f64::from(wav.sample_rate);
    assert!((0.9..1.6).contains(&secs), "{secs} s uploaded");
}

#[tokio::test]
async fn groq_transcribes_a_mulaw_client_cut_by_the_vad() {
    let fake = OpenAiFake::start("test-key").await;
    let yaml = format!(
        "plugins:\n  stt:\n    groq: {{ api_key: groq-test-key, base_url: \"{}\" }}\n{VAD}",
        fake.groq_base_url()
    );
    let result = rest_final("groq", yaml, "mulaw", 8_000, "whisper-large-v3", |f| {
        pcm16(f).map(mulaw_encode).collect()
    })
    .await;
    let text = result["transcript"].as_str().unwrap();
    assert!(text.starts_with("alpha bravo"), "{result}");
    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 1, "one utterance, one request");
    let r = &reqs[0];
    assert_eq!(r.request.path(), "/openai/v1/audio/transcriptions");
    assert_eq!(
        r.request.header("authorization"),
        Some("Bearer groq-test-key")
    );
    assert_eq!(r.field("model").as_deref(), Some("whisper-large-v3"));
    assert_eq!(r.field("response_format").as_deref(), Some("verbose_json"));
    assert_eq!(r.text, text);
    // Mu-law decoded once by the core to PCM16 at the client's 8 kHz.
    let wav = r.wav.as_ref().expect("a WAV upload");
    assert_eq!((wav.format, wav.bits, wav.sample_rate), (1, 16, 8_000));
}

#[tokio::test]
async fn google_transcribes_a_mulaw_client_passed_through_over_grpc() {
    let fake =
        google_fake::GoogleFake::start("AIzaTestKey-123", google_fake::key::TEST_KEY_PEM).await;
    // One scripted final ("utterance <n>") per second of 8 kHz mu-law.
    const UTTERANCE: usize = 8_000;
    fake.knobs(|k| k.utterance_bytes = UTTERANCE);
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    google: {{ api_key: AIzaTestKey-123, project_id: proj, endpoint: \"{}\" }}\n",
        fake.url
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt("google", "mulaw", 8000, "")).await;
    let mut sent = Vec::new();
    for frame in utterance(1_200, 400, 8_000) {
        let bytes: Vec<u8> = pcm16(&frame).map(mulaw_encode).collect();
        sent.extend_from_slice(&bytes);
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "google", "{result}");
    // The fake's first scripted final, sent once it had received UTTERANCE bytes.
    assert_eq!(result["transcript"], "utterance 1", "{result}");
    let calls = fake.seen(|s| s.stt.clone());
    assert_eq!(calls.len(), 1, "one StreamingRecognize call");
    let call = &calls[0];
    assert_eq!(
        call.metadata.get("x-goog-api-key").map(String::as_str),
        Some("AIzaTestKey-123")
    );
    let first = call.first.as_ref().expect("a first request");
    assert_eq!(
        first.recognizer,
        "projects/proj/locations/global/recognizers/_"
    );
    let config = match &first.streaming_request {
        Some(pb::streaming_recognize_request::StreamingRequest::StreamingConfig(c)) => c,
        other => panic!("the first request is not a streaming config: {other:?}"),
    };
    // Mu-law at 8 kHz is something Google takes: it reaches the vendor untouched.
    match config
        .config
        .as_ref()
        .and_then(|c| c.decoding_config.as_ref())
    {
        Some(pb::recognition_config::DecodingConfig::ExplicitDecodingConfig(d)) => assert_eq!(
            (d.encoding, d.sample_rate_hertz, d.audio_channel_count),
            (
                pb::explicit_decoding_config::AudioEncoding::Mulaw as i32,
                8_000,
                1
            ),
            "MULAW, 8000 Hz, mono"
        ),
        other => panic!("no explicit decoding config: {other:?}"),
    }
    assert!(call.audio.len() >= UTTERANCE, "{} bytes", call.audio.len());
    assert!(
        sent.starts_with(&call.audio),
        "the audio is the client's bytes"
    );
}
