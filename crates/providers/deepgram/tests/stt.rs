//! The real Deepgram STT client against the protocol fake, over 127.0.0.1 sockets.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_deepgram::DeepgramStt;
use waav_plugin_api::{
    AudioEncoding, ErrorCategory, Plugin, PluginConfig, PluginError, Secret, SttEvent, SttInput,
    SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript,
};
use waav_testkit::audio::{silence, to_le_bytes, tone};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::deepgram::{DeepgramFake, FakeOptions, Fault};

const KEY: &str = "dg-test-key-5f3a";
const RATE: u32 = 16_000;
/// Bound on every wait (a hang guard, not a latency check).
const GUARD: Duration = Duration::from_secs(10);

fn section(fake: &DeepgramFake, extra: Value) -> PluginConfig {
    let mut v = json!({ "base_url": fake.base_url() });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    PluginConfig::from_value("plugins.stt.deepgram", v).unwrap()
}

fn session(fake: &DeepgramFake, extra: Value) -> SttSessionConfig {
    SttSessionConfig::new("en-US", RATE)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(section(fake, extra))
}

async fn open(
    cfg: SttSessionConfig,
) -> Result<(SttPeer, JoinHandle<Result<(), PluginError>>), PluginError> {
    let (io, peer) = SttIo::pair(64);
    let task = tokio::time::timeout(GUARD, DeepgramStt::new().connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok((peer, tokio::spawn(task)))
}

async fn ended(task: JoinHandle<Result<(), PluginError>>) -> Result<(), PluginError> {
    tokio::time::timeout(GUARD, task)
        .await
        .expect("the task hung")
        .expect("the task panicked")
}

fn speech(ms: u32) -> Vec<u8> {
    to_le_bytes(&tone(440.0, ms, RATE))
}

fn quiet(ms: u32) -> Vec<u8> {
    to_le_bytes(&silence(ms, RATE))
}

/// Sends `audio` in 20 ms chunks.
async fn stream(peer: &SttPeer, audio: &[u8]) {
    for c in audio.chunks((RATE / 50 * 2) as usize) {
        peer.input
            .send(SttInput::Audio(Bytes::copy_from_slice(c)))
            .await
            .expect("the plugin reads its input");
    }
}

/// Events until `stop` matches one (included), bounded.
async fn events_until(peer: &mut SttPeer, stop: impl Fn(&SttEvent) -> bool) -> Vec<SttEvent> {
    let mut out = Vec::new();
    let res = tokio::time::timeout(GUARD, async {
        while let Some(ev) = peer.events.recv().await {
            let done = stop(&ev);
            out.push(ev);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "no matching event; got {out:?}");
    out
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

async fn expect_connect_error(cfg: SttSessionConfig) -> PluginError {
    match open(cfg).await {
        Ok(_) => panic!("connect succeeded"),
        Err(e) => e,
    }
}

async fn start_fake(options: FakeOptions) -> DeepgramFake {
    DeepgramFake::with_options(FakeOptions {
        api_key: KEY.into(),
        ..options
    })
    .await
}

#[tokio::test]
async fn upgrade_request_has_the_documented_path_query_and_auth() {
    let fake = DeepgramFake::start(KEY).await;
    let cfg = session(
        &fake,
        json!({"diarize": true, "smart_format": true, "endpointing": 300, "utterance_end_ms": 1000,
               "keyterm": ["tail number"], "extra_query": {"tag": "waav"}}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path(), "/v1/listen");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
    let q = req.uri.split_once('?').unwrap().1;
    assert_eq!(
        q,
        "model=nova-3&language=en-US&encoding=linear16&sample_rate=16000&channels=1\
         &punctuate=true&interim_results=true&smart_format=true&diarize=true&vad_events=true\
         &endpointing=300&utterance_end_ms=1000&keyterm=tail+number&tag=waav"
    );

    // A temporary token goes as Bearer; the session's model and format reach the query.
    let mut cfg = session(
        &fake,
        json!({"auth_scheme": "bearer", "interim_results": false}),
    )
    .with_model("nova-2-phonecall")
    .with_format(AudioEncoding::Mulaw, 1);
    cfg.sample_rate = 8_000;
    cfg.punctuation = false;
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[1];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.query("model"), Some("nova-2-phonecall"));
    assert_eq!(req.query("encoding"), Some("mulaw"));
    assert_eq!(req.query("sample_rate"), Some("8000"));
    assert_eq!(req.query("punctuate"), Some("false"));
    assert_eq!(req.query("interim_results"), Some("false"));

    // Containerised audio: no encoding or sample_rate, Deepgram reads the header.
    let cfg = session(&fake, json!({})).with_format(AudioEncoding::Wav, 1);
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[2];
    assert_eq!(
        (req.query("encoding"), req.query("sample_rate")),
        (None, None)
    );
}

#[tokio::test]
async fn audio_reaches_the_vendor_byte_exact_and_never_as_an_empty_frame() {
    let fake = DeepgramFake::start(KEY).await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    let mut sent = Vec::new();
    for (i, len) in [640usize, 0, 1, 333, 0, 4096, 7].into_iter().enumerate() {
        let chunk: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        sent.extend_from_slice(&chunk);
        peer.input
            .send(SttInput::Audio(chunk.into()))
            .await
            .unwrap();
    }
    drop(peer.input);
    let drain = tokio::spawn(async move { while peer.events.recv().await.is_some() {} });
    ended(task).await.unwrap();
    drain.abort();
    let log = &fake.sessions()[0];
    assert_eq!(log.audio, sent);
    assert_eq!(log.audio_frames, 5);
    assert_eq!(log.empty_frames, 0);
    assert_eq!(log.close_streams, 1);
}

#[tokio::test]
async fn interim_final_and_end_of_utterance_results_map_to_transcripts() {
    let fake = DeepgramFake::start(KEY).await;
    let cfg = session(&fake, json!({"diarize": true, "utterance_end_ms": 1000}));
    let (mut peer, task) = open(cfg).await.unwrap();
    let mut audio = speech(1000);
    audio.extend(quiet(300));
    stream(&peer, &audio).await;
    let events = events_until(&mut peer, is_final).await;
    assert_eq!(events[0], SttEvent::SpeechStarted, "{events:?}");
    let ts = transcripts(&events);
    let (interims, finals): (Vec<&Transcript>, Vec<&Transcript>) =
        ts.into_iter().partition(|t| !t.is_final);
    assert_eq!(interims[0].text, "Alpha bravo");
    assert!(!interims[0].is_speech_final);
    assert_eq!(interims.last().unwrap().text, "Alpha bravo charlie delta");
    let fin = finals[0];
    assert_eq!(fin.text, "Alpha bravo charlie delta.");
    assert!(fin.is_final && fin.is_speech_final);
    assert!((fin.confidence - 0.95).abs() < 1e-6, "{}", fin.confidence);
    assert_eq!(fin.speaker.as_deref(), Some("0"));
    let words: Vec<_> = fin.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(words, ["Alpha", "bravo", "charlie", "delta."]);
    let w = &fin.words[1];
    assert!(
        (w.start - 0.25).abs() < 1e-9 && (w.end - 0.5).abs() < 1e-9,
        "{w:?}"
    );
    assert!((w.confidence - 0.91).abs() < 1e-6, "{w:?}");
    assert_eq!(w.speaker.as_deref(), Some("0"));

    // A gap of utterance_end_ms after the last word: UtteranceEnd.
    stream(&peer, &quiet(1000)).await;
    let events = events_until(&mut peer, |e| *e == SttEvent::UtteranceEnd).await;
    assert!(transcripts(&events).is_empty(), "{events:?}");
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn finalize_and_close_send_the_vendor_messages_and_drain_the_last_results() {
    let fake = DeepgramFake::start(KEY).await;
    let (mut peer, task) = open(session(&fake, json!({"endpointing": false})))
        .await
        .unwrap();
    stream(&peer, &speech(300)).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = events_until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "Alpha bravo.");
    // The Finalize result closes the turn.
    assert!(fin.is_speech_final);

    stream(&peer, &speech(200)).await;
    let SttPeer { input, mut events } = peer;
    drop(input);
    let mut rest = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, events.recv()).await {
        rest.push(ev);
    }
    ended(task).await.unwrap();
    let last = transcripts(&rest).into_iter().rfind(|t| t.is_final);
    assert_eq!(last.map(|t| t.text.as_str()), Some("Charlie."), "{rest:?}");
    let log = &fake.sessions()[0];
    assert_eq!(log.finalizes, 1);
    assert_eq!(log.close_streams, 1);
    assert!(log.texts.contains(&r#"{"type":"Finalize"}"#.to_owned()));
    assert_eq!(
        log.texts.last().map(String::as_str),
        Some(r#"{"type":"CloseStream"}"#)
    );
    assert_eq!(log.closed_with, Some(1000));
    assert!(log.sent.last().unwrap().contains(r#""type":"Metadata""#));
}

#[tokio::test]
async fn keepalive_holds_an_idle_stream_open() {
    let fake = start_fake(FakeOptions::default().idle_timeout(Duration::from_millis(400))).await;
    let (peer, task) = open(session(&fake, json!({"keepalive_interval_ms": 50})))
        .await
        .unwrap();
    let log = fake
        .wait_for(0, GUARD, |l| l.keepalives >= 12)
        .await
        .expect("keepalives keep coming");
    assert!(log.texts.iter().all(|t| t == r#"{"type":"KeepAlive"}"#));
    assert_eq!(log.closed_with, None, "the idle stream stayed open");
    assert!(!task.is_finished());
    // Audio flowing means no KeepAlive is needed; it resumes when audio stops.
    stream(&peer, &speech(100)).await;
    drop(peer);
    ended(task).await.unwrap();

    // Without keepalive the vendor's idle timeout (1011 NET-0001) ends the session: Timeout.
    let (_peer, task) = open(session(&fake, json!({"keepalive_interval_ms": 0})))
        .await
        .unwrap();
    let e = ended(task).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    assert!(e.to_string().contains("NET-0001"), "{e}");
}

#[tokio::test]
async fn auth_rate_limit_and_bad_requests_at_the_upgrade() {
    let fake = DeepgramFake::start(KEY).await;
    let wrong = "wrong-secret-9c1d";
    let cfg = session(&fake, json!({})).with_api_key(Some(Secret::from(wrong)));
    let e = expect_connect_error(cfg).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains(wrong), "the key leaked: {e}");

    // An unknown model is a 400 from Deepgram: a config problem.
    let e = expect_connect_error(session(&fake, json!({})).with_model("bogus-model")).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("No such model"), "{e}");

    for (status, retry, want) in [
        (429, Some(7), ErrorCategory::RateLimited),
        (402, None, ErrorCategory::Auth),
        (403, None, ErrorCategory::Auth),
        (400, None, ErrorCategory::Config),
        (503, Some(1), ErrorCategory::Transient),
    ] {
        let fake = start_fake(FakeOptions::default().fault(Fault::Reject {
            status,
            retry_after: retry,
            reason: "nope".into(),
        }))
        .await;
        let e = expect_connect_error(session(&fake, json!({}))).await;
        assert_eq!(e.category(), want, "{status}: {e}");
        if status == 429 {
            let PluginError::RateLimited { retry_after, .. } = e else {
                unreachable!()
            };
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
    }
}

async fn stream_until_error(fault: Fault, extra: Value) -> PluginError {
    let fake = start_fake(FakeOptions::default().fault(fault)).await;
    let (peer, task) = open(session(&fake, extra)).await.unwrap();
    let SttPeer { input, mut events } = peer;
    let audio = speech(2000);
    let feed = async move {
        for c in audio.chunks(640) {
            if input
                .send(SttInput::Audio(Bytes::copy_from_slice(c)))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let drain = async move { while events.recv().await.is_some() {} };
    let (_, _, result) = tokio::join!(feed, drain, ended(task));
    result.unwrap_err()
}

#[tokio::test]
async fn vendor_errors_and_close_codes_end_the_task_with_the_right_category() {
    let close = |code: u16, reason: &str| Fault::Close {
        after_audio: 3,
        code,
        reason: reason.into(),
    };
    let e = stream_until_error(close(1008, "DATA-0000"), json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    let e = stream_until_error(close(1011, "NET-0000"), json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    let e = stream_until_error(close(1008, "policy"), json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");

    let error = |json: &str| Fault::ErrorMessage {
        after_audio: 2,
        json: json.into(),
        code: 1011,
        reason: "NET-0000".into(),
    };
    let e = stream_until_error(
        error(r#"{"error_code":429,"error_message":"Too many requests","request_id":"r"}"#),
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    assert!(e.to_string().contains("Too many requests"), "{e}");
    let e = stream_until_error(
        error(r#"{"type":"Error","description":"internal","message":"NET-0000","variant":"x"}"#),
        json!({}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
}

#[tokio::test]
async fn garbage_and_huge_messages_never_panic() {
    let fake = start_fake(FakeOptions::default().fault(Fault::Garbage)).await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    let mut audio = speech(500);
    audio.extend(quiet(100));
    stream(&peer, &audio).await;
    let events = events_until(&mut peer, is_final).await;
    let fin = transcripts(&events)
        .into_iter()
        .rfind(|t| t.is_final)
        .unwrap();
    assert_eq!(fin.text, "Alpha bravo.");
    assert!(
        events.iter().all(|e| !matches!(e, SttEvent::Error(_))),
        "{events:?}"
    );
    drop(peer);
    ended(task).await.unwrap();

    // Under the size limit: parsed (a Results without alternatives) and skipped.
    let fake = start_fake(FakeOptions::default().fault(Fault::Huge(200 << 10))).await;
    let (mut peer, task) = open(session(&fake, json!({}))).await.unwrap();
    stream(&peer, &audio).await;
    let events = events_until(&mut peer, is_final).await;
    assert_eq!(transcripts(&events).last().unwrap().text, "Alpha bravo.");
    drop(peer);
    ended(task).await.unwrap();
    // Over it (a registered fault in the conformance suite): the session ends with an error.
}

#[tokio::test]
async fn a_vendor_that_never_closes_after_close_stream_is_drained_with_a_bound() {
    // (Disconnects and a silent vendor are faults in the conformance suite below.)
    // A vendor that never closes after CloseStream: the drain is bounded.
    let fake = start_fake(FakeOptions::default().fault(Fault::IgnoreCloseStream)).await;
    let (peer, task) = open(session(&fake, json!({"drain_timeout_ms": 300})))
        .await
        .unwrap();
    stream(&peer, &speech(100)).await;
    // The host still listens for the last results.
    let SttPeer { input, mut events } = peer;
    drop(input);
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let e = ended(task).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    assert!(e.to_string().contains("CloseStream"), "{e}");
    drain.abort();
}

/// A session aimed at a fresh fake injecting `fault`; the fake is kept in `fakes`.
async fn faulty(fakes: &mut Vec<DeepgramFake>, fault: Fault, extra: Value) -> SttSessionConfig {
    let fake = start_fake(FakeOptions::default().fault(fault)).await;
    let cfg = session(&fake, extra);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn the_plugin_passes_the_stt_conformance_suite() {
    let fake = DeepgramFake::start(KEY).await;
    let mut samples = tone(300.0, 600, RATE);
    samples.extend(silence(400, RATE));
    // One fake per fault, each kept alive for the run.
    let mut fakes = Vec::new();
    let reject = |status: u16, retry_after: Option<u64>| Fault::Reject {
        status,
        retry_after,
        reason: "fault".into(),
    };
    let auth = faulty(&mut fakes, Fault::None, json!({}))
        .await
        .with_api_key(Some(Secret::from("wrong-key")));
    let forbidden = faulty(&mut fakes, reject(403, None), json!({})).await;
    let rate = faulty(&mut fakes, reject(429, Some(2)), json!({})).await;
    let server = faulty(&mut fakes, reject(500, None), json!({})).await;
    let unavailable = faulty(&mut fakes, reject(503, Some(1)), json!({})).await;
    let vendor_rate = faulty(
        &mut fakes,
        Fault::ErrorMessage {
            after_audio: 2,
            json: r#"{"error_code":429,"error_message":"Too many requests","request_id":"r"}"#
                .into(),
            code: 1011,
            reason: "NET-0000".into(),
        },
        json!({}),
    )
    .await;
    let vendor_error = faulty(
        &mut fakes,
        Fault::ErrorMessage {
            after_audio: 2,
            json: r#"{"type":"Error","description":"internal","message":"NET-0000","variant":"x"}"#
                .into(),
            code: 1011,
            reason: "NET-0000".into(),
        },
        json!({}),
    )
    .await;
    let bad_audio = faulty(
        &mut fakes,
        Fault::Close {
            after_audio: 3,
            code: 1008,
            reason: "DATA-0000".into(),
        },
        json!({}),
    )
    .await;
    let closed = faulty(
        &mut fakes,
        Fault::Close {
            after_audio: 3,
            code: 1011,
            reason: "NET-0000".into(),
        },
        json!({}),
    )
    .await;
    let dropped = faulty(&mut fakes, Fault::Disconnect { after_audio: 3 }, json!({})).await;
    let garbage = faulty(&mut fakes, Fault::Garbage, json!({})).await;
    let huge = faulty(&mut fakes, Fault::Huge(2 << 20), json!({})).await;
    let silent = faulty(
        &mut fakes,
        Fault::Silent,
        json!({"response_timeout_ms": 300}),
    )
    .await;
    let fixture = SttFixture::pcm16(to_le_bytes(&samples), RATE)
        .with_session(session(&fake, json!({})))
        .expect("alpha bravo")
        .guard(GUARD)
        .fault(
            "401 wrong key",
            auth,
            FaultOutcome::Fails(ErrorCategory::Auth),
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
            "error message 429",
            vendor_rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "error message",
            vendor_error,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        .fault(
            "close 1008 DATA-0000",
            bad_audio,
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
        // Malformed and unknown messages are skipped (documented in the session loop).
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
        );
    let plugin = DeepgramStt::new();
    plugin
        .init(&Default::default(), &section(&fake, json!({})))
        .await
        .unwrap();
    check_stt(&plugin, &fixture).await.assert_ok();
    assert_eq!(fakes.len(), 13);
}

#[tokio::test]
async fn unsupported_configs_are_refused_before_dialling() {
    let fake = DeepgramFake::start(KEY).await;
    let cases: Vec<(SttSessionConfig, ErrorCategory)> = vec![
        (
            SttSessionConfig::new("en-US", 4_000)
                .with_api_key(Some(Secret::from(KEY)))
                .with_plugin_config(section(&fake, json!({}))),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({})).with_format(AudioEncoding::Linear16, 0),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({})).with_format(AudioEncoding::Linear16, 64),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({})).with_model("nova-3&diarize=true"),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({"base_url": "ftp://example"})),
            ErrorCategory::Config,
        ),
        (
            session(
                &fake,
                json!({"utterance_end_ms": 1000, "interim_results": false}),
            ),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({"keyterm": ["x"]})).with_model("nova-2"),
            ErrorCategory::Config,
        ),
        (
            session(&fake, json!({})).with_api_key(None),
            ErrorCategory::Auth,
        ),
        (
            session(&fake, json!({})).with_api_key(Some(Secret::from(""))),
            ErrorCategory::Auth,
        ),
    ];
    for (cfg, want) in cases {
        let what = format!("{cfg:?}");
        let e = expect_connect_error(cfg).await;
        assert_eq!(e.category(), want, "{what}: {e}");
    }
    assert!(fake.requests().is_empty(), "dialled: {:?}", fake.requests());

    // The key may come from the resolved credentials instead of api_key.
    let mut creds = waav_plugin_api::Credentials::new();
    creds.set("api_key", Secret::from(KEY));
    let cfg = session(&fake, json!({}))
        .with_api_key(None)
        .with_credentials(creds);
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn info_capabilities_and_registration() {
    let p = DeepgramStt::new();
    let info = p.info();
    assert_eq!(info.id, "deepgram");
    let fields = info.credential_fields();
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].name, fields[0].env),
        ("api_key", Some("DEEPGRAM_API_KEY"))
    );
    assert!(fields[0].secret && fields[0].required);
    let caps = p.capabilities();
    assert!(caps.check_model("nova-3").is_ok());
    assert!(caps.check_model("my-custom").is_err());
    assert!(caps.check_encoding(AudioEncoding::Alaw).is_ok());
    assert!(caps.check_sample_rate(8_000).is_ok());
    assert!(caps.streaming && caps.interim_results && caps.word_timings);
    // Extra model ids from the config section are accepted.
    let cfg =
        PluginConfig::from_value("plugins.stt.deepgram", json!({"models": ["my-custom"]})).unwrap();
    p.init(&Default::default(), &cfg).await.unwrap();
    assert!(p.capabilities().check_model("my-custom").is_ok());
    assert!(waav_plugin_api::registrations().any(|r| (r.create)().plugin().info().id == "deepgram"));
}
