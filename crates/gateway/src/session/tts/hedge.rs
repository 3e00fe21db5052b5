//! Hedged first byte: a session's first cache-miss TTS request (and the first after a failover)
//! also goes to the next provider of its chain; the first provider to send audio for it keeps the
//! session, the other is closed.
//!
//! - The partner is the first entry of the session's remaining chain that opens (breakers
//!   apply), with the fallback rules of [`chain::tts_for`]. With `resilience.tts_hedge_delay_ms`
//!   0 it is connected when the hedge is armed (at `config`, or at the failover), so both sides
//!   race warm; with a delay N it is connected, and asked, only if the provider has no first byte
//!   N ms after the request (tail hedging: most requests never start a hedge).
//! - Only one request races. Once a winner is known the session keeps it for every later request,
//!   so the voice never alternates between vendors sentence by sentence; none of the loser's
//!   audio reaches the client, so audio from both never interleaves. A partner that wins takes
//!   over the requests queued behind the raced one (spoken again by it) and the client gets
//!   `provider_switched` (reason `hedge`).
//! - The loser is kept only until its own first byte (its audio dropped), bounded by the
//!   first-byte watchdog, so both latencies feed the instance EWMA that `strategy: fastest`
//!   reads; then it is closed, which cancels its request.
//! - A side that fails before any audio (an error, a request with no audio, its session ending)
//!   leaves the race to the other; when both fail, the raced request fails as it would without
//!   a hedge (the provider's failure goes through the usual failover rules).
//!
//! Sessions without a hedge pay one `None` pointer in their [`TtsLink`].

use super::{Tripped, TtsLink, TtsProvider, TtsSignal};
use crate::cache::TtsCache;
use crate::resilience::count_hedge;
use crate::session::chain;
use crate::session::errors::WsError;
use crate::session::link::Signal;
use crate::session::outbound::Outbound;
use crate::session::protocol::{ServerMessage, TtsConfig};
use crate::state::{AppState, SharedState};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waav_plugin_api::{PluginError, PluginKind, SpeakRequest, TtsEvent, TtsInput};

const KIND: PluginKind = PluginKind::Tts;
/// `provider_switched.reason` when a hedge partner wins.
pub const REASON: &str = "hedge";
/// Time a closed hedge side gets to finish before it is aborted.
const GRACE: Duration = Duration::from_secs(2);

/// What [`TtsLink::next`] produced.
#[derive(Debug)]
pub enum TtsNext {
    /// The session's provider.
    Provider(TtsSignal),
    /// The hedge (its partner or its loser); handled by [`TtsLink::on_hedge`].
    Hedge(HedgeWake),
}

/// A hedge side woke up.
#[derive(Debug)]
pub struct HedgeWake(Wake);

#[derive(Debug)]
enum Wake {
    /// The partner's connect finished (it is open or failed).
    Opened,
    /// The partner produced something.
    Partner(TtsSignal),
    /// The loser produced something.
    Loser(TtsSignal),
    /// The session's provider ended while the partner races on.
    PrimaryEnded,
}

/// What the session must do after a hedge event.
#[derive(Debug)]
pub enum HedgeOutcome {
    /// Nothing.
    None,
    /// The partner won and now serves the session: `entry` (the chain entry it was opened from)
    /// leaves the chain, `loser` (the provider it replaced, as a chain entry) joins its end.
    Switched {
        /// The chain entry of the winner.
        entry: String,
        /// The replaced provider as a chain entry (`provider` or `provider:voice`).
        loser: String,
    },
    /// Both sides failed: the provider's failure, for the usual failover rules.
    Tripped(Tripped),
    /// Both sides failed and the provider's session had ended: handle it as that end.
    Ended(Result<(), PluginError>),
}

