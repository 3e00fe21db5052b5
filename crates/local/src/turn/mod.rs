//! `turn_detect` (alias `smart-turn`): Smart Turn v3.2 deciding whether a pause ends the turn.
//!
//! Placed after a `vad` in a pre-STT chain, it keeps the last 8 s of the session's audio at
//! 16 kHz mono and, on the VAD's [`ProcessorEvent::SpeechEnded`], hands the current turn's audio
//! (at most 8 s, see [`SmartTurn`]) to a shared inference pool ([`TurnPool`]) off the calling
//! thread. On a later frame, once the verdict is back, it pushes
//! [`ProcessorEvent::EndOfTurn`] if the probability reaches `threshold`; below it, nothing (the
//! speaker is expected to go on). A verdict is dropped — and the session's silence timer decides
//! instead — when speech resumes before it ([`ProcessorEvent::SpeechStarted`]), when it takes
//! longer than `max_wait_ms`, or when the pool's queue is full at the pause. Each outcome is
//! counted ([`TurnStats`], and `waav_turn_detect_total{outcome}` on `/metrics`).
//!
//! **Scored early**: once the audio has been quiet for `early_pause_ms` (each block at least
//! `quiet_db` below the loudest of the speech so far) while the VAD still hears speech (its score
//! lags the voice, and its `min_silence_ms` follows), the turn so far is scored at once. If the
//! audio stays quiet until the VAD's `SpeechEnded`, that verdict (back or still out) is the
//! pause's, so the turn can end with the VAD's decision instead of an inference after it; any
//! louder block voids it first. Under a noise floor closer than `quiet_db` the gate never opens
//! and the pause is scored at `SpeechEnded`, as without it.
//!
//! **Ended when sure**: an early verdict of at least `sure_threshold` (0.97), quiet for
//! `sure_pause_ms` (200), ends the speech here: this detector pushes `SpeechEnded` and
//! `EndOfTurn` itself, before the VAD's `min_silence_ms` has run out, and swallows the VAD's own
//! `SpeechEnded` when it follows. Louder audio before that starts the speech again
//! (`SpeechStarted`), so the events after this processor still alternate. A mid-sentence pause
//! the model is unsure of keeps the VAD's full silence (dynamic endpointing, as LiveKit's
//! `min_endpointing_delay` / `max_endpointing_delay`).
//!
//! The audio passes through unchanged. `process` never waits: it copies at most 8 s of 16-bit
//! audio into the session's reusable job buffer at a pause and polls a channel; nothing is
//! allocated per frame once the resampler (input other than 16 kHz) is warm.

mod model;
mod pool;

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use audioadapter_buffers::direct::InterleavedSlice;
use metrics::counter;
use rubato::{Fft, FixedSync, Resampler};
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, HealthStatus, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProcessorContext, ProcessorEvent, ProcessorPlugin, Stage,
};

pub use model::{model_path, SmartTurn, MODEL_FILE, N_FRAMES, N_MELS, SAMPLE_RATE, WINDOW_SAMPLES};
pub use pool::{Scorer, TurnPool};

use crate::models::ModelPaths;
use crate::segmenter::{quiet_ratio, DEFAULT_QUIET_DB};
use crate::silero::check_keys;
use pool::Job;

/// Plugin id.
pub const ID: &str = "turn_detect";
/// Audio kept before the VAD's `SpeechStarted` as the start of a turn: pipecat's
/// `pre_speech_ms` (500) plus its VAD's start delay (0.2 s).
pub const PRE_SPEECH_MS: u64 = 700;
/// A pause this long (audio time) starts a new turn at the next speech even without an
/// `EndOfTurn` (the silence timer will have ended it): pipecat's `stop_secs`.
pub const NEW_TURN_SILENCE_MS: u64 = 3_000;

