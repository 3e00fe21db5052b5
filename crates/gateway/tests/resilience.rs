//! Failover chains and circuit breakers in real `/ws` sessions, against the loopback providers'
//! fault knobs: a failing provider hands the session to the next of its chain (STT with the
//! unsettled audio replayed, TTS with the unfinished requests), breakers open and recover, and
//! without a chain the session ends with the provider's error as before.

mod common;

use common::ws::{stt_config, tts_config, utterance, Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

async fn next_json(c: &mut WsClient) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) => return v,
            Ok(_) => {}
            Err(_) => panic!("no message within 10 s"),
        }
    }
}

/// Everything up to and including the next final `stt_result`.
async fn until_final(c: &mut WsClient) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(c).await;
        let done = v["type"] == "stt_result" && v["is_final"] == true;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

async fn until(c: &mut WsClient, ty: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(c).await;
        let done = v["type"] == ty;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_provider_that_fails_to_connect_is_replaced_by_its_fallback() {
    let server = TestServer::start("").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "fault=panic_on_connect", 16000);
    stt["fallback"] = json!(["loopback"]);
    c.configure(json!({"type":"config","stt_config":stt})).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "stt_result").await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
}

#[tokio::test]
async fn stt_fails_over_mid_stream_and_keeps_transcribing() {
    let server = TestServer::start("").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "fault=fatal,after=1", 16000);
    stt["fallback"] = json!(["loopback"]);
    c.configure(json!({"type":"config","stt_config":stt})).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "provider_switched").await;
    let switched = seen.last().unwrap();
    assert_eq!(switched["role"], "stt");
    assert_eq!(
        (switched["from"].as_str(), switched["to"].as_str()),
        (Some("loopback"), Some("loopback"))
    );
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    // The new provider transcribes the next utterance.
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "stt_result").await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let metrics = server.metrics().await;
    assert!(metrics.contains("waav_failovers_total"), "{metrics}");
}

#[tokio::test]
async fn a_dropped_stt_provider_is_reopened_with_no_speech_lost_and_no_final_repeated() {
    let server = TestServer::start("").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    // The first session of this model ends with a transient error at its first result; the
    // reopened one behaves.
    let model = "fault=fatal,after=1,sessions=1,tag=reopen";
    c.configure(json!({"type":"config","stt_config":stt_config("loopback",model,16000)}))
        .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until_final(&mut c).await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let switched = seen
        .iter()
        .find(|v| v["type"] == "provider_switched")
        .unwrap_or_else(|| panic!("no provider_switched: {seen:?}"));
    assert_eq!(
        (switched["from"].as_str(), switched["to"].as_str()),
        (Some("loopback"), Some("loopback"))
    );
    // The replayed utterance is transcribed by the reopened provider: its words are not lost.
    let finals: Vec<&Value> = seen.iter().filter(|v| v["type"] == "stt_result").collect();
    assert!(
        finals.iter().any(|v| v["is_final"] == true
            && v["transcript"]
                .as_str()
                .is_some_and(|t| t.starts_with("utterance 1"))),
        "{seen:?}"
    );
    // The session goes on: the next utterance gets one final, not a repeat of the first.
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until_final(&mut c).await;
    let last = seen.last().unwrap();
    assert!(
        last["transcript"]
            .as_str()
            .is_some_and(|t| t.starts_with("utterance 2")),
        "{seen:?}"
    );
    let metrics = server.metrics().await;
    assert!(metrics.contains("waav_reconnects_total"), "{metrics}");
}

#[tokio::test]
async fn a_provider_that_keeps_dropping_spends_its_reconnects_then_errors() {
    let server = TestServer::start("resilience: { stt_reconnects: 2 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","stt_config":stt_config("loopback","fault=fatal,after=1",16000)}),
    )
    .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "error").await;
    let reopened = seen
        .iter()
        .filter(|v| v["type"] == "provider_switched")
        .count();
    assert_eq!(reopened, 2, "{seen:?}");
    assert_eq!(seen.last().unwrap()["code"], "provider_unavailable");
}

#[tokio::test]
async fn without_a_chain_the_failure_is_reported_as_before() {
    let server = TestServer::start("resilience: { stt_reconnects: 0 }\n").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","stt_config":stt_config("loopback","fault=fatal,after=1",16000)}),
    )
    .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "error").await;
    assert!(seen.iter().all(|v| v["type"] != "provider_switched"));
    assert_eq!(seen.last().unwrap()["code"], "provider_unavailable");
}

