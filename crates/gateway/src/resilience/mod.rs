//! Provider resilience: a circuit breaker per plugin instance (process-wide) and the failover
//! chain a session walks when its provider fails to connect, fails mid-stream or is behind an
//! open breaker.

pub mod breaker;

use crate::config::{ResilienceConfig, Strategy};
use crate::registry::Registry;
use breaker::{Breaker, BreakerSettings, BreakerState, Transition};
use metrics::counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use waav_plugin_api::{PluginError, PluginKind};

/// Every instance's breaker, built once at start.
#[derive(Debug)]
pub struct Resilience {
    breakers: HashMap<(PluginKind, &'static str), Breaker>,
    /// Per instance: an EWMA of TTS first byte / STT first result, in µs as `f64` bits (0: not
    /// measured yet).
    latency: HashMap<(PluginKind, &'static str), AtomicU64>,
    config: ResilienceConfig,
}

/// Weight of the newest observation in the latency EWMA.
const EWMA_ALPHA: f64 = 0.2;

impl Resilience {
    /// A closed breaker for every STT, TTS and realtime instance of `registry`.
    pub fn new(registry: &Registry, config: &ResilienceConfig) -> Self {
        let settings = BreakerSettings {
            failures: config.breaker_failures.max(1),
            window: Duration::from_secs(config.breaker_window_secs.max(1)),
            open_for: Duration::from_secs(config.breaker_open_secs.max(1)),
            probes: 1,
        };
        let breakers = registry
            .entries()
            .iter()
            .filter(|e| {
                matches!(
                    e.handle.kind(),
                    PluginKind::Stt | PluginKind::Tts | PluginKind::Realtime
                )
            })
            .map(|e| ((e.handle.kind(), e.id), Breaker::new(settings)))
            .collect::<HashMap<_, _>>();
        let latency = breakers.keys().map(|&k| (k, AtomicU64::new(0))).collect();
        Self {
            breakers,
            latency,
            config: config.clone(),
        }
    }

    /// Folds one first-byte / first-result latency of instance `id` into its EWMA.
    pub fn observe(&self, kind: PluginKind, id: &'static str, latency: Duration) {
        let Some(cell) = self.latency.get(&(kind, id)) else {
            return;
        };
        let x = latency.as_secs_f64() * 1e6;
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            let old = f64::from_bits(bits);
            let new = if bits == 0 {
                x
            } else {
                old + EWMA_ALPHA * (x - old)
            };
            Some(new.max(f64::MIN_POSITIVE).to_bits())
        });
    }

    /// Instance `id`'s latency EWMA, if it was measured.
    pub fn latency(&self, kind: PluginKind, id: &str) -> Option<Duration> {
        self.latency
            .iter()
            .find(|((k, i), _)| *k == kind && *i == id)
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .filter(|&bits| bits != 0)
            .map(|bits| Duration::from_secs_f64(f64::from_bits(bits) / 1e6))
    }

    /// How `primary`'s chain is walked.
    pub fn strategy(&self, kind: PluginKind, primary: &str) -> Strategy {
        self.chain(kind, primary)
            .map_or(Strategy::Ordered, crate::config::Chain::strategy)
    }

