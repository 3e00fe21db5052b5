//! Micro-benchmarks of the per-message and per-frame work: `cargo bench -p waav-gateway`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use waav_gateway::audio::Bridge;
use waav_gateway::cache::{CacheKey, CachedAudio, TtsCache};
use waav_gateway::config::{CacheConfig, PluginsConfig};
use waav_gateway::registry::Registry;
use waav_gateway::session::outbound::{Outbound, Outgoing};
use waav_gateway::session::protocol::{ClientMessage, ServerMessage};
use waav_plugin_api::{AudioBuffer, AudioEncoding, AudioFormat, PluginContext, TtsSessionConfig};

fn messages(c: &mut Criterion) {
    let speak = r#"{"type":"speak","text":"Hello there, how can I help you today?","flush":true}"#;
    let config = r#"{"type":"config","stream_id":"abc","stt_config":{"provider":"deepgram","language":"en-US","sample_rate":16000,"channels":1,"punctuation":true,"encoding":"linear16","model":"nova-3"},"tts_config":{"provider":"elevenlabs","model":"","voice_id":"v1","audio_format":"linear16","sample_rate":24000}}"#;
    c.bench_function("parse speak", |b| {
        b.iter(|| serde_json::from_str::<ClientMessage>(black_box(speak)).unwrap())
    });
    c.bench_function("parse config", |b| {
        b.iter(|| serde_json::from_str::<ClientMessage>(black_box(config)).unwrap())
    });
    let result = ServerMessage::SttResult {
        transcript: "hello there how can I help".into(),
        is_final: true,
        is_speech_final: false,
        confidence: 0.93,
        provider: Some("deepgram"),
        language: None,
        words: vec![],
        speaker: None,
    };
    c.bench_function("serialize stt_result", |b| {
        b.iter(|| serde_json::to_string(black_box(&result)).unwrap())
    });
}

fn registry(c: &mut Criterion) {
    waav_testkit::link();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reg = Registry::build(&PluginsConfig::default()).unwrap();
    rt.block_on(reg.init_all(&PluginContext::default()));
    c.bench_function("registry lookup by alias", |b| {
        b.iter(|| reg.stt(black_box("Loopback-STT"), None).is_ok())
    });
}

fn fifo(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (out, mut rx) = Outbound::new();
    let frame = Bytes::from(vec![0u8; 640]);
    c.bench_function("outgoing FIFO: binary frame in and out", |b| {
        b.iter(|| {
            rt.block_on(out.binary(frame.clone()));
            match rx.try_recv() {
                Ok(Outgoing::Binary(f)) => f,
                _ => unreachable!(),
            }
        })
    });
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = TtsCache::new(&CacheConfig::default());
    let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_voice("v1");
    let client = AudioFormat::linear16(24_000);
    let key = CacheKey::new(
        "elevenlabs",
        &cfg,
        client,
        "Hello there, how can I help you today?",
    );
    cache.insert(
        key,
        CachedAudio {
            data: Bytes::from(vec![1u8; 48_000]),
            frame_bytes: 960,
        },
    );
    c.bench_function("cache key", |b| {
        b.iter(|| {
            CacheKey::new(
                "elevenlabs",
                black_box(&cfg),
                client,
                "Hello there, how can I help you today?",
            )
        })
    });
    c.bench_function("cache get (hit)", |b| {
        b.iter(|| rt.block_on(cache.get(black_box(key))).is_some())
    });
}

fn audio(c: &mut Criterion) {
    let frame: Vec<u8> = (0..640u32).map(|i| i as u8).collect();
    let mut buf = AudioBuffer::with_capacity(16_000, 1, 320);
    c.bench_function("PCM16 bytes → samples (20 ms @ 16 kHz)", |b| {
        b.iter(|| {
            buf.fill_from_le_bytes(black_box(&frame));
            buf.samples.len()
        })
    });
    let samples: Vec<i16> = (0..320).map(|i| (i * 97 % 65536) as i16).collect();
    c.bench_function("G.711 mu-law encode (20 ms @ 16 kHz)", |b| {
        b.iter(|| {
            black_box(&samples)
                .iter()
                .map(|&s| waav_plugin_api::codec::mulaw_encode(s) as u32)
                .sum::<u32>()
        })
    });
    // The core's per-session conversions, one 20 ms frame per iteration, in steady state.
    let tone = |rate: u32| -> Bytes {
        (0..rate / 50)
            .flat_map(|i| (((i as f32 * 0.07).sin() * 9000.0) as i16).to_le_bytes())
            .collect::<Vec<u8>>()
            .into()
    };
    let pairs = [
        (
            "bridge passthrough (20 ms @ 16 kHz)",
            AudioFormat::linear16(16_000),
            AudioFormat::linear16(16_000),
        ),
        (
            "bridge linear16 24 kHz → mulaw 8 kHz (20 ms)",
            AudioFormat::linear16(24_000),
            AudioFormat {
                encoding: AudioEncoding::Mulaw,
                ..AudioFormat::linear16(8_000)
            },
        ),
        (
            "bridge linear16 48 kHz → 16 kHz (20 ms)",
            AudioFormat::linear16(48_000),
            AudioFormat::linear16(16_000),
        ),
        (
            "bridge linear16 22.05 kHz → 24 kHz (20 ms)",
            AudioFormat::linear16(22_050),
            AudioFormat::linear16(24_000),
        ),
    ];
    for (name, from, to) in pairs {
        let input = tone(from.sample_rate);
        let frame = to.frame_bytes().unwrap_or(2) * (to.sample_rate as usize / 50);
        let mut bridge = Bridge::new(from, to, frame).unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                bridge.push(black_box(input.clone()), &mut |f| n += f.len());
                n
            })
        });
    }
}

criterion_group!(benches, messages, registry, fifo, cache, audio);
criterion_main!(benches);
