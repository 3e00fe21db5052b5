//! Arbitrary bytes as client audio through the shared audio helpers of `waav-plugin-api`: the
//! PCM16 and G.711 mu-law decoders, the frame/duration arithmetic and the WAV header, with a
//! format (encoding, rate, channels) taken from the first bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waav_plugin_api::codec::{mulaw_decode, mulaw_encode, wav_header};
use waav_plugin_api::{AudioBuffer, AudioEncoding, AudioFormat};

fuzz_target!(|data: &[u8]| {
    let Some((head, audio)) = data.split_first_chunk::<7>() else {
        return;
    };
    let encoding = AudioEncoding::ALL[usize::from(head[0]) % AudioEncoding::ALL.len()];
    let sample_rate = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let channels = u16::from_le_bytes([head[5], head[6]]);
    let format = AudioFormat {
        encoding,
        sample_rate,
        channels,
    };
    let _ = format.frame_bytes();
    let _ = format.duration_ms(audio.len());
    // The wire name round-trips through the parser clients' `encoding` strings go through.
    assert_eq!(encoding.as_str().parse::<AudioEncoding>(), Ok(encoding));
    if let Ok(name) = std::str::from_utf8(audio) {
        let _ = name.parse::<AudioEncoding>();
    }

    let mut buf = AudioBuffer::with_capacity(sample_rate, channels, audio.len() / 2);
    match encoding {
        AudioEncoding::Mulaw => {
            buf.samples.extend(audio.iter().map(|&b| mulaw_decode(b)));
            // Decoding then encoding is the identity (0x7F and 0xFF are both zero).
            for (&b, &s) in audio.iter().zip(&buf.samples) {
                let re = mulaw_encode(s);
                assert!(
                    re == b || (b == 0x7f && re == 0xff),
                    "{b:#x} -> {s} -> {re:#x}"
                );
            }
        }
        _ => buf.fill_from_le_bytes(audio),
    }
    assert!(buf.duration_ms().is_finite());
    let mut out = Vec::new();
    buf.write_le_bytes(&mut out);
    if encoding != AudioEncoding::Mulaw {
        assert_eq!(out, audio[..audio.len() & !1]);
    }

    // `wav_header` overflows (panics in debug builds) on channels >= 32768 or when
    // rate * channels * 2 exceeds u32; only formats the `/ws` protocol admits reach it today
    // (8-192 kHz, 1-8 channels). Widen this when `wav_header` saturates or returns an error.
    if (8_000..=192_000).contains(&sample_rate) && (1..=8).contains(&channels) {
        let len = out.len().try_into().unwrap_or(u32::MAX);
        let header = wav_header(sample_rate, channels, len);
        assert_eq!(&header[0..4], b"RIFF");
        assert_eq!(header[22..24], channels.to_le_bytes());
    }
});
