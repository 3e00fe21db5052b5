//! Deepgram speak wire messages: WebSocket control messages both ways, REST error bodies and the
//! `/v1/models` listing. Unknown fields are ignored everywhere (the SDK models use
//! `extra="allow"`).

use serde::Deserialize;
use waav_plugin_api::VoiceInfo;

/// `{"type":"Speak","text":…}` (python SDK `speak/v1/types/speak_v1text.py`).
pub fn speak(text: &str) -> String {
    serde_json::json!({"type": "Speak", "text": text}).to_string()
}

/// `{"type":"Flush"}` (`speak_v1flush.py`; docs tts-ws-flush).
pub const FLUSH: &str = r#"{"type":"Flush"}"#;
/// `{"type":"Clear"}` (`speak_v1clear.py`; docs tts-ws-clear).
pub const CLEAR: &str = r#"{"type":"Clear"}"#;
/// `{"type":"Close"}` (`speak_v1close.py`; docs tts-ws-close: the server closes with 1000).
pub const CLOSE: &str = r#"{"type":"Close"}"#;

/// A server text frame we act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Server {
    /// `Metadata` (`speak_v1metadata.py`): sent first.
    Metadata {
        /// `request_id`.
        request_id: String,
        /// `model_name`.
        model_name: String,
    },
    /// `Flushed` (`speak_v1flushed.py`): all audio of a Flush was sent.
    Flushed {
        /// `sequence_id`.
        sequence_id: Option<i64>,
    },
    /// `Cleared` (`speak_v1cleared.py`): the buffer was dropped after a Clear.
    Cleared {
        /// `sequence_id`.
        sequence_id: Option<i64>,
    },
    /// `Warning` (`speak_v1warning.py`: `description`, `code`; the v3 SDK's
    /// `clients/speak/v1/websocket/response.py` had `warn_code`, `warn_msg`).
    Warning {
        /// `code` or `warn_code`.
        code: String,
        /// `description` or `warn_msg`.
        description: String,
    },
    /// Another `type` (a newer message), or a frame that is not a typed JSON object.
    Other(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    request_id: Option<serde_json::Value>,
    model_name: Option<serde_json::Value>,
    sequence_id: Option<serde_json::Value>,
    code: Option<serde_json::Value>,
    description: Option<serde_json::Value>,
    warn_code: Option<serde_json::Value>,
    warn_msg: Option<serde_json::Value>,
}

fn text(v: Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Parses a server text frame; never fails (garbage becomes [`Server::Other`]).
pub fn parse_server(frame: &str) -> Server {
    let Ok(raw) = serde_json::from_str::<Raw>(frame) else {
        return Server::Other("not a JSON object".into());
    };
    let seq = |v: Option<serde_json::Value>| v.and_then(|v| v.as_i64());
    match raw.kind.as_deref() {
        Some("Metadata") => Server::Metadata {
            request_id: text(raw.request_id),
            model_name: text(raw.model_name),
        },
        Some("Flushed") => Server::Flushed {
            sequence_id: seq(raw.sequence_id),
        },
        Some("Cleared") => Server::Cleared {
            sequence_id: seq(raw.sequence_id),
        },
        Some("Warning") => Server::Warning {
            code: text(raw.code.or(raw.warn_code)),
            description: text(raw.description.or(raw.warn_msg)),
        },
        Some(other) => Server::Other(other.to_owned()),
        None => Server::Other("no type".into()),
    }
}

/// The readable part of a REST error body, in either documented shape (`err_code`/`err_msg`, or
/// `category`/`message`/`details`; developers.deepgram.com reference/errors). `None` if the body
/// is not such JSON.
pub fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Err {
        err_code: Option<serde_json::Value>,
        err_msg: Option<serde_json::Value>,
        category: Option<serde_json::Value>,
        message: Option<serde_json::Value>,
        details: Option<serde_json::Value>,
    }
    let e: Err = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = [
        e.err_code.or(e.category),
        e.err_msg.or(e.message),
        e.details,
    ]
    .into_iter()
    .map(text)
    .filter(|s| !s.is_empty())
    .collect();
    (!parts.is_empty()).then(|| parts.join(": "))
}

