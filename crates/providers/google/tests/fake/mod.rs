//! A protocol fake of Google Cloud Speech-to-Text v2 `StreamingRecognize`, Text-to-Speech v1
//! (`ListVoices`, `SynthesizeSpeech`, `StreamingSynthesize`) and the OAuth2 token endpoint,
//! served by one tonic server on 127.0.0.1 (gRPC over h2c, the token endpoint over HTTP/1.1).
//!
//! It lives here rather than in `waav-testkit` because the generated crates ship clients only:
//! the server side is hand-written over `tonic::server::Grpc` and needs tonic's server
//! features, tonic-prost and the googleapis crates, which every other crate's tests would then
//! build too.
//!
//! Behaviour follows the protos' comments (see the plugin modules): the first STT request must
//! carry `recognizer` + `streaming_config` and no audio, later ones audio only (≤ 15 KB); the
//! transcript is scripted from the audio received (one utterance per `utterance_bytes`);
//! half-closing ends the call after a final for the remaining audio. Auth: `x-goog-api-key`
//! equal to the configured key, or `authorization: Bearer <a token this fake issued>`; the
//! token endpoint verifies the JWT's RS256 signature with the public half of the test key and
//! its claims.
#![allow(dead_code)]

pub mod key;

use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2 as stt;
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as tts;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tonic::{Code, Status};

/// A boxed response stream.
type RespStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The fixed test key's pair (also used to sign in the plugin under test).
pub fn key_pair(pem: &str) -> ring::signature::RsaKeyPair {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("test key base64");
    ring::signature::RsaKeyPair::from_pkcs8(&der).expect("test key")
}

/// Fault knobs (set before or during a test).
#[derive(Default)]
pub struct Knobs {
    /// Refuse every gRPC call with this status.
    pub reject: Option<Status>,
    /// STT: after this many audio messages, end the call with this status.
    pub stt_fail_after: Option<(usize, Status)>,
    /// STT: after the half-close, never answer (the call stays open).
    pub stt_silent_on_close: bool,
    /// STT: end the call with OK right after the first final (as `latest_short` does).
    pub stt_end_after_final: bool,
    /// STT: send odd responses first (unknown event type, results without alternatives, NaN
    /// confidence, a final with no alternatives, a 200 KB transcript).
    pub stt_odd: bool,
    /// STT: bytes per scripted utterance (default 1 s at 16 kHz PCM16).
    pub utterance_bytes: usize,
    /// STT: send the final before the activity end (default: activity end first).
    pub final_first: bool,
    /// STT: answer the call with a gRPC message that is not a `StreamingRecognizeResponse`
    /// (an invalid protobuf wire type), then end the body without trailers.
    pub stt_garbage: bool,
    /// TTS: fail with this status (unary and streaming).
    pub tts_status: Option<Status>,
    /// TTS: after the first chunk, wait for this before sending the rest.
    pub tts_hold: Option<Arc<Notify>>,
    /// TTS: never answer.
    pub tts_silent: bool,
    /// TTS unary: return a truncated WAV header.
    pub tts_truncated_wav: bool,
    /// TTS streaming: send one chunk, then fail with INTERNAL.
    pub tts_truncate: bool,
    /// TTS: answer (unary and streaming) with a gRPC message that is not a TTS response (an
    /// invalid protobuf wire type), then end the body without trailers.
    pub tts_garbage: bool,
    /// Token endpoint: refuse with 400 invalid_grant.
    pub token_reject: bool,
    /// Token endpoint: `expires_in` of issued tokens (default 3599).
    pub token_expires_in: Option<u64>,
}

/// One StreamingRecognize call as the fake saw it.
#[derive(Debug, Clone, Default)]
pub struct SttCall {
    /// Request metadata (lower-case names; sensitive values included: tests compare them).
    pub metadata: HashMap<String, String>,
    /// The first request.
    pub first: Option<stt::StreamingRecognizeRequest>,
    /// Audio, concatenated.
    pub audio: Vec<u8>,
    /// Sizes of the audio messages.
    pub audio_sizes: Vec<usize>,
    /// The client half-closed.
    pub half_closed: bool,
}

