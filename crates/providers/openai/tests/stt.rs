//! The OpenAI and Groq STT plugins against the fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_openai::TranscriptionsStt;
use waav_plugin_api::{
    AudioEncoding, ErrorCategory, PluginConfig, PluginError, Secret, SttEvent, SttInput, SttIo,
    SttPeer, SttPlugin, SttSessionConfig, Transcript, VadEvent,
};
use waav_testkit::audio::{silence, to_le_bytes, tone};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::openai::{Api, FakeOptions, Fault, OpenAiFake};

const RATE: u32 = 16_000;
const WAIT: Duration = Duration::from_secs(10);

fn tone_ms(ms: u32) -> Vec<u8> {
    to_le_bytes(&tone(300.0, ms, RATE))
}

fn silence_ms(ms: u32) -> Vec<u8> {
    to_le_bytes(&silence(ms, RATE))
}

fn session(base_url: &str, key: &str, extra: serde_json::Value) -> SttSessionConfig {
    let mut section = json!({ "base_url": base_url });
    if let (Some(s), Some(e)) = (section.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    SttSessionConfig::new("en-US", RATE)
        .with_api_key(Some(Secret::new(key)))
        .with_plugin_config(PluginConfig::from_value("plugins.stt.openai", section).unwrap())
}

async fn open(
    plugin: &TranscriptionsStt,
    cfg: SttSessionConfig,
) -> (SttPeer, JoinHandle<Result<(), PluginError>>) {
    let (io, peer) = SttIo::pair(256);
    let task = plugin.connect(cfg, io).await.expect("connect");
    (peer, tokio::spawn(task))
}

async fn send(peer: &SttPeer, input: SttInput) {
    peer.input
        .send(input)
        .await
        .expect("the session reads its input");
}

async fn audio(peer: &SttPeer, pcm: &[u8]) {
    for c in pcm.chunks(640) {
        send(peer, SttInput::Audio(Bytes::copy_from_slice(c))).await;
    }
}

async fn next(peer: &mut SttPeer) -> Option<SttEvent> {
    tokio::time::timeout(WAIT, peer.events.recv())
        .await
        .expect("an event within the wait")
}

/// Events until `n` finals (or errors) have arrived.
async fn until_finals(peer: &mut SttPeer, n: usize) -> Vec<SttEvent> {
    let mut out = Vec::new();
    let mut ends = 0;
    while ends < n {
        let ev = next(peer).await.expect("the session is alive");
        if matches!(&ev, SttEvent::Transcript(t) if t.is_final) || matches!(ev, SttEvent::Error(_))
        {
            ends += 1;
        }
        out.push(ev);
    }
    out
}

fn finals(events: &[SttEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) if t.is_final => Some((**t).clone()),
            _ => None,
        })
        .collect()
}

async fn ended(task: JoinHandle<Result<(), PluginError>>) -> Result<(), PluginError> {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the task ends")
        .expect("no panic")
}

