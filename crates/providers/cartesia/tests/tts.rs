//! The real Cartesia TTS client against the protocol fake over 127.0.0.1.

use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use waav_cartesia::CartesiaTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, ErrorCategory, Plugin, PluginConfig, PluginContext,
    PluginError, ProviderTask, Secret, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPeer, TtsPlugin,
    TtsSessionConfig, VoiceInfo,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::cartesia::{expected_audio, CartesiaFake, CartesiaOptions, Fault};

const KEY: &str = "test-cartesia-key";
/// Bound on every wait in these tests (a hang guard, not a latency check).
const GUARD: Duration = Duration::from_secs(10);

fn plugin_config(fake: &CartesiaFake, extra: Value) -> PluginConfig {
    let mut m = json!({
        "base_url": fake.base_url(),
        "response_timeout_ms": 3000,
        "connect_timeout_ms": 3000,
    });
    for (k, v) in extra.as_object().expect("object") {
        m[k] = v.clone();
    }
    PluginConfig::from_value("plugins.tts.cartesia", m).expect("config")
}

fn session(fake: &CartesiaFake, enc: AudioEncoding, rate: u32, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, rate)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(plugin_config(fake, extra))
}

fn req(id: u64, text: &str) -> SpeakRequest {
    SpeakRequest {
        id,
        text: text.into(),
        flush: true,
    }
}

/// Runs `synthesize` and collects its audio.
async fn synth(
    plugin: &CartesiaTts,
    cfg: &TtsSessionConfig,
    text: &str,
) -> Result<Vec<u8>, PluginError> {
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let r = tokio::time::timeout(GUARD, plugin.synthesize(cfg, req(1, text), sink))
        .await
        .expect("synthesize hung");
    let mut audio = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            TtsEvent::Audio { id: 1, data } => audio.extend_from_slice(&data),
            other => panic!("unexpected {other:?}"),
        }
    }
    r.map(|()| audio)
}

async fn open(
    plugin: &CartesiaTts,
    cfg: &TtsSessionConfig,
) -> (TtsPeer, tokio::task::JoinHandle<Result<(), PluginError>>) {
    let (io, peer) = TtsIo::pair(64);
    let task: ProviderTask = tokio::time::timeout(GUARD, plugin.open_stream(cfg, io))
        .await
        .expect("open_stream hung")
        .expect("open_stream")
        .expect("a streaming session");
    (peer, tokio::spawn(task))
}

/// Events until `Done`/`Error` for `id`: the audio and how it ended.
async fn until_end(peer: &mut TtsPeer, id: u64) -> (Vec<u8>, Result<(), PluginError>) {
    let mut audio = Vec::new();
    loop {
        match tokio::time::timeout(GUARD, peer.events.recv())
            .await
            .expect("no event")
        {
            Some(TtsEvent::Audio { id: got, data }) => {
                assert_eq!(got, id, "audio for another request");
                audio.extend_from_slice(&data);
            }
            Some(TtsEvent::Done { id: got }) if got == id => return (audio, Ok(())),
            Some(TtsEvent::Error { id: got, error }) if got == id => return (audio, Err(error)),
            other => panic!("unexpected {other:?} while waiting for {id}"),
        }
    }
}

fn body(fake: &CartesiaFake, i: usize) -> Value {
    fake.http_requests()[i].body.clone().expect("a JSON body")
}

