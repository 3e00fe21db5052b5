//! The one place that turns transport failures into [`PluginError`] categories.
//!
//! Providers get consistent behaviour from the core (retry, failover, breaker) only if every vendor
//! maps "401" or "socket reset" the same way, so the tables live here and nowhere else. Every
//! message built here passes through a [`Redactor`] and carries at most [`BODY_EXCERPT_LIMIT`]
//! bytes of the vendor's body.

use crate::redact::Redactor;
use std::time::{Duration, SystemTime};
use waav_plugin_api::{ErrorCategory, PluginError};

/// How much of a vendor's error body goes into a message.
pub const BODY_EXCERPT_LIMIT: usize = 512;

/// The category for an HTTP status, or `None` for a success (1xx–3xx).
///
/// | status | category |
/// |---|---|
/// | 401, 403, 402 (billing: an operator must act) | Auth |
/// | 429 | RateLimited |
/// | 408, 504 | Timeout |
/// | 425, 500, 502, 503 and other 5xx | Transient |
/// | 404, 405, 426 (wrong endpoint, model or voice) | Config |
/// | 501 and other 4xx (400, 409, 413, 415, 422, …) | Permanent |
pub fn status_category(status: u16) -> Option<ErrorCategory> {
    Some(match status {
        0..=399 => return None,
        401..=403 => ErrorCategory::Auth,
        429 => ErrorCategory::RateLimited,
        408 | 504 => ErrorCategory::Timeout,
        425 => ErrorCategory::Transient,
        404 | 405 | 426 => ErrorCategory::Config,
        501 => ErrorCategory::Permanent,
        500..=599 => ErrorCategory::Transient,
        _ => ErrorCategory::Permanent,
    })
}

/// The `retry-after` hint: delay-seconds or an HTTP-date (relative to now); `retry-after-ms`
/// (a common vendor extension) is honoured first.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] with an explicit "now", for tests.
pub fn retry_after_at(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Some vendors send fractional seconds.
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// At most `limit` bytes of `body` as text: lossy UTF-8, cut at a character boundary, control
/// characters (newlines included) shown as spaces, `…` appended when cut.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let cut = body.len() > limit;
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]);
    let mut out: String = text
        .trim_end_matches('\u{FFFD}') // a multi-byte character split by the cut
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if cut {
        out.push('…');
    }
    out
}

/// Builds a [`PluginError`] of `category` (`Panicked` is never produced by the kit and becomes
/// `Permanent`), with `message` redacted.
pub fn make(
    category: ErrorCategory,
    message: impl AsRef<str>,
    retry_after: Option<Duration>,
    redactor: &Redactor,
) -> PluginError {
    let m = redactor.redact(message.as_ref());
    match category {
        ErrorCategory::Config => PluginError::Config(m),
        ErrorCategory::Auth => PluginError::Auth(m),
        ErrorCategory::RateLimited => PluginError::RateLimited {
            retry_after,
            message: m,
        },
        ErrorCategory::Transient => PluginError::Transient(m),
        ErrorCategory::Timeout => PluginError::Timeout(m),
        ErrorCategory::Permanent | ErrorCategory::Panicked => PluginError::Permanent(m),
    }
}

