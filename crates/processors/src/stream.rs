//! A streaming resampler shared by the processors: interleaved `f32` in, interleaved `f32` out,
//! any block size, state kept from one block to the next.
//!
//! rubato's synchronous [`Fft`] resampler is used whenever the two rates share a large enough
//! common divisor (every usual rate pair does: 8/11.025/16/22.05/24/32/44.1/48/96/192 kHz); for
//! odd pairs whose smallest FFT block would be longer than [`MAX_FFT_BLOCK_SECONDS`] (for example
//! 8001 → 16000 Hz) an asynchronous sinc resampler takes over, so the delay stays small.
//!
//! The output is *not* trimmed of the resampler's start-up delay: the stream starts with
//! [`Stream::delay_frames`] frames of (near) silence and from then on has exactly the resampled
//! length of the input it consumed, so a block of whole chunks in gives a block of exactly
//! `ratio ×` as many frames out. Values pass through unscaled (the resampler is linear), so
//! callers may work at i16 scale.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

/// Input frames per chunk, as a fraction of a second (10 ms).
const CHUNKS_PER_SECOND: usize = 100;
/// The longest minimum FFT block (in seconds of input) accepted before falling back to sinc.
pub(crate) const MAX_FFT_BLOCK_SECONDS: f64 = 0.05;

/// Exclusive access only: a `&Exclusive<T>` gives nothing, so it can be `Sync` whatever `T` is
/// (the same idea as the unstable `std::sync::Exclusive`). rubato's sinc resampler is `Send` but
/// not `Sync`, and [`AudioProcessor`](waav_plugin_api::AudioProcessor) must be both.
struct Exclusive<T>(T);

// SAFETY: no method reaches the inner value through `&self`; all access needs `&mut self`, which
// is itself exclusive, so sharing `&Exclusive<T>` between threads cannot race.
unsafe impl<T: Send> Sync for Exclusive<T> {}

impl<T> Exclusive<T> {
    fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// One direction of streaming resampling.
pub(crate) struct Stream {
    inner: Exclusive<Box<dyn Resampler<f32>>>,
    /// Input frames per chunk.
    chunk: usize,
    /// Most output frames per chunk.
    max_out: usize,
    /// Delay in output frames.
    delay: usize,
    channels: usize,
    /// Input not yet processed (interleaved).
    pending: Vec<f32>,
    /// Output scratch, sized for the largest chunk.
    output: Vec<f32>,
    from: u32,
    to: u32,
    /// Whether `inner` is the FFT resampler (fixed output per chunk).
    fft: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("channels", &self.channels)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The FFT resampler's chunk: a whole number of minimum blocks, chosen where possible to divide
/// a 20 ms frame (so every 10/20 ms block yields the same number of frames), nearest 10 ms.
fn fft_chunk(rate: usize, min_block: usize) -> usize {
    let target = (rate / CHUNKS_PER_SECOND).max(1);
    let frame20 = rate / 50;
    if rate.is_multiple_of(50) && frame20.is_multiple_of(min_block) {
        let blocks = frame20 / min_block;
        if let Some(k) = (1..=blocks)
            .filter(|k| blocks.is_multiple_of(*k))
            .min_by_key(|k| (k * min_block).abs_diff(target))
        {
            return k * min_block;
        }
    }
    target.div_ceil(min_block) * min_block
}

impl Stream {
    /// A resampler from `from` to `to` Hz for `channels` interleaved channels. Plans FFTs and
    /// allocates every buffer it needs for blocks of up to `max_block_frames` input frames.
    pub(crate) fn new(
        from: u32,
        to: u32,
        channels: usize,
        max_block_frames: usize,
    ) -> Result<Self, String> {
        if from == 0 || to == 0 || channels == 0 {
            return Err(format!(
                "invalid layout {from} Hz → {to} Hz, {channels} channels"
            ));
        }
        let (fu, tu) = (from as usize, to as usize);
        let chunk = (fu / CHUNKS_PER_SECOND).max(1);
        let min_block = fu / gcd(fu, tu);
        let fft = min_block as f64 <= f64::from(from) * MAX_FFT_BLOCK_SECONDS;
        let inner: Box<dyn Resampler<f32>> = if fft {
            let chunk = fft_chunk(fu, min_block);
            // One FFT block per chunk: the chunk is a whole number of minimum blocks, so every
            // chunk yields exactly `chunk × to / from` frames and the delay is half a chunk.
            Box::new(
                Fft::<f32>::new_custom(
                    fu,
                    tu,
                    chunk,
                    1,
                    channels,
                    WindowFunction::BlackmanHarris2,
                    FixedSync::Input,
                )
                .map_err(|e| e.to_string())?,
            )
        } else {
            let params = SincInterpolationParameters {
                sinc_len: 64,
                f_cutoff: None,
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            Box::new(
                Async::<f32>::new_sinc(
                    f64::from(to) / f64::from(from),
                    1.0,
                    &params,
                    chunk,
                    channels,
                    FixedAsync::Input,
                )
                .map_err(|e| e.to_string())?,
            )
        };
        let output = vec![0.0; inner.output_frames_max() * channels];
        let pending_cap = (inner.input_frames_max() + max_block_frames) * channels;
        Ok(Self {
            chunk: inner.input_frames_max(),
            max_out: inner.output_frames_max(),
            delay: inner.output_delay(),
            inner: Exclusive(inner),
            channels,
            pending: Vec::with_capacity(pending_cap),
            output,
            from,
            to,
            fft,
        })
    }

    /// Input frames consumed per chunk.
    pub(crate) fn chunk_frames(&self) -> usize {
        self.chunk
    }

    /// Output frames one chunk can produce at most.
    pub(crate) fn max_output_frames(&self) -> usize {
        self.max_out
    }

    /// The resampler's delay, in output frames.
    pub(crate) fn delay_frames(&self) -> usize {
        self.delay
    }

    /// Whether whole chunks always produce the same number of output frames (FFT resampler with
    /// a chunk that is a multiple of its FFT block).
    pub(crate) fn output_per_chunk(&self) -> Option<usize> {
        let (fu, tu) = (self.from as usize, self.to as usize);
        let chunk = self.chunk_frames();
        (self.fft && (chunk * tu).is_multiple_of(fu)).then_some(chunk * tu / fu)
    }

    /// Queues input samples (interleaved).
    pub(crate) fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        self.pending.extend(samples);
    }

