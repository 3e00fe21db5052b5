//! The OpenAI Realtime plugin against the fake over 127.0.0.1: at plugin level through
//! `RealtimeIo::pair`, and end to end through the gateway's `/realtime`.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use waav_openai::realtime::OpenAiRealtime;
use waav_plugin_api::codec;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, ErrorCategory, PluginConfig, PluginError, RealtimeEvent,
    RealtimeInput, RealtimeIo, RealtimePeer, RealtimePlugin, RealtimeSessionConfig, Role, Secret,
};
use waav_testkit::audio::{silence, to_le_bytes, tone};
use waav_testkit::fakes::openai_realtime::{
    ConnLog, FakeOptions, Fault, Format, OpenAiRealtimeFake, CALL_ARGUMENTS,
};

const KEY: &str = "test-key";
const WAIT: Duration = Duration::from_secs(10);

fn speech(ms: u32, rate: u32) -> Vec<Vec<u8>> {
    to_le_bytes(&tone(440.0, ms, rate))
        .chunks((rate / 50 * 2) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn quiet(ms: u32, rate: u32) -> Vec<Vec<u8>> {
    to_le_bytes(&silence(ms, rate))
        .chunks((rate / 50 * 2) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn config(fake: &OpenAiRealtimeFake, section: Value) -> RealtimeSessionConfig {
    let mut s = json!({ "base_url": fake.base_url() });
    if let (Some(s), Some(e)) = (s.as_object_mut(), section.as_object()) {
        s.extend(e.clone());
    }
    let mut c = RealtimeSessionConfig::default();
    c.plugin_config = PluginConfig::from_value("plugins.realtime.openai", s).unwrap();
    c.api_key = Some(Secret::new(KEY));
    c
}

fn vad(ms: u32) -> Value {
    json!({"mode": "server_vad", "silence_duration_ms": ms})
}

type Task = JoinHandle<Result<(), PluginError>>;

async fn open(c: RealtimeSessionConfig) -> (RealtimePeer, Task) {
    let (io, peer) = RealtimeIo::pair(256);
    let task = OpenAiRealtime::new().connect(c, io).await.expect("connect");
    let mut p = (peer, tokio::spawn(task));
    match next(&mut p.0).await {
        RealtimeEvent::SessionCreated { .. } => {}
        other => panic!("first event {other:?}"),
    }
    p
}

async fn connect_err(c: RealtimeSessionConfig) -> PluginError {
    let (io, _peer) = RealtimeIo::pair(16);
    match OpenAiRealtime::new().connect(c, io).await {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

async fn next(peer: &mut RealtimePeer) -> RealtimeEvent {
    tokio::time::timeout(WAIT, peer.events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the session is open")
}

/// Every event up to and including the first that `stop` accepts.
async fn until(
    peer: &mut RealtimePeer,
    stop: impl Fn(&RealtimeEvent) -> bool,
) -> Vec<RealtimeEvent> {
    let mut out = Vec::new();
    loop {
        let ev = next(peer).await;
        let done = stop(&ev);
        out.push(ev);
        if done {
            return out;
        }
    }
}

fn is_done(ev: &RealtimeEvent) -> bool {
    matches!(ev, RealtimeEvent::ResponseDone { .. })
}

fn audio_of(evs: &[RealtimeEvent]) -> Vec<u8> {
    evs.iter()
        .filter_map(|e| match e {
            RealtimeEvent::Audio(a) => Some(a.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn transcripts(evs: &[RealtimeEvent], who: Role) -> Vec<(String, bool)> {
    evs.iter()
        .filter_map(|e| match e {
            RealtimeEvent::Transcript {
                text,
                role,
                is_final,
            } if *role == who => Some((text.clone(), *is_final)),
            _ => None,
        })
        .collect()
}

async fn send(peer: &RealtimePeer, i: RealtimeInput) {
    peer.input.send(i).await.expect("session open");
}

async fn send_audio(peer: &RealtimePeer, frames: Vec<Vec<u8>>) {
    for f in frames {
        send(peer, RealtimeInput::Audio(Bytes::from(f))).await;
    }
}

fn last(fake: &OpenAiRealtimeFake) -> ConnLog {
    fake.connections().pop().expect("a connection")
}

#[tokio::test]
async fn session_update_maps_every_field_and_the_auth_header() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(
        &fake,
        json!({"organization": "org-1", "noise_reduction": "near_field"}),
    );
    c.model = "gpt-realtime-mini".into();
    c.voice = "marin".into();
    c.instructions = Some("Be brief.".into());
    c.temperature = Some(0.7);
    c.max_response_tokens = Some(9000);
    c.turn_detection = Some(
        json!({"mode":"server_vad","threshold":0.6,"silence_duration_ms":300,"prefix_padding_ms":200}),
    );
    c.tools = vec![
        json!({"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object"}}}),
    ];
    c.modalities = vec!["audio".into(), "text".into()];
    c.transcribe_input = true;
    let (io, mut peer) = RealtimeIo::pair(16);
    let task = OpenAiRealtime::new().connect(c, io).await.unwrap();
    let task = tokio::spawn(task);
    assert_eq!(
        next(&mut peer).await,
        RealtimeEvent::SessionCreated {
            session_id: "sess_fake1".into(),
            model: "gpt-realtime-mini".into()
        }
    );
    let log = last(&fake);
    let req = log.request.clone().unwrap();
    assert_eq!(req.path(), "/v1/realtime");
    assert_eq!(req.query("model"), Some("gpt-realtime-mini"));
    assert_eq!(req.header("authorization"), Some("Bearer test-key"));
    assert_eq!(req.header("openai-organization"), Some("org-1"));
    assert_eq!(req.header("openai-beta"), None, "GA needs no beta header");
    let updates = log.of("session.update");
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["session"],
        json!({
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["audio"],
            "max_output_tokens": 4096,
            "tools": [{"type":"function","name":"get_weather","description":"Weather","parameters":{"type":"object"}}],
            "tool_choice": "auto",
            "audio": {
                "input": {
                    "format": {"type":"audio/pcm","rate":24000},
                    "turn_detection": {"type":"server_vad","threshold":0.6,"silence_duration_ms":300,"prefix_padding_ms":200},
                    "transcription": {"model":"gpt-4o-mini-transcribe"},
                    "noise_reduction": {"type":"near_field"}
                },
                "output": {"format": {"type":"audio/pcm","rate":24000}, "voice": "marin"}
            }
        })
    );
    drop(peer);
    assert!(tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .is_ok());
}

#[tokio::test]
async fn semantic_and_manual_turns_g711_formats_and_text_output() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(json!({"mode":"semantic","eagerness":"high"}));
    c.input_format = AudioFormat {
        encoding: AudioEncoding::Mulaw,
        sample_rate: 8000,
        channels: 1,
    };
    c.output_format = AudioFormat {
        encoding: AudioEncoding::Alaw,
        sample_rate: 8000,
        channels: 1,
    };
    c.voice = "voice_custom1".into();
    let (peer, _task) = open(c).await;
    let s = &last(&fake).of("session.update")[0]["session"];
    assert_eq!(
        s["audio"]["input"]["turn_detection"],
        json!({"type":"semantic_vad","eagerness":"high"})
    );
    assert_eq!(s["audio"]["input"]["format"], json!({"type":"audio/pcmu"}));
    assert_eq!(s["audio"]["output"]["format"], json!({"type":"audio/pcma"}));
    assert_eq!(s["audio"]["output"]["voice"], json!({"id":"voice_custom1"}));
    assert!(s.get("tools").is_none() && s.get("temperature").is_none());
    drop(peer);

    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(json!({"mode":"manual"}));
    c.modalities = vec!["text".into()];
    let (mut peer, _task) = open(c).await;
    let s = &last(&fake).of("session.update")[0]["session"];
    assert_eq!(s["audio"]["input"]["turn_detection"], Value::Null);
    assert_eq!(s["output_modalities"], json!(["text"]));
    send(&peer, RealtimeInput::Text("hello".into())).await;
    let evs = until(&mut peer, is_done).await;
    assert!(audio_of(&evs).is_empty());
    assert_eq!(
        transcripts(&evs, Role::Assistant).last().unwrap(),
        &("reply to: hello".to_owned(), true)
    );
}

#[tokio::test]
async fn a_spoken_turn_gives_transcripts_both_ways_and_audio() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(vad(100));
    c.transcribe_input = true;
    let (mut peer, _task) = open(c).await;
    send_audio(&peer, quiet(40, 24_000)).await;
    send_audio(&peer, speech(200, 24_000)).await;
    send_audio(&peer, quiet(120, 24_000)).await;
    let evs = until(&mut peer, is_done).await;
    let speech_events: Vec<_> = evs
        .iter()
        .filter(|e| matches!(e, RealtimeEvent::Speech { .. }))
        .cloned()
        .collect();
    assert_eq!(
        speech_events,
        [
            RealtimeEvent::Speech {
                started: true,
                audio_ms: 40
            },
            RealtimeEvent::Speech {
                started: false,
                audio_ms: 340
            },
        ]
    );
    assert_eq!(
        transcripts(&evs, Role::User),
        [
            ("heard ".to_owned(), false),
            ("heard 300 ms".to_owned(), true)
        ]
    );
    let assistant = transcripts(&evs, Role::Assistant);
    assert!(assistant.iter().any(|(_, f)| !f), "{assistant:?}");
    assert_eq!(
        assistant.last().unwrap(),
        &("reply to: 300 ms of audio".to_owned(), true)
    );
    let log = last(&fake);
    assert_eq!(
        audio_of(&evs),
        log.sent_audio,
        "decoded audio is what the fake sent"
    );
    assert_eq!(audio_of(&evs).len(), 24_000 * 2 / 5);
    // The appended audio is what was sent, as base64.
    assert_eq!(log.audio.len(), 24_000 * 2 * 360 / 1000);
    assert!(
        matches!(evs.last(), Some(RealtimeEvent::ResponseDone { response_id }) if response_id.starts_with("resp_"))
    );
}

#[tokio::test]
async fn manual_commit_asks_for_a_response_and_clear_is_sent() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(json!({"mode":"manual"}));
    let (mut peer, _task) = open(c).await;
    send_audio(&peer, speech(100, 24_000)).await;
    send(&peer, RealtimeInput::ClearAudio).await;
    send_audio(&peer, speech(200, 24_000)).await;
    send(&peer, RealtimeInput::CommitAudio).await;
    let evs = until(&mut peer, is_done).await;
    assert!(!evs
        .iter()
        .any(|e| matches!(e, RealtimeEvent::Speech { .. })));
    assert_eq!(
        transcripts(&evs, Role::Assistant).last().unwrap().0,
        "reply to: 200 ms of audio"
    );
    assert_eq!(
        last(&fake).types(),
        [
            "session.update",
            "input_audio_buffer.clear",
            "input_audio_buffer.commit",
            "response.create"
        ]
    );
}

#[tokio::test]
async fn a_function_call_round_trip() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.tools = vec![json!({"type":"function","function":{"name":"get_weather"}})];
    let (mut peer, _task) = open(c).await;
    send(&peer, RealtimeInput::Text("call get_weather".into())).await;
    let evs = until(&mut peer, is_done).await;
    let calls: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => Some((call_id.clone(), name.clone(), arguments.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "exactly once: {evs:?}");
    let (call_id, name, args) = calls[0].clone();
    assert_eq!(
        (name.as_str(), args.as_str()),
        ("get_weather", CALL_ARGUMENTS)
    );
    send(
        &peer,
        RealtimeInput::FunctionResult {
            call_id: call_id.clone(),
            result: "{\"temp_c\":21}".into(),
        },
    )
    .await;
    let evs = until(&mut peer, is_done).await;
    assert_eq!(
        transcripts(&evs, Role::Assistant).last().unwrap().0,
        format!("reply to: {call_id} returned {{\"temp_c\":21}}")
    );
    let log = last(&fake);
    let items = log.of("conversation.item.create");
    assert_eq!(
        items[0]["item"],
        json!({"type":"message","role":"user","content":[{"type":"input_text","text":"call get_weather"}]})
    );
    assert_eq!(
        items[1]["item"],
        json!({"type":"function_call_output","call_id":call_id,"output":"{\"temp_c\":21}"})
    );
    assert_eq!(log.of("response.create").len(), 2);
}

#[tokio::test]
async fn cancel_mid_response_stops_its_audio() {
    let fake =
        OpenAiRealtimeFake::start(FakeOptions::new(KEY).paced(Duration::from_millis(20), 5_000))
            .await;
    let (mut peer, _task) = open(config(&fake, json!({}))).await;
    send(&peer, RealtimeInput::CreateResponse).await;
    until(&mut peer, |e| matches!(e, RealtimeEvent::Audio(_))).await;
    send(&peer, RealtimeInput::CancelResponse).await;
    let evs = until(&mut peer, is_done).await;
    assert!(
        audio_of(&evs).len() <= 5 * 960,
        "audio after the cancel: {}",
        audio_of(&evs).len()
    );
    let log = fake
        .wait_for(|l| !l.of("conversation.item.truncate").is_empty())
        .await;
    let cancel = &log.of("response.cancel")[0];
    assert!(cancel["response_id"].as_str().unwrap().starts_with("resp_"));
    let t = &log.of("conversation.item.truncate")[0];
    assert_eq!(t["content_index"], 0);
    assert!(t["audio_end_ms"].as_u64().unwrap() < 5_000);
    // Nothing more: the response is over.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), peer.events.recv())
            .await
            .is_err()
    );
    // A cancel with nothing under way sends nothing.
    send(&peer, RealtimeInput::CancelResponse).await;
    send(&peer, RealtimeInput::Text("again".into())).await;
    let log = fake.wait_for(|l| l.of("response.create").len() == 2).await;
    assert_eq!(log.of("response.cancel").len(), 1);
}

#[tokio::test]
async fn barge_in_interrupts_the_response() {
    let fake =
        OpenAiRealtimeFake::start(FakeOptions::new(KEY).paced(Duration::from_millis(20), 5_000))
            .await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(vad(200));
    let (mut peer, _task) = open(c).await;
    send(&peer, RealtimeInput::Text("tell me a story".into())).await;
    until(&mut peer, |e| matches!(e, RealtimeEvent::Audio(_))).await;
    send_audio(&peer, speech(40, 24_000)).await;
    let evs = until(&mut peer, is_done).await;
    let i = evs
        .iter()
        .position(|e| *e == RealtimeEvent::Interrupted)
        .expect("Interrupted");
    assert!(matches!(
        evs[i - 1],
        RealtimeEvent::Speech { started: true, .. }
    ));
    let log = fake
        .wait_for(|l| !l.of("conversation.item.truncate").is_empty())
        .await;
    // The server cancels the response itself (interrupt_response); no response.cancel.
    assert!(log.of("response.cancel").is_empty());
    assert!(
        log.sent.contains(&"conversation.item.truncated".to_owned()),
        "{:?}",
        log.sent
    );
}

#[tokio::test]
async fn a_vendor_error_is_reported_and_the_session_goes_on() {
    let fault = Fault::ErrorOnResponse {
        kind: "rate_limit_error".into(),
        code: "rate_limit_exceeded".into(),
        message: "Slow down (key sk-secret-123)".into(),
    };
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(fault)).await;
    let mut c = config(&fake, json!({}));
    c.api_key = Some(Secret::new(KEY));
    let (mut peer, task) = open(c.clone()).await;
    send(&peer, RealtimeInput::CreateResponse).await;
    match next(&mut peer).await {
        RealtimeEvent::Error(e) => {
            assert_eq!(e.category(), ErrorCategory::RateLimited, "{e}");
            assert!(e.to_string().contains("rate_limit_exceeded"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A request the vendor refuses as invalid is Config, and still not fatal.
    let mut u = c.clone();
    u.voice = "nobody".into();
    send(&peer, RealtimeInput::UpdateSession(Box::new(u))).await;
    match next(&mut peer).await {
        RealtimeEvent::Error(e) => assert_eq!(e.category(), ErrorCategory::Config, "{e}"),
        other => panic!("{other:?}"),
    }
    let mut u = c.clone();
    u.model = "gpt-realtime-mini".into();
    u.instructions = Some("Be kind.".into());
    u.turn_detection = Some(json!({"mode":"manual"}));
    send(&peer, RealtimeInput::UpdateSession(Box::new(u))).await;
    // The model cannot change within a session: reported, the rest applied.
    match next(&mut peer).await {
        RealtimeEvent::Error(e) => assert_eq!(e.category(), ErrorCategory::Config, "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(next(&mut peer).await, RealtimeEvent::SessionUpdated);
    let s = &last(&fake).of("session.update")[2]["session"];
    assert_eq!(s["instructions"], "Be kind.");
    assert_eq!(s["tools"], json!([]));
    assert_eq!(s["audio"]["input"]["turn_detection"], Value::Null);
    assert_eq!(s["audio"]["input"]["transcription"], Value::Null);
    assert!(s["audio"]["output"].get("voice").is_none(), "{s}");
    assert!(!task.is_finished());
}

#[tokio::test]
async fn a_vendor_disconnect_ends_the_session_as_transient() {
    for fault in [
        Fault::DropOnResponse,
        Fault::CloseOnResponse {
            code: 1011,
            reason: "internal".into(),
        },
        Fault::CloseOnResponse {
            code: 1000,
            reason: String::new(),
        },
    ] {
        let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(fault.clone())).await;
        let (peer, task) = open(config(&fake, json!({}))).await;
        send(&peer, RealtimeInput::CreateResponse).await;
        let r = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        let e = r.expect_err("the session ends with an error");
        assert_eq!(e.category(), ErrorCategory::Transient, "{fault:?}: {e}");
    }
}

#[tokio::test]
async fn bad_and_missing_keys_are_auth_errors_without_leaking() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.api_key = Some(Secret::new("sk-wrong-key"));
    let e = connect_err(c).await;
    assert_eq!(e.category(), ErrorCategory::Auth, "{e}");
    assert!(!e.to_string().contains("sk-wrong-key"), "{e}");
    let mut c = config(&fake, json!({}));
    c.api_key = None;
    assert_eq!(connect_err(c).await.category(), ErrorCategory::Auth);
    assert_eq!(fake.requests().len(), 1, "no dial without a key");
}

#[tokio::test]
async fn config_problems_fail_the_connect() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    // The vendor refuses the voice: the first session.update's error fails the connect.
    let mut c = config(&fake, json!({}));
    c.voice = "nobody".into();
    let e = connect_err(c).await;
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("invalid_value"), "{e}");
    // Caught before dialling.
    let n = fake.requests().len();
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(json!({"mode":"psychic"}));
    assert_eq!(connect_err(c).await.category(), ErrorCategory::Config);
    let mut c = config(&fake, json!({}));
    c.input_format = AudioFormat {
        encoding: AudioEncoding::Linear16,
        sample_rate: 16_000,
        channels: 1,
    };
    assert_eq!(connect_err(c).await.category(), ErrorCategory::Config);
    assert_eq!(
        connect_err(config(&fake, json!({"base_url":"ftp://x"})))
            .await
            .category(),
        ErrorCategory::Config
    );
    assert_eq!(fake.requests().len(), n);
}

#[tokio::test]
async fn a_silent_vendor_is_timed_out() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(Fault::Silent)).await;
    let e = connect_err(config(&fake, json!({"setup_timeout_ms": 300}))).await;
    assert_eq!(e.category(), ErrorCategory::Timeout, "{e}");
}

#[tokio::test]
async fn malformed_vendor_messages_never_panic() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(Fault::Garbage)).await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(vad(100));
    c.transcribe_input = true;
    c.tools = vec![json!({"type":"function","function":{"name":"f"}})];
    let (mut peer, task) = open(c).await;
    send_audio(&peer, speech(100, 24_000)).await;
    send_audio(&peer, quiet(120, 24_000)).await;
    let evs = until(&mut peer, is_done).await;
    assert_eq!(
        transcripts(&evs, Role::User).last().unwrap().0,
        "heard 200 ms"
    );
    assert_eq!(audio_of(&evs), last(&fake).sent_audio);
    send(&peer, RealtimeInput::Text("call f".into())).await;
    let evs = until(&mut peer, is_done).await;
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, RealtimeEvent::FunctionCall { .. }))
            .count(),
        1
    );
    assert!(
        !evs.iter().any(|e| matches!(e, RealtimeEvent::Error(_))),
        "{evs:?}"
    );
    assert!(!task.is_finished());
}

