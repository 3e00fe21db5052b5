//! STT plugin `local`: Whisper tiny.en, made to stream.
//!
//! Whisper transcribes whole clips, so each session segments its audio with a VAD, re-decodes the
//! growing utterance at a steady cadence for interim results, decodes it once more when it ends
//! for the final result, and reports the end of the turn after a further pause. Decoding runs on
//! the bounded inference [`Pool`]; the session keeps reading audio meanwhile.
//!
//! End-of-turn latency: the encoder sees a window the length of the utterance (not Whisper's
//! 30 s, see [`WhisperEngine::set_min_window_ms`]), and the final is decoded **speculatively**:
//! at the first pause (`speculative_pause_ms` of silence) the utterance so far is decoded; if
//! speech resumes the result is discarded, and if the pause lasts until the hangover
//! (`silence_hangover_ms`) ends the utterance, that result is the final, sent at once. An
//! interim decode is never what the final waits for: none starts once the voice has stopped,
//! unless interims are decoded as finals are (`interim_window_ms` equal to `min_window_ms`); then
//! an interim that heard every word, still decoding or back, is adopted as the speculation.

use super::input::InputConverter;
use super::pool::{default_split, Pool};
use super::settings::{check_channels, check_sample_rate, engine_health, models_from, InitError};
use crate::segmenter::{
    energy, quiet_ratio, Boundary, SegmentEvent, Segmenter, SegmenterConfig, DEFAULT_QUIET_DB,
};
use crate::whisper::{Transcription, WhisperEngine, DEFAULT_MIN_WINDOW_MS};
use crate::LocalError;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_plugin_api::{
    AudioEncoding, Capabilities, HealthStatus, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, SttEvent, SttInput, SttIo, SttPlugin, SttSessionConfig,
    Transcript, VadEvent,
};

/// The model id clients use.
pub const MODEL_ID: &str = "whisper-tiny.en";

/// Ended utterances a session keeps waiting for their final decode, besides the one decoding.
/// Utterances are at most 30 s (the segmenter cuts longer ones), so a session holds at most
/// about 2.5 minutes of 16 kHz audio (~9 MB) however far the decoder falls behind; past that an
/// utterance is dropped and reported (see [`PendingFinals`]).
pub const MAX_PENDING_FINALS: usize = 4;

/// Decodes one utterance (16 kHz mono); runs on the inference pool.
type DecodeFn = Arc<dyn Fn(&[f32]) -> Result<Transcription, LocalError> + Send + Sync>;

/// Default `silence_hangover_ms`: silence (after the VAD's score falls) that ends an utterance.
/// Long enough that a sentence with a 300 ms pause stays one utterance.
pub const DEFAULT_HANGOVER_MS: u32 = 500;
/// Default `speculative_pause_ms`: silence after which the final is decoded speculatively.
pub const DEFAULT_SPECULATIVE_PAUSE_MS: u32 = 96;
/// Default `first_interim_ms`: speech before the first interim decode.
pub const DEFAULT_FIRST_INTERIM_MS: u64 = 200;
/// Default `interim_interval_ms`: speech between later interim decodes.
pub const DEFAULT_INTERIM_INTERVAL_MS: u64 = 700;

#[derive(Clone)]
struct Loaded {
    decode: DecodeFn,
    /// Interims: provisional, so they take Whisper's short window (a fraction of the full
    /// window's cost) and never hold up the final's decode for long.
    decode_interim: DecodeFn,
    /// Interims are decoded on the finals' window: an interim that heard the whole utterance
    /// is as good as its final, and a pause adopts it rather than decode the same audio again.
    interim_as_final: bool,
    pool: Pool,
    /// Samples of speech before the first interim, and between later ones.
    first_interim: usize,
    interim_every: usize,
    turn_silence: Duration,
    vad: SegmenterConfig,
}

/// The `local` STT plugin.
#[derive(Default)]
pub struct LocalStt {
    loaded: OnceLock<Loaded>,
    init_error: InitError,
}

#[async_trait::async_trait]
impl Plugin for LocalStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("local", "Local Whisper")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["whisper", "local-stt"])
            .description("Offline Whisper tiny.en on CTranslate2 (no API key)")
    }

    fn capabilities(&self) -> Capabilities {
        // 16 kHz mono linear16 is what Whisper and the VAD run on: the host converts client
        // audio to it once (the plugin still accepts other formats when driven directly).
        Capabilities::new()
            .sample_rates([crate::resample::SPEECH_RATE])
            .max_channels(1)
            .models([ModelInfo::new(
                MODEL_ID,
                "Whisper tiny.en (INT8, CTranslate2)",
            )])
            .languages(["en", "en-US", "en-GB", "en-AU", "en-IN"])
            .encodings([AudioEncoding::Linear16])
            .features(true, true, true, false)
    }

    /// Config: `models_dir`, `workers`, `threads`, `max_queue` (8), `first_interim_ms` (200),
    /// `interim_interval_ms` (700), `turn_silence_ms` (700), `vad_threshold` (0.5),
    /// `silence_hangover_ms` (500), `speculative_pause_ms` (96; 0 = off), `quiet_db` (35: a frame
    /// that far below the utterance's loudest is silence whatever the VAD says; 0 = off), `min_window_ms`
    /// (0 = Whisper's full 30 s window, the default; 2000 is the fast setting),
    /// `interim_window_ms` (2000: interims on the short window; 0 = as finals), `beam_size`
    /// (5, as the reference; 1 = greedy decoding), `repetition_penalty` (1 = none; on short windows
    /// only; 1.2 with `beam_size: 1` is ~80 ms faster but may drop a word said twice), `loop_probe` (true: short windows first
    /// decode only as many tokens as dense speech needs, see [`WhisperEngine::set_loop_probe`]).
    async fn init(&self, ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        self.load(ctx, config)
            .await
            .map_err(|e| self.init_error.record(e))
    }

    /// `Unhealthy` when the model did not load, `Degraded` while the inference queue is full.
    fn health(&self) -> HealthStatus {
        engine_health(
            self.loaded.get().map(|l| &l.pool),
            &self.init_error,
            "the Whisper model",
        )
    }
}

