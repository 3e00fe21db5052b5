//! `waav-gateway transcribe FILE.wav` and `waav-gateway speak TEXT -o OUT.wav`: try a provider
//! from the command line, through the same plugins, registry and isolation as the server.

use crate::audio::{negotiate, Bridge};
use crate::config::GatewayConfig;
use crate::isolation::{guard, spawn_supervised};
use crate::registry::Registry;
use crate::session::protocol::TtsConfig;
use crate::session::tts::{TtsProvider, TtsSignal};
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;
use waav_plugin_api::codec::wav_header;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, PluginContext, SpeakRequest, SttEvent, SttInput, SttIo,
    SttSessionConfig, TtsEvent, TtsInput,
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
    // The same conversion as a session: the file's format into one the provider takes.
    let client = AudioFormat {
        encoding: AudioEncoding::Linear16,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    };
    let taken = negotiate::stt_input(&p.entry.capabilities(), client)
        .map_err(|e| format!("{provider}: {e}"))?;
    let mut bridge = Bridge::build(client, taken, 0)
        .await
        .map_err(|e| format!("{provider}: {e}"))?;
    let cfg = SttSessionConfig::new("en-US", taken.sample_rate)
        .with_model(model)
        .with_format(taken.encoding, taken.channels)
        .with_api_key(p.api_key.clone())
        .with_plugin_config(p.entry.plugin_config());
    let (io, peer) = SttIo::pair(64);
    let task = guard("connect", CONNECT, p.plugin.connect(cfg, io))
        .await
        .map_err(|e| format!("{provider}: {e}"))?;
    let handle = spawn_supervised(task);
    let frame = (spec.sample_rate as usize / 50) * usize::from(spec.channels);
    let feed = async move {
        let mut converted = Vec::new();
        'feed: for (i, chunk) in samples.chunks(frame.max(1)).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            bridge.push(Bytes::from(bytes), &mut |c| converted.push(c));
            if (i + 1) * frame.max(1) >= samples.len() {
                bridge.flush(&mut |c| converted.push(c));
            }
            for c in converted.drain(..) {
                if peer.input.send(SttInput::Audio(c)).await.is_err() {
                    break 'feed;
                }
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
    let cfg: TtsConfig = serde_json::from_value(serde_json::json!({
        "provider": provider,
        "voice_id": voice,
        "audio_format": "linear16",
        "sample_rate": sample_rate,
    }))
    .map_err(|e| e.to_string())?;
    let mut p = TtsProvider::open(&registry, &cfg, CONNECT, 4, 20)
        .await
        .map_err(|e| format!("{provider}: {e}"))?;
    let req = SpeakRequest {
        id: 1,
        text: text.to_owned(),
        flush: true,
    };
    p.send(TtsInput::Speak(req), CONNECT)
        .await
        .map_err(|_| format!("{provider}: session ended"))?;
    let mut pcm = Vec::new();
    let mut keep = |f: Bytes| pcm.extend_from_slice(&f);
    loop {
        match p.next().await {
            TtsSignal::Event(TtsEvent::Audio { data, .. }) => p.audio.push(data, &mut keep),
            TtsSignal::Event(TtsEvent::Done { .. }) => {
                p.audio.flush(&mut keep);
                break;
            }
            TtsSignal::Event(TtsEvent::Error { error, .. }) => {
                return Err(format!("{provider}: {error}"))
            }
            TtsSignal::Ended(result) => {
                return Err(format!("{provider}: session ended early: {result:?}"));
            }
        }
    }
    p.close(Duration::from_secs(1)).await;
    let mut file = wav_header(sample_rate, 1, pcm.len() as u32).to_vec();
    file.extend_from_slice(&pcm);
    std::fs::write(out, file).map_err(|e| format!("{}: {e}", out.display()))?;
    registry.shutdown_all().await;
    Ok(pcm.len() as f64 / 2.0 / f64::from(sample_rate))
}
