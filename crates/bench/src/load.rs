//! The STT load phase: N sessions streaming stamped 20 ms PCM16 frames, and the idle phase.

use crate::stats::{Distribution, ProcSample};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use waav_testkit::stamp::{now_ns, write_header, StampReport, HEADER};

/// How frames are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// One frame per frame duration, like a microphone.
    Realtime,
    /// As fast as the connection takes them.
    Flood,
}

/// STT load settings.
#[derive(Debug, Clone, Serialize)]
pub struct LoadConfig {
    /// `ws://host:port/ws`.
    pub url: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Streaming time per session.
    pub duration: Duration,
    /// Frame length in ms.
    pub frame_ms: u32,
    /// Sample rate of the PCM16 audio.
    pub sample_rate: u32,
    /// Pacing.
    pub pace: Pace,
    /// Provider report every this many frames.
    pub report_every: u32,
    /// Session starts are spread over this long (avoids a connect storm skewing the first frames).
    pub ramp: Duration,
    /// Pre-STT processor instances every session runs (`stt_config.pipeline`; empty: the
    /// gateway's default).
    pub stt_pipeline: Vec<String>,
}

/// What one STT load run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Sessions that completed their run.
    pub sessions_ok: usize,
    /// Frames sent by all sessions.
    pub frames_sent: u64,
    /// Frames the provider reported receiving.
    pub frames_received: u64,
    /// Client send → provider receive, per frame.
    pub frame_latency: Distribution,
    /// Provider emit → client receive, per result.
    pub result_latency: Distribution,
    /// How late the generator sent frames against their schedule (rig health).
    pub send_lag: Distribution,
    /// Errors by code (or by client-side failure).
    pub errors: BTreeMap<String, u64>,
    /// Gateway CPU time spent during the run, µs.
    pub gateway_cpu_us: u64,
    /// Gateway CPU per relayed frame, µs.
    pub gateway_cpu_us_per_frame: f64,
    /// Gateway CPU use as a share of one core.
    pub gateway_cores: f64,
    /// Generator CPU use as a share of one core.
    pub generator_cores: f64,
    /// Gateway RSS at the end, KiB.
    pub gateway_rss_kib: u64,
    /// Wall time of the run, s.
    pub wall_s: f64,
}

#[derive(Default)]
struct Shared {
    frame_ns: Vec<u64>,
    result_ns: Vec<u64>,
    lag_ns: Vec<u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    received: u64,
    ok: usize,
}

/// Small socket buffers: thousands of client sockets must not cost 256 KiB each.
pub fn client_ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 8 * 1024;
    c.write_buffer_size = 8 * 1024;
    c
}

/// Connects a client socket with small buffers and TCP_NODELAY.
pub async fn connect(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(client_ws_config()), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

fn stt_config(rate: u32, every: u32, pipeline: &[String]) -> String {
    let mut c = serde_json::json!({"type":"config","stt_config":{
        "provider":"loopback","language":"en-US","sample_rate":rate,"channels":1,
        "punctuation":false,"encoding":"linear16","model":format!("stamp={every}")}});
    if !pipeline.is_empty() {
        c["stt_config"]["pipeline"] = serde_json::json!(pipeline);
    }
    c.to_string()
}

/// Runs the STT load against `cfg.url`; `gateway_pid` (0: unknown) is sampled for CPU and memory.
pub async fn run(cfg: &LoadConfig, gateway_pid: u32) -> LoadReport {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let gw0 = sample(gateway_pid);
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
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            *shared.lock().await.errors.entry(e).or_default() += 1;
        }
    }
    let wall = t0.elapsed();
    let gw1 = sample(gateway_pid);
    let me1 = ProcSample::read(0).unwrap_or_default();
    let s = std::mem::take(&mut *shared.lock().await);
    let gateway_cpu_us = gw1.cpu_us.saturating_sub(gw0.cpu_us);
    LoadReport {
        sessions_ok: s.ok,
        frames_sent: s.sent,
        frames_received: s.received,
        frame_latency: Distribution::from_ns(s.frame_ns),
        result_latency: Distribution::from_ns(s.result_ns),
        send_lag: Distribution::from_ns(s.lag_ns),
        errors: s.errors,
        gateway_cpu_us,
        gateway_cpu_us_per_frame: gateway_cpu_us as f64 / s.received.max(1) as f64,
        gateway_cores: gateway_cpu_us as f64 / wall.as_micros().max(1) as f64,
        generator_cores: me1.cpu_us.saturating_sub(me0.cpu_us) as f64
            / wall.as_micros().max(1) as f64,
        gateway_rss_kib: gw1.rss_kib,
        wall_s: wall.as_secs_f64(),
    }
}

