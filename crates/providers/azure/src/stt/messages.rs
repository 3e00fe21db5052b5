//! JSON bodies of the recognition messages (no I/O). `speech.startDetected` and
//! `speech.endDetected` (`SpeechDetected.ts`, `{Offset}`, possibly empty) carry nothing we map.
//!
//! Shapes from the JavaScript Speech SDK (`microsoft/cognitive-services-speech-sdk-js`,
//! `src/common.speech/ServiceMessages/*.ts`) and the fact sheet §5a. Every field is optional and
//! unknown fields are ignored: the service adds fields over time. Offsets and durations are
//! 100-ns ticks **relative to the start of the turn's audio** (the SDK adds
//! `currentTurnAudioOffset` to every `Offset` it parses).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Ticks per second (offsets and durations are in 100 ns units).
pub const TICKS_PER_SECOND: f64 = 10_000_000.0;

/// `PrimaryLanguage` (`SimpleSpeechPhrase.ts`, `IPrimaryLanguage`), present with language ID.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrimaryLanguage {
    /// BCP-47 locale.
    #[serde(default)]
    pub language: Option<String>,
}

/// `speech.hypothesis` and `speech.fragment` (`SpeechHypothesis.ts`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpeechHypothesis {
    /// The interim text. (`Offset`/`Duration` are not read: a transcript carries no span.)
    #[serde(default)]
    pub text: String,
    /// Detected language.
    #[serde(default)]
    pub primary_language: Option<PrimaryLanguage>,
    /// Speaker (conversation transcription).
    #[serde(default)]
    pub speaker_id: Option<String>,
}

/// One word of a detailed result (`DetailedSpeechPhrase.ts`, `IWord`; `Confidence` appears with
/// word-level confidence and is read when present).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WordTiming {
    /// The word.
    #[serde(default)]
    pub word: String,
    /// Ticks from the turn's start.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Ticks.
    #[serde(default)]
    pub duration: Option<f64>,
    /// 0–1, when reported.
    #[serde(default)]
    pub confidence: Option<f64>,
}

/// One alternative of a detailed result (`DetailedSpeechPhrase.ts`, `IPhrase`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NBest {
    /// 0–1.
    #[serde(rename = "Confidence", default)]
    pub confidence: Option<f64>,
    /// Raw recognised words.
    #[serde(rename = "Lexical", default)]
    pub lexical: Option<String>,
    /// Inverse-text-normalised form (numbers as digits), no punctuation.
    #[serde(rename = "ITN", default)]
    pub itn: Option<String>,
    /// ITN with profanity masked.
    #[serde(rename = "MaskedITN", default)]
    pub masked_itn: Option<String>,
    /// Display form: punctuation, capitalisation, ITN, profanity option applied.
    #[serde(rename = "Display", default)]
    pub display: Option<String>,
    /// Older alias of `Display` the SDK also reads.
    #[serde(rename = "DisplayText", default)]
    pub display_text: Option<String>,
    /// Word timings (`wordLevelTimestamps=true`).
    #[serde(rename = "Words", default)]
    pub words: Vec<WordTiming>,
}

/// `speech.phrase`, simple or detailed (`SimpleSpeechPhrase.ts`, `DetailedSpeechPhrase.ts`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpeechPhrase {
    /// A [`RecognitionStatus`] name, or its index (the SDK accepts both).
    #[serde(default)]
    pub recognition_status: Value,
    /// The simple format's text (also present in some detailed results). The phrase's own
    /// `Offset`/`Duration` are not read: word timings carry the times.
    #[serde(default)]
    pub display_text: Option<String>,
    /// Alternatives, best first (detailed format).
    #[serde(rename = "NBest", default)]
    pub nbest: Vec<NBest>,
    /// Detected language.
    #[serde(default)]
    pub primary_language: Option<PrimaryLanguage>,
    /// Speaker (conversation transcription).
    #[serde(default)]
    pub speaker_id: Option<String>,
}

/// `RecognitionStatus` (`ServiceMessages/Enums.ts`), in the SDK's order: the index form of the
/// field maps by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecognitionStatus {
    /// Recognised speech.
    Success,
    /// Speech heard, nothing recognised.
    NoMatch,
    /// Only silence at the start, for longer than the initial silence timeout.
    InitialSilenceTimeout,
    /// Only noise.
    BabbleTimeout,
    /// A service error; the SDK cancels recognition (`ServiceError`).
    Error,
    /// The end of a dictation; the SDK drops it (`EndOfDictation` → NoMatch, no event).
    EndOfDictation,
    /// Too many concurrent requests; the SDK cancels recognition.
    TooManyRequests,
    /// Invalid parameter or unsupported audio format; the SDK cancels recognition.
    BadRequest,
    /// A free subscription out of quota; the SDK cancels recognition.
    Forbidden,
}

impl RecognitionStatus {
    const ALL: [Self; 9] = [
        Self::Success,
        Self::NoMatch,
        Self::InitialSilenceTimeout,
        Self::BabbleTimeout,
        Self::Error,
        Self::EndOfDictation,
        Self::TooManyRequests,
        Self::BadRequest,
        Self::Forbidden,
    ];

