//! A session's link to its TTS provider: the speak queue, cache, `clear` and interruption rules,
//! and the conversion of the provider's audio into the client's format.
//!
//! Requests are answered strictly in order. A flushed `speak` is sent to the provider one
//! sentence per request ([`sentence_segments`]): the first sentence's audio does not wait for
//! the rest, each sentence is cached on its own, and a failover resumes at the sentence not yet
//! spoken. A `speak` with `flush: false` is the client's own chunk of streamed text and goes as
//! it is. A cache hit waits its turn behind earlier requests
//! and is then streamed in the session's framing. `tts_playback_complete` is sent once the
//! queue drains, after the last binary frame. Audio passes one [`Bridge`] per session, so
//! resampling is continuous across requests and a WAV stream has one header.

mod driver;
mod hedge;

pub(crate) use hedge::attach as attach_hedge;
pub use hedge::{HedgeOutcome, HedgeWake, TtsNext};

use super::errors::WsError;
use super::link::{connect_error, Link, SendError, Signal};
use super::outbound::Outbound;
use super::post_tts::ClientAudio;
use super::protocol::{now_ms, ServerMessage, TtsConfig};
use crate::audio::negotiate;
use crate::cache::{CacheKey, CachedAudio, TtsCache};
use crate::isolation::guard;
use crate::metrics::Metrics;
use crate::pipeline::AudioPipeline;
use crate::registry::Registry;
use crate::resilience::TtsWatchdogs;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use waav_plugin_api::sentences::sentence_segments;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, Emotion, PluginError, Pronunciation, SpeakRequest, TtsEvent,
    TtsInput, TtsIo, TtsSessionConfig,
};

/// The largest magnitude among the PCM16LE samples of `data` (a trailing odd byte ignored).
fn peak16(data: &[u8]) -> u16 {
    data.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
        .max()
        .unwrap_or(0)
}

/// Cache fills stop collecting past this size (the cache would refuse it anyway).
const MAX_COLLECT: usize = 8 * 1024 * 1024;

/// Provider requests one `speak` is cut into at most (the last takes the remaining sentences).
const MAX_SEGMENTS: usize = 16;

/// Builds the provider-facing config from the client's `tts_config`.
pub fn session_config(cfg: &TtsConfig) -> Result<TtsSessionConfig, WsError> {
    let invalid = |message: String| WsError::InvalidConfig {
        section: "tts_config",
        message,
    };
    cfg.validate().map_err(invalid)?;
    let encoding: AudioEncoding = cfg
        .audio_format
        .as_deref()
        .unwrap_or("linear16")
        .parse()
        .map_err(|e| invalid(format!("{e}")))?;
    let mut s = TtsSessionConfig::new(encoding, cfg.sample_rate.unwrap_or(24_000))
        .with_voice(cfg.voice_id.clone().unwrap_or_default())
        .with_model(cfg.model.clone());
    s.speaking_rate = cfg.speaking_rate.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&s.speaking_rate) {
        return Err(invalid(format!(
            "speaking_rate {} out of range 0.25–4.0",
            s.speaking_rate
        )));
    }
    s.pronunciations = cfg
        .pronunciations
        .iter()
        .map(|p| Pronunciation {
            word: p.word.clone(),
            pronunciation: p.pronunciation.clone(),
        })
        .collect();
    let intensity = match &cfg.emotion_intensity {
        None => None,
        Some(super::protocol::Intensity::Number(n)) if (0.0..=1.0).contains(n) => Some(*n),
        Some(super::protocol::Intensity::Level(l)) => Some(match l.as_str() {
            "low" => 0.3,
            "medium" => 0.6,
            "high" => 0.9,
            other => {
                return Err(invalid(format!(
                    "emotion_intensity {other:?} must be 0–1, low, medium or high"
                )))
            }
        }),
        Some(super::protocol::Intensity::Number(n)) => {
            return Err(invalid(format!(
                "emotion_intensity {n} must be between 0 and 1"
            )))
        }
    };
    s.emotion = Emotion {
        emotion: cfg.emotion.clone(),
        intensity,
        delivery_style: cfg.delivery_style.clone(),
        description: cfg.emotion_description.clone(),
    };
    Ok(s)
}

