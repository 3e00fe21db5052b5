//! The SSML document of one request: the voice, the speaking rate and the speaking style.
//!
//! From `speech-synthesis-markup-voice.md` (MicrosoftDocs/azure-ai-docs, checked):
//! - `<prosody rate>`: "a number preceded by "+" (optionally) or "-" and followed by "%"",
//!   and "the rate changes should be within 0.5 to 2 times the original audio": a speaking
//!   rate `r` becomes `rate='+N%'` with `N = round((r − 1) × 100)`, clamped to −50…+100.
//! - `<mstts:express-as style styledegree role>` (namespace `https://www.w3.org/2001/mstts`):
//!   `style` is required ("if the style value is missing or invalid, the entire
//!   `mstts:express-as` element is ignored"), `styledegree` "0.01 to 2 inclusive", default 1;
//!   `role` one of eight role-play values. `prosody` may not contain `express-as`, so the
//!   style element wraps the prosody element.
//!
//! Mapping decision: `emotion` (or, when it has no Azure style, `delivery_style`) names an
//! Azure style: the documented style names pass as they are, and common names map onto them
//! ([`style_for`]); `intensity` 0–1 becomes `styledegree` 0.01–2 (0.5 is the default degree
//! 1). Which styles a voice has is in its `StyleList` (voice listing); the plugin does not
//! check it (that would need the listing before every session), and the service ignores a
//! style the voice lacks. `description` has no SSML control and is ignored with a debug log.

use waav_plugin_api::Emotion;

/// The SSML namespace.
pub const SSML_NS: &str = "http://www.w3.org/2001/10/synthesis";
/// The Microsoft extension namespace (`mstts:`).
pub const MSTTS_NS: &str = "https://www.w3.org/2001/mstts";

/// The `style` values the SSML docs list (the `mstts:express-as` style table).
pub const STYLES: &[&str] = &[
    "advertisement_upbeat",
    "affectionate",
    "angry",
    "assistant",
    "calm",
    "chat",
    "cheerful",
    "customerservice",
    "depressed",
    "disgruntled",
    "documentary-narration",
    "embarrassed",
    "empathetic",
    "envious",
    "excited",
    "fearful",
    "friendly",
    "gentle",
    "hopeful",
    "lyrical",
    "narration-professional",
    "narration-relaxed",
    "newscast",
    "newscast-casual",
    "newscast-formal",
    "poetry-reading",
    "sad",
    "serious",
    "shouting",
    "sports_commentary",
    "sports_commentary_excited",
    "whispering",
    "terrified",
    "unfriendly",
];

/// Common emotion and delivery names → Azure styles (documented names map to themselves).
const ALIASES: &[(&str, &str)] = &[
    ("happy", "cheerful"),
    ("joyful", "cheerful"),
    ("joy", "cheerful"),
    ("positive", "cheerful"),
    ("enthusiastic", "excited"),
    ("energetic", "excited"),
    ("sadness", "sad"),
    ("sorrowful", "sad"),
    ("melancholic", "depressed"),
    ("anger", "angry"),
    ("mad", "angry"),
    ("annoyed", "disgruntled"),
    ("frustrated", "disgruntled"),
    ("afraid", "fearful"),
    ("scared", "fearful"),
    ("fear", "fearful"),
    ("nervous", "fearful"),
    ("panicked", "terrified"),
    ("relaxed", "calm"),
    ("soothing", "calm"),
    ("warm", "friendly"),
    ("kind", "friendly"),
    ("cold", "unfriendly"),
    ("hostile", "unfriendly"),
    ("caring", "empathetic"),
    ("empathic", "empathetic"),
    ("sympathetic", "empathetic"),
    ("soft", "gentle"),
    ("tender", "affectionate"),
    ("loving", "affectionate"),
    ("optimistic", "hopeful"),
    ("stern", "serious"),
    ("ashamed", "embarrassed"),
    ("jealous", "envious"),
    ("whisper", "whispering"),
    ("whispered", "whispering"),
    ("shout", "shouting"),
    ("shouted", "shouting"),
    ("yelling", "shouting"),
    ("storytelling", "narration-relaxed"),
    ("narration", "narration-relaxed"),
    ("narrative", "narration-relaxed"),
    ("professional", "narration-professional"),
    ("documentary", "documentary-narration"),
    ("news", "newscast"),
    ("newscaster", "newscast"),
    ("conversational", "chat"),
    ("casual", "chat"),
    ("customer-service", "customerservice"),
    ("customer_service", "customerservice"),
    ("support", "customerservice"),
    ("poetry", "poetry-reading"),
    ("poetic", "poetry-reading"),
    ("sports", "sports_commentary"),
    ("advertisement", "advertisement_upbeat"),
    ("promotional", "advertisement_upbeat"),
    ("upbeat", "advertisement_upbeat"),
];

