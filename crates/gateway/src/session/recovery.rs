//! Returning to the session's own provider after a failover.
//!
//! A session moved to a fallback keeps the time it left. Once `resilience.recover_after_ms` has
//! passed, at the next utterance boundary (STT: a final transcript; TTS: a finished request) and
//! only if the own provider's breaker lets a session through (a half-open breaker hands this
//! attempt its probe), the own provider is opened in the background while the fallback keeps
//! serving. STT switches as soon as it is open, replaying the audio since the last final, so
//! nothing said meanwhile is lost; TTS switches when nothing is queued, so no request is split
//! between voices. A failed attempt counts against the breaker and is tried again one period
//! later. Either way the client is told with `provider_switched`.

use super::errors::WsError;
use super::protocol::ServerMessage;
use super::stt::SttLink;
use super::tts::TtsLink;
use super::{Session, CLOSE_GRACE};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waav_plugin_api::PluginKind;

/// The reason `provider_switched` gives when a session returns.
const REASON: &str = "the session's own provider is available again";

/// A background open of the session's own provider, aborted when dropped (the session ended or
/// its config was replaced).
#[derive(Debug)]
pub(super) struct Opening<T>(JoinHandle<Result<T, WsError>>);

impl<T> Drop for Opening<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Per-session recovery state (inside the boxed chains: sessions without one pay nothing).
#[derive(Debug, Default)]
pub(super) struct Recovery {
    stt_left: Option<Instant>,
    stt_opening: Option<Opening<SttLink>>,
    tts_left: Option<Instant>,
    tts_opening: Option<Opening<TtsLink>>,
    /// The own TTS provider, open, waiting for the queue to empty.
    tts_ready: Option<TtsLink>,
}

/// A background open's task result, a lost task (it panicked) as a provider failure.
fn joined<T>(r: Result<Result<T, WsError>, tokio::task::JoinError>) -> Result<T, WsError> {
    r.unwrap_or_else(|e| {
        Err(WsError::Provider {
            role: "recovery",
            provider: "unknown",
            error: waav_plugin_api::PluginError::Panicked(e.to_string()),
        })
    })
}

/// A finished background open.
pub(super) enum Reopened {
    Stt(Result<Box<SttLink>, WsError>),
    Tts(Result<Box<TtsLink>, WsError>),
}

/// Resolves when a background open of the session's own provider finishes. Cancel-safe: the
/// handles are polled by reference and taken by [`Session::on_reopened`].
pub(super) async fn next(chains: &mut Option<Box<super::Chains>>) -> Reopened {
    let Some(r) = chains.as_mut().map(|c| &mut c.recovery) else {
        return std::future::pending().await;
    };
    match (r.stt_opening.as_mut(), r.tts_opening.as_mut()) {
        (None, None) => std::future::pending().await,
        (Some(s), None) => Reopened::Stt(joined((&mut s.0).await).map(Box::new)),
        (None, Some(t)) => Reopened::Tts(joined((&mut t.0).await).map(Box::new)),
        (Some(s), Some(t)) => tokio::select! {
            r = &mut s.0 => Reopened::Stt(joined(r).map(Box::new)),
            r = &mut t.0 => Reopened::Tts(joined(r).map(Box::new)),
        },
    }
}

