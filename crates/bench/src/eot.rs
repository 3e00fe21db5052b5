//! The end-of-turn phase: Piper-spoken sentences streamed in real time through `/ws` into the
//! local STT behind a `[vad, turn_detect]` pre-STT pipeline, then silence; per utterance, speech
//! start → first interim, end of speech → first final, end of speech → `is_speech_final`, and
//! the words heard (so a sentence cut in two shows).
//!
//! The fixtures are made at the start by the gateway itself (`speak` with its `local` TTS at
//! 16 kHz). Speech start and end are where the fixture first and last exceeds −40 dBFS; times
//! are measured against a real-time clock on which sample `k` is spoken at `k / 16` ms and the
//! 20 ms frame holding it is sent once it is complete, as a microphone would.

use crate::load::connect;
use crate::stats::Distribution;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Sentences of about 1–2.3 s as Piper speaks them; some with a comma pause inside, which must
/// not cut them in two.
pub const SENTENCES: &[&str] = &[
    "Hello, how are you today?",
    "Please book a table for two.",
    "What time does the store open?",
    "I would like to check my balance.",
    "Can you call me back tomorrow?",
    "Turn off the lights in the kitchen.",
    "Well, I am not sure about that.",
    "My flight leaves at nine.",
    "Send the report to my manager.",
    "Yes, that sounds good to me.",
];

const RATE: u32 = 16_000;
const FRAME_MS: u64 = 20;
const FRAME_BYTES: usize = (RATE as usize / 1000) * FRAME_MS as usize * 2;
/// Silence streamed before each sentence.
const LEAD_IN_MS: u64 = 400;
/// Silence streamed after each sentence (at least 1.5 s, so the silence timers can fire too).
const TAIL_MS: u64 = 2_500;
/// −40 dBFS: the speech boundary in a fixture.
const SPEECH_LEVEL: i32 = 328;

/// One utterance's figures (ms; `None`: never arrived).
#[derive(Debug, Clone, Serialize)]
pub struct Utterance {
    /// The sentence spoken.
    pub sentence: String,
    /// Speech length in the fixture, ms.
    pub speech_ms: u64,
    /// Speech start → first non-empty interim.
    pub first_interim_ms: Option<f64>,
    /// End of speech → first non-empty final (negative: a final before the end, a cut).
    pub first_final_ms: Option<f64>,
    /// End of speech → first `is_speech_final` (negative: the turn ended mid-sentence).
    pub speech_final_ms: Option<f64>,
    /// Non-empty finals received.
    pub finals: usize,
    /// `is_speech_final` results received.
    pub turn_ends: usize,
    /// The finals' texts, joined.
    pub text: String,
    /// Share of the sentence's words in `text`, in order.
    pub word_match: f64,
}

/// The phase's results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EotReport {
    /// Each utterance.
    pub utterances: Vec<Utterance>,
    /// Speech start → first interim.
    pub first_interim: Distribution,
    /// End of speech → first final (utterances whose first final came after the end).
    pub first_final: Distribution,
    /// End of speech → `is_speech_final`.
    pub speech_final: Distribution,
    /// Utterances cut: more than one final, or a final or end of turn before the speech ended.
    pub cut: usize,
    /// Utterances with no final or no end of turn at all.
    pub missing: usize,
}