/// The Azure style for an emotion or delivery name (case-insensitive), if any.
pub fn style_for(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_lowercase().replace(' ', "-");
    if let Some(s) = STYLES.iter().find(|s| **s == n) {
        return Some(s);
    }
    ALIASES.iter().find(|(a, _)| *a == n).map(|(_, s)| *s)
}

/// The `rate` attribute for a speaking rate, or `None` for the normal rate.
pub fn rate_attr(rate: f32) -> Option<String> {
    if !rate.is_finite() || rate <= 0.0 {
        return None;
    }
    let pct = ((rate - 1.0) * 100.0).round().clamp(-50.0, 100.0) as i32;
    match pct {
        0 => None,
        p if p > 0 => Some(format!("+{p}%")),
        p => Some(format!("{p}%")),
    }
}

/// `styledegree` for an intensity 0–1: twice the intensity, within 0.01–2, two decimals.
pub fn style_degree(intensity: f32) -> Option<String> {
    if !intensity.is_finite() {
        return None;
    }
    let d = (intensity.clamp(0.0, 1.0) * 2.0).clamp(0.01, 2.0);
    let s = format!("{d:.2}");
    Some(s.trim_end_matches('0').trim_end_matches('.').to_owned())
}

/// The `mstts:express-as` attributes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// `style`.
    pub style: &'static str,
    /// `styledegree`, when an intensity was given.
    pub degree: Option<String>,
    /// `role`, from the plugin config.
    pub role: Option<String>,
}

/// The style element for a session's emotion hints, if any.
pub fn style(e: &Emotion, role: Option<&str>) -> Option<Style> {
    let clean = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let emotion = clean(&e.emotion);
    let delivery = clean(&e.delivery_style);
    let from_emotion = emotion.as_deref().and_then(style_for);
    let from_delivery = delivery.as_deref().and_then(style_for);
    if let (Some(name), None) = (&emotion, from_emotion) {
        tracing::debug!(emotion = %name, "azure tts: no Azure style for this emotion; ignored");
    }
    if let (Some(name), None) = (&delivery, from_delivery) {
        tracing::debug!(style = %name, "azure tts: no Azure style for this delivery style; ignored");
    }
    if let (Some(_), Some(d)) = (from_emotion, from_delivery) {
        tracing::debug!(
            style = d,
            "azure tts: one style per request; the emotion's wins over the delivery style"
        );
    }
    if clean(&e.description).is_some() {
        tracing::debug!("azure tts: emotion description has no SSML control; ignored");
    }
    let Some(style) = from_emotion.or(from_delivery) else {
        if e.intensity.is_some() {
            tracing::debug!("azure tts: intensity without a style; ignored");
        }
        return None;
    };
    Some(Style {
        style,
        degree: e.intensity.and_then(style_degree),
        role: role.map(str::to_owned),
    })
}

/// `text` escaped for XML character data and (single- or double-quoted) attribute values.
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
            '\u{FFFE}' | '\u{FFFF}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The SSML document for `text` (plain text, escaped here).
