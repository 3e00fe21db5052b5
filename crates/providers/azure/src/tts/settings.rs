//! The TTS config section, the output formats and the per-session plan (validation only, no
//! I/O).

use crate::stt::{ID, REGION};
use std::time::Duration;
use waav_plugin_api::credentials::API_KEY;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, Secret, TtsSessionConfig};

/// The default voice (the examples of `rest-text-to-speech.md` and the SSML docs).
pub const DEFAULT_VOICE: &str = "en-US-JennyNeural";
/// The synthesis path (`rest-text-to-speech.md`, "Convert text to speech").
pub const SYNTH_PATH: &str = "/cognitiveservices/v1";
/// The voice listing path (`rest-text-to-speech.md`, "Get a list of voices").
pub const VOICES_PATH: &str = "/cognitiveservices/voices/list";
/// Rates of the raw PCM formats (`raw-8khz-16bit-mono-pcm` … `raw-48khz-16bit-mono-pcm`).
pub const PCM_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];
/// Largest `User-Agent` the service takes ("fewer than 255 characters").
pub const MAX_USER_AGENT: usize = 254;

/// Roles of `mstts:express-as` (`speech-synthesis-markup-voice.md`, the `role` table, plus
/// `Narrator`, which voice listings carry in `RolePlayList`).
pub const ROLES: &[&str] = &[
    "Narrator",
    "Girl",
    "Boy",
    "YoungAdultFemale",
    "YoungAdultMale",
    "OlderAdultFemale",
    "OlderAdultMale",
    "SeniorFemale",
    "SeniorMale",
];

/// What the plugin does with G.711 the service cannot produce at the session's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcode {
    /// The service's bytes are passed on as they are.
    None,
    /// PCM16 from the service is encoded to mu-law here.
    Mulaw,
    /// PCM16 from the service is encoded to A-law here.
    Alaw,
}

/// An `X-Microsoft-OutputFormat` value and how its bytes become the session's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFormat {
    /// The header value.
    pub header: &'static str,
    /// Conversion applied in the plugin.
    pub transcode: Transcode,
}

fn pcm_format(rate: u32) -> Option<&'static str> {
    Some(match rate {
        8_000 => "raw-8khz-16bit-mono-pcm",
        16_000 => "raw-16khz-16bit-mono-pcm",
        22_050 => "raw-22050hz-16bit-mono-pcm",
        24_000 => "raw-24khz-16bit-mono-pcm",
        44_100 => "raw-44100hz-16bit-mono-pcm",
        48_000 => "raw-48khz-16bit-mono-pcm",
        _ => return None,
    })
}

/// The output format for a session's encoding and rate, from the "Streaming" list of
/// `rest-text-to-speech.md` ("Audio outputs"; the `riff-*` formats carry a WAV header and are
/// never asked for). PCM at the six raw rates; G.711 natively at 8 kHz and, at the other PCM
/// rates, as raw PCM encoded here (the declared rate list is shared by every encoding); MP3
/// and Ogg Opus at 16, 24 and 48 kHz only.
pub fn output_format(encoding: AudioEncoding, rate: u32) -> Result<WireFormat, String> {
    let plain = |header| WireFormat {
        header,
        transcode: Transcode::None,
    };
    let found = match (encoding, rate) {
        (AudioEncoding::Linear16, r) => pcm_format(r).map(plain),
        (AudioEncoding::Mulaw, 8_000) => Some(plain("raw-8khz-8bit-mono-mulaw")),
        (AudioEncoding::Alaw, 8_000) => Some(plain("raw-8khz-8bit-mono-alaw")),
        (AudioEncoding::Mulaw, r) => pcm_format(r).map(|header| WireFormat {
            header,
            transcode: Transcode::Mulaw,
        }),
        (AudioEncoding::Alaw, r) => pcm_format(r).map(|header| WireFormat {
            header,
            transcode: Transcode::Alaw,
        }),
        (AudioEncoding::Mp3, 16_000) => Some(plain("audio-16khz-64kbitrate-mono-mp3")),
        (AudioEncoding::Mp3, 24_000) => Some(plain("audio-24khz-48kbitrate-mono-mp3")),
        (AudioEncoding::Mp3, 48_000) => Some(plain("audio-48khz-96kbitrate-mono-mp3")),
        (AudioEncoding::Opus, 16_000) => Some(plain("ogg-16khz-16bit-mono-opus")),
        (AudioEncoding::Opus, 24_000) => Some(plain("ogg-24khz-16bit-mono-opus")),
        (AudioEncoding::Opus, 48_000) => Some(plain("ogg-48khz-16bit-mono-opus")),
        _ => None,
    };
    found.ok_or_else(|| match encoding {
        AudioEncoding::Mp3 | AudioEncoding::Opus => {
            format!("{encoding} is produced at 16000, 24000 or 48000 Hz, not {rate}")
        }
        AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Alaw => format!(
            "unsupported sample rate {rate}; supported: 8000, 16000, 22050, 24000, 44100, 48000"
        ),
        other => format!("encoding {other} is not produced (linear16, mulaw, alaw, mp3, opus)"),
    })
}

