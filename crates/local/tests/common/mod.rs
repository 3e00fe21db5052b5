//! Shared helpers of the integration tests: model lookup (with a loud SKIP) and word matching.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use waav_local::ModelPaths;
#[cfg(feature = "whisper")]
use waav_local::WhisperEngine;
#[cfg(feature = "piper")]
use waav_local::{PiperOptions, PiperVoice};

pub const FOX: &str = "The quick brown fox jumps over the lazy dog.";

/// The models directory: `$WAAV_MODELS_DIR`, else `<repo>/models` (tests run in `crates/local`).
pub fn model_paths() -> ModelPaths {
    match std::env::var_os("WAAV_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => ModelPaths::new(dir),
        _ => ModelPaths::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")),
    }
}

/// Prints a SKIP line that shows even though libtest captures `eprintln!` of passing tests
/// (the capture only covers the print macros, not direct writes to stderr). Under CI
/// (`CI=true`) a missing prerequisite is a failure, not a skip: it panics with the same line.
pub fn skip(reason: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("SKIP: {reason}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{line}");
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The models, or `None` after printing why the calling test is skipped.
pub fn models_or_skip() -> Option<ModelPaths> {
    let paths = model_paths();
    match paths.check() {
        Ok(()) => Some(paths),
        Err(e) => {
            skip(format_args!(
                "models not found, run scripts/fetch-models.sh ({e})"
            ));
            None
        }
    }
}

/// Whether `espeak-ng` runs; prints a SKIP line when it does not.
pub fn espeak_or_skip() -> bool {
    match std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => true,
        _ => {
            skip(format_args!(
                "espeak-ng not installed, run scripts/fetch-models.sh (installs it as root)"
            ));
            false
        }
    }
}

#[cfg(feature = "whisper")]
/// One Whisper engine per test binary (loading takes a second).
pub fn whisper(paths: &ModelPaths) -> &'static WhisperEngine {
    static ENGINE: std::sync::OnceLock<WhisperEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| WhisperEngine::load(paths.whisper_dir(), 2).expect("load whisper"))
}

#[cfg(feature = "piper")]
/// One Piper voice per test binary, without VITS's sampling noise: every run of a test hears
/// the same audio (with the voice's noise, boundaries and timings moved by a window or two from
/// run to run).
pub fn piper(paths: &ModelPaths) -> &'static PiperVoice {
    static VOICE: std::sync::OnceLock<PiperVoice> = std::sync::OnceLock::new();
    VOICE.get_or_init(|| {
        let options = PiperOptions {
            ort_library: Some(paths.onnxruntime_lib()),
            threads: 2,
            noise_scale: Some(0.0),
            noise_w: Some(0.0),
        };
        PiperVoice::load_with(paths.piper_onnx(), paths.piper_json(), &options).expect("load piper")
    })
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Fraction of `expected` words found in order in `got` (LCS over words, case and punctuation
/// ignored).
pub fn word_match(expected: &str, got: &str) -> f32 {
    let (a, b) = (words(expected), words(got));
    if a.is_empty() {
        return 1.0;
    }
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..a.len() {
        for j in 0..b.len() {
            lcs[i + 1][j + 1] = if a[i] == b[j] {
                lcs[i][j] + 1
            } else {
                lcs[i][j + 1].max(lcs[i + 1][j])
            };
        }
    }
    lcs[a.len()][b.len()] as f32 / a.len() as f32
}

/// Asserts a transcript matches at least 80 % of the expected words.
pub fn assert_transcript(expected: &str, got: &str, what: &str) {
    let score = word_match(expected, got);
    eprintln!("{what}: {score:.2} word match: {got:?}");
    assert!(
        score >= 0.8,
        "{what}: only {score:.2} of the words match: {got:?}"
    );
}

/// Deterministic low-level white noise (about -60 dBFS), so "silence" is not all zeros.
pub fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.002
        })
        .collect()
}
