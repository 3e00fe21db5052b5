//! Whisper's log-mel spectrogram, computed exactly as the reference implementation does
//! (openai/whisper `whisper/audio.py`: `log_mel_spectrogram` and `mel_filters`, which uses
//! `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)` — Slaney mel scale and area norm).

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate Whisper expects.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT window length (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP_LENGTH: usize = 160;
/// Samples in one 30 s window.
pub const N_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = N_SAMPLES / HOP_LENGTH;

const N_BINS: usize = N_FFT / 2 + 1;

/// Computes `[n_mels, 3000]` log-mel features of one 30 s window, reusing its buffers.
pub struct LogMel {
    n_mels: usize,
    /// Non-zero span of each triangular filter: (first bin, weights). Each filter covers only a
    /// few bins, so this is ~40x less work than the dense `[n_mels][N_BINS]` product.
    filters: Vec<(usize, Vec<f32>)>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    padded: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    /// `[N_FRAMES][N_BINS]` power spectrogram.
    power: Vec<f32>,
}

impl LogMel {
    /// Creates an extractor for `n_mels` mel bins (80 for all Whisper models but large-v3).
    pub fn new(n_mels: usize) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        // torch.hann_window(N_FFT) is periodic: 0.5 - 0.5 cos(2πn/N).
        let window = (0..N_FFT)
            .map(|n| (0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        Self {
            n_mels,
            filters: sparse(&mel_filters(n_mels)),
            window,
            fft,
            padded: Vec::with_capacity(N_SAMPLES + N_FFT),
            frame: vec![0.0; N_FFT],
            spectrum,
            scratch,
            power: vec![0.0; N_FRAMES * N_BINS],
        }
    }

    /// Number of mel bins.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Writes the features of `samples` (16 kHz mono, zero-padded or truncated to 30 s) into
    /// `out` as `[n_mels, 3000]` row-major, the layout CTranslate2 takes as `[1, n_mels, 3000]`.
    pub fn compute(&mut self, samples: &[f32], out: &mut Vec<f32>) {
        self.compute_frames(samples, N_FRAMES, out);
    }

    /// Like [`compute`](Self::compute) for a window of `n_frames` frames (10 ms each, at most
    /// 3000): `samples` are zero-padded or truncated to `n_frames * 160` and `out` is
    /// `[n_mels, n_frames]`. With `n_frames = 3000` this is exactly the reference; shorter
    /// windows differ only in the zero padding left out (the normalisation takes its maximum
    /// from the speech, not the padding).
    pub fn compute_frames(&mut self, samples: &[f32], n_frames: usize, out: &mut Vec<f32>) {
        let n_frames = n_frames.clamp(1, N_FRAMES);
        let n_samples = n_frames * HOP_LENGTH;
        let samples = &samples[..samples.len().min(n_samples)];
        // pad_or_trim, then torch.stft(center=True) reflect-pads N_FFT/2 on each side.
        let half = N_FFT / 2;
        let padded = &mut self.padded;
        padded.clear();
        padded.resize(n_samples + N_FFT, 0.0);
        padded[half..half + samples.len()].copy_from_slice(samples);
        for i in 1..=half {
            padded[half - i] = padded[half + i];
            padded[half + n_samples - 1 + i] = padded[half + n_samples - 1 - i];
        }

        // STFT power; the reference drops the last frame (`stft[..., :-1]`), so 3000 frames.
        for t in 0..n_frames {
            let start = t * HOP_LENGTH;
            for ((f, &x), &w) in self
                .frame
                .iter_mut()
                .zip(&padded[start..start + N_FFT])
                .zip(&self.window)
            {
                *f = x * w;
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("buffer sizes come from the planner");
            for (p, c) in self.power[t * N_BINS..(t + 1) * N_BINS]
                .iter_mut()
                .zip(&self.spectrum)
            {
                *p = c.norm_sqr();
            }
        }

        // mel = filters @ power; log10(max(mel, 1e-10)); clamp to max - 8; (x + 4) / 4.
        out.clear();
        out.resize(self.n_mels * n_frames, 0.0);
        let mut max = f32::NEG_INFINITY;
        for (row, (first, weights)) in out.chunks_exact_mut(n_frames).zip(&self.filters) {
            for (t, v) in row.iter_mut().enumerate() {
                let power = &self.power[t * N_BINS + first..];
                let mel: f32 = weights.iter().zip(power).map(|(a, b)| a * b).sum();
                *v = mel.max(1e-10).log10();
                max = max.max(*v);
            }
        }
        let floor = max - 8.0;
        for v in out.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
    }
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("n_mels", &self.n_mels)
            .finish_non_exhaustive()
    }
}

/// Keeps the non-zero span of each filter row.
fn sparse(dense: &[f32]) -> Vec<(usize, Vec<f32>)> {
    dense
        .chunks_exact(N_BINS)
        .map(|row| {
            let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w != 0.0).unwrap_or(0);
            (first, row[first..=last.max(first)].to_vec())
        })
        .collect()
}

/// Slaney-style mel filterbank `[n_mels][N_BINS]`, as `librosa.filters.mel(sr=16000, n_fft=400,
/// n_mels, fmin=0, fmax=8000, htk=False, norm="slaney")` computes it (in f64, stored as f32).
fn mel_filters(n_mels: usize) -> Vec<f32> {
    // Slaney scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz >= MIN_LOG_HZ {
            MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
        } else {
            hz / F_SP
        }
    };
    let mel_to_hz = |mel: f64| {
        if mel >= MIN_LOG_MEL {
            MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
        } else {
            F_SP * mel
        }
    };

    let fmax = SAMPLE_RATE as f64 / 2.0;
    let max_mel = hz_to_mel(fmax);
    // n_mels + 2 band edges, evenly spaced in mel.
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();
    let fft_freqs: Vec<f64> = (0..N_BINS)
        .map(|k| k as f64 * SAMPLE_RATE as f64 / N_FFT as f64)
        .collect();

    let mut filters = vec![0f32; n_mels * N_BINS];
    for m in 0..n_mels {
        let (lo, center, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (center - lo);
            let upper = (hi - f) / (hi - center);
            filters[m * N_BINS + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_range() {
        let mut mel = LogMel::new(80);
        let mut out = Vec::new();
        // 1 s of 440 Hz: padded to 30 s.
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|n| (n as f32 * 440.0 * std::f32::consts::TAU / SAMPLE_RATE as f32).sin() * 0.5)
            .collect();
        mel.compute(&tone, &mut out);
        assert_eq!(out.len(), 80 * N_FRAMES);
        let max = out.iter().copied().fold(f32::MIN, f32::max);
        let min = out.iter().copied().fold(f32::MAX, f32::min);
        // After the clamp the dynamic range is exactly 8 (log10 units) / 4 = 2.
        assert!((max - min - 2.0).abs() < 1e-4, "{min}..{max}");
        // 440 Hz lies in a low mel bin: that bin beats the top one in a voiced frame.
        let frame = 50;
        let bin_440 = (0..80)
            .max_by(|&a, &b| out[a * N_FRAMES + frame].total_cmp(&out[b * N_FRAMES + frame]))
            .unwrap();
        assert!((5..12).contains(&bin_440), "peak bin {bin_440}");
        // Longer input is truncated, not rejected; buffers are reused.
        mel.compute(&vec![0.1; N_SAMPLES + 1234], &mut out);
        assert_eq!(out.len(), 80 * N_FRAMES);
        assert_eq!(LogMel::new(128).n_mels(), 128);
    }

    #[test]
    fn a_short_window_is_the_start_of_the_30s_one() {
        let mut mel = LogMel::new(80);
        let (mut long, mut short) = (Vec::new(), Vec::new());
        // 1.3 s of a gliding tone with an envelope; a 2 s window holds all of it.
        let audio: Vec<f32> = (0..SAMPLE_RATE * 13 / 10)
            .map(|n| {
                let t = n as f32 / SAMPLE_RATE as f32;
                (t * (300.0 + 400.0 * t) * std::f32::consts::TAU).sin() * 0.4 * (t * 3.0).sin()
            })
            .collect();
        mel.compute(&audio, &mut long);
        mel.compute_frames(&audio, 200, &mut short);
        assert_eq!(short.len(), 80 * 200);
        for m in 0..80 {
            for t in 0..200 {
                let (a, b) = (long[m * N_FRAMES + t], short[m * 200 + t]);
                assert!((a - b).abs() < 1e-5, "bin {m} frame {t}: {a} vs {b}");
            }
        }
        // Out-of-range frame counts are clamped, never a panic.
        mel.compute_frames(&audio, 0, &mut short);
        assert_eq!(short.len(), 80);
        mel.compute_frames(&audio, N_FRAMES + 5, &mut short);
        assert_eq!(short, long);
    }

    #[test]
    fn filterbank_matches_librosa_values() {
        let f = mel_filters(80);
        // Reference values from openai/whisper `whisper/assets/mel_filters.npz` (`mel_80`).
        for (m, k, want) in [
            (0, 1, 0.024_862_595),
            (1, 2, 0.022_871_772),
            (40, 43, 0.014_735_566),
            (79, 192, 0.003_164_712),
        ] {
            let got = f[m * N_BINS + k];
            assert!(
                (got - want).abs() < 1e-6,
                "filter {m} bin {k}: {got} vs {want}"
            );
        }
        assert_eq!(f[0], 0.0);
        // Each row has at least one non-zero weight.
        assert!(f.chunks(N_BINS).all(|row| row.iter().any(|&w| w > 0.0)));
    }
}
