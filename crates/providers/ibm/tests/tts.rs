//! The real IBM Watson TTS client against the protocol fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use waav_ibm::IbmTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Credentials, Emotion, ErrorCategory, Plugin,
    PluginConfig, PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::ibm::{speech, IamFault, IbmFake, IbmFakeOptions, TtsFault};

const KEY: &str = "test-key";
const WAIT: Duration = Duration::from_secs(10);

fn settings(fake: &IbmFake, extra: Value) -> PluginConfig {
    let mut cfg = json!({ "iam_url": fake.iam_url(), "read_timeout_ms": 2000 });
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    PluginConfig::from_value("plugins.tts.ibm-watson", cfg).unwrap()
}

fn session(fake: &IbmFake, encoding: AudioEncoding, rate: u32, extra: Value) -> TtsSessionConfig {
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    creds.set("url", Secret::new(fake.instance_url()));
    TtsSessionConfig::new(encoding, rate)
        .with_plugin_config(settings(fake, extra))
        .with_credentials(creds)
}

/// Synthesises `text`, returning the audio chunks.
async fn speak(
    plugin: &IbmTts,
    cfg: &TtsSessionConfig,
    text: &str,
) -> Result<Vec<Bytes>, PluginError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    tokio::time::timeout(WAIT, plugin.synthesize(cfg, req, sink))
        .await
        .expect("synthesize hung")?;
    let mut out = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        out.push(data);
    }
    Ok(out)
}

#[tokio::test]
async fn request_shape_and_byte_exact_audio() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        22_050,
        json!({"customization_id": "cust-9"}),
    )
    .with_voice("en-GB_KateV3Voice");
    let chunks = speak(&plugin, &cfg, "Hello there.").await.unwrap();
    assert!(chunks.len() > 1, "streamed in several chunks");
    let audio: Vec<u8> = chunks.concat();
    assert_eq!(audio, speech("Hello there.", "l16", 22_050, false, 20));

    let r = &fake.synth_requests()[0];
    assert_eq!(r.request.path(), "/instances/fake-instance/v1/synthesize");
    assert_eq!(r.request.query("voice"), Some("en-GB_KateV3Voice"));
    assert_eq!(r.request.query("customization_id"), Some("cust-9"));
    assert_eq!(
        r.request.header("authorization"),
        Some("Bearer fake-token-1")
    );
    assert_eq!(
        r.request.header("accept"),
        Some("audio/l16;rate=22050;endianness=little-endian")
    );
    assert_eq!(r.request.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body, json!({"text": "Hello there."}));
    assert!(r.completed);

    // The default voice, other formats.
    let cfg = session(&fake, AudioEncoding::Mulaw, 8_000, json!({}));
    let audio = speak(&plugin, &cfg, "Hi").await.unwrap().concat();
    assert_eq!(audio, speech("Hi", "mulaw", 8_000, false, 20));
    let r = &fake.synth_requests()[1];
    assert_eq!(r.request.query("voice"), Some("en-US_MichaelV3Voice"));
    assert_eq!(r.request.header("accept"), Some("audio/mulaw;rate=8000"));
    let cfg = session(&fake, AudioEncoding::Opus, 48_000, json!({}));
    let audio = speak(&plugin, &cfg, "Hi").await.unwrap().concat();
    assert!(audio.starts_with(b"OggS"));
    assert_eq!(
        fake.synth_requests()[2].request.header("accept"),
        Some("audio/ogg;codecs=opus;rate=48000")
    );
    assert_eq!(
        fake.token_requests().len(),
        1,
        "one token for every request"
    );
}

#[tokio::test]
async fn big_endian_l16_is_swapped() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        l16_big_endian: true,
        chunk_bytes: 333, // odd: samples split across chunks
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = IbmTts::new();
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let audio = speak(&plugin, &cfg, "Swap me").await.unwrap().concat();
    assert_eq!(audio, speech("Swap me", "l16", 16_000, false, 20));
}