#[tokio::test]
async fn linear16_at_8k_is_carried_as_mulaw_both_ways() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let mut c = config(&fake, json!({}));
    c.turn_detection = Some(json!({"mode":"manual"}));
    let pcm8 = AudioFormat {
        encoding: AudioEncoding::Linear16,
        sample_rate: 8000,
        channels: 1,
    };
    c.input_format = pcm8;
    c.output_format = pcm8;
    let (mut peer, _task) = open(c).await;
    let s = &last(&fake).of("session.update")[0]["session"];
    assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
    assert_eq!(s["audio"]["output"]["format"]["type"], "audio/pcmu");
    let frames = speech(100, 8000);
    let sent: Vec<u8> = frames.concat();
    // An odd split: whole samples still arrive.
    send(
        &peer,
        RealtimeInput::Audio(Bytes::copy_from_slice(&sent[..801])),
    )
    .await;
    send(
        &peer,
        RealtimeInput::Audio(Bytes::copy_from_slice(&sent[801..])),
    )
    .await;
    send(&peer, RealtimeInput::CommitAudio).await;
    let evs = until(&mut peer, is_done).await;
    let log = last(&fake);
    let want: Vec<u8> = sent
        .chunks_exact(2)
        .map(|p| codec::mulaw_encode(i16::from_le_bytes([p[0], p[1]])))
        .collect();
    assert_eq!(log.audio, want);
    let out = audio_of(&evs);
    let expected: Vec<u8> = log
        .sent_audio
        .iter()
        .flat_map(|&b| codec::mulaw_decode(b).to_le_bytes())
        .collect();
    assert_eq!(out, expected);
    assert_eq!(Format::Pcmu.bytes_per_ms() * 200, log.sent_audio.len());
}

