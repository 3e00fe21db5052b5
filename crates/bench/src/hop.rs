//! The provider-hop phase: the STT provider is a real cloud plugin (`deepgram`) talking over a
//! real socket to the testkit's Deepgram fake, so the measured path includes the provider hop.
//!
//! Each session streams 20 ms PCM16 frames of constant, loud audio. The fake (run in the bench's
//! process) "hears" every frame as speech and sends an interim `Results` after every
//! `report_every` frames; its one word ends at the audio position of the frame that triggered
//! it, so the client knows which frame each result answers. **Round trip** = client sends that
//! frame → the result for it arrives back at the client: client socket → gateway → plugin →
//! provider socket → fake → and all the way back. The same load against the bare relay
//! (`waav-bench-floor --upstream`, which forwards frames to the same fake and turns its
//! `Results` into `stt_result` with no gateway logic) gives the floor; gateway minus relay is
//! the gateway's added latency for the hop.
//!
//! The fake needs no stamping: matching by word end time uses only its documented behaviour
//! (`ms_per_word` longer than any run: one word per segment, ending at the audio heard so far).

use crate::load::{connect, LoadConfig, Pace};
use crate::stats::{Distribution, ProcSample};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use waav_testkit::fakes::deepgram::{DeepgramFake, DeepgramTtsFake, FakeOptions, TtsFakeOptions};

/// The API key the fakes accept and the gateway config (and relay) present.
pub const API_KEY: &str = "waav-bench-key";

/// The `/v1/listen` query the relay dials: what the `deepgram` plugin sends for the sessions
/// this phase opens (16 kHz mono linear16, `vad_events: false` in the gateway config).
pub const LISTEN_QUERY: &str = "model=nova-3&language=en-US&encoding=linear16&sample_rate=16000\
&channels=1&punctuate=false&interim_results=true&vad_events=false";

/// The fakes, in this process: Deepgram `/v1/listen` and `/v1/speak`.
#[derive(Debug)]
pub struct Fakes {
    /// STT fake.
    pub stt: DeepgramFake,
    /// TTS fake (speak WebSocket, no pause between chunks).
    pub tts: DeepgramTtsFake,
}

impl Fakes {
    /// Starts both; the STT fake answers every `every` frames of `frame_ms`.
    pub async fn start(every: u32, frame_ms: u32) -> Self {
        let stt = DeepgramFake::with_options(FakeOptions {
            // One word per segment: its end is the audio position (the frame it answers).
            ms_per_word: 1_000_000_000,
            interim_every_ms: every.max(1) * frame_ms,
            ..FakeOptions::new(API_KEY).idle_timeout(Duration::from_secs(3600))
        })
        .await;
        let tts =
            DeepgramTtsFake::with_options(TtsFakeOptions::new(API_KEY).chunk_delay(Duration::ZERO))
                .await;
        Self { stt, tts }
    }

    /// Gateway config: the `deepgram` STT and TTS plugins pointed at the fakes; `replay: false`
    /// also sets `resilience.stt_reconnects: 0`, so sessions keep no audio for a replay.
    pub fn gateway_yaml(&self, replay: bool) -> String {
        let extra = if replay {
            ""
        } else {
            "resilience:\n  stt_reconnects: 0\n"
        };
        extra.to_owned() + &format!(
            "plugins:\n  stt:\n    deepgram: {{ api_key: {API_KEY}, base_url: \"{}\", vad_events: false }}\n  tts:\n    deepgram: {{ api_key: {API_KEY}, base_url: \"{}\" }}\n",
            self.stt.base_url(),
            self.tts.base_url()
        )
    }
}

/// The session `config` both targets receive (the relay reads nothing but waits for it).
pub fn stt_config(rate: u32) -> String {
    serde_json::json!({"type":"config","stt_config":{
        "provider":"deepgram","language":"en-US","sample_rate":rate,"channels":1,
        "punctuation":false,"encoding":"linear16","model":"nova-3"}})
    .to_string()
}

/// What one provider-hop run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HopReport {
    /// Sessions that got every result back.
    pub sessions_ok: usize,
    /// Frames sent by all sessions.
    pub frames_sent: u64,
    /// Results expected (one per `report_every` frames).
    pub results_expected: u64,
    /// Results received and matched to a frame.
    pub results_received: u64,
    /// Client sends a frame → the fake's result for it arrives at the client.
    pub round_trip: Distribution,
    /// How late the generator sent frames against their schedule (rig health).
    pub send_lag: Distribution,
    /// Errors by code (or by client-side failure).
    pub errors: BTreeMap<String, u64>,
    /// Server (gateway or relay) CPU during the run, µs.
    pub server_cpu_us: u64,
    /// Server CPU per frame sent, µs.
    pub server_cpu_us_per_frame: f64,
    /// Server CPU use as a share of one core.
    pub server_cores: f64,
    /// This process (generator and fakes) as a share of one core.
    pub generator_cores: f64,
    /// Server RSS before the sessions opened, KiB.
    pub server_rss_before_kib: u64,
    /// Server RSS with every session streaming (sampled 1 s before the first session ends;
    /// 0 for runs of 2 s or less), KiB.
    pub server_rss_peak_kib: u64,
    /// (peak − before) / sessions, bytes: client socket, session and provider socket.
    pub bytes_per_streaming_session: f64,
    /// Wall time of the run, s.
    pub wall_s: f64,
}

