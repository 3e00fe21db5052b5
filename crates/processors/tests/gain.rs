//! Fixed gain is exact; the AGC converges; the limiter never clips.

mod common;

use common::*;
use serde_json::json;
use waav_plugin_api::{AudioProcessor, ProcessorPlugin};
use waav_processors::{GainPlugin, GainProcessor};

fn gain(rate: u32, ch: u16, v: serde_json::Value) -> Box<dyn AudioProcessor> {
    GainPlugin.create(&ctx(rate, ch), &cfg(v)).unwrap()
}

#[test]
fn fixed_gain_is_exact() {
    let x: Vec<i16> = (-16_000..16_000).step_by(7).collect();
    for db in [0.0f64, 6.0206, -6.0206, 12.5, -40.0, 3.3] {
        let mut p = gain(16_000, 1, json!({"mode": "fixed", "gain_db": db}));
        let (out, events) = run(p.as_mut(), &x, 16_000, 1, 320);
        assert!(events.is_empty());
        let g = 10f64.powf(db / 20.0);
        for (i, (&a, &b)) in x.iter().zip(&out).enumerate() {
            let want = (f64::from(a) * g).clamp(-32768.0, 32767.0);
            assert!(
                (f64::from(b) - want).abs() <= 0.5 + want.abs() * 1e-6,
                "{db} dB sample {i}: {a} -> {b}, want {want}"
            );
        }
    }
    // 0 dB is the identity; +6.02 dB doubles exactly.
    let mut p = gain(16_000, 1, json!({"gain_db": 20.0 * 2f64.log10()}));
    let (out, _) = run(p.as_mut(), &x, 16_000, 1, 320);
    assert!(x
        .iter()
        .zip(&out)
        .all(|(&a, &b)| i32::from(b) == 2 * i32::from(a)));
    // Beyond full scale saturates.
    let mut p = gain(16_000, 1, json!({"gain_db": 40}));
    let (out, _) = run(p.as_mut(), &[1000, -1000, 100], 16_000, 1, 320);
    assert_eq!(out, vec![32767, -32768, 10000]);
}

#[test]
fn agc_converges_toward_target() {
    let rate = 16_000;
    for (level, target) in [(0.01f64, -20.0f64), (0.5, -20.0), (0.03, -26.0)] {
        let mut p = gain(rate, 1, json!({"mode": "agc", "target_dbfs": target}));
        let x = sine(rate, 300.0, level, rate as usize * 4);
        let before = rms_dbfs(&x);
        let (out, _) = run(p.as_mut(), &x, rate, 1, 320);
        let after = rms_dbfs(&out[rate as usize * 3..]);
        assert!(
            (after - target).abs() < 1.0,
            "input {before:.1} dBFS → {after:.1} dBFS, target {target}"
        );
    }
}

#[test]
fn agc_respects_max_gain_and_holds_in_silence() {
    let rate = 16_000;
    let mut p = GainProcessor::new(
        &ctx(rate, 1),
        &cfg(json!({"mode": "agc", "max_gain_db": 10})),
    )
    .unwrap();
    // −60 dBFS sine: would need +40 dB; gets at most +10 dB.
    let x = sine(rate, 300.0, 0.0014, rate as usize * 3);
    let (out, _) = run(&mut p, &x, rate, 1, 320);
    let gained = rms_dbfs(&out[rate as usize * 2..]) - rms_dbfs(&x[rate as usize * 2..]);
    assert!(gained <= 10.5, "{gained}");
    // True silence (below the gate) does not pump the gain.
    let mut p = GainProcessor::new(&ctx(rate, 1), &cfg(json!({"mode": "agc"}))).unwrap();
    run(&mut p, &vec![0i16; rate as usize * 2], rate, 1, 320);
    assert!(p.current_gain_db().abs() < 0.01, "{}", p.current_gain_db());
}

#[test]
fn limiter_never_clips_on_a_full_scale_burst() {
    for ch in [1u16, 2] {
        let rate = 48_000;
        let mut p = gain(
            rate,
            ch,
            json!({"mode": "agc", "max_gain_db": 40, "release_ms": 100}),
        );
        // Two seconds of quiet voice (the AGC boosts it a lot), then a full-scale burst.
        let mut x = to_i16(&voiced(rate, 2.0, 0.01, 5));
        x.extend(std::iter::repeat_n([32767i16, -32768], rate as usize / 4).flatten());
        x.extend(to_i16(&voiced(rate, 0.5, 0.9, 6)));
        x.extend(sine(rate, 1000.0, 1.0, rate as usize / 4));
        let input = if ch == 2 { interleave(&x, &x) } else { x };
        let (out, _) = run(p.as_mut(), &input, rate, ch, 960);
        let ceiling = (10f64.powf(-1.0 / 20.0) * 32767.0).round() as i32;
        let peak = out.iter().map(|&s| i32::from(s).abs()).max().unwrap();
        assert!(
            peak <= ceiling,
            "peak {peak} over the −1 dBFS ceiling {ceiling}"
        );
        assert!(
            peak > ceiling - 2000,
            "the burst was squashed too far: {peak}"
        );
        assert!(!out.contains(&i16::MAX) && !out.contains(&i16::MIN));
    }
}

#[test]
fn reset_restores_unity_gain() {
    let rate = 16_000;
    let mut p = GainProcessor::new(&ctx(rate, 1), &cfg(json!({"mode": "agc"}))).unwrap();
    run(
        &mut p,
        &sine(rate, 300.0, 0.01, rate as usize * 2),
        rate,
        1,
        320,
    );
    assert!(p.current_gain_db() > 10.0);
    p.reset();
    assert_eq!(p.current_gain_db(), 0.0);
}
