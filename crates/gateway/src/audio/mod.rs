//! Audio inside the core: plugins declare the formats they take or produce, and the core converts
//! once between those and the client's format (see `docs/contract-v2.md`).
//!
//! - [`negotiate`]: which format a plugin is asked for, given its capabilities and the client's
//!   format.
//! - [`Bridge`]: one direction of a session's audio (client → STT, TTS → client): passthrough
//!   (re-framed, zero copy where possible) or a stateful [`Converter`], plus the WAV header once
//!   per stream.

mod convert;
pub mod negotiate;

pub use convert::{is_pcm, ConvertError, Converter, Framer};

use bytes::Bytes;
use waav_plugin_api::codec::wav_header;
use waav_plugin_api::{AudioEncoding, AudioFormat};

/// The encoding as the converter sees it: a WAV stream is PCM16 behind a header.
fn sample_encoding(e: AudioEncoding) -> AudioEncoding {
    match e {
        AudioEncoding::Wav => AudioEncoding::Linear16,
        e => e,
    }
}

/// Whether `a` and `b` hold the same samples (a WAV stream and raw PCM16 do).
pub fn same_samples(a: AudioFormat, b: AudioFormat) -> bool {
    sample_encoding(a.encoding) == sample_encoding(b.encoding)
        && a.sample_rate == b.sample_rate
        && a.channels == b.channels
}

/// One direction of a session's audio.
#[derive(Debug)]
pub struct Bridge {
    stage: Stage,
    /// The output format, and whether its WAV header is still to be sent (client-bound WAV
    /// streams get one before their first audio).
    to: AudioFormat,
    header_pending: bool,
}

#[derive(Debug)]
enum Stage {
    Same(Framer),
    Convert(Box<Converter>),
}

impl Bridge {
    /// A bridge from `from` to `to`, handing out frames of `frame_bytes` (0: as produced;
    /// compressed audio always passes through as produced). A header is written once when `to`
    /// is WAV and `from` is not. Resampling plans FFTs: prefer [`Bridge::build`] on the runtime.
    pub fn new(
        from: AudioFormat,
        to: AudioFormat,
        frame_bytes: usize,
    ) -> Result<Self, ConvertError> {
        let header_pending =
            to.encoding == AudioEncoding::Wav && from.encoding != AudioEncoding::Wav;
        let stage = if same_samples(from, to) || from == to {
            let frame = if is_pcm(to.encoding) { frame_bytes } else { 0 };
            Stage::Same(Framer::new(frame))
        } else {
            let plain = |f: AudioFormat| AudioFormat {
                encoding: sample_encoding(f.encoding),
                ..f
            };
            Stage::Convert(Box::new(Converter::new(
                plain(from),
                plain(to),
                frame_bytes,
            )?))
        };
        Ok(Self {
            stage,
            to,
            header_pending,
        })
    }

    /// [`Bridge::new`] on the blocking pool when it has to build a resampler.
    pub async fn build(
        from: AudioFormat,
        to: AudioFormat,
        frame_bytes: usize,
    ) -> Result<Self, ConvertError> {
        if from.sample_rate == to.sample_rate {
            return Self::new(from, to, frame_bytes);
        }
        tokio::task::spawn_blocking(move || Self::new(from, to, frame_bytes))
            .await
            .unwrap_or_else(|e| {
                Err(ConvertError::Resampler {
                    from: from.sample_rate,
                    to: to.sample_rate,
                    reason: e.to_string(),
                })
            })
    }

    /// Whether audio passes unconverted.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.stage, Stage::Same(_))
    }

    /// Whether the WAV header is still to be sent.
    pub fn header_pending(&self) -> bool {
        self.header_pending
    }

    /// The WAV header, the first time it is asked for (before the stream's first audio).
    pub fn take_header(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.header_pending) {
            return None;
        }
        // The length is unknown while streaming; players read to the end.
        let h = wav_header(self.to.sample_rate, self.to.channels, u32::MAX - 36);
        Some(Bytes::copy_from_slice(&h))
    }

    /// Converts a chunk, calling `emit` for each output frame.
    pub fn push(&mut self, data: Bytes, emit: &mut impl FnMut(Bytes)) {
        match &mut self.stage {
            Stage::Same(f) => f.push(data, emit),
            Stage::Convert(c) => c.push(&data, emit),
        }
    }

    /// Converts a chunk the caller owns as a slice (a processor's output buffer), without first
    /// copying it into a `Bytes`.
    pub fn push_slice(&mut self, data: &[u8], emit: &mut impl FnMut(Bytes)) {
        match &mut self.stage {
            Stage::Same(f) => f.push_slice(data, emit),
            Stage::Convert(c) => c.push(data, emit),
        }
    }

    /// Ends a stretch of audio: hands out what the resampler and the framer hold.
    pub fn flush(&mut self, emit: &mut impl FnMut(Bytes)) {
        match &mut self.stage {
            Stage::Same(f) => f.flush(emit),
            Stage::Convert(c) => c.flush(emit),
        }
    }

    /// Drops what is held (after a `clear`), keeping the stream's header state.
    pub fn discard(&mut self) {
        self.flush(&mut |_| {});
    }
}

#[cfg(test)]
mod tests;
