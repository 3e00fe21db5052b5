//! Polly's JSON: the `DescribeVoices` output and restJson1 error bodies. No I/O.

use serde::Deserialize;
use waav_plugin_api::{ErrorCategory, VoiceInfo};

/// `DescribeVoicesOutput` (botocore `polly/2016-06-10/service-2.json`: `Voices`, `NextToken`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeVoicesOutput {
    /// The voices of this page.
    #[serde(default)]
    pub voices: Vec<Voice>,
    /// Present when more pages follow.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `Voice` (same source): `Gender`, `Id`, `LanguageCode`, `LanguageName`, `Name`,
/// `AdditionalLanguageCodes`, `SupportedEngines`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Voice {
    /// The id `SynthesizeSpeech` takes.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `Female` or `Male`.
    #[serde(default)]
    pub gender: Option<String>,
    /// BCP-47-like language code.
    #[serde(default)]
    pub language_code: Option<String>,
    /// Language name in English (used as the accent: "US English", "British English").
    #[serde(default)]
    pub language_name: Option<String>,
    /// Engines the voice supports.
    #[serde(default)]
    pub supported_engines: Vec<String>,
}

impl From<Voice> for VoiceInfo {
    fn from(v: Voice) -> Self {
        VoiceInfo {
            name: v.name.unwrap_or_else(|| v.id.clone()),
            id: v.id,
            sample: if v.supported_engines.is_empty() {
                String::new()
            } else {
                format!("engines: {}", v.supported_engines.join(", "))
            },
            accent: v.language_name.unwrap_or_default(),
            gender: v.gender.unwrap_or_default().to_ascii_lowercase(),
            language: v.language_code.unwrap_or_default(),
        }
    }
}

/// The error name of a restJson1 error: the `x-amzn-ErrorType` header (`Name:uri` form
/// allowed), else the body's `__type` (`namespace#Name` allowed) or `code`/`Code`. The Smithy
/// restJson1 specification ("Operation error serialization") defines these places; the header
/// form is **UNCONFIRMED** for Polly specifically.
pub fn error_name(header: Option<&str>, body: &[u8]) -> Option<String> {
    let clean = |s: &str| {
        let s = s.split(':').next().unwrap_or(s);
        let s = s.rsplit('#').next().unwrap_or(s);
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    if let Some(n) = header.and_then(clean) {
        return Some(n);
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["__type", "code", "Code"]
        .iter()
        .find_map(|k| v.get(k)?.as_str().and_then(clean))
}

/// The message of a restJson1 error body (`message` in Polly's error shapes, `Message` in
/// some services).
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["message", "Message", "errorMessage"]
        .iter()
        .find_map(|k| v.get(k)?.as_str().map(str::to_owned))
}

/// The category of a Polly error name; `None` for names we do not know (the status decides).
///
/// From the modelled errors of `SynthesizeSpeech` / `DescribeVoices` (service-2.json) and the
/// common AWS errors (`ThrottlingException`, `UnrecognizedClientException`, …).
pub fn error_category(name: &str) -> Option<ErrorCategory> {
    Some(match name {
        "ThrottlingException"
        | "TooManyRequestsException"
        | "LimitExceededException"
        | "RequestLimitExceeded" => ErrorCategory::RateLimited,
        "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "AccessDeniedException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken" => ErrorCategory::Auth,
        // The text itself: no retry or reconfiguration makes it pass.
        "TextLengthExceededException" | "InvalidSsmlException" => ErrorCategory::Permanent,
        "EngineNotSupportedException"
        | "InvalidSampleRateException"
        | "LanguageNotSupportedException"
        | "LexiconNotFoundException"
        | "MarksNotSupportedForFormatException"
        | "SsmlMarksNotSupportedForTextTypeException"
        | "InvalidNextTokenException"
        | "ValidationException"
        | "InvalidParameterValueException" => ErrorCategory::Config,
        "ServiceFailureException"
        | "ServiceUnavailableException"
        | "InternalFailure"
        | "InternalFailureException" => ErrorCategory::Transient,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_and_errors_parse() {
        let body = br#"{"Voices":[{"Gender":"Female","Id":"Joanna","LanguageCode":"en-US","LanguageName":"US English","Name":"Joanna","AdditionalLanguageCodes":[],"SupportedEngines":["neural","standard"]},{"Id":"X"}],"NextToken":null}"#;
        let out: DescribeVoicesOutput = serde_json::from_slice(body).unwrap();
        assert!(out.next_token.is_none());
        let v: Vec<VoiceInfo> = out.voices.into_iter().map(Into::into).collect();
        assert_eq!(v[0].gender, "female");
        assert_eq!(v[0].accent, "US English");
        assert_eq!(v[0].sample, "engines: neural, standard");
        assert_eq!(v[1].name, "X");
        assert_eq!(
            error_name(Some("ThrottlingException:http://internal.amazon.com/"), b""),
            Some("ThrottlingException".into())
        );
        assert_eq!(
            error_name(
                None,
                br#"{"__type":"com.amazonaws.polly#InvalidSsmlException"}"#
            ),
            Some("InvalidSsmlException".into())
        );
        assert_eq!(error_name(None, b"<html>"), None);
        assert_eq!(error_message(br#"{"message":"bad"}"#), Some("bad".into()));
        assert_eq!(
            error_category("UnrecognizedClientException"),
            Some(ErrorCategory::Auth)
        );
        assert_eq!(error_category("Whatever"), None);
    }
}
