//! Credentials a plugin declares, and their values as the host resolved them.
//!
//! A plugin never reads the environment or its config for secrets itself: it declares named
//! [`CredentialField`]s in its [`PluginInfo`](crate::PluginInfo), and the host fills
//! [`Credentials`] for each session from, in order, the client's per-session values, the
//! instance's config section (where `${VAR}` placeholders work) and the field's environment
//! variable (default instance only). Values are [`Secret`]s, so they never print.
//!
//! ```
//! use waav_plugin_api::{CredentialField, PluginInfo};
//!
//! const AWS: &[CredentialField] = &[
//!     CredentialField::secret("access_key_id", "AWS_ACCESS_KEY_ID"),
//!     CredentialField::secret("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
//!     CredentialField::secret("session_token", "AWS_SESSION_TOKEN").optional(),
//!     CredentialField::setting("region", "AWS_REGION"),
//! ];
//! let info = PluginInfo::new("aws-transcribe", "Amazon Transcribe").credentials(AWS);
//! assert_eq!(info.credential_fields().len(), 4);
//! ```

use crate::Secret;
use serde::Serialize;

/// One credential a plugin needs: an API key, a key id and secret, a region, an instance URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CredentialField {
    /// Name, as used in config sections and per-session overrides (`api_key`, `region`, …).
    pub name: &'static str,
    /// Whether the value is secret (masked everywhere) or a plain setting such as a region.
    pub secret: bool,
    /// The environment variable the default instance falls back to.
    pub env: Option<&'static str>,
    /// Whether a session cannot start without it.
    pub required: bool,
}

impl CredentialField {
    /// A required secret read from `env` when the config has none.
    pub const fn secret(name: &'static str, env: &'static str) -> Self {
        Self {
            name,
            secret: true,
            env: Some(env),
            required: true,
        }
    }

    /// A required non-secret setting (a region, an account id) read from `env` when the config
    /// has none.
    pub const fn setting(name: &'static str, env: &'static str) -> Self {
        Self {
            name,
            secret: false,
            env: Some(env),
            required: true,
        }
    }

    /// The same field, not required.
    pub const fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// The same field without an environment fallback (config or session only).
    pub const fn no_env(mut self) -> Self {
        self.env = None;
        self
    }
}

/// The `api_key` field that [`PluginInfo::api_key_env`](crate::PluginInfo::api_key_env) declares.
pub const API_KEY: &str = "api_key";

/// Resolved credential values of one session (or one instance), by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    values: Vec<(&'static str, Secret)>,
}

impl Credentials {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (replacing a previous value).
    pub fn set(&mut self, name: &'static str, value: Secret) {
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
    }

    /// The value of `name`, if resolved.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of `name` as text, for sending it to its destination.
    pub fn expose(&self, name: &str) -> Option<&str> {
        self.get(name).map(Secret::expose)
    }

    /// Whether `name` has a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names that have values.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.iter().map(|(n, _)| *n)
    }

    /// The first required field of `fields` without a value.
    pub fn first_missing(&self, fields: &[CredentialField]) -> Option<&'static str> {
        fields
            .iter()
            .find(|f| f.required && !self.contains(f.name))
            .map(|f| f.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_set_replaced_and_never_printed() {
        let mut c = Credentials::new();
        c.set("api_key", Secret::from("k1"));
        c.set("api_key", Secret::from("k2"));
        c.set("region", Secret::from("eu-west-1"));
        assert_eq!(c.expose("api_key"), Some("k2"));
        assert_eq!(c.names().collect::<Vec<_>>(), ["api_key", "region"]);
        assert!(!format!("{c:?}").contains("k2"));
        let fields = [
            CredentialField::secret("api_key", "X_KEY"),
            CredentialField::secret("token", "X_TOKEN").optional(),
            CredentialField::setting("account", "X_ACCOUNT"),
        ];
        assert_eq!(c.first_missing(&fields), Some("account"));
        c.set("account", Secret::from("a"));
        assert_eq!(c.first_missing(&fields), None);
    }
}
