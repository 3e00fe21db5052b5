//! Cost of one Smart Turn v3.2 verdict: the 8 s log-mel features, the ONNX inference (one
//! intra-op thread, as the pool's workers run it), and both together.
//!
//! `WAAV_MODELS_DIR=... cargo bench -p waav-local --bench smart_turn -- --warm-up-time 1
//! --measurement-time 5` (needs `scripts/fetch-models.sh`; prints a SKIP line without models).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use waav_local::turn::{model_path, SmartTurn, WINDOW_SAMPLES};
use waav_local::ModelPaths;

/// 8 s of speech-like audio (a gliding voiced tone with syllable modulation) ending in 300 ms
/// of near silence, as the detector sees it after a VAD stop.
fn audio() -> Vec<f32> {
    (0..WINDOW_SAMPLES)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            if t > 7.7 {
                return (((i * 7919) % 101) as f32 - 50.0) * 1e-5;
            }
            let f0 = 150.0 + 30.0 * (std::f64::consts::TAU * 0.5 * t).sin();
            let env = 0.2 + 0.8 * (std::f64::consts::PI * t / 0.22).sin().powi(2);
            let v: f64 = (1..=10)
                .map(|h| (std::f64::consts::TAU * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            (v * env * 0.2) as f32
        })
        .collect()
}

fn smart_turn(c: &mut Criterion) {
    let paths = ModelPaths::from_env();
    if !model_path(&paths).is_file() || !paths.onnxruntime_lib().exists() {
        eprintln!("SKIP: Smart Turn model not found, run scripts/fetch-models.sh");
        return;
    }
    let mut model = SmartTurn::load(&model_path(&paths), &paths.onnxruntime_lib(), 1).unwrap();
    let audio = audio();
    let mut group = c.benchmark_group("smart_turn");
    group.sample_size(10);
    group.bench_function("features 8s", |b| {
        b.iter(|| black_box(model.features(&audio)))
    });
    let features = model.features(&audio);
    group.bench_function("inference (1 thread)", |b| {
        b.iter(|| black_box(model.infer(features.clone()).unwrap()))
    });
    group.bench_function("verdict (features + inference)", |b| {
        b.iter(|| black_box(model.predict(&audio).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = smart_turn
}
criterion_main!(benches);