#[tokio::test]
async fn rate_and_emotion_become_ssml() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let mut cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}))
        .with_voice("en-US_EmmaExpressive");
    cfg.speaking_rate = 1.25;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.6),
        ..Emotion::default()
    };
    speak(&plugin, &cfg, "Good news & more").await.unwrap();
    let text = &fake.synth_requests()[0].text;
    assert_eq!(
        text,
        "<speak><express-as style=\"cheerful\"><prosody rate=\"+25%\">Good news &amp; more</prosody></express-as></speak>"
    );
    // A voice without speaking styles: the rate only.
    cfg.voice_id = "en-US_MichaelV3Voice".into();
    speak(&plugin, &cfg, "Plain").await.unwrap();
    assert_eq!(
        fake.synth_requests()[1].text,
        "<speak><prosody rate=\"+25%\">Plain</prosody></speak>"
    );
    // SSML input is sent untouched.
    speak(&plugin, &cfg, "<speak>As <break/> is</speak>")
        .await
        .unwrap();
    assert_eq!(
        fake.synth_requests()[2].text,
        "<speak>As <break/> is</speak>"
    );
}

#[tokio::test]
async fn long_text_is_split_under_the_limit() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        ms_per_char: 1,
        chunk_bytes: 8_000,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = IbmTts::new();
    let cfg = session(&fake, AudioEncoding::Linear16, 8_000, json!({}));
    let sentence = "This sentence is about fifty bytes long, give or take. ";
    let text = sentence.repeat(200); // ~11 KB
    let audio = speak(&plugin, &cfg, &text).await.unwrap().concat();
    let reqs = fake.synth_requests();
    assert!(reqs.len() >= 3, "{}", reqs.len());
    assert!(reqs
        .iter()
        .all(|r| r.status == 200 && r.text.len() <= 5_000));
    let expected: usize = reqs
        .iter()
        .map(|r| speech(&r.text, "l16", 8_000, false, 1).len())
        .sum();
    assert_eq!(audio.len(), expected);
}

#[tokio::test]
async fn first_chunk_arrives_before_the_rest() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        tts_fault: TtsFault::HoldAfterFirstChunk,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = std::sync::Arc::new(IbmTts::new());
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let p = plugin.clone();
    let task = tokio::spawn(async move {
        let req = SpeakRequest {
            id: 1,
            text: "A longer sentence to speak.".into(),
            flush: true,
        };
        p.synthesize(&cfg, req, sink).await
    });
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, TtsEvent::Audio { .. }));
    assert_eq!(fake.synth_requests()[0].chunks_sent, 1, "the rest is held");
    fake.release();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = match first {
        TtsEvent::Audio { data, .. } => data.to_vec(),
        _ => unreachable!(),
    };
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
    }
    assert_eq!(
        audio,
        speech("A longer sentence to speak.", "l16", 16_000, false, 20)
    );
}

#[tokio::test]
async fn cancel_stops_reading() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        tts_fault: TtsFault::HoldAfterFirstChunk,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = std::sync::Arc::new(IbmTts::new());
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let cancel = CancelFlag::new();
    let sink = AudioSink::new(1, tx, cancel.clone());
    let p = plugin.clone();
    let task = tokio::spawn(async move {
        let req = SpeakRequest {
            id: 1,
            text: "Cancel me in the middle please.".into(),
            flush: true,
        };
        p.synthesize(&cfg, req, sink).await
    });
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    cancel.cancel_up_to(1);
    fake.release();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let log = fake
        .wait_for_synth(0, WAIT, |l| l.client_gone)
        .await
        .expect("the fake saw the connection go");
    assert!(!log.completed);
}

