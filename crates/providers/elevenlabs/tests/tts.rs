//! The ElevenLabs TTS plugin against the protocol fake over 127.0.0.1: request shapes, audio
//! streaming, conformance (REST and WebSocket paths), errors, cancel, voices and refusals.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::timeout;
use waav_elevenlabs::ElevenLabsTts;
use waav_plugin_api::codec::mulaw_encode;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Emotion, ErrorCategory, Plugin, PluginConfig,
    PluginError, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPeer, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::elevenlabs::{audio_for, ElevenLabsFake, FakeOptions, Fault};

const KEY: &str = "test-key";
const GUARD: Duration = Duration::from_secs(20);
const RACHEL: &str = "21m00Tcm4TlvDq8ikWAM";

fn config(fake: &ElevenLabsFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url(), "response_timeout_ms": 5000});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    PluginConfig::from_value("plugins.tts.elevenlabs", v).unwrap()
}

fn session(fake: &ElevenLabsFake, enc: AudioEncoding, rate: u32, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, rate)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(fake, extra))
}

fn rest(fake: &ElevenLabsFake, enc: AudioEncoding, rate: u32) -> TtsSessionConfig {
    session(fake, enc, rate, json!({"stream_input": false}))
}

/// Runs `synthesize` for one request; returns its result and the audio chunks.
async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<Bytes>) {
    let plugin = ElevenLabsTts::new();
    plugin.prepare(cfg).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let r = timeout(
        GUARD,
        plugin.synthesize(cfg, req, AudioSink::new(1, tx, CancelFlag::new())),
    )
    .await
    .expect("bounded");
    let mut chunks = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        chunks.push(data);
    }
    (r, chunks)
}

fn joined(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

async fn open(
    cfg: &TtsSessionConfig,
) -> (TtsPeer, tokio::task::JoinHandle<Result<(), PluginError>>) {
    let plugin = ElevenLabsTts::new();
    plugin.prepare(cfg).await.unwrap();
    let (io, peer) = TtsIo::pair(256);
    let task = plugin
        .open_stream(cfg, io)
        .await
        .unwrap()
        .expect("streaming");
    (peer, tokio::spawn(task))
}

fn speak(id: u64, text: &str) -> TtsInput {
    TtsInput::Speak(SpeakRequest {
        id,
        text: text.into(),
        flush: true,
    })
}

/// Events until request `id` ends (Done or Error).
async fn until_end(peer: &mut TtsPeer, id: u64) -> Vec<TtsEvent> {
    let mut out = Vec::new();
    loop {
        let ev = timeout(GUARD, peer.events.recv())
            .await
            .expect("bounded")
            .expect("open");
        let end =
            matches!(&ev, TtsEvent::Done { id: i } | TtsEvent::Error { id: i, .. } if *i == id);
        out.push(ev);
        if end {
            return out;
        }
    }
}

fn audio_of(events: &[TtsEvent], id: u64) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            TtsEvent::Audio { id: i, data } if *i == id => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn error_of(events: &[TtsEvent]) -> &PluginError {
    events
        .iter()
        .find_map(|e| match e {
            TtsEvent::Error { error, .. } => Some(error),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error in {events:?}"))
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[test]
fn registered_with_id_aliases_and_credential() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .find(|h| {
            h.kind() == waav_plugin_api::PluginKind::Tts && h.plugin().info().id == "elevenlabs"
        })
        .expect("registered");
    let info = found.plugin().info();
    assert_eq!(info.aliases, ["eleven-labs", "11labs"]);
    let fields = info.credential_fields();
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("ELEVENLABS_API_KEY"));
    let caps = ElevenLabsTts::new().capabilities();
    assert_eq!(caps.encodings[0], AudioEncoding::Linear16);
    assert!(caps.encodings.contains(&AudioEncoding::Mp3));
    assert!(caps.sample_rates.contains(&44_100));
}

#[tokio::test]
async fn rest_request_is_shaped_as_documented() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"stream_input": false, "language_code": "en", "similarity_boost": 0.8,
               "apply_text_normalization": "on", "enable_logging": false}),
    )
    .with_voice(RACHEL)
    .with_model("eleven_turbo_v2_5");
    cfg.speaking_rate = 1.1;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.9),
        ..Emotion::default()
    };
    let (r, chunks) = synth(&cfg, "Hello there.").await;
    r.unwrap();
    assert!(!chunks.is_empty());
    let reqs = fake.http_requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(
        req.uri,
        format!("/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000&enable_logging=false")
    );
    assert_eq!(req.header("xi-api-key"), Some(KEY));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.body,
        json!({
            "text": "Hello there.",
            "model_id": "eleven_turbo_v2_5",
            "voice_settings": {"stability": 0.19, "similarity_boost": 0.8, "style": 0.9, "speed": 1.1},
            "language_code": "en",
            "apply_text_normalization": "on",
        })
    );

    // Defaults: the default voice and model, no voice_settings; formats per encoding.
    for (enc, rate, want) in [
        (AudioEncoding::Mulaw, 8_000, "ulaw_8000"),
        (AudioEncoding::Alaw, 8_000, "alaw_8000"),
        (AudioEncoding::Mp3, 44_100, "mp3_44100_128"),
        (AudioEncoding::Mp3, 24_000, "mp3_24000_48"),
        (AudioEncoding::Linear16, 48_000, "pcm_48000"),
    ] {
        let (r, _) = synth(&rest(&fake, enc, rate), "Hi.").await;
        r.unwrap();
        let last = fake.http_requests().pop().unwrap();
        assert_eq!(last.query("output_format"), Some(want));
        assert!(last
            .uri
            .starts_with("/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"));
        assert_eq!(
            last.body,
            json!({"text": "Hi.", "model_id": "eleven_flash_v2_5"})
        );
    }
}

