//! The most recent outgoing audio, kept until the provider acknowledges it, so it can be re-sent
//! on a new connection after a transient drop.

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// A byte-bounded ring of sent audio chunks, addressed by stream offset (bytes since the start of
/// the stream, across reconnects).
///
/// The provider [`push`](Self::push)es every chunk it sends and tells the buffer what the vendor
/// has acknowledged, by offset ([`ack`](Self::ack)), by audio time ([`ack_duration`](Self::ack_duration))
/// or wholesale ([`clear`](Self::clear), e.g. after a final result). After a reconnect it re-sends
/// [`unacked`](Self::unacked). On the new connection the vendor counts from zero again; its offset
/// `o` is stream offset [`replay_offset`](Self::replay_offset)` + o` as captured at the reconnect.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    chunks: VecDeque<Bytes>,
    max_bytes: usize,
    buffered: usize,
    // Stream offset of the first buffered byte.
    start: u64,
    lost: u64,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `max_bytes` (e.g. 10 s of 16 kHz PCM16 = 320 000).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            max_bytes,
            buffered: 0,
            start: 0,
            lost: 0,
        }
    }

    /// Records a chunk that was (or is about to be) sent. The oldest chunks are dropped to stay
    /// within the bound (counted in [`lost_bytes`](Self::lost_bytes)); a chunk larger than the
    /// whole bound keeps only its tail.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.buffered += chunk.len();
        self.chunks.push_back(chunk);
        while self.buffered > self.max_bytes {
            let excess = self.buffered - self.max_bytes;
            let front = self.chunks.front_mut().expect("buffered > 0");
            let n = if front.len() <= excess {
                let n = front.len();
                self.chunks.pop_front();
                n
            } else {
                let _ = front.split_to(excess);
                excess
            };
            self.buffered -= n;
            self.start += n as u64;
            self.lost += n as u64;
        }
    }

    /// Everything before stream offset `offset` is acknowledged and need not be replayed.
    /// Offsets beyond what was sent are clamped; going backwards is ignored.
    pub fn ack(&mut self, offset: u64) {
        let offset = offset.min(self.sent_bytes());
        while self.start < offset {
            let want = (offset - self.start) as usize;
            let front = self.chunks.front_mut().expect("start < sent");
            let n = if front.len() <= want {
                let n = front.len();
                self.chunks.pop_front();
                n
            } else {
                let _ = front.split_to(want);
                want
            };
            self.buffered -= n;
            self.start += n as u64;
        }
    }

    /// Acknowledges the first `audio` of the stream, for vendors that report progress in time
    /// (`bytes_per_second` = rate × channels × bytes per sample; `frame_bytes` keeps whole
    /// sample frames, e.g. 2 for mono PCM16).
    pub fn ack_duration(&mut self, audio: Duration, bytes_per_second: u64, frame_bytes: u64) {
        self.ack(offset_for_duration(audio, bytes_per_second, frame_bytes));
    }

    /// Acknowledges everything sent so far.
    pub fn clear(&mut self) {
        self.ack(self.sent_bytes());
    }

    /// The unacknowledged chunks, oldest first: what to re-send after a reconnect.
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = &Bytes> + '_ {
        self.chunks.iter()
    }

    /// Stream offset of the first byte a replay re-sends.
    pub fn replay_offset(&self) -> u64 {
        self.start
    }

    /// Total bytes pushed since the start of the stream.
    pub fn sent_bytes(&self) -> u64 {
        self.start + self.buffered as u64
    }

    /// Bytes currently held (never more than [`max_bytes`](Self::max_bytes)).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Unacknowledged bytes dropped because of the bound: audio a replay cannot recover.
    pub fn lost_bytes(&self) -> u64 {
        self.lost
    }
}

/// The stream offset of `audio` into a stream of `bytes_per_second`, rounded down to whole
/// `frame_bytes`.
pub fn offset_for_duration(audio: Duration, bytes_per_second: u64, frame_bytes: u64) -> u64 {
    let bytes = (audio.as_nanos() * u128::from(bytes_per_second) / 1_000_000_000) as u64;
    let f = frame_bytes.max(1);
    bytes / f * f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(b: &ReplayBuffer) -> Vec<u8> {
        b.unacked().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn ack_trims_partial_chunks() {
        let mut b = ReplayBuffer::new(100);
        b.push(Bytes::from_static(&[0, 1, 2, 3]));
        b.push(Bytes::from_static(&[4, 5, 6, 7]));
        b.ack(2);
        assert_eq!(flat(&b), [2, 3, 4, 5, 6, 7]);
        assert_eq!(b.replay_offset(), 2);
        b.ack(1); // backwards: ignored
        assert_eq!(b.replay_offset(), 2);
        b.ack(6);
        assert_eq!(flat(&b), [6, 7]);
        b.ack(1000);
        assert_eq!(b.buffered_bytes(), 0);
        assert_eq!(b.sent_bytes(), 8);
        b.push(Bytes::from_static(&[8]));
        b.clear();
        assert_eq!(b.replay_offset(), 9);
    }

    #[test]
    fn bound_drops_oldest_and_counts_loss() {
        let mut b = ReplayBuffer::new(5);
        for i in 0..4u8 {
            b.push(Bytes::from(vec![i; 2]));
            assert!(b.buffered_bytes() <= 5);
        }
        assert_eq!(flat(&b), [1, 2, 2, 3, 3]);
        assert_eq!(b.lost_bytes(), 3);
        assert_eq!(b.replay_offset(), 3);
        b.push(Bytes::from(vec![9; 12]));
        assert_eq!(flat(&b), [9; 5]);
        assert_eq!(b.sent_bytes(), 20);
    }

    #[test]
    fn duration_offsets() {
        assert_eq!(
            offset_for_duration(Duration::from_millis(1500), 32_000, 2),
            48_000
        );
        assert_eq!(
            offset_for_duration(Duration::from_nanos(31_250 * 3), 32_000, 2),
            2
        );
        let mut b = ReplayBuffer::new(1 << 20);
        b.push(Bytes::from(vec![0; 64_000]));
        b.ack_duration(Duration::from_secs(1), 32_000, 2);
        assert_eq!(b.buffered_bytes(), 32_000);
    }
}
