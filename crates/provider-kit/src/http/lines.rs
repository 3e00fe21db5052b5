//! JSON lines (NDJSON) over a byte stream, with a bounded line length.

use super::ByteStream;
use crate::redact::Redactor;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use waav_plugin_api::PluginError;

/// Splits bytes into lines (LF or CRLF), refusing lines longer than `max_line`.
#[derive(Debug)]
pub struct LineSplitter {
    buf: BytesMut,
    max_line: usize,
}

impl LineSplitter {
    /// A splitter with a line bound.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
        }
    }

    /// Appends `chunk` and moves complete, non-blank lines (without their line end) to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) -> Result<(), PluginError> {
        self.buf.extend_from_slice(chunk);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line = self.buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            if line.len() > self.max_line {
                return Err(too_long(self.max_line));
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(line.freeze());
            }
        }
        if self.buf.len() > self.max_line {
            return Err(too_long(self.max_line));
        }
        Ok(())
    }

    /// The last line if the stream ended without a line end.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.iter().all(u8::is_ascii_whitespace)).then(|| rest.freeze())
    }
}

fn too_long(limit: usize) -> PluginError {
    PluginError::Permanent(format!("JSON lines: line exceeds {limit} bytes"))
}

/// Each line of `body` parsed as a `T`.
pub fn json_lines<T: DeserializeOwned + Send + 'static>(
    body: ByteStream,
    max_line: usize,
    redactor: Redactor,
) -> impl Stream<Item = Result<T, PluginError>> + Send {
    let state = (
        body,
        LineSplitter::new(max_line),
        VecDeque::<Bytes>::new(),
        false,
    );
    futures::stream::unfold(state, move |(mut body, mut s, mut ready, mut done)| {
        let redactor = redactor.clone();
        async move {
            loop {
                if let Some(line) = ready.pop_front() {
                    let item = serde_json::from_slice::<T>(&line).map_err(|e| {
                        redactor.redact_error(PluginError::Permanent(format!(
                            "JSON lines: {e}: {}",
                            crate::errors::excerpt(&line, crate::errors::BODY_EXCERPT_LIMIT)
                        )))
                    });
                    return Some((item, (body, s, ready, done)));
                }
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(b)) => {
                        let mut out = Vec::new();
                        if let Err(e) = s.push(&b, &mut out) {
                            done = true;
                            return Some((Err(e), (body, s, ready, done)));
                        }
                        ready.extend(out);
                    }
                    Some(Err(e)) => {
                        done = true;
                        return Some((Err(e), (body, s, ready, done)));
                    }
                    None => {
                        done = true;
                        ready.extend(s.finish());
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_split_lines() {
        let parts: Vec<Result<Bytes, PluginError>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\r\n\n{\"a\"")),
            Ok(Bytes::from_static(b":2}\n{\"a\":3}")),
        ];
        let body: ByteStream = Box::pin(futures::stream::iter(parts));
        let got: Vec<serde_json::Value> = json_lines(body, 64, Redactor::new())
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(
            got,
            [1, 2, 3].map(|a| serde_json::json!({ "a": a })).to_vec()
        );
    }

    #[test]
    fn long_line_is_an_error() {
        let mut s = LineSplitter::new(4);
        let mut out = Vec::new();
        assert!(s.push(b"abc\n", &mut out).is_ok());
        assert!(s.push(b"abcdef", &mut out).is_err());
    }
}