#[tokio::test]
async fn rest_audio_streams_byte_exact_before_the_response_ends() {
    let opts = FakeOptions {
        hold_after_first_chunk: true,
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let cfg = rest(&fake, AudioEncoding::Linear16, 16_000);
    let plugin = ElevenLabsTts::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let text = "Hello there, this is streamed.";
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let synth = plugin.synthesize(&cfg, req, AudioSink::new(1, tx, CancelFlag::new()));
    tokio::pin!(synth);
    // The first chunk arrives while the fake is still holding the rest.
    let first = tokio::select! {
        ev = rx.recv() => ev.unwrap(),
        r = &mut synth => panic!("ended before the first chunk: {r:?}"),
    };
    assert_eq!(fake.completed_responses(), 0);
    fake.release();
    timeout(GUARD, &mut synth).await.unwrap().unwrap();
    let mut chunks = vec![first];
    while let Ok(ev) = rx.try_recv() {
        chunks.push(ev);
    }
    let audio: Vec<u8> = chunks
        .iter()
        .flat_map(|e| match e {
            TtsEvent::Audio { data, .. } => data.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(chunks.len() > 1);
    assert_eq!(audio, audio_for(text, "pcm_16000", 10).unwrap());
}

#[tokio::test]
async fn mulaw_at_16k_comes_from_pcm_encoded_here() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let (r, chunks) = synth(&rest(&fake, AudioEncoding::Mulaw, 16_000), "Hello.").await;
    r.unwrap();
    assert_eq!(
        fake.http_requests()[0].query("output_format"),
        Some("pcm_16000")
    );
    let pcm = audio_for("Hello.", "pcm_16000", 10).unwrap();
    let want: Vec<u8> = pcm
        .chunks_exact(2)
        .map(|b| mulaw_encode(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    assert_eq!(joined(&chunks), want);
}

/// One fault to register: the fake's options, the session's extra plugin config (merged over
/// the path's), a session tweak, and what the plugin must make of it.
struct FaultCase {
    name: &'static str,
    opts: FakeOptions,
    extra: Value,
    tweak: fn(TtsSessionConfig) -> TtsSessionConfig,
    outcome: FaultOutcome,
}

fn case(name: &'static str, fault: Fault, extra: Value, outcome: FaultOutcome) -> FaultCase {
    FaultCase {
        name,
        opts: FakeOptions::new(KEY).fault(fault),
        extra,
        tweak: |s| s,
        outcome,
    }
}

fn status_fault(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
    Fault::Status {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.into(),
    }
}

/// The refusals both paths share (the POST and the upgrade are refused alike).
fn refusals() -> Vec<FaultCase> {
    vec![
        FaultCase {
            name: "wrong key",
            opts: FakeOptions::new(KEY),
            extra: json!({}),
            tweak: |s| s.with_api_key(Some(Secret::from("wrong-key-123"))),
            outcome: FaultOutcome::Fails(ErrorCategory::Auth),
        },
        case(
            "429",
            status_fault(
                429,
                &[("retry-after", "2")],
                r#"{"detail":{"status":"too_many_concurrent_requests","message":"busy"}}"#,
            ),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        ),
        case(
            "500",
            status_fault(500, &[], "internal"),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        FaultCase {
            name: "vendor error voice_not_found",
            opts: FakeOptions::new(KEY),
            extra: json!({}),
            tweak: |s| s.with_voice("NoSuchVoice"),
            outcome: FaultOutcome::Fails(ErrorCategory::Config),
        },
    ]
}

/// Registers `cases` on `fixture`, each against its own fake (returned: they must outlive the
/// suite).
async fn with_faults(
    mut fixture: TtsFixture,
    path: &Value,
    cases: Vec<FaultCase>,
) -> (TtsFixture, Vec<ElevenLabsFake>) {
    let mut fakes = Vec::new();
    for c in cases {
        let fake = ElevenLabsFake::start(c.opts).await;
        let mut extra = path.clone();
        for (k, x) in c.extra.as_object().cloned().unwrap_or_default() {
            extra[k] = x;
        }
        let s = (c.tweak)(session(&fake, AudioEncoding::Linear16, 16_000, extra));
        fixture = fixture.fault(c.name, s, c.outcome);
        fakes.push(fake);
    }
    (fixture, fakes)
}

#[tokio::test]
async fn conformance_rest_path() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let fast = json!({"response_timeout_ms": 300});
    let mut cases = refusals();
    cases.extend([
        case(
            "vendor error max_character_limit_exceeded",
            status_fault(
                400,
                &[],
                r#"{"detail":{"status":"max_character_limit_exceeded","message":"too long"}}"#,
            ),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Permanent),
        ),
        // A 200 whose body is JSON, not audio.
        case(
            "garbage",
            Fault::Garbage,
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Permanent),
        ),
        case(
            "truncated body",
            Fault::Truncate { after_chunks: 1 },
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        case(
            "silent after the head",
            Fault::Silent,
            fast.clone(),
            FaultOutcome::Fails(ErrorCategory::Timeout),
        ),
        case(
            "no response head",
            Fault::Hang,
            fast,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        ),
    ]);
    let path = json!({"stream_input": false});
    for (i, (enc, rate)) in [
        (AudioEncoding::Linear16, 16_000),
        (AudioEncoding::Mulaw, 8_000),
    ]
    .into_iter()
    .enumerate()
    {
        let mut fixture = TtsFixture::new(rest(&fake, enc, rate)).guard(GUARD);
        let mut fakes = Vec::new();
        if i == 0 {
            (fixture, fakes) = with_faults(fixture, &path, std::mem::take(&mut cases)).await;
        }
        check_tts(&ElevenLabsTts::new(), &fixture).await.assert_ok();
        assert!(fakes.iter().all(|f| f.ws_sessions().is_empty()));
        assert!(fakes.iter().all(|f| !f.http_requests().is_empty()));
    }
}

#[tokio::test]
async fn conformance_streaming_path() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let max_ctx = r#"{"message":"Maximum simultaneous contexts per WebSocket connection exceeded (5).","error":"max_active_conversations","code":1008}"#;
    let mut cases = refusals();
    cases.extend([
        // An error message, then a 1008 close, mid-audio.
        case(
            "vendor error max_active_conversations",
            Fault::WsError {
                after_audio: 1,
                json: max_ctx.into(),
                code: 1008,
            },
            json!({}),
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        ),
        case(
            "dropped mid-audio",
            Fault::Truncate { after_chunks: 1 },
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        // Junk messages around the real ones are skipped.
        case("garbage", Fault::Garbage, json!({}), FaultOutcome::Recovers),
        // The vendor's idle close crosses the second request: it goes again on a new socket.
        case(
            "idle close as the next request arrives",
            Fault::CloseOnNextRequest { notice: true },
            json!({}),
            FaultOutcome::Recovers,
        ),
        case(
            "dropped as the next request arrives",
            Fault::CloseOnNextRequest { notice: false },
            json!({}),
            FaultOutcome::Recovers,
        ),
        case(
            "audio not base64",
            Fault::BadAudio,
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Permanent),
        ),
        case(
            "silent",
            Fault::Silent,
            json!({"response_timeout_ms": 300}),
            FaultOutcome::Fails(ErrorCategory::Timeout),
        ),
    ]);
    for (i, (enc, rate)) in [
        (AudioEncoding::Linear16, 24_000),
        (AudioEncoding::Alaw, 8_000),
    ]
    .into_iter()
    .enumerate()
    {
        let mut fixture = TtsFixture::new(session(&fake, enc, rate, json!({}))).guard(GUARD);
        let mut fakes = Vec::new();
        if i == 0 {
            (fixture, fakes) = with_faults(fixture, &json!({}), std::mem::take(&mut cases)).await;
        }
        check_tts(&ElevenLabsTts::new(), &fixture).await.assert_ok();
        assert!(fakes.iter().all(|f| f.http_requests().is_empty()));
        assert!(fakes.iter().all(|f| !f.ws_sessions().is_empty()));
    }
    // One socket per session (no reconnects needed here).
    assert_eq!(fake.ws_sessions().len(), 2);
}

#[tokio::test]
async fn conformance_streaming_with_snake_case_and_junk() {
    for opts in [
        FakeOptions {
            snake_case: true,
            ..FakeOptions::new(KEY)
        },
        FakeOptions::new(KEY).fault(Fault::Garbage),
    ] {
        let fake = ElevenLabsFake::start(opts).await;
        let fixture = TtsFixture::new(session(&fake, AudioEncoding::Linear16, 16_000, json!({})))
            .guard(GUARD);
        check_tts(&ElevenLabsTts::new(), &fixture).await.assert_ok();
    }
}

#[tokio::test]
async fn websocket_protocol_shape_and_byte_exact_audio() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"chunk_length_schedule": [50, 120], "inactivity_timeout": 60, "auto_mode": true}),
    )
    .with_voice(RACHEL)
    .with_model("eleven_flash_v2_5");
    cfg.speaking_rate = 0.5;
    let (mut peer, task) = open(&cfg).await;
    peer.input.send(speak(1, "Hello there.")).await.unwrap();
    let events = until_end(&mut peer, 1).await;
    assert!(
        matches!(events.last(), Some(TtsEvent::Done { id: 1 })),
        "{events:?}"
    );
    assert_eq!(
        audio_of(&events, 1),
        audio_for("Hello there.", "pcm_16000", 10).unwrap()
    );
    drop(peer);
    timeout(GUARD, task).await.unwrap().unwrap().unwrap();

    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    let up = s.request.as_ref().unwrap();
    assert_eq!(
        up.path(),
        format!("/v1/text-to-speech/{RACHEL}/multi-stream-input")
    );
    assert_eq!(up.query("model_id"), Some("eleven_flash_v2_5"));
    assert_eq!(up.query("output_format"), Some("pcm_16000"));
    assert_eq!(up.query("inactivity_timeout"), Some("60"));
    assert_eq!(up.query("auto_mode"), Some("true"));
    assert_eq!(up.header("xi-api-key"), Some(KEY));
    assert_eq!(
        s.received,
        vec![
            json!({"text": " ", "context_id": "waav-1", "voice_settings": {"speed": 0.7},
                   "generation_config": {"chunk_length_schedule": [50, 120]}}),
            json!({"text": "Hello there. ", "context_id": "waav-1", "flush": true}),
            json!({"context_id": "waav-1", "close_context": true}),
        ]
    );
    assert_eq!(s.closed_contexts, ["waav-1"]);
    eventually("socket closed by the client", || {
        fake.ws_sessions()[0].ended
    })
    .await;
}

