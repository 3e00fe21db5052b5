//! `resample`: streaming sample-rate conversion (rubato).

use std::time::Duration;

use waav_plugin_api::{
    AudioBuffer, AudioProcessor, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorEvent, ProcessorPlugin, Stage,
};

use crate::settings::{check_block, check_layout, Settings, RATE_RANGE};
use crate::stream::Stream;

/// Plugin id.
pub const ID: &str = "resample";
/// Largest block (frames) the buffers are sized for up front; bigger blocks grow them once.
const WARM_BLOCK_FRAMES: usize = 4_800;

/// The `resample` plugin.
///
/// Settings: `to_rate` (required, 8000–192000 Hz). Converts any input rate in that range to
/// `to_rate`, for 1–8 interleaved channels, and sets the block's `sample_rate` to `to_rate`.
/// Emits no events. See [`ResampleProcessor`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ResamplePlugin;

impl Plugin for ResamplePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Resampler")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["resampler", "rubato"])
            .description("Streaming sample-rate conversion (rubato FFT), any rate to any rate")
    }
}

impl ProcessorPlugin for ResamplePlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt, Stage::PostTts]
    }

    fn latency_estimate(&self) -> Duration {
        // Half a 10 ms chunk of filter delay.
        Duration::from_millis(5)
    }

    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        Ok(Box::new(ResampleProcessor::new(ctx, config)?))
    }
}

/// A streaming resampler for one session.
///
/// Every block is converted in place; resampler state carries over from block to block, so a
/// signal split across blocks comes out exactly as if it had been converted whole. Input is
/// consumed in chunks of about 10 ms, so a block may give back a few frames fewer or more than
/// `len × ratio` (the rest follows with the next block); over time the output has exactly the
/// resampled length of the input, and blocks that are whole multiples of 10 ms (20 ms frames) give
/// exactly `len × to_rate / from_rate` frames each. The output starts with the resampler's delay
/// (half a chunk, ~5 ms) of near-silence rather than being trimmed, which is what keeps every
/// later block's length exact; [`latency`](AudioProcessor::latency) reports that delay plus the
/// worst-case chunk buffering.
///
/// A block whose rate or channel count differs from the session's is handled by rebuilding the
/// resampler for the new layout (this allocates; it happens only on a format change). A block
/// already at `to_rate` passes through untouched.
pub struct ResampleProcessor {
    to: u32,
    from: u32,
    channels: u16,
    stream: Option<Stream>,
}

impl std::fmt::Debug for ResampleProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResampleProcessor")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl ResampleProcessor {
    /// Reads `to_rate` and builds the resampler for the context's layout.
    pub fn new(ctx: &ProcessorContext, config: &PluginConfig) -> Result<Self, PluginError> {
        let s = Settings::new(config, &["to_rate"])?;
        check_layout(config.path(), ctx)?;
        if !s.has("to_rate") {
            return Err(PluginError::Config(format!(
                "{}.to_rate: required (the output sample rate, {}..={} Hz)",
                config.path(),
                RATE_RANGE.start(),
                RATE_RANGE.end()
            )));
        }
        let to = s.integer(
            "to_rate",
            0,
            u64::from(*RATE_RANGE.start()),
            u64::from(*RATE_RANGE.end()),
        )? as u32;
        let mut p = Self {
            to,
            from: ctx.sample_rate,
            channels: ctx.channels,
            stream: None,
        };
        p.rebuild(ctx.sample_rate, ctx.channels)
            .map_err(|e| PluginError::Config(format!("{}: {e}", config.path())))?;
        Ok(p)
    }

    /// The output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    fn rebuild(&mut self, from: u32, channels: u16) -> Result<(), String> {
        self.from = from;
        self.channels = channels;
        self.stream = if from == self.to {
            None
        } else {
            Some(Stream::new(
                from,
                self.to,
                usize::from(channels),
                WARM_BLOCK_FRAMES,
            )?)
        };
        Ok(())
    }
}

impl AudioProcessor for ResampleProcessor {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        _events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        check_block(ID, audio.sample_rate, audio.channels, audio.samples.len())?;
        if audio.sample_rate != self.from || audio.channels != self.channels {
            self.rebuild(audio.sample_rate, audio.channels)
                .map_err(|e| PluginError::Permanent(format!("{ID}: {e}")))?;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        stream.push(audio.samples.iter().map(|&s| f32::from(s)));
        audio.samples.clear();
        let out = &mut audio.samples;
        stream.run(|chunk| {
            out.extend(
                chunk
                    .iter()
                    .map(|s| s.round().clamp(-32768.0, 32767.0) as i16),
            )
        });
        audio.sample_rate = self.to;
        Ok(())
    }

    fn latency(&self) -> Duration {
        match &self.stream {
            None => Duration::ZERO,
            Some(s) => Duration::from_secs_f64(
                s.delay_frames() as f64 / f64::from(self.to)
                    + (s.chunk_frames() - 1) as f64 / f64::from(self.from),
            ),
        }
    }

    fn reset(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            s.reset();
        }
    }
}
