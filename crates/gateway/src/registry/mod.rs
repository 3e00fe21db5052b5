//! The plugin registry: every linked plugin, its config section, lifecycle state and health.
//!
//! Built once at start-up from the distributed registrations. Names (ids and aliases) are unique
//! per kind and looked up case-insensitively through one hash map, once per session.

mod lookup;

pub use lookup::{ClientCredentials, LookupError, Provider};

use crate::config::{ConfigError, PluginSection, PluginsConfig};
use crate::isolation::{guard, guard_sync};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use waav_plugin_api::{
    Capabilities, Credentials, HealthStatus, PluginConfig, PluginContext, PluginHandle, PluginInfo,
    PluginKind, PluginRegistration, Secret,
};

const INIT_DEADLINE: Duration = Duration::from_secs(60);
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the registry could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// Two plugins of one kind claim the same id or alias.
    #[error("duplicate {kind} plugin name {name:?}: claimed by {first} and by {second}")]
    Duplicate {
        /// The kind.
        kind: &'static str,
        /// The contested name (lower-case).
        name: String,
        /// The first plugin (`id (module)`).
        first: String,
        /// The second plugin.
        second: String,
    },
    /// The configuration names something no plugin provides.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Lifecycle state of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum PluginState {
    /// Registered, `init` not run yet.
    Pending,
    /// Initialised and serving.
    Ready,
    /// Switched off in the configuration.
    Disabled,
    /// Its constructor or `init` failed or panicked; it serves nothing.
    Failed(String),
}

/// One plugin instance: the default instance of every linked plugin, plus each named instance the
/// configuration declares (`deepgram-eu: { plugin: deepgram, … }`).
pub struct Entry {
    /// Instance id: the plugin id for a default instance, the section key for a named one. It is
    /// what clients select and what health, metrics and errors name.
    pub id: &'static str,
    /// Static metadata of the plugin.
    pub info: PluginInfo,
    /// The plugin object.
    pub handle: PluginHandle,
    /// Its config section (settings, enabled, required).
    pub section: PluginSection,
    /// The dotted config path of its section.
    pub config_path: String,
    /// The instance's credentials: each declared field from its config section, else (default
    /// instance only) the field's environment variable.
    pub credentials: Credentials,
    module: &'static str,
    state: Mutex<PluginState>,
}

impl Entry {
    /// Whether this is a plugin's default instance (selected by the plugin id or an alias).
    pub fn is_default_instance(&self) -> bool {
        self.id == self.info.id
    }

    /// Current lifecycle state.
    pub fn state(&self) -> PluginState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_state(&self, s: PluginState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// The plugin's config section as handed to `init`.
    pub fn plugin_config(&self) -> PluginConfig {
        PluginConfig::new(self.config_path.clone(), self.section.settings.clone())
    }

    /// Capabilities, or empty ones if the plugin panics while reporting them.
    pub fn capabilities(&self) -> Capabilities {
        guard_sync(|| self.handle.plugin().capabilities()).unwrap_or_default()
    }
}

/// A constructor that panicked: the plugin never existed, but it is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRegistration {
    /// Module that registered it.
    pub module: &'static str,
    /// The panic message.
    pub error: String,
}

/// Health of one plugin as reported on `/health/plugins`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginHealth {
    /// Plugin id (the module path for a broken registration).
    pub id: String,
    /// Kind.
    pub kind: Option<PluginKind>,
    /// `healthy`, `degraded`, `unhealthy`, `failed`, `disabled` or `pending`.
    pub status: &'static str,
    /// Why, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the gateway counts as unhealthy while this plugin is.
    pub required: bool,
}

/// A configured processor instance.
#[derive(Debug, Clone)]
struct ProcessorInstance {
    plugin: &'static str,
    config: PluginConfig,
}

