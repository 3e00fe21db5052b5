//! `waav-gateway transcribe FILE.wav` and `waav-gateway speak TEXT -o OUT.wav`: try a provider
//! from the command line, through the same plugins, registry and isolation as the server.

use crate::config::GatewayConfig;
use crate::isolation::{guard, spawn_supervised};
use crate::registry::Registry;
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;
use waav_plugin_api::codec::wav_header;
use waav_plugin_api::{
    AudioEncoding, PluginContext, SpeakRequest, SttEvent, SttInput, SttIo, SttSessionConfig,
    TtsEvent, TtsInput, TtsIo, TtsSessionConfig,
};

const CONNECT: Duration = Duration::from_secs(30);

async fn registry(config: &GatewayConfig) -> Result<Registry, String> {
    let registry = Registry::build(&config.plugins).map_err(|e| e.to_string())?;
    registry
        .init_all(&PluginContext::new(env!("CARGO_PKG_VERSION")))
        .await;
    Ok(registry)
}

/// Transcribes a PCM16 WAV file; returns the final transcripts, one per line.
pub async fn transcribe(
    config: &GatewayConfig,
    file: &Path,
    provider: &str,
    model: &str,
    mut on_interim: impl FnMut(&str),
) -> Result<String, String> {
    let mut reader =
        hound::WavReader::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format!(
            "{}: expected 16-bit PCM WAV, found {} bits {:?}",
            file.display(),
            spec.bits_per_sample,
            spec.sample_format
        ));
    }
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let registry = registry(config).await?;
    let p = registry.stt(provider, None).map_err(|e| e.to_string())?;
    let cfg = SttSessionConfig::new("en-US", spec.sample_rate)
        .with_model(model)
        .with_format(AudioEncoding::Linear16, spec.channels)
        .with_api_key(p.api_key.clone())
        .with_plugin_config(p.entry.plugin_config());
    let (io, peer) = SttIo::pair(64);
    let task = guard("connect", CONNECT, p.plugin.connect(cfg, io))
        .await
        .map_err(|e| format!("{provider}: {e}"))?;
    let handle = spawn_supervised(task);
    let frame = (spec.sample_rate as usize / 50) * usize::from(spec.channels);
    let feed = async move {
        for chunk in samples.chunks(frame.max(1)) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            if peer
                .input
                .send(SttInput::Audio(Bytes::from(bytes)))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = peer.input.send(SttInput::Finalize).await;
        peer.events
    };
    let mut events = feed.await;
    let mut out = String::new();
    while let Some(ev) = events.recv().await {
        match ev {
            SttEvent::Transcript(t) if t.is_final && !t.text.trim().is_empty() => {
                out.push_str(t.text.trim());
                out.push('\n');
            }
            SttEvent::Transcript(t) if !t.is_final => on_interim(&t.text),
            SttEvent::Error(e) => return Err(format!("{provider}: {e}")),
            _ => {}
        }
    }
    handle
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{provider}: {e}"))?;
    registry.shutdown_all().await;
    Ok(out)
}

/// Synthesises `text` into a WAV file at `sample_rate`; returns the audio duration in seconds.
pub async fn speak(
    config: &GatewayConfig,
    text: &str,
    out: &Path,
    provider: &str,
    voice: &str,
    sample_rate: u32,
) -> Result<f64, String> {
    let registry = registry(config).await?;
    let p = registry.tts(provider, None).map_err(|e| e.to_string())?;
    let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, sample_rate)
        .with_voice(voice)
        .with_api_key(p.api_key.clone())
        .with_plugin_config(p.entry.plugin_config());
    let (io, mut peer) = TtsIo::pair(64);
    let task = guard("connect", CONNECT, p.plugin.connect(cfg, io))
        .await
        .map_err(|e| format!("{provider}: {e}"))?;
    let handle = spawn_supervised(task);
    let req = SpeakRequest {
        id: 1,
        text: text.to_owned(),
        flush: true,
    };
    peer.input
        .send(TtsInput::Speak(req))
        .await
        .map_err(|_| format!("{provider}: session ended"))?;
    let mut pcm = Vec::new();
    loop {
        match peer.events.recv().await {
            Some(TtsEvent::Audio { data, .. }) => pcm.extend_from_slice(&data),
            Some(TtsEvent::Done { .. }) => break,
            Some(TtsEvent::Error { error, .. }) => return Err(format!("{provider}: {error}")),
            None => {
                let result = handle.await.map_err(|e| e.to_string())?;
                return Err(format!("{provider}: session ended early: {result:?}"));
            }
        }
    }
    drop(peer);
    let mut file = wav_header(sample_rate, 1, pcm.len() as u32).to_vec();
    file.extend_from_slice(&pcm);
    std::fs::write(out, file).map_err(|e| format!("{}: {e}", out.display()))?;
    registry.shutdown_all().await;
    Ok(pcm.len() as f64 / 2.0 / f64::from(sample_rate))
}
