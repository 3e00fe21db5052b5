//! What the OpenAI audio endpoints (and Groq's OpenAI-compatible copy) share: the base URL,
//! the auth headers, the error envelope and its mapping onto [`PluginError`] categories, and
//! sending a request with a deadline for the response head.
//!
//! Error envelope (`STT_PROTOCOLS.md` §9a "Errors", `TTS_PROTOCOLS.md` §6; openai-python
//! `_exceptions.py` reads `body["error"]`):
//! `{"error": {"message": "…", "type": "invalid_request_error", "param": "file", "code": null}}`.
//! Groq uses the same shape (groq-python `_exceptions.py`).

use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::http;
use waav_plugin_api::{ErrorCategory, PluginConfig, PluginError, Secret};
use waav_provider_kit::errors;
use waav_provider_kit::http::{HttpClient, RequestBuilder, Response, RetryVeto};
use waav_provider_kit::redact::Redactor;

/// The OpenAI production base URL (paths are `/v1/audio/...`).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com";
/// Groq's OpenAI-compatible base URL (groq-python `_client.py` uses `https://api.groq.com` and
/// the paths `/openai/v1/audio/...`).
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai";

/// The error envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    error: ErrorBody,
}

/// The `error` object; every field is optional in practice.
#[derive(Debug, Deserialize, Default)]
pub struct ErrorBody {
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// `invalid_request_error`, `server_error`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The offending request parameter (`file`, `voice`, `model`, …).
    #[serde(default)]
    pub param: Option<String>,
    /// A machine code (`audio_too_short`, `model_not_found`, …) or null; a string or a number.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl ErrorBody {
    /// The code as text, if any.
    pub fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Parses an error body in the OpenAI envelope; `None` when it is something else.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error)
}

/// Validates a base URL from the config: `http(s)://host[:port][/prefix]`, no query, no
/// trailing slash kept.
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

/// A bounded duration in milliseconds from `key`.
pub fn millis(
    cfg: &PluginConfig,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, PluginError> {
    let v = cfg.u64(key)?.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(PluginError::Config(format!(
            "{}.{key}: {v} is outside {min}–{max}",
            cfg.path()
        )));
    }
    Ok(Duration::from_millis(v))
}

/// An optional non-empty string header value from `key`, refusing control characters.
pub fn header_value(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    match cfg.string(key)? {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) if v.chars().any(char::is_control) => Err(PluginError::Config(format!(
            "{}.{key}: must not contain control characters",
            cfg.path()
        ))),
        Some(v) => Ok(Some(v.trim().to_owned())),
    }
}

/// The optional OpenAI account headers (`OpenAI-Organization`, `OpenAI-Project`; openai-python
/// `_client.py` `default_headers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountHeaders {
    /// `OpenAI-Organization`.
    pub organization: Option<String>,
    /// `OpenAI-Project`.
    pub project: Option<String>,
}

impl AccountHeaders {
    /// From the plugin config keys `organization` and `project`.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        Ok(Self {
            organization: header_value(cfg, "organization")?,
            project: header_value(cfg, "project")?,
        })
    }

    /// Adds the bearer credential and these headers to `req`.
    pub fn apply(&self, req: RequestBuilder, key: &Secret) -> RequestBuilder {
        let mut req = req.header("Authorization", format!("Bearer {}", key.expose()));
        if let Some(o) = &self.organization {
            req = req.header("OpenAI-Organization", o);
        }
        if let Some(p) = &self.project {
            req = req.header("OpenAI-Project", p);
        }
        req
    }
}

/// The session key: its `api_key`, else the `api_key` credential.
pub fn api_key(
    api_key: Option<&Secret>,
    credentials: &waav_plugin_api::Credentials,
    context: &str,
    env: &str,
) -> Result<Secret, PluginError> {
    api_key
        .cloned()
        .or_else(|| credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| PluginError::Auth(format!("{context}: no API key (set api_key or {env})")))
}

/// What a refused request is about, for the 400 refinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A transcription: a 400 about the uploaded file concerns this utterance only.
    Audio,
    /// A speech synthesis: a 400 about `input` concerns this text only.
    Text,
}

