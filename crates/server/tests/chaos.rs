//! A bounded chaos run: many sessions over several seconds, each with a provider config picked
//! at random (seeded; the seed is printed and `WAAV_CHAOS_SEED` replays one) with or without a
//! fault and with or without a chain, streaming audio and speaking. Every session must end in
//! a defined state (transcripts and audio, or documented error codes), and afterwards the
//! gateway holds no connection slot, its tasks are back to where they were, memory has not run
//! away and `/` answers.
#![cfg(all(feature = "deepgram", feature = "cloud"))]

#[path = "../../gateway/tests/common/mod.rs"]
mod common;

use common::ws::{utterance, Frame, WsClient};
use common::TestServer;
use serde_json::json;
use std::time::Duration;
use waav_deepgram as _;
use waav_testkit::fakes::deepgram::{DeepgramFake, FakeOptions, Fault};

const KEY: &str = "dg-chaos-key";
const SESSIONS: usize = 48;
/// Sessions start spread over this long.
const SPREAD: Duration = Duration::from_secs(12);
/// The error codes a session may end with: each is a documented provider outcome.
const DEFINED: &[&str] = &[
    "provider_unavailable",
    "provider_panicked",
    "provider_stalled",
    "provider_timeout",
    "provider_circuit_open",
];
/// Memory the run may leave behind (a leak per session would be far more).
const RSS_SLACK_KB: u64 = 300 * 1024;

