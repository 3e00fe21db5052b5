//! Which format a plugin is asked for, from its declared capabilities and the client's format.
//!
//! The client's own format wins whenever the plugin takes (STT) or produces (TTS) it: no
//! conversion, zero copy. Otherwise the plugin gets PCM (linear16 when declared, else its first
//! G.711 encoding) at the client's rate if it takes that rate, else the nearest declared rate
//! above it (so audio is never resampled down and up again), else its highest; the core
//! converts. Compressed client formats (mp3, opus, flac) pass through only: the core has no
//! codec for them.

use super::{is_pcm, sample_encoding};
use waav_plugin_api::{AudioEncoding, AudioFormat, Capabilities};

/// The format an STT plugin receives for a client sending `client`.
pub fn stt_input(caps: &Capabilities, client: AudioFormat) -> Result<AudioFormat, String> {
    let channels = match caps.max_channels {
        0 => client.channels,
        max => client.channels.min(max),
    };
    let fits = |enc| caps.accepts_encoding(enc) && caps.accepts_rate(client.sample_rate);
    if channels == client.channels && fits(client.encoding) {
        return Ok(client);
    }
    if client.encoding == AudioEncoding::Wav
        && channels == client.channels
        && fits(AudioEncoding::Linear16)
    {
        return Ok(AudioFormat {
            encoding: AudioEncoding::Linear16,
            ..client
        });
    }
    let encoding = pcm_choice(caps, client.encoding, "accepts")?;
    Ok(AudioFormat {
        encoding,
        sample_rate: rate_choice(caps, client.sample_rate)?,
        channels,
    })
}

/// The format a TTS plugin produces (mono) for a client asking for `client`.
pub fn tts_output(caps: &Capabilities, client: AudioFormat) -> Result<AudioFormat, String> {
    // A plugin never writes WAV headers: the core adds one per stream.
    let wanted = sample_encoding(client.encoding);
    if caps.accepts_encoding(wanted) && caps.accepts_rate(client.sample_rate) {
        return Ok(AudioFormat {
            encoding: wanted,
            sample_rate: client.sample_rate,
            channels: 1,
        });
    }
    let encoding = pcm_choice(caps, client.encoding, "produces")?;
    Ok(AudioFormat {
        encoding,
        sample_rate: rate_choice(caps, client.sample_rate)?,
        channels: 1,
    })
}

fn pcm_choice(
    caps: &Capabilities,
    client: AudioEncoding,
    verb: &str,
) -> Result<AudioEncoding, String> {
    if !is_pcm(client) {
        let list: Vec<_> = caps.encodings.iter().map(|e| e.as_str()).collect();
        return Err(format!(
            "the provider {verb} {}, not {client}; the gateway converts only between linear16, wav, mulaw and alaw",
            list.join(", ")
        ));
    }
    [
        AudioEncoding::Linear16,
        AudioEncoding::Mulaw,
        AudioEncoding::Alaw,
    ]
    .into_iter()
    .find(|&e| caps.accepts_encoding(e))
    .ok_or_else(|| {
        let list: Vec<_> = caps.encodings.iter().map(|e| e.as_str()).collect();
        format!(
            "the provider {verb} only {}, which the gateway cannot convert to {client}",
            list.join(", ")
        )
    })
}

fn rate_choice(caps: &Capabilities, wanted: u32) -> Result<u32, String> {
    if caps.accepts_rate(wanted) {
        return Ok(wanted);
    }
    let mut rates: Vec<u32> = caps
        .sample_rates
        .iter()
        .copied()
        .filter(|&r| caps.accepts_rate(r))
        .collect();
    rates.sort_unstable();
    if let Some(&r) = rates.iter().find(|&&r| r >= wanted).or(rates.last()) {
        return Ok(r);
    }
    if let Some((min, max)) = caps.sample_rate_range {
        if min <= max && min > 0 {
            return Ok(wanted.clamp(min, max));
        }
    }
    Err(format!(
        "the provider declares no usable sample rate for {wanted} Hz"
    ))
}
