//! `vad`: voice activity detection with earshot, speech-start / speech-end events with hysteresis.

use earshot::Detector;
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorEvent, ProcessorPlugin, Stage,
};

use crate::settings::{check_block, check_layout, Settings};
use crate::stream::Stream;

/// Plugin id.
pub const ID: &str = "vad";
/// earshot's rate.
pub const VAD_RATE: u32 = 16_000;
/// earshot scores frames of this many samples (16 ms at 16 kHz).
pub const VAD_FRAME: usize = 256;
/// Milliseconds per earshot frame.
pub const VAD_FRAME_MS: f64 = VAD_FRAME as f64 * 1000.0 / VAD_RATE as f64;
/// A rise of the score by more than this restarts the "falling since" mark.
const FALL_EPSILON: f32 = 0.005;
/// The end of speech is placed at most this many frames (~130 ms) before the first silent frame.
const MAX_FALL_FRAMES: u64 = 8;
/// Blocks up to this many frames are handled without growing any buffer.
const WARM_BLOCK_FRAMES: usize = 9_600;
/// Default `quiet_db`: below a voice's quietest consonants against its loudest vowels, above a
/// clean microphone's noise floor.
pub const DEFAULT_QUIET_DB: f32 = 35.0;

/// The `vad` plugin (alias `earshot`).
///
/// Settings (all optional):
/// - `engine`: `earshot` (the only engine of this processor; default). `silero` is refused with
///   a pointer to the `silero_vad` processor type (Silero VAD v5 on ONNX, in `waav-local`, which
///   owns ONNX Runtime and the models; same settings and events).
/// - `threshold` (0–1, default 0.5): a frame whose score reaches it counts as speech.
/// - `neg_threshold` (0–`threshold`, default `threshold − 0.15`, at least 0): while in speech, a
///   frame counts as silence only below it (score hysteresis).
/// - `min_speech_ms` (0–10000, default 100): speech must last this long before `SpeechStarted`.
/// - `min_silence_ms` (0–10000, default 300): silence must last this long before `SpeechEnded`.
/// - `quiet_db` (0–120, default 35; 0 = off): while in speech, a frame whose energy is at least
///   this many dB below the loudest frame of the utterance counts as silence whatever its score.
///   earshot's score decays for ~100–150 ms after the voice stops; the energy falls at once, so
///   in clean (or denoised) audio the silence is counted from the voice's real end. Under a noise
///   floor less than `quiet_db` below the voice the gate never opens and the score decides alone.
/// - `pre_speech_pad_ms` (0–10000): accepted for compatibility and ignored (this processor never
///   holds audio back, so there is nothing to pad).
///
/// Events: [`ProcessorEvent::SpeechStarted`] and [`ProcessorEvent::SpeechEnded`], alternating,
/// pushed during the block in which they are **decided** (the event carries no timestamp; the
/// plugin contract has none). The decision trails the boundary it reports:
/// - a start is decided about `min_speech_ms` (rounded up to whole 16 ms frames) after speech
///   began — measured 100–140 ms with the default 100 ms;
/// - an end is decided `min_silence_ms` after the frames fell quiet (`quiet_db`) or the score
///   below `neg_threshold`, whichever came first; on noisy audio, where only the score falls,
///   earshot's score takes a further ~100–150 ms to decay after the voice stops — measured
///   430–450 ms after the end of speech with the default 300 ms and no gate;
/// - plus earshot's framing (≤ 16 ms), the caller's block size and, for input not at 16 kHz, the
///   internal resampler's ~5 ms.
///
/// A consumer that needs the boundary itself subtracts these, or (holding the concrete
/// [`VadProcessor`]) reads [`VadProcessor::last_boundary_ms`]: the start of the first speech
/// frame, or for an end the frame where the score began its final decline (at most ~130 ms before
/// it went silent) — within ±60 ms of the true boundaries on the test material. The audio itself
/// passes through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct VadPlugin;

impl Plugin for VadPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Voice activity detection")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["earshot"])
            .description("earshot voice activity detection: speech started / ended events")
    }
}

impl ProcessorPlugin for VadPlugin {
    fn reports_speech(&self) -> bool {
        true
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt, Stage::PostTts]
    }

    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        Ok(Box::new(VadProcessor::new(ctx, config)?))
    }
}

/// Checked VAD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadSettings {
    /// Score at or above which a frame is speech.
    pub threshold: f32,
    /// Score below which a frame is silence while in speech.
    pub neg_threshold: f32,
    /// Speech needed before `SpeechStarted`, in ms.
    pub min_speech_ms: u32,
    /// Silence needed before `SpeechEnded`, in ms.
    pub min_silence_ms: u32,
    /// While in speech, a frame this many dB below the utterance's loudest is silence (0 = off).
    pub quiet_db: f32,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_ms: 100,
            min_silence_ms: 300,
            quiet_db: DEFAULT_QUIET_DB,
        }
    }
}

