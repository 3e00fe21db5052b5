//! The Google STT plugin against the gRPC fake over 127.0.0.1.

mod fake;

use bytes::Bytes;
use fake::{key::TEST_KEY_PEM, GoogleFake};
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2 as pb;
use serde_json::json;
use std::time::Duration;
use waav_google::GoogleStt;
use waav_plugin_api::{
    AudioEncoding, Credentials, ErrorCategory, PluginConfig, PluginError, Secret, SttEvent,
    SttInput, SttIo, SttPlugin, SttSessionConfig, Transcript,
};
use waav_testkit::conformance::{check_stt, FaultOutcome, SttFixture};

const KEY: &str = "AIzaTestKey-123";
const T: Duration = Duration::from_secs(10);

fn pc(v: serde_json::Value) -> PluginConfig {
    PluginConfig::from_value("plugins.stt.google", v).unwrap()
}

fn cfg(fake: &GoogleFake) -> SttSessionConfig {
    SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(pc(json!({"endpoint": fake.url, "project_id": "proj"})))
}

fn sa_json(token_url: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "proj-sa",
        "private_key_id": "kid-1",
        "private_key": TEST_KEY_PEM,
        "client_email": "svc@proj-sa.iam.gserviceaccount.com",
        "token_uri": token_url,
    })
    .to_string()
}

struct Running {
    input: tokio::sync::mpsc::Sender<SttInput>,
    events: tokio::sync::mpsc::Receiver<SttEvent>,
    task: tokio::task::JoinHandle<Result<(), PluginError>>,
}

async fn start(p: &GoogleStt, c: SttSessionConfig) -> Running {
    let (io, peer) = SttIo::pair(256);
    let task = tokio::time::timeout(T, p.connect(c, io))
        .await
        .unwrap()
        .unwrap();
    Running {
        input: peer.input,
        events: peer.events,
        task: tokio::spawn(task),
    }
}

impl Running {
    async fn audio(&self, b: Vec<u8>) {
        self.input
            .send(SttInput::Audio(Bytes::from(b)))
            .await
            .unwrap();
    }
    /// Streams `bytes` of a ramp in 100 ms (3200-byte) chunks.
    async fn stream(&self, bytes: usize, seed: u8) -> Vec<u8> {
        let all: Vec<u8> = (0..bytes)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect();
        for c in all.chunks(3200) {
            self.audio(c.to_vec()).await;
        }
        all
    }
    async fn next(&mut self) -> SttEvent {
        tokio::time::timeout(T, self.events.recv())
            .await
            .expect("an event in time")
            .expect("events open")
    }
    async fn next_final(&mut self) -> Transcript {
        loop {
            if let SttEvent::Transcript(t) = self.next().await {
                if t.is_final {
                    return *t;
                }
            }
        }
    }
    async fn close(self) -> (Result<(), PluginError>, Vec<SttEvent>) {
        let Running {
            input,
            mut events,
            task,
        } = self;
        drop(input);
        let r = tokio::time::timeout(T, task)
            .await
            .expect("task ends")
            .unwrap();
        let mut rest = Vec::new();
        while let Ok(e) = events.try_recv() {
            rest.push(e);
        }
        (r, rest)
    }
    async fn ended(self) -> Result<(), PluginError> {
        let Running {
            input,
            events,
            task,
        } = self;
        let r = tokio::time::timeout(T, task)
            .await
            .expect("task ends")
            .unwrap();
        drop((input, events));
        r
    }
}

async fn fake() -> GoogleFake {
    GoogleFake::start(KEY, TEST_KEY_PEM).await
}

fn first_config(call: &fake::SttCall) -> pb::StreamingRecognitionConfig {
    match call.first.clone().unwrap().streaming_request {
        Some(pb::streaming_recognize_request::StreamingRequest::StreamingConfig(c)) => c,
        other => panic!("first request is not a config: {other:?}"),
    }
}

