//! espeak-ng as a subprocess: robotic but tiny fallback TTS, and the phonemizer behind Piper.
//!
//! libespeak-ng is GPL-3, so it is never linked: the `espeak-ng` program is run instead.

use std::io::{Cursor, Write};
use std::process::{Command, Stdio};

use crate::error::{LocalError, Result};

/// The espeak-ng executable (looked up on `PATH`).
pub const ESPEAK_PROGRAM: &str = "espeak-ng";

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
/// default is 175), clamped to 80..=450. The text goes to espeak's stdin, never its argv.
pub fn espeak_synthesize(
    text: &str,
    voice: &str,
    words_per_minute: u32,
) -> Result<(Vec<i16>, u32)> {
    check_voice_arg(voice)?;
    if text.trim().is_empty() {
        return Err(LocalError::InvalidInput("text is empty".into()));
    }
    let wpm = words_per_minute.clamp(80, 450).to_string();
    let wav = run_espeak(&["--stdout", "-v", voice, "-s", &wpm], text)?;
    parse_streamed_wav(&wav)
}

/// Lists the voices of the installed espeak-ng (`espeak-ng --voices`).
pub fn espeak_voices() -> Result<Vec<EspeakVoice>> {
    let out = run_espeak(&["--voices"], "")?;
    Ok(parse_voices(&String::from_utf8_lossy(&out)))
}

/// Runs espeak-ng with `args`, writing `input` to its stdin; returns its stdout.
pub(crate) fn run_espeak(args: &[&str], input: &str) -> Result<Vec<u8>> {
    let mut child = Command::new(ESPEAK_PROGRAM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LocalError::ProgramNotFound {
            program: ESPEAK_PROGRAM,
            source,
        })?;
    // Write from another thread: espeak streams output while reading, so writing a long text
    // before reading stdout could fill both pipes and deadlock.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|source| LocalError::ProgramNotFound {
            program: ESPEAK_PROGRAM,
            source,
        })?;
    // A write error (broken pipe) only matters if espeak failed, which is reported below.
    let _ = writer.join();
    if !output.status.success() {
        return Err(LocalError::ProgramFailed {
            program: ESPEAK_PROGRAM,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
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

#[cfg(test)]
mod tests {
    use super::*;

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
