//! `turn_detect`: Smart Turn v3.2 scores a complete sentence above the threshold and a trailing
//! filler below it; the processor emits `EndOfTurn` after a VAD's `SpeechEnded`, never blocks
//! `process` on a busy pool, and refuses bad settings.
//!
//! Models come from `$WAAV_MODELS_DIR` (`scripts/fetch-models.sh`); without them the model tests
//! print a SKIP line, and fail under `CI=true`.
#![cfg(all(feature = "piper", feature = "whisper"))]

mod common;

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use waav_local::turn::{
    model_path, PoolSettings, Scorer, SmartTurn, TurnDetectPlugin, TurnDetector, TurnPool,
    TurnSettings, ID,
};
use waav_local::{espeak_synthesize, resample_i16, ModelPaths};
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, HealthStatus, Plugin, PluginConfig, PluginContext, PluginError,
    ProcessorContext, ProcessorEvent, ProcessorPlugin, Stage,
};

const COMPLETE: &str = "I would like to book a table for two at seven tonight.";
const FILLER: &str = "so I was thinking, um,";
/// Silence after the speech when the turn is scored: about when a VAD's `SpeechEnded` comes.
const TRAILING_MS: usize = 400;

fn config(values: Value) -> PluginConfig {
    let Value::Object(map) = values else {
        panic!("an object")
    };
    PluginConfig::new("test.turn_detect", map)
}

/// The models, with the Smart Turn file, or `None` after a SKIP line.
fn models() -> Option<ModelPaths> {
    let paths = common::models_or_skip()?;
    if model_path(&paths).is_file() {
        Some(paths)
    } else {
        common::skip(format_args!(
            "{} not found, run scripts/fetch-models.sh",
            model_path(&paths).display()
        ));
        None
    }
}

fn smart_turn(paths: &ModelPaths) -> SmartTurn {
    SmartTurn::load(&model_path(paths), &paths.onnxruntime_lib(), 1).expect("load smart turn")
}

/// `text` spoken by Piper, at 16 kHz, followed by `TRAILING_MS` of silence.
fn piper_16k(paths: &ModelPaths, text: &str) -> Vec<f32> {
    let voice = common::piper(paths);
    let pcm = voice.synthesize(text, None).expect("piper");
    with_silence(&resample_i16(&pcm, voice.sample_rate(), 16_000))
}

fn espeak_16k(text: &str) -> Vec<f32> {
    let (pcm, rate) = espeak_synthesize(text, "en-us", 130).expect("espeak");
    with_silence(&resample_i16(&pcm, rate, 16_000))
}

fn with_silence(pcm: &[i16]) -> Vec<f32> {
    let mut out: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let noise = common::noise(TRAILING_MS * 16, 7);
    out.extend(noise);
    out
}

#[test]
fn complete_sentence_scores_above_and_trailing_filler_below() {
    let Some(paths) = models() else { return };
    let mut model = smart_turn(&paths);
    let threshold = TurnSettings::default().threshold;

    let complete = piper_16k(&paths, COMPLETE);
    let filler = piper_16k(&paths, FILLER);
    let p_complete = model.predict(&complete).unwrap();
    let p_filler = model.predict(&filler).unwrap();
    eprintln!(
        "piper:  complete {COMPLETE:?} -> {p_complete:.4}; filler {FILLER:?} -> {p_filler:.4}"
    );
    assert!(
        p_complete >= threshold,
        "complete sentence scored {p_complete} < {threshold}"
    );
    assert!(
        p_filler < threshold,
        "trailing filler scored {p_filler} >= {threshold}"
    );

    // espeak-ng's robotic prosody is reported, not asserted: Smart Turn leans on intonation,
    // and espeak's flat sentence-final contour reads as unfinished to it.
    if common::espeak_or_skip() {
        let e_complete = model.predict(&espeak_16k(COMPLETE)).unwrap();
        let e_filler = model.predict(&espeak_16k(FILLER)).unwrap();
        eprintln!("espeak: complete -> {e_complete:.4}; filler -> {e_filler:.4} (not asserted)");
        assert!(e_filler < threshold, "espeak filler {e_filler}");
    }

    // The features: 80 mels x 800 frames; 8 s of left padding for short audio.
    let features = model.features(&filler);
    assert_eq!(features.len(), 80 * 800);
    assert!(features.iter().all(|v| v.is_finite()));
}

