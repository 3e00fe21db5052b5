//! The segmenter on real speech (espeak-ng, so no model download is needed).

mod common;

use common::*;
use waav_local::{
    espeak_synthesize, to_mono_16k, Boundary, SegmentEvent, Segmenter, SegmenterConfig,
};

fn speech() -> Option<Vec<f32>> {
    if !espeak_or_skip() {
        return None;
    }
    let (audio, rate) = espeak_synthesize(FOX, "en-us", 160).expect("espeak");
    Some(to_mono_16k(&audio, rate, 1))
}

fn run(segmenter: &mut Segmenter, audio: &[f32], chunk: usize) -> Vec<SegmentEvent> {
    let mut events: Vec<SegmentEvent> = audio
        .chunks(chunk)
        .flat_map(|c| segmenter.push_f32(c))
        .collect();
    events.extend(segmenter.flush());
    events
}

#[test]
fn finds_one_utterance_between_silences() {
    let Some(speech) = speech() else { return };
    let mut audio = noise(16_000, 1);
    audio.extend(&speech);
    audio.extend(noise(16_000, 2));

    // 20 ms telephony-sized chunks.
    let mut segmenter = Segmenter::default();
    let events = run(&mut segmenter, &audio, 320);
    assert_eq!(events.len(), 2, "{:?}", summary(&events));
    assert_eq!(events[0], SegmentEvent::SpeechStarted);
    let SegmentEvent::SpeechEnded { samples } = &events[1] else {
        panic!("expected SpeechEnded, got {:?}", summary(&events))
    };
    // The utterance holds the speech (espeak pads its own edges with a little silence), the
    // pre-roll and the hangover, and not the whole second of leading silence.
    let (got, spoken) = (
        samples.len() as f32 / 16_000.0,
        speech.len() as f32 / 16_000.0,
    );
    eprintln!("utterance {got:.2} s for {spoken:.2} s of speech");
    assert!(
        got > spoken * 0.8 && got < spoken + 1.2,
        "{got} s vs {spoken} s"
    );

    // The i16 path and odd chunk sizes find the same utterance.
    let pcm: Vec<i16> = audio.iter().map(|&s| (s * 32767.0) as i16).collect();
    let mut events: Vec<SegmentEvent> = pcm
        .chunks(999)
        .flat_map(|c| segmenter.push_i16(c))
        .collect();
    events.extend(segmenter.flush());
    assert_eq!(events.len(), 2, "{:?}", summary(&events));
}

#[test]
fn max_utterance_length_cuts_long_speech() {
    let Some(speech) = speech() else { return };
    // Speech with no pause long enough to end it: 4 copies back to back.
    let mut audio = noise(8_000, 3);
    for _ in 0..4 {
        audio.extend(&speech);
    }
    audio.extend(noise(16_000, 4));
    let config = SegmenterConfig {
        max_utterance_ms: 2_000,
        ..SegmenterConfig::default()
    };
    let mut segmenter = Segmenter::new(config);
    let events = run(&mut segmenter, &audio, 480);
    let ended: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::SpeechEnded { samples } => Some(samples.len()),
            SegmentEvent::SpeechStarted | SegmentEvent::Paused | SegmentEvent::Resumed => None,
        })
        .collect();
    assert!(ended.len() >= 3, "{:?}", summary(&events));
    assert!(ended.iter().all(|&n| n <= 32_000 + 256), "{ended:?}");
    let started = events
        .iter()
        .filter(|e| **e == SegmentEvent::SpeechStarted)
        .count();
    assert_eq!(started, ended.len());
}

fn summary(events: &[SegmentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            SegmentEvent::SpeechStarted => "started".to_owned(),
            SegmentEvent::Paused => "paused".to_owned(),
            SegmentEvent::Resumed => "resumed".to_owned(),
            SegmentEvent::SpeechEnded { samples } => format!("ended({} samples)", samples.len()),
        })
        .collect()
}

/// With `pause_ms` set, a short gap inside speech reports `Paused` then `Resumed` and stays one
/// utterance; the final silence reports `Paused` then the end. Without it, no pause events.
#[test]
fn pauses_inside_an_utterance_are_reported() {
    if !espeak_or_skip() {
        return;
    }
    let part = |t: &str| {
        let (audio, rate) = espeak_synthesize(t, "en-us", 160).expect("espeak");
        to_mono_16k(&audio, rate, 1)
    };
    let mut audio = noise(8_000, 3);
    audio.extend(part("Hello there"));
    audio.extend(noise(16 * 250, 4));
    audio.extend(part("my friend"));
    audio.extend(noise(16_000, 5));
    let config = SegmenterConfig {
        silence_hangover_ms: 600,
        pause_ms: 96,
        ..SegmenterConfig::default()
    };
    let events = run(&mut Segmenter::new(config), &audio, 320);
    let names = summary(&events);
    let kinds: Vec<&str> = names.iter().map(|n| n.split('(').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["started", "paused", "resumed", "paused", "ended"],
        "{names:?}"
    );
    let plain = run(&mut Segmenter::default(), &audio, 320);
    assert!(
        !plain
            .iter()
            .any(|e| matches!(e, SegmentEvent::Paused | SegmentEvent::Resumed)),
        "{:?}",
        summary(&plain)
    );
}

