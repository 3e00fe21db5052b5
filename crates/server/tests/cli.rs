//! The `waav-gateway` binary's subcommands.

use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waav-gateway"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_reports_a_missing_variable_by_name_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "c.yaml",
        "server:\n  port: 3001\nauth:\n  api_secrets:\n    - { id: a, secret: \"${WAAV_TEST_UNSET_VARIABLE}\" }\n",
    );
    let out = gateway()
        .arg("check-config")
        .arg(&f)
        .env_remove("WAAV_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WAAV_TEST_UNSET_VARIABLE"), "{err}");
    assert!(err.contains("auth.api_secrets[0].secret"), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "c.yaml",
        "server: { port: 4100 }\nauth:\n  api_secrets:\n    - { id: client-a, secret: \"${WAAV_TEST_SECRET}\" }\n",
    );
    let out = gateway()
        .arg("check-config")
        .arg(&f)
        .env("WAAV_TEST_SECRET", "hunter2")
        .env("PORT", "4200")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("port: 4200"), "env beats file: {text}");
    assert!(text.contains("client-a"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn an_unknown_plugin_name_is_rejected_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "c.yaml",
        "plugins:\n  stt:\n    deepgramm: { enabled: true }\n",
    );
    let out = gateway().arg("check-config").arg(&f).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"deepgramm\""), "{err}");
    assert!(err.contains("known stt plugins"), "{err}");
}

#[test]
fn help_is_available_on_every_subcommand() {
    for args in [
        &["--help"][..],
        &["plugins", "--help"],
        &["check-config", "--help"],
        &["serve", "--help"],
    ] {
        let out = gateway().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn plugins_prints_a_table() {
    let out = gateway().arg("plugins").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("KIND"), "{text}");
}