/// A non-2xx response as a categorised, redacted error carrying the vendor's message.
///
/// The kit's status table applies (401/403 Auth, 429 RateLimited with `retry-after`, 404
/// Config, 408/504 Timeout, 5xx Transient) with three refinements: 400 is Config (the request
/// we built was refused: model, voice, format) unless the vendor blames the payload of this one
/// request (`param` `file`/`input`, or a code/message about the audio or the text), which is
/// Permanent; 413 is Permanent ("audio too large"); a 429 about billing is Auth (see
/// [`is_billing`]).
pub async fn error_from_response(
    mut resp: Response,
    wait: Duration,
    subject: Subject,
    context: &str,
    redactor: &Redactor,
) -> PluginError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let read = async {
        while body.len() <= errors::BODY_EXCERPT_LIMIT * 4 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    error_from_parts(status.as_u16(), &headers, &body, subject, context, redactor)
}

/// [`error_from_response`] on parts already read.
pub fn error_from_parts(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    subject: Subject,
    context: &str,
    redactor: &Redactor,
) -> PluginError {
    let parsed = parse_error(body);
    let mut category = errors::status_category(status).unwrap_or(ErrorCategory::Permanent);
    if status == 400 {
        category = if parsed.as_ref().is_some_and(|e| blames_payload(e, subject)) {
            ErrorCategory::Permanent
        } else {
            ErrorCategory::Config
        };
    }
    if status == 429 && parsed.as_ref().is_some_and(is_billing) {
        category = ErrorCategory::Auth;
    }
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut msg = format!("{context}: HTTP {status} {reason}");
    if status == 413 {
        msg.push_str(": audio too large");
    }
    let detail = match &parsed {
        Some(e) => {
            let mut d = e.message.clone().unwrap_or_default();
            if let Some(c) = e.code_str() {
                d.push_str(&format!(" (code {c})"));
            }
            d
        }
        None => errors::excerpt(body, errors::BODY_EXCERPT_LIMIT),
    };
    if !detail.trim().is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.trim().as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    errors::make(category, msg, errors::retry_after(headers), redactor)
}

/// The `error.code` (or, in older answers with a null code, `error.type`) of a 429 that is
/// about billing, not pace: OpenAI's error-codes guide lists "429 - You exceeded your current
/// quota, please check your plan and billing details" (cause: "You have run out of credits or
/// hit your maximum monthly spend"; fix: buy credits or raise the limit), sent as
/// `{"type": "insufficient_quota", "code": "insufficient_quota"}`; newer answers keep that
/// type and name the cause in the code (`credit_balance_exhausted`,
/// `organization_spend_limit_exceeded`, `project_spend_limit_exceeded`,
/// `organization_usage_limit_exceeded`). Retrying cannot help until an operator acts, so it is
/// Auth, as the kit files a 402; the pace limits (`rate_limit_exceeded`, …) stay RateLimited.
const BILLING_CODES: &[&str] = &[
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
];

/// Whether a 429's body says billing, not pace, refused the request (see [`BILLING_CODES`]).
fn is_billing(e: &ErrorBody) -> bool {
    let billing = |v: Option<&str>| v.is_some_and(|v| BILLING_CODES.contains(&v));
    billing(e.code_str().as_deref()) || billing(e.kind.as_deref())
}

fn blames_payload(e: &ErrorBody, subject: Subject) -> bool {
    let (param, words): (&str, &[&str]) = match subject {
        Subject::Audio => ("file", &["audio", "file"]),
        Subject::Text => ("input", &["input", "text"]),
    };
    if e.param.as_deref() == Some(param) {
        return true;
    }
    let code = e.code_str().unwrap_or_default().to_ascii_lowercase();
    let message = e.message.clone().unwrap_or_default().to_ascii_lowercase();
    words
        .iter()
        .any(|w| code.contains(w) || message.contains(w))
}

