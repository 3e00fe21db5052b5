//! The real Deepgram TTS client (REST and WebSocket) against the protocol fake, over 127.0.0.1.

use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use waav_deepgram::DeepgramTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Emotion, ErrorCategory, Plugin, PluginConfig,
    PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPeer,
    TtsPlugin, TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::deepgram::tts::{speech, DEFAULT_MS_PER_CHAR};
use waav_testkit::fakes::deepgram::{DeepgramTtsFake, TtsFakeOptions, TtsFault};

const KEY: &str = "dg-tts-key-7c1e9a40b2";
const RATE: u32 = 16_000;
/// Bound on every wait (a hang guard, not a latency check).
const GUARD: Duration = Duration::from_secs(10);

fn section(fake: &DeepgramTtsFake, extra: Value) -> PluginConfig {
    let mut v = json!({ "base_url": fake.base_url() });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    PluginConfig::from_value("plugins.tts.deepgram", v).unwrap()
}

fn session(fake: &DeepgramTtsFake, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(AudioEncoding::Linear16, RATE)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(section(fake, extra))
}

fn expected(text: &str, encoding: &str, rate: u32, speed: f64) -> Vec<u8> {
    speech(text, encoding, rate, speed, DEFAULT_MS_PER_CHAR)
}

fn speak(id: u64, text: &str) -> TtsInput {
    TtsInput::Speak(SpeakRequest {
        id,
        text: text.into(),
        flush: true,
    })
}

/// Runs `synthesize` to the end, returning its result and the audio it sent.
async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<u8>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let plugin = DeepgramTts::new();
    let r = tokio::time::timeout(GUARD, plugin.synthesize(cfg, req, sink))
        .await
        .expect("synthesize hung");
    let mut audio = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            TtsEvent::Audio { id: 1, data } => audio.extend_from_slice(&data),
            other => panic!("unexpected {other:?}"),
        }
    }
    (r, audio)
}

async fn open(
    plugin: &DeepgramTts,
    cfg: &TtsSessionConfig,
) -> Result<(TtsPeer, JoinHandle<Result<(), PluginError>>), PluginError> {
    let (io, peer) = TtsIo::pair(256);
    let task = tokio::time::timeout(GUARD, plugin.open_stream(cfg, io))
        .await
        .expect("open_stream hung")?
        .expect("the session streams");
    Ok((peer, tokio::spawn(task)))
}

async fn next(peer: &mut TtsPeer) -> TtsEvent {
    tokio::time::timeout(GUARD, peer.events.recv())
        .await
        .expect("no event within the guard")
        .expect("the session ended")
}

/// Collects audio for `id` until its `Done` (or `Error`, returned).
async fn until_end(peer: &mut TtsPeer, id: u64) -> (Vec<u8>, Option<PluginError>) {
    let mut audio = Vec::new();
    loop {
        match next(peer).await {
            TtsEvent::Audio { id: got, data } if got == id => audio.extend_from_slice(&data),
            TtsEvent::Done { id: got } if got == id => return (audio, None),
            TtsEvent::Error { id: got, error } if got == id => return (audio, Some(error)),
            other => panic!("unexpected {other:?} while waiting for {id}"),
        }
    }
}

async fn finish(peer: TtsPeer, task: JoinHandle<Result<(), PluginError>>) {
    drop(peer);
    tokio::time::timeout(GUARD, task)
        .await
        .expect("the session did not end")
        .expect("the session panicked")
        .expect("the session failed");
}

// --- 1. request shape ---------------------------------------------------------------------

#[tokio::test]
async fn rest_request_is_shaped_as_documented() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let mut cfg = session(
        &fake,
        json!({"streaming": false, "mip_opt_out": true, "tag": ["team-a", "b c"]}),
    )
    .with_voice("aura-2-zeus-en");
    cfg.speaking_rate = 1.2;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        ..Emotion::default()
    };
    let plugin = DeepgramTts::new();
    plugin.prepare(&cfg).await.unwrap();
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
    let (r, audio) = synth(&cfg, "Hello there.").await;
    r.unwrap();
    assert_eq!(audio, expected("Hello there.", "linear16", RATE, 1.2));

    let reqs = fake.rest_requests();
    assert_eq!(reqs.len(), 1);
    let seen = &reqs[0].request;
    assert_eq!(seen.path(), "/v1/speak");
    assert_eq!(
        seen.uri,
        "/v1/speak?model=aura-2-zeus-en&encoding=linear16&container=none&sample_rate=16000\
         &speed=1.2&mip_opt_out=true&tag=team-a&tag=b+c"
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body, json!({"text": "Hello there."}));
    assert!(reqs[0].completed);
}

