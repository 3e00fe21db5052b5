//! Cutting a PCM16 stream into utterances for a request/response transcription API. No I/O.
//!
//! Rules:
//! - Without VAD events, everything is buffered; an utterance is cut on `Finalize`, on input
//!   close, and whenever the buffer reaches `max_utterance`.
//! - Once the session's VAD has spoken (`SttInput::Vad`), audio outside speech is kept only
//!   as a `pre_roll` ring, so silence is never uploaded; `SpeechStarted{at_ms}` trims the
//!   buffer to `at_ms - pre_roll` (the first event trims whatever came before it), and
//!   `SpeechEnded` cuts everything buffered (speech-final). `Finalize` / close outside speech
//!   upload nothing (the VAD says nobody is talking); inside speech they cut (speech-final).
//!   `max_utterance` still cuts long speech (not speech-final; the speech goes on).
//! - A cut shorter than `min_utterance`, or whose peak level is at most `silence_level`, is
//!   skipped.
//!
//! Offsets are counted in bytes of the stream so word timings can be placed on the session's
//! timeline.

use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// Why an utterance was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The VAD marked the end of speech.
    SpeechEnded,
    /// The host asked to finalize.
    Finalize,
    /// The buffer reached the longest utterance.
    MaxLength,
    /// The input closed.
    Close,
}

impl Cut {
    /// Whether the final result of this cut ends the speaker's turn.
    pub fn speech_final(self) -> bool {
        !matches!(self, Cut::MaxLength)
    }
}

/// One utterance to transcribe.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// PCM16 LE mono, whole samples.
    pub pcm: Bytes,
    /// Where its first sample sits in the stream, in seconds.
    pub start_secs: f64,
    /// Why it was cut.
    pub cut: Cut,
}

/// Segmenter parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Sample rate of the stream.
    pub sample_rate: u32,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// Shortest utterance uploaded.
    pub min_utterance: Duration,
    /// Audio kept before speech starts (VAD mode).
    pub pre_roll: Duration,
    /// Peak level at or below which a cut is silence.
    pub silence_level: u16,
}

/// The segmenter state.
#[derive(Debug)]
pub struct Segmenter {
    p: Params,
    buf: BytesMut,
    /// Stream offset (bytes) of `buf[0]`.
    buf_start: u64,
    /// Bytes received so far.
    pos: u64,
    /// The VAD has sent at least one event.
    vad: bool,
    /// Between `SpeechStarted` and `SpeechEnded`.
    in_speech: bool,
    /// Cuts skipped (too short or silent), for logs and tests.
    skipped: usize,
}

const FRAME: usize = 2; // PCM16 mono

impl Segmenter {
    /// A segmenter for a mono PCM16 stream.
    pub fn new(p: Params) -> Self {
        Self {
            p,
            buf: BytesMut::new(),
            buf_start: 0,
            pos: 0,
            vad: false,
            in_speech: false,
            skipped: 0,
        }
    }

    fn bytes_for(&self, d: Duration) -> usize {
        let samples = d.as_secs_f64() * f64::from(self.p.sample_rate);
        (samples.round() as usize).saturating_mul(FRAME)
    }

    /// Cuts skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the VAD reported speech in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Appends audio; long speech is cut into `out`.
    pub fn audio(&mut self, data: &[u8], out: &mut Vec<Utterance>) {
        self.pos += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.vad && !self.in_speech {
            let keep = self.bytes_for(self.p.pre_roll);
            if self.buf.len() > keep {
                self.drop_front(self.buf.len() - keep);
            }
            return;
        }
        let max = self.bytes_for(self.p.max_utterance).max(FRAME);
        while self.buf.len() >= max {
            self.cut(max, Cut::MaxLength, out);
        }
    }

    /// Speech began `at_ms` into the stream.
    pub fn speech_started(&mut self, at_ms: u64) {
        let first = !self.vad;
        self.vad = true;
        if self.in_speech {
            return; // a repeated start: keep everything
        }
        self.in_speech = true;
        let pre = self.p.pre_roll.as_millis() as u64;
        let from_ms = at_ms.saturating_sub(pre);
        let from =
            (from_ms as f64 / 1000.0 * f64::from(self.p.sample_rate)).round() as u64 * FRAME as u64;
        if from > self.buf_start {
            let n = (from - self.buf_start).min(self.buf.len() as u64) as usize;
            self.drop_front(n);
        }
        if first {
            tracing::debug!(at_ms, "stt segmenter: VAD events present, trimming silence");
        }
    }

    /// Speech ended: cut everything buffered.
    pub fn speech_ended(&mut self, out: &mut Vec<Utterance>) {
        self.vad = true;
        self.in_speech = false;
        self.cut_all(Cut::SpeechEnded, out);
    }

    /// The host asked to finalize.
    pub fn finalize(&mut self, out: &mut Vec<Utterance>) {
        self.flush(Cut::Finalize, out);
    }

    /// The input closed.
    pub fn close(&mut self, out: &mut Vec<Utterance>) {
        self.flush(Cut::Close, out);
    }

