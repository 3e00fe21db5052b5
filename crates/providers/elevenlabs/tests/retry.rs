//! The kit's budgeted retry on ElevenLabs' REST path: a 503 before the response head is sent
//! again and the request still gets all of its audio; a 503 that persists ends as Transient
//! once the retries run out; a 401 is sent once and ends as Auth.

use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use tokio::time::timeout;
use waav_elevenlabs::ElevenLabsTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, ErrorCategory, PluginConfig, PluginError, Secret,
    SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_testkit::fakes::elevenlabs::{audio_for, ElevenLabsFake, FakeOptions, Fault};

const KEY: &str = "test-key";
const GUARD: Duration = Duration::from_secs(20);
const TEXT: &str = "Still here after a hiccup.";

fn rest(fake: &ElevenLabsFake, key: &str) -> TtsSessionConfig {
    let cfg = PluginConfig::from_value(
        "plugins.tts.elevenlabs",
        json!({"base_url": fake.base_url(), "response_timeout_ms": 5000, "stream_input": false}),
    )
    .unwrap();
    TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_api_key(Some(Secret::from(key)))
        .with_plugin_config(cfg)
}

/// One synthesis on a fresh plugin instance (its own client and retry budget).
async fn synth(cfg: &TtsSessionConfig) -> (Result<(), PluginError>, Vec<u8>) {
    let plugin = ElevenLabsTts::new();
    plugin.prepare(cfg).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let req = SpeakRequest {
        id: 1,
        text: TEXT.into(),
        flush: true,
    };
    let r = timeout(
        GUARD,
        plugin.synthesize(cfg, req, AudioSink::new(1, tx, CancelFlag::new())),
    )
    .await
    .expect("bounded");
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        chunks.push(data);
    }
    (r, chunks.iter().flat_map(|c| c.iter().copied()).collect())
}

fn unavailable() -> Fault {
    Fault::Status {
        status: 503,
        headers: vec![],
        body: "<html>upstream restarting</html>".into(),
    }
}

#[tokio::test]
async fn a_503_on_the_first_request_is_retried_and_the_audio_is_whole() {
    let fake =
        ElevenLabsFake::start(FakeOptions::new(KEY).fault(unavailable()).fault_first(1)).await;
    let (r, audio) = synth(&rest(&fake, KEY)).await;
    r.expect("the retry hides the 503");
    assert_eq!(audio, audio_for(TEXT, "pcm_16000", 10).unwrap());
    let seen = fake.http_requests();
    assert_eq!(seen.len(), 2, "one refused attempt, then the served one");
    assert_eq!(seen[0].body, seen[1].body, "the same request sent again");
    assert_eq!(fake.completed_responses(), 1);
}

#[tokio::test]
async fn a_503_that_persists_ends_as_transient_when_the_retries_run_out() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY).fault(unavailable())).await;
    let (r, audio) = synth(&rest(&fake, KEY)).await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(audio.is_empty());
    // The kit's default: the first attempt and two retries (a fresh instance's budget allows
    // them).
    assert_eq!(fake.http_requests().len(), 3);
}

#[tokio::test]
async fn a_401_is_sent_once_and_ends_as_auth() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let (r, audio) = synth(&rest(&fake, "wrong-key-123")).await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("invalid_api_key"), "{e}");
    assert!(audio.is_empty());
    assert_eq!(
        fake.http_requests().len(),
        1,
        "an auth failure is not retried"
    );
}