/// The text a provider is asked to speak: `text` with the session's pronunciations applied. The
/// host does this for every provider (plugins receive the rewritten text), off the runtime when
/// there is any work: it is linear in text × pronunciations, both client-controlled.
pub async fn spoken_text(cfg: &TtsSessionConfig, text: String) -> Result<String, PluginError> {
    if cfg.pronunciations.is_empty() {
        return Ok(text);
    }
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || cfg.apply_pronunciations(&text))
        .await
        .map_err(|e| PluginError::Transient(format!("pronunciation pass failed: {e}")))
}

/// The connect and per-request deadlines for `cfg`: the client's `connection_timeout` (never
/// above the server's provider connect timeout) and `request_timeout` (default 60 s).
pub fn timeouts(
    cfg: &TtsConfig,
    settings: &crate::config::SessionSettings,
) -> (Duration, Duration) {
    let server = Duration::from_secs(settings.provider_connect_timeout_secs);
    let connect = cfg
        .connection_timeout
        .map_or(server, |s| Duration::from_secs(s.max(1)))
        .min(server);
    (
        connect,
        Duration::from_secs(cfg.request_timeout.unwrap_or(60).max(1)),
    )
}

/// An open TTS provider session (used by `/ws` sessions and by `POST /speak`).
#[derive(Debug)]
pub struct TtsProvider {
    /// Provider id.
    pub provider: &'static str,
    /// The settings it was opened with (its format is the plugin's side of the bridge).
    pub config: TtsSessionConfig,
    /// The format the client asked for.
    pub client: AudioFormat,
    /// Converts the provider's audio into the client's (through the post-TTS processors).
    pub audio: ClientAudio,
    link: Link<TtsInput, TtsEvent>,
}

/// What the provider side produced.
pub type TtsSignal = Signal<TtsEvent>;

impl TtsProvider {
    /// Resolves, validates and connects the provider for `cfg`; PCM frames to the client carry
    /// `frame_ms` of audio.
    pub async fn open(
        registry: &Registry,
        cfg: &TtsConfig,
        connect_timeout: Duration,
        input_capacity: usize,
        frame_ms: u32,
    ) -> Result<Self, WsError> {
        let mut session = session_config(cfg)?;
        let p = registry.tts_with(
            &cfg.provider,
            crate::registry::ClientCredentials::new(&cfg.api_key, &cfg.credentials),
        )?;
        let invalid = |message: String| WsError::InvalidConfig {
            section: "tts_config",
            message,
        };
        let client = AudioFormat {
            encoding: session.encoding,
            sample_rate: session.sample_rate,
            channels: 1,
        };
        let caps = p.entry.capabilities();
        let produced = caps
            .check_model(&session.model)
            .and_then(|()| caps.check_voice(&session.voice_id))
            .and_then(|()| negotiate::tts_output(&caps, client))
            .map_err(invalid)?;
        session.encoding = produced.encoding;
        session.sample_rate = produced.sample_rate;
        let frame_samples = (u64::from(client.sample_rate) * u64::from(frame_ms) / 1000) as usize;
        let frame_bytes = client.frame_bytes().map_or(0, |b| b * frame_samples.max(1));
        let names = cfg
            .pipeline
            .as_ref()
            .unwrap_or(&registry.pipelines().default_tts_post);
        let pipeline = if names.is_empty() {
            None
        } else {
            let ctx = waav_plugin_api::ProcessorContext::new(
                waav_plugin_api::Stage::PostTts,
                client.sample_rate,
                1,
            );
            Some(AudioPipeline::build(registry, names, ctx).map_err(invalid)?)
        };
        let audio = ClientAudio::build(produced, client, frame_bytes, pipeline)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let provider = p.entry.id;
        session = session
            .with_api_key(p.api_key)
            .with_credentials(p.credentials)
            .with_plugin_config(p.entry.plugin_config());
        let capacity = input_capacity.max(1);
        let started = Instant::now();
        let what = format!("TTS provider {provider} connect");
        let plugin = p.plugin.clone();
        let opening = async {
            plugin.prepare(&session).await?;
            let (io, peer) = TtsIo::pair(capacity);
            Ok(match plugin.open_stream(&session, io).await? {
                Some(task) => (task, peer),
                None => {
                    let (io, peer) = TtsIo::pair(capacity);
                    (driver::run(plugin.clone(), session.clone(), io), peer)
                }
            })
        };
        let (task, peer) = guard(&what, connect_timeout, opening)
            .await
            .map_err(|e| connect_error("TTS", provider, e))?;
        Metrics::get().provider_latency(provider, "connect", started.elapsed());
        Ok(Self {
            provider,
            config: session,
            client,
            audio,
            link: Link::spawn(peer, task),
        })
    }

