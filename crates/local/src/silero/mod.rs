//! `silero_vad` (alias `silero`): voice activity detection with Silero VAD v5 (ONNX), with the
//! settings and events of the earshot `vad` processor.
//!
//! Each session mixes its audio to mono, resamples it to 16 kHz when needed and cuts it into
//! 32 ms windows (512 samples). `process` never runs the model: completed windows are copied
//! into the session's reusable job and handed to a shared inference pool ([`SileroPool`],
//! worker threads off the async runtime, bounded queue); the probabilities are collected on a
//! later call (normally the next 20 ms block) and turned into events with the same hysteresis as
//! `vad`. Windows that arrive while the session's job is out wait in a ring sized for
//! `max_wait_ms` and go with the next job.
//!
//! **When the pool falls behind** — its queue is full when a window is ready, a job has been out
//! longer than `max_wait_ms`, or the scorer failed — those windows are scored at once with an
//! earshot detector the session holds, so events keep coming with bounded delay. Each such
//! window is counted (`waav_silero_vad_fallback_frames_total{reason="busy"|"late"|"error"}` on
//! `/metrics`, and [`SileroStats`]). The model then resumes with a reset memory (it did not see
//! those windows). earshot is fed only while it stands in (reset when it starts), so the normal
//! path costs no earshot inference; its first 48 ms after taking over are its warm-up.
//!
//! The model's memory is reset per session (and on [`AudioProcessor::reset`]), and, as pipecat
//! 1.14 does (`SileroVADAnalyzer._maybe_reset_model`), after 2 s of audio once the speaker is
//! quiet and 5 windows in a row scored below 0.1: long non-speech otherwise biases the state
//! against the speech that follows.

mod model;
mod pool;

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use audioadapter_buffers::direct::InterleavedSlice;
use earshot::Detector;
use metrics::counter;
use rubato::{Fft, FixedSync, Resampler};
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, HealthStatus, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProcessorContext, ProcessorEvent, ProcessorPlugin, Stage,
};

pub use model::{
    model_path, SileroModel, SileroState, CONTEXT, INPUT, MODEL_FILE, SAMPLE_RATE, STATE, WINDOW,
    WINDOW_MS,
};
pub use pool::{Scorer, SileroPool};

use crate::models::ModelPaths;
use pool::Job;

/// Plugin id.
pub const ID: &str = "silero_vad";
/// The fallback counter on `/metrics` (windows scored by earshot instead of the model).
pub const FALLBACK_METRIC: &str = "waav_silero_vad_fallback_frames_total";
/// earshot's frame: a Silero window is scored as two of them (the higher score counts).
const EARSHOT_FRAME: usize = 256;
/// pipecat's model reset: due after this much audio…
const RESET_INTERVAL_WINDOWS: u64 = (2 * SAMPLE_RATE as u64).div_ceil(WINDOW as u64);
/// …once this many windows in a row scored below [`RESET_MAX_PROBABILITY`] while quiet.
const RESET_LOW_WINDOWS: u32 = 5;
const RESET_MAX_PROBABILITY: f32 = 0.1;

/// Per-processor settings: those of `vad`, plus `max_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SileroSettings {
    /// Probability at or above which a window is speech.
    pub threshold: f32,
    /// Probability below which a window is silence while in speech.
    pub neg_threshold: f32,
    /// Speech needed before `SpeechStarted`, in ms.
    pub min_speech_ms: u32,
    /// Silence needed before `SpeechEnded`, in ms.
    pub min_silence_ms: u32,
    /// A job out longer than this is given up and its windows scored by earshot.
    pub max_wait: Duration,
}

impl Default for SileroSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_ms: 100,
            min_silence_ms: 300,
            max_wait: Duration::from_millis(100),
        }
    }
}