impl LocalStt {
    async fn load(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let models = models_from(config)?;
        let (def_workers, def_threads) = default_split();
        let workers = config.u64_in("workers", def_workers as u64, 1..=64)? as usize;
        let threads = config.u64_in("threads", def_threads as u64, 1..=64)? as usize;
        let max_queue = config.u64_in("max_queue", 8, 0..=4096)? as usize;
        let dir = models.whisper_dir();
        // Off unless asked for: the short window costs accuracy on some voices.
        let window = match config.u64_in("min_window_ms", 0, 0..=30_000)? {
            0 => None,
            ms => Some(ms as u32),
        };
        let vad = segmenter_config(config)?;
        let samples = |ms: u64| usize::try_from(ms.saturating_mul(16)).unwrap_or(usize::MAX);
        let first_interim =
            config.u64_in("first_interim_ms", DEFAULT_FIRST_INTERIM_MS, 100..=60_000)?;
        let interim_ms = config.u64_in(
            "interim_interval_ms",
            DEFAULT_INTERIM_INTERVAL_MS,
            100..=60_000,
        )?;
        let interim_window = match config.u64_in(
            "interim_window_ms",
            u64::from(DEFAULT_MIN_WINDOW_MS),
            0..=30_000,
        )? {
            0 => window,
            ms => Some(ms as u32),
        };
        let turn_silence = config.u64_in("turn_silence_ms", 700, 1..=600_000)?;
        let beam_size = config.u64_in("beam_size", 5, 1..=10)? as usize;
        let penalty = config.f64_in("repetition_penalty", 1.0, 1.0..=2.0)? as f32;
        let loop_probe = config.bool("loop_probe")?.unwrap_or(true);
        // Every setting is checked before the model is loaded: a typo fails fast.
        let engine = tokio::task::spawn_blocking(move || {
            WhisperEngine::load(&dir, threads).map(|mut e| {
                e.set_min_window_ms(window);
                e.set_beam_size(beam_size);
                e.set_short_repetition_penalty(penalty);
                e.set_loop_probe(loop_probe);
                e
            })
        })
        .await
        .map_err(|e| PluginError::Panicked(e.to_string()))?
        .map_err(|e| PluginError::Config(e.to_string()))?;
        let engine = Arc::new(engine);
        let interim_engine = engine.clone();
        let interim_as_final = interim_window == window;
        let _ = self.loaded.set(Loaded {
            decode: Arc::new(move |audio: &[f32]| engine.transcribe_scored(audio)),
            // An interim decoded as finals are may be adopted as the final, so it settles every
            // window as a final does; otherwise it is provisional and skips what the short
            // window cannot settle (the final hears it on its own window).
            decode_interim: Arc::new(move |audio: &[f32]| {
                if interim_as_final {
                    interim_engine.transcribe_scored_within(audio, interim_window)
                } else {
                    interim_engine.transcribe_provisional(audio, interim_window)
                }
            }),
            interim_as_final,
            pool: Pool::new("whisper", workers, max_queue),
            first_interim: samples(first_interim),
            interim_every: samples(interim_ms),
            turn_silence: Duration::from_millis(turn_silence),
            vad,
        });
        Ok(())
    }
}

/// The session segmenter's settings from the plugin config: `vad_threshold`,
/// `silence_hangover_ms`, `speculative_pause_ms` (a pause at or past the hangover is no pause:
/// the utterance ends there), `quiet_db` (see [`SegmenterConfig::quiet_db`]).
fn segmenter_config(config: &PluginConfig) -> Result<SegmenterConfig, PluginError> {
    let mut vad = SegmenterConfig {
        silence_hangover_ms: DEFAULT_HANGOVER_MS,
        pause_ms: DEFAULT_SPECULATIVE_PAUSE_MS,
        ..SegmenterConfig::default()
    };
    vad.threshold = config.f64_in("vad_threshold", f64::from(vad.threshold), 0.0..=1.0)? as f32;
    vad.silence_hangover_ms = config.u64_in(
        "silence_hangover_ms",
        u64::from(vad.silence_hangover_ms),
        20..=10_000,
    )? as u32;
    vad.pause_ms =
        config.u64_in("speculative_pause_ms", u64::from(vad.pause_ms), 0..=10_000)? as u32;
    vad.quiet_db = config.f64_in("quiet_db", f64::from(vad.quiet_db), 0.0..=120.0)? as f32;
    if vad.pause_ms >= vad.silence_hangover_ms {
        vad.pause_ms = 0;
    }
    Ok(vad)
}

#[async_trait::async_trait]
impl SttPlugin for LocalStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        // The format first: nothing below may be sized from an unchecked number.
        check_sample_rate(config.sample_rate)?;
        check_channels(config.channels)?;
        if !config.language.is_empty() && !config.language.to_ascii_lowercase().starts_with("en") {
            return Err(PluginError::Config(format!(
                "whisper-tiny.en transcribes English only, not {:?}",
                config.language
            )));
        }
        let loaded = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| PluginError::Config("local STT is not initialised".into()))?;
        let stream = Stream::build(loaded, &config).await?;
        Ok(Box::pin(stream.run(io)))
    }
}

/// Ended utterances waiting for their final decode, oldest first, at most `capacity`. A full
/// queue refuses the new utterance rather than grow or drop audio already promised a final.
struct PendingFinals {
    items: VecDeque<(u64, Vec<f32>)>,
    capacity: usize,
}

impl PendingFinals {
    fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Queues an utterance; when full, gives its audio back.
    fn push(&mut self, utterance: u64, audio: Vec<f32>) -> Result<(), Vec<f32>> {
        if self.items.len() >= self.capacity {
            return Err(audio);
        }
        self.items.push_back((utterance, audio));
        Ok(())
    }

