//! The IBM Watson Text to Speech plugin (`POST /v1/synthesize`, streamed).
//!
//! - [`synthesize`](TtsPlugin::synthesize): `POST <instance>/v1/synthesize?voice=…` with
//!   `Authorization: Bearer <IAM token>`, `Accept: <format>` and `{"text": …}`; the chunked
//!   audio body goes into the sink as it arrives (TTS_PROTOCOLS.md §8; docs "The HTTP
//!   interface"). Texts over the service's 5 KB limit are split at sentence ends into several
//!   requests, streamed one after another.
//! - Formats: linear16 (`audio/l16;rate=N;endianness=little-endian`; a big-endian response is
//!   byte-swapped), mulaw, alaw, mp3 and Ogg Opus, at 8–48 kHz (IBM resamples).
//! - `speaking_rate` becomes `<prosody rate="±N%">`; an emotion becomes `<express-as style>`
//!   for the expressive neural voices only, else it is ignored with a debug log. SSML input is
//!   sent untouched.
//! - [`voices`](TtsPlugin::voices): `GET <instance>/v1/voices`, cached `voices_ttl_secs`.
//!
//! IBM's HTTP synthesis has no word timings (only its WebSocket interface has `timings`), so
//! there is nothing to parse for alignment; the WebSocket interface is not used: it takes one
//! text per connection, so it offers no streaming input over the HTTP path.

pub mod request;

use crate::common::{self, AuthMode};
use crate::iam::TokenCache;
use futures::StreamExt;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use waav_plugin_api::{
    AudioSink, Capabilities, CredentialField, ErrorCategory, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, Secret, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::errors;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, HttpClientConfig, Response};
use waav_provider_kit::redact::Redactor;

/// Environment variable of the API key.
pub const API_KEY_ENV: &str = "IBM_TTS_API_KEY";
/// Environment variable of the service instance URL.
pub const URL_ENV: &str = "IBM_TTS_URL";
/// The voice when neither the session nor the config names one.
pub const DEFAULT_VOICE: &str = "en-US_MichaelV3Voice";
/// Names the provider in messages.
const CTX: &str = "ibm tts";
/// Largest voice listing read.
const MAX_VOICES_BODY: usize = 4 << 20;

/// Credentials: the IBM Cloud API key and the service instance URL (not secret).
const CREDENTIALS: &[CredentialField] = &[
    CredentialField::secret("api_key", API_KEY_ENV),
    CredentialField::setting(common::URL_FIELD, URL_ENV),
];

/// Settings from the plugin's config section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// IAM exchange (default) or a ready bearer token.
    pub auth: AuthMode,
    /// Default voice.
    pub voice: String,
    /// `customization_id` (a custom voice model), if any.
    pub customization_id: Option<String>,
    /// Map `speaking_rate` and emotion to SSML (default true).
    pub ssml: bool,
    /// How long the voice listing is cached (default 300 s).
    pub voices_ttl: Duration,
    /// TCP + TLS deadline (default 10 s).
    pub connect_timeout: Duration,
    /// Deadline for the response head and for each body chunk (default 15 s).
    pub read_timeout: Duration,
}

impl Settings {
    /// Reads and validates a config section.
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let required = |key: &str, default: u64| -> Result<Duration, PluginError> {
            Ok(common::millis(c, key, default, false)?.unwrap_or_default())
        };
        Ok(Self {
            auth: AuthMode::from_config(c)?,
            voice: common::ident(c, "voice")?.unwrap_or_else(|| DEFAULT_VOICE.to_owned()),
            customization_id: common::ident(c, "customization_id")?,
            ssml: c.bool("ssml")?.unwrap_or(true),
            voices_ttl: Duration::from_secs(c.u64("voices_ttl_secs")?.unwrap_or(300)),
            connect_timeout: required("connect_timeout_ms", 10_000)?,
            read_timeout: required("read_timeout_ms", 15_000)?,
        })
    }
}

/// What one session's requests look like, resolved once per request from its config.
#[derive(Debug, Clone)]
struct Resolved {
    settings: Settings,
    key: Secret,
    instance: String,
    voice: String,
    accept: String,
}