/// Per-session settings (`threshold`, `max_wait_ms`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnSettings {
    /// `EndOfTurn` is pushed when the probability reaches this (0–1).
    pub threshold: f32,
    /// A verdict later than this after `SpeechEnded` is dropped.
    pub max_wait: Duration,
    /// Quiet audio after which the pause is scored before the VAD's end (zero: off).
    pub early_pause: Duration,
    /// A block this many dB below the loudest of the speech is quiet (0: the gate never opens).
    pub quiet_db: f32,
    /// An early verdict at least this sure (and at least `threshold`) ends the speech itself
    /// once the audio has been quiet for `sure_pause` (0–1).
    pub sure_threshold: f32,
    /// Quiet audio after which a sure early verdict ends the speech (zero: off).
    pub sure_pause: Duration,
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            max_wait: Duration::from_millis(500),
            early_pause: Duration::from_millis(96),
            quiet_db: DEFAULT_QUIET_DB,
            sure_threshold: 0.97,
            sure_pause: Duration::from_millis(200),
        }
    }
}

/// Pool settings from the plugin's own config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Worker threads, each with its own model session (1–16, default 1).
    pub workers: usize,
    /// Intra-op threads per inference (1–16, default 1, as pipecat).
    pub threads: usize,
    /// Jobs that may wait for a busy worker (0–64, default 2).
    pub queue: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: 1,
            queue: 2,
        }
    }
}

const PROCESSOR_KEYS: &[&str] = &[
    "threshold",
    "max_wait_ms",
    "early_pause_ms",
    "quiet_db",
    "sure_threshold",
    "sure_pause_ms",
];
const PLUGIN_KEYS: &[&str] = &[
    "models_dir",
    "threshold",
    "max_wait_ms",
    "early_pause_ms",
    "quiet_db",
    "sure_threshold",
    "sure_pause_ms",
    "workers",
    "threads",
    "queue",
];

/// The hint for a plugin-wide key in a processor's own section.
const SHARED_HINT: &str =
    " (the inference pool is shared: set it in the turn_detect plugin's own section)";

impl TurnSettings {
    /// Reads a processor's `config:` map (`threshold`, `max_wait_ms`, `early_pause_ms`,
    /// `quiet_db`, `sure_threshold`, `sure_pause_ms`) over `defaults`; unknown keys and out-of-range values are refused.
    pub fn from_config(cfg: &PluginConfig, defaults: TurnSettings) -> Result<Self, PluginError> {
        check_keys(cfg, PROCESSOR_KEYS, PLUGIN_KEYS, SHARED_HINT)?;
        Self::read(cfg, defaults)
    }

    fn read(cfg: &PluginConfig, defaults: TurnSettings) -> Result<Self, PluginError> {
        let threshold = cfg.f64_in("threshold", f64::from(defaults.threshold), 0.0..=1.0)?;
        let max_wait = cfg.u64_in(
            "max_wait_ms",
            defaults.max_wait.as_millis() as u64,
            1..=10_000,
        )?;
        let early_pause = cfg.u64_in(
            "early_pause_ms",
            defaults.early_pause.as_millis() as u64,
            0..=10_000,
        )?;
        let quiet_db = cfg.f64_in("quiet_db", f64::from(defaults.quiet_db), 0.0..=120.0)?;
        let sure_threshold = cfg.f64_in(
            "sure_threshold",
            f64::from(defaults.sure_threshold),
            0.0..=1.0,
        )?;
        let sure_pause = cfg.u64_in(
            "sure_pause_ms",
            defaults.sure_pause.as_millis() as u64,
            0..=10_000,
        )?;
        Ok(Self {
            threshold: threshold as f32,
            max_wait: Duration::from_millis(max_wait),
            early_pause: Duration::from_millis(early_pause),
            quiet_db: quiet_db as f32,
            sure_threshold: sure_threshold as f32,
            sure_pause: Duration::from_millis(sure_pause),
        })
    }
}

