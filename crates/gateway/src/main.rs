//! The `waav-gateway` binary: the gateway with every plugin crate this build enables.

fn main() -> std::process::ExitCode {
    waav_gateway::cli::main()
}
