//! Provider secrets never leak: the real `waav-gateway` binary runs as a child process with
//! distinctive credentials for every cloud provider (some in the YAML file, some in the
//! plugins' credential environment variables, some sent by the client per session), its logs
//! at `debug` (and `trace` for the WaaV crates) captured from stdout and stderr. Every provider
//! is driven once through `/ws` (`stt_config` / `tts_config`), `POST /speak` and, for the two
//! realtime plugins, `/realtime`: against vendor fakes on 127.0.0.1 that accept the key (the
//! success path) and, through a second named instance and through a client-supplied key, that
//! refuse it (401/403: the error path). Then `/plugins`, `/` (the health check), `/health/plugins`,
//! `/metrics` and `/voices` are read, the process is stopped, and no secret (nor its base64 or
//! URL-encoded form, nor the AWS secret access key and session token, nor the Google
//! service-account private key) may appear in the logs, in any message the client received or
//! in any HTTP response.
//!
//! Google has no fake this crate can link (its gRPC fake lives in the provider's tests and
//! needs tonic's server features and the googleapis crates, which are not dev-dependencies
//! here): it is driven against a token endpoint that refuses the service account's JWT
//! (`400 invalid_grant`) and a gRPC endpoint that drops every connection, so only its error
//! paths run.
#![cfg(feature = "cloud")]

#[allow(dead_code)]
#[path = "../../gateway/tests/common/ws.rs"]
mod ws;

#[allow(dead_code)]
#[path = "../../providers/google/tests/fake/key.rs"]
mod google_key;

use serde_json::{json, Value};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use waav_testkit::fakes;
use ws::{Frame, WsClient};

/// The secret of `vendor` (and an optional role: `denied`, `client`, …), distinctive enough to
/// grep for.
fn key(vendor: &str) -> String {
    format!("sk-LEAKCHECK-{vendor}-7f3a9c")
}

// AWS: access key ids are identifiers (not secrets); the secret access keys and session tokens
// carry characters that URL-encoding changes, so their encoded forms are checked too.
const REGION: &str = "eu-west-1";
const AKID_TRANSCRIBE: &str = "AKIALEAKCHECKTRANS01";
const SECRET_TRANSCRIBE: &str = "LEAKCHECK/transcribe+Secret/7f3a9cABCDEFG";
const TOKEN_TRANSCRIBE: &str = "FwoLEAKCHECK//transcribe+token/7f3a9c==";
const AKID_POLLY: &str = "AKIALEAKCHECKPOLLY01";
const SECRET_POLLY: &str = "LEAKCHECK/polly+Secret/7f3a9cABCDEFGHIJKLM";
const TOKEN_POLLY: &str = "FwoLEAKCHECK//polly+token/7f3a9c==";
const AKID_DENIED: &str = "AKIALEAKCHECKDENIED1";
const SECRET_DENIED: &str = "LEAKCHECK/denied+Secret/7f3a9cABCDEFGHIJK";
const TOKEN_DENIED: &str = "FwoLEAKCHECK//denied+token/7f3a9c==";
const AKID_CLIENT: &str = "AKIALEAKCHECKCLIENT1";
const SECRET_CLIENT: &str = "LEAKCHECK/client+Secret/7f3a9cABCDEFGHIJK";
const PLAYHT_USER: &str = "leakcheck-user";

/// Every secret the gateway is given, with a label for the report.
fn secrets() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    for vendor in [
        "deepgram",
        "assemblyai",
        "elevenlabs",
        "cartesia",
        "azure",
        "ibm-stt",
        "ibm-tts",
        "ibm",
        "google",
        "openai",
        "groq",
        "hume",
        "hume-tts",
        "lmnt",
        "playht",
    ] {
        for role in ["", "-denied", "-client"] {
            let name = format!("{vendor}{role}");
            v.push((name.clone(), key(&name)));
        }
    }
    for (name, s) in [
        ("aws secret access key (transcribe)", SECRET_TRANSCRIBE),
        ("aws session token (transcribe)", TOKEN_TRANSCRIBE),
        ("aws secret access key (polly)", SECRET_POLLY),
        ("aws session token (polly)", TOKEN_POLLY),
        ("aws secret access key (denied)", SECRET_DENIED),
        ("aws session token (denied)", TOKEN_DENIED),
        ("aws secret access key (client)", SECRET_CLIENT),
    ] {
        v.push((name.to_owned(), s.to_owned()));
    }
    // The service account's private key: every line of the PEM body (a log that quoted the
    // JSON, escaped or not, contains them).
    for (i, line) in google_key::TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .enumerate()
    {
        v.push((format!("google private key line {i}"), line.to_owned()));
    }
    v
}

/// Values derived from the secrets that are credentials too.
fn derived_needles() -> Vec<(String, String)> {
    vec![
        // IBM IAM access tokens the fake issues (`fake-token-<n>`), sent as `?access_token=`.
        ("ibm iam access token".into(), "fake-token-".into()),
        // The start of a service-account JWT assertion (`{"alg":"RS256"` in base64url).
        ("google jwt assertion".into(), "eyJhbGciOiJSUzI1Ni".into()),
    ]
}

