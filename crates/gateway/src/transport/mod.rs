//! Client-facing transports: HTTP routes (axum) and, per route, their handlers.

mod headers;
mod plugins;
pub mod rest;
mod ws;

use crate::state::SharedState;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use waav_plugin_api::PluginHandle;

/// Builds the full HTTP router: core routes, route plugins, middleware plugins, security headers.
pub fn router(state: SharedState) -> Router {
    let protected = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/speak", post(rest::speak))
        .route("/voices", get(rest::voices))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::auth::require_auth_rest,
        ));
    let mut app = Router::new()
        .route("/", get(health))
        .route("/plugins", get(plugins::list))
        .route("/health/plugins", get(plugins::health))
        .route("/metrics", get(rest::metrics))
        .merge(protected)
        .with_state(state.clone());
    for entry in state.registry.entries() {
        if let (PluginHandle::Route(p), crate::registry::PluginState::Ready) =
            (&entry.handle, entry.state())
        {
            app = app.merge(p.routes());
        }
    }
    let mut middleware: Vec<_> = state
        .registry
        .entries()
        .iter()
        .filter_map(|e| match (&e.handle, e.state()) {
            (PluginHandle::Middleware(m), crate::registry::PluginState::Ready) => Some(m.clone()),
            _ => None,
        })
        .collect();
    middleware.sort_by_key(|m| m.order());
    for m in middleware {
        app = m.apply(app);
    }
    if let Some(rps) = state.config.limits.requests_per_second {
        match crate::middleware::rate_limit::RateLimit::new(rps, state.config.limits.burst) {
            Ok(limit) => app = limit.apply(app),
            Err(e) => tracing::error!(error = %e, "rate limiting disabled: invalid limits"),
        }
    }
    app.fallback(not_found)
        .layer(axum::middleware::map_response(headers::security_headers))
}

/// `GET /`: liveness, exactly `{"status":"OK"}`.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "OK" }))
}

async fn not_found() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "not_found", "message": "No such route" })),
    )
}
