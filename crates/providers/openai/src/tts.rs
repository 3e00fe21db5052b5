//! OpenAI text-to-speech (`POST /v1/audio/speech`), plugin id `openai` (TTS).
//!
//! Request (`TTS_PROTOCOLS.md` §6; openai-python `types/audio/speech_create_params.py`,
//! `speech_model.py`, `resources/audio/speech.py` posting JSON to `/audio/speech`):
//! `{"model", "input" (≤ 4096 characters), "voice" (a built-in name, or `{"id": "voice_…"}` for
//! a custom voice), "response_format" (mp3|opus|aac|flac|wav|pcm), "speed" (0.25–4.0),
//! "instructions" (not for tts-1 / tts-1-hd)}` with `Authorization: Bearer <key>` and the
//! optional `OpenAI-Organization` / `OpenAI-Project` headers. The default `stream_format`
//! (`audio`) returns the audio bytes over chunked transfer encoding, which are forwarded into
//! the sink as they arrive.
//!
//! Formats declared: `pcm` (raw 24 kHz 16-bit mono little-endian, no header: Linear16 @ 24000;
//! the rate is widely documented but UNCONFIRMED from a primary source), and `mp3` / `opus`
//! (Ogg Opus) for passthrough at the same rate. `wav` is never asked for (the host adds
//! headers itself); `aac`/`flac` have no passthrough use.
//!
//! Controls: `cfg.speaking_rate` → `speed` (clamped to 0.25–4.0); `cfg.emotion` → a sentence
//! in `instructions` (gpt-4o-mini-tts models only; ignored with a debug log for tts-1/-hd),
//! after the plugin config's own `instructions` if any. OpenAI reports no word timings.
//!
//! OpenAI has no voice-list endpoint: the documented built-in voices are declared in the
//! capabilities and `voices()` returns them without a network call.
//!
//! Config section (all optional): `base_url` (default `https://api.openai.com`), `model`
//! (default `gpt-4o-mini-tts`), `voice` (default `alloy`), `instructions`, `organization`,
//! `project`, `connect_timeout_ms` (10000), `read_timeout_ms` (30000: the response head and
//! each body chunk).

use crate::common::{self, AccountHeaders, ClientSlot, Subject};
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, Emotion, ModelInfo, Plugin,
    PluginConfig, PluginError, PluginInfo, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::audio::{expect_audio, stream_into, StreamEnd};

const CONTEXT: &str = "openai tts";
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "OPENAI_API_KEY")];

/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini-tts";
/// The default voice.
pub const DEFAULT_VOICE: &str = "alloy";
/// The rate of every format OpenAI produces (`pcm` is 24 kHz).
pub const SAMPLE_RATE: u32 = 24_000;
/// Most characters of `input` per request (speech_create_params.py).
pub const MAX_INPUT_CHARS: usize = 4096;

/// Models (speech_model.py).
pub const MODELS: &[(&str, &str)] = &[
    ("gpt-4o-mini-tts", "GPT-4o mini TTS"),
    ("gpt-4o-mini-tts-2025-12-15", "GPT-4o mini TTS (2025-12-15)"),
    ("tts-1", "TTS-1"),
    ("tts-1-hd", "TTS-1 HD"),
];

/// Built-in voices: the docstring of `voice` in speech_create_params.py ("alloy, ash, ballad,
/// coral, echo, fable, onyx, nova, sage, shimmer, verse, marin, and cedar"). Which of them
/// tts-1 / tts-1-hd accept is UNCONFIRMED; the vendor judges.
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
    "marin", "cedar",
];

/// Whether `model` takes `instructions` (not tts-1 / tts-1-hd, per speech_create_params.py).
pub fn takes_instructions(model: &str) -> bool {
    !model.starts_with("tts-1")
}

/// The plugin's settings, from its config section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Default model.
    pub model: String,
    /// Default voice.
    pub voice: String,
    /// Base instructions (gpt-4o-mini-tts).
    pub instructions: Option<String>,
    /// Account headers.
    pub account: AccountHeaders,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// Deadline for the response head and for each body chunk.
    pub read_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&PluginConfig::default()).expect("defaults are valid")
    }
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let model = cfg
            .string("model")?
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let voice = cfg
            .string("voice")?
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_VOICE.to_owned());
        let instructions = cfg.string("instructions")?.filter(|s| !s.trim().is_empty());
        Ok(Self {
            base_url: common::base_url(cfg, common::OPENAI_BASE_URL)?,
            model,
            voice,
            instructions,
            account: AccountHeaders::from_config(cfg)?,
            connect_timeout: common::millis(cfg, "connect_timeout_ms", 10_000, 100, 120_000)?,
            read_timeout: common::millis(cfg, "read_timeout_ms", 30_000, 100, 600_000)?,
        })
    }
}

