//! Cloud STT over HTTP-family transports end to end: a WaaV client → the gateway (`/ws`) → the
//! vendor's fake on 127.0.0.1, through the same config, registry, audio conversion, pipeline and
//! session code as production. Amazon Transcribe (event-stream over a presigned WebSocket),
//! OpenAI and Groq (a REST request per utterance, cut on the session VAD's speech end), and
//! Google Speech-to-Text v2 (gRPC `StreamingRecognize`).
//!
//! Google's full fake (`crates/providers/google/tests/fake/`) needs tonic's server features, the
//! googleapis crates and axum, none of which this crate depends on; so the Google test talks to
//! [`h2c`], a minimal HTTP/2 + gRPC server over a plain TCP socket that speaks just enough of
//! `StreamingRecognize` (hand-encoded protobuf, field numbers from `cloud_speech.proto`).
#![cfg(all(feature = "aws", feature = "openai", feature = "google"))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::ws::{utterance, Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;
use waav_aws as _;
use waav_google as _;
use waav_openai as _;
use waav_plugin_api::codec::{alaw_encode, mulaw_encode};
use waav_testkit::fakes::aws::transcribe::{TranscribeFake, TranscribeFakeOptions};
use waav_testkit::fakes::aws::FakeCredentials;
use waav_testkit::fakes::openai::OpenAiFake;

/// Bound on each wait for a message (a guard against hangs, not a latency check).
const WAIT: Duration = Duration::from_secs(20);

/// The session VAD (the testkit's deterministic level gate) on every session's audio: its
/// speech end is what cuts an utterance for the request/response providers.
const VAD: &str = "  processors:\n    vad: { type: level-vad, config: { silence_frames: 5 } }\n  pipelines: { default_stt_pre: [vad] }\n";

fn pcm16(frame: &[u8]) -> impl Iterator<Item = i16> + '_ {
    frame
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
}

/// Reads until a final `stt_result` with text arrives; an `error` fails the test.
async fn first_final(c: &mut WsClient) -> Value {
    loop {
        match tokio::time::timeout(WAIT, c.recv()).await {
            Ok(Frame::Json(v)) if v["type"] == "stt_result" && v["is_final"] == true => {
                if v["transcript"].as_str().is_some_and(|t| !t.is_empty()) {
                    return v;
                }
            }
            Ok(Frame::Json(v)) if v["type"] == "error" => panic!("error: {v}"),
            Ok(Frame::Closed(c)) => panic!("closed ({c:?}) before a final"),
            Ok(_) => {}
            Err(_) => panic!("no final transcript within {WAIT:?}"),
        }
    }
}

fn stt(provider: &str, encoding: &str, rate: u32, model: &str) -> Value {
    json!({"type":"config","stt_config":{
        "provider":provider,"language":"en-US","sample_rate":rate,"channels":1,
        "punctuation":true,"encoding":encoding,"model":model}})
}

#[tokio::test]
async fn aws_transcribe_by_alias_from_an_alaw_client() {
    let mut opts =
        TranscribeFakeOptions::new(FakeCredentials::new("AKIAFAKETEST0001", "eu-west-1"));
    // A final per 500 ms of audio: the gateway never ends the stream by itself.
    opts.segment_ms = 500;
    let fake = TranscribeFake::start(opts).await;
    // The section under one alias, the session naming the other.
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    amazon-transcribe: {{ access_key_id: AKIAFAKETEST0001, secret_access_key: \"fakeSecretKey/+0123456789abcdefghijklmn\", region: eu-west-1, endpoint: \"{}\" }}\n",
        fake.base_url()
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt("transcribe", "alaw", 8000, "")).await;
    let mut samples = 0;
    for frame in utterance(1_200, 400, 8_000) {
        let bytes: Vec<u8> = pcm16(&frame).map(alaw_encode).collect();
        samples += bytes.len();
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "aws-transcribe", "{result}");
    assert_eq!(result["transcript"], "hello world.", "{result}");
    let sessions = fake.sessions();
    let s = &sessions[0];
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let req = s.request.as_ref().expect("upgrade recorded");
    // A-law is not something Transcribe takes: the core decoded it to PCM16 at 8 kHz.
    assert_eq!(req.query("media-encoding"), Some("pcm"));
    assert_eq!(req.query("sample-rate"), Some("8000"));
    assert_eq!(req.query("language-code"), Some("en-US"));
    assert!(
        !s.audio.is_empty() && s.audio.len() <= samples * 2 && s.audio.len() % 2 == 0,
        "{} bytes of PCM16 for {samples} A-law samples",
        s.audio.len()
    );
}

/// Streams speech then silence; the VAD's speech end cuts the utterance, whose final is
/// returned with the request the fake received.
async fn rest_final(
    provider: &str,
    yaml: String,
    encoding: &str,
    rate: u32,
    model: &str,
    encode: impl Fn(&[u8]) -> Vec<u8>,
) -> Value {
    let server = TestServer::start(&yaml).await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt(provider, encoding, rate, model)).await;
    for frame in utterance(1_000, 600, rate) {
        c.send_binary(encode(&frame)).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], provider, "{result}");
    result
}

