//! Whisper speech-to-text on CTranslate2 (`ct2rs`), fully offline.
//!
//! Uses the low-level `ct2rs::sys::Whisper` with our own log-mel features and an explicit
//! prompt: ct2rs's high-level API always builds a multilingual prompt
//! (`<|startoftranscript|><|lang|><|transcribe|>`), which makes `.en` models emit garbage.

pub mod mel;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};

use self::mel::{LogMel, N_FRAMES, N_SAMPLES, SAMPLE_RATE};
use crate::error::{LocalError, Result};
use crate::models::require_file;

/// Windows whose RMS is below this (-80 dBFS) are digital silence: skipped without inference.
const SILENCE_RMS: f32 = 1e-4;
/// The reference `transcribe()` drops a window as silence when the no-speech probability is
/// above 0.6 *and* the average log-probability is below -1 (openai/whisper `transcribe.py`).
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
/// Long audio is cut at the quietest 20 ms within the last 2 s of each 30 s window.
const CUT_SEARCH: usize = 2 * SAMPLE_RATE;
const CUT_STEP: usize = SAMPLE_RATE / 50;

/// A transcript and how sure the decoder was of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcription {
    /// The text (empty when nothing was said).
    pub text: String,
    /// `exp` of the mean per-token log-probability of the decoded tokens: the geometric mean of
    /// their probabilities, in `[0, 1]`. `0` when nothing was transcribed.
    pub confidence: f32,
}

/// What one 30 s window decoded to.
struct Window {
    text: String,
    /// Sum of the log-probabilities of the tokens, end-of-text included, and their count.
    logprob: f32,
    tokens: usize,
}

/// The reference `avg_logprob` of a hypothesis (openai/whisper `decoding.py`: summed log-prob
/// over the tokens plus end-of-text) from CTranslate2's score.
///
/// CTranslate2 returns the cumulative log-prob divided by `len ^ length_penalty`, `len` being the
/// hypothesis length without end-of-text (`decoding.cc`, `finalize_hypothesis_score`), so the
/// sum is recovered by multiplying back; it includes the end-of-text token's log-prob, hence
/// `len + 1` tokens. Returns (summed log-prob, token count).
fn summed_logprob(score: f32, len: usize, length_penalty: f32) -> (f32, usize) {
    let sum = if len == 0 {
        // 0^penalty divides by zero in CTranslate2; an empty hypothesis is worth nothing.
        f32::NEG_INFINITY
    } else {
        score * (len as f32).powf(length_penalty)
    };
    (sum, len + 1)
}

/// Maps a mean per-token log-prob to 0–1: `exp` (the geometric mean token probability), with
/// NaN and positive values (impossible for log-probs, but numbers come from C++) clamped.
fn confidence_from(mean_logprob: f32) -> f32 {
    if mean_logprob.is_nan() {
        return 0.0;
    }
    mean_logprob.min(0.0).exp().clamp(0.0, 1.0)
}

/// A loaded Whisper model (CTranslate2 format) and its tokenizer.
///
/// `transcribe` takes `&self`; the engine is `Send + Sync` and can be shared behind an `Arc`
/// (concurrent calls are serialized only while the features are computed).
pub struct WhisperEngine {
    model: Whisper,
    tokenizer: tokenizers::Tokenizer,
    mel: Mutex<LogMel>,
    prompt: Vec<String>,
    options: WhisperOptions,
    /// Ids at or above this (`<|endoftext|>` and later) are special tokens, never text.
    first_special_id: u32,
    dir: PathBuf,
}

impl WhisperEngine {
    /// Loads the CTranslate2 Whisper model in `dir` (`model.bin`, `config.json`,
    /// `tokenizer.json`) with `threads` CPU threads (0 = CTranslate2's default).
    ///
    /// Weights are quantized to INT8 at load time (the fastest on CPU); if the CPU or build
    /// lacks INT8 support, the model's stored type is used.
    pub fn load(dir: impl AsRef<Path>, threads: usize) -> Result<Self> {
        let dir = dir.as_ref();
        for file in ["model.bin", "config.json", "tokenizer.json"] {
            require_file(&dir.join(file))?;
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| LocalError::config(&tokenizer_path, e.to_string()))?;
        let first_special_id = tokenizer
            .token_to_id("<|endoftext|>")
            .ok_or_else(|| LocalError::config(&tokenizer_path, "no <|endoftext|> token"))?;

        let config = |compute_type| Config {
            device: Device::CPU,
            compute_type,
            num_threads_per_replica: threads,
            ..Config::default()
        };
        let model = Whisper::new(dir, config(ComputeType::INT8))
            .or_else(|_| Whisper::new(dir, config(ComputeType::DEFAULT)))
            .map_err(|e| {
                LocalError::inference("whisper", format!("loading {}: {e:#}", dir.display()))
            })?;

        // `.en` models take no language/task tokens; multilingual ones get English transcription.
        let mut prompt = vec!["<|startoftranscript|>".to_owned()];
        if model.is_multilingual() {
            prompt.extend(["<|en|>".to_owned(), "<|transcribe|>".to_owned()]);
        }
        prompt.push("<|notimestamps|>".to_owned());

        let options = WhisperOptions {
            // The reference default. On tiny.en it costs little more than greedy (the encoder
            // dominates) and fixes words greedy decoding gets wrong on synthetic speech.
            beam_size: 5,
            return_scores: true,
            return_no_speech_prob: true,
            ..WhisperOptions::default()
        };
        let mel = Mutex::new(LogMel::new(model.n_mels()));
        Ok(Self {
            model,
            tokenizer,
            mel,
            prompt,
            options,
            first_special_id,
            dir: dir.to_path_buf(),
        })
    }

