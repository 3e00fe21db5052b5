//! Provider-hop smoke: a short bounded load through the bare relay to the Deepgram fake, the TTS
//! fake measured directly, and — when the production gateway binary (`waav-gateway`, from
//! `waav-server`) has been built into the same target dir — the same through the gateway with
//! the real `deepgram` plugin. Asserts results come back for every frame they answer and that
//! the numbers are finite; never on latency.

use std::path::PathBuf;
use std::time::Duration;
use waav_bench::gateway::{sibling_binary, GatewayProcess};
use waav_bench::hop::{self, Fakes};
use waav_bench::load::{LoadConfig, Pace};

fn cfg(url: String) -> LoadConfig {
    LoadConfig {
        url,
        sessions: 5,
        duration: Duration::from_secs(2),
        frame_ms: 20,
        sample_rate: 16_000,
        pace: Pace::Realtime,
        report_every: 5,
        ramp: Duration::from_millis(200),
        stt_pipeline: Vec::new(),
    }
}

fn check(r: &hop::HopReport) {
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.sessions_ok, 5, "{r:?}");
    assert_eq!(r.frames_sent, 5 * 100);
    assert_eq!(r.results_expected, 5 * 20);
    assert_eq!(r.results_received, r.results_expected, "{r:?}");
    assert_eq!(r.round_trip.count as u64, r.results_received);
    let d = &r.round_trip;
    for x in [d.p50_us, d.p99_us, d.max_us, r.server_cpu_us_per_frame] {
        assert!(x.is_finite() && x >= 0.0, "{r:?}");
    }
    assert!(d.p50_us > 0.0 && d.p50_us <= d.p99_us, "{d:?}");
    assert!(r.server_cpu_us > 0, "server CPU was sampled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_hop_gets_every_result_back() {
    waav_bench::raise_fd_limit();
    let fakes = Fakes::start(5, 20).await;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_waav-bench-floor"));
    let relay =
        GatewayProcess::spawn_with(&bin, None, &["--upstream".into(), fakes.stt.base_url()])
            .await
            .expect("relay starts");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        hop::run(&cfg(format!("ws://{}/ws", relay.addr)), relay.pid()),
    )
    .await
    .expect("bounded");
    check(&r);
    // The fake saw the sessions and every frame.
    let seen = fakes.stt.sessions();
    assert_eq!(seen.len(), 5);
    assert!(
        seen.iter().all(|s| s.audio_frames == 100),
        "{:?}",
        seen.iter().map(|s| s.audio_frames).collect::<Vec<_>>()
    );
    let idle = hop::idle(&format!("ws://{}/ws", relay.addr), 10, relay.pid())
        .await
        .expect("idle phase");
    assert_eq!(idle.sessions, 10);
    assert!(idle.bytes_per_session.is_finite());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_fake_first_byte_direct() {
    let fakes = Fakes::start(5, 20).await;
    let d = tokio::time::timeout(
        Duration::from_secs(30),
        waav_bench::tts::deepgram_direct(&fakes.tts.base_url(), hop::API_KEY, 20),
    )
    .await
    .expect("bounded")
    .expect("direct first byte");
    assert_eq!(d.count, 20);
    assert!(d.p50_us.is_finite() && d.p50_us > 0.0 && d.p50_us <= d.max_us);
    let s = fakes.tts.sessions();
    assert_eq!(s[0].flushes, 20);
    assert!(s[0].audio_frames_sent > 0);
}

/// The production gateway binary, if built into this target dir (`cargo test --workspace` and
/// `cargo build -p waav-server` build it), or `WAAV_BENCH_GATEWAY_BIN`.
fn gateway_bin() -> Option<PathBuf> {
    std::env::var_os("WAAV_BENCH_GATEWAY_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(sibling_binary("waav-gateway")))
        .filter(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_hop_through_the_deepgram_plugin() {
    waav_bench::raise_fd_limit();
    let Some(bin) = gateway_bin() else {
        eprintln!(
            "skipped: no waav-gateway binary beside the test (build waav-server first or set WAAV_BENCH_GATEWAY_BIN)"
        );
        return;
    };
    let fakes = Fakes::start(5, 20).await;
    let path =
        std::env::temp_dir().join(format!("waav-bench-hop-test-{}.yaml", std::process::id()));
    std::fs::write(&path, fakes.gateway_yaml(true)).expect("write config");
    let gw = GatewayProcess::spawn(&bin, Some(&path))
        .await
        .expect("gateway starts");
    let url = format!("ws://{}/ws", gw.addr);
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        hop::run(&cfg(url.clone()), gw.pid()),
    )
    .await
    .expect("bounded");
    check(&r);
    // The plugin dialled the fake with the query the relay copies.
    let req = &fakes.stt.requests()[0];
    for pair in hop::LISTEN_QUERY.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        assert_eq!(req.query(k), Some(v), "{k} in {}", req.uri);
    }
    let t = tokio::time::timeout(
        Duration::from_secs(60),
        waav_bench::tts::run_vendor(&url, &fakes.tts.base_url(), hop::API_KEY, 10),
    )
    .await
    .expect("bounded")
    .expect("tts phase");
    assert_eq!(t.gateway_first_byte.count, 10);
    assert_eq!(t.cache_hit_first_byte.count, 10);
    assert_eq!(t.vendor_first_byte.count, 10);
    assert!(t.added_p50_us.is_finite() && t.added_p99_us.is_finite());
    let _ = std::fs::remove_file(&path);
}
