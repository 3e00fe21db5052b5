//! Failover per fault class, through the real gateway against the vendor fakes: a faulty
//! Deepgram fake (STT `/v1/listen`, TTS `/v1/speak`) as the primary, a healthy one behind a
//! named instance (`deepgram-backup`) as the fallback, and the loopback providers' knobs for the
//! faults a vendor fake cannot make (a panic, a request with no audio or only silence).
//!
//! For each class, with a chain the session goes on with every word of a reference run without
//! faults (the same words per utterance, none twice; STT) or the request spoken in full by the
//! fallback (TTS; a sentence already spoken is not repeated); without one it gets the right `error` code and the connection takes a new
//! `config`. Auth errors are the client's to fix and are never failed over, chain or not. A
//! healthy session on the same gateway runs alongside every faulty one and must be unaffected.
//! The breaker opens on repeated failures, sessions skip the open instance, and a probe closes
//! it once the vendor recovers (a switchable TCP proxy in front of two fakes).
#![cfg(all(feature = "deepgram", feature = "cloud"))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use waav_deepgram as _;
use waav_testkit::fakes::deepgram::{
    DeepgramFake, DeepgramTtsFake, FakeOptions, Fault, TtsFakeOptions, TtsFault,
};

const KEY: &str = "dg-test-key";
/// What every TTS case speaks (one sentence, a number of four digits appended).
const TEXT: &str = "Hello there, this is failover test number";
/// Short bounds so the silent failures are found quickly.
const RESILIENCE: &str = "  stt_reconnects: 0\n  tts_first_byte_ms: 400\n  breaker_failures: 100\n";
/// Quiet time after which a session's reading stops.
const QUIET: Duration = Duration::from_millis(1_500);
/// Every session's overall bound.
const SESSION_GUARD: Duration = Duration::from_secs(30);

/// Speech lengths of the utterances every STT case streams (each followed by 600 ms of
/// silence): at the fake's 250 ms per word, 2, 3, 4 and 5 words, so a lost or repeated
/// utterance changes the per-final word counts.
const UTTERANCES_MS: [u32; 4] = [500, 750, 1_000, 1_250];

