//! espeak-ng as a subprocess: robotic but tiny fallback TTS, and the phonemizer behind Piper.
//!
//! libespeak-ng is GPL-3, so it is never linked: the `espeak-ng` program is run instead.

use std::io::{Cursor, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::error::{LocalError, Result};
use crate::text::chunk_text;

/// The espeak-ng executable (looked up on `PATH`).
pub const ESPEAK_PROGRAM: &str = "espeak-ng";

/// How long one espeak-ng run may take by default. A sentence takes a few milliseconds; this
/// only catches a wedged process.
pub const ESPEAK_TIMEOUT: Duration = Duration::from_secs(10);

/// The most text (bytes) sent to one espeak-ng run: longer text is split at sentence (else word)
/// boundaries and synthesised run by run, so one process's work and output stay bounded.
pub const MAX_ESPEAK_INPUT: usize = 4096;

/// How often a waiting run looks at its [`CancelToken`].
const CANCEL_POLL: Duration = Duration::from_millis(10);
/// espeak prints a line or two on stderr; more is not worth keeping.
const MAX_STDERR: u64 = 16 * 1024;

/// A flag that asks blocking work (an espeak-ng run, a synthesis) to stop early. Clones share
/// the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the work to stop; a running espeak-ng process is killed.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Limits of an espeak-ng run: a timeout, and a token that kills the process when cancelled.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// The run is killed and fails with [`LocalError::Timeout`] after this long.
    pub timeout: Duration,
    /// Cancelling it kills the process; the run fails with [`LocalError::Cancelled`].
    pub cancel: CancelToken,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            timeout: ESPEAK_TIMEOUT,
            cancel: CancelToken::new(),
        }
    }
}

/// A voice listed by `espeak-ng --voices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakVoice {
    /// Voice name, e.g. `English_(America)`.
    pub name: String,
    /// Language code to pass as `-v`, e.g. `en-us`.
    pub language: String,
    /// `M`, `F` or `-` (unspecified).
    pub gender: String,
}

/// Speaks `text` with espeak-ng and returns mono 16-bit samples and their sample rate.
///
/// `voice` is an espeak voice or language (`en-us`); `words_per_minute` is the speed (espeak's
/// default is 175), clamped to 80..=450. The text goes to espeak's stdin, never its argv. Each
/// run is limited to [`ESPEAK_TIMEOUT`]; see [`espeak_synthesize_with`].
pub fn espeak_synthesize(
    text: &str,
    voice: &str,
    words_per_minute: u32,
) -> Result<(Vec<i16>, u32)> {
    espeak_synthesize_with(text, voice, words_per_minute, &RunLimits::default())
}

/// Like [`espeak_synthesize`], with explicit limits. Text longer than [`MAX_ESPEAK_INPUT`] is
/// spoken in several runs (each with the full timeout) and the audio concatenated.
pub fn espeak_synthesize_with(
    text: &str,
    voice: &str,
    words_per_minute: u32,
    limits: &RunLimits,
) -> Result<(Vec<i16>, u32)> {
    check_voice_arg(voice)?;
    if text.trim().is_empty() {
        return Err(LocalError::InvalidInput("text is empty".into()));
    }
    let wpm = words_per_minute.clamp(80, 450).to_string();
    let mut audio: Option<(Vec<i16>, u32)> = None;
    for chunk in chunk_text(text, MAX_ESPEAK_INPUT) {
        let wav = run_espeak(&["--stdout", "-v", voice, "-s", &wpm], &chunk, limits)?;
        let (samples, rate) = parse_streamed_wav(&wav)?;
        match &mut audio {
            Some((all, r)) if *r == rate => all.extend(samples),
            Some((_, r)) => {
                return Err(LocalError::InvalidInput(format!(
                    "espeak-ng changed its sample rate from {r} to {rate} Hz"
                )))
            }
            None => audio = Some((samples, rate)),
        }
    }
    audio.ok_or_else(|| LocalError::InvalidInput("text has nothing to speak".into()))
}

