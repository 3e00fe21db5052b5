//! The TTS plugin conformance suite, through the plugin contract alone (no gateway): `prepare`,
//! then `synthesize` for each request as the host's driver calls it, or the plugin's
//! `open_stream` session when it has one.
//!
//! The checks, each bounded in time (none measures speed):
//! - `short`: a short sentence yields audio in the session's format (whole samples for PCM);
//! - `long`: several sentences yield more audio than one;
//! - `order`: two requests in a row each get their audio and their end, in order;
//! - `cancel`: cancelling a request mid-synthesis stops its audio (no chunk is accepted after
//!   the cancel; a streaming session sends no audio for it once it has seen the cancel and
//!   moved on);
//! - `hangup`: a host that goes away mid-request ends the synthesis promptly;
//! - `empty`: whitespace-only text never panics;
//! - `flush`: text sent in pieces with `flush: false`, then a piece with `flush: true`, is all
//!   spoken (a streaming session may hold the unflushed pieces until the flush);
//! - `fault <name>`: for each fault the provider's test registers ([`TtsFixture::fault`]), two
//!   short requests through a session aimed at a fake injecting it fail with the expected
//!   category, or both succeed when the plugin is expected to recover; never a panic or hang.

use super::{FaultCase, FaultOutcome, Report};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;
use waav_plugin_api::{
    AudioSink, CancelFlag, PluginError, SpeakRequest, TtsEvent, TtsInput, TtsIo, TtsPlugin,
    TtsSessionConfig,
};

/// What to synthesise and with which session.
#[derive(Debug, Clone)]
pub struct TtsFixture {
    /// The session (voice, model, credentials, plugin config, and the format to produce: one the
    /// plugin declares).
    pub session: TtsSessionConfig,
    /// One short sentence.
    pub short_text: String,
    /// Several sentences, clearly longer to speak than `short_text`.
    pub long_text: String,
    /// Bound on each wait (default 30 s).
    pub guard: Duration,
    faults: Vec<FaultCase<TtsSessionConfig>>,
}

impl TtsFixture {
    /// A fixture for `session` with default texts.
    pub fn new(session: TtsSessionConfig) -> Self {
        Self {
            session,
            short_text: "Hello there.".into(),
            long_text: "Hello there. This is a longer text with several sentences. \
                        It keeps going for a while, so that its audio is clearly longer. \
                        And one more sentence to finish."
                .into(),
            guard: Duration::from_secs(30),
            faults: Vec::new(),
        }
    }

    /// Adds the check `fault <name>`: `session` reaches a fake injecting the fault; two short
    /// requests through it must end in `outcome`.
    pub fn fault(
        mut self,
        name: impl Into<String>,
        session: TtsSessionConfig,
        outcome: FaultOutcome,
    ) -> Self {
        self.faults.push(FaultCase {
            name: name.into(),
            session,
            outcome,
        });
        self
    }

    /// Reports a hang after `guard`.
    pub fn guard(mut self, guard: Duration) -> Self {
        self.guard = guard;
        self
    }
}

/// Runs every check against `plugin` (already initialised).
pub async fn check_tts(plugin: &dyn TtsPlugin, fixture: &TtsFixture) -> Report {
    let mut report = Report::default();
    match guarded(fixture.guard, plugin.prepare(&fixture.session)).await {
        Ok(()) => {}
        Err(e) => {
            report.fail("prepare", e);
            return report;
        }
    }
    let (io, peer) = TtsIo::pair(64);
    match guarded(fixture.guard, async {
        plugin.open_stream(&fixture.session, io).await.map(Ok)
    })
    .await
    {
        Ok(Ok(Some(task))) => streaming(task, peer, fixture, &mut report).await,
        Ok(Ok(None)) => per_request(plugin, fixture, &mut report).await,
        Ok(Err(e)) | Err(e) => report.fail("open_stream", e),
    }
    for case in &fixture.faults {
        fault(plugin, fixture, case, &mut report).await;
    }
    report
}