#[tokio::test]
async fn rest_query_follows_the_format() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let base = json!({"streaming": false, "bit_rate": 48000, "voice": "aura-2-apollo-en",
        "auth_scheme": "bearer"});
    let cases = [
        (
            AudioEncoding::Mulaw,
            8_000,
            "encoding=mulaw&container=none&sample_rate=8000",
            "mulaw",
        ),
        (
            AudioEncoding::Alaw,
            16_000,
            "encoding=alaw&container=none&sample_rate=16000",
            "alaw",
        ),
        (
            AudioEncoding::Mp3,
            24_000,
            "encoding=mp3&bit_rate=48000",
            "mp3",
        ),
        (
            AudioEncoding::Opus,
            48_000,
            "encoding=opus&container=ogg&bit_rate=48000",
            "opus",
        ),
    ];
    for (i, (enc, rate, query, wire)) in cases.into_iter().enumerate() {
        let mut cfg = session(&fake, base.clone());
        cfg.encoding = enc;
        cfg.sample_rate = rate;
        let (r, audio) = synth(&cfg, "Hi.").await;
        r.unwrap_or_else(|e| panic!("{enc}: {e}"));
        let fake_rate = match wire {
            "mp3" => 22_050,
            "opus" => 48_000,
            _ => rate,
        };
        assert_eq!(audio, expected("Hi.", wire, fake_rate, 1.0), "{enc}");
        let seen = &fake.rest_requests()[i].request;
        assert_eq!(
            seen.uri,
            format!("/v1/speak?model=aura-2-apollo-en&{query}")
        );
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn websocket_request_is_shaped_as_documented() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let mut cfg = session(&fake, json!({"voice": "aura-2-thalia-en"}));
    cfg.speaking_rate = 0.9;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &cfg).await.unwrap();
    peer.input.send(speak(1, "Hello there.")).await.unwrap();
    let (audio, err) = until_end(&mut peer, 1).await;
    assert!(err.is_none());
    assert_eq!(audio, expected("Hello there.", "linear16", RATE, 0.9));
    finish(peer, task).await;

    let s = fake
        .wait_for_session(0, GUARD, |s| s.ended)
        .await
        .expect("the socket closed");
    assert_eq!(
        s.request.uri,
        "/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=16000&speed=0.9"
    );
    assert_eq!(
        s.request.header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
    let texts: Vec<Value> = s
        .texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            json!({"type": "Speak", "text": "Hello there."}),
            json!({"type": "Flush"}),
            json!({"type": "Close"}),
        ]
    );
    assert_eq!(s.closed_with, Some(1000));
    assert!(fake.rest_requests().is_empty());
}

#[tokio::test]
async fn unflushed_text_joins_the_next_flush() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let cfg = session(&fake, json!({}));
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &cfg).await.unwrap();
    peer.input
        .send(TtsInput::Speak(SpeakRequest {
            id: 1,
            text: "Hello ".into(),
            flush: false,
        }))
        .await
        .unwrap();
    peer.input.send(speak(2, "world.")).await.unwrap();
    // The host plays its head request: the audio of the flush is request 1's, and both end.
    let (audio, err) = until_end(&mut peer, 1).await;
    assert!(err.is_none());
    assert_eq!(audio, expected("Hello world.", "linear16", RATE, 1.0));
    assert_eq!(next(&mut peer).await, TtsEvent::Done { id: 2 });
    finish(peer, task).await;
    let s = fake.sessions().remove(0);
    assert_eq!(s.speaks, ["Hello ", "world."]);
    assert_eq!(s.flushes, 1);
}

// --- 2. streaming: the first chunk arrives before the rest exists --------------------------

