//! The Play.ht plugin's settings (its config section) and the request body it sends.
//!
//! Body fields as in `TTS_PROTOCOLS.md` §11, checked against playht/pyht `pyht/client.py`
//! (`http_prepare_dict`: `text`, `voice`, `output_format`, `speed`, `sample_rate`,
//! `voice_engine`, and when set `seed`, `temperature`, `top_p`, `text_guidance`,
//! `voice_guidance`, `style_guidance`, `repetition_penalty`, `language`; `HTTPFormat`: `raw`,
//! `mp3`, `wav`, `ogg`, `flac`, `mulaw`, `pcm`) and docs.play.ht "Text to speech HTTP
//! streaming" (speed 0.1–5, sample_rate 8000–48000, text ≤ 20000 characters for Play3.0-mini
//! and 2000 otherwise, output_format default `wav`, PlayDialog-turbo wav only).
//!
//! Formats asked for: Linear16 → `raw` (raw 16-bit little-endian PCM per the gateway's brief;
//! pyht also lists `pcm`, and which of the two is headerless PCM16LE is UNCONFIRMED, so
//! `linear16_format` can switch it), Mulaw → `mulaw`, Mp3 → `mp3`.
//!
//! Emotion: `emotion` is a PlayHT2.0 control taking `<gender>_<emotion>` values
//! (`female_happy`, `male_angry`, … per the PlayHT 2.0 docs; the list is UNCONFIRMED from a
//! primary source). `cfg.emotion.emotion` is mapped onto happy / sad / angry / fearful /
//! disgust / surprised with the configured `emotion_gender` (the voice's gender is not known
//! here), its intensity onto `style_guidance` 1–30, for the `PlayHT2.0*` engines only; other
//! engines have no emotion control and it is ignored with a debug log.

use serde_json::{json, Value};
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, Emotion, PluginConfig, PluginError, TtsSessionConfig};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.play.ht";
/// The default voice (the docs' example "female-cs" manifest).
pub const DEFAULT_VOICE: &str =
    "s3://voice-cloning-zero-shot/d9ff78ba-d016-47f6-b0ef-dd630f59414e/female-cs/manifest.json";
/// The default engine.
pub const DEFAULT_ENGINE: &str = "Play3.0-mini";
/// Voice engines (`voice_engine`).
pub const ENGINES: &[&str] = &[
    "Play3.0-mini",
    "PlayDialog",
    "PlayDialog-turbo",
    "Play3.0",
    "PlayHT2.0-turbo",
    "PlayHT2.0",
];
/// Rates declared (the docs allow 8000–48000; these are the usual ones).
pub const SAMPLE_RATES: [u32; 7] = [8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];
/// `speed` bounds.
pub const SPEED_RANGE: (f32, f32) = (0.1, 5.0);
/// The PlayHT 2.0 emotions, without the gender prefix.
pub const EMOTIONS: &[&str] = &["happy", "sad", "angry", "fearful", "disgust", "surprised"];
/// `quality` values (UNCONFIRMED list).
pub const QUALITIES: &[&str] = &["draft", "low", "medium", "high", "premium"];

/// Most characters of `text` per request for `engine`.
pub fn max_chars(engine: &str) -> usize {
    if engine.eq_ignore_ascii_case("Play3.0-mini") {
        20_000
    } else {
        2_000
    }
}

/// The plugin's settings, from its config section.
///
/// Keys (all optional): `base_url`, `user_id` (the account id for the voice listing when no
/// session was prepared yet; sessions use the `user_id` credential), `voice` (default
/// [`DEFAULT_VOICE`]), `voice_engine` (default [`DEFAULT_ENGINE`]), `language` (pyht
/// `Language` names such as `english`, `spanish`; Play3.0-mini), `quality`, `seed`,
/// `temperature` (0–2), `text_guidance`, `voice_guidance`, `style_guidance` (1–30),
/// `emotion_gender` (`female` | `male`, default `female`), `linear16_format` (`raw` | `pcm`,
/// default `raw`), `include_cloned_voices` (default false), `response_timeout_ms` (20000: the
/// response head and each body chunk), `connect_timeout_ms` (10000), `voices_ttl_secs` (300).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Account id for the voice listing.
    pub user_id: Option<String>,
    /// Default voice.
    pub voice: String,
    /// Default engine.
    pub voice_engine: String,
    /// `language`.
    pub language: Option<String>,
    /// `quality`.
    pub quality: Option<String>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `text_guidance`.
    pub text_guidance: Option<f64>,
    /// `voice_guidance`.
    pub voice_guidance: Option<f64>,
    /// `style_guidance`.
    pub style_guidance: Option<f64>,
    /// Gender prefix of mapped emotions.
    pub emotion_gender: String,
    /// `output_format` for Linear16.
    pub linear16_format: String,
    /// Whether the voice listing includes cloned voices.
    pub include_cloned_voices: bool,
    /// Deadline for the response head and for each body chunk.
    pub response_timeout: Duration,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// How long a voice listing is reused.
    pub voices_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&PluginConfig::default()).expect("defaults are valid")
    }
}

