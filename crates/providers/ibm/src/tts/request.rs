//! Building a `/v1/synthesize` request (no I/O): the output format, the SSML for rate and
//! speaking style, splitting long texts, and the voice listing's shape.
//!
//! Sources: cloud.ibm.com docs "The HTTP interface" and "Using audio formats" (table
//! "Supported audio formats"), "SSML elements" (`<prosody>`), "How to modify speech synthesis"
//! (`<express-as style="cheerful|empathetic|neutral|uncertain">`, expressive neural voices only),
//! "Listing information about voices"; watson-developer-cloud/node-sdk
//! `text-to-speech/v1-generated.ts` (`synthesize`: `accept` header, `voice` and
//! `customization_id` query, body `{text}`; "the default [endianness] is little endian").

use serde::Deserialize;
use waav_plugin_api::{AudioEncoding, Emotion, PluginError, VoiceInfo};

/// The service's limit on the text of one request (docs: "Text size is limited to 5 KB").
pub const MAX_TEXT_BYTES: usize = 5_000;
/// Rates `audio/ogg;codecs=opus` takes (docs "Using audio formats", Ogg Opus: "48000, 24000,
/// 16000, 12000, or 8000").
pub const OPUS_RATES: &[u32] = &[8_000, 12_000, 16_000, 24_000, 48_000];
/// The rate range the plugin declares: IBM resamples its 22,050 Hz output to any rate from
/// 8 kHz to 192 kHz; beyond 48 kHz is of no use to a voice gateway.
pub const RATE_RANGE: (u32, u32) = (8_000, 48_000);
/// Encodings produced, preferred first.
pub const ENCODINGS: &[AudioEncoding] = &[
    AudioEncoding::Linear16,
    AudioEncoding::Mulaw,
    AudioEncoding::Alaw,
    AudioEncoding::Mp3,
    AudioEncoding::Opus,
];

/// The `Accept` value for a session's format. linear16 asks for little-endian explicitly
/// (the documented default; the response's `content-type` is still checked, see
/// [`is_big_endian`]).
pub fn accept(encoding: AudioEncoding, rate: u32, ctx: &str) -> Result<String, PluginError> {
    let (lo, hi) = RATE_RANGE;
    if !(lo..=hi).contains(&rate) {
        return Err(PluginError::Config(format!(
            "{ctx}: unsupported sample rate {rate}; supported: {lo}–{hi} Hz"
        )));
    }
    Ok(match encoding {
        AudioEncoding::Linear16 => format!("audio/l16;rate={rate};endianness=little-endian"),
        AudioEncoding::Mulaw => format!("audio/mulaw;rate={rate}"),
        AudioEncoding::Alaw => format!("audio/alaw;rate={rate}"),
        AudioEncoding::Mp3 => format!("audio/mp3;rate={rate}"),
        AudioEncoding::Opus if OPUS_RATES.contains(&rate) => {
            format!("audio/ogg;codecs=opus;rate={rate}")
        }
        AudioEncoding::Opus => {
            return Err(PluginError::Config(format!(
                "{ctx}: Ogg Opus is produced at 8000, 12000, 16000, 24000 or 48000 Hz, not {rate}"
            )))
        }
        other => {
            return Err(PluginError::Config(format!(
                "{ctx}: unsupported encoding {other:?}; supported: linear16, mulaw, alaw, mp3, opus"
            )))
        }
    })
}

/// Whether a response `content-type` says big-endian PCM (`audio/l16;…;endianness=big-endian`).
pub fn is_big_endian(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("audio/l16")
        && ct
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "endianness=big-endian")
}

/// Swaps byte pairs of big-endian PCM16 across chunk boundaries.
#[derive(Debug, Default)]
pub struct Swapper {
    carry: Option<u8>,
}

impl Swapper {
    /// The little-endian bytes for `chunk` (an odd trailing byte waits for the next chunk).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 1);
        let mut rest = chunk;
        if let Some(hi) = self.carry.take() {
            match rest.split_first() {
                Some((&lo, tail)) => {
                    out.extend_from_slice(&[lo, hi]);
                    rest = tail;
                }
                None => {
                    self.carry = Some(hi);
                    return out;
                }
            }
        }
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            out.extend_from_slice(&[p[1], p[0]]);
        }
        self.carry = pairs.remainder().first().copied();
        out
    }
}

/// The speaking styles of `<express-as>` (docs "Using speaking styles").
const STYLES: &[(&str, &[&str])] = &[
    (
        "cheerful",
        &[
            "cheerful",
            "happy",
            "joyful",
            "excited",
            "enthusiastic",
            "positive",
            "upbeat",
            "friendly",
        ],
    ),
    (
        "empathetic",
        &[
            "empathetic",
            "sympathetic",
            "compassionate",
            "caring",
            "sad",
            "concerned",
            "apologetic",
            "gentle",
        ],
    ),
    ("neutral", &["neutral", "calm", "serious", "professional"]),
    (
        "uncertain",
        &["uncertain", "confused", "hesitant", "unsure", "doubtful"],
    ),
];

