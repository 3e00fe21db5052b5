//! The Azure TTS plugin against the fake Speech REST service over a real 127.0.0.1 socket.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use waav_azure::tts::AzureTts;
use waav_plugin_api::{
    codec, AudioEncoding, AudioSink, CancelFlag, Credentials, Emotion, ErrorCategory, Plugin,
    PluginConfig, PluginContext, PluginError, PluginHandle, Secret, SpeakRequest, TtsEvent,
    TtsPlugin, TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::azure_tts::{speech_audio, AzureTtsFake, FakeOptions, Fault};

const KEY: &str = "azure-test-key";
const WAIT: Duration = Duration::from_secs(10);

fn section(fake: &AzureTtsFake, extra: Value) -> PluginConfig {
    let mut v = json!({"base_url": fake.base_url()});
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    PluginConfig::from_value("plugins.tts.microsoft-azure", v).unwrap()
}

fn creds(key: &str) -> Credentials {
    let mut c = Credentials::new();
    c.set("api_key", Secret::from(key));
    c
}

fn session(fake: &AzureTtsFake, enc: AudioEncoding, rate: u32, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, rate)
        .with_api_key(Some(Secret::from(KEY)))
        .with_credentials(creds(KEY))
        .with_plugin_config(section(fake, extra))
}

fn pcm24(fake: &AzureTtsFake) -> TtsSessionConfig {
    session(fake, AudioEncoding::Linear16, 24_000, json!({}))
}

async fn start(opts: FakeOptions) -> AzureTtsFake {
    AzureTtsFake::with_options(opts).await
}

fn request(id: u64, text: &str) -> SpeakRequest {
    SpeakRequest {
        id,
        text: text.into(),
        flush: true,
    }
}

/// Synthesises `text`, returning the audio chunks as the sink got them.
async fn speak(
    plugin: &AzureTts,
    cfg: &TtsSessionConfig,
    text: &str,
) -> Result<Vec<Bytes>, PluginError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let r = tokio::time::timeout(WAIT, plugin.synthesize(cfg, request(1, text), sink))
        .await
        .expect("synthesize hung");
    let mut chunks = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            TtsEvent::Audio { data, .. } => chunks.push(data),
            other => panic!("unexpected {other:?}"),
        }
    }
    r.map(|()| chunks)
}

fn joined(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

#[tokio::test]
async fn request_shape_follows_the_rest_docs() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        24_000,
        json!({"role": "youngadultfemale", "user_agent": "waav-test"}),
    )
    .with_voice("zh-CN-YunxiNeural");
    cfg.speaking_rate = 1.1;
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.75),
        ..Emotion::default()
    };
    plugin.prepare(&cfg).await.unwrap();
    let text = "Tom & Jerry <3 'quoted' \"double\"";
    let audio = joined(&speak(&plugin, &cfg, text).await.unwrap());
    let logs = fake.syntheses();
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(log.status, 200, "{:?}", log.rejection);
    let r = &log.request;
    assert_eq!(r.uri, "/cognitiveservices/v1");
    assert_eq!(r.header("ocp-apim-subscription-key"), Some(KEY));
    assert_eq!(r.header("content-type"), Some("application/ssml+xml"));
    assert_eq!(
        r.header("x-microsoft-outputformat"),
        Some("raw-24khz-16bit-mono-pcm")
    );
    assert_eq!(r.header("user-agent"), Some("waav-test"));
    assert_eq!(r.header("authorization"), None);
    let ssml = log.ssml.clone().unwrap();
    assert_eq!(ssml.version, "1.0");
    assert_eq!(ssml.lang, "zh-CN", "from the voice name");
    assert!(ssml.mstts_declared);
    assert_eq!(ssml.voice, "zh-CN-YunxiNeural");
    assert_eq!(ssml.text, text, "escaped and decoded back");
    assert_eq!(ssml.rate.as_deref(), Some("+10%"));
    assert_eq!(ssml.style.as_deref(), Some("cheerful"));
    assert_eq!(ssml.style_degree.as_deref(), Some("1.5"));
    assert_eq!(ssml.role.as_deref(), Some("YoungAdultFemale"));
    assert_eq!(
        ssml.elements,
        ["speak", "voice", "mstts:express-as", "prosody"]
    );
    assert_eq!(
        audio,
        speech_audio(text, "raw-24khz-16bit-mono-pcm", 1.1, 20),
        "the audio as the fake made it"
    );

    // Defaults: the default voice, no rate, no style; a delivery style alone maps too.
    let mut plain = pcm24(&fake);
    plain.emotion.delivery_style = Some("whispered".into());
    speak(&plugin, &plain, "hello").await.unwrap();
    let ssml = fake.syntheses()[1].ssml.clone().unwrap();
    assert_eq!(
        (ssml.voice.as_str(), ssml.lang.as_str()),
        ("en-US-JennyNeural", "en-US")
    );
    assert_eq!(ssml.rate, None);
    assert_eq!(ssml.style.as_deref(), Some("whispering"));
    assert_eq!(ssml.style_degree, None);
    assert!(fake.syntheses()[1]
        .request
        .header("user-agent")
        .unwrap()
        .starts_with("waav-gateway/"));
}

