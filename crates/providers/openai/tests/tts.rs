//! The OpenAI TTS plugin against the fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use waav_openai::OpenAiTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, ErrorCategory, Plugin, PluginConfig, PluginError, Secret,
    SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::openai::{speech_audio, FakeOptions, Fault, OpenAiFake};

const WAIT: Duration = Duration::from_secs(10);

fn session(base_url: &str, key: &str, extra: serde_json::Value) -> TtsSessionConfig {
    let mut section = json!({ "base_url": base_url });
    if let (Some(s), Some(e)) = (section.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)
        .with_api_key(Some(Secret::new(key)))
        .with_plugin_config(PluginConfig::from_value("plugins.tts.openai", section).unwrap())
}

fn request(id: u64, text: &str) -> SpeakRequest {
    SpeakRequest {
        id,
        text: text.into(),
        flush: true,
    }
}

/// Synthesises `text`, returning the audio chunks.
async fn speak(
    plugin: &OpenAiTts,
    cfg: &TtsSessionConfig,
    text: &str,
) -> Result<Vec<Bytes>, PluginError> {
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let r = tokio::time::timeout(WAIT, plugin.synthesize(cfg, request(1, text), sink))
        .await
        .expect("synthesis ends");
    let mut chunks = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        chunks.push(data);
    }
    r.map(|()| chunks)
}

#[tokio::test]
async fn request_shape_and_emotion_mapping() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = OpenAiTts::new();
    let mut cfg = session(
        &fake.base_url(),
        "test-key",
        json!({"organization": "org-1", "project": "proj-1", "instructions": "You are a concierge."}),
    )
    .with_voice("coral");
    cfg.speaking_rate = 1.25;
    cfg.emotion.emotion = Some("happy".into());
    cfg.emotion.intensity = Some(0.9);
    cfg.emotion.delivery_style = Some("whispered".into());
    plugin.prepare(&cfg).await.unwrap();
    let chunks = speak(&plugin, &cfg, "Hello there.").await.unwrap();
    assert!(!chunks.is_empty());
    let r = &fake.speeches()[0];
    assert_eq!(r.request.path(), "/v1/audio/speech");
    assert_eq!(r.request.header("authorization"), Some("Bearer test-key"));
    assert_eq!(r.request.header("content-type"), Some("application/json"));
    assert_eq!(r.request.header("openai-organization"), Some("org-1"));
    assert_eq!(r.request.header("openai-project"), Some("proj-1"));
    assert_eq!(
        r.body,
        json!({
            "model": "gpt-4o-mini-tts",
            "input": "Hello there.",
            "voice": "coral",
            "response_format": "pcm",
            "speed": 1.25,
            "instructions": "You are a concierge. Sound very happy. Use a whispered delivery."
        })
    );
    // tts-1 takes no instructions: the emotion is dropped.
    let cfg = cfg.with_model("tts-1");
    speak(&plugin, &cfg, "Hi.").await.unwrap();
    let r = &fake.speeches()[1];
    assert_eq!(r.body["model"], "tts-1");
    assert!(r.body.get("instructions").is_none(), "{}", r.body);
}

#[tokio::test]
async fn audio_streams_in_order_and_the_first_chunk_comes_early() {
    let fake = OpenAiFake::with_options(
        FakeOptions::new("test-key")
            .fault(Fault::HoldAfterFirstChunk)
            .chunk_bytes(1000),
    )
    .await;
    let plugin = OpenAiTts::new();
    let cfg = session(&fake.base_url(), "test-key", json!({}));
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(9, tx, CancelFlag::new());
    let text = "A sentence long enough for several chunks.";
    let task = {
        let cfg = cfg.clone();
        let plugin = OpenAiTts::new();
        tokio::spawn(async move { plugin.synthesize(&cfg, request(9, text), sink).await })
    };
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let TtsEvent::Audio { id, data } = first else {
        panic!("{first:?}")
    };
    assert_eq!((id, data.len()), (9, 1000));
    assert_eq!(fake.speeches()[0].chunks_sent, 1, "the fake holds the rest");
    fake.release();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = data.to_vec();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
    }
    assert_eq!(
        audio,
        speech_audio(text, "pcm", 1.0, 20),
        "byte-exact, in order"
    );
    assert!(fake.speeches()[0].completed);
    drop(plugin);
}

#[tokio::test]
async fn mp3_and_opus_pass_through() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = OpenAiTts::new();
    let mut cfg = session(&fake.base_url(), "test-key", json!({}));
    cfg.encoding = AudioEncoding::Mp3;
    let audio: Vec<u8> = speak(&plugin, &cfg, "Hi.").await.unwrap().concat();
    assert_eq!(&audio[..2], &[0xFF, 0xFB]);
    cfg.encoding = AudioEncoding::Opus;
    let audio: Vec<u8> = speak(&plugin, &cfg, "Hi.").await.unwrap().concat();
    assert_eq!(&audio[..4], b"OggS");
    let formats: Vec<_> = fake
        .speeches()
        .iter()
        .map(|r| r.body["response_format"].clone())
        .collect();
    assert_eq!(formats, [json!("mp3"), json!("opus")]);
}