/// Validated settings of the section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `base_url` / `endpoint`: scheme and host (and optional path prefix) replacing
    /// `https://<region>.tts.speech.microsoft.com`.
    pub base_url: Option<String>,
    /// Default voice (a session's `voice_id` overrides it).
    pub voice: String,
    /// `xml:lang` of `<speak>`; default: the voice name's locale (`en-US-…`), else `en-US`.
    pub language: Option<String>,
    /// Custom voice deployment id (`deploymentId`); a session's `model` overrides it.
    pub deployment_id: Option<String>,
    /// `role` of `mstts:express-as`, sent with a style.
    pub role: Option<String>,
    /// The `User-Agent` header (required by the service).
    pub user_agent: String,
    /// How long a voice listing is reused.
    pub voices_ttl: Duration,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// Deadline for the response head and for each body chunk.
    pub read_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: None,
            voice: DEFAULT_VOICE.to_owned(),
            language: None,
            deployment_id: None,
            role: None,
            user_agent: concat!("waav-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            voices_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(15),
        }
    }
}

/// Every key the section may hold (an unknown key is a config error).
pub const KEYS: &[&str] = &[
    "enabled",
    "api_key",
    "region",
    "base_url",
    "endpoint",
    "voice",
    "language",
    "deployment_id",
    "role",
    "user_agent",
    "voices_ttl_secs",
    "connect_timeout_ms",
    "read_timeout_ms",
];

fn config_err(cfg: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", cfg.path()))
}

/// Whether `s` is a plain token: ASCII letters, digits, `-` and `_` (regions, ids, locales).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` can be a voice name: `en-US-JennyNeural`, `en-US-Ava:DragonHDLatestNeural`, a
/// custom voice's model name. Printable, no markup characters (it is escaped anyway).
pub fn is_voice_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c.is_control() || matches!(c, '<' | '>'))
}

fn millis(cfg: &PluginConfig, key: &str, default: Duration) -> Result<Duration, PluginError> {
    match cfg.u64(key)? {
        None => Ok(default),
        Some(v) if (100..=600_000).contains(&v) => Ok(Duration::from_millis(v)),
        Some(_) => Err(config_err(cfg, key, "between 100 and 600000")),
    }
}

/// `ConnectionFactoryBase.getHostSuffix` (Speech SDK): China regions use `.azure.cn`, US
/// Government ones `.azure.us`, the rest `.microsoft.com`.
pub fn host_suffix(region: &str) -> &'static str {
    if region.starts_with("china") {
        ".azure.cn"
    } else if region.starts_with("usgov") {
        ".azure.us"
    } else {
        ".microsoft.com"
    }
}

