//! Timestamped frames for benchmarks: separating gateway time from provider time.
//!
//! The load generator writes a 16-byte header at the start of each audio frame: the frame's
//! sequence number and its send time (ns since the Unix epoch), both little-endian u64. The
//! loopback STT in `stamp=N` mode notes each frame's arrival time and every N frames emits an
//! interim result whose text is a [`StampReport`]: how many frames it has received, when it
//! emitted the report, and each frame's transit time (client send → provider receive). The client
//! subtracts the emit time from its receive time to get the result's transit back.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the header at the start of a stamped frame.
pub const HEADER: usize = 16;

/// Nanoseconds since the Unix epoch (the clock both ends share on one machine).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writes the header into the start of `frame` (which must be at least [`HEADER`] bytes).
pub fn write_header(frame: &mut [u8], seq: u64, sent_ns: u64) {
    frame[..8].copy_from_slice(&seq.to_le_bytes());
    frame[8..16].copy_from_slice(&sent_ns.to_le_bytes());
}

/// Reads `(seq, sent_ns)` from a frame's header.
pub fn read_header(frame: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(frame.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(frame.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// One provider report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampReport {
    /// Frames received so far in this session.
    pub received: u64,
    /// When the report was emitted (ns since the epoch).
    pub emitted_ns: u64,
    /// Transit time of each frame since the previous report, in ns.
    pub transit_ns: Vec<u64>,
}

impl StampReport {
    /// The transcript text carrying the report.
    pub fn encode(&self) -> String {
        let mut s = format!("stamp {} {}", self.received, self.emitted_ns);
        for t in &self.transit_ns {
            s.push(' ');
            s.push_str(&t.to_string());
        }
        s
    }

    /// Parses a transcript produced by [`StampReport::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        let mut it = text.strip_prefix("stamp ")?.split(' ');
        let received = it.next()?.parse().ok()?;
        let emitted_ns = it.next()?.parse().ok()?;
        let transit_ns = it.map(str::parse).collect::<Result<_, _>>().ok()?;
        Some(Self {
            received,
            emitted_ns,
            transit_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_report_round_trip() {
        let mut f = [0u8; 32];
        write_header(&mut f, 7, 123);
        assert_eq!(read_header(&f), Some((7, 123)));
        let r = StampReport {
            received: 10,
            emitted_ns: 99,
            transit_ns: vec![1, 2, 3],
        };
        assert_eq!(StampReport::decode(&r.encode()), Some(r));
        assert_eq!(StampReport::decode("utterance 1"), None);
    }
}
