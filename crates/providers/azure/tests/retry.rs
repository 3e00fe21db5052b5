//! The kit's budgeted retry on Azure's REST synthesis: a 503 before the response head is sent
//! again and the request still gets all of its audio; a 503 that persists ends as Transient
//! once the retries run out; a 401 is sent once and ends as Auth.

use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use waav_azure::tts::AzureTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Credentials, ErrorCategory, PluginConfig, PluginError,
    Secret, SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_testkit::fakes::azure_tts::{speech_audio, AzureTtsFake, FakeOptions, Fault};

const KEY: &str = "azure-test-key";
const WAIT: Duration = Duration::from_secs(10);
const TEXT: &str = "Still here after a hiccup.";

fn session(fake: &AzureTtsFake, key: &str) -> TtsSessionConfig {
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(key));
    TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)
        .with_api_key(Some(Secret::from(key)))
        .with_credentials(creds)
        .with_plugin_config(
            PluginConfig::from_value(
                "plugins.tts.microsoft-azure",
                json!({"base_url": fake.base_url()}),
            )
            .unwrap(),
        )
}

/// One synthesis on a fresh plugin instance (its own client and retry budget).
async fn speak(cfg: &TtsSessionConfig) -> Result<Vec<u8>, PluginError> {
    let plugin = AzureTts::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: TEXT.into(),
        flush: true,
    };
    let r = tokio::time::timeout(WAIT, plugin.synthesize(cfg, req, sink))
        .await
        .expect("synthesize hung");
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        chunks.push(data);
    }
    r.map(|()| chunks.iter().flat_map(|c| c.iter().copied()).collect())
}

#[tokio::test]
async fn a_503_on_the_first_synthesis_is_retried_and_the_audio_is_whole() {
    let fake = AzureTtsFake::with_options(
        FakeOptions::new(KEY)
            .fault(Fault::status(503, "Service Unavailable"))
            .fault_on(0),
    )
    .await;
    let audio = speak(&session(&fake, KEY))
        .await
        .expect("the retry hides the 503");
    assert_eq!(
        audio,
        speech_audio(TEXT, "raw-24khz-16bit-mono-pcm", 1.0, 20)
    );
    let logs = fake.syntheses();
    assert_eq!(logs.len(), 2, "one refused attempt, then the served one");
    assert_eq!(logs[0].status, 503);
    assert_eq!(logs[1].status, 200, "{:?}", logs[1].rejection);
    assert_eq!(logs[0].body, logs[1].body, "the same SSML sent again");
    assert!(logs[1].completed);
}

#[tokio::test]
async fn a_503_that_persists_ends_as_transient_when_the_retries_run_out() {
    let fake = AzureTtsFake::with_options(
        FakeOptions::new(KEY).fault(Fault::status(503, "Service Unavailable")),
    )
    .await;
    let e = speak(&session(&fake, KEY)).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    // The kit's default: the first attempt and two retries (a fresh instance's budget allows
    // them).
    let logs = fake.syntheses();
    assert_eq!(logs.len(), 3);
    assert!(logs.iter().all(|l| l.status == 503));
}

#[tokio::test]
async fn a_401_is_sent_once_and_ends_as_auth() {
    let fake = AzureTtsFake::start("the-right-key").await;
    let e = speak(&session(&fake, "wrong-key-123")).await.unwrap_err();
    assert!(matches!(e, PluginError::Auth(_)), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Auth);
    let logs = fake.syntheses();
    assert_eq!(logs.len(), 1, "an auth failure is not retried");
    assert_eq!(logs[0].status, 401);
}