/// One processor instance as listed by [`Registry::processor_instances`].
#[derive(Debug)]
pub struct ProcessorListing<'a> {
    /// Instance name (what pipelines name).
    pub name: &'a str,
    /// The plugin implementing it.
    pub plugin: &'static str,
    /// The stages it can run at.
    pub stages: &'static [waav_plugin_api::Stage],
    /// The plugin's typical added latency.
    pub latency_estimate: Duration,
    /// The instance's `config:` map.
    pub settings: &'a PluginConfig,
}

/// A processor made for one session.
pub struct CreatedProcessor {
    /// The plugin id implementing it.
    pub plugin: &'static str,
    /// The session's processor.
    pub processor: Box<dyn waav_plugin_api::AudioProcessor>,
    /// Whether it reports speech boundaries (a VAD).
    pub reports_speech: bool,
}

/// A text processor made for one session.
pub struct CreatedTextProcessor {
    /// The plugin id implementing it.
    pub plugin: &'static str,
    /// The session's processor.
    pub processor: Box<dyn waav_plugin_api::TextProcessor>,
}

impl std::fmt::Debug for CreatedProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedProcessor")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

/// Every plugin this build links, indexed by kind and name.
pub struct Registry {
    entries: Vec<Entry>,
    index: HashMap<(PluginKind, String), usize>,
    /// Processor instances by name: the plugin id implementing each, and its settings.
    processors: BTreeMap<String, ProcessorInstance>,
    pipelines: crate::config::PipelinesConfig,
    broken: Vec<BrokenRegistration>,
    init_order: Mutex<Vec<usize>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("plugins", &self.entries.len())
            .field("broken", &self.broken)
            .finish()
    }
}

impl Registry {
    /// Builds the registry from every linked registration and checks `config` against it.
    pub fn build(config: &PluginsConfig) -> Result<Self, RegistryError> {
        Self::from_registrations(waav_plugin_api::registrations(), config)
    }

