//! REST: `POST /speak`, `GET /voices`, `GET /metrics`.

use crate::cache::{CacheKey, CachedAudio};
use crate::isolation::guard;
use crate::metrics::Metrics;
use crate::registry::LookupError;
use crate::session::errors::WsError;
use crate::session::protocol::TtsConfig;
use crate::session::tts::{session_config, timeouts, TtsProvider, TtsSignal};
use crate::state::SharedState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;
use waav_plugin_api::{AudioFormat, PluginError, PluginHandle, SpeakRequest, TtsEvent, TtsInput};

/// Largest `text` accepted by `POST /speak`.
pub const MAX_REST_TEXT: usize = 10 * 1024;
/// Largest audio `POST /speak` collects before it gives up (the whole body is held in memory).
pub const MAX_REST_AUDIO: usize = 64 * 1024 * 1024;

#[derive(serde::Deserialize)]
struct SpeakBody {
    text: String,
    tts_config: TtsConfig,
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn status_of(e: &WsError) -> StatusCode {
    match e {
        WsError::InvalidConfig { .. } | WsError::Lookup(LookupError::Unsupported(_)) => {
            StatusCode::BAD_REQUEST
        }
        WsError::ProviderTimeout
        | WsError::Provider {
            error: PluginError::Timeout(_),
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /speak {text, tts_config}` → the whole audio.
pub async fn speak(State(state): State<SharedState>, body: Bytes) -> Response {
    let req: SpeakBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("Invalid request body: {e}"),
            )
        }
    };
    if req.text.trim().is_empty() {
        return fail(StatusCode::BAD_REQUEST, "Text cannot be empty");
    }
    if req.text.len() > MAX_REST_TEXT {
        return fail(
            StatusCode::BAD_REQUEST,
            format!(
                "Text too long: {} bytes (max {MAX_REST_TEXT} bytes)",
                req.text.len()
            ),
        );
    }
    match synthesize(&state, &req.text, &req.tts_config).await {
        Ok((audio, cfg)) => {
            let enc = cfg.encoding;
            let audio = match enc {
                // The whole file: a header with its real length.
                waav_plugin_api::AudioEncoding::Wav => {
                    let len = u32::try_from(audio.len()).unwrap_or(u32::MAX - 36);
                    let mut file =
                        waav_plugin_api::codec::wav_header(cfg.sample_rate, 1, len).to_vec();
                    file.extend_from_slice(&audio);
                    Bytes::from(file)
                }
                _ => audio,
            };
            let headers = [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(enc.content_type()),
                ),
                (
                    HeaderName::from_static("x-audio-format"),
                    HeaderValue::from_static(enc.as_str()),
                ),
                (
                    HeaderName::from_static("x-sample-rate"),
                    HeaderValue::from(cfg.sample_rate),
                ),
            ];
            (StatusCode::OK, headers, audio).into_response()
        }
        Err(e) => fail(status_of(&e), e.to_string()),
    }
}

async fn synthesize(
    state: &SharedState,
    text: &str,
    cfg: &TtsConfig,
) -> Result<(Bytes, AudioFormat), WsError> {
    let (connect_timeout, request_timeout) = timeouts(cfg, &state.config.session);

    // Cache first: resolving the name gives the canonical id the key is made of.
    let session = session_config(cfg)?;
    let resolved = state.registry.tts_with(
        &cfg.provider,
        crate::registry::ClientCredentials::new(&cfg.api_key, &cfg.credentials),
    )?;
    let provider_id = resolved.entry.id;
    // The key is part of the cache key (credential scope), so set it as the session will.
    let session = session
        .with_api_key(resolved.api_key)
        .with_credentials(resolved.credentials);
    let client = AudioFormat {
        encoding: session.encoding,
        sample_rate: session.sample_rate,
        channels: 1,
    };
    // Pre-TTS processors first: the key is made of the text actually spoken.
    let names = cfg
        .pre_pipeline
        .as_ref()
        .unwrap_or(&state.registry.pipelines().default_tts_pre);
    let mut text = text.to_owned();
    if let Some(mut pre) =
        crate::pipeline::TextPipeline::build(&state.registry, names, waav_plugin_api::Stage::PreTts)
            .map_err(|message| WsError::InvalidConfig {
                section: "tts_config",
                message,
            })?
    {
        // A failing processor is disabled (logged, counted) and the text goes on without it.
        let _ = pre.run(&mut text);
    }
    let text = text.as_str();
    let key = CacheKey::new(provider_id, &session, client, text);
    let m = Metrics::get();
    if let Some(hit) = state.cache.get(key).await {
        m.cache_hits.increment(1);
        return Ok((hit.data.clone(), client));
    }
    m.cache_misses.increment(1);

    let spoken = crate::session::tts::spoken_text(&session, text.to_owned())
        .await
        .map_err(|error| WsError::Provider {
            role: "TTS",
            provider: provider_id,
            error,
        })?;
    let frame_ms = state.config.session.tts_frame_ms;
    let mut provider =
        TtsProvider::open(&state.registry, cfg, connect_timeout, 4, frame_ms).await?;
    // The response carries its own header with the real length.
    let _ = provider.audio.take_header();
    let id = provider.provider;
    let request = SpeakRequest {
        id: 1,
        text: spoken,
        flush: true,
    };
    let collect = async {
        // A fresh session's input has room: this never waits on a healthy provider.
        let stall = Duration::from_millis(state.config.session.provider_stall_ms);
        if provider
            .send(TtsInput::Speak(request), stall)
            .await
            .is_err()
        {
            return Err(PluginError::Transient(
                "provider session closed or not reading".into(),
            ));
        }
        let mut audio = Vec::new();
        let mut frame = 0;
        let mut frames = Vec::new();
        loop {
            let done = match provider.next().await {
                TtsSignal::Event(TtsEvent::Audio { data, .. }) => {
                    provider.audio.push(data, &mut |f| frames.push(f));
                    false
                }
                TtsSignal::Event(TtsEvent::Done { .. }) => {
                    provider.audio.flush(&mut |f| frames.push(f));
                    true
                }
                TtsSignal::Event(TtsEvent::Error { error, .. }) => return Err(error),
                TtsSignal::Ended(r) => {
                    return Err(r.err().unwrap_or_else(|| {
                        PluginError::Transient("provider ended before finishing".into())
                    }))
                }
            };
            for f in frames.drain(..) {
                if audio.len() + f.len() > MAX_REST_AUDIO {
                    return Err(PluginError::Permanent(format!(
                        "audio longer than {} MiB; use /ws for long text",
                        MAX_REST_AUDIO >> 20
                    )));
                }
                frame = frame.max(f.len());
                audio.extend_from_slice(&f);
            }
            if done {
                return Ok((audio, frame));
            }
        }
    };
    let what = format!("TTS provider {id} synthesis");
    let result = guard(&what, request_timeout, collect).await;
    provider.close(Duration::from_secs(1)).await;
    let (audio, frame) = result.map_err(|error| WsError::Provider {
        role: "TTS",
        provider: id,
        error,
    })?;
    let audio = Bytes::from(audio);
    state.cache.insert(
        key,
        CachedAudio {
            data: audio.clone(),
            frame_bytes: frame,
        },
    );
    Ok((audio, client))
}

/// `GET /voices`: voices of every TTS provider that is configured and answers.
pub async fn voices(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let lookups = state.registry.entries().iter().filter_map(|e| {
        let PluginHandle::Tts(p) = &e.handle else {
            return None;
        };
        let ready = e.state() == crate::registry::PluginState::Ready;
        let keyed = e
            .credentials
            .first_missing(&e.info.credential_fields())
            .is_none();
        (ready && keyed).then(|| {
            let p = p.clone();
            let key = e
                .credentials
                .get(waav_plugin_api::credentials::API_KEY)
                .cloned();
            let id = e.id;
            async move {
                let what = format!("voices of {id}");
                (
                    id,
                    guard(&what, Duration::from_secs(10), p.voices(key)).await,
                )
            }
        })
    });
    let mut out = serde_json::Map::new();
    for (id, result) in futures::future::join_all(lookups).await {
        match result {
            Ok(voices) => {
                out.insert(id.to_owned(), serde_json::json!(voices));
            }
            Err(e) => tracing::warn!(provider = id, error = %e, "voice listing failed"),
        }
    }
    Json(serde_json::Value::Object(out))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Metrics::get().render(),
    )
        .into_response()
}