#[tokio::test]
async fn rest_audio_streams_in_order_before_the_rest_is_sent() {
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).fault(TtsFault::HoldAfterFirstChunk),
    )
    .await;
    let cfg = session(&fake, json!({"streaming": false}));
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(9, tx, CancelFlag::new());
    let text = "Streaming audio, chunk by chunk.";
    let req = SpeakRequest {
        id: 9,
        text: text.into(),
        flush: true,
    };
    let task = tokio::spawn(async move {
        let plugin = DeepgramTts::new();
        plugin.synthesize(&cfg, req, sink).await
    });
    let first = match tokio::time::timeout(GUARD, rx.recv()).await.unwrap() {
        Some(TtsEvent::Audio { id: 9, data }) => data,
        other => panic!("{other:?}"),
    };
    let log = fake.rest_requests().remove(0);
    assert_eq!(log.chunks_sent, 1, "the fake is holding after one chunk");
    assert!(!log.completed);
    fake.release();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = first.to_vec();
    let mut chunks = 1;
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
        chunks += 1;
    }
    assert!(chunks > 2, "{chunks} chunks");
    assert_eq!(audio, expected(text, "linear16", RATE, 1.0));
}

#[tokio::test]
async fn websocket_audio_streams_before_the_rest_is_sent() {
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).fault(TtsFault::HoldAfterFirstChunk),
    )
    .await;
    let cfg = session(&fake, json!({}));
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &cfg).await.unwrap();
    let text = "Streaming audio, frame by frame.";
    peer.input.send(speak(1, text)).await.unwrap();
    let mut audio = match next(&mut peer).await {
        TtsEvent::Audio { id: 1, data } => data.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(fake.sessions()[0].audio_frames_sent, 1);
    fake.release();
    let (rest, err) = until_end(&mut peer, 1).await;
    assert!(err.is_none());
    audio.extend_from_slice(&rest);
    assert_eq!(audio, expected(text, "linear16", RATE, 1.0));
    finish(peer, task).await;
}

// --- 3. conformance ----------------------------------------------------------------------

/// One fault the fake injects: the fake's options, extra plugin config, and what the plugin
/// must make of it.
struct Fault {
    name: &'static str,
    opts: TtsFakeOptions,
    extra: Value,
    outcome: FaultOutcome,
}

fn fault(name: &'static str, opts: TtsFakeOptions, extra: Value, outcome: FaultOutcome) -> Fault {
    Fault {
        name,
        opts,
        extra,
        outcome,
    }
}

/// Registers every fault on `fixture`, each against its own fake (returned: they must outlive
/// the suite), with `path` (`{"streaming": …}`) merged into each session.
async fn with_faults(
    mut fixture: TtsFixture,
    path: &Value,
    faults: Vec<Fault>,
) -> (TtsFixture, Vec<DeepgramTtsFake>) {
    let mut fakes = Vec::new();
    for f in faults {
        let fake = DeepgramTtsFake::with_options(f.opts).await;
        let mut extra = path.clone();
        if let (Some(m), Value::Object(e)) = (extra.as_object_mut(), f.extra) {
            m.extend(e);
        }
        fixture = fixture.fault(f.name, session(&fake, extra), f.outcome);
        fakes.push(fake);
    }
    (fixture, fakes)
}

/// The faults every path shares: the upgrade and the POST are refused alike.
fn refusals() -> Vec<Fault> {
    let key = || TtsFakeOptions::new(KEY);
    vec![
        fault(
            "wrong key",
            TtsFakeOptions::new("another-key"),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Auth),
        ),
        fault(
            "403",
            key().fault(status(
                403,
                r#"{"err_code":"FORBIDDEN","err_msg":"Insufficient permissions."}"#,
                None,
            )),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Auth),
        ),
        fault(
            "429",
            key().fault(status(
                429,
                r#"{"err_code":"TOO_MANY_REQUESTS","err_msg":"Too many requests."}"#,
                Some(2),
            )),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        ),
        fault(
            "503",
            key().fault(status(
                503,
                r#"{"category":"UNAVAILABLE","message":"Try later."}"#,
                Some(1),
            )),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        fault(
            "vendor error 400",
            key().fault(status(
                400,
                r#"{"err_code":"Bad Request","err_msg":"No such model/voice."}"#,
                None,
            )),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Config),
        ),
    ]
}

