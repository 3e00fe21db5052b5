//! Loopback realtime: a deterministic speech-to-speech "model" for `/realtime` tests.
//!
//! - On connect: `SessionCreated { session_id: "loopback-session", model }`.
//! - Audio: the first chunk after silence reports speech started; `CommitAudio` (or, with
//!   server VAD, 300 ms of audio) ends the user turn: speech stopped, the user transcript
//!   `heard N ms`, then a response.
//! - A response: assistant transcript `reply to: <what came in>`, `response_ms` of tone (24 kHz
//!   linear16, 20 ms chunks, paced in real time with `realtime=1`), then `ResponseDone`.
//! - `Text("call NAME")` asks for a function call `NAME` (`call_id` `call-1`, …); the matching
//!   `FunctionResult` is answered with a response about the result.
//! - `CancelResponse` stops the response's audio at once (then `ResponseDone`); audio arriving
//!   while a response plays interrupts it (barge-in: `Interrupted`).
//! - Knobs in `model` as for the other loopback providers: `fault=panic|fatal|error|stall`
//!   (`after=N` responses), `latency_ms`, `realtime=1`; `response_ms=N` (default 200).

use crate::knobs::{Fault, Knobs};
use bytes::Bytes;
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, Capabilities, Plugin, PluginError, PluginInfo, ProviderTask, RealtimeEvent,
    RealtimeInput, RealtimeIo, RealtimePlugin, RealtimeSessionConfig, Role,
};

/// The loopback realtime plugin (id `loopback`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackRealtime;

/// Output rate.
const RATE: u32 = 24_000;

impl Plugin for LoopbackRealtime {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("loopback", "Loopback")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["loopback-realtime"])
            .description("Deterministic test speech-to-speech")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .sample_rates([RATE])
            .max_channels(1)
            .features(true, false, true, false)
    }
}

#[async_trait::async_trait]
impl RealtimePlugin for LoopbackRealtime {
    async fn connect(
        &self,
        config: RealtimeSessionConfig,
        io: RealtimeIo,
    ) -> Result<ProviderTask, PluginError> {
        let (knobs, response_ms) = parse(&config.model)?;
        if config.input_format.sample_rate != RATE || config.output_format.sample_rate != RATE {
            return Err(PluginError::Config(format!(
                "loopback realtime speaks linear16 at {RATE} Hz"
            )));
        }
        knobs.on_connect().await;
        Ok(Box::pin(run(config, io, knobs, response_ms)))
    }
}

fn parse(model: &str) -> Result<(Knobs, u32), PluginError> {
    let mut rest = Vec::new();
    let mut response_ms = 200;
    for part in model.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("response_ms", v)) => {
                response_ms = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=60_000).contains(n))
                    .ok_or_else(|| PluginError::Config(format!("bad response_ms {v:?}")))?;
            }
            _ => rest.push(part),
        }
    }
    Ok((Knobs::parse(&rest.join(","))?, response_ms))
}

struct State {
    io: RealtimeIo,
    knobs: Knobs,
    response_ms: u32,
    server_vad: bool,
    heard_ms: u64,
    speaking: bool,
    responses: u32,
    calls: u32,
    /// Samples of the response still to send, and its id.
    playing: Option<(String, usize, usize)>,
}

async fn run(
    config: RealtimeSessionConfig,
    io: RealtimeIo,
    knobs: Knobs,
    response_ms: u32,
) -> Result<(), PluginError> {
    let server_vad = config
        .turn_detection
        .as_ref()
        .and_then(|t| t.get("mode"))
        .and_then(|m| m.as_str())
        .is_none_or(|m| m != "manual");
    let mut st = State {
        io,
        knobs,
        response_ms,
        server_vad,
        heard_ms: 0,
        speaking: false,
        responses: 0,
        calls: 0,
        playing: None,
    };
    let model = if config.model.is_empty() {
        "loopback-1".to_owned()
    } else {
        config.model.clone()
    };
    st.emit(RealtimeEvent::SessionCreated {
        session_id: "loopback-session".into(),
        model,
    })
    .await?;
    if st.knobs.fault == Fault::Deaf {
        std::future::pending::<()>().await;
    }
    let chunk_time = Duration::from_millis(20);
    loop {
        let pace = st.playing.is_some() && st.knobs.realtime;
        tokio::select! {
            input = st.io.input.recv() => match input {
                Some(i) => st.on_input(i).await?,
                None => return Ok(()),
            },
            () = tokio::time::sleep(chunk_time), if pace => st.play_chunk().await?,
            () = std::future::ready(()), if st.playing.is_some() && !pace => st.play_chunk().await?,
        }
    }
}

impl State {
    async fn emit(&self, ev: RealtimeEvent) -> Result<(), PluginError> {
        self.io
            .events
            .send(ev)
            .await
            .map_err(|_| PluginError::Transient("host gone".into()))
    }

