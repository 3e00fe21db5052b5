//! IBM Cloud IAM: an API key exchanged for a bearer access token, cached per key.
//!
//! `POST https://iam.cloud.ibm.com/identity/token` with `Content-Type:
//! application/x-www-form-urlencoded`, `Accept: application/json` and the form
//! `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>` answers
//! `{"access_token": "…", "refresh_token": "not_supported", "token_type": "Bearer",
//! "expires_in": 3600, "expiration": <epoch s>, "scope": "ibm openid"}` (cloud.ibm.com docs
//! "Generating an IBM Cloud IAM token by using an API key"; IBM/python-sdk-core
//! `ibm_cloud_sdk_core/token_managers/iam_token_manager.py` sends exactly this form and these
//! headers). A wrong or deleted key is refused with `400` and
//! `{"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.", …}`
//! (same docs, "Error codes"), so 400 is an Auth failure here, like 401/403.
//!
//! Caching follows the SDK core's `jwt_token_manager.py`: a token is used until 80% of its
//! lifetime has passed, then refreshed; if the refresh fails while the old token is still
//! valid, the old one keeps serving. One refresh per key is in flight at a time (callers for
//! the same key wait on it), and the cache holds at most [`MAX_KEYS`] keys.

use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use waav_plugin_api::{ErrorCategory, PluginError, Secret};
use waav_provider_kit::errors;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, HttpClientConfig};
use waav_provider_kit::redact::Redactor;

/// IBM Cloud's IAM token endpoint.
pub const DEFAULT_IAM_URL: &str = "https://iam.cloud.ibm.com/identity/token";
/// The grant type of an API key exchange.
pub const GRANT_TYPE: &str = "urn:ibm:params:oauth:grant-type:apikey";
/// Keys whose tokens are cached at once (least recently used idle ones are evicted).
pub const MAX_KEYS: usize = 64;
/// Names IAM in messages.
const CTX: &str = "ibm iam";
/// Largest token response read.
const MAX_BODY: usize = 64 * 1024;
/// Share of a token's lifetime after which it is refreshed (the SDK core uses 80%).
const REFRESH_AT: f64 = 0.8;
/// An old token is not used for the last moments of its life (clock skew, transit).
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Longest lifetime believed (IAM issues 1 h tokens).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A cached token.
#[derive(Debug, Clone)]
struct Token {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The token endpoint's answer (fields as documented; only these two are used).
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<f64>,
}

/// IAM's error body (`errorCode`, `errorMessage`), for messages.
#[derive(Debug, Deserialize)]
struct IamError {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
}

/// Tokens per (IAM URL, API key), shared by every session of a plugin instance.
#[derive(Debug)]
pub struct TokenCache {
    http: Mutex<Option<HttpClient>>,
    slots: Mutex<HashMap<(String, Secret), (Slot, Instant)>>,
    timeout: Duration,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl TokenCache {
    /// An empty cache whose token requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: Mutex::new(None),
            slots: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// How many keys have a slot (for tests).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key has a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn http(&self) -> Result<HttpClient, PluginError> {
        let mut slot = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = HttpClient::new(HttpClientConfig {
            timeout: Some(self.timeout),
            connect_timeout: self.timeout,
            read_timeout: Some(self.timeout),
            pool_max_idle_per_host: 4,
            context: CTX.to_owned(),
            ..HttpClientConfig::default()
        })?;
        *slot = Some(client.clone());
        Ok(client)
    }

