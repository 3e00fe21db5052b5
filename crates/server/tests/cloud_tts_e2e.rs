//! Cloud TTS providers end to end: a WaaV client → the gateway (`/ws` and `POST /speak`) → the
//! vendor's fake on 127.0.0.1, with the core converting the vendor's audio to the client's format.
#![cfg(feature = "cloud")]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;
// Google's gRPC fake lives with its provider (see its module docs).
#[path = "../../providers/google/tests/fake/mod.rs"]
mod google_fake;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::json;
use std::time::Duration;
use waav_testkit::fakes;
// Linking the provider crates registers their plugins.
use waav_aws as _;
use waav_azure as _;
use waav_cartesia as _;
use waav_deepgram as _;
use waav_elevenlabs as _;
use waav_google as _;
use waav_hume as _;
use waav_ibm as _;
use waav_lmnt as _;
use waav_openai as _;
use waav_playht as _;

/// The text [`speaks`] sends over `/ws`, and over `/speak`.
const WS_TEXT: &str = "Hello there, this is a test.";
const SPEAK_TEXT: &str = "Hello.";

/// Speaks through `/ws` (mu-law at 8 kHz, a format most vendors do not produce natively) and
/// through `/speak` (linear16 at 16 kHz); both must give audio of the right shape.
async fn speaks(provider: &str, yaml: String) {
    let server = TestServer::start(&yaml).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config":{
        "provider":provider,"model":"","audio_format":"mulaw","sample_rate":8000}}))
        .await;
    c.send_json(json!({"type":"speak","text":WS_TEXT})).await;
    let mut audio = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
            Ok(Frame::Binary(b)) => {
                assert!(
                    b.len() <= 160,
                    "{provider}: 20 ms mu-law frames, got {}",
                    b.len()
                );
                audio += b.len();
            }
            Ok(Frame::Json(v)) if v["type"] == "tts_playback_complete" => break,
            Ok(Frame::Json(v)) => panic!("{provider}: unexpected {v}"),
            Ok(_) => {}
            Err(_) => panic!("{provider}: no playback complete within 20 s"),
        }
    }
    assert!(audio > 0, "{provider}: no audio over /ws");
    let res = reqwest::Client::new()
        .post(server.url("/speak"))
        .json(&json!({"text":SPEAK_TEXT,"tts_config":{
            "provider":provider,"model":"","audio_format":"linear16","sample_rate":16000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{provider}: /speak");
    let body = res.bytes().await.unwrap();
    assert!(
        !body.is_empty() && body.len() % 2 == 0,
        "{provider}: /speak audio"
    );
}

#[tokio::test]
async fn deepgram() {
    let fake = fakes::deepgram::DeepgramTtsFake::start("dg-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    deepgram: {{ api_key: dg-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("deepgram", yaml).await;
}

#[tokio::test]
async fn cartesia() {
    let fake = fakes::cartesia::CartesiaFake::start("ca-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    cartesia: {{ api_key: ca-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("cartesia", yaml).await;
}

#[tokio::test]
async fn openai() {
    let fake = fakes::openai::OpenAiFake::start("oa-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    openai: {{ api_key: oa-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("openai", yaml).await;
}

#[tokio::test]
async fn elevenlabs() {
    let fake =
        fakes::elevenlabs::ElevenLabsFake::start(fakes::elevenlabs::FakeOptions::new("el-key"))
            .await;
    let yaml = format!(
        "plugins:\n  tts:\n    elevenlabs: {{ api_key: el-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("elevenlabs", yaml).await;
}

#[tokio::test]
async fn lmnt() {
    let fake = fakes::lmnt::LmntFake::start(fakes::lmnt::FakeOptions::new("lm-key")).await;
    let yaml = format!(
        "plugins:\n  tts:\n    lmnt: {{ api_key: lm-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("lmnt", yaml).await;
}

#[tokio::test]
async fn hume() {
    let fake = fakes::hume::HumeFake::start(fakes::hume::FakeOptions::new("hu-key")).await;
    let yaml = format!(
        "plugins:\n  tts:\n    hume: {{ api_key: hu-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("hume", yaml).await;
}

#[tokio::test]
async fn playht() {
    let fake =
        fakes::playht::PlayHtFake::start(fakes::playht::FakeOptions::new("ph-key", "ph-user"))
            .await;
    let yaml = format!(
        "plugins:\n  tts:\n    playht: {{ api_key: ph-key, user_id: ph-user, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("playht", yaml).await;
}

#[tokio::test]
async fn azure() {
    let fake = fakes::azure_tts::AzureTtsFake::start("az-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    microsoft-azure: {{ api_key: az-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    speaks("azure", yaml).await;
}

#[tokio::test]
async fn aws_polly_by_its_aliases() {
    use fakes::aws::{polly, FakeCredentials};
    let creds = FakeCredentials::new("AKIAFAKETEST0001", "eu-west-1");
    let fake = polly::PollyFake::start(polly::PollyFakeOptions::new(creds)).await;
    let yaml = format!(
        "plugins:\n  tts:\n    aws-polly: {{ access_key_id: AKIAFAKETEST0001, \
         secret_access_key: \"fake/Secret+Key\", region: eu-west-1, endpoint: \"{}\" }}\n",
        fake.base_url()
    );
    for alias in ["polly", "amazon-polly"] {
        speaks(alias, yaml.clone()).await;
    }
    // Both aliases reached the one plugin: two `/ws` and two `/speak` texts, signed for Polly.
    let texts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.uri == "/v1/speech")
        .map(|r| r.json()["Text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts, [WS_TEXT, SPEAK_TEXT, WS_TEXT, SPEAK_TEXT]);
    assert!(fake.requests().iter().all(|r| r
        .header("authorization")
        .is_some_and(|a| a.contains("/eu-west-1/polly/aws4_request"))));
}

#[tokio::test]
async fn ibm_watson_by_its_alias() {
    let fake = fakes::ibm::IbmFake::start("ibm-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    ibm-watson: {{ api_key: ibm-key, url: \"{}\", iam_url: \"{}\" }}\n",
        fake.instance_url(),
        fake.iam_url()
    );
    for provider in ["ibm-watson", "watson"] {
        speaks(provider, yaml.clone()).await;
    }
    let texts: Vec<String> = fake
        .synth_requests()
        .iter()
        .map(|r| r.text.clone())
        .collect();
    assert_eq!(texts, [WS_TEXT, SPEAK_TEXT, WS_TEXT, SPEAK_TEXT]);
    assert!(fake.synth_requests().iter().all(|r| r.status == 200));
    assert!(
        !fake.token_requests().is_empty(),
        "the key went through IAM"
    );
}

#[tokio::test]
async fn google() {
    let fake =
        google_fake::GoogleFake::start("AIzaTestKey-123", google_fake::key::TEST_KEY_PEM).await;
    let yaml = format!(
        "plugins:\n  tts:\n    google: {{ api_key: AIzaTestKey-123, endpoint: \"{}\" }}\n",
        fake.url
    );
    // The default voice (Chirp 3 HD): StreamingSynthesize.
    speaks("google", yaml).await;
    let texts: Vec<Vec<String>> =
        fake.seen(|s| s.tts_stream.iter().map(|c| c.texts.clone()).collect());
    assert_eq!(
        texts,
        [vec![WS_TEXT.to_owned()], vec![SPEAK_TEXT.to_owned()]]
    );
    assert!(fake.seen(|s| s.tts_stream.iter().all(|c| c
        .metadata
        .get("x-goog-api-key")
        .is_some_and(|k| k == "AIzaTestKey-123"))));
    // A Neural2 voice: SynthesizeSpeech, its WAV header stripped by the plugin.
    let yaml = format!(
        "plugins:\n  tts:\n    google: {{ api_key: AIzaTestKey-123, endpoint: \"{}\", \
         voice: en-GB-Neural2-A }}\n",
        fake.url
    );
    speaks("google", yaml).await;
    assert_eq!(fake.seen(|s| s.synth.len()), 2);
}

/// The audio of one `speak` over `/ws`, up to its playback completion.
async fn spoken(c: &mut WsClient, text: &str) -> Vec<u8> {
    c.send_json(json!({"type":"speak","text":text})).await;
    let mut audio = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
            Ok(Frame::Binary(b)) => audio.extend_from_slice(&b),
            Ok(Frame::Json(v)) if v["type"] == "tts_playback_complete" => return audio,
            Ok(Frame::Json(v)) => panic!("unexpected {v}"),
            Ok(Frame::Closed(c)) => panic!("closed {c:?}"),
            Err(_) => panic!("no playback complete within 20 s"),
        }
    }
}

/// The TTS cache (on by default: `cache.max_memory_mb`) through the gateway: the same text in
/// the same voice and client format is synthesised once, whichever session asks; a different
/// client format is another entry.
#[tokio::test]
async fn repeated_text_is_synthesised_once() {
    let fake = fakes::azure_tts::AzureTtsFake::start("az-key").await;
    let yaml = format!(
        "plugins:\n  tts:\n    microsoft-azure: {{ api_key: az-key, base_url: \"{}\" }}\n",
        fake.base_url()
    );
    let server = TestServer::start(&yaml).await;
    let config = json!({"type":"config","tts_config":{
        "provider":"azure","model":"","audio_format":"mulaw","sample_rate":8000}});
    let text = "Say this only once, please.";
    let mut first = WsClient::connect(&server.ws_url("/ws")).await;
    first.configure(config.clone()).await;
    let a = spoken(&mut first, text).await;
    assert!(!a.is_empty(), "no audio");
    assert_eq!(fake.syntheses().len(), 1);
    let b = spoken(&mut first, text).await;
    let mut second = WsClient::connect(&server.ws_url("/ws")).await;
    second.configure(config).await;
    let c = spoken(&mut second, text).await;
    assert!(a == b && b == c, "the same audio each time");
    assert_eq!(fake.syntheses().len(), 1, "the repeats came from the cache");
    // A different text is synthesised.
    spoken(&mut second, "Something else.").await;
    assert_eq!(fake.syntheses().len(), 2);

    // `/speak` in another format: a new entry, then served from it.
    let speak = || async {
        let res = reqwest::Client::new()
            .post(server.url("/speak"))
            .json(&json!({"text":text,"tts_config":{
                "provider":"azure","model":"","audio_format":"linear16","sample_rate":16000}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap()
    };
    let x = speak().await;
    assert_eq!(fake.syntheses().len(), 3, "linear16 is another cache entry");
    let y = speak().await;
    assert_eq!(fake.syntheses().len(), 3, "the repeat came from the cache");
    assert!(!x.is_empty() && x == y);
}