/// The wire `response_format` for a host encoding, or `None` if OpenAI cannot produce it raw.
pub fn response_format(encoding: AudioEncoding) -> Option<&'static str> {
    match encoding {
        AudioEncoding::Linear16 => Some("pcm"),
        AudioEncoding::Mp3 => Some("mp3"),
        AudioEncoding::Opus => Some("opus"),
        _ => None,
    }
}

/// The `instructions` sentence for `emotion`: e.g. `{emotion: happy, intensity: 0.9,
/// delivery_style: whispered, description: "like a tour guide"}` → "Sound very happy. Use a
/// whispered delivery. Like a tour guide." `None` when nothing is set.
pub fn emotion_instructions(emotion: &Emotion) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let clean = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let degree = emotion.intensity.filter(|i| i.is_finite()).map(|i| {
        if i < 0.4 {
            "slightly"
        } else if i < 0.7 {
            "moderately"
        } else {
            "very"
        }
    });
    match (clean(&emotion.emotion), degree) {
        (Some(e), Some(d)) => parts.push(format!("Sound {d} {e}.")),
        (Some(e), None) => parts.push(format!("Sound {e}.")),
        (None, Some(d)) => parts.push(format!("Speak {d} expressively.")),
        (None, None) => {}
    }
    if let Some(style) = clean(&emotion.delivery_style) {
        parts.push(format!("Use a {style} delivery."));
    }
    if let Some(desc) = clean(&emotion.description) {
        let mut d = desc;
        if let Some(first) = d.chars().next() {
            let upper: String = first.to_uppercase().collect();
            d.replace_range(..first.len_utf8(), &upper);
        }
        if !d.ends_with(['.', '!', '?']) {
            d.push('.');
        }
        parts.push(d);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// One resolved request (everything but the text).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Model.
    pub model: String,
    /// Voice (a built-in name or a custom `voice_…` id).
    pub voice: String,
    /// `response_format`.
    pub format: &'static str,
    /// `speed`.
    pub speed: f32,
    /// `instructions`.
    pub instructions: Option<String>,
}