#[tokio::test]
async fn multipart_request_shape_and_wav_file() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(
        &fake.base_url(),
        "test-key",
        json!({"stream": false, "prompt": "Names: WaaV.", "organization": "org-1", "project": "proj-1", "temperature": 0.2}),
    );
    let (mut peer, task) = open(&plugin, cfg).await;
    let pcm = tone_ms(500);
    audio(&peer, &pcm).await;
    send(&peer, SttInput::Finalize).await;
    let events = until_finals(&mut peer, 1).await;
    let f = finals(&events);
    assert_eq!(f[0].text, "alpha bravo");
    assert!(f[0].is_final && f[0].is_speech_final);
    assert!(
        (f[0].confidence - (-0.01f32).exp()).abs() < 1e-4,
        "{}",
        f[0].confidence
    );
    drop(peer);
    ended(task).await.unwrap();

    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.api, r.request.path()),
        (Api::OpenAi, "/v1/audio/transcriptions")
    );
    assert_eq!(r.request.header("authorization"), Some("Bearer test-key"));
    assert_eq!(r.request.header("openai-organization"), Some("org-1"));
    assert_eq!(r.request.header("openai-project"), Some("proj-1"));
    assert!(r
        .request
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    assert_eq!(r.field("model").as_deref(), Some("gpt-4o-transcribe"));
    assert_eq!(r.field("language").as_deref(), Some("en"));
    assert_eq!(r.field("prompt").as_deref(), Some("Names: WaaV."));
    assert_eq!(r.field("temperature").as_deref(), Some("0.2"));
    assert_eq!(r.field("response_format").as_deref(), Some("json"));
    assert_eq!(r.fields("include[]"), ["logprobs"]);
    assert_eq!(r.field("stream"), None);
    let file = r.file().unwrap();
    assert_eq!(file.filename.as_deref(), Some("audio.wav"));
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
    let wav = r.wav.as_ref().unwrap();
    assert_eq!(
        (wav.format, wav.channels, wav.sample_rate, wav.bits),
        (1, 1, RATE, 16)
    );
    assert_eq!(wav.byte_rate, RATE * 2);
    assert_eq!(wav.data_len as usize, pcm.len());
    assert_eq!(wav.riff_len, wav.data_len + 36);
    assert_eq!(wav.pcm, pcm, "the audio is uploaded byte-exact");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn streamed_sse_interims_then_the_final() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new("test-key").fault(Fault::HoldAfterFirstChunk))
            .await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(&fake.base_url(), "test-key", json!({})).with_model("gpt-4o-mini-transcribe");
    let (mut peer, task) = open(&plugin, cfg).await;
    audio(&peer, &tone_ms(750)).await;
    send(&peer, SttInput::Finalize).await;
    // The first delta arrives while the fake holds the rest of the stream.
    match next(&mut peer).await {
        Some(SttEvent::Transcript(t)) => {
            assert!(!t.is_final);
            assert_eq!(t.text, "alpha");
        }
        other => panic!("expected an interim, got {other:?}"),
    }
    fake.release();
    let events = until_finals(&mut peer, 1).await;
    let texts: Vec<(String, bool)> = events
        .iter()
        .map(|e| match e {
            SttEvent::Transcript(t) => (t.text.clone(), t.is_final),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("alpha bravo".to_owned(), false),
            ("alpha bravo charlie".to_owned(), false),
            ("alpha bravo charlie".to_owned(), true)
        ]
    );
    let f = finals(&events);
    assert!(f[0].is_speech_final);
    let r = &fake.transcriptions()[0];
    assert_eq!(r.field("stream").as_deref(), Some("true"));
    assert!(r.streamed);
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn whisper_answers_verbose_json_with_word_times() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(&fake.base_url(), "test-key", json!({})).with_model("whisper-1");
    let (mut peer, task) = open(&plugin, cfg).await;
    let mut pcm = silence_ms(300);
    pcm.extend(tone_ms(500));
    audio(&peer, &pcm).await;
    send(&peer, SttInput::Finalize).await;
    let events = until_finals(&mut peer, 1).await;
    assert_eq!(events.len(), 1, "whisper-1 does not stream: {events:?}");
    let t = &finals(&events)[0];
    assert_eq!(t.text, "alpha bravo");
    assert_eq!(t.words.len(), 2);
    assert_eq!(t.words[0].word, "alpha");
    assert!((t.words[0].start - 0.3).abs() < 0.011, "{:?}", t.words);
    assert!(t.words[1].start > t.words[0].end - 1e-9);
    assert!((t.confidence - (-0.05f32).exp()).abs() < 1e-4);
    assert_eq!(t.language.as_deref(), Some("english"));
    let r = &fake.transcriptions()[0];
    assert_eq!(r.field("response_format").as_deref(), Some("verbose_json"));
    assert_eq!(r.fields("timestamp_granularities[]"), ["word", "segment"]);
    assert_eq!(
        r.field("stream"),
        None,
        "whisper-1 is never asked to stream"
    );
    assert!(r.fields("include[]").is_empty());
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn vad_events_cut_utterances_and_silence_is_not_uploaded() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(&fake.base_url(), "test-key", json!({"stream": false}));
    let (mut peer, task) = open(&plugin, cfg).await;
    let vad = |e| SttInput::Vad(e);
    audio(&peer, &silence_ms(1000)).await;
    send(&peer, vad(VadEvent::SpeechStarted { at_ms: 1000 })).await;
    audio(&peer, &tone_ms(500)).await;
    send(&peer, vad(VadEvent::SpeechEnded { at_ms: 1500 })).await;
    audio(&peer, &silence_ms(1000)).await;
    // Finalize outside speech uploads nothing: only the pre-roll of silence is buffered.
    send(&peer, SttInput::Finalize).await;
    send(&peer, vad(VadEvent::SpeechStarted { at_ms: 2500 })).await;
    audio(&peer, &tone_ms(1000)).await;
    send(&peer, vad(VadEvent::SpeechEnded { at_ms: 3500 })).await;
    audio(&peer, &silence_ms(500)).await;
    let events = until_finals(&mut peer, 2).await;
    drop(peer);
    ended(task).await.unwrap();
    let f = finals(&events);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].text, "alpha bravo");
    assert_eq!(f[1].text, "alpha bravo charlie delta");
    assert!(f.iter().all(|t| t.is_speech_final));
    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 2, "two utterances, two requests");
    // 300 ms of pre-roll then the speech; the 700 ms of silence before it stayed home.
    let first = &reqs[0].wav.as_ref().unwrap().pcm;
    let mut want = silence_ms(300);
    want.extend(tone_ms(500));
    assert_eq!(first, &want);
    let second = &reqs[1].wav.as_ref().unwrap().pcm;
    let mut want = silence_ms(300);
    want.extend(tone_ms(1000));
    assert_eq!(second, &want);
    assert!(
        f[0].words.is_empty(),
        "gpt-4o models answer json: no word times"
    );
}