/// The error for a non-success HTTP response (also a rejected WebSocket handshake): the category
/// from [`status_category`], `retry-after` for 429 (and 503, where vendors also send it, which
/// stays Transient), and `context: HTTP 429 Too Many Requests: <body excerpt>` as the message.
pub fn from_http(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    context: &str,
    redactor: &Redactor,
) -> PluginError {
    let category = status_category(status.as_u16()).unwrap_or(ErrorCategory::Permanent);
    let mut msg = format!(
        "{context}: HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let body = excerpt(body, BODY_EXCERPT_LIMIT);
    if !body.is_empty() {
        msg.push_str(": ");
        msg.push_str(&body);
    }
    make(category, msg.trim_end(), retry_after(headers), redactor)
}

/// Vendor-specific WebSocket close codes a provider knows (e.g. `(4001, Auth)`), checked before
/// the kit's own table.
pub type CloseCodeOverrides = [(u16, ErrorCategory)];

/// The category of a WebSocket close code, or `None` for a normal close (1000, or 1005: a close
/// frame without a code, which is still a deliberate closing handshake).
///
/// | code | category |
/// |---|---|
/// | 1000, 1005 | none (normal) |
/// | 1001 going away, 1006 abnormal, 1011 server error, 1012 restart, 1014 bad gateway | Transient |
/// | 1013 try again later | RateLimited |
/// | 1008 policy violation (vendors use it for bad or expired keys) | Auth |
/// | 1002, 1003, 1007, 1009, 1010 and anything else | Permanent |
/// | 4000–4999 | Permanent unless in `overrides` |
pub fn close_category(code: u16, overrides: &CloseCodeOverrides) -> Option<ErrorCategory> {
    if let Some(&(_, c)) = overrides.iter().find(|(k, _)| *k == code) {
        return Some(c);
    }
    Some(match code {
        1000 | 1005 => return None,
        1001 | 1006 | 1011 | 1012 | 1014 => ErrorCategory::Transient,
        1013 => ErrorCategory::RateLimited,
        1008 => ErrorCategory::Auth,
        _ => ErrorCategory::Permanent,
    })
}

/// The error for a close frame, or `None` for a normal close. The reason is redacted and bounded.
pub fn from_close(
    code: u16,
    reason: &str,
    overrides: &CloseCodeOverrides,
    context: &str,
    redactor: &Redactor,
) -> Option<PluginError> {
    let category = close_category(code, overrides)?;
    let reason = excerpt(reason.as_bytes(), BODY_EXCERPT_LIMIT);
    let msg = if reason.is_empty() {
        format!("{context}: closed with code {code}")
    } else {
        format!("{context}: closed with code {code}: {reason}")
    };
    Some(make(category, msg, None, redactor))
}

/// The category of an I/O error: timeouts are Timeout, a bad address or argument is Config,
/// everything else on a network socket (refused, reset, EOF, DNS) is Transient.
pub fn io_category(kind: std::io::ErrorKind) -> ErrorCategory {
    use std::io::ErrorKind as K;
    match kind {
        K::TimedOut | K::WouldBlock => ErrorCategory::Timeout,
        K::InvalidInput | K::AddrNotAvailable | K::Unsupported => ErrorCategory::Config,
        K::PermissionDenied => ErrorCategory::Config,
        K::InvalidData => ErrorCategory::Permanent,
        _ => ErrorCategory::Transient,
    }
}

/// The error for an I/O failure.
pub fn from_io(err: &std::io::Error, context: &str, redactor: &Redactor) -> PluginError {
    make(
        io_category(err.kind()),
        format!("{context}: {err}"),
        None,
        redactor,
    )
}

/// The error for a deadline that passed.
pub fn timeout(context: &str, after: Duration, redactor: &Redactor) -> PluginError {
    make(
        ErrorCategory::Timeout,
        format!("{context}: no result after {after:?}"),
        None,
        redactor,
    )
}

/// `err` and its chain of sources as one line (`a: b: c`), for messages.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        src = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    #[test]
    fn status_table() {
        use ErrorCategory::*;
        let table = [
            (200, None),
            (301, None),
            (400, Some(Permanent)),
            (401, Some(Auth)),
            (402, Some(Auth)),
            (403, Some(Auth)),
            (404, Some(Config)),
            (405, Some(Config)),
            (408, Some(Timeout)),
            (409, Some(Permanent)),
            (413, Some(Permanent)),
            (415, Some(Permanent)),
            (422, Some(Permanent)),
            (426, Some(Config)),
            (429, Some(RateLimited)),
            (500, Some(Transient)),
            (501, Some(Permanent)),
            (502, Some(Transient)),
            (503, Some(Transient)),
            (504, Some(Timeout)),
            (529, Some(Transient)),
        ];
        for (status, want) in table {
            assert_eq!(status_category(status), want, "status {status}");
        }
    }

    #[test]
    fn close_table() {
        use ErrorCategory::*;
        let none: &CloseCodeOverrides = &[];
        let table = [
            (1000, None),
            (1001, Some(Transient)),
            (1002, Some(Permanent)),
            (1005, None),
            (1006, Some(Transient)),
            (1008, Some(Auth)),
            (1009, Some(Permanent)),
            (1011, Some(Transient)),
            (1012, Some(Transient)),
            (1013, Some(RateLimited)),
            (4000, Some(Permanent)),
            (4999, Some(Permanent)),
        ];
        for (code, want) in table {
            assert_eq!(close_category(code, none), want, "code {code}");
        }
        let vendor: &CloseCodeOverrides = &[(4001, Auth), (4029, RateLimited), (1008, Config)];
        assert_eq!(close_category(4001, vendor), Some(Auth));
        assert_eq!(close_category(4029, vendor), Some(RateLimited));
        assert_eq!(close_category(1008, vendor), Some(Config));
        assert_eq!(close_category(4002, vendor), Some(Permanent));
        assert!(from_close(1000, "bye", none, "x", &Redactor::new()).is_none());
        let e = from_close(1011, "boom\nline2", none, "deepgram", &Redactor::new()).unwrap();
        assert_eq!(
            e,
            PluginError::Transient("deepgram: closed with code 1011: boom line2".into())
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_at(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_millis(1500)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after_at(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn http_errors_carry_bounded_redacted_body() {
        let secret = waav_plugin_api::Secret::new("sk-live-abcdef");
        let r = Redactor::new().with_secret(&secret);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let body = format!(
            "{{\"error\":\"key sk-live-abcdef over quota\"}}{}",
            "x".repeat(2000)
        );
        let e = from_http(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            body.as_bytes(),
            "tts",
            &r,
        );
        let PluginError::RateLimited {
            retry_after,
            message,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(2)));
        assert!(
            message.starts_with("tts: HTTP 429 Too Many Requests: {\"error\""),
            "{message}"
        );
        assert!(!e.to_string().contains("sk-live-abcdef"));
        assert!(message.len() < BODY_EXCERPT_LIMIT + 80, "{}", message.len());
        assert!(message.ends_with('…'));

        let e = from_http(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"", "stt", &r);
        assert_eq!(e, PluginError::Auth("stt: HTTP 401 Unauthorized".into()));
        let e = from_http(StatusCode::SERVICE_UNAVAILABLE, &h, b"busy", "stt", &r);
        assert_eq!(e.category(), ErrorCategory::Transient);
    }

    #[test]
    fn excerpt_cuts_at_char_boundary() {
        let s = "ééé"; // 6 bytes
        assert_eq!(excerpt(s.as_bytes(), 3), "é…");
        assert_eq!(excerpt(b"ok\r\n", 10), "ok");
    }

    #[test]
    fn io_mapping() {
        use std::io::{Error, ErrorKind};
        let r = Redactor::new();
        let e = from_io(&Error::from(ErrorKind::ConnectionRefused), "connect", &r);
        assert_eq!(e.category(), ErrorCategory::Transient);
        let e = from_io(&Error::from(ErrorKind::TimedOut), "read", &r);
        assert_eq!(e.category(), ErrorCategory::Timeout);
        let e = from_io(&Error::from(ErrorKind::UnexpectedEof), "read", &r);
        assert_eq!(e.category(), ErrorCategory::Transient);
        assert_eq!(
            timeout("connect", Duration::from_secs(1), &r).category(),
            ErrorCategory::Timeout
        );
    }
}
