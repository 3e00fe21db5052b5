//! VAD boundaries on generated speech-like audio and on espeak-ng speech.

mod common;

use common::*;
use serde_json::json;
use waav_plugin_api::{AudioProcessor, ProcessorEvent, ProcessorPlugin};
use waav_processors::{VadPlugin, VadProcessor};

/// Tolerance on every boundary.
const TOLERANCE_MS: f64 = 100.0;

/// Speech stretches (start, end) in seconds, built by concatenating silence and `speech(secs)`.
fn compose(
    rate: u32,
    layout: &[(bool, f64)],
    mut speech: impl FnMut(f64) -> Vec<f64>,
) -> (Vec<f64>, Vec<(f64, f64)>) {
    let mut x = Vec::new();
    let mut truth = Vec::new();
    for &(is_speech, secs) in layout {
        let start = x.len() as f64 / f64::from(rate);
        if is_speech {
            let s = speech(secs);
            x.extend_from_slice(&s);
            truth.push((start, x.len() as f64 / f64::from(rate)));
        } else {
            x.extend(silence(rate, secs));
        }
    }
    (x, truth)
}

/// Runs a VAD over `input` in 20 ms blocks; returns, per event, the event, the boundary the VAD
/// reports (ms) and the time (ms) at the end of the block it was decided in.
fn detect(
    vad: &mut VadProcessor,
    input: &[i16],
    rate: u32,
    channels: u16,
) -> Vec<(ProcessorEvent, f64, f64)> {
    let ch = usize::from(channels);
    let block = rate as usize / 50;
    let mut found = Vec::new();
    let mut buf = waav_plugin_api::AudioBuffer::with_capacity(rate, channels, block * ch);
    let mut events = Vec::new();
    let mut pos = 0usize;
    for chunk in input.chunks(block * ch) {
        buf.samples.clear();
        buf.samples.extend_from_slice(chunk);
        events.clear();
        vad.process(&mut buf, &mut events).unwrap();
        assert_eq!(buf.samples, chunk, "the VAD must not change the audio");
        pos += chunk.len() / ch;
        assert!(events.len() <= 1, "two boundaries within one 20 ms block");
        for e in &events {
            let at = pos as f64 * 1000.0 / f64::from(rate);
            found.push((*e, vad.last_boundary_ms().unwrap(), at));
        }
    }
    found
}

fn check(
    name: &str,
    found: &[(ProcessorEvent, f64, f64)],
    truth: &[(f64, f64)],
    min_speech_ms: f64,
    min_silence_ms: f64,
) {
    eprintln!("{name}: truth {truth:?}");
    for f in found {
        eprintln!("{name}:   {f:?}");
    }
    assert_eq!(found.len(), truth.len() * 2, "{name}: events {found:?}");
    for (i, &(start, end)) in truth.iter().enumerate() {
        let (e1, b1, at1) = found[2 * i];
        let (e2, b2, at2) = found[2 * i + 1];
        assert_eq!(e1, ProcessorEvent::SpeechStarted, "{name}");
        assert_eq!(e2, ProcessorEvent::SpeechEnded, "{name}");
        let (start, end) = (start * 1000.0, end * 1000.0);
        assert!(
            (b1 - start).abs() <= TOLERANCE_MS,
            "{name}: start {b1} vs {start}"
        );
        assert!(
            (b2 - end).abs() <= TOLERANCE_MS,
            "{name}: end {b2} vs {end}"
        );
        // The decision comes min_speech / min_silence after the boundary, plus framing and,
        // for the end, earshot's score decay (documented: up to ~150 ms).
        let lag_start = at1 - start - min_speech_ms;
        let lag_end = at2 - end - min_silence_ms;
        assert!(
            (-TOLERANCE_MS..=TOLERANCE_MS + 40.0).contains(&lag_start),
            "{name}: start decided at {at1} for {start}"
        );
        assert!(
            (-TOLERANCE_MS..=TOLERANCE_MS + 150.0).contains(&lag_end),
            "{name}: end decided at {at2} for {end}"
        );
    }
}