    /// The cache key of `text` spoken in this session.
    pub fn cache_key(&self, text: &str) -> CacheKey {
        CacheKey::new(self.provider, &self.config, self.client, text)
    }

    /// Sends a request or a cancel to the provider, waiting at most `stall` for room.
    pub async fn send(&self, input: TtsInput, stall: Duration) -> Result<(), SendError> {
        self.link.send_within(input, stall).await
    }

    /// The next event, or the provider's end once its events are drained.
    pub async fn next(&mut self) -> TtsSignal {
        self.link.next().await
    }

    /// Stops the provider, aborting it after `grace`.
    pub async fn close(self, grace: Duration) {
        self.link.close(grace).await;
    }
}

#[derive(Debug)]
struct Pending {
    id: u64,
    /// The request's text as the client sent it (a failover speaks it again).
    text: String,
    interruptible: bool,
    flush: bool,
    /// Whether this request ends the client's `speak` (its sentences share one `speak`).
    last: bool,
    cached: Option<Arc<CachedAudio>>,
    key: CacheKey,
    collected: Vec<u8>,
    frame_bytes: usize,
    started: Instant,
    first_byte: bool,
    /// Provider audio bytes received, and their PCM peak (the silent-audio watchdog).
    audio_bytes: usize,
    peak: u16,
}

/// The unfinished part of a TTS link (see [`TtsLink::into_unfinished`]).
#[derive(Debug)]
pub struct Unfinished {
    requests: Vec<Segment>,
    header_sent: bool,
    playing_until: Instant,
    audio_until: Instant,
}

/// One provider request: a sentence (or the whole text) of a client's `speak`.
#[derive(Debug)]
struct Segment {
    text: String,
    flush: bool,
    interruptible: bool,
    /// Whether it ends the client's `speak`.
    last: bool,
}

impl From<Pending> for Segment {
    fn from(p: Pending) -> Self {
        Self {
            text: p.text,
            flush: p.flush,
            interruptible: p.interruptible,
            last: p.last,
        }
    }
}

/// A segment ready to queue: its cache hit, or the text the provider is to speak.
struct Prepared {
    segment: Segment,
    key: CacheKey,
    cached: Option<Arc<CachedAudio>>,
    spoken: Option<String>,
}

/// Bounds of one session's TTS queue and of its provider's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtsLimits {
    /// Client `speak`s queued or in flight.
    pub max_requests: usize,
    /// Bytes of text queued or in flight.
    pub max_bytes: usize,
    /// How long the provider may leave its input unread.
    pub stall: Duration,
}

impl TtsLimits {
    /// Input channel capacity for a provider under these limits: room for every request the
    /// host lets queue (each `speak` up to [`MAX_SEGMENTS`]) plus a cancel for each `speak`,
    /// so a provider that reads lazily but does read never looks stalled. (tokio allocates
    /// channel blocks lazily; a large bound costs nothing.)
    pub fn input_capacity(&self) -> usize {
        self.max_requests
            .saturating_mul(MAX_SEGMENTS + 1)
            .saturating_add(2)
    }

    /// The limits from the session settings.
    pub fn from_settings(s: &crate::config::SessionSettings) -> Self {
        Self {
            max_requests: s.max_queued_speaks,
            max_bytes: s.max_queued_speak_bytes,
            stall: Duration::from_millis(s.provider_stall_ms),
        }
    }
}

