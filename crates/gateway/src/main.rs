//! The `waav-gateway` binary: the gateway with every plugin crate this build enables.

// Linking a plugin crate registers its plugins.
#[cfg(feature = "local")]
use waav_local as _;

fn main() -> std::process::ExitCode {
    waav_gateway::cli::main()
}
