//! Provider chains: a session's provider, then its fallbacks (the client's `fallback` list, else
//! `resilience.failover`), walked at connect and again when the provider fails mid-stream.
//! Instances behind an open circuit breaker are skipped; every outcome feeds the breakers.

use super::errors::WsError;
use super::protocol::{SttConfig, TtsConfig};
use crate::resilience::breaker::counts;
use crate::state::AppState;
use std::collections::VecDeque;
use std::future::Future;
use waav_plugin_api::PluginKind;

/// The fallbacks of a session's `primary` provider of `kind`, in order: the client's list when
/// it sent one, else the configured chain.
pub(crate) fn fallbacks(
    state: &AppState,
    kind: PluginKind,
    primary: &str,
    client: Option<&[String]>,
) -> VecDeque<String> {
    client
        .unwrap_or_else(|| state.resilience.fallbacks(kind, primary))
        .iter()
        .cloned()
        .collect()
}

/// Orders `names` (the primary, then its fallbacks) as `primary`'s configured chain says: with
/// `strategy: fastest`, by each instance's latency EWMA, lowest first, never-measured first
/// (so every instance gets measured); otherwise unchanged. The order is stable among equals.
pub(crate) fn order(
    state: &AppState,
    kind: PluginKind,
    primary: &str,
    names: &mut VecDeque<String>,
) {
    if state.resilience.strategy(kind, primary) != crate::config::Strategy::Fastest {
        return;
    }
    let latency = |entry: &String| {
        // A TTS entry may be `provider:voice`.
        let name = entry.split_once(':').map_or(entry.as_str(), |(n, _)| n);
        state
            .registry
            .find(kind, name)
            .and_then(|e| state.resilience.latency(kind, e.id))
            .unwrap_or_default()
    };
    names.make_contiguous().sort_by_key(latency);
}

/// The session's STT settings for fallback `name`: the model and the client's keys are the
/// primary's, so the fallback uses its own defaults and the server's credentials.
pub(crate) fn stt_for(cfg: &SttConfig, name: &str) -> SttConfig {
    SttConfig {
        provider: name.to_owned(),
        model: String::new(),
        api_key: None,
        credentials: None,
        ..cfg.clone()
    }
}

/// The session's TTS settings for fallback `entry` (`provider` or `provider:voice`).
pub(crate) fn tts_for(cfg: &TtsConfig, entry: &str) -> TtsConfig {
    let (name, voice) = match entry.split_once(':') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (entry, None),
    };
    TtsConfig {
        provider: name.to_owned(),
        model: String::new(),
        voice_id: voice,
        api_key: None,
        credentials: None,
        ..cfg.clone()
    }
}

/// Opens the first provider of `names` that works; `open` gets each name and whether it is the
/// session's own provider (the first entry named `primary`, wherever a strategy put it). A non-provider error (bad config,
/// unknown name) of the primary is the session's to see, not a reason to fail over; for
/// fallbacks it only skips them.
pub(crate) async fn open_first<T, F, Fut>(
    state: &AppState,
    kind: PluginKind,
    role: &'static str,
    names: &mut VecDeque<String>,
    primary: Option<&str>,
    mut open: F,
) -> Result<(T, String), WsError>
where
    F: FnMut(String, bool) -> Fut,
    Fut: Future<Output = Result<T, WsError>>,
{
    let mut last = None;
    let mut primary_left = primary;
    while let Some(name) = names.pop_front() {
        let primary = primary_left == Some(name.as_str());
        if primary {
            primary_left = None;
        }
        // A TTS entry may be `provider:voice`: its breaker is the provider's.
        let instance = name.split_once(':').map_or(name.as_str(), |(n, _)| n);
        let id = state.registry.find(kind, instance).map(|e| e.id);
        if let Some(id) = id.filter(|&id| !state.resilience.allow(kind, id)) {
            tracing::info!(
                provider = id,
                role,
                "skipping a provider whose circuit is open"
            );
            last = Some(WsError::CircuitOpen { role, provider: id });
            continue;
        }
        match open(name.clone(), primary).await {
            Ok(t) => {
                if let Some(id) = id {
                    state.resilience.record(kind, id, Ok(()));
                }
                return Ok((t, name));
            }
            Err(e) => {
                let failure = e.provider_failure();
                if let (Some(id), Some(f)) = (id, &failure) {
                    state.resilience.record(kind, id, Err(f));
                }
                let retryable = failure.as_ref().is_some_and(counts);
                if primary && !retryable {
                    return Err(e);
                }
                tracing::warn!(provider = %name, role, error = %e, "provider failed; trying the next of its chain");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(WsError::InvalidConfig {
        section: "fallback",
        message: "no provider to try".into(),
    }))
}
