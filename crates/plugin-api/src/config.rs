//! A plugin's own configuration section, with typed accessors, and the [`Secret`] type.

use crate::PluginError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// A secret string (API key, token). `Debug` and `Display` never show its value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call this only where the value is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Serializes as `"***"`, so printing a config never leaks the value.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::from)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// One plugin's configuration section (for example `plugins.stt.deepgram`), with typed accessors.
///
/// Every accessor returns `Ok(None)` when the key is absent and a [`PluginError::Config`] naming the
/// full path (`plugins.stt.deepgram.default_model`) when the value has the wrong type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfig {
    path: String,
    values: Map<String, Value>,
}

impl PluginConfig {
    /// A section at `path` holding `values`.
    pub fn new(path: impl Into<String>, values: Map<String, Value>) -> Self {
        Self {
            path: path.into(),
            values,
        }
    }

    /// Builds a section from a JSON value; anything but an object is a config error.
    pub fn from_value(path: impl Into<String>, value: Value) -> Result<Self, PluginError> {
        let path = path.into();
        match value {
            Value::Object(values) => Ok(Self { path, values }),
            Value::Null => Ok(Self::new(path, Map::new())),
            other => Err(PluginError::Config(format!(
                "{path}: expected a map, found {}",
                type_name(&other)
            ))),
        }
    }

    /// The dotted path of this section in the configuration file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the section has no keys.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The keys present, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The raw value at `key`.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The whole section as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.values
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> PluginError {
        PluginError::Config(format!(
            "{}.{key}: expected {want}, found {}",
            self.path,
            type_name(got)
        ))
    }

