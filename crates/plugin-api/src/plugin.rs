//! The [`Plugin`] trait every plugin implements, and its metadata and lifecycle types.

use crate::credentials::API_KEY;
use crate::{Capabilities, CredentialField, PluginConfig, PluginError};
use serde::Serialize;
use std::path::PathBuf;

/// What role a plugin plays. One plugin has exactly one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Speech-to-text provider.
    Stt,
    /// Text-to-speech provider.
    Tts,
    /// Speech-to-speech (realtime) provider.
    Realtime,
    /// Audio processor (VAD, denoise, resample, turn detection…).
    Processor,
    /// HTTP middleware (a tower layer).
    Middleware,
    /// Extra HTTP routes and `custom` WebSocket message handlers.
    Route,
}

impl PluginKind {
    /// The config section name of this kind (`stt`, `tts`, `realtime`, `processors`, …).
    pub fn section(self) -> &'static str {
        match self {
            Self::Stt => "stt",
            Self::Tts => "tts",
            Self::Realtime => "realtime",
            Self::Processor => "processors",
            Self::Middleware => "middleware",
            Self::Route => "routes",
        }
    }

    /// Short lower-case name (`stt`, `tts`, `realtime`, `processor`, `middleware`, `route`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stt => "stt",
            Self::Tts => "tts",
            Self::Realtime => "realtime",
            Self::Processor => "processor",
            Self::Middleware => "middleware",
            Self::Route => "route",
        }
    }
}

/// Static metadata of a plugin. Ids and aliases live only here: the single source of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Unique id (lower-case, `[a-z0-9_-]`), as used in configs and client messages.
    pub id: &'static str,
    /// Human-readable name, used in messages ("Deepgram API key not configured…").
    pub name: &'static str,
    /// The plugin's own version.
    pub version: &'static str,
    /// Other names that resolve to this plugin (case-insensitive).
    pub aliases: &'static [&'static str],
    /// One-line description.
    pub description: &'static str,
    /// For providers that need an API key: the environment variable the server reads it from when
    /// the plugin's config has no `api_key`. `None` for plugins that need no key. Shorthand for a
    /// required secret [`CredentialField`] named `api_key`.
    pub api_key_env: Option<&'static str>,
    /// Further credentials the plugin needs (see [`crate::credentials`]).
    pub credentials: &'static [CredentialField],
}

impl PluginInfo {
    /// Metadata with an id and a name; the other fields empty.
    pub const fn new(id: &'static str, name: &'static str) -> Self {
        Self {
            id,
            name,
            version: "0.0.0",
            aliases: &[],
            description: "",
            api_key_env: None,
            credentials: &[],
        }
    }

    /// Sets the version.
    pub const fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// Sets the aliases.
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// Sets the description.
    pub const fn description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Declares that the plugin needs an API key, read from `env` when its config has none.
    pub const fn api_key_env(mut self, env: &'static str) -> Self {
        self.api_key_env = Some(env);
        self
    }

    /// Declares the credentials the plugin needs.
    pub const fn credentials(mut self, fields: &'static [CredentialField]) -> Self {
        self.credentials = fields;
        self
    }

    /// Every credential field: the declared ones, and `api_key` when
    /// [`api_key_env`](Self::api_key_env) is set and no field of that name is declared.
    pub fn credential_fields(&self) -> Vec<CredentialField> {
        let mut fields = self.credentials.to_vec();
        if let Some(env) = self.api_key_env {
            if !fields.iter().any(|f| f.name == API_KEY) {
                fields.insert(0, CredentialField::secret(API_KEY, env));
            }
        }
        fields
    }
}

/// What the host gives a plugin at `init`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PluginContext {
    /// Version of the gateway hosting the plugin.
    pub gateway_version: String,
    /// Directory for plugin data (model files, caches); plugins may ignore it.
    pub data_dir: Option<PathBuf>,
}

impl PluginContext {
    /// A context for a host of the given version.
    pub fn new(gateway_version: impl Into<String>) -> Self {
        Self {
            gateway_version: gateway_version.into(),
            data_dir: None,
        }
    }

    /// Sets the data directory.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
}

/// A plugin's view of its own health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working with reduced function (the reason says how).
    Degraded(String),
    /// Not working.
    Unhealthy(String),
}

/// The base trait of every plugin.
///
/// A plugin object is created once per process by its registration, shared across sessions
/// (`Send + Sync`), initialised once with its config section, and shut down on graceful stop.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Static metadata: id, name, version, aliases.
    fn info(&self) -> PluginInfo;

    /// What the plugin supports. Called after `init`, so it may depend on configuration.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Initialises the plugin with its own config section (empty when the file has none).
    async fn init(&self, ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let _ = (ctx, config);
        Ok(())
    }

    /// Releases resources on graceful stop. Runs in reverse order of `init`.
    async fn shutdown(&self) {}

    /// Current health.
    fn health(&self) -> HealthStatus {
        HealthStatus::Healthy
    }
}