/// One StreamingSynthesize call.
#[derive(Debug, Clone, Default)]
pub struct TtsStreamCall {
    /// Metadata.
    pub metadata: HashMap<String, String>,
    /// The config message.
    pub config: Option<tts::StreamingSynthesizeConfig>,
    /// The input texts.
    pub texts: Vec<String>,
    /// The response stream was dropped before it was complete (the client cancelled).
    pub cancelled: bool,
}

/// What the fake recorded.
#[derive(Default)]
pub struct Seen {
    /// STT calls, in order.
    pub stt: Vec<SttCall>,
    /// Unary TTS requests with their metadata.
    pub synth: Vec<(HashMap<String, String>, tts::SynthesizeSpeechRequest)>,
    /// Streaming TTS calls.
    pub tts_stream: Vec<TtsStreamCall>,
    /// ListVoices calls.
    pub voices: usize,
    /// Verified JWT claim sets, in order.
    pub jwt_claims: Vec<serde_json::Value>,
    /// JWT headers.
    pub jwt_headers: Vec<serde_json::Value>,
    /// Token requests refused (bad grant type or signature).
    pub bad_token_requests: usize,
}

/// Shared state.
pub struct State {
    /// Knobs.
    pub knobs: Mutex<Knobs>,
    /// Recordings.
    pub seen: Mutex<Seen>,
    api_key: String,
    issued: Mutex<Vec<String>>,
    public_key: Vec<u8>,
    token_url: Mutex<String>,
}

/// The running fake.
pub struct GoogleFake {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// `http://127.0.0.1:port/token`.
    pub token_url: String,
    /// State (knobs, recordings).
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GoogleFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn metadata(md: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    md.clone()
        .into_headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

impl State {
    fn check_auth(&self, md: &HashMap<String, String>) -> Result<(), Status> {
        if let Some(s) = &lock(&self.knobs).reject {
            return Err(clone_status(s));
        }
        if md.get("x-goog-api-key").is_some_and(|k| *k == self.api_key) {
            return Ok(());
        }
        if let Some(t) = md
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
        {
            if lock(&self.issued).iter().any(|i| i == t) {
                return Ok(());
            }
        }
        // What Google answers for a missing/invalid credential.
        Err(Status::unauthenticated(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ))
    }

    fn token(&self, body: &str) -> Result<serde_json::Value, (u16, serde_json::Value)> {
        let refuse = |d: &str| {
            (
                400u16,
                serde_json::json!({"error": "invalid_grant", "error_description": d}),
            )
        };
        if lock(&self.knobs).token_reject {
            return Err(refuse("Invalid JWT Signature."));
        }
        let form: HashMap<String, String> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err((
                400,
                serde_json::json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
            ));
        }
        let jwt = form
            .get("assertion")
            .ok_or_else(|| refuse("no assertion"))?;
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(refuse("Invalid JWT"));
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = b64.decode(parts[2]).map_err(|_| refuse("Invalid JWT"))?;
        let signed = format!("{}.{}", parts[0], parts[1]);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        )
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| refuse("Invalid JWT Signature."))?;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).map_err(|_| refuse("Invalid JWT"))?)
                .map_err(|_| refuse("Invalid JWT"))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).map_err(|_| refuse("Invalid JWT"))?)
                .map_err(|_| refuse("Invalid JWT"))?;
        let aud = lock(&self.token_url).clone();
        if header["alg"] != "RS256"
            || claims["aud"] != aud.as_str()
            || claims["scope"] != "https://www.googleapis.com/auth/cloud-platform"
            || claims["iss"].as_str().is_none_or(str::is_empty)
            || claims["exp"]
                .as_u64()
                .zip(claims["iat"].as_u64())
                .map(|(e, i)| e - i)
                != Some(3600)
        {
            return Err(refuse("Invalid JWT: claims"));
        }
        {
            let mut seen = lock(&self.seen);
            seen.jwt_claims.push(claims);
            seen.jwt_headers.push(header);
        }
        let mut issued = lock(&self.issued);
        let token = format!("ya29.fake-token-{}", issued.len() + 1);
        issued.push(token.clone());
        let expires = lock(&self.knobs).token_expires_in.unwrap_or(3599);
        Ok(
            serde_json::json!({"access_token": token, "expires_in": expires, "token_type": "Bearer"}),
        )
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn clone_status(s: &Status) -> Status {
    let mut n = Status::new(s.code(), s.message().to_owned());
    *n.metadata_mut() = s.metadata().clone();
    n
}

