//! The inference pool shared by every session of one `silero_vad` plugin: `workers` OS threads,
//! each with its own scorer (an ONNX session), fed through a bounded queue — the pattern of
//! `turn/pool.rs`.
//!
//! Sessions never wait on it: [`SileroPool::try_submit`] hands a job over at once or gives it
//! back (queue full). A job is the session's own reusable buffer: the windows to score in order,
//! the stream's model memory ([`SileroState`]) and room for one probability per window. It
//! travels to a worker and back on the session's reply channel; nothing is allocated per job.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::model::{SileroState, WINDOW};

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

struct Shared {
    tx: SyncSender<Box<Job>>,
    workers: usize,
    queue: usize,
    running: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
}

/// A bounded pool of Silero workers (cheap to clone; clones share the workers).
#[derive(Clone)]
pub struct SileroPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SileroPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroPool")
            .field("workers", &self.shared.workers)
            .field("queue", &self.shared.queue)
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish()
    }
}

impl SileroPool {
    /// Starts one worker thread per scorer; at most `queue` jobs wait for a free worker
    /// (0: a job is taken only when a worker is idle).
    pub fn new(scorers: Vec<Scorer>, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Box<Job>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let running = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let workers = scorers.len();
        // Detached: they end once every clone of the pool (the queue's sender) is gone.
        for (i, scorer) in scorers.into_iter().enumerate() {
            let (rx, running, queued) = (rx.clone(), running.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("silero-vad-{i}"))
                .spawn(move || work(&rx, scorer, &running, &queued))?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                tx,
                workers,
                queue,
                running,
                queued,
            }),
        })
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The queue bound.
    pub fn queue(&self) -> usize {
        self.shared.queue
    }

    /// Jobs being scored now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Jobs handed over and not yet taken by a worker.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Hands `job` over without waiting; gives it back when the queue is full.
    pub(crate) fn try_submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        match self.shared.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                Err(job)
            }
        }
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

fn work(
    rx: &Mutex<Receiver<Box<Job>>>,
    mut scorer: Scorer,
    running: &AtomicUsize,
    queued: &AtomicUsize,
) {
    loop {
        let next = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(mut job) = next else { return };
        queued.fetch_sub(1, Ordering::AcqRel);
        running.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| score_job(&mut job, &mut scorer))) {
            job.error = Some(waav_plugin_api::PluginError::from_panic(&*p).to_string());
            job.reset = true;
        }
        job.inference = started.elapsed();
        if job.done > 0 {
            metrics::histogram!("waav_silero_vad_inference_seconds")
                .record(job.inference.as_secs_f64() / job.done as f64);
        }
        running.fetch_sub(1, Ordering::AcqRel);
        // One job per session is out at a time, so its reply channel (capacity 1) has room; a
        // session that went away dropped its receiver and the job is dropped here.
        let reply = job.reply.clone();
        let _ = reply.try_send(job);
    }
}
