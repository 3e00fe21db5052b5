//! Denoise raises the SNR of speech in white noise, with the latency it reports.

mod common;

use common::*;
use serde_json::json;
use waav_plugin_api::{AudioProcessor, ProcessorPlugin};
use waav_processors::{DenoisePlugin, DenoiseProcessor};

/// Runs the denoiser over `clean` plus white noise at `noise_amp`; returns (SNR in, SNR out,
/// measured delay in samples, reported delay in samples).
fn measure(rate: u32, channels: u16, clean: &[f64], noise_amp: f64, block: usize) -> (f64, f64) {
    let mut rng = Noise::new(99);
    let ch = usize::from(channels);
    let noisy: Vec<f64> = clean.iter().map(|c| c + noise_amp * rng.next()).collect();
    let mono = to_i16(&noisy);
    let input: Vec<i16> = mono
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, ch))
        .collect();
    let mut p = DenoiseProcessor::new(&ctx(rate, channels), &cfg(json!({}))).unwrap();
    let (out, _) = run(&mut p, &input, rate, channels, block);
    assert_eq!(out.len(), input.len(), "denoise keeps the length");
    assert_eq!(p.underruns(), 0, "output FIFO ran dry");
    let lat = (p.latency().as_secs_f64() * f64::from(rate)).round() as usize;
    let outf: Vec<f64> = channel(&out, ch, 0)
        .iter()
        .map(|&s| f64::from(s) / 32767.0)
        .collect();
    // The output lags by exactly the reported latency: check by cross-correlation.
    let best = (lat.saturating_sub(40)..lat + 40)
        .max_by(|&a, &b| {
            let c = |d: usize| -> f64 { clean.iter().zip(&outf[d..]).map(|(x, y)| x * y).sum() };
            c(a).total_cmp(&c(b))
        })
        .unwrap();
    assert!(
        best.abs_diff(lat) <= 2,
        "{rate} Hz: output lags {best} samples, latency() says {lat}"
    );
    // Skip the first half second (RNNoise adapts its noise estimate).
    let skip = rate as usize / 2;
    let n = clean.len() - lat;
    let snr_in = snr_db(&clean[skip..n], &noisy[skip..n]);
    let snr_out = snr_db(&clean[skip..n], &outf[skip + lat..n + lat]);
    (snr_in, snr_out)
}

fn speech_with_pauses(rate: u32) -> Vec<f64> {
    let mut clean = silence(rate, 0.3);
    for (i, secs) in [1.2, 0.8, 1.5].iter().enumerate() {
        clean.extend(voiced(rate, *secs, 0.5, 20 + i as u64));
        clean.extend(silence(rate, 0.4));
    }
    clean
}

#[test]
fn raises_snr_on_speech_like_audio_in_white_noise() {
    for (rate, channels, block) in [
        (48_000u32, 1u16, 960usize),
        (16_000, 1, 320),
        (8_000, 1, 160),
        (44_100, 1, 441),
        (48_000, 2, 480),
        (16_000, 1, 137),
    ] {
        let clean = speech_with_pauses(rate);
        let (snr_in, snr_out) = measure(rate, channels, &clean, 0.08, block);
        eprintln!("{rate} Hz x{channels} block {block}: SNR {snr_in:.1} dB → {snr_out:.1} dB");
        assert!(
            snr_out >= snr_in + 3.0,
            "{rate} Hz x{channels}: SNR {snr_in:.1} → {snr_out:.1} dB"
        );
    }
}

#[test]
fn raises_snr_on_espeak_speech() {
    if !espeak_or_skip("raises_snr_on_espeak_speech") {
        return;
    }
    let (pcm, rate) = waav_local::espeak_synthesize(
        "Noise suppression should keep the voice and remove the hiss around it.",
        "en-us",
        130,
    )
    .expect("espeak-ng");
    let mut clean = silence(rate, 0.5);
    clean.extend(pcm.iter().map(|&s| f64::from(s) / 32767.0 * 0.8));
    clean.extend(silence(rate, 0.3));
    let (snr_in, snr_out) = measure(rate, 1, &clean, 0.06, rate as usize / 50);
    eprintln!("espeak {rate} Hz: SNR {snr_in:.1} dB → {snr_out:.1} dB");
    assert!(snr_out >= snr_in + 3.0, "SNR {snr_in:.1} → {snr_out:.1} dB");
}

#[test]
fn silence_stays_silent_and_latency_is_reported() {
    let rate = 16_000;
    let mut p = DenoisePlugin
        .create(&ctx(rate, 1), &cfg(json!({})))
        .unwrap();
    let lat = p.latency();
    assert!(
        lat > std::time::Duration::from_millis(10) && lat < std::time::Duration::from_millis(60),
        "{lat:?}"
    );
    let (out, events) = run(p.as_mut(), &vec![0i16; rate as usize], rate, 1, 320);
    assert!(events.is_empty());
    assert!(out.iter().all(|&s| s.abs() <= 1));
    let mut p48 = DenoisePlugin
        .create(&ctx(48_000, 1), &cfg(json!({})))
        .unwrap();
    assert!(
        p48.latency() <= std::time::Duration::from_millis(21),
        "{:?}",
        p48.latency()
    );
    p48.reset();
}

#[test]
fn mix_keeps_part_of_the_dry_signal_aligned() {
    let rate = 48_000;
    let clean = speech_with_pauses(rate);
    let x = to_i16(&clean);
    let mut full = DenoiseProcessor::new(&ctx(rate, 1), &cfg(json!({}))).unwrap();
    let mut half = DenoiseProcessor::new(&ctx(rate, 1), &cfg(json!({"mix": 0.0}))).unwrap();
    let (_, _) = run(&mut full, &x, rate, 1, 960);
    let (dry, _) = run(&mut half, &x, rate, 1, 960);
    // mix 0 is the input, delayed by the latency.
    let lat = (half.latency().as_secs_f64() * f64::from(rate)).round() as usize;
    assert_eq!(&dry[lat..], &x[..x.len() - lat]);
}
