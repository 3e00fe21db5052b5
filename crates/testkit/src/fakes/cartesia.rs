//! Fake cartesia service (in progress).