const LAYOUT: [(bool, f64); 7] = [
    (false, 1.0),
    (true, 1.5),
    (false, 1.0),
    (true, 0.9),
    (false, 0.8),
    (true, 2.0),
    (false, 1.0),
];

#[test]
fn fires_on_voiced_speech_like_audio_at_16k() {
    let rate = 16_000;
    let mut seed = 0;
    let (x, truth) = compose(rate, &LAYOUT, |secs| {
        seed += 1;
        voiced(rate, secs, 0.5, seed)
    });
    let mut vad = VadProcessor::new(&ctx(rate, 1), &cfg(json!({}))).unwrap();
    let found = detect(&mut vad, &to_i16(&x), rate, 1);
    check("voiced 16k", &found, &truth, 100.0, 300.0);
}

#[test]
fn any_rate_and_channels_48k_stereo_and_8k() {
    for (rate, channels) in [(48_000u32, 2u16), (8_000, 1), (44_100, 1)] {
        let mut seed = 10;
        let (x, truth) = compose(rate, &LAYOUT, |secs| {
            seed += 1;
            voiced(rate, secs, 0.4, seed)
        });
        let mono = to_i16(&x);
        let input = if channels == 2 {
            interleave(&mono, &mono)
        } else {
            mono
        };
        let mut vad = VadProcessor::new(
            &ctx(rate, channels),
            &cfg(json!({"min_speech_ms": 64, "min_silence_ms": 250})),
        )
        .unwrap();
        let found = detect(&mut vad, &input, rate, channels);
        check(
            &format!("voiced {rate} Hz x{channels}"),
            &found,
            &truth,
            64.0,
            250.0,
        );
    }
}

