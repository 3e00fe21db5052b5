//! Re-chunks the host's audio into messages of 50–1000 ms, as the vendor requires (docs
//! "Streaming API", sendAudio: "audio data between 50ms and 1000ms in length"; error 3007
//! otherwise).
//!
//! A frame that already fits (and nothing is buffered) is forwarded as the same `Bytes`, and a
//! long one is sliced without copying. Only shorter frames (the gateway's usual 20 ms) are copied,
//! into one reusable buffer: a sent chunk is split off it, and once the socket has written and
//! dropped that chunk, `BytesMut` reclaims the space, so steady streaming does not allocate.

use bytes::{Bytes, BytesMut};

/// Audio waiting to be sent, and the bounds of one message.
#[derive(Debug)]
pub struct Chunker {
    buf: BytesMut,
    /// A large frame being sliced (zero-copy).
    big: Bytes,
    frame: usize,
    min: usize,
    max: usize,
    silence: u8,
}

impl Chunker {
    /// Messages of `min..=max` bytes, cut at multiples of `frame` bytes.
    pub fn new(frame: usize, min: usize, max: usize, silence: u8) -> Self {
        let frame = frame.max(1);
        let min = min.max(frame).div_ceil(frame) * frame;
        let max = (max / frame * frame).max(min);
        Self {
            buf: BytesMut::with_capacity(max.min(2 * min + 4096)),
            big: Bytes::new(),
            frame,
            min,
            max,
            silence,
        }
    }

    /// Takes a frame of audio; then call [`Self::next_chunk`] until it returns `None`.
    pub fn push(&mut self, audio: Bytes) {
        if audio.is_empty() {
            return;
        }
        if self.buf.is_empty() && self.big.is_empty() {
            self.big = audio;
        } else {
            // Either something is buffered (append to it) or a big frame is still being sliced
            // (cannot happen: callers drain `next_chunk` after every push), so append after it.
            if !self.big.is_empty() {
                let rest = std::mem::take(&mut self.big);
                self.buf.extend_from_slice(&rest);
            }
            self.buf.extend_from_slice(&audio);
        }
    }

    /// The next message to send, if a full one is ready.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.big.is_empty() {
            let len = self.big.len();
            if len >= self.min {
                // At least `min`, as `min` is a whole number of frames.
                let take = len.min(self.max) / self.frame * self.frame;
                return Some(self.big.split_to(take));
            }
            // Too short on its own: keep it for the next frame.
            let rest = std::mem::take(&mut self.big);
            self.buf.extend_from_slice(&rest);
            return None;
        }
        if self.buf.len() >= self.min {
            let take = self.buf.len().min(self.max) / self.frame * self.frame;
            return Some(self.buf.split_to(take).freeze());
        }
        None
    }

    /// Whatever is buffered, padded with silence to the minimum length (for `Finalize` and
    /// close, when no more audio will complete it), or `None` when nothing is buffered. A
    /// trailing partial sample is dropped.
    pub fn flush(&mut self) -> Option<Bytes> {
        if !self.big.is_empty() {
            let rest = std::mem::take(&mut self.big);
            self.buf.extend_from_slice(&rest);
        }
        let whole = self.buf.len() / self.frame * self.frame;
        self.buf.truncate(whole);
        if self.buf.is_empty() {
            return None;
        }
        if self.buf.len() < self.min {
            self.buf.resize(self.min, self.silence);
        }
        let take = self.buf.len().min(self.max);
        Some(self.buf.split_to(take).freeze())
    }

    /// Bytes waiting.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.big.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Chunker) -> Vec<usize> {
        std::iter::from_fn(|| c.next_chunk())
            .map(|b| b.len())
            .collect()
    }

    #[test]
    fn small_frames_are_gathered_and_big_ones_sliced() {
        // 16 kHz PCM16: 50 ms = 1600 bytes, 1000 ms = 32000 bytes.
        let mut c = Chunker::new(2, 1600, 32_000, 0);
        let mut sizes = Vec::new();
        for _ in 0..10 {
            c.push(Bytes::from(vec![1u8; 640]));
            sizes.extend(drain(&mut c));
        }
        assert_eq!(sizes, [1920, 1920, 1920]);
        assert_eq!(c.buffered(), 640);
        let big = Bytes::from(vec![2u8; 70_001]);
        c.push(big);
        let sizes = drain(&mut c);
        assert!(
            sizes
                .iter()
                .all(|s| (1600..=32_000).contains(s) && s % 2 == 0),
            "{sizes:?}"
        );
        c.push(Bytes::from(vec![4u8; 100]));
        assert!(c.next_chunk().is_none());
        let f = c.flush().unwrap();
        assert_eq!(f.len() % 2, 0);
        assert!(f.len() >= 1600);
        assert!(c.flush().is_none());
    }

    #[test]
    fn a_fitting_frame_is_forwarded_without_copy() {
        let mut c = Chunker::new(2, 1600, 32_000, 0);
        let frame = Bytes::from(vec![3u8; 3200]);
        let ptr = frame.as_ptr();
        c.push(frame);
        let out = c.next_chunk().unwrap();
        assert_eq!(out.as_ptr(), ptr);
        assert!(c.next_chunk().is_none());
    }

    #[test]
    fn flush_pads_with_silence_and_drops_half_samples() {
        let mut c = Chunker::new(2, 1600, 32_000, 0);
        c.push(Bytes::from_static(&[9u8; 7]));
        assert!(c.next_chunk().is_none());
        let f = c.flush().unwrap();
        assert_eq!(f.len(), 1600);
        assert_eq!(&f[..6], &[9u8; 6]);
        assert!(f[6..].iter().all(|b| *b == 0));
        let mut c = Chunker::new(1, 400, 8000, 0xFF);
        c.push(Bytes::from_static(&[1u8]));
        assert!(c.flush().unwrap()[1..].iter().all(|b| *b == 0xFF));
    }
}
