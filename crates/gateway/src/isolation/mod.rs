//! Panic containment and deadlines around plugin code.
//!
//! Everything the core calls on a plugin goes through [`guard`] or [`guard_sync`]: a panic becomes
//! [`PluginError::Panicked`] for that call alone, and a hang becomes [`PluginError::Timeout`].
//! This relies on the release profile keeping `panic = "unwind"`.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use waav_plugin_api::PluginError;

/// Runs plugin future `fut` with a deadline, turning a panic or a timeout into an error.
pub async fn guard<T>(
    what: &str,
    deadline: Duration,
    fut: impl Future<Output = Result<T, PluginError>>,
) -> Result<T, PluginError> {
    match tokio::time::timeout(deadline, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) => Err(PluginError::from_panic(&*payload)),
        Err(_) => Err(PluginError::Timeout(format!(
            "{what} did not finish within {} ms",
            deadline.as_millis()
        ))),
    }
}

/// Runs synchronous plugin code, turning a panic into an error.
pub fn guard_sync<T>(f: impl FnOnce() -> T) -> Result<T, PluginError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| PluginError::from_panic(&*p))
}

/// Spawns a provider task under supervision; the returned handle yields its outcome, with a panic
/// reported as [`PluginError::Panicked`].
pub fn spawn_supervised(
    task: waav_plugin_api::ProviderTask,
) -> tokio::task::JoinHandle<Result<(), PluginError>> {
    tokio::spawn(async move {
        match AssertUnwindSafe(task).catch_unwind().await {
            Ok(r) => r,
            Err(payload) => Err(PluginError::from_panic(&*payload)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contains_panics_and_hangs() {
        let r: Result<(), _> = guard("init", Duration::from_secs(1), async { panic!("bad") }).await;
        assert_eq!(r, Err(PluginError::Panicked("bad".into())));
        let r: Result<(), _> = guard(
            "init",
            Duration::from_millis(10),
            futures::future::pending(),
        )
        .await;
        assert!(matches!(r, Err(PluginError::Timeout(m)) if m.contains("init")));
        assert_eq!(
            guard("x", Duration::from_secs(1), async { Ok(5) }).await,
            Ok(5)
        );
        assert!(guard_sync::<()>(|| panic!("sync")).is_err());
        let h = spawn_supervised(Box::pin(async { panic!("task") }));
        assert_eq!(h.await.unwrap(), Err(PluginError::Panicked("task".into())));
    }
}
