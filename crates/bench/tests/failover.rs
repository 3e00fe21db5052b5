//! The failover-time mode, short: every fault class switches and yields a sample through the
//! real `waav-bench-gateway` binary (never a timing assertion).

use waav_bench::failover;
use waav_bench::gateway::GatewayProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_class_fails_over_and_is_measured() {
    let dir = tempfile_dir();
    let cfg = dir.join("failover.yaml");
    std::fs::write(&cfg, failover::gateway_yaml(300)).unwrap();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_waav-bench-gateway"));
    let gw = GatewayProcess::spawn(&bin, Some(&cfg))
        .await
        .expect("gateway starts");
    let url = format!("ws://{}/ws", gw.addr);
    for class in failover::CLASSES {
        let r = failover::measure(&url, class, 2, 300).await;
        assert_eq!(r.failures, 0, "{class}: {r:?}");
        assert_eq!(r.failover.count, 2, "{class}: {r:?}");
        assert!(r.failover.p50_us > 0.0, "{class}: {r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("waav-bench-failover-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
