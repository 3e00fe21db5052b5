//! The error type shared by every engine in this crate.

use std::path::PathBuf;

use waav_plugin_api::PluginError;

/// Everything that can go wrong in the offline engines.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A model file or directory is missing; `hint` names the command that fetches it.
    #[error("model file not found: {path} (run `{hint}`)")]
    ModelMissing {
        /// The path that was expected to exist.
        path: PathBuf,
        /// The command that fetches the missing files.
        hint: &'static str,
    },

    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A model's configuration (JSON, tokenizer, ...) is malformed or lacks a required field.
    #[error("invalid model configuration {path}: {reason}")]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An external program (espeak-ng) could not be started.
    #[error("cannot run `{program}`: {source} (install it, e.g. `apt-get install espeak-ng`)")]
    ProgramNotFound {
        /// The program name.
        program: &'static str,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// An external program ran but failed.
    #[error("`{program}` failed ({status}): {stderr}")]
    ProgramFailed {
        /// The program name.
        program: &'static str,
        /// Its exit status, as text.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },

    /// An external program did not finish in time and was killed.
    #[error("`{program}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The program name.
        program: &'static str,
        /// The time limit.
        after: std::time::Duration,
    },

    /// The work was cancelled (a running external program was killed).
    #[error("cancelled")]
    Cancelled,

    /// The caller passed an argument the engine cannot use.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A WAV stream could not be decoded.
    #[error("WAV decoding failed: {0}")]
    Wav(#[from] hound::Error),

    /// The inference runtime (CTranslate2 or ONNX Runtime) reported an error.
    #[error("{engine} inference failed: {message}")]
    Inference {
        /// `"whisper"`, `"piper"` or `"onnxruntime"`.
        engine: &'static str,
        /// The runtime's message.
        message: String,
    },
}

// The helpers are used by the engines only.
#[cfg_attr(not(all(feature = "whisper", feature = "piper")), allow(dead_code))]
impl LocalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn inference(engine: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Inference {
            engine,
            message: err.to_string(),
        }
    }
}

impl From<LocalError> for PluginError {
    /// A timeout stays a timeout; anything else an engine reports is transient for the session
    /// (the next request may well succeed), except a missing model, which is configuration.
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::Timeout { .. } => PluginError::Timeout(e.to_string()),
            LocalError::ModelMissing { .. } | LocalError::InvalidConfig { .. } => {
                PluginError::Config(e.to_string())
            }
            e => PluginError::Transient(e.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = LocalError> = std::result::Result<T, E>;
