//! The TTS session both local TTS plugins share: requests in order, sentence by sentence on the
//! bounded inference [`Pool`], so the first sentence's audio leaves before later ones are
//! synthesised; audio is resampled to the requested rate and encoded as linear16, mu-law or WAV.

use super::pool::{default_split, Pool};
use crate::resample::resample_i16;
use crate::text::split_sentences;
use bytes::Bytes;
use std::sync::Arc;
use waav_plugin_api::codec::{mulaw_encode, wav_header};
use waav_plugin_api::{
    AudioEncoding, PluginConfig, PluginError, SpeakQueue, SpeakRequest, TtsEvent, TtsIo,
    TtsSessionConfig,
};

/// Turns one sentence into mono PCM16 and its sample rate; runs on a blocking thread.
pub type SynthFn = Arc<dyn Fn(&str, f32) -> Result<(Vec<i16>, u32), PluginError> + Send + Sync>;

pub const ENCODINGS: [AudioEncoding; 3] = [
    AudioEncoding::Linear16,
    AudioEncoding::Mulaw,
    AudioEncoding::Wav,
];

pub fn check_encoding(cfg: &TtsSessionConfig) -> Result<(), PluginError> {
    if ENCODINGS.contains(&cfg.encoding) && cfg.sample_rate > 0 {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "local TTS produces linear16, mulaw or wav at a positive sample rate, not {} at {}",
            cfg.encoding, cfg.sample_rate
        )))
    }
}

/// Serves one TTS session: requests in order, sentence by sentence, honouring `Cancel` between
/// sentences and between frames.
pub struct Session {
    synth: SynthFn,
    pool: Pool,
    cfg: TtsSessionConfig,
    requests: SpeakQueue,
    events: tokio::sync::mpsc::Sender<TtsEvent>,
    frame_samples: usize,
}

impl Session {
    pub fn new(
        synth: SynthFn,
        pool: Pool,
        cfg: TtsSessionConfig,
        io: TtsIo,
        frame_ms: u32,
    ) -> Self {
        let frame_samples = (cfg.sample_rate as usize * frame_ms as usize / 1000).max(1);
        Self {
            synth,
            pool,
            cfg,
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
        let text = self.cfg.apply_pronunciations(&req.text);
        let rate = self.cfg.speaking_rate;
        let mut first = true;
        for sentence in split_sentences(&text) {
            if self.requests.is_cancelled(req.id) {
                return Ok(true);
            }
            let synth = self.synth.clone();
            let sentence = sentence.to_owned();
            let target = self.cfg.sample_rate;
            let samples = self
                .pool
                .run(move || {
                    let (pcm, from) = synth(&sentence, rate)?;
                    Ok::<_, PluginError>(resample_i16(&pcm, from, target))
                })
                .await??;
            for frame in samples.chunks(self.frame_samples) {
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
