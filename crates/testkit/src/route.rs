//! A route plugin for tests: an HTTP route and `custom` WebSocket message handlers.

use axum::routing::get;
use waav_plugin_api::{CustomMessageContext, Plugin, PluginError, PluginInfo, RoutePlugin};

/// Route plugin `testkit-routes`: `GET /testkit/ping` → `pong`; custom messages `echo` (replies
/// with the payload and the stream id), `silent` (no reply), `panic` (panics), `hang` (never
/// answers).
#[derive(Debug, Default, Clone, Copy)]
pub struct TestRoutes;

impl Plugin for TestRoutes {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("testkit-routes", "Testkit Routes").version(env!("CARGO_PKG_VERSION"))
    }
}

#[async_trait::async_trait]
impl RoutePlugin for TestRoutes {
    fn routes(&self) -> axum::Router {
        axum::Router::new()
            .route("/testkit/ping", get(|| async { "pong" }))
            .route("/testkit/public", get(|| async { "open" }))
    }

    fn public_paths(&self) -> &'static [&'static str] {
        &["/testkit/public"]
    }

    fn custom_message_types(&self) -> &'static [&'static str] {
        &["echo", "silent", "panic", "hang"]
    }

    async fn handle_custom(
        &self,
        ctx: CustomMessageContext,
        message_type: &str,
        payload: serde_json::Value,
    ) -> Result<Option<serde_json::Value>, PluginError> {
        match message_type {
            "echo" => Ok(Some(
                serde_json::json!({ "echo": payload, "stream_id": ctx.stream_id }),
            )),
            "silent" => Ok(None),
            "panic" => panic!("testkit-routes: injected panic"),
            "hang" => std::future::pending().await,
            other => Err(PluginError::Permanent(format!("unhandled {other}"))),
        }
    }
}
