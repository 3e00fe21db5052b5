//! Hedged TTS first byte in real `/ws` sessions: the first cache-miss request also goes to the
//! next provider of the session's chain, the first to send audio keeps the session, and the
//! other's audio never reaches the client.
//!
//! The providers are instances of `hedge-tone`, registered here: the testkit's loopback TTS with
//! its knobs (`latency_ms=…`, `fault=…`) taken from the instance's `knobs` setting (a fallback is
//! opened with an empty model, so per-session knobs would not reach it), counting the requests
//! each instance is asked to speak. The primary speaks the loopback's A4 tone (440 Hz), the
//! partner `…:tone-c5` (523 Hz): every audio frame is told apart by its zero crossings. Every
//! test uses instance names of its own (metrics and counters are process-wide).

mod common;

use common::ws::{Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    AudioSink, Capabilities, Plugin, PluginError, PluginInfo, SpeakRequest, TtsPlugin,
    TtsSessionConfig,
};
use waav_testkit::LoopbackTts;

/// Requests spoken per instance (by config path, `plugins.tts.<instance>`).
fn requests() -> &'static Mutex<HashMap<String, usize>> {
    static R: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn requests_of(instance: &str) -> usize {
    let r = requests().lock().unwrap();
    r.iter()
        .filter(|(path, _)| path.rsplit('.').next() == Some(instance))
        .map(|(_, n)| *n)
        .sum()
}

struct HedgeTone;

impl HedgeTone {
    /// The session's config with the instance's knobs as the model (when it has none).
    fn tuned(config: &TtsSessionConfig) -> Result<TtsSessionConfig, PluginError> {
        let mut c = config.clone();
        if c.model.is_empty() {
            c.model = config.plugin_config.string("knobs")?.unwrap_or_default();
        }
        Ok(c)
    }
}

impl Plugin for HedgeTone {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("hedge-tone", "Hedge tone").description("loopback TTS, knobs per instance")
    }

    fn capabilities(&self) -> Capabilities {
        LoopbackTts.capabilities()
    }
}

#[async_trait::async_trait]
impl TtsPlugin for HedgeTone {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        LoopbackTts.prepare(&Self::tuned(config)?).await
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        *requests()
            .lock()
            .unwrap()
            .entry(config.plugin_config.path().to_owned())
            .or_default() += 1;
        LoopbackTts
            .synthesize(&Self::tuned(config)?, request, out)
            .await
    }
}

waav_plugin_api::register_plugin!(Tts, HedgeTone);

/// Long enough for many 20 ms frames.
const TEXT: &str = "this sentence is spoken by whichever provider answers first";
const SLOW: &str = "latency_ms=1500";

/// A gateway with `hedge-tone` instances `(name, knobs)` and `resilience` YAML (a map body).
async fn server(instances: &[(&str, &str)], resilience: &str) -> TestServer {
    let mut yaml = format!("resilience: {{ {resilience} }}\nplugins:\n  tts:\n");
    for (name, knobs) in instances {
        yaml.push_str(&format!(
            "    {name}: {{ plugin: hedge-tone, knobs: \"{knobs}\" }}\n"
        ));
    }
    TestServer::start(&yaml).await
}

fn tts(provider: &str, fallback: &[&str], hedge: Option<bool>) -> Value {
    let mut c = json!({"provider": provider, "model": "", "audio_format": "linear16", "sample_rate": 16000});
    if !fallback.is_empty() {
        c["fallback"] = json!(fallback);
    }
    if let Some(h) = hedge {
        c["hedge"] = json!(h);
    }
    c
}

/// Which tone a frame carries, by zero crossings per sample (A4: 0.055, C5: 0.065 at 16 kHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    A4,
    C5,
}

fn tone_of(frame: &[u8]) -> Option<Tone> {
    let s = waav_testkit::audio::from_le_bytes(frame);
    if s.len() < 160 {
        return None;
    }
    let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let per_sample = crossings as f64 / (s.len() - 1) as f64;
    Some(if per_sample < 0.060 {
        Tone::A4
    } else {
        Tone::C5
    })
}

/// What one `speak` gave: the tones of its audio frames and the JSON messages, up to
/// `tts_playback_complete`.
#[derive(Debug, Default)]
struct Spoken {
    tones: Vec<Tone>,
    messages: Vec<Value>,
}

impl Spoken {
    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.messages.iter().filter(|v| v["type"] == ty).collect()
    }

    fn only(&self, tone: Tone) -> bool {
        !self.tones.is_empty() && self.tones.iter().all(|t| *t == tone)
    }
}