/// The gateway configuration the phase runs against (models from `WAAV_MODELS_DIR`).
/// `vad_min_silence_ms` is the pipeline VAD's `min_silence_ms`: its `SpeechEnded` is when
/// `turn_detect` scores the pause.
pub fn gateway_yaml(vad_min_silence_ms: u64) -> String {
    format!(
        "session: {{ end_of_turn_ms: 1800 }}\n\
         plugins:\n  stt: {{ local: {{}} }}\n  tts: {{ local: {{}} }}\n  \
         processors:\n    vad: {{ type: vad, config: {{ min_silence_ms: {vad_min_silence_ms} }} }}\n    \
         turn: {{ type: turn_detect }}\n  \
         pipelines: {{ default_stt_pre: [vad, turn] }}\n"
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn configure(ws: &mut Ws, config: serde_json::Value) -> Result<(), String> {
    ws.send(Message::text(config.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => Ok(()),
        other => Err(format!("no ready: {other:?}")),
    }
}

/// Speaks each sentence with the gateway's `local` TTS at 16 kHz; PCM16 bytes per sentence.
pub async fn fixtures(url: &str, sentences: &[&str]) -> Result<Vec<Vec<u8>>, String> {
    let mut ws = connect(url).await?;
    let tts = serde_json::json!({"type":"config","tts_config":{"provider":"local","model":"",
        "audio_format":"linear16","sample_rate":RATE}});
    configure(&mut ws, tts).await?;
    let mut out = Vec::new();
    for text in sentences {
        ws.send(Message::text(
            serde_json::json!({"type":"speak","text":text}).to_string(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        let mut audio = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => audio.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(t)))) if t.contains("tts_playback_complete") => break,
                Ok(Some(Ok(Message::Text(t)))) => return Err(format!("unexpected: {t}")),
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("speaking {text:?}: {other:?}")),
            }
        }
        out.push(audio);
    }
    let _ = ws.send(Message::Close(None)).await;
    Ok(out)
}

/// First and last sample (index) above −40 dBFS in PCM16 little-endian audio.
pub fn speech_bounds(pcm: &[u8]) -> Option<(usize, usize)> {
    let loud = |c: &[u8]| i32::from(i16::from_le_bytes([c[0], c[1]])).abs() >= SPEECH_LEVEL;
    let first = pcm.chunks_exact(2).position(loud)?;
    let last = pcm.chunks_exact(2).rposition(loud)?;
    Some((first, last + 1))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Share of `expected`'s words found in order in `got` (LCS over words).
pub fn word_match(expected: &str, got: &str) -> f64 {
    let (a, b) = (words(expected), words(got));
    if a.is_empty() {
        return 1.0;
    }
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..a.len() {
        for j in 0..b.len() {
            lcs[i + 1][j + 1] = if a[i] == b[j] {
                lcs[i][j] + 1
            } else {
                lcs[i][j + 1].max(lcs[i + 1][j])
            };
        }
    }
    lcs[a.len()][b.len()] as f64 / a.len() as f64
}

/// Streams one fixture through a new local-STT session and times what comes back.
async fn one(url: &str, sentence: &str, pcm: &[u8]) -> Result<Utterance, String> {
    let (start, end) = speech_bounds(pcm).ok_or("the fixture is silent")?;
    let mut ws = connect(url).await?;
    let stt = serde_json::json!({"type":"config","stt_config":{"provider":"local",
        "language":"en-US","sample_rate":RATE,"channels":1,"encoding":"linear16","punctuation":true,
        "model":"whisper-tiny.en"}});
    configure(&mut ws, stt).await?;
    let lead = (RATE as u64 * LEAD_IN_MS / 1000) as usize * 2;
    let tail = (RATE as u64 * TAIL_MS / 1000) as usize * 2;
    let mut stream = vec![0u8; lead];
    stream.extend_from_slice(pcm);
    stream.resize(stream.len() + tail, 0);
    let at_ms = |sample: usize| (lead / 2 + sample) as f64 * 1000.0 / f64::from(RATE);
    let (speech_start, speech_end) = (at_ms(start), at_ms(end));

    let t0 = Instant::now();
    let since = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let mut frames = stream.chunks(FRAME_BYTES).enumerate();
    let mut next_send = t0 + Duration::from_millis(FRAME_MS);
    let mut sending = true;
    let (mut first_interim, mut first_final, mut speech_final) = (None, None, None);
    let (mut finals, mut turn_ends, mut text) = (0, 0, String::new());
    let stream_ms = stream.len() as f64 * 1000.0 / f64::from(RATE) / 2.0;
    // After the stream: wait for the end of turn (or give up 5 s later).
    let deadline = t0 + Duration::from_secs_f64(stream_ms / 1000.0 + 5.0);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_send), if sending => {
                match frames.next() {
                    Some((i, f)) => {
                        ws.send(Message::binary(f.to_vec())).await.map_err(|e| e.to_string())?;
                        next_send = t0 + Duration::from_millis(FRAME_MS * (i as u64 + 2));
                    }
                    None => sending = false,
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
            msg = ws.next() => {
                let now = since(Instant::now());
                let t = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    other => return Err(format!("socket: {other:?}")),
                };
                let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("stt_result") => {}
                    Some("speech_event") => continue,
                    Some("error") => return Err(format!("gateway error: {t}")),
                    _ => continue,
                }
                let words = v["transcript"].as_str().unwrap_or("").trim().to_owned();
                if v["is_final"] == true && !words.is_empty() {
                    finals += 1;
                    first_final.get_or_insert(now - speech_end);
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(&words);
                } else if v["is_final"] != true && !words.is_empty() {
                    first_interim.get_or_insert(now - speech_start);
                }
                if v["is_speech_final"] == true {
                    turn_ends += 1;
                    speech_final.get_or_insert(now - speech_end);
                    if !sending {
                        break;
                    }
                }
            }
        }
    }
    let _ = ws.send(Message::Close(None)).await;
    Ok(Utterance {
        sentence: sentence.to_owned(),
        speech_ms: ((end - start) as u64 * 1000) / u64::from(RATE),
        first_interim_ms: first_interim,
        first_final_ms: first_final,
        speech_final_ms: speech_final,
        finals,
        turn_ends,
        word_match: word_match(sentence, &text),
        text,
    })
}

