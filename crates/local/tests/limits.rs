//! The plugins refuse absurd audio formats in `connect` before sizing anything from them: a
//! direct caller (not the gateway core, which checks too) must not be able to make them plan a
//! 4-GHz resampler or a frame buffer of billions of samples.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use waav_local::plugins::{InputConverter, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use waav_plugin_api::{
    AudioEncoding, PluginError, SttIo, SttPlugin, SttSessionConfig, TtsPlugin, TtsSessionConfig,
};

/// Records the largest single allocation, so a test can tell "refused" from "refused after
/// allocating a gigabyte".
struct PeakAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

fn assert_config_error(what: &str, result: Result<impl Sized, PluginError>, mentions: &str) {
    match result {
        Err(PluginError::Config(m)) => assert!(m.contains(mentions), "{what}: {m}"),
        Err(e) => panic!("{what}: not a Config error: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

/// One test in this binary, so no other test's allocations count.
#[tokio::test(flavor = "current_thread")]
async fn absurd_formats_are_refused_quickly_without_large_allocations() {
    const LARGE: usize = 1 << 20;
    LARGEST.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let bad_rates = [
        u32::MAX,
        0,
        MIN_SAMPLE_RATE - 1,
        MAX_SAMPLE_RATE + 1,
        4_000_000,
    ];

    for rate in bad_rates {
        assert_config_error(
            &format!("converter at {rate} Hz"),
            InputConverter::new(AudioEncoding::Linear16, rate, 1),
            "sample rate",
        );
    }
    for channels in [0, 9, u16::MAX] {
        assert_config_error(
            &format!("converter with {channels} channels"),
            InputConverter::new(AudioEncoding::Linear16, 16_000, channels),
            "channel",
        );
    }

    let stt = waav_local::plugins::LocalStt::default();
    for (rate, channels, mentions) in [
        (u32::MAX, 1, "sample rate"),
        (48_000, 0, "channel"),
        (48_000, 9, "channel"),
    ] {
        let (io, _peer) = SttIo::pair(1);
        let cfg =
            SttSessionConfig::new("en-US", rate).with_format(AudioEncoding::Linear16, channels);
        assert_config_error(
            &format!("STT at {rate} Hz x {channels}"),
            stt.connect(cfg, io).await,
            mentions,
        );
    }

    let tts: [(&str, Box<dyn TtsPlugin>); 2] = [
        (
            "espeak",
            Box::new(waav_local::plugins::EspeakTts::default()),
        ),
        ("piper", Box::new(waav_local::plugins::LocalTts::default())),
    ];
    for (name, plugin) in &tts {
        // Uninitialised engines refuse every session before sizing anything from it.
        for rate in bad_rates {
            let cfg = TtsSessionConfig::new(AudioEncoding::Wav, rate);
            assert_config_error(
                &format!("{name} at {rate} Hz"),
                plugin.prepare(&cfg).await,
                "not initialised",
            );
        }
    }

    let took = started.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(largest < LARGE, "largest allocation {largest} bytes");
}
