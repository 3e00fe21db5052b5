//! Gateway configuration: YAML file, environment variables and command-line overrides.
//!
//! Precedence, highest first: command-line flags, environment variables, the YAML file, built-in
//! defaults. `${VAR}` / `${VAR:-default}` placeholders in the file are substituted first (see
//! `substitute`); an unset variable without a default is an error naming it and its YAML path.

mod substitute;

pub use substitute::EnvLookup;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use waav_plugin_api::Secret;

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// `${VAR}` with no default and the variable unset.
    #[error("environment variable {variable} is not set (used at {path} without a default; write ${{{variable}:-default}} to give one)")]
    MissingVariable {
        /// The variable.
        variable: String,
        /// Where in the YAML it is used.
        path: String,
    },
    /// Malformed YAML, placeholder or value.
    #[error("invalid configuration at {path}: {message}")]
    Syntax {
        /// Where (YAML path, or the environment variable).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A name that no plugin registers, or a reference to an undefined processor.
    #[error("{0}")]
    Unknown(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Listener and logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Bind address (`HOST`).
    pub host: String,
    /// Bind port (`PORT`).
    pub port: u16,
    /// Log format (`LOG_FORMAT`, `--log-format`).
    pub log_format: LogFormat,
    /// Allowed CORS origins (`CORS_ALLOWED_ORIGINS`, comma-separated; `*` for any). Empty: no CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Who may read `GET /metrics` (`METRICS_EXPOSURE`: `open`, `auth` or `off`).
    pub metrics: MetricsExposure,
    /// On graceful stop, how long `/ws` sessions get to close before plugins shut down
    /// (`SHUTDOWN_DRAIN_SECONDS`).
    pub shutdown_drain_secs: u64,
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsExposure {
    /// Anyone, like a Prometheus exporter (protect it at the network level).
    #[default]
    Open,
    /// Only clients that authenticate as on every other REST route (when `auth.required`).
    Auth,
    /// Not served.
    Off,
}

impl std::str::FromStr for MetricsExposure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "auth" => Ok(Self::Auth),
            "off" => Ok(Self::Off),
            _ => Err("expected open, auth or off".into()),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3001,
            log_format: LogFormat::Text,
            cors_allowed_origins: Vec::new(),
            metrics: MetricsExposure::Open,
            shutdown_drain_secs: 10,
        }
    }
}

/// One API secret clients may authenticate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSecret {
    /// Identifies the client (returned in `authenticated`).
    pub id: String,
    /// The shared secret.
    pub secret: Secret,
}

/// Client authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a token on `/ws` and REST routes (`AUTH_REQUIRED`).
    pub required: bool,
    /// Accepted secrets (`AUTH_API_SECRETS_JSON`: `[{"id":…,"secret":…}]`).
    pub api_secrets: Vec<ApiSecret>,
}

/// TTS cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Directory for an on-disk cache (`CACHE_PATH`); none keeps it in memory only.
    pub path: Option<PathBuf>,
    /// Entry lifetime in seconds (`CACHE_TTL_SECONDS`).
    pub ttl_seconds: u64,
    /// Memory budget of the in-memory cache, in MiB.
    pub max_memory_mb: u64,
    /// Size cap of the disk cache, in MiB (`CACHE_MAX_DISK_MB`): the oldest entries are evicted
    /// to stay under it; 0 writes nothing new to disk.
    pub max_disk_mb: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            path: None,
            ttl_seconds: 3600,
            max_memory_mb: 256,
            max_disk_mb: 1024,
        }
    }
}

/// Request and connection limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per client IP (`RATE_LIMIT_REQUESTS_PER_SECOND`); none: off.
    pub requests_per_second: Option<f64>,
    /// Token-bucket size (`RATE_LIMIT_BURST_SIZE`).
    pub burst: Option<u32>,
    /// Concurrent WebSocket connections (`MAX_WEBSOCKET_CONNECTIONS`); none: unlimited.
    pub max_websocket_connections: Option<usize>,
    /// Concurrent WebSocket connections per IP (`MAX_CONNECTIONS_PER_IP`); none: unlimited.
    pub max_connections_per_ip: Option<usize>,
}

