//! Fake azure service (in progress).
