//! The plugin contract of WaaV Gateway.
//!
//! Every provider (STT, TTS, realtime), audio processor, middleware and route extension is a
//! [`Plugin`]. A plugin crate depends on this crate only, implements one role trait, and calls
//! [`register_plugin!`] once; linking the crate into a gateway build registers it.
//!
//! Provider sessions are **streams, not callbacks**: the host hands a session one input channel
//! and one event channel ([`SttIo`], [`TtsIo`], [`RealtimeIo`]); the plugin's `connect` returns a
//! [`ProviderTask`] that the host spawns and supervises (timeouts, panic containment).
//!
//! # A complete STT plugin
//!
//! ```
//! use waav_plugin_api::*;
//!
//! /// Reports how many bytes of audio it heard.
//! struct ByteCounter;
//!
//! impl Plugin for ByteCounter {
//!     fn info(&self) -> PluginInfo {
//!         PluginInfo::new("byte-counter", "Byte Counter").version("1.0.0").aliases(&["counter"])
//!     }
//! }
//!
//! #[async_trait::async_trait]
//! impl SttPlugin for ByteCounter {
//!     async fn connect(&self, _cfg: SttSessionConfig, mut io: SttIo) -> Result<ProviderTask, PluginError> {
//!         Ok(Box::pin(async move {
//!             let mut heard = 0usize;
//!             while let Some(input) = io.input.recv().await {
//!                 let event = match input {
//!                     SttInput::Audio(bytes) => {
//!                         heard += bytes.len();
//!                         Transcript::interim(format!("{heard} bytes"), 0.5)
//!                     }
//!                     SttInput::Finalize => Transcript::final_result(format!("{heard} bytes"), 1.0, true),
//!                     _ => continue, // VAD boundaries: this plugin does not segment
//!                 };
//!                 if io.events.send(SttEvent::Transcript(Box::new(event))).await.is_err() {
//!                     break; // the host hung up
//!                 }
//!             }
//!             Ok(())
//!         }))
//!     }
//! }
//!
//! register_plugin!(Stt, ByteCounter);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // What the host does for each session:
//! let (io, mut peer) = SttIo::pair(16);
//! let task = ByteCounter.connect(SttSessionConfig::new("en-US", 16_000), io).await.unwrap();
//! tokio::spawn(task);
//! peer.input.send(SttInput::Audio(bytes::Bytes::from_static(&[0; 640]))).await.unwrap();
//! peer.input.send(SttInput::Finalize).await.unwrap();
//! let SttEvent::Transcript(t) = peer.events.recv().await.unwrap() else { panic!() };
//! assert_eq!((t.text.as_str(), t.is_final), ("640 bytes", false));
//! let SttEvent::Transcript(t) = peer.events.recv().await.unwrap() else { panic!() };
//! assert!(t.is_final && t.is_speech_final);
//! # }
//! ```
#![warn(missing_docs)]

mod audio;
mod capabilities;
pub mod codec;
mod config;
pub mod credentials;
mod error;
mod extension;
mod io;
mod plugin;
mod processor;
mod realtime;
mod registration;
pub mod sentences;
mod stt;
mod tts;

pub use audio::{AudioBuffer, AudioEncoding, AudioFormat, UnknownEncoding};
pub use capabilities::{Capabilities, ModelInfo, VoiceInfo};
pub use config::{PluginConfig, Secret};
pub use credentials::{CredentialField, Credentials};
pub use error::{ErrorCategory, PluginError};
pub use extension::{
    CustomMessageContext, HttpRequest, HttpResponse, MiddlewarePlugin, RoutePlugin, RouteSpec,
    MAX_PLUGIN_BODY,
};
pub use io::{SessionIo, SessionPeer};
pub use plugin::{HealthStatus, Plugin, PluginContext, PluginInfo, PluginKind};
pub use processor::{
    replace_words, AudioProcessor, ProcessorContext, ProcessorEvent, ProcessorPlugin, Stage,
    TextProcessor,
};
pub use realtime::{
    RealtimeEvent, RealtimeInput, RealtimeIo, RealtimePeer, RealtimePlugin, RealtimeSessionConfig,
    Role,
};
pub use registration::{registrations, PluginHandle, PluginRegistration};
pub use stt::{
    ProviderTask, SttEvent, SttInput, SttIo, SttPeer, SttPlugin, SttSessionConfig, Transcript,
    VadEvent, Word,
};
pub use tts::{
    AudioSink, CancelFlag, Emotion, Pronunciation, SinkClosed, SpeakRequest, TtsEvent, TtsInput,
    TtsIo, TtsPeer, TtsPlugin, TtsSessionConfig,
};

/// `docs/plugins.md`, compiled and run as doctests so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/plugins.md")]
pub struct PluginsGuide;

// Re-exported so plugin crates need no direct dependency for the macro or the traits.
pub use async_trait;
pub use bytes;
pub use http;
#[doc(hidden)]
pub use inventory;
