//! STT plugin `local`: Whisper tiny.en, made to stream.
//!
//! Whisper transcribes whole clips, so each session segments its audio with a VAD, re-decodes the
//! growing utterance at a steady cadence for interim results, decodes it once more when it ends
//! for the final result, and reports the end of the turn after a further pause. Decoding runs on
//! the bounded inference [`Pool`]; the session keeps reading audio meanwhile.

use super::input::InputConverter;
use super::pool::{default_split, Pool};
use super::settings::models_from;
use crate::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use crate::whisper::WhisperEngine;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_plugin_api::{
    AudioEncoding, Capabilities, ModelInfo, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, SttEvent, SttInput, SttIo, SttPlugin, SttSessionConfig, Transcript,
};

/// The model id clients use.
pub const MODEL_ID: &str = "whisper-tiny.en";

#[derive(Clone)]
struct Loaded {
    engine: Arc<WhisperEngine>,
    pool: Pool,
    interim_every: usize,
    turn_silence: Duration,
    vad: SegmenterConfig,
}

/// The `local` STT plugin.
#[derive(Default)]
pub struct LocalStt {
    loaded: OnceLock<Loaded>,
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
        Capabilities::new()
            .models([ModelInfo::new(
                MODEL_ID,
                "Whisper tiny.en (INT8, CTranslate2)",
            )])
            .languages(["en", "en-US", "en-GB", "en-AU", "en-IN"])
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mulaw])
            .features(true, true, true, false)
    }

    /// Config: `models_dir`, `workers`, `threads`, `max_queue` (8), `interim_interval_ms` (1000),
    /// `turn_silence_ms` (700), `vad_threshold` (0.5), `silence_hangover_ms` (500).
    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let models = models_from(config)?;
        let (def_workers, def_threads) = default_split();
        let workers = config.u64("workers")?.map_or(def_workers, |v| v as usize);
        let threads = config.u64("threads")?.map_or(def_threads, |v| v as usize);
        let max_queue = config.u64("max_queue")?.unwrap_or(8) as usize;
        let dir = models.whisper_dir();
        let engine = tokio::task::spawn_blocking(move || WhisperEngine::load(&dir, threads))
            .await
            .map_err(|e| PluginError::Panicked(e.to_string()))?
            .map_err(|e| PluginError::Config(e.to_string()))?;
        let mut vad = SegmenterConfig::default();
        if let Some(t) = config.f64("vad_threshold")? {
            vad.threshold = t as f32;
        }
        if let Some(ms) = config.u64("silence_hangover_ms")? {
            vad.silence_hangover_ms = ms as u32;
        }
        let interim_ms = config.u64("interim_interval_ms")?.unwrap_or(1000).max(100);
        let _ = self.loaded.set(Loaded {
            engine: Arc::new(engine),
            pool: Pool::new("whisper", workers, max_queue),
            interim_every: (interim_ms * 16) as usize,
            turn_silence: Duration::from_millis(config.u64("turn_silence_ms")?.unwrap_or(700)),
            vad,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl SttPlugin for LocalStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let loaded = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| PluginError::Config("local STT is not initialised".into()))?;
        if !config.language.is_empty() && !config.language.to_ascii_lowercase().starts_with("en") {
            return Err(PluginError::Config(format!(
                "whisper-tiny.en transcribes English only, not {:?}",
                config.language
            )));
        }
        let input = InputConverter::new(config.encoding, config.sample_rate, config.channels)?;
        Ok(Box::pin(Stream::new(loaded, input, io).run()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Interim,
    Final,
}

struct Job {
    kind: Kind,
    utterance: u64,
    handle: JoinHandle<Result<String, PluginError>>,
}

struct Stream {
    loaded: Loaded,
    input: InputConverter,
    io: SttIo,
    segmenter: Segmenter,
    /// 16 kHz audio of the utterance in progress (for interim decodes).
    current: Vec<f32>,
    since_interim: usize,
    utterance: u64,
    /// Utterances that ended and wait for their final decode, oldest first.
    finals: std::collections::VecDeque<(u64, Vec<f32>)>,
    job: Option<Job>,
    /// A final with words was sent in this turn (an end of turn follows only such a turn).
    turn_open: bool,
    turn_deadline: Option<tokio::time::Instant>,
    scratch: Vec<f32>,
}

impl Stream {
    fn new(loaded: Loaded, input: InputConverter, io: SttIo) -> Self {
        let segmenter = Segmenter::new(loaded.vad.clone());
        Self {
            loaded,
            input,
            io,
            segmenter,
            current: Vec::new(),
            since_interim: 0,
            utterance: 0,
            finals: Default::default(),
            job: None,
            turn_open: false,
            turn_deadline: None,
            scratch: Vec::new(),
        }
    }

    async fn run(mut self) -> Result<(), PluginError> {
        let mut input_open = true;
        loop {
            if !input_open && self.job.is_none() && self.finals.is_empty() {
                return Ok(());
            }
            let deadline = self.turn_deadline;
            tokio::select! {
                msg = self.io.input.recv(), if input_open => match msg {
                    Some(SttInput::Audio(bytes)) => self.on_audio(&bytes),
                    Some(SttInput::Finalize) => self.end_utterance(),
                    None => {
                        input_open = false;
                        self.end_utterance();
                    }
                },
                result = wait(&mut self.job) => {
                    let job = self.job.take().expect("a job was running");
                    if !self.on_decoded(job.kind, job.utterance, result).await {
                        return Ok(());
                    }
                }
                () = sleep_until(deadline) => {
                    self.turn_deadline = None;
                    if self.turn_open {
                        self.turn_open = false;
                        if self.io.events.send(SttEvent::UtteranceEnd).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            self.schedule();
        }
    }

    fn on_audio(&mut self, bytes: &[u8]) {
        self.scratch.clear();
        self.input.push(bytes, &mut self.scratch);
        let samples = std::mem::take(&mut self.scratch);
        for ev in self.segmenter.push_f32(&samples) {
            match ev {
                SegmentEvent::SpeechStarted => {
                    self.utterance += 1;
                    self.current.clear();
                    self.since_interim = 0;
                    self.turn_deadline = None;
                }
                SegmentEvent::SpeechEnded { samples } => {
                    self.finals.push_back((self.utterance, samples));
                    self.current.clear();
                }
            }
        }
        if self.segmenter.in_speech() {
            self.current.extend_from_slice(&samples);
            self.since_interim += samples.len();
        }
        self.scratch = samples;
    }

    fn end_utterance(&mut self) {
        if let Some(SegmentEvent::SpeechEnded { samples }) = self.segmenter.flush() {
            self.finals.push_back((self.utterance, samples));
            self.current.clear();
        }
    }

    /// Starts the next decode if none is running: finals first, then an interim when due.
    fn schedule(&mut self) {
        if self.job.is_some() {
            return;
        }
        if let Some((utterance, audio)) = self.finals.pop_front() {
            self.job = Some(self.spawn(Kind::Final, utterance, audio));
        } else if self.segmenter.in_speech() && self.since_interim >= self.loaded.interim_every {
            self.since_interim = 0;
            let audio = self.current.clone();
            self.job = Some(self.spawn(Kind::Interim, self.utterance, audio));
        }
    }

    fn spawn(&self, kind: Kind, utterance: u64, audio: Vec<f32>) -> Job {
        let engine = self.loaded.engine.clone();
        let pool = self.loaded.pool.clone();
        let handle = tokio::spawn(async move {
            pool.run(move || engine.transcribe(&audio))
                .await?
                .map_err(|e| PluginError::Transient(e.to_string()))
        });
        Job {
            kind,
            utterance,
            handle,
        }
    }

    /// Reports a decode. `false` when the host hung up.
    async fn on_decoded(
        &mut self,
        kind: Kind,
        utterance: u64,
        result: Result<String, PluginError>,
    ) -> bool {
        let text = match result {
            Ok(t) => t.trim().to_owned(),
            // A refused interim is simply skipped; a lost final is reported.
            Err(_) if kind == Kind::Interim => return true,
            Err(e) => return self.io.events.send(SttEvent::Error(e)).await.is_ok(),
        };
        let event = match kind {
            // An interim for an utterance that already ended (or has a final queued) is stale.
            Kind::Interim if utterance != self.utterance || !self.segmenter.in_speech() => {
                return true
            }
            Kind::Interim if text.is_empty() => return true,
            Kind::Interim => Transcript::interim(text, 0.5),
            Kind::Final => {
                if !text.is_empty() {
                    self.turn_open = true;
                }
                if !self.segmenter.in_speech() && self.finals.is_empty() {
                    self.turn_deadline =
                        Some(tokio::time::Instant::now() + self.loaded.turn_silence);
                }
                Transcript::final_result(text, 0.9, false)
            }
        };
        self.io
            .events
            .send(SttEvent::Transcript(event))
            .await
            .is_ok()
    }
}

async fn wait(job: &mut Option<Job>) -> Result<String, PluginError> {
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
