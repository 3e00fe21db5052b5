//! The plugin conformance suites: what every speech-to-text ([`check_stt`]) and text-to-speech
//! ([`check_tts`]) plugin must do, checked through the plugin contract alone (no gateway), so a
//! provider crate runs them against itself.
//!
//! ```no_run
//! # async fn check() {
//! use waav_testkit::conformance::{check_stt, SttFixture};
//! let fixture = SttFixture::pcm16(waav_testkit::audio::to_le_bytes(
//!     &waav_testkit::audio::tone(300.0, 600, 16_000)), 16_000);
//! let report = check_stt(&waav_testkit::LoopbackStt, &fixture).await;
//! report.assert_ok();
//! # }
//! ```
//!
//! Each check is bounded in time; none measures speed. The checks:
//! - `connect`: a valid session connects and returns a task;
//! - `stream`: the fixture streamed in 20 ms chunks, then `Finalize`, yields at least one final
//!   transcript (non-empty when [`SttFixture::expect_text`] is set), in order, no interim after
//!   it for the same segment;
//! - `close`: closing the input ends the task cleanly (no hang, no error);
//! - `garbage`: odd-sized and random chunks never panic the task;
//! - `refuse`: an absurd sample rate or channel count is refused by `connect` with a
//!   `PluginError::Config`, never a panic;
//! - `fault <name>`: for each fault the provider's test registers ([`SttFixture::fault`], a
//!   session pointed at a fake that injects it), the session fails with the expected
//!   [`ErrorCategory`], or recovers with the fixture's words and no duplicate final
//!   ([`FaultOutcome`]); never a panic or a hang.

mod tts;

pub use tts::{check_tts, TtsFixture};

/// What a plugin must make of a fault its vendor's fake injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The session (or request) fails with an error of this category.
    Fails(ErrorCategory),
    /// The plugin recovers on its own (reconnects and replays): the fixture's words still arrive
    /// as finals, none of them twice, and no error is reported.
    Recovers,
}

/// One registered fault: a session aimed at a fake that injects it, and the expected outcome.
#[derive(Debug, Clone)]
pub(crate) struct FaultCase<S> {
    pub(crate) name: String,
    pub(crate) session: S,
    pub(crate) outcome: FaultOutcome,
}

use bytes::Bytes;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use waav_plugin_api::{
    ErrorCategory, PluginError, SttEvent, SttInput, SttIo, SttPlugin, SttSessionConfig,
};

/// Default bound on every single wait in the suite (a guard against hangs, not a latency check).
const GUARD: Duration = Duration::from_secs(30);

/// Audio to stream and what to expect of it.
#[derive(Debug, Clone)]
pub struct SttFixture {
    /// PCM16LE mono audio.
    pub audio: Bytes,
    /// Its sample rate.
    pub sample_rate: u32,
    /// Words that must appear (lower-case) in the finals, when the plugin really transcribes.
    pub expect_text: Option<String>,
    /// The session config to use (model, language, plugin config); its rate and format are set
    /// from the fixture.
    pub session: SttSessionConfig,
    /// Bound on each wait (default 30 s): how long a hang takes to be reported.
    pub guard: Duration,
    faults: Vec<FaultCase<SttSessionConfig>>,
}

impl SttFixture {
    /// A fixture of PCM16 mono audio at `sample_rate` with a default session.
    pub fn pcm16(audio: Vec<u8>, sample_rate: u32) -> Self {
        Self {
            audio: Bytes::from(audio),
            sample_rate,
            expect_text: None,
            session: SttSessionConfig::new("en-US", sample_rate),
            guard: GUARD,
            faults: Vec::new(),
        }
    }

    /// Adds the check `fault <name>`: `session` (its rate and format replaced by the fixture's)
    /// reaches a fake injecting the fault; streaming the fixture through it must end in
    /// `outcome`.
    pub fn fault(
        mut self,
        name: impl Into<String>,
        session: SttSessionConfig,
        outcome: FaultOutcome,
    ) -> Self {
        self.faults.push(FaultCase {
            name: name.into(),
            session,
            outcome,
        });
        self
    }

    /// Requires `text` (lower-case words) in the finals.
    pub fn expect(mut self, text: impl Into<String>) -> Self {
        self.expect_text = Some(text.into());
        self
    }

    /// Reports a hang after `guard` instead of 30 s (for plugins known to answer fast).
    pub fn guard(mut self, guard: Duration) -> Self {
        self.guard = guard;
        self
    }

    /// Uses `session` (its rate and format are replaced by the fixture's).
    pub fn with_session(mut self, session: SttSessionConfig) -> Self {
        self.session = session;
        self
    }

    fn config(&self) -> SttSessionConfig {
        self.shaped(self.session.clone())
    }

