//! The Google TTS plugin against the gRPC fake over 127.0.0.1.

mod fake;

use fake::{key::TEST_KEY_PEM, GoogleFake};
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as pb;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use waav_google::GoogleTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Credentials, Emotion, ErrorCategory, Plugin,
    PluginConfig, PluginContext, PluginError, Secret, SpeakRequest, TtsEvent, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};

const KEY: &str = "AIzaTestKey-123";
const T: Duration = Duration::from_secs(10);

fn pc(v: serde_json::Value) -> PluginConfig {
    PluginConfig::from_value("plugins.tts.google", v).unwrap()
}

fn cfg(f: &GoogleFake, enc: AudioEncoding, rate: u32, voice: &str) -> TtsSessionConfig {
    TtsSessionConfig::new(enc, rate)
        .with_voice(voice)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(pc(json!({"endpoint": f.url})))
}

async fn speak(p: &GoogleTts, c: &TtsSessionConfig, text: &str) -> Result<Vec<u8>, PluginError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let r = tokio::time::timeout(T, p.synthesize(c, req, sink))
        .await
        .expect("in time");
    let mut out = Vec::new();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        out.extend_from_slice(&data);
    }
    r.map(|()| out)
}

async fn fake() -> GoogleFake {
    GoogleFake::start(KEY, TEST_KEY_PEM).await
}

#[tokio::test]
async fn unary_request_shape_and_wav_header_stripped() {
    let f = fake().await;
    let p = GoogleTts::new();
    let mut c = cfg(&f, AudioEncoding::Linear16, 22_050, "en-GB-Neural2-A");
    c.speaking_rate = 1.25;
    c.plugin_config = pc(
        json!({"endpoint": f.url, "pitch": 2.0, "volume_gain_db": -3.0,
        "effects_profile_id": ["telephony-class-application"], "user_project": "bill"}),
    );
    let audio = speak(&p, &c, "Hello there.").await.unwrap();
    assert_eq!(
        audio,
        fake::tone("Hello there.", pb::AudioEncoding::Linear16 as i32, 22_050),
        "byte-exact, no header"
    );
    let (md, r) = f.seen(|s| s.synth[0].clone());
    assert_eq!(md.get("x-goog-api-key").map(String::as_str), Some(KEY));
    assert_eq!(
        md.get("x-goog-user-project").map(String::as_str),
        Some("bill")
    );
    assert_eq!(
        r.input.unwrap().input_source,
        Some(pb::synthesis_input::InputSource::Text(
            "Hello there.".into()
        ))
    );
    let v = r.voice.unwrap();
    assert_eq!(
        (v.language_code.as_str(), v.name.as_str()),
        ("en-GB", "en-GB-Neural2-A")
    );
    let ac = r.audio_config.unwrap();
    assert_eq!(ac.audio_encoding, pb::AudioEncoding::Linear16 as i32);
    assert_eq!(ac.sample_rate_hertz, 22_050);
    assert!((ac.speaking_rate - 1.25).abs() < 1e-6);
    assert!((ac.pitch - 2.0).abs() < 1e-9 && (ac.volume_gain_db + 3.0).abs() < 1e-9);
    assert_eq!(ac.effects_profile_id, ["telephony-class-application"]);
    assert!(
        f.seen(|s| s.tts_stream.is_empty()),
        "a Neural2 voice uses SynthesizeSpeech"
    );

    // mulaw: the WAV header is stripped too; mp3 passes through.
    let c = cfg(&f, AudioEncoding::Mulaw, 8000, "en-GB-Neural2-A");
    let audio = speak(&p, &c, "Hi.").await.unwrap();
    assert_eq!(
        audio,
        fake::tone("Hi.", pb::AudioEncoding::Mulaw as i32, 8000)
    );
    let c = cfg(&f, AudioEncoding::Mp3, 24_000, "en-GB-Neural2-A");
    let audio = speak(&p, &c, "Hi.").await.unwrap();
    assert!(audio.starts_with(b"ID3"));
}

