//! The Hume Octave TTS plugin against the protocol fake over 127.0.0.1: request shape, audio
//! streaming, conformance, errors, cancel, voices and refusals.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::timeout;
use waav_hume::HumeTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Emotion, ErrorCategory, Plugin, PluginConfig,
    PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::hume::{audio_for, FakeOptions, FakeVoice, Fault, HumeFake};

const KEY: &str = "hume-test-key";
const GUARD: Duration = Duration::from_secs(20);
const COLTON: &str = "9e068547-5ba4-4c8e-8e03-69282a008f04";

fn config(fake: &HumeFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url(), "response_timeout_ms": 5000});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    PluginConfig::from_value("plugins.tts.hume", v).unwrap()
}

fn session(fake: &HumeFake, enc: AudioEncoding, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, 48_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(config(fake, extra))
}

fn pcm(fake: &HumeFake) -> TtsSessionConfig {
    session(fake, AudioEncoding::Linear16, json!({}))
}

async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<Bytes>) {
    let plugin = HumeTts::new();
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
fn registered_with_id_alias_and_credential() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .find(|h| h.kind() == waav_plugin_api::PluginKind::Tts && h.plugin().info().id == "hume")
        .expect("registered");
    let info = found.plugin().info();
    assert_eq!(info.aliases, ["hume-ai"]);
    let fields = info.credential_fields();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("HUME_API_KEY"));
    assert!(fields[0].secret && fields[0].required);
    let caps = HumeTts::new().capabilities();
    assert_eq!(
        caps.encodings,
        [AudioEncoding::Linear16, AudioEncoding::Mp3]
    );
    assert_eq!(caps.sample_rates, [48_000]);
}

#[tokio::test]
async fn request_is_shaped_as_documented() {
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"description": "A patient teacher", "trailing_silence": 0.5}),
    )
    .with_model("octave-2");
    cfg.speaking_rate = 1.25;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.3),
        delivery_style: Some("whispered".into()),
        description: None,
    };
    let (r, chunks) = synth(&cfg, "Hello there.").await;
    r.unwrap();
    let reqs = fake.speeches();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.status, 200);
    assert_eq!(req.request.uri, "/v0/tts/stream/file");
    assert_eq!(req.request.header("x-hume-api-key"), Some(KEY));
    assert_eq!(req.request.header("content-type"), Some("application/json"));
    assert_eq!(
        req.body,
        json!({
            "utterances": [{
                "text": "Hello there.",
                "voice": {"name": "Ava Song", "provider": "HUME_AI"},
                "description": "A patient teacher, slightly happy, whispered.",
                "speed": 1.25,
                "trailing_silence": 0.5,
            }],
            "format": {"type": "pcm"},
            "strip_headers": true,
            "instant_mode": true,
            "version": "2",
        })
    );
    assert_eq!(
        joined(&chunks),
        audio_for(&[("Hello there.", 1.25)], "pcm", 20)
    );

    // Defaults: no speed, description or version; a UUID voice goes by id; mp3 passthrough.
    let cfg = session(&fake, AudioEncoding::Mp3, json!({"instant_mode": false})).with_voice(COLTON);
    let (r, chunks) = synth(&cfg, "Hi.").await;
    r.unwrap();
    assert_eq!(
        fake.speeches()[1].body,
        json!({
            "utterances": [{"text": "Hi.", "voice": {"id": COLTON}}],
            "format": {"type": "mp3"},
            "strip_headers": true,
            "instant_mode": false,
        })
    );
    assert_eq!(joined(&chunks), audio_for(&[("Hi.", 1.0)], "mp3", 20));

    // A custom voice by name, with the provider from the config.
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"voice": "My Narrator", "voice_provider": "CUSTOM_VOICE"}),
    );
    synth(&cfg, "Hi.").await.0.unwrap();
    assert_eq!(
        fake.speeches()[2].body["utterances"][0]["voice"],
        json!({"name": "My Narrator", "provider": "CUSTOM_VOICE"})
    );
}

