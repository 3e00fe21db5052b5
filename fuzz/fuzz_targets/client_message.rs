//! Arbitrary bytes as a `/ws` text message: JSON parsing, then for a `config` what the session
//! does with it before dialling a provider (validation, the provider-facing TTS config, the
//! pronunciation rewrite, the TTS cache key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use waav_gateway::cache::CacheKey;
use waav_gateway::config::SessionSettings;
use waav_gateway::session::protocol::ClientMessage;
use waav_gateway::session::tts;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<ClientMessage>(data) else {
        return;
    };
    let _ = msg.kind();
    let ClientMessage::Config(config) = msg else {
        return;
    };
    if let Some(stt) = &config.stt_config {
        let _ = stt.validate();
    }
    if let Some(cfg) = &config.tts_config {
        let _ = tts::timeouts(cfg, &SessionSettings::default());
        // `session_config` validates first, as the session does.
        if let Ok(session) = tts::session_config(cfg) {
            // Any string of the same message serves as text to rewrite.
            let text = config.stream_id.as_deref().unwrap_or("hello world");
            let spoken = session.apply_pronunciations(text);
            let _ = CacheKey::new(&cfg.provider, &session, &spoken);
        }
    }
});