/// Sends `req` through `client`, waiting at most `wait` for the response head (all attempts
/// included); a non-2xx status is an error. The kit's budgeted retry applies before the response
/// head (a refused connection, a 5xx, 408/504, a 429 with a short `retry-after`), never sleeping
/// past `wait`, and never for a 429 without `retry-after` (see [`http_client`]).
pub async fn send(
    client: &HttpClient,
    req: RequestBuilder,
    wait: Duration,
    subject: Subject,
    context: &str,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    let deadline = tokio::time::Instant::now() + wait;
    let sent = async {
        client
            .execute_within(req, deadline)
            .await
            .map_err(|e| redactor.redact_error(e))
    };
    match tokio::time::timeout_at(deadline, sent).await {
        Err(_) => Err(errors::timeout(
            &format!("{context}: waiting for the response"),
            wait,
            redactor,
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(resp),
        Ok(Ok(resp)) => Err(error_from_response(resp, wait, subject, context, redactor).await),
    }
}

/// Builds the pooled client of a plugin instance (streaming bodies: reads are bounded by the
/// callers, per chunk).
///
/// A 429 without `retry-after` is not retried: OpenAI's billing refusals
/// ([`BILLING_CODES`], e.g. `insufficient_quota`) are 429s that only their body tells from a
/// rate limit, and retrying one cannot help. A 429 with a short `retry-after` is retried.
pub fn http_client(context: &str, connect_timeout: Duration) -> Result<HttpClient, PluginError> {
    HttpClient::new(waav_provider_kit::http::HttpClientConfig {
        timeout: None,
        read_timeout: None,
        connect_timeout,
        retry_veto: Some(RetryVeto::rate_limit_without_retry_after()),
        context: context.to_owned(),
        ..Default::default()
    })
}

/// A lazily built, shared client slot.
#[derive(Debug, Default)]
pub struct ClientSlot(std::sync::Mutex<Option<HttpClient>>);

impl ClientSlot {
    /// The client, built on first use.
    pub fn get(&self, context: &str, connect_timeout: Duration) -> Result<HttpClient, PluginError> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = http_client(context, connect_timeout)?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.stt.openai", v).unwrap()
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url(&cfg(json!({})), OPENAI_BASE_URL).unwrap(),
            OPENAI_BASE_URL
        );
        assert_eq!(
            base_url(&cfg(json!({"base_url": "http://127.0.0.1:9/openai/"})), "x").unwrap(),
            "http://127.0.0.1:9/openai"
        );
        for bad in ["ftp://x", "http://", "api.openai.com", "https://x/?a=1"] {
            assert!(
                base_url(&cfg(json!({ "base_url": bad })), "x").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_mapping() {
        let r = Redactor::new().with_secret(&Secret::new("sk-secret"));
        let h = http::HeaderMap::new();
        let e = |status, body: &str, subject| {
            error_from_parts(status, &h, body.as_bytes(), subject, "openai", &r)
        };
        let bad_voice = r#"{"error":{"message":"Invalid value for 'voice'","type":"invalid_request_error","param":"voice","code":null}}"#;
        assert_eq!(
            e(400, bad_voice, Subject::Text).category(),
            ErrorCategory::Config
        );
        let short = r#"{"error":{"message":"Audio file is too short.","type":"invalid_request_error","param":"file","code":"audio_too_short"}}"#;
        let got = e(400, short, Subject::Audio);
        assert_eq!(got.category(), ErrorCategory::Permanent);
        assert!(got.to_string().contains("audio_too_short"), "{got}");
        assert_eq!(
            e(413, "", Subject::Audio).category(),
            ErrorCategory::Permanent
        );
        assert!(e(413, "", Subject::Audio)
            .to_string()
            .contains("audio too large"));
        assert_eq!(e(401, "{}", Subject::Audio).category(), ErrorCategory::Auth);
        assert_eq!(
            e(503, "oops", Subject::Audio).category(),
            ErrorCategory::Transient
        );
        let leak = e(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-secret"}}"#,
            Subject::Audio,
        );
        assert!(!leak.to_string().contains("sk-secret"), "{leak}");
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", http::HeaderValue::from_static("3"));
        match error_from_parts(429, &h, b"{}", Subject::Audio, "openai", &r) {
            PluginError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
        // Billing, not pace: Auth (retrying cannot help); the pace limits stay RateLimited.
        for body in [
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":null}}"#,
            r#"{"error":{"message":"No credits left.","type":"insufficient_quota","param":null,"code":"credit_balance_exhausted"}}"#,
            r#"{"error":{"message":"Spend limit reached.","type":"insufficient_quota","code":"project_spend_limit_exceeded"}}"#,
        ] {
            for subject in [Subject::Audio, Subject::Text] {
                let got = error_from_parts(429, &h, body.as_bytes(), subject, "openai", &r);
                assert_eq!(got.category(), ErrorCategory::Auth, "{body}: {got}");
            }
        }
        for body in [
            r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            r#"{"error":{"message":"Rate limit reached for tokens","type":"tokens","code":"rate_limit_exceeded"}}"#,
            "not json",
        ] {
            let got = error_from_parts(429, &h, body.as_bytes(), Subject::Audio, "openai", &r);
            assert_eq!(got.category(), ErrorCategory::RateLimited, "{body}: {got}");
        }
    }
}