#[tokio::test]
async fn openai_transcribes_a_48_khz_client_resampled_and_cut_by_the_vad() {
    let fake = OpenAiFake::start("test-key").await;
    let yaml = format!(
        "plugins:\n  stt:\n    openai: {{ api_key: test-key, base_url: \"{}\" }}\n{VAD}",
        fake.base_url()
    );
    // gpt-4o-transcribe (the default) answers with SSE interims, then the final.
    let result = rest_final("openai", yaml, "linear16", 48_000, "", |f| f.to_vec()).await;
    let text = result["transcript"].as_str().unwrap();
    assert!(text.starts_with("alpha bravo"), "{result}");
    assert_eq!(result["is_speech_final"], true, "{result}");
    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 1, "one utterance, one request");
    let r = &reqs[0];
    assert_eq!(r.request.header("authorization"), Some("Bearer test-key"));
    assert_eq!(r.field("model").as_deref(), Some("gpt-4o-transcribe"));
    assert!(r.streamed);
    assert_eq!(r.text, text, "the client got the fake's transcript");
    // 48 kHz is not a rate the plugin takes: the core resampled it once.
    let wav = r.wav.as_ref().expect("a WAV upload");
    assert!(
        [8_000, 16_000, 24_000].contains(&wav.sample_rate),
        "{}",
        wav.sample_rate
    );
    // About a second of speech plus the VAD's hangover and pre-roll, not the whole stream.
    let secs = wav.pcm.len() as f64 / 2.0 / f64::from(wav.sample_rate);
    assert!((0.9..1.6).contains(&secs), "{secs} s uploaded");
}

#[tokio::test]
async fn groq_transcribes_a_mulaw_client_cut_by_the_vad() {
    let fake = OpenAiFake::start("test-key").await;
    let yaml = format!(
        "plugins:\n  stt:\n    groq: {{ api_key: groq-test-key, base_url: \"{}\" }}\n{VAD}",
        fake.groq_base_url()
    );
    let result = rest_final("groq", yaml, "mulaw", 8_000, "whisper-large-v3", |f| {
        pcm16(f).map(mulaw_encode).collect()
    })
    .await;
    let text = result["transcript"].as_str().unwrap();
    assert!(text.starts_with("alpha bravo"), "{result}");
    let reqs = fake.transcriptions();
    assert_eq!(reqs.len(), 1, "one utterance, one request");
    let r = &reqs[0];
    assert_eq!(r.request.path(), "/openai/v1/audio/transcriptions");
    assert_eq!(
        r.request.header("authorization"),
        Some("Bearer groq-test-key")
    );
    assert_eq!(r.field("model").as_deref(), Some("whisper-large-v3"));
    assert_eq!(r.field("response_format").as_deref(), Some("verbose_json"));
    assert_eq!(r.text, text);
    // Mu-law decoded once by the core to PCM16 at the client's 8 kHz.
    let wav = r.wav.as_ref().expect("a WAV upload");
    assert_eq!((wav.format, wav.bits, wav.sample_rate), (1, 16, 8_000));
}

/// A minimal h2c gRPC server for `google.cloud.speech.v2.Speech/StreamingRecognize`: it answers
/// every call with response headers, a final result (`hello from google`) per
/// `utterance_bytes` of audio and one for the rest at the half-close, then `grpc-status: 0`.
/// Request headers are not decoded (HPACK); request messages are (protobuf, by hand).
mod h2c {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// What the server's transcripts say.
    pub const TEXT: &str = "hello from google";