    fn pop(&mut self) -> Option<(u64, Vec<f32>)> {
        self.items.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Interim,
    Final,
    /// The final decoded at a pause, before the utterance is known to be over (its id).
    Speculative(u64),
}

/// A final decoded ahead, at the utterance's first pause.
struct Speculation {
    id: u64,
    utterance: u64,
    /// Samples of the utterance it decodes.
    heard: usize,
    /// Its result is an interim already sent (a decoded interim adopted).
    shown: bool,
    /// The audio, until its decode starts.
    audio: Option<Vec<f32>>,
    /// The decode's result, once back while the pause still holds.
    result: Option<Result<Transcription, PluginError>>,
    /// The utterance ended in this pause: the result is the final.
    ended: bool,
}

fn count_speculation(outcome: &'static str) {
    metrics::counter!("waav_local_speculative_finals_total", "outcome" => outcome).increment(1);
}

/// A pause took an interim as its speculative final (`state`: `decoding` or `decoded`).
fn count_adoption(state: &'static str) {
    metrics::counter!("waav_local_adopted_interims_total", "state" => state).increment(1);
}

/// Whether nothing after the first `len` samples of `audio` is speech (every 16 ms frame
/// [`DEFAULT_QUIET_DB`] below the loudest before it, the segmenter's own gate): a decode of
/// those samples heard every word.
fn quiet_after(audio: &[f32], len: usize) -> bool {
    let Some((heard, rest)) = (len <= audio.len()).then(|| audio.split_at(len)) else {
        return false;
    };
    let quiet = quiet_ratio(DEFAULT_QUIET_DB);
    let loudest = heard.chunks(256).map(energy).fold(0.0, f32::max);
    loudest > 0.0 && rest.chunks(256).all(|f| energy(f) <= loudest * quiet)
}

struct Job {
    kind: Kind,
    utterance: u64,
    /// Samples of the utterance it decodes (from its start).
    audio_len: usize,
    started: std::time::Instant,
    handle: JoinHandle<Result<Transcription, PluginError>>,
}

struct Stream {
    loaded: Loaded,
    input: InputConverter,
    segmenter: Segmenter,
    /// Speech (samples) since the last interim was due.
    since_interim: usize,
    /// Speech (samples) due before the next interim.
    next_interim: usize,
    utterance: u64,
    finals: PendingFinals,
    /// The newest interim of the utterance in progress: samples it heard, and its result.
    last_interim: Option<(usize, Transcription)>,
    /// The speculative final of the utterance in progress, if it is in a pause.
    spec: Option<Speculation>,
    spec_seq: u64,
    /// Finals ready to send (a speculation the utterance's end confirmed).
    ready: VecDeque<(u64, Result<Transcription, PluginError>)>,
    /// A speculation that resumed speech voided after its decode was back: still the newest
    /// decode of the utterance so far, so sent as an interim (utterance, samples heard, result).
    voided: Option<(u64, usize, Transcription)>,
    /// Non-fatal errors to report (utterances dropped because the decoder is behind).
    notices: Vec<PluginError>,
    job: Option<Job>,
    /// A final with words was sent in this turn (an end of turn follows only such a turn).
    turn_open: bool,
    turn_deadline: Option<tokio::time::Instant>,
    scratch: Vec<f32>,
}

impl Stream {
    /// Builds the session's converter (an FFT resampler) and VAD on a blocking thread: their
    /// set-up is CPU work the runtime's workers must not do.
    async fn build(loaded: Loaded, config: &SttSessionConfig) -> Result<Self, PluginError> {
        let (encoding, rate, channels) = (config.encoding, config.sample_rate, config.channels);
        let external_vad = config.vad_events;
        tokio::task::spawn_blocking(move || {
            let input = InputConverter::new(encoding, rate, channels)?;
            let mut stream = Self::new(loaded, input);
            if external_vad {
                // One VAD decides for every provider: the session's, when it has one.
                stream.segmenter.follow_external();
            }
            Ok(stream)
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => PluginError::from_panic(&*p),
            Err(e) => PluginError::Transient(format!("session set-up cancelled: {e}")),
        })?
    }

    fn new(loaded: Loaded, input: InputConverter) -> Self {
        let segmenter = Segmenter::new(loaded.vad.clone());
        Self {
            loaded,
            input,
            segmenter,
            since_interim: 0,
            next_interim: usize::MAX,
            utterance: 0,
            finals: PendingFinals::new(MAX_PENDING_FINALS),
            last_interim: None,
            spec: None,
            spec_seq: 0,
            ready: VecDeque::new(),
            voided: None,
            notices: Vec::new(),
            job: None,
            turn_open: false,
            turn_deadline: None,
            scratch: Vec::new(),
        }
    }