/// Two short requests through a faulty session: the first error's category, or both spoken.
async fn fault(
    plugin: &dyn TtsPlugin,
    fixture: &TtsFixture,
    case: &FaultCase<TtsSessionConfig>,
    report: &mut Report,
) {
    let check = format!("fault {}", case.name);
    let mut faulty = fixture.clone();
    faulty.session = case.session.clone();
    let mut results: Vec<Result<Vec<u8>, PluginError>> = Vec::new();
    match guarded(faulty.guard, plugin.prepare(&faulty.session)).await {
        Err(e) => results.push(Err(e)),
        Ok(()) => {
            let (io, peer) = TtsIo::pair(64);
            match guarded(faulty.guard, async {
                plugin.open_stream(&faulty.session, io).await.map(Ok)
            })
            .await
            {
                Ok(Ok(Some(task))) => results = requests_through(task, peer, &faulty).await,
                Ok(Ok(None)) => {
                    for id in [21, 22] {
                        let r = speak(plugin, &faulty, id, &faulty.short_text).await;
                        let failed = r.is_err();
                        results.push(r);
                        if failed {
                            break;
                        }
                    }
                }
                Ok(Err(e)) | Err(e) => results.push(Err(e)),
            }
        }
    }
    let first_error = results.iter().find_map(|r| r.as_ref().err());
    if let Some(e @ PluginError::Panicked(_)) = first_error {
        return report.fail(&check, e);
    }
    match (case.outcome, first_error) {
        (FaultOutcome::Fails(category), None) => {
            report.fail(&check, format!("no error; expected {category:?}"))
        }
        (FaultOutcome::Fails(category), Some(e)) if e.category() != category => report.fail(
            &check,
            format!("failed as {:?}, expected {category:?}: {e}", e.category()),
        ),
        (FaultOutcome::Fails(_), Some(_)) => {}
        (FaultOutcome::Recovers, Some(e)) => report.fail(&check, format!("did not recover: {e}")),
        (FaultOutcome::Recovers, None) => {
            for (i, r) in results.iter().enumerate() {
                if let Ok(audio) = r {
                    if audio.is_empty() {
                        report.fail(&check, format!("request {} gave no audio", i + 1));
                    }
                }
            }
        }
    }
}

/// Requests 21 and 22 through a streaming session, each until its end; stops at the first
/// error (an error event, or the session ending early with or without one).
async fn requests_through(
    task: waav_plugin_api::ProviderTask,
    mut peer: waav_plugin_api::TtsPeer,
    fixture: &TtsFixture,
) -> Vec<Result<Vec<u8>, PluginError>> {
    let handle = tokio::spawn(task);
    let mut results = Vec::new();
    'requests: for id in [21u64, 22] {
        let request = TtsInput::Speak(SpeakRequest {
            id,
            text: fixture.short_text.clone(),
            flush: true,
        });
        if peer.input.send(request).await.is_err() {
            break;
        }
        let mut audio = Vec::new();
        loop {
            match timeout(fixture.guard, peer.events.recv()).await {
                Ok(Some(TtsEvent::Audio { id: got, data })) if got == id => {
                    audio.extend_from_slice(&data)
                }
                Ok(Some(TtsEvent::Done { id: got })) if got == id => {
                    results.push(Ok(audio));
                    break;
                }
                Ok(Some(TtsEvent::Error { error, .. })) => {
                    results.push(Err(error));
                    break 'requests;
                }
                Ok(Some(_)) => {}
                Ok(None) => break 'requests,
                Err(_) => {
                    results.push(Err(PluginError::Timeout(format!(
                        "request {id}: no end within {:?}",
                        fixture.guard
                    ))));
                    break 'requests;
                }
            }
        }
    }
    drop(peer);
    match timeout(fixture.guard, handle).await {
        Err(_) => results.push(Err(PluginError::Timeout(
            "the session did not end after the host hung up".into(),
        ))),
        Ok(Err(e)) if e.is_panic() => results.push(Err(PluginError::Panicked(
            "the session task panicked".into(),
        ))),
        Ok(Ok(Err(e))) => results.push(Err(e)),
        Ok(_) => {}
    }
    if results.len() < 2 && !results.iter().any(Result::is_err) {
        results.push(Err(PluginError::Transient(
            "the session ended before both requests did".into(),
        )));
    }
    results
}

async fn guarded<T>(
    guard: Duration,
    f: impl std::future::Future<Output = Result<T, PluginError>>,
) -> Result<T, PluginError> {
    match timeout(guard, AssertUnwindSafe(f).catch_unwind()).await {
        Err(_) => Err(PluginError::Timeout(format!("no answer within {guard:?}"))),
        Ok(Err(p)) => Err(PluginError::from_panic(&*p)),
        Ok(Ok(r)) => r,
    }
}

/// Synthesises `text` as request `id`, returning its audio.
async fn speak(
    plugin: &dyn TtsPlugin,
    fixture: &TtsFixture,
    id: u64,
    text: &str,
) -> Result<Vec<u8>, PluginError> {
    speak_with(plugin, fixture, id, text, true).await
}