/// The `<express-as>` style for `emotion` with `voice`, if both allow one. Only the expressive
/// neural voices (`…Expressive`) take it; anything else is logged and ignored.
pub fn style_for(emotion: &Emotion, voice: &str) -> Option<&'static str> {
    if emotion.is_empty() {
        return None;
    }
    let wanted = [
        emotion.emotion.as_deref(),
        emotion.delivery_style.as_deref(),
    ];
    let style = wanted.iter().flatten().find_map(|w| {
        let w = w.trim().to_ascii_lowercase();
        STYLES
            .iter()
            .find(|(_, names)| names.contains(&w.as_str()))
            .map(|(s, _)| *s)
    });
    match style {
        None => {
            tracing::debug!(
                ?emotion,
                "ibm tts: no speaking style for this emotion; ignored"
            );
            None
        }
        Some(_) if !voice.to_ascii_lowercase().contains("expressive") => {
            tracing::debug!(
                voice,
                "ibm tts: speaking styles need an expressive neural voice; emotion ignored"
            );
            None
        }
        Some(s) => {
            if emotion.intensity.is_some() || emotion.description.is_some() {
                tracing::debug!("ibm tts: express-as has no intensity; only the style is used");
            }
            Some(s)
        }
    }
}

/// The `<prosody rate>` value for a speaking-rate multiplier (`1.5` → `+50%`), clamped to
/// −50%…+100%; `None` at the normal rate. (Relative percentages per SSML 1.1 `<prosody>`,
/// which the docs' "SSML elements" page lists as supported; the exact accepted range is
/// UNCONFIRMED.)
pub fn prosody_rate(speaking_rate: f32) -> Option<String> {
    if !speaking_rate.is_finite() || (speaking_rate - 1.0).abs() < 0.01 {
        return None;
    }
    let pct = ((speaking_rate.clamp(0.5, 2.0) - 1.0) * 100.0).round() as i32;
    (pct != 0).then(|| format!("{pct:+}%"))
}

/// Whether `text` is already SSML (then it is sent untouched).
pub fn is_ssml(text: &str) -> bool {
    text.trim_start().starts_with("<speak")
}