/// Resolves a session config into a request, validating it.
pub fn resolve(settings: &Settings, cfg: &TtsSessionConfig) -> Result<Request, PluginError> {
    let format = response_format(cfg.encoding).ok_or_else(|| {
        PluginError::Config(format!(
            "{CONTEXT}: encoding {} is not produced (linear16, mp3, opus)",
            cfg.encoding
        ))
    })?;
    if cfg.sample_rate != SAMPLE_RATE {
        return Err(PluginError::Config(format!(
            "{CONTEXT}: sample rate {} is not produced (24000 only)",
            cfg.sample_rate
        )));
    }
    let model = Some(cfg.model.trim())
        .filter(|m| !m.is_empty())
        .unwrap_or(&settings.model)
        .to_owned();
    let voice = Some(cfg.voice_id.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(&settings.voice)
        .to_owned();
    if voice.chars().any(char::is_control) || model.chars().any(char::is_control) {
        return Err(PluginError::Config(format!(
            "{CONTEXT}: invalid voice or model"
        )));
    }
    let speed = if cfg.speaking_rate.is_finite() && cfg.speaking_rate > 0.0 {
        cfg.speaking_rate.clamp(0.25, 4.0)
    } else {
        1.0
    };
    let from_emotion = emotion_instructions(&cfg.emotion);
    let instructions = if takes_instructions(&model) {
        match (settings.instructions.clone(), from_emotion) {
            (Some(a), Some(b)) => Some(format!("{} {b}", a.trim())),
            (a, b) => a.or(b),
        }
    } else {
        if from_emotion.is_some() || settings.instructions.is_some() {
            tracing::debug!(
                model,
                "openai tts: instructions/emotion ignored for this model"
            );
        }
        None
    };
    Ok(Request {
        model,
        voice,
        format,
        speed,
        instructions,
    })
}

/// The JSON body for `text`.
pub fn body(req: &Request, text: &str) -> serde_json::Value {
    let voice = if req.voice.starts_with("voice_") {
        // A custom voice is referenced by id (speech_create_params.py `VoiceID`).
        serde_json::json!({ "id": req.voice })
    } else {
        serde_json::Value::String(req.voice.clone())
    };
    let mut b = serde_json::json!({
        "model": req.model,
        "input": text,
        "voice": voice,
        "response_format": req.format,
        "speed": req.speed,
    });
    if let Some(i) = &req.instructions {
        b["instructions"] = serde_json::Value::String(i.clone());
    }
    b
}

/// Splits `text` into pieces of at most `max` characters, at a sentence end or a space when
/// there is one in the second half of the window.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let window_end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..window_end];
        let half = window.len() / 2;
        let cut = window
            .rfind(['.', '!', '?', '\n'])
            .filter(|&i| i >= half)
            .map(|i| i + 1)
            .or_else(|| window.rfind(' ').filter(|&i| i >= half))
            .unwrap_or(window_end);
        let cut = if rest.is_char_boundary(cut) {
            cut
        } else {
            window_end
        };
        out.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// OpenAI text-to-speech. Plugin id `openai` (TTS).
#[derive(Debug, Default)]
pub struct OpenAiTts {
    http: ClientSlot,
}

impl OpenAiTts {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The declared voices.
pub fn voices() -> Vec<VoiceInfo> {
    VOICES
        .iter()
        .map(|v| {
            let mut name = v.to_string();
            name[..1].make_ascii_uppercase();
            VoiceInfo {
                id: (*v).to_owned(),
                sample: String::new(),
                name,
                accent: String::new(),
                gender: String::new(),
                // The built-in voices speak many languages; none is declared.
                language: String::new(),
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl Plugin for OpenAiTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("openai", "OpenAI")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["openai-tts"])
            .description("OpenAI text-to-speech (POST /v1/audio/speech, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(MODELS.iter().map(|(id, name)| ModelInfo::new(*id, *name)))
            .voices(voices())
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mp3,
                AudioEncoding::Opus,
            ])
            .sample_rates([SAMPLE_RATE])
            .features(true, true, false, false)
    }
}

#[async_trait::async_trait]
impl TtsPlugin for OpenAiTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        common::api_key(
            config.api_key.as_ref(),
            &config.credentials,
            CONTEXT,
            "OPENAI_API_KEY",
        )?;
        resolve(&settings, config)?;
        Ok(())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        let key = common::api_key(
            config.api_key.as_ref(),
            &config.credentials,
            CONTEXT,
            "OPENAI_API_KEY",
        )?;
        let req = resolve(&settings, config)?;
        if request.text.trim().is_empty() {
            return Ok(()); // nothing to say; OpenAI refuses an empty input
        }
        let http = self.http.get(CONTEXT, settings.connect_timeout)?;
        let redactor = http.redactor().clone().with_secret(&key);
        let url = format!("{}/v1/audio/speech", settings.base_url);
        // Texts past the input limit become consecutive requests (raw PCM concatenates; mp3
        // frames and chained Ogg streams play back to back).
        for piece in split_text(&request.text, MAX_INPUT_CHARS) {
            let builder = settings
                .account
                .apply(http.post(&url), &key)
                .header("Content-Type", "application/json")
                .body(body(&req, piece).to_string());
            let resp = common::send(
                &http,
                builder,
                settings.read_timeout,
                Subject::Text,
                CONTEXT,
                &redactor,
            )
            .await?;
            // A 200 that is not audio (a proxy page, an SSE stream we did not ask for) is refused.
            expect_audio(&resp, CONTEXT, &redactor)?;
            let context = format!("{CONTEXT}: reading audio");
            if stream_into(resp, &out, settings.read_timeout, &context, &redactor, Ok).await?
                == StreamEnd::Stopped
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emotion_sentences() {
        let e = Emotion {
            emotion: Some("happy".into()),
            intensity: Some(0.9),
            delivery_style: Some("whispered".into()),
            description: Some("like a tour guide".into()),
        };
        assert_eq!(
            emotion_instructions(&e).unwrap(),
            "Sound very happy. Use a whispered delivery. Like a tour guide."
        );
        assert_eq!(emotion_instructions(&Emotion::default()), None);
        let calm = Emotion {
            emotion: Some("calm".into()),
            intensity: Some(0.3),
            ..Emotion::default()
        };
        assert_eq!(emotion_instructions(&calm).unwrap(), "Sound slightly calm.");
    }

    #[test]
    fn resolve_maps_controls() {
        let s = Settings::default();
        let mut cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000);
        cfg.speaking_rate = 9.0;
        cfg.emotion.emotion = Some("sad".into());
        let r = resolve(&s, &cfg).unwrap();
        assert_eq!((r.format, r.speed), ("pcm", 4.0));
        assert_eq!(r.instructions.as_deref(), Some("Sound sad."));
        let r = resolve(&s, &cfg.clone().with_model("tts-1")).unwrap();
        assert_eq!(r.instructions, None);
        assert!(resolve(&s, &TtsSessionConfig::new(AudioEncoding::Wav, 24_000)).is_err());
        assert!(resolve(&s, &TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)).is_err());
        let b = body(&resolve(&s, &cfg.with_voice("voice_123")).unwrap(), "hi");
        assert_eq!(b["voice"], serde_json::json!({"id": "voice_123"}));
    }

    #[test]
    fn long_text_is_split() {
        let text = "One two three. Four five six. Seven eight nine.";
        let parts = split_text(text, 20);
        assert!(parts.iter().all(|p| p.chars().count() <= 20), "{parts:?}");
        assert_eq!(parts.join(" "), text);
        assert_eq!(split_text("short", 20), ["short"]);
        let cjk = "語".repeat(50);
        let parts = split_text(&cjk, 16);
        assert_eq!(parts.concat(), cjk);
    }
}
