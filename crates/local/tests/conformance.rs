//! The local engines against the testkit's conformance suites: Whisper STT with real speech,
//! Piper and espeak TTS.

mod common;

use common::{espeak_or_skip, models_or_skip, FOX};
use waav_local::plugins::{EspeakTts, LocalStt, LocalTts};
use waav_plugin_api::{
    AudioEncoding, Plugin, PluginConfig, PluginContext, SttSessionConfig, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::conformance::{check_stt, check_tts, SttFixture, TtsFixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stt_conforms() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let plugin = LocalStt::default();
    let mut settings = serde_json::Map::new();
    settings.insert(
        "models_dir".into(),
        paths.root().display().to_string().into(),
    );
    plugin
        .init(
            &PluginContext::default(),
            &PluginConfig::new("plugins.stt.local", settings),
        )
        .await
        .expect("the model loads");
    // espeak's voice at 130 wpm is clear enough for tiny.en; its own 22,050 Hz rate also checks
    // that the plugin resamples.
    let (audio, rate) = waav_local::espeak_synthesize(FOX, "en-us", 130).expect("espeak");
    let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
    let fixture = SttFixture::pcm16(bytes, rate)
        .with_session(SttSessionConfig::new("en-US", rate))
        .expect("fox");
    let report = check_stt(&plugin, &fixture).await;
    report.assert_ok();
}

/// Initialises `plugin` with `settings` and runs the TTS suite at the rate it declares.
async fn tts_conforms(plugin: &dyn TtsPlugin, section: &str, settings: serde_json::Value) {
    let serde_json::Value::Object(settings) = settings else {
        unreachable!()
    };
    plugin
        .init(
            &PluginContext::default(),
            &PluginConfig::new(section, settings),
        )
        .await
        .expect("the engine loads");
    let rate = plugin.capabilities().sample_rates[0];
    let fixture = TtsFixture::new(TtsSessionConfig::new(AudioEncoding::Linear16, rate));
    check_tts(plugin, &fixture).await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tts_conforms() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let dir = paths.root().display().to_string();
    tts_conforms(
        &LocalTts::default(),
        "plugins.tts.local",
        serde_json::json!({ "models_dir": dir }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn espeak_tts_conforms() {
    if !espeak_or_skip() {
        return;
    }
    tts_conforms(
        &EspeakTts::default(),
        "plugins.tts.espeak",
        serde_json::json!({}),
    )
    .await;
}
