//! The real IBM Watson STT client against the protocol fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use waav_ibm::IbmStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, PluginConfig, PluginError, Secret, SttEvent,
    SttInput, SttIo, SttPlugin, SttSessionConfig, Transcript,
};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::ibm::{IamFault, IbmFake, IbmFakeOptions, SttFault};

const KEY: &str = "test-key";
const WAIT: Duration = Duration::from_secs(10);

fn session(fake: &IbmFake, extra: Value) -> SttSessionConfig {
    let mut cfg =
        json!({ "iam_url": fake.iam_url(), "ack_timeout_ms": 3000, "drain_timeout_ms": 3000 });
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    creds.set("url", Secret::new(fake.instance_url()));
    SttSessionConfig::new("en-US", 16_000)
        .with_plugin_config(PluginConfig::from_value("plugins.stt.ibm-watson", cfg).unwrap())
        .with_credentials(creds)
}

struct Live {
    input: tokio::sync::mpsc::Sender<SttInput>,
    events: tokio::sync::mpsc::Receiver<SttEvent>,
    task: tokio::task::JoinHandle<Result<(), PluginError>>,
}

async fn open(plugin: &IbmStt, cfg: SttSessionConfig) -> Result<Live, PluginError> {
    let (io, peer) = SttIo::pair(64);
    let task = tokio::time::timeout(WAIT, plugin.connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok(Live {
        input: peer.input,
        events: peer.events,
        task: tokio::spawn(task),
    })
}

async fn next_transcript(ev: &mut tokio::sync::mpsc::Receiver<SttEvent>) -> Transcript {
    loop {
        match tokio::time::timeout(WAIT, ev.recv())
            .await
            .expect("no event")
        {
            Some(SttEvent::Transcript(t)) => return *t,
            Some(SttEvent::Error(e)) => panic!("error event {e}"),
            Some(_) => {}
            None => panic!("events ended"),
        }
    }
}

async fn next_final(ev: &mut tokio::sync::mpsc::Receiver<SttEvent>) -> Transcript {
    loop {
        let t = next_transcript(ev).await;
        if t.is_final {
            return t;
        }
    }
}

async fn ended(task: tokio::task::JoinHandle<Result<(), PluginError>>) -> Result<(), PluginError> {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("task hung")
        .expect("task panicked")
}

fn pcm(ms: usize) -> Vec<u8> {
    (0..ms * 32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn url_query_start_message_and_byte_exact_audio() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let cfg = session(
        &fake,
        json!({"language_customization_id": "cust-1", "speaker_labels": true,
               "end_of_phrase_silence_time": 0.5, "learning_opt_out": true}),
    );
    let mut s = open(&plugin, cfg).await.unwrap();
    let audio = pcm(300);
    for c in audio.chunks(640) {
        s.input
            .send(SttInput::Audio(Bytes::copy_from_slice(c)))
            .await
            .unwrap();
    }
    s.input.send(SttInput::Finalize).await.unwrap();
    let f = next_final(&mut s.events).await;
    assert_eq!(f.text, "heard 300 milliseconds");
    drop(s.input);
    ended(s.task).await.unwrap();

    // IAM: the documented form and headers.
    let tokens = fake.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(tokens[0].accept, "application/json");
    assert_eq!(
        tokens[0].field("grant_type"),
        Some("urn:ibm:params:oauth:grant-type:apikey")
    );
    assert_eq!(tokens[0].field("apikey"), Some(KEY));

    let log = fake
        .wait_for_stt(0, WAIT, |l| l.ended)
        .await
        .expect("session ended");
    let req = &log.request;
    assert_eq!(req.path(), "/instances/fake-instance/v1/recognize");
    assert_eq!(req.query("access_token"), Some("fake-token-1"));
    assert_eq!(req.query("model"), Some("en-US_Multimedia"));
    assert_eq!(req.query("language_customization_id"), Some("cust-1"));
    assert_eq!(req.query("x-watson-learning-opt-out"), Some("true"));
    let start: Value = serde_json::from_str(&log.texts[0]).unwrap();
    assert_eq!(start["action"], "start");
    assert_eq!(
        start["content-type"],
        "audio/l16;rate=16000;channels=1;endianness=little-endian"
    );
    assert_eq!(start["interim_results"], true);
    assert_eq!(start["word_confidence"], true);
    assert_eq!(start["timestamps"], true);
    assert_eq!(start["smart_formatting"], true); // the session's punctuation
    assert_eq!(start["inactivity_timeout"], -1);
    assert_eq!(start["speaker_labels"], true);
    assert_eq!(start["end_of_phrase_silence_time"], 0.5);
    assert_eq!(log.texts[1], r#"{"action":"stop"}"#);
    assert_eq!(log.audio, audio, "audio byte-exact");
    assert_eq!(log.closed_with, Some(1000));
}

#[tokio::test]
async fn interim_final_words_and_speakers_map() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        interim_every_bytes: 3200,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = IbmStt::new();
    let mut s = open(&plugin, session(&fake, json!({"speaker_labels": true})))
        .await
        .unwrap();
    s.input
        .send(SttInput::Audio(Bytes::from(pcm(600))))
        .await
        .unwrap();
    let interim = next_transcript(&mut s.events).await;
    assert_eq!(interim.text, "heard");
    assert!(!interim.is_final && !interim.is_speech_final);
    s.input.send(SttInput::Finalize).await.unwrap();
    let f = next_final(&mut s.events).await;
    assert_eq!(f.text, "heard 600 milliseconds");
    assert!(f.is_final && f.is_speech_final);
    assert!((f.confidence - 0.9).abs() < 1e-6);
    assert_eq!(f.words.len(), 3);
    assert_eq!(f.words[1].word, "600");
    assert!((f.words[2].end - 0.6).abs() < 1e-6, "{:?}", f.words);
    assert!((f.words[0].confidence - 0.9).abs() < 1e-6);
    assert_eq!(f.words[0].speaker.as_deref(), Some("0"));
    assert_eq!(f.speaker.as_deref(), Some("0"));

    // The next request on the same socket continues the timeline.
    s.input
        .send(SttInput::Audio(Bytes::from(pcm(300))))
        .await
        .unwrap();
    s.input.send(SttInput::Finalize).await.unwrap();
    let f2 = next_final(&mut s.events).await;
    assert_eq!(f2.text, "heard 300 milliseconds");
    assert!((f2.words[0].start - 0.6).abs() < 1e-6, "{:?}", f2.words);
    drop(s.input);
    ended(s.task).await.unwrap();
    assert_eq!(fake.stt_sessions()[0].stops, 2);
}

#[tokio::test]
async fn scripted_vendor_results_map() {
    let script = vec![
        r#"{"result_index":0,"results":[{"final":true,"end_of_utterance":"silence","alternatives":[{"transcript":"name the mayflower ","confidence":0.94,"timestamps":[["name",0.1,0.4],["the",0.4,0.5],["mayflower",0.5,1.2]],"word_confidence":[["name",0.99],["the",0.5],["mayflower",0.8]]}]}],"speaker_labels":[{"from":0.1,"to":0.4,"speaker":1,"confidence":0.5,"final":true},{"from":0.4,"to":0.5,"speaker":2,"confidence":0.5,"final":true},{"from":0.5,"to":1.2,"speaker":2,"confidence":0.5,"final":true}]}"#.to_owned(),
    ];
    let fake = IbmFake::with_options(IbmFakeOptions {
        script,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = IbmStt::new();
    let mut s = open(&plugin, session(&fake, json!({}))).await.unwrap();
    let t = next_final(&mut s.events).await;
    assert_eq!(t.text, "name the mayflower");
    assert!(t.is_speech_final);
    assert!((t.confidence - 0.94).abs() < 1e-6);
    assert!((t.words[1].confidence - 0.5).abs() < 1e-6);
    assert_eq!(t.words[0].speaker.as_deref(), Some("1"));
    assert_eq!(t.speaker.as_deref(), Some("2"));
    drop(s.input);
    ended(s.task).await.unwrap();
}

#[tokio::test]
async fn close_drains_final_and_short_requests_are_padded() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let mut s = open(&plugin, session(&fake, json!({}))).await.unwrap();
    // 40 bytes: under the service's 100-byte minimum, padded with silence before the stop.
    s.input
        .send(SttInput::Audio(Bytes::from_static(&[7u8; 40])))
        .await
        .unwrap();
    drop(s.input);
    let f = next_final(&mut s.events).await;
    assert!(f.is_final);
    ended(s.task).await.unwrap();
    let log = fake.wait_for_stt(0, WAIT, |l| l.ended).await.unwrap();
    assert_eq!(log.audio.len(), 100);
    assert_eq!(&log.audio[..40], &[7u8; 40]);
    assert!(log.audio[40..].iter().all(|&b| b == 0));
    assert_eq!(log.stops, 1);
    assert_eq!(log.finals_sent, 1);

    // No audio since the last stop: no stop at all (the service would refuse it).
    let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
    s.input.send(SttInput::Finalize).await.unwrap();
    drop(s.input);
    ended(s.task).await.unwrap();
    let log = fake.wait_for_stt(1, WAIT, |l| l.ended).await.unwrap();
    assert_eq!(log.stops, 0);
    assert_eq!(log.closed_with, Some(1000));
}

#[tokio::test]
async fn mulaw_content_type_and_padding() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let mut cfg = session(&fake, json!({}));
    cfg.sample_rate = 8_000;
    cfg.encoding = AudioEncoding::Mulaw;
    let s = open(&plugin, cfg).await.unwrap();
    s.input
        .send(SttInput::Audio(Bytes::from_static(&[0x7F; 10])))
        .await
        .unwrap();
    drop(s.input);
    ended(s.task).await.unwrap();
    let log = fake.wait_for_stt(0, WAIT, |l| l.ended).await.unwrap();
    assert_eq!(log.request.query("model"), Some("en-US_Telephony"));
    let start: Value = serde_json::from_str(&log.texts[0]).unwrap();
    assert_eq!(start["content-type"], "audio/mulaw;rate=8000");
    assert!(log.audio[10..].iter().all(|&b| b == 0xFF), "mu-law silence");
}

#[tokio::test]
async fn keepalive_pings() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let s = open(
        &plugin,
        session(&fake, json!({"keepalive_interval_ms": 50})),
    )
    .await
    .unwrap();
    let log = fake.wait_for_stt(0, WAIT, |l| l.pings >= 2).await;
    assert!(log.is_some(), "no pings seen");
    drop(s.input);
    ended(s.task).await.unwrap();
}

#[tokio::test]
async fn token_cached_across_sessions_and_refreshed_when_expired() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    fake.set_expires_in(0); // every token is due at once
    for _ in 0..2 {
        let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
        drop(s.input);
        ended(s.task).await.unwrap();
    }
    assert_eq!(
        fake.token_requests().len(),
        2,
        "an expired token is refreshed"
    );
    fake.set_expires_in(3600);
    for _ in 0..3 {
        let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
        drop(s.input);
        ended(s.task).await.unwrap();
    }
    assert_eq!(fake.token_requests().len(), 3, "a fresh token is reused");
    let sessions = fake.stt_sessions();
    assert_eq!(
        sessions[4].request.query("access_token"),
        Some("fake-token-3")
    );

    // A revoked token: the upgrade is refused (Auth), the cache forgets it, the next session
    // fetches a new one.
    fake.revoke_tokens();
    let e = open(&plugin, session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
    drop(s.input);
    ended(s.task).await.unwrap();
    assert_eq!(fake.token_requests().len(), 4);
}

#[tokio::test]
async fn iam_refusals_are_auth() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    // A key IAM does not know: 400 BXNIM0415E.
    let mut cfg = session(&fake, json!({}));
    cfg.api_key = Some(Secret::from("wrong-key-123"));
    let e = open(&plugin, cfg).await.err().unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("BXNIM0415E"), "{e}");
    assert!(!e.to_string().contains("wrong-key-123"), "{e}");
    fake.set_iam_fault(Some(IamFault {
        status: 401,
        body: r#"{"errorCode":"BXNIM0102E","errorMessage":"Unauthorized"}"#.into(),
    }));
    let e = open(&plugin, session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    fake.set_iam_fault(Some(IamFault {
        status: 503,
        body: "busy".into(),
    }));
    let e = open(&plugin, session(&fake, json!({})))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(fake.stt_sessions().is_empty(), "never dialled");
}