#[tokio::test]
async fn conforms_over_the_websocket() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let key = || TtsFakeOptions::new(KEY);
    let mut faults = refusals();
    faults.extend([
        // Deepgram's speak socket has no error message: it reports by closing.
        fault(
            "close 1011 mid-audio",
            key().fault(TtsFault::CloseAfterAudio {
                frames: 1,
                code: 1011,
                reason: "internal error".into(),
            }),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        fault(
            "dropped mid-audio",
            key().fault(TtsFault::Truncate { after_chunks: 1 }),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        // Closed (1000) after each request: the next one redials.
        fault(
            "closed between requests",
            key().close_after_flushes(1),
            json!({}),
            FaultOutcome::Recovers,
        ),
        // Junk frames around the real ones are skipped.
        fault(
            "garbage",
            key().fault(TtsFault::Garbage),
            json!({}),
            FaultOutcome::Recovers,
        ),
        fault(
            "silent",
            key().fault(TtsFault::Silent),
            json!({"response_timeout_ms": 300, "drain_timeout_ms": 300}),
            FaultOutcome::Fails(ErrorCategory::Timeout),
        ),
    ]);
    let fixture = TtsFixture::new(session(&fake, json!({}))).guard(GUARD);
    let (fixture, fakes) = with_faults(fixture, &json!({}), faults).await;
    check_tts(&DeepgramTts::new(), &fixture).await.assert_ok();
    assert!(fake.rest_requests().is_empty());
    assert!(!fake.sessions().is_empty());
    // Every faulty fake was reached over the socket path.
    for f in &fakes {
        assert!(f.rest_requests().is_empty());
    }
    // Every faulty fake was reached (no fault was refused by the plugin before any request);
    // a refused upgrade is not a session, so only those that accepted one are counted.
    assert_eq!(fakes.iter().filter(|f| !f.sessions().is_empty()).count(), 5);
}

#[tokio::test]
async fn conforms_over_rest() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let key = || TtsFakeOptions::new(KEY);
    let mut faults = refusals();
    faults.extend([
        // A 200 that is not audio.
        fault(
            "garbage",
            key().fault(TtsFault::Garbage),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Permanent),
        ),
        fault(
            "truncated body",
            key().fault(TtsFault::Truncate { after_chunks: 1 }),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        fault(
            "silent",
            key().fault(TtsFault::Silent),
            json!({"read_timeout_ms": 300}),
            FaultOutcome::Fails(ErrorCategory::Timeout),
        ),
    ]);
    let path = json!({"streaming": false});
    let fixture = TtsFixture::new(session(&fake, path.clone())).guard(GUARD);
    let (fixture, fakes) = with_faults(fixture, &path, faults).await;
    check_tts(&DeepgramTts::new(), &fixture).await.assert_ok();
    assert!(fake.sessions().is_empty());
    assert!(!fake.rest_requests().is_empty());
    for f in &fakes {
        assert!(f.sessions().is_empty());
        assert!(!f.rest_requests().is_empty(), "each faulty fake was asked");
    }
}

#[tokio::test]
async fn conforms_in_mulaw_over_the_websocket() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let mut cfg = session(&fake, json!({}));
    cfg.encoding = AudioEncoding::Mulaw;
    cfg.sample_rate = 8_000;
    let fixture = TtsFixture::new(cfg).guard(GUARD);
    check_tts(&DeepgramTts::new(), &fixture).await.assert_ok();
}

// --- 4. errors ---------------------------------------------------------------------------

fn status(status: u16, body: &str, retry_after: Option<u64>) -> TtsFault {
    TtsFault::Status {
        status,
        body: body.into(),
        retry_after,
    }
}

#[tokio::test]
async fn rest_errors_are_categorised() {
    // A wrong key: the fake's own 401.
    let fake = DeepgramTtsFake::start("another-key").await;
    let (r, _) = synth(&session(&fake, json!({"streaming": false})), "Hi.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("Invalid credentials"), "{e}");
    assert!(!e.to_string().contains(KEY), "{e}");

    let cases = [
        (
            status(
                429,
                r#"{"err_code":"TOO_MANY_REQUESTS","err_msg":"Too many requests."}"#,
                Some(3),
            ),
            ErrorCategory::RateLimited,
        ),
        (
            status(
                400,
                r#"{"err_code":"Bad Request","err_msg":"No such model/voice."}"#,
                None,
            ),
            ErrorCategory::Config,
        ),
        (
            status(
                400,
                r#"{"err_code":"Bad Request","err_msg":"Input text exceeds 2000 characters."}"#,
                None,
            ),
            ErrorCategory::Permanent,
        ),
        (
            status(
                403,
                r#"{"err_code":"FORBIDDEN","err_msg":"Insufficient permissions."}"#,
                None,
            ),
            ErrorCategory::Auth,
        ),
        (
            status(500, "<html>oops</html>", None),
            ErrorCategory::Transient,
        ),
        (
            status(
                503,
                r#"{"category":"UNAVAILABLE","message":"Try later."}"#,
                Some(1),
            ),
            ErrorCategory::Transient,
        ),
    ];
    for (fault, want) in cases {
        let fake =
            DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(fault.clone())).await;
        let (r, audio) = synth(&session(&fake, json!({"streaming": false})), "Hi.").await;
        let e = r.unwrap_err();
        assert_eq!(e.category(), want, "{fault:?}: {e}");
        assert!(audio.is_empty());
        if want == ErrorCategory::RateLimited {
            assert!(
                matches!(
                    e,
                    PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3)
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("Too many requests."), "{e}");
        }
    }
}

