//! One stateful conversion between two PCM formats: decode (linear16, mu-law, A-law), mix
//! channels, resample, encode, and cut into frames.
//!
//! A session keeps one converter per direction for its whole life, so resampler state carries
//! from one push to the next and from one sentence to the next: a tone split across two TTS
//! requests comes out continuous. All buffers are reused; after warm-up a push allocates nothing
//! except when a frame is handed out and its `Bytes` still holds the previous block.

use audioadapter_buffers::direct::InterleavedSlice;
use bytes::{Bytes, BytesMut};
use rubato::{Fft, FixedSync, Resampler};
use waav_plugin_api::codec::{alaw_decode, alaw_encode, mulaw_decode, mulaw_encode};
use waav_plugin_api::{AudioEncoding, AudioFormat};

/// Input frames per resampler chunk, as a fraction of a second (10 ms): the delay a chunk adds.
const CHUNKS_PER_SECOND: u32 = 100;

/// Why a conversion cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// An encoding the core cannot decode or encode (compressed audio passes through only).
    #[error(
        "the gateway cannot convert {0} audio; only linear16, wav, mulaw and alaw are converted"
    )]
    Compressed(AudioEncoding),
    /// A zero rate or channel count.
    #[error("invalid audio format: {0} Hz, {1} channels")]
    Invalid(u32, u16),
    /// The resampler refused the rates.
    #[error("cannot resample {from} Hz to {to} Hz: {reason}")]
    Resampler {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// The resampler's message.
        reason: String,
    },
}

/// Whether the core can decode and encode `encoding` itself.
pub fn is_pcm(encoding: AudioEncoding) -> bool {
    matches!(
        encoding,
        AudioEncoding::Linear16 | AudioEncoding::Wav | AudioEncoding::Mulaw | AudioEncoding::Alaw
    )
}

/// A stream conversion from one PCM format to another.
pub struct Converter {
    from: AudioFormat,
    to: AudioFormat,
    /// Bytes of an incomplete input sample frame, kept for the next push.
    carry: Vec<u8>,
    /// Decoded, channel-mixed samples (`to.channels` interleaved).
    pcm: Vec<i16>,
    resampler: Option<Stream>,
    /// Encoded output not yet handed out as a whole frame.
    out: BytesMut,
    /// Output frame size in bytes; 0 hands out everything after each push.
    frame_bytes: usize,
}

impl std::fmt::Debug for Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converter")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("frame_bytes", &self.frame_bytes)
            .finish_non_exhaustive()
    }
}

/// A streaming resampler with its pending input and delay bookkeeping.
struct Stream {
    inner: Fft<f32>,
    channels: usize,
    ratio: f64,
    /// Input not yet processed (interleaved, normalised).
    pending: Vec<f32>,
    output: Vec<f32>,
    /// Output frames still to drop: the resampler's delay after a (re)start.
    skip: usize,
    /// Input frames taken and output frames produced since the last (re)start.
    taken: u64,
    produced: u64,
}

impl Stream {
    fn new(from: u32, to: u32, channels: usize) -> Result<Self, ConvertError> {
        let chunk = (from / CHUNKS_PER_SECOND).max(1) as usize;
        let inner = Fft::<f32>::new(
            from as usize,
            to as usize,
            chunk,
            channels,
            FixedSync::Input,
        )
        .map_err(|e| ConvertError::Resampler {
            from,
            to,
            reason: e.to_string(),
        })?;
        let skip = inner.output_delay();
        let output = vec![0.0; inner.output_frames_max() * channels];
        Ok(Self {
            inner,
            channels,
            ratio: f64::from(to) / f64::from(from),
            pending: Vec::with_capacity(chunk * channels * 2),
            output,
            skip,
            taken: 0,
            produced: 0,
        })
    }

    /// Resamples every whole chunk of pending input, appending i16 output to `out`.
    fn run(&mut self, out: &mut Vec<i16>) {
        loop {
            let need = self.inner.input_frames_next();
            if self.pending.len() < need * self.channels {
                return;
            }
            self.process(need, out);
        }
    }