#[tokio::test]
async fn request_shape_metadata_and_audio_byte_exact() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut c = cfg(&f);
    c.plugin_config =
        pc(json!({"endpoint": f.url, "project_id": "proj", "user_project": "billing-proj"}));
    let s = start(&p, c).await;
    let sent = s.stream(8000, 1).await;
    let (r, _) = s.close().await;
    r.unwrap();
    let calls = f.seen(|s| s.stt.clone());
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.metadata.get("x-goog-api-key").map(String::as_str),
        Some(KEY)
    );
    assert_eq!(
        call.metadata.get("x-goog-user-project").map(String::as_str),
        Some("billing-proj")
    );
    assert_eq!(
        call.metadata
            .get("x-goog-request-params")
            .map(String::as_str),
        Some("recognizer=projects%2Fproj%2Flocations%2Fglobal%2Frecognizers%2F_")
    );
    assert!(!call.metadata.contains_key("authorization"));
    assert_eq!(
        call.first.as_ref().unwrap().recognizer,
        "projects/proj/locations/global/recognizers/_"
    );
    let sc = first_config(call);
    let rc = sc.config.unwrap();
    assert_eq!(rc.model, "long");
    assert_eq!(rc.language_codes, ["en-US"]);
    let f2 = rc.features.unwrap();
    assert!(
        f2.enable_automatic_punctuation && f2.enable_word_time_offsets && f2.enable_word_confidence
    );
    match rc.decoding_config {
        Some(pb::recognition_config::DecodingConfig::ExplicitDecodingConfig(d)) => {
            assert_eq!(
                d.encoding,
                pb::explicit_decoding_config::AudioEncoding::Linear16 as i32
            );
            assert_eq!((d.sample_rate_hertz, d.audio_channel_count), (16_000, 1));
        }
        other => panic!("{other:?}"),
    }
    let sf = sc.streaming_features.unwrap();
    assert!(sf.interim_results && sf.enable_voice_activity_events);
    assert_eq!(call.audio, sent, "audio byte-exact");
    assert!(call.half_closed, "input close half-closes the stream");
}

