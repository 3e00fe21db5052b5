//! A bounded pool of inference workers, shared by the processor plugins that run an ONNX model
//! off the async runtime (`silero_vad` in `silero/pool.rs`, `turn_detect` in `turn/pool.rs`):
//! one OS thread per scorer (each with its own model session), fed through a bounded queue.
//!
//! Sessions never wait on it: [`InferPool::try_submit`] either hands a job over at once or gives
//! it back (queue full, or no workers). A job is a reusable boxed buffer owned by a session: it
//! travels to a worker and back on the session's own reply channel, so nothing is allocated per
//! job. What a job holds and how it is scored is the job type's ([`PoolJob`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A job of an [`InferPool`]: scored on a worker thread, then sent back on its reply channel.
pub(crate) trait PoolJob: Send + Sized + 'static {
    /// What scores jobs; one per worker thread.
    type Scorer: Send + 'static;

    /// Scores the job (on a worker thread). A panic is caught and handed to [`Self::panicked`].
    fn run(&mut self, scorer: &mut Self::Scorer);

    /// [`Self::run`] panicked with `message`.
    fn panicked(&mut self, message: String);

    /// Scoring is over (after [`Self::run`] and any [`Self::panicked`]); it took `inference`.
    fn finished(&mut self, inference: Duration);

    /// Where the job goes back to its session.
    fn reply(&self) -> &SyncSender<Box<Self>>;
}

struct Shared<J> {
    tx: SyncSender<Box<J>>,
    workers: usize,
    queue: usize,
    running: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
}

/// A bounded pool of workers scoring `J` jobs (cheap to clone; clones share the workers).
pub(crate) struct InferPool<J> {
    shared: Arc<Shared<J>>,
}

impl<J> Clone for InferPool<J> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<J: PoolJob> InferPool<J> {
    /// Starts one worker thread per scorer, named `{name}-{i}`; at most `queue` jobs wait for a
    /// free worker (0: a job is taken only when a worker is idle).
    pub(crate) fn new(name: &str, scorers: Vec<J::Scorer>, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Box<J>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let running = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let workers = scorers.len();
        // The threads are detached: they end once every clone of the pool is gone (the queue's
        // sender with it) and the queue drained; nothing waits for a running inference.
        for (i, scorer) in scorers.into_iter().enumerate() {
            let (rx, running, queued) = (rx.clone(), running.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
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

    /// Hands `job` to the pool without waiting; gives it back when the queue is full (or the
    /// pool has no workers).
    pub(crate) fn try_submit(&self, job: Box<J>) -> Result<(), Box<J>> {
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

impl<J> InferPool<J> {
    /// Worker threads.
    pub(crate) fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The queue bound.
    pub(crate) fn queue(&self) -> usize {
        self.shared.queue
    }

    /// Jobs being scored now.
    pub(crate) fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Jobs handed over and not yet taken by a worker.
    pub(crate) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// `Debug` output as a struct called `name`.
    pub(crate) fn debug_as(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("workers", &self.workers())
            .field("queue", &self.queue())
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish()
    }
}

fn work<J: PoolJob>(
    rx: &Mutex<Receiver<Box<J>>>,
    mut scorer: J::Scorer,
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
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job.run(&mut scorer))) {
            job.panicked(waav_plugin_api::PluginError::from_panic(&*p).to_string());
        }
        job.finished(started.elapsed());
        running.fetch_sub(1, Ordering::AcqRel);
        // One job per session is out at a time, so its reply channel (capacity 1) has room; a
        // session that went away dropped its receiver and the job is dropped here.
        let reply = job.reply().clone();
        let _ = reply.try_send(job);
    }
}
