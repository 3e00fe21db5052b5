//! A gateway build that includes the Morse plugin: the whole of a custom distribution.

// Linking the plugin crate is what registers it.
use waav_example_morse as _;

fn main() -> std::process::ExitCode {
    waav_gateway::cli::main()
}
