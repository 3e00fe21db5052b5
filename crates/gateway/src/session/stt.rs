//! A session's link to its STT provider: opening it, feeding audio, reading events.

use super::errors::WsError;
use super::link::{connect_error, Link, SendError, Signal};
use super::pre_stt::{PreStt, TimedEvent};
use super::protocol::SttConfig;
use crate::audio::{negotiate, Bridge};
use crate::isolation::guard;
use crate::metrics::Metrics;
use crate::pipeline::{AudioPipeline, Disabled};
use crate::registry::Registry;
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, ProcessorContext, ProcessorEvent, Stage, SttEvent, SttInput, SttIo,
    SttSessionConfig, VadEvent,
};

/// Audio chunks buffered towards the provider (about 1.3 s of 20 ms frames).
const INPUT_CAPACITY: usize = 64;
/// How long a full provider queue may hold up the session before audio is dropped.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(500);

/// An open STT provider session.
#[derive(Debug)]
pub struct SttLink {
    /// Provider id (for `provider` in results, metrics, errors).
    pub provider: &'static str,
    link: Link<SttInput, SttEvent>,
    opened_at: Instant,
    first_result: bool,
    /// Bytes of one sample across all channels (0: compressed, any size goes).
    sample_bytes: usize,
    /// Converts the client's audio into the format the provider takes, with the converted
    /// chunks of one frame (reused); `None` when the provider takes the client's format as is
    /// (boxed: idle sessions are counted in bytes).
    convert: Option<Box<(Bridge, Vec<Bytes>)>>,
    /// The session's pre-STT processors, when it has any (boxed: most sessions have none).
    pre: Option<Box<PreStt>>,
    /// Client audio since the last final, for a failover (only with a fallback left).
    replay: Option<Box<Replay>>,
    /// Bytes of client audio per second (0: compressed, replay off).
    bytes_per_second: u32,
    /// Since when audio has been dropped because the provider is not reading.
    behind_since: Option<Instant>,
    stall: Duration,
}

/// Client audio kept for a failover replay: shared with the frames sent (not copied), bounded.
#[derive(Debug)]
struct Replay {
    chunks: std::collections::VecDeque<Bytes>,
    bytes: usize,
    cap: usize,
}

impl Replay {
    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
        while self.bytes > self.cap {
            let Some(old) = self.chunks.pop_front() else {
                break;
            };
            self.bytes -= old.len();
        }
    }
}

/// What the provider side produced.
pub type SttSignal = Signal<SttEvent>;

impl SttLink {
    /// Resolves, validates and connects the provider named in `cfg`.
    pub async fn open(
        registry: &Registry,
        cfg: &SttConfig,
        connect_timeout: Duration,
        stall: Duration,
    ) -> Result<Self, WsError> {
        let invalid = |message: String| WsError::InvalidConfig {
            section: "stt_config",
            message,
        };
        cfg.validate().map_err(invalid)?;
        let encoding: AudioEncoding = cfg.encoding.parse().map_err(|e| invalid(format!("{e}")))?;
        let p = registry.stt_with(
            &cfg.provider,
            crate::registry::ClientCredentials::new(&cfg.api_key, &cfg.credentials),
        )?;
        let caps = p.entry.capabilities();
        let client = AudioFormat {
            encoding,
            sample_rate: cfg.sample_rate,
            channels: cfg.channels,
        };
        let taken = caps
            .check_model(&cfg.model)
            .and_then(|()| negotiate::stt_input(&caps, client))
            .map_err(invalid)?;
        let names = cfg
            .pipeline
            .as_ref()
            .unwrap_or(&registry.pipelines().default_stt_pre);
        let pre = if names.is_empty() {
            None
        } else {
            let ctx = ProcessorContext::new(Stage::PreStt, client.sample_rate, client.channels);
            let pipeline = AudioPipeline::build(registry, names, ctx).map_err(invalid)?;
            Some(Box::new(
                PreStt::new(client, taken, pipeline)
                    .await
                    .map_err(|e| invalid(e.to_string()))?,
            ))
        };
        let audio = Bridge::build(client, taken, 0)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let provider = p.entry.id;
        let mut session = SttSessionConfig::new(cfg.language.clone(), taken.sample_rate)
            .with_model(cfg.model.clone())
            .with_api_key(p.api_key)
            .with_credentials(p.credentials)
            .with_format(taken.encoding, taken.channels)
            .with_plugin_config(p.entry.plugin_config());
        session.punctuation = cfg.punctuation;
        let (io, peer) = SttIo::pair(INPUT_CAPACITY);
        let started = Instant::now();
        let what = format!("STT provider {provider} connect");
        let task = guard(&what, connect_timeout, p.plugin.connect(session, io))
            .await
            .map_err(|e| connect_error("STT", provider, e))?;
        Metrics::get().provider_latency(provider, "connect", started.elapsed());
        Ok(Self {
            provider,
            link: Link::spawn(peer, task),
            opened_at: Instant::now(),
            first_result: false,
            sample_bytes: encoding.bytes_per_sample().unwrap_or(0) * usize::from(cfg.channels),
            convert: (!audio.is_passthrough()).then(|| Box::new((audio, Vec::new()))),
            pre,
            replay: None,
            bytes_per_second: (client.frame_bytes().unwrap_or(0) as u32)
                .saturating_mul(client.sample_rate),
            behind_since: None,
            stall,
        })
    }