    fn process(&mut self, frames: usize, out: &mut Vec<i16>) {
        let ch = self.channels;
        let out_frames = self.output.len() / ch;
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.pending[..frames * ch], ch, frames),
            InterleavedSlice::new_mut(&mut self.output[..], ch, out_frames),
        ) else {
            self.pending.clear();
            return;
        };
        // Sizes come from the resampler itself, so processing cannot fail; if it ever did, the
        // chunk is dropped rather than the session.
        let Ok((_, written)) = self.inner.process_into_buffer(&input, &mut output, None) else {
            self.pending.drain(..frames * ch);
            return;
        };
        self.pending.drain(..frames * ch);
        self.taken += frames as u64;
        let skip = self.skip.min(written);
        self.skip -= skip;
        self.produced += (written - skip) as u64;
        out.extend(
            self.output[skip * ch..written * ch]
                .iter()
                .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        );
    }

    /// Pushes out everything pending (padding with silence, trimmed to the exact output length
    /// of the input taken) and restarts, so the next audio starts from a clean state.
    fn drain(&mut self, out: &mut Vec<i16>) {
        let pending_frames = self.pending.len() / self.channels;
        let expected = ((self.taken + pending_frames as u64) as f64 * self.ratio).round() as u64;
        let ch = self.channels;
        let before = out.len();
        let mut guard = 0;
        while self.produced < expected && guard < 64 {
            let need = self.inner.input_frames_next();
            self.pending.resize(self.pending.len().max(need * ch), 0.0);
            self.process(need, out);
            guard += 1;
        }
        let excess = (self.produced.saturating_sub(expected) as usize * ch).min(out.len() - before);
        out.truncate(out.len() - excess);
        self.inner.reset();
        self.pending.clear();
        self.skip = self.inner.output_delay();
        self.taken = 0;
        self.produced = 0;
    }
}

impl Converter {
    /// A conversion from `from` to `to` handing out frames of `frame_bytes` (0: whatever each
    /// push produced). Builds the resampler, which plans FFTs: call it off the async runtime.
    pub fn new(
        from: AudioFormat,
        to: AudioFormat,
        frame_bytes: usize,
    ) -> Result<Self, ConvertError> {
        for f in [from, to] {
            if !is_pcm(f.encoding) {
                return Err(ConvertError::Compressed(f.encoding));
            }
            if f.sample_rate == 0 || f.channels == 0 {
                return Err(ConvertError::Invalid(f.sample_rate, f.channels));
            }
        }
        let resampler = (from.sample_rate != to.sample_rate)
            .then(|| Stream::new(from.sample_rate, to.sample_rate, usize::from(to.channels)))
            .transpose()?;
        Ok(Self {
            from,
            to,
            carry: Vec::new(),
            pcm: Vec::new(),
            resampler,
            out: BytesMut::new(),
            frame_bytes,
        })
    }

    /// The input format.
    pub fn from(&self) -> AudioFormat {
        self.from
    }

    /// The output format.
    pub fn to(&self) -> AudioFormat {
        self.to
    }