#[tokio::test]
async fn errors_are_categorised() {
    let plugin = IbmTts::new();
    for (status, body, want) in [
        (
            400,
            r#"{"code":400,"error":"Invalid value for 'voice'"}"#,
            ErrorCategory::Config,
        ),
        (
            400,
            r#"{"code":400,"error":"The text contains invalid SSML"}"#,
            ErrorCategory::Permanent,
        ),
        (
            404,
            r#"{"code":404,"error":"Model not found"}"#,
            ErrorCategory::Config,
        ),
        (
            406,
            r#"{"code":406,"error":"Unsupported Accept"}"#,
            ErrorCategory::Config,
        ),
        (
            429,
            r#"{"code":429,"error":"Too many requests"}"#,
            ErrorCategory::RateLimited,
        ),
        (
            500,
            r#"{"code":500,"error":"Internal"}"#,
            ErrorCategory::Transient,
        ),
        (503, "<html>busy</html>", ErrorCategory::Transient),
    ] {
        let fake = IbmFake::with_options(IbmFakeOptions {
            tts_fault: TtsFault::Status {
                status,
                body: body.into(),
                retry_after: Some(2),
            },
            ..IbmFakeOptions::new(KEY)
        })
        .await;
        let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
        let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
        assert_eq!(e.category(), want, "{status} {body}: {e}");
        if let PluginError::RateLimited { retry_after, .. } = &e {
            assert_eq!(*retry_after, Some(Duration::from_secs(2)));
        }
        if status == 400 {
            assert!(
                e.to_string().contains("Invalid") || e.to_string().contains("SSML"),
                "{e}"
            );
        }
    }
    // 401 from the service (a revoked token): Auth, and the next request gets a new token.
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    speak(&plugin, &cfg, "Hi").await.unwrap();
    fake.revoke_tokens();
    let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    speak(&plugin, &cfg, "Hi").await.unwrap();
    assert_eq!(fake.token_requests().len(), 2);
    // An unknown voice is the fake's 404: Config.
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({})).with_voice("xx-XX_Nobody");
    let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    // IAM refusing the key: Auth, secret never shown.
    fake.set_iam_fault(Some(IamFault {
        status: 400,
        body: r#"{"errorCode":"BXNIM0415E","errorMessage":"Provided API key could not be found."}"#
            .into(),
    }));
    let mut cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    cfg.api_key = Some(Secret::from("another-key-777"));
    let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("another-key-777"));
}

