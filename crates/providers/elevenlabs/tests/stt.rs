//! The real ElevenLabs realtime STT client against the protocol fake over 127.0.0.1.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_elevenlabs::ElevenLabsStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, Plugin, PluginConfig, PluginContext, PluginError,
    Secret, SttEvent, SttInput, SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript, VadEvent,
};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};
use waav_testkit::fakes::elevenlabs_stt::{AuthFailure, ElevenLabsSttFake, ElevenLabsSttOptions};
use waav_testkit::fakes::Reject;

const KEY: &str = "test-elevenlabs-key";
const GUARD: Duration = Duration::from_secs(10);

fn config(fake: &ElevenLabsSttFake, key: &str, plugin: Value) -> SttSessionConfig {
    let mut section = json!({"base_url": fake.base_url()});
    for (k, v) in plugin.as_object().cloned().unwrap_or_default() {
        section[k] = v;
    }
    let mut creds = Credentials::new();
    creds.set("api_key", Secret::from(key));
    SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(key)))
        .with_credentials(creds)
        .with_plugin_config(PluginConfig::from_value("plugins.stt.elevenlabs", section).unwrap())
}

type Task = JoinHandle<Result<(), PluginError>>;

async fn open(cfg: SttSessionConfig) -> Result<(SttPeer, Task), PluginError> {
    let (io, peer) = SttIo::pair(64);
    let task = tokio::time::timeout(GUARD, ElevenLabsStt::new().connect(cfg, io))
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

async fn task_error(task: Task) -> PluginError {
    ended(task).await.expect_err("the task should fail")
}

fn chunk_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn url_query_and_auth_header_are_as_documented() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let cfg = config(
        &fake,
        KEY,
        json!({"keyterms": ["WaaV", "Scribe v2"], "vad_silence_threshold_secs": 0.5,
               "vad_threshold": 0.4, "min_speech_duration_ms": 100,
               "min_silence_duration_ms": 150, "no_verbatim": true}),
    );
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path(), "/v1/speech-to-text/realtime");
    assert_eq!(req.query("model_id"), Some("scribe_v2_realtime"));
    assert_eq!(req.query("audio_format"), Some("pcm_16000"));
    assert_eq!(req.query("commit_strategy"), Some("vad"));
    assert_eq!(req.query("language_code"), Some("en"));
    assert_eq!(req.query("include_timestamps"), Some("true"));
    assert_eq!(req.query("vad_silence_threshold_secs"), Some("0.5"));
    assert_eq!(req.query("vad_threshold"), Some("0.4"));
    assert_eq!(req.query("min_speech_duration_ms"), Some("100"));
    assert_eq!(req.query("min_silence_duration_ms"), Some("150"));
    assert_eq!(req.query("no_verbatim"), Some("true"));
    assert!(
        req.uri.contains("keyterms=WaaV&keyterms=Scribe+v2"),
        "{}",
        req.uri
    );
    assert_eq!(req.header("xi-api-key"), Some(KEY));
    assert_eq!(req.query("token"), None, "the key stays in the header");

    // Mu-law at 8 kHz natively; manual commits; auto language; no timestamps.
    let mut cfg = config(
        &fake,
        KEY,
        json!({"commit_strategy": "manual", "include_timestamps": false}),
    );
    cfg.encoding = AudioEncoding::Mulaw;
    cfg.sample_rate = 8_000;
    cfg.language = "auto".into();
    let (peer, task) = open(cfg).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let req = &fake.requests()[1];
    assert_eq!(req.query("audio_format"), Some("ulaw_8000"));
    assert_eq!(req.query("commit_strategy"), Some("manual"));
    assert_eq!(req.query("include_timestamps"), Some("false"));
    assert_eq!(req.query("language_code"), None);
}

