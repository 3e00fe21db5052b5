//! Resolving a client's provider name and API key to a ready plugin.

use super::{Entry, PluginState, Registry};
use std::sync::Arc;
use waav_plugin_api::{PluginHandle, PluginKind, RealtimePlugin, Secret, SttPlugin, TtsPlugin};

/// Why a provider cannot serve a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No enabled plugin of that kind has this name.
    #[error("Unsupported provider: {0}")]
    Unsupported(String),
    /// The plugin exists but failed to initialise.
    #[error("Provider {id} is unavailable: {reason}")]
    Unavailable {
        /// Plugin id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The plugin needs an API key and neither the client nor the server has one.
    #[error("{0} API key not configured in server environment")]
    MissingKey(String),
}

impl LookupError {
    /// Machine-readable code for client-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "unsupported_provider",
            Self::Unavailable { .. } => "provider_unavailable",
            Self::MissingKey(_) => "missing_api_key",
        }
    }
}

/// A resolved provider: the plugin object, its registry entry and the key to use.
pub struct Provider<'r, P: ?Sized> {
    /// The plugin.
    pub plugin: Arc<P>,
    /// Its registry entry (info, config).
    pub entry: &'r Entry,
    /// Client key, else server key; `None` for keyless plugins.
    pub api_key: Option<Secret>,
}

impl Registry {
    fn resolve(
        &self,
        kind: PluginKind,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<&Entry, LookupError> {
        let entry = self
            .find(kind, name)
            .ok_or_else(|| LookupError::Unsupported(name.to_owned()))?;
        match entry.state() {
            PluginState::Ready => {}
            PluginState::Failed(reason) => {
                return Err(LookupError::Unavailable {
                    id: entry.id.to_owned(),
                    reason,
                })
            }
            PluginState::Disabled | PluginState::Pending => {
                return Err(LookupError::Unsupported(name.to_owned()))
            }
        }
        if entry.info.api_key_env.is_some()
            && client_key.is_none_or(str::is_empty)
            && entry.server_api_key.is_none()
        {
            return Err(LookupError::MissingKey(entry.info.name.to_owned()));
        }
        Ok(entry)
    }

    fn key_for(entry: &Entry, client_key: Option<&str>) -> Option<Secret> {
        match client_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(Secret::from(k)),
            None => entry.server_api_key.clone(),
        }
    }

    fn provider<P: ?Sized>(
        &self,
        kind: PluginKind,
        name: &str,
        client_key: Option<&str>,
        as_role: fn(&PluginHandle) -> Option<&Arc<P>>,
    ) -> Result<Provider<'_, P>, LookupError> {
        let entry = self.resolve(kind, name, client_key)?;
        let plugin = as_role(&entry.handle)
            .expect("indexed under its own kind")
            .clone();
        Ok(Provider {
            plugin,
            entry,
            api_key: Self::key_for(entry, client_key),
        })
    }

    /// Resolves an STT provider by id or alias, with the key to use.
    pub fn stt(
        &self,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<Provider<'_, dyn SttPlugin>, LookupError> {
        self.provider(PluginKind::Stt, name, client_key, |h| match h {
            PluginHandle::Stt(p) => Some(p),
            _ => None,
        })
    }

    /// Resolves a TTS provider by id or alias, with the key to use.
    pub fn tts(
        &self,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<Provider<'_, dyn TtsPlugin>, LookupError> {
        self.provider(PluginKind::Tts, name, client_key, |h| match h {
            PluginHandle::Tts(p) => Some(p),
            _ => None,
        })
    }

    /// Resolves a realtime provider by id or alias, with the key to use.
    pub fn realtime(
        &self,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<Provider<'_, dyn RealtimePlugin>, LookupError> {
        self.provider(PluginKind::Realtime, name, client_key, |h| match h {
            PluginHandle::Realtime(p) => Some(p),
            _ => None,
        })
    }
}