#[tokio::test]
async fn closing_the_input_closes_the_socket_gracefully() {
    let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
    let (peer, task) = open(config(&fake, json!({}))).await;
    drop(peer);
    let r = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert!(r.is_ok(), "{r:?}");
    let log = fake.wait_for(|l| l.ended).await;
    assert_eq!(log.client_close, Some(1000));
}

// --- Through the gateway -------------------------------------------------------------------

mod gateway {
    use super::*;
    use tokio_tungstenite::tungstenite::Message;
    use waav_gateway::config::{CliOverrides, GatewayConfig};
    use waav_gateway::Gateway;

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// A gateway on 127.0.0.1 (the minimal part of `crates/gateway/tests/common`).
    struct Server {
        addr: std::net::SocketAddr,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    async fn start(fake: &OpenAiRealtimeFake) -> Server {
        let yaml = format!(
            "plugins:\n  realtime:\n    openai:\n      base_url: {}\n      api_key: {KEY}\n",
            fake.base_url()
        );
        let env = |_: &str| None;
        let config = GatewayConfig::from_sources(Some(&yaml), &env, &CliOverrides::default())
            .expect("config");
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async {
            let _ = rx.await;
        }));
        Server { addr, _stop: tx }
    }

    async fn client(server: &Server, config: Value) -> Socket {
        let url = format!("ws://{}/realtime", server.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        let mut msg = json!({"type":"config","provider":"openai"});
        for (k, v) in config.as_object().unwrap() {
            msg[k] = v.clone();
        }
        send_json(&mut ws, msg).await;
        let created = json_msg(&mut ws).await;
        assert_eq!(created["type"], "session_created", "{created}");
        assert_eq!(created["provider"], "openai");
        ws
    }

    async fn send_json(ws: &mut Socket, v: Value) {
        ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    enum Frame {
        Json(Value),
        Binary(Vec<u8>),
    }

    async fn frame(ws: &mut Socket) -> Frame {
        loop {
            match tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("a frame within 10 s")
            {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(t.as_str()).unwrap())
                }
                Some(Ok(Message::Binary(b))) => return Frame::Binary(b.to_vec()),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    async fn json_msg(ws: &mut Socket) -> Value {
        loop {
            if let Frame::Json(v) = frame(ws).await {
                return v;
            }
        }
    }

    async fn until(ws: &mut Socket, ty: &str) -> (Vec<Value>, Vec<u8>) {
        let (mut msgs, mut audio) = (Vec::new(), Vec::new());
        loop {
            match frame(ws).await {
                Frame::Json(v) => {
                    let done = v["type"] == ty;
                    msgs.push(v);
                    if done {
                        return (msgs, audio);
                    }
                }
                Frame::Binary(b) => audio.extend(b),
            }
        }
    }

    #[tokio::test]
    async fn cancel_mid_response_through_the_gateway_stops_its_audio() {
        let fake = OpenAiRealtimeFake::start(
            FakeOptions::new(KEY).paced(Duration::from_millis(20), 5_000),
        )
        .await;
        let server = start(&fake).await;
        let mut ws = client(&server, json!({})).await;
        send_json(&mut ws, json!({"type":"create_response"})).await;
        while !matches!(frame(&mut ws).await, Frame::Binary(_)) {}
        send_json(&mut ws, json!({"type":"cancel_response"})).await;
        let (_, audio) = until(&mut ws, "response_done").await;
        // What was already on its way (a few 20 ms chunks) may still arrive; 5 s was asked for.
        assert!(
            audio.len() <= 5 * 960,
            "audio after the cancel: {}",
            audio.len()
        );
        let quiet = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
        assert!(quiet.is_err(), "output after the response ended: {quiet:?}");
        assert_eq!(last(&fake).of("response.cancel").len(), 1);
    }

    #[tokio::test]
    async fn a_spoken_turn_and_a_function_call_through_the_gateway() {
        let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY)).await;
        let server = start(&fake).await;
        let mut ws = client(
            &server,
            json!({"model":"gpt-realtime","voice":"cedar","transcribe_input":true,
                   "turn_detection":{"mode":"server_vad","silence_duration_ms":100},
                   "tools":[{"type":"function","function":{"name":"get_weather"}}]}),
        )
        .await;
        for f in speech(200, 24_000).into_iter().chain(quiet(120, 24_000)) {
            ws.send(Message::Binary(f.into())).await.unwrap();
        }
        let (msgs, audio) = until(&mut ws, "response_done").await;
        let user: Vec<_> = msgs
            .iter()
            .filter(|m| m["type"] == "transcript" && m["role"] == "user")
            .collect();
        // Speech start to the end of the silence that ends it.
        assert_eq!(user.last().unwrap()["text"], "heard 300 ms");
        assert_eq!(user.last().unwrap()["is_final"], true);
        let assistant = msgs
            .iter()
            .rfind(|m| m["type"] == "transcript" && m["role"] == "assistant")
            .unwrap();
        assert_eq!(assistant["text"], "reply to: 300 ms of audio");
        let events: Vec<_> = msgs
            .iter()
            .filter(|m| m["type"] == "speech_event")
            .map(|m| m["event"].clone())
            .collect();
        assert_eq!(events, [json!("started"), json!("stopped")]);
        assert_eq!(audio, last(&fake).sent_audio);
        let s = &last(&fake).of("session.update")[0]["session"];
        assert_eq!(s["audio"]["output"]["voice"], "cedar");
        assert_eq!(s["tools"][0]["name"], "get_weather");

        send_json(&mut ws, json!({"type":"text","text":"call get_weather"})).await;
        let (msgs, _) = until(&mut ws, "response_done").await;
        let call = msgs
            .iter()
            .find(|m| m["type"] == "function_call")
            .expect("function_call");
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["arguments"], CALL_ARGUMENTS);
        let call_id = call["call_id"].as_str().unwrap().to_owned();
        send_json(
            &mut ws,
            json!({"type":"function_result","call_id":call_id,"result":"sunny"}),
        )
        .await;
        let (msgs, _) = until(&mut ws, "response_done").await;
        let reply = msgs.iter().rfind(|m| m["type"] == "transcript").unwrap();
        assert_eq!(reply["text"], format!("reply to: {call_id} returned sunny"));
    }

    #[tokio::test]
    async fn barge_in_through_the_gateway() {
        let fake = OpenAiRealtimeFake::start(
            FakeOptions::new(KEY).paced(Duration::from_millis(20), 5_000),
        )
        .await;
        let server = start(&fake).await;
        let mut ws = client(
            &server,
            json!({"turn_detection":{"mode":"server_vad","silence_duration_ms":300}}),
        )
        .await;
        send_json(&mut ws, json!({"type":"create_response"})).await;
        while !matches!(frame(&mut ws).await, Frame::Binary(_)) {}
        for f in speech(40, 24_000) {
            ws.send(Message::Binary(f.into())).await.unwrap();
        }
        let (msgs, _) = until(&mut ws, "response_done").await;
        assert!(
            msgs.iter().any(|m| m["type"] == "response_interrupted"),
            "{msgs:?}"
        );
    }

    #[tokio::test]
    async fn vendor_errors_and_disconnects_reach_the_client_which_survives() {
        let fault = Fault::ErrorOnResponse {
            kind: "server_error".into(),
            code: "server_error".into(),
            message: "The server had an error".into(),
        };
        let fake = OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(fault)).await;
        let server = start(&fake).await;
        let mut ws = client(&server, json!({})).await;
        send_json(&mut ws, json!({"type":"create_response"})).await;
        let e = json_msg(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("provider_unavailable")),
            "{e}"
        );
        // Still the same session.
        send_json(&mut ws, json!({"type":"update_session","instructions":"x"})).await;
        assert_eq!(json_msg(&mut ws).await["type"], "session_updated");

        let drop_fake =
            OpenAiRealtimeFake::start(FakeOptions::new(KEY).fault(Fault::DropOnResponse)).await;
        let server = start(&drop_fake).await;
        let mut ws = client(&server, json!({})).await;
        send_json(&mut ws, json!({"type":"create_response"})).await;
        let e = json_msg(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("provider_unavailable")),
            "{e}"
        );
        // A new config on the same connection works.
        send_json(&mut ws, json!({"type":"config","provider":"openai"})).await;
        assert_eq!(json_msg(&mut ws).await["type"], "session_created");

        // A bad key: the config is refused with provider_auth, the connection stays.
        let yaml_fake = OpenAiRealtimeFake::start(FakeOptions::new("other-key")).await;
        let server = start(&yaml_fake).await;
        let url = format!("ws://{}/realtime", server.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        send_json(&mut ws, json!({"type":"config","provider":"openai"})).await;
        let e = json_msg(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("provider_auth")),
            "{e}"
        );
        send_json(
            &mut ws,
            json!({"type":"config","provider":"openai","api_key":"other-key"}),
        )
        .await;
        assert_eq!(json_msg(&mut ws).await["type"], "session_created");
    }
}
