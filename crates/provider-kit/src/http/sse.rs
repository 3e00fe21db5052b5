//! A Server-Sent Events parser (the WHATWG `text/event-stream` rules) over a byte stream.
//!
//! Handles LF, CRLF and lone CR line ends (also split across chunks), comments, multi-line
//! `data`, `event`, `id`, `retry`, and a leading BOM. Lines and events are bounded so a broken or
//! hostile stream cannot grow memory without limit.

use super::ByteStream;
use crate::redact::Redactor;
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use waav_plugin_api::PluginError;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, `"message"` when absent.
    pub event: String,
    /// The `data` lines joined by `\n`.
    pub data: String,
    /// The last event id seen on the stream (it persists across events, per the spec).
    pub id: Option<String>,
    /// A `retry` hint carried by this event.
    pub retry: Option<Duration>,
}

/// An incremental parser: [`feed`](Self::feed) it bytes, collect events.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    max_line: usize,
    max_event: usize,
    after_cr: bool,
    started: bool,
    data: String,
    has_data: bool,
    event: String,
    id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser accepting lines of at most `max_line` bytes and events of at most `max_event`
    /// bytes of data.
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            max_line,
            max_event,
            after_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: String::new(),
            id: None,
            retry: None,
        }
    }

    /// Parses `chunk`, appending complete events to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), PluginError> {
        if !self.started && !chunk.is_empty() {
            // A UTF-8 BOM may open the stream; it could in theory be split, but servers never do.
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
            self.started = true;
        }
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue; // the LF of a CRLF
                }
            }
            match b {
                b'\n' => self.end_line(out)?,
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out)?;
                }
                _ => {
                    if self.line.len() >= self.max_line {
                        return Err(too_big("line", self.max_line));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), PluginError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment (often a keepalive)
        }
        let line = String::from_utf8(line)
            .map_err(|_| PluginError::Permanent("SSE: line is not valid UTF-8".to_owned()))?;
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(too_big("event", self.max_event));
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the trailing '\n'
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.id.clone(),
            retry,
        });
    }
}

fn too_big(what: &str, limit: usize) -> PluginError {
    PluginError::Permanent(format!("SSE: {what} exceeds {limit} bytes"))
}

/// The events of an SSE body. An incomplete event at the end of the stream is discarded (as the
/// spec says); errors are redacted with `redactor`.
pub fn events(
    body: ByteStream,
    max_line: usize,
    max_event: usize,
    redactor: Redactor,
) -> impl Stream<Item = Result<SseEvent, PluginError>> + Send {
    struct State {
        body: ByteStream,
        parser: SseParser,
        ready: VecDeque<SseEvent>,
        done: bool,
        redactor: Redactor,
    }
    let state = State {
        body,
        parser: SseParser::new(max_line, max_event),
        ready: VecDeque::new(),
        done: false,
        redactor,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.ready.pop_front() {
                return Some((Ok(e), s));
            }
            if s.done {
                return None;
            }
            match s.body.next().await {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    if let Err(e) = s.parser.feed(&chunk, &mut out) {
                        s.done = true;
                        return Some((Err(s.redactor.redact_error(e)), s));
                    }
                    s.ready.extend(out);
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(s.redactor.redact_error(e)), s));
                }
                None => s.done = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::ErrorCategory;

    fn parse_split(input: &[u8], split: usize) -> Result<Vec<SseEvent>, PluginError> {
        let mut p = SseParser::new(64, 256);
        let mut out = Vec::new();
        p.feed(&input[..split], &mut out)?;
        p.feed(&input[split..], &mut out)?;
        Ok(out)
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
            retry: None,
        }
    }

    #[test]
    fn tricky_inputs_at_every_split() {
        let input = b"\xEF\xBB\xBF: hello comment\r\n\
data: first\r\n\
data:second line\r\n\
\r\n\
event: audio\n\
id: 7\n\
data: {\"a\":1}\n\
\n\
: keepalive\r\r\
data\r\
data:  two spaces\r\
\r\
event: ignored-no-data\n\
\n\
data: x\n\
id\n\
unknown: field\n\
\n\
data: dangling";
        let want = vec![
            ev("message", "first\nsecond line", None),
            ev("audio", "{\"a\":1}", Some("7")),
            ev("message", "\n two spaces", Some("7")),
            ev("message", "x", Some("")),
        ];
        for split in 0..=input.len() {
            let got = parse_split(input, split).unwrap();
            assert_eq!(got, want, "split at {split}");
        }
        // Byte by byte too.
        let mut p = SseParser::new(64, 256);
        let mut out = Vec::new();
        for b in input.iter() {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, want);
    }

    #[test]
    fn retry_field() {
        let got = parse_split(b"retry: 1500\ndata: a\n\nretry: x1\ndata: b\n\n", 5).unwrap();
        assert_eq!(got[0].retry, Some(Duration::from_millis(1500)));
        assert_eq!(got[1].retry, None);
    }

    #[test]
    fn oversized_line_and_event_are_errors() {
        let long = format!("data: {}\n\n", "x".repeat(100));
        let e = parse_split(long.as_bytes(), 10).unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Permanent);
        assert!(e.to_string().contains("line exceeds 64"), "{e}");
        let many = "data: 0123456789012345678901234567890123456789\n".repeat(8);
        let e = parse_split(many.as_bytes(), 3).unwrap_err();
        assert!(e.to_string().contains("event exceeds 256"), "{e}");
        let e = parse_split(b"data: \xff\xfe\n\n", 2).unwrap_err();
        assert!(e.to_string().contains("UTF-8"));
    }
}
