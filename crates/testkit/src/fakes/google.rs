//! Fake google services (in progress).
