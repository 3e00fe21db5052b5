//! Starting, serving and stopping a gateway.

use crate::config::GatewayConfig;
use crate::registry::{Registry, RegistryError};
use crate::state::{AppState, SharedState};
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use waav_plugin_api::PluginContext;

/// A gateway whose plugins are initialised, ready to serve.
#[derive(Debug, Clone)]
pub struct Gateway {
    state: SharedState,
}

impl Gateway {
    /// Builds the registry from linked plugins, checks the config against it and runs every
    /// enabled plugin's `init` (failures are contained and reported, not fatal).
    pub async fn start(config: GatewayConfig) -> Result<Self, RegistryError> {
        let registry = Registry::build(&config.plugins)?;
        let ctx = PluginContext::new(env!("CARGO_PKG_VERSION"));
        registry.init_all(&ctx).await;
        Ok(Self {
            state: Arc::new(AppState::new(config, registry)),
        })
    }

    /// The shared state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// The HTTP router.
    pub fn router(&self) -> axum::Router {
        crate::transport::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then closes every `/ws` session (1001),
    /// waits up to `server.shutdown_drain_secs` for them to end, and shuts the plugins down in
    /// reverse order of initialisation.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        // Small frames must not wait for Nagle + delayed ACK (tens of ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            // axum stops tracking a connection once it is upgraded, so sessions get their own
            // signal; they close themselves and release their slots.
            state.begin_shutdown();
        };
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        self.drain_sessions().await;
        self.state.registry.shutdown_all().await;
        result
    }

    /// Waits until every `/ws` session has ended, up to the configured drain time.
    async fn drain_sessions(&self) {
        let drain = Duration::from_secs(self.state.config.server.shutdown_drain_secs);
        let limiter = &self.state.limiter;
        let drained = tokio::time::timeout(drain, async {
            while limiter.active() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                sessions = limiter.active(),
                "sessions still open after the drain time; stopping anyway"
            );
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining connections");
}
