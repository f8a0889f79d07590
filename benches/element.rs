//! The `seremotion` element per second of audio, through a `gst_check::Harness`
//! (buffers of 20 ms, S16LE, continuous timestamps, messages popped from a bus
//! as an application would):
//!
//! * `mono_16k_mix`: mono 16 kHz, the model's own rate (no resampling);
//! * `stereo_8k_per_channel`: a stereo telephone call, one analysis per channel;
//! * `stereo_48k_mix`: studio rate, downmixed and resampled.
//!
//! `identity_*` runs the same buffers through `identity`: the harness's own
//! cost, to subtract. Throughput is in seconds of audio, so criterion's
//! "elem/s" is the speed-up over real time on one core (1000 = RTF 0.001).
//!
//! `cargo bench --bench element`; `SEREMOTION_BENCH_MODEL=path.onnx` to use
//! another model than the embedded default.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gst::prelude::*;

#[path = "../tests/support/signals.rs"]
mod signals;

const SECONDS: u64 = 10;
const BUFFER_MS: u64 = 20;

struct Case {
    name: &'static str,
    rate: usize,
    channels: usize,
    per_channel: bool,
}

fn harness(factory: &str, case: &Case) -> (gst_check::Harness, gst::Bus) {
    let mut builder = gst::ElementFactory::make(factory);
    if factory == "seremotion" {
        builder = builder.property_from_str(
            "channel-mode",
            if case.per_channel {
                "per-channel"
            } else {
                "mix"
            },
        );
        if let Some(path) = std::env::var_os("SEREMOTION_BENCH_MODEL") {
            builder = builder.property("model-path", path.to_string_lossy().into_owned());
        }
    }
    let element = builder.build().expect("element");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "audio/x-raw,format=S16LE,layout=interleaved,rate={},channels={}",
        case.rate, case.channels
    ));
    (h, bus)
}

fn bench_element(c: &mut Criterion) {
    gst::init().expect("GStreamer initialises");
    gstseremotion::plugin_register_static().expect("plugin registers");
    let cases = [
        Case {
            name: "mono_16k_mix",
            rate: 16000,
            channels: 1,
            per_channel: false,
        },
        Case {
            name: "stereo_8k_per_channel",
            rate: 8000,
            channels: 2,
            per_channel: true,
        },
        Case {
            name: "stereo_48k_mix",
            rate: 48000,
            channels: 2,
            per_channel: false,
        },
    ];
    let mut group = c.benchmark_group("element_10s");
    group.throughput(Throughput::Elements(SECONDS));
    group.sample_size(20);
    for case in &cases {
        let audio = signals::speechy_s16(case.rate, case.channels, SECONDS as usize);
        let bytes_per_buffer = case.rate * case.channels * 2 * BUFFER_MS as usize / 1000;
        // One buffer per 20 ms, shared memory; each push gets a shallow copy
        // carrying its own timestamp.
        let buffers: Vec<gst::Buffer> = audio
            .chunks(bytes_per_buffer)
            .map(|chunk| gst::Buffer::from_slice(chunk.to_vec()))
            .collect();
        for factory in ["seremotion", "identity"] {
            let (mut h, bus) = harness(factory, case);
            let mut pts = 0u64;
            let mut messages = 0usize;
            let mut pushed = 0usize;
            group.bench_function(format!("{factory}_{}", case.name), |b| {
                b.iter(|| {
                    for buffer in &buffers {
                        let mut buffer = buffer.copy();
                        {
                            let buffer = buffer.get_mut().expect("fresh copy is writable");
                            buffer.set_pts(gst::ClockTime::from_mseconds(pts));
                            buffer.set_duration(gst::ClockTime::from_mseconds(BUFFER_MS));
                        }
                        pts += BUFFER_MS;
                        h.push(buffer).expect("push");
                        pushed += 1;
                        black_box(h.pull().expect("passthrough buffer"));
                    }
                    while let Some(msg) = bus.pop() {
                        messages += black_box(msg).structure().is_some() as usize;
                    }
                })
            });
            // (A filtered-out benchmark pushes nothing.)
            if factory == "seremotion" && pushed > 0 {
                assert!(messages > 0, "{}: no seremotion messages", case.name);
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_element);
criterion_main!(benches);