/// Voice-session timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Close a connection with no client message for this long.
    pub idle_timeout_secs: u64,
    /// Synthetic end of turn this long after the last final.
    pub end_of_turn_ms: u64,
    /// Hard cap from the first final of a segment to the synthetic end of turn.
    pub end_of_turn_max_ms: u64,
    /// Deadline for providers to become ready after `config`.
    pub provider_connect_timeout_secs: u64,
    /// Deadline for a `custom` message handler.
    pub custom_handler_timeout_ms: u64,
    /// How long a connection may wait in pending-auth mode for its `auth` message.
    pub auth_timeout_secs: u64,
    /// A client whose outgoing FIFO stays full this long is disconnected.
    pub client_stall_ms: u64,
    /// A provider that does not read its input for this long is disconnected.
    pub provider_stall_ms: u64,
    /// `speak` requests queued or in flight per session; past it `tts_queue_full`.
    pub max_queued_speaks: usize,
    /// Bytes of `speak` text queued or in flight per session; past it `tts_queue_full`.
    pub max_queued_speak_bytes: usize,
    /// Duration of each binary TTS audio frame sent to clients (PCM formats), in ms.
    pub tts_frame_ms: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 300,
            end_of_turn_ms: 1800,
            end_of_turn_max_ms: 4000,
            provider_connect_timeout_secs: 30,
            custom_handler_timeout_ms: 5000,
            auth_timeout_secs: 10,
            client_stall_ms: 5000,
            provider_stall_ms: 5000,
            max_queued_speaks: 64,
            max_queued_speak_bytes: 1024 * 1024,
            tts_frame_ms: 20,
        }
    }
}

/// A provider or extension plugin's section: switches plus the plugin's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSection {
    /// Load and offer the plugin (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Report the gateway unhealthy (503 on `/health/plugins`) while this plugin is.
    #[serde(default)]
    pub required: bool,
    /// Makes this section a named instance of the plugin with this id or alias; the section's
    /// key is then the instance id clients select. Absent: the key names the plugin itself and
    /// the section configures its default instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Everything else: handed to the plugin's `init` as its config.
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl Default for PluginSection {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            plugin: None,
            settings: Map::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A named instance of a processor or middleware plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    /// Use this instance (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The plugin id (or alias) that implements it.
    #[serde(rename = "type")]
    pub kind: String,
    /// Settings for the instance.
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// Default processor chains, by stage; entries name processor instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelinesConfig {
    /// Before STT.
    pub default_stt_pre: Vec<String>,
    /// After STT.
    pub default_stt_post: Vec<String>,
    /// Before TTS post-processing.
    pub default_tts_pre: Vec<String>,
    /// Before TTS audio leaves.
    pub default_tts_post: Vec<String>,
}

/// The `plugins:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// STT providers by id or alias.
    pub stt: BTreeMap<String, PluginSection>,
    /// TTS providers by id or alias.
    pub tts: BTreeMap<String, PluginSection>,
    /// Realtime providers by id or alias.
    pub realtime: BTreeMap<String, PluginSection>,
    /// Route plugins by id or alias.
    pub routes: BTreeMap<String, PluginSection>,
    /// Processor instances by name.
    pub processors: BTreeMap<String, ComponentSection>,
    /// Plugin-wide sections of processor plugins, by plugin id or alias: what every instance
    /// shares (model paths, inference worker pools), given to the plugin's `init`; `enabled:
    /// false` keeps the plugin (and its models) from loading at all.
    pub processor_settings: BTreeMap<String, PluginSection>,
    /// Processor chains.
    pub pipelines: PipelinesConfig,
    /// Middleware instances by name.
    pub middleware: BTreeMap<String, ComponentSection>,
}

/// The whole effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listener and logging.
    pub server: ServerConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// TTS cache.
    pub cache: CacheConfig,
    /// Rate and connection limits.
    pub limits: LimitsConfig,
    /// Voice-session timing.
    pub session: SessionSettings,
    /// Plugins, processors, pipelines, middleware.
    pub plugins: PluginsConfig,
    /// Circuit breakers and failover chains.
    pub resilience: ResilienceConfig,
}