fn clean(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    match cfg.string(key)? {
        Some(s) if s.chars().any(char::is_control) => Err(PluginError::Config(format!(
            "{}.{key}: must not contain control characters",
            cfg.path()
        ))),
        Some(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        None => Ok(None),
    }
}

fn one_of(cfg: &PluginConfig, key: &str, allowed: &[&str]) -> Result<Option<String>, PluginError> {
    match clean(cfg, key)? {
        None => Ok(None),
        Some(v) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&v))
            .map(|a| Some((*a).to_owned()))
            .ok_or_else(|| {
                PluginError::Config(format!(
                    "{}.{key}: {v:?} is not one of {}",
                    cfg.path(),
                    allowed.join(", ")
                ))
            }),
    }
}

/// Validates a base URL: `http(s)://host[:port][/prefix]`, no query, trailing slash dropped.
pub fn base_url(cfg: &PluginConfig, default: &str) -> Result<String, PluginError> {
    let url = cfg
        .string("base_url")?
        .unwrap_or_else(|| default.to_owned());
    let url = url.trim().trim_end_matches('/').to_owned();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(['?', '#', ' ']) => Ok(url),
        _ => Err(PluginError::Config(format!(
            "{}.base_url: expected http(s)://host[:port][/path], got {url:?}",
            cfg.path()
        ))),
    }
}

/// The canonical engine name for `engine` (case-insensitive), if known.
pub fn engine_of(engine: &str) -> Option<&'static str> {
    ENGINES
        .iter()
        .find(|e| e.eq_ignore_ascii_case(engine.trim()))
        .copied()
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let voice_engine = match clean(cfg, "voice_engine")? {
            None => DEFAULT_ENGINE.to_owned(),
            Some(e) => engine_of(&e)
                .ok_or_else(|| {
                    PluginError::Config(format!(
                        "{}.voice_engine: {e:?} is not one of {}",
                        cfg.path(),
                        ENGINES.join(", ")
                    ))
                })?
                .to_owned(),
        };
        Ok(Self {
            base_url: base_url(cfg, DEFAULT_BASE_URL)?,
            user_id: clean(cfg, "user_id")?,
            voice: clean(cfg, "voice")?.unwrap_or_else(|| DEFAULT_VOICE.to_owned()),
            voice_engine,
            language: clean(cfg, "language")?.map(|l| l.to_ascii_lowercase()),
            quality: one_of(cfg, "quality", QUALITIES)?,
            seed: cfg.u64("seed")?,
            temperature: cfg.f64_opt_in("temperature", 0.0..=2.0)?,
            text_guidance: cfg.f64_opt_in("text_guidance", 0.0..=2.0)?,
            voice_guidance: cfg.f64_opt_in("voice_guidance", 1.0..=6.0)?,
            style_guidance: cfg.f64_opt_in("style_guidance", 1.0..=30.0)?,
            emotion_gender: one_of(cfg, "emotion_gender", &["female", "male"])?
                .unwrap_or_else(|| "female".to_owned()),
            linear16_format: one_of(cfg, "linear16_format", &["raw", "pcm"])?
                .unwrap_or_else(|| "raw".to_owned()),
            include_cloned_voices: cfg.bool("include_cloned_voices")?.unwrap_or(false),
            response_timeout: Duration::from_millis(cfg.u64_in(
                "response_timeout_ms",
                20_000,
                100..=600_000,
            )?),
            connect_timeout: Duration::from_millis(cfg.u64_in(
                "connect_timeout_ms",
                10_000,
                100..=120_000,
            )?),
            voices_ttl: Duration::from_secs(cfg.u64_in("voices_ttl_secs", 300, 0..=86_400)?),
        })
    }
}