#[tokio::test]
async fn audio_reaches_the_vendor_decoded_equal() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let (mut peer, task) = open(config(
        &fake,
        KEY,
        json!({"previous_text": "Earlier, we said"}),
    ))
    .await
    .unwrap();
    let mut sent = pcm(300, 1);
    send_audio(&peer, &sent, 640).await; // the gateway's 20 ms frames
    let big = pcm(2500, 2); // longer than max_chunk_ms (1 s): split
    send_audio(&peer, &big, big.len()).await;
    sent.extend_from_slice(&big);
    let odd = pcm(10, 3);
    send_audio(&peer, &odd[..101], 101).await; // half a sample at the end…
    send_audio(&peer, &odd[101..], 1000).await; // …completed by the next chunk
    sent.extend_from_slice(&odd);
    peer.input.send(SttInput::Finalize).await.unwrap();
    until(&mut peer, is_final).await;
    drop(peer);
    ended(task).await.unwrap();
    let s = &fake.sessions()[0];
    assert_eq!(s.audio, sent, "audio changed on the way");
    assert!(
        s.chunk_sizes.iter().all(|n| n % 2 == 0 && *n <= 32_000),
        "{:?}",
        s.chunk_sizes
    );
    assert!(s.chunk_sizes.contains(&32_000), "{:?}", s.chunk_sizes);
    // Context goes with the first chunk only.
    assert_eq!(s.previous_texts, [(0, "Earlier, we said".to_owned())]);
    let first = chunk_json(&s.texts[0]);
    assert_eq!(first["message_type"], "input_audio_chunk");
    assert_eq!(first["commit"], false);
    assert_eq!(first["sample_rate"], 16000);
}

#[tokio::test]
async fn mulaw_at_16k_is_sent_as_pcm() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let mut cfg = config(&fake, KEY, json!({}));
    cfg.encoding = AudioEncoding::Mulaw;
    let (mut peer, task) = open(cfg).await.unwrap();
    let ulaw: Vec<u8> = (0..1600u32).map(|i| (i % 251) as u8).collect();
    send_audio(&peer, &ulaw, 160).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    until(&mut peer, is_final).await;
    drop(peer);
    ended(task).await.unwrap();
    assert_eq!(fake.requests()[0].query("audio_format"), Some("pcm_16000"));
    let expected: Vec<u8> = ulaw
        .iter()
        .flat_map(|b| waav_plugin_api::codec::mulaw_decode(*b).to_le_bytes())
        .collect();
    assert_eq!(fake.sessions()[0].audio, expected);
}

#[tokio::test]
async fn partials_and_committed_transcripts_map_to_interims_and_a_speech_final() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
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
    assert!(interims.iter().all(|t| !t.is_final && !t.is_speech_final));
    assert_eq!(fin.text, "w1 w2 w3.");
    assert!(fin.is_final && fin.is_speech_final);
    assert_eq!(fin.words.len(), 3, "{:?}", fin.words);
    assert_eq!(fin.words[2].word, "w3.", "punctuation joins its word");
    assert!((fin.words[1].start - 0.1).abs() < 1e-9);
    assert!((fin.words[1].end - 0.18).abs() < 1e-9);
    let c = (-0.1f64).exp() as f32;
    assert!((fin.words[1].confidence - c).abs() < 1e-6);
    assert!((fin.confidence - c).abs() < 1e-6);
    assert_eq!(fin.words[0].speaker.as_deref(), Some("speaker_0"));
    assert_eq!(fin.speaker.as_deref(), Some("speaker_0"));
    assert_eq!(fin.language.as_deref(), Some("en"));

    // A second segment: one final per commit, words timed from the stream start, a new
    // SpeechStarted.
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    assert_eq!(events[0], SttEvent::SpeechStarted);
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "w1 w2.");
    assert!((fin.words[0].start - 0.3).abs() < 1e-9, "{:?}", fin.words);
    drop(peer);
    ended(task).await.unwrap();
    assert_eq!(fake.sessions()[0].commits, 2);
}