/// `resilience:` circuit breakers (one per plugin instance, process-wide) and failover chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Failures within `breaker_window_secs` that open an instance's breaker.
    pub breaker_failures: u32,
    /// The counting window.
    pub breaker_window_secs: u64,
    /// How long an open breaker fails fast before probing.
    pub breaker_open_secs: u64,
    /// Audio kept for replay into the next STT provider after a failover (ms).
    pub stt_replay_ms: u64,
    /// Times a session's STT provider is reopened after a transient drop mid-stream before the
    /// session fails over (or reports the error); the budget refills at each final transcript.
    pub stt_reconnects: u64,
    /// An STT provider that gives no result (not even an interim) this long after a speech
    /// boundary the session's VAD reported counts as failed silently (ms; 0: off; needs a VAD in
    /// the pre-STT pipeline).
    pub stt_silent_ms: u64,
    /// A TTS request with no first audio byte this long after it reached the provider's head
    /// counts as a silent failure (ms; 0: off; the request timeout still applies).
    pub tts_first_byte_ms: u64,
    /// A TTS request that ends with every PCM sample within ± this (of 32767) counts as a
    /// silent failure, like one that ends with no audio at all (0: only no audio).
    pub tts_silent_peak: u64,
    /// Hedged first byte by default for every session (a session's `tts_config.hedge` wins):
    /// its first cache-miss request (and the first after a failover) is also sent to the next
    /// provider of its TTS chain, and whichever first byte arrives first keeps the session.
    pub tts_hedge: bool,
    /// The hedge starts only if the provider has no first byte this long after the request
    /// (ms; 0: at once, with the hedge partner connected when the session is configured).
    pub tts_hedge_delay_ms: u64,
    /// A session moved off its own provider by a failure returns to it at an utterance boundary
    /// (STT: after a final; TTS: with nothing left to speak) once this long has passed since the
    /// switch and the provider's breaker lets it through; the attempt is that breaker's probe
    /// (ms; 0: stay on the fallback for the rest of the session).
    pub recover_after_ms: u64,
    /// Fallbacks per primary provider: `stt: { deepgram: [microsoft-azure, local] }`; TTS entries
    /// may name a voice (`elevenlabs: ["cartesia:sonic-voice-id", local]`).
    pub failover: FailoverConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            breaker_failures: 5,
            breaker_window_secs: 30,
            breaker_open_secs: 15,
            stt_replay_ms: 5_000,
            stt_reconnects: 2,
            stt_silent_ms: 10_000,
            tts_first_byte_ms: 8_000,
            tts_silent_peak: 64,
            tts_hedge: false,
            tts_hedge_delay_ms: 0,
            recover_after_ms: 30_000,
            failover: FailoverConfig::default(),
        }
    }
}

/// Failover chains by role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// STT: primary → fallbacks in order.
    pub stt: BTreeMap<String, Chain>,
    /// TTS: primary → fallbacks in order (`provider` or `provider:voice`).
    pub tts: BTreeMap<String, Chain>,
}

/// One primary's fallbacks: a list (`[azure, local]`, tried in order), or the list with a
/// strategy (`{ providers: [azure, local], strategy: fastest }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Chain {
    /// Fallbacks in order.
    Ordered(Vec<String>),
    /// Fallbacks and how a session picks among them and the primary.
    With {
        /// Fallbacks.
        providers: Vec<String>,
        /// How they are ordered.
        #[serde(default)]
        strategy: Strategy,
    },
}

impl Chain {
    /// The fallbacks.
    pub fn providers(&self) -> &[String] {
        match self {
            Self::Ordered(p) | Self::With { providers: p, .. } => p,
        }
    }

    /// How the chain is walked.
    pub fn strategy(&self) -> Strategy {
        match self {
            Self::Ordered(_) => Strategy::Ordered,
            Self::With { strategy, .. } => *strategy,
        }
    }
}

/// How a session orders its provider and the fallbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The primary, then the fallbacks as listed.
    #[default]
    Ordered,
    /// The primary and its fallbacks by their recent latency (an EWMA of TTS first byte or STT
    /// first result per instance), lowest first; instances never measured come first.
    Fastest,
}

/// Settings given on the command line; they win over everything else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliOverrides {
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

/// Most fallbacks in one chain.
pub const MAX_CHAIN: usize = 8;

/// The longest `resilience.tts_hedge_delay_ms` (a hedge later than this helps nobody).
pub const MAX_HEDGE_DELAY_MS: u64 = 60_000;

