//! The EVI plugin's settings (its `plugins.realtime.hume` config section) and the chat URL.
//!
//! Query parameters as in `TTS_PROTOCOLS.md` §13 "Connection", checked against
//! HumeAI/hume-python-sdk `src/hume/empathic_voice/chat/raw_client.py` (`connect`: `access_token`,
//! `config_id`, `config_version` (int), `event_limit`, `resumed_chat_group_id`,
//! `verbose_transcription` (bool), `api_key`) and `src/hume/environment.py`
//! (`evi="wss://api.hume.ai/v0/evi"`, the chat endpoint is `<evi>/chat`). The SDK's client
//! wrapper (`core/client_wrapper.py`) sends the key as the `X-Hume-Api-Key` header.

use serde_json::{Map, Value};
use std::time::Duration;
use waav_plugin_api::{PluginConfig, PluginError, Secret};

/// The production base URL (the chat endpoint is `<base_url>/v0/evi/chat`).
pub const DEFAULT_BASE_URL: &str = "wss://api.hume.ai";
/// The chat endpoint's path.
pub const CHAT_PATH: &str = "/v0/evi/chat";

/// How the credential reaches Hume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `X-Hume-Api-Key: <key>` on the upgrade (the SDK's way; the key stays out of URLs).
    Header,
    /// `?api_key=<key>` (what browsers must do).
    Query,
    /// `?access_token=<value>`: the `api_key` credential holds an access token minted with the
    /// client-credentials flow elsewhere (a per-session override from the client, typically).
    AccessToken,
}

/// The plugin's settings, from its config section.
///
/// Keys (all optional): `base_url` (`ws(s)://host[:port][/prefix]`, default
/// [`DEFAULT_BASE_URL`]), `auth` (`header` | `query` | `access_token`, default `header`),
/// `config_id` (an EVI configuration: prompt, LLM, voice, tools, EVI version),
/// `config_version` (int), `resumed_chat_group_id`, `event_limit` (int), `verbose_transcription`
/// (bool; default: the session's `transcribe_input`), `voice_id` (default voice when the
/// session names none), `system_prompt` (used when the session has no `instructions`),
/// `variables` (map of string/number/bool), `context` (`{text, type?}`), `builtin_tools`
/// (list of names, e.g. `web_search`, `hang_up`), `language_model_api_key`,
/// `metadata_timeout_ms` (wait for `chat_metadata`, 10000), `connect_timeout_ms` (10000),
/// `idle_timeout_ms` (nothing at all from Hume for this long ends the session, 30000),
/// `ping_interval_ms` (10000), `close_timeout_ms` (graceful close wait, 2000).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Credential placement.
    pub auth: AuthMode,
    /// `config_id`.
    pub config_id: Option<String>,
    /// `config_version`.
    pub config_version: Option<u64>,
    /// `resumed_chat_group_id`.
    pub resumed_chat_group_id: Option<String>,
    /// `event_limit`.
    pub event_limit: Option<u64>,
    /// `verbose_transcription` (interim user transcripts); `None`: follow `transcribe_input`.
    pub verbose_transcription: Option<bool>,
    /// Default `voice_id`.
    pub voice_id: Option<String>,
    /// Default `system_prompt`.
    pub system_prompt: Option<String>,
    /// `variables`.
    pub variables: Option<Map<String, Value>>,
    /// `context`.
    pub context: Option<Value>,
    /// `builtin_tools` names.
    pub builtin_tools: Vec<String>,
    /// `language_model_api_key` (a secret: never printed).
    pub language_model_api_key: Option<Secret>,
    /// Wait for `chat_metadata` after the upgrade.
    pub metadata_timeout: Duration,
    /// TCP + TLS + upgrade deadline.
    pub connect_timeout: Duration,
    /// Silence (no data, ping or pong) that ends the session.
    pub idle_timeout: Duration,
    /// Keepalive ping interval.
    pub ping_interval: Duration,
    /// How long a graceful close waits for Hume's closing handshake.
    pub close_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&PluginConfig::default()).expect("defaults are valid")
    }
}

