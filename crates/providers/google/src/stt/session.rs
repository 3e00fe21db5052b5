//! One STT session: a sequence of `StreamingRecognize` calls over a shared channel.
//!
//! Flow (STT_PROTOCOLS.md §7, `cloud_speech.proto` comments):
//! - A call is opened lazily, on the first audio after the session start or after the previous
//!   call ended: request #1 is the config, then `audio` requests of at most [`MAX_AUDIO`] bytes
//!   (the proto: "Maximum size for this field is 15 KB per request"), the session's `Bytes`
//!   sliced without copies.
//! - `SttInput::Finalize`: v2 has no flush message, so the send side is half-closed; the server
//!   sends the remaining finals and ends the call with OK. Those are drained (bounded by
//!   `drain_timeout_ms`), and the next audio opens a new call.
//! - Input closed: the same half-close and drain, then the task returns.
//! - Results: a response holds zero or one final result first, then interim ones ("the first
//!   portion has a high stability…"); the interims are joined into one interim [`Transcript`].
//!   `SPEECH_ACTIVITY_BEGIN` → [`SttEvent::SpeechStarted`]. `SPEECH_ACTIVITY_END` marks the end
//!   of the utterance: if an interim is pending, the final that follows gets
//!   `is_speech_final`; otherwise (the final came first) it is reported as
//!   [`SttEvent::UtteranceEnd`]. Finals drained after a half-close are speech-final too.
//!   `END_OF_SINGLE_UTTERANCE` (latest_short only; the server then ends the call) is treated
//!   as an activity end.
//! - Word offsets are per call; each call's offsets are shifted by the audio sent before it,
//!   so times are from the session start.
//! - The 5-minute limit ("Limits": a stream may stay open at most 5 minutes): once a call is
//!   `rotate_after_secs` old (default 240), it is half-closed at the next utterance boundary
//!   (a final with no pending interim, or an activity end) and the next audio opens a new one;
//!   at 285 s it is rotated even mid-utterance (its finals are flushed). A call the server ends
//!   by itself (OK, or OUT_OF_RANGE: stream too long / audio timeout) is reopened lazily too;
//!   more than [`MAX_REOPENS`] such ends in a row without a single response end the session
//!   (Transient), so a server that keeps hanging up cannot loop forever.
//! - Errors end the task: `tonic::Status` codes through the kit's table (UNAUTHENTICATED /
//!   PERMISSION_DENIED Auth, RESOURCE_EXHAUSTED RateLimited, INVALID_ARGUMENT / NOT_FOUND
//!   Config, UNAVAILABLE and transport failures Transient).
//! - Google sends nothing during silence, so there is no response idle timeout; a dead
//!   connection is caught by HTTP/2 keepalive pings (`keepalive_secs`, default 30, with the
//!   kit's 10 s ack timeout), and every drain is bounded.

use super::{Settings, CTX};
use crate::auth::{self, Auth, AuthCache};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2 as pb;
use pb::speech_client::SpeechClient;
use pb::streaming_recognize_response::SpeechEventType;
use std::sync::Arc;
use std::time::Instant;
use waav_plugin_api::{PluginError, SttEvent, SttInput, SttIo, Transcript, Word};
use waav_provider_kit::grpc::{self, tonic};
use waav_provider_kit::redact::Redactor;

/// Largest `audio` field sent.
pub const MAX_AUDIO: usize = 15 * 1024;
/// Server-side call ends in a row (without any response) before the session gives up.
pub const MAX_REOPENS: u32 = 3;
/// Requests queued towards the transport per call.
const REQUEST_QUEUE: usize = 8;
/// Largest response message accepted.
const MAX_RESPONSE: usize = 1024 * 1024;

type Responses = tonic::Streaming<pb::StreamingRecognizeResponse>;

/// A call being opened, on its own task: the request stream must start flowing while the
/// session queues audio. Polled only from the session's `select!`, a burst of more than
/// [`REQUEST_QUEUE`] pieces (buffered audio replayed at the start of a call) filled the queue
/// before the open was ever polled, and the session waited on it forever.
struct Opening(tokio::task::JoinHandle<Result<tonic::Response<Responses>, tonic::Status>>);

