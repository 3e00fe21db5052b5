//! Plugins that extend the server itself: middleware and routes.

use crate::{Plugin, PluginError};

/// A plugin that wraps the HTTP router in a tower layer.
///
/// Layers are applied in ascending [`MiddlewarePlugin::order`]; the last applied is outermost.
pub trait MiddlewarePlugin: Plugin {
    /// Position among middleware; lower runs closer to the handlers.
    fn order(&self) -> i32 {
        0
    }

    /// Wraps `router` (typically `router.layer(...)`).
    fn apply(&self, router: axum::Router) -> axum::Router;
}

/// Context of a `custom` WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CustomMessageContext {
    /// The sending session's stream id.
    pub stream_id: String,
}

impl CustomMessageContext {
    /// Context for the session `stream_id`.
    pub fn new(stream_id: impl Into<String>) -> Self {
        Self {
            stream_id: stream_id.into(),
        }
    }
}

/// A plugin that adds HTTP routes and/or handles `custom` WebSocket messages.
#[async_trait::async_trait]
pub trait RoutePlugin: Plugin {
    /// Extra routes, merged into the server's router. Paths must not collide with core routes.
    fn routes(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Paths among [`RoutePlugin::routes`] that are served without authentication (a webhook
    /// that checks its own signature, say). Every other plugin route sits behind the gateway's
    /// auth like the core routes; `/plugins` lists these paths.
    fn public_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// The `message_type`s of `custom` messages this plugin handles.
    fn custom_message_types(&self) -> &'static [&'static str] {
        &[]
    }

    /// Handles one `custom` message; `Ok(Some(payload))` is sent back as a `plugin_response`.
    async fn handle_custom(
        &self,
        ctx: CustomMessageContext,
        message_type: &str,
        payload: serde_json::Value,
    ) -> Result<Option<serde_json::Value>, PluginError> {
        let _ = (ctx, payload);
        Err(PluginError::Permanent(format!(
            "custom message type {message_type} not handled"
        )))
    }
}