#[tokio::test]
async fn websocket_first_audio_arrives_while_the_vendor_holds_the_rest() {
    let opts = FakeOptions {
        hold_after_first_chunk: true,
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let (mut peer, _task) = open(&session(&fake, AudioEncoding::Linear16, 16_000, json!({}))).await;
    peer.input
        .send(speak(1, "A longer sentence to stream."))
        .await
        .unwrap();
    let first = timeout(GUARD, peer.events.recv()).await.unwrap().unwrap();
    assert!(matches!(first, TtsEvent::Audio { id: 1, .. }));
    assert_eq!(fake.ws_sessions()[0].audio_sent, 1);
    fake.release();
    let mut events = vec![first];
    events.extend(until_end(&mut peer, 1).await);
    assert_eq!(
        audio_of(&events, 1),
        audio_for("A longer sentence to stream.", "pcm_16000", 10).unwrap()
    );
}

#[tokio::test]
async fn websocket_cancel_closes_the_context_and_drops_its_audio() {
    let opts = FakeOptions {
        chunk_delay: Duration::from_millis(5),
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let (mut peer, _task) = open(&session(&fake, AudioEncoding::Linear16, 16_000, json!({}))).await;
    let long = "This is a long request that will be cancelled halfway. ".repeat(10);
    peer.input.send(speak(1, &long)).await.unwrap();
    let first = timeout(GUARD, peer.events.recv()).await.unwrap().unwrap();
    assert!(matches!(first, TtsEvent::Audio { id: 1, .. }));
    peer.input
        .send(TtsInput::Cancel { up_to: 1 })
        .await
        .unwrap();
    peer.input.send(speak(2, "Next one.")).await.unwrap();
    let events = until_end(&mut peer, 2).await;
    assert!(
        matches!(events.last(), Some(TtsEvent::Done { id: 2 })),
        "{events:?}"
    );
    // Once request 2 began, nothing more for request 1; no Done for the cancelled request.
    let start2 = events
        .iter()
        .position(|e| matches!(e, TtsEvent::Audio { id: 2, .. }))
        .unwrap();
    assert!(!events[start2..]
        .iter()
        .any(|e| matches!(e, TtsEvent::Audio { id: 1, .. })));
    assert!(!events.iter().any(|e| matches!(e, TtsEvent::Done { id: 1 })));
    assert_eq!(
        audio_of(&events, 2),
        audio_for("Next one.", "pcm_16000", 10).unwrap()
    );
    // Each request's context is closed right after its text (that is what brings its final);
    // the cancel closes request 1's again, which stops any generation not yet flushed.
    let s = &fake.ws_sessions()[0];
    assert_eq!(s.closed_contexts, ["waav-1", "waav-1", "waav-2"]);
    assert_eq!(fake.ws_sessions().len(), 1, "cancel needs no reconnect");
}

#[tokio::test]
async fn websocket_cancels_beyond_the_context_limit_replace_the_socket() {
    let opts = FakeOptions {
        chunk_delay: Duration::from_millis(20),
        max_contexts: 3,
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"max_contexts": 3}),
    );
    let (mut peer, _task) = open(&cfg).await;
    let long = "A long request that keeps draining after its cancel. ".repeat(10);
    for id in 1..=4 {
        peer.input.send(speak(id, &long)).await.unwrap();
        loop {
            match timeout(GUARD, peer.events.recv()).await.unwrap().unwrap() {
                TtsEvent::Audio { id: i, .. } if i == id => break,
                TtsEvent::Audio { .. } => {}
                other => panic!("request {id}: {other:?}"),
            }
        }
        peer.input
            .send(TtsInput::Cancel { up_to: id })
            .await
            .unwrap();
    }
    peer.input.send(speak(5, "Done now.")).await.unwrap();
    let events = until_end(&mut peer, 5).await;
    assert!(
        matches!(events.last(), Some(TtsEvent::Done { id: 5 })),
        "{events:?}"
    );
    assert!(fake.ws_sessions().len() >= 2, "the socket was replaced");
}

