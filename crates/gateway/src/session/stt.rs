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
    /// When the first audio went to the provider (until then, when it opened).
    opened_at: Instant,
    audio_started: bool,
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

/// Client audio kept for a replay into a reopened or next provider: the last `cap` bytes since
/// the last final, copied into one ring that grows to `cap` once and is then reused (the frames
/// themselves may pin much larger receive buffers, so they are not kept).
#[derive(Debug)]
struct Replay {
    ring: Vec<u8>,
    /// Where the oldest byte is, once the ring has wrapped.
    start: usize,
    len: usize,
    cap: usize,
    /// Replayed audio is sent in chunks of this many bytes (whole samples).
    chunk: usize,
}

impl Replay {
    fn push(&mut self, audio: &[u8]) {
        // Only the last `cap` bytes can be kept.
        let audio = &audio[audio.len().saturating_sub(self.cap)..];
        // Until the ring reaches `cap` it only grows, oldest byte at 0; memory is reserved in
        // doubling steps, never past `cap`.
        let grow = (self.cap - self.ring.len()).min(audio.len());
        if grow > 0 {
            let need = self.ring.len() + grow;
            if self.ring.capacity() < need {
                let want = (self.ring.len() * 2).max(16 * 1024).min(self.cap).max(need);
                self.ring.reserve_exact(want - self.ring.len());
            }
            self.ring.extend_from_slice(&audio[..grow]);
            self.len += grow;
        }
        let mut rest = &audio[grow..];
        if rest.is_empty() {
            return;
        }
        // Full: the newest bytes overwrite the oldest.
        let cap = self.ring.len();
        let written = rest.len();
        let mut at = (self.start + self.len) % cap;
        while !rest.is_empty() {
            let n = (cap - at).min(rest.len());
            self.ring[at..at + n].copy_from_slice(&rest[..n]);
            at = (at + n) % cap;
            rest = &rest[n..];
        }
        let total = self.len + written;
        if total > cap {
            self.start = (self.start + total - cap) % cap;
            self.len = cap;
        } else {
            self.len = total;
        }
    }

    fn clear(&mut self) {
        // The ring keeps its memory: steady state allocates nothing.
        self.ring.clear();
        (self.start, self.len) = (0, 0);
    }

