//! Failover time per fault class: from the fault to the first result (STT) or first audio
//! (TTS) from the provider that takes over, through a real gateway (`waav-bench-gateway`, the
//! testkit's loopback providers linked) over real sockets, one session at a time.
//!
//! The loopback's fault knobs place each fault at a moment the client knows:
//! - `stt-drop`: `fault=fatal,after=1,sessions=1` ends the STT session with a transient error
//!   at its first result (after 100 ms of speech, i.e. the 5th 20 ms frame); the core reopens
//!   the same provider (`resilience.stt_reconnects`) with the audio replayed. Fault = the 5th
//!   speech frame sent; end = the first `stt_result` after `provider_switched`.
//! - `stt-panic`: `fault=panic,after=1`, fallback `loopback` (default model, healthy): the
//!   provider panics at the same point, is reopened (panics count as retryable, and every
//!   reopened session panics again) until `stt_reconnects` is spent, then the chain takes over.
//!   Same fault and end points.
//! - `tts-panic`: `fault=panic` panics on the request; fallback `loopback:tone-c5`. Fault = the
//!   `speak` sent; end = the first audio frame after `provider_switched`.
//! - `tts-empty` / `tts-silent`: `fault=mute` / `amplitude=0` finish the request at once with no
//!   audio / only silence (the loopback is not paced), caught by the watchdogs at the request's
//!   end. Same points (the silent audio itself comes first and is not counted).
//! - `tts-first-byte`: `latency_ms=60000`: no first byte; the `tts_first_byte_ms` watchdog
//!   (the config's, given as `first_byte_ms`) trips. Fault = the speak sent plus that bound.
//!
//! Every wait is bounded; a run that does not switch is counted as a failure, not a sample.

use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The fault classes, in report order.
pub const CLASSES: &[&str] = &[
    "stt-drop",
    "stt-panic",
    "tts-panic",
    "tts-empty",
    "tts-silent",
    "tts-first-byte",
];

/// The gateway config the mode needs (the first-byte watchdog's bound in ms).
pub fn gateway_yaml(first_byte_ms: u64) -> String {
    format!("resilience: {{ tts_first_byte_ms: {first_byte_ms}, breaker_failures: 10000 }}\n")
}

/// One class's results.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// The class.
    pub class: &'static str,
    /// Fault → first result / audio from the next provider.
    pub failover: Distribution,
    /// Runs that did not switch (or timed out).
    pub failures: usize,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const GUARD: Duration = Duration::from_secs(15);

async fn next_frame(s: &mut Socket) -> Option<Message> {
    match tokio::time::timeout(GUARD, s.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

async fn configure(s: &mut Socket, config: Value) -> bool {
    if s.send(Message::text(config.to_string())).await.is_err() {
        return false;
    }
    while let Some(m) = next_frame(s).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            return v["type"] == "ready";
        }
    }
    false
}

fn pcm_frame(loud: bool) -> Vec<u8> {
    (0..320)
        .flat_map(|i| {
            let s = if loud {
                ((i as f32 * 0.12).sin() * 12_000.0) as i16
            } else {
                0
            };
            s.to_le_bytes()
        })
        .collect()
}

/// One STT run: the fault → first result from the provider after the switch.
async fn stt_once(url: &str, model: &str, fallback: bool) -> Option<Duration> {
    let (mut s, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut stt = json!({"provider":"loopback","language":"en-US","sample_rate":16000,"channels":1,
        "punctuation":false,"encoding":"linear16","model":model});
    if fallback {
        stt["fallback"] = json!(["loopback"]);
    }
    if !configure(&mut s, json!({"type":"config","stt_config":stt})).await {
        return None;
    }
    let (mut tx, mut rx) = s.split();
    let fault_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mark = fault_at.clone();
    let writer = tokio::spawn(async move {
        // 1 s of speech then 400 ms of silence, paced in real time.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..70 {
            tick.tick().await;
            if tx.send(Message::binary(pcm_frame(i < 50))).await.is_err() {
                break;
            }
            if i == 4 {
                *mark.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
        }
        tx
    });
    let mut switched = false;
    let mut took = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(GUARD, rx.next()).await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        match v["type"].as_str() {
            Some("provider_switched") => switched = true,
            Some("stt_result") if switched => {
                let at = *fault_at.lock().unwrap_or_else(|p| p.into_inner());
                took = at.map(|a| a.elapsed());
                break;
            }
            Some("error") => break,
            _ => {}
        }
    }
    if let Ok(tx) = writer.await {
        if let Ok(mut s) = tx.reunite(rx) {
            let _ = s.close(None).await;
        }
    }
    took
}

/// One TTS run: the speak (plus `offset`, the fault's known delay) → first fallback audio.
async fn tts_once(url: &str, model: &str, offset: Duration) -> Option<Duration> {
    let (mut s, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let tts = json!({"provider":"loopback","model":model,"audio_format":"linear16",
        "sample_rate":16000,"fallback":["loopback:tone-c5"]});
    if !configure(&mut s, json!({"type":"config","tts_config":tts})).await {
        return None;
    }
    let speak = json!({"type":"speak","text":"the fallback speaks this sentence"});
    s.send(Message::text(speak.to_string())).await.ok()?;
    let t0 = Instant::now();
    let mut switched = false;
    let mut took = None;
    while let Some(m) = next_frame(&mut s).await {
        match m {
            Message::Binary(_) if switched => {
                took = Some(t0.elapsed().saturating_sub(offset));
                break;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("provider_switched") => switched = true,
                    Some("error" | "tts_playback_complete") => break,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let _ = s.close(None).await;
    took
}

/// Measures `class` over `runs` sequential sessions against the gateway at `url` (`/ws`),
/// whose `tts_first_byte_ms` is `first_byte_ms`.
pub async fn measure(
    url: &str,
    class: &'static str,
    runs: usize,
    first_byte_ms: u64,
) -> ClassReport {
    let mut samples = Vec::with_capacity(runs);
    let mut failures = 0;
    let nonce = std::process::id();
    for i in 0..runs {
        let took = match class {
            "stt-drop" => {
                // A model string of its own per run: its first session drops, the reopened
                // one behaves.
                let model = format!("fault=fatal,after=1,sessions=1,tag=b{nonce}-{i}");
                stt_once(url, &model, false).await
            }
            "stt-panic" => stt_once(url, "fault=panic,after=1", true).await,
            "tts-panic" => tts_once(url, "fault=panic", Duration::ZERO).await,
            "tts-empty" => tts_once(url, "fault=mute", Duration::ZERO).await,
            "tts-silent" => tts_once(url, "amplitude=0", Duration::ZERO).await,
            "tts-first-byte" => {
                tts_once(
                    url,
                    "latency_ms=60000",
                    Duration::from_millis(first_byte_ms),
                )
                .await
            }
            _ => None,
        };
        match took {
            Some(d) => samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            None => failures += 1,
        }
    }
    ClassReport {
        class,
        failover: Distribution::from_ns(samples),
        failures,
    }
}
