//! The Azure STT plugin against the fake Speech service over a real 127.0.0.1 socket.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use waav_azure::protocol;
use waav_azure::AzureStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, Plugin, PluginConfig, PluginContext, PluginError,
    Secret, SttEvent, SttInput, SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript,
};
use waav_testkit::audio::{silence, to_le_bytes, tone};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::azure::{AzureFake, AzureFakeConfig, AzureFault};

const KEY: &str = "azure-test-key";
const WAIT: Duration = Duration::from_secs(10);

type Task = tokio::task::JoinHandle<Result<(), PluginError>>;

fn section(fake: &AzureFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url(), "ping_interval_ms": 0, "idle_timeout_ms": 0});
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    PluginConfig::from_value("plugins.stt.microsoft-azure", v).unwrap()
}

fn session(fake: &AzureFake, extra: Value) -> SttSessionConfig {
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_credentials(creds)
        .with_plugin_config(section(fake, extra))
}

async fn open(cfg: SttSessionConfig) -> Result<(SttPeer, Task), PluginError> {
    let (io, peer) = SttIo::pair(256);
    let task = tokio::time::timeout(WAIT, AzureStt.connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok((peer, tokio::spawn(task)))
}

async fn start(config: AzureFakeConfig) -> AzureFake {
    AzureFake::start(config).await
}

/// `ms` of a 300 Hz tone at 16 kHz, PCM16LE.
fn voiced(ms: u32) -> Vec<u8> {
    to_le_bytes(&tone(300.0, ms, 16_000))
}

async fn feed(peer: &SttPeer, audio: &[u8]) {
    for c in audio.chunks(640) {
        peer.input
            .send(SttInput::Audio(Bytes::copy_from_slice(c)))
            .await
            .unwrap();
    }
}

/// Events until a final transcript (included).
async fn until_final(peer: &mut SttPeer) -> Vec<SttEvent> {
    let mut out = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, peer.events.recv())
            .await
            .expect("no final in time")
            .expect("events closed before a final");
        let done = matches!(&ev, SttEvent::Transcript(t) if t.is_final);
        out.push(ev);
        if done {
            return out;
        }
    }
}

/// Events until `UtteranceEnd` (included).
async fn until_utterance_end(peer: &mut SttPeer) -> Vec<SttEvent> {
    let mut out = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, peer.events.recv())
            .await
            .expect("no utterance end in time")
            .expect("events closed");
        let done = matches!(ev, SttEvent::UtteranceEnd);
        out.push(ev);
        if done {
            return out;
        }
    }
}

fn transcripts(events: &[SttEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) => Some((**t).clone()),
            _ => None,
        })
        .collect()
}

/// Closes the input and drains events until the task ends; returns its result and the events.
async fn finish(peer: SttPeer, task: Task) -> (Result<(), PluginError>, Vec<SttEvent>) {
    let SttPeer { input, mut events } = peer;
    drop(input);
    let mut seen = Vec::new();
    let drain = async {
        while let Some(e) = events.recv().await {
            seen.push(e);
        }
    };
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("events never closed");
    let r = tokio::time::timeout(WAIT, task)
        .await
        .expect("task hung")
        .expect("task panicked");
    (r, seen)
}

async fn task_result(task: Task) -> Result<(), PluginError> {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("task hung")
        .expect("task panicked")
}

