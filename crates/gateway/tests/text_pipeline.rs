//! Text processors in real `/ws` sessions and `POST /speak`: post-STT chains rewrite each
//! transcript before it reaches the client (`redact_pii`), pre-TTS chains rewrite the text the
//! provider speaks (`pronunciations`; the loopback TTS's tone is as long as its text), a session
//! chooses its own chains, a failing processor is disabled for its session only, and the costs
//! reach `/metrics`.
//!
//! The loopback STT's transcripts are fixed (`utterance N: M ms`); the testkit's `text-probe`
//! processor appends chosen words to them so there is something to redact.

mod common;

use common::ws::{stt_config, tts_config, utterance, Frame, WsClient};
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

const LEAK: &str =
    " mail bob@example.com or call 555-234-5678, card 4111 1111 1111 1111, 3 cats in 2024";

fn yaml() -> String {
    format!(
        r#"
plugins:
  processors:
    leak: {{ type: text-probe, config: {{ append: "{LEAK}" }} }}
    pii: {{ type: redact_pii }}
    stars: {{ type: redact_pii, config: {{ kinds: [email], replacement: "***" }} }}
    say: {{ type: pronunciations, config: {{ words: [ {{ word: SQL, pronunciation: sequel server }} ] }} }}
    say_long: {{ type: pronunciations, config: {{ words: [ {{ word: SQL, pronunciation: structured query language }} ] }} }}
    crashy: {{ type: text-probe, config: {{ panic_after: 1, append: " tail" }} }}
    broken: {{ type: text-probe, config: {{ error_after: 0 }} }}
  pipelines:
    default_stt_post: [leak, pii]
    default_tts_pre: [say]
"#
    )
}

async fn server() -> TestServer {
    // The built-in text processors live in waav-processors; make sure it is linked.
    let _ = waav_processors::PROCESSOR_IDS;
    TestServer::start(&yaml()).await
}

/// Speaks one utterance and returns every message up to and including its final result.
async fn one_utterance(c: &mut WsClient) -> Vec<Value> {
    for f in utterance(400, 600, 16_000) {
        c.send_binary(f).await;
    }
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Frame::Json(v)) => {
                let done = v["type"] == "stt_result" && v["is_final"] == true;
                seen.push(v);
                if done {
                    return seen;
                }
            }
            Ok(_) => {}
            Err(_) => panic!("no final result within 10 s; saw {seen:?}"),
        }
    }
}

fn transcripts(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|v| v["type"] == "stt_result")
        .map(|v| v["transcript"].as_str().unwrap().to_owned())
        .collect()
}

async fn stt_session(server: &TestServer, post_pipeline: Option<Value>) -> WsClient {
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut stt = stt_config("loopback", "", 16000);
    if let Some(p) = post_pipeline {
        stt["post_pipeline"] = p;
    }
    c.configure(json!({"type":"config","stt_config":stt})).await;
    c
}

/// Bytes of audio the loopback TTS makes for `text` in a session with `pre_pipeline`.
async fn tts_bytes(server: &TestServer, pre_pipeline: Option<Value>, text: &str) -> usize {
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", "ms_per_char=10");
    if let Some(p) = pre_pipeline {
        tts["pre_pipeline"] = p;
    }
    c.configure(json!({"type":"config","tts_config":tts})).await;
    c.send_json(json!({"type":"speak","text":text})).await;
    c.until("tts_playback_complete").await.1
}

async fn metrics(server: &TestServer) -> String {
    server.metrics().await
}