    async fn run(mut self, mut io: SttIo) -> Result<(), PluginError> {
        let mut input_open = true;
        loop {
            for notice in std::mem::take(&mut self.notices) {
                if io.events.send(SttEvent::Error(notice)).await.is_err() {
                    return Ok(());
                }
            }
            while let Some((utterance, result)) = self.ready.pop_front() {
                if !self
                    .on_decoded(&io, Kind::Final, utterance, 0, result)
                    .await
                {
                    return Ok(());
                }
            }
            if let Some((utterance, heard, t)) = self.voided.take() {
                if !self
                    .on_decoded(&io, Kind::Interim, utterance, heard, Ok(t))
                    .await
                {
                    return Ok(());
                }
            }
            if !input_open && self.job.is_none() && self.finals.is_empty() && self.spec.is_none() {
                return Ok(());
            }
            let deadline = self.turn_deadline;
            tokio::select! {
                msg = io.input.recv(), if input_open => match msg {
                    Some(SttInput::Audio(bytes)) => self.on_audio(&bytes),
                    Some(SttInput::Finalize) => self.end_utterance(),
                    Some(SttInput::Vad(ev)) => self.on_vad(ev),
                    // Input kinds added to the contract later: nothing for this plugin.
                    Some(_) => {}
                    None => {
                        input_open = false;
                        self.end_utterance();
                    }
                },
                result = wait(&mut self.job) => {
                    if !self.job_done(&io, result).await {
                        return Ok(());
                    }
                }
                () = sleep_until(deadline) => {
                    self.turn_deadline = None;
                    if self.turn_open {
                        self.turn_open = false;
                        if io.events.send(SttEvent::UtteranceEnd).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            self.schedule();
        }
    }

    /// Queues an ended utterance for its final, or drops it (reported) when the decoder is
    /// [`MAX_PENDING_FINALS`] behind.
    fn queue_final(&mut self, utterance: u64, samples: Vec<f32>) {
        if let Err(audio) = self.finals.push(utterance, samples) {
            metrics::counter!("waav_local_dropped_utterances_total", "engine" => "whisper")
                .increment(1);
            self.notices.push(PluginError::RateLimited {
                retry_after: None,
                message: format!(
                    "local STT decoder is behind ({MAX_PENDING_FINALS} utterances wait for                      decoding): dropped a {:.1} s utterance without a transcript",
                    audio.len() as f32 / 16_000.0
                ),
            });
        }
    }

    fn on_audio(&mut self, bytes: &[u8]) {
        self.scratch.clear();
        self.input.push(bytes, &mut self.scratch);
        let samples = std::mem::take(&mut self.scratch);
        for ev in self.segmenter.push_f32(&samples) {
            self.on_segment(ev);
        }
        if self.segmenter.in_speech() {
            self.since_interim += samples.len();
        }
        self.scratch = samples;
    }

    /// A boundary of the session's VAD (followed only when the session said it has one).
    fn on_vad(&mut self, ev: VadEvent) {
        let boundary = match ev {
            VadEvent::SpeechStarted { at_ms } => Boundary::Started { at_ms },
            VadEvent::SpeechEnded { .. } => Boundary::Ended,
        };
        if let Some(ev) = self.segmenter.boundary(boundary) {
            self.on_segment(ev);
        }
    }

    fn on_segment(&mut self, ev: SegmentEvent) {
        tracing::debug!(
            event = match &ev {
                SegmentEvent::SpeechStarted => "started",
                SegmentEvent::Paused => "paused",
                SegmentEvent::Resumed => "resumed",
                SegmentEvent::SpeechEnded { .. } => "ended",
            },
            utterance = self.utterance,
            "local stt: segment"
        );
        match ev {
            SegmentEvent::SpeechStarted => {
                self.utterance += 1;
                self.last_interim = None;
                self.since_interim = 0;
                self.next_interim = self.loaded.first_interim;
                self.turn_deadline = None;
                self.discard_speculation();
            }
            SegmentEvent::Paused => self.speculate(),
            SegmentEvent::Resumed => self.discard_speculation(),
            SegmentEvent::SpeechEnded { samples } => self.utterance_ended(samples),
        }
    }

    fn end_utterance(&mut self) {
        if let Some(SegmentEvent::SpeechEnded { samples }) = self.segmenter.flush() {
            self.utterance_ended(samples);
        }
    }

    /// The utterance in progress ended: its speculative final (decoded or decoding) becomes the
    /// final, else its audio is queued for one.
    fn utterance_ended(&mut self, samples: Vec<f32>) {
        match self.spec.as_mut() {
            Some(spec) if spec.utterance == self.utterance => {
                spec.ended = true;
                if let Some(result) = spec.result.take() {
                    self.spec = None;
                    count_speculation("used");
                    self.ready.push_back((self.utterance, result));
                }
            }
            _ => self.queue_final(self.utterance, samples),
        }
    }

    /// The utterance paused: decode what it holds so far, unless earlier finals are still owed
    /// (the speculation would overtake them) or a final is decoding. An interim that heard
    /// every word so far, decoding or decoded, is adopted instead: a decode of the same words
    /// would only start later.
    fn speculate(&mut self) {
        let final_running = self.job.as_ref().is_some_and(|j| j.kind == Kind::Final);
        // An ended utterance's speculation is that utterance's final, still decoding.
        let final_owed = self.spec.as_ref().is_some_and(|s| s.ended);
        if !self.finals.is_empty() || final_running || final_owed || !self.ready.is_empty() {
            return;
        }
        self.spec_seq += 1;
        let mut spec = Speculation {
            id: self.spec_seq,
            utterance: self.utterance,
            heard: 0,
            shown: false,
            audio: None,
            result: None,
            ended: false,
        };
        let audio = self.segmenter.utterance();
        let heard_all = |len: usize| self.loaded.interim_as_final && quiet_after(audio, len);
        let running = self
            .job
            .as_ref()
            .filter(|j| j.kind == Kind::Interim && j.utterance == self.utterance)
            .map(|j| j.audio_len);
        let decoded = self.last_interim.as_ref().map(|(len, _)| *len);
        if let Some(len) = running.filter(|len| heard_all(*len)) {
            spec.heard = len;
            if let Some(job) = self.job.as_mut() {
                job.kind = Kind::Speculative(spec.id);
            }
            tracing::debug!(
                utterance = self.utterance,
                "local stt: pause adopts the interim decoding"
            );
            count_adoption("decoding");
        } else if let Some(len) = decoded.filter(|len| heard_all(*len)) {
            spec.heard = len;
            spec.shown = true;
            spec.result = self.last_interim.take().map(|(_, t)| Ok(t));
            tracing::debug!(
                utterance = self.utterance,
                "local stt: pause adopts the interim decoded"
            );
            count_adoption("decoded");
        } else {
            spec.heard = audio.len();
            spec.audio = Some(audio.to_vec());
        }
        self.spec = Some(spec);
    }

    /// Speech resumed (or a new utterance began): a speculation is void; a decode of it still
    /// running is ignored when it returns.
    fn discard_speculation(&mut self) {
        // One whose utterance ended is not void: it is that utterance's final, still decoding
        // (the next utterance may begin before it is back).
        if self.spec.as_ref().is_some_and(|s| !s.ended) {
            if let Some(spec) = self.spec.take() {
                if let (Some(Ok(t)), false) = (spec.result, spec.shown) {
                    self.voided = Some((spec.utterance, spec.heard, t));
                }
            }
            count_speculation("discarded");
        }
    }

    /// Starts the next decode if none is running: a speculative final first (it is for the
    /// newest utterance, but finals queued after it are for later ones), then queued finals,
    /// then an interim when due (not during a pause: the speculation covers it).
    fn schedule(&mut self) {
        if self.job.is_some() {
            return;
        }
        if let Some(spec) = self.spec.as_mut() {
            if let Some(audio) = spec.audio.take() {
                let (id, utterance) = (spec.id, spec.utterance);
                self.job = Some(self.spawn(Kind::Speculative(id), utterance, audio));
                return;
            }
        }
        if let Some((utterance, audio)) = self.finals.pop() {
            self.job = Some(self.spawn(Kind::Final, utterance, audio));
        } else if self.segmenter.in_speech()
            && self.spec.is_none()
            && self.since_interim >= self.next_interim
            // Silence may be the end: an interim started now would hold up the final's
            // decode at the pause, unless that pause can adopt it.
            && (self.loaded.interim_as_final || self.segmenter.trailing_silence() == 0)
        {
            self.since_interim = 0;
            self.next_interim = self.loaded.interim_every;
            // The utterance from its start (the pre-roll before the VAD decided included),
            // as its final will hear it.
            let audio = self.segmenter.utterance().to_vec();
            self.job = Some(self.spawn(Kind::Interim, self.utterance, audio));
        }
    }

    fn spawn(&self, kind: Kind, utterance: u64, audio: Vec<f32>) -> Job {
        let decode = match kind {
            Kind::Interim => self.loaded.decode_interim.clone(),
            Kind::Final | Kind::Speculative(_) => self.loaded.decode.clone(),
        };
        let pool = self.loaded.pool.clone();
        let audio_len = audio.len();
        let handle = tokio::spawn(async move {
            pool.run(move || decode(&audio))
                .await?
                .map_err(|e| PluginError::Transient(e.to_string()))
        });
        tracing::debug!(
            ?kind,
            utterance,
            ms = audio_len / 16,
            "local stt: decode started"
        );
        Job {
            kind,
            utterance,
            audio_len,
            started: std::time::Instant::now(),
            handle,
        }
    }

    /// The running job returned `result`: reports it. `false` when the host hung up.
    async fn job_done(&mut self, io: &SttIo, result: Result<Transcription, PluginError>) -> bool {
        let job = self.job.take().expect("a job was running");
        tracing::debug!(
            kind = ?job.kind,
            utterance = job.utterance,
            took_ms = job.started.elapsed().as_millis() as u64,
            words = result.as_ref().map_or(0, |t| t.text.split_whitespace().count()),
            "local stt: decoded"
        );
        self.on_decoded(io, job.kind, job.utterance, job.audio_len, result)
            .await
    }

    /// Reports a decode of the first `heard` samples of `utterance`. `false` when the host hung
    /// up.
    async fn on_decoded(
        &mut self,
        io: &SttIo,
        kind: Kind,
        utterance: u64,
        heard: usize,
        result: Result<Transcription, PluginError>,
    ) -> bool {
        let kind = match kind {
            Kind::Speculative(id) => match self.spec.as_mut() {
                Some(spec) if spec.id == id && spec.ended => {
                    self.spec = None;
                    count_speculation("used");
                    Kind::Final
                }
                // The pause still holds: kept until it ends the utterance or speech resumes.
                Some(spec) if spec.id == id => {
                    spec.result = Some(result);
                    return true;
                }
                // Speech resumed meanwhile: no final, but still the newest decode of the
                // utterance so far, so an interim (the same checks apply below).
                _ => Kind::Interim,
            },
            other => other,
        };
        let current = utterance == self.utterance && self.segmenter.in_speech();
        if let (Kind::Interim, true, Ok(t)) = (kind, current, &result) {
            if self.loaded.interim_as_final {
                self.last_interim = Some((heard, t.clone()));
            }
        }
        let (text, confidence) = match result {
            Ok(t) => (t.text.trim().to_owned(), t.confidence),
            // A refused interim is simply skipped; a lost final is reported.
            Err(_) if kind == Kind::Interim => return true,
            Err(e) => return io.events.send(SttEvent::Error(e)).await.is_ok(),
        };
        let event = match kind {
            // An interim for an utterance that already ended (or has a final queued) is stale.
            Kind::Interim if !current => return true,
            Kind::Interim if text.is_empty() => {
                // Too little speech for words yet: try again soon, not a whole interval later.
                self.next_interim = self.loaded.first_interim;
                return true;
            }
            Kind::Interim => Transcript::interim(text, confidence),
            Kind::Speculative(_) => return true,
            Kind::Final => {
                if !text.is_empty() {
                    self.turn_open = true;
                }
                if !self.segmenter.in_speech() && self.finals.is_empty() {
                    self.turn_deadline =
                        Some(tokio::time::Instant::now() + self.loaded.turn_silence);
                }
                Transcript::final_result(text, confidence, false)
            }
        };
        io.events
            .send(SttEvent::Transcript(Box::new(event)))
            .await
            .is_ok()
    }
}

async fn wait(job: &mut Option<Job>) -> Result<Transcription, PluginError> {
    match job {
        Some(j) => (&mut j.handle)
            .await
            .unwrap_or_else(|e| Err(PluginError::Panicked(e.to_string()))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::espeak::{espeak_or_skip, espeak_synthesize};
    use crate::resample::to_mono_16k;
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;

    fn fake_loaded(decode: DecodeFn, pool: Pool) -> Loaded {
        Loaded {
            decode_interim: decode.clone(),
            decode,
            interim_as_final: false,
            pool,
            first_interim: usize::MAX,
            interim_every: usize::MAX,
            turn_silence: Duration::from_secs(60),
            vad: SegmenterConfig::default(),
        }
    }

    fn instant_decode() -> DecodeFn {
        Arc::new(|_: &[f32]| Ok(Transcription::default()))
    }

    /// A gate the fake decoder waits at until the test opens it.
    #[derive(Default)]
    struct Gate(Mutex<bool>, Condvar);

    impl Gate {
        fn wait(&self) {
            let mut open = self.0.lock().unwrap();
            while !*open {
                open = self.1.wait(open).unwrap();
            }
        }

        fn open(&self) {
            *self.0.lock().unwrap() = true;
            self.1.notify_all();
        }
    }

    #[test]
    fn pending_finals_refuse_past_capacity() {
        let mut q = PendingFinals::new(2);
        assert!(q.push(1, vec![1.0]).is_ok());
        assert!(q.push(2, vec![2.0]).is_ok());
        assert_eq!(q.push(3, vec![3.0; 5]), Err(vec![3.0; 5]));
        assert_eq!(q.items.len(), 2);
        assert_eq!(q.pop(), Some((1, vec![1.0])));
        assert!(q.push(4, vec![4.0]).is_ok());
        assert_eq!(q.pop().map(|(u, _)| u), Some(2));
        assert_eq!(q.pop().map(|(u, _)| u), Some(4));
        assert!(q.is_empty());
    }

    /// With decoding stuck, utterances beyond [`MAX_PENDING_FINALS`] are dropped and reported;
    /// the session goes on and, once the decoder catches up, delivers the finals it kept.
    #[tokio::test]
    async fn a_decoder_that_falls_behind_drops_new_utterances_with_an_error() {
        if !espeak_or_skip() {
            return;
        }
        let (speech, rate) = espeak_synthesize("Hello there.", "en-us", 175).unwrap();
        let pcm: Vec<u8> = to_mono_16k(&speech, rate, 1)
            .iter()
            .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
            .collect();
        let gate = Arc::new(Gate::default());
        let decode: DecodeFn = {
            let gate = gate.clone();
            Arc::new(move |audio: &[f32]| {
                gate.wait();
                Ok(Transcription {
                    text: format!("{} samples", audio.len()),
                    confidence: 0.7,
                })
            })
        };
        let loaded = fake_loaded(decode, Pool::new("test", 1, 8));
        let input = InputConverter::new(AudioEncoding::Linear16, 16_000, 1).unwrap();
        let (io, mut peer) = SttIo::pair(64);
        let task = tokio::spawn(Stream::new(loaded, input).run(io));

        // One utterance decoding (stuck), MAX_PENDING_FINALS waiting, two more dropped.
        let utterances = MAX_PENDING_FINALS + 3;
        for _ in 0..utterances {
            let audio = SttInput::Audio(bytes::Bytes::from(pcm.clone()));
            peer.input.send(audio).await.unwrap();
            peer.input.send(SttInput::Finalize).await.unwrap();
        }
        let until = Instant::now() + Duration::from_secs(5);
        let mut errors = Vec::new();
        while errors.len() < 2 {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, peer.events.recv()).await {
                Ok(Some(SttEvent::Error(e))) => errors.push(e),
                Ok(other) => panic!("unexpected {other:?} while the decoder is stuck"),
                Err(_) => panic!("only {} errors while the decoder is stuck", errors.len()),
            }
        }
        for e in &errors {
            assert!(matches!(e, PluginError::RateLimited { .. }), "{e}");
            assert!(e.to_string().contains("decoder is behind"), "{e}");
        }

        gate.open();
        drop(peer.input);
        let mut finals = 0;
        while let Some(event) = peer.events.recv().await {
            match event {
                SttEvent::Transcript(t) => {
                    assert!(t.is_final, "{t:?}");
                    assert_eq!(t.confidence, 0.7, "the decoder's confidence is passed on");
                    finals += 1;
                }
                SttEvent::UtteranceEnd => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(finals, MAX_PENDING_FINALS + 1);
        task.await.unwrap().unwrap();
    }

    fn pcm16(samples: &[f32]) -> Vec<u8> {
        samples
            .iter()
            .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
            .collect()
    }

    /// Streams `audio` in 20 ms chunks, then closes the input; returns the finals' texts.
    async fn finals_of(loaded: Loaded, audio: &[f32]) -> Vec<String> {
        let input = InputConverter::new(AudioEncoding::Linear16, 16_000, 1).unwrap();
        let (io, mut peer) = SttIo::pair(1024);
        let task = tokio::spawn(Stream::new(loaded, input).run(io));
        for chunk in pcm16(audio).chunks(640) {
            let audio = SttInput::Audio(bytes::Bytes::copy_from_slice(chunk));
            peer.input.send(audio).await.unwrap();
            // Let the session run its decodes between chunks, as in real time.
            tokio::task::yield_now().await;
        }
        drop(peer.input);
        let mut finals = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, peer.events.recv()).await {
                Ok(Some(SttEvent::Transcript(t))) if t.is_final => finals.push(t.text.clone()),
                Ok(Some(SttEvent::Error(e))) => panic!("error {e}"),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => panic!("the session did not end"),
            }
        }
        task.await.unwrap().unwrap();
        finals
    }

    /// A decoder that names the length of what it decoded, and records every length.
    fn counting_decode(calls: Arc<Mutex<Vec<usize>>>) -> DecodeFn {
        Arc::new(move |audio: &[f32]| {
            calls.lock().unwrap().push(audio.len());
            // Slow enough for audio to keep arriving while it runs.
            std::thread::sleep(Duration::from_millis(5));
            Ok(Transcription {
                text: format!("{} samples", audio.len()),
                confidence: 0.9,
            })
        })
    }

    fn espeak_16k(text: &str) -> Vec<f32> {
        let (speech, rate) = espeak_synthesize(text, "en-us", 175).unwrap();
        to_mono_16k(&speech, rate, 1)
    }

    /// Speech, a pause long enough to start the speculative final but shorter than the
    /// hangover, then more speech: the speculation is discarded and the one final covers both
    /// parts (the decoder saw the shorter audio once, and that result was not sent).
    #[tokio::test]
    async fn a_speculative_final_is_discarded_when_speech_resumes() {
        if !espeak_or_skip() {
            return;
        }
        let config = PluginConfig::from_value(
            "plugins.stt.local",
            serde_json::json!({ "silence_hangover_ms": 600, "speculative_pause_ms": 96 }),
        )
        .unwrap();
        let vad = segmenter_config(&config).unwrap();
        assert_eq!((vad.silence_hangover_ms, vad.pause_ms), (600, 96));
        // Trimmed: espeak-ng pads its clips with silence, which the energy gate counts as such.
        let first = spoken("Hello there");
        let mut audio = vec![0.0; 8_000];
        audio.extend(&first);
        let first_end = audio.len();
        audio.extend(vec![0.0; 16 * 350]);
        audio.extend(espeak_16k("my friend"));
        audio.extend(vec![0.0; 32_000]);

        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut loaded = fake_loaded(counting_decode(calls.clone()), Pool::new("test", 1, 8));
        loaded.vad = vad;
        let finals = finals_of(loaded, &audio).await;
        assert_eq!(finals.len(), 1, "{finals:?}");
        let final_len: usize = finals[0].split(' ').next().unwrap().parse().unwrap();
        assert!(
            final_len > first_end,
            "the final holds both parts: {final_len} samples, the first part ends at {first_end}"
        );
        let calls = calls.lock().unwrap().clone();
        assert!(
            calls.iter().any(|&n| n < first_end + 16 * 350),
            "a speculative decode of the first part ran: {calls:?}"
        );
        assert!(calls.len() >= 2, "{calls:?}");
    }

    #[test]
    fn quiet_after_tells_whether_speech_follows() {
        let mut audio = vec![0.5f32; 1_600];
        audio.extend(vec![0.002; 3_200]);
        assert!(
            quiet_after(&audio, 1_600),
            "−48 dB after the speech is no speech"
        );
        assert!(quiet_after(&audio, 2_000));
        assert!(!quiet_after(&audio, 800), "speech follows");
        audio.extend(vec![0.05; 256]);
        assert!(!quiet_after(&audio, 1_600), "−20 dB is a consonant");
        assert!(!quiet_after(&audio, audio.len() + 1), "past the end");
        assert!(!quiet_after(&[0.0; 512], 256), "nothing was heard");
    }

    /// espeak-ng's speech of `text` without its trailing silence: the tests below place the
    /// silence themselves.
    fn spoken(text: &str) -> Vec<f32> {
        let mut audio = espeak_16k(text);
        while audio.last().is_some_and(|s| s.abs() < 1e-3) {
            audio.pop();
        }
        audio
    }

    /// Drives a session by hand: `audio` in 20 ms chunks.
    fn feed(stream: &mut Stream, audio: &[f32]) {
        for chunk in pcm16(audio).chunks(640) {
            stream.on_audio(chunk);
        }
    }

    /// Feeds silence, 16 ms at a time (at most 1 s), until `done`.
    fn feed_silence_until(stream: &mut Stream, done: impl Fn(&Stream) -> bool) {
        for _ in 0..64 {
            if done(stream) {
                return;
            }
            feed(stream, &[0.0; 256]);
        }
        panic!("not reached within 1 s of silence");
    }

    /// A session whose decoder waits at `gate`, with interims decoded as finals when
    /// `interim_as_final`, and no interim due unless the test makes one due.
    fn gated_stream(gate: Arc<Gate>, calls: Arc<Mutex<Vec<usize>>>, as_final: bool) -> Stream {
        let decode: DecodeFn = Arc::new(move |audio: &[f32]| {
            gate.wait();
            calls.lock().unwrap().push(audio.len());
            Ok(Transcription {
                text: format!("{} samples", audio.len()),
                confidence: 0.9,
            })
        });
        let mut loaded = fake_loaded(decode, Pool::new("test", 1, 8));
        loaded.interim_as_final = as_final;
        loaded.vad = segmenter_config(&PluginConfig::default()).unwrap();
        let input = InputConverter::new(AudioEncoding::Linear16, 16_000, 1).unwrap();
        Stream::new(loaded, input)
    }

    /// Starts an interim of what the session has heard so far.
    fn start_interim(stream: &mut Stream) -> usize {
        stream.next_interim = 0;
        stream.schedule();
        let job = stream.job.as_ref().expect("an interim started");
        assert!(job.kind == Kind::Interim);
        job.audio_len
    }

    /// An interim started after the last word, still decoding when the pause comes, is the
    /// speculative final: nothing is decoded twice, and the final is sent when the utterance
    /// ends.
    #[tokio::test]
    async fn a_pause_adopts_an_interim_that_heard_every_word() {
        if !espeak_or_skip() {
            return;
        }
        let (gate, calls) = (Arc::new(Gate::default()), Arc::new(Mutex::new(Vec::new())));
        let mut stream = gated_stream(gate.clone(), calls.clone(), true);
        let mut audio = vec![0.0; 8_000];
        audio.extend(spoken("Hello there my friend"));
        feed(&mut stream, &audio);
        assert!(stream.segmenter.in_speech());
        feed(&mut stream, &[0.0; 16 * 20]);
        let heard = start_interim(&mut stream);
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        let spec = stream.spec.as_ref().unwrap();
        assert!(spec.audio.is_none(), "no second decode of the same words");
        let job = stream.job.as_ref().unwrap();
        assert!(
            job.kind == Kind::Speculative(spec.id),
            "the interim is adopted"
        );

        // The hangover ends the utterance while the adopted decode still runs.
        feed(&mut stream, &[0.0; 16 * 600]);
        assert!(!stream.segmenter.in_speech() && stream.spec.as_ref().unwrap().ended);
        gate.open();
        let (io, mut peer) = SttIo::pair(8);
        let result = wait(&mut stream.job).await;
        assert!(stream.job_done(&io, result).await);
        match peer.events.try_recv() {
            Ok(SttEvent::Transcript(t)) => {
                assert!(t.is_final, "{t:?}");
                assert_eq!(t.text, format!("{heard} samples"));
            }
            other => panic!("expected the final, got {other:?}"),
        }
        assert_eq!(*calls.lock().unwrap(), vec![heard], "one decode");
    }

    /// A speculative final decoded during a pause that speech then ends is still the newest
    /// decode of the utterance: it goes out as an interim, not into the bin (an adopted interim
    /// already sent does not go out twice).
    #[tokio::test]
    async fn a_voided_speculation_already_decoded_is_sent_as_an_interim() {
        if !espeak_or_skip() {
            return;
        }
        let (gate, calls) = (Arc::new(Gate::default()), Arc::new(Mutex::new(Vec::new())));
        gate.open();
        let mut stream = gated_stream(gate, calls.clone(), false);
        let mut audio = vec![0.0; 8_000];
        audio.extend(spoken("Hello there"));
        feed(&mut stream, &audio);
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        let heard = stream.spec.as_ref().unwrap().audio.as_ref().unwrap().len();
        stream.schedule();
        let (io, _peer) = SttIo::pair(8);
        let result = wait(&mut stream.job).await;
        assert!(stream.job_done(&io, result).await);
        assert!(
            stream.spec.as_ref().unwrap().result.is_some(),
            "held for the pause"
        );
        assert!(stream.voided.is_none());
        feed(&mut stream, &spoken("my friend"));
        assert!(stream.spec.is_none(), "speech resumed: no final");
        let (utterance, len, t) = stream.voided.take().expect("sent as an interim");
        assert_eq!((utterance, len), (stream.utterance, heard));
        assert_eq!(t.text, format!("{heard} samples"));
        assert_eq!(*calls.lock().unwrap(), vec![heard]);

        // The loop sends it: an interim of the words heard before the pause.
        stream.voided = Some((utterance, len, t));
        let (io, mut peer) = SttIo::pair(8);
        drop(peer.input);
        let task = tokio::spawn(stream.run(io));
        match peer.events.recv().await {
            Some(SttEvent::Transcript(t)) => {
                assert!(!t.is_final, "{t:?}");
                assert_eq!(t.text, format!("{heard} samples"));
            }
            other => panic!("expected the interim, got {other:?}"),
        }
        drop(peer.events);
        let _ = task.await;
    }

    /// An interim already back when the pause comes is its result at once, when it heard every
    /// word; one that stopped listening mid-speech, or is not decoded as finals are, is not.
    #[tokio::test]
    async fn only_an_interim_that_heard_every_word_on_the_finals_window_is_adopted() {
        if !espeak_or_skip() {
            return;
        }
        let mut audio = vec![0.0; 8_000];
        audio.extend(spoken("Hello there my friend"));
        let half = 8_000 + (audio.len() - 8_000) / 2;

        // Decoded before the pause: the speculation holds its result, no decode starts.
        let (gate, calls) = (Arc::new(Gate::default()), Arc::new(Mutex::new(Vec::new())));
        gate.open();
        let mut stream = gated_stream(gate.clone(), calls.clone(), true);
        feed(&mut stream, &audio);
        feed(&mut stream, &[0.0; 16 * 20]);
        let heard = start_interim(&mut stream);
        let (io, mut peer) = SttIo::pair(8);
        let result = wait(&mut stream.job).await;
        assert!(stream.job_done(&io, result).await);
        assert!(matches!(peer.events.try_recv(), Ok(SttEvent::Transcript(t)) if !t.is_final));
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        let spec = stream.spec.as_ref().unwrap();
        assert!(spec.audio.is_none() && stream.job.is_none());
        let text = spec.result.as_ref().unwrap().as_ref().unwrap().text.clone();
        assert_eq!(text, format!("{heard} samples"));

        // Started mid-speech: the words after it are unheard, so the pause decodes anew.
        let stuck = Arc::new(Gate::default());
        let mut stream = gated_stream(stuck.clone(), calls.clone(), true);
        feed(&mut stream, &audio[..half]);
        start_interim(&mut stream);
        feed(&mut stream, &audio[half..]);
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        let spec = stream.spec.as_ref().unwrap();
        assert!(
            spec.audio.is_some(),
            "a decode of the whole utterance is due"
        );
        assert!(stream.job.as_ref().unwrap().kind == Kind::Interim);

        // Interims on a shorter window than finals: never adopted, and none starts in silence.
        let mut stream = gated_stream(stuck.clone(), calls, false);
        feed(&mut stream, &audio);
        feed_silence_until(&mut stream, |s| s.segmenter.trailing_silence() > 0);
        assert!(stream.spec.is_none(), "not yet a pause");
        stream.next_interim = 0;
        stream.schedule();
        assert!(
            stream.job.is_none(),
            "no interim once the voice has stopped"
        );
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        assert!(stream.spec.as_ref().unwrap().audio.is_some());
        stuck.open();
    }

    /// A speculation that speech overtook is no final, but it is the newest decode of the
    /// utterance so far: it is sent as an interim.
    #[tokio::test]
    async fn a_speculation_speech_overtook_is_sent_as_an_interim() {
        if !espeak_or_skip() {
            return;
        }
        let (gate, calls) = (Arc::new(Gate::default()), Arc::new(Mutex::new(Vec::new())));
        let mut stream = gated_stream(gate.clone(), calls, false);
        let mut audio = vec![0.0; 8_000];
        audio.extend(spoken("Hello there"));
        feed(&mut stream, &audio);
        feed_silence_until(&mut stream, |s| s.spec.is_some());
        stream.schedule();
        let job = stream.job.as_ref().expect("the speculation decodes");
        assert!(matches!(job.kind, Kind::Speculative(_)));
        feed(&mut stream, &spoken("my friend"));
        assert!(
            stream.spec.is_none(),
            "speech resumed: the speculation is void"
        );
        gate.open();
        let (io, mut peer) = SttIo::pair(8);
        let heard = stream.job.as_ref().unwrap().audio_len;
        let result = wait(&mut stream.job).await;
        assert!(stream.job_done(&io, result).await);
        match peer.events.try_recv() {
            Ok(SttEvent::Transcript(t)) => {
                assert!(!t.is_final, "{t:?}");
                assert_eq!(t.text, format!("{heard} samples"));
            }
            other => panic!("expected an interim, got {other:?}"),
        }
    }

    /// When the pause lasts, the speculative result is the final: one decode only.
    #[tokio::test]
    async fn a_speculative_final_is_used_when_the_pause_holds() {
        if !espeak_or_skip() {
            return;
        }
        let mut audio = vec![0.0; 8_000];
        audio.extend(spoken("Hello there my friend"));
        audio.extend(vec![0.0; 32_000]);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut loaded = fake_loaded(counting_decode(calls.clone()), Pool::new("test", 1, 8));
        loaded.vad = segmenter_config(&PluginConfig::default()).unwrap();
        let finals = finals_of(loaded, &audio).await;
        assert_eq!(finals.len(), 1, "{finals:?}");
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "the speculation was the final: {calls:?}");
        assert_eq!(finals[0], format!("{} samples", calls[0]));
    }

    #[tokio::test]
    async fn health_follows_the_model_and_the_queue() {
        let stt = LocalStt::default();
        assert!(
            matches!(stt.health(), HealthStatus::Unhealthy(ref r) if r.contains("not initialised")),
            "{:?}",
            stt.health()
        );
        let config = PluginConfig::from_value(
            "plugins.stt.local",
            serde_json::json!({ "models_dir": "/nonexistent/models" }),
        )
        .unwrap();
        assert!(stt.init(&PluginContext::default(), &config).await.is_err());
        match stt.health() {
            HealthStatus::Unhealthy(r) => {
                assert!(r.contains("did not load") && r.contains("model.bin"), "{r}")
            }
            other => panic!("expected Unhealthy, got {other:?}"),
        }

        let stt = LocalStt::default();
        let pool = Pool::new("whisper", 1, 1);
        let _ = stt.loaded.set(fake_loaded(instant_decode(), pool.clone()));
        assert_eq!(stt.health(), HealthStatus::Healthy);
        let gate = Arc::new(Gate::default());
        let busy = {
            let (pool, gate) = (pool.clone(), gate.clone());
            tokio::spawn(async move { pool.run(move || gate.wait()).await })
        };
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| ()).await })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        match stt.health() {
            HealthStatus::Degraded(r) => {
                assert!(r.starts_with("inference queue saturated"), "{r}")
            }
            other => panic!("expected Degraded, got {other:?}"),
        }
        gate.open();
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        assert_eq!(stt.health(), HealthStatus::Healthy);
    }