    /// Builds a registry from the given registrations (tests use a chosen subset).
    pub fn from_registrations<'a>(
        registrations: impl IntoIterator<Item = &'a PluginRegistration>,
        config: &PluginsConfig,
    ) -> Result<Self, RegistryError> {
        let mut protos = Vec::new();
        let mut broken = Vec::new();
        for reg in registrations {
            match construct(reg) {
                Ok(p) => protos.push(p),
                Err(b) => broken.push(b),
            }
        }
        protos.sort_by(|a, b| (a.handle.kind(), a.info.id).cmp(&(b.handle.kind(), b.info.id)));
        let plugins = NameIndex::of_plugins(&protos)?;
        let known = |kind: PluginKind| -> String {
            let ids: Vec<&str> = protos
                .iter()
                .filter(|p| p.handle.kind() == kind)
                .map(|p| p.info.id)
                .collect();
            if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            }
        };
        let unknown = |kind: PluginKind, name: &str, at: String| {
            ConfigError::Unknown(format!(
                "unknown {} plugin {name:?} at {at}; known {} plugins: {}",
                kind.as_str(),
                kind.as_str(),
                known(kind)
            ))
        };

        // Default instances get the section named by their id or alias; named instances are
        // further objects built by the same constructor, each with its own section.
        let mut sections: Vec<Option<(String, PluginSection)>> = vec![None; protos.len()];
        let mut named: Vec<Entry> = Vec::new();
        let provider_sections = [
            (PluginKind::Stt, &config.stt),
            (PluginKind::Tts, &config.tts),
            (PluginKind::Realtime, &config.realtime),
            (PluginKind::Route, &config.routes),
        ];
        for (kind, map) in provider_sections {
            for (name, section) in map {
                let path = format!("plugins.{}.{name}", kind.section());
                match &section.plugin {
                    None => {
                        let i = plugins
                            .get(kind, name)
                            .ok_or_else(|| unknown(kind, name, path.clone()))?;
                        sections[i] = Some((path, section.clone()));
                    }
                    Some(plugin) => {
                        let i = plugins
                            .get(kind, plugin)
                            .ok_or_else(|| unknown(kind, plugin, format!("{path}.plugin")))?;
                        let proto = &protos[i];
                        let reg = PluginRegistration {
                            module: proto.module,
                            create: proto.create,
                        };
                        match construct(&reg) {
                            Ok(p) => named.push(Entry::new(
                                instance_id(name, kind)?,
                                p,
                                path,
                                section.clone(),
                            )),
                            Err(b) => broken.push(b),
                        }
                    }
                }
            }
        }
        for (kind, map) in [
            (PluginKind::Processor, &config.processors),
            (PluginKind::Middleware, &config.middleware),
        ] {
            for (name, comp) in map {
                let path = format!("plugins.{}.{name}.type", kind.section());
                let i = plugins
                    .get(kind, &comp.kind)
                    .ok_or_else(|| unknown(kind, &comp.kind, path))?;
                if kind == PluginKind::Middleware {
                    sections[i] = Some((
                        format!("plugins.middleware.{name}.config"),
                        PluginSection {
                            enabled: comp.enabled,
                            required: false,
                            plugin: None,
                            settings: comp.config.clone(),
                        },
                    ));
                }
            }
        }
        for (id, section) in &config.processor_settings {
            let path = format!("plugins.processor_settings.{id}");
            let i = plugins
                .get(PluginKind::Processor, id)
                .ok_or_else(|| unknown(PluginKind::Processor, id, path.clone()))?;
            if section.plugin.is_some() {
                return Err(ConfigError::Syntax {
                    path: format!("{path}.plugin"),
                    message: "processor plugins have no named instances here; name instances \
                              under plugins.processors"
                        .into(),
                }
                .into());
            }
            sections[i] = Some((path, section.clone()));
        }
        check_pipelines(config)?;
        let processors = config
            .processors
            .iter()
            .filter(|(_, c)| c.enabled)
            .filter_map(|(name, c)| {
                let i = plugins.get(PluginKind::Processor, &c.kind)?;
                Some((
                    name.clone(),
                    ProcessorInstance {
                        plugin: protos[i].info.id,
                        config: PluginConfig::new(
                            format!("plugins.processors.{name}.config"),
                            c.config.clone(),
                        ),
                    },
                ))
            })
            .collect();

        let mut entries: Vec<Entry> = protos
            .into_iter()
            .zip(sections)
            .map(|(proto, section)| {
                let kind = proto.handle.kind();
                let (path, section) = section.unwrap_or_else(|| {
                    let default = PluginSection {
                        // Middleware changes every request, so it is opt-in; the rest is opt-out.
                        enabled: kind != PluginKind::Middleware,
                        ..PluginSection::default()
                    };
                    (
                        format!("plugins.{}.{}", kind.section(), proto.info.id),
                        default,
                    )
                });
                Entry::new(proto.info.id, proto, path, section)
            })
            .chain(named)
            .collect();
        entries.sort_by(|a, b| (a.handle.kind(), a.id).cmp(&(b.handle.kind(), b.id)));
        let index = NameIndex::of_instances(&entries)?.0;
        Ok(Self {
            entries,
            index,
            processors,
            pipelines: config.pipelines.clone(),
            broken,
            init_order: Mutex::new(Vec::new()),
        })
    }

    /// Runs `init` on every enabled plugin. A plugin that fails or panics is marked failed and
    /// logged with its id; the others are unaffected.
    pub async fn init_all(&self, ctx: &PluginContext) {
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.state() != PluginState::Pending {
                continue;
            }
            let config = entry.plugin_config();
            let what = format!("init of plugin {}", entry.id);
            match guard(
                &what,
                INIT_DEADLINE,
                entry.handle.plugin().init(ctx, &config),
            )
            .await
            {
                Ok(()) => {
                    entry.set_state(PluginState::Ready);
                    self.init_order
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(i);
                    tracing::debug!(plugin = entry.id, "plugin ready");
                }
                Err(e) => {
                    tracing::error!(plugin = entry.id, module = entry.module, error = %e, "plugin init failed");
                    entry.set_state(PluginState::Failed(e.to_string()));
                }
            }
        }
    }

    /// Runs `shutdown` on every initialised plugin, in reverse order of `init`.
    pub async fn shutdown_all(&self) {
        let order = std::mem::take(&mut *self.init_order.lock().unwrap_or_else(|e| e.into_inner()));
        for &i in order.iter().rev() {
            let entry = &self.entries[i];
            let what = format!("shutdown of plugin {}", entry.id);
            let fut = async {
                entry.handle.plugin().shutdown().await;
                Ok(())
            };
            if let Err(e) = guard(&what, SHUTDOWN_DEADLINE, fut).await {
                tracing::warn!(plugin = entry.id, error = %e, "plugin shutdown failed");
            }
            entry.set_state(PluginState::Pending);
        }
    }

    /// All plugins, ordered by kind then id.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Registrations whose constructor panicked.
    pub fn broken(&self) -> &[BrokenRegistration] {
        &self.broken
    }

    /// Finds a plugin of `kind` by id or alias (case-insensitive), whatever its state.
    pub fn find(&self, kind: PluginKind, name: &str) -> Option<&Entry> {
        self.index
            .get(&(kind, name.to_ascii_lowercase()))
            .map(|&i| &self.entries[i])
    }

    /// The configured default processor chains.
    pub fn pipelines(&self) -> &crate::config::PipelinesConfig {
        &self.pipelines
    }

    /// Creates processor instance `name` (from `plugins.processors`) for one session.
    pub fn processor(
        &self,
        name: &str,
        ctx: &waav_plugin_api::ProcessorContext,
    ) -> Result<CreatedProcessor, LookupError> {
        let inst = self
            .processors
            .get(name)
            .ok_or_else(|| LookupError::Unsupported(format!("processor {name}")))?;
        let entry = self
            .find(PluginKind::Processor, inst.plugin)
            .ok_or_else(|| LookupError::Unsupported(format!("processor {name}")))?;
        if entry.state() != PluginState::Ready {
            return Err(LookupError::Unavailable {
                id: name.to_owned(),
                reason: format!("processor plugin {} is {:?}", entry.id, entry.state()),
            });
        }
        let PluginHandle::Processor(p) = &entry.handle else {
            return Err(LookupError::Unsupported(format!("processor {name}")));
        };
        if !p.stages().contains(&ctx.stage) {
            return Err(LookupError::Unavailable {
                id: name.to_owned(),
                reason: format!("{} does not run at stage {:?}", entry.id, ctx.stage),
            });
        }
        // A panicking `create` is that plugin's bug: the session gets a clear error, and lives.
        let processor = guard_sync(|| p.create(ctx, &inst.config))
            .and_then(|r| r)
            .map_err(|e| LookupError::Unavailable {
                id: name.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(CreatedProcessor {
            plugin: entry.id,
            processor,
            reports_speech: p.reports_speech(),
        })
    }

    /// The processor instances of `plugins.processors`: name, plugin id, stages, the plugin's
    /// latency estimate and the instance's settings (for `/plugins` and the CLI).
    pub fn processor_instances(&self) -> Vec<ProcessorListing<'_>> {
        self.processors
            .iter()
            .map(|(name, inst)| {
                let plugin = self.find(PluginKind::Processor, inst.plugin);
                let (stages, latency) = match plugin.map(|e| &e.handle) {
                    Some(PluginHandle::Processor(p)) => (p.stages(), p.latency_estimate()),
                    _ => (&[][..], Duration::ZERO),
                };
                ProcessorListing {
                    name,
                    plugin: inst.plugin,
                    stages,
                    latency_estimate: latency,
                    settings: &inst.config,
                }
            })
            .collect()
    }

    /// Creates text processor instance `name` (from `plugins.processors`) for one session at a
    /// text stage (post-STT, pre-TTS).
    pub fn text_processor(
        &self,
        name: &str,
        ctx: &waav_plugin_api::ProcessorContext,
    ) -> Result<CreatedTextProcessor, LookupError> {
        let unsupported = || LookupError::Unsupported(format!("processor {name}"));
        let inst = self.processors.get(name).ok_or_else(unsupported)?;
        let entry = self
            .find(PluginKind::Processor, inst.plugin)
            .ok_or_else(unsupported)?;
        let unavailable = |reason: String| LookupError::Unavailable {
            id: name.to_owned(),
            reason,
        };
        if entry.state() != PluginState::Ready {
            return Err(unavailable(format!(
                "processor plugin {} is {:?}",
                entry.id,
                entry.state()
            )));
        }
        let PluginHandle::Processor(p) = &entry.handle else {
            return Err(unsupported());
        };
        if !p.stages().contains(&ctx.stage) {
            return Err(unavailable(format!(
                "{} does not run at stage {}",
                entry.id,
                ctx.stage.as_str()
            )));
        }
        let processor = guard_sync(|| p.create_text(ctx, &inst.config))
            .and_then(|r| r)
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(CreatedTextProcessor {
            plugin: entry.id,
            processor,
        })
    }

    /// Health of every plugin, and whether all required ones are healthy.
    pub fn health(&self) -> (Vec<PluginHealth>, bool) {
        let mut ok = true;
        let mut out: Vec<PluginHealth> = self
            .entries
            .iter()
            .map(|e| {
                let (status, reason) = match e.state() {
                    PluginState::Disabled => ("disabled", None),
                    PluginState::Pending => ("pending", None),
                    PluginState::Failed(r) => ("failed", Some(r)),
                    PluginState::Ready => match guard_sync(|| e.handle.plugin().health()) {
                        Ok(HealthStatus::Healthy) => ("healthy", None),
                        Ok(HealthStatus::Degraded(r)) => ("degraded", Some(r)),
                        Ok(HealthStatus::Unhealthy(r)) => ("unhealthy", Some(r)),
                        Err(p) => ("unhealthy", Some(p.to_string())),
                    },
                };
                if e.section.required && !matches!(status, "healthy" | "degraded") {
                    ok = false;
                }
                PluginHealth {
                    id: e.id.to_owned(),
                    kind: Some(e.handle.kind()),
                    status,
                    reason,
                    required: e.section.required,
                }
            })
            .collect();
        out.extend(self.broken.iter().map(|b| PluginHealth {
            id: b.module.to_owned(),
            kind: None,
            status: "failed",
            reason: Some(b.error.clone()),
            required: false,
        }));
        (out, ok)
    }
}