    async fn on_input(&mut self, input: RealtimeInput) -> Result<(), PluginError> {
        match input {
            RealtimeInput::Audio(a) => {
                let ms = (a.len() / 2) as u64 * 1000 / u64::from(RATE);
                if let Some((id, _, _)) = self.playing.take() {
                    // The user talks over the response: stop it (server-side barge-in).
                    self.emit(RealtimeEvent::Interrupted).await?;
                    self.emit(RealtimeEvent::ResponseDone { response_id: id })
                        .await?;
                }
                if !self.speaking {
                    self.speaking = true;
                    self.emit(RealtimeEvent::Speech {
                        started: true,
                        audio_ms: self.heard_ms,
                    })
                    .await?;
                }
                self.heard_ms += ms;
                if self.server_vad && self.heard_ms >= 300 {
                    self.end_turn().await?;
                }
            }
            RealtimeInput::CommitAudio => self.end_turn().await?,
            RealtimeInput::ClearAudio => {
                self.heard_ms = 0;
                self.speaking = false;
            }
            RealtimeInput::Text(t) => {
                if let Some(name) = t.strip_prefix("call ") {
                    self.calls += 1;
                    self.emit(RealtimeEvent::FunctionCall {
                        call_id: format!("call-{}", self.calls),
                        name: name.trim().to_owned(),
                        arguments: "{}".into(),
                    })
                    .await?;
                } else {
                    self.respond(&t).await?;
                }
            }
            RealtimeInput::FunctionResult { call_id, result } => {
                self.respond(&format!("{call_id} returned {result}"))
                    .await?;
            }
            RealtimeInput::CreateResponse => self.respond("your request").await?,
            RealtimeInput::CancelResponse => {
                if let Some((id, _, _)) = self.playing.take() {
                    self.emit(RealtimeEvent::ResponseDone { response_id: id })
                        .await?;
                }
            }
            RealtimeInput::UpdateSession(c) => {
                let (knobs, response_ms) = parse(&c.model)?;
                if !c.model.is_empty() {
                    self.knobs = knobs;
                    self.response_ms = response_ms;
                }
                self.emit(RealtimeEvent::SessionUpdated).await?;
            }
        }
        Ok(())
    }

    async fn end_turn(&mut self) -> Result<(), PluginError> {
        if !self.speaking {
            return Ok(());
        }
        self.speaking = false;
        let heard = self.heard_ms;
        self.heard_ms = 0;
        self.emit(RealtimeEvent::Speech {
            started: false,
            audio_ms: heard,
        })
        .await?;
        self.emit(RealtimeEvent::Transcript {
            text: format!("heard {heard} ms"),
            role: Role::User,
            is_final: true,
        })
        .await?;
        self.respond(&format!("{heard} ms of audio")).await
    }

    async fn respond(&mut self, to: &str) -> Result<(), PluginError> {
        self.responses += 1;
        if self.responses >= self.knobs.after {
            match self.knobs.fault {
                Fault::Panic => panic!("loopback realtime: injected panic"),
                Fault::Fatal => {
                    return Err(PluginError::Transient(
                        "loopback realtime: injected fatal error".into(),
                    ))
                }
                Fault::Error => {
                    return self
                        .emit(RealtimeEvent::Error(PluginError::RateLimited {
                            message: "loopback realtime: injected error".into(),
                            retry_after: None,
                        }))
                        .await
                }
                Fault::Stall => std::future::pending::<()>().await,
                _ => {}
            }
        }
        if !self.knobs.latency.is_zero() {
            tokio::time::sleep(self.knobs.latency).await;
        }
        self.emit(RealtimeEvent::Transcript {
            text: format!("reply to: {to}"),
            role: Role::Assistant,
            is_final: true,
        })
        .await?;
        let total = (RATE * self.response_ms / 1000) as usize;
        self.playing = Some((format!("resp-{}", self.responses), 0, total));
        Ok(())
    }

    async fn play_chunk(&mut self) -> Result<(), PluginError> {
        let Some((id, pos, total)) = self.playing.take() else {
            return Ok(());
        };
        let n = ((RATE / 50) as usize).min(total - pos);
        let mut buf = Vec::with_capacity(n * 2);
        for i in pos..pos + n {
            let s = ((i as f32 * 0.0575).sin() * 9_000.0) as i16;
            buf.extend_from_slice(&s.to_le_bytes());
        }
        self.emit(RealtimeEvent::Audio(Bytes::from(buf))).await?;
        if pos + n >= total {
            self.emit(RealtimeEvent::ResponseDone { response_id: id })
                .await
        } else {
            self.playing = Some((id, pos + n, total));
            Ok(())
        }
    }
}