#[tokio::test]
async fn output_formats_per_encoding_and_rate() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    let cases = [
        (AudioEncoding::Linear16, 8_000, "raw-8khz-16bit-mono-pcm"),
        (AudioEncoding::Linear16, 16_000, "raw-16khz-16bit-mono-pcm"),
        (
            AudioEncoding::Linear16,
            22_050,
            "raw-22050hz-16bit-mono-pcm",
        ),
        (
            AudioEncoding::Linear16,
            44_100,
            "raw-44100hz-16bit-mono-pcm",
        ),
        (AudioEncoding::Linear16, 48_000, "raw-48khz-16bit-mono-pcm"),
        (AudioEncoding::Mulaw, 8_000, "raw-8khz-8bit-mono-mulaw"),
        (AudioEncoding::Alaw, 8_000, "raw-8khz-8bit-mono-alaw"),
        (
            AudioEncoding::Mp3,
            16_000,
            "audio-16khz-64kbitrate-mono-mp3",
        ),
        (
            AudioEncoding::Mp3,
            24_000,
            "audio-24khz-48kbitrate-mono-mp3",
        ),
        (
            AudioEncoding::Mp3,
            48_000,
            "audio-48khz-96kbitrate-mono-mp3",
        ),
        (AudioEncoding::Opus, 24_000, "ogg-24khz-16bit-mono-opus"),
        (AudioEncoding::Opus, 48_000, "ogg-48khz-16bit-mono-opus"),
    ];
    for (i, (enc, rate, header)) in cases.into_iter().enumerate() {
        let cfg = session(&fake, enc, rate, json!({}));
        plugin.prepare(&cfg).await.unwrap();
        let audio = joined(&speak(&plugin, &cfg, "Format check.").await.unwrap());
        let log = &fake.syntheses()[i];
        assert_eq!(
            log.request.header("x-microsoft-outputformat"),
            Some(header),
            "{enc} {rate}"
        );
        assert_eq!(audio, speech_audio("Format check.", header, 1.0, 20));
    }
}

#[tokio::test]
async fn g711_at_other_rates_is_encoded_from_pcm() {
    let fake = start(FakeOptions::new(KEY).chunk_bytes(301)).await;
    let plugin = AzureTts::new();
    for (enc, encode) in [
        (AudioEncoding::Mulaw, codec::mulaw_encode as fn(i16) -> u8),
        (AudioEncoding::Alaw, codec::alaw_encode),
    ] {
        let cfg = session(&fake, enc, 16_000, json!({}));
        plugin.prepare(&cfg).await.unwrap();
        let audio = joined(&speak(&plugin, &cfg, "Phone call.").await.unwrap());
        let log = fake.syntheses().pop().unwrap();
        assert_eq!(
            log.request.header("x-microsoft-outputformat"),
            Some("raw-16khz-16bit-mono-pcm")
        );
        // Odd chunk sizes split samples; the encoder carries the half sample.
        let pcm = speech_audio("Phone call.", "raw-16khz-16bit-mono-pcm", 1.0, 20);
        let want: Vec<u8> = pcm
            .chunks_exact(2)
            .map(|p| encode(i16::from_le_bytes([p[0], p[1]])))
            .collect();
        assert_eq!(audio, want, "{enc}");
    }
}