    /// Sets the beam size (default 5, as in the reference; 1 = greedy decoding).
    pub fn set_beam_size(&mut self, beam_size: usize) {
        self.options.beam_size = beam_size.max(1);
    }

    /// Transcribes 16 kHz mono `f32` samples in `[-1, 1]` to text.
    ///
    /// Audio longer than 30 s is transcribed in windows of at most 30 s (cut at the quietest
    /// moment near each boundary) and the texts are joined with spaces. Silence gives `""`.
    pub fn transcribe(&self, samples_16k_mono_f32: &[f32]) -> Result<String> {
        Ok(self.transcribe_scored(samples_16k_mono_f32)?.text)
    }

    /// Like [`transcribe`](Self::transcribe), with the decoder's confidence: over all windows
    /// that produced text, `exp(summed token log-prob / token count)` (see [`Transcription`]).
    pub fn transcribe_scored(&self, samples_16k_mono_f32: &[f32]) -> Result<Transcription> {
        let mut texts = Vec::new();
        let (mut logprob, mut tokens) = (0.0f32, 0usize);
        let mut features = Vec::with_capacity(self.model.n_mels() * N_FRAMES);
        for window in windows(samples_16k_mono_f32) {
            if rms(window) < SILENCE_RMS {
                continue;
            }
            self.mel
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .compute(window, &mut features);
            let decoded = self.decode_window(&mut features)?;
            if !decoded.text.is_empty() {
                texts.push(decoded.text);
                logprob += decoded.logprob;
                tokens += decoded.tokens;
            }
        }
        let confidence = if tokens == 0 {
            0.0
        } else {
            confidence_from(logprob / tokens as f32)
        };
        Ok(Transcription {
            text: texts.join(" "),
            confidence,
        })
    }

    fn decode_window(&self, features: &mut [f32]) -> Result<Window> {
        let shape = [1, self.model.n_mels(), N_FRAMES];
        let view = StorageView::new(&shape, features, Device::CPU)
            .map_err(|e| LocalError::inference("whisper", format!("{e:#}")))?;
        let results = self
            .model
            .generate(&view, std::slice::from_ref(&self.prompt), &self.options)
            .map_err(|e| LocalError::inference("whisper", format!("{e:#}")))?;
        let nothing = Window {
            text: String::new(),
            logprob: 0.0,
            tokens: 0,
        };
        let Some(result) = results.into_iter().next() else {
            return Ok(nothing);
        };
        let Some(sequence) = result.sequences_ids.first() else {
            return Ok(nothing);
        };
        // `return_scores` is set, so the score is there; without one, assume certainty rather
        // than drop the text.
        let (logprob, tokens) = match result.scores.first() {
            Some(&score) => summed_logprob(score, sequence.len(), self.options.length_penalty),
            None => (0.0, sequence.len() + 1),
        };
        let avg_logprob = logprob / tokens as f32;
        if result.no_speech_prob > NO_SPEECH_THRESHOLD && avg_logprob < LOGPROB_THRESHOLD {
            return Ok(nothing);
        }
        let ids: Vec<u32> = sequence
            .iter()
            .filter_map(|&id| u32::try_from(id).ok())
            .filter(|&id| id < self.first_special_id)
            .collect();
        let text = self
            .tokenizer
            .decode(&ids, true)
            .map_err(|e| LocalError::inference("whisper", format!("decoding tokens: {e}")))?;
        Ok(Window {
            text: text.trim().to_owned(),
            logprob,
            tokens,
        })
    }
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine")
            .field("dir", &self.dir)
            .field("multilingual", &self.model.is_multilingual())
            .field("n_mels", &self.model.n_mels())
            .field("beam_size", &self.options.beam_size)
            .finish()
    }
}

/// Splits audio into windows of at most 30 s, cutting at the quietest 20 ms near each end.
fn windows(samples: &[f32]) -> Vec<&[f32]> {
    let mut out = Vec::new();
    let mut rest = samples;
    while rest.len() > N_SAMPLES {
        let search_from = N_SAMPLES - CUT_SEARCH;
        let cut = (search_from..=N_SAMPLES - CUT_STEP)
            .step_by(CUT_STEP)
            .min_by(|&a, &b| rms(&rest[a..a + CUT_STEP]).total_cmp(&rms(&rest[b..b + CUT_STEP])))
            .map_or(N_SAMPLES, |start| start + CUT_STEP / 2);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_at_most_30s_and_cover_everything() {
        let audio: Vec<f32> = (0..N_SAMPLES * 2 + 12_345)
            .map(|n| if n % 40_000 < 200 { 0.0 } else { 0.3 })
            .collect();
        let w = windows(&audio);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|w| w.len() <= N_SAMPLES));
        assert_eq!(w.iter().map(|w| w.len()).sum::<usize>(), audio.len());
        assert!(windows(&[]).is_empty());
    }

    #[test]
    fn confidence_is_the_geometric_mean_token_probability() {
        // Length penalty 1 (the default): the score is the mean over the hypothesis tokens.
        let (sum, n) = summed_logprob(-0.1, 9, 1.0);
        assert_eq!(n, 10);
        assert!((sum - -0.9).abs() < 1e-6);
        // No length penalty: the score is the sum itself.
        assert_eq!(summed_logprob(-2.0, 4, 0.0), (-2.0, 5));
        let c = confidence_from(sum / n as f32);
        assert!((c - (-0.09f32).exp()).abs() < 1e-6, "{c}");
        assert!(confidence_from(-0.01) > confidence_from(-1.0));
        assert_eq!(confidence_from(0.5), 1.0);
        assert_eq!(confidence_from(f32::NAN), 0.0);
        let (sum, n) = summed_logprob(f32::NEG_INFINITY, 0, 1.0);
        assert_eq!(confidence_from(sum / n as f32), 0.0);
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<WhisperEngine>();
    }
}
