//! The host's side of a TTS session for plugins that implement `synthesize`: the request queue,
//! its order and cancellation. A plugin only turns one request into audio.

use futures::FutureExt;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use waav_plugin_api::{
    AudioSink, CancelFlag, PluginError, ProviderTask, SpeakRequest, TtsEvent, TtsInput, TtsIo,
    TtsPlugin, TtsSessionConfig,
};

/// Keeps `speak` requests in order and applies `Cancel`, reading ahead so a cancel behind queued
/// requests is seen early. Holds at most [`SpeakQueue::MAX_QUEUED`] requests; past that, input
/// stays in the bounded channel and pushes back on the session (which bounds itself far lower).
#[derive(Debug)]
pub(crate) struct SpeakQueue {
    input: tokio::sync::mpsc::Receiver<TtsInput>,
    queue: VecDeque<SpeakRequest>,
    cancel: CancelFlag,
}

/// Why waiting on the queue ended.
enum Wake {
    Cancelled,
    Closed,
}

impl SpeakQueue {
    pub(crate) const MAX_QUEUED: usize = 16 * 1024;

    pub(crate) fn new(input: tokio::sync::mpsc::Receiver<TtsInput>, cancel: CancelFlag) -> Self {
        Self {
            input,
            queue: VecDeque::new(),
            cancel,
        }
    }

    fn accept(&mut self, input: TtsInput) {
        match input {
            TtsInput::Speak(r) if !self.cancel.is_cancelled(r.id) => self.queue.push_back(r),
            TtsInput::Speak(_) => {}
            TtsInput::Cancel { up_to } => {
                self.cancel.cancel_up_to(up_to);
                self.queue.retain(|r| r.id > up_to);
            }
        }
    }

    fn poll_input(&mut self) {
        while self.queue.len() < Self::MAX_QUEUED {
            let Ok(input) = self.input.try_recv() else {
                break;
            };
            self.accept(input);
        }
    }

    /// The next request, waiting for one; `None` once the session closed its input.
    pub(crate) async fn next(&mut self) -> Option<SpeakRequest> {
        loop {
            self.poll_input();
            if let Some(r) = self.queue.pop_front() {
                return Some(r);
            }
            let input = self.input.recv().await?;
            self.accept(input);
        }
    }

    /// Reads input until request `id` is cancelled or the input closes. Cancel-safe.
    async fn until_cancelled(&mut self, id: u64) -> Wake {
        loop {
            if self.cancel.is_cancelled(id) {
                return Wake::Cancelled;
            }
            if self.queue.len() >= Self::MAX_QUEUED {
                // Full: stop reading; a cancel now waits in the channel until this request ends.
                return std::future::pending().await;
            }
            match self.input.recv().await {
                Some(input) => self.accept(input),
                None => return Wake::Closed,
            }
        }
    }
}

/// The session task for a plugin without a streaming contract: requests one at a time, in
/// order; a cancelled request's synthesis is dropped at once.
pub(crate) fn run(plugin: Arc<dyn TtsPlugin>, config: TtsSessionConfig, io: TtsIo) -> ProviderTask {
    Box::pin(async move {
        let TtsIo { input, events } = io;
        let cancel = CancelFlag::new();
        let mut queue = SpeakQueue::new(input, cancel.clone());
        while let Some(request) = queue.next().await {
            let id = request.id;
            let sink = AudioSink::new(id, events.clone(), cancel.clone());
            // A panic ends this session's provider (the link reports it), not the process.
            let synth = AssertUnwindSafe(plugin.synthesize(&config, request, sink)).catch_unwind();
            let result = tokio::select! {
                r = synth => Some(r.map_err(|p| PluginError::from_panic(&*p))),
                wake = queue.until_cancelled(id) => match wake {
                    Wake::Cancelled => None,
                    Wake::Closed => return Ok(()),
                },
            };
            let event = match result {
                // Cancelled (while synthesising or as it finished): the host dropped it.
                None => continue,
                Some(Ok(Ok(()))) if cancel.is_cancelled(id) => continue,
                Some(Ok(Ok(()))) => TtsEvent::Done { id },
                Some(Ok(Err(error))) => TtsEvent::Error { id, error },
                Some(Err(panic)) => return Err(panic),
            };
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speak(id: u64) -> TtsInput {
        TtsInput::Speak(SpeakRequest {
            id,
            text: String::new(),
            flush: true,
        })
    }

    #[tokio::test]
    async fn speak_queue_orders_and_cancels() {
        let (io, peer) = TtsIo::pair(8);
        let flag = CancelFlag::new();
        let mut q = SpeakQueue::new(io.input, flag.clone());
        for input in [
            speak(1),
            speak(2),
            speak(3),
            TtsInput::Cancel { up_to: 2 },
            speak(4),
        ] {
            peer.input.send(input).await.unwrap();
        }
        assert_eq!(q.next().await.unwrap().id, 3);
        assert!(!flag.is_cancelled(3));
        peer.input
            .send(TtsInput::Cancel { up_to: 3 })
            .await
            .unwrap();
        assert!(matches!(q.until_cancelled(3).await, Wake::Cancelled));
        assert_eq!(q.next().await.unwrap().id, 4);
        drop(peer);
        assert!(q.next().await.is_none());
    }
}