#[tokio::test]
async fn custom_voice_deployment_from_the_model() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    let cfg = pcm24(&fake)
        .with_model("d3adb33f-1234")
        .with_voice("my-custom-voice");
    plugin.prepare(&cfg).await.unwrap();
    speak(&plugin, &cfg, "Custom.").await.unwrap();
    let log = &fake.syntheses()[0];
    assert_eq!(
        log.request.uri,
        "/cognitiveservices/v1?deploymentId=d3adb33f-1234"
    );
    assert_eq!(log.ssml.as_ref().unwrap().voice, "my-custom-voice");
    assert_eq!(log.ssml.as_ref().unwrap().lang, "en-US");
    // Without the deployment, the fake (like the service) refuses an unknown voice: Config.
    let cfg = pcm24(&fake).with_voice("my-custom-voice");
    let e = speak(&plugin, &cfg, "Custom.").await.unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("Unsupported voice"), "{e}");
}

#[tokio::test]
async fn audio_streams_as_the_service_sends_it() {
    let fake = start(
        FakeOptions::new(KEY)
            .fault(Fault::HoldAfterFirstChunk)
            .chunk_bytes(500),
    )
    .await;
    let cfg = pcm24(&fake);
    let text = "A sentence long enough for many chunks of audio.";
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(9, tx, CancelFlag::new());
    let task = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            AzureTts::new()
                .synthesize(&cfg, request(9, text), sink)
                .await
        })
    };
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no first chunk")
        .unwrap();
    let TtsEvent::Audio { id: 9, data: first } = first else {
        panic!("{first:?}");
    };
    // The fake holds everything after its first chunk until released: the chunk got through
    // before the rest was sent.
    let log = fake.syntheses()[0].clone();
    assert_eq!((log.chunks_sent, log.completed), (1, false));
    assert_eq!(first.len(), 500);
    fake.release();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("synthesis hung")
        .unwrap()
        .unwrap();
    let mut audio = first.to_vec();
    let mut n = 1;
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
        n += 1;
    }
    let want = speech_audio(text, "raw-24khz-16bit-mono-pcm", 1.0, 20);
    assert_eq!(audio, want, "byte-exact and in order");
    assert!(n > 2, "{n} chunks");
    assert!(fake.syntheses()[0].completed);
}

#[tokio::test]
async fn conformance() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    for cfg in [
        pcm24(&fake),
        session(&fake, AudioEncoding::Mulaw, 8_000, json!({})),
        session(&fake, AudioEncoding::Alaw, 16_000, json!({})),
    ] {
        let fixture = TtsFixture::new(cfg).guard(Duration::from_secs(10));
        check_tts(&plugin, &fixture).await.assert_ok();
    }
}