#[tokio::test]
async fn regional_location_recognizer_model_and_mulaw() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut c = cfg(&f)
        .with_model("chirp_2")
        .with_format(AudioEncoding::Mulaw, 1);
    c.sample_rate = 8000;
    c.plugin_config = pc(
        json!({"endpoint": f.url, "project_id": "proj", "location": "us-central1", "recognizer": "my-rec"}),
    );
    let s = start(&p, c).await;
    s.audio(vec![0xff; 800]).await;
    s.close().await.0.unwrap();
    let call = f.seen(|s| s.stt[0].clone());
    assert_eq!(
        call.first.as_ref().unwrap().recognizer,
        "projects/proj/locations/us-central1/recognizers/my-rec"
    );
    let rc = first_config(&call).config.unwrap();
    assert_eq!(rc.model, "chirp_2");
    match rc.decoding_config {
        Some(pb::recognition_config::DecodingConfig::ExplicitDecodingConfig(d)) => {
            assert_eq!(
                d.encoding,
                pb::explicit_decoding_config::AudioEncoding::Mulaw as i32
            );
            assert_eq!(d.sample_rate_hertz, 8000);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn service_account_token_exchange_signed_and_cached() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut creds = Credentials::new();
    creds.set("credentials_json", Secret::from(sa_json(&f.token_url)));
    let c = SttSessionConfig::new("en-US", 16_000)
        .with_credentials(creds.clone())
        .with_plugin_config(pc(json!({"endpoint": f.url})));
    for _ in 0..2 {
        let s = start(&p, c.clone()).await;
        s.audio(vec![1; 640]).await;
        s.close().await.0.unwrap();
    }
    assert_eq!(p.auth_cache().fetches(), 1, "the token is cached");
    let (claims, headers, calls) =
        f.seen(|s| (s.jwt_claims.clone(), s.jwt_headers.clone(), s.stt.clone()));
    assert_eq!(claims.len(), 1, "signature verified once");
    assert_eq!(claims[0]["iss"], "svc@proj-sa.iam.gserviceaccount.com");
    assert_eq!(claims[0]["aud"], f.token_url.as_str());
    assert_eq!(
        claims[0]["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(headers[0]["kid"], "kid-1");
    assert_eq!(headers[0]["alg"], "RS256");
    let token = f.issued()[0].clone();
    for call in &calls {
        assert_eq!(
            call.metadata.get("authorization"),
            Some(&format!("Bearer {token}"))
        );
        assert!(!call.metadata.contains_key("x-goog-api-key"));
        // project_id comes from the key file.
        assert_eq!(
            call.first.as_ref().unwrap().recognizer,
            "projects/proj-sa/locations/global/recognizers/_"
        );
    }

    // The same account from a file path (GOOGLE_APPLICATION_CREDENTIALS).
    let path = std::env::temp_dir().join(format!("waav-google-sa-{}.json", std::process::id()));
    std::fs::write(&path, sa_json(&f.token_url)).unwrap();
    let mut creds = Credentials::new();
    creds.set("credentials_file", Secret::from(path.to_str().unwrap()));
    let p2 = GoogleStt::new();
    let s = start(&p2, c.clone().with_credentials(creds)).await;
    s.audio(vec![1; 640]).await;
    s.close().await.0.unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(p2.auth_cache().fetches(), 1);

    // A refused exchange fails the connect with Auth.
    f.knobs(|k| k.token_reject = true);
    let p3 = GoogleStt::new();
    let mut creds = Credentials::new();
    creds.set("credentials_json", Secret::from(sa_json(&f.token_url)));
    let (io, _peer) = SttIo::pair(8);
    let e = p3
        .connect(c.clone().with_credentials(creds), io)
        .await
        .err()
        .unwrap();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
}

#[tokio::test]
async fn interim_final_and_end_of_utterance_mapping() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut s = start(&p, cfg(&f)).await;
    s.stream(32_000, 0).await;
    assert_eq!(s.next().await, SttEvent::SpeechStarted);
    match s.next().await {
        SttEvent::Transcript(t) => {
            assert!(!t.is_final);
            assert_eq!(t.text, "utterance more", "interims joined");
        }
        other => panic!("{other:?}"),
    }
    // Activity end arrives before the final: the final is speech-final.
    let t = s.next_final().await;
    assert_eq!(t.text, "utterance 1");
    assert!(t.is_speech_final);
    assert!((t.confidence - 0.9).abs() < 1e-6);
    assert_eq!(t.language.as_deref(), Some("en-us"));
    assert_eq!(t.words.len(), 2);
    assert_eq!(t.words[1].word, "1");
    assert!((t.words[1].start - 0.5).abs() < 1e-6 && (t.words[1].end - 1.0).abs() < 1e-6);
    assert!((t.words[0].confidence - 0.8).abs() < 1e-6);

    // Final first, then the activity end: a bare UtteranceEnd.
    f.knobs(|k| k.final_first = true);
    s.stream(32_000, 0).await;
    let t = s.next_final().await;
    assert_eq!(t.text, "utterance 2");
    assert!(!t.is_speech_final);
    assert!(
        (t.words[0].start - 1.0).abs() < 1e-6,
        "offsets from the stream start"
    );
    assert_eq!(s.next().await, SttEvent::UtteranceEnd);
    s.close().await.0.unwrap();
}

#[tokio::test]
async fn finalize_half_closes_drains_and_reopens_with_shifted_offsets() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut s = start(&p, cfg(&f)).await;
    s.stream(9600, 0).await; // 0.3 s
    s.input.send(SttInput::Finalize).await.unwrap();
    let t = s.next_final().await;
    assert_eq!(t.text, "partial 1");
    assert!(
        t.is_speech_final,
        "a final drained after the half-close ends the utterance"
    );
    let after_first = f.seen(|s| (s.stt.len(), s.stt[0].half_closed));
    assert_eq!(after_first, (1, true));
    // The next audio opens a new stream, config first; its times start at 0.3 s.
    let second = s.stream(6400, 3).await;
    let (r, rest) = s.close().await;
    r.unwrap();
    let finals: Vec<_> = rest
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) if t.is_final => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1, "{rest:?}");
    assert_eq!(finals[0].text, "partial 1");
    assert!(
        (finals[0].words[0].start - 0.3).abs() < 1e-6,
        "{:?}",
        finals[0].words
    );
    let calls = f.seen(|s| s.stt.clone());
    assert_eq!(calls.len(), 2);
    assert!(first_config(&calls[1]).config.is_some());
    assert_eq!(calls[1].audio, second);
    assert!(calls[1].half_closed);
}

#[tokio::test]
async fn big_chunks_are_split_under_15_kb() {
    let f = fake().await;
    let p = GoogleStt::new();
    let s = start(&p, cfg(&f)).await;
    let big: Vec<u8> = (0..40_001u32).map(|i| i as u8).collect();
    s.audio(big.clone()).await;
    s.close().await.0.unwrap();
    let call = f.seen(|s| s.stt[0].clone());
    assert!(
        call.audio_sizes.iter().all(|n| *n <= 15 * 1024),
        "{:?}",
        call.audio_sizes
    );
    assert!(call.audio_sizes.len() >= 3);
    assert_eq!(call.audio, big);
}