#[test]
fn silence_and_noise_do_not_fire() {
    let rate = 16_000;
    let mut vad = VadPlugin
        .create(&ctx(rate, 1), &cfg(json!({"threshold": 0.5})))
        .unwrap();
    let mut rng = Noise::new(7);
    let mut x: Vec<i16> = vec![0; rate as usize * 2];
    x.extend((0..rate * 3).map(|_| (rng.next() * 300.0) as i16));
    let (_, events) = run(vad.as_mut(), &x, rate, 1, 320);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn short_blips_are_ignored_by_min_speech() {
    // 60 ms of voice is below min_speech_ms = 200.
    let rate = 16_000;
    let mut x = silence(rate, 1.0);
    x.extend(voiced(rate, 0.06, 0.5, 3));
    x.extend(silence(rate, 1.0));
    let mut vad = VadProcessor::new(&ctx(rate, 1), &cfg(json!({"min_speech_ms": 200}))).unwrap();
    let found = detect(&mut vad, &to_i16(&x), rate, 1);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn reset_forgets_speech() {
    let rate = 16_000;
    let mut x = silence(rate, 0.5);
    x.extend(voiced(rate, 1.0, 0.5, 4));
    let mut vad = VadProcessor::new(&ctx(rate, 1), &cfg(json!({}))).unwrap();
    let found = detect(&mut vad, &to_i16(&x), rate, 1);
    assert_eq!(found.len(), 1);
    assert!(vad.in_speech());
    vad.reset();
    assert!(!vad.in_speech());
    assert_eq!(vad.scored_ms(), 0.0);
}

#[test]
fn fires_on_espeak_speech_with_silence_gaps() {
    if !espeak_or_skip("fires_on_espeak_speech_with_silence_gaps") {
        return;
    }
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Please call me back tomorrow morning.",
        "It is raining in Paris today.",
    ];
    let mut rate = 0;
    let mut clips = Vec::new();
    for s in sentences {
        let (pcm, r) = waav_local::espeak_synthesize(s, "en-us", 130).expect("espeak-ng");
        rate = r;
        clips.push(pcm);
    }
    // Ground truth from the clean audio: first and last 10 ms window above -45 dBFS RMS.
    let win = rate as usize / 100;
    let active = |pcm: &[i16]| -> (usize, usize) {
        let loud: Vec<usize> = pcm
            .chunks(win)
            .enumerate()
            .filter(|(_, c)| rms_dbfs(c) > -45.0)
            .map(|(i, _)| i)
            .collect();
        (loud[0] * win, (loud[loud.len() - 1] + 1) * win)
    };
    let mut x: Vec<i16> = vec![0; rate as usize];
    let mut truth = Vec::new();
    for pcm in &clips {
        let (a, b) = active(pcm);
        let off = x.len();
        truth.push((
            (off + a) as f64 / f64::from(rate),
            (off + b) as f64 / f64::from(rate),
        ));
        x.extend_from_slice(pcm);
        x.extend(std::iter::repeat_n(0, rate as usize * 6 / 5));
    }
    // espeak pauses briefly between words; 300 ms of silence ends an utterance.
    let mut vad = VadProcessor::new(&ctx(rate, 1), &cfg(json!({}))).unwrap();
    let found = detect(&mut vad, &x, rate, 1);
    check(&format!("espeak {rate} Hz"), &found, &truth, 100.0, 300.0);
}

/// Mean lag (ms) of the end decisions behind the true ends, past `min_silence_ms`.
fn end_lag(found: &[(ProcessorEvent, f64, f64)], truth: &[(f64, f64)], min_silence: f64) -> f64 {
    let ends: Vec<f64> = found
        .iter()
        .filter(|f| f.0 == ProcessorEvent::SpeechEnded)
        .map(|f| f.2)
        .collect();
    assert_eq!(ends.len(), truth.len(), "{found:?}");
    ends.iter()
        .zip(truth)
        .map(|(at, (_, end))| at - end * 1000.0 - min_silence)
        .sum::<f64>()
        / ends.len() as f64
}

/// In clean audio the energy gate (`quiet_db`) counts the silence from the voice's end, not from
/// where earshot's decaying score crosses `neg_threshold`; under a noise floor closer to the
/// voice than `quiet_db` the gate stays shut and the score alone decides, as with the gate off.
#[test]
fn the_quiet_gate_ends_speech_where_the_voice_ends() {
    let rate = 16_000;
    let voice = |noise_amp: f64| {
        let mut seed = 20;
        let (mut x, truth) = compose(rate, &LAYOUT, |secs| {
            seed += 1;
            voiced(rate, secs, 0.5, seed)
        });
        let mut rng = Noise::new(3);
        for s in &mut x {
            *s += rng.next() * noise_amp;
        }
        (to_i16(&x), truth)
    };
    let events = |input: &[i16], config: serde_json::Value| {
        let mut vad = VadProcessor::new(&ctx(rate, 1), &cfg(config)).unwrap();
        detect(&mut vad, input, rate, 1)
    };
    let lag = |input: &[i16], truth: &[(f64, f64)], config: serde_json::Value| {
        let found = events(input, config);
        check("quiet gate", &found, truth, 100.0, 300.0);
        end_lag(&found, truth, 300.0)
    };
    let (clean, truth) = voice(0.0);
    let gated = lag(&clean, &truth, json!({}));
    let score_only = lag(&clean, &truth, json!({ "quiet_db": 0 }));
    eprintln!("clean: end decided {gated:.0} ms (gate) / {score_only:.0} ms (score only) past min_silence");
    assert!(
        gated <= 50.0,
        "the gate should end within ~3 frames: {gated}"
    );
    assert!(
        score_only - gated >= 50.0,
        "the score alone decays later: {score_only} vs {gated}"
    );
    // White noise ~31 dB below the loudest voiced frame (−45 dBFS RMS): the gate never opens.
    let (noisy, truth) = voice(0.01);
    let noisy_gated = events(&noisy, json!({}));
    assert_eq!(noisy_gated.len(), truth.len() * 2, "{noisy_gated:?}");
    assert_eq!(
        noisy_gated,
        events(&noisy, json!({ "quiet_db": 0 })),
        "a noise floor above the gate keeps it shut"
    );
}