fn resolve(config: &TtsSessionConfig) -> Result<Resolved, PluginError> {
    let settings = Settings::from_config(&config.plugin_config)?;
    let key = common::api_key(
        config.api_key.as_ref(),
        &config.credentials,
        CTX,
        API_KEY_ENV,
    )?;
    let instance = common::instance_url(&config.credentials, CTX, URL_ENV, false)?;
    let voice = if config.voice_id.is_empty() {
        settings.voice.clone()
    } else if common::is_ident(&config.voice_id) {
        config.voice_id.clone()
    } else {
        return Err(PluginError::Config(format!(
            "{CTX}: unexpected characters in voice {:?}",
            config.voice_id
        )));
    };
    let accept = request::accept(config.encoding, config.sample_rate, CTX)?;
    Ok(Resolved {
        settings,
        key,
        instance,
        voice,
        accept,
    })
}

/// A cached voice listing.
#[derive(Debug)]
struct VoiceCache {
    at: Instant,
    instance: String,
    voices: Vec<VoiceInfo>,
}

/// IBM Watson Text to Speech. Plugin id `ibm-watson` (aliases `watson`, `ibm`).
///
/// Credentials: `api_key` (env `IBM_TTS_API_KEY`), exchanged at IBM Cloud IAM for an access
/// token cached per key; `url`, the service instance URL (env `IBM_TTS_URL`, required), e.g.
/// `https://api.us-south.text-to-speech.watson.cloud.ibm.com/instances/<id>` (`http://`
/// allowed).
///
/// Config section (all optional): `auth` (`iam` | `bearer`), `iam_url`, `voice` (default
/// `en-US_MichaelV3Voice`), `customization_id`, `ssml` (default true: rate and style as SSML),
/// `voices_ttl_secs` (300), `connect_timeout_ms` (10000), `read_timeout_ms` (15000: the
/// response head and each body chunk). The voice listing (no session config) uses the `url`
/// of this section, else the `IBM_TTS_URL` environment variable.
#[derive(Debug, Default)]
pub struct IbmTts {
    tokens: TokenCache,
    http: Mutex<Option<HttpClient>>,
    init: RwLock<Option<(Settings, Option<String>)>>,
    voices: Mutex<Option<VoiceCache>>,
}

