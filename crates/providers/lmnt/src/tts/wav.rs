//! Stripping the RIFF/WAVE header LMNT puts before streamed `ulaw` audio (speech_generate_params.py:
//! "`ulaw`: 8-bit G711 µ-law audio with a WAV header"), so the sink gets bare G.711 bytes.

use bytes::{Bytes, BytesMut};

/// The most header bytes held back while looking for the `data` chunk.
const MAX_HEADER: usize = 4096;

/// A push-based header stripper: bytes before the `data` chunk's payload are dropped; input
/// that does not start with `RIFF` passes through untouched.
#[derive(Debug, Default)]
pub struct WavStripper {
    buf: BytesMut,
    done: bool,
}

impl WavStripper {
    /// A stripper waiting for a header.
    pub fn new() -> Self {
        Self::default()
    }

    /// The audio bytes of `chunk` (possibly empty while the header is incomplete).
    pub fn push(&mut self, chunk: Bytes) -> Result<Bytes, &'static str> {
        if self.done {
            return Ok(chunk);
        }
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() < 4 {
            return Ok(Bytes::new());
        }
        if &self.buf[..4] != b"RIFF" {
            self.done = true;
            return Ok(std::mem::take(&mut self.buf).freeze());
        }
        // RIFF <size> WAVE, then chunks of <id><le u32 size><payload (padded to even)>.
        let mut pos = 12;
        while pos + 8 <= self.buf.len() {
            let id = &self.buf[pos..pos + 4];
            let size = u32::from_le_bytes([
                self.buf[pos + 4],
                self.buf[pos + 5],
                self.buf[pos + 6],
                self.buf[pos + 7],
            ]) as usize;
            if id == b"data" {
                self.done = true;
                let mut rest = std::mem::take(&mut self.buf);
                return Ok(rest.split_off(pos + 8).freeze());
            }
            pos += 8 + size + (size & 1);
        }
        if self.buf.len() > MAX_HEADER {
            return Err("WAV header without a data chunk");
        }
        Ok(Bytes::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(payload: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
        out.extend_from_slice(&18u32.to_le_bytes());
        out.extend_from_slice(&[
            7, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0, 0, 0,
        ]);
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(b"data\xff\xff\xff\xff");
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn strips_for_any_split() {
        let payload: Vec<u8> = (0..200u8).collect();
        let file = wav(&payload);
        for split in 1..60 {
            let mut s = WavStripper::new();
            let mut out = Vec::new();
            for piece in file.chunks(split) {
                out.extend_from_slice(&s.push(Bytes::copy_from_slice(piece)).unwrap());
            }
            assert_eq!(out, payload, "split {split}");
        }
        let mut s = WavStripper::new();
        assert_eq!(
            &s.push(Bytes::from_static(b"\x7f\x7f\x7f\x7f\x01")).unwrap()[..],
            b"\x7f\x7f\x7f\x7f\x01"
        );
        let mut s = WavStripper::new();
        let mut junk = b"RIFF\0\0\0\0WAVE".to_vec();
        junk.extend_from_slice(b"junk");
        junk.extend_from_slice(&8000u32.to_le_bytes());
        junk.extend(std::iter::repeat_n(0u8, 8000));
        assert!(s.push(Bytes::from(junk)).is_err());
    }
}