    fn shaped(&self, mut c: SttSessionConfig) -> SttSessionConfig {
        c.sample_rate = self.sample_rate;
        c.channels = 1;
        c.encoding = waav_plugin_api::AudioEncoding::Linear16;
        c
    }
}

/// What the suite found: one line per failed check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Failed checks, as `check: what went wrong`.
    pub failures: Vec<String>,
    /// Final transcripts seen by the STT `stream` check.
    pub finals: Vec<String>,
}

impl Report {
    /// Panics with every failure listed, if any.
    pub fn assert_ok(&self) {
        assert!(
            self.failures.is_empty(),
            "conformance failed:\n  {}",
            self.failures.join("\n  ")
        );
    }

    fn fail(&mut self, check: &str, what: impl std::fmt::Display) {
        self.failures.push(format!("{check}: {what}"));
    }
}

/// Runs every check against `plugin` (already initialised) with `fixture`.
pub async fn check_stt(plugin: &dyn SttPlugin, fixture: &SttFixture) -> Report {
    let mut report = Report::default();
    stream(plugin, fixture, &mut report).await;
    close(plugin, fixture, &mut report).await;
    garbage(plugin, fixture, &mut report).await;
    refuse(plugin, fixture, &mut report).await;
    for case in &fixture.faults {
        fault(plugin, fixture, case, &mut report).await;
    }
    report
}

/// A connected session as the suite drives it: the host's ends and the spawned task.
struct Session {
    input: tokio::sync::mpsc::Sender<SttInput>,
    events: tokio::sync::mpsc::Receiver<SttEvent>,
    task: tokio::task::JoinHandle<Result<(), PluginError>>,
}

/// Connects with a timeout and a panic guard; the task is spawned (tokio contains its panics).
async fn open(
    plugin: &dyn SttPlugin,
    cfg: SttSessionConfig,
    guard: Duration,
) -> Result<Session, PluginError> {
    let (io, peer) = SttIo::pair(64);
    let connect = AssertUnwindSafe(plugin.connect(cfg, io)).catch_unwind();
    let task = match tokio::time::timeout(guard, connect).await {
        Err(_) => return Err(PluginError::Timeout("connect hung".into())),
        Ok(Err(panic)) => return Err(PluginError::from_panic(&*panic)),
        Ok(Ok(result)) => result?,
    };
    Ok(Session {
        input: peer.input,
        events: peer.events,
        task: tokio::spawn(task),
    })
}

/// Waits for the task's end: `Err` names a hang, a panic or an error.
async fn ended(
    task: tokio::task::JoinHandle<Result<(), PluginError>>,
    guard: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(guard, task).await {
        Err(_) => Err(format!("the task did not end within {guard:?}")),
        Ok(Err(e)) if e.is_panic() => Err("the task panicked".into()),
        Ok(Err(e)) => Err(format!("the task was cancelled: {e}")),
        Ok(Ok(Err(e))) => Err(format!("the task failed: {e}")),
        Ok(Ok(Ok(()))) => Ok(()),
    }
}

/// Streams the fixture in 20 ms chunks, finalizes, and collects results until the final(s)
/// for the audio have arrived and the input is closed.
async fn stream(plugin: &dyn SttPlugin, fixture: &SttFixture, report: &mut Report) {
    let Session {
        input,
        mut events,
        task,
    } = match open(plugin, fixture.config(), fixture.guard).await {
        Ok(s) => s,
        Err(e) => return report.fail("connect", e),
    };
    let chunk = (fixture.sample_rate as usize / 50 * 2).max(2);
    // A second of silence after the speech lets endpointing plugins close the utterance too.
    let tail = vec![0u8; fixture.sample_rate as usize * 2];
    let audio = fixture.audio.clone();
    let feed = async move {
        for c in audio.chunks(chunk).chain(tail.chunks(chunk)) {
            let c = Bytes::copy_from_slice(c);
            if input.send(SttInput::Audio(c)).await.is_err() {
                return None;
            }
        }
        input.send(SttInput::Finalize).await.ok().map(|()| input)
    };
    let mut feed = Box::pin(feed);
    let mut input = None;
    let mut finals = Vec::new();
    let deadline = tokio::time::Instant::now() + fixture.guard;
    loop {
        if input.is_some() && !finals.is_empty() {
            break;
        }
        tokio::select! {
            fed = &mut feed, if input.is_none() => match fed {
                Some(i) => input = Some(i),
                None => return report.fail("stream", "the plugin stopped reading its input"),
            },
            ev = events.recv() => match ev {
                Some(SttEvent::Transcript(t)) => {
                    if t.is_final && !t.text.trim().is_empty() {
                        finals.push(t.text.clone());
                    }
                    if !(0.0..=1.0).contains(&t.confidence) {
                        report.fail("stream", format!("confidence {} outside 0–1", t.confidence));
                    }
                }
                Some(SttEvent::Error(e)) => report.fail("stream", format!("error event: {e}")),
                Some(_) => {}
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                report.fail("stream", format!("no final within {:?} of streaming", fixture.guard));
                break;
            }
        }
    }
    if finals.is_empty() {
        report.fail("stream", "no non-empty final transcript for the fixture");
    }
    if let Some(expect) = &fixture.expect_text {
        let heard = finals.join(" ").to_lowercase();
        for word in expect.split_whitespace() {
            if !heard.contains(word) {
                report.fail(
                    "stream",
                    format!("{word:?} missing from the finals {heard:?}"),
                );
            }
        }
    }
    report.finals = finals;
    // Everything that holds the input goes, so the plugin sees its session end.
    drop((input, feed, events));
    if let Err(e) = ended(task, fixture.guard).await {
        report.fail("stream", e);
    }
}

