//! The kit's budgeted retry on OpenAI's REST speech endpoint: a 503 before the response head is
//! sent again and the request still gets all of its audio; a 503 that persists ends as
//! Transient once the retries run out; a 401 is sent once and ends as Auth.

use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use waav_openai::OpenAiTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, ErrorCategory, PluginConfig, PluginError, Secret,
    SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_testkit::fakes::openai::{speech_audio, FakeOptions, Fault, OpenAiFake};

const KEY: &str = "test-key";
const WAIT: Duration = Duration::from_secs(10);
const TEXT: &str = "Still here after a hiccup.";

fn session(fake: &OpenAiFake, key: &str) -> TtsSessionConfig {
    TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)
        .with_api_key(Some(Secret::new(key)))
        .with_plugin_config(
            PluginConfig::from_value("plugins.tts.openai", json!({"base_url": fake.base_url()}))
                .unwrap(),
        )
}

/// One synthesis on a fresh plugin instance (its own client and retry budget).
async fn speak(cfg: &TtsSessionConfig) -> Result<Vec<u8>, PluginError> {
    let plugin = OpenAiTts::new();
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: TEXT.into(),
        flush: true,
    };
    let r = tokio::time::timeout(WAIT, plugin.synthesize(cfg, req, sink))
        .await
        .expect("synthesis ends");
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        chunks.push(data);
    }
    r.map(|()| chunks.iter().flat_map(|c| c.iter().copied()).collect())
}

fn unavailable() -> Fault {
    Fault::Status {
        status: 503,
        body: r#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#.into(),
        retry_after: None,
    }
}

#[tokio::test]
async fn a_503_on_the_first_request_is_retried_and_the_audio_is_whole() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new(KEY).fault(unavailable()).fault_on(0)).await;
    let audio = speak(&session(&fake, KEY))
        .await
        .expect("the retry hides the 503");
    assert_eq!(audio, speech_audio(TEXT, "pcm", 1.0, 20));
    let seen = fake.speeches();
    assert_eq!(seen.len(), 2, "one refused attempt, then the served one");
    assert_eq!(seen[0].status, 503);
    assert_eq!(seen[1].status, 200);
    assert_eq!(seen[0].body, seen[1].body, "the same request sent again");
    assert!(seen[1].completed);
}

#[tokio::test]
async fn a_503_that_persists_ends_as_transient_when_the_retries_run_out() {
    let fake = OpenAiFake::with_options(FakeOptions::new(KEY).fault(unavailable())).await;
    let e = speak(&session(&fake, KEY)).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(
        e.to_string().contains("overloaded"),
        "the vendor's message: {e}"
    );
    // The kit's default: the first attempt and two retries (a fresh instance's budget allows
    // them).
    let seen = fake.speeches();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.status == 503));
}

#[tokio::test]
async fn a_401_is_sent_once_and_ends_as_auth() {
    let fake = OpenAiFake::start(KEY).await;
    let e = speak(&session(&fake, "wrong-key")).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");
    let seen = fake.speeches();
    assert_eq!(seen.len(), 1, "an auth failure is not retried");
    assert_eq!(seen[0].status, 401);
}

/// A billing 429 (`insufficient_quota`, no `retry-after`) is vetoed for retry: sent once, Auth.
/// A pace 429 with a short `retry-after` is retried as a 5xx is.
#[tokio::test]
async fn a_billing_429_is_sent_once_and_a_short_rate_limit_is_retried() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new(KEY).fault(Fault::insufficient_quota())).await;
    let e = speak(&session(&fake, KEY)).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert_eq!(fake.speeches().len(), 1, "not retried");

    let fake = OpenAiFake::with_options(FakeOptions::new(KEY).fault(Fault::Status {
        status: 429,
        body: r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#.into(),
        retry_after: Some(0),
    }))
    .await;
    let e = speak(&session(&fake, KEY)).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    assert_eq!(
        fake.speeches().len(),
        3,
        "the first attempt and two retries"
    );
}
