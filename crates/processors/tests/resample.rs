//! Resampling keeps frequency and length, and is continuous across blocks.

mod common;

use common::*;
use serde_json::json;
use waav_plugin_api::{AudioBuffer, AudioProcessor, ProcessorPlugin};
use waav_processors::{ResamplePlugin, ResampleProcessor};

fn resampler(from: u32, to: u32, channels: u16) -> Box<dyn AudioProcessor> {
    ResamplePlugin
        .create(&ctx(from, channels), &cfg(json!({"to_rate": to})))
        .unwrap()
}

#[test]
fn keeps_frequency_and_exact_length_for_20ms_frames() {
    for (from, to) in [
        (16_000u32, 48_000u32),
        (48_000, 16_000),
        (8_000, 16_000),
        (44_100, 16_000),
        (22_050, 48_000),
        (24_000, 8_000),
        (16_000, 192_000),
    ] {
        let mut p = resampler(from, to, 1);
        let secs = 2;
        let input = sine(from, 440.0, 0.5, from as usize * secs);
        let block = from as usize / 50;
        let mut buf = AudioBuffer::with_capacity(from, 1, block * 16);
        let mut out = Vec::new();
        for chunk in input.chunks(block) {
            buf.samples.clear();
            buf.samples.extend_from_slice(chunk);
            buf.sample_rate = from;
            p.process(&mut buf, &mut Vec::new()).unwrap();
            assert_eq!(buf.sample_rate, to);
            assert_eq!(buf.channels, 1);
            // 20 ms in, exactly 20 ms out, every frame.
            assert_eq!(buf.samples.len(), to as usize / 50, "{from}->{to}");
            out.extend_from_slice(&buf.samples);
        }
        assert_eq!(out.len(), to as usize * secs);
        let steady = &out[to as usize / 10..];
        let zc = zero_crossing_freq(steady, to);
        assert!((zc - 440.0).abs() < 1.0, "{from}->{to}: {zc} Hz");
        let peak = peak_freq(&steady[..to as usize / 2], to, 200.0, 1000.0);
        assert!((peak - 440.0).abs() <= 5.0, "{from}->{to}: peak {peak} Hz");
        // Level is kept (0.5 of full scale → RMS −9 dBFS).
        let lvl = rms_dbfs(steady);
        assert!((lvl - (-9.03)).abs() < 0.3, "{from}->{to}: {lvl} dBFS");
        assert!(p.latency() > std::time::Duration::ZERO);
        assert!(p.latency() < std::time::Duration::from_millis(30));
    }
}

#[test]
fn split_equals_unsplit() {
    for (from, to, ch) in [
        (16_000u32, 48_000u32, 1u16),
        (48_000, 16_000, 2),
        (44_100, 16_000, 1),
    ] {
        let n = from as usize; // 1 s
        let l = sine(from, 300.0, 0.4, n);
        let r = sine(from, 1250.0, 0.3, n);
        let input = if ch == 2 { interleave(&l, &r) } else { l };
        let mut whole = resampler(from, to, ch);
        let (reference, _) = run(whole.as_mut(), &input, from, ch, n);
        for block in [1usize, 7, 160, 333, 1000, 4410] {
            let mut p = resampler(from, to, ch);
            let (out, _) = run(p.as_mut(), &input, from, ch, block);
            assert_eq!(out.len(), reference.len(), "{from}->{to} block {block}");
            assert!(
                out == reference,
                "{from}->{to} x{ch}: block {block} differs"
            );
        }
        // Everything but the last partial chunk came out.
        let chunk = (from as usize / 100) as f64;
        let expected = (n as f64 / chunk).floor() * chunk * f64::from(to) / f64::from(from);
        assert_eq!(reference.len(), expected as usize * usize::from(ch));
    }
}

#[test]
fn stereo_channels_stay_apart() {
    let (from, to) = (48_000, 16_000);
    let n = from as usize;
    let input = interleave(&sine(from, 500.0, 0.4, n), &sine(from, 1500.0, 0.4, n));
    let mut p = resampler(from, to, 2);
    let (out, _) = run(p.as_mut(), &input, from, 2, 960);
    let l = channel(&out, 2, 0);
    let r = channel(&out, 2, 1);
    assert!((zero_crossing_freq(&l[1600..], to) - 500.0).abs() < 1.0);
    assert!((zero_crossing_freq(&r[1600..], to) - 1500.0).abs() < 1.0);
}

#[test]
fn odd_rate_pairs_fall_back_and_keep_length_over_time() {
    let (from, to) = (8_001, 16_000);
    let mut p = resampler(from, to, 1);
    let n = from as usize * 2;
    let input = sine(from, 440.0, 0.5, n);
    let (out, _) = run(p.as_mut(), &input, from, 1, 160);
    let expected = n as f64 * f64::from(to) / f64::from(from);
    assert!(
        (out.len() as f64 - expected).abs() < 200.0,
        "{} vs {expected}",
        out.len()
    );
    let zc = zero_crossing_freq(&out[3200..], to);
    assert!((zc - 440.0).abs() < 1.5, "{zc}");
}

#[test]
fn same_rate_passes_through_and_format_changes_rebuild() {
    let mut p = ResampleProcessor::new(&ctx(16_000, 1), &cfg(json!({"to_rate": 16_000}))).unwrap();
    let x = sine(16_000, 440.0, 0.5, 320);
    let mut buf = AudioBuffer {
        samples: x.clone(),
        sample_rate: 16_000,
        channels: 1,
    };
    p.process(&mut buf, &mut Vec::new()).unwrap();
    assert_eq!(buf.samples, x);
    assert_eq!(p.latency(), std::time::Duration::ZERO);
    // A 48 kHz block reaching a 16 kHz-configured resampler is converted, not refused.
    let mut buf = AudioBuffer {
        samples: sine(48_000, 440.0, 0.5, 960),
        sample_rate: 48_000,
        channels: 1,
    };
    p.process(&mut buf, &mut Vec::new()).unwrap();
    assert_eq!((buf.sample_rate, buf.samples.len()), (16_000, 320));
    // A partial sample frame is an error, not silent corruption.
    let mut bad = AudioBuffer {
        samples: vec![0; 3],
        sample_rate: 48_000,
        channels: 2,
    };
    assert!(p.process(&mut bad, &mut Vec::new()).is_err());
}

#[test]
fn reset_restarts_cleanly() {
    let mut a = resampler(16_000, 48_000, 1);
    let x = sine(16_000, 440.0, 0.5, 16_000);
    let (first, _) = run(a.as_mut(), &x, 16_000, 1, 320);
    a.reset();
    let (second, _) = run(a.as_mut(), &x, 16_000, 1, 320);
    assert_eq!(first, second);
}
