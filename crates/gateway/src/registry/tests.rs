use super::*;
use crate::config::{ComponentSection, PluginsConfig};
use std::sync::Mutex as StdMutex;
use waav_plugin_api::{
    PluginConfig, PluginError, ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};

static SHUTDOWNS: StdMutex<Vec<&'static str>> = StdMutex::new(Vec::new());

struct Fake {
    id: &'static str,
    aliases: &'static [&'static str],
    key_env: Option<&'static str>,
}

#[async_trait::async_trait]
impl waav_plugin_api::Plugin for Fake {
    fn info(&self) -> PluginInfo {
        let mut info = PluginInfo::new(self.id, "Fake Provider").aliases(self.aliases);
        info.api_key_env = self.key_env;
        info
    }
    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        if config.bool("panic_on_init")? == Some(true) {
            panic!("init exploded in {}", self.id);
        }
        if config.bool("fail_on_init")? == Some(true) {
            return Err(PluginError::Config("refused".into()));
        }
        Ok(())
    }
    async fn shutdown(&self) {
        SHUTDOWNS.lock().unwrap().push(self.id);
    }
}

#[async_trait::async_trait]
impl SttPlugin for Fake {
    async fn connect(&self, _: SttSessionConfig, _: SttIo) -> Result<ProviderTask, PluginError> {
        Ok(Box::pin(async { Ok(()) }))
    }
}

fn alpha() -> PluginHandle {
    PluginHandle::Stt(std::sync::Arc::new(Fake {
        id: "alpha",
        aliases: &["Alpha-Cloud", "a"],
        key_env: None,
    }))
}
fn beta() -> PluginHandle {
    PluginHandle::Stt(std::sync::Arc::new(Fake {
        id: "beta",
        aliases: &[],
        key_env: Some("WAAV_TEST_BETA_KEY_THAT_IS_NEVER_SET"),
    }))
}
fn clash() -> PluginHandle {
    PluginHandle::Stt(std::sync::Arc::new(Fake {
        id: "gamma",
        aliases: &["ALPHA-cloud"],
        key_env: None,
    }))
}
fn exploding() -> PluginHandle {
    panic!("constructor exploded")
}

fn regs(list: &[fn() -> PluginHandle]) -> Vec<PluginRegistration> {
    list.iter()
        .map(|&create| PluginRegistration {
            module: "registry::tests",
            create,
        })
        .collect()
}

fn section(settings: serde_json::Value) -> PluginSection {
    serde_json::from_value(settings).unwrap()
}

#[test]
fn duplicate_names_are_an_error_naming_both_plugins() {
    let err = Registry::from_registrations(&regs(&[alpha, clash]), &PluginsConfig::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("alpha-cloud"), "{msg}");
    assert!(msg.contains("alpha (registry::tests)"), "{msg}");
    assert!(msg.contains("gamma (registry::tests)"), "{msg}");
}

#[test]
fn unknown_names_list_the_known_ones() {
    let mut cfg = PluginsConfig::default();
    cfg.stt.insert("deepgramm".into(), PluginSection::default());
    let err = Registry::from_registrations(&regs(&[alpha, beta]), &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"deepgramm\""), "{msg}");
    assert!(msg.contains("alpha, beta"), "{msg}");

    let mut cfg = PluginsConfig::default();
    cfg.processors.insert(
        "vad".into(),
        ComponentSection {
            enabled: true,
            kind: "nope".into(),
            config: Default::default(),
        },
    );
    let msg = Registry::from_registrations(&regs(&[alpha]), &cfg)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("plugins.processors.vad.type"), "{msg}");

    let mut cfg = PluginsConfig::default();
    cfg.pipelines.default_stt_pre = vec!["vad".into()];
    let msg = Registry::from_registrations(&regs(&[alpha]), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("default_stt_pre") && msg.contains("\"vad\""),
        "{msg}"
    );
}