#[tokio::test]
async fn rest_refuses_what_it_cannot_parse() {
    // An unknown model: the fake's real 400 (Config, Deepgram's message kept).
    let fake = DeepgramTtsFake::start(KEY).await;
    let cfg = session(&fake, json!({"streaming": false})).with_voice("nova-3");
    let (r, _) = synth(&cfg, "Hi.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("No such model"), "{e}");

    // A 200 that is not audio.
    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(TtsFault::Garbage)).await;
    let (r, audio) = synth(&session(&fake, json!({"streaming": false})), "Hi.").await;
    assert_eq!(r.unwrap_err().category(), ErrorCategory::Permanent);
    assert!(audio.is_empty());

    // A body cut off mid-stream: the audio so far, then a passing failure.
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).fault(TtsFault::Truncate { after_chunks: 2 }),
    )
    .await;
    let (r, audio) = synth(
        &session(&fake, json!({"streaming": false})),
        "A longer text here.",
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert_eq!(audio.len(), 2 * 960);
}

#[tokio::test]
async fn a_silent_rest_vendor_times_out() {
    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(TtsFault::Silent)).await;
    let cfg = session(&fake, json!({"streaming": false, "read_timeout_ms": 300}));
    let (r, audio) = synth(&cfg, "Hi.").await;
    assert_eq!(r.unwrap_err().category(), ErrorCategory::Timeout);
    assert!(audio.is_empty());
}

#[tokio::test]
async fn websocket_handshake_errors_are_categorised() {
    let plugin = DeepgramTts::new();
    let fake = DeepgramTtsFake::start("another-key").await;
    let e = open(&plugin, &session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains(KEY), "{e}");

    let fake = DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(status(
        429,
        r#"{"err_code":"TOO_MANY_REQUESTS"}"#,
        Some(2),
    )))
    .await;
    let e = open(&plugin, &session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ),
        "{e:?}"
    );

    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(status(500, "x", None))).await;
    let e = open(&plugin, &session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");

    // An unknown model is the fake's 400 on the upgrade.
    let fake = DeepgramTtsFake::start(KEY).await;
    let e = open(&plugin, &session(&fake, json!({})).with_voice("whisper-1"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
}

#[tokio::test]
async fn websocket_garbage_is_ignored() {
    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(TtsFault::Garbage)).await;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &session(&fake, json!({}))).await.unwrap();
    for id in 1..=2 {
        peer.input.send(speak(id, "Still fine.")).await.unwrap();
        let (audio, err) = until_end(&mut peer, id).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(audio, expected("Still fine.", "linear16", RATE, 1.0));
    }
    finish(peer, task).await;
}

#[tokio::test]
async fn a_dropped_socket_fails_the_request_and_the_next_redials() {
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).fault(TtsFault::Truncate { after_chunks: 2 }),
    )
    .await;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &session(&fake, json!({}))).await.unwrap();
    peer.input
        .send(speak(1, "This one is cut short."))
        .await
        .unwrap();
    let (audio, err) = until_end(&mut peer, 1).await;
    let e = err.expect("request 1 fails");
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert_eq!(audio.len(), 2 * 960);
    // Short enough to fit in two frames: the next socket delivers it.
    peer.input.send(speak(2, "Ok.")).await.unwrap();
    let (audio, err) = until_end(&mut peer, 2).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(audio, expected("Ok.", "linear16", RATE, 1.0));
    assert_eq!(fake.sessions().len(), 2);
    finish(peer, task).await;
}