#[tokio::test]
async fn redact_pii_masks_every_transcript_before_it_reaches_the_client() {
    let server = server().await;
    let mut c = stt_session(&server, None).await;
    let seen = one_utterance(&mut c).await;
    let texts = transcripts(&seen);
    assert!(texts.len() >= 2, "interims and a final: {seen:?}");
    for t in &texts {
        assert!(t.starts_with("utterance 1: "), "{t}");
        assert!(
            t.ends_with(" mail [email] or call [phone], card [card], 3 cats in 2024"),
            "{t}"
        );
    }
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let m = metrics(&server).await;
    for name in ["leak", "pii"] {
        assert!(
            m.contains(&format!(
                "waav_processor_texts_total{{processor=\"{name}\",stage=\"post_stt\"}}"
            )),
            "{m}"
        );
    }
    assert!(
        m.contains("waav_processor_texts_changed_total{processor=\"pii\",stage=\"post_stt\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_session_chooses_its_own_post_stt_chain_or_none() {
    let server = server().await;
    // Its own chain: only e-mail addresses, with its own replacement.
    let mut c = stt_session(&server, Some(json!(["leak", "stars"]))).await;
    for t in transcripts(&one_utterance(&mut c).await) {
        assert!(
            t.ends_with(" mail *** or call 555-234-5678, card 4111 1111 1111 1111, 3 cats in 2024"),
            "{t}"
        );
    }
    // No chain: the provider's text as it came.
    let mut c = stt_session(&server, Some(json!([]))).await;
    for t in transcripts(&one_utterance(&mut c).await) {
        assert!(!t.contains("mail"), "{t}");
        assert!(t.starts_with("utterance 1: "), "{t}");
    }
    // A name that is not configured rejects the config.
    let mut stt = stt_config("loopback", "", 16000);
    stt["post_pipeline"] = json!(["nope"]);
    c.send_json(json!({"type":"config","stt_config":stt})).await;
    let msg = c.expect_error("invalid_config").await;
    assert!(msg.contains("nope"), "{msg}");
    // An audio processor at a text stage, and a text processor at an audio stage, too.
    let mut stt = stt_config("loopback", "", 16000);
    stt["pipeline"] = json!(["pii"]);
    c.send_json(json!({"type":"config","stt_config":stt})).await;
    let msg = c.expect_error("invalid_config").await;
    assert!(msg.contains("pii"), "{msg}");
    // The rejected configs left the working session alone.
    c.assert_alive().await;
}

#[tokio::test]
async fn pronunciations_in_default_tts_pre_change_what_the_provider_speaks() {
    let server = server().await;
    // "SQL and MySQL" is 13 characters, "sequel server and MySQL" 23: at 10 ms per character
    // and 16 kHz PCM16 that is 100 ms (3,200 bytes) more; MySQL is left alone (whole words).
    // The rewritten text is the cache key: the session without the chain, asking for the same
    // text afterwards, is not served the rewritten audio.
    let default = tts_bytes(&server, None, "SQL and MySQL").await;
    let none = tts_bytes(&server, Some(json!([])), "SQL and MySQL").await;
    assert_eq!(default - none, 3_200, "default {default} B, none {none} B");
    // A session's own chain replaces the default: "structured query language and MySQL" is 35.
    let long = tts_bytes(&server, Some(json!(["say_long"])), "SQL and MySQL").await;
    assert_eq!(long - none, 7_040, "say_long {long} B, none {none} B");
    // The client's own tts_config.pronunciations still apply, after the chain.
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", "ms_per_char=10");
    tts["pronunciations"] = json!([{"word":"server","pronunciation":"srv"}]);
    c.configure(json!({"type":"config","tts_config":tts})).await;
    c.send_json(json!({"type":"speak","text":"SQL and MySQL"}))
        .await;
    let both = c.until("tts_playback_complete").await.1;
    assert_eq!(default - both, 960, "sequel srv: 3 characters fewer");
    let m = metrics(&server).await;
    assert!(
        m.contains("waav_processor_texts_total{processor=\"say\",stage=\"pre_tts\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn post_speak_runs_the_pre_tts_chain() {
    let server = server().await;
    let client = reqwest::Client::new();
    let speak = |pre: Option<Value>| {
        let mut tts = json!({"provider":"loopback","model":"ms_per_char=10","sample_rate":16000});
        if let Some(p) = pre {
            tts["pre_pipeline"] = p;
        }
        let req = client
            .post(server.url("/speak"))
            .json(&json!({"text":"SQL and MySQL","tts_config":tts}))
            .send();
        async move {
            let res = req.await.unwrap();
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap().len()
        }
    };
    let default = speak(None).await;
    let none = speak(Some(json!([]))).await;
    assert_eq!(default - none, 3_200, "default {default} B, none {none} B");
    let res = client
        .post(server.url("/speak"))
        .json(&json!({"text":"hi","tts_config":{"provider":"loopback","model":"","pre_pipeline":["nope"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_failing_text_processor_is_disabled_for_its_session_and_text_flows_unprocessed() {
    let server = server().await;
    // crashy rewrites the first text, panics half-way through the second.
    let mut c = stt_session(&server, Some(json!(["leak", "crashy", "pii"]))).await;
    let mut other = stt_session(&server, None).await;
    let seen = one_utterance(&mut c).await;
    let errors: Vec<&Value> = seen.iter().filter(|v| v["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "reported once: {seen:?}");
    assert_eq!(errors[0]["code"], "processor_failed");
    assert!(errors[0]["message"].as_str().unwrap().contains("crashy"));
    let texts = transcripts(&seen);
    assert!(texts.len() >= 3, "{seen:?}");
    assert!(texts[0].ends_with(" tail"), "{}", texts[0]);
    for t in &texts[1..] {
        // Neither the half-done rewrite nor the disabled processor's work; the rest still ran.
        assert!(!t.contains("PARTIAL") && !t.contains("tail"), "{t}");
        assert!(t.contains("mail [email]"), "{t}");
    }
    // The error comes before the result it concerns, and only after the first result.
    let first_error = seen.iter().position(|v| v["type"] == "error").unwrap();
    let first_result = seen.iter().position(|v| v["type"] == "stt_result").unwrap();
    assert!(first_result < first_error, "{seen:?}");
    // Another session is untouched, and the failed one keeps transcribing.
    let seen = one_utterance(&mut other).await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    let seen = one_utterance(&mut c).await;
    assert!(seen.iter().all(|v| v["type"] != "error"), "{seen:?}");
    assert!(transcripts(&seen)
        .iter()
        .all(|t| t.starts_with("utterance 2: ") && t.contains("[email]")));

    // Pre-TTS: broken fails at once; say after it still runs, the text is spoken.
    let mut c = WsClient::connect(&server.ws_url("/ws")).await;
    let mut tts = tts_config("loopback", "ms_per_char=10");
    tts["pre_pipeline"] = json!(["broken", "say"]);
    c.configure(json!({"type":"config","tts_config":tts})).await;
    c.send_json(json!({"type":"speak","text":"SQL and MySQL"}))
        .await;
    let msg = c.expect_error("processor_failed").await;
    assert!(msg.contains("broken"), "{msg}");
    let bytes = c.until("tts_playback_complete").await.1;
    let expected = tts_bytes(&server, None, "SQL and MySQL").await;
    assert_eq!(
        bytes, expected,
        "spoken as the chain without broken makes it"
    );
    // Disabled for the session: the next request gets no second error.
    c.send_json(json!({"type":"speak","text":"again"})).await;
    let (done, _) = c.until("tts_playback_complete").await;
    assert_eq!(done["type"], "tts_playback_complete");
    c.assert_alive().await;
    let m = metrics(&server).await;
    for (name, stage) in [("crashy", "post_stt"), ("broken", "pre_tts")] {
        assert!(
            m.contains(&format!(
                "waav_processor_failures_total{{processor=\"{name}\",stage=\"{stage}\"}} 1"
            )),
            "{m}"
        );
    }
}

#[tokio::test]
async fn plugins_lists_processor_stages() {
    let server = server().await;
    let plugins: Value = reqwest::get(server.url("/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stages = |id: &str| {
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed"))["stages"]
            .clone()
    };
    assert_eq!(stages("redact_pii"), json!(["post_stt", "pre_tts"]));
    assert_eq!(stages("pronunciations"), json!(["pre_tts"]));
    assert_eq!(stages("level-vad"), json!(["pre_stt", "post_tts"]));
    assert_eq!(stages("keyed"), Value::Null);
}
