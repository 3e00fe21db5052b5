//! The Google Cloud Text-to-Speech v1 plugin (gRPC `google.cloud.texttospeech.v1.TextToSpeech`).
//!
//! Two paths per request (TTS_PROTOCOLS.md §3; proto `google/cloud/texttospeech/v1/cloud_tts.proto`
//! as generated in `googleapis-tonic-google-cloud-texttospeech-v1` 0.44, which settles the
//! sheet's UNCONFIRMED field numbers: `StreamingSynthesizeConfig.streaming_audio_config = 4`,
//! `StreamingAudioConfig {audio_encoding = 1, sample_rate_hertz = 2, speaking_rate = 3}`,
//! `AudioEncoding.PCM = 7`, `M4A = 8`, `SynthesisInput.markup = 5`, `prompt = 6`):
//! - `StreamingSynthesize` (bidi) for streaming-capable voices — Chirp 3 HD (`…-Chirp3-HD-…`;
//!   cloud.google.com/text-to-speech/docs/chirp3-hd, "Supported output formats": streaming
//!   takes PCM, OGG_OPUS, MULAW, ALAW — the proto comment says "Streaming supports PCM, ALAW,
//!   MULAW and OGG_OPUS"): request #1 is `streaming_config` {voice, streaming_audio_config},
//!   then the text as `input` messages, then a half-close; `audio_content` chunks are forwarded
//!   as they arrive (headerless). `streaming = "auto"` (default) picks it for Chirp 3 HD voices
//!   and a streamable encoding; `"never"` / `"always"` force the choice.
//!   One call per request: the stream has no per-input end marker, so ending the call is the
//!   only way to know a request's audio is complete. Calls share one HTTP/2 connection, so this
//!   costs no handshake; [`TtsPlugin::open_stream`] is therefore not implemented.
//! - `SynthesizeSpeech` (unary) otherwise: `audio_config {audio_encoding LINEAR16|MULAW|ALAW|MP3|
//!   OGG_OPUS, sample_rate_hertz, speaking_rate, pitch, volume_gain_db, effects_profile_id}`,
//!   `voice {language_code, name}`. LINEAR16/MULAW/ALAW come back inside a WAV header ("For
//!   LINEAR16 audio, we include the WAV header"), which is stripped ([`wav`]). Texts over the
//!   5000-byte input limit are split at sentence ends and synthesised in turn.
//! - Emotion: non-Chirp voices get SSML `<prosody>` (pitch/rate/volume from a small table of
//!   emotion and delivery-style names, scaled by intensity); Chirp 3 HD voices do not take SSML
//!   prosody, so there it is ignored with a debug log. `speaking_rate` ← the session's rate
//!   (clamped to 0.25–4.0, streaming 0.25–2.0).
//! - Voices: `ListVoices` → [`VoiceInfo`], cached for `voices_ttl_secs` (default 300).

pub mod wav;

use crate::auth::{self, Auth, AuthCache};
use crate::common::{self, Channels};
use futures::channel::mpsc;
use futures::SinkExt;
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as pb;
use pb::text_to_speech_client::TextToSpeechClient;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, Emotion, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, Secret, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::grpc::{self, tonic};

/// Names the provider in messages.
pub(crate) const CTX: &str = "google tts";
/// The production endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://texttospeech.googleapis.com";
/// The voice when neither the session nor the config names one (streams: Chirp 3 HD).
pub const DEFAULT_VOICE: &str = "en-US-Chirp3-HD-Charon";
/// `SynthesisInput` limit (bytes), per request.
pub const MAX_INPUT_BYTES: usize = 5000;
/// Largest response message accepted (a unary answer holds a whole utterance).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Chunk size audio from a unary answer is handed to the sink in.
const SINK_CHUNK: usize = 16 * 1024;

/// The Text-to-Speech plugin (id `google`).
#[derive(Debug, Default)]
pub struct GoogleTts {
    channels: Channels,
    auth: Arc<AuthCache>,
    init: Mutex<PluginConfig>,
    /// The last session's credentials, for `voices()` (which only receives an API key).
    last_auth: Mutex<Option<(Auth, PluginConfig)>>,
    voices: Mutex<Option<(Instant, Vec<VoiceInfo>)>>,
    voice_fetches: std::sync::atomic::AtomicU64,
}

