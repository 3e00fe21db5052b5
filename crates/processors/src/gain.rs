//! `gain`: fixed gain, or automatic gain control with a peak limiter.

use waav_plugin_api::{
    AudioBuffer, AudioProcessor, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorEvent, ProcessorPlugin, Stage,
};

use crate::settings::{check_block, check_layout, Settings};

/// Plugin id.
pub const ID: &str = "gain";
/// Time constant of the AGC's RMS level detector.
const DETECTOR_MS: f32 = 20.0;

/// The `gain` plugin (alias `agc`).
///
/// Settings:
/// - `mode`: `fixed` (default) or `agc`.
/// - `fixed`: `gain_db` (−40..=40, default 0). Every sample is multiplied by `10^(gain_db/20)`
///   and rounded; results beyond the i16 range saturate.
/// - `agc`: `target_dbfs` (−60..=−1, default −20): the RMS level aimed for;
///   `max_gain_db` (0..=40, default 30): the most boost; `min_gain_db` (−40..=0, default −20):
///   the most cut; `attack_ms` (1..=1000, default 10): how fast the gain falls when the level
///   rises; `release_ms` (10..=10000, default 500): how fast it rises when the level falls;
///   `gate_dbfs` (−100..=−20, default −50): below this RMS level the gain is held (noise and
///   silence are not pumped up); `limit_dbfs` (−20..=0, default −1): the peak ceiling of the
///   limiter that follows the gain (instant attack, 50 ms release), so the output never clips.
///
/// No events, no latency. The same gain is applied to every channel (the level is the
/// channels' mean power, the limiter follows the loudest channel).
#[derive(Debug, Default, Clone, Copy)]
pub struct GainPlugin;

impl Plugin for GainPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Gain")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["agc"])
            .description("Fixed gain, or automatic gain control with a peak limiter")
    }
}

impl ProcessorPlugin for GainPlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt, Stage::PostTts]
    }

    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        Ok(Box::new(GainProcessor::new(ctx, config)?))
    }
}

/// Checked AGC settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgcSettings {
    /// Target RMS level, dBFS.
    pub target_dbfs: f32,
    /// Largest boost, dB.
    pub max_gain_db: f32,
    /// Largest cut, dB (≤ 0).
    pub min_gain_db: f32,
    /// Gain fall time constant, ms.
    pub attack_ms: f32,
    /// Gain rise time constant, ms.
    pub release_ms: f32,
    /// Level below which the gain is held, dBFS.
    pub gate_dbfs: f32,
    /// Limiter ceiling, dBFS.
    pub limit_dbfs: f32,
}

impl Default for AgcSettings {
    fn default() -> Self {
        Self {
            target_dbfs: -20.0,
            max_gain_db: 30.0,
            min_gain_db: -20.0,
            attack_ms: 10.0,
            release_ms: 500.0,
            gate_dbfs: -50.0,
            limit_dbfs: -1.0,
        }
    }
}

/// What a gain processor does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GainMode {
    /// A fixed gain in dB.
    Fixed {
        /// The gain.
        gain_db: f32,
    },
    /// Automatic gain control.
    Agc(AgcSettings),
}

impl GainMode {
    /// Reads and checks the settings from a processor config.
    pub fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        const FIXED: &[&str] = &["mode", "gain_db"];
        const AGC: &[&str] = &[
            "mode",
            "target_dbfs",
            "max_gain_db",
            "min_gain_db",
            "attack_ms",
            "release_ms",
            "gate_dbfs",
            "limit_dbfs",
        ];
        let mode = Settings::new(config, &[FIXED, AGC].concat())?.choice(
            "mode",
            "fixed",
            &["fixed", "agc"],
        )?;
        if mode == "fixed" {
            let s = Settings::new(config, FIXED)?;
            return Ok(Self::Fixed {
                gain_db: s.number("gain_db", 0.0, -40.0, 40.0)? as f32,
            });
        }
        let s = Settings::new(config, AGC)?;
        let d = AgcSettings::default();
        let num = |k: &str, def: f32, lo: f64, hi: f64| -> Result<f32, PluginError> {
            Ok(s.number(k, f64::from(def), lo, hi)? as f32)
        };
        Ok(Self::Agc(AgcSettings {
            target_dbfs: num("target_dbfs", d.target_dbfs, -60.0, -1.0)?,
            max_gain_db: num("max_gain_db", d.max_gain_db, 0.0, 40.0)?,
            min_gain_db: num("min_gain_db", d.min_gain_db, -40.0, 0.0)?,
            attack_ms: num("attack_ms", d.attack_ms, 1.0, 1000.0)?,
            release_ms: num("release_ms", d.release_ms, 10.0, 10_000.0)?,
            gate_dbfs: num("gate_dbfs", d.gate_dbfs, -100.0, -20.0)?,
            limit_dbfs: num("limit_dbfs", d.limit_dbfs, -20.0, 0.0)?,
        }))
    }
}

