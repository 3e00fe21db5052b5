//! The LMNT TTS plugin against the protocol fake over 127.0.0.1: request shape, audio
//! streaming, conformance, errors, cancel, voices and refusals.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::timeout;
use waav_lmnt::LmntTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Emotion, ErrorCategory, Plugin, PluginConfig,
    PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPeer,
    TtsPlugin, TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::lmnt::{audio_for, FakeOptions, FakeVoice, Fault, LmntFake, WsFault};

const KEY: &str = "lmnt-test-key";
const GUARD: Duration = Duration::from_secs(20);

fn config(fake: &LmntFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url(), "response_timeout_ms": 5000});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    PluginConfig::from_value("plugins.tts.lmnt", v).unwrap()
}

fn session(fake: &LmntFake, enc: AudioEncoding, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(fake, extra))
}

fn pcm(fake: &LmntFake) -> TtsSessionConfig {
    session(fake, AudioEncoding::Linear16, json!({}))
}

async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<Bytes>) {
    let plugin = LmntTts::new();
    plugin.prepare(cfg).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
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

#[test]
fn registered_with_id_and_credential() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .find(|h| h.plugin().info().id == "lmnt")
        .expect("registered");
    let info = found.plugin().info();
    assert!(info.aliases.is_empty());
    let fields = info.credential_fields();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("LMNT_API_KEY"));
    assert!(fields[0].secret && fields[0].required);
    let caps = LmntTts::new().capabilities();
    assert_eq!(
        caps.encodings,
        [
            AudioEncoding::Linear16,
            AudioEncoding::Mulaw,
            AudioEncoding::Mp3
        ]
    );
    assert_eq!(caps.sample_rates, [8_000, 16_000, 24_000]);
}

#[tokio::test]
async fn request_is_shaped_as_documented() {
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"language": "en", "top_p": 0.7}),
    )
    .with_voice("lily")
    .with_model("blizzard");
    cfg.speaking_rate = 1.5;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.6),
        ..Emotion::default()
    };
    let (r, chunks) = synth(&cfg, "Hello there.").await;
    r.unwrap();
    let reqs = fake.speeches();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.status, 200);
    assert_eq!(req.request.uri, "/v1/ai/speech/bytes");
    assert_eq!(req.request.header("x-api-key"), Some(KEY));
    assert_eq!(req.request.header("content-type"), Some("application/json"));
    assert_eq!(
        req.request.header("accept"),
        Some("application/octet-stream")
    );
    assert_eq!(
        req.body,
        json!({
            "text": "Hello there.",
            "voice": "lily",
            "model": "blizzard",
            "format": "pcm_s16le",
            "sample_rate": 16000,
            "language": "en",
            "temperature": 0.72,
            "top_p": 0.7,
            "speed": 1.5,
        })
    );
    assert_eq!(
        joined(&chunks),
        audio_for("Hello there.", "pcm_s16le", 16_000, 1.5, 20)
    );

    // Defaults: voice ava, no speed/temperature; mp3 passthrough at 24 kHz.
    let cfg = TtsSessionConfig::new(AudioEncoding::Mp3, 24_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(&fake, json!({})));
    let (r, chunks) = synth(&cfg, "Hi.").await;
    r.unwrap();
    assert_eq!(
        fake.speeches()[1].body,
        json!({"text": "Hi.", "voice": "ava", "model": "blizzard", "format": "mp3",
               "sample_rate": 24000})
    );
    assert_eq!(joined(&chunks), audio_for("Hi.", "mp3", 24_000, 1.0, 20));

    // µ-law: the WAV header LMNT puts first is removed; `send_speed: false` drops speed.
    let mut cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(&fake, json!({"send_speed": false})));
    cfg.speaking_rate = 1.5;
    let (r, chunks) = synth(&cfg, "Telephone.").await;
    r.unwrap();
    assert_eq!(fake.speeches()[2].body["format"], "ulaw");
    assert_eq!(fake.speeches()[2].body.get("speed"), None);
    let file = audio_for("Telephone.", "ulaw", 8_000, 1.0, 20);
    assert_eq!(&file[..4], b"RIFF");
    assert_eq!(joined(&chunks), file[44..]);

    // Text past 5000 characters becomes consecutive requests.
    let fake = LmntFake::start(FakeOptions {
        ms_per_char: 1,
        chunk_bytes: 16_000,
        ..FakeOptions::new(KEY)
    })
    .await;
    let long = "A sentence of moderate length. ".repeat(250);
    let (r, chunks) = synth(&pcm(&fake), &long).await;
    r.unwrap();
    let pieces: Vec<String> = fake
        .speeches()
        .iter()
        .map(|l| l.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| p.chars().count() <= 5000));
    let want: Vec<u8> = pieces
        .iter()
        .flat_map(|p| audio_for(p, "pcm_s16le", 16_000, 1.0, 1))
        .collect();
    assert_eq!(joined(&chunks), want);
}

