//! The Speech service WebSocket message framing, shared by recognition (and, later, synthesis).
//!
//! No I/O here: building and parsing messages only. Verified against the official JavaScript
//! Speech SDK (`microsoft/cognitive-services-speech-sdk-js`, snapshot 9e88223):
//!
//! - `src/common.speech/WebsocketMessageFormatter.ts` (`fromConnectionMessage` /
//!   `toConnectionMessage`):
//!   - a **text** message is every header as `Name: value\r\n`, then `\r\n`, then the body;
//!     the receiver splits at the first `\r\n\r\n` and matches header names case-insensitively
//!     (it lower-cases them and trims names and values);
//!   - a **binary** message is a 2-byte big-endian header length N, N bytes of ASCII header lines
//!     (each ending in `\r\n`, no blank line after the last), then the payload.
//! - `src/common.speech/SpeechConnectionMessage.Internal.ts`: every client message carries, in
//!   this order, `Path`, `X-RequestId`, `X-Timestamp` (`new Date().toISOString()`, i.e.
//!   `2024-05-01T10:00:00.123Z`) and `Content-Type` when the message has one.
//! - `src/common.speech/HeaderNames.ts` for the header names; `src/common/Guid.ts`
//!   (`createNoDashGuid`): request and connection ids are v4 UUIDs without dashes, upper case.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Path` header (`HeaderNames.Path`).
pub const PATH: &str = "Path";
/// `X-RequestId` header (`HeaderNames.RequestId`).
pub const REQUEST_ID: &str = "X-RequestId";
/// `X-Timestamp` header (`HeaderNames.RequestTimestamp`).
pub const TIMESTAMP: &str = "X-Timestamp";
/// `Content-Type` header (`HeaderNames.ContentType`).
pub const CONTENT_TYPE: &str = "Content-Type";
/// Upgrade header with the subscription key (`HeaderNames.AuthKey`).
pub const AUTH_KEY: &str = "Ocp-Apim-Subscription-Key";
/// Upgrade header with the connection id (`HeaderNames.ConnectionId`).
pub const CONNECTION_ID: &str = "X-ConnectionId";

/// A fresh request or connection id: 32 upper-case hex digits (`createNoDashGuid`).
pub fn new_id() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase()
}

/// Now as ISO-8601 UTC with milliseconds, as JavaScript's `Date.toISOString()` writes it.
pub fn timestamp_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    timestamp(d.as_secs(), d.subsec_millis())
}

/// `secs` after the epoch plus `millis`, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn timestamp(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn write_headers(out: &mut String, path: &str, request_id: &str, content_type: Option<&str>) {
    // Infallible: writing to a String.
    let _ = write!(
        out,
        "{PATH}: {path}\r\n{REQUEST_ID}: {request_id}\r\n{TIMESTAMP}: {}\r\n",
        timestamp_now()
    );
    if let Some(ct) = content_type {
        let _ = write!(out, "{CONTENT_TYPE}: {ct}\r\n");
    }
}

/// A text message: headers, a blank line, then `body` (`fromConnectionMessage`, text branch).
pub fn text_message(
    path: &str,
    request_id: &str,
    content_type: Option<&str>,
    body: &str,
) -> String {
    let mut out = String::with_capacity(128 + body.len());
    write_headers(&mut out, path, request_id, content_type);
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// A binary message: the 2-byte big-endian header length, the headers, then `payload`
/// (`fromConnectionMessage`, binary branch). An empty payload is the end-of-audio marker.
pub fn binary_message(
    path: &str,
    request_id: &str,
    content_type: Option<&str>,
    payload: &[u8],
) -> Bytes {
    let mut headers = String::with_capacity(128);
    write_headers(&mut headers, path, request_id, content_type);
    // Our headers are ~100 bytes, far below u16::MAX.
    let len = u16::try_from(headers.len()).unwrap_or(u16::MAX);
    let mut out = BytesMut::with_capacity(2 + headers.len() + payload.len());
    out.put_u16(len);
    out.put_slice(headers.as_bytes());
    out.put_slice(payload);
    out.freeze()
}

/// The 44-byte RIFF/WAVE header the SDK sends as the first `audio` message of every turn, for
/// PCM (`src/sdk/Audio/AudioStreamFormat.ts`, `AudioStreamFormatImpl` constructor): RIFF and
/// data lengths 0 (a stream of unknown length), format tag 1, block align channels × bytes.
pub fn wav_header(sample_rate: u32, channels: u16, bits_per_sample: u16) -> [u8; 44] {
    let block_align = channels * (bits_per_sample / 8);
    let byte_rate = sample_rate * u32::from(block_align);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    // 4..8: file length 0.
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&bits_per_sample.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    // 40..44: data length 0.
    h
}

/// A message from the service, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, &'a str)>,
    /// The body (text messages) or payload (binary ones).
    pub body: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The `Path` header.
    pub fn path(&self) -> Option<&'a str> {
        self.header(PATH)
    }

    /// The `X-RequestId` header.
    pub fn request_id(&self) -> Option<&'a str> {
        self.header(REQUEST_ID)
    }
}

