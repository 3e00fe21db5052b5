//! AWS plumbing: SigV4 request signing and presigned URLs (`aws-sigv4`), and the
//! `application/vnd.amazon.eventstream` codec with chunk signing (`aws-smithy-eventstream`), for
//! Polly (signed REST) and Transcribe streaming (presigned WebSocket URL, or HTTP/2 with signed
//! event envelopes). No hashing, HMAC or CRC is written here: the AWS crates do it.

use crate::errors;
use crate::redact::Redactor;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::time::{Duration, SystemTime};
use waav_plugin_api::{ErrorCategory, PluginError, Secret};

pub use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

/// Static AWS credentials (the secret parts never print).
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key id (`AKIA…`); not secret by itself, but redacted anyway.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token, for temporary credentials.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"***")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

impl AwsCredentials {
    /// Credentials from their parts.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token,
        }
    }

    /// A redactor knowing every part of these credentials.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::new()
            .with_secret(&Secret::new(self.access_key_id.as_str()))
            .with_secret(&self.secret_access_key);
        if let Some(t) = &self.session_token {
            r.add(t);
        }
        r
    }

    fn identity(&self) -> Identity {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_owned(),
            self.session_token.as_ref().map(|s| s.expose().to_owned()),
            None,
            "waav-provider-kit",
        )
        .into()
    }
}

/// What the signature covers of the request body.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The whole body (REST calls such as Polly `SynthesizeSpeech`).
    Bytes(&'a [u8]),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-EVENTS`: the body is signed event by event (Transcribe over
    /// HTTP/2, with [`EventSigner`]).
    StreamingEvents,
}

/// Signs requests for one service in one region.
#[derive(Debug, Clone)]
pub struct AwsSigner {
    creds: AwsCredentials,
    region: String,
    service: String,
    redactor: Redactor,
}

impl AwsSigner {
    /// A signer for `service` (`"polly"`, `"transcribe"`) in `region`.
    pub fn new(
        creds: AwsCredentials,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        let redactor = creds.redactor();
        Self {
            creds,
            region: region.into(),
            service: service.into(),
            redactor,
        }
    }

    /// The redactor for these credentials.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn err(&self, what: &str, e: impl fmt::Display) -> PluginError {
        errors::make(
            ErrorCategory::Config,
            format!("aws sigv4: {what}: {e}"),
            None,
            &self.redactor,
        )
    }

    /// Adds `x-amz-date`, `authorization` (and `x-amz-security-token`) to `req`, signing its
    /// method, URI, headers and `payload` at `time`. Returns the signature (the seed for
    /// [`EventSigner`] on an event stream).
    pub fn sign_request<B>(
        &self,
        req: &mut http::Request<B>,
        payload: Payload<'_>,
        time: SystemTime,
    ) -> Result<String, PluginError> {
        if let Payload::StreamingEvents = payload {
            req.headers_mut().insert(
                "x-amz-content-sha256",
                http::HeaderValue::from_static("STREAMING-AWS4-HMAC-SHA256-EVENTS"),
            );
        }
        self.sign_with(req, payload, SigningSettings::default(), time)
    }

    /// A presigned URL for `method url` valid for `expires` from `time` (the Transcribe
    /// streaming WebSocket URL; at most 300 s there).
    pub fn presign_url(
        &self,
        method: &str,
        url: &str,
        expires: Duration,
        time: SystemTime,
    ) -> Result<String, PluginError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .map_err(|e| self.err("invalid url", e))?;
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        self.sign_with(&mut req, Payload::Bytes(&[]), settings, time)?;
        Ok(req.uri().to_string())
    }

    fn sign_with<B>(
        &self,
        req: &mut http::Request<B>,
        payload: Payload<'_>,
        settings: SigningSettings,
        time: SystemTime,
    ) -> Result<String, PluginError> {
        let identity = self.creds.identity();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| self.err("params", e))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = match payload {
            Payload::Bytes(b) => SignableBody::Bytes(b),
            Payload::Unsigned => SignableBody::UnsignedPayload,
            Payload::StreamingEvents => {
                SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-EVENTS".to_owned())
            }
        };
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            body,
        )
        .map_err(|e| self.err("request", e))?;
        let (instructions, signature) = sign(signable, &params)
            .map_err(|e| self.err("signing", e))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(signature)
    }

    /// A signer for the event stream that follows a request signed with `seed_signature`.
    pub fn event_signer(&self, seed_signature: impl Into<String>) -> EventSigner {
        EventSigner {
            signer: self.clone(),
            last: seed_signature.into(),
        }
    }
}

/// Signs event-stream messages in sequence: each signature chains the previous one (the first
/// chains the request's).
#[derive(Debug)]
pub struct EventSigner {
    signer: AwsSigner,
    last: String,
}

impl EventSigner {
    /// Wraps `msg` in a signed envelope (`:chunk-signature`, `:date`) at `time`.
    pub fn sign(&mut self, msg: &Message, time: SystemTime) -> Result<Message, PluginError> {
        self.sign_inner(Some(msg), time)
    }