    #[tokio::test]
    async fn connect_refuses_absurd_formats_first() {
        let stt = LocalStt::default();
        for (rate, channels) in [(u32::MAX, 1), (16_000, 0), (16_000, 9), (4_000, 1)] {
            let config =
                SttSessionConfig::new("en-US", rate).with_format(AudioEncoding::Linear16, channels);
            let (io, _peer) = SttIo::pair(1);
            match stt.connect(config, io).await {
                Err(PluginError::Config(m)) => {
                    assert!(m.contains("sample rate") || m.contains("channel"), "{m}")
                }
                Err(e) => panic!("{rate} Hz x {channels}: {e}"),
                Ok(_) => panic!("{rate} Hz x {channels} accepted"),
            }
        }
    }

    /// Absurd settings are refused by name before any model is loaded (an hour-long `u64`
    /// would overflow the turn timer's `Instant`; a billion workers would size a semaphore).
    #[tokio::test]
    async fn absurd_settings_are_refused_before_the_model_loads() {
        let absurd = [
            ("workers", serde_json::json!(1_000_000_000u64)),
            ("threads", serde_json::json!(0)),
            ("max_queue", serde_json::json!(u64::MAX)),
            ("turn_silence_ms", serde_json::json!(u64::MAX)),
            ("first_interim_ms", serde_json::json!(u64::MAX)),
            ("interim_interval_ms", serde_json::json!(10)),
            ("min_window_ms", serde_json::json!(3_600_000)),
            ("interim_window_ms", serde_json::json!(-1)),
            ("silence_hangover_ms", serde_json::json!(u64::MAX)),
            ("speculative_pause_ms", serde_json::json!(1.5)),
            ("vad_threshold", serde_json::json!(7.0)),
            ("beam_size", serde_json::json!(0)),
            ("repetition_penalty", serde_json::json!(0.5)),
            ("loop_probe", serde_json::json!("yes")),
        ];
        for (key, value) in absurd {
            let mut map = serde_json::Map::new();
            map.insert("models_dir".into(), "/nonexistent/waav-models".into());
            map.insert(key.into(), value.clone());
            let config = PluginConfig::new("plugins.stt.local", map);
            let stt = LocalStt::default();
            match stt.init(&PluginContext::new("test"), &config).await {
                Err(PluginError::Config(m)) => assert!(m.contains(key), "{key}={value}: {m}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
        // In range, the same config gets as far as the missing model.
        let mut map = serde_json::Map::new();
        map.insert("models_dir".into(), "/nonexistent/waav-models".into());
        map.insert("turn_silence_ms".into(), 600_000.into());
        let config = PluginConfig::new("plugins.stt.local", map);
        match LocalStt::default()
            .init(&PluginContext::new("test"), &config)
            .await
        {
            Err(e) => assert!(!e.to_string().contains("turn_silence_ms"), "{e}"),
            Ok(()) => panic!("loaded a model from a missing directory"),
        }
    }
}