/// A scripted final for utterance `n`: words `utterance` and `<n>`, 0.5 s each from `start`.
fn final_result(n: usize, start: f64, prefix: &str) -> stt::StreamingRecognitionResult {
    let d = |s: f64| prost_types::Duration {
        seconds: s.trunc() as i64,
        nanos: (s.fract() * 1e9).round() as i32,
    };
    let words = vec![
        stt::WordInfo {
            start_offset: Some(d(start)),
            end_offset: Some(d(start + 0.5)),
            word: prefix.to_owned(),
            confidence: 0.8,
            speaker_label: String::new(),
        },
        stt::WordInfo {
            start_offset: Some(d(start + 0.5)),
            end_offset: Some(d(start + 1.0)),
            word: n.to_string(),
            confidence: 0.7,
            speaker_label: String::new(),
        },
    ];
    stt::StreamingRecognitionResult {
        alternatives: vec![stt::SpeechRecognitionAlternative {
            transcript: format!("{prefix} {n}"),
            confidence: 0.9,
            words,
        }],
        is_final: true,
        stability: 0.0,
        result_end_offset: Some(d(start + 1.0)),
        channel_tag: 0,
        language_code: "en-us".into(),
    }
}

fn interim(text: &str, stability: f32) -> stt::StreamingRecognitionResult {
    stt::StreamingRecognitionResult {
        alternatives: vec![stt::SpeechRecognitionAlternative {
            transcript: text.into(),
            confidence: 0.0,
            words: vec![],
        }],
        is_final: false,
        stability,
        result_end_offset: None,
        channel_tag: 0,
        language_code: "en-us".into(),
    }
}

fn event(
    kind: stt::streaming_recognize_response::SpeechEventType,
) -> stt::StreamingRecognizeResponse {
    stt::StreamingRecognizeResponse {
        results: vec![],
        speech_event_type: kind as i32,
        speech_event_offset: None,
        metadata: None,
    }
}

fn results(r: Vec<stt::StreamingRecognitionResult>) -> stt::StreamingRecognizeResponse {
    stt::StreamingRecognizeResponse {
        results: r,
        speech_event_type: 0,
        speech_event_offset: None,
        metadata: None,
    }
}