impl PoolSettings {
    /// Reads the plugin section: `models_dir`, `workers`, `threads`, `queue`, and the session
    /// defaults `threshold` and `max_wait_ms`.
    pub fn from_config(cfg: &PluginConfig) -> Result<(Self, TurnSettings), PluginError> {
        check_keys(cfg, PLUGIN_KEYS, &[], "")?;
        let defaults = TurnSettings::read(cfg, TurnSettings::default())?;
        let pool = Self {
            workers: cfg.u64_in("workers", 1, 1..=16)? as usize,
            threads: cfg.u64_in("threads", 1, 1..=16)? as usize,
            queue: cfg.u64_in("queue", 2, 0..=64)? as usize,
        };
        Ok((pool, defaults))
    }
}

/// The models directory: the section's `models_dir`, else `WAAV_MODELS_DIR`, else `./models`
/// (as every local plugin resolves it).
fn models_from(config: &PluginConfig) -> Result<ModelPaths, PluginError> {
    Ok(match config.string("models_dir")? {
        Some(dir) => ModelPaths::new(dir),
        None => ModelPaths::from_env(),
    })
}

struct Loaded {
    pool: TurnPool,
    defaults: TurnSettings,
}

/// The `turn_detect` processor plugin (alias `smart-turn`).
///
/// Plugin section: `models_dir`, `workers` (1), `threads` (1 per inference), `queue` (2), and
/// defaults for the per-processor `threshold` (0.5), `max_wait_ms` (500), `early_pause_ms` (96;
/// 0 = score only at the VAD's end) and `quiet_db` (35). `init` loads
/// `<models>/smart-turn/smart-turn-v3.2-cpu.onnx` once per worker (`scripts/fetch-models.sh`
/// fetches it).
#[derive(Default)]
pub struct TurnDetectPlugin {
    loaded: OnceLock<Loaded>,
    init_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for TurnDetectPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnDetectPlugin")
            .field("pool", &self.loaded.get().map(|l| &l.pool))
            .finish_non_exhaustive()
    }
}

impl TurnDetectPlugin {
    /// The shared pool, once `init` succeeded.
    pub fn pool(&self) -> Option<&TurnPool> {
        self.loaded.get().map(|l| &l.pool)
    }

    async fn load(&self, config: &PluginConfig) -> Result<(), PluginError> {
        let (settings, defaults) = PoolSettings::from_config(config)?;
        let models = models_from(config)?;
        let (model, library) = (model_path(&models), models.onnxruntime_lib());
        let pool = tokio::task::spawn_blocking(move || -> Result<TurnPool, PluginError> {
            let mut scorers = Vec::with_capacity(settings.workers);
            for _ in 0..settings.workers {
                let turn = SmartTurn::load(&model, &library, settings.threads)
                    .map_err(|e| PluginError::Config(e.to_string()))?;
                scorers.push(smart_turn_scorer(turn));
            }
            TurnPool::new(scorers, settings.queue)
                .map_err(|e| PluginError::Permanent(format!("cannot start turn workers: {e}")))
        })
        .await
        .map_err(|e| PluginError::Panicked(e.to_string()))??;
        let _ = self.loaded.set(Loaded { pool, defaults });
        Ok(())
    }
}

/// A [`Scorer`] running `turn` on 16-bit audio.
pub fn smart_turn_scorer(mut turn: SmartTurn) -> Scorer {
    let mut audio = Vec::with_capacity(WINDOW_SAMPLES);
    Box::new(move |pcm: &[i16]| {
        audio.clear();
        audio.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0));
        turn.predict(&audio).map_err(|e| e.to_string())
    })
}

#[async_trait::async_trait]
impl Plugin for TurnDetectPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Smart Turn end-of-turn detection")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["smart-turn"])
            .description(
                "Smart Turn v3.2 (ONNX) scores each VAD pause: end_of_turn when the turn is complete",
            )
    }

    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        self.load(config).await.inspect_err(|e| {
            *self.init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        })
    }

    /// `Unhealthy` without the model, `Degraded` while every worker is busy and the queue full.
    fn health(&self) -> HealthStatus {
        match self.loaded.get() {
            Some(l)
                if l.pool.queued() >= l.pool.queue() && l.pool.running() >= l.pool.workers() =>
            {
                HealthStatus::Degraded(format!(
                    "turn detection saturated: {} worker(s) busy, {} queued",
                    l.pool.running(),
                    l.pool.queued()
                ))
            }
            Some(_) => HealthStatus::Healthy,
            None => {
                let reason = self
                    .init_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                HealthStatus::Unhealthy(match reason {
                    Some(r) => format!("the Smart Turn model did not load: {r}"),
                    None => "the Smart Turn model is not initialised".into(),
                })
            }
        }
    }
}

