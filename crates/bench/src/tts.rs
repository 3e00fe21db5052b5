//! The TTS phase: `speak` → first audio byte, through the gateway and straight from the provider.

use crate::load::connect;
use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use waav_plugin_api::{
    AudioEncoding, AudioSink, CancelFlag, SpeakRequest, TtsEvent, TtsPlugin, TtsSessionConfig,
};

/// TTS first-byte times.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TtsReport {
    /// Through the gateway, cache miss (provider synthesis).
    pub gateway_first_byte: Distribution,
    /// Through the gateway, cache hit.
    pub cache_hit_first_byte: Distribution,
    /// The loopback provider alone, in process (the floor).
    pub provider_first_byte: Distribution,
}

/// Runs `requests` speak round trips on one session with TTS `provider` (each text twice: miss,
/// then hit). The in-process floor is measured for the loopback provider only.
pub async fn run(url: &str, requests: usize, provider: &str) -> Result<TtsReport, String> {
    let (miss, hit) = run_texts(url, provider, requests, 0).await?;
    let mut direct = Vec::new();
    let floor_runs = if provider == "loopback" { requests } else { 0 };
    for i in 0..floor_runs {
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let t0 = Instant::now();
        let req = SpeakRequest {
            id: 1,
            text: format!("benchmark sentence number {i}"),
            flush: true,
        };
        let out = AudioSink::new(1, tx, CancelFlag::new());
        let synth = waav_testkit::LoopbackTts.synthesize(&cfg, req, out);
        tokio::pin!(synth);
        tokio::select! {
            r = &mut synth => r.map_err(|e| e.to_string())?,
            Some(TtsEvent::Audio { .. }) = rx.recv() => direct.push(t0.elapsed().as_nanos() as u64),
        }
    }
    Ok(TtsReport {
        gateway_first_byte: Distribution::from_ns(miss),
        cache_hit_first_byte: Distribution::from_ns(hit),
        provider_first_byte: Distribution::from_ns(direct),
    })
}

/// `n` speak round trips on one new session with TTS `provider`, texts numbered from `first`,
/// each text twice; returns first-byte times in ns (misses, hits).
async fn run_texts(
    url: &str,
    provider: &str,
    n: usize,
    first: usize,
) -> Result<(Vec<u64>, Vec<u64>), String> {
    let mut ws = connect(url).await?;
    let cfg = serde_json::json!({"type":"config","tts_config":{"provider":provider,"model":"","audio_format":"linear16","sample_rate":16000}});
    ws.send(Message::text(cfg.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => {}
        other => return Err(format!("no ready: {other:?}")),
    }
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    for i in first..first + n {
        let text = format!("benchmark sentence number {i}");
        for sink in [&mut miss, &mut hit] {
            let speak = serde_json::json!({"type":"speak","text":text});
            let t0 = Instant::now();
            ws.send(Message::text(speak.to_string()))
                .await
                .map_err(|e| e.to_string())?;
            let mut first = None;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .map_err(|_| "no answer within 10 s".to_owned())?;
                match msg {
                    Some(Ok(Message::Binary(_))) => {
                        first.get_or_insert_with(|| t0.elapsed());
                    }
                    Some(Ok(Message::Text(t))) if t.contains("tts_playback_complete") => break,
                    Some(Ok(Message::Text(t))) => return Err(format!("unexpected: {t}")),
                    Some(Ok(_)) => {}
                    _ => return Err("socket closed".into()),
                }
            }
            sink.push(first.ok_or("no audio")?.as_nanos() as u64);
        }
    }
    let _ = ws.send(Message::Close(None)).await;
    Ok((miss, hit))
}