/// Lists the voices of the installed espeak-ng (`espeak-ng --voices`).
pub fn espeak_voices() -> Result<Vec<EspeakVoice>> {
    let out = run_espeak(&["--voices"], "", &RunLimits::default())?;
    Ok(parse_voices(&String::from_utf8_lossy(&out)))
}

/// Runs espeak-ng with `args`, writing `input` (at most [`MAX_ESPEAK_INPUT`] bytes) to its stdin;
/// returns its stdout. The process is killed on timeout, on cancel, and if this call unwinds.
pub(crate) fn run_espeak(args: &[&str], input: &str, limits: &RunLimits) -> Result<Vec<u8>> {
    run_program(ESPEAK_PROGRAM, args, input, limits, |_| {})
}

/// Kills (if still running) and reaps the child when dropped, whatever path leaves the run.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// [`run_espeak`] for any program; `spawned` sees the child's pid (tests check it is gone).
fn run_program(
    program: &'static str,
    args: &[&str],
    input: &str,
    limits: &RunLimits,
    spawned: impl FnOnce(u32),
) -> Result<Vec<u8>> {
    if input.len() > MAX_ESPEAK_INPUT {
        return Err(LocalError::InvalidInput(format!(
            "{} bytes of text for one {program} run; the limit is {MAX_ESPEAK_INPUT}",
            input.len()
        )));
    }
    if limits.cancel.is_cancelled() {
        return Err(LocalError::Cancelled);
    }
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LocalError::ProgramNotFound { program, source })?;
    let mut child = Reaper(child);
    spawned(child.0.id());
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) = (
        child.0.stdin.take(),
        child.0.stdout.take(),
        child.0.stderr.take(),
    ) else {
        return Err(LocalError::inference("espeak", "pipes were not set up"));
    };
    // Pipes are served from other threads: espeak streams output while reading, so writing a
    // long text before reading stdout could fill both pipes and deadlock. They end when the
    // process does (killed or not), so joining them below cannot hang.
    let input = input.to_owned();
    let side = std::thread::spawn(move || {
        // A write error (broken pipe) only matters if espeak failed, which is reported below.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        let mut err = Vec::new();
        let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut err);
        err
    });
    let (done_tx, done_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out).map(|_| out);
        let _ = done_tx.send(());
        read
    });
    let deadline = started + limits.timeout;
    let waited = wait_for(&mut child.0, &done_rx, deadline, &limits.cancel);
    if waited.is_err() {
        drop(child); // kill now, so the pipe threads see end of file
    }
    let output = reader.join();
    let err = side.join().unwrap_or_default();
    let status = match waited {
        Ok(status) => status,
        Err(Stop::Cancelled) => return Err(LocalError::Cancelled),
        Err(Stop::Timeout) => {
            return Err(LocalError::Timeout {
                program,
                after: limits.timeout,
            })
        }
        Err(Stop::Io(source)) => return Err(LocalError::ProgramNotFound { program, source }),
    };
    let stdout = match output {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => return Err(LocalError::ProgramNotFound { program, source }),
        Err(_) => return Err(LocalError::inference("espeak", "stdout reader panicked")),
    };
    if !status.success() {
        return Err(LocalError::ProgramFailed {
            program,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&err).trim().to_owned(),
        });
    }
    Ok(stdout)
}

enum Stop {
    Cancelled,
    Timeout,
    Io(std::io::Error),
}

