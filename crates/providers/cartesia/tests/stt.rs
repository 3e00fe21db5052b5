//! The real Cartesia STT client against the protocol fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_cartesia::CartesiaStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, Plugin, PluginConfig, PluginContext, PluginError,
    Secret, SttEvent, SttInput, SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript, VadEvent,
};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::cartesia_stt::{AuthFailure, CartesiaSttFake, CartesiaSttOptions};
use waav_testkit::fakes::Reject;

const KEY: &str = "test-cartesia-key";
const GUARD: Duration = Duration::from_secs(10);

fn config(fake: &CartesiaSttFake, key: &str, plugin: Value) -> SttSessionConfig {
    let mut section = json!({"base_url": fake.base_url()});
    for (k, v) in plugin.as_object().cloned().unwrap_or_default() {
        section[k] = v;
    }
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(key));
    SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(key)))
        .with_credentials(creds)
        .with_plugin_config(PluginConfig::from_value("plugins.stt.cartesia", section).unwrap())
}

type Task = JoinHandle<Result<(), PluginError>>;

async fn open(cfg: SttSessionConfig) -> Result<(SttPeer, Task), PluginError> {
    let (io, peer) = SttIo::pair(64);
    let task = tokio::time::timeout(GUARD, CartesiaStt::new().connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok((peer, tokio::spawn(task)))
}

/// `ms` of PCM16 at 16 kHz (a ramp, so byte order mistakes show).
fn pcm(ms: usize, seed: u8) -> Vec<u8> {
    (0..ms * 16)
        .flat_map(|i| ((i as i16).wrapping_mul(31).wrapping_add(i16::from(seed))).to_le_bytes())
        .collect()
}

async fn send_audio(peer: &SttPeer, audio: &[u8], chunk: usize) {
    for c in audio.chunks(chunk) {
        peer.input
            .send(SttInput::Audio(Bytes::copy_from_slice(c)))
            .await
            .unwrap();
    }
}

async fn until(peer: &mut SttPeer, mut done: impl FnMut(&SttEvent) -> bool) -> Vec<SttEvent> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(GUARD, async {
        while let Some(ev) = peer.events.recv().await {
            let stop = done(&ev);
            seen.push(ev);
            if stop {
                break;
            }
        }
    })
    .await;
    seen
}

fn transcripts(events: &[SttEvent]) -> Vec<&Transcript> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) => Some(&**t),
            _ => None,
        })
        .collect()
}

fn is_final(e: &SttEvent) -> bool {
    matches!(e, SttEvent::Transcript(t) if t.is_final)
}

async fn ended(task: Task) -> Result<(), PluginError> {
    tokio::time::timeout(GUARD, task)
        .await
        .expect("the task hung")
        .expect("the task panicked")
}

async fn task_error(task: Task) -> PluginError {
    ended(task).await.expect_err("the task should fail")
}

/// Closes the input and collects the remaining events until the task ends.
async fn close_and_drain(peer: SttPeer, task: Task) -> (Vec<SttEvent>, Result<(), PluginError>) {
    let SttPeer { input, mut events } = peer;
    drop(input);
    let mut rest = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, events.recv()).await {
        rest.push(ev);
    }
    (rest, ended(task).await)
}