#[tokio::test]
async fn rest_request_shape_is_as_documented() {
    let fake = CartesiaFake::start(KEY).await;
    let plugin = CartesiaTts::new();
    let mut cfg = session(
        &fake,
        AudioEncoding::Linear16,
        24_000,
        json!({"language": "en"}),
    )
    .with_voice("voice-123")
    .with_model("sonic-2");
    cfg.speaking_rate = 1.25;
    cfg.emotion.emotion = Some("happy".into());
    cfg.emotion.intensity = Some(0.9);
    synth(&plugin, &cfg, "Hello there.").await.unwrap();
    let r = &fake.http_requests()[0];
    assert_eq!(
        (r.method.as_str(), r.request.uri.as_str()),
        ("POST", "/tts/bytes")
    );
    assert_eq!(r.request.header("x-api-key"), Some(KEY));
    assert_eq!(r.request.header("cartesia-version"), Some("2024-11-13"));
    assert_eq!(r.request.header("authorization"), None);
    assert_eq!(r.request.header("content-type"), Some("application/json"));
    assert_eq!(
        body(&fake, 0),
        json!({
            "model_id": "sonic-2",
            "transcript": "Hello there.",
            "voice": {"mode": "id", "id": "voice-123",
                "__experimental_controls": {"speed": 0.25, "emotion": ["positivity:high"]}},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
            "language": "en",
        })
    );

    // sonic-3: generation_config instead; bearer auth and a newer version when configured.
    let mut cfg = session(
        &fake,
        AudioEncoding::Alaw,
        8_000,
        json!({"auth_scheme": "bearer", "cartesia_version": "2026-03-01", "volume": 1.5}),
    )
    .with_model("sonic-3");
    cfg.speaking_rate = 0.8;
    cfg.emotion.emotion = Some("calm".into());
    synth(&plugin, &cfg, "Hi.").await.unwrap();
    let r = &fake.http_requests()[1];
    assert_eq!(
        r.request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.request.header("x-api-key"), None);
    assert_eq!(r.request.header("cartesia-version"), Some("2026-03-01"));
    assert_eq!(
        body(&fake, 1),
        json!({
            "model_id": "sonic-3",
            "transcript": "Hi.",
            "voice": {"mode": "id", "id": waav_cartesia::tts::DEFAULT_VOICE},
            "generation_config": {"speed": 0.8, "volume": 1.5, "emotion": "calm"},
            "output_format": {"container": "raw", "encoding": "pcm_alaw", "sample_rate": 8000},
        })
    );

    // MP3 goes over REST with a bit rate, and the WebSocket path declines it.
    let cfg = session(
        &fake,
        AudioEncoding::Mp3,
        44_100,
        json!({"mp3_bit_rate": 64000}),
    );
    let audio = synth(&plugin, &cfg, "Hi.").await.unwrap();
    assert_eq!(
        body(&fake, 2)["output_format"],
        json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 64000})
    );
    assert!(!audio.is_empty());
    let (io, _peer) = TtsIo::pair(4);
    assert!(plugin.open_stream(&cfg, io).await.unwrap().is_none());
}

#[tokio::test]
async fn rest_audio_is_byte_exact() {
    let fake = CartesiaFake::start(KEY).await;
    let plugin = CartesiaTts::new();
    for (enc, name, rate) in [
        (AudioEncoding::Linear16, "pcm_s16le", 16_000),
        (AudioEncoding::Mulaw, "pcm_mulaw", 8_000),
        (AudioEncoding::Linear16, "pcm_s16le", 44_100),
    ] {
        let cfg = session(&fake, enc, rate, json!({}));
        let text = "A sentence long enough for several chunks of audio.";
        let audio = synth(&plugin, &cfg, text).await.unwrap();
        assert_eq!(
            audio,
            expected_audio(text, name, rate, 20),
            "{name} at {rate}"
        );
    }
    let n = fake.http_requests().len();
    // Whitespace is not sent at all.
    assert!(synth(
        &plugin,
        &session(&fake, AudioEncoding::Linear16, 16_000, json!({})),
        "  "
    )
    .await
    .unwrap()
    .is_empty());
    assert_eq!(fake.http_requests().len(), n);
}

#[tokio::test]
async fn rest_first_chunk_arrives_before_the_rest_is_sent() {
    let fake =
        CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::HoldAfterFirstChunk))
            .await;
    let plugin = std::sync::Arc::new(CartesiaTts::new());
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let text = "Several chunks of audio, held after the first one.";
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let (p, c) = (plugin.clone(), cfg.clone());
    let task = tokio::spawn(async move { p.synthesize(&c, req(1, text), sink).await });
    let Some(TtsEvent::Audio { data: first, .. }) =
        tokio::time::timeout(GUARD, rx.recv()).await.unwrap()
    else {
        panic!("no first chunk")
    };
    let log = fake.http_requests()[0].clone();
    assert_eq!(log.chunks_sent, 1, "the fake is still holding the rest");
    assert!(!log.finished);
    fake.release();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = first.to_vec();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
    }
    assert_eq!(audio, expected_audio(text, "pcm_s16le", 16_000, 20));
}