/// The PlayHT 2.0 emotion for `emotion` with `gender`: a name already in `<gender>_<emotion>`
/// form is kept; synonyms map (joyful/excited → happy, afraid/scared → fearful, disgusted →
/// disgust, surprise → surprised, mad/angry → angry, unhappy/sad → sad). `None` for emotions
/// PlayHT 2.0 does not have (calm, neutral, …).
pub fn playht_emotion(emotion: &str, gender: &str) -> Option<String> {
    let e = emotion.trim().to_ascii_lowercase();
    if let Some((g, rest)) = e.split_once('_') {
        if (g == "female" || g == "male") && EMOTIONS.contains(&rest) {
            return Some(e);
        }
    }
    let base = match e.as_str() {
        "happy" | "joyful" | "cheerful" | "excited" => "happy",
        "sad" | "unhappy" | "sorrowful" => "sad",
        "angry" | "mad" | "furious" => "angry",
        "fearful" | "afraid" | "scared" | "fear" => "fearful",
        "disgust" | "disgusted" => "disgust",
        "surprised" | "surprise" | "astonished" => "surprised",
        _ => return None,
    };
    Some(format!("{gender}_{base}"))
}

/// Everything of a request but its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `voice`.
    pub voice: String,
    /// `voice_engine`.
    pub voice_engine: String,
    /// `output_format`.
    pub output_format: String,
    /// The `Accept` header.
    pub accept: &'static str,
    /// `sample_rate`.
    pub sample_rate: u32,
    /// `speed`.
    pub speed: f32,
    /// `emotion`.
    pub emotion: Option<String>,
    /// `style_guidance`.
    pub style_guidance: Option<f64>,
    /// The remaining optional fields, as given in the config.
    pub extra: serde_json::Map<String, Value>,
}