enum Partner {
    /// Not connected (a delayed hedge that has not started).
    None,
    Opening(JoinHandle<Result<(TtsProvider, String), WsError>>),
    /// Open, with the chain entry it came from.
    Open(Box<TtsProvider>, String),
    /// Connect or request failed (the instance, if it was open).
    Failed(Option<&'static str>),
}

/// How the session's provider failed the raced request before any audio.
#[derive(Debug)]
pub(super) enum Failure {
    Error(PluginError),
    Tripped(Tripped),
    Ended(Result<(), PluginError>),
}

#[derive(Debug)]
struct Race {
    id: u64,
    /// The text as the provider is asked to speak it.
    text: String,
    flush: bool,
    /// When the session's provider got the request.
    since: Instant,
    /// When the hedge starts (if it has not).
    start_at: Instant,
    started: bool,
    /// When the partner got the request.
    partner_sent: Option<Instant>,
    primary_failed: Option<Failure>,
}

/// A race's loser, measured until its first byte.
#[derive(Debug)]
struct Loser {
    provider: TtsProvider,
    id: u64,
    since: Instant,
    until: Instant,
}

/// A session's hedge state (boxed in its [`TtsLink`]).
pub struct Hedge {
    state: SharedState,
    /// The session's TTS config (the partner's is derived from it as a fallback's).
    cfg: TtsConfig,
    candidates: Vec<String>,
    delay: Duration,
    partner: Partner,
    race: Option<Race>,
    /// The race was decided (or abandoned for good): no other request races.
    decided: bool,
    loser: Option<Loser>,
}

impl std::fmt::Debug for Hedge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let partner = match &self.partner {
            Partner::None => "none",
            Partner::Opening(_) => "opening",
            Partner::Open(..) => "open",
            Partner::Failed(_) => "failed",
        };
        f.debug_struct("Hedge")
            .field("candidates", &self.candidates)
            .field("delay", &self.delay)
            .field("partner", &partner)
            .field("race", &self.race)
            .field("decided", &self.decided)
            .field("loser", &self.loser)
            .finish_non_exhaustive()
    }
}

impl Drop for Hedge {
    fn drop(&mut self) {
        self.close_partner();
        if let Some(l) = self.loser.take() {
            close(l.provider);
        }
    }
}

/// Closes `p` in the background (dropped at once outside a runtime).
fn close(p: TtsProvider) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(p.close(GRACE));
    }
}

/// The instance id of chain entry `entry` (`provider` or `provider:voice`).
fn instance(state: &AppState, entry: &str) -> Option<&'static str> {
    let name = entry.split_once(':').map_or(entry, |(n, _)| n);
    state.registry.find(KIND, name).map(|e| e.id)
}

