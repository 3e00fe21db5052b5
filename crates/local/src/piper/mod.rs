//! Piper text-to-speech (VITS models exported to ONNX) on ONNX Runtime.
//!
//! Model inputs/outputs and synthesis steps follow Piper's reference implementation
//! (rhasspy/piper `src/cpp/piper.cpp`): `input` `[1, N]` i64 phoneme ids, `input_lengths`
//! `[1]` i64, `scales` `[3]` f32 = (noise_scale, length_scale, noise_w), optional `sid` `[1]`
//! i64 for multi-speaker voices; output `[1, 1, T]` f32 audio, peak-normalized to 16-bit per
//! sentence; 0.2 s of silence between sentences.

mod phonemes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array1, Array2};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use crate::error::{LocalError, Result};
use crate::espeak::{check_voice_arg, RunLimits};
use crate::models::require_file;
use crate::onnx;

/// Silence inserted between sentences (Piper's `sentence_silence` default).
const SENTENCE_SILENCE_SECONDS: f32 = 0.2;

/// Options for [`PiperVoice::load_with`].
#[derive(Debug, Clone, Default)]
pub struct PiperOptions {
    /// The ONNX Runtime library; `None` = [`onnx::default_library_path`].
    pub ort_library: Option<PathBuf>,
    /// Intra-op threads for inference; 0 = ONNX Runtime's default (one per core).
    pub threads: usize,
    /// VITS's sampling noise, replacing the voice's `.onnx.json` value (0.667 for most voices).
    /// The model draws that noise afresh on every call, so each synthesis of a text differs
    /// slightly in timbre and timing; 0 with `noise_w` 0 makes synthesis repeatable (a
    /// flatter delivery), as fixtures want.
    pub noise_scale: Option<f32>,
    /// The duration predictor's noise, replacing the voice's value (0.8 for most voices).
    pub noise_w: Option<f32>,
}

/// The fields of a Piper voice's `.onnx.json` that synthesis needs.
#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    #[serde(default)]
    espeak: Option<EspeakConfig>,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    phoneme_type: Option<String>,
    #[serde(default)]
    num_speakers: u32,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A loaded Piper voice.
///
/// `synthesize` takes `&self`; runs are serialized internally (an ONNX Runtime session is not
/// safe to run concurrently), so use one voice per worker thread for parallel synthesis.
pub struct PiperVoice {
    session: Mutex<Session>,
    id_map: HashMap<char, Vec<i64>>,
    espeak_voice: Option<String>,
    sample_rate: u32,
    scales: [f32; 3],
    multi_speaker: bool,
    onnx_path: PathBuf,
}

impl PiperVoice {
    /// Loads the voice model `onnx_path` and its configuration `json_path` (`.onnx.json`),
    /// with ONNX Runtime from [`onnx::default_library_path`].
    pub fn load(onnx_path: impl AsRef<Path>, json_path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(onnx_path, json_path, &PiperOptions::default())
    }