    fn slot(&self, iam_url: &str, key: &Secret) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let id = (iam_url.to_owned(), key.clone());
        if let Some((slot, used)) = slots.get_mut(&id) {
            *used = now;
            return slot.clone();
        }
        if slots.len() >= MAX_KEYS {
            // Evict the least recently used slot nobody is waiting on.
            let victim = slots
                .iter()
                .filter(|(_, (s, _))| Arc::strong_count(s) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                slots.remove(&v);
            }
        }
        let slot: Slot = Arc::default();
        slots.insert(id, (slot.clone(), now));
        slot
    }

    /// A valid access token for `api_key`, fetched from `iam_url` when none is cached or the
    /// cached one is due for refresh.
    pub async fn token(&self, iam_url: &str, api_key: &Secret) -> Result<Secret, PluginError> {
        let slot = self.slot(iam_url, api_key);
        // Holding the slot's lock across the request makes it the one refresh in flight.
        let mut cached = slot.lock().await;
        let now = Instant::now();
        if let Some(t) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(t.value.clone());
        }
        match self.fetch(iam_url, api_key).await {
            Ok(t) => {
                let value = t.value.clone();
                *cached = Some(t);
                Ok(value)
            }
            Err(e) => match cached
                .as_ref()
                .filter(|t| now + EXPIRY_MARGIN < t.expires_at)
            {
                Some(old) => {
                    tracing::debug!(error = %e, "ibm iam: refresh failed; the current token is still valid");
                    Ok(old.value.clone())
                }
                None => {
                    *cached = None;
                    Err(e)
                }
            },
        }
    }

    /// Drops the cached token for `api_key` (the service refused it).
    pub async fn invalidate(&self, iam_url: &str, api_key: &Secret) {
        let slot = self.slot(iam_url, api_key);
        *slot.lock().await = None;
    }

    async fn fetch(&self, iam_url: &str, api_key: &Secret) -> Result<Token, PluginError> {
        let http = self.http()?;
        let redactor = http.redactor().clone().with_secret(api_key);
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("apikey", api_key.expose())
            .finish();
        let req = http
            .post(iam_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(form);
        let started = Instant::now();
        // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
        let until = tokio::time::Instant::now() + self.timeout;
        let resp = match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
            Err(_) => {
                return Err(errors::timeout(
                    &format!("{CTX}: token request"),
                    self.timeout,
                    &redactor,
                ))
            }
            Ok(Err(e)) => return Err(redactor.redact_error(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let retry = errors::retry_after(resp.headers());
        let body = read_body(resp, self.timeout, &redactor).await?;
        if !status.is_success() {
            let reason = status.canonical_reason().unwrap_or("");
            return Err(error_for(status.as_u16(), reason, retry, &body, &redactor));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            errors::make(
                ErrorCategory::Transient,
                format!("{CTX}: invalid token response: {e}"),
                None,
                &redactor,
            )
        })?;
        let value = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                errors::make(
                    ErrorCategory::Transient,
                    format!("{CTX}: token response without access_token"),
                    None,
                    &redactor,
                )
            })?;
        let lifetime = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Duration::from_secs(60), Duration::from_secs_f64)
            .min(MAX_LIFETIME);
        // Lifetimes count from when the request went out, not when the answer arrived.
        Ok(Token {
            value: Secret::new(value),
            refresh_at: started + lifetime.mul_f64(REFRESH_AT),
            expires_at: started + lifetime,
        })
    }
}

async fn read_body(
    resp: waav_provider_kit::http::Response,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Vec<u8>, PluginError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_reqwest_error(e, CTX, redactor))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(errors::make(
                    ErrorCategory::Transient,
                    format!("{CTX}: token response exceeds {MAX_BODY} bytes"),
                    None,
                    redactor,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(errors::timeout(
            &format!("{CTX}: reading the token response"),
            timeout,
            redactor,
        )),
        Ok(r) => r.map(|()| body),
    }
}

/// A refused exchange: 400 (unknown or malformed key), 401 and 403 are Auth; 429 RateLimited
/// with `retry-after`; the kit's table for the rest. IAM's `errorCode: errorMessage` goes into
/// the message.
fn error_for(
    status: u16,
    reason: &str,
    retry: Option<Duration>,
    body: &[u8],
    redactor: &Redactor,
) -> PluginError {
    let detail = serde_json::from_slice::<IamError>(body)
        .ok()
        .map(|e| {
            [e.error_code, e.error_message]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| errors::excerpt(body, errors::BODY_EXCERPT_LIMIT));
    let category = match status {
        400 | 401 | 403 => ErrorCategory::Auth,
        s => errors::status_category(s).unwrap_or(ErrorCategory::Permanent),
    };
    let mut msg = format!("{CTX}: API key exchange refused: HTTP {status} {reason}");
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    errors::make(category, msg.trim_end(), retry, redactor)
}