    /// The signed empty message that ends the stream.
    pub fn sign_end(&mut self, time: SystemTime) -> Result<Message, PluginError> {
        self.sign_inner(None, time)
    }

    /// The last signature produced.
    pub fn last_signature(&self) -> &str {
        &self.last
    }

    fn sign_inner(
        &mut self,
        msg: Option<&Message>,
        time: SystemTime,
    ) -> Result<Message, PluginError> {
        let s = &self.signer;
        let identity = s.creds.identity();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&s.region)
            .name(&s.service)
            .time(time)
            .settings(())
            .build()
            .map_err(|e| s.err("params", e))?;
        let out = match msg {
            Some(m) => aws_sigv4::event_stream::sign_message(m, &self.last, &params),
            None => aws_sigv4::event_stream::sign_empty_message(&self.last, &params),
        }
        .map_err(|e| s.err("event signing", e))?;
        let (message, signature) = out.into_parts();
        self.last = signature;
        Ok(message)
    }
}

/// A string-valued event-stream header.
fn string_header(name: &'static str, value: impl Into<String>) -> Header {
    Header::new(name, HeaderValue::String(value.into().into()))
}

/// An `AudioEvent` message: headers `:message-type: event`, `:event-type: AudioEvent`,
/// `:content-type: application/octet-stream`, the audio as payload.
pub fn audio_event(audio: Bytes) -> Message {
    Message::new(audio)
        .add_header(string_header(":message-type", "event"))
        .add_header(string_header(":event-type", "AudioEvent"))
        .add_header(string_header(":content-type", "application/octet-stream"))
}

/// Frames `msg` (prelude, headers, payload, CRCs) for the wire.
pub fn encode(msg: &Message) -> Result<Bytes, PluginError> {
    let mut buf = Vec::with_capacity(msg.payload().len() + 128);
    aws_smithy_eventstream::frame::write_message_to(msg, &mut buf)
        .map_err(|e| PluginError::Permanent(format!("event stream: encoding: {e}")))?;
    Ok(buf.into())
}

/// Reassembles messages from bytes as they arrive (frames may span reads).
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    decoder: aws_smithy_eventstream::frame::MessageFrameDecoder,
}

impl EventStreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffer holds one. A bad frame (CRC, length) is a
    /// Transient error: the stream is corrupt, a new one may be fine.
    pub fn next_message(&mut self) -> Result<Option<Message>, PluginError> {
        use aws_smithy_eventstream::frame::DecodedFrame;
        match self.decoder.decode_frame(&mut self.buf) {
            Ok(DecodedFrame::Complete(m)) => Ok(Some(m)),
            Ok(DecodedFrame::Incomplete) => Ok(None),
            Err(e) => Err(PluginError::Transient(format!(
                "event stream: bad frame: {e}"
            ))),
        }
    }
}

/// A decoded server message, by its `:message-type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `event`: `:event-type` (e.g. `TranscriptEvent`) and its payload (JSON for Transcribe).
    Event {
        /// The `:event-type` header.
        event_type: String,
        /// The payload.
        payload: Bytes,
    },
    /// `exception` (a modelled error such as `BadRequestException`), already categorised.
    Exception(PluginError),
    /// `error` (`:error-code`, `:error-message`), already categorised.
    Error(PluginError),
}

fn header_str<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// The category of an AWS error or exception name.
pub fn aws_error_category(name: &str) -> ErrorCategory {
    match name {
        "BadRequestException" | "ValidationException" | "InvalidParameterValueException" => {
            ErrorCategory::Config
        }
        "UnrecognizedClientException"
        | "AccessDeniedException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => ErrorCategory::Auth,
        "LimitExceededException" | "ThrottlingException" | "TooManyRequestsException" => {
            ErrorCategory::RateLimited
        }
        "InternalFailureException" | "ServiceUnavailableException" | "InternalServerException" => {
            ErrorCategory::Transient
        }
        _ => ErrorCategory::Permanent,
    }
}