impl Drop for Opening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What [`Session::new`] needs.
pub(crate) struct Params {
    pub channel: tonic::transport::Channel,
    pub auth: Auth,
    pub cache: Arc<AuthCache>,
    pub settings: Settings,
    pub first: pb::StreamingRecognizeRequest,
    pub bytes_per_sec: f64,
    pub frame: usize,
}

enum Resp {
    Opening(Opening),
    Open(Box<Responses>),
}

/// One call.
struct Call {
    tx: Option<mpsc::Sender<pb::StreamingRecognizeRequest>>,
    resp: Resp,
    started: Instant,
    /// Seconds of session audio sent before this call.
    base: f64,
    /// Responses received on this call.
    responses: u64,
}

/// Per-utterance state.
#[derive(Default)]
struct Utterance {
    interim_pending: bool,
    end_pending: bool,
}

pub(crate) struct Session {
    p: Params,
    redactor: Redactor,
    sent_bytes: u64,
    utt: Utterance,
    reopens: u32,
    /// Largest audio piece per request (whole frames, at most MAX_AUDIO).
    chunk: usize,
}

enum Step {
    Input(Option<SttInput>),
    Resp(Result<Option<pb::StreamingRecognizeResponse>, tonic::Status>),
}

async fn next_response(
    call: Option<&mut Call>,
) -> Result<Option<pb::StreamingRecognizeResponse>, tonic::Status> {
    let Some(call) = call else {
        return futures::future::pending().await;
    };
    if let Resp::Opening(f) = &mut call.resp {
        let r = (&mut f.0)
            .await
            .map_err(|e| tonic::Status::internal(format!("opening the stream: {e}")))??;
        call.resp = Resp::Open(Box::new(r.into_inner()));
    }
    match &mut call.resp {
        Resp::Open(s) => s.message().await,
        Resp::Opening(_) => Ok(None),
    }
}

/// How a drain ended.
enum Drained {
    Done,
    TimedOut,
}

impl Session {
    pub(crate) fn new(p: Params) -> Self {
        let frame = p.frame.max(1);
        Self {
            redactor: auth::redactor(&p.auth),
            chunk: (MAX_AUDIO / frame).max(1) * frame,
            p,
            sent_bytes: 0,
            utt: Utterance::default(),
            reopens: 0,
        }
    }

    fn status_error(&self, s: &tonic::Status) -> PluginError {
        grpc::from_status(s, CTX, &self.redactor)
    }

    async fn open(&mut self) -> Result<Call, PluginError> {
        let (mut tx, rx) = mpsc::channel(REQUEST_QUEUE);
        // Queued before the call starts, so it is the first message on the wire.
        tx.try_send(self.p.first.clone())
            .map_err(|_| PluginError::Transient(format!("{CTX}: request queue")))?;
        let mut req = tonic::Request::new(rx);
        self.p
            .cache
            .authorize(
                &self.p.auth,
                self.p.settings.user_project.as_deref(),
                &mut req,
            )
            .await?;
        // Routing header, as the generated GAPIC clients send it for this method.
        let params = format!(
            "recognizer={}",
            auth::encode_param(&self.p.settings.recognizer)
        );
        if let Ok(v) = params.parse() {
            req.metadata_mut().insert("x-goog-request-params", v);
        }
        let mut client =
            SpeechClient::new(self.p.channel.clone()).max_decoding_message_size(MAX_RESPONSE);
        let opening = Opening(tokio::spawn(async move {
            client.streaming_recognize(req).await
        }));
        tracing::debug!(recognizer = %self.p.settings.recognizer, "google stt: opening a stream");
        Ok(Call {
            tx: Some(tx),
            resp: Resp::Opening(opening),
            started: Instant::now(),
            base: self.sent_bytes as f64 / self.p.bytes_per_sec.max(1.0),
            responses: 0,
        })
    }

