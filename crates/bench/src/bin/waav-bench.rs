//! `waav-bench`: measures WaaV Gateway on the voice path. See docs/PERFORMANCE.md.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use waav_bench::gateway::{sibling_binary, GatewayProcess};
use waav_bench::load::{self, LoadConfig, Pace};
use waav_bench::stats::Distribution;

/// Load generator: N concurrent /ws sessions of real-time 20 ms PCM16 frames into the loopback
/// STT (stamp mode), plus idle-memory and TTS first-byte phases.
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
