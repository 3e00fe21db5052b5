//! `waav-bench`: measures WaaV Gateway on the voice path. See docs/PERFORMANCE.md.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use waav_bench::gateway::{sibling_binary, GatewayProcess};
use waav_bench::hop;
use waav_bench::load::{self, LoadConfig, Pace};
use waav_bench::stats::Distribution;

/// Load generator: N concurrent /ws sessions of real-time 20 ms PCM16 frames into the loopback
/// STT (stamp mode), plus idle-memory and TTS first-byte phases.
///
/// With --hop: the provider-hop mode. The bench starts the testkit's Deepgram fakes (listen and
/// speak) in its own process, spawns the production gateway (`waav-gateway`, built with the
/// `deepgram` feature) configured with the `deepgram` STT and TTS plugins pointed at them, and
/// measures the round trip frame → fake → result back; then the same load against the bare
/// relay (`waav-bench-floor --upstream`) to the same fake. Gateway minus relay is the added
/// latency of the hop. --idle opens sessions with their provider socket; --tts measures first
/// byte through the gateway (miss and cache hit) against the fake's own first byte measured
/// directly.
#[derive(Parser)]
#[command(name = "waav-bench", version)]
struct Args {
    /// Concurrent streaming sessions.
    #[arg(short = 'n', long, default_value_t = 100)]
    sessions: usize,
    /// Seconds each session streams.
    #[arg(short, long, default_value_t = 10)]
    duration: u64,
    /// Send frames as fast as possible instead of in real time.
    #[arg(long)]
    flood: bool,
    /// Spread session starts over this many seconds.
    #[arg(long, default_value_t = 2.0)]
    ramp: f64,
    /// Provider report every N frames.
    #[arg(long, default_value_t = 5)]
    report_every: u32,
    /// Pre-STT processor instances on every session (`--stt-pipeline denoise,vad`); the
    /// gateway must define them (`WAAV_CONFIG` with `plugins.processors`).
    #[arg(long, value_delimiter = ',')]
    stt_pipeline: Vec<String>,
    /// Also measure memory of this many idle (configured, silent) sessions.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Also measure TTS first byte over this many requests.
    #[arg(long, default_value_t = 0)]
    tts: usize,
    /// TTS provider for the TTS phase.
    #[arg(long, default_value = "loopback")]
    tts_provider: String,
    /// Measure the floor (a bare WebSocket relay) instead of the gateway.
    #[arg(long)]
    floor: bool,
    /// Use a running server at this /ws URL instead of spawning one (give --pid for CPU/RSS).
    #[arg(long)]
    url: Option<String>,
    /// Pid of the server given with --url.
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Gateway config file for the spawned gateway.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Provider-hop mode (see above): the deepgram plugin and its fake over real sockets.
    #[arg(long)]
    hop: bool,
    /// Hedged-first-byte mode: this many sessions per mode (hedge off, on, delayed) through
    /// `waav-bench-gateway`, `speak` → first audio with a loopback provider whose every
    /// --hedge-slow-every-th session is slow; the chain's partner is a healthy loopback.
    #[arg(long, default_value_t = 0)]
    hedge: usize,
    /// With --hedge: the provider's usual first-byte delay (ms).
    #[arg(long, default_value_t = 20)]
    hedge_fast_ms: u64,
    /// With --hedge: the slow sessions' first-byte delay (ms).
    #[arg(long, default_value_t = 400)]
    hedge_slow_ms: u64,
    /// With --hedge: one session in this many is slow.
    #[arg(long, default_value_t = 10)]
    hedge_slow_every: usize,
    /// With --hedge: `resilience.tts_hedge_delay_ms` of the delayed mode.
    #[arg(long, default_value_t = 50)]
    hedge_delay_ms: u64,
    /// With --hop: `both` (gateway, then relay), `gateway` or `relay`.
    #[arg(long, default_value = "both")]
    hop_target: String,
    /// With --hop: `resilience.stt_reconnects: 0` in the gateway config (no replay buffer).
    #[arg(long)]
    no_replay: bool,
    /// With --hop: the gateway binary (default: `waav-gateway` beside this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Failover-time mode: this many runs per fault class through `waav-bench-gateway`
    /// (loopback fault knobs), fault → first result / audio from the next provider.
    #[arg(long, default_value_t = 0)]
    failover: usize,
    /// With --failover: the gateway's `resilience.tts_first_byte_ms`.
    #[arg(long, default_value_t = 300)]
    failover_first_byte_ms: u64,
    /// End-of-turn mode: this many Piper-spoken utterances streamed in real time into the local
    /// STT behind `[vad, turn_detect]` (the production `waav-gateway`, or --gateway-bin; --config
    /// replaces the generated YAML). Needs the models (`WAAV_MODELS_DIR`).
    #[arg(long, default_value_t = 0)]
    eot: usize,
    /// With --eot: the pipeline VAD's `min_silence_ms` in the generated config (the `vad`
    /// processor's default; 150 ends utterances no sooner, the decode being the longer wait,
    /// and splits sentences at a comma's pause).
    #[arg(long, default_value_t = 300)]
    eot_vad_silence_ms: u64,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn row(name: &str, d: &Distribution) -> String {
    format!(
        "{name:<34} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        d.count, d.p50_us, d.p90_us, d.p99_us, d.p999_us, d.max_us
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    waav_bench::raise_fd_limit();
    let args = Args::parse();
    if args.hedge > 0 {
        return hedge_main(&args).await;
    }
    if args.hop {
        return hop_main(&args).await;
    }
    if args.failover > 0 {
        return failover_main(&args).await;
    }
    if args.eot > 0 {
        return eot_main(&args).await;
    }
    let (url, pid, _child) = match &args.url {
        Some(u) => (u.clone(), args.pid, None),
        None => {
            let bin = sibling_binary(if args.floor {
                "waav-bench-floor"
            } else {
                "waav-bench-gateway"
            });
            match GatewayProcess::spawn(&bin, args.config.as_ref().filter(|_| !args.floor)).await {
                Ok(g) => (format!("ws://{}/ws", g.addr), g.pid(), Some(g)),
                Err(e) => {
                    eprintln!("error: cannot start {}: {e}", bin.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let cfg = LoadConfig {
        url: url.clone(),
        sessions: args.sessions,
        duration: Duration::from_secs(args.duration),
        frame_ms: 20,
        sample_rate: 16_000,
        pace: if args.flood {
            Pace::Flood
        } else {
            Pace::Realtime
        },
        report_every: args.report_every,
        ramp: Duration::from_secs_f64(args.ramp),
        stt_pipeline: args.stt_pipeline.clone(),
    };
    let target = if args.floor {
        "floor (bare relay)"
    } else {
        "gateway"
    };
    eprintln!(
        "running {} sessions × {} s against the {target} at {url} …",
        args.sessions, args.duration
    );
    let report = if args.sessions > 0 {
        load::run(&cfg, pid).await
    } else {
        load::LoadReport::default()
    };
    let idle = if args.idle > 0 && pid != 0 {
        Some(load::idle(&url, args.idle, pid).await)
    } else {
        None
    };
    let tts = if args.tts > 0 && !args.floor {
        Some(waav_bench::tts::run(&url, args.tts, &args.tts_provider).await)
    } else {
        None
    };

    println!(
        "target: {target}; sessions: {}; duration: {} s; pace: {:?}",
        args.sessions, args.duration, cfg.pace
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (µs)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    println!("{}", row("frame: client → provider", &report.frame_latency));
    println!(
        "{}",
        row("result: provider → client", &report.result_latency)
    );
    println!("{}", row("generator send lag", &report.send_lag));
    if (report.frame_latency.count as u64) < report.frames_received / 2 {
        println!(
            "note: {} of {} frames reached the provider with their stamp: a pre-STT processor \
             rewrote the samples, so the frame transit row covers only those",
            report.frame_latency.count, report.frames_received
        );
    }
    if let Some(Ok(t)) = &tts {
        println!(
            "{}",
            row("tts first byte via gateway", &t.gateway_first_byte)
        );
        println!(
            "{}",
            row("tts first byte, cache hit", &t.cache_hit_first_byte)
        );
        println!(
            "{}",
            row("tts first byte, provider alone", &t.provider_first_byte)
        );
    }
    let lost = report.frames_sent.saturating_sub(report.frames_received);
    println!(
        "frames sent {} received {} lost {lost}; sessions ok {}/{}; errors {:?}",
        report.frames_sent,
        report.frames_received,
        report.sessions_ok,
        args.sessions,
        report.errors
    );
    println!(
        "{target} CPU {:.1} µs/frame ({:.2} cores); generator {:.2} cores; {target} RSS {} KiB",
        report.gateway_cpu_us_per_frame,
        report.gateway_cores,
        report.generator_cores,
        report.gateway_rss_kib
    );
    if report.generator_cores + report.gateway_cores > 1.8 || report.send_lag.p99_us > 5_000.0 {
        println!("note: the rig is saturated (generator + server near 2 cores or sends late): latency figures include rig queueing");
    }
    if let Some(i) = &idle {
        match i {
            Ok(i) => println!(
                "idle: {} sessions, RSS {} → {} KiB, {:.0} bytes/session",
                i.sessions, i.rss_before_kib, i.rss_after_kib, i.bytes_per_session
            ),
            Err(e) => println!("idle phase failed: {e}"),
        }
    }
    if let Some(Err(e)) = &tts {
        println!("tts phase failed: {e}");
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "target": target, "config": cfg, "stt": report,
            "idle": idle.as_ref().and_then(|r| r.as_ref().ok()),
            "tts": tts.as_ref().and_then(|r| r.as_ref().ok()),
        });
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    let failed = lost > 0 || !report.errors.is_empty() || report.sessions_ok < args.sessions;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn eot_main(args: &Args) -> ExitCode {
    use waav_bench::eot;
    let cfg_path = match &args.config {
        Some(c) => c.clone(),
        None => {
            let p =
                std::env::temp_dir().join(format!("waav-bench-eot-{}.yaml", std::process::id()));
            if let Err(e) = std::fs::write(&p, eot::gateway_yaml(args.eot_vad_silence_ms)) {
                eprintln!("error: cannot write {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
            p
        }
    };
    let bin = args
        .gateway_bin
        .clone()
        .unwrap_or_else(|| sibling_binary("waav-gateway"));
    let (url, _server) = match &args.url {
        Some(u) => (u.clone(), None),
        None => match GatewayProcess::spawn(&bin, Some(&cfg_path)).await {
            Ok(g) => (format!("ws://{}/ws", g.addr), Some(g)),
            Err(e) => {
                eprintln!("error: cannot start {}: {e}", bin.display());
                return ExitCode::FAILURE;
            }
        },
    };
    eprintln!(
        "eot: {} utterances against {url} ({}) …",
        args.eot,
        bin.display()
    );
    let report = eot::run(&url, args.eot).await;
    if args.config.is_none() {
        let _ = std::fs::remove_file(&cfg_path);
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: eot phase failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<4} {:>6} {:>8} {:>8} {:>8} {:>6}  words",
        "#", "speech", "interim", "final", "turn end", "finals"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    for (i, u) in report.utterances.iter().enumerate() {
        println!(
            "{i:<4} {:>6} {:>8} {:>8} {:>8} {:>6}  {:?} ({:.2})",
            u.speech_ms,
            ms(u.first_interim_ms),
            ms(u.first_final_ms),
            ms(u.speech_final_ms),
            u.finals,
            u.text,
            u.word_match
        );
    }
    let p = |d: &Distribution| {
        format!(
            "p50 {:.0} ms, p90 {:.0} ms (n={})",
            d.p50_us / 1e3,
            d.p90_us / 1e3,
            d.count
        )
    };
    println!(
        "speech start → first interim:   {}",
        p(&report.first_interim)
    );
    println!("end of speech → first final:    {}", p(&report.first_final));
    println!(
        "end of speech → is_speech_final: {}",
        p(&report.speech_final)
    );
    println!(
        "cut utterances: {} of {}; missing final or turn end: {}",
        report.cut,
        report.utterances.len(),
        report.missing
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({"mode": "eot", "report": report});
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    if report.missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn load_config(args: &Args, url: String) -> LoadConfig {
    LoadConfig {
        url,
        sessions: args.sessions,
        duration: Duration::from_secs(args.duration),
        frame_ms: 20,
        sample_rate: 16_000,
        pace: if args.flood {
            Pace::Flood
        } else {
            Pace::Realtime
        },
        report_every: args.report_every,
        ramp: Duration::from_secs_f64(args.ramp),
        stt_pipeline: args.stt_pipeline.clone(),
    }
}

/// One hop target's results.
#[derive(serde::Serialize)]
struct HopRun {
    target: &'static str,
    stt: Option<hop::HopReport>,
    idle: Option<waav_bench::load::IdleReport>,
    tts: Option<waav_bench::tts::VendorTtsReport>,
}

async fn hop_main(args: &Args) -> ExitCode {
    let fakes = hop::Fakes::start(args.report_every, 20).await;
    let targets: &[&'static str] = match args.hop_target.as_str() {
        "gateway" => &["gateway"],
        "relay" => &["relay"],
        "both" => &["gateway", "relay"],
        other => {
            eprintln!("error: --hop-target {other}: expected both, gateway or relay");
            return ExitCode::FAILURE;
        }
    };
    let cfg_path = std::env::temp_dir().join(format!("waav-bench-hop-{}.yaml", std::process::id()));
    if let Err(e) = std::fs::write(&cfg_path, fakes.gateway_yaml(!args.no_replay)) {
        eprintln!("error: cannot write {}: {e}", cfg_path.display());
        return ExitCode::FAILURE;
    }
    let mut runs = Vec::new();
    let mut failed = false;
    for &target in targets {
        let spawned = if target == "gateway" {
            let bin = args
                .gateway_bin
                .clone()
                .unwrap_or_else(|| sibling_binary("waav-gateway"));
            GatewayProcess::spawn(&bin, Some(&cfg_path))
                .await
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))
        } else {
            let bin = sibling_binary("waav-bench-floor");
            let extra = ["--upstream".to_owned(), fakes.stt.base_url()];
            GatewayProcess::spawn_with(&bin, None, &extra)
                .await
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))
        };
        let server = match spawned {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = format!("ws://{}/ws", server.addr);
        let cfg = load_config(args, url.clone());
        eprintln!(
            "hop: {} sessions × {} s against the {target} at {url} (deepgram fake at {}) …",
            args.sessions,
            args.duration,
            fakes.stt.base_url()
        );
        let stt = if args.sessions > 0 {
            Some(hop::run(&cfg, server.pid()).await)
        } else {
            None
        };
        let idle = if args.idle > 0 {
            match hop::idle(&url, args.idle, server.pid()).await {
                Ok(i) => Some(i),
                Err(e) => {
                    println!("{target}: idle phase failed: {e}");
                    failed = true;
                    None
                }
            }
        } else {
            None
        };
        let tts = if args.tts > 0 && target == "gateway" {
            match waav_bench::tts::run_vendor(&url, &fakes.tts.base_url(), hop::API_KEY, args.tts)
                .await
            {
                Ok(t) => Some(t),
                Err(e) => {
                    println!("{target}: tts phase failed: {e}");
                    failed = true;
                    None
                }
            }
        } else {
            None
        };
        print_hop(target, args, stt.as_ref(), idle.as_ref(), tts.as_ref());
        if let Some(r) = &stt {
            failed |= !r.errors.is_empty()
                || r.sessions_ok < args.sessions
                || r.results_received < r.results_expected;
        }
        runs.push(HopRun {
            target,
            stt,
            idle,
            tts,
        });
        drop(server);
    }
    let _ = std::fs::remove_file(&cfg_path);
    let gw = runs
        .iter()
        .find(|r| r.target == "gateway")
        .and_then(|r| r.stt.as_ref());
    let relay = runs
        .iter()
        .find(|r| r.target == "relay")
        .and_then(|r| r.stt.as_ref());
    let added = match (gw, relay) {
        (Some(g), Some(r)) => {
            let a = serde_json::json!({
                "round_trip_p50_us": g.round_trip.p50_us - r.round_trip.p50_us,
                "round_trip_p99_us": g.round_trip.p99_us - r.round_trip.p99_us,
                "cpu_us_per_frame": g.server_cpu_us_per_frame - r.server_cpu_us_per_frame,
                "bytes_per_streaming_session": g.bytes_per_streaming_session - r.bytes_per_streaming_session,
            });
            println!(
                "gateway − relay: round trip p50 {:+.1} µs, p99 {:+.1} µs; CPU {:+.1} µs/frame; streaming memory {:+.0} B/session",
                g.round_trip.p50_us - r.round_trip.p50_us,
                g.round_trip.p99_us - r.round_trip.p99_us,
                g.server_cpu_us_per_frame - r.server_cpu_us_per_frame,
                g.bytes_per_streaming_session - r.bytes_per_streaming_session
            );
            Some(a)
        }
        _ => None,
    };
    if let Some(path) = &args.json {
        let json = serde_json::json!({"mode": "hop", "provider": "deepgram",
            "sessions": args.sessions, "duration_s": args.duration, "runs": runs, "added": added});
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_hop(
    target: &str,
    args: &Args,
    stt: Option<&hop::HopReport>,
    idle: Option<&waav_bench::load::IdleReport>,
    tts: Option<&waav_bench::tts::VendorTtsReport>,
) {
    println!(
        "target: {target} (hop: deepgram); sessions: {}; duration: {} s",
        args.sessions, args.duration
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (µs)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    if let Some(r) = stt {
        println!(
            "{}",
            row("round trip: frame → fake → result", &r.round_trip)
        );
        println!("{}", row("generator send lag", &r.send_lag));
    }
    if let Some(t) = tts {
        println!(
            "{}",
            row("tts first byte via gateway", &t.gateway_first_byte)
        );
        println!(
            "{}",
            row("tts first byte, cache hit", &t.cache_hit_first_byte)
        );
        println!(
            "{}",
            row("tts first byte, fake direct", &t.vendor_first_byte)
        );
        println!(
            "tts added first byte (gateway − fake direct): p50 {:+.1} µs, p99 {:+.1} µs",
            t.added_p50_us, t.added_p99_us
        );
    }
    if let Some(r) = stt {
        println!(
            "frames sent {}; results {}/{}; sessions ok {}/{}; errors {:?}",
            r.frames_sent,
            r.results_received,
            r.results_expected,
            r.sessions_ok,
            args.sessions,
            r.errors
        );
        println!(
            "{target} CPU {:.1} µs/frame ({:.2} cores); generator + fakes {:.2} cores; {target} RSS {} → {} KiB streaming ({:.0} B/session)",
            r.server_cpu_us_per_frame,
            r.server_cores,
            r.generator_cores,
            r.server_rss_before_kib,
            r.server_rss_peak_kib,
            r.bytes_per_streaming_session
        );
        if r.generator_cores + r.server_cores > 1.8 || r.send_lag.p99_us > 5_000.0 {
            println!("note: the rig is saturated (generator + server near 2 cores or sends late): latency figures include rig queueing");
        }
    }
    if let Some(i) = idle {
        println!(
            "idle (provider socket open): {} sessions, RSS {} → {} KiB, {:.0} bytes/session",
            i.sessions, i.rss_before_kib, i.rss_after_kib, i.bytes_per_session
        );
    }
}

/// `--failover N`: N runs per fault class, one session at a time.
async fn failover_main(args: &Args) -> ExitCode {
    use waav_bench::failover;
    let cfg_path =
        std::env::temp_dir().join(format!("waav-bench-failover-{}.yaml", std::process::id()));
    if let Err(e) = std::fs::write(
        &cfg_path,
        failover::gateway_yaml(args.failover_first_byte_ms),
    ) {
        eprintln!("error: {}: {e}", cfg_path.display());
        return ExitCode::FAILURE;
    }
    let bin = sibling_binary("waav-bench-gateway");
    let server = match GatewayProcess::spawn(&bin, Some(&cfg_path)).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: cannot start {}: {e}", bin.display());
            return ExitCode::FAILURE;
        }
    };
    let url = format!("ws://{}/ws", server.addr);
    eprintln!("failover: {} runs per class against {url} …", args.failover);
    let mut reports = Vec::new();
    for class in failover::CLASSES {
        reports
            .push(failover::measure(&url, class, args.failover, args.failover_first_byte_ms).await);
    }
    drop(server);
    let _ = std::fs::remove_file(&cfg_path);
    println!(
        "failover time (fault -> first result/audio from the next provider), {} runs per class, tts_first_byte_ms {}",
        args.failover, args.failover_first_byte_ms
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  failures",
        "class (us)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    let mut failed = false;
    for r in &reports {
        println!("{}  {}", row(r.class, &r.failover), r.failures);
        failed |= r.failures > 0;
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({"mode": "failover", "runs": args.failover,
            "tts_first_byte_ms": args.failover_first_byte_ms, "classes": reports});
        if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
            eprintln!("error: {}: {e}", path.display());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--hedge N`: N sessions per mode (hedge off, on at once, delayed), one at a time.
async fn hedge_main(args: &Args) -> ExitCode {
    use waav_bench::hedge::{self, Pattern};
    let pattern = Pattern {
        fast_ms: args.hedge_fast_ms,
        slow_ms: args.hedge_slow_ms,
        slow_every: args.hedge_slow_every,
    };
    let bin = sibling_binary("waav-bench-gateway");
    let mut reports = Vec::new();
    // (mode, the sessions' `hedge`, the gateway's delay)
    let modes = [
        ("off", false, 0),
        ("on", true, 0),
        ("delayed", true, args.hedge_delay_ms),
    ];
    for (mode, on, delay_ms) in modes {
        let cfg_path = std::env::temp_dir().join(format!(
            "waav-bench-hedge-{}-{mode}.yaml",
            std::process::id()
        ));
        if let Err(e) = std::fs::write(&cfg_path, hedge::gateway_yaml(delay_ms)) {
            eprintln!("error: {}: {e}", cfg_path.display());
            return ExitCode::FAILURE;
        }
        let server = match GatewayProcess::spawn(&bin, Some(&cfg_path)).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: cannot start {}: {e}", bin.display());
                return ExitCode::FAILURE;
            }
        };
        let url = format!("ws://{}/ws", server.addr);
        eprintln!("hedge {mode}: {} sessions against {url} …", args.hedge);
        reports.push(hedge::measure(&url, mode, on, delay_ms, args.hedge, pattern).await);
        drop(server);
        let _ = std::fs::remove_file(&cfg_path);
    }
    println!(
        "TTS first byte (speak -> first audio frame), {} sessions per mode; provider latency_ms {} (every {}th session {}), partner: healthy loopback",
        args.hedge, pattern.fast_ms, pattern.slow_every, pattern.slow_ms
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  switched failures",
        "mode (us)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    let mut failed = false;
    for r in &reports {
        let name = format!("{} (delay {} ms)", r.mode, r.delay_ms);
        println!(
            "{}  {:>8} {:>8}",
            row(&name, &r.first_byte),
            r.switched,
            r.failures
        );
        failed |= r.failures > 0;
    }
    if let [off, on, delayed] = reports.as_slice() {
        for r in [on, delayed] {
            println!(
                "gain ({}): p50 {:+.1} ms, p99 {:+.1} ms",
                r.mode,
                (off.first_byte.p50_us - r.first_byte.p50_us) / 1000.0,
                (off.first_byte.p99_us - r.first_byte.p99_us) / 1000.0
            );
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({"mode": "hedge", "sessions": args.hedge,
            "pattern": pattern, "modes": reports});
        if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
            eprintln!("error: {}: {e}", path.display());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