#[tokio::test]
async fn one_refresh_in_flight_per_key() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        iam_delay: Duration::from_millis(200),
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = std::sync::Arc::new(IbmStt::new());
    let url = fake.iam_url();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (p, url) = (plugin.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            p.tokens().token(&url, &Secret::from(KEY)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose(), "fake-token-1");
    }
    assert_eq!(fake.token_requests().len(), 1);
}

#[tokio::test]
async fn upgrade_refusals_and_vendor_errors_are_categorised() {
    let plugin = IbmStt::new();
    for (status, want) in [
        (403, ErrorCategory::Auth),
        (400, ErrorCategory::Config),
        (404, ErrorCategory::Config),
        (429, ErrorCategory::RateLimited),
        (503, ErrorCategory::Transient),
    ] {
        let fake = IbmFake::with_options(IbmFakeOptions {
            stt_fault: SttFault::Reject {
                status,
                body: json!({"code": status, "error": "refused"}).to_string(),
                retry_after: Some(3),
            },
            ..IbmFakeOptions::new(KEY)
        })
        .await;
        let e = open(&plugin, session(&fake, json!({})))
            .await
            .err()
            .unwrap();
        assert_eq!(e.category(), want, "{status}: {e}");
        if let PluginError::RateLimited { retry_after, .. } = e {
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
    }
    for (message, code, want) in [
        ("Session timed out.", 1011, ErrorCategory::Timeout),
        ("Model en-US_Foo not found", 1011, ErrorCategory::Config),
        ("Internal server error", 1011, ErrorCategory::Transient),
    ] {
        let fake = IbmFake::with_options(IbmFakeOptions {
            stt_fault: SttFault::ErrorAfterStart {
                message: message.into(),
                code,
            },
            ..IbmFakeOptions::new(KEY)
        })
        .await;
        let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
        let e = ended(s.task).await.unwrap_err();
        assert_eq!(e.category(), want, "{message}: {e}");
    }
    for (code, want) in [
        (1008, ErrorCategory::Auth),
        (1011, ErrorCategory::Transient),
    ] {
        let fake = IbmFake::with_options(IbmFakeOptions {
            stt_fault: SttFault::CloseAfterStart {
                code,
                reason: "bye".into(),
            },
            ..IbmFakeOptions::new(KEY)
        })
        .await;
        let s = open(&plugin, session(&fake, json!({}))).await.unwrap();
        let e = ended(s.task).await.unwrap_err();
        assert_eq!(e.category(), want, "{code}: {e}");
    }
}

#[tokio::test]
async fn garbage_never_panics_and_the_session_goes_on() {
    let fake = IbmFake::with_options(IbmFakeOptions {
        stt_fault: SttFault::Garbage,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    let plugin = IbmStt::new();
    let mut s = open(&plugin, session(&fake, json!({}))).await.unwrap();
    s.input
        .send(SttInput::Audio(Bytes::from(pcm(200))))
        .await
        .unwrap();
    s.input.send(SttInput::Finalize).await.unwrap();
    let f = next_final(&mut s.events).await;
    assert_eq!(f.text, "heard 200 milliseconds");
    drop(s.input);
    ended(s.task).await.unwrap();
}

// A disconnect mid-stream and a silent service: faults in `conformance`.

#[tokio::test]
async fn unsupported_config_is_refused_before_dialling() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let mut cfg = session(&fake, json!({}));
    cfg.encoding = AudioEncoding::Opus;
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Config
    );
    let mut cfg = session(&fake, json!({}));
    cfg.sample_rate = 12_345;
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Config
    );
    // 8 kHz audio for a 16 kHz model.
    let mut cfg = session(&fake, json!({"model": "en-US_Multimedia"}));
    cfg.sample_rate = 8_000;
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Config
    );
    let cfg = session(&fake, json!({"inactivity_timeout": -5}));
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Config
    );
    let cfg = SttSessionConfig::new("en-US", 16_000).with_plugin_config(
        PluginConfig::from_value("p", json!({"iam_url": fake.iam_url()})).unwrap(),
    );
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Auth
    );
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    let cfg = SttSessionConfig::new("en-US", 16_000).with_credentials(creds);
    assert_eq!(
        open(&plugin, cfg).await.err().unwrap().category(),
        ErrorCategory::Config
    );
    assert!(fake.token_requests().is_empty() && fake.stt_sessions().is_empty());
}