#[tokio::test]
async fn url_query_and_auth_headers_are_as_documented() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let cfg = config(
        &fake,
        KEY,
        json!({"min_volume": 0.2, "max_silence_duration_secs": 0.8, "keyterm": ["WaaV", "Ink Whisper"]}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    close_and_drain(peer, task).await.1.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path(), "/stt/websocket");
    assert_eq!(req.query("model"), Some("ink-whisper"));
    assert_eq!(req.query("language"), Some("en"));
    assert_eq!(req.query("encoding"), Some("pcm_s16le"));
    assert_eq!(req.query("sample_rate"), Some("16000"));
    assert_eq!(req.query("min_volume"), Some("0.2"));
    assert_eq!(req.query("max_silence_duration_secs"), Some("0.8"));
    assert!(
        req.uri.contains("keyterm=WaaV&keyterm=Ink+Whisper"),
        "{}",
        req.uri
    );
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("cartesia-version"), Some("2024-11-13"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.query("api_key"), None, "the key stays out of the URL");

    // Bearer with a newer version; mulaw at 8 kHz; ink-2.
    let mut cfg = config(
        &fake,
        KEY,
        json!({"auth_scheme": "bearer", "cartesia_version": "2026-03-01", "model": "ink-2"}),
    );
    cfg.encoding = AudioEncoding::Mulaw;
    cfg.sample_rate = 8_000;
    let (peer, task) = open(cfg).await.unwrap();
    close_and_drain(peer, task).await.1.unwrap();
    let req = &fake.requests()[1];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("cartesia-version"), Some("2026-03-01"));
    assert_eq!(req.query("model"), Some("ink-2"));
    assert_eq!(req.query("encoding"), Some("pcm_mulaw"));
    assert_eq!(req.query("sample_rate"), Some("8000"));

    // The SDK 2.x style: key and version in the query.
    let cfg = config(&fake, KEY, json!({"auth_scheme": "query"}));
    let (peer, task) = open(cfg).await.unwrap();
    close_and_drain(peer, task).await.1.unwrap();
    let req = &fake.requests()[2];
    assert_eq!(req.query("api_key"), Some(KEY));
    assert_eq!(req.query("cartesia_version"), Some("2024-11-13"));
}

#[tokio::test]
async fn audio_reaches_the_vendor_byte_exact() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    let mut sent = pcm(300, 1);
    send_audio(&peer, &sent, 640).await;
    let odd = pcm(20, 2);
    send_audio(&peer, &odd[..333], 333).await;
    sent.extend_from_slice(&odd[..333]);
    peer.input.send(SttInput::Finalize).await.unwrap();
    until(&mut peer, is_final).await;
    close_and_drain(peer, task).await.1.unwrap();
    let s = &fake.sessions()[0];
    assert_eq!(s.audio, sent, "audio changed on the way");
    assert_eq!(s.chunk_sizes.last(), Some(&333), "frames go as they come");
}

#[tokio::test]
async fn interims_and_finals_map_to_transcripts() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(300, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    assert_eq!(events[0], SttEvent::SpeechStarted);
    let ts = transcripts(&events);
    let (fin, interims) = ts.split_last().unwrap();
    assert_eq!(
        interims.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        ["w1", "w1 w2", "w1 w2 w3"]
    );
    assert!(interims.iter().all(|t| !t.is_final));
    assert_eq!(fin.text, "w1 w2 w3");
    assert!(fin.is_final && fin.is_speech_final);
    assert_eq!(fin.words.len(), 3);
    assert_eq!(fin.words[1].word, "w2");
    assert!((fin.words[1].start - 0.1).abs() < 1e-9);
    assert!((fin.words[1].end - 0.18).abs() < 1e-9);
    assert_eq!(fin.language.as_deref(), Some("en"));
    assert_eq!(fin.confidence, 0.0, "the vendor reports none");

    // The next segment's delta has a leading space on the wire; the transcript does not.
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "w1 w2");
    assert!((fin.words[0].start - 0.3).abs() < 1e-9, "{:?}", fin.words);
    close_and_drain(peer, task).await.1.unwrap();
}

#[tokio::test]
async fn vendor_endpointing_and_host_vad_produce_finals() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        auto_final_after_ms: Some(200),
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    let events = until(&mut peer, is_final).await;
    assert!(transcripts(&events).last().unwrap().is_speech_final);
    close_and_drain(peer, task).await.1.unwrap();
    assert!(!fake.sessions()[0].texts.contains(&"finalize".to_owned()));

    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input
        .send(SttInput::Vad(VadEvent::SpeechEnded { at_ms: 200 }))
        .await
        .unwrap();
    let events = until(&mut peer, is_final).await;
    assert!(transcripts(&events).last().unwrap().is_final);
    close_and_drain(peer, task).await.1.unwrap();
    assert_eq!(fake.sessions()[0].texts[0], "finalize");
}

