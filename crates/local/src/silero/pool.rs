//! The inference pool shared by every session of one `silero_vad` plugin: `workers` OS threads,
//! each with its own scorer (an ONNX session), fed through a bounded queue (an
//! [`InferPool`] of Silero [`Job`]s, as `turn/pool.rs`).
//!
//! Sessions never wait on it: [`SileroPool::try_submit`] hands a job over at once or gives it
//! back (queue full). A job is the session's own reusable buffer: the windows to score in order,
//! the stream's model memory ([`SileroState`]) and room for one probability per window. It
//! travels to a worker and back on the session's reply channel; nothing is allocated per job.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use super::model::{SileroState, WINDOW};
use crate::infer_pool::{InferPool, PoolJob};

/// Scores one model input (64 context + 512 samples at 16 kHz) with the stream's recurrent
/// state (256 floats, updated in place): the speech probability. One per worker thread.
pub type Scorer = Box<dyn FnMut(&[f32], &mut [f32]) -> Result<f32, String> + Send>;

/// One scoring request, owned by a session and lent to the pool.
#[derive(Debug)]
pub(crate) struct Job {
    /// `capacity × 512` samples; the first `windows × 512` are to be scored, oldest first.
    pub(crate) audio: Vec<f32>,
    pub(crate) windows: usize,
    /// One per window; the first `done` are valid when the job comes back.
    pub(crate) probs: Vec<f32>,
    pub(crate) done: usize,
    /// The stream's model memory, carried from job to job.
    pub(crate) memory: SileroState,
    /// Zero the memory before the first window (a session reset, or windows the model missed).
    pub(crate) reset: bool,
    pub(crate) seq: u64,
    /// Why scoring stopped before `windows` (an error or a panic of the scorer).
    pub(crate) error: Option<String>,
    pub(crate) inference: Duration,
    reply: SyncSender<Box<Job>>,
}

impl Job {
    /// A job for up to `capacity` windows whose result comes back on `reply`.
    pub(crate) fn new(capacity: usize, reply: SyncSender<Box<Job>>) -> Box<Self> {
        Box::new(Self {
            audio: vec![0.0; capacity * WINDOW],
            windows: 0,
            probs: vec![0.0; capacity],
            done: 0,
            memory: SileroState::default(),
            reset: true,
            seq: 0,
            error: None,
            inference: Duration::ZERO,
            reply,
        })
    }

    /// Windows the job can carry.
    pub(crate) fn capacity(&self) -> usize {
        self.probs.len()
    }
}

/// A bounded pool of Silero workers (cheap to clone; clones share the workers).
#[derive(Clone)]
pub struct SileroPool {
    inner: InferPool<Job>,
}

impl std::fmt::Debug for SileroPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.debug_as("SileroPool", f)
    }
}

impl SileroPool {
    /// Starts one worker thread per scorer (`silero-vad-{i}`); at most `queue` jobs wait for a
    /// free worker (0: a job is taken only when a worker is idle).
    pub fn new(scorers: Vec<Scorer>, queue: usize) -> std::io::Result<Self> {
        let inner = InferPool::new("silero-vad", scorers, queue)?;
        Ok(Self { inner })
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.inner.workers()
    }

    /// The queue bound.
    pub fn queue(&self) -> usize {
        self.inner.queue()
    }

    /// Jobs being scored now.
    pub fn running(&self) -> usize {
        self.inner.running()
    }

    /// Jobs handed over and not yet taken by a worker.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }

    /// Hands `job` over without waiting; gives it back when the queue is full.
    pub(crate) fn try_submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        self.inner.try_submit(job)
    }
}

impl PoolJob for Job {
    type Scorer = Scorer;

    fn run(&mut self, scorer: &mut Scorer) {
        score_job(self, scorer);
    }

    fn panicked(&mut self, message: String) {
        self.error = Some(message);
        self.reset = true;
    }

    fn finished(&mut self, inference: Duration) {
        self.inference = inference;
        if self.done > 0 {
            metrics::histogram!("waav_silero_vad_inference_seconds")
                .record(self.inference.as_secs_f64() / self.done as f64);
        }
    }

    fn reply(&self) -> &SyncSender<Box<Job>> {
        &self.reply
    }
}

/// Scores a job's windows in order, stopping at the first failure.
fn score_job(job: &mut Job, scorer: &mut Scorer) {
    if job.reset {
        job.memory.reset();
        job.reset = false;
    }
    job.done = 0;
    job.error = None;
    let windows = job.windows.min(job.capacity());
    for i in 0..windows {
        let window = &job.audio[i * WINDOW..(i + 1) * WINDOW];
        match job.memory.next(window, |x, s| scorer(x, s)) {
            Ok(p) => {
                job.probs[i] = p;
                job.done = i + 1;
            }
            Err(e) => {
                job.error = Some(e);
                // The memory is suspect after a failed call.
                job.reset = true;
                return;
            }
        }
    }
}
