//! Fake aws services (in progress).