/// 20 ms PCM16 frames at 16 kHz: each utterance's tone, then 600 ms of silence.
fn audio() -> Vec<Vec<u8>> {
    let mut samples: Vec<i16> = Vec::new();
    for ms in UTTERANCES_MS {
        let n = (16 * ms) as usize;
        samples.extend((0..n).map(|i| ((i as f32 * 0.12).sin() * 12_000.0) as i16));
        samples.extend(std::iter::repeat_n(0i16, 16 * 600));
    }
    samples
        .chunks(320)
        .map(|c| c.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect()
}

/// The gateway and its fakes: `deepgram` (STT and TTS) at the faulty fakes, `deepgram-backup`
/// at healthy ones.
struct Rig {
    server: TestServer,
    stt_primary: DeepgramFake,
    _stt_backup: DeepgramFake,
    tts_primary: DeepgramTtsFake,
    tts_backup: DeepgramTtsFake,
}

impl Rig {
    async fn start(stt: Fault, tts: TtsFault) -> Self {
        Self::with(stt, tts, KEY, "").await
    }

    /// `primary_key` is the key the gateway has for the primaries (the fakes accept [`KEY`]);
    /// `extra` is more YAML under `resilience:`.
    async fn with(stt: Fault, tts: TtsFault, primary_key: &str, extra: &str) -> Self {
        let stt_primary = DeepgramFake::with_options(FakeOptions::new(KEY).fault(stt)).await;
        let stt_backup = DeepgramFake::start(KEY).await;
        let tts_primary = DeepgramTtsFake::with_options(TtsFakeOptions::new(KEY).fault(tts)).await;
        let tts_backup = DeepgramTtsFake::start(KEY).await;
        let yaml = format!(
            "session: {{ provider_stall_ms: 500 }}\n\
             resilience:\n{RESILIENCE}{extra}\
             plugins:\n  stt:\n    \
             deepgram: {{ api_key: {primary_key}, base_url: \"{}\" }}\n    \
             deepgram-backup: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n  \
             tts:\n    \
             deepgram: {{ api_key: {primary_key}, base_url: \"{}\" }}\n    \
             deepgram-backup: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n",
            stt_primary.base_url(),
            stt_backup.base_url(),
            tts_primary.base_url(),
            tts_backup.base_url(),
        );
        let server = TestServer::start(&yaml).await;
        Self {
            server,
            stt_primary,
            _stt_backup: stt_backup,
            tts_primary,
            tts_backup,
        }
    }

    fn url(&self) -> String {
        self.server.ws_url("/ws")
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn stt_cfg(provider: &str, model: &str, fallback: &[&str]) -> Value {
    let mut c = json!({
        "provider": provider, "language": "en-US", "sample_rate": 16000, "channels": 1,
        "punctuation": true, "encoding": "linear16", "model": model
    });
    if !fallback.is_empty() {
        c["fallback"] = json!(fallback);
    }
    c
}

fn tts_cfg(provider: &str, model: &str, fallback: &[&str]) -> Value {
    let mut c = json!({"provider": provider, "model": model, "audio_format": "linear16", "sample_rate": 16000});
    if !fallback.is_empty() {
        c["fallback"] = json!(fallback);
    }
    c
}

/// What a client saw in one session.
#[derive(Debug, Default)]
struct Seen {
    /// Every JSON message, in order.
    messages: Vec<Value>,
    /// Audio bytes in all, and after the last `provider_switched`.
    audio: usize,
    audio_after_switch: usize,
    /// From the speak (or the first audio frame sent) to the first `provider_switched`.
    switched_after: Option<Duration>,
    /// The socket closed.
    closed: bool,
}

impl Seen {
    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.messages.iter().filter(|v| v["type"] == ty).collect()
    }

    /// Finals with text: (provider, text).
    fn finals(&self) -> Vec<(String, String)> {
        self.messages
            .iter()
            .filter(|v| v["type"] == "stt_result" && v["is_final"] == true)
            .filter_map(|v| {
                let t = v["transcript"].as_str()?.trim();
                (!t.is_empty()).then(|| {
                    (
                        v["provider"].as_str().unwrap_or("").to_owned(),
                        t.to_owned(),
                    )
                })
            })
            .collect()
    }

    /// Per final, what a lost or repeated utterance changes: Deepgram's word count (its
    /// words restart at each connection), the loopback's speech length ("utterance N: M ms",
    /// N restarting at each connection).
    fn words_per_final(&self) -> Vec<usize> {
        self.finals()
            .iter()
            .map(|(_, t)| match t.strip_prefix("utterance ") {
                Some(rest) => rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(usize::MAX),
                None => t.split_whitespace().count(),
            })
            .collect()
    }

    fn errors(&self) -> Vec<&Value> {
        self.of_type("error")
    }

    fn error_codes(&self) -> Vec<String> {
        self.errors()
            .iter()
            .map(|v| v["code"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn switched(&self) -> Vec<&Value> {
        self.of_type("provider_switched")
    }

    fn completed(&self) -> bool {
        !self.of_type("tts_playback_complete").is_empty()
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames into `seen` until `done` holds or nothing came for [`QUIET`].
async fn read_until(
    socket: &mut Socket,
    seen: &mut Seen,
    t0: Instant,
    quiet: Duration,
    mut done: impl FnMut(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + SESSION_GUARD;
    while !done(seen) {
        let next = tokio::time::timeout(quiet, socket.next());
        let Ok(frame) = tokio::time::timeout_at(deadline, next).await else {
            panic!(
                "session still talking after {SESSION_GUARD:?}: {:?}",
                seen.messages
            );
        };
        match frame {
            Err(_) => return,
            Ok(None | Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                seen.closed = true;
                return;
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "provider_switched" {
                    seen.audio_after_switch = 0;
                    seen.switched_after.get_or_insert(t0.elapsed());
                }
                seen.messages.push(v);
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                seen.audio += b.len();
                seen.audio_after_switch += b.len();
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade")
        .0
}

async fn send(socket: &mut Socket, v: Value) {
    socket.send(Message::text(v.to_string())).await.unwrap();
}

/// Sends `config` and reads up to its `ready` or `error`; `Err` with what came on an error.
async fn configure(socket: &mut Socket, config: Value) -> Result<(), Seen> {
    send(socket, config).await;
    let mut seen = Seen::default();
    // A config closes the old providers first, each given up to 2 s to finish.
    read_until(
        socket,
        &mut seen,
        Instant::now(),
        Duration::from_secs(5),
        |s| {
            s.messages
                .last()
                .is_some_and(|v| v["type"] == "ready" || v["type"] == "error")
        },
    )
    .await;
    match seen.messages.last() {
        Some(v) if v["type"] == "ready" => Ok(()),
        _ => Err(seen),
    }
}

/// Streams [`audio`] through an STT session of `stt`, paced at four times real time while
/// reading, and reads until quiet. A refused config comes back as it is.
async fn stt_session(url: &str, stt: Value) -> (Socket, Seen) {
    let mut socket = connect(url).await;
    if let Err(seen) = configure(&mut socket, json!({"type":"config","stt_config":stt})).await {
        return (socket, seen);
    }
    let (mut tx, rx) = socket.split();
    let frames = audio();
    let writer = async move {
        for f in frames {
            if tx.send(Message::binary(f)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx
    };
    // The reader stops when the writer is done and the session has been quiet.
    let (tx, (rx, seen)) = tokio::join!(writer, async {
        let mut rx = rx;
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let started = tokio::time::Instant::now();
        let audio_ms = (UTTERANCES_MS.iter().sum::<u32>() + 600 * 4) / 4;
        let writing_done = started + Duration::from_millis(u64::from(audio_ms) + 500);
        let deadline = started + SESSION_GUARD;
        loop {
            let wait = if tokio::time::Instant::now() < writing_done {
                writing_done + QUIET
            } else {
                tokio::time::Instant::now() + QUIET
            };
            match tokio::time::timeout_at(wait.min(deadline), rx.next()).await {
                Err(_) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "STT session ran past its guard: {:?}",
                        seen.messages
                    );
                    break;
                }
                Ok(None | Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    seen.closed = true;
                    break;
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "provider_switched" {
                        seen.switched_after.get_or_insert(t0.elapsed());
                    }
                    seen.messages.push(v);
                }
                Ok(Some(Ok(_))) => {}
            }
        }
        (rx, seen)
    });
    (tx.reunite(rx).expect("halves of one socket"), seen)
}

/// A text of the same length as every other (the same audio), never spoken before in this
/// process: the TTS cache cannot answer it.
fn fresh_text() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{TEXT} {:04}.", N.fetch_add(1, Ordering::Relaxed))
}

/// Speaks `text` through a TTS session of `tts`, reading until playback completes, an error
/// came, or quiet.
async fn tts_session(url: &str, tts: Value, text: &str) -> (Socket, Seen) {
    let mut socket = connect(url).await;
    if let Err(seen) = configure(&mut socket, json!({"type":"config","tts_config":tts})).await {
        return (socket, seen);
    }
    send(&mut socket, json!({"type":"speak","text":text})).await;
    let mut seen = Seen::default();
    read_until(&mut socket, &mut seen, Instant::now(), QUIET, |s| {
        s.completed() || !s.errors().is_empty()
    })
    .await;
    (socket, seen)
}

/// The connection still works: a new config with a healthy provider is `ready`.
async fn assert_survives(socket: &mut Socket, what: &str) {
    let r = configure(
        socket,
        json!({"type":"config","stt_config":stt_cfg("deepgram-backup","",&[]),
               "tts_config":tts_cfg("deepgram-backup","",&[])}),
    )
    .await;
    assert!(
        r.is_ok(),
        "{what}: a new config after the failure: {:?}",
        r.err()
    );
}

/// A reference run of [`audio`] through `provider` with no faults.
async fn reference_stt(url: &str, provider: &str) -> Seen {
    let (_, seen) = stt_session(url, stt_cfg(provider, "", &[])).await;
    assert!(seen.errors().is_empty(), "reference: {:?}", seen.messages);
    assert_eq!(
        seen.finals().len(),
        UTTERANCES_MS.len(),
        "reference: one final per utterance: {:?}",
        seen.messages
    );
    seen
}

/// A healthy session alongside the faulty one: STT and TTS on `deepgram-backup`, compared with
/// the reference.
async fn bystander(url: String, reference: Vec<usize>, audio: usize) {
    let (_, stt) = stt_session(&url, stt_cfg("deepgram-backup", "", &[])).await;
    assert!(stt.errors().is_empty(), "bystander STT: {:?}", stt.messages);
    assert_eq!(stt.words_per_final(), reference, "bystander STT");
    let (_, tts) = tts_session(&url, tts_cfg("deepgram-backup", "", &[]), &fresh_text()).await;
    assert!(tts.errors().is_empty(), "bystander TTS: {:?}", tts.messages);
    assert_eq!(tts.audio, audio, "bystander TTS audio");
}

/// The reference STT word counts and TTS audio bytes of `deepgram-backup`.
async fn references(rig: &Rig) -> (Vec<usize>, usize) {
    let stt = reference_stt(&rig.url(), "deepgram-backup").await;
    let (_, tts) = tts_session(
        &rig.url(),
        tts_cfg("deepgram-backup", "", &[]),
        &fresh_text(),
    )
    .await;
    assert!(
        tts.completed() && tts.errors().is_empty(),
        "{:?}",
        tts.messages
    );
    assert!(tts.audio > 0);
    (stt.words_per_final(), tts.audio)
}

/// What a fault does to a session.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// With a chain the fallback takes over (`switch`: mid-stream, else at connect; both are
    /// announced with `provider_switched`); without one the session gets this error code.
    FailsOver { switch: bool, code: &'static str },
    /// The session carries on with the primary, chain or not (nothing to fail over).
    Recovers,
    /// This error, chain or not (never failed over).
    Fails(&'static str),
}

/// One STT fault class: `primary` (with `model`) fails, `fallback` is healthy; the reference
/// is `fallback` without faults. Without a chain first, then with one.
struct SttCase<'a> {
    name: &'a str,
    primary: &'a str,
    model: &'a str,
    fallback: &'a str,
    expect: Expect,
    /// Without a chain, with one (`[false, true]`), or only some.
    chains: &'a [bool],
}

async fn stt_case(rig: &Rig, case: SttCase<'_>) {
    let SttCase {
        name,
        primary,
        model,
        fallback,
        expect,
        chains,
    } = case;
    let reference = reference_stt(&rig.url(), fallback).await.words_per_final();
    let (bystander_ref, tts_audio) = references(rig).await;
    for &chain in chains {
        let what = format!("STT {name}, chain {chain}");
        let chain_of: &[&str] = if chain { &[fallback] } else { &[] };
        let url = rig.url();
        let faulty = stt_session(&url, stt_cfg(primary, model, chain_of));
        let ((mut socket, seen), ()) = tokio::join!(
            faulty,
            bystander(rig.url(), bystander_ref.clone(), tts_audio)
        );
        match (expect, chain) {
            (Expect::FailsOver { switch, .. }, true) => {
                assert!(seen.errors().is_empty(), "{what}: {:?}", seen.messages);
                assert_eq!(
                    seen.words_per_final(),
                    reference,
                    "{what}: every utterance once: {:?}",
                    seen.finals()
                );
                assert!(
                    seen.finals().iter().any(|(p, _)| p == fallback),
                    "{what}: the fallback transcribed: {:?}",
                    seen.finals()
                );
                let switched = seen.switched();
                if switch {
                    assert_eq!(switched.len(), 1, "{what}: {:?}", seen.messages);
                    assert_eq!(switched[0]["role"], "stt");
                    assert_eq!(switched[0]["from"], primary);
                    assert_eq!(switched[0]["to"], fallback);
                    assert!(switched[0]["reason"]
                        .as_str()
                        .is_some_and(|r| !r.is_empty()));
                } else {
                    // Refused at connect: the session starts on the fallback, and is told so.
                    assert_eq!(switched.len(), 1, "{what}: {:?}", seen.messages);
                    assert_eq!(
                        (&switched[0]["from"], &switched[0]["to"]),
                        (&json!(primary), &json!(fallback)),
                        "{what}"
                    );
                    assert!(seen.finals().iter().all(|(p, _)| p == fallback));
                }
            }
            (Expect::FailsOver { code, .. }, false) | (Expect::Fails(code), _) => {
                assert_eq!(seen.error_codes(), [code], "{what}: {:?}", seen.messages);
                assert!(seen.switched().is_empty(), "{what}: {:?}", seen.messages);
                assert!(
                    seen.finals().iter().all(|(p, _)| p == primary),
                    "{what}: never failed over: {:?}",
                    seen.finals()
                );
            }
            (Expect::Recovers, _) => {
                assert!(seen.errors().is_empty(), "{what}: {:?}", seen.messages);
                assert!(seen.switched().is_empty(), "{what}: {:?}", seen.messages);
                assert_eq!(
                    seen.words_per_final(),
                    reference,
                    "{what}: {:?}",
                    seen.finals()
                );
                assert!(seen.finals().iter().all(|(p, _)| p == primary));
            }
        }
        assert!(!seen.closed, "{what}: the gateway closed the connection");
        assert_survives(&mut socket, &what).await;
    }
    if let Expect::FailsOver { .. } = expect {
        let m = rig.metrics().await;
        assert!(
            m.lines()
                .any(|l| l.starts_with("waav_provider_failures_total")
                    && l.contains(&format!("provider=\"{primary}\""))
                    && l.contains("kind=\"stt\"")),
            "STT {name}: the failure is counted: {m}"
        );
    }
}

/// A Deepgram STT fault class: `deepgram` at the faulty fake, `deepgram-backup` healthy.
async fn deepgram_stt(name: &str, fault: Fault, primary_key: &str, expect: Expect) -> Rig {
    let rig = Rig::with(fault, TtsFault::None, primary_key, "").await;
    stt_case(
        &rig,
        SttCase {
            name,
            primary: "deepgram",
            model: "nova-3",
            fallback: "deepgram-backup",
            expect,
            chains: &[false, true],
        },
    )
    .await;
    // The faulty fake was dialled (no fault was refused before the vendor was reached).
    assert!(
        !rig.stt_primary.requests().is_empty(),
        "STT {name}: the faulty fake was dialled"
    );
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_drop_mid_stream() {
    // The TCP connection drops in the second utterance, after the first final.
    let rig = deepgram_stt(
        "drop",
        Fault::Disconnect { after_audio: 70 },
        KEY,
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
    )
    .await;
    // The primary transcribed the first utterance itself before it dropped.
    let first = &rig.stt_primary.sessions()[1];
    assert!(first.sent.iter().any(|m| m.contains("\"is_final\":true")));
    assert!(rig.metrics().await.contains("waav_failovers_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_server_error_mid_stream() {
    // Deepgram's internal error: close 1011 NET-0000, in the third utterance.
    deepgram_stt(
        "1011",
        Fault::Close {
            after_audio: 130,
            code: 1011,
            reason: "NET-0000".into(),
        },
        KEY,
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_5xx_at_connect() {
    deepgram_stt(
        "503",
        Fault::Reject {
            status: 503,
            retry_after: None,
            reason: "overloaded".into(),
        },
        KEY,
        Expect::FailsOver {
            switch: false,
            code: "provider_unavailable",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_429_with_retry_after_opens_the_breaker_for_that_long() {
    let rig = deepgram_stt(
        "429",
        Fault::Reject {
            status: 429,
            retry_after: Some(7),
            reason: "Too many requests".into(),
        },
        KEY,
        Expect::FailsOver {
            switch: false,
            code: "provider_rate_limited",
        },
    )
    .await;
    // The vendor said when to come back: the session with a chain went straight to the
    // fallback without dialling it again, and one without a chain fails fast.
    assert_eq!(rig.stt_primary.requests().len(), 1);
    let (_, seen) = stt_session(&rig.url(), stt_cfg("deepgram", "nova-3", &[])).await;
    assert_eq!(
        seen.error_codes(),
        ["provider_circuit_open"],
        "{:?}",
        seen.messages
    );
    assert_eq!(rig.stt_primary.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_401_is_never_failed_over() {
    deepgram_stt(
        "401",
        Fault::None,
        "wrong-key",
        Expect::Fails("provider_auth"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_garbage_frames_are_skipped() {
    deepgram_stt("garbage", Fault::Garbage, KEY, Expect::Recovers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_panic_mid_stream() {
    let rig = Rig::start(Fault::None, TtsFault::None).await;
    // The loopback panics at its sixth result (in the second utterance); the fallback is the
    // loopback with its default model, which behaves.
    stt_case(
        &rig,
        SttCase {
            name: "panic",
            primary: "loopback",
            model: "fault=panic,after=6",
            fallback: "loopback",
            expect: Expect::FailsOver {
                switch: true,
                code: "provider_panicked",
            },
            chains: &[false, true],
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_stall_mid_stream() {
    let rig = Rig::start(Fault::None, TtsFault::None).await;
    // The loopback stops reading at its sixth result: the stall bound disconnects it, and the
    // chain takes over with the audio since the last final.
    stt_case(
        &rig,
        SttCase {
            name: "stall",
            primary: "loopback",
            model: "fault=stall,after=6",
            fallback: "loopback",
            expect: Expect::FailsOver {
                switch: true,
                code: "provider_stalled",
            },
            chains: &[false, true],
        },
    )
    .await;
}

/// One TTS fault class: `primary` (with `model`) fails, `deepgram-backup` is healthy and the
/// reference. Without a chain first, then with one.
async fn tts_case(
    rig: &Rig,
    name: &str,
    primary: &str,
    model: &str,
    expect: Expect,
    chains: &[bool],
) -> Vec<Seen> {
    let (bystander_ref, reference) = references(rig).await;
    let mut runs = Vec::new();
    for &chain in chains {
        let what = format!("TTS {name}, chain {chain}");
        let chain_of: &[&str] = if chain { &["deepgram-backup"] } else { &[] };
        let url = rig.url();
        let speaks_before = backup_speaks(rig).len();
        let text = fresh_text();
        let faulty = tts_session(&url, tts_cfg(primary, model, chain_of), &text);
        let ((mut socket, seen), ()) = tokio::join!(
            faulty,
            bystander(rig.url(), bystander_ref.clone(), reference)
        );
        match (expect, chain) {
            (Expect::FailsOver { switch, .. }, true) => {
                assert!(seen.errors().is_empty(), "{what}: {:?}", seen.messages);
                assert!(seen.completed(), "{what}: {:?}", seen.messages);
                let switched = seen.switched();
                if switch {
                    assert_eq!(switched.len(), 1, "{what}: {:?}", seen.messages);
                    assert_eq!(switched[0]["role"], "tts");
                    assert_eq!(switched[0]["from"], primary);
                    assert_eq!(switched[0]["to"], "deepgram-backup");
                } else {
                    // Refused at connect: the session starts on the fallback, and is told so.
                    assert_eq!(switched.len(), 1, "{what}: {:?}", seen.messages);
                    assert_eq!(switched[0]["from"], primary);
                    assert_eq!(switched[0]["to"], "deepgram-backup");
                }
                // The whole request, spoken again from its start by the fallback.
                assert_eq!(seen.audio_after_switch, reference, "{what}");
                let speaks = backup_speaks(rig);
                assert!(
                    speaks[speaks_before..].iter().any(|t| t.contains(&text)),
                    "{what}: the fallback got the whole text: {speaks:?}"
                );
            }
            (Expect::FailsOver { code, .. }, false) | (Expect::Fails(code), _) => {
                assert_eq!(seen.error_codes(), [code], "{what}: {:?}", seen.messages);
                assert!(seen.switched().is_empty(), "{what}: {:?}", seen.messages);
                assert!(seen.audio < reference, "{what}: {} bytes", seen.audio);
            }
            (Expect::Recovers, _) => {
                assert!(seen.errors().is_empty(), "{what}: {:?}", seen.messages);
                assert!(seen.switched().is_empty(), "{what}: {:?}", seen.messages);
                assert!(seen.completed(), "{what}: {:?}", seen.messages);
                assert_eq!(seen.audio, reference, "{what}");
            }
        }
        assert!(!seen.closed, "{what}: the gateway closed the connection");
        assert_survives(&mut socket, &what).await;
        runs.push(seen);
    }
    runs
}

/// The texts the healthy TTS fake was asked to speak (per socket, its `Speak`s joined).
fn backup_speaks(rig: &Rig) -> Vec<String> {
    rig.tts_backup
        .sessions()
        .iter()
        .map(|s| s.speaks.concat())
        .chain(
            rig.tts_backup
                .rest_requests()
                .iter()
                .map(|r| r.body.clone()),
        )
        .collect()
}

async fn deepgram_tts(
    name: &str,
    fault: TtsFault,
    primary_key: &str,
    expect: Expect,
    chains: &[bool],
) -> Rig {
    let rig_fault = fault.clone();
    let rig = Rig::with(Fault::None, fault, primary_key, "").await;
    tts_case(&rig, name, "deepgram", "", expect, chains).await;
    // The faulty fake was reached (its log holds the sockets and requests it accepted; a
    // refusal shows in the error code instead).
    if primary_key == KEY && !matches!(rig_fault, TtsFault::Status { .. }) {
        let dialled = rig.tts_primary.sessions().len() + rig.tts_primary.rest_requests().len();
        assert!(dialled > 0, "TTS {name}: the faulty fake was reached");
    }
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_drop_mid_audio() {
    // The request's transient error hands it to the chain, which speaks it from its start.
    deepgram_tts(
        "drop",
        TtsFault::Truncate { after_chunks: 2 },
        KEY,
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
        &[false, true],
    )
    .await;
}

/// Three sentences of fixed lengths (the same audio each time), never spoken before in this
/// process (the cache cannot answer them).
fn fresh_sentences() -> [String; 3] {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    [
        format!("First sentence {n:04}."),
        format!(" Then a second, longer sentence {n:04}."),
        format!(" And the third one {n:04}."),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_failover_resumes_at_the_sentence_not_yet_spoken() {
    // The primary drops its socket two frames into the second sentence: the first was spoken
    // in full and is not repeated; the fallback speaks the second from its start, then the third.
    let frame = TtsFakeOptions::default().chunk_bytes;
    let first = waav_testkit::fakes::deepgram::tts::speech(
        &fresh_sentences()[0],
        "linear16",
        16_000,
        1.0,
        waav_testkit::fakes::deepgram::tts::DEFAULT_MS_PER_CHAR,
    );
    let after_chunks = first.len().div_ceil(frame) + 2;
    let rig = Rig::start(Fault::None, TtsFault::Truncate { after_chunks }).await;
    let url = rig.url();
    let healthy = tts_cfg("deepgram-backup", "", &[]);
    // References on the healthy instance: all three sentences, and the first alone.
    let (_, all) = tts_session(&url, healthy.clone(), &fresh_sentences().concat()).await;
    let (_, alone) = tts_session(&url, healthy, &fresh_sentences()[0]).await;
    assert!(all.completed() && alone.completed(), "{all:?} {alone:?}");
    assert_eq!(alone.audio, first.len());

    let sentences = fresh_sentences();
    let speaks_before = backup_speaks(&rig).len();
    let cfg = tts_cfg("deepgram", "", &["deepgram-backup"]);
    let (mut socket, seen) = tts_session(&url, cfg, &sentences.concat()).await;
    assert!(seen.errors().is_empty(), "{:?}", seen.messages);
    assert!(seen.completed(), "{:?}", seen.messages);
    let switched = seen.switched();
    assert_eq!(switched.len(), 1, "{:?}", seen.messages);
    assert_eq!(switched[0]["to"], "deepgram-backup");
    // After the switch: the second and third sentences, as the reference has them.
    assert_eq!(seen.audio_after_switch, all.audio - alone.audio);
    // Before it: the first sentence in full and the start of the second.
    assert_eq!(
        seen.audio - seen.audio_after_switch,
        alone.audio + 2 * frame
    );
    let speaks = backup_speaks(&rig)[speaks_before..].concat();
    assert!(!speaks.contains(sentences[0].trim()), "{speaks:?}");
    assert!(
        speaks.contains(sentences[1].trim()) && speaks.contains(sentences[2].trim()),
        "{speaks:?}"
    );
    assert_survives(&mut socket, "sentence resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_server_error_mid_audio() {
    // As for the drop.
    deepgram_tts(
        "1011",
        TtsFault::CloseAfterAudio {
            frames: 2,
            code: 1011,
            reason: "internal error".into(),
        },
        KEY,
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_5xx() {
    deepgram_tts(
        "503",
        TtsFault::Status {
            status: 503,
            body: r#"{"err_code":"SERVICE_UNAVAILABLE","err_msg":"overloaded"}"#.into(),
            retry_after: None,
        },
        KEY,
        Expect::FailsOver {
            switch: false,
            code: "provider_unavailable",
        },
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_429_with_retry_after() {
    deepgram_tts(
        "429",
        TtsFault::Status {
            status: 429,
            body: r#"{"err_code":"TOO_MANY_REQUESTS","err_msg":"slow down"}"#.into(),
            retry_after: Some(7),
        },
        KEY,
        Expect::FailsOver {
            switch: false,
            code: "provider_rate_limited",
        },
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_401_is_never_failed_over() {
    deepgram_tts(
        "401",
        TtsFault::None,
        "wrong-key",
        Expect::Fails("provider_auth"),
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_garbage_frames() {
    deepgram_tts(
        "garbage",
        TtsFault::Garbage,
        KEY,
        Expect::Recovers,
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_stall_trips_the_first_byte_watchdog_within_its_bound() {
    let rig = Rig::start(Fault::None, TtsFault::Silent).await;
    let runs = tts_case(
        &rig,
        "stall",
        "deepgram",
        "",
        Expect::FailsOver {
            switch: true,
            code: "provider_timeout",
        },
        &[false, true],
    )
    .await;
    // tts_first_byte_ms is 400: the switch comes after it, not before (the upper bound is
    // only a liveness guard on a loaded machine).
    let after = runs[1].switched_after.expect("switched");
    assert!(after >= Duration::from_millis(400), "{after:?}");
    assert!(after < Duration::from_secs(5), "{after:?}");
    watchdog_counted(&rig, "first_byte").await;
}

async fn watchdog_counted(rig: &Rig, watchdog: &str) {
    let m = rig.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("waav_watchdog_trips_total")
            && l.contains(&format!("watchdog=\"{watchdog}\""))),
        "{watchdog}: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_panic() {
    let rig = Rig::start(Fault::None, TtsFault::None).await;
    tts_case(
        &rig,
        "panic",
        "loopback",
        "fault=panic",
        Expect::FailsOver {
            switch: true,
            code: "provider_panicked",
        },
        &[false, true],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_empty_audio() {
    let rig = Rig::start(Fault::None, TtsFault::None).await;
    tts_case(
        &rig,
        "empty",
        "loopback",
        "fault=mute",
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
        &[false, true],
    )
    .await;
    watchdog_counted(&rig, "empty_audio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_silent_audio() {
    let rig = Rig::start(Fault::None, TtsFault::None).await;
    tts_case(
        &rig,
        "silent",
        "loopback",
        "amplitude=0",
        Expect::FailsOver {
            switch: true,
            code: "provider_unavailable",
        },
        &[false, true],
    )
    .await;
    watchdog_counted(&rig, "silent_audio").await;
}

/// A TCP proxy handing each new connection to whichever address `target` holds then.
async fn switchable_proxy(target: Arc<Mutex<SocketAddr>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = *target.lock().unwrap();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

async fn circuit(server: &TestServer, id: &str) -> Value {
    let health: Value = reqwest::get(server.url("/health/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id && p["kind"] == "stt")
        .map(|p| p["circuit"].clone())
        .unwrap_or_else(|| panic!("{id} not on /health/plugins: {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_sessions_skip_the_vendor_and_a_probe_closes_it_on_recovery() {
    let failing = DeepgramFake::with_options(FakeOptions::new(KEY).fault(Fault::Reject {
        status: 503,
        retry_after: None,
        reason: "overloaded".into(),
    }))
    .await;
    let recovered = DeepgramFake::start(KEY).await;
    let backup = DeepgramFake::start(KEY).await;
    let target = Arc::new(Mutex::new(failing.addr()));
    let proxy = switchable_proxy(target.clone()).await;
    let server = TestServer::start(&format!(
        "resilience: {{ stt_reconnects: 0, breaker_failures: 2, breaker_window_secs: 60, breaker_open_secs: 1 }}\n\
         plugins:\n  stt:\n    \
         deepgram: {{ api_key: {KEY}, base_url: \"ws://{proxy}\" }}\n    \
         deepgram-backup: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n",
        backup.base_url()
    ))
    .await;
    let url = server.ws_url("/ws");
    for _ in 0..2 {
        let (_, seen) = stt_session(&url, stt_cfg("deepgram", "nova-3", &[])).await;
        assert_eq!(
            seen.error_codes(),
            ["provider_unavailable"],
            "{:?}",
            seen.messages
        );
    }
    assert_eq!(circuit(&server, "deepgram").await, "open");
    // Two sessions, but the kit retries a 503 upgrade (up to 3 dials per session, within the
    // provider's retry budget), so the vendor saw between 2 and 6 handshakes.
    let dialled = failing.requests().len();
    assert!((2..=6).contains(&dialled), "{dialled} dials for 2 sessions");
    // Open: a session with a chain goes to the fallback without dialling the vendor.
    let (_, seen) = stt_session(&url, stt_cfg("deepgram", "nova-3", &["deepgram-backup"])).await;
    assert!(seen.errors().is_empty(), "{:?}", seen.messages);
    assert!(!seen.finals().is_empty() && seen.finals().iter().all(|(p, _)| p == "deepgram-backup"));
    assert_eq!(
        failing.requests().len(),
        dialled,
        "an open breaker does not dial"
    );
    // The vendor recovers; after breaker_open_secs one probe session goes through and closes it.
    *target.lock().unwrap() = recovered.addr();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (_, seen) = stt_session(&url, stt_cfg("deepgram", "nova-3", &["deepgram-backup"])).await;
    assert!(seen.errors().is_empty(), "{:?}", seen.messages);
    assert!(
        !seen.finals().is_empty() && seen.finals().iter().all(|(p, _)| p == "deepgram"),
        "the probe is served by the recovered vendor: {:?}",
        seen.finals()
    );
    assert_eq!(circuit(&server, "deepgram").await, "closed");
    let m = server.metrics().await;
    for to in ["open", "closed"] {
        assert!(
            m.lines()
                .any(|l| l.starts_with("waav_breaker_transitions_total")
                    && l.contains("provider=\"deepgram\"")
                    && l.contains(&format!("to=\"{to}\""))),
            "{to}: {m}"
        );
    }
}
