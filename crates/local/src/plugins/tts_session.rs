//! The TTS session both local TTS plugins share: requests in order, sentence by sentence on the
//! bounded inference [`Pool`], so the first sentence's audio leaves before later ones are
//! synthesised; audio is resampled to the requested rate and encoded as linear16, mu-law or WAV.

use super::pool::{default_split, Pool};
use super::settings::check_sample_rate;
use crate::espeak::{CancelToken, RunLimits};
use crate::resample::resample_i16;
use crate::text::{split_long, split_sentences};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use waav_plugin_api::codec::{mulaw_encode, wav_header};
use waav_plugin_api::{
    AudioEncoding, PluginConfig, PluginError, SpeakQueue, SpeakRequest, TtsEvent, TtsIo,
    TtsSessionConfig,
};

/// Turns one piece of text into mono PCM16 and its sample rate; runs on a blocking thread.
/// The limits bound (and on cancel, kill) the espeak-ng process the synthesis runs.
pub type SynthFn =
    Arc<dyn Fn(&str, f32, &RunLimits) -> Result<(Vec<i16>, u32), PluginError> + Send + Sync>;

pub const ENCODINGS: [AudioEncoding; 3] = [
    AudioEncoding::Linear16,
    AudioEncoding::Mulaw,
    AudioEncoding::Wav,
];

/// The most text (bytes) synthesised in one job: a sentence longer than this (text without
/// punctuation) is cut at words, so one job's latency, memory and espeak-ng input stay bounded.
pub const MAX_PIECE_BYTES: usize = 500;

/// How often a request waiting for its synthesis looks for a `Cancel`.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Checks the output format before anything is sized from it.
pub fn check_encoding(cfg: &TtsSessionConfig) -> Result<(), PluginError> {
    if !ENCODINGS.contains(&cfg.encoding) {
        return Err(PluginError::Config(format!(
            "local TTS produces linear16, mulaw or wav, not {}",
            cfg.encoding
        )));
    }
    check_sample_rate(cfg.sample_rate)
}

/// Cancels the token when dropped: when a request ends, is cancelled, or its session is dropped,
/// the espeak-ng process still working for it is killed.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Serves one TTS session: requests in order, sentence by sentence, honouring `Cancel` between
/// sentences, between frames and while a sentence is being synthesised.
pub struct Session {
    synth: SynthFn,
    pool: Pool,
    cfg: Arc<TtsSessionConfig>,
    timeout: Duration,
    requests: SpeakQueue,
    events: tokio::sync::mpsc::Sender<TtsEvent>,
    frame_samples: usize,
}

impl Session {
    /// A session for a config that passed [`check_encoding`]; `timeout` bounds each espeak-ng run.
    pub fn new(
        synth: SynthFn,
        pool: Pool,
        cfg: TtsSessionConfig,
        io: TtsIo,
        frame_ms: u32,
        timeout: Duration,
    ) -> Self {
        let frame_samples = (cfg.sample_rate as usize * frame_ms as usize / 1000).max(1);
        Self {
            synth,
            pool,
            cfg: Arc::new(cfg),
            timeout,
            requests: SpeakQueue::new(io.input),
            events: io.events,
            frame_samples,
        }
    }

