//! Tiny PCM codecs: G.711 mu-law and A-law, and a WAV header. Ten lines each, no crate.

/// Encodes one PCM16 sample as G.711 mu-law (ITU-T G.711, with the standard 0x84 bias).
pub fn mulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one G.711 mu-law byte to PCM16.
pub fn mulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes one PCM16 sample as G.711 A-law (ITU-T G.711, even bits inverted with 0x55).
pub fn alaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, i32::from(sample) >> 3)
    } else {
        (0x00u8, (!i32::from(sample)) >> 3)
    };
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros()) as i32 - 4;
        let mantissa = (magnitude >> exponent) & 0x0f;
        ((exponent << 4) as u8 | mantissa as u8).min(0x7f)
    };
    (sign | code) ^ 0x55
}

/// Decodes one G.711 A-law byte to PCM16.
pub fn alaw_decode(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if b & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// A 44-byte RIFF/WAVE header for PCM16 audio of `data_len` bytes.
///
/// For streams of unknown length pass `u32::MAX`; players treat it as "until the end". Formats
/// no WAV file can describe (more than 32767 channels, byte rates past `u32::MAX`) saturate the
/// derived fields rather than panic; callers validate formats before they get here.
pub fn wav_header(sample_rate: u32, channels: u16, data_len: u32) -> [u8; 44] {
    let block_align = channels.saturating_mul(2);
    let byte_rate = sample_rate.saturating_mul(u32::from(block_align));
    let riff_len = data_len.saturating_add(36);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff_len.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_never_panics_on_absurd_formats() {
        let h = wav_header(0xC4C4_C400, 50_372, u32::MAX);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), u16::MAX);
        assert_eq!(u32::from_le_bytes([h[28], h[29], h[30], h[31]]), u32::MAX);
    }

    #[test]
    fn mulaw_round_trip_is_close() {
        for s in (-32_768..=32_767).step_by(7).map(|s| s as i16) {
            let back = mulaw_decode(mulaw_encode(s));
            let err = (i32::from(back) - i32::from(s)).abs();
            // G.711 quantisation step grows with magnitude: at most ~1/16 of the value.
            assert!(err <= (i32::from(s).abs() / 16).max(8), "{s} -> {back}");
        }
        assert_eq!(mulaw_encode(0), 0xff);
        // Every code decodes to a value that re-encodes to the same code (0x7F and 0xFF both mean 0).
        for code in 0u8..=255 {
            let re = mulaw_encode(mulaw_decode(code));
            assert!(
                re == code || (code == 0x7f && re == 0xff),
                "{code:#x} -> {re:#x}"
            );
        }
        let decoded: Vec<i16> = [0xff, 0x7f, 0x00, 0x80].map(mulaw_decode).to_vec();
        assert_eq!(decoded, vec![0, 0, -32124, 32124]);
    }

    #[test]
    fn alaw_round_trip_is_close_and_matches_reference_codes() {
        for s in (-32_768..=32_767).step_by(7).map(|s| s as i16) {
            let back = alaw_decode(alaw_encode(s));
            let err = (i32::from(back) - i32::from(s)).abs();
            assert!(err <= (i32::from(s).abs() / 16).max(16), "{s} -> {back}");
        }
        // Reference values (ITU-T G.711 tables, as in Sun's g711.c): silence encodes to 0xD5.
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32_256);
        assert_eq!(alaw_decode(0x2a), -32_256);
        for code in 0u8..=255 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "{code:#x}");
        }
    }

    #[test]
    fn wav_header_fields() {
        let h = wav_header(16_000, 1, 3200);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 3200);
    }
}
