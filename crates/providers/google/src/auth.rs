//! Google credentials: an API key sent as `x-goog-api-key`, or a service account whose
//! RS256-signed JWT is exchanged for an OAuth2 access token (cached until shortly before it
//! expires) and sent as `authorization: Bearer …`.
//!
//! Service-account JSON (the file `GOOGLE_APPLICATION_CREDENTIALS` points at, as written by
//! `gcloud iam service-accounts keys create`): `{"type": "service_account", "project_id",
//! "private_key_id", "private_key": "-----BEGIN PRIVATE KEY-----\n…", "client_email",
//! "token_uri": "https://oauth2.googleapis.com/token", …}`.
//!
//! The exchange is the JWT bearer grant of RFC 7523 as Google documents it ("Using OAuth 2.0 for
//! Server to Server Applications", developers.google.com/identity/protocols/oauth2/service-account,
//! "Preparing to make an authorized API call"): a JWT with header `{"alg":"RS256","typ":"JWT",
//! "kid":<private_key_id>}` and claims `{"iss": client_email, "scope":
//! "https://www.googleapis.com/auth/cloud-platform", "aud": token_uri, "iat", "exp": iat + 3600}`,
//! POSTed as `application/x-www-form-urlencoded`
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`; the answer is
//! `{"access_token": "…", "expires_in": 3599, "token_type": "Bearer"}`, a refusal
//! `400 {"error": "invalid_grant", "error_description": "…"}` (same page, "Handling error
//! responses"). The same claims are built by googleapis/google-auth-library-python
//! `google/oauth2/service_account.py` (`_make_authorization_grant_assertion`) and
//! `google/oauth2/_client.py` (`_JWT_GRANT_TYPE`).
//!
//! Both Speech-to-Text and Text-to-Speech accept API keys in the `x-goog-api-key` header
//! (Google Cloud "Use API keys" / "Authenticate using API keys": supported for these two APIs;
//! the fact sheet lists it as UNCONFIRMED for TTS).

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use waav_plugin_api::{Credentials, ErrorCategory, PluginConfig, PluginError, Secret};
use waav_provider_kit::errors;
use waav_provider_kit::grpc::{secret_metadata, tonic};
use waav_provider_kit::http::{map_reqwest_error, HttpClient, HttpClientConfig};
use waav_provider_kit::redact::Redactor;

/// Google's OAuth2 token endpoint (the `token_uri` of every service-account key file).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The scope both APIs accept.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Form-encoded `urn:ietf:params:oauth:grant-type:jwt-bearer`.
const GRANT_TYPE_ENCODED: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// Lifetime asked for in the JWT (Google's maximum).
const JWT_LIFETIME: u64 = 3600;
/// A token is refreshed when less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Largest credentials file or token response read.
const MAX_BODY: usize = 64 * 1024;
/// Parsed accounts and tokens kept at once.
const MAX_ENTRIES: usize = 32;
const CTX: &str = "google oauth";

/// Credential field names.
pub mod fields {
    /// API key (`x-goog-api-key`).
    pub const API_KEY: &str = "api_key";
    /// Service-account key JSON, inline.
    pub const CREDENTIALS_JSON: &str = "credentials_json";
    /// Path of a service-account key JSON file.
    pub const CREDENTIALS_FILE: &str = "credentials_file";
}

/// The credential fields both plugins declare; at least one of them must resolve.
pub const CREDENTIAL_FIELDS: &[waav_plugin_api::CredentialField] = &[
    waav_plugin_api::CredentialField::secret(fields::API_KEY, "GOOGLE_API_KEY").optional(),
    waav_plugin_api::CredentialField::secret(fields::CREDENTIALS_JSON, "GOOGLE_CREDENTIALS_JSON")
        .optional()
        .no_env(),
    waav_plugin_api::CredentialField::setting(
        fields::CREDENTIALS_FILE,
        "GOOGLE_APPLICATION_CREDENTIALS",
    )
    .optional(),
];

/// A parsed service account.
pub struct ServiceAccount {
    /// `client_email`, the JWT issuer.
    pub client_email: String,
    /// `private_key_id`, the JWT `kid`.
    pub private_key_id: Option<String>,
    /// `project_id`, the default project of the STT recognizer.
    pub project_id: Option<String>,
    /// `token_uri`.
    pub token_uri: Option<String>,
    key: ring::signature::RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    project_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Parses a service-account key JSON. Errors never quote the key.
    pub fn from_json(json: &str) -> Result<Self, PluginError> {
        let bad = |what: &str| PluginError::Auth(format!("google: service-account JSON: {what}"));
        let f: KeyFile = serde_json::from_str(json).map_err(|e| {
            // serde's message may quote input; only its position is kept.
            bad(&format!(
                "not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if let Some(kind) = f.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(bad(&format!(
                "type {kind:?} is not supported (only \"service_account\" keys)"
            )));
        }
        let client_email = f
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or_else(|| bad("no client_email"))?;
        let pem = f.private_key.ok_or_else(|| bad("no private_key"))?;
        let key = parse_private_key(&pem).map_err(|what| bad(&what))?;
        Ok(Self {
            client_email,
            private_key_id: f.private_key_id.filter(|k| !k.is_empty()),
            project_id: f.project_id.filter(|p| !p.is_empty()),
            token_uri: f.token_uri.filter(|u| !u.is_empty()),
            key,
        })
    }

    /// The signed JWT assertion for `aud` at `now` (seconds since the epoch).
    pub fn assertion(&self, aud: &str, now: u64) -> Result<String, PluginError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": aud,
            "iat": now,
            "exp": now + JWT_LIFETIME,
        });
        let mut jwt = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                jwt.as_bytes(),
                &mut sig,
            )
            .map_err(|_| PluginError::Auth("google: signing the JWT failed".into()))?;
        jwt.push('.');
        jwt.push_str(&b64.encode(sig));
        Ok(jwt)
    }
}

/// Decodes a PEM `PRIVATE KEY` (PKCS#8, as Google writes them) or `RSA PRIVATE KEY` (PKCS#1).
fn parse_private_key(pem: &str) -> Result<ring::signature::RsaKeyPair, String> {
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "private_key is not PEM (base64)".to_owned())?;
    let key = if pkcs1 {
        ring::signature::RsaKeyPair::from_der(&der)
    } else {
        ring::signature::RsaKeyPair::from_pkcs8(&der)
    };
    key.map_err(|e| format!("private_key rejected: {e}"))
}

/// How one session authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `x-goog-api-key`.
    ApiKey(Secret),
    /// OAuth2 token from a service account, exchanged at `token_url`.
    ServiceAccount {
        /// The account.
        account: Arc<ServiceAccount>,
        /// Where tokens come from.
        token_url: String,
    },
}

/// A cached access token.
#[derive(Clone)]
struct Token {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

/// Parsed accounts (by their JSON) and tokens (by token URL and account), shared by a plugin
/// instance's sessions.
#[derive(Default)]
pub struct AuthCache {
    accounts: Mutex<HashMap<Secret, Arc<ServiceAccount>>>,
    tokens: Mutex<HashMap<(String, String), Slot>>,
    http: Mutex<Option<HttpClient>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuthCache {
    /// How many token exchanges were made (for tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves a session's credentials: a service account (inline JSON, else the file) wins
    /// over an API key; neither is an Auth error. `plugin_config.token_url` overrides the key
    /// file's `token_uri` (tests point it at a fake).
    pub async fn resolve(
        &self,
        api_key: Option<&Secret>,
        creds: &Credentials,
        plugin_config: &PluginConfig,
    ) -> Result<Auth, PluginError> {
        let json = match creds
            .get(fields::CREDENTIALS_JSON)
            .filter(|s| !s.is_empty())
        {
            Some(j) => Some(j.clone()),
            None => match creds
                .expose(fields::CREDENTIALS_FILE)
                .filter(|p| !p.is_empty())
            {
                Some(path) => Some(read_key_file(path).await?),
                None => None,
            },
        };
        if let Some(json) = json {
            let account = self.account(&json)?;
            let token_url = match plugin_config.string("token_url")? {
                Some(u) => u,
                None => account
                    .token_uri
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
            };
            if !(token_url.starts_with("https://") || token_url.starts_with("http://")) {
                return Err(PluginError::Config(format!(
                    "{}.token_url: {token_url:?} is not an http(s) URL",
                    plugin_config.path()
                )));
            }
            return Ok(Auth::ServiceAccount { account, token_url });
        }
        let key = api_key
            .or_else(|| creds.get(fields::API_KEY))
            .filter(|k| !k.is_empty());
        match key {
            Some(k) => Ok(Auth::ApiKey(k.clone())),
            None => Err(PluginError::Auth(
                "google: no credentials (set credentials_file / GOOGLE_APPLICATION_CREDENTIALS, \
                 credentials_json, or api_key / GOOGLE_API_KEY)"
                    .into(),
            )),
        }
    }

    fn account(&self, json: &Secret) -> Result<Arc<ServiceAccount>, PluginError> {
        if let Some(a) = lock(&self.accounts).get(json) {
            return Ok(a.clone());
        }
        let a = Arc::new(ServiceAccount::from_json(json.expose())?);
        let mut map = lock(&self.accounts);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(json.clone(), a.clone());
        Ok(a)
    }

    /// Adds the credential metadata to `req`: `x-goog-api-key`, or `authorization: Bearer` with
    /// a cached (or freshly exchanged) token; and `x-goog-user-project` when set.
    pub async fn authorize<T>(
        &self,
        auth: &Auth,
        user_project: Option<&str>,
        req: &mut tonic::Request<T>,
    ) -> Result<(), PluginError> {
        let md = req.metadata_mut();
        match auth {
            Auth::ApiKey(k) => {
                md.insert("x-goog-api-key", secret_metadata(k)?);
            }
            Auth::ServiceAccount { .. } => {
                let token = self.token(auth).await?;
                let bearer = Secret::new(format!("Bearer {}", token.expose()));
                req.metadata_mut()
                    .insert("authorization", secret_metadata(&bearer)?);
            }
        }
        if let Some(p) = user_project.filter(|p| !p.is_empty()) {
            let v = p.parse().map_err(|_| {
                PluginError::Config("google: user_project is not valid metadata".into())
            })?;
            req.metadata_mut().insert("x-goog-user-project", v);
        }
        Ok(())
    }

    /// Drops the cached token of `auth` (the service refused it).
    pub async fn invalidate(&self, auth: &Auth) {
        if let Auth::ServiceAccount { account, token_url } = auth {
            let slot = lock(&self.tokens)
                .get(&(token_url.clone(), account.client_email.clone()))
                .cloned();
            if let Some(s) = slot {
                *s.lock().await = None;
            }
        }
    }

    /// A valid access token for a service account (an API key is returned as is).
    pub async fn token(&self, auth: &Auth) -> Result<Secret, PluginError> {
        let (account, token_url) = match auth {
            Auth::ApiKey(k) => return Ok(k.clone()),
            Auth::ServiceAccount { account, token_url } => (account, token_url),
        };
        let slot = {
            let mut map = lock(&self.tokens);
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, s| Arc::strong_count(s) > 1);
            }
            map.entry((token_url.clone(), account.client_email.clone()))
                .or_default()
                .clone()
        };
        // Holding the slot's lock across the exchange makes it the one refresh in flight.
        let mut cached = slot.lock().await;
        let now = Instant::now();
        if let Some(t) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(t.value.clone());
        }
        match self.fetch(account, token_url).await {
            Ok(t) => {
                let v = t.value.clone();
                *cached = Some(t);
                Ok(v)
            }
            Err(e) => match cached.as_ref().filter(|t| now < t.expires_at) {
                Some(old) => {
                    tracing::debug!(error = %e, "google oauth: refresh failed; the current token is still valid");
                    Ok(old.value.clone())
                }
                None => Err(e),
            },
        }
    }

    fn http(&self) -> Result<HttpClient, PluginError> {
        let mut slot = lock(&self.http);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let t = Duration::from_secs(10);
        let c = HttpClient::new(HttpClientConfig {
            timeout: Some(t),
            connect_timeout: t,
            read_timeout: Some(t),
            pool_max_idle_per_host: 2,
            context: CTX.to_owned(),
            ..HttpClientConfig::default()
        })?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn fetch(&self, account: &ServiceAccount, token_url: &str) -> Result<Token, PluginError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let http = self.http()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = Secret::new(account.assertion(token_url, now)?);
        let redactor = http.redactor().clone().with_secret(&assertion);
        let body = format!(
            "grant_type={GRANT_TYPE_ENCODED}&assertion={}",
            assertion.expose()
        );
        let started = Instant::now();
        let req = http
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        // The kit retries a refused connection, a 5xx or a short 429 (within this client's
        // budget) before the response head; the status is mapped below.
        let resp = http
            .execute(req)
            .await
            .map_err(|e| redactor.redact_error(e))?;
        let status = resp.status();
        let retry = errors::retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| map_reqwest_error(e, CTX, &redactor))?;
        let bytes = &bytes[..bytes.len().min(MAX_BODY)];
        if !status.is_success() {
            let detail = serde_json::from_slice::<OAuthError>(bytes)
                .ok()
                .map(|e| {
                    [e.error, e.error_description]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| errors::excerpt(bytes, errors::BODY_EXCERPT_LIMIT));
            // 400 invalid_grant / unauthorized_client: the key is wrong, revoked or disabled.
            let category = match status.as_u16() {
                400 | 401 | 403 => ErrorCategory::Auth,
                s => errors::status_category(s).unwrap_or(ErrorCategory::Permanent),
            };
            return Err(errors::make(
                category,
                format!(
                    "{CTX}: token exchange refused: HTTP {}: {}",
                    status.as_u16(),
                    errors::excerpt(detail.as_bytes(), errors::BODY_EXCERPT_LIMIT)
                ),
                retry,
                &redactor,
            ));
        }
        let parsed: TokenResponse = serde_json::from_slice(bytes).map_err(|_| {
            PluginError::Transient(format!("{CTX}: token response is not the documented JSON"))
        })?;
        let value = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PluginError::Transient(format!("{CTX}: no access_token")))?;
        let lifetime = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::from_secs(300), Duration::from_secs_f64)
            .min(Duration::from_secs(JWT_LIFETIME * 2));
        let refresh_in = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        Ok(Token {
            value: Secret::new(value),
            refresh_at: started + refresh_in,
            expires_at: started + lifetime.saturating_sub(Duration::from_secs(10)),
        })
    }
}

async fn read_key_file(path: &str) -> Result<Secret, PluginError> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| {
        PluginError::Auth(format!("google: credentials_file {path:?}: {}", e.kind()))
    })?;
    if meta.len() > MAX_BODY as u64 {
        return Err(PluginError::Auth(format!(
            "google: credentials_file {path:?} is larger than {MAX_BODY} bytes"
        )));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        PluginError::Auth(format!("google: credentials_file {path:?}: {}", e.kind()))
    })?;
    Ok(Secret::new(text))
}

/// The redactor for an auth's secrets (API key; tokens are redacted by pattern as `Bearer …`).
pub fn redactor(auth: &Auth) -> Redactor {
    match auth {
        Auth::ApiKey(k) => Redactor::new().with_secret(k),
        Auth::ServiceAccount { .. } => Redactor::new(),
    }
}

/// Percent-encodes a value for `x-goog-request-params` (as gax does: everything but unreserved).
pub fn encode_param(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 8);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
