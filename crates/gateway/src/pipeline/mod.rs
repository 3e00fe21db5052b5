//! A session's chain of audio processors at one stage, run in order on each frame, with
//! accounting per processor and containment: a processor that errors or panics is disabled for
//! that session (reported once) and audio keeps flowing unprocessed.
//!
//! Processors are synchronous and real-time safe by contract; the runtime adds no allocation per
//! frame (the frame buffer, the event list and the metric handles are made once per session).
//!
//! The text stages (post-STT transcripts, pre-TTS text) have their own chain, [`TextPipeline`].

pub mod text;

pub use text::TextPipeline;

use crate::registry::Registry;
use metrics::{counter, histogram, Counter, Histogram};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, PluginError, ProcessorContext, ProcessorEvent, Stage,
};

/// Default time budget of one processor, as a share of the frame's duration.
const DEFAULT_BUDGET_SHARE: f64 = 0.10;

/// The time one processor may take on a frame of `frame` duration before it counts as over
/// budget (a share of the frame: what keeps a chain real-time).
pub fn frame_budget(frame: Duration) -> Duration {
    frame.mul_f64(DEFAULT_BUDGET_SHARE)
}

/// Most processors in one chain.
pub const MAX_PROCESSORS: usize = 16;

/// A processor of the chain stopped working for this session.
#[derive(Debug, Clone, PartialEq)]
pub struct Disabled {
    /// The processor instance name.
    pub name: String,
    /// What went wrong.
    pub error: PluginError,
}

struct Step {
    name: String,
    processor: Box<dyn AudioProcessor>,
    enabled: bool,
    frames: Counter,
    overruns: Counter,
    failures: Counter,
    time: Histogram,
    total: Duration,
    max: Duration,
    overran: u64,
}

/// The processors of one stage of one session.
pub struct AudioPipeline {
    stage: Stage,
    steps: Vec<Step>,
    events: Vec<ProcessorEvent>,
    /// Budget per processor for a 20 ms frame, scaled to each frame's duration.
    budget_share: f64,
    /// A processor of the chain is a VAD.
    reports_speech: bool,
}

impl std::fmt::Debug for AudioPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("AudioPipeline")
            .field("stage", &self.stage)
            .field("processors", &names)
            .finish()
    }
}

impl AudioPipeline {
    /// Creates the named processor instances for one session, in order.
    pub fn build(
        registry: &Registry,
        names: &[String],
        ctx: ProcessorContext,
    ) -> Result<Self, String> {
        if names.len() > MAX_PROCESSORS {
            return Err(format!(
                "{} processors in one pipeline; at most {MAX_PROCESSORS}",
                names.len()
            ));
        }
        let stage = stage_label(ctx.stage);
        let mut steps = Vec::with_capacity(names.len());
        let mut reports_speech = false;
        for name in names {
            let created = registry.processor(name, &ctx).map_err(|e| e.to_string())?;
            reports_speech |= created.reports_speech;
            let labels = [("processor", name.clone()), ("stage", stage.to_owned())];
            steps.push(Step {
                name: name.clone(),
                processor: created.processor,
                enabled: true,
                frames: counter!("waav_processor_frames_total", &labels),
                overruns: counter!("waav_processor_budget_overruns_total", &labels),
                failures: counter!("waav_processor_failures_total", &labels),
                time: histogram!("waav_processor_seconds", &labels),
                total: Duration::ZERO,
                max: Duration::ZERO,
                overran: 0,
            });
        }
        Ok(Self {
            stage: ctx.stage,
            steps,
            events: Vec::with_capacity(8),
            budget_share: DEFAULT_BUDGET_SHARE,
            reports_speech,
        })
    }

    /// Whether a processor of the chain reports speech boundaries (a VAD).
    pub fn reports_speech(&self) -> bool {
        self.reports_speech
    }

    /// Whether the chain has no processor.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every enabled processor on `audio` in order. Events land in [`Self::events`]
    /// (cleared first); a processor that fails is disabled and returned.
    pub fn run(&mut self, audio: &mut AudioBuffer) -> Option<Disabled> {
        self.events.clear();
        let budget = Duration::from_secs_f64(audio.duration_ms() / 1000.0 * self.budget_share);
        let mut disabled = None;
        for step in self.steps.iter_mut().filter(|s| s.enabled) {
            let started = Instant::now();
            let events = &mut self.events;
            let result = catch_unwind(AssertUnwindSafe(|| step.processor.process(audio, events)))
                .unwrap_or_else(|p| Err(PluginError::from_panic(&*p)));
            let took = started.elapsed();
            step.frames.increment(1);
            step.time.record(took.as_secs_f64());
            step.total += took;
            step.max = step.max.max(took);
            if took > budget {
                step.overruns.increment(1);
                step.overran += 1;
                // The first overrun of a session is logged; later ones are counted.
                if step.overran == 1 {
                    tracing::warn!(processor = %step.name, took_us = took.as_micros() as u64,
                        budget_us = budget.as_micros() as u64, "audio processor over its budget");
                }
            }
            if let Err(error) = result {
                step.enabled = false;
                step.failures.increment(1);
                tracing::warn!(processor = %step.name, %error, "audio processor disabled for this session");
                disabled.get_or_insert(Disabled {
                    name: step.name.clone(),
                    error,
                });
            }
        }
        disabled
    }

    /// What the processors noticed in the last frame.
    pub fn events(&self) -> &[ProcessorEvent] {
        &self.events
    }

    /// Logs per-processor totals (at the session's end).
    pub fn log_stats(&self) {
        for s in &self.steps {
            tracing::debug!(stage = stage_label(self.stage), processor = %s.name,
                total_us = s.total.as_micros() as u64, max_us = s.max.as_micros() as u64,
                overruns = s.overran, enabled = s.enabled, "audio processor stats");
        }
    }
}

fn stage_label(stage: Stage) -> &'static str {
    stage.as_str()
}