    /// Like [`load`](Self::load), with explicit runtime options.
    pub fn load_with(
        onnx_path: impl AsRef<Path>,
        json_path: impl AsRef<Path>,
        options: &PiperOptions,
    ) -> Result<Self> {
        let (onnx_path, json_path) = (onnx_path.as_ref(), json_path.as_ref());
        require_file(onnx_path)?;
        require_file(json_path)?;
        let json = std::fs::read(json_path).map_err(|e| LocalError::io(json_path, e))?;
        let config: VoiceConfig = serde_json::from_slice(&json)
            .map_err(|e| LocalError::config(json_path, e.to_string()))?;

        let mut id_map = HashMap::with_capacity(config.phoneme_id_map.len());
        for (key, ids) in config.phoneme_id_map {
            let mut chars = key.chars();
            // Every key is one code point in Piper's format; anything else cannot match.
            if let (Some(c), None) = (chars.next(), chars.next()) {
                id_map.insert(c, ids);
            }
        }
        for symbol in [phonemes::BOS, phonemes::EOS, phonemes::PAD] {
            if !id_map.contains_key(&symbol) {
                return Err(LocalError::config(
                    json_path,
                    format!("phoneme_id_map lacks {symbol:?}"),
                ));
            }
        }
        let espeak_voice = match config.phoneme_type.as_deref() {
            Some("text") => None,
            _ => {
                let voice = config
                    .espeak
                    .map_or_else(|| "en-us".to_owned(), |e| e.voice);
                check_voice_arg(&voice)?;
                Some(voice)
            }
        };
        if config.audio.sample_rate == 0 {
            return Err(LocalError::config(json_path, "audio.sample_rate is 0"));
        }

        let library = options
            .ort_library
            .clone()
            .unwrap_or_else(onnx::default_library_path);
        let env = onnx::environment(&library)?;
        let ort_err = |e: ort::Error<_>| LocalError::inference("piper", e);
        let mut builder = Session::builder(&env)
            .map_err(|e| LocalError::inference("piper", e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort_err)?;
        if options.threads > 0 {
            builder = builder
                .with_intra_threads(options.threads)
                .map_err(ort_err)?;
        }
        let session = builder.commit_from_file(onnx_path).map_err(|e| {
            LocalError::inference("piper", format!("loading {}: {e}", onnx_path.display()))
        })?;
        let multi_speaker =
            config.num_speakers > 1 && session.inputs().iter().any(|i| i.name() == "sid");
        let noise_scale = options.noise_scale.unwrap_or(config.inference.noise_scale);
        let noise_w = options.noise_w.unwrap_or(config.inference.noise_w);
        if !(noise_scale.is_finite() && noise_w.is_finite() && noise_scale >= 0.0 && noise_w >= 0.0)
        {
            return Err(LocalError::InvalidInput(format!(
                "piper noise must be finite and not negative, got {noise_scale} and {noise_w}"
            )));
        }

        Ok(Self {
            session: Mutex::new(session),
            id_map,
            espeak_voice,
            sample_rate: config.audio.sample_rate,
            scales: [noise_scale, config.inference.length_scale, noise_w],
            multi_speaker,
            onnx_path: onnx_path.to_path_buf(),
        })
    }

    /// The voice's own length scale (its speed: > 1 is slower), from its `.onnx.json`.
    pub fn length_scale(&self) -> f32 {
        self.scales[1]
    }

    /// Sample rate of the synthesized audio (22050 Hz for "medium" voices).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Converts `text` to IPA phonemes with `espeak-ng` (run as a subprocess), one string per
    /// sentence, punctuation included as Piper expects. Each espeak run is limited to
    /// [`ESPEAK_TIMEOUT`](crate::espeak::ESPEAK_TIMEOUT); see [`phonemize_with`](Self::phonemize_with).
    pub fn phonemize(&self, text: &str) -> Result<Vec<String>> {
        self.phonemize_with(text, &RunLimits::default())
    }

    /// Like [`phonemize`](Self::phonemize), with the timeout and cancel token of the espeak runs.
    pub fn phonemize_with(&self, text: &str, limits: &RunLimits) -> Result<Vec<String>> {
        match &self.espeak_voice {
            Some(voice) => phonemes::phonemize(text, voice, limits),
            // "text" voices take the characters themselves (NFD, as piper-phonemize does).
            None => Ok(vec![text.nfd().collect()])
                .map(|v: Vec<String>| v.into_iter().filter(|s| !s.trim().is_empty()).collect()),
        }
    }

    /// Maps one sentence of phonemes to model input ids (`^ _ p1 _ ... pn _ $`).
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        phonemes::phoneme_ids(phonemes, &self.id_map)
    }

