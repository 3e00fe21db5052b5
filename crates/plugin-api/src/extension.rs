//! Plugins that extend the server itself: middleware and routes.
//!
//! They speak the `http` crate's types, not a server framework's: a plugin built against this
//! contract does not pin the gateway's HTTP stack (or its major version), and the host adapts.

use crate::{Plugin, PluginError};
use bytes::Bytes;
use serde::Serialize;

/// An HTTP request as a plugin sees it: head and the whole body (the host caps its size at
/// [`MAX_PLUGIN_BODY`] bytes and answers 413 past it).
pub type HttpRequest = http::Request<Bytes>;
/// An HTTP response from a plugin.
pub type HttpResponse = http::Response<Bytes>;

/// Largest request body the host reads for a plugin route.
pub const MAX_PLUGIN_BODY: usize = 1024 * 1024;

/// A plugin that looks at every HTTP request before it is routed: an access check, a rate limit,
/// a policy. Filters run in descending [`MiddlewarePlugin::order`] (the highest first); the first
/// that answers ends the request.
///
/// A filter rather than a wrapping layer, by design: it is object-safe, needs no body type shared
/// with the host, and leaves response-side concerns (CORS, headers, compression) to the core.
#[async_trait::async_trait]
pub trait MiddlewarePlugin: Plugin {
    /// Position among middleware; higher runs first.
    fn order(&self) -> i32 {
        0
    }

    /// `None` lets the request through; `Some(response)` answers it instead. `peer` is the
    /// client's socket address when the host knows it.
    async fn check(
        &self,
        request: &http::request::Parts,
        peer: Option<std::net::SocketAddr>,
    ) -> Option<HttpResponse>;
}

/// One HTTP route of a route plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path (`/webhooks/calls`); `{name}` segments match any one segment.
    pub path: &'static str,
    /// Served without the gateway's authentication (a webhook that checks its own signature,
    /// say). Listed as such in `/plugins`.
    pub public: bool,
}

impl RouteSpec {
    /// A `GET` route behind the gateway's authentication.
    pub const fn get(path: &'static str) -> Self {
        Self {
            method: "GET",
            path,
            public: false,
        }
    }

    /// A `POST` route behind the gateway's authentication.
    pub const fn post(path: &'static str) -> Self {
        Self {
            method: "POST",
            path,
            public: false,
        }
    }

    /// A route with another method behind the gateway's authentication.
    pub const fn new(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            public: false,
        }
    }

    /// The same route, served without authentication.
    pub const fn public(mut self) -> Self {
        self.public = true;
        self
    }
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
    /// The routes it serves. Paths must not collide with core routes (a start-up error).
    fn routes(&self) -> &'static [RouteSpec] {
        &[]
    }

    /// Answers a request to one of [`RoutePlugin::routes`] (`route` is the matching spec). The
    /// host applies a timeout and contains panics; an error becomes a JSON error response with a
    /// status from its category.
    async fn handle_http(
        &self,
        route: &RouteSpec,
        request: HttpRequest,
    ) -> Result<HttpResponse, PluginError> {
        let _ = request;
        Err(PluginError::Permanent(format!(
            "{} {} is not handled",
            route.method, route.path
        )))
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
