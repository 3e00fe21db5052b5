//! `pronunciations`: whole-word replacements in the text to speak.

use waav_plugin_api::{
    replace_words, Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext,
    ProcessorPlugin, Pronunciation, Stage, TextProcessor,
};

use crate::settings::Settings;

/// Plugin id.
pub const ID: &str = "pronunciations";
/// Most entries in `words`.
pub const MAX_WORDS: usize = 1_000;
/// Longest `word`, in bytes.
pub const MAX_WORD: usize = 256;
/// Longest `pronunciation`, in bytes.
pub const MAX_PRONUNCIATION: usize = 1_024;

/// The `pronunciations` plugin, at the pre-TTS stage: the configurable form of a session's
/// `tts_config.pronunciations`, with the same matcher ([`replace_words`]).
///
/// Settings:
/// - `words` (required): a list of `{word, pronunciation}` (at most 1,000; words 1–256 bytes,
///   pronunciations up to 1,024). Each `word` is replaced where it stands as a whole word (not
///   inside a longer word), matching case exactly (list `SQL` and `sql` to catch both), in list
///   order: a later entry sees what earlier ones wrote.
///
/// ```yaml
/// processors:
///   say_it: { type: pronunciations, config: { words: [ { word: SQL, pronunciation: sequel } ] } }
/// pipelines: { default_tts_pre: [say_it] }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct PronunciationsPlugin;

impl Plugin for PronunciationsPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Pronunciations")
            .version(env!("CARGO_PKG_VERSION"))
            .description("Whole-word, case-sensitive replacements in the text to speak")
    }
}

impl ProcessorPlugin for PronunciationsPlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PreTts]
    }

    fn create_text(
        &self,
        _ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn TextProcessor>, PluginError> {
        Ok(Box::new(Pronouncer::from_config(config)?))
    }
}

/// One session's pronunciation pass.
#[derive(Debug, Clone)]
pub struct Pronouncer {
    words: Vec<Pronunciation>,
}

impl Pronouncer {
    /// Reads and checks the settings.
    pub fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        Settings::new(config, &["words"])?;
        let bad = |msg: String| PluginError::Config(format!("{}.words{msg}", config.path()));
        let list = config
            .raw("words")
            .filter(|v| !v.is_null())
            .ok_or_else(|| bad(": required (a list of {word, pronunciation})".into()))?
            .as_array()
            .ok_or_else(|| bad(": must be a list of {word, pronunciation}".into()))?;
        if list.len() > MAX_WORDS {
            return Err(bad(format!(
                ": {} entries; at most {MAX_WORDS}",
                list.len()
            )));
        }
        let mut words = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let field = |key: &str| {
                entry
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("[{i}].{key}: required, a string")))
            };
            if let Some(other) = entry
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "word" && *k != "pronunciation"))
            {
                return Err(bad(format!(
                    "[{i}]: unknown key {other:?} (known: word, pronunciation)"
                )));
            }
            let (word, pronunciation) = (field("word")?, field("pronunciation")?);
            if word.is_empty() || word.len() > MAX_WORD {
                return Err(bad(format!("[{i}].word: must be 1–{MAX_WORD} bytes")));
            }
            if pronunciation.len() > MAX_PRONUNCIATION {
                return Err(bad(format!(
                    "[{i}].pronunciation: at most {MAX_PRONUNCIATION} bytes"
                )));
            }
            words.push(Pronunciation {
                word,
                pronunciation,
            });
        }
        Ok(Self::new(words))
    }

    /// A pass over `words`, in order.
    pub fn new(words: Vec<Pronunciation>) -> Self {
        Self { words }
    }
}

impl TextProcessor for Pronouncer {
    fn process(&mut self, text: &mut String) -> Result<(), PluginError> {
        *text = replace_words(text, &self.words);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[(&str, &str)], text: &str) -> String {
        let mut p = Pronouncer::new(
            words
                .iter()
                .map(|(w, p)| Pronunciation {
                    word: (*w).into(),
                    pronunciation: (*p).into(),
                })
                .collect(),
        );
        let mut t = text.to_owned();
        p.process(&mut t).unwrap();
        t
    }

    #[test]
    fn whole_words_only_and_case_exact() {
        let w = [("SQL", "sequel")];
        assert_eq!(run(&w, "SQL and MySQL, SQL."), "sequel and MySQL, sequel.");
        assert_eq!(run(&w, "sql SQLite NoSQL"), "sql SQLite NoSQL");
        assert_eq!(run(&[("GIF", "jif")], "GIFs and a GIF"), "GIFs and a jif");
        assert_eq!(run(&[("é", "e")], "é café é"), "e café e");
    }

    #[test]
    fn settings_are_checked() {
        let cfg = |v: serde_json::Value| {
            PluginConfig::from_value("plugins.processors.say.config", v).unwrap()
        };
        let mut p = Pronouncer::from_config(&cfg(serde_json::json!({
            "words": [{"word": "SQL", "pronunciation": "sequel"}]
        })))
        .unwrap();
        let mut t = "SQL".to_owned();
        p.process(&mut t).unwrap();
        assert_eq!(t, "sequel");
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"words": "SQL"}),
            serde_json::json!({"words": [{"word": "SQL"}]}),
            serde_json::json!({"words": [{"word": "", "pronunciation": "x"}]}),
            serde_json::json!({"words": [{"word": "a", "pronunciation": "b", "ipa": "c"}]}),
            serde_json::json!({"words": [], "extra": 1}),
        ] {
            let e = Pronouncer::from_config(&cfg(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn entries_apply_in_order() {
        let w = [("AWS", "A W S"), ("A", "ay")];
        assert_eq!(run(&w, "AWS"), "ay W S");
    }
}
