//! End-of-turn logic: when to tell the client the speaker has finished.
//!
//! A provider's own speech-final ends the turn at once. Otherwise, after a final result, the turn
//! ends when no new final arrives within `silence` (1800 ms), and at the latest `cap` (4000 ms)
//! after the first final of the segment, however many finals keep arriving.

use std::time::Duration;
use tokio::time::Instant;

/// Synthetic end-of-turn timer.
#[derive(Debug, Clone)]
pub struct TurnTimer {
    silence: Duration,
    cap: Duration,
    first_final: Option<Instant>,
    deadline: Option<Instant>,
}

impl TurnTimer {
    /// A timer with the given silence window and hard cap.
    pub fn new(silence: Duration, cap: Duration) -> Self {
        Self {
            silence,
            cap,
            first_final: None,
            deadline: None,
        }
    }

    /// A non-empty final arrived at `now` (not itself speech-final).
    pub fn on_final(&mut self, now: Instant) {
        let first = *self.first_final.get_or_insert(now);
        self.deadline = Some((now + self.silence).min(first + self.cap));
    }

    /// The provider ended the turn; no synthetic one is needed for this segment.
    pub fn on_speech_final(&mut self) {
        self.first_final = None;
        self.deadline = None;
    }

    /// When the synthetic end of turn is due, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether a segment with finals is open.
    pub fn pending(&self) -> bool {
        self.deadline.is_some()
    }

    /// The deadline passed: the segment is over.
    pub fn fire(&mut self) {
        self.on_speech_final();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_window_and_cap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = TurnTimer::new(ms(1800), ms(4000));
        assert!(t.deadline().is_none());
        t.on_final(t0);
        assert_eq!(t.deadline(), Some(t0 + ms(1800)));
        t.on_final(t0 + ms(1000));
        assert_eq!(
            t.deadline(),
            Some(t0 + ms(2800)),
            "a new final restarts the window"
        );
        t.on_final(t0 + ms(3000));
        assert_eq!(
            t.deadline(),
            Some(t0 + ms(4000)),
            "capped from the first final"
        );
        t.on_speech_final();
        assert!(!t.pending());
        t.on_final(t0 + ms(5000));
        assert_eq!(
            t.deadline(),
            Some(t0 + ms(6800)),
            "a new segment starts fresh"
        );
        t.fire();
        assert!(t.deadline().is_none());
    }
}
