//! The audio a session sends to its client from a provider (TTS, realtime): converted by one
//! [`Bridge`] straight to the client's format, or, when the session has post-TTS processors,
//! decoded to PCM16 at the client's rate, run through them, then encoded and framed.

use crate::audio::{Bridge, ConvertError};
use crate::pipeline::{AudioPipeline, Disabled};
use bytes::Bytes;
use waav_plugin_api::{AudioBuffer, AudioEncoding, AudioFormat};

/// Provider audio on its way to the client.
#[derive(Debug)]
pub enum ClientAudio {
    /// No processors: one conversion.
    Direct(Bridge),
    /// Through the session's post-TTS processors.
    Processed(Box<PostTts>),
}

/// The processed path's state.
#[derive(Debug)]
pub struct PostTts {
    decode: Bridge,
    encode: Bridge,
    /// The PCM layout the encoder was built for (processors may change the rate).
    encoding_from: AudioFormat,
    client: AudioFormat,
    frame_bytes: usize,
    pcm: Vec<u8>,
    buf: AudioBuffer,
    pipeline: AudioPipeline,
    /// Processors disabled since the session last looked.
    pub disabled: Vec<Disabled>,
}

impl ClientAudio {
    /// Audio from `provider` format to `client` format in frames of `frame_bytes`, through
    /// `pipeline` when it has processors.
    pub async fn build(
        provider: AudioFormat,
        client: AudioFormat,
        frame_bytes: usize,
        pipeline: Option<AudioPipeline>,
    ) -> Result<Self, ConvertError> {
        let Some(pipeline) = pipeline.filter(|p| !p.is_empty()) else {
            return Ok(Self::Direct(
                Bridge::build(provider, client, frame_bytes).await?,
            ));
        };
        let pcm = AudioFormat {
            encoding: AudioEncoding::Linear16,
            sample_rate: client.sample_rate,
            channels: 1,
        };
        Ok(Self::Processed(Box::new(PostTts {
            decode: Bridge::build(provider, pcm, 0).await?,
            encode: Bridge::build(pcm, client, frame_bytes).await?,
            encoding_from: pcm,
            client,
            frame_bytes,
            pcm: Vec::new(),
            buf: AudioBuffer::with_capacity(pcm.sample_rate, 1, 0),
            pipeline,
            disabled: Vec::new(),
        })))
    }

    /// Converts a chunk, calling `emit` for each client frame.
    pub fn push(&mut self, data: Bytes, emit: &mut impl FnMut(Bytes)) {
        match self {
            Self::Direct(b) => b.push(data, emit),
            Self::Processed(p) => p.push(data, emit),
        }
    }

    /// Ends a stretch of audio: what the converters hold is handed out.
    pub fn flush(&mut self, emit: &mut impl FnMut(Bytes)) {
        match self {
            Self::Direct(b) => b.flush(emit),
            Self::Processed(p) => {
                let mut tail = Vec::new();
                p.decode.flush(&mut |b| tail.push(b));
                for b in tail {
                    p.push(b, emit);
                }
                p.encode.flush(emit);
            }
        }
    }

    /// Drops what is held (after a `clear`).
    pub fn discard(&mut self) {
        match self {
            Self::Direct(b) => b.discard(),
            Self::Processed(p) => {
                p.decode.discard();
                p.encode.discard();
            }
        }
    }

    /// The WAV header, the first time it is asked for.
    pub fn take_header(&mut self) -> Option<Bytes> {
        match self {
            Self::Direct(b) => b.take_header(),
            Self::Processed(p) => p.encode.take_header(),
        }
    }

    /// Whether the WAV header is still to be sent.
    pub fn header_pending(&self) -> bool {
        match self {
            Self::Direct(b) => b.header_pending(),
            Self::Processed(p) => p.encode.header_pending(),
        }
    }

    /// A processor that failed since the last call (it is disabled; audio flows without it).
    pub fn take_disabled(&mut self) -> Option<Disabled> {
        match self {
            Self::Direct(_) => None,
            Self::Processed(p) => p.disabled.pop(),
        }
    }
}

impl PostTts {
    fn push(&mut self, data: Bytes, emit: &mut impl FnMut(Bytes)) {
        self.pcm.clear();
        let pcm = &mut self.pcm;
        self.decode.push(data, &mut |b| pcm.extend_from_slice(&b));
        if self.pcm.is_empty() {
            return;
        }
        self.buf.sample_rate = self.client.sample_rate;
        self.buf.channels = 1;
        self.buf.fill_from_le_bytes(&self.pcm);
        if let Some(d) = self.pipeline.run(&mut self.buf) {
            self.disabled.push(d);
        }
        let now = AudioFormat {
            encoding: AudioEncoding::Linear16,
            sample_rate: self.buf.sample_rate,
            channels: self.buf.channels,
        };
        if now != self.encoding_from {
            // A processor changed the layout (once, at its first frame): re-plan the encoder.
            match Bridge::new(now, self.client, self.frame_bytes) {
                Ok(mut b) => {
                    if !self.encode.header_pending() {
                        let _ = b.take_header();
                    }
                    self.encode = b;
                    self.encoding_from = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "post-TTS processors left audio the client format cannot take");
                    return;
                }
            }
        }
        self.pcm.clear();
        self.buf.write_le_bytes(&mut self.pcm);
        self.encode.push_slice(&self.pcm, emit);
    }
}
