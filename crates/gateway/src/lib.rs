//! WaaV Gateway: a real-time voice AI gateway.
//!
//! One WebSocket/REST API in front of every speech-to-text, text-to-speech and speech-to-speech
//! provider, each a plugin (see `waav-plugin-api`). This crate is the host: configuration,
//! registry, isolation, transports and the `waav-gateway` command line.
//!
//! Where things live:
//! - [`config`]: YAML + environment + CLI, `${VAR}` substitution.
//! - [`registry`]: linked plugins, names, lifecycle, health.
//! - [`isolation`]: panic containment and deadlines around plugin code.
//! - [`transport`]: HTTP routes.
//! - [`server`]: start, serve, graceful stop. [`cli`]: the command line.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod isolation;
pub mod registry;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod transport;

pub use server::Gateway;