async fn speak_with(
    plugin: &dyn TtsPlugin,
    fixture: &TtsFixture,
    id: u64,
    text: &str,
    flush: bool,
) -> Result<Vec<u8>, PluginError> {
    let (tx, mut rx) = mpsc::channel(64);
    let request = SpeakRequest {
        id,
        text: text.into(),
        flush,
    };
    let sink = AudioSink::new(id, tx, CancelFlag::new());
    let synth = guarded(
        fixture.guard,
        plugin.synthesize(&fixture.session, request, sink),
    );
    tokio::pin!(synth);
    let mut audio = Vec::new();
    loop {
        tokio::select! {
            r = &mut synth => {
                r?;
                while let Ok(ev) = rx.try_recv() {
                    collect(ev, id, &mut audio)?;
                }
                return Ok(audio);
            }
            Some(ev) = rx.recv() => collect(ev, id, &mut audio)?,
        }
    }
}

fn collect(ev: TtsEvent, id: u64, audio: &mut Vec<u8>) -> Result<(), PluginError> {
    match ev {
        TtsEvent::Audio { id: got, data } if got == id => {
            audio.extend_from_slice(&data);
            Ok(())
        }
        other => Err(PluginError::Permanent(format!(
            "unexpected event for request {id}: {other:?}"
        ))),
    }
}

fn check_audio(report: &mut Report, check: &str, fixture: &TtsFixture, audio: &[u8]) -> bool {
    if audio.is_empty() {
        report.fail(check, "no audio");
        return false;
    }
    if let Some(b) = fixture.session.encoding.bytes_per_sample() {
        if !audio.len().is_multiple_of(b) {
            report.fail(
                check,
                format!("{} bytes is not whole {b}-byte samples", audio.len()),
            );
            return false;
        }
    }
    true
}

async fn per_request(plugin: &dyn TtsPlugin, fixture: &TtsFixture, report: &mut Report) {
    let short = match speak(plugin, fixture, 1, &fixture.short_text).await {
        Ok(a) => a,
        Err(e) => {
            report.fail("short", e);
            Vec::new()
        }
    };
    let short_ok = check_audio(report, "short", fixture, &short);
    match speak(plugin, fixture, 2, &fixture.long_text).await {
        Ok(long) => {
            if check_audio(report, "long", fixture, &long) && short_ok && long.len() <= short.len()
            {
                report.fail(
                    "long",
                    format!(
                        "{} bytes for the long text, {} for the short",
                        long.len(),
                        short.len()
                    ),
                );
            }
        }
        Err(e) => report.fail("long", e),
    }
    for (id, text) in [(3, &fixture.short_text), (4, &fixture.short_text)] {
        if let Err(e) = speak(plugin, fixture, id, text).await {
            report.fail("order", format!("request {id}: {e}"));
        }
    }
    cancel(plugin, fixture, report).await;
    hangup(plugin, fixture, report).await;
    if let Err(e) = guarded(fixture.guard, async {
        speak(plugin, fixture, 7, "   ").await.map(|_| ())
    })
    .await
    {
        if matches!(e, PluginError::Panicked(_) | PluginError::Timeout(_)) {
            report.fail("empty", e);
        }
    }
    // The host hands a per-request plugin every piece as its own request, flushed or not.
    for (id, flush) in [(8, false), (9, true)] {
        match speak_with(plugin, fixture, id, &fixture.short_text, flush).await {
            Ok(audio) => {
                check_audio(report, "flush", fixture, &audio);
            }
            Err(e) => report.fail("flush", format!("request {id} (flush {flush}): {e}")),
        }
    }
}

