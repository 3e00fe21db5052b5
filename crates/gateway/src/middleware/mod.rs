//! Core middleware: client authentication, connection caps and rate limiting.

pub mod auth;
pub mod limits;
pub mod rate_limit;