#[tokio::test]
async fn rest_cancel_stops_reading() {
    let fake =
        CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::HoldAfterFirstChunk))
            .await;
    let plugin = std::sync::Arc::new(CartesiaTts::new());
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let text = "A long text that would take many chunks to stream to the end. ".repeat(5);

    // 1. The host's cancel flag: the next chunk is refused and the body dropped.
    let (tx, mut rx) = mpsc::channel(1024);
    let flag = CancelFlag::new();
    let sink = AudioSink::new(1, tx, flag.clone());
    let (p, c, t) = (plugin.clone(), cfg.clone(), text.clone());
    let task = tokio::spawn(async move { p.synthesize(&c, req(1, &t), sink).await });
    assert!(matches!(
        tokio::time::timeout(GUARD, rx.recv()).await.unwrap(),
        Some(TtsEvent::Audio { .. })
    ));
    flag.cancel_up_to(1);
    fake.release();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        fake.wait_until(GUARD, |f| f.http_requests()[0].dropped)
            .await,
        "the fake never saw the connection go: {:?}",
        fake.http_requests()[0]
    );
    assert!(!fake.http_requests()[0].finished);

    // 2. The host drops the future.
    let fake =
        CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::HoldAfterFirstChunk))
            .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (tx, mut rx) = mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let (p, c) = (plugin.clone(), cfg.clone());
    let task = tokio::spawn(async move { p.synthesize(&c, req(1, &text), sink).await });
    assert!(matches!(
        tokio::time::timeout(GUARD, rx.recv()).await.unwrap(),
        Some(TtsEvent::Audio { .. })
    ));
    task.abort();
    assert!(
        fake.wait_until(GUARD, |f| f.http_requests()[0].dropped)
            .await
    );
}

async fn rest_error(fault: Fault, extra: Value) -> PluginError {
    let fake = CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(fault)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, extra);
    synth(&CartesiaTts::new(), &cfg, "Hello there.")
        .await
        .unwrap_err()
}