/// Every fault the fake injects, each against its own fake, through the shared suite.
#[tokio::test]
async fn conformance_faults() {
    let good = AzureTtsFake::start(KEY).await;
    // A key the service does not know: the fake's own 401.
    let wrong_key = AzureTtsFake::start("another-resource-key").await;
    let faults = [
        (
            "rate limited",
            Fault::Status {
                status: 429,
                body: "Too many requests".into(),
                headers: vec![("retry-after".into(), "3".into())],
            },
            ErrorCategory::RateLimited,
        ),
        ("5xx", Fault::status(503, "busy"), ErrorCategory::Transient),
        (
            "truncated",
            Fault::Truncate { after_chunks: 1 },
            ErrorCategory::Transient,
        ),
        ("garbage", Fault::Garbage, ErrorCategory::Permanent),
        ("silent", Fault::Silent, ErrorCategory::Timeout),
        ("no response", Fault::NoResponse, ErrorCategory::Timeout),
    ];
    let mut fakes = Vec::new();
    for (_, fault, _) in &faults {
        fakes.push(start(FakeOptions::new(KEY).fault(fault.clone()).chunk_bytes(200)).await);
    }
    let mut fixture = TtsFixture::new(pcm24(&good))
        .guard(Duration::from_secs(10))
        .fault(
            "auth rejected",
            pcm24(&wrong_key),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
    for ((name, _, want), fake) in faults.iter().zip(&fakes) {
        let cfg = session(
            fake,
            AudioEncoding::Linear16,
            24_000,
            json!({"read_timeout_ms": 300}),
        );
        fixture = fixture.fault(*name, cfg, FaultOutcome::Fails(*want));
    }
    check_tts(&AzureTts::new(), &fixture).await.assert_ok();
    // Each faulty fake was reached (the check did not pass on a refusal of its own).
    for ((name, ..), fake) in faults.iter().zip(&fakes) {
        assert!(
            !fake.syntheses().is_empty(),
            "{name}: no request reached the fake"
        );
    }
    assert!(wrong_key.syntheses().iter().all(|l| l.status == 401));
}

async fn error_for(fault: Fault, extra: Value) -> PluginError {
    let fake = start(FakeOptions::new(KEY).fault(fault)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, 24_000, extra);
    speak(&AzureTts::new(), &cfg, "Hello there.")
        .await
        .unwrap_err()
}

#[tokio::test]
async fn status_errors_map_to_categories() {
    // A wrong key: Auth, with the gateway's message and never the key.
    let fake = AzureTtsFake::start("the-right-key").await;
    let mut cfg = pcm24(&fake);
    cfg.api_key = Some(Secret::from("wrong-key-123"));
    let e = speak(&AzureTts::new(), &cfg, "Hi.").await.unwrap_err();
    assert!(matches!(e, PluginError::Auth(_)), "{e:?}");
    assert!(e.to_string().contains("Access denied"), "{e}");
    assert!(!e.to_string().contains("wrong-key-123"), "{e}");

    let e = error_for(
        Fault::Status {
            status: 429,
            body: "Too many requests".into(),
            headers: vec![("retry-after".into(), "3".into())],
        },
        json!({}),
    )
    .await;
    assert_eq!(
        e,
        PluginError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            message: "azure tts: HTTP 429 Too Many Requests: Too many requests".into()
        }
    );
    let e = error_for(Fault::status(400, "Invalid SSML"), json!({})).await;
    assert!(matches!(e, PluginError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("Invalid SSML"), "{e}");
    for status in [500, 502, 503] {
        let e = error_for(Fault::status(status, ""), json!({})).await;
        assert!(matches!(e, PluginError::Transient(_)), "{status}: {e:?}");
    }
    let e = error_for(
        Fault::status(
            401,
            format!("{{\"error\":{{\"code\":\"401\",\"message\":\"bad {KEY}\"}}}}"),
        ),
        json!({}),
    )
    .await;
    assert!(matches!(e, PluginError::Auth(_)), "{e:?}");
    assert!(!e.to_string().contains(KEY), "redacted: {e}");
}

#[tokio::test]
async fn malformed_and_stalled_responses_fail_bounded() {
    // A 200 that is not audio.
    let e = error_for(Fault::Garbage, json!({})).await;
    assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
    // A body that breaks off: an error after the audio so far, no panic.
    let fake = start(
        FakeOptions::new(KEY)
            .fault(Fault::Truncate { after_chunks: 2 })
            .chunk_bytes(200),
    )
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let r = tokio::time::timeout(
        WAIT,
        AzureTts::new().synthesize(&pcm24(&fake), request(1, "Hello there, a long one."), sink),
    )
    .await
    .expect("hung");
    let e = r.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let mut got = 0;
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        got += data.len();
    }
    assert_eq!(got, 400);
    // A service that sends the head and then nothing, or nothing at all: Timeout.
    for fault in [Fault::Silent, Fault::NoResponse] {
        let e = error_for(fault.clone(), json!({"read_timeout_ms": 300})).await;
        assert!(matches!(e, PluginError::Timeout(_)), "{fault:?}: {e:?}");
    }
}

