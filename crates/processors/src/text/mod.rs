//! Text processors, for the post-STT (transcripts) and pre-TTS (text to speak) stages.
//!
//! Both are linear in the text and allocate only their output.

pub mod pii;
pub mod pronunciations;

pub use pii::{PiiKind, RedactPiiPlugin, Redactor};
pub use pronunciations::{Pronouncer, PronunciationsPlugin};
