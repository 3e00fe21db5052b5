//! The pre-STT stage of a session: client audio decoded to PCM, run through the session's
//! processors (denoise, VAD, gain…), then converted to the provider's format. Speech boundaries
//! the processors report are timed on the stream and passed on.

use crate::audio::{Bridge, ConvertError};
use crate::pipeline::{AudioPipeline, Disabled};
use bytes::Bytes;
use waav_plugin_api::{AudioBuffer, AudioEncoding, AudioFormat, ProcessorEvent};

/// A processor event and when (ms into the stream) it was reported.
pub(crate) type TimedEvent = (ProcessorEvent, u64);

#[derive(Debug)]
pub(crate) struct PreStt {
    /// Client format → PCM16 at the client's rate and channels.
    decode: Bridge,
    /// PCM16 as the processors left it → the provider's format; built at the first frame (a
    /// resampling processor decides the rate).
    encode: Option<(AudioFormat, Bridge)>,
    provider: AudioFormat,
    client_rate: u32,
    client_channels: u16,
    buf: AudioBuffer,
    pcm: Vec<u8>,
    pipeline: AudioPipeline,
    /// Milliseconds of audio processed so far.
    stream_ms: f64,
    /// Events since the session last took them.
    pub(crate) events: Vec<TimedEvent>,
    /// Processors disabled since the session last looked.
    pub(crate) disabled: Vec<Disabled>,
    /// Chunks for the provider from one frame, reused by the link.
    pub(crate) out: Vec<Bytes>,
    /// Since when a result is owed (the silent-STT watchdog), and whether the bound was already
    /// restarted at the speech's end.
    pub(crate) unanswered_since: Option<(tokio::time::Instant, bool)>,
}

impl PreStt {
    /// A stage for `client` audio through `pipeline` into `provider`'s format.
    pub(crate) async fn new(
        client: AudioFormat,
        provider: AudioFormat,
        pipeline: AudioPipeline,
    ) -> Result<Self, ConvertError> {
        let pcm = AudioFormat {
            encoding: AudioEncoding::Linear16,
            ..client
        };
        Ok(Self {
            decode: Bridge::build(client, pcm, 0).await?,
            encode: None,
            provider,
            client_rate: client.sample_rate,
            client_channels: client.channels,
            buf: AudioBuffer::with_capacity(client.sample_rate, client.channels, 0),
            pcm: Vec::new(),
            pipeline,
            stream_ms: 0.0,
            events: Vec::new(),
            disabled: Vec::new(),
            out: Vec::new(),
            unanswered_since: None,
        })
    }

    /// Processes one client frame, appending what the provider gets to `out`.
    pub(crate) async fn process(
        &mut self,
        audio: Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), ConvertError> {
        self.pcm.clear();
        let pcm = &mut self.pcm;
        self.decode.push(audio, &mut |b| pcm.extend_from_slice(&b));
        if self.pcm.is_empty() {
            return Ok(());
        }
        self.buf.sample_rate = self.client_rate;
        self.buf.channels = self.client_channels;
        self.buf.fill_from_le_bytes(&self.pcm);
        self.stream_ms += self.buf.duration_ms();
        if let Some(d) = self.pipeline.run(&mut self.buf) {
            self.disabled.push(d);
        }
        let at = self.stream_ms as u64;
        self.events
            .extend(self.pipeline.events().iter().map(|&e| (e, at)));
        let now = AudioFormat {
            encoding: AudioEncoding::Linear16,
            sample_rate: self.buf.sample_rate,
            channels: self.buf.channels,
        };
        if self.encode.as_ref().is_none_or(|(f, _)| *f != now) {
            // Once per session (or layout change); boxed so the per-frame future stays small.
            let bridge = Box::pin(Bridge::build(now, self.provider, 0)).await?;
            self.encode = Some((now, bridge));
        }
        self.pcm.clear();
        self.buf.write_le_bytes(&mut self.pcm);
        let (_, encode) = self.encode.as_mut().expect("built above");
        encode.push_slice(&self.pcm, &mut |b| out.push(b));
        Ok(())
    }

    /// Whether the session's VAD segments the stream (a processor reports speech boundaries).
    pub(crate) fn reports_speech(&self) -> bool {
        self.pipeline.reports_speech()
    }

    /// Logs the processors' totals.
    pub(crate) fn log_stats(&self) {
        self.pipeline.log_stats();
    }
}