#[tokio::test]
async fn server_ending_the_stream_reopens_lazily() {
    let f = fake().await;
    f.knobs(|k| k.stt_end_after_final = true);
    let p = GoogleStt::new();
    let mut s = start(&p, cfg(&f)).await;
    s.stream(32_000, 0).await;
    assert_eq!(s.next_final().await.text, "utterance 1");
    // Give the end of the call time to arrive, then keep talking (audio sent before the
    // client sees the end goes to the old call: send more than one utterance's worth).
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.stream(96_000, 0).await;
    assert_eq!(s.next_final().await.text, "utterance 1");
    s.close().await.0.unwrap();
    assert_eq!(f.seen(|s| s.stt.len()), 2);
}

#[tokio::test]
async fn auth_and_vendor_errors_map_to_categories() {
    let f = fake().await;
    let p = GoogleStt::new();
    // A wrong API key: UNAUTHENTICATED.
    let mut c = cfg(&f);
    c.api_key = Some(Secret::from("AIzaWrong"));
    let s = start(&p, c).await;
    s.audio(vec![0; 640]).await;
    let e = s.ended().await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("AIzaWrong"));

    let cases = [
        (
            {
                let mut st = tonic::Status::resource_exhausted("Quota exceeded");
                st.metadata_mut()
                    .insert("retry-after", "7".parse().unwrap());
                st
            },
            ErrorCategory::RateLimited,
        ),
        (
            tonic::Status::invalid_argument("Invalid recognizer"),
            ErrorCategory::Config,
        ),
        (
            tonic::Status::permission_denied("denied"),
            ErrorCategory::Auth,
        ),
        (
            tonic::Status::unavailable("try again"),
            ErrorCategory::Transient,
        ),
        (
            tonic::Status::not_found("Recognizer not found"),
            ErrorCategory::Config,
        ),
    ];
    for (status, want) in cases {
        f.knobs(|k| k.stt_fail_after = Some((2, status)));
        let s = start(&p, cfg(&f)).await;
        s.stream(9600, 0).await;
        let e = s.ended().await.unwrap_err();
        assert_eq!(e.category(), want, "{e}");
        if want == ErrorCategory::RateLimited {
            assert_eq!(
                e,
                PluginError::RateLimited {
                    retry_after: Some(Duration::from_secs(7)),
                    message: "google stt: ResourceExhausted: Quota exceeded".into()
                }
            );
        }
    }
}

#[tokio::test]
async fn odd_vendor_messages_never_panic() {
    let f = fake().await;
    f.knobs(|k| k.stt_odd = true);
    let p = GoogleStt::new();
    let mut s = start(&p, cfg(&f)).await;
    s.stream(32_000, 0).await;
    let mut saw = Vec::new();
    loop {
        match s.next().await {
            SttEvent::Transcript(t) if t.is_final && t.text == "utterance 1" => break,
            SttEvent::Transcript(t) => {
                assert!((0.0..=1.0).contains(&t.confidence));
                saw.push(t.text.len());
            }
            _ => {}
        }
    }
    assert!(
        saw.contains(&200_000),
        "the 200 KB interim passed through: {saw:?}"
    );
    s.close().await.0.unwrap();
}

/// Audio queued before the session task runs (as a failover replays its buffer): more pieces
/// than the call's request queue holds reach the fake in order, and every utterance is final.
#[tokio::test]
async fn a_burst_of_audio_at_the_start_is_neither_lost_nor_stuck() {
    for round in 0..5u8 {
        let f = fake().await;
        let p = GoogleStt::new();
        let (io, peer) = SttIo::pair(256);
        let task = tokio::time::timeout(T, p.connect(cfg(&f), io))
            .await
            .unwrap()
            .unwrap();
        let all: Vec<u8> = (0..128_000usize)
            .map(|i| (i as u8).wrapping_mul(3).wrapping_add(round))
            .collect();
        for c in all.chunks(3200) {
            peer.input
                .send(SttInput::Audio(Bytes::copy_from_slice(c)))
                .await
                .unwrap();
        }
        let mut s = Running {
            input: peer.input,
            events: peer.events,
            task: tokio::spawn(task),
        };
        for n in 1..=4 {
            assert_eq!(
                s.next_final().await.text,
                format!("utterance {n}"),
                "round {round}"
            );
        }
        s.close().await.0.unwrap();
        assert!(
            f.seen(|s| s.stt[0].audio == all),
            "round {round}: audio lost or reordered"
        );
    }
}