/// Cancels request 5 once its first audio arrived: the sink refuses audio from then on, and the
/// synthesis ends (returns) within the guard rather than running on unheard.
async fn cancel(plugin: &dyn TtsPlugin, fixture: &TtsFixture, report: &mut Report) {
    let (tx, mut rx) = mpsc::channel(4);
    let flag = CancelFlag::new();
    let request = SpeakRequest {
        id: 5,
        text: fixture.long_text.repeat(3),
        flush: true,
    };
    let sink = AudioSink::new(5, tx, flag.clone());
    let synth = guarded(
        fixture.guard,
        plugin.synthesize(&fixture.session, request, sink),
    );
    tokio::pin!(synth);
    let mut cancelled = false;
    let mut after = 0usize;
    loop {
        tokio::select! {
            r = &mut synth => {
                if let Err(e @ (PluginError::Panicked(_) | PluginError::Timeout(_))) = r {
                    report.fail("cancel", e);
                }
                break;
            }
            ev = rx.recv() => match ev {
                Some(TtsEvent::Audio { .. }) if !cancelled => {
                    flag.cancel_up_to(5);
                    cancelled = true;
                }
                Some(TtsEvent::Audio { .. }) => after += 1,
                _ => {}
            },
        }
    }
    // Chunks already queued before the cancel may still be in the channel: at most its capacity.
    let mut queued = 0;
    while let Ok(TtsEvent::Audio { .. }) = rx.try_recv() {
        queued += 1;
    }
    if cancelled {
        after += queued;
    }
    if after > 4 {
        report.fail(
            "cancel",
            format!("{after} chunks accepted after the cancel"),
        );
    }
    // A plugin that finished before the suite read its first chunk was simply fast (all its
    // audio fit the channel): nothing to cancel, nothing wrong. No audio at all is.
    if !cancelled && queued == 0 {
        report.fail("cancel", "no audio to cancel");
    }
}

/// The host hangs up mid-request: the synthesis ends within the guard.
async fn hangup(plugin: &dyn TtsPlugin, fixture: &TtsFixture, report: &mut Report) {
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let request = SpeakRequest {
        id: 6,
        text: fixture.long_text.clone(),
        flush: true,
    };
    let sink = AudioSink::new(6, tx, CancelFlag::new());
    if let Err(e @ (PluginError::Panicked(_) | PluginError::Timeout(_))) = guarded(
        fixture.guard,
        plugin.synthesize(&fixture.session, request, sink),
    )
    .await
    {
        report.fail("hangup", e);
    }
}

/// The streaming contract: requests in, audio per id, `Done` per id, cancel honoured.
async fn streaming(
    task: waav_plugin_api::ProviderTask,
    mut peer: waav_plugin_api::TtsPeer,
    fixture: &TtsFixture,
    report: &mut Report,
) {
    let handle = tokio::spawn(task);
    let send = |id, text: &str| {
        TtsInput::Speak(SpeakRequest {
            id,
            text: text.into(),
            flush: true,
        })
    };
    let mut audio: [Vec<u8>; 3] = Default::default();
    let _ = peer.input.send(send(1, &fixture.short_text)).await;
    let _ = peer.input.send(send(2, &fixture.long_text)).await;
    let mut done = Vec::new();
    while done.len() < 2 {
        match timeout(fixture.guard, peer.events.recv()).await {
            Ok(Some(TtsEvent::Audio { id, data })) if (1..=2).contains(&id) => {
                if done.contains(&id) {
                    report.fail("order", format!("audio for request {id} after its end"));
                }
                if id == 2 && !done.contains(&1) {
                    report.fail("order", "audio for request 2 before request 1 ended");
                }
                audio[id as usize].extend_from_slice(&data);
            }
            Ok(Some(TtsEvent::Done { id })) => done.push(id),
            Ok(Some(TtsEvent::Error { id, error })) => {
                report.fail("short", format!("request {id}: {error}"));
                done.push(id);
            }
            Ok(Some(other)) => report.fail("order", format!("unexpected {other:?}")),
            Ok(None) => {
                report.fail("short", "the session ended early");
                return;
            }
            Err(_) => {
                report.fail("short", "no end of request within the guard");
                return;
            }
        }
    }
    if done != [1, 2] {
        report.fail("order", format!("requests ended in order {done:?}"));
    }
    let short_ok = check_audio(report, "short", fixture, &audio[1]);
    if check_audio(report, "long", fixture, &audio[2])
        && short_ok
        && audio[2].len() <= audio[1].len()
    {
        report.fail(
            "long",
            "the long text gave no more audio than the short one",
        );
    }
    streaming_flush(&mut peer, fixture, report).await;
    // Cancel request 3 once its audio starts, then ask for request 4: request 4 must finish,
    // and once it has started, no more audio for request 3 arrives.
    let _ = peer.input.send(send(3, &fixture.long_text.repeat(3))).await;
    let mut cancelled = false;
    let mut four_started = false;
    loop {
        match timeout(fixture.guard, peer.events.recv()).await {
            Ok(Some(TtsEvent::Audio { id: 3, .. })) if !cancelled => {
                cancelled = true;
                let _ = peer.input.send(TtsInput::Cancel { up_to: 3 }).await;
                let _ = peer.input.send(send(4, &fixture.short_text)).await;
            }
            Ok(Some(TtsEvent::Audio { id: 3, .. })) if four_started => {
                report.fail(
                    "cancel",
                    "audio for a cancelled request after the next began",
                );
            }
            Ok(Some(TtsEvent::Audio { id: 4, .. })) => four_started = true,
            Ok(Some(TtsEvent::Done { id: 4 } | TtsEvent::Error { id: 4, .. })) => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                report.fail("cancel", "the request after a cancel never finished");
                break;
            }
        }
    }
    drop(peer);
    match timeout(fixture.guard, handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => report.fail("hangup", e),
        Ok(Err(e)) => report.fail("hangup", format!("the session task panicked: {e}")),
        Err(_) => report.fail("hangup", "the session did not end after the host hung up"),
    }
}

