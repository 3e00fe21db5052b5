//! The session task: segment the input, run at most `max_inflight` requests at once, and emit
//! their results in utterance order.
//!
//! Each request runs in its own spawned task (aborted when the session ends) and reports into
//! its own small channel; the session forwards only the oldest request's channel, so interims
//! and finals come out in order even when a later request answers first.

use super::client::{Client, Outcome};
use super::segmenter::{Params, Segmenter, Utterance};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waav_plugin_api::{ErrorCategory, PluginError, SttEvent, SttInput, SttIo, VadEvent};

/// Outcomes buffered per request (interims beyond it are dropped, never the final).
const OUTCOME_QUEUE: usize = 32;

/// Aborts the request task when dropped, so a finished session leaves nothing running.
struct Inflight {
    rx: mpsc::Receiver<Outcome>,
    task: JoinHandle<()>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running session.
pub struct Session {
    client: Arc<Client>,
    seg: Segmenter,
    io: SttIo,
    seq: u64,
}

impl Session {
    /// A session over `io`.
    pub fn new(client: Client, io: SttIo) -> Self {
        let s = &client.settings;
        let seg = Segmenter::new(Params {
            sample_rate: client.sample_rate,
            max_utterance: s.max_utterance,
            min_utterance: s.min_utterance,
            pre_roll: s.pre_roll,
            silence_level: s.silence_level,
        });
        Self {
            client: Arc::new(client),
            seg,
            io,
            seq: 0,
        }
    }

    fn launch(&mut self, utt: Utterance) -> Inflight {
        self.seq += 1;
        let seq = self.seq;
        let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
        let client = self.client.clone();
        tracing::debug!(
            seq,
            bytes = utt.pcm.len(),
            cut = ?utt.cut,
            "{}: transcribing an utterance",
            client.flavor.context
        );
        let task = tokio::spawn(async move { client.transcribe(&utt, seq, &tx).await });
        Inflight { rx, task }
    }

    /// Runs until the input closes and the results are drained (bounded), the host stops
    /// listening, or a fatal error (Auth, Config).
    pub async fn run(mut self) -> Result<(), PluginError> {
        let settings = self.client.settings.clone();
        let ctx = self.client.flavor.context;
        let mut queued: VecDeque<Utterance> = VecDeque::new();
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let mut cuts = Vec::new();
        let mut input_open = true;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            while inflight.len() < settings.max_inflight {
                match queued.pop_front() {
                    Some(u) => {
                        let f = self.launch(u);
                        inflight.push_back(f);
                    }
                    None => break,
                }
            }
            if !input_open && inflight.is_empty() && queued.is_empty() {
                return Ok(());
            }
            tokio::select! {
                out = head(&mut inflight) => match out {
                    Some(outcome) => {
                        if !self.emit(outcome).await? {
                            return Ok(());
                        }
                    }
                    None => {
                        inflight.pop_front();
                    }
                },
                input = self.io.input.recv(), if input_open => match input {
                    Some(SttInput::Audio(b)) => self.seg.audio(&b, &mut cuts),
                    Some(SttInput::Finalize) => self.seg.finalize(&mut cuts),
                    Some(SttInput::Vad(VadEvent::SpeechStarted { at_ms })) => {
                        self.seg.speech_started(at_ms)
                    }
                    Some(SttInput::Vad(VadEvent::SpeechEnded { .. })) => {
                        self.seg.speech_ended(&mut cuts)
                    }
                    Some(_) => {}
                    None => {
                        self.seg.close(&mut cuts);
                        input_open = false;
                        drain_deadline = Some(Instant::now() + settings.drain_timeout);
                    }
                },
                () = sleep_until(drain_deadline) => {
                    tracing::debug!(
                        outstanding = inflight.len() + queued.len(),
                        "{ctx}: drain timeout after the input closed; dropping outstanding results"
                    );
                    return Ok(());
                }
                () = self.io.events.closed() => return Ok(()),
            }
            for u in cuts.drain(..) {
                if queued.len() >= settings.max_queued {
                    let e = PluginError::RateLimited {
                        retry_after: None,
                        message: format!(
                            "{ctx}: {} utterances already wait for a request slot; one was dropped",
                            queued.len()
                        ),
                    };
                    if self.io.events.send(SttEvent::Error(e)).await.is_err() {
                        return Ok(());
                    }
                } else {
                    queued.push_back(u);
                }
            }
        }
    }

    /// Forwards one outcome. `Ok(false)`: the host is gone.
    async fn emit(&mut self, outcome: Outcome) -> Result<bool, PluginError> {
        let event = match outcome {
            Outcome::Interim(t) => SttEvent::from(t),
            Outcome::Final(t) if t.text.is_empty() => {
                if !t.is_speech_final {
                    return Ok(true);
                }
                SttEvent::UtteranceEnd
            }
            Outcome::Final(t) => SttEvent::from(t),
            Outcome::Failed(e) => {
                if matches!(e.category(), ErrorCategory::Auth | ErrorCategory::Config) {
                    return Err(e);
                }
                tracing::debug!(error = %e, "{}: an utterance failed", self.client.flavor.context);
                SttEvent::Error(e)
            }
        };
        Ok(self.io.events.send(event).await.is_ok())
    }
}

/// The next outcome of the oldest request (`None` once it is done); pending when none runs.
async fn head(inflight: &mut VecDeque<Inflight>) -> Option<Outcome> {
    match inflight.front_mut() {
        Some(f) => f.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
