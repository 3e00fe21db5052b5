//! Load generator for WaaV Gateway: many concurrent `/ws` sessions streaming real-time audio into
//! the testkit's loopback STT in benchmark (`stamp`) mode, so gateway-added latency is measured
//! apart from provider time; plus idle-session memory and TTS first-byte phases. The
//! provider-hop phase ([`hop`]) puts a real cloud plugin and its fake's socket on the path.
//!
//! `waav-bench` (the CLI) drives it; `tests/smoke.rs` runs a short bounded load in CI.

pub mod eot;
pub mod failover;
pub mod gateway;
pub mod hedge;
pub mod hop;
pub mod load;
pub mod stats;
pub mod tts;

/// Raises this process's soft open-file limit to its hard limit (thousands of sockets need it;
/// children inherit it).
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
