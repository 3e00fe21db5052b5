//! Whisper speech-to-text on CTranslate2 (`ct2rs`), fully offline.
//!
//! Uses the low-level `ct2rs::sys::Whisper` with our own log-mel features and an explicit
//! prompt: ct2rs's high-level API always builds a multilingual prompt
//! (`<|startoftranscript|><|lang|><|transcribe|>`), which makes `.en` models emit garbage.

pub mod mel;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};

use self::mel::{LogMel, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE};
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

/// The suggested shortest encoder window when the short window is turned on, ms (see
/// [`WhisperEngine::set_min_window_ms`]; off by default).
pub const DEFAULT_MIN_WINDOW_MS: u32 = 2_000;
/// The default silence kept after the audio in a short window before rounding up (ms): the
/// decoder needs to see the speech end well inside its window, or it tends to repeat it.
pub const DEFAULT_WINDOW_PAD_MS: u32 = 300;
/// Short windows are whole multiples of this many frames (1 s).
const WINDOW_STEP_FRAMES: usize = 100;

/// A repetition penalty for short-window decodes with greedy decoding (the engine's default is
/// none, `1.0`, as the reference). tiny.en on a window much shorter than 30 s often says the
/// utterance again and again until the token cap: "Yes. Yes. Yes. …" for a 0.5 s "Yes", 26
/// tokens where 3 do, 300–400 ms of decoding on 2 cores instead of ~100 (about half of the
/// interim-length prefixes of the Piper sentences did so). With greedy decoding 1.2 stopped
/// most such loops (1.1 did not), but the penalty also falls on words said twice: "turn off the
/// lights in the kitchen" came out as "turn off the lights in", the second "the" penalised.
/// Hence opt-in (`tests/short_encoder.rs`).
pub const GREEDY_REPETITION_PENALTY: f32 = 1.2;

/// Tokens a short window may decode: 16 plus 10 per second of audio (speech runs at 3–5
/// tokens a second). A decode that reaches it is looping (Whisper repeats itself on some short
/// windows) and is done again on the full 30 s window.
fn token_cap(samples: usize) -> usize {
    16 + samples.div_ceil(SAMPLE_RATE / 10)
}

/// Tokens a short window decodes first, the loop probe: 4 plus 6 per second of audio, about
/// what the densest speech says. A decode that runs into it is either looping ("Yes. Yes. Yes.
/// …", collapsed to its first copy) or dense speech, decoded again up to [`token_cap`] from the
/// same encoder output. Without it a loop runs to the token cap: 26 tokens for a 1 s interim
/// where 3–8 say it, ~13 ms each on 2 cores. A tighter probe (2 plus 5) cut loops before their
/// second copy was whole, so they could not be told from speech: more tokens, not fewer.
fn probe_cap(samples: usize) -> usize {
    4 + (samples * 6).div_ceil(SAMPLE_RATE)
}

/// Whisper decoding a window much shorter than 30 s tends to say the utterance again (and
/// again) where the 30 s window would have ended: "Hello? How are you? Hello? How are you?",
/// "yes yes yes". When `text`'s words are one group of words repeated (at least twice, the last
/// copy possibly cut short; case and punctuation ignored), returns the first copy.
///
/// A speaker who really repeats themselves in one utterance ("bye bye") loses the repeat: the
/// price of the short window (set `min_window_ms: 0` for the reference behaviour).
fn collapse_repeats(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let norm: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    let n = norm.len();
    (1..=n / 2)
        .find(|&p| (p..n).all(|i| norm[i] == norm[i - p]))
        .map(|p| words[..p].join(" "))
}