#[tokio::test]
async fn finalize_and_close_commands_follow_the_api_version() {
    for (version, command) in [("2024-11-13", "done"), ("2026-03-01", "close")] {
        let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
        let (mut peer, task) = open(config(&fake, KEY, json!({"cartesia_version": version})))
            .await
            .unwrap();
        send_audio(&peer, &pcm(100, 0), 640).await;
        peer.input.send(SttInput::Finalize).await.unwrap();
        until(&mut peer, is_final).await;
        // Nothing new since: a second Finalize sends nothing.
        peer.input.send(SttInput::Finalize).await.unwrap();
        send_audio(&peer, &pcm(200, 0), 640).await;
        // Closing: the close command flushes the rest, `done` ends the task cleanly.
        let (rest, result) = close_and_drain(peer, task).await;
        result.unwrap_or_else(|e| panic!("{version}: {e}"));
        let fin = *transcripts(&rest).last().unwrap();
        assert_eq!(fin.text, "w1 w2", "{version}");
        let s = &fake.sessions()[0];
        assert_eq!(s.texts, ["finalize", command], "{version}");
    }
    // An explicit override wins over the version.
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let (peer, task) = open(config(
        &fake,
        KEY,
        json!({"cartesia_version": "2026-03-01", "close_command": "done"}),
    ))
    .await
    .unwrap();
    // The fake refuses `done` on the newer version with an error.
    let (_, result) = close_and_drain(peer, task).await;
    assert_eq!(result.unwrap_err().category(), ErrorCategory::Config);
    assert_eq!(fake.sessions()[0].texts, ["done"]);
}

#[tokio::test]
async fn websocket_pings_keep_the_socket_alive() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let (peer, task) = open(config(
        &fake,
        KEY,
        json!({"ping_interval_ms": 50, "idle_timeout_ms": 2000}),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while fake.sessions()[0].pings < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.sessions()[0].pings >= 3);
    assert!(!task.is_finished());
    close_and_drain(peer, task).await.1.unwrap();
}

#[tokio::test]
async fn auth_and_rate_limit_refusals_are_categorised() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let e = open(config(&fake, "wrong-key", json!({})))
        .await
        .expect_err("refused");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    // Refused after the upgrade, with an error message (newer shape: status 401).
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        auth_failure: AuthFailure::Message,
        ..Default::default()
    })
    .await;
    let cfg = config(
        &fake,
        "wrong-key",
        json!({"cartesia_version": "2026-03-01"}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    assert_eq!(task_error(task).await.category(), ErrorCategory::Auth);
    drop(peer);
    // Older shape: message only.
    let (peer, task) = open(config(&fake, "wrong-key", json!({}))).await.unwrap();
    assert_eq!(task_error(task).await.category(), ErrorCategory::Auth);
    drop(peer);

    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        reject: Some(Reject::status(429).header("retry-after", "3")),
        ..Default::default()
    })
    .await;
    match open(config(&fake, KEY, json!({}))).await {
        Err(PluginError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)))
        }
        other => panic!("{:?}", other.err()),
    }
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        reject: Some(Reject::status(402)),
        ..Default::default()
    })
    .await;
    let e = open(config(&fake, KEY, json!({})))
        .await
        .expect_err("no credits");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        reject: Some(Reject::status(400)),
        ..Default::default()
    })
    .await;
    let e = open(config(&fake, KEY, json!({})))
        .await
        .expect_err("bad params");
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
}