#[tokio::test]
async fn disconnect_and_silence_are_bounded() {
    // A server that drops the connection: the task ends with an error, no hang.
    let (url, srv) = fake::disconnecting_server(64).await;
    let p = GoogleStt::new();
    let c = SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(pc(json!({"endpoint": url, "project_id": "proj"})));
    let s = start(&p, c).await;
    s.stream(9600, 0).await;
    let e = s.ended().await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    srv.abort();

    // A server that never ends the stream after the half-close: Finalize reports a Timeout
    // and the session goes on; closing the input ends the task in bounded time.
    let f = fake().await;
    f.knobs(|k| k.stt_silent_on_close = true);
    let mut c = cfg(&f);
    c.plugin_config = pc(json!({"endpoint": f.url, "project_id": "proj", "drain_timeout_ms": 300}));
    let mut s = start(&p, c).await;
    s.stream(3200, 0).await;
    s.input.send(SttInput::Finalize).await.unwrap();
    loop {
        if let SttEvent::Error(e) = s.next().await {
            assert_eq!(e.category(), ErrorCategory::Timeout);
            break;
        }
    }
    s.stream(3200, 0).await;
    s.close().await.0.unwrap();
}

/// A fake with `knobs` set, for one registered fault.
async fn fake_with(knobs: impl FnOnce(&mut fake::Knobs)) -> GoogleFake {
    let f = fake().await;
    f.knobs(knobs);
    f
}

fn status_with_retry_after(code: tonic::Code, message: &str, secs: &str) -> tonic::Status {
    let mut st = tonic::Status::new(code, message);
    st.metadata_mut()
        .insert("retry-after", secs.parse().unwrap());
    st
}

#[tokio::test]
async fn conformance() {
    let f = fake().await;
    let p = GoogleStt::new();
    let mut samples = waav_testkit::audio::tone(300.0, 600, 16_000);
    samples.extend(waav_testkit::audio::silence(200, 16_000));
    let mut fixture = SttFixture::pcm16(waav_testkit::audio::to_le_bytes(&samples), 16_000)
        .with_session(cfg(&f))
        // The fake's scripted finals are "utterance <n>" (and "partial <n>" at a half-close).
        .expect("utterance")
        .guard(Duration::from_secs(15));
    // Every fault the fake injects, each on its own instance (kept alive for the run).
    let mut keep = Vec::new();
    let mut servers = Vec::new();

    // A wrong API key: UNAUTHENTICATED on the call.
    let wrong_key = fake().await;
    let mut c = cfg(&wrong_key);
    c.api_key = Some(Secret::from("AIzaWrong"));
    fixture = fixture.fault("wrong api key", c, FaultOutcome::Fails(ErrorCategory::Auth));
    keep.push(wrong_key);

    // A service-account key whose JWT exchange is refused (400 invalid_grant): connect fails.
    let refused = fake_with(|k| k.token_reject = true).await;
    let mut creds = Credentials::new();
    creds.set(
        "credentials_json",
        Secret::from(sa_json(&refused.token_url)),
    );
    let c = SttSessionConfig::new("en-US", 16_000)
        .with_credentials(creds)
        .with_plugin_config(pc(json!({"endpoint": refused.url})));
    fixture = fixture.fault(
        "token exchange refused",
        c,
        FaultOutcome::Fails(ErrorCategory::Auth),
    );
    keep.push(refused);

    // Statuses refusing the call, and statuses ending it mid-stream.
    let statuses = [
        (
            "call refused: PERMISSION_DENIED",
            true,
            tonic::Status::permission_denied("Permission denied on resource project proj."),
            ErrorCategory::Auth,
        ),
        (
            "call refused: RESOURCE_EXHAUSTED with retry-after",
            true,
            status_with_retry_after(tonic::Code::ResourceExhausted, "Quota exceeded", "7"),
            ErrorCategory::RateLimited,
        ),
        (
            "mid-stream RESOURCE_EXHAUSTED with retry-after",
            false,
            status_with_retry_after(tonic::Code::ResourceExhausted, "Quota exceeded", "3"),
            ErrorCategory::RateLimited,
        ),
        (
            "call refused: UNAVAILABLE",
            true,
            tonic::Status::unavailable("The service is currently unavailable."),
            ErrorCategory::Transient,
        ),
        (
            "mid-stream UNAVAILABLE",
            false,
            tonic::Status::unavailable("The service is currently unavailable."),
            ErrorCategory::Transient,
        ),
        (
            "mid-stream INTERNAL",
            false,
            tonic::Status::internal("Internal error encountered."),
            ErrorCategory::Transient,
        ),
        (
            "mid-stream INVALID_ARGUMENT",
            false,
            tonic::Status::invalid_argument("Invalid recognizer"),
            ErrorCategory::Config,
        ),
        (
            "mid-stream NOT_FOUND",
            false,
            tonic::Status::not_found("Recognizer not found"),
            ErrorCategory::Config,
        ),
        (
            "mid-stream DEADLINE_EXCEEDED",
            false,
            tonic::Status::deadline_exceeded("Deadline exceeded"),
            ErrorCategory::Timeout,
        ),
    ];
    for (name, at_open, status, category) in statuses {
        let f = fake_with(|k| {
            if at_open {
                k.reject = Some(status);
            } else {
                k.stt_fail_after = Some((3, status));
            }
        })
        .await;
        fixture = fixture.fault(name, cfg(&f), FaultOutcome::Fails(category));
        keep.push(f);
    }

    // The connection breaks mid-stream (after ~4 KB of audio went through).
    let behind = fake().await;
    let (url, proxy) = fake::cutting_proxy(&behind.url, 4096).await;
    let c = SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(pc(json!({"endpoint": url, "project_id": "proj"})));
    fixture = fixture.fault(
        "disconnect mid-stream",
        c,
        FaultOutcome::Fails(ErrorCategory::Transient),
    );
    keep.push(behind);
    servers.push(proxy);

    // The server hangs up during the handshake.
    let (url, srv) = fake::disconnecting_server(64).await;
    let c = SttSessionConfig::new("en-US", 16_000)
        .with_api_key(Some(Secret::from(KEY)))
        .with_plugin_config(pc(json!({"endpoint": url, "project_id": "proj"})));
    fixture = fixture.fault(
        "disconnect at the handshake",
        c,
        FaultOutcome::Fails(ErrorCategory::Transient),
    );
    servers.push(srv);

    // Garbage: a response message that is not protobuf (tonic: INTERNAL, Transient).
    let garbage = fake_with(|k| k.stt_garbage = true).await;
    fixture = fixture.fault(
        "undecodable response",
        cfg(&garbage),
        FaultOutcome::Fails(ErrorCategory::Transient),
    );
    keep.push(garbage);

    // The server ends the call by itself after a final (as latest_short does): the plugin
    // reopens on the next audio.
    let ends = fake_with(|k| k.stt_end_after_final = true).await;
    fixture = fixture.fault("server ends the stream", cfg(&ends), FaultOutcome::Recovers);
    keep.push(ends);

    // A server that never answers the half-close: the finalize times out (drain_timeout_ms).
    let silent = fake_with(|k| k.stt_silent_on_close = true).await;
    let mut c = cfg(&silent);
    c.plugin_config =
        pc(json!({"endpoint": silent.url, "project_id": "proj", "drain_timeout_ms": 300}));
    fixture = fixture.fault(
        "silent after the half-close",
        c,
        FaultOutcome::Fails(ErrorCategory::Timeout),
    );
    keep.push(silent);

    let report = check_stt(&p, &fixture).await;
    report.assert_ok();
    drop(keep);
    for s in servers {
        s.abort();
    }
}