impl GoogleTts {
    /// A plugin with empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token and key-file cache.
    pub fn auth_cache(&self) -> &AuthCache {
        &self.auth
    }

    /// How many times `ListVoices` was called (for tests of the cache).
    pub fn voice_fetches(&self) -> u64 {
        self.voice_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a session's requests are synthesised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Always,
    Never,
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    endpoint: String,
    voice: String,
    language: String,
    streaming: bool,
    pitch: f64,
    volume_gain_db: f64,
    effects: Vec<String>,
    user_project: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    max_input: usize,
}

/// Whether a voice name is a Chirp 3 HD voice (`<locale>-Chirp3-HD-<name>`, chirp3-hd docs "FAQ").
pub fn is_streaming_voice(voice: &str) -> bool {
    voice.to_ascii_lowercase().contains("-chirp3-hd-")
}

/// `en-US` from `en-US-Chirp3-HD-Charon` / `cmn-CN-…`; `None` when the name has no locale.
pub fn voice_language(voice: &str) -> Option<String> {
    let mut parts = voice.splitn(3, '-');
    let (a, b) = (parts.next()?, parts.next()?);
    let ok = (2..=3).contains(&a.len())
        && a.bytes().all(|c| c.is_ascii_alphabetic())
        && (2..=4).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| format!("{a}-{b}"))
}

fn streamable(e: AudioEncoding) -> bool {
    matches!(
        e,
        AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Alaw | AudioEncoding::Opus
    )
}

fn settings(cfg: &TtsSessionConfig) -> Result<Settings, PluginError> {
    let pc = &cfg.plugin_config;
    let path = pc.path();
    match cfg.encoding {
        AudioEncoding::Linear16
        | AudioEncoding::Mulaw
        | AudioEncoding::Alaw
        | AudioEncoding::Mp3
        | AudioEncoding::Opus => {}
        other => {
            return Err(PluginError::Config(format!(
                "{CTX}: encoding {other} is not produced (linear16, mulaw, alaw, mp3, opus)"
            )))
        }
    }
    if !(8_000..=48_000).contains(&cfg.sample_rate) {
        return Err(PluginError::Config(format!(
            "{CTX}: sample rate {} is outside 8000–48000 Hz",
            cfg.sample_rate
        )));
    }
    let voice = if !cfg.voice_id.is_empty() {
        cfg.voice_id.clone()
    } else {
        pc.string("voice")?.unwrap_or_else(|| DEFAULT_VOICE.into())
    };
    if voice.len() > 200 || voice.chars().any(char::is_control) {
        return Err(PluginError::Config(format!(
            "{CTX}: voice {voice:?} is not a voice name"
        )));
    }
    let language = match pc.string("language_code")? {
        Some(l) => l,
        None => voice_language(&voice).ok_or_else(|| {
            PluginError::Config(format!(
                "{CTX}: cannot tell the language of voice {voice:?}; set {path}.language_code"
            ))
        })?,
    };
    let mode = match pc.string("streaming")?.as_deref() {
        None | Some("auto") => Mode::Auto,
        Some("always") => Mode::Always,
        Some("never") => Mode::Never,
        Some(o) => {
            return Err(PluginError::Config(format!(
                "{path}.streaming: {o:?} (auto, always, never)"
            )))
        }
    };
    let streaming = match mode {
        Mode::Never => false,
        Mode::Always => {
            if !streamable(cfg.encoding) {
                return Err(PluginError::Config(format!(
                    "{CTX}: streaming synthesis does not produce {}",
                    cfg.encoding
                )));
            }
            true
        }
        Mode::Auto => is_streaming_voice(&voice) && streamable(cfg.encoding),
    };
    let range = |key: &str, min: f64, max: f64| -> Result<f64, PluginError> {
        match pc.f64(key)? {
            None => Ok(0.0),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(PluginError::Config(format!(
                "{path}.{key}: {v} is outside {min}–{max}"
            ))),
        }
    };
    let max_input = match pc.u64("max_input_bytes")? {
        None => MAX_INPUT_BYTES,
        Some(v) if (100..=MAX_INPUT_BYTES as u64).contains(&v) => v as usize,
        Some(v) => {
            return Err(PluginError::Config(format!(
                "{path}.max_input_bytes: {v} is outside 100–{MAX_INPUT_BYTES}"
            )))
        }
    };
    Ok(Settings {
        endpoint: common::endpoint_override(pc)?.unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
        voice,
        language,
        streaming,
        // AudioConfig: pitch -20..20 semitones, volume_gain_db -96..16.
        pitch: range("pitch", -20.0, 20.0)?,
        volume_gain_db: range("volume_gain_db", -96.0, 16.0)?,
        effects: pc.strings("effects_profile_id")?.unwrap_or_default(),
        user_project: common::user_project(pc)?,
        timeout: common::millis(pc, "timeout_ms", Duration::from_secs(30), 100, 600_000)?,
        connect_timeout: common::millis(
            pc,
            "connect_timeout_ms",
            Duration::from_secs(10),
            10,
            60_000,
        )?,
        max_input,
    })
}