#[tokio::test]
async fn vendor_errors_and_close_codes_end_the_task_with_their_category() {
    for (version, message, status, want) in [
        ("2026-03-01", "slow down", 429, ErrorCategory::RateLimited),
        (
            "2026-03-01",
            "engine failure",
            500,
            ErrorCategory::Transient,
        ),
        ("2026-03-01", "bad audio", 400, ErrorCategory::Config),
        (
            "2024-11-13",
            "Rate limit exceeded",
            0,
            ErrorCategory::RateLimited,
        ),
        ("2024-11-13", "something broke", 0, ErrorCategory::Permanent),
    ] {
        let fake = CartesiaSttFake::start(CartesiaSttOptions {
            error_after: Some((2, message.to_owned(), status)),
            ..Default::default()
        })
        .await;
        let (peer, task) = open(config(&fake, KEY, json!({"cartesia_version": version})))
            .await
            .unwrap();
        send_audio(&peer, &pcm(100, 0), 640).await;
        let e = task_error(task).await;
        assert_eq!(e.category(), want, "{version} {message}: {e}");
        assert!(e.to_string().contains(message), "{e}");
        drop(peer);
    }
    // A bare 1011 close is a fault in the conformance suite.
}

#[tokio::test]
async fn malformed_and_huge_messages_never_panic() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        garbage: true,
        huge_message: Some(100_000),
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    assert_eq!(transcripts(&events).last().unwrap().text, "w1 w2");
    close_and_drain(peer, task).await.1.unwrap();
    // Over max_message_bytes: a fault in the conformance suite.
}

