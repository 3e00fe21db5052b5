//! Loopback STT: deterministic transcripts from audio energy, for tests and benchmarks.

use crate::knobs::{Fault, Knobs};
use waav_plugin_api::{
    AudioEncoding, Capabilities, Plugin, PluginError, PluginInfo, ProviderTask, SttEvent, SttInput,
    SttIo, SttPlugin, SttSessionConfig, Transcript,
};

/// Level (RMS of PCM16) above which a chunk counts as speech.
const SPEECH_RMS: f64 = 300.0;
/// Silence after speech that ends an utterance.
const GAP_MS: f64 = 300.0;
/// Interim cadence while an utterance grows.
const INTERIM_MS: f64 = 100.0;

/// Emits an interim result every 100 ms of audio while an utterance is in progress, and a final
/// result `"utterance N: M ms"` after 300 ms of silence (or on `Finalize`; `Finalize` with no
/// speech yields an empty final, which the gateway must drop). Accepts linear16 only.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackStt;

impl Plugin for LoopbackStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("loopback", "Loopback")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["loopback-stt"])
            .description("Deterministic test STT (energy-based utterances)")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .languages(["en-US"])
            .features(true, false, true, false)
    }
}

#[async_trait::async_trait]
impl SttPlugin for LoopbackStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let knobs = Knobs::parse(&config.model)?;
        if config.encoding != AudioEncoding::Linear16 {
            return Err(PluginError::Config(format!(
                "loopback STT accepts linear16 only, not {}",
                config.encoding
            )));
        }
        // Like any plugin, refuse formats it cannot handle itself, whatever the host checked.
        if !(8_000..=192_000).contains(&config.sample_rate) || !(1..=8).contains(&config.channels) {
            return Err(PluginError::Config(format!(
                "loopback STT takes 8000–192000 Hz and 1–8 channels, not {} Hz × {}",
                config.sample_rate, config.channels
            )));
        }
        let knobs = knobs.opening_session(&config.model);
        knobs.on_connect().await;
        let bytes_per_ms =
            f64::from(config.sample_rate) * f64::from(config.channels) * 2.0 / 1000.0;
        Ok(Box::pin(run(knobs, bytes_per_ms, io)))
    }
}

struct State {
    knobs: Knobs,
    results: u32,
    utterances: u32,
    speech_ms: f64,
    since_interim_ms: f64,
    silence_ms: f64,
    in_utterance: bool,
}

async fn run(knobs: Knobs, bytes_per_ms: f64, mut io: SttIo) -> Result<(), PluginError> {
    let mut st = State {
        knobs,
        results: 0,
        utterances: 0,
        speech_ms: 0.0,
        since_interim_ms: 0.0,
        silence_ms: 0.0,
        in_utterance: false,
    };
    if knobs.fault == Fault::Deaf {
        // Holds `io` (the channels stay open) and never reads.
        std::future::pending::<()>().await;
    }
    if knobs.stamp > 0 {
        return run_stamped(knobs.stamp, io).await;
    }
    while let Some(input) = io.input.recv().await {
        let out = match input {
            SttInput::Audio(bytes) => st.on_audio(&bytes, bytes_per_ms),
            SttInput::Finalize => Some(st.finish(true)),
            _ => None,
        };
        if let Some(t) = out {
            if !st.emit(t, &io).await? {
                break;
            }
        }
    }
    Ok(())
}

/// Stamps older than this (or from the future) were not written by the load generator.
const STAMP_HORIZON_NS: u64 = 60_000_000_000;

/// Benchmark mode: report frame transit times every `every` frames (see [`crate::stamp`]).
async fn run_stamped(every: u32, mut io: SttIo) -> Result<(), PluginError> {
    use crate::stamp::{now_ns, read_header, StampReport};
    let mut received = 0u64;
    let mut transit = Vec::with_capacity(every as usize);
    while let Some(input) = io.input.recv().await {
        let SttInput::Audio(frame) = input else {
            continue;
        };
        let arrived = now_ns();
        received += 1;
        // A pre-STT processor that rewrites samples (denoise, gain) destroys the stamp: keep
        // only stamps from the last minute, so rewritten ones are left out, not counted as 0 or
        // as decades.
        match read_header(&frame) {
            Some((_, sent)) if sent <= arrived && arrived - sent < STAMP_HORIZON_NS => {
                transit.push(arrived - sent)
            }
            _ => {}
        }
        if received.is_multiple_of(u64::from(every)) {
            let report = StampReport {
                received,
                emitted_ns: now_ns(),
                transit_ns: std::mem::take(&mut transit),
            };
            let t = Transcript::interim(report.encode(), 1.0);
            if io
                .events
                .send(SttEvent::Transcript(Box::new(t)))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    Ok(())
}

impl State {
    fn on_audio(&mut self, bytes: &[u8], bytes_per_ms: f64) -> Option<Transcript> {
        let ms = bytes.len() as f64 / bytes_per_ms.max(f64::MIN_POSITIVE);
        let (mut sum, mut n) = (0.0f64, 0usize);
        for c in bytes.chunks_exact(2) {
            let s = f64::from(i16::from_le_bytes([c[0], c[1]]));
            sum += s * s;
            n += 1;
        }
        let loud = n > 0 && (sum / n as f64).sqrt() > SPEECH_RMS;
        if loud {
            self.in_utterance = true;
            self.silence_ms = 0.0;
            self.speech_ms += ms;
        } else if self.in_utterance {
            self.silence_ms += ms;
            if self.silence_ms >= GAP_MS {
                return Some(self.finish(false));
            }
        }
        if self.in_utterance {
            self.since_interim_ms += ms;
            if self.since_interim_ms >= INTERIM_MS {
                self.since_interim_ms = 0.0;
                return Some(Transcript::interim(
                    format!(
                        "utterance {}: {:.0} ms",
                        self.utterances + 1,
                        self.speech_ms
                    ),
                    0.5,
                ));
            }
        }
        None
    }

    fn finish(&mut self, forced: bool) -> Transcript {
        let t = if self.in_utterance {
            self.utterances += 1;
            Transcript::final_result(
                format!("utterance {}: {:.0} ms", self.utterances, self.speech_ms),
                0.9,
                self.knobs.speech_final || forced,
            )
        } else {
            Transcript::final_result("", 0.0, false)
        };
        self.in_utterance = false;
        self.speech_ms = 0.0;
        self.silence_ms = 0.0;
        self.since_interim_ms = 0.0;
        t
    }

    /// Sends one result, applying latency and faults. `Ok(false)` when the host hung up.
    async fn emit(&mut self, t: Transcript, io: &SttIo) -> Result<bool, PluginError> {
        if !self.knobs.latency.is_zero() {
            tokio::time::sleep(self.knobs.latency).await;
        }
        self.results += 1;
        if self.results >= self.knobs.after {
            match self.knobs.fault {
                Fault::Panic => panic!("loopback STT: injected panic"),
                Fault::Fatal => {
                    return Err(PluginError::Transient(
                        "loopback STT: injected fatal error".into(),
                    ))
                }
                Fault::Stall => std::future::pending::<()>().await,
                Fault::Error => {
                    let e = PluginError::Transient("loopback STT: injected error".into());
                    if io.events.send(SttEvent::Error(e)).await.is_err() {
                        return Ok(false);
                    }
                }
                // Connected and reading, but the results go nowhere.
                Fault::Mute => return Ok(true),
                Fault::None | Fault::Deaf | Fault::PanicOnConnect | Fault::HangOnConnect => {}
            }
        }
        Ok(io
            .events
            .send(SttEvent::Transcript(Box::new(t)))
            .await
            .is_ok())
    }
}