#[tokio::test]
async fn dropping_the_synthesis_closes_the_connection() {
    let fake = start(FakeOptions::new(KEY).fault(Fault::HoldAfterFirstChunk)).await;
    let cfg = pcm24(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let task = tokio::spawn(async move {
        AzureTts::new()
            .synthesize(&cfg, request(1, "Hello there, a long one."), sink)
            .await
    });
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no audio")
        .unwrap();
    // The host drops the future on cancel.
    task.abort();
    assert!(
        fake.wait_for_synthesis(0, WAIT, |l| l.client_gone)
            .await
            .is_some(),
        "the fake saw the connection close"
    );
}

#[tokio::test]
async fn cancel_stops_reading_mid_stream() {
    let fake = start(
        FakeOptions::new(KEY)
            .fault(Fault::HoldAfterFirstChunk)
            .chunk_bytes(200),
    )
    .await;
    let cfg = pcm24(&fake);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(4, tx, flag.clone());
    let long = "Hello there. ".repeat(40);
    let task = tokio::spawn(async move {
        AzureTts::new()
            .synthesize(&cfg, request(4, &long), sink)
            .await
    });
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no audio")
        .unwrap();
    flag.cancel_up_to(4);
    fake.release();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("synthesis did not stop")
        .unwrap()
        .unwrap();
    assert!(rx.try_recv().is_err(), "no audio after the cancel");
    let log = fake
        .wait_for_synthesis(0, WAIT, |l| l.client_gone)
        .await
        .expect("the fake saw the client leave");
    assert!(!log.completed);
}

#[tokio::test]
async fn voices_are_mapped_and_cached() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    let cfg = section(&fake, json!({"api_key": KEY}));
    plugin
        .init(&PluginContext::new("test"), &cfg)
        .await
        .unwrap();
    let voices = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(voices.len(), 3);
    let jenny = &voices[0];
    assert_eq!(
        (
            jenny.id.as_str(),
            jenny.name.as_str(),
            jenny.gender.as_str(),
            jenny.language.as_str(),
            jenny.accent.as_str()
        ),
        (
            "en-US-JennyNeural",
            "Jenny",
            "Female",
            "en-US",
            "English (United States)"
        )
    );
    assert_eq!(voices[2].id, "zh-CN-YunxiNeural");
    let again = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(again, voices);
    let listings = fake.listings();
    assert_eq!(
        listings.len(),
        1,
        "the second call is served from the cache"
    );
    assert_eq!(listings[0].uri, "/cognitiveservices/voices/list");
    assert_eq!(listings[0].header("ocp-apim-subscription-key"), Some(KEY));
    // The section's key serves when the host passes none.
    plugin.voices(None).await.unwrap();
    assert_eq!(fake.listings().len(), 1);

    // A zero TTL always asks again.
    let plugin = AzureTts::new();
    let cfg = section(&fake, json!({"voices_ttl_secs": 0}));
    plugin
        .init(&PluginContext::new("test"), &cfg)
        .await
        .unwrap();
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(fake.listings().len(), 3);
}

