//! Where the offline models live on disk.
//!
//! `scripts/fetch-models.sh` lays them out as:
//!
//! ```text
//! <models>/whisper-tiny.en/{model.bin, tokenizer.json, config.json, vocabulary.txt}
//! <models>/piper/en_US-joe-medium.onnx(.json)
//! <models>/onnxruntime/libonnxruntime.so
//! <models>/silero/silero_vad.onnx
//! ```

use std::path::{Path, PathBuf};

use crate::error::{LocalError, Result};

/// Environment variable that overrides the models directory.
pub const MODELS_DIR_ENV: &str = "WAAV_MODELS_DIR";

/// The command that downloads every model; quoted in "model missing" errors.
pub const FETCH_HINT: &str = "scripts/fetch-models.sh";

/// Default Piper voice shipped by the fetch script.
pub const DEFAULT_PIPER_VOICE: &str = "en_US-joe-medium";

/// Paths of the offline models, rooted at one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    root: PathBuf,
}

impl ModelPaths {
    /// Uses `root` as the models directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Resolves the models directory: `$WAAV_MODELS_DIR` if set and non-empty, else `./models`.
    pub fn from_env() -> Self {
        match std::env::var_os(MODELS_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => Self::new("models"),
        }
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CTranslate2 Whisper tiny.en model directory.
    pub fn whisper_dir(&self) -> PathBuf {
        self.root.join("whisper-tiny.en")
    }

    /// The Piper voice model (`.onnx`) of the default voice.
    pub fn piper_onnx(&self) -> PathBuf {
        self.piper_voice_onnx(DEFAULT_PIPER_VOICE)
    }

    /// The Piper voice configuration (`.onnx.json`) of the default voice.
    pub fn piper_json(&self) -> PathBuf {
        self.piper_voice_json(DEFAULT_PIPER_VOICE)
    }

    /// The `.onnx` file of the Piper voice named `voice` (e.g. `en_US-joe-medium`).
    pub fn piper_voice_onnx(&self, voice: &str) -> PathBuf {
        self.root.join("piper").join(format!("{voice}.onnx"))
    }

    /// The `.onnx.json` file of the Piper voice named `voice`.
    pub fn piper_voice_json(&self, voice: &str) -> PathBuf {
        self.root.join("piper").join(format!("{voice}.onnx.json"))
    }

    /// The ONNX Runtime shared library loaded at run time by the Piper engine.
    pub fn onnxruntime_lib(&self) -> PathBuf {
        self.root.join("onnxruntime").join("libonnxruntime.so")
    }

    /// The Silero VAD v5 model (`silero/silero_vad.onnx`, from the pipecat-ai 1.14.0 wheel), used
    /// by the `silero_vad` processor only (not part of [`check`](Self::check)).
    pub fn silero_vad_onnx(&self) -> PathBuf {
        self.root.join("silero").join("silero_vad.onnx")
    }

    /// Checks that every model file exists.
    ///
    /// The error names the first missing file and the command to run (`scripts/fetch-models.sh`).
    pub fn check(&self) -> Result<()> {
        let whisper = self.whisper_dir();
        let required = [
            whisper.join("model.bin"),
            whisper.join("tokenizer.json"),
            whisper.join("config.json"),
            self.piper_onnx(),
            self.piper_json(),
            self.onnxruntime_lib(),
        ];
        required.iter().try_for_each(|p| require_file(p))
    }
}

impl Default for ModelPaths {
    fn default() -> Self {
        Self::from_env()
    }
}

/// Returns [`LocalError::ModelMissing`] unless `path` is an existing file.
pub(crate) fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(LocalError::ModelMissing {
            path: path.to_path_buf(),
            hint: FETCH_HINT,
        })
    }
}

/// The models for a unit test (`$WAAV_MODELS_DIR`, else `<repo>/models`), or `None` after a
/// SKIP line; with `CI=true` a missing model fails the test instead.
#[cfg(all(test, feature = "piper"))]
pub(crate) fn test_models() -> Option<ModelPaths> {
    use std::io::Write;
    let paths = match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => ModelPaths::new(dir),
        _ => ModelPaths::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")),
    };
    match paths.check() {
        Ok(()) => Some(paths),
        Err(e) => {
            let msg = format!("SKIP: models not found, run scripts/fetch-models.sh ({e})");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            let _ = writeln!(std::io::stderr(), "{msg}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_missing_error_names_fetch_script() {
        let paths = ModelPaths::new("/nonexistent/models");
        assert_eq!(
            paths.onnxruntime_lib(),
            Path::new("/nonexistent/models/onnxruntime/libonnxruntime.so")
        );
        assert_eq!(
            paths.piper_json(),
            Path::new("/nonexistent/models/piper/en_US-joe-medium.onnx.json")
        );
        let err = paths.check().unwrap_err().to_string();
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
        assert!(err.contains("whisper-tiny.en"), "{err}");
    }
}
