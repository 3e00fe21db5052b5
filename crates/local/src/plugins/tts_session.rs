//! Synthesis both local TTS plugins share: one request, sentence by sentence on the bounded
//! inference [`Pool`], so the first sentence's audio leaves before later ones are synthesised.
//! Audio leaves at the engine's own rate as linear16; the host converts and frames it.

use super::pool::{default_split, Pool};
use crate::espeak::{CancelToken, RunLimits};
use crate::text::{split_long, split_sentences};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, AudioSink, PluginConfig, PluginError, TtsSessionConfig};

/// Turns one piece of text into mono PCM16 and its sample rate; runs on a blocking thread.
/// The limits bound (and on cancel, kill) the espeak-ng process the synthesis runs.
pub type SynthFn =
    Arc<dyn Fn(&str, f32, &RunLimits) -> Result<(Vec<i16>, u32), PluginError> + Send + Sync>;

/// The most text (bytes) synthesised in one job: a sentence longer than this (text without
/// punctuation) is cut at words, so one job's latency, memory and espeak-ng input stay bounded.
pub const MAX_PIECE_BYTES: usize = 500;

/// Checks that the host asked for what the engine produces: linear16 at its own rate.
pub fn check_format(cfg: &TtsSessionConfig, engine_rate: u32) -> Result<(), PluginError> {
    if cfg.encoding != AudioEncoding::Linear16 || cfg.sample_rate != engine_rate {
        return Err(PluginError::Config(format!(
            "this engine produces linear16 at {engine_rate} Hz, not {} at {} Hz",
            cfg.encoding, cfg.sample_rate
        )));
    }
    Ok(())
}