async fn speak(c: &mut WsClient, text: &str) -> Spoken {
    c.send_json(json!({"type":"speak","text":text})).await;
    let mut spoken = Spoken::default();
    loop {
        match c.recv().await {
            Frame::Binary(b) => spoken.tones.extend(tone_of(&b)),
            Frame::Json(v) => {
                let done = v["type"] == "tts_playback_complete";
                spoken.messages.push(v);
                if done {
                    return spoken;
                }
            }
            Frame::Closed(code) => panic!("closed ({code:?}): {spoken:?}"),
        }
    }
}

/// `waav_tts_hedges_total` for `provider` and `outcome` (0 when absent).
async fn hedges(server: &TestServer, provider: &str, outcome: &str) -> u64 {
    let text = server.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("waav_tts_hedges_total{"))
        .filter(|l| {
            l.contains(&format!("provider=\"{provider}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Waits (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let guard = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < guard,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slow_provider_loses_to_its_hedge_which_then_keeps_the_session() {
    let server = server(&[("slow-1", SLOW), ("fast-1", "")], "").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","tts_config": tts("slow-1", &["fast-1:tone-c5"], Some(true))}),
    )
    .await;
    let first = speak(&mut c, TEXT).await;
    assert!(first.only(Tone::C5), "the hedge's audio only: {first:?}");
    let switched = first.of_type("provider_switched");
    assert_eq!(switched.len(), 1, "{first:?}");
    assert_eq!(switched[0]["role"], "tts");
    assert_eq!(switched[0]["from"], "slow-1");
    assert_eq!(switched[0]["to"], "fast-1");
    assert_eq!(switched[0]["reason"], "hedge");
    assert!(first.of_type("error").is_empty(), "{first:?}");
    // Later requests come from the winner alone: no race, no switch, no request to the loser.
    let second = speak(&mut c, "and this one comes from the winner").await;
    assert!(second.only(Tone::C5), "{second:?}");
    assert!(second.of_type("provider_switched").is_empty(), "{second:?}");
    assert_eq!(requests_of("slow-1"), 1);
    assert_eq!(requests_of("fast-1"), 2);
    assert_eq!(hedges(&server, "fast-1", "won").await, 1);
    assert_eq!(hedges(&server, "slow-1", "lost").await, 1);
    assert_eq!(hedges(&server, "slow-1", "won").await, 0);
}

#[tokio::test]
async fn a_fast_provider_keeps_the_session_and_its_slow_hedge_is_dropped() {
    let server = server(&[("fast-2", ""), ("slow-2", SLOW)], "").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","tts_config": tts("fast-2", &["slow-2:tone-c5"], Some(true))}),
    )
    .await;
    let first = speak(&mut c, TEXT).await;
    assert!(first.only(Tone::A4), "the provider's audio only: {first:?}");
    assert!(first.of_type("provider_switched").is_empty(), "{first:?}");
    let second = speak(&mut c, "and again from the same provider").await;
    assert!(second.only(Tone::A4), "{second:?}");
    // The hedge started (delay 0) and lost; only the first request raced.
    assert_eq!(requests_of("slow-2"), 1);
    assert_eq!(requests_of("fast-2"), 2);
    assert_eq!(hedges(&server, "fast-2", "won").await, 1);
    assert_eq!(hedges(&server, "slow-2", "lost").await, 1);
}

#[tokio::test]
async fn a_provider_that_fails_before_any_audio_leaves_the_request_to_its_hedge() {
    let server = server(&[("broken-3", "fault=error"), ("fast-3", "")], "").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(
        json!({"type":"config","tts_config": tts("broken-3", &["fast-3:tone-c5"], Some(true))}),
    )
    .await;
    let first = speak(&mut c, TEXT).await;
    assert!(first.only(Tone::C5), "{first:?}");
    assert!(first.of_type("error").is_empty(), "{first:?}");
    let switched = first.of_type("provider_switched");
    assert_eq!(switched.len(), 1, "{first:?}");
    assert_eq!(
        (switched[0]["from"].as_str(), switched[0]["to"].as_str()),
        (Some("broken-3"), Some("fast-3"))
    );
    let second = speak(&mut c, "the winner speaks this too").await;
    assert!(second.only(Tone::C5), "{second:?}");
    assert!(second.of_type("error").is_empty(), "{second:?}");
    assert_eq!(requests_of("broken-3"), 1);
    assert_eq!(hedges(&server, "fast-3", "won").await, 1);
    assert_eq!(hedges(&server, "broken-3", "lost").await, 1);
}

#[tokio::test]
async fn when_both_sides_fail_the_request_fails_as_without_a_hedge() {
    let server = server(
        &[
            ("broken-6a", "fault=error"),
            ("broken-6b", "fault=error"),
            ("broken-6c", "fault=error"),
            ("broken-6d", "fault=error"),
        ],
        "",
    )
    .await;
    let run = async |primary: &str, fallback: &str, hedge: bool| {
        let mut c = WsClient::connect(&server.ws_url("/ws")).await;
        c.configure(json!({"type":"config","tts_config": tts(primary, &[fallback], Some(hedge))}))
            .await;
        let spoken = speak(&mut c, TEXT).await;
        c.assert_alive().await;
        spoken
    };
    let reference = run("broken-6c", "broken-6d", false).await;
    let hedged = run("broken-6a", "broken-6b", true).await;
    assert!(hedged.tones.is_empty(), "{hedged:?}");
    let kinds = |s: &Spoken| {
        s.messages
            .iter()
            .map(|v| {
                let code = v["code"].as_str().unwrap_or("");
                format!("{}{code}", v["type"].as_str().unwrap_or(""))
            })
            .collect::<Vec<_>>()
    };
    // The same messages as the session without a hedge: the chain's failover, then the error.
    assert_eq!(
        kinds(&hedged),
        kinds(&reference),
        "{hedged:?} vs {reference:?}"
    );
    assert_eq!(hedged.of_type("error").len(), 1, "{hedged:?}");
    assert_eq!(requests_of("broken-6a"), 1);
    assert_eq!(hedges(&server, "broken-6a", "won").await, 0);
    assert_eq!(hedges(&server, "broken-6b", "won").await, 0);
}

#[tokio::test]
async fn a_delayed_hedge_never_starts_for_a_provider_that_answers_in_time() {
    // The server default hedges every session (the client does not ask), after 30 s.
    let server = server(
        &[("fast-4", ""), ("spare-4", "")],
        "tts_hedge: true, tts_hedge_delay_ms: 30000",
    )
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config": tts("fast-4", &["spare-4:tone-c5"], None)}))
        .await;
    for text in [TEXT, "a second request, no race either"] {
        let spoken = speak(&mut c, text).await;
        assert!(spoken.only(Tone::A4), "{spoken:?}");
        assert!(spoken.of_type("provider_switched").is_empty(), "{spoken:?}");
    }
    assert_eq!(requests_of("fast-4"), 2);
    assert_eq!(requests_of("spare-4"), 0, "the hedge was never asked");
    assert_eq!(hedges(&server, "fast-4", "won").await, 0);
    assert_eq!(hedges(&server, "spare-4", "lost").await, 0);
}

#[tokio::test]
async fn a_delayed_hedge_starts_for_a_provider_that_does_not_answer_in_time() {
    let server = server(
        &[("slow-7", SLOW), ("fast-7", "")],
        "tts_hedge: true, tts_hedge_delay_ms: 100",
    )
    .await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config": tts("slow-7", &["fast-7:tone-c5"], None)}))
        .await;
    let spoken = speak(&mut c, TEXT).await;
    assert!(spoken.only(Tone::C5), "{spoken:?}");
    assert_eq!(spoken.of_type("provider_switched").len(), 1, "{spoken:?}");
    assert_eq!(requests_of("fast-7"), 1);
    assert_eq!(hedges(&server, "fast-7", "won").await, 1);
    // The loser is measured until its own first byte, then closed: its EWMA is fed.
    let gateway = server.gateway.clone();
    eventually("the loser's first byte measured", || {
        let g = gateway.clone();
        async move {
            g.state()
                .resilience
                .latency(waav_plugin_api::PluginKind::Tts, "slow-7")
                .is_some()
        }
    })
    .await;
}

#[tokio::test]
async fn a_session_without_a_chain_ignores_the_hedge() {
    let server = server(&[("alone-5", "")], "").await;
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    c.configure(json!({"type":"config","tts_config": tts("alone-5", &[], Some(true))}))
        .await;
    let spoken = speak(&mut c, TEXT).await;
    assert!(spoken.only(Tone::A4), "{spoken:?}");
    assert!(spoken.of_type("error").is_empty(), "{spoken:?}");
    assert!(spoken.of_type("provider_switched").is_empty(), "{spoken:?}");
    assert_eq!(requests_of("alone-5"), 1);
    assert_eq!(hedges(&server, "alone-5", "won").await, 0);
}

#[tokio::test]
async fn a_hedge_delay_past_the_cap_is_refused() {
    let env = |_: &str| None;
    let err = waav_gateway::config::GatewayConfig::from_sources(
        Some("resilience: { tts_hedge_delay_ms: 600000 }"),
        &env,
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tts_hedge_delay_ms"), "{err}");
}