#[tokio::test]
async fn audio_streams_byte_exact_and_the_first_chunk_arrives_before_the_rest() {
    let opts = FakeOptions::new(KEY).fault(Fault::HoldAfterFirstChunk);
    let fake = LmntFake::start(opts).await;
    let cfg = pcm(&fake);
    let plugin = LmntTts::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let text = "A sentence long enough for several chunks of audio.";
    let req = SpeakRequest {
        id: 9,
        text: text.into(),
        flush: true,
    };
    let synth = plugin.synthesize(&cfg, req, AudioSink::new(9, tx, CancelFlag::new()));
    tokio::pin!(synth);
    let first = tokio::select! {
        ev = rx.recv() => ev.expect("audio"),
        r = &mut synth => panic!("ended before the first chunk: {r:?}"),
    };
    let log = &fake.speeches()[0];
    assert_eq!(log.chunks_sent, 1);
    assert!(!log.completed, "the fake holds the rest until released");
    fake.release();
    timeout(GUARD, &mut synth).await.unwrap().unwrap();
    let mut events = vec![first];
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    assert!(events.len() > 2);
    let audio: Vec<u8> = events
        .iter()
        .flat_map(|e| match e {
            TtsEvent::Audio { id: 9, data } => data.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(audio, audio_for(text, "pcm_s16le", 16_000, 1.0, 20));
    assert!(fake.speeches()[0].completed);
}

/// One fault to register: the fake's options, extra plugin config, a session tweak, and what
/// the plugin must make of it.
struct FaultCase {
    name: &'static str,
    opts: FakeOptions,
    extra: Value,
    tweak: fn(TtsSessionConfig) -> TtsSessionConfig,
    outcome: FaultOutcome,
}

fn fault_case(
    name: &'static str,
    opts: FakeOptions,
    extra: Value,
    outcome: FaultOutcome,
) -> FaultCase {
    FaultCase {
        name,
        opts,
        extra,
        tweak: |s| s,
        outcome,
    }
}

fn ws(fault: WsFault) -> FakeOptions {
    FakeOptions {
        ws_fault: fault,
        ..FakeOptions::new(KEY)
    }
}

/// The faults the fake can inject on the path `stream_input` picks.
fn faults(stream_input: bool) -> Vec<FaultCase> {
    use ErrorCategory::*;
    let mut cases = vec![
        FaultCase {
            name: "wrong key",
            opts: FakeOptions::new(KEY),
            extra: json!({}),
            tweak: |s| s.with_api_key(Some(Secret::from("wrong-key"))),
            outcome: FaultOutcome::Fails(Auth),
        },
        FaultCase {
            name: "vendor error invalid voice",
            opts: FakeOptions::new(KEY),
            extra: json!({}),
            tweak: |s| s.with_voice("Nobody"),
            outcome: FaultOutcome::Fails(Config),
        },
    ];
    if stream_input {
        cases.extend([
            fault_case(
                "upgrade 429",
                ws(WsFault::Refuse {
                    status: 429,
                    retry_after: Some(2),
                }),
                json!({}),
                FaultOutcome::Fails(RateLimited),
            ),
            fault_case(
                "upgrade 503",
                ws(WsFault::Refuse {
                    status: 503,
                    retry_after: None,
                }),
                json!({}),
                FaultOutcome::Fails(Transient),
            ),
            fault_case(
                "vendor error rate_limit_error",
                ws(WsFault::ErrorMessageOnFlush {
                    flush: 0,
                    kind: "rate_limit_error",
                    message: "Rate limit exceeded",
                }),
                json!({}),
                FaultOutcome::Fails(RateLimited),
            ),
            fault_case(
                "vendor error internal_server_error",
                ws(WsFault::ErrorOnFlush(0)),
                json!({}),
                FaultOutcome::Fails(Transient),
            ),
            fault_case(
                "vendor error payment_required_error",
                ws(WsFault::ErrorMessageOnFlush {
                    flush: 0,
                    kind: "payment_required_error",
                    message: "Out of credits",
                }),
                json!({}),
                FaultOutcome::Fails(Auth),
            ),
            fault_case(
                "dropped mid-audio",
                ws(WsFault::DropAfterFrames(1)),
                json!({}),
                FaultOutcome::Fails(Transient),
            ),
            // Closed (1000) after each flush, as an idle timeout would: the next request
            // reconnects (or is sent again when the close raced it).
            fault_case(
                "closed between requests",
                ws(WsFault::CloseAfterFlushes(1)),
                json!({}),
                FaultOutcome::Recovers,
            ),
            fault_case(
                "garbage",
                ws(WsFault::Garbage),
                json!({}),
                FaultOutcome::Recovers,
            ),
            fault_case(
                "silent",
                ws(WsFault::SilentFlush),
                json!({"response_timeout_ms": 300}),
                FaultOutcome::Fails(Timeout),
            ),
        ]);
    } else {
        let with = |f: Fault| FakeOptions::new(KEY).fault(f);
        cases.extend([
            fault_case(
                "429",
                with(status(
                    429,
                    r#"{"error": {"message": "Rate limit exceeded", "type": "rate_limit_error"}}"#,
                    Some(7),
                )),
                json!({}),
                FaultOutcome::Fails(RateLimited),
            ),
            fault_case(
                "500",
                with(status(500, r#"{"error": "internal"}"#, None)),
                json!({}),
                FaultOutcome::Fails(Transient),
            ),
            fault_case(
                "vendor error 402 payment_required_error",
                with(status(
                    402,
                    r#"{"error": {"message": "Out of credits", "type": "payment_required_error"}}"#,
                    None,
                )),
                json!({}),
                FaultOutcome::Fails(Auth),
            ),
            fault_case(
                "vendor error 400 text",
                with(status(
                    400,
                    r#"{"error": {"message": "text exceeds 5000 characters", "type": "invalid_request_error"}}"#,
                    None,
                )),
                json!({}),
                FaultOutcome::Fails(Permanent),
            ),
            fault_case(
                "garbage",
                with(Fault::Garbage),
                json!({}),
                FaultOutcome::Fails(Permanent),
            ),
            fault_case(
                "truncated body",
                with(Fault::Truncate { after_chunks: 1 }),
                json!({}),
                FaultOutcome::Fails(Transient),
            ),
            fault_case(
                "silent",
                with(Fault::Silent),
                json!({"response_timeout_ms": 300}),
                FaultOutcome::Fails(Timeout),
            ),
        ]);
    }
    cases
}

/// Registers `cases` on `fixture`, each against its own fake (returned: they must outlive the
/// suite).
async fn with_faults(
    mut fixture: TtsFixture,
    stream_input: bool,
    cases: Vec<FaultCase>,
) -> (TtsFixture, Vec<(&'static str, LmntFake)>) {
    let mut fakes = Vec::new();
    for c in cases {
        let fake = LmntFake::start(c.opts).await;
        let mut extra = json!({ "stream_input": stream_input });
        for (k, x) in c.extra.as_object().cloned().unwrap_or_default() {
            extra[k] = x;
        }
        let s = (c.tweak)(session(&fake, AudioEncoding::Linear16, extra));
        fixture = fixture.fault(c.name, s, c.outcome);
        fakes.push((c.name, fake));
    }
    (fixture, fakes)
}

#[tokio::test]
async fn conformance_on_both_paths() {
    let plugin = LmntTts::new();
    for stream_input in [true, false] {
        for (enc, rate) in [
            (AudioEncoding::Linear16, 24_000),
            (AudioEncoding::Mulaw, 8_000),
            (AudioEncoding::Mp3, 16_000),
        ] {
            let fake = LmntFake::start(FakeOptions::new(KEY)).await;
            let cfg = TtsSessionConfig::new(enc, rate)
                .with_api_key(Some(Secret::from(KEY)))
                .with_plugin_config(config(&fake, json!({ "stream_input": stream_input })));
            let mut fixture = TtsFixture::new(cfg).guard(GUARD);
            let mut fakes = Vec::new();
            if enc == AudioEncoding::Linear16 {
                (fixture, fakes) = with_faults(fixture, stream_input, faults(stream_input)).await;
            }
            let report = check_tts(&plugin, &fixture).await;
            for (name, f) in &fakes {
                assert_eq!(f.ws_sessions().is_empty(), !stream_input, "{name}");
                assert_eq!(f.speeches().is_empty(), stream_input, "{name}");
                if *name == "closed between requests" {
                    assert!(f.ws_sessions().len() >= 2, "the vendor's close was seen");
                }
            }
            report.assert_ok();
            assert_eq!(
                fake.ws_sessions().is_empty(),
                !stream_input,
                "{enc:?} stream_input {stream_input}"
            );
            assert_eq!(fake.speeches().is_empty(), stream_input);
        }
    }
}

async fn failing(fault: Fault, extra: Value) -> PluginError {
    let fake = LmntFake::start(FakeOptions::new(KEY).fault(fault)).await;
    let (r, _) = synth(&session(&fake, AudioEncoding::Linear16, extra), "Hello.").await;
    r.expect_err("should fail")
}

fn status(status: u16, body: &str, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        status,
        body: body.into(),
        retry_after,
    }
}

#[tokio::test]
async fn errors_are_categorised() {
    // Auth: the fake's own check of a wrong key.
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let cfg = pcm(&fake).with_api_key(Some(Secret::from("wrong-key")));
    let (r, _) = synth(&cfg, "Hello.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(
        e.to_string()
            .contains("Invalid API key (authentication_error)"),
        "{e}"
    );

    let e = failing(
        status(
            429,
            r#"{"error": {"message": "Rate limit exceeded", "type": "rate_limit_error"}}"#,
            Some(7),
        ),
        json!({}),
    )
    .await;
    match &e {
        PluginError::RateLimited {
            retry_after,
            message,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("Rate limit exceeded"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = failing(
        status(
            400,
            r#"{"error": {"message": "Invalid format", "type": "invalid_request_error"}}"#,
            None,
        ),
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");

    // The fake's own validation: an unknown voice (Config), with its message.
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let cfg = pcm(&fake).with_voice("Nobody");
    let (r, _) = synth(&cfg, "Hello.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("Invalid voice: Nobody"), "{e}");

    // A body cut after two chunks (the suite cuts after one).
    let e = failing(Fault::Truncate { after_chunks: 2 }, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
}

#[tokio::test]
async fn cancel_mid_stream_closes_the_connection() {
    let opts = FakeOptions::new(KEY).fault(Fault::HoldAfterFirstChunk);
    let fake = LmntFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(3, tx, flag.clone());
    let task = tokio::spawn(async move {
        let plugin = LmntTts::new();
        let req = SpeakRequest {
            id: 3,
            text: "A long text to cancel. ".repeat(20),
            flush: true,
        };
        plugin.synthesize(&cfg, req, sink).await
    });
    let first = timeout(GUARD, rx.recv()).await.unwrap();
    assert!(matches!(first, Some(TtsEvent::Audio { id: 3, .. })));
    // The host cancels: it flags the request and drops the synthesis.
    flag.cancel_up_to(3);
    task.abort();
    let log = fake
        .wait_for_speech(0, GUARD, |l| l.client_gone)
        .await
        .expect("the fake sees the client leave");
    assert!(!log.completed);
    assert_eq!(log.chunks_sent, 1);

    // A sink that refuses audio ends the synthesis without an error, and the connection closes.
    let opts = FakeOptions {
        chunk_bytes: 480,
        ..FakeOptions::new(KEY)
    };
    let fake = LmntFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(4, tx, flag.clone());
    let plugin = LmntTts::new();
    let req = SpeakRequest {
        id: 4,
        text: "A long text to cancel. ".repeat(40),
        flush: true,
    };
    let synth = plugin.synthesize(&cfg, req, sink);
    tokio::pin!(synth);
    tokio::select! {
        ev = rx.recv() => assert!(ev.is_some()),
        r = &mut synth => panic!("ended early: {r:?}"),
    }
    flag.cancel_up_to(4);
    timeout(GUARD, &mut synth).await.unwrap().unwrap();
    let log = fake
        .wait_for_speech(0, GUARD, |l| l.client_gone)
        .await
        .expect("the fake sees the client leave");
    assert!(!log.completed);
}

#[tokio::test]
async fn voices_are_listed_and_cached() {
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let plugin = LmntTts::new();
    plugin
        .init(&PluginContext::new("test"), &config(&fake, json!({})))
        .await
        .unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].id, "ava");
    assert_eq!(list[0].name, "Ava");
    assert_eq!(list[0].gender, "female");
    assert_eq!(list[0].sample, "https://fake.lmnt.invalid/preview/ava.mp3");
    let reqs = fake.voice_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].uri, "/v1/ai/voice/list");
    assert_eq!(reqs[0].header("x-api-key"), Some(KEY));
    // Cached: no new request.
    assert_eq!(plugin.voices(Some(Secret::from(KEY))).await.unwrap(), list);
    assert_eq!(fake.voice_requests().len(), 1);
    let e = plugin.voices(Some(Secret::from("bad"))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(plugin.voices(None).await.is_err());

    // The owner filter, against a fake with a starred voice of the caller's.
    let mut mine = FakeVoice::new("my-other", "Other clone", "me", "male");
    mine.starred = true;
    let mut opts = FakeOptions::new(KEY);
    opts.voices.push(mine);
    let fake = LmntFake::start(opts).await;
    let plugin = LmntTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &config(&fake, json!({"voices_owner": "me"})),
        )
        .await
        .unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["my-clone", "my-other"]);
    assert_eq!(fake.voice_requests()[0].uri, "/v1/ai/voice/list?owner=me");
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let plugin = LmntTts::new();
    let e = plugin
        .prepare(&pcm(&fake).with_api_key(None))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    for cfg in [
        session(&fake, AudioEncoding::Wav, json!({})),
        session(&fake, AudioEncoding::Opus, json!({})),
        session(&fake, AudioEncoding::Alaw, json!({})),
        TtsSessionConfig::new(AudioEncoding::Linear16, 44_100)
            .with_api_key(Some(Secret::from(KEY)))
            .with_plugin_config(config(&fake, json!({}))),
        session(&fake, AudioEncoding::Linear16, json!({"language": "xx"})),
        session(
            &fake,
            AudioEncoding::Linear16,
            json!({"temperature": "hot"}),
        ),
    ] {
        let e = plugin.prepare(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    }
    // synthesize refuses the same way, and empty text makes no request.
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let req = SpeakRequest {
        id: 1,
        text: "Hi".into(),
        flush: true,
    };
    let e = plugin
        .synthesize(
            &session(&fake, AudioEncoding::Wav, json!({})),
            req,
            AudioSink::new(1, tx.clone(), CancelFlag::new()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config);
    let req = SpeakRequest {
        id: 2,
        text: "  ".into(),
        flush: true,
    };
    plugin
        .synthesize(&pcm(&fake), req, AudioSink::new(2, tx, CancelFlag::new()))
        .await
        .unwrap();
    assert!(fake.speeches().is_empty());
}

// --- The WebSocket session (`open_stream`). ---

async fn open(
    cfg: &TtsSessionConfig,
) -> (TtsPeer, tokio::task::JoinHandle<Result<(), PluginError>>) {
    let plugin = LmntTts::new();
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

#[tokio::test]
async fn websocket_session_is_shaped_as_documented() {
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, json!({"language": "de"})).with_voice("lily");
    let (mut peer, task) = open(&cfg).await;
    peer.input.send(speak(1, "Hallo zusammen.")).await.unwrap();
    peer.input.send(speak(2, "  ")).await.unwrap();
    peer.input.send(speak(3, "Noch ein Satz.")).await.unwrap();
    let one = until_end(&mut peer, 1).await;
    assert_eq!(one.last(), Some(&TtsEvent::Done { id: 1 }));
    assert_eq!(
        audio_of(&one, 1),
        audio_for("Hallo zusammen.", "pcm_s16le", 16_000, 1.0, 20)
    );
    assert_eq!(until_end(&mut peer, 2).await, [TtsEvent::Done { id: 2 }]);
    let three = until_end(&mut peer, 3).await;
    assert_eq!(
        audio_of(&three, 3),
        audio_for("Noch ein Satz.", "pcm_s16le", 16_000, 1.0, 20)
    );
    drop(peer.input);
    timeout(GUARD, task).await.unwrap().unwrap().unwrap();
    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 1, "one socket for the session");
    let s = &sessions[0];
    assert_eq!(s.request.as_ref().unwrap().path(), "/v1/ai/speech/stream");
    assert_eq!(
        s.init,
        json!({"X-API-Key": KEY, "lmnt-version": "1.1", "voice": "lily",
               "format": "pcm_s16le", "sample_rate": 16000, "language": "de"})
    );
    assert_eq!(
        s.messages,
        [
            json!({"type": "text", "text": "Hallo zusammen."}),
            json!({"type": "flush", "nonce": 1}),
            json!({"type": "text", "text": "Noch ein Satz."}),
            json!({"type": "flush", "nonce": 2}),
            json!({"type": "finish"}),
        ]
    );
    assert!(s.ended);
    assert!(fake.speeches().is_empty(), "no HTTP request");

    // µ-law: the WAV header before each request's audio is removed.
    let cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(&fake, json!({})));
    let (mut peer, _task) = open(&cfg).await;
    peer.input.send(speak(1, "Telephone.")).await.unwrap();
    let events = until_end(&mut peer, 1).await;
    let file = audio_for("Telephone.", "ulaw", 8_000, 1.0, 20);
    assert_eq!(audio_of(&events, 1), file[44..]);
}

#[tokio::test]
async fn websocket_is_skipped_for_http_only_controls() {
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let plugin = LmntTts::new();
    let mut cfg = pcm(&fake);
    cfg.speaking_rate = 1.3;
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
    let cfg = session(&fake, AudioEncoding::Linear16, json!({"temperature": 0.5}));
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"stream_input": false}),
    );
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
    assert!(fake.ws_sessions().is_empty());
}

#[tokio::test]
async fn websocket_first_frame_arrives_before_the_rest() {
    let opts = FakeOptions {
        ws_fault: WsFault::HoldAfterFirstFrame,
        ..FakeOptions::new(KEY)
    };
    let fake = LmntFake::start(opts).await;
    let (mut peer, _task) = open(&pcm(&fake)).await;
    let text = "A sentence long enough for several frames.";
    peer.input.send(speak(1, text)).await.unwrap();
    let first = timeout(GUARD, peer.events.recv()).await.unwrap().unwrap();
    assert!(matches!(first, TtsEvent::Audio { id: 1, .. }));
    assert_eq!(fake.ws_sessions()[0].audio_frames, 1);
    assert_eq!(fake.ws_sessions()[0].flushes_completed, 0);
    fake.release();
    let mut events = vec![first];
    events.extend(until_end(&mut peer, 1).await);
    assert!(events.len() > 3);
    assert_eq!(
        audio_of(&events, 1),
        audio_for(text, "pcm_s16le", 16_000, 1.0, 20)
    );
}

#[tokio::test]
async fn websocket_cancel_resets_and_drops_the_cancelled_audio() {
    let opts = FakeOptions {
        chunk_delay: Duration::from_millis(5),
        ..FakeOptions::new(KEY)
    };
    let fake = LmntFake::start(opts).await;
    let (mut peer, _task) = open(&pcm(&fake)).await;
    let long = "This request is cancelled halfway through its audio. ".repeat(5);
    peer.input.send(speak(1, &long)).await.unwrap();
    peer.input
        .send(speak(2, "Queued and cancelled."))
        .await
        .unwrap();
    let first = timeout(GUARD, peer.events.recv()).await.unwrap().unwrap();
    assert!(matches!(first, TtsEvent::Audio { id: 1, .. }));
    peer.input
        .send(TtsInput::Cancel { up_to: 2 })
        .await
        .unwrap();
    peer.input.send(speak(3, "Next one.")).await.unwrap();
    let events = until_end(&mut peer, 3).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { id: 3 }));
    let start3 = events
        .iter()
        .position(|e| matches!(e, TtsEvent::Audio { id: 3, .. }))
        .unwrap();
    assert!(!events[start3..]
        .iter()
        .any(|e| matches!(e, TtsEvent::Audio { id: 1, .. })));
    assert!(!events
        .iter()
        .any(|e| matches!(e, TtsEvent::Done { id: 1 } | TtsEvent::Audio { id: 2, .. })));
    assert_eq!(
        audio_of(&events, 3),
        audio_for("Next one.", "pcm_s16le", 16_000, 1.0, 20)
    );
    let s = &fake.ws_sessions()[0];
    assert_eq!(
        s.messages,
        [
            json!({"type": "text", "text": long}),
            json!({"type": "flush", "nonce": 1}),
            json!({"type": "reset", "nonce": 2}),
            json!({"type": "text", "text": "Next one."}),
            json!({"type": "flush", "nonce": 3}),
        ],
        "the queued request 2 is never sent"
    );
    assert_eq!(s.resets_completed, 1);
    assert_eq!(fake.ws_sessions().len(), 1, "cancel needs no reconnect");
}