const B64_STD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(data: &[u8], alphabet: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The base64 characters that depend on `s` alone, for each of the three alignments it can
/// have inside a longer encoded string (e.g. `Basic base64(user:secret)`).
fn base64_forms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for alphabet in [B64_STD, B64_URL] {
        for k in 0..3usize {
            let mut data = vec![0u8; k];
            data.extend_from_slice(s.as_bytes());
            let enc = base64(&data, alphabet);
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + s.len())) / 6;
            if end > start + 8 {
                out.push(enc[start..end].to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// (label, needle) pairs: each secret as is, URL-encoded (upper- and lower-case hex) and in
/// base64.
fn needles() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (label, s) in secrets() {
        let enc = url_encode(&s);
        if enc != s {
            out.push((format!("{label} (url-encoded)"), enc.clone()));
            out.push((format!("{label} (url-encoded)"), enc.to_lowercase()));
        }
        for b in base64_forms(&s) {
            out.push((format!("{label} (base64)"), b));
        }
        // As a byte dump prints it (matched in either case, as URL-encoding is).
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        out.push((format!("{label} (hex)"), hex));
        out.push((label, s));
    }
    out.extend(derived_needles());
    out
}

/// Where each needle occurs in `text`: `what: label at …context…`.
fn leaks(what: &str, text: &str, needles: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_lowercase();
    for (label, needle) in needles {
        // Hex digits may be either case; everything else is matched exactly.
        let hit = if label.ends_with("(url-encoded)") || label.ends_with("(hex)") {
            lower.find(&needle.to_lowercase())
        } else {
            text.find(needle.as_str())
        };
        if let Some(at) = hit {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            let line: String = text[line_start..line_end].chars().take(600).collect();
            found.push(format!("{what}: {label} in: {line}"));
        }
    }
    found
}

/// Removes ANSI escape sequences (should the subscriber colour its output).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The gateway process; killed if a test panics before stopping it.
struct Gateway {
    child: Option<Child>,
    port: u16,
    logs: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

const CREDENTIAL_ENV: &[&str] = &[
    "DEEPGRAM_API_KEY",
    "ASSEMBLYAI_API_KEY",
    "ELEVENLABS_API_KEY",
    "CARTESIA_API_KEY",
    "AZURE_SPEECH_SUBSCRIPTION_KEY",
    "AZURE_SPEECH_REGION",
    "IBM_STT_API_KEY",
    "IBM_STT_URL",
    "IBM_TTS_API_KEY",
    "IBM_TTS_URL",
    "GOOGLE_API_KEY",
    "GOOGLE_CREDENTIALS_JSON",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "OPENAI_API_KEY",
    "GROQ_API_KEY",
    "HUME_API_KEY",
    "LMNT_API_KEY",
    "PLAYHT_API_KEY",
    "PLAYHT_USER_ID",
    "WAAV_CONFIG",
    "AUTH_REQUIRED",
    "AUTH_API_SECRETS_JSON",
    "HOST",
    "PORT",
    "LOG_FORMAT",
    "METRICS_EXPOSURE",
    "CACHE_PATH",
];

/// The log filter: `trace` everywhere, the most a deployment can ask for (the gateway keeps the
/// WebSocket library's frame dumps at debug then); `WAAV_LEAKCHECK_RUST_LOG` replaces it.
fn rust_log() -> String {
    std::env::var("WAAV_LEAKCHECK_RUST_LOG").unwrap_or_else(|_| "trace".into())
}

impl Gateway {
    fn spawn(config: &std::path::Path, env: &[(&str, String)]) -> Self {
        // A free port (the gateway logs the configured address, not the bound one).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_waav-gateway"));
        cmd.arg("serve")
            .arg("-c")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--log-format", "text"]);
        for v in CREDENTIAL_ENV {
            cmd.env_remove(v);
        }
        cmd.env("RUST_LOG", rust_log())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn waav-gateway");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for mut pipe in [out, err] {
            let logs = logs.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    logs.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        Self {
            child: Some(child),
            port,
            logs,
            readers,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.logs.lock().unwrap()))
    }

    /// Waits (bounded) until the health check (`GET /`) answers.
    async fn ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the gateway exited ({status}) at start-up:\n{}",
                    self.logs()
                );
            }
            if let Ok(Ok(r)) = timeout(Duration::from_secs(2), http.get(self.url("/")).send()).await
            {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not answer GET / within 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (a graceful stop), then a kill if it has not exited within 15 s; returns the
    /// whole log.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.logs()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A stand-in for Google's OAuth2 token endpoint that refuses every grant, as Google does a
/// JWT it cannot verify.
async fn google_token_refuser() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The request head and its body (bounded: a stalled client is dropped).
                let _ = timeout(Duration::from_secs(5), async {
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let text = String::from_utf8_lossy(&buf).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                return;
                            }
                        }
                    }
                })
                .await;
                let body =
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/token"), task)
}

/// A stand-in for Google's gRPC endpoint that drops every connection.
async fn connection_dropper() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    (format!("http://{addr}"), task)
}