#[tokio::test]
async fn lookup_by_alias_is_case_insensitive_and_checks_keys() {
    let mut cfg = PluginsConfig::default();
    // Config keys may use an alias too.
    cfg.stt
        .insert("A".into(), section(serde_json::json!({"model": "x"})));
    let reg = Registry::from_registrations(&regs(&[alpha, beta]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    for name in ["alpha", "ALPHA", "alpha-cloud", "a"] {
        let p = reg
            .stt(name, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.entry.info.id, "alpha");
        assert_eq!(p.entry.config_path, "plugins.stt.A");
    }
    assert_eq!(
        reg.stt("nope", None).err().unwrap().to_string(),
        "Unsupported provider: nope"
    );
    assert!(
        reg.tts("alpha", None).is_err(),
        "kinds are separate namespaces"
    );
    assert_eq!(
        reg.stt("beta", None).err().unwrap().to_string(),
        "Fake Provider API key not configured in server environment"
    );
    let p = reg.stt("beta", Some("client-key")).unwrap();
    assert_eq!(p.api_key.unwrap().expose(), "client-key");
}

#[tokio::test]
async fn failing_plugins_are_isolated_and_visible() {
    let mut cfg = PluginsConfig::default();
    cfg.stt.insert(
        "alpha".into(),
        section(serde_json::json!({"panic_on_init": true, "required": true})),
    );
    cfg.stt.insert(
        "beta".into(),
        section(serde_json::json!({"fail_on_init": true})),
    );
    let reg = Registry::from_registrations(&regs(&[alpha, beta, exploding]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    let (health, ok) = reg.health();
    assert!(!ok, "a required plugin failed");
    let alpha = health.iter().find(|h| h.id == "alpha").unwrap();
    assert_eq!(alpha.status, "failed");
    assert!(alpha
        .reason
        .as_deref()
        .unwrap()
        .contains("init exploded in alpha"));
    let beta = health.iter().find(|h| h.id == "beta").unwrap();
    assert_eq!(beta.status, "failed");
    let broken = health.iter().find(|h| h.id == "registry::tests").unwrap();
    assert!(broken
        .reason
        .as_deref()
        .unwrap()
        .contains("constructor exploded"));
    assert!(matches!(
        reg.stt("alpha", None),
        Err(LookupError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn disabled_plugins_are_not_served_and_shutdown_runs_in_reverse() {
    let mut cfg = PluginsConfig::default();
    cfg.stt.insert(
        "gamma".into(),
        section(serde_json::json!({"enabled": false})),
    );
    let reg = Registry::from_registrations(&regs(&[beta, alpha, clash_free]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    assert!(matches!(
        reg.stt("gamma", None),
        Err(LookupError::Unsupported(_))
    ));
    let (health, ok) = reg.health();
    assert!(ok);
    assert_eq!(
        health.iter().find(|h| h.id == "gamma").unwrap().status,
        "disabled"
    );
    SHUTDOWNS.lock().unwrap().clear();
    reg.shutdown_all().await;
    let order = SHUTDOWNS.lock().unwrap().clone();
    assert_eq!(
        order,
        vec!["beta", "alpha"],
        "reverse of init (alpha, beta)"
    );
}

fn clash_free() -> PluginHandle {
    PluginHandle::Stt(std::sync::Arc::new(Fake {
        id: "gamma",
        aliases: &[],
        key_env: None,
    }))
}

#[tokio::test]
async fn named_instances_have_their_own_id_config_key_and_state() {
    let mut cfg = PluginsConfig::default();
    cfg.stt.insert(
        "beta-eu".into(),
        section(serde_json::json!({"plugin": "beta", "api_key": "eu-key", "region": "eu"})),
    );
    cfg.stt.insert(
        "alpha-broken".into(),
        section(serde_json::json!({"plugin": "Alpha-Cloud", "fail_on_init": true})),
    );
    let reg = Registry::from_registrations(&regs(&[alpha, beta]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    let ids: Vec<&str> = reg.entries().iter().map(|e| e.id).collect();
    assert_eq!(ids, ["alpha", "alpha-broken", "beta", "beta-eu"]);

    let eu = reg
        .stt("BETA-EU", None)
        .expect("the instance has its own key");
    assert_eq!((eu.entry.id, eu.entry.info.id), ("beta-eu", "beta"));
    assert_eq!(eu.api_key.unwrap().expose(), "eu-key");
    assert_eq!(eu.entry.config_path, "plugins.stt.beta-eu");
    assert_eq!(
        eu.entry
            .plugin_config()
            .string("region")
            .unwrap()
            .as_deref(),
        Some("eu")
    );
    // The default instance is separate: no key of its own, so it still refuses.
    assert!(reg.stt("beta", None).is_err());
    // One instance failing leaves the plugin's default instance serving.
    assert!(reg.stt("alpha", None).is_ok());
    assert_eq!(
        reg.stt("alpha-broken", None).err().unwrap().code(),
        "provider_unavailable"
    );
    let (health, _) = reg.health();
    let broken = health.iter().find(|h| h.id == "alpha-broken").unwrap();
    assert_eq!(broken.status, "failed");
}

#[test]
fn instance_ids_are_checked() {
    let with = |name: &str, plugin: &str| {
        let mut cfg = PluginsConfig::default();
        cfg.stt.insert(
            name.into(),
            section(serde_json::json!({ "plugin": plugin })),
        );
        Registry::from_registrations(&regs(&[alpha, beta]), &cfg).map(|_| ())
    };
    let clash = with("a", "beta").unwrap_err().to_string();
    assert!(clash.contains("duplicate stt plugin name \"a\""), "{clash}");
    assert!(clash.contains("instance a of beta"), "{clash}");
    let unknown = with("x", "nope").unwrap_err().to_string();
    assert!(unknown.contains("plugins.stt.x.plugin"), "{unknown}");
    assert!(unknown.contains("alpha, beta"), "{unknown}");
    let bad = with("Bad Name", "alpha").unwrap_err().to_string();
    assert!(bad.contains("instance id"), "{bad}");
    assert!(with("alpha-2", "alpha").is_ok());
}

struct Aws;

const AWS_FIELDS: &[waav_plugin_api::CredentialField] = &[
    waav_plugin_api::CredentialField::secret("access_key_id", "WAAV_TEST_AWS_ID_NEVER_SET"),
    waav_plugin_api::CredentialField::secret("secret_access_key", "WAAV_TEST_AWS_SECRET_NEVER_SET"),
    waav_plugin_api::CredentialField::secret("session_token", "WAAV_TEST_AWS_TOKEN_NEVER_SET")
        .optional(),
    waav_plugin_api::CredentialField::setting("region", "WAAV_TEST_AWS_REGION_NEVER_SET"),
];

#[async_trait::async_trait]
impl waav_plugin_api::Plugin for Aws {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("aws", "Fake AWS").credentials(AWS_FIELDS)
    }
}

#[async_trait::async_trait]
impl SttPlugin for Aws {
    async fn connect(&self, _: SttSessionConfig, _: SttIo) -> Result<ProviderTask, PluginError> {
        Ok(Box::pin(async { Ok(()) }))
    }
}

fn aws() -> PluginHandle {
    PluginHandle::Stt(std::sync::Arc::new(Aws))
}

#[tokio::test]
async fn declared_credentials_resolve_from_config_and_session() {
    let mut cfg = PluginsConfig::default();
    cfg.stt.insert(
        "aws".into(),
        section(
            serde_json::json!({"access_key_id": "AKID", "secret_access_key": "s3", "region": ""}),
        ),
    );
    let reg = Registry::from_registrations(&regs(&[aws]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    let e = reg.stt("aws", None).err().unwrap();
    assert_eq!(e.code(), "missing_credential");
    assert!(e.to_string().contains("\"region\""), "{e}");

    let mut fields = std::collections::BTreeMap::new();
    fields.insert("region".to_owned(), "eu-west-1".to_owned());
    fields.insert("session_token".to_owned(), "tok".to_owned());
    let client = ClientCredentials {
        api_key: None,
        fields: Some(&fields),
    };
    let p = reg.stt_with("aws", client).unwrap();
    assert_eq!(p.credentials.expose("access_key_id"), Some("AKID"));
    assert_eq!(p.credentials.expose("region"), Some("eu-west-1"));
    assert_eq!(p.credentials.expose("session_token"), Some("tok"));
    assert!(p.api_key.is_none());

    fields.insert("password".to_owned(), "x".to_owned());
    let client = ClientCredentials {
        api_key: None,
        fields: Some(&fields),
    };
    let e = reg.stt_with("aws", client).err().unwrap();
    assert_eq!(e.code(), "invalid_config");
    assert!(
        e.to_string().contains("access_key_id, secret_access_key"),
        "{e}"
    );
    // The WaaV `api_key` field is ignored by a plugin that takes no key.
    let client = ClientCredentials {
        api_key: Some("k"),
        fields: None,
    };
    assert_eq!(
        reg.stt_with("aws", client).err().unwrap().code(),
        "missing_credential"
    );
}

/// Settings the pool plugin's `init` got.
static POOL_INIT: StdMutex<Vec<String>> = StdMutex::new(Vec::new());

/// A processor plugin with plugin-wide settings (a worker pool), as the model processors have.
struct Pooled;

#[async_trait::async_trait]
impl waav_plugin_api::Plugin for Pooled {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("pooled", "Pooled").aliases(&["pool-alias"])
    }
    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let workers = config.u64("workers")?.unwrap_or(1);
        POOL_INIT
            .lock()
            .unwrap()
            .push(format!("{} workers={workers}", config.path()));
        Ok(())
    }
}

impl waav_plugin_api::ProcessorPlugin for Pooled {
    fn stages(&self) -> &'static [waav_plugin_api::Stage] {
        &[waav_plugin_api::Stage::PreStt]
    }
}

fn pooled() -> PluginHandle {
    PluginHandle::Processor(std::sync::Arc::new(Pooled))
}

#[tokio::test]
async fn processor_plugins_take_plugin_wide_settings() {
    let mut cfg = PluginsConfig::default();
    cfg.processor_settings.insert(
        "pool-alias".into(),
        section(serde_json::json!({"workers": 3})),
    );
    let reg = Registry::from_registrations(&regs(&[alpha, pooled]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    assert!(POOL_INIT
        .lock()
        .unwrap()
        .contains(&"plugins.processor_settings.pool-alias workers=3".to_owned()));

    // Disabled: never initialised, and an instance of it cannot be created.
    let mut cfg = PluginsConfig::default();
    cfg.processor_settings.insert(
        "pooled".into(),
        section(serde_json::json!({"enabled": false, "workers": 5})),
    );
    cfg.processors.insert(
        "p".into(),
        ComponentSection {
            enabled: true,
            kind: "pooled".into(),
            config: Default::default(),
        },
    );
    let reg = Registry::from_registrations(&regs(&[pooled]), &cfg).unwrap();
    reg.init_all(&PluginContext::default()).await;
    assert!(!POOL_INIT
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.ends_with("workers=5")));
    let ctx = waav_plugin_api::ProcessorContext::new(waav_plugin_api::Stage::PreStt, 16_000, 1);
    let err = match reg.processor("p", &ctx) {
        Ok(_) => panic!("a disabled plugin made a processor"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("Disabled"), "{err}");

    // Unknown plugins and named instances are configuration errors.
    let mut cfg = PluginsConfig::default();
    cfg.processor_settings
        .insert("nope".into(), PluginSection::default());
    let msg = Registry::from_registrations(&regs(&[pooled]), &cfg)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("plugins.processor_settings.nope"), "{msg}");
    let mut cfg = PluginsConfig::default();
    cfg.processor_settings.insert(
        "pooled".into(),
        section(serde_json::json!({"plugin": "pooled"})),
    );
    let msg = Registry::from_registrations(&regs(&[pooled]), &cfg)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("named instances"), "{msg}");
}
