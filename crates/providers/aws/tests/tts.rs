//! The real Polly client against the Polly fake, over 127.0.0.1.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use waav_aws::PollyTts;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, Credentials, Emotion, ErrorCategory, Plugin,
    PluginConfig, PluginContext, PluginError, SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};
use waav_provider_kit::aws::{AwsSigner, Payload};
use waav_testkit::conformance::{check_tts, FaultOutcome, TtsFixture};
use waav_testkit::fakes::aws::polly::{
    speech, PollyFake, PollyFakeOptions, PollyFault, PollyRequest,
};
use waav_testkit::fakes::aws::FakeCredentials;

const GUARD: Duration = Duration::from_secs(10);

async fn start(token: bool, fault: PollyFault) -> PollyFake {
    let mut creds = FakeCredentials::new(AKID, REGION);
    if token {
        creds = creds.with_token(TOKEN);
    }
    let mut opts = PollyFakeOptions::new(creds);
    opts.fault = fault;
    PollyFake::start(opts).await
}

fn section(fake: &PollyFake, extra: Value) -> PluginConfig {
    let mut v = json!({ "endpoint": fake.base_url() });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    PluginConfig::from_value("plugins.tts.aws-polly", v).unwrap()
}

fn session(fake: &PollyFake, token: bool, extra: Value) -> TtsSessionConfig {
    TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
        .with_plugin_config(section(fake, extra))
        .with_credentials(credentials(token))
}

async fn synth(cfg: &TtsSessionConfig, text: &str) -> (Result<(), PluginError>, Vec<u8>) {
    let (tx, mut rx) = mpsc::channel(4096);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let r = tokio::time::timeout(GUARD, PollyTts::new().synthesize(cfg, req, sink))
        .await
        .expect("synthesize hung");
    let mut audio = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            TtsEvent::Audio { id: 1, data } => audio.extend_from_slice(&data),
            other => panic!("unexpected {other:?}"),
        }
    }
    (r, audio)
}

/// Re-signs the recorded request with the kit's signer at its `x-amz-date`: the signature must
/// be the same, byte for byte.
fn assert_signature(fake: &PollyFake, r: &PollyRequest, token: bool) {
    let date = r.header("x-amz-date").expect("x-amz-date");
    let mut b = http::Request::builder()
        .method(r.method.as_str())
        .uri(format!("{}{}", fake.base_url(), r.uri));
    if let Some(ct) = r.header("content-type") {
        b = b.header("content-type", ct);
    }
    let mut req = b.body(()).unwrap();
    AwsSigner::new(aws_credentials(token), REGION, "polly")
        .sign_request(&mut req, Payload::Bytes(&r.body), amz_time(date))
        .unwrap();
    assert_eq!(
        req.headers()["authorization"].to_str().unwrap(),
        r.header("authorization").unwrap()
    );
}

// --- 1. request shape ------------------------------------------------------------------------

#[tokio::test]
async fn request_is_signed_and_shaped_as_documented() {
    for token in [false, true] {
        let fake = start(token, PollyFault::None).await;
        let cfg = session(&fake, token, json!({}));
        let (r, audio) = synth(&cfg, "Hello from Polly.").await;
        r.unwrap();
        assert_eq!(audio, speech("Hello from Polly.", "pcm", 16_000));
        let reqs = fake.requests();
        let req = &reqs[0];
        assert_eq!(
            (req.method.as_str(), req.uri.as_str()),
            ("POST", "/v1/speech")
        );
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.json(),
            json!({"Text": "Hello from Polly.", "VoiceId": "Joanna", "OutputFormat": "pcm",
                   "SampleRate": "16000", "Engine": "neural", "TextType": "text"})
        );
        let date = req.header("x-amz-date").unwrap();
        let auth = req.header("authorization").unwrap();
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/{}/{REGION}/polly/aws4_request, SignedHeaders=",
            &date[..8]
        );
        assert!(auth.starts_with(&scope), "{auth}");
        let signed = if token {
            "content-type;host;x-amz-date;x-amz-security-token"
        } else {
            "content-type;host;x-amz-date"
        };
        assert!(
            auth.contains(&format!("SignedHeaders={signed}, Signature=")),
            "{auth}"
        );
        assert_eq!(req.header("x-amz-security-token"), token.then_some(TOKEN));
        assert_signature(&fake, req, token);
    }
}