    /// What the server received, over all calls.
    #[derive(Debug, Default, Clone)]
    pub struct Seen {
        /// Calls (HEADERS frames opening a stream).
        pub calls: usize,
        /// `recognizer` of each call's first message.
        pub recognizers: Vec<String>,
        /// `(encoding, sample_rate_hertz, audio_channel_count)` of each call's explicit
        /// decoding config.
        pub decoding: Vec<(u64, u64, u64)>,
        /// Audio bytes, concatenated.
        pub audio: Vec<u8>,
        /// Finals sent.
        pub finals: usize,
    }

    /// The running server; stops when dropped.
    pub struct Server {
        pub url: String,
        pub seen: Arc<Mutex<Seen>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub async fn start(utterance_bytes: usize) -> Server {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, s, utterance_bytes).await;
                });
            }
        });
        Server { url, seen, task }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field_bytes(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// A `StreamingRecognizeResponse` with one final result, as a gRPC message.
    fn final_message() -> Vec<u8> {
        let mut alt = Vec::new();
        field_bytes(1, TEXT.as_bytes(), &mut alt); // transcript
        varint(2 << 3 | 5, &mut alt); // confidence (float)
        alt.extend_from_slice(&0.9f32.to_le_bytes());
        let mut result = Vec::new();
        field_bytes(1, &alt, &mut result); // alternatives
        varint(2 << 3, &mut result); // is_final
        varint(1, &mut result);
        field_bytes(6, b"en-us", &mut result); // language_code
        let mut resp = Vec::new();
        field_bytes(6, &result, &mut resp); // results
        let mut m = vec![0];
        m.extend_from_slice(&(resp.len() as u32).to_be_bytes());
        m.extend_from_slice(&resp);
        m
    }

    /// Top-level fields of a protobuf message: (number, varint value or bytes).
    fn fields(mut b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        fn read_varint(b: &mut &[u8]) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&x, rest) = b.split_first()?;
                *b = rest;
                v |= u64::from(x & 0x7f) << shift;
                if x & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        let mut out = Vec::new();
        while let Some(key) = read_varint(&mut b) {
            let num = key >> 3;
            match key & 7 {
                0 => match read_varint(&mut b) {
                    Some(v) => out.push((num, v, Vec::new())),
                    None => break,
                },
                2 => {
                    let Some(n) = read_varint(&mut b) else { break };
                    let Some((v, rest)) = b.split_at_checked(n as usize) else {
                        break;
                    };
                    out.push((num, 0, v.to_vec()));
                    b = rest;
                }
                5 if b.len() >= 4 => b = &b[4..],
                1 if b.len() >= 8 => b = &b[8..],
                _ => break,
            }
        }
        out
    }

    fn record(msg: &[u8], seen: &Mutex<Seen>) -> usize {
        let mut seen = seen.lock().unwrap();
        let mut audio = 0;
        for (num, _, bytes) in fields(msg) {
            match num {
                3 => seen
                    .recognizers
                    .push(String::from_utf8_lossy(&bytes).into_owned()),
                5 => {
                    audio += bytes.len();
                    seen.audio.extend_from_slice(&bytes);
                }
                // streaming_config → config (1) → explicit_decoding_config (8).
                6 => {
                    let explicit = fields(&bytes)
                        .into_iter()
                        .filter(|f| f.0 == 1)
                        .flat_map(|f| fields(&f.2))
                        .find(|f| f.0 == 8);
                    if let Some((_, _, d)) = explicit {
                        let get = |n| fields(&d).iter().find(|f| f.0 == n).map_or(0, |f| f.1);
                        seen.decoding.push((get(1), get(2), get(3)));
                    }
                }
                _ => {}
            }
        }
        audio
    }

    #[derive(Default)]
    struct Call {
        buf: Vec<u8>,
        pending: usize,
    }

    async fn serve(mut sock: TcpStream, seen: Arc<Mutex<Seen>>, per: usize) -> std::io::Result<()> {
        let mut preface = [0u8; 24];
        sock.read_exact(&mut preface).await?;
        sock.write_all(&frame(4, 0, 0, &[])).await?; // our SETTINGS (defaults)
        let mut calls: HashMap<u32, Call> = HashMap::new();
        loop {
            let mut head = [0u8; 9];
            sock.read_exact(&mut head).await?;
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            sock.read_exact(&mut payload).await?;
            let mut out = Vec::new();
            match kind {
                // SETTINGS: acknowledge.
                4 if flags & 1 == 0 => out.extend(frame(4, 1, 0, &[])),
                // PING: answer.
                6 if flags & 1 == 0 => out.extend(frame(6, 1, 0, &payload)),
                // GOAWAY.
                7 => return Ok(()),
                // HEADERS: a new call; answer with `:status 200` (static index 8) and
                // `content-type: application/grpc` (literal, indexed name 31).
                1 => {
                    calls.insert(stream, Call::default());
                    seen.lock().unwrap().calls += 1;
                    let mut block = vec![0x88, 0x0f, 0x10, 16];
                    block.extend_from_slice(b"application/grpc");
                    out.extend(frame(1, 0x4, stream, &block));
                }
                // DATA: gRPC messages; give the flow-control credit back.
                0 => {
                    let data = if flags & 0x8 != 0 && !payload.is_empty() {
                        let pad = usize::from(payload[0]);
                        payload[1..payload.len().saturating_sub(pad)].to_vec()
                    } else {
                        payload.clone()
                    };
                    if len > 0 {
                        let inc = (len as u32).to_be_bytes();
                        out.extend(frame(8, 0, 0, &inc));
                        out.extend(frame(8, 0, stream, &inc));
                    }
                    let end = flags & 0x1 != 0;
                    if let Some(call) = calls.get_mut(&stream) {
                        call.buf.extend_from_slice(&data);
                        while call.buf.len() >= 5 {
                            let n = u32::from_be_bytes([
                                call.buf[1],
                                call.buf[2],
                                call.buf[3],
                                call.buf[4],
                            ]) as usize;
                            if call.buf.len() < 5 + n {
                                break;
                            }
                            let msg: Vec<u8> = call.buf.drain(..5 + n).skip(5).collect();
                            call.pending += record(&msg, &seen);
                            if call.pending >= per {
                                call.pending = 0;
                                seen.lock().unwrap().finals += 1;
                                out.extend(frame(0, 0, stream, &final_message()));
                            }
                        }
                        if end {
                            if call.pending > 0 {
                                seen.lock().unwrap().finals += 1;
                                out.extend(frame(0, 0, stream, &final_message()));
                            }
                            // Trailers: `grpc-status: 0` (literal, new name), END_STREAM.
                            let mut block = vec![0x00, 11];
                            block.extend_from_slice(b"grpc-status");
                            block.extend_from_slice(&[1, b'0']);
                            out.extend(frame(1, 0x4 | 0x1, stream, &block));
                            calls.remove(&stream);
                        }
                    }
                }
                _ => {}
            }
            if !out.is_empty() {
                sock.write_all(&out).await?;
            }
        }
    }
}

