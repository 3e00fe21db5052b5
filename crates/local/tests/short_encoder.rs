//! Whisper's encoder on short windows: transcripts of short Piper sentences encoded in a window
//! the length of the utterance (the default) match those of the reference 30 s window.
#![cfg(all(feature = "whisper", feature = "piper"))]

mod common;

use std::time::Instant;

use common::*;
use waav_local::whisper::{DEFAULT_MIN_WINDOW_MS, GREEDY_REPETITION_PENALTY};
use waav_local::{to_mono_16k, WhisperEngine};

/// Sentences Piper speaks in about 1–2.5 s, as a voice agent hears them.
pub const SENTENCES: &[&str] = &[
    "Hello, how are you today?",
    "Please book a table for two.",
    "What time does the store open?",
    "I would like to check my balance.",
    "Can you call me back tomorrow?",
    "Turn off the lights in the kitchen.",
    "Yes.",
    FOX,
];

fn speech(text: &str) -> Option<Vec<f32>> {
    let paths = models_or_skip()?;
    if !espeak_or_skip() {
        return None;
    }
    let voice = piper(&paths);
    let audio = voice.synthesize(text, None).expect("synthesize");
    Some(to_mono_16k(&audio, voice.sample_rate(), 1))
}

fn engine(min_window_ms: Option<u32>) -> WhisperEngine {
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let mut e = WhisperEngine::load(model_paths().whisper_dir(), threads).expect("load whisper");
    e.set_min_window_ms(min_window_ms);
    e
}

#[test]
fn short_window_transcripts_match_the_30s_window() {
    let Some(_) = speech("Warm up.") else { return };
    let short = engine(Some(DEFAULT_MIN_WINDOW_MS));
    let long = engine(None);
    assert_eq!(short.min_window_ms(), Some(DEFAULT_MIN_WINDOW_MS));
    let (mut short_ms, mut long_ms) = (0u128, 0u128);
    for text in SENTENCES {
        let pcm = speech(text).expect("checked above");
        let t0 = Instant::now();
        let a = long.transcribe(&pcm).expect("long window");
        long_ms += t0.elapsed().as_millis();
        let t0 = Instant::now();
        let b = short.transcribe(&pcm).expect("short window");
        short_ms += t0.elapsed().as_millis();
        eprintln!(
            "{:.2} s {text:?}: 30 s window {a:?}, short {b:?}",
            pcm.len() as f32 / 16_000.0
        );
        assert_transcript(text, &a, "30 s window");
        assert_transcript(text, &b, "short window");
        // The same words, not only both close to the text.
        assert!(
            word_match(&a, &b) >= 0.8 && word_match(&b, &a) >= 0.8,
            "{text:?}: 30 s window {a:?} vs short window {b:?}"
        );
    }
    // Informative only (no timing assertions in tests): the cost the short window saves.
    eprintln!("total decode: 30 s windows {long_ms} ms, short windows {short_ms} ms");
}

/// Utterances that go past the floor still get all their words (the window grows with them),
/// and silence stays silence. (Two different sentences: one said twice would be collapsed to
/// one copy, the documented cost of the repeat guard.)
#[test]
fn a_window_grows_with_the_utterance() {
    let Some(one) = speech(FOX) else { return };
    let other = "Please call me back after lunch.";
    let short = engine(Some(1_000));
    let mut two = one.clone();
    two.extend(vec![0.0; 8_000]);
    two.extend(speech(other).expect("checked above"));
    let text = short.transcribe(&two).expect("transcribe");
    let expected = format!("{FOX} {other}");
    assert_transcript(&expected, &text, "two sentences in a grown window");
    assert_eq!(short.transcribe(&vec![0.0; 16_000]).expect("silence"), "");
}

