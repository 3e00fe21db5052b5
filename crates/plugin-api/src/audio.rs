//! Audio format types shared by providers and processors.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How audio bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioEncoding {
    /// Signed 16-bit little-endian PCM, no header (`linear16`, also accepted as `pcm`).
    Linear16,
    /// G.711 mu-law, 8 bits per sample.
    Mulaw,
    /// G.711 A-law, 8 bits per sample.
    Alaw,
    /// PCM16 in a RIFF/WAVE container.
    Wav,
    /// MPEG-1 layer III.
    Mp3,
    /// Opus (in Ogg when sent whole).
    Opus,
    /// FLAC.
    Flac,
}

impl AudioEncoding {
    /// Every encoding, in declaration order.
    pub const ALL: [AudioEncoding; 7] = [
        Self::Linear16,
        Self::Mulaw,
        Self::Alaw,
        Self::Wav,
        Self::Mp3,
        Self::Opus,
        Self::Flac,
    ];

    /// The canonical wire name (`linear16`, `mulaw`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear16 => "linear16",
            Self::Mulaw => "mulaw",
            Self::Alaw => "alaw",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Flac => "flac",
        }
    }

    /// The HTTP `Content-Type` for a whole file of this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Linear16 => "audio/pcm",
            Self::Mulaw | Self::Alaw => "audio/basic",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
            Self::Flac => "audio/flac",
        }
    }

    /// Bytes per sample per channel for fixed-size encodings; `None` for compressed ones.
    pub fn bytes_per_sample(self) -> Option<usize> {
        match self {
            Self::Linear16 | Self::Wav => Some(2),
            Self::Mulaw | Self::Alaw => Some(1),
            Self::Mp3 | Self::Opus | Self::Flac => None,
        }
    }
}

impl fmt::Display for AudioEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an encoding name no plugin understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported audio encoding {0:?} (supported: linear16, pcm, mulaw, ulaw, alaw, wav, mp3, opus, ogg, flac)")]
pub struct UnknownEncoding(pub String);

impl FromStr for AudioEncoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "linear16" | "pcm" | "pcm16" | "pcm_s16le" | "s16le" => Self::Linear16,
            "mulaw" | "ulaw" | "mu-law" | "pcm_mulaw" => Self::Mulaw,
            "alaw" | "a-law" | "pcm_alaw" => Self::Alaw,
            "wav" | "wave" => Self::Wav,
            "mp3" | "mpeg" => Self::Mp3,
            "opus" | "ogg" | "ogg_opus" => Self::Opus,
            "flac" => Self::Flac,
            _ => return Err(UnknownEncoding(s.to_owned())),
        })
    }
}

/// Encoding, sample rate and channel count of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Sample encoding.
    pub encoding: AudioEncoding,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl AudioFormat {
    /// Mono PCM16 at `sample_rate`.
    pub const fn linear16(sample_rate: u32) -> Self {
        Self {
            encoding: AudioEncoding::Linear16,
            sample_rate,
            channels: 1,
        }
    }

    /// Bytes in one frame (one sample for every channel), for fixed-size encodings.
    pub fn frame_bytes(&self) -> Option<usize> {
        self.encoding
            .bytes_per_sample()
            .map(|b| b * usize::from(self.channels))
    }

    /// Duration in milliseconds of `bytes` of audio, for fixed-size encodings.
    pub fn duration_ms(&self, bytes: usize) -> Option<f64> {
        let fb = self.frame_bytes()?;
        if self.sample_rate == 0 || fb == 0 {
            return None;
        }
        Some((bytes / fb) as f64 * 1000.0 / f64::from(self.sample_rate))
    }
}

/// A block of interleaved PCM16 samples owned by a processing pipeline.
///
/// The pipeline keeps one buffer per session and reuses its capacity, so processors that change the
/// length (resamplers) do not allocate per frame once the buffer has grown to its working size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioBuffer {
    /// Interleaved samples.
    pub samples: Vec<i16>,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl AudioBuffer {
    /// An empty buffer of the given layout with room for `capacity` samples.
    pub fn with_capacity(sample_rate: u32, channels: u16, capacity: usize) -> Self {
        Self {
            samples: Vec::with_capacity(capacity),
            sample_rate,
            channels,
        }
    }

    /// Replaces the contents with little-endian PCM16 `bytes` (an odd trailing byte is ignored).
    pub fn fill_from_le_bytes(&mut self, bytes: &[u8]) {
        self.samples.clear();
        self.samples.extend(
            bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]])),
        );
    }

    /// Appends the samples as little-endian PCM16 bytes to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.samples.len() * 2);
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    /// Duration of the buffered audio in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        if self.sample_rate == 0 || self.channels == 0 {
            return 0.0;
        }
        self.samples.len() as f64 * 1000.0
            / (f64::from(self.sample_rate) * f64::from(self.channels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_rejects_unknown() {
        assert_eq!(
            "PCM".parse::<AudioEncoding>().unwrap(),
            AudioEncoding::Linear16
        );
        assert_eq!(
            "ulaw".parse::<AudioEncoding>().unwrap(),
            AudioEncoding::Mulaw
        );
        let err = "aiff".parse::<AudioEncoding>().unwrap_err();
        assert!(err.to_string().contains("\"aiff\""));
    }

    #[test]
    fn durations() {
        let f = AudioFormat::linear16(16_000);
        assert_eq!(f.duration_ms(640), Some(20.0));
        let stereo = AudioFormat {
            channels: 2,
            ..AudioFormat::linear16(8_000)
        };
        assert_eq!(stereo.frame_bytes(), Some(4));
        assert_eq!(stereo.duration_ms(320), Some(10.0));
        let mp3 = AudioFormat {
            encoding: AudioEncoding::Mp3,
            ..f
        };
        assert_eq!(mp3.duration_ms(100), None);
    }

    #[test]
    fn buffer_round_trip() {
        let mut b = AudioBuffer::with_capacity(16_000, 1, 4);
        b.fill_from_le_bytes(&[1, 0, 0xff, 0xff, 9]);
        assert_eq!(b.samples, vec![1, -1]);
        let mut out = Vec::new();
        b.write_le_bytes(&mut out);
        assert_eq!(out, vec![1, 0, 0xff, 0xff]);
        assert_eq!(b.duration_ms(), 0.125);
    }
}