#[tokio::test]
async fn long_text_is_split_into_requests() {
    let mut opts = FakeOptions::new("test-key").chunk_bytes(16_000);
    opts.ms_per_char = 1;
    let fake = OpenAiFake::with_options(opts).await;
    let plugin = OpenAiTts::new();
    let cfg = session(&fake.base_url(), "test-key", json!({}));
    let text = "This sentence has forty characters, ok. ".repeat(150);
    let audio: Vec<u8> = speak(&plugin, &cfg, &text).await.unwrap().concat();
    let reqs = fake.speeches();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.status == 200));
    let inputs: Vec<&str> = reqs
        .iter()
        .map(|r| r.body["input"].as_str().unwrap())
        .collect();
    assert!(inputs.iter().all(|i| i.chars().count() <= 4096));
    let mut want = speech_audio(inputs[0], "pcm", 1.0, 1);
    want.extend(speech_audio(inputs[1], "pcm", 1.0, 1));
    assert_eq!(audio, want);
}

#[tokio::test]
async fn conformance() {
    use ErrorCategory::*;
    let fake = OpenAiFake::start("test-key").await;
    let plugin = OpenAiTts::new();
    let voice = r#"{"error":{"message":"Invalid value for 'voice'","type":"invalid_request_error","param":"voice","code":null}}"#;
    let input = r#"{"error":{"message":"Invalid 'input': string too long","type":"invalid_request_error","param":"input","code":"string_above_max_length"}}"#;
    let region = r#"{"error":{"message":"Country, region, or territory not supported","type":"request_forbidden","param":null,"code":"unsupported_country_region_territory"}}"#;
    let limit = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    // (name, the fake's options, the key the session sends, extra config, outcome)
    let faults = [
        (
            "wrong key",
            FakeOptions::new("test-key"),
            "wrong-key",
            json!({}),
            FaultOutcome::Fails(Auth),
        ),
        (
            "403",
            FakeOptions::new("test-key").fault(status(403, region, None)),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Auth),
        ),
        (
            "429",
            FakeOptions::new("test-key").fault(status(429, limit, Some(4))),
            "test-key",
            json!({}),
            FaultOutcome::Fails(RateLimited),
        ),
        // Billing exhausted: retrying cannot help, so not RateLimited.
        (
            "429 insufficient_quota",
            FakeOptions::new("test-key").fault(Fault::insufficient_quota()),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Auth),
        ),
        (
            "500",
            FakeOptions::new("test-key").fault(status(500, "boom", None)),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Transient),
        ),
        (
            "vendor error voice",
            FakeOptions::new("test-key").fault(status(400, voice, None)),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Config),
        ),
        (
            "vendor error input",
            FakeOptions::new("test-key").fault(status(400, input, None)),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Permanent),
        ),
        // A 200 with JSON where the audio should be.
        (
            "garbage",
            FakeOptions::new("test-key").fault(Fault::Garbage),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Permanent),
        ),
        (
            "truncated body",
            FakeOptions::new("test-key").fault(Fault::Truncate { after_chunks: 1 }),
            "test-key",
            json!({}),
            FaultOutcome::Fails(Transient),
        ),
        (
            "silent",
            FakeOptions::new("test-key").fault(Fault::Silent),
            "test-key",
            json!({"read_timeout_ms": 300}),
            FaultOutcome::Fails(Timeout),
        ),
    ];
    let mut fixture = TtsFixture::new(session(&fake.base_url(), "test-key", json!({}))).guard(WAIT);
    let mut fakes = Vec::new();
    for (name, opts, key, extra, outcome) in faults {
        let f = OpenAiFake::with_options(opts).await;
        fixture = fixture.fault(name, session(&f.base_url(), key, extra), outcome);
        fakes.push(f);
    }
    check_tts(&plugin, &fixture).await.assert_ok();
    // Each faulty fake was asked (a failure before any request would be the plugin's own).
    assert!(fakes.iter().all(|f| !f.speeches().is_empty()));
}

async fn failure(fault: Fault, extra: serde_json::Value) -> PluginError {
    let fake = OpenAiFake::with_options(FakeOptions::new("test-key").fault(fault)).await;
    let plugin = OpenAiTts::new();
    speak(
        &plugin,
        &session(&fake.base_url(), "test-key", extra),
        "Hello there.",
    )
    .await
    .expect_err("the synthesis fails")
}