    pub async fn run(mut self) -> Result<(), PluginError> {
        while let Some(req) = self.requests.next().await {
            match self.speak(&req).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(error) => {
                    let ev = TtsEvent::Error { id: req.id, error };
                    if self.events.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Speaks one request; `Ok(false)` when the host hung up.
    async fn speak(&mut self, req: &SpeakRequest) -> Result<bool, PluginError> {
        let cancel = CancelToken::new();
        let _stop = CancelOnDrop(cancel.clone());
        let pieces = self.pieces(&req.text).await?;
        let rate = self.cfg.speaking_rate;
        let mut first = true;
        for piece in pieces {
            if self.requests.is_cancelled(req.id) {
                return Ok(true);
            }
            let synth = self.synth.clone();
            let target = self.cfg.sample_rate;
            let limits = RunLimits {
                timeout: self.timeout,
                cancel: cancel.clone(),
            };
            // The resampler is built inside the job too: FFT planning is CPU work.
            let job = self.pool.run(move || {
                let (pcm, from) = synth(&piece, rate, &limits)?;
                Ok::<_, PluginError>(resample_i16(&pcm, from, target))
            });
            // On cancel the job is abandoned; `_stop` then kills its espeak-ng process.
            let Some(samples) = unless_cancelled(&mut self.requests, req.id, job).await else {
                return Ok(true);
            };
            for frame in samples??.chunks(self.frame_samples) {
                if self.requests.is_cancelled(req.id) {
                    return Ok(true);
                }
                let data = self.encode(frame, std::mem::take(&mut first));
                if self
                    .events
                    .send(TtsEvent::Audio { id: req.id, data })
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
        }
        Ok(self
            .events
            .send(TtsEvent::Done { id: req.id })
            .await
            .is_ok())
    }

    /// The request's text (pronunciations already applied by the host) cut into sentences of at
    /// most [`MAX_PIECE_BYTES`]. On a blocking thread: it is linear in a client-controlled text.
    async fn pieces(&self, text: &str) -> Result<Vec<String>, PluginError> {
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || {
            split_sentences(&text)
                .into_iter()
                .flat_map(|s| split_long(s, MAX_PIECE_BYTES))
                .map(str::to_owned)
                .collect()
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => PluginError::from_panic(&*p),
            Err(e) => PluginError::Transient(format!("text preparation cancelled: {e}")),
        })
    }

    fn encode(&self, samples: &[i16], first: bool) -> Bytes {
        match self.cfg.encoding {
            AudioEncoding::Mulaw => samples
                .iter()
                .map(|&s| mulaw_encode(s))
                .collect::<Vec<u8>>()
                .into(),
            enc => {
                let mut out = Vec::with_capacity(samples.len() * 2 + 44);
                if first && enc == AudioEncoding::Wav {
                    // The length is unknown while streaming; players read to the end.
                    out.extend_from_slice(&wav_header(self.cfg.sample_rate, 1, u32::MAX - 36));
                }
                for s in samples {
                    out.extend_from_slice(&s.to_le_bytes());
                }
                out.into()
            }
        }
    }
}

/// Awaits `job` unless request `id` is cancelled meanwhile (`None` then).
async fn unless_cancelled<T>(
    requests: &mut SpeakQueue,
    id: u64,
    job: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(job);
    let mut poll = tokio::time::interval(CANCEL_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut job => return Some(out),
            _ = poll.tick() => {
                if requests.is_cancelled(id) {
                    return None;
                }
            }
        }
    }
}

pub fn pool_from(
    config: &PluginConfig,
    engine: &'static str,
) -> Result<(Pool, usize), PluginError> {
    let (def_workers, def_threads) = default_split();
    let workers = config.u64("workers")?.map_or(def_workers, |v| v as usize);
    let threads = config.u64("threads")?.map_or(def_threads, |v| v as usize);
    let max_queue = config.u64("max_queue")?.unwrap_or(16) as usize;
    Ok((Pool::new(engine, workers, max_queue), threads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::sync::mpsc;
    use waav_plugin_api::{Pronunciation, TtsInput};

    /// What the fake synthesiser saw.
    #[derive(Default)]
    struct Seen {
        threads: Mutex<Vec<std::thread::ThreadId>>,
        cancelled: AtomicBool,
    }

    /// A synthesiser that returns 10 ms of audio at once, except for text containing "block":
    /// that waits (as a stuck espeak-ng would) until its token is cancelled or 10 s pass.
    fn fake_synth(seen: Arc<Seen>, started: mpsc::UnboundedSender<()>) -> SynthFn {
        Arc::new(move |text: &str, _rate: f32, limits: &RunLimits| {
            seen.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            if text.contains("block") {
                let _ = started.send(());
                let until = Instant::now() + Duration::from_secs(10);
                while !limits.cancel.is_cancelled() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen.cancelled
                    .store(limits.cancel.is_cancelled(), Ordering::SeqCst);
                return Err(PluginError::Transient("cancelled".into()));
            }
            Ok((vec![100; 160], 16_000))
        })
    }

    fn session(synth: SynthFn, cfg: TtsSessionConfig) -> (Session, waav_plugin_api::TtsPeer) {
        let (io, peer) = TtsIo::pair(64);
        let pool = Pool::new("test", 1, 4);
        (
            Session::new(synth, pool, cfg, io, 40, Duration::from_secs(10)),
            peer,
        )
    }

    fn speak(id: u64, text: &str) -> TtsInput {
        TtsInput::Speak(SpeakRequest {
            id,
            text: text.into(),
            flush: true,
        })
    }

    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(2);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn cancel_stops_the_running_synthesis() {
        let seen = Arc::new(Seen::default());
        let (tx, mut started) = mpsc::unbounded_channel();
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        let (session, mut peer) = session(fake_synth(seen.clone(), tx), cfg);
        let task = tokio::spawn(session.run());
        peer.input
            .send(speak(1, "Please block here."))
            .await
            .unwrap();
        started.recv().await.unwrap();
        let cancelled_at = Instant::now();
        peer.input
            .send(TtsInput::Cancel { up_to: 1 })
            .await
            .unwrap();
        wait_until("the synthesis saw the cancel", || {
            seen.cancelled.load(Ordering::SeqCst)
        })
        .await;
        assert!(cancelled_at.elapsed() < Duration::from_secs(1));
        // The session goes on with the next request; nothing more is said about request 1.
        peer.input.send(speak(2, "Hello.")).await.unwrap();
        loop {
            match peer.events.recv().await.unwrap() {
                TtsEvent::Audio { id: 2, .. } => {}
                TtsEvent::Done { id: 2 } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(peer);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn dropping_the_session_stops_the_running_synthesis() {
        let seen = Arc::new(Seen::default());
        let (tx, mut started) = mpsc::unbounded_channel();
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        let (session, peer) = session(fake_synth(seen.clone(), tx), cfg);
        let task = tokio::spawn(session.run());
        peer.input
            .send(speak(1, "Please block here."))
            .await
            .unwrap();
        started.recv().await.unwrap();
        task.abort();
        let _ = task.await;
        wait_until("the synthesis saw the drop", || {
            seen.cancelled.load(Ordering::SeqCst)
        })
        .await;
    }

    #[tokio::test]
    async fn a_long_sentence_is_synthesised_in_bounded_pieces() {
        let pieces = Arc::new(Mutex::new(Vec::new()));
        let synth: SynthFn = {
            let pieces = pieces.clone();
            Arc::new(move |text: &str, _: f32, _: &RunLimits| {
                pieces.lock().unwrap().push(text.len());
                Ok((vec![1; 16], 16_000))
            })
        };
        let cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000);
        let (session, mut peer) = session(synth, cfg);
        let task = tokio::spawn(session.run());
        peer.input
            .send(speak(1, &"no punctuation at all ".repeat(200)))
            .await
            .unwrap();
        while !matches!(peer.events.recv().await, Some(TtsEvent::Done { id: 1 })) {}
        let pieces = pieces.lock().unwrap().clone();
        assert!(pieces.len() > 1, "{pieces:?}");
        assert!(pieces.iter().all(|&n| n <= MAX_PIECE_BYTES), "{pieces:?}");
        drop(peer);
        task.await.unwrap().unwrap();
    }

    /// On a current-thread runtime the test thread is the only runtime worker: work done there
    /// stalls the ticker task for as long as it takes.
    #[tokio::test(flavor = "current_thread")]
    async fn text_preparation_and_synthesis_stay_off_the_runtime() {
        let seen = Arc::new(Seen::default());
        let (tx, _started) = mpsc::unbounded_channel();
        let mut cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        cfg.pronunciations = (0..40)
            .map(|_| Pronunciation {
                word: "filler".into(),
                pronunciation: "filler".into(),
            })
            .collect();
        // One long sentence the pronunciations must rewrite word by word, then a short one.
        let text = format!("{}. Hello.", "filler ".repeat(50_000));
        // The yardstick: the host's pronunciation pass over this text, as long as a text-bound
        // pass can get (the plugin itself only splits sentences now).
        let started = Instant::now();
        let _ = cfg.apply_pronunciations(&text);
        let scan = started.elapsed();

        let (session, mut peer) = session(fake_synth(seen.clone(), tx), cfg);
        let task = tokio::spawn(session.run());
        let worst = Arc::new(Mutex::new(Duration::ZERO));
        let ticker = tokio::spawn({
            let worst = worst.clone();
            async move {
                let mut last = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let mut w = worst.lock().unwrap();
                    *w = (*w).max(last.elapsed());
                    last = Instant::now();
                }
            }
        });
        peer.input.send(speak(1, &text)).await.unwrap();
        while !matches!(peer.events.recv().await, Some(TtsEvent::Done { id: 1 })) {}
        ticker.abort();
        let worst = *worst.lock().unwrap();
        assert!(
            worst < scan / 2 + Duration::from_millis(20),
            "the runtime stalled {worst:?} (the pronunciation pass takes {scan:?})"
        );
        let here = std::thread::current().id();
        let threads = seen.threads.lock().unwrap().clone();
        assert!(!threads.is_empty() && threads.iter().all(|&t| t != here));
        drop(peer);
        task.await.unwrap().unwrap();
    }

    #[test]
    fn absurd_output_formats_are_refused() {
        for rate in [0, 7_999, 192_001, u32::MAX] {
            let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, rate);
            assert!(matches!(check_encoding(&cfg), Err(PluginError::Config(_))));
        }
        let cfg = TtsSessionConfig::new(AudioEncoding::Mp3, 16_000);
        assert!(check_encoding(&cfg).is_err());
        let cfg = TtsSessionConfig::new(AudioEncoding::Wav, 192_000);
        assert!(check_encoding(&cfg).is_ok());
    }
}
