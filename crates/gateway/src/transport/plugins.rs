//! `GET /plugins` and `GET /health/plugins`.

use crate::registry::PluginState;
use crate::state::SharedState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// Every registered plugin with its metadata, capabilities and state.
pub async fn list(State(state): State<SharedState>) -> Json<Value> {
    let plugins: Vec<Value> = state
        .registry
        .entries()
        .iter()
        .map(|e| {
            let st = e.state();
            let routes: &[waav_plugin_api::RouteSpec] = match &e.handle {
                waav_plugin_api::PluginHandle::Route(p) => p.routes(),
                _ => &[],
            };
            // Where a processor runs (`pre_stt`, `post_stt`, `pre_tts`, `post_tts`).
            let stages = match &e.handle {
                waav_plugin_api::PluginHandle::Processor(p) => Some(p.stages()),
                _ => None,
            };
            json!({
                "id": e.id,
                "plugin": e.info.id,
                "name": e.info.name,
                "version": e.info.version,
                "kind": e.handle.kind(),
                "aliases": e.info.aliases,
                "description": e.info.description,
                "enabled": e.section.enabled,
                "state": st,
                "routes": routes,
                "stages": stages,
                // Which credentials are configured for the instance, never their values.
                "credentials": e.info.credential_fields().iter().map(|f| json!({
                    "name": f.name,
                    "secret": f.secret,
                    "required": f.required,
                    "env": if e.is_default_instance() { f.env } else { None },
                    "configured": e.credentials.contains(f.name),
                })).collect::<Vec<_>>(),
                "capabilities": if st == PluginState::Ready { json!(e.capabilities()) } else { Value::Null },
            })
        })
        .collect();
    // The processor instances pipelines name, with what each may cost per frame.
    let budget_us = crate::pipeline::frame_budget(std::time::Duration::from_millis(20)).as_micros();
    let processors: Vec<Value> = state
        .registry
        .processor_instances()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "plugin": p.plugin,
                "stages": p.stages,
                "settings": p.settings.as_map(),
                "budget_us_per_20ms_frame": budget_us,
                "latency_estimate_ms": p.latency_estimate.as_secs_f64() * 1000.0,
            })
        })
        .collect();
    Json(json!({ "plugins": plugins, "processors": processors }))
}

/// Per-plugin health; 503 when a plugin marked `required` is not healthy.
pub async fn health(State(state): State<SharedState>) -> (StatusCode, Json<Value>) {
    let (plugins, ok) = state.registry.health();
    // Each provider's circuit breaker, next to its health.
    let plugins: Vec<Value> = plugins
        .into_iter()
        .map(|p| {
            let circuit = p.kind.and_then(|k| state.resilience.state(k, &p.id));
            let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
            if let (Some(c), Some(obj)) = (circuit, v.as_object_mut()) {
                obj.insert("circuit".into(), json!(c));
            }
            v
        })
        .collect();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "ok" } else { "unhealthy" };
    (code, Json(json!({ "status": status, "plugins": plugins })))
}
