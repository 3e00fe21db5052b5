//! A third-party-style plugin: a TTS provider `morse` that keys text as Morse code tones.
//!
//! It depends on `waav-plugin-api` only and registers itself with one macro call. A gateway build
//! that links this crate (see `src/bin/waav-gateway-morse.rs`) offers it everywhere: `/ws`,
//! `/speak`, `/voices`, `/plugins` and `waav-gateway plugins`. No file of the gateway changes.

use bytes::Bytes;
use waav_plugin_api::codec::mulaw_encode;
use waav_plugin_api::{
    register_plugin, AudioEncoding, Capabilities, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, SpeakQueue, TtsEvent, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

/// The Morse TTS plugin. Config: `tone_hz` (default 600), `unit_ms` (one dot, default 60).
#[derive(Debug, Default)]
pub struct MorsePlugin {
    settings: std::sync::OnceLock<(f32, u32)>,
}

register_plugin!(Tts, MorsePlugin::default());

#[async_trait::async_trait]
impl Plugin for MorsePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("morse", "Morse Code")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["cw"])
            .description("Example third-party plugin: text keyed as Morse code")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mulaw])
            .voices([VoiceInfo {
                id: "cw".into(),
                sample: String::new(),
                name: "Continuous wave".into(),
                accent: String::new(),
                gender: String::new(),
                language: "en".into(),
            }])
            .features(true, true, false, false)
    }

    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let hz = config.f64("tone_hz")?.unwrap_or(600.0) as f32;
        let unit = config.u64("unit_ms")?.unwrap_or(60) as u32;
        if !(50.0..=4000.0).contains(&hz) || unit == 0 {
            return Err(PluginError::Config(format!(
                "{}: tone_hz must be 50–4000 and unit_ms positive",
                config.path()
            )));
        }
        let _ = self.settings.set((hz, unit));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for MorsePlugin {
    async fn connect(&self, cfg: TtsSessionConfig, io: TtsIo) -> Result<ProviderTask, PluginError> {
        if !matches!(cfg.encoding, AudioEncoding::Linear16 | AudioEncoding::Mulaw) {
            return Err(PluginError::Config(format!(
                "morse cannot produce {}",
                cfg.encoding
            )));
        }
        let (hz, unit_ms) = self.settings.get().copied().unwrap_or((600.0, 60));
        Ok(Box::pin(async move {
            let TtsIo { input, events } = io;
            let mut requests = SpeakQueue::new(input);
            while let Some(req) = requests.next().await {
                let samples = key(&req.text, hz, unit_ms, cfg.sample_rate);
                // One chunk per 100 ms keeps frames small enough to stream.
                let chunk = (cfg.sample_rate / 10).max(1) as usize;
                for part in samples.chunks(chunk) {
                    if requests.is_cancelled(req.id) {
                        break;
                    }
                    let data: Vec<u8> = match cfg.encoding {
                        AudioEncoding::Mulaw => part.iter().map(|&s| mulaw_encode(s)).collect(),
                        _ => part.iter().flat_map(|s| s.to_le_bytes()).collect(),
                    };
                    let ev = TtsEvent::Audio {
                        id: req.id,
                        data: Bytes::from(data),
                    };
                    if events.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
                if events.send(TtsEvent::Done { id: req.id }).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }))
    }
}

/// International Morse code for letters and digits.
fn code(c: char) -> Option<&'static str> {
    const LETTERS: [&str; 26] = [
        ".-", "-...", "-.-.", "-..", ".", "..-.", "--.", "....", "..", ".---", "-.-", ".-..", "--",
        "-.", "---", ".--.", "--.-", ".-.", "...", "-", "..-", "...-", ".--", "-..-", "-.--",
        "--..",
    ];
    const DIGITS: [&str; 10] = [
        "-----", ".----", "..---", "...--", "....-", ".....", "-....", "--...", "---..", "----.",
    ];
    match c.to_ascii_lowercase() {
        l @ 'a'..='z' => Some(LETTERS[(l as u8 - b'a') as usize]),
        d @ '0'..='9' => Some(DIGITS[(d as u8 - b'0') as usize]),
        _ => None,
    }
}

/// Keys `text` as PCM16 samples: dot 1 unit, dash 3, gaps 1 / 3 (letters) / 7 (words).
pub fn key(text: &str, hz: f32, unit_ms: u32, rate: u32) -> Vec<i16> {
    let unit = (rate as usize * unit_ms as usize) / 1000;
    let mut out = Vec::new();
    let tone = |units: usize, on: bool, out: &mut Vec<i16>| {
        let start = out.len();
        out.extend((0..units * unit).map(|i| {
            if on {
                let t = (start + i) as f32 / rate as f32;
                ((2.0 * std::f32::consts::PI * hz * t).sin() * 10_000.0) as i16
            } else {
                0
            }
        }));
    };
    for word in text.split_whitespace() {
        for c in word.chars().filter_map(code) {
            for (i, sym) in c.chars().enumerate() {
                if i > 0 {
                    tone(1, false, &mut out);
                }
                tone(if sym == '.' { 1 } else { 3 }, true, &mut out);
            }
            tone(3, false, &mut out);
        }
        tone(4, false, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sos_has_the_right_length() {
        // S = 5 units, gap 3, O = 11, gap 3, S = 5, gap 3, word gap 4 → 34 units.
        assert_eq!(super::key("SOS", 600.0, 10, 1000).len(), 340);
        assert!(
            super::key("?!", 600.0, 10, 1000).len() == 40,
            "unknown characters are skipped"
        );
    }
}