/// One `tts` entry of `GET /v1/models` (@deepgram/sdk `GetModelsResponse.ts`).
#[derive(Debug, Deserialize)]
struct TtsModel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    canonical_name: Option<String>,
    #[serde(default)]
    languages: Vec<serde_json::Value>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    accent: Option<serde_json::Value>,
    #[serde(default)]
    sample: Option<serde_json::Value>,
    /// UNCONFIRMED in the SDK types; seen as `["feminine", …]` in the docs' example.
    #[serde(default)]
    tags: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Models {
    #[serde(default)]
    tts: Vec<serde_json::Value>,
}

/// The `tts` models of a `/v1/models` body as voices (`id` = `canonical_name`, the value the
/// `model` query parameter takes). Entries without a canonical name, or not objects, are skipped.
pub fn voices(body: &[u8]) -> Result<Vec<VoiceInfo>, serde_json::Error> {
    let models: Models = serde_json::from_slice(body)?;
    let mut out = Vec::new();
    for entry in models.tts {
        let Ok(m) = serde_json::from_value::<TtsModel>(entry) else {
            continue;
        };
        let Some(id) = m.canonical_name.filter(|s| !s.is_empty()) else {
            continue;
        };
        let meta = m.metadata.unwrap_or_default();
        let tags: Vec<String> = meta.tags.into_iter().map(|t| text(Some(t))).collect();
        let gender = if tags.iter().any(|t| t.eq_ignore_ascii_case("feminine")) {
            "female"
        } else if tags.iter().any(|t| t.eq_ignore_ascii_case("masculine")) {
            "male"
        } else {
            ""
        };
        let langs: Vec<String> = m.languages.into_iter().map(|l| text(Some(l))).collect();
        // Prefer a regional tag (`en-US`) over the bare language.
        let language = langs
            .iter()
            .find(|l| l.contains('-'))
            .or(langs.first())
            .cloned()
            .unwrap_or_default();
        let name = m.name.filter(|s| !s.is_empty()).map_or_else(
            || id.clone(),
            |n| {
                let mut c = n.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            },
        );
        out.push(VoiceInfo {
            id,
            sample: text(meta.sample),
            name,
            accent: text(meta.accent),
            gender: gender.to_owned(),
            language,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages() {
        assert_eq!(
            parse_server(r#"{"type":"Flushed","sequence_id":3,"x":1}"#),
            Server::Flushed {
                sequence_id: Some(3)
            }
        );
        assert_eq!(
            parse_server(r#"{"type":"Warning","warn_code":"W","warn_msg":"m"}"#),
            Server::Warning {
                code: "W".into(),
                description: "m".into()
            }
        );
        assert!(matches!(parse_server("[1]"), Server::Other(_)));
        assert!(matches!(parse_server("nope"), Server::Other(_)));
        assert!(matches!(
            parse_server(r#"{"type":"Flushed","sequence_id":"x"}"#),
            Server::Flushed { sequence_id: None }
        ));
        let v: serde_json::Value = serde_json::from_str(&speak("a \"b\"")).unwrap();
        assert_eq!(v, serde_json::json!({"type": "Speak", "text": "a \"b\""}));
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"err_code":"Bad Request","err_msg":"bad model","request_id":"r"}"#)
                .as_deref(),
            Some("Bad Request: bad model")
        );
        assert_eq!(
            error_message(br#"{"category":"INVALID_JSON","message":"Invalid JSON submitted.","details":"missing field `text`"}"#).as_deref(),
            Some("INVALID_JSON: Invalid JSON submitted.: missing field `text`")
        );
        assert_eq!(error_message(b"<html>"), None);
        assert_eq!(error_message(b"{}"), None);
    }

    #[test]
    fn model_listing() {
        let body = br#"{"stt":[{"name":"nova-3"}],"tts":[
            {"name":"thalia","canonical_name":"aura-2-thalia-en","architecture":"aura-2","languages":["en","en-US"],
             "metadata":{"accent":"American","sample":"https://s/t.wav","tags":["feminine"]}},
            {"canonical_name":"aura-zeus-en","languages":[]},
            {"name":"broken"}, 7]}"#;
        let v = voices(body).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "aura-2-thalia-en");
        assert_eq!(v[0].name, "Thalia");
        assert_eq!(v[0].language, "en-US");
        assert_eq!(v[0].gender, "female");
        assert_eq!(v[0].accent, "American");
        assert_eq!(v[1].name, "aura-zeus-en");
        assert!(voices(b"not json").is_err());
        assert!(voices(b"{}").unwrap().is_empty());
    }
}
