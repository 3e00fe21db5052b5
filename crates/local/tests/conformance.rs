//! The local Whisper STT plugin against the testkit's STT conformance suite, with real speech.

mod common;

use common::{espeak_or_skip, models_or_skip, FOX};
use waav_local::plugins::LocalStt;
use waav_plugin_api::{Plugin, PluginConfig, PluginContext, SttSessionConfig};
use waav_testkit::conformance::{check_stt, SttFixture};

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