/// A constructed plugin object, before it has a section.
struct Proto {
    module: &'static str,
    create: fn() -> PluginHandle,
    handle: PluginHandle,
    info: PluginInfo,
}

/// Runs a registration's constructor inside a panic guard.
fn construct(reg: &PluginRegistration) -> Result<Proto, BrokenRegistration> {
    guard_sync(|| {
        let handle = (reg.create)();
        let info = handle.plugin().info();
        (handle, info)
    })
    .map(|(handle, info)| Proto {
        module: reg.module,
        create: reg.create,
        handle,
        info,
    })
    .map_err(|e| {
        tracing::error!(module = reg.module, error = %e, "plugin constructor failed");
        BrokenRegistration {
            module: reg.module,
            error: e.to_string(),
        }
    })
}

/// A named instance's id: the section key, which must be a valid id (it is leaked once per
/// registry so provider labels stay `&'static str` on every hot path).
fn instance_id(name: &str, kind: PluginKind) -> Result<&'static str, RegistryError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(ConfigError::Syntax {
            path: format!("plugins.{}.{name}", kind.section()),
            message: "an instance id is 1–64 characters of a-z, 0-9, '-' and '_'".into(),
        }
        .into());
    }
    Ok(Box::leak(name.to_owned().into_boxed_str()))
}