    fn chain(&self, kind: PluginKind, primary: &str) -> Option<&crate::config::Chain> {
        let map = match kind {
            PluginKind::Stt => &self.config.failover.stt,
            PluginKind::Tts => &self.config.failover.tts,
            _ => return None,
        };
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(primary))
            .map(|(_, v)| v)
    }

    /// Whether a new session may use instance `id` now.
    pub fn allow(&self, kind: PluginKind, id: &'static str) -> bool {
        self.breakers.get(&(kind, id)).is_none_or(Breaker::allow)
    }

    /// The state of instance `id`'s breaker.
    pub fn state(&self, kind: PluginKind, id: &str) -> Option<BreakerState> {
        self.breakers
            .iter()
            .find(|((k, i), _)| *k == kind && *i == id)
            .map(|(_, b)| b.state())
    }

    /// Records a session's connect or run outcome for instance `id`.
    pub fn record(&self, kind: PluginKind, id: &'static str, outcome: Result<(), &PluginError>) {
        let Some(b) = self.breakers.get(&(kind, id)) else {
            return;
        };
        let transition = match outcome {
            Ok(()) => b.on_success(),
            Err(e) => {
                if breaker::counts(e) {
                    counter!("waav_provider_failures_total", "provider" => id, "kind" => kind.as_str(), "category" => e.code()).increment(1);
                }
                b.on_failure(e)
            }
        };
        if let Some(t) = transition {
            let to = match t {
                Transition::Opened => "open",
                Transition::Closed => "closed",
            };
            counter!("waav_breaker_transitions_total", "provider" => id, "kind" => kind.as_str(), "to" => to)
                .increment(1);
            tracing::warn!(
                provider = id,
                kind = kind.as_str(),
                to,
                "circuit breaker changed state"
            );
        }
    }

    /// The fallbacks configured for `primary` (names as configured).
    pub fn fallbacks(&self, kind: PluginKind, primary: &str) -> &[String] {
        self.chain(kind, primary)
            .map_or(&[], crate::config::Chain::providers)
    }

    /// Reopenings of a dropped STT provider a session may spend before it fails over.
    pub fn stt_reconnects(&self) -> u8 {
        u8::try_from(self.config.stt_reconnects).unwrap_or(u8::MAX)
    }

    /// How long an STT provider may owe a result after a speech boundary.
    pub fn stt_silent(&self) -> Option<Duration> {
        (self.config.stt_silent_ms > 0).then(|| Duration::from_millis(self.config.stt_silent_ms))
    }

    /// The TTS silent-failure bounds.
    pub fn tts_watchdogs(&self) -> TtsWatchdogs {
        TtsWatchdogs {
            first_byte: (self.config.tts_first_byte_ms > 0)
                .then(|| Duration::from_millis(self.config.tts_first_byte_ms)),
            silent_peak: u16::try_from(self.config.tts_silent_peak).unwrap_or(i16::MAX as u16),
        }
    }

    /// Whether sessions hedge their TTS first byte unless they say otherwise.
    pub fn tts_hedge(&self) -> bool {
        self.config.tts_hedge
    }

    /// How long a TTS request waits for its first byte before the hedge starts.
    pub fn tts_hedge_delay(&self) -> Duration {
        Duration::from_millis(self.config.tts_hedge_delay_ms)
    }

    /// Audio kept for replay after an STT failover.
    pub fn stt_replay(&self) -> Duration {
        Duration::from_millis(self.config.stt_replay_ms)
    }

    /// How long a session stays on a fallback before it tries its own provider again; `None`:
    /// for good.
    pub fn recover_after(&self) -> Option<Duration> {
        (self.config.recover_after_ms > 0)
            .then(|| Duration::from_millis(self.config.recover_after_ms))
    }
}

/// Bounds on a TTS provider that fails without an error: no first byte in time, or a request
/// that ends with no audio or only silence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtsWatchdogs {
    /// No first audio byte within this of the request reaching the head of the queue.
    pub first_byte: Option<Duration>,
    /// PCM peaks at or below this amplitude are silence.
    pub silent_peak: u16,
}

/// A watchdog trip counted on `/metrics`: a failure no error reported.
pub fn count_watchdog(kind: PluginKind, provider: &'static str, watchdog: &'static str) {
    counter!("waav_watchdog_trips_total", "kind" => kind.as_str(), "provider" => provider, "watchdog" => watchdog)
        .increment(1);
}

/// A provider reopened after a drop, counted on `/metrics`.
pub fn count_reconnect(kind: PluginKind, provider: &'static str) {
    counter!("waav_reconnects_total", "kind" => kind.as_str(), "provider" => provider).increment(1);
}

/// A session's return to its own provider, counted on `/metrics`.
pub fn count_recovery(kind: PluginKind, to: &'static str) {
    counter!("waav_recoveries_total", "kind" => kind.as_str(), "provider" => to).increment(1);
}

/// A failover counted on `/metrics`.
pub fn count_failover(kind: PluginKind, from: &'static str, to: &'static str) {
    counter!("waav_failovers_total", "kind" => kind.as_str(), "from" => from, "to" => to)
        .increment(1);
}

/// A hedged TTS race decided, counted on `/metrics` for both sides: `outcome` is `won` for the
/// instance whose first byte came first (or that alone produced audio), `lost` for the other.
pub fn count_hedge(provider: &'static str, outcome: &'static str) {
    counter!("waav_tts_hedges_total", "provider" => provider, "outcome" => outcome).increment(1);
}
