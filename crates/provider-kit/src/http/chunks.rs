//! Re-cutting a byte stream into bounded, sample-aligned chunks.
//!
//! HTTP bodies arrive in whatever pieces the network made: a 64 KiB burst, or a chunk that ends in
//! the middle of a PCM16 sample. Audio consumers want pieces of at most N bytes that hold whole
//! sample frames.

use super::ByteStream;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use waav_plugin_api::PluginError;

/// A push-based re-chunker: pieces of at most `max_bytes`, each a multiple of `align` bytes.
#[derive(Debug)]
pub struct Rechunker {
    max: usize,
    align: usize,
    carry: BytesMut,
}

impl Rechunker {
    /// `max_bytes` is rounded down to a multiple of `align` (and is at least `align`).
    pub fn new(max_bytes: usize, align: usize) -> Self {
        let align = align.max(1);
        let max = (max_bytes / align).max(1) * align;
        Self {
            max,
            align,
            carry: BytesMut::new(),
        }
    }

    /// Cuts `input` (after any bytes carried from the previous call) into `out`; a trailing
    /// partial frame is carried to the next call.
    pub fn push(&mut self, mut input: Bytes, out: &mut Vec<Bytes>) {
        if !self.carry.is_empty() {
            let need = self.align - self.carry.len();
            let take = need.min(input.len());
            self.carry.extend_from_slice(&input.split_to(take));
            if self.carry.len() < self.align {
                return;
            }
            // A whole frame assembled from two pieces; join it with what follows, bounded.
            let mut first = std::mem::take(&mut self.carry);
            let room = self.max - first.len();
            let usable = input.len() / self.align * self.align;
            let more = room.min(usable);
            first.extend_from_slice(&input.split_to(more));
            out.push(first.freeze());
        }
        while input.len() >= self.align {
            let usable = input.len() / self.align * self.align;
            out.push(input.split_to(usable.min(self.max)));
        }
        if !input.is_empty() {
            self.carry.extend_from_slice(&input);
        }
    }

    /// Bytes of an incomplete frame held back (dropped at the end of a stream: half a sample is
    /// not audio).
    pub fn pending(&self) -> usize {
        self.carry.len()
    }
}

/// `body` re-cut into chunks of at most `max_bytes`, each a multiple of `align` bytes.
pub fn rechunk(
    body: ByteStream,
    max_bytes: usize,
    align: usize,
) -> impl Stream<Item = Result<Bytes, PluginError>> + Send {
    let state = (
        body,
        Rechunker::new(max_bytes, align),
        VecDeque::new(),
        false,
    );
    futures::stream::unfold(state, |(mut body, mut r, mut ready, mut done)| async move {
        loop {
            if let Some(c) = ready.pop_front() {
                return Some((Ok(c), (body, r, ready, done)));
            }
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(b)) => {
                    let mut out = Vec::new();
                    r.push(b, &mut out);
                    ready.extend(out);
                }
                Some(Err(e)) => {
                    done = true;
                    return Some((Err(e), (body, r, ready, done)));
                }
                None => {
                    if r.pending() > 0 {
                        tracing::debug!(
                            bytes = r.pending(),
                            "dropping a partial frame at end of stream"
                        );
                    }
                    done = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_aligned_for_any_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        for split_size in 1..40 {
            let mut r = Rechunker::new(10, 4);
            let mut out = Vec::new();
            for piece in data.chunks(split_size) {
                r.push(Bytes::copy_from_slice(piece), &mut out);
            }
            assert!(out
                .iter()
                .all(|c| c.len() <= 8 && c.len() % 4 == 0 && !c.is_empty()));
            let joined: Vec<u8> = out.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, data[..1000], "split {split_size}");
            assert_eq!(r.pending(), 1);
        }
    }

    #[tokio::test]
    async fn stream_adapter() {
        let parts: Vec<Result<Bytes, PluginError>> = vec![
            Ok(Bytes::from_static(b"abcde")),
            Ok(Bytes::from_static(b"fgh")),
        ];
        let body: ByteStream = Box::pin(futures::stream::iter(parts));
        let got: Vec<_> = rechunk(body, 3, 1).map(Result::unwrap).collect().await;
        assert_eq!(
            got,
            ["abc", "de", "fgh"]
                .map(|s| Bytes::from(s.as_bytes()))
                .to_vec()
        );
    }
}