/// Opens the first of `candidates` that works, skipping open breakers; outcomes feed them.
async fn open_partner(
    state: SharedState,
    cfg: TtsConfig,
    candidates: Vec<String>,
) -> Result<(TtsProvider, String), WsError> {
    let settings = &state.config.session;
    let mut last = None;
    for entry in candidates {
        let id = instance(&state, &entry);
        if id.is_some_and(|id| !state.resilience.allow(KIND, id)) {
            continue;
        }
        let c = chain::tts_for(&cfg, &entry);
        let (timeout, _) = super::timeouts(&c, settings);
        let limits = super::TtsLimits::from_settings(settings);
        let opened = TtsProvider::open(
            &state.registry,
            &c,
            timeout,
            limits.input_capacity(),
            settings.tts_frame_ms,
        )
        .await;
        match opened {
            Ok(p) => {
                if let Some(id) = id {
                    state.resilience.record(KIND, id, Ok(()));
                }
                return Ok((p, entry));
            }
            Err(e) => {
                if let (Some(id), Some(f)) = (id, e.provider_failure()) {
                    state.resilience.record(KIND, id, Err(&f));
                }
                tracing::debug!(entry = %entry, error = %e, "TTS hedge partner failed to open");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(WsError::NothingToConfigure))
}

/// Attaches a hedge to `link` when the session asks for one (`tts_config.hedge`, else
/// `resilience.tts_hedge`) and has a chain (`names`: the entries after its provider).
pub(crate) fn attach(
    state: &SharedState,
    link: TtsLink,
    cfg: &TtsConfig,
    names: &VecDeque<String>,
) -> TtsLink {
    if !cfg.hedge.unwrap_or_else(|| state.resilience.tts_hedge()) {
        return link;
    }
    if names.is_empty() {
        tracing::debug!(
            provider = link.provider_id(),
            "TTS hedging asked for, but the session has no chain: not hedging"
        );
        return link;
    }
    let mut hedge = Hedge {
        state: state.clone(),
        cfg: cfg.clone(),
        candidates: names.iter().cloned().collect(),
        delay: state.resilience.tts_hedge_delay(),
        partner: Partner::None,
        race: None,
        decided: false,
        loser: None,
    };
    if hedge.delay.is_zero() {
        hedge.open();
    }
    let mut link = link;
    link.hedge = Some(Box::new(hedge));
    link
}

impl Hedge {
    fn open(&mut self) {
        if matches!(self.partner, Partner::None) {
            let task = open_partner(
                self.state.clone(),
                self.cfg.clone(),
                self.candidates.clone(),
            );
            self.partner = Partner::Opening(tokio::spawn(task));
        }
    }

    fn partner_id(&self) -> Option<&'static str> {
        match &self.partner {
            Partner::Open(p, _) => Some(p.provider),
            Partner::Failed(id) => *id,
            _ => None,
        }
    }

    /// Whether the race on `id` has started and the partner may still win it.
    fn partner_racing(&self, id: u64) -> bool {
        self.race.as_ref().is_some_and(|r| r.id == id && r.started)
            && matches!(self.partner, Partner::Opening(_) | Partner::Open(..))
    }

    /// Whether a failure of the session's provider on `id` is left to the partner.
    fn covers(&self, id: u64) -> bool {
        self.partner_racing(id)
            && self
                .race
                .as_ref()
                .is_some_and(|r| r.primary_failed.is_none())
    }

    fn close_partner(&mut self) {
        match std::mem::replace(&mut self.partner, Partner::None) {
            Partner::Opening(task) => task.abort(),
            Partner::Open(p, _) => close(*p),
            Partner::None | Partner::Failed(_) => {}
        }
    }

    /// The partner failed; `Some` with the provider's failure when that had failed too.
    fn partner_failed(&mut self, error: Option<&PluginError>) -> Option<Failure> {
        let id = self.partner_id();
        if let (Some(id), Some(e)) = (id, error) {
            self.state.resilience.record(KIND, id, Err(e));
        }
        self.close_partner();
        self.partner = Partner::Failed(id);
        let both = self
            .race
            .as_ref()
            .is_some_and(|r| r.primary_failed.is_some());
        if both {
            self.decided = true;
            return self.race.take().and_then(|r| r.primary_failed);
        }
        None
    }

    /// The next timer: the delayed hedge's start, the loser's bound.
    fn deadline(&self) -> Option<Instant> {
        let start = self
            .race
            .as_ref()
            .filter(|r| !r.started)
            .map(|r| r.start_at);
        let loser = self.loser.as_ref().map(|l| l.until);
        match (start, loser) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether anything of the hedge must be polled.
    fn polls(&self) -> bool {
        self.loser.is_some() || matches!(self.partner, Partner::Opening(_) | Partner::Open(..))
    }

    /// Whether nothing is left to do (the box can go).
    fn finished(&self) -> bool {
        self.decided && self.loser.is_none() && !self.polls()
    }
}

async fn partner_next(partner: &mut Partner) -> TtsNext {
    match partner {
        Partner::Opening(task) => {
            let opened = task.await;
            *partner = match opened {
                Ok(Ok((p, entry))) => Partner::Open(Box::new(p), entry),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "no TTS hedge partner opened: not hedging");
                    Partner::Failed(None)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "opening the TTS hedge partner failed");
                    Partner::Failed(None)
                }
            };
            TtsNext::Hedge(HedgeWake(Wake::Opened))
        }
        Partner::Open(p, _) => TtsNext::Hedge(HedgeWake(Wake::Partner(p.next().await))),
        Partner::None | Partner::Failed(_) => std::future::pending().await,
    }
}

async fn loser_next(loser: &mut Option<Loser>) -> TtsSignal {
    match loser {
        Some(l) => l.provider.next().await,
        None => std::future::pending().await,
    }
}

/// The provider's, the partner's or the loser's next signal. Cancel-safe: every side is polled
/// by reference, and state changes only in the poll that completes.
async fn next_hedged(provider: &mut TtsProvider, h: &mut Hedge) -> TtsNext {
    tokio::select! {
        sig = provider.next() => {
            if let Signal::Ended(result) = sig {
                let id = h.race.as_ref().map(|r| r.id);
                if id.is_some_and(|id| h.covers(id)) {
                    if let Some(r) = h.race.as_mut() {
                        r.primary_failed = Some(Failure::Ended(result));
                    }
                    return TtsNext::Hedge(HedgeWake(Wake::PrimaryEnded));
                }
                return TtsNext::Provider(Signal::Ended(result));
            }
            TtsNext::Provider(sig)
        }
        next = partner_next(&mut h.partner) => next,
        sig = loser_next(&mut h.loser) => TtsNext::Hedge(HedgeWake(Wake::Loser(sig))),
    }
}

impl TtsLink {
    /// The next signal of the provider, or of its hedge.
    pub async fn next(&mut self) -> TtsNext {
        match self.hedge.as_deref_mut().filter(|h| h.polls()) {
            // Boxed: only hedging sessions size (and allocate) this future.
            Some(h) => Box::pin(next_hedged(&mut self.provider, h)).await,
            None => TtsNext::Provider(self.provider.next().await),
        }
    }