#[tokio::test]
async fn websocket_reconnects_lazily_after_the_vendor_closed_it() {
    let opts = FakeOptions {
        ws_fault: WsFault::CloseAfterFlushes(1),
        ..FakeOptions::new(KEY)
    };
    let fake = LmntFake::start(opts).await;
    let (mut peer, _task) = open(&pcm(&fake)).await;
    peer.input.send(speak(1, "First.")).await.unwrap();
    assert_eq!(
        until_end(&mut peer, 1).await.last(),
        Some(&TtsEvent::Done { id: 1 })
    );
    eventually("the fake closed the first socket", || {
        fake.ws_sessions().first().is_some_and(|s| s.ended)
    })
    .await;
    peer.input.send(speak(2, "Second.")).await.unwrap();
    let events = until_end(&mut peer, 2).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { id: 2 }), "{events:?}");
    assert_eq!(
        audio_of(&events, 2),
        audio_for("Second.", "pcm_s16le", 16_000, 1.0, 20)
    );
    assert_eq!(fake.ws_sessions().len(), 2);
}

#[tokio::test]
async fn websocket_errors_fail_the_request_and_the_session_goes_on() {
    // A wrong key: the init is refused with an authentication error.
    let fake = LmntFake::start(FakeOptions::new(KEY)).await;
    let cfg = pcm(&fake).with_api_key(Some(Secret::from("wrong")));
    let (mut peer, _task) = open(&cfg).await;
    peer.input.send(speak(1, "Hello.")).await.unwrap();
    let events = until_end(&mut peer, 1).await;
    assert_eq!(
        error_of(&events).category(),
        ErrorCategory::Auth,
        "{events:?}"
    );
    assert!(!error_of(&events).to_string().contains("wrong"));

    // A vendor error on the first flush fails it; the next request gets a new socket.
    let opts = FakeOptions {
        ws_fault: WsFault::ErrorOnFlush(0),
        ..FakeOptions::new(KEY)
    };
    let fake = LmntFake::start(opts).await;
    let (mut peer, _task) = open(&pcm(&fake)).await;
    peer.input.send(speak(1, "Fails.")).await.unwrap();
    let events = until_end(&mut peer, 1).await;
    let e = error_of(&events);
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(e.to_string().contains("synthesis failed"), "{e}");
    peer.input.send(speak(2, "Works.")).await.unwrap();
    let events = until_end(&mut peer, 2).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { id: 2 }), "{events:?}");
    assert_eq!(fake.ws_sessions().len(), 2);
    // A silent vendor and the other faults: the conformance suite (`conformance_on_both_paths`).
}