    /// Speaks `text`; returns mono 16-bit samples at [`sample_rate`](Self::sample_rate).
    ///
    /// `length_scale_override` replaces the voice's length scale (> 1 is slower, < 1 faster).
    /// Text without anything speakable gives an empty vector.
    pub fn synthesize(&self, text: &str, length_scale_override: Option<f32>) -> Result<Vec<i16>> {
        self.synthesize_with(text, length_scale_override, &RunLimits::default())
    }

    /// Like [`synthesize`](Self::synthesize), under `limits`: they bound the phonemizer runs, and
    /// a cancel stops before the next sentence's inference (one inference is not interrupted)
    /// with [`LocalError::Cancelled`].
    pub fn synthesize_with(
        &self,
        text: &str,
        length_scale_override: Option<f32>,
        limits: &RunLimits,
    ) -> Result<Vec<i16>> {
        let mut scales = self.scales;
        if let Some(length_scale) = length_scale_override {
            if !(length_scale.is_finite() && length_scale > 0.0) {
                return Err(LocalError::InvalidInput(format!(
                    "length scale must be positive, got {length_scale}"
                )));
            }
            scales[1] = length_scale;
        }
        let silence = (self.sample_rate as f32 * SENTENCE_SILENCE_SECONDS) as usize;
        let mut audio = Vec::new();
        for sentence in self.phonemize_with(text, limits)? {
            if limits.cancel.is_cancelled() {
                return Err(LocalError::Cancelled);
            }
            let ids = self.phoneme_ids(&sentence);
            if ids.len() <= 3 {
                continue; // only ^ _ $: nothing to say
            }
            if !audio.is_empty() {
                audio.resize(audio.len() + silence, 0);
            }
            let samples = self.infer(ids, scales)?;
            audio.extend(to_i16_peak_normalized(&samples));
        }
        Ok(audio)
    }

    fn infer(&self, ids: Vec<i64>, scales: [f32; 3]) -> Result<Vec<f32>> {
        let err = |e: ort::Error| LocalError::inference("piper", e);
        let len = ids.len();
        let input = Tensor::from_array(
            Array2::from_shape_vec((1, len), ids).expect("shape matches length"),
        )
        .map_err(err)?;
        let lengths = Tensor::from_array(Array1::from_vec(vec![len as i64])).map_err(err)?;
        let scales = Tensor::from_array(Array1::from_vec(scales.to_vec())).map_err(err)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = if self.multi_speaker {
            let sid = Tensor::from_array(Array1::from_vec(vec![0i64])).map_err(err)?;
            session.run(ort::inputs! {
                "input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => sid
            })
        } else {
            session.run(ort::inputs! {
                "input" => input, "input_lengths" => lengths, "scales" => scales
            })
        }
        .map_err(err)?;
        let (_, samples) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        Ok(samples.to_vec())
    }
}

impl std::fmt::Debug for PiperVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoice")
            .field("onnx_path", &self.onnx_path)
            .field("sample_rate", &self.sample_rate)
            .field("espeak_voice", &self.espeak_voice)
            .field("scales", &self.scales)
            .finish_non_exhaustive()
    }
}

/// Scales audio so its peak reaches full 16-bit range, as Piper does (peak floor 0.01 so
/// near-silence is not amplified into noise).
fn to_i16_peak_normalized(samples: &[f32]) -> impl Iterator<Item = i16> + '_ {
    let peak = samples.iter().fold(0.01f32, |m, s| m.max(s.abs()));
    let scale = 32767.0 / peak;
    samples
        .iter()
        .map(move |s| (s * scale).clamp(-32768.0, 32767.0) as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_normalization() {
        let out: Vec<i16> = to_i16_peak_normalized(&[0.0, 0.25, -0.5]).collect();
        assert_eq!(out, vec![0, 16383, -32767]);
        // Near-silence is not blown up.
        let out: Vec<i16> = to_i16_peak_normalized(&[0.001]).collect();
        assert_eq!(out, vec![3276]);
    }

    #[test]
    fn voice_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PiperVoice>();
    }
}
