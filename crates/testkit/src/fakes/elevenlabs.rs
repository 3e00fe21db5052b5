//! Fake elevenlabs service (in progress).
