//! Memory and latency of the resampler stay bounded at any rate: 8 channels
//! at rates without a small ratio to the model's (44101, 191999 Hz) once took
//! 273 MB and held back a second of audio.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use seremotion_core::resample::StreamResampler;

struct Tracking;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

#[test]
fn eight_channels_at_odd_rates_take_little_memory_and_keep_up() {
    // One test in this binary, so nothing else allocates meanwhile.
    for from in [44101u32, 191999, 44100, 48000, 8000] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut channels: Vec<StreamResampler> = (0..8)
            .map(|_| StreamResampler::new(from, 16000).expect("resampler"))
            .collect();
        let input: Vec<f32> = (0..from as usize / 50)
            .map(|i| (i as f32 * 0.05).sin() * 0.3)
            .collect();
        let mut out = Vec::with_capacity(16000);
        let mut produced = 0usize;
        for buffer in 0..25 {
            for r in channels.iter_mut() {
                out.clear();
                r.process(&input, &mut out);
            }
            produced += out.len();
            // After each 20 ms buffer the output is due up to the latency.
            let due = (buffer + 1) * 320;
            let latency = channels[0].latency_output_samples();
            assert!(
                produced + latency >= due,
                "{from} Hz: {produced} samples out of {due} due"
            );
        }
        let peak = PEAK.load(Ordering::Relaxed) - before;
        let latency_ms = channels[0].latency_output_samples() as f64 / 16.0;
        eprintln!(
            "{from} Hz -> 16 kHz, 8 channels: peak {:.2} MB, latency {latency_ms:.1} ms",
            peak as f64 / 1e6
        );
        assert!(peak < 8_000_000, "{from} Hz: 8 channels took {peak} bytes");
        // FFT blocks hold at most 100 ms of input (plus the filter delay); sinc chunks 10 ms.
        assert!(latency_ms < 150.0, "{from} Hz: {latency_ms} ms latency");
        drop(channels);
    }
}