fn status(status: u16, body: &str, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        status,
        body: body.into(),
        retry_after,
    }
}

#[tokio::test]
async fn errors_keep_the_vendor_message_and_retry_after() {
    let fake = OpenAiFake::start("right").await;
    let e = speak(
        &OpenAiTts::new(),
        &session(&fake.base_url(), "wrong-key", json!({})),
        "Hi.",
    )
    .await
    .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert!(e.to_string().contains("Incorrect API key"), "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    match failure(
        status(
            429,
            r#"{"error":{"message":"Rate limit reached for requests"}}"#,
            Some(4),
        ),
        json!({}),
    )
    .await
    {
        PluginError::RateLimited {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(4)));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A 429 about billing (no credits left) is Auth, with the vendor's message and code; a
    // retry-after on it does not make it a rate limit.
    let mut quota = Fault::insufficient_quota();
    if let Fault::Status { retry_after, .. } = &mut quota {
        *retry_after = Some(4);
    }
    let e = failure(quota, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("exceeded your current quota"), "{text}");
    assert!(text.contains("insufficient_quota"), "{text}");
    // The other faults' categories are checked by the conformance suite (`conformance`).
}

#[tokio::test]
async fn cancel_mid_stream_stops_reading() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new("test-key").fault(Fault::HoldAfterFirstChunk))
            .await;
    let plugin = OpenAiTts::new();
    let cfg = session(&fake.base_url(), "test-key", json!({}));
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancelFlag::new();
    let sink = AudioSink::new(3, tx, cancel.clone());
    let text = "A long text. ".repeat(200);
    let synth = plugin.synthesize(&cfg, request(3, &text), sink);
    tokio::pin!(synth);
    tokio::select! {
        r = &mut synth => panic!("ended before the first chunk: {r:?}"),
        ev = rx.recv() => assert!(matches!(ev, Some(TtsEvent::Audio { id: 3, .. }))),
    }
    cancel.cancel_up_to(3);
    fake.release();
    tokio::time::timeout(WAIT, &mut synth)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.try_recv().is_err(), "no audio after the cancel");
    let log = fake
        .wait_for_speech(0, WAIT, |l| l.client_gone)
        .await
        .expect("the fake sees the connection go");
    assert!(!log.completed);
}

#[tokio::test]
async fn dropping_the_future_closes_the_connection() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new("test-key").fault(Fault::HoldAfterFirstChunk))
            .await;
    let cfg = session(&fake.base_url(), "test-key", json!({}));
    let (tx, mut rx) = mpsc::channel(16);
    let sink = AudioSink::new(4, tx, CancelFlag::new());
    let task = tokio::spawn(async move {
        OpenAiTts::new()
            .synthesize(&cfg, request(4, "Some words to say."), sink)
            .await
    });
    assert!(tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .is_some());
    task.abort();
    assert!(fake
        .wait_for_speech(0, WAIT, |l| l.client_gone)
        .await
        .is_some());
}

#[tokio::test]
async fn voices_are_declared_without_a_network_call() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = OpenAiTts::new();
    let voices = plugin.voices(Some(Secret::new("test-key"))).await.unwrap();
    let ids: Vec<&str> = voices.iter().map(|v| v.id.as_str()).collect();
    for v in [
        "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
        "verse",
    ] {
        assert!(ids.contains(&v), "{v} missing from {ids:?}");
    }
    let caps = plugin.capabilities();
    assert_eq!(
        caps.encodings,
        [
            AudioEncoding::Linear16,
            AudioEncoding::Mp3,
            AudioEncoding::Opus
        ]
    );
    assert_eq!(caps.sample_rates, [24_000]);
    assert!(caps.check_model("gpt-4o-mini-tts").is_ok() && caps.check_model("tts-1-hd").is_ok());
    assert!(fake.speeches().is_empty());
}

#[tokio::test]
async fn prepare_refuses_bad_configs_before_any_request() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = OpenAiTts::new();
    let good = session(&fake.base_url(), "test-key", json!({}));
    let e = plugin
        .prepare(&good.clone().with_api_key(None))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    for (enc, rate) in [
        (AudioEncoding::Wav, 24_000),
        (AudioEncoding::Mulaw, 8_000),
        (AudioEncoding::Linear16, 16_000),
    ] {
        let mut c = good.clone();
        c.encoding = enc;
        c.sample_rate = rate;
        assert_eq!(
            plugin.prepare(&c).await.unwrap_err().category(),
            ErrorCategory::Config
        );
    }
    let bad = session("ftp://nowhere", "test-key", json!({}));
    assert_eq!(
        plugin.prepare(&bad).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    // Whitespace is not sent at all.
    assert!(speak(&plugin, &good, "   ").await.unwrap().is_empty());
    assert!(fake.speeches().is_empty());
}
