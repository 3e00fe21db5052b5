//! The Smart Turn v3.2 model: Whisper-style features of the last 8 s, one ONNX call, a
//! probability that the turn is complete.
//!
//! Pre-processing follows pipecat 1.14's reference (`src/pipecat/audio/turn/smart_turn/`):
//! `local_smart_turn_v3.py::_predict_endpoint` keeps the last 8 s at 16 kHz, zero-pads on the
//! **left**, and `_whisper_features.py::compute_whisper_log_mel_features` normalises the padded
//! waveform to zero mean / unit variance (`(x - mean) / sqrt(var + 1e-7)`), then computes the
//! Whisper log-mel (n_fft 400, hop 160, 80 Slaney mels, reflect-padded centred STFT, last frame
//! dropped → 800 frames, `max(log10, max - 8)` over those frames, `(x + 4) / 4`). The model's
//! input is
//! `input_features` `[1, 80, 800]` f32; its first output is the sigmoid probability.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::error::{LocalError, Result};
use crate::models::{require_file, ModelPaths};
use crate::onnx;
use crate::whisper::mel::LogMel;

/// Sample rate the model takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples the model sees: the last 8 s.
pub const WINDOW_SAMPLES: usize = 8 * SAMPLE_RATE as usize;
/// Mel bins of the features.
pub const N_MELS: usize = 80;
/// Feature frames of 8 s (hop 160: 128000 / 160 + 1 centred frames, the last one dropped).
pub const N_FRAMES: usize = 800;
/// The model file name inside `<models>/smart-turn/`.
pub const MODEL_FILE: &str = "smart-turn-v3.2-cpu.onnx";
/// The variance floor of the waveform normalisation (transformers' `1e-7`).
const NORM_EPS: f32 = 1e-7;

/// `<models>/smart-turn/smart-turn-v3.2-cpu.onnx`, where `scripts/fetch-models.sh` puts it.
pub fn model_path(models: &ModelPaths) -> PathBuf {
    models.root().join("smart-turn").join(MODEL_FILE)
}

/// One loaded Smart Turn session with its feature buffers (use one per worker thread).
pub struct SmartTurn {
    session: Session,
    features: Features,
    path: PathBuf,
}

impl std::fmt::Debug for SmartTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartTurn")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SmartTurn {
    /// Loads the model at `model` with ONNX Runtime from `ort_library`, running each call on
    /// `threads` intra-op threads (pipecat uses 1).
    pub fn load(model: &Path, ort_library: &Path, threads: usize) -> Result<Self> {
        require_file(model)?;
        let env = onnx::environment(ort_library)?;
        let err = |e: ort::Error<_>| LocalError::inference("smart-turn", e);
        let session = Session::builder(&env)
            .map_err(|e| LocalError::inference("smart-turn", e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(err)?
            .with_intra_threads(threads.max(1))
            .map_err(err)?
            .with_inter_threads(1)
            .map_err(err)?
            .commit_from_file(model)
            .map_err(|e| {
                LocalError::inference("smart-turn", format!("loading {}: {e}", model.display()))
            })?;
        Ok(Self {
            session,
            features: Features::new(),
            path: model.to_path_buf(),
        })
    }

    /// The probability (0–1) that the speaker finished their turn, from 16 kHz mono audio that
    /// ends now (only its last 8 s are used; shorter audio is zero-padded on the left).
    pub fn predict(&mut self, audio: &[f32]) -> Result<f32> {
        let features = self.features(audio);
        self.infer(features)
    }

    /// Runs the model on `[80, 800]` features (from [`features`](Self::features)).
    pub fn infer(&mut self, features: Vec<f32>) -> Result<f32> {
        if features.len() != N_MELS * N_FRAMES {
            return Err(LocalError::InvalidInput(format!(
                "smart turn takes {} features, got {}",
                N_MELS * N_FRAMES,
                features.len()
            )));
        }
        let input = Tensor::from_array(([1usize, N_MELS, N_FRAMES], features))
            .map_err(|e| LocalError::inference("smart-turn", e))?;
        let outputs = self
            .session
            .run(ort::inputs! { "input_features" => input })
            .map_err(|e| LocalError::inference("smart-turn", e))?;
        let (_, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| LocalError::inference("smart-turn", e))?;
        probs
            .first()
            .copied()
            .ok_or_else(|| LocalError::inference("smart-turn", "empty output"))
    }

    /// The `[80, 800]` features (row-major) of `audio`, as [`predict`](Self::predict) feeds them.
    pub fn features(&mut self, audio: &[f32]) -> Vec<f32> {
        self.features.compute(audio)
    }
}

/// Smart Turn's feature extractor: the Whisper log-mel of the last 8 s, and only of those
/// 800 frames (the 30 s extractor would compute 3000, four times the work, for frames the
/// model never sees).
struct Features {
    mel: LogMel,
    window: Vec<f32>,
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Features").finish_non_exhaustive()
    }
}

