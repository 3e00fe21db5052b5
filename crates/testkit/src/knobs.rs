//! Per-session behaviour knobs of the loopback providers, parsed from the `model` string.

use std::time::Duration;
use waav_plugin_api::PluginError;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Panic inside the provider task.
    Panic,
    /// Report an error event (TTS: for the request; STT: a non-fatal error event).
    Error,
    /// End the task with a fatal error.
    Fatal,
    /// Stop responding (never produce another event, never read again).
    Stall,
    /// Never read any input from the start (the input channel fills and stays full).
    Deaf,
    /// Panic in `connect` (the session factory).
    PanicOnConnect,
    /// Never finish `connect`.
    HangOnConnect,
    /// TTS: finish the request without any audio. STT: read audio, never answer.
    Mute,
}

/// Loopback behaviour for one session.
///
/// Parsed from `model`: comma-separated `key=value` pairs.
/// - `latency_ms=N`: delay before each result (STT) or before the first audio chunk (TTS).
/// - `fault=panic|error|fatal|stall|deaf|panic_on_connect|hang_on_connect|mute`, `after=N`: inject the fault
///   after N results (STT) or on request N (TTS, counting from 1; default 1).
/// - `chunk_ms=N`: TTS audio chunk length (default 20).
/// - `ms_per_char=N`: TTS tone length per character (default 10).
/// - `speech_final=1`: STT finals from a silence gap also mark the end of the turn.
/// - `realtime=1`: TTS paces audio in real time instead of as fast as possible.
/// - `stamp=N`: STT benchmark mode (see [`crate::stamp`]): a report every N frames.
/// - `amplitude=N`: TTS tone amplitude (default 12000; 0 speaks silence).
/// - `sessions=N`: the fault applies to the first N STT sessions (TTS: connect-time faults of
///   the first N sessions) opened with this exact model string in the process, later ones
///   behave (a provider that drops once, then recovers);
///   `tag=...` is ignored, to make the string unique to one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// Delay per result / before first TTS audio.
    pub latency: Duration,
    /// Fault to inject.
    pub fault: Fault,
    /// When to inject it.
    pub after: u32,
    /// TTS chunk length in ms.
    pub chunk_ms: u32,
    /// TTS tone length per character, in ms.
    pub ms_per_char: u32,
    /// STT finals from a silence gap also mark the end of the turn.
    pub speech_final: bool,
    /// TTS paces its audio in real time (one chunk per chunk duration), like a streaming vendor.
    pub realtime: bool,
    /// STT benchmark mode: every audio frame starts with a [`crate::stamp`] header, and every
    /// `stamp` frames the provider reports the frames' transit times (0: off).
    pub stamp: u32,
    /// Sessions (per model string) the fault applies to; 0: all.
    pub sessions: u32,
    /// TTS tone amplitude.
    pub amplitude: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            fault: Fault::None,
            after: 1,
            chunk_ms: 20,
            ms_per_char: 10,
            speech_final: false,
            realtime: false,
            stamp: 0,
            sessions: 0,
            amplitude: 12_000,
        }
    }
}

impl Knobs {
    /// Parses a model string; empty means defaults.
    pub fn parse(model: &str) -> Result<Self, PluginError> {
        let mut k = Self::default();
        for part in model.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| bad(part))?;
            let num = || value.parse::<u32>().map_err(|_| bad(part));
            match key {
                "latency_ms" => k.latency = Duration::from_millis(u64::from(num()?)),
                "after" => k.after = num()?,
                "chunk_ms" => k.chunk_ms = num()?.max(1),
                "ms_per_char" => k.ms_per_char = num()?,
                "speech_final" => k.speech_final = num()? != 0,
                "realtime" => k.realtime = num()? != 0,
                "stamp" => k.stamp = num()?,
                "sessions" => k.sessions = num()?,
                "amplitude" => k.amplitude = num()?.min(32_767),
                "tag" => {}
                "fault" => {
                    k.fault = match value {
                        "none" => Fault::None,
                        "panic" => Fault::Panic,
                        "error" => Fault::Error,
                        "fatal" => Fault::Fatal,
                        "stall" => Fault::Stall,
                        "deaf" => Fault::Deaf,
                        "panic_on_connect" => Fault::PanicOnConnect,
                        "hang_on_connect" => Fault::HangOnConnect,
                        "mute" => Fault::Mute,
                        _ => return Err(bad(part)),
                    }
                }
                _ => return Err(bad(part)),
            }
        }
        Ok(k)
    }

    /// Counts a new session opened with `model`; past the first `sessions` of them the fault
    /// is off.
    pub fn opening_session(mut self, model: &str) -> Self {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock, PoisonError};
        static OPENED: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
        if self.sessions > 0 {
            let mut opened = OPENED
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = opened.entry(model.to_owned()).or_insert(0);
            *n += 1;
            if *n > self.sessions {
                self.fault = Fault::None;
            }
        }
        self
    }

    /// Applies connect-time faults.
    pub async fn on_connect(&self) {
        match self.fault {
            Fault::PanicOnConnect => panic!("loopback: injected panic in connect"),
            Fault::HangOnConnect => std::future::pending::<()>().await,
            _ => {}
        }
    }
}

fn bad(part: &str) -> PluginError {
    PluginError::Config(format!(
        "loopback model knob {part:?} not understood (use latency_ms=N, fault=panic|error|fatal|stall|deaf|panic_on_connect|hang_on_connect|mute, after=N, amplitude=N, sessions=N, chunk_ms=N, ms_per_char=N, speech_final=0|1, realtime=0|1, stamp=N)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knobs() {
        assert_eq!(Knobs::parse("").unwrap(), Knobs::default());
        let k = Knobs::parse("latency_ms=30, fault=panic,after=2").unwrap();
        assert_eq!(k.latency, Duration::from_millis(30));
        assert_eq!((k.fault, k.after), (Fault::Panic, 2));
        assert!(Knobs::parse("fault=explode").is_err());
        assert!(Knobs::parse("nova-3").is_err());
    }
}
