//! Fake lmnt services (in progress).