#[derive(Default)]
struct Shared {
    rtt_ns: Vec<u64>,
    lag_ns: Vec<u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    received: u64,
    expected: u64,
    ok: usize,
}

/// Runs the provider-hop load against `cfg.url` (a gateway configured with
/// [`Fakes::gateway_yaml`], or the relay); `server_pid` (0: unknown) is sampled.
pub async fn run(cfg: &LoadConfig, server_pid: u32) -> HopReport {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let sample = |pid: u32| {
        if pid == 0 {
            ProcSample::default()
        } else {
            ProcSample::read(pid).unwrap_or_default()
        }
    };
    let gw0 = sample(server_pid);
    let me0 = ProcSample::read(0).unwrap_or_default();
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.sessions);
    for i in 0..cfg.sessions {
        let cfg = cfg.clone();
        let shared = shared.clone();
        let delay = cfg.ramp.mul_f64(i as f64 / cfg.sessions.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            session(&cfg, &shared).await
        }));
    }
    // Peak memory: every session has started and streamed for a while (the gateway's replay
    // buffer fills over `resilience.stt_replay_ms`), sampled 1 s before the first ones end.
    let peak = if cfg.duration > Duration::from_secs(2) {
        tokio::time::sleep(cfg.duration - Duration::from_secs(1)).await;
        sample(server_pid).rss_kib
    } else {
        0
    };
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            *shared.lock().await.errors.entry(e).or_default() += 1;
        }
    }
    let wall = t0.elapsed();
    let gw1 = sample(server_pid);
    let me1 = ProcSample::read(0).unwrap_or_default();
    let s = std::mem::take(&mut *shared.lock().await);
    let cpu = gw1.cpu_us.saturating_sub(gw0.cpu_us);
    let wall_us = wall.as_micros().max(1) as f64;
    HopReport {
        sessions_ok: s.ok,
        frames_sent: s.sent,
        results_expected: s.expected,
        results_received: s.received,
        round_trip: Distribution::from_ns(s.rtt_ns),
        send_lag: Distribution::from_ns(s.lag_ns),
        errors: s.errors,
        server_cpu_us: cpu,
        server_cpu_us_per_frame: cpu as f64 / s.sent.max(1) as f64,
        server_cores: cpu as f64 / wall_us,
        generator_cores: me1.cpu_us.saturating_sub(me0.cpu_us) as f64 / wall_us,
        server_rss_before_kib: gw0.rss_kib,
        server_rss_peak_kib: peak,
        bytes_per_streaming_session: if peak == 0 {
            0.0
        } else {
            (peak.saturating_sub(gw0.rss_kib) * 1024) as f64 / cfg.sessions.max(1) as f64
        },
        wall_s: wall.as_secs_f64(),
    }
}

/// The frame a result answers: its first word ends at the audio position (after that frame).
fn answered_frame(v: &serde_json::Value, frame_ms: u32) -> Option<u64> {
    let end_s = v["words"].get(0)?["end"].as_f64()?;
    let frames = (end_s * 1000.0 / f64::from(frame_ms)).round() as u64;
    frames.checked_sub(1)
}