    /// The name as the service writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::NoMatch => "NoMatch",
            Self::InitialSilenceTimeout => "InitialSilenceTimeout",
            Self::BabbleTimeout => "BabbleTimeout",
            Self::Error => "Error",
            Self::EndOfDictation => "EndOfDictation",
            Self::TooManyRequests => "TooManyRequests",
            Self::BadRequest => "BadRequest",
            Self::Forbidden => "Forbidden",
        }
    }

    /// Parses the name (`"Success"`) or index (`0`) form, as `mapRecognitionStatus` does.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Self::ALL.into_iter().find(|x| x.as_str() == s),
            Value::Number(n) => n
                .as_u64()
                .and_then(|i| Self::ALL.get(usize::try_from(i).ok()?).copied()),
            _ => None,
        }
    }
}

/// `speech.config` body (`SpeechServiceConfig.ts`: `{context:{system, os, audio:{source}},
/// recognition}`; keys are lower camel case). The service does not need it to recognise; it
/// describes the client and the audio source.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechConfig<'a> {
    /// Client description.
    pub context: ConfigContext<'a>,
    /// `conversation`, `dictation` or `interactive` (`RecognitionMode`, lower case).
    pub recognition: &'a str,
}

/// `speech.config` `context`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigContext<'a> {
    /// `System`: name, version, build, lang.
    pub system: ConfigSystem<'a>,
    /// `OS`: platform, name, version.
    pub os: ConfigOs<'a>,
    /// `{source: ISpeechConfigAudioDevice}`.
    pub audio: ConfigAudio,
}

/// `speech.config` `context.system`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSystem<'a> {
    /// Client name.
    pub name: &'a str,
    /// Client version.
    pub version: &'a str,
    /// Build flavour.
    pub build: &'a str,
    /// Language of the client.
    pub lang: &'a str,
}

/// `speech.config` `context.os`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigOs<'a> {
    /// Platform.
    pub platform: &'a str,
    /// OS name.
    pub name: &'a str,
    /// OS version.
    pub version: &'a str,
}

/// `speech.config` `context.audio`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigAudio {
    /// The audio source.
    pub source: ConfigAudioSource,
}

/// `ISpeechConfigAudioDevice` (`type` is `Stream` for pushed audio).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigAudioSource {
    /// `connectivity` enum; `Unknown` for a stream.
    pub connectivity: &'static str,
    /// `type` enum.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Hz.
    pub samplerate: u32,
    /// 16.
    pub bitspersample: u16,
    /// 1.
    pub channelcount: u16,
}

/// `speech.context` body: a phrase list as the SDK's `DynamicGrammarBuilder` builds it
/// (`{dgi:{groups:[{type:"Generic",items:[{text}]}],bias:1}}`), or `{}`.
pub fn speech_context(phrases: &[String]) -> String {
    if phrases.is_empty() {
        return "{}".to_owned();
    }
    let items: Vec<Value> = phrases
        .iter()
        .map(|p| serde_json::json!({ "text": p }))
        .collect();
    serde_json::json!({
        "dgi": { "groups": [{ "type": "Generic", "items": items }], "bias": 1.0 }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_parse_by_name_and_index() {
        let s = |v| RecognitionStatus::from_value(&v);
        assert_eq!(s(json!("Success")), Some(RecognitionStatus::Success));
        assert_eq!(
            s(json!("EndOfDictation")),
            Some(RecognitionStatus::EndOfDictation)
        );
        assert_eq!(s(json!(6)), Some(RecognitionStatus::TooManyRequests));
        assert_eq!(s(json!(9)), None);
        assert_eq!(s(json!("Bogus")), None);
        assert_eq!(s(Value::Null), None);
    }

    #[test]
    fn a_detailed_phrase_parses() {
        let p: SpeechPhrase = serde_json::from_str(
            r#"{"RecognitionStatus":"Success","Offset":5000000,"Duration":11000000,
            "NBest":[{"Confidence":0.93,"Lexical":"hello world","ITN":"hello world",
            "MaskedITN":"hello world","Display":"Hello world.",
            "Words":[{"Word":"hello","Offset":5000000,"Duration":4000000}]}],"Extra":1}"#,
        )
        .unwrap();
        assert_eq!(p.nbest[0].display.as_deref(), Some("Hello world."));
        assert_eq!(p.nbest[0].words[0].offset, Some(5e6));
        let empty: SpeechPhrase = serde_json::from_str("{}").unwrap();
        assert!(empty.nbest.is_empty());
    }

    #[test]
    fn speech_context_carries_a_phrase_list() {
        assert_eq!(speech_context(&[]), "{}");
        let v: Value = serde_json::from_str(&speech_context(&["Contoso".into()])).unwrap();
        assert_eq!(v["dgi"]["groups"][0]["type"], "Generic");
        assert_eq!(v["dgi"]["groups"][0]["items"][0]["text"], "Contoso");
    }
}
