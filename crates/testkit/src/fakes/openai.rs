//! Fake OpenAI-compatible audio API (in progress).