impl VadSettings {
    /// Reads and checks the settings from a processor config.
    pub fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        let s = Settings::new(
            config,
            &[
                "engine",
                "threshold",
                "neg_threshold",
                "min_speech_ms",
                "min_silence_ms",
                "quiet_db",
                "pre_speech_pad_ms",
            ],
        )?;
        if config
            .string("engine")?
            .is_some_and(|e| e.eq_ignore_ascii_case("silero"))
        {
            return Err(PluginError::Config(format!(
                "{}.engine: silero is its own processor type: use `type: silero_vad` (same \
                 settings and events; model from scripts/fetch-models.sh)",
                config.path()
            )));
        }
        s.choice("engine", "earshot", &["earshot"])?;
        let threshold = s.number("threshold", 0.5, 0.0, 1.0)?;
        let neg_threshold =
            s.number("neg_threshold", (threshold - 0.15).max(0.0), 0.0, threshold)?;
        let min_speech_ms = s.integer("min_speech_ms", 100, 0, 10_000)? as u32;
        let min_silence_ms = s.integer("min_silence_ms", 300, 0, 10_000)? as u32;
        let quiet_db = s.number("quiet_db", f64::from(DEFAULT_QUIET_DB), 0.0, 120.0)? as f32;
        s.integer("pre_speech_pad_ms", 0, 0, 10_000)?;
        Ok(Self {
            threshold: threshold as f32,
            neg_threshold: neg_threshold as f32,
            min_speech_ms,
            min_silence_ms,
            quiet_db,
        })
    }

    /// The `quiet_db` gate as a ratio of frame energies (0 when off).
    fn quiet_ratio(&self) -> f32 {
        quiet_ratio(self.quiet_db)
    }
}

/// Energy ratio (mean square) of a gate `db` below the loudest frame; 0 (never quiet) when off.
fn quiet_ratio(db: f32) -> f32 {
    if db > 0.0 {
        10f32.powf(-db / 10.0)
    } else {
        0.0
    }
}

/// Mean square of a frame.
fn frame_energy(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32
}

fn frames_for(ms: u32) -> u32 {
    ((f64::from(ms) / VAD_FRAME_MS).ceil() as u32).max(1)
}

/// One session's VAD: mixes to mono, resamples to 16 kHz when needed, scores 16 ms frames with
/// earshot and turns the scores into speech events. Allocation-free after the first blocks.
pub struct VadProcessor {
    settings: VadSettings,
    speech_frames: u32,
    silence_frames: u32,
    rate: u32,
    channels: u16,
    detector: Box<Detector>,
    /// Mono input-rate → 16 kHz, when the input is not at 16 kHz.
    resampler: Option<Stream>,
    frame: [f32; VAD_FRAME],
    frame_len: usize,
    in_speech: bool,
    run: u32,
    run_start: u64,
    /// Frames scored since the start (or the last reset).
    frames: u64,
    last_score: f32,
    prev_score: f32,
    /// While in speech: the frame where the score last began to fall.
    falling_since: u64,
    last_boundary: Option<u64>,
    /// `quiet_db` as an energy ratio.
    quiet: f32,
    /// Energy of the loudest frame of the utterance (or of the speech run before it starts).
    peak: f32,
}

impl std::fmt::Debug for VadProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VadProcessor")
            .field("settings", &self.settings)
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("in_speech", &self.in_speech)
            .finish_non_exhaustive()
    }
}

impl VadProcessor {
    /// Reads the settings and builds the detector for the context's layout.
    pub fn new(ctx: &ProcessorContext, config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = VadSettings::from_config(config)?;
        check_layout(config.path(), ctx)?;
        Self::with_settings(settings, ctx.sample_rate, ctx.channels)
            .map_err(|e| PluginError::Config(format!("{}: {e}", config.path())))
    }

    /// A VAD with explicit settings for audio of `rate` Hz and `channels` channels.
    pub fn with_settings(settings: VadSettings, rate: u32, channels: u16) -> Result<Self, String> {
        crate::settings::check_format(rate, channels)?;
        let mut p = Self {
            settings,
            speech_frames: frames_for(settings.min_speech_ms),
            silence_frames: frames_for(settings.min_silence_ms),
            rate,
            channels,
            detector: Detector::default_boxed(),
            resampler: None,
            frame: [0.0; VAD_FRAME],
            frame_len: 0,
            in_speech: false,
            run: 0,
            run_start: 0,
            frames: 0,
            last_score: 0.0,
            prev_score: 0.0,
            falling_since: 0,
            last_boundary: None,
            quiet: settings.quiet_ratio(),
            peak: 0.0,
        };
        p.set_layout(rate, channels)?;
        Ok(p)
    }

    fn set_layout(&mut self, rate: u32, channels: u16) -> Result<(), String> {
        self.rate = rate;
        self.channels = channels;
        self.resampler = if rate == VAD_RATE {
            None
        } else {
            Some(Stream::new(rate, VAD_RATE, 1, WARM_BLOCK_FRAMES)?)
        };
        Ok(())
    }

    /// The settings in force.
    pub fn settings(&self) -> VadSettings {
        self.settings
    }