/// Names (lower-case) per kind, to positions; duplicates are a start-up error.
struct NameIndex(HashMap<(PluginKind, String), usize>);

impl NameIndex {
    fn insert(
        &mut self,
        kind: PluginKind,
        name: &str,
        i: usize,
        describe: impl Fn(usize) -> String,
    ) -> Result<(), RegistryError> {
        let key = (kind, name.to_ascii_lowercase());
        if let Some(&j) = self.0.get(&key) {
            return Err(RegistryError::Duplicate {
                kind: kind.as_str(),
                name: key.1,
                first: describe(j),
                second: describe(i),
            });
        }
        self.0.insert(key, i);
        Ok(())
    }

    fn get(&self, kind: PluginKind, name: &str) -> Option<usize> {
        self.0.get(&(kind, name.to_ascii_lowercase())).copied()
    }

    /// Plugin ids and aliases.
    fn of_plugins(protos: &[Proto]) -> Result<Self, RegistryError> {
        let mut index = Self(HashMap::new());
        let describe = |j: usize| {
            let p: &Proto = &protos[j];
            format!("{} ({})", p.info.id, p.module)
        };
        for (i, p) in protos.iter().enumerate() {
            for name in std::iter::once(&p.info.id).chain(p.info.aliases) {
                index.insert(p.handle.kind(), name, i, describe)?;
            }
        }
        Ok(index)
    }