/// The encoder window, in 10 ms frames, for `samples` samples of audio: the full 30 s
/// (`min_window_ms` = `None`, the reference), else the audio plus `pad_ms` rounded up to whole
/// seconds, at least `min_window_ms`, at most 30 s.
fn window_frames(samples: usize, min_window_ms: Option<u32>, pad_ms: u32) -> usize {
    let Some(min_ms) = min_window_ms else {
        return N_FRAMES;
    };
    let need = (samples + pad_ms as usize * SAMPLE_RATE / 1000).div_ceil(HOP_LENGTH);
    let min = (min_ms as usize / 10).max(1);
    need.next_multiple_of(WINDOW_STEP_FRAMES)
        .max(min)
        .min(N_FRAMES)
}

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
    /// Shortest encoder window in ms; `None`: always the full 30 s.
    min_window_ms: Option<u32>,
    /// Silence after the audio in a short window, ms.
    window_pad_ms: u32,
    /// CTranslate2's repetition penalty on short windows (1 = none).
    short_repetition_penalty: f32,
    /// Short windows decode up to [`probe_cap`] tokens first (see there).
    loop_probe: bool,
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
            // The full 30 s window by default: shorter ones cost accuracy (see below).
            min_window_ms: None,
            window_pad_ms: DEFAULT_WINDOW_PAD_MS,
            short_repetition_penalty: 1.0,
            loop_probe: true,
            first_special_id,
            dir: dir.to_path_buf(),
        })
    }

    /// Sets the beam size (default 5, as in the reference; 1 = greedy decoding).
    pub fn set_beam_size(&mut self, beam_size: usize) {
        self.options.beam_size = beam_size.max(1);
    }

    /// Sets the shortest encoder window; `None` (the default) encodes every window as the full
    /// 30 s, as the reference does.
    ///
    /// Whisper's encoder costs in proportion to its input, and the reference always pads audio
    /// to 30 s. CTranslate2 takes shorter inputs, so with `Some(ms)` an utterance is encoded as its
    /// own length plus 300 ms, rounded up to whole seconds and at least `ms`: a 2 s utterance
    /// costs a 3 s encode instead of a 30 s one. On short windows tiny.en often says the
    /// utterance again where the 30 s window would end; such repeats are collapsed to the first
    /// copy, and a decode that runs into the token cap (16 + 10 per second of audio) is done
    /// again on the full window. On the Piper sentences of `tests/short_encoder.rs` the 2 s
    /// floor gives the 30 s window's words (the sweep there prints quality per floor and pad),
    /// but on espeak-ng's voice (the conformance suite) even a 10 s floor turns "brown fox" into
    /// "roundfire": hence off by default, an opt-in for latency.
    pub fn set_min_window_ms(&mut self, ms: Option<u32>) {
        self.min_window_ms = ms;
    }

    /// Sets the repetition penalty of short-window decodes (default `1.0`, none; see
    /// [`GREEDY_REPETITION_PENALTY`]). The full 30 s window always decodes without one, as the
    /// reference does.
    pub fn set_short_repetition_penalty(&mut self, penalty: f32) {
        self.short_repetition_penalty = penalty.max(1.0);
    }

    /// Whether short windows first decode only as many tokens as dense speech needs, so that a
    /// loop stops there (default `true`; `false` decodes straight to the token cap, as the
    /// measurements in `tests/short_encoder.rs` compare).
    pub fn set_loop_probe(&mut self, on: bool) {
        self.loop_probe = on;
    }

    /// Sets the silence a short window keeps after the audio (default
    /// [`DEFAULT_WINDOW_PAD_MS`]).
    pub fn set_window_pad_ms(&mut self, ms: u32) {
        self.window_pad_ms = ms;
    }

    /// The shortest encoder window in ms (`None`: always 30 s).
    pub fn min_window_ms(&self) -> Option<u32> {
        self.min_window_ms
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
        self.transcribe_scored_within(samples_16k_mono_f32, self.min_window_ms)
    }

    /// Like [`transcribe_scored`](Self::transcribe_scored) with `min_window_ms` instead of the
    /// engine's setting (see [`set_min_window_ms`](Self::set_min_window_ms)): one loaded model
    /// serves provisional decodes on short windows and final ones on full windows.
    pub fn transcribe_scored_within(
        &self,
        samples_16k_mono_f32: &[f32],
        min_window_ms: Option<u32>,
    ) -> Result<Transcription> {
        self.transcribe_windows(samples_16k_mono_f32, min_window_ms, true)
    }

    /// Like [`transcribe_scored_within`](Self::transcribe_scored_within) for a provisional
    /// (interim) result: a short window whose decode runs past its token cap without settling
    /// gives no text instead of being decoded again on the full 30 s window, which costs several
    /// times more than the interim is worth (the next interim, or the final, hears it again).
    pub fn transcribe_provisional(
        &self,
        samples_16k_mono_f32: &[f32],
        min_window_ms: Option<u32>,
    ) -> Result<Transcription> {
        self.transcribe_windows(samples_16k_mono_f32, min_window_ms, false)
    }

    fn transcribe_windows(
        &self,
        samples_16k_mono_f32: &[f32],
        min_window_ms: Option<u32>,
        full_retry: bool,
    ) -> Result<Transcription> {
        let mut texts = Vec::new();
        let (mut logprob, mut tokens) = (0.0f32, 0usize);
        let mut features = Vec::with_capacity(self.model.n_mels() * N_FRAMES);
        for window in windows(samples_16k_mono_f32) {
            if rms(window) < SILENCE_RMS {
                continue;
            }
            let frames = window_frames(window.len(), min_window_ms, self.window_pad_ms);
            let mut decoded = None;
            if frames < N_FRAMES {
                let cap = token_cap(window.len());
                self.features(window, frames, &mut features);
                let memory = self.encode(&mut features, frames)?;
                let probe = probe_cap(window.len());
                let first_cap = if self.loop_probe { probe } else { cap };
                let mut short = self.decode_window(&memory, Some(first_cap))?;
                if self.loop_probe
                    && short.tokens > probe
                    && collapse_repeats(&short.text).is_none()
                {
                    // Dense speech, not a loop: the whole budget, same encoder output.
                    metrics::counter!("waav_local_whisper_probe_misses_total").increment(1);
                    short = self.decode_window(&memory, Some(cap))?;
                }
                if let Some(first) = collapse_repeats(&short.text) {
                    metrics::counter!("waav_local_whisper_repeats_collapsed_total").increment(1);
                    short.text = first;
                    short.tokens = short.tokens.min(cap);
                }
                if short.tokens <= cap {
                    decoded = Some(short);
                } else if full_retry {
                    metrics::counter!("waav_local_whisper_window_retries_total").increment(1);
                } else {
                    metrics::counter!("waav_local_whisper_provisional_skips_total").increment(1);
                    continue;
                }
            }
            let decoded = match decoded {
                Some(d) => d,
                None => {
                    self.features(window, N_FRAMES, &mut features);
                    let memory = self.encode(&mut features, N_FRAMES)?;
                    self.decode_window(&memory, None)?
                }
            };
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

    fn features(&self, window: &[f32], frames: usize, out: &mut Vec<f32>) {
        self.mel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .compute_frames(window, frames, out);
    }

    /// Runs the encoder on `frames` frames of features: one encoder output serves every decode
    /// of the window.
    fn encode(&self, features: &mut [f32], frames: usize) -> Result<StorageView<'static>> {
        let shape = [1, self.model.n_mels(), frames];
        let view = StorageView::new(&shape, features, Device::CPU)
            .map_err(|e| LocalError::inference("whisper", format!("{e:#}")))?;
        self.model
            .encode(&view, true)
            .map_err(|e| LocalError::inference("whisper", format!("{e:#}")))
    }

    /// Decodes one encoded window. With `cap`, at most `cap` tokens are generated and a
    /// hypothesis that reaches the cap comes back with `tokens > cap`.
    fn decode_window(&self, memory: &StorageView, cap: Option<usize>) -> Result<Window> {
        let capped;
        let options = match cap {
            // CTranslate2 generates at most max_length / 2 tokens after the prompt.
            Some(cap) => {
                let mut o = self.options.clone();
                o.max_length = o.max_length.min(2 * (cap + 1));
                o.repetition_penalty = self.short_repetition_penalty;
                capped = o;
                &capped
            }
            None => &self.options,
        };
        let results = self
            .model
            .generate(memory, std::slice::from_ref(&self.prompt), options)
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
        let window = if cap.is_some() { "short" } else { "full" };
        metrics::counter!("waav_local_whisper_tokens_total", "window" => window)
            .increment(sequence.len() as u64);
        // A hypothesis that ran into the cap is marked `tokens > cap` (its text is kept: a
        // repetition of the utterance can still be collapsed to its first copy).
        let capped = cap.filter(|&cap| sequence.len() >= cap);
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
            tokens: capped.map_or(tokens, |cap| tokens.max(cap + 1)),
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
            .field("min_window_ms", &self.min_window_ms)
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
    crate::segmenter::energy(samples).sqrt()
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
    fn short_windows_hold_the_audio_plus_a_pad_in_whole_seconds() {
        let s = SAMPLE_RATE;
        assert_eq!(window_frames(s, None, 300), N_FRAMES);
        // 1 s + 0.3 s pad → 2 s, raised to the 3 s floor.
        assert_eq!(window_frames(s, Some(3_000), 300), 300);
        assert_eq!(
            window_frames(s, Some(DEFAULT_MIN_WINDOW_MS), DEFAULT_WINDOW_PAD_MS),
            (DEFAULT_MIN_WINDOW_MS / 10) as usize
        );
        assert_eq!(window_frames(s, Some(1_000), 300), 200);
        // 2.8 s + 0.3 s → 3.1 s → 4 s.
        assert_eq!(window_frames(s * 28 / 10, Some(3_000), 300), 400);
        assert_eq!(window_frames(0, Some(0), 300), 100);
        // Never past 30 s, whatever is asked.
        assert_eq!(window_frames(N_SAMPLES, Some(3_000), 300), N_FRAMES);
        assert_eq!(window_frames(s, Some(60_000), 300), N_FRAMES);
    }

    #[test]
    fn repeated_utterances_collapse_to_the_first_copy() {
        let c = |t: &str| collapse_repeats(t);
        assert_eq!(
            c("Hello? How are you today? Hello? How are you today? Hello? How are"),
            Some("Hello? How are you today?".into())
        );
        assert_eq!(
            c("the quick brown fox. The quick brown fox. The quick"),
            Some("the quick brown fox.".into())
        );
        assert_eq!(c("yes yes yes"), Some("yes".into()));
        assert_eq!(c("Send it. Send it."), Some("Send it.".into()));
        assert_eq!(c("Yes. No. Yes."), None, "not a repetition of a group");
        assert_eq!(c("Hello there. How are you?"), None);
        assert_eq!(c("One sentence only."), None);
        assert_eq!(c("Yes."), None);
        assert_eq!(c(""), None);
        assert_eq!(c("It costs 3.50 dollars."), None);
    }

    #[test]
    fn the_token_cap_leaves_room_for_fast_speech() {
        assert_eq!(token_cap(0), 16);
        assert_eq!(token_cap(SAMPLE_RATE), 26);
        // 2.3 s: 39 tokens, about 8 a second allowed for a sentence of ~10.
        assert_eq!(token_cap(SAMPLE_RATE * 23 / 10), 39);
    }

    #[test]
    fn the_loop_probe_is_dense_speech_and_below_the_cap() {
        assert_eq!(probe_cap(0), 4);
        // 1 s of audio: 10 tokens, about 7 words with their punctuation.
        assert_eq!(probe_cap(SAMPLE_RATE), 10);
        assert_eq!(probe_cap(SAMPLE_RATE * 23 / 10), 18);
        for secs in 0..=30 {
            let n = SAMPLE_RATE * secs;
            assert!(probe_cap(n) < token_cap(n), "{secs} s");
        }
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
