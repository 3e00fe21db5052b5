//! The TTS phase: `speak` → first audio byte, through the gateway and straight from the provider.

use crate::load::connect;
use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Instant;
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
    let mut ws = connect(url).await?;
    let cfg = serde_json::json!({"type":"config","tts_config":{"provider":provider,"model":"","audio_format":"linear16","sample_rate":16000}});
    ws.send(Message::text(cfg.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => {}
        other => return Err(format!("no ready: {other:?}")),
    }
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    for i in 0..requests {
        let text = format!("benchmark sentence number {i}");
        for sink in [&mut miss, &mut hit] {
            let speak = serde_json::json!({"type":"speak","text":text});
            let t0 = Instant::now();
            ws.send(Message::text(speak.to_string()))
                .await
                .map_err(|e| e.to_string())?;
            let mut first = None;
            loop {
                match ws.next().await {
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
