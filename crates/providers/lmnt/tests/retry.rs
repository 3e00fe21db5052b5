//! The kit's budgeted handshake retry seen through a real provider: LMNT's WebSocket refuses
//! the first upgrade with a 503 (a vendor restarting), and the request still gets its audio.

use serde_json::json;
use std::time::Duration;
use tokio::time::timeout;
use waav_lmnt::LmntTts;
use waav_plugin_api::{
    AudioEncoding, PluginConfig, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::fakes::lmnt::{audio_for, FakeOptions, LmntFake, WsFault};

const KEY: &str = "lmnt-test-key";
const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_transient_503_on_the_first_upgrade_still_yields_audio() {
    let fake = LmntFake::start(FakeOptions {
        ws_fault: WsFault::Refuse {
            status: 503,
            retry_after: None,
        },
        refuse_first: Some(1),
        ..FakeOptions::new(KEY)
    })
    .await;
    let plugin_cfg = PluginConfig::from_value(
        "plugins.tts.lmnt",
        json!({"base_url": fake.base_url(), "response_timeout_ms": 5000}),
    )
    .unwrap();
    let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(plugin_cfg);
    let plugin = LmntTts::new();
    plugin.prepare(&cfg).await.unwrap();
    let (io, mut peer) = TtsIo::pair(256);
    let task = timeout(GUARD, plugin.open_stream(&cfg, io))
        .await
        .expect("bounded")
        .unwrap()
        .expect("streaming");
    let task = tokio::spawn(task);
    peer.input
        .send(TtsInput::Speak(SpeakRequest {
            id: 1,
            text: "Still here.".into(),
            flush: true,
        }))
        .await
        .unwrap();
    let mut audio = Vec::new();
    loop {
        let ev = timeout(GUARD, peer.events.recv())
            .await
            .expect("bounded")
            .expect("open");
        match ev {
            TtsEvent::Audio { id: 1, data } => audio.extend_from_slice(&data),
            TtsEvent::Done { id: 1 } => break,
            TtsEvent::Error { error, .. } => panic!("the retry should have hidden it: {error}"),
            _ => {}
        }
    }
    assert_eq!(
        audio,
        audio_for("Still here.", "pcm_s16le", 16_000, 1.0, 20)
    );
    drop(peer.input);
    timeout(GUARD, task).await.unwrap().unwrap().unwrap();
    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 2, "one refused upgrade, then the session");
    assert!(
        sessions[0].init.is_null(),
        "the refused upgrade carried no session"
    );
    assert!(fake.speeches().is_empty(), "no fallback to HTTP");
}