#[tokio::test]
async fn an_unanswered_close_command_is_drained_with_a_bound() {
    // (Disconnects, silence and an unanswered finalize are faults in the conformance suite.)
    let fake = CartesiaSttFake::start(CartesiaSttOptions {
        ignore_close: true,
        ..Default::default()
    })
    .await;
    let (peer, task) = open(config(&fake, KEY, json!({"drain_timeout_ms": 300})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(40, 0), 640).await;
    let (_, result) = close_and_drain(peer, task).await;
    assert_eq!(result.unwrap_err().category(), ErrorCategory::Timeout);
}

/// A session aimed at a fresh fake started with `options`; the fake is kept in `fakes`.
async fn faulty(
    fakes: &mut Vec<CartesiaSttFake>,
    options: CartesiaSttOptions,
    key: &str,
    plugin: Value,
) -> SttSessionConfig {
    let fake = CartesiaSttFake::start(options).await;
    let cfg = config(&fake, key, plugin);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn the_plugin_passes_the_conformance_suite_against_the_fake() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let d = CartesiaSttOptions::default;
    let f = &mut Vec::new();
    let none = json!({});
    let new_api = json!({"cartesia_version": "2026-03-01"});
    let auth_http = faulty(f, d(), "wrong-key", none.clone()).await;
    let auth_message = faulty(
        f,
        CartesiaSttOptions {
            auth_failure: AuthFailure::Message,
            ..d()
        },
        "wrong-key",
        new_api.clone(),
    )
    .await;
    let reject = |r: Reject| CartesiaSttOptions {
        reject: Some(r),
        ..d()
    };
    let rate = faulty(
        f,
        reject(Reject::status(429).header("retry-after", "2")),
        KEY,
        none.clone(),
    )
    .await;
    let server = faulty(f, reject(Reject::status(500)), KEY, none.clone()).await;
    let unavailable = faulty(f, reject(Reject::status(503)), KEY, none.clone()).await;
    let error = |message: &str, status: u16| CartesiaSttOptions {
        error_after: Some((2, message.to_owned(), status)),
        ..d()
    };
    let err_rate = faulty(f, error("slow down", 429), KEY, new_api.clone()).await;
    let err_engine = faulty(f, error("engine failure", 500), KEY, new_api.clone()).await;
    let err_input = faulty(f, error("bad audio", 400), KEY, new_api.clone()).await;
    let err_old = faulty(f, error("something broke", 0), KEY, none.clone()).await;
    let closed = faulty(
        f,
        CartesiaSttOptions {
            close_after: Some((2, 1011)),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let dropped = faulty(
        f,
        CartesiaSttOptions {
            disconnect_after: Some(3),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let garbage = faulty(
        f,
        CartesiaSttOptions {
            garbage: true,
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let huge = faulty(
        f,
        CartesiaSttOptions {
            huge_message: Some(2 << 20),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let short = json!({"ping_interval_ms": 50, "idle_timeout_ms": 300, "response_timeout_ms": 300});
    let silent = faulty(
        f,
        CartesiaSttOptions {
            silent: true,
            ..d()
        },
        KEY,
        short.clone(),
    )
    .await;
    let silent_later = faulty(
        f,
        CartesiaSttOptions {
            silent_after: Some(2),
            ..d()
        },
        KEY,
        short.clone(),
    )
    .await;
    let no_flush = faulty(
        f,
        CartesiaSttOptions {
            ignore_finalize: true,
            ..d()
        },
        KEY,
        json!({"response_timeout_ms": 300}),
    )
    .await;
    let fixture = SttFixture::pcm16(pcm(600, 5), 16_000)
        .with_session(config(&fake, KEY, json!({})))
        .expect("w1 w2 w3")
        .guard(GUARD)
        .fault("401", auth_http, FaultOutcome::Fails(ErrorCategory::Auth))
        .fault(
            "auth error message",
            auth_message,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
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
            "error 429",
            err_rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "error 500",
            err_engine,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "error 400",
            err_input,
            FaultOutcome::Fails(ErrorCategory::Config),
        )
        .fault(
            "error (2024-11-13)",
            err_old,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        .fault(
            "close 1011 mid-stream",
            closed,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "disconnect mid-stream",
            dropped,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        // Malformed and unknown messages are skipped.
        .fault("garbage", garbage, FaultOutcome::Recovers)
        .fault(
            "message over max_message_bytes",
            huge,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        .fault(
            "silent vendor",
            silent,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "silent mid-stream",
            silent_later,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "finalize unanswered",
            no_flush,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        );
    let plugin = CartesiaStt::new();
    plugin
        .init(&PluginContext::new("test"), &PluginConfig::default())
        .await
        .unwrap();
    check_stt(&plugin, &fixture).await.assert_ok();
    assert_eq!(f.len(), 16);
}

#[tokio::test]
async fn unsupported_sessions_are_refused_before_dialling() {
    let fake = CartesiaSttFake::start(CartesiaSttOptions::default()).await;
    let base = config(&fake, KEY, json!({}));
    let mut cases = Vec::new();
    let mut c = base.clone();
    c.encoding = AudioEncoding::Opus;
    cases.push(("opus", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.sample_rate = 96_000;
    cases.push(("96 kHz", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.channels = 2;
    cases.push(("stereo", c, ErrorCategory::Config));
    let mut c = config(&fake, KEY, json!({"model": "ink-2"}));
    c.language = "fr-FR".into();
    cases.push(("ink-2 in French", c, ErrorCategory::Config));
    cases.push((
        "bad version",
        config(&fake, KEY, json!({"cartesia_version": "v2"})),
        ErrorCategory::Config,
    ));
    let mut c = base.clone();
    c.api_key = None;
    c.credentials = Credentials::new();
    cases.push(("no key", c, ErrorCategory::Auth));
    for (what, cfg, want) in cases {
        let e = open(cfg)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(e.category(), want, "{what}: {e}");
    }
    assert!(fake.requests().is_empty(), "nothing was dialled");
}

#[test]
fn info_and_capabilities() {
    let p = CartesiaStt::new();
    let info = p.info();
    assert_eq!(info.id, "cartesia");
    let fields = info.credential_fields();
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("CARTESIA_API_KEY"));
    let caps = p.capabilities();
    assert!(caps.check_model("ink-whisper").is_ok() && caps.check_model("ink-2").is_ok());
    for e in [
        AudioEncoding::Linear16,
        AudioEncoding::Mulaw,
        AudioEncoding::Alaw,
    ] {
        assert!(caps.accepts_encoding(e));
    }
    assert!(!caps.accepts_encoding(AudioEncoding::Mp3));
    assert!(caps.accepts_rate(11_025) && !caps.accepts_rate(96_000));
    assert_eq!(caps.max_channels, 1);
    assert!(caps.streaming && caps.interim_results && caps.word_timings);
}