/// The TTS half of a `/ws` session.
#[derive(Debug)]
pub struct TtsLink {
    provider: TtsProvider,
    /// Frames converted from one provider chunk, reused.
    frames: Vec<Bytes>,
    request_timeout: Duration,
    limits: TtsLimits,
    next_id: u64,
    queue: VecDeque<Pending>,
    /// Non-interruptible audio is being played until then.
    playing_until: Instant,
    /// Any audio sent is being played until then (estimated).
    audio_until: Instant,
    last_progress: Instant,
    cache_fill: bool,
    watchdogs: TtsWatchdogs,
    /// The latest request's first-byte time, until the session takes it.
    first_byte: Option<Duration>,
    /// Hedged first byte, when the session asked for it (boxed: most sessions do not).
    hedge: Option<Box<hedge::Hedge>>,
}

/// The head request failed in a way the chain may cure: a retryable provider error, or what a
/// watchdog found (a failure no error reported).
#[derive(Debug)]
pub struct Tripped {
    /// Which watchdog (`first_byte`, `empty_audio`, `silent_audio`); `None` for an error.
    pub watchdog: Option<&'static str>,
    /// The failure, for the breaker, the failover and the client.
    pub error: PluginError,
}

impl TtsLink {
    /// Wraps an open provider.
    pub fn new(
        provider: TtsProvider,
        request_timeout: Duration,
        limits: TtsLimits,
        cache_fill: bool,
    ) -> Self {
        let processed = matches!(provider.audio, ClientAudio::Processed(_));
        Self {
            provider,
            frames: Vec::new(),
            request_timeout,
            limits,
            next_id: 1,
            queue: VecDeque::new(),
            playing_until: Instant::now(),
            audio_until: Instant::now(),
            last_progress: Instant::now(),
            // Processed audio depends on the processors' state (an AGC's gain, a denoiser's
            // history): it is neither served from the cache nor stored in it.
            cache_fill: cache_fill && !processed,
            watchdogs: TtsWatchdogs::default(),
            first_byte: None,
            hedge: None,
        }
    }

    /// The first-byte time of the latest request that had one since the last call.
    pub fn take_first_byte(&mut self) -> Option<Duration> {
        self.first_byte.take()
    }

    /// Arms the silent-failure watchdogs.
    pub fn with_watchdogs(mut self, watchdogs: TtsWatchdogs) -> Self {
        self.watchdogs = watchdogs;
        self
    }