async fn streaming_recognize(
    state: Arc<State>,
    req: tonic::Request<tonic::Streaming<stt::StreamingRecognizeRequest>>,
) -> Result<tonic::Response<RespStream<stt::StreamingRecognizeResponse>>, Status> {
    use stt::streaming_recognize_request::StreamingRequest;
    use stt::streaming_recognize_response::SpeechEventType as E;
    let md = metadata(req.metadata());
    state.check_auth(&md)?;
    let mut input = req.into_inner();
    let idx = {
        let mut seen = lock(&state.seen);
        seen.stt.push(SttCall {
            metadata: md,
            ..SttCall::default()
        });
        seen.stt.len() - 1
    };
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<stt::StreamingRecognizeResponse, Status>>(64);
    tokio::spawn(async move {
        let first = match input.message().await {
            Ok(Some(m)) => m,
            _ => return,
        };
        let valid = !first.recognizer.is_empty()
            && matches!(
                first.streaming_request,
                Some(StreamingRequest::StreamingConfig(_))
            );
        lock(&state.seen).stt[idx].first = Some(first);
        if !valid {
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "The first request must contain recognizer and streaming_config.",
                )))
                .await;
            return;
        }
        if lock(&state.knobs).stt_odd {
            let huge = "x".repeat(200_000);
            let odd = vec![
                stt::StreamingRecognizeResponse {
                    results: vec![],
                    speech_event_type: 99,
                    speech_event_offset: None,
                    metadata: None,
                },
                results(vec![stt::StreamingRecognitionResult {
                    alternatives: vec![],
                    is_final: false,
                    ..Default::default()
                }]),
                results(vec![stt::StreamingRecognitionResult {
                    alternatives: vec![stt::SpeechRecognitionAlternative {
                        transcript: huge,
                        confidence: f32::NAN,
                        words: vec![stt::WordInfo::default()],
                    }],
                    is_final: false,
                    ..Default::default()
                }]),
                results(vec![stt::StreamingRecognitionResult {
                    alternatives: vec![],
                    is_final: true,
                    ..Default::default()
                }]),
            ];
            for o in odd {
                let _ = tx.send(Ok(o)).await;
            }
        }
        let per = {
            let k = lock(&state.knobs);
            if k.utterance_bytes == 0 {
                32_000
            } else {
                k.utterance_bytes
            }
        };
        let mut pending = 0usize; // bytes of the current utterance
        let mut utterances = 0usize;
        let mut messages = 0usize;
        let mut total = 0usize;
        loop {
            let msg = match input.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => return,
            };
            let audio = match msg.streaming_request {
                Some(StreamingRequest::Audio(a)) => a,
                _ => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "Only the first request may contain streaming_config.",
                        )))
                        .await;
                    return;
                }
            };
            if audio.len() > 15 * 1024 {
                let _ = tx
                    .send(Err(Status::invalid_argument("Audio chunk exceeds 15 KB.")))
                    .await;
                return;
            }
            messages += 1;
            {
                let mut seen = lock(&state.seen);
                seen.stt[idx].audio.extend_from_slice(&audio);
                seen.stt[idx].audio_sizes.push(audio.len());
            }
            let fail = lock(&state.knobs)
                .stt_fail_after
                .as_ref()
                .filter(|(n, _)| messages >= *n)
                .map(|(_, s)| clone_status(s));
            if let Some(s) = fail {
                let _ = tx.send(Err(s)).await;
                return;
            }
            if pending == 0 {
                let _ = tx.send(Ok(event(E::SpeechActivityBegin))).await;
            }
            let before = pending;
            pending += audio.len();
            total += audio.len();
            if before < per / 2 && pending >= per / 2 && pending < per {
                let _ = tx
                    .send(Ok(results(vec![
                        interim("utterance", 0.9),
                        interim(" more", 0.1),
                    ])))
                    .await;
            }
            if pending >= per {
                utterances += 1;
                let start = (total - pending) as f64 / 32_000.0;
                pending = 0;
                let fin = results(vec![final_result(utterances, start, "utterance")]);
                if lock(&state.knobs).final_first {
                    let _ = tx.send(Ok(fin)).await;
                    let _ = tx.send(Ok(event(E::SpeechActivityEnd))).await;
                } else {
                    let _ = tx.send(Ok(event(E::SpeechActivityEnd))).await;
                    let _ = tx.send(Ok(fin)).await;
                }
                if lock(&state.knobs).stt_end_after_final {
                    return; // dropping tx ends the call with OK
                }
            }
        }
        lock(&state.seen).stt[idx].half_closed = true;
        if lock(&state.knobs).stt_silent_on_close {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        if pending > 0 {
            let start = (total - pending) as f64 / 32_000.0;
            let _ = tx
                .send(Ok(results(vec![final_result(
                    utterances + 1,
                    start,
                    "partial",
                )])))
                .await;
        }
    });
    let stream = tokio_stream_from(rx);
    Ok(tonic::Response::new(stream))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
) -> RespStream<T> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Deterministic audio for `text`: 10 ms per byte of text, in the requested encoding.
pub fn tone(text: &str, encoding: i32, rate: i32) -> Vec<u8> {
    let samples = text.len() * (rate.max(8000) as usize) / 100;
    match tts::AudioEncoding::try_from(encoding) {
        Ok(tts::AudioEncoding::Mulaw | tts::AudioEncoding::Alaw) => {
            (0..samples).map(|i| (i % 251) as u8).collect()
        }
        Ok(tts::AudioEncoding::Mp3) => {
            let mut v = b"ID3\x04\0\0\0\0\0\0".to_vec();
            v.extend((0..samples / 8).map(|i| (i % 253) as u8));
            v
        }
        Ok(tts::AudioEncoding::OggOpus) => {
            let mut v = b"OggS".to_vec();
            v.extend((0..samples / 8).map(|i| (i % 253) as u8));
            v
        }
        _ => (0..samples)
            .flat_map(|i| (((i % 100) as i16 - 50) * 300).to_le_bytes())
            .collect(),
    }
}

