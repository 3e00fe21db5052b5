//! The SSML Polly gets for the speaking rate and the delivery style.
//!
//! Tags from the Polly Developer Guide, "Supported SSML tags" (`supportedtags.html`):
//! `<prosody rate="N%">` (partially available on neural, long-form and generative voices: rate
//! works, pitch does not), `<amazon:domain name="news">` (neural only: "all tags except
//! `<amazon:domain name="news">` are supported for Standard voices"), `<amazon:domain
//! name="conversational">` (neural), and `<amazon:effect name="whispered">` (standard voices;
//! not available on neural, **UNCONFIRMED** beyond the table's summary).
//!
//! Mapping decision: Polly has no emotion control, so `emotion` (happy, sad…) and `intensity`
//! are ignored with a debug log. `delivery_style` maps where a tag exists for the engine:
//! `news`/`newscaster` → news domain and `conversational` → conversational domain on the neural
//! engine; `whispered`/`whisper` → whispered effect on the standard engine. Anything else is
//! ignored with a debug log.

use waav_plugin_api::Emotion;

/// A style element wrapped around the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `<amazon:domain name="news">`.
    News,
    /// `<amazon:domain name="conversational">`.
    Conversational,
    /// `<amazon:effect name="whispered">`.
    Whispered,
}

impl Style {
    fn open(self) -> &'static str {
        match self {
            Self::News => "<amazon:domain name=\"news\">",
            Self::Conversational => "<amazon:domain name=\"conversational\">",
            Self::Whispered => "<amazon:effect name=\"whispered\">",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Self::News | Self::Conversational => "</amazon:domain>",
            Self::Whispered => "</amazon:effect>",
        }
    }
}

/// The `<prosody rate>` percentage for a speaking rate, or `None` for the normal rate. Polly
/// takes 20%–200% (`prosody-tag.md`); other rates are clamped.
pub fn rate_percent(rate: f32) -> Option<u32> {
    if !rate.is_finite() || rate <= 0.0 {
        return None;
    }
    let pct = (rate * 100.0).round().clamp(20.0, 200.0) as u32;
    (pct != 100).then_some(pct)
}

/// The style element for the session's emotion hints on `engine`, if any.
pub fn style(e: &Emotion, engine: &str) -> Option<Style> {
    if e.emotion.is_some() || e.intensity.is_some() || e.description.is_some() {
        tracing::debug!(
            emotion = ?e.emotion,
            "aws polly: no emotion control in Polly; emotion, intensity and description ignored"
        );
    }
    let wanted = e.delivery_style.as_deref()?.trim().to_ascii_lowercase();
    let style = match (wanted.as_str(), engine) {
        ("news" | "newscaster", "neural") => Some(Style::News),
        ("conversational", "neural") => Some(Style::Conversational),
        ("whispered" | "whisper", "standard") => Some(Style::Whispered),
        _ => None,
    };
    if style.is_none() {
        tracing::debug!(
            style = wanted.as_str(),
            engine,
            "aws polly: delivery style has no Polly tag for this engine; ignored"
        );
    }
    style
}

/// `text` escaped for XML character data and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Plain `text` as an SSML document with the rate and style applied.
pub fn wrap(text: &str, rate_percent: Option<u32>, style: Option<Style>) -> String {
    let mut out = String::with_capacity(text.len() + 96);
    out.push_str("<speak>");
    if let Some(s) = style {
        out.push_str(s.open());
    }
    if let Some(p) = rate_percent {
        out.push_str(&format!("<prosody rate=\"{p}%\">"));
    }
    out.push_str(&escape(text));
    if rate_percent.is_some() {
        out.push_str("</prosody>");
    }
    if let Some(s) = style {
        out.push_str(s.close());
    }
    out.push_str("</speak>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_styles_and_escaping() {
        assert_eq!(rate_percent(1.0), None);
        assert_eq!(rate_percent(1.5), Some(150));
        assert_eq!(rate_percent(9.0), Some(200));
        assert_eq!(rate_percent(0.01), Some(20));
        assert_eq!(rate_percent(f32::NAN), None);
        let e = |s: &str| Emotion {
            delivery_style: Some(s.into()),
            ..Emotion::default()
        };
        assert_eq!(style(&e("News"), "neural"), Some(Style::News));
        assert_eq!(style(&e("news"), "standard"), None);
        assert_eq!(style(&e("whispered"), "standard"), Some(Style::Whispered));
        assert_eq!(style(&e("whispered"), "neural"), None);
        assert_eq!(style(&e("storytelling"), "neural"), None);
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
        assert_eq!(
            wrap("x", Some(80), Some(Style::Conversational)),
            "<speak><amazon:domain name=\"conversational\"><prosody rate=\"80%\">x</prosody></amazon:domain></speak>"
        );
    }
}