/// Waits until the child exits, the deadline passes or `cancel` is set. `stdout_done` fires
/// when stdout closes, which normally is the moment the process exits: no polling delay then.
fn wait_for(
    child: &mut Child,
    stdout_done: &mpsc::Receiver<()>,
    deadline: Instant,
    cancel: &CancelToken,
) -> std::result::Result<std::process::ExitStatus, Stop> {
    let mut stdout_open = true;
    loop {
        if let Some(status) = child.try_wait().map_err(Stop::Io)? {
            return Ok(status);
        }
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        if stdout_open {
            match stdout_done.recv_timeout(left.min(CANCEL_POLL)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => stdout_open = false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        } else {
            // stdout closed but the process lingers: it is exiting; poll briefly.
            std::thread::sleep(left.min(Duration::from_millis(1)));
        }
    }
}

/// Rejects voice names that espeak could read as options.
pub(crate) fn check_voice_arg(voice: &str) -> Result<()> {
    let ok = !voice.is_empty()
        && !voice.starts_with('-')
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '.'));
    if ok {
        Ok(())
    } else {
        Err(LocalError::InvalidInput(format!(
            "invalid espeak voice {voice:?}"
        )))
    }
}

/// Parses the WAV espeak writes to a pipe: its RIFF and data sizes are placeholders
/// (0x7FFFF000) because the length is unknown when the header is written, so they are
/// clamped to the bytes actually received before decoding.
fn parse_streamed_wav(bytes: &[u8]) -> Result<(Vec<i16>, u32)> {
    let mut wav = bytes.to_vec();
    fix_streamed_sizes(&mut wav);
    let mut reader = hound::WavReader::new(Cursor::new(wav))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(LocalError::InvalidInput(format!(
            "espeak-ng produced unsupported WAV format {spec:?}"
        )));
    }
    let samples = reader.samples::<i16>().collect::<Result<Vec<i16>, _>>()?;
    let channels = usize::from(spec.channels.max(1));
    let samples = if channels > 1 {
        samples
            .chunks_exact(channels)
            .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / channels as i32) as i16)
            .collect()
    } else {
        samples
    };
    Ok((samples, spec.sample_rate))
}

/// Clamps the RIFF size and the `data` chunk size to what `wav` holds (whole 16-bit samples).
fn fix_streamed_sizes(wav: &mut [u8]) {
    let len = wav.len();
    if len < 12 || &wav[0..4] != b"RIFF" {
        return; // not a RIFF stream: let hound report it
    }
    let riff_size = u32::try_from(len - 8).unwrap_or(u32::MAX);
    wav[4..8].copy_from_slice(&riff_size.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= len {
        let size =
            u32::from_le_bytes([wav[pos + 4], wav[pos + 5], wav[pos + 6], wav[pos + 7]]) as usize;
        let body = pos + 8;
        if &wav[pos..pos + 4] == b"data" {
            let available = (len - body) & !1;
            if size > available {
                wav[pos + 4..pos + 8].copy_from_slice(&(available as u32).to_le_bytes());
            }
            return;
        }
        pos = body.saturating_add(size + (size & 1));
    }
}

/// Parses `espeak-ng --voices`:
/// `Pty Language Age/Gender VoiceName File Other Languages` (the name has no spaces).
fn parse_voices(listing: &str) -> Vec<EspeakVoice> {
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _priority = cols.next()?;
            let language = cols.next()?;
            let age_gender = cols.next()?;
            let name = cols.next()?;
            let gender = age_gender.rsplit('/').next().unwrap_or("-");
            Some(EspeakVoice {
                name: name.to_owned(),
                language: language.to_owned(),
                gender: gender.to_owned(),
            })
        })
        .collect()
}