#[tokio::test]
async fn malformed_truncated_and_silent_responses() {
    let plugin = IbmTts::new();
    let fake = IbmFake::with_options(IbmFakeOptions {
        tts_fault: TtsFault::Garbage,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");

    let fake = IbmFake::with_options(IbmFakeOptions {
        tts_fault: TtsFault::Truncate { after_chunks: 2 },
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let e = speak(&plugin, &cfg, "A sentence long enough")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");

    let fake = IbmFake::with_options(IbmFakeOptions {
        tts_fault: TtsFault::Silent,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"read_timeout_ms": 300}),
    );
    let e = speak(&plugin, &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn voices_are_listed_and_cached() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let mut section = settings(&fake, json!({"voices_ttl_secs": 300}))
        .as_map()
        .clone();
    section.insert("url".into(), fake.instance_url().into());
    plugin
        .init(
            &PluginContext::default(),
            &PluginConfig::new("plugins.tts.ibm-watson", section),
        )
        .await
        .unwrap();
    let v = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(v.len(), 3);
    let kate = v.iter().find(|v| v.id == "en-GB_KateV3Voice").unwrap();
    assert_eq!(
        (
            kate.name.as_str(),
            kate.language.as_str(),
            kate.gender.as_str()
        ),
        ("Kate", "en-GB", "female")
    );
    assert_eq!(kate.accent, "British English");
    let again = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(again, v);
    assert_eq!(fake.voice_listings(), 1, "the second call is cached");
    assert_eq!(fake.token_requests().len(), 1);
    let e = IbmTts::new().voices(Some(Secret::from(KEY))).await;
    assert!(e.is_err() || std::env::var("IBM_TTS_URL").is_ok());
}

#[tokio::test]
async fn prepare_refuses_bad_config_before_any_request() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let no_key = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_plugin_config(settings(&fake, json!({})));
    let mut creds = Credentials::new();
    creds.set("url", Secret::new(fake.instance_url()));
    let no_key = no_key.with_credentials(creds);
    assert_eq!(
        plugin.prepare(&no_key).await.unwrap_err().category(),
        ErrorCategory::Auth
    );
    let mut no_url = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    no_url.credentials = {
        let mut c = Credentials::new();
        c.set("api_key", Secret::from(KEY));
        c
    };
    assert_eq!(
        plugin.prepare(&no_url).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    for cfg in [
        session(&fake, AudioEncoding::Wav, 16_000, json!({})),
        session(&fake, AudioEncoding::Flac, 16_000, json!({})),
        session(&fake, AudioEncoding::Opus, 22_050, json!({})),
        session(&fake, AudioEncoding::Linear16, 96_000, json!({})),
        session(
            &fake,
            AudioEncoding::Linear16,
            16_000,
            json!({"auth": "magic"}),
        ),
        session(&fake, AudioEncoding::Linear16, 16_000, json!({})).with_voice("bad voice"),
    ] {
        assert_eq!(
            plugin.prepare(&cfg).await.unwrap_err().category(),
            ErrorCategory::Config,
            "{cfg:?}"
        );
    }
    plugin
        .prepare(&session(&fake, AudioEncoding::Linear16, 16_000, json!({})))
        .await
        .unwrap();
    assert!(fake.token_requests().is_empty() && fake.synth_requests().is_empty());
}

#[tokio::test]
async fn conformance() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmTts::new();
    let fixture = TtsFixture::new(session(&fake, AudioEncoding::Linear16, 22_050, json!({})))
        .guard(Duration::from_secs(10));
    check_tts(&plugin, &fixture).await.assert_ok();
}

/// Every fault the fake injects, each against its own fake, through the shared suite.
#[tokio::test]
async fn conformance_faults() {
    let good = IbmFake::start(KEY).await;
    // IAM does not know the key (its BXNIM0415E), and IAM refusing outright.
    let unknown_key = IbmFake::start("another-api-key").await;
    let iam_refuses = IbmFake::start(KEY).await;
    iam_refuses.set_iam_fault(Some(IamFault {
        status: 400,
        body: r#"{"errorCode":"BXNIM0415E","errorMessage":"Provided API key could not be found."}"#
            .into(),
    }));
    let tts_status = |status: u16, body: &str, retry_after: Option<u64>| TtsFault::Status {
        status,
        body: body.into(),
        retry_after,
    };
    let faults = [
        (
            "service refuses the token",
            tts_status(401, r#"{"code":401,"error":"Unauthorized"}"#, None),
            ErrorCategory::Auth,
        ),
        (
            "rate limited",
            tts_status(429, r#"{"code":429,"error":"Too many requests"}"#, Some(2)),
            ErrorCategory::RateLimited,
        ),
        (
            "5xx",
            tts_status(503, "<html>busy</html>", None),
            ErrorCategory::Transient,
        ),
        (
            "truncated",
            TtsFault::Truncate { after_chunks: 1 },
            ErrorCategory::Transient,
        ),
        ("garbage", TtsFault::Garbage, ErrorCategory::Permanent),
        ("silent", TtsFault::Silent, ErrorCategory::Timeout),
    ];
    let mut fakes = Vec::new();
    for (_, fault, _) in &faults {
        fakes.push(
            IbmFake::with_options(IbmFakeOptions {
                tts_fault: fault.clone(),
                ..IbmFakeOptions::new(KEY)
            })
            .await,
        );
    }
    let mut fixture = TtsFixture::new(session(&good, AudioEncoding::Linear16, 16_000, json!({})))
        .guard(Duration::from_secs(10))
        .fault(
            "IAM does not know the key",
            session(&unknown_key, AudioEncoding::Linear16, 16_000, json!({})),
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "IAM refuses",
            session(&iam_refuses, AudioEncoding::Linear16, 16_000, json!({})),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
    for ((name, _, want), fake) in faults.iter().zip(&fakes) {
        let cfg = session(
            fake,
            AudioEncoding::Linear16,
            16_000,
            json!({"read_timeout_ms": 300}),
        );
        fixture = fixture.fault(*name, cfg, FaultOutcome::Fails(*want));
    }
    check_tts(&IbmTts::new(), &fixture).await.assert_ok();
    // Each faulty fake was reached (the check did not pass on a refusal of its own).
    for ((name, ..), fake) in faults.iter().zip(&fakes) {
        assert!(
            !fake.synth_requests().is_empty(),
            "{name}: no request reached the fake"
        );
    }
    for iam in [&unknown_key, &iam_refuses] {
        assert!(!iam.token_requests().is_empty() && iam.synth_requests().is_empty());
    }
}
