//! Shared state of a running gateway.

use crate::cache::TtsCache;
use crate::config::GatewayConfig;
use crate::middleware::limits::ConnectionLimiter;
use crate::registry::{PluginState, Registry};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use waav_plugin_api::{PluginHandle, RoutePlugin};

/// Everything handlers and sessions share.
pub struct AppState {
    /// The effective configuration.
    pub config: GatewayConfig,
    /// The plugin registry.
    pub registry: Registry,
    /// The TTS cache.
    pub cache: TtsCache,
    /// WebSocket connection caps.
    pub limiter: ConnectionLimiter,
    /// Circuit breakers and failover chains.
    pub resilience: crate::resilience::Resilience,
    /// `custom` message type → the route plugin handling it.
    pub custom_handlers: HashMap<String, Arc<dyn RoutePlugin>>,
    /// Flips to `true` when a graceful stop begins; every session watches it.
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Builds the state around an initialised registry.
    pub fn new(config: GatewayConfig, registry: Registry) -> Self {
        let mut custom_handlers: HashMap<String, Arc<dyn RoutePlugin>> = HashMap::new();
        for e in registry.entries() {
            if let (PluginHandle::Route(p), PluginState::Ready) = (&e.handle, e.state()) {
                for t in p.custom_message_types() {
                    if let Some(prev) = custom_handlers.insert((*t).to_owned(), p.clone()) {
                        tracing::warn!(
                            message_type = t,
                            first = prev.info().id,
                            second = e.id,
                            "two route plugins handle one custom message type; the later wins"
                        );
                    }
                }
            }
        }
        Self {
            cache: TtsCache::new(&config.cache),
            limiter: ConnectionLimiter::new(
                config.limits.max_websocket_connections,
                config.limits.max_connections_per_ip,
            ),
            custom_handlers,
            resilience: crate::resilience::Resilience::new(&registry, &config.resilience),
            shutdown: watch::channel(false).0,
            config,
            registry,
        }
    }

    /// Tells every session that a graceful stop has begun.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that sees `true` once a graceful stop has begun.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("registry", &self.registry)
            .field(
                "custom_message_types",
                &self.custom_handlers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A cheap, clonable handle to the gateway's state (what axum handlers receive).
pub type SharedState = Arc<AppState>;