    pub(crate) async fn run(mut self, mut io: SttIo) -> Result<(), PluginError> {
        let mut call: Option<Call> = None;
        loop {
            let step = tokio::select! {
                i = io.input.recv() => Step::Input(i),
                r = next_response(call.as_mut()) => Step::Resp(r),
            };
            match step {
                Step::Input(None) => {
                    if let Some(mut c) = call.take() {
                        c.tx = None;
                        match self.drain(&mut c, &io).await? {
                            Drained::Done => {}
                            Drained::TimedOut => tracing::debug!(
                                "google stt: no end of stream within the drain timeout at close"
                            ),
                        }
                    }
                    return Ok(());
                }
                Step::Input(Some(SttInput::Audio(audio))) => {
                    if audio.is_empty() {
                        continue;
                    }
                    let too_old = call
                        .as_ref()
                        .is_some_and(|c| c.started.elapsed() >= self.p.settings.max_stream);
                    if too_old {
                        tracing::debug!("google stt: stream at its length limit; rotating");
                        let mut c = call.take().expect("checked");
                        c.tx = None;
                        self.drain_or_report(&mut c, &io).await?;
                    }
                    if call.is_none() {
                        call = Some(self.open().await?);
                    }
                    let c = call.as_mut().expect("opened");
                    self.send_audio(c, audio).await;
                }
                Step::Input(Some(SttInput::Finalize)) => {
                    if let Some(mut c) = call.take() {
                        c.tx = None;
                        self.drain_or_report(&mut c, &io).await?;
                    }
                }
                Step::Input(Some(_)) => {} // VAD boundaries: Google endpoints itself.
                Step::Resp(Ok(Some(resp))) => {
                    let c = call.as_mut().expect("a response comes from a call");
                    c.responses += 1;
                    self.reopens = 0;
                    let boundary = self.handle(&resp, c.base, false, &io).await?;
                    let rotate = boundary && c.started.elapsed() >= self.p.settings.rotate_after;
                    if rotate {
                        tracing::debug!("google stt: rotating the stream between utterances");
                        let mut c = call.take().expect("checked");
                        c.tx = None;
                        self.drain_or_report(&mut c, &io).await?;
                    }
                }
                Step::Resp(Ok(None)) => {
                    // The server ended the call by itself (single utterance, voice-activity
                    // timeout, stream limit): reopen at the next audio.
                    let c = call.take().expect("a response comes from a call");
                    self.server_ended(&c, "ended the stream")?;
                }
                Step::Resp(Err(status)) => {
                    let c = call.take().expect("a response comes from a call");
                    if status.code() == tonic::Code::OutOfRange {
                        self.server_ended(&c, status.message())?;
                        continue;
                    }
                    let e = self.status_error(&status);
                    if matches!(e, PluginError::Auth(_)) {
                        self.p.cache.invalidate(&self.p.auth).await;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn server_ended(&mut self, c: &Call, why: &str) -> Result<(), PluginError> {
        if c.responses == 0 {
            self.reopens += 1;
        }
        if self.reopens > MAX_REOPENS {
            return Err(PluginError::Transient(format!(
                "{CTX}: the server keeps ending the stream without results ({})",
                self.redactor.redact(why)
            )));
        }
        tracing::debug!(reason = %self.redactor.redact(why), "google stt: the server ended the stream; reopening on the next audio");
        self.utt.interim_pending = false;
        self.utt.end_pending = false;
        Ok(())
    }

    async fn send_audio(&mut self, c: &mut Call, audio: Bytes) {
        use pb::streaming_recognize_request::StreamingRequest;
        let Some(tx) = c.tx.as_mut() else { return };
        let mut rest = audio;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(self.chunk));
            let n = piece.len() as u64;
            let req = pb::StreamingRecognizeRequest {
                recognizer: String::new(),
                streaming_request: Some(StreamingRequest::Audio(piece)),
            };
            if tx.send(req).await.is_err() {
                // The call is over; its status arrives on the response side.
                c.tx = None;
                return;
            }
            self.sent_bytes += n;
        }
    }

    /// Drains a half-closed call; a timeout is reported as a non-fatal error.
    async fn drain_or_report(&mut self, c: &mut Call, io: &SttIo) -> Result<(), PluginError> {
        if let Drained::TimedOut = self.drain(c, io).await? {
            let e = PluginError::Timeout(format!(
                "{CTX}: no end of stream within {:?} of finalizing",
                self.p.settings.drain_timeout
            ));
            let _ = io.events.send(SttEvent::Error(e)).await;
        }
        Ok(())
    }

    /// Reads a half-closed call to its end (bounded), emitting its results as speech-final.
    async fn drain(&mut self, c: &mut Call, io: &SttIo) -> Result<Drained, PluginError> {
        let deadline = tokio::time::Instant::now() + self.p.settings.drain_timeout;
        loop {
            match tokio::time::timeout_at(deadline, next_response(Some(c))).await {
                Err(_) => {
                    self.utt = Utterance::default();
                    return Ok(Drained::TimedOut);
                }
                Ok(Ok(Some(resp))) => {
                    c.responses += 1;
                    self.handle(&resp, c.base, true, io).await?;
                }
                Ok(Ok(None)) => break,
                Ok(Err(s)) if s.code() == tonic::Code::OutOfRange => break,
                Ok(Err(s)) => return Err(self.status_error(&s)),
            }
        }
        if self.utt.end_pending || self.utt.interim_pending {
            // Speech ended without a final for it.
            let _ = io.events.send(SttEvent::UtteranceEnd).await;
        }
        self.utt = Utterance::default();
        Ok(Drained::Done)
    }

    /// Emits the events of one response; returns whether it ended at an utterance boundary.
    async fn handle(
        &mut self,
        resp: &pb::StreamingRecognizeResponse,
        base: f64,
        draining: bool,
        io: &SttIo,
    ) -> Result<bool, PluginError> {
        let send = |ev: SttEvent| io.events.send(ev);
        let mut boundary = false;
        match SpeechEventType::try_from(resp.speech_event_type) {
            Ok(SpeechEventType::SpeechActivityBegin) => {
                let _ = send(SttEvent::SpeechStarted).await;
            }
            Ok(SpeechEventType::SpeechActivityEnd | SpeechEventType::EndOfSingleUtterance) => {
                if self.utt.interim_pending {
                    self.utt.end_pending = true;
                } else {
                    let _ = send(SttEvent::UtteranceEnd).await;
                    boundary = true;
                }
            }
            Ok(SpeechEventType::Unspecified) => {}
            Err(_) => tracing::debug!(
                kind = resp.speech_event_type,
                "google stt: unknown speech event type"
            ),
        }
        let mut interim = String::new();
        let mut interim_lang = None;
        for r in &resp.results {
            if r.is_final {
                let t = final_transcript(r, base, self.utt.end_pending || draining);
                self.utt = Utterance::default();
                if t.is_speech_final {
                    boundary = true;
                }
                let _ = send(t.into()).await;
            } else if let Some(alt) = r.alternatives.first() {
                interim.push_str(&alt.transcript);
                if interim_lang.is_none() && !r.language_code.is_empty() {
                    interim_lang = Some(r.language_code.clone());
                }
            }
        }
        if !interim.trim().is_empty() {
            self.utt.interim_pending = true;
            let mut t = Transcript::interim(interim.trim_start(), 0.0);
            t.language = interim_lang;
            let _ = send(t.into()).await;
        } else if !resp.results.is_empty() && !self.utt.interim_pending {
            // A response with only a final: the utterance is settled.
            boundary = true;
        }
        Ok(boundary)
    }
}

fn secs(d: Option<&prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

fn confidence(c: f32) -> f32 {
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Maps a final result (its first alternative) to a transcript, times shifted by `base` s.
pub(crate) fn final_transcript(
    r: &pb::StreamingRecognitionResult,
    base: f64,
    speech_final: bool,
) -> Transcript {
    let alt = r.alternatives.first();
    let text = alt
        .map(|a| a.transcript.trim().to_owned())
        .unwrap_or_default();
    let mut t = Transcript::final_result(
        text,
        alt.map_or(0.0, |a| confidence(a.confidence)),
        speech_final,
    );
    if let Some(a) = alt {
        t.words = a
            .words
            .iter()
            .map(|w| Word {
                word: w.word.clone(),
                start: base + secs(w.start_offset.as_ref()),
                end: base + secs(w.end_offset.as_ref()),
                confidence: confidence(w.confidence),
                speaker: Some(w.speaker_label.clone()).filter(|s| !s.is_empty()),
            })
            .collect();
    }
    if !r.language_code.is_empty() {
        t.language = Some(r.language_code.clone());
    }
    let first = t.words.first().and_then(|w| w.speaker.clone());
    if first.is_some() && t.words.iter().all(|w| w.speaker == first) {
        t.speaker = first;
    }
    t
}