    /// The kept audio, oldest first, in chunks; the ring is emptied.
    fn take(&mut self) -> Vec<Bytes> {
        let mut all = Vec::with_capacity(self.len);
        if self.len == self.ring.len() && self.start > 0 {
            all.extend_from_slice(&self.ring[self.start..]);
            all.extend_from_slice(&self.ring[..self.start]);
        } else {
            all.extend_from_slice(&self.ring[self.start..self.start + self.len]);
        }
        self.clear();
        let all = Bytes::from(all);
        (0..all.len())
            .step_by(self.chunk.max(1))
            .map(|at| all.slice(at..(at + self.chunk.max(1)).min(all.len())))
            .collect()
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
        session.vad_events = pre.as_ref().is_some_and(|p| p.reports_speech());
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
            audio_started: false,
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
        if self.sample_bytes > 1 && !audio.len().is_multiple_of(self.sample_bytes) {
            // A split sample would shift every later one: refuse the frame, keep the stream sane.
            return Err(WsError::MisalignedAudio {
                len: audio.len(),
                sample_bytes: self.sample_bytes,
            });
        }
        if let Some(r) = self.replay.as_mut() {
            r.push(&audio);
        }
        if !self.audio_started {
            self.audio_started = true;
            self.opened_at = Instant::now();
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

    /// Keeps up to `window` of client audio for a replay after a drop or a failover.
    pub fn with_replay(mut self, window: Duration) -> Self {
        let unit = self.sample_bytes.max(1);
        let per_second = self.bytes_per_second as usize;
        let cap = (u128::from(self.bytes_per_second) * window.as_millis() / 1000) as usize;
        let cap = cap / unit * unit;
        self.replay = (cap > 0).then(|| {
            Box::new(Replay {
                ring: Vec::new(),
                start: 0,
                len: 0,
                cap,
                // 20 ms per chunk, in whole samples: replayed as the live stream is framed
                // (a provider's endpointing may depend on it).
                chunk: (per_second / 50 / unit * unit).max(unit),
            })
        });
        self
    }

    /// The VAD reported speech starting (`started`) or stopping: the silent-STT watchdog (only
    /// sessions with pre-STT processors have a VAD). Speech starting makes a result owed; the
    /// first stop after it restarts the bound once, so providers that answer only after the
    /// utterance (REST ones) get it in full after the speech; nothing else moves it, so a
    /// speaker who keeps pausing cannot hide a silent provider.
    pub fn on_speech(&mut self, started: bool) {
        if let Some(pre) = self.pre.as_mut() {
            pre.unanswered_since = match (pre.unanswered_since, started) {
                (None, true) => Some((Instant::now(), false)),
                (Some((_, false)), false) => Some((Instant::now(), true)),
                (owed, _) => owed,
            };
        }
    }

    /// The provider produced a result: nothing is owed until speech starts again.
    pub fn answered(&mut self) {
        if let Some(pre) = self.pre.as_mut() {
            pre.unanswered_since = None;
        }
    }

    /// When the provider has gone `bound` without a result owed since speech began.
    pub fn silent_deadline(&self, bound: Option<Duration>) -> Option<Instant> {
        Some(self.pre.as_ref()?.unanswered_since?.0 + bound?)
    }

    /// A final arrived: the audio so far needs no replay.
    pub fn settled(&mut self) {
        if let Some(r) = self.replay.as_mut() {
            r.clear();
        }
    }

    /// The audio since the last final, for the next provider.
    pub fn take_replay(&mut self) -> Vec<Bytes> {
        self.replay.as_mut().map(|r| r.take()).unwrap_or_default()
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
        self.link.next().await
    }

    /// For the first transcript of the session: the time since the first audio was sent
    /// (recorded on `/metrics` too).
    pub fn first_result_latency(&mut self) -> Option<Duration> {
        if self.first_result || !self.audio_started {
            return None;
        }
        self.first_result = true;
        let d = self.opened_at.elapsed();
        Metrics::get().provider_latency(self.provider, "first_result", d);
        Some(d)
    }

    /// Stops the provider, aborting it after `grace`.
    pub async fn close(self, grace: Duration) {
        if let Some(pre) = &self.pre {
            pre.log_stats();
        }
        self.link.close(grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Replay;

    fn replay(cap: usize) -> Replay {
        Replay {
            ring: Vec::new(),
            start: 0,
            len: 0,
            cap,
            chunk: 4,
        }
    }

    fn joined(r: &mut Replay) -> Vec<u8> {
        r.take().iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_bytes_in_order_and_reuses_its_memory() {
        let mut r = replay(10);
        let mut all = Vec::new();
        for (i, len) in [3usize, 4, 0, 5, 9, 1, 25, 2].into_iter().enumerate() {
            let chunk: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            r.push(&chunk);
            all.extend_from_slice(&chunk);
            assert!(r.ring.capacity() <= 10, "never reserved past the cap");
            let mut probe = Replay {
                ring: r.ring.clone(),
                ..replay(10)
            };
            (probe.start, probe.len) = (r.start, r.len);
            let kept = joined(&mut probe);
            assert_eq!(kept, all[all.len().saturating_sub(10)..], "after chunk {i}");
        }
        let chunks = r.take();
        assert!(chunks.iter().all(|c| c.len() <= 4));
        let ptr = r.ring.as_ptr();
        r.push(&[1, 2, 3]);
        assert_eq!(
            r.ring.as_ptr(),
            ptr,
            "the ring's memory is reused after a take"
        );
        assert_eq!(joined(&mut r), [1, 2, 3]);
    }
}