#[test]
fn inference_time_per_call() {
    let Some(paths) = models() else { return };
    let mut model = smart_turn(&paths);
    let audio = piper_16k(&paths, COMPLETE);
    model.predict(&audio).unwrap(); // warm-up
    let calls = 5u32;
    let (mut features, mut inference) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..calls {
        let t = Instant::now();
        let f = model.features(&audio);
        features += t.elapsed();
        let t = Instant::now();
        model.infer(f).unwrap();
        inference += t.elapsed();
    }
    // No assertion: reported with --nocapture.
    eprintln!(
        "smart turn per call: ONNX inference {:.1} ms (1 intra-op thread), features {:.1} ms \
         ({})",
        (inference / calls).as_secs_f64() * 1000.0,
        (features / calls).as_secs_f64() * 1000.0,
        if cfg!(debug_assertions) {
            "dev profile"
        } else {
            "release profile"
        }
    );
    assert!(
        model.infer(vec![0.0; 10]).is_err(),
        "wrong feature count refused"
    );
}

/// A plugin initialised from the test models (one per test binary: each worker loads the model).
fn plugin(paths: &ModelPaths) -> &'static TurnDetectPlugin {
    static PLUGIN: OnceLock<TurnDetectPlugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let plugin = TurnDetectPlugin::default();
        let cfg = config(json!({
            "models_dir": paths.root().to_str().unwrap(),
            "workers": 1,
            "queue": 2,
        }));
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(plugin.init(&PluginContext::new("test"), &cfg))
            .expect("init turn_detect");
        plugin
    })
}

/// Streams `pcm16k` (mono 16 kHz, speech then `TRAILING_MS` of silence) as 48 kHz stereo 20 ms
/// frames through `p`, with the VAD's events where a VAD would put them, then silence in real
/// time until `EndOfTurn` or `wait`. Returns the end-of-turn probability, if any.
fn stream_turn(p: &mut dyn AudioProcessor, pcm16k: &[f32], wait: Duration) -> Option<f32> {
    let mono: Vec<i16> = pcm16k.iter().map(|&s| (s * 32767.0) as i16).collect();
    let mono48 = resample_i16(&mono, 16_000, 48_000);
    let stereo: Vec<i16> = mono48.iter().flat_map(|&s| [s, s]).collect();
    let frame = 48_000 / 50 * 2;
    let lead = vec![0i16; 48_000 / 5 * 2]; // 200 ms before the speech
    let speech_end = lead.len() + stereo.len() - TRAILING_MS * 48 * 2;
    let audio: Vec<i16> = lead.iter().chain(&stereo).copied().collect();
    let mut events = Vec::new();
    let mut buf = AudioBuffer::with_capacity(48_000, 2, frame);
    let (mut started, mut ended) = (false, false);
    let mut eot = None;
    for (i, chunk) in audio.chunks(frame).enumerate() {
        events.clear();
        let at = i * frame;
        if !started && at >= lead.len() + 100 * 96 {
            started = true;
            events.push(ProcessorEvent::SpeechStarted);
        }
        if !ended && at >= speech_end + 300 * 96 {
            ended = true;
            events.push(ProcessorEvent::SpeechEnded);
        }
        buf.samples.clear();
        buf.samples.extend_from_slice(chunk);
        p.process(&mut buf, &mut events).unwrap();
        assert_eq!(buf.samples, chunk, "audio passes through unchanged");
        if let Some(ProcessorEvent::EndOfTurn { probability }) = events.last() {
            eot = Some(*probability);
        }
    }
    if !ended {
        events.clear();
        events.push(ProcessorEvent::SpeechEnded);
        buf.samples.clear();
        buf.samples.resize(frame, 0);
        p.process(&mut buf, &mut events).unwrap();
    }
    let deadline = Instant::now() + wait;
    while eot.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        events.clear();
        buf.samples.clear();
        buf.samples.resize(frame, 0);
        p.process(&mut buf, &mut events).unwrap();
        if let Some(ProcessorEvent::EndOfTurn { probability }) = events.last() {
            eot = Some(*probability);
        }
    }
    eot
}

