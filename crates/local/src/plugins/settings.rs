//! Settings and checks shared by the local plugins.

use super::pool::Pool;
use crate::models::ModelPaths;
use std::sync::Mutex;
use waav_plugin_api::{HealthStatus, PluginConfig, PluginError};

/// The lowest sample rate (Hz) the local plugins accept from or produce for a client.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// The highest sample rate (Hz) the local plugins accept from or produce for a client.
pub const MAX_SAMPLE_RATE: u32 = 192_000;
/// The most interleaved channels local STT accepts.
pub const MAX_CHANNELS: u16 = 8;

/// The models directory: the plugin's `models_dir`, else `WAAV_MODELS_DIR`, else `./models`.
#[cfg_attr(not(any(feature = "whisper", feature = "piper")), allow(dead_code))]
pub fn models_from(config: &PluginConfig) -> Result<ModelPaths, PluginError> {
    Ok(match config.string("models_dir")? {
        Some(dir) => ModelPaths::new(dir),
        None => ModelPaths::from_env(),
    })
}

/// Rejects a sample rate outside [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`]. Runs before anything
/// is sized from the rate (resampler FFTs, frame buffers): a direct caller may bypass the core's
/// own check.
pub fn check_sample_rate(rate: u32) -> Result<(), PluginError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "unsupported sample rate {rate} Hz; the local engines take {MIN_SAMPLE_RATE} to \
             {MAX_SAMPLE_RATE} Hz"
        )))
    }
}

/// Rejects a channel count outside 1..=[`MAX_CHANNELS`].
pub fn check_channels(channels: u16) -> Result<(), PluginError> {
    if (1..=MAX_CHANNELS).contains(&channels) {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "unsupported channel count {channels}; the local engines take 1 to {MAX_CHANNELS}"
        )))
    }
}

/// Why a plugin has no engine: set when `init` fails, read by `health`.
#[derive(Debug, Default)]
pub struct InitError(Mutex<Option<String>>);

impl InitError {
    /// Records the failure of `init`, returning it.
    pub fn record(&self, e: PluginError) -> PluginError {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        e
    }

    /// `Unhealthy` with the recorded reason (or "not initialised").
    fn unhealthy(&self, what: &str) -> HealthStatus {
        let reason = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        HealthStatus::Unhealthy(match reason {
            Some(reason) => format!("{what} did not load: {reason}"),
            None => format!("{what} is not initialised"),
        })
    }
}

/// Health of a local engine: `Unhealthy` without one, else its pool's (`Degraded` while the
/// inference queue is full).
pub fn engine_health(pool: Option<&Pool>, init_error: &InitError, what: &str) -> HealthStatus {
    match pool {
        Some(pool) => pool.health(),
        None => init_error.unhealthy(what),
    }
}

/// The espeak-ng time limit from a plugin's `espeak_timeout_ms` (default
/// [`ESPEAK_TIMEOUT`](crate::espeak::ESPEAK_TIMEOUT)).
pub fn espeak_timeout_from(config: &PluginConfig) -> Result<std::time::Duration, PluginError> {
    let default = crate::espeak::ESPEAK_TIMEOUT.as_millis() as u64;
    Ok(std::time::Duration::from_millis(config.u64_in(
        "espeak_timeout_ms",
        default,
        1..=600_000,
    )?))
}
