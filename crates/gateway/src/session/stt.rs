//! A session's link to its STT provider: opening it, feeding audio, reading events.

use super::errors::WsError;
use super::protocol::SttConfig;
use crate::isolation::{guard, spawn_supervised};
use crate::metrics::Metrics;
use crate::registry::Registry;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waav_plugin_api::{AudioEncoding, PluginError, SttEvent, SttInput, SttIo, SttSessionConfig};

/// Audio chunks buffered towards the provider (about 1.3 s of 20 ms frames).
const INPUT_CAPACITY: usize = 64;
/// How long a full provider queue may hold up the session before audio is dropped.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(500);

/// An open STT provider session.
#[derive(Debug)]
pub struct SttLink {
    /// Provider id (for `provider` in results, metrics, errors).
    pub provider: &'static str,
    input: Sender<SttInput>,
    events: Receiver<SttEvent>,
    task: Option<JoinHandle<Result<(), PluginError>>>,
    opened_at: Instant,
    first_result: bool,
}

/// What the provider side produced.
#[derive(Debug)]
pub enum SttSignal {
    /// An event.
    Event(SttEvent),
    /// The provider session ended (cleanly or not).
    Ended(Result<(), PluginError>),
}

impl SttLink {
    /// Resolves, validates and connects the provider named in `cfg`.
    pub async fn open(
        registry: &Registry,
        cfg: &SttConfig,
        connect_timeout: Duration,
    ) -> Result<Self, WsError> {
        let invalid = |message: String| WsError::InvalidConfig {
            section: "stt_config",
            message,
        };
        let encoding: AudioEncoding = cfg.encoding.parse().map_err(|e| invalid(format!("{e}")))?;
        if cfg.sample_rate == 0 || cfg.channels == 0 {
            return Err(invalid("sample_rate and channels must be positive".into()));
        }
        let p = registry.stt(&cfg.provider, cfg.api_key.as_deref())?;
        let caps = p.entry.capabilities();
        caps.check_model(&cfg.model)
            .and_then(|()| caps.check_encoding(encoding))
            .and_then(|()| caps.check_sample_rate(cfg.sample_rate))
            .map_err(invalid)?;
        let provider = p.entry.info.id;
        let mut session = SttSessionConfig::new(cfg.language.clone(), cfg.sample_rate)
            .with_model(cfg.model.clone())
            .with_api_key(p.api_key)
            .with_format(encoding, cfg.channels)
            .with_plugin_config(p.entry.plugin_config());
        session.punctuation = cfg.punctuation;
        let (io, peer) = SttIo::pair(INPUT_CAPACITY);
        let started = Instant::now();
        let what = format!("STT provider {provider} connect");
        let task = guard(&what, connect_timeout, p.plugin.connect(session, io))
            .await
            .map_err(|error| match error {
                PluginError::Timeout(_) => WsError::ProviderTimeout,
                error => WsError::Provider {
                    role: "STT",
                    provider,
                    error,
                },
            })?;
        Metrics::get().provider_latency(provider, "connect", started.elapsed());
        Ok(Self {
            provider,
            input: peer.input,
            events: peer.events,
            task: Some(spawn_supervised(task)),
            opened_at: Instant::now(),
            first_result: false,
        })
    }

    /// Forwards one chunk of client audio. Waits briefly when the provider is behind; past that
    /// the chunk is dropped and reported.
    pub async fn send_audio(&self, audio: Bytes) -> Result<(), WsError> {
        match self.input.try_send(SttInput::Audio(audio)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Ok(()), // the end is reported through `next`
            Err(TrySendError::Full(item)) => {
                match tokio::time::timeout(BACKPRESSURE_WAIT, self.input.send(item)).await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(WsError::SttBackpressure(self.provider)),
                }
            }
        }
    }

    /// The next event, or the provider's end once its events are drained.
    pub async fn next(&mut self) -> SttSignal {
        match self.events.recv().await {
            Some(ev) => {
                if !self.first_result {
                    self.first_result = true;
                    Metrics::get().provider_latency(
                        self.provider,
                        "first_result",
                        self.opened_at.elapsed(),
                    );
                }
                SttSignal::Event(ev)
            }
            None => {
                let result = match self.task.take() {
                    Some(t) => t.await.unwrap_or_else(|e| {
                        Err(PluginError::Panicked(format!("provider task aborted: {e}")))
                    }),
                    None => std::future::pending().await,
                };
                SttSignal::Ended(result)
            }
        }
    }

    /// Stops the provider: closes its input, gives it `grace` to finish, then aborts it.
    pub async fn close(mut self, grace: Duration) {
        drop(self.input);
        drop(self.events);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