#[tokio::test]
async fn websocket_reconnects_lazily_after_the_vendor_closed_it() {
    let opts = FakeOptions {
        inactivity: Duration::from_millis(200),
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let (mut peer, _task) = open(&session(&fake, AudioEncoding::Linear16, 16_000, json!({}))).await;
    peer.input.send(speak(1, "First.")).await.unwrap();
    assert!(matches!(
        until_end(&mut peer, 1).await.last(),
        Some(TtsEvent::Done { id: 1 })
    ));
    eventually("the vendor closed the idle socket", || {
        fake.ws_sessions()[0].ended
    })
    .await;
    assert_eq!(
        fake.ws_sessions().len(),
        1,
        "no reconnect before a request needs it"
    );
    peer.input.send(speak(2, "Second.")).await.unwrap();
    let events = until_end(&mut peer, 2).await;
    assert!(
        matches!(events.last(), Some(TtsEvent::Done { id: 2 })),
        "{events:?}"
    );
    assert_eq!(fake.ws_sessions().len(), 2);
}

/// The vendor ends the socket right after a request went out and before any answer (its idle
/// close crossing the request, with its notice or as a drop): the request is sent again on a
/// new socket and the host gets its audio once, whole, and no error.
#[tokio::test]
async fn websocket_resends_a_request_its_closing_socket_never_answered() {
    for notice in [true, false] {
        let fake = ElevenLabsFake::start(
            FakeOptions::new(KEY).fault(Fault::CloseOnNextRequest { notice }),
        )
        .await;
        let (mut peer, task) =
            open(&session(&fake, AudioEncoding::Linear16, 16_000, json!({}))).await;
        peer.input.send(speak(1, "First one.")).await.unwrap();
        let first = until_end(&mut peer, 1).await;
        peer.input.send(speak(2, "Second one.")).await.unwrap();
        let second = until_end(&mut peer, 2).await;
        for (events, id, text) in [(&first, 1, "First one."), (&second, 2, "Second one.")] {
            assert!(
                matches!(events.last(), Some(TtsEvent::Done { id: i }) if *i == id),
                "notice {notice}, request {id}: {events:?}"
            );
            assert!(
                !events.iter().any(|e| matches!(e, TtsEvent::Error { .. })),
                "notice {notice}: {events:?}"
            );
            assert_eq!(
                audio_of(events, id),
                audio_for(text, "pcm_16000", 10).unwrap(),
                "notice {notice}, request {id}: its audio once, whole"
            );
        }
        let sessions = fake.ws_sessions();
        assert_eq!(sessions.len(), 2, "notice {notice}: two upgrades");
        let contexts = |s: &waav_testkit::fakes::elevenlabs::WsSessionLog| {
            s.received
                .iter()
                .filter_map(|m| m["context_id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        // Socket 1 got both requests (the second unanswered), socket 2 the second again.
        assert_eq!(
            contexts(&sessions[0]),
            ["waav-1", "waav-1", "waav-1", "waav-2", "waav-2", "waav-2"],
            "notice {notice}"
        );
        assert_eq!(
            contexts(&sessions[1]),
            ["waav-2", "waav-2", "waav-2"],
            "notice {notice}"
        );
        assert!(sessions[0].ended, "notice {notice}");
        drop(peer);
        timeout(GUARD, task).await.unwrap().unwrap().unwrap();
    }
}

/// A request whose socket ends after some of its audio reached the host is not sent again
/// (that would repeat its start): it fails as Transient, once, and the next request is
/// served on a new socket.
#[tokio::test]
async fn websocket_does_not_resend_a_request_whose_audio_was_forwarded() {
    let fake =
        ElevenLabsFake::start(FakeOptions::new(KEY).fault(Fault::Truncate { after_chunks: 1 }))
            .await;
    let (mut peer, _task) = open(&session(&fake, AudioEncoding::Linear16, 16_000, json!({}))).await;
    peer.input
        .send(speak(1, "Hello there, several chunks."))
        .await
        .unwrap();
    let events = until_end(&mut peer, 1).await;
    assert!(!audio_of(&events, 1).is_empty(), "{events:?}");
    assert_eq!(error_of(&events).category(), ErrorCategory::Transient);
    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 1, "no re-send on a new socket");
    let texts = sessions[0]
        .received
        .iter()
        .filter(|m| m.get("flush").is_some())
        .count();
    assert_eq!(texts, 1, "the text went once");
}

#[tokio::test]
async fn rest_errors_are_categorised() {
    let json_err =
        |status: &str, msg: &str| json!({"detail": {"status": status, "message": msg}}).to_string();
    let cases = [
        (
            400,
            vec![],
            json_err("max_character_limit_exceeded", "too long"),
            ErrorCategory::Permanent,
        ),
        (400, vec![], "oops".to_owned(), ErrorCategory::Config),
        (
            429,
            vec![("retry-after".to_owned(), "3".to_owned())],
            json_err("too_many_concurrent_requests", "busy"),
            ErrorCategory::RateLimited,
        ),
        (500, vec![], "internal".to_owned(), ErrorCategory::Transient),
        (503, vec![], "<html>".to_owned(), ErrorCategory::Transient),
    ];
    for (status, headers, body, want) in cases {
        let fake = ElevenLabsFake::start(FakeOptions::new(KEY).fault(Fault::Status {
            status,
            headers,
            body: body.clone(),
        }))
        .await;
        let (r, chunks) = synth(&rest(&fake, AudioEncoding::Linear16, 16_000), "Hi.").await;
        let e = r.unwrap_err();
        assert_eq!(e.category(), want, "{status} {body}: {e}");
        assert!(chunks.is_empty());
        if status == 429 {
            assert!(
                matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
                "{e:?}"
            );
        }
    }

    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    // A wrong key: 401 invalid_api_key; the key never appears in the message.
    let cfg = rest(&fake, AudioEncoding::Linear16, 16_000)
        .with_api_key(Some(Secret::from("wrong-key-123")));
    let e = synth(&cfg, "Hi.").await.0.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("invalid_api_key"), "{e}");
    assert!(!e.to_string().contains("wrong-key-123"));
    // An unknown voice: 404 voice_not_found → Config.
    let cfg = rest(&fake, AudioEncoding::Linear16, 16_000).with_voice("NoSuchVoice");
    let e = synth(&cfg, "Hi.").await.0.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("voice_not_found"), "{e}");
}

#[tokio::test]
async fn rest_malformed_truncated_and_silent_responses_fail_cleanly() {
    let fast = json!({"stream_input": false, "response_timeout_ms": 300});
    for (fault, want) in [
        (Fault::Garbage, ErrorCategory::Permanent),
        (
            Fault::Truncate { after_chunks: 2 },
            ErrorCategory::Transient,
        ),
        (Fault::Silent, ErrorCategory::Timeout),
        (Fault::Hang, ErrorCategory::Timeout),
    ] {
        let fake = ElevenLabsFake::start(FakeOptions::new(KEY).fault(fault.clone())).await;
        let cfg = session(&fake, AudioEncoding::Linear16, 16_000, fast.clone());
        let (r, chunks) = synth(&cfg, "Hello there, a few chunks of audio.").await;
        let e = r.unwrap_err();
        assert_eq!(e.category(), want, "{fault:?}: {e}");
        if let Fault::Truncate { .. } = fault {
            assert_eq!(chunks.len(), 2);
        }
    }
}

#[tokio::test]
async fn websocket_errors_are_reported_per_request() {
    let fast = json!({"response_timeout_ms": 300});
    let max_ctx = r#"{"message":"Maximum simultaneous contexts per WebSocket connection exceeded (5).","error":"max_active_conversations","code":1008}"#;
    let cases = [
        (
            Fault::Status {
                status: 429,
                headers: vec![("retry-after".into(), "2".into())],
                body: r#"{"detail":{"status":"too_many_concurrent_requests","message":"busy"}}"#
                    .into(),
            },
            ErrorCategory::RateLimited,
        ),
        (
            Fault::Status {
                status: 500,
                headers: vec![],
                body: "down".into(),
            },
            ErrorCategory::Transient,
        ),
        (
            Fault::WsError {
                after_audio: 1,
                json: max_ctx.into(),
                code: 1008,
            },
            ErrorCategory::RateLimited,
        ),
        (
            Fault::Truncate { after_chunks: 1 },
            ErrorCategory::Transient,
        ),
        (Fault::Silent, ErrorCategory::Timeout),
        (Fault::BadAudio, ErrorCategory::Permanent),
    ];
    for (fault, want) in cases {
        let fake = ElevenLabsFake::start(FakeOptions::new(KEY).fault(fault.clone())).await;
        let cfg = session(&fake, AudioEncoding::Linear16, 16_000, fast.clone());
        let (mut peer, task) = open(&cfg).await;
        peer.input
            .send(speak(1, "Hello there, several chunks."))
            .await
            .unwrap();
        let events = until_end(&mut peer, 1).await;
        let e = error_of(&events);
        assert_eq!(e.category(), want, "{fault:?}: {e}");
        // The session survives a failed request and ends when the host hangs up.
        drop(peer);
        timeout(GUARD, task).await.unwrap().unwrap().unwrap();
    }

    // A wrong key is refused on the upgrade.
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}))
        .with_api_key(Some(Secret::from("bad")));
    let (mut peer, _task) = open(&cfg).await;
    peer.input.send(speak(1, "Hi.")).await.unwrap();
    let events = until_end(&mut peer, 1).await;
    assert_eq!(error_of(&events).category(), ErrorCategory::Auth);
    // Each request dials again (the first one at session start, then for the request).
    assert_eq!(fake.ws_sessions().len(), 2);
}

