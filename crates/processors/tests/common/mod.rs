//! Signals and helpers shared by the processor tests.
#![allow(dead_code)]

use std::f64::consts::TAU;

use serde_json::Value;
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, PluginConfig, ProcessorContext, ProcessorEvent, Stage,
};

/// A processor config section from JSON.
pub fn cfg(v: Value) -> PluginConfig {
    PluginConfig::from_value("plugins.processors.test.config", v).unwrap()
}

/// A pre-STT context.
pub fn ctx(rate: u32, channels: u16) -> ProcessorContext {
    ProcessorContext::new(Stage::PreStt, rate, channels)
}

/// Deterministic white noise in [-1, 1) (xorshift64*).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Vowel formants (F1, F2, F3) in Hz.
const VOWELS: [[f64; 3]; 5] = [
    [730.0, 1090.0, 2440.0], // a
    [270.0, 2290.0, 3010.0], // i
    [300.0, 870.0, 2240.0],  // u
    [530.0, 1840.0, 2480.0], // e
    [570.0, 840.0, 2410.0],  // o
];

/// Speech-like audio: a voiced source (harmonics of a 120–200 Hz gliding pitch) shaped by vowel
/// formants that change every syllable (~180 ms, raised-cosine syllable envelopes with short
/// dips), `secs` long, peak near `amplitude` (0–1 of full scale). Values are in [-1, 1].
pub fn voiced(rate: u32, secs: f64, amplitude: f64, seed: u64) -> Vec<f64> {
    let n = (secs * f64::from(rate)) as usize;
    let mut out = vec![0.0; n];
    let max_h = 40;
    let mut phases = vec![0.0f64; max_h];
    let syllable = 0.18;
    let mut rng = Noise::new(seed);
    let mut vowel_seq = Vec::new();
    for _ in 0..((secs / syllable) as usize + 2) {
        vowel_seq.push(((rng.next() + 1.0) * 2.5) as usize % VOWELS.len());
    }
    let fs = f64::from(rate);
    let mut weights = vec![0.0f64; max_h];
    let mut current_syl = usize::MAX;
    for (i, o) in out.iter_mut().enumerate() {
        let t = i as f64 / fs;
        let f0 = 160.0 + 35.0 * (TAU * 0.7 * t + seed as f64).sin() + 5.0 * (TAU * 5.0 * t).sin();
        let syl = (t / syllable) as usize;
        let pos = t / syllable - syl as f64;
        // Syllable envelope: rises and falls within each syllable, never fully silent for long.
        let env = 0.25 + 0.75 * (std::f64::consts::PI * pos).sin().powi(2);
        if syl != current_syl || i % 64 == 0 {
            current_syl = syl;
            let [f1, f2, f3] = VOWELS[vowel_seq[syl]];
            for (h, w) in weights.iter_mut().enumerate() {
                let f = f0 * (h + 1) as f64;
                let res = |fc: f64, bw: f64| 1.0 / (1.0 + ((f - fc) / bw).powi(2));
                *w = if f < fs / 2.0 - 200.0 && f < 4500.0 {
                    (res(f1, 90.0) + 0.7 * res(f2, 110.0) + 0.4 * res(f3, 150.0) + 0.02)
                        / (h + 1) as f64
                } else {
                    0.0
                };
            }
        }
        let mut v = 0.0;
        for (h, (p, w)) in phases.iter_mut().zip(&weights).enumerate() {
            *p += TAU * f0 * (h + 1) as f64 / fs;
            if *p > TAU {
                *p -= TAU;
            }
            if *w > 0.0 {
                v += w * p.sin();
            }
        }
        *o = v * env;
    }
    let peak = out.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
    out.iter_mut().for_each(|v| *v *= amplitude / peak);
    // Fade in and out over 10 ms so the edges are clean.
    let fade = (0.01 * fs) as usize;
    for i in 0..fade.min(n / 2) {
        let g = i as f64 / fade as f64;
        out[i] *= g;
        out[n - 1 - i] *= g;
    }
    out
}

