//! End-to-end checks with the real models: TTS output transcribed back by Whisper.

mod common;

use std::time::Instant;

use common::*;
use waav_local::{espeak_synthesize, resample_i16, to_mono_16k};

#[test]
fn piper_speech_is_transcribed_by_whisper() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let voice = piper(&paths);
    let whisper = whisper(&paths);

    let started = Instant::now();
    let audio = voice.synthesize(FOX, None).expect("synthesize");
    let tts_secs = started.elapsed().as_secs_f32();
    let audio_secs = audio.len() as f32 / voice.sample_rate() as f32;
    assert!(
        audio_secs > 1.0 && audio_secs < 6.0,
        "{audio_secs} s of audio"
    );

    let pcm = to_mono_16k(&audio, voice.sample_rate(), 1);
    let started = Instant::now();
    let text = whisper.transcribe(&pcm).expect("transcribe");
    let stt_secs = started.elapsed().as_secs_f32();
    eprintln!(
        "piper RTF {:.3}, whisper RTF {:.3} ({audio_secs:.2} s of audio)",
        tts_secs / audio_secs,
        stt_secs / audio_secs
    );
    assert_transcript(FOX, &text, "piper -> whisper");

    // A slower length scale gives longer audio.
    let slow = voice.synthesize(FOX, Some(1.5)).expect("synthesize slow");
    assert!(
        slow.len() > audio.len() * 5 / 4,
        "{} vs {}",
        slow.len(),
        audio.len()
    );
}

#[test]
fn espeak_speech_is_transcribed_by_whisper() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    // espeak's robotic voice is hard for tiny.en at full speed; 130 wpm is clear enough.
    let (audio, rate) = espeak_synthesize(FOX, "en-us", 130).expect("espeak");
    assert!(
        audio.len() as u32 > rate,
        "espeak produced {} samples",
        audio.len()
    );
    let text = whisper(&paths)
        .transcribe(&to_mono_16k(&audio, rate, 1))
        .expect("transcribe");
    assert_transcript(FOX, &text, "espeak -> whisper");
}

#[test]
fn telephone_and_studio_rates_all_transcribe() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let voice = piper(&paths);
    let audio = voice.synthesize(FOX, None).expect("synthesize");
    for rate in [8_000, 16_000, 24_000, 48_000] {
        let at_rate = resample_i16(&audio, voice.sample_rate(), rate);
        let expected_len = audio.len() as u64 * u64::from(rate) / u64::from(voice.sample_rate());
        assert!(
            at_rate.len().abs_diff(expected_len as usize) <= 2,
            "{rate} Hz length"
        );
        let text = whisper(&paths)
            .transcribe(&to_mono_16k(&at_rate, rate, 1))
            .expect("transcribe");
        assert_transcript(FOX, &text, &format!("{rate} Hz"));
    }
    // Stereo input is downmixed.
    let stereo: Vec<i16> = audio.iter().flat_map(|&s| [s, s]).collect();
    let text = whisper(&paths)
        .transcribe(&to_mono_16k(&stereo, voice.sample_rate(), 2))
        .expect("transcribe");
    assert_transcript(FOX, &text, "stereo");
}

#[test]
fn long_audio_is_transcribed_in_windows() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let voice = piper(&paths);
    let second = "Pack my box with five dozen liquor jugs.";
    let mut pcm = to_mono_16k(
        &voice.synthesize(FOX, None).expect("tts"),
        voice.sample_rate(),
        1,
    );
    // Put the second sentence past the 30 s boundary.
    pcm.extend(noise(32 * 16_000 - pcm.len(), 7));
    pcm.extend(to_mono_16k(
        &voice.synthesize(second, None).expect("tts"),
        voice.sample_rate(),
        1,
    ));
    pcm.extend(noise(16_000, 8));
    let text = whisper(&paths).transcribe(&pcm).expect("transcribe");
    assert_transcript(&format!("{FOX} {second}"), &text, "40 s audio");
}

/// The confidence is the decoder's (exp of the mean token log-prob), not a constant: two voices
/// saying the same words score differently, both in (0, 1]; noise and silence score lower.
#[test]
fn confidence_comes_from_the_decoder() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let whisper = whisper(&paths);
    let voice = piper(&paths);
    let piper_speech = to_mono_16k(
        &voice.synthesize(FOX, None).expect("tts"),
        voice.sample_rate(),
        1,
    );
    let (audio, rate) = espeak_synthesize(FOX, "en-us", 130).expect("espeak");
    let espeak_speech = to_mono_16k(&audio, rate, 1);
    let mut speech = Vec::new();
    for (what, pcm) in [("piper", &piper_speech), ("espeak", &espeak_speech)] {
        let t = whisper.transcribe_scored(pcm).expect("transcribe");
        eprintln!("{what}: confidence {:.3}: {:?}", t.confidence, t.text);
        assert_transcript(FOX, &t.text, what);
        assert!(
            t.confidence > 0.0 && t.confidence <= 1.0,
            "{what}: {}",
            t.confidence
        );
        speech.push(t.confidence);
    }
    assert_ne!(speech[0], speech[1], "the same confidence for two voices");
    let clearest = speech[0].min(speech[1]);

    let silence = whisper
        .transcribe_scored(&vec![0.0; 32_000])
        .expect("zeros");
    assert_eq!((silence.text.as_str(), silence.confidence), ("", 0.0));
    // Quiet and loud white noise: transcribed to nothing, or to a guess the decoder doubts.
    for (what, gain) in [("quiet noise", 1.0), ("loud noise", 150.0)] {
        let pcm: Vec<f32> = noise(48_000, 5).iter().map(|s| s * gain).collect();
        let t = whisper.transcribe_scored(&pcm).expect("noise");
        eprintln!("{what}: confidence {:.3}: {:?}", t.confidence, t.text);
        assert!(
            t.confidence < clearest,
            "{what} ({:?}) scored {} against speech's {clearest}",
            t.text,
            t.confidence
        );
    }
}