impl Settings {
    /// Reads and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        if let Some(k) = cfg.keys().find(|k| !KEYS.contains(k)) {
            return Err(config_err(
                cfg,
                k,
                format!("unknown option; known: {}", KEYS.join(", ")),
            ));
        }
        let mut s = Self::default();
        s.base_url = match (cfg.string("base_url")?, cfg.string("endpoint")?) {
            (Some(a), Some(b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                return Err(config_err(
                    cfg,
                    "endpoint",
                    "set base_url or endpoint, not both",
                ))
            }
            (a, b) => a
                .filter(|s| !s.trim().is_empty())
                .or(b.filter(|s| !s.trim().is_empty())),
        };
        if let Some(url) = s.base_url.take() {
            let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
            let host = url.split_once("://").map_or("", |(_, r)| r);
            if !ok_scheme
                || host.is_empty()
                || host.starts_with('/')
                || url.contains(char::is_whitespace)
                || url.contains(['?', '#'])
            {
                return Err(config_err(
                    cfg,
                    "base_url",
                    "expected an http:// or https:// URL without spaces, query or fragment",
                ));
            }
            // A full synthesis URL is accepted too: keep what precedes the path.
            let trimmed = url.trim_end_matches('/');
            let trimmed = trimmed.strip_suffix(SYNTH_PATH).unwrap_or(trimmed);
            s.base_url = Some(trimmed.trim_end_matches('/').to_owned());
        }
        if let Some(v) = cfg.string("voice")?.filter(|v| !v.trim().is_empty()) {
            if !is_voice_name(v.trim()) {
                return Err(config_err(cfg, "voice", "not a voice name"));
            }
            s.voice = v.trim().to_owned();
        }
        if let Some(l) = cfg.string("language")?.filter(|l| !l.trim().is_empty()) {
            if !is_token(l.trim()) {
                return Err(config_err(cfg, "language", "expected a locale (en-US)"));
            }
            s.language = Some(l.trim().to_owned());
        }
        if let Some(d) = cfg.string("deployment_id")?.filter(|d| !d.is_empty()) {
            if !is_token(&d) {
                return Err(config_err(
                    cfg,
                    "deployment_id",
                    "expected an id (letters, digits, -)",
                ));
            }
            s.deployment_id = Some(d);
        }
        if let Some(r) = cfg.string("role")?.filter(|r| !r.is_empty()) {
            let Some(known) = ROLES.iter().find(|k| k.eq_ignore_ascii_case(&r)) else {
                return Err(config_err(
                    cfg,
                    "role",
                    format!("{r:?}: expected one of {}", ROLES.join(", ")),
                ));
            };
            s.role = Some((*known).to_owned());
        }
        if let Some(ua) = cfg.string("user_agent")? {
            if ua.trim().is_empty() || ua.len() > MAX_USER_AGENT || ua.chars().any(char::is_control)
            {
                return Err(config_err(
                    cfg,
                    "user_agent",
                    "1 to 254 printable characters",
                ));
            }
            s.user_agent = ua;
        }
        if let Some(t) = cfg.u64("voices_ttl_secs")? {
            s.voices_ttl = Duration::from_secs(t.min(86_400));
        }
        s.connect_timeout = millis(cfg, "connect_timeout_ms", s.connect_timeout)?;
        s.read_timeout = millis(cfg, "read_timeout_ms", s.read_timeout)?;
        Ok(s)
    }

    /// The root every path is appended to: `base_url`, else
    /// `https://<region>.<service>.speech<suffix>` where `service` is `tts`, or `voice` for a
    /// custom voice deployment (the custom voice endpoint table of the REST docs).
    pub fn root(&self, region: Option<&str>, custom_voice: bool) -> Result<String, PluginError> {
        if let Some(base) = &self.base_url {
            return Ok(base.clone());
        }
        let region = region
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                PluginError::Config(format!(
                "{ID}: no region configured (set `region`, AZURE_SPEECH_REGION, or a `base_url`)"
            ))
            })?;
        if !is_token(region) {
            return Err(PluginError::Config(format!(
                "{ID}: invalid region {region:?}"
            )));
        }
        let region = region.to_ascii_lowercase();
        let service = if custom_voice { "voice" } else { "tts" };
        Ok(format!(
            "https://{region}.{service}.speech{}",
            host_suffix(&region)
        ))
    }

    /// The voice listing URL.
    pub fn voices_url(&self, region: Option<&str>) -> Result<String, PluginError> {
        Ok(format!("{}{VOICES_PATH}", self.root(region, false)?))
    }
}

