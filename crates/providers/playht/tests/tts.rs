//! The Play.ht TTS plugin against the protocol fake over 127.0.0.1: request shape, audio
//! streaming, conformance, errors, cancel, voices and refusals.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::timeout;
use waav_playht::PlayHtTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Credentials, Emotion, ErrorCategory, Plugin,
    PluginConfig, PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::playht::{audio_for, FakeOptions, FakeVoice, Fault, PlayHtFake};

const KEY: &str = "playht-test-key";
const USER: &str = "user-1234";
const JENNIFER: &str =
    "s3://voice-cloning-zero-shot/d9ff78ba-d016-47f6-b0ef-dd630f59414e/female-cs/manifest.json";
const OLIVER: &str = "s3://peregrine-voices/oliver_narrative2_parrot_saad/manifest.json";
const GUARD: Duration = Duration::from_secs(20);

fn config(fake: &PlayHtFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url(), "response_timeout_ms": 5000});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    PluginConfig::from_value("plugins.tts.playht", v).unwrap()
}

fn creds(user: &str) -> Credentials {
    let mut c = Credentials::new();
    c.set("api_key", Secret::from(KEY));
    c.set("user_id", Secret::from(user));
    c
}

fn session(fake: &PlayHtFake, enc: AudioEncoding, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_credentials(creds(USER))
        .with_plugin_config(config(fake, extra))
}

fn pcm(fake: &PlayHtFake) -> TtsSessionConfig {
    session(fake, AudioEncoding::Linear16, json!({}))
}

async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<Bytes>) {
    let plugin = PlayHtTts::new();
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
fn registered_with_id_aliases_and_credentials() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .find(|h| h.plugin().info().id == "playht")
        .expect("registered");
    let info = found.plugin().info();
    assert_eq!(info.aliases, ["play.ht", "play-ht"]);
    let fields = info.credential_fields();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("PLAYHT_API_KEY"));
    assert!(fields[0].secret && fields[0].required);
    assert_eq!(fields[1].name, "user_id");
    assert_eq!(fields[1].env, Some("PLAYHT_USER_ID"));
    assert!(!fields[1].secret && fields[1].required);
    let caps = PlayHtTts::new().capabilities();
    assert_eq!(
        caps.encodings,
        [
            AudioEncoding::Linear16,
            AudioEncoding::Mulaw,
            AudioEncoding::Mp3
        ]
    );
    assert!(caps.sample_rates.contains(&44_100) && caps.sample_rates.contains(&8_000));
}

#[tokio::test]
async fn request_is_shaped_as_documented() {
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"quality": "high", "emotion_gender": "male", "seed": 3}),
    )
    .with_voice(OLIVER)
    .with_model("PlayHT2.0");
    cfg.speaking_rate = 1.5;
    cfg.emotion = Emotion {
        emotion: Some("angry".into()),
        intensity: Some(0.9),
        ..Emotion::default()
    };
    let (r, chunks) = synth(&cfg, "Hello there.").await;
    r.unwrap();
    let reqs = fake.speeches();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.status, 200);
    assert_eq!(req.request.uri, "/api/v2/tts/stream");
    assert_eq!(req.request.header("authorization"), Some(KEY));
    assert_eq!(req.request.header("x-user-id"), Some(USER));
    assert_eq!(req.request.header("content-type"), Some("application/json"));
    assert_eq!(req.request.header("accept"), Some("audio/basic"));
    assert_eq!(
        req.body,
        json!({
            "text": "Hello there.",
            "voice": OLIVER,
            "voice_engine": "PlayHT2.0",
            "output_format": "raw",
            "sample_rate": 16000,
            "speed": 1.5,
            "emotion": "male_angry",
            "style_guidance": 27.0,
            "quality": "high",
            "seed": 3,
        })
    );
    assert_eq!(
        joined(&chunks),
        audio_for("Hello there.", "raw", 16_000, 1.5, 20)
    );

    // Defaults: the default voice and engine, no emotion (not a Play3.0 control); mp3.
    let mut cfg = TtsSessionConfig::new(AudioEncoding::Mp3, 44_100)
        .with_api_key(Some(Secret::from(KEY)))
        .with_credentials(creds(USER))
        .with_plugin_config(config(&fake, json!({})));
    cfg.emotion.emotion = Some("happy".into());
    let (r, chunks) = synth(&cfg, "Hi.").await;
    r.unwrap();
    let req = &fake.speeches()[1];
    assert_eq!(req.request.header("accept"), Some("audio/mpeg"));
    assert_eq!(
        req.body,
        json!({"text": "Hi.", "voice": JENNIFER, "voice_engine": "Play3.0-mini",
               "output_format": "mp3", "sample_rate": 44100, "speed": 1.0})
    );
    assert_eq!(joined(&chunks), audio_for("Hi.", "mp3", 44_100, 1.0, 20));

    // µ-law for telephony; `linear16_format: pcm` switches the PCM name.
    let cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_credentials(creds(USER))
        .with_plugin_config(config(&fake, json!({})));
    let (r, chunks) = synth(&cfg, "Telephone.").await;
    r.unwrap();
    assert_eq!(fake.speeches()[2].body["output_format"], "mulaw");
    assert_eq!(
        joined(&chunks),
        audio_for("Telephone.", "mulaw", 8_000, 1.0, 20)
    );
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        json!({"linear16_format": "pcm"}),
    );
    synth(&cfg, "Hi.").await.0.unwrap();
    assert_eq!(fake.speeches()[3].body["output_format"], "pcm");

    // Text past the engine's limit (2000 characters but for Play3.0-mini) is split.
    let fake = PlayHtFake::start(FakeOptions {
        ms_per_char: 1,
        chunk_bytes: 16_000,
        ..FakeOptions::new(KEY, USER)
    })
    .await;
    let long = "A sentence of moderate length. ".repeat(100);
    let cfg = pcm(&fake).with_model("Play3.0");
    let (r, chunks) = synth(&cfg, &long).await;
    r.unwrap();
    let pieces: Vec<String> = fake
        .speeches()
        .iter()
        .map(|l| l.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| p.chars().count() <= 2000));
    let want: Vec<u8> = pieces
        .iter()
        .flat_map(|p| audio_for(p, "raw", 16_000, 1.0, 1))
        .collect();
    assert_eq!(joined(&chunks), want);
}