    /// Converts `data` (any length, even split mid-sample), calling `emit` for each output frame.
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(Bytes)) {
        self.decode(data);
        if let Some(r) = self.resampler.as_mut() {
            let ch = usize::from(self.to.channels);
            // The decoded block is staged as f32 for the resampler, then replaced by its output.
            r.pending
                .extend(self.pcm.iter().map(|&s| f32::from(s) / 32768.0));
            debug_assert_eq!(r.channels, ch);
            self.pcm.clear();
            r.run(&mut self.pcm);
        }
        self.encode();
        self.hand_out(emit, false);
    }

    /// Ends the current stretch of audio: everything still inside the resampler and any
    /// partial frame is handed out. The stream can continue afterwards.
    pub fn flush(&mut self, emit: &mut impl FnMut(Bytes)) {
        self.carry.clear();
        self.pcm.clear();
        if let Some(r) = self.resampler.as_mut() {
            r.drain(&mut self.pcm);
        }
        self.encode();
        self.hand_out(emit, true);
    }

    /// Decodes into `self.pcm`, mixing channels to the output layout.
    fn decode(&mut self, mut data: &[u8]) {
        self.pcm.clear();
        let in_frame = self.from.frame_bytes().unwrap_or(2);
        if !self.carry.is_empty() {
            let take = (in_frame - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() == in_frame {
                let carry = std::mem::take(&mut self.carry);
                self.decode_frames(&carry);
                self.carry = carry;
                self.carry.clear();
            }
        }
        let whole = data.len() / in_frame * in_frame;
        self.decode_frames(&data[..whole]);
        self.carry.extend_from_slice(&data[whole..]);
    }

    fn decode_frames(&mut self, data: &[u8]) {
        let (cin, cout) = (
            usize::from(self.from.channels),
            usize::from(self.to.channels),
        );
        let sample = |bytes: &[u8], i: usize| -> i16 {
            match self.from.encoding {
                AudioEncoding::Mulaw => mulaw_decode(bytes[i]),
                AudioEncoding::Alaw => alaw_decode(bytes[i]),
                _ => i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]),
            }
        };
        let samples = match self.from.encoding {
            AudioEncoding::Mulaw | AudioEncoding::Alaw => data.len(),
            _ => data.len() / 2,
        };
        if cin == cout {
            self.pcm.extend((0..samples).map(|i| sample(data, i)));
            return;
        }
        for frame in 0..samples / cin {
            let base = frame * cin;
            if cout == 1 {
                let sum: i32 = (0..cin).map(|c| i32::from(sample(data, base + c))).sum();
                self.pcm.push((sum / cin as i32) as i16);
            } else {
                // Up-mix (or a different layout): channel c takes input channel c mod cin.
                self.pcm
                    .extend((0..cout).map(|c| sample(data, base + c % cin)));
            }
        }
    }

    fn encode(&mut self) {
        match self.to.encoding {
            AudioEncoding::Mulaw => self.out.extend(self.pcm.iter().map(|&s| mulaw_encode(s))),
            AudioEncoding::Alaw => self.out.extend(self.pcm.iter().map(|&s| alaw_encode(s))),
            _ => {
                self.out.reserve(self.pcm.len() * 2);
                for s in &self.pcm {
                    self.out.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
        self.pcm.clear();
    }

    fn hand_out(&mut self, emit: &mut impl FnMut(Bytes), all: bool) {
        if self.frame_bytes == 0 {
            if !self.out.is_empty() {
                emit(self.out.split().freeze());
            }
            return;
        }
        while self.out.len() >= self.frame_bytes {
            emit(self.out.split_to(self.frame_bytes).freeze());
        }
        if all && !self.out.is_empty() {
            emit(self.out.split().freeze());
        }
    }
}

/// Cuts a byte stream into frames of a fixed size without converting it (PCM in the client's
/// own format): whole frames are sliced from the input without copying when nothing is pending.
#[derive(Debug, Default)]
pub struct Framer {
    frame_bytes: usize,
    pending: BytesMut,
}

impl Framer {
    /// Frames of `frame_bytes` (0: pass chunks through as they come).
    pub fn new(frame_bytes: usize) -> Self {
        Self {
            frame_bytes,
            pending: BytesMut::new(),
        }
    }

    /// Hands out every whole frame of `data` (after what was pending).
    pub fn push(&mut self, mut data: Bytes, emit: &mut impl FnMut(Bytes)) {
        let n = self.frame_bytes;
        if n == 0 {
            emit(data);
            return;
        }
        if !self.pending.is_empty() {
            let take = (n - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data.split_to(take));
            if self.pending.len() < n {
                return;
            }
            emit(self.pending.split().freeze());
        }
        while data.len() >= n {
            emit(data.split_to(n));
        }
        self.pending.extend_from_slice(&data);
    }

    /// Like [`Framer::push`] for audio that is not already in a `Bytes` (copied once, into the
    /// framer's own buffer).
    pub fn push_slice(&mut self, data: &[u8], emit: &mut impl FnMut(Bytes)) {
        self.pending.extend_from_slice(data);
        let n = self.frame_bytes;
        if n == 0 {
            emit(self.pending.split().freeze());
            return;
        }
        while self.pending.len() >= n {
            emit(self.pending.split_to(n).freeze());
        }
    }

    /// Hands out the partial frame, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(Bytes)) {
        if !self.pending.is_empty() {
            emit(self.pending.split().freeze());
        }
    }
}
