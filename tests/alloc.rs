//! Steady state allocates nothing per buffer.
//!
//! A counting global allocator sees every allocation made through Rust's
//! allocator on the test thread while `Harness::push` runs — that is, the
//! whole `seremotion` transform (deinterleave, resampler, features, windows,
//! gate, the `ort` wrapper, message building on the Rust side). It does not
//! see GLib's `g_malloc` (GStreamer's buffer and message structures) or ONNX
//! Runtime's C++ allocations: those live outside Rust's allocator. What is
//! proved is therefore: the element's own code does not allocate per buffer,
//! and, separately, how many Rust allocations each inference window costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Once;

use gst::prelude::*;

#[path = "support/signals.rs"]
mod signals;

struct Counting;

// Per thread: tests run in parallel, and only the pushing thread is measured.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Rust allocations made on this thread while `f` runs.
fn count_allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstseremotion::plugin_register_static().expect("plugin registers");
    });
}

struct Counts {
    /// Pushes during which no window completed: allocations per push.
    plain: Vec<usize>,
    /// Pushes that completed at least one window (inference + message).
    windowed: Vec<usize>,
}

fn run(rate: usize, channels: usize, per_channel: bool) -> Counts {
    // One pipeline at a time: two inferring at once make the shared model
    // build a second ONNX session (Rust allocations in `ort`) mid-measurement.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init();
    let element = gst::ElementFactory::make("seremotion")
        .property_from_str(
            "channel-mode",
            if per_channel { "per-channel" } else { "mix" },
        )
        .build()
        .expect("seremotion");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels={channels}"
    ));
    let buffer_ms = 20;
    let audio = signals::speechy_s16(rate, channels, 20);
    let chunk = rate * channels * 2 * buffer_ms / 1000;
    let mut counts = Counts {
        plain: Vec::new(),
        windowed: Vec::new(),
    };
    for (i, bytes) in audio.chunks(chunk).enumerate() {
        let mut buffer = gst::Buffer::from_slice(bytes.to_vec());
        {
            let b = buffer.get_mut().expect("writable");
            b.set_pts(gst::ClockTime::from_mseconds((i * buffer_ms) as u64));
            b.set_duration(gst::ClockTime::from_mseconds(buffer_ms as u64));
        }
        let allocations = count_allocations(|| {
            h.push(buffer).expect("push");
        });
        let _ = h.pull().expect("passthrough");
        let mut windows = 0;
        while let Some(msg) = bus.pop() {
            if msg.structure().is_some_and(|s| s.name() == "seremotion") {
                windows += 1;
            }
        }
        // The first 5 s warm up: buffers reach their working sizes, the
        // window grid fills, ONNX Runtime's arenas settle.
        if i * buffer_ms >= 5000 {
            if windows > 0 {
                counts.windowed.push(allocations);
            } else {
                counts.plain.push(allocations);
            }
        }
    }
    counts
}

fn check(name: &str, counts: Counts) {
    assert!(counts.plain.len() > 500, "{name}: too few buffers measured");
    assert!(
        !counts.windowed.is_empty(),
        "{name}: no window was analysed"
    );
    let per_buffer: usize = counts.plain.iter().sum();
    let per_window_max = counts.windowed.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{name}: {} buffers without a window: {per_buffer} Rust allocations in all; \
         {} buffers completing a window: at most {per_window_max} Rust allocations each",
        counts.plain.len(),
        counts.windowed.len()
    );
    assert_eq!(
        per_buffer, 0,
        "{name}: buffers that complete no window allocated ({:?})",
        counts.plain
    );
    // One inference per window and channel: `ort` wraps the input tensor and
    // builds the outputs (5 small allocations per run, measured);
    // everything else is preallocated.
    assert!(
        per_window_max <= 16,
        "{name}: a window costs {per_window_max} allocations"
    );
}

#[test]
fn mono_16k_steady_state_allocates_nothing_per_buffer() {
    check("mono 16 kHz mix", run(16000, 1, false));
}

#[test]
fn stereo_8k_per_channel_steady_state_allocates_nothing_per_buffer() {
    check("stereo 8 kHz per-channel", run(8000, 2, true));
}

#[test]
fn stereo_48k_mix_steady_state_allocates_nothing_per_buffer() {
    check("stereo 48 kHz mix", run(48000, 2, false));
}