    /// A cache-miss request `id` was queued: the first one races.
    pub(super) fn hedge_request(&mut self, id: u64, text: &str, flush: bool) {
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        if h.decided || h.race.is_some() {
            return;
        }
        let now = Instant::now();
        h.race = Some(Race {
            id,
            text: text.to_owned(),
            flush,
            since: now,
            start_at: now + h.delay,
            started: false,
            partner_sent: None,
            primary_failed: None,
        });
        if h.delay.is_zero() {
            self.hedge_start();
        }
    }

    fn hedge_start(&mut self) {
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        if let Some(r) = h.race.as_mut().filter(|r| !r.started) {
            r.started = true;
            tracing::debug!(
                provider = self.provider.provider,
                id = r.id,
                "TTS hedge started"
            );
            h.open();
        }
    }

    /// Sends the raced request to the partner once the hedge started and the partner is open.
    /// `Some` with the provider's failure when the partner cannot take it and the provider had
    /// failed already (only after the partner's connect: a new race has no failure yet).
    pub(super) async fn hedge_send(&mut self) -> Option<Failure> {
        let h = self.hedge.as_deref_mut()?;
        let r = h
            .race
            .as_mut()
            .filter(|r| r.started && r.partner_sent.is_none())?;
        let Partner::Open(p, _) = &h.partner else {
            return None;
        };
        let req = SpeakRequest {
            id: r.id,
            text: r.text.clone(),
            flush: r.flush,
        };
        match p.send(TtsInput::Speak(req), self.limits.stall).await {
            Ok(()) => {
                r.partner_sent = Some(Instant::now());
                None
            }
            Err(_) => {
                let e = PluginError::Timeout("the hedge partner did not take the request".into());
                h.partner_failed(Some(&e))
            }
        }
    }

    /// Whether a failure of the provider on request `id` before any audio is the hedge's.
    pub(super) fn hedge_covers(&self, id: u64) -> bool {
        self.hedge.as_deref().is_some_and(|h| h.covers(id))
    }

    /// The provider failed request `id` before any audio while the partner races on.
    pub(super) fn hedge_primary_failed(&mut self, failure: Tripped) {
        let provider = self.provider.provider;
        tracing::info!(provider, error = %failure.error, "TTS provider failed; its hedge partner may still answer");
        if let Some(r) = self.hedge.as_deref_mut().and_then(|h| h.race.as_mut()) {
            r.primary_failed = Some(match failure.watchdog {
                Some(_) => Failure::Tripped(failure),
                None => Failure::Error(failure.error),
            });
        }
    }

    /// The provider's first byte for request `id`: if it was racing, it won.
    pub(super) fn hedge_first_byte(&mut self, id: u64) {
        let provider = self.provider.provider;
        let first_byte = self.watchdogs.first_byte;
        let timeout = self.request_timeout;
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        let Some(race) = h.race.take_if(|r| r.id == id) else {
            return;
        };
        h.decided = true;
        if !race.started {
            // Fast enough: the delayed hedge never started.
            h.close_partner();
            self.drop_finished_hedge();
            return;
        }
        count_hedge(provider, "won");
        match std::mem::replace(&mut h.partner, Partner::None) {
            Partner::Open(p, _) => {
                count_hedge(p.provider, "lost");
                match race.partner_sent {
                    Some(since) => {
                        let bound = first_byte.unwrap_or(timeout).min(timeout);
                        h.loser = Some(Loser {
                            provider: *p,
                            id,
                            since,
                            until: Instant::now() + bound,
                        });
                    }
                    None => close(*p),
                }
            }
            Partner::Failed(Some(id)) => count_hedge(id, "lost"),
            Partner::Opening(task) => task.abort(),
            Partner::Failed(None) | Partner::None => {}
        }
        self.drop_finished_hedge();
    }

    /// The head request `id` is gone without a decision (cleared, failed, timed out): the race
    /// is off; the next cache-miss request races (the partner, if open, stays).
    pub(super) async fn hedge_abandon(&mut self, id: Option<u64>) {
        let stall = self.limits.stall;
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        let Some(race) = h.race.take_if(|r| id.is_none_or(|id| r.id == id)) else {
            return;
        };
        if let (Partner::Open(p, _), Some(_)) = (&h.partner, race.partner_sent) {
            let _ = p.send(TtsInput::Cancel { up_to: race.id }, stall).await;
        }
    }