/// Prints word matches (both ways, so a repeated sentence counts against) and decode times per
/// window floor and pad, to choose the defaults. Run with `FLOORS=0,2000,3000 PADS=300,1000
/// cargo test --release -p waav-local --test short_encoder -- --ignored --nocapture`.
#[test]
#[ignore = "exploration: prints quality and cost per window floor"]
fn sweep_window_floor() {
    let Some(_) = speech("Warm up.") else { return };
    let list = |var: &str, default: &str| -> Vec<u32> {
        std::env::var(var)
            .unwrap_or_else(|_| default.to_owned())
            .split(',')
            .filter_map(|f| f.parse().ok())
            .collect()
    };
    let mut clips: Vec<(String, Vec<f32>)> = SENTENCES
        .iter()
        .map(|t| (t.to_string(), speech(t).unwrap()))
        .collect();
    clips.extend(
        [
            "Well, I am not sure about that.",
            "Send the report to my manager.",
            "No.",
            "Okay, thanks.",
        ]
        .iter()
        .map(|t| (t.to_string(), speech(t).unwrap())),
    );
    for floor in list("FLOORS", "0,2000,3000") {
        for pad in list("PADS", "300,1000") {
            let mut e = engine((floor > 0).then_some(floor));
            e.set_window_pad_ms(pad);
            e.transcribe(&clips[0].1).unwrap();
            let (mut score, mut ms) = (0.0, 0u128);
            for (text, pcm) in &clips {
                // The best of two runs: the machine may be busy with other work.
                let mut best = u128::MAX;
                let mut got = String::new();
                for _ in 0..2 {
                    let t0 = Instant::now();
                    got = e.transcribe(pcm).unwrap();
                    best = best.min(t0.elapsed().as_millis());
                }
                ms += best;
                let s = word_match(text, &got).min(word_match(&got, text));
                if s < 1.0 {
                    eprintln!("  floor {floor} pad {pad}: {text:?} -> {got:?}");
                }
                score += s;
            }
            eprintln!(
                "floor {floor} pad {pad}: mean word match {:.3}, {:.0} ms per clip",
                score / clips.len() as f32,
                ms as f32 / clips.len() as f32
            );
            if floor == 0 {
                break;
            }
        }
    }
}

/// What the engine counted while decoding `clips`, with a recorder local to this thread.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Short-window decodes that said their text again (collapsed to one copy).
    repeats: u64,
    /// Short-window decodes that ran into the token cap (decoded again on 30 s).
    retries: u64,
    /// Tokens the short windows generated: the decoder's cost.
    short_tokens: u64,
    /// Loop probes that ran out on dense speech, not a loop (decoded again).
    probe_misses: u64,
    /// Provisional decodes' windows left without text instead of a 30 s retry.
    skips: u64,
}

fn counts(engine: &WhisperEngine, clips: &[Vec<f32>]) -> Counts {
    counts_of(clips, |clip| {
        engine.transcribe(clip).expect("transcribe");
    })
}

fn counts_of(clips: &[Vec<f32>], mut decode: impl FnMut(&[f32])) -> Counts {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        for clip in clips {
            decode(clip);
        }
    });
    let mut c = Counts::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key = key.key();
        match key.name() {
            "waav_local_whisper_repeats_collapsed_total" => c.repeats += n,
            "waav_local_whisper_window_retries_total" => c.retries += n,
            "waav_local_whisper_probe_misses_total" => c.probe_misses += n,
            "waav_local_whisper_provisional_skips_total" => c.skips += n,
            "waav_local_whisper_tokens_total"
                if key
                    .labels()
                    .any(|l| l.key() == "window" && l.value() == "short") =>
            {
                c.short_tokens += n
            }
            _ => {}
        }
    }
    c
}