async fn close(plugin: &dyn SttPlugin, fixture: &SttFixture, report: &mut Report) {
    let s = match open(plugin, fixture.config(), fixture.guard).await {
        Ok(s) => s,
        Err(e) => return report.fail("close", format!("connect failed: {e}")),
    };
    let Session {
        input,
        mut events,
        task,
    } = s;
    let first = fixture.audio.slice(..fixture.audio.len().min(640));
    let _ = input.send(SttInput::Audio(first)).await;
    drop(input);
    // Keep draining so a plugin that flushes results on close is not blocked by us.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    if let Err(e) = ended(task, fixture.guard).await {
        report.fail("close", e);
    }
    drain.abort();
}

async fn garbage(plugin: &dyn SttPlugin, fixture: &SttFixture, report: &mut Report) {
    let s = match open(plugin, fixture.config(), fixture.guard).await {
        Ok(s) => s,
        Err(e) => return report.fail("garbage", format!("connect failed: {e}")),
    };
    let Session {
        input,
        mut events,
        task,
    } = s;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    // Deterministic noise (xorshift), in sizes that split samples and frames anywhere.
    let mut x: u32 = 0x9e37_79b9;
    for len in [0usize, 1, 3, 7, 641, 4095, 1, 33_333] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if input
            .send(SttInput::Audio(Bytes::from(bytes)))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = input.send(SttInput::Finalize).await;
    drop(input);
    match tokio::time::timeout(fixture.guard, task).await {
        Err(_) => report.fail("garbage", "the task hung after its input closed"),
        Ok(Err(e)) if e.is_panic() => report.fail("garbage", "the task panicked"),
        // Ending with an error on garbage is allowed; panicking or hanging is not.
        Ok(_) => {}
    }
    drain.abort();
}

async fn refuse(plugin: &dyn SttPlugin, fixture: &SttFixture, report: &mut Report) {
    for (what, rate, channels) in [
        ("sample_rate 4294967295", u32::MAX, 1u16),
        ("sample_rate 0", 0, 1),
        ("channels 0", fixture.sample_rate, 0),
        ("channels 65535", fixture.sample_rate, u16::MAX),
    ] {
        let mut cfg = fixture.config();
        cfg.sample_rate = rate;
        cfg.channels = channels;
        match open(plugin, cfg, fixture.guard).await {
            Ok(s) => {
                s.task.abort();
                report.fail("refuse", format!("{what}: accepted"));
            }
            Err(e) if e.category() == ErrorCategory::Config => {}
            Err(e) => report.fail(
                "refuse",
                format!("{what}: refused as {:?}, not Config: {e}", e.category()),
            ),
        }
    }
}

