//! The Silero VAD v5 model: one ONNX call per 32 ms window, a speech probability and a new
//! recurrent state.
//!
//! The call follows the reference wrappers, which agree: snakers4/silero-vad
//! `src/silero_vad/utils_vad.py::OnnxWrapper.__call__` and pipecat 1.14
//! `pipecat/audio/vad/silero.py::SileroOnnxModel.__call__`. At 16 kHz a window is 512 samples
//! (256 at 8 kHz, unused here: every input is resampled to 16 kHz) in [-1, 1] (`int16 / 32768`),
//! prefixed with the last 64 samples (32 at 8 kHz) of the previous window's input (zeros after
//! a reset). Inputs, in the model's order: `input` f32 `[1, 576]`, `state` f32 `[2, 1, 128]`
//! (zeros after a reset), `sr` int64 scalar (16000). Outputs: the probability `[1, 1]` and the
//! new state `[2, 1, 128]`. Both references run one intra-op and one inter-op thread.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{LocalError, Result};
use crate::models::{require_file, ModelPaths};
use crate::onnx;

/// The only rate the processor feeds the model.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per window at 16 kHz (32 ms).
pub const WINDOW: usize = 512;
/// Samples of the previous window's input prepended to each window at 16 kHz.
pub const CONTEXT: usize = 64;
/// The model's input length: context + window.
pub const INPUT: usize = CONTEXT + WINDOW;
/// Floats in the recurrent state `[2, 1, 128]`.
pub const STATE: usize = 2 * 128;
/// Milliseconds per window.
pub const WINDOW_MS: f64 = WINDOW as f64 * 1000.0 / SAMPLE_RATE as f64;
/// The model file name inside `<models>/silero/`.
pub const MODEL_FILE: &str = "silero_vad.onnx";

/// `<models>/silero/silero_vad.onnx`, where `scripts/fetch-models.sh` puts it.
pub fn model_path(models: &ModelPaths) -> PathBuf {
    models.silero_vad_onnx()
}

/// One loaded Silero session (use one per worker thread).
pub struct SileroModel {
    session: Session,
    sr: [i64; 1],
    path: PathBuf,
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroModel")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> LocalError {
    LocalError::inference("silero-vad", e)
}

impl SileroModel {
    /// Loads the model at `model` with ONNX Runtime from `ort_library`, `threads` intra-op
    /// threads per call (the references use 1).
    pub fn load(model: &Path, ort_library: &Path, threads: usize) -> Result<Self> {
        require_file(model)?;
        let env = onnx::environment(ort_library)?;
        let session = Session::builder(&env)
            .map_err(err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(err)?
            .with_intra_threads(threads.max(1))
            .map_err(err)?
            .with_inter_threads(1)
            .map_err(err)?
            .commit_from_file(model)
            .map_err(|e| err(format!("loading {}: {e}", model.display())))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if names != ["input", "state", "sr"] {
            return Err(err(format!(
                "{} is not Silero VAD v5: inputs {names:?}, expected [input, state, sr]",
                model.display()
            )));
        }
        Ok(Self {
            session,
            sr: [i64::from(SAMPLE_RATE)],
            path: model.to_path_buf(),
        })
    }

    /// Scores one window: `input` is the 64 context samples then the 512 new ones; `state` is
    /// read and replaced by the model's new state. Returns the speech probability (0–1).
    ///
    /// The inputs are borrowed, not copied; ONNX Runtime allocates the outputs.
    pub fn score(&mut self, input: &[f32], state: &mut [f32]) -> Result<f32> {
        if input.len() != INPUT || state.len() != STATE {
            return Err(LocalError::InvalidInput(format!(
                "silero takes {INPUT} samples and a {STATE}-float state, got {} and {}",
                input.len(),
                state.len()
            )));
        }
        let x = TensorRef::from_array_view(([1usize, INPUT], input)).map_err(err)?;
        let s = TensorRef::from_array_view(([2usize, 1, 128], &state[..])).map_err(err)?;
        let sr = TensorRef::from_array_view(((), &self.sr[..])).map_err(err)?;
        let outputs = self.session.run(ort::inputs![x, s, sr]).map_err(err)?;
        let (_, prob) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        let prob = *prob.first().ok_or_else(|| err("empty output"))?;
        let (_, new_state) = outputs[1].try_extract_tensor::<f32>().map_err(err)?;
        if new_state.len() != STATE {
            return Err(err(format!("state output has {} floats", new_state.len())));
        }
        state.copy_from_slice(new_state);
        Ok(prob)
    }
}

/// A stream's model memory: the recurrent state and the context samples.
#[derive(Debug, Clone)]
pub struct SileroState {
    state: [f32; STATE],
    input: [f32; INPUT],
}

impl Default for SileroState {
    fn default() -> Self {
        Self {
            state: [0.0; STATE],
            input: [0.0; INPUT],
        }
    }
}

impl SileroState {
    /// Zeros the state and the context (the references' `reset_states`).
    pub fn reset(&mut self) {
        self.state = [0.0; STATE];
        self.input = [0.0; INPUT];
    }

    /// Scores the next 512-sample window of the stream with `score` (the model's call, or a
    /// stand-in), carrying context and state over.
    pub fn next(
        &mut self,
        window: &[f32],
        score: impl FnOnce(&[f32], &mut [f32]) -> std::result::Result<f32, String>,
    ) -> std::result::Result<f32, String> {
        if window.len() != WINDOW {
            return Err(format!(
                "a window is {WINDOW} samples, got {}",
                window.len()
            ));
        }
        // The context is already in place: the last 64 samples of the previous input.
        self.input.copy_within(WINDOW.., 0);
        self.input[CONTEXT..].copy_from_slice(window);
        score(&self.input, &mut self.state)
    }

    /// Scores a window with `model`.
    pub fn score(&mut self, model: &mut SileroModel, window: &[f32]) -> Result<f32> {
        self.next(window, |x, s| model.score(x, s).map_err(|e| e.to_string()))
            .map_err(err)
    }
}