/// Key names whose values are masked when a configuration is printed.
const SECRET_HINTS: [&str; 5] = ["key", "secret", "token", "password", "credential"];

impl GatewayConfig {
    /// Loads the effective configuration from an optional file, the process environment and CLI
    /// overrides.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        Self::from_sources(text.as_deref(), &env, cli)
    }

    /// Builds the configuration from YAML text, an environment lookup and CLI overrides.
    pub fn from_sources(
        yaml: Option<&str>,
        env: EnvLookup<'_>,
        cli: &CliOverrides,
    ) -> Result<Self, ConfigError> {
        let mut config = match yaml {
            Some(text) => Self::from_yaml(text, env)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        if let Some(host) = &cli.host {
            config.server.host = host.clone();
        }
        if let Some(port) = cli.port {
            config.server.port = port;
        }
        if let Some(f) = cli.log_format {
            config.server.log_format = f;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that every duration and size is within a sane range, so no setting can overflow a
    /// deadline or size an allocation absurdly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY_SECS: u64 = 86_400;
        let s = &self.session;
        let r = &self.resilience;
        let chains = r.failover.stt.values().chain(r.failover.tts.values());
        if let Some(c) = chains.into_iter().find(|c| c.providers().len() > MAX_CHAIN) {
            return Err(ConfigError::Syntax {
                path: "resilience.failover".into(),
                message: format!(
                    "a chain of {} fallbacks; at most {MAX_CHAIN}",
                    c.providers().len()
                ),
            });
        }
        let checks: &[(&str, u64, u64, u64)] = &[
            (
                "resilience.breaker_failures",
                u64::from(r.breaker_failures),
                1,
                10_000,
            ),
            (
                "resilience.breaker_window_secs",
                r.breaker_window_secs,
                1,
                DAY_SECS,
            ),
            (
                "resilience.breaker_open_secs",
                r.breaker_open_secs,
                1,
                DAY_SECS,
            ),
            ("resilience.stt_replay_ms", r.stt_replay_ms, 0, 60_000),
            ("resilience.stt_reconnects", r.stt_reconnects, 0, 10),
            (
                "resilience.tts_first_byte_ms",
                r.tts_first_byte_ms,
                0,
                600_000,
            ),
            ("resilience.tts_silent_peak", r.tts_silent_peak, 0, 32_767),
            (
                "resilience.tts_hedge_delay_ms",
                r.tts_hedge_delay_ms,
                0,
                MAX_HEDGE_DELAY_MS,
            ),
            (
                "resilience.recover_after_ms",
                r.recover_after_ms,
                0,
                DAY_SECS * 1000,
            ),
            (
                "session.idle_timeout_secs",
                s.idle_timeout_secs,
                1,
                DAY_SECS,
            ),
            ("session.end_of_turn_ms", s.end_of_turn_ms, 1, 600_000),
            (
                "session.end_of_turn_max_ms",
                s.end_of_turn_max_ms,
                1,
                600_000,
            ),
            (
                "session.provider_connect_timeout_secs",
                s.provider_connect_timeout_secs,
                1,
                3600,
            ),
            (
                "session.custom_handler_timeout_ms",
                s.custom_handler_timeout_ms,
                1,
                600_000,
            ),
            ("session.auth_timeout_secs", s.auth_timeout_secs, 1, 3600),
            ("session.client_stall_ms", s.client_stall_ms, 10, 600_000),
            (
                "session.provider_stall_ms",
                s.provider_stall_ms,
                10,
                600_000,
            ),
            (
                "session.max_queued_speaks",
                s.max_queued_speaks as u64,
                1,
                10_000,
            ),
            (
                "session.max_queued_speak_bytes",
                s.max_queued_speak_bytes as u64,
                1024,
                1 << 30,
            ),
            ("session.tts_frame_ms", u64::from(s.tts_frame_ms), 5, 1000),
            (
                "server.shutdown_drain_secs",
                self.server.shutdown_drain_secs,
                0,
                3600,
            ),
            (
                "cache.ttl_seconds",
                self.cache.ttl_seconds,
                0,
                365 * DAY_SECS,
            ),
        ];
        for &(path, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Syntax {
                    path: path.into(),
                    message: format!("{value} is out of range {min}–{max}"),
                });
            }
        }
        Ok(())
    }

    fn from_yaml(text: &str, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let mut tree: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| ConfigError::Syntax {
                path: e
                    .location()
                    .map(|l| format!("line {} column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "<file>".into()),
                message: e.to_string(),
            })?;
        if tree.is_null() {
            return Ok(Self::default());
        }
        substitute::substitute_tree(&mut tree, env)?;
        let json = serde_json::to_value(&tree).map_err(|e| ConfigError::Syntax {
            path: "<file>".into(),
            message: e.to_string(),
        })?;
        // serde_path_to_error-style location: serde_json reports the field; prefix with context.
        serde_json::from_value(json).map_err(|e| ConfigError::Syntax {
            path: "<file>".into(),
            message: e.to_string(),
        })
    }

    fn apply_env(&mut self, env: EnvLookup<'_>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Syntax {
                path: format!("environment variable {var}"),
                message: format!("{v:?}: {e}"),
            })
        }
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("HOST") {
            self.server.host = v;
        }
        if let Some(v) = get("PORT") {
            self.server.port = parse("PORT", &v)?;
        }
        if let Some(v) = get("LOG_FORMAT") {
            self.server.log_format = match v.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(ConfigError::Syntax {
                        path: "environment variable LOG_FORMAT".into(),
                        message: format!("{v:?}: expected text or json"),
                    })
                }
            };
        }
        if let Some(v) = get("CORS_ALLOWED_ORIGINS") {
            self.server.cors_allowed_origins = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("METRICS_EXPOSURE") {
            self.server.metrics = parse("METRICS_EXPOSURE", &v)?;
        }
        if let Some(v) = get("SHUTDOWN_DRAIN_SECONDS") {
            self.server.shutdown_drain_secs = parse("SHUTDOWN_DRAIN_SECONDS", &v)?;
        }
        if let Some(v) = get("CACHE_PATH") {
            self.cache.path = Some(PathBuf::from(v));
        }
        if let Some(v) = get("CACHE_TTL_SECONDS") {
            self.cache.ttl_seconds = parse("CACHE_TTL_SECONDS", &v)?;
        }
        if let Some(v) = get("CACHE_MAX_DISK_MB") {
            self.cache.max_disk_mb = parse("CACHE_MAX_DISK_MB", &v)?;
        }
        if let Some(v) = get("AUTH_REQUIRED") {
            self.auth.required = parse("AUTH_REQUIRED", &v.to_ascii_lowercase())?;
        }
        if let Some(v) = get("AUTH_API_SECRETS_JSON") {
            self.auth.api_secrets = serde_json::from_str(&v).map_err(|e| ConfigError::Syntax {
                path: "environment variable AUTH_API_SECRETS_JSON".into(),
                message: format!("expected [{{\"id\":…,\"secret\":…}}]: {e}"),
            })?;
        }
        if let Some(v) = get("RATE_LIMIT_REQUESTS_PER_SECOND") {
            self.limits.requests_per_second = Some(parse("RATE_LIMIT_REQUESTS_PER_SECOND", &v)?);
        }
        if let Some(v) = get("RATE_LIMIT_BURST_SIZE") {
            self.limits.burst = Some(parse("RATE_LIMIT_BURST_SIZE", &v)?);
        }
        if let Some(v) = get("MAX_WEBSOCKET_CONNECTIONS") {
            self.limits.max_websocket_connections = Some(parse("MAX_WEBSOCKET_CONNECTIONS", &v)?);
        }
        if let Some(v) = get("MAX_CONNECTIONS_PER_IP") {
            self.limits.max_connections_per_ip = Some(parse("MAX_CONNECTIONS_PER_IP", &v)?);
        }
        Ok(())
    }

    /// The configuration as YAML with every secret-looking value masked.
    pub fn to_masked_yaml(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        mask(&mut v);
        serde_norway::to_string(&v).unwrap_or_default()
    }
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if SECRET_HINTS.iter().any(|h| k.contains(h)) {
                    mask_leaves(child);
                } else {
                    mask(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn mask_leaves(v: &mut Value) {
    match v {
        Value::String(s) if !s.is_empty() => *s = "***".into(),
        Value::Number(_) => *v = Value::String("***".into()),
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            items.iter_mut().for_each(mask_leaves)
        }
        other => mask(other),
    }
}

#[cfg(test)]
mod tests;