#[tokio::test]
async fn rate_style_voice_and_engine_map_to_the_body() {
    let fake = start(false, PollyFault::None).await;
    let mut cfg = session(&fake, false, json!({"language_code": "en-US"}));
    cfg.speaking_rate = 1.3;
    cfg.voice_id = "Matthew".into();
    cfg.emotion = Emotion {
        emotion: Some("happy".into()),
        delivery_style: Some("news".into()),
        ..Emotion::default()
    };
    cfg.encoding = AudioEncoding::Mp3;
    cfg.sample_rate = 8_000;
    let (r, audio) = synth(&cfg, "Rates & <tags>").await;
    r.unwrap();
    let body = fake.requests()[0].json();
    assert_eq!(body["TextType"], "ssml");
    assert_eq!(
        body["Text"],
        "<speak><amazon:domain name=\"news\"><prosody rate=\"130%\">Rates &amp; &lt;tags&gt;</prosody></amazon:domain></speak>"
    );
    assert_eq!(
        (body["VoiceId"].as_str(), body["OutputFormat"].as_str()),
        (Some("Matthew"), Some("mp3"))
    );
    assert_eq!(
        (body["SampleRate"].as_str(), body["LanguageCode"].as_str()),
        (Some("8000"), Some("en-US"))
    );
    let text = body["Text"].as_str().unwrap();
    assert_eq!(
        audio,
        speech(text, "mp3", 8_000),
        "mp3 passes through untouched"
    );
    // The session's model is the engine.
    let mut cfg = session(&fake, false, json!({}));
    cfg.model = "standard".into();
    synth(&cfg, "x").await.0.unwrap();
    assert_eq!(fake.requests()[1].json()["Engine"], "standard");
}

// --- 2. streaming ----------------------------------------------------------------------------

#[tokio::test]
async fn first_chunk_arrives_before_the_rest_is_sent() {
    let fake = start(false, PollyFault::HoldAfterFirstChunk).await;
    let cfg = session(&fake, false, json!({}));
    let text = "A sentence long enough for several chunks of audio.";
    let (tx, mut rx) = mpsc::channel(4096);
    let sink = AudioSink::new(1, tx, CancelFlag::new());
    let req = SpeakRequest {
        id: 1,
        text: text.into(),
        flush: true,
    };
    let task = tokio::spawn(async move { PollyTts::new().synthesize(&cfg, req, sink).await });
    let first = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let TtsEvent::Audio { data, .. } = first else {
        panic!("{first:?}")
    };
    assert_eq!(fake.streams()[0].chunks_sent, 1, "the fake holds the rest");
    fake.release();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audio = data.to_vec();
    while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
        audio.extend_from_slice(&data);
    }
    assert_eq!(audio, speech(text, "pcm", 16_000));
    assert!(fake.streams()[0].finished);
}

// --- 3. conformance --------------------------------------------------------------------------

#[tokio::test]
async fn conforms() {
    let fake = start(true, PollyFault::None).await;
    let fixture = TtsFixture::new(session(&fake, true, json!({}))).guard(GUARD);
    check_tts(&PollyTts::new(), &fixture).await.assert_ok();
    let mut cfg = session(&fake, true, json!({}));
    cfg.sample_rate = 8_000;
    check_tts(&PollyTts::new(), &TtsFixture::new(cfg).guard(GUARD))
        .await
        .assert_ok();
}

// --- 4. errors -------------------------------------------------------------------------------

/// Every fault the fake injects, each against its own fake, through the shared suite.
#[tokio::test]
async fn conforms_under_faults() {
    let good = start(false, PollyFault::None).await;
    // A fake that knows another access key (its own UnrecognizedClientException), and one
    // that expects no session token (a token it does not know is refused too).
    let other_key = PollyFake::start(PollyFakeOptions::new(FakeCredentials::new(
        "AKIAOTHERKEY0002",
        REGION,
    )))
    .await;
    let no_token = start(false, PollyFault::None).await;
    let faults = [
        (
            "throttled",
            status(400, "ThrottlingException", Some(3)),
            ErrorCategory::RateLimited,
        ),
        (
            "429",
            status(429, "Unknown", Some(1)),
            ErrorCategory::RateLimited,
        ),
        (
            "5xx",
            status(500, "ServiceFailureException", None),
            ErrorCategory::Transient,
        ),
        (
            "truncated",
            PollyFault::Truncate { after_chunks: 1 },
            ErrorCategory::Transient,
        ),
        ("garbage", PollyFault::Garbage, ErrorCategory::Permanent),
        ("silent", PollyFault::Silent, ErrorCategory::Timeout),
    ];
    let mut fakes = Vec::new();
    for (_, fault, _) in &faults {
        fakes.push(start(false, fault.clone()).await);
    }
    let mut fixture = TtsFixture::new(session(&good, false, json!({})))
        .guard(GUARD)
        .fault(
            "auth rejected",
            session(&other_key, false, json!({})),
            FaultOutcome::Fails(ErrorCategory::Auth),
        )
        .fault(
            "unknown session token",
            session(&no_token, true, json!({})),
            FaultOutcome::Fails(ErrorCategory::Auth),
        );
    for ((name, _, want), fake) in faults.iter().zip(&fakes) {
        let cfg = session(fake, false, json!({"read_timeout_ms": 200}));
        fixture = fixture.fault(*name, cfg, FaultOutcome::Fails(*want));
    }
    check_tts(&PollyTts::new(), &fixture).await.assert_ok();
    // Each faulty fake was reached (the check did not pass on a refusal of its own).
    for ((name, ..), fake) in faults.iter().zip(&fakes) {
        assert!(
            !fake.requests().is_empty(),
            "{name}: no request reached the fake"
        );
    }
    assert_eq!(other_key.requests().len(), 1);
    assert_eq!(no_token.requests().len(), 1);
}