#[tokio::test]
async fn the_yaml_chain_applies_when_the_client_names_none() {
    let server = TestServer::start(
        "resilience: { failover: { stt: { loopback: [loopback] }, tts: { loopback: [\"loopback:tone-c5\"] } } }\n",
    )
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","stt_config":stt_config("loopback","fault=fatal,after=1",16000)}),
    )
    .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    until(&mut c, "provider_switched").await;
}

#[tokio::test]
async fn tts_fails_over_and_speaks_the_unfinished_request() {
    let server = TestServer::start("").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", "fault=panic");
    tts["fallback"] = json!(["loopback:tone-c5"]);
    c.configure(json!({"type":"config","tts_config":tts})).await;
    c.send_json(json!({"type":"speak","text":"hello there"}))
        .await;
    let mut switched = false;
    let mut audio = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "provider_switched" => {
                assert_eq!(v["role"], "tts");
                switched = true;
            }
            Ok(Frame::Json(v)) if v["type"] == "tts_playback_complete" => break,
            Ok(Frame::Json(v)) => panic!("unexpected {v}"),
            Ok(Frame::Binary(b)) => audio += b.len(),
            Ok(_) => {}
            Err(_) => panic!("no playback complete"),
        }
    }
    assert!(switched);
    // "hello there": 11 chars x 10 ms at 16 kHz = 3,520 bytes, all from the fallback.
    assert_eq!(audio, 3_520);
}

#[tokio::test]
async fn a_breaker_opens_after_repeated_failures_fails_fast_and_recovers() {
    let server = TestServer::start(
        "resilience: { breaker_failures: 2, breaker_window_secs: 60, breaker_open_secs: 1 }\n",
    )
    .await;
    for _ in 0..2 {
        let mut c = WsClient::connect(&server.ws_url("/ws")).await;
        c.send_json(json!({"type":"config","stt_config":stt_config("loopback","fault=panic_on_connect",16000)}))
            .await;
        let e = next_json(&mut c).await;
        assert_eq!(e["type"], "error");
    }
    // Open: even a healthy config fails fast, naming the open circuit.
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.send_json(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
        .await;
    c.expect_error("provider_circuit_open").await;
    let health: Value = reqwest::get(server.url("/health/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "loopback" && p["kind"] == "stt")
        .cloned()
        .unwrap();
    assert_eq!(entry["circuit"], "open", "{entry}");
    // With a fallback to another provider the session is served anyway.
    let mut stt = stt_config("loopback", "", 16000);
    stt["fallback"] = json!(["keyed"]);
    stt["api_key"] = json!("good-key");
    c.send_json(json!({"type":"config","stt_config":stt})).await;
    // keyed needs the client's key, which fallbacks do not inherit: still refused, clearly.
    let e = next_json(&mut c).await;
    assert_eq!(e["type"], "error", "{e}");
    // After breaker_open_secs a probe goes through and closes it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    c.configure(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
        .await;
    let mut d = WsClient::connect(&server.ws_url("/ws")).await;
    d.configure(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
        .await;
}

/// Speaks "hello there" through a TTS that fails silently (`model`), with a fallback when
/// `fallback` is set: what the client saw (JSON messages) and the audio bytes it got.
async fn speak_through(server: &TestServer, model: &str, fallback: bool) -> (Vec<Value>, usize) {
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", model);
    if fallback {
        tts["fallback"] = json!(["loopback:tone-c5"]);
    }
    c.configure(json!({"type":"config","tts_config":tts})).await;
    c.send_json(json!({"type":"speak","text":"hello there"}))
        .await;
    let mut seen = Vec::new();
    let mut audio = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) => {
                let done = v["type"] == "tts_playback_complete";
                seen.push(v);
                if done {
                    return (seen, audio);
                }
            }
            Ok(Frame::Binary(b)) => audio += b.len(),
            Ok(Frame::Closed(c)) => panic!("closed: {c:?}"),
            Err(_) => panic!("no playback complete: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn silent_tts_failures_are_caught_by_watchdogs_and_failed_over() {
    let server = TestServer::start("resilience: { tts_first_byte_ms: 300 }\n").await;
    // No first byte in time, no audio at all, audio that is only silence: each is a failure
    // no error reported, and the fallback speaks the request.
    for (model, watchdog) in [
        ("latency_ms=5000", "first_byte"),
        ("fault=mute", "empty_audio"),
        ("amplitude=0", "silent_audio"),
    ] {
        let (seen, audio) = speak_through(&server, model, true).await;
        let switched = seen
            .iter()
            .find(|v| v["type"] == "provider_switched")
            .unwrap_or_else(|| panic!("{model}: no failover: {seen:?}"));
        assert_eq!(switched["role"], "tts", "{model}");
        assert!(
            seen.iter().all(|v| v["type"] != "error"),
            "{model}: {seen:?}"
        );
        // "hello there": 11 chars x 10 ms at 16 kHz = 3,520 bytes from the fallback; silence
        // can only be known at the request's end, so what was silent already went out.
        if watchdog == "silent_audio" {
            assert!(audio > 3_520, "{model}: {audio}");
        } else {
            assert_eq!(audio, 3_520, "{model}");
        }
        let metrics = server.metrics().await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("waav_watchdog_trips_total")
                    && l.contains(&format!("watchdog=\"{watchdog}\""))),
            "{model}: {metrics}"
        );
    }
    // Without a chain the request fails with an error and the session goes on.
    let (seen, audio) = speak_through(&server, "fault=mute", false).await;
    assert_eq!(audio, 0);
    let error = seen
        .iter()
        .find(|v| v["type"] == "error")
        .expect("an error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("no audio")),
        "{error}"
    );
    // Quiet but real audio is not silence.
    let (seen, audio) = speak_through(&server, "amplitude=2000", false).await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    assert_eq!(audio, 3_520);
}

#[tokio::test]
async fn an_stt_provider_silent_through_speech_is_caught_and_failed_over() {
    let server = TestServer::start(
        "resilience: { stt_silent_ms: 300, stt_reconnects: 0 }\nplugins:\n  processors:\n    vad: { type: level-vad, config: { silence_frames: 3 } }\n  pipelines: { default_stt_pre: [vad] }\n",
    )
    .await;
    // With a chain: the silent provider is replaced, and the replayed utterance is transcribed.
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "fault=mute", 16000);
    stt["fallback"] = json!(["loopback"]);
    c.configure(json!({"type":"config","stt_config":stt})).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "provider_switched").await;
    let switched = seen.last().unwrap();
    assert_eq!(switched["role"], "stt");
    assert!(
        switched["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no result within 300 ms")),
        "{switched}"
    );
    let seen = until_final(&mut c).await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("waav_watchdog_trips_total")
                && l.contains("watchdog=\"no_result\"")),
        "{metrics}"
    );
    // Without one: an error naming the timeout, and the connection survives.
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","stt_config":stt_config("loopback","fault=mute",16000)}))
        .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until(&mut c, "error").await;
    assert_eq!(seen.last().unwrap()["code"], "provider_timeout", "{seen:?}");
    c.configure(json!({"type":"config","stt_config":stt_config("loopback","",16000)}))
        .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    until_final(&mut c).await;
}

