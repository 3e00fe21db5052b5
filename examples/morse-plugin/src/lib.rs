//! A third-party-style plugin: a TTS provider `morse` that keys text as Morse code tones.
//!
//! It depends on `waav-plugin-api` only and registers itself with one macro call. A gateway build
//! that links this crate (see `examples/morse-gateway`) offers it everywhere: `/ws`,
//! `/speak`, `/voices`, `/plugins` and `waav-gateway plugins`. No file of the gateway changes.

use bytes::Bytes;
use waav_plugin_api::{
    register_plugin, AudioEncoding, AudioSink, Capabilities, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
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
            .encodings([AudioEncoding::Linear16])
            .sample_rate_range(8_000, 48_000)
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
        let unit = config
            .u64("unit_ms")?
            .unwrap_or(60)
            .min(u64::from(u32::MAX)) as u32;
        if !(50.0..=4000.0).contains(&hz) || !(1..=1000).contains(&unit) {
            return Err(PluginError::Config(format!(
                "{}: tone_hz must be 50–4000 and unit_ms 1–1000",
                config.path()
            )));
        }
        let _ = self.settings.set((hz, unit));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for MorsePlugin {
    /// Keys one request as linear16 at the rate the host chose; the host does the rest
    /// (queueing, `clear`, pronunciations, conversion to the client's format, framing).
    async fn synthesize(
        &self,
        cfg: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (hz, unit_ms) = self.settings.get().copied().unwrap_or((600.0, 60));
        let mut keyer = Keyer::new(&request.text, hz, unit_ms, cfg.sample_rate);
        // 100 ms per chunk: the work between two awaits stays small however long the text is.
        let chunk = (cfg.sample_rate / 10).max(1) as usize;
        let mut part = Vec::with_capacity(chunk);
        while keyer.fill(&mut part, chunk) {
            let data: Vec<u8> = part.iter().flat_map(|s| s.to_le_bytes()).collect();
            out.send(Bytes::from(data)).await?;
        }
        Ok(())
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
    let mut keyer = Keyer::new(text, hz, unit_ms, rate);
    let (mut out, mut part) = (Vec::new(), Vec::new());
    while keyer.fill(&mut part, 4096) {
        out.extend_from_slice(&part);
    }
    out
}

/// Produces the samples of [`key`] lazily, a chunk at a time, so a long text costs neither
/// memory nor a long stretch of CPU at once.
struct Keyer<'a> {
    chars: std::str::Chars<'a>,
    in_word: bool,
    /// (on, units) runs of the current character, consumed from the front.
    runs: std::collections::VecDeque<(bool, usize)>,
    /// Samples left in the current run.
    left: usize,
    on: bool,
    unit: usize,
    phase: f32,
    step: f32,
}

impl<'a> Keyer<'a> {
    fn new(text: &'a str, hz: f32, unit_ms: u32, rate: u32) -> Self {
        Self {
            chars: text.chars(),
            in_word: false,
            runs: std::collections::VecDeque::new(),
            left: 0,
            on: false,
            unit: (rate as usize * unit_ms as usize) / 1000,
            phase: 0.0,
            step: 2.0 * std::f32::consts::PI * hz / rate.max(1) as f32,
        }
    }

    /// Replaces `out` with up to `max` next samples; `false` when the text is done.
    fn fill(&mut self, out: &mut Vec<i16>, max: usize) -> bool {
        out.clear();
        while out.len() < max {
            if self.left == 0 {
                let Some((on, units)) = self.next_run() else {
                    break;
                };
                (self.on, self.left) = (on, units * self.unit);
                continue;
            }
            let n = self.left.min(max - out.len());
            for _ in 0..n {
                let s = if self.on {
                    self.phase.sin() * 10_000.0
                } else {
                    0.0
                };
                out.push(s as i16);
                self.phase = (self.phase + self.step) % (2.0 * std::f32::consts::PI);
            }
            self.left -= n;
        }
        !out.is_empty()
    }

    fn next_run(&mut self) -> Option<(bool, usize)> {
        while self.runs.is_empty() {
            let Some(c) = self.chars.next() else {
                // The text ends a word too.
                if std::mem::take(&mut self.in_word) {
                    self.runs.push_back((false, 4));
                    continue;
                }
                return None;
            };
            if c.is_whitespace() {
                if std::mem::take(&mut self.in_word) {
                    self.runs.push_back((false, 4));
                }
                continue;
            }
            self.in_word = true;
            let Some(symbols) = code(c) else { continue };
            for (i, sym) in symbols.chars().enumerate() {
                if i > 0 {
                    self.runs.push_back((false, 1));
                }
                self.runs.push_back((true, if sym == '.' { 1 } else { 3 }));
            }
            self.runs.push_back((false, 3));
        }
        self.runs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms_to_the_tts_contract() {
        use waav_plugin_api::{AudioEncoding, TtsSessionConfig};
        use waav_testkit::conformance::{check_tts, TtsFixture};
        let plugin = super::MorsePlugin::default();
        let session = TtsSessionConfig::new(AudioEncoding::Linear16, 8_000);
        check_tts(&plugin, &TtsFixture::new(session))
            .await
            .assert_ok();
    }

    #[test]
    fn sos_has_the_right_length() {
        // S = 5 units, gap 3, O = 11, gap 3, S = 5, gap 3, word gap 4 → 34 units.
        assert_eq!(super::key("SOS", 600.0, 10, 1000).len(), 340);
        assert!(
            super::key("?!", 600.0, 10, 1000).len() == 40,
            "unknown characters are skipped"
        );
    }

    #[test]
    fn long_text_is_keyed_a_chunk_at_a_time() {
        // Fully keyed this would be ~2 days of audio at 192 kHz (tens of GB).
        let text = "0".repeat(100 * 1024);
        let mut keyer = super::Keyer::new(&text, 600.0, 1000, 192_000);
        let mut part = Vec::new();
        for _ in 0..3 {
            assert!(keyer.fill(&mut part, 19_200));
            assert_eq!(part.len(), 19_200);
        }
        assert!(keyer.runs.len() <= 10, "one character's runs at a time");
    }
}
