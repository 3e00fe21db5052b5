//! Settings shared by the local plugins.

use crate::models::ModelPaths;
use waav_plugin_api::{PluginConfig, PluginError};

/// The models directory: the plugin's `models_dir`, else `WAAV_MODELS_DIR`, else `./models`.
pub fn models_from(config: &PluginConfig) -> Result<ModelPaths, PluginError> {
    Ok(match config.string("models_dir")? {
        Some(dir) => ModelPaths::new(dir),
        None => ModelPaths::from_env(),
    })
}