/// Pool settings from the plugin's own config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Worker threads, each with its own model session (1–16, default 1).
    pub workers: usize,
    /// Intra-op threads per inference (1–16, default 1, as the references).
    pub threads: usize,
    /// Jobs that may wait for a busy worker (0–4096, default 64; a session has at most one).
    pub queue: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: 1,
            queue: 64,
        }
    }
}

const PROCESSOR_KEYS: &[&str] = &[
    "engine",
    "threshold",
    "neg_threshold",
    "min_speech_ms",
    "min_silence_ms",
    "pre_speech_pad_ms",
    "max_wait_ms",
];
const PLUGIN_KEYS: &[&str] = &["models_dir", "workers", "threads", "queue"];

/// Refuses a key of `cfg` not in `known`, adding `hint` when it is one of `other`
/// (also used by `turn`).
pub(crate) fn check_keys(
    cfg: &PluginConfig,
    known: &[&str],
    other: &[&str],
    hint: &str,
) -> Result<(), PluginError> {
    if let Some(bad) = cfg.keys().find(|k| !known.contains(k)) {
        let hint = if other.contains(&bad) { hint } else { "" };
        return Err(PluginError::Config(format!(
            "{}: unknown setting {bad:?} (known: {}){hint}",
            cfg.path(),
            known.join(", ")
        )));
    }
    Ok(())
}

impl SileroSettings {
    /// Reads a processor's `config:` map. Unknown keys and out-of-range values are refused;
    /// `engine` may only be `silero`, and `pre_speech_pad_ms` is accepted and ignored (as `vad`).
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        check_keys(
            cfg,
            PROCESSOR_KEYS,
            PLUGIN_KEYS,
            " (the inference pool is shared: set it in the silero_vad plugin's own section)",
        )?;
        if let Some(engine) = cfg.string("engine")? {
            if engine != "silero" {
                return Err(PluginError::Config(format!(
                    "{}.engine: {engine:?}: this processor is Silero; use type `vad` for earshot",
                    cfg.path()
                )));
            }
        }
        let threshold = cfg.f64_in("threshold", 0.5, 0.0..=1.0)?;
        let neg_threshold = cfg.f64_in(
            "neg_threshold",
            (threshold - 0.15).max(0.0),
            0.0..=threshold,
        )?;
        let min_speech_ms = cfg.u64_in("min_speech_ms", 100, 0..=10_000)? as u32;
        let min_silence_ms = cfg.u64_in("min_silence_ms", 300, 0..=10_000)? as u32;
        cfg.u64_in("pre_speech_pad_ms", 0, 0..=10_000)?;
        let max_wait = cfg.u64_in("max_wait_ms", 100, 10..=2_000)?;
        Ok(Self {
            threshold: threshold as f32,
            neg_threshold: neg_threshold as f32,
            min_speech_ms,
            min_silence_ms,
            max_wait: Duration::from_millis(max_wait),
        })
    }
}

impl PoolSettings {
    /// Reads the plugin section: `models_dir`, `workers`, `threads`, `queue`.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        check_keys(
            cfg,
            PLUGIN_KEYS,
            PROCESSOR_KEYS,
            " (detection settings go in each processor's `config:`)",
        )?;
        Ok(Self {
            workers: cfg.u64_in("workers", 1, 1..=16)? as usize,
            threads: cfg.u64_in("threads", 1, 1..=16)? as usize,
            queue: cfg.u64_in("queue", 64, 0..=4096)? as usize,
        })
    }
}

/// The `silero_vad` processor plugin (alias `silero`).
///
/// Plugin section: `models_dir` (else `WAAV_MODELS_DIR`, else `./models`), `workers` (1),
/// `threads` (1 per inference), `queue` (64). `init` loads `<models>/silero/silero_vad.onnx`
/// once per worker. A missing or unloadable model does not fail `init` (the plugin is enabled
/// by default, used or not): the plugin reports `Unhealthy` with the reason, and `create` fails
/// with a `Config` error naming the file and `scripts/fetch-models.sh`. Bad settings fail `init`.
#[derive(Default)]
pub struct SileroVadPlugin {
    pool: OnceLock<SileroPool>,
    init_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for SileroVadPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVadPlugin")
            .field("pool", &self.pool.get())
            .finish_non_exhaustive()
    }
}

