//! The element in a gst_check harness on random caps, buffer sizes and
//! offsets, timestamps, flags, flushes and seeks (segments): it must never
//! panic, and audio must leave it bit-identical.
#![no_main]

use std::sync::Once;

use arbitrary::Arbitrary;
use gst::prelude::*;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    format: u8,
    rate: u32,
    channels: u8,
    per_channel: bool,
    window_ms: u16,
    interval_ms: u16,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Buffer {
        /// Bytes of payload; not necessarily whole samples.
        payload: Vec<u8>,
        /// Leading bytes of the memory that are not part of the buffer (misalignment).
        offset: u8,
        pts: Option<u64>,
        duration: Option<u64>,
        discont: bool,
        gap: bool,
    },
    Flush,
    Segment { start: u64, rate_tenths: i8 },
    Caps { rate: u32, channels: u8 },
}

const FORMATS: [&str; 4] = ["S16LE", "S32LE", "F32LE", "F64LE"];

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstseremotion::plugin_register_static().expect("plugin registers");
    });
}

fn caps(format: &str, rate: u32, channels: u8) -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", format)
        .field("rate", (rate % 200_000).max(1) as i32)
        .field("channels", i32::from(channels % 10).max(1))
        .field("layout", "interleaved")
        .build()
}

fuzz_target!(|input: Input| {
    init();
    let format = FORMATS[usize::from(input.format) % FORMATS.len()];
    let element = gst::ElementFactory::make("seremotion")
        .property_from_str("channel-mode", if input.per_channel { "per-channel" } else { "mix" })
        .build()
        .expect("element");
    let window = u64::from(input.window_ms % 5000) * 1_000_000;
    let interval = u64::from(input.interval_ms % 5000).max(100) * 1_000_000;
    element.set_property_from_str("window", &window.to_string());
    element.set_property_from_str("interval", &interval.to_string());
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps(format, input.rate, input.channels));
    h.play();
    for step in input.steps.into_iter().take(64) {
        match step {
            Step::Buffer { payload, offset, pts, duration, discont, gap } => {
                let offset = usize::from(offset % 8);
                let len = payload.len();
                let mut memory = vec![0u8; offset];
                memory.extend_from_slice(&payload);
                // A region of a larger buffer shares its memory: data that
                // starts at an odd address, as after wavparse or a sub-buffer.
                let Ok(mut buffer) = gst::Buffer::from_mut_slice(memory)
                    .copy_region(gst::BufferCopyFlags::MEMORY, offset..offset + len)
                else {
                    continue;
                };
                {
                    let b = buffer.get_mut().expect("a fresh region is writable");
                    b.set_pts(pts.map(gst::ClockTime::from_nseconds));
                    b.set_duration(duration.map(gst::ClockTime::from_nseconds));
                    let mut flags = gst::BufferFlags::empty();
                    if discont {
                        flags |= gst::BufferFlags::DISCONT;
                    }
                    if gap {
                        flags |= gst::BufferFlags::GAP;
                    }
                    b.set_flags(flags);
                }
                let expected = buffer.map_readable().map(|m| m.to_vec()).unwrap_or_default();
                if let Ok(out) = h.push_and_pull(buffer) {
                    let got = out.map_readable().map(|m| m.to_vec()).unwrap_or_default();
                    assert_eq!(got, expected, "passthrough changed the audio");
                }
            }
            Step::Flush => {
                h.push_event(gst::event::FlushStart::new());
                h.push_event(gst::event::FlushStop::new(true));
            }
            Step::Segment { start, rate_tenths } => {
                let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
                segment.set_start(gst::ClockTime::from_nseconds(start));
                let rate = f64::from(rate_tenths) / 10.0;
                if rate.abs() >= 0.1 {
                    segment.set_rate(rate);
                }
                h.push_event(gst::event::Segment::new(&segment));
            }
            Step::Caps { rate, channels } => {
                h.push_event(gst::event::Caps::new(&caps(format, rate, channels)));
            }
        }
    }
    h.push_event(gst::event::Eos::new());
    // Drain the bus so messages are built and dropped like an application would.
    while bus.pop().is_some() {}
    // The teardown's messages hold the element, which holds the bus: flush it
    // (as a pipeline does at NULL) or every run leaks a bus and its sockets.
    drop(h);
    bus.set_flushing(true);
    element.set_bus(None);
});