#[tokio::test]
async fn rest_cancel_mid_stream_drops_the_connection() {
    let opts = FakeOptions {
        chunk_delay: Duration::from_millis(5),
        ..FakeOptions::new(KEY)
    };
    let fake = ElevenLabsFake::start(opts).await;
    let cfg = rest(&fake, AudioEncoding::Linear16, 16_000);
    let plugin = ElevenLabsTts::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let flag = CancelFlag::new();
    let req = SpeakRequest {
        id: 1,
        text: "A long text that is cancelled while it streams. ".repeat(20),
        flush: true,
    };
    let synth = plugin.synthesize(&cfg, req, AudioSink::new(1, tx, flag.clone()));
    tokio::pin!(synth);
    tokio::select! {
        ev = rx.recv() => assert!(matches!(ev, Some(TtsEvent::Audio { .. }))),
        r = &mut synth => panic!("{r:?}"),
    }
    flag.cancel_up_to(1);
    let drain = async { while rx.recv().await.is_some() {} };
    let (r, ()) = timeout(GUARD, async { tokio::join!(&mut synth, drain) })
        .await
        .unwrap();
    assert!(r.is_err(), "a cancelled request does not report success");
    eventually("the fake saw the client go away", || {
        fake.aborted_responses() == 1
    })
    .await;
    assert_eq!(fake.completed_responses(), 0);
}

