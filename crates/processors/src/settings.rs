//! Reading a processor's `config:` map: unknown keys and out-of-range numbers are
//! [`PluginError::Config`] errors naming the key and the accepted range.

use waav_plugin_api::{PluginConfig, PluginError, ProcessorContext};

/// Accepted sample rates of the audio a processor sees (and of `resample`'s `to_rate`).
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Accepted channel counts.
pub const CHANNEL_RANGE: std::ops::RangeInclusive<u16> = 1..=8;

/// A processor's settings, checked against the keys it knows.
pub(crate) struct Settings<'a> {
    cfg: &'a PluginConfig,
}

impl<'a> Settings<'a> {
    /// Wraps `cfg`, refusing any key not in `known` (typos do not pass silently).
    pub(crate) fn new(cfg: &'a PluginConfig, known: &[&str]) -> Result<Self, PluginError> {
        if let Some(bad) = cfg.keys().find(|k| !known.contains(k)) {
            return Err(PluginError::Config(format!(
                "{}: unknown setting {bad:?} (known: {})",
                cfg.path(),
                known.join(", ")
            )));
        }
        Ok(Self { cfg })
    }

    fn err(&self, key: &str, msg: impl std::fmt::Display) -> PluginError {
        PluginError::Config(format!("{}.{key}: {msg}", self.cfg.path()))
    }

    /// Whether `key` is set (and not null).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.cfg.raw(key).is_some_and(|v| !v.is_null())
    }

    /// A finite number in `min..=max`, `default` when absent.
    pub(crate) fn number(
        &self,
        key: &str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, PluginError> {
        let v = self.cfg.f64(key)?.unwrap_or(default);
        if !v.is_finite() || v < min || v > max {
            return Err(self.err(key, format_args!("{v} is outside {min}..={max}")));
        }
        Ok(v)
    }

    /// An integer in `min..=max`, `default` when absent. Integral floats (`100.0`) are accepted.
    pub(crate) fn integer(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, PluginError> {
        let v = self.cfg.f64(key)?.unwrap_or(default as f64);
        if !v.is_finite() || v.fract() != 0.0 || v < min as f64 || v > max as f64 {
            return Err(self.err(key, format_args!("{v} is not an integer in {min}..={max}")));
        }
        Ok(v as u64)
    }

    /// One of `allowed` (case-insensitive), `default` when absent; returned lower-case.
    pub(crate) fn choice(
        &self,
        key: &str,
        default: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, PluginError> {
        let Some(v) = self.cfg.string(key)? else {
            return Ok(default);
        };
        allowed
            .iter()
            .copied()
            .find(|a| a.eq_ignore_ascii_case(&v))
            .ok_or_else(|| {
                self.err(
                    key,
                    format_args!("{v:?} is not one of {}", allowed.join(", ")),
                )
            })
    }
}

/// Checks the audio layout a processor is created for.
pub(crate) fn check_layout(path: &str, ctx: &ProcessorContext) -> Result<(), PluginError> {
    check_format(ctx.sample_rate, ctx.channels)
        .map_err(|e| PluginError::Config(format!("{path}: {e}")))
}

/// Whether a rate and channel count are within [`RATE_RANGE`] and [`CHANNEL_RANGE`].
pub(crate) fn check_format(rate: u32, channels: u16) -> Result<(), String> {
    if !RATE_RANGE.contains(&rate) {
        return Err(format!(
            "sample rate {rate} Hz is outside {}..={} Hz",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        ));
    }
    if !CHANNEL_RANGE.contains(&channels) {
        return Err(format!(
            "{channels} channels is outside {}..={}",
            CHANNEL_RANGE.start(),
            CHANNEL_RANGE.end()
        ));
    }
    Ok(())
}

/// Checks a block handed to `process`: a sane layout and whole sample frames.
pub(crate) fn check_block(
    id: &str,
    rate: u32,
    channels: u16,
    len: usize,
) -> Result<(), PluginError> {
    check_format(rate, channels).map_err(|e| PluginError::Permanent(format!("{id}: {e}")))?;
    if !len.is_multiple_of(usize::from(channels)) {
        return Err(PluginError::Permanent(format!(
            "{id}: {len} samples is not a whole number of {channels}-channel frames"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.processors.x.config", v).unwrap()
    }

    #[test]
    fn ranges_and_unknown_keys() {
        let c = cfg(json!({"a": 1.5, "n": 100, "f": 100.0, "m": "AGC", "huge": 1e300}));
        let s = Settings::new(&c, &["a", "n", "f", "m", "huge"]).unwrap();
        assert_eq!(s.number("a", 0.0, 0.0, 2.0).unwrap(), 1.5);
        assert!(s.number("a", 0.0, 0.0, 1.0).is_err());
        assert_eq!(s.integer("n", 0, 0, 1000).unwrap(), 100);
        assert_eq!(s.integer("f", 0, 0, 1000).unwrap(), 100);
        assert!(s.integer("a", 0, 0, 1000).is_err());
        assert!(s.integer("huge", 0, 0, 1000).is_err());
        assert_eq!(s.integer("absent", 7, 0, 1000).unwrap(), 7);
        assert_eq!(s.choice("m", "fixed", &["fixed", "agc"]).unwrap(), "agc");
        let e = Settings::new(&c, &["a"]).err().unwrap().to_string();
        assert!(
            e.contains("plugins.processors.x.config") && e.contains("unknown"),
            "{e}"
        );
    }
}