pub fn document(
    language: &str,
    voice: &str,
    rate: Option<&str>,
    style: Option<&Style>,
    text: &str,
) -> String {
    let mut out = String::with_capacity(text.len() + 320);
    out.push_str(&format!(
        "<speak version='1.0' xmlns='{SSML_NS}' xmlns:mstts='{MSTTS_NS}' xml:lang='{}'>",
        escape(language)
    ));
    out.push_str(&format!("<voice name='{}'>", escape(voice)));
    if let Some(s) = style {
        out.push_str(&format!("<mstts:express-as style='{}'", s.style));
        if let Some(d) = &s.degree {
            out.push_str(&format!(" styledegree='{d}'"));
        }
        if let Some(r) = &s.role {
            out.push_str(&format!(" role='{}'", escape(r)));
        }
        out.push('>');
    }
    if let Some(r) = rate {
        out.push_str(&format!("<prosody rate='{r}'>"));
    }
    out.push_str(&escape(text));
    if rate.is_some() {
        out.push_str("</prosody>");
    }
    if style.is_some() {
        out.push_str("</mstts:express-as>");
    }
    out.push_str("</voice></speak>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate_attr(1.0), None);
        assert_eq!(rate_attr(1.1).as_deref(), Some("+10%"));
        assert_eq!(rate_attr(0.8).as_deref(), Some("-20%"));
        assert_eq!(rate_attr(9.0).as_deref(), Some("+100%"));
        assert_eq!(rate_attr(0.1).as_deref(), Some("-50%"));
        assert_eq!(rate_attr(f32::NAN), None);
        assert_eq!(rate_attr(0.0), None);
    }

    #[test]
    fn styles_and_degrees() {
        assert_eq!(style_for("Happy"), Some("cheerful"));
        assert_eq!(style_for("whispered"), Some("whispering"));
        assert_eq!(style_for("narration-relaxed"), Some("narration-relaxed"));
        assert_eq!(style_for("customer service"), Some("customerservice"));
        assert_eq!(style_for("bored"), None);
        assert_eq!(style_degree(0.75).as_deref(), Some("1.5"));
        assert_eq!(style_degree(0.0).as_deref(), Some("0.01"));
        assert_eq!(style_degree(3.0).as_deref(), Some("2"));
        assert_eq!(style_degree(0.333).as_deref(), Some("0.67"));
        let e = Emotion {
            emotion: Some("bored".into()),
            intensity: Some(0.9),
            delivery_style: Some("whispered".into()),
            description: None,
        };
        assert_eq!(
            style(&e, Some("Narrator")),
            Some(Style {
                style: "whispering",
                degree: Some("1.8".into()),
                role: Some("Narrator".into()),
            })
        );
        let e = Emotion {
            emotion: Some("sad".into()),
            delivery_style: Some("whispered".into()),
            ..Emotion::default()
        };
        assert_eq!(style(&e, None).unwrap().style, "sad");
        assert_eq!(style(&Emotion::default(), None), None);
    }

    #[test]
    fn documents() {
        let s = Style {
            style: "cheerful",
            degree: Some("1.5".into()),
            role: None,
        };
        assert_eq!(
            document(
                "en-US",
                "en-US-JennyNeural",
                Some("+10%"),
                Some(&s),
                "a<b & 'c'\u{1}"
            ),
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' \
             xmlns:mstts='https://www.w3.org/2001/mstts' xml:lang='en-US'>\
             <voice name='en-US-JennyNeural'><mstts:express-as style='cheerful' styledegree='1.5'>\
             <prosody rate='+10%'>a&lt;b &amp; &apos;c&apos; </prosody></mstts:express-as>\
             </voice></speak>"
        );
        assert_eq!(
            document("de-DE", "x", None, None, "hi"),
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' \
             xmlns:mstts='https://www.w3.org/2001/mstts' xml:lang='de-DE'>\
             <voice name='x'>hi</voice></speak>"
        );
    }
}