/// What interims decode: the first 0.3–0.9 s of each sentence after 0.46 s of lead-in (the
/// pre-roll before the VAD decided), decoded greedily on the short window as the fast profile
/// does. Decoded straight to the token cap, tiny.en says many of them again and again up to it
/// (several times the decode's cost). The engine's loop probe (a first decode of only as many
/// tokens as dense speech needs) stops those loops early and keeps every word of the whole
/// sentences. The repetition penalty ([`GREEDY_REPETITION_PENALTY`], opt-in) stops loops too,
/// but drops a word said twice ("turn off the lights in" for "… in the kitchen"): printed.
#[test]
fn the_loop_probe_stops_short_window_loops() {
    let Some(_) = speech("Warm up.") else { return };
    let mut sentences = Vec::new();
    let mut prefixes = Vec::new();
    for text in &SENTENCES[..6] {
        let pcm = speech(text).expect("checked above");
        for ms in [300, 500, 700, 900] {
            let mut clip = vec![0.0; 460 * 16];
            clip.extend_from_slice(&pcm[..(ms * 16).min(pcm.len())]);
            prefixes.push(clip);
        }
        sentences.push((text, pcm));
    }
    let mut e = engine(Some(DEFAULT_MIN_WINDOW_MS));
    e.set_beam_size(1);
    e.set_loop_probe(false);
    let unguarded = counts(&e, &prefixes);
    e.set_short_repetition_penalty(GREEDY_REPETITION_PENALTY);
    let penalised = counts(&e, &prefixes);
    for (text, pcm) in &sentences {
        let got = e.transcribe(pcm).expect("transcribe");
        eprintln!("{text:?} with the penalty: {got:?}");
    }
    e.set_short_repetition_penalty(1.0);
    e.set_loop_probe(true);
    let probed = counts(&e, &prefixes);
    eprintln!(
        "{} prefixes: to the cap {unguarded:?}; penalty {penalised:?}; loop probe {probed:?}",
        prefixes.len()
    );
    assert!(
        unguarded.retries + unguarded.repeats > 2,
        "the loop this guards against did not occur"
    );
    assert!(
        (penalised.retries + penalised.repeats) * 4 <= unguarded.retries + unguarded.repeats,
        "the penalty did not stop most loops"
    );
    assert!(
        probed.retries <= unguarded.retries,
        "the probe sent more decodes to the 30 s window"
    );
    assert!(
        probed.short_tokens * 2 <= unguarded.short_tokens,
        "the probe did not halve the tokens decoded"
    );
    for (text, pcm) in &sentences {
        let got = e.transcribe(pcm).expect("transcribe");
        assert_transcript(text, &got, "greedy short window with the loop probe");
    }
}

/// Interim-length prefixes of a sentence decoded straight to the token cap (no loop probe): the
/// 900 ms one after 300 ms of lead-in runs past the cap without a repeat to collapse, so a
/// final's decode goes again on the 30 s window. A provisional decode gives no text for it
/// instead, and the same text for every other prefix.
#[test]
fn provisional_decodes_skip_what_the_short_window_cannot_settle() {
    let Some(pcm) = speech(SENTENCES[0]) else {
        return;
    };
    let prefixes: Vec<Vec<f32>> = (200..=1000)
        .step_by(100)
        .map(|ms| {
            let mut clip = vec![0.0; 300 * 16];
            clip.extend_from_slice(&pcm[..(ms * 16).min(pcm.len())]);
            clip
        })
        .collect();
    let mut e = engine(Some(DEFAULT_MIN_WINDOW_MS));
    e.set_beam_size(1);
    e.set_loop_probe(false);
    let window = Some(DEFAULT_MIN_WINDOW_MS);
    let mut settled = Vec::new();
    let full = counts_of(&prefixes, |clip| {
        settled.push(
            e.transcribe_scored_within(clip, window)
                .expect("decode")
                .text,
        );
    });
    let mut provisional = Vec::new();
    let skipped = counts_of(&prefixes, |clip| {
        provisional.push(e.transcribe_provisional(clip, window).expect("decode").text);
    });
    eprintln!("finals' decodes {full:?}; provisional {skipped:?}");
    assert!(
        full.retries >= 1,
        "the case this guards against did not occur"
    );
    assert_eq!(
        skipped.retries, 0,
        "a provisional decode never retries on 30 s"
    );
    assert_eq!(skipped.skips, full.retries, "each retry is a skip instead");
    for (a, b) in settled.iter().zip(&provisional) {
        assert!(a == b || b.is_empty(), "{a:?} vs {b:?}");
    }
    let differ = settled
        .iter()
        .zip(&provisional)
        .filter(|(a, b)| a != b)
        .count() as u64;
    assert!(differ <= full.retries, "{settled:?} vs {provisional:?}");
}
