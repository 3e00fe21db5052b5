//! Fake ibm services (in progress).
