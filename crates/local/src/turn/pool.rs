//! The inference pool shared by every session of one `turn_detect` plugin: `workers` OS
//! threads, each with its own scorer (an ONNX session), fed through a bounded queue.
//!
//! Sessions never wait on it: [`TurnPool::try_submit`] either hands the job over at once or
//! gives it back (queue full). The job — a reusable boxed buffer owned by the session — travels
//! to a worker and back on the session's own reply channel, so nothing is allocated per verdict.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::model::WINDOW_SAMPLES;

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

struct Shared {
    tx: SyncSender<Box<Job>>,
    workers: usize,
    queue: usize,
    running: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
}

/// A bounded pool of turn-detection workers (cheap to clone; clones share the workers).
#[derive(Clone)]
pub struct TurnPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TurnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnPool")
            .field("workers", &self.shared.workers)
            .field("queue", &self.shared.queue)
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish()
    }
}

impl TurnPool {
    /// Starts one worker thread per scorer; at most `queue` jobs wait for a free worker
    /// (0: a job is taken only when a worker is idle).
    pub fn new(scorers: Vec<Scorer>, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Box<Job>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let running = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let workers = scorers.len();
        // The threads are detached: they end once every clone of the pool is gone (the queue's
        // sender with it) and the queue drained; nothing waits for a running inference.
        for (i, scorer) in scorers.into_iter().enumerate() {
            let (rx, running, queued) = (rx.clone(), running.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("turn-detect-{i}"))
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

    /// Hands `job` to the pool without waiting; gives it back when the queue is full (or the
    /// pool has no workers).
    pub(crate) fn try_submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        // Counted before the send so a worker's decrement never precedes it.
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
        let len = job.len.min(job.audio.len());
        let result = catch_unwind(AssertUnwindSafe(|| scorer(&job.audio[..len])))
            .unwrap_or_else(|p| Err(waav_plugin_api::PluginError::from_panic(&*p).to_string()));
        job.inference = started.elapsed();
        job.result = Some(result);
        metrics::histogram!("waav_turn_detect_inference_seconds")
            .record(job.inference.as_secs_f64());
        running.fetch_sub(1, Ordering::AcqRel);
        // One job per session is out at a time, so its reply channel (capacity 1) has room; a
        // session that went away dropped its receiver and the job is dropped here.
        let reply = job.reply.clone();
        let _ = reply.try_send(job);
    }
}