#[tokio::test]
async fn rest_errors_are_categorised() {
    // Wrong key.
    let fake = CartesiaFake::start("another-key").await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let e = synth(&CartesiaTts::new(), &cfg, "Hi").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("Invalid API key"), "{e}");
    assert!(!e.to_string().contains(KEY), "{e}");

    let e = rest_error(
        Fault::Status {
            status: 429,
            headers: vec![("retry-after".into(), "3".into())],
            body: None,
        },
        json!({}),
    )
    .await;
    assert_eq!(
        e,
        PluginError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            message: "cartesia: HTTP 429 Too Many Requests: Too Many Requests: injected failure"
                .into()
        }
    );
    // The 2026-03-01 JSON error shape is read for its message.
    let e = rest_error(
        Fault::GenerationError {
            status: 400,
            message: "Invalid voice ID".into(),
        },
        json!({"cartesia_version": "2026-03-01"}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(
        e.to_string().contains("Bad Request: Invalid voice ID"),
        "{e}"
    );
    let e = rest_error(
        Fault::GenerationError {
            status: 400,
            message: "transcript contains no speakable text".into(),
        },
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
    let e = rest_error(
        Fault::Status {
            status: 500,
            headers: vec![],
            body: Some("boom".into()),
        },
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    // Garbage (JSON where audio should be), a truncated body, a silent vendor.
    let e = rest_error(Fault::Garbage, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
    let e = rest_error(Fault::Truncate { after_chunks: 2 }, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    let e = rest_error(Fault::Silent, json!({"response_timeout_ms": 300})).await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = CartesiaFake::start(KEY).await;
    let plugin = CartesiaTts::new();
    let no_key = session(&fake, AudioEncoding::Linear16, 16_000, json!({})).with_api_key(None);
    assert_eq!(
        plugin.prepare(&no_key).await.unwrap_err().category(),
        ErrorCategory::Auth
    );
    for cfg in [
        session(&fake, AudioEncoding::Opus, 16_000, json!({})),
        session(&fake, AudioEncoding::Wav, 16_000, json!({})),
        session(&fake, AudioEncoding::Linear16, 11_025, json!({})),
        session(
            &fake,
            AudioEncoding::Linear16,
            16_000,
            json!({"base_url": "ftp://nope"}),
        ),
        session(&fake, AudioEncoding::Linear16, 16_000, json!({"volume": 9})),
    ] {
        let e = plugin.prepare(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    }
    let (io, _peer) = TtsIo::pair(4);
    let e = plugin
        .open_stream(&no_key, io)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.category(), ErrorCategory::Auth);
    assert_eq!(fake.request_count(), 0);
    plugin
        .prepare(&session(&fake, AudioEncoding::Mulaw, 8_000, json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_request_shape_and_audio() {
    let fake = CartesiaFake::start(KEY).await;
    let plugin = CartesiaTts::new();
    let mut cfg = session(
        &fake,
        AudioEncoding::Mulaw,
        8_000,
        json!({"add_timestamps": true, "max_buffer_delay_ms": 100, "language": "en"}),
    )
    .with_voice("voice-9");
    cfg.speaking_rate = 1.5;
    let (mut peer, task) = open(&plugin, &cfg).await;
    let up = &fake.ws_upgrades()[0];
    assert_eq!(up.path(), "/tts/websocket");
    assert_eq!(up.query("api_key"), Some(KEY));
    assert_eq!(up.query("cartesia_version"), Some("2024-11-13"));
    let text = "Hello over the socket.";
    peer.input
        .send(TtsInput::Speak(req(7, text)))
        .await
        .unwrap();
    let (audio, end) = until_end(&mut peer, 7).await;
    end.unwrap();
    assert_eq!(audio, expected_audio(text, "pcm_mulaw", 8_000, 20));
    let mut sent = fake.ws_sessions()[0].received[0].clone();
    let ctx = sent["context_id"].as_str().unwrap().to_owned();
    assert!(ctx.starts_with("waav-") && ctx.ends_with("-7-0"), "{ctx}");
    sent["context_id"] = json!("X");
    assert_eq!(
        sent,
        json!({
            "model_id": "sonic-2",
            "transcript": text,
            "voice": {"mode": "id", "id": "voice-9", "__experimental_controls": {"speed": 0.5}},
            "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
            "language": "en",
            "context_id": "X",
            "continue": false,
            "add_timestamps": true,
            "max_buffer_delay_ms": 100,
        })
    );
    assert_eq!(fake.ws_sessions()[0].completed, [ctx]);
    // Closing the input ends the session with a closing handshake.
    drop(peer);
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        fake.wait_until(GUARD, |f| f.ws_sessions()[0].client_closed)
            .await
    );
}

#[tokio::test]
async fn websocket_bearer_auth_puts_the_key_in_a_header() {
    let fake = CartesiaFake::start(KEY).await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"auth_scheme": "bearer"}),
    );
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    let up = &fake.ws_upgrades()[0];
    assert_eq!(up.query("api_key"), None);
    assert_eq!(
        up.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    peer.input
        .send(TtsInput::Speak(req(1, "Hi.")))
        .await
        .unwrap();
    until_end(&mut peer, 1).await.1.unwrap();
}

#[tokio::test]
async fn websocket_first_chunk_arrives_before_the_rest_is_sent() {
    let fake =
        CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::HoldAfterFirstChunk))
            .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    let text = "Several chunks, the rest held by the fake.";
    peer.input
        .send(TtsInput::Speak(req(1, text)))
        .await
        .unwrap();
    let Some(TtsEvent::Audio { id: 1, data: first }) =
        tokio::time::timeout(GUARD, peer.events.recv())
            .await
            .unwrap()
    else {
        panic!("no first chunk")
    };
    assert_eq!(fake.ws_sessions()[0].chunks_sent, 1);
    fake.release();
    let (rest, end) = until_end(&mut peer, 1).await;
    end.unwrap();
    assert_eq!(
        [first.to_vec(), rest].concat(),
        expected_audio(text, "pcm_s16le", 16_000, 20)
    );
}

#[tokio::test]
async fn websocket_cancel_sends_the_vendor_cancel() {
    let fake =
        CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::HoldAfterFirstChunk))
            .await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"prefetch": 0}),
    );
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    peer.input
        .send(TtsInput::Speak(req(1, &"Long text. ".repeat(20))))
        .await
        .unwrap();
    assert!(matches!(
        tokio::time::timeout(GUARD, peer.events.recv())
            .await
            .unwrap(),
        Some(TtsEvent::Audio { id: 1, .. })
    ));
    peer.input
        .send(TtsInput::Cancel { up_to: 1 })
        .await
        .unwrap();
    peer.input
        .send(TtsInput::Speak(req(2, "Next.")))
        .await
        .unwrap();
    assert!(
        fake.wait_until(GUARD, |f| !f.ws_sessions()[0].cancels.is_empty())
            .await
    );
    let s = fake.ws_sessions()[0].clone();
    assert_eq!(s.cancels[0], s.received[0]["context_id"].as_str().unwrap());
    assert_eq!(
        s.received[1],
        json!({"context_id": s.cancels[0], "cancel": true})
    );
    fake.release();
    // Nothing more for request 1; request 2 plays in full.
    let (audio, end) = until_end(&mut peer, 2).await;
    end.unwrap();
    assert_eq!(audio, expected_audio("Next.", "pcm_s16le", 16_000, 20));
    assert_eq!(fake.ws_upgrades().len(), 1, "one socket for the session");
}