fn sample(pid: u32) -> ProcSample {
    if pid == 0 {
        ProcSample::default()
    } else {
        ProcSample::read(pid).unwrap_or_default()
    }
}

async fn session(cfg: &LoadConfig, shared: &Mutex<Shared>) -> Result<(), String> {
    let ws = connect(&cfg.url).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(stt_config(
        cfg.sample_rate,
        cfg.report_every,
        &cfg.stt_pipeline,
    )))
    .await
    .map_err(|e| format!("send: {e}"))?;
    match rx.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => {}
        other => return Err(format!("no ready: {other:?}")),
    }
    let every = u64::from(cfg.report_every.max(1));
    let total = (cfg.duration.as_millis() as u64 / u64::from(cfg.frame_ms)) / every * every;
    let frame_bytes = ((cfg.sample_rate * cfg.frame_ms / 1000) as usize * 2).max(HEADER);

    // Reader: collects reports and errors until the last frame is reported or the socket ends.
    let reader = async {
        let mut frame_ns = Vec::new();
        let mut result_ns = Vec::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut received = 0;
        while received < total {
            let msg = match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(_) => break,
                Err(_) => {
                    *errors.entry("no_report_10s".into()).or_default() += 1;
                    break;
                }
            };
            let Message::Text(t) = msg else { continue };
            let arrived = now_ns();
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "error" {
                let code = v["code"].as_str().unwrap_or("unknown").to_owned();
                *errors.entry(code).or_default() += 1;
                continue;
            }
            if let Some(r) = v["transcript"].as_str().and_then(StampReport::decode) {
                result_ns.push(arrived.saturating_sub(r.emitted_ns));
                frame_ns.extend(r.transit_ns);
                received = r.received;
            }
        }
        (frame_ns, result_ns, errors, received)
    };
    let writer = async {
        let mut lag = Vec::with_capacity(total as usize);
        let period = Duration::from_millis(u64::from(cfg.frame_ms));
        let start = tokio::time::Instant::now();
        for seq in 0..total {
            if cfg.pace == Pace::Realtime {
                let due = start + period * seq as u32;
                tokio::time::sleep_until(due).await;
                lag.push(due.elapsed().as_nanos() as u64);
            }
            let mut frame = vec![0u8; frame_bytes];
            write_header(&mut frame, seq, now_ns());
            if tx.send(Message::binary(frame)).await.is_err() {
                return (seq, lag, tx);
            }
        }
        (total, lag, tx)
    };
    let ((frame_ns, result_ns, errors, received), (sent, lag, mut tx)) =
        tokio::join!(reader, writer);
    let _ = tx.send(Message::Close(None)).await;
    let mut s = shared.lock().await;
    s.frame_ns.extend(frame_ns);
    s.result_ns.extend(result_ns);
    s.lag_ns.extend(lag);
    for (k, v) in errors {
        *s.errors.entry(k).or_default() += v;
    }
    s.sent += sent;
    s.received += received;
    if sent == total && received == total {
        s.ok += 1;
    }
    Ok(())
}

/// What idle sessions cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleReport {
    /// Sessions opened (configured with an STT provider, then silent).
    pub sessions: usize,
    /// Gateway RSS before, KiB.
    pub rss_before_kib: u64,
    /// Gateway RSS with the sessions open, KiB.
    pub rss_after_kib: u64,
    /// (after − before) / sessions, in bytes.
    pub bytes_per_session: f64,
}

/// Opens `n` configured but silent sessions and measures the gateway's RSS growth.
pub async fn idle(url: &str, n: usize, gateway_pid: u32) -> Result<IdleReport, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ProcSample::read(gateway_pid).map_err(|e| e.to_string())?;
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(url).await?;
        ws.send(Message::text(stt_config(16_000, 5, &[])))
            .await
            .map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => {}
            other => return Err(format!("no ready: {other:?}")),
        }
        open.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ProcSample::read(gateway_pid).map_err(|e| e.to_string())?;
    drop(open);
    Ok(IdleReport {
        sessions: n,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        bytes_per_session: (after.rss_kib.saturating_sub(before.rss_kib) * 1024) as f64
            / n.max(1) as f64,
    })
}
