//! Stripping the RIFF/WAVE header `SynthesizeSpeech` puts around LINEAR16, MULAW and ALAW audio
//! (`SynthesizeSpeechResponse.audio_content`: "For LINEAR16 audio, we include the WAV header";
//! `AudioEncoding.MULAW`/`ALAW`: "Audio content returned as MULAW also contains a WAV header").
//!
//! Layout: `RIFF` <u32 size> `WAVE`, then chunks `<4-byte id> <u32 LE size> <data>` (padded to
//! an even size); the samples are the `data` chunk. Audio that does not start with `RIFF` is
//! passed through (PCM from `StreamingSynthesize` is headerless).

use bytes::{Buf, Bytes, BytesMut};

/// Largest header accepted before the `data` chunk (fmt + fact + LIST chunks are far smaller).
pub const MAX_HEADER: usize = 64 * 1024;

/// Why a WAV could not be unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWav(pub &'static str);

impl std::fmt::Display for BadWav {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed WAV audio: {}", self.0)
    }
}

/// Where the samples start in `buf`, if the header is complete: `Ok(None)` means more bytes
/// are needed.
fn data_offset(buf: &[u8]) -> Result<Option<usize>, BadWav> {
    if buf.len() < 12 {
        return Ok(None);
    }
    if &buf[8..12] != b"WAVE" {
        return Err(BadWav("RIFF without WAVE"));
    }
    let mut pos = 12usize;
    loop {
        if pos + 8 > buf.len() {
            return if pos > MAX_HEADER {
                Err(BadWav("no data chunk"))
            } else {
                Ok(None)
            };
        }
        let id = &buf[pos..pos + 4];
        let size = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        if id == b"data" {
            return Ok(Some(pos + 8));
        }
        pos = pos
            .checked_add(8 + size as usize + (size as usize & 1))
            .filter(|p| *p <= MAX_HEADER + 8)
            .ok_or(BadWav("header too large"))?;
    }
}

/// The samples of a whole WAV (or `audio` itself when it is not RIFF).
pub fn strip(audio: Bytes) -> Result<Bytes, BadWav> {
    if !audio.starts_with(b"RIFF") {
        return Ok(audio);
    }
    match data_offset(&audio)? {
        Some(off) => Ok(audio.slice(off.min(audio.len())..)),
        None => Err(BadWav("truncated header")),
    }
}

/// Strips a header that may arrive split over several chunks.
#[derive(Debug, Default)]
pub struct HeaderStrip {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    Header(BytesMut),
    Pass,
}

impl HeaderStrip {
    /// A stripper expecting the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The audio of `chunk` to forward (`None`: held back until the header is complete).
    pub fn push(&mut self, chunk: Bytes) -> Result<Option<Bytes>, BadWav> {
        match &mut self.state {
            State::Pass => Ok(Some(chunk)),
            State::Start => {
                if chunk.len() >= 4 && !chunk.starts_with(b"RIFF") {
                    self.state = State::Pass;
                    return Ok(Some(chunk));
                }
                self.state = State::Header(BytesMut::new());
                self.push(chunk)
            }
            State::Header(buf) => {
                buf.extend_from_slice(&chunk);
                if buf.len() >= 4 && !buf.starts_with(b"RIFF") {
                    let all = std::mem::take(buf).freeze();
                    self.state = State::Pass;
                    return Ok(Some(all));
                }
                match data_offset(buf)? {
                    None => Ok(None),
                    Some(off) => {
                        let mut all = std::mem::take(buf);
                        all.advance(off.min(all.len()));
                        self.state = State::Pass;
                        Ok(Some(all.freeze()).filter(|b| !b.is_empty()))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: &[u8], extra: bool) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&[1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0, 2, 0, 16, 0]);
        if extra {
            v.extend_from_slice(b"LIST");
            v.extend_from_slice(&3u32.to_le_bytes());
            v.extend_from_slice(&[1, 2, 3, 0]);
        }
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        v.extend_from_slice(samples);
        v
    }

    #[test]
    fn strips_whole_and_split_headers() {
        let w = wav(&[1, 2, 3, 4], true);
        assert_eq!(
            strip(Bytes::from(w.clone())).unwrap(),
            Bytes::from_static(&[1, 2, 3, 4])
        );
        assert_eq!(
            strip(Bytes::from_static(&[9, 9])).unwrap(),
            Bytes::from_static(&[9, 9])
        );
        assert!(strip(Bytes::from_static(b"RIFF\0\0\0\0WAVEfmt ")).is_err());
        for split in 1..w.len() {
            let mut s = HeaderStrip::new();
            let mut out = Vec::new();
            for part in [&w[..split], &w[split..]] {
                if let Some(b) = s.push(Bytes::copy_from_slice(part)).unwrap() {
                    out.extend_from_slice(&b);
                }
            }
            assert_eq!(out, [1, 2, 3, 4], "split at {split}");
        }
        let mut s = HeaderStrip::new();
        assert_eq!(
            s.push(Bytes::from_static(&[5, 6, 7, 8])).unwrap().unwrap(),
            Bytes::from_static(&[5, 6, 7, 8])
        );
        // A huge chunk size is refused, not trusted.
        let mut bad = b"RIFF\0\0\0\0WAVEjunk".to_vec();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(&[0; 16]);
        assert!(strip(Bytes::from(bad)).is_err());
    }
}