impl SileroVadPlugin {
    /// A plugin already running `pool` (tests, embedding).
    pub fn with_pool(pool: SileroPool) -> Self {
        let p = Self::default();
        let _ = p.pool.set(pool);
        p
    }

    /// The shared pool, once the model loaded.
    pub fn pool(&self) -> Option<&SileroPool> {
        self.pool.get()
    }

    fn reason(&self) -> Option<String> {
        self.init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A [`Scorer`] running `model`.
pub fn silero_scorer(mut model: SileroModel) -> Scorer {
    Box::new(move |x: &[f32], s: &mut [f32]| model.score(x, s).map_err(|e| e.to_string()))
}

/// Loads `workers` models and starts the pool (blocking).
pub fn load_pool(models: &ModelPaths, settings: &PoolSettings) -> crate::Result<SileroPool> {
    let (model, library) = (model_path(models), models.onnxruntime_lib());
    let mut scorers = Vec::with_capacity(settings.workers);
    for _ in 0..settings.workers {
        scorers.push(silero_scorer(SileroModel::load(
            &model,
            &library,
            settings.threads,
        )?));
    }
    SileroPool::new(scorers, settings.queue)
        .map_err(|e| crate::LocalError::inference("silero-vad", e))
}

#[async_trait::async_trait]
impl Plugin for SileroVadPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Silero voice activity detection")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["silero"])
            .description(
                "Silero VAD v5 (ONNX, off the audio thread; earshot stands in when it falls \
                 behind): speech started / ended events",
            )
    }

    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let settings = PoolSettings::from_config(config)?;
        if self.pool.get().is_some() {
            return Ok(());
        }
        let models = match config.string("models_dir")? {
            Some(dir) => ModelPaths::new(dir),
            None => ModelPaths::from_env(),
        };
        let loaded = tokio::task::spawn_blocking(move || load_pool(&models, &settings))
            .await
            .map_err(|e| PluginError::Panicked(e.to_string()))?;
        match loaded {
            Ok(pool) => {
                let _ = self.pool.set(pool);
                *self.init_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => {
                *self.init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
        Ok(())
    }

    /// `Unhealthy` without the model, `Degraded` while every worker is busy and the queue full
    /// (sessions are on the earshot fallback).
    fn health(&self) -> HealthStatus {
        match self.pool.get() {
            Some(p) if p.queued() >= p.queue() && p.running() >= p.workers() => {
                HealthStatus::Degraded(format!(
                    "silero vad saturated: {} worker(s) busy, {} queued; sessions fall back to earshot",
                    p.running(),
                    p.queued()
                ))
            }
            Some(_) => HealthStatus::Healthy,
            None => HealthStatus::Unhealthy(match self.reason() {
                Some(r) => format!("the Silero VAD model did not load: {r}"),
                None => "the Silero VAD model is not initialised".into(),
            }),
        }
    }
}

impl ProcessorPlugin for SileroVadPlugin {
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
        let settings = SileroSettings::from_config(config)?;
        let pool = self.pool.get().ok_or_else(|| {
            PluginError::Config(match self.reason() {
                Some(r) => format!("{}: silero_vad has no model: {r}", config.path()),
                None => format!(
                    "{}: silero_vad is not initialised (model {}/{MODEL_FILE}, fetched by \
                     scripts/fetch-models.sh)",
                    config.path(),
                    "<models>/silero"
                ),
            })
        })?;
        Ok(Box::new(SileroVad::new(
            pool.clone(),
            settings,
            ctx.sample_rate,
            ctx.channels,
        )?))
    }
}

/// One session's counters (windows are 32 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SileroStats {
    /// Windows scored by the model.
    pub model_windows: u64,
    /// Windows scored by earshot because the pool's queue was full.
    pub fallback_busy: u64,
    /// Windows scored by earshot because their job was out longer than `max_wait_ms`.
    pub fallback_late: u64,
    /// Windows scored by earshot because the scorer failed.
    pub fallback_error: u64,
    /// Times the model's memory was reset (session start excluded).
    pub model_resets: u64,
}