/// The session's key: the host's `api_key`, else the resolved credential, else the section's.
pub fn session_key(cfg: &TtsSessionConfig) -> Result<Secret, PluginError> {
    let from_section = cfg.plugin_config.secret(API_KEY)?;
    cfg.api_key
        .clone()
        .or_else(|| cfg.credentials.get(API_KEY).cloned())
        .or(from_section)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            PluginError::Auth(format!(
                "{ID}: no API key configured (AZURE_SPEECH_SUBSCRIPTION_KEY)"
            ))
        })
}

/// The session's region: the resolved credential, else the section's.
pub fn session_region(cfg: &TtsSessionConfig) -> Result<Option<String>, PluginError> {
    let resolved = cfg
        .credentials
        .expose(REGION)
        .map(str::to_owned)
        .filter(|r| !r.trim().is_empty());
    Ok(match resolved {
        Some(r) => Some(r),
        None => cfg
            .plugin_config
            .string(REGION)?
            .filter(|r| !r.trim().is_empty()),
    })
}

/// The locale a voice name starts with (`en-US-JennyNeural` → `en-US`,
/// `zh-CN-shaanxi-XiaoniNeural` → `zh-CN`), if it looks like one.
pub fn voice_locale(voice: &str) -> Option<&str> {
    let mut parts = voice.splitn(3, '-');
    let (lang, region, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok = (2..=4).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_alphanumeric())
        && region
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (lang_ok && region_ok && !rest.is_empty()).then(|| &voice[..lang.len() + 1 + region.len()])
}

/// Everything a request of a session needs but the text.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The section's settings.
    pub settings: Settings,
    /// The synthesis URL (with `deploymentId` for a custom voice).
    pub url: String,
    /// The voice listing URL, if a region or base URL is known.
    pub voices_url: String,
    /// `X-Microsoft-OutputFormat` and any conversion.
    pub format: WireFormat,
    /// The voice name.
    pub voice: String,
    /// `xml:lang`.
    pub language: String,
    /// The key.
    pub key: Secret,
}

