//! Processor `level-vad`: a deterministic energy-gate VAD for pipeline tests, with fault knobs.

use waav_plugin_api::{
    AudioBuffer, AudioProcessor, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorEvent, ProcessorPlugin, Stage,
};

/// Speech is any frame whose peak reaches `level` (default 1000); `SpeechEnded` after
/// `silence_frames` quiet frames (default 5). `panic_after` / `error_after` (frames) inject a
/// fault, `panic_on_create: 1` panics when a session creates it; `gain` (default 1) scales the audio so tests can see the processor ran;
/// `end_of_turn: 1` also reports `EndOfTurn { probability: 0.9 }` with each `SpeechEnded` (a
/// stand-in turn model).
#[derive(Debug, Default, Clone, Copy)]
pub struct LevelVad;

impl Plugin for LevelVad {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("level-vad", "Level VAD (test)")
            .version(env!("CARGO_PKG_VERSION"))
            .description("Deterministic energy-gate VAD for tests")
    }
}

impl ProcessorPlugin for LevelVad {
    fn reports_speech(&self) -> bool {
        true
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreStt, Stage::PostTts]
    }

    fn create(
        &self,
        _ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        if config.u64("panic_on_create")? == Some(1) {
            panic!("level-vad: injected panic in create");
        }
        let n = |key: &str, default: u64| -> Result<u64, PluginError> {
            Ok(config.u64(key)?.unwrap_or(default))
        };
        Ok(Box::new(Gate {
            level: n("level", 1000)?.min(32_767) as i16,
            silence_frames: n("silence_frames", 5)?.clamp(1, 10_000) as u32,
            panic_after: config.u64("panic_after")?,
            error_after: config.u64("error_after")?,
            gain: n("gain", 1)?.min(16) as i16,
            end_of_turn: n("end_of_turn", 0)? == 1,
            frames: 0,
            speaking: false,
            quiet: 0,
        }))
    }
}

struct Gate {
    level: i16,
    silence_frames: u32,
    panic_after: Option<u64>,
    error_after: Option<u64>,
    gain: i16,
    end_of_turn: bool,
    frames: u64,
    speaking: bool,
    quiet: u32,
}

impl AudioProcessor for Gate {
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError> {
        self.frames += 1;
        if self.panic_after.is_some_and(|n| self.frames > n) {
            panic!("level-vad: injected panic");
        }
        if self.error_after.is_some_and(|n| self.frames > n) {
            return Err(PluginError::Permanent("level-vad: injected error".into()));
        }
        if self.gain != 1 {
            for s in &mut audio.samples {
                *s = s.saturating_mul(self.gain);
            }
        }
        let loud = audio
            .samples
            .iter()
            .any(|s| s.unsigned_abs() >= self.level.unsigned_abs());
        if loud {
            self.quiet = 0;
            if !self.speaking {
                self.speaking = true;
                events.push(ProcessorEvent::SpeechStarted);
            }
        } else if self.speaking {
            self.quiet += 1;
            if self.quiet >= self.silence_frames {
                self.speaking = false;
                events.push(ProcessorEvent::SpeechEnded);
                if self.end_of_turn {
                    events.push(ProcessorEvent::EndOfTurn { probability: 0.9 });
                }
            }
        }
        Ok(())
    }
}
