//! Distributed registration: linking a crate that calls [`register_plugin!`](crate::register_plugin)
//! registers its plugins.

use crate::{
    MiddlewarePlugin, Plugin, PluginKind, ProcessorPlugin, RealtimePlugin, RoutePlugin, SttPlugin,
    TtsPlugin,
};
use std::sync::Arc;

/// A shared plugin object, by role.
#[derive(Clone)]
pub enum PluginHandle {
    /// Speech-to-text provider.
    Stt(Arc<dyn SttPlugin>),
    /// Text-to-speech provider.
    Tts(Arc<dyn TtsPlugin>),
    /// Speech-to-speech provider.
    Realtime(Arc<dyn RealtimePlugin>),
    /// Audio processor.
    Processor(Arc<dyn ProcessorPlugin>),
    /// HTTP middleware.
    Middleware(Arc<dyn MiddlewarePlugin>),
    /// Routes and custom messages.
    Route(Arc<dyn RoutePlugin>),
}

impl PluginHandle {
    /// The plugin's role.
    pub fn kind(&self) -> PluginKind {
        match self {
            Self::Stt(_) => PluginKind::Stt,
            Self::Tts(_) => PluginKind::Tts,
            Self::Realtime(_) => PluginKind::Realtime,
            Self::Processor(_) => PluginKind::Processor,
            Self::Middleware(_) => PluginKind::Middleware,
            Self::Route(_) => PluginKind::Route,
        }
    }

    /// The plugin as its base trait.
    pub fn plugin(&self) -> &dyn Plugin {
        match self {
            Self::Stt(p) => &**p,
            Self::Tts(p) => &**p,
            Self::Realtime(p) => &**p,
            Self::Processor(p) => &**p,
            Self::Middleware(p) => &**p,
            Self::Route(p) => &**p,
        }
    }
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("kind", &self.kind())
            .field("id", &self.plugin().info().id)
            .finish()
    }
}

/// One registration, collected from every linked crate with `inventory`.
#[derive(Debug)]
pub struct PluginRegistration {
    /// Module that registered it (identifies the plugin if its constructor panics).
    pub module: &'static str,
    /// Creates the plugin object. Called once per registry.
    pub create: fn() -> PluginHandle,
}

inventory::collect!(PluginRegistration);

/// Every registration linked into this program.
pub fn registrations() -> impl Iterator<Item = &'static PluginRegistration> {
    inventory::iter::<PluginRegistration>.into_iter()
}

/// Registers a plugin with the gateway.
///
/// `register_plugin!(Kind, constructor_expression)` where `Kind` is one of `Stt`, `Tts`, `Realtime`,
/// `Processor`, `Middleware`, `Route`. The expression runs once per registry build (inside a panic
/// guard). Use it at module level in a crate the gateway binary links.
///
/// ```
/// use waav_plugin_api::{register_plugin, Plugin, PluginInfo, ProcessorPlugin, Stage,
///     AudioProcessor, AudioBuffer, ProcessorEvent, ProcessorContext, PluginConfig, PluginError};
///
/// struct Gain;
/// impl Plugin for Gain {
///     fn info(&self) -> PluginInfo { PluginInfo::new("gain", "Gain") }
/// }
/// struct GainProc(i16);
/// impl AudioProcessor for GainProc {
///     fn process(&mut self, a: &mut AudioBuffer, _: &mut Vec<ProcessorEvent>) -> Result<(), PluginError> {
///         a.samples.iter_mut().for_each(|s| *s = s.saturating_mul(self.0));
///         Ok(())
///     }
/// }
/// impl ProcessorPlugin for Gain {
///     fn stages(&self) -> &'static [Stage] { &[Stage::PreStt] }
///     fn create(&self, _: &ProcessorContext, c: &PluginConfig) -> Result<Box<dyn AudioProcessor>, PluginError> {
///         Ok(Box::new(GainProc(c.i64("factor")?.unwrap_or(2) as i16)))
///     }
/// }
/// register_plugin!(Processor, Gain);
///
/// assert!(waav_plugin_api::registrations().any(|r| (r.create)().plugin().info().id == "gain"));
/// ```
#[macro_export]
macro_rules! register_plugin {
    ($kind:ident, $ctor:expr) => {
        const _: () = {
            fn __waav_create_plugin() -> $crate::PluginHandle {
                $crate::PluginHandle::$kind(::std::sync::Arc::new($ctor))
            }
            $crate::inventory::submit! {
                $crate::PluginRegistration {
                    module: ::core::module_path!(),
                    create: __waav_create_plugin,
                }
            }
        };
    };
}