impl SileroStats {
    /// Windows scored by earshot, for any reason.
    pub fn fallback(&self) -> u64 {
        self.fallback_busy + self.fallback_late + self.fallback_error
    }
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    Busy,
    Late,
    Error,
}

/// Input rate → 16 kHz mono, in fixed 20 ms chunks (buffers sized once), as `turn_detect` does.
struct To16k {
    fft: Fft<f32>,
    input: Vec<f32>,
    chunk: usize,
    output: Vec<f32>,
    produced: usize,
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
        .map_err(|e| PluginError::Config(format!("{ID}: cannot resample from {rate} Hz: {e}")))?;
        let output = vec![0.0; fft.output_frames_max()];
        Ok(Self {
            fft,
            input: Vec::with_capacity(chunk),
            chunk,
            output,
            produced: 0,
        })
    }

    /// Adds one input sample; true when a chunk was resampled into `output[..produced]`.
    fn push(&mut self, v: f32) -> bool {
        self.input.push(v);
        if self.input.len() < self.chunk {
            return false;
        }
        let max = self.output.len();
        self.produced = 0;
        if let (Ok(inbuf), Ok(mut outbuf)) = (
            InterleavedSlice::new(&self.input[..], 1, self.chunk),
            InterleavedSlice::new_mut(&mut self.output[..], 1, max),
        ) {
            if let Ok((_, produced)) = self.fft.process_into_buffer(&inbuf, &mut outbuf, None) {
                self.produced = produced;
            }
        }
        self.input.clear();
        true
    }

    fn delay_ms(&self) -> f64 {
        self.fft.output_delay() as f64 * 1000.0 / f64::from(SAMPLE_RATE)
    }
}

/// The job that is out, covering the unscored windows `[scored, scored + windows)`.
#[derive(Debug, Clone, Copy)]
struct Out {
    seq: u64,
    windows: usize,
    at: Instant,
}

/// Windows for a duration, rounded to the nearest as pipecat's `VADAnalyzer.set_params` does
/// (`round(stop_secs / window)`): 300 ms → 9 windows (288 ms), 100 ms → 3 (96 ms).
fn frames_for(ms: u32) -> u32 {
    ((f64::from(ms) / WINDOW_MS).round() as u32).max(1)
}

