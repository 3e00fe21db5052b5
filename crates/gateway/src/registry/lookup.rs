//! Resolving a client's provider name and API key to a ready plugin.

use super::{Entry, PluginState, Registry};
use std::sync::Arc;
use waav_plugin_api::credentials::API_KEY;
use waav_plugin_api::{
    Credentials, PluginHandle, PluginKind, RealtimePlugin, Secret, SttPlugin, TtsPlugin,
};

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
    /// A required credential other than the API key is missing.
    #[error("{provider} credential {field:?} not configured (set it in the provider's config section, its environment variable, or the session's credentials)")]
    MissingCredential {
        /// The plugin's display name.
        provider: String,
        /// The field.
        field: &'static str,
    },
    /// The client sent a credential the plugin does not declare.
    #[error("{provider} has no credential {field:?}; it takes: {known}")]
    UnknownCredential {
        /// The plugin's display name.
        provider: String,
        /// What the client sent.
        field: String,
        /// The declared fields.
        known: String,
    },
}

impl LookupError {
    /// Machine-readable code for client-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "unsupported_provider",
            Self::Unavailable { .. } => "provider_unavailable",
            Self::MissingKey(_) => "missing_api_key",
            Self::MissingCredential { .. } => "missing_credential",
            Self::UnknownCredential { .. } => "invalid_config",
        }
    }
}

/// Credentials a client supplies for one session: the WaaV `api_key` field and the additive
/// `credentials` object. Empty values count as absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCredentials<'a> {
    /// `api_key` (per-session key override).
    pub api_key: Option<&'a str>,
    /// `credentials: {name: value}`.
    pub fields: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl<'a> ClientCredentials<'a> {
    /// From the `api_key` and `credentials` fields of a client's `stt_config` / `tts_config`.
    pub fn new(
        api_key: &'a Option<String>,
        fields: &'a Option<std::collections::BTreeMap<String, String>>,
    ) -> Self {
        Self {
            api_key: api_key.as_deref(),
            fields: fields.as_ref(),
        }
    }
}

/// A resolved provider: the plugin object, its registry entry and the credentials to use.
pub struct Provider<'r, P: ?Sized> {
    /// The plugin.
    pub plugin: Arc<P>,
    /// Its registry entry (info, config).
    pub entry: &'r Entry,
    /// Client key, else the instance's key; `None` for keyless plugins.
    pub api_key: Option<Secret>,
    /// Every credential: the client's values over the instance's.
    pub credentials: Credentials,
}

impl Registry {
    fn resolve(
        &self,
        kind: PluginKind,
        name: &str,
        client: ClientCredentials<'_>,
    ) -> Result<(&Entry, Credentials), LookupError> {
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
        let fields = entry.info.credential_fields();
        let mut credentials = entry.credentials.clone();
        let sent = client
            .fields
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(client.api_key.map(|k| (API_KEY, k)));
        for (name, value) in sent.filter(|(_, v)| !v.is_empty()) {
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                if name == API_KEY {
                    continue; // keyless plugins ignore a key, as WaaV clients may send one
                }
                let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
                return Err(LookupError::UnknownCredential {
                    provider: entry.info.name.to_owned(),
                    field: name.to_owned(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            };
            credentials.set(field.name, Secret::from(value));
        }
        match credentials.first_missing(&fields) {
            None => Ok((entry, credentials)),
            Some(API_KEY) => Err(LookupError::MissingKey(entry.info.name.to_owned())),
            Some(field) => Err(LookupError::MissingCredential {
                provider: entry.info.name.to_owned(),
                field,
            }),
        }
    }

    fn provider<P: ?Sized>(
        &self,
        kind: PluginKind,
        name: &str,
        client: ClientCredentials<'_>,
        as_role: fn(&PluginHandle) -> Option<&Arc<P>>,
    ) -> Result<Provider<'_, P>, LookupError> {
        let (entry, credentials) = self.resolve(kind, name, client)?;
        let plugin = as_role(&entry.handle)
            .expect("indexed under its own kind")
            .clone();
        Ok(Provider {
            plugin,
            entry,
            api_key: credentials.get(API_KEY).cloned(),
            credentials,
        })
    }

    /// Resolves an STT provider by id or alias, with the key to use.
    pub fn stt(
        &self,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<Provider<'_, dyn SttPlugin>, LookupError> {
        self.stt_with(
            name,
            ClientCredentials {
                api_key: client_key,
                fields: None,
            },
        )
    }

    /// Resolves an STT provider with the client's credentials.
    pub fn stt_with(
        &self,
        name: &str,
        client: ClientCredentials<'_>,
    ) -> Result<Provider<'_, dyn SttPlugin>, LookupError> {
        self.provider(PluginKind::Stt, name, client, |h| match h {
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
        self.tts_with(
            name,
            ClientCredentials {
                api_key: client_key,
                fields: None,
            },
        )
    }

    /// Resolves a TTS provider with the client's credentials.
    pub fn tts_with(
        &self,
        name: &str,
        client: ClientCredentials<'_>,
    ) -> Result<Provider<'_, dyn TtsPlugin>, LookupError> {
        self.provider(PluginKind::Tts, name, client, |h| match h {
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
        self.realtime_with(
            name,
            ClientCredentials {
                api_key: client_key,
                fields: None,
            },
        )
    }

    /// Resolves a realtime provider with the client's credentials.
    pub fn realtime_with(
        &self,
        name: &str,
        client: ClientCredentials<'_>,
    ) -> Result<Provider<'_, dyn RealtimePlugin>, LookupError> {
        self.provider(PluginKind::Realtime, name, client, |h| match h {
            PluginHandle::Realtime(p) => Some(p),
            _ => None,
        })
    }
}
