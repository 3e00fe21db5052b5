//! Utterance segmentation: voice activity detection (earshot) plus hangover and pre-roll logic,
//! or, when the session's VAD decides ([`Segmenter::follow_external`]), its boundaries with the
//! same pre-roll.

use std::collections::VecDeque;

use earshot::Detector;

/// earshot scores fixed frames of 256 samples (16 ms) at 16 kHz.
const FRAME: usize = 256;
const SAMPLES_PER_MS: usize = 16;
/// How long after speech began a session's VAD may decide it did (earshot's ~100–140 ms with
/// its default `min_speech_ms`, Silero's `min_speech_ms`): an external start takes the pre-roll
/// from this much before the decision.
const EXTERNAL_LEAD_MS: u32 = 300;

/// Tuning of a [`Segmenter`]. All durations are in milliseconds of 16 kHz audio.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmenterConfig {
    /// VAD score (0..1) at or above which a frame counts as speech. Speech continues while the
    /// score stays above `threshold - 0.15` (hysteresis, as Silero VAD does).
    pub threshold: f32,
    /// Consecutive speech needed before `SpeechStarted` (filters clicks).
    pub min_speech_ms: u32,
    /// Silence after speech that ends the utterance.
    pub silence_hangover_ms: u32,
    /// Audio kept from before the detected onset, so the first phoneme is not clipped.
    pub pre_roll_ms: u32,
    /// An utterance is cut (and a new one started if speech goes on) at this length.
    pub max_utterance_ms: u32,
    /// Silence within an utterance after which [`SegmentEvent::Paused`] is reported (and
    /// [`SegmentEvent::Resumed`] when speech comes back before the hangover ends it); `0`
    /// reports no pauses. Only useful below `silence_hangover_ms`.
    pub pause_ms: u32,
    /// Within an utterance, a frame whose energy is at least this many dB below the utterance's
    /// loudest counts as silence whatever the VAD's score (`0` = off). The score decays for
    /// ~100–150 ms after the voice stops; the energy falls at once, so pauses and the hangover
    /// are counted from the voice's real end in clean audio. A noise floor less than this below
    /// the voice keeps the gate shut, and the score decides alone.
    pub quiet_db: f32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 64,
            silence_hangover_ms: 500,
            pre_roll_ms: 300,
            max_utterance_ms: 30_000,
            pause_ms: 0,
            quiet_db: DEFAULT_QUIET_DB,
        }
    }
}

/// Default [`SegmenterConfig::quiet_db`]: below a voice's quietest consonants against its
/// loudest vowels, above a clean microphone's noise floor.
pub const DEFAULT_QUIET_DB: f32 = 35.0;

/// Mean square of a frame.
pub(crate) fn energy(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32
}

/// The energy ratio of a gate `db` below the loudest frame; 0 (never quiet) when off.
pub(crate) fn quiet_ratio(db: f32) -> f32 {
    if db > 0.0 {
        10f32.powf(-db / 10.0)
    } else {
        0.0
    }
}

/// What the segmenter found in the audio pushed so far.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentEvent {
    /// Speech began (reported once `min_speech_ms` of speech has been seen).
    SpeechStarted,
    /// The utterance has been silent for `pause_ms` (only with `pause_ms` set): it may be
    /// over. [`Segmenter::utterance`] holds its audio so far.
    Paused,
    /// Speech came back after a [`Paused`](Self::Paused), within the same utterance.
    Resumed,
    /// The utterance ended; `samples` is its 16 kHz mono audio including the pre-roll and the
    /// trailing silence hangover.
    SpeechEnded {
        /// The utterance audio, `f32` in `[-1, 1]`.
        samples: Vec<f32>,
    },
}

/// A speech boundary the session's VAD decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Speech began; decided `at_ms` into the stream.
    Started {
        /// When it was decided, ms into the stream.
        at_ms: u64,
    },
    /// Speech ended.
    Ended,
}

/// Splits a 16 kHz mono stream into utterances. Feed chunks of any size; one per stream.
pub struct Segmenter {
    config: SegmenterConfig,
    detector: Box<Detector>,
    /// Samples not yet forming a full frame.
    pending: Vec<f32>,
    /// Recent audio while idle: pre-roll plus the candidate onset frames.
    history: VecDeque<f32>,
    /// The current utterance while in speech.
    utterance: Vec<f32>,
    in_speech: bool,
    /// A `Paused` was reported and no speech followed yet.
    paused: bool,
    speech_run: usize,
    silence_run: usize,
    /// Utterances start and end at [`Boundary`]s; the detector only reports pauses.
    external: bool,
    /// Samples framed so far (the stream position of the next frame).
    position: u64,
    /// `quiet_db` as an energy ratio.
    quiet: f32,
    /// Energy of the utterance's loudest frame.
    peak: f32,
}

