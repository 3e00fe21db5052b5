//! Cloud TTS providers end to end: a WaaV client → the gateway (`/ws` and `POST /speak`) → the
//! vendor's fake on 127.0.0.1, with the core converting the vendor's audio to the client's format.
#![cfg(feature = "cloud")]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::json;
use std::time::Duration;
use waav_testkit::fakes;
// Linking the provider crates registers their plugins.
use waav_azure as _;
use waav_cartesia as _;
use waav_deepgram as _;
use waav_elevenlabs as _;
use waav_hume as _;
use waav_lmnt as _;
use waav_openai as _;
use waav_playht as _;

/// Speaks through `/ws` (mu-law at 8 kHz, a format most vendors do not produce natively) and
/// through `/speak` (linear16 at 16 kHz); both must give audio of the right shape.
async fn speaks(provider: &str, yaml: String) {
    let server = TestServer::start(&yaml).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config":{
        "provider":provider,"model":"","audio_format":"mulaw","sample_rate":8000}}))
        .await;
    c.send_json(json!({"type":"speak","text":"Hello there, this is a test."}))
        .await;
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
        .json(&json!({"text":"Hello.","tts_config":{
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