impl Features {
    /// An extractor with its buffers.
    fn new() -> Self {
        Self {
            mel: LogMel::new(N_MELS),
            window: Vec::with_capacity(WINDOW_SAMPLES),
        }
    }

    /// The `[80, 800]` features (row-major) of 16 kHz mono `audio` that ends now.
    ///
    /// The extractor reflect-pads the end of the 8 s as numpy does (`x[N] = x[N-2]`, …), so
    /// frames 0–799 and the `max - 8` clamp over them are exactly the reference's.
    fn compute(&mut self, audio: &[f32]) -> Vec<f32> {
        let tail = &audio[audio.len().saturating_sub(WINDOW_SAMPLES)..];
        let w = &mut self.window;
        w.clear();
        w.resize(WINDOW_SAMPLES - tail.len(), 0.0);
        w.extend_from_slice(tail);
        normalize(w);
        let mut out = Vec::with_capacity(N_MELS * N_FRAMES);
        self.mel.compute_frames(w, N_FRAMES, &mut out);
        out
    }
}

/// Zero mean, unit variance (population variance), as transformers' `zero_mean_unit_var_norm`.
fn normalize(x: &mut [f32]) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let scale = 1.0 / (var as f32 + NORM_EPS).sqrt();
    let mean = mean as f32;
    for v in x {
        *v = (*v - mean) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 800-frame extractor gives what the 30 s one gives for those frames, with numpy's
    /// reflect tail appended by hand (the reference's padding).
    #[test]
    fn features_match_the_thirty_second_extractor() {
        use crate::whisper::mel::{HOP_LENGTH, N_FFT, N_FRAMES as FULL};
        for len in [16_000usize * 3, WINDOW_SAMPLES + 5_000] {
            let audio: Vec<f32> = (0..len)
                .map(|i| {
                    let t = i as f32 / 16_000.0;
                    let voiced = if t < len as f32 / 16_000.0 - 0.5 {
                        0.4
                    } else {
                        0.01
                    };
                    voiced * (t * 900.0).sin() * (t * 3.0).cos() + 0.002 * (i as f32 * 7.3).sin()
                })
                .collect();
            let fast = Features::new().compute(&audio);
            assert_eq!(fast.len(), N_MELS * N_FRAMES);

            let tail = &audio[audio.len().saturating_sub(WINDOW_SAMPLES)..];
            let mut w = vec![0.0; WINDOW_SAMPLES - tail.len()];
            w.extend_from_slice(tail);
            normalize(&mut w);
            let reach = (N_FRAMES - 1) * HOP_LENGTH + N_FFT / 2 - WINDOW_SAMPLES;
            for i in 0..reach {
                w.push(w[WINDOW_SAMPLES - 2 - i]);
            }
            let mut full = Vec::new();
            LogMel::new(N_MELS).compute(&w, &mut full);
            for (m, row) in full.chunks_exact(FULL).enumerate() {
                for (t, want) in row[..N_FRAMES].iter().enumerate() {
                    let got = fast[m * N_FRAMES + t];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "len {len} mel {m} frame {t}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn normalises_to_zero_mean_unit_variance() {
        let mut x: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.1).sin() * 0.3 + 0.1)
            .collect();
        normalize(&mut x);
        let mean = x.iter().sum::<f32>() / x.len() as f32;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / x.len() as f32;
        assert!(mean.abs() < 1e-4, "{mean}");
        assert!((var - 1.0).abs() < 1e-3, "{var}");
        // All zeros stays finite (the epsilon).
        let mut z = vec![0.0f32; 10];
        normalize(&mut z);
        assert!(z.iter().all(|v| *v == 0.0));
    }
}