impl ProcessorPlugin for TurnDetectPlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt]
    }

    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        let loaded = self
            .loaded
            .get()
            .ok_or_else(|| PluginError::Config("turn_detect is not initialised".into()))?;
        let settings = TurnSettings::from_config(config, loaded.defaults)?;
        Ok(Box::new(TurnDetector::new(
            loaded.pool.clone(),
            settings,
            ctx.sample_rate,
            ctx.channels,
        )?))
    }
}

/// What happened to one session's pauses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnStats {
    /// Pauses handed to the pool.
    pub submitted: u64,
    /// Verdicts at or above the threshold (an `EndOfTurn` was pushed).
    pub end_of_turn: u64,
    /// Verdicts below the threshold (nothing pushed).
    pub incomplete: u64,
    /// Pauses not scored because the pool's queue was full.
    pub skipped_busy: u64,
    /// Verdicts dropped because speech resumed first.
    pub dropped_resumed: u64,
    /// Verdicts dropped because they took longer than `max_wait_ms`.
    pub dropped_late: u64,
    /// Inferences that failed.
    pub errors: u64,
    /// Pauses scored early whose verdict the VAD's end took (see the module docs).
    pub early_used: u64,
    /// Pauses scored early that louder audio voided before the VAD's end.
    pub early_voided: u64,
    /// Speech ended by a sure early verdict before the VAD's end (see the module docs).
    pub sure_ends: u64,
    /// Of those, speech that came back before the VAD's end (the VAD would have held on).
    pub sure_resumed: u64,
    /// The last verdict's probability.
    pub last_probability: Option<f32>,
    /// The last inference's duration.
    pub last_inference: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Live,
    Resumed,
    Late,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    ended_at: Instant,
    fate: Fate,
    /// Scored before the VAD's `SpeechEnded` (`ended_at` is then the submission).
    early: bool,
}

/// The quiet tail of the speech in progress, for scoring its pause early.
#[derive(Debug, Default)]
struct QuietTail {
    /// `quiet_db` as an energy ratio (0: the gate never opens).
    ratio: f32,
    /// Quiet samples (16 kHz) before the pause is scored early (0: off).
    early_after: u64,
    /// Quiet samples (16 kHz) after which a sure early verdict ends the speech (0: off).
    sure_after: u64,
    /// Energy (mean square) of the loudest block of the speech.
    peak: f32,
    /// Quiet samples (16 kHz) at its end.
    run: u64,
    /// This quiet run was submitted early.
    tried: bool,
    /// An early verdict back before the VAD's end, while the audio stays quiet.
    verdict: Option<Option<Result<f32, String>>>,
}

/// The last 8 s at 16 kHz, 16-bit.
struct Ring {
    buf: Vec<i16>,
    head: usize,
    /// Samples ever written (the audio clock, 1/16000 s).
    total: u64,
}

impl Ring {
    fn new() -> Self {
        Self {
            buf: vec![0; WINDOW_SAMPLES],
            head: 0,
            total: 0,
        }
    }

    fn push(&mut self, v: f32) {
        self.buf[self.head] = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        self.head = (self.head + 1) % self.buf.len();
        self.total += 1;
    }

    /// Copies the last `out.len()` samples (≤ 8 s, ≤ written), oldest first.
    fn copy_last(&self, out: &mut [i16]) {
        let n = out.len();
        let start = (self.head + self.buf.len() - n) % self.buf.len();
        let first = (self.buf.len() - start).min(n);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        out[first..].copy_from_slice(&self.buf[..n - first]);
    }
}