#[tokio::test]
async fn voices_are_mapped_and_cached() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let plugin = ElevenLabsTts::new();
    let ctx = waav_plugin_api::PluginContext::new("test");
    plugin.init(&ctx, &config(&fake, json!({}))).await.unwrap();
    let voices = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(voices.len(), 2);
    let george = &voices[0];
    assert_eq!(
        (
            george.id.as_str(),
            george.name.as_str(),
            george.accent.as_str(),
            george.gender.as_str()
        ),
        ("JBFqnCBsd6RMkjVDRZzb", "George", "british", "male")
    );
    assert_eq!(george.sample, "https://example.invalid/george.mp3");
    assert_eq!(voices[1].language, "en-US");
    assert_eq!(
        plugin.voices(Some(Secret::from(KEY))).await.unwrap(),
        voices
    );
    assert_eq!(
        fake.voices_hits(),
        1,
        "the second listing came from the cache"
    );

    let e = plugin
        .voices(Some(Secret::from("wrong")))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert_eq!(
        plugin.voices(None).await.unwrap_err().category(),
        ErrorCategory::Auth
    );

    // TTL 0: every call asks the vendor.
    let plugin = ElevenLabsTts::new();
    plugin
        .init(&ctx, &config(&fake, json!({"voices_ttl_secs": 0})))
        .await
        .unwrap();
    let before = fake.voices_hits();
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(fake.voices_hits(), before + 2);
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = ElevenLabsFake::start(FakeOptions::new(KEY)).await;
    let plugin = ElevenLabsTts::new();
    let no_key = session(&fake, AudioEncoding::Linear16, 16_000, json!({})).with_api_key(None);
    assert_eq!(
        plugin.prepare(&no_key).await.unwrap_err().category(),
        ErrorCategory::Auth
    );
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&no_key, io).await.is_err());
    for cfg in [
        session(&fake, AudioEncoding::Mp3, 16_000, json!({})),
        session(&fake, AudioEncoding::Opus, 48_000, json!({})),
        session(&fake, AudioEncoding::Linear16, 11_025, json!({})),
        session(&fake, AudioEncoding::Linear16, 16_000, json!({})).with_voice("a/b"),
        session(
            &fake,
            AudioEncoding::Linear16,
            16_000,
            json!({"stability": 3}),
        ),
    ] {
        let e = plugin.prepare(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    }
    assert!(fake.http_requests().is_empty());
    assert!(fake.ws_sessions().is_empty());
}