/// `tone` inside a WAV header (what SynthesizeSpeech returns for LINEAR16/MULAW/ALAW).
pub fn wav(data: &[u8], encoding: i32, rate: i32) -> Vec<u8> {
    let (fmt, bits): (u16, u16) = match tts::AudioEncoding::try_from(encoding) {
        Ok(tts::AudioEncoding::Mulaw) => (7, 8),
        Ok(tts::AudioEncoding::Alaw) => (6, 8),
        _ => (1, 16),
    };
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&fmt.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&(rate as u32).to_le_bytes());
    v.extend_from_slice(&(rate as u32 * u32::from(bits) / 8).to_le_bytes());
    v.extend_from_slice(&(bits / 8).to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

async fn synthesize(
    state: Arc<State>,
    req: tonic::Request<tts::SynthesizeSpeechRequest>,
) -> Result<tonic::Response<tts::SynthesizeSpeechResponse>, Status> {
    let md = metadata(req.metadata());
    state.check_auth(&md)?;
    let r = req.into_inner();
    lock(&state.seen).synth.push((md, r.clone()));
    let (status, silent, truncated) = {
        let k = lock(&state.knobs);
        (
            k.tts_status.as_ref().map(clone_status),
            k.tts_silent,
            k.tts_truncated_wav,
        )
    };
    if silent {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(s) = status {
        return Err(s);
    }
    let text = match r.input.and_then(|i| i.input_source) {
        Some(tts::synthesis_input::InputSource::Text(t)) => t,
        Some(tts::synthesis_input::InputSource::Ssml(s)) => s,
        _ => {
            return Err(Status::invalid_argument(
                "Either `input.text` or `input.ssml` is required.",
            ))
        }
    };
    if text.len() > 5000 {
        return Err(Status::invalid_argument(
            "Input size limit exceeded: 5000 bytes.",
        ));
    }
    let voice = r.voice.unwrap_or_default();
    if voice.language_code.is_empty() {
        return Err(Status::invalid_argument("Voice language_code is required."));
    }
    let ac = r.audio_config.unwrap_or_default();
    if ac.audio_encoding == 0 {
        return Err(Status::invalid_argument(
            "AudioConfig.audio_encoding is required.",
        ));
    }
    let rate = if ac.sample_rate_hertz == 0 {
        24_000
    } else {
        ac.sample_rate_hertz
    };
    let data = tone(&text, ac.audio_encoding, rate);
    let audio = match tts::AudioEncoding::try_from(ac.audio_encoding) {
        Ok(tts::AudioEncoding::Linear16 | tts::AudioEncoding::Mulaw | tts::AudioEncoding::Alaw) => {
            let mut w = wav(&data, ac.audio_encoding, rate);
            if truncated {
                w.truncate(20);
            }
            w
        }
        _ => data,
    };
    Ok(tonic::Response::new(tts::SynthesizeSpeechResponse {
        audio_content: Bytes::from(audio),
    }))
}

/// Sets `cancelled` when the response stream is dropped before it ended.
struct DropFlag {
    state: Arc<State>,
    idx: usize,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.done.load(std::sync::atomic::Ordering::SeqCst) {
            lock(&self.state.seen).tts_stream[self.idx].cancelled = true;
        }
    }
}

async fn streaming_synthesize(
    state: Arc<State>,
    req: tonic::Request<tonic::Streaming<tts::StreamingSynthesizeRequest>>,
) -> Result<tonic::Response<RespStream<tts::StreamingSynthesizeResponse>>, Status> {
    use tts::streaming_synthesize_request::StreamingRequest;
    let md = metadata(req.metadata());
    state.check_auth(&md)?;
    if let Some(s) = lock(&state.knobs).tts_status.as_ref() {
        return Err(clone_status(s));
    }
    let mut input = req.into_inner();
    let idx = {
        let mut seen = lock(&state.seen);
        seen.tts_stream.push(TtsStreamCall {
            metadata: md,
            ..Default::default()
        });
        seen.tts_stream.len() - 1
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = state.clone();
    let done2 = done.clone();
    tokio::spawn(async move {
        let state = st;
        let cfg = match input.message().await {
            Ok(Some(tts::StreamingSynthesizeRequest {
                streaming_request: Some(StreamingRequest::StreamingConfig(c)),
            })) => c,
            _ => {
                let _ = tx
                    .send(Err(Status::invalid_argument(
                        "The first request must be streaming_config.",
                    )))
                    .await;
                return;
            }
        };
        lock(&state.seen).tts_stream[idx].config = Some(cfg.clone());
        let ac = cfg.streaming_audio_config.unwrap_or_default();
        let enc = if ac.audio_encoding == 0 {
            tts::AudioEncoding::Pcm as i32
        } else {
            ac.audio_encoding
        };
        if !matches!(
            tts::AudioEncoding::try_from(enc),
            Ok(tts::AudioEncoding::Pcm
                | tts::AudioEncoding::Mulaw
                | tts::AudioEncoding::Alaw
                | tts::AudioEncoding::OggOpus)
        ) {
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "Unsupported streaming audio encoding.",
                )))
                .await;
            return;
        }
        let rate = if ac.sample_rate_hertz == 0 {
            24_000
        } else {
            ac.sample_rate_hertz
        };
        let (hold, silent, truncate) = {
            let k = lock(&state.knobs);
            (k.tts_hold.clone(), k.tts_silent, k.tts_truncate)
        };
        let mut first = true;
        loop {
            let text = match input.message().await {
                Ok(Some(tts::StreamingSynthesizeRequest {
                    streaming_request: Some(StreamingRequest::Input(i)),
                })) => match i.input_source {
                    Some(tts::streaming_synthesis_input::InputSource::Text(t)) => t,
                    _ => String::new(),
                },
                Ok(Some(_)) => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "Only the first request may be streaming_config.",
                        )))
                        .await;
                    return;
                }
                Ok(None) => break,
                Err(_) => return,
            };
            lock(&state.seen).tts_stream[idx].texts.push(text.clone());
            if silent {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let audio = tone(&text, enc, rate);
            let n = audio.len().div_ceil(3).max(1);
            for chunk in audio.chunks(n) {
                if tx
                    .send(Ok(tts::StreamingSynthesizeResponse {
                        audio_content: Bytes::copy_from_slice(chunk),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                if first {
                    first = false;
                    if truncate {
                        let _ = tx.send(Err(Status::internal("stream broke"))).await;
                        return;
                    }
                    if let Some(h) = &hold {
                        h.notified().await;
                    }
                }
            }
        }
        done2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let flag = DropFlag { state, idx, done };
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| {
        let _keep = &flag;
        rx.poll_recv(cx)
    });
    Ok(tonic::Response::new(Box::pin(stream)))
}

/// Voices ListVoices returns.
pub fn voices() -> Vec<tts::Voice> {
    vec![
        tts::Voice {
            language_codes: vec!["en-US".into()],
            name: "en-US-Chirp3-HD-Charon".into(),
            ssml_gender: tts::SsmlVoiceGender::Male as i32,
            natural_sample_rate_hertz: 24_000,
        },
        tts::Voice {
            language_codes: vec!["en-GB".into()],
            name: "en-GB-Neural2-A".into(),
            ssml_gender: tts::SsmlVoiceGender::Female as i32,
            natural_sample_rate_hertz: 24_000,
        },
    ]
}

macro_rules! grpc_route {
    (streaming, $state:expr, $f:path) => {{
        let state = $state.clone();
        axum::routing::post(move |req: axum::extract::Request| {
            let state = state.clone();
            async move {
                let svc = tower::service_fn(move |r| $f(state.clone(), r));
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                grpc.streaming(svc, req).await
            }
        })
    }};
    (unary, $state:expr, $f:path) => {{
        let state = $state.clone();
        axum::routing::post(move |req: axum::extract::Request| {
            let state = state.clone();
            async move {
                let svc = tower::service_fn(move |r| $f(state.clone(), r));
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                grpc.unary(svc, req).await
            }
        })
    }};
}

/// A TTS route: [`grpc_route!`], or [`garbage_response`] while `tts_garbage` is set.
macro_rules! tts_route {
    ($kind:ident, $state:expr, $f:path) => {{
        let state = $state.clone();
        axum::routing::post(move |req: axum::extract::Request| {
            let state = state.clone();
            async move {
                use axum::response::IntoResponse;
                if lock(&state.knobs).tts_garbage {
                    return garbage_response();
                }
                let svc = tower::service_fn(move |r| $f(state.clone(), r));
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                grpc.$kind(svc, req).await.into_response()
            }
        })
    }};
}

async fn list_voices(
    state: Arc<State>,
    req: tonic::Request<tts::ListVoicesRequest>,
) -> Result<tonic::Response<tts::ListVoicesResponse>, Status> {
    let md = metadata(req.metadata());
    state.check_auth(&md)?;
    lock(&state.seen).voices += 1;
    Ok(tonic::Response::new(tts::ListVoicesResponse {
        voices: voices(),
    }))
}

impl GoogleFake {
    /// Starts the fake; `api_key` is accepted as `x-goog-api-key`, tokens it issues as Bearer.
    pub async fn start(api_key: &str, key_pem: &str) -> Self {
        let public_key = {
            use ring::signature::KeyPair;
            key_pair(key_pem).public_key().as_ref().to_vec()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let token_url = format!("{url}/token");
        let state = Arc::new(State {
            knobs: Mutex::new(Knobs::default()),
            seen: Mutex::new(Seen::default()),
            api_key: api_key.to_owned(),
            issued: Mutex::new(Vec::new()),
            public_key,
            token_url: Mutex::new(token_url.clone()),
        });
        let st = state.clone();
        let router = axum::Router::new()
            .route("/google.cloud.speech.v2.Speech/StreamingRecognize", {
                let st = state.clone();
                axum::routing::post(move |req: axum::extract::Request| {
                    let state = st.clone();
                    async move {
                        use axum::response::IntoResponse;
                        if lock(&state.knobs).stt_garbage {
                            return garbage_response();
                        }
                        let svc = tower::service_fn(move |r| streaming_recognize(state.clone(), r));
                        let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                        grpc.streaming(svc, req).await.into_response()
                    }
                })
            })
            .route(
                "/google.cloud.texttospeech.v1.TextToSpeech/StreamingSynthesize",
                tts_route!(streaming, state, streaming_synthesize),
            )
            .route(
                "/google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech",
                tts_route!(unary, state, synthesize),
            )
            .route(
                "/google.cloud.texttospeech.v1.TextToSpeech/ListVoices",
                grpc_route!(unary, state, list_voices),
            )
            .route(
                "/token",
                axum::routing::post(move |body: String| {
                    let st = st.clone();
                    async move {
                        use axum::response::IntoResponse;
                        match st.token(&body) {
                            Ok(v) => axum::Json(v).into_response(),
                            Err((code, v)) => {
                                lock(&st.seen).bad_token_requests += 1;
                                (
                                    axum::http::StatusCode::from_u16(code).unwrap(),
                                    axum::Json(v),
                                )
                                    .into_response()
                            }
                        }
                    }
                }),
            );
        let routes = tonic::service::Routes::from(router);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Self {
            url,
            token_url,
            state,
            task,
        }
    }

    /// Changes knobs.
    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut lock(&self.state.knobs));
    }

    /// Reads the recordings.
    pub fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&lock(&self.state.seen))
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> Vec<String> {
        lock(&self.state.issued).clone()
    }
}

