//! Sample-rate conversion (rubato's FFT resampler). G.711 lives in `waav_plugin_api::codec`.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Sample rate the speech models (Whisper, the VAD) expect.
pub const SPEECH_RATE: u32 = 16_000;

/// Chunk size of the FFT resampler; whole clips are processed chunk by chunk.
const CHUNK: usize = 1024;

/// Downmixes interleaved `i16` audio to mono and resamples it to 16 kHz `f32` in `[-1, 1]`.
///
/// Returns an empty vector if `rate` or `channels` is 0.
pub fn to_mono_16k(samples: &[i16], rate: u32, channels: u16) -> Vec<f32> {
    if rate == 0 || channels == 0 {
        return Vec::new();
    }
    let channels = usize::from(channels);
    let mono: Vec<f32> = samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().map(|&s| f32::from(s)).sum::<f32>() / (32768.0 * channels as f32))
        .collect();
    resample_f32(&mono, rate, SPEECH_RATE)
}

/// Resamples mono `i16` audio from `from` Hz to `to` Hz.
///
/// Returns a copy when the rates are equal and an empty vector if either rate is 0.
pub fn resample_i16(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return samples.to_vec();
    }
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    resample_f32(&input, from, to)
        .into_iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resamples mono `f32` audio from `from` Hz to `to` Hz (the output has `len * to / from` samples).
///
/// Returns a copy when the rates are equal and an empty vector if either rate is 0.
pub fn resample_f32(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return samples.to_vec();
    }
    if from == 0 || to == 0 || samples.is_empty() {
        return Vec::new();
    }
    // Construction only fails for zero rates/channels and processing only for mis-sized
    // buffers, both excluded above; treat a failure as "no audio" rather than panicking.
    let Ok(mut resampler) = Fft::<f32>::new(from as usize, to as usize, CHUNK, 1, FixedSync::Input)
    else {
        return Vec::new();
    };
    let Ok(input) = InterleavedSlice::new(samples, 1, samples.len()) else {
        return Vec::new();
    };
    resampler
        .process_all(&input, samples.len(), None)
        .map(|out| out.take_data())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_keeps_length_ratio_and_tone() {
        // 1 s of a 440 Hz tone at 48 kHz -> 16 kHz.
        let tone: Vec<i16> = (0..48_000)
            .map(|n| {
                ((n as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 10_000.0) as i16
            })
            .collect();
        let out = resample_i16(&tone, 48_000, 16_000);
        assert_eq!(out.len(), 16_000);
        let rms = |x: &[i16]| {
            (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let (a, b) = (rms(&tone[4800..43_200]), rms(&out[1600..14_400]));
        assert!((a - b).abs() / a < 0.05, "rms {a} vs {b}");
        assert!(resample_i16(&tone, 0, 16_000).is_empty());
    }

    #[test]
    fn to_mono_16k_downmixes() {
        let stereo: Vec<i16> = (0..16_000).flat_map(|_| [16_384i16, -16_384]).collect();
        let mono = to_mono_16k(&stereo, 16_000, 2);
        assert_eq!(mono.len(), 16_000);
        assert!(mono.iter().all(|&s| s.abs() < 1e-6));
        let mono = to_mono_16k(&stereo, 8_000, 2);
        assert_eq!(mono.len(), 32_000);
    }
}