    fn flush(&mut self, cut: Cut, out: &mut Vec<Utterance>) {
        if self.vad && !self.in_speech {
            return; // only the pre-roll of silence is buffered
        }
        self.cut_all(cut, out);
    }

    fn cut_all(&mut self, cut: Cut, out: &mut Vec<Utterance>) {
        let n = self.buf.len() - self.buf.len() % FRAME;
        self.cut(n, cut, out);
    }

    fn drop_front(&mut self, n: usize) {
        // Whole frames only, so the buffer stays sample-aligned with the stream.
        let n = (n.div_ceil(FRAME) * FRAME).min(self.buf.len() - self.buf.len() % FRAME);
        let _ = self.buf.split_to(n);
        self.buf_start += n as u64;
    }

    fn cut(&mut self, n: usize, cut: Cut, out: &mut Vec<Utterance>) {
        let n = n - n % FRAME;
        let start = self.buf_start;
        let pcm = self.buf.split_to(n).freeze();
        self.buf_start += n as u64;
        if n == 0 {
            return;
        }
        let start_secs = start as f64 / FRAME as f64 / f64::from(self.p.sample_rate.max(1));
        if n < self.bytes_for(self.p.min_utterance) {
            self.skipped += 1;
            tracing::debug!(
                bytes = n,
                ?cut,
                "stt segmenter: utterance too short, skipped"
            );
            return;
        }
        if peak(&pcm) <= self.p.silence_level {
            self.skipped += 1;
            tracing::debug!(bytes = n, ?cut, "stt segmenter: silent utterance, skipped");
            return;
        }
        out.push(Utterance {
            pcm,
            start_secs,
            cut,
        });
    }
}

/// The largest absolute sample of PCM16 LE audio.
pub fn peak(pcm: &[u8]) -> u16 {
    pcm.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    fn params() -> Params {
        Params {
            sample_rate: RATE,
            max_utterance: Duration::from_secs(2),
            min_utterance: Duration::from_millis(200),
            pre_roll: Duration::from_millis(300),
            silence_level: 64,
        }
    }

    fn tone(ms: u32) -> Vec<u8> {
        (0..RATE / 1000 * ms)
            .flat_map(|i| (if i % 20 < 10 { 3000i16 } else { -3000 }).to_le_bytes())
            .collect()
    }

    fn silence(ms: u32) -> Vec<u8> {
        vec![0; (RATE / 1000 * ms * 2) as usize]
    }

    #[test]
    fn finalize_without_vad_cuts_everything() {
        let mut s = Segmenter::new(params());
        let mut out = Vec::new();
        s.audio(&silence(500), &mut out);
        s.audio(&tone(500), &mut out);
        s.finalize(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pcm.len(), silence(500).len() + tone(500).len());
        assert_eq!((out[0].cut, out[0].start_secs), (Cut::Finalize, 0.0));
    }

    #[test]
    fn vad_drops_silence_beyond_the_pre_roll() {
        let mut s = Segmenter::new(params());
        let mut out = Vec::new();
        s.audio(&silence(1000), &mut out);
        s.speech_started(1000);
        s.audio(&tone(500), &mut out);
        s.speech_ended(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pcm.len(), silence(300).len() + tone(500).len());
        assert!(
            (out[0].start_secs - 0.7).abs() < 1e-9,
            "{}",
            out[0].start_secs
        );
        // Outside speech only the pre-roll stays; Finalize uploads nothing.
        s.audio(&silence(2000), &mut out);
        assert_eq!(s.buffered(), silence(300).len());
        s.finalize(&mut out);
        assert_eq!(out.len(), 1);
        s.speech_started(3800);
        s.audio(&tone(400), &mut out);
        s.speech_ended(&mut out);
        assert_eq!(out.len(), 2);
        assert!(
            (out[1].start_secs - 3.5).abs() < 1e-9,
            "{}",
            out[1].start_secs
        );
    }

    #[test]
    fn max_length_cuts_and_short_or_silent_cuts_are_skipped() {
        let mut s = Segmenter::new(params());
        let mut out = Vec::new();
        s.audio(&tone(4500), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|u| u.cut == Cut::MaxLength && !u.cut.speech_final()));
        assert!((out[1].start_secs - 2.0).abs() < 1e-9);
        s.audio(&tone(50), &mut out);
        s.finalize(&mut out); // 550 ms left
        assert_eq!(out.len(), 3);
        s.audio(&tone(100), &mut out);
        s.finalize(&mut out);
        s.audio(&silence(800), &mut out);
        s.close(&mut out);
        assert_eq!((out.len(), s.skipped()), (3, 2));
    }

    #[test]
    fn odd_bytes_stay_aligned() {
        let mut s = Segmenter::new(params());
        let mut out = Vec::new();
        let t = tone(300);
        s.audio(&t[..101], &mut out);
        s.audio(&t[101..], &mut out);
        s.audio(&[7], &mut out);
        s.finalize(&mut out);
        assert_eq!(out[0].pcm.len(), t.len());
        assert_eq!(s.buffered(), 1);
    }
}
