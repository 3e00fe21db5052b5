//! The real Transcribe streaming client against the Transcribe fake, over 127.0.0.1.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_aws::TranscribeStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, PluginConfig, PluginError, SttEvent, SttInput,
    SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript,
};
use waav_provider_kit::aws::{audio_event, encode, AwsSigner};
use waav_testkit::audio::{silence, to_le_bytes, tone};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::aws::transcribe::{
    FaultAt, TranscribeFake, TranscribeFakeOptions, TranscribeFault, PATH,
};
use waav_testkit::fakes::aws::FakeCredentials;
use waav_testkit::fakes::Reject;

const WAIT: Duration = Duration::from_secs(10);
type Task = JoinHandle<Result<(), PluginError>>;

fn options(token: bool) -> TranscribeFakeOptions {
    let mut c = FakeCredentials::new(AKID, REGION);
    if token {
        c = c.with_token(TOKEN);
    }
    TranscribeFakeOptions::new(c)
}

async fn start(opts: TranscribeFakeOptions) -> TranscribeFake {
    TranscribeFake::start(opts).await
}

fn session(fake: &TranscribeFake, token: bool, extra: Value) -> SttSessionConfig {
    let mut v = json!({"endpoint": fake.base_url(), "ping_interval_ms": 0, "idle_timeout_ms": 0});
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    SttSessionConfig::new("en-US", 16_000)
        .with_plugin_config(PluginConfig::from_value("plugins.stt.aws-transcribe", v).unwrap())
        .with_credentials(credentials(token))
}

async fn open(cfg: SttSessionConfig) -> Result<(SttPeer, Task), PluginError> {
    let (io, peer) = SttIo::pair(256);
    let task = tokio::time::timeout(WAIT, TranscribeStt.connect(cfg, io))
        .await
        .expect("connect hung")?;
    Ok((peer, tokio::spawn(task)))
}

/// 100 ms of 16 kHz PCM per chunk.
fn chunks(n: usize) -> Vec<Bytes> {
    let pcm = to_le_bytes(&tone(440.0, 100 * n as u32, 16_000));
    pcm.chunks(3200).map(Bytes::copy_from_slice).collect()
}

async fn next_transcript(peer: &mut SttPeer) -> Transcript {
    loop {
        match tokio::time::timeout(WAIT, peer.events.recv())
            .await
            .expect("no event")
        {
            Some(SttEvent::Transcript(t)) => return *t,
            Some(SttEvent::SpeechStarted | SttEvent::UtteranceEnd) => {}
            Some(SttEvent::Error(e)) => panic!("error event {e}"),
            None => panic!("events ended"),
        }
    }
}

async fn ended(task: Task) -> Result<(), PluginError> {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("task hung")
        .expect("join")
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition never held");
}

// --- 1. URL, query and signature -------------------------------------------------------------