#[tokio::test]
async fn unsupported_config_is_refused_before_dialling() {
    let f = fake().await;
    let p = GoogleStt::new();
    let refuse = |c: SttSessionConfig| {
        let p = &p;
        async move {
            let (io, _peer) = SttIo::pair(8);
            p.connect(c, io).await.err().expect("refused")
        }
    };
    let base = cfg(&f);
    let e = refuse(base.clone().with_format(AudioEncoding::Mp3, 1)).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    let mut c = base.clone();
    c.sample_rate = 4000;
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut c = base.clone();
    c.channels = 9;
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut c = base.clone();
    c.api_key = None;
    let e = refuse(c).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    let mut c = base.clone();
    c.plugin_config = pc(json!({"endpoint": f.url}));
    let e = refuse(c).await;
    assert!(e.to_string().contains("project_id"), "{e}");
    let mut c = base.clone();
    c.plugin_config = pc(json!({"endpoint": f.url, "project_id": "p", "location": "../x"}));
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let mut c = base.clone();
    c.plugin_config = pc(json!({"endpoint": "ftp://x", "project_id": "p"}));
    assert_eq!(refuse(c).await.category(), ErrorCategory::Config);
    let e = refuse(base.clone().with_model("nova-3")).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    let mut creds = Credentials::new();
    creds.set("credentials_json", Secret::from("{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"}"));
    let e = refuse(base.clone().with_credentials(creds)).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert_eq!(f.seen(|s| s.stt.len()), 0, "nothing was dialled");
}