/// Classifies a server message; exception and error messages carry a bounded, redacted excerpt.
pub fn classify(msg: &Message, redactor: &Redactor) -> ServerMessage {
    let payload = msg.payload().clone();
    match header_str(msg, ":message-type") {
        Some("exception") => {
            let name = header_str(msg, ":exception-type").unwrap_or("UnknownException");
            let m = format!(
                "aws: {name}: {}",
                errors::excerpt(&payload, errors::BODY_EXCERPT_LIMIT)
            );
            ServerMessage::Exception(errors::make(aws_error_category(name), m, None, redactor))
        }
        Some("error") => {
            let code = header_str(msg, ":error-code").unwrap_or("UnknownError");
            let text = header_str(msg, ":error-message").unwrap_or("");
            let m = format!(
                "aws: {code}: {}",
                errors::excerpt(text.as_bytes(), errors::BODY_EXCERPT_LIMIT)
            );
            ServerMessage::Error(errors::make(aws_error_category(code), m, None, redactor))
        }
        _ => ServerMessage::Event {
            event_type: header_str(msg, ":event-type").unwrap_or("").to_owned(),
            payload,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    // From the AWS SigV4 test suite shipped in aws-sigv4's sources
    // (aws-signing-test-suite/v4/get-vanilla-query-order-key-case and post-vanilla).
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite_time() -> SystemTime {
        // 2015-08-30T12:36:00Z
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn signer() -> AwsSigner {
        AwsSigner::new(
            AwsCredentials::new(AKID, Secret::new(SECRET), None),
            "us-east-1",
            "service",
        )
    }

    #[test]
    fn header_signature_matches_test_suite() {
        let mut req = http::Request::builder()
            .method("GET")
            .uri("https://example.amazonaws.com/?Param2=value2&Param1=value1")
            .header("host", "example.amazonaws.com")
            .body(())
            .unwrap();
        let sig = signer()
            .sign_request(&mut req, Payload::Bytes(&[]), suite_time())
            .unwrap();
        assert_eq!(
            sig,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");

        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .body(())
            .unwrap();
        let sig = signer()
            .sign_request(&mut req, Payload::Bytes(&[]), suite_time())
            .unwrap();
        assert_eq!(
            sig,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    #[test]
    fn presigned_url_matches_test_suite() {
        let url = signer()
            .presign_url(
                "GET",
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                Duration::from_secs(3600),
                suite_time(),
            )
            .unwrap();
        assert!(
            url.contains(
                "X-Amz-Signature=86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=3600"));
        // The signature and credential are masked by the kit's redaction.
        let r = Redactor::new();
        assert!(!r.redact(&url).contains("86012e2c"));
    }

    #[test]
    fn event_stream_round_trip_and_signing() {
        let msg = audio_event(Bytes::from_static(&[1, 2, 3, 4]));
        let wire = encode(&msg).unwrap();
        let mut dec = EventStreamDecoder::new();
        // Byte by byte: frames span reads.
        let mut got = Vec::new();
        for b in wire.iter().chain(wire.iter()) {
            dec.push(std::slice::from_ref(b));
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], msg);
        assert_eq!(header_str(&got[0], ":event-type"), Some("AudioEvent"));
        assert_eq!(header_str(&got[0], ":message-type"), Some("event"));
        assert_eq!(
            header_str(&got[0], ":content-type"),
            Some("application/octet-stream")
        );

        let mut corrupt = wire.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut dec = EventStreamDecoder::new();
        dec.push(&corrupt);
        assert_eq!(
            dec.next_message().unwrap_err().category(),
            ErrorCategory::Transient
        );

        // Chunk signing: deterministic for fixed inputs, chained, with the expected envelope.
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = signer().event_signer("seed");
        let mut b = signer().event_signer("seed");
        let s1 = a.sign(&msg, t).unwrap();
        let s2 = b.sign(&msg, t).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(a.last_signature().len(), 64);
        let first = a.last_signature().to_owned();
        let end = a.sign_end(t).unwrap();
        assert_ne!(a.last_signature(), first, "signatures chain");
        assert!(end.payload().is_empty());
        let names: Vec<_> = s1
            .headers()
            .iter()
            .map(|h| h.name().as_str().to_owned())
            .collect();
        assert_eq!(names, [":chunk-signature", ":date"]);
        // The envelope's payload is the encoded inner message.
        assert_eq!(s1.payload(), &wire);
    }

    #[test]
    fn server_messages_are_classified() {
        let r = Redactor::new();
        let ev = Message::new(&b"{}"[..])
            .add_header(string_header(":message-type", "event"))
            .add_header(string_header(":event-type", "TranscriptEvent"));
        assert_eq!(
            classify(&ev, &r),
            ServerMessage::Event {
                event_type: "TranscriptEvent".into(),
                payload: Bytes::from_static(b"{}")
            }
        );
        let ex = Message::new(&b"{\"Message\":\"too many\"}"[..])
            .add_header(string_header(":message-type", "exception"))
            .add_header(string_header(":exception-type", "LimitExceededException"));
        let ServerMessage::Exception(e) = classify(&ex, &r) else {
            panic!()
        };
        assert_eq!(e.category(), ErrorCategory::RateLimited);
        let er = Message::new(Bytes::new())
            .add_header(string_header(":message-type", "error"))
            .add_header(string_header(":error-code", "UnrecognizedClientException"))
            .add_header(string_header(":error-message", "bad key"));
        let ServerMessage::Error(e) = classify(&er, &r) else {
            panic!()
        };
        assert_eq!(
            e,
            PluginError::Auth("aws: UnrecognizedClientException: bad key".into())
        );
        assert_eq!(
            aws_error_category("BadRequestException"),
            ErrorCategory::Config
        );
        assert_eq!(
            aws_error_category("InternalFailureException"),
            ErrorCategory::Transient
        );
    }

    #[test]
    fn credentials_never_print() {
        let c = AwsCredentials::new(AKID, Secret::new(SECRET), Some(Secret::new("tok")));
        let d = format!("{c:?}");
        assert!(
            !d.contains(SECRET) && !d.contains(AKID) && !d.contains("tok\""),
            "{d}"
        );
        let r = c.redactor();
        assert_eq!(r.redact(&format!("{AKID} {SECRET}")), "*** ***");
    }
}