/// What a driven session should show.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// The vendor accepts the key: ready, results or audio, no error.
    Works,
    /// The vendor (or its stand-in) refuses: an error reaches the client.
    Fails,
}

/// One driven session: what the client saw.
#[derive(Debug, Default)]
struct Seen {
    label: String,
    /// Every text message and error body the client received.
    texts: Vec<String>,
    ready: bool,
    errors: Vec<String>,
    results: usize,
    audio: usize,
}

fn summary(s: &Seen) -> String {
    format!(
        "{}: ready={} results={} audio={} errors={:?}",
        s.label, s.ready, s.results, s.audio, s.errors
    )
}

/// Reads frames until `stop` says so, an error arrives (when `stop_on_error`) or `within`
/// passes.
async fn read_until(
    c: &mut WsClient,
    seen: &mut Seen,
    within: Duration,
    stop_on_error: bool,
    stop: impl Fn(&Value) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        // Shorter than the helper's own 10 s guard, so this never panics.
        match timeout(left.min(Duration::from_secs(8)), c.recv()).await {
            Err(_) => {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
            }
            Ok(Frame::Json(v)) => {
                seen.texts.push(v.to_string());
                match v["type"].as_str() {
                    Some("ready") => seen.ready = true,
                    Some("stt_result") => seen.results += 1,
                    Some("error") => {
                        seen.errors.push(v.to_string());
                        if stop_on_error {
                            return true;
                        }
                    }
                    _ => {}
                }
                if stop(&v) {
                    return true;
                }
            }
            Ok(Frame::Binary(b)) => seen.audio += b.len(),
            Ok(Frame::Closed(_)) => return false,
        }
    }
}

/// 1.2 s of tone then 0.8 s of silence, as 20 ms PCM16 frames at 16 kHz.
fn speech() -> Vec<Vec<u8>> {
    ws::utterance(1_200, 800, 16_000)
}

async fn stt_session(url: String, provider: &str, client: Option<Value>) -> Seen {
    let mut seen = Seen {
        label: format!(
            "/ws stt {provider}{}",
            client.as_ref().map_or("", |_| " (client key)")
        ),
        ..Seen::default()
    };
    let mut c = WsClient::connect(&url).await;
    let mut stt = ws::stt_config(provider, "", 16_000);
    if let Some(Value::Object(extra)) = client {
        stt.as_object_mut().unwrap().extend(extra);
    }
    c.send_json(json!({"type": "config", "audio": true, "stt_config": stt}))
        .await;
    read_until(&mut c, &mut seen, Duration::from_secs(10), true, |v| {
        v["type"] == "ready"
    })
    .await;
    if seen.ready && seen.errors.is_empty() {
        for f in speech() {
            c.send_binary(f).await;
        }
        // A final, or an error (keys some vendors check only on the first request).
        read_until(&mut c, &mut seen, Duration::from_secs(6), true, |v| {
            v["type"] == "stt_result"
                && v["is_final"] == true
                && v["transcript"].as_str().is_some_and(|t| !t.is_empty())
        })
        .await;
    }
    let _ = c.close_answered_within(Duration::from_secs(2)).await;
    seen
}

async fn tts_session(url: String, provider: &str, client: Option<Value>) -> Seen {
    let mut seen = Seen {
        label: format!(
            "/ws tts {provider}{}",
            client.as_ref().map_or("", |_| " (client key)")
        ),
        ..Seen::default()
    };
    let mut c = WsClient::connect(&url).await;
    let mut tts = ws::tts_config(provider, "");
    if let Some(Value::Object(extra)) = client {
        tts.as_object_mut().unwrap().extend(extra);
    }
    c.send_json(json!({"type": "config", "audio": true, "tts_config": tts}))
        .await;
    read_until(&mut c, &mut seen, Duration::from_secs(10), true, |v| {
        v["type"] == "ready"
    })
    .await;
    if seen.ready && seen.errors.is_empty() {
        c.send_json(json!({"type": "speak", "text": "Checking that no secret leaks."}))
            .await;
        read_until(&mut c, &mut seen, Duration::from_secs(10), true, |v| {
            v["type"] == "tts_playback_complete"
        })
        .await;
    }
    let _ = c.close_answered_within(Duration::from_secs(2)).await;
    seen
}