/// Streams the fixture through a session whose fake injects a fault, and compares what came
/// of it (a refused connect, an error event, the task's end) with the expected outcome.
async fn fault(
    plugin: &dyn SttPlugin,
    fixture: &SttFixture,
    case: &FaultCase<SttSessionConfig>,
    report: &mut Report,
) {
    let check = format!("fault {}", case.name);
    let mut errors = Vec::new();
    let mut finals: Vec<String> = Vec::new();
    match open(plugin, fixture.shaped(case.session.clone()), fixture.guard).await {
        Err(e @ PluginError::Panicked(_)) => return report.fail(&check, e),
        Err(e) => errors.push(e),
        Ok(Session {
            input,
            mut events,
            task,
        }) => {
            let chunk = (fixture.sample_rate as usize / 50 * 2).max(2);
            let tail = vec![0u8; fixture.sample_rate as usize * 2];
            let audio = fixture.audio.clone();
            let feed = async move {
                for c in audio.chunks(chunk).chain(tail.chunks(chunk)) {
                    if input
                        .send(SttInput::Audio(Bytes::copy_from_slice(c)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = input.send(SttInput::Finalize).await;
                // Never completes: holds the input open until the suite has seen enough.
                std::future::pending::<()>().await;
            };
            let mut feed = Box::pin(feed);
            let deadline = tokio::time::Instant::now() + fixture.guard;
            loop {
                let heard = finals.join(" ").to_lowercase();
                let enough = match case.outcome {
                    FaultOutcome::Fails(_) => !errors.is_empty(),
                    FaultOutcome::Recovers => {
                        !finals.is_empty()
                            && fixture
                                .expect_text
                                .as_deref()
                                .is_none_or(|t| t.split_whitespace().all(|w| heard.contains(w)))
                    }
                };
                if enough {
                    break;
                }
                tokio::select! {
                    () = &mut feed => {}
                    ev = events.recv() => match ev {
                        Some(SttEvent::Transcript(t)) if t.is_final && !t.text.trim().is_empty() => {
                            finals.push(t.text.clone());
                        }
                        Some(SttEvent::Error(e)) => errors.push(e),
                        Some(_) => {}
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            drop((feed, events));
            match tokio::time::timeout(fixture.guard, task).await {
                Err(_) => report.fail(&check, "the task hung after its input closed"),
                Ok(Err(e)) if e.is_panic() => return report.fail(&check, "the task panicked"),
                Ok(Err(_)) | Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
            }
        }
    }
    match case.outcome {
        FaultOutcome::Fails(category) => match errors.first() {
            None => report.fail(&check, format!("no error; expected {category:?}")),
            Some(e) if e.category() != category => report.fail(
                &check,
                format!("failed as {:?}, expected {category:?}: {e}", e.category()),
            ),
            Some(_) => {}
        },
        FaultOutcome::Recovers => {
            if let Some(e) = errors.first() {
                report.fail(&check, format!("did not recover: {e}"));
            } else if finals.is_empty() {
                report.fail(&check, "no final after the fault");
            } else {
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = finals.iter().find(|f| !seen.insert(f.as_str())) {
                    report.fail(&check, format!("final {dup:?} delivered twice"));
                }
                if let Some(expect) = &fixture.expect_text {
                    let heard = finals.join(" ").to_lowercase();
                    for word in expect.split_whitespace() {
                        if !heard.contains(word) {
                            report.fail(&check, format!("{word:?} lost: heard {heard:?}"));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{silence, to_le_bytes, tone};
    use crate::LoopbackStt;

    fn fixture(model: &str) -> SttFixture {
        let mut samples = tone(300.0, 600, 16_000);
        samples.extend(silence(400, 16_000));
        SttFixture::pcm16(to_le_bytes(&samples), 16_000)
            .with_session(SttSessionConfig::new("en-US", 16_000).with_model(model))
            .expect("utterance")
            .guard(Duration::from_secs(2))
    }

    #[tokio::test]
    async fn the_loopback_plugin_conforms() {
        let report = check_stt(&LoopbackStt, &fixture("")).await;
        report.assert_ok();
        assert!(
            report.finals[0].starts_with("utterance 1"),
            "{:?}",
            report.finals
        );
    }

    #[tokio::test]
    async fn faults_are_checked_against_their_expected_outcome() {
        let with = |model: &str| SttSessionConfig::new("en-US", 16_000).with_model(model);
        let report = check_stt(
            &LoopbackStt,
            &fixture("")
                .fault(
                    "error event",
                    with("fault=error"),
                    FaultOutcome::Fails(ErrorCategory::Transient),
                )
                .fault(
                    "task error",
                    with("fault=fatal"),
                    FaultOutcome::Fails(ErrorCategory::Transient),
                )
                .fault("none", with(""), FaultOutcome::Recovers),
        )
        .await;
        report.assert_ok();
        // A wrong expectation is reported by name, as is a fault that never shows.
        let report = check_stt(
            &LoopbackStt,
            &fixture("")
                .fault(
                    "misfiled",
                    with("fault=error"),
                    FaultOutcome::Fails(ErrorCategory::Auth),
                )
                .fault("absent", with(""), FaultOutcome::Fails(ErrorCategory::Auth))
                .fault("panic", with("fault=panic"), FaultOutcome::Recovers),
        )
        .await;
        for name in [
            "fault misfiled: failed as Transient",
            "fault absent: no error",
            "fault panic",
        ] {
            assert!(
                report.failures.iter().any(|f| f.starts_with(name)),
                "{name}: {:?}",
                report.failures
            );
        }
    }

    #[tokio::test]
    async fn a_misbehaving_plugin_is_caught() {
        let report = check_stt(&LoopbackStt, &fixture("fault=panic,after=1")).await;
        assert!(
            report.failures.iter().any(|f| f.contains("panicked")),
            "{:?}",
            report.failures
        );
        let report = check_stt(&LoopbackStt, &fixture("fault=deaf")).await;
        assert!(
            report.failures.iter().any(|f| f.starts_with("stream")),
            "{:?}",
            report.failures
        );
    }
}
