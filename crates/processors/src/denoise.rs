//! `denoise`: RNNoise noise suppression (nnnoiseless) at any input rate.

use std::collections::VecDeque;
use std::time::Duration;

use nnnoiseless::DenoiseState;
use waav_plugin_api::{
    AudioBuffer, AudioProcessor, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorEvent, ProcessorPlugin, Stage,
};

use crate::settings::{check_block, check_layout, Settings};
use crate::stream::Stream;

/// Plugin id.
pub const ID: &str = "denoise";
/// RNNoise's rate.
pub const DENOISE_RATE: u32 = 48_000;
/// RNNoise's frame (10 ms at 48 kHz).
pub const DENOISE_FRAME: usize = DenoiseState::FRAME_SIZE;
/// Blocks up to this many input frames are handled without growing any buffer.
const WARM_BLOCK_FRAMES: usize = 4_800;

/// The `denoise` plugin (aliases `nnnoiseless`, `rnnoise`).
///
/// Settings (all optional): `mix` (0–1, default 1): the share of denoised signal in the output
/// (`1` fully denoised, `0.5` half dry — a gentler suppression; the dry part is delayed to stay
/// aligned). Emits no events.
///
/// RNNoise works on 48 kHz, 480-sample frames; other rates are resampled to 48 kHz and back
/// internally. The block keeps its length, rate and channel count; the output is delayed by
/// [`latency`](AudioProcessor::latency) (10 ms of RNNoise overlap, plus framing and the two
/// resamplers' delay when the input is not at 48 kHz: ~30 ms at 16 kHz). Stereo (and more)
/// is denoised **per channel**, each with its own RNNoise state (so the cost scales with the
/// channel count; put a mono mix in front for cheap stereo).
#[derive(Debug, Default, Clone, Copy)]
pub struct DenoisePlugin;

impl Plugin for DenoisePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Noise suppression")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["nnnoiseless", "rnnoise"])
            .description("RNNoise noise suppression (nnnoiseless), any rate, per channel")
    }
}

impl ProcessorPlugin for DenoisePlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt, Stage::PostTts]
    }

    fn latency_estimate(&self) -> Duration {
        Duration::from_millis(30)
    }

    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        Ok(Box::new(DenoiseProcessor::new(ctx, config)?))
    }
}

/// One session's denoiser.
pub struct DenoiseProcessor {
    mix: f32,
    rate: u32,
    channels: u16,
    states: Vec<Box<DenoiseState<'static>>>,
    /// Input rate → 48 kHz and back, when the input is not at 48 kHz.
    up: Option<Stream>,
    down: Option<Stream>,
    /// 48 kHz interleaved samples (i16 scale) waiting for a whole RNNoise frame.
    buf48: Vec<f32>,
    /// Dry 48 kHz samples kept to mix with the denoised ones (empty when `mix` is 1).
    dry: VecDeque<f32>,
    frame_in: Vec<f32>,
    frame_out: Vec<f32>,
    /// Denoised samples at the input rate, interleaved, waiting to go out.
    fifo: VecDeque<i16>,
    /// Silence the FIFO starts with: the most the chain can hold back, so it never runs dry.
    prefill: usize,
    latency: Duration,
    underruns: u64,
}