    /// Queues input samples from a slice (interleaved).
    pub(crate) fn push_slice(&mut self, samples: &[f32]) {
        self.pending.extend_from_slice(samples);
    }

    /// Resamples every whole chunk queued, handing each chunk's output (interleaved) to `sink`.
    pub(crate) fn run(&mut self, mut sink: impl FnMut(&[f32])) {
        let ch = self.channels;
        let inner = self.inner.get_mut();
        let mut pos = 0;
        loop {
            let need = inner.input_frames_next();
            if self.pending.len() - pos < need * ch {
                break;
            }
            let out_frames = self.output.len() / ch;
            let input = InterleavedSlice::new(&self.pending[pos..pos + need * ch], ch, need);
            let output = InterleavedSlice::new_mut(&mut self.output[..], ch, out_frames);
            let written = match (input, output) {
                (Ok(input), Ok(mut output)) => inner
                    .process_into_buffer(&input, &mut output, None)
                    .map(|(_, written)| written)
                    // Sizes come from the resampler itself, so this cannot fail; if it ever
                    // did, the chunk is replaced by silence of its resampled length.
                    .unwrap_or(0),
                _ => 0,
            };
            pos += need * ch;
            sink(&self.output[..written * ch]);
        }
        if pos > 0 {
            self.pending.drain(..pos);
        }
    }

    /// Forgets all state and queued input.
    pub(crate) fn reset(&mut self) {
        self.inner.get_mut().reset();
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_divide_20ms_frames() {
        assert_eq!(fft_chunk(16_000, 1), 160);
        assert_eq!(fft_chunk(22_050, 147), 147);
        assert_eq!(fft_chunk(44_100, 441), 441);
        assert_eq!(fft_chunk(11_025, 441), 441);
        assert_eq!(fft_chunk(48_000, 3), 480);
    }

    #[test]
    fn usual_rates_use_fixed_output_chunks() {
        for (from, to) in [
            (16_000, 48_000),
            (48_000, 16_000),
            (8_000, 16_000),
            (44_100, 48_000),
        ] {
            let s = Stream::new(from, to, 1, 960).unwrap();
            let out = s.output_per_chunk().unwrap();
            assert_eq!(out * from as usize, s.chunk_frames() * to as usize);
        }
    }

    #[test]
    fn odd_rates_fall_back_to_sinc_and_keep_length() {
        let mut s = Stream::new(8_001, 16_000, 1, 960).unwrap();
        assert!(s.output_per_chunk().is_none());
        let mut produced = 0usize;
        for _ in 0..100 {
            s.push(std::iter::repeat_n(0.1f32, 80));
            s.run(|o| produced += o.len());
        }
        let expected = 8_000.0 * 16_000.0 / 8_001.0;
        assert!((produced as f64 - expected).abs() < 200.0, "{produced}");
    }
}
