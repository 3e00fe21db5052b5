//! Route and middleware plugins, adapted to the server: plugin routes become axum routes (behind
//! auth unless public), middleware plugins one request filter in front of everything.

use crate::isolation::guard;
use crate::middleware::auth;
use crate::state::SharedState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use waav_plugin_api::{
    ErrorCategory, MiddlewarePlugin, PluginError, RoutePlugin, RouteSpec, MAX_PLUGIN_BODY,
};

/// How long a plugin route handler may take.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a middleware check may take before the request is refused.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The routes of every ready route plugin. A route that collides with a core route or an
/// earlier plugin's, or whose path or method axum cannot take, is skipped with an error log.
pub fn plugin_routes(
    state: &SharedState,
    plugins: &[Arc<dyn RoutePlugin>],
    core_paths: &[&str],
) -> Router {
    let mut taken: HashSet<(String, String)> = HashSet::new();
    let mut router = Router::new();
    for plugin in plugins {
        let id = plugin.info().id;
        for spec in plugin.routes() {
            let Some(filter) = method_filter(spec.method) else {
                tracing::error!(
                    plugin = id,
                    method = spec.method,
                    path = spec.path,
                    "unsupported method; route skipped"
                );
                continue;
            };
            let key = (spec.method.to_ascii_uppercase(), spec.path.to_owned());
            if core_paths.contains(&spec.path) || !taken.insert(key) {
                tracing::error!(
                    plugin = id,
                    method = spec.method,
                    path = spec.path,
                    "route collides with another; skipped"
                );
                continue;
            }
            let handler = {
                let plugin = plugin.clone();
                let spec = *spec;
                move |req: Request| {
                    let plugin = plugin.clone();
                    async move { serve(plugin, spec, req).await }
                }
            };
            let mut method_router = on(filter, handler);
            if !spec.public {
                method_router = method_router.route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    auth::require_auth,
                ));
            }
            // axum panics on a path it cannot parse; that must cost the route, not the server.
            let path = spec.path;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Router::new().route(path, method_router)
            })) {
                Ok(r) => router = router.merge(r),
                Err(_) => {
                    tracing::error!(plugin = id, path, "invalid route path; skipped")
                }
            }
        }
    }
    router
}

fn method_filter(method: &str) -> Option<MethodFilter> {
    Some(match method.to_ascii_uppercase().as_str() {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        _ => return None,
    })
}

async fn serve(plugin: Arc<dyn RoutePlugin>, spec: RouteSpec, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_PLUGIN_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body over {MAX_PLUGIN_BODY} bytes"),
        );
    };
    let what = format!(
        "route {} {} of plugin {}",
        spec.method,
        spec.path,
        plugin.info().id
    );
    let request = axum::http::Request::from_parts(parts, body);
    match guard(&what, ROUTE_TIMEOUT, plugin.handle_http(&spec, request)).await {
        Ok(res) => res.map(axum::body::Body::from),
        Err(e) => {
            tracing::warn!(route = %what, error = %e, "plugin route failed");
            error(status_of(&e), e.code(), e.to_string())
        }
    }
}

fn status_of(e: &PluginError) -> StatusCode {
    match e.category() {
        ErrorCategory::Config => StatusCode::BAD_REQUEST,
        ErrorCategory::Auth => StatusCode::FORBIDDEN,
        ErrorCategory::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCategory::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCategory::Transient => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCategory::Permanent | ErrorCategory::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The middleware plugins, highest order first.
#[derive(Clone)]
pub struct Filters(Arc<Vec<Arc<dyn MiddlewarePlugin>>>);

impl Filters {
    /// Sorts `plugins` into the order they run in.
    pub fn new(mut plugins: Vec<Arc<dyn MiddlewarePlugin>>) -> Self {
        plugins.sort_by_key(|m| std::cmp::Reverse(m.order()));
        Self(Arc::new(plugins))
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs every middleware plugin's check; the first answer ends the request. A check that fails
/// (panics or times out) refuses the request: middleware guards things, so it fails closed.
pub async fn run_filters(State(filters): State<Filters>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    for m in filters.0.iter() {
        let what = format!("middleware {}", m.info().id);
        let verdict = guard(&what, CHECK_TIMEOUT, async {
            Ok(m.check(&parts, peer).await)
        })
        .await;
        match verdict {
            Ok(None) => {}
            Ok(Some(res)) => return res.map(axum::body::Body::from),
            Err(e) => {
                tracing::error!(middleware = m.info().id, error = %e, "middleware failed; request refused");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "middleware_failed",
                    format!("middleware {} failed", m.info().id),
                );
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}