/// Waits (bounded) until `cond` holds: the fake records on its own task.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[tokio::test]
async fn upgrade_url_query_and_headers_are_the_sdks() {
    let fake = start(AzureFakeConfig::default()).await;
    let (peer, task) = open(session(&fake, json!({}))).await.unwrap();
    let (r, _) = finish(peer, task).await;
    r.unwrap();
    eventually("the upgrade was recorded", || fake.requests().len() == 1).await;
    let req = &fake.requests()[0];
    assert_eq!(
        req.path(),
        "/speech/recognition/conversation/cognitiveservices/v1"
    );
    assert_eq!(req.query("language"), Some("en-US"));
    assert_eq!(req.query("format"), Some("detailed"));
    assert_eq!(req.query("wordLevelTimestamps"), Some("true"));
    assert_eq!(req.query("cid"), None);
    assert_eq!(req.header("ocp-apim-subscription-key"), Some(KEY));
    assert!(is_id(req.header("x-connectionid").unwrap()), "{req:?}");

    // Options become the SDK's query parameters; a session model is a Custom Speech endpoint.
    let extra = json!({"mode": "dictation", "format": "simple", "profanity": "raw",
        "word_timestamps": false, "initial_silence_timeout_ms": 5000,
        "end_silence_timeout_ms": 700, "segmentation_silence_timeout_ms": 400,
        "stable_intermediate_threshold": 3, "store_audio": false});
    let cfg = session(&fake, extra).with_model("my-endpoint-1");
    let (peer, task) = open(cfg).await.unwrap();
    finish(peer, task).await.0.unwrap();
    eventually("the upgrade was recorded", || fake.requests().len() == 2).await;
    let req = &fake.requests()[1];
    assert_eq!(
        req.path(),
        "/speech/recognition/dictation/cognitiveservices/v1"
    );
    assert_eq!(
        req.uri.split_once('?').unwrap().1,
        "cid=my-endpoint-1&format=simple&profanity=raw&initialSilenceTimeoutMs=5000\
         &endSilenceTimeoutMs=700&segmentationSilenceTimeoutMs=400\
         &stableIntermediateThreshold=3&storeAudio=false"
    );
    let conns = fake.connections();
    let config = &conns[1].messages[0];
    let body: Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(body["recognition"], "dictation");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn audio_reaches_the_service_byte_exact_in_sdk_framing() {
    let fake = start(AzureFakeConfig::default()).await;
    let cfg = session(&fake, json!({"phrases": ["Contoso", "WaaV"]}));
    let (mut peer, task) = open(cfg).await.unwrap();
    let mut audio = voiced(300);
    audio.extend(to_le_bytes(&silence(100, 16_000)));
    // Odd-sized chunks: forwarded as they come.
    for c in audio.chunks(333) {
        peer.input
            .send(SttInput::Audio(Bytes::copy_from_slice(c)))
            .await
            .unwrap();
    }
    // Empty chunks are never forwarded (an empty payload would end the audio).
    peer.input
        .send(SttInput::Audio(Bytes::new()))
        .await
        .unwrap();
    peer.input.send(SttInput::Finalize).await.unwrap();
    until_utterance_end(&mut peer).await;
    let (r, _) = finish(peer, task).await;
    r.unwrap();
    eventually("the client's close", || {
        fake.connections()[0].close_code.is_some()
    })
    .await;

    let conn = &fake.connections()[0];
    assert!(conn.violations.is_empty(), "{:?}", conn.violations);
    assert_eq!(conn.turns.len(), 1);
    let turn = &conn.turns[0];
    assert_eq!(turn.audio, audio, "PCM differs");
    assert_eq!(turn.wav_header, protocol::wav_header(16_000, 1, 16));
    assert!(turn.ended);

    let m = &conn.messages;
    // speech.config, speech.context, WAV header, PCM…, end of audio.
    assert_eq!(m[0].path(), "speech.config");
    assert_eq!(m[0].header("Content-Type"), Some("application/json"));
    let config: Value = serde_json::from_slice(&m[0].body).unwrap();
    assert_eq!(config["recognition"], "conversation");
    assert_eq!(config["context"]["audio"]["source"]["samplerate"], 16_000);
    assert_eq!(config["context"]["audio"]["source"]["channelcount"], 1);
    assert_eq!(m[1].path(), "speech.context");
    let context: Value = serde_json::from_slice(&m[1].body).unwrap();
    assert_eq!(context["dgi"]["groups"][0]["items"][1]["text"], "WaaV");
    assert!(m[2].binary);
    assert_eq!(m[2].header("Content-Type"), Some("audio/x-wav"));
    let id = m[0].header("X-RequestId").unwrap();
    assert!(is_id(id));
    // The first turn reuses speech.config's request id, as the SDK does.
    assert!(m.iter().all(|x| x.header("X-RequestId") == Some(id)));
    let pcm: Vec<_> = m[3..].iter().collect();
    assert_eq!(pcm.len(), audio.chunks(333).count() + 1);
    assert!(pcm.iter().all(|x| x.binary && x.path() == "audio"));
    assert!(pcm.iter().all(|x| x.header("Content-Type").is_none()));
    assert!(pcm.last().unwrap().body.is_empty(), "end of audio is last");
    // One frame byte by byte: [len BE] "Path: audio\r\nX-RequestId: …\r\nX-Timestamp: …\r\n" PCM.
    let raw = &pcm[0].raw;
    let n = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
    let head = std::str::from_utf8(&raw[2..2 + n]).unwrap();
    let ts = pcm[0].header("X-Timestamp").unwrap();
    assert_eq!(
        head,
        format!("Path: audio\r\nX-RequestId: {id}\r\nX-Timestamp: {ts}\r\n")
    );
    assert_eq!(&raw[2 + n..], &audio[..333]);
    // The client closed with 1000 at the end.
    assert_eq!(conn.close_code, Some(1000));
}

#[tokio::test]
async fn large_chunks_are_sent_as_100_ms_audio_messages() {
    let fake = start(AzureFakeConfig::default()).await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    let audio = voiced(1010);
    peer.input
        .send(SttInput::Audio(Bytes::from(audio.clone())))
        .await
        .unwrap();
    peer.input.send(SttInput::Finalize).await.unwrap();
    until_utterance_end(&mut peer).await;
    finish(peer, task).await.0.unwrap();
    let conn = &fake.connections()[0];
    assert_eq!(conn.turns[0].audio, audio);
    let sizes: Vec<usize> = conn.messages[3..].iter().map(|m| m.body.len()).collect();
    // 10 × 100 ms, 10 ms, then the end of audio.
    assert_eq!(sizes[..10], [3200; 10]);
    assert_eq!(sizes[10..], [320, 0]);
}

#[tokio::test]
async fn hypotheses_phrases_and_detection_map_to_events() {
    let fake = start(AzureFakeConfig {
        speaker: Some("Guest-1".into()),
        language: Some("en-US".into()),
        ..AzureFakeConfig::default()
    })
    .await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    feed(&peer, &voiced(500)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until_utterance_end(&mut peer).await;
    assert_eq!(events[0], SttEvent::SpeechStarted);
    let ts = transcripts(&events);
    let interims: Vec<_> = ts
        .iter()
        .filter(|t| !t.is_final)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(
        interims,
        [
            "hello",
            "hello world",
            "hello world from",
            "hello world from the",
            "hello world from the azure"
        ]
    );
    assert!(ts
        .iter()
        .filter(|t| !t.is_final)
        .all(|t| !t.is_speech_final && t.confidence == 0.0));
    let last = ts.last().unwrap();
    assert!(last.is_final && last.is_speech_final);
    assert_eq!(last.text, "Hello world from the azure.");
    assert!((last.confidence - 0.9).abs() < 1e-6);
    assert_eq!(last.language.as_deref(), Some("en-US"));
    assert_eq!(last.speaker.as_deref(), Some("Guest-1"));
    assert_eq!(last.words.len(), 5);
    for (i, w) in last.words.iter().enumerate() {
        assert!((w.start - i as f64 * 0.1).abs() < 1e-9, "{w:?}");
        assert!((w.end - w.start - 0.1).abs() < 1e-9, "{w:?}");
        assert!((w.confidence - 0.9).abs() < 1e-6);
        assert_eq!(w.speaker.as_deref(), Some("Guest-1"));
    }
    assert_eq!(last.words[1].word, "world");
    assert_eq!(events.last(), Some(&SttEvent::UtteranceEnd));

    // The next audio opens a new turn; its offsets continue the session's timeline.
    feed(&peer, &voiced(200)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until_utterance_end(&mut peer).await;
    let last = transcripts(&events).pop().unwrap();
    assert_eq!(last.text, "Fake hello.");
    assert!((last.words[0].start - 0.5).abs() < 1e-9, "{:?}", last.words);
    assert!((last.words[1].start - 0.6).abs() < 1e-9, "{:?}", last.words);
    finish(peer, task).await.0.unwrap();

    let conn = &fake.connections()[0];
    assert!(conn.violations.is_empty(), "{:?}", conn.violations);
    assert_eq!(conn.turns.len(), 2);
    let (a, b) = (&conn.turns[0].request_id, &conn.turns[1].request_id);
    assert_ne!(a, b, "a new turn has a new request id");
    // The second turn sent its own speech.context and WAV header.
    let second: Vec<_> = conn
        .messages
        .iter()
        .filter(|m| m.header("X-RequestId") == Some(b.as_str()))
        .collect();
    assert_eq!(second[0].path(), "speech.context");
    assert_eq!(second[1].header("Content-Type"), Some("audio/x-wav"));
}

#[tokio::test]
async fn segments_nomatch_simple_format_and_no_punctuation() {
    // Phrases every 300 ms; a silent segment is NoMatch and yields no transcript.
    let fake = start(AzureFakeConfig {
        phrase_every_ms: Some(300),
        hypothesis_every_ms: 0,
        ..AzureFakeConfig::default()
    })
    .await;
    let mut cfg = session(&fake, json!({}));
    cfg.punctuation = false;
    let (mut peer, task) = open(cfg).await.unwrap();
    let mut audio = voiced(300);
    audio.extend(to_le_bytes(&silence(300, 16_000)));
    audio.extend(voiced(200));
    feed(&peer, &audio).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until_utterance_end(&mut peer).await;
    let finals: Vec<_> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
    // No punctuation: MaskedITN (lower case, no period).
    assert_eq!(finals[0].text, "hello world from");
    assert_eq!(finals[1].text, "the azure");
    assert!((finals[1].words[0].start - 0.6).abs() < 1e-9);
    finish(peer, task).await.0.unwrap();

    // Simple format: DisplayText, no confidence, no words.
    let fake = start(AzureFakeConfig::default()).await;
    let (mut peer, task) = open(session(&fake, json!({"format": "simple"})))
        .await
        .unwrap();
    feed(&peer, &voiced(200)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let last = transcripts(&until_final(&mut peer).await).pop().unwrap();
    assert_eq!(last.text, "Hello world.");
    assert_eq!(last.confidence, 0.0);
    assert!(last.words.is_empty());
    assert!(last.is_speech_final);
    finish(peer, task).await.0.unwrap();
    assert!(fake.violations().is_empty());
}

#[tokio::test]
async fn input_close_ends_the_audio_and_drains_the_final() {
    let fake = start(AzureFakeConfig::default()).await;
    let (peer, task) = open(session(&fake, json!({}))).await.unwrap();
    feed(&peer, &voiced(200)).await;
    let (r, events) = finish(peer, task).await;
    r.unwrap();
    let last = transcripts(&events).pop().expect("a final after close");
    assert!(last.is_final);
    assert_eq!(last.text, "Hello world.");
    eventually("the client's close", || {
        fake.connections()[0].close_code.is_some()
    })
    .await;
    let conn = &fake.connections()[0];
    assert!(conn.turns[0].ended, "end of audio sent");
    assert!(conn.messages.last().unwrap().body.is_empty());
    assert_eq!(conn.close_code, Some(1000));
    assert!(conn.violations.is_empty(), "{:?}", conn.violations);
}

#[tokio::test]
async fn audio_during_a_finalize_waits_for_the_next_turn() {
    let fake = start(AzureFakeConfig::default()).await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    let first = voiced(200);
    let second = voiced(100);
    feed(&peer, &first).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    // Sent right behind the finalize, before turn.end can have arrived.
    feed(&peer, &second).await;
    let a = transcripts(&until_final(&mut peer).await).pop().unwrap();
    assert_eq!(a.text, "Hello world.");
    let (r, events) = finish(peer, task).await;
    r.unwrap();
    let b = transcripts(&events)
        .into_iter()
        .rfind(|t| t.is_final)
        .unwrap();
    assert_eq!(b.text, "From.");
    let conn = &fake.connections()[0];
    assert!(conn.violations.is_empty(), "{:?}", conn.violations);
    assert_eq!(conn.turns.len(), 2);
    assert_eq!(conn.turns[0].audio, first);
    assert_eq!(conn.turns[1].audio, second);
}

#[tokio::test]
async fn a_connection_the_service_closed_between_turns_is_redialled_lazily() {
    for code in [1000, 1001, 1011] {
        let fake = start(AzureFakeConfig {
            close_after_turn: Some(code),
            ..AzureFakeConfig::default()
        })
        .await;
        let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
        feed(&peer, &voiced(200)).await;
        peer.input.send(SttInput::Finalize).await.unwrap();
        until_utterance_end(&mut peer).await;
        eventually("the service's close was answered", || {
            fake.connections()[0].close_code.is_some()
        })
        .await;
        // Let the close reach the plugin before more audio.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !task.is_finished(),
            "{code}: a close between turns is not fatal"
        );
        feed(&peer, &voiced(100)).await;
        peer.input.send(SttInput::Finalize).await.unwrap();
        let last = transcripts(&until_final(&mut peer).await).pop().unwrap();
        assert_eq!(
            last.text, "Hello.",
            "the script restarts on a new connection"
        );
        assert!((last.words[0].start - 0.2).abs() < 1e-9, "{:?}", last.words);
        finish(peer, task).await.0.unwrap();
        let conns = fake.connections();
        assert_eq!(conns.len(), 2, "{code}");
        assert_eq!(conns[1].messages[0].path(), "speech.config");
        assert_ne!(
            conns[0].request.header("x-connectionid"),
            conns[1].request.header("x-connectionid")
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
    // A close that is not a passing failure ends the session even between turns.
    let fake = start(AzureFakeConfig {
        close_after_turn: Some(1008),
        ..AzureFakeConfig::default()
    })
    .await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    feed(&peer, &voiced(200)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    until_utterance_end(&mut peer).await;
    let e = task_result(task).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
}

#[tokio::test]
async fn websocket_pings_keep_the_connection_alive() {
    let fake = start(AzureFakeConfig::default()).await;
    let cfg = session(
        &fake,
        json!({"ping_interval_ms": 30, "idle_timeout_ms": 2000}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "pongs keep the idle timer from firing");
    let (r, _) = finish(peer, task).await;
    r.unwrap();
    assert!(fake.connections()[0].pings >= 2);
}

async fn connect_error(config: AzureFakeConfig) -> PluginError {
    let fake = start(config).await;
    match open(session(&fake, json!({}))).await {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn rejected_upgrades_are_categorised() {
    let e = connect_error(AzureFakeConfig {
        key: "another-key".into(),
        ..AzureFakeConfig::default()
    })
    .await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains(KEY), "the key leaked: {e}");
    for (status, want) in [
        (403, ErrorCategory::Auth),
        (429, ErrorCategory::RateLimited),
        (400, ErrorCategory::Permanent),
        (503, ErrorCategory::Transient),
    ] {
        let e = connect_error(AzureFakeConfig {
            reject_status: Some(status),
            ..AzureFakeConfig::default()
        })
        .await;
        assert_eq!(e.category(), want, "{status}: {e}");
    }
    let e = connect_error(AzureFakeConfig {
        reject_status: Some(429),
        reject_retry_after: Some(7),
        ..AzureFakeConfig::default()
    })
    .await;
    assert!(
        matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );
}

/// Streams voiced audio into a faulty fake and returns how the task ended.
async fn stream_into(fault: AzureFault, extra: Value) -> (PluginError, Vec<SttEvent>) {
    let fake = start(AzureFakeConfig {
        fault,
        ..AzureFakeConfig::default()
    })
    .await;
    let (mut peer, task) = open(session(&fake, extra)).await.unwrap();
    let audio = voiced(400);
    let feeding = async {
        for c in audio.chunks(640) {
            if peer
                .input
                .send(SttInput::Audio(Bytes::copy_from_slice(c)))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = peer.input.send(SttInput::Finalize).await;
    };
    let mut seen = Vec::new();
    let collect = async {
        while let Some(e) = peer.events.recv().await {
            seen.push(e);
        }
    };
    // The task must end on its own (input still open): the fault is fatal.
    let (_, _, r) = tokio::join!(feeding, collect, async {
        let r = task_result(task).await;
        r
    });
    (r.expect_err("the task should fail"), seen)
}

#[tokio::test]
async fn recognition_status_errors_end_the_session_with_their_category() {
    for (status, want) in [
        ("Error", ErrorCategory::Transient),
        ("TooManyRequests", ErrorCategory::RateLimited),
        ("BadRequest", ErrorCategory::Config),
        ("Forbidden", ErrorCategory::Auth),
    ] {
        let fault = AzureFault::Status {
            after_bytes: 3200,
            status: status.into(),
        };
        let (e, _) = stream_into(fault, json!({})).await;
        assert_eq!(e.category(), want, "{status}: {e}");
        assert!(e.to_string().contains(status), "{e}");
    }
}

#[tokio::test]
async fn close_codes_are_categorised() {
    for (code, want) in [
        (1007, ErrorCategory::Config),
        (1011, ErrorCategory::Transient),
        (1008, ErrorCategory::Auth),
        (4000, ErrorCategory::Permanent),
    ] {
        let fault = AzureFault::Close {
            after_bytes: 3200,
            code,
            reason: "Invalid audio header".into(),
        };
        let (e, _) = stream_into(fault, json!({})).await;
        assert_eq!(e.category(), want, "{code}: {e}");
    }
    // A normal close in the middle of a turn is still a failure.
    let fault = AzureFault::Close {
        after_bytes: 3200,
        code: 1000,
        reason: String::new(),
    };
    let (e, _) = stream_into(fault, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
}

// A disconnect mid-stream, a silent and a hung service: faults in `conformance`.

#[tokio::test]
async fn malformed_and_foreign_messages_are_skipped() {
    let fake = start(AzureFakeConfig {
        fault: AzureFault::Garbage,
        ..AzureFakeConfig::default()
    })
    .await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    feed(&peer, &voiced(200)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until_utterance_end(&mut peer).await;
    let (r, rest) = finish(peer, task).await;
    r.unwrap();
    let all: Vec<_> = events.into_iter().chain(rest).collect();
    let texts: Vec<_> = transcripts(&all).into_iter().map(|t| t.text).collect();
    assert_eq!(texts, ["hello", "hello world", "Hello world."]);
    assert!(all.iter().all(|e| !matches!(e, SttEvent::Error(_))));
    // A message over max_message_bytes: a fault in `conformance`.
}

/// A session aimed at a fresh fake started with `config`; the fake is kept in `fakes`.
async fn faulty(
    fakes: &mut Vec<AzureFake>,
    config: AzureFakeConfig,
    extra: Value,
) -> SttSessionConfig {
    let fake = start(config).await;
    let cfg = session(&fake, extra);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn conformance() {
    let fake = start(AzureFakeConfig::default()).await;
    let mut samples = tone(300.0, 600, 16_000);
    samples.extend(silence(400, 16_000));
    let d = AzureFakeConfig::default;
    let f = &mut Vec::new();
    let none = json!({});
    let fault = |fault: AzureFault| AzureFakeConfig { fault, ..d() };
    let reject = |status: u16, retry_after: Option<u64>| AzureFakeConfig {
        reject_status: Some(status),
        reject_retry_after: retry_after,
        ..d()
    };
    let wrong_key = faulty(
        f,
        AzureFakeConfig {
            key: "another-key".into(),
            ..d()
        },
        none.clone(),
    )
    .await;
    let forbidden = faulty(f, reject(403, None), none.clone()).await;
    let rate = faulty(f, reject(429, Some(2)), none.clone()).await;
    let server = faulty(f, reject(500, None), none.clone()).await;
    let unavailable = faulty(f, reject(503, None), none.clone()).await;
    let status = |s: &str| {
        fault(AzureFault::Status {
            after_bytes: 3200,
            status: s.into(),
        })
    };
    // The fake ends the turn right after a failed phrase, so audio already in flight counts as
    // "after the end of audio" there: those fakes are kept apart from the framing check below.
    let fs = &mut Vec::new();
    let st_error = faulty(fs, status("Error"), none.clone()).await;
    let st_rate = faulty(fs, status("TooManyRequests"), none.clone()).await;
    let st_bad = faulty(fs, status("BadRequest"), none.clone()).await;
    let st_forbidden = faulty(fs, status("Forbidden"), none.clone()).await;
    let close = |code: u16| {
        fault(AzureFault::Close {
            after_bytes: 3200,
            code,
            reason: "Invalid audio header".into(),
        })
    };
    let closed = faulty(f, close(1011), none.clone()).await;
    let closed_bad_audio = faulty(f, close(1007), none.clone()).await;
    let dropped = faulty(
        f,
        fault(AzureFault::Disconnect { after_bytes: 3200 }),
        none.clone(),
    )
    .await;
    let after_turn = faulty(
        f,
        AzureFakeConfig {
            close_after_turn: Some(1001),
            ..d()
        },
        none.clone(),
    )
    .await;
    let garbage = faulty(f, fault(AzureFault::Garbage), none.clone()).await;
    let huge = faulty(
        f,
        fault(AzureFault::Huge { bytes: 100_000 }),
        json!({"max_message_bytes": 65536}),
    )
    .await;
    let silent = faulty(
        f,
        fault(AzureFault::Silent),
        json!({"finalize_timeout_ms": 300}),
    )
    .await;
    let hung = faulty(
        f,
        fault(AzureFault::Hang),
        json!({"ping_interval_ms": 50, "idle_timeout_ms": 300, "finalize_timeout_ms": 60000}),
    )
    .await;
    let fixture = SttFixture::pcm16(to_le_bytes(&samples), 16_000)
        .with_session(session(&fake, json!({})))
        .expect("hello world")
        .guard(Duration::from_secs(10))
        .fault(
            "401 wrong key",
            wrong_key,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault("403", forbidden, FaultOutcome::Fails(ErrorCategory::Auth))
        .fault(
            "429 retry-after",
            rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault("500", server, FaultOutcome::Fails(ErrorCategory::Transient))
        .fault(
            "503",
            unavailable,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "status Error",
            st_error,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "status TooManyRequests",
            st_rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "status BadRequest",
            st_bad,
            FaultOutcome::Fails(ErrorCategory::Config),
        )
        .fault(
            "status Forbidden",
            st_forbidden,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "close 1011 mid-turn",
            closed,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "close 1007 mid-turn",
            closed_bad_audio,
            FaultOutcome::Fails(ErrorCategory::Config),
        )
        .fault(
            "disconnect mid-turn",
            dropped,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        // A going-away close between turns only drops the connection (redialled on demand).
        .fault(
            "close 1001 after the turn",
            after_turn,
            FaultOutcome::Recovers,
        )
        // Malformed and foreign messages are skipped.
        .fault("garbage", garbage, FaultOutcome::Recovers)
        .fault(
            "message over max_message_bytes",
            huge,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        .fault(
            "silent service",
            silent,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "hung service",
            hung,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        );
    let report = check_stt(&AzureStt, &fixture).await;
    report.assert_ok();
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert_eq!(f.len() + fs.len(), 17);
    // The plugin's framing stays the SDK's whatever the service does.
    for fake in f.iter() {
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}

#[tokio::test]
async fn unsupported_configs_are_refused_before_dialling() {
    let fake = start(AzureFakeConfig::default()).await;
    let refuse = |cfg: SttSessionConfig| async move {
        match open(cfg).await {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    };
    let base = || session(&fake, json!({}));
    let e = refuse(base().with_format(AudioEncoding::Mulaw, 1)).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    let mut c = base();
    c.sample_rate = 44_100;
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let e = refuse(base().with_format(AudioEncoding::Linear16, 2)).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    let no_key = base()
        .with_api_key(None)
        .with_credentials(Credentials::new());
    assert_eq!(refuse(no_key).await.category(), ErrorCategory::Auth);
    // Neither a region nor a base URL.
    let no_region = base().with_plugin_config(
        PluginConfig::from_value("plugins.stt.microsoft-azure", json!({})).unwrap(),
    );
    let e = refuse(no_region).await;
    assert!(
        matches!(&e, PluginError::Config(m) if m.contains("region")),
        "{e}"
    );
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    creds.set("region", Secret::from("west europe"));
    let bad_region = base()
        .with_plugin_config(PluginConfig::from_value("p", json!({})).unwrap())
        .with_credentials(creds);
    assert_eq!(refuse(bad_region).await.category(), ErrorCategory::Config);
    let e = refuse(session(&fake, json!({"format": "verbose"}))).await;
    assert!(
        matches!(&e, PluginError::Config(m) if m.contains("format")),
        "{e}"
    );
    assert_eq!(
        refuse(base().with_model("bad/model")).await.category(),
        ErrorCategory::Config
    );
    assert!(fake.requests().is_empty(), "nothing was dialled");
}

#[tokio::test]
async fn plugin_metadata_and_init() {
    let info = AzureStt.info();
    assert_eq!(info.id, "microsoft-azure");
    assert_eq!(info.aliases, ["azure"]);
    let fields = info.credential_fields();
    let key = fields.iter().find(|f| f.name == "api_key").unwrap();
    assert!(key.secret && key.required && key.env == Some("AZURE_SPEECH_SUBSCRIPTION_KEY"));
    let region = fields.iter().find(|f| f.name == "region").unwrap();
    assert!(!region.secret && region.env == Some("AZURE_SPEECH_REGION"));
    let caps = AzureStt.capabilities();
    assert_eq!(caps.encodings, [AudioEncoding::Linear16]);
    assert_eq!(caps.sample_rates, [8_000, 16_000]);
    assert_eq!(caps.max_channels, 1);
    assert!(caps.streaming && caps.interim_results && caps.word_timings);
    let ctx = PluginContext::default();
    let ok = PluginConfig::from_value("plugins.stt.microsoft-azure", json!({"region": "eastus"}));
    AzureStt.init(&ctx, &ok.unwrap()).await.unwrap();
    let bad = PluginConfig::from_value("plugins.stt.microsoft-azure", json!({"mode": "x"}));
    assert!(AzureStt.init(&ctx, &bad.unwrap()).await.is_err());
}