    fn drop_finished_hedge(&mut self) {
        if self.hedge.as_deref().is_some_and(Hedge::finished) {
            self.hedge = None;
        }
    }

    /// The hedge's next timer, if any.
    pub(super) fn hedge_deadline(&self) -> Option<Instant> {
        self.hedge.as_deref().and_then(Hedge::deadline)
    }

    /// Runs the hedge's due timers: a delayed hedge starts, a loser that owes its first byte
    /// past the bound is closed (the bound fed to its EWMA: its latency is at least that).
    pub(super) async fn hedge_timers(&mut self) {
        let now = Instant::now();
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        if let Some(l) = h.loser.take_if(|l| l.until <= now) {
            h.state
                .resilience
                .observe(KIND, l.provider.provider, l.since.elapsed());
            close(l.provider);
        }
        let start = h
            .race
            .as_ref()
            .is_some_and(|r| !r.started && r.start_at <= now);
        if start {
            self.hedge_start();
            // A race that has not started has no failure yet.
            let _ = self.hedge_send().await;
        }
        self.drop_finished_hedge();
    }

    /// Handles what a hedge side produced (see [`TtsNext::Hedge`]).
    pub async fn on_hedge(
        &mut self,
        wake: HedgeWake,
        cache: &TtsCache,
        out: &Outbound,
    ) -> HedgeOutcome {
        let outcome = match wake.0 {
            Wake::Opened => {
                if matches!(
                    self.hedge.as_deref().map(|h| &h.partner),
                    Some(Partner::Failed(_))
                ) {
                    let failed = self
                        .hedge
                        .as_deref_mut()
                        .and_then(|h| h.partner_failed(None));
                    self.surface(failed, cache, out).await
                } else {
                    let failed = self.hedge_send().await;
                    self.surface(failed, cache, out).await
                }
            }
            Wake::PrimaryEnded => {
                let provider = self.provider.provider;
                tracing::info!(
                    provider,
                    "TTS provider session ended; its hedge partner may still answer"
                );
                let e = PluginError::Transient("the provider ended the session".into());
                if let Some(h) = self.hedge.as_deref() {
                    h.state.resilience.record(KIND, provider, Err(&e));
                }
                HedgeOutcome::None
            }
            Wake::Loser(sig) => {
                self.on_loser(sig);
                HedgeOutcome::None
            }
            Wake::Partner(sig) => self.on_partner(sig, cache, out).await,
        };
        self.drop_finished_hedge();
        outcome
    }

    /// Both sides failed: the provider's failure takes its usual course.
    async fn surface(
        &mut self,
        failed: Option<Failure>,
        cache: &TtsCache,
        out: &Outbound,
    ) -> HedgeOutcome {
        let Some(failed) = failed else {
            return HedgeOutcome::None;
        };
        tracing::info!(
            provider = self.provider.provider,
            "both sides of a TTS hedge failed"
        );
        match failed {
            Failure::Tripped(t) => HedgeOutcome::Tripped(t),
            Failure::Ended(r) => HedgeOutcome::Ended(r),
            Failure::Error(error) => {
                let Some(id) = self.queue.front().map(|p| p.id) else {
                    return HedgeOutcome::None;
                };
                match self
                    .on_event(TtsEvent::Error { id, error }, cache, out)
                    .await
                {
                    Some(t) => HedgeOutcome::Tripped(t),
                    None => HedgeOutcome::None,
                }
            }
        }
    }

    fn on_loser(&mut self, sig: TtsSignal) {
        let Some(h) = self.hedge.as_deref_mut() else {
            return;
        };
        let Some(l) = h.loser.as_ref() else { return };
        let done = match &sig {
            Signal::Event(TtsEvent::Audio { id, .. }) if *id == l.id => {
                h.state
                    .resilience
                    .observe(KIND, l.provider.provider, l.since.elapsed());
                true
            }
            Signal::Event(TtsEvent::Error { id, error }) if *id == l.id => {
                h.state
                    .resilience
                    .record(KIND, l.provider.provider, Err(error));
                true
            }
            Signal::Event(TtsEvent::Done { id }) => *id == l.id,
            Signal::Event(_) => false,
            Signal::Ended(_) => true,
        };
        if done {
            if let Some(l) = h.loser.take() {
                close(l.provider);
            }
        }
    }

