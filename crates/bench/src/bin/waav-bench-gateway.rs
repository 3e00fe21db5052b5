//! The gateway built with the testkit's loopback providers and the built-in processors, for
//! benchmarks (the production binary does not register the loopbacks).

use waav_processors as _;
use waav_testkit as _;

fn main() -> std::process::ExitCode {
    waav_bench::raise_fd_limit();
    waav_gateway::cli::main()
}
