//! A running provider session as the session engine sees it: its input sender, its event
//! receiver and its supervised task.

use super::errors::WsError;
use crate::isolation::spawn_supervised;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;
use waav_plugin_api::{PluginError, ProviderTask, SessionPeer};

/// What a provider produced.
#[derive(Debug)]
pub enum Signal<E> {
    /// An event.
    Event(E),
    /// The provider session ended (cleanly or not), after all its events were delivered.
    Ended(Result<(), PluginError>),
}

/// One provider session.
#[derive(Debug)]
pub struct Link<I, E> {
    /// Provider id.
    pub provider: &'static str,
    input: Sender<I>,
    events: tokio::sync::mpsc::Receiver<E>,
    task: Option<JoinHandle<Result<(), PluginError>>>,
}

impl<I, E> Link<I, E> {
    /// Spawns `task` under supervision, talking over `peer`.
    pub fn spawn(provider: &'static str, peer: SessionPeer<I, E>, task: ProviderTask) -> Self {
        Self {
            provider,
            input: peer.input,
            events: peer.events,
            task: Some(spawn_supervised(task)),
        }
    }

    /// The provider's input channel.
    pub fn input(&self) -> &Sender<I> {
        &self.input
    }

    /// The next event, or the provider's end once its events are drained.
    pub async fn next(&mut self) -> Signal<E> {
        if let Some(ev) = self.events.recv().await {
            return Signal::Event(ev);
        }
        match self.task.take() {
            Some(t) => Signal::Ended(t.await.unwrap_or_else(|e| {
                Err(PluginError::Panicked(format!("provider task aborted: {e}")))
            })),
            None => std::future::pending().await,
        }
    }

    /// Stops the provider: closes both channels, gives it `grace` to finish, then aborts it.
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

/// Maps a failed connect to the client-facing error.
pub fn connect_error(role: &'static str, provider: &'static str, error: PluginError) -> WsError {
    match error {
        PluginError::Timeout(_) => WsError::ProviderTimeout,
        error => WsError::Provider {
            role,
            provider,
            error,
        },
    }
}