#[tokio::test]
async fn word_times_follow_the_stream_after_vad_trimming() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(&fake.base_url(), "test-key", json!({})).with_model("whisper-1");
    let (mut peer, task) = open(&plugin, cfg).await;
    audio(&peer, &silence_ms(2000)).await;
    send(
        &peer,
        SttInput::Vad(VadEvent::SpeechStarted { at_ms: 2000 }),
    )
    .await;
    audio(&peer, &tone_ms(500)).await;
    send(&peer, SttInput::Vad(VadEvent::SpeechEnded { at_ms: 2500 })).await;
    let f = finals(&until_finals(&mut peer, 1).await);
    assert!(
        (f[0].words[0].start - 2.0).abs() < 0.011,
        "{:?}",
        f[0].words
    );
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn finalize_cuts_and_max_utterance_cuts() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(
        &fake.base_url(),
        "test-key",
        json!({"stream": false, "max_utterance_ms": 1000}),
    );
    let (mut peer, task) = open(&plugin, cfg).await;
    audio(&peer, &tone_ms(2500)).await;
    let f = finals(&until_finals(&mut peer, 2).await);
    assert_eq!(f.len(), 2);
    assert!(f
        .iter()
        .all(|t| t.text == "alpha bravo charlie delta" && !t.is_speech_final));
    send(&peer, SttInput::Finalize).await;
    let f = finals(&until_finals(&mut peer, 1).await);
    assert_eq!(f[0].text, "alpha bravo");
    assert!(f[0].is_speech_final);
    // A short utterance (below min_utterance_ms) is skipped; then the input closes mid-speech:
    // the remainder is cut and its result drained before the task ends.
    audio(&peer, &tone_ms(100)).await;
    send(&peer, SttInput::Finalize).await;
    audio(&peer, &tone_ms(250)).await;
    let (closed, _) = tokio::sync::mpsc::channel(1);
    drop(std::mem::replace(&mut peer.input, closed));
    let f = finals(&until_finals(&mut peer, 1).await);
    assert_eq!(f[0].text, "alpha");
    ended(task).await.unwrap();
    let lens: Vec<usize> = fake
        .transcriptions()
        .iter()
        .map(|r| r.wav.as_ref().unwrap().pcm.len())
        .collect();
    assert_eq!(lens, [32_000, 32_000, 16_000, 8_000]);
}

