//! What a plugin can do, as data the core validates client configs against.

use crate::AudioEncoding;
use serde::{Deserialize, Serialize};

/// A model a provider offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The id clients put in `model`.
    pub id: String,
    /// A readable name.
    pub name: String,
    /// Languages (BCP-47) the model supports; empty means see [`Capabilities::languages`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
}

impl ModelInfo {
    /// A model with an id and a name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            languages: Vec::new(),
        }
    }
}

/// A TTS voice, in the shape `GET /voices` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceInfo {
    /// The id clients put in `voice_id`.
    pub id: String,
    /// A URL or short description of a sample, or empty.
    pub sample: String,
    /// A readable name.
    pub name: String,
    /// Accent, or empty.
    pub accent: String,
    /// Gender, or empty.
    pub gender: String,
    /// Language (BCP-47), or empty.
    pub language: String,
}

/// Capabilities of a provider plugin. Empty lists mean "not restricted" (or not declared).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Models offered; a client's non-empty `model` must be one of these when the list is non-empty.
    pub models: Vec<ModelInfo>,
    /// Voices offered (TTS).
    pub voices: Vec<VoiceInfo>,
    /// Languages (BCP-47).
    pub languages: Vec<String>,
    /// Audio encodings accepted (STT) or produced (TTS), preferred first. The host converts
    /// between these and the client's format (G.711, resampling, channel mix, WAV framing).
    pub encodings: Vec<AudioEncoding>,
    /// Most interleaved channels accepted (STT); 0 means any. The host mixes down to fit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_channels: u16,
    /// Sample rates accepted or produced.
    pub sample_rates: Vec<u32>,
    /// The range of sample rates accepted or produced, inclusive, for providers that take any
    /// rate within bounds (they resample). Checked along with [`Capabilities::sample_rates`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate_range: Option<(u32, u32)>,
    /// Results stream while audio is still arriving.
    pub streaming: bool,
    /// Whole-request (non-streaming) operation is supported.
    pub batch: bool,
    /// Interim (non-final) results are produced.
    pub interim_results: bool,
    /// Word-level timings are produced.
    pub word_timings: bool,
}

impl Capabilities {
    /// Empty capabilities, to be filled with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the models.
    pub fn models(mut self, models: impl IntoIterator<Item = ModelInfo>) -> Self {
        self.models = models.into_iter().collect();
        self
    }

    /// Sets the voices.
    pub fn voices(mut self, voices: impl IntoIterator<Item = VoiceInfo>) -> Self {
        self.voices = voices.into_iter().collect();
        self
    }

    /// Sets the languages.
    pub fn languages<S: Into<String>>(mut self, langs: impl IntoIterator<Item = S>) -> Self {
        self.languages = langs.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the encodings.
    pub fn encodings(mut self, encodings: impl IntoIterator<Item = AudioEncoding>) -> Self {
        self.encodings = encodings.into_iter().collect();
        self
    }

    /// Sets the most channels accepted.
    pub fn max_channels(mut self, channels: u16) -> Self {
        self.max_channels = channels;
        self
    }

    /// Whether `rate` passes [`Capabilities::check_sample_rate`].
    pub fn accepts_rate(&self, rate: u32) -> bool {
        self.check_sample_rate(rate).is_ok()
    }

    /// Whether `encoding` passes [`Capabilities::check_encoding`].
    pub fn accepts_encoding(&self, encoding: AudioEncoding) -> bool {
        self.check_encoding(encoding).is_ok()
    }

    /// Sets the sample rates.
    pub fn sample_rates(mut self, rates: impl IntoIterator<Item = u32>) -> Self {
        self.sample_rates = rates.into_iter().collect();
        self
    }

    /// Sets the range of sample rates, inclusive.
    pub fn sample_rate_range(mut self, min: u32, max: u32) -> Self {
        self.sample_rate_range = Some((min, max));
        self
    }

    /// Sets the streaming, batch, interim-results and word-timings flags.
    pub fn features(mut self, streaming: bool, batch: bool, interim: bool, words: bool) -> Self {
        self.streaming = streaming;
        self.batch = batch;
        self.interim_results = interim;
        self.word_timings = words;
        self
    }

    /// Checks a requested model id; empty means the provider default.
    pub fn check_model(&self, model: &str) -> Result<(), String> {
        check_in(
            "model",
            model,
            self.models.iter().map(|m| m.id.as_str()),
            self.models.is_empty(),
        )
    }

    /// Checks a requested voice id; empty means the provider default.
    pub fn check_voice(&self, voice: &str) -> Result<(), String> {
        check_in(
            "voice",
            voice,
            self.voices.iter().map(|v| v.id.as_str()),
            self.voices.is_empty(),
        )
    }

    /// Checks an encoding against the declared list.
    pub fn check_encoding(&self, encoding: AudioEncoding) -> Result<(), String> {
        if self.encodings.is_empty() || self.encodings.contains(&encoding) {
            return Ok(());
        }
        let list: Vec<_> = self.encodings.iter().map(|e| e.as_str()).collect();
        Err(format!(
            "unsupported encoding {encoding:?}; supported: {}",
            list.join(", ")
        ))
    }

    /// Checks a sample rate against the declared range and list.
    pub fn check_sample_rate(&self, rate: u32) -> Result<(), String> {
        if let Some((min, max)) = self
            .sample_rate_range
            .filter(|(a, b)| !(a..=b).contains(&&rate))
        {
            return Err(format!(
                "unsupported sample rate {rate}; supported: {min}–{max} Hz"
            ));
        }
        if self.sample_rates.is_empty() || self.sample_rates.contains(&rate) {
            return Ok(());
        }
        let list: Vec<_> = self.sample_rates.iter().map(u32::to_string).collect();
        Err(format!(
            "unsupported sample rate {rate}; supported: {}",
            list.join(", ")
        ))
    }
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn check_in<'a>(
    what: &str,
    value: &str,
    ids: impl Iterator<Item = &'a str>,
    unrestricted: bool,
) -> Result<(), String> {
    if value.is_empty() || unrestricted {
        return Ok(());
    }
    let ids: Vec<&str> = ids.collect();
    if ids.iter().any(|id| id.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(format!(
            "unknown {what} {value:?}; supported: {}",
            ids.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lists_supported_ids() {
        let caps = Capabilities::new()
            .models([
                ModelInfo::new("nova-3", "Nova 3"),
                ModelInfo::new("base", "Base"),
            ])
            .encodings([AudioEncoding::Linear16])
            .sample_rates([16_000]);
        assert!(caps.check_model("").is_ok());
        assert!(caps.check_model("NOVA-3").is_ok());
        let e = caps.check_model("nova-9").unwrap_err();
        assert!(e.contains("nova-3, base"), "{e}");
        assert!(caps.check_voice("anything").is_ok());
        assert!(caps.check_encoding(AudioEncoding::Mulaw).is_err());
        assert!(caps.check_sample_rate(8_000).is_err());
        assert!(Capabilities::new().check_sample_rate(8_000).is_ok());
        let ranged = Capabilities::new().sample_rate_range(8_000, 48_000);
        assert!(ranged.check_sample_rate(11_025).is_ok());
        let e = ranged.check_sample_rate(96_000).unwrap_err();
        assert!(e.contains("8000–48000"), "{e}");
    }
}
