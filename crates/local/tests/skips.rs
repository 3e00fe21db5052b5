//! Model-backed tests skip loudly by hand, but fail under CI (`CI=true`): a missing model must
//! never turn a CI run green.

mod common;

use std::process::Command;

/// Runs only when asked (by the tests below): the models directory does not exist.
#[test]
#[ignore = "a helper: run by missing_models_fail_under_ci"]
fn helper_missing_models() {
    assert!(common::models_or_skip().is_none());
}

fn run_helper(ci: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_missing_models",
            "--nocapture",
        ])
        .env("WAAV_MODELS_DIR", "/nonexistent/waav-models")
        .env("CI", ci)
        .output()
        .unwrap()
}

#[test]
fn missing_models_fail_under_ci() {
    let out = run_helper("true");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "CI=true passed without models:\n{text}"
    );
    assert!(text.contains("SKIP: models not found"), "{text}");
}

#[test]
fn missing_models_skip_by_hand() {
    let out = run_helper("");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SKIP: models not found"), "{text}");
}
