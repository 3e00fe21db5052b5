//! Shared state of a running gateway.

use crate::config::GatewayConfig;
use crate::registry::Registry;
use std::sync::Arc;

/// Everything handlers share: configuration and the plugin registry.
#[derive(Debug)]
pub struct AppState {
    /// The effective configuration.
    pub config: GatewayConfig,
    /// The plugin registry.
    pub registry: Registry,
}

/// A cheap, clonable handle to the gateway's state (what axum handlers receive).
pub type SharedState = Arc<AppState>;