async fn session(cfg: &LoadConfig, shared: &Mutex<Shared>) -> Result<(), String> {
    let ws = connect(&cfg.url).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(stt_config(cfg.sample_rate)))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => {}
        other => return Err(format!("no ready: {other:?}")),
    }
    let every = u64::from(cfg.report_every.max(1));
    let total = (cfg.duration.as_millis() as u64 / u64::from(cfg.frame_ms)) / every * every;
    let expected = total / every;
    let frame_bytes = (cfg.sample_rate * cfg.frame_ms / 1000) as usize * 2;
    // Send times, ns since `epoch` (+1 so 0 means "not sent").
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());

    let reader = async {
        let mut rtt = Vec::with_capacity(expected as usize);
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut received = 0;
        while received < expected {
            let msg = match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(_) => break,
                Err(_) => {
                    *errors.entry("no_result_10s".into()).or_default() += 1;
                    break;
                }
            };
            let Message::Text(t) = msg else { continue };
            let arrived = epoch.elapsed().as_nanos() as u64 + 1;
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "error" {
                let code = v["code"].as_str().unwrap_or("unknown").to_owned();
                *errors.entry(code).or_default() += 1;
                continue;
            }
            if v["type"] != "stt_result" {
                continue;
            }
            let idx = answered_frame(&v, cfg.frame_ms);
            let sent = idx
                .and_then(|i| sent_at.get(i as usize))
                .map_or(0, |a| a.load(Ordering::Acquire));
            if sent == 0 {
                *errors.entry("unmatched_result".into()).or_default() += 1;
                continue;
            }
            rtt.push(arrived.saturating_sub(sent));
            received += 1;
        }
        (rtt, errors, received)
    };
    let writer = async {
        let mut lag = Vec::with_capacity(total as usize);
        let period = Duration::from_millis(u64::from(cfg.frame_ms));
        let start = tokio::time::Instant::now();
        // Loud constant PCM16: the fake hears every frame as speech.
        let frame = bytes::Bytes::from([0x10u8, 0x27].repeat(frame_bytes / 2));
        for seq in 0..total {
            if cfg.pace == Pace::Realtime {
                let due = start + period * seq as u32;
                tokio::time::sleep_until(due).await;
                lag.push(due.elapsed().as_nanos() as u64);
            }
            sent_at[seq as usize].store(epoch.elapsed().as_nanos() as u64 + 1, Ordering::Release);
            if tx.send(Message::Binary(frame.clone())).await.is_err() {
                return (seq, lag, tx);
            }
        }
        (total, lag, tx)
    };
    let ((rtt, errors, received), (sent, lag, mut tx)) = tokio::join!(reader, writer);
    let _ = tx.send(Message::Close(None)).await;
    let mut s = shared.lock().await;
    s.rtt_ns.extend(rtt);
    s.lag_ns.extend(lag);
    for (k, v) in errors {
        *s.errors.entry(k).or_default() += v;
    }
    s.sent += sent;
    s.received += received;
    s.expected += expected;
    if sent == total && received == expected {
        s.ok += 1;
    }
    Ok(())
}

/// Opens `n` sessions configured with the hop provider (each with its provider socket open),
/// silent, and measures the server's RSS growth per session. Returns the same shape as the
/// loopback idle phase.
pub async fn idle(url: &str, n: usize, pid: u32) -> Result<crate::load::IdleReport, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ProcSample::read(pid).map_err(|e| e.to_string())?;
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(url).await?;
        ws.send(Message::text(stt_config(16_000)))
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => {}
            other => return Err(format!("no ready: {other:?}")),
        }
        open.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ProcSample::read(pid).map_err(|e| e.to_string())?;
    drop(open);
    Ok(crate::load::IdleReport {
        sessions: n,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        bytes_per_session: (after.rss_kib.saturating_sub(before.rss_kib) * 1024) as f64
            / n.max(1) as f64,
    })
}

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The bare relay's session: waits for the client's `config`, dials `upstream` (the Deepgram
/// fake) with [`LISTEN_QUERY`], answers `ready`, then forwards binary frames up and turns each
/// `Results` into an `stt_result` (transcript, flags, confidence, words) down. When the client
/// closes it sends `CloseStream` and waits (bounded) for the vendor's close. No session state,
/// queues, metrics or conversion: the floor for the same hop.
pub async fn relay_session(client: ServerWs, upstream: &str, api_key: &str) {
    let (mut ctx, mut crx) = client.split();
    loop {
        match crx.next().await {
            Some(Ok(Message::Text(_))) => break,
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let url = format!(
        "{}/v1/listen?{LISTEN_QUERY}",
        upstream.trim_end_matches('/')
    );
    let Ok(mut req) = url.as_str().into_client_request() else {
        return;
    };
    let Ok(auth) = format!("Token {api_key}").parse() else {
        return;
    };
    req.headers_mut().insert("authorization", auth);
    let up = tokio_tungstenite::connect_async_with_config(
        req,
        Some(crate::load::client_ws_config()),
        true,
    )
    .await;
    let Ok((up, _)) = up else {
        let err = r#"{"type":"error","code":"provider_unavailable","message":"relay: upstream"}"#;
        let _ = ctx.send(Message::text(err)).await;
        return;
    };
    let (mut utx, mut urx) = up.split();
    let ready = r#"{"type":"ready","stream_id":"relay","livekit_url":""}"#;
    if ctx.send(Message::text(ready)).await.is_err() {
        return;
    }
    let mut closing = false;
    let drain = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(drain);
    loop {
        tokio::select! {
            m = crx.next(), if !closing => match m {
                Some(Ok(Message::Binary(b))) => {
                    if utx.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                _ => {
                    let _ = utx.send(Message::text(r#"{"type":"CloseStream"}"#)).await;
                    closing = true;
                    drain.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(5));
                }
            },
            m = urx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["type"] != "Results" || closing {
                        continue;
                    }
                    let alt = &v["channel"]["alternatives"][0];
                    let out = serde_json::json!({"type":"stt_result",
                        "transcript": alt["transcript"], "is_final": v["is_final"],
                        "is_speech_final": v["speech_final"], "confidence": alt["confidence"],
                        "words": alt["words"]});
                    if ctx.send(Message::text(out.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            () = &mut drain, if closing => return,
        }
    }
}
