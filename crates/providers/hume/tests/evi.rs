//! The Hume EVI realtime plugin against the protocol fake over 127.0.0.1: at plugin level
//! through `RealtimeIo::pair`, and end to end through the gateway's `/realtime`.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use waav_hume::evi::HumeEvi;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, ErrorCategory, Plugin, PluginConfig, PluginError, PluginKind,
    RealtimeEvent, RealtimeInput, RealtimeIo, RealtimePeer, RealtimePlugin, RealtimeSessionConfig,
    Role, Secret,
};
use waav_testkit::fakes::hume_evi::{tone_sample, HumeEviFake, HumeEviOptions};
use waav_testkit::fakes::Reject;

const KEY: &str = "test-hume-key";
const GUARD: Duration = Duration::from_secs(10);
const RATE: u32 = 48_000;

async fn fake(opts: HumeEviOptions) -> HumeEviFake {
    HumeEviFake::start(opts).await
}

fn paced() -> HumeEviOptions {
    HumeEviOptions {
        paced: true,
        response_ms: 3_000,
        ..HumeEviOptions::default()
    }
}

fn config(fake: &HumeEviFake, extra: Value) -> RealtimeSessionConfig {
    let mut v = json!({"base_url": fake.base_url(), "metadata_timeout_ms": 2000});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    let mut c = RealtimeSessionConfig::default();
    c.input_format = AudioFormat::linear16(RATE);
    c.output_format = AudioFormat::linear16(RATE);
    c.api_key = Some(Secret::from(KEY));
    c.plugin_config = PluginConfig::from_value("plugins.realtime.hume", v).unwrap();
    c
}

struct Open {
    peer: RealtimePeer,
    task: JoinHandle<Result<(), PluginError>>,
}

async fn open(cfg: RealtimeSessionConfig) -> Open {
    let (io, peer) = RealtimeIo::pair(256);
    let task = timeout(GUARD, HumeEvi::new().connect(cfg, io))
        .await
        .expect("bounded")
        .expect("connects");
    Open {
        peer,
        task: tokio::spawn(task),
    }
}