/// A TCP server that accepts connections, reads a little and drops them (a vendor that
/// disconnects mid-stream); returns its URL.
pub async fn disconnecting_server(after_bytes: usize) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                // Server preface: an empty SETTINGS frame, so the client's handshake completes.
                let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < after_bytes {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                drop(s);
            });
        }
    });
    (url, task)
}

/// A gRPC response whose one message does not decode (field 1 with the invalid wire type 7).
fn garbage_response() -> axum::response::Response {
    let body: Vec<u8> = vec![0, 0, 0, 0, 3, 0x0f, 0x01, 0x02];
    axum::response::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(axum::body::Body::from(body))
        .expect("a valid response")
}

/// A TCP proxy to `target` (`http://host:port`) that forwards both ways and, once `after_bytes`
/// came from the client, drops both sides without a GOAWAY: a vendor connection that breaks
/// mid-stream (the call is open, audio and results have been flowing). Returns its URL.
pub async fn cutting_proxy(
    target: &str,
    after_bytes: usize,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = target.trim_start_matches("http://").to_owned();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while n < after_bytes {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => {
                                n += k;
                                if sw.write_all(&buf[..k]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                let down = async {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => {
                                if cw.write_all(&buf[..k]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                // Whichever side ends first (the cut), both connections are dropped.
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    (url, task)
}

/// `true` if a status code is what the fake would produce for `c`.
pub fn is_code(s: &Status, c: Code) -> bool {
    s.code() == c
}