#[test]
fn the_sessions_vad_decides_when_followed() {
    let Some(speech) = speech() else { return };
    let speech_ms = speech.len() / 16;
    let mut audio = noise(16_000, 6);
    audio.extend(&speech);
    audio.extend(noise(32_000, 7));
    let second_at = audio.len();
    audio.extend(&speech);
    audio.extend(noise(16_000, 8));

    let mut segmenter = Segmenter::default();
    // Not followed: a boundary changes nothing.
    assert_eq!(segmenter.boundary(Boundary::Started { at_ms: 0 }), None);
    segmenter.follow_external();
    // The session's VAD hears only the first sentence: it decides its start 150 ms after the
    // speech began and its end 400 ms after it stopped.
    let start_ms: usize = 1_000 + 150;
    let end_ms = 1_000 + speech_ms + 400;
    let mut events = Vec::new();
    for (i, chunk) in audio.chunks(320).enumerate() {
        events.extend(segmenter.push_f32(chunk));
        let now_ms = (i + 1) * 20;
        if now_ms == start_ms.div_ceil(20) * 20 {
            events.extend(segmenter.boundary(Boundary::Started {
                at_ms: now_ms as u64,
            }));
            // A second start while in speech is no boundary.
            assert_eq!(
                segmenter.boundary(Boundary::Started {
                    at_ms: now_ms as u64
                }),
                None
            );
        }
        if now_ms == end_ms.div_ceil(20) * 20 {
            events.extend(segmenter.boundary(Boundary::Ended));
        }
        if i * 320 >= second_at {
            // The second sentence, unheard by the session's VAD, starts nothing.
            assert!(!segmenter.in_speech());
        }
    }
    events.extend(segmenter.flush());
    assert_eq!(events.len(), 2, "{:?}", summary(&events));
    assert_eq!(events[0], SegmentEvent::SpeechStarted);
    let SegmentEvent::SpeechEnded { samples } = &events[1] else {
        panic!("{:?}", summary(&events))
    };
    // From the pre-roll and lead (600 ms) before the decided start to the decided end,
    // within a frame either side.
    let expected = (end_ms.div_ceil(20) * 20 - (start_ms.div_ceil(20) * 20 - 600)) * 16;
    let got = samples.len();
    assert!(
        got.abs_diff(expected) <= 256 + 320,
        "{got} samples, expected about {expected}"
    );
}

/// Samples pushed when the first `Paused` was reported, feeding 16 ms at a time.
fn paused_at(config: SegmenterConfig, audio: &[f32]) -> Option<usize> {
    let mut segmenter = Segmenter::new(config);
    let mut pushed = 0;
    for chunk in audio.chunks(256) {
        pushed += chunk.len();
        if segmenter.push_f32(chunk).contains(&SegmentEvent::Paused) {
            return Some(pushed);
        }
    }
    None
}

/// The energy gate (`quiet_db`) starts counting the pause where the voice ends; the VAD's score
/// alone (`quiet_db: 0`) only once it has decayed, ~100 ms later.
#[test]
fn the_quiet_gate_reports_the_pause_where_the_voice_ends() {
    let Some(speech) = speech() else { return };
    let lead = 16_000;
    let mut audio = noise(lead, 1);
    audio.extend(&speech);
    audio.extend(noise(32_000, 2));
    // The voice's end: its last sample above −40 dBFS.
    let end = lead + speech.iter().rposition(|s| s.abs() > 0.01).expect("speech");
    let config = |quiet_db| SegmenterConfig {
        pause_ms: 96,
        quiet_db,
        ..SegmenterConfig::default()
    };
    let ms = |at: usize| (at as f64 - end as f64) / 16.0;
    let gated = ms(paused_at(config(35.0), &audio).expect("a pause"));
    let score_only = ms(paused_at(config(0.0), &audio).expect("a pause"));
    eprintln!(
        "pause reported {gated:.0} ms (gate) / {score_only:.0} ms (score only) after the voice"
    );
    assert!(
        (96.0..=96.0 + 48.0).contains(&gated),
        "the gate counts from the voice's end: {gated}"
    );
    assert!(
        score_only - gated >= 48.0,
        "the score alone decays later: {score_only} vs {gated}"
    );
}
