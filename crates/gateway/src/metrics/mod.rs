//! Prometheus metrics.
//!
//! Hot-path handles (per-frame counters) are registered once per process and kept in a static, so
//! counting an audio frame is one atomic add with no lookup, lock or allocation.
//!
//! The recorder is built with `build_recorder`, which (unlike the exporter's `install`) starts no
//! upkeep task, and without upkeep histogram samples pile up between scrapes. So a plain thread
//! (named `waav-metrics-upkeep`) runs [`PrometheusHandle::run_upkeep`] every [`UPKEEP_INTERVAL`]:
//! a thread rather than a tokio task because the recorder is created lazily, possibly outside a
//! runtime (CLI commands, tests), and must outlive any one runtime.

use metrics::{counter, gauge, histogram, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How often the recorder's upkeep runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Upkeep passes so far; the upkeep thread holds it weakly and stops once it is dropped.
    _upkeep_runs: Arc<AtomicU64>,
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
            let upkeep_runs = Arc::new(AtomicU64::new(0));
            spawn_upkeep(
                handle.clone(),
                UPKEEP_INTERVAL,
                Arc::downgrade(&upkeep_runs),
            );
            Metrics {
                handle,
                _upkeep_runs: upkeep_runs,
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

/// Runs `handle.run_upkeep()` every `every` while `runs` is alive, counting passes in it.
fn spawn_upkeep(
    handle: PrometheusHandle,
    every: Duration,
    runs: Weak<AtomicU64>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("waav-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(runs) = runs.upgrade() else { break };
            handle.run_upkeep();
            runs.fetch_add(1, Ordering::Relaxed);
        });
    spawned
        .inspect_err(|e| {
            tracing::warn!(error = %e, "metrics upkeep thread not started; histograms will grow");
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_runs_periodically_and_stops_with_its_owner() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let runs = Arc::new(AtomicU64::new(0));
        let thread = spawn_upkeep(handle, Duration::from_millis(5), Arc::downgrade(&runs)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::Relaxed) < 3 {
            assert!(std::time::Instant::now() < deadline, "upkeep did not run");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The thread holds only a Weak: with the counter gone it ends instead of leaking.
        drop(runs);
        while !thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "upkeep thread still running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_recorder_has_an_upkeep_thread() {
        let _ = Metrics::get();
        // Thread names are cut to 15 bytes in /proc; a new thread names itself once it runs, so
        // look for a while rather than once.
        let named = || {
            std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks.flatten().any(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == "waav-metrics-up")
                    })
                })
                .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !named() {
            assert!(std::time::Instant::now() < deadline, "no upkeep thread");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