#[tokio::test]
async fn emotion_becomes_ssml_prosody_escaped() {
    let f = fake().await;
    let p = GoogleTts::new();
    let mut c = cfg(&f, AudioEncoding::Linear16, 24_000, "en-US-Neural2-C");
    c.emotion = Emotion {
        emotion: Some("happy".into()),
        intensity: Some(0.6),
        ..Emotion::default()
    };
    speak(&p, &c, "Fish & <chips>").await.unwrap();
    let (_, r) = f.seen(|s| s.synth[0].clone());
    match r.input.unwrap().input_source {
        Some(pb::synthesis_input::InputSource::Ssml(s)) => assert_eq!(
            s,
            "<speak><prosody pitch=\"+2.0st\" rate=\"110%\">Fish &amp; &lt;chips&gt;</prosody></speak>"
        ),
        other => panic!("{other:?}"),
    }
    // An unknown emotion is ignored: plain text.
    c.emotion = Emotion {
        emotion: Some("quizzical".into()),
        ..Emotion::default()
    };
    speak(&p, &c, "Hm.").await.unwrap();
    let (_, r) = f.seen(|s| s.synth[1].clone());
    assert!(matches!(
        r.input.unwrap().input_source,
        Some(pb::synthesis_input::InputSource::Text(_))
    ));
}

#[tokio::test]
async fn long_text_is_split_under_the_input_limit() {
    let f = fake().await;
    let p = GoogleTts::new();
    let mut c = cfg(&f, AudioEncoding::Linear16, 16_000, "en-US-Neural2-C");
    c.plugin_config = pc(json!({"endpoint": f.url, "max_input_bytes": 100}));
    let text = "This sentence is about forty bytes long. ".repeat(6);
    let audio = speak(&p, &c, &text).await.unwrap();
    let texts: Vec<String> = f.seen(|s| {
        s.synth
            .iter()
            .map(|(_, r)| match r.input.clone().unwrap().input_source {
                Some(pb::synthesis_input::InputSource::Text(t)) => t,
                _ => String::new(),
            })
            .collect()
    });
    assert!(
        texts.len() >= 3 && texts.iter().all(|t| t.len() <= 100 && t.ends_with('.')),
        "{texts:?}"
    );
    let want: Vec<u8> = texts
        .iter()
        .flat_map(|t| fake::tone(t, 1, 16_000))
        .collect();
    assert_eq!(audio, want);
}

#[tokio::test]
async fn chirp3_voice_streams_first_chunk_early_and_in_order() {
    let f = fake().await;
    let hold = Arc::new(tokio::sync::Notify::new());
    f.knobs(|k| k.tts_hold = Some(hold.clone()));
    let p = GoogleTts::new();
    let mut c = cfg(&f, AudioEncoding::Linear16, 24_000, "");
    c.speaking_rate = 3.0; // clamped to the streaming maximum 2.0
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let sink = AudioSink::new(7, tx, CancelFlag::new());
    let p2 = Arc::new(p);
    let pp = p2.clone();
    let cc = c.clone();
    let task = tokio::spawn(async move {
        pp.synthesize(
            &cc,
            SpeakRequest {
                id: 7,
                text: "Hello streaming world.".into(),
                flush: true,
            },
            sink,
        )
        .await
    });
    let first = match tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap() {
        TtsEvent::Audio { id, data } => {
            assert_eq!(id, 7);
            data
        }
        other => panic!("{other:?}"),
    };
    // The first chunk arrived while the fake still holds the rest.
    hold.notify_one();
    tokio::time::timeout(T, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = first.to_vec();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
    }
    assert_eq!(
        audio,
        fake::tone(
            "Hello streaming world.",
            pb::AudioEncoding::Pcm as i32,
            24_000
        )
    );
    let call = f.seen(|s| s.tts_stream[0].clone());
    assert_eq!(
        call.metadata.get("x-goog-api-key").map(String::as_str),
        Some(KEY)
    );
    let cfgm = call.config.unwrap();
    let v = cfgm.voice.unwrap();
    assert_eq!(
        (v.language_code.as_str(), v.name.as_str()),
        ("en-US", "en-US-Chirp3-HD-Charon")
    );
    let ac = cfgm.streaming_audio_config.unwrap();
    assert_eq!(ac.audio_encoding, pb::AudioEncoding::Pcm as i32);
    assert_eq!(ac.sample_rate_hertz, 24_000);
    assert!((ac.speaking_rate - 2.0).abs() < 1e-9);
    assert_eq!(call.texts, ["Hello streaming world."]);
    assert!(!call.cancelled);
    assert!(f.seen(|s| s.synth.is_empty()));
}