impl Segmenter {
    /// Creates a segmenter with `config`.
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            detector: Detector::default_boxed(),
            pending: Vec::with_capacity(FRAME),
            history: VecDeque::new(),
            utterance: Vec::new(),
            in_speech: false,
            paused: false,
            speech_run: 0,
            silence_run: 0,
            external: false,
            position: 0,
            quiet: quiet_ratio(config.quiet_db),
            peak: 0.0,
            config,
        }
    }

    /// From now on utterances start and end where the session's VAD says
    /// ([`boundary`](Self::boundary)), not where this segmenter's detector would; the detector
    /// still reports pauses ([`SegmentEvent::Paused`], [`SegmentEvent::Resumed`]) and utterances
    /// are still cut at `max_utterance_ms`.
    pub fn follow_external(&mut self) {
        self.external = true;
    }

    /// Whether boundaries come from the session's VAD.
    pub fn follows_external(&self) -> bool {
        self.external
    }

    /// A boundary of the session's VAD: an utterance starts (with the pre-roll, counted back
    /// from [`EXTERNAL_LEAD_MS`] before the decision) or ends. `None` when it changes nothing
    /// (a start in speech, an end outside it) or when not [following](Self::follow_external).
    pub fn boundary(&mut self, boundary: Boundary) -> Option<SegmentEvent> {
        if !self.external {
            return None;
        }
        match boundary {
            Boundary::Started { .. } if self.in_speech => None,
            Boundary::Started { at_ms } => {
                let lead = u64::from(self.config.pre_roll_ms + EXTERNAL_LEAD_MS);
                let from = at_ms.saturating_sub(lead) * SAMPLES_PER_MS as u64;
                let first = self.position - self.history.len() as u64;
                let skip = (from.saturating_sub(first) as usize).min(self.history.len());
                self.utterance.clear();
                self.utterance.extend(self.history.drain(..).skip(skip));
                self.history.clear();
                self.peak = self.utterance.chunks(FRAME).map(energy).fold(0.0, f32::max);
                self.in_speech = true;
                self.paused = false;
                self.silence_run = 0;
                Some(SegmentEvent::SpeechStarted)
            }
            Boundary::Ended if !self.in_speech => None,
            Boundary::Ended => {
                self.in_speech = false;
                self.paused = false;
                self.silence_run = 0;
                Some(SegmentEvent::SpeechEnded {
                    samples: std::mem::take(&mut self.utterance),
                })
            }
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Whether an utterance is in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Samples of silence (the VAD's score below its hysteresis) at the end of the utterance in
    /// progress: `0` while the last frame was speech, and between utterances.
    pub fn trailing_silence(&self) -> usize {
        if self.in_speech {
            self.silence_run * FRAME
        } else {
            0
        }
    }

    /// The audio of the utterance in progress so far (pre-roll included; whole 16 ms frames
    /// only); empty between utterances.
    pub fn utterance(&self) -> &[f32] {
        if self.in_speech {
            &self.utterance
        } else {
            &[]
        }
    }

    /// Feeds 16 kHz mono `f32` samples in `[-1, 1]`; returns the events they completed.
    pub fn push_f32(&mut self, samples: &[f32]) -> Vec<SegmentEvent> {
        let mut events = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.pending.len()).min(rest.len());
            self.pending
                .extend(rest[..take].iter().map(|s| s.clamp(-1.0, 1.0)));
            rest = &rest[take..];
            if self.pending.len() == FRAME {
                let frame = std::mem::take(&mut self.pending);
                self.process_frame(&frame, &mut events);
                self.pending = frame;
                self.pending.clear();
            }
        }
        events
    }

    /// Feeds 16 kHz mono `i16` samples; returns the events they completed.
    pub fn push_i16(&mut self, samples: &[i16]) -> Vec<SegmentEvent> {
        let mut events = Vec::new();
        // Convert in small blocks to avoid allocating per call.
        let mut block = [0f32; FRAME];
        for chunk in samples.chunks(FRAME) {
            for (d, &s) in block.iter_mut().zip(chunk) {
                *d = f32::from(s) / 32768.0;
            }
            events.extend(self.push_f32(&block[..chunk.len()]));
        }
        events
    }

    /// Ends the stream: returns `SpeechEnded` for an utterance still in progress, and resets.
    pub fn flush(&mut self) -> Option<SegmentEvent> {
        let event = self.in_speech.then(|| {
            let mut samples = std::mem::take(&mut self.utterance);
            samples.extend_from_slice(&self.pending);
            SegmentEvent::SpeechEnded { samples }
        });
        self.reset();
        event
    }

    /// Drops all state but the stream position and whose boundaries apply (use when the
    /// stream restarts).
    pub fn reset(&mut self) {
        self.detector.reset();
        self.pending.clear();
        self.history.clear();
        self.utterance.clear();
        self.in_speech = false;
        self.paused = false;
        self.speech_run = 0;
        self.silence_run = 0;
    }

    fn frames(&self, ms: u32) -> usize {
        (ms as usize * SAMPLES_PER_MS).div_ceil(FRAME)
    }

    fn process_frame(&mut self, frame: &[f32], events: &mut Vec<SegmentEvent>) {
        self.position += FRAME as u64;
        let score = self.detector.predict_f32(frame);
        if self.external && !self.in_speech {
            // The session's VAD starts utterances: keep enough for its start's pre-roll.
            self.history.extend(frame.iter().copied());
            let keep = (self.config.pre_roll_ms + 2 * EXTERNAL_LEAD_MS) as usize * SAMPLES_PER_MS;
            while self.history.len() > keep {
                self.history.pop_front();
            }
            return;
        }
        if self.in_speech {
            self.utterance.extend_from_slice(frame);
            let energy = energy(frame);
            // Against the voice before this frame: a quiet frame is no speech.
            let quiet = self.quiet > 0.0 && energy <= self.peak * self.quiet;
            self.peak = self.peak.max(energy);
            if score >= self.config.threshold - 0.15 && !quiet {
                self.silence_run = 0;
                if self.paused {
                    self.paused = false;
                    events.push(SegmentEvent::Resumed);
                }
            } else {
                self.silence_run += 1;
            }
            let too_long =
                self.utterance.len() >= self.config.max_utterance_ms as usize * SAMPLES_PER_MS;
            let ended = !self.external
                && self.silence_run >= self.frames(self.config.silence_hangover_ms).max(1);
            if self.config.pause_ms > 0
                && !self.paused
                && !ended
                && !too_long
                && self.silence_run == self.frames(self.config.pause_ms).max(1)
            {
                self.paused = true;
                events.push(SegmentEvent::Paused);
            }
            if too_long && self.external {
                // The session's VAD still hears speech: the next utterance begins at once.
                self.paused = false;
                self.silence_run = 0;
                events.push(SegmentEvent::SpeechEnded {
                    samples: std::mem::take(&mut self.utterance),
                });
                events.push(SegmentEvent::SpeechStarted);
                return;
            }
            if ended || too_long {
                self.paused = false;
                events.push(SegmentEvent::SpeechEnded {
                    samples: std::mem::take(&mut self.utterance),
                });
                self.in_speech = false;
                self.silence_run = 0;
                // A cut at max length while speech goes on restarts right away (no pre-roll:
                // that audio is already in the previous utterance).
                self.speech_run = if too_long && score >= self.config.threshold {
                    self.frames(self.config.min_speech_ms)
                } else {
                    0
                };
                self.history.clear();
            }
            return;
        }

        self.history.extend(frame.iter().copied());
        self.speech_run = if score >= self.config.threshold {
            self.speech_run + 1
        } else {
            0
        };
        let keep = (self.frames(self.config.pre_roll_ms) + self.speech_run) * FRAME;
        while self.history.len() > keep.max(FRAME) {
            self.history.pop_front();
        }
        if self.speech_run >= self.frames(self.config.min_speech_ms).max(1) {
            self.in_speech = true;
            self.silence_run = 0;
            self.utterance.clear();
            self.utterance.extend(self.history.drain(..));
            self.peak = self.utterance.chunks(FRAME).map(energy).fold(0.0, f32::max);
            events.push(SegmentEvent::SpeechStarted);
        }
    }
}

impl Default for Segmenter {
    fn default() -> Self {
        Self::new(SegmenterConfig::default())
    }
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("config", &self.config)
            .field("in_speech", &self.in_speech)
            .field("utterance_samples", &self.utterance.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_produces_no_events() {
        let mut seg = Segmenter::default();
        let silence = vec![0i16; 16_000 * 3];
        // Odd chunk sizes exercise the frame re-assembly.
        for chunk in silence.chunks(333) {
            assert!(seg.push_i16(chunk).is_empty());
        }
        assert_eq!(seg.flush(), None);
    }
}
