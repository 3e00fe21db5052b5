//! WaaV Gateway: a real-time voice AI gateway.
//!
//! One WebSocket/REST API in front of every speech-to-text, text-to-speech and speech-to-speech
//! provider, each a plugin (see `waav-plugin-api`). This crate is the host: configuration,
//! registry, isolation, transports and the `waav-gateway` command line.
//!
//! The public surface is what embedders and plugin hosts need: [`Gateway`] (start, serve,
//! router), [`config`], [`registry`] queries, [`cli::main`], the wire types in
//! [`session::protocol`], and the audio bridge in [`audio`]. Where things live:
//! - [`config`]: YAML + environment + CLI, `${VAR}` substitution.
//! - [`registry`]: linked plugins, names, lifecycle, health.
//! - `isolation`: panic containment and deadlines around plugin code.
//! - [`session`]: one `/ws` voice session: protocol, STT/TTS links, turn logic, outgoing FIFO.
//! - `transport`: HTTP and WebSocket routes; `middleware`: auth and connection caps.
//! - [`audio`]: format negotiation and conversion between clients and plugins.
//! - [`pipeline`]: a session's audio processors per stage, with accounting and containment.
//! - [`resilience`]: circuit breakers and failover chains.
//! - [`cache`]: the TTS cache. `metrics`: Prometheus metrics.
//! - [`server`]: start, serve, graceful stop. [`cli`]: the command line.
#![warn(missing_docs)]

pub mod audio;
pub mod cache;
pub mod cli;
pub mod config;
pub(crate) mod isolation;
pub(crate) mod metrics;
pub(crate) mod middleware;
pub mod pipeline;
pub mod registry;
pub mod resilience;
pub mod server;
pub mod session;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod transport;

pub use server::Gateway;
