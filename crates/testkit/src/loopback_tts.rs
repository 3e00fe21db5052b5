//! Loopback TTS: a sine tone whose length depends on the text, for tests and benchmarks.

use crate::knobs::{Fault, Knobs};
use bytes::Bytes;
use waav_plugin_api::codec::{mulaw_encode, wav_header};
use waav_plugin_api::{
    AudioEncoding, Capabilities, Plugin, PluginError, PluginInfo, ProviderTask, SpeakQueue,
    SpeakRequest, TtsEvent, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
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
/// speaking rate), in chunks of `chunk_ms`. Produces linear16, mulaw or wav at any sample rate.
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
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Wav,
            ])
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

#[async_trait::async_trait]
impl TtsPlugin for LoopbackTts {
    async fn connect(
        &self,
        config: TtsSessionConfig,
        io: TtsIo,
    ) -> Result<ProviderTask, PluginError> {
        let knobs = Knobs::parse(&config.model)?;
        let freq = match config.voice_id.as_str() {
            "" => VOICES[0].2,
            v => VOICES
                .iter()
                .find(|(id, _, _)| *id == v)
                .map(|(_, _, f)| *f)
                .ok_or_else(|| PluginError::Config(format!("unknown loopback voice {v:?}")))?,
        };
        if !matches!(
            config.encoding,
            AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Wav
        ) {
            return Err(PluginError::Config(format!(
                "loopback TTS cannot produce {}",
                config.encoding
            )));
        }
        if config.sample_rate == 0 {
            return Err(PluginError::Config("sample_rate must be positive".into()));
        }
        knobs.on_connect().await;
        Ok(Box::pin(
            Session {
                knobs,
                freq,
                config,
                requests: SpeakQueue::new(io.input),
                events: io.events,
                served: 0,
            }
            .run(),
        ))
    }
}

struct Session {
    knobs: Knobs,
    freq: f32,
    config: TtsSessionConfig,
    requests: SpeakQueue,
    events: tokio::sync::mpsc::Sender<TtsEvent>,
    served: u32,
}

impl Session {
    async fn run(mut self) -> Result<(), PluginError> {
        if self.knobs.fault == Fault::Deaf {
            std::future::pending::<()>().await;
        }
        while let Some(req) = self.requests.next().await {
            self.served += 1;
            if self.served >= self.knobs.after {
                match self.knobs.fault {
                    Fault::Panic => panic!("loopback TTS: injected panic"),
                    Fault::Fatal => {
                        return Err(PluginError::Transient(
                            "loopback TTS: injected fatal error".into(),
                        ))
                    }
                    Fault::Stall => std::future::pending::<()>().await,
                    Fault::Error => {
                        let error = PluginError::Permanent("loopback TTS: injected error".into());
                        if self
                            .events
                            .send(TtsEvent::Error { id: req.id, error })
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                        continue;
                    }
                    Fault::None | Fault::Deaf | Fault::PanicOnConnect | Fault::HangOnConnect => {}
                }
            }
            if !self.speak(&req).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Streams one request; `false` when the host hung up.
    async fn speak(&mut self, req: &SpeakRequest) -> bool {
        if !self.knobs.latency.is_zero() {
            tokio::time::sleep(self.knobs.latency).await;
        }
        let rate = self.config.sample_rate;
        let ms = f64::from(tone_ms_for_text(&req.text, self.knobs.ms_per_char))
            / f64::from(self.config.speaking_rate.clamp(0.25, 4.0));
        let total = (ms * f64::from(rate) / 1000.0) as usize;
        let chunk = (rate as usize * self.knobs.chunk_ms as usize / 1000).max(1);
        let step = 2.0 * std::f32::consts::PI * self.freq / rate as f32;
        let mut pos = 0;
        let mut first = true;
        let chunk_time = std::time::Duration::from_millis(u64::from(self.knobs.chunk_ms));
        while pos < total {
            if self.knobs.realtime && pos > 0 {
                tokio::time::sleep(chunk_time).await;
            }
            if self.requests.is_cancelled(req.id) {
                return true;
            }
            let n = chunk.min(total - pos);
            let samples = (pos..pos + n).map(|i| ((i as f32 * step).sin() * 12_000.0) as i16);
            let mut buf = Vec::with_capacity(n * 2 + 44);
            match self.config.encoding {
                AudioEncoding::Mulaw => buf.extend(samples.map(mulaw_encode)),
                enc => {
                    if first && enc == AudioEncoding::Wav {
                        buf.extend_from_slice(&wav_header(rate, 1, (total * 2) as u32));
                    }
                    for s in samples {
                        buf.extend_from_slice(&s.to_le_bytes());
                    }
                }
            }
            first = false;
            pos += n;
            let ev = TtsEvent::Audio {
                id: req.id,
                data: Bytes::from(buf),
            };
            if self.events.send(ev).await.is_err() {
                return false;
            }
        }
        self.events
            .send(TtsEvent::Done { id: req.id })
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(model: &str, encoding: AudioEncoding, text: &str) -> (usize, Vec<TtsEvent>) {
        let (io, mut peer) = TtsIo::pair(64);
        let cfg = TtsSessionConfig::new(encoding, 8_000).with_model(model);
        let task = LoopbackTts.connect(cfg, io).await.unwrap();
        let h = tokio::spawn(task);
        peer.input
            .send(waav_plugin_api::TtsInput::Speak(SpeakRequest {
                id: 1,
                text: text.into(),
                flush: true,
            }))
            .await
            .unwrap();
        let mut events = Vec::new();
        let mut bytes = 0;
        while let Some(e) = peer.events.recv().await {
            if let TtsEvent::Audio { data, .. } = &e {
                bytes += data.len();
            }
            let done = matches!(e, TtsEvent::Done { .. } | TtsEvent::Error { .. });
            events.push(e);
            if done {
                break;
            }
        }
        drop(peer);
        let _ = h.await;
        (bytes, events)
    }

    #[tokio::test]
    async fn tone_length_follows_text() {
        // 10 chars * 10 ms = 100 ms at 8 kHz = 800 samples.
        let (bytes, events) = collect("", AudioEncoding::Linear16, "0123456789").await;
        assert_eq!(bytes, 1600);
        assert_eq!(events.len(), 6, "five 20 ms chunks then done");
        assert_eq!(events.last(), Some(&TtsEvent::Done { id: 1 }));
        let (bytes, _) = collect("", AudioEncoding::Mulaw, "0123456789").await;
        assert_eq!(bytes, 800);
        let (bytes, _) = collect("", AudioEncoding::Wav, "0123456789").await;
        assert_eq!(bytes, 1644);
    }

    #[tokio::test]
    async fn error_fault_reports_per_request() {
        let (_, events) = collect("fault=error", AudioEncoding::Linear16, "hi").await;
        assert!(matches!(events[0], TtsEvent::Error { id: 1, .. }));
    }
}
