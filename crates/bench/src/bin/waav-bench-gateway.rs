//! The gateway built with the testkit's loopback providers, for benchmarks (the production
//! binary does not register them).

use waav_testkit as _;

fn main() -> std::process::ExitCode {
    waav_bench::raise_fd_limit();
    waav_gateway::cli::main()
}
