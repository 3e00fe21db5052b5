//! Cost of the `silero_vad` processor per 20 ms frame on the calling thread (16 and 48 kHz
//! mono, the pool keeping up), of the earshot fallback path (pool full), and of one Silero
//! ONNX inference per 32 ms window on a worker.
//!
//! `WAAV_MODELS_DIR=... cargo bench -p waav-local --bench silero_vad -- --warm-up-time 1
//! --measurement-time 2` (needs `scripts/fetch-models.sh`; prints a SKIP line without models).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use waav_local::silero::{
    load_pool, model_path, PoolSettings, Scorer, SileroModel, SileroPool, SileroSettings,
    SileroState, SileroVad, WINDOW,
};
use waav_local::ModelPaths;
use waav_plugin_api::{AudioBuffer, AudioProcessor};

/// Speech-like input (a gliding voiced tone with harmonics and syllable modulation, plus a
/// little noise), looped; the same signal as the processors' bench.
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

fn models() -> Option<ModelPaths> {
    let paths = ModelPaths::from_env();
    if model_path(&paths).is_file() && paths.onnxruntime_lib().exists() {
        Some(paths)
    } else {
        eprintln!("SKIP: Silero model not found, run scripts/fetch-models.sh");
        None
    }
}

/// CPU time of the calling thread: what `process` costs the async runtime's worker, without
/// the time the scheduler gives to the inference thread it woke (on a loaded 2-core machine a
/// wall clock counts that too).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for a clock every Linux provides.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One 20 ms frame through `vad`; only `process` is timed (thread CPU time), the wait for the
/// verdict is not (as live, where it comes back before the next frame).
fn bench_frames(c: &mut Criterion, name: &str, rate: u32, mut vad: SileroVad, wait: bool) {
    let input = signal(rate);
    let frame = rate as usize / 50;
    let mut buf = AudioBuffer::with_capacity(rate, 1, frame);
    let mut events = Vec::with_capacity(8);
    let mut pos = 0;
    let mut step = |vad: &mut SileroVad, timed: &mut Duration| {
        buf.samples.clear();
        buf.samples.extend_from_slice(&input[pos..pos + frame]);
        events.clear();
        let t = thread_cpu();
        vad.process(&mut buf, &mut events).unwrap();
        *timed += thread_cpu().saturating_sub(t);
        black_box(&events);
        pos = (pos + frame) % (input.len() - frame);
        while wait && vad.awaiting_model() {
            std::thread::yield_now();
            buf.samples.clear();
            vad.process(&mut buf, &mut events).unwrap();
        }
    };
    let mut warm = Duration::ZERO;
    for _ in 0..100 {
        step(&mut vad, &mut warm);
    }
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                step(&mut vad, &mut timed);
            }
            timed
        })
    });
    if wait {
        assert_eq!(vad.stats().fallback(), 0, "{:?}", vad.stats());
    }
}

fn silero(c: &mut Criterion) {
    let Some(paths) = models() else { return };
    let pool = load_pool(&paths, &PoolSettings::default()).expect("load silero");
    for rate in [16_000u32, 48_000] {
        let vad = SileroVad::new(pool.clone(), SileroSettings::default(), rate, 1).unwrap();
        bench_frames(
            c,
            &format!("silero_vad process 20ms {}k", rate / 1000),
            rate,
            vad,
            true,
        );
    }

    // The fallback path: a pool whose only worker is always busy (queue 0), so earshot scores
    // every window.
    let busy: Scorer = Box::new(|_: &[f32], _: &mut [f32]| {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(0.0)
    });
    let busy = SileroPool::new(vec![busy], 0).unwrap();
    let mut holder = SileroVad::new(busy.clone(), SileroSettings::default(), 16_000, 1).unwrap();
    let mut buf = AudioBuffer::with_capacity(16_000, 1, WINDOW);
    // With no queue a job is taken only by a worker already waiting: retry until it is.
    while busy.running() == 0 {
        buf.samples.clear();
        buf.samples.resize(WINDOW, 0);
        holder.process(&mut buf, &mut Vec::new()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    for rate in [16_000u32, 48_000] {
        let vad = SileroVad::new(busy.clone(), SileroSettings::default(), rate, 1).unwrap();
        bench_frames(
            c,
            &format!("silero_vad fallback (earshot) 20ms {}k", rate / 1000),
            rate,
            vad,
            false,
        );
    }

    // One inference per 32 ms window, on the calling thread (as a worker runs it).
    let mut model = SileroModel::load(&model_path(&paths), &paths.onnxruntime_lib(), 1).unwrap();
    let input: Vec<f32> = signal(16_000)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut memory = SileroState::default();
    let mut pos = 0;
    c.bench_function("silero model window 32ms (1 thread)", |b| {
        b.iter(|| {
            let p = memory.score(&mut model, &input[pos..pos + WINDOW]).unwrap();
            pos = (pos + WINDOW) % (input.len() - WINDOW);
            black_box(p)
        })
    });
}

criterion_group!(benches, silero);
criterion_main!(benches);
