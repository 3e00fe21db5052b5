//! The two channels between the host and a provider session: inputs in, events out, in order.

use tokio::sync::mpsc;

/// The provider's ends of a session's channels.
#[derive(Debug)]
pub struct SessionIo<I, E> {
    /// Inputs from the host; closes when the host ends the session.
    pub input: mpsc::Receiver<I>,
    /// Events to the host.
    pub events: mpsc::Sender<E>,
}

/// The host's ends of a session's channels.
#[derive(Debug)]
pub struct SessionPeer<I, E> {
    /// Sends inputs to the session.
    pub input: mpsc::Sender<I>,
    /// Receives the session's events.
    pub events: mpsc::Receiver<E>,
}

impl<I, E> SessionIo<I, E> {
    /// Creates connected channel pairs with room for `capacity` items each way.
    pub fn pair(capacity: usize) -> (Self, SessionPeer<I, E>) {
        let (in_tx, in_rx) = mpsc::channel(capacity);
        let (ev_tx, ev_rx) = mpsc::channel(capacity);
        (
            Self {
                input: in_rx,
                events: ev_tx,
            },
            SessionPeer {
                input: in_tx,
                events: ev_rx,
            },
        )
    }
}
