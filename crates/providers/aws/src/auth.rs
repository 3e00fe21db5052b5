//! The AWS credentials both plugins declare, and their resolution into a SigV4 signer.
//!
//! Static credentials only (an access key id, a secret access key and, for temporary
//! credentials, a session token), as the host resolves them per session from the client's
//! values, the config section or the standard `AWS_*` environment variables. Instance profiles,
//! SSO and `~/.aws/credentials` are not read: the plugin contract has no credential provider
//! chain.

use std::time::{Duration, SystemTime};
use waav_plugin_api::{CredentialField, Credentials, PluginConfig, PluginError, Secret};
use waav_provider_kit::aws::{AwsCredentials, AwsSigner};

/// The access key id field.
pub const ACCESS_KEY_ID: &str = "access_key_id";
/// The secret access key field.
pub const SECRET_ACCESS_KEY: &str = "secret_access_key";
/// The session token field (temporary credentials).
pub const SESSION_TOKEN: &str = "session_token";
/// The region field.
pub const REGION: &str = "region";
/// The region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The credentials both plugins declare.
pub const CREDENTIALS: &[CredentialField] = &[
    // Not secret by itself, but masked anyway (it identifies the account).
    CredentialField::secret(ACCESS_KEY_ID, "AWS_ACCESS_KEY_ID"),
    CredentialField::secret(SECRET_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY"),
    CredentialField::secret(SESSION_TOKEN, "AWS_SESSION_TOKEN").optional(),
    // Optional: `us-east-1` when absent.
    CredentialField::setting(REGION, "AWS_REGION").optional(),
];

/// Resolved credentials and region.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The key pair (and token).
    pub creds: AwsCredentials,
    /// The region (validated).
    pub region: String,
}

impl Resolved {
    /// A signer for `service` in this region.
    pub fn signer(&self, service: &str) -> AwsSigner {
        AwsSigner::new(self.creds.clone(), self.region.clone(), service)
    }
}

/// Whether `region` looks like an AWS region (`us-east-1`, `cn-north-1`, `us-gov-west-1`): it
/// becomes part of a host name and of the credential scope.
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

fn non_empty(s: Option<&Secret>) -> Option<Secret> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// Resolves a session's credentials; a missing key is Auth, a malformed region Config.
pub fn resolve(c: &Credentials, ctx: &str) -> Result<Resolved, PluginError> {
    let key_id = non_empty(c.get(ACCESS_KEY_ID)).ok_or_else(|| {
        PluginError::Auth(format!(
            "{ctx}: no AWS access key id configured (access_key_id, AWS_ACCESS_KEY_ID)"
        ))
    })?;
    let secret = non_empty(c.get(SECRET_ACCESS_KEY)).ok_or_else(|| {
        PluginError::Auth(format!(
            "{ctx}: no AWS secret access key configured (secret_access_key, AWS_SECRET_ACCESS_KEY)"
        ))
    })?;
    let token = non_empty(c.get(SESSION_TOKEN));
    let region = c
        .expose(REGION)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_REGION)
        .to_owned();
    if !valid_region(&region) {
        return Err(PluginError::Config(format!(
            "{ctx}: invalid region {region:?}"
        )));
    }
    Ok(Resolved {
        creds: AwsCredentials::new(key_id.expose(), secret, token),
        region,
    })
}

/// Credentials written in the plugin's own config section (read at `init`, for calls that get
/// no session credentials, such as the voice listing). `None` when the section has no key pair.
pub fn from_section(cfg: &PluginConfig) -> Result<Option<Credentials>, PluginError> {
    let mut out = Credentials::new();
    for name in [ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, REGION] {
        if let Some(v) = cfg.secret(name)? {
            out.set(name, v);
        }
    }
    Ok((out.contains(ACCESS_KEY_ID) && out.contains(SECRET_ACCESS_KEY)).then_some(out))
}

/// The clock requests are signed with.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A millisecond option of a config section (`None` when absent), bounded above by `max`.
pub fn millis(cfg: &PluginConfig, key: &str, max: u64) -> Result<Option<Duration>, PluginError> {
    match cfg.u64(key)? {
        None => Ok(None),
        Some(ms) if ms > max => Err(PluginError::Config(format!(
            "{}.{key}: {ms} is above the maximum {max}",
            cfg.path()
        ))),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

/// Rejects keys a section does not know (a typo would otherwise silently change nothing).
pub fn check_keys(cfg: &PluginConfig, known: &[&str]) -> Result<(), PluginError> {
    match cfg.keys().find(|k| !known.contains(k)) {
        None => Ok(()),
        Some(k) => Err(PluginError::Config(format!(
            "{}: unknown key {k:?}; known keys: {}",
            cfg.path(),
            known.join(", ")
        ))),
    }
}

/// Validates an `http(s)://` or `ws(s)://` base URL (no query, no fragment), without the
/// trailing slash.
pub fn base_url(
    cfg: &PluginConfig,
    key: &str,
    schemes: &[&str],
) -> Result<Option<String>, PluginError> {
    let Some(url) = cfg.string(key)? else {
        return Ok(None);
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    let bad = |why: &str| PluginError::Config(format!("{}.{key}: {why}: {url:?}", cfg.path()));
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some(s) if schemes.contains(&s) => {}
        _ => {
            return Err(bad(&format!(
                "the scheme must be one of {}",
                schemes.join(", ")
            )))
        }
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(bad("no query or fragment allowed"));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(pairs: &[(&'static str, &str)]) -> Credentials {
        let mut c = Credentials::new();
        for (k, v) in pairs {
            c.set(k, Secret::from(*v));
        }
        c
    }

    #[test]
    fn resolves_and_validates() {
        let r = resolve(
            &creds(&[(ACCESS_KEY_ID, "AKID"), (SECRET_ACCESS_KEY, "s3cr3t")]),
            "t",
        )
        .unwrap();
        assert_eq!(r.region, DEFAULT_REGION);
        assert!(r.creds.session_token.is_none());
        let e = resolve(&creds(&[(ACCESS_KEY_ID, "AKID")]), "t").unwrap_err();
        assert!(matches!(e, PluginError::Auth(_)), "{e}");
        let e = resolve(
            &creds(&[
                (ACCESS_KEY_ID, "AKID"),
                (SECRET_ACCESS_KEY, "s"),
                (REGION, "evil.com/x"),
            ]),
            "t",
        )
        .unwrap_err();
        assert!(matches!(e, PluginError::Config(_)), "{e}");
        assert!(valid_region("us-gov-west-1") && !valid_region("US-EAST-1"));
    }
}