#[tokio::test]
async fn cancel_mid_stream_drops_the_call() {
    let f = fake().await;
    let hold = Arc::new(tokio::sync::Notify::new());
    f.knobs(|k| k.tts_hold = Some(hold.clone()));
    let p = Arc::new(GoogleTts::new());
    let c = cfg(&f, AudioEncoding::Linear16, 24_000, "en-US-Chirp3-HD-Kore");
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let pp = p.clone();
    let task = tokio::spawn(async move {
        pp.synthesize(
            &c,
            SpeakRequest {
                id: 1,
                text: "A long sentence to cancel.".into(),
                flush: true,
            },
            sink,
        )
        .await
    });
    tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    task.abort(); // what the host does on cancel
    let _ = task.await;
    let deadline = tokio::time::Instant::now() + T;
    while !f.seen(|s| s.tts_stream[0].cancelled) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fake never saw the call end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.notify_one();
}

#[tokio::test]
async fn conformance_streaming_and_unary_voices() {
    let f = fake().await;
    for voice in ["en-US-Chirp3-HD-Charon", "en-GB-Neural2-A"] {
        let p = GoogleTts::new();
        let fixture = TtsFixture::new(cfg(&f, AudioEncoding::Linear16, 16_000, voice))
            .guard(Duration::from_secs(15));
        check_tts(&p, &fixture).await.assert_ok();
    }
}

/// Sets a fake's knobs.
type SetKnobs = Box<dyn FnOnce(&mut fake::Knobs)>;

/// A session signing in with the test service account at `f`'s token endpoint.
fn sa_session(f: &GoogleFake, voice: &str) -> TtsSessionConfig {
    let mut creds = Credentials::new();
    let sa = json!({"type": "service_account", "private_key": TEST_KEY_PEM, "private_key_id": "k",
        "client_email": "tts@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"});
    creds.set("credentials_json", Secret::from(sa.to_string()));
    TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_voice(voice)
        .with_credentials(creds)
        .with_plugin_config(pc(json!({"endpoint": f.url, "token_url": f.token_url})))
}