#[tokio::test]
async fn without_timestamps_or_when_the_copy_is_late_the_final_has_no_words() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({"include_timestamps": false})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "w1 w2.");
    assert!(fin.words.is_empty() && fin.is_speech_final);
    assert_eq!(fin.confidence, 0.0, "no confidence reported");
    drop(peer);
    ended(task).await.unwrap();

    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        drop_timestamps: true,
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({"timestamps_wait_ms": 100})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let finals: Vec<_> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].text, "w1 w2.");
    assert!(finals[0].words.is_empty());
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn finalize_commits_and_closing_commits_drains_and_closes_1000() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(100, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    until(&mut peer, is_final).await;
    // Nothing new since the commit: a second Finalize sends nothing.
    peer.input.send(SttInput::Finalize).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    // Closing the input: the rest is committed, its final drained, then close 1000.
    let SttPeer { input, mut events } = peer;
    drop(input);
    let mut rest = Vec::new();
    while let Some(ev) = tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
        rest.push(ev);
    }
    ended(task).await.unwrap();
    let fin = *transcripts(&rest).last().unwrap();
    assert_eq!(fin.text, "w1 w2.");
    assert!(fin.is_final);
    let s = &fake.sessions()[0];
    assert_eq!(s.commits, 2);
    let commits: Vec<Value> = s
        .texts
        .iter()
        .map(|t| chunk_json(t))
        .filter(|v| v["commit"] == true)
        .collect();
    assert_eq!(
        commits[0],
        json!({"message_type":"input_audio_chunk","audio_base_64":"","commit":true,"sample_rate":16000})
    );
    assert_eq!(
        s.client_close,
        Some((1000, "User ended conversation".to_owned()))
    );

    // With nothing uncommitted, closing sends no commit.
    let (peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    drop(peer);
    ended(task).await.unwrap();
    let s = &fake.sessions()[1];
    assert_eq!(s.commits, 0);
    assert_eq!(s.client_close.as_ref().map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn vad_commits_come_from_the_server_and_manual_mode_commits_on_host_vad() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        vad_commit_after_ms: Some(200),
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    let events = until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert!(fin.is_final && fin.is_speech_final);
    assert_eq!(fake.sessions()[0].commits, 0, "the server committed");
    drop(peer);
    ended(task).await.unwrap_or_else(|e| panic!("{e}"));

    let (mut peer, task) = open(config(&fake, KEY, json!({"commit_strategy": "manual"})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input
        .send(SttInput::Vad(VadEvent::SpeechEnded { at_ms: 200 }))
        .await
        .unwrap();
    let events = until(&mut peer, is_final).await;
    assert!(transcripts(&events).last().unwrap().is_final);
    drop(peer);
    ended(task).await.unwrap();
    assert_eq!(fake.sessions()[1].commits, 1);
}

#[tokio::test]
async fn websocket_pings_keep_the_socket_alive() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
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
    assert!(!task.is_finished(), "pongs keep the idle timeout away");
    drop(peer);
    ended(task).await.unwrap();
}

#[tokio::test]
async fn auth_and_rate_limit_refusals_are_categorised() {
    // The vendor's auth_error message after the upgrade.
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let e = open(config(&fake, "wrong-key", json!({})))
        .await
        .expect_err("refused");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("auth_error"), "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    // 401 at the upgrade.
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        auth_failure: AuthFailure::Http(401),
        ..Default::default()
    })
    .await;
    let e = open(config(&fake, "wrong-key", json!({})))
        .await
        .expect_err("refused");
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    // 429 with retry-after at the upgrade.
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        reject: Some(Reject::status(429).header("retry-after", "7")),
        ..Default::default()
    })
    .await;
    match open(config(&fake, KEY, json!({}))).await.err() {
        Some(PluginError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn vendor_error_messages_and_close_codes_end_the_task_with_their_category() {
    for (t, want) in [
        ("rate_limited", ErrorCategory::RateLimited),
        ("quota_exceeded", ErrorCategory::Auth),
        ("transcriber_error", ErrorCategory::Transient),
        ("input_error", ErrorCategory::Config),
        ("session_time_limit_exceeded", ErrorCategory::Timeout),
        ("chunk_size_exceeded", ErrorCategory::Permanent),
    ] {
        let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
            error_after: Some((2, t.to_owned(), "went wrong".to_owned(), 1008)),
            ..Default::default()
        })
        .await;
        let (peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
        send_audio(&peer, &pcm(100, 0), 640).await;
        let e = task_error(task).await;
        assert_eq!(e.category(), want, "{t}: {e}");
        assert!(e.to_string().contains("went wrong"), "{e}");
        drop(peer);
    }
    // A bare 1011 close is a fault in the conformance suite.
}

#[tokio::test]
async fn commit_throttled_is_a_non_fatal_error() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        throttle_commits: true,
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(100, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, |e| matches!(e, SttEvent::Error(_))).await;
    match events.last() {
        Some(SttEvent::Error(e)) => assert_eq!(e.category(), ErrorCategory::RateLimited),
        other => panic!("{other:?}"),
    }
    // The session goes on.
    send_audio(&peer, &pcm(100, 0), 640).await;
    assert!(!task.is_finished());
    // The final commit is throttled too: nothing to drain, the close still happens.
    let SttPeer { input, mut events } = peer;
    drop(input);
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    ended(task).await.unwrap();
    drain.await.unwrap();
    assert_eq!(
        fake.sessions()[0].client_close.as_ref().map(|c| c.0),
        Some(1000)
    );
}