/// Input rate → 16 kHz mono, in fixed 20 ms chunks (buffers sized once).
struct To16k {
    fft: Fft<f32>,
    input: Vec<f32>,
    chunk: usize,
    output: Vec<f32>,
}

impl To16k {
    fn new(rate: u32) -> Result<Self, PluginError> {
        let chunk = (rate as usize / 50).max(16);
        let fft = Fft::<f32>::new(
            rate as usize,
            SAMPLE_RATE as usize,
            chunk,
            1,
            FixedSync::Input,
        )
        .map_err(|e| PluginError::Config(format!("cannot resample from {rate} Hz: {e}")))?;
        let output = vec![0.0; fft.output_frames_max()];
        Ok(Self {
            fft,
            input: Vec::with_capacity(chunk),
            chunk,
            output,
        })
    }

    fn push(&mut self, v: f32, ring: &mut Ring) {
        self.input.push(v);
        if self.input.len() < self.chunk {
            return;
        }
        let max = self.output.len();
        if let (Ok(inbuf), Ok(mut outbuf)) = (
            InterleavedSlice::new(&self.input[..], 1, self.chunk),
            InterleavedSlice::new_mut(&mut self.output[..], 1, max),
        ) {
            if let Ok((_, produced)) = self.fft.process_into_buffer(&inbuf, &mut outbuf, None) {
                for &s in &self.output[..produced] {
                    ring.push(s);
                }
            }
        }
        self.input.clear();
    }
}

/// One session's turn detector (see the [module docs](self)).
pub struct TurnDetector {
    settings: TurnSettings,
    pool: TurnPool,
    rate: u32,
    channels: u16,
    to16k: Option<To16k>,
    ring: Ring,
    /// Where (audio clock) the current turn's audio begins; `None` between turns.
    turn_start: Option<u64>,
    in_speech: bool,
    /// The audio clock at the last `SpeechEnded`.
    last_end: Option<u64>,
    /// This detector ended the speech (a sure early verdict) while the VAD still hears it: the
    /// VAD's `SpeechEnded` is swallowed, and louder audio before it starts speech again.
    ended_early: bool,
    /// The session's job while it is not lent to the pool.
    spare: Option<Box<Job>>,
    /// Verdicts come back here. Only read through `&mut self` (`get_mut`, no locking); the
    /// mutex just makes the receiver `Sync`.
    replies: Mutex<Receiver<Box<Job>>>,
    pending: Option<Pending>,
    /// A pause seen while the job was still out (for an older pause): scored when it returns.
    deferred: Option<Instant>,
    tail: QuietTail,
    seq: u64,
    stats: TurnStats,
}