/// Every fault the fake injects, through both paths (a streaming Chirp 3 HD voice and a unary
/// Neural2 one), each against its own fake, through the shared suite.
#[tokio::test]
async fn conformance_faults() {
    let good = fake().await;
    let mut fakes = Vec::new(); // kept alive until the check is done
    let mut tasks = Vec::new();
    let mut fixture = TtsFixture::new(cfg(
        &good,
        AudioEncoding::Linear16,
        16_000,
        "en-GB-Neural2-A",
    ))
    .guard(Duration::from_secs(15));
    let rate_limited = || {
        let mut st = tonic::Status::resource_exhausted("Quota exceeded");
        st.metadata_mut()
            .insert("retry-after", "3".parse().unwrap());
        st
    };
    for (path, voice) in [
        ("streaming", "en-US-Chirp3-HD-Charon"),
        ("unary", "en-GB-Neural2-A"),
    ] {
        let streaming = path == "streaming";
        let knobs: Vec<(&str, SetKnobs, ErrorCategory)> = vec![
            (
                "rate limited",
                Box::new(move |k| k.tts_status = Some(rate_limited())),
                ErrorCategory::RateLimited,
            ),
            (
                "internal",
                Box::new(|k| k.tts_status = Some(tonic::Status::internal("boom"))),
                ErrorCategory::Transient,
            ),
            (
                "unavailable",
                Box::new(|k| k.tts_status = Some(tonic::Status::unavailable("later"))),
                ErrorCategory::Transient,
            ),
            (
                "truncated",
                Box::new(move |k| {
                    if streaming {
                        k.tts_truncate = true
                    } else {
                        k.tts_truncated_wav = true
                    }
                }),
                ErrorCategory::Transient,
            ),
            (
                "garbage",
                Box::new(|k| k.tts_garbage = true),
                ErrorCategory::Transient,
            ),
            (
                "silent",
                Box::new(|k| k.tts_silent = true),
                ErrorCategory::Timeout,
            ),
        ];
        for (name, set, want) in knobs {
            let f = fake().await;
            f.knobs(set);
            let mut c = cfg(&f, AudioEncoding::Linear16, 16_000, voice);
            c.plugin_config = pc(json!({"endpoint": f.url, "timeout_ms": 300}));
            fixture = fixture.fault(format!("{name} ({path})"), c, FaultOutcome::Fails(want));
            fakes.push(f);
        }
        // A key the service does not know: its UNAUTHENTICATED.
        let f = GoogleFake::start("AIzaAnotherKey-456", TEST_KEY_PEM).await;
        fixture = fixture.fault(
            format!("auth rejected ({path})"),
            cfg(&f, AudioEncoding::Linear16, 16_000, voice),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
        fakes.push(f);
        // The token endpoint refusing the service account's JWT.
        let f = fake().await;
        f.knobs(|k| k.token_reject = true);
        fixture = fixture.fault(
            format!("token refused ({path})"),
            sa_session(&f, voice),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
        fakes.push(f);
        // A server that drops the connection once the request came in.
        let (url, task) = fake::disconnecting_server(64).await;
        let mut c = cfg(&good, AudioEncoding::Linear16, 16_000, voice);
        c.plugin_config = pc(json!({"endpoint": url, "timeout_ms": 2000}));
        fixture = fixture.fault(
            format!("connection dropped ({path})"),
            c,
            FaultOutcome::Fails(ErrorCategory::Transient),
        );
        tasks.push(task);
    }
    check_tts(&GoogleTts::new(), &fixture).await.assert_ok();
    for t in tasks {
        t.abort();
    }
    // The calls reached the fakes that record them (a status or garbage answer records none).
    let reached = |f: &GoogleFake| f.seen(|s| s.synth.len() + s.tts_stream.len());
    assert!(fakes.iter().filter(|f| reached(f) > 0).count() >= 4);
    assert!(fakes.iter().any(|f| f.seen(|s| s.bad_token_requests) > 0));
    drop(fakes);
}

#[tokio::test]
async fn errors_map_and_never_panic() {
    let f = fake().await;
    let p = GoogleTts::new();
    let unary = cfg(&f, AudioEncoding::Linear16, 16_000, "en-GB-Neural2-A");
    let streaming = cfg(
        &f,
        AudioEncoding::Linear16,
        16_000,
        "en-US-Chirp3-HD-Charon",
    );
    let mut c = unary.clone();
    c.api_key = Some(Secret::from("AIzaWrong"));
    let e = speak(&p, &c, "Hi.").await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("AIzaWrong"));
    let mut rl = tonic::Status::resource_exhausted("Quota exceeded");
    rl.metadata_mut()
        .insert("retry-after", "3".parse().unwrap());
    let cases = [
        (rl, ErrorCategory::RateLimited),
        (
            tonic::Status::invalid_argument("Voice does not exist"),
            ErrorCategory::Config,
        ),
        (tonic::Status::internal("boom"), ErrorCategory::Transient),
        (
            tonic::Status::unavailable("later"),
            ErrorCategory::Transient,
        ),
    ];
    for (st, want) in cases {
        let retry = st.metadata().get("retry-after").is_some();
        f.knobs(|k| {
            k.tts_status = Some(tonic::Status::with_metadata(
                st.code(),
                st.message(),
                st.metadata().clone(),
            ))
        });
        for c in [&unary, &streaming] {
            let e = speak(&p, c, "Hi.").await.unwrap_err();
            assert_eq!(e.category(), want, "{e}");
            if retry {
                assert!(
                    matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3))
                );
            }
        }
    }
    f.knobs(|k| k.tts_status = None);
    // A truncated WAV and a stream that breaks after one chunk: errors, no panic.
    f.knobs(|k| k.tts_truncated_wav = true);
    assert_eq!(
        speak(&p, &unary, "Hi.").await.unwrap_err().category(),
        ErrorCategory::Transient
    );
    f.knobs(|k| {
        k.tts_truncated_wav = false;
        k.tts_truncate = true;
    });
    assert_eq!(
        speak(&p, &streaming, "Hi there.")
            .await
            .unwrap_err()
            .category(),
        ErrorCategory::Transient
    );
    // A silent server is timed out.
    f.knobs(|k| {
        k.tts_truncate = false;
        k.tts_silent = true;
    });
    for voice in ["en-GB-Neural2-A", "en-US-Chirp3-HD-Charon"] {
        let mut c = cfg(&f, AudioEncoding::Linear16, 16_000, voice);
        c.plugin_config = pc(json!({"endpoint": f.url, "timeout_ms": 300}));
        assert_eq!(
            speak(&p, &c, "Hi.").await.unwrap_err().category(),
            ErrorCategory::Timeout
        );
    }
}