impl Session {
    /// The instance id of the session's own provider of `kind`, if it has a chain.
    fn own_id(&self, kind: PluginKind) -> Option<&'static str> {
        let c = self.chains.as_ref()?;
        let name = match kind {
            PluginKind::Stt => &c.stt.as_ref()?.0.provider,
            _ => &c.tts.as_ref()?.0.provider,
        };
        self.state.registry.find(kind, name).map(|e| e.id)
    }

    /// The providers of a new config are open: a session that got a fallback because its own
    /// provider failed to open (or its breaker was open) is told so, and starts its recovery
    /// clock. A `strategy: fastest` chain picks by latency, not failure: nothing to tell.
    pub(super) async fn connected(&mut self) {
        for kind in [PluginKind::Stt, PluginKind::Tts] {
            let serving = match kind {
                PluginKind::Stt => self.stt.as_ref().map(|l| l.provider),
                _ => self.tts.as_ref().map(TtsLink::provider_id),
            };
            let (Some(own), Some(to)) = (self.own_id(kind), serving) else {
                continue;
            };
            if own == to || self.fastest(kind) {
                continue;
            }
            self.moved_to(kind, to);
            let reason = match self.state.resilience.state(kind, own) {
                Some(crate::resilience::breaker::BreakerState::Open) => {
                    format!("{own}'s circuit breaker is open")
                }
                _ => format!("{own} could not be opened"),
            };
            crate::resilience::count_failover(kind, own, to);
            self.out
                .send(ServerMessage::ProviderSwitched {
                    role: role(kind),
                    from: own,
                    to,
                    reason,
                })
                .await;
        }
    }

    /// Whether the session's `kind` chain orders by latency.
    fn fastest(&self, kind: PluginKind) -> bool {
        let Some(c) = self.chains.as_ref() else {
            return false;
        };
        let (primary, client_chain) = match kind {
            PluginKind::Stt => c
                .stt
                .as_ref()
                .map(|(cfg, _)| (&cfg.provider, cfg.fallback.is_some())),
            _ => c
                .tts
                .as_ref()
                .map(|(cfg, _)| (&cfg.provider, cfg.fallback.is_some())),
        }
        .unzip();
        // A client's own `fallback` list is walked in order (see `open_providers`).
        primary.is_some_and(|p| {
            client_chain != Some(true)
                && self.state.resilience.strategy(kind, p) == crate::config::Strategy::Fastest
        })
    }

    /// The chain moved the session's `kind` provider to `to`: the recovery clock starts when
    /// that is not the session's own provider, and stops when it is.
    pub(super) fn moved_to(&mut self, kind: PluginKind, to: &'static str) {
        let away = self.own_id(kind).is_some_and(|own| own != to);
        let Some(c) = self.chains.as_mut() else {
            return;
        };
        let r = &mut c.recovery;
        let left = if away { Some(Instant::now()) } else { None };
        match kind {
            PluginKind::Stt => {
                r.stt_left = left;
                r.stt_opening = None;
            }
            _ => {
                r.tts_left = left;
                r.tts_opening = None;
                r.tts_ready = None;
            }
        }
    }

    /// Whether the session has been away from its own `kind` provider for long enough, and its
    /// breaker admits a session; then `Some(own id)`. A refused breaker restarts the period.
    fn due(&mut self, kind: PluginKind) -> Option<&'static str> {
        let after = self.state.resilience.recover_after()?;
        let own = self.own_id(kind)?;
        if self.fastest(kind) {
            return None;
        }
        let r = &mut self.chains.as_mut()?.recovery;
        let (left, busy) = match kind {
            PluginKind::Stt => (&mut r.stt_left, r.stt_opening.is_some()),
            _ => (
                &mut r.tts_left,
                r.tts_opening.is_some() || r.tts_ready.is_some(),
            ),
        };
        if busy || left.is_none_or(|t| t.elapsed() < after) {
            return None;
        }
        if !self.state.resilience.allow(kind, own) {
            *left = Some(Instant::now());
            return None;
        }
        Some(own)
    }

    /// A final transcript was sent: an utterance boundary for STT.
    pub(super) fn stt_boundary(&mut self) {
        let Some(own) = self.due(PluginKind::Stt) else {
            return;
        };
        let Some(cfg) = self.chains.as_ref().and_then(|c| c.stt.as_ref()) else {
            return;
        };
        let (state, cfg) = (self.state.clone(), cfg.0.clone());
        let task = tokio::spawn(async move {
            let s = &state.config.session;
            let opened = SttLink::open(
                &state.registry,
                &cfg,
                Duration::from_secs(s.provider_connect_timeout_secs),
                Duration::from_millis(s.provider_stall_ms),
            )
            .await;
            record(&state, PluginKind::Stt, own, &opened);
            opened
        });
        if let Some(c) = self.chains.as_mut() {
            c.recovery.stt_opening = Some(Opening(task));
        }
    }

    /// A TTS request finished, or a new one is about to be queued: an utterance boundary for
    /// TTS. Swaps in an own provider that is ready once nothing is queued, or starts opening it.
    pub(super) async fn tts_boundary(&mut self) {
        let idle = self.tts.as_ref().is_none_or(TtsLink::is_idle);
        if idle {
            let ready = self
                .chains
                .as_mut()
                .and_then(|c| c.recovery.tts_ready.take());
            if let Some(link) = ready {
                self.return_tts(link).await;
                return;
            }
        }
        let Some(own) = self.due(PluginKind::Tts) else {
            return;
        };

        let Some(cfg) = self.chains.as_ref().and_then(|c| c.tts.as_ref()) else {
            return;
        };
        let (state, cfg) = (self.state.clone(), cfg.0.clone());
        let task = tokio::spawn(async move {
            let opened = super::open_tts_link(&state, &cfg).await;
            record(&state, PluginKind::Tts, own, &opened);
            opened
        });
        if let Some(c) = self.chains.as_mut() {
            c.recovery.tts_opening = Some(Opening(task));
        }
    }

    /// A background open finished (the handle's abort on drop is a no-op now).
    pub(super) async fn on_reopened(&mut self, reopened: Reopened) {
        let Some(c) = self.chains.as_mut() else {
            return;
        };
        let r = &mut c.recovery;
        match reopened {
            Reopened::Stt(result) => {
                r.stt_opening = None;
                match result {
                    Ok(link) => self.return_stt(*link).await,
                    Err(e) => {
                        tracing::info!(error = %e, "the session's own STT provider is not back yet");
                        r.stt_left = Some(Instant::now());
                    }
                }
            }
            Reopened::Tts(result) => {
                r.tts_opening = None;
                match result {
                    Ok(link) => {
                        r.tts_ready = Some(*link);
                        self.tts_boundary().await;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "the session's own TTS provider is not back yet");
                        r.tts_left = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Puts the reopened own STT provider in place of the fallback, fed the audio since the
    /// last final (its repeated final is dropped as after a failover).
    async fn return_stt(&mut self, link: SttLink) {
        let mut link = link.with_replay(self.state.resilience.stt_replay());
        let replay = match self.stt.take() {
            Some(mut old) => {
                let replay = old.take_replay();
                let from = old.provider;
                tokio::spawn(old.close(CLOSE_GRACE));
                Some((from, replay))
            }
            None => None,
        };
        let from = replay.as_ref().map_or("none", |r| r.0);
        for chunk in replay.map(|r| r.1).unwrap_or_default() {
            let _ = link.send_audio(chunk).await;
        }
        let to = link.provider;
        self.stt = Some(link);
        if let Some(c) = self.chains.as_mut() {
            c.replayed = true;
            c.recovery.stt_left = None;
        }
        self.switched(PluginKind::Stt, from, to).await;
    }

    /// Puts the reopened own TTS provider in place of the idle fallback.
    async fn return_tts(&mut self, mut link: TtsLink) {
        let from = match self.tts.take() {
            Some(old) => {
                let from = old.provider_id();
                link.continue_stream_of(&old.into_unfinished_and_close());
                from
            }
            None => "none",
        };
        let to = link.provider_id();
        self.tts = Some(link);
        if let Some(c) = self.chains.as_mut() {
            c.recovery.tts_left = None;
        }
        self.switched(PluginKind::Tts, from, to).await;
    }

    async fn switched(&mut self, kind: PluginKind, from: &'static str, to: &'static str) {
        crate::resilience::count_recovery(kind, to);
        tracing::info!(
            role = kind.as_str(),
            from,
            to,
            "session returned to its own provider"
        );
        self.out
            .send(ServerMessage::ProviderSwitched {
                role: role(kind),
                from,
                to,
                reason: REASON.to_owned(),
            })
            .await;
    }
}

/// `provider_switched`'s role name.
fn role(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Stt => "stt",
        _ => "tts",
    }
}

/// Feeds a background open's outcome to the own provider's breaker.
fn record<T>(
    state: &crate::state::AppState,
    kind: PluginKind,
    own: &'static str,
    opened: &Result<T, WsError>,
) {
    match opened {
        Ok(_) => state.resilience.record(kind, own, Ok(())),
        Err(e) => {
            if let Some(f) = e.provider_failure() {
                state.resilience.record(kind, own, Err(&f));
            }
        }
    }
}
