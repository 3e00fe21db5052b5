//! A running provider session as the session engine sees it: its input sender, its event
//! receiver and its supervised task.

use super::errors::WsError;
use crate::isolation::spawn_supervised;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
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

/// Why an input could not be handed to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The provider session has ended.
    Gone,
    /// The provider did not read its input within the stall bound.
    Stalled,
}

/// One provider session.
#[derive(Debug)]
pub struct Link<I, E> {
    input: Sender<I>,
    events: tokio::sync::mpsc::Receiver<E>,
    task: Option<JoinHandle<Result<(), PluginError>>>,
}

impl<I, E> Link<I, E> {
    /// Spawns `task` under supervision, talking over `peer`.
    pub fn spawn(peer: SessionPeer<I, E>, task: ProviderTask) -> Self {
        Self {
            input: peer.input,
            events: peer.events,
            task: Some(spawn_supervised(task)),
        }
    }

    /// The next event, or the provider's end once its events are drained.
    ///
    /// Cancel-safe (it runs inside `select!`): the join handle is polled by reference and taken
    /// only once it has completed, so a lost branch never drops the provider's end.
    pub async fn next(&mut self) -> Signal<E> {
        if let Some(ev) = self.events.recv().await {
            return Signal::Event(ev);
        }
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task
            .await
            .unwrap_or_else(|e| Err(PluginError::Panicked(format!("provider task aborted: {e}"))));
        self.task = None;
        Signal::Ended(result)
    }

    /// Sends `item` to the provider, waiting at most `stall` for room. `Err(Stalled)` when the
    /// provider has not read its input for that long; `Err(Gone)` when it has ended (its end is
    /// reported through [`Link::next`]).
    pub async fn send_within(&self, item: I, stall: Duration) -> Result<(), SendError> {
        match self.input.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(SendError::Gone),
            Err(TrySendError::Full(item)) => {
                match tokio::time::timeout(stall, self.input.send(item)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(SendError::Gone),
                    Err(_) => Err(SendError::Stalled),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::SessionIo;

    /// `next` lost in `select!` many times over must still deliver the provider's end.
    #[tokio::test]
    async fn next_is_cancel_safe_across_the_end_of_the_provider() {
        let (io, peer) = SessionIo::<u8, u8>::pair(4);
        let task: ProviderTask = Box::pin(async move {
            let SessionIo { input, events } = io;
            drop(events);
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(input);
            Err(PluginError::Transient("gone".into()))
        });
        let mut link = Link::spawn(peer, task);
        let mut lost = 0;
        let ended = loop {
            tokio::select! {
                sig = link.next() => break sig,
                () = tokio::time::sleep(Duration::from_millis(1)) => lost += 1,
            }
        };
        assert!(lost > 5, "the timer branch won {lost} times");
        assert!(
            matches!(ended, Signal::Ended(Err(PluginError::Transient(_)))),
            "{ended:?}"
        );
    }

    #[tokio::test]
    async fn send_within_reports_a_provider_that_does_not_read() {
        let (io, peer) = SessionIo::<u8, u8>::pair(1);
        let task: ProviderTask = Box::pin(async move {
            let _held = io;
            std::future::pending::<()>().await;
            Ok(())
        });
        let link = Link::spawn(peer, task);
        let stall = Duration::from_millis(20);
        assert_eq!(link.send_within(1, stall).await, Ok(()));
        assert_eq!(link.send_within(2, stall).await, Err(SendError::Stalled));
        link.close(Duration::from_millis(10)).await;
    }
}