/// `secs` of silence.
pub fn silence(rate: u32, secs: f64) -> Vec<f64> {
    vec![0.0; (secs * f64::from(rate)) as usize]
}

/// To i16 samples (values in [-1, 1]).
pub fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A sine of `freq` Hz at `amp` (0–1), `n` samples.
pub fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * 32767.0 * (TAU * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
        .collect()
}

/// Interleaves two mono signals.
pub fn interleave(l: &[i16], r: &[i16]) -> Vec<i16> {
    l.iter().zip(r).flat_map(|(&a, &b)| [a, b]).collect()
}

/// One channel of an interleaved signal.
pub fn channel(x: &[i16], ch: usize, c: usize) -> Vec<i16> {
    x.iter().skip(c).step_by(ch).copied().collect()
}

/// Events with the block they were pushed in: (index of the first sample frame after the block, event).
pub type Timed = Vec<(usize, ProcessorEvent)>;

/// Runs `p` over `input` in blocks of `block` sample frames; returns the concatenated output
/// and the events, each with the input frame position at the end of its block.
pub fn run(
    p: &mut dyn AudioProcessor,
    input: &[i16],
    rate: u32,
    channels: u16,
    block: usize,
) -> (Vec<i16>, Timed) {
    let ch = usize::from(channels);
    let mut out = Vec::with_capacity(input.len() * 4);
    let mut events = Vec::new();
    let mut timed = Vec::new();
    let mut buf = AudioBuffer::with_capacity(rate, channels, block * ch * 8);
    let mut pos = 0;
    for chunk in input.chunks(block * ch) {
        buf.samples.clear();
        buf.samples.extend_from_slice(chunk);
        buf.sample_rate = rate;
        buf.channels = channels;
        events.clear();
        p.process(&mut buf, &mut events).unwrap();
        pos += chunk.len() / ch;
        out.extend_from_slice(&buf.samples);
        timed.extend(events.iter().map(|e| (pos, *e)));
    }
    (out, timed)
}

/// Signal-to-noise ratio (dB) of `x` against the clean `reference`.
pub fn snr_db(reference: &[f64], x: &[f64]) -> f64 {
    let sig: f64 = reference.iter().map(|v| v * v).sum();
    let err: f64 = reference.iter().zip(x).map(|(r, v)| (r - v).powi(2)).sum();
    10.0 * (sig / err.max(1e-20)).log10()
}

/// RMS level in dBFS of i16 samples.
pub fn rms_dbfs(x: &[i16]) -> f64 {
    let ms = x
        .iter()
        .map(|&v| (f64::from(v) / 32768.0).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    10.0 * ms.max(1e-20).log10()
}

/// Frequency estimate (Hz) from upward zero crossings, interpolated.
pub fn zero_crossing_freq(x: &[i16], rate: u32) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for i in 1..x.len() {
        let (a, b) = (f64::from(x[i - 1]), f64::from(x[i]));
        if a < 0.0 && b >= 0.0 {
            let t = (i - 1) as f64 + a / (a - b);
            if first.is_none() {
                first = Some(t);
            } else {
                count += 1;
            }
            last = t;
        }
    }
    let first = first.expect("no zero crossings");
    count as f64 * f64::from(rate) / (last - first)
}

/// The frequency (Hz, 5 Hz resolution) with the most energy, by a Goertzel scan of `lo..hi`.
pub fn peak_freq(x: &[i16], rate: u32, lo: f64, hi: f64) -> f64 {
    let fs = f64::from(rate);
    let mut best = (0.0, lo);
    let mut f = lo;
    while f <= hi {
        let w = TAU * f / fs;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        if p > best.0 {
            best = (p, f);
        }
        f += 5.0;
    }
    best.1
}

/// Whether espeak-ng can be used; when not, `CI=true` fails the test, otherwise it is skipped
/// with a loud message.
pub fn espeak_or_skip(test: &str) -> bool {
    let ok = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: espeak-ng is required in CI (apt-get install espeak-ng)");
        }
        eprintln!("=== SKIPPED {test}: espeak-ng is not installed ===");
    }
    ok
}