fn status(status: u16, name: &str, retry_after: Option<u64>) -> PollyFault {
    PollyFault::Status {
        status,
        error_type: name.into(),
        message: format!("{name} says no"),
        retry_after,
    }
}

#[tokio::test]
async fn errors_are_categorised() {
    let cases = [
        (
            status(403, "UnrecognizedClientException", None),
            ErrorCategory::Auth,
        ),
        (
            status(403, "InvalidSignatureException", None),
            ErrorCategory::Auth,
        ),
        (
            status(400, "ThrottlingException", Some(3)),
            ErrorCategory::RateLimited,
        ),
        (status(429, "Unknown", None), ErrorCategory::RateLimited),
        (
            status(400, "TextLengthExceededException", None),
            ErrorCategory::Permanent,
        ),
        (
            status(400, "InvalidSsmlException", None),
            ErrorCategory::Permanent,
        ),
        (
            status(400, "InvalidSampleRateException", None),
            ErrorCategory::Config,
        ),
        (
            status(400, "EngineNotSupportedException", None),
            ErrorCategory::Config,
        ),
        (
            status(500, "ServiceFailureException", None),
            ErrorCategory::Transient,
        ),
        (status(503, "Unknown", None), ErrorCategory::Transient),
        (PollyFault::Garbage, ErrorCategory::Permanent),
    ];
    for (fault, want) in cases {
        let fake = start(false, fault.clone()).await;
        let (r, audio) = synth(&session(&fake, false, json!({})), "Hello.").await;
        let e = r.unwrap_err();
        assert_eq!(e.category(), want, "{fault:?}: {e}");
        assert!(audio.is_empty());
        assert!(
            !e.to_string().contains(SECRET) && !e.to_string().contains(AKID),
            "{e}"
        );
        if let PollyFault::Status {
            retry_after: Some(s),
            ..
        } = fault
        {
            assert_eq!(
                e,
                PluginError::RateLimited {
                    retry_after: Some(Duration::from_secs(s)),
                    message: e
                        .to_string()
                        .trim_start_matches("rate limited: ")
                        .to_owned(),
                }
            );
            assert!(e.to_string().contains("ThrottlingException says no"), "{e}");
        }
    }
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let fake = start(false, PollyFault::None).await;
    let mut creds = credentials(false);
    creds.set("access_key_id", "AKIAOTHERKEY".into());
    let cfg = session(&fake, false, json!({})).with_credentials(creds);
    let e = synth(&cfg, "Hello.").await.0.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    // A token the fake does not expect is refused too.
    let e = synth(&session(&fake, true, json!({})), "Hello.")
        .await
        .0
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
}