/// TTS first byte via a streaming vendor (Deepgram's speak WebSocket fake over a real socket):
/// through the gateway, from the fake directly, and the difference.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VendorTtsReport {
    /// `speak` → first binary frame through the gateway, cache miss (the vendor synthesises).
    pub gateway_first_byte: Distribution,
    /// The same text again: a cache hit, the vendor not involved.
    pub cache_hit_first_byte: Distribution,
    /// `Speak` + `Flush` → first binary frame, the bench as the fake's own client (same texts,
    /// one socket kept open, as the plugin does).
    pub vendor_first_byte: Distribution,
    /// Gateway miss minus vendor direct, at p50, µs.
    pub added_p50_us: f64,
    /// Gateway miss minus vendor direct, at p99, µs.
    pub added_p99_us: f64,
}

/// `requests` first-byte round trips straight to the Deepgram speak WebSocket at `base_url`
/// (`http://…`; the socket is `ws://…/v1/speak`), 16 kHz linear16, one socket, same texts as
/// [`run`] uses.
pub async fn deepgram_direct(
    base_url: &str,
    api_key: &str,
    requests: usize,
) -> Result<Distribution, String> {
    deepgram_direct_raw(base_url, api_key, requests, 0)
        .await
        .map(Distribution::from_ns)
}

async fn deepgram_direct_raw(
    base_url: &str,
    api_key: &str,
    requests: usize,
    first: usize,
) -> Result<Vec<u64>, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_base = base_url.replacen("http", "ws", 1);
    let url = format!(
        "{}/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=16000",
        ws_base.trim_end_matches('/')
    );
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Token {api_key}")
            .parse()
            .map_err(|_| "bad key".to_owned())?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        req,
        Some(crate::load::client_ws_config()),
        true,
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let mut out = Vec::with_capacity(requests);
    for i in first..first + requests {
        let speak =
            serde_json::json!({"type":"Speak","text":format!("benchmark sentence number {i}")});
        let t0 = Instant::now();
        ws.send(Message::text(speak.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        ws.send(Message::text(r#"{"type":"Flush"}"#))
            .await
            .map_err(|e| e.to_string())?;
        let mut first = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| "no answer within 10 s".to_owned())?;
            match msg {
                Some(Ok(Message::Binary(_))) => {
                    first.get_or_insert_with(|| t0.elapsed());
                }
                Some(Ok(Message::Text(t))) if t.contains("\"Flushed\"") => break,
                Some(Ok(Message::Text(t))) if t.contains("\"Metadata\"") => {}
                Some(Ok(Message::Text(t))) => return Err(format!("unexpected: {t}")),
                Some(Ok(_)) => {}
                _ => return Err("socket closed".into()),
            }
        }
        out.push(first.ok_or("no audio")?.as_nanos() as u64);
    }
    let _ = ws.send(Message::text(r#"{"type":"Close"}"#)).await;
    Ok(out)
}

/// Through the gateway at `url` (TTS provider `deepgram`, configured against the fake at
/// `base_url`), then directly against the fake, `requests` each; the runs alternate in blocks
/// of 50 so drift in machine load hits both alike.
pub async fn run_vendor(
    url: &str,
    base_url: &str,
    api_key: &str,
    requests: usize,
) -> Result<VendorTtsReport, String> {
    let (mut miss, mut hit, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    let mut block = 0;
    while done < requests {
        let n = (requests - done).min(50);
        // Distinct texts per block: each gateway block starts on cache misses.
        let g = run_texts(url, "deepgram", n, block * 50).await?;
        miss.extend(g.0);
        hit.extend(g.1);
        direct.extend(deepgram_direct_raw(base_url, api_key, n, block * 50).await?);
        done += n;
        block += 1;
    }
    let (m, h, d) = (
        Distribution::from_ns(miss),
        Distribution::from_ns(hit),
        Distribution::from_ns(direct),
    );
    Ok(VendorTtsReport {
        added_p50_us: m.p50_us - d.p50_us,
        added_p99_us: m.p99_us - d.p99_us,
        gateway_first_byte: m,
        cache_hit_first_byte: h,
        vendor_first_byte: d,
    })
}