#[tokio::test]
async fn websocket_requests_keep_order_with_prefetch() {
    let fake = CartesiaFake::with_options(CartesiaOptions {
        chunk_delay: Duration::from_millis(2),
        ..CartesiaOptions::new(KEY)
    })
    .await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"prefetch": 2}),
    );
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    let texts = [
        "The first and longest sentence of the three.",
        "Second.",
        "Third one.",
    ];
    for (i, t) in texts.iter().enumerate() {
        peer.input
            .send(TtsInput::Speak(req(i as u64 + 1, t)))
            .await
            .unwrap();
    }
    for (i, t) in texts.iter().enumerate() {
        let (audio, end) = until_end(&mut peer, i as u64 + 1).await;
        end.unwrap();
        assert_eq!(
            audio,
            expected_audio(t, "pcm_s16le", 16_000, 20),
            "request {}",
            i + 1
        );
    }
    assert_eq!(fake.ws_sessions()[0].completed.len(), 3);
}

#[tokio::test]
async fn websocket_reconnects_lazily_after_the_vendor_closes() {
    let fake = CartesiaFake::with_options(CartesiaOptions {
        close_after_contexts: Some(1),
        ..CartesiaOptions::new(KEY)
    })
    .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    peer.input
        .send(TtsInput::Speak(req(1, "One.")))
        .await
        .unwrap();
    until_end(&mut peer, 1).await.1.unwrap();
    assert!(fake.wait_until(GUARD, |f| f.ws_sessions()[0].ended).await);
    // Give the client a moment to notice the close before the next request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.input
        .send(TtsInput::Speak(req(2, "Two.")))
        .await
        .unwrap();
    let (audio, end) = until_end(&mut peer, 2).await;
    end.unwrap();
    assert_eq!(audio, expected_audio("Two.", "pcm_s16le", 16_000, 20));
    assert_eq!(fake.ws_upgrades().len(), 2);
}

#[tokio::test]
async fn websocket_idle_close_between_requests_is_survived() {
    let fake = CartesiaFake::with_options(CartesiaOptions {
        idle_close: Some(Duration::from_millis(100)),
        ..CartesiaOptions::new(KEY)
    })
    .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    assert!(
        fake.wait_until(GUARD, |f| f.ws_sessions().first().is_some_and(|s| s.ended))
            .await
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.input
        .send(TtsInput::Speak(req(1, "After idle.")))
        .await
        .unwrap();
    until_end(&mut peer, 1).await.1.unwrap();
}

async fn ws_failure(fault: Fault, extra: Value) -> (Vec<u8>, PluginError) {
    let fake = CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(fault)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, extra);
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    peer.input
        .send(TtsInput::Speak(req(1, &"Some words. ".repeat(10))))
        .await
        .unwrap();
    let (audio, end) = until_end(&mut peer, 1).await;
    (audio, end.unwrap_err())
}

