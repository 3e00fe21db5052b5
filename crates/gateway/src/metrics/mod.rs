//! Prometheus metrics.
//!
//! Hot-path handles (per-frame counters) are registered once per process and kept in a static, so
//! counting an audio frame is one atomic add with no lookup, lock or allocation.

use metrics::{counter, gauge, histogram, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

const CLIENT_TYPES: [&str; 7] = [
    "config",
    "speak",
    "clear",
    "send_message",
    "sip_transfer",
    "auth",
    "custom",
];
const SERVER_TYPES: [&str; 8] = [
    "ready",
    "stt_result",
    "tts_playback_complete",
    "error",
    "sip_transfer_error",
    "auth_required",
    "authenticated",
    "plugin_response",
];

/// The gateway's metric handles.
pub struct Metrics {
    handle: PrometheusHandle,
    /// Open `/ws` sessions.
    pub active_sessions: Gauge,
    /// Binary frames received.
    pub audio_frames_in: Counter,
    /// Audio bytes received.
    pub audio_bytes_in: Counter,
    /// Binary frames sent.
    pub audio_frames_out: Counter,
    /// Audio bytes sent.
    pub audio_bytes_out: Counter,
    /// TTS cache hits.
    pub cache_hits: Counter,
    /// TTS cache misses.
    pub cache_misses: Counter,
    messages_in: [Counter; 7],
    messages_out: [Counter; 8],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The process-wide metrics (installs the Prometheus recorder on first use).
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            Metrics {
                handle,
                active_sessions: gauge!("waav_active_sessions"),
                audio_frames_in: counter!("waav_audio_frames_in_total"),
                audio_bytes_in: counter!("waav_audio_bytes_in_total"),
                audio_frames_out: counter!("waav_audio_frames_out_total"),
                audio_bytes_out: counter!("waav_audio_bytes_out_total"),
                cache_hits: counter!("waav_tts_cache_hits_total"),
                cache_misses: counter!("waav_tts_cache_misses_total"),
                messages_in: CLIENT_TYPES
                    .map(|t| counter!("waav_ws_messages_in_total", "type" => t)),
                messages_out: SERVER_TYPES
                    .map(|t| counter!("waav_ws_messages_out_total", "type" => t)),
            }
        })
    }

    /// Counts a client message by `type`.
    pub fn message_in(&self, kind: &str) {
        if let Some(i) = CLIENT_TYPES.iter().position(|t| *t == kind) {
            self.messages_in[i].increment(1);
        }
    }

    /// Counts a server message by `type`.
    pub fn message_out(&self, kind: &str) {
        if let Some(i) = SERVER_TYPES.iter().position(|t| *t == kind) {
            self.messages_out[i].increment(1);
        }
    }

    /// Counts an error sent to a client, by code.
    pub fn error(&self, code: &'static str) {
        counter!("waav_errors_total", "code" => code).increment(1);
    }

    /// Records a provider latency (`connect`, `first_result`, `tts_first_byte`).
    pub fn provider_latency(&self, provider: &'static str, what: &'static str, d: Duration) {
        histogram!("waav_provider_latency_seconds", "provider" => provider, "stage" => what)
            .record(d.as_secs_f64());
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