#[tokio::test]
async fn voices_are_mapped_and_cached() {
    let f = fake().await;
    let p = GoogleTts::new();
    // The listing endpoint comes from the instance config.
    p.init(&PluginContext::default(), &pc(json!({"endpoint": f.url})))
        .await
        .unwrap();
    let v = p.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].id, "en-US-Chirp3-HD-Charon");
    assert_eq!(
        (v[0].gender.as_str(), v[0].language.as_str()),
        ("male", "en-US")
    );
    assert_eq!(
        (v[1].gender.as_str(), v[1].language.as_str()),
        ("female", "en-GB")
    );
    let again = p.voices(Some(Secret::from(KEY))).await.unwrap();
    assert_eq!(again, v);
    assert_eq!(p.voice_fetches(), 1);
    assert_eq!(f.seen(|s| s.voices), 1);
}

#[tokio::test]
async fn service_account_bearer_token() {
    let f = fake().await;
    let p = GoogleTts::new();
    let mut creds = Credentials::new();
    let sa = json!({"type": "service_account", "private_key": TEST_KEY_PEM, "private_key_id": "k",
        "client_email": "tts@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"});
    creds.set("credentials_json", Secret::from(sa.to_string()));
    let c = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_voice("en-GB-Neural2-A")
        .with_credentials(creds)
        .with_plugin_config(pc(json!({"endpoint": f.url, "token_url": f.token_url})));
    speak(&p, &c, "One.").await.unwrap();
    speak(&p, &c, "Two.").await.unwrap();
    assert_eq!(p.auth_cache().fetches(), 1);
    let token = f.issued()[0].clone();
    let mds: Vec<_> = f.seen(|s| {
        s.synth
            .iter()
            .map(|(m, _)| m.get("authorization").cloned())
            .collect()
    });
    assert_eq!(
        mds,
        [
            Some(format!("Bearer {token}")),
            Some(format!("Bearer {token}"))
        ]
    );
    assert_eq!(
        f.seen(|s| s.jwt_claims[0]["aud"].clone()),
        f.token_url.as_str()
    );
}

#[tokio::test]
async fn prepare_refuses_bad_config_before_any_request() {
    let f = fake().await;
    let p = GoogleTts::new();
    let ok = cfg(&f, AudioEncoding::Linear16, 24_000, "en-GB-Neural2-A");
    p.prepare(&ok).await.unwrap();
    let mut c = ok.clone();
    c.encoding = AudioEncoding::Flac;
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    let mut c = ok.clone();
    c.sample_rate = 4000;
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    let mut c = ok.clone();
    c.api_key = None;
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Auth
    );
    let mut c = cfg(&f, AudioEncoding::Mp3, 24_000, "en-GB-Neural2-A");
    c.plugin_config = pc(json!({"endpoint": f.url, "streaming": "always"}));
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    let c = cfg(&f, AudioEncoding::Linear16, 24_000, "Charon");
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    let mut c = ok.clone();
    c.plugin_config = pc(json!({"endpoint": f.url, "pitch": 50.0}));
    assert_eq!(
        p.prepare(&c).await.unwrap_err().category(),
        ErrorCategory::Config
    );
    assert!(f.seen(|s| s.synth.is_empty() && s.tts_stream.is_empty() && s.voices == 0));
}