    /// Whether the detector currently considers the user speaking.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// earshot's score of the last 16 ms frame (0–1).
    pub fn last_score(&self) -> f32 {
        self.last_score
    }

    /// Where the boundary behind the last event lies, in ms of input audio since the start (or
    /// the last reset): the first speech frame for a start, the first silence frame for an end.
    /// Corrected for the internal resampler's delay.
    pub fn last_boundary_ms(&self) -> Option<f64> {
        self.last_boundary.map(|f| self.frame_ms(f))
    }

    /// How much audio (ms) has been scored so far.
    pub fn scored_ms(&self) -> f64 {
        self.frame_ms(self.frames)
    }

    fn frame_ms(&self, frame: u64) -> f64 {
        let delay_ms = self.resampler.as_ref().map_or(0.0, |r| {
            r.delay_frames() as f64 * 1000.0 / f64::from(VAD_RATE)
        });
        (frame as f64 * VAD_FRAME_MS - delay_ms).max(0.0)
    }

    fn score_frame(&mut self, events: &mut Vec<ProcessorEvent>) {
        let score = self.detector.predict_f32(&self.frame);
        let energy = frame_energy(&self.frame);
        self.last_score = score;
        let index = self.frames;
        self.frames += 1;
        if self.in_speech {
            // Track where the score last started to fall: earshot's score decays over ~100 ms
            // after speech stops, so the end of speech is where that decline began.
            if score > self.prev_score + FALL_EPSILON {
                self.falling_since = index + 1;
            }
        }
        self.prev_score = score;
        // Measured before this frame joins the peak: a quiet frame is quiet against the voice.
        let quiet = self.in_speech && self.quiet > 0.0 && energy <= self.peak * self.quiet;
        let (counts, needed) = if self.in_speech {
            (
                quiet || score < self.settings.neg_threshold,
                self.silence_frames,
            )
        } else {
            (score >= self.settings.threshold, self.speech_frames)
        };
        if self.in_speech || counts {
            self.peak = self.peak.max(energy);
        } else {
            // No speech run under way: the next one measures its own peak.
            self.peak = 0.0;
        }
        if !counts {
            self.run = 0;
            return;
        }
        if self.run == 0 {
            self.run_start = if self.in_speech && !quiet {
                // The decline that led here, at most MAX_FALL_FRAMES back.
                self.falling_since
                    .max(index.saturating_sub(MAX_FALL_FRAMES))
                    .min(index)
            } else {
                // A start, or the frame the energy fell: the boundary itself.
                index
            };
        }
        self.run += 1;
        if self.run >= needed {
            self.in_speech = !self.in_speech;
            self.run = 0;
            self.falling_since = index;
            self.last_boundary = Some(self.run_start);
            if !self.in_speech {
                self.peak = 0.0;
            }
            events.push(if self.in_speech {
                ProcessorEvent::SpeechStarted
            } else {
                ProcessorEvent::SpeechEnded
            });
        }
    }

    /// Feeds 16 kHz mono samples in [-1, 1].
    fn feed(&mut self, samples: &[f32], events: &mut Vec<ProcessorEvent>) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (VAD_FRAME - self.frame_len).min(rest.len());
            // Resampling may overshoot full scale slightly; earshot wants [-1, 1].
            for (d, s) in self.frame[self.frame_len..self.frame_len + take]
                .iter_mut()
                .zip(&rest[..take])
            {
                *d = s.clamp(-1.0, 1.0);
            }
            self.frame_len += take;
            rest = &rest[take..];
            if self.frame_len == VAD_FRAME {
                self.frame_len = 0;
                self.score_frame(events);
            }
        }
    }
}

impl AudioProcessor for VadProcessor {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        check_block(ID, audio.sample_rate, audio.channels, audio.samples.len())?;
        if audio.sample_rate != self.rate || audio.channels != self.channels {
            self.set_layout(audio.sample_rate, audio.channels)
                .map_err(|e| PluginError::Permanent(format!("{ID}: {e}")))?;
        }
        let ch = usize::from(self.channels);
        let scale = 1.0 / (32768.0 * ch as f32);
        let mono = audio
            .samples
            .chunks_exact(ch)
            .map(|f| f.iter().map(|&s| f32::from(s)).sum::<f32>() * scale);
        match self.resampler.take() {
            Some(mut r) => {
                r.push(mono);
                r.run(|out| self.feed(out, events));
                self.resampler = Some(r);
            }
            None => {
                // 16 kHz already: score straight from the block, a frame's worth at a time.
                let mut buf = [0.0f32; VAD_FRAME];
                let mut n = 0;
                for s in mono {
                    buf[n] = s;
                    n += 1;
                    if n == VAD_FRAME {
                        self.feed(&buf, events);
                        n = 0;
                    }
                }
                self.feed(&buf[..n], events);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.detector.reset();
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
        self.frame_len = 0;
        self.in_speech = false;
        self.run = 0;
        self.frames = 0;
        self.last_score = 0.0;
        self.prev_score = 0.0;
        self.falling_since = 0;
        self.last_boundary = None;
        self.peak = 0.0;
    }
}
