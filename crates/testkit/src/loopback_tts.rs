//! Loopback TTS: a sine tone whose length depends on the text, for tests and benchmarks.

use crate::knobs::{Fault, Knobs};
use bytes::Bytes;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, Plugin, PluginError, PluginInfo, ProviderTask,
    SpeakRequest, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

const VOICES: [(&str, &str, f32); 2] = [
    ("tone-a4", "A4 tone", 440.0),
    ("tone-c5", "C5 tone", 523.25),
];

/// Tone length in ms for `text` at `ms_per_char` (at least 20 ms), before the speaking rate.
pub fn tone_ms_for_text(text: &str, ms_per_char: u32) -> u32 {
    (text.chars().count() as u32 * ms_per_char).max(20)
}

/// Speaks each request as a sine tone of [`tone_ms_for_text`] milliseconds (divided by the
/// speaking rate), in chunks of `chunk_ms`. Produces linear16 at 8–48 kHz; the host converts.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackTts;

impl Plugin for LoopbackTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("loopback", "Loopback")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["loopback-tts"])
            .description("Deterministic test TTS (tones)")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .sample_rate_range(8_000, 48_000)
            .voices(VOICES.iter().map(|(id, name, _)| VoiceInfo {
                id: (*id).into(),
                sample: String::new(),
                name: (*name).into(),
                accent: String::new(),
                gender: String::new(),
                language: "en-US".into(),
            }))
            .features(true, true, false, false)
    }
}

fn frequency(config: &TtsSessionConfig) -> Result<f32, PluginError> {
    match config.voice_id.as_str() {
        "" => Ok(VOICES[0].2),
        v => VOICES
            .iter()
            .find(|(id, _, _)| *id == v)
            .map(|(_, _, f)| *f)
            .ok_or_else(|| PluginError::Config(format!("unknown loopback voice {v:?}"))),
    }
}

#[async_trait::async_trait]
impl TtsPlugin for LoopbackTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        let knobs = Knobs::parse(&config.model)?;
        frequency(config)?;
        if config.encoding != AudioEncoding::Linear16 || config.sample_rate == 0 {
            return Err(PluginError::Config(format!(
                "loopback TTS produces linear16, not {} at {} Hz",
                config.encoding, config.sample_rate
            )));
        }
        // Connect-time faults count sessions (`sessions=N`): a provider that recovers.
        knobs.opening_session(&config.model).on_connect().await;
        Ok(())
    }

    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        // `fault=deaf` needs the streaming contract: a session that never reads its input.
        if Knobs::parse(&config.model)?.fault != Fault::Deaf {
            return Ok(None);
        }
        Ok(Some(Box::pin(async move {
            let _io = io;
            std::future::pending::<Result<(), PluginError>>().await
        })))
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let knobs = Knobs::parse(&config.model)?;
        // The host numbers a session's requests from 1, so the id is the request's ordinal.
        if request.id >= u64::from(knobs.after) {
            match knobs.fault {
                Fault::Panic => panic!("loopback TTS: injected panic"),
                Fault::Fatal | Fault::Error => {
                    return Err(PluginError::Permanent(
                        "loopback TTS: injected error".into(),
                    ))
                }
                Fault::Stall => std::future::pending::<()>().await,
                Fault::Mute => return Ok(()),
                Fault::None | Fault::Deaf | Fault::PanicOnConnect | Fault::HangOnConnect => {}
            }
        }
        if !knobs.latency.is_zero() {
            tokio::time::sleep(knobs.latency).await;
        }
        let rate = config.sample_rate;
        let ms = f64::from(tone_ms_for_text(&request.text, knobs.ms_per_char))
            / f64::from(config.speaking_rate.clamp(0.25, 4.0));
        let total = (ms * f64::from(rate) / 1000.0) as usize;
        let chunk = (rate as usize * knobs.chunk_ms as usize / 1000).max(1);
        let step = 2.0 * std::f32::consts::PI * frequency(config)? / rate as f32;
        let chunk_time = std::time::Duration::from_millis(u64::from(knobs.chunk_ms));
        let mut pos = 0;
        while pos < total {
            if knobs.realtime && pos > 0 {
                tokio::time::sleep(chunk_time).await;
            }
            let n = chunk.min(total - pos);
            let mut buf = Vec::with_capacity(n * 2);
            for i in pos..pos + n {
                let s = ((i as f32 * step).sin() * knobs.amplitude as f32) as i16;
                buf.extend_from_slice(&s.to_le_bytes());
            }
            pos += n;
            out.send(Bytes::from(buf)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::{CancelFlag, TtsEvent};

    async fn collect(model: &str, text: &str) -> (usize, Vec<TtsEvent>, Result<(), PluginError>) {
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 8_000).with_model(model);
        LoopbackTts.prepare(&cfg).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let req = SpeakRequest {
            id: 1,
            text: text.into(),
            flush: true,
        };
        let result = LoopbackTts
            .synthesize(&cfg, req, AudioSink::new(1, tx, CancelFlag::new()))
            .await;
        let mut events = Vec::new();
        let mut bytes = 0;
        while let Ok(e) = rx.try_recv() {
            if let TtsEvent::Audio { data, .. } = &e {
                bytes += data.len();
            }
            events.push(e);
        }
        (bytes, events, result)
    }

    #[tokio::test]
    async fn tone_length_follows_text() {
        // 10 chars * 10 ms = 100 ms at 8 kHz = 800 samples, in five 20 ms chunks.
        let (bytes, events, result) = collect("", "0123456789").await;
        result.unwrap();
        assert_eq!(bytes, 1600);
        assert_eq!(events.len(), 5);
    }

    #[tokio::test]
    async fn error_fault_fails_the_request() {
        let (_, events, result) = collect("fault=error", "hi").await;
        assert!(events.is_empty());
        assert!(matches!(result, Err(PluginError::Permanent(_))));
    }

    #[tokio::test]
    async fn refuses_formats_it_does_not_produce() {
        let cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000);
        assert!(LoopbackTts.prepare(&cfg).await.is_err());
    }
}