impl std::fmt::Debug for TurnDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnDetector")
            .field("settings", &self.settings)
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TurnDetector {
    /// A detector for audio of `rate` Hz (8000–192000) and `channels` (1–8) using `pool`.
    pub fn new(
        pool: TurnPool,
        settings: TurnSettings,
        rate: u32,
        channels: u16,
    ) -> Result<Self, PluginError> {
        if !(8_000..=192_000).contains(&rate) {
            return Err(PluginError::Config(format!(
                "turn_detect: unsupported sample rate {rate} Hz (8000 to 192000)"
            )));
        }
        if !(1..=8).contains(&channels) {
            return Err(PluginError::Config(format!(
                "turn_detect: unsupported channel count {channels} (1 to 8)"
            )));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        Ok(Self {
            settings,
            pool,
            rate,
            channels,
            to16k: (rate != SAMPLE_RATE)
                .then(|| To16k::new(rate))
                .transpose()?,
            ring: Ring::new(),
            turn_start: None,
            in_speech: false,
            last_end: None,
            ended_early: false,
            spare: Some(Job::new(tx)),
            replies: Mutex::new(rx),
            pending: None,
            deferred: None,
            tail: QuietTail {
                ratio: quiet_ratio(settings.quiet_db),
                early_after: settings.early_pause.as_millis() as u64 * u64::from(SAMPLE_RATE)
                    / 1000,
                sure_after: settings.sure_pause.as_millis() as u64 * u64::from(SAMPLE_RATE) / 1000,
                ..QuietTail::default()
            },
            seq: 0,
            stats: TurnStats::default(),
        })
    }

    /// The session's counters.
    pub fn stats(&self) -> TurnStats {
        self.stats
    }

    /// Whether a verdict is awaited (a pause was submitted and is still live).
    pub fn awaiting_verdict(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.fate == Fate::Live)
    }

    /// Buffers the block; returns its energy (mean square of the mono mix).
    fn push_audio(&mut self, audio: &AudioBuffer) -> f32 {
        let ch = usize::from(audio.channels.max(1));
        let scale = 1.0 / (32768.0 * ch as f32);
        let mut energy = 0.0;
        for frame in audio.samples.chunks_exact(ch) {
            let v = frame.iter().map(|&s| f32::from(s)).sum::<f32>() * scale;
            energy += v * v;
            match self.to16k.as_mut() {
                Some(r) => r.push(v, &mut self.ring),
                None => self.ring.push(v),
            }
        }
        let frames = audio.samples.len() / ch;
        if frames == 0 {
            0.0
        } else {
            energy / frames as f32
        }
    }

    /// Follows the quiet tail of the speech in progress: a louder block voids an early
    /// verdict; a long enough quiet run submits one.
    fn follow_tail(&mut self, energy: f32, frames: usize, now: Instant) -> Result<(), PluginError> {
        if !self.in_speech || self.tail.ratio == 0.0 {
            return Ok(());
        }
        let quiet = self.is_quiet(energy);
        self.tail.peak = self.tail.peak.max(energy);
        if !quiet {
            self.void_early();
            return Ok(());
        }
        let rate = u64::from(self.rate.max(1));
        self.tail.run += frames as u64 * u64::from(SAMPLE_RATE) / rate;
        let due = self.tail.early_after > 0 && self.tail.run >= self.tail.early_after;
        if due && !self.tail.tried && self.spare.is_some() && self.pending.is_none() {
            self.tail.tried = true;
            self.submit(now, true)?;
        }
        Ok(())
    }

    /// A block at least `quiet_db` below the loudest of the speech so far.
    fn is_quiet(&self, energy: f32) -> bool {
        self.tail.peak > 0.0 && energy <= self.tail.peak * self.tail.ratio
    }

    /// Whether a sure early verdict has been quiet long enough to end the speech.
    fn sure_end_due(&self) -> bool {
        let sure = self.settings.sure_threshold.max(self.settings.threshold);
        self.in_speech
            && self.tail.sure_after > 0
            && self.tail.run >= self.tail.sure_after
            && matches!(self.tail.verdict, Some(Some(Ok(p))) if p >= sure)
    }

    /// Louder audio (or new speech) after an early submission: its verdict is not the pause's.
    fn void_early(&mut self) {
        self.tail.run = 0;
        self.tail.tried = false;
        let mut voided = self.tail.verdict.take().is_some();
        if let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.early && p.fate == Fate::Live)
        {
            p.fate = Fate::Resumed;
            voided = true;
        }
        if voided {
            self.stats.early_voided += 1;
            counter!("waav_turn_detect_total", "outcome" => "early_voided").increment(1);
        }
    }

    fn on_speech_started(&mut self) {
        self.void_early();
        self.tail.peak = 0.0;
        self.in_speech = true;
        self.deferred = None;
        let now = self.ring.total;
        let long_pause = self
            .last_end
            .is_some_and(|end| now - end >= NEW_TURN_SILENCE_MS * u64::from(SAMPLE_RATE) / 1000);
        if self.turn_start.is_none() || long_pause {
            let pre = PRE_SPEECH_MS * u64::from(SAMPLE_RATE) / 1000;
            self.turn_start = Some(now.saturating_sub(pre));
        }
        if let Some(p) = self.pending.as_mut() {
            if p.fate == Fate::Live {
                p.fate = Fate::Resumed;
                self.stats.dropped_resumed += 1;
                counter!("waav_turn_detect_total", "outcome" => "resumed").increment(1);
            }
        }
    }

    fn on_speech_ended(
        &mut self,
        now: Instant,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        self.in_speech = false;
        self.last_end = Some(self.ring.total);
        self.tail.run = 0;
        self.tail.tried = false;
        if let Some(verdict) = self.tail.verdict.take() {
            // Scored early, quiet since: the pause's verdict is already here.
            self.stats.early_used += 1;
            self.verdict(verdict, events);
            return Ok(());
        }
        if let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.early && p.fate == Fate::Live)
        {
            // Scored early, still out: it is the pause's; `max_wait_ms` counts from now.
            p.early = false;
            p.ended_at = now;
            self.stats.early_used += 1;
            return Ok(());
        }
        if self.spare.is_some() {
            self.submit(now, false)
        } else {
            // The job is still out for an older pause (already dropped as resumed): score this
            // one as soon as it returns, if still in time.
            self.deferred = Some(now);
            Ok(())
        }
    }

    fn submit(&mut self, ended_at: Instant, early: bool) -> Result<(), PluginError> {
        let Some(mut job) = self.spare.take() else {
            return Ok(());
        };
        let total = self.ring.total;
        let start = self
            .turn_start
            .unwrap_or(0)
            .max(total.saturating_sub(WINDOW_SAMPLES as u64));
        let n = (total - start.min(total)) as usize;
        self.ring.copy_last(&mut job.audio[..n]);
        job.len = n;
        self.seq += 1;
        job.seq = self.seq;
        job.result = None;
        match self.pool.try_submit(job) {
            Ok(()) => {
                self.stats.submitted += 1;
                self.pending = Some(Pending {
                    seq: self.seq,
                    ended_at,
                    fate: Fate::Live,
                    early,
                });
                Ok(())
            }
            Err(job) => {
                self.spare = Some(job);
                if self.pool.workers() == 0 {
                    return Err(PluginError::Permanent(
                        "turn detection has no inference worker".into(),
                    ));
                }
                self.stats.skipped_busy += 1;
                counter!("waav_turn_detect_total", "outcome" => "skipped_busy").increment(1);
                Ok(())
            }
        }
    }

    fn poll(&mut self, now: Instant, events: &mut Vec<ProcessorEvent>) -> Result<(), PluginError> {
        loop {
            let job = match self.replies.get_mut() {
                Ok(rx) => rx.try_recv(),
                Err(p) => p.into_inner().try_recv(),
            };
            let mut job = match job {
                Ok(job) => job,
                Err(TryRecvError::Empty) => break,
                // We hold a sender inside our own job while it is out, so this cannot happen
                // while one is pending; without one pending there is nothing to receive.
                Err(TryRecvError::Disconnected) => break,
            };
            let result = job.result.take();
            let (seq, inference) = (job.seq, job.inference);
            self.spare = Some(job);
            let Some(p) = self.pending.take_if(|p| p.seq == seq) else {
                continue;
            };
            self.stats.last_inference = Some(inference);
            tracing::debug!(
                early = p.early,
                fate = ?p.fate,
                probability = ?result.as_ref().and_then(|r| r.as_ref().ok()),
                inference_ms = inference.as_secs_f64() * 1e3,
                "turn verdict back"
            );
            match p.fate {
                // Back before the VAD's end: held until it comes (or louder audio voids it).
                Fate::Live if p.early => self.tail.verdict = Some(result),
                Fate::Live if now.duration_since(p.ended_at) > self.settings.max_wait => {
                    self.late()
                }
                Fate::Live => self.verdict(result, events),
                Fate::Resumed | Fate::Late => {}
            }
        }
        if self.spare.is_some() {
            if let Some(ended_at) = self.deferred.take() {
                if !self.in_speech && now.duration_since(ended_at) <= self.settings.max_wait {
                    self.submit(ended_at, false)?;
                } else if !self.in_speech {
                    self.late();
                }
            }
        }
        if let Some(p) = self.pending.as_mut().filter(|p| !p.early) {
            if p.fate == Fate::Live && now.duration_since(p.ended_at) > self.settings.max_wait {
                p.fate = Fate::Late;
                self.late();
            }
        }
        Ok(())
    }

    /// A pause's verdict: `EndOfTurn` at or above the threshold, nothing below it.
    fn verdict(&mut self, result: Option<Result<f32, String>>, events: &mut Vec<ProcessorEvent>) {
        match result {
            Some(Ok(probability)) => {
                self.stats.last_probability = Some(probability);
                if probability >= self.settings.threshold {
                    self.stats.end_of_turn += 1;
                    counter!("waav_turn_detect_total", "outcome" => "end_of_turn").increment(1);
                    events.push(ProcessorEvent::EndOfTurn { probability });
                    self.turn_start = None;
                } else {
                    self.stats.incomplete += 1;
                    counter!("waav_turn_detect_total", "outcome" => "incomplete").increment(1);
                }
            }
            _ => {
                self.stats.errors += 1;
                counter!("waav_turn_detect_total", "outcome" => "error").increment(1);
            }
        }
    }

    fn late(&mut self) {
        self.stats.dropped_late += 1;
        counter!("waav_turn_detect_total", "outcome" => "late").increment(1);
    }
}

