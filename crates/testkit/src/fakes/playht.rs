//! Fake playht services (in progress).