    /// Instance ids, and the aliases of default instances.
    fn of_instances(entries: &[Entry]) -> Result<Self, RegistryError> {
        let mut index = Self(HashMap::new());
        let describe = |j: usize| {
            let e: &Entry = &entries[j];
            if e.is_default_instance() {
                format!("{} ({})", e.id, e.module)
            } else {
                format!("instance {} of {} ({})", e.id, e.info.id, e.config_path)
            }
        };
        for (i, e) in entries.iter().enumerate() {
            let aliases: &[&str] = if e.is_default_instance() {
                e.info.aliases
            } else {
                &[]
            };
            for name in std::iter::once(&e.id).chain(aliases) {
                index.insert(e.handle.kind(), name, i, describe)?;
            }
        }
        Ok(index)
    }
}

fn check_pipelines(config: &PluginsConfig) -> Result<(), RegistryError> {
    let p = &config.pipelines;
    for (stage, names) in [
        ("default_stt_pre", &p.default_stt_pre),
        ("default_stt_post", &p.default_stt_post),
        ("default_tts_pre", &p.default_tts_pre),
        ("default_tts_post", &p.default_tts_post),
    ] {
        for name in names {
            if !config.processors.contains_key(name) {
                let defined: Vec<&str> = config.processors.keys().map(String::as_str).collect();
                return Err(ConfigError::Unknown(format!(
                    "plugins.pipelines.{stage} names processor {name:?}, which plugins.processors does not define (defined: {})",
                    if defined.is_empty() { "none".into() } else { defined.join(", ") }
                ))
                .into());
            }
        }
    }
    Ok(())
}

impl Entry {
    fn new(id: &'static str, proto: Proto, config_path: String, section: PluginSection) -> Self {
        // The environment fallback is for a plugin's default instance only: a named instance
        // (another account, region) must not silently bill the default one's key.
        let credentials = instance_credentials(&proto.info, &section, id == proto.info.id);
        let state = if section.enabled {
            PluginState::Pending
        } else {
            PluginState::Disabled
        };
        Self {
            id,
            info: proto.info,
            handle: proto.handle,
            section,
            config_path,
            credentials,
            module: proto.module,
            state: Mutex::new(state),
        }
    }
}

fn instance_credentials(info: &PluginInfo, section: &PluginSection, use_env: bool) -> Credentials {
    let mut out = Credentials::new();
    for field in info.credential_fields() {
        let from_config = section
            .settings
            .get(field.name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(Secret::from);
        let value = from_config.or_else(|| {
            field
                .env
                .filter(|_| use_env)
                .and_then(|var| std::env::var(var).ok())
                .filter(|s| !s.is_empty())
                .map(Secret::from)
        });
        if let Some(v) = value {
            out.set(field.name, v);
        }
    }
    out
}

#[cfg(test)]
mod tests;
