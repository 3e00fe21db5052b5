//! Core middleware: client authentication and connection limits.

pub mod auth;
pub mod limits;
