//! A bounded pool for blocking inference: at most `workers` jobs run at once on tokio's blocking
//! threads, at most `max_queue` wait; past that a job is refused (visible in metrics), so an
//! overloaded box degrades with errors instead of unbounded memory and latency.

use metrics::{counter, gauge, histogram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use waav_plugin_api::{HealthStatus, PluginError};

/// A bounded inference pool shared by every session of one engine.
#[derive(Debug, Clone)]
pub struct Pool {
    engine: &'static str,
    permits: Arc<Semaphore>,
    workers: usize,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

/// One place in the queue. Counters are released on drop, so a caller that abandons `run`
/// while it waits (a cancelled or aborted session) cannot leak a slot.
struct QueueSlot<'a> {
    pool: &'a Pool,
}

impl<'a> QueueSlot<'a> {
    fn take(pool: &'a Pool) -> Option<Self> {
        // Reserve first, then check: two racing callers cannot both take the last slot.
        if pool.waiting.fetch_add(1, Ordering::AcqRel) >= pool.max_queue {
            pool.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        gauge!("waav_local_queue_depth", "engine" => pool.engine).increment(1.0);
        Some(Self { pool })
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.pool.waiting.fetch_sub(1, Ordering::AcqRel);
        gauge!("waav_local_queue_depth", "engine" => self.pool.engine).decrement(1.0);
    }
}

impl Pool {
    /// A pool for `engine` (a metrics label) running `workers` jobs at once.
    pub fn new(engine: &'static str, workers: usize, max_queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            engine,
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_queue,
        }
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Jobs running now (each holds a worker until its blocking closure returns).
    pub fn running(&self) -> usize {
        self.workers - self.permits.available_permits()
    }

    /// Whether the queue is full, so the next job would be refused.
    pub fn is_saturated(&self) -> bool {
        self.queued() >= self.max_queue
    }

    /// `Degraded` while the queue is full, else `Healthy`.
    pub fn health(&self) -> HealthStatus {
        if self.is_saturated() {
            HealthStatus::Degraded(format!(
                "inference queue saturated: {} of {} jobs waiting for {} local {} worker(s)",
                self.queued(),
                self.max_queue,
                self.workers,
                self.engine
            ))
        } else {
            HealthStatus::Healthy
        }
    }

    /// Runs `job` on a blocking thread once a worker is free. Refuses with
    /// [`PluginError::RateLimited`] when `max_queue` jobs are already waiting; a panic in the job
    /// becomes [`PluginError::Panicked`].
    ///
    /// Dropping the returned future while it waits frees its queue slot; dropping it once the job
    /// started lets the job finish (a blocking thread cannot be interrupted) and the worker is
    /// released when it does.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PluginError> {
        let engine = self.engine;
        let Some(slot) = QueueSlot::take(self) else {
            counter!("waav_local_overload_total", "engine" => engine).increment(1);
            return Err(PluginError::RateLimited {
                retry_after: None,
                message: format!(
                    "local {engine} engine overloaded: {} jobs queued",
                    self.max_queue
                ),
            });
        };
        let permit = self.permits.clone().acquire_owned().await;
        drop(slot);
        let permit = permit.map_err(|_| PluginError::Permanent("inference pool closed".into()))?;
        let started = Instant::now();
        // The permit moves into the closure: the worker stays taken exactly as long as the job
        // runs, even if this future is dropped meanwhile.
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await;
        histogram!("waav_local_inference_seconds", "engine" => engine)
            .record(started.elapsed().as_secs_f64());
        result.map_err(|e| match e.try_into_panic() {
            Ok(p) => PluginError::from_panic(&*p),
            Err(e) => PluginError::Transient(format!("inference job cancelled: {e}")),
        })
    }
}

/// Default worker count and threads per worker for this machine: inference libraries use
/// several threads each, so run about half as many jobs as cores, with two threads each.
pub fn default_split() -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let workers = (cores / 2).max(1);
    (workers, (cores / workers).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Occupies the pool's only worker until the returned sender is used or dropped.
    async fn block_worker(
        pool: &Pool,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _ = pool.run(move || rx.recv().ok()).await;
            })
        };
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        (tx, busy)
    }

    #[tokio::test]
    async fn bounds_the_queue_and_contains_panics() {
        let pool = Pool::new("test", 1, 1);
        let (tx, busy) = block_worker(&pool).await;
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 1).await })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 2).await;
        assert!(matches!(refused, Err(PluginError::RateLimited { .. })));
        tx.send(()).unwrap();
        busy.await.unwrap();
        assert_eq!(queued.await.unwrap(), Ok(1));
        let panicked = pool.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(panicked, Err(PluginError::Panicked("boom".into())));
    }

    #[tokio::test]
    async fn abandoned_jobs_free_their_slots() {
        let pool = Pool::new("test", 1, 3);
        let (tx, busy) = block_worker(&pool).await;
        // Queued jobs whose tasks are aborted while they wait for the worker.
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(|| ()).await })
            })
            .collect();
        while pool.queued() < 3 {
            tokio::task::yield_now().await;
        }
        assert!(pool.is_saturated());
        for task in &waiting {
            task.abort();
        }
        for task in waiting {
            assert!(task.await.unwrap_err().is_cancelled());
        }
        // A job future dropped (not aborted) while queued, and one dropped before being polled.
        {
            let fut = pool.run(|| ());
            tokio::pin!(fut);
            assert!(
                tokio::time::timeout(Duration::from_millis(20), &mut fut)
                    .await
                    .is_err(),
                "the worker is busy"
            );
            assert_eq!(pool.queued(), 1);
        }
        drop(pool.run(|| ()));
        assert_eq!(pool.queued(), 0, "no queue slot leaked");
        assert!(!pool.is_saturated());

        // A running job whose caller goes away keeps its worker until it ends, then frees it.
        tx.send(()).unwrap();
        busy.await.unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let running = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || rx.recv().ok()).await })
        };
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        running.abort();
        assert_eq!(pool.running(), 1, "the blocking job still runs");
        tx.send(()).unwrap();
        while pool.running() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!((pool.queued(), pool.running()), (0, 0));
        // All 3 queue places and the worker serve new jobs.
        let again: Vec<_> = (0..4)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move || i).await })
            })
            .collect();
        for (i, task) in again.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Ok(i));
        }
    }

    #[tokio::test]
    async fn health_reports_a_full_queue() {
        let pool = Pool::new("test", 1, 1);
        assert_eq!(pool.health(), HealthStatus::Healthy);
        let (tx, busy) = block_worker(&pool).await;
        assert_eq!(
            pool.health(),
            HealthStatus::Healthy,
            "running is not queued"
        );
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| ()).await })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        match pool.health() {
            HealthStatus::Degraded(reason) => {
                assert!(reason.starts_with("inference queue saturated"), "{reason}")
            }
            other => panic!("expected Degraded, got {other:?}"),
        }
        tx.send(()).unwrap();
        busy.await.unwrap();
        queued.await.unwrap().unwrap();
        assert_eq!(pool.health(), HealthStatus::Healthy);
    }
}