#[test]
fn processor_emits_end_of_turn_after_speech_ended() {
    let Some(paths) = models() else { return };
    let plugin = plugin(&paths);
    assert_eq!(plugin.info().id, ID);
    assert!(plugin.info().aliases.contains(&"smart-turn"));
    assert_eq!(plugin.stages(), &[Stage::PreStt]);
    assert_eq!(plugin.health(), HealthStatus::Healthy);
    let ctx = ProcessorContext::new(Stage::PreStt, 48_000, 2);
    // Generous max_wait: debug builds compute the features slowly.
    let cfg = config(json!({ "max_wait_ms": 10000 }));

    let mut p = plugin.create(&ctx, &cfg).unwrap();
    let complete = piper_16k(&paths, COMPLETE);
    let started = Instant::now();
    let probability = stream_turn(p.as_mut(), &complete, Duration::from_secs(30));
    eprintln!(
        "processor: complete sentence -> EndOfTurn {probability:?} ({:.0} ms streaming + verdict)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let probability = probability.expect("EndOfTurn after SpeechEnded for a complete sentence");
    assert!(probability >= 0.5);

    // The filler: a verdict comes back below the threshold and nothing is pushed.
    let mut detector = TurnDetector::new(
        plugin.pool().unwrap().clone(),
        TurnSettings::from_config(&cfg, TurnSettings::default()).unwrap(),
        48_000,
        2,
    )
    .unwrap();
    let filler = piper_16k(&paths, FILLER);
    assert_eq!(
        stream_turn(&mut detector, &filler, Duration::from_secs(5)),
        None
    );
    let stats = detector.stats();
    eprintln!("processor: filler -> {stats:?}");
    // Its comma's pause may have been scored early and voided by the "um" after it.
    assert_eq!(
        (
            stats.submitted - stats.early_voided,
            stats.incomplete,
            stats.end_of_turn
        ),
        (1, 1, 0)
    );
    assert!(stats.last_probability.unwrap() < 0.5);
}

/// A pool whose one worker blocks until the test sends each verdict.
fn gated_pool(queue: usize) -> (TurnPool, mpsc::Sender<f32>) {
    let (tx, rx) = mpsc::channel::<f32>();
    let scorer: Scorer = Box::new(move |_audio: &[i16]| rx.recv().map_err(|e| e.to_string()));
    (TurnPool::new(vec![scorer], queue).unwrap(), tx)
}

fn frame(events: &[ProcessorEvent]) -> (AudioBuffer, Vec<ProcessorEvent>) {
    let mut buf = AudioBuffer::with_capacity(16_000, 1, 320);
    buf.samples.resize(320, 100);
    (buf, events.to_vec())
}

/// Feeds one 20 ms frame with `events`; returns what the detector added.
fn step(d: &mut TurnDetector, events: &[ProcessorEvent]) -> Vec<ProcessorEvent> {
    let (mut buf, mut ev) = frame(events);
    d.process(&mut buf, &mut ev).unwrap();
    ev.split_off(events.len())
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn process_never_blocks_on_a_busy_pool() {
    use ProcessorEvent::{SpeechEnded, SpeechStarted};
    let (pool, verdicts) = gated_pool(1);
    let patient = TurnSettings {
        threshold: 0.5,
        max_wait: Duration::from_secs(60),
        ..TurnSettings::default()
    };
    let new = |s| TurnDetector::new(pool.clone(), s, 16_000, 1).unwrap();
    let (mut a, mut b, mut c) = (new(patient), new(patient), new(patient));
    for d in [&mut a, &mut b, &mut c] {
        step(d, &[SpeechStarted]);
        for _ in 0..50 {
            step(d, &[]);
        }
    }

    // A's pause occupies the only worker, which now blocks until a verdict is sent.
    assert!(step(&mut a, &[SpeechEnded]).is_empty());
    wait_until("the worker to take A's job", || pool.running() == 1);
    // B's pause waits in the queue; C's finds it full and is skipped. Every call returns
    // while the pool is known busy (the worker cannot finish before we send it a verdict).
    assert!(step(&mut b, &[SpeechEnded]).is_empty());
    assert_eq!(pool.queued(), 1);
    assert!(step(&mut c, &[SpeechEnded]).is_empty());
    for d in [&mut a, &mut b, &mut c] {
        for _ in 0..10 {
            assert!(step(d, &[]).is_empty());
        }
    }
    assert_eq!(
        pool.running(),
        1,
        "still busy: every process call above returned regardless"
    );
    assert_eq!(c.stats().skipped_busy, 1);
    assert_eq!(c.stats().submitted, 0);
    assert!(a.awaiting_verdict() && b.awaiting_verdict() && !c.awaiting_verdict());

    // B's user resumes before its verdict: the verdict will be dropped.
    step(&mut b, &[SpeechStarted]);
    assert_eq!(b.stats().dropped_resumed, 1);

    // A's verdict: complete.
    verdicts.send(0.93).unwrap();
    wait_until("B's job to start", || {
        pool.running() == 1 && pool.queued() == 0
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.is_empty() && Instant::now() < deadline {
        // An empty frame polls too: a session may poll while the client sends no audio.
        let mut empty = AudioBuffer::with_capacity(16_000, 1, 0);
        a.process(&mut empty, &mut got).unwrap();
    }
    assert_eq!(got, vec![ProcessorEvent::EndOfTurn { probability: 0.93 }]);
    assert_eq!(a.stats().end_of_turn, 1);

    // B's (resumed) verdict comes back and is dropped; B pauses again and is scored: 0.2 is
    // below the threshold, so nothing is pushed.
    verdicts.send(0.99).unwrap();
    wait_until("the worker to go idle", || pool.running() == 0);
    for _ in 0..5 {
        assert!(step(&mut b, &[]).is_empty());
    }
    assert!(step(&mut b, &[SpeechEnded]).is_empty());
    verdicts.send(0.2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.awaiting_verdict() && Instant::now() < deadline {
        assert!(step(&mut b, &[]).is_empty());
    }
    let stats = b.stats();
    assert_eq!(
        (stats.submitted, stats.incomplete, stats.end_of_turn),
        (2, 1, 0)
    );
    assert_eq!(stats.last_probability, Some(0.2));

    // A verdict later than max_wait_ms is dropped and counted (the silence timer decides).
    let mut d = new(TurnSettings {
        threshold: 0.5,
        max_wait: Duration::from_millis(1),
        ..TurnSettings::default()
    });
    step(&mut d, &[SpeechStarted]);
    step(&mut d, &[SpeechEnded]);
    wait_until("D's job to start", || pool.running() == 1);
    std::thread::sleep(Duration::from_millis(5));
    assert!(step(&mut d, &[]).is_empty());
    assert_eq!(d.stats().dropped_late, 1);
    verdicts.send(0.99).unwrap();
    wait_until("the worker to go idle", || pool.running() == 0);
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..5 {
        assert!(
            step(&mut d, &[]).is_empty(),
            "a late verdict is never pushed"
        );
    }
    assert_eq!((d.stats().dropped_late, d.stats().end_of_turn), (1, 0));
}

/// Feeds one 20 ms frame of constant `level` with `events`; returns what the detector added.
fn step_level(d: &mut TurnDetector, level: i16, events: &[ProcessorEvent]) -> Vec<ProcessorEvent> {
    let (mut buf, mut ev) = frame(events);
    buf.samples.fill(level);
    d.process(&mut buf, &mut ev).unwrap();
    ev.split_off(events.len())
}

/// Quiet audio while the VAD still hears speech is scored early: a verdict back before the
/// VAD's `SpeechEnded` ends the turn in the very block of that event, and louder audio before it
/// voids the early verdict (the pause is then scored at the VAD's end, as without the gate).
#[test]
fn a_quiet_tail_is_scored_before_the_vads_end() {
    use ProcessorEvent::{SpeechEnded, SpeechStarted};
    let (pool, verdicts) = gated_pool(1);
    let settings = TurnSettings {
        max_wait: Duration::from_secs(60),
        ..TurnSettings::default()
    };
    let mut d = TurnDetector::new(pool.clone(), settings, 16_000, 1).unwrap();
    step_level(&mut d, 3_000, &[SpeechStarted]);
    for _ in 0..20 {
        step_level(&mut d, 3_000, &[]);
    }
    // 80 ms of quiet is not yet the 96 ms early pause; the fifth quiet frame is.
    for _ in 0..4 {
        step_level(&mut d, 10, &[]);
    }
    assert_eq!(d.stats().submitted, 0);
    step_level(&mut d, 10, &[]);
    assert_eq!(d.stats().submitted, 1, "scored early");
    verdicts.send(0.9).unwrap();
    // Quiet frames until the verdict is back: held for the VAD's end, nothing pushed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.stats().last_inference.is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the early verdict"
        );
        assert!(
            step_level(&mut d, 10, &[]).is_empty(),
            "held for the VAD's end"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        step_level(&mut d, 10, &[]).is_empty(),
        "held for the VAD's end"
    );
    assert_eq!(
        step_level(&mut d, 10, &[SpeechEnded]),
        vec![ProcessorEvent::EndOfTurn { probability: 0.9 }],
        "the turn ends with the VAD's decision"
    );
    let stats = d.stats();
    assert_eq!(
        (stats.submitted, stats.early_used, stats.end_of_turn),
        (1, 1, 1)
    );

    // Louder audio after the early submission voids it; the VAD's end scores anew.
    let mut d = TurnDetector::new(pool.clone(), settings, 16_000, 1).unwrap();
    step_level(&mut d, 3_000, &[SpeechStarted]);
    for _ in 0..20 {
        step_level(&mut d, 3_000, &[]);
    }
    for _ in 0..5 {
        step_level(&mut d, 10, &[]);
    }
    assert_eq!(d.stats().submitted, 1);
    verdicts.send(0.9).unwrap();
    wait_until("the voided verdict", || pool.running() == 0);
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        step_level(&mut d, 3_000, &[]).is_empty(),
        "the voice is back"
    );
    assert_eq!(d.stats().early_voided, 1);
    for _ in 0..3 {
        step_level(&mut d, 10, &[]);
    }
    assert!(step_level(&mut d, 10, &[SpeechEnded]).is_empty());
    assert_eq!(d.stats().submitted, 2, "scored again at the VAD's end");
    verdicts.send(0.2).unwrap();
    wait_until("the second verdict", || pool.running() == 0);
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        step_level(&mut d, 10, &[]).is_empty(),
        "incomplete: nothing"
    );
    let stats = d.stats();
    assert_eq!(
        (stats.incomplete, stats.end_of_turn, stats.early_used),
        (1, 0, 0)
    );

    // With the gate off nothing is scored before the VAD's end.
    let off = TurnSettings {
        early_pause: Duration::ZERO,
        ..settings
    };
    let mut d = TurnDetector::new(pool.clone(), off, 16_000, 1).unwrap();
    step_level(&mut d, 3_000, &[SpeechStarted]);
    for _ in 0..20 {
        step_level(&mut d, 10, &[]);
    }
    assert_eq!(d.stats().submitted, 0);
}

/// A sure early verdict, quiet for `sure_pause_ms`, ends the speech and the turn before the
/// VAD's end and swallows the VAD's `SpeechEnded`; an unsure one waits for the VAD; louder audio
/// after a sure end starts the speech again, and the VAD's later end then passes through.
#[test]
fn a_sure_verdict_ends_the_speech_before_the_vad() {
    use ProcessorEvent::{EndOfTurn, SpeechEnded, SpeechStarted};
    let (pool, verdicts) = gated_pool(1);
    let settings = TurnSettings {
        max_wait: Duration::from_secs(60),
        sure_threshold: 0.95,
        sure_pause: Duration::from_millis(200),
        ..TurnSettings::default()
    };
    // Speech, then quiet frames until the early verdict (sent as `p`) is back.
    let speak_then_pause = |d: &mut TurnDetector, p: f32| {
        step_level(d, 3_000, &[SpeechStarted]);
        for _ in 0..20 {
            step_level(d, 3_000, &[]);
        }
        let mut quiet = 0;
        while d.stats().submitted == 0 {
            assert!(step_level(d, 10, &[]).is_empty());
            quiet += 1;
            assert!(
                quiet < 10,
                "scored early by 100 ms of quiet: {:?}",
                d.stats()
            );
        }
        verdicts.send(p).unwrap();
        wait_until("the early verdict", || pool.running() + pool.queued() == 0);
        std::thread::sleep(Duration::from_millis(5));
        quiet
    };

    let mut d = TurnDetector::new(pool.clone(), settings, 16_000, 1).unwrap();
    let mut quiet = speak_then_pause(&mut d, 0.99);
    // Held until 200 ms of quiet (ten 20 ms frames), then ended here.
    while quiet < 9 {
        assert!(step_level(&mut d, 10, &[]).is_empty(), "frame {quiet}");
        quiet += 1;
    }
    assert_eq!(
        step_level(&mut d, 10, &[]),
        vec![SpeechEnded, EndOfTurn { probability: 0.99 }],
        "ended at 200 ms of quiet"
    );
    assert!(step_level(&mut d, 10, &[]).is_empty());
    let (mut buf, mut ev) = frame(&[SpeechEnded]);
    buf.samples.fill(10);
    d.process(&mut buf, &mut ev).unwrap();
    assert!(ev.is_empty(), "the VAD's own end is swallowed: {ev:?}");
    let stats = d.stats();
    assert_eq!(
        (stats.sure_ends, stats.end_of_turn, stats.sure_resumed),
        (1, 1, 0)
    );

    // Unsure: nothing before the VAD's end, whose block then carries the turn's end.
    let mut d = TurnDetector::new(pool.clone(), settings, 16_000, 1).unwrap();
    speak_then_pause(&mut d, 0.9);
    for _ in 0..20 {
        assert!(step_level(&mut d, 10, &[]).is_empty(), "0.9 is not sure");
    }
    assert_eq!(
        step_level(&mut d, 10, &[SpeechEnded]),
        vec![EndOfTurn { probability: 0.9 }]
    );
    assert_eq!(d.stats().sure_ends, 0);

    // The voice back after a sure end: speech starts again, and the VAD's end passes.
    let mut d = TurnDetector::new(pool.clone(), settings, 16_000, 1).unwrap();
    speak_then_pause(&mut d, 0.99);
    let mut ended = Vec::new();
    for _ in 0..20 {
        ended.extend(step_level(&mut d, 10, &[]));
    }
    assert_eq!(ended, vec![SpeechEnded, EndOfTurn { probability: 0.99 }]);
    assert_eq!(step_level(&mut d, 3_000, &[]), vec![SpeechStarted]);
    for _ in 0..3 {
        assert!(step_level(&mut d, 3_000, &[]).is_empty());
    }
    let (mut buf, mut ev) = frame(&[SpeechEnded]);
    buf.samples.fill(10);
    d.process(&mut buf, &mut ev).unwrap();
    assert_eq!(ev, vec![SpeechEnded], "the VAD's end of the resumed speech");
    assert_eq!((d.stats().sure_ends, d.stats().sure_resumed), (1, 1));
    verdicts.send(0.2).unwrap();
    wait_until("the resumed speech's verdict", || {
        pool.running() + pool.queued() == 0
    });

    // Off (`sure_pause_ms: 0`): only the VAD ends the speech.
    let off = TurnSettings {
        sure_pause: Duration::ZERO,
        ..settings
    };
    let mut d = TurnDetector::new(pool.clone(), off, 16_000, 1).unwrap();
    speak_then_pause(&mut d, 0.99);
    for _ in 0..20 {
        assert!(step_level(&mut d, 10, &[]).is_empty(), "off");
    }
}

#[test]
fn a_failing_scorer_is_counted_not_fatal() {
    use ProcessorEvent::{SpeechEnded, SpeechStarted};
    let scorer: Scorer = Box::new(|_: &[i16]| -> Result<f32, String> { panic!("model exploded") });
    let pool = TurnPool::new(vec![scorer], 1).unwrap();
    let mut d = TurnDetector::new(pool, TurnSettings::default(), 16_000, 1).unwrap();
    step(&mut d, &[SpeechStarted]);
    step(&mut d, &[SpeechEnded]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.awaiting_verdict() && Instant::now() < deadline {
        assert!(step(&mut d, &[]).is_empty());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(d.stats().errors, 1);
    // The worker survived the panic: the next pause is scored (and fails) again.
    step(&mut d, &[SpeechStarted]);
    step(&mut d, &[SpeechEnded]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.awaiting_verdict() && Instant::now() < deadline {
        step(&mut d, &[]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(d.stats().errors, 2);
}

fn refused(r: Result<impl std::fmt::Debug, PluginError>, what: &str) -> String {
    match r {
        Err(PluginError::Config(msg)) => msg,
        other => panic!("{what}: expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_refused() {
    let defaults = TurnSettings::default();
    assert_eq!(defaults.threshold, 0.5);
    assert_eq!(defaults.max_wait, Duration::from_millis(500));
    let ok = TurnSettings::from_config(
        &config(json!({ "threshold": 0.7, "max_wait_ms": 300 })),
        defaults,
    )
    .unwrap();
    assert_eq!(ok.threshold, 0.7);
    assert_eq!(ok.max_wait, Duration::from_millis(300));
    for (bad, why) in [
        (json!({ "threshold": 1.5 }), "threshold"),
        (json!({ "threshold": -0.1 }), "threshold"),
        (json!({ "threshold": "high" }), "threshold"),
        (json!({ "max_wait_ms": 0 }), "max_wait_ms"),
        (json!({ "max_wait_ms": 2.5 }), "max_wait_ms"),
        (json!({ "max_wait_ms": 100000 }), "max_wait_ms"),
        (json!({ "early_pause_ms": 20000 }), "early_pause_ms"),
        (json!({ "quiet_db": -3 }), "quiet_db"),
        (json!({ "sure_threshold": 1.5 }), "sure_threshold"),
        (json!({ "sure_pause_ms": 20000 }), "sure_pause_ms"),
        (json!({ "treshold": 0.5 }), "treshold"),
        (json!({ "workers": 2 }), "plugin's own section"),
    ] {
        let msg = refused(
            TurnSettings::from_config(&config(bad.clone()), defaults),
            why,
        );
        assert!(msg.contains(why), "{bad}: {msg}");
    }

    let (pool, session) = PoolSettings::from_config(&config(json!({}))).unwrap();
    assert_eq!(pool, PoolSettings::default());
    assert_eq!((pool.workers, pool.threads, pool.queue), (1, 1, 2));
    assert_eq!(session, defaults);
    for (bad, why) in [
        (json!({ "workers": 0 }), "workers"),
        (json!({ "workers": 17 }), "workers"),
        (json!({ "threads": 0 }), "threads"),
        (json!({ "queue": 65 }), "queue"),
        (json!({ "queue": -1 }), "queue"),
        (json!({ "threshold": 2 }), "threshold"),
        (json!({ "model": "x" }), "model"),
    ] {
        let msg = refused(PoolSettings::from_config(&config(bad.clone())), why);
        assert!(msg.contains(why), "{bad}: {msg}");
    }

    // Layouts the detector cannot take.
    let (pool, _verdicts) = gated_pool(0);
    refused(TurnDetector::new(pool.clone(), defaults, 4_000, 1), "rate");
    refused(
        TurnDetector::new(pool.clone(), defaults, 16_000, 0),
        "channels",
    );
    refused(TurnDetector::new(pool, defaults, 16_000, 9), "channels");

    // No model: init fails with the path and the fetch hint; the plugin is unhealthy and
    // creates nothing.
    let plugin = TurnDetectPlugin::default();
    let missing = std::env::temp_dir().join("waav-turn-no-models");
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(plugin.init(
            &PluginContext::new("test"),
            &config(json!({ "models_dir": missing.to_str().unwrap() })),
        ))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("smart-turn-v3.2-cpu.onnx") && msg.contains("fetch-models"),
        "{msg}"
    );
    assert!(matches!(plugin.health(), HealthStatus::Unhealthy(_)));
    let ctx = ProcessorContext::new(Stage::PreStt, 16_000, 1);
    refused(
        plugin
            .create(&ctx, &PluginConfig::new("x", Map::new()))
            .map(|_| ()),
        "create",
    );
}