    /// Forwards one chunk of client audio. Waits briefly when the provider is behind; past that
    /// the chunk is dropped and reported. A provider that has not read for the stall bound is
    /// reported as stalled (the session then disconnects it).
    pub async fn send_audio(&mut self, audio: Bytes) -> Result<(), WsError> {
        if let Some(r) = self.replay.as_mut() {
            r.push(audio.clone());
        }
        if self.sample_bytes > 1 && !audio.len().is_multiple_of(self.sample_bytes) {
            // A split sample would shift every later one: refuse the frame, keep the stream sane.
            return Err(WsError::MisalignedAudio {
                len: audio.len(),
                sample_bytes: self.sample_bytes,
            });
        }
        if let Some(pre) = self.pre.as_mut() {
            let mut chunks = std::mem::take(&mut pre.out);
            let before = pre.events.len();
            if let Err(e) = pre.process(audio, &mut chunks).await {
                pre.out = chunks;
                return Err(WsError::InvalidConfig {
                    section: "stt_config",
                    message: e.to_string(),
                });
            }
            // Speech boundaries go to the provider right after the audio they close (no
            // allocation unless there is one).
            let vad: Vec<VadEvent> = pre.events[before..]
                .iter()
                .filter_map(|&(e, at_ms)| match e {
                    ProcessorEvent::SpeechStarted => Some(VadEvent::SpeechStarted { at_ms }),
                    ProcessorEvent::SpeechEnded => Some(VadEvent::SpeechEnded { at_ms }),
                    _ => None,
                })
                .collect();
            let result = self.forward_all(&mut chunks).await;
            let mut result = result;
            for v in vad {
                if result.is_ok() {
                    result = self.forward(SttInput::Vad(v)).await;
                }
            }
            if let Some(pre) = self.pre.as_mut() {
                pre.out = chunks;
            }
            return result;
        }
        let Some(convert) = self.convert.as_mut() else {
            return self.forward(SttInput::Audio(audio)).await;
        };
        let mut chunks = std::mem::take(&mut convert.1);
        convert.0.push(audio, &mut |c| chunks.push(c));
        let result = self.forward_all(&mut chunks).await;
        if let Some(convert) = self.convert.as_mut() {
            convert.1 = chunks;
        }
        result
    }

    /// Forwards every chunk (stopping at the first failure), leaving `chunks` empty.
    async fn forward_all(&mut self, chunks: &mut Vec<Bytes>) -> Result<(), WsError> {
        let mut result = Ok(());
        for c in chunks.drain(..) {
            if result.is_ok() {
                result = self.forward(SttInput::Audio(c)).await;
            }
        }
        result
    }

    /// Keeps up to `window` of client audio for a failover replay.
    pub fn with_replay(mut self, window: Duration) -> Self {
        let cap = (u128::from(self.bytes_per_second) * window.as_millis() / 1000) as usize;
        self.replay = (cap > 0).then(|| {
            Box::new(Replay {
                chunks: std::collections::VecDeque::new(),
                bytes: 0,
                cap,
            })
        });
        self
    }

    /// A final arrived: the audio so far needs no replay.
    pub fn settled(&mut self) {
        if let Some(r) = self.replay.as_mut() {
            r.chunks.clear();
            r.bytes = 0;
        }
    }

    /// The audio since the last final, for the next provider.
    pub fn take_replay(&mut self) -> Vec<Bytes> {
        self.replay
            .as_mut()
            .map(|r| {
                r.bytes = 0;
                r.chunks.drain(..).collect()
            })
            .unwrap_or_default()
    }

    /// Takes what the pre-STT processors reported since the last call (events, and a
    /// processor disabled), leaving an empty buffer (see [`Self::return_processor_events`]).
    pub fn take_processor_news(&mut self) -> (Vec<TimedEvent>, Option<Disabled>) {
        match self.pre.as_mut() {
            Some(pre) if !pre.events.is_empty() || !pre.disabled.is_empty() => {
                (std::mem::take(&mut pre.events), pre.disabled.pop())
            }
            _ => (Vec::new(), None),
        }
    }

    /// Gives back the emptied event buffer so the next frame reuses its capacity.
    pub fn return_processor_events(&mut self, events: Vec<TimedEvent>) {
        if let Some(pre) = self.pre.as_mut() {
            if pre.events.is_empty() {
                pre.events = events;
            }
        }
    }

    async fn forward(&mut self, input: SttInput) -> Result<(), WsError> {
        let wait = BACKPRESSURE_WAIT.min(self.stall);
        match self.link.send_within(input, wait).await {
            Ok(()) | Err(SendError::Gone) => {
                // A provider that ended reports it through `next`.
                self.behind_since = None;
                Ok(())
            }
            Err(SendError::Stalled) => {
                let since = *self.behind_since.get_or_insert_with(Instant::now);
                if since.elapsed() + wait >= self.stall {
                    Err(WsError::ProviderStalled {
                        role: "STT",
                        provider: self.provider,
                    })
                } else {
                    Err(WsError::SttBackpressure(self.provider))
                }
            }
        }
    }

    /// The next event, or the provider's end once its events are drained.
    pub async fn next(&mut self) -> SttSignal {
        let signal = self.link.next().await;
        if matches!(signal, Signal::Event(_)) && !self.first_result {
            self.first_result = true;
            Metrics::get().provider_latency(
                self.provider,
                "first_result",
                self.opened_at.elapsed(),
            );
        }
        signal
    }

    /// Stops the provider, aborting it after `grace`.
    pub async fn close(self, grace: Duration) {
        if let Some(pre) = &self.pre {
            pre.log_stats();
        }
        self.link.close(grace).await;
    }
}