/// A session aimed at a fresh fake with `fault` (and, when set, an IAM fault); the fake is kept
/// in `fakes`.
async fn faulty(
    fakes: &mut Vec<IbmFake>,
    fault: SttFault,
    iam: Option<IamFault>,
    extra: Value,
) -> SttSessionConfig {
    let fake = IbmFake::with_options(IbmFakeOptions {
        stt_fault: fault,
        ..IbmFakeOptions::new(KEY)
    })
    .await;
    fake.set_iam_fault(iam);
    let cfg = session(&fake, extra);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn conformance() {
    let fake = IbmFake::start(KEY).await;
    let plugin = IbmStt::new();
    let mut samples = waav_testkit::audio::tone(300.0, 600, 16_000);
    samples.extend(waav_testkit::audio::silence(200, 16_000));
    let f = &mut Vec::new();
    let none = json!({});
    let mut wrong_key = faulty(f, SttFault::None, None, none.clone()).await;
    wrong_key.api_key = Some(Secret::from("wrong-key-123"));
    let iam = |status: u16, body: &str| {
        Some(IamFault {
            status,
            body: body.into(),
        })
    };
    let iam_401 = faulty(
        f,
        SttFault::None,
        iam(
            401,
            r#"{"errorCode":"BXNIM0102E","errorMessage":"Unauthorized"}"#,
        ),
        none.clone(),
    )
    .await;
    let iam_503 = faulty(f, SttFault::None, iam(503, "busy"), none.clone()).await;
    let reject = |status: u16, retry_after: Option<u64>| SttFault::Reject {
        status,
        body: json!({"code": status, "error": "refused"}).to_string(),
        retry_after,
    };
    let forbidden = faulty(f, reject(403, None), None, none.clone()).await;
    let rate = faulty(f, reject(429, Some(2)), None, none.clone()).await;
    let server = faulty(f, reject(500, None), None, none.clone()).await;
    let unavailable = faulty(f, reject(503, None), None, none.clone()).await;
    let error = |message: &str| SttFault::ErrorAfterStart {
        message: message.into(),
        code: 1011,
    };
    let err_timeout = faulty(f, error("Session timed out."), None, none.clone()).await;
    let err_model = faulty(f, error("Model en-US_Foo not found"), None, none.clone()).await;
    let err_internal = faulty(f, error("Internal server error"), None, none.clone()).await;
    let close = |code: u16| SttFault::CloseAfterStart {
        code,
        reason: "bye".into(),
    };
    let closed = faulty(f, close(1011), None, none.clone()).await;
    let closed_policy = faulty(f, close(1008), None, none.clone()).await;
    let dropped = faulty(
        f,
        SttFault::DisconnectAfterAudio { bytes: 1000 },
        None,
        none.clone(),
    )
    .await;
    let garbage = faulty(f, SttFault::Garbage, None, none.clone()).await;
    let silent = faulty(f, SttFault::Silent, None, json!({"ack_timeout_ms": 300})).await;
    let fixture = SttFixture::pcm16(waav_testkit::audio::to_le_bytes(&samples), 16_000)
        .with_session(session(&fake, json!({})))
        .expect("heard milliseconds")
        .guard(Duration::from_secs(10))
        .fault(
            "IAM unknown key",
            wrong_key,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault("IAM 401", iam_401, FaultOutcome::Fails(ErrorCategory::Auth))
        .fault(
            "IAM 503",
            iam_503,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault("403", forbidden, FaultOutcome::Fails(ErrorCategory::Auth))
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
            "error: session timed out",
            err_timeout,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "error: model not found",
            err_model,
            FaultOutcome::Fails(ErrorCategory::Config),
        )
        .fault(
            "error: internal",
            err_internal,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "close 1011",
            closed,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "close 1008",
            closed_policy,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "disconnect mid-stream",
            dropped,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        // Junk (including an oversized message) is skipped; the session goes on.
        .fault("garbage", garbage, FaultOutcome::Recovers)
        .fault(
            "silent service",
            silent,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        );
    check_stt(&plugin, &fixture).await.assert_ok();
    assert_eq!(f.len(), 15);
}
