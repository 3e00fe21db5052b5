//! Scrubbing secrets out of text before it becomes an error message or a log line.
//!
//! Two layers, both applied by [`Redactor::redact`]:
//! 1. known secret values (the instance's API keys, tokens), also in their percent-encoded form,
//!    because keys often travel in URLs;
//! 2. common credential patterns, so a secret the kit was not told about (a temporary token in a
//!    vendor's echo of the URL, a signed AWS header) is masked too: `Authorization: <scheme> …`,
//!    `Bearer …`, `Token …`, `api_key=…`/`key=…`/`token=…` query parameters, and header or JSON
//!    fields such as `xi-api-key`, `Ocp-Apim-Subscription-Key`, `X-Amz-Signature`.

use std::fmt;
use waav_plugin_api::{PluginError, Secret};

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// A set of known secrets plus the pattern rules; cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    // Exposed values (and encoded variants), longest first so a secret that contains another is
    // masked whole.
    values: Vec<Secret>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.values.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor with no known secrets (pattern rules only).
    pub fn new() -> Self {
        Self::default()
    }

    /// A redactor knowing `secrets`.
    pub fn from_secrets<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut r = Self::new();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Adds a known secret (builder style).
    pub fn with_secret(mut self, secret: &Secret) -> Self {
        self.add(secret);
        self
    }

    /// Adds a known secret. Empty secrets are ignored (masking "" would be meaningless).
    pub fn add(&mut self, secret: &Secret) {
        if secret.is_empty() {
            return;
        }
        let raw = secret.expose();
        let mut push = |v: String| {
            if !self.values.iter().any(|s| s.expose() == v) {
                self.values.push(Secret::new(v));
            }
        };
        push(raw.to_owned());
        let enc = percent_encode(raw);
        if enc != raw {
            push(enc);
        }
        self.values
            .sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Redactor) {
        for s in &other.values {
            self.add(s);
        }
    }

    /// How many secret values (including encoded variants) are known.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no secret value is known (pattern rules still apply).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every known secret and every credential pattern masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.values {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), MASK);
            }
        }
        redact_patterns(&out)
    }

    /// The same error with its message redacted; the category and `retry_after` are kept.
    pub fn redact_error(&self, err: PluginError) -> PluginError {
        let r = |m: String| self.redact(&m);
        match err {
            PluginError::Config(m) => PluginError::Config(r(m)),
            PluginError::Auth(m) => PluginError::Auth(r(m)),
            PluginError::RateLimited {
                retry_after,
                message,
            } => PluginError::RateLimited {
                retry_after,
                message: r(message),
            },
            PluginError::Transient(m) => PluginError::Transient(r(m)),
            PluginError::Permanent(m) => PluginError::Permanent(r(m)),
            PluginError::Timeout(m) => PluginError::Timeout(r(m)),
            PluginError::Panicked(m) => PluginError::Panicked(r(m)),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (how a key appears in a query).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Rule {
    /// `name: value`, `name=value`, `"name": "value"`: mask the value.
    Field,
    /// `Authorization: <scheme> value…`: keep the scheme, mask the rest of the line.
    Authorization,
    /// `<scheme> value`: mask the following credential of at least `min` characters.
    Scheme { min: usize },
}

// Names are matched case-insensitively at a word boundary.
const RULES: &[(&str, Rule)] = &[
    ("proxy-authorization", Rule::Authorization),
    ("authorization", Rule::Authorization),
    ("ocp-apim-subscription-key", Rule::Field),
    ("subscription-key", Rule::Field),
    ("xi-api-key", Rule::Field),
    ("x-goog-api-key", Rule::Field),
    ("x-api-key", Rule::Field),
    ("api-key", Rule::Field),
    ("api_key", Rule::Field),
    ("apikey", Rule::Field),
    ("access_token", Rule::Field),
    ("auth_token", Rule::Field),
    ("client_secret", Rule::Field),
    ("x-amz-security-token", Rule::Field),
    ("x-amz-signature", Rule::Field),
    ("x-amz-credential", Rule::Field),
    ("password", Rule::Field),
    ("secret", Rule::Field),
    ("token", Rule::Field),
    ("key", Rule::Field),
    ("bearer", Rule::Scheme { min: 1 }),
    ("basic", Rule::Scheme { min: 8 }),
    // "Token <key>" (Deepgram); a long minimum so prose like "token expired" survives.
    ("token", Rule::Scheme { min: 16 }),
];

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_field_delim(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'&' | b'"' | b'\'' | b',' | b';' | b'}' | b')' | b'#' | b'<' | b'>' | b']'
        )
}

fn is_cred_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'%' | b':'
        )
}

