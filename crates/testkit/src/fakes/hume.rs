//! Fake hume services (in progress).
