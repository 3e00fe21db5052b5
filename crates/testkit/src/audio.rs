//! Small generated audio fixtures (PCM16LE).

/// A sine tone of `ms` milliseconds at `freq` Hz, amplitude about -6 dBFS, mono PCM16 samples.
pub fn tone(freq: f32, ms: u32, sample_rate: u32) -> Vec<i16> {
    let n = (u64::from(ms) * u64::from(sample_rate) / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / sample_rate as f32;
            ((2.0 * std::f32::consts::PI * freq * t).sin() * 16_000.0) as i16
        })
        .collect()
}

/// `ms` milliseconds of digital silence.
pub fn silence(ms: u32, sample_rate: u32) -> Vec<i16> {
    vec![0; (u64::from(ms) * u64::from(sample_rate) / 1000) as usize]
}

/// Samples as little-endian bytes.
pub fn to_le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Little-endian bytes as samples (an odd trailing byte is ignored).
pub fn from_le_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Root-mean-square level of a block of samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Splits `bytes` into frames of `frame_ms` at `sample_rate` mono PCM16 (the last may be short).
pub fn frames(bytes: &[u8], sample_rate: u32, frame_ms: u32) -> Vec<Vec<u8>> {
    let size = (sample_rate * frame_ms / 1000 * 2) as usize;
    bytes.chunks(size.max(2)).map(<[u8]>::to_vec).collect()
}