impl AudioProcessor for TurnDetector {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        if audio.sample_rate != self.rate || audio.channels != self.channels {
            // An earlier processor changed the layout: rebuild (allocates, once).
            let pool = self.pool.clone();
            let mut fresh = Self::new(pool, self.settings, audio.sample_rate, audio.channels)?;
            fresh.stats = self.stats;
            *self = fresh;
        }
        let energy = self.push_audio(audio);
        let now = Instant::now();
        // The block's events are the VAD's for this very block; the tail is followed first so
        // that a `SpeechEnded` finds the early submission of the quiet run it ends.
        let frames = audio.samples.len() / usize::from(self.channels.max(1));
        if self.ended_early && !self.is_quiet(energy) {
            // The voice is back before the VAD's end: speech starts again downstream.
            self.ended_early = false;
            self.stats.sure_resumed += 1;
            counter!("waav_turn_detect_sure_ends_total", "outcome" => "resumed").increment(1);
            events.push(ProcessorEvent::SpeechStarted);
            self.on_speech_started();
        }
        self.follow_tail(energy, frames, now)?;
        let vad_events = events.len();
        let mut swallowed = None;
        for i in 0..vad_events {
            match events[i] {
                ProcessorEvent::SpeechStarted => self.on_speech_started(),
                ProcessorEvent::SpeechEnded if self.ended_early => {
                    // Already ended here.
                    self.ended_early = false;
                    swallowed = Some(i);
                }
                ProcessorEvent::SpeechEnded => self.on_speech_ended(now, events)?,
                ProcessorEvent::EndOfTurn { .. } => {}
            }
        }
        if let Some(i) = swallowed {
            events.remove(i);
        }
        self.poll(now, events)?;
        if self.sure_end_due() {
            // Quiet since a sure verdict: end the speech and the turn without waiting for the
            // VAD's `min_silence_ms`.
            self.ended_early = true;
            self.stats.sure_ends += 1;
            counter!("waav_turn_detect_sure_ends_total", "outcome" => "ended").increment(1);
            events.push(ProcessorEvent::SpeechEnded);
            self.on_speech_ended(now, events)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.ring.head = 0;
        self.ring.total = 0;
        self.turn_start = None;
        self.in_speech = false;
        self.last_end = None;
        self.ended_early = false;
        self.deferred = None;
        self.tail.verdict = None;
        self.tail.run = 0;
        self.tail.tried = false;
        self.tail.peak = 0.0;
        if let Some(p) = self.pending.as_mut() {
            // Its verdict is for audio that no longer counts.
            p.fate = Fate::Resumed;
        }
        if let Some(r) = self.to16k.as_mut() {
            r.input.clear();
            r.fft.reset();
        }
    }
}