#[tokio::test]
async fn audio_streams_byte_exact_and_the_first_chunk_arrives_before_the_rest() {
    let opts = FakeOptions::new(KEY).fault(Fault::HoldAfterFirstChunk);
    let fake = HumeFake::start(opts).await;
    let cfg = pcm(&fake);
    let plugin = HumeTts::new();
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
    assert_eq!(audio, audio_for(&[(text, 1.0)], "pcm", 20));
    assert!(fake.speeches()[0].completed);
}

#[tokio::test]
async fn conformance() {
    use ErrorCategory::*;
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let plugin = HumeTts::new();
    let with = |f: Fault| FakeOptions::new(KEY).fault(f);
    type Tweak = fn(TtsSessionConfig) -> TtsSessionConfig;
    let same: Tweak = |s| s;
    // (name, the fake's options, extra config, session tweak, outcome)
    let faults: Vec<(&str, FakeOptions, Value, Tweak, FaultOutcome)> = vec![
        (
            "wrong key",
            FakeOptions::new(KEY),
            json!({}),
            |s| s.with_api_key(Some(Secret::from("wrong-key"))),
            FaultOutcome::Fails(Auth),
        ),
        (
            "402 out of credits",
            with(status(402, r#"{"message": "Payment required"}"#, None)),
            json!({}),
            same,
            FaultOutcome::Fails(Auth),
        ),
        (
            "429",
            with(status(
                429,
                r#"{"message": "API rate limit exceeded"}"#,
                Some(7),
            )),
            json!({}),
            same,
            FaultOutcome::Fails(RateLimited),
        ),
        (
            "500",
            with(status(500, r#"{"message": "internal"}"#, None)),
            json!({}),
            same,
            FaultOutcome::Fails(Transient),
        ),
        (
            "vendor error E0303",
            with(status(
                400,
                r#"{"code":"E0303","error":"Voice not found","message":"nope"}"#,
                None,
            )),
            json!({}),
            same,
            FaultOutcome::Fails(Config),
        ),
        (
            "vendor error unknown voice",
            FakeOptions::new(KEY),
            json!({}),
            |s| s.with_voice("Nobody"),
            FaultOutcome::Fails(Config),
        ),
        (
            "vendor error 422 text",
            with(status(
                422,
                r#"{"detail":[{"loc":["body","utterances",0,"text"],"msg":"too long","type":"value_error"}]}"#,
                None,
            )),
            json!({}),
            same,
            FaultOutcome::Fails(Permanent),
        ),
        // A 200 with JSON where the audio should be.
        (
            "garbage",
            with(Fault::Garbage),
            json!({}),
            same,
            FaultOutcome::Fails(Permanent),
        ),
        (
            "truncated body",
            with(Fault::Truncate { after_chunks: 1 }),
            json!({}),
            same,
            FaultOutcome::Fails(Transient),
        ),
        (
            "silent",
            with(Fault::Silent),
            json!({"response_timeout_ms": 300}),
            same,
            FaultOutcome::Fails(Timeout),
        ),
    ];
    let mut fixture = TtsFixture::new(pcm(&fake)).guard(GUARD);
    let mut fakes = Vec::new();
    for (name, opts, extra, tweak, outcome) in faults {
        let f = HumeFake::start(opts).await;
        fixture = fixture.fault(
            name,
            tweak(session(&f, AudioEncoding::Linear16, extra)),
            outcome,
        );
        fakes.push(f);
    }
    let report = check_tts(&plugin, &fixture).await;
    report.assert_ok();
    // Each faulty fake was asked (a failure before any request would be the plugin's own).
    assert!(fakes.iter().all(|f| !f.speeches().is_empty()));
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let report = check_tts(
        &plugin,
        &TtsFixture::new(session(&fake, AudioEncoding::Mp3, json!({}))).guard(GUARD),
    )
    .await;
    report.assert_ok();
}

async fn failing(fault: Fault, extra: Value) -> PluginError {
    let fake = HumeFake::start(FakeOptions::new(KEY).fault(fault)).await;
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
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let cfg = pcm(&fake).with_api_key(Some(Secret::from("wrong-key")));
    let (r, _) = synth(&cfg, "Hello.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("Invalid ApiKey"), "{e}");

    let e = failing(
        status(429, r#"{"message": "API rate limit exceeded"}"#, Some(7)),
        json!({}),
    )
    .await;
    match &e {
        PluginError::RateLimited {
            retry_after,
            message,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("API rate limit exceeded"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The fake's own validation: an unknown voice (400), with its message.
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let cfg = pcm(&fake).with_voice("Nobody");
    let (r, _) = synth(&cfg, "Hello.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("No voice found"), "{e}");
    // A body cut after two chunks (the suite cuts after one).
    let e = failing(Fault::Truncate { after_chunks: 2 }, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    // The other faults' categories are checked by the conformance suite (`conformance`).
}

#[tokio::test]
async fn cancel_mid_stream_closes_the_connection() {
    let opts = FakeOptions::new(KEY).fault(Fault::HoldAfterFirstChunk);
    let fake = HumeFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(3, tx, flag.clone());
    let task = tokio::spawn(async move {
        let plugin = HumeTts::new();
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
    let fake = HumeFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(4, tx, flag.clone());
    let plugin = HumeTts::new();
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
async fn voices_are_listed_paged_and_cached() {
    let mut voices: Vec<FakeVoice> = (0..150)
        .map(|i| {
            FakeVoice::new(
                &format!("00000000-0000-0000-0000-{i:012}"),
                &format!("Voice {i}"),
                "HUME_AI",
            )
        })
        .collect();
    voices.push(FakeVoice::new(
        "11111111-0000-0000-0000-000000000000",
        "Mine",
        "CUSTOM_VOICE",
    ));
    let opts = FakeOptions {
        voices,
        ..FakeOptions::new(KEY)
    };
    let fake = HumeFake::start(opts).await;
    let plugin = HumeTts::new();
    plugin
        .init(&PluginContext::new("test"), &config(&fake, json!({})))
        .await
        .unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(list.len(), 150);
    assert_eq!(list[0].id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(list[0].name, "Voice 0");
    let reqs = fake.voice_requests();
    assert_eq!(reqs.len(), 2, "two pages of 100");
    assert_eq!(
        reqs[0].uri,
        "/v0/tts/voices?provider=HUME_AI&page_number=0&page_size=100"
    );
    assert_eq!(reqs[1].query("page_number"), Some("1"));
    assert_eq!(reqs[0].header("x-hume-api-key"), Some(KEY));
    // Cached: no new request.
    assert_eq!(plugin.voices(Some(Secret::from(KEY))).await.unwrap(), list);
    assert_eq!(fake.voice_requests().len(), 2);
    // A wrong key is an auth error.
    let e = plugin.voices(Some(Secret::from("bad"))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(plugin.voices(None).await.is_err());

    // Custom voices on request.
    let plugin = HumeTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &config(
                &fake,
                json!({"include_custom_voices": true, "voices_ttl_secs": 0}),
            ),
        )
        .await
        .unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(list.len(), 151);
    assert_eq!(list[150].name, "Mine");
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = HumeFake::start(FakeOptions::new(KEY)).await;
    let plugin = HumeTts::new();
    let e = plugin
        .prepare(&pcm(&fake).with_api_key(None))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    for cfg in [
        session(&fake, AudioEncoding::Wav, json!({})),
        session(&fake, AudioEncoding::Mulaw, json!({})),
        TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)
            .with_api_key(Some(Secret::from(KEY)))
            .with_plugin_config(config(&fake, json!({}))),
        pcm(&fake).with_model("octave-9"),
        session(
            &fake,
            AudioEncoding::Linear16,
            json!({"voice_provider": "OTHER"}),
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