#[tokio::test]
async fn presigned_url_is_shaped_and_signed_as_documented() {
    for token in [false, true] {
        let fake = start(options(token)).await;
        let cfg = session(&fake, token, json!({"vocabulary_name": "medical1"}));
        let (peer, task) = open(cfg).await.unwrap();
        let req = fake.requests()[0].clone();
        assert_eq!(req.path(), PATH);
        assert_eq!(req.query("language-code"), Some("en-US"));
        assert_eq!(req.query("media-encoding"), Some("pcm"));
        assert_eq!(req.query("sample-rate"), Some("16000"));
        assert_eq!(req.query("vocabulary-name"), Some("medical1"));
        assert_eq!(req.query("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        let date = req.query("X-Amz-Date").unwrap().to_owned();
        assert_eq!(
            req.query("X-Amz-Credential").unwrap(),
            format!(
                "{AKID}%2F{}%2F{REGION}%2Ftranscribe%2Faws4_request",
                &date[..8]
            )
        );
        assert_eq!(req.query("X-Amz-Expires"), Some("300"));
        assert_eq!(req.query("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(req.query("X-Amz-Security-Token").is_some(), token);
        assert_eq!(
            req.header("host"),
            Some(fake.base_url().trim_start_matches("ws://"))
        );
        // The same URL presigned by the kit at the recorded time has the same signature.
        let base = format!(
            "{}{PATH}?language-code=en-US&media-encoding=pcm&sample-rate=16000&vocabulary-name=medical1",
            fake.base_url()
        );
        let again = AwsSigner::new(aws_credentials(token), REGION, "transcribe")
            .presign_url("GET", &base, Duration::from_secs(300), amz_time(&date))
            .unwrap();
        let sig = |u: &str| {
            u.split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
                .map(str::to_owned)
        };
        assert_eq!(sig(&again), req.query("X-Amz-Signature").map(str::to_owned));
        drop(peer);
        ended(task).await.unwrap();
    }
}

// --- 2. audio byte-exact ---------------------------------------------------------------------

#[tokio::test]
async fn audio_reaches_the_fake_byte_exact() {
    let fake = start(options(false)).await;
    let (peer, task) = open(session(&fake, false, json!({}))).await.unwrap();
    let audio = chunks(3);
    for c in &audio {
        peer.input.send(SttInput::Audio(c.clone())).await.unwrap();
    }
    // An empty chunk from the host must not end the stream.
    peer.input
        .send(SttInput::Audio(Bytes::new()))
        .await
        .unwrap();
    drop(peer.input);
    let mut events = peer.events;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    ended(task).await.unwrap();
    drain.abort();
    let s = &fake.sessions()[0];
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.ended);
    assert_eq!(s.audio, audio.concat());
    // Every frame is exactly the kit's encoding of the AudioEvent, the last the empty one.
    let mut want: Vec<Vec<u8>> = audio
        .iter()
        .map(|c| encode(&audio_event(c.clone())).unwrap().to_vec())
        .collect();
    want.push(encode(&audio_event(Bytes::new())).unwrap().to_vec());
    assert_eq!(s.frames, want);
    // Appendix B of the fact sheet: a 3200-byte AudioEvent is 3304 bytes with 88 of headers.
    assert_eq!(&s.frames[0][..8], &[0, 0, 0x0c, 0xe8, 0, 0, 0, 0x58]);
}

#[tokio::test]
async fn large_chunks_are_split_into_bounded_events() {
    let fake = start(options(false)).await;
    let (peer, task) = open(session(&fake, false, json!({"max_chunk_ms": 50})))
        .await
        .unwrap();
    let big = Bytes::from(to_le_bytes(&tone(300.0, 230, 16_000)));
    peer.input.send(SttInput::Audio(big.clone())).await.unwrap();
    drop(peer.input);
    let mut events = peer.events;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    ended(task).await.unwrap();
    drain.abort();
    let s = &fake.sessions()[0];
    assert_eq!(s.audio, big.to_vec());
    assert_eq!(s.audio_events, 5, "230 ms in 50 ms events");
}

// --- 3. results ------------------------------------------------------------------------------

#[tokio::test]
async fn partials_and_finals_map_to_transcripts() {
    let mut opts = options(false);
    opts.segment_ms = 300;
    opts.speaker = Some("spk_0".into());
    let fake = start(opts).await;
    let (mut peer, task) = open(session(&fake, false, json!({"show_speaker_label": true})))
        .await
        .unwrap();
    for c in chunks(3) {
        peer.input.send(SttInput::Audio(c)).await.unwrap();
    }
    let first = tokio::time::timeout(WAIT, peer.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, SttEvent::SpeechStarted);
    let partial = next_transcript(&mut peer).await;
    assert_eq!(partial.text, "hello");
    assert!(!partial.is_final && !partial.is_speech_final);
    assert_eq!(partial.confidence, 0.0);
    assert_eq!(partial.words.len(), 1);
    let fin = next_transcript(&mut peer).await;
    assert_eq!(fin.text, "hello world.");
    assert!(fin.is_final && fin.is_speech_final);
    assert!((fin.confidence - 0.875).abs() < 1e-4, "{}", fin.confidence);
    let w: Vec<_> = fin
        .words
        .iter()
        .map(|w| (w.word.as_str(), w.start, w.end))
        .collect();
    assert_eq!(w, [("hello", 0.0, 0.15), ("world", 0.15, 0.3)]);
    assert_eq!(fin.words[0].confidence, 0.9);
    assert_eq!(fin.speaker.as_deref(), Some("spk_0"));
    assert_eq!(fake.requests()[0].query("show-speaker-label"), Some("true"));
    drop(peer.input);
    ended(task).await.unwrap();
}

// --- 4. finalize and close -------------------------------------------------------------------

#[tokio::test]
async fn finalize_ends_the_stream_and_the_next_audio_opens_another() {
    let fake = start(options(true)).await;
    let (mut peer, task) = open(session(&fake, true, json!({}))).await.unwrap();
    for c in chunks(2) {
        peer.input.send(SttInput::Audio(c)).await.unwrap();
    }
    peer.input.send(SttInput::Finalize).await.unwrap();
    // Audio right after the finalize is held for the next stream.
    for c in chunks(3) {
        peer.input.send(SttInput::Audio(c)).await.unwrap();
    }
    let mut finals = Vec::new();
    while finals.is_empty() {
        let t = next_transcript(&mut peer).await;
        if t.is_final {
            finals.push(t);
        }
    }
    assert_eq!(finals[0].text, "hello world.");
    assert!((finals[0].words[1].end - 0.2).abs() < 1e-9);
    wait_for(|| fake.sessions().len() == 2).await;
    assert!(
        fake.sessions()[0].ended,
        "finalize sent the empty AudioEvent"
    );
    // Closing the input ends the second stream too, and its final is drained.
    drop(peer.input);
    let mut last = None;
    while let Ok(Some(ev)) = tokio::time::timeout(WAIT, peer.events.recv()).await {
        if let SttEvent::Transcript(t) = ev {
            if t.is_final {
                last = Some(*t);
            }
        }
    }
    ended(task).await.unwrap();
    let last = last.expect("the second stream's final");
    // Times continue from the first stream's 200 ms.
    assert!((last.words[0].start - 0.2).abs() < 1e-9, "{:?}", last.words);
    assert!((last.words[1].end - 0.5).abs() < 1e-9, "{:?}", last.words);
    let s = fake.sessions();
    assert!(s[1].ended && s[1].violations.is_empty(), "{:?}", s[1]);
    assert_eq!(s[1].audio, chunks(3).concat());
    // Each connection has its own presigned URL.
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn closing_without_audio_ends_cleanly() {
    let fake = start(options(false)).await;
    let (peer, task) = open(session(&fake, false, json!({}))).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
}

// --- 5. keepalive ----------------------------------------------------------------------------

#[tokio::test]
async fn pings_keep_the_socket_alive() {
    let fake = start(options(false)).await;
    let cfg = session(
        &fake,
        false,
        json!({"ping_interval_ms": 30, "idle_timeout_ms": 2000}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    wait_for(|| fake.sessions().first().is_some_and(|s| s.pings >= 2)).await;
    drop(peer);
    ended(task).await.unwrap();
}

// --- 6. auth, exceptions, close codes --------------------------------------------------------

#[tokio::test]
async fn rejected_signatures_are_auth_errors() {
    let fake = start(options(false)).await;
    let mut creds = credentials(false);
    creds.set("access_key_id", "AKIAWRONG".into());
    let e = open(session(&fake, false, json!({})).with_credentials(creds))
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains(SECRET), "{e}");
    let mut opts = options(false);
    opts.fault = TranscribeFault::Reject(Reject::status(429).header("retry-after", "7"));
    let fake = start(opts).await;
    match open(session(&fake, false, json!({}))).await.err().unwrap() {
        PluginError::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other}"),
    }
}

async fn fault_error(fault: TranscribeFault, after_events: usize) -> PluginError {
    let mut opts = options(false);
    opts.fault = fault;
    opts.after_events = after_events;
    let fake = start(opts).await;
    let (peer, task) = open(session(&fake, false, json!({}))).await.unwrap();
    let mut events = peer.events;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    for c in chunks(5) {
        if peer.input.send(SttInput::Audio(c)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = ended(task).await;
    drain.abort();
    r.expect_err("the fault ends the session")
}

#[tokio::test]
async fn exceptions_and_close_codes_are_categorised() {
    for (name, want) in [
        ("BadRequestException", ErrorCategory::Config),
        ("LimitExceededException", ErrorCategory::RateLimited),
        ("InternalFailureException", ErrorCategory::Transient),
        ("ServiceUnavailableException", ErrorCategory::Transient),
        ("ConflictException", ErrorCategory::Transient),
        ("UnrecognizedClientException", ErrorCategory::Auth),
    ] {
        let fault = TranscribeFault::Exception {
            name: name.into(),
            message: format!("{name} happened"),
        };
        let e = fault_error(fault, 1).await;
        assert_eq!(e.category(), want, "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let e = fault_error(
        TranscribeFault::Close {
            code: 1011,
            reason: "internal".into(),
        },
        1,
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
}

// --- 7. malformed messages -------------------------------------------------------------------

#[tokio::test]
async fn malformed_messages_never_panic_and_results_still_arrive() {
    let mut opts = options(false);
    opts.fault = TranscribeFault::Garbage;
    opts.after_events = 1;
    let fake = start(opts).await;
    let (mut peer, task) = open(session(&fake, false, json!({}))).await.unwrap();
    for c in chunks(3) {
        peer.input.send(SttInput::Audio(c)).await.unwrap();
    }
    peer.input.send(SttInput::Finalize).await.unwrap();
    let mut errors = 0;
    let fin = loop {
        match tokio::time::timeout(WAIT, peer.events.recv())
            .await
            .unwrap()
        {
            Some(SttEvent::Transcript(t)) if t.is_final => break *t,
            Some(SttEvent::Error(_)) => errors += 1,
            Some(_) => {}
            None => panic!("the session ended on garbage"),
        }
    };
    assert_eq!(fin.text, "hello world.");
    assert!(errors >= 1, "the corrupt frames were reported");
    drop(peer.input);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn oversized_messages_are_refused_without_panic() {
    let mut opts = options(false);
    opts.words = vec!["w".repeat(4096); 400];
    opts.partial_after_ms = 10_000;
    let fake = start(opts).await;
    let cfg = session(&fake, false, json!({"max_message_bytes": 65536}));
    let (peer, task) = open(cfg).await.unwrap();
    let mut events = peer.events;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    peer.input
        .send(SttInput::Audio(chunks(1)[0].clone()))
        .await
        .unwrap();
    drop(peer.input);
    // The final exceeds the socket's message limit: the stream fails after its end, which
    // ends the session without a panic or a hang (the result does not matter here).
    let _ = ended(task).await;
    drain.abort();
}

// --- 8. disconnect and silence ---------------------------------------------------------------

#[tokio::test]
async fn a_disconnect_mid_stream_is_an_error() {
    let e = fault_error(TranscribeFault::Disconnect, 1).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
}

/// Audio, then the end of stream (a finalize, or the input closing), against a fake whose
/// `fault` strikes `at` the end: every event until the task ends, and its result.
async fn end_of_stream_with(
    fault: TranscribeFault,
    at: FaultAt,
    finalize: bool,
) -> (Vec<SttEvent>, Result<(), PluginError>, TranscribeFake) {
    let mut opts = options(false);
    opts.fault = fault;
    opts.fault_at = at;
    let fake = start(opts).await;
    let (mut peer, task) = open(session(&fake, false, json!({}))).await.unwrap();
    for c in chunks(3) {
        peer.input.send(SttInput::Audio(c)).await.unwrap();
    }
    if finalize {
        peer.input.send(SttInput::Finalize).await.unwrap();
    } else {
        drop(peer.input);
    }
    let mut events = Vec::new();
    while let Some(ev) = tokio::time::timeout(WAIT, peer.events.recv())
        .await
        .expect("the session neither ended nor sent anything")
    {
        events.push(ev);
    }
    (events, ended(task).await, fake)
}

fn finals(events: &[SttEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SttEvent::Transcript(t) if t.is_final))
        .count()
}

/// After the end of stream only the service's normal close completes the stream: a 1011 close
/// or a dropped connection instead of the last final ends the session with a Transient error
/// (before, it was taken for the stream's end and the final was lost without a word).
#[tokio::test]
async fn a_drop_or_1011_after_the_end_of_stream_is_an_error() {
    let close_1011 = || TranscribeFault::Close {
        code: 1011,
        reason: "internal".into(),
    };
    for finalize in [true, false] {
        for (name, fault) in [
            ("1011", close_1011()),
            ("drop", TranscribeFault::Disconnect),
        ] {
            let (events, r, fake) = end_of_stream_with(fault, FaultAt::EndOfStream, finalize).await;
            let e = r.expect_err(name);
            assert_eq!(e.category(), ErrorCategory::Transient, "{name}: {e}");
            assert!(e.to_string().contains("after its end of stream"), "{e}");
            assert_eq!(finals(&events), 0, "{name}: {events:?}");
            assert!(
                fake.sessions()[0].ended,
                "{name}: the end of stream was sent"
            );
            assert_eq!(fake.sessions().len(), 1, "{name}: no new stream");
        }
    }
    // Also when the final came first: only the normal close says the stream is complete.
    let (events, r, _fake) = end_of_stream_with(close_1011(), FaultAt::AfterLastFinal, true).await;
    assert_eq!(finals(&events), 1, "{events:?}");
    assert_eq!(r.unwrap_err().category(), ErrorCategory::Transient);
    // The normal close after the end of stream is the stream's end: no error.
    let (events, r, _fake) =
        end_of_stream_with(TranscribeFault::None, FaultAt::EndOfStream, false).await;
    r.unwrap();
    assert_eq!(finals(&events), 1, "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, SttEvent::Error(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_silent_service_is_timed_out() {
    let mut opts = options(false);
    opts.fault = TranscribeFault::Silent;
    let fake = start(opts).await;
    let cfg = session(
        &fake,
        false,
        json!({"ping_interval_ms": 50, "idle_timeout_ms": 300}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    let e = ended(task).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    drop(peer);
    // Without pings, a finalize that is never answered is bounded too.
    let mut opts = options(false);
    opts.fault = TranscribeFault::Silent;
    opts.after_events = 1;
    let fake = start(opts).await;
    let cfg = session(&fake, false, json!({"drain_timeout_ms": 200}));
    let (peer, task) = open(cfg).await.unwrap();
    peer.input
        .send(SttInput::Audio(chunks(1)[0].clone()))
        .await
        .unwrap();
    drop(peer.input);
    ended(task).await.unwrap();
}

// --- 9. conformance --------------------------------------------------------------------------

/// A fake injecting `fault` after `after_events` audio events, for one registered fault.
async fn faulty(fault: TranscribeFault, after_events: usize) -> TranscribeFake {
    let mut opts = options(false);
    opts.fault = fault;
    opts.after_events = after_events;
    start(opts).await
}

#[tokio::test]
async fn conforms() {
    let fake = start(options(true)).await;
    let mut samples = tone(300.0, 600, 16_000);
    samples.extend(silence(200, 16_000));
    let mut fixture = SttFixture::pcm16(to_le_bytes(&samples), 16_000)
        .with_session(session(&fake, true, json!({})))
        .expect("hello world")
        .guard(WAIT);
    // Every fault the fake injects, each on its own instance (kept alive for the run).
    let mut fakes = Vec::new();
    let fails = FaultOutcome::Fails;

    // A signature made with another key: the upgrade is refused with 403.
    let f = start(options(false)).await;
    let mut creds = credentials(false);
    creds.set("access_key_id", "AKIAWRONG".into());
    fixture = fixture.fault(
        "signature rejected",
        session(&f, false, json!({})).with_credentials(creds),
        fails(ErrorCategory::Auth),
    );
    fakes.push(f);

    // The upgrade refused with a status.
    for (name, reject, category) in [
        (
            "upgrade 429 with retry-after",
            Reject::status(429).header("retry-after", "7"),
            ErrorCategory::RateLimited,
        ),
        ("upgrade 503", Reject::status(503), ErrorCategory::Transient),
        ("upgrade 500", Reject::status(500), ErrorCategory::Transient),
    ] {
        let f = faulty(TranscribeFault::Reject(reject), 0).await;
        fixture = fixture.fault(name, session(&f, false, json!({})), fails(category));
        fakes.push(f);
    }

    // Exception messages after the first audio event, then a close (as the service does).
    for (name, category) in [
        ("BadRequestException", ErrorCategory::Config),
        ("LimitExceededException", ErrorCategory::RateLimited),
        ("InternalFailureException", ErrorCategory::Transient),
        ("ServiceUnavailableException", ErrorCategory::Transient),
        ("ConflictException", ErrorCategory::Transient),
        ("UnrecognizedClientException", ErrorCategory::Auth),
    ] {
        let fault = TranscribeFault::Exception {
            name: name.into(),
            message: format!("{name} happened"),
        };
        let f = faulty(fault, 1).await;
        fixture = fixture.fault(name, session(&f, false, json!({})), fails(category));
        fakes.push(f);
    }

    // A close frame and a dropped connection while audio is owed (right after the upgrade),
    // and the same instead of the last final after the end of stream; mid-stream disconnects
    // are checked by `a_disconnect_mid_stream_is_an_error`.
    for (name, fault) in [
        (
            "close 1011 after the end of stream",
            TranscribeFault::Close {
                code: 1011,
                reason: "internal".into(),
            },
        ),
        (
            "disconnect after the end of stream",
            TranscribeFault::Disconnect,
        ),
    ] {
        let mut opts = options(false);
        opts.fault = fault;
        opts.fault_at = FaultAt::EndOfStream;
        let f = start(opts).await;
        fixture = fixture.fault(
            name,
            session(&f, false, json!({})),
            fails(ErrorCategory::Transient),
        );
        fakes.push(f);
    }
    let f = faulty(
        TranscribeFault::Close {
            code: 1011,
            reason: "internal".into(),
        },
        0,
    )
    .await;
    fixture = fixture.fault(
        "close 1011",
        session(&f, false, json!({})),
        fails(ErrorCategory::Transient),
    );
    fakes.push(f);
    let f = faulty(TranscribeFault::Disconnect, 0).await;
    fixture = fixture.fault(
        "disconnect",
        session(&f, false, json!({})),
        fails(ErrorCategory::Transient),
    );
    fakes.push(f);

    // Malformed frames: skipped, each reported as a non-fatal Transient error event.
    let f = faulty(TranscribeFault::Garbage, 1).await;
    fixture = fixture.fault(
        "malformed frames",
        session(&f, false, json!({})),
        fails(ErrorCategory::Transient),
    );
    fakes.push(f);

    // A service that goes quiet after the first audio: the finalize is never answered and times
    // out (non-fatal). Unanswered pings are `a_silent_service_is_timed_out`.
    let f = faulty(TranscribeFault::Silent, 1).await;
    fixture = fixture.fault(
        "silent (finalize unanswered)",
        session(&f, false, json!({"finalize_timeout_ms": 300})),
        fails(ErrorCategory::Timeout),
    );
    fakes.push(f);

    let report = check_stt(&TranscribeStt, &fixture).await;
    report.assert_ok();
    for s in fake.sessions() {
        let bad: Vec<_> = s
            .violations
            .iter()
            .filter(|v| !v.contains("after the end"))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }
    // Each fault reached its own fake.
    assert!(fakes.iter().all(|f| !f.requests().is_empty()));
}

// --- 10. refused before dialling -------------------------------------------------------------

#[tokio::test]
async fn unsupported_configs_are_refused_before_dialling() {
    let fake = start(options(false)).await;
    let refuse = |cfg: SttSessionConfig| async move {
        match open(cfg).await {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    };
    let mut c = session(&fake, false, json!({}));
    c.encoding = AudioEncoding::Mulaw;
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut c = session(&fake, false, json!({}));
    c.sample_rate = 96_000;
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let c = session(&fake, false, json!({})).with_format(AudioEncoding::Linear16, 2);
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut c = session(&fake, false, json!({}));
    c.language = "en US&x=1".into();
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut only_id = Credentials::new();
    only_id.set("access_key_id", AKID.into());
    let c = session(&fake, false, json!({})).with_credentials(only_id);
    assert_eq!(refuse(c).await.category(), ErrorCategory::Auth);
    let c = session(
        &fake,
        false,
        json!({"partial_results_stability": "extreme"}),
    );
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    assert!(fake.requests().is_empty());
}
