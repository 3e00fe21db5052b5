//! Shared client plumbing for WaaV Gateway cloud providers.
//!
//! A provider crate should be "its protocol and nothing else": it builds requests and parses vendor
//! messages, and this crate does the rest:
//!
//! - [`ws`]: a WebSocket client (rustls, TCP_NODELAY, small buffers, keepalive, idle timeout), a
//!   [`ws::ReplayBuffer`] of unacknowledged audio and a [`ws::Reconnector`] with backoff.
//! - [`http`]: one pooled HTTP client per plugin instance, streaming bodies, and readers for
//!   Server-Sent Events ([`http::sse`]), bounded chunks ([`http::chunks`]) and JSON lines
//!   ([`http::lines`]).
//! - [`errors`]: the one place that maps HTTP statuses, `retry-after`, WebSocket close codes and
//!   I/O failures onto [`PluginError`] categories.
//! - [`redact`]: scrubs secrets from every message the kit produces.
//! - [`backoff`]: exponential backoff with jitter and attempt/elapsed bounds.
//! - [`retry`]: budgeted retries (tower's retry budget) of HTTP requests and WebSocket handshakes
//!   before the first response byte.
//! - `aws` (feature `aws`): SigV4 headers and presigned URLs, event-stream framing and chunk signing.
//! - `grpc` (feature `grpc`): a tonic channel builder and `tonic::Status` mapping.
//!
//! Every error the kit returns has passed through a [`redact::Redactor`], so a secret never reaches
//! an error message or a log line through the kit.

#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod backoff;
pub mod errors;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod http;
pub mod redact;
pub mod retry;
pub mod tls;
pub mod ws;

pub use waav_plugin_api::{ErrorCategory, PluginError, Secret};