async fn speak_rest(
    http: reqwest::Client,
    url: String,
    provider: &str,
    client: Option<Value>,
) -> Seen {
    let mut seen = Seen {
        label: format!(
            "/speak {provider}{}",
            client.as_ref().map_or("", |_| " (client key)")
        ),
        ..Seen::default()
    };
    let mut tts = ws::tts_config(provider, "");
    if let Some(Value::Object(extra)) = client {
        tts.as_object_mut().unwrap().extend(extra);
    }
    let sent = timeout(
        Duration::from_secs(15),
        http.post(url)
            .json(&json!({"text": "A short REST request.", "tts_config": tts}))
            .send(),
    )
    .await;
    match sent {
        Ok(Ok(res)) => {
            let status = res.status();
            let headers = format!("{:?}", res.headers());
            let body = timeout(Duration::from_secs(15), res.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            seen.texts.push(headers);
            if status.is_success() {
                seen.ready = true;
                seen.audio = body.len();
            } else {
                let text = String::from_utf8_lossy(&body).into_owned();
                seen.errors.push(format!("{status}: {text}"));
                seen.texts.push(text);
            }
        }
        Ok(Err(e)) => seen.errors.push(format!("request failed: {e}")),
        Err(_) => seen.errors.push("no answer within 15 s".into()),
    }
    seen
}

async fn realtime_session(url: String, provider: &str) -> Seen {
    let mut seen = Seen {
        label: format!("/realtime {provider}"),
        ..Seen::default()
    };
    let mut c = WsClient::connect(&url).await;
    c.send_json(json!({"type": "config", "provider": provider}))
        .await;
    read_until(&mut c, &mut seen, Duration::from_secs(10), true, |v| {
        v["type"] == "session_created"
    })
    .await;
    if seen.errors.is_empty() && seen.texts.iter().any(|t| t.contains("session_created")) {
        seen.ready = true;
        c.send_json(json!({"type": "text", "text": "Hello there."}))
            .await;
        read_until(&mut c, &mut seen, Duration::from_secs(4), true, |v| {
            v["type"] == "response_done"
        })
        .await;
    }
    let _ = c.close_answered_within(Duration::from_secs(2)).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_secret_reaches_logs_or_clients() {
    use fakes::assemblyai::{AssemblyAiFake, AssemblyAiOptions};
    use fakes::aws::polly::{PollyFake, PollyFakeOptions};
    use fakes::aws::transcribe::{TranscribeFake, TranscribeFakeOptions};
    use fakes::aws::FakeCredentials;
    use fakes::azure::{AzureFake, AzureFakeConfig};
    use fakes::cartesia_stt::{CartesiaSttFake, CartesiaSttOptions};
    use fakes::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttOptions};
    use fakes::hume_evi::{HumeEviFake, HumeEviOptions};

    let test_started = Instant::now();

    // The vendors' fakes, each accepting only its default instance's key.
    let dg_stt = fakes::deepgram::DeepgramFake::start(key("deepgram")).await;
    let dg_tts = fakes::deepgram::DeepgramTtsFake::start(key("deepgram")).await;
    let aai = AssemblyAiFake::start(AssemblyAiOptions {
        api_key: key("assemblyai"),
        eot_after_ms: Some(600),
        ..AssemblyAiOptions::default()
    })
    .await;
    let el_stt = ElevenLabsSttFake::start(ElevenLabsSttOptions {
        api_key: key("elevenlabs"),
        ..ElevenLabsSttOptions::default()
    })
    .await;
    let el_tts = fakes::elevenlabs::ElevenLabsFake::start(fakes::elevenlabs::FakeOptions::new(
        key("elevenlabs"),
    ))
    .await;
    let ca_stt = CartesiaSttFake::start(CartesiaSttOptions {
        api_key: key("cartesia"),
        ..CartesiaSttOptions::default()
    })
    .await;
    let ca_tts = fakes::cartesia::CartesiaFake::start(key("cartesia")).await;
    let az_stt = AzureFake::start(AzureFakeConfig {
        key: key("azure"),
        ..AzureFakeConfig::default()
    })
    .await;
    let az_tts = fakes::azure_tts::AzureTtsFake::start(key("azure")).await;
    let ibm_stt = fakes::ibm::IbmFake::start(key("ibm-stt")).await;
    let ibm_tts = fakes::ibm::IbmFake::start(key("ibm-tts")).await;
    let oa = fakes::openai::OpenAiFake::with_options(
        fakes::openai::FakeOptions::new(key("openai")).groq_key(key("groq")),
    )
    .await;
    let oa_rt = fakes::openai_realtime::OpenAiRealtimeFake::start(
        fakes::openai_realtime::FakeOptions::new(key("openai")),
    )
    .await;
    let hume_tts =
        fakes::hume::HumeFake::start(fakes::hume::FakeOptions::new(key("hume-tts"))).await;
    let hume_evi = HumeEviFake::start(HumeEviOptions {
        api_key: key("hume"),
        ..HumeEviOptions::default()
    })
    .await;
    let lmnt = fakes::lmnt::LmntFake::start(fakes::lmnt::FakeOptions::new(key("lmnt"))).await;
    let playht = fakes::playht::PlayHtFake::start(fakes::playht::FakeOptions::new(
        key("playht"),
        PLAYHT_USER,
    ))
    .await;
    let transcribe = TranscribeFake::start(TranscribeFakeOptions::new(
        FakeCredentials::new(AKID_TRANSCRIBE, REGION).with_token(TOKEN_TRANSCRIBE),
    ))
    .await;
    let polly = PollyFake::start(PollyFakeOptions::new(
        FakeCredentials::new(AKID_POLLY, REGION).with_token(TOKEN_POLLY),
    ))
    .await;
    let (google_token, _token_task) = google_token_refuser().await;
    let (google_grpc, _grpc_task) = connection_dropper().await;
    let service_account = json!({
        "type": "service_account",
        "project_id": "leakcheck-project",
        "private_key_id": "leakcheck-key-id",
        "private_key": google_key::TEST_KEY_PEM,
        "client_email": "leakcheck@leakcheck-project.iam.gserviceaccount.com",
        "token_uri": google_token,
    })
    .to_string();

    // Credentials given through the environment (the default instances').
    let env: Vec<(&str, String)> = vec![
        ("DEEPGRAM_API_KEY", key("deepgram")),
        ("ELEVENLABS_API_KEY", key("elevenlabs")),
        ("AZURE_SPEECH_SUBSCRIPTION_KEY", key("azure")),
        ("IBM_STT_API_KEY", key("ibm-stt")),
        ("IBM_STT_URL", ibm_stt.instance_url()),
        ("GOOGLE_API_KEY", key("google")),
        ("AWS_ACCESS_KEY_ID", AKID_TRANSCRIBE.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_TRANSCRIBE.into()),
        ("AWS_SESSION_TOKEN", TOKEN_TRANSCRIBE.into()),
        ("AWS_REGION", REGION.into()),
        ("OPENAI_API_KEY", key("openai")),
        ("HUME_API_KEY", key("hume")),
        ("LMNT_API_KEY", key("lmnt")),
        ("PLAYHT_USER_ID", PLAYHT_USER.into()),
    ];
    let denied = |name: &str| key(&format!("{name}-denied"));
    let aws_denied = |endpoint: String| {
        json!({"endpoint": endpoint, "access_key_id": AKID_DENIED,
               "secret_access_key": SECRET_DENIED, "session_token": TOKEN_DENIED, "region": REGION})
    };
    let mut polly_denied = aws_denied(polly.base_url());
    polly_denied["plugin"] = json!("aws-polly");
    // The rest in the file (JSON is YAML). Each `<id>-denied` instance points at the same fake
    // with a key the fake refuses.
    let config = json!({
        "server": {"metrics": "open"},
        "session": {"provider_connect_timeout_secs": 5},
        "plugins": {
            "stt": {
                "local": {"enabled": false},
                "deepgram": {"base_url": dg_stt.base_url()},
                "deepgram-denied": {"plugin": "deepgram", "base_url": dg_stt.base_url(), "api_key": denied("deepgram")},
                "assemblyai": {"base_url": aai.base_url(), "token_url": aai.token_url(), "api_key": key("assemblyai"), "format_turns": false},
                "assemblyai-denied": {"plugin": "assemblyai", "base_url": aai.base_url(), "token_url": aai.token_url(), "api_key": denied("assemblyai"), "format_turns": false},
                "elevenlabs": {"base_url": el_stt.base_url()},
                "elevenlabs-denied": {"plugin": "elevenlabs", "base_url": el_stt.base_url(), "api_key": denied("elevenlabs")},
                "cartesia": {"base_url": ca_stt.base_url(), "api_key": key("cartesia")},
                "cartesia-denied": {"plugin": "cartesia", "base_url": ca_stt.base_url(), "api_key": denied("cartesia")},
                "microsoft-azure": {"base_url": az_stt.base_url()},
                "microsoft-azure-denied": {"plugin": "microsoft-azure", "base_url": az_stt.base_url(), "api_key": denied("azure")},
                "ibm-watson": {"iam_url": ibm_stt.iam_url()},
                "ibm-watson-denied": {"plugin": "ibm-watson", "iam_url": ibm_stt.iam_url(), "url": ibm_stt.instance_url(), "api_key": denied("ibm")},
                "google": {"endpoint": google_grpc, "token_url": google_token, "credentials_json": service_account},
                "google-denied": {"plugin": "google", "endpoint": google_grpc, "project_id": "leakcheck-project", "api_key": denied("google")},
                "aws-transcribe": {"endpoint": transcribe.base_url()},
                "aws-transcribe-denied": {"plugin": "aws-transcribe", "endpoint": transcribe.base_url(), "access_key_id": AKID_DENIED, "secret_access_key": SECRET_DENIED, "session_token": TOKEN_DENIED, "region": REGION},
                // The transcriptions APIs get one request per second of audio (no VAD here).
                "openai": {"base_url": oa.base_url(), "max_utterance_ms": 1000},
                "openai-denied": {"plugin": "openai", "base_url": oa.base_url(), "api_key": denied("openai"), "max_utterance_ms": 1000},
                "groq": {"base_url": oa.groq_base_url(), "api_key": key("groq"), "max_utterance_ms": 1000},
                "groq-denied": {"plugin": "groq", "base_url": oa.groq_base_url(), "api_key": denied("groq"), "max_utterance_ms": 1000},
            },
            "tts": {
                "local": {"enabled": false},
                "espeak": {"enabled": false},
                "deepgram": {"base_url": dg_tts.base_url()},
                "deepgram-denied": {"plugin": "deepgram", "base_url": dg_tts.base_url(), "api_key": denied("deepgram")},
                "elevenlabs": {"base_url": el_tts.base_url()},
                "elevenlabs-denied": {"plugin": "elevenlabs", "base_url": el_tts.base_url(), "api_key": denied("elevenlabs")},
                "cartesia": {"base_url": ca_tts.base_url(), "api_key": key("cartesia")},
                "cartesia-denied": {"plugin": "cartesia", "base_url": ca_tts.base_url(), "api_key": denied("cartesia")},
                "microsoft-azure": {"base_url": az_tts.base_url()},
                "microsoft-azure-denied": {"plugin": "microsoft-azure", "base_url": az_tts.base_url(), "api_key": denied("azure")},
                "ibm-watson": {"iam_url": ibm_tts.iam_url(), "url": ibm_tts.instance_url(), "api_key": key("ibm-tts")},
                "ibm-watson-denied": {"plugin": "ibm-watson", "iam_url": ibm_tts.iam_url(), "url": ibm_tts.instance_url(), "api_key": denied("ibm")},
                "google": {"endpoint": google_grpc, "token_url": google_token, "credentials_json": service_account},
                "google-denied": {"plugin": "google", "endpoint": google_grpc, "api_key": denied("google")},
                "aws-polly": {"endpoint": polly.base_url(), "access_key_id": AKID_POLLY, "secret_access_key": SECRET_POLLY, "session_token": TOKEN_POLLY, "region": REGION},
                "aws-polly-denied": polly_denied,
                "openai": {"base_url": oa.base_url()},
                "openai-denied": {"plugin": "openai", "base_url": oa.base_url(), "api_key": denied("openai")},
                "hume": {"base_url": hume_tts.base_url(), "api_key": key("hume-tts")},
                "hume-denied": {"plugin": "hume", "base_url": hume_tts.base_url(), "api_key": denied("hume")},
                "lmnt": {"base_url": lmnt.base_url()},
                "lmnt-denied": {"plugin": "lmnt", "base_url": lmnt.base_url(), "api_key": denied("lmnt")},
                "playht": {"base_url": playht.base_url(), "api_key": key("playht")},
                "playht-denied": {"plugin": "playht", "base_url": playht.base_url(), "api_key": denied("playht"), "user_id": PLAYHT_USER},
            },
            "realtime": {
                "openai": {"base_url": oa_rt.base_url()},
                "openai-denied": {"plugin": "openai", "base_url": oa_rt.base_url(), "api_key": denied("openai")},
                "hume": {"base_url": hume_evi.base_url()},
                "hume-denied": {"plugin": "hume", "base_url": hume_evi.base_url(), "api_key": denied("hume")},
            },
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    let http = reqwest::Client::new();
    let mut gw = Gateway::spawn(&file, &env);
    gw.ready(&http).await;

    // (instance, expectation, the client-supplied credentials of a third session, if any).
    let client_key = |name: &str| Some(json!({"api_key": key(&format!("{name}-client"))}));
    let aws_client = Some(json!({"credentials": {
        "access_key_id": AKID_CLIENT, "secret_access_key": SECRET_CLIENT}}));
    let stt: Vec<(&str, Expect, Option<Value>)> = vec![
        ("deepgram", Expect::Works, client_key("deepgram")),
        ("deepgram-denied", Expect::Fails, None),
        ("assemblyai", Expect::Works, client_key("assemblyai")),
        ("assemblyai-denied", Expect::Fails, None),
        ("elevenlabs", Expect::Works, client_key("elevenlabs")),
        ("elevenlabs-denied", Expect::Fails, None),
        ("cartesia", Expect::Works, client_key("cartesia")),
        ("cartesia-denied", Expect::Fails, None),
        ("microsoft-azure", Expect::Works, client_key("azure")),
        ("microsoft-azure-denied", Expect::Fails, None),
        ("ibm-watson", Expect::Works, client_key("ibm")),
        ("ibm-watson-denied", Expect::Fails, None),
        ("google", Expect::Fails, client_key("google")),
        ("google-denied", Expect::Fails, None),
        ("aws-transcribe", Expect::Works, aws_client.clone()),
        ("aws-transcribe-denied", Expect::Fails, None),
        ("openai", Expect::Works, client_key("openai")),
        ("openai-denied", Expect::Fails, None),
        ("groq", Expect::Works, client_key("groq")),
        ("groq-denied", Expect::Fails, None),
    ];
    let tts: Vec<(&str, Expect, Option<Value>)> = vec![
        ("deepgram", Expect::Works, client_key("deepgram")),
        ("deepgram-denied", Expect::Fails, None),
        ("elevenlabs", Expect::Works, client_key("elevenlabs")),
        ("elevenlabs-denied", Expect::Fails, None),
        ("cartesia", Expect::Works, client_key("cartesia")),
        ("cartesia-denied", Expect::Fails, None),
        ("microsoft-azure", Expect::Works, client_key("azure")),
        ("microsoft-azure-denied", Expect::Fails, None),
        ("ibm-watson", Expect::Works, client_key("ibm")),
        ("ibm-watson-denied", Expect::Fails, None),
        ("google", Expect::Fails, client_key("google")),
        ("google-denied", Expect::Fails, None),
        ("aws-polly", Expect::Works, aws_client),
        ("aws-polly-denied", Expect::Fails, None),
        ("openai", Expect::Works, client_key("openai")),
        ("openai-denied", Expect::Fails, None),
        ("hume", Expect::Works, client_key("hume")),
        ("hume-denied", Expect::Fails, None),
        ("lmnt", Expect::Works, client_key("lmnt")),
        ("lmnt-denied", Expect::Fails, None),
        ("playht", Expect::Works, client_key("playht")),
        ("playht-denied", Expect::Fails, None),
    ];
    let realtime: Vec<(&str, Expect)> = vec![
        ("openai", Expect::Works),
        ("openai-denied", Expect::Fails),
        ("hume", Expect::Works),
        ("hume-denied", Expect::Fails),
    ];

    // Every session at once (each is bounded by its own timeouts).
    type Run = std::pin::Pin<Box<dyn std::future::Future<Output = (Expect, Seen)> + Send>>;
    let mut runs: Vec<Run> = Vec::new();
    for (id, expect, client) in &stt {
        let (id, expect) = (id.to_string(), *expect);
        let (url, id2) = (gw.ws_url("/ws"), id.clone());
        runs.push(Box::pin(async move {
            (expect, stt_session(url, &id2, None).await)
        }));
        if let Some(client) = client.clone() {
            let url = gw.ws_url("/ws");
            runs.push(Box::pin(async move {
                (Expect::Fails, stt_session(url, &id, Some(client)).await)
            }));
        }
    }
    for (id, expect, client) in &tts {
        let (id, expect) = (id.to_string(), *expect);
        let (url, id2) = (gw.ws_url("/ws"), id.clone());
        runs.push(Box::pin(async move {
            (expect, tts_session(url, &id2, None).await)
        }));
        let (url, h, id2) = (gw.url("/speak"), http.clone(), id.clone());
        runs.push(Box::pin(async move {
            (expect, speak_rest(h, url, &id2, None).await)
        }));
        if let Some(client) = client.clone() {
            let (url, id2, c2) = (gw.ws_url("/ws"), id.clone(), client.clone());
            runs.push(Box::pin(async move {
                (Expect::Fails, tts_session(url, &id2, Some(c2)).await)
            }));
            let (url, h) = (gw.url("/speak"), http.clone());
            runs.push(Box::pin(async move {
                (Expect::Fails, speak_rest(h, url, &id, Some(client)).await)
            }));
        }
    }
    for (id, expect) in &realtime {
        let (id, expect) = (id.to_string(), *expect);
        let url = gw.ws_url("/realtime");
        runs.push(Box::pin(async move {
            (expect, realtime_session(url, &id).await)
        }));
    }
    let seen = timeout(Duration::from_secs(40), futures::future::join_all(runs))
        .await
        .expect("the sessions finished within 40 s");

    // The read-only endpoints, after the sessions (health and breakers have seen the failures).
    let mut responses: Vec<(String, String, String)> = Vec::new();
    for path in ["/plugins", "/", "/health/plugins", "/metrics", "/voices"] {
        let res = timeout(Duration::from_secs(15), http.get(gw.url(path)).send())
            .await
            .unwrap_or_else(|_| panic!("GET {path} within 15 s"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let head = format!("{} {:?}", res.status(), res.headers());
        let body = timeout(Duration::from_secs(15), res.text())
            .await
            .unwrap_or_else(|_| panic!("GET {path} body within 15 s"))
            .unwrap();
        responses.push((path.to_owned(), head, body));
    }

    let logs = gw.stop();

    // The one-shot subcommands read the same file and environment: `check-config` prints the
    // effective configuration "with secrets masked", `plugins` the table.
    for args in [&["check-config"][..], &["plugins", "-c"][..]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_waav-gateway"));
        cmd.args(args).arg(&file);
        for v in CREDENTIAL_ENV {
            cmd.env_remove(v);
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run waav-gateway");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "waav-gateway {args:?}: {text}");
        assert!(text.contains("aws-polly"), "waav-gateway {args:?}: {text}");
        responses.push((
            format!("waav-gateway {}", args.join(" ")),
            String::new(),
            text,
        ));
    }
    // For a person investigating a failure: the whole log, written where they ask.
    if let Some(path) = std::env::var_os("WAAV_LEAKCHECK_LOG") {
        std::fs::write(path, &logs).unwrap();
    }

    // The test ran what it claims to: the secrets were loaded (the vendors accepted them), the
    // error paths ran, and the logs are the gateway's, at debug level, about these providers.
    let mut problems: Vec<String> = Vec::new();
    for (expect, s) in &seen {
        match expect {
            Expect::Works => {
                let ok = s.ready
                    && s.errors.is_empty()
                    && if s.label.contains(" tts ") || s.label.starts_with("/speak") {
                        s.audio > 0
                    } else {
                        true
                    };
                if !ok {
                    problems.push(format!("expected to work: {}", summary(s)));
                }
            }
            Expect::Fails => {
                if s.errors.is_empty() {
                    problems.push(format!("expected an error: {}", summary(s)));
                }
            }
        }
    }
    let plugins: Value = serde_json::from_str(&responses[0].2).expect("/plugins is JSON");
    for (kind, id) in [
        ("stt", "deepgram"),
        ("stt", "assemblyai"),
        ("stt", "aws-transcribe"),
        ("stt", "google"),
        ("tts", "aws-polly"),
        ("tts", "playht"),
        ("realtime", "hume"),
    ] {
        let entry = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == kind && p["id"] == id)
            .unwrap_or_else(|| panic!("{kind} {id} in /plugins"));
        assert!(
            entry["credentials"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["secret"] == true && c["configured"] == true),
            "{kind} {id}: a secret credential is configured: {entry}"
        );
    }
    assert!(!logs.trim().is_empty(), "no log output captured");
    assert!(
        logs.contains("WaaV Gateway listening"),
        "not the gateway's log:\n{logs}"
    );
    assert!(
        logs.contains("DEBUG") || logs.contains("TRACE"),
        "debug logging is not on"
    );
    // Every instance is registered at start-up...
    for id in [
        "deepgram",
        "assemblyai",
        "elevenlabs",
        "cartesia",
        "microsoft-azure",
        "ibm-watson",
        "google",
        "aws-transcribe",
        "aws-polly",
        "openai",
        "groq",
        "hume",
        "lmnt",
        "playht",
    ] {
        for instance in [id.to_owned(), format!("{id}-denied")] {
            if !logs.contains(&format!("plugin ready plugin=\"{instance}\"")) {
                problems.push(format!("the logs never say {instance} is ready"));
            }
        }
    }
    // ...and every vendor is logged about again once the sessions run (the providers' own
    // debug lines, the gateway's warnings about failed sessions and voice listings).
    let after_start = logs
        .split_once("WaaV Gateway listening")
        .map_or("", |(_, rest)| rest)
        .to_lowercase();
    for vendor in [
        "deepgram",
        "assemblyai",
        "elevenlabs",
        "cartesia",
        "azure",
        "ibm",
        "google",
        "transcribe",
        "polly",
        "openai",
        "groq",
        "hume",
        "lmnt",
        "playht",
    ] {
        if !after_start.contains(vendor) {
            problems.push(format!("no log line about {vendor} after start-up"));
        }
    }

    // The point of the test: no secret anywhere.
    let needles = needles();
    let mut leaked = leaks("logs", &logs, &needles);
    for (_, s) in &seen {
        for t in &s.texts {
            leaked.extend(leaks(&format!("client ({})", s.label), t, &needles));
        }
        for e in &s.errors {
            leaked.extend(leaks(&format!("client error ({})", s.label), e, &needles));
        }
    }
    for (path, head, body) in &responses {
        leaked.extend(leaks(&format!("GET {path} (headers)"), head, &needles));
        leaked.extend(leaks(&format!("GET {path}"), body, &needles));
    }
    leaked.sort();
    leaked.dedup();

    let report: Vec<String> = seen.iter().map(|(_, s)| summary(s)).collect();
    eprintln!(
        "{} sessions in {:.1} s, {} bytes of logs\n{}",
        seen.len(),
        test_started.elapsed().as_secs_f64(),
        logs.len(),
        report.join("\n")
    );
    assert!(
        leaked.is_empty(),
        "secrets leaked ({}):\n{}",
        leaked.len(),
        leaked.join("\n")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The detector finds what the main test looks for: a secret as is, inside base64 at any
/// alignment (`Basic base64(user:secret)`), URL-encoded in either case, and a PEM line.
#[test]
fn the_leak_detector_finds_encoded_secrets() {
    let needles = needles();
    let secret = key("deepgram-denied");
    for prefix in ["", "u:", "us:", "use:"] {
        let basic = base64(format!("{prefix}{secret}").as_bytes(), B64_STD);
        assert!(
            !leaks("t", &format!("authorization: Basic {basic}="), &needles).is_empty(),
            "{prefix}"
        );
        let url_safe = base64(format!("{prefix}{secret}").as_bytes(), B64_URL);
        assert!(!leaks("t", &url_safe, &needles).is_empty(), "{prefix}");
    }
    let encoded = url_encode(TOKEN_TRANSCRIBE);
    assert_ne!(encoded, TOKEN_TRANSCRIBE);
    for text in [
        format!("GET /stream?X-Amz-Security-Token={encoded}&x=1"),
        format!("token={}", encoded.to_lowercase()),
        format!("error=bad key {secret}"),
        format!(
            "json {}",
            serde_json::to_string(google_key::TEST_KEY_PEM).unwrap()
        ),
    ] {
        assert!(!leaks("t", &text, &needles).is_empty(), "{text}");
    }
    let hex: String = format!("{{\"api_key\":\"{secret}\"}}")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(!leaks("t", &format!("payload: 0x{hex}"), &needles).is_empty());
    assert!(leaks("t", "deepgram: handshake: HTTP 401 Unauthorized", &needles).is_empty());
    assert_eq!(
        base64(b"any carnal pleas", B64_STD),
        "YW55IGNhcm5hbCBwbGVhcw"
    );
}