/// Runs `n` utterances (the sentences in turn), one session each, one after another.
pub async fn run(url: &str, n: usize) -> Result<EotReport, String> {
    let count = n.min(SENTENCES.len()).max(1);
    let audio = fixtures(url, &SENTENCES[..count]).await?;
    let mut report = EotReport::default();
    let ns = |ms: f64| (ms.max(0.0) * 1e6) as u64;
    let (mut interims, mut finals, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let k = i % count;
        let u = one(url, SENTENCES[k], &audio[k]).await?;
        eprintln!(
            "eot {i:>3}: {:>5} ms speech, interim {:>7}, final {:>7}, turn end {:>7}, {} final(s): {:?}",
            u.speech_ms,
            fmt(u.first_interim_ms),
            fmt(u.first_final_ms),
            fmt(u.speech_final_ms),
            u.finals,
            u.text
        );
        let cut = u.finals > 1
            || u.turn_ends > 1
            || u.first_final_ms.is_some_and(|v| v < 0.0)
            || u.speech_final_ms.is_some_and(|v| v < 0.0);
        report.cut += usize::from(cut);
        report.missing += usize::from(u.first_final_ms.is_none() || u.speech_final_ms.is_none());
        interims.extend(u.first_interim_ms.map(ns));
        finals.extend(u.first_final_ms.filter(|v| *v >= 0.0).map(ns));
        ends.extend(u.speech_final_ms.filter(|v| *v >= 0.0).map(ns));
        report.utterances.push(u);
    }
    report.first_interim = Distribution::from_ns(interims);
    report.first_final = Distribution::from_ns(finals);
    report.speech_final = Distribution::from_ns(ends);
    Ok(report)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| format!("{v:.0} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_words() {
        let mut pcm = vec![0u8; 200];
        pcm.extend(1000i16.to_le_bytes());
        pcm.extend([0u8; 10]);
        pcm.extend((-2000i16).to_le_bytes());
        pcm.extend(vec![0u8; 100]);
        assert_eq!(speech_bounds(&pcm), Some((100, 107)));
        assert_eq!(speech_bounds(&[0u8; 64]), None);
        assert_eq!(word_match("Hello, how are you?", "hello how are you"), 1.0);
        assert_eq!(word_match("one two three four", "one three"), 0.5);
        assert!(gateway_yaml(150).contains("min_silence_ms: 150"));
    }
}