/// Two unflushed pieces, then a flushed one: every piece ends, and together they are spoken.
async fn streaming_flush(
    peer: &mut waav_plugin_api::TtsPeer,
    fixture: &TtsFixture,
    report: &mut Report,
) {
    let pieces = [
        (10, "Hello there,", false),
        (11, " how are", false),
        (12, " you today?", true),
    ];
    for (id, text, flush) in pieces {
        let request = TtsInput::Speak(SpeakRequest {
            id,
            text: text.into(),
            flush,
        });
        if peer.input.send(request).await.is_err() {
            return report.fail("flush", "the session stopped reading");
        }
    }
    let mut audio = Vec::new();
    let mut ended = Vec::new();
    while ended.len() < pieces.len() {
        match timeout(fixture.guard, peer.events.recv()).await {
            Ok(Some(TtsEvent::Audio { id, data })) if (10..=12).contains(&id) => {
                audio.extend_from_slice(&data)
            }
            Ok(Some(TtsEvent::Done { id })) => ended.push(id),
            Ok(Some(TtsEvent::Error { id, error })) => {
                report.fail("flush", format!("request {id}: {error}"));
                ended.push(id);
            }
            Ok(Some(_)) => {}
            Ok(None) => return report.fail("flush", "the session ended early"),
            Err(_) => {
                return report.fail(
                    "flush",
                    format!("requests ended {ended:?} of 10–12 within the guard"),
                )
            }
        }
    }
    if ended != [10, 11, 12] {
        report.fail("flush", format!("pieces ended in order {ended:?}"));
    }
    check_audio(report, "flush", fixture, &audio);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoopbackTts;
    use waav_plugin_api::{AudioEncoding, ErrorCategory};

    fn fixture(model: &str) -> TtsFixture {
        let session = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000).with_model(model);
        TtsFixture::new(session).guard(Duration::from_secs(2))
    }

    #[tokio::test]
    async fn the_loopback_plugin_conforms() {
        check_tts(&LoopbackTts, &fixture("")).await.assert_ok();
        // Paced like a streaming vendor, so the cancel lands mid-request.
        check_tts(&LoopbackTts, &fixture("realtime=1,chunk_ms=10"))
            .await
            .assert_ok();
    }

    #[tokio::test]
    async fn faults_are_checked_against_their_expected_outcome() {
        let with = |model: &str| fixture(model).session;
        let report = check_tts(
            &LoopbackTts,
            &fixture("")
                .fault(
                    "error",
                    with("fault=error"),
                    FaultOutcome::Fails(ErrorCategory::Permanent),
                )
                .fault("none", with(""), FaultOutcome::Recovers),
        )
        .await;
        report.assert_ok();
        let report = check_tts(
            &LoopbackTts,
            &fixture("")
                .fault(
                    "misfiled",
                    with("fault=error"),
                    FaultOutcome::Fails(ErrorCategory::Auth),
                )
                .fault("absent", with(""), FaultOutcome::Fails(ErrorCategory::Auth))
                .fault(
                    "second",
                    with("fault=error,after=22"),
                    FaultOutcome::Recovers,
                ),
        )
        .await;
        for name in [
            "fault misfiled: failed as Permanent",
            "fault absent: no error",
            "fault second: did not recover",
        ] {
            assert!(
                report.failures.iter().any(|f| f.starts_with(name)),
                "{name}: {:?}",
                report.failures
            );
        }
    }

    #[tokio::test]
    async fn misbehaving_plugins_are_caught() {
        for (model, check) in [
            ("fault=panic", "panicked"),
            ("fault=stall", "no answer"),
            ("fault=error", "injected error"),
            ("fault=deaf", "short"),
        ] {
            let report = check_tts(&LoopbackTts, &fixture(model)).await;
            assert!(
                report.failures.iter().any(|f| f.contains(check)),
                "{model}: {:?}",
                report.failures
            );
        }
    }
}
