//! A bounded pool for blocking inference: at most `workers` jobs run at once on tokio's blocking
//! threads, at most `max_queue` wait; past that a job is refused (visible in metrics), so an
//! overloaded box degrades with errors instead of unbounded memory and latency.

use metrics::{counter, gauge, histogram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use waav_plugin_api::PluginError;

/// A bounded inference pool shared by every session of one engine.
#[derive(Debug, Clone)]
pub struct Pool {
    engine: &'static str,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Pool {
    /// A pool for `engine` (a metrics label) running `workers` jobs at once.
    pub fn new(engine: &'static str, workers: usize, max_queue: usize) -> Self {
        Self {
            engine,
            permits: Arc::new(Semaphore::new(workers.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_queue,
        }
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Runs `job` on a blocking thread once a worker is free. Refuses with
    /// [`PluginError::RateLimited`] when `max_queue` jobs are already waiting; a panic in the job
    /// becomes [`PluginError::Panicked`].
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PluginError> {
        let engine = self.engine;
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            counter!("waav_local_overload_total", "engine" => engine).increment(1);
            return Err(PluginError::RateLimited {
                retry_after: None,
                message: format!(
                    "local {engine} engine overloaded: {} jobs queued",
                    self.max_queue
                ),
            });
        }
        gauge!("waav_local_queue_depth", "engine" => engine).increment(1.0);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        gauge!("waav_local_queue_depth", "engine" => engine).decrement(1.0);
        let permit = permit.map_err(|_| PluginError::Permanent("inference pool closed".into()))?;
        let started = Instant::now();
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

    #[tokio::test]
    async fn bounds_the_queue_and_contains_panics() {
        let pool = Pool::new("test", 1, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || rx.recv().ok()).await })
        };
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
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
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap(), Ok(1));
        let panicked = pool.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(panicked, Err(PluginError::Panicked("boom".into())));
    }
}