/// Cancels the token when dropped: when a request ends, is cancelled (the host drops the
/// synthesis), or its session is dropped, the espeak-ng process still working for it is killed.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Synthesises one request into `out`, sentence by sentence; `timeout` bounds each espeak-ng run.
pub async fn synthesize(
    synth: &SynthFn,
    pool: &Pool,
    timeout: Duration,
    cfg: &TtsSessionConfig,
    text: String,
    out: AudioSink,
) -> Result<(), PluginError> {
    let cancel = CancelToken::new();
    let _stop = CancelOnDrop(cancel.clone());
    let rate = cfg.speaking_rate;
    let wanted = cfg.sample_rate;
    for piece in pieces(text).await? {
        if out.is_cancelled() {
            return Ok(());
        }
        let synth = synth.clone();
        let limits = RunLimits {
            timeout,
            cancel: cancel.clone(),
        };
        let (samples, produced) = pool.run(move || synth(&piece, rate, &limits)).await??;
        if produced != wanted {
            return Err(PluginError::Permanent(format!(
                "the engine produced {produced} Hz audio, the session takes {wanted} Hz"
            )));
        }
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        if out.send(Bytes::from(bytes)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The request's text (pronunciations already applied by the host) cut into sentences of at
/// most [`MAX_PIECE_BYTES`]. On a blocking thread: it is linear in a client-controlled text.
async fn pieces(text: String) -> Result<Vec<String>, PluginError> {
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

pub fn pool_from(
    config: &PluginConfig,
    engine: &'static str,
) -> Result<(Pool, usize), PluginError> {
    let (def_workers, def_threads) = default_split();
    let workers = config.u64_in("workers", def_workers as u64, 1..=64)? as usize;
    let threads = config.u64_in("threads", def_threads as u64, 1..=64)? as usize;
    let max_queue = config.u64_in("max_queue", 16, 0..=4096)? as usize;
    Ok((Pool::new(engine, workers, max_queue), threads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::sync::mpsc;
    use waav_plugin_api::{CancelFlag, TtsEvent};

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

    fn cfg() -> TtsSessionConfig {
        TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
    }

    fn sink() -> (AudioSink, mpsc::Receiver<TtsEvent>) {
        let (tx, rx) = mpsc::channel(64);
        (AudioSink::new(1, tx, CancelFlag::new()), rx)
    }

    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(2);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn dropping_the_synthesis_stops_the_engine() {
        // The host drops the future on `clear`; the engine run must stop with it.
        let seen = Arc::new(Seen::default());
        let (tx, mut started) = mpsc::unbounded_channel();
        let synth = fake_synth(seen.clone(), tx);
        let pool = Pool::new("test", 1, 4);
        let (out, _rx) = sink();
        let task = tokio::spawn(async move {
            let c = cfg();
            synthesize(
                &synth,
                &pool,
                Duration::from_secs(10),
                &c,
                "Please block here.".into(),
                out,
            )
            .await
        });
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
        let pool = Pool::new("test", 1, 4);
        let (out, mut rx) = sink();
        let text = "no punctuation at all ".repeat(200);
        synthesize(&synth, &pool, Duration::from_secs(10), &cfg(), text, out)
            .await
            .unwrap();
        let pieces = pieces.lock().unwrap().clone();
        assert!(pieces.len() > 1, "{pieces:?}");
        assert!(pieces.iter().all(|&n| n <= MAX_PIECE_BYTES), "{pieces:?}");
        let mut chunks = 0;
        while let Ok(TtsEvent::Audio { data, .. }) = rx.try_recv() {
            assert_eq!(data.len(), 32);
            chunks += 1;
        }
        assert_eq!(chunks, pieces.len());
    }

    #[tokio::test]
    async fn a_rate_other_than_the_engines_is_an_error_not_wrong_audio() {
        let synth: SynthFn = Arc::new(|_: &str, _: f32, _: &RunLimits| Ok((vec![1; 16], 22_050)));
        let pool = Pool::new("test", 1, 4);
        let (out, _rx) = sink();
        let e = synthesize(
            &synth,
            &pool,
            Duration::from_secs(1),
            &cfg(),
            "Hi.".into(),
            out,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("22050"), "{e}");
    }

    /// On a current-thread runtime the test thread is the only runtime worker: work done there
    /// stalls the ticker task for as long as it takes.
    #[tokio::test(flavor = "current_thread")]
    async fn text_preparation_and_synthesis_stay_off_the_runtime() {
        let seen = Arc::new(Seen::default());
        let (tx, _started) = mpsc::unbounded_channel();
        // One very long sentence to split, then a short one.
        let text = format!("{}. Hello.", "filler ".repeat(200_000));
        let started = Instant::now();
        let _ = split_sentences(&text);
        let scan = started.elapsed();

        let synth = fake_synth(seen.clone(), tx);
        let pool = Pool::new("test", 1, 4);
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
        let (tx, mut rx) = mpsc::channel(100_000);
        let out = AudioSink::new(1, tx, CancelFlag::new());
        synthesize(&synth, &pool, Duration::from_secs(10), &cfg(), text, out)
            .await
            .unwrap();
        ticker.abort();
        let worst = *worst.lock().unwrap();
        assert!(
            worst < scan / 2 + Duration::from_millis(20),
            "the runtime stalled {worst:?} (splitting takes {scan:?})"
        );
        let here = std::thread::current().id();
        let threads = seen.threads.lock().unwrap().clone();
        assert!(!threads.is_empty() && threads.iter().all(|&t| t != here));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn formats_other_than_the_engines_are_refused() {
        for (enc, rate) in [
            (AudioEncoding::Linear16, 0),
            (AudioEncoding::Linear16, u32::MAX),
            (AudioEncoding::Linear16, 16_000),
            (AudioEncoding::Mulaw, 22_050),
            (AudioEncoding::Mp3, 22_050),
        ] {
            let cfg = TtsSessionConfig::new(enc, rate);
            assert!(matches!(
                check_format(&cfg, 22_050),
                Err(PluginError::Config(_))
            ));
        }
        assert!(check_format(
            &TtsSessionConfig::new(AudioEncoding::Linear16, 22_050),
            22_050
        )
        .is_ok());
    }
}
