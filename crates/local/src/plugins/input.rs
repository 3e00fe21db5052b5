//! Client audio → 16 kHz mono `f32` for the speech models, in a stream: decoding (linear16 or
//! mu-law), downmixing, and a stateful resampler so chunk edges leave no artifacts.

use super::settings::{check_channels, check_sample_rate};
use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use waav_plugin_api::codec::mulaw_decode;
use waav_plugin_api::{AudioEncoding, PluginError};

/// Converts a stream of client audio chunks to 16 kHz mono `f32`.
///
/// Building one (for a rate other than 16 kHz) plans FFTs: do it on a blocking thread.
pub struct InputConverter {
    encoding: AudioEncoding,
    channels: usize,
    resampler: Option<Fft<f32>>,
    /// A byte left over from an odd-length linear16 chunk.
    carry: Option<u8>,
    mono: Vec<f32>,
    pending: Vec<f32>,
    scratch: Vec<f32>,
}

impl InputConverter {
    /// A converter for `encoding` at `rate` (8,000–192,000 Hz) with `channels` (1–8); anything
    /// else is a [`PluginError::Config`].
    pub fn new(encoding: AudioEncoding, rate: u32, channels: u16) -> Result<Self, PluginError> {
        if !matches!(encoding, AudioEncoding::Linear16 | AudioEncoding::Mulaw) {
            return Err(PluginError::Config(format!(
                "local STT accepts linear16 or mulaw audio, not {encoding}"
            )));
        }
        // Checked before the resampler sizes its FFTs from `rate`.
        check_sample_rate(rate)?;
        check_channels(channels)?;
        let resampler = if rate == 16_000 {
            None
        } else {
            // 20 ms chunks: low latency, and the resampler keeps its filter state across them.
            let chunk = (rate as usize / 50).max(16);
            Some(
                Fft::<f32>::new(rate as usize, 16_000, chunk, 1, FixedSync::Input).map_err(
                    |e| PluginError::Config(format!("cannot resample from {rate} Hz: {e}")),
                )?,
            )
        };
        Ok(Self {
            encoding,
            channels: usize::from(channels),
            resampler,
            carry: None,
            mono: Vec::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Converts `chunk`, appending 16 kHz mono samples to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<f32>) {
        self.mono.clear();
        let ch = self.channels;
        match self.encoding {
            AudioEncoding::Mulaw => {
                for frame in chunk.chunks_exact(ch) {
                    let sum: f32 = frame.iter().map(|&b| f32::from(mulaw_decode(b))).sum();
                    self.mono.push(sum / (32768.0 * ch as f32));
                }
            }
            _ => {
                let mut bytes = Vec::new();
                let data: &[u8] = match self.carry.take() {
                    Some(b) => {
                        bytes.reserve(chunk.len() + 1);
                        bytes.push(b);
                        bytes.extend_from_slice(chunk);
                        &bytes
                    }
                    None => chunk,
                };
                let whole = data.len() / (2 * ch) * (2 * ch);
                for frame in data[..whole].chunks_exact(2 * ch) {
                    let sum: f32 = frame
                        .chunks_exact(2)
                        .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum();
                    self.mono.push(sum / (32768.0 * ch as f32));
                }
                // Only a split sample (not a split multi-channel frame) is carried; a broken
                // stereo frame is dropped rather than mis-aligning every later frame.
                if data.len() - whole == 1 {
                    self.carry = Some(data[whole]);
                }
            }
        }
        let Some(r) = self.resampler.as_mut() else {
            out.extend_from_slice(&self.mono);
            return;
        };
        self.pending.extend_from_slice(&self.mono);
        let mut start = 0;
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - start < need {
                break;
            }
            self.scratch.resize(r.output_frames_max(), 0.0);
            let input = &self.pending[start..start + need];
            let (Ok(inbuf), Ok(mut outbuf)) = (
                InterleavedSlice::new(input, 1, need),
                InterleavedSlice::new_mut(&mut self.scratch[..], 1, r.output_frames_max()),
            ) else {
                break;
            };
            match r.process_into_buffer(&inbuf, &mut outbuf, None) {
                Ok((_, produced)) => out.extend_from_slice(&self.scratch[..produced]),
                Err(_) => break,
            }
            start += need;
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn resamples_in_a_stream_to_the_right_length() {
        for rate in [8_000u32, 24_000, 44_100, 48_000] {
            let mut c = InputConverter::new(AudioEncoding::Linear16, rate, 1).unwrap();
            let tone: Vec<i16> = (0..rate)
                .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
                .collect();
            let mut out = Vec::new();
            // 1 s in 20 ms chunks, with an odd split to exercise the carried byte.
            let bytes = pcm(&tone);
            let (a, b) = bytes.split_at(333);
            c.push(a, &mut out);
            for chunk in b.chunks((rate / 50 * 2) as usize) {
                c.push(chunk, &mut out);
            }
            let expected = 16_000.0;
            assert!(
                (out.len() as f64 - expected).abs() < expected * 0.05,
                "{rate} Hz: {} samples",
                out.len()
            );
        }
    }

    #[test]
    fn downmixes_and_decodes_mulaw() {
        let mut c = InputConverter::new(AudioEncoding::Linear16, 16_000, 2).unwrap();
        let mut out = Vec::new();
        c.push(&pcm(&[16384, 0, -16384, -16384]), &mut out);
        assert_eq!(out, vec![0.25, -0.5]);
        let mut c = InputConverter::new(AudioEncoding::Mulaw, 16_000, 1).unwrap();
        let mut out = Vec::new();
        c.push(&[0xff, 0x7f], &mut out);
        assert_eq!(out.len(), 2);
        assert!(InputConverter::new(AudioEncoding::Mp3, 16_000, 1).is_err());
    }

    #[test]
    fn rejects_absurd_formats_before_sizing_anything() {
        let started = std::time::Instant::now();
        for (rate, channels) in [
            (u32::MAX, 1),
            (0, 1),
            (7_999, 1),
            (192_001, 1),
            (16_000, 0),
            (16_000, 9),
            (u32::MAX, u16::MAX),
        ] {
            let err = InputConverter::new(AudioEncoding::Linear16, rate, channels)
                .err()
                .unwrap_or_else(|| panic!("{rate} Hz x {channels} accepted"));
            assert!(matches!(err, PluginError::Config(_)), "{err}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        for (rate, channels) in [(8_000, 1), (192_000, 8), (44_100, 2)] {
            assert!(InputConverter::new(AudioEncoding::Mulaw, rate, channels).is_ok());
        }
    }
}
