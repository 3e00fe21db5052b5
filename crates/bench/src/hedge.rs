//! Hedged TTS first byte: `speak` → first audio frame at the client, with one slow provider,
//! hedging off and on, through a real gateway (`waav-bench-gateway`, the testkit's loopback
//! providers linked) over real sockets, one session at a time.
//!
//! Each run is a new session (only a session's first cache-miss request races) whose provider is
//! the loopback with `latency_ms` drawn from a fixed pattern: every `slow_every`-th session waits
//! `slow_ms` before its first byte, the others `fast_ms` (the "one slow fake": a vendor with a
//! slow tail). Its chain is `loopback:tone-c5` (a fallback is opened with its default model: no
//! added latency), so the hedge partner is a healthy in-process provider and the "on" figures are
//! the gateway's hedging path plus the partner, not a cloud vendor's first byte.
//!
//! Modes, the same pattern each: `off` (`hedge: false`), `on` (the hedge starts at once,
//! `tts_hedge_delay_ms: 0`) and `delayed` (it starts only past `delay_ms` without a first byte).
//! Every wait is bounded; a run without audio is counted as a failure, not a sample.

use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How the slow provider behaves.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pattern {
    /// First-byte delay of most sessions' provider (ms).
    pub fast_ms: u64,
    /// First-byte delay of every `slow_every`-th session's provider (ms).
    pub slow_ms: u64,
    /// One session in this many is slow.
    pub slow_every: usize,
}

impl Pattern {
    /// The provider's `latency_ms` in run `i`.
    pub fn latency_ms(&self, i: usize) -> u64 {
        if self.slow_every > 0 && i % self.slow_every == self.slow_every - 1 {
            self.slow_ms
        } else {
            self.fast_ms
        }
    }
}

/// The gateway config for a hedge start `delay_ms` after the request.
pub fn gateway_yaml(delay_ms: u64) -> String {
    format!(
        "resilience: {{ tts_hedge_delay_ms: {delay_ms}, tts_first_byte_ms: 10000, breaker_failures: 10000 }}\n"
    )
}

/// One mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// `off`, `on` or `delayed`.
    pub mode: &'static str,
    /// The gateway's `tts_hedge_delay_ms`.
    pub delay_ms: u64,
    /// `speak` → first audio frame.
    pub first_byte: Distribution,
    /// Runs whose audio came from the hedge partner (a `provider_switched`).
    pub switched: usize,
    /// Runs without audio within the guard.
    pub failures: usize,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const GUARD: Duration = Duration::from_secs(15);

async fn next_frame(s: &mut Socket) -> Option<Message> {
    match tokio::time::timeout(GUARD, s.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

/// One run: `speak` → first binary frame, and whether the partner served it. `text` is unique
/// to the run, so it is never a cache hit.
async fn once(url: &str, latency_ms: u64, hedge: bool, text: &str) -> Option<(Duration, bool)> {
    let (mut s, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let tts = json!({"provider":"loopback","model":format!("latency_ms={latency_ms}"),
        "audio_format":"linear16","sample_rate":16000,"fallback":["loopback:tone-c5"],
        "hedge":hedge});
    s.send(Message::text(
        json!({"type":"config","tts_config":tts}).to_string(),
    ))
    .await
    .ok()?;
    loop {
        let Message::Text(t) = next_frame(&mut s).await? else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        if v["type"] == "ready" {
            break;
        }
        if v["type"] == "error" {
            return None;
        }
    }
    let speak = json!({"type":"speak","text":text});
    s.send(Message::text(speak.to_string())).await.ok()?;
    let t0 = Instant::now();
    let mut switched = false;
    let mut took = None;
    while let Some(m) = next_frame(&mut s).await {
        match m {
            Message::Binary(_) => {
                took = Some(t0.elapsed());
                break;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("provider_switched") => switched = true,
                    Some("error" | "tts_playback_complete") => break,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let _ = s.close(None).await;
    took.map(|d| (d, switched))
}

/// Measures `runs` sessions of `pattern` against the gateway at `url` (`/ws`), whose
/// `tts_hedge_delay_ms` is `delay_ms`; `hedge` sets the sessions' `tts_config.hedge`.
pub async fn measure(
    url: &str,
    mode: &'static str,
    hedge: bool,
    delay_ms: u64,
    runs: usize,
    pattern: Pattern,
) -> ModeReport {
    let mut samples = Vec::with_capacity(runs);
    let (mut failures, mut switched) = (0, 0);
    let nonce = std::process::id();
    for i in 0..runs {
        let text = format!("the first sentence of session {i} ({mode}, run {nonce})");
        match once(url, pattern.latency_ms(i), hedge, &text).await {
            Some((d, sw)) => {
                samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                switched += usize::from(sw);
            }
            None => failures += 1,
        }
    }
    ModeReport {
        mode,
        delay_ms,
        first_byte: Distribution::from_ns(samples),
        switched,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_session_is_slow() {
        let p = Pattern {
            fast_ms: 20,
            slow_ms: 400,
            slow_every: 10,
        };
        let slow = (0..100).filter(|&i| p.latency_ms(i) == 400).count();
        assert_eq!(slow, 10);
        assert_eq!(p.latency_ms(9), 400);
        assert_eq!(p.latency_ms(0), 20);
    }
}
