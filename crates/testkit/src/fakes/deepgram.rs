//! Fake deepgram service (in progress).
