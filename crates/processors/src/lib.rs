//! Built-in audio processors (in progress).
