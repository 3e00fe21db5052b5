//! Fake assemblyai service (in progress).