#[tokio::test]
async fn voices_from_the_last_session_and_listing_errors() {
    let fake = AzureTtsFake::start(KEY).await;
    // No section at init: the listing target comes from the session prepared.
    let plugin = AzureTts::new();
    let e = plugin.voices(Some(Secret::from(KEY))).await.unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e:?}");
    plugin.prepare(&pcm24(&fake)).await.unwrap();
    assert_eq!(plugin.voices(None).await.unwrap().len(), 3);

    let fake = AzureTtsFake::start("other").await;
    let plugin = AzureTts::new();
    plugin
        .init(&PluginContext::new("test"), &section(&fake, json!({})))
        .await
        .unwrap();
    let e = plugin.voices(Some(Secret::from(KEY))).await.unwrap_err();
    assert!(matches!(e, PluginError::Auth(_)), "{e:?}");

    for (fault, want) in [
        (Fault::Garbage, "invalid voice listing"),
        (Fault::status(503, "busy"), "503"),
    ] {
        let fake = start(FakeOptions::new(KEY).voices_fault(fault)).await;
        let plugin = AzureTts::new();
        plugin
            .init(&PluginContext::new("test"), &section(&fake, json!({})))
            .await
            .unwrap();
        let e = plugin.voices(Some(Secret::from(KEY))).await.unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    let fake = start(FakeOptions::new(KEY).voices_fault(Fault::Silent)).await;
    let plugin = AzureTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &section(&fake, json!({"read_timeout_ms": 300})),
        )
        .await
        .unwrap();
    let e = plugin.voices(Some(Secret::from(KEY))).await.unwrap_err();
    assert!(matches!(e, PluginError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = AzureTtsFake::start(KEY).await;
    let plugin = AzureTts::new();
    // No key at all.
    let mut cfg = pcm24(&fake);
    cfg.api_key = None;
    cfg.credentials = Credentials::new();
    let e = plugin.prepare(&cfg).await.unwrap_err();
    assert!(matches!(e, PluginError::Auth(_)), "{e:?}");
    assert!(
        e.to_string().contains("AZURE_SPEECH_SUBSCRIPTION_KEY"),
        "{e}"
    );
    // Formats the service cannot stream.
    for (enc, rate) in [
        (AudioEncoding::Mp3, 8_000),
        (AudioEncoding::Opus, 22_050),
        (AudioEncoding::Linear16, 11_025),
        (AudioEncoding::Wav, 24_000),
        (AudioEncoding::Flac, 24_000),
    ] {
        let e = plugin
            .prepare(&session(&fake, enc, rate, json!({})))
            .await
            .unwrap_err();
        assert!(matches!(e, PluginError::Config(_)), "{enc} {rate}: {e:?}");
    }
    // Neither a region nor a base URL.
    let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_credentials(creds(KEY));
    let e = plugin.prepare(&cfg).await.unwrap_err();
    assert!(e.to_string().contains("region"), "{e}");
    // Bad values.
    for extra in [
        json!({"voice": "<bad>"}),
        json!({"role": "Wizard"}),
        json!({"colour": "blue"}),
        json!({"user_agent": "x".repeat(300)}),
    ] {
        let e = plugin
            .prepare(&session(
                &fake,
                AudioEncoding::Linear16,
                24_000,
                extra.clone(),
            ))
            .await
            .unwrap_err();
        assert!(matches!(e, PluginError::Config(_)), "{extra}: {e:?}");
    }
    let e = plugin
        .prepare(&pcm24(&fake).with_model("bad id!"))
        .await
        .unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e:?}");
    assert!(fake.syntheses().is_empty(), "nothing reached the service");
    // Whitespace-only text is not sent.
    speak(&plugin, &pcm24(&fake), "  \n ").await.unwrap();
    assert!(fake.syntheses().is_empty());
}

#[tokio::test]
async fn the_region_builds_the_production_url() {
    let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_credentials({
        let mut c = creds(KEY);
        c.set("region", Secret::from("westeurope"));
        c
    });
    let plan = waav_azure::tts::settings::plan(&cfg).unwrap();
    assert_eq!(
        plan.url,
        "https://westeurope.tts.speech.microsoft.com/cognitiveservices/v1"
    );
    assert_eq!(
        plan.voices_url,
        "https://westeurope.tts.speech.microsoft.com/cognitiveservices/voices/list"
    );
}

#[test]
fn registered_as_the_tts_plugin_of_the_id() {
    let plugin = AzureTts::new();
    let info = plugin.info();
    assert_eq!((info.id, info.aliases), ("microsoft-azure", &["azure"][..]));
    let fields = info.credential_fields();
    assert!(fields
        .iter()
        .any(|f| f.name == "api_key" && f.required && f.secret));
    assert!(fields
        .iter()
        .any(|f| f.name == "region" && !f.required && !f.secret));
    let caps = plugin.capabilities();
    assert_eq!(caps.encodings[0], AudioEncoding::Linear16);
    assert!(caps.accepts_rate(22_050) && !caps.accepts_rate(11_025));
    let kinds: Vec<_> = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .filter(|h| h.plugin().info().id == "microsoft-azure")
        .map(|h| matches!(h, PluginHandle::Tts(_)))
        .collect();
    assert_eq!(kinds.len(), 2, "STT and TTS");
    assert!(kinds.contains(&true));
}