/// Resolves and validates a session config.
pub fn plan(s: &Settings, cfg: &TtsSessionConfig) -> Result<Plan, PluginError> {
    let (output_format, accept) = match cfg.encoding {
        // pyht `output_format_to_mime_type`: raw and mulaw are `audio/basic`.
        AudioEncoding::Linear16 => (s.linear16_format.clone(), "audio/basic"),
        AudioEncoding::Mulaw => ("mulaw".to_owned(), "audio/basic"),
        AudioEncoding::Mp3 => ("mp3".to_owned(), "audio/mpeg"),
        other => {
            return Err(PluginError::Config(format!(
                "playht: encoding {other} is not produced (linear16, mulaw, mp3)"
            )))
        }
    };
    if !SAMPLE_RATES.contains(&cfg.sample_rate) {
        return Err(PluginError::Config(format!(
            "playht: sample rate {} is not produced ({})",
            cfg.sample_rate,
            SAMPLE_RATES.map(|r| r.to_string()).join(", ")
        )));
    }
    let voice_engine = match cfg.model.trim() {
        "" => s.voice_engine.clone(),
        m => engine_of(m)
            .ok_or_else(|| {
                PluginError::Config(format!(
                    "playht: unknown voice engine {m:?} ({})",
                    ENGINES.join(", ")
                ))
            })?
            .to_owned(),
    };
    if voice_engine == "PlayDialog-turbo" {
        // The docs: "PlayDialog-turbo only supports wav", which the host would have to unwrap.
        return Err(PluginError::Config(
            "playht: PlayDialog-turbo streams wav only, which this plugin does not ask for".into(),
        ));
    }
    let voice = Some(cfg.voice_id.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(&s.voice)
        .to_owned();
    if voice.chars().any(char::is_control) {
        return Err(PluginError::Config("playht: invalid voice".into()));
    }
    let speed = if cfg.speaking_rate.is_finite() && cfg.speaking_rate > 0.0 {
        cfg.speaking_rate.clamp(SPEED_RANGE.0, SPEED_RANGE.1)
    } else {
        1.0
    };
    let (emotion, style_guidance) = emotion_controls(s, &voice_engine, &cfg.emotion);
    let mut extra = serde_json::Map::new();
    if let Some(l) = &s.language {
        extra.insert("language".into(), json!(l));
    }
    if let Some(q) = &s.quality {
        extra.insert("quality".into(), json!(q));
    }
    if let Some(v) = s.seed {
        extra.insert("seed".into(), json!(v));
    }
    for (k, v) in [
        ("temperature", s.temperature),
        ("text_guidance", s.text_guidance),
        ("voice_guidance", s.voice_guidance),
    ] {
        if let Some(v) = v {
            extra.insert(k.into(), json!(v));
        }
    }
    Ok(Plan {
        voice,
        voice_engine,
        output_format,
        accept,
        sample_rate: cfg.sample_rate,
        speed,
        emotion,
        style_guidance,
        extra,
    })
}

fn emotion_controls(s: &Settings, engine: &str, e: &Emotion) -> (Option<String>, Option<f64>) {
    let named = e.emotion.as_deref().filter(|n| !n.trim().is_empty());
    if !engine.starts_with("PlayHT2.0") {
        if named.is_some() || e.intensity.is_some() {
            tracing::debug!(engine, "playht: emotion is a PlayHT2.0 control; ignored");
        }
        return (None, s.style_guidance);
    }
    let emotion = named.and_then(|n| {
        let m = playht_emotion(n, &s.emotion_gender);
        if m.is_none() {
            tracing::debug!(
                emotion = n,
                "playht: no PlayHT 2.0 emotion for this; ignored"
            );
        }
        m
    });
    let style = match (&emotion, e.intensity.filter(|i| i.is_finite())) {
        (Some(_), Some(i)) => Some((1.0 + 29.0 * f64::from(i.clamp(0.0, 1.0))).round()),
        _ => s.style_guidance,
    };
    if e.delivery_style.is_some() || e.description.is_some() {
        tracing::debug!("playht: delivery style and description have no control; ignored");
    }
    (emotion, style)
}

/// The JSON body of `POST /api/v2/tts/stream` for `text`.
pub fn body(plan: &Plan, text: &str) -> Value {
    let mut b = json!({
        "text": text,
        "voice": plan.voice,
        "voice_engine": plan.voice_engine,
        "output_format": plan.output_format,
        "sample_rate": plan.sample_rate,
        "speed": plan.speed,
    });
    if let Some(e) = &plan.emotion {
        b["emotion"] = json!(e);
    }
    if let Some(g) = plan.style_guidance {
        b["style_guidance"] = json!(g);
    }
    for (k, v) in &plan.extra {
        b[k] = v.clone();
    }
    b
}

/// Splits `text` into pieces of at most `max` characters, at a sentence end or a space when
/// there is one in the second half of the window.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let half = window.len() / 2;
        let cut = window
            .rfind(['.', '!', '?', '\n'])
            .filter(|&i| i >= half)
            .map(|i| i + 1)
            .or_else(|| window.rfind(' ').filter(|&i| i >= half))
            .unwrap_or(end);
        out.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> PluginConfig {
        PluginConfig::from_value("plugins.tts.playht", v).unwrap()
    }

    #[test]
    fn settings_validate() {
        let s = Settings::default();
        assert_eq!(s.voice_engine, "Play3.0-mini");
        assert_eq!(s.linear16_format, "raw");
        let s = Settings::from_config(&cfg(json!({"voice_engine": "playht2.0-TURBO"}))).unwrap();
        assert_eq!(s.voice_engine, "PlayHT2.0-turbo");
        for bad in [
            json!({"voice_engine": "Play9"}),
            json!({"quality": "ultra"}),
            json!({"style_guidance": 50}),
            json!({"emotion_gender": "x"}),
            json!({"linear16_format": "wav"}),
        ] {
            assert!(Settings::from_config(&cfg(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn emotions_map_for_playht2_only() {
        assert_eq!(
            playht_emotion("Happy", "female").as_deref(),
            Some("female_happy")
        );
        assert_eq!(
            playht_emotion("scared", "male").as_deref(),
            Some("male_fearful")
        );
        assert_eq!(
            playht_emotion("male_angry", "female").as_deref(),
            Some("male_angry")
        );
        assert_eq!(playht_emotion("calm", "female"), None);
        let s = Settings::default();
        let mut c = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_model("PlayHT2.0");
        c.emotion.emotion = Some("sad".into());
        c.emotion.intensity = Some(0.5);
        let p = plan(&s, &c).unwrap();
        assert_eq!(p.emotion.as_deref(), Some("female_sad"));
        assert_eq!(p.style_guidance, Some(16.0));
        let p = plan(&s, &c.clone().with_model("Play3.0-mini")).unwrap();
        assert_eq!((p.emotion, p.style_guidance), (None, None));
    }

    #[test]
    fn plans_and_bodies() {
        let s = Settings::from_config(&cfg(json!({"quality": "high", "seed": 7}))).unwrap();
        let mut c = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000).with_voice("v1");
        c.speaking_rate = 9.0;
        let p = plan(&s, &c).unwrap();
        assert_eq!(p.accept, "audio/basic");
        assert_eq!(
            body(&p, "Hi"),
            json!({"text": "Hi", "voice": "v1", "voice_engine": "Play3.0-mini",
                   "output_format": "mulaw", "sample_rate": 8000, "speed": 5.0,
                   "quality": "high", "seed": 7})
        );
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Linear16, 11_025)).is_err());
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Wav, 24_000)).is_err());
        assert!(plan(
            &s,
            &TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_model("PlayDialog-turbo")
        )
        .is_err());
        assert_eq!(max_chars("Play3.0-mini"), 20_000);
        assert_eq!(max_chars("PlayDialog"), 2_000);
    }
}
