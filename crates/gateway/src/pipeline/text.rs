//! A session's chain of text processors at one text stage (post-STT transcripts, pre-TTS
//! text), run in order on each text, with accounting per processor and containment: a processor
//! that errors or panics is disabled for that session (reported once) and the text goes on as it
//! was before that processor.
//!
//! Each processor works on a scratch copy of the text, kept only when it succeeds, so a failure
//! half-way through a rewrite never leaks a partial result. The copy is a reused buffer: after
//! the first texts, running the chain allocates only what the processors themselves do.

use super::{stage_label, Disabled, MAX_PROCESSORS};
use crate::registry::Registry;
use metrics::{counter, histogram, Counter, Histogram};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use waav_plugin_api::{PluginError, ProcessorContext, Stage, TextProcessor};

struct Step {
    name: String,
    processor: Box<dyn TextProcessor>,
    enabled: bool,
    texts: Counter,
    changed: Counter,
    failures: Counter,
    time: Histogram,
    total: Duration,
    max: Duration,
}

/// The text processors of one stage of one session.
pub struct TextPipeline {
    stage: Stage,
    steps: Vec<Step>,
    scratch: String,
    /// Whether the last `run` changed the text.
    changed: bool,
}

impl std::fmt::Debug for TextPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("TextPipeline")
            .field("stage", &self.stage)
            .field("processors", &names)
            .finish()
    }
}

impl TextPipeline {
    /// Creates the named processor instances for one session at text stage `stage`, in order.
    /// `Ok(None)` when `names` is empty (most sessions: nothing to run, nothing kept).
    pub fn build(
        registry: &Registry,
        names: &[String],
        stage: Stage,
    ) -> Result<Option<Box<Self>>, String> {
        debug_assert!(stage.is_text(), "{stage:?} is not a text stage");
        if names.is_empty() {
            return Ok(None);
        }
        if names.len() > MAX_PROCESSORS {
            return Err(format!(
                "{} processors in one pipeline; at most {MAX_PROCESSORS}",
                names.len()
            ));
        }
        let label = stage_label(stage);
        let ctx = ProcessorContext::text(stage);
        let mut steps = Vec::with_capacity(names.len());
        for name in names {
            let created = registry
                .text_processor(name, &ctx)
                .map_err(|e| e.to_string())?;
            let labels = [("processor", name.clone()), ("stage", label.to_owned())];
            steps.push(Step {
                name: name.clone(),
                processor: created.processor,
                enabled: true,
                texts: counter!("waav_processor_texts_total", &labels),
                changed: counter!("waav_processor_texts_changed_total", &labels),
                failures: counter!("waav_processor_failures_total", &labels),
                time: histogram!("waav_processor_seconds", &labels),
                total: Duration::ZERO,
                max: Duration::ZERO,
            });
        }
        Ok(Some(Box::new(Self {
            stage,
            steps,
            scratch: String::new(),
            changed: false,
        })))
    }

    /// Whether the last [`run`](Self::run) changed the text.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The stage the chain runs at.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Runs every enabled processor on `text` in order; a processor that fails is disabled and
    /// returned (the first one, when several fail on one text), and `text` is left as the
    /// processors before it made it.
    pub fn run(&mut self, text: &mut String) -> Option<Disabled> {
        let mut disabled = None;
        self.changed = false;
        for step in self.steps.iter_mut().filter(|s| s.enabled) {
            self.scratch.clear();
            self.scratch.push_str(text);
            let scratch = &mut self.scratch;
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| step.processor.process(scratch)))
                .unwrap_or_else(|p| Err(PluginError::from_panic(&*p)));
            let took = started.elapsed();
            step.texts.increment(1);
            step.time.record(took.as_secs_f64());
            step.total += took;
            step.max = step.max.max(took);
            match result {
                Ok(()) => {
                    if *scratch != *text {
                        step.changed.increment(1);
                        std::mem::swap(scratch, text);
                        self.changed = true;
                    }
                }
                Err(error) => {
                    step.enabled = false;
                    step.failures.increment(1);
                    tracing::warn!(processor = %step.name, stage = stage_label(self.stage), %error,
                        "text processor disabled for this session");
                    disabled.get_or_insert(Disabled {
                        name: step.name.clone(),
                        error,
                    });
                }
            }
        }
        // A huge text once should not pin its buffer for the rest of the session.
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = String::new();
        }
        disabled
    }

    /// Logs per-processor totals (done when the chain is dropped, at the session's end or its
    /// next `config`).
    pub fn log_stats(&self) {
        for s in &self.steps {
            tracing::debug!(stage = stage_label(self.stage), processor = %s.name,
                total_us = s.total.as_micros() as u64, max_us = s.max.as_micros() as u64,
                enabled = s.enabled, "text processor stats");
        }
    }
}

impl Drop for TextPipeline {
    fn drop(&mut self) {
        self.log_stats();
    }
}
