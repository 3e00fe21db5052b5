//! The TTS session both local TTS plugins share: requests in order, sentence by sentence on the
//! bounded inference [`Pool`], so the first sentence's audio leaves before later ones are
//! synthesised; audio is resampled to the requested rate and encoded as linear16, mu-law or WAV.

use super::pool::{default_split, Pool};
use crate::resample::resample_i16;
use crate::text::split_sentences;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use waav_plugin_api::codec::{mulaw_encode, wav_header};
use waav_plugin_api::{
    AudioEncoding, PluginConfig, PluginError, SpeakRequest, TtsEvent, TtsInput, TtsIo,
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
    io: TtsIo,
    queue: VecDeque<SpeakRequest>,
    cancelled: u64,
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
            io,
            queue: VecDeque::new(),
            cancelled: 0,
            frame_samples,
        }
    }

    fn accept(&mut self, input: TtsInput) {
        match input {
            TtsInput::Speak(r) => self.queue.push_back(r),
            TtsInput::Cancel { up_to } => {
                self.cancelled = self.cancelled.max(up_to);
                self.queue.retain(|r| r.id > up_to);
            }
        }
    }

    fn drain_input(&mut self) {
        while let Ok(input) = self.io.input.try_recv() {
            self.accept(input);
        }
    }

    pub async fn run(mut self) -> Result<(), PluginError> {
        loop {
            let Some(req) = self.queue.pop_front() else {
                match self.io.input.recv().await {
                    Some(input) => {
                        self.accept(input);
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            match self.speak(&req).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(error) => {
                    let ev = TtsEvent::Error { id: req.id, error };
                    if self.io.events.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Speaks one request; `Ok(false)` when the host hung up.
    async fn speak(&mut self, req: &SpeakRequest) -> Result<bool, PluginError> {
        let text = self.cfg.apply_pronunciations(&req.text);
        let rate = self.cfg.speaking_rate;
        let mut first = true;
        for sentence in split_sentences(&text) {
            self.drain_input();
            if req.id <= self.cancelled {
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
                self.drain_input();
                if req.id <= self.cancelled {
                    return Ok(true);
                }
                let data = self.encode(frame, std::mem::take(&mut first));
                if self
                    .io
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
            .io
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