#[tokio::test]
async fn audio_streams_byte_exact_and_the_first_chunk_arrives_before_the_rest() {
    let opts = FakeOptions::new(KEY, USER).fault(Fault::HoldAfterFirstChunk);
    let fake = PlayHtFake::start(opts).await;
    let cfg = pcm(&fake);
    let plugin = PlayHtTts::new();
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
    assert_eq!(audio, audio_for(text, "raw", 16_000, 1.0, 20));
    assert!(fake.speeches()[0].completed);
}

#[tokio::test]
async fn conformance() {
    let plugin = PlayHtTts::new();
    for (enc, rate) in [
        (AudioEncoding::Linear16, 24_000),
        (AudioEncoding::Mulaw, 8_000),
        (AudioEncoding::Mp3, 44_100),
    ] {
        let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
        let cfg = TtsSessionConfig::new(enc, rate)
            .with_api_key(Some(Secret::from(KEY)))
            .with_credentials(creds(USER))
            .with_plugin_config(config(&fake, json!({})));
        let report = check_tts(&plugin, &TtsFixture::new(cfg).guard(GUARD)).await;
        report.assert_ok();
    }
}

/// Every fault the fake injects, each against its own fake, through the shared suite.
#[tokio::test]
async fn conformance_faults() {
    let good = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    // A fake accepting another key (its own 401), and one accepting another user id (403).
    let other_key = PlayHtFake::start(FakeOptions::new("another-key", USER)).await;
    let other_user = PlayHtFake::start(FakeOptions::new(KEY, "another-user")).await;
    let faults = [
        (
            "rate limited",
            status(
                429,
                r#"{"error_message": "Too many requests", "error_id": "RATE_LIMITED"}"#,
                Some(3),
            ),
            ErrorCategory::RateLimited,
        ),
        (
            "5xx",
            status(503, r#"{"error_message": "busy", "error_id": "X"}"#, None),
            ErrorCategory::Transient,
        ),
        (
            "truncated",
            Fault::Truncate { after_chunks: 1 },
            ErrorCategory::Transient,
        ),
        ("garbage", Fault::Garbage, ErrorCategory::Permanent),
        ("silent", Fault::Silent, ErrorCategory::Timeout),
    ];
    let mut fakes = Vec::new();
    for (_, fault, _) in &faults {
        fakes.push(PlayHtFake::start(FakeOptions::new(KEY, USER).fault(fault.clone())).await);
    }
    let mut fixture = TtsFixture::new(pcm(&good))
        .guard(GUARD)
        .fault(
            "auth rejected (key)",
            pcm(&other_key),
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "auth rejected (user id)",
            pcm(&other_user),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
    for ((name, _, want), fake) in faults.iter().zip(&fakes) {
        let cfg = session(
            fake,
            AudioEncoding::Linear16,
            json!({"response_timeout_ms": 300}),
        );
        fixture = fixture.fault(*name, cfg, FaultOutcome::Fails(*want));
    }
    check_tts(&PlayHtTts::new(), &fixture).await.assert_ok();
    // Each faulty fake was reached (the check did not pass on a refusal of its own).
    for ((name, ..), fake) in faults.iter().zip(&fakes) {
        assert!(
            !fake.speeches().is_empty(),
            "{name}: no request reached the fake"
        );
    }
    let statuses = |f: &PlayHtFake| f.speeches().iter().map(|l| l.status).collect::<Vec<_>>();
    assert_eq!(statuses(&other_key), [401]);
    assert_eq!(statuses(&other_user), [403]);
}

async fn failing(fault: Fault, extra: Value) -> PluginError {
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER).fault(fault)).await;
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
    // Auth: the fake's own checks of a wrong key and a wrong user.
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    let cfg = pcm(&fake).with_api_key(Some(Secret::from("wrong-key")));
    let (r, _) = synth(&cfg, "Hello.").await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(
        e.to_string().contains("Invalid API key (UNAUTHORIZED)"),
        "{e}"
    );
    let cfg = pcm(&fake).with_credentials(creds("someone-else"));
    let (r, _) = synth(&cfg, "Hello.").await;
    assert_eq!(r.unwrap_err().category(), ErrorCategory::Auth);

    let e = failing(
        status(
            429,
            r#"{"error_message": "Too many requests", "error_id": "RATE_LIMITED"}"#,
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
            assert!(message.contains("Too many requests"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = failing(
        status(
            500,
            r#"{"error_message": "internal", "error_id": "X"}"#,
            None,
        ),
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");

    // The fake's own validation: an unknown voice (Config); a refused text (Permanent).
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    let (r, _) = synth(
        &pcm(&fake).with_voice("s3://nobody/manifest.json"),
        "Hello.",
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("Invalid voice"), "{e}");
    let e = failing(
        status(
            400,
            r#"{"error_message": "text is longer than 2000 characters", "error_id": "BAD_REQUEST"}"#,
            None,
        ),
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");

    // Malformed and truncated answers never panic.
    let e = failing(Fault::Garbage, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
    let e = failing(Fault::Truncate { after_chunks: 2 }, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");

    // A silent vendor is timed out.
    let e = failing(Fault::Silent, json!({"response_timeout_ms": 300})).await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn cancel_mid_stream_closes_the_connection() {
    let opts = FakeOptions::new(KEY, USER).fault(Fault::HoldAfterFirstChunk);
    let fake = PlayHtFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(3, tx, flag.clone());
    let task = tokio::spawn(async move {
        let plugin = PlayHtTts::new();
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
        ..FakeOptions::new(KEY, USER)
    };
    let fake = PlayHtFake::start(opts).await;
    let cfg = pcm(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(4, tx, flag.clone());
    let plugin = PlayHtTts::new();
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
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    let plugin = PlayHtTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &config(&fake, json!({"user_id": USER})),
        )
        .await
        .unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].id, JENNIFER);
    assert_eq!(list[0].name, "Jennifer");
    assert_eq!(list[0].gender, "female");
    assert_eq!(list[0].accent, "american");
    assert_eq!(list[0].language, "en-US");
    assert_eq!(
        list[0].sample,
        "https://fake.play.invalid/samples/jennifer.mp3"
    );
    let reqs = fake.voice_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].uri, "/api/v2/voices");
    assert_eq!(reqs[0].header("authorization"), Some(KEY));
    assert_eq!(reqs[0].header("x-user-id"), Some(USER));
    // Cached: no new request.
    assert_eq!(plugin.voices(Some(Secret::from(KEY))).await.unwrap(), list);
    assert_eq!(fake.voice_requests().len(), 1);
    let e = plugin.voices(Some(Secret::from("bad"))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(plugin.voices(None).await.is_err());

    // Without a configured user id: refused until a session was prepared; cloned voices too.
    let mut mine = FakeVoice::new(
        "s3://x/clone2/manifest.json",
        "Clone two",
        "female",
        "",
        "en-US",
    );
    mine.is_cloned = true;
    let mut opts = FakeOptions::new(KEY, USER);
    opts.voices.push(mine);
    let fake = PlayHtFake::start(opts).await;
    let plugin = PlayHtTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &config(&fake, json!({"include_cloned_voices": true})),
        )
        .await
        .unwrap();
    let e = plugin.voices(Some(Secret::from(KEY))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(fake.voice_requests().is_empty());
    plugin.prepare(&pcm(&fake)).await.unwrap();
    let list = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["Jennifer", "Oliver", "Sofia", "My clone", "Clone two"]
    );
    let uris: Vec<String> = fake
        .voice_requests()
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(uris, ["/api/v2/voices", "/api/v2/cloned-voices"]);
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = PlayHtFake::start(FakeOptions::new(KEY, USER)).await;
    let plugin = PlayHtTts::new();
    let no_key = pcm(&fake).with_api_key(None).with_credentials({
        let mut c = Credentials::new();
        c.set("user_id", Secret::from(USER));
        c
    });
    let e = plugin.prepare(&no_key).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    // The user id is required too.
    let no_user = pcm(&fake).with_credentials({
        let mut c = Credentials::new();
        c.set("api_key", Secret::from(KEY));
        c
    });
    let e = plugin.prepare(&no_user).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(e.to_string().contains("user id"), "{e}");
    for cfg in [
        session(&fake, AudioEncoding::Wav, json!({})),
        session(&fake, AudioEncoding::Opus, json!({})),
        session(&fake, AudioEncoding::Alaw, json!({})),
        TtsSessionConfig::new(AudioEncoding::Linear16, 11_025)
            .with_api_key(Some(Secret::from(KEY)))
            .with_credentials(creds(USER))
            .with_plugin_config(config(&fake, json!({}))),
        pcm(&fake).with_model("Play9"),
        pcm(&fake).with_model("PlayDialog-turbo"),
        session(&fake, AudioEncoding::Linear16, json!({"quality": "ultra"})),
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
