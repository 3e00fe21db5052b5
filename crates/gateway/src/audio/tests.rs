use super::negotiate::{stt_input, tts_output};
use super::*;
use waav_plugin_api::codec::{alaw_decode, alaw_encode, mulaw_decode, mulaw_encode};
use waav_plugin_api::Capabilities;

const PCM: [AudioEncoding; 4] = [
    AudioEncoding::Linear16,
    AudioEncoding::Wav,
    AudioEncoding::Mulaw,
    AudioEncoding::Alaw,
];
const RATES: [u32; 5] = [8_000, 16_000, 22_050, 24_000, 48_000];

fn fmt(encoding: AudioEncoding, sample_rate: u32, channels: u16) -> AudioFormat {
    AudioFormat {
        encoding,
        sample_rate,
        channels,
    }
}

fn tone(rate: u32, channels: u16, ms: u32, hz: f32) -> Vec<i16> {
    let n = rate * ms / 1000;
    (0..n)
        .flat_map(|i| {
            let s = (i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 12_000.0;
            std::iter::repeat_n(s as i16, usize::from(channels))
        })
        .collect()
}

fn encode(samples: &[i16], enc: AudioEncoding) -> Vec<u8> {
    match enc {
        AudioEncoding::Mulaw => samples.iter().map(|&s| mulaw_encode(s)).collect(),
        AudioEncoding::Alaw => samples.iter().map(|&s| alaw_encode(s)).collect(),
        _ => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
    }
}

fn decode(bytes: &[u8], enc: AudioEncoding) -> Vec<i16> {
    match enc {
        AudioEncoding::Mulaw => bytes.iter().map(|&b| mulaw_decode(b)).collect(),
        AudioEncoding::Alaw => bytes.iter().map(|&b| alaw_decode(b)).collect(),
        _ => bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
    }
}

/// Runs `chunks` through a bridge and returns every frame, flushed at the end.
fn run(bridge: &mut Bridge, chunks: &[&[u8]]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    if let Some(h) = bridge.take_header() {
        frames.push(h);
    }
    for c in chunks {
        bridge.push(Bytes::copy_from_slice(c), &mut |f| frames.push(f));
    }
    bridge.flush(&mut |f| frames.push(f));
    frames
}

/// Dominant frequency estimate from zero crossings of channel 0.
fn frequency(samples: &[i16], rate: u32, channels: u16) -> f32 {
    let ch0: Vec<i16> = samples
        .iter()
        .step_by(usize::from(channels))
        .copied()
        .collect();
    let crossings = ch0.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f32 / 2.0 / (ch0.len() as f32 / rate as f32)
}

fn rms(samples: &[i16]) -> f32 {
    (samples.iter().map(|&s| f32::from(s).powi(2)).sum::<f32>() / samples.len().max(1) as f32)
        .sqrt()
}

#[test]
fn every_client_format_to_every_plugin_format_keeps_length_tone_and_level() {
    for from_enc in PCM {
        for to_enc in PCM {
            for &from_rate in &RATES {
                for &to_rate in &[8_000, 16_000, 24_000] {
                    for (cin, cout) in [(1u16, 1u16), (2, 1)] {
                        let from = fmt(from_enc, from_rate, cin);
                        let to = fmt(to_enc, to_rate, cout);
                        let input = tone(from_rate, cin, 500, 440.0);
                        let bytes = encode(&input, from_enc);
                        let mut bridge = Bridge::new(from, to, 320).unwrap();
                        // Odd chunk sizes: samples and frames split across pushes.
                        let chunks: Vec<&[u8]> = bytes.chunks(333).collect();
                        let frames = run(&mut bridge, &chunks);
                        let mut out: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
                        let label = format!("{from:?} -> {to:?}");
                        if to_enc == AudioEncoding::Wav && from_enc != AudioEncoding::Wav {
                            assert_eq!(&out[..4], b"RIFF", "{label}");
                            out.drain(..44);
                        }
                        let samples = decode(&out, to_enc);
                        let expected = (to_rate / 2) as usize * usize::from(cout);
                        assert!(
                            samples.len().abs_diff(expected) <= usize::from(cout),
                            "{label}: {} samples, expected {expected}",
                            samples.len()
                        );
                        let f = frequency(&samples, to_rate, cout);
                        assert!((f - 440.0).abs() < 15.0, "{label}: {f} Hz");
                        let level = rms(&samples[samples.len() / 5..samples.len() * 4 / 5]);
                        assert!((level - 8_485.0).abs() < 900.0, "{label}: rms {level}");
                        // Every frame but the last has the requested size.
                        let body = if to_enc == AudioEncoding::Wav && from_enc != AudioEncoding::Wav
                        {
                            &frames[1..]
                        } else {
                            &frames[..]
                        };
                        if let Some((_, whole)) = body.split_last() {
                            assert!(whole.iter().all(|f| f.len() == 320), "{label}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_tone_split_across_requests_is_continuous() {
    // Two "sentences" of one continuous tone, cut mid-wave and mid-sample, at 22.05 kHz (a
    // typical engine rate) to a client at 16 kHz: the output must be exactly what converting
    // the whole tone at once gives, i.e. no discontinuity at the boundary.
    let from = fmt(AudioEncoding::Linear16, 22_050, 1);
    let to = fmt(AudioEncoding::Linear16, 16_000, 1);
    let bytes = encode(&tone(22_050, 1, 400, 300.0), AudioEncoding::Linear16);
    let (a, b) = bytes.split_at(4_411);
    let mut whole = Bridge::new(from, to, 0).unwrap();
    let one: Vec<u8> = run(&mut whole, &[&bytes])
        .iter()
        .flat_map(|f| f.to_vec())
        .collect();
    let mut split = Bridge::new(from, to, 0).unwrap();
    let two: Vec<u8> = run(&mut split, &[a, b])
        .iter()
        .flat_map(|f| f.to_vec())
        .collect();
    assert_eq!(one, two);
    // And the signal itself has no jump: neighbouring samples of a 300 Hz tone at 16 kHz
    // differ by at most 2π·300/16000 of the amplitude (plus quantisation).
    let s = decode(&two, AudioEncoding::Linear16);
    let max_step = s[50..s.len() - 50]
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap();
    assert!(max_step < 1_600, "jump of {max_step}");
}

#[test]
fn a_flushed_stream_restarts_cleanly_and_keeps_the_header_single() {
    let from = fmt(AudioEncoding::Linear16, 24_000, 1);
    let to = fmt(AudioEncoding::Wav, 8_000, 1);
    let mut bridge = Bridge::new(from, to, 160).unwrap();
    let chunk = encode(&tone(24_000, 1, 100, 440.0), AudioEncoding::Linear16);
    let first = run(&mut bridge, &[&chunk]);
    let second = run(&mut bridge, &[&chunk]);
    assert_eq!(&first[0][..4], b"RIFF");
    assert!(second.iter().all(|f| &f[..] != b"RIFF" && f.len() <= 160));
    let len = |frames: &[Bytes]| frames.iter().map(|f| f.len()).sum::<usize>();
    assert_eq!(len(&first), 44 + 1_600);
    assert_eq!(len(&second), 1_600);
}

#[test]
fn same_format_passes_through_without_copying() {
    let f = fmt(AudioEncoding::Linear16, 16_000, 1);
    let mut bridge = Bridge::new(f, f, 0).unwrap();
    assert!(bridge.is_passthrough());
    let data = Bytes::from(vec![1u8; 640]);
    let ptr = data.as_ptr();
    let mut got = Vec::new();
    bridge.push(data, &mut |b| got.push(b));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ptr(), ptr);
    // Framed passthrough slices whole frames out of the input.
    let mut framed = Bridge::new(f, f, 320).unwrap();
    let data = Bytes::from(vec![2u8; 700]);
    let ptr = data.as_ptr();
    let mut got = Vec::new();
    framed.push(data, &mut |b| got.push(b));
    assert_eq!(got.iter().map(|b| b.len()).collect::<Vec<_>>(), [320, 320]);
    assert_eq!(got[0].as_ptr(), ptr);
    framed.flush(&mut |b| got.push(b));
    assert_eq!(got[2].len(), 60);
    // Compressed audio the plugin produces in the client's format is never re-framed.
    let mp3 = fmt(AudioEncoding::Mp3, 24_000, 1);
    let mut raw = Bridge::new(mp3, mp3, 320).unwrap();
    let mut got = Vec::new();
    raw.push(Bytes::from(vec![0u8; 1000]), &mut |b| got.push(b));
    assert_eq!(got[0].len(), 1000);
    assert!(Bridge::new(mp3, f, 320).is_err());
}

#[test]
fn negotiation_prefers_the_client_format_then_pcm_at_the_nearest_rate_above() {
    let caps = Capabilities::new()
        .encodings([AudioEncoding::Linear16, AudioEncoding::Mulaw])
        .sample_rates([16_000, 24_000, 48_000]);
    // Exact match: no conversion.
    let c = fmt(AudioEncoding::Mulaw, 16_000, 1);
    assert_eq!(tts_output(&caps, c).unwrap(), c);
    assert_eq!(stt_input(&caps, c).unwrap(), c);
    // A-law at 8 kHz: linear16 at the nearest rate above.
    let c = fmt(AudioEncoding::Alaw, 8_000, 1);
    assert_eq!(
        tts_output(&caps, c).unwrap(),
        fmt(AudioEncoding::Linear16, 16_000, 1)
    );
    // WAV is PCM16 plus a header the core writes.
    let c = fmt(AudioEncoding::Wav, 24_000, 1);
    assert_eq!(
        tts_output(&caps, c).unwrap(),
        fmt(AudioEncoding::Linear16, 24_000, 1)
    );
    // Above every rate: the highest.
    let c = fmt(AudioEncoding::Linear16, 96_000, 1);
    assert_eq!(stt_input(&caps, c).unwrap().sample_rate, 48_000);
    // Channels are mixed down to what the plugin takes.
    let mono = caps.clone().max_channels(1);
    let c = fmt(AudioEncoding::Linear16, 16_000, 2);
    assert_eq!(
        stt_input(&mono, c).unwrap(),
        fmt(AudioEncoding::Linear16, 16_000, 1)
    );
    // A range clamps.
    let ranged = Capabilities::new()
        .encodings([AudioEncoding::Linear16])
        .sample_rate_range(8_000, 24_000);
    let c = fmt(AudioEncoding::Linear16, 44_100, 1);
    assert_eq!(tts_output(&ranged, c).unwrap().sample_rate, 24_000);
    // Compressed: only when the plugin produces exactly that.
    let mp3 = fmt(AudioEncoding::Mp3, 24_000, 1);
    let e = tts_output(&caps, mp3).unwrap_err();
    assert!(e.contains("linear16, mulaw") && e.contains("mp3"), "{e}");
    let mp3_caps = Capabilities::new().encodings([AudioEncoding::Mp3, AudioEncoding::Linear16]);
    assert_eq!(tts_output(&mp3_caps, mp3).unwrap(), mp3);
    // Undeclared means unrestricted.
    assert_eq!(tts_output(&Capabilities::new(), mp3).unwrap(), mp3);
}

#[test]
fn pushing_a_slice_gives_what_pushing_bytes_gives() {
    let pcm = encode(&tone(16_000, 1, 100, 440.0), AudioEncoding::Linear16);
    for to in [
        fmt(AudioEncoding::Linear16, 16_000, 1),
        fmt(AudioEncoding::Mulaw, 8_000, 1),
    ] {
        for frame in [0, 320] {
            let from = fmt(AudioEncoding::Linear16, 16_000, 1);
            let (mut a, mut b) = (
                Bridge::new(from, to, frame).unwrap(),
                Bridge::new(from, to, frame).unwrap(),
            );
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for c in pcm.chunks(333) {
                a.push(Bytes::copy_from_slice(c), &mut |f| x.extend_from_slice(&f));
                b.push_slice(c, &mut |f| y.extend_from_slice(&f));
            }
            a.flush(&mut |f| x.extend_from_slice(&f));
            b.flush(&mut |f| y.extend_from_slice(&f));
            assert_eq!(x, y, "{to:?} frames of {frame}");
            assert!(!x.is_empty());
        }
    }
}