    /// Provider id.
    pub fn provider_id(&self) -> &'static str {
        self.provider.provider
    }

    /// Queues `text` (one request per sentence when `flush`). Cache hits wait for earlier
    /// requests, then stream from memory.
    pub async fn speak(
        &mut self,
        text: String,
        flush: bool,
        interruptible: bool,
        cache: &TtsCache,
        out: &Outbound,
    ) -> Result<(), WsError> {
        let queued = self.queue.iter().filter(|p| p.last).count();
        let queued_bytes: usize = self.queue.iter().map(|p| p.text.len()).sum();
        if queued >= self.limits.max_requests || queued_bytes + text.len() > self.limits.max_bytes {
            return Err(WsError::TtsQueueFull {
                queued,
                bytes: queued_bytes,
                max_requests: self.limits.max_requests,
                max_bytes: self.limits.max_bytes,
            });
        }
        let segments: Vec<Segment> = match flush {
            true => {
                let pieces = sentence_segments(&text, MAX_SEGMENTS);
                let n = pieces.len();
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, piece)| Segment {
                        text: piece.to_owned(),
                        flush,
                        interruptible,
                        last: i + 1 == n,
                    })
                    .collect()
            }
            false => vec![Segment {
                text,
                flush,
                interruptible,
                last: true,
            }],
        };
        self.enqueue(segments, cache, out).await
    }

    /// Continues the requests a failed link left unfinished (admitted there already), in order.
    pub async fn resume(
        &mut self,
        old: Unfinished,
        cache: &TtsCache,
        out: &Outbound,
    ) -> Result<(), WsError> {
        self.enqueue(old.requests, cache, out).await
    }

    /// Looks up, rewrites, queues and sends `segments`. Every segment is rewritten before any is
    /// queued, so a failure leaves the queue untouched; once queued, a segment the provider
    /// cannot take stays queued for the failover to speak.
    async fn enqueue(
        &mut self,
        segments: Vec<Segment>,
        cache: &TtsCache,
        out: &Outbound,
    ) -> Result<(), WsError> {
        let m = Metrics::get();
        let mut prepared = Vec::with_capacity(segments.len());
        for segment in segments {
            let key = self.provider.cache_key(&segment.text);
            let cached = if self.cache_fill {
                cache.get(key).await
            } else {
                None
            };
            if cached.is_some() {
                m.cache_hits.increment(1);
            } else {
                m.cache_misses.increment(1);
            }
            let spoken = match cached {
                Some(_) => None,
                None => Some(
                    spoken_text(&self.provider.config, segment.text.clone())
                        .await
                        .map_err(|error| WsError::Provider {
                            role: "TTS",
                            provider: self.provider.provider,
                            error,
                        })?,
                ),
            };
            prepared.push(Prepared {
                segment,
                key,
                cached,
                spoken,
            });
        }
        if self.queue.is_empty() {
            self.last_progress = Instant::now();
        }
        // Until the provider refuses one: then the rest is only queued.
        let mut sending = true;
        let mut stalled = false;
        for Prepared {
            segment,
            key,
            cached,
            spoken,
        } in prepared
        {
            let id = self.next_id;
            self.next_id += 1;
            let flush = segment.flush;
            self.queue.push_back(Pending {
                id,
                text: segment.text,
                interruptible: segment.interruptible,
                flush,
                last: segment.last,
                cached,
                key,
                collected: Vec::new(),
                frame_bytes: 0,
                started: Instant::now(),
                first_byte: false,
                audio_bytes: 0,
                peak: 0,
            });
            let Some(text) = spoken.filter(|_| sending) else {
                continue;
            };
            self.hedge_request(id, &text, flush);
            let req = SpeakRequest { id, text, flush };
            match self
                .provider
                .send(TtsInput::Speak(req), self.limits.stall)
                .await
            {
                Ok(()) => {}
                // The provider is gone; its end arrives through `next` and is reported there.
                Err(SendError::Gone) => sending = false,
                Err(SendError::Stalled) => {
                    sending = false;
                    stalled = true;
                }
            }
            if sending {
                // A new race has no failure of the provider yet.
                let _ = self.hedge_send().await;
            }
        }
        if stalled {
            return Err(self.stalled());
        }
        if !sending {
            return Ok(());
        }
        if self.drain_cached(out).await && self.queue.is_empty() {
            out.send(ServerMessage::TtsPlaybackComplete {
                timestamp: now_ms(),
            })
            .await;
        }
        Ok(())
    }

    /// Handles one provider event (a failed request is reported before the queue moves on).
    /// A request that ends with no audio, or only silence, is left at the head and returned
    /// as tripped: the caller fails over, or fails it with [`fail_head`](Self::fail_head).
    pub async fn on_event(
        &mut self,
        ev: TtsEvent,
        cache: &TtsCache,
        out: &Outbound,
    ) -> Option<Tripped> {
        let head = self.queue.front().map(|p| p.id);
        let pcm16 = self.provider.config.encoding == AudioEncoding::Linear16;
        match ev {
            TtsEvent::Audio { id, data } if Some(id) == head => {
                self.last_progress = Instant::now();
                let p = self.queue.front_mut().expect("head exists");
                p.audio_bytes += data.len();
                if pcm16 && p.peak <= self.watchdogs.silent_peak {
                    p.peak = p.peak.max(peak16(&data));
                }
                if !p.first_byte {
                    p.first_byte = true;
                    let d = p.started.elapsed();
                    Metrics::get().provider_latency(self.provider.provider, "tts_first_byte", d);
                    self.first_byte = Some(d);
                    self.hedge_first_byte(id);
                }
                let mut frames = std::mem::take(&mut self.frames);
                self.provider.audio.push(data, &mut |f| frames.push(f));
                self.play_frames(&mut frames, out).await;
                self.frames = frames;
                if let Some(d) = self.provider.audio.take_disabled() {
                    let e = WsError::ProcessorFailed {
                        name: d.name,
                        error: d.error,
                    };
                    out.send(e.into()).await;
                }
            }
            // Audio for a cleared (or unknown) request is dropped.
            TtsEvent::Audio { .. } => {}
            TtsEvent::Done { id } if Some(id) == head => {
                let p = self.queue.front().expect("head exists");
                let speakable = p.text.chars().any(char::is_alphanumeric);
                let tripped = if p.audio_bytes == 0 && speakable {
                    Some(("empty_audio", "the request ended with no audio"))
                } else if pcm16 && speakable && p.peak <= self.watchdogs.silent_peak {
                    Some(("silent_audio", "the request ended with only silence"))
                } else {
                    None
                };
                if let Some((watchdog, what)) = tripped {
                    let tripped = Tripped {
                        watchdog: Some(watchdog),
                        error: PluginError::Transient(what.into()),
                    };
                    // No audio at all: a hedge partner still racing may answer instead.
                    if p.audio_bytes == 0 && self.hedge_covers(id) {
                        self.hedge_primary_failed(tripped);
                        return None;
                    }
                    return Some(tripped);
                }
                // Back-to-back requests share the resampler's state (continuous audio); when
                // no provider audio follows at once, what it still holds is this request's end.
                let continues = self.queue.get(1).is_some_and(|n| n.cached.is_none());
                if !continues {
                    let mut frames = std::mem::take(&mut self.frames);
                    self.provider.audio.flush(&mut |f| frames.push(f));
                    self.play_frames(&mut frames, out).await;
                    self.frames = frames;
                }
                let p = self.queue.pop_front().expect("head exists");
                if self.cache_fill && !p.collected.is_empty() && p.collected.len() <= MAX_COLLECT {
                    cache.insert(
                        p.key,
                        CachedAudio {
                            data: Bytes::from(p.collected),
                            frame_bytes: p.frame_bytes,
                        },
                    );
                }
                self.after_head(out).await;
            }
            TtsEvent::Done { .. } => {}
            // A failure before any audio while a hedge partner races on: the partner may answer.
            TtsEvent::Error { id, error } if head == Some(id) && self.hedge_covers(id) => {
                self.hedge_primary_failed(Tripped {
                    watchdog: None,
                    error,
                });
            }
            // A passing failure of the request being spoken: the chain may speak it instead.
            TtsEvent::Error { id, error }
                if head == Some(id) && crate::resilience::breaker::counts(&error) =>
            {
                return Some(Tripped {
                    watchdog: None,
                    error,
                });
            }
            TtsEvent::Error { id, error } => self.fail(id, error, head, out).await,
        }
        None
    }

    /// Fails the head request with `error` (a watchdog's finding no failover took over).
    pub async fn fail_head(&mut self, error: PluginError, out: &Outbound) {
        let head = self.queue.front().map(|p| p.id);
        if let Some(id) = head {
            self.provider.audio.discard();
            self.cancel(self.speak_end(0)).await;
            self.fail(id, error, head, out).await;
        }
    }

    /// The id of the last request of the `speak` the request at `index` belongs to.
    fn speak_end(&self, index: usize) -> u64 {
        let rest = self.queue.range(index..);
        match rest.clone().find(|p| p.last) {
            Some(p) => p.id,
            None => rest.last().map_or(0, |p| p.id),
        }
    }

    /// Drops request `id` and the rest of its `speak` (the sentences after it would be heard
    /// without it); the id of that `speak`'s last request, `None` if `id` was not queued.
    fn drop_rest_of_speak(&mut self, id: u64) -> Option<u64> {
        let i = self.queue.iter().position(|p| p.id == id)?;
        let end = self.speak_end(i);
        self.queue.retain(|p| p.id < id || p.id > end);
        Some(end)
    }

    /// Reports request `id` failed, once for its `speak`, whose remaining sentences go with it.
    async fn fail(&mut self, id: u64, error: PluginError, head: Option<u64>, out: &Outbound) {
        let was_head = head == Some(id);
        let end = self.drop_rest_of_speak(id);
        let was_pending = end.is_some();
        if let Some(end) = end.filter(|&end| was_head && end > id) {
            // The provider need not speak the sentences dropped with it.
            self.cancel(end).await;
        }
        if was_head {
            self.hedge_abandon(Some(id)).await;
            // What the resampler still holds is earlier audio: let it play.
            let mut frames = std::mem::take(&mut self.frames);
            self.provider.audio.flush(&mut |f| frames.push(f));
            if !frames.is_empty() {
                if let Some(h) = self.provider.audio.take_header() {
                    out.binary(h).await;
                }
            }
            for f in frames.drain(..) {
                out.binary(f).await;
            }
            self.frames = frames;
        }
        if was_pending {
            let e = WsError::Provider {
                role: "TTS",
                provider: self.provider.provider,
                error,
            };
            out.send(e.into()).await;
            self.after_head(out).await;
        }
    }

    async fn after_head(&mut self, out: &Outbound) {
        self.last_progress = Instant::now();
        self.drain_cached(out).await;
        if self.queue.is_empty() {
            out.send(ServerMessage::TtsPlaybackComplete {
                timestamp: now_ms(),
            })
            .await;
        }
    }

    /// Streams cache hits that have reached the head of the queue; `true` if any played.
    async fn drain_cached(&mut self, out: &Outbound) -> bool {
        let mut played = false;
        while let Some(p) = self.queue.front() {
            let Some(audio) = p.cached.clone() else { break };
            let interruptible = p.interruptible;
            if let Some(h) = self.provider.audio.take_header() {
                out.binary(h).await;
            }
            for frame in audio.frames() {
                self.play(frame, interruptible, out).await;
            }
            self.queue.pop_front();
            played = true;
        }
        played
    }

    /// Sends converted frames of the head request (collecting them for the cache).
    async fn play_frames(&mut self, frames: &mut Vec<Bytes>, out: &Outbound) {
        if frames.is_empty() {
            return;
        }
        if let Some(h) = self.provider.audio.take_header() {
            out.binary(h).await;
        }
        let cache_fill = self.cache_fill;
        let interruptible = match self.queue.front_mut() {
            Some(p) => {
                if cache_fill {
                    for f in frames.iter() {
                        if p.collected.len() + f.len() <= MAX_COLLECT {
                            p.frame_bytes = p.frame_bytes.max(f.len());
                            p.collected.extend_from_slice(f);
                        }
                    }
                }
                p.interruptible
            }
            None => true,
        };
        for f in frames.drain(..) {
            self.play(f, interruptible, out).await;
        }
    }

    async fn play(&mut self, data: Bytes, interruptible: bool, out: &Outbound) {
        // Estimate playback end from the audio sent: the client plays it in real time.
        let ms = self
            .provider
            .client
            .duration_ms(data.len())
            .unwrap_or(data.len() as f64 / 16.0); // compressed: assume ~128 kbit/s
        let now = Instant::now();
        let length = Duration::from_micros((ms * 1000.0) as u64);
        self.audio_until = self.audio_until.max(now) + length;
        if !interruptible {
            self.playing_until = self.playing_until.max(now) + length;
        }
        out.binary(data).await;
    }

    /// `clear`: drops queued and in-flight audio, unless non-interruptible audio is queued or
    /// still playing (then `clear` is a no-op).
    pub async fn clear(&mut self) {
        if self.suppresses_interruptions() {
            return;
        }
        self.audio_until = Instant::now();
        self.hedge_abandon(None).await;
        if let Some(last) = self.queue.back().map(|p| p.id) {
            self.queue.clear();
            self.provider.audio.discard();
            self.cancel(last).await;
        }
    }

    /// Tells the provider to drop requests up to `up_to`. Best effort: the host discards their
    /// audio anyway, and a provider that does not read is caught by the next `speak`.
    async fn cancel(&self, up_to: u64) {
        let _ = self
            .provider
            .send(TtsInput::Cancel { up_to }, self.limits.stall)
            .await;
    }

    fn stalled(&self) -> WsError {
        WsError::ProviderStalled {
            role: "TTS",
            provider: self.provider.provider,
        }
    }

    /// What a failover hands to the next provider: the requests not finished, in order (the
    /// sentence playing restarts from its beginning), and the stream's state.
    pub fn into_unfinished(self) -> Unfinished {
        Unfinished {
            requests: self.queue.into_iter().map(Segment::from).collect(),
            header_sent: !self.provider.audio.header_pending(),
            playing_until: self.playing_until,
            audio_until: self.audio_until,
        }
    }

    /// Like [`into_unfinished`](Self::into_unfinished), closing the provider in the background
    /// (within `CLOSE_GRACE`) instead of leaving its task to notice the closed input.
    pub fn into_unfinished_and_close(mut self) -> Unfinished {
        let queue = std::mem::take(&mut self.queue);
        let unfinished = Unfinished {
            requests: queue.into_iter().map(Segment::from).collect(),
            header_sent: !self.provider.audio.header_pending(),
            playing_until: self.playing_until,
            audio_until: self.audio_until,
        };
        tokio::spawn(self.provider.close(super::CLOSE_GRACE));
        unfinished
    }

    /// Whether no request is queued or in flight (audio sent may still be playing).
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Continues the client's stream of a failed link: no second WAV header, playback
    /// estimates kept.
    pub fn continue_stream_of(&mut self, old: &Unfinished) {
        if old.header_sent {
            let _ = self.provider.audio.take_header();
        }
        self.playing_until = self.playing_until.max(old.playing_until);
        self.audio_until = self.audio_until.max(old.audio_until);
    }

    /// Whether audio is queued, in flight or still playing at the client.
    pub fn is_speaking(&self) -> bool {
        !self.queue.is_empty() || Instant::now() < self.audio_until
    }

    /// Whether non-interruptible speech is queued or playing (STT results are held back then).
    pub fn suppresses_interruptions(&self) -> bool {
        Instant::now() < self.playing_until || self.queue.iter().any(|p| !p.interruptible)
    }

    /// When the head request times out for lack of progress (or, before its first byte, for
    /// lack of a first byte), if one is in flight; or a hedge timer is due.
    pub fn deadline(&self) -> Option<Instant> {
        let head = self.head_deadline();
        match self.hedge_deadline() {
            Some(h) => Some(head.map_or(h, |d| d.min(h))),
            None => head,
        }
    }

    fn head_deadline(&self) -> Option<Instant> {
        let p = self.queue.front().filter(|p| p.cached.is_none())?;
        let timeout = match self.watchdogs.first_byte {
            Some(fb) if !p.first_byte => fb.min(self.request_timeout),
            _ => self.request_timeout,
        };
        Some(self.last_progress + timeout)
    }

    /// The head request made no progress in time. Before its first byte that is a silent
    /// failure, returned for the caller to fail over (or [`fail_head`](Self::fail_head));
    /// later it is reported and the request dropped, with the rest of its `speak`.
    pub async fn on_timeout(&mut self, out: &Outbound) -> Option<Tripped> {
        if self.hedge.is_some() {
            self.hedge_timers().await;
            if self.head_deadline().is_none_or(|d| d > Instant::now()) {
                return None;
            }
        }
        if let (Some(fb), Some(p)) = (self.watchdogs.first_byte, self.queue.front()) {
            if !p.first_byte && fb < self.request_timeout {
                return Some(Tripped {
                    watchdog: Some("first_byte"),
                    error: PluginError::Timeout(format!(
                        "no first audio byte within {} ms",
                        fb.as_millis()
                    )),
                });
            }
        }
        let e = WsError::Provider {
            role: "TTS",
            provider: self.provider.provider,
            error: PluginError::Timeout(format!(
                "no audio within {} s",
                self.request_timeout.as_secs_f32()
            )),
        };
        out.send(e.into()).await;
        if let Some(id) = self.queue.front().map(|p| p.id) {
            let end = self.drop_rest_of_speak(id).unwrap_or(id);
            self.hedge_abandon(Some(id)).await;
            self.provider.audio.discard();
            self.cancel(end).await;
        }
        self.after_head(out).await;
        None
    }

    /// Stops the provider.
    pub async fn close(self, grace: Duration) {
        self.provider.close(grace).await;
    }
}
