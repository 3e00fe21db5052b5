//! The TTS phase: `speak` → first audio byte, through the gateway and straight from the provider.

use crate::load::connect;
use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use waav_plugin_api::{
    AudioEncoding, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPlugin, TtsSessionConfig,
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
        let (io, mut peer) = TtsIo::pair(64);
        let task = waav_testkit::LoopbackTts
            .connect(TtsSessionConfig::new(AudioEncoding::Linear16, 16_000), io)
            .await
            .map_err(|e| e.to_string())?;
        let h = tokio::spawn(task);
        let t0 = Instant::now();
        let req = SpeakRequest {
            id: 1,
            text: format!("benchmark sentence number {i}"),
            flush: true,
        };
        peer.input
            .send(TtsInput::Speak(req))
            .await
            .map_err(|e| e.to_string())?;
        while let Some(ev) = peer.events.recv().await {
            if let TtsEvent::Audio { .. } = ev {
                direct.push(t0.elapsed().as_nanos() as u64);
                break;
            }
        }
        drop(peer);
        let _ = h.await;
    }
    Ok(TtsReport {
        gateway_first_byte: Distribution::from_ns(miss),
        cache_hit_first_byte: Distribution::from_ns(hit),
        provider_first_byte: Distribution::from_ns(direct),
    })
}