#[tokio::test]
async fn websocket_errors_are_categorised() {
    // Refused upgrades.
    let fake = CartesiaFake::start("another-key").await;
    let (io, _peer) = TtsIo::pair(4);
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let e = CartesiaTts::new()
        .open_stream(&cfg, io)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains(KEY), "{e}");
    let fake = CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::Status {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        body: None,
    }))
    .await;
    let (io, _peer) = TtsIo::pair(4);
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let e = CartesiaTts::new()
        .open_stream(&cfg, io)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
        "{e:?}"
    );

    // Error messages, old and new shapes.
    let (_, e) = ws_failure(
        Fault::GenerationError {
            status: 400,
            message: "Invalid voice ID".into(),
        },
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("Invalid voice ID"), "{e}");
    let (_, e) = ws_failure(
        Fault::GenerationError {
            status: 429,
            message: "Too many concurrent requests".into(),
        },
        json!({"cartesia_version": "2026-03-01"}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    let (_, e) = ws_failure(
        Fault::GenerationError {
            status: 500,
            message: "boom".into(),
        },
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");

    // A connection dropped or closed mid-request after audio went out; a silent vendor.
    let (audio, e) = ws_failure(Fault::Truncate { after_chunks: 2 }, json!({})).await;
    assert!(!audio.is_empty());
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    let (_, e) = ws_failure(
        Fault::CloseAfterChunks {
            after_chunks: 1,
            code: 1011,
        },
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    let (audio, e) = ws_failure(Fault::Silent, json!({"response_timeout_ms": 300})).await;
    assert!(audio.is_empty());
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn websocket_garbage_is_skipped() {
    let fake = CartesiaFake::with_options(CartesiaOptions::new(KEY).fault(Fault::Garbage)).await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (mut peer, task) = open(&CartesiaTts::new(), &cfg).await;
    let text = "Garbage around every chunk.";
    peer.input
        .send(TtsInput::Speak(req(1, text)))
        .await
        .unwrap();
    let (audio, end) = until_end(&mut peer, 1).await;
    end.unwrap();
    assert_eq!(audio, expected_audio(text, "pcm_s16le", 16_000, 20));
    drop(peer);
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn websocket_resends_a_prefetched_request_whose_connection_closed() {
    // The vendor closes the socket (1011) after 6 chunks, interleaved between the two contexts:
    // request 1's audio had started, so it fails; request 2 was sent ahead and part of its audio
    // held, none emitted, so it is sent again on a fresh socket (a new context attempt, 5 chunks,
    // under the limit) and the host gets exactly its audio, once.
    let fake = CartesiaFake::with_options(CartesiaOptions {
        chunk_delay: Duration::from_millis(3),
        ..CartesiaOptions::new(KEY).fault(Fault::CloseAfterChunks {
            after_chunks: 6,
            code: 1011,
        })
    })
    .await;
    let cfg = session(
        &fake,
        AudioEncoding::Linear16,
        16_000,
        json!({"prefetch": 1}),
    );
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    let (one, two) = (&"A long first sentence. ".repeat(4), "Ten chars!");
    peer.input.send(TtsInput::Speak(req(1, one))).await.unwrap();
    peer.input.send(TtsInput::Speak(req(2, two))).await.unwrap();
    let (audio, end) = until_end(&mut peer, 1).await;
    assert!(!audio.is_empty());
    assert_eq!(end.unwrap_err().category(), ErrorCategory::Transient);
    let (audio, end) = until_end(&mut peer, 2).await;
    end.unwrap_or_else(|e| panic!("{e}: {:#?}", fake.ws_sessions()));
    assert_eq!(audio, expected_audio(two, "pcm_s16le", 16_000, 20));
    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        sessions[0].received.len(),
        2,
        "request 2 was sent ahead on the first socket"
    );
    let ctx = sessions[1].received[0]["context_id"].as_str().unwrap();
    assert!(ctx.ends_with("-2-1"), "a new attempt: {ctx}");
}

#[tokio::test]
async fn websocket_fails_a_request_whose_audio_had_started() {
    // Dropped after the first chunk on every socket: request 1 fails (its audio went out and
    // cannot be replayed); the next request dials a fresh socket.
    let fake = CartesiaFake::with_options(
        CartesiaOptions::new(KEY).fault(Fault::Truncate { after_chunks: 1 }),
    )
    .await;
    let cfg = session(&fake, AudioEncoding::Linear16, 16_000, json!({}));
    let (mut peer, _task) = open(&CartesiaTts::new(), &cfg).await;
    peer.input
        .send(TtsInput::Speak(req(1, &"Words. ".repeat(10))))
        .await
        .unwrap();
    let (audio, e) = until_end(&mut peer, 1).await;
    assert!(!audio.is_empty());
    assert_eq!(e.unwrap_err().category(), ErrorCategory::Transient);
    peer.input
        .send(TtsInput::Speak(req(2, "Later on.")))
        .await
        .unwrap();
    let (_, e) = until_end(&mut peer, 2).await;
    assert_eq!(e.unwrap_err().category(), ErrorCategory::Transient);
    assert_eq!(fake.ws_upgrades().len(), 2);
}

/// A fault to register: the fake's options, extra plugin config, what the plugin must make of it.
type FaultCase = (&'static str, CartesiaOptions, Value, FaultOutcome);

fn with(fault: Fault) -> CartesiaOptions {
    CartesiaOptions::new(KEY).fault(fault)
}

fn status_fault(status: u16, headers: &[(&str, &str)], body: Option<&str>) -> Fault {
    Fault::Status {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.map(str::to_owned),
    }
}

fn generation_error(status: u16, message: &str) -> Fault {
    Fault::GenerationError {
        status,
        message: message.into(),
    }
}

/// The faults both paths share: refusals and the vendor's generation errors.
fn shared_faults() -> Vec<FaultCase> {
    use ErrorCategory::*;
    vec![
        (
            "wrong key",
            CartesiaOptions::new("another-key"),
            json!({}),
            FaultOutcome::Fails(Auth),
        ),
        (
            "429",
            with(status_fault(429, &[("retry-after", "2")], None)),
            json!({}),
            FaultOutcome::Fails(RateLimited),
        ),
        (
            "500",
            with(status_fault(500, &[], Some("boom"))),
            json!({}),
            FaultOutcome::Fails(Transient),
        ),
        (
            "vendor error 400 invalid voice",
            with(generation_error(400, "Invalid voice ID")),
            json!({"cartesia_version": "2026-03-01"}),
            FaultOutcome::Fails(Config),
        ),
        (
            "vendor error 400 transcript",
            with(generation_error(
                400,
                "transcript contains no speakable text",
            )),
            json!({}),
            FaultOutcome::Fails(Permanent),
        ),
        (
            "vendor error 429",
            with(generation_error(429, "Too many concurrent requests")),
            json!({"cartesia_version": "2026-03-01"}),
            FaultOutcome::Fails(RateLimited),
        ),
        (
            "vendor error 500",
            with(generation_error(500, "boom")),
            json!({}),
            FaultOutcome::Fails(Transient),
        ),
        (
            "dropped mid-audio",
            with(Fault::Truncate { after_chunks: 1 }),
            json!({}),
            FaultOutcome::Fails(Transient),
        ),
        (
            "silent",
            with(Fault::Silent),
            json!({"response_timeout_ms": 300}),
            FaultOutcome::Fails(Timeout),
        ),
    ]
}

/// Registers `cases` on `fixture`, each against its own fake (returned: they must outlive the
/// suite).
async fn with_faults(
    mut fixture: TtsFixture,
    cases: Vec<FaultCase>,
) -> (TtsFixture, Vec<(&'static str, CartesiaFake)>) {
    let mut fakes = Vec::new();
    for (name, opts, extra, outcome) in cases {
        let fake = CartesiaFake::with_options(opts).await;
        let s = session(&fake, AudioEncoding::Linear16, 24_000, extra);
        fixture = fixture.fault(name, s, outcome);
        fakes.push((name, fake));
    }
    (fixture, fakes)
}

#[tokio::test]
async fn conformance_streaming_and_rest() {
    let fake = CartesiaFake::with_options(CartesiaOptions {
        chunk_delay: Duration::from_millis(1),
        ..CartesiaOptions::new(KEY)
    })
    .await;
    let plugin = CartesiaTts::new();
    let fixture =
        TtsFixture::new(session(&fake, AudioEncoding::Linear16, 24_000, json!({}))).guard(GUARD);
    let mut streaming = shared_faults();
    streaming.extend([
        (
            "close 1011 mid-audio",
            with(Fault::CloseAfterChunks {
                after_chunks: 1,
                code: 1011,
            }),
            json!({}),
            FaultOutcome::Fails(ErrorCategory::Transient),
        ),
        // Closed (1000) after each context: the next request redials (or is sent again).
        (
            "closed between requests",
            CartesiaOptions {
                close_after_contexts: Some(1),
                ..CartesiaOptions::new(KEY)
            },
            json!({}),
            FaultOutcome::Recovers,
        ),
        // Malformed frames around the real ones are skipped.
        (
            "garbage",
            with(Fault::Garbage),
            json!({}),
            FaultOutcome::Recovers,
        ),
    ]);
    let (ws_fixture, ws_fakes) = with_faults(fixture.clone(), streaming).await;
    check_tts(&plugin, &ws_fixture).await.assert_ok();
    assert!(!fake.ws_sessions().is_empty(), "the streaming path ran");
    assert!(ws_fakes.iter().all(|(_, f)| f.http_requests().is_empty()));
    assert!(ws_fakes.iter().all(|(_, f)| !f.ws_upgrades().is_empty()));
    let (_, closing) = ws_fakes
        .iter()
        .find(|(n, _)| *n == "closed between requests")
        .unwrap();
    assert!(
        closing.ws_upgrades().len() >= 2,
        "the vendor's close was seen"
    );
    let mut rest = shared_faults();
    // A 200 with JSON where the audio should be.
    rest.push((
        "garbage",
        with(Fault::Garbage),
        json!({}),
        FaultOutcome::Fails(ErrorCategory::Permanent),
    ));
    let (rest_fixture, rest_fakes) = with_faults(fixture.clone(), rest).await;
    check_tts(&RestOnly(plugin), &rest_fixture)
        .await
        .assert_ok();
    assert!(!fake.http_requests().is_empty(), "the REST path ran");
    assert!(rest_fakes.iter().all(|(_, f)| f.ws_sessions().is_empty()));
    assert!(rest_fakes
        .iter()
        .all(|(_, f)| !f.http_requests().is_empty()));
    let fixture =
        TtsFixture::new(session(&fake, AudioEncoding::Mulaw, 8_000, json!({}))).guard(GUARD);
    check_tts(&CartesiaTts::new(), &fixture).await.assert_ok();
}

/// The plugin without its streaming session, so the host (and the suite) drive `synthesize`.
struct RestOnly(CartesiaTts);

impl Plugin for RestOnly {
    fn info(&self) -> waav_plugin_api::PluginInfo {
        self.0.info()
    }
}

#[async_trait::async_trait]
impl TtsPlugin for RestOnly {
    async fn prepare(&self, c: &TtsSessionConfig) -> Result<(), PluginError> {
        self.0.prepare(c).await
    }

    async fn synthesize(
        &self,
        c: &TtsSessionConfig,
        r: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        self.0.synthesize(c, r, out).await
    }
}

fn many_voices(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("voice-{i:03}"), "name": format!("Voice {i}"), "description": "",
            "language": "en", "is_owner": false, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect()
}

#[tokio::test]
async fn voices_are_listed_mapped_and_cached() {
    let fake = CartesiaFake::start(KEY).await;
    let plugin = CartesiaTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &plugin_config(&fake, json!({})),
        )
        .await
        .unwrap();
    let voices = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(
        voices[1],
        VoiceInfo {
            id: "6ccbfb76-1fc6-48f7-b71d-91ac6298247b".into(),
            sample: "Warm female voice".into(),
            name: "Tessa".into(),
            accent: String::new(),
            gender: "feminine".into(),
            language: "en".into(),
        }
    );
    assert_eq!(voices[2].sample, "https://example.invalid/klaus.wav");
    assert_eq!(voices.len(), 3);
    let r = &fake.http_requests()[0];
    assert_eq!(r.request.uri, "/voices?limit=100");
    assert_eq!(r.request.header("x-api-key"), Some(KEY));
    assert_eq!(r.request.header("cartesia-version"), Some("2024-11-13"));
    assert_eq!(
        plugin.voices(Some(Secret::from(KEY))).await.unwrap(),
        voices
    );
    assert_eq!(
        fake.voices_requests(),
        1,
        "the second listing came from the cache"
    );
    assert_eq!(
        plugin.voices(None).await.unwrap_err().category(),
        ErrorCategory::Auth
    );

    // Pagination with starting_after; a TTL of 0 always refetches.
    let fake = CartesiaFake::with_options(CartesiaOptions {
        voices: many_voices(250),
        ..CartesiaOptions::new(KEY)
    })
    .await;
    let plugin = CartesiaTts::new();
    plugin
        .init(
            &PluginContext::new("test"),
            &plugin_config(&fake, json!({"voices_ttl_secs": 0})),
        )
        .await
        .unwrap();
    let voices = plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(voices.len(), 250);
    assert_eq!(voices[249].id, "voice-249");
    let uris: Vec<String> = fake
        .http_requests()
        .iter()
        .map(|r| r.request.uri.clone())
        .collect();
    assert_eq!(
        uris,
        [
            "/voices?limit=100",
            "/voices?limit=100&starting_after=voice-099",
            "/voices?limit=100&starting_after=voice-199"
        ]
    );
    plugin.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(fake.voices_requests(), 6);
    // A wrong key.
    let e = plugin.voices(Some(Secret::from("nope"))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
}