/// One session's Silero VAD (see the [module docs](self)).
pub struct SileroVad {
    settings: SileroSettings,
    pool: SileroPool,
    rate: u32,
    channels: u16,
    to16k: Option<To16k>,
    /// 16 kHz windows not yet scored, `cap` of them, indexed by window number modulo `cap`.
    ring: Vec<f32>,
    cap: usize,
    /// Samples of the window being filled.
    filling: usize,
    /// Windows completed / scored since the start (the audio clock, in windows).
    complete: u64,
    scored: u64,
    out: Option<Out>,
    spare: Option<Box<Job>>,
    /// Jobs come back here. Only read through `&mut self` (`get_mut`, no locking); the mutex
    /// just makes the receiver `Sync`.
    replies: Mutex<Receiver<Box<Job>>>,
    seq: u64,
    /// The next job starts from a zeroed model memory.
    reset_model: bool,
    since_reset: u64,
    low_run: u32,
    earshot: Box<Detector>,
    /// The last window was scored by earshot.
    on_fallback: bool,
    // The event state machine (as `vad`).
    speech_windows: u32,
    silence_windows: u32,
    in_speech: bool,
    run: u32,
    run_start: u64,
    /// While in speech: the first window of the current run below `threshold`.
    below_since: Option<u64>,
    last_boundary: Option<u64>,
    last_probability: f32,
    stats: SileroStats,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("settings", &self.settings)
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("in_speech", &self.in_speech)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// A VAD for audio of `rate` Hz (8000–192000) and `channels` (1–8) scored by `pool`.
    pub fn new(
        pool: SileroPool,
        settings: SileroSettings,
        rate: u32,
        channels: u16,
    ) -> Result<Self, PluginError> {
        if !(8_000..=192_000).contains(&rate) {
            return Err(PluginError::Config(format!(
                "{ID}: unsupported sample rate {rate} Hz (8000 to 192000)"
            )));
        }
        if !(1..=8).contains(&channels) {
            return Err(PluginError::Config(format!(
                "{ID}: unsupported channel count {channels} (1 to 8)"
            )));
        }
        // Room for max_wait of windows plus the 20 ms blocks' jitter and the job being filled.
        let cap = (settings.max_wait.as_secs_f64() * 1000.0 / WINDOW_MS).ceil() as usize + 3;
        let (tx, rx) = mpsc::sync_channel(1);
        Ok(Self {
            settings,
            pool,
            rate,
            channels,
            to16k: (rate != SAMPLE_RATE)
                .then(|| To16k::new(rate))
                .transpose()?,
            ring: vec![0.0; cap * WINDOW],
            cap,
            filling: 0,
            complete: 0,
            scored: 0,
            out: None,
            spare: Some(Job::new(cap, tx)),
            replies: Mutex::new(rx),
            seq: 0,
            reset_model: true,
            since_reset: 0,
            low_run: 0,
            earshot: Detector::default_boxed(),
            on_fallback: false,
            speech_windows: frames_for(settings.min_speech_ms),
            silence_windows: frames_for(settings.min_silence_ms),
            in_speech: false,
            run: 0,
            run_start: 0,
            below_since: None,
            last_boundary: None,
            last_probability: 0.0,
            stats: SileroStats::default(),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> SileroSettings {
        self.settings
    }

    /// The session's counters.
    pub fn stats(&self) -> SileroStats {
        self.stats
    }

    /// Whether the detector currently considers the user speaking.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// The probability of the last window scored (by the model, or earshot's score).
    pub fn last_probability(&self) -> f32 {
        self.last_probability
    }

    /// Whether a job is out at the pool (windows awaiting the model).
    pub fn awaiting_model(&self) -> bool {
        self.out.is_some()
    }

    /// Where the boundary behind the last event lies, in ms of input audio since the start (or
    /// the last reset): the first speech window for a start, the first silent window for an
    /// end. Corrected for the internal resampler's delay.
    pub fn last_boundary_ms(&self) -> Option<f64> {
        self.last_boundary.map(|w| self.window_ms(w))
    }

    /// How much audio (ms) has been scored so far.
    pub fn scored_ms(&self) -> f64 {
        self.window_ms(self.scored)
    }

    fn window_ms(&self, window: u64) -> f64 {
        let delay = self.to16k.as_ref().map_or(0.0, To16k::delay_ms);
        (window as f64 * WINDOW_MS - delay).max(0.0)
    }

    fn slot(&self, window: u64) -> std::ops::Range<usize> {
        let start = (window % self.cap as u64) as usize * WINDOW;
        start..start + WINDOW
    }

    /// Adds one 16 kHz sample; a completed window waits in the ring.
    fn push16k(&mut self, v: f32, events: &mut Vec<ProcessorEvent>) {
        let at = self.slot(self.complete).start + self.filling;
        self.ring[at] = v;
        self.filling += 1;
        if self.filling == WINDOW {
            self.filling = 0;
            self.complete += 1;
            if self.complete - self.scored >= self.cap as u64 {
                // The ring is full (the pool is far behind): the oldest windows go to earshot.
                self.give_up_out(events);
                while self.complete - self.scored >= self.cap as u64 {
                    self.fallback(1, Reason::Late, events);
                }
            }
        }
    }

    /// Scores the next `n` unscored windows with earshot.
    fn fallback(&mut self, n: usize, reason: Reason, events: &mut Vec<ProcessorEvent>) {
        if n == 0 {
            return;
        }
        if !self.on_fallback {
            self.earshot.reset();
            self.on_fallback = true;
        }
        for _ in 0..n {
            let w = self.scored;
            let range = self.slot(w);
            let window = &self.ring[range];
            let mut score = 0.0f32;
            for half in window.chunks_exact(EARSHOT_FRAME) {
                score = score.max(self.earshot.predict_f32(half));
            }
            self.apply(score, w, events);
            self.scored += 1;
        }
        // The model did not hear these windows: its memory no longer fits the stream.
        self.reset_model = true;
        match reason {
            Reason::Busy => self.stats.fallback_busy += n as u64,
            Reason::Late => self.stats.fallback_late += n as u64,
            Reason::Error => self.stats.fallback_error += n as u64,
        }
        let reason = match reason {
            Reason::Busy => "busy",
            Reason::Late => "late",
            Reason::Error => "error",
        };
        counter!(FALLBACK_METRIC, "reason" => reason).increment(n as u64);
    }

    /// Gives up the job that is out: its windows go to earshot; its result will be ignored.
    fn give_up_out(&mut self, events: &mut Vec<ProcessorEvent>) {
        if let Some(out) = self.out.take() {
            self.fallback(out.windows, Reason::Late, events);
        }
    }

    /// Feeds one window's probability to the speech state machine.
    fn apply(&mut self, p: f32, index: u64, events: &mut Vec<ProcessorEvent>) {
        self.last_probability = p;
        if self.in_speech {
            // Silero's probability falls over a window or two as a voice fades: the end is
            // placed where it last dropped below `threshold`, not where it reached
            // `neg_threshold`.
            if p >= self.settings.threshold {
                self.below_since = None;
            } else if self.below_since.is_none() {
                self.below_since = Some(index);
            }
        }
        let (counts, needed) = if self.in_speech {
            (p < self.settings.neg_threshold, self.silence_windows)
        } else {
            (p >= self.settings.threshold, self.speech_windows)
        };
        if !counts {
            self.run = 0;
            return;
        }
        if self.run == 0 {
            self.run_start = if self.in_speech {
                self.below_since.unwrap_or(index).min(index)
            } else {
                index
            };
        }
        self.run += 1;
        if self.run >= needed {
            self.in_speech = !self.in_speech;
            self.run = 0;
            self.below_since = None;
            self.last_boundary = Some(self.run_start);
            events.push(if self.in_speech {
                ProcessorEvent::SpeechStarted
            } else {
                ProcessorEvent::SpeechEnded
            });
        }
    }

    /// A model window's probability: the state machine, then pipecat's periodic reset.
    fn apply_model(&mut self, p: f32, index: u64, events: &mut Vec<ProcessorEvent>) {
        self.on_fallback = false;
        self.stats.model_windows += 1;
        self.apply(p, index, events);
        self.since_reset += 1;
        self.low_run = if p < RESET_MAX_PROBABILITY {
            self.low_run + 1
        } else {
            0
        };
        if self.since_reset >= RESET_INTERVAL_WINDOWS
            && !self.in_speech
            && self.run == 0
            && self.low_run >= RESET_LOW_WINDOWS
        {
            self.reset_model = true;
        }
    }

    /// Collects returned jobs.
    fn poll(&mut self, events: &mut Vec<ProcessorEvent>) {
        loop {
            let job = match self.replies.get_mut() {
                Ok(rx) => rx.try_recv(),
                Err(p) => p.into_inner().try_recv(),
            };
            let job = match job {
                Ok(job) => job,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            match self.out.take_if(|o| o.seq == job.seq) {
                Some(out) => {
                    let done = job.done.min(out.windows);
                    for i in 0..done {
                        let w = self.scored;
                        self.apply_model(job.probs[i], w, events);
                        self.scored += 1;
                    }
                    let failed = job.error.is_some() || done < out.windows;
                    self.spare = Some(job);
                    if failed {
                        self.fallback(out.windows - done, Reason::Error, events);
                    }
                }
                // A job given up (late) or from before a reset: only the buffer is wanted.
                None => self.spare = Some(job),
            }
        }
    }

    /// Hands the waiting windows to the pool, or to earshot when it cannot take them.
    fn dispatch(&mut self, now: Instant, events: &mut Vec<ProcessorEvent>) {
        if let Some(out) = self.out {
            if now.duration_since(out.at) > self.settings.max_wait {
                self.give_up_out(events);
            } else {
                return; // new windows go with the next job
            }
        }
        let waiting = (self.complete - self.scored) as usize;
        if waiting == 0 {
            return;
        }
        let Some(mut job) = self.spare.take() else {
            // The last job was given up and is still out: the pool is behind.
            self.fallback(waiting, Reason::Late, events);
            return;
        };
        let n = waiting.min(job.capacity());
        for i in 0..n {
            let range = self.slot(self.scored + i as u64);
            job.audio[i * WINDOW..(i + 1) * WINDOW].copy_from_slice(&self.ring[range]);
        }
        job.windows = n;
        if self.reset_model {
            job.reset = true;
        }
        self.seq += 1;
        job.seq = self.seq;
        let reset = job.reset;
        match self.pool.try_submit(job) {
            Ok(()) => {
                self.out = Some(Out {
                    seq: self.seq,
                    windows: n,
                    at: now,
                });
                if reset {
                    if self.reset_model && self.scored > 0 {
                        self.stats.model_resets += 1;
                    }
                    self.reset_model = false;
                    self.since_reset = 0;
                    self.low_run = 0;
                }
            }
            Err(job) => {
                self.spare = Some(job);
                self.fallback(n, Reason::Busy, events);
            }
        }
    }
}

impl AudioProcessor for SileroVad {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        if audio.sample_rate != self.rate || audio.channels != self.channels {
            // An earlier processor changed the layout: rebuild (allocates, once).
            let fresh = Self::new(
                self.pool.clone(),
                self.settings,
                audio.sample_rate,
                audio.channels,
            )?;
            let stats = self.stats;
            *self = fresh;
            self.stats = stats;
        }
        let ch = usize::from(self.channels);
        let scale = 1.0 / (32768.0 * ch as f32);
        let mut to16k = self.to16k.take();
        for frame in audio.samples.chunks_exact(ch) {
            let v = frame.iter().map(|&s| f32::from(s)).sum::<f32>() * scale;
            match to16k.as_mut() {
                Some(r) => {
                    if r.push(v) {
                        for j in 0..r.produced {
                            self.push16k(r.output[j], events);
                        }
                    }
                }
                None => self.push16k(v, events),
            }
        }
        self.to16k = to16k;
        self.poll(events);
        self.dispatch(Instant::now(), events);
        Ok(())
    }

    fn reset(&mut self) {
        self.filling = 0;
        self.complete = 0;
        self.scored = 0;
        // A job that is out scores audio that no longer counts: its result is ignored.
        self.out = None;
        self.reset_model = true;
        self.since_reset = 0;
        self.low_run = 0;
        self.on_fallback = false;
        self.in_speech = false;
        self.run = 0;
        self.below_since = None;
        self.last_boundary = None;
        self.last_probability = 0.0;
        if let Some(r) = self.to16k.as_mut() {
            r.input.clear();
            r.fft.reset();
        }
    }
}