impl IbmTts {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The plugin's token cache (shared by its sessions).
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    fn http(&self, connect_timeout: Duration) -> Result<HttpClient, PluginError> {
        let mut slot = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = HttpClient::new(HttpClientConfig {
            // Streaming bodies: each read is bounded by `read_timeout_ms` instead.
            timeout: None,
            read_timeout: None,
            connect_timeout,
            context: CTX.to_owned(),
            ..HttpClientConfig::default()
        })?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn synthesize_piece(
        &self,
        r: &Resolved,
        http: &HttpClient,
        text: &str,
        out: &AudioSink,
    ) -> Result<(), PluginError> {
        let token = r.settings.auth.token(&self.tokens, &r.key).await?;
        let redactor = http
            .redactor()
            .clone()
            .with_secret(&r.key)
            .with_secret(&token);
        let url = synthesize_url(r);
        let body = serde_json::json!({ "text": text }).to_string();
        let req = http
            .post(&url)
            .header("Authorization", format!("Bearer {}", token.expose()))
            .header("Accept", &r.accept)
            .header("Content-Type", "application/json")
            .body(body);
        let resp = match self.send(http, req, r, &redactor).await {
            Ok(resp) => resp,
            Err(e) => return Err(e),
        };
        if let Some(w) = resp.headers().get("warnings").and_then(|v| v.to_str().ok()) {
            tracing::debug!(warnings = w, "ibm tts: service warnings");
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let lower = content_type.to_ascii_lowercase();
        if lower.starts_with("application/json") || lower.starts_with("text/") {
            // A 200 that is not audio (a proxy's page): never play it.
            let head = read_limited(resp, 256, r.settings.read_timeout).await;
            return Err(errors::make(
                ErrorCategory::Permanent,
                format!(
                    "{CTX}: expected audio, got {content_type}: {}",
                    errors::excerpt(&head, 200)
                ),
                None,
                &redactor,
            ));
        }
        let mut swap = request::is_big_endian(&content_type).then(request::Swapper::default);
        let mut body = resp.bytes_stream();
        let wait = r.settings.read_timeout;
        loop {
            let chunk = match tokio::time::timeout(wait, body.next()).await {
                Err(_) => {
                    return Err(errors::timeout(
                        &format!("{CTX}: reading audio"),
                        wait,
                        &redactor,
                    ))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(map_reqwest_error(e, CTX, &redactor)),
                Ok(Some(Ok(c))) => c,
            };
            let chunk = match swap.as_mut() {
                Some(s) => bytes::Bytes::from(s.push(&chunk)),
                None => chunk,
            };
            if out.send(chunk).await.is_err() {
                // Cancelled or the host went away: dropping the body closes the connection.
                return Ok(());
            }
        }
    }

    /// Sends with a deadline on the response head; a refusal becomes a categorised error, and a
    /// refused token is forgotten.
    async fn send(
        &self,
        http: &HttpClient,
        req: waav_provider_kit::http::RequestBuilder,
        r: &Resolved,
        redactor: &Redactor,
    ) -> Result<Response, PluginError> {
        let wait = r.settings.read_timeout;
        // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
        let until = tokio::time::Instant::now() + wait;
        let resp = match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
            Err(_) => {
                return Err(errors::timeout(
                    &format!("{CTX}: waiting for the response"),
                    wait,
                    redactor,
                ))
            }
            Ok(Err(e)) => return Err(redactor.redact_error(e)),
            Ok(Ok(resp)) => resp,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        if status == 401 {
            r.settings.auth.refused(&self.tokens, &r.key).await;
        }
        Err(error_from_response(resp, wait, redactor).await)
    }
}

/// `<instance>/v1/synthesize?voice=…[&customization_id=…]`.
fn synthesize_url(r: &Resolved) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("voice", &r.voice);
    if let Some(id) = &r.settings.customization_id {
        q.append_pair("customization_id", id);
    }
    format!("{}/v1/synthesize?{}", r.instance, q.finish())
}

async fn read_limited(mut resp: Response, limit: usize, wait: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < limit {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    body
}

/// A non-2xx response: the kit's status table (401/403 Auth, 429 RateLimited with
/// `retry-after`, 404 unknown voice Config, 5xx Transient) with IBM's refinements: 406 (the
/// `Accept` format) and 415 are Config; 400 is Config unless the message is about the text,
/// which no configuration fixes (Permanent). The Watson `error` field is the message.
async fn error_from_response(resp: Response, wait: Duration, redactor: &Redactor) -> PluginError {
    let status = resp.status();
    let retry = errors::retry_after(resp.headers());
    let body = read_limited(resp, errors::BODY_EXCERPT_LIMIT * 4, wait).await;
    let detail = request::error_message(&body);
    let mut category = errors::status_category(status.as_u16()).unwrap_or(ErrorCategory::Permanent);
    match status.as_u16() {
        406 | 415 => category = ErrorCategory::Config,
        400 => {
            let about_text = detail.as_deref().is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("text") || m.contains("ssml")
            });
            category = if about_text {
                ErrorCategory::Permanent
            } else {
                ErrorCategory::Config
            };
        }
        _ => {}
    }
    let mut msg = format!(
        "{CTX}: HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let detail = detail.unwrap_or_else(|| errors::excerpt(&body, errors::BODY_EXCERPT_LIMIT));
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    errors::make(category, msg.trim_end(), retry, redactor)
}

#[async_trait::async_trait]
impl Plugin for IbmTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("ibm-watson", "IBM Watson Text to Speech")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["watson", "ibm"])
            .description("IBM Watson Text to Speech (POST /v1/synthesize, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let (lo, hi) = request::RATE_RANGE;
        Capabilities::new()
            .encodings(request::ENCODINGS.iter().copied())
            .sample_rate_range(lo, hi)
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let url = config.string(common::URL_FIELD)?;
        if let Ok(mut slot) = self.init.write() {
            *slot = Some((s, url));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for IbmTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        resolve(config).map(|_| ())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let r = resolve(config)?;
        let text = request.text.trim();
        if text.is_empty() {
            // Nothing to say; the service would refuse an empty text.
            return Ok(());
        }
        let (style, rate) = if r.settings.ssml {
            (
                request::style_for(&config.emotion, &r.voice),
                request::prosody_rate(config.speaking_rate),
            )
        } else {
            if !config.emotion.is_empty() || (config.speaking_rate - 1.0).abs() >= 0.01 {
                tracing::debug!("ibm tts: ssml is off; speaking rate and emotion ignored");
            }
            (None, None)
        };
        // Room for the SSML wrapping and escaping inside the 5 KB limit.
        let budget = if style.is_some() || rate.is_some() {
            request::MAX_TEXT_BYTES * 3 / 4
        } else {
            request::MAX_TEXT_BYTES
        };
        let pieces = if request::is_ssml(text) {
            if text.len() > request::MAX_TEXT_BYTES {
                return Err(PluginError::Permanent(format!(
                    "{CTX}: SSML text of {} bytes exceeds the service's {} byte limit",
                    text.len(),
                    request::MAX_TEXT_BYTES
                )));
            }
            vec![text]
        } else {
            request::split_text(text, budget)
        };
        let http = self.http(r.settings.connect_timeout)?;
        for piece in pieces {
            let body = request::body_text(piece, style, rate.as_deref());
            self.synthesize_piece(&r, &http, &body, &out).await?;
            if out.is_cancelled() {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let (settings, url) = self
            .init
            .read()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| {
                (
                    Settings::from_config(&PluginConfig::default())
                        .expect("the default settings are valid"),
                    None,
                )
            });
        let url = url.or_else(|| std::env::var(URL_ENV).ok());
        let mut creds = waav_plugin_api::Credentials::new();
        if let Some(u) = url {
            creds.set(common::URL_FIELD, Secret::new(u));
        }
        let instance = common::instance_url(&creds, CTX, URL_ENV, false)?;
        {
            let cache = self.voices.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.as_ref() {
                if c.instance == instance && c.at.elapsed() < settings.voices_ttl {
                    return Ok(c.voices.clone());
                }
            }
        }
        let key = common::api_key(api_key.as_ref(), &creds, CTX, API_KEY_ENV)?;
        let token = settings.auth.token(&self.tokens, &key).await?;
        let http = self.http(settings.connect_timeout)?;
        let redactor = http
            .redactor()
            .clone()
            .with_secret(&key)
            .with_secret(&token);
        let r = Resolved {
            settings: settings.clone(),
            key,
            instance: instance.clone(),
            voice: String::new(),
            accept: String::new(),
        };
        let req = http
            .get(&format!("{instance}/v1/voices"))
            .header("Authorization", format!("Bearer {}", token.expose()))
            .header("Accept", "application/json");
        let resp = self.send(&http, req, &r, &redactor).await?;
        let body = read_limited(resp, MAX_VOICES_BODY + 1, settings.read_timeout).await;
        if body.len() > MAX_VOICES_BODY {
            return Err(errors::make(
                ErrorCategory::Permanent,
                format!("{CTX}: voice listing exceeds {MAX_VOICES_BODY} bytes"),
                None,
                &redactor,
            ));
        }
        let voices = request::voices(&body).map_err(|e| {
            errors::make(
                ErrorCategory::Permanent,
                format!(
                    "{CTX}: invalid voice listing: {e}: {}",
                    errors::excerpt(&body, 120)
                ),
                None,
                &redactor,
            )
        })?;
        let mut cache = self.voices.lock().unwrap_or_else(|p| p.into_inner());
        *cache = Some(VoiceCache {
            at: Instant::now(),
            instance,
            voices: voices.clone(),
        });
        Ok(voices)
    }
}