async fn connect_err(cfg: RealtimeSessionConfig) -> PluginError {
    let (io, _peer) = RealtimeIo::pair(16);
    match timeout(GUARD, HumeEvi::new().connect(cfg, io))
        .await
        .expect("bounded")
    {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

impl Open {
    async fn next(&mut self) -> RealtimeEvent {
        timeout(GUARD, self.peer.events.recv())
            .await
            .expect("an event within the guard")
            .expect("the session is still open")
    }

    /// Events until one matches `done` (included).
    async fn until(&mut self, done: impl Fn(&RealtimeEvent) -> bool) -> Vec<RealtimeEvent> {
        let mut seen = Vec::new();
        loop {
            let ev = self.next().await;
            let stop = done(&ev);
            seen.push(ev);
            if stop {
                return seen;
            }
        }
    }

    async fn send(&self, input: RealtimeInput) {
        self.peer.input.send(input).await.unwrap();
    }

    async fn text(&self, t: &str) {
        self.send(RealtimeInput::Text(t.into())).await;
    }

    /// `ms` of 48 kHz audio in 20 ms frames.
    async fn speak(&self, ms: u32) {
        for _ in 0..ms / 20 {
            self.send(RealtimeInput::Audio(Bytes::from(vec![1u8; 1920])))
                .await;
        }
    }

    /// The task's result, once the session has ended.
    async fn ended(self) -> Result<(), PluginError> {
        self.wait(false).await
    }

    /// Closes the input (the host ends the session) and waits for the task.
    async fn finish(self) -> Result<(), PluginError> {
        self.wait(true).await
    }

    async fn wait(self, close_input: bool) -> Result<(), PluginError> {
        let Open { peer, task } = self;
        let (input, mut events) = (peer.input, peer.events);
        let _input = (!close_input).then_some(input);
        let drain = async { while events.recv().await.is_some() {} };
        let _ = timeout(GUARD, drain).await;
        timeout(GUARD, task).await.expect("ends").expect("no panic")
    }
}

fn is_done(ev: &RealtimeEvent) -> bool {
    matches!(ev, RealtimeEvent::ResponseDone { .. })
}

fn audio_bytes(evs: &[RealtimeEvent]) -> Vec<u8> {
    evs.iter()
        .filter_map(|e| match e {
            RealtimeEvent::Audio(a) => Some(a.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn tone(samples: usize) -> Vec<u8> {
    (0..samples)
        .flat_map(|i| tone_sample(i).to_le_bytes())
        .collect()
}

fn without_audio(evs: &[RealtimeEvent]) -> Vec<RealtimeEvent> {
    evs.iter()
        .filter(|e| !matches!(e, RealtimeEvent::Audio(_)))
        .cloned()
        .collect()
}

fn transcript(text: &str, role: Role, is_final: bool) -> RealtimeEvent {
    RealtimeEvent::Transcript {
        text: text.into(),
        role,
        is_final,
    }
}

#[test]
fn registered_as_a_realtime_plugin_with_aliases_and_credential() {
    let found = waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .find(|h| h.kind() == PluginKind::Realtime && h.plugin().info().id == "hume")
        .expect("registered");
    let info = found.plugin().info();
    assert_eq!(info.aliases, ["hume-evi", "hume-ai"]);
    let fields = info.credential_fields();
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].name, fields[0].env),
        ("api_key", Some("HUME_API_KEY"))
    );
    assert!(fields[0].secret && fields[0].required);
    let caps = HumeEvi::new().capabilities();
    assert_eq!(caps.encodings, [AudioEncoding::Linear16]);
    assert_eq!(caps.sample_rates, [48_000]);
    assert_eq!(caps.max_channels, 1);
    // The TTS plugin keeps its own id in its own kind.
    assert!(waav_plugin_api::registrations()
        .map(|r| (r.create)())
        .any(|h| h.kind() == PluginKind::Tts && h.plugin().info().id == "hume"));
}

#[tokio::test]
async fn a_spoken_turn_gives_both_transcripts_and_header_free_audio() {
    let f = fake(HumeEviOptions::default()).await;
    let mut s = open(config(&f, json!({}))).await;
    assert_eq!(
        s.next().await,
        RealtimeEvent::SessionCreated {
            session_id: "chat_0".into(),
            model: "evi-default".into()
        }
    );
    s.speak(200).await;
    let evs = s.until(is_done).await;
    assert_eq!(
        without_audio(&evs),
        [
            RealtimeEvent::Speech {
                started: true,
                audio_ms: 0
            },
            RealtimeEvent::Speech {
                started: false,
                audio_ms: 200
            },
            transcript("heard 200 ms", Role::User, true),
            transcript("reply to: 200 ms of audio", Role::Assistant, true),
            RealtimeEvent::ResponseDone {
                response_id: "am_1".into()
            },
        ]
    );
    // 200 ms of the fake's 48 kHz tone, every chunk's WAV header stripped.
    assert_eq!(audio_bytes(&evs), tone(48_000 / 5));
    let seen = f.last();
    assert_eq!(seen.audio, vec![1u8; 1920 * 10]);
    assert_eq!(seen.audio_messages, 10);
    // Input close: a graceful close frame, and the task ends cleanly.
    s.finish().await.unwrap();
    for _ in 0..100 {
        if f.last().client_close.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.last().client_close, Some(1000));
}

#[tokio::test]
async fn session_settings_map_every_field_and_the_query_the_config() {
    let f = fake(HumeEviOptions::default()).await;
    let mut cfg = config(
        &f,
        json!({"variables": {"name": "Ada", "age": 36}, "context": {"text": "VIP", "type": "persistent"},
               "builtin_tools": ["hang_up"], "language_model_api_key": "llm-secret",
               "resumed_chat_group_id": "cg_9", "event_limit": 5}),
    );
    cfg.model = "cfg-123@2".into();
    cfg.voice = "voice-7".into();
    cfg.instructions = Some("Be brief.".into());
    cfg.temperature = Some(0.7);
    cfg.max_response_tokens = Some(100);
    cfg.transcribe_input = true;
    cfg.input_format = AudioFormat::linear16(RATE);
    cfg.tools = vec![
        json!({"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}),
        json!({"type":"function","name":"flat"}),
        json!({"type":"builtin","name":"web_search"}),
    ];
    let mut s = open(cfg.clone()).await;
    match s.next().await {
        RealtimeEvent::SessionCreated { model, .. } => assert_eq!(model, "cfg-123@2"),
        other => panic!("{other:?}"),
    }
    let req = f.requests().pop().unwrap();
    assert_eq!(req.path(), "/v0/evi/chat");
    assert_eq!(req.query("config_id"), Some("cfg-123"));
    assert_eq!(req.query("config_version"), Some("2"));
    assert_eq!(req.query("verbose_transcription"), Some("true"));
    assert_eq!(req.query("resumed_chat_group_id"), Some("cg_9"));
    assert_eq!(req.query("event_limit"), Some("5"));
    assert_eq!(req.query("api_key"), None);
    assert_eq!(req.header("x-hume-api-key"), Some(KEY));
    // Settings are sent right after chat_metadata; a text makes sure they have arrived.
    s.text("hello").await;
    s.until(is_done).await;
    let settings = f.last().settings;
    assert_eq!(
        settings[0],
        json!({"type": "session_settings",
            "audio": {"encoding": "linear16", "sample_rate": 48000, "channels": 1},
            "system_prompt": "Be brief.",
            "voice_id": "voice-7",
            "tools": [
                {"type": "function", "name": "get_weather", "description": "Weather",
                 "parameters": "{\"properties\":{\"city\":{\"type\":\"string\"}},\"type\":\"object\"}"},
                {"type": "function", "name": "flat", "parameters": "{\"type\":\"object\",\"properties\":{}}"}
            ],
            "builtin_tools": [{"name": "web_search"}, {"name": "hang_up"}],
            "variables": {"name": "Ada", "age": 36},
            "context": {"text": "VIP", "type": "persistent"},
            "language_model_api_key": "llm-secret"})
    );
    // update_session: the whole state again; tools cleared explicitly once sent.
    let mut up = cfg.clone();
    up.instructions = Some("Be cheerful.".into());
    up.voice = String::new();
    up.tools = Vec::new();
    s.send(RealtimeInput::UpdateSession(Box::new(up))).await;
    assert_eq!(s.next().await, RealtimeEvent::SessionUpdated);
    s.text("again").await;
    s.until(is_done).await;
    let settings = f.last().settings;
    assert_eq!(settings.len(), 2);
    assert_eq!(settings[1]["system_prompt"], "Be cheerful.");
    assert_eq!(settings[1]["tools"], json!([]));
    assert!(settings[1].get("voice_id").is_none());
    assert_eq!(settings[1]["builtin_tools"], json!([{"name": "hang_up"}]));
}

#[tokio::test]
async fn auth_by_header_query_or_access_token_and_bad_keys_are_auth_errors() {
    let f = fake(HumeEviOptions {
        access_token: Some("tok-1".into()),
        ..HumeEviOptions::default()
    })
    .await;
    let mut s = open(config(&f, json!({"auth": "query"}))).await;
    assert!(matches!(
        s.next().await,
        RealtimeEvent::SessionCreated { .. }
    ));
    let req = f.requests().pop().unwrap();
    assert_eq!(req.query("api_key"), Some(KEY));
    assert_eq!(req.header("x-hume-api-key"), None);

    let mut cfg = config(&f, json!({"auth": "access_token"}));
    cfg.api_key = Some(Secret::from("tok-1"));
    let mut s = open(cfg).await;
    assert!(matches!(
        s.next().await,
        RealtimeEvent::SessionCreated { .. }
    ));
    assert_eq!(
        f.requests().pop().unwrap().query("access_token"),
        Some("tok-1")
    );

    let mut cfg = config(&f, json!({}));
    cfg.api_key = Some(Secret::from("wrong-key-123"));
    let e = connect_err(cfg).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("wrong-key-123"), "{e}");

    let mut cfg = config(&f, json!({"auth": "query"}));
    cfg.api_key = Some(Secret::from("wrong-key-456"));
    let e = connect_err(cfg).await;
    assert!(!format!("{e} {e:?}").contains("wrong-key-456"), "{e}");

    let mut cfg = config(&f, json!({}));
    cfg.api_key = None;
    assert_eq!(connect_err(cfg).await.category(), ErrorCategory::Auth);
}

#[tokio::test]
async fn a_function_call_round_trip() {
    let f = fake(HumeEviOptions::default()).await;
    let mut cfg = config(&f, json!({}));
    cfg.tools = vec![json!({"type":"function","function":{"name":"get_weather"}})];
    let mut s = open(cfg).await;
    s.next().await;
    s.text("call get_weather").await;
    let evs = s
        .until(|e| matches!(e, RealtimeEvent::FunctionCall { .. }))
        .await;
    assert_eq!(
        evs,
        [
            // A typed turn: no speech events.
            transcript("call get_weather", Role::User, true),
            RealtimeEvent::FunctionCall {
                call_id: "call-1".into(),
                name: "get_weather".into(),
                arguments: "{}".into()
            }
        ]
    );
    s.send(RealtimeInput::FunctionResult {
        call_id: "call-1".into(),
        result: r#"{"temp":21}"#.into(),
    })
    .await;
    let evs = s.until(is_done).await;
    assert_eq!(
        without_audio(&evs)[0],
        transcript(
            r#"reply to: get_weather returned {"temp":21}"#,
            Role::Assistant,
            true
        )
    );
    assert_eq!(
        f.last().tool_answers,
        [
            json!({"type": "tool_response", "tool_call_id": "call-1", "content": "{\"temp\":21}",
            "tool_name": "get_weather", "tool_type": "function"})
        ]
    );
}

#[tokio::test]
async fn cancel_mid_response_ends_it_and_drops_the_rest() {
    let f = fake(paced()).await;
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("tell me a story").await;
    s.until(|e| matches!(e, RealtimeEvent::Audio(_))).await;
    s.send(RealtimeInput::CancelResponse).await;
    let evs = s.until(is_done).await;
    assert_eq!(
        evs.last(),
        Some(&RealtimeEvent::ResponseDone {
            response_id: "am_1".into()
        })
    );
    // EVI keeps streaming the cancelled response; none of it comes through. The next turn does.
    s.text("next").await;
    let evs = s.until(is_done).await;
    assert_eq!(
        evs[0],
        transcript("next", Role::User, true),
        "nothing of the cancelled response after its ResponseDone: {:?}",
        without_audio(&evs)
    );
    assert_eq!(
        evs.last(),
        Some(&RealtimeEvent::ResponseDone {
            response_id: "am_2".into()
        })
    );
    assert_eq!(audio_bytes(&evs).len(), 48_000 * 2 * 3);
}

#[tokio::test]
async fn barge_in_interrupts_and_the_next_turn_is_answered() {
    for end_after in [false, true] {
        let f = fake(HumeEviOptions {
            end_after_interruption: end_after,
            ..paced()
        })
        .await;
        let mut s = open(config(&f, json!({}))).await;
        s.next().await;
        s.text("tell me a story").await;
        s.until(|e| matches!(e, RealtimeEvent::Audio(_))).await;
        s.speak(20).await;
        let evs = s.until(is_done).await;
        let tail: Vec<_> = without_audio(&evs)
            .into_iter()
            .filter(|e| !matches!(e, RealtimeEvent::Transcript { .. }))
            .collect();
        assert_eq!(
            tail,
            [
                // Where the input was when EVI reported the interruption.
                RealtimeEvent::Speech {
                    started: true,
                    audio_ms: 20
                },
                RealtimeEvent::Interrupted,
                RealtimeEvent::ResponseDone {
                    response_id: "am_1".into()
                }
            ]
        );
        // The rest of the user's turn: a new response, with nothing of the old one first.
        s.speak(180).await;
        let evs = s.until(is_done).await;
        assert_eq!(
            without_audio(&evs),
            [
                RealtimeEvent::Speech {
                    started: false,
                    audio_ms: 200
                },
                transcript("heard 200 ms", Role::User, true),
                transcript("reply to: 200 ms of audio", Role::Assistant, true),
                RealtimeEvent::ResponseDone {
                    response_id: "am_2".into()
                }
            ],
            "end_after_interruption={end_after}"
        );
        assert_eq!(f.last().interruptions, 1);
    }
}

#[tokio::test]
async fn vendor_errors_are_categorised_and_only_some_end_the_session() {
    let f = fake(HumeEviOptions::default()).await;
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("error E0709 concurrency_limit").await;
    let evs = s.until(|e| matches!(e, RealtimeEvent::Error(_))).await;
    let RealtimeEvent::Error(e) = evs.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    assert!(e.to_string().contains("E0709"), "{e}");
    // Still working.
    s.text("hello").await;
    s.until(is_done).await;
    // A fatal one (an error, then close 1008): the error is reported, then the close ends
    // the session (1008, policy violation, is Auth in the kit's table).
    s.text("fatal I0500 uncaught").await;
    let evs = s.until(|e| matches!(e, RealtimeEvent::Error(_))).await;
    let RealtimeEvent::Error(e) = evs.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert!(e.to_string().contains("I0500"), "{e}");
    let e = s.ended().await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    // A normal close right after an error: the error is the reason.
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("error I0500 uncaught").await;
    s.until(|e| matches!(e, RealtimeEvent::Error(_))).await;
    s.text("close 1000").await;
    let e = s.ended().await.unwrap_err();
    assert!(e.to_string().contains("I0500"), "{e}");
    // Out of credits ends the session as Auth at once.
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("error E0300 out_of_credits").await;
    assert_eq!(s.ended().await.unwrap_err().category(), ErrorCategory::Auth);
}

#[tokio::test]
async fn vendor_disconnects_and_closes_end_the_task_with_an_error() {
    let f = fake(HumeEviOptions::default()).await;
    for (trigger, cat) in [
        ("disconnect", ErrorCategory::Transient),
        ("close 1011", ErrorCategory::Transient),
        ("close 1000", ErrorCategory::Transient),
        ("close 1008", ErrorCategory::Auth),
    ] {
        let mut s = open(config(&f, json!({}))).await;
        s.next().await;
        s.text(trigger).await;
        let e = s.ended().await.unwrap_err();
        assert_eq!(e.category(), cat, "{trigger}: {e}");
    }
    let f = fake(HumeEviOptions {
        disconnect_after_audio: Some(3),
        ..HumeEviOptions::default()
    })
    .await;
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.speak(100).await;
    assert_eq!(
        s.ended().await.unwrap_err().category(),
        ErrorCategory::Transient
    );
}

#[tokio::test]
async fn malformed_vendor_messages_never_panic_and_change_nothing() {
    let f = fake(HumeEviOptions {
        garbage: true,
        ..HumeEviOptions::default()
    })
    .await;
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("garbage").await;
    let evs = s.until(is_done).await;
    assert_eq!(
        without_audio(&evs),
        [
            transcript("garbage", Role::User, true),
            transcript("reply to: garbage", Role::Assistant, true),
            RealtimeEvent::ResponseDone {
                response_id: "am_1".into()
            }
        ]
    );
    assert_eq!(audio_bytes(&evs), tone(48_000 / 5));
    s.speak(200).await;
    s.until(is_done).await;
}

#[tokio::test]
async fn silent_vendors_are_timed_out() {
    let f = fake(HumeEviOptions {
        silent: true,
        ..HumeEviOptions::default()
    })
    .await;
    let e = connect_err(config(&f, json!({"metadata_timeout_ms": 300}))).await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");

    let f = fake(HumeEviOptions::default()).await;
    let mut s = open(config(
        &f,
        json!({"idle_timeout_ms": 400, "ping_interval_ms": 100}),
    ))
    .await;
    s.next().await;
    s.text("silence").await;
    let e = s.ended().await.unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn refusals_at_connect() {
    let f = fake(HumeEviOptions {
        error_instead_of_metadata: Some((
            "E0300".into(),
            "out_of_credits".into(),
            "No credits".into(),
        )),
        ..HumeEviOptions::default()
    })
    .await;
    assert_eq!(
        connect_err(config(&f, json!({}))).await.category(),
        ErrorCategory::Auth
    );
    let f = fake(HumeEviOptions {
        reject: Some(Reject::status(429).header("retry-after", "3")),
        ..HumeEviOptions::default()
    })
    .await;
    let e = connect_err(config(&f, json!({}))).await;
    assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
    // Formats the plugin does not produce, bad config and bad model ids never dial.
    let f = fake(HumeEviOptions::default()).await;
    let mut cfg = config(&f, json!({}));
    cfg.output_format = AudioFormat::linear16(24_000);
    assert_eq!(connect_err(cfg).await.category(), ErrorCategory::Config);
    let mut cfg = config(&f, json!({}));
    cfg.input_format = AudioFormat {
        encoding: AudioEncoding::Mulaw,
        sample_rate: 8_000,
        channels: 1,
    };
    assert_eq!(connect_err(cfg).await.category(), ErrorCategory::Config);
    let mut cfg = config(&f, json!({}));
    cfg.model = "not a config".into();
    assert_eq!(connect_err(cfg).await.category(), ErrorCategory::Config);
    let cfg = config(&f, json!({"base_url": "ftp://nope"}));
    assert_eq!(connect_err(cfg).await.category(), ErrorCategory::Config);
    assert!(f.requests().is_empty());
}

#[tokio::test]
async fn manual_turns_are_held_until_commit() {
    let f = fake(HumeEviOptions::default()).await;
    let mut cfg = config(&f, json!({}));
    cfg.turn_detection = Some(json!({"mode": "manual"}));
    let mut s = open(cfg).await;
    s.next().await;
    s.speak(200).await;
    let evs = s
        .until(|e| {
            matches!(
                e,
                RealtimeEvent::Transcript {
                    role: Role::User,
                    ..
                }
            )
        })
        .await;
    assert_eq!(
        evs.last(),
        Some(&transcript("heard 200 ms", Role::User, true))
    );
    assert_eq!(f.last().responses, 0, "answered before the commit");
    s.send(RealtimeInput::ClearAudio).await;
    s.send(RealtimeInput::CommitAudio).await;
    let evs = s.until(is_done).await;
    assert_eq!(
        without_audio(&evs)[0],
        transcript("reply to: 200 ms of audio", Role::Assistant, true)
    );
    // Paused again for the next turn.
    for _ in 0..100 {
        if f.last().pauses == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = f.last();
    assert_eq!((seen.pauses, seen.resumes), (2, 1));
    // Text asks for a response now.
    s.text("hi").await;
    s.until(is_done).await;
}

#[tokio::test]
async fn text_only_modalities_drop_audio_and_odd_wavs_are_reported() {
    let f = fake(HumeEviOptions::default()).await;
    let mut cfg = config(&f, json!({}));
    cfg.modalities = vec!["text".into()];
    let mut s = open(cfg).await;
    s.next().await;
    s.text("hello").await;
    let evs = s.until(is_done).await;
    assert!(audio_bytes(&evs).is_empty());
    assert_eq!(evs.len(), 3, "{evs:?}");

    let f = fake(HumeEviOptions {
        wav_rate: 24_000,
        ..HumeEviOptions::default()
    })
    .await;
    let mut s = open(config(&f, json!({}))).await;
    s.next().await;
    s.text("hello").await;
    let evs = s.until(is_done).await;
    assert!(audio_bytes(&evs).is_empty());
    let errors: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::Error(e) => Some(e.category()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [ErrorCategory::Permanent]);
}

#[tokio::test]
async fn interim_transcripts_with_verbose_transcription() {
    let f = fake(HumeEviOptions::default()).await;
    let mut s = open(config(&f, json!({"verbose_transcription": true}))).await;
    s.next().await;
    s.speak(200).await;
    let evs = s.until(is_done).await;
    let user: Vec<_> = evs
        .iter()
        .filter(|e| {
            matches!(
                e,
                RealtimeEvent::Transcript {
                    role: Role::User,
                    ..
                }
            )
        })
        .cloned()
        .collect();
    assert_eq!(
        user,
        [
            transcript("heard 100 ms", Role::User, false),
            transcript("heard 200 ms", Role::User, true)
        ]
    );
}

// ---------------------------------------------------------------- through the gateway

struct Gateway {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A gateway on 127.0.0.1 with the EVI plugin pointed at `fake` (the minimal start helper of
/// `crates/gateway/tests/common`).
async fn gateway(fake: &HumeEviFake) -> Gateway {
    use waav_gateway::config::{CliOverrides, GatewayConfig};
    let _ = HumeEvi::new(); // links the plugin
    let yaml = format!(
        "plugins:\n  realtime:\n    hume: {{ base_url: \"{}\", api_key: \"{KEY}\" }}\n",
        fake.base_url()
    );
    let env = |_: &str| None;
    let config =
        GatewayConfig::from_sources(Some(&yaml), &env, &CliOverrides::default()).expect("config");
    let gw = waav_gateway::Gateway::start(config).await.expect("starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(gw.serve(listener, async {
        let _ = rx.await;
    }));
    Gateway {
        addr,
        stop: Some(tx),
    }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn client(gw: &Gateway) -> Client {
    let url = format!("ws://{}/realtime", gw.addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(c: &mut Client, v: Value) {
    c.send(Message::text(v.to_string())).await.unwrap();
}

/// Frames until a JSON message of type `ty`: (JSON messages, binary bytes).
async fn until_type(c: &mut Client, ty: &str) -> (Vec<Value>, usize) {
    let (mut msgs, mut bytes) = (Vec::new(), 0);
    loop {
        let m = timeout(GUARD, c.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty}; saw {msgs:?}"))
            .expect("open")
            .expect("frame");
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let done = v["type"] == ty;
                msgs.push(v);
                if done {
                    return (msgs, bytes);
                }
            }
            Message::Binary(b) => bytes += b.len(),
            _ => {}
        }
    }
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["type"].as_str()).collect()
}

#[tokio::test]
async fn gateway_a_spoken_turn_end_to_end() {
    let f = fake(HumeEviOptions::default()).await;
    let gw = gateway(&f).await;
    let mut c = client(&gw).await;
    send(
        &mut c,
        json!({"type":"config","provider":"hume-evi","instructions":"Be brief."}),
    )
    .await;
    let (msgs, _) = until_type(&mut c, "session_created").await;
    let created = msgs.last().unwrap();
    assert_eq!(
        (
            &created["provider"],
            &created["session_id"],
            &created["model"]
        ),
        (&json!("hume"), &json!("chat_0"), &json!("evi-default"))
    );
    // 300 ms of 24 kHz PCM16 from the client; the plugin gets 48 kHz.
    for _ in 0..15 {
        c.send(Message::binary(vec![0x10u8; 960])).await.unwrap();
    }
    let (msgs, bytes) = until_type(&mut c, "response_done").await;
    assert_eq!(
        types(&msgs),
        [
            "speech_event",
            "speech_event",
            "transcript",
            "transcript",
            "response_done"
        ]
    );
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(msgs[3]["role"], "assistant");
    // 200 ms of output at the client's 24 kHz (give or take the resampler's edge).
    assert!((9_000..=10_000).contains(&bytes), "{bytes}");
    let seen = f.last();
    assert_eq!(seen.settings[0]["system_prompt"], "Be brief.");
    assert_eq!(seen.settings[0]["audio"]["sample_rate"], 48_000);
    assert_eq!(seen.request.unwrap().header("x-hume-api-key"), Some(KEY));
}

#[tokio::test]
async fn gateway_function_calls_barge_in_errors_and_disconnects() {
    let f = fake(paced()).await;
    let gw = gateway(&f).await;
    let mut c = client(&gw).await;
    let tools = json!([{"type":"function","function":{"name":"get_weather","parameters":{}}}]);
    send(
        &mut c,
        json!({"type":"config","provider":"hume","tools":tools}),
    )
    .await;
    until_type(&mut c, "session_created").await;
    // A function call round trip.
    send(&mut c, json!({"type":"text","text":"call get_weather"})).await;
    let (msgs, _) = until_type(&mut c, "function_call").await;
    let call = msgs.last().unwrap();
    assert_eq!(
        (&call["name"], &call["call_id"]),
        (&json!("get_weather"), &json!("call-1"))
    );
    send(
        &mut c,
        json!({"type":"function_result","call_id":"call-1","result":"{\"t\":1}"}),
    )
    .await;
    // Barge-in while its (long, paced) answer plays.
    let (msgs, _) = until_type(&mut c, "transcript").await;
    assert_eq!(msgs.last().unwrap()["role"], "assistant");
    for _ in 0..3 {
        c.send(Message::binary(vec![0x10u8; 960])).await.unwrap();
    }
    let (msgs, _) = until_type(&mut c, "response_done").await;
    assert!(types(&msgs).contains(&"response_interrupted"), "{msgs:?}");
    // A vendor error: reported, the session goes on.
    send(
        &mut c,
        json!({"type":"text","text":"error E0709 concurrency_limit"}),
    )
    .await;
    let (msgs, _) = until_type(&mut c, "error").await;
    assert_eq!(msgs.last().unwrap()["code"], "provider_rate_limited");
    // A vendor disconnect: reported; the client connection survives and reconfigures.
    send(&mut c, json!({"type":"text","text":"disconnect"})).await;
    let (msgs, _) = until_type(&mut c, "error").await;
    assert_eq!(msgs.last().unwrap()["code"], "provider_unavailable");
    send(&mut c, json!({"type":"config","provider":"hume"})).await;
    until_type(&mut c, "session_created").await;
    send(&mut c, json!({"type":"cancel_response"})).await;
    send(&mut c, json!({"type":"text","text":"still here"})).await;
    let (msgs, _) = until_type(&mut c, "transcript").await;
    assert_eq!(msgs.last().unwrap()["text"], "still here");
}

#[tokio::test]
async fn gateway_cancel_mid_response_stops_its_audio() {
    let f = fake(paced()).await;
    let gw = gateway(&f).await;
    let mut c = client(&gw).await;
    send(&mut c, json!({"type":"config","provider":"hume"})).await;
    until_type(&mut c, "session_created").await;
    send(&mut c, json!({"type":"text","text":"tell me a story"})).await;
    loop {
        let m = timeout(GUARD, c.next())
            .await
            .expect("a frame")
            .expect("open")
            .expect("frame");
        if matches!(m, Message::Binary(_)) {
            break;
        }
    }
    send(&mut c, json!({"type":"cancel_response"})).await;
    let (_, bytes) = until_type(&mut c, "response_done").await;
    // Chunks already on their way may still arrive; the rest of the story does not.
    assert!(bytes <= 5 * 9_600, "{bytes} bytes after the cancel");
    // The next turn is answered, with nothing of the cancelled one in front of it.
    send(&mut c, json!({"type":"text","text":"next"})).await;
    let (msgs, _) = until_type(&mut c, "response_done").await;
    let first = msgs.iter().find(|m| m["type"] == "transcript").unwrap();
    assert_eq!(
        (&first["role"], &first["text"]),
        (&json!("user"), &json!("next")),
        "{msgs:?}"
    );
}
