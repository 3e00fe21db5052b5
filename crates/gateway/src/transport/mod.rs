//! Client-facing transports: HTTP routes (axum) and, per route, their handlers.
//!
//! Who may call what: `GET /` is open; `/ws` authenticates itself (at upgrade or through the
//! pending-auth flow); every other core route, and every route-plugin route not declared public,
//! sits behind [`crate::middleware::auth::require_auth`]. `/metrics` follows
//! `server.metrics`. No header, path or method skips authentication.

mod cors;
mod extensions;
mod headers;
mod plugins;
pub mod rest;
mod ws;

use crate::config::MetricsExposure;
use crate::middleware::auth;
use crate::state::SharedState;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use waav_plugin_api::PluginHandle;

/// Paths the core serves; plugin routes may not take them.
const CORE_PATHS: &[&str] = &[
    "/",
    "/ws",
    "/speak",
    "/voices",
    "/plugins",
    "/health/plugins",
    "/metrics",
    "/realtime",
];

/// Builds the full HTTP router: core routes, route plugins, middleware plugins, security headers.
pub fn router(state: SharedState) -> Router {
    let mut protected = Router::new()
        .route("/speak", post(rest::speak))
        .route("/voices", get(rest::voices))
        .route("/plugins", get(plugins::list))
        .route("/health/plugins", get(plugins::health));
    let mut open = Router::new()
        .route("/", get(health))
        .route("/ws", get(ws::upgrade))
        .route("/realtime", get(ws::upgrade_realtime));
    match state.config.server.metrics {
        MetricsExposure::Open => open = open.route("/metrics", get(rest::metrics)),
        MetricsExposure::Auth => protected = protected.route("/metrics", get(rest::metrics)),
        MetricsExposure::Off => {}
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_auth,
    ));
    let route_plugins: Vec<_> = state
        .registry
        .entries()
        .iter()
        .filter_map(|e| match (&e.handle, e.state()) {
            (PluginHandle::Route(p), crate::registry::PluginState::Ready) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let mut app = open
        .merge(protected)
        .with_state(state.clone())
        .merge(extensions::plugin_routes(
            &state,
            &route_plugins,
            CORE_PATHS,
        ));
    let filters = extensions::Filters::new(
        state
            .registry
            .entries()
            .iter()
            .filter_map(|e| match (&e.handle, e.state()) {
                (PluginHandle::Middleware(m), crate::registry::PluginState::Ready) => {
                    Some(m.clone())
                }
                _ => None,
            })
            .collect(),
    );
    if !filters.is_empty() {
        app = app.layer(axum::middleware::from_fn_with_state(
            filters,
            extensions::run_filters,
        ));
    }
    if let Some(rps) = state.config.limits.requests_per_second {
        match crate::middleware::rate_limit::RateLimit::new(rps, state.config.limits.burst) {
            Ok(limit) => app = limit.apply(app),
            Err(e) => tracing::error!(error = %e, "rate limiting disabled: invalid limits"),
        }
    }
    let app = app
        .fallback(not_found)
        .layer(axum::middleware::map_response(headers::security_headers));
    // Outermost, so a preflight is answered before auth or rate limits see it.
    match cors::layer(&state.config.server.cors_allowed_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    }
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