/// The unary encoding for the session's (header-stripped where it is WAV).
fn unary_encoding(e: AudioEncoding) -> pb::AudioEncoding {
    match e {
        AudioEncoding::Mulaw => pb::AudioEncoding::Mulaw,
        AudioEncoding::Alaw => pb::AudioEncoding::Alaw,
        AudioEncoding::Mp3 => pb::AudioEncoding::Mp3,
        AudioEncoding::Opus => pb::AudioEncoding::OggOpus,
        _ => pb::AudioEncoding::Linear16,
    }
}

fn streaming_encoding(e: AudioEncoding) -> pb::AudioEncoding {
    match e {
        AudioEncoding::Mulaw => pb::AudioEncoding::Mulaw,
        AudioEncoding::Alaw => pb::AudioEncoding::Alaw,
        AudioEncoding::Opus => pb::AudioEncoding::OggOpus,
        _ => pb::AudioEncoding::Pcm,
    }
}

fn rate(cfg: &TtsSessionConfig, max: f64) -> f64 {
    let r = f64::from(cfg.speaking_rate);
    if !r.is_finite() || r <= 0.0 {
        return 1.0;
    }
    let c = r.clamp(0.25, max);
    if c != r {
        tracing::debug!(rate = r, used = c, "google tts: speaking rate clamped");
    }
    c
}

/// Escapes text for SSML.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<prosody>` attributes for an emotion: (pitch semitones, rate %, volume) at full intensity.
fn prosody_for(name: &str) -> Option<(f32, f32, Option<&'static str>)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "happy" | "excited" | "cheerful" | "joyful" | "enthusiastic" => (2.0, 10.0, None),
        "sad" | "melancholy" | "disappointed" | "tired" => (-2.0, -12.0, Some("soft")),
        "calm" | "relaxed" | "gentle" | "soothing" => (-1.0, -8.0, Some("soft")),
        "angry" | "furious" | "frustrated" => (1.0, 8.0, Some("loud")),
        "fearful" | "scared" | "anxious" | "nervous" => (2.0, 12.0, None),
        "whispered" | "whisper" | "whispering" => (0.0, -5.0, Some("x-soft")),
        "shouted" | "shouting" => (1.0, 0.0, Some("x-loud")),
        "serious" | "professional" => (-1.0, -3.0, None),
        _ => return None,
    })
}

/// SSML for `text` with the emotion's prosody, or `None` when the emotion maps to nothing.
pub fn emotion_ssml(text: &str, emotion: &Emotion) -> Option<String> {
    let names = [
        emotion.emotion.as_deref(),
        emotion.delivery_style.as_deref(),
    ];
    let mut found = None;
    for n in names.into_iter().flatten() {
        match prosody_for(n) {
            Some(p) => {
                found = Some(p);
                break;
            }
            None => tracing::debug!(
                name = n,
                "google tts: no prosody for this emotion/style; ignored"
            ),
        }
    }
    let (pitch, rate, volume) = found?;
    let k = emotion.intensity.unwrap_or(0.6).clamp(0.0, 1.0) / 0.6;
    let mut attrs = String::new();
    if pitch != 0.0 {
        attrs.push_str(&format!(" pitch=\"{:+.1}st\"", pitch * k));
    }
    if rate != 0.0 {
        attrs.push_str(&format!(" rate=\"{:.0}%\"", 100.0 + rate * k));
    }
    if let Some(v) = volume {
        attrs.push_str(&format!(" volume=\"{v}\""));
    }
    Some(format!(
        "<speak><prosody{attrs}>{}</prosody></speak>",
        escape_xml(text)
    ))
}