    fn get<T>(
        &self,
        key: &str,
        want: &str,
        f: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Option<T>, PluginError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| self.wrong(key, want, v)),
        }
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<Option<String>, PluginError> {
        self.get(key, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// A secret value (a string that never prints). An empty string counts as absent.
    pub fn secret(&self, key: &str) -> Result<Option<Secret>, PluginError> {
        Ok(self
            .get(key, "a string", |v| v.as_str().map(Secret::new))?
            .filter(|s| !s.is_empty()))
    }

    /// A boolean value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, PluginError> {
        self.get(key, "a boolean", Value::as_bool)
    }

    /// A non-negative integer.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        self.get(key, "a non-negative integer", Value::as_u64)
    }

    /// A non-negative integer in `range`, `default` when absent. Out of range is a `Config`
    /// error naming the key: check every number before it sizes anything.
    pub fn u64_in(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, PluginError> {
        let v = self.u64(key)?.unwrap_or(default);
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.outside(key, v, range.start(), range.end()))
        }
    }

    /// A finite number in `range`, `default` when absent (integers are accepted too); out of
    /// range is a `Config` error naming the key.
    pub fn f64_in(
        &self,
        key: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<f64, PluginError> {
        Ok(self.f64_opt_in(key, range)?.unwrap_or(default))
    }

    /// A finite number in `range`, `None` when absent (for settings that, unset, leave the
    /// engine's or vendor's own value); out of range is a `Config` error naming the key.
    pub fn f64_opt_in(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, PluginError> {
        match self.f64(key)? {
            Some(v) if !(v.is_finite() && range.contains(&v)) => {
                Err(self.outside(key, v, range.start(), range.end()))
            }
            v => Ok(v),
        }
    }

    fn outside(
        &self,
        key: &str,
        v: impl std::fmt::Display,
        min: impl std::fmt::Display,
        max: impl std::fmt::Display,
    ) -> PluginError {
        PluginError::Config(format!("{}.{key}: {v} is outside {min}–{max}", self.path))
    }

    /// A signed integer.
    pub fn i64(&self, key: &str) -> Result<Option<i64>, PluginError> {
        self.get(key, "an integer", Value::as_i64)
    }

    /// A number (integers are accepted too).
    pub fn f64(&self, key: &str) -> Result<Option<f64>, PluginError> {
        self.get(key, "a number", Value::as_f64)
    }

    /// A list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, PluginError> {
        self.get(key, "a list of strings", |v| {
            v.as_array()?
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// A nested map as its own section (path extended with `key`).
    pub fn section(&self, key: &str) -> Result<Option<PluginConfig>, PluginError> {
        let path = format!("{}.{key}", self.path);
        self.get(key, "a map", |v| {
            v.as_object().map(|m| PluginConfig::new(path, m.clone()))
        })
    }

    /// Deserializes the whole section into a typed config struct.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_value(Value::Object(self.values.clone()))
            .map_err(|e| PluginError::Config(format!("{}: {e}", self.path)))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> PluginConfig {
        PluginConfig::from_value(
            "plugins.stt.demo",
            json!({
                "model": "nova-3", "enabled": true, "retries": 3, "offset": -2,
                "threshold": 0.5, "langs": ["en", "de"], "api_key": "sk-123",
                "nested": {"depth": 1}, "empty_key": ""
            }),
        )
        .unwrap()
    }

    #[test]
    fn typed_accessors() {
        let c = cfg();
        assert_eq!(c.string("model").unwrap().as_deref(), Some("nova-3"));
        assert_eq!(c.bool("enabled").unwrap(), Some(true));
        assert_eq!(c.u64("retries").unwrap(), Some(3));
        assert_eq!(c.i64("offset").unwrap(), Some(-2));
        assert_eq!(c.f64("threshold").unwrap(), Some(0.5));
        assert_eq!(c.f64("retries").unwrap(), Some(3.0));
        assert_eq!(c.strings("langs").unwrap().unwrap(), vec!["en", "de"]);
        let nested = c.section("nested").unwrap().unwrap();
        assert_eq!(nested.path(), "plugins.stt.demo.nested");
        assert_eq!(nested.u64("depth").unwrap(), Some(1));
        assert_eq!(c.string("missing").unwrap(), None);
        assert_eq!(c.secret("empty_key").unwrap(), None);
    }

    #[test]
    fn ranged_numbers_take_defaults_and_refuse_by_name() {
        let c = cfg();
        assert_eq!(c.u64_in("retries", 1, 0..=5).unwrap(), 3);
        assert_eq!(c.u64_in("missing", 4, 0..=5).unwrap(), 4);
        assert_eq!(c.f64_in("threshold", 0.1, 0.0..=1.0).unwrap(), 0.5);
        let e = c.u64_in("retries", 1, 0..=2).unwrap_err().to_string();
        assert!(
            e.contains("plugins.stt.demo.retries: 3 is outside 0–2"),
            "{e}"
        );
        let e = c
            .f64_in("threshold", 0.1, 0.6..=1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold"), "{e}");
        assert!(
            c.u64_in("threshold", 1, 0..=9).is_err(),
            "a fraction is no integer"
        );
        assert!(c.u64_in("offset", 1, 0..=9).is_err(), "negative");
        assert_eq!(c.f64_opt_in("threshold", 0.0..=1.0).unwrap(), Some(0.5));
        assert_eq!(c.f64_opt_in("missing", 0.0..=1.0).unwrap(), None);
        assert!(c.f64_opt_in("threshold", 0.6..=1.0).is_err());
    }

    #[test]
    fn wrong_types_name_the_path() {
        let c = cfg();
        let e = c.u64("threshold").unwrap_err().to_string();
        assert!(e.contains("plugins.stt.demo.threshold"), "{e}");
        assert!(e.contains("a float"), "{e}");
        assert!(c.bool("model").is_err());
        assert!(c.u64("offset").is_err());
        assert!(PluginConfig::from_value("p", json!([1])).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = cfg().secret("api_key").unwrap().unwrap();
        assert_eq!(s.expose(), "sk-123");
        assert!(!format!("{s:?}").contains("sk-123"));
        assert!(!format!("{s}").contains("sk-123"));
    }

    #[test]
    fn deserializes_into_structs() {
        #[derive(serde::Deserialize)]
        struct Demo {
            model: String,
            retries: u32,
        }
        let d: Demo = cfg().deserialize().unwrap();
        assert_eq!((d.model.as_str(), d.retries), ("nova-3", 3));
    }
}