#[tokio::test]
async fn malformed_and_huge_messages_never_panic() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        garbage: true,
        huge_message: Some(100_000),
        ..Default::default()
    })
    .await;
    let (mut peer, task) = open(config(&fake, KEY, json!({}))).await.unwrap();
    send_audio(&peer, &pcm(200, 0), 640).await;
    peer.input.send(SttInput::Finalize).await.unwrap();
    let events = until(&mut peer, is_final).await;
    let fin = *transcripts(&events).last().unwrap();
    assert_eq!(fin.text, "w1 w2.", "the session survived the garbage");
    drop(peer);
    ended(task).await.unwrap();
    // Larger than max_message_bytes: a fault in the conformance suite.
}

#[tokio::test]
async fn an_unanswered_final_commit_is_drained_with_a_bound() {
    // (Disconnects, silence and an unanswered Finalize are faults in the conformance suite.)
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        ignore_commit: true,
        ..Default::default()
    })
    .await;
    // The final commit unanswered: the close is bounded by drain_timeout_ms.
    let (peer, task) = open(config(&fake, KEY, json!({"drain_timeout_ms": 300})))
        .await
        .unwrap();
    send_audio(&peer, &pcm(40, 0), 640).await;
    drop(peer);
    assert_eq!(task_error(task).await.category(), ErrorCategory::Timeout);
}

/// A session aimed at a fresh fake started with `options`; the fake is kept in `fakes`.
async fn faulty(
    fakes: &mut Vec<ElevenLabsSttFake>,
    options: ElevenLabsSttOptions,
    key: &str,
    plugin: Value,
) -> SttSessionConfig {
    let fake = ElevenLabsSttFake::start(options).await;
    let cfg = config(&fake, key, plugin);
    fakes.push(fake);
    cfg
}