/// Resolves and validates a session config.
pub fn plan(cfg: &TtsSessionConfig) -> Result<Plan, PluginError> {
    let bad = |m: String| PluginError::Config(format!("{ID}: {m}"));
    let settings = Settings::from_config(&cfg.plugin_config)?;
    let format = output_format(cfg.encoding, cfg.sample_rate).map_err(bad)?;
    let voice = Some(cfg.voice_id.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(&settings.voice)
        .to_owned();
    if !is_voice_name(&voice) {
        return Err(bad(format!("invalid voice {voice:?}")));
    }
    let deployment = Some(cfg.model.trim())
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| settings.deployment_id.clone());
    if let Some(d) = deployment.as_deref().filter(|d| !is_token(d)) {
        return Err(bad(format!(
            "invalid model (custom voice deployment id) {d:?}"
        )));
    }
    let language = settings
        .language
        .clone()
        .or_else(|| voice_locale(&voice).map(str::to_owned))
        .unwrap_or_else(|| "en-US".to_owned());
    let region = session_region(cfg)?;
    let key = session_key(cfg)?;
    let root = settings.root(region.as_deref(), deployment.is_some())?;
    let mut url = format!("{root}{SYNTH_PATH}");
    if let Some(d) = &deployment {
        // A validated token: nothing to percent-encode.
        url.push_str("?deploymentId=");
        url.push_str(d);
    }
    let voices_url = settings.voices_url(region.as_deref())?;
    Ok(Plan {
        settings,
        url,
        voices_url,
        format,
        voice,
        language,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use waav_plugin_api::Credentials;

    fn section(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.tts.microsoft-azure", v).unwrap()
    }

    fn session(v: serde_json::Value, region: Option<&str>) -> TtsSessionConfig {
        let mut creds = Credentials::new();
        creds.set(API_KEY, Secret::from("k"));
        if let Some(r) = region {
            creds.set(REGION, Secret::from(r));
        }
        TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)
            .with_credentials(creds)
            .with_plugin_config(section(v))
    }

    #[test]
    fn formats() {
        let f = |e, r| output_format(e, r).map(|w| (w.header, w.transcode));
        assert_eq!(
            f(AudioEncoding::Linear16, 24_000),
            Ok(("raw-24khz-16bit-mono-pcm", Transcode::None))
        );
        assert_eq!(
            f(AudioEncoding::Linear16, 22_050),
            Ok(("raw-22050hz-16bit-mono-pcm", Transcode::None))
        );
        assert_eq!(
            f(AudioEncoding::Mulaw, 8_000),
            Ok(("raw-8khz-8bit-mono-mulaw", Transcode::None))
        );
        assert_eq!(
            f(AudioEncoding::Alaw, 16_000),
            Ok(("raw-16khz-16bit-mono-pcm", Transcode::Alaw))
        );
        assert_eq!(
            f(AudioEncoding::Opus, 24_000),
            Ok(("ogg-24khz-16bit-mono-opus", Transcode::None))
        );
        assert!(f(AudioEncoding::Mp3, 8_000).is_err());
        assert!(f(AudioEncoding::Linear16, 11_025).is_err());
        assert!(f(AudioEncoding::Wav, 24_000).is_err());
        assert!(f(AudioEncoding::Flac, 24_000).is_err());
    }

    #[test]
    fn urls() {
        let p = plan(&session(json!({}), Some("EastUS"))).unwrap();
        assert_eq!(
            p.url,
            "https://eastus.tts.speech.microsoft.com/cognitiveservices/v1"
        );
        assert_eq!(
            p.voices_url,
            "https://eastus.tts.speech.microsoft.com/cognitiveservices/voices/list"
        );
        assert_eq!(
            (p.voice.as_str(), p.language.as_str()),
            (DEFAULT_VOICE, "en-US")
        );
        let p = plan(&session(json!({}), Some("chinaeast2")).with_model("abc-123")).unwrap();
        assert_eq!(
            p.url,
            "https://chinaeast2.voice.speech.azure.cn/cognitiveservices/v1?deploymentId=abc-123"
        );
        let p = plan(&session(
            json!({"base_url": "http://127.0.0.1:9/cognitiveservices/v1/"}),
            None,
        ))
        .unwrap();
        assert_eq!(p.url, "http://127.0.0.1:9/cognitiveservices/v1");
        assert!(plan(&session(json!({}), None)).is_err());
        assert!(plan(&session(json!({}), Some("east us"))).is_err());
        assert!(plan(&session(json!({"base_url": "ftp://x"}), None)).is_err());
        assert!(plan(&session(
            json!({"base_url": "http://x", "endpoint": "http://y"}),
            None
        ))
        .is_err());
        assert!(plan(&session(json!({"voise": "x"}), Some("eastus"))).is_err());
        assert!(plan(&session(json!({"role": "Wizard"}), Some("eastus"))).is_err());
        let mut no_key = session(json!({}), Some("eastus"));
        no_key.credentials = Credentials::new();
        assert!(matches!(plan(&no_key), Err(PluginError::Auth(_))));
    }

    #[test]
    fn locales_from_voice_names() {
        assert_eq!(voice_locale("en-US-JennyNeural"), Some("en-US"));
        assert_eq!(voice_locale("zh-CN-shaanxi-XiaoniNeural"), Some("zh-CN"));
        assert_eq!(
            voice_locale("en-US-Ava:DragonHDLatestNeural"),
            Some("en-US")
        );
        assert_eq!(voice_locale("my-custom-voice"), None);
        assert_eq!(voice_locale("Jenny"), None);
    }
}