#[test]
fn silence_transcribes_to_nothing() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    let whisper = whisper(&paths);
    assert_eq!(whisper.transcribe(&[]).expect("empty"), "");
    assert_eq!(whisper.transcribe(&vec![0.0; 32_000]).expect("zeros"), "");
}

#[test]
fn piper_handles_punctuation_and_empty_text() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let voice = piper(&paths);
    assert!(voice.synthesize("  ... ", None).expect("empty").is_empty());
    let sentences = voice
        .phonemize("Hello, Dr. Smith. How are you?")
        .expect("phonemize");
    assert_eq!(sentences.len(), 2, "{sentences:?}");
    assert!(
        sentences[0].contains(", ") && sentences[0].ends_with('.'),
        "{sentences:?}"
    );
    assert!(sentences[1].ends_with('?'), "{sentences:?}");
    let ids = voice.phoneme_ids(&sentences[1]);
    assert_eq!((ids[0], ids[1], *ids.last().unwrap()), (1, 0, 2));
}

#[test]
fn segmented_utterance_is_transcribed() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let voice = piper(&paths);
    let speech = to_mono_16k(
        &voice.synthesize(FOX, None).expect("tts"),
        voice.sample_rate(),
        1,
    );
    let mut stream = noise(24_000, 11);
    stream.extend(&speech);
    stream.extend(noise(24_000, 12));

    let mut segmenter = waav_local::Segmenter::default();
    let mut utterances = Vec::new();
    for chunk in stream.chunks(320) {
        for event in segmenter.push_f32(chunk) {
            if let waav_local::SegmentEvent::SpeechEnded { samples } = event {
                utterances.push(samples);
            }
        }
    }
    assert_eq!(utterances.len(), 1, "utterances: {}", utterances.len());
    let text = whisper(&paths)
        .transcribe(&utterances[0])
        .expect("transcribe");
    assert_transcript(FOX, &text, "segmented utterance");
}

/// Prints real-time factors (processing time / audio time). Run on an idle machine with
/// `cargo test --release --test roundtrip -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints real-time factors"]
fn measure_real_time_factors() {
    let Some(paths) = models_or_skip() else {
        return;
    };
    if !espeak_or_skip() {
        return;
    }
    let paragraph = "The gateway streams audio between callers and speech engines. \
        When the network is down, the local engines take over: Whisper listens and Piper speaks. \
        Each sentence is synthesized as soon as it is complete, so the first words play quickly. \
        The quick brown fox jumps over the lazy dog, and the lazy dog does not seem to mind.";
    for threads in [1, 2] {
        let options = waav_local::PiperOptions {
            ort_library: Some(paths.onnxruntime_lib()),
            threads,
            ..Default::default()
        };
        let voice =
            waav_local::PiperVoice::load_with(paths.piper_onnx(), paths.piper_json(), &options)
                .expect("load piper");
        voice.synthesize("Warm up.", None).expect("warm up");
        let started = Instant::now();
        let audio = voice.synthesize(paragraph, None).expect("synthesize");
        let secs = audio.len() as f32 / voice.sample_rate() as f32;
        eprintln!(
            "piper {threads} thread(s): RTF {:.3} ({secs:.1} s of audio)",
            started.elapsed().as_secs_f32() / secs
        );
    }

    let voice = piper(&paths);
    let long = to_mono_16k(
        &voice.synthesize(paragraph, None).expect("tts"),
        voice.sample_rate(),
        1,
    );
    let short = to_mono_16k(
        &voice.synthesize(FOX, None).expect("tts"),
        voice.sample_rate(),
        1,
    );
    for threads in [1, 2] {
        for beam in [1, 5] {
            let mut engine =
                waav_local::WhisperEngine::load(paths.whisper_dir(), threads).expect("load");
            engine.set_beam_size(beam);
            engine.transcribe(&short).expect("warm up");
            for (name, pcm) in [("short", &short), ("long", &long)] {
                let started = Instant::now();
                let text = engine.transcribe(pcm).expect("transcribe");
                let secs = pcm.len() as f32 / 16_000.0;
                eprintln!(
                    "whisper {threads} thread(s) beam {beam} {name} ({secs:.1} s): RTF {:.3}, {:.0} ms; {:.2} word match",
                    started.elapsed().as_secs_f32() / secs,
                    started.elapsed().as_secs_f32() * 1000.0,
                    word_match(if name == "short" { FOX } else { paragraph }, &text)
                );
            }
        }
    }
}