#[tokio::test]
async fn the_plugin_passes_the_conformance_suite_against_the_fake() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let session = config(&fake, KEY, json!({}));
    let d = ElevenLabsSttOptions::default;
    let f = &mut Vec::new();
    let none = json!({});
    let auth_message = faulty(f, d(), "wrong-key", none.clone()).await;
    let auth_http = faulty(
        f,
        ElevenLabsSttOptions {
            auth_failure: AuthFailure::Http(401),
            ..d()
        },
        "wrong-key",
        none.clone(),
    )
    .await;
    let reject = |r: Reject| ElevenLabsSttOptions {
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
    let error = |t: &str| ElevenLabsSttOptions {
        error_after: Some((2, t.to_owned(), "went wrong".to_owned(), 1008)),
        ..d()
    };
    let err_rate = faulty(f, error("rate_limited"), KEY, none.clone()).await;
    let err_quota = faulty(f, error("quota_exceeded"), KEY, none.clone()).await;
    let err_transcriber = faulty(f, error("transcriber_error"), KEY, none.clone()).await;
    let err_input = faulty(f, error("input_error"), KEY, none.clone()).await;
    let closed = faulty(
        f,
        ElevenLabsSttOptions {
            close_after: Some((2, 1011)),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let dropped = faulty(
        f,
        ElevenLabsSttOptions {
            disconnect_after: Some(3),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let garbage = faulty(
        f,
        ElevenLabsSttOptions {
            garbage: true,
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let huge = faulty(
        f,
        ElevenLabsSttOptions {
            huge_message: Some(2 << 20),
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let throttled = faulty(
        f,
        ElevenLabsSttOptions {
            throttle_commits: true,
            ..d()
        },
        KEY,
        none.clone(),
    )
    .await;
    let no_start = faulty(
        f,
        ElevenLabsSttOptions {
            silent: true,
            ..d()
        },
        KEY,
        json!({"connect_timeout_ms": 300}),
    )
    .await;
    let silent = faulty(
        f,
        ElevenLabsSttOptions {
            silent_after: Some(2),
            ..d()
        },
        KEY,
        json!({"ping_interval_ms": 50, "idle_timeout_ms": 300}),
    )
    .await;
    let no_commit = faulty(
        f,
        ElevenLabsSttOptions {
            ignore_commit: true,
            ..d()
        },
        KEY,
        json!({"response_timeout_ms": 300}),
    )
    .await;
    let fixture = SttFixture::pcm16(pcm(600, 5), 16_000)
        .with_session(session)
        .expect("w1 w2 w3")
        .guard(GUARD)
        .fault(
            "auth_error message",
            auth_message,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault("401", auth_http, FaultOutcome::Fails(ErrorCategory::Auth))
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
            "rate_limited",
            err_rate,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "quota_exceeded",
            err_quota,
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "transcriber_error",
            err_transcriber,
            FaultOutcome::Fails(ErrorCategory::Transient),
        )
        .fault(
            "input_error",
            err_input,
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
        // Malformed and unknown messages are skipped.
        .fault("garbage", garbage, FaultOutcome::Recovers)
        .fault(
            "message over max_message_bytes",
            huge,
            FaultOutcome::Fails(ErrorCategory::Permanent),
        )
        // commit_throttled is reported as a (non-fatal) rate-limit error event.
        .fault(
            "commit_throttled",
            throttled,
            FaultOutcome::Fails(ErrorCategory::RateLimited),
        )
        .fault(
            "no session_started",
            no_start,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "silent mid-stream",
            silent,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        )
        .fault(
            "commit unanswered",
            no_commit,
            FaultOutcome::Fails(ErrorCategory::Timeout),
        );
    let plugin = ElevenLabsStt::new();
    plugin
        .init(&PluginContext::new("test"), &PluginConfig::default())
        .await
        .unwrap();
    check_stt(&plugin, &fixture).await.assert_ok();
    assert_eq!(f.len(), 17);
}

#[tokio::test]
async fn unsupported_sessions_are_refused_before_dialling() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttOptions::default()).await;
    let base = config(&fake, KEY, json!({}));
    let mut cases = Vec::new();
    let mut c = base.clone();
    c.encoding = AudioEncoding::Alaw;
    cases.push(("alaw", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.sample_rate = 32_000;
    cases.push(("32 kHz", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.channels = 2;
    cases.push(("stereo", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.encoding = AudioEncoding::Opus;
    cases.push(("opus", c, ErrorCategory::Config));
    let mut c = base.clone();
    c.language = "english please".into();
    cases.push(("language", c, ErrorCategory::Config));
    let c = config(&fake, KEY, json!({"commit_strategy": "sometimes"}));
    cases.push(("commit_strategy", c, ErrorCategory::Config));
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
    let p = ElevenLabsStt::new();
    let info = p.info();
    assert_eq!(info.id, "elevenlabs");
    let fields = info.credential_fields();
    assert_eq!(fields[0].name, "api_key");
    assert_eq!(fields[0].env, Some("ELEVENLABS_API_KEY"));
    let caps = p.capabilities();
    assert!(caps.check_model("scribe_v2_realtime").is_ok());
    assert!(caps.accepts_encoding(AudioEncoding::Linear16));
    assert!(caps.accepts_encoding(AudioEncoding::Mulaw));
    assert!(!caps.accepts_encoding(AudioEncoding::Alaw));
    assert!(caps.accepts_rate(44_100) && !caps.accepts_rate(32_000));
    assert_eq!(caps.max_channels, 1);
    assert!(caps.streaming && caps.interim_results && caps.word_timings);
}
