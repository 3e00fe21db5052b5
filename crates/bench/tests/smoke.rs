//! CI smoke load: 50 real-time sessions × 5 s through the real gateway binary; fails on any lost
//! frame or error (never on latency).

use std::time::Duration;
use waav_bench::gateway::GatewayProcess;
use waav_bench::load::{self, LoadConfig, Pace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_five_seconds_lose_nothing() {
    waav_bench::raise_fd_limit();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_waav-bench-gateway"));
    let gw = GatewayProcess::spawn(&bin, None)
        .await
        .expect("gateway starts");
    let cfg = LoadConfig {
        url: format!("ws://{}/ws", gw.addr),
        sessions: 50,
        duration: Duration::from_secs(5),
        frame_ms: 20,
        sample_rate: 16_000,
        pace: Pace::Realtime,
        report_every: 5,
        ramp: Duration::from_secs(1),
        stt_pipeline: Vec::new(),
    };
    let r = load::run(&cfg, gw.pid()).await;
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.sessions_ok, 50, "{r:?}");
    assert_eq!(r.frames_sent, 50 * 250);
    assert_eq!(r.frames_received, r.frames_sent, "lost frames");
    assert_eq!(
        r.frame_latency.count as u64, r.frames_sent,
        "every frame's transit was reported"
    );
    assert!(r.gateway_cpu_us > 0, "gateway CPU was sampled");
}