/// How many first bytes `/metrics` has recorded for TTS instance `id`.
async fn first_bytes(server: &TestServer, id: &str) -> u64 {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find(|l| {
            l.starts_with("waav_provider_latency_seconds_count")
                && l.contains(&format!("provider=\"{id}\""))
                && l.contains("stage=\"tts_first_byte\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_fastest_chain_moves_sessions_to_the_instance_with_the_lowest_first_byte() {
    let server = TestServer::start(
        "plugins:\n  tts:\n    slow: { plugin: loopback }\n    quick: { plugin: loopback }\nresilience:\n  failover:\n    tts: { slow: { providers: [quick], strategy: fastest } }\n",
    )
    .await;
    let mut n = 0;
    let mut speak = |model: &'static str| {
        let server = &server;
        // A new text each time: a repeat would be a cache hit, measuring no provider.
        n += 1;
        let text = format!("hello number {n}");
        async move {
            let mut c = WsClient::connect(&server.ws_url("/ws")).await;
            c.configure(json!({"type":"config","tts_config":tts_config("slow", model)}))
                .await;
            c.send_json(json!({"type":"speak","text":text})).await;
            until(&mut c, "tts_playback_complete").await;
        }
    };
    // Neither measured: the listed order, so the primary, slow this time (300 ms to first byte).
    speak("latency_ms=300").await;
    assert_eq!(
        (
            first_bytes(&server, "slow").await,
            first_bytes(&server, "quick").await
        ),
        (1, 0)
    );
    // An instance never measured goes first, so the fallback is tried and measured...
    speak("latency_ms=300").await;
    assert_eq!(first_bytes(&server, "quick").await, 1);
    // ...and, being faster, keeps the sessions.
    for _ in 0..3 {
        speak("latency_ms=300").await;
    }
    assert_eq!(
        (
            first_bytes(&server, "slow").await,
            first_bytes(&server, "quick").await
        ),
        (1, 4)
    );
}

/// Two loopback instances, `own` failing over to `spare`, sessions returning after 200 ms.
const RECOVERING: &str = "plugins:\n  stt:\n    own: { plugin: loopback }\n    spare: { plugin: loopback }\n  tts:\n    own: { plugin: loopback }\n    spare: { plugin: loopback }\nresilience:\n  stt_reconnects: 0\n  recover_after_ms: 200\n  failover:\n    stt: { own: [spare] }\n    tts: { own: [spare] }\n";

fn switch_of(seen: &[Value]) -> Option<(&str, &str)> {
    seen.iter()
        .rev()
        .find(|v| v["type"] == "provider_switched")
        .map(|v| (v["from"].as_str().unwrap(), v["to"].as_str().unwrap()))
}

#[tokio::test]
async fn a_session_returns_to_its_own_stt_provider_at_a_final_after_the_recovery_period() {
    let server = TestServer::start(RECOVERING).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    // The first session of this model ends at its first result; a later one behaves.
    let model = "fault=fatal,after=1,sessions=1,tag=recover-stt";
    c.configure(json!({"type":"config","stt_config":stt_config("own",model,16000)}))
        .await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let seen = until_final(&mut c).await;
    assert_eq!(switch_of(&seen), Some(("own", "spare")), "{seen:?}");
    // Past the recovery period, the next final is the boundary where the session goes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    let mut seen = until_final(&mut c).await;
    seen.extend(until(&mut c, "provider_switched").await);
    assert_eq!(switch_of(&seen), Some(("spare", "own")), "{seen:?}");
    // The own provider transcribes what comes next; nothing went wrong on the way.
    for f in utterance(200, 600, 16_000) {
        c.send_binary(f).await;
    }
    seen.extend(until_final(&mut c).await);
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let finals = seen
        .iter()
        .filter(|v| v["type"] == "stt_result" && v["is_final"] == true)
        .count();
    assert_eq!(
        finals, 2,
        "one final per utterance, none repeated: {seen:?}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("waav_recoveries_total") && l.contains("provider=\"own\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_connect_time_failover_is_announced_and_tts_returns_when_idle() {
    let server = TestServer::start(RECOVERING).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    // The first session of this model fails to connect; a later one connects.
    let model = "fault=panic_on_connect,sessions=1,tag=recover-tts";
    c.send_json(json!({"type":"config","tts_config":tts_config("own", model)}))
        .await;
    let seen = until(&mut c, "provider_switched").await;
    assert!(seen.iter().any(|v| v["type"] == "ready"), "{seen:?}");
    assert_eq!(switch_of(&seen), Some(("own", "spare")), "{seen:?}");
    c.send_json(json!({"type":"speak","text":"spoken by the spare"}))
        .await;
    until(&mut c, "tts_playback_complete").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // This request is the boundary: the own provider is opened in the background meanwhile,
    // and takes over once the queue is empty.
    c.send_json(json!({"type":"speak","text":"still the spare"}))
        .await;
    let mut seen = until(&mut c, "tts_playback_complete").await;
    if switch_of(&seen) != Some(("spare", "own")) {
        seen.extend(until(&mut c, "provider_switched").await);
    }
    assert_eq!(switch_of(&seen), Some(("spare", "own")), "{seen:?}");
    c.send_json(json!({"type":"speak","text":"and now the own provider"}))
        .await;
    seen.extend(until(&mut c, "tts_playback_complete").await);
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let first_bytes = first_bytes(&server, "own").await;
    assert_eq!(first_bytes, 1, "the own provider spoke the last request");
}

#[tokio::test]
async fn a_session_can_opt_out_of_provider_switched_events() {
    let server = TestServer::start(RECOVERING).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let model = "fault=panic_on_connect,sessions=1,tag=quiet";
    c.send_json(
        json!({"type":"config","provider_switched":false,"tts_config":tts_config("own", model)}),
    )
    .await;
    // The spare serves (the failover happened), and nothing announced it.
    c.send_json(json!({"type":"speak","text":"quietly served"}))
        .await;
    let seen = until(&mut c, "tts_playback_complete").await;
    assert!(seen.iter().any(|v| v["type"] == "ready"), "{seen:?}");
    assert!(
        seen.iter()
            .all(|v| v["type"] != "provider_switched" && v["type"] != "error"),
        "{seen:?}"
    );
}