#[tokio::test]
async fn a_close_code_mid_audio_fails_the_request() {
    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(TtsFault::CloseAfterAudio {
            frames: 1,
            code: 1011,
            reason: "internal error".into(),
        }))
        .await;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &session(&fake, json!({}))).await.unwrap();
    peer.input
        .send(speak(1, "Hello there, world."))
        .await
        .unwrap();
    let (_, err) = until_end(&mut peer, 1).await;
    let e = err.expect("request 1 fails");
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(e.to_string().contains("1011"), "{e}");
    finish(peer, task).await;
}

#[tokio::test]
async fn a_silent_websocket_vendor_times_out() {
    let fake =
        DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(TtsFault::Silent)).await;
    let plugin = DeepgramTts::new();
    let cfg = session(
        &fake,
        json!({"response_timeout_ms": 300, "drain_timeout_ms": 300}),
    );
    let (mut peer, task) = open(&plugin, &cfg).await.unwrap();
    peer.input.send(speak(1, "Anyone there?")).await.unwrap();
    let (audio, err) = until_end(&mut peer, 1).await;
    assert_eq!(err.expect("times out").category(), ErrorCategory::Timeout);
    assert!(audio.is_empty());
    finish(peer, task).await;
}

#[tokio::test]
async fn a_socket_closed_between_requests_is_redialled() {
    let fake = DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).close_after_flushes(1)).await;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &session(&fake, json!({}))).await.unwrap();
    for (id, text) in [(1, "First."), (2, "Second."), (3, "Third.")] {
        peer.input.send(speak(id, text)).await.unwrap();
        let (audio, err) = until_end(&mut peer, id).await;
        assert!(err.is_none(), "{id}: {err:?}");
        assert_eq!(audio, expected(text, "linear16", RATE, 1.0));
        // Let the vendor's close land before the next request (either order must work).
        fake.wait_for_session(id as usize - 1, GUARD, |s| s.ended)
            .await
            .unwrap();
    }
    assert_eq!(fake.sessions().len(), 3);
    finish(peer, task).await;
}

// --- 5. cancel ---------------------------------------------------------------------------

#[tokio::test]
async fn rest_cancel_stops_reading() {
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).chunk_delay(Duration::from_millis(5)),
    )
    .await;
    let cfg = session(&fake, json!({"streaming": false}));
    let (tx, mut rx) = mpsc::channel(4);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(1, tx, flag.clone());
    let req = SpeakRequest {
        id: 1,
        text: "A long text. ".repeat(40),
        flush: true,
    };
    let task = tokio::spawn(async move { DeepgramTts::new().synthesize(&cfg, req, sink).await });
    assert!(matches!(
        tokio::time::timeout(GUARD, rx.recv()).await.unwrap(),
        Some(TtsEvent::Audio { id: 1, .. })
    ));
    flag.cancel_up_to(1);
    // Drain what was queued so the plugin's next send sees the cancel.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::time::timeout(GUARD, task)
        .await
        .expect("synthesize kept going")
        .unwrap()
        .unwrap();
    let log = fake
        .wait_for_rest(0, GUARD, |l| l.client_gone)
        .await
        .expect("the fake saw the client go");
    assert!(!log.completed);
}

#[tokio::test]
async fn websocket_cancel_clears_and_resends_what_follows() {
    let fake = DeepgramTtsFake::with_options(
        TtsFakeOptions::new(KEY).fault(TtsFault::HoldAfterFirstChunk),
    )
    .await;
    let plugin = DeepgramTts::new();
    let (mut peer, task) = open(&plugin, &session(&fake, json!({}))).await.unwrap();
    peer.input
        .send(speak(1, "The first request, to be cut."))
        .await
        .unwrap();
    peer.input.send(speak(2, "The second.")).await.unwrap();
    assert!(matches!(
        next(&mut peer).await,
        TtsEvent::Audio { id: 1, .. }
    ));
    fake.wait_for_session(0, GUARD, |s| s.flushes == 2)
        .await
        .unwrap();
    peer.input
        .send(TtsInput::Cancel { up_to: 1 })
        .await
        .unwrap();
    fake.wait_for_session(0, GUARD, |s| s.clears == 1)
        .await
        .expect("Clear sent");
    fake.release();
    // Request 2 was in Deepgram's buffer when it was cleared: it is sent again and completes.
    let (audio, err) = until_end(&mut peer, 2).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(audio, expected("The second.", "linear16", RATE, 1.0));
    let s = fake.sessions().remove(0);
    assert_eq!(
        s.speaks,
        [
            "The first request, to be cut.",
            "The second.",
            "The second."
        ]
    );
    assert_eq!(fake.sessions().len(), 1);
    // Cancelling what is already done sends nothing.
    peer.input
        .send(TtsInput::Cancel { up_to: 2 })
        .await
        .unwrap();
    peer.input.send(speak(3, "Third.")).await.unwrap();
    let (_, err) = until_end(&mut peer, 3).await;
    assert!(err.is_none());
    assert_eq!(fake.sessions()[0].clears, 1);
    finish(peer, task).await;
}

