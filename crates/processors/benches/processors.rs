//! Cost of one 20 ms frame through each processor at 16 and 48 kHz (mono), and of `[denoise, vad]`.
//!
//! `cargo bench -p waav-processors` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, PluginConfig, ProcessorContext, ProcessorPlugin, Stage,
};
use waav_processors::{DenoisePlugin, GainPlugin, ResamplePlugin, VadPlugin};

/// Speech-like input: a gliding 120–200 Hz voiced tone with harmonics and syllable modulation,
/// plus a little noise, looped.
fn signal(rate: u32) -> Vec<i16> {
    let mut seed = 0x1234_5678u32;
    (0..rate as usize * 2)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 160.0 + 40.0 * (std::f64::consts::TAU * 0.7 * t).sin();
            let env = 0.3 + 0.7 * (std::f64::consts::PI * t / 0.18).sin().powi(2);
            let v: f64 = (1..=12)
                .map(|h| (std::f64::consts::TAU * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f64 / u32::MAX as f64 - 0.5) * 600.0;
            (v * env * 6000.0 + noise) as i16
        })
        .collect()
}

fn make(p: &dyn ProcessorPlugin, rate: u32, config: Value) -> Box<dyn AudioProcessor> {
    let cfg = PluginConfig::from_value("bench", config).unwrap();
    p.create(&ProcessorContext::new(Stage::PreStt, rate, 1), &cfg)
        .unwrap()
}

/// Benchmarks `chain` on consecutive 20 ms frames of the signal (state carries over, as live).
fn bench_chain(c: &mut Criterion, name: &str, rate: u32, mut chain: Vec<Box<dyn AudioProcessor>>) {
    let input = signal(rate);
    let frame = rate as usize / 50;
    let mut buf = AudioBuffer::with_capacity(rate, 1, frame * 8);
    let mut events = Vec::with_capacity(8);
    let mut pos = 0;
    // Warm up the buffers.
    for _ in 0..50 {
        buf.samples.clear();
        buf.samples.extend_from_slice(&input[pos..pos + frame]);
        buf.sample_rate = rate;
        for p in &mut chain {
            p.process(&mut buf, &mut events).unwrap();
        }
        pos = (pos + frame) % (input.len() - frame);
    }
    c.bench_function(name, |b| {
        b.iter_batched_ref(
            || (),
            |_| {
                buf.samples.clear();
                buf.samples.extend_from_slice(&input[pos..pos + frame]);
                buf.sample_rate = rate;
                events.clear();
                for p in &mut chain {
                    p.process(&mut buf, &mut events).unwrap();
                }
                pos = (pos + frame) % (input.len() - frame);
                black_box(&buf.samples);
            },
            BatchSize::SmallInput,
        )
    });
}

fn processors(c: &mut Criterion) {
    for rate in [16_000u32, 48_000] {
        let k = rate / 1000;
        bench_chain(
            c,
            &format!("vad/{k}k"),
            rate,
            vec![make(&VadPlugin, rate, json!({}))],
        );
        bench_chain(
            c,
            &format!("denoise/{k}k"),
            rate,
            vec![make(&DenoisePlugin, rate, json!({}))],
        );
        bench_chain(
            c,
            &format!("gain_agc/{k}k"),
            rate,
            vec![make(&GainPlugin, rate, json!({"mode": "agc"}))],
        );
        bench_chain(
            c,
            &format!("denoise+vad/{k}k"),
            rate,
            vec![
                make(&DenoisePlugin, rate, json!({})),
                make(&VadPlugin, rate, json!({})),
            ],
        );
    }
    bench_chain(
        c,
        "resample/16k->48k",
        16_000,
        vec![make(&ResamplePlugin, 16_000, json!({"to_rate": 48_000}))],
    );
    bench_chain(
        c,
        "resample/48k->16k",
        48_000,
        vec![make(&ResamplePlugin, 48_000, json!({"to_rate": 16_000}))],
    );
}

criterion_group!(benches, processors);
criterion_main!(benches);
