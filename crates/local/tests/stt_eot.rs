//! The local STT plugin's end-of-utterance behaviour with the real models, at its defaults
//! (500 ms hangover, speculative final at the first pause, full encoder window): a sentence
//! with a 300 ms pause inside is one final, and back-to-back sentences apart by a long pause are
//! two.
#![cfg(all(feature = "whisper", feature = "piper"))]

mod common;

use std::time::Duration;

use common::*;
use waav_local::plugins::LocalStt;
use waav_local::to_mono_16k;
use waav_plugin_api::{
    Plugin, PluginConfig, PluginContext, SttEvent, SttInput, SttIo, SttPlugin, SttSessionConfig,
};

fn piper_16k(paths: &waav_local::ModelPaths, text: &str) -> Vec<f32> {
    let voice = piper(paths);
    to_mono_16k(
        &voice.synthesize(text, None).expect("tts"),
        voice.sample_rate(),
        1,
    )
}

async fn plugin(paths: &waav_local::ModelPaths) -> LocalStt {
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
    plugin
}

/// Streams `audio` in real time (20 ms chunks) and returns the non-empty finals.
async fn finals(plugin: &LocalStt, audio: &[f32]) -> Vec<String> {
    let (io, mut peer) = SttIo::pair(256);
    let task = plugin
        .connect(SttSessionConfig::new("en-US", 16_000), io)
        .await
        .expect("connect");
    let task = tokio::spawn(task);
    let pcm: Vec<u8> = audio
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut chunks = pcm.chunks(640);
    loop {
        tokio::select! {
            _ = tick.tick() => match chunks.next() {
                Some(c) => peer.input.send(SttInput::Audio(bytes::Bytes::copy_from_slice(c))).await.unwrap(),
                None => break,
            },
            Some(ev) = peer.events.recv() => {
                if let SttEvent::Transcript(t) = ev {
                    if t.is_final && !t.text.is_empty() {
                        out.push(t.text.clone());
                    }
                }
            }
        }
    }
    drop(peer.input);
    let rest = async {
        while let Some(ev) = peer.events.recv().await {
            if let SttEvent::Transcript(t) = ev {
                if t.is_final && !t.text.is_empty() {
                    out.push(t.text.clone());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), rest)
        .await
        .expect("the session ends");
    task.await.unwrap().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentence_with_a_300ms_pause_is_one_final() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let stt = plugin(&paths).await;
    let (a, b) = ("I would like to book", "a table for two tonight.");
    let mut audio = vec![0.0; 8_000];
    audio.extend(piper_16k(&paths, a));
    audio.extend(vec![0.0; 16 * 300]);
    audio.extend(piper_16k(&paths, b));
    audio.extend(vec![0.0; 24_000]);
    let got = finals(&stt, &audio).await;
    assert_eq!(got.len(), 1, "one final for one sentence: {got:?}");
    assert_transcript(&format!("{a} {b}"), &got[0], "sentence with a pause");

    // Two sentences 1.2 s apart are two utterances (the hangover does end them).
    let mut audio = vec![0.0; 8_000];
    audio.extend(piper_16k(&paths, "Hello there."));
    audio.extend(vec![0.0; 16 * 1200]);
    audio.extend(piper_16k(&paths, FOX));
    audio.extend(vec![0.0; 24_000]);
    let got = finals(&stt, &audio).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_transcript("Hello there.", &got[0], "first sentence");
    assert_transcript(FOX, &got[1], "second sentence");
}