    async fn on_partner(
        &mut self,
        sig: TtsSignal,
        cache: &TtsCache,
        out: &Outbound,
    ) -> HedgeOutcome {
        let Some(h) = self.hedge.as_deref_mut() else {
            return HedgeOutcome::None;
        };
        let race = h
            .race
            .as_ref()
            .filter(|r| r.partner_sent.is_some())
            .map(|r| r.id);
        match sig {
            Signal::Event(TtsEvent::Audio { id, data }) if Some(id) == race => {
                self.partner_won(id, data, cache, out).await
            }
            Signal::Event(TtsEvent::Error { id, error }) if Some(id) == race => {
                tracing::info!(error = %error, "the TTS hedge partner failed the request");
                let failed = h.partner_failed(Some(&error));
                self.surface(failed, cache, out).await
            }
            Signal::Event(TtsEvent::Done { id }) if Some(id) == race => {
                let e = PluginError::Transient("the request ended with no audio".into());
                let failed = h.partner_failed(Some(&e));
                self.surface(failed, cache, out).await
            }
            Signal::Event(_) => HedgeOutcome::None,
            Signal::Ended(result) => {
                let e = result
                    .err()
                    .unwrap_or_else(|| PluginError::Transient("the session ended".into()));
                let failed = h.partner_failed(Some(&e));
                self.surface(failed, cache, out).await
            }
        }
    }

    /// The partner's first byte for the raced request `id` came first: it becomes the
    /// session's provider, takes the requests queued behind, and plays `data`.
    async fn partner_won(
        &mut self,
        id: u64,
        data: bytes::Bytes,
        cache: &TtsCache,
        out: &Outbound,
    ) -> HedgeOutcome {
        let first_byte = self.watchdogs.first_byte;
        let timeout = self.request_timeout;
        let Some(h) = self.hedge.as_deref_mut() else {
            return HedgeOutcome::None;
        };
        let Some(race) = h.race.take() else {
            return HedgeOutcome::None;
        };
        let Partner::Open(partner, entry) = std::mem::replace(&mut h.partner, Partner::None) else {
            return HedgeOutcome::None;
        };
        h.decided = true;
        let took = race.partner_sent.map_or(Duration::ZERO, |t| t.elapsed());
        h.state.resilience.observe(KIND, partner.provider, took);
        count_hedge(partner.provider, "won");
        count_hedge(self.provider.provider, "lost");
        let old = std::mem::replace(&mut self.provider, *partner);
        let from = old.provider;
        let to = self.provider.provider;
        let loser = match old.config.voice_id.as_str() {
            "" => from.to_owned(),
            voice => format!("{from}:{voice}"),
        };
        // A WAV stream keeps its one header.
        if !old.audio.header_pending() {
            let _ = self.provider.audio.take_header();
        }
        if race.primary_failed.is_some() {
            close(old);
        } else {
            let bound = first_byte.unwrap_or(timeout).min(timeout);
            h.loser = Some(Loser {
                provider: old,
                id,
                since: race.since,
                until: Instant::now() + bound,
            });
        }
        tracing::info!(from, to, "TTS hedge won by the partner");
        self.rehome_queue(cache).await;
        out.send(ServerMessage::ProviderSwitched {
            role: "tts",
            from,
            to,
            reason: REASON.into(),
        })
        .await;
        let tripped = self
            .on_event(TtsEvent::Audio { id, data }, cache, out)
            .await;
        // The session's first byte (from the old request's start) is not the partner's own.
        self.first_byte = None;
        debug_assert!(tripped.is_none(), "audio never trips");
        HedgeOutcome::Switched { entry, loser }
    }

    /// After a hedge switch: every queued request gets the new provider's cache key; those
    /// behind the head are looked up again and, if not cached, sent to the new provider (the
    /// old one had them, and its audio is dropped).
    async fn rehome_queue(&mut self, cache: &TtsCache) {
        let mut resend = Vec::new();
        for (i, p) in self.queue.iter_mut().enumerate() {
            p.key = self.provider.cache_key(&p.text);
            if i == 0 {
                continue;
            }
            p.cached = if self.cache_fill {
                cache.get(p.key).await
            } else {
                None
            };
            if p.cached.is_none() {
                resend.push((p.id, p.text.clone(), p.flush));
            }
        }
        for (id, text, flush) in resend {
            let text = match super::spoken_text(&self.provider.config, text).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "re-sending a request to the TTS hedge winner");
                    continue;
                }
            };
            let req = SpeakRequest { id, text, flush };
            if self
                .provider
                .send(TtsInput::Speak(req), self.limits.stall)
                .await
                .is_err()
            {
                // Gone or stalled: its end or the request timeout reports it.
                break;
            }
        }
    }
}