#[tokio::test]
async fn google_transcribes_a_mulaw_client_passed_through_over_grpc() {
    // One final per second of 8 kHz mu-law.
    let fake = h2c::start(8_000).await;
    let server = TestServer::start(&format!(
        "plugins:\n  stt:\n    google: {{ api_key: AIzaTestKey-123, project_id: proj, endpoint: \"{}\" }}\n",
        fake.url
    ))
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(stt("google", "mulaw", 8000, "")).await;
    let mut sent = Vec::new();
    for frame in utterance(1_200, 400, 8_000) {
        let bytes: Vec<u8> = pcm16(&frame).map(mulaw_encode).collect();
        sent.extend_from_slice(&bytes);
        c.send_binary(bytes).await;
    }
    let result = first_final(&mut c).await;
    assert_eq!(result["provider"], "google", "{result}");
    assert_eq!(result["transcript"], h2c::TEXT, "{result}");
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.calls, 1, "{seen:?}");
    assert_eq!(
        seen.recognizers,
        ["projects/proj/locations/global/recognizers/_"]
    );
    // Mu-law at 8 kHz is something Google takes: it reaches the vendor untouched.
    assert_eq!(seen.decoding, [(2, 8_000, 1)], "MULAW, 8000 Hz, mono");
    assert!(seen.audio.len() >= 8_000, "{} bytes", seen.audio.len());
    assert!(
        sent.starts_with(&seen.audio),
        "the audio is the client's bytes"
    );
}