impl std::fmt::Debug for DenoiseProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenoiseProcessor")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("mix", &self.mix)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl DenoiseProcessor {
    /// Reads the settings and builds the denoiser for the context's layout.
    pub fn new(ctx: &ProcessorContext, config: &PluginConfig) -> Result<Self, PluginError> {
        let s = Settings::new(config, &["mix"])?;
        let mix = s.number("mix", 1.0, 0.0, 1.0)? as f32;
        check_layout(config.path(), ctx)?;
        Self::with_mix(mix, ctx.sample_rate, ctx.channels)
            .map_err(|e| PluginError::Config(format!("{}: {e}", config.path())))
    }

    /// A denoiser for audio of `rate` Hz and `channels` channels with the given `mix`.
    pub fn with_mix(mix: f32, rate: u32, channels: u16) -> Result<Self, String> {
        crate::settings::check_format(rate, channels)?;
        let mut p = Self {
            mix: mix.clamp(0.0, 1.0),
            rate,
            channels,
            states: Vec::new(),
            up: None,
            down: None,
            buf48: Vec::new(),
            dry: VecDeque::new(),
            frame_in: vec![0.0; DENOISE_FRAME],
            frame_out: vec![0.0; DENOISE_FRAME],
            fifo: VecDeque::new(),
            prefill: 0,
            latency: Duration::ZERO,
            underruns: 0,
        };
        p.set_layout(rate, channels)?;
        Ok(p)
    }

    /// How often the output FIFO ran dry (silence was sent instead). Always 0 unless the
    /// prefill bound is wrong; kept for tests and diagnostics.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    fn set_layout(&mut self, rate: u32, channels: u16) -> Result<(), String> {
        let ch = usize::from(channels);
        self.rate = rate;
        self.channels = channels;
        let frame_in_samples = DENOISE_FRAME * ch;
        let (up, down) = if rate == DENOISE_RATE {
            (None, None)
        } else {
            (
                Some(Stream::new(rate, DENOISE_RATE, ch, WARM_BLOCK_FRAMES)?),
                Some(Stream::new(DENOISE_RATE, rate, ch, DENOISE_FRAME * 2)?),
            )
        };
        let rate_f = f64::from(rate);
        let to_in =
            |frames48: usize| (frames48 as f64 * rate_f / f64::from(DENOISE_RATE)).ceil() as usize;
        // The most input frames the chain can hold back at any moment (see the module docs of
        // `stream`): a partial chunk in each resampler and a partial RNNoise frame. A stage whose
        // input always arrives in whole multiples of its chunk holds nothing.
        let (prefill, delay48, delay_out) = match (&up, &down) {
            (Some(u), Some(d)) => {
                let up_hold = u.chunk_frames() - 1;
                let up_out = u.output_per_chunk();
                let rnn_hold = match up_out {
                    Some(o) if o.is_multiple_of(DENOISE_FRAME) => 0,
                    _ => DENOISE_FRAME - 1 + u.max_output_frames(),
                };
                let down_hold = match d.output_per_chunk() {
                    Some(_) if DENOISE_FRAME.is_multiple_of(d.chunk_frames()) => 0,
                    _ => d.chunk_frames() - 1 + DENOISE_FRAME,
                };
                let slack = usize::from(up_out.is_none() || d.output_per_chunk().is_none()) * 2;
                (
                    up_hold + to_in(rnn_hold + down_hold) + slack,
                    u.delay_frames(),
                    d.delay_frames(),
                )
            }
            _ => (DENOISE_FRAME - 1, 0, 0),
        };
        // Latency: the FIFO's head start, the up-resampler's delay and RNNoise's one-frame
        // overlap (at 48 kHz), and the down-resampler's delay (at the input rate).
        let secs = prefill as f64 / rate_f
            + (delay48 + DENOISE_FRAME) as f64 / f64::from(DENOISE_RATE)
            + delay_out as f64 / rate_f;
        self.latency = Duration::from_secs_f64(secs);
        self.prefill = prefill;
        self.up = up;
        self.down = down;
        let block48 = WARM_BLOCK_FRAMES * DENOISE_RATE as usize / rate as usize + DENOISE_FRAME * 2;
        self.buf48 = Vec::with_capacity(block48 * ch);
        self.dry = VecDeque::with_capacity(if self.mix < 1.0 {
            frame_in_samples * 2
        } else {
            0
        });
        self.fifo = VecDeque::with_capacity((prefill + WARM_BLOCK_FRAMES * 2) * ch);
        self.reset_state();
        Ok(())
    }

    fn reset_state(&mut self) {
        let ch = usize::from(self.channels);
        // A fresh state per channel (this allocates; a reset is not per frame).
        self.states = (0..ch).map(|_| DenoiseState::new()).collect();
        if let Some(u) = self.up.as_mut() {
            u.reset();
        }
        if let Some(d) = self.down.as_mut() {
            d.reset();
        }
        self.buf48.clear();
        self.dry.clear();
        if self.mix < 1.0 {
            // RNNoise delays by one frame; the dry path is delayed to match.
            self.dry
                .extend(std::iter::repeat_n(0.0, DENOISE_FRAME * ch));
        }
        self.fifo.clear();
        self.fifo.extend(std::iter::repeat_n(0, self.prefill * ch));
    }

    /// Denoises every whole 48 kHz frame in `buf48`, passing the results on.
    fn run_frames(&mut self) {
        let ch = usize::from(self.channels);
        let step = DENOISE_FRAME * ch;
        let mut pos = 0;
        while self.buf48.len() - pos >= step {
            let block = &mut self.buf48[pos..pos + step];
            for (c, state) in self.states.iter_mut().enumerate() {
                for (d, s) in self
                    .frame_in
                    .iter_mut()
                    .zip(block.iter().skip(c).step_by(ch))
                {
                    *d = *s;
                }
                state.process_frame(&mut self.frame_out, &self.frame_in);
                for (d, s) in block.iter_mut().skip(c).step_by(ch).zip(&self.frame_out) {
                    *d = *s;
                }
            }
            if self.mix < 1.0 {
                // `block` now holds the denoised frame; the raw one went into `dry` below on the
                // way in, one frame ahead.
                for s in block.iter_mut() {
                    let dry = self.dry.pop_front().unwrap_or(0.0);
                    *s = self.mix * *s + (1.0 - self.mix) * dry;
                }
            }
            match self.down.as_mut() {
                Some(d) => d.push_slice(block),
                None => self.fifo.extend(
                    block
                        .iter()
                        .map(|s| s.round().clamp(-32768.0, 32767.0) as i16),
                ),
            }
            pos += step;
        }
        if pos > 0 {
            self.buf48.drain(..pos);
        }
    }
}

impl AudioProcessor for DenoiseProcessor {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        _events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        check_block(ID, audio.sample_rate, audio.channels, audio.samples.len())?;
        if audio.sample_rate != self.rate || audio.channels != self.channels {
            self.set_layout(audio.sample_rate, audio.channels)
                .map_err(|e| PluginError::Permanent(format!("{ID}: {e}")))?;
        }
        let keep_dry = self.mix < 1.0;
        match self.up.as_mut() {
            Some(u) => {
                u.push(audio.samples.iter().map(|&s| f32::from(s)));
                let (buf48, dry) = (&mut self.buf48, &mut self.dry);
                u.run(|out| {
                    buf48.extend_from_slice(out);
                    if keep_dry {
                        dry.extend(out.iter().copied());
                    }
                });
            }
            None => {
                self.buf48
                    .extend(audio.samples.iter().map(|&s| f32::from(s)));
                if keep_dry {
                    self.dry.extend(audio.samples.iter().map(|&s| f32::from(s)));
                }
            }
        }
        self.run_frames();
        if let Some(d) = self.down.as_mut() {
            let fifo = &mut self.fifo;
            d.run(|out| {
                fifo.extend(
                    out.iter()
                        .map(|s| s.round().clamp(-32768.0, 32767.0) as i16),
                )
            });
        }
        for s in audio.samples.iter_mut() {
            *s = match self.fifo.pop_front() {
                Some(v) => v,
                None => {
                    self.underruns += 1;
                    0
                }
            };
        }
        Ok(())
    }

    fn latency(&self) -> Duration {
        self.latency
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}