#[tokio::test]
async fn truncated_and_silent_bodies_end_in_errors() {
    let fake = start(false, PollyFault::Truncate { after_chunks: 1 }).await;
    let (r, audio) = synth(&session(&fake, false, json!({})), "Hello there, truncated.").await;
    assert!(r.is_err(), "a truncated body is an error");
    assert!(!audio.is_empty());
    let silent = start(false, PollyFault::Silent).await;
    let cfg = session(&silent, false, json!({"read_timeout_ms": 200}));
    let e = synth(&cfg, "Hello.").await.0.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

// --- 5. cancel -------------------------------------------------------------------------------

#[tokio::test]
async fn cancel_mid_stream_stops_reading() {
    let fake = start(false, PollyFault::HoldAfterFirstChunk).await;
    let cfg = session(&fake, false, json!({}));
    let cancel = CancelFlag::new();
    let (tx, mut rx) = mpsc::channel(64);
    let sink = AudioSink::new(1, tx, cancel.clone());
    let req = SpeakRequest {
        id: 1,
        text: "A long sentence that the client will cancel midway through.".into(),
        flush: true,
    };
    let task = tokio::spawn(async move { PollyTts::new().synthesize(&cfg, req, sink).await });
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    cancel.cancel_up_to(1);
    fake.release();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The client dropped the body: the fake saw it go before the end.
    let log = tokio::time::timeout(GUARD, async {
        loop {
            let l = fake.streams()[0].clone();
            if l.dropped_early {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the fake never saw the body dropped");
    assert!(!log.finished);
}

// --- 6. voices -------------------------------------------------------------------------------

#[tokio::test]
async fn voices_are_listed_and_cached() {
    let fake = start(false, PollyFault::None).await;
    let plugin = PollyTts::new();
    let mut section = json!({ "endpoint": fake.base_url(), "access_key_id": AKID,
                              "secret_access_key": SECRET, "region": REGION });
    let cfg = PluginConfig::from_value("plugins.tts.aws-polly", section.take()).unwrap();
    plugin.init(&PluginContext::default(), &cfg).await.unwrap();
    let voices = plugin.voices(None).await.unwrap();
    let ids: Vec<_> = voices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["Joanna", "Matthew", "Aditi"]);
    assert_eq!(voices[2].language, "en-IN");
    assert_eq!(voices[1].gender, "male");
    assert_eq!(voices[0].accent, "US English");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "two pages");
    assert_eq!(reqs[0].uri, "/v1/voices");
    assert_eq!(reqs[1].uri, "/v1/voices?NextToken=page%2F2");
    assert_signature(&fake, &reqs[1], false);
    assert_eq!(plugin.voices(None).await.unwrap(), voices);
    assert_eq!(
        fake.requests().len(),
        2,
        "the second listing came from the cache"
    );
}

#[tokio::test]
async fn voices_use_the_last_session_credentials_or_fail_as_auth() {
    let fake = start(false, PollyFault::None).await;
    let plugin = PollyTts::new();
    let cfg = section(&fake, json!({}));
    plugin.init(&PluginContext::default(), &cfg).await.unwrap();
    let e = plugin.voices(None).await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    plugin
        .prepare(&session(&fake, false, json!({})))
        .await
        .unwrap();
    assert_eq!(plugin.voices(None).await.unwrap().len(), 3);
}

// --- 7. prepare ------------------------------------------------------------------------------

#[tokio::test]
async fn prepare_refuses_before_any_request() {
    let fake = start(false, PollyFault::None).await;
    let plugin = PollyTts::new();
    let mut no_secret = Credentials::new();
    no_secret.set("access_key_id", AKID.into());
    let e = plugin
        .prepare(&session(&fake, false, json!({})).with_credentials(no_secret))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth);
    for (enc, rate) in [
        (AudioEncoding::Mulaw, 8_000),
        (AudioEncoding::Linear16, 24_000),
        (AudioEncoding::Opus, 16_000),
    ] {
        let mut cfg = session(&fake, false, json!({}));
        cfg.encoding = enc;
        cfg.sample_rate = rate;
        let e = plugin.prepare(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Config, "{enc:?} {rate}: {e}");
    }
    let e = plugin
        .prepare(&session(&fake, false, json!({"engine": "warp"})))
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Config);
    assert!(fake.requests().is_empty());
    assert_eq!(plugin.info().aliases, ["polly", "amazon-polly"]);
}

/// Synthesis goes through the kit's budgeted retry before the response head: a 500 is sent
/// again (the same signed request) until the retries run out, a 429 without `retry-after` too;
/// a 429 whose `retry-after` (1 s) ends after the request's 200 ms wait is not slept on but
/// comes back at once as RateLimited with it; an auth refusal is sent once.
#[tokio::test]
async fn synthesis_is_retried_before_the_head_within_its_wait() {
    let cases = [
        (
            status(500, "ServiceFailureException", None),
            json!({}),
            ErrorCategory::Transient,
            3,
        ),
        (
            status(429, "Unknown", None),
            json!({}),
            ErrorCategory::RateLimited,
            3,
        ),
        (
            status(429, "Unknown", Some(1)),
            json!({"read_timeout_ms": 200}),
            ErrorCategory::RateLimited,
            1,
        ),
        (
            status(403, "UnrecognizedClientException", None),
            json!({}),
            ErrorCategory::Auth,
            1,
        ),
    ];
    for (fault, extra, want, sent) in cases {
        let fake = start(false, fault.clone()).await;
        let (r, audio) = synth(&session(&fake, false, extra), "Hello.").await;
        let e = r.unwrap_err();
        assert_eq!(e.category(), want, "{fault:?}: {e}");
        assert!(audio.is_empty());
        let reqs = fake.requests();
        assert_eq!(reqs.len(), sent, "{fault:?}: requests sent");
        for r in &reqs[1..] {
            assert_eq!(r.body, reqs[0].body, "the same request sent again");
            assert_eq!(r.header("authorization"), reqs[0].header("authorization"));
        }
        if sent == 1 && want == ErrorCategory::RateLimited {
            assert!(
                matches!(e, PluginError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
                "{e:?}"
            );
        }
    }
}