// `parseHeaders`: lines are runs of non-CR/LF characters; the name is what precedes the first
// colon (trimmed, lower-cased), the value what follows it (trimmed).
fn parse_headers(block: &str) -> Vec<(String, &str)> {
    block
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_ascii_lowercase(), value.trim()))
        })
        .collect()
}

/// Parses a text message (`toConnectionMessage`, text branch). A message without the blank
/// line is all headers and no body, as in the SDK.
pub fn parse_text(text: &str) -> Incoming<'_> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    Incoming {
        headers: parse_headers(head),
        body: body.as_bytes(),
    }
}

/// Parses a binary message (`toConnectionMessage`, binary branch); `None` when the header
/// length is missing, exceeds the message, or the headers are not text.
pub fn parse_binary(data: &[u8]) -> Option<Incoming<'_>> {
    let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
    let head = data.get(2..2 + len)?;
    let head = std::str::from_utf8(head).ok()?;
    Some(Incoming {
        headers: parse_headers(head),
        body: &data[2 + len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_javascript_to_iso_string() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-05-01T10:00:00.123Z
        assert_eq!(timestamp(1_714_557_600, 123), "2024-05-01T10:00:00.123Z");
        // A leap day.
        assert_eq!(timestamp(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
        let now = timestamp_now();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn ids_are_32_upper_hex_digits() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert_ne!(id, new_id());
    }

    #[test]
    fn text_messages_round_trip() {
        let m = text_message("speech.config", "AB", Some("application/json"), "{\"a\":1}");
        assert!(m.starts_with("Path: speech.config\r\nX-RequestId: AB\r\nX-Timestamp: "));
        assert!(m.ends_with("\r\nContent-Type: application/json\r\n\r\n{\"a\":1}"));
        let p = parse_text(&m);
        assert_eq!(p.path(), Some("speech.config"));
        assert_eq!(p.header("content-type"), Some("application/json"));
        assert_eq!(p.body, b"{\"a\":1}");
        // Odd spacing, LF-only lines, no body.
        let p = parse_text("path:turn.end\nX-REQUESTID:  ab \n");
        assert_eq!(
            (p.path(), p.request_id(), p.body),
            (Some("turn.end"), Some("ab"), &b""[..])
        );
    }

    #[test]
    fn binary_messages_have_a_big_endian_header_length() {
        let m = binary_message("audio", "AB", None, &[1, 2, 3]);
        let n = usize::from(u16::from_be_bytes([m[0], m[1]]));
        let head = std::str::from_utf8(&m[2..2 + n]).unwrap();
        assert!(head.starts_with("Path: audio\r\nX-RequestId: AB\r\nX-Timestamp: "));
        assert!(head.ends_with("Z\r\n"), "{head:?}");
        assert_eq!(&m[2 + n..], &[1, 2, 3]);
        let p = parse_binary(&m).unwrap();
        assert_eq!(p.path(), Some("audio"));
        assert_eq!(p.body, &[1, 2, 3]);
        let end = binary_message("audio", "AB", None, &[]);
        assert!(parse_binary(&end).unwrap().body.is_empty());
        assert!(parse_binary(&[]).is_none());
        assert!(parse_binary(&[0]).is_none());
        assert!(parse_binary(&[0, 9, b'x']).is_none());
        assert!(parse_binary(&[0, 1, 0xff]).is_none());
    }

    #[test]
    fn the_wav_header_is_the_sdks() {
        let h = wav_header(16_000, 1, 16);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(&h[4..8], &[0; 4]);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(h[16..20].try_into().unwrap()), 16);
        assert_eq!(u16::from_le_bytes([h[20], h[21]]), 1);
        assert_eq!(u16::from_le_bytes([h[22], h[23]]), 1);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u32::from_le_bytes(h[28..32].try_into().unwrap()), 32_000);
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 2);
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(&h[40..44], &[0; 4]);
    }
}