/// Splits `text` into pieces of at most `max` bytes, at sentence ends, else spaces, else chars.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = window
            .rfind(['.', '!', '?', '\n', '。'])
            .map(|i| i + window[i..].chars().next().map_or(1, char::len_utf8))
            .filter(|&i| i > max / 4)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(cut);
        let at = if at == 0 { cut.max(1) } else { at };
        out.push(rest[..at].trim());
        rest = rest[at..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out.retain(|p| !p.is_empty());
    out
}

impl GoogleTts {
    async fn session(&self, cfg: &TtsSessionConfig) -> Result<(Settings, Auth), PluginError> {
        let s = settings(cfg)?;
        let auth = self
            .auth
            .resolve(cfg.api_key.as_ref(), &cfg.credentials, &cfg.plugin_config)
            .await?;
        *lock(&self.last_auth) = Some((auth.clone(), cfg.plugin_config.clone()));
        Ok((s, auth))
    }

    fn client(
        &self,
        s: &Settings,
    ) -> Result<TextToSpeechClient<tonic::transport::Channel>, PluginError> {
        let ch = self.channels.get(
            &s.endpoint,
            s.connect_timeout,
            Some(Duration::from_secs(30)),
            CTX,
        )?;
        Ok(TextToSpeechClient::new(ch).max_decoding_message_size(MAX_RESPONSE))
    }

    async fn request<T>(
        &self,
        auth: &Auth,
        s: &Settings,
        msg: T,
        deadline: Option<Duration>,
    ) -> Result<tonic::Request<T>, PluginError> {
        let mut req = tonic::Request::new(msg);
        if let Some(d) = deadline {
            // The server's deadline (`grpc-timeout`), a little after ours: our own timeout
            // reports a silent server as Timeout.
            req.set_timeout(d + Duration::from_secs(1));
        }
        self.auth
            .authorize(auth, s.user_project.as_deref(), &mut req)
            .await?;
        Ok(req)
    }

    async fn status_error(&self, auth: &Auth, st: &tonic::Status) -> PluginError {
        let e = grpc::from_status(st, CTX, &auth::redactor(auth));
        if matches!(e, PluginError::Auth(_)) {
            self.auth.invalidate(auth).await;
        }
        e
    }

    fn voice(&self, s: &Settings) -> pb::VoiceSelectionParams {
        pb::VoiceSelectionParams {
            language_code: s.language.clone(),
            name: s.voice.clone(),
            ..Default::default()
        }
    }

