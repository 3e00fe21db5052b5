use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

const FILE: &str = r#"
server: { host: 127.0.0.1, port: 4000 }
plugins:
  stt:        { deepgram: { enabled: true, api_key: "${DEEPGRAM_API_KEY}", default_model: nova-3 } }
  tts:        { elevenlabs: { enabled: false, api_key: "${ELEVENLABS_API_KEY:-}" } }
  processors: { vad: { enabled: true, type: earshot, config: { threshold: 0.5 } } }
  pipelines:  { default_stt_pre: [vad], default_stt_post: [], default_tts_pre: [], default_tts_post: [] }
  middleware: { rate_limiting: { enabled: true, type: token_bucket, config: { requests_per_second: 100, burst: 20 } } }
"#;

#[test]
fn parses_the_documented_shape() {
    let env = env_of(&[("DEEPGRAM_API_KEY", "dg-secret")]);
    let c = GatewayConfig::from_sources(Some(FILE), &env, &CliOverrides::default()).unwrap();
    let dg = &c.plugins.stt["deepgram"];
    assert!(dg.enabled && !dg.required);
    assert_eq!(dg.settings["api_key"], "dg-secret");
    assert_eq!(dg.settings["default_model"], "nova-3");
    assert!(!c.plugins.tts["elevenlabs"].enabled);
    assert_eq!(c.plugins.processors["vad"].kind, "earshot");
    assert_eq!(c.plugins.processors["vad"].config["threshold"], 0.5);
    assert_eq!(c.plugins.pipelines.default_stt_pre, vec!["vad"]);
    assert_eq!(
        c.plugins.middleware["rate_limiting"].config["burst"],
        serde_json::json!(20)
    );
}

#[test]
fn missing_variable_is_named_with_its_path() {
    let env = env_of(&[]);
    let err = GatewayConfig::from_sources(Some(FILE), &env, &CliOverrides::default()).unwrap_err();
    assert_eq!(
        err,
        ConfigError::MissingVariable {
            variable: "DEEPGRAM_API_KEY".into(),
            path: "plugins.stt.deepgram.api_key".into()
        }
    );
}

#[test]
fn precedence_cli_over_env_over_file_over_defaults() {
    let none = CliOverrides::default();
    let env = env_of(&[("DEEPGRAM_API_KEY", "k")]);
    let c = GatewayConfig::from_sources(None, &env, &none).unwrap();
    assert_eq!((c.server.host.as_str(), c.server.port), ("0.0.0.0", 3001));

    let c = GatewayConfig::from_sources(Some(FILE), &env, &none).unwrap();
    assert_eq!((c.server.host.as_str(), c.server.port), ("127.0.0.1", 4000));

    let env = env_of(&[("DEEPGRAM_API_KEY", "k"), ("PORT", "5000")]);
    let c = GatewayConfig::from_sources(Some(FILE), &env, &none).unwrap();
    assert_eq!((c.server.host.as_str(), c.server.port), ("127.0.0.1", 5000));

    let cli = CliOverrides {
        port: Some(6000),
        host: Some("::1".into()),
        log_format: Some(LogFormat::Json),
    };
    let c = GatewayConfig::from_sources(Some(FILE), &env, &cli).unwrap();
    assert_eq!((c.server.host.as_str(), c.server.port), ("::1", 6000));
    assert_eq!(c.server.log_format, LogFormat::Json);
}

#[test]
fn environment_settings_are_parsed_and_checked() {
    let env = env_of(&[
        ("AUTH_REQUIRED", "TRUE"),
        (
            "AUTH_API_SECRETS_JSON",
            r#"[{"id":"client-a","secret":"s3cret"}]"#,
        ),
        ("CACHE_TTL_SECONDS", "60"),
        ("MAX_WEBSOCKET_CONNECTIONS", "10"),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        ),
    ]);
    let c = GatewayConfig::from_sources(None, &env, &CliOverrides::default()).unwrap();
    assert!(c.auth.required);
    assert_eq!(c.auth.api_secrets[0].secret.expose(), "s3cret");
    assert_eq!(c.cache.ttl_seconds, 60);
    assert_eq!(c.limits.max_websocket_connections, Some(10));
    assert_eq!(c.server.cors_allowed_origins.len(), 2);

    let bad = env_of(&[("PORT", "eighty")]);
    let err = GatewayConfig::from_sources(None, &bad, &CliOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("PORT"), "{err}");
}

#[test]
fn unknown_top_level_keys_and_bad_yaml_are_errors() {
    let env = env_of(&[]);
    let none = CliOverrides::default();
    let err = GatewayConfig::from_sources(Some("sever: {port: 1}\n"), &env, &none).unwrap_err();
    assert!(err.to_string().contains("sever"), "{err}");
    assert!(GatewayConfig::from_sources(Some("server: [\n"), &env, &none).is_err());
    assert!(GatewayConfig::from_sources(Some(""), &env, &none).is_ok());
}

#[test]
fn masked_output_hides_secrets_only() {
    let env = env_of(&[
        ("DEEPGRAM_API_KEY", "dg-secret"),
        (
            "AUTH_API_SECRETS_JSON",
            r#"[{"id":"client-a","secret":"s3cret"}]"#,
        ),
    ]);
    let c = GatewayConfig::from_sources(Some(FILE), &env, &CliOverrides::default()).unwrap();
    let out = c.to_masked_yaml();
    assert!(
        !out.contains("dg-secret") && !out.contains("s3cret"),
        "{out}"
    );
    assert!(out.contains("client-a"), "ids stay visible: {out}");
    assert!(out.contains("nova-3"), "{out}");
    assert!(
        out.contains("api_key: '***'") || out.contains("api_key: \"***\""),
        "{out}"
    );
}
