//! The real AssemblyAI client against the protocol fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_assemblyai::AssemblyAiStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, PluginConfig, PluginError, Secret, SttEvent,
    SttInput, SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript,
};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::assemblyai::{AssemblyAiFake, AssemblyAiOptions, AuthFailure};

const KEY: &str = "test-assemblyai-key";
const GUARD: Duration = Duration::from_secs(10);

fn config(fake: &AssemblyAiFake, key: &str, plugin: Value) -> SttSessionConfig {
    let mut section = json!({"base_url": fake.base_url(), "token_url": fake.token_url()});
    for (k, v) in plugin.as_object().cloned().unwrap_or_default() {
        section[k] = v;
    }
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(key));
    SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(key)))
        .with_credentials(creds)
        .with_plugin_config(PluginConfig::from_value("plugins.stt.assemblyai", section).unwrap())
}

type Task = JoinHandle<Result<(), PluginError>>;

async fn open(cfg: SttSessionConfig) -> Result<(SttPeer, Task), PluginError> {
    let (io, peer) = SttIo::pair(64);
    let task = tokio::time::timeout(GUARD, AssemblyAiStt::new().connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok((peer, tokio::spawn(task)))
}

/// `ms` of loud-ish PCM16 at 16 kHz (a ramp, so byte order mistakes show).
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

/// Receives events until `done` says so (or the channel closes), bounded.
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

async fn category_of_task(task: Task) -> ErrorCategory {
    ended(task)
        .await
        .expect_err("the task should fail")
        .category()
}

#[tokio::test]
async fn url_query_and_auth_header_are_as_documented() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let cfg = config(
        &fake,
        KEY,
        json!({"keyterms": ["WaaV", "Sonny"], "end_of_turn_confidence_threshold": 0.6,
               "min_turn_silence": 300, "max_turn_silence": 1200, "vad_threshold": 0.5,
               "speech_model": "u3-rt-pro", "inactivity_timeout": 30}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path(), "/v3/ws");
    assert_eq!(req.query("sample_rate"), Some("16000"));
    assert_eq!(req.query("encoding"), Some("pcm_s16le"));
    assert_eq!(req.query("speech_model"), Some("u3-rt-pro"));
    assert_eq!(req.query("format_turns"), Some("true"));
    assert_eq!(req.query("end_of_turn_confidence_threshold"), Some("0.6"));
    assert_eq!(req.query("min_turn_silence"), Some("300"));
    assert_eq!(req.query("max_turn_silence"), Some("1200"));
    assert_eq!(req.query("vad_threshold"), Some("0.5"));
    assert_eq!(req.query("inactivity_timeout"), Some("30"));
    // A JSON list, URL-encoded (SDK `_build_uri`).
    assert_eq!(
        req.query("keyterms_prompt"),
        Some("%5B%22WaaV%22%2C%22Sonny%22%5D")
    );
    assert_eq!(req.query("token"), None);
    // The raw key, no scheme (SDK `_build_headers`).
    assert_eq!(req.header("authorization"), Some(KEY));
    assert_eq!(req.header("assemblyai-version"), Some("2025-05-12"));

    // Mulaw at 8 kHz, no punctuation → unformatted turns.
    let mut cfg = config(&fake, KEY, json!({}));
    cfg.encoding = AudioEncoding::Mulaw;
    cfg.sample_rate = 8000;
    cfg.punctuation = false;
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[1];
    assert_eq!(req.query("encoding"), Some("pcm_mulaw"));
    assert_eq!(req.query("sample_rate"), Some("8000"));
    assert_eq!(req.query("format_turns"), Some("false"));
    assert_eq!(
        req.query("speech_model"),
        Some("universal-streaming-english")
    );
}

#[tokio::test]
async fn temporary_token_mode_mints_a_token_and_passes_it_as_query() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let cfg = config(
        &fake,
        KEY,
        json!({"auth": "temporary_token", "token_expires_in_seconds": 30,
               "max_session_duration_seconds": 600}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let mint = &fake.token_requests()[0];
    assert_eq!(mint.path(), "/v3/token");
    assert_eq!(mint.query("expires_in_seconds"), Some("30"));
    assert_eq!(mint.query("max_session_duration_seconds"), Some("600"));
    assert_eq!(mint.header("authorization"), Some(KEY));
    let req = &fake.requests()[0];
    assert_eq!(req.query("token"), Some("tmp-token-1"));
    assert_eq!(
        req.header("authorization"),
        None,
        "the key stays off the socket"
    );

    // A rejected key at the token endpoint is an auth error, and the key never shows.
    let cfg = config(&fake, "wrong-key", json!({"auth": "temporary_token"}));
    let e = open(cfg).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");
}

#[tokio::test]
async fn audio_reaches_the_vendor_byte_exact_in_50_to_1000_ms_messages() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    let mut sent = pcm(500, 1);
    send_audio(&peer, &sent, 640).await; // the gateway's 20 ms frames
    let big = pcm(1500, 2); // one frame longer than 1000 ms
    send_audio(&peer, &big, big.len()).await;
    sent.extend_from_slice(&big);
    let odd = pcm(33, 3);
    send_audio(&peer, &odd[..1001], 1001).await; // half a sample at the end
    sent.extend_from_slice(&odd[..1000]);
    peer.input.send(SttInput::Finalize).await.unwrap();
    until(&mut peer, is_final).await;
    drop(peer);
    ended(task).await.unwrap();
    let s = &fake.sessions()[0];
    assert!(s.audio.len() >= sent.len());
    assert_eq!(
        &s.audio[..sent.len()],
        &sent[..],
        "audio changed on the way"
    );
    assert!(
        s.audio[sent.len()..].iter().all(|b| *b == 0),
        "only silence padding may follow"
    );
    assert!(
        s.chunk_sizes
            .iter()
            .all(|n| (1600..=32_000).contains(n) && n % 2 == 0),
        "{:?}",
        s.chunk_sizes
    );
}

#[tokio::test]
async fn unformatted_turns_map_to_interims_and_one_speech_final() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let mut cfg = config(&fake, KEY, json!({}));
    cfg.punctuation = false;
    let (mut peer, task) = open(cfg).await.unwrap();
    send_audio(&peer, &pcm(300, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    assert_eq!(events[0], SttEvent::SpeechStarted);
    let ts = transcripts(&events);
    let (fin, interims) = ts.split_last().unwrap();
    assert!(!interims.is_empty());
    assert!(interims.iter().all(|t| !t.is_final && !t.is_speech_final));
    assert_eq!(interims[0].text, "w1");
    assert!((interims[0].confidence - 0.6).abs() < 1e-6);
    assert_eq!(fin.text, "w1 w2 w3");
    assert!(fin.is_final && fin.is_speech_final);
    assert!((fin.confidence - 0.9).abs() < 1e-6);
    assert_eq!(fin.words.len(), 3);
    assert_eq!(fin.words[1].word, "w2");
    assert!((fin.words[1].start - 0.1).abs() < 1e-9);
    assert!((fin.words[1].end - 0.18).abs() < 1e-9);
    assert!((fin.words[1].confidence - 0.9).abs() < 1e-6);

    // A second turn (whole 60 ms messages, so no padding); words timed from the stream start.
    send_audio(&peer, &pcm(180, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "w1 w2");
    assert!(fin.words[0].start >= 0.3, "{:?}", fin.words);
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn formatted_turns_give_exactly_one_final_with_the_formatted_text() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({"format_turns": true})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(300, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    // A second turn follows, so anything the first still had to say has arrived by its end.
    send_audio(&peer, &pcm(60, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let mut finals = 0;
    let events = until(&mut peer, |e| {
        finals += usize::from(is_final(e));
        finals == 2
    })
    .await;
    let ts = transcripts(&events);
    let finals: Vec<_> = ts
        .iter()
        .filter(|t| t.is_final)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(finals, ["W1 w2 w3.", "W1."]);
    // The unformatted end of turn came as an interim with the whole turn.
    assert!(ts.iter().any(|t| !t.is_final && t.text == "w1 w2 w3"));
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn a_missing_formatted_turn_still_yields_the_final() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions {
        drop_formatted: true,
        ..AssemblyAiOptions::default()
    })
    .await;
    let cfg = config(
        &fake,
        KEY,
        json!({"format_turns": true, "format_wait_ms": 100}),
    );
    let (mut peer, task) = open(cfg).await.unwrap();
    send_audio(&peer, &pcm(120, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let ts = transcripts(&events);
    let fin = ts.last().unwrap();
    assert!(fin.is_final && fin.is_speech_final, "{events:?}");
    assert_eq!(fin.text, "w1 w2");
    assert_eq!(ts.iter().filter(|t| t.is_final).count(), 1);
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn finalize_sends_force_endpoint_and_close_terminates_and_drains() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    peer.input.send(SttInput::Finalize).await.unwrap(); // nothing spoken yet
    let events = until(&mut peer, |e| *e == SttEvent::UtteranceEnd).await;
    assert_eq!(events.last(), Some(&SttEvent::UtteranceEnd));
    send_audio(&peer, &pcm(240, 0), 640).await;
    // Close without Finalize: the last turn must still arrive, from Terminate's flush.
    let SttPeer { input, mut events } = peer;
    drop(input);
    let mut got = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, events.recv()).await {
        got.push(ev);
    }
    ended(task).await.unwrap();
    let fin: Vec<_> = transcripts(&got)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(fin.len(), 1, "{got:?}");
    assert_eq!(fin[0].text, "W1 w2 w3.");
    let s = &fake.sessions()[0];
    assert_eq!(s.message_types(), ["ForceEndpoint", "Terminate"]);
    assert!(s.terminated);
}

#[tokio::test]
async fn keepalive_is_sent_while_no_audio_flows() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let (peer, task) = open(config(&fake, KEY, json!({"keepalive_ms": 100})))
        .await
        .unwrap();
    let seen = tokio::time::timeout(GUARD, async {
        loop {
            if fake.sessions()[0]
                .message_types()
                .iter()
                .any(|t| t == "KeepAlive")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "no KeepAlive");
    drop(peer);
    ended(task).await.unwrap();
    // Off by default.
    let (peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    assert_eq!(fake.sessions()[1].message_types(), ["Terminate"]);
}

#[tokio::test]
async fn auth_and_vendor_errors_map_to_categories() {
    // Bad key refused at the upgrade.
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let e = open(config(&fake, "bad-key", json!({}))).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("bad-key"), "{e}");

    // Bad key refused with a close code after the upgrade.
    for code in [4001, 1008] {
        let fake = AssemblyAiFake::start(AssemblyAiOptions {
            auth_failure: AuthFailure::Close(code),
            ..AssemblyAiOptions::default()
        })
        .await;
        let e = open(config(&fake, "bad-key", json!({}))).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Auth, "{code}: {e}");
    }

    // Rate limited and unavailable at the upgrade.
    for (status, want) in [
        (429, ErrorCategory::RateLimited),
        (503, ErrorCategory::Transient),
    ] {
        let fake = AssemblyAiFake::start(AssemblyAiOptions {
            reject_status: Some(status),
            ..AssemblyAiOptions::default()
        })
        .await;
        let e = open(config(&fake, KEY, json!({}))).await.unwrap_err();
        assert_eq!(e.category(), want, "{status}: {e}");
    }

    // Vendor Error messages (then the close) end the task with the code's category.
    for (code, want) in [
        (3006, ErrorCategory::Config),
        (3009, ErrorCategory::RateLimited),
        (4029, ErrorCategory::RateLimited),
        (4002, ErrorCategory::Auth),
        (3005, ErrorCategory::Transient),
    ] {
        let fake = AssemblyAiFake::start(AssemblyAiOptions {
            error_after: Some((1, code, format!("error {code}"))),
            ..AssemblyAiOptions::default()
        })
        .await;
        let (peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
        send_audio(&peer, &pcm(100, 0), 3200).await;
        assert_eq!(category_of_task(task).await, want, "{code}");
    }

    // A bare close code.
    for (code, want) in [
        (4031, ErrorCategory::Timeout),
        (1013, ErrorCategory::RateLimited),
        (4000, ErrorCategory::Config),
    ] {
        let fake = AssemblyAiFake::start(AssemblyAiOptions {
            close_after: Some((1, code)),
            ..AssemblyAiOptions::default()
        })
        .await;
        let (peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
        send_audio(&peer, &pcm(100, 0), 3200).await;
        assert_eq!(category_of_task(task).await, want, "{code}");
    }
}

#[tokio::test]
async fn malformed_vendor_messages_never_panic() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions {
        garbage: true,
        huge_message: Some(200_000),
        ..AssemblyAiOptions::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    assert!(events.iter().any(is_final), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, SttEvent::Error(_))));
    drop(peer);
    ended(task).await.unwrap();
    // Over the message size limit: a fault in `conforms`.
}

#[tokio::test]
async fn a_vendor_that_never_answers_terminate_is_drained_with_a_bound() {
    // (Disconnects, a missing Begin and a vendor gone silent are faults in `conforms`.)
    // Never answers Terminate: the drain is bounded and the task still ends cleanly.
    let fake = AssemblyAiFake::start(AssemblyAiOptions {
        ignore_terminate: true,
        ..AssemblyAiOptions::default()
    })
    .await;
    let (peer, task) = open(config(&fake, KEY, json!({"drain_timeout_ms": 200})))
        .await
        .unwrap();
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn unsupported_config_is_refused_before_dialling() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let mut cases = Vec::new();
    let mut c = config(&fake, KEY, json!({}));
    c.encoding = AudioEncoding::Mp3;
    cases.push(("mp3", c, ErrorCategory::Config));
    let mut c = config(&fake, KEY, json!({}));
    c.channels = 2;
    cases.push(("stereo", c, ErrorCategory::Config));
    let mut c = config(&fake, KEY, json!({}));
    c.sample_rate = 4000;
    cases.push(("4 kHz", c, ErrorCategory::Config));
    cases.push((
        "chunk_ms",
        config(&fake, KEY, json!({"chunk_ms": 10})),
        ErrorCategory::Config,
    ));
    cases.push((
        "base_url",
        config(&fake, KEY, json!({"base_url": "ftp://x"})),
        ErrorCategory::Config,
    ));
    let c = SttSessionConfig::new("en-US", 16_000).with_plugin_config(
        PluginConfig::from_value("p", json!({"base_url": fake.base_url()})).unwrap(),
    );
    cases.push(("no key", c, ErrorCategory::Auth));
    for (what, cfg, want) in cases {
        let e = open(cfg).await.unwrap_err();
        assert_eq!(e.category(), want, "{what}: {e}");
    }
    assert!(fake.requests().is_empty(), "dialled anyway");
}

/// A session aimed at a fresh fake started with `options`; the fake is kept in `fakes`.
async fn faulty(
    fakes: &mut Vec<AssemblyAiFake>,
    options: AssemblyAiOptions,
    key: &str,
    plugin: Value,
) -> SttSessionConfig {
    let fake = AssemblyAiFake::start(options).await;
    let cfg = config(&fake, key, plugin);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn conforms() {
    let fake = AssemblyAiFake::start(AssemblyAiOptions::default()).await;
    let mut samples = waav_testkit::audio::tone(300.0, 600, 16_000);
    samples.extend(waav_testkit::audio::silence(400, 16_000));
    let d = AssemblyAiOptions::default;
    let f = &mut Vec::new();
    let none = json!({});
    let auth_http = faulty(f, d(), "bad-key", none.clone()).await;
    let auth_close = faulty(
        f,
        AssemblyAiOptions {
            auth_failure: AuthFailure::Close(4001),
            ..d()
        },
        "bad-key",
        none.clone(),
    )
    .await;
    let status = |s: u16| AssemblyAiOptions {
        reject_status: Some(s),
        ..d()
    };
    let rate = faulty(f, status(429), KEY, none.clone()).await;
    let server = faulty(f, status(500), KEY, none.clone()).await;
    let unavailable = faulty(f, status(503), KEY, none.clone()).await;
    let error = |code: u16| AssemblyAiOptions {
        error_after: Some((2, code, format!("error {code}"))),
        ..d()
    };
    let err_rate = faulty(f, error(3009), KEY, none.clone()).await;
    let err_transient = faulty(f, error(3005), KEY, none.clone()).await;
    let err_config = faulty(f, error(3006), KEY, none.clone()).await;
    let closed = faulty(
        f,
        AssemblyAiOptions {
            close_after: Some((2, 1011)),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let dropped = faulty(
        f,
        AssemblyAiOptions {
            disconnect_after: Some(2),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let garbage = faulty(
        f,
        AssemblyAiOptions {
            garbage: true,
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let huge = faulty(
        f,
        AssemblyAiOptions {
            huge_message: Some(100_000),
            ..d()
        },
        KEY,
        json!({"max_message_bytes": 65536}),
    )
    .await;
    let no_begin = faulty(
        f,
        AssemblyAiOptions {
            silent: true,
            ..d()
        },
        KEY,
        json!({"begin_timeout_ms": 300}),
    )
    .await;
    let silent = faulty(
        f,
        AssemblyAiOptions {
            silent_after: Some(2),
            ..d()
        },
        KEY,
        json!({"ping_interval_ms": 100, "idle_timeout_ms": 400}),
    )
    .await;
    let fixture = SttFixture::pcm16(waav_testkit::audio::to_le_bytes(&samples), 16_000)
        .with_session(config(&fake, KEY, json!({})))
        .expect("w1 w2 w3")
        .guard(GUARD)
        .fault(
            "401 bad key",
            auth_http,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "close 4001 bad key",
            auth_close,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault("429", rate, FaultOutcome::Fails(ErrorCategory::RateLimited))
        .fault("500", server, FaultOutcome::Fails(ErrorCategory::Transient))
        .fault(
            "503",
            unavailable,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "error 3009",
            err_rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "error 3005",
            err_transient,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "error 3006",
            err_config,
            FaultOutcome::Fails(ErrorCategory::Config),
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
        // Malformed and unknown messages are logged and skipped.
        .fault("garbage", garbage, FaultOutcome::Recovers)
        .fault(
            "message over max_message_bytes",
            huge,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        .fault(
            "no Begin",
            no_begin,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "silent mid-stream",
            silent,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        );
    let report = check_stt(&AssemblyAiStt::new(), &fixture).await;
    report.assert_ok();
    assert_eq!(f.len(), 14);
}
