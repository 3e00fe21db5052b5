//! The inference pool shared by every session of one `turn_detect` plugin: `workers` OS
//! threads, each with its own scorer (an ONNX session), fed through a bounded queue (an
//! [`InferPool`] of turn [`Job`]s, as `silero/pool.rs`).
//!
//! Sessions never wait on it: [`TurnPool::try_submit`] either hands the job over at once or
//! gives it back (queue full). The job — a reusable boxed buffer owned by the session — travels
//! to a worker and back on the session's own reply channel, so nothing is allocated per verdict.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use super::model::WINDOW_SAMPLES;
use crate::infer_pool::{InferPool, PoolJob};

/// Scores 16 kHz mono `i16` audio (at most the last 8 s, oldest first): the probability that
/// the turn is complete. One per worker thread.
pub type Scorer = Box<dyn FnMut(&[i16]) -> Result<f32, String> + Send>;

/// One verdict request: the audio, and once scored its result. Owned by a session, lent to the
/// pool while scored.
#[derive(Debug)]
pub(crate) struct Job {
    /// `WINDOW_SAMPLES` long; the first `len` samples are the audio.
    pub(crate) audio: Vec<i16>,
    pub(crate) len: usize,
    /// Which submission of the session this is.
    pub(crate) seq: u64,
    pub(crate) result: Option<Result<f32, String>>,
    /// Time the scorer took.
    pub(crate) inference: Duration,
    pub(crate) reply: SyncSender<Box<Job>>,
}

impl Job {
    /// A job whose verdict comes back on `reply`.
    pub(crate) fn new(reply: SyncSender<Box<Job>>) -> Box<Self> {
        Box::new(Self {
            audio: vec![0; WINDOW_SAMPLES],
            len: 0,
            seq: 0,
            result: None,
            inference: Duration::ZERO,
            reply,
        })
    }
}

/// A bounded pool of turn-detection workers (cheap to clone; clones share the workers).
#[derive(Clone)]
pub struct TurnPool {
    inner: InferPool<Job>,
}

impl std::fmt::Debug for TurnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.debug_as("TurnPool", f)
    }
}

impl TurnPool {
    /// Starts one worker thread per scorer (`turn-detect-{i}`); at most `queue` jobs wait for a
    /// free worker (0: a job is taken only when a worker is idle).
    pub fn new(scorers: Vec<Scorer>, queue: usize) -> std::io::Result<Self> {
        let inner = InferPool::new("turn-detect", scorers, queue)?;
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

    /// Hands `job` to the pool without waiting; gives it back when the queue is full (or the
    /// pool has no workers).
    pub(crate) fn try_submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        self.inner.try_submit(job)
    }
}

impl PoolJob for Job {
    type Scorer = Scorer;

    fn run(&mut self, scorer: &mut Scorer) {
        let len = self.len.min(self.audio.len());
        self.result = Some(scorer(&self.audio[..len]));
    }

    fn panicked(&mut self, message: String) {
        self.result = Some(Err(message));
    }

    fn finished(&mut self, inference: Duration) {
        self.inference = inference;
        metrics::histogram!("waav_turn_detect_inference_seconds")
            .record(self.inference.as_secs_f64());
    }

    fn reply(&self) -> &SyncSender<Box<Job>> {
        &self.reply
    }
}