// --- 6. voices ---------------------------------------------------------------------------

#[tokio::test]
async fn voices_are_listed_and_cached() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let plugin = DeepgramTts::new();
    plugin
        .init(&PluginContext::new("test"), &section(&fake, json!({})))
        .await
        .unwrap();
    let voices = plugin.voices(None).await.unwrap();
    let ids: Vec<&str> = voices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "aura-2-thalia-en",
            "aura-2-apollo-en",
            "aura-2-celeste-es",
            "aura-asteria-en"
        ]
    );
    let thalia = &voices[0];
    assert_eq!(thalia.name, "Thalia");
    assert_eq!(thalia.language, "en-US");
    assert_eq!(thalia.accent, "American");
    assert_eq!(thalia.gender, "female");
    assert_eq!(voices[1].gender, "male");
    assert_eq!(thalia.sample, "https://static.example/thalia.wav");
    assert_eq!(
        plugin.voices(Some(Secret::from(KEY))).await.unwrap(),
        voices
    );
    assert_eq!(
        fake.model_listings(),
        1,
        "the second call is served from the cache"
    );

    let plugin = DeepgramTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &section(&fake, json!({"voices_ttl_secs": 0})),
        )
        .await
        .unwrap();
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    plugin.voices(None).await.unwrap();
    assert_eq!(fake.model_listings(), 3);
    let e = plugin
        .voices(Some(Secret::from("wrong")))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
}

// --- 7. prepare --------------------------------------------------------------------------

#[tokio::test]
async fn prepare_rejects_before_any_request() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let plugin = DeepgramTts::new();
    let no_key = session(&fake, json!({})).with_api_key(None);
    assert_eq!(
        plugin.prepare(&no_key).await.unwrap_err().category(),
        ErrorCategory::Auth
    );
    let (io, _peer) = TtsIo::pair(4);
    assert_eq!(
        plugin
            .open_stream(&no_key, io)
            .await
            .err()
            .unwrap()
            .category(),
        ErrorCategory::Auth
    );
    for (enc, rate) in [
        (AudioEncoding::Flac, 24_000),
        (AudioEncoding::Wav, 16_000),
        (AudioEncoding::Linear16, 22_050),
        (AudioEncoding::Mulaw, 24_000),
    ] {
        let mut cfg = session(&fake, json!({}));
        cfg.encoding = enc;
        cfg.sample_rate = rate;
        let e = plugin.prepare(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Config, "{enc} {rate}: {e}");
    }
    let bad = session(&fake, json!({"base_url": "ftp://nowhere"}));
    assert_eq!(
        plugin.prepare(&bad).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    let bad = session(&fake, json!({})).with_voice("no spaces please");
    assert_eq!(
        plugin.prepare(&bad).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    assert!(fake.rest_requests().is_empty());
    assert!(fake.sessions().is_empty());
    plugin.prepare(&session(&fake, json!({}))).await.unwrap();
}

#[tokio::test]
async fn compressed_formats_use_rest() {
    let fake = DeepgramTtsFake::start(KEY).await;
    let plugin = DeepgramTts::new();
    let mut cfg = session(&fake, json!({}));
    cfg.encoding = AudioEncoding::Mp3;
    cfg.sample_rate = 24_000;
    plugin.prepare(&cfg).await.unwrap();
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
    let (r, audio) = synth(&cfg, "Compressed.").await;
    r.unwrap();
    assert!(audio.starts_with(&[0xFF, 0xFB]));
    assert!(fake.sessions().is_empty());
}

#[test]
fn the_plugin_is_registered_as_tts() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .any(|h| {
            h.kind() == waav_plugin_api::PluginKind::Tts && h.plugin().info().id == "deepgram"
        });
    assert!(found);
    let info = DeepgramTts::new().info();
    assert_eq!(info.credential_fields()[0].env, Some("DEEPGRAM_API_KEY"));
}