    async fn synthesize_streaming(
        &self,
        cfg: &TtsSessionConfig,
        s: &Settings,
        auth: &Auth,
        text: &str,
        out: &AudioSink,
    ) -> Result<(), PluginError> {
        use pb::streaming_synthesize_request::StreamingRequest;
        if !cfg.emotion.is_empty() {
            tracing::debug!(
                "google tts: Chirp 3 HD streaming takes no SSML prosody; emotion ignored"
            );
        }
        let (mut tx, rx) = mpsc::channel(4);
        let first = pb::StreamingSynthesizeRequest {
            streaming_request: Some(StreamingRequest::StreamingConfig(
                pb::StreamingSynthesizeConfig {
                    voice: Some(self.voice(s)),
                    streaming_audio_config: Some(pb::StreamingAudioConfig {
                        audio_encoding: streaming_encoding(cfg.encoding) as i32,
                        sample_rate_hertz: cfg.sample_rate as i32,
                        speaking_rate: rate(cfg, 2.0),
                    }),
                    custom_pronunciations: None,
                },
            )),
        };
        let pieces: Vec<String> = split_text(text, s.max_input)
            .into_iter()
            .map(str::to_owned)
            .collect();
        // Config, the text, then the end of the stream (the sender is dropped).
        let feed = async move {
            let _ = tx.send(first).await;
            for p in pieces {
                let msg = pb::StreamingSynthesizeRequest {
                    streaming_request: Some(StreamingRequest::Input(pb::StreamingSynthesisInput {
                        prompt: None,
                        input_source: Some(pb::streaming_synthesis_input::InputSource::Text(p)),
                    })),
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        };
        tokio::spawn(feed);
        let req = self.request(auth, s, rx, None).await?;
        let mut client = self.client(s)?;
        let timed_out = || PluginError::Timeout(format!("{CTX}: no audio within {:?}", s.timeout));
        let mut stream = match tokio::time::timeout(s.timeout, client.streaming_synthesize(req))
            .await
            .map_err(|_| timed_out())?
        {
            Ok(r) => r.into_inner(),
            Err(st) => return Err(self.status_error(auth, &st).await),
        };
        let mut strip = wav::HeaderStrip::new();
        loop {
            // `timeout_ms` bounds each wait for the next chunk (a silent server).
            let next = tokio::time::timeout(s.timeout, stream.message())
                .await
                .map_err(|_| timed_out())?;
            match next {
                Ok(Some(m)) => {
                    let audio = strip
                        .push(m.audio_content)
                        .map_err(|e| PluginError::Transient(format!("{CTX}: {e}")))?;
                    if let Some(a) = audio {
                        // An Err means cancelled or hung up: dropping `stream` cancels the call.
                        out.send(a).await?;
                    }
                }
                Ok(None) => return Ok(()),
                Err(st) => return Err(self.status_error(auth, &st).await),
            }
        }
    }

    async fn synthesize_unary(
        &self,
        cfg: &TtsSessionConfig,
        s: &Settings,
        auth: &Auth,
        text: &str,
        out: &AudioSink,
    ) -> Result<(), PluginError> {
        let chirp = is_streaming_voice(&s.voice);
        let mut client = self.client(s)?;
        for piece in split_text(text, s.max_input) {
            let input = match (chirp, emotion_ssml(piece, &cfg.emotion)) {
                (false, Some(ssml)) if ssml.len() <= MAX_INPUT_BYTES => {
                    pb::synthesis_input::InputSource::Ssml(ssml)
                }
                (true, Some(_)) => {
                    tracing::debug!(
                        "google tts: Chirp 3 HD voices take no SSML prosody; emotion ignored"
                    );
                    pb::synthesis_input::InputSource::Text(piece.to_owned())
                }
                _ => pb::synthesis_input::InputSource::Text(piece.to_owned()),
            };
            let msg = pb::SynthesizeSpeechRequest {
                input: Some(pb::SynthesisInput {
                    input_source: Some(input),
                    ..Default::default()
                }),
                voice: Some(self.voice(s)),
                audio_config: Some(pb::AudioConfig {
                    audio_encoding: unary_encoding(cfg.encoding) as i32,
                    speaking_rate: rate(cfg, 4.0),
                    pitch: s.pitch,
                    volume_gain_db: s.volume_gain_db,
                    sample_rate_hertz: cfg.sample_rate as i32,
                    effects_profile_id: s.effects.clone(),
                }),
                advanced_voice_options: None,
            };
            let req = self.request(auth, s, msg, Some(s.timeout)).await?;
            let answer = tokio::time::timeout(s.timeout, client.synthesize_speech(req))
                .await
                .map_err(|_| {
                    PluginError::Timeout(format!("{CTX}: no answer within {:?}", s.timeout))
                })?;
            let audio = match answer {
                Ok(r) => r.into_inner().audio_content,
                Err(st) => return Err(self.status_error(auth, &st).await),
            };
            let audio = if matches!(
                cfg.encoding,
                AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Alaw
            ) {
                wav::strip(audio).map_err(|e| PluginError::Transient(format!("{CTX}: {e}")))?
            } else {
                audio
            };
            let mut rest = audio;
            while !rest.is_empty() {
                let chunk = rest.split_to(rest.len().min(SINK_CHUNK));
                out.send(chunk).await?;
            }
        }
        Ok(())
    }

    async fn list_voices(
        &self,
        auth: &Auth,
        pc: &PluginConfig,
    ) -> Result<Vec<VoiceInfo>, PluginError> {
        let endpoint = common::endpoint_override(pc)?.unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let ch = self.channels.get(
            &endpoint,
            Duration::from_secs(10),
            Some(Duration::from_secs(30)),
            CTX,
        )?;
        let mut client = TextToSpeechClient::new(ch).max_decoding_message_size(MAX_RESPONSE);
        let mut req = tonic::Request::new(pb::ListVoicesRequest {
            language_code: pc.string("voices_language")?.unwrap_or_default(),
        });
        req.set_timeout(Duration::from_secs(30));
        // (ListVoices is small; the server-side deadline suffices.)
        self.auth
            .authorize(auth, common::user_project(pc)?.as_deref(), &mut req)
            .await?;
        self.voice_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = match client.list_voices(req).await {
            Ok(r) => r.into_inner(),
            Err(st) => return Err(self.status_error(auth, &st).await),
        };
        Ok(resp.voices.into_iter().map(voice_info).collect())
    }
}

/// Maps a `Voice` to the gateway's shape.
fn voice_info(v: pb::Voice) -> VoiceInfo {
    let gender = match pb::SsmlVoiceGender::try_from(v.ssml_gender) {
        Ok(pb::SsmlVoiceGender::Male) => "male",
        Ok(pb::SsmlVoiceGender::Female) => "female",
        Ok(pb::SsmlVoiceGender::Neutral) => "neutral",
        _ => "",
    };
    VoiceInfo {
        id: v.name.clone(),
        sample: String::new(),
        name: v.name,
        accent: String::new(),
        gender: gender.to_owned(),
        language: v.language_codes.into_iter().next().unwrap_or_default(),
    }
}

#[async_trait::async_trait]
impl Plugin for GoogleTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("google", "Google Cloud Text-to-Speech")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["google-tts", "gcp"])
            .description(
                "Google Cloud Text-to-Speech v1 over gRPC (streaming for Chirp 3 HD voices)",
            )
            .credentials(auth::CREDENTIAL_FIELDS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
                AudioEncoding::Opus,
                AudioEncoding::Mp3,
            ])
            // AudioConfig.sample_rate_hertz: the service resamples to the rate asked for.
            .sample_rate_range(8_000, 48_000)
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        *lock(&self.init) = config.clone();
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for GoogleTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        self.session(config).await.map(|_| ())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (s, auth) = self.session(config).await?;
        let text = request.text.trim();
        if text.is_empty() {
            return Ok(());
        }
        if s.streaming {
            self.synthesize_streaming(config, &s, &auth, text, &out)
                .await
        } else {
            self.synthesize_unary(config, &s, &auth, text, &out).await
        }
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let init = lock(&self.init).clone();
        let ttl = Duration::from_secs(init.u64("voices_ttl_secs")?.unwrap_or(300));
        if let Some((at, v)) = lock(&self.voices).as_ref() {
            if at.elapsed() < ttl {
                return Ok(v.clone());
            }
        }
        // voices() only receives an API key: otherwise use the last session's credentials, or
        // those in the instance's config section.
        let last = lock(&self.last_auth).clone();
        let (auth, pc) = match api_key.filter(|k| !k.is_empty()) {
            Some(k) => (Auth::ApiKey(k), init.clone()),
            None => match last {
                Some(a) => a,
                None => {
                    let mut creds = waav_plugin_api::Credentials::new();
                    for f in auth::CREDENTIAL_FIELDS {
                        if let Some(v) = init.secret(f.name)? {
                            creds.set(f.name, v);
                        }
                    }
                    (self.auth.resolve(None, &creds, &init).await?, init.clone())
                }
            },
        };
        let voices = self.list_voices(&auth, &pc).await?;
        *lock(&self.voices) = Some((Instant::now(), voices.clone()));
        Ok(voices)
    }
}