fn millis(
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

/// A trimmed, non-empty string without control characters (it goes into a URL or JSON).
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

/// An id that goes into the query string: `[A-Za-z0-9_-]`, at most 128 characters.
pub fn check_id(what: &str, id: &str) -> Result<(), PluginError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "{what}: expected an id of letters, digits, '-' and '_', got {id:?}"
        )))
    }
}

fn id(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    let v = clean(cfg, key)?;
    if let Some(v) = &v {
        check_id(&format!("{}.{key}", cfg.path()), v)?;
    }
    Ok(v)
}

/// Validates a base URL: `ws(s)://host[:port][/prefix]` (http(s) is accepted and turned into
/// ws(s)), no query, trailing slash dropped.
pub fn base_url(cfg: &PluginConfig) -> Result<String, PluginError> {
    let url = cfg
        .string("base_url")?
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .map(|(s, r)| (s.to_ascii_lowercase(), r))
        .unwrap_or_default();
    let scheme = match scheme.as_str() {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        _ => "",
    };
    if scheme.is_empty()
        || rest.is_empty()
        || rest.starts_with('/')
        || rest.contains(['?', '#', ' '])
    {
        return Err(PluginError::Config(format!(
            "{}.base_url: expected ws(s)://host[:port][/path], got {url:?}",
            cfg.path()
        )));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn variables(cfg: &PluginConfig) -> Result<Option<Map<String, Value>>, PluginError> {
    let Some(v) = cfg.raw("variables").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = || {
        PluginError::Config(format!(
            "{}.variables: expected a map of strings, numbers or booleans",
            cfg.path()
        ))
    };
    let map = v.as_object().ok_or_else(bad)?;
    if map
        .values()
        .any(|v| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        return Err(bad());
    }
    Ok(Some(map.clone()))
}

fn context(cfg: &PluginConfig) -> Result<Option<Value>, PluginError> {
    let Some(v) = cfg.raw("context").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    // types/context.py: `text` (required), `type` persistent | temporary (| editable in the docs).
    let text = v.get("text").and_then(Value::as_str);
    let ty = v.get("type");
    let ty_ok =
        ty.is_none_or(|t| matches!(t.as_str(), Some("persistent" | "temporary" | "editable")));
    if text.is_none() || !ty_ok {
        return Err(PluginError::Config(format!(
            "{}.context: expected {{text, type?: persistent|temporary|editable}}",
            cfg.path()
        )));
    }
    Ok(Some(v.clone()))
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let auth = match clean(cfg, "auth")?.as_deref().map(str::to_ascii_lowercase) {
            None => AuthMode::Header,
            Some(a) => match a.as_str() {
                "header" => AuthMode::Header,
                "query" | "api_key" => AuthMode::Query,
                "access_token" | "token" => AuthMode::AccessToken,
                other => {
                    return Err(PluginError::Config(format!(
                        "{}.auth: expected header, query or access_token, got {other:?}",
                        cfg.path()
                    )))
                }
            },
        };
        let builtin_tools = cfg.strings("builtin_tools")?.unwrap_or_default();
        for t in &builtin_tools {
            check_id(&format!("{}.builtin_tools", cfg.path()), t)?;
        }
        Ok(Self {
            base_url: base_url(cfg)?,
            auth,
            config_id: id(cfg, "config_id")?,
            config_version: cfg.u64("config_version")?,
            resumed_chat_group_id: id(cfg, "resumed_chat_group_id")?,
            event_limit: cfg.u64("event_limit")?,
            verbose_transcription: cfg.bool("verbose_transcription")?,
            voice_id: clean(cfg, "voice_id")?,
            system_prompt: cfg
                .string("system_prompt")?
                .filter(|s| !s.trim().is_empty()),
            variables: variables(cfg)?,
            context: context(cfg)?,
            builtin_tools,
            language_model_api_key: cfg.secret("language_model_api_key")?,
            metadata_timeout: millis(cfg, "metadata_timeout_ms", 10_000, 100, 120_000)?,
            connect_timeout: millis(cfg, "connect_timeout_ms", 10_000, 100, 120_000)?,
            idle_timeout: millis(cfg, "idle_timeout_ms", 30_000, 200, 3_600_000)?,
            ping_interval: millis(cfg, "ping_interval_ms", 10_000, 100, 600_000)?,
            close_timeout: millis(cfg, "close_timeout_ms", 2_000, 10, 60_000)?,
        })
    }

    /// The chat URL for a session: `<base_url>/v0/evi/chat?…`, with `config_id` (the session's
    /// when given, else the config's), `config_version`, `resumed_chat_group_id`, `event_limit`,
    /// `verbose_transcription`, and the key as `api_key` / `access_token` in the query modes.
    pub fn chat_url(
        &self,
        config_id: Option<&str>,
        config_version: Option<u64>,
        verbose: bool,
        key: &Secret,
    ) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(c) = config_id.or(self.config_id.as_deref()) {
            q.append_pair("config_id", c);
        }
        if let Some(v) = config_version.or(self.config_version) {
            q.append_pair("config_version", &v.to_string());
        }
        if let Some(g) = &self.resumed_chat_group_id {
            q.append_pair("resumed_chat_group_id", g);
        }
        if let Some(n) = self.event_limit {
            q.append_pair("event_limit", &n.to_string());
        }
        if verbose {
            q.append_pair("verbose_transcription", "true");
        }
        match self.auth {
            AuthMode::Header => {}
            AuthMode::Query => {
                q.append_pair("api_key", key.expose());
            }
            AuthMode::AccessToken => {
                q.append_pair("access_token", key.expose());
            }
        }
        let q = q.finish();
        if q.is_empty() {
            format!("{}{CHAT_PATH}", self.base_url)
        } else {
            format!("{}{CHAT_PATH}?{q}", self.base_url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> PluginConfig {
        PluginConfig::from_value("plugins.realtime.hume", v).unwrap()
    }

    #[test]
    fn defaults_and_url() {
        let s = Settings::default();
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.auth, AuthMode::Header);
        let key = Secret::from("k");
        assert_eq!(
            s.chat_url(None, None, false, &key),
            "wss://api.hume.ai/v0/evi/chat"
        );
        let s = Settings::from_config(&cfg(json!({
            "base_url": "http://127.0.0.1:9/", "auth": "query", "config_id": "cfg-1",
            "config_version": 3, "verbose_transcription": true, "event_limit": 5,
            "resumed_chat_group_id": "cg_1"
        })))
        .unwrap();
        assert_eq!(
            s.chat_url(None, None, true, &Secret::from("a b")),
            "ws://127.0.0.1:9/v0/evi/chat?config_id=cfg-1&config_version=3&resumed_chat_group_id=cg_1&event_limit=5&verbose_transcription=true&api_key=a+b"
        );
        assert!(s
            .chat_url(Some("other"), Some(7), false, &key)
            .starts_with("ws://127.0.0.1:9/v0/evi/chat?config_id=other&config_version=7"));
    }

    #[test]
    fn refusals_name_the_key() {
        for (bad, key) in [
            (json!({"base_url": "ftp://x"}), "base_url"),
            (json!({"base_url": "wss://x/?a=1"}), "base_url"),
            (json!({"auth": "cookie"}), "auth"),
            (json!({"config_id": "a b"}), "config_id"),
            (json!({"config_version": -1}), "config_version"),
            (json!({"variables": {"a": [1]}}), "variables"),
            (json!({"context": {"type": "persistent"}}), "context"),
            (
                json!({"context": {"text": "x", "type": "forever"}}),
                "context",
            ),
            (json!({"builtin_tools": ["web search"]}), "builtin_tools"),
            (json!({"idle_timeout_ms": 1}), "idle_timeout_ms"),
        ] {
            let e = Settings::from_config(&cfg(bad.clone())).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }
}