/// Whether espeak-ng runs. Without it a test prints SKIP, but fails when `CI=true`.
#[cfg(test)]
pub(crate) fn espeak_or_skip() -> bool {
    use std::io::Write;
    let ok = Command::new(ESPEAK_PROGRAM)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg =
            "SKIP: espeak-ng not installed, run scripts/fetch-models.sh (installs it as root)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text near the per-run limit: espeak needs far longer than the tests allow to speak it.
    fn long_text() -> String {
        let s = "The quick brown fox jumps over the lazy dog. ".repeat(90);
        assert!(s.len() <= MAX_ESPEAK_INPUT);
        s
    }

    /// Whether `pid` is still an espeak-ng process (a reaped pid has no /proc entry; a reused
    /// one runs something else).
    fn espeak_alive(pid: u32) -> bool {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(ESPEAK_PROGRAM))
    }

    fn run_long(limits: &RunLimits) -> (Result<Vec<u8>>, u32, Duration) {
        let mut pid = 0;
        let started = Instant::now();
        let result = run_program(
            ESPEAK_PROGRAM,
            &["--stdout", "-v", "en-us"],
            &long_text(),
            limits,
            |p| pid = p,
        );
        (result, pid, started.elapsed())
    }

    #[test]
    fn a_run_past_its_timeout_is_killed_promptly() {
        if !espeak_or_skip() {
            return;
        }
        let limits = RunLimits {
            timeout: Duration::ZERO,
            ..RunLimits::default()
        };
        let (result, pid, took) = run_long(&limits);
        assert!(
            matches!(result, Err(LocalError::Timeout { .. })),
            "{result:?}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(pid > 0 && !espeak_alive(pid), "espeak-ng {pid} still runs");
        // The library API honours the limit too.
        let err = espeak_synthesize_with(&long_text(), "en-us", 175, &limits).unwrap_err();
        assert!(matches!(err, LocalError::Timeout { .. }), "{err}");
    }

    #[test]
    fn a_cancelled_run_is_killed() {
        if !espeak_or_skip() {
            return;
        }
        let limits = RunLimits::default();
        let cancel = limits.cancel.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            cancel.cancel();
        });
        let (result, pid, took) = run_long(&limits);
        canceller.join().unwrap();
        assert!(matches!(result, Err(LocalError::Cancelled)), "{result:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(pid > 0 && !espeak_alive(pid), "espeak-ng {pid} still runs");
        // Already cancelled: nothing is started.
        let (result, pid, _) = run_long(&limits);
        assert!(matches!(result, Err(LocalError::Cancelled)) && pid == 0);
    }

    #[test]
    fn input_per_run_is_bounded() {
        let too_long = "a ".repeat(MAX_ESPEAK_INPUT);
        let err = run_espeak(&["-q"], &too_long, &RunLimits::default()).unwrap_err();
        assert!(matches!(err, LocalError::InvalidInput(_)), "{err}");
    }

    #[test]
    fn a_normal_run_still_works() {
        if !espeak_or_skip() {
            return;
        }
        let (audio, rate) = espeak_synthesize("Hello there.", "en-us", 175).unwrap();
        assert!(rate > 0 && audio.len() > rate as usize / 4);
        assert!(!espeak_voices().unwrap().is_empty());
    }

    #[test]
    fn parses_voice_listing() {
        let listing = "Pty Language       Age/Gender VoiceName          File                 Other Languages\n \
             5  af              --/M      Afrikaans          gmw/af\n \
             2  en-us           --/F      English_(America)  gmw/en-US            (en 3)\n";
        let voices = parse_voices(listing);
        assert_eq!(voices.len(), 2);
        assert_eq!(
            voices[1],
            EspeakVoice {
                name: "English_(America)".into(),
                language: "en-us".into(),
                gender: "F".into()
            }
        );
    }

    #[test]
    fn rejects_option_like_voices() {
        assert!(check_voice_arg("en-us").is_ok());
        assert!(check_voice_arg("-w /tmp/x").is_err());
        assert!(check_voice_arg("").is_err());
    }

    #[test]
    fn parses_placeholder_sized_wav() {
        // A header with espeak's placeholder sizes followed by three samples.
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\x24\xf0\xff\x7fWAVEfmt \x10\0\0\0\x01\0\x01\0");
        wav.extend_from_slice(&22_050u32.to_le_bytes());
        wav.extend_from_slice(&44_100u32.to_le_bytes());
        wav.extend_from_slice(b"\x02\0\x10\0data\x00\xf0\xff\x7f");
        for s in [1i16, -2, 300] {
            wav.extend_from_slice(&s.to_le_bytes());
        }
        assert_eq!(
            parse_streamed_wav(&wav).unwrap(),
            (vec![1, -2, 300], 22_050)
        );
    }
}
