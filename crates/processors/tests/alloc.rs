//! No allocation per frame after warm-up, for every processor at 16 and 48 kHz, mono and stereo.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::json;
use waav_plugin_api::{AudioBuffer, AudioProcessor, ProcessorPlugin};
use waav_processors::{DenoisePlugin, GainPlugin, ResamplePlugin, VadPlugin};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: defers to the system allocator; only counts calls made while this thread counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn processors_do_not_allocate_per_frame_after_warm_up() {
    // The counter counts.
    assert_eq!(
        allocations(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(9)))),
        1
    );
    let plugins: [(&dyn ProcessorPlugin, serde_json::Value); 6] = [
        (&VadPlugin, json!({})),
        (&DenoisePlugin, json!({})),
        (&DenoisePlugin, json!({"mix": 0.7})),
        (&GainPlugin, json!({"mode": "agc"})),
        (&GainPlugin, json!({"gain_db": 6})),
        (&ResamplePlugin, json!({"to_rate": 22_050})),
    ];
    for (plugin, config) in &plugins {
        for (rate, ch) in [(16_000u32, 1u16), (48_000, 1), (48_000, 2), (44_100, 1)] {
            let mut p = plugin.create(&ctx(rate, ch), &cfg(config.clone())).unwrap();
            let frame = rate as usize / 50 * usize::from(ch);
            // Speech and silence, so the VAD emits events while counted.
            let mut signal = to_i16(&voiced(rate, 1.0, 0.5, 1));
            signal.extend(std::iter::repeat_n(0, rate as usize));
            let signal: Vec<i16> = signal
                .iter()
                .flat_map(|&s| std::iter::repeat_n(s, usize::from(ch)))
                .collect();
            let mut buf = AudioBuffer::with_capacity(rate, ch, frame * 4);
            let mut events = Vec::with_capacity(8);
            let mut step = |p: &mut Box<dyn AudioProcessor>, chunk: &[i16]| {
                buf.samples.clear();
                buf.samples.extend_from_slice(chunk);
                buf.sample_rate = rate;
                buf.channels = ch;
                events.clear();
                p.process(&mut buf, &mut events).unwrap();
            };
            let mut chunks = signal.chunks_exact(frame);
            for chunk in chunks.by_ref().take(10) {
                step(&mut p, chunk);
            }
            let rest: Vec<&[i16]> = chunks.collect();
            let n = allocations(|| {
                for chunk in rest {
                    step(&mut p, chunk);
                }
            });
            assert_eq!(
                n,
                0,
                "{} at {rate} Hz x{ch} allocated {n} times",
                plugin_id(*plugin)
            );
        }
    }
}

fn plugin_id(p: &dyn ProcessorPlugin) -> &'static str {
    p.info().id
}