/// The text to send: plain text as is, or wrapped (escaped) in `<speak>` with `<express-as>`
/// and `<prosody>` when a style or rate applies. SSML input is never rewritten.
pub fn body_text(text: &str, style: Option<&str>, rate: Option<&str>) -> String {
    if is_ssml(text) || (style.is_none() && rate.is_none()) {
        if is_ssml(text) && (style.is_some() || rate.is_some()) {
            tracing::debug!("ibm tts: text is SSML already; speaking rate and style not applied");
        }
        return text.to_owned();
    }
    let mut inner = escape(text);
    if let Some(r) = rate {
        inner = format!("<prosody rate=\"{r}\">{inner}</prosody>");
    }
    if let Some(s) = style {
        inner = format!("<express-as style=\"{s}\">{inner}</express-as>");
    }
    format!("<speak>{inner}</speak>")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Splits plain text into pieces of at most `max` bytes, at sentence ends, else at whitespace,
/// else at a character boundary.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = window
            .rfind(['.', '!', '?', '\n'])
            .map(|i| i + 1)
            .filter(|&i| i > max / 4)
            .or_else(|| window.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(cut);
        let (head, tail) = rest.split_at(at);
        if !head.trim().is_empty() {
            out.push(head.trim());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// `GET /v1/voices` (API reference `Voices` / `Voice`).
#[derive(Debug, Deserialize)]
pub struct VoiceList {
    /// The voices (order not stable).
    #[serde(default)]
    pub voices: Vec<Voice>,
}

/// One voice of the listing.
#[derive(Debug, Deserialize)]
pub struct Voice {
    /// `en-US_LisaV3Voice`.
    pub name: String,
    /// `en-US`.
    #[serde(default)]
    pub language: String,
    /// `female` / `male`.
    #[serde(default)]
    pub gender: String,
    /// `Lisa: American English female voice.`
    #[serde(default)]
    pub description: String,
}

/// The listing as [`VoiceInfo`]s, sorted by id: the readable name is the description's part
/// before `:` (`Lisa`), else the id; the accent is the rest of the description's first words
/// before the gender (`American English`).
pub fn voices(body: &[u8]) -> Result<Vec<VoiceInfo>, serde_json::Error> {
    let list: VoiceList = serde_json::from_slice(body)?;
    let mut out: Vec<VoiceInfo> = list
        .voices
        .into_iter()
        .filter(|v| !v.name.is_empty())
        .map(|v| {
            let (name, rest) = match v.description.split_once(':') {
                Some((n, r)) if !n.trim().is_empty() => (n.trim().to_owned(), r.trim()),
                _ => (v.name.clone(), ""),
            };
            let accent = if v.gender.is_empty() {
                ""
            } else {
                rest.split_once(&format!(" {}", v.gender))
                    .map_or("", |(a, _)| a.trim())
            };
            VoiceInfo {
                id: v.name,
                sample: String::new(),
                name,
                accent: accent.to_owned(),
                gender: v.gender,
                language: v.language,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The message of a Watson error body `{"code": 400, "code_description": "…", "error": "…"}`.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let mut m = match e {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(d) = v.get("code_description").and_then(|d| d.as_str()) {
        m = format!("{m} ({d})");
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        let ctx = "ibm tts";
        assert_eq!(
            accept(AudioEncoding::Linear16, 22_050, ctx).unwrap(),
            "audio/l16;rate=22050;endianness=little-endian"
        );
        assert_eq!(
            accept(AudioEncoding::Mulaw, 8_000, ctx).unwrap(),
            "audio/mulaw;rate=8000"
        );
        assert_eq!(
            accept(AudioEncoding::Opus, 48_000, ctx).unwrap(),
            "audio/ogg;codecs=opus;rate=48000"
        );
        assert!(accept(AudioEncoding::Opus, 22_050, ctx).is_err());
        assert!(accept(AudioEncoding::Wav, 22_050, ctx).is_err());
        assert!(accept(AudioEncoding::Linear16, 96_000, ctx).is_err());
        assert!(is_big_endian(
            "audio/l16; rate=22050; endianness=big-endian"
        ));
        assert!(!is_big_endian("audio/l16;rate=22050"));
    }

    #[test]
    fn swaps_across_chunks() {
        let mut s = Swapper::default();
        let mut out = s.push(&[0x01, 0x02, 0x03]);
        out.extend(s.push(&[]));
        out.extend(s.push(&[0x04, 0x05, 0x06]));
        assert_eq!(out, [0x02, 0x01, 0x04, 0x03, 0x06, 0x05]);
    }

    #[test]
    fn ssml_wrapping() {
        assert_eq!(body_text("Hi & bye", None, None), "Hi & bye");
        assert_eq!(
            body_text("Hi & <bye>", Some("cheerful"), Some("+20%")),
            "<speak><express-as style=\"cheerful\"><prosody rate=\"+20%\">Hi &amp; &lt;bye&gt;</prosody></express-as></speak>"
        );
        assert_eq!(
            body_text("<speak>x</speak>", Some("cheerful"), None),
            "<speak>x</speak>"
        );
        assert_eq!(prosody_rate(1.0), None);
        assert_eq!(prosody_rate(1.5).as_deref(), Some("+50%"));
        assert_eq!(prosody_rate(0.1).as_deref(), Some("-50%"));
        let happy = Emotion {
            emotion: Some("Happy".into()),
            ..Emotion::default()
        };
        assert_eq!(style_for(&happy, "en-US_EmmaExpressive"), Some("cheerful"));
        assert_eq!(style_for(&happy, "en-US_MichaelV3Voice"), None);
        let odd = Emotion {
            emotion: Some("furious".into()),
            ..Emotion::default()
        };
        assert_eq!(style_for(&odd, "en-US_EmmaExpressive"), None);
    }

    #[test]
    fn splits_long_text() {
        let text = "One two three. Four five six. Seven eight nine.";
        let parts = split_text(text, 20);
        assert!(parts.iter().all(|p| p.len() <= 20), "{parts:?}");
        assert_eq!(parts.join(" "), text);
        let long = "é".repeat(30);
        let parts = split_text(&long, 7);
        assert!(parts.iter().all(|p| p.len() <= 7));
        assert_eq!(parts.concat(), long);
        assert_eq!(split_text("  short  ", 100), ["short"]);
    }

    #[test]
    fn voice_listing() {
        let v = voices(
            br#"{"voices":[{"name":"en-US_MichaelV3Voice","language":"en-US","gender":"male","url":"u",
            "description":"Michael: American English male voice."},
            {"name":"en-GB_KateV3Voice","language":"en-GB","gender":"female","description":"Kate: British English female voice."},
            {"name":"x","language":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].id, "en-GB_KateV3Voice");
        assert_eq!(v[0].name, "Kate");
        assert_eq!(v[0].accent, "British English");
        assert_eq!(v[1].gender, "male");
        assert_eq!(v[2].name, "x");
        assert!(voices(br#"{"voices": 5}"#).is_err());
        assert_eq!(
            error_message(
                br#"{"code":404,"code_description":"Not Found","error":"Model not found"}"#
            )
            .as_deref(),
            Some("Model not found (Not Found)")
        );
    }
}