fn db_to_lin(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// One-pole smoothing coefficient for a time constant of `ms` at `rate` Hz.
fn coeff(ms: f32, rate: u32) -> f32 {
    1.0 - (-1000.0 / (ms * rate as f32)).exp()
}

/// The AGC's running state and per-rate coefficients.
#[derive(Debug, Clone, Copy)]
struct Agc {
    s: AgcSettings,
    rate: u32,
    target: f32,
    max_gain: f32,
    min_gain: f32,
    gate_ms: f32,
    ceiling: f32,
    k_det: f32,
    k_attack: f32,
    k_release: f32,
    k_limit: f32,
    /// Mean-square level (normalised to full scale 1.0).
    level: f32,
    gain: f32,
    limit: f32,
}

impl Agc {
    fn new(s: AgcSettings, rate: u32) -> Self {
        let gate = db_to_lin(s.gate_dbfs);
        Self {
            s,
            rate,
            target: db_to_lin(s.target_dbfs),
            max_gain: db_to_lin(s.max_gain_db),
            min_gain: db_to_lin(s.min_gain_db),
            gate_ms: gate * gate,
            ceiling: db_to_lin(s.limit_dbfs) * 32767.0,
            k_det: coeff(DETECTOR_MS, rate),
            k_attack: coeff(s.attack_ms, rate),
            k_release: coeff(s.release_ms, rate),
            k_limit: coeff(50.0, rate),
            level: 0.0,
            gain: 1.0,
            limit: 1.0,
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.s, self.rate);
    }

    fn process(&mut self, samples: &mut [i16], ch: usize) {
        const NORM: f32 = 1.0 / (32768.0 * 32768.0);
        let inv_ch = 1.0 / ch as f32;
        for frame in samples.chunks_exact_mut(ch) {
            let power = frame
                .iter()
                .map(|&s| f32::from(s) * f32::from(s))
                .sum::<f32>()
                * inv_ch
                * NORM;
            self.level += self.k_det * (power - self.level);
            if self.level > self.gate_ms {
                let want = (self.target / self.level.sqrt()).clamp(self.min_gain, self.max_gain);
                let k = if want < self.gain {
                    self.k_attack
                } else {
                    self.k_release
                };
                self.gain += k * (want - self.gain);
            }
            let peak = frame
                .iter()
                .map(|&s| f32::from(s).abs())
                .fold(0.0f32, f32::max)
                * self.gain;
            // Limiter: instant attack (the gain drops to exactly what keeps this peak at the
            // ceiling), smooth release back towards unity.
            self.limit += self.k_limit * (1.0 - self.limit);
            if peak * self.limit > self.ceiling {
                self.limit = self.ceiling / peak;
            }
            let g = self.gain * self.limit;
            for s in frame.iter_mut() {
                *s = (f32::from(*s) * g)
                    .round()
                    .clamp(-self.ceiling, self.ceiling) as i16;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Fixed(f32),
    Agc(Agc),
}

/// One session's gain stage.
#[derive(Debug, Clone)]
pub struct GainProcessor {
    mode: GainMode,
    rate: u32,
    inner: Inner,
}

impl GainProcessor {
    /// Reads the settings for the context's layout.
    pub fn new(ctx: &ProcessorContext, config: &PluginConfig) -> Result<Self, PluginError> {
        let mode = GainMode::from_config(config)?;
        check_layout(config.path(), ctx)?;
        Ok(Self::with_mode(mode, ctx.sample_rate))
    }

    /// A gain stage for audio at `rate` Hz.
    pub fn with_mode(mode: GainMode, rate: u32) -> Self {
        let inner = match mode {
            GainMode::Fixed { gain_db } => Inner::Fixed(db_to_lin(gain_db)),
            GainMode::Agc(s) => Inner::Agc(Agc::new(s, rate)),
        };
        Self { mode, rate, inner }
    }

    /// The mode and settings.
    pub fn mode(&self) -> GainMode {
        self.mode
    }

    /// The AGC's current gain in dB (before the limiter); the fixed gain in fixed mode.
    pub fn current_gain_db(&self) -> f32 {
        match &self.inner {
            Inner::Fixed(g) => 20.0 * g.log10(),
            Inner::Agc(a) => 20.0 * a.gain.log10(),
        }
    }
}

impl AudioProcessor for GainProcessor {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        _events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        check_block(ID, audio.sample_rate, audio.channels, audio.samples.len())?;
        match &mut self.inner {
            Inner::Fixed(g) => {
                let g = *g;
                if g != 1.0 {
                    for s in audio.samples.iter_mut() {
                        *s = (f32::from(*s) * g).round().clamp(-32768.0, 32767.0) as i16;
                    }
                }
            }
            Inner::Agc(a) => {
                if audio.sample_rate != self.rate {
                    // Coefficients are per rate; keep the gain reached so far.
                    let (gain, level) = (a.gain, a.level);
                    *a = Agc::new(a.s, audio.sample_rate);
                    (a.gain, a.level) = (gain, level);
                    self.rate = audio.sample_rate;
                }
                a.process(&mut audio.samples, usize::from(audio.channels));
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        if let Inner::Agc(a) = &mut self.inner {
            a.reset();
        }
    }
}