/// `text` with the credential patterns (not known values) masked.
pub fn redact_patterns(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &(name, rule) in RULES {
        let n = name.as_bytes();
        let mut from = 0;
        while let Some(pos) = find(&lower[from..], n).map(|p| p + from) {
            from = pos + 1;
            let end = pos + n.len();
            if pos > 0 && is_name_byte(bytes[pos - 1]) {
                continue;
            }
            if end < bytes.len() && is_name_byte(bytes[end]) {
                continue;
            }
            if let Some(r) = value_range(bytes, end, rule) {
                ranges.push(r);
            }
        }
    }
    if ranges.is_empty() {
        return text.to_owned();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in ranges {
        if e <= at {
            continue;
        }
        let s = s.max(at);
        out.push_str(&text[at..s]);
        out.push_str(MASK);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The byte range of the value after a matched name ending at `i`, if the rule applies.
fn value_range(b: &[u8], mut i: usize, rule: Rule) -> Option<(usize, usize)> {
    let skip = |i: &mut usize, f: &dyn Fn(u8) -> bool| {
        while *i < b.len() && f(b[*i]) {
            *i += 1;
        }
    };
    match rule {
        Rule::Scheme { min } => {
            let start = i;
            skip(&mut i, &|c| c == b' ' || c == b'\t');
            if i == start {
                return None;
            }
            let vs = i;
            skip(&mut i, &is_cred_byte);
            (i - vs >= min).then_some((vs, i))
        }
        Rule::Field | Rule::Authorization => {
            skip(&mut i, &|c| c == b'"' || c == b'\'');
            skip(&mut i, &|c| c == b' ' || c == b'\t');
            if i >= b.len() || !(b[i] == b':' || b[i] == b'=') {
                return None;
            }
            i += 1;
            skip(&mut i, &|c| {
                c == b' ' || c == b'\t' || c == b'"' || c == b'\''
            });
            if let Rule::Authorization = rule {
                // Keep a scheme word ("Bearer", "AWS4-HMAC-SHA256") visible: it helps debugging.
                let mut j = i;
                skip(&mut j, &|c| c.is_ascii_alphanumeric() || c == b'-');
                if j < b.len() && b[j] == b' ' && j > i {
                    i = j + 1;
                }
                let vs = i;
                skip(&mut i, &|c| !matches!(c, b'\r' | b'\n' | b'"' | b'\''));
                return (i > vs).then_some((vs, i));
            }
            let vs = i;
            skip(&mut i, &|c| !is_field_delim(c));
            (i > vs).then_some((vs, i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_masked_raw_and_encoded() {
        let s = Secret::new("abc/def+ghi");
        let r = Redactor::new().with_secret(&s);
        let text = "key abc/def+ghi in url ?k=abc%2Fdef%2Bghi done";
        let out = r.redact(text);
        assert!(!out.contains("abc/def+ghi"), "{out}");
        assert!(!out.contains("abc%2Fdef%2Bghi"), "{out}");
        assert!(out.ends_with("done"));
    }

    #[test]
    fn patterns() {
        let cases = [
            (
                "Authorization: Bearer sk-123456",
                "Authorization: Bearer ***",
            ),
            ("authorization=Token dg_key_1", "authorization=Token ***"),
            (
                "Authorization: AWS4-HMAC-SHA256 Credential=AKID/2015, Signature=abc\nnext",
                "Authorization: AWS4-HMAC-SHA256 ***\nnext",
            ),
            (
                "wss://x/v1?model=nova&api_key=SECRET1&x=1",
                "wss://x/v1?model=nova&api_key=***&x=1",
            ),
            ("https://g/v1?key=AIzaXYZ", "https://g/v1?key=***"),
            ("https://a/ws?token=tmp_tok#f", "https://a/ws?token=***#f"),
            ("xi-api-key: el_1234", "xi-api-key: ***"),
            (
                "Ocp-Apim-Subscription-Key: 0123abcd",
                "Ocp-Apim-Subscription-Key: ***",
            ),
            (
                r#"{"api_key": "zzz", "model": "m"}"#,
                r#"{"api_key": "***", "model": "m"}"#,
            ),
            ("use bearer abc.def-ghi please", "use bearer *** please"),
            ("Token 0123456789abcdef0123 rejected", "Token *** rejected"),
            ("the token expired", "the token expired"),
            ("no secrets here: monkey=1", "no secrets here: monkey=1"),
            (
                "X-Amz-Signature=deadbeef&X-Amz-Date=1",
                "X-Amz-Signature=***&X-Amz-Date=1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_patterns(input), want, "input: {input}");
        }
    }

    #[test]
    fn non_ascii_is_safe() {
        let out = redact_patterns("clé: ünïcødé key=välüé ok");
        assert_eq!(out, "clé: ünïcødé key=*** ok");
    }

    #[test]
    fn redact_error_keeps_category() {
        let r = Redactor::new().with_secret(&Secret::new("hunter2"));
        let e = r.redact_error(PluginError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(3)),
            message: "slow down hunter2".into(),
        });
        assert_eq!(
            e,
            PluginError::RateLimited {
                retry_after: Some(std::time::Duration::from_secs(3)),
                message: "slow down ***".into()
            }
        );
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
