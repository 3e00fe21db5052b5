//! A route plugin for tests: an HTTP route and `custom` WebSocket message handlers.

use waav_plugin_api::bytes::Bytes;
use waav_plugin_api::{
    CustomMessageContext, HttpRequest, HttpResponse, Plugin, PluginError, PluginInfo, RoutePlugin,
    RouteSpec,
};

/// Route plugin `testkit-routes`: `GET /testkit/ping` → `pong`, `GET /testkit/public` → `open`
/// (no auth), `POST /testkit/echo` → the body; custom messages `echo` (replies
/// with the payload and the stream id), `silent` (no reply), `panic` (panics), `hang` (never
/// answers).
#[derive(Debug, Default, Clone, Copy)]
pub struct TestRoutes;

impl Plugin for TestRoutes {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("testkit-routes", "Testkit Routes").version(env!("CARGO_PKG_VERSION"))
    }
}

const ROUTES: &[RouteSpec] = &[
    RouteSpec::get("/testkit/ping"),
    RouteSpec::get("/testkit/public").public(),
    RouteSpec::post("/testkit/echo"),
];

#[async_trait::async_trait]
impl RoutePlugin for TestRoutes {
    fn routes(&self) -> &'static [RouteSpec] {
        ROUTES
    }

    async fn handle_http(
        &self,
        route: &RouteSpec,
        request: HttpRequest,
    ) -> Result<HttpResponse, PluginError> {
        let body = match route.path {
            "/testkit/ping" => Bytes::from_static(b"pong"),
            "/testkit/public" => Bytes::from_static(b"open"),
            "/testkit/echo" => request.into_body(),
            other => return Err(PluginError::Permanent(format!("no route {other}"))),
        };
        Ok(HttpResponse::new(body))
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