#[tokio::test]
async fn results_are_emitted_in_order_when_the_second_answers_first() {
    let fake =
        OpenAiFake::with_options(FakeOptions::new("test-key").fault(Fault::AnswerSecondFirst))
            .await;
    let plugin = TranscriptionsStt::openai();
    let cfg = session(&fake.base_url(), "test-key", json!({"stream": false}));
    let (mut peer, task) = open(&plugin, cfg).await;
    audio(&peer, &tone_ms(250)).await;
    send(&peer, SttInput::Finalize).await;
    audio(&peer, &tone_ms(750)).await;
    send(&peer, SttInput::Finalize).await;
    let f = finals(&until_finals(&mut peer, 2).await);
    assert_eq!(f[0].text, "alpha");
    assert_eq!(f[1].text, "alpha bravo charlie");
    let reqs = fake.transcriptions();
    assert_eq!(
        reqs[1].answered,
        Some(0),
        "the fake answered the second request first"
    );
    assert_eq!(reqs[0].answered, Some(1));
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn groq_uses_its_path_key_and_whisper_model() {
    let fake = OpenAiFake::start("openai-key").await;
    let plugin = TranscriptionsStt::groq();
    assert_eq!(waav_plugin_api::Plugin::info(&plugin).id, "groq");
    let cfg = session(
        &fake.groq_base_url(),
        "groq-test-key",
        json!({"organization": "org-x"}),
    );
    let (mut peer, task) = open(&plugin, cfg).await;
    audio(&peer, &tone_ms(500)).await;
    send(&peer, SttInput::Finalize).await;
    let events = until_finals(&mut peer, 1).await;
    assert_eq!(events.len(), 1, "Groq does not stream: {events:?}");
    let t = &finals(&events)[0];
    assert_eq!(t.text, "alpha bravo");
    assert_eq!(t.words.len(), 2);
    drop(peer);
    ended(task).await.unwrap();
    let r = &fake.transcriptions()[0];
    assert_eq!(
        (r.api, r.request.path()),
        (Api::Groq, "/openai/v1/audio/transcriptions")
    );
    assert_eq!(
        r.request.header("authorization"),
        Some("Bearer groq-test-key")
    );
    assert_eq!(r.request.header("openai-organization"), None);
    assert_eq!(r.field("model").as_deref(), Some("whisper-large-v3-turbo"));
    assert_eq!(r.field("response_format").as_deref(), Some("verbose_json"));
    assert_eq!(r.field("stream"), None);
    assert_eq!(r.wav.as_ref().unwrap().sample_rate, RATE);
}

#[tokio::test]
async fn a_rejected_key_ends_the_session_with_auth() {
    let fake = OpenAiFake::start("right").await;
    let plugin = TranscriptionsStt::openai();
    let (peer, task) = open(&plugin, session(&fake.base_url(), "wrong", json!({}))).await;
    audio(&peer, &tone_ms(300)).await;
    send(&peer, SttInput::Finalize).await;
    let err = ended(task).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Auth, "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

/// A 429 saying the account is out of credits is not a rate limit: retrying cannot help, so
/// it ends the session with Auth (as a 402 would), while the pace-limit 429 stays a non-fatal
/// RateLimited error (`per_utterance_failures_are_non_fatal`).
#[tokio::test]
async fn an_exhausted_quota_ends_the_session_with_auth() {
    for extra in [json!({"stream": false}), json!({})] {
        let fake = OpenAiFake::with_options(
            FakeOptions::new("test-key").fault(Fault::insufficient_quota()),
        )
        .await;
        let plugin = TranscriptionsStt::openai();
        let (peer, task) = open(
            &plugin,
            session(&fake.base_url(), "test-key", extra.clone()),
        )
        .await;
        audio(&peer, &tone_ms(300)).await;
        send(&peer, SttInput::Finalize).await;
        let err = ended(task).await.unwrap_err();
        assert_eq!(err.category(), ErrorCategory::Auth, "{extra}: {err}");
        assert!(
            err.to_string().contains("exceeded your current quota"),
            "{err}"
        );
        assert_eq!(
            fake.transcriptions().len(),
            1,
            "{extra}: asked once, not retried"
        );
        drop(peer);
    }
}

/// A 500 before the response head is sent again through the kit's retry (the same form), and
/// the utterance is transcribed with no error; streamed or not.
#[tokio::test]
async fn a_500_on_the_first_attempt_is_retried() {
    for extra in [json!({"stream": false}), json!({})] {
        let fake = OpenAiFake::with_options(
            FakeOptions::new("test-key")
                .fault(Fault::Status {
                    status: 500,
                    body: "upstream broke".into(),
                    retry_after: None,
                })
                .fault_on(0),
        )
        .await;
        let plugin = TranscriptionsStt::openai();
        let (mut peer, task) = open(
            &plugin,
            session(&fake.base_url(), "test-key", extra.clone()),
        )
        .await;
        audio(&peer, &tone_ms(300)).await;
        send(&peer, SttInput::Finalize).await;
        let events = until_finals(&mut peer, 1).await;
        assert!(
            !events.iter().any(|e| matches!(e, SttEvent::Error(_))),
            "{extra}: {events:?}"
        );
        assert_eq!(finals(&events)[0].text, "alpha bravo", "{extra}");
        let seen = fake.transcriptions();
        assert_eq!(
            seen.len(),
            2,
            "{extra}: one refused attempt, then the served one"
        );
        assert_eq!(seen[0].status, 500);
        assert_eq!(seen[1].status, 200);
        // The fake refuses before parsing the form: compare its head.
        for h in ["content-type", "content-length"] {
            assert_eq!(
                seen[0].request.header(h),
                seen[1].request.header(h),
                "{extra}: the same form sent again ({h})"
            );
        }
        drop(peer);
        ended(task).await.unwrap();
    }
}

async fn failed_then_recovered(fault: Fault, extra: serde_json::Value) -> PluginError {
    failed_then_recovered_with(FakeOptions::new("test-key").fault(fault).fault_on(0), extra).await
}

/// The first utterance fails as `opts` says, the next one is transcribed.
async fn failed_then_recovered_with(opts: FakeOptions, extra: serde_json::Value) -> PluginError {
    let fake = OpenAiFake::with_options(opts).await;
    let plugin = TranscriptionsStt::openai();
    let (mut peer, task) = open(&plugin, session(&fake.base_url(), "test-key", extra)).await;
    audio(&peer, &tone_ms(300)).await;
    send(&peer, SttInput::Finalize).await;
    let events = until_finals(&mut peer, 1).await;
    let err = match events.last() {
        Some(SttEvent::Error(e)) => e.clone(),
        other => panic!("expected an error event, got {other:?} in {events:?}"),
    };
    // The session goes on: the next utterance is transcribed.
    audio(&peer, &tone_ms(300)).await;
    send(&peer, SttInput::Finalize).await;
    let f = finals(&until_finals(&mut peer, 1).await);
    assert_eq!(f[0].text, "alpha bravo");
    drop(peer);
    ended(task).await.unwrap();
    err
}

#[tokio::test]
async fn per_utterance_failures_are_non_fatal() {
    let e = failed_then_recovered(
        Fault::Status {
            status: 429,
            body: r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#.into(),
            retry_after: Some(7),
        },
        json!({"stream": false}),
    )
    .await;
    match e {
        PluginError::RateLimited {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = failed_then_recovered(
        Fault::Status {
            status: 413,
            body: String::new(),
            retry_after: None,
        },
        json!({"stream": false}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Permanent);
    assert!(e.to_string().contains("audio too large"), "{e}");
    // A 500 is retried by the kit (first attempt + 2 retries): it fails the utterance only
    // when it outlasts them (a first-only 500 is hidden: `a_500_on_the_first_attempt_is_retried`).
    let e = failed_then_recovered_with(
        FakeOptions::new("test-key")
            .fault(Fault::Status {
                status: 500,
                body: "upstream broke".into(),
                retry_after: None,
            })
            .fault_first(3),
        json!({"stream": false}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Transient);
    let e = failed_then_recovered(
        Fault::Status {
            status: 400,
            body: r#"{"error":{"message":"Audio file is too short.","type":"invalid_request_error","param":"file","code":"audio_too_short"}}"#.into(),
            retry_after: None,
        },
        json!({"stream": false}),
    )
    .await;
    assert_eq!(
        e.category(),
        ErrorCategory::Permanent,
        "a 400 about the file is this utterance's"
    );
    let e = failed_then_recovered(Fault::Garbage, json!({"stream": false})).await;
    assert_eq!(e.category(), ErrorCategory::Permanent);
    let e = failed_then_recovered(Fault::Truncate { after_chunks: 1 }, json!({})).await;
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    // A truncated JSON body: when the response head got out before the connection died, the
    // utterance fails (the body is never retried); when it did not, the kit's retry (a dropped
    // connection before the head) hides the fault and the fake saw a second request.
    let fake = OpenAiFake::with_options(
        FakeOptions::new("test-key")
            .fault(Fault::Truncate { after_chunks: 1 })
            .fault_on(0),
    )
    .await;
    let plugin = TranscriptionsStt::openai();
    let (mut peer, task) = open(
        &plugin,
        session(&fake.base_url(), "test-key", json!({"stream": false})),
    )
    .await;
    audio(&peer, &tone_ms(300)).await;
    send(&peer, SttInput::Finalize).await;
    match until_finals(&mut peer, 1).await.last() {
        Some(SttEvent::Error(e)) => assert!(
            e.is_retryable() || e.category() == ErrorCategory::Permanent,
            "{e}"
        ),
        Some(SttEvent::Transcript(t)) => {
            assert_eq!(t.text, "alpha bravo");
            assert_eq!(fake.transcriptions().len(), 2, "hidden only by a retry");
        }
        other => panic!("{other:?}"),
    }
    drop(peer);
    ended(task).await.unwrap();
    let e = failed_then_recovered(Fault::Silent, json!({"request_timeout_ms": 300})).await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
    let e = failed_then_recovered(
        Fault::Silent,
        json!({"request_timeout_ms": 300, "stream": false}),
    )
    .await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn junk_sse_events_are_skipped() {
    let fake = OpenAiFake::with_options(FakeOptions::new("test-key").fault(Fault::Garbage)).await;
    let plugin = TranscriptionsStt::openai();
    let (mut peer, task) = open(&plugin, session(&fake.base_url(), "test-key", json!({}))).await;
    audio(&peer, &tone_ms(500)).await;
    send(&peer, SttInput::Finalize).await;
    let f = finals(&until_finals(&mut peer, 1).await);
    assert_eq!(f[0].text, "alpha bravo");
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn unsupported_configs_are_refused_before_any_request() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let base = || session(&fake.base_url(), "test-key", json!({}));
    let cases = [
        base().with_format(AudioEncoding::Mulaw, 1),
        base().with_format(AudioEncoding::Linear16, 2),
        {
            let mut c = base();
            c.sample_rate = 44_100;
            c
        },
        session(
            &fake.base_url(),
            "test-key",
            json!({"max_utterance_ms": 120_000}),
        ),
        session(&fake.base_url(), "test-key", json!({"base_url": "ftp://x"})),
    ];
    for cfg in cases {
        let (io, _peer) = SttIo::pair(8);
        let e = plugin.connect(cfg, io).await.err().expect("refused");
        assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    }
    let (io, _peer) = SttIo::pair(8);
    let e = plugin
        .connect(base().with_api_key(None), io)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(fake.transcriptions().is_empty());
}

fn fixture(cfg: SttSessionConfig) -> SttFixture {
    let mut samples = tone(300.0, 600, RATE);
    samples.extend(silence(400, RATE));
    SttFixture::pcm16(to_le_bytes(&samples), RATE)
        .with_session(cfg)
        .expect("alpha")
        .guard(Duration::from_secs(10))
}

/// An OpenAI error envelope.
fn envelope(message: &str, kind: &str, code: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

fn status(status: u16, body: String, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        status,
        body,
        retry_after,
    }
}

/// Registers every fault the fake injects, each on its own fake (returned, to keep them alive).
/// `groq`: the Groq API (no SSE), else OpenAI with SSE interims (gpt-4o) unless `stream` is off.
async fn with_faults(mut fixture: SttFixture, groq: bool) -> (SttFixture, Vec<OpenAiFake>) {
    let key = if groq { "groq-test-key" } else { "test-key" };
    let mut fakes = Vec::new();
    let mut add = |fixture: SttFixture,
                   fake: OpenAiFake,
                   name: &str,
                   extra: serde_json::Value,
                   outcome: FaultOutcome| {
        let url = if groq {
            fake.groq_base_url()
        } else {
            fake.base_url()
        };
        let f = fixture.fault(name, session(&url, key, extra), outcome);
        fakes.push(fake);
        f
    };
    let fails = FaultOutcome::Fails;
    let faulty = |fault: Fault| OpenAiFake::with_options(FakeOptions::new("test-key").fault(fault));

    // A key the API does not know: 401 invalid_api_key, fatal.
    let f =
        OpenAiFake::with_options(FakeOptions::new("other-key").groq_key("other-groq-key")).await;
    fixture = add(
        fixture,
        f,
        "401 invalid_api_key",
        json!({}),
        fails(ErrorCategory::Auth),
    );
    let body = envelope(
        "You are not allowed to sample from this model",
        "invalid_request_error",
        "model_not_found",
    );
    fixture = add(
        fixture,
        faulty(status(403, body, None)).await,
        "403",
        json!({}),
        fails(ErrorCategory::Auth),
    );
    // A model the API refuses: 400 model_not_found, fatal.
    let f = OpenAiFake::start("test-key").await;
    let model = if groq {
        "whisper-large-v9"
    } else {
        "gpt-9-transcribe"
    };
    fixture = add(
        fixture,
        f,
        "400 model_not_found",
        json!({"model": model}),
        fails(ErrorCategory::Config),
    );
    // Per-utterance failures: error events, the session goes on.
    let body = envelope(
        "Rate limit reached for requests",
        "requests",
        "rate_limit_exceeded",
    );
    fixture = add(
        fixture,
        faulty(status(429, body, Some(7))).await,
        "429 with retry-after",
        json!({"stream": false}),
        fails(ErrorCategory::RateLimited),
    );
    if !groq {
        // Billing exhausted (OpenAI's `insufficient_quota` 429): fatal, like a 402.
        fixture = add(
            fixture,
            faulty(Fault::insufficient_quota()).await,
            "429 insufficient_quota",
            json!({"stream": false}),
            fails(ErrorCategory::Auth),
        );
    }
    let body = envelope(
        "The server had an error while processing your request.",
        "server_error",
        "server_error",
    );
    fixture = add(
        fixture,
        faulty(status(500, body, None)).await,
        "500",
        json!({"stream": false}),
        fails(ErrorCategory::Transient),
    );
    fixture = add(
        fixture,
        faulty(status(503, "upstream connect error".into(), None)).await,
        "503",
        json!({}),
        fails(ErrorCategory::Transient),
    );
    fixture = add(
        fixture,
        faulty(status(413, String::new(), None)).await,
        "413",
        json!({"stream": false}),
        fails(ErrorCategory::Permanent),
    );
    let body = envelope(
        "Audio file is too short.",
        "invalid_request_error",
        "audio_too_short",
    );
    fixture = add(
        fixture,
        faulty(status(400, body, None)).await,
        "400 about the file",
        json!({"stream": false}),
        fails(ErrorCategory::Permanent),
    );
    // A 200 whose JSON does not parse.
    fixture = add(
        fixture,
        faulty(Fault::Garbage).await,
        "garbage JSON",
        json!({"stream": false}),
        fails(ErrorCategory::Permanent),
    );
    // The body cut off mid-way (the connection drops while the answer streams).
    fixture = add(
        fixture,
        faulty(Fault::Truncate { after_chunks: 1 }).await,
        "truncated JSON",
        json!({"stream": false}),
        fails(ErrorCategory::Transient),
    );
    // The head sent, then nothing: request_timeout_ms.
    fixture = add(
        fixture,
        faulty(Fault::Silent).await,
        "silent JSON body",
        json!({"stream": false, "request_timeout_ms": 300}),
        fails(ErrorCategory::Timeout),
    );
    if !groq {
        // SSE: junk events are skipped, a cut stream and a stalled one fail the utterance.
        fixture = add(
            fixture,
            faulty(Fault::Garbage).await,
            "junk SSE events",
            json!({}),
            FaultOutcome::Recovers,
        );
        fixture = add(
            fixture,
            faulty(Fault::Truncate { after_chunks: 1 }).await,
            "SSE cut after a delta",
            json!({}),
            fails(ErrorCategory::Transient),
        );
        fixture = add(
            fixture,
            faulty(Fault::Silent).await,
            "silent SSE",
            json!({"request_timeout_ms": 300}),
            fails(ErrorCategory::Timeout),
        );
    }
    (fixture, fakes)
}

#[tokio::test]
async fn openai_conforms() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::openai();
    let (faulty, fakes) = with_faults(
        fixture(session(&fake.base_url(), "test-key", json!({}))),
        false,
    )
    .await;
    check_stt(&plugin, &faulty).await.assert_ok();
    assert!(
        fakes.iter().all(|f| !f.transcriptions().is_empty()),
        "every fault's fake was asked"
    );
    let whisper = session(&fake.base_url(), "test-key", json!({})).with_model("whisper-1");
    check_stt(&plugin, &fixture(whisper)).await.assert_ok();
}

#[tokio::test]
async fn groq_conforms() {
    let fake = OpenAiFake::start("test-key").await;
    let plugin = TranscriptionsStt::groq();
    let (faulty, fakes) = with_faults(
        fixture(session(&fake.groq_base_url(), "groq-test-key", json!({}))),
        true,
    )
    .await;
    check_stt(&plugin, &faulty).await.assert_ok();
    assert!(
        fakes.iter().all(|f| !f.transcriptions().is_empty()),
        "every fault's fake was asked"
    );
}