/// xorshift64*: deterministic from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }

    fn chance(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// STT choices: (provider, model, fallback).
const STT: &[(&str, &str, &str)] = &[
    ("loopback", "", "loopback"),
    ("loopback", "fault=panic,after=3", "loopback"),
    ("loopback", "fault=fatal,after=2", "loopback"),
    ("loopback", "fault=stall,after=3", "loopback"),
    ("deepgram", "nova-3", "deepgram-backup"),
    ("deepgram-flaky", "nova-3", "deepgram-backup"),
    ("deepgram-down", "nova-3", "deepgram-backup"),
];
/// TTS choices: (provider, model, fallback).
const TTS: &[(&str, &str, &str)] = &[
    ("loopback", "", "loopback:tone-c5"),
    ("loopback", "fault=panic", "loopback:tone-c5"),
    ("loopback", "fault=mute", "loopback:tone-c5"),
    ("loopback", "amplitude=0", "loopback:tone-c5"),
    ("loopback", "latency_ms=3000", "loopback:tone-c5"),
];

/// How one session ended.
#[derive(Debug, Default)]
struct End {
    finals: usize,
    stt_error: bool,
    tts_done: bool,
    tts_errors: usize,
    codes: Vec<String>,
    switched: usize,
}

async fn session(
    url: String,
    stt: (&str, &str, &str),
    tts: (&str, &str, &str),
    chain: bool,
) -> End {
    let mut s = json!({"provider": stt.0, "language": "en-US", "sample_rate": 16000, "channels": 1, "punctuation": true,
        "encoding": "linear16", "model": stt.1});
    let mut t = json!({"provider": tts.0, "model": tts.1, "audio_format": "linear16", "sample_rate": 16000});
    if chain {
        s["fallback"] = json!([stt.2]);
        t["fallback"] = json!([tts.2]);
    }
    let mut c = WsClient::connect(&url).await;
    c.send_json(json!({"type":"config","stt_config":s,"tts_config":t}))
        .await;
    let mut end = End::default();
    let first = tokio::time::timeout(Duration::from_secs(10), c.json())
        .await
        .expect("config answered");
    if first["type"] == "error" {
        // Refused at connect (a down vendor without a chain, an open circuit): defined.
        end.codes
            .push(first["code"].as_str().unwrap_or("").to_owned());
        end.stt_error = true;
        end.tts_errors = 1;
        return end;
    }
    assert_eq!(first["type"], "ready", "{first}");
    c.send_json(json!({"type":"speak","text":"chaos is a ladder"}))
        .await;
    for _ in 0..2 {
        for f in utterance(400, 500, 16_000) {
            c.send_binary(f).await;
        }
    }
    // Read until quiet (every provider outcome is bounded by its watchdog or stall limit).
    loop {
        match tokio::time::timeout(Duration::from_secs(4), c.recv()).await {
            Err(_) => break,
            Ok(Frame::Closed(code)) => panic!("the gateway closed a session ({code:?})"),
            Ok(Frame::Binary(_)) => {}
            Ok(Frame::Json(v)) => match v["type"].as_str() {
                Some("stt_result")
                    if v["is_final"] == true
                        && v["transcript"].as_str().is_some_and(|t| !t.is_empty()) =>
                {
                    end.finals += 1;
                }
                Some("tts_playback_complete") => end.tts_done = true,
                Some("provider_switched") => end.switched += 1,
                Some("error") => {
                    let msg = v["message"].as_str().unwrap_or("");
                    if msg.starts_with("TTS") {
                        end.tts_errors += 1;
                    } else {
                        end.stt_error = true;
                    }
                    end.codes.push(v["code"].as_str().unwrap_or("").to_owned());
                }
                _ => {}
            },
        }
    }
    assert!(
        c.close_answered_within(Duration::from_secs(5)).await,
        "close answered"
    );
    end
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_with_random_faults_end_defined_and_leak_nothing() {
    let seed = std::env::var("WAAV_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("chaos seed {seed} (WAAV_CHAOS_SEED={seed} replays it)");
    let healthy = DeepgramFake::start(KEY).await;
    let flaky = DeepgramFake::with_options(
        FakeOptions::new(KEY).fault(Fault::Disconnect { after_audio: 30 }),
    )
    .await;
    let down = DeepgramFake::with_options(FakeOptions::new(KEY).fault(Fault::Reject {
        status: 503,
        retry_after: None,
        reason: "down".into(),
    }))
    .await;
    let backup = DeepgramFake::start(KEY).await;
    let server = TestServer::start(&format!(
        "session: {{ provider_stall_ms: 500 }}\n\
         resilience: {{ tts_first_byte_ms: 500, breaker_failures: 5, breaker_open_secs: 2 }}\n\
         plugins:\n  stt:\n    \
         deepgram: {{ api_key: {KEY}, base_url: \"{}\" }}\n    \
         deepgram-flaky: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n    \
         deepgram-down: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n    \
         deepgram-backup: {{ plugin: deepgram, api_key: {KEY}, base_url: \"{}\" }}\n",
        healthy.base_url(),
        flaky.base_url(),
        down.base_url(),
        backup.base_url()
    ))
    .await;
    let tasks_before = alive_tasks();
    let rss_before = rss_kb();
    let mut rng = Rng(seed);
    let mut runs = Vec::new();
    for i in 0..SESSIONS {
        let stt = *rng.pick(STT);
        let tts = *rng.pick(TTS);
        let chain = rng.chance();
        let url = server.ws_url("/ws");
        let delay = SPREAD * i as u32 / SESSIONS as u32;
        let plan = format!("#{i}: stt {stt:?} tts {tts:?} chain {chain}");
        runs.push((
            plan,
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                session(url, stt, tts, chain).await
            }),
        ));
    }
    let mut switched = 0;
    let mut failed = 0;
    for (plan, run) in runs {
        let end = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("{plan}: did not end"))
            .unwrap_or_else(|e| panic!("{plan}: {e}"));
        for code in &end.codes {
            assert!(
                DEFINED.contains(&code.as_str()),
                "{plan}: undocumented end {code}: {end:?}"
            );
        }
        // STT: transcripts, or an error saying why not; TTS likewise.
        assert!(
            end.finals > 0 || end.stt_error,
            "{plan}: no transcript and no error: {end:?}"
        );
        assert!(
            end.tts_done || end.tts_errors > 0,
            "{plan}: no audio end and no error: {end:?}"
        );
        switched += end.switched;
        failed += usize::from(!end.codes.is_empty());
    }
    println!(
        "chaos: {SESSIONS} sessions, {switched} provider switches, {failed} sessions with errors"
    );
    // Nothing left behind: slots, tasks, memory; the gateway still answers.
    let limiter = &server.gateway.state().limiter;
    for _ in 0..250 {
        if limiter.active() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limiter.active(), 0, "connection slots still held");
    let mut tasks = alive_tasks();
    for _ in 0..100 {
        if tasks <= tasks_before + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        tasks = alive_tasks();
    }
    assert!(
        tasks <= tasks_before + 4,
        "tasks {tasks_before} before, {tasks} after"
    );
    let grown = rss_kb().saturating_sub(rss_before);
    assert!(grown < RSS_SLACK_KB, "memory grew by {grown} KiB");
    let res = tokio::time::timeout(Duration::from_secs(2), reqwest::get(server.url("/")))
        .await
        .expect("GET / answers")
        .expect("GET / succeeds");
    assert_eq!(res.status(), 200);
}
