//! The process-wide ONNX Runtime, loaded from a shared library at run time.
//!
//! ort's default features download prebuilt binaries at build time, which fails offline; we use
//! `load-dynamic` and the `libonnxruntime.so` that `scripts/fetch-models.sh` takes from the
//! `onnxruntime` PyPI wheel.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::error::{LocalError, Result};
use crate::models::{require_file, ModelPaths};

/// Environment variable naming the ONNX Runtime library (the same one ort itself honours).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// The ONNX Runtime library to load: `$ORT_DYLIB_PATH`, else `<models>/onnxruntime/libonnxruntime.so`.
pub fn default_library_path() -> PathBuf {
    match std::env::var_os(ORT_DYLIB_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => ModelPaths::from_env().onnxruntime_lib(),
    }
}

/// Loads ONNX Runtime from `library` (once per process) and returns the shared environment.
///
/// ONNX Runtime allows one library and one environment per process: after the first success,
/// later calls return that environment whatever `library` they name. A failed load (missing
/// or incompatible library) can be retried.
pub fn environment(library: &Path) -> Result<Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    require_file(library)?;
    let env = ort::init_from(library)
        .map_err(|e| LocalError::inference("onnxruntime", e))?
        .with_name("waav-local")
        .build()
        .map_err(|e| LocalError::inference("onnxruntime", e))?;
    Ok(ENVIRONMENT.get_or_init(|| env).clone())
}
